//! The leader-coordinated rollout across several units, driven through
//! the harness's `Cluster` (a second Juju for one application and its peer
//! relation): batches, the leader last, halts, resume and abort, pinned
//! units, leadership changes, units added and removed, a killed hook.

mod charm_support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use charm_support::*;
use harness::{on, Cluster, Context, State};
use serde_json::json;
use wsgi_app::charm::WsgiApp;
use wsgi_app::ops::StatusName;
use wsgi_app::workload::machine::HttpAnswer;

const PEER: u32 = 9;

/// Machines (by root) on which a build answers 500, and which build.
type Broken = Arc<Mutex<Vec<(PathBuf, String)>>>;

/// A charm with a third build, r3 (r2's archive under another label), and
/// a web server that answers 500 for the builds `broken` lists.
fn charm_with_r3() -> (CharmDir, Broken) {
    let charm = CharmDir::new();
    let archive = std::fs::read(charm.path().join("files/r2/example-wsgi-app.tar.bzip2")).unwrap();
    charm.add_file("r3", "example-wsgi-app.tar.bzip2", &archive);
    (charm, Arc::new(Mutex::new(Vec::new())))
}

fn context_with(charm: &CharmDir, broken: &Broken) -> Context<WsgiApp> {
    let mut ctx = charm.context();
    let broken = broken.clone();
    ctx.on_http_get(move |_, running| {
        let spec = running.expect("a build is asked");
        let label = std::fs::read_link(&spec.current_dir)
            .ok()
            .and_then(|l| l.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        let is_broken = broken
            .lock()
            .unwrap()
            .iter()
            .any(|(root, build)| spec.current_dir.starts_with(root) && *build == label);
        Ok(if is_broken {
            HttpAnswer {
                status: 500,
                reason: "Internal Server Error".into(),
                body: "Traceback".into(),
            }
        } else {
            HttpAnswer {
                status: 200,
                reason: "OK".into(),
                body: "It works!".into(),
            }
        })
    });
    ctx
}

/// `units` units serving r1, then r2 rolled out to all of them.
fn on_r2<'c>(ctx: &'c Context<WsgiApp>, units: u32, batch: &str) -> Cluster<'c, WsgiApp> {
    let template = State::new()
        .with_config("build_label", "r1")
        .with_config("rollout_max_unavailable", batch);
    let mut cluster = Cluster::deploy(ctx, template, "rollout", PEER, units).unwrap();
    for n in cluster.unit_numbers() {
        assert_eq!(current_build(cluster.unit(n)), "r1", "unit {n}");
    }
    cluster.set_config("build_label", "r2");
    cluster.settle().unwrap();
    assert_all_serve(&cluster, "r2");
    cluster
}

fn unit_name(n: u32) -> String {
    format!("wsgi-app/{n}")
}

fn assert_all_serve(cluster: &Cluster<'_, WsgiApp>, build: &str) {
    for n in cluster.unit_numbers() {
        assert_eq!(current_build(cluster.unit(n)), build, "unit {n}");
    }
}

