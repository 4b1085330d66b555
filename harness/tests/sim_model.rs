//! charm-sim as a small Juju: the event order of deploy, relate, unrelate,
//! add-unit and remove-unit (§2.3 of shared/reference/juju-hook-tools.md),
//! hook failure and resolve, config validation, actions, and that
//! `destroy` leaves no process, listener or directory behind.

mod common;

use common::Sim;
use harness::sim::reaper;

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn deploy_runs_juju_order_and_elects_the_first_unit() {
    let sim =
        Sim::new("[ \"$JUJU_DISPATCH_PATH\" = hooks/start ] && status-set active ready; exit 0");
    sim.deploy(2);
    assert_eq!(
        sim.events_of("fake/0"),
        s(&["install", "leader-elected", "config-changed", "start"])
    );
    assert_eq!(
        sim.events_of("fake/1"),
        s(&[
            "install",
            "leader-settings-changed",
            "config-changed",
            "start"
        ])
    );
    let status = sim.status_json();
    let units = &status["applications"]["fake"]["units"];
    assert_eq!(units["fake/0"]["leader"], true);
    assert!(units["fake/1"].get("leader").is_none());
    assert_eq!(units["fake/0"]["public-address"], "127.0.61.1");
    assert_eq!(units["fake/1"]["public-address"], "127.0.61.2");
    assert_eq!(units["fake/1"]["workload-status"]["current"], "active");
    assert_eq!(units["fake/1"]["juju-status"]["current"], "idle");
}

#[test]
fn units_run_their_hooks_side_by_side_as_juju_agents_do() {
    // fake/0's install waits for fake/1's install to begin. Run one hook
    // at a time across the model, it would wait in vain and fail.
    let sim = Sim::new(
        r#"if [ "$JUJU_DISPATCH_PATH" = hooks/install ] && [ "$JUJU_UNIT_NAME" = fake/0 ]; then
  tries=0
  until grep -q '^fake/1 hooks/install ' "$EVENTS"; do
    tries=$((tries + 1)); [ $tries -gt 600 ] && exit 1; sleep 0.1
  done
fi
exit 0"#,
    );
    sim.deploy(2);
    for unit in ["fake/0", "fake/1"] {
        assert_eq!(sim.events_of(unit)[0], "install", "{unit}");
        assert_eq!(sim.events_of(unit).last().unwrap(), "start", "{unit}");
    }
    // Each unit still runs its own hooks in Juju's order, one at a time.
    assert_eq!(
        sim.events_of("fake/1"),
        s(&[
            "install",
            "leader-settings-changed",
            "config-changed",
            "start"
        ])
    );
}

#[test]
fn peers_meet_hear_each_others_writes_and_see_a_unit_depart() {
    // The leader writes the app bag once the peer joined; every unit
    // writes its own bag on the same hook; non-leaders read the app bag.
    let sim = Sim::with_metadata(
        r#"if [ "$JUJU_DISPATCH_PATH" = hooks/cluster-relation-joined ]; then
  relation-set "seen=$JUJU_REMOTE_UNIT" || exit 1
  if [ "$(is-leader)" = True ]; then relation-set --app round=1 || exit 1; fi
fi
if [ "$JUJU_DISPATCH_PATH" = hooks/cluster-relation-changed ] && [ -z "$JUJU_REMOTE_UNIT" ]; then
  [ "$(relation-get --app round "$JUJU_REMOTE_APP")" = 1 ] || exit 1
fi
exit 0"#,
        &format!(
            "{}peers:
  cluster:
    interface: fake-peer
",
            common::METADATA
        ),
    );
    sim.deploy(2);
    assert_eq!(
        sim.events_of("fake/0"),
        s(&[
            "install",
            "cluster-relation-created",
            "leader-elected",
            "config-changed",
            "start",
            "cluster-relation-joined(fake/1)",
            "cluster-relation-changed(fake/1)",
            // fake/1's own write, when its joined hook committed.
            "cluster-relation-changed(fake/1)",
        ])
    );
    // fake/0's one hook wrote its unit bag and the app bag: fake/1 hears
    // of both (the app-level change has no remote unit), and its hook
    // reading the app bag as a non-leader succeeded (else deploy fails).
    let mut events = sim.events_of("fake/1");
    let last_two: std::collections::BTreeSet<String> = events.split_off(7).into_iter().collect();
    assert_eq!(
        events,
        s(&[
            "install",
            "cluster-relation-created",
            "leader-settings-changed",
            "config-changed",
            "start",
            "cluster-relation-joined(fake/0)",
            "cluster-relation-changed(fake/0)",
        ])
    );
    assert_eq!(
        last_two,
        s(&[
            "cluster-relation-changed",
            "cluster-relation-changed(fake/0)"
        ])
        .into_iter()
        .collect()
    );

    sim.clear_events();
    sim.ok(&["remove-unit", "fake/1"]);
    assert_eq!(
        sim.events_of("fake/1"),
        s(&["cluster-relation-departed(fake/0)", "stop", "remove"]),
        "peers are never broken"
    );
    assert_eq!(
        sim.events_of("fake/0"),
        s(&["cluster-relation-departed(fake/1)"])
    );
}

