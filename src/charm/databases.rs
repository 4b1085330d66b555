//! Today's databases, Juju side: the `postgresql` (`postgresql_client`) and
//! `mongodb-client` (`mongodb_client`) endpoints
//! (shared/reference/modern-interfaces.md §2, §3, §6).
//!
//! On every full reconcile, for each live relation of the two endpoints:
//!
//! 1. the leader writes our request (`database`, `requested-secrets`) into
//!    our application bag, and every unit `requested-secrets` into its own
//!    bag; keys already holding the value are not sent again, so this is a
//!    no-op unless the relation is new or `database_name` changed. A name
//!    the provider would refuse is Blocked on every unit, and not asked for;
//! 2. every unit reads the provider's answer: the `secret-user` and
//!    `secret-tls` secrets (by URI, binding our label
//!    `<endpoint>.<id>.<group>.secret`), else the plain bag keys (Juju
//!    without secrets). The read moves to the newest revision (`--refresh`)
//!    on this relation's own events and on a `secret-changed` for one of its
//!    secrets, and keeps the tracked revision otherwise;
//! 3. the URLs reach the environment file, built in memory from what was
//!    read ([`FreshUrl`]); the store records only their redacted form and
//!    the relation they came from, which is what decides to keep or drop
//!    them (secret content never enters the store). The CA, when `tls` is
//!    `True`, goes to a file the app's group reads ([`CaFile`], written by
//!    the reconcile with the environment file).
//!
//! A provider that answered before our request (no `database` in its
//! answer, or credentials our leader saw before it had asked) is refused,
//! as data_interfaces' provider refuses to write them
//! (`PrematureDataAccessError`, §2.2). Bad data is Waiting or Blocked naming
//! the relation and the field, never a hook error, never a value. The
//! legacy endpoint of the same database related at the same time is
//! Blocked naming both, and the legacy relation keeps providing the URL.
//!
//! A password rotation (`secret-changed`) changes the environment file; the
//! reconcile then moves gunicorn to a new master like any other change of
//! environment.

use std::path::PathBuf;

use super::config::Config;
use super::integrations::{settle, Candidate, FreshUrl};
use super::reconcile::Report;
use super::relations::database_client::{
    database_request, provider_answer, secret_label, DbKind, DbProblem, DbUrls, ProviderInput,
    SecretUris,
};
use super::state;
use super::{Ctx, Endpoint, WsgiEvent};
use crate::ops::{
    Bag, BagOwner, Event, HandlerError, LogLevel, ModelError, RelationId, Scope, SecretContent,
    SecretHook, SecretRead, SecretRef,
};
use crate::workload::layout::Layout;

/// The two modern endpoints, the interface each speaks, and the legacy
/// endpoint that provides the same variable.
pub const DATABASE_ENDPOINTS: [(Endpoint, DbKind, Endpoint); 2] = [
    (Endpoint::Postgresql, DbKind::Postgresql, Endpoint::Pgsql),
    (Endpoint::MongodbClient, DbKind::Mongodb, Endpoint::Mongodb),
];

/// Every variable a modern relation may set.
fn variables(kind: DbKind) -> &'static [&'static str] {
    match kind {
        DbKind::Postgresql => &[
            "DATABASE_URL",
            "POSTGRESQL_DB_CONNECT_STRING",
            "DATABASE_READ_ONLY_URL",
        ],
        DbKind::Mongodb => &["MONGO_URL", "MONGODB_DB_CONNECT_STRING"],
    }
}

/// Which secret reads of this dispatch move to the newest revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Focus {
    /// A relation event on this relation (created, joined, changed…).
    relation: Option<(Endpoint, u32)>,
    /// `secret-changed`: the secret's URI and label.
    changed_secret: Option<(String, Option<String>)>,
}

impl Focus {
    pub fn of(event: &WsgiEvent) -> Focus {
        match event {
            Event::Relation(rel) => Focus {
                relation: Some((rel.relation.endpoint, rel.relation.id)),
                changed_secret: None,
            },
            Event::Secret(secret) if secret.hook == SecretHook::Changed => Focus {
                relation: None,
                changed_secret: Some((secret.id.clone(), secret.label().map(str::to_string))),
            },
            _ => Focus::default(),
        }
    }

