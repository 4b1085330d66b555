//! The systemd service manager: its unit files pass `systemd-analyze
//! verify`, and a switch runs the right commands in the right order (a
//! recording runner plays systemctl; the pre-flight runs real gunicorn).

mod service_support;

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::process::Command;
use std::rc::Rc;

use service_support::Layout;
use wsgi_app::charm::machine::{CommandOutput, CommandSpec, Runner, SystemRunner};
use wsgi_app::charm::service::{ServiceChange, ServiceError, ServiceManager, ServiceState};
use wsgi_app::charm::systemd::{service_unit, socket_unit, Systemd};

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
        format!("ExecStart={current}/venv/bin/python -m gunicorn --chdir {current}/code "),
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

/// Plays systemctl and journalctl (recording them); runs everything else
/// (the pre-flight gunicorn) for real.
#[derive(Default)]
struct FakeSystemctl {
    commands: RefCell<Vec<CommandSpec>>,
    active: Cell<bool>,
}

impl FakeSystemctl {
    /// The commands run so far, as command lines with the build's Python
    /// shown as `<python>`, and forgotten.
    fn take(&self) -> Vec<String> {
        self.commands
            .borrow_mut()
            .drain(..)
            .map(|c| {
                if c.program.ends_with("/venv/bin/python") {
                    "<python> (pre-flight)".to_string()
                } else {
                    c.display()
                }
            })
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
fn switch_is_preflight_then_restart_and_a_broken_build_touches_nothing() {
    let layout = Layout::new();
    let root = layout.path().join("root");
    let fake = Rc::new(FakeSystemctl::default());
    let systemd = Systemd::new(root.clone(), fake.clone());
    let spec1 = layout.spec(8080, "r1-fp");
    let name = &spec1.name;

    // First start: pre-flight, units written, reloaded, enabled, started.
    assert_eq!(systemd.ensure(&spec1).unwrap(), ServiceChange::Started);
    let preflight = fake.commands.borrow()[1].clone();
    assert_eq!(
        fake.take(),
        vec![
            format!("systemctl is-active {name}.service"),
            "<python> (pre-flight)".to_string(),
            "systemctl daemon-reload".to_string(),
            format!("systemctl enable --now {name}.socket"),
            format!("systemctl enable {name}.service"),
            format!("systemctl restart {name}.service"),
            format!("systemctl is-active {name}.service"),
        ]
    );
    // The pre-flight: the current build, one worker, a private unix socket,
    // the app's environment marked secret.
    let line = preflight.args.join(" ");
    assert!(line.contains("--bind unix:"), "{line}");
    assert!(line.contains("--workers 1"), "{line}");
    assert!(
        line.contains(&format!("--chdir {}/code", spec1.current_dir.display())),
        "{line}"
    );
    assert!(preflight.env_is_secret);
    assert_eq!(preflight.env, vec![("GREETING".to_string(), String::new())]);

    let unit_dir = root.join("etc/systemd/system");
    let service_file = unit_dir.join(format!("{name}.service"));
    assert!(unit_dir.join(format!("{name}.socket")).is_file());
    assert!(service_file.is_file());
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

    // r2: pre-flight, then a restart (the units did not change: no reload).
    layout.point_current_at("r2");
    let spec2 = layout.spec(8080, "r2-fp");
    assert_eq!(systemd.ensure(&spec2).unwrap(), ServiceChange::Replaced);
    assert_eq!(
        fake.take(),
        vec![
            format!("systemctl is-active {name}.service"),
            "<python> (pre-flight)".to_string(),
            format!("systemctl enable --now {name}.socket"),
            format!("systemctl enable {name}.service"),
            format!("systemctl restart {name}.service"),
            format!("systemctl is-active {name}.service"),
        ]
    );

    // Broken r3 on a new port: the pre-flight fails with the app's error,
    // and neither the units nor the service are touched.
    let units_before = std::fs::read_to_string(&service_file).unwrap();
    layout.point_current_at("r3");
    let mut spec3 = layout.spec(8081, "r3-fp");
    spec3.workers = 4;
    match systemd.ensure(&spec3) {
        Err(ServiceError::StartFailed(message)) => {
            assert!(message.contains("r3 is broken at import"), "{message}");
        }
        other => panic!("expected StartFailed, got {other:?}"),
    }
    assert_eq!(
        fake.take(),
        vec![
            format!("systemctl is-active {name}.service"),
            "<python> (pre-flight)".to_string(),
        ]
    );
    assert_eq!(
        std::fs::read_to_string(&service_file).unwrap(),
        units_before
    );
    assert_eq!(
        systemd.state(&spec2).unwrap(),
        ServiceState::Running {
            fingerprint: "r2-fp".into()
        }
    );
    fake.take();

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
