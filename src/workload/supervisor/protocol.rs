//! What the charm and the supervisor share: the files in `<run_dir>`, their
//! formats, and the locks around them.
//!
//! ```text
//! <run_dir>/desired.json      charm → supervisor: {"generation": n, "spec": {...}}
//!                             written atomically, then SIGHUP to the supervisor
//! <run_dir>/state.json        supervisor → charm: what generation n did and what serves
//! <run_dir>/supervisor.pid    the supervisor's pid (to signal it)
//! <run_dir>/supervisor.lock   flock held by the supervisor for its whole life:
//!                             the proof it is alive (a pidfile alone can be stale)
//! <run_dir>/charm.lock        flock held by a charm for a whole ensure/stop, so
//!                             two charms (or two hooks) never interleave
//! <run_dir>/gunicorn.conf.py  generated gunicorn config (readiness hook)
//! <run_dir>/gunicorn/         the one directory gunicorn may write (it runs as
//!                             the app user): ready.<master pid>, ctl.<master pid>
//! ```
//!
//! Invariants: generations only grow (the charm picks one above both files'
//! generations); `state.json` is rewritten whole, atomically, by the
//! supervisor only; no file here holds an environment value.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::workload::service::{write_atomic, ServiceSpec};

/// The paths of one run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        RunDir { path: path.into() }
    }
    pub fn desired(&self) -> PathBuf {
        self.path.join("desired.json")
    }
    pub fn state(&self) -> PathBuf {
        self.path.join("state.json")
    }
    pub fn pidfile(&self) -> PathBuf {
        self.path.join("supervisor.pid")
    }
    pub fn supervisor_lock(&self) -> PathBuf {
        self.path.join("supervisor.lock")
    }
    pub fn charm_lock(&self) -> PathBuf {
        self.path.join("charm.lock")
    }
    pub fn gunicorn_config(&self) -> PathBuf {
        self.path.join("gunicorn.conf.py")
    }

    pub fn read_desired(&self) -> Result<Option<Desired>, String> {
        read_json(&self.desired())
    }
    pub fn write_desired(&self, desired: &Desired) -> std::io::Result<()> {
        write_json(&self.desired(), desired)
    }
    pub fn read_state(&self) -> Result<Option<SupervisorState>, String> {
        read_json(&self.state())
    }
    pub fn write_state(&self, state: &SupervisorState) -> std::io::Result<()> {
        write_json(&self.state(), state)
    }

    /// The supervisor's pid when one is alive: its lock is held. A pidfile
    /// left by a dead supervisor is ignored (and the caller may remove it).
    pub fn running_supervisor(&self) -> std::io::Result<Option<u32>> {
        let lock_path = self.supervisor_lock();
        if !lock_path.exists() {
            return Ok(None);
        }
        if FileLock::try_acquire(&lock_path)?.is_some() {
            return Ok(None); // nobody holds it; dropping ours releases it
        }
        let pid = std::fs::read_to_string(self.pidfile())
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok());
        Ok(pid.filter(|pid| pid_alive(*pid)))
    }
}

/// What the charm asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Desired {
    pub generation: u64,
    pub spec: ServiceSpec,
}

/// What the supervisor did with the last generation it handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// No master served; one does now.
    Started,
    /// A new master took over; the old one was told to finish and exit.
    Replaced,
    /// The serving master already had this fingerprint.
    Unchanged,
    /// The new master could not start; whatever served still serves.
    Failed,
}

/// What serves now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    /// The master died; the supervisor restarts it after a back-off.
    Restarting,
    /// Nothing serves and the supervisor gave up (until the next `ensure`).
    Failed,
    Stopped,
}

/// The contents of `state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisorState {
    pub generation: u64,
    pub outcome: Outcome,
    pub status: Status,
    /// The serving master's fingerprint and pid.
    pub fingerprint: Option<String>,
    pub pid: Option<u32>,
    pub supervisor_pid: u32,
    /// The last failure (a switch that failed, or a crash): gunicorn's last
    /// error-log lines.
    pub error: Option<String>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes, 0o644)
}

