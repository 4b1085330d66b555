//! The charm's side of the direct supervisor: a [`ServiceManager`] that
//! writes the desired spec, starts or signals the supervisor, and waits for
//! it to report the generation it asked for.
//!
//! Every operation holds `<run_dir>/charm.lock` for its whole length, so
//! two hooks (or two charms sharing a machine) never interleave their
//! requests; generations make each request's answer unambiguous.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::workload::service::{
    last_lines, ServiceChange, ServiceError, ServiceManager, ServiceSpec, ServiceState,
    MAX_GRACEFUL_TIMEOUT_SECS,
};
use crate::workload::supervisor::daemon::READY_TIMEOUT;
use crate::workload::supervisor::protocol::{
    is_our_master, pid_alive, Desired, FileLock, Outcome, RunDir, Status, SupervisorState,
};
use crate::workload::system::DEFAULT_PATH;

/// How long to wait for another hook's hold on the run directory.
const CHARM_LOCK_WAIT: Duration = Duration::from_secs(120);
/// How long the supervisor may take to answer a request: it may be in the
/// middle of a crash restart (one readiness wait) before it starts ours
/// (another), then waits for the old master to finish its in-flight
/// requests (the graceful timeout, and the kill after it), plus slack for
/// files and signals.
const ANSWER_WAIT: Duration =
    Duration::from_secs(2 * READY_TIMEOUT.as_secs() + MAX_GRACEFUL_TIMEOUT_SECS + 45);

/// Runs gunicorn under `<program> supervise <run_dir>`.
#[derive(Debug, Clone)]
pub struct DirectSupervisor {
    /// The binary with the `supervise` subcommand (the charm's own).
    program: Result<PathBuf, String>,
    /// The supervisor's PATH (the hook's, handed down by `main`).
    path: OsString,
}

