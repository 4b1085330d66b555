//! Stored state: one SQLite file per unit, one transaction per dispatch,
//! committed only when the dispatch succeeds (Juju throws away a failed
//! hook's relation writes; our state must agree with it).
//!
//! The framework owns the `ops_*` tables (schema versions and deferred
//! notices); the charm brings its own tables as numbered [`Migration`]s.

use std::fs::OpenOptions;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};

use super::event::EventVars;
use super::model::Remembered;

/// One step of the charm's schema. Versions start at 1 and have no gaps.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: u32,
    pub description: &'static str,
    pub sql: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the charm's state at {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the charm's state at {path} has schema version {found}, newer than this charm's {known}: refusing to downgrade it")]
    TooNew {
        path: PathBuf,
        found: u32,
        known: u32,
    },
    #[error("the charm's migrations are out of order: version {0} is not the next one")]
    BadMigrations(u32),
    #[error("stored state: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("stored event is not valid: {0}")]
    BadNotice(#[from] serde_json::Error),
}

/// A deferred (event, observer) pair waiting for the next dispatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub sequence: i64,
    pub observer: String,
    pub event: EventVars,
}

/// What opening the store did, for the dispatch log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub migrated_from: u32,
    pub schema: u32,
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

const FRAMEWORK_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ops_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ops_notice (
    sequence INTEGER PRIMARY KEY AUTOINCREMENT,
    observer TEXT NOT NULL,
    event TEXT NOT NULL,
    UNIQUE (observer, event)
);
";

impl Store {
    /// Open (creating, mode 0600) and lock the store, begin the dispatch's
    /// transaction, and bring the charm's schema up to date inside it.
    pub fn open(path: &Path, migrations: &[Migration]) -> Result<(Store, Opened), StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(open_err)?;
        }
        // Create it private before SQLite touches it; tighten an old one.
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(open_err)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(open_err)?;
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(3600))?;
        // One writer per unit, and no -wal/-shm files beside it. A value
        // the charm overwrites or forgets is zeroed, not left in a free
        // page of the file.
        conn.execute_batch(
            "PRAGMA locking_mode=EXCLUSIVE; PRAGMA journal_mode=DELETE; PRAGMA secure_delete=ON; BEGIN IMMEDIATE;",
        )?;
        let store = Store {
            conn,
            path: path.to_path_buf(),
        };
        let opened = store.migrate(migrations)?;
        Ok((store, opened))
    }

    fn migrate(&self, migrations: &[Migration]) -> Result<Opened, StoreError> {
        self.conn.execute_batch(FRAMEWORK_SCHEMA)?;
        let from = self.meta_u32("charm_schema")?.unwrap_or(0);
        let known = migrations.last().map_or(0, |m| m.version);
        if from > known {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found: from,
                known,
            });
        }
        for (index, m) in migrations.iter().enumerate() {
            if m.version != index as u32 + 1 {
                return Err(StoreError::BadMigrations(m.version));
            }
            if m.version > from {
                self.conn.execute_batch(m.sql)?;
            }
        }
        self.conn.execute(
            "INSERT INTO ops_meta (key, value) VALUES ('charm_schema', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![known.to_string()],
        )?;
        Ok(Opened {
            migrated_from: from,
            schema: known,
        })
    }

    fn meta_u32(&self, key: &str) -> Result<Option<u32>, StoreError> {
        let value: Option<String> = self
            .conn
            .query_row("SELECT value FROM ops_meta WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(value.and_then(|v| v.parse().ok()))
    }

    /// The charm's tables, inside this dispatch's transaction.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The charm's schema version now.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        Ok(self.meta_u32("charm_schema")?.unwrap_or(0))
    }

    /// Queue a deferred event for `observer`. An identical pending notice is
    /// not queued twice; returns whether this one was queued.
    pub fn defer(&self, observer: &str, event: &EventVars) -> Result<bool, StoreError> {
        let event = serde_json::to_string(event)?;
        let added = self.conn.execute(
            "INSERT OR IGNORE INTO ops_notice (observer, event) VALUES (?1, ?2)",
            params![observer, event],
        )?;
        Ok(added == 1)
    }

    /// Pending notices, oldest first.
    pub fn notices(&self) -> Result<Vec<Notice>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT sequence, observer, event FROM ops_notice ORDER BY sequence")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut notices = Vec::new();
        for row in rows {
            let (sequence, observer, event) = row?;
            notices.push(Notice {
                sequence,
                observer,
                event: serde_json::from_str(&event)?,
            });
        }
        Ok(notices)
    }

    pub fn drop_notice(&self, sequence: i64) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM ops_notice WHERE sequence = ?1", [sequence])?;
        Ok(())
    }

    /// What earlier dispatches learnt from Juju. Unreadable (written by a
    /// different version) counts as nothing learnt: it is read again.
    pub fn remembered(&self) -> Result<Remembered, StoreError> {
        let value: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM ops_meta WHERE key = 'remembered'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(value
            .and_then(|v| serde_json::from_str(&v).ok())
            .unwrap_or_default())
    }

    pub fn remember(&self, remembered: &Remembered) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO ops_meta (key, value) VALUES ('remembered', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![serde_json::to_string(remembered)?],
        )?;
        Ok(())
    }

    /// Throw this dispatch's changes away, and what earlier dispatches
    /// learnt from Juju with them (see [`Remembered`]).
    pub fn abandon(self) -> Result<(), StoreError> {
        self.conn
            .execute_batch("ROLLBACK; DELETE FROM ops_meta WHERE key = 'remembered';")?;
        Ok(())
    }

    /// Make this dispatch's changes durable. Dropping the store without
    /// calling this throws them away.
    pub fn commit(self) -> Result<(), StoreError> {
        self.conn.execute_batch("COMMIT")?;
        Ok(())
    }
}
