//! Applications (the charm and remote ones), their config and statuses,
//! and units: adding, electing a leader, dying and deleting.

use std::collections::BTreeMap;

use rusqlite::{params, OptionalExtension};
use serde_json::{Map, Value};

use super::*;

impl Model {
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
            c.execute("DELETE FROM remote_data WHERE owner = ?1", [name])?;
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

    /// Move a remote unit to the address its service listens on (a load
    /// balancer's frontend), before it joins any relation.
    pub fn set_unit_address(&self, unit: &str, address: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE units SET address = ?2 WHERE name = ?1",
            params![unit, address],
        )?;
        Ok(())
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

    /// Make remote unit `unit` a subordinate of our unit `principal`: in a
    /// container-scoped relation only its principal sees it (Juju pairs a
    /// subordinate unit with the one principal unit on its machine).
    pub fn set_principal(&self, unit: &str, principal: &str) -> Result<()> {
        self.set_meta(&principal_key(unit), principal)
    }

    /// The principal unit of a subordinate unit; `None` for any other unit.
    pub fn principal_of(&self, unit: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = ?1",
                [principal_key(unit)],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Whether `observer` sees remote unit `unit` in a relation: every unit
    /// sees every other, except a subordinate, seen by its principal only.
    pub fn sees(&self, observer: &str, unit: &str) -> Result<bool> {
        Ok(match self.principal_of(unit)? {
            Some(principal) => principal == observer,
            None => true,
        })
    }

    /// Forget a unit and everything that is only its own.
    pub fn delete_unit(&self, unit: &str) -> Result<()> {
        self.tx(|c| {
            c.execute("DELETE FROM meta WHERE key = ?1", [principal_key(unit)])?;
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
}

fn principal_key(unit: &str) -> String {
    format!("principal:{unit}")
}