#[test]
fn start_without_status_set_leaves_unknown() {
    let sim = Sim::new("exit 0");
    sim.deploy(1);
    let status = sim.status_json();
    assert_eq!(
        status["applications"]["fake"]["units"]["fake/0"]["workload-status"]["current"],
        "unknown"
    );
}

#[test]
fn relate_then_unrelate_follow_juju_order() {
    let sim = Sim::new("exit 0");
    sim.deploy(1);
    sim.ok(&[
        "add-remote",
        "pg",
        "--interface",
        "pgsql",
        "--units",
        "2",
        "--unit-data",
        "host=db",
        "--app-data",
        "version=14",
    ]);
    sim.clear_events();
    sim.ok(&["relate", "fake:db", "pg"]);
    assert_eq!(
        sim.events_of("fake/0"),
        s(&[
            "db-relation-created",
            "db-relation-changed",
            "db-relation-joined(pg/0)",
            "db-relation-changed(pg/0)",
            "db-relation-joined(pg/1)",
            "db-relation-changed(pg/1)",
        ])
    );
    sim.clear_events();
    sim.ok(&["set-remote-data", "pg/1", "host=db2"]);
    sim.ok(&["set-remote-data", "pg", "version=15"]);
    assert_eq!(
        sim.events_of("fake/0"),
        s(&["db-relation-changed(pg/1)", "db-relation-changed"])
    );
    sim.clear_events();
    sim.ok(&["unrelate", "fake:db", "pg"]);
    let events = sim.events();
    let departing: Vec<&str> = events.iter().map(|e| e.3.as_str()).collect();
    assert_eq!(
        sim.events_of("fake/0"),
        s(&[
            "db-relation-departed(pg/0)",
            "db-relation-departed(pg/1)",
            "db-relation-broken",
        ])
    );
    // On remove-relation the departing unit is the remote one.
    assert_eq!(departing, vec!["pg/0", "pg/1", ""]);
    let status = sim.status_json();
    assert_eq!(status["relations"].as_array().unwrap().len(), 0);
}

