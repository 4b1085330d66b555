//! [`MemoryBackend`]: the `ops` [`Backend`] answered from a [`State`] instead
//! of hook tools, with the rules Juju's hook context applies
//! (shared/reference/juju-hook-tools.md §1.6 and §3):
//!
//! - `relation-set`, `open-port` and `close-port` are buffered and applied
//!   only if the dispatch succeeds; reads see the pending writes;
//! - `status-set`, `application-version-set` and logs take effect at once,
//!   even if the dispatch then fails;
//! - the application's own bag is the leader's (every peer may read it on a
//!   peer relation); app status is the leader's;
//! - `relation-ids` leaves out the relation being broken, `relation-list`
//!   the unit departing, and both sort as strings;
//! - failures come back as the same [`ModelError`]s `HookTools` makes of
//!   Juju's stderr and exit codes.
//!
//! Every call is recorded as the [`ToolCall`] `HookTools` would run, so
//! tests can count and read them.

use std::collections::BTreeMap;
use std::fmt::Display;

use serde_json::{Map, Value};
use wsgi_app::ops::{
    backend::check_action_result_key, Backend, Bag, BagOwner, LogLevel, ModelError, Network, Port,
    RelationId, Scope, SecretContent, SecretInfo, SecretRead, SecretRef, Status, ToolCall,
};

use crate::context::ActionOutput;
use crate::schema::CharmMeta;
use crate::secrets::{self, Asker};
use crate::state::{default_network, merge_bag, Relation, State};

/// What the running hook is about, as Juju's hook context knows it.
#[derive(Debug, Clone, Default)]
pub struct HookScope {
    /// The unit `relation-list` no longer shows (the one departing).
    pub hidden_unit: Option<(u32, String)>,
    /// The relation whose `-broken` hook runs: `relation-ids` skips it and
    /// `relation-list` is empty for it.
    pub breaking: Option<u32>,
    /// The action's validated params, when an action runs.
    pub action: Option<Map<String, Value>>,
    /// Juju before 3.0.3: the secret tools do not exist.
    pub secrets_unavailable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Side {
    Unit,
    App,
}

/// What a dispatch did that is not part of the next State.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub tool_calls: Vec<String>,
    pub logs: Vec<(LogLevel, String)>,
    pub unit_status_history: Vec<Status>,
    pub app_status_history: Vec<Status>,
    pub action: Option<ActionOutput>,
}

/// The in-memory Juju for one dispatch.
pub struct MemoryBackend<'m> {
    meta: &'m CharmMeta,
    state: State,
    unit: String,
    app: String,
    scope: HookScope,
    pending_bags: BTreeMap<(u32, Side), Bag>,
    /// Port → `true` to open, `false` to close, at commit.
    pending_ports: BTreeMap<Port, bool>,
    record: Record,
}

