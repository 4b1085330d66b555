//! The relations, Juju side: read the bags through `ops`, let
//! [`relations`](super::relations) decide, record which relation provides
//! each URL the app sees, and publish what others need.
//!
//! A URL is dropped only when no relation of its endpoint can provide it:
//! PostgreSQL briefly unlisting us during a failover keeps the last URL (and
//! says Waiting); the relation going away removes it. MongoDB going away
//! never touches DATABASE_URL.
//!
//! The store keeps the legacy relations' URLs as they are (plain relation
//! data, as Juju keeps it). A URL built from a Juju secret (today's
//! databases) never enters the store: it keeps only its redacted form and
//! its relation, and the value is rebuilt in memory on each full reconcile
//! from the secret; between those (update-status, actions), or while the
//! secret cannot be read, the value is the one the environment file already
//! gives the app.

use std::collections::BTreeMap;

use super::config::Config;
use super::databases;
use super::reconcile::Report;
use super::relations::database_client::SecretUrl;
use super::relations::{self, PgsqlInput};
use super::state;
use super::{Ctx, Endpoint};
use crate::ops::{Bag, BagOwner, HandlerError, RelationId, Scope};
use crate::workload::envvars::{read_env_file, EnvFileError};
use crate::workload::layout::Layout;

pub const DATABASE_URL: &str = "DATABASE_URL";
pub const MONGO_URL: &str = "MONGO_URL";
pub const MANAGER_SERVICE_URL: &str = "MANAGER_SERVICE_URL";

/// A URL a relation offers for one variable, and what the store may keep
/// of it.
pub(super) struct Candidate {
    /// The whole URL, for the environment file.
    pub url: String,
    /// What the store records: the URL itself for plain relation data, its
    /// redacted form when it holds secret content.
    pub recorded: String,
    /// `endpoint:id`.
    pub relation: String,
}

impl Candidate {
    /// A URL from plain relation data, recorded as it is.
    pub fn plain(url: String, relation: String) -> Candidate {
        Candidate {
            recorded: url.clone(),
            url,
            relation,
        }
    }
}

/// A URL rebuilt from a secret during this dispatch: the value the recorded
/// (redacted) row of `name` from `relation` stands for.
pub struct FreshUrl {
    pub name: &'static str,
    pub relation: String,
    pub url: SecretUrl,
}

impl std::fmt::Debug for FreshUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} from {}: {:?}", self.name, self.relation, self.url)
    }
}

/// The relation-provided variables: each recorded row's value, where a row
/// of a relation whose URLs hold secret content takes its value from
/// `fresh` (rebuilt this dispatch) or else from the environment file the
/// app already has.
pub fn relation_env(
    ctx: &mut Ctx<'_, '_>,
    layout: &Layout,
    fresh: &[FreshUrl],
) -> Result<Vec<(String, String)>, HandlerError> {
    let mut env = Vec::new();
    let mut on_disk: Option<Vec<(String, String)>> = None;
    for row in state::relation_urls(ctx.store.conn())? {
        if !databases::rebuilt_from_secrets(&row.relation) {
            env.push((row.name, row.value));
            continue;
        }
        if let Some(url) = fresh
            .iter()
            .find(|f| f.name == row.name && f.relation == row.relation)
        {
            env.push((row.name, url.url.expose().to_string()));
            continue;
        }
        let on_disk = match &mut on_disk {
            Some(vars) => vars,
            None => on_disk.insert(app_env_file(layout)?),
        };
        match on_disk.iter().find(|(name, _)| *name == row.name) {
            Some((_, value)) => env.push((row.name, value.clone())),
            // Nothing to keep (the file was removed by hand): the next full
            // reconcile reads the secret again.
            None => ctx.model.log(
                crate::ops::LogLevel::Warning,
                &format!(
                    "{} from {} is not in {}; it comes back when the relation is read again",
                    row.name,
                    row.relation,
                    layout.env_file().display()
                ),
            ),
        }
    }
    Ok(env)
}

