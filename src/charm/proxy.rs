//! Where Juju puts the model's proxy settings in a hook's environment. The
//! caller (`main`) hands in the reader; nothing here reads the process
//! environment itself.

use crate::workload::proxy::{ModelProxy, ProxySetting};

/// (hook variable, model config key) per setting, in the order of
/// [`ModelProxy`]'s fields.
type ProxyVariables = [(&'static str, &'static str); 3];

/// What Juju gives a hook for the model's `juju-*-proxy` settings.
const JUJU_PROXY_VARIABLES: ProxyVariables = [
    ("JUJU_CHARM_HTTP_PROXY", "juju-http-proxy"),
    ("JUJU_CHARM_HTTPS_PROXY", "juju-https-proxy"),
    ("JUJU_CHARM_NO_PROXY", "juju-no-proxy"),
];

/// What Juju gives a hook for the legacy `http-proxy`, `https-proxy` and
/// `no-proxy` settings (it also writes them machine-wide).
const LEGACY_PROXY_VARIABLES: ProxyVariables = [
    ("http_proxy", "http-proxy"),
    ("https_proxy", "https-proxy"),
    ("no_proxy", "no-proxy"),
];

/// The settings in a hook environment: Juju's `JUJU_CHARM_*_PROXY` when
/// it gives an HTTP or HTTPS proxy there; otherwise the legacy
/// `http_proxy`/`HTTP_PROXY`... variables, which Juju sets instead for
/// the legacy model settings (it refuses a model with both kinds).
/// `juju-no-proxy` has a default, so `JUJU_CHARM_NO_PROXY` alone does not
/// decide. Empty values count as unset.
pub fn from_hook_env(read: impl Fn(&str) -> Option<String>) -> ModelProxy {
    let setting = |(variable, model_key): (&'static str, &'static str)| {
        let value = read(variable)
            .or_else(|| {
                // Legacy tools read either case; Juju sets both.
                let upper = variable.to_ascii_uppercase();
                (upper != variable).then(|| read(&upper)).flatten()
            })
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())?;
        Some(ProxySetting {
            variable,
            model_key,
            value,
        })
    };
    let read_all = |variables: ProxyVariables| {
        let [http, https, no_proxy] = variables.map(setting);
        ModelProxy {
            http,
            https,
            no_proxy,
        }
    };
    let juju = read_all(JUJU_PROXY_VARIABLES);
    if juju.http.is_some() || juju.https.is_some() {
        juju
    } else {
        read_all(LEGACY_PROXY_VARIABLES)
    }
}
