//! An in-memory Juju for unit tests, in the spirit of ops' Scenario: a test
//! is *event + State in → State out*, one dispatch at a time, with a fresh
//! charm for every dispatch, exactly as Juju starts a fresh process per hook.
//!
//! ```ignore
//! use harness::{on, Context, Relation, State, WORKSPACE_CHARM_DIR};
//!
//! let ctx = Context::new(WORKSPACE_CHARM_DIR, |machine| MyCharm::new(machine));
//! let state = State::new()
//!     .with_leader(true)
//!     .with_relation(Relation::new(1, "pgsql", "postgresql"));
//! let out = ctx.run(on::config_changed(), state)?;
//! assert!(out.succeeded());
//!
//! // Chains run each event from the previous output's state:
//! let chain = ctx.run_initial_hooks(State::new())?.run(on::update_status())?;
//! assert_eq!(chain.state().unit_status.name, StatusName::Active);
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
//!   runs the real `wsgi_app::ops::run`. [`Output`] says what happened.
//! - [`MemoryBackend`] (`backend`): the `ops::Backend` with Juju's rules
//!   (buffered relation data and ports, leader-only app bags, ...).
//! - [`CommandRecorder`] and [`FakeServices`] (`recorder`): the machine's
//!   `Runner` and `ServiceManager`, scripted from the test.
//! - [`CharmMeta`] (`schema`): the charm's declarations and the
//!   config/action-param checks.

pub mod backend;
pub mod context;
pub mod on;
pub mod recorder;
pub mod schema;
pub mod state;

pub use backend::MemoryBackend;
pub use context::{ActionOutput, Chain, Context, Output, WORKSPACE_CHARM_DIR};
pub use on::EventSpec;
pub use recorder::{
    failure, output, CommandMatch, CommandRecorder, FakeServices, ServiceCall, REDACTED,
};
pub use schema::CharmMeta;
pub use state::{bag, MachineDir, Relation, ServiceRecord, State, StoreImage};

/// The test's setup is not something Juju would produce, or a chained
/// dispatch failed.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("{file}: {message}")]
    Metadata { file: String, message: String },
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