#[test]
fn relate_refuses_unknown_endpoints_and_interface_mismatch() {
    let sim = Sim::new("exit 0");
    sim.deploy(1);
    sim.ok(&["add-remote", "mongo", "--interface", "mongodb"]);
    let out = sim.cli(&["relate", "fake:nope", "mongo"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no endpoint \"nope\""));
    let out = sim.cli(&["relate", "fake:db", "mongo"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("interface"));
}

#[test]
fn relate_refuses_more_relations_than_the_endpoint_limit() {
    let sim = Sim::new("exit 0");
    sim.deploy(1);
    sim.ok(&["add-remote", "redis1", "--interface", "redis"]);
    sim.ok(&["add-remote", "redis2", "--interface", "redis"]);
    sim.ok(&["relate", "fake:cache", "redis1"]);
    let out = sim.cli(&["relate", "fake:cache", "redis2"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "establishing a new relation for fake:cache would exceed its maximum relation limit of 1"
        ),
        "{stderr}"
    );
    // No limit declared: any number.
    sim.ok(&["add-remote", "pg1", "--interface", "pgsql"]);
    sim.ok(&["add-remote", "pg2", "--interface", "pgsql"]);
    sim.ok(&["relate", "fake:db", "pg1"]);
    sim.ok(&["relate", "fake:db", "pg2"]);
    // Once the first is gone, there is room again.
    sim.ok(&["unrelate", "fake:cache", "redis1"]);
    sim.ok(&["relate", "fake:cache", "redis2"]);
}

#[test]
fn add_unit_meets_existing_relations() {
    let sim = Sim::new("exit 0");
    sim.deploy(1);
    sim.ok(&["add-remote", "pg", "--interface", "pgsql", "--units", "1"]);
    sim.ok(&["relate", "fake:db", "pg"]);
    sim.clear_events();
    sim.ok(&["add-unit", "fake"]);
    assert_eq!(
        sim.events_of("fake/1"),
        s(&[
            "install",
            "db-relation-created",
            "leader-settings-changed",
            "config-changed",
            "start",
            "db-relation-joined(pg/0)",
            "db-relation-changed(pg/0)",
        ])
    );
}

#[test]
fn remove_unit_departs_as_itself_and_hands_over_leadership() {
    let sim = Sim::new("exit 0");
    sim.deploy(2);
    sim.ok(&["add-remote", "pg", "--interface", "pgsql", "--units", "1"]);
    sim.ok(&["relate", "fake:db", "pg"]);
    sim.clear_events();
    sim.ok(&["remove-unit", "fake/0"]);
    let events = sim.events();
    let of_leader: Vec<_> = events.iter().filter(|e| e.0 == "fake/0").collect();
    assert_eq!(
        sim.events_of("fake/0"),
        s(&[
            "db-relation-departed(pg/0)",
            "db-relation-broken",
            "stop",
            "remove"
        ])
    );
    // JUJU_DEPARTING_UNIT is the local unit when the local unit goes.
    assert_eq!(of_leader[0].3, "fake/0");
    assert_eq!(sim.events_of("fake/1"), s(&["leader-elected"]));
    let status = sim.status_json();
    let units = status["applications"]["fake"]["units"].as_object().unwrap();
    assert_eq!(units.keys().collect::<Vec<_>>(), vec!["fake/1"]);
    assert_eq!(units["fake/1"]["leader"], true);
    assert!(!sim.model.join("units/fake-0").exists());
}

#[test]
fn failed_hook_discards_buffered_writes_and_resolve_retries() {
    // config-changed writes relation data and a status, then fails while
    // label is "bad".
    let body = r#"
case "$JUJU_DISPATCH_PATH" in
  hooks/config-changed)
    for rel in $(relation-ids db); do relation-set -r "$rel" label="$(config-get label)"; done
    status-set maintenance "configuring $(config-get label)"
    [ "$(config-get label)" = bad ] && { echo "label is bad" >&2; exit 3; }
    ;;
esac
exit 0"#;
    let sim = Sim::new(body);
    sim.deploy(1);
    sim.ok(&["add-remote", "pg", "--interface", "pgsql"]);
    sim.ok(&["relate", "fake:db", "pg"]);
    let out = sim.cli(&["config", "fake", "label=bad"]);
    assert!(
        !out.status.success(),
        "a failed hook makes the command fail"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("config-changed"), "{stderr}");
    assert!(stderr.contains("label is bad"), "{stderr}");

    let status = sim.status_json();
    let unit = &status["applications"]["fake"]["units"]["fake/0"];
    assert_eq!(unit["juju-status"]["current"], "error");
    assert_eq!(
        unit["juju-status"]["message"],
        "hook failed: \"config-changed\""
    );
    let shown: serde_json::Value = serde_json::from_str(&sim.ok(&["show-unit", "fake/0"])).unwrap();
    let local = &shown["fake/0"]["relation-info"][0]["local-unit"]["data"];
    assert!(
        local.get("label").is_none(),
        "relation-set of a failed hook is dropped: {local}"
    );
    // status-set is immediate, so it survived the failure.
    assert_eq!(
        shown["fake/0"]["workload-status"]["message"],
        "configuring bad"
    );

    // While in error, nothing else runs on the unit; after the fix and a
    // resolve, the failed hook runs again and then the queued one.
    let out = sim.cli(&["config", "fake", "label=good"]);
    assert!(!out.status.success());
    sim.clear_events();
    sim.ok(&["resolve", "fake/0"]);
    assert_eq!(
        sim.events_of("fake/0"),
        s(&["config-changed", "config-changed"])
    );
    let shown: serde_json::Value = serde_json::from_str(&sim.ok(&["show-unit", "fake/0"])).unwrap();
    assert_eq!(
        shown["fake/0"]["relation-info"][0]["local-unit"]["data"]["label"],
        "good"
    );
    assert_eq!(shown["fake/0"]["juju-status"]["current"], "idle");
}

