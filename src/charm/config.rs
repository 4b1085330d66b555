//! The charm's options, typed and checked. Every error names the option and
//! says what a valid value looks like, so the Blocked status is actionable.

use super::relations::cos_agent::AlertThresholds;
use super::relations::{http, nrpe, proxy::ProxyOptions};
use crate::ops::{ConfigError, ConfigReader};
use crate::workload::builds::BuildSpec;
use crate::workload::service::{Serving, WorkerClass, MAX_GRACEFUL_TIMEOUT_SECS};

/// Labels that name symlinks, never builds.
const RESERVED_LABELS: [&str; 2] = ["latest", "current"];

/// The option value meaning "the newest installed build".
pub const LATEST: &str = "latest";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub build_label: Option<String>,
    pub archive_filename: String,
    pub code_assets_uri: Option<String>,
    pub archive_sha256: Option<String>,
    pub wsgi_application: String,
    pub current_symlink: String,
    pub requirements_path: Option<String>,
    pub pip_cache_path: Option<String>,
    pub apt_dependencies: Vec<String>,
    /// Parsed `environment_variables`, in order.
    pub environment: Vec<(String, String)>,
    pub update_make_target: Option<String>,
    pub listen_port: u16,
    /// The metrics exporter's port (`/metrics`); `None` runs no exporter
    /// and gives gunicorn no statsd.
    pub metrics_port: Option<u16>,
    /// Where gunicorn sends statsd on the machine's own address (UDP).
    pub metrics_statsd_port: u16,
    /// 0 means 2 × cores + 1.
    pub workers: u32,
    /// The `webserver_*` options.
    pub serving: Serving,
    pub keep_builds: u32,
    pub nagios_context: String,
    pub nagios_servicegroups: String,
    pub nagios_index_path: String,
    pub nagios_index_content: String,
    pub nagios_expected_status: u16,
    pub manager_service_protocol: String,
    /// `database_name`: what the postgresql and mongodb-client relations ask
    /// for; `None` (empty) means the application's name. Checked against
    /// what the provider refuses when the request is made, so a bad name
    /// blocks those relations only.
    pub database_name: Option<String>,
    pub rollout_max_unavailable: MaxUnavailable,
    /// The `ingress_*` options: what the haproxy-route and ingress
    /// relations ask of the proxy.
    pub proxy: ProxyOptions,
    /// `alert_error_ratio` and `alert_latency_p99_seconds`, for the rules
    /// sent on cos-agent.
    pub alerts: AlertThresholds,
}

/// `rollout_max_unavailable`: how many units a rollout moves at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxUnavailable {
    Units(u32),
    /// A share of the application's units, rounded down, at least one.
    Percent(u32),
}

impl MaxUnavailable {
    pub fn parse(option: &str, text: &str) -> Result<MaxUnavailable, ConfigError> {
        let text = text.trim();
        let invalid = || {
            ConfigError::new(
                option,
                format!(
                    "{text:?} is neither a number of units (1 or more, e.g. \"1\") nor a percentage of the units (1% to 100%, e.g. \"50%\")"
                ),
            )
        };
        match text.strip_suffix('%') {
            Some(percent) => match percent.parse::<u32>() {
                Ok(p) if (1..=100).contains(&p) => Ok(MaxUnavailable::Percent(p)),
                _ => Err(invalid()),
            },
            None => match text.parse::<u32>() {
                Ok(n) if n >= 1 => Ok(MaxUnavailable::Units(n)),
                _ => Err(invalid()),
            },
        }
    }

    /// The batch for an application of `units` units: never zero, or a
    /// rollout could not move.
    pub fn batch(self, units: usize) -> usize {
        let n = match self {
            MaxUnavailable::Units(n) => n as usize,
            MaxUnavailable::Percent(p) => units * p as usize / 100,
        };
        n.max(1)
    }
}

