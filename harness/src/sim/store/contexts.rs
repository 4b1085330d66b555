//! What runs against the model: hook contexts and the changes they hold
//! until the hook succeeds, juju-log lines, actions and their results,
//! and each unit's queue of hooks.

use std::collections::BTreeMap;

use rusqlite::{params, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use wsgi_app::ops::backend::Port;

use super::relations::{apply_bag_changes, merged_ports};
use super::*;

impl Model {
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
    /// The bags the writes changed, as (relation id, owner).
    pub fn finish_context(&self, id: &str, unit: &str, commit: bool) -> Result<Vec<(i64, String)>> {
        let mut changed = Vec::new();
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
                        let differs = changes.iter().any(|(k, v)| {
                            let now: Option<String> = c
                                .query_row(
                                    "SELECT value FROM bags WHERE relation_id = ?1 AND owner = ?2 AND key = ?3",
                                    params![rel, owner, k],
                                    |r| r.get(0),
                                )
                                .optional()
                                .unwrap_or(None);
                            now.as_deref().unwrap_or("") != v.as_str()
                        });
                        apply_bag_changes(c, rel, &owner, &changes)?;
                        if differs {
                            changed.push((rel, owner));
                        }
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
        })?;
        Ok(changed)
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

    /// Whether any unit that exists and is not in error has a step queued.
    pub fn any_runnable_step(&self) -> Result<bool> {
        Ok(self.conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM queue JOIN units ON units.name = queue.unit
                           WHERE units.agent != 'error')",
            [],
            |r| r.get(0),
        )?)
    }

    pub fn queued_steps(&self, unit: &str) -> Result<usize> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM queue WHERE unit = ?1", [unit], |r| {
                r.get::<_, i64>(0)
            })? as usize)
    }
}
