//! [`State`]: everything one unit's world holds before or after a dispatch,
//! as plain data. A test builds one, runs an event against it, and reads
//! the next one out of the [`crate::Output`].
//!
//! Two parts are not plain values, because they stand for things outside
//! Juju: the machine's filesystem ([`MachineDir`], a temporary directory
//! shared by every state chained from it) and the charm's SQLite store
//! ([`StoreImage`], the file's bytes, so each state carries its own copy).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use wsgi_app::ops::backend::{BindAddress, InterfaceAddress};
use wsgi_app::ops::{Bag, Network, Port, Status};
use wsgi_app::workload::service::ServiceSpec;

/// The address Juju seeds into this unit's bags and reports for its
/// bindings, from TEST-NET-1 (RFC 5737) so it never reaches a real host.
pub const UNIT_ADDRESS: &str = "192.0.2.0";

/// Build a relation bag from pairs: `bag([("port", "8080")])`.
pub fn bag<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Bag {
    pairs
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
}

/// A unit bag as Juju seeds it when the unit enters the relation:
/// `private-address`, `ingress-address` and `egress-subnets`.
pub fn seeded_unit_bag(address: &str) -> Bag {
    bag([
        ("private-address", address.to_string()),
        ("ingress-address", address.to_string()),
        ("egress-subnets", format!("{address}/32")),
    ])
}

/// The address a remote unit `n` gets in its seeded bag.
pub fn remote_unit_address(n: u32) -> String {
    format!("192.0.2.{}", (n % 253) + 1)
}

/// Merge `changes` into `bag`; an empty value deletes the key, as
/// `relation-set` does.
pub fn merge_bag(bag: &mut Bag, changes: &Bag) {
    for (k, v) in changes {
        if v.is_empty() {
            bag.remove(k);
        } else {
            bag.insert(k.clone(), v.clone());
        }
    }
}

/// One relation, seen from this unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// Juju's relation id (the `7` of `db:7`).
    pub id: u32,
    /// This charm's endpoint, as in metadata.yaml.
    pub endpoint: String,
    /// Filled from metadata.yaml when left empty.
    pub interface: String,
    /// The application at the other end; for a peer relation, this
    /// charm's own application (filled in when left empty).
    pub remote_app: String,
    pub local_unit_data: Bag,
    /// Readable and writable by the leader only (and by every peer on a
    /// peer relation).
    pub local_app_data: Bag,
    pub remote_app_data: Bag,
    /// Remote units by unit number (`postgresql/1` is `1`); for a peer
    /// relation, the *other* units of this application.
    pub remote_units: BTreeMap<u32, Bag>,
    /// Units that have departed; their data stays readable for the life of
    /// the relation, but they are no longer listed.
    pub departed_units: BTreeMap<u32, Bag>,
}

impl Relation {
    /// A relation to `remote_app` with one remote unit (`<remote_app>/0`)
    /// and Juju's seeded keys in both unit bags.
    pub fn new(id: u32, endpoint: impl Into<String>, remote_app: impl Into<String>) -> Self {
        Relation {
            id,
            endpoint: endpoint.into(),
            interface: String::new(),
            remote_app: remote_app.into(),
            local_unit_data: seeded_unit_bag(UNIT_ADDRESS),
            local_app_data: Bag::new(),
            remote_app_data: Bag::new(),
            remote_units: [(0, seeded_unit_bag(&remote_unit_address(0)))].into(),
            departed_units: BTreeMap::new(),
        }
    }

    /// A peer relation with no other units yet (add them with
    /// [`Relation::with_remote_units`]).
    pub fn peer(id: u32, endpoint: impl Into<String>) -> Self {
        Relation {
            remote_units: BTreeMap::new(),
            ..Relation::new(id, endpoint, "")
        }
    }

    pub fn with_interface(mut self, interface: impl Into<String>) -> Self {
        self.interface = interface.into();
        self
    }

    /// Exactly these remote units, each with only Juju's seeded keys.
    pub fn with_remote_units(mut self, units: impl IntoIterator<Item = u32>) -> Self {
        self.remote_units = units
            .into_iter()
            .map(|n| (n, seeded_unit_bag(&remote_unit_address(n))))
            .collect();
        self
    }

    /// Add (or update) remote unit `n` with `data` over the seeded keys.
    pub fn with_remote_unit_data(mut self, n: u32, data: Bag) -> Self {
        let bag = self
            .remote_units
            .entry(n)
            .or_insert_with(|| seeded_unit_bag(&remote_unit_address(n)));
        merge_bag(bag, &data);
        self
    }

    pub fn with_remote_app_data(mut self, data: Bag) -> Self {
        merge_bag(&mut self.remote_app_data, &data);
        self
    }

