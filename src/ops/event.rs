//! Juju's hooks and actions as one typed [`Event`], parsed once from the
//! dispatch environment.
//!
//! The charm names its own endpoints and actions as enums (`E`, `A`); a hook
//! for an endpoint or an action the charm does not declare parses to
//! [`Event::Unknown`], which the framework logs and ignores, as ops does.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// What a charm's endpoint and action enums must offer: parsed from and
/// printed as the names in metadata.yaml / actions.yaml.
pub trait Name: Copy + Eq + fmt::Debug + FromStr + AsRef<str> {}
impl<T: Copy + Eq + fmt::Debug + FromStr + AsRef<str>> Name for T {}

/// The environment variables that identify an event. Kept as a map so a
/// deferred event can be stored and parsed again in a later dispatch.
pub type EventVars = BTreeMap<String, String>;

/// The variables [`Event::parse`] reads; everything else in the hook
/// environment describes the unit, not the event.
pub const EVENT_VARS: &[&str] = &[
    "JUJU_DISPATCH_PATH",
    "JUJU_RELATION",
    "JUJU_RELATION_ID",
    "JUJU_REMOTE_APP",
    "JUJU_REMOTE_UNIT",
    "JUJU_DEPARTING_UNIT",
    "JUJU_ACTION_NAME",
    "JUJU_ACTION_UUID",
    "JUJU_STORAGE_ID",
    "JUJU_STORAGE_LOCATION",
    "JUJU_STORAGE_KIND",
    "JUJU_SECRET_ID",
    "JUJU_SECRET_LABEL",
    "JUJU_SECRET_REVISION",
    "JUJU_TARGET_BASE",
];

/// Hooks that are not about a relation, storage or secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::EnumString, strum::AsRefStr)]
#[strum(serialize_all = "kebab-case")]
pub enum UnitHook {
    Install,
    Start,
    Stop,
    Remove,
    ConfigChanged,
    UpgradeCharm,
    UpdateStatus,
    LeaderElected,
    LeaderSettingsChanged,
    LeaderDeposed,
    PreSeriesUpgrade,
    PostSeriesUpgrade,
    CollectMetrics,
    MeterStatusChanged,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::EnumString, strum::AsRefStr)]
#[strum(serialize_all = "kebab-case")]
pub enum RelationHook {
    Created,
    Joined,
    Changed,
    Departed,
    Broken,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::EnumString, strum::AsRefStr)]
#[strum(serialize_all = "kebab-case")]
pub enum StorageHook {
    Attached,
    Detaching,
}

/// `secret-changed` runs on consumers when the owner publishes a new
/// revision; the other three run on the owner (for an application's
/// secret, on its leader).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::EnumString, strum::AsRefStr)]
#[strum(serialize_all = "kebab-case")]
pub enum SecretHook {
    Changed,
    Rotate,
    Expired,
    Remove,
}

impl SecretHook {
    /// Whether Juju names a revision (`JUJU_SECRET_REVISION`) for this hook.
    pub fn carries_revision(self) -> bool {
        matches!(self, SecretHook::Expired | SecretHook::Remove)
    }
}

/// One relation: the endpoint it is on and Juju's id for it (`db:7`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelationId<E> {
    pub endpoint: E,
    pub id: u32,
}

