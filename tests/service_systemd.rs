//! The systemd service manager: its unit files pass `systemd-analyze
//! verify`, and a switch runs the right commands in the right order (a
//! recording runner plays systemctl), and the pre-flight judges real
//! gunicorn builds in private.

mod service_support;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::rc::Rc;

use service_support::Layout;
use wsgi_app::workload::machine::{CommandOutput, CommandSpec, Runner};
use wsgi_app::workload::service::HealthCriteria;
use wsgi_app::workload::service::{ServiceChange, ServiceError, ServiceManager, ServiceState};
use wsgi_app::workload::system::SystemRunner;
use wsgi_app::workload::systemd::{
    anchor_unit, gunicorn_config_path, slot_link, slot_template, socket_unit, Systemd,
};

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
    let anchor = units.join(format!("{}.service", spec.name));
    // Verified as the instance systemd loads from the template.
    let slot = units.join(format!("{}@a.service", spec.name));
    std::fs::write(&socket, socket_unit(&spec).unwrap()).unwrap();
    std::fs::write(&anchor, anchor_unit(&spec).unwrap()).unwrap();
    let service_text = slot_template(&spec).unwrap();
    std::fs::write(&slot, &service_text).unwrap();

    // systemd checks that the slot's python exists, as it will on a unit.
    std::os::unix::fs::symlink("builds/r1", slot_link(&spec, "a")).unwrap();
    verify(&[&socket, &anchor, &slot]).unwrap();

    // What a slot must say, beyond being valid.
    let slot_dir = slot_link(&spec, "%i").display().to_string();
    assert!(slot_dir.ends_with("/slot-%i"), "{slot_dir}");
    for expected in [
        format!("Sockets={}.socket\n", spec.name),
        "Type=notify\n".to_string(),
        // Workers report readiness themselves (see gunicorn_config).
        "NotifyAccess=all\n".to_string(),
        format!(
            "ExecStart={slot_dir}/venv/bin/python -m gunicorn --config {} --chdir {slot_dir}/code ",
            gunicorn_config_path(&spec).display()
        ),
        format!("EnvironmentFile={}\n", spec.env_file.display()),
        format!("RuntimeDirectory={}-gunicorn-%i\n", spec.name),
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
    // The anchor the socket unit activates runs nothing.
    let anchor_text = std::fs::read_to_string(&anchor).unwrap();
    assert!(
        anchor_text.contains("ExecStart=/bin/true\n"),
        "{anchor_text}"
    );
    assert!(!anchor_text.contains("gunicorn --"), "{anchor_text}");
    // gunicorn follows the slot's link itself (--chdir); systemd must not
    // resolve it.
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
    let err = verify(&[&socket, &anchor, &broken]).unwrap_err();
    assert!(err.contains("NoNewPrivilege"), "{err}");
}

/// Plays systemctl and journalctl (recording them, and which units it
/// has started); runs anything else for real.
#[derive(Default)]
struct FakeSystemctl {
    commands: RefCell<Vec<CommandSpec>>,
    active: RefCell<BTreeSet<String>>,
    /// Units whose start fails (a build that never becomes ready).
    failing: RefCell<BTreeSet<String>>,
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
        let output = |code: i32, stdout: String| CommandOutput {
            code,
            stdout: stdout.into_bytes(),
            ..Default::default()
        };
        if cmd.program != "systemctl" {
            return if cmd.program == "journalctl" {
                Ok(output(0, String::new()))
            } else {
                SystemRunner::default().run(cmd)
            };
        }
        let units: Vec<String> = cmd
            .args
            .iter()
            .skip(1)
            .filter(|a| !a.starts_with("--"))
            .cloned()
            .collect();
        let mut active = self.active.borrow_mut();
        match cmd.args[0].as_str() {
            "is-active" => {
                let states: Vec<&str> = units
                    .iter()
                    .map(|u| {
                        if active.contains(u) {
                            "active"
                        } else {
                            "inactive"
                        }
                    })
                    .collect();
                let code = if states.iter().all(|s| *s == "active") {
                    0
                } else {
                    3
                };
                Ok(output(code, states.join("\n") + "\n"))
            }
            "start" | "restart" if self.failing.borrow().contains(&units[0]) => {
                Ok(output(1, String::new()))
            }
            "start" | "restart" => {
                active.extend(units);
                Ok(output(0, String::new()))
            }
            "enable" if cmd.args.iter().any(|a| a == "--now") => {
                active.extend(units);
                Ok(output(0, String::new()))
            }
            "stop" => {
                active.retain(|u| !units.contains(u));
                Ok(output(0, String::new()))
            }
            "disable" if cmd.args.iter().any(|a| a == "--now") => {
                active.retain(|u| !units.contains(u));
                Ok(output(0, String::new()))
            }
            _ => Ok(output(0, String::new())),
        }
    }

    fn which(&self, _program: &str) -> Option<std::path::PathBuf> {
        None
    }
}

