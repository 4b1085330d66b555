//! The supervisor process: `wsgi-app supervise <run_dir>`.
//!
//! It holds the listening socket for the service's whole life and runs
//! gunicorn masters on it (`--bind fd://3`), one per build. A switch starts a
//! new master next to the old one; once the new master's first worker has
//! imported the application (its `post_worker_init` hook touches
//! `gunicorn/ready.<master pid>`), the old master gets SIGTERM and finishes
//! its in-flight requests. Both accept on the same socket for that moment;
//! the switch is reported done only once the old master's whole process
//! group is gone, so after the answer only the new build takes
//! connections. When no master runs at all (a crash, a restart)
//! connections wait in the kernel's backlog instead of being refused.
//!
//! Invariants:
//! - a master is only ever retired after its successor proved ready, and a
//!   switch is answered only after the retired master's group is gone;
//! - every master is this process's child and is reaped here; a master that
//!   dies unexpectedly is restarted from the build it was serving (not from
//!   whatever `current` points to now), with back-off, a bounded number of
//!   times;
//! - the process is single-threaded: signal handlers only set flags, and
//!   one loop reads them (that is also what makes `fork` safe here);
//! - environment values are passed to gunicorn and never written anywhere.
//!
//! This module is the masters' state machine (launch, take over, retire,
//! restart with back-off); [`process`] holds the process plumbing (signals,
//! detaching, the held socket) and [`logs`] what gunicorn wrote.
//!
//! Why over 600 lines: the state machine is one `impl` whose steps share
//! the supervisor's fields; cut in two, each half would need the other's.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::workload::metrics::MetricsSpec;
use crate::workload::service::{
    app_ids, gunicorn_args, gunicorn_master, gunicorn_state_dir, last_lines, prepare_dirs,
    python_str, read_app_env, readiness_marker, venv_python, write_atomic, Listen, ServiceSpec,
    BUSY_HOOKS, IMPORT_TIMEOUT, MAX_GRACEFUL_TIMEOUT_SECS,
};
use crate::workload::supervisor::protocol::{
    Desired, FileLock, Outcome, RunDir, Status, SupervisorState,
};

/// How long a new master may take to import the application.
pub const READY_TIMEOUT: Duration = IMPORT_TIMEOUT;
/// The listen backlog: requests wait here while no master accepts.
pub const LISTEN_BACKLOG: i32 = 2048;
/// Restarts in a row after which the supervisor gives up on a crashing master.
const MAX_RESTARTS: u32 = 5;
/// A master that served this long has not been crash-looping: the restart
/// count starts again.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// How often the loop looks at signals and children.
const TICK: Duration = Duration::from_millis(20);
/// Error lines quoted when a master fails.
const ERROR_LINES: usize = 20;

/// A log line on stderr (the supervisor log once daemonized). Never pass
/// environment values here.
macro_rules! log {
    ($($arg:tt)*) => {
        eprintln!("{} supervisor[{}]: {}", $crate::workload::supervisor::daemon::utc_now(), std::process::id(), format_args!($($arg)*))
    };
}

pub(crate) fn utc_now() -> String {
    crate::workload::text::rfc3339(crate::workload::builds::now())
}

// After `log!`: the parts below use it.
mod logs;
mod process;

use logs::{error_excerpt, file_len, tail_of};
use process::{
    daemonize, describe_wait_status, give_up_wait, group_alive, install_signal_handlers,
    lend_listener_as_fd3, signal_group, signal_pid, stop_orphaned_master, HeldListener, HUP, STOP,
};

/// The entry point of `wsgi-app supervise <run_dir>`. Returns once the
/// daemon is running (exit code 0) or could not start (non-zero, with the
/// reason on stderr and in `state.json`).
pub fn run(run_dir: &Path) -> i32 {
    let dirs = RunDir::new(run_dir);
    match start(&dirs) {
        Ok(Started::Parent(code)) => code,
        Ok(Started::Daemon(mut supervisor)) => {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                supervisor.run_loop();
            }));
            if result.is_err() {
                log!("panicked; stopping gunicorn");
                supervisor.shutdown(Some("the supervisor panicked".into()));
                // SAFETY: leave at once; the daemon owns nothing to flush.
                unsafe { libc::_exit(70) };
            }
            // SAFETY: the daemon must not return into the caller's main.
            unsafe { libc::_exit(0) }
        }
        Err(message) => {
            eprintln!("wsgi-app supervise: {message}");
            1
        }
    }
}