impl<E: AsRef<str>> fmt::Display for RelationId<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.endpoint.as_ref(), self.id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationEvent<E> {
    pub hook: RelationHook,
    pub relation: RelationId<E>,
    pub remote_app: String,
    /// Empty for created, broken and application-level changed.
    pub remote_unit: Option<String>,
    /// Set in departed: the remote unit leaving, or this unit when it is removed.
    pub departing_unit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionEvent<A> {
    pub action: A,
    /// Juju's id for this run of the action. `None` when an operator ran
    /// `actions/<name>` as a command in the unit's hook context (`juju exec`;
    /// `juju run --unit` before Juju 3), as the charms this one replaces were
    /// driven: Juju's action tools are not available then.
    pub id: Option<String>,
}

impl<A> ActionEvent<A> {
    pub fn is_command(&self) -> bool {
        self.id.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageEvent {
    pub hook: StorageHook,
    pub storage: String,
    pub id: String,
    pub location: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretEvent {
    pub hook: SecretHook,
    /// `JUJU_SECRET_ID`: the full URI (`secret:…`), to pass to `secret-get`
    /// unchanged.
    pub id: String,
    /// `JUJU_SECRET_LABEL`: the label this unit bound (or the owner's);
    /// empty when there is none.
    pub label: String,
    /// Set for secret-remove and secret-expired only.
    pub revision: Option<u32>,
}

impl SecretEvent {
    /// The label, when Juju gave one.
    pub fn label(&self) -> Option<&str> {
        Some(self.label.as_str()).filter(|l| !l.is_empty())
    }
}

/// Every event Juju can send a machine charm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<E, A> {
    Unit(UnitHook),
    Relation(RelationEvent<E>),
    Action(ActionEvent<A>),
    Storage(StorageEvent),
    Secret(SecretEvent),
    /// A hook or action this charm does not declare; ignored.
    Unknown(String),
}

/// The dispatch environment is not one Juju would give.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("neither JUJU_DISPATCH_PATH nor argv[0] names a hook or action")]
    NoDispatchPath,
    #[error("{var} is required for {path} but is not set")]
    Missing { var: &'static str, path: String },
    #[error("{var}={value:?} is not valid: {why}")]
    Invalid {
        var: &'static str,
        value: String,
        why: String,
    },
}

fn var<'a>(vars: &'a EventVars, name: &str) -> Option<&'a str> {
    vars.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

fn require<'a>(vars: &'a EventVars, name: &'static str, path: &str) -> Result<&'a str, EventError> {
    var(vars, name).ok_or_else(|| EventError::Missing {
        var: name,
        path: path.to_string(),
    })
}

impl<E: Name, A: Name> Event<E, A> {
    /// The dispatch path (`hooks/install`, `actions/rollback`): from
    /// `JUJU_DISPATCH_PATH`, or, for Juju before 2.8 which runs `hooks/<name>`
    /// directly, from argv[0].
    pub fn dispatch_path(vars: &EventVars, argv0: Option<&str>) -> Result<String, EventError> {
        if let Some(p) = var(vars, "JUJU_DISPATCH_PATH") {
            return Ok(p.trim_start_matches("./").to_string());
        }
        let argv0 = argv0.ok_or(EventError::NoDispatchPath)?;
        let path = std::path::Path::new(argv0);
        let name = path.file_name().and_then(|n| n.to_str());
        let dir = path
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str());
        match (dir, name) {
            (Some(dir @ ("hooks" | "actions")), Some(name)) => Ok(format!("{dir}/{name}")),
            _ => Err(EventError::NoDispatchPath),
        }
    }

    /// Parse the event from the identifying variables (see [`EVENT_VARS`]).
    pub fn parse(vars: &EventVars, argv0: Option<&str>) -> Result<Self, EventError> {
        let path = Self::dispatch_path(vars, argv0)?;
        if let Some(name) = path.strip_prefix("actions/") {
            let Ok(action) = A::from_str(name) else {
                return Ok(Event::Unknown(path));
            };
            let id = match var(vars, "JUJU_ACTION_UUID") {
                Some(id) => Some(id.to_string()),
                // Juju names the path of every action it runs; a path from
                // argv[0] alone is an operator's command.
                None if var(vars, "JUJU_DISPATCH_PATH").is_none() => None,
                None => return Err(require(vars, "JUJU_ACTION_UUID", &path).unwrap_err()),
            };
            return Ok(Event::Action(ActionEvent { action, id }));
        }
        let Some(hook) = path.strip_prefix("hooks/") else {
            return Ok(Event::Unknown(path));
        };
        if let Ok(unit_hook) = UnitHook::from_str(hook) {
            return Ok(Event::Unit(unit_hook));
        }
        if let Some(kind) = hook.strip_prefix("secret-") {
            if let Ok(hook_kind) = SecretHook::from_str(kind) {
                return Self::parse_secret(vars, &path, hook_kind);
            }
        }
        if let Some((endpoint, kind)) = hook.rsplit_once("-relation-") {
            if let Ok(kind) = RelationHook::from_str(kind) {
                let Ok(endpoint) = E::from_str(endpoint) else {
                    return Ok(Event::Unknown(path));
                };
                return Self::parse_relation(vars, &path, endpoint, kind).map(Event::Relation);
            }
        }
        if let Some((storage, kind)) = hook.rsplit_once("-storage-") {
            if let Ok(hook) = StorageHook::from_str(kind) {
                return Ok(Event::Storage(StorageEvent {
                    hook,
                    storage: storage.to_string(),
                    id: require(vars, "JUJU_STORAGE_ID", &path)?.to_string(),
                    location: var(vars, "JUJU_STORAGE_LOCATION")
                        .unwrap_or_default()
                        .to_string(),
                }));
            }
        }
        Ok(Event::Unknown(path))
    }

