//! The wsgi-app charm: knows WSGI, talks to Juju only through `ops`.
//!
//! Every event records facts (relation data, an action's pin) and then runs
//! one [`reconcile`](WsgiApp::reconcile) that converges the machine towards
//! what config and facts ask for. It is safe to run any number of times and
//! after any crash.

pub mod actions;
pub mod config;
pub mod databases;
pub mod ingress;
pub mod integrations;
pub mod metrics;
pub mod nrpe;
pub mod observability;
pub mod proxy;
pub mod reconcile;
pub mod relations;
pub mod rollout;
pub mod state;

use crate::ops::{self, Event, HandlerError, HookContext, Status, UnitHook};

use crate::workload::layout::Layout;
use crate::workload::machine::Machine;

/// The endpoints in metadata.yaml.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, strum::EnumString, strum::AsRefStr, strum::EnumIter,
)]
#[strum(serialize_all = "kebab-case")]
pub enum Endpoint {
    Website,
    NrpeExternalMaster,
    Pgsql,
    Mongodb,
    ManagerService,
    /// `postgresql_client` (Charmed PostgreSQL 14 and 16).
    Postgresql,
    /// `mongodb_client` (Charmed MongoDB 6 and 8).
    MongodbClient,
    /// The peer relation the leader runs rollouts through.
    Rollout,
    /// `haproxy-route` (HAProxy 2.8), one of the three proxy modes.
    HaproxyRoute,
    /// `ingress` v2 (HAProxy 2.8, Traefik), one of the three proxy modes.
    Ingress,
    /// `cos_agent` (opentelemetry-collector, grafana-agent): scrape jobs,
    /// alert rules and a dashboard from every unit.
    CosAgent,
}

/// The actions in actions.yaml.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, strum::EnumString, strum::AsRefStr, strum::EnumIter,
)]
#[strum(serialize_all = "kebab-case")]
pub enum Action {
    SetCurrentSymlink,
    Rollback,
    ListBuilds,
    RolloutStatus,
    ResumeRollout,
    AbortRollout,
}

pub type Ctx<'s, 'b> = HookContext<'s, 'b, Endpoint, Action>;
pub type WsgiEvent = Event<Endpoint, Action>;

/// The charm, built fresh for every dispatch.
pub struct WsgiApp {
    pub machine: Machine,
    /// What the last reconcile found, for the status.
    report: reconcile::Report,
    /// Which database secrets this dispatch re-reads at their newest
    /// revision (the event's relation, or a `secret-changed`).
    db_focus: databases::Focus,
}

impl WsgiApp {
    pub fn new(machine: Machine) -> Self {
        WsgiApp {
            machine,
            report: reconcile::Report::default(),
            db_focus: databases::Focus::default(),
        }
    }

    fn layout(&self, ctx: &Ctx<'_, '_>) -> Layout {
        Layout::new(&self.machine, ctx.model.app_name())
    }
}

impl ops::Charm for WsgiApp {
    type Endpoint = Endpoint;
    type Action = Action;

    fn migrations(&self) -> &'static [ops::Migration] {
        state::MIGRATIONS
    }

    fn handle(&mut self, ctx: &mut Ctx<'_, '_>, event: &WsgiEvent) -> Result<(), HandlerError> {
        let layout = self.layout(ctx);
        self.db_focus = databases::Focus::of(event);
        match event {
            Event::Action(action) => {
                // Switching actions reconcile, and so recompute the status.
                self.report = reconcile::Report::unexamined();
                actions::run(self, ctx, &layout, action.action)
            }
            Event::Unit(UnitHook::Stop) => reconcile::stop(self, ctx, &layout),
            Event::Unit(UnitHook::Remove) => reconcile::remove(self, ctx, &layout),
            Event::Unit(UnitHook::CollectMetrics | UnitHook::MeterStatusChanged) => Ok(()),
            Event::Unit(UnitHook::UpdateStatus) => {
                self.reconcile(ctx, &layout, reconcile::Depth::Check)
            }
            Event::Unit(UnitHook::Install) => {
                reconcile::prepare_machine(self, ctx, &layout)?;
                self.reconcile(ctx, &layout, reconcile::Depth::Full)
            }
            Event::Relation(rel) => {
                reconcile::record_relation_event(self, ctx, rel)?;
                self.reconcile(ctx, &layout, reconcile::Depth::Full)
            }
            _ => self.reconcile(ctx, &layout, reconcile::Depth::Full),
        }
    }

    fn command_action_params(
        &self,
        action: Action,
        env: &std::collections::BTreeMap<String, String>,
    ) -> Result<serde_json::Map<String, serde_json::Value>, String> {
        actions::params_from_command_env(action, env)
    }

    fn collect_status(&mut self, ctx: &mut Ctx<'_, '_>) -> Result<Status, HandlerError> {
        self.report.status(ctx)
    }
}
