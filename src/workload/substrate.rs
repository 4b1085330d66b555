//! The real substrate, put together once for `main`: the parts
//! [`Machine`] names, implemented for this machine. `main` reads the
//! process environment into [`Settings`]; nothing here reads it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::workload::archive::ExtractLimits;
use crate::workload::fetch::DownloadOptions;
use crate::workload::health::TcpProbe;
use crate::workload::machine::{Machine, Runner, ServiceManagerKind};
use crate::workload::proxy::ModelProxy;
use crate::workload::service::ServiceManager;
use crate::workload::supervisor::client::DirectSupervisor;
use crate::workload::system::SystemRunner;
use crate::workload::systemd::Systemd;

/// What `main` learnt from the process environment.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Where the charm's own files are (templates, files/, the binary).
    pub charm_dir: PathBuf,
    /// `WSGI_APP_ROOT`; `/` when unset.
    pub root: Option<PathBuf>,
    /// `WSGI_APP_SERVICE_MANAGER`; `None`: systemd when the machine booted
    /// with it, else the direct supervisor.
    pub service_manager: Option<ServiceManagerKind>,
    /// `WSGI_APP_BIND_ADDRESS`; `0.0.0.0` when unset.
    pub bind_address: Option<String>,
    /// The model's proxy settings.
    pub proxy: ModelProxy,
    /// The hook's `PATH`, for every program the charm runs.
    pub path: OsString,
    /// `USER`.
    pub user: Option<String>,
    /// The test-only `WSGI_APP_CRASH_AT`.
    pub crash_at: Option<String>,
}

/// The machine this process runs on.
pub fn compose(settings: Settings) -> Machine {
    let root = settings.root.unwrap_or_else(|| PathBuf::from("/"));
    let service_manager = settings.service_manager.unwrap_or_else(|| {
        if Path::new("/run/systemd/system").is_dir() {
            ServiceManagerKind::Systemd
        } else {
            ServiceManagerKind::Direct
        }
    });
    let runner: Rc<dyn Runner> = Rc::new(SystemRunner {
        proxy: settings.proxy.clone(),
        path: settings.path.clone(),
    });
    Machine {
        services: manager(service_manager, &root, runner.clone(), settings.path),
        root,
        bind_address: settings
            .bind_address
            .unwrap_or_else(|| "0.0.0.0".to_string()),
        service_manager,
        runner,
        probe: Box::new(TcpProbe),
        download: DownloadOptions {
            proxy: settings.proxy,
            ..Default::default()
        },
        extract: ExtractLimits::default(),
        charm_dir: settings.charm_dir,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        crash_at: settings.crash_at,
        invoking_user: settings.user,
        charm_binary: std::env::current_exe().ok(),
    }
}

/// The service manager for this machine. `root` is where unit files go
/// (`/` in production); `runner` runs `systemctl` and the pre-flight (the
/// same runner the machine uses for everything else, so tests record it).
/// The direct supervisor is this very binary (`std::env::current_exe`), run
/// as `wsgi-app supervise <run_dir>` with the hook's `path`.
fn manager(
    kind: ServiceManagerKind,
    root: &Path,
    runner: Rc<dyn Runner>,
    path: OsString,
) -> Box<dyn ServiceManager> {
    match kind {
        ServiceManagerKind::Systemd => Box::new(Systemd::new(root.to_path_buf(), runner)),
        ServiceManagerKind::Direct => {
            Box::new(DirectSupervisor::from_current_exe().with_path(path))
        }
    }
}
