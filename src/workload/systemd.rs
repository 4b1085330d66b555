//! gunicorn under systemd (production machines): a socket unit holds the
//! listening socket, a `Type=notify` service unit runs gunicorn on it.
//!
//! A switch to another build is: the charm's pre-flight
//! ([`crate::workload::preflight`]: the new build judged on a private unix
//! socket), then `systemctl restart <name>.service`. The socket unit keeps
//! listening throughout, so requests queue during the restart and none
//! fails; a build that fails the pre-flight changes nothing at all. The
//! restart returns only once the old master and its workers are gone
//! (systemd waits for the unit's cgroup to empty before starting it
//! again), so the old build answers nothing after a switch.
//!
//! Invariants: every external command goes through the machine's
//! [`Runner`] (tests record them); unit files are only rewritten, and
//! systemd only reloaded, when their text changes; values that reach a unit
//! file are validated ([`ServiceSpec::validate`]) and escaped for systemd
//! (`%` specifiers, `$` variables, quoting).

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use askama::Template;

use crate::workload::machine::{CommandOutput, CommandSpec, Runner};
use crate::workload::service::HealthCriteria;
use crate::workload::service::{
    gunicorn_args, last_lines, logrotate_config, prepare_dirs, venv_python, write_atomic, Listen,
    ServiceChange, ServiceError, ServiceManager, ServiceSpec, ServiceState, GRACEFUL_TIMEOUT_SECS,
};

/// How long a restarted service may take to report active.
const ACTIVE_WAIT: Duration = Duration::from_secs(30);

#[derive(Template)]
#[template(path = "wsgi-app.socket", escape = "none")]
struct SocketUnit<'a> {
    name: &'a str,
    listen: String,
    backlog: u32,
}

#[derive(Template)]
#[template(path = "wsgi-app.service", escape = "none")]
struct ServiceUnit<'a> {
    name: &'a str,
    description: String,
    user: String,
    group: String,
    env_file: String,
    exec_start: String,
    stop_timeout: u64,
    protect_home: &'static str,
}

/// Render `<name>.socket`.
pub fn socket_unit(spec: &ServiceSpec) -> Result<String, ServiceError> {
    spec.validate()?;
    SocketUnit {
        name: &spec.name,
        listen: escape_specifiers(&spec.listen_address()),
        backlog: 2048,
    }
    .render()
    .map_err(|e| ServiceError::Other(format!("rendering {}.socket: {e}", spec.name)))
}

/// Render `<name>.service`.
pub fn service_unit(spec: &ServiceSpec) -> Result<String, ServiceError> {
    spec.validate()?;
    let mut argv = vec![venv_python(&spec.current_dir).display().to_string()];
    argv.extend(gunicorn_args(
        spec,
        &spec.current_dir,
        Listen::SocketActivation,
        spec.workers,
        None,
    ));
    ServiceUnit {
        name: &spec.name,
        description: escape_specifiers(&format!(
            "{} (gunicorn serving {})",
            spec.name, spec.wsgi_application
        )),
        user: escape_specifiers(&spec.user),
        group: escape_specifiers(&spec.group),
        env_file: escape_specifiers(&spec.env_file.display().to_string()),
        exec_start: argv
            .iter()
            .map(|a| exec_quote(a))
            .collect::<Vec<_>>()
            .join(" "),
        stop_timeout: GRACEFUL_TIMEOUT_SECS + 5,
        protect_home: protect_home(spec),
    }
    .render()
    .map_err(|e| ServiceError::Other(format!("rendering {}.service: {e}", spec.name)))
}

/// `ProtectHome=` as strict as the spec's paths allow: `yes` hides home
/// directories, `read-only` when the app reads from one, `no` when it must
/// write there.
fn protect_home(spec: &ServiceSpec) -> &'static str {
    let in_home = |p: &Path| {
        ["/home", "/root", "/run/user"]
            .iter()
            .any(|h| p.starts_with(h))
    };
    if in_home(&spec.log_dir) {
        "no"
    } else if in_home(&spec.current_dir) || in_home(&spec.env_file) {
        "read-only"
    } else {
        "yes"
    }
}

/// Escape systemd's `%` specifiers in a unit-file value.
fn escape_specifiers(text: &str) -> String {
    text.replace('%', "%%")
}

