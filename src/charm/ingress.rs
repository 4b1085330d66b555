//! The proxy in front of the application, Juju side: the `haproxy-route`
//! and `ingress` requirer endpoints (modern-interfaces.md §4), and the rule
//! that `website`, `haproxy-route` and `ingress` are alternatives.
//!
//! [`refresh`] reads what the provider answered: its URL, kept in the store
//! for update-status and list-builds, and on `ingress` (unless
//! `ingress_strip_prefix`) the path prefix it routes to us, which the app
//! gets as `SCRIPT_NAME` through the relation variables of
//! [`integrations`](super::integrations). [`publish`] writes our bags: every
//! unit its address, the leader the application's request.

use super::config::Config;
use super::integrations::{self, Candidate};
use super::reconcile::Report;
use super::relations::proxy::{self, HAPROXY_ROUTE_APP_KEYS, INGRESS_APP_KEYS};
use super::state::{self, ProxyAnswer, ProxyProblem};
use super::{Ctx, Endpoint};
use crate::ops::{Bag, BagOwner, HandlerError, RelationId, Scope};

/// The variable gunicorn reads its path prefix from, and so the app.
pub const SCRIPT_NAME: &str = "SCRIPT_NAME";

/// The proxy modes, in the order the Blocked message names them.
const PROXY_MODES: [Endpoint; 3] = [Endpoint::Website, Endpoint::HaproxyRoute, Endpoint::Ingress];

/// Re-read the proxy relations: more than one mode related is Blocked
/// (the app keeps serving, and SCRIPT_NAME is left out, since `website`
/// traffic arrives without the prefix); the provider's URL is recorded;
/// the ingress prefix becomes SCRIPT_NAME.
pub fn refresh(
    ctx: &mut Ctx<'_, '_>,
    config: &Config,
    report: &mut Report,
) -> Result<(), HandlerError> {
    let mut problems = Problems::default();
    let mut related = Vec::new();
    for endpoint in PROXY_MODES {
        if let Some(&rel) = ctx.model.relations(endpoint)?.first() {
            related.push((endpoint, ctx.model.remote_app(rel)?.to_string()));
        }
    }
    let pairs: Vec<(&str, &str)> = related
        .iter()
        .map(|(endpoint, remote)| (endpoint.as_ref(), remote.as_str()))
        .collect();
    let conflict = proxy::modes_in_conflict(&pairs, ctx.model.app_name());
    if let Some(message) = &conflict {
        problems.blocked(message.clone());
    }

    let mut answer = None;
    for &rel in &ctx.model.relations(Endpoint::HaproxyRoute)? {
        let bag = provider_app_bag(ctx, rel)?;
        match proxy::haproxy_route_answer(&bag) {
            Ok(Some(urls)) => answer = answer.or(Some(recorded(rel, urls))),
            Ok(None) => problems.waiting(unanswered(ctx, rel)?),
            Err(why) => problems.blocked(format!("{rel}: {why}")),
        }
    }
    let ingress = ctx.model.relations(Endpoint::Ingress)?;
    let mut prefix = None;
    for &rel in &ingress {
        let bag = provider_app_bag(ctx, rel)?;
        match proxy::ingress_answer(&bag) {
            Ok(Some(url)) => {
                if prefix.is_none() {
                    prefix = proxy::script_name(&url).map(|p| Candidate::plain(p, rel.to_string()));
                }
                answer = answer.or(Some(recorded(rel, vec![url])));
            }
            Ok(None) => problems.waiting(unanswered(ctx, rel)?),
            Err(why) => problems.blocked(format!("{rel}: {why}")),
        }
    }
    state::set_proxy_answer(ctx.store.conn(), answer.as_ref())?;

    // A prefix the provider strips, or website traffic beside it, must not
    // reach gunicorn: it answers only paths under SCRIPT_NAME.
    let mut prefix_wanted = !config.proxy.strip_prefix && conflict.is_none();
    let user_set = config
        .environment
        .iter()
        .any(|(name, _)| name == SCRIPT_NAME);
    if let (true, true, Some(routed)) = (prefix_wanted, user_set, &prefix) {
        problems.blocked(format!(
            "environment_variables sets {SCRIPT_NAME}, and {} routes {}/ to this application: \
             remove {SCRIPT_NAME} from environment_variables, or set ingress_strip_prefix=true",
            routed.relation, routed.url
        ));
        prefix_wanted = false;
    }
    let candidate = prefix.filter(|_| prefix_wanted);
    let keep_while = if prefix_wanted { ingress } else { Vec::new() };
    state::set_proxy_problems(ctx.store.conn(), &problems.0)?;
    report_recorded(ctx, report)?;
    integrations::settle(ctx, report, SCRIPT_NAME, candidate, &keep_while)?;
    Ok(())
}

