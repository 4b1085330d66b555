//! The events a test can send, one constructor per Juju hook:
//! `on::install()`, `on::relation_changed(7, Some(1))`,
//! `on::action("rollback", json!({}))`, ...
//!
//! An [`EventSpec`] names the event by what the test knows (relation id,
//! remote unit number); the [`crate::Context`] turns it into the exact
//! environment Juju would export, using the State for the endpoint and
//! application names.

use serde_json::Value;
use wsgi_app::ops::{RelationHook, SecretHook, StorageHook, UnitHook};

/// Who is leaving in a `-relation-departed` hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departing {
    /// The remote unit named in the event left (or was removed).
    Remote,
    /// This unit is being removed: Juju names it in `JUJU_DEPARTING_UNIT`.
    ThisUnit,
}

/// One event to dispatch.
#[derive(Debug, Clone, PartialEq)]
pub enum EventSpec {
    Unit(UnitHook),
    Relation {
        hook: RelationHook,
        id: u32,
        /// The remote unit's number; `None` for created, broken and the
        /// application-level changed.
        remote_unit: Option<u32>,
        departing: Departing,
    },
    Action {
        name: String,
        params: Value,
        /// `JUJU_ACTION_UUID`; a fresh small number when `None`.
        id: Option<String>,
    },
    Storage {
        hook: StorageHook,
        storage: String,
        index: u32,
        location: String,
    },
    Secret {
        hook: SecretHook,
        /// The full URI, `secret:<id>`.
        id: String,
        label: String,
        revision: Option<u32>,
    },
    /// Any dispatch path, e.g. `hooks/made-up`, to see how the charm treats
    /// a hook it does not know.
    Path(String),
}

impl EventSpec {
    /// The hook or action name, as Juju's logs spell it.
    pub fn label(&self) -> String {
        match self {
            EventSpec::Unit(h) => h.as_ref().to_string(),
            EventSpec::Relation { hook, id, .. } => format!("relation {id} {}", hook.as_ref()),
            EventSpec::Action { name, .. } => format!("action {name}"),
            EventSpec::Storage { hook, storage, .. } => {
                format!("{storage}-storage-{}", hook.as_ref())
            }
            EventSpec::Secret { hook, .. } => format!("secret-{}", hook.as_ref()),
            EventSpec::Path(p) => p.clone(),
        }
    }

    /// Set the action's id (`JUJU_ACTION_UUID`); no effect on other events.
    pub fn with_action_id(mut self, action_id: impl Into<String>) -> Self {
        if let EventSpec::Action { id, .. } = &mut self {
            *id = Some(action_id.into());
        }
        self
    }
}

pub fn install() -> EventSpec {
    EventSpec::Unit(UnitHook::Install)
}
pub fn start() -> EventSpec {
    EventSpec::Unit(UnitHook::Start)
}
pub fn stop() -> EventSpec {
    EventSpec::Unit(UnitHook::Stop)
}
pub fn remove() -> EventSpec {
    EventSpec::Unit(UnitHook::Remove)
}
pub fn config_changed() -> EventSpec {
    EventSpec::Unit(UnitHook::ConfigChanged)
}
pub fn upgrade_charm() -> EventSpec {
    EventSpec::Unit(UnitHook::UpgradeCharm)
}
pub fn update_status() -> EventSpec {
    EventSpec::Unit(UnitHook::UpdateStatus)
}
/// Sent to the leader only: the State must have `leader: true`.
pub fn leader_elected() -> EventSpec {
    EventSpec::Unit(UnitHook::LeaderElected)
}
/// Sent to non-leaders (Juju 3.x).
pub fn leader_settings_changed() -> EventSpec {
    EventSpec::Unit(UnitHook::LeaderSettingsChanged)
}
pub fn pre_series_upgrade() -> EventSpec {
    EventSpec::Unit(UnitHook::PreSeriesUpgrade)
}
pub fn post_series_upgrade() -> EventSpec {
    EventSpec::Unit(UnitHook::PostSeriesUpgrade)
}
pub fn collect_metrics() -> EventSpec {
    EventSpec::Unit(UnitHook::CollectMetrics)
}

