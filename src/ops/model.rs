//! A typed, cached view of Juju for one dispatch, with Juju's access rules.
//!
//! Reads are cached for the dispatch (one `config-get`, one `is-leader`, one
//! read of each bag), so the charm can ask freely; writes go straight to the
//! backend and update the cache, so the charm reads its own writes as Juju's
//! hook context does.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::backend::{
    check_action_result_key, Backend, Bag, BagOwner, LogLevel, ModelError, Network, Port, Scope,
    SecretContent, SecretInfo, SecretRead, SecretRef, Status,
};
use super::event::{Name, RelationId};

/// The longest message handed to a hook tool (status-set, juju-log,
/// action-log, action-fail). Hook tools take the message as one argument and
/// Linux refuses to start a program with an argument over 128 KiB
/// (MAX_ARG_STRLEN), so a status quoting a 1 MiB value another application
/// sent would otherwise fail the hook, and every retry of it.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// `message` when it fits in [`MAX_MESSAGE_BYTES`]; else its start and its
/// end (where messages say what to do) with the middle left out, cut at
/// character boundaries.
pub fn clamp_message(message: &str) -> Cow<'_, str> {
    if message.len() <= MAX_MESSAGE_BYTES {
        return Cow::Borrowed(message);
    }
    let mut head = MAX_MESSAGE_BYTES / 2;
    while !message.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = message.len() - MAX_MESSAGE_BYTES / 4;
    while !message.is_char_boundary(tail) {
        tail += 1;
    }
    Cow::Owned(format!(
        "{} …({} bytes left out)… {}",
        &message[..head],
        tail - head,
        &message[tail..]
    ))
}

fn clamp_status(status: &Status) -> Cow<'_, Status> {
    match clamp_message(&status.message) {
        Cow::Borrowed(_) => Cow::Borrowed(status),
        Cow::Owned(message) => Cow::Owned(Status::new(status.name, message)),
    }
}

/// What a unit learns from Juju that changes only through events the unit
/// itself sees: the relations on each endpoint (Juju runs `-relation-created`
/// for every relation before any other hook of it, and `-broken` last) and
/// the ports it opened (only the unit opens or closes its own ports).
/// Remembering them across dispatches spares a `relation-ids` per endpoint
/// and an `opened-ports` in every hook. An endpoint or the ports missing
/// here are simply read from Juju again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remembered {
    #[serde(default)]
    pub relations: BTreeMap<String, Vec<u32>>,
    /// As `opened-ports` prints them (`8080/tcp`).
    #[serde(default)]
    pub ports: Option<Vec<String>>,
}

pub struct Model<'b, E> {
    backend: &'b mut dyn Backend,
    unit: String,
    app: String,
    model: String,
    model_uuid: String,
    /// The relation whose `-broken` hook is running: Juju no longer lists it.
    breaking: Option<RelationId<E>>,
    /// A relation this unit is leaving (it is being removed: `-departed`
    /// with itself as the departing unit). Juju stops listing it once the
    /// unit has left its scope, with no hook to say so for a peer relation
    /// (never broken): its endpoint is read afresh from then on.
    leaving: Option<RelationId<E>>,
    config: Option<Map<String, Value>>,
    leader: Option<bool>,
    relation_ids: HashMap<String, Vec<u32>>,
    units: HashMap<(String, u32), Vec<String>>,
    remote_apps: HashMap<(String, u32), String>,
    bags: HashMap<(String, u32, BagOwner), Bag>,
    networks: HashMap<(String, Option<(String, u32)>), Network>,
    ports: Option<Vec<Port>>,
    /// Secret content read at the tracked revision in this dispatch, by
    /// (ID, label) as asked. In memory only, never stored.
    secrets: HashMap<(Option<String>, Option<String>), SecretContent>,
}

impl<'b, E: Name> Model<'b, E> {
    pub fn new(
        backend: &'b mut dyn Backend,
        unit: &str,
        model: &str,
        breaking: Option<RelationId<E>>,
    ) -> Self {
        let app = unit.split('/').next().unwrap_or(unit).to_string();
        Model {
            backend,
            unit: unit.to_string(),
            app,
            model: model.to_string(),
            model_uuid: String::new(),
            breaking,
            leaving: None,
            config: None,
            leader: None,
            relation_ids: HashMap::new(),
            units: HashMap::new(),
            remote_apps: HashMap::new(),
            bags: HashMap::new(),
            networks: HashMap::new(),
            ports: None,
            secrets: HashMap::new(),
        }
    }