    fn read_for(&self, rel: RelationId<Endpoint>, uri: &str, label: &str) -> SecretRead {
        let on_relation = self.relation == Some((rel.endpoint, rel.id));
        let changed = self
            .changed_secret
            .as_ref()
            .is_some_and(|(id, l)| id == uri || l.as_deref() == Some(label));
        if on_relation || changed {
            SecretRead::Refresh
        } else {
            SecretRead::Tracked
        }
    }
}

/// A CA the application must trust: written by the reconcile, mode 0640,
/// root and the app's group, before the environment file names it.
#[derive(Clone, PartialEq, Eq)]
pub struct CaFile {
    pub path: PathBuf,
    pub pem: String,
}

impl std::fmt::Debug for CaFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CaFile({})", self.path.display())
    }
}

/// What [`refresh`] read, and leaves for the reconcile to do on the machine.
#[derive(Debug, Default)]
pub struct Refreshed {
    /// The URLs rebuilt from the providers' answers, which the store does
    /// not keep.
    pub urls: Vec<FreshUrl>,
    /// CA files wanted now.
    pub ca_files: Vec<CaFile>,
    /// CA files of endpoints that no longer need one (removed when present).
    pub stale_ca_files: Vec<PathBuf>,
}

/// Whether the URLs of `relation` (`endpoint:id`) are built from a
/// provider's secrets, so the store keeps their redacted form only and the
/// value is rebuilt on each full reconcile.
pub fn rebuilt_from_secrets(relation: &str) -> bool {
    let endpoint = relation.rsplit_once(':').map_or(relation, |(ep, _)| ep);
    DATABASE_ENDPOINTS
        .iter()
        .any(|(modern, _, _)| modern.as_ref() == endpoint)
}

/// Whether the modern endpoint and its legacy twin are both related: then
/// the legacy relation keeps providing, and the modern one is Blocked.
fn in_conflict(
    ctx: &mut Ctx<'_, '_>,
    report: &mut Report,
    kind: DbKind,
    legacy: Endpoint,
    live: &[RelationId<Endpoint>],
) -> Result<bool, HandlerError> {
    let legacy_live = ctx.model.relations(legacy)?;
    let (Some(&modern), Some(&old)) = (live.first(), legacy_live.first()) else {
        return Ok(false);
    };
    let app = ctx.model.app_name().to_string();
    let old_remote = ctx.model.remote_app(old)?.to_string();
    let modern_remote = ctx.model.remote_app(modern)?.to_string();
    report.blocked(format!(
        "{old} ({old_remote}) and {modern} ({modern_remote}) are both related, which the providers warn against: remove one (juju remove-relation {app}:{} {old_remote}); {old} provides {} meanwhile",
        legacy.as_ref(),
        kind.url_variables().0,
    ));
    Ok(true)
}

/// Re-read both modern endpoints, write our requests, record the URLs.
/// Runs before the legacy relations' refresh, which keeps a URL recorded
/// from a live modern relation (see [`live_relations`]).
pub fn refresh(
    ctx: &mut Ctx<'_, '_>,
    config: &Config,
    report: &mut Report,
    layout: &Layout,
    focus: &Focus,
) -> Result<Refreshed, HandlerError> {
    let mut out = Refreshed::default();
    let database = config
        .database_name
        .clone()
        .unwrap_or_else(|| ctx.model.app_name().to_string());
    for (endpoint, kind, legacy) in DATABASE_ENDPOINTS {
        let ca_path = layout.database_ca_file(endpoint.as_ref());
        let live = ctx.model.relations(endpoint)?;
        let mut candidate: Option<(DbUrls, String)> = None;
        let mut ca = None;
        let mut problem: Option<DbProblem> = None;
        let conflict = in_conflict(ctx, report, kind, legacy, &live)?;
        // `limit: 1`: one relation at most, but read them all the same.
        for &rel in &live {
            match relation_answer(ctx, report, rel, kind, &database, layout, focus)? {
                Some(Ok((urls, pem))) if candidate.is_none() => {
                    candidate = Some((urls, rel.to_string()));
                    ca = pem;
                }
                Some(Err(why)) if problem.is_none() => problem = Some(why),
                _ => {}
            }
        }
        if conflict {
            candidate = None;
            problem = None;
        }
        match (&candidate, ca) {
            (Some(_), Some(pem)) => out.ca_files.push(CaFile { path: ca_path, pem }),
            (Some(_), None) => out.stale_ca_files.push(ca_path),
            // Keep a CA a kept URL may still name; drop it with the relation.
            (None, _) if live.is_empty() => out.stale_ca_files.push(ca_path),
            (None, _) => {}
        }
        if let Some(why) = problem.filter(|_| candidate.is_none()) {
            if why.is_waiting() {
                report.waiting(why.to_string());
            } else {
                report.blocked(why.to_string());
            }
        }
        record(
            ctx, report, &mut out, kind, legacy, candidate, &live, conflict,
        )?;
    }
    Ok(out)
}

