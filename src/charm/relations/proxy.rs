//! The two proxy endpoints we require, modern-interfaces.md §4: what we
//! write on `haproxy-route` (§4.1) and `ingress` v2 (§4.2), and what we make
//! of the URL the provider answers.
//!
//! Both interfaces put the JSON encoding of each value in the bag (a string
//! carries its quotes) and leave out every field equal to its default, also
//! inside nested objects; the builders below return only the keys they mean
//! to send, and [`HAPROXY_ROUTE_APP_KEYS`]/[`INGRESS_APP_KEYS`] name every key
//! we may ever send, so a key no longer wanted can be deleted.

use std::net::IpAddr;

use serde_json::{json, Value};

use crate::ops::backend::Bag;
use crate::ops::config::ConfigError;

/// The options that shape what we ask of the proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyOptions {
    /// `ingress_hostname` (haproxy-route `hostname`).
    pub hostname: Option<String>,
    /// `ingress_additional_hostnames`.
    pub additional_hostnames: Vec<String>,
    /// `ingress_paths`.
    pub paths: Vec<String>,
    /// `ingress_allow_http`.
    pub allow_http: bool,
    /// `ingress_strip_prefix` (ingress `strip-prefix`).
    pub strip_prefix: bool,
}

/// A DNS name as haproxy-route takes it: dot-separated labels of letters,
/// digits and inner `-`, at most 253 bytes, optionally led by `*.`.
fn is_host_name(name: &str) -> bool {
    let bare = name.strip_prefix("*.").unwrap_or(name);
    !bare.is_empty()
        && name.len() <= 253
        && bare.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn check_host_name(option: &str, name: &str) -> Result<(), ConfigError> {
    if is_host_name(name) {
        return Ok(());
    }
    Err(ConfigError::new(
        option,
        format!(
            "{name:?} is not a host name: use a DNS name such as shop.example.com \
             (a leading \"*.\" matches every subdomain)"
        ),
    ))
}

/// A path HAProxy can route on: starts with `/`, no spaces, no query or
/// fragment, no control characters.
fn check_path(path: &str) -> Result<(), ConfigError> {
    let ok = path.starts_with('/')
        && path.len() <= 1024
        && !path
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#' | '"'));
    if ok {
        return Ok(());
    }
    Err(ConfigError::new(
        "ingress_paths",
        format!(
            "{path:?} is not a URL path: give paths starting with \"/\" without '?' or '#', \
             separated by spaces, e.g. \"/api /static\""
        ),
    ))
}

impl ProxyOptions {
    /// Check the `ingress_*` options; each error names its option and what
    /// a valid value looks like.
    pub fn new(
        hostname: &str,
        additional_hostnames: &str,
        paths: &str,
        allow_http: bool,
        strip_prefix: bool,
    ) -> Result<ProxyOptions, ConfigError> {
        let hostname = Some(hostname.trim().to_ascii_lowercase()).filter(|h| !h.is_empty());
        if let Some(name) = &hostname {
            check_host_name("ingress_hostname", name)?;
        }
        let additional_hostnames: Vec<String> = additional_hostnames
            .split_whitespace()
            .map(str::to_ascii_lowercase)
            .collect();
        for name in &additional_hostnames {
            check_host_name("ingress_additional_hostnames", name)?;
        }
        if hostname.is_none() && !additional_hostnames.is_empty() {
            return Err(ConfigError::new(
                "ingress_additional_hostnames",
                "needs ingress_hostname: set the main host name first \
                 (juju config <app> ingress_hostname=shop.example.com)",
            ));
        }
        let paths: Vec<String> = paths.split_whitespace().map(str::to_string).collect();
        for path in &paths {
            check_path(path)?;
        }
        Ok(ProxyOptions {
            hostname,
            additional_hostnames,
            paths,
            allow_http,
            strip_prefix,
        })
    }
}

/// The health check haproxy-route asks HAProxy to run: every 5 s, a unit
/// is taken out after 3 failures in a row and back after 2 good answers.
/// (`interval`, `rise` and `fall` go together or not at all.)
pub const HAPROXY_CHECK_INTERVAL_SECS: u32 = 5;
pub const HAPROXY_CHECK_RISE: u32 = 2;
pub const HAPROXY_CHECK_FALL: u32 = 3;

/// How often the ingress provider checks a unit; its default is 30 s,
/// slow to notice a unit that stopped answering.
pub const INGRESS_CHECK_INTERVAL: &str = "10s";

/// Every key of our application bag on haproxy-route we may send.
pub const HAPROXY_ROUTE_APP_KEYS: &[&str] = &[
    "service",
    "ports",
    "hostname",
    "additional_hostnames",
    "paths",
    "check",
    "allow_http",
];

/// Every key of our application bag on ingress we may send.
pub const INGRESS_APP_KEYS: &[&str] = &[
    "model",
    "name",
    "port",
    "strip-prefix",
    "healthcheck_params",
];

fn encoded(pairs: Vec<(&str, Value)>) -> Bag {
    pairs
        .into_iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// Our application bag on haproxy-route (the leader writes it): the
/// service named after the application, its port, the health check on
/// `health_path`, and the options that differ from the defaults.
pub fn haproxy_route_app_data(
    service: &str,
    port: u16,
    health_path: &str,
    options: &ProxyOptions,
) -> Bag {
    let mut pairs = vec![
        ("service", json!(service)),
        ("ports", json!([port])),
        (
            "check",
            json!({
                "interval": HAPROXY_CHECK_INTERVAL_SECS,
                "rise": HAPROXY_CHECK_RISE,
                "fall": HAPROXY_CHECK_FALL,
                "path": health_path,
            }),
        ),
    ];
    if let Some(hostname) = &options.hostname {
        pairs.push(("hostname", json!(hostname)));
    }
    if !options.additional_hostnames.is_empty() {
        pairs.push(("additional_hostnames", json!(options.additional_hostnames)));
    }
    if !options.paths.is_empty() {
        pairs.push(("paths", json!(options.paths)));
    }
    if options.allow_http {
        pairs.push(("allow_http", json!(true)));
    }
    encoded(pairs)
}

/// Our unit bag on haproxy-route: `address`, the unit's IP. HAProxy takes
/// only an IP address there.
pub fn haproxy_route_unit_data(address: &str) -> Result<Bag, String> {
    let ip: IpAddr = address.parse().map_err(|_| {
        format!("haproxy-route needs this unit's IP address, and network-get gave {address:?}")
    })?;
    Ok(encoded(vec![("address", json!(ip.to_string()))]))
}

/// The highest port the ingress interface takes.
pub const INGRESS_MAX_PORT: u16 = 65534;

/// Our application bag on ingress (the leader writes it); refused for a
/// port the interface does not take.
pub fn ingress_app_data(
    model: &str,
    app: &str,
    port: u16,
    health_path: &str,
    strip_prefix: bool,
) -> Result<Bag, String> {
    if port > INGRESS_MAX_PORT {
        return Err(format!(
            "listen_port {port} is beyond what the ingress interface takes (1-{INGRESS_MAX_PORT}): \
             set listen_port lower, e.g. juju config <app> listen_port=8080"
        ));
    }
    let mut pairs = vec![
        ("model", json!(model)),
        ("name", json!(app)),
        ("port", json!(port)),
        (
            "healthcheck_params",
            json!({"path": health_path, "interval": INGRESS_CHECK_INTERVAL}),
        ),
    ];
    if strip_prefix {
        pairs.push(("strip-prefix", json!(true)));
    }
    Ok(encoded(pairs))
}

/// Our unit bag on ingress: `host` and `ip`, both the unit's address on
/// the relation (Juju tells a machine charm no other name for it).
pub fn ingress_unit_data(address: &str) -> Bag {
    let ip = address.parse::<IpAddr>().ok().map(|ip| ip.to_string());
    encoded(vec![("host", json!(address)), ("ip", json!(ip))])
}

/// A URL a provider answered, fit to show in a status and to take a path
/// from: http or https, no whitespace or control characters.
fn check_url(url: &str) -> Result<(), String> {
    let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
    if scheme_ok && url.len() <= 2048 && !url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Ok(())
    } else {
        Err(format!("{:?} is not an http(s) URL", clip(url)))
    }
}

fn clip(text: &str) -> String {
    text.chars().take(80).collect()
}

/// The URLs haproxy-route's provider answered in its application bag
/// (`endpoints`, a JSON list of URLs); `Ok(None)` before it answers.
pub fn haproxy_route_answer(provider_app_bag: &Bag) -> Result<Option<Vec<String>>, String> {
    let Some(raw) = provider_app_bag.get("endpoints") else {
        return Ok(None);
    };
    let urls: Vec<String> = serde_json::from_str(raw)
        .map_err(|_| format!("endpoints is not a JSON list of URLs: {:?}", clip(raw)))?;
    for url in &urls {
        check_url(url).map_err(|why| format!("endpoints: {why}"))?;
    }
    Ok(Some(urls).filter(|urls| !urls.is_empty()))
}

/// The URL ingress's provider answered in its application bag (`ingress`,
/// a JSON object `{"url": …}`); `Ok(None)` before it answers.
pub fn ingress_answer(provider_app_bag: &Bag) -> Result<Option<String>, String> {
    let Some(raw) = provider_app_bag.get("ingress") else {
        return Ok(None);
    };
    #[derive(serde::Deserialize)]
    struct Answer {
        url: String,
    }
    let answer: Answer = serde_json::from_str(raw).map_err(|_| {
        format!(
            "ingress is not a JSON object {{\"url\": …}}: {:?}",
            clip(raw)
        )
    })?;
    check_url(&answer.url).map_err(|why| format!("ingress url: {why}"))?;
    Ok(Some(answer.url))
}

/// The path prefix a URL puts the application under, as WSGI's
/// `SCRIPT_NAME` wants it: without its trailing `/`, and `None` for the
/// root. `https://lb.example.com/prod-shop/` → `/prod-shop`.
pub fn script_name(url: &str) -> Option<String> {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme
        .find('/')
        .map_or("", |slash| &after_scheme[slash..]);
    let path = path.split(['?', '#']).next().unwrap_or("");
    let prefix = path.trim_end_matches('/');
    (!prefix.is_empty()).then(|| prefix.to_string())
}

/// The proxy endpoints related at once, for the Blocked message: one
/// proxy mode at a time, as HAProxy itself insists.
pub fn modes_in_conflict(related: &[(&str, &str)], app: &str) -> Option<String> {
    if related.len() < 2 {
        return None;
    }
    let names: Vec<&str> = related.iter().map(|(endpoint, _)| *endpoint).collect();
    let listed = match names.as_slice() {
        [a, b] => format!("{a} and {b} are both related"),
        [init @ .., last] => format!("{} and {last} are all related", init.join(", ")),
        [] => unreachable!("two or more"),
    };
    let removals: Vec<String> = related[1..]
        .iter()
        .map(|(endpoint, remote)| format!("juju remove-relation {app}:{endpoint} {remote}"))
        .collect();
    Some(format!(
        "{listed}; one proxy mode at a time: remove {} ({})",
        if related.len() == 2 {
            "one"
        } else {
            "all but one"
        },
        removals.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(host: &str, more: &str, paths: &str) -> Result<ProxyOptions, ConfigError> {
        ProxyOptions::new(host, more, paths, false, false)
    }

    #[test]
    fn host_names_and_paths_are_checked_naming_the_option() {
        assert!(opts("Shop.Example.com", "*.example.com", "/api /static").is_ok());
        assert_eq!(
            opts("Shop.example.com", "", "")
                .unwrap()
                .hostname
                .as_deref(),
            Some("shop.example.com")
        );
        for (bad, option) in [
            (opts("shop example", "", ""), "ingress_hostname"),
            (opts("http://shop.example.com", "", ""), "ingress_hostname"),
            (opts("-a.example.com", "", ""), "ingress_hostname"),
            (
                opts("a.example.com", "b..c", ""),
                "ingress_additional_hostnames",
            ),
            (
                opts("", "b.example.com", ""),
                "ingress_additional_hostnames",
            ),
            (opts("", "", "api"), "ingress_paths"),
            (opts("", "", "/a?b=1"), "ingress_paths"),
        ] {
            let error = bad.unwrap_err();
            assert_eq!(error.option, option, "{error}");
        }
    }

    #[test]
    fn script_name_is_the_url_path_without_its_slash() {
        assert_eq!(
            script_name("https://lb.example.com/prod-shop/").as_deref(),
            Some("/prod-shop")
        );
        assert_eq!(
            script_name("https://lb.example.com/a/b").as_deref(),
            Some("/a/b")
        );
        assert_eq!(script_name("https://lb.example.com/"), None);
        assert_eq!(script_name("https://lb.example.com"), None);
        assert_eq!(script_name("http://lb:80/x/?q=1").as_deref(), Some("/x"));
    }

    #[test]
    fn answers_are_read_or_refused_with_the_field() {
        let bag = |k: &str, v: &str| Bag::from([(k.to_string(), v.to_string())]);
        assert_eq!(haproxy_route_answer(&Bag::new()), Ok(None));
        assert_eq!(
            haproxy_route_answer(&bag("endpoints", r#"["https://a.example.com/"]"#)),
            Ok(Some(vec!["https://a.example.com/".to_string()]))
        );
        let bad = haproxy_route_answer(&bag("endpoints", "https://a/")).unwrap_err();
        assert!(bad.starts_with("endpoints"), "{bad}");
        assert!(haproxy_route_answer(&bag("endpoints", r#"["ftp://a/"]"#)).is_err());
        assert_eq!(
            ingress_answer(&bag("ingress", r#"{"url": "https://lb/m-a/"}"#)),
            Ok(Some("https://lb/m-a/".to_string()))
        );
        assert!(ingress_answer(&bag("ingress", r#""https://lb/m-a/""#)).is_err());
        assert!(ingress_answer(&bag("ingress", "{\"url\": \"https://lb/a\\nb\"}")).is_err());
    }

    #[test]
    fn ingress_refuses_the_one_port_its_interface_does_not_take() {
        assert!(ingress_app_data("m", "a", 65534, "/", false).is_ok());
        let refused = ingress_app_data("m", "a", 65535, "/", false).unwrap_err();
        assert!(refused.starts_with("listen_port 65535"), "{refused}");
    }

    #[test]
    fn conflicts_name_every_mode_and_the_command() {
        assert_eq!(modes_in_conflict(&[("website", "haproxy")], "app"), None);
        let two = modes_in_conflict(&[("website", "old-lb"), ("ingress", "lb")], "app").unwrap();
        assert!(
            two.starts_with("website and ingress are both related"),
            "{two}"
        );
        assert!(two.contains("juju remove-relation app:ingress lb"), "{two}");
        let three = modes_in_conflict(
            &[("website", "a"), ("haproxy-route", "b"), ("ingress", "c")],
            "app",
        )
        .unwrap();
        assert!(
            three.starts_with("website, haproxy-route and ingress are all related"),
            "{three}"
        );
    }
}
