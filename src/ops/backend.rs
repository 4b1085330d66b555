//! The only door to Juju: the [`Backend`] trait, the values that cross it,
//! and the errors it reports.
//!
//! [`super::hooktools::HookTools`] implements it with Juju's hook tools; the
//! `harness` crate implements it in memory. Nothing else talks to Juju.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

/// A relation bag: Juju keeps relation data as strings only.
pub type Bag = BTreeMap<String, String>;

/// Whose relation bag a read or write is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BagOwner {
    /// A unit's bag, e.g. `postgresql/0`.
    Unit(String),
    /// An application's bag, e.g. `postgresql`.
    App(String),
}

impl BagOwner {
    pub fn name(&self) -> &str {
        match self {
            BagOwner::Unit(n) | BagOwner::App(n) => n,
        }
    }
}

/// Whether a status or a relation write is about this unit or its application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Unit,
    App,
}

/// Workload status names, as Juju spells them.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, strum::EnumString, strum::AsRefStr, strum::Display,
)]
#[strum(serialize_all = "lowercase")]
pub enum StatusName {
    Active,
    Blocked,
    Maintenance,
    Waiting,
    Error,
    Unknown,
    Terminated,
}

impl StatusName {
    /// The statuses `status-set` accepts; the others are Juju's to set.
    pub fn is_settable(self) -> bool {
        matches!(
            self,
            StatusName::Active
                | StatusName::Blocked
                | StatusName::Maintenance
                | StatusName::Waiting
        )
    }

    /// ops' collect-status priority: the worst status wins.
    pub fn priority(self) -> u8 {
        match self {
            StatusName::Error => 5,
            StatusName::Blocked => 4,
            StatusName::Maintenance => 3,
            StatusName::Waiting => 2,
            StatusName::Active => 1,
            StatusName::Unknown | StatusName::Terminated => 0,
        }
    }
}

/// A workload status and its message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Status {
    pub name: StatusName,
    pub message: String,
}

impl Status {
    pub fn new(name: StatusName, message: impl Into<String>) -> Self {
        Status {
            name,
            message: message.into(),
        }
    }
    pub fn active(message: impl Into<String>) -> Self {
        Self::new(StatusName::Active, message)
    }
    pub fn blocked(message: impl Into<String>) -> Self {
        Self::new(StatusName::Blocked, message)
    }
    pub fn maintenance(message: impl Into<String>) -> Self {
        Self::new(StatusName::Maintenance, message)
    }
    pub fn waiting(message: impl Into<String>) -> Self {
        Self::new(StatusName::Waiting, message)
    }
    pub fn unknown() -> Self {
        Self::new(StatusName::Unknown, "")
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}", self.name)
        } else {
            write!(f, "{}: {}", self.name, self.message)
        }
    }
}

/// `juju-log` levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::AsRefStr, strum::Display)]
#[strum(serialize_all = "UPPERCASE")]
pub enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
}

/// A port protocol as `open-port` takes it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, strum::EnumString, strum::AsRefStr,
)]
#[strum(serialize_all = "lowercase")]
pub enum Protocol {
    Icmp,
    Tcp,
    Udp,
}

/// An opened port or port range, in `opened-ports`' order (protocol, from, to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Port {
    pub protocol: Protocol,
    pub from: u16,
    pub to: u16,
}

impl Port {
    pub fn tcp(port: u16) -> Self {
        Port {
            protocol: Protocol::Tcp,
            from: port,
            to: port,
        }
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.protocol {
            Protocol::Icmp => write!(f, "icmp"),
            p if self.from == self.to => write!(f, "{}/{}", self.from, p.as_ref()),
            p => write!(f, "{}-{}/{}", self.from, self.to, p.as_ref()),
        }
    }
}

impl FromStr for Port {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        if s == "icmp" {
            return Ok(Port {
                protocol: Protocol::Icmp,
                from: 0,
                to: 0,
            });
        }
        let (range, proto) = s.split_once('/').unwrap_or((&s, "tcp"));
        let protocol = Protocol::from_str(proto).map_err(|_| {
            format!("invalid protocol {proto:?}, expected \"tcp\", \"udp\", or \"icmp\"")
        })?;
        let parse = |p: &str| {
            p.parse::<u16>()
                .map_err(|_| format!("invalid port {s:?}: not a number from 0 to 65535"))
        };
        let (from, to) = match range.split_once('-') {
            Some((a, b)) => (parse(a)?, parse(b)?),
            None => (parse(range)?, parse(range)?),
        };
        if from > to || protocol == Protocol::Icmp {
            return Err(format!("invalid port range {s}"));
        }
        Ok(Port { protocol, from, to })
    }
}

