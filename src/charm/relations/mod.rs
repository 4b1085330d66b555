//! Pure relation logic: what the charm sends on each relation and what it
//! makes of what the remote side sent.
//!
//! Nothing here calls Juju. Every function takes the bags the charm has
//! already read (a [`Bag`](crate::ops::backend::Bag) is a map of strings) and
//! returns a value, or says precisely what is still missing so the charm can
//! set a Waiting status. The rules follow shared/reference/ops-and-interfaces.md
//! §3; each submodule names the subsection it implements.
//!
//! | Module | Endpoint | Interface | Reference |
//! |---|---|---|---|
//! | [`pgsql`] | `pgsql` (requires) | `pgsql` | §3(a) |
//! | [`mongodb`] | `mongodb` (requires) | `mongodb` | §3(b) |
//! | [`http`] | `manager-service` (requires), `website` (provides) | `http` | §3(c) |
//! | [`nrpe`] | `nrpe-external-master` (provides) | `nrpe-external-master` | §3(d) |
//! | [`database_client`] | (not wired yet) | `postgresql_client`, `mongodb_client` | modern-interfaces.md §2, §3, §6 |
//! | [`proxy`] | `haproxy-route`, `ingress` (requires) | `haproxy-route`, `ingress` v2 | modern-interfaces.md §4 |
//! | [`cos_agent`] | `cos-agent` (provides) | `cos_agent` | modern-interfaces.md §5 |
//!
//! The helpers they share are parsers for formats the remote side speaks:
//! [`libpq`] connection strings, [`cidr`] subnets, and the [`percent`]
//! encoding of URL parts.

pub mod cidr;
pub mod cos_agent;
pub mod database_client;
pub mod http;
pub mod libpq;
pub mod mongodb;
pub mod nrpe;
pub mod percent;
pub mod pgsql;
pub mod proxy;

pub use http::{
    manager_service_url, validate_manager_service_protocol, website_data, ServiceProtocol,
};
pub use mongodb::{mongo_connection, mongo_url, MongoConnection};
pub use nrpe::{
    check_name, nagios_hostname, render_nrpe, resolve_check_http, validate_nagios_context,
    validate_nagios_expected_status, validate_nagios_index_content, validate_nagios_index_path,
    validate_nagios_servicegroups, NrpeCheck, NrpeError, NrpeFiles, RenderedFile,
};
pub use pgsql::{database_url, pgsql_request, DatabaseUrl, PgsqlInput, PgsqlWaiting};

/// Split a comma-separated list as Juju and the remote charms write them
/// (`egress-subnets`, `allowed-subnets`, servicegroups): items trimmed, empty
/// items dropped.
pub fn split_comma_list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

/// Order unit names the way an operator reads them: by application, then by
/// unit number (`postgresql/2` before `postgresql/10`), so "the first unit"
/// means the same thing on every unit and every run.
pub(crate) fn unit_order_key(unit: &str) -> (&str, u64, &str) {
    match unit.rsplit_once('/') {
        Some((app, number)) => (app, number.parse().unwrap_or(u64::MAX), unit),
        None => (unit, u64::MAX, unit),
    }
}

/// The application a unit belongs to: `postgresql/0` → `postgresql`.
pub(crate) fn app_of_unit(unit: &str) -> &str {
    unit.rsplit_once('/').map_or(unit, |(app, _)| app)
}

/// A host as it must appear in a URL authority or a `host:port` pair: IPv6
/// literals in brackets (RFC 3986 §3.2.2), with a zone id's `%` written `%25`
/// (RFC 6874); anything else unchanged. The caller decides whether a
/// non-IP host needs further encoding.
pub(crate) fn bracket_ipv6(host: &str) -> String {
    let (address, zone) = match host.split_once('%') {
        Some((address, zone)) => (address, Some(zone)),
        None => (host, None),
    };
    if address.parse::<std::net::Ipv6Addr>().is_ok() {
        match zone {
            Some(zone) => format!("[{address}%25{}]", percent::encode_component(zone)),
            None => format!("[{address}]"),
        }
    } else {
        host.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comma_lists_drop_blanks_and_trim() {
        assert_eq!(
            split_comma_list(" 10.0.0.0/24, ,192.168.1.5/32,"),
            vec!["10.0.0.0/24", "192.168.1.5/32"]
        );
        assert!(split_comma_list("").is_empty());
    }

    #[test]
    fn units_sort_by_number_not_text() {
        let mut units = vec!["pg/10", "pg/2", "pg/1"];
        units.sort_by_key(|u| unit_order_key(u));
        assert_eq!(units, vec!["pg/1", "pg/2", "pg/10"]);
        assert_eq!(app_of_unit("postgresql/3"), "postgresql");
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(bracket_ipv6("2001:db8::5"), "[2001:db8::5]");
        assert_eq!(bracket_ipv6("fe80::1%eth0"), "[fe80::1%25eth0]");
        assert_eq!(bracket_ipv6("10.0.0.1"), "10.0.0.1");
        assert_eq!(bracket_ipv6("db.example.com"), "db.example.com");
    }
}
