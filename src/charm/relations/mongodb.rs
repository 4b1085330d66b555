//! The `mongodb` endpoint (requires, legacy `mongodb` interface): the
//! `MONGO_URL` the application sees. Reference §3(b):
//!
//! - each MongoDB unit publishes `hostname` (one legacy revision misspells
//!   it `hostnme`), `port` and `replset` in its unit bag;
//! - no credentials are ever sent (the current charm disables
//!   authentication on legacy relations);
//! - with several units the URL lists them all:
//!   `mongodb://h1:p1,h2:p2/<db>?replicaSet=<replset>`.
//!
//! A unit is used only once it has published both a host and a port; the
//! hosts are listed in unit order (`mongodb/2` before `mongodb/10`) so every
//! unit of ours writes the same URL.

use super::percent::encode_component;
use super::{bracket_ipv6, unit_order_key};
use crate::ops::backend::Bag;

/// The URL and anything odd the charm should log about how it was built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MongoConnection {
    pub url: String,
    /// Human-readable notes, e.g. units that disagree on the replica set.
    pub notes: Vec<String>,
}

/// `MONGO_URL` from the MongoDB units' bags; `None` while no unit has
/// published a usable host and port. See [`mongo_connection`] for the notes.
pub fn mongo_url(units: &[(String, Bag)], database: Option<&str>) -> Option<String> {
    mongo_connection(units, database).map(|connection| connection.url)
}

/// A host as MongoDB connection strings allow it: an IP address or a DNS
/// name. MongoDB URIs do not percent-decode hosts, so anything else cannot
/// be written safely and the unit is skipped.
fn is_plain_host(host: &str) -> bool {
    host.parse::<std::net::IpAddr>().is_ok()
        || (!host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')))
}

/// Build `mongodb://h1:p1[,h2:p2...]/[DB][?replicaSet=R]`.
///
/// The replica set is taken from `replset`. When units disagree, the first
/// unit's (in unit order) is used and a note says so: a cluster's members
/// share one replica-set name, so disagreement means a unit is mid-change.
pub fn mongo_connection(
    units: &[(String, Bag)],
    database: Option<&str>,
) -> Option<MongoConnection> {
    let mut ordered: Vec<&(String, Bag)> = units.iter().collect();
    ordered.sort_by_key(|(unit, _)| unit_order_key(unit));

    let mut notes = Vec::new();
    let mut hosts: Vec<String> = Vec::new();
    let mut replica_sets: Vec<(&str, &str)> = Vec::new();
    for (unit, bag) in ordered {
        let value = |key: &str| bag.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());
        let Some(host) = value("hostname").or_else(|| value("hostnme")) else {
            continue;
        };
        let Some(port) = value("port") else {
            continue;
        };
        let Some(port) = port.parse::<u16>().ok().filter(|&p| p != 0) else {
            notes.push(format!("ignoring {unit}: port {port:?} is not a TCP port"));
            continue;
        };
        if !is_plain_host(host) {
            notes.push(format!(
                "ignoring {unit}: hostname {host:?} is not a host name or address"
            ));
            continue;
        }
        let entry = format!("{}:{port}", bracket_ipv6(host));
        if !hosts.contains(&entry) {
            hosts.push(entry);
        }
        if let Some(replica_set) = value("replset") {
            replica_sets.push((unit, replica_set));
        }
    }
    if hosts.is_empty() {
        return None;
    }

    let mut url = format!("mongodb://{}/", hosts.join(","));
    if let Some(database) = database.filter(|d| !d.is_empty()) {
        url.push_str(&encode_component(database));
    }
    if let Some(&(first_unit, replica_set)) = replica_sets.first() {
        let others: Vec<String> = replica_sets
            .iter()
            .filter(|(_, other)| *other != replica_set)
            .map(|(unit, other)| format!("{unit} says {other:?}"))
            .collect();
        if !others.is_empty() {
            notes.push(format!(
                "MongoDB units disagree on replset; using {replica_set:?} from {first_unit} ({})",
                others.join(", ")
            ));
        }
        url.push_str("?replicaSet=");
        url.push_str(&encode_component(replica_set));
    }
    Some(MongoConnection { url, notes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(name: &str, pairs: &[(&str, &str)]) -> (String, Bag) {
        let bag = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        (name.to_string(), bag)
    }

    #[test]
    fn no_ready_unit_means_no_url() {
        assert_eq!(mongo_url(&[], None), None);
        let joined_only = [unit("mongodb/0", &[("private-address", "10.0.0.9")])];
        assert_eq!(mongo_url(&joined_only, Some("app")), None);
    }

    #[test]
    fn single_legacy_unit_with_misspelled_hostname() {
        let units = [unit(
            "mongodb/0",
            &[("hostnme", "10.0.0.9"), ("port", "27017")],
        )];
        assert_eq!(
            mongo_url(&units, None).as_deref(),
            Some("mongodb://10.0.0.9:27017/")
        );
    }

    #[test]
    fn ipv6_hosts_bracketed_and_database_encoded() {
        let units = [unit(
            "mongodb/0",
            &[("hostname", "2001:db8::9"), ("port", "27017")],
        )];
        assert_eq!(
            mongo_url(&units, Some("my db")).as_deref(),
            Some("mongodb://[2001:db8::9]:27017/my%20db")
        );
    }

    #[test]
    fn disagreeing_replica_sets_use_the_first_and_say_so() {
        let units = [
            unit(
                "mongodb/10",
                &[("hostname", "b"), ("port", "1"), ("replset", "rs1")],
            ),
            unit(
                "mongodb/2",
                &[("hostname", "a"), ("port", "1"), ("replset", "rs0")],
            ),
        ];
        let connection = mongo_connection(&units, None).unwrap();
        assert_eq!(connection.url, "mongodb://a:1,b:1/?replicaSet=rs0");
        assert_eq!(connection.notes.len(), 1);
        assert!(
            connection.notes[0].contains("mongodb/10 says \"rs1\""),
            "{:?}",
            connection.notes
        );
    }

    #[test]
    fn unusable_ports_and_hosts_are_skipped_with_a_note() {
        let units = [
            unit("mongodb/0", &[("hostname", "a"), ("port", "http")]),
            unit("mongodb/1", &[("hostname", "a/b"), ("port", "27017")]),
            unit("mongodb/2", &[("hostname", "c"), ("port", "27017")]),
        ];
        let connection = mongo_connection(&units, None).unwrap();
        assert_eq!(connection.url, "mongodb://c:27017/");
        assert_eq!(connection.notes.len(), 2);
    }
}