/// Quote an argument the way a shell user would type it, so a recorded
/// call reads unambiguously (`status-set ... -- 'serving r2'`).
fn quote(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// Juju echoes the `-r` value as the charm spelled it.
fn relation_not_found(flag_value: impl Display) -> ModelError {
    ModelError::RelationNotFound(format!(
        "invalid value \"{flag_value}\" for flag -r: relation not found"
    ))
}

impl<'m> MemoryBackend<'m> {
    /// Juju for one hook of `state`'s unit. What metadata decides is
    /// filled in here (a peer relation's application, interfaces), so a
    /// test may build the backend directly from a State.
    pub fn new(meta: &'m CharmMeta, mut state: State, scope: HookScope) -> Self {
        for rel in &mut state.relations {
            if rel.remote_app.is_empty() && meta.is_peer(&rel.endpoint) {
                rel.remote_app = meta.name.clone();
            }
            if let (true, Some(endpoint)) =
                (rel.interface.is_empty(), meta.endpoints.get(&rel.endpoint))
            {
                rel.interface = endpoint.interface.clone();
            }
        }
        let unit = format!("{}/{}", meta.name, state.unit_id);
        let record = Record {
            action: scope.action.as_ref().map(|params| ActionOutput {
                params: params.clone(),
                ..ActionOutput::default()
            }),
            ..Record::default()
        };
        MemoryBackend {
            meta,
            state,
            app: meta.name.clone(),
            unit,
            scope,
            pending_bags: BTreeMap::new(),
            pending_ports: BTreeMap::new(),
            record,
        }
    }

    fn call(&mut self, call: ToolCall) {
        let line = std::iter::once(call.tool().to_string())
            .chain(call.args().iter().map(|a| quote(a)))
            .collect::<Vec<_>>()
            .join(" ");
        self.record.tool_calls.push(line);
    }

    fn relation(&self, endpoint: &str, id: u32) -> Result<&Relation, ModelError> {
        // Juju reads only the number after the last ':' (reference §3.0).
        self.state
            .relation(id)
            .ok_or_else(|| relation_not_found(RelationId { endpoint, id }))
    }

    fn action(&mut self) -> Result<&mut ActionOutput, ModelError> {
        self.record.action.as_mut().ok_or(ModelError::NotAnAction)
    }

    /// Whether the charm has ever set the unit's status (Juju's rule for
    /// what to show around install and start).
    pub fn charm_set_unit_status(&self) -> bool {
        self.state.charm_set_unit_status
    }

    /// A status Juju itself sets around a hook (`installing charm software`,
    /// `unknown` after `start`, ...): shown at once, not a tool call.
    pub fn juju_sets_unit_status(&mut self, status: Status) {
        self.record.unit_status_history.push(status.clone());
        self.state.unit_status = status;
    }

    /// The state as the charm left it, and the record of what it did.
    /// Buffered changes are applied only when the dispatch `succeeded`.
    pub fn finish(mut self, succeeded: bool) -> (State, Record) {
        if succeeded {
            for ((id, side), changes) in std::mem::take(&mut self.pending_bags) {
                if let Some(rel) = self.state.relation_mut(id) {
                    let bag = match side {
                        Side::Unit => &mut rel.local_unit_data,
                        Side::App => &mut rel.local_app_data,
                    };
                    merge_bag(bag, &changes);
                }
            }
            for (port, open) in std::mem::take(&mut self.pending_ports) {
                if open {
                    self.state.opened_ports.insert(port);
                } else {
                    self.state.opened_ports.remove(&port);
                }
            }
        }
        (self.state, self.record)
    }

    /// The ports as this hook sees them: committed plus pending.
    fn effective_ports(&self) -> Vec<Port> {
        let mut ports: Vec<Port> = self
            .state
            .opened_ports
            .iter()
            .filter(|p| self.pending_ports.get(p) != Some(&false))
            .copied()
            .collect();
        ports.extend(
            self.pending_ports
                .iter()
                .filter(|(_, open)| **open)
                .map(|(p, _)| *p),
        );
        ports.sort();
        ports.dedup();
        ports
    }

    fn own_bag(&self, rel: &Relation, side: Side) -> Bag {
        let mut bag = match side {
            Side::Unit => rel.local_unit_data.clone(),
            Side::App => rel.local_app_data.clone(),
        };
        if let Some(pending) = self.pending_bags.get(&(rel.id, side)) {
            merge_bag(&mut bag, pending);
        }
        bag
    }
}

impl Backend for MemoryBackend<'_> {
    fn config_get(&mut self) -> Result<Map<String, Value>, ModelError> {
        self.call(ToolCall::config_get());
        // Checked before the run started; a failure here is a harness bug.
        self.meta
            .config_values(&self.state.config)
            .map_err(|e| ModelError::Invalid(e.to_string()))
    }

    fn is_leader(&mut self) -> Result<bool, ModelError> {
        self.call(ToolCall::is_leader());
        Ok(self.state.leader)
    }

    fn relation_ids(&mut self, endpoint: &str) -> Result<Vec<u32>, ModelError> {
        self.call(ToolCall::relation_ids(endpoint));
        let mut ids: Vec<(String, u32)> = self
            .state
            .relations
            .iter()
            .filter(|r| r.endpoint == endpoint && Some(r.id) != self.scope.breaking)
            .map(|r| (r.juju_id(), r.id))
            .collect();
        // Juju sorts the `ep:N` strings: db:10 comes before db:2.
        ids.sort();
        Ok(ids.into_iter().map(|(_, id)| id).collect())
    }

    fn relation_list(&mut self, endpoint: &str, id: u32) -> Result<Vec<String>, ModelError> {
        self.call(ToolCall::relation_list(endpoint, id));
        let rel = self.relation(endpoint, id)?;
        if self.scope.breaking == Some(id) {
            return Ok(Vec::new());
        }
        let hidden = self
            .scope
            .hidden_unit
            .as_ref()
            .filter(|(rel_id, _)| *rel_id == id)
            .map(|(_, unit)| unit.as_str());
        let mut units: Vec<String> = rel
            .remote_units
            .keys()
            .map(|n| rel.remote_unit_name(*n))
            .filter(|u| Some(u.as_str()) != hidden)
            .collect();
        units.sort();
        Ok(units)
    }

    fn relation_remote_app(&mut self, endpoint: &str, id: u32) -> Result<String, ModelError> {
        self.call(ToolCall::relation_remote_app(endpoint, id));
        Ok(self.relation(endpoint, id)?.remote_app.clone())
    }

    fn relation_get(
        &mut self,
        endpoint: &str,
        id: u32,
        owner: &BagOwner,
    ) -> Result<Bag, ModelError> {
        self.call(ToolCall::relation_get(endpoint, id, owner));
        let rel = self.relation(endpoint, id)?;
        let not_found = |what: &str, name: &str| {
            ModelError::ToolFailed {
            tool: "relation-get".into(),
            code: 1,
            message: format!(
                "cannot read settings for {what} \"{name}\" in relation \"{endpoint}:{id}\": {what} \"{name}\": settings not found"
            ),
        }
        };
        match owner {
            BagOwner::Unit(name) if *name == self.unit => Ok(self.own_bag(rel, Side::Unit)),
            BagOwner::Unit(name) => {
                let Some((app, n)) = name.split_once('/') else {
                    return Err(ModelError::Usage {
                        tool: "relation-get".into(),
                        message: format!("expected unit name, got application name {name:?}"),
                    });
                };
                let n: Option<u32> = n.parse().ok();
                n.filter(|_| app == rel.remote_app)
                    .and_then(|n| rel.remote_units.get(&n).or(rel.departed_units.get(&n)))
                    .cloned()
                    .ok_or_else(|| not_found("unit", name))
            }
            BagOwner::App(name) if *name == self.app => {
                // Peers share the app bag; elsewhere it is the leader's.
                if !self.meta.is_peer(&rel.endpoint) && !self.state.leader {
                    return Err(ModelError::AccessDenied("permission denied".into()));
                }
                Ok(self.own_bag(rel, Side::App))
            }
            BagOwner::App(name) if *name == rel.remote_app => Ok(rel.remote_app_data.clone()),
            BagOwner::App(name) => Err(not_found("application", name)),
        }
    }

    fn relation_set(
        &mut self,
        endpoint: &str,
        id: u32,
        scope: Scope,
        data: &Bag,
    ) -> Result<(), ModelError> {
        if data.is_empty() {
            // HookTools sends nothing for an empty change.
            return Ok(());
        }
        self.call(ToolCall::relation_set(endpoint, id, scope, data));
        self.relation(endpoint, id)?;
        let side = match scope {
            Scope::Unit => Side::Unit,
            Scope::App if self.state.leader => Side::App,
            Scope::App => {
                return Err(ModelError::NotLeader(
                    "cannot write relation settings".into(),
                ))
            }
        };
        merge_pending(self.pending_bags.entry((id, side)).or_default(), data);
        Ok(())
    }

    fn status_get(&mut self, scope: Scope) -> Result<Status, ModelError> {
        self.call(ToolCall::status_get(scope));
        match scope {
            Scope::Unit => Ok(self.state.unit_status.clone()),
            Scope::App if self.state.leader => Ok(self.state.app_status.clone()),
            Scope::App => Err(ModelError::NotLeader(
                "finding application status: this unit is not the leader".into(),
            )),
        }
    }

    fn status_set(&mut self, scope: Scope, status: &Status) -> Result<(), ModelError> {
        self.call(ToolCall::status_set(scope, status));
        if !status.name.is_settable() {
            return Err(ModelError::Usage {
                tool: "status-set".into(),
                message: format!(
                    "invalid status {:?}, expected one of [maintenance blocked waiting active]",
                    status.name.as_ref()
                ),
            });
        }
        match scope {
            Scope::Unit => {
                self.state.unit_status = status.clone();
                self.state.charm_set_unit_status = true;
                self.record.unit_status_history.push(status.clone());
            }
            Scope::App if self.state.leader => {
                self.state.app_status = status.clone();
                self.record.app_status_history.push(status.clone());
            }
            Scope::App => return Err(ModelError::NotLeader("this unit is not the leader".into())),
        }
        Ok(())
    }

    fn application_version_set(&mut self, version: &str) -> Result<(), ModelError> {
        self.call(ToolCall::application_version_set(version));
        self.state.workload_version = version.to_string();
        Ok(())
    }

    fn juju_log(&mut self, level: LogLevel, message: &str) -> Result<(), ModelError> {
        self.call(ToolCall::juju_log(level, message));
        self.record.logs.push((level, message.to_string()));
        Ok(())
    }

    fn action_get(&mut self) -> Result<Map<String, Value>, ModelError> {
        self.call(ToolCall::action_get());
        Ok(self.action()?.params.clone())
    }

    fn action_set(&mut self, results: &BTreeMap<String, String>) -> Result<(), ModelError> {
        if results.is_empty() {
            return Ok(());
        }
        self.call(ToolCall::action_set(results));
        let action = self.action()?;
        for key in results.keys() {
            check_action_result_key(key)?;
        }
        action
            .results
            .extend(results.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(())
    }

    fn action_log(&mut self, message: &str) -> Result<(), ModelError> {
        self.call(ToolCall::action_log(message));
        self.action()?.logs.push(message.to_string());
        Ok(())
    }

    fn action_fail(&mut self, message: &str) -> Result<(), ModelError> {
        self.call(ToolCall::action_fail(message));
        self.action()?.failure = Some(message.to_string());
        Ok(())
    }

    fn open_port(&mut self, port: &Port) -> Result<(), ModelError> {
        self.call(ToolCall::open_port(port));
        let conflict = self.effective_ports().into_iter().find(|open| {
            open != port
                && open.protocol == port.protocol
                && open.from <= port.to
                && port.from <= open.to
        });
        if let Some(other) = conflict {
            return Err(ModelError::ToolFailed {
                tool: "open-port".into(),
                code: 1,
                message: format!(
                    "cannot open {port} (unit {:?}): port range conflicts with {other} (unit {:?})",
                    self.unit, self.unit
                ),
            });
        }
        if self.state.opened_ports.contains(port) {
            // Opening what is open cancels a pending close, nothing more.
            self.pending_ports.remove(port);
        } else {
            self.pending_ports.insert(*port, true);
        }
        Ok(())
    }

    fn close_port(&mut self, port: &Port) -> Result<(), ModelError> {
        self.call(ToolCall::close_port(port));
        if self.state.opened_ports.contains(port) {
            self.pending_ports.insert(*port, false);
        } else {
            self.pending_ports.remove(port);
        }
        Ok(())
    }

    fn opened_ports(&mut self) -> Result<Vec<Port>, ModelError> {
        self.call(ToolCall::opened_ports());
        Ok(self.effective_ports())
    }

    fn network_get(
        &mut self,
        binding: &str,
        relation: Option<(&str, u32)>,
    ) -> Result<Network, ModelError> {
        let relation_id = relation.map(|(_, id)| id);
        self.call(ToolCall::network_get(binding, relation_id));
        if let Some(id) = relation_id {
            self.state
                .relation(id)
                .ok_or_else(|| relation_not_found(id))?;
        }
        if let Some(network) = self.state.networks.get(binding) {
            return Ok(network.clone());
        }
        let declared =
            self.meta.endpoints.contains_key(binding) || self.meta.extra_bindings.contains(binding);
        if declared {
            Ok(default_network())
        } else {
            Err(ModelError::ToolFailed {
                tool: "network-get".into(),
                code: 1,
                message: format!("no network config found for binding {binding:?}"),
            })
        }
    }

    // Secrets: the rules live in `crate::secrets`.

    fn secret_get(
        &mut self,
        secret: SecretRef<'_>,
        read: SecretRead,
    ) -> Result<SecretContent, ModelError> {
        if self.scope.secrets_unavailable {
            return Err(ModelError::ToolMissing {
                tool: "secret-get".into(),
            });
        }
        self.call(ToolCall::secret_get(secret, read));
        let asker = Asker {
            app: &self.app,
            unit: &self.unit,
            leader: self.state.leader,
        };
        secrets::secret_get(
            &mut self.state.secrets,
            &self.state.relations,
            &asker,
            secret,
            read,
        )
    }

    fn secret_info_get(&mut self, secret: SecretRef<'_>) -> Result<SecretInfo, ModelError> {
        if self.scope.secrets_unavailable {
            return Err(ModelError::ToolMissing {
                tool: "secret-info-get".into(),
            });
        }
        self.call(ToolCall::secret_info_get(secret));
        let asker = Asker {
            app: &self.app,
            unit: &self.unit,
            leader: self.state.leader,
        };
        secrets::secret_info_get(&mut self.state.secrets, &asker, secret)
    }

    fn secret_ids(&mut self) -> Result<Vec<String>, ModelError> {
        if self.scope.secrets_unavailable {
            return Err(ModelError::ToolMissing {
                tool: "secret-ids".into(),
            });
        }
        self.call(ToolCall::secret_ids());
        let asker = Asker {
            app: &self.app,
            unit: &self.unit,
            leader: self.state.leader,
        };
        Ok(secrets::secret_ids(&self.state.secrets, &asker))
    }
}

/// Pending writes keep deletions (`""`) so they can hide committed keys.
fn merge_pending(pending: &mut Bag, changes: &Bag) {
    for (k, v) in changes {
        pending.insert(k.clone(), v.clone());
    }
}