/// What `network-get` says about a binding.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Network {
    #[serde(default)]
    pub bind_addresses: Vec<BindAddress>,
    #[serde(default)]
    pub ingress_addresses: Vec<String>,
    #[serde(default)]
    pub egress_subnets: Vec<String>,
}

impl Network {
    /// The address others should use to reach this unit: the first ingress
    /// address, else the first bind address (what `--ingress-address` prints).
    pub fn ingress_address(&self) -> Option<&str> {
        self.ingress_addresses
            .first()
            .map(String::as_str)
            .or_else(|| {
                self.bind_addresses
                    .iter()
                    .flat_map(|b| b.addresses.iter())
                    .map(|a| a.value.as_str())
                    .next()
            })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct BindAddress {
    #[serde(default)]
    pub mac_address: String,
    #[serde(default)]
    pub interface_name: String,
    #[serde(default)]
    pub addresses: Vec<InterfaceAddress>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct InterfaceAddress {
    #[serde(default)]
    pub hostname: String,
    pub value: String,
    #[serde(default)]
    pub cidr: String,
}

/// Why a call to Juju failed, typed the way ops maps hook-tool failures.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("relation {0} not found")]
    RelationNotFound(String),
    #[error("this unit is not the leader: {0}")]
    NotLeader(String),
    #[error("access denied: {0}")]
    AccessDenied(String),
    #[error("hook tool {tool} is missing (is this running inside a Juju hook?)")]
    ToolMissing { tool: String },
    #[error("{tool} was used wrongly (exit 2): {message}")]
    Usage { tool: String, message: String },
    #[error("{tool} failed (exit {code}): {message}")]
    ToolFailed {
        tool: String,
        code: i32,
        message: String,
    },
    #[error("{tool} printed output that is not what Juju prints: {detail}")]
    BadOutput { tool: String, detail: String },
    #[error("not running an action")]
    NotAnAction,
    /// Juju knows no secret by that ID or label (for this unit), or the
    /// revision asked for is gone. ops' `SecretNotFoundError`.
    #[error("secret not found: {0}")]
    SecretNotFound(String),
    /// The owner of a secret asked for `--refresh`, which Juju allows
    /// consumers only; the owner always reads the latest revision.
    #[error("secret owner cannot use --refresh: {0}")]
    SecretOwnerCannotRefresh(String),
    #[error("{0}")]
    Invalid(String),
}

/// Which secret a `secret-get` or `secret-info-get` is about: by ID (the
/// `secret:…` URI, passed on unchanged), by the label this unit bound, or
/// (consumers only, `secret-get` only) by ID while binding a label to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecretRef<'a> {
    Id(&'a str),
    Label(&'a str),
    IdWithLabel { id: &'a str, label: &'a str },
}

impl<'a> SecretRef<'a> {
    pub fn id(&self) -> Option<&'a str> {
        match *self {
            SecretRef::Id(id) | SecretRef::IdWithLabel { id, .. } => Some(id),
            SecretRef::Label(_) => None,
        }
    }

    pub fn label(&self) -> Option<&'a str> {
        match *self {
            SecretRef::Label(label) | SecretRef::IdWithLabel { label, .. } => Some(label),
            SecretRef::Id(_) => None,
        }
    }
}

impl fmt::Display for SecretRef<'_> {
    /// Names the secret in messages (IDs and labels are not secret).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Id(id) => write!(f, "{id}"),
            SecretRef::Label(label) => write!(f, "label {label:?}"),
            SecretRef::IdWithLabel { id, label } => write!(f, "{id} (label {label:?})"),
        }
    }
}

/// Which revision `secret-get` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecretRead {
    /// The revision this unit tracks (the latest on its first read).
    Tracked,
    /// `--refresh`: the latest, and track it from now on (consumers only).
    Refresh,
    /// `--peek`: the latest, this once; the tracked revision stays (a
    /// consumer's very first read starts tracking the latest regardless).
    Peek,
}

