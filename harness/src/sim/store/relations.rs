//! Relations and their scopes, the data bags (and remote apps' data),
//! leader settings and opened ports.

use rusqlite::{params, Connection};
use wsgi_app::ops::backend::Port;

use super::*;

impl Model {
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
}

pub(super) fn apply_bag_changes(
    c: &Connection,
    relation: i64,
    owner: &str,
    changes: &Bag,
) -> Result<()> {
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
pub(super) fn merged_ports(
    c: &Connection,
    unit: &str,
    context: Option<&str>,
) -> Result<Vec<OpenedPort>> {
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
