//! Keeping gunicorn running, and moving it between builds without failing
//! a request.
//!
//! The charm describes what should run as a [`ServiceSpec`] and calls
//! [`ServiceManager::ensure`]; two managers implement it:
//!
//! - [`crate::workload::systemd::Systemd`] (machines booted with systemd): a
//!   socket unit holds the listening socket, gunicorn runs on it in one of
//!   two slot units, and a switch starts the new build in the idle slot
//!   beside the serving one, then stops the old slot.
//! - [`crate::workload::supervisor::client::DirectSupervisor`] (machines
//!   without systemd, and the local model): the charm's own binary, run as
//!   `wsgi-app supervise <run_dir>`, holds the socket and starts a new
//!   gunicorn master next to the old one, retiring the old only once the
//!   new has imported the application.
//!
//! Invariants both keep: the listening socket outlives every gunicorn master
//! (so a switch queues requests instead of refusing them), and a build that
//! cannot start never replaces one that serves. Environment values are read
//! here but never logged or put in error messages: they hold secrets.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Everything the running gunicorn master depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The application's environment file (see `envvars`).
    pub env_file: PathBuf,
    pub user: String,
    pub group: String,
    pub log_dir: PathBuf,
    /// Pidfiles, control socket, readiness markers.
    pub run_dir: PathBuf,
    /// gunicorn's worker model and limits.
    #[serde(default)]
    pub serving: Serving,
    /// The metrics exporter beside gunicorn, and where gunicorn sends
    /// statsd; `None` runs neither.
    #[serde(default)]
    pub metrics: Option<MetricsSpec>,
    /// Changes whenever a new master is needed (build, environment, options).
    pub fingerprint: String,
}

/// The subcommand that makes this binary the metrics exporter
/// (`workload::metrics`).
pub const EXPORTER_SUBCOMMAND: &str = "metrics-exporter";

/// The metrics exporter (`workload::metrics`) beside gunicorn: what it
/// needs to start; a change restarts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsSpec {
    /// The binary to run as `<program> metrics-exporter …`.
    pub program: PathBuf,
    /// Identifies the binary's content (a new charm revision is a new
    /// exporter), so a manager restarts the exporter when it changes.
    pub program_id: String,
    /// `host:port` of `/metrics`.
    pub listen: String,
    /// `host:port` gunicorn sends statsd datagrams to.
    pub statsd: String,
    /// The charm's own metrics ([`CharmMetrics`]), read at each scrape.
    pub charm_metrics: PathBuf,
}

impl MetricsSpec {
    /// The exporter's arguments after the program.
    pub fn args(&self) -> Vec<String> {
        vec![
            EXPORTER_SUBCOMMAND.to_string(),
            "--listen".to_string(),
            self.listen.clone(),
            "--statsd".to_string(),
            self.statsd.clone(),
            "--charm-metrics".to_string(),
            self.charm_metrics.display().to_string(),
        ]
    }
}

/// gunicorn's worker types the charm offers.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    strum::EnumString,
    strum::Display,
    strum::VariantNames,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum WorkerClass {
    /// One request at a time per worker process.
    #[default]
    Sync,
    /// A pool of `threads` threads per worker process.
    Gthread,
    /// Green threads; the build must have gevent installed.
    Gevent,
}

impl WorkerClass {
    /// The gunicorn extra a build needs for this worker class, if any
    /// (`gunicorn[gevent]` brings gevent and what gunicorn's gevent worker
    /// imports besides).
    pub fn needs_extra(self) -> Option<&'static str> {
        match self {
            WorkerClass::Gevent => Some("gevent"),
            WorkerClass::Sync | WorkerClass::Gthread => None,
        }
    }

    /// The module gunicorn loads for this worker class: importing it in a
    /// build's venv tells whether the build can run it.
    pub fn module(self) -> &'static str {
        match self {
            WorkerClass::Sync => "gunicorn.workers.sync",
            WorkerClass::Gthread => "gunicorn.workers.gthread",
            WorkerClass::Gevent => "gunicorn.workers.ggevent",
        }
    }
}

/// How gunicorn serves: its worker model and limits. The defaults are
/// gunicorn's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Serving {
    pub worker_class: WorkerClass,
    /// Threads per worker (gthread).
    pub threads: u32,
    /// Seconds a busy worker may stay silent before it is replaced (0:
    /// never).
    pub timeout: u32,
    /// Seconds an idle keep-alive connection is held open.
    pub keepalive: u32,
    /// Requests after which a worker is replaced (0: never), and the random
    /// extra per worker, so they are not all replaced at once.
    pub max_requests: u32,
    pub max_requests_jitter: u32,
    /// Seconds in-flight requests get when a master is retired, after which
    /// its workers are killed.
    pub graceful_timeout: u32,
}