#[derive(Default)]
struct Problems(Vec<ProxyProblem>);

impl Problems {
    fn blocked(&mut self, message: String) {
        self.0.push(ProxyProblem {
            blocked: true,
            message,
        });
    }
    fn waiting(&mut self, message: String) {
        self.0.push(ProxyProblem {
            blocked: false,
            message,
        });
    }
}

/// Say again what the last full read of the proxy relations found wrong
/// (update-status reads no relation).
pub fn report_recorded(ctx: &mut Ctx<'_, '_>, report: &mut Report) -> Result<(), HandlerError> {
    for problem in state::proxy_problems(ctx.store.conn())? {
        if problem.blocked {
            report.blocked(problem.message);
        } else {
            report.waiting(problem.message);
        }
    }
    Ok(())
}

fn unanswered(ctx: &mut Ctx<'_, '_>, rel: RelationId<Endpoint>) -> Result<String, HandlerError> {
    Ok(format!(
        "waiting for {} to answer on {rel} with the URL it serves this application at",
        ctx.model.remote_app(rel)?
    ))
}

fn recorded(rel: RelationId<Endpoint>, urls: Vec<String>) -> ProxyAnswer {
    ProxyAnswer {
        endpoint: rel.endpoint.as_ref().to_string(),
        relation: rel.to_string(),
        urls,
    }
}

fn provider_app_bag(ctx: &mut Ctx<'_, '_>, rel: RelationId<Endpoint>) -> Result<Bag, HandlerError> {
    let remote = ctx.model.remote_app(rel)?.to_string();
    Ok(ctx
        .model
        .relation_data(rel, &BagOwner::App(remote))?
        .clone())
}

/// Where the proxy serves the application, as the status and list-builds
/// show it: `ingress https://lb.example.com/prod-shop/`.
pub fn reached_at(ctx: &mut Ctx<'_, '_>) -> Result<Option<String>, HandlerError> {
    Ok(state::proxy_answer(ctx.store.conn())?
        .map(|answer| format!("{} {}", answer.endpoint, answer.urls.join(" "))))
}

/// Write our bags on `haproxy-route` and `ingress`: each unit its address,
/// the leader the application's request, with `nagios_index_path` (already
/// under SCRIPT_NAME when there is one) as the proxy's health check.
pub fn publish(
    ctx: &mut Ctx<'_, '_>,
    config: &Config,
    report: &mut Report,
) -> Result<(), HandlerError> {
    let health_path = config.nagios_index_path.as_str();
    let app = ctx.model.app_name().to_string();
    let model = ctx.model.model_name().to_string();
    for rel in ctx.model.relations(Endpoint::HaproxyRoute)? {
        let address = integrations::unit_address(ctx, rel)?;
        match proxy::haproxy_route_unit_data(&address) {
            Ok(data) => ctx.model.update_relation_data(rel, Scope::Unit, &data)?,
            Err(why) => report.blocked(why),
        }
        if ctx.model.is_leader()? {
            let data =
                proxy::haproxy_route_app_data(&app, config.listen_port, health_path, &config.proxy);
            replace_app_bag(ctx, rel, data, HAPROXY_ROUTE_APP_KEYS)?;
        }
    }
    for rel in ctx.model.relations(Endpoint::Ingress)? {
        let address = integrations::unit_address(ctx, rel)?;
        ctx.model
            .update_relation_data(rel, Scope::Unit, &proxy::ingress_unit_data(&address))?;
        if ctx.model.is_leader()? {
            match proxy::ingress_app_data(
                &model,
                &app,
                config.listen_port,
                health_path,
                config.proxy.strip_prefix,
            ) {
                Ok(data) => replace_app_bag(ctx, rel, data, INGRESS_APP_KEYS)?,
                Err(why) => report.blocked(why),
            }
        }
    }
    Ok(())
}

/// Write `data` as our application's whole request: a key of `ours` that
/// `data` leaves out (now equal to its default) is deleted.
fn replace_app_bag(
    ctx: &mut Ctx<'_, '_>,
    rel: RelationId<Endpoint>,
    mut data: Bag,
    ours: &[&str],
) -> Result<(), HandlerError> {
    for key in ours {
        data.entry((*key).to_string()).or_default();
    }
    ctx.model.update_relation_data(rel, Scope::App, &data)?;
    Ok(())
}
