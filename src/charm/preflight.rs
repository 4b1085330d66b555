//! Judging a build before it takes traffic.
//!
//! The build's gunicorn master is started on a unix socket in a private
//! directory (no client can reach it), with one worker, as the app user and
//! with the app's environment. Once that worker has imported the
//! application, the index page is asked for until it answers as the nagios
//! options say ([`HealthCriteria`]) [`PASSES_NEEDED`] times in a row, within
//! [`ANSWER_WINDOW`]. Then the master is stopped and the caller may start
//! the build for real. Both service managers use this one judgement, so a
//! build that fails it never receives a request on either.
//!
//! Invariants: the pre-flight master and its workers are gone when
//! [`judge`] returns, whatever happened (a guard kills their process group);
//! environment values go to gunicorn only, never into a message.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::charm::health::{self, HttpTarget};
use crate::charm::service::{
    app_ids, gunicorn_state_dir, last_lines, prepare_dirs, python_str, read_app_env, venv_python,
    write_atomic, ServiceError, ServiceSpec, IMPORT_TIMEOUT, SYSTEM_PATH,
};

/// What the index page must answer: the `nagios_*` options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCriteria {
    pub path: String,
    pub expected_status: u16,
    pub expected_content: String,
}

/// Consecutive good answers a build must give before it takes traffic.
pub const PASSES_NEEDED: u32 = 3;
/// How long, once a worker has imported the app, the build has to give
/// them. An app that hangs uses it up on its first request.
pub const ANSWER_WINDOW: Duration = Duration::from_secs(5);
/// The longest a single request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);
/// How much of a wrong answer's body a message quotes.
const BODY_QUOTE_CHARS: usize = 80;

/// Start the build behind `spec.current_dir` privately and judge it.
/// `Ok` holds a one-line report; [`ServiceError::StartFailed`] means no
/// worker imported the app, [`ServiceError::Unhealthy`] that it answered
/// wrongly (or not at all).
pub fn judge(spec: &ServiceSpec, criteria: &HealthCriteria) -> Result<String, ServiceError> {
    spec.validate()?;
    prepare_dirs(spec)?;
    let build_dir = std::fs::canonicalize(&spec.current_dir).map_err(|e| {
        ServiceError::Other(format!(
            "{} does not lead to a build: {e}",
            spec.current_dir.display()
        ))
    })?;
    let dir = tempfile::Builder::new()
        .prefix("preflight-")
        .tempdir_in(gunicorn_state_dir(&spec.run_dir))
        .map_err(|e| {
            ServiceError::Other(format!(
                "creating a pre-flight directory in {}: {e}",
                gunicorn_state_dir(&spec.run_dir).display()
            ))
        })?;
    let (uid, gid) = app_ids(spec)?;
    if crate::charm::users::is_root() {
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
            .map_err(|e| ServiceError::Other(format!("{}: {e}", dir.path().display())))?;
    }
    let files = PreflightFiles::in_dir(dir.path());
    let master = start(spec, &build_dir, &files, (uid, gid))?;
    let started = Instant::now();
    // Held until judged: dropping it stops the pre-flight master.
    let _master = wait_for_import(spec, master, &files)?;
    let imported_in = started.elapsed();
    let report = ask_until_judged(criteria, &files)?;
    Ok(format!(
        "{report}; imported in {:.1} s",
        imported_in.as_secs_f64()
    ))
}

/// The files of one pre-flight, all in its private directory.
struct PreflightFiles {
    config: PathBuf,
    socket: PathBuf,
    ready: PathBuf,
    output: PathBuf,
}

impl PreflightFiles {
    fn in_dir(dir: &Path) -> Self {
        PreflightFiles {
            config: dir.join("preflight.conf.py"),
            socket: dir.join("g.sock"),
            ready: dir.join("ready"),
            output: dir.join("gunicorn.log"),
        }
    }

    /// gunicorn's own last lines (tracebacks of a failed import).
    fn output_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.output).unwrap_or_default();
        last_lines(&text, 20)
    }
}

/// The pre-flight master; its process group is killed when dropped.
struct PreflightMaster {
    child: Child,
}