/// The variables the environment file gives the app now (none before the
/// first write).
fn app_env_file(layout: &Layout) -> Result<Vec<(String, String)>, HandlerError> {
    match read_env_file(&layout.env_file()) {
        Ok(vars) => Ok(vars),
        Err(EnvFileError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(Vec::new())
        }
        Err(e) => Err(format!("reading the environment file: {e}").into()),
    }
}

/// Each remote unit's bag on a relation.
fn remote_unit_bags(
    ctx: &mut Ctx<'_, '_>,
    rel: RelationId<Endpoint>,
) -> Result<Vec<(String, Bag)>, HandlerError> {
    let units = ctx.model.relation_units(rel)?.to_vec();
    let mut bags = Vec::with_capacity(units.len());
    for unit in units {
        let bag = ctx
            .model
            .relation_data(rel, &BagOwner::Unit(unit.clone()))?
            .clone();
        bags.push((unit, bag));
    }
    Ok(bags)
}

/// Decide what one URL variable should be now. `candidate` is the first
/// relation that can provide it; `live` the relations of its endpoint.
///
/// A URL the environment file cannot carry (over 64 KiB, or with a control
/// character, from hostile or broken relation data) is refused with a
/// Blocked status naming the variable and the relation, never a hook error:
/// the remote side fixes its data and a later relation-changed retries.
pub(super) fn settle(
    ctx: &mut Ctx<'_, '_>,
    report: &mut Report,
    name: &str,
    candidate: Option<Candidate>,
    live: &[RelationId<Endpoint>],
) -> Result<bool, HandlerError> {
    let candidate = match candidate {
        Some(candidate) => {
            match crate::workload::envvars::render_env_file(&[(
                name.to_string(),
                candidate.url.clone(),
            )]) {
                Ok(_) => Some(candidate),
                Err(why) => {
                    report.blocked(format!("{name} from {}: {why}", candidate.relation));
                    None
                }
            }
        }
        None => None,
    };
    let conn = ctx.store.conn();
    let recorded = state::relation_urls(conn)?
        .into_iter()
        .find(|u| u.name == name);
    match candidate {
        Some(candidate) => {
            state::set_relation_url(conn, name, Some((&candidate.recorded, &candidate.relation)))?;
            Ok(true)
        }
        None => {
            let source_alive = recorded
                .as_ref()
                .is_some_and(|r| live.iter().any(|rel| rel.to_string() == r.relation));
            if !source_alive {
                state::set_relation_url(conn, name, None)?;
            }
            Ok(false)
        }
    }
}

/// Re-read every requires relation, record which provides each URL, and
/// return the app's relation-provided environment.
///
/// Today's databases go first ([`databases::refresh`]); the legacy
/// relations then keep a URL a live modern relation recorded.
pub fn refresh(
    ctx: &mut Ctx<'_, '_>,
    config: &Config,
    report: &mut Report,
    layout: &Layout,
    focus: &databases::Focus,
) -> Result<(Vec<(String, String)>, databases::Refreshed), HandlerError> {
    let refreshed = databases::refresh(ctx, config, report, layout, focus)?;
    refresh_pgsql(ctx, report)?;
    refresh_mongodb(ctx, report)?;
    refresh_manager_service(ctx, config, report)?;
    super::ingress::refresh(ctx, config, report)?;
    Ok((relation_env(ctx, layout, &refreshed.urls)?, refreshed))
}