    /// Start from what earlier dispatches learnt (see [`Remembered`]).
    pub(crate) fn recall(&mut self, remembered: Remembered) {
        for (endpoint, mut ids) in remembered.relations {
            ids.sort_unstable();
            ids.dedup();
            self.relation_ids.insert(endpoint, ids);
        }
        self.ports = remembered.ports.and_then(|ports| {
            let mut parsed = ports
                .iter()
                .map(|p| p.parse::<Port>())
                .collect::<Result<Vec<_>, _>>()
                .ok()?;
            parsed.sort();
            Some(parsed)
        });
    }

    /// A relation hook names its relation: it is live (unless breaking) even
    /// when Juju's answer for its endpoint was remembered from before.
    pub(crate) fn note_relation(&mut self, rel: RelationId<E>) {
        if let Some(ids) = self.relation_ids.get_mut(rel.endpoint.as_ref()) {
            if let Err(at) = ids.binary_search(&rel.id) {
                ids.insert(at, rel.id);
            }
        }
    }

    /// This unit is leaving `rel` (see `leaving`).
    pub(crate) fn note_leaving(&mut self, rel: RelationId<E>) {
        self.leaving = Some(rel);
    }

    /// What this dispatch knows, for the next one to recall.
    pub(crate) fn remembered(&self) -> Remembered {
        let breaking = self
            .breaking
            .map(|r| (r.endpoint.as_ref().to_string(), r.id));
        let leaving = self.leaving.map(|r| r.endpoint.as_ref().to_string());
        let relations = self
            .relation_ids
            .iter()
            .filter(|(endpoint, _)| leaving.as_ref() != Some(*endpoint))
            .map(|(endpoint, ids)| {
                let live = ids
                    .iter()
                    .copied()
                    .filter(|&id| breaking.as_ref() != Some(&(endpoint.clone(), id)))
                    .collect();
                (endpoint.clone(), live)
            })
            .collect();
        Remembered {
            relations,
            ports: self
                .ports
                .as_ref()
                .map(|ports| ports.iter().map(Port::to_string).collect()),
        }
    }

    /// This unit, e.g. `wsgi-app/0`.
    pub fn unit_name(&self) -> &str {
        &self.unit
    }

    /// This application, e.g. `wsgi-app`.
    pub fn app_name(&self) -> &str {
        &self.app
    }

    /// The model this unit is in (`JUJU_MODEL_NAME`).
    pub fn model_name(&self) -> &str {
        &self.model
    }

    /// With the model's UUID (`JUJU_MODEL_UUID`), which `model_uuid` gives.
    pub fn with_model_uuid(mut self, model_uuid: &str) -> Self {
        self.model_uuid = model_uuid.to_string();
        self
    }

    /// The model's UUID: unlike its name, never reused.
    pub fn model_uuid(&self) -> &str {
        &self.model_uuid
    }

    /// Every option that is set or has a default (one `config-get` per dispatch).
    pub fn config(&mut self) -> Result<&Map<String, Value>, ModelError> {
        if self.config.is_none() {
            self.config = Some(self.backend.config_get()?);
        }
        Ok(self.config.as_ref().expect("just filled"))
    }

    /// Whether this unit leads. Once Juju has said no, it stays no for the
    /// rest of the hook, as Juju's own hook context does.
    pub fn is_leader(&mut self) -> Result<bool, ModelError> {
        if let Some(known) = self.leader {
            return Ok(known);
        }
        let leader = self.backend.is_leader()?;
        self.leader = Some(leader);
        Ok(leader)
    }

    /// The live relations on an endpoint, in id order.
    pub fn relations(&mut self, endpoint: E) -> Result<Vec<RelationId<E>>, ModelError> {
        let name = endpoint.as_ref().to_string();
        if !self.relation_ids.contains_key(&name) {
            let mut ids = self.backend.relation_ids(&name)?;
            ids.sort_unstable();
            self.relation_ids.insert(name.clone(), ids);
        }
        let breaking = self.breaking;
        Ok(self.relation_ids[&name]
            .iter()
            .map(|&id| RelationId { endpoint, id })
            .filter(|r| Some(*r) != breaking)
            .collect())
    }

    /// The remote units in a relation (never this unit), sorted as Juju sorts them.
    pub fn relation_units(&mut self, rel: RelationId<E>) -> Result<&[String], ModelError> {
        let key = (rel.endpoint.as_ref().to_string(), rel.id);
        if !self.units.contains_key(&key) {
            let units = self.backend.relation_list(&key.0, key.1)?;
            self.units.insert(key.clone(), units);
        }
        Ok(&self.units[&key])
    }