fn granted(bag: &wsgi_app::ops::Bag) -> BTreeSet<String> {
    bag.get("rollout-granted")
        .map(|g| {
            g.split(',')
                .filter(|u| !u.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Every grant the leader published for the rollout to `target`, in order.
fn grants_for(cluster: &Cluster<'_, WsgiApp>, target: &str) -> Vec<BTreeSet<String>> {
    cluster
        .writes()
        .iter()
        .filter_map(|w| w.app_bag.as_ref())
        .filter(|bag| bag.get("rollout-target").map(String::as_str) == Some(target))
        .map(granted)
        .collect()
}

/// The units in the order they were granted their turn.
fn grant_order(grants: &[BTreeSet<String>]) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    for set in grants {
        for unit in set {
            if !order.contains(unit) {
                order.push(unit.clone());
            }
        }
    }
    order
}

/// The units in the order their bags first said they serve `target`
/// (among the writes from the `since`th on). The leader grants itself in
/// its own hook, so its turn shows here only.
fn move_order(cluster: &Cluster<'_, WsgiApp>, since: usize, target: &str) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    for write in &cluster.writes()[since..] {
        let serves = write
            .unit_bag
            .as_ref()
            .and_then(|bag| bag.get("serving"))
            .is_some_and(|s| s == target);
        let unit = unit_name(write.unit);
        if serves && !order.contains(&unit) {
            order.push(unit);
        }
    }
    order
}

fn assert_app_status(cluster: &Cluster<'_, WsgiApp>, name: StatusName, fragment: &str) {
    let status = cluster.app_status();
    assert_eq!(status.name, name, "application status: {status}");
    assert!(
        status.message.contains(fragment),
        "application status {:?} does not mention {fragment:?}",
        status.message
    );
}

#[test]
fn a_new_build_moves_one_unit_at_a_time_and_the_leader_last() {
    let (charm, broken) = charm_with_r3();
    let ctx = context_with(&charm, &broken);
    let mut cluster = on_r2(&ctx, 4, "1");
    cluster.set_config("build_label", "r3");
    cluster.settle().unwrap();

    assert_all_serve(&cluster, "r3");
    let grants = grants_for(&cluster, "r3");
    assert!(grants.iter().all(|g| g.len() <= 1), "{grants:?}");
    assert_eq!(
        grant_order(&grants),
        ["wsgi-app/1", "wsgi-app/2", "wsgi-app/3"]
    );
    assert_eq!(
        move_order(&cluster, 0, "r3"),
        ["wsgi-app/1", "wsgi-app/2", "wsgi-app/3", "wsgi-app/0"],
    );
    assert_app_status(&cluster, StatusName::Active, "4 of 4 units on r3");
    assert_eq!(cluster.app_bag()["rollout-phase"], "done");
    for n in cluster.unit_numbers() {
        assert_eq!(cluster.unit_bag(n)["serving"], "r3", "unit {n}");
    }
}

#[test]
fn a_percentage_batch_grants_that_share_of_the_units_and_never_more() {
    let (charm, broken) = charm_with_r3();
    let ctx = context_with(&charm, &broken);
    let mut cluster = on_r2(&ctx, 5, "50%");
    cluster.set_config("build_label", "r3");
    cluster.settle().unwrap();

    assert_all_serve(&cluster, "r3");
    let grants = grants_for(&cluster, "r3");
    // 50% of 5 units is 2 (rounded down).
    let widest = grants.iter().map(BTreeSet::len).max().unwrap();
    assert_eq!(widest, 2, "{grants:?}");
    assert!(!grant_order(&grants).contains(&unit_name(0)));
    let moved = move_order(&cluster, 0, "r3");
    assert_eq!(moved.len(), 5, "{moved:?}");
    assert_eq!(moved.last().map(String::as_str), Some("wsgi-app/0"));
}

#[test]
fn a_bad_batch_blocks_naming_the_option() {
    let ctx = context();
    let state = serving_r1(&ctx).with_config("rollout_max_unavailable", "0");
    let out = ctx.run(on::config_changed(), state).unwrap();
    assert_status(&out.state, StatusName::Blocked, "rollout_max_unavailable");
    assert_status(&out.state, StatusName::Blocked, "50%");
    assert_eq!(current_build(&out.state), "r1", "the serving build stays");
}

/// r2 → r3 with r3 broken on unit 3: units 1 and 2 move, unit 3 fails.
fn halted_on_unit_3<'c>(ctx: &'c Context<WsgiApp>, broken: &Broken) -> Cluster<'c, WsgiApp> {
    let mut cluster = on_r2(ctx, 4, "1");
    broken
        .lock()
        .unwrap()
        .push((cluster.unit(3).machine.root().to_path_buf(), "r3".into()));
    cluster.set_config("build_label", "r3");
    cluster.settle().unwrap();
    cluster
}

