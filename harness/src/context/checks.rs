//! Consistency checks: a State or an event Juju could not produce is a
//! test-setup error, refused before the charm runs; and the membership
//! changes Juju makes once a hook is done.

use super::*;

impl<C: Charm> Context<C> {
    /// Check `state` against the charm's metadata and fill in what the
    /// metadata decides (interfaces, the peer relation's application).
    pub(super) fn checked(&self, mut state: State) -> Result<State, HarnessError> {
        self.meta.config_values(&state.config)?;
        if let Some(key) = state
            .model_config
            .keys()
            .find(|key| !MODEL_PROXY_KEYS.iter().any(|(known, _)| known == key))
        {
            return Err(HarnessError::Inconsistent(format!(
                "model config {key:?} is not modelled by the harness (known: {})",
                MODEL_PROXY_KEYS.map(|(known, _)| known).join(", ")
            )));
        }
        let mut seen = BTreeSet::new();
        let mut per_endpoint: BTreeMap<String, u32> = BTreeMap::new();
        for rel in &mut state.relations {
            if !seen.insert(rel.id) {
                return Err(HarnessError::Inconsistent(format!(
                    "two relations have id {}",
                    rel.id
                )));
            }
            let Some(endpoint) = self.meta.endpoints.get(&rel.endpoint) else {
                return Err(HarnessError::Inconsistent(format!(
                    "relation {} is on endpoint {:?}, which metadata.yaml does not declare (known: {})",
                    rel.id,
                    rel.endpoint,
                    self.meta.endpoints.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            };
            if rel.interface.is_empty() {
                rel.interface = endpoint.interface.clone();
            } else if rel.interface != endpoint.interface {
                return Err(HarnessError::Inconsistent(format!(
                    "relation {} says interface {:?}, but {} uses {:?}",
                    rel.id, rel.interface, rel.endpoint, endpoint.interface
                )));
            }
            let count = per_endpoint.entry(rel.endpoint.clone()).or_default();
            *count += 1;
            if endpoint.limit.is_some_and(|limit| *count > limit) {
                return Err(HarnessError::Inconsistent(format!(
                    "endpoint {} has limit {}; Juju would refuse relation {}",
                    rel.endpoint,
                    endpoint.limit.unwrap_or_default(),
                    rel.id
                )));
            }
            if self.meta.is_peer(&rel.endpoint) {
                if rel.remote_app.is_empty() {
                    rel.remote_app = self.meta.name.clone();
                }
                if rel.remote_app != self.meta.name {
                    return Err(HarnessError::Inconsistent(format!(
                        "peer relation {} must be with {}, not {}",
                        rel.id, self.meta.name, rel.remote_app
                    )));
                }
                if rel.remote_units.contains_key(&state.unit_id) {
                    return Err(HarnessError::Inconsistent(format!(
                        "peer relation {} lists this unit ({}) among its peers",
                        rel.id, state.unit_id
                    )));
                }
            } else if rel.remote_app.is_empty() || rel.remote_app == self.meta.name {
                return Err(HarnessError::Inconsistent(format!(
                    "relation {} needs a remote application other than {}",
                    rel.id, self.meta.name
                )));
            }
        }
        Ok(state)
    }

    pub(super) fn check_event(&self, event: &EventSpec, state: &State) -> Result<(), HarnessError> {
        match event {
            EventSpec::Unit(UnitHook::LeaderElected) if !state.leader => {
                Err(HarnessError::Inconsistent(
                    "leader-elected goes to the leader only: set State.leader = true".into(),
                ))
            }
            EventSpec::Unit(UnitHook::LeaderSettingsChanged) if state.leader => {
                Err(HarnessError::Inconsistent(
                    "leader-settings-changed goes to non-leaders only".into(),
                ))
            }
            EventSpec::Relation {
                id, remote_unit, ..
            } => {
                let rel = state.relation(*id).ok_or_else(|| {
                    HarnessError::Inconsistent(format!("the State has no relation {id}"))
                })?;
                if let Some(n) = remote_unit {
                    if !rel.remote_units.contains_key(n) {
                        return Err(HarnessError::Inconsistent(format!(
                            "relation {id} has no remote unit {n} (add it with State::add_remote_unit)"
                        )));
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Juju tells a unit of each relation before anything else happens on it
/// (`-created`) and of its end (`-broken`), and the framework trusts that
/// (`ops::Remembered`). A State whose relations differ from what the unit
/// was told is a history Juju cannot produce: refuse it, rather than let
/// the charm act on relations it could never have seen.
pub(super) fn check_relations_told(
    told: &Remembered,
    event: &EventSpec,
    state: &State,
) -> Result<(), HarnessError> {
    if matches!(
        event,
        EventSpec::Unit(UnitHook::Install | UnitHook::Start | UnitHook::UpgradeCharm)
    ) {
        return Ok(());
    }
    let named = match event {
        EventSpec::Relation { hook, id, .. } if *hook != RelationHook::Broken => Some(*id),
        _ => None,
    };
    // Juju runs every pending -created before any other hook, so other
    // relations may still be untold while one of those runs.
    let telling = matches!(
        event,
        EventSpec::Relation {
            hook: RelationHook::Created,
            ..
        }
    );
    for (endpoint, ids) in &told.relations {
        for rel in state.relations.iter().filter(|r| &r.endpoint == endpoint) {
            if !ids.contains(&rel.id) && named != Some(rel.id) && !telling {
                return Err(HarnessError::Inconsistent(format!(
                    "relation {endpoint}:{id} is in the State but the unit was never told of it: run on::relation_created({id}) first, as Juju does",
                    id = rel.id
                )));
            }
        }
        for id in ids {
            if !state.relations.iter().any(|r| r.id == *id) {
                return Err(HarnessError::Inconsistent(format!(
                    "relation {endpoint}:{id} is gone from the State but the unit never ran its -broken hook: run on::relation_broken({id}) on the State that still has it"
                )));
            }
        }
    }
    Ok(())
}

/// Membership changes Juju makes once a departed or broken hook is done:
/// the departed unit leaves the list (its data stays readable), and a
/// broken relation is gone.
pub(super) fn settle_relation_membership(event: &EventSpec, state: &mut State) {
    let EventSpec::Relation {
        hook,
        id,
        remote_unit,
        ..
    } = event
    else {
        return;
    };
    match hook {
        RelationHook::Departed => {
            if let (Some(rel), Some(n)) = (state.relation_mut(*id), remote_unit) {
                if let Some(bag) = rel.remote_units.remove(n) {
                    rel.departed_units.insert(*n, bag);
                }
            }
        }
        RelationHook::Broken => state.relations.retain(|r| r.id != *id),
        _ => {}
    }
}