enum Started {
    /// We are the process the charm ran: this is its exit code.
    Parent(i32),
    /// We are the daemon.
    Daemon(Box<Supervisor>),
}

fn start(dirs: &RunDir) -> Result<Started, String> {
    // Before the lock makes us visible: a SIGHUP must never find the
    // default action (terminate) in place.
    install_signal_handlers();
    let lock = FileLock::try_acquire(&dirs.supervisor_lock())
        .map_err(|e| format!("{}: {e}", dirs.supervisor_lock().display()))?
        .ok_or_else(|| {
            format!(
                "another supervisor holds {}",
                dirs.supervisor_lock().display()
            )
        })?;
    let desired = dirs
        .read_desired()?
        .ok_or_else(|| format!("{} does not exist", dirs.desired().display()))?;
    desired.spec.validate().map_err(|e| e.to_string())?;
    prepare_dirs(&desired.spec).map_err(|e| e.to_string())?;
    stop_orphaned_master(dirs);

    // Bind before daemonizing, so "address in use" reaches the charm.
    let listener = match HeldListener::bind(&desired.spec) {
        Ok(listener) => listener,
        Err(error) => {
            let _ = dirs.write_state(&SupervisorState {
                generation: desired.generation,
                outcome: Outcome::Failed,
                status: Status::Failed,
                fingerprint: None,
                pid: None,
                supervisor_pid: std::process::id(),
                error: Some(error.clone()),
            });
            return Err(error);
        }
    };
    let log_path = desired.spec.log_dir.join("supervisor.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("{}: {e}", log_path.display()))?;

    let keep = [lock.raw_fd(), listener.raw_fd(), log.as_raw_fd()];
    if let Some(code) = daemonize(dirs, &log, &keep)? {
        return Ok(Started::Parent(code));
    }
    log!(
        "started for {} on {} (generation {})",
        desired.spec.name,
        listener.address,
        desired.generation
    );
    let mut supervisor = Supervisor {
        dirs: dirs.clone(),
        exporter: None,
        _lock: lock,
        generation: 0,
        listener: Some(listener),
        serving: None,
        retiring: Vec::new(),
        pending_restart: None,
        status: Status::Stopped,
        outcome: Outcome::Started,
        last_error: None,
    };
    supervisor.apply(desired);
    Ok(Started::Daemon(Box::new(supervisor)))
}

/// A running gunicorn master, our child.
#[derive(Debug)]
struct Master {
    pid: u32,
    spec: ServiceSpec,
    /// The build `current` pointed to when this master started: a restart
    /// after a crash serves the same build, even if `current` moved since.
    build_dir: PathBuf,
    ready_at: Instant,
    /// Restarts in a row that led to this master (0 for a requested start).
    restarts: u32,
}

/// A restart waiting for its back-off to pass.
#[derive(Debug)]
struct PendingRestart {
    spec: ServiceSpec,
    build_dir: PathBuf,
    attempt: u32,
    due: Instant,
}

/// A master told to finish its requests and exit.
#[derive(Debug)]
struct Retiring {
    pid: u32,
    kill_at: Instant,
}

/// The metrics exporter, a child of ours like the masters; restarted when
/// it exits, after [`EXPORTER_RESTART_DELAY`].
struct Exporter {
    spec: MetricsSpec,
    /// The app user's ids, which it runs as.
    ids: (u32, u32),
    log: PathBuf,
    /// `None` while it waits to be started again.
    pid: Option<u32>,
    restart_at: Instant,
}

/// How long an exporter that exited waits before it is started again (a
/// port still taken, say, must not make the supervisor spin).
const EXPORTER_RESTART_DELAY: Duration = Duration::from_secs(2);

struct Supervisor {
    dirs: RunDir,
    exporter: Option<Exporter>,
    _lock: FileLock,
    /// The last desired generation handled.
    generation: u64,
    listener: Option<HeldListener>,
    serving: Option<Master>,
    retiring: Vec<Retiring>,
    pending_restart: Option<PendingRestart>,
    status: Status,
    outcome: Outcome,
    last_error: Option<String>,
}

/// Why a master did not become ready, for the operator.
type LaunchError = String;

impl Supervisor {
    fn run_loop(&mut self) {
        loop {
            if STOP.load(Ordering::SeqCst) {
                self.shutdown(None);
                return;
            }
            if HUP.swap(false, Ordering::SeqCst) {
                match self.dirs.read_desired() {
                    Ok(Some(desired)) if desired.generation != self.generation => {
                        self.apply(desired)
                    }
                    Ok(_) => log!("SIGHUP without a new generation; nothing to do"),
                    Err(e) => log!("cannot read the desired state: {e}"),
                }
            }
            self.reap(None);
            self.restart_if_due();
            self.restart_exporter_if_due();
            std::thread::sleep(TICK);
        }
    }

    /// Make the desired spec serve.
    fn apply(&mut self, desired: Desired) {
        self.generation = desired.generation;
        let spec = desired.spec;
        self.ensure_exporter(&spec);
        let same_listener = self
            .listener
            .as_ref()
            .is_some_and(|l| l.address == spec.listen_address());
        if let Some(serving) = &mut self.serving {
            if serving.spec.fingerprint == spec.fingerprint && same_listener {
                log!(
                    "generation {}: fingerprint {} already serves",
                    self.generation,
                    spec.fingerprint
                );
                serving.spec = spec;
                self.outcome = Outcome::Unchanged;
                self.write_state();
                return;
            }
        }
        let build_dir = match std::fs::canonicalize(&spec.current_dir) {
            Ok(dir) => dir,
            Err(e) => {
                return self.switch_failed(format!(
                    "{} does not lead to a build: {e}",
                    spec.current_dir.display()
                ))
            }
        };
        log!(
            "generation {}: starting a master for {} ({})",
            self.generation,
            build_dir.display(),
            spec.fingerprint
        );
        match self.launch(&spec, &build_dir, 0) {
            Ok(master) => {
                let replaced = self.serving.is_some();
                self.take_over(master);
                self.await_retired();
                self.outcome = if replaced {
                    Outcome::Replaced
                } else {
                    Outcome::Started
                };
                self.last_error = None;
                self.write_state();
            }
            Err(error) => self.switch_failed(error),
        }
    }

    fn switch_failed(&mut self, error: String) {
        log!("generation {} failed: {error}", self.generation);
        self.outcome = Outcome::Failed;
        self.last_error = Some(error);
        if self.serving.is_none() && self.pending_restart.is_none() {
            self.status = Status::Failed;
            // Nothing will serve: refuse connections rather than queue them.
            self.listener = None;
        }
        self.write_state();
    }

    /// `master` is ready: it serves, and its predecessor retires.
    fn take_over(&mut self, master: Master) {
        if let Some(old) = self.serving.take() {
            log!(
                "master {} is ready; retiring master {}",
                master.pid,
                old.pid
            );
            self.retire(&old);
        } else {
            log!("master {} is ready", master.pid);
        }
        self.pending_restart = None;
        self.status = Status::Running;
        self.serving = Some(master);
    }

    /// Return once no retiring master's process group is left. A switch is
    /// over only when the old build can take no new connection: its
    /// workers stop accepting at SIGTERM, but each keeps the listening
    /// socket open until its in-flight request is done, so only an empty
    /// group is sure. Bounded: [`Self::reap`] kills a master that overruns
    /// the graceful timeout, and a group left after that goes here.
    fn await_retired(&mut self) {
        let groups: Vec<u32> = self.retiring.iter().map(|r| r.pid).collect();
        let give_up = Instant::now() + Duration::from_secs(MAX_GRACEFUL_TIMEOUT_SECS + 15);
        while groups.iter().any(|pid| group_alive(*pid)) && !STOP.load(Ordering::SeqCst) {
            self.reap(None);
            if Instant::now() > give_up {
                for pid in &groups {
                    log!("master {pid}'s processes outlived it; killing them");
                    signal_group(*pid, libc::SIGKILL);
                }
                give_up_wait(&groups);
                break;
            }
            std::thread::sleep(TICK);
        }
        self.reap(None);
    }

    fn retire(&mut self, master: &Master) {
        // SIGTERM is gunicorn's graceful stop: workers finish in-flight
        // requests (up to --graceful-timeout) and accept nothing new.
        signal_pid(master.pid, libc::SIGTERM);
        self.retiring.push(Retiring {
            pid: master.pid,
            kill_at: Instant::now() + master.spec.serving.retire_within() + Duration::from_secs(10),
        });
    }

    /// Start a master for `spec` serving `build_dir` and wait until its
    /// first worker imported the app. The old master is not touched here.
    fn launch(
        &mut self,
        spec: &ServiceSpec,
        build_dir: &Path,
        restarts: u32,
    ) -> Result<Master, LaunchError> {
        prepare_dirs(spec).map_err(|e| e.to_string())?;
        let env = read_app_env(&spec.env_file)?;
        let python = venv_python(build_dir);
        if !python.exists() {
            return Err(format!("{} does not exist", python.display()));
        }
        if !build_dir.join("code").is_dir() {
            return Err(format!("{}/code is not a directory", build_dir.display()));
        }
        // A new address (config changed the port) needs a new socket. It is
        // only kept if the new master serves; the old master keeps its own
        // copy of the old one until it retires.
        let fresh_listener = if self
            .listener
            .as_ref()
            .is_none_or(|l| l.address != spec.listen_address())
        {
            Some(HeldListener::bind(spec)?)
        } else {
            None
        };
        let listener_fd = fresh_listener
            .as_ref()
            .or(self.listener.as_ref())
            .map(HeldListener::raw_fd)
            .expect("a listener is held or was just bound");
        write_atomic(
            &self.dirs.gunicorn_config(),
            gunicorn_config(&self.dirs.path).as_bytes(),
            0o644,
        )
        .map_err(|e| format!("{}: {e}", self.dirs.gunicorn_config().display()))?;
        let offsets = (
            file_len(&spec.log_dir.join("error.log")),
            file_len(&spec.log_dir.join("supervisor.log")),
        );

        let (uid, gid) = app_ids(spec).map_err(|e| e.to_string())?;
        let mut command = gunicorn_master(build_dir, env, (uid, gid));
        command.args(gunicorn_args(
            spec,
            build_dir,
            Listen::Bind("fd://3"),
            spec.workers,
            Some(&self.dirs.gunicorn_config()),
        ));
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: only dup2/fcntl between fork and exec.
            unsafe {
                command.pre_exec(move || lend_listener_as_fd3(listener_fd));
            }
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
        let pid = child.id();
        drop(child); // reaped by waitpid in `reap`, not through `Child`
        log!(
            "master {pid} started (gunicorn from {})",
            build_dir.display()
        );

        if let Err(error) = self.await_ready(pid, spec, offsets) {
            let _ = std::fs::remove_file(readiness_marker(&self.dirs.path, pid));
            return Err(error);
        }
        if let Some(listener) = fresh_listener {
            self.listener = Some(listener);
        }
        Ok(Master {
            pid,
            spec: spec.clone(),
            build_dir: build_dir.to_path_buf(),
            ready_at: Instant::now(),
            restarts,
        })
    }

    /// Wait until master `pid`'s readiness marker appears. Fails (and kills
    /// what is left of the master) if it exits first, if it takes longer
    /// than [`READY_TIMEOUT`], or if we are asked to stop meanwhile.
    fn await_ready(
        &mut self,
        pid: u32,
        spec: &ServiceSpec,
        log_offsets: (u64, u64),
    ) -> Result<(), LaunchError> {
        let error_log = spec.log_dir.join("error.log");
        let stderr_log = spec.log_dir.join("supervisor.log");
        let started = Instant::now();
        let marker = readiness_marker(&self.dirs.path, pid);
        loop {
            if marker.exists() {
                return Ok(());
            }
            if let Some(status) = self.reap(Some(pid)) {
                return Err(format!(
                    "the master exited ({}) before a worker imported {}:\n{}",
                    describe_wait_status(status),
                    spec.wsgi_application,
                    error_excerpt(&error_log, &stderr_log, log_offsets)
                ));
            }
            if STOP.load(Ordering::SeqCst) || started.elapsed() > READY_TIMEOUT {
                signal_group(pid, libc::SIGKILL);
                // SAFETY: reap our own child.
                unsafe { libc::waitpid(pid as i32, std::ptr::null_mut(), 0) };
                return Err(format!(
                    "no worker imported {} within {} s:\n{}",
                    spec.wsgi_application,
                    READY_TIMEOUT.as_secs(),
                    error_excerpt(&error_log, &stderr_log, log_offsets)
                ));
            }
            std::thread::sleep(TICK);
        }
    }

    /// Reap exited children. The serving master's death schedules a
    /// restart; a retired master's is expected. When `watch` exits its
    /// wait status is returned instead of handled.
    fn reap(&mut self, watch: Option<u32>) -> Option<i32> {
        let mut watched = None;
        loop {
            let mut status = 0;
            // SAFETY: waitpid for any child, without blocking.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            let pid = pid as u32;
            let _ = std::fs::remove_file(readiness_marker(&self.dirs.path, pid));
            if Some(pid) == watch {
                watched = Some(status);
            } else if let Some(exporter) = self.exporter.as_mut().filter(|e| e.pid == Some(pid)) {
                log!(
                    "the metrics exporter {pid} exited ({}); starting it again in {} s",
                    describe_wait_status(status),
                    EXPORTER_RESTART_DELAY.as_secs()
                );
                exporter.pid = None;
                exporter.restart_at = Instant::now() + EXPORTER_RESTART_DELAY;
            } else if let Some(index) = self.retiring.iter().position(|r| r.pid == pid) {
                self.retiring.remove(index);
                log!(
                    "retired master {pid} exited ({})",
                    describe_wait_status(status)
                );
            } else if self.serving.as_ref().is_some_and(|m| m.pid == pid) {
                let master = self.serving.take().expect("checked above");
                self.master_died(master, status);
            }
        }
        let now = Instant::now();
        for retiring in &self.retiring {
            if now > retiring.kill_at {
                log!(
                    "retired master {} overran its graceful timeout; killing it",
                    retiring.pid
                );
                signal_group(retiring.pid, libc::SIGKILL);
            }
        }
        watched
    }

    fn master_died(&mut self, master: Master, status: i32) {
        // Its workers notice the parent is gone and exit; tell them now.
        signal_group(master.pid, libc::SIGTERM);
        let error_log = master.spec.log_dir.join("error.log");
        let excerpt = last_lines(&tail_of(&error_log, 16 * 1024), ERROR_LINES);
        let attempt = if master.ready_at.elapsed() >= STABLE_AFTER {
            1
        } else {
            master.restarts + 1
        };
        let error = format!(
            "gunicorn master {} exited unexpectedly ({}):\n{excerpt}",
            master.pid,
            describe_wait_status(status)
        );
        log!("{}", error.lines().next().unwrap_or_default());
        self.last_error = Some(error);
        self.schedule_restart(master.spec, master.build_dir, attempt);
    }

    fn schedule_restart(&mut self, spec: ServiceSpec, build_dir: PathBuf, attempt: u32) {
        if attempt > MAX_RESTARTS {
            log!("gunicorn failed {MAX_RESTARTS} times in a row; giving up until the charm asks again");
            self.pending_restart = None;
            self.status = Status::Failed;
            // Refuse connections rather than let clients hang on a queue
            // nobody will serve.
            self.listener = None;
        } else {
            let backoff = Duration::from_millis(500 * (1u64 << (attempt - 1).min(4)));
            log!(
                "restarting gunicorn in {} ms (attempt {attempt} of {MAX_RESTARTS})",
                backoff.as_millis()
            );
            self.pending_restart = Some(PendingRestart {
                spec,
                build_dir,
                attempt,
                due: Instant::now() + backoff,
            });
            self.status = Status::Restarting;
        }
        self.write_state();
    }

    fn restart_if_due(&mut self) {
        if self
            .pending_restart
            .as_ref()
            .is_none_or(|r| Instant::now() < r.due)
        {
            return;
        }
        let restart = self.pending_restart.take().expect("checked above");
        match self.launch(&restart.spec, &restart.build_dir, restart.attempt) {
            Ok(master) => {
                self.take_over(master);
                self.write_state();
            }
            Err(error) => {
                log!("restart attempt {} failed", restart.attempt);
                self.last_error = Some(error);
                self.schedule_restart(restart.spec, restart.build_dir, restart.attempt + 1);
            }
        }
    }

    /// Run the exporter `spec` asks for, or none; a running one with the
    /// same spec is left alone (a switch does not touch it).
    fn ensure_exporter(&mut self, spec: &ServiceSpec) {
        if self.exporter.as_ref().map(|e| &e.spec) == spec.metrics.as_ref() {
            return;
        }
        self.stop_exporter();
        let Some(metrics) = spec.metrics.clone() else {
            return;
        };
        let ids = match app_ids(spec) {
            Ok(ids) => ids,
            Err(e) => return log!("the metrics exporter cannot run as {}: {e}", spec.user),
        };
        self.exporter = Some(Exporter {
            spec: metrics,
            ids,
            log: spec.log_dir.join("metrics-exporter.log"),
            pid: None,
            restart_at: Instant::now(),
        });
        self.restart_exporter_if_due();
    }

    fn restart_exporter_if_due(&mut self) {
        let Some(exporter) = self
            .exporter
            .as_mut()
            .filter(|e| e.pid.is_none() && Instant::now() >= e.restart_at)
        else {
            return;
        };
        match spawn_exporter(exporter) {
            Ok(pid) => {
                log!("metrics exporter {pid} started on {}", exporter.spec.listen);
                exporter.pid = Some(pid);
            }
            Err(e) => {
                log!("cannot start the metrics exporter: {e}");
                exporter.restart_at = Instant::now() + EXPORTER_RESTART_DELAY;
            }
        }
    }

    fn stop_exporter(&mut self) {
        if let Some(pid) = self.exporter.take().and_then(|e| e.pid) {
            signal_group(pid, libc::SIGTERM);
            // SAFETY: reap our own child; it exits at SIGTERM.
            unsafe { libc::waitpid(pid as i32, std::ptr::null_mut(), 0) };
        }
    }

    fn write_state(&self) {
        let state = SupervisorState {
            generation: self.generation,
            outcome: self.outcome,
            status: self.status,
            fingerprint: self.serving.as_ref().map(|m| m.spec.fingerprint.clone()),
            pid: self.serving.as_ref().map(|m| m.pid),
            supervisor_pid: std::process::id(),
            error: self.last_error.clone(),
        };
        if let Err(e) = self.dirs.write_state(&state) {
            log!("cannot write {}: {e}", self.dirs.state().display());
        }
    }

    /// Stop every master gracefully (SIGKILL after the graceful timeout),
    /// release the socket, and record `stopped`.
    fn shutdown(&mut self, error: Option<String>) {
        log!("stopping");
        self.stop_exporter();
        self.pending_restart = None;
        if let Some(master) = self.serving.take() {
            self.retire(&master);
        }
        // Close our copy now: with the masters gone, nothing listens.
        self.listener = None;
        while !self.retiring.is_empty() {
            self.reap(None);
            std::thread::sleep(TICK);
        }
        self.status = Status::Stopped;
        if error.is_some() {
            self.last_error = error;
        }
        self.write_state();
        let _ = std::fs::remove_file(self.dirs.pidfile());
        log!("stopped");
    }
}

/// Start the exporter as the app user, in a process group of its own, its
/// output appended to its log.
fn spawn_exporter(exporter: &Exporter) -> std::io::Result<u32> {
    use std::os::unix::process::CommandExt;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&exporter.log)?;
    if crate::workload::users::is_root() {
        // The app user's, like gunicorn's logs, so logrotate (as that user) can truncate it.
        std::os::unix::fs::fchown(&log, Some(exporter.ids.0), Some(exporter.ids.1))?;
    }
    let mut command = std::process::Command::new(&exporter.spec.program);
    command
        .args(exporter.spec.args())
        .env_clear()
        .env("LANG", "C.UTF-8")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    if crate::workload::users::is_root() {
        command.uid(exporter.ids.0).gid(exporter.ids.1);
    }
    // SAFETY: prctl only, between fork and exec (after the user change,
    // which would clear it). A supervisor killed outright takes its
    // exporter along, so the next one finds the port free.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn()?;
    Ok(child.id()) // reaped by waitpid in `reap`
}