#[test]
fn a_unit_failing_its_gate_halts_the_rollout_and_the_status_says_why() {
    let (charm, broken) = charm_with_r3();
    let ctx = context_with(&charm, &broken);
    let mut cluster = halted_on_unit_3(&ctx, &broken);

    for (n, build) in [(0, "r2"), (1, "r3"), (2, "r3"), (3, "r2")] {
        assert_eq!(current_build(cluster.unit(n)), build, "unit {n}");
    }
    assert_app_status(
        &cluster,
        StatusName::Blocked,
        "rollout of r3 halted: wsgi-app/3: build r3 failed its pre-flight",
    );
    assert_app_status(&cluster, StatusName::Blocked, "(2 of 4 units on r3)");
    assert_eq!(cluster.unit_bag(3)["rollout-state"], "failed");
    assert!(cluster.unit_bag(3)["rollout-reason"].contains("HTTP 500"));
    assert_status(
        cluster.unit(0),
        StatusName::Active,
        "serving r2 on :8080 (rollout of r3 halted)",
    );

    let status = cluster.action(2, "rollout-status", json!({})).unwrap();
    let results = status.action.unwrap().results;
    assert_eq!(results["rollout.state"], "halted");
    assert_eq!(results["rollout.from"], "r2");
    assert!(results["rollout.status"].starts_with("rollout of r3 halted: wsgi-app/3"));
    let states: Vec<&str> = (1..=4)
        .map(|i| results[&format!("units.{i}.state")].as_str())
        .collect();
    assert_eq!(states[..3], ["waiting (halted)", "moved", "moved"]);
    assert!(
        states[3].starts_with("failed: build r3 failed its pre-flight"),
        "{states:?}"
    );

    // The halt is sticky: hooks come and go, nothing moves.
    cluster.set_config("workers", 3);
    cluster.settle().unwrap();
    for n in [0, 3] {
        cluster.queue(n, on::update_status());
    }
    cluster.settle().unwrap();
    assert_eq!(current_build(cluster.unit(0)), "r2");
    assert_eq!(current_build(cluster.unit(3)), "r2");
    assert!(granted(&cluster.app_bag()).is_empty());
    assert_app_status(&cluster, StatusName::Blocked, "halted");
}

#[test]
fn resume_tries_the_failed_unit_again_then_finishes_with_the_leader() {
    let (charm, broken) = charm_with_r3();
    let ctx = context_with(&charm, &broken);
    let mut cluster = halted_on_unit_3(&ctx, &broken);
    broken.lock().unwrap().clear();

    let refused = cluster.action(1, "resume-rollout", json!({})).unwrap();
    let why = refused.action.unwrap().failure.expect("refused");
    assert!(
        why.contains("resume-rollout runs on the leader only, and wsgi-app/1 is not the leader"),
        "{why}"
    );

    let out = cluster.action(0, "resume-rollout", json!({})).unwrap();
    let action = out.action.unwrap();
    assert_eq!(action.failure, None);
    assert_eq!(action.results["rollout.granted"], "wsgi-app/3");
    cluster.settle().unwrap();
    assert_all_serve(&cluster, "r3");
    assert_app_status(&cluster, StatusName::Active, "4 of 4 units on r3");
}

#[test]
fn abort_takes_the_moved_units_back_and_keeps_them_there() {
    let (charm, broken) = charm_with_r3();
    let ctx = context_with(&charm, &broken);
    let mut cluster = halted_on_unit_3(&ctx, &broken);

    let out = cluster.action(0, "abort-rollout", json!({})).unwrap();
    assert_eq!(out.action.unwrap().failure, None);
    cluster.settle().unwrap();
    assert_all_serve(&cluster, "r2");
    let back = grants_for(&cluster, "r2");
    assert!(back.iter().all(|g| g.len() <= 1), "{back:?}");
    assert_app_status(
        &cluster,
        StatusName::Active,
        "rollout of r3 aborted: 4 of 4 units on r2",
    );

    // current_symlink still says latest (r3): no new rollout starts on it.
    cluster.set_config("workers", 3);
    cluster.settle().unwrap();
    assert_all_serve(&cluster, "r2");

    let again = cluster.action(0, "abort-rollout", json!({})).unwrap();
    assert!(again
        .action
        .unwrap()
        .failure
        .expect("refused")
        .contains("already aborted"));
}

