//! The model's state, in SQLite at `<model dir>/model.db`.
//!
//! Both the `charm-sim` front end and the hook tools (separate processes
//! started by the charm while the front end waits) open this database, so it
//! runs in WAL mode with a generous busy timeout and every change is one short
//! transaction. This module owns the schema and every SQL statement; callers
//! see plain Rust values.
//!
//! By table family: this file holds the schema, the model's own values and
//! opening it; [`apps`] applications, config and units; [`relations`]
//! relations, bags, leader settings and ports; [`contexts`] hook contexts,
//! logs, actions and the hook queue.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde_json::Value;
use wsgi_app::ops::backend::Port;

use super::{ErrorContext, Result};
use crate::schema::CharmMeta;
use crate::sim_err;

mod apps;
mod contexts;
mod relations;

/// A relation bag: relation data is strings only.
pub type Bag = BTreeMap<String, String>;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS apps(
    name TEXT PRIMARY KEY,
    remote INTEGER NOT NULL,
    charm TEXT,                      -- CharmMeta as JSON (charm apps)
    interface TEXT,                  -- remote apps: the interface they speak
    endpoint TEXT,                   -- remote apps: their endpoint name
    version TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'unknown',
    message TEXT NOT NULL DEFAULT '',
    status_set INTEGER NOT NULL DEFAULT 0,
    next_unit INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS config(app TEXT, key TEXT, value TEXT NOT NULL, PRIMARY KEY(app, key));
CREATE TABLE IF NOT EXISTS units(
    name TEXT PRIMARY KEY,
    app TEXT NOT NULL,
    number INTEGER NOT NULL,
    address TEXT NOT NULL,
    leader INTEGER NOT NULL DEFAULT 0,
    workload TEXT NOT NULL,
    workload_message TEXT NOT NULL DEFAULT '',
    agent TEXT NOT NULL,
    agent_message TEXT NOT NULL DEFAULT '',
    status_set INTEGER NOT NULL DEFAULT 0,   -- the charm has called status-set
    dying INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS status_history(
    id INTEGER PRIMARY KEY, entity TEXT NOT NULL, kind TEXT NOT NULL,
    status TEXT NOT NULL, message TEXT NOT NULL, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS relations(
    id INTEGER PRIMARY KEY, app TEXT NOT NULL, endpoint TEXT NOT NULL,
    remote_app TEXT NOT NULL, remote_endpoint TEXT NOT NULL, interface TEXT NOT NULL,
    dying INTEGER NOT NULL DEFAULT 0);
-- Units (both sides) that have entered a relation's scope.
CREATE TABLE IF NOT EXISTS scope(relation_id INTEGER, unit TEXT, PRIMARY KEY(relation_id, unit));
-- Which remote units each of our units has seen join (relation-list's answer).
CREATE TABLE IF NOT EXISTS members(relation_id INTEGER, observer TEXT, member TEXT,
    PRIMARY KEY(relation_id, observer, member));
CREATE TABLE IF NOT EXISTS bags(relation_id INTEGER, owner TEXT, key TEXT, value TEXT NOT NULL,
    PRIMARY KEY(relation_id, owner, key));
-- The data a remote unit or app publishes on every relation it joins.
CREATE TABLE IF NOT EXISTS remote_data(owner TEXT, key TEXT, value TEXT NOT NULL, PRIMARY KEY(owner, key));
CREATE TABLE IF NOT EXISTS ports(unit TEXT, endpoint TEXT, port TEXT, PRIMARY KEY(unit, endpoint, port));
CREATE TABLE IF NOT EXISTS leader_settings(app TEXT, key TEXT, value TEXT NOT NULL, PRIMARY KEY(app, key));
CREATE TABLE IF NOT EXISTS logs(id INTEGER PRIMARY KEY, unit TEXT NOT NULL, context TEXT NOT NULL,
    level TEXT NOT NULL, message TEXT NOT NULL, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS contexts(id TEXT PRIMARY KEY, unit TEXT NOT NULL, info TEXT NOT NULL,
    running INTEGER NOT NULL DEFAULT 1);
-- Buffered writes of a running context, applied only if it exits 0.
CREATE TABLE IF NOT EXISTS pending_bags(context TEXT, relation_id INTEGER, owner TEXT, key TEXT,
    value TEXT NOT NULL, PRIMARY KEY(context, relation_id, owner, key));
CREATE TABLE IF NOT EXISTS pending_ports(seq INTEGER PRIMARY KEY, context TEXT NOT NULL,
    open INTEGER NOT NULL, endpoint TEXT NOT NULL, port TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS actions(id INTEGER PRIMARY KEY, unit TEXT NOT NULL, name TEXT NOT NULL,
    params TEXT NOT NULL, status TEXT NOT NULL, message TEXT NOT NULL DEFAULT '',
    results TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS action_logs(id INTEGER PRIMARY KEY, action_id INTEGER NOT NULL,
    message TEXT NOT NULL, at TEXT NOT NULL);
-- Each unit's pending steps (hooks, and bookkeeping that must wait for them).
CREATE TABLE IF NOT EXISTS queue(seq INTEGER PRIMARY KEY AUTOINCREMENT, unit TEXT NOT NULL, step TEXT NOT NULL);
"#;

/// A status and its message, as `juju status` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatusPair {
    pub current: String,
    pub message: String,
}

/// An application: the charm under test, or a remote one whose data the
/// user gives.
#[derive(Debug, Clone)]
pub struct App {
    pub name: String,
    pub remote: bool,
    pub charm: Option<CharmMeta>,
    pub interface: Option<String>,
    pub endpoint: Option<String>,
    pub version: String,
    pub status: StatusPair,
    /// Whether the leader ever called `status-set --application`.
    pub status_set: bool,
}

impl App {
    /// The charm's metadata; remote apps have none.
    pub fn meta(&self) -> Result<&CharmMeta> {
        self.charm
            .as_ref()
            .ok_or_else(|| sim_err!("{:?} is a remote application, not a charm", self.name))
    }
}

#[derive(Debug, Clone)]
pub struct Unit {
    pub name: String,
    pub app: String,
    pub number: u32,
    pub address: String,
    pub leader: bool,
    pub workload: StatusPair,
    pub agent: StatusPair,
    pub status_set: bool,
    pub dying: bool,
}

impl Unit {
    /// `wsgi-app/0` → `wsgi-app-0`, Juju's directory naming for units.
    pub fn dir_name(&self) -> String {
        self.name.replace('/', "-")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub id: i64,
    pub app: String,
    pub endpoint: String,
    pub remote_app: String,
    pub remote_endpoint: String,
    pub interface: String,
    pub dying: bool,
}

impl Relation {
    /// `pgsql:3`, the form `JUJU_RELATION_ID` and `relation-ids` use.
    pub fn key(&self) -> String {
        format!("{}:{}", self.endpoint, self.id)
    }
}

/// An opened port and the endpoint it is opened for (`""`: all endpoints).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OpenedPort {
    pub port: Port,
    pub endpoint: String,
}

#[derive(Debug, Clone)]
pub struct ActionRecord {
    pub id: i64,
    pub unit: String,
    pub name: String,
    pub params: Value,
    pub status: String,
    pub message: String,
    pub results: Value,
}

/// Seconds since the epoch with milliseconds, for logs and status history.
pub fn now() -> String {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:03}", since.as_secs(), since.subsec_millis())
}

/// Random hex from the kernel, for context ids and the model uuid.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    let read = fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf));
    if read.is_err() {
        // Not a security token: uniqueness within one model is all we need.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let seed = nanos ^ (u128::from(std::process::id()) << 64);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (seed >> ((i % 16) * 8)) as u8;
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a model's units are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machines {
    /// A directory each, with the charm's direct supervisor (the default).
    Directory,
    /// A systemd-nspawn container booted with systemd each.
    Container,
}

impl Machines {
    pub fn as_str(self) -> &'static str {
        match self {
            Machines::Directory => "directory",
            Machines::Container => "container",
        }
    }
}

/// An open model.
pub struct Model {
    dir: PathBuf,
    conn: Connection,
}

fn bool_of(v: i64) -> bool {
    v != 0
}

impl Model {
    pub fn db_path(dir: &Path) -> PathBuf {
        dir.join("model.db")
    }

    pub fn exists(dir: &Path) -> bool {
        Self::db_path(dir).is_file()
    }

    fn connect(dir: &Path) -> Result<Connection> {
        let conn = Connection::open(Self::db_path(dir))?;
        // Hook tools write while the front end polls; readers never block
        // the writer in WAL mode, and writers wait for each other.
        conn.busy_timeout(Duration::from_secs(60))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(conn)
    }

    /// Create a new, empty model in `dir` (which may exist but must not
    /// hold a model yet).
    pub fn create(dir: &Path, address_block: &str) -> Result<Model> {
        let (units_block, remotes_block) = address_blocks(address_block)?;
        fs::create_dir_all(dir.join("units"))
            .context(format!("cannot create model directory {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .context(format!("cannot resolve {}", dir.display()))?;
        let conn = Self::connect(&dir)?;
        conn.execute_batch(SCHEMA)?;
        let model = Model { dir, conn };
        let uuid = random_hex(16);
        let uuid = format!(
            "{}-{}-4{}-a{}-{}",
            &uuid[0..8],
            &uuid[8..12],
            &uuid[13..16],
            &uuid[17..20],
            &uuid[20..32]
        );
        model.tx(|c| {
            for (k, v) in [
                ("name", "sim"),
                ("uuid", uuid.as_str()),
                ("next_relation_id", "0"),
                ("next_action_id", "1"),
                ("next_remote_address", "1"),
                ("unit_address_block", units_block.as_str()),
                ("remote_address_block", remotes_block.as_str()),
            ] {
                c.execute(
                    "INSERT OR IGNORE INTO meta(key, value) VALUES (?1, ?2)",
                    params![k, v],
                )?;
            }
            Ok(())
        })?;
        Ok(model)
    }

    /// Open the model in `dir`.
    pub fn open(dir: &Path) -> Result<Model> {
        if !Self::exists(dir) {
            return Err(sim_err!(
                "no model in {} (run `charm-sim deploy` first, or pass --model DIR)",
                dir.display()
            ));
        }
        let dir = dir
            .canonicalize()
            .context(format!("cannot resolve {}", dir.display()))?;
        let conn = Self::connect(&dir)?;
        conn.execute_batch(SCHEMA)?;
        Ok(Model { dir, conn })
    }

    /// The model directory (absolute).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Run `f` in one IMMEDIATE transaction (takes the write lock up front,
    /// so two processes never deadlock upgrading read locks).
    pub fn tx<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    pub fn meta(&self, key: &str) -> Result<String> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?
            .ok_or_else(|| sim_err!("model database has no {key:?}"))
    }

    pub fn name(&self) -> Result<String> {
        self.meta("name")
    }

    /// Forget a model-wide setting.
    pub fn delete_meta(&self, key: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM meta WHERE key = ?1", [key])?;
        Ok(())
    }

    /// Set a model-wide setting.
    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)",
            params![key, value],
        )?;
        Ok(())
    }

    /// What the model's units run on (`charm-sim deploy --machines`);
    /// models made before the option are directories.
    pub fn machines(&self) -> Result<Machines> {
        let kind: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'machines'", [], |r| {
                r.get(0)
            })
            .optional()?;
        match kind.as_deref() {
            None | Some("directory") => Ok(Machines::Directory),
            Some("container") => Ok(Machines::Container),
            Some(other) => Err(sim_err!("model database has unknown machines {other:?}")),
        }
    }

    pub fn uuid(&self) -> Result<String> {
        self.meta("uuid")
    }

    /// Take the next value of a model-wide counter.
    pub fn next_counter(&self, key: &str) -> Result<i64> {
        self.tx(|c| {
            let value: String =
                c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))?;
            let n: i64 = value.parse().unwrap_or(0);
            c.execute(
                "UPDATE meta SET value = ?2 WHERE key = ?1",
                params![key, (n + 1).to_string()],
            )?;
            Ok(n)
        })
    }

    // ----- applications -------------------------------------------------
}

/// Insert `value` at a dotted path in a JSON object, creating maps on the way.
pub fn insert_dotted(map: &mut Value, key: &str, value: Value) {
    let mut node = map;
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        if !node.is_object() {
            *node = Value::Object(Default::default());
        }
        let obj = node.as_object_mut().expect("just made an object");
        if parts.peek().is_none() {
            obj.insert(part.to_string(), value);
            return;
        }
        node = obj
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Default::default()));
    }
}

/// The loopback blocks for a model's units and its remote units: `127.X.Y`
/// and `127.X.Y+1`.
fn address_blocks(block: &str) -> Result<(String, String)> {
    let parts: Vec<&str> = block.split('.').collect();
    let octet = |s: &str| s.parse::<u8>().ok();
    match parts.as_slice() {
        ["127", x, y] if octet(x).is_some() && octet(y).is_some_and(|y| y < 254) => {
            let y = octet(y).expect("checked");
            Ok((format!("127.{x}.{y}"), format!("127.{x}.{}", y + 1)))
        }
        _ => Err(sim_err!(
            "address block {block:?} must be 127.X.Y with Y below 254, e.g. 127.0.1"
        )),
    }
}