    /// The application at the other end of a relation.
    pub fn remote_app(&mut self, rel: RelationId<E>) -> Result<&str, ModelError> {
        let key = (rel.endpoint.as_ref().to_string(), rel.id);
        if !self.remote_apps.contains_key(&key) {
            let app = self.backend.relation_remote_app(&key.0, key.1)?;
            self.remote_apps.insert(key.clone(), app);
        }
        Ok(&self.remote_apps[&key])
    }

    /// Remember the remote application when the hook environment already
    /// names it, saving a `relation-list --app` call.
    pub fn note_remote_app(&mut self, rel: RelationId<E>, app: &str) {
        if !app.is_empty() {
            let key = (rel.endpoint.as_ref().to_string(), rel.id);
            self.remote_apps
                .entry(key)
                .or_insert_with(|| app.to_string());
        }
    }

    /// Read a bag. Our own application's bag is the leader's alone, as in
    /// Juju, except on a peer relation, where every unit may read it.
    pub fn relation_data(
        &mut self,
        rel: RelationId<E>,
        owner: &BagOwner,
    ) -> Result<&Bag, ModelError> {
        if *owner == BagOwner::App(self.app.clone()) && !self.is_leader()? {
            // A peer relation's remote application is our own.
            let app = self.app.clone();
            if self.remote_app(rel)? != app {
                return Err(ModelError::AccessDenied(format!(
                    "{} is not leader and cannot read its own application databag",
                    self.unit
                )));
            }
        }
        let key = (rel.endpoint.as_ref().to_string(), rel.id, owner.clone());
        if !self.bags.contains_key(&key) {
            let bag = self.backend.relation_get(&key.0, key.1, owner)?;
            self.bags.insert(key.clone(), bag);
        }
        Ok(&self.bags[&key])
    }