impl Default for Serving {
    fn default() -> Self {
        Serving {
            worker_class: WorkerClass::Sync,
            threads: 1,
            timeout: 30,
            keepalive: 2,
            max_requests: 0,
            max_requests_jitter: 0,
            graceful_timeout: GRACEFUL_TIMEOUT_SECS as u32,
        }
    }
}

impl Serving {
    /// How long retiring a master may take before it is killed.
    pub fn retire_within(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.graceful_timeout))
    }

    /// gunicorn's command-line options for these settings.
    pub fn args(&self) -> Vec<String> {
        let mut args = self.worker_args();
        for (flag, value) in [
            ("--max-requests", self.max_requests),
            ("--max-requests-jitter", self.max_requests_jitter),
            ("--graceful-timeout", self.graceful_timeout),
        ] {
            args.push(flag.to_string());
            args.push(value.to_string());
        }
        args
    }

    /// The options that shape how a worker runs the app: a pre-flight
    /// judges the build with them (and not with the limits on a master's
    /// life, which a few requests must not trip).
    pub fn worker_args(&self) -> Vec<String> {
        let mut args = vec!["--worker-class".to_string(), self.worker_class.to_string()];
        for (flag, value) in [
            ("--threads", self.threads),
            ("--timeout", self.timeout),
            ("--keep-alive", self.keepalive),
        ] {
            args.push(flag.to_string());
            args.push(value.to_string());
        }
        args
    }
}

impl ServiceSpec {
    /// `host:port` as a client would connect to it (IPv6 in brackets).
    pub fn listen_address(&self) -> String {
        if self.bind_address.contains(':') {
            format!("[{}]:{}", self.bind_address, self.port)
        } else {
            format!("{}:{}", self.bind_address, self.port)
        }
    }