/// The generated gunicorn config. Names gunicorn does not know are ignored,
/// so older gunicorns (without a control socket) accept it as well.
fn gunicorn_config(run_dir: &Path) -> String {
    let state_dir = gunicorn_state_dir(run_dir);
    format!(
        r#"# Generated by the wsgi-app charm's supervisor before each gunicorn master
# starts. Do not edit.
import os

_STATE_DIR = {state_dir}

# One control socket per master: two masters overlap during a switch, and a
# master removes its socket file when it exits.
control_socket = os.path.join(_STATE_DIR, "ctl.%d" % os.getpid())


def post_worker_init(worker):
    # The application imported in this worker: its master can serve. The
    # supervisor waits for this file before retiring the previous master.
    open(os.path.join(_STATE_DIR, "ready.%d" % worker.ppid), "a").close()
    _report_busy(worker, 0)
{BUSY_HOOKS}"#,
        state_dir = python_str(&state_dir.to_string_lossy())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn config_hook_names_the_master_and_the_state_dir() {
        let text = gunicorn_config(Path::new("/run/wsgi-app"));
        assert!(
            text.contains(r#"_STATE_DIR = "/run/wsgi-app/gunicorn""#),
            "{text}"
        );
        assert!(text.contains("def post_worker_init(worker):"), "{text}");
        assert!(text.contains(r#""ready.%d" % worker.ppid"#), "{text}");
    }

    fn idle_supervisor(run_dir: &Path) -> Supervisor {
        let dirs = RunDir::new(run_dir);
        Supervisor {
            _lock: FileLock::try_acquire(&dirs.supervisor_lock())
                .unwrap()
                .unwrap(),
            dirs,
            exporter: None,
            generation: 4,
            listener: None,
            serving: None,
            retiring: Vec::new(),
            pending_restart: None,
            status: Status::Running,
            outcome: Outcome::Started,
            last_error: None,
        }
    }

    fn spec_in(dir: &Path) -> ServiceSpec {
        ServiceSpec {
            name: "t".into(),
            current_dir: dir.join("current"),
            wsgi_application: "m:a".into(),
            bind_address: "127.0.0.1".into(),
            port: 1,
            workers: 1,
            env_file: dir.join("env"),
            user: "u".into(),
            group: "g".into(),
            log_dir: dir.join("log"),
            run_dir: dir.join("run"),
            serving: crate::workload::service::Serving::default(),
            metrics: None,
            fingerprint: "f".into(),
        }
    }

    #[test]
    fn crashes_back_off_then_give_up_and_release_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec_in(dir.path());
        std::fs::create_dir_all(&spec.run_dir).unwrap();
        let mut supervisor = idle_supervisor(&spec.run_dir);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let inode = socket_inode(&listener);
        supervisor.listener = Some(HeldListener {
            address: address.clone(),
            socket: listener,
        });

        supervisor.schedule_restart(spec.clone(), dir.path().join("build"), 1);
        let first = supervisor.pending_restart.as_ref().unwrap().due;
        assert_eq!(supervisor.status, Status::Restarting);
        let state = supervisor.dirs.read_state().unwrap().unwrap();
        assert_eq!((state.status, state.generation), (Status::Restarting, 4));

        supervisor.schedule_restart(spec.clone(), dir.path().join("build"), 3);
        assert!(supervisor.pending_restart.as_ref().unwrap().due > first);
        assert!(
            supervisor.listener.is_some() && process_holds_socket(inode),
            "requests queue during a restart"
        );

        supervisor.schedule_restart(spec, dir.path().join("build"), MAX_RESTARTS + 1);
        assert!(supervisor.pending_restart.is_none());
        assert_eq!(supervisor.status, Status::Failed);
        // Closed in this process (a connect could not tell: on a busy
        // machine another process may take the freed port at once).
        assert!(supervisor.listener.is_none());
        assert!(!process_holds_socket(inode), "socket released");
        let state = supervisor.dirs.read_state().unwrap().unwrap();
        assert_eq!(state.status, Status::Failed);
    }

    fn socket_inode(socket: &TcpListener) -> u64 {
        use std::os::unix::fs::MetadataExt;
        use std::os::unix::io::AsRawFd;
        std::fs::metadata(format!("/proc/self/fd/{}", socket.as_raw_fd()))
            .unwrap()
            .ino()
    }

    /// Whether any descriptor of this process is the socket `inode`.
    fn process_holds_socket(inode: u64) -> bool {
        let wanted = format!("socket:[{inode}]");
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == wanted))
    }
}