/// The relations whose recorded URL for `name` must be kept while they
/// live: those of the modern endpoint and of its legacy twin.
pub fn live_relations(
    ctx: &mut Ctx<'_, '_>,
    name: &str,
) -> Result<Vec<RelationId<Endpoint>>, HandlerError> {
    let mut live = Vec::new();
    for (endpoint, kind, legacy) in DATABASE_ENDPOINTS {
        if variables(kind).contains(&name) {
            live.extend(ctx.model.relations(endpoint)?);
            live.extend(ctx.model.relations(legacy)?);
        }
    }
    Ok(live)
}

/// Record which relation provides the URLs of one endpoint (or keep/drop
/// what was recorded); the accepted URLs themselves go to `out.urls`.
#[allow(clippy::too_many_arguments)]
fn record(
    ctx: &mut Ctx<'_, '_>,
    report: &mut Report,
    out: &mut Refreshed,
    kind: DbKind,
    legacy: Endpoint,
    candidate: Option<(DbUrls, String)>,
    live: &[RelationId<Endpoint>],
    conflict: bool,
) -> Result<(), HandlerError> {
    if conflict {
        // The legacy relation provides the shared name; ours provides none.
        for name in variables(kind) {
            let shared = *name == kind.url_variables().0;
            let recorded = state::relation_urls(ctx.store.conn())?
                .into_iter()
                .find(|u| u.name == *name);
            let ours = recorded
                .as_ref()
                .is_some_and(|r| live.iter().any(|rel| rel.to_string() == r.relation));
            if ours || !shared {
                state::set_relation_url(ctx.store.conn(), name, None)?;
            }
        }
        return Ok(());
    }
    let Some((urls, relation)) = candidate else {
        // Nothing usable now: keep what a live relation recorded (a
        // rotation in progress, a revoked grant), drop what a gone one did.
        for name in variables(kind) {
            let mut alive = live.to_vec();
            if *name == kind.url_variables().0 {
                alive.extend(ctx.model.relations(legacy)?);
            }
            settle(ctx, report, name, None, &alive)?;
        }
        return Ok(());
    };
    ctx.model.log(
        LogLevel::Info,
        &format!(
            "{} from {relation}: {}",
            kind.url_variables().0,
            urls.primary.redacted()
        ),
    );
    let values = urls.variables(kind);
    for name in variables(kind) {
        match values.iter().find(|(n, _)| n == name) {
            Some((name, url)) => {
                let candidate = Candidate {
                    url: url.expose().to_string(),
                    recorded: url.for_the_store(),
                    relation: relation.clone(),
                };
                if settle(ctx, report, name, Some(candidate), live)? {
                    out.urls.push(FreshUrl {
                        name,
                        relation: relation.clone(),
                        url: (*url).clone(),
                    });
                }
            }
            // The answer no longer has it (read-only endpoints gone).
            None => state::set_relation_url(ctx.store.conn(), name, None)?,
        }
    }
    Ok(())
}

