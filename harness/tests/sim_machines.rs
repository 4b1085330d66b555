//! charm-sim's container machines (`deploy --machines container`) with a
//! fake charm: each unit is a systemd-nspawn machine booted with systemd,
//! its hooks run inside it with the hook tools reaching the model, it
//! gets no `WSGI_APP_ROOT`/`WSGI_APP_SERVICE_MANAGER`, `reboot` powers it
//! off and on and runs start, add-unit boots a machine of its own, the
//! machine outlives its unit, and `destroy`
//! leaves no process, mount or directory. Needs root, systemd-nspawn and
//! the cached Debian root (made on first use; `cargo xtask test` makes it
//! first). The wsgi-app charm itself on such machines: tests/e2e_machines.rs.

mod common;

use std::fs;

use common::Sim;
use harness::sim::container::Machine;

const BLOCK: &str = "127.0.62";

/// A dispatch that records `UNIT DISPATCH_PATH` in the model directory
/// (the only host path a machine sees) and, at start, reports which
/// program is the machine's PID 1.
const DISPATCH: &str = "#!/bin/sh
echo \"$JUJU_UNIT_NAME $JUJU_DISPATCH_PATH\" >> \"$CHARM_SIM_MODEL/events.log\"
if [ \"$JUJU_DISPATCH_PATH\" = hooks/start ]; then
    status-set active \"pid1=$(cat /proc/1/comm)\"
fi
exit 0
";

fn events(sim: &Sim) -> Vec<String> {
    fs::read_to_string(sim.model.join("events.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn cli_ok(sim: &Sim, args: &[&str]) -> String {
    let mut all = vec!["--address-block", BLOCK];
    all.extend_from_slice(args);
    sim.ok(&all)
}

#[test]
fn container_units_run_their_hooks_inside_a_machine_booted_with_systemd() {
    let sim = Sim::new("exit 0");
    fs::write(sim.charm.join("dispatch"), DISPATCH).unwrap();
    let charm = sim.charm.display().to_string();
    cli_ok(&sim, &["deploy", &charm, "--machines", "container"]);
    assert_eq!(
        events(&sim),
        [
            "fake/0 hooks/install",
            "fake/0 hooks/leader-elected",
            "fake/0 hooks/config-changed",
            "fake/0 hooks/start"
        ]
    );
    let status = sim.status_json();
    let unit = &status["applications"]["fake"]["units"]["fake/0"];
    assert_eq!(unit["workload-status"]["message"], "pid1=systemd");

    // Commands run inside too, with the hook environment: the tools reach
    // the model, and the charm is told only its address.
    let out = sim.ok(&["exec", "fake/0", "--", "systemctl", "is-system-running"]);
    assert_eq!(out.trim(), "running");
    let out = sim.ok(&["exec", "fake/0", "--", "unit-get", "private-address"]);
    assert_eq!(out.trim(), format!("{BLOCK}.1"));
    let out = sim.ok(&["exec", "fake/0", "--", "sh", "-c", "env | grep ^WSGI_APP_"]);
    assert_eq!(out.trim(), format!("WSGI_APP_BIND_ADDRESS={BLOCK}.1"));

    // Reboot: a new boot of the same machine, then start.
    let machine = Machine::new(&sim.model.canonicalize().unwrap(), 0);
    let before = machine.nspawn_pid().expect("the machine runs");
    fs::write(machine.rootfs().join("etc/kept"), "across reboots").unwrap();
    sim.ok(&["reboot", "fake/0"]);
    let after = machine.nspawn_pid().expect("the machine runs again");
    assert_ne!(before, after);
    assert_eq!(events(&sim).last().unwrap(), "fake/0 hooks/start");
    assert_eq!(
        fs::read_to_string(machine.rootfs().join("etc/kept")).unwrap(),
        "across reboots"
    );

    // A new unit gets a machine of its own, on its own address.
    cli_ok(&sim, &["add-unit", "fake"]);
    assert_eq!(events(&sim).last().unwrap(), "fake/1 hooks/start");
    let out = sim.ok(&["exec", "fake/1", "--", "unit-get", "private-address"]);
    assert_eq!(out.trim(), format!("{BLOCK}.2"));
    let second = Machine::new(&sim.model.canonicalize().unwrap(), 1);
    assert_ne!(second.init_pid(), machine.init_pid());
    assert!(!second.rootfs().join("etc/kept").exists());

    // The machine outlives its unit, as with Juju.
    sim.ok(&["remove-unit", "fake/0"]);
    assert!(
        events(&sim).contains(&"fake/0 hooks/remove".to_string()),
        "{:?}",
        events(&sim)
    );
    assert!(machine.init_pid().is_some(), "the machine still runs");

    sim.ok(&["destroy"]);
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    for machine in [&machine, &second] {
        assert!(machine.nspawn_pid().is_none());
        let rootfs = machine.rootfs();
        assert!(!rootfs.exists(), "{}", rootfs.display());
        assert!(!mounts.contains(&rootfs.display().to_string()), "{mounts}");
    }
}

#[test]
fn directory_units_have_no_machine_to_reboot_or_nrpe_to_ask() {
    let sim = Sim::new("exit 0");
    sim.deploy(1);
    let out = sim.cli(&["reboot", "fake/0"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no machine to reboot"),
        "{out:?}"
    );
    let out = sim.cli(&["nagios"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--machines container"),
        "{out:?}"
    );
}
