//! The machine the charm acts on: a filesystem root, a runner for external
//! programs, and a service manager for gunicorn. Built once in `main` from
//! the environment (the only place the charm reads it); tests and the local
//! model substitute each part.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::Duration;

use crate::workload::service::ServiceManager;

/// An external program to run to completion (apt-get, uv, pip, make, ...).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandSpec {
    pub program: String,
    pub args: Vec<String>,
    /// Variables set for the program, on top of a minimal inherited
    /// environment (PATH, LANG); see [`SystemRunner`].
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

/// Runs programs for real, with a clean environment: PATH and LANG from the
/// hook, the model's proxy settings, plus what the command sets. Hook
/// variables (JUJU_*) never leak into the application's tools.
#[derive(Debug, Default, Clone)]
pub struct SystemRunner {
    /// Given to every program as `http_proxy` and friends.
    pub proxy: ModelProxy,
}

/// One proxy setting from the hook environment, with where it came from so
/// that a message can say what to fix.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxySetting {
    /// The hook environment variable (`JUJU_CHARM_HTTP_PROXY`, `http_proxy`).
    pub variable: &'static str,
    /// The model config key an operator sets (`juju-http-proxy`, `http-proxy`).
    pub model_key: &'static str,
    /// As Juju gave it: may hold `user:password@`, so never show it as is.
    pub value: String,
}

impl ProxySetting {
    /// The value as a message may show it: no userinfo, query or fragment.
    pub fn redacted(&self) -> String {
        crate::workload::fetch::redact_url_text(&self.value)
    }
}

impl std::fmt::Debug for ProxySetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={:?}", self.variable, self.redacted())
    }
}

/// The model's proxy settings, read once from the hook environment by
/// [`ModelProxy::from_hook_env`] and used by everything that goes out to
/// the network: the build download and the installers (uv, pip, apt).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelProxy {
    pub http: Option<ProxySetting>,
    pub https: Option<ProxySetting>,
    pub no_proxy: Option<ProxySetting>,
}