    fn parse_relation(
        vars: &EventVars,
        path: &str,
        endpoint: E,
        hook: RelationHook,
    ) -> Result<RelationEvent<E>, EventError> {
        let rel = require(vars, "JUJU_RELATION_ID", path)?;
        let id = rel
            .rsplit_once(':')
            .map(|(_, id)| id)
            .unwrap_or(rel)
            .parse::<u32>()
            .map_err(|_| EventError::Invalid {
                var: "JUJU_RELATION_ID",
                value: rel.to_string(),
                why: "expected <endpoint>:<number>".into(),
            })?;
        Ok(RelationEvent {
            hook,
            relation: RelationId { endpoint, id },
            remote_app: var(vars, "JUJU_REMOTE_APP").unwrap_or_default().to_string(),
            remote_unit: var(vars, "JUJU_REMOTE_UNIT").map(str::to_string),
            departing_unit: var(vars, "JUJU_DEPARTING_UNIT").map(str::to_string),
        })
    }

    /// Juju exports `JUJU_SECRET_REVISION` (a number above 0) for the hooks
    /// about one revision, secret-remove and secret-expired, and for no
    /// other (juju-hook-tools.md §1.2, modern-interfaces.md §6.3).
    fn parse_secret(vars: &EventVars, path: &str, hook: SecretHook) -> Result<Self, EventError> {
        let revision = match var(vars, "JUJU_SECRET_REVISION") {
            None if hook.carries_revision() => {
                return Err(require(vars, "JUJU_SECRET_REVISION", path).unwrap_err())
            }
            None => None,
            Some(r) => Some(r.parse::<u32>().ok().filter(|&n| n > 0).ok_or_else(|| {
                EventError::Invalid {
                    var: "JUJU_SECRET_REVISION",
                    value: r.to_string(),
                    why: "expected a revision number from 1 up".into(),
                }
            })?),
        };
        Ok(Event::Secret(SecretEvent {
            hook,
            id: require(vars, "JUJU_SECRET_ID", path)?.to_string(),
            label: var(vars, "JUJU_SECRET_LABEL")
                .unwrap_or_default()
                .to_string(),
            revision,
        }))
    }

    /// The hook or action name, as Juju's logs spell it.
    pub fn name(&self) -> String {
        match self {
            Event::Unit(h) => h.as_ref().to_string(),
            Event::Relation(r) => {
                format!(
                    "{}-relation-{}",
                    r.relation.endpoint.as_ref(),
                    r.hook.as_ref()
                )
            }
            Event::Action(a) => format!("{} action", a.action.as_ref()),
            Event::Storage(s) => format!("{}-storage-{}", s.storage, s.hook.as_ref()),
            Event::Secret(s) => format!("secret-{}", s.hook.as_ref()),
            Event::Unknown(p) => p.clone(),
        }
    }

    /// Metric hooks run in a restricted context: no deferred replay there.
    pub fn is_restricted(&self) -> bool {
        matches!(
            self,
            Event::Unit(UnitHook::CollectMetrics | UnitHook::MeterStatusChanged)
        )
    }

    /// Events ops refuses to defer: actions, stop, remove, secret expiry/rotation.
    pub fn is_deferrable(&self) -> bool {
        !matches!(
            self,
            Event::Action(_)
                | Event::Unit(UnitHook::Stop | UnitHook::Remove)
                | Event::Secret(SecretEvent {
                    hook: SecretHook::Expired | SecretHook::Rotate,
                    ..
                })
        )
    }
}

/// Keep only the variables that identify the event.
pub fn event_vars<I, K, V>(env: I) -> EventVars
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<String>,
    V: Into<String>,
{
    env.into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .filter(|(k, _)| EVENT_VARS.contains(&k.as_str()))
        .collect()
}
