//! The charm's stored state: facts that cannot be read back from Juju or the
//! disk. Installed builds (what was installed from which archive), database
//! and service URLs with the relation they came from, the rollout (who wants
//! which build, what served before), and the apt packages installed.
//!
//! Secret content never enters the store: a URL built from a provider's
//! Juju secret is recorded in its redacted form only (see
//! [`integrations`](super::integrations)).

use rusqlite::{params, Connection, OptionalExtension};

use crate::ops::{Migration, StoreError};
use crate::workload::builds::Manifest;
use crate::workload::metrics::RolloutState;

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "builds, relation URLs, rollout, packages",
        sql: "
CREATE TABLE builds (
    label TEXT PRIMARY KEY,
    archive TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    installed_at INTEGER NOT NULL,
    sequence INTEGER NOT NULL
);
CREATE TABLE relation_urls (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    relation TEXT NOT NULL
);
CREATE TABLE rollout (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    app_target TEXT,
    pinned TEXT,
    pinned_under TEXT,
    serving TEXT,
    previous TEXT,
    switched_at INTEGER,
    health TEXT
);
INSERT INTO rollout (id) VALUES (1);
CREATE TABLE packages (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    installed TEXT NOT NULL
);
CREATE TABLE facts (key TEXT PRIMARY KEY, value TEXT NOT NULL);
",
    },
    Migration {
        version: 2,
        description: "no secret content in relation URLs",
        // Units that recorded today's databases' URLs whole: the next full
        // reconcile records their redacted form again.
        sql: "
UPDATE relation_urls SET value = 'redacted'
 WHERE relation LIKE 'postgresql:%' OR relation LIKE 'mongodb-client:%';
",
    },
];

/// One installed build, as recorded when it was renamed into place.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BuildRecord {
    pub label: String,
    /// Where the archive came from (a URL or the charm's files/ path).
    pub archive: String,
    pub sha256: String,
    pub size: u64,
    /// Seconds since the epoch.
    pub installed_at: i64,
    /// Install order: the highest is `latest`.
    pub sequence: i64,
}

impl BuildRecord {
    /// The store's record of an installed build: its manifest, and where it
    /// comes in install order.
    pub fn from_manifest(manifest: &Manifest, sequence: i64) -> BuildRecord {
        BuildRecord {
            label: manifest.label.clone(),
            archive: manifest.archive.clone(),
            sha256: manifest.sha256.clone(),
            size: manifest.size,
            installed_at: manifest.installed_at,
            sequence,
        }
    }
}

pub fn builds(conn: &Connection) -> Result<Vec<BuildRecord>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT label, archive, sha256, size, installed_at, sequence FROM builds ORDER BY sequence",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(BuildRecord {
            label: r.get(0)?,
            archive: r.get(1)?,
            sha256: r.get(2)?,
            size: r.get::<_, i64>(3)? as u64,
            installed_at: r.get(4)?,
            sequence: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn next_build_sequence(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT COALESCE(MAX(sequence), 0) + 1 FROM builds",
        [],
        |r| r.get(0),
    )?)
}

pub fn record_build(conn: &Connection, b: &BuildRecord) -> Result<(), StoreError> {
    conn.execute(
        "INSERT OR REPLACE INTO builds (label, archive, sha256, size, installed_at, sequence)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            b.label,
            b.archive,
            b.sha256,
            b.size as i64,
            b.installed_at,
            b.sequence
        ],
    )?;
    Ok(())
}

pub fn forget_build(conn: &Connection, label: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM builds WHERE label = ?1", [label])?;
    Ok(())
}

/// A URL the app sees in its environment, and the relation it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationUrl {
    /// The variable: DATABASE_URL, MONGO_URL or MANAGER_SERVICE_URL.
    pub name: String,
    /// The URL; its redacted form when it was built from a secret.
    pub value: String,
    /// `endpoint:id`.
    pub relation: String,
}