fn refresh_pgsql(ctx: &mut Ctx<'_, '_>, report: &mut Report) -> Result<(), HandlerError> {
    let live = ctx.model.relations(Endpoint::Pgsql)?;
    let our_unit = ctx.model.unit_name().to_string();
    let database = ctx.model.app_name().to_string();
    let request = relations::pgsql_request(&database);
    let mut candidate = None;
    let mut waiting = Vec::new();
    for &rel in &live {
        ctx.model.update_relation_data(rel, Scope::Unit, &request)?;
        if ctx.model.is_leader()? {
            ctx.model.update_relation_data(rel, Scope::App, &request)?;
        }
        let own = ctx
            .model
            .relation_data(rel, &BagOwner::Unit(our_unit.clone()))?;
        let egress =
            relations::split_comma_list(own.get("egress-subnets").map_or("", String::as_str));
        let remote_units: BTreeMap<String, Bag> = remote_unit_bags(ctx, rel)?.into_iter().collect();
        let remote_app = ctx.model.remote_app(rel)?.to_string();
        let remote_app_bag = ctx
            .model
            .relation_data(rel, &BagOwner::App(remote_app))?
            .clone();
        let input = PgsqlInput {
            our_unit: &our_unit,
            our_egress_subnets: &egress,
            requested_database: &database,
            remote_units: &remote_units,
            remote_app_bag: &remote_app_bag,
        };
        match relations::database_url(&input) {
            Ok(url) if candidate.is_none() => {
                ctx.model.log(
                    crate::ops::LogLevel::Info,
                    &format!("DATABASE_URL from {rel}: {}", url.redacted()),
                );
                candidate = Some(Candidate::plain(url.expose(), rel.to_string()));
            }
            Ok(_) => {}
            Err(why) => waiting.push(why.to_string()),
        }
    }
    let alive = databases::live_relations(ctx, DATABASE_URL)?;
    if !settle(ctx, report, DATABASE_URL, candidate, &alive)? {
        if let Some(first) = waiting.into_iter().next() {
            report.waiting(first);
        }
    }
    Ok(())
}

fn refresh_mongodb(ctx: &mut Ctx<'_, '_>, report: &mut Report) -> Result<(), HandlerError> {
    let live = ctx.model.relations(Endpoint::Mongodb)?;
    let mut candidate = None;
    for &rel in &live {
        let units = remote_unit_bags(ctx, rel)?;
        if let Some(conn) = relations::mongo_connection(&units, None) {
            for note in &conn.notes {
                ctx.model.log(crate::ops::LogLevel::Warning, note);
            }
            candidate = Some(Candidate::plain(conn.url, rel.to_string()));
            break;
        }
    }
    let alive = databases::live_relations(ctx, MONGO_URL)?;
    if !settle(ctx, report, MONGO_URL, candidate, &alive)? && !live.is_empty() {
        report.waiting("waiting for mongodb to publish hostname and port");
    }
    Ok(())
}

fn refresh_manager_service(
    ctx: &mut Ctx<'_, '_>,
    config: &Config,
    report: &mut Report,
) -> Result<(), HandlerError> {
    let live = ctx.model.relations(Endpoint::ManagerService)?;
    let mut candidate = None;
    for &rel in &live {
        let units = remote_unit_bags(ctx, rel)?;
        match relations::manager_service_url(&config.manager_service_protocol, &units) {
            Ok(Some(url)) => {
                candidate = Some(Candidate::plain(url, rel.to_string()));
                break;
            }
            Ok(None) => {}
            Err(e) => report.blocked(e.to_string()),
        }
    }
    if !settle(ctx, report, MANAGER_SERVICE_URL, candidate, &live)? && !live.is_empty() {
        report.waiting("waiting for manager-service to publish its address and port");
    }
    Ok(())
}

/// This unit's address on a relation, as `network-get` gives it for the
/// endpoint's binding.
pub fn unit_address(
    ctx: &mut Ctx<'_, '_>,
    rel: RelationId<Endpoint>,
) -> Result<String, HandlerError> {
    Ok(ctx
        .model
        .network(rel.endpoint.as_ref(), Some(rel))?
        .ingress_address()
        .map(str::to_string)
        .ok_or_else(|| {
            format!(
                "network-get gave no address for the {} binding",
                rel.endpoint.as_ref()
            )
        })?)
}

/// `hostname`, `private-address` and `port` on every website relation, so a
/// load balancer can send traffic to this unit.
pub fn publish_website(ctx: &mut Ctx<'_, '_>, config: &Config) -> Result<(), HandlerError> {
    for rel in ctx.model.relations(Endpoint::Website)? {
        let address = unit_address(ctx, rel)?;
        let data = relations::website_data(&address, config.listen_port);
        ctx.model.update_relation_data(rel, Scope::Unit, &data)?;
    }
    Ok(())
}
