//! The production path for real: units on machines booted with systemd.
//!
//! charm-sim's container units (`deploy --machines container`): each unit
//! is a systemd-nspawn machine over a debootstrapped Debian 12 root, the
//! real charm binary runs inside through `dispatch`, and it picks systemd
//! by itself (no `WSGI_APP_ROOT`, no `WSGI_APP_SERVICE_MANAGER`). One
//! scenario, step by step, on two units: deploy → active with the
//! `wsgi-app` systemd units; a switch r1 → r2 (and back) under bounded
//! load with no failed request; SIGKILL of the gunicorn master → systemd
//! restarts it with no hook; a reboot → serving before any hook, and the
//! `start` hook Juju runs afterwards changes nothing; `check_nrpe` from the
//! host → HTTP OK; `logrotate -d` accepts the charm's file; removing the
//! units leaves no unit files, no process of the app user and no listener.
//!
//! The machines need root, systemd-nspawn, nsenter, debootstrap (the root
//! is made on first use and cached) and check_nrpe; `cargo xtask test`
//! installs them. When a machine cannot boot the test fails with
//! charm-sim's reason; it never skips.

mod e2e_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use e2e_support::load::Load;
use e2e_support::{get, Sim};
use harness::sim::container::Machine;
use harness::sim::reaper;

const CHECK_NRPE: &str = "/usr/lib/nagios/plugins/check_nrpe";

/// Header lines charm-sim writes to a unit's hooks.log for each hook run
/// (`=== <time> <unit> hooks/<name> (context ...) ===`).
fn hooks_run(sim: &Sim, unit: &str) -> Vec<String> {
    let log = sim
        .model_dir()
        .join("units")
        .join(unit.replace('/', "-"))
        .join("hooks.log");
    std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("=== ") && l.contains(" hooks/"))
        .map(str::to_string)
        .collect()
}

fn machine(sim: &Sim, n: u32) -> Machine {
    Machine::new(&sim.model_dir(), n)
}

/// A file in unit `n`'s machine, as the host sees it.
fn in_machine(sim: &Sim, n: u32, path: &str) -> PathBuf {
    machine(sim, n).rootfs().join(path.trim_start_matches('/'))
}

/// `charm-sim exec UNIT -- CMD...` (inside the unit's machine): its output.
fn exec(sim: &Sim, unit: &str, cmd: &[&str]) -> (bool, String) {
    let mut args = vec!["exec", unit, "--"];
    args.extend_from_slice(cmd);
    sim.run(&args)
}

/// The slot gunicorn serves from (`wsgi-app@a.service` or `@b`): the one
/// active instance of the template, outside a switch.
fn serving_slot(sim: &Sim, unit: &str) -> String {
    let (ok, out) = exec(
        sim,
        unit,
        &[
            "systemctl",
            "list-units",
            "--state=active",
            "--no-legend",
            "--plain",
            "wsgi-app@*.service",
        ],
    );
    assert!(ok, "systemctl list-units on {unit}: {out}");
    let active: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    if active.len() != 1 {
        let (_, status) = exec(
            sim,
            unit,
            &[
                "systemctl",
                "status",
                "--no-pager",
                "--lines=30",
                "wsgi-app*",
            ],
        );
        panic!("{unit}: not one slot serving: {out:?}\n{status}");
    }
    active[0].to_string()
}

/// The main process of systemd unit `service` in `unit`'s machine ("0"
/// while there is none, e.g. during a restart).
fn main_pid(sim: &Sim, unit: &str, service: &str) -> String {
    let (ok, out) = exec(
        sim,
        unit,
        &[
            "systemctl",
            "show",
            "--property=MainPID",
            "--value",
            service,
        ],
    );
    assert!(ok, "systemctl show on {unit}: {out}");
    out.trim().to_string()
}

/// Unit `n`'s metrics page (the exporter on its machine's own address).
fn metrics(sim: &Sim, n: u32) -> String {
    let addr = format!("{}:9102", sim.unit_address(n));
    let answer = wsgi_app::workload::health::http_get(&addr, "/metrics", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("GET {addr}/metrics: {e}"));
    assert_eq!(answer.status, 200, "{addr}: {}", answer.body);
    answer.body
}