impl Drop for PreflightMaster {
    fn drop(&mut self) {
        let group = self.child.id() as i32;
        // SAFETY: signals to the process group of our own child.
        unsafe { libc::kill(-group, libc::SIGTERM) };
        let patience = Instant::now() + Duration::from_secs(2);
        while Instant::now() < patience {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // SAFETY: as above; whatever is left of the group goes now.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

fn preflight_config(ready: &Path) -> String {
    format!(
        r#"# Generated by the wsgi-app charm for a pre-flight. Do not edit.
import pathlib

# Nothing to control: the pre-flight lives for seconds.
control_socket_disable = True


def post_worker_init(worker):
    # The application imported in this worker.
    pathlib.Path({ready}).touch()
"#,
        ready = python_str(&ready.display().to_string())
    )
}

fn start(
    spec: &ServiceSpec,
    build_dir: &Path,
    files: &PreflightFiles,
    (uid, gid): (u32, u32),
) -> Result<PreflightMaster, ServiceError> {
    let python = venv_python(build_dir);
    let code = build_dir.join("code");
    write_atomic(
        &files.config,
        preflight_config(&files.ready).as_bytes(),
        0o644,
    )
    .map_err(|e| ServiceError::Other(format!("{}: {e}", files.config.display())))?;
    let output = std::fs::File::create(&files.output)
        .map_err(|e| ServiceError::Other(format!("{}: {e}", files.output.display())))?;
    let env = read_app_env(&spec.env_file).map_err(ServiceError::Other)?;
    let mut command = std::process::Command::new(&python);
    command
        .args(["-m", "gunicorn", "--config"])
        .arg(&files.config)
        .arg("--bind")
        .arg(format!("unix:{}", files.socket.display()))
        .arg("--chdir")
        .arg(&code)
        .args(["--workers", "1", "--graceful-timeout", "1"])
        .args(["--error-logfile", "-"])
        .arg(&spec.wsgi_application)
        .current_dir(&code)
        .env_clear()
        .env(
            "PATH",
            format!("{}:{SYSTEM_PATH}", build_dir.join("venv/bin").display()),
        )
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(output.try_clone()?)
        .stderr(output);
    if let Some(home) = crate::charm::users::home_of(uid) {
        command.env("HOME", home);
    }
    command.envs(env);
    {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
        if crate::charm::users::is_root() {
            command.uid(uid).gid(gid);
        }
    }
    let child = command
        .spawn()
        .map_err(|e| ServiceError::StartFailed(format!("cannot run {}: {e}", python.display())))?;
    Ok(PreflightMaster { child })
}

/// Wait until the worker has imported the app (or the master gave up).
fn wait_for_import(
    spec: &ServiceSpec,
    mut master: PreflightMaster,
    files: &PreflightFiles,
) -> Result<PreflightMaster, ServiceError> {
    let started = Instant::now();
    loop {
        if files.ready.exists() {
            return Ok(master);
        }
        if let Ok(Some(status)) = master.child.try_wait() {
            return Err(ServiceError::StartFailed(format!(
                "the pre-flight master exited ({status}) before a worker imported {}:\n{}",
                spec.wsgi_application,
                files.output_tail()
            )));
        }
        if started.elapsed() > IMPORT_TIMEOUT {
            return Err(ServiceError::StartFailed(format!(
                "no worker imported {} within {} s:\n{}",
                spec.wsgi_application,
                IMPORT_TIMEOUT.as_secs(),
                files.output_tail()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Ask for the index page until [`PASSES_NEEDED`] good answers in a row, or
/// until [`ANSWER_WINDOW`] is used up.
fn ask_until_judged(
    criteria: &HealthCriteria,
    files: &PreflightFiles,
) -> Result<String, ServiceError> {
    let target = HttpTarget::Unix(files.socket.clone());
    let path = &criteria.path;
    let deadline = Instant::now() + ANSWER_WINDOW;
    let mut passes = 0;
    loop {
        let asked = Instant::now();
        let verdict = health::http_get_from(&target, path, REQUEST_TIMEOUT)
            .map_err(|e| e.to_string())
            .and_then(|answer| {
                health::judge(
                    &answer,
                    criteria.expected_status,
                    &criteria.expected_content,
                    asked.elapsed(),
                )
                .map_err(|e| quoting_body(&e, &answer.body))
            });
        let last_error = match verdict {
            Ok(report) => {
                passes += 1;
                if passes >= PASSES_NEEDED {
                    return Ok(format!(
                        "GET {path}: HTTP {} in {} ms, {PASSES_NEEDED} times before taking traffic",
                        report.status, report.elapsed_ms
                    ));
                }
                None
            }
            Err(why) => {
                passes = 0;
                Some(why)
            }
        };
        if Instant::now() >= deadline {
            let why = last_error.unwrap_or_else(|| {
                format!(
                    "only {passes} good answers in a row within {} s",
                    ANSWER_WINDOW.as_secs()
                )
            });
            return Err(ServiceError::Unhealthy(format!("GET {path}: {why}")));
        }
        if last_error.is_some() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A wrong answer's message, with the start of the body it came with.
fn quoting_body(error: &health::HealthError, body: &str) -> String {
    let start: String = body.trim().chars().take(BODY_QUOTE_CHARS).collect();
    if start.is_empty() {
        error.to_string()
    } else {
        format!("{error} (body: {start:?})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_marks_the_imported_worker_in_the_private_directory() {
        let text = preflight_config(Path::new("/run/app/gunicorn/preflight-x/ready"));
        assert!(text.contains("def post_worker_init(worker):"), "{text}");
        assert!(
            text.contains(r#"pathlib.Path("/run/app/gunicorn/preflight-x/ready").touch()"#),
            "{text}"
        );
        assert!(text.contains("control_socket_disable = True"), "{text}");
    }

    #[test]
    fn a_wrong_answer_quotes_the_start_of_its_body() {
        let error = health::HealthError::WrongStatus {
            status: 500,
            reason: "Internal Server Error".into(),
            expected: 200,
        };
        let text = quoting_body(&error, &"x".repeat(500));
        assert!(
            text.starts_with("HTTP 500 Internal Server Error, expected 200 (body: \"xxx"),
            "{text}"
        );
        assert!(text.len() < 200, "{text}");
        assert_eq!(
            quoting_body(&error, "  "),
            "HTTP 500 Internal Server Error, expected 200"
        );
    }
}