#[test]
fn a_switch_starts_the_new_build_beside_the_old_and_then_stops_the_old() {
    let layout = Layout::new();
    let root = layout.path().join("root");
    let fake = Rc::new(FakeSystemctl::default());
    let systemd = Systemd::new(root.clone(), fake.clone());
    let spec1 = layout.spec(8080, "r1-fp");
    let name = &spec1.name;
    let slot = |s: &str| format!("{name}@{s}.service");
    let link_of = |s: &str| std::fs::read_link(slot_link(&spec1, s)).unwrap();

    // First start: units written, reloaded, enabled; r1 in slot a. (The
    // build was judged before, by the charm: `preflight`, tested below.)
    assert_eq!(systemd.ensure(&spec1).unwrap(), ServiceChange::Started);
    assert_eq!(
        fake.take(),
        vec![
            format!("systemctl is-active {} {}", slot("b"), slot("a")),
            "systemctl daemon-reload".to_string(),
            format!("systemctl enable --now {name}.socket"),
            format!("systemctl enable --now {name}.service"),
            format!("systemctl reset-failed {}", slot("a")),
            format!("systemctl start {}", slot("a")),
            format!("systemctl enable {}", slot("a")),
        ]
    );
    assert_eq!(link_of("a"), Path::new("builds/r1"));
    let unit_dir = root.join("etc/systemd/system");
    for file in [".socket", ".service", "@.service"] {
        assert!(unit_dir.join(format!("{name}{file}")).is_file(), "{file}");
    }
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
        vec![format!("systemctl is-active {} {}", slot("a"), slot("b"))]
    );

    // r2: started in slot b while a serves, then a stopped (no reload: the
    // units did not change).
    layout.point_current_at("r2");
    let spec2 = layout.spec(8080, "r2-fp");
    assert_eq!(systemd.ensure(&spec2).unwrap(), ServiceChange::Replaced);
    assert_eq!(
        fake.take(),
        vec![
            format!("systemctl is-active {} {}", slot("a"), slot("b")),
            format!("systemctl enable --now {name}.socket"),
            format!("systemctl enable --now {name}.service"),
            format!("systemctl reset-failed {}", slot("b")),
            format!("systemctl start {}", slot("b")),
            format!("systemctl enable {}", slot("b")),
            format!("systemctl disable --now {}", slot("a")),
        ]
    );
    assert_eq!(link_of("b"), Path::new("builds/r2"));
    assert_eq!(link_of("a"), Path::new("builds/r1"), "a's link left alone");

    // r3 never becomes ready: slot a is stopped again, b keeps serving r2.
    layout.point_current_at("r3");
    let spec3 = layout.spec(8080, "r3-fp");
    fake.failing.borrow_mut().insert(slot("a"));
    let err = systemd.ensure(&spec3).unwrap_err();
    assert!(
        matches!(&err, ServiceError::StartFailed(m) if m.contains(&slot("a"))),
        "{err:?}"
    );
    let commands = fake.take();
    assert_eq!(
        commands[commands.len() - 4..],
        [
            format!("systemctl start {}", slot("a")),
            format!(
                "journalctl --unit {} --lines 20 --no-pager --output cat",
                slot("a")
            ),
            format!("systemctl stop {}", slot("a")),
            format!("systemctl reset-failed {}", slot("a")),
        ]
    );
    assert_eq!(
        systemd.state(&spec2).unwrap(),
        ServiceState::Running {
            fingerprint: "r2-fp".into()
        },
        "r2 still serves"
    );
    fake.take();

    // A switch cut short after the record (both slots running): the next
    // look stops the idle one.
    fake.active.borrow_mut().insert(slot("a"));
    assert_eq!(systemd.ensure(&spec2).unwrap(), ServiceChange::Unchanged);
    assert_eq!(
        fake.take(),
        vec![
            format!("systemctl is-active {} {}", slot("b"), slot("a")),
            format!("systemctl disable --now {}", slot("a")),
        ]
    );

    // Stop: every unit stopped and disabled, the files and links removed.
    systemd.stop(&spec2).unwrap();
    assert_eq!(
        fake.take(),
        vec![
            format!(
                "systemctl disable --now {} {} {name}.service {name}.socket",
                slot("a"),
                slot("b")
            ),
            "systemctl daemon-reload".to_string(),
        ]
    );
    for file in [".socket", ".service", "@.service"] {
        assert!(!unit_dir.join(format!("{name}{file}")).exists(), "{file}");
    }
    assert!(std::fs::symlink_metadata(slot_link(&spec2, "a")).is_err());
    assert!(std::fs::symlink_metadata(slot_link(&spec2, "b")).is_err());
}

#[test]
fn a_unit_from_before_the_slots_serves_until_the_first_slot_is_ready() {
    let layout = Layout::new();
    let root = layout.path().join("root");
    let fake = Rc::new(FakeSystemctl::default());
    let systemd = Systemd::new(root.clone(), fake.clone());
    let spec = layout.spec(8080, "r1-fp");
    let name = &spec.name;
    // The single gunicorn unit an earlier charm wrote, running.
    let unit_dir = root.join("etc/systemd/system");
    std::fs::create_dir_all(&unit_dir).unwrap();
    std::fs::write(
        unit_dir.join(format!("{name}.service")),
        "[Service]\nExecStart=/srv/x/current/venv/bin/python -m gunicorn\n",
    )
    .unwrap();
    fake.active.borrow_mut().insert(format!("{name}.service"));

    assert_eq!(systemd.ensure(&spec).unwrap(), ServiceChange::Replaced);
    let commands = fake.take();
    let position = |c: &str| commands.iter().position(|x| x == c).expect(c);
    let started = position(&format!("systemctl start {name}@a.service"));
    let restarted = position(&format!("systemctl restart {name}.service"));
    assert!(started < restarted, "{commands:#?}");
    assert!(
        !commands.contains(&format!("systemctl enable --now {name}.service")),
        "the old unit is not touched before the slot is ready: {commands:#?}"
    );
    let anchor = std::fs::read_to_string(unit_dir.join(format!("{name}.service"))).unwrap();
    assert_eq!(anchor, anchor_unit(&spec).unwrap());
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