/// The value of the sample line that starts with `series` on a metrics page.
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// Poll `GET /` until it answers 200, for at most `within`.
fn serving_within(addr: &str, within: Duration) -> Result<String, String> {
    let deadline = Instant::now() + within;
    loop {
        match get(addr) {
            Ok(body) => return Ok(body),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Processes in the machine's pid namespace owned by `uid`.
fn processes_of(machine: &Machine, uid: u32) -> Vec<String> {
    let init = machine.init_pid().expect("the machine is running");
    let ns = std::fs::read_link(format!("/proc/{init}/ns/pid")).unwrap();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let path = entry.path();
        if std::fs::read_link(path.join("ns/pid")).ok().as_ref() != Some(&ns) {
            continue;
        }
        let status = std::fs::read_to_string(path.join("status")).unwrap_or_default();
        let owner = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|u| u.parse::<u32>().ok());
        if owner == Some(uid) {
            let cmdline = std::fs::read(path.join("cmdline")).unwrap_or_default();
            found.push(String::from_utf8_lossy(&cmdline).replace('\0', " "));
        }
    }
    found
}

fn unit_files(sim: &Sim, n: u32) -> Vec<(String, String)> {
    ["wsgi-app.socket", "wsgi-app.service", "wsgi-app@.service"]
        .iter()
        .map(|f| {
            let path = in_machine(sim, n, &format!("/etc/systemd/system/{f}"));
            (
                f.to_string(),
                std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display())),
            )
        })
        .collect()
}