    /// Reject values that would break the files and command lines built
    /// from the spec (a newline in a unit file starts a new directive).
    pub fn validate(&self) -> Result<(), ServiceError> {
        let texts = [
            ("name", self.name.as_str()),
            ("wsgi_application", self.wsgi_application.as_str()),
            ("bind_address", self.bind_address.as_str()),
            ("user", self.user.as_str()),
            ("group", self.group.as_str()),
            ("fingerprint", self.fingerprint.as_str()),
        ];
        let paths = [
            ("current_dir", &self.current_dir),
            ("env_file", &self.env_file),
            ("log_dir", &self.log_dir),
            ("run_dir", &self.run_dir),
        ];
        for (field, text) in texts {
            if text.is_empty() || text.chars().any(char::is_control) {
                return Err(ServiceError::Other(format!(
                    "service {field} {text:?} is empty or has control characters"
                )));
            }
        }
        for (field, path) in paths {
            match path.to_str() {
                Some(text) if path.is_absolute() && !text.chars().any(char::is_control) => {}
                _ => {
                    return Err(ServiceError::Other(format!(
                        "service {field} {path:?} must be an absolute UTF-8 path without control characters"
                    )))
                }
            }
        }
        if !self
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(ServiceError::Other(format!(
                "service name {:?} must be letters, digits, '-', '_' or '.'",
                self.name
            )));
        }
        if self.workers == 0 {
            return Err(ServiceError::Other(
                "gunicorn needs at least 1 worker".into(),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceState {
    Running {
        fingerprint: String,
    },
    Stopped,
    /// Nothing serves: gunicorn failed (or is being restarted after a crash).
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
    /// The new build could not start; whatever served before still serves.
    /// Holds gunicorn's last error lines.
    #[error("gunicorn did not start: {0}")]
    StartFailed(String),
    /// The build started but answered its pre-flight wrongly (or not at
    /// all); it never took traffic. Holds what it answered.
    #[error("{0}")]
    Unhealthy(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

/// What the index page must answer before a build takes traffic (the
/// charm's `nagios_*` options).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCriteria {
    pub path: String,
    pub expected_status: u16,
    pub expected_content: String,
}

/// Runs gunicorn for a [`ServiceSpec`].
pub trait ServiceManager {
    /// Judge the build `spec.current_dir` leads to before it takes any
    /// traffic: start it privately and ask for the index page (the
    /// `preflight` module's judgement). Changes nothing that serves.
    fn preflight(
        &self,
        spec: &ServiceSpec,
        criteria: &HealthCriteria,
    ) -> Result<String, ServiceError>;
    /// Make the service run `spec`: start it when stopped; when it runs
    /// another fingerprint, start a new master and retire the old one only
    /// once the new one is ready (the old keeps serving if the new fails).
    fn ensure(&self, spec: &ServiceSpec) -> Result<ServiceChange, ServiceError>;
    /// Beside a gunicorn that already serves `spec`, run the metrics
    /// exporter `spec.metrics` asks for, or none (`ensure` does the same
    /// as part of a switch). Leaves gunicorn alone.
    fn ensure_metrics(&self, spec: &ServiceSpec) -> Result<(), ServiceError>;
    fn state(&self, spec: &ServiceSpec) -> Result<ServiceState, ServiceError>;
    fn stop(&self, spec: &ServiceSpec) -> Result<(), ServiceError>;
}

/// Seconds gunicorn gives in-flight requests when a master is retired,
/// unless the spec says otherwise (gunicorn's default).
pub const GRACEFUL_TIMEOUT_SECS: u64 = 30;

/// The longest graceful timeout a spec may ask for: waits that cannot see
/// the spec (a supervisor stopping, a client waiting for an answer) are
/// bounded by it.
pub const MAX_GRACEFUL_TIMEOUT_SECS: u64 = 300;

/// How long a new master's first worker may take to import the
/// application (a slow import is judged when ready, not failed early).
pub const IMPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(90);

/// `PATH` for gunicorn after the build's own `venv/bin`.
const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The directory under `run_dir` that gunicorn (running as the app user)
/// may write: readiness markers, control sockets, pre-flight sockets. The
/// run directory itself stays writable by root only, because the root
/// supervisor acts on what it finds there.
pub fn gunicorn_state_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("gunicorn")
}

/// The marker a master's first worker touches once the app imported.
pub fn readiness_marker(run_dir: &Path, master_pid: u32) -> PathBuf {
    gunicorn_state_dir(run_dir).join(format!("ready.{master_pid}"))
}

/// The Python in a build's virtualenv. We run `python -m gunicorn` rather
/// than `venv/bin/gunicorn` because a console script's shebang names the
/// directory the venv was created in, and builds are created in a staging
/// directory and then renamed.
pub fn venv_python(build_dir: &Path) -> PathBuf {
    build_dir.join("venv/bin/python")
}

/// Where a gunicorn master takes its listening socket from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen<'a> {
    /// systemd socket activation: the socket arrives in `LISTEN_FDS` and
    /// gunicorn picks it up itself. Adding `--bind fd://3` as well makes
    /// gunicorn 27 exit with EBADF at start-up (measured under a booted
    /// systemd), so no `--bind` is given.
    SocketActivation,
    /// A `--bind` address: `fd://3` for a descriptor lent without
    /// `LISTEN_FDS`, `unix:<path>`, `host:port`.
    Bind(&'a str),
}

/// The gunicorn command line (after the Python interpreter) for `spec`,
/// serving from `build_dir` (the `current` path, or a build it resolves to).
/// `config` is the generated Python config file, if any. Never contains
/// environment values.
pub fn gunicorn_args(
    spec: &ServiceSpec,
    build_dir: &Path,
    listen: Listen<'_>,
    workers: u32,
    config: Option<&Path>,
) -> Vec<String> {
    let mut args = vec!["-m".to_string(), "gunicorn".to_string()];
    if let Some(config) = config {
        args.push("--config".into());
        args.push(config.display().to_string());
    }
    if let Listen::Bind(address) = listen {
        args.push("--bind".into());
        args.push(address.to_string());
    }
    args.extend([
        "--chdir".to_string(),
        build_dir.join("code").display().to_string(),
        "--workers".to_string(),
        workers.to_string(),
    ]);
    args.extend(spec.serving.args());
    if let Some(metrics) = &spec.metrics {
        args.extend(["--statsd-host".to_string(), metrics.statsd.clone()]);
    }
    args.extend([
        "--access-logfile".to_string(),
        spec.log_dir.join("access.log").display().to_string(),
        "--error-logfile".to_string(),
        spec.log_dir.join("error.log").display().to_string(),
        spec.wsgi_application.clone(),
    ]);
    args
}

/// A gunicorn master for `build_dir` as a process to start: the build's
/// Python, in its code directory, as the app user (`ids`, when we are
/// root), with a clean environment (the venv first on `PATH`, `LANG`, the
/// user's `HOME`) plus the app's own `env`, in a process group of its own
/// (so it and its workers are signalled together), stdin closed. The
/// caller adds gunicorn's arguments, the listener and where output goes.
pub(crate) fn gunicorn_master(
    build_dir: &Path,
    env: Vec<(String, String)>,
    (uid, gid): (u32, u32),
) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new(venv_python(build_dir));
    command
        .current_dir(build_dir.join("code"))
        .env_clear()
        .env(
            "PATH",
            format!("{}:{SYSTEM_PATH}", build_dir.join("venv/bin").display()),
        )
        .env("LANG", "C.UTF-8")
        .stdin(std::process::Stdio::null());
    if let Some(home) = crate::workload::users::home_of(uid) {
        command.env("HOME", home);
    }
    command.envs(env).process_group(0);
    if crate::workload::users::is_root() {
        command.uid(uid).gid(gid);
    }
    command
}

/// For the serving gunicorn's config (systemd's and the supervisor's, not
/// the pre-flight's): each worker reports its requests in flight as a
/// statsd gauge of its own (`wsgi_app.worker.busy.<pid>`, see
/// `metrics::statsd`) when it starts and around each request, through
/// gunicorn's statsd logger, which exists only with `--statsd-host`. A
/// gauge per worker rather than one shared counter: a worker killed
/// mid-request cannot leave the total wrong, the exporter just forgets it.
/// The config calls `_report_busy(worker, 0)` from its `post_worker_init`.
pub(crate) const BUSY_HOOKS: &str = r#"
import threading as _threading

_busy = 0
_busy_lock = _threading.Lock()


def _report_busy(worker, change):
    global _busy
    with _busy_lock:
        _busy += change
        busy = _busy
    gauge = getattr(worker.log, "gauge", None)
    if gauge is not None:
        gauge("wsgi_app.worker.busy.%d" % os.getpid(), busy)


def pre_request(worker, req):
    _report_busy(worker, 1)


def post_request(worker, req, environ, resp):
    _report_busy(worker, -1)
"#;

/// A Python string literal for `text` (JSON's string syntax is a subset).
pub(crate) fn python_str(text: &str) -> String {
    serde_json::to_string(text).expect("a string always serializes")
}

/// The application's environment, from `spec.env_file`, read with the
/// same rules systemd's `EnvironmentFile=` uses. A missing file is an
/// empty environment (the charm writes it before starting the service).
pub(crate) fn read_app_env(path: &Path) -> Result<Vec<(String, String)>, String> {
    match crate::workload::envvars::read_env_file(path) {
        Ok(vars) => Ok(vars),
        Err(crate::workload::envvars::EnvFileError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            Ok(Vec::new())
        }
        // Errors name variables and lines, never values.
        Err(e) => Err(e.to_string()),
    }
}

/// Create the directories gunicorn writes (logs, its state directory) and,
/// when we are root, hand them to the app user.
pub(crate) fn prepare_dirs(spec: &ServiceSpec) -> Result<(), ServiceError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(&spec.run_dir)?;
    let state_dir = gunicorn_state_dir(&spec.run_dir);
    for dir in [&spec.log_dir, &state_dir] {
        std::fs::create_dir_all(dir)?;
        if crate::workload::users::is_root() {
            let (uid, gid) = app_ids(spec)?;
            std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
        }
    }
    std::fs::set_permissions(&state_dir, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// The uid and gid gunicorn runs as: the spec's user and group when we are
/// root, else our own (an unprivileged supervisor cannot switch users).
pub(crate) fn app_ids(spec: &ServiceSpec) -> Result<(u32, u32), ServiceError> {
    use crate::workload::users;
    if !users::is_root() {
        // SAFETY: getuid/getgid cannot fail.
        return Ok(unsafe { (libc::getuid(), libc::getgid()) });
    }
    let account = users::lookup(&spec.user)?;
    let gid = users::group_id(&spec.group)
        .ok_or_else(|| ServiceError::Other(format!("no system group {:?}", spec.group)))?;
    Ok((account.uid, gid))
}

/// Write `contents` to `path` atomically (temporary file, then rename), so a
/// reader sees the old file or the new one, never half of one.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(contents)?;
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Write `contents` to `path` (atomically, directories made) unless it
/// already holds exactly them; whether it wrote. Files rewritten on every
/// hook cost a rename and an fsync only when they change.
pub(crate) fn write_if_changed(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<bool> {
    use crate::workload::text::at_path;
    if std::fs::read(path).is_ok_and(|old| old == contents) {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(at_path(dir))?;
    }
    write_atomic(path, contents, mode).map_err(at_path(path))?;
    Ok(true)
}

/// The last `lines` non-blank lines of `text`.
pub(crate) fn last_lines(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The logrotate configuration for the service's log directory. Uses
/// `copytruncate`: gunicorn opens its logs in append mode, so truncating in
/// place is safe and works the same under systemd and the direct supervisor
/// (no master pid to signal).
pub fn logrotate_config(spec: &ServiceSpec) -> Result<String, ServiceError> {
    use askama::Template;
    #[derive(askama::Template)]
    #[template(path = "logrotate.conf", escape = "none")]
    struct Logrotate<'a> {
        log_dir: &'a str,
        user: &'a str,
        group: &'a str,
    }
    Logrotate {
        log_dir: spec.log_dir.to_str().unwrap_or_default(),
        user: &spec.user,
        group: &spec.group,
    }
    .render()
    .map_err(|e| ServiceError::Other(format!("rendering logrotate.conf: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_env_is_read_as_systemd_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env");
        assert_eq!(
            read_app_env(&path).unwrap(),
            Vec::new(),
            "missing means empty"
        );
        std::fs::write(&path, "A=\"two words\"\nB='x$y'\n").unwrap();
        assert_eq!(
            read_app_env(&path).unwrap(),
            vec![("A".into(), "two words".into()), ("B".into(), "x$y".into())]
        );
        // systemd drops an assignment with an invalid name, and so do we.
        std::fs::write(&path, "TOKEN=ok\n1BAD=x\n").unwrap();
        assert_eq!(
            read_app_env(&path).unwrap(),
            vec![("TOKEN".into(), "ok".into())]
        );
        std::fs::write(&path, b"SECRET=hunter2\xff\n").unwrap();
        let err = read_app_env(&path).unwrap_err();
        assert!(err.contains("line 1") && !err.contains("hunter2"), "{err}");
    }

    fn sample() -> ServiceSpec {
        ServiceSpec {
            name: "wsgi-app".into(),
            current_dir: "/srv/wsgi-app/current".into(),
            wsgi_application: "example_wsgi:application".into(),
            bind_address: "0.0.0.0".into(),
            port: 8080,
            workers: 2,
            env_file: "/etc/wsgi-app/env".into(),
            user: "wsgi-app".into(),
            group: "wsgi-app".into(),
            log_dir: "/var/log/wsgi-app".into(),
            run_dir: "/run/wsgi-app".into(),
            serving: Serving::default(),
            metrics: None,
            fingerprint: "r1-abc".into(),
        }
    }

    #[test]
    fn validation_rejects_what_would_inject_directives() {
        assert!(sample().validate().is_ok());
        let mut spec = sample();
        spec.wsgi_application = "app:application\nExecStartPre=/bin/evil".into();
        assert!(spec.validate().is_err());
        let mut spec = sample();
        spec.log_dir = "relative/logs".into();
        assert!(spec.validate().is_err());
        let mut spec = sample();
        spec.name = "a/b".into();
        assert!(spec.validate().is_err());
    }

    #[test]
    fn listen_address_brackets_ipv6() {
        let mut spec = sample();
        assert_eq!(spec.listen_address(), "0.0.0.0:8080");
        spec.bind_address = "::1".into();
        assert_eq!(spec.listen_address(), "[::1]:8080");
    }

    #[test]
    fn gunicorn_args_follow_the_build_and_log_to_the_log_dir() {
        let spec = sample();
        let args = gunicorn_args(
            &spec,
            Path::new("/srv/wsgi-app/current"),
            Listen::Bind("fd://3"),
            2,
            None,
        );
        let line = args.join(" ");
        assert!(line.starts_with("-m gunicorn --bind fd://3 --chdir /srv/wsgi-app/current/code"));
        assert!(line.contains("--error-logfile /var/log/wsgi-app/error.log"));
        assert!(line.ends_with("example_wsgi:application"));
        let activated = gunicorn_args(
            &spec,
            Path::new("/srv/wsgi-app/current"),
            Listen::SocketActivation,
            2,
            None,
        );
        assert!(!activated.iter().any(|a| a == "--bind"), "{activated:?}");
    }

    #[test]
    fn logrotate_rotates_the_log_dir_as_the_app_user() {
        let text = logrotate_config(&sample()).unwrap();
        assert!(text.contains("/var/log/wsgi-app/*.log {"), "{text}");
        assert!(text.contains("su wsgi-app wsgi-app"), "{text}");
        assert!(text.contains("copytruncate"), "{text}");
    }
}
