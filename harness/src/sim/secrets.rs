//! Juju secrets in the local model (shared/reference/modern-interfaces.md
//! §6, juju-hook-tools.md §3.20): the secrets, their revisions, their
//! grants on relations and each consumer unit's tracked revision and label,
//! in the model's SQLite database; the emulated `secret-get`,
//! `secret-info-get` and `secret-ids`; and publishing a new revision, which
//! queues `secret-changed` on every consumer unit tracking an older one.
//!
//! The rules are those of the in-memory Juju (`crate::secrets`): an owner
//! (the owning unit, or any unit of the owning application) always reads
//! the latest revision and may not `--refresh`; a consumer needs a grant on
//! a live relation between its application and the owner; its first read
//! (even a peek) tracks the latest revision, `--refresh` moves it, a later
//! `--peek` does not; a
//! read by ID with `--label` binds the label. Tracking and labels change at
//! once, not at the hook's commit: Juju's hook context sends the read
//! straight to the controller (`HookContext.GetSecret`).
//!
//! The tables are created on first use (`ensure`), so this module owns its
//! schema the way `store.rs` owns the rest of the model's.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value};
use wsgi_app::ops::SecretHook;

use super::engine::{enqueue_hook, Hook};
use super::flags::Parsed;
use super::output::{render, Format};
use super::store::{random_hex, Bag, Model, Unit};
use super::tools::{runtime, usage, ToolError};
use super::Result;
use crate::sim_err;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS secrets(id TEXT PRIMARY KEY, owner_app TEXT NOT NULL, owner_unit TEXT,
    label TEXT NOT NULL DEFAULT '', description TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS secret_revisions(id TEXT NOT NULL, revision INTEGER NOT NULL,
    content TEXT NOT NULL, PRIMARY KEY(id, revision));
CREATE TABLE IF NOT EXISTS secret_grants(id TEXT NOT NULL, relation_id INTEGER NOT NULL,
    PRIMARY KEY(id, relation_id));
-- Each consumer unit's view: the revision it tracks (NULL: only peeked)
-- and the label it bound.
CREATE TABLE IF NOT EXISTS secret_consumers(id TEXT NOT NULL, unit TEXT NOT NULL, label TEXT,
    tracked INTEGER, PRIMARY KEY(id, unit));
"#;

fn ensure(conn: &Connection) -> Result<()> {
    conn.execute_batch(SCHEMA)?;
    Ok(())
}

/// One secret's owner and metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRow {
    pub id: String,
    pub owner_app: String,
    pub owner_unit: Option<String>,
    pub label: String,
    pub description: String,
}

impl SecretRow {
    fn owned_by(&self, unit: &Unit) -> bool {
        match &self.owner_unit {
            Some(owner) => *owner == unit.name,
            None => self.owner_app == unit.app,
        }
    }
}

/// A new secret ID: `secret:` and 20 characters of Juju's xid alphabet.
fn new_id() -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuv";
    let hex = random_hex(20);
    let tail: String = hex
        .as_bytes()
        .chunks(2)
        .map(|pair| {
            let byte = u8::from_str_radix(std::str::from_utf8(pair).unwrap_or("0"), 16)
                .unwrap_or_default();
            DIGITS[(byte % 32) as usize] as char
        })
        .collect();
    format!("secret:{tail}")
}

/// `secret:<id>` and `secret://<model-uuid>/<id>` name the same secret.
fn short_id(uri: &str) -> &str {
    let rest = uri.strip_prefix("secret:").unwrap_or(uri);
    rest.rsplit('/').next().unwrap_or(rest)
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SecretRow> {
    Ok(SecretRow {
        id: r.get(0)?,
        owner_app: r.get(1)?,
        owner_unit: r.get(2)?,
        label: r.get(3)?,
        description: r.get(4)?,
    })
}

const COLUMNS: &str = "id, owner_app, owner_unit, label, description";

/// The secret with this URI (either form).
pub fn secret(model: &Model, uri: &str) -> Result<Option<SecretRow>> {
    let conn = model.conn();
    ensure(conn)?;
    let id = format!("secret:{}", short_id(uri));
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM secrets WHERE id = ?1"),
            [id],
            row,
        )
        .optional()?)
}

