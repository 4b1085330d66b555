//! The seed's walkthrough, end to end: the real charm binary run by
//! charm-sim (emulated hook tools, Juju's event order) with real gunicorn.
//!
//! Deploy two units at r1, both answer Revision 1; install r2 beside r1
//! while the application stays on r1; move unit 0 with the action; unit 0
//! answers Revision 2 and unit 1 Revision 1; move the application; both
//! answer Revision 2; roll one unit back, and forward again with the
//! seed's `CURRENT_SYMLINK=r2 actions/set-current-symlink` command.

mod e2e_support;

use e2e_support::{get, Sim};

#[test]
fn the_original_rolling_upgrade_walkthrough() {
    let sim = Sim::new("127.0.41");
    sim.ok(&[
        "deploy",
        &sim.charm_dir(),
        "--units",
        "2",
        "--config",
        "build_label=r1",
    ]);
    let (u0, u1) = (sim.unit_url(0), sim.unit_url(1));
    assert_eq!(get(&u0).unwrap(), "It works! Revision 1");
    assert_eq!(get(&u1).unwrap(), "It works! Revision 1");

    sim.ok(&["config", "wsgi-app", "current_symlink=r1", "build_label=r2"]);
    assert_eq!(
        get(&u0).unwrap(),
        "It works! Revision 1",
        "r2 installed, r1 still current"
    );
    assert_eq!(get(&u1).unwrap(), "It works! Revision 1");

    let out = sim.ok(&["run", "wsgi-app/0", "set-current-symlink", "symlink=r2"]);
    assert!(out.contains("current: r2"), "{out}");
    assert!(out.contains("previous: r1"), "{out}");
    assert_eq!(get(&u0).unwrap(), "It works! Revision 2");
    assert_eq!(get(&u1).unwrap(), "It works! Revision 1");
    let status = sim.status_json();
    assert_eq!(
        sim.workload_message(&status, "wsgi-app/0"),
        "serving r2 on :8080 (pinned; application wants r1)"
    );
    assert_eq!(
        sim.workload_message(&status, "wsgi-app/1"),
        "serving r1 on :8080"
    );

    sim.ok(&["config", "wsgi-app", "current_symlink=r2"]);
    assert_eq!(get(&u0).unwrap(), "It works! Revision 2");
    assert_eq!(get(&u1).unwrap(), "It works! Revision 2");
    let status = sim.status_json();
    assert_eq!(
        sim.workload_message(&status, "wsgi-app/0"),
        "serving r2 on :8080"
    );

    // The one-command way back.
    let out = sim.ok(&["run", "wsgi-app/1", "rollback"]);
    assert!(out.contains("current: r1"), "{out}");
    assert_eq!(get(&u1).unwrap(), "It works! Revision 1");

    // The seed's own spelling: the action run as a command in the unit's
    // hook context (`juju run --unit` then, `juju exec` now).
    let out = sim.ok(&[
        "exec",
        "wsgi-app/1",
        "--",
        "sh",
        "-c",
        "CURRENT_SYMLINK=r2 actions/set-current-symlink",
    ]);
    assert!(out.contains("current: r2"), "{out}");
    assert_eq!(get(&u1).unwrap(), "It works! Revision 2");
    let status = sim.status_json();
    assert_eq!(
        sim.workload_message(&status, "wsgi-app/1"),
        "serving r2 on :8080",
        "back on the application's build: no longer pinned"
    );
    let missing = sim.fails(&["exec", "wsgi-app/1", "--", "actions/set-current-symlink"]);
    assert!(missing.contains("CURRENT_SYMLINK=r2"), "{missing}");

    // A label that is a path is refused, and nothing changes.
    let refused = sim.fails(&[
        "run",
        "wsgi-app/0",
        "set-current-symlink",
        "symlink=../../etc",
    ]);
    assert!(refused.contains("is not a build label"), "{refused}");
    assert_eq!(get(&u0).unwrap(), "It works! Revision 2");

    sim.destroy_and_check_nothing_left(&[&u0, &u1]);
}