/// One word of an `ExecStart=` line: specifiers and `$` escaped, and
/// double-quoted when it holds whitespace, quotes or backslashes.
fn exec_quote(word: &str) -> String {
    let escaped = escape_specifiers(word).replace('$', "$$");
    let needs_quotes = escaped.is_empty()
        || escaped
            .chars()
            .any(|c| c.is_whitespace() || "\"'\\;".contains(c));
    if needs_quotes {
        format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        escaped
    }
}

/// The systemd service manager.
pub struct Systemd {
    root: PathBuf,
    runner: Rc<dyn Runner>,
}

impl Systemd {
    pub fn new(root: PathBuf, runner: Rc<dyn Runner>) -> Self {
        Systemd { root, runner }
    }

    fn under_root(&self, absolute: &str) -> PathBuf {
        self.root.join(absolute.trim_start_matches('/'))
    }

    pub fn unit_path(&self, spec: &ServiceSpec, suffix: &str) -> PathBuf {
        self.under_root("/etc/systemd/system")
            .join(format!("{}.{suffix}", spec.name))
    }

    fn logrotate_path(&self, spec: &ServiceSpec) -> PathBuf {
        self.under_root("/etc/logrotate.d").join(&spec.name)
    }

    /// Where the fingerprint of the running build is kept (systemd cannot
    /// tell us which build a restart picked up). Not under /run: after a
    /// reboot systemd starts the same units on the same `current`, and the
    /// `start` hook that follows must see that nothing needs a restart.
    fn fingerprint_path(&self, spec: &ServiceSpec) -> PathBuf {
        self.under_root(&format!("/var/lib/{}", spec.name))
            .join("systemd.fingerprint")
    }

    fn systemctl(&self, args: &[&str]) -> Result<CommandOutput, ServiceError> {
        let command = CommandSpec::new("systemctl")
            .args(args.iter().copied())
            .timeout(Duration::from_secs(GRACEFUL_TIMEOUT_SECS + 60));
        Ok(self.runner.run(&command)?)
    }

    fn systemctl_ok(&self, args: &[&str]) -> Result<(), ServiceError> {
        let output = self.systemctl(args)?;
        if output.success() {
            Ok(())
        } else {
            Err(ServiceError::Other(format!(
                "systemctl {} failed: {}",
                args.join(" "),
                output.tail(5)
            )))
        }
    }

    /// `systemctl is-active` prints the state word (and exits non-zero
    /// unless it is `active`).
    fn active_state(&self, spec: &ServiceSpec) -> Result<String, ServiceError> {
        let unit = format!("{}.service", spec.name);
        let output = self.systemctl(&["is-active", &unit])?;
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    fn journal_tail(&self, spec: &ServiceSpec) -> String {
        let unit = format!("{}.service", spec.name);
        let command = CommandSpec::new("journalctl")
            .args([
                "--unit",
                &unit,
                "--lines",
                "20",
                "--no-pager",
                "--output",
                "cat",
            ])
            .timeout(Duration::from_secs(10));
        match self.runner.run(&command) {
            Ok(output) => last_lines(&String::from_utf8_lossy(&output.stdout), 20),
            Err(e) => format!("(journalctl: {e})"),
        }
    }

    /// Write `text` to `path` if it differs; whether it did.
    fn write_if_changed(path: &Path, text: &str) -> Result<bool, ServiceError> {
        if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
            return Ok(false);
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        write_atomic(path, text.as_bytes(), 0o644)?;
        Ok(true)
    }
}

impl ServiceManager for Systemd {
    fn preflight(
        &self,
        spec: &ServiceSpec,
        criteria: &HealthCriteria,
    ) -> Result<String, ServiceError> {
        crate::workload::preflight::judge(spec, criteria)
    }

