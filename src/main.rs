//! The charm's entry point: Juju runs it as `dispatch` (or `hooks/<name>`).
//! `wsgi-app supervise <run_dir>` runs the gunicorn supervisor instead, and
//! `wsgi-app metrics-exporter …` the app's metrics endpoint.
//! The only reader of the process environment: what it finds is handed to
//! `ops` (the dispatch) and to the workload (the machine).

use std::path::PathBuf;

use wsgi_app::charm::{self, WsgiApp};
use wsgi_app::ops::{self, Dispatch, HookTools};
use wsgi_app::workload::machine::Machine;
use wsgi_app::workload::metrics;
use wsgi_app::workload::substrate::{self, Settings};
use wsgi_app::workload::supervisor;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(code) = supervisor::maybe_run(&args) {
        std::process::exit(code);
    }
    if let Some(code) = metrics::maybe_run(&args) {
        std::process::exit(code);
    }
    std::process::exit(dispatch(args.into_iter().next()));
}

fn dispatch(argv0: Option<String>) -> i32 {
    let dispatch = match Dispatch::from_env(std::env::vars(), argv0) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("wsgi-app: {e}");
            return 1;
        }
    };
    let machine = match machine_from_env(dispatch.charm_dir.clone()) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("wsgi-app: {e}");
            return 1;
        }
    };
    let store = dispatch.charm_dir.join(".unit-state.db");
    let outcome = ops::run(
        &mut WsgiApp::new(machine),
        &mut HookTools::new(),
        &dispatch,
        &store,
    );
    if let Some(output) = &outcome.output {
        print!("{output}");
    }
    if let Some(error) = &outcome.error {
        eprintln!("wsgi-app: {error}");
    }
    outcome.exit_code
}

/// The machine as the environment describes it: `WSGI_APP_ROOT`,
/// `WSGI_APP_SERVICE_MANAGER`, `WSGI_APP_BIND_ADDRESS`, the test-only
/// `WSGI_APP_CRASH_AT`, the model's proxy settings, `PATH` and `USER`.
fn machine_from_env(charm_dir: PathBuf) -> Result<Machine, String> {
    let set = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let service_manager = match set("WSGI_APP_SERVICE_MANAGER") {
        Some(kind) => Some(kind.parse().map_err(|_| {
            format!("WSGI_APP_SERVICE_MANAGER={kind:?}: expected \"systemd\" or \"direct\"")
        })?),
        None => None,
    };
    Ok(substrate::compose(Settings {
        charm_dir,
        root: std::env::var_os("WSGI_APP_ROOT").map(PathBuf::from),
        service_manager,
        bind_address: set("WSGI_APP_BIND_ADDRESS"),
        proxy: charm::proxy::from_hook_env(|var| std::env::var(var).ok()),
        path: std::env::var_os("PATH").unwrap_or_default(),
        user: std::env::var("USER").ok(),
        crash_at: set("WSGI_APP_CRASH_AT"),
    }))
}