pub fn relation_urls(conn: &Connection) -> Result<Vec<RelationUrl>, StoreError> {
    let mut stmt = conn.prepare("SELECT name, value, relation FROM relation_urls ORDER BY name")?;
    let rows = stmt.query_map([], |r| {
        Ok(RelationUrl {
            name: r.get(0)?,
            value: r.get(1)?,
            relation: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Record (Some) or forget (None) the URL for `name`.
pub fn set_relation_url(
    conn: &Connection,
    name: &str,
    value: Option<(&str, &str)>,
) -> Result<(), StoreError> {
    match value {
        Some((url, relation)) => conn.execute(
            "INSERT OR REPLACE INTO relation_urls (name, value, relation) VALUES (?1, ?2, ?3)",
            params![name, url, relation],
        )?,
        None => conn.execute("DELETE FROM relation_urls WHERE name = ?1", [name])?,
    };
    Ok(())
}

/// Who wants which build on this unit, and what happened last. (The
/// table's `app_target` and `pinned_under` columns are no longer used: a
/// pin lasts until the application wants the pinned build, not until
/// `current_symlink` changes.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rollout {
    /// This unit's override, set by set-current-symlink or rollback.
    pub pinned: Option<String>,
    /// The build gunicorn serves now.
    pub serving: Option<String>,
    /// The build served before the last switch (rollback's target).
    pub previous: Option<String>,
    pub switched_at: Option<i64>,
    /// The last health check's result, one line.
    pub health: Option<String>,
}

pub fn rollout(conn: &Connection) -> Result<Rollout, StoreError> {
    Ok(conn
        .query_row(
            "SELECT pinned, serving, previous, switched_at, health FROM rollout WHERE id = 1",
            [],
            |r| {
                Ok(Rollout {
                    pinned: r.get(0)?,
                    serving: r.get(1)?,
                    previous: r.get(2)?,
                    switched_at: r.get(3)?,
                    health: r.get(4)?,
                })
            },
        )
        .optional()?
        .unwrap_or_default())
}

pub fn save_rollout(conn: &Connection, r: &Rollout) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE rollout SET pinned = ?1, serving = ?2, previous = ?3, switched_at = ?4,
         health = ?5 WHERE id = 1",
        params![r.pinned, r.serving, r.previous, r.switched_at, r.health],
    )?;
    Ok(())
}

/// The apt packages last installed (space-joined, sorted), if any.
pub fn installed_packages(conn: &Connection) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row("SELECT installed FROM packages WHERE id = 1", [], |r| {
            r.get(0)
        })
        .optional()?)
}

pub fn set_installed_packages(conn: &Connection, packages: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT OR REPLACE INTO packages (id, installed) VALUES (1, ?1)",
        [packages],
    )?;
    Ok(())
}

/// A build install that failed, so it is not retried on every hook: only
/// when its options change, or on update-status (a transient failure
/// recovers without anyone touching the config).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FailedBuild {
    pub label: String,
    /// A digest of the options that shape the build.
    pub inputs: String,
    pub error: String,
}

const FAILED_BUILD: &str = "failed_build";

pub fn failed_build(conn: &Connection) -> Result<Option<FailedBuild>, StoreError> {
    fact(conn, FAILED_BUILD)
}

pub fn set_failed_build(conn: &Connection, failed: Option<&FailedBuild>) -> Result<(), StoreError> {
    set_fact(conn, FAILED_BUILD, failed)
}

/// A fact kept as JSON under `key`; one that no longer parses (written by
/// another version) reads as absent.
fn fact<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    key: &str,
) -> Result<Option<T>, StoreError> {
    let value: Option<String> = conn
        .query_row("SELECT value FROM facts WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(value.and_then(|v| serde_json::from_str(&v).ok()))
}

/// Keep `value` as the fact `key`, or forget it (`None`).
fn set_fact<T: serde::Serialize>(
    conn: &Connection,
    key: &str,
    value: Option<&T>,
) -> Result<(), StoreError> {
    match value {
        Some(v) => conn.execute(
            "INSERT OR REPLACE INTO facts (key, value) VALUES (?1, ?2)",
            params![key, serde_json::to_string(v)?],
        )?,
        None => conn.execute("DELETE FROM facts WHERE key = ?1", [key])?,
    };
    Ok(())
}

/// A switch that was refused (its build failed the pre-flight or the check
/// after the switch), so a config-driven reconcile does not judge the same
/// build with the same environment again on every hook: only at
/// update-status, when something in its fingerprint changes, or when an
/// operator asks with an action.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RefusedSwitch {
    /// The refused service spec's fingerprint (build, environment, options).
    pub fingerprint: String,
    pub failure: String,
}