#[test]
fn deploy_validates_config_before_running_anything() {
    let sim = Sim::new("exit 0");
    let charm = sim.charm.display().to_string();
    for bad in ["port=eighty", "nope=1", "flag=maybe"] {
        let out = sim.cli(&["deploy", &charm, "--config", bad]);
        assert!(!out.status.success(), "{bad} must be refused");
        assert!(sim.events().is_empty(), "no hook may run for {bad}");
    }
    let out = sim.cli(&["deploy", &charm, "--config", "port=eighty"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected int"));
}

#[test]
fn actions_report_results_and_fail_like_juju() {
    let body = r#"
case "$JUJU_DISPATCH_PATH" in
  actions/greet) action-set "greeting.text=hello $(action-get name)" "times=$(action-get times)"; echo out ;;
  actions/fail) action-fail "nope"; exit 0 ;;
esac
exit 0"#;
    let sim = Sim::new(body);
    sim.deploy(1);
    let out = sim.ok(&["run", "fake/0", "greet", "name=bob"]);
    let report: serde_json::Value = serde_yaml_ng::from_str(&out).unwrap();
    assert_eq!(report["status"], "completed");
    assert_eq!(report["results"]["greeting"]["text"], "hello bob");
    assert_eq!(report["results"]["times"], "1", "defaults are filled in");
    assert_eq!(report["results"]["return-code"], 0);
    assert_eq!(report["results"]["stdout"], "out\n");
    assert!(report["results"].get("stderr").is_none());

    let failed = sim.cli(&["run", "fake/0", "fail"]);
    assert!(!failed.status.success());
    let report: serde_json::Value =
        serde_yaml_ng::from_str(&String::from_utf8_lossy(&failed.stdout)).unwrap();
    assert_eq!(report["status"], "failed");
    assert_eq!(report["message"], "nope");

    for bad in [
        vec!["greet"],
        vec!["greet", "name=bob", "extra=1"],
        vec!["greet", "name=bob", "times=x"],
    ] {
        let mut args = vec!["run", "fake/0"];
        args.extend(bad.iter());
        let out = sim.cli(&args);
        assert!(!out.status.success(), "{bad:?} must be refused");
    }
    // Actions never put the unit in error.
    let status = sim.status_json();
    assert_eq!(
        status["applications"]["fake"]["units"]["fake/0"]["juju-status"]["current"],
        "idle"
    );
}