    /// Merge `changes` into our unit's (or, as leader, our application's)
    /// bag; an empty value deletes a key. Keys that already hold the value
    /// are not sent again.
    pub fn update_relation_data(
        &mut self,
        rel: RelationId<E>,
        scope: Scope,
        changes: &Bag,
    ) -> Result<(), ModelError> {
        let owner = match scope {
            Scope::Unit => BagOwner::Unit(self.unit.clone()),
            Scope::App => {
                if !self.is_leader()? {
                    return Err(ModelError::NotLeader(format!(
                        "{} cannot write relation settings of {}",
                        self.unit, self.app
                    )));
                }
                BagOwner::App(self.app.clone())
            }
        };
        let current = self.relation_data(rel, &owner)?.clone();
        let delta: Bag = changes
            .iter()
            .filter(|(k, v)| match current.get(*k) {
                Some(old) => old != *v,
                None => !v.is_empty(),
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if delta.is_empty() {
            return Ok(());
        }
        self.backend
            .relation_set(rel.endpoint.as_ref(), rel.id, scope, &delta)?;
        let key = (rel.endpoint.as_ref().to_string(), rel.id, owner);
        let bag = self.bags.entry(key).or_default();
        for (k, v) in delta {
            if v.is_empty() {
                bag.remove(&k);
            } else {
                bag.insert(k, v);
            }
        }
        Ok(())
    }

    /// `network-get` for a binding, optionally as seen by one relation.
    pub fn network(
        &mut self,
        binding: &str,
        rel: Option<RelationId<E>>,
    ) -> Result<&Network, ModelError> {
        let rel_key = rel.map(|r| (r.endpoint.as_ref().to_string(), r.id));
        let key = (binding.to_string(), rel_key.clone());
        if !self.networks.contains_key(&key) {
            let rel_arg = rel_key.as_ref().map(|(e, i)| (e.as_str(), *i));
            let net = self.backend.network_get(binding, rel_arg)?;
            self.networks.insert(key.clone(), net);
        }
        Ok(&self.networks[&key])
    }

    /// The ports this unit has open, including this hook's pending changes.
    pub fn opened_ports(&mut self) -> Result<&[Port], ModelError> {
        if self.ports.is_none() {
            let mut ports = self.backend.opened_ports()?;
            ports.sort();
            self.ports = Some(ports);
        }
        Ok(self.ports.as_deref().expect("just filled"))
    }

    /// Make exactly `wanted` open: open what is missing, close the rest.
    pub fn set_ports(&mut self, wanted: &[Port]) -> Result<(), ModelError> {
        let open = self.opened_ports()?.to_vec();
        for port in open.iter().filter(|p| !wanted.contains(p)) {
            self.backend.close_port(port)?;
        }
        for port in wanted.iter().filter(|p| !open.contains(p)) {
            self.backend.open_port(port)?;
        }
        let mut now = wanted.to_vec();
        now.sort();
        now.dedup();
        self.ports = Some(now);
        Ok(())
    }

    /// A secret's content, by ID, by the label this unit bound to it, or by
    /// ID while binding a label (a consumer's first read, after which the
    /// label alone finds it).
    ///
    /// [`SecretRead::Tracked`] returns the revision this unit tracks and is
    /// cached for the dispatch; [`SecretRead::Refresh`] moves to the latest
    /// (a `secret-changed` handler's read) and, when Juju answers that this
    /// unit owns the secret (owners may not refresh, and always read the
    /// latest), is retried once without it, as ops' data libraries do;
    /// [`SecretRead::Peek`] shows the latest without tracking it.
    ///
    /// Errors name the secret, never its content:
    /// [`ModelError::SecretNotFound`], [`ModelError::AccessDenied`] (not
    /// granted to this unit, or the grant was revoked), …
    pub fn secret_content(
        &mut self,
        secret: SecretRef<'_>,
        read: SecretRead,
    ) -> Result<SecretContent, ModelError> {
        let key = (
            secret.id().map(str::to_string),
            secret.label().map(str::to_string),
        );
        if read == SecretRead::Tracked {
            if let Some(content) = self.secrets.get(&key) {
                return Ok(content.clone());
            }
        }
        let content = match self.backend.secret_get(secret, read) {
            Err(ModelError::SecretOwnerCannotRefresh(_)) if read == SecretRead::Refresh => {
                self.backend.secret_get(secret, SecretRead::Tracked)?
            }
            other => other?,
        };
        match read {
            SecretRead::Peek => {}
            SecretRead::Tracked => {
                self.secrets.insert(key, content.clone());
            }
            SecretRead::Refresh => {
                // What was read at the old revision, under any name, is stale.
                self.secrets.clear();
                self.secrets.insert(key, content.clone());
            }
        }
        Ok(content)
    }

    /// `secret-info-get` for a secret this unit (or its application) owns.
    pub fn secret_info(&mut self, secret: SecretRef<'_>) -> Result<SecretInfo, ModelError> {
        self.backend.secret_info_get(secret)
    }

    /// The IDs of the secrets this unit (or, as leader, its application) owns.
    pub fn secret_ids(&mut self) -> Result<Vec<String>, ModelError> {
        self.backend.secret_ids()
    }

    /// Set this unit's status now (Juju shows it at once, even if the hook fails).
    pub fn set_unit_status(&mut self, status: &Status) -> Result<(), ModelError> {
        self.backend.status_set(Scope::Unit, &clamp_status(status))
    }

    /// Set the application's status; only the leader may.
    pub fn set_app_status(&mut self, status: &Status) -> Result<(), ModelError> {
        if !self.is_leader()? {
            return Err(ModelError::NotLeader(format!(
                "{} cannot set the application status",
                self.unit
            )));
        }
        self.backend.status_set(Scope::App, &clamp_status(status))
    }

    pub fn unit_status(&mut self) -> Result<Status, ModelError> {
        self.backend.status_get(Scope::Unit)
    }

    pub fn set_workload_version(&mut self, version: &str) -> Result<(), ModelError> {
        self.backend.application_version_set(version)
    }

    /// Log to Juju's debug log. Never pass secrets here.
    pub fn log(&mut self, level: LogLevel, message: &str) {
        let message = &*clamp_message(message);
        // A failing juju-log must not fail the hook, nor recurse into logging.
        if self.backend.juju_log(level, message).is_err() {
            eprintln!("{level}: {message}");
        }
    }

    pub(crate) fn action_params(&mut self) -> Result<Map<String, Value>, ModelError> {
        self.backend.action_get()
    }

    pub(crate) fn action_set(
        &mut self,
        results: &BTreeMap<String, String>,
    ) -> Result<(), ModelError> {
        for key in results.keys() {
            check_action_result_key(key)?;
        }
        self.backend.action_set(results)
    }

    pub(crate) fn action_log(&mut self, message: &str) -> Result<(), ModelError> {
        self.backend.action_log(&clamp_message(message))
    }

    pub(crate) fn action_fail(&mut self, message: &str) -> Result<(), ModelError> {
        self.backend.action_fail(&clamp_message(message))
    }
}