impl DirectSupervisor {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        DirectSupervisor {
            program: Ok(program.into()),
            path: DEFAULT_PATH.into(),
        }
    }

    /// The supervisor runs with this PATH; empty keeps [`DEFAULT_PATH`].
    pub fn with_path(mut self, path: OsString) -> Self {
        if !path.is_empty() {
            self.path = path;
        }
        self
    }

    /// The running binary: in a hook, the charm itself.
    pub fn from_current_exe() -> Self {
        DirectSupervisor {
            program: std::env::current_exe()
                .map_err(|e| format!("cannot find the charm binary to run the supervisor: {e}")),
            path: DEFAULT_PATH.into(),
        }
    }

    fn lock(&self, spec: &ServiceSpec) -> Result<(RunDir, FileLock), ServiceError> {
        spec.validate()?;
        std::fs::create_dir_all(&spec.run_dir)?;
        let dirs = RunDir::new(&spec.run_dir);
        let lock = FileLock::acquire(&dirs.charm_lock(), CHARM_LOCK_WAIT)?;
        Ok((dirs, lock))
    }

    /// Run `<program> supervise <run_dir>`: it binds the socket, detaches
    /// and returns once the daemon's pidfile exists.
    fn start_supervisor(&self, dirs: &RunDir) -> Result<(), ServiceError> {
        let program = self.program.clone().map_err(ServiceError::Other)?;
        let _ = std::fs::remove_file(dirs.pidfile()); // stale: nobody holds the lock
        let mut command = std::process::Command::new(&program);
        command
            .arg("supervise")
            .arg(&dirs.path)
            .env_clear()
            .env("PATH", &self.path)
            .env("LANG", "C.UTF-8")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let output =
            crate::workload::system::run_with_timeout(command, Some(Duration::from_secs(30)))
                .map_err(|e| {
                    ServiceError::Other(format!("cannot run {}: {e}", program.display()))
                })?;
        if output.success() {
            Ok(())
        } else {
            Err(ServiceError::StartFailed(format!(
                "the supervisor did not start: {}",
                output.tail(10)
            )))
        }
    }

    /// Wait until the supervisor has handled `generation`.
    fn wait_for(
        &self,
        dirs: &RunDir,
        log_dir: &Path,
        generation: u64,
    ) -> Result<SupervisorState, ServiceError> {
        let started = Instant::now();
        loop {
            let state = dirs.read_state().map_err(ServiceError::Other)?;
            if let Some(state) = state.filter(|s| s.generation >= generation) {
                return Ok(state);
            }
            if dirs.running_supervisor()?.is_none() {
                return Err(ServiceError::Other(format!(
                    "the supervisor exited before handling generation {generation}:\n{}",
                    supervisor_log_tail(log_dir, 10)
                )));
            }
            if started.elapsed() > ANSWER_WAIT {
                return Err(ServiceError::Other(format!(
                    "the supervisor did not answer generation {generation} within {} s",
                    ANSWER_WAIT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl ServiceManager for DirectSupervisor {
    fn preflight(
        &self,
        spec: &ServiceSpec,
        criteria: &crate::workload::service::HealthCriteria,
    ) -> Result<String, ServiceError> {
        crate::workload::preflight::judge(spec, criteria)
    }

    fn ensure(&self, spec: &ServiceSpec) -> Result<ServiceChange, ServiceError> {
        let (dirs, _lock) = self.lock(spec)?;
        let state = dirs.read_state().map_err(ServiceError::Other)?;
        // An unreadable desired.json (a crash mid-write cannot make one, but
        // a person can) is replaced, not fatal.
        let desired = dirs.read_desired().ok().flatten();
        let supervisor = dirs.running_supervisor()?;

        if let (Some(_), Some(state), Some(desired)) = (supervisor, &state, &desired) {
            let serving_this = state.status == Status::Running
                && state.fingerprint.as_deref() == Some(spec.fingerprint.as_str())
                && state.pid.is_some_and(pid_alive);
            if serving_this && desired.spec == *spec {
                return Ok(ServiceChange::Unchanged);
            }
        }

        let generation = state
            .as_ref()
            .map_or(0, |s| s.generation)
            .max(desired.as_ref().map_or(0, |d| d.generation))
            + 1;
        dirs.write_desired(&Desired {
            generation,
            spec: spec.clone(),
        })?;
        match supervisor {
            // SAFETY: kill(2) on the pid whose lock is held (alive, ours).
            Some(pid) => unsafe {
                libc::kill(pid as i32, libc::SIGHUP);
            },
            None => {
                if let Err(error) = self.start_supervisor(&dirs) {
                    // A failure it could explain (e.g. the port is taken)
                    // is in state.json for this generation.
                    return match dirs.read_state().ok().flatten() {
                        Some(s) if s.generation == generation && s.error.is_some() => {
                            Err(ServiceError::StartFailed(s.error.unwrap_or_default()))
                        }
                        _ => Err(error),
                    };
                }
            }
        }
        let answer = self.wait_for(&dirs, &spec.log_dir, generation)?;
        match answer.outcome {
            Outcome::Started => Ok(ServiceChange::Started),
            Outcome::Replaced => Ok(ServiceChange::Replaced),
            Outcome::Unchanged => Ok(ServiceChange::Unchanged),
            Outcome::Failed => Err(ServiceError::StartFailed(
                answer.error.unwrap_or_else(|| "no reason recorded".into()),
            )),
        }
    }

    fn ensure_metrics(&self, spec: &ServiceSpec) -> Result<(), ServiceError> {
        spec.validate()?;
        let dirs = RunDir::new(&spec.run_dir);
        // The supervisor runs the exporter of the spec it was last given;
        // one that is not running starts it with gunicorn.
        let asked = dirs.read_desired().ok().flatten().map(|d| d.spec.metrics);
        if dirs.running_supervisor()?.is_none() || asked.as_ref() == Some(&spec.metrics) {
            return Ok(());
        }
        // The same fingerprint: the supervisor changes only the exporter.
        self.ensure(spec).map(|_| ())
    }

    fn state(&self, spec: &ServiceSpec) -> Result<ServiceState, ServiceError> {
        let dirs = RunDir::new(&spec.run_dir);
        if dirs.running_supervisor()?.is_none() {
            return Ok(ServiceState::Stopped);
        }
        let Some(state) = dirs.read_state().map_err(ServiceError::Other)? else {
            return Ok(ServiceState::Stopped);
        };
        let error = || state.error.clone().unwrap_or_default();
        Ok(match (state.status, state.fingerprint.clone(), state.pid) {
            (Status::Running, Some(fingerprint), Some(pid)) if pid_alive(pid) => {
                ServiceState::Running { fingerprint }
            }
            (Status::Running, _, _) => ServiceState::Failed(
                "the gunicorn master is gone; the supervisor is restarting it".into(),
            ),
            (Status::Restarting, _, _) => {
                ServiceState::Failed(format!("restarting gunicorn after it exited: {}", error()))
            }
            (Status::Failed, _, _) => ServiceState::Failed(error()),
            (Status::Stopped, _, _) => ServiceState::Stopped,
        })
    }

    fn stop(&self, spec: &ServiceSpec) -> Result<(), ServiceError> {
        let (dirs, _lock) = self.lock(spec)?;
        let master = dirs
            .read_state()
            .ok()
            .flatten()
            .and_then(|s| s.pid)
            .filter(|pid| is_our_master(&dirs, *pid));
        if let Some(pid) = dirs.running_supervisor()? {
            // SAFETY: kill(2) on the live supervisor (its lock is held).
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            // It waits up to the graceful timeout for in-flight requests.
            let limit = Duration::from_secs(MAX_GRACEFUL_TIMEOUT_SECS + 15);
            let started = Instant::now();
            while dirs.running_supervisor()?.is_some() {
                if started.elapsed() > limit {
                    // SAFETY: as above; it did not stop in time.
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            // Its lock is released as its files close, a moment before the
            // process is gone; "stopped" means gone.
            let gone_by = Instant::now() + Duration::from_secs(5);
            while pid_alive(pid) && Instant::now() < gone_by {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        // A master without a supervisor (killed one, or the SIGKILL above).
        if let Some(pid) = master.filter(|pid| is_our_master(&dirs, *pid)) {
            // SAFETY: kill(2) on a gunicorn master of this run directory.
            unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
        }
        let _ = std::fs::remove_file(dirs.pidfile());
        Ok(())
    }
}

/// The last lines of the supervisor's own log, for error messages.
pub fn supervisor_log_tail(log_dir: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log_dir.join("supervisor.log")).unwrap_or_default();
    last_lines(&text, lines)
}
