//! An in-memory Juju for unit tests, in the spirit of ops' Scenario: a test
//! is *event + State in → State out*, one dispatch at a time, with a fresh
//! charm for every dispatch, exactly as Juju starts a fresh process per hook.
//!
//! ```ignore
//! use harness::{bag, failure, on, Context, Relation, State, WORKSPACE_CHARM_DIR};
//!
//! let mut ctx = Context::new(WORKSPACE_CHARM_DIR, |machine| MyCharm::new(machine));
//! let state = State::new()
//!     .with_leader(true)
//!     .with_config("build_label", "r1")
//!     .with_relation(Relation::new(1, "pgsql", "postgresql"));
//! let out = ctx.run(on::config_changed(), state)?;   // Err: a setup Juju would refuse
//! assert!(out.succeeded());                            // the charm exited 0
//! assert_eq!(out.calls_to("config-get"), 1);
//!
//! // Chains run each event from the previous output's state, and stop
//! // (HarnessError::HookFailed, with its Output) at a failed hook.
//! let chain = ctx
//!     .run_initial_hooks(State::new())?                // install ... start
//!     .update_state(|s| s.update_remote_unit_data(1, 0, bag([("allowed-units", "wsgi-app/0")])))
//!     .run(on::relation_changed(1, Some(0)))?;
//! let state = chain.into_state();
//!
//! // The machine: commands are recorded and answered from a script...
//! ctx.on_command("make", failure(2, "no rule to make target"));
//! ctx.on_command_do("python3 -m venv", |spec, root| { /* create files */ Default::default() });
//! ctx.program_present("uv");
//! // ...and the fake service manager can refuse the next start.
//! let mut state = state;
//! state.service_fails_to_start = true;
//! ```
//!
//! The pieces:
//! - [`State`] (`state`): config, leadership, relations and their bags,
//!   ports, statuses, networks, the machine's root directory, the charm's
//!   store and the fake services — plain data, cloned freely.
//! - [`on`]: one constructor per event; they build the exact environment
//!   Juju would export.
//! - [`Context`] (`context`): loads metadata.yaml, config.yaml and
//!   actions.yaml, validates the State and action params as Juju does, and
//!   runs the real `wsgi_app::ops::run`. [`Output`] says what happened;
//!   [`Chain`] runs events in a row. A State with a relation the unit was
//!   never told of (no `-created` run) or one that vanished without its
//!   `-broken` is refused: Juju never does that, and the framework relies
//!   on it (`ops::Remembered`).
//! - [`MemoryBackend`] (`backend`): the `ops::Backend` with Juju's rules
//!   (buffered relation data and ports, leader-only app bags, ...).
//! - [`CommandRecorder`] and [`FakeServices`] (`recorder`): the machine's
//!   `Runner` and `ServiceManager`, scripted from the test.
//! - [`CharmMeta`] (`schema`): the charm's declarations and the
//!   config/action-param checks.
//! - [`sim`]: charm-sim, the local model (a small Juju on one machine).
//! - [`charm_contents`]: what the charm contains; charm-sim lays it out and
//!   [`xtask::pack`] zips it into the `.charm` for real Juju.
//!
//! - [`Cluster`] (`cluster`): several units of one application, with
//!   what Juju does between them on a peer relation (bags passed on,
//!   relation-changed queued, leadership moved, units added and removed).
//!
//! - [`Secret`] (`secrets`): Juju secrets with owners, revisions, grants
//!   on relations and each consumer's tracked revision and label.
//!
//! What it does not model: storage beyond its hook environment, secret
//! writes (`secret-add`, `secret-set`, grants from the charm), rotation
//! and expiry schedules, `relation-list` membership before `-joined` (the State's
//! units are listed from `-created` on), and anything the charm does on
//! the machine other than through `Runner` and `ServiceManager` (plain
//! file writes land in the temporary root, which is shared, not rolled
//! back, along a chain — as a real disk is).

pub mod backend;
pub mod charm_contents;
pub mod cluster;
pub mod context;
pub mod on;
pub mod pg_server;
pub mod recorder;
pub mod schema;
pub mod secrets;
pub mod sim;
pub mod state;
pub mod xtask;

pub use backend::MemoryBackend;
pub use cluster::Cluster;
pub use context::{ActionOutput, Chain, Context, Output, WORKSPACE_CHARM_DIR};
pub use on::EventSpec;
pub use recorder::{
    failure, output, CommandMatch, CommandRecorder, FakeServices, ServiceCall, REDACTED,
};
pub use schema::CharmMeta;
pub use secrets::Secret;
pub use state::{bag, MachineDir, Relation, ServiceRecord, State, StoreImage};

/// The test's setup is not something Juju would produce, or a chained
/// dispatch failed.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("{file}: {message}")]
    Metadata { file: String, message: String },
    #[error(transparent)]
    CharmRefused(#[from] schema::CharmRefused),
    #[error("State.config[{option:?}] {message}")]
    Config { option: String, message: String },
    #[error("the charm declares no action {0:?} in actions.yaml")]
    UnknownAction(String),
    #[error("inconsistent test setup: {0}")]
    Inconsistent(String),
    #[error("{event} failed ({})", .output.failure_summary())]
    HookFailed { event: String, output: Box<Output> },
    #[error("harness I/O: {0}")]
    Io(#[from] std::io::Error),
}
