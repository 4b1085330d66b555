//! The systemd service manager: its unit files pass `systemd-analyze
//! verify`, and a switch runs the right commands in the right order (a
//! recording runner plays systemctl), and the pre-flight judges real
//! gunicorn builds in private.

mod service_support;

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::process::Command;
use std::rc::Rc;

use service_support::Layout;
use wsgi_app::workload::machine::{CommandOutput, CommandSpec, Runner};
use wsgi_app::workload::service::HealthCriteria;
use wsgi_app::workload::service::{ServiceChange, ServiceError, ServiceManager, ServiceState};
use wsgi_app::workload::system::SystemRunner;
use wsgi_app::workload::systemd::{gunicorn_config_path, service_unit, socket_unit, Systemd};

/// Problems `systemd-analyze verify` reports about our unit files (it exits
/// 0 on unknown keys, so its output is read as well).
fn verify(units: &[&Path]) -> Result<(), String> {
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .args(units)
        .env("SYSTEMD_LOG_LEVEL", "info")
        .output()
        .map_err(|e| format!("cannot run systemd-analyze: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let problems: Vec<&str> = text
        .lines()
        .filter(|line| {
            units.iter().any(|unit| {
                let name = unit.file_name().unwrap().to_string_lossy();
                line.contains(&*unit.to_string_lossy()) || line.starts_with(&format!("{name}:"))
            })
        })
        .collect();
    if output.status.success() && problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "exit {:?}:\n{}",
            output.status.code(),
            problems.join("\n")
        ))
    }
}