/// A secret's content: key → decoded value. Its `Debug` shows the keys
/// only, so the values cannot reach a log or an error by accident.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretContent(BTreeMap<String, String>);

impl SecretContent {
    pub fn new(values: BTreeMap<String, String>) -> Self {
        SecretContent(values)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The values, for the one place that must write them (the app's
    /// environment file).
    pub fn into_map(self) -> BTreeMap<String, String> {
        self.0
    }
}

impl fmt::Debug for SecretContent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()?;
        f.write_str(" (values hidden)")
    }
}

/// Who owns a secret, as `secret-info-get` says.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, strum::EnumString, strum::AsRefStr, strum::Display,
)]
#[strum(serialize_all = "lowercase")]
pub enum SecretOwner {
    Application,
    Unit,
}

/// What `secret-info-get` tells the owner of a secret (no content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    /// The ID as Juju printed it (the key of its JSON answer).
    pub id: String,
    pub revision: u32,
    /// The owner's label; empty when none was set.
    pub label: String,
    pub owner: SecretOwner,
    pub description: Option<String>,
    /// The rotation policy (`never`, `hourly`, …), when one is set.
    pub rotation: Option<String>,
    /// RFC 3339, as Juju prints it.
    pub expiry: Option<String>,
    /// RFC 3339: when `secret-rotate` runs next.
    pub rotates: Option<String>,
}