/// Every secret in the model, by ID.
pub fn secrets(model: &Model) -> Result<Vec<SecretRow>> {
    let conn = model.conn();
    ensure(conn)?;
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM secrets ORDER BY id"))?;
    let rows = stmt.query_map([], row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The newest revision of a secret (0 when it has none).
pub fn latest_revision(model: &Model, id: &str) -> Result<u32> {
    let conn = model.conn();
    ensure(conn)?;
    Ok(conn.query_row(
        "SELECT COALESCE(MAX(revision), 0) FROM secret_revisions WHERE id = ?1",
        [id],
        |r| r.get(0),
    )?)
}

fn content(conn: &Connection, id: &str, revision: u32) -> Result<Option<Bag>> {
    let text: Option<String> = conn
        .query_row(
            "SELECT content FROM secret_revisions WHERE id = ?1 AND revision = ?2",
            params![id, revision],
            |r| r.get(0),
        )
        .optional()?;
    match text {
        None => Ok(None),
        Some(text) => Ok(Some(serde_json::from_str(&text).map_err(|e| {
            sim_err!("the model's secret {id} revision {revision} is damaged: {e}")
        })?)),
    }
}

/// A new secret owned by application `owner_app` (or, with `owner_unit`,
/// by that unit of it), at revision 1 with `content`. Returns its URI.
pub fn add_secret(
    model: &Model,
    owner_app: &str,
    owner_unit: Option<&str>,
    label: &str,
    content: &Bag,
) -> Result<String> {
    if content.is_empty() {
        return Err(sim_err!("a secret needs at least one key=value"));
    }
    let id = new_id();
    let conn = model.conn();
    ensure(conn)?;
    model.tx(|tx| {
        tx.execute(
            "INSERT INTO secrets(id, owner_app, owner_unit, label) VALUES (?1, ?2, ?3, ?4)",
            params![id, owner_app, owner_unit, label],
        )?;
        tx.execute(
            "INSERT INTO secret_revisions(id, revision, content) VALUES (?1, 1, ?2)",
            params![
                id,
                serde_json::to_string(content).expect("strings serialise")
            ],
        )?;
        Ok(())
    })?;
    Ok(id)
}

/// Grant `uri` on a relation: the application at its other end may read it.
pub fn grant(model: &Model, uri: &str, relation_id: i64) -> Result<()> {
    let found = secret(model, uri)?.ok_or_else(|| sim_err!("secret {uri:?} not found"))?;
    let rel = model
        .relation(relation_id)?
        .ok_or_else(|| sim_err!("relation {relation_id} not found"))?;
    if rel.app != found.owner_app && rel.remote_app != found.owner_app {
        return Err(sim_err!(
            "relation {} does not involve {}, the owner of {uri}",
            rel.key(),
            found.owner_app
        ));
    }
    model.conn().execute(
        "INSERT OR IGNORE INTO secret_grants(id, relation_id) VALUES (?1, ?2)",
        params![found.id, relation_id],
    )?;
    Ok(())
}

/// Take back a grant: the other side's reads are refused from now on.
pub fn revoke(model: &Model, uri: &str, relation_id: i64) -> Result<()> {
    let found = secret(model, uri)?.ok_or_else(|| sim_err!("secret {uri:?} not found"))?;
    model.conn().execute(
        "DELETE FROM secret_grants WHERE id = ?1 AND relation_id = ?2",
        params![found.id, relation_id],
    )?;
    Ok(())
}

/// The owner publishes `content` as a new revision (`secret-set`). Every
/// consumer unit tracking an older revision gets `secret-changed` queued,
/// with the label it bound. Returns the new revision and those units.
pub fn publish_revision(model: &Model, uri: &str, content: &Bag) -> Result<(u32, Vec<String>)> {
    if content.is_empty() {
        return Err(sim_err!("a secret revision needs at least one key=value"));
    }
    let found = secret(model, uri)?.ok_or_else(|| sim_err!("secret {uri:?} not found"))?;
    let revision = latest_revision(model, &found.id)? + 1;
    model.conn().execute(
        "INSERT INTO secret_revisions(id, revision, content) VALUES (?1, ?2, ?3)",
        params![
            found.id,
            revision,
            serde_json::to_string(content).expect("strings serialise")
        ],
    )?;
    let consumers: Vec<(String, Option<String>)> = {
        let mut stmt = model.conn().prepare(
            "SELECT unit, label FROM secret_consumers WHERE id = ?1 AND tracked < ?2 ORDER BY unit",
        )?;
        let rows = stmt.query_map(params![found.id, revision], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut notified = Vec::new();
    for (unit, label) in consumers {
        match model.unit(&unit)? {
            Some(u) if !u.dying => {}
            _ => continue,
        }
        enqueue_hook(
            model,
            &unit,
            Hook::Secret {
                kind: SecretHook::Changed,
                id: found.id.clone(),
                label: label.unwrap_or_default(),
                revision: None,
            },
        )?;
        notified.push(unit);
    }
    Ok((revision, notified))
}

/// A consumer unit's tracked revision (`None` if it only peeked) and bound
/// label, if it has read the secret.
pub fn consumer(
    model: &Model,
    uri: &str,
    unit: &str,
) -> Result<Option<(Option<u32>, Option<String>)>> {
    let conn = model.conn();
    ensure(conn)?;
    let id = format!("secret:{}", short_id(uri));
    Ok(conn
        .query_row(
            "SELECT tracked, label FROM secret_consumers WHERE id = ?1 AND unit = ?2",
            params![id, unit],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

// ---- the hook tools ----

impl From<rusqlite::Error> for ToolError {
    fn from(e: rusqlite::Error) -> Self {
        runtime(e.to_string())
    }
}

type ToolResult<T> = std::result::Result<T, ToolError>;

/// The tools' default format is YAML, not smart (§3.20).
fn format_of(parsed: &Parsed, format: Format) -> Format {
    if parsed.is_set("format") {
        format
    } else {
        Format::Yaml
    }
}

fn check_uri(uri: &str) -> ToolResult<()> {
    let id = short_id(uri);
    let well_formed = uri.starts_with("secret:")
        && id.len() == 20
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'v').contains(&b));
    if well_formed {
        Ok(())
    } else {
        Err(usage(format!("invalid secret URI {uri:?}")))
    }
}

/// Argument checks Juju makes before it looks at the model.
pub fn precheck(tool: &str, parsed: &Parsed) -> ToolResult<()> {
    let args = &parsed.args;
    let label = parsed.value("label").is_some();
    match tool {
        "secret-get" => {
            if parsed.switch("peek") && parsed.switch("refresh") {
                return Err(usage("specify one of --peek or --refresh but not both"));
            }
            if args.len() > 2 {
                return Err(usage(super::flags::unrecognized(&args[2..])));
            }
            match args.first() {
                Some(uri) => check_uri(uri)?,
                None if label => {}
                None => return Err(usage("require either a secret URI or label")),
            }
        }
        "secret-info-get" => {
            if args.len() > 1 {
                return Err(usage(super::flags::unrecognized(&args[1..])));
            }
            match (args.first(), label) {
                (Some(_), true) => {
                    return Err(usage("specify either a secret URI or label but not both"))
                }
                (Some(uri), false) => check_uri(uri)?,
                (None, true) => {}
                (None, false) => return Err(usage("require either a secret URI or label")),
            }
        }
        "secret-ids" if !args.is_empty() => {
            return Err(usage(super::flags::unrecognized(args)));
        }
        _ => {}
    }
    Ok(())
}

fn not_found(what: impl std::fmt::Display) -> ToolError {
    runtime(format!("secret {what} not found"))
}

/// Find by URI, else by label: the owner's label for what `unit` owns, the
/// label it bound for what it consumes.
fn find(
    model: &Model,
    unit: &Unit,
    uri: Option<&str>,
    label: Option<&str>,
) -> ToolResult<SecretRow> {
    if let Some(uri) = uri {
        return secret(model, uri)?.ok_or_else(|| not_found(format!("{:?}", short_id(uri))));
    }
    let label = label.unwrap_or_default();
    for candidate in secrets(model)? {
        if candidate.owned_by(unit) {
            if candidate.label == label {
                return Ok(candidate);
            }
        } else if consumer(model, &candidate.id, &unit.name)?
            .and_then(|(_, l)| l)
            .as_deref()
            == Some(label)
        {
            return Ok(candidate);
        }
    }
    // Owned secrets are looked up first; what is left is a consumer label.
    Err(runtime(format!("consumer label {label:?} not found")))
}

/// A grant on a live relation between the unit's application and the owner.
fn granted(model: &Model, found: &SecretRow, unit: &Unit) -> Result<bool> {
    let mut stmt = model
        .conn()
        .prepare("SELECT relation_id FROM secret_grants WHERE id = ?1")?;
    let ids: Vec<i64> = stmt
        .query_map([&found.id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for id in ids {
        let Some(rel) = model.relation(id)? else {
            continue;
        };
        let between = (rel.app == unit.app && rel.remote_app == found.owner_app)
            || (rel.remote_app == unit.app && rel.app == found.owner_app);
        if between && !rel.dying && model.in_scope(id, &unit.name)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `secret-get [<ID>] [<key>[#base64]] [--label L] [--peek|--refresh]`.
pub fn secret_get(
    model: &Model,
    unit: &Unit,
    parsed: &Parsed,
    format: Format,
) -> ToolResult<String> {
    let uri = parsed.args.first().map(String::as_str);
    let label = parsed.value("label").map(|g| g.value.as_str());
    let (peek, refresh) = (parsed.switch("peek"), parsed.switch("refresh"));
    let found = find(model, unit, uri, label)?;
    let latest = latest_revision(model, &found.id)?;
    let revision = if found.owned_by(unit) {
        if refresh {
            return Err(runtime("secret owner cannot use --refresh"));
        }
        // ID and label from the owner (or its application's leader)
        // relabel it, as Juju 3.6's controller does; older agents refused
        // the pair only with --refresh (LP#2042596), refused above.
        if let (Some(_), Some(label)) = (uri, label) {
            if found.owner_unit.is_some() || model.require_unit(&unit.name)?.leader {
                model.conn().execute(
                    "UPDATE secrets SET label = ?1 WHERE id = ?2",
                    params![label, found.id],
                )?;
            }
        }
        latest
    } else {
        if !granted(model, &found, unit)? {
            return Err(runtime("permission denied"));
        }
        let (was_tracked, was_label) = consumer(model, &found.id, &unit.name)?.unwrap_or_default();
        let label_now = match (uri, label) {
            (Some(_), Some(label)) => Some(label.to_string()),
            _ => was_label,
        };
        // A first read tracks the latest whatever its flags: Juju treats a
        // consumer it does not know as a refresh (`getConsumedRevision`).
        let tracked_now = if peek {
            Some(was_tracked.unwrap_or(latest))
        } else if refresh {
            Some(latest)
        } else {
            Some(was_tracked.unwrap_or(latest))
        };
        if let Some(label) = &label_now {
            // A label names one secret for this unit.
            model.conn().execute(
                "UPDATE secret_consumers SET label = NULL WHERE unit = ?1 AND label = ?2 AND id != ?3",
                params![unit.name, label, found.id],
            )?;
        }
        model.conn().execute(
            "INSERT INTO secret_consumers(id, unit, label, tracked) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(id, unit) DO UPDATE SET label = excluded.label, tracked = excluded.tracked",
            params![found.id, unit.name, label_now, tracked_now],
        )?;
        if peek {
            latest
        } else {
            tracked_now.unwrap_or(latest)
        }
    };
    let values = content(model.conn(), &found.id, revision)?
        .ok_or_else(|| not_found(format!("{:?} revision {revision}", found.id)))?;
    let value = match parsed.args.get(1) {
        None => json!(values),
        Some(key) => {
            let (name, encode) = match key.strip_suffix("#base64") {
                Some(name) => (name, true),
                None => (key.as_str(), false),
            };
            let v = values
                .get(name)
                .ok_or_else(|| runtime(format!("secret key {name:?} not found")))?;
            Value::String(if encode {
                super::commands::base64(v.as_bytes())
            } else {
                v.clone()
            })
        }
    };
    Ok(render(format_of(parsed, format), &value))
}

/// `secret-info-get <ID> | --label L`: the owner's view of its secret.
pub fn secret_info_get(
    model: &Model,
    unit: &Unit,
    parsed: &Parsed,
    format: Format,
) -> ToolResult<String> {
    let uri = parsed.args.first().map(String::as_str);
    let label = parsed.value("label").map(|g| g.value.as_str());
    let found = find(model, unit, uri, label)?;
    if !found.owned_by(unit) {
        return Err(runtime("permission denied"));
    }
    let mut info = serde_json::Map::new();
    info.insert("revision".into(), json!(latest_revision(model, &found.id)?));
    if !found.label.is_empty() {
        info.insert("label".into(), json!(found.label));
    }
    let owner = if found.owner_unit.is_some() {
        "unit"
    } else {
        "application"
    };
    info.insert("owner".into(), json!(owner));
    if !found.description.is_empty() {
        info.insert("description".into(), json!(found.description));
    }
    let answer = BTreeMap::from([(found.id.clone(), Value::Object(info))]);
    Ok(render(format_of(parsed, format), &json!(answer)))
}

/// `secret-ids`: what the unit owns, and what its application owns.
pub fn secret_ids(
    model: &Model,
    unit: &Unit,
    parsed: &Parsed,
    format: Format,
) -> ToolResult<String> {
    let ids: Vec<String> = secrets(model)?
        .into_iter()
        .filter(|s| s.owned_by(unit))
        .map(|s| s.id)
        .collect();
    Ok(render(format_of(parsed, format), &json!(ids)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_look_like_jujus() {
        let id = new_id();
        assert!(check_uri(&id).is_ok(), "{id}");
        assert_ne!(new_id(), id);
        assert!(check_uri("secret:short").is_err());
        assert!(check_uri("cn8f3mvmp25c7a5b6b2g").is_err());
        assert!(check_uri("secret://0000/cn8f3mvmp25c7a5b6b2g").is_ok());
    }
}