fn have_systemd_analyze() -> bool {
    Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn rendered_units_pass_systemd_analyze_verify() {
    if !have_systemd_analyze() {
        eprintln!("SKIPPED: systemd-analyze is not installed (apt-get install systemd)");
        return;
    }
    let layout = Layout::new();
    let spec = layout.spec(8080, "r1-fp");
    let units = layout.path().join("units");
    std::fs::create_dir_all(&units).unwrap();
    let socket = units.join(format!("{}.socket", spec.name));
    let service = units.join(format!("{}.service", spec.name));
    std::fs::write(&socket, socket_unit(&spec).unwrap()).unwrap();
    let service_text = service_unit(&spec).unwrap();
    std::fs::write(&service, &service_text).unwrap();

    verify(&[&socket, &service]).unwrap();

    // What the service must say, beyond being valid.
    let current = spec.current_dir.display().to_string();
    for expected in [
        "Type=notify\n".to_string(),
        // Workers report readiness themselves (see gunicorn_config).
        "NotifyAccess=all\n".to_string(),
        format!(
            "ExecStart={current}/venv/bin/python -m gunicorn --config {} --chdir {current}/code ",
            gunicorn_config_path(&spec).display()
        ),
        format!("EnvironmentFile={}\n", spec.env_file.display()),
        "ExecReload=/bin/kill -HUP $MAINPID\n".into(),
        "Restart=on-failure\n".into(),
        "NoNewPrivileges=yes\n".into(),
        format!("Requires={}.socket\n", spec.name),
    ] {
        assert!(
            service_text.contains(&expected),
            "missing {expected:?} in\n{service_text}"
        );
    }
    // gunicorn follows `current` itself (--chdir); systemd must not resolve it.
    assert!(
        !service_text
            .lines()
            .any(|l| l.starts_with("WorkingDirectory=")),
        "{service_text}"
    );

    // The check can fail: a unit with an unknown key does not pass.
    let broken = units.join("broken.service");
    std::fs::write(
        &broken,
        service_text.replace("NoNewPrivileges", "NoNewPrivilege"),
    )
    .unwrap();
    let err = verify(&[&socket, &broken]).unwrap_err();
    assert!(err.contains("NoNewPrivilege"), "{err}");
}

/// Plays systemctl and journalctl (recording them); runs anything else for
/// real.
#[derive(Default)]
struct FakeSystemctl {
    commands: RefCell<Vec<CommandSpec>>,
    active: Cell<bool>,
}

impl FakeSystemctl {
    /// The commands run so far, as command lines, and forgotten.
    fn take(&self) -> Vec<String> {
        self.commands
            .borrow_mut()
            .drain(..)
            .map(|c| c.display())
            .collect()
    }
}

impl Runner for FakeSystemctl {
    fn run(&self, cmd: &CommandSpec) -> std::io::Result<CommandOutput> {
        let mut recorded = cmd.clone();
        if cmd.env_is_secret {
            // Keep names only, as a recorder must.
            for (_, value) in &mut recorded.env {
                value.clear();
            }
        }
        self.commands.borrow_mut().push(recorded);
        let ok = |stdout: &str| CommandOutput {
            code: 0,
            stdout: stdout.as_bytes().to_vec(),
            ..Default::default()
        };
        match (cmd.program.as_str(), cmd.args.first().map(String::as_str)) {
            ("systemctl", Some("is-active")) if self.active.get() => Ok(ok("active\n")),
            ("systemctl", Some("is-active")) => Ok(CommandOutput {
                code: 3,
                stdout: b"inactive\n".to_vec(),
                ..Default::default()
            }),
            ("systemctl", Some("restart")) => {
                self.active.set(true);
                Ok(ok(""))
            }
            ("systemctl", Some("disable")) => {
                self.active.set(false);
                Ok(ok(""))
            }
            ("systemctl", _) | ("journalctl", _) => Ok(ok("")),
            _ => SystemRunner::default().run(cmd),
        }
    }

    fn which(&self, _program: &str) -> Option<std::path::PathBuf> {
        None
    }
}

#[test]
fn a_switch_is_a_restart_while_the_socket_unit_holds_the_listener() {
    let layout = Layout::new();
    let root = layout.path().join("root");
    let fake = Rc::new(FakeSystemctl::default());
    let systemd = Systemd::new(root.clone(), fake.clone());
    let spec1 = layout.spec(8080, "r1-fp");
    let name = &spec1.name;

    // First start: units written, reloaded, enabled, started. (The build
    // was judged before, by the charm: `preflight`, tested below.)
    assert_eq!(systemd.ensure(&spec1).unwrap(), ServiceChange::Started);
    assert_eq!(
        fake.take(),
        vec![
            format!("systemctl is-active {name}.service"),
            "systemctl daemon-reload".to_string(),
            format!("systemctl enable --now {name}.socket"),
            format!("systemctl enable {name}.service"),
            format!("systemctl restart {name}.service"),
            format!("systemctl is-active {name}.service"),
        ]
    );
    let unit_dir = root.join("etc/systemd/system");
    assert!(unit_dir.join(format!("{name}.socket")).is_file());
    assert!(unit_dir.join(format!("{name}.service")).is_file());
    assert!(root.join("etc/logrotate.d").join(name).is_file());
    assert_eq!(
        systemd.state(&spec1).unwrap(),
        ServiceState::Running {
            fingerprint: "r1-fp".into()
        }
    );
    fake.take();

    // Same spec again: one look, nothing done.
    assert_eq!(systemd.ensure(&spec1).unwrap(), ServiceChange::Unchanged);
    assert_eq!(
        fake.take(),
        vec![format!("systemctl is-active {name}.service")]
    );

    // r2: a restart (the units did not change: no reload).
    layout.point_current_at("r2");
    let spec2 = layout.spec(8080, "r2-fp");
    assert_eq!(systemd.ensure(&spec2).unwrap(), ServiceChange::Replaced);
    assert_eq!(
        fake.take(),
        vec![
            format!("systemctl is-active {name}.service"),
            format!("systemctl enable --now {name}.socket"),
            format!("systemctl enable {name}.service"),
            format!("systemctl restart {name}.service"),
            format!("systemctl is-active {name}.service"),
        ]
    );

    // Stop: both units stopped and disabled, their files removed.
    systemd.stop(&spec2).unwrap();
    assert_eq!(
        fake.take(),
        vec![
            format!("systemctl disable --now {name}.service {name}.socket"),
            "systemctl daemon-reload".to_string(),
        ]
    );
    assert!(!systemd.unit_path(&spec2, "service").exists());
    assert!(!systemd.unit_path(&spec2, "socket").exists());
}

#[test]
fn the_preflight_judges_a_build_in_private_and_leaves_nothing_behind() {
    let layout = Layout::new();
    let fake = Rc::new(FakeSystemctl::default());
    let systemd = Systemd::new(layout.path().join("root"), fake.clone());
    let port = service_support::ports::free_port();
    let criteria = HealthCriteria {
        path: "/".into(),
        expected_status: 200,
        expected_content: "It works!".into(),
    };
    let judge = |label: &str| {
        layout.point_current_at(label);
        let spec = layout.spec(port, &format!("{label}-fp"));
        let verdict = systemd.preflight(&spec, &criteria);
        // Private: the port was never bound, and nothing is left running.
        assert!(std::net::TcpStream::connect(spec.listen_address()).is_err());
        // Its private directory (under /tmp, named after the service) is gone.
        let prefix = format!("{}-preflight-", spec.name);
        let leftovers = std::fs::read_dir("/tmp")
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .count();
        assert_eq!(leftovers, 0, "the pre-flight directory is removed");
        verdict
    };

    let report = judge("r1").unwrap();
    assert!(report.contains("GET /: HTTP 200"), "{report}");
    assert!(report.contains("3 times before taking traffic"), "{report}");

    // A unit whose run directory is deep (a local model's, a test root's)
    // still gets a socket path a unix socket can have (at most 108 bytes).
    let mut deep = layout.spec(port, "r1-deep");
    deep.run_dir = layout.path().join("d".repeat(120)).join("run");
    let report = systemd.preflight(&deep, &criteria).unwrap();
    assert!(report.contains("GET /: HTTP 200"), "{report}");

    match judge("r3") {
        Err(ServiceError::StartFailed(message)) => {
            assert!(message.contains("r3 is broken at import"), "{message}");
        }
        other => panic!("expected StartFailed, got {other:?}"),
    }
    match judge("r4") {
        Err(ServiceError::Unhealthy(message)) => {
            assert!(
                message.starts_with(
                    "GET /: HTTP 500 Internal Server Error, expected 200 (body: \"TemplateNotFound"
                ),
                "{message}"
            );
        }
        other => panic!("expected Unhealthy, got {other:?}"),
    }
    // The judgement runs gunicorn itself, not through systemctl.
    assert!(fake.take().is_empty());
    let gunicorns = Command::new("pgrep")
        .args(["-f", &layout.path().display().to_string()])
        .output()
        .unwrap();
    assert!(
        gunicorns.stdout.is_empty(),
        "left running: {}",
        String::from_utf8_lossy(&gunicorns.stdout)
    );
}

#[test]
fn readiness_is_a_worker_that_imported_the_app_not_a_booted_arbiter() {
    let layout = Layout::new();
    let dir = layout.path();
    let notify = std::os::unix::net::UnixDatagram::bind(dir.join("notify")).unwrap();
    notify
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let config = dir.join("gunicorn.conf.py");
    std::fs::write(&config, wsgi_app::workload::systemd::gunicorn_config()).unwrap();
    let python = service_support::test_venv().join("bin/python");
    let mut gunicorn = Command::new(python)
        .args(["-m", "gunicorn", "--config"])
        .arg(&config)
        .arg("--bind")
        .arg(format!("unix:{}", dir.join("g.sock").display()))
        .arg("--chdir")
        .arg(dir.join("builds/r1/code"))
        .args(["--workers", "1", "example_wsgi:application"])
        .env("NOTIFY_SOCKET", dir.join("notify"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut message = [0u8; 512];
    let received = notify.recv(&mut message);
    let _ = gunicorn.kill();
    let _ = gunicorn.wait();
    let message = String::from_utf8_lossy(&message[..received.expect("a READY=1 within 60 s")]);
    // Ours, from the worker; gunicorn's own (sent before any worker
    // exists) says "Gunicorn arbiter booted".
    assert_eq!(message, "READY=1\nSTATUS=a worker imported the application");
}
