//! The charm's entry point: Juju runs it as `dispatch` (or `hooks/<name>`).
//! `wsgi-app supervise <run_dir>` runs the gunicorn supervisor instead.

use wsgi_app::charm::WsgiApp;
use wsgi_app::ops::{self, Dispatch, HookTools};
use wsgi_app::workload::{machine::Machine, supervisor};

fn main() {
    if let Some(code) = supervisor::maybe_run_from_args() {
        std::process::exit(code);
    }
    std::process::exit(dispatch());
}

fn dispatch() -> i32 {
    let argv0 = std::env::args().next();
    let dispatch = match Dispatch::from_env(std::env::vars(), argv0) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("wsgi-app: {e}");
            return 1;
        }
    };
    let machine = match Machine::from_env(dispatch.charm_dir.clone()) {
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