/// (hook variable, model config key, installer variable) per setting.
type ProxyVariables = [(&'static str, &'static str, &'static str); 3];

/// What Juju gives a hook for the model's `juju-*-proxy` settings.
const JUJU_PROXY_VARIABLES: ProxyVariables = [
    ("JUJU_CHARM_HTTP_PROXY", "juju-http-proxy", "http_proxy"),
    ("JUJU_CHARM_HTTPS_PROXY", "juju-https-proxy", "https_proxy"),
    ("JUJU_CHARM_NO_PROXY", "juju-no-proxy", "no_proxy"),
];

/// What Juju gives a hook for the legacy `http-proxy`, `https-proxy` and
/// `no-proxy` settings (it also writes them machine-wide).
const LEGACY_PROXY_VARIABLES: ProxyVariables = [
    ("http_proxy", "http-proxy", "http_proxy"),
    ("https_proxy", "https-proxy", "https_proxy"),
    ("no_proxy", "no-proxy", "no_proxy"),
];

impl ModelProxy {
    /// The settings in a hook environment: Juju's `JUJU_CHARM_*_PROXY` when
    /// it gives an HTTP or HTTPS proxy there; otherwise the legacy
    /// `http_proxy`/`HTTP_PROXY`... variables, which Juju sets instead for
    /// the legacy model settings (it refuses a model with both kinds).
    /// `juju-no-proxy` has a default, so `JUJU_CHARM_NO_PROXY` alone does not
    /// decide. Empty values count as unset.
    pub fn from_hook_env(read: impl Fn(&str) -> Option<String>) -> ModelProxy {
        let setting = |(variable, model_key, _): (&'static str, &'static str, &'static str)| {
            let value = read(variable)
                .or_else(|| {
                    // Legacy tools read either case; Juju sets both.
                    let upper = variable.to_ascii_uppercase();
                    (upper != variable).then(|| read(&upper)).flatten()
                })
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())?;
            Some(ProxySetting {
                variable,
                model_key,
                value,
            })
        };
        let read_all = |variables: ProxyVariables| {
            let [http, https, no_proxy] = variables.map(setting);
            ModelProxy {
                http,
                https,
                no_proxy,
            }
        };
        let juju = read_all(JUJU_PROXY_VARIABLES);
        if juju.http.is_some() || juju.https.is_some() {
            juju
        } else {
            read_all(LEGACY_PROXY_VARIABLES)
        }
    }

    /// The variables installers understand (`http_proxy` and `HTTP_PROXY`,
    /// ...), for their environment only: the values may hold credentials.
    pub fn installer_env(&self) -> Vec<(String, String)> {
        let mut env = Vec::new();
        let settings = [&self.http, &self.https, &self.no_proxy];
        for (setting, (_, _, name)) in settings.into_iter().zip(JUJU_PROXY_VARIABLES) {
            if let Some(setting) = setting {
                env.push((name.to_string(), setting.value.clone()));
                env.push((name.to_ascii_uppercase(), setting.value.clone()));
            }
        }
        env
    }
}

impl SystemRunner {
    fn base_path() -> OsString {
        std::env::var_os("PATH").unwrap_or_else(|| {
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()
        })
    }
}

impl Runner for SystemRunner {
    fn run(&self, spec: &CommandSpec) -> std::io::Result<CommandOutput> {
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .env_clear()
            .env("PATH", Self::base_path())
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in self.proxy.installer_env().iter().chain(&spec.env) {
            cmd.env(k, v);
        }
        if let Some(dir) = &spec.cwd {
            cmd.current_dir(dir);
        }
        if let Some(user) = &spec.user {
            let account = crate::workload::users::lookup(user)?;
            use std::os::unix::process::CommandExt;
            cmd.uid(account.uid).gid(account.gid);
            cmd.env("HOME", &account.home);
        }
        run_with_timeout(cmd, spec.timeout)
    }

    fn which(&self, program: &str) -> Option<PathBuf> {
        std::env::split_paths(&Self::base_path())
            .map(|dir| dir.join(program))
            .find(|p| is_executable(p))
    }
}

pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Run `cmd`, killing its whole process group after `timeout`.
pub fn run_with_timeout(
    mut cmd: Command,
    timeout: Option<Duration>,
) -> std::io::Result<CommandOutput> {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    let mut child = cmd.spawn()?;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    // Read both pipes on threads so a chatty program cannot fill one and stall.
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let started = std::time::Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if timeout.is_some_and(|t| started.elapsed() > t) {
            // SAFETY: kill(2) on the child's own process group.
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
            timed_out = true;
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Ok(CommandOutput {
        code: status.code().unwrap_or(-1),
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
        timed_out,
    })
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
    pub download: crate::workload::fetch::DownloadOptions,
    /// Bounds on what a build's archive may unpack to.
    pub extract: crate::workload::archive::ExtractLimits,
    /// Where the charm's own files are (templates, files/, the binary).
    pub charm_dir: PathBuf,
    /// CPU cores, for `workers = 0`.
    pub cpus: usize,
    /// Test-only seam (`WSGI_APP_CRASH_AT`): the named [`Machine::crash_point`]
    /// kills this process with SIGKILL, to prove that a hook killed there
    /// leaves nothing a rerun cannot repair. `None` in production.
    pub crash_at: Option<String>,
}

impl Machine {
    /// Build the machine from the process environment: `WSGI_APP_ROOT`,
    /// `WSGI_APP_SERVICE_MANAGER`, `WSGI_APP_BIND_ADDRESS`, the test-only
    /// `WSGI_APP_CRASH_AT`, and the model's proxy settings
    /// ([`ModelProxy::from_hook_env`]).
    pub fn from_env(charm_dir: PathBuf) -> Result<Machine, String> {
        let root = std::env::var_os("WSGI_APP_ROOT")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/"));
        let service_manager = match std::env::var("WSGI_APP_SERVICE_MANAGER") {
            Ok(kind) if !kind.is_empty() => kind.parse().map_err(|_| {
                format!("WSGI_APP_SERVICE_MANAGER={kind:?}: expected \"systemd\" or \"direct\"")
            })?,
            _ if Path::new("/run/systemd/system").is_dir() => ServiceManagerKind::Systemd,
            _ => ServiceManagerKind::Direct,
        };
        let bind_address = std::env::var("WSGI_APP_BIND_ADDRESS")
            .ok()
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| "0.0.0.0".to_string());
        let proxy = ModelProxy::from_hook_env(|var| std::env::var(var).ok());
        let runner: Rc<dyn Runner> = Rc::new(SystemRunner {
            proxy: proxy.clone(),
        });
        Ok(Machine {
            services: crate::workload::service::manager(service_manager, &root, runner.clone()),
            root,
            bind_address,
            service_manager,
            runner,
            probe: Box::new(crate::workload::health::TcpProbe),
            download: crate::workload::fetch::DownloadOptions {
                proxy,
                ..Default::default()
            },
            extract: crate::workload::archive::ExtractLimits::default(),
            charm_dir,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            crash_at: std::env::var("WSGI_APP_CRASH_AT")
                .ok()
                .filter(|p| !p.is_empty()),
        })
    }

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

    /// Whether the charm runs against the real machine (root `/`).
    pub fn is_real_root(&self) -> bool {
        self.root == Path::new("/")
    }
}