/// `wsgi_application` as gunicorn reads it: a module (dotted), then
/// optionally `:` and a name or a call of a name with literal arguments
/// (`myapp.wsgi:application`, `app:create_app()`,
/// `app:create_app("production")`); the module alone means its
/// `application`. The arguments themselves are gunicorn's to judge (at the
/// pre-flight).
fn check_wsgi_application(text: &str) -> Result<(), ConfigError> {
    let identifier = |s: &str| {
        !s.is_empty()
            && s.chars().all(|c| c.is_alphanumeric() || c == '_')
            && !s.starts_with(|c: char| c.is_ascii_digit())
    };
    let (module, object) = text.split_once(':').unwrap_or((text, "application"));
    let name = match object.split_once('(') {
        Some((name, args)) if args.ends_with(')') => name.trim_end(),
        Some(_) => "",
        None => object,
    };
    let module_ok = !module.is_empty() && module.split('.').all(identifier);
    if module_ok && identifier(name) && !text.chars().any(char::is_control) {
        return Ok(());
    }
    Err(ConfigError::new(
        "wsgi_application",
        format!(
            "{text:?} is not what gunicorn loads: use module:name (myapp.wsgi:application) \
             or module:factory() (myapp:create_app())"
        ),
    ))
}

fn non_empty(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// A build label: a directory name we create and a word in status messages.
pub fn check_build_label(option: &str, label: &str) -> Result<(), ConfigError> {
    let valid_chars = label
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if label.is_empty()
        || label.len() > 64
        || !valid_chars
        || !label.starts_with(|c: char| c.is_ascii_alphanumeric())
    {
        return Err(ConfigError::new(
            option,
            format!(
                "{label:?} is not a build label: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit, e.g. r1"
            ),
        ));
    }
    if RESERVED_LABELS.contains(&label) {
        return Err(ConfigError::new(
            option,
            format!("{label:?} names a symlink, not a build; use a label such as r1"),
        ));
    }
    Ok(())
}

/// A path inside the build: relative, no `..`, no NUL.
fn check_relative_path(option: &str, path: &str) -> Result<(), ConfigError> {
    let p = std::path::Path::new(path);
    let escapes = p.components().any(|c| {
        !matches!(
            c,
            std::path::Component::Normal(_) | std::path::Component::CurDir
        )
    });
    if p.is_absolute() || escapes || path.contains('\0') {
        return Err(ConfigError::new(
            option,
            format!("{path:?} must be a path inside the build, relative to its top (no '..'), e.g. requirements.txt"),
        ));
    }
    Ok(())
}

fn check_apt_package(name: &str) -> Result<(), ConfigError> {
    // name[:arch][=version], as apt-get install takes them.
    let (name_arch, version) = name.split_once('=').unwrap_or((name, ""));
    let (pkg, arch) = name_arch.split_once(':').unwrap_or((name_arch, ""));
    let pkg_ok = pkg.len() >= 2
        && pkg.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && pkg
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    let arch_ok = arch
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let version_ok = version
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "+-.~:".contains(c));
    if pkg_ok && arch_ok && version_ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            "apt_dependencies",
            format!("{name:?} is not a Debian package name; separate packages with spaces, e.g. \"libpq5 libxml2\""),
        ))
    }
}

impl Config {
    /// The options that shape a build, for the workload's installer.
    pub fn build_spec(&self) -> BuildSpec {
        BuildSpec {
            archive_filename: self.archive_filename.clone(),
            code_assets_uri: self.code_assets_uri.clone(),
            archive_sha256: self.archive_sha256.clone(),
            requirements_path: self.requirements_path.clone(),
            pip_cache_path: self.pip_cache_path.clone(),
            update_make_target: self.update_make_target.clone(),
        }
    }