/// One relation: write our request (leader), read the answer. `None` when
/// the relation gives nothing to report (our request was refused: already
/// reported).
#[allow(clippy::type_complexity)]
fn relation_answer(
    ctx: &mut Ctx<'_, '_>,
    report: &mut Report,
    rel: RelationId<Endpoint>,
    kind: DbKind,
    database: &str,
    layout: &Layout,
    focus: &Focus,
) -> Result<Option<Result<(DbUrls, Option<String>), DbProblem>>, HandlerError> {
    let request = match database_request(kind, database) {
        Ok(request) => request,
        Err(refused) => {
            report.blocked(format!("{rel}: {refused}"));
            return Ok(None);
        }
    };
    let mut asked_before = true;
    if ctx.model.is_leader()? {
        let app = ctx.model.app_name().to_string();
        let ours = ctx.model.relation_data(rel, &BagOwner::App(app))?;
        asked_before = ours.contains_key("database");
        ctx.model
            .update_relation_data(rel, Scope::App, &request.app)?;
    }
    ctx.model
        .update_relation_data(rel, Scope::Unit, &request.unit)?;

    let provider = ctx.model.remote_app(rel)?.to_string();
    let app_bag: Bag = ctx
        .model
        .relation_data(rel, &BagOwner::App(provider.clone()))?
        .clone();
    let relation = rel.to_string();
    let answered = app_bag.contains_key("secret-user")
        || (app_bag.contains_key("username") && app_bag.contains_key("password"));
    if answered && (!asked_before || !app_bag.contains_key("database")) {
        // data_interfaces' provider refuses to write credentials before our
        // request is there; an answer without it is not one to our request.
        return Ok(Some(Err(DbProblem::Premature {
            relation: relation.clone(),
        })));
    }

    let uris = SecretUris::from_app_bag(&app_bag);
    let mut user_secret: Option<SecretContent> = None;
    let mut tls_secret: Option<SecretContent> = None;
    for (group, field, uri, slot) in [
        ("user", "secret-user", &uris.user, &mut user_secret),
        ("tls", "secret-tls", &uris.tls, &mut tls_secret),
    ] {
        let Some(uri) = uri else { continue };
        let label = secret_label(rel.endpoint.as_ref(), rel.id, group);
        let read = focus.read_for(rel, uri, &label);
        let secret = SecretRef::IdWithLabel {
            id: uri,
            label: &label,
        };
        match ctx.model.secret_content(secret, read) {
            Ok(content) => *slot = Some(content),
            Err(e) => return Ok(Some(Err(secret_problem(&relation, &provider, field, e)?))),
        }
    }

    let input = ProviderInput {
        kind,
        relation: &relation,
        provider: &provider,
        requested_database: database,
        app_bag: &app_bag,
        user_secret: user_secret.as_ref(),
        tls_secret: tls_secret.as_ref(),
    };
    let answer = match provider_answer(&input) {
        Ok(answer) => answer,
        Err(why) => return Ok(Some(Err(why))),
    };
    let ca_path = layout.database_ca_file(rel.endpoint.as_ref());
    let (ca_file, pem) = if answer.tls {
        (
            Some(ca_path.to_string_lossy().into_owned()),
            Some(if answer.tls_ca.ends_with('\n') {
                answer.tls_ca.clone()
            } else {
                format!("{}\n", answer.tls_ca)
            }),
        )
    } else {
        (None, None)
    };
    Ok(Some(Ok((answer.urls(ca_file.as_deref()), pem))))
}

/// A secret we could not read, as a status: Waiting while the provider may
/// still grant or publish it, Blocked for output Juju would not print.
/// Other failures (a hook tool that did not run) are errors Juju retries.
fn secret_problem(
    relation: &str,
    provider: &str,
    field: &'static str,
    error: ModelError,
) -> Result<DbProblem, HandlerError> {
    let (why, waiting) = match error {
        ModelError::AccessDenied(_) => (
            format!("names a secret this unit may not read (permission denied); waiting for {provider} to grant it"),
            true,
        ),
        ModelError::SecretNotFound(_) => (
            format!("names a secret Juju does not know; waiting for {provider} to publish it"),
            true,
        ),
        ModelError::BadOutput { .. } => (
            "names a secret whose content Juju printed unreadably".to_string(),
            false,
        ),
        other => return Err(other.into()),
    };
    Ok(DbProblem::SecretUnreadable {
        relation: relation.to_string(),
        field,
        why,
        waiting,
    })
}