#[test]
fn a_pinned_unit_is_skipped_and_stays_pinned() {
    let (charm, broken) = charm_with_r3();
    let ctx = context_with(&charm, &broken);
    let mut cluster = on_r2(&ctx, 3, "1");
    let pinned = cluster
        .action(2, "set-current-symlink", json!({ "symlink": "r1" }))
        .unwrap();
    assert_eq!(pinned.action.unwrap().failure, None);
    cluster.settle().unwrap();

    cluster.set_config("build_label", "r3");
    cluster.settle().unwrap();
    assert_eq!(current_build(cluster.unit(0)), "r3");
    assert_eq!(current_build(cluster.unit(1)), "r3");
    assert_eq!(current_build(cluster.unit(2)), "r1");
    assert!(!grant_order(&grants_for(&cluster, "r3")).contains(&unit_name(2)));
    assert_app_status(
        &cluster,
        StatusName::Active,
        "2 of 3 units on r3 (1 pinned elsewhere)",
    );

    let status = cluster.action(1, "rollout-status", json!({})).unwrap();
    let results = status.action.unwrap().results;
    assert_eq!(results["rollout.target"], "r3");
    assert_eq!(results["rollout.state"], "done");
    assert_eq!(results["units.3.unit"], "wsgi-app/2");
    assert_eq!(results["units.3.serving"], "r1");
    assert_eq!(results["units.3.pinned"], "r1");
    assert_eq!(results["units.3.state"], "skipped: pinned to r1");
    assert_eq!(results["units.1.state"], "moved");
}

/// Run hooks until the leader has granted `unit` its turn.
fn step_until_granted(cluster: &mut Cluster<'_, WsgiApp>, unit: &str) {
    while !granted(&cluster.app_bag()).contains(unit) {
        cluster
            .step()
            .unwrap()
            .unwrap_or_else(|| panic!("settled without granting {unit}"));
    }
}

#[test]
fn a_new_leader_picks_the_rollout_up_without_a_second_grant() {
    let (charm, broken) = charm_with_r3();
    let ctx = context_with(&charm, &broken);
    let mut cluster = on_r2(&ctx, 4, "1");
    cluster.set_config("build_label", "r3");
    step_until_granted(&mut cluster, "wsgi-app/1");
    cluster.elect(2);
    cluster.settle().unwrap();

    assert_all_serve(&cluster, "r3");
    let grants = grants_for(&cluster, "r3");
    assert!(grants.iter().all(|g| g.len() <= 1), "{grants:?}");
    let order = grant_order(&grants);
    assert_eq!(order.len(), 3, "each other unit granted once: {order:?}");
    assert!(!order.contains(&unit_name(2)), "{order:?}");
    let moved = move_order(&cluster, 0, "r3");
    assert_eq!(
        moved.last().map(String::as_str),
        Some("wsgi-app/2"),
        "the new leader goes last: {moved:?}"
    );
    assert_app_status(&cluster, StatusName::Active, "4 of 4 units on r3");
}

#[test]
fn a_unit_removed_while_granted_does_not_hold_the_rollout() {
    let (charm, broken) = charm_with_r3();
    let ctx = context_with(&charm, &broken);
    let mut cluster = on_r2(&ctx, 3, "1");
    cluster.set_config("build_label", "r3");
    step_until_granted(&mut cluster, "wsgi-app/1");
    cluster.remove_unit(1).unwrap();
    cluster.settle().unwrap();

    assert_all_serve(&cluster, "r3");
    assert_eq!(cluster.unit_numbers(), [0, 2]);
    assert!(granted(&cluster.app_bag()).is_empty());
    assert_app_status(&cluster, StatusName::Active, "2 of 2 units on r3");
}

#[test]
fn a_unit_added_during_a_halted_rollout_waits_for_its_turn() {
    let (charm, broken) = charm_with_r3();
    let ctx = context_with(&charm, &broken);
    let mut cluster = halted_on_unit_3(&ctx, &broken);
    let added = cluster.add_unit();
    cluster.settle().unwrap();
    // It installed build_label (r3) only; the halted rollout grants nothing.
    assert!(cluster.unit(added).services.is_empty());
    assert_status(cluster.unit(added), StatusName::Waiting, "its turn");
    assert_app_status(&cluster, StatusName::Blocked, "(2 of 5 units on r3)");

    broken.lock().unwrap().clear();
    cluster.action(0, "resume-rollout", json!({})).unwrap();
    cluster.settle().unwrap();
    assert_all_serve(&cluster, "r3");
    assert_eq!(
        move_order(&cluster, 0, "r3").last().map(String::as_str),
        Some("wsgi-app/0")
    );
}

