//! The two `http` interface endpoints, reference §3(c).
//!
//! - `website` (provides): what we publish for load balancers. The current
//!   haproxy operator requires `private-address` and `port` from each unit
//!   and ignores `hostname`; older consumers read `hostname`. The reactive
//!   `interface-http` layer sets all three, with both addresses being the
//!   unit's ingress address for that relation, and so do we.
//! - `manager-service` (requires): `MANAGER_SERVICE_URL` built from the
//!   remote unit's `hostname`/`private-address` and `port`.

use std::net::IpAddr;

use super::{bracket_ipv6, unit_order_key};
use crate::ops::backend::Bag;
use crate::ops::config::ConfigError;

/// What we publish in our unit bag on every `website` relation: the unit's
/// ingress address for that relation (from `network-get`) as both
/// `hostname` and `private-address`, and the port gunicorn listens on.
pub fn website_data(ingress_address: &str, port: u16) -> Bag {
    Bag::from([
        ("hostname".to_string(), ingress_address.to_string()),
        ("private-address".to_string(), ingress_address.to_string()),
        ("port".to_string(), port.to_string()),
    ])
}

/// The schemes `manager_service_protocol` may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::AsRefStr, strum::Display)]
#[strum(serialize_all = "lowercase")]
pub enum ServiceProtocol {
    Http,
    Https,
}

/// Check the `manager_service_protocol` option.
pub fn validate_manager_service_protocol(value: &str) -> Result<ServiceProtocol, ConfigError> {
    match value {
        "http" => Ok(ServiceProtocol::Http),
        "https" => Ok(ServiceProtocol::Https),
        other => Err(ConfigError::new(
            "manager_service_protocol",
            format!("must be \"http\" or \"https\", got {other:?}; set it with juju config <app> manager_service_protocol=https"),
        )),
    }
}

/// The host a manager-service unit can be reached at: its `hostname` when
/// that is an IP address or a fully qualified name (has a dot), since a bare
/// machine name often resolves only on that machine; else its
/// `private-address`.
fn reachable_host(bag: &Bag) -> Option<&str> {
    let value = |key: &str| bag.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());
    match value("hostname") {
        Some(hostname) if hostname.parse::<IpAddr>().is_ok() || hostname.contains('.') => {
            Some(hostname)
        }
        _ => value("private-address"),
    }
}

/// An IP address, or a DNS name (RFC 1123: dot-separated labels of 1-63
/// letters, digits, `-` or `_`, not starting or ending with `-`, at most 253
/// bytes, a trailing dot allowed, the last label not all digits, since URL
/// parsers read such a name as an IPv4 number).
fn is_host_name_or_address(host: &str) -> bool {
    if host.parse::<IpAddr>().is_ok() {
        return true;
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let labels: Vec<&str> = name.split('.').collect();
    !name.is_empty()
        && host.len() <= 253
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        })
        && !labels
            .last()
            .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
}

/// `MANAGER_SERVICE_URL`: `{protocol}://host:port` from the first remote
/// unit (in unit order) that has published a reachable host and a port;
/// `Ok(None)` while none has. The protocol is validated first, so a bad
/// option is reported even before the relation is ready.
pub fn manager_service_url(
    protocol: &str,
    remote_unit_bags: &[(String, Bag)],
) -> Result<Option<String>, ConfigError> {
    let protocol = validate_manager_service_protocol(protocol)?;
    let mut ordered: Vec<&(String, Bag)> = remote_unit_bags.iter().collect();
    ordered.sort_by_key(|(unit, _)| unit_order_key(unit));
    Ok(ordered.into_iter().find_map(|(_, bag)| {
        let host = reachable_host(bag)?;
        let port = bag
            .get("port")?
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)?;
        // Only an IP address or a DNS name: URL delimiters would change the
        // URL's meaning, and quotes, newlines or NUL have no place in a host.
        if !is_host_name_or_address(host) {
            return None;
        }
        Some(format!("{protocol}://{}:{port}", bracket_ipv6(host)))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bag(pairs: &[(&str, &str)]) -> Bag {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn protocol_must_be_http_or_https() {
        assert_eq!(
            validate_manager_service_protocol("https"),
            Ok(ServiceProtocol::Https)
        );
        let error = validate_manager_service_protocol("ftp").unwrap_err();
        assert_eq!(error.option, "manager_service_protocol");
        assert!(error.to_string().contains("\"ftp\""), "{error}");
        assert!(
            manager_service_url("HTTP", &[]).is_err(),
            "case matters, as in config.yaml"
        );
    }

    #[test]
    fn ipv6_hostname_is_bracketed() {
        let units = [(
            "m/0".to_string(),
            bag(&[("hostname", "2001:db8::7"), ("port", "80")]),
        )];
        assert_eq!(
            manager_service_url("http", &units).unwrap().as_deref(),
            Some("http://[2001:db8::7]:80")
        );
    }

    #[test]
    fn units_without_port_or_host_are_skipped() {
        let units = [
            ("m/0".to_string(), bag(&[("private-address", "10.0.0.1")])),
            (
                "m/1".to_string(),
                bag(&[("hostname", "short"), ("port", "80")]),
            ),
        ];
        assert_eq!(manager_service_url("http", &units).unwrap(), None);
    }
}