#[test]
fn exec_runs_with_the_hook_environment() {
    let sim = Sim::new("exit 0");
    sim.deploy(1);
    let out = sim.cli(&[
        "exec",
        "fake/0",
        "--",
        "sh",
        "-c",
        "unit-get private-address; echo ${HOME-nohome}; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "127.0.61.1\nnohome\n");
}

#[test]
fn unknown_units_and_apps_are_clear_errors() {
    let sim = Sim::new("exit 0");
    sim.deploy(1);
    let out = sim.cli(&["remove-unit", "fake/9"]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "charm-sim: unit \"fake/9\" not found\n"
    );
    let out = sim.cli(&["config", "nope", "a=b"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "charm-sim: application \"nope\" not found\n"
    );
}

#[test]
fn destroy_leaves_no_process_listener_or_directory() {
    // start launches a daemon the way the charm's supervisor does (setsid,
    // not our child) listening on the unit's address.
    let port = 20000 + std::process::id() % 20000;
    let body = format!(
        r#"
if [ "$JUJU_DISPATCH_PATH" = hooks/start ]; then
  setsid python3 -m http.server --bind "$(unit-get private-address)" {port} >/dev/null 2>&1 </dev/null &
  setsid sleep 600 >/dev/null 2>&1 </dev/null &
  i=0; while [ $i -lt 100 ] && ! python3 -c "import socket; socket.create_connection(('$(unit-get private-address)', {port}), 1)" 2>/dev/null; do sleep 0.1; i=$((i+1)); done
fi
exit 0"#
    );
    let sim = Sim::new(&body);
    sim.deploy(2);
    let addresses = vec!["127.0.61.1".to_string(), "127.0.61.2".to_string()];
    let ours = |l: &reaper::Listener| l.port as u32 == port;
    assert_eq!(
        reaper::listeners_on(&addresses)
            .iter()
            .filter(|l| ours(l))
            .count(),
        2,
        "each unit's daemon listens on its own address"
    );
    let model = sim.model.canonicalize().unwrap();
    assert!(reaper::processes_under(&model).len() >= 4);

    let out = sim.ok(&["destroy"]);
    assert!(out.contains("destroyed"), "{out}");
    assert!(!sim.model.exists(), "the model directory is removed");
    assert!(
        reaper::processes_under(&model).is_empty(),
        "no process of the model is left"
    );
    assert_eq!(
        reaper::listeners_on(&addresses)
            .iter()
            .filter(|l| ours(l))
            .count(),
        0
    );
    let events = sim.events_of("fake/1");
    assert_eq!(events[events.len() - 2..], s(&["stop", "remove"]));
}

#[test]
fn deploys_a_packed_charm_keeping_modes_and_symlinks() {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    let sim = Sim::new("exit 0");
    let archive = sim.tmp.path().join("fake_amd64.charm");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&archive).unwrap());
    let plain = zip::write::SimpleFileOptions::default().unix_permissions(0o644);
    let exec = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
    for (name, text) in [
        ("metadata.yaml", common::METADATA),
        ("config.yaml", common::CONFIG),
        ("actions.yaml", common::ACTIONS),
    ] {
        zip.start_file(name, plain).unwrap();
        zip.write_all(text.as_bytes()).unwrap();
    }
    zip.start_file("dispatch", exec).unwrap();
    zip.write_all(common::dispatch_script(&sim.events, "exit 0").as_bytes())
        .unwrap();
    zip.add_symlink("hooks/install", "../dispatch", plain)
        .unwrap();
    zip.finish().unwrap();

    let archive_arg = archive.display().to_string();
    sim.ok(&["deploy", &archive_arg]);
    assert_eq!(
        sim.events_of("fake/0"),
        s(&["install", "leader-elected", "config-changed", "start"])
    );
    let charm = sim.model.join("units/fake-0/charm");
    let mode = std::fs::metadata(charm.join("dispatch"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    let link = std::fs::read_link(charm.join("hooks/install")).unwrap();
    assert_eq!(link, std::path::PathBuf::from("../dispatch"));
}
