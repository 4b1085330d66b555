//! Keeping gunicorn running, and moving it between builds without failing
//! a request. (Being built: see the service issue.)

use std::path::{Path, PathBuf};

use crate::charm::machine::ServiceManagerKind;

/// Everything the running gunicorn master depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// The service's name: the Juju application name, e.g. `wsgi-app`.
    pub name: String,
    /// The `current` symlink; gunicorn follows it when a master starts.
    pub current_dir: PathBuf,
    /// `module:callable`.
    pub wsgi_application: String,
    pub bind_address: String,
    pub port: u16,
    pub workers: u32,
    /// The application's environment file (see `envfile`).
    pub env_file: PathBuf,
    pub user: String,
    pub group: String,
    pub log_dir: PathBuf,
    /// Pidfiles, control socket, readiness markers.
    pub run_dir: PathBuf,
    /// Changes whenever a new master is needed (build, environment, options).
    pub fingerprint: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceState {
    Running { fingerprint: String },
    Stopped,
    Failed(String),
}

/// What `ensure` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceChange {
    Unchanged,
    Started,
    /// A new master took over from the old one.
    Replaced,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("gunicorn did not start: {0}")]
    StartFailed(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

/// Runs gunicorn for a [`ServiceSpec`].
pub trait ServiceManager {
    /// Make the service run `spec`: start it when stopped; when it runs
    /// another fingerprint, start a new master and retire the old one only
    /// once the new one is ready (the old keeps serving if the new fails).
    fn ensure(&self, spec: &ServiceSpec) -> Result<ServiceChange, ServiceError>;
    fn state(&self, spec: &ServiceSpec) -> Result<ServiceState, ServiceError>;
    fn stop(&self, spec: &ServiceSpec) -> Result<(), ServiceError>;
}

/// The service manager for this machine. The root is where unit files and
/// run directories go (`/` in production); the charm directory holds the
/// binary the direct supervisor runs.
pub fn manager(kind: ServiceManagerKind, root: &Path, charm_dir: &Path) -> Box<dyn ServiceManager> {
    let _ = (kind, root, charm_dir);
    todo!("systemd and direct service managers")
}