/// Everything the framework can ask of Juju. One call, one hook tool; no
/// caching here (that is [`super::model::Model`]'s job).
pub trait Backend {
    /// `config-get --format=json`: every option that is set or has a default.
    fn config_get(&mut self) -> Result<Map<String, Value>, ModelError>;
    /// `is-leader --format=json`.
    fn is_leader(&mut self) -> Result<bool, ModelError>;
    /// `relation-ids <endpoint> --format=json`, as ids (the part after `:`).
    fn relation_ids(&mut self, endpoint: &str) -> Result<Vec<u32>, ModelError>;
    /// `relation-list --format=json -r <endpoint>:<id>`: the remote units.
    fn relation_list(&mut self, endpoint: &str, id: u32) -> Result<Vec<String>, ModelError>;
    /// `relation-list --format=json --app -r <endpoint>:<id>`: the remote application.
    fn relation_remote_app(&mut self, endpoint: &str, id: u32) -> Result<String, ModelError>;
    /// `relation-get --format=json -r <endpoint>:<id> [--app] - <owner>`.
    fn relation_get(
        &mut self,
        endpoint: &str,
        id: u32,
        owner: &BagOwner,
    ) -> Result<Bag, ModelError>;
    /// `relation-set -r <endpoint>:<id> [--app] --file -`; an empty value deletes the key.
    fn relation_set(
        &mut self,
        endpoint: &str,
        id: u32,
        scope: Scope,
        data: &Bag,
    ) -> Result<(), ModelError>;
    /// `status-get --include-data --format=json --application=<bool>`.
    fn status_get(&mut self, scope: Scope) -> Result<Status, ModelError>;
    /// `status-set --application=<bool> <status> -- <message>`.
    fn status_set(&mut self, scope: Scope, status: &Status) -> Result<(), ModelError>;
    /// `application-version-set -- <version>`.
    fn application_version_set(&mut self, version: &str) -> Result<(), ModelError>;
    /// `juju-log --log-level <LEVEL> -- <message>`.
    fn juju_log(&mut self, level: LogLevel, message: &str) -> Result<(), ModelError>;
    /// `action-get --format=json`.
    fn action_get(&mut self) -> Result<Map<String, Value>, ModelError>;
    /// `action-set k=v ...` (keys already flattened and checked).
    fn action_set(&mut self, results: &BTreeMap<String, String>) -> Result<(), ModelError>;
    /// `action-log -- <message>`.
    fn action_log(&mut self, message: &str) -> Result<(), ModelError>;
    /// `action-fail -- <message>`.
    fn action_fail(&mut self, message: &str) -> Result<(), ModelError>;
    /// `open-port <port>`.
    fn open_port(&mut self, port: &Port) -> Result<(), ModelError>;
    /// `close-port <port>`.
    fn close_port(&mut self, port: &Port) -> Result<(), ModelError>;
    /// `opened-ports --format=json`.
    fn opened_ports(&mut self) -> Result<Vec<Port>, ModelError>;
    /// `network-get --format=json [-r <id>] <binding>`.
    fn network_get(
        &mut self,
        binding: &str,
        relation: Option<(&str, u32)>,
    ) -> Result<Network, ModelError>;
    /// `secret-get --format=json [<id>] [--label L] [--refresh|--peek]`.
    fn secret_get(
        &mut self,
        secret: SecretRef<'_>,
        read: SecretRead,
    ) -> Result<SecretContent, ModelError>;
    /// `secret-info-get --format=json <id>` or `--label L` (owners only;
    /// ID and label together is refused, as Juju refuses it).
    fn secret_info_get(&mut self, secret: SecretRef<'_>) -> Result<SecretInfo, ModelError>;
    /// `secret-ids --format=json`: the secrets this unit (or, as leader,
    /// its application) owns.
    fn secret_ids(&mut self) -> Result<Vec<String>, ModelError>;
}

/// Whether a Juju agent of `version` (`JUJU_VERSION`, e.g. `3.6.4`,
/// `2.9.49`, `3.0-beta2`) has secrets and their hook tools: 3.0.3 and later,
/// as ops' `JujuVersion.has_secrets` says (modern-interfaces.md §2.3). An
/// unreadable version counts as without.
pub fn juju_has_secrets(version: &str) -> bool {
    let mut parts = version.trim().splitn(3, '.');
    let number = |part: Option<&str>| -> Option<u32> {
        let digits: String = part?.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    let (Some(major), Some(minor_part)) = (number(parts.next()), parts.next()) else {
        return false;
    };
    let Some(minor) = number(Some(minor_part)) else {
        return false;
    };
    // `3.0-beta2`: a tag where the patch would be, so patch 0.
    let patch = if minor_part.contains('-') {
        0
    } else {
        number(parts.next()).unwrap_or(0)
    };
    (major, minor, patch) >= (3, 0, 3)
}

/// Juju's refusal of `secret-info-get` with both an ID and a label.
pub fn secret_info_ref_error() -> ModelError {
    ModelError::Usage {
        tool: "secret-info-get".into(),
        message: "specify either a secret URI or label but not both".into(),
    }
}

/// The key rules `action-set` enforces for each dot-separated segment.
pub fn check_action_result_key(key: &str) -> Result<(), ModelError> {
    const RESERVED: [&str; 4] = ["stdout", "stdout-encoding", "stderr", "stderr-encoding"];
    for segment in key.split('.') {
        let bytes = segment.as_bytes();
        let ok_char = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
        let valid = !bytes.is_empty()
            && bytes.iter().all(ok_char)
            && bytes[0] != b'-'
            && bytes[bytes.len() - 1] != b'-';
        if !valid {
            return Err(ModelError::Usage {
                tool: "action-set".into(),
                message: format!(
                    "key {key:?} must start and end with lowercase alphanumeric, and contain only lowercase alphanumeric, hyphens and periods"
                ),
            });
        }
        if RESERVED.contains(&segment) {
            return Err(ModelError::Usage {
                tool: "action-set".into(),
                message: format!("cannot set reserved action key {segment:?}"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_round_trip_through_juju_spelling() {
        for s in ["8080/tcp", "53/udp", "8000-8999/tcp", "icmp"] {
            assert_eq!(Port::from_str(s).unwrap().to_string(), s);
        }
        assert!(Port::from_str("90-80/tcp").is_err());
        assert!(Port::from_str("80/sctp").is_err());
    }

    #[test]
    fn secrets_arrive_with_juju_3_0_3() {
        for yes in ["3.0.3", "3.1.0", "3.6.4", "4.0.0", "3.6-rc1.1"] {
            assert!(juju_has_secrets(yes), "{yes}");
        }
        for no in ["2.9.49", "3.0.2", "3.0-beta2", "3", "", "three"] {
            assert!(!juju_has_secrets(no), "{no}");
        }
    }

    #[test]
    fn action_keys_follow_juju_rules() {
        assert!(check_action_result_key("previous").is_ok());
        assert!(check_action_result_key("builds.r1.sha256").is_ok());
        assert!(check_action_result_key("Builds").is_err());
        assert!(check_action_result_key("a_b").is_err());
        assert!(check_action_result_key("-a").is_err());
        assert!(check_action_result_key("foo.stdout").is_err());
    }
}