#[test]
fn a_killed_hook_is_retried_and_the_switch_reported_once() {
    let (charm, broken) = charm_with_r3();
    let ctx = context_with(&charm, &broken);
    let mut cluster = on_r2(&ctx, 3, "1");
    cluster.set_config("build_label", "r3");
    step_until_granted(&mut cluster, "wsgi-app/1");
    // Run unit 1's next hook (it acts on its grant) and kill it at the end:
    // the machine switched, Juju kept none of its writes.
    let event = on::relation_changed(PEER, None);
    let killed = cluster.kill_during(1, event).unwrap();
    assert_eq!(current_build(&killed.state), "r3");
    assert_eq!(
        cluster.unit_bag(1)["rollout-target"],
        "r2",
        "the report of the killed hook is gone"
    );

    cluster.settle().unwrap();
    assert_all_serve(&cluster, "r3");
    assert_eq!(cluster.unit_bag(1)["rollout-state"], "moved");
    let reports: Vec<_> = cluster
        .writes()
        .iter()
        .filter(|w| w.unit == 1)
        .filter_map(|w| w.unit_bag.as_ref())
        .filter(|bag| bag.get("rollout-target").map(String::as_str) == Some("r3"))
        .map(|bag| bag["rollout-id"].clone())
        .collect();
    assert_eq!(reports.len(), 1, "one report of the switch: {reports:?}");
    assert_app_status(&cluster, StatusName::Active, "3 of 3 units on r3");
}

#[test]
fn one_unit_is_a_rollout_of_one() {
    let (charm, broken) = charm_with_r3();
    let ctx = context_with(&charm, &broken);
    let mut cluster = on_r2(&ctx, 1, "1");
    cluster.set_config("build_label", "r3");
    cluster.settle().unwrap();
    assert_all_serve(&cluster, "r3");
    assert_app_status(&cluster, StatusName::Active, "1 of 1 units on r3");
}

#[test]
fn a_new_current_symlink_is_rolled_out_the_same_way() {
    let (charm, broken) = charm_with_r3();
    let ctx = context_with(&charm, &broken);
    let mut cluster = on_r2(&ctx, 3, "1");
    let since = cluster.writes().len();
    cluster.set_config("current_symlink", "r1");
    cluster.settle().unwrap();

    assert_all_serve(&cluster, "r1");
    let grants = grants_for(&cluster, "r1");
    assert!(grants.iter().all(|g| g.len() <= 1), "{grants:?}");
    assert_eq!(
        move_order(&cluster, since, "r1"),
        ["wsgi-app/1", "wsgi-app/2", "wsgi-app/0"]
    );
    assert_eq!(cluster.app_bag()["rollout-from"], "r2");
    assert_app_status(&cluster, StatusName::Active, "3 of 3 units on r1");
}

#[test]
fn pinning_a_granted_unit_answers_its_grant_and_the_rollout_goes_on() {
    let (charm, broken) = charm_with_r3();
    let ctx = context_with(&charm, &broken);
    let mut cluster = on_r2(&ctx, 3, "1");
    cluster.set_config("build_label", "r3");
    step_until_granted(&mut cluster, "wsgi-app/1");
    let pinned = cluster
        .action(1, "set-current-symlink", json!({ "symlink": "r1" }))
        .unwrap();
    assert_eq!(pinned.action.unwrap().failure, None);
    assert_eq!(cluster.unit_bag(1)["rollout-state"], "skipped-pinned");
    cluster.settle().unwrap();

    assert_eq!(current_build(cluster.unit(0)), "r3");
    assert_eq!(current_build(cluster.unit(1)), "r1");
    assert_eq!(current_build(cluster.unit(2)), "r3");
    assert_app_status(
        &cluster,
        StatusName::Active,
        "2 of 3 units on r3 (1 pinned elsewhere)",
    );
}
