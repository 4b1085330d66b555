//! The model's state, in SQLite at `<model dir>/model.db`.
//!
//! Both the `charm-sim` front end and the hook tools (separate processes
//! started by the charm while the front end waits) open this database, so it
//! runs in WAL mode with a generous busy timeout and every change is one short
//! transaction. This module owns the schema and every SQL statement; callers
//! see plain Rust values.
//!
//! Why one file over 600 lines: it owns every SQL statement of the model, one
//! table family after another; splitting it by table family waits for the
//! systemd-container substrate work under way in the simulator.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use wsgi_app::ops::backend::Port;

use super::{ErrorContext, Result};
use crate::schema::CharmMeta;
use crate::sim_err;

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

    pub fn add_charm_app(&self, name: &str, charm: &CharmMeta) -> Result<()> {
        self.conn.execute(
            "INSERT INTO apps(name, remote, charm) VALUES (?1, 0, ?2)",
            params![name, serde_json::to_string(charm)?],
        )?;
        Ok(())
    }

    pub fn add_remote_app(&self, name: &str, interface: &str, endpoint: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO apps(name, remote, interface, endpoint, status) VALUES (?1, 1, ?2, ?3, 'active')",
            params![name, interface, endpoint],
        )?;
        Ok(())
    }

    fn app_from_row(r: &rusqlite::Row) -> rusqlite::Result<(App, Option<String>)> {
        Ok((
            App {
                name: r.get(0)?,
                remote: bool_of(r.get(1)?),
                charm: None,
                interface: r.get(3)?,
                endpoint: r.get(4)?,
                version: r.get(5)?,
                status: StatusPair {
                    current: r.get(6)?,
                    message: r.get(7)?,
                },
                status_set: bool_of(r.get(8)?),
            },
            r.get(2)?,
        ))
    }

    fn apps_where(&self, clause: &str, arg: &str) -> Result<Vec<App>> {
        let sql = format!(
            "SELECT name, remote, charm, interface, endpoint, version, status, message, status_set \
             FROM apps WHERE {clause} ORDER BY name"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([arg], Self::app_from_row)?;
        let mut apps = Vec::new();
        for row in rows {
            let (mut app, charm) = row?;
            if let Some(charm) = charm {
                app.charm = Some(serde_json::from_str(&charm)?);
            }
            apps.push(app);
        }
        Ok(apps)
    }

    pub fn app(&self, name: &str) -> Result<Option<App>> {
        Ok(self.apps_where("name = ?1", name)?.into_iter().next())
    }

    /// The application, or the error a user should see.
    pub fn require_app(&self, name: &str) -> Result<App> {
        self.app(name)?
            .ok_or_else(|| sim_err!("application {name:?} not found"))
    }

    pub fn apps(&self) -> Result<Vec<App>> {
        self.apps_where("?1 = ?1", "")
    }

    /// The charm application (charm-sim runs one charm per model).
    pub fn charm_app(&self) -> Result<Option<App>> {
        Ok(self
            .apps_where("remote = 0 AND ?1 = ?1", "")?
            .into_iter()
            .next())
    }

    pub fn delete_app(&self, name: &str) -> Result<()> {
        self.tx(|c| {
            c.execute("DELETE FROM apps WHERE name = ?1", [name])?;
            c.execute("DELETE FROM config WHERE app = ?1", [name])?;
            c.execute("DELETE FROM leader_settings WHERE app = ?1", [name])?;
            Ok(())
        })
    }

    pub fn set_app_status(&self, app: &str, status: &str, message: &str) -> Result<()> {
        self.tx(|c| {
            c.execute(
                "UPDATE apps SET status = ?2, message = ?3, status_set = 1 WHERE name = ?1",
                params![app, status, message],
            )?;
            c.execute(
                "INSERT INTO status_history(entity, kind, status, message, at) VALUES (?1, 'application', ?2, ?3, ?4)",
                params![app, status, message, now()],
            )?;
            Ok(())
        })
    }

    pub fn set_app_version(&self, app: &str, version: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE apps SET version = ?2 WHERE name = ?1",
            params![app, version],
        )?;
        Ok(())
    }

    // ----- config ---------------------------------------------------------

    /// The options the user set (not defaults).
    pub fn config_set_values(&self, app: &str) -> Result<BTreeMap<String, Value>> {
        let mut stmt = self
            .conn
            .prepare("SELECT key, value FROM config WHERE app = ?1")?;
        let rows = stmt.query_map([app], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (k, v) = row?;
            out.insert(k, serde_json::from_str(&v)?);
        }
        Ok(out)
    }

    /// Set (`Some`) or reset to default (`None`) an option.
    pub fn set_config(&self, app: &str, key: &str, value: Option<&Value>) -> Result<()> {
        match value {
            Some(v) => self.conn.execute(
                "INSERT OR REPLACE INTO config(app, key, value) VALUES (?1, ?2, ?3)",
                params![app, key, serde_json::to_string(v)?],
            )?,
            None => self.conn.execute(
                "DELETE FROM config WHERE app = ?1 AND key = ?2",
                params![app, key],
            )?,
        };
        Ok(())
    }

    /// What `config-get` shows: every option that is set or has a default.
    pub fn effective_config(&self, app: &App) -> Result<Map<String, Value>> {
        let set = self.config_set_values(&app.name)?;
        Ok(app.meta()?.config_values(&set)?)
    }

    // ----- units -----------------------------------------------------------

    /// Add the next unit of `app`. Charm units get 127.0.1.(N+1); remote
    /// units take addresses from 127.0.2.1 upwards. The first unit of an
    /// application without a leader becomes its leader.
    pub fn add_unit(&self, app: &App) -> Result<Unit> {
        let remote_address = if app.remote {
            Some(self.next_counter("next_remote_address")?)
        } else {
            None
        };
        let name = self.tx(|c| {
            let number: i64 = c.query_row(
                "SELECT next_unit FROM apps WHERE name = ?1",
                [&app.name],
                |r| r.get(0),
            )?;
            c.execute(
                "UPDATE apps SET next_unit = next_unit + 1 WHERE name = ?1",
                [&app.name],
            )?;
            let block = |key: &str, default: &str| -> rusqlite::Result<String> {
                Ok(c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                    .optional()?
                    .unwrap_or_else(|| default.to_string()))
            };
            let address = match remote_address {
                Some(n) => format!("{}.{}", block("remote_address_block", "127.0.2")?, n.min(254)),
                None if number < 254 => {
                    format!("{}.{}", block("unit_address_block", "127.0.1")?, number + 1)
                }
                None => return Err(sim_err!("charm-sim gives at most 254 units a loopback address")),
            };
            let has_leader: bool = c.query_row(
                "SELECT EXISTS(SELECT 1 FROM units WHERE app = ?1 AND leader = 1)",
                [&app.name],
                |r| r.get(0),
            )?;
            let name = format!("{}/{}", app.name, number);
            let (workload, message, agent) = if app.remote {
                ("active", "", "idle")
            } else {
                ("waiting", "agent initialising", "allocating")
            };
            c.execute(
                "INSERT INTO units(name, app, number, address, leader, workload, workload_message, agent) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![name, app.name, number, address, !has_leader, workload, message, agent],
            )?;
            Ok(name)
        })?;
        self.require_unit(&name)
    }

    fn units_where(&self, clause: &str, arg: &str) -> Result<Vec<Unit>> {
        let sql = format!(
            "SELECT name, app, number, address, leader, workload, workload_message, agent, \
             agent_message, status_set, dying FROM units WHERE {clause} ORDER BY app, number"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([arg], |r| {
            Ok(Unit {
                name: r.get(0)?,
                app: r.get(1)?,
                number: r.get(2)?,
                address: r.get(3)?,
                leader: bool_of(r.get(4)?),
                workload: StatusPair {
                    current: r.get(5)?,
                    message: r.get(6)?,
                },
                agent: StatusPair {
                    current: r.get(7)?,
                    message: r.get(8)?,
                },
                status_set: bool_of(r.get(9)?),
                dying: bool_of(r.get(10)?),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn unit(&self, name: &str) -> Result<Option<Unit>> {
        Ok(self.units_where("name = ?1", name)?.into_iter().next())
    }

    /// The unit, or the error a user should see.
    pub fn require_unit(&self, name: &str) -> Result<Unit> {
        self.unit(name)?
            .ok_or_else(|| sim_err!("unit {name:?} not found"))
    }

    /// The units of `app`, by number.
    pub fn units(&self, app: &str) -> Result<Vec<Unit>> {
        self.units_where("app = ?1", app)
    }

    pub fn all_units(&self) -> Result<Vec<Unit>> {
        self.units_where("?1 = ?1", "")
    }

    /// Set a unit's workload status; `by_charm` records that the charm
    /// called status-set (which stops Juju's post-start reset to unknown).
    pub fn set_workload_status(
        &self,
        unit: &str,
        status: &str,
        message: &str,
        by_charm: bool,
    ) -> Result<()> {
        self.tx(|c| {
            c.execute(
                "UPDATE units SET workload = ?2, workload_message = ?3, status_set = status_set OR ?4 WHERE name = ?1",
                params![unit, status, message, by_charm],
            )?;
            c.execute(
                "INSERT INTO status_history(entity, kind, status, message, at) VALUES (?1, 'workload', ?2, ?3, ?4)",
                params![unit, status, message, now()],
            )?;
            Ok(())
        })
    }

    pub fn set_agent_status(&self, unit: &str, status: &str, message: &str) -> Result<()> {
        self.tx(|c| {
            c.execute(
                "UPDATE units SET agent = ?2, agent_message = ?3 WHERE name = ?1",
                params![unit, status, message],
            )?;
            c.execute(
                "INSERT INTO status_history(entity, kind, status, message, at) VALUES (?1, 'agent', ?2, ?3, ?4)",
                params![unit, status, message, now()],
            )?;
            Ok(())
        })
    }

    /// Status history of a unit or application: (kind, status, message, at).
    pub fn status_history(&self, entity: &str) -> Result<Vec<(String, String, String, String)>> {
        let mut stmt = self.conn.prepare(
            "SELECT kind, status, message, at FROM status_history WHERE entity = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([entity], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn set_dying(&self, unit: &str) -> Result<()> {
        self.conn
            .execute("UPDATE units SET dying = 1 WHERE name = ?1", [unit])?;
        Ok(())
    }

    /// Make `unit` the only leader of its application.
    pub fn set_leader(&self, app: &str, unit: &str) -> Result<()> {
        self.tx(|c| {
            c.execute(
                "UPDATE units SET leader = (name = ?2) WHERE app = ?1",
                params![app, unit],
            )?;
            Ok(())
        })
    }

    /// Forget a unit and everything that is only its own.
    pub fn delete_unit(&self, unit: &str) -> Result<()> {
        self.tx(|c| {
            c.execute("DELETE FROM units WHERE name = ?1", [unit])?;
            c.execute("DELETE FROM scope WHERE unit = ?1", [unit])?;
            c.execute(
                "DELETE FROM members WHERE observer = ?1 OR member = ?1",
                [unit],
            )?;
            c.execute("DELETE FROM bags WHERE owner = ?1", [unit])?;
            c.execute("DELETE FROM ports WHERE unit = ?1", [unit])?;
            c.execute("DELETE FROM queue WHERE unit = ?1", [unit])?;
            c.execute("DELETE FROM remote_data WHERE owner = ?1", [unit])?;
            Ok(())
        })
    }

    // ----- relations ---------------------------------------------------------

    pub fn add_relation(
        &self,
        app: &str,
        endpoint: &str,
        remote_app: &str,
        remote_endpoint: &str,
        interface: &str,
    ) -> Result<Relation> {
        let id = self.next_counter("next_relation_id")?;
        self.conn.execute(
            "INSERT INTO relations(id, app, endpoint, remote_app, remote_endpoint, interface) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, app, endpoint, remote_app, remote_endpoint, interface],
        )?;
        self.relation(id)?
            .ok_or_else(|| sim_err!("relation {id} vanished"))
    }

    fn relations_where(&self, clause: &str, arg: &dyn rusqlite::ToSql) -> Result<Vec<Relation>> {
        let sql = format!(
            "SELECT id, app, endpoint, remote_app, remote_endpoint, interface, dying FROM relations \
             WHERE {clause} ORDER BY id"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([arg], |r| {
            Ok(Relation {
                id: r.get(0)?,
                app: r.get(1)?,
                endpoint: r.get(2)?,
                remote_app: r.get(3)?,
                remote_endpoint: r.get(4)?,
                interface: r.get(5)?,
                dying: bool_of(r.get(6)?),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn relation(&self, id: i64) -> Result<Option<Relation>> {
        Ok(self.relations_where("id = ?1", &id)?.into_iter().next())
    }

    pub fn relations(&self) -> Result<Vec<Relation>> {
        self.relations_where("?1 = ?1", &0)
    }

    /// Relations `unit` is in scope of.
    pub fn unit_relations(&self, unit: &str) -> Result<Vec<Relation>> {
        self.relations_where(
            "id IN (SELECT relation_id FROM scope WHERE unit = ?1)",
            &unit,
        )
    }

    pub fn set_relation_dying(&self, id: i64) -> Result<()> {
        self.conn
            .execute("UPDATE relations SET dying = 1 WHERE id = ?1", [id])?;
        Ok(())
    }

    pub fn delete_relation(&self, id: i64) -> Result<()> {
        self.tx(|c| {
            for table in [
                "relations WHERE id",
                "scope WHERE relation_id",
                "members WHERE relation_id",
                "bags WHERE relation_id",
            ] {
                c.execute(&format!("DELETE FROM {table} = ?1"), [id])?;
            }
            Ok(())
        })
    }

    /// A unit enters a relation's scope; Juju seeds its bag with its address.
    pub fn enter_scope(&self, relation: i64, unit: &str, address: &str) -> Result<()> {
        self.tx(|c| {
            c.execute(
                "INSERT OR IGNORE INTO scope(relation_id, unit) VALUES (?1, ?2)",
                params![relation, unit],
            )?;
            for (key, value) in [
                ("private-address", address.to_string()),
                ("ingress-address", address.to_string()),
                ("egress-subnets", format!("{address}/32")),
            ] {
                c.execute(
                    "INSERT OR IGNORE INTO bags(relation_id, owner, key, value) VALUES (?1, ?2, ?3, ?4)",
                    params![relation, unit, key, value],
                )?;
            }
            Ok(())
        })
    }

    /// A unit leaves scope; its data goes with it.
    pub fn leave_scope(&self, relation: i64, unit: &str) -> Result<()> {
        self.tx(|c| {
            c.execute(
                "DELETE FROM scope WHERE relation_id = ?1 AND unit = ?2",
                params![relation, unit],
            )?;
            c.execute(
                "DELETE FROM members WHERE relation_id = ?1 AND observer = ?2",
                params![relation, unit],
            )?;
            c.execute(
                "DELETE FROM bags WHERE relation_id = ?1 AND owner = ?2",
                params![relation, unit],
            )?;
            Ok(())
        })
    }

    /// Units in a relation's scope, sorted as strings.
    pub fn scope(&self, relation: i64) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT unit FROM scope WHERE relation_id = ?1 ORDER BY unit")?;
        let rows = stmt.query_map([relation], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn in_scope(&self, relation: i64, unit: &str) -> Result<bool> {
        Ok(self.conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM scope WHERE relation_id = ?1 AND unit = ?2)",
            params![relation, unit],
            |r| r.get(0),
        )?)
    }

    /// The remote units `observer` has seen join, sorted as strings.
    pub fn members(&self, relation: i64, observer: &str) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare(
            "SELECT member FROM members WHERE relation_id = ?1 AND observer = ?2 ORDER BY member",
        )?;
        let rows = stmt.query_map(params![relation, observer], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn set_member(
        &self,
        relation: i64,
        observer: &str,
        member: &str,
        present: bool,
    ) -> Result<()> {
        let sql = if present {
            "INSERT OR IGNORE INTO members(relation_id, observer, member) VALUES (?1, ?2, ?3)"
        } else {
            "DELETE FROM members WHERE relation_id = ?1 AND observer = ?2 AND member = ?3"
        };
        self.conn
            .execute(sql, params![relation, observer, member])?;
        Ok(())
    }

    /// A committed bag (unit name or application name as owner).
    pub fn bag(&self, relation: i64, owner: &str) -> Result<Bag> {
        let mut stmt = self
            .conn
            .prepare("SELECT key, value FROM bags WHERE relation_id = ?1 AND owner = ?2")?;
        let rows = stmt.query_map(params![relation, owner], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Merge `changes` into a committed bag; an empty value deletes the key.
    pub fn update_bag(&self, relation: i64, owner: &str, changes: &Bag) -> Result<()> {
        self.tx(|c| apply_bag_changes(c, relation, owner, changes))
    }

    // ----- remote data ---------------------------------------------------------

    pub fn remote_data(&self, owner: &str) -> Result<Bag> {
        let mut stmt = self
            .conn
            .prepare("SELECT key, value FROM remote_data WHERE owner = ?1")?;
        let rows = stmt.query_map([owner], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Merge `changes` into what a remote unit/app publishes; `""` deletes.
    pub fn update_remote_data(&self, owner: &str, changes: &Bag) -> Result<()> {
        self.tx(|c| {
            for (k, v) in changes {
                if v.is_empty() {
                    c.execute(
                        "DELETE FROM remote_data WHERE owner = ?1 AND key = ?2",
                        params![owner, k],
                    )?;
                } else {
                    c.execute(
                        "INSERT OR REPLACE INTO remote_data(owner, key, value) VALUES (?1, ?2, ?3)",
                        params![owner, k, v],
                    )?;
                }
            }
            Ok(())
        })
    }

    // ----- ports -----------------------------------------------------------------

    /// A unit's committed opened ports.
    pub fn ports(&self, unit: &str) -> Result<Vec<OpenedPort>> {
        let mut stmt = self
            .conn
            .prepare("SELECT endpoint, port FROM ports WHERE unit = ?1")?;
        let rows = stmt.query_map([unit], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (endpoint, port) = row?;
            let port =
                Port::from_str(&port).map_err(|e| sim_err!("model database: bad port: {e}"))?;
            out.push(OpenedPort { port, endpoint });
        }
        out.sort();
        Ok(out)
    }

    // ----- leader settings ---------------------------------------------------

    pub fn leader_settings(&self, app: &str) -> Result<Bag> {
        let mut stmt = self
            .conn
            .prepare("SELECT key, value FROM leader_settings WHERE app = ?1")?;
        let rows = stmt.query_map([app], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn update_leader_settings(&self, app: &str, changes: &Bag) -> Result<()> {
        self.tx(|c| {
            for (k, v) in changes {
                if v.is_empty() {
                    c.execute("DELETE FROM leader_settings WHERE app = ?1 AND key = ?2", params![app, k])?;
                } else {
                    c.execute(
                        "INSERT OR REPLACE INTO leader_settings(app, key, value) VALUES (?1, ?2, ?3)",
                        params![app, k, v],
                    )?;
                }
            }
            Ok(())
        })
    }

    // ----- logs --------------------------------------------------------------------

    pub fn add_log(&self, unit: &str, context: &str, level: &str, message: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO logs(unit, context, level, message, at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![unit, context, level, message, now()],
        )?;
        Ok(())
    }

    /// A unit's juju-log lines: (level, message).
    pub fn logs(&self, unit: &str) -> Result<Vec<(String, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT level, message FROM logs WHERE unit = ?1 ORDER BY id")?;
        let rows = stmt.query_map([unit], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // ----- hook contexts -------------------------------------------------------------

    pub fn insert_context<T: Serialize>(&self, id: &str, unit: &str, info: &T) -> Result<()> {
        self.conn.execute(
            "INSERT INTO contexts(id, unit, info, running) VALUES (?1, ?2, ?3, 1)",
            params![id, unit, serde_json::to_string(info)?],
        )?;
        Ok(())
    }

    /// A running context's description, or `None` when unknown or finished.
    pub fn running_context<T: DeserializeOwned>(&self, id: &str) -> Result<Option<(String, T)>> {
        let row: Option<(String, String)> = self
            .conn
            .query_row(
                "SELECT unit, info FROM contexts WHERE id = ?1 AND running = 1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match row {
            Some((unit, info)) => Ok(Some((unit, serde_json::from_str(&info)?))),
            None => Ok(None),
        }
    }

    /// End a context: apply its buffered writes if `commit`, else drop them.
    pub fn finish_context(&self, id: &str, unit: &str, commit: bool) -> Result<()> {
        self.tx(|c| {
            if commit {
                let mut stmt = c.prepare(
                    "SELECT relation_id, owner, key, value FROM pending_bags WHERE context = ?1",
                )?;
                let rows: Vec<(i64, String, String, String)> = stmt
                    .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                let mut grouped: BTreeMap<(i64, String), Bag> = BTreeMap::new();
                for (rel, owner, k, v) in rows {
                    grouped.entry((rel, owner)).or_default().insert(k, v);
                }
                for ((rel, owner), changes) in grouped {
                    // A relation removed while the hook ran keeps no data.
                    let alive: bool = c.query_row(
                        "SELECT EXISTS(SELECT 1 FROM relations WHERE id = ?1)",
                        [rel],
                        |r| r.get(0),
                    )?;
                    if alive {
                        apply_bag_changes(c, rel, &owner, &changes)?;
                    }
                }
                let merged = merged_ports(c, unit, Some(id))?;
                c.execute("DELETE FROM ports WHERE unit = ?1", [unit])?;
                for p in merged {
                    c.execute(
                        "INSERT OR IGNORE INTO ports(unit, endpoint, port) VALUES (?1, ?2, ?3)",
                        params![unit, p.endpoint, p.port.to_string()],
                    )?;
                }
            }
            c.execute("DELETE FROM pending_bags WHERE context = ?1", [id])?;
            c.execute("DELETE FROM pending_ports WHERE context = ?1", [id])?;
            c.execute("UPDATE contexts SET running = 0 WHERE id = ?1", [id])?;
            Ok(())
        })
    }

    /// Buffer a relation-set for a context.
    pub fn pend_bag_changes(
        &self,
        context: &str,
        relation: i64,
        owner: &str,
        changes: &Bag,
    ) -> Result<()> {
        self.tx(|c| {
            for (k, v) in changes {
                c.execute(
                    "INSERT OR REPLACE INTO pending_bags(context, relation_id, owner, key, value) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![context, relation, owner, k, v],
                )?;
            }
            Ok(())
        })
    }

    /// A bag as a context sees it: committed data plus its pending writes.
    pub fn bag_in_context(&self, context: &str, relation: i64, owner: &str) -> Result<Bag> {
        let mut bag = self.bag(relation, owner)?;
        let mut stmt = self.conn.prepare(
            "SELECT key, value FROM pending_bags WHERE context = ?1 AND relation_id = ?2 AND owner = ?3",
        )?;
        let rows = stmt.query_map(params![context, relation, owner], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        for row in rows {
            let (k, v) = row?;
            if v.is_empty() {
                bag.remove(&k);
            } else {
                bag.insert(k, v);
            }
        }
        Ok(bag)
    }

    /// Buffer an open-port (`open`) or close-port for a context.
    pub fn pend_port(&self, context: &str, open: bool, endpoint: &str, port: &Port) -> Result<()> {
        self.conn.execute(
            "INSERT INTO pending_ports(context, open, endpoint, port) VALUES (?1, ?2, ?3, ?4)",
            params![context, open, endpoint, port.to_string()],
        )?;
        Ok(())
    }

    /// A unit's opened ports including a context's pending opens and closes.
    pub fn ports_in_context(&self, unit: &str, context: Option<&str>) -> Result<Vec<OpenedPort>> {
        merged_ports(&self.conn, unit, context)
    }

    // ----- actions -------------------------------------------------------------------

    pub fn add_action(&self, unit: &str, name: &str, params: &Value) -> Result<i64> {
        let id = self.next_counter("next_action_id")?;
        self.conn.execute(
            "INSERT INTO actions(id, unit, name, params, status) VALUES (?1, ?2, ?3, ?4, 'running')",
            params![id, unit, name, serde_json::to_string(params)?],
        )?;
        Ok(id)
    }

    pub fn action(&self, id: i64) -> Result<ActionRecord> {
        let row: (i64, String, String, String, String, String, String) = self.conn.query_row(
            "SELECT id, unit, name, params, status, message, results FROM actions WHERE id = ?1",
            [id],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            },
        )?;
        Ok(ActionRecord {
            id: row.0,
            unit: row.1,
            name: row.2,
            params: serde_json::from_str(&row.3)?,
            status: row.4,
            message: row.5,
            results: serde_json::from_str(&row.6)?,
        })
    }

    /// Merge dotted `key=value` results into an action's nested results map.
    pub fn add_action_results(&self, id: i64, results: &[(String, String)]) -> Result<()> {
        self.tx(|c| {
            let text: String =
                c.query_row("SELECT results FROM actions WHERE id = ?1", [id], |r| {
                    r.get(0)
                })?;
            let mut map: Value = serde_json::from_str(&text)?;
            for (key, value) in results {
                insert_dotted(&mut map, key, Value::String(value.clone()));
            }
            c.execute(
                "UPDATE actions SET results = ?2 WHERE id = ?1",
                params![id, serde_json::to_string(&map)?],
            )?;
            Ok(())
        })
    }

    pub fn set_action_results(&self, id: i64, results: &Value) -> Result<()> {
        self.conn.execute(
            "UPDATE actions SET results = ?2 WHERE id = ?1",
            params![id, serde_json::to_string(results)?],
        )?;
        Ok(())
    }

    pub fn set_action_status(&self, id: i64, status: &str, message: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE actions SET status = ?2, message = ?3 WHERE id = ?1",
            params![id, status, message],
        )?;
        Ok(())
    }

    pub fn add_action_log(&self, id: i64, message: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO action_logs(action_id, message, at) VALUES (?1, ?2, ?3)",
            params![id, message, now()],
        )?;
        Ok(())
    }

    /// Action log lines after `after` (a row id): (row id, message).
    pub fn action_logs(&self, id: i64, after: i64) -> Result<Vec<(i64, String)>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, message FROM action_logs WHERE action_id = ?1 AND id > ?2 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![id, after], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // ----- the step queue ---------------------------------------------------------------

    pub fn enqueue<T: Serialize>(&self, unit: &str, step: &T) -> Result<()> {
        self.conn.execute(
            "INSERT INTO queue(unit, step) VALUES (?1, ?2)",
            params![unit, serde_json::to_string(step)?],
        )?;
        Ok(())
    }

    /// The unit's next step and its sequence number.
    pub fn next_step<T: DeserializeOwned>(&self, unit: &str) -> Result<Option<(i64, T)>> {
        let row: Option<(i64, String)> = self
            .conn
            .query_row(
                "SELECT seq, step FROM queue WHERE unit = ?1 ORDER BY seq LIMIT 1",
                [unit],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match row {
            Some((seq, step)) => Ok(Some((seq, serde_json::from_str(&step)?))),
            None => Ok(None),
        }
    }

    pub fn drop_step(&self, seq: i64) -> Result<()> {
        self.conn
            .execute("DELETE FROM queue WHERE seq = ?1", [seq])?;
        Ok(())
    }

    pub fn queued_steps(&self, unit: &str) -> Result<usize> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM queue WHERE unit = ?1", [unit], |r| {
                r.get::<_, i64>(0)
            })? as usize)
    }
}

fn apply_bag_changes(c: &Connection, relation: i64, owner: &str, changes: &Bag) -> Result<()> {
    for (k, v) in changes {
        if v.is_empty() {
            c.execute(
                "DELETE FROM bags WHERE relation_id = ?1 AND owner = ?2 AND key = ?3",
                params![relation, owner, k],
            )?;
        } else {
            c.execute(
                "INSERT OR REPLACE INTO bags(relation_id, owner, key, value) VALUES (?1, ?2, ?3, ?4)",
                params![relation, owner, k, v],
            )?;
        }
    }
    Ok(())
}

/// Committed ports with a context's pending opens/closes applied in order
/// (so an open cancels an earlier close of the same range and vice versa).
fn merged_ports(c: &Connection, unit: &str, context: Option<&str>) -> Result<Vec<OpenedPort>> {
    let mut stmt = c.prepare("SELECT endpoint, port FROM ports WHERE unit = ?1")?;
    let mut set: Vec<(String, String)> = stmt
        .query_map([unit], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    if let Some(context) = context {
        let mut stmt = c.prepare(
            "SELECT open, endpoint, port FROM pending_ports WHERE context = ?1 ORDER BY seq",
        )?;
        let ops: Vec<(bool, String, String)> = stmt
            .query_map([context], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (open, endpoint, port) in ops {
            let entry = (endpoint, port);
            set.retain(|e| *e != entry);
            if open {
                set.push(entry);
            }
        }
    }
    let mut out = Vec::new();
    for (endpoint, port) in set {
        let port = Port::from_str(&port).map_err(|e| sim_err!("model database: bad port: {e}"))?;
        out.push(OpenedPort { port, endpoint });
    }
    out.sort();
    out.dedup();
    Ok(out)
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
