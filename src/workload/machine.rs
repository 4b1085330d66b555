//! The machine the workload acts on: a filesystem root, a runner for
//! external programs, a service manager for gunicorn, a probe for health
//! checks. This module names those parts (the traits and the [`Machine`]
//! that holds them) and implements none of them: the real ones are in
//! [`system`](super::system), [`health`](super::health) and the service
//! managers, put together by [`substrate`](super::substrate) for `main`;
//! tests and the local model substitute each part.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use crate::workload::archive::ExtractLimits;
use crate::workload::fetch::DownloadOptions;
use crate::workload::service::ServiceManager;

/// An external program to run to completion (apt-get, uv, pip, make, ...).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandSpec {
    pub program: String,
    pub args: Vec<String>,
    /// Variables set for the program, on top of a minimal environment
    /// (PATH, LANG; see `system::SystemRunner`).
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    /// Run as this system user instead of root.
    pub user: Option<String>,
    /// Kill the program after this long.
    pub timeout: Option<Duration>,
    /// The environment holds secrets: a recorder must not keep its values.
    pub env_is_secret: bool,
}

impl CommandSpec {
    pub fn new(program: impl Into<String>) -> Self {
        CommandSpec {
            program: program.into(),
            ..Default::default()
        }
    }
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }
    pub fn as_user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }
    /// The command line as a person would type it (for messages; env not shown).
    pub fn display(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .map(crate::workload::text::shell_quote)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandOutput {
    /// The exit code; -1 when killed by a signal or the timeout.
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub timed_out: bool,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.code == 0 && !self.timed_out
    }
    /// The last lines of output on one line (` | ` between them), for an
    /// operator-facing message; credentials in URLs are left out.
    pub fn tail(&self, lines: usize) -> String {
        let text = String::from_utf8_lossy(if self.stderr.is_empty() {
            &self.stdout
        } else {
            &self.stderr
        })
        .into_owned();
        let all: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        super::text::without_url_credentials(&all[all.len().saturating_sub(lines)..].join(" | "))
    }
}

/// Runs external programs. The harness records instead of running.
pub trait Runner {
    fn run(&self, cmd: &CommandSpec) -> std::io::Result<CommandOutput>;
    /// Where `program` is on PATH, if anywhere.
    fn which(&self, program: &str) -> Option<PathBuf>;
}

/// What an HTTP GET answered: the status code and the start of the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    pub status: u16,
    pub reason: String,
    pub body: String,
}

/// Asks the running app for a page: the rollout's health gate. A trait so
/// the harness can answer without a real server.
pub trait Probe {
    fn http_get(&self, addr: &str, path: &str, timeout: Duration) -> Result<HttpAnswer, String>;
}

/// Every kill point [`Machine::crash_point`] is called with, in the order a
/// dispatch that installs a build and switches to it reaches them
/// (`after-make` only with `update_make_target`).
pub const CRASH_POINTS: &[&str] = &[
    "after-fetch",
    "after-extract",
    "after-venv",
    "after-requirements",
    "after-make",
    "after-manifest",
    "after-rename",
    "after-store-record",
    "after-env-file",
    "after-symlink-swap",
    "after-ensure",
    "after-health-check",
    "after-rollout-save",
];

/// Which service manager runs gunicorn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::AsRefStr)]
#[strum(serialize_all = "lowercase")]
pub enum ServiceManagerKind {
    /// systemd units (socket-activated), when the machine booted with systemd.
    Systemd,
    /// The charm's own supervisor process, for machines without systemd.
    Direct,
}

/// The substrate: where files go, how programs run, how gunicorn is kept up.
pub struct Machine {
    /// Every absolute path the charm writes is under this root (`/` in production).
    pub root: PathBuf,
    /// The address gunicorn binds (default 0.0.0.0).
    pub bind_address: String,
    pub service_manager: ServiceManagerKind,
    /// Runs gunicorn (systemd or the direct supervisor; a fake in tests).
    pub services: Box<dyn ServiceManager>,
    /// Shared with the systemd service manager, which runs `systemctl`
    /// through it (so a recording runner sees those commands too).
    pub runner: Rc<dyn Runner>,
    /// Asks the app for its index page (health checks).
    pub probe: Box<dyn Probe>,
    /// Timeouts, retries and size limit for downloading builds.
    pub download: DownloadOptions,
    /// Bounds on what a build's archive may unpack to.
    pub extract: ExtractLimits,
    /// Where the charm's own files are (templates, files/, the binary).
    pub charm_dir: PathBuf,
    /// CPU cores, for `workers = 0`.
    pub cpus: usize,
    /// Test-only seam (`WSGI_APP_CRASH_AT`): the named [`Machine::crash_point`]
    /// kills this process with SIGKILL, to prove that a hook killed there
    /// leaves nothing a rerun cannot repair. `None` in production.
    pub crash_at: Option<String>,
    /// The name of the user this process runs as (`USER`, read by `main`):
    /// the app account under a test root when we are not root.
    pub invoking_user: Option<String>,
    /// This very binary, which also runs as the metrics exporter; `None`
    /// where the charm is not a process of its own (the in-memory Juju).
    pub charm_binary: Option<PathBuf>,
}

impl Machine {
    /// A kill point (test-only): when `crash_at` names `point`, the process
    /// dies here at once with SIGKILL, as on a power cut or an OOM kill, with
    /// no destructor, no rollback handler and no store commit running.
    pub fn crash_point(&self, point: &str) {
        debug_assert!(
            CRASH_POINTS.contains(&point),
            "{point} is not in CRASH_POINTS"
        );
        if self.crash_at.as_deref() == Some(point) {
            eprintln!("wsgi-app: WSGI_APP_CRASH_AT={point}: killing myself");
            // SAFETY: kill(2) on our own pid; SIGKILL cannot be handled.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }

    /// An absolute machine path under the root: `path("/etc/x")` is `<root>/etc/x`.
    pub fn path(&self, absolute: impl AsRef<Path>) -> PathBuf {
        let rel = absolute
            .as_ref()
            .strip_prefix("/")
            .unwrap_or(absolute.as_ref());
        self.root.join(rel)
    }

    /// The address this machine reaches its own services on: gunicorn's
    /// bind address, or loopback when gunicorn binds every address.
    pub fn local_host(&self) -> &str {
        match self.bind_address.as_str() {
            "0.0.0.0" | "" => "127.0.0.1",
            "::" => "::1",
            other => other,
        }
    }

    /// `host:port` on [`Self::local_host`] (IPv6 in brackets).
    pub fn local_address(&self, port: u16) -> String {
        let host = self.local_host();
        if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    }

    /// Whether the charm runs against the real machine (root `/`).
    pub fn is_real_root(&self) -> bool {
        self.root == Path::new("/")
    }
}
