//! `charm-sim status` and `charm-sim show-unit`: the model as
//! `juju status --format=json` / the tabular `juju status`, and one unit's
//! relation data as `juju show-unit` shows it.

use serde_json::{json, Map, Value};

use super::store::{App, Model, StatusPair, Unit};
use super::{Result, JUJU_VERSION};
use crate::schema::Role;

fn pair(status: &StatusPair) -> Value {
    json!({"current": status.current, "message": status.message})
}

/// Juju's derived application status when the leader never set one: the
/// most severe unit status.
fn app_status(model: &Model, app: &App) -> Result<StatusPair> {
    if app.status_set || app.remote {
        return Ok(app.status.clone());
    }
    let severity = |s: &str| match s {
        "error" => 6,
        "blocked" => 5,
        "maintenance" => 4,
        "waiting" => 3,
        "active" => 2,
        "terminated" => 1,
        _ => 0,
    };
    Ok(model
        .units(&app.name)?
        .into_iter()
        .map(|u| {
            if u.agent.current == "error" {
                StatusPair {
                    current: "error".into(),
                    message: u.agent.message,
                }
            } else {
                u.workload
            }
        })
        // On a tie the lowest-numbered unit wins (hence rev before max).
        .rev()
        .max_by_key(|s| severity(&s.current))
        .unwrap_or(StatusPair {
            current: "unknown".into(),
            message: String::new(),
        }))
}

fn unit_json(model: &Model, unit: &Unit) -> Result<Value> {
    let ports: Vec<String> = model
        .ports(&unit.name)?
        .into_iter()
        .map(|p| p.port.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    // Juju shows a hook error as the workload status too.
    let workload = if unit.agent.current == "error" {
        json!({"current": "error", "message": unit.agent.message})
    } else {
        pair(&unit.workload)
    };
    let mut value = json!({
        "workload-status": workload,
        "juju-status": pair(&unit.agent),
        "machine": unit.number.to_string(),
        "public-address": unit.address,
    });
    if unit.leader {
        value["leader"] = json!(true);
    }
    if !ports.is_empty() {
        value["open-ports"] = json!(ports);
    }
    if unit.dying {
        value["life"] = json!("dying");
    }
    Ok(value)
}

/// The model as `juju status --format=json` shapes it.
pub fn status_json(model: &Model) -> Result<Value> {
    let mut apps = Map::new();
    let relations = model.relations()?;
    for app in model.apps()? {
        let mut units = Map::new();
        for unit in model.units(&app.name)? {
            units.insert(unit.name.clone(), unit_json(model, &unit)?);
        }
        let mut rels: Map<String, Value> = Map::new();
        for rel in &relations {
            let (endpoint, other) = if rel.app == app.name {
                (&rel.endpoint, &rel.remote_app)
            } else if rel.remote_app == app.name {
                (&rel.remote_endpoint, &rel.app)
            } else {
                continue;
            };
            let scope = app
                .charm
                .as_ref()
                .and_then(|c| c.endpoints.get(endpoint))
                .map(|e| e.scope.clone())
                .unwrap_or_else(|| "global".into());
            let entry = rels.entry(endpoint.clone()).or_insert_with(|| json!([]));
            if let Some(list) = entry.as_array_mut() {
                list.push(json!({
                    "related-application": other,
                    "interface": rel.interface,
                    "scope": scope,
                }));
            }
        }
        let charm = match &app.charm {
            Some(meta) => meta.name.clone(),
            None => "remote".into(),
        };
        let mut value = json!({
            "charm": charm,
            "charm-origin": if app.remote { "remote" } else { "local" },
            "exposed": false,
            "application-status": pair(&app_status(model, &app)?),
            "relations": rels,
            "units": units,
        });
        if !app.version.is_empty() {
            value["version"] = json!(app.version);
        }
        if let Some(interface) = &app.interface {
            value["interface"] = json!(interface);
        }
        if let Some(address) = super::cos::address_of(model, &app.name) {
            value["prometheus"] = json!(format!("http://{address}/"));
        }
        apps.insert(app.name.clone(), value);
    }
    let relations: Vec<Value> = relations
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "key": r.key(),
                "endpoints": [format!("{}:{}", r.app, r.endpoint), format!("{}:{}", r.remote_app, r.remote_endpoint)],
                "interface": r.interface,
                "life": if r.dying { "dying" } else { "alive" },
            })
        })
        .collect();
    Ok(json!({
        "model": {
            "name": model.name()?,
            "uuid": model.uuid()?,
            "type": "iaas",
            "controller": "charm-sim",
            "cloud": "localhost",
            "version": JUJU_VERSION,
            "model-status": {"current": "available", "message": ""},
            "directory": model.dir().display().to_string(),
        },
        "machines": {},
        "applications": apps,
        "relations": relations,
    }))
}

