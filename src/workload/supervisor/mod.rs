//! The direct supervisor: how gunicorn runs on machines without systemd
//! (and in the local model). The charm binary doubles as the supervisor:
//! `wsgi-app supervise <run_dir>` detaches, holds the listening socket and
//! keeps a gunicorn master on it, switching builds without failing a
//! request.
//!
//! - [`daemon`]: the supervisor process;
//! - [`client`]: the charm's side ([`client::DirectSupervisor`], a
//!   `ServiceManager`);
//! - [`protocol`]: the files and locks they share in `<run_dir>`.

pub mod client;
pub mod daemon;
pub mod protocol;

/// The subcommand that makes this binary the supervisor.
pub const SUBCOMMAND: &str = "supervise";

/// If this process was started as `<binary> supervise <run_dir>` (`args`,
/// as `main` read them), run the supervisor and return the exit code;
/// otherwise `None` (a hook dispatch).
pub fn maybe_run(args: &[String]) -> Option<i32> {
    if args.get(1).map(String::as_str) != Some(SUBCOMMAND) {
        return None;
    }
    Some(main(&args[2..]))
}

/// `supervise <run_dir>`: the arguments after the subcommand.
pub fn main(args: &[String]) -> i32 {
    match args {
        [run_dir] if !run_dir.is_empty() => daemon::run(std::path::Path::new(run_dir)),
        _ => {
            eprintln!("usage: wsgi-app {SUBCOMMAND} <run_dir>");
            2
        }
    }
}
