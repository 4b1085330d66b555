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
//! change. A password rotation is `charm-sim rotate-secret <uri> …`. It does
//! not create a role or a database in a real PostgreSQL.

use super::engine;
use super::store::{random_hex, Bag, Model};
use super::Result;
use crate::sim_err;

fn meta_key(app: &str) -> String {
    format!("provider:{app}")
}

/// The interfaces an emulated provider can speak.
pub const INTERFACES: [&str; 2] = ["postgresql_client", "mongodb_client"];

/// Make remote application `app` (speaking `interface`) an emulated
/// provider; returns the bag it publishes before any request.
pub fn register(model: &Model, app: &str, interface: &str) -> Result<Bag> {
    if !INTERFACES.contains(&interface) {
        return Err(sim_err!(
            "--provider: charm-sim emulates {} only, not {interface:?}",
            INTERFACES.join(" and ")
        ));
    }
    model.set_meta(&meta_key(app), interface)?;
    Ok(early_bag(interface))
}

fn early_bag(interface: &str) -> Bag {
    let pairs: &[(&str, &str)] = match interface {
        "postgresql_client" => &[
            ("endpoints", "127.0.0.1:5432"),
            ("read-only-endpoints", "127.0.0.1:5432"),
        ],
        _ => &[("endpoints", "127.0.0.1:27017"), ("replset", "rs0")],
    };
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Forget that `app` was an emulated provider (it is being removed).
pub fn forget(model: &Model, app: &str) -> Result<()> {
    model.delete_meta(&meta_key(app))
}

fn interface_of(model: &Model, app: &str) -> Option<String> {
    model.meta(&meta_key(app)).ok()
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
        let mut answer = early_bag(&interface);
        answer.insert("database".into(), database.clone());
        let (version, uri) = match interface.as_str() {
            "postgresql_client" => (
                "16.4",
                format!("postgresql://{username}:{password}@127.0.0.1:5432/{database}"),
            ),
            _ => (
                "8.0.4",
                format!(
                    "mongodb://{username}:{password}@127.0.0.1:27017/{database}?replicaSet=rs0&authSource=admin"
                ),
            ),
        };
        answer.insert("version".into(), version.into());
        let user: Bag = [
            ("username", username.as_str()),
            ("password", password.as_str()),
            ("uris", uri.as_str()),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
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