    /// Read and check every option.
    pub fn from_reader(
        r: ConfigReader<'_>,
        parse_environment: impl Fn(&str) -> Result<Vec<(String, String)>, ConfigError>,
    ) -> Result<Config, ConfigError> {
        let build_label = non_empty(r.string("build_label")?);
        if let Some(label) = &build_label {
            check_build_label("build_label", label)?;
        }

        let archive_filename = r.string("archive_filename")?.trim().to_string();
        if archive_filename.is_empty()
            || archive_filename.contains('/')
            || archive_filename.starts_with('.')
            || archive_filename.contains('\0')
        {
            return Err(ConfigError::new(
                "archive_filename",
                "must be a file name without '/', e.g. example-wsgi-app.tar.bzip2",
            ));
        }

        let code_assets_uri = non_empty(r.string("code_assets_uri")?)
            .map(|uri| uri.trim_end_matches('/').to_string());
        if let Some(uri) = &code_assets_uri {
            let scheme_ok = uri.starts_with("http://") || uri.starts_with("https://");
            if !scheme_ok || uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(ConfigError::new(
                    "code_assets_uri",
                    "must be an http:// or https:// URL without spaces, e.g. https://assets.example.com/myapp",
                ));
            }
        }

        let archive_sha256 = non_empty(r.string("archive_sha256")?).map(|s| s.to_ascii_lowercase());
        if let Some(sum) = &archive_sha256 {
            if sum.len() != 64 || !sum.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(ConfigError::new(
                    "archive_sha256",
                    "must be 64 hex digits (the output of sha256sum), or empty",
                ));
            }
        }

        let wsgi_application = r.string("wsgi_application")?.trim().to_string();
        check_wsgi_application(&wsgi_application)?;

        let current_symlink =
            non_empty(r.string("current_symlink")?).unwrap_or_else(|| LATEST.into());
        if current_symlink != LATEST {
            check_build_label("current_symlink", &current_symlink).map_err(|_| {
                ConfigError::new(
                    "current_symlink",
                    format!("{current_symlink:?} must be \"latest\" or an installed build label such as r1"),
                )
            })?;
        }

        let requirements_path = non_empty(r.string("requirements_path")?);
        if let Some(p) = &requirements_path {
            check_relative_path("requirements_path", p)?;
        }
        let pip_cache_path = non_empty(r.string("pip_cache_path")?);
        if let Some(p) = &pip_cache_path {
            check_relative_path("pip_cache_path", p)?;
        }

        let apt_dependencies: Vec<String> = r
            .string("apt_dependencies")?
            .split_whitespace()
            .map(str::to_string)
            .collect();
        for pkg in &apt_dependencies {
            check_apt_package(pkg)?;
        }

        let environment = parse_environment(r.string("environment_variables")?)?;

        let update_make_target = non_empty(r.string("update_make_target")?);
        if let Some(target) = &update_make_target {
            let ok = target
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
                && !target.starts_with('-');
            if !ok {
                return Err(ConfigError::new(
                    "update_make_target",
                    format!("{target:?} must be one make target name, e.g. migrate"),
                ));
            }
        }

        let listen_port = r.int_in("listen_port", 1024..=65535)? as u16;
        let metrics_port = match r.int("metrics_port")? {
            0 => None,
            port if (1024..=65535).contains(&port) && port != i64::from(listen_port) => {
                Some(port as u16)
            }
            port if port == i64::from(listen_port) => {
                return Err(ConfigError::new(
                    "metrics_port",
                    format!("{port} is listen_port's: give the metrics endpoint a port of its own (default 9102), or 0 to turn it off"),
                ))
            }
            port => {
                return Err(ConfigError::new(
                    "metrics_port",
                    format!("{port} must be 0 (no metrics) or 1024-65535"),
                ))
            }
        };
        let metrics_statsd_port = r.int_in("metrics_statsd_port", 1024..=65535)? as u16;
        let workers = r.int_in("workers", 0..=256)? as u32;
        let worker_class = r
            .string("webserver_worker_class")?
            .trim()
            .to_ascii_lowercase();
        let serving = Serving {
            worker_class: worker_class.parse::<WorkerClass>().map_err(|_| {
                ConfigError::new(
                    "webserver_worker_class",
                    format!(
                        "{worker_class:?} is not a worker class the charm offers; use one of {}",
                        <WorkerClass as strum::VariantNames>::VARIANTS.join(", ")
                    ),
                )
            })?,
            threads: r.int_in("webserver_threads", 1..=1024)? as u32,
            timeout: r.int_in("webserver_timeout", 0..=86_400)? as u32,
            keepalive: r.int_in("webserver_keepalive", 0..=3600)? as u32,
            max_requests: r.int_in("webserver_max_requests", 0..=100_000_000)? as u32,
            max_requests_jitter: r.int_in("webserver_max_requests_jitter", 0..=100_000_000)? as u32,
            graceful_timeout: r.int_in(
                "webserver_graceful_timeout",
                1..=MAX_GRACEFUL_TIMEOUT_SECS as i64,
            )? as u32,
        };
        let keep_builds = r.int_in("keep_builds", 2..=1000)? as u32;

        let nagios_index_path = r.string("nagios_index_path")?.to_string();
        nrpe::validate_nagios_index_path(&nagios_index_path)?;
        let nagios_index_content = r.string("nagios_index_content")?.to_string();
        nrpe::validate_nagios_index_content(&nagios_index_content)?;
        let nagios_expected_status =
            nrpe::validate_nagios_expected_status(r.int("nagios_expected_status")?)?;
        let nagios_context = r.string("nagios_context")?.trim().to_string();
        nrpe::validate_nagios_context(&nagios_context)?;
        let nagios_servicegroups = r.string("nagios_servicegroups")?.trim().to_string();
        nrpe::validate_nagios_servicegroups(&nagios_servicegroups)?;

        let manager_service_protocol = r.string("manager_service_protocol")?.trim().to_string();
        http::validate_manager_service_protocol(&manager_service_protocol)?;
        let database_name = non_empty(r.string("database_name")?);
        let rollout_max_unavailable = MaxUnavailable::parse(
            "rollout_max_unavailable",
            r.string("rollout_max_unavailable")?,
        )?;

        let proxy = ProxyOptions::new(
            r.string("ingress_hostname")?,
            r.string("ingress_additional_hostnames")?,
            r.string("ingress_paths")?,
            r.boolean("ingress_allow_http")?,
            r.boolean("ingress_strip_prefix")?,
        )?;

        let alerts = AlertThresholds::new(
            r.float("alert_error_ratio")?,
            r.float("alert_latency_p99_seconds")?,
        )?;

        Ok(Config {
            build_label,
            archive_filename,
            code_assets_uri,
            archive_sha256,
            wsgi_application,
            current_symlink,
            requirements_path,
            pip_cache_path,
            apt_dependencies,
            environment,
            update_make_target,
            listen_port,
            metrics_port,
            metrics_statsd_port,
            workers,
            serving,
            keep_builds,
            nagios_context,
            nagios_servicegroups,
            nagios_index_path,
            nagios_index_content,
            nagios_expected_status,
            manager_service_protocol,
            database_name,
            rollout_max_unavailable,
            proxy,
            alerts,
        })
    }

    /// gunicorn workers: as configured, or 2 × cores + 1.
    pub fn effective_workers(&self, cpus: usize) -> u32 {
        if self.workers > 0 {
            self.workers
        } else {
            (2 * cpus as u32 + 1).min(64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::MaxUnavailable;

    #[test]
    fn max_unavailable_is_a_count_or_a_percentage() {
        let parse = |t: &str| MaxUnavailable::parse("rollout_max_unavailable", t);
        assert_eq!(parse("2").unwrap(), MaxUnavailable::Units(2));
        assert_eq!(parse(" 50% ").unwrap(), MaxUnavailable::Percent(50));
        for bad in ["0", "-1", "0%", "101%", "half", "", "1.5", "%"] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("rollout_max_unavailable"), "{e}");
            assert!(e.contains("50%"), "{e}");
        }
        assert_eq!(MaxUnavailable::Percent(50).batch(5), 2);
        assert_eq!(MaxUnavailable::Percent(10).batch(3), 1, "never zero");
        assert_eq!(MaxUnavailable::Units(3).batch(2), 3);
    }
}