/// Left-aligned columns separated by two spaces, like juju's tables.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map(|s| s.chars().count()).unwrap_or(0))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The readable `juju status` table.
pub fn status_table(model: &Model) -> Result<String> {
    let status = status_json(model)?;
    let mut out = table(&[
        vec![
            "Model".into(),
            "Controller".into(),
            "Cloud/Region".into(),
            "Version".into(),
            "Directory".into(),
        ],
        vec![
            model.name()?,
            "charm-sim".into(),
            "localhost".into(),
            JUJU_VERSION.into(),
            model.dir().display().to_string(),
        ],
    ]);
    let empty = Map::new();
    let apps = status["applications"].as_object().unwrap_or(&empty);
    let mut rows = vec![vec![
        "App".to_string(),
        "Version".into(),
        "Status".into(),
        "Scale".into(),
        "Charm".into(),
        "Message".into(),
    ]];
    let mut unit_rows = vec![vec![
        "Unit".to_string(),
        "Workload".into(),
        "Agent".into(),
        "Address".into(),
        "Ports".into(),
        "Message".into(),
    ]];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    for (name, app) in apps {
        let units = app["units"].as_object().unwrap_or(&empty);
        rows.push(vec![
            name.clone(),
            text(&app["version"]),
            text(&app["application-status"]["current"]),
            units.len().to_string(),
            text(&app["charm"]),
            text(&app["application-status"]["message"]),
        ]);
        for (unit_name, unit) in units {
            let star = if unit["leader"] == json!(true) {
                "*"
            } else {
                ""
            };
            let ports: Vec<String> = unit["open-ports"]
                .as_array()
                .map(|a| a.iter().map(text).collect())
                .unwrap_or_default();
            let agent = text(&unit["juju-status"]["current"]);
            let message = if agent == "error" {
                text(&unit["juju-status"]["message"])
            } else {
                text(&unit["workload-status"]["message"])
            };
            unit_rows.push(vec![
                format!("{unit_name}{star}"),
                text(&unit["workload-status"]["current"]),
                agent,
                text(&unit["public-address"]),
                ports.join(","),
                message,
            ]);
        }
    }
    out.push('\n');
    out.push_str(&table(&rows));
    if unit_rows.len() > 1 {
        out.push('\n');
        out.push_str(&table(&unit_rows));
    }
    let relations = model.relations()?;
    if !relations.is_empty() {
        let mut rel_rows = vec![vec![
            "Integration provider".to_string(),
            "Requirer".into(),
            "Interface".into(),
            "Type".into(),
            "Message".into(),
        ]];
        for rel in relations {
            let ours = format!("{}:{}", rel.app, rel.endpoint);
            let theirs = format!("{}:{}", rel.remote_app, rel.remote_endpoint);
            let role = model
                .app(&rel.app)?
                .and_then(|a| a.charm)
                .and_then(|c| c.endpoints.get(&rel.endpoint).map(|e| e.role));
            let (provider, requirer) = if role == Some(Role::Provides) {
                (ours, theirs)
            } else {
                (theirs, ours)
            };
            rel_rows.push(vec![
                provider,
                requirer,
                rel.interface.clone(),
                "regular".into(),
                if rel.dying {
                    "dying".into()
                } else {
                    String::new()
                },
            ]);
        }
        out.push('\n');
        out.push_str(&table(&rel_rows));
    }
    Ok(out)
}

/// One unit as `juju show-unit --format=json` shows it, with the bags it
/// owns and the ones it sees (plus its own application's bag, which Juju
/// does not show but a charm author wants to check).
pub fn show_unit(model: &Model, unit: &Unit) -> Result<Value> {
    let mut relation_info = Vec::new();
    for rel in model.unit_relations(&unit.name)? {
        let mut related = Map::new();
        let members = model.members(rel.id, &unit.name)?;
        for remote in model.scope(rel.id)? {
            if remote.split('/').next() != Some(rel.remote_app.as_str()) {
                continue;
            }
            related.insert(
                remote.clone(),
                json!({
                    "in-scope": true,
                    "joined": members.contains(&remote),
                    "data": model.bag(rel.id, &remote)?,
                }),
            );
        }
        relation_info.push(json!({
            "relation-id": rel.id,
            "endpoint": rel.endpoint,
            "related-endpoint": rel.remote_endpoint,
            "related-application": rel.remote_app,
            "application-data": model.bag(rel.id, &rel.remote_app)?,
            "local-application-data": model.bag(rel.id, &rel.app)?,
            "local-unit": {
                "in-scope": true,
                "data": model.bag(rel.id, &unit.name)?,
            },
            "related-units": related,
        }));
    }
    let ports: Vec<String> = model
        .ports(&unit.name)?
        .into_iter()
        .map(|p| p.port.to_string())
        .collect();
    let app = model.require_app(&unit.app)?;
    let logs: Vec<Value> = model
        .logs(&unit.name)?
        .into_iter()
        .map(|(level, message)| json!(format!("{level}: {message}")))
        .collect();
    let mut value = json!({
        "opened-ports": ports,
        "charm": app.charm.as_ref().map(|c| c.name.clone()).unwrap_or_else(|| "remote".into()),
        "leader": unit.leader,
        "life": if unit.dying { "dying" } else { "alive" },
        "machine": unit.number.to_string(),
        "public-address": unit.address,
        "workload-status": pair(&unit.workload),
        "juju-status": pair(&unit.agent),
        "relation-info": relation_info,
    });
    if !app.version.is_empty() {
        value["workload-version"] = json!(app.version);
    }
    if !app.remote {
        value["juju-log"] = json!(logs);
        // The last few status changes, oldest first, as `juju show-status-log`.
        let history = model.status_history(&unit.name)?;
        let recent: Vec<Value> = history[history.len().saturating_sub(20)..]
            .iter()
            .map(|(kind, status, message, at)| {
                json!({"type": kind, "status": status, "message": message, "at": at})
            })
            .collect();
        value["status-history"] = json!(recent);
    }
    Ok(json!({ unit.name.clone(): value }))
}