    pub fn with_local_unit_data(mut self, data: Bag) -> Self {
        merge_bag(&mut self.local_unit_data, &data);
        self
    }

    pub fn with_local_app_data(mut self, data: Bag) -> Self {
        merge_bag(&mut self.local_app_data, &data);
        self
    }

    /// `<endpoint>:<id>`, as `JUJU_RELATION_ID` spells it.
    pub fn juju_id(&self) -> String {
        format!("{}:{}", self.endpoint, self.id)
    }

    /// The full name of remote unit `n`.
    pub fn remote_unit_name(&self, n: u32) -> String {
        format!("{}/{n}", self.remote_app)
    }
}

/// The machine's filesystem: a temporary directory that stands for `/`.
/// Cloning shares it, so every state chained from one run sees the same
/// files (a machine's disk is not rolled back when a hook fails either).
#[derive(Clone)]
pub struct MachineDir(Arc<tempfile::TempDir>);

impl MachineDir {
    /// A new, empty machine root.
    pub fn new() -> Self {
        MachineDir(Arc::new(
            tempfile::Builder::new()
                .prefix("harness-machine-")
                .tempdir()
                .expect("cannot create a temporary machine root"),
        ))
    }

    /// The directory that stands for `/`.
    pub fn root(&self) -> &Path {
        self.0.path()
    }

    /// Where an absolute machine path lives: `path("/etc/x")` is `<root>/etc/x`.
    pub fn path(&self, absolute: impl AsRef<Path>) -> PathBuf {
        let p = absolute.as_ref();
        self.root().join(p.strip_prefix("/").unwrap_or(p))
    }
}

impl Default for MachineDir {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MachineDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MachineDir({})", self.root().display())
    }
}

impl PartialEq for MachineDir {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// The charm's SQLite store file, as bytes. Each state owns its copy, so
/// running two events from the same state does not mix their stores.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreImage(Arc<Vec<u8>>);

impl StoreImage {
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        StoreImage(Arc::new(bytes))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Open a private copy of the store and run `read` against it; changes
    /// made there are not kept. For assertions on the charm's tables.
    pub fn query<T>(
        &self,
        read: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let dir = tempfile::tempdir()
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        let path = dir.path().join("store.db");
        std::fs::write(&path, self.bytes())
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        let conn = rusqlite::Connection::open(&path)?;
        read(&conn)
    }
}

impl fmt::Debug for StoreImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreImage({} bytes)", self.0.len())
    }
}

/// What the fake service manager knows about one service.
#[derive(Debug, Clone, PartialEq, Eq)]
// A test record: matching on the spec matters more than its size.
#[allow(clippy::large_enum_variant)]
pub enum ServiceRecord {
    /// Running this spec (its fingerprint says which master it is).
    Running(ServiceSpec),
    Stopped,
    /// The last start failed and nothing was running before it.
    Failed(String),
}

/// One unit's world: what Juju knows about it, what is on its machine, and
/// what the charm stored.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// The operator's `juju config` values, over config.yaml's defaults.
    /// Checked against config.yaml before every run.
    pub config: BTreeMap<String, Value>,
    pub leader: bool,
    pub relations: Vec<Relation>,
    /// `network-get` answers by binding name; a binding (endpoint or
    /// extra-binding) not listed here gets [`default_network`].
    pub networks: BTreeMap<String, Network>,
    pub opened_ports: BTreeSet<Port>,
    pub unit_status: Status,
    pub app_status: Status,
    /// Whether the charm ever called `status-set` for the unit: if not,
    /// Juju sets the unit to `unknown` after `start`.
    pub charm_set_unit_status: bool,
    pub workload_version: String,
    pub model_name: String,
    pub model_uuid: String,
    /// The model's proxy settings (`juju model-config juju-http-proxy=...`),
    /// which reach each hook as `JUJU_CHARM_*_PROXY`; see
    /// [`MODEL_PROXY_KEYS`].
    pub model_config: BTreeMap<String, String>,
    /// This unit is `<app>/<unit_id>`.
    pub unit_id: u32,
    /// The charm's store, `None` before the first dispatch.
    pub stored_state: Option<StoreImage>,
    /// The machine's filesystem root.
    pub machine: MachineDir,
    /// The fake service manager's services, by name.
    pub services: BTreeMap<String, ServiceRecord>,
    /// Make the next service start fail (the old master, if any, keeps
    /// running). Cleared once a start has failed.
    pub service_fails_to_start: bool,
    /// The Juju secrets this unit owns or may be granted
    /// (`crate::secrets`).
    pub secrets: Vec<crate::secrets::Secret>,
}