    fn ensure(&self, spec: &ServiceSpec) -> Result<ServiceChange, ServiceError> {
        let socket_text = socket_unit(spec)?;
        let service_text = service_unit(spec)?;
        let socket_path = self.unit_path(spec, "socket");
        let service_path = self.unit_path(spec, "service");
        let units_current = std::fs::read_to_string(&socket_path).is_ok_and(|t| t == socket_text)
            && std::fs::read_to_string(&service_path).is_ok_and(|t| t == service_text);
        let fingerprint = std::fs::read_to_string(self.fingerprint_path(spec)).ok();
        let was_active = self.active_state(spec)? == "active";
        if was_active && units_current && fingerprint.as_deref() == Some(&*spec.fingerprint) {
            return Ok(ServiceChange::Unchanged);
        }

        prepare_dirs(spec)?;

        let mut reload = Self::write_if_changed(&socket_path, &socket_text)?;
        reload |= Self::write_if_changed(&service_path, &service_text)?;
        Self::write_if_changed(&self.logrotate_path(spec), &logrotate_config(spec)?)?;
        if reload {
            self.systemctl_ok(&["daemon-reload"])?;
        }
        let socket_unit = format!("{}.socket", spec.name);
        let service_unit = format!("{}.service", spec.name);
        self.systemctl_ok(&["enable", "--now", &socket_unit])?;
        self.systemctl_ok(&["enable", &service_unit])?;
        // For Type=notify this returns once gunicorn reported READY=1; the
        // socket unit holds the listener meanwhile.
        let restarted = self.systemctl(&["restart", &service_unit])?;

        let started = Instant::now();
        let mut state = self.active_state(spec)?;
        while state != "active" && state != "failed" && started.elapsed() < ACTIVE_WAIT {
            std::thread::sleep(Duration::from_millis(200));
            state = self.active_state(spec)?;
        }
        if state != "active" {
            return Err(ServiceError::StartFailed(format!(
                "{service_unit} is {state} after restart ({}):\n{}",
                restarted.tail(3),
                self.journal_tail(spec)
            )));
        }
        let fingerprint_path = self.fingerprint_path(spec);
        if let Some(dir) = fingerprint_path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        write_atomic(&fingerprint_path, spec.fingerprint.as_bytes(), 0o644)?;
        Ok(if was_active {
            ServiceChange::Replaced
        } else {
            ServiceChange::Started
        })
    }

    fn state(&self, spec: &ServiceSpec) -> Result<ServiceState, ServiceError> {
        spec.validate()?;
        let fingerprint = std::fs::read_to_string(self.fingerprint_path(spec)).unwrap_or_default();
        Ok(match self.active_state(spec)?.as_str() {
            "active" | "reloading" => ServiceState::Running { fingerprint },
            "inactive" | "" => ServiceState::Stopped,
            "failed" => ServiceState::Failed(self.journal_tail(spec)),
            other => ServiceState::Failed(format!("{}.service is {other}", spec.name)),
        })
    }

    fn stop(&self, spec: &ServiceSpec) -> Result<(), ServiceError> {
        spec.validate()?;
        let socket_unit = format!("{}.socket", spec.name);
        let service_unit = format!("{}.service", spec.name);
        // Disabled too, so a reboot does not bring back a stopped service.
        // With no unit file left (remove after stop) there is nothing to
        // stop, and systemctl would refuse to disable what does not exist.
        if self.unit_path(spec, "service").exists() || self.unit_path(spec, "socket").exists() {
            self.systemctl_ok(&["disable", "--now", &service_unit, &socket_unit])?;
        }
        let _ = std::fs::remove_file(self.fingerprint_path(spec));
        // Juju runs stop only when the unit goes: its unit files and log
        // rotation go with it, so the machine keeps no trace of the service.
        let mut removed = false;
        for path in [
            self.unit_path(spec, "service"),
            self.unit_path(spec, "socket"),
            self.logrotate_path(spec),
        ] {
            match std::fs::remove_file(&path) {
                Ok(()) => removed = true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        if removed {
            self.systemctl_ok(&["daemon-reload"])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_words_are_quoted_and_escaped_for_systemd() {
        assert_eq!(
            exec_quote("/srv/app/current/venv/bin/python"),
            "/srv/app/current/venv/bin/python"
        );
        assert_eq!(exec_quote("/srv/my app/code"), "\"/srv/my app/code\"");
        assert_eq!(exec_quote("50%"), "50%%");
        assert_eq!(exec_quote("$HOME"), "$$HOME");
        assert_eq!(exec_quote(r#"a"b"#), r#""a\"b""#);
    }

    #[test]
    fn protect_home_relaxes_only_as_far_as_needed() {
        let mut spec = ServiceSpec {
            name: "app".into(),
            current_dir: "/srv/app/current".into(),
            wsgi_application: "m:a".into(),
            bind_address: "0.0.0.0".into(),
            port: 80,
            workers: 1,
            env_file: "/etc/app/env".into(),
            user: "app".into(),
            group: "app".into(),
            log_dir: "/var/log/app".into(),
            run_dir: "/run/app".into(),
            fingerprint: "f".into(),
        };
        assert_eq!(protect_home(&spec), "yes");
        spec.current_dir = "/home/app/current".into();
        assert_eq!(protect_home(&spec), "read-only");
        spec.log_dir = "/home/app/logs".into();
        assert_eq!(protect_home(&spec), "no");
    }
}