fn relation(hook: RelationHook, id: u32, remote_unit: Option<u32>) -> EventSpec {
    EventSpec::Relation {
        hook,
        id,
        remote_unit,
        departing: Departing::Remote,
    }
}

/// `JUJU_REMOTE_UNIT` is empty, as Juju leaves it.
pub fn relation_created(id: u32) -> EventSpec {
    relation(RelationHook::Created, id, None)
}
/// Remote unit `unit` (already in the State's relation) joined.
pub fn relation_joined(id: u32, unit: u32) -> EventSpec {
    relation(RelationHook::Joined, id, Some(unit))
}
/// A remote unit's bag changed (`Some(n)`), or the remote application's
/// bag (`None`: `JUJU_REMOTE_UNIT` is empty).
pub fn relation_changed(id: u32, unit: Option<u32>) -> EventSpec {
    relation(RelationHook::Changed, id, unit)
}
/// Remote unit `unit` left: it is already missing from `relation-list`.
/// After a successful run it moves to the relation's `departed_units`.
pub fn relation_departed(id: u32, unit: u32) -> EventSpec {
    relation(RelationHook::Departed, id, Some(unit))
}
/// This unit is being removed: departed for remote unit `unit`, with
/// `JUJU_DEPARTING_UNIT` naming this unit.
pub fn relation_departed_by_this_unit(id: u32, unit: u32) -> EventSpec {
    EventSpec::Relation {
        hook: RelationHook::Departed,
        id,
        remote_unit: Some(unit),
        departing: Departing::ThisUnit,
    }
}
/// The relation is gone: `relation-ids` no longer lists it. After a
/// successful run it is removed from the State.
pub fn relation_broken(id: u32) -> EventSpec {
    relation(RelationHook::Broken, id, None)
}

/// Run action `name` with `params` (a JSON object, or `Value::Null` for
/// none); Juju validates them against actions.yaml first.
pub fn action(name: impl Into<String>, params: Value) -> EventSpec {
    EventSpec::Action {
        name: name.into(),
        params,
        id: None,
    }
}

fn storage(hook: StorageHook, name: &str, index: u32, location: &str) -> EventSpec {
    EventSpec::Storage {
        hook,
        storage: name.to_string(),
        index,
        location: location.to_string(),
    }
}
pub fn storage_attached(name: &str, index: u32, location: &str) -> EventSpec {
    storage(StorageHook::Attached, name, index, location)
}
pub fn storage_detaching(name: &str, index: u32, location: &str) -> EventSpec {
    storage(StorageHook::Detaching, name, index, location)
}

fn secret(hook: SecretHook, id: &str, label: &str, revision: Option<u32>) -> EventSpec {
    EventSpec::Secret {
        hook,
        id: id.to_string(),
        label: label.to_string(),
        revision,
    }
}
pub fn secret_changed(id: &str, label: &str) -> EventSpec {
    secret(SecretHook::Changed, id, label, None)
}
pub fn secret_rotate(id: &str, label: &str) -> EventSpec {
    secret(SecretHook::Rotate, id, label, None)
}
/// Juju exports the revision for expired and remove only.
pub fn secret_expired(id: &str, label: &str, revision: u32) -> EventSpec {
    secret(SecretHook::Expired, id, label, Some(revision))
}
pub fn secret_remove(id: &str, label: &str, revision: u32) -> EventSpec {
    secret(SecretHook::Remove, id, label, Some(revision))
}

/// Dispatch an arbitrary path, e.g. `hooks/made-up-hook`.
pub fn dispatch_path(path: impl Into<String>) -> EventSpec {
    EventSpec::Path(path.into())
}