#[test]
fn container_units_serve_switch_survive_reboot_and_leave_nothing() {
    let sim = Sim::new("127.0.44");
    let units = ["wsgi-app/0", "wsgi-app/1"];
    let addrs = [sim.unit_url(0), sim.unit_url(1)];

    // 1. Deploy two units on machines booted with systemd.
    let out = sim.ok(&[
        "deploy",
        &sim.charm_dir(),
        "--machines",
        "container",
        "--units",
        "2",
        "--config",
        "build_label=r1",
    ]);
    let status = sim.status_json();
    for (n, unit) in units.iter().enumerate() {
        assert_eq!(sim.workload_status(&status, unit), "active", "{out}");
        assert_eq!(
            sim.workload_message(&status, unit),
            "serving r1 on :8080",
            "{out}"
        );
        let slot = serving_slot(&sim, unit);
        let (ok, active) = exec(
            &sim,
            unit,
            &[
                "systemctl",
                "is-active",
                "wsgi-app.socket",
                "wsgi-app.service",
                &slot,
            ],
        );
        assert!(ok, "{unit}: wsgi-app units not active: {active}");
        assert_eq!(active.split_whitespace().collect::<Vec<_>>(), ["active"; 3]);
        // The charm chose systemd by itself: its units are in the machine,
        // and no direct supervisor runs.
        assert_eq!(slot, "wsgi-app@a.service", "{unit}: the first build's slot");
        assert!(in_machine(&sim, n as u32, "/etc/systemd/system/wsgi-app@.service").is_file());
        assert_eq!(get(&addrs[n]).unwrap(), "It works! Revision 1", "{unit}");
    }

    // 2. Install r2 beside r1, then switch the application (config) and a
    //    unit (action) under a bounded load on both units.
    sim.ok(&["config", "wsgi-app", "current_symlink=r1", "build_label=r2"]);
    for addr in &addrs {
        assert_eq!(get(addr).unwrap(), "It works! Revision 1");
    }
    // The metrics exporter is a unit of its own: the switches leave it be.
    let exporters: Vec<String> = units
        .iter()
        .map(|unit| main_pid(&sim, unit, "wsgi-app-metrics.service"))
        .collect();
    assert!(!exporters.contains(&"0".to_string()), "{exporters:?}");
    let load = Load::start(&addrs, 2);
    std::thread::sleep(Duration::from_millis(300));
    sim.ok(&["config", "wsgi-app", "current_symlink=r2"]);
    for addr in &addrs {
        assert_eq!(get(addr).unwrap(), "It works! Revision 2", "{addr}");
    }
    sim.ok(&["run", "wsgi-app/0", "set-current-symlink", "symlink=r1"]);
    assert_eq!(get(&addrs[0]).unwrap(), "It works! Revision 1");
    sim.ok(&["run", "wsgi-app/0", "set-current-symlink", "symlink=r2"]);
    assert_eq!(get(&addrs[0]).unwrap(), "It works! Revision 2");
    std::thread::sleep(Duration::from_millis(300));
    let result = load.finish();
    eprintln!(
        "switching on container units: {} requests, {} failed",
        result.sent, result.failed
    );
    assert!(result.sent > 100, "the load ran ({} requests)", result.sent);
    assert_eq!(
        result.failed, 0,
        "{} of {} requests failed: {:?}",
        result.failed, result.sent, result.errors
    );
    for (n, unit) in units.iter().enumerate() {
        assert_eq!(
            main_pid(&sim, unit, "wsgi-app-metrics.service"),
            exporters[n],
            "{unit}: the exporter lived through the switches"
        );
        let page = metrics(&sim, n as u32);
        assert!(
            page.contains("wsgi_app_build_info{build_label=\"r2\""),
            "{unit}: {page}"
        );
        assert_eq!(sample(&page, "wsgi_app_up "), Some(1.0), "{unit}: {page}");
        let answered = sample(&page, "wsgi_app_requests_total{status=\"200\"} ").unwrap_or(0.0);
        assert!(
            answered >= (result.sent / 4) as f64,
            "{unit}: gunicorn's statsd counted {answered} of ~{} requests",
            result.sent / 2
        );
        let switches = sample(&page, "wsgi_app_switches_total ").unwrap_or(0.0);
        assert!(switches >= 2.0, "{unit}: {switches} switches counted");
    }

    // 3. SIGKILL the gunicorn master: systemd restarts it, no hook runs.
    let hooks_before = hooks_run(&sim, "wsgi-app/0");
    let slot = serving_slot(&sim, "wsgi-app/0");
    let old_pid = main_pid(&sim, "wsgi-app/0", &slot);
    assert_ne!(old_pid, "0", "the serving slot has a main process");
    let (ok, out) = exec(
        &sim,
        "wsgi-app/0",
        &[
            "systemctl",
            "kill",
            "--signal=KILL",
            "--kill-whom=main",
            &slot,
        ],
    );
    assert!(ok, "systemctl kill: {out}");
    let body = serving_within(&addrs[0], Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("not serving within 30 s of the master's SIGKILL: {e}"));
    assert_eq!(body, "It works! Revision 2");
    let deadline = Instant::now() + Duration::from_secs(30);
    let new_pid = loop {
        let pid = main_pid(&sim, "wsgi-app/0", &slot);
        if (pid != old_pid && pid != "0") || Instant::now() >= deadline {
            break pid;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_ne!(new_pid, old_pid, "systemd started a new master");
    assert_eq!(
        hooks_run(&sim, "wsgi-app/0"),
        hooks_before,
        "no hook ran for the restart"
    );

    // 4. Reboot unit 1's machine: serving before any hook; then the start
    //    hook Juju runs after a reboot changes nothing.
    let hooks_before = hooks_run(&sim, "wsgi-app/1");
    let slot = serving_slot(&sim, "wsgi-app/1");
    let pid_before_reboot = main_pid(&sim, "wsgi-app/1", &slot);
    sim.ok(&["reboot", "wsgi-app/1", "--no-hooks"]);
    let body = serving_within(&addrs[1], Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("not serving after the reboot: {e}"));
    assert_eq!(body, "It works! Revision 2");
    assert_eq!(
        hooks_run(&sim, "wsgi-app/1"),
        hooks_before,
        "serving came from systemd's own units, before any hook"
    );
    assert_eq!(
        serving_slot(&sim, "wsgi-app/1"),
        slot,
        "the same slot after boot"
    );
    let pid_after_boot = main_pid(&sim, "wsgi-app/1", &slot);
    assert_ne!(
        pid_after_boot, pid_before_reboot,
        "a new boot, a new master"
    );
    let page = metrics(&sim, 1);
    assert!(
        page.contains("wsgi_app_build_info{build_label=\"r2\""),
        "the exporter is back after the boot, before any hook: {page}"
    );
    let files = unit_files(&sim, 1);
    let message = sim.workload_message(&sim.status_json(), "wsgi-app/1");
    sim.ok(&["update-status"]); // runs the queued start, then update-status
    let ran = hooks_run(&sim, "wsgi-app/1");
    assert!(
        ran[hooks_before.len()..]
            .iter()
            .any(|l| l.contains("hooks/start")),
        "start ran after the reboot: {ran:?}"
    );
    assert_eq!(unit_files(&sim, 1), files, "start rewrote the unit files");
    assert_eq!(
        main_pid(&sim, "wsgi-app/1", &slot),
        pid_after_boot,
        "start restarted gunicorn"
    );
    assert_eq!(
        sim.workload_message(&sim.status_json(), "wsgi-app/1"),
        message
    );
    assert_eq!(get(&addrs[1]).unwrap(), "It works! Revision 2");

    // 5. Nagios: each machine's nrpe runs the charm's check; check_nrpe
    //    from the host gets HTTP OK, and so does `charm-sim nagios`.
    sim.add_remote(
        "nrpe",
        "nrpe-external-master",
        1,
        &[("nagios_hostname", "juju-wsgi-app")],
    );
    sim.ok(&["relate", "wsgi-app:nrpe-external-master", "nrpe"]);
    for n in 0..2u32 {
        let out = std::process::Command::new(CHECK_NRPE)
            .args(["-H", &sim.unit_address(n), "-c", "check_wsgi-app_http"])
            .output()
            .unwrap_or_else(|e| panic!("{CHECK_NRPE}: {e}"));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.starts_with("HTTP OK"),
            "check_nrpe on unit {n}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let report = sim.ok(&["nagios"]);
    for unit in units {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with(unit) && l.contains("check_wsgi-app_http  OK  HTTP OK")),
            "{unit} in:\n{report}"
        );
    }

    // 6. logrotate accepts the charm's rotation file.
    let (ok, out) = exec(
        &sim,
        "wsgi-app/0",
        &["logrotate", "--debug", "/etc/logrotate.d/wsgi-app"],
    );
    assert!(ok, "logrotate -d: {out}");
    assert!(
        !out.lines().any(|l| l.trim_start().starts_with("error:")),
        "logrotate -d: {out}"
    );
    assert!(
        out.contains("rotating pattern: /var/log/wsgi-app/"),
        "logrotate -d read the charm's file: {out}"
    );

    // 7. Remove the units: their machines stay (as with Juju), with no
    //    wsgi-app unit file, no process of the app user, no listener.
    let (ok, uid) = exec(&sim, "wsgi-app/0", &["id", "-u", "wsgi-app"]);
    assert!(ok, "the app user exists: {uid}");
    let uid: u32 = uid.trim().parse().unwrap();
    for unit in units {
        sim.ok(&["remove-unit", unit]);
    }
    for n in 0..2u32 {
        let machine = machine(&sim, n);
        assert!(machine.init_pid().is_some(), "machine {n} still runs");
        let etc = in_machine(&sim, n, "/etc/systemd/system");
        let left: Vec<String> = std::fs::read_dir(&etc)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("wsgi-app"))
            .collect();
        assert!(left.is_empty(), "machine {n} keeps {left:?}");
        assert!(!in_machine(&sim, n, "/etc/nagios/nrpe.d/check_wsgi-app_http.cfg").exists());
        let procs = processes_of(&machine, uid);
        assert!(
            procs.is_empty(),
            "machine {n}: app user processes {procs:?}"
        );
        let listeners: Vec<_> = reaper::listeners_on(&[sim.unit_address(n)])
            .into_iter()
            .filter(|l| l.port != 5666) // the machine's own nrpe
            .collect();
        assert!(listeners.is_empty(), "machine {n}: {listeners:?}");
    }

    // Destroy powers the machines off: nothing of them is left.
    let rootfs: Vec<PathBuf> = (0..2).map(|n| machine(&sim, n).rootfs()).collect();
    sim.destroy_and_check_nothing_left(&[&addrs[0], &addrs[1]]);
    assert!(
        reaper::listeners_on(&[sim.unit_address(0), sim.unit_address(1)]).is_empty(),
        "nrpe listeners survived destroy"
    );
    for root in &rootfs {
        assert!(!Path::new(root).exists(), "{} survived", root.display());
    }
}
