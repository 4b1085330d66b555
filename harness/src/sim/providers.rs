//! charm-sim's emulated database providers: a remote application added with
//! `charm-sim add-remote NAME --interface postgresql_client --provider` (or
//! `mongodb_client`) answers the way Charmed PostgreSQL's and Charmed
//! MongoDB's leaders do (data_interfaces v0; shared/reference/
//! modern-interfaces.md §2, §3):
//!
//! - until our `database` request is in our application bag, its bag holds
//!   nothing but `endpoints` (and `read-only-endpoints` / `replset`), which
//!   the provider may write early; credentials never come first
//!   (`PrematureDataAccessError`);
//! - once asked, it creates user `relation-<id>` with a random password in
//!   an application-owned secret labelled `database.<id>.user.secret`,
//!   grants it on the relation and writes its URI in `secret-user`, with
//!   `database`, `endpoints`, `version` and `tls` `False` in its bag; the
//!   fields go in plain text instead when the request has no
//!   `requested-secrets` (§2.5).
//!
//! The answer is given when the hook queue is empty (after our leader's hook
//! committed the request), and queues relation-changed like any remote
//! change. A password rotation is `charm-sim rotate-password APP`: a new
//! password in a new revision of each relation's user secret, which queues
//! `secret-changed` for the units tracking it.
//!
//! Pointed at a real PostgreSQL (`--postgres`, [`super::postgres`]), the
//! PostgreSQL provider publishes that server's `HOST:PORT` and version,
//! creates the role and the database in it before answering, and a rotation
//! changes the role's password in the server before publishing it.

use super::engine;
use super::postgres::Admin;
use super::store::{random_hex, Bag, Model, Relation};
use super::Result;
use crate::sim_err;

fn meta_key(app: &str) -> String {
    format!("provider:{app}")
}

/// Where the admin URL of a provider backed by a real PostgreSQL is kept.
fn postgres_key(app: &str) -> String {
    format!("provider-postgres:{app}")
}

/// The interfaces an emulated provider can speak.
pub const INTERFACES: [&str; 2] = ["postgresql_client", "mongodb_client"];

/// Make remote application `app` (speaking `interface`) an emulated
/// provider, backed by the real PostgreSQL at `postgres` when given (its
/// admin can log in, or this fails); returns the bag it publishes before
/// any request.
pub fn register(model: &Model, app: &str, interface: &str, postgres: Option<&str>) -> Result<Bag> {
    if !INTERFACES.contains(&interface) {
        return Err(sim_err!(
            "--provider: charm-sim emulates {} only, not {interface:?}",
            INTERFACES.join(" and ")
        ));
    }
    let admin = match postgres {
        Some(_) if interface != "postgresql_client" => {
            return Err(sim_err!(
                "--postgres backs a postgresql_client provider, not {interface:?}"
            ))
        }
        Some(url) => {
            let admin = Admin::parse(url)?;
            admin.server_version()?;
            model.set_meta(&postgres_key(app), url)?;
            Some(admin)
        }
        None => None,
    };
    model.set_meta(&meta_key(app), interface)?;
    Ok(early_bag(interface, admin.as_ref()))
}

