//! `charm-sim`: a small Juju for one machine.
//!
//! It keeps a model in a directory (SQLite state plus one directory per unit),
//! runs the charm's real `dispatch` for each hook with the environment Juju
//! would build, and answers the charm's hook-tool calls with emulated tools
//! that follow shared/reference/juju-hook-tools.md. The same executable is
//! both the command-line front end and every hook tool (a multi-call binary:
//! when it is started under a hook tool's name it behaves as that tool).
//!
//! Module map:
//! - [`store`]: the SQLite model (applications, units, relations, bags,
//!   statuses, ports, contexts, the per-unit event queue). Shared by the
//!   front end and the tools, which run as separate processes.
//! - [`charm`]: typing config settings from the command line, unpacking
//!   `.charm` files and assembling the charm from this source tree. The
//!   charm's YAML is read and checked by [`crate::schema`], as for the
//!   in-memory Juju.
//! - [`flags`] and [`output`]: the gnuflag argument grammar and the
//!   smart/yaml/json formatters every hook tool shares.
//! - [`tools`]: the hook tools themselves.
//! - [`context`]: hook contexts (the env a hook sees, its buffered writes,
//!   commit on success) and running one hook, action or command on a unit.
//! - [`engine`]: Juju's event order (deploy, relate, remove-unit, …) as a
//!   per-unit queue of steps, drained one hook at a time.
//! - [`actions`]: action parameters from the command line, validated
//!   against actions.yaml.
//! - [`status`]: `status` and `show-unit` output.
//! - [`container`]: units as machines booted with systemd (systemd-nspawn
//!   over a cached debootstrapped Debian root): making the root, booting,
//!   entering and powering off a unit's machine.
//! - [`haproxy`]: a remote application backed by a real haproxy (`add-remote
//!   --haproxy`), configured from our `website` units' data and reloaded
//!   gracefully after every step that changes it.
//! - [`cos`]: a remote application emulating the opentelemetry-collector
//!   subordinate (`add-remote --prometheus`): one collector unit per unit
//!   of ours, turning their `cos-agent` data into the scrape jobs and rule
//!   files of a real Prometheus, reloaded after every step that changes them.
//! - [`reaper`]: finding and ending every process a model started, for
//!   `destroy` and `remove-unit`.
//! - [`commands`]: the `charm-sim` subcommands.

pub mod actions;
pub mod charm;
pub mod commands;
pub mod container;
pub mod context;
pub mod cos;
pub mod engine;
pub mod file_lock;
pub mod flags;
pub mod haproxy;
pub mod local_server;
pub mod output;
pub mod postgres;
pub mod providers;
pub mod reaper;
pub mod secrets;
pub mod status;
pub mod store;
pub mod tools;

use std::fmt;

/// A failure a `charm-sim` command reports to its user, already worded for
/// them (the front end prints it as `charm-sim: <message>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimError(pub String);

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SimError {}

impl From<rusqlite::Error> for SimError {
    fn from(e: rusqlite::Error) -> Self {
        SimError(format!("model database: {e}"))
    }
}

impl From<crate::HarnessError> for SimError {
    fn from(e: crate::HarnessError) -> Self {
        SimError(e.to_string())
    }
}

impl From<serde_json::Error> for SimError {
    fn from(e: serde_json::Error) -> Self {
        SimError(format!("model database holds malformed JSON: {e}"))
    }
}

pub type Result<T, E = SimError> = std::result::Result<T, E>;

/// Build a [`SimError`] from a formatted message.
#[macro_export]
macro_rules! sim_err {
    ($($arg:tt)*) => { $crate::sim::SimError(format!($($arg)*)) };
}

/// Attach what we were doing to an I/O (or any displayable) error.
pub trait ErrorContext<T> {
    fn context(self, what: impl fmt::Display) -> Result<T>;
}

impl<T, E: fmt::Display> ErrorContext<T> for std::result::Result<T, E> {
    fn context(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| SimError(format!("{what}: {e}")))
    }
}

/// The Juju version the simulated agent reports (`JUJU_VERSION`).
pub const JUJU_VERSION: &str = "3.6.8";

/// The environment variable (and default directory) naming the model.
pub const MODEL_ENV: &str = "CHARM_SIM_MODEL";
pub const DEFAULT_MODEL_DIR: &str = ".charm-sim";