impl Default for State {
    fn default() -> Self {
        State {
            config: BTreeMap::new(),
            leader: false,
            relations: Vec::new(),
            networks: BTreeMap::new(),
            opened_ports: BTreeSet::new(),
            unit_status: Status::unknown(),
            app_status: Status::unknown(),
            charm_set_unit_status: false,
            workload_version: String::new(),
            model_name: "test-model".into(),
            model_uuid: "00000000-0000-4000-8000-000000000000".into(),
            model_config: BTreeMap::new(),
            unit_id: 0,
            stored_state: None,
            machine: MachineDir::new(),
            services: BTreeMap::new(),
            service_fails_to_start: false,
            secrets: Vec::new(),
        }
    }
}

/// The model config keys the harness models, and the hook variable Juju
/// passes each in (always set, empty when the key is unset).
pub const MODEL_PROXY_KEYS: [(&str, &str); 4] = [
    ("juju-http-proxy", "JUJU_CHARM_HTTP_PROXY"),
    ("juju-https-proxy", "JUJU_CHARM_HTTPS_PROXY"),
    ("juju-ftp-proxy", "JUJU_CHARM_FTP_PROXY"),
    ("juju-no-proxy", "JUJU_CHARM_NO_PROXY"),
];

/// What `network-get` says for a binding the State does not describe.
pub fn default_network() -> Network {
    Network {
        bind_addresses: vec![BindAddress {
            mac_address: "00:00:5e:00:53:00".into(),
            interface_name: "eth0".into(),
            addresses: vec![InterfaceAddress {
                hostname: String::new(),
                value: UNIT_ADDRESS.into(),
                cidr: "192.0.2.0/24".into(),
            }],
        }],
        ingress_addresses: vec![UNIT_ADDRESS.into()],
        egress_subnets: vec![format!("{UNIT_ADDRESS}/32")],
    }
}

impl State {
    pub fn new() -> Self {
        Self::default()
    }

    /// Set one config option (checked against config.yaml when run).
    pub fn with_config(mut self, option: impl Into<String>, value: impl Into<Value>) -> Self {
        self.config.insert(option.into(), value.into());
        self
    }

    /// Set one model config key (one of [`MODEL_PROXY_KEYS`], checked when run).
    pub fn with_model_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.model_config.insert(key.into(), value.into());
        self
    }

    pub fn with_leader(mut self, leader: bool) -> Self {
        self.leader = leader;
        self
    }

    pub fn with_relation(mut self, relation: Relation) -> Self {
        self.relations.push(relation);
        self
    }

    pub fn relation(&self, id: u32) -> Option<&Relation> {
        self.relations.iter().find(|r| r.id == id)
    }

    pub fn relation_mut(&mut self, id: u32) -> Option<&mut Relation> {
        self.relations.iter_mut().find(|r| r.id == id)
    }

    fn expect_relation(&mut self, id: u32) -> &mut Relation {
        self.relation_mut(id)
            .unwrap_or_else(|| panic!("the State has no relation {id}"))
    }

    /// A remote unit wrote to its bag (`""` deletes a key); follow with
    /// `on::relation_changed(id, Some(n))`. Adds the unit if it is new.
    /// Panics if the relation is not in the State.
    pub fn update_remote_unit_data(mut self, id: u32, n: u32, changes: Bag) -> Self {
        let rel = self.expect_relation(id);
        let bag = rel
            .remote_units
            .entry(n)
            .or_insert_with(|| seeded_unit_bag(&remote_unit_address(n)));
        merge_bag(bag, &changes);
        self
    }

    /// The remote leader wrote to its app bag; follow with
    /// `on::relation_changed(id, None)`.
    pub fn update_remote_app_data(mut self, id: u32, changes: Bag) -> Self {
        merge_bag(&mut self.expect_relation(id).remote_app_data, &changes);
        self
    }

    /// A remote unit entered the relation; follow with
    /// `on::relation_joined(id, n)`.
    pub fn add_remote_unit(mut self, id: u32, n: u32) -> Self {
        self.expect_relation(id)
            .remote_units
            .entry(n)
            .or_insert_with(|| seeded_unit_bag(&remote_unit_address(n)));
        self
    }

    /// The file at an absolute machine path, as text.
    pub fn read_file(&self, absolute: impl AsRef<Path>) -> std::io::Result<String> {
        std::fs::read_to_string(self.machine.path(absolute))
    }

    /// Put a file on the machine (creating its directories).
    pub fn write_file(
        &self,
        absolute: impl AsRef<Path>,
        contents: impl AsRef<[u8]>,
    ) -> std::io::Result<()> {
        let path = self.machine.path(absolute);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, contents)
    }

    /// The fingerprint of the running service `name`, if it runs.
    pub fn service_fingerprint(&self, name: &str) -> Option<&str> {
        match self.services.get(name) {
            Some(ServiceRecord::Running(spec)) => Some(&spec.fingerprint),
            _ => None,
        }
    }
}