fn early_bag(interface: &str, admin: Option<&Admin>) -> Bag {
    let pairs: Vec<(&str, String)> = match interface {
        "postgresql_client" => {
            let endpoint = admin.map_or_else(|| "127.0.0.1:5432".to_string(), Admin::endpoint);
            vec![
                ("endpoints", endpoint.clone()),
                ("read-only-endpoints", endpoint),
            ]
        }
        _ => vec![
            ("endpoints", "127.0.0.1:27017".into()),
            ("replset", "rs0".into()),
        ],
    };
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Forget that `app` was an emulated provider (it is being removed).
pub fn forget(model: &Model, app: &str) -> Result<()> {
    model.delete_meta(&meta_key(app))
}

fn interface_of(model: &Model, app: &str) -> Option<String> {
    model.meta(&meta_key(app)).ok()
}

/// The real PostgreSQL behind provider `app`, if it has one.
pub fn real_postgres(model: &Model, app: &str) -> Result<Option<Admin>> {
    match model.meta(&postgres_key(app)) {
        Ok(url) => Admin::parse(&url).map(Some),
        Err(_) => Ok(None),
    }
}

/// The `user` group's fields (§2.3) for `username` on `database`.
fn user_fields(
    interface: &str,
    endpoint: &str,
    username: &str,
    password: &str,
    database: &str,
) -> Bag {
    let uri = match interface {
        "postgresql_client" => format!("postgresql://{username}:{password}@{endpoint}/{database}"),
        _ => format!(
            "mongodb://{username}:{password}@{endpoint}/{database}?replicaSet=rs0&authSource=admin"
        ),
    };
    [
        ("username", username),
        ("password", password),
        ("uris", uri.as_str()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Answer every request not answered yet. Returns whether any was (its
/// relation-changed is then queued).
pub fn answer_requests(model: &Model) -> Result<bool> {
    let mut answered = false;
    for rel in model.relations()? {
        if rel.dying {
            continue;
        }
        let Some(interface) = interface_of(model, &rel.remote_app) else {
            continue;
        };
        let request = model.bag(rel.id, &rel.app)?;
        let Some(database) = request.get("database").filter(|d| !d.is_empty()) else {
            continue;
        };
        let theirs = model.bag(rel.id, &rel.remote_app)?;
        if theirs.contains_key("database") {
            // Providers create the database of the first request only.
            continue;
        }
        let requested: Vec<String> = request
            .get("requested-secrets")
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or_default();
        let username = format!("relation-{}", rel.id);
        let password = random_hex(16);
        let admin = real_postgres(model, &rel.remote_app)?;
        let mut answer = early_bag(&interface, admin.as_ref());
        answer.insert("database".into(), database.clone());
        let version = match (&admin, interface.as_str()) {
            (Some(admin), _) => {
                admin.create_role_and_database(&username, &password, database)?;
                admin.server_version()?
            }
            (None, "postgresql_client") => "16.4".into(),
            (None, _) => "8.0.4".into(),
        };
        answer.insert("version".into(), version);
        let endpoint = answer["endpoints"].clone();
        let user = user_fields(&interface, &endpoint, &username, &password, database);
        if requested.iter().any(|f| f == "password") {
            let label = format!("{}.{}.user.secret", rel.remote_endpoint, rel.id);
            let id = super::secrets::add_secret(model, &rel.remote_app, None, &label, &user)?;
            super::secrets::grant(model, &id, rel.id)?;
            answer.insert("secret-user".into(), id);
            if requested.iter().any(|f| f == "tls") {
                let tls: Bag = [("tls".to_string(), "False".to_string())].into();
                let label = format!("{}.{}.tls.secret", rel.remote_endpoint, rel.id);
                let id = super::secrets::add_secret(model, &rel.remote_app, None, &label, &tls)?;
                super::secrets::grant(model, &id, rel.id)?;
                answer.insert("secret-tls".into(), id);
            } else {
                answer.insert("tls".into(), "False".into());
            }
        } else {
            answer.extend(user);
            answer.insert("tls".into(), "False".into());
        }
        model.update_bag(rel.id, &rel.remote_app, &answer)?;
        engine::enqueue_remote_change(model, &rel.remote_app)?;
        answered = true;
    }
    Ok(answered)
}

/// A new password for every relation of provider `app` it has answered:
/// changed in the real PostgreSQL first when there is one (sessions already
/// open stay open), then published as a new revision of the relation's user
/// secret (queuing `secret-changed`), or in the plain bag when the request
/// asked for no secrets. Returns, per relation, the secret's URI (or `None`)
/// and the new revision.
pub fn rotate_password(model: &Model, app: &str) -> Result<Vec<(Relation, Option<String>, u32)>> {
    let interface = interface_of(model, app).ok_or_else(|| {
        sim_err!("{app:?} is not an emulated provider (add-remote {app} --provider)")
    })?;
    let admin = real_postgres(model, app)?;
    let mut rotated = Vec::new();
    for rel in model.relations()? {
        if rel.dying || rel.remote_app != app {
            continue;
        }
        let theirs = model.bag(rel.id, app)?;
        let Some(database) = theirs.get("database") else {
            continue;
        };
        let username = format!("relation-{}", rel.id);
        let password = random_hex(16);
        if let Some(admin) = &admin {
            admin.set_password(&username, &password)?;
        }
        let endpoint = theirs.get("endpoints").cloned().unwrap_or_default();
        let user = user_fields(&interface, &endpoint, &username, &password, database);
        match theirs.get("secret-user") {
            Some(uri) => {
                let (revision, _) = super::secrets::publish_revision(model, uri, &user)?;
                rotated.push((rel, Some(uri.clone()), revision));
            }
            None => {
                model.update_bag(rel.id, app, &user)?;
                engine::enqueue_remote_change(model, app)?;
                rotated.push((rel, None, 0));
            }
        }
    }
    if rotated.is_empty() {
        return Err(sim_err!(
            "{app} has answered no relation yet: nothing to rotate"
        ));
    }
    Ok(rotated)
}