const REFUSED_SWITCH: &str = "refused_switch";

pub fn refused_switch(conn: &Connection) -> Result<Option<RefusedSwitch>, StoreError> {
    fact(conn, REFUSED_SWITCH)
}

pub fn set_refused_switch(
    conn: &Connection,
    refused: Option<&RefusedSwitch>,
) -> Result<(), StoreError> {
    set_fact(conn, REFUSED_SWITCH, refused)
}

const ROLLOUT_ALLOWED: &str = "rollout_allowed";

/// The build the application's rollout last allowed this unit to serve,
/// so update-status (which reads no relation) keeps to it: `None` when the
/// unit has no peers and follows current_symlink itself, `Some(None)` when
/// it waits for its first grant.
pub fn rollout_allowed(conn: &Connection) -> Result<Option<Option<String>>, StoreError> {
    fact(conn, ROLLOUT_ALLOWED)
}

pub fn set_rollout_allowed(
    conn: &Connection,
    allowed: Option<Option<&str>>,
) -> Result<(), StoreError> {
    set_fact(conn, ROLLOUT_ALLOWED, allowed.as_ref())
}

/// The URL a proxy answered on `haproxy-route` or `ingress`, kept for
/// update-status and list-builds (which read no relation); it goes with
/// its relation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProxyAnswer {
    /// The endpoint that answered: `haproxy-route` or `ingress`.
    pub endpoint: String,
    /// `endpoint:id`.
    pub relation: String,
    pub urls: Vec<String>,
}

/// What the last full read of the proxy relations found wrong, for
/// update-status (which reads no relation) to say again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProxyProblem {
    /// Blocked (the operator must act) rather than Waiting.
    pub blocked: bool,
    pub message: String,
}

const PROXY_PROBLEMS: &str = "proxy_problems";

pub fn proxy_problems(conn: &Connection) -> Result<Vec<ProxyProblem>, StoreError> {
    Ok(fact(conn, PROXY_PROBLEMS)?.unwrap_or_default())
}

pub fn set_proxy_problems(conn: &Connection, problems: &[ProxyProblem]) -> Result<(), StoreError> {
    set_fact(
        conn,
        PROXY_PROBLEMS,
        (!problems.is_empty()).then_some(&problems),
    )
}

const PROXY_ANSWER: &str = "proxy_answer";

pub fn proxy_answer(conn: &Connection) -> Result<Option<ProxyAnswer>, StoreError> {
    fact(conn, PROXY_ANSWER)
}

pub fn set_proxy_answer(conn: &Connection, answer: Option<&ProxyAnswer>) -> Result<(), StoreError> {
    set_fact(conn, PROXY_ANSWER, answer)
}

/// What the charm counts for its metrics since the unit was installed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MetricCounts {
    /// Switches to another build, or to the same with a new environment
    /// or options.
    pub switches: u64,
    /// Builds the health gate refused.
    pub health_gate_failures: u64,
}

const METRIC_COUNTS: &str = "metric_counts";
const ROLLOUT_STATE: &str = "rollout_state";

pub fn metric_counts(conn: &Connection) -> Result<MetricCounts, StoreError> {
    Ok(fact(conn, METRIC_COUNTS)?.unwrap_or_default())
}

/// Add to the counts; committed with the hook, like the switch it counts.
pub fn count(conn: &Connection, add: impl FnOnce(&mut MetricCounts)) -> Result<(), StoreError> {
    let mut counts = metric_counts(conn)?;
    add(&mut counts);
    set_fact(conn, METRIC_COUNTS, Some(&counts))
}

/// Where the application's rollout stood when this unit last read it.
pub fn rollout_state(conn: &Connection) -> Result<RolloutState, StoreError> {
    Ok(fact(conn, ROLLOUT_STATE)?.unwrap_or_default())
}

pub fn set_rollout_state(conn: &Connection, state: RolloutState) -> Result<(), StoreError> {
    set_fact(conn, ROLLOUT_STATE, Some(&state))
}
