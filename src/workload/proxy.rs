//! The model's proxy settings as the workload uses them: for the build
//! download and as installers' `http_proxy`... variables. Which hook
//! variables hold them is Juju's business (`charm::proxy`); a setting keeps
//! its variable and model key only so that a message can say what to fix.

/// One proxy setting from the hook environment, with where it came from so
/// that a message can say what to fix.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxySetting {
    /// The hook environment variable (`JUJU_CHARM_HTTP_PROXY`, `http_proxy`).
    pub variable: &'static str,
    /// The model config key an operator sets (`juju-http-proxy`, `http-proxy`).
    pub model_key: &'static str,
    /// As Juju gave it: may hold `user:password@`, so never show it as is.
    pub value: String,
}

impl ProxySetting {
    /// The value as a message may show it: no userinfo, query or fragment.
    pub fn redacted(&self) -> String {
        crate::workload::text::redact_url_text(&self.value)
    }
}

impl std::fmt::Debug for ProxySetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={:?}", self.variable, self.redacted())
    }
}

/// The model's proxy settings, read once from the hook environment (by
/// `charm::proxy::from_hook_env`, which knows Juju's names) and used by everything that goes out to
/// the network: the build download and the installers (uv, pip, apt).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelProxy {
    pub http: Option<ProxySetting>,
    pub https: Option<ProxySetting>,
    pub no_proxy: Option<ProxySetting>,
}

/// What installers read, in the order of [`ModelProxy`]'s fields.
const INSTALLER_VARIABLES: [&str; 3] = ["http_proxy", "https_proxy", "no_proxy"];

impl ModelProxy {
    /// The variables installers understand (`http_proxy` and `HTTP_PROXY`,
    /// ...), for their environment only: the values may hold credentials.
    pub fn installer_env(&self) -> Vec<(String, String)> {
        let mut env = Vec::new();
        let settings = [&self.http, &self.https, &self.no_proxy];
        for (setting, name) in settings.into_iter().zip(INSTALLER_VARIABLES) {
            if let Some(setting) = setting {
                env.push((name.to_string(), setting.value.clone()));
                env.push((name.to_ascii_uppercase(), setting.value.clone()));
            }
        }
        env
    }
}