/// An exclusive `flock(2)` on a file, released when dropped (or when the
/// process holding it dies, which is what makes it a liveness proof).
#[derive(Debug)]
pub struct FileLock {
    file: File,
}

impl FileLock {
    fn open(path: &Path) -> std::io::Result<File> {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
    }

    /// Take the lock if nobody holds it.
    pub fn try_acquire(path: &Path) -> std::io::Result<Option<FileLock>> {
        use std::os::fd::AsRawFd;
        let file = Self::open(path)?;
        // SAFETY: flock on a descriptor we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(Some(FileLock { file }));
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Ok(None)
        } else {
            Err(err)
        }
    }

    /// Take the lock, waiting up to `limit` for whoever holds it.
    pub fn acquire(path: &Path, limit: Duration) -> std::io::Result<FileLock> {
        let started = Instant::now();
        loop {
            if let Some(lock) = Self::try_acquire(path)? {
                return Ok(lock);
            }
            if started.elapsed() > limit {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "{} is still locked after {} s (another hook or charm is managing the service)",
                        path.display(),
                        limit.as_secs()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn raw_fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.file.as_raw_fd()
    }
}

/// Whether `pid` is a live process (a zombie counts as dead: it serves
/// nothing and holds no file).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid_t) = i32::try_from(pid) else {
        return false;
    };
    if pid_t <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    let exists = unsafe { libc::kill(pid_t, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !exists {
        return false;
    }
    // /proc/<pid>/stat: "pid (comm) S ..." — the state follows the last ')'.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
            .unwrap_or(true),
        Err(_) => false,
    }
}

/// The command line of `pid`, arguments joined by spaces.
pub fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// Whether `pid` is a live gunicorn master started by the supervisor of
/// this run directory (its command line names our generated config), so a
/// recycled pid is never signalled.
pub fn is_our_master(dirs: &RunDir, pid: u32) -> bool {
    let config = dirs.gunicorn_config();
    pid_alive(pid)
        && cmdline(pid).is_some_and(|line| {
            line.contains("gunicorn") && line.contains(&*config.to_string_lossy())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_excludes_a_second_holder_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let first = FileLock::try_acquire(&path).unwrap();
        assert!(first.is_some());
        assert!(FileLock::try_acquire(&path).unwrap().is_none());
        drop(first);
        // A process forked by a parallel test shares our descriptor until it
        // execs (then CLOEXEC closes it): give that moment time to pass.
        assert!(FileLock::acquire(&path, Duration::from_secs(5)).is_ok());
    }

    #[test]
    fn stale_pidfile_is_not_a_running_supervisor() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        std::fs::write(run.pidfile(), format!("{}\n", std::process::id())).unwrap();
        std::fs::write(run.supervisor_lock(), "").unwrap();
        // Our own pid is alive, but nobody holds the lock: not running.
        assert_eq!(run.running_supervisor().unwrap(), None);
        let _held = FileLock::try_acquire(&run.supervisor_lock())
            .unwrap()
            .unwrap();
        // flock is per open file: a second open in this process conflicts.
        assert_eq!(run.running_supervisor().unwrap(), Some(std::process::id()));
    }

    #[test]
    fn state_round_trips_with_lowercase_words() {
        let state = SupervisorState {
            generation: 3,
            outcome: Outcome::Replaced,
            status: Status::Running,
            fingerprint: Some("r2".into()),
            pid: Some(42),
            supervisor_pid: 7,
            error: None,
        };
        let text = serde_json::to_string(&state).unwrap();
        assert!(text.contains(r#""outcome":"replaced""#), "{text}");
        assert!(text.contains(r#""status":"running""#), "{text}");
        assert_eq!(
            serde_json::from_str::<SupervisorState>(&text).unwrap(),
            state
        );
    }

    #[test]
    fn zombies_and_absent_pids_are_dead() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Not yet reaped: a zombie once it exits.
        while std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z"))
            .unwrap_or(false)
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!pid_alive(pid));
        child.wait().unwrap();
        assert!(!pid_alive(pid));
    }
}
