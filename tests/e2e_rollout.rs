//! Switching builds on a live unit: continuous requests (loopback,
//! bounded) while the unit moves r1 → r2 → r1 ... by action and by config,
//! with the real charm binary, charm-sim and real gunicorn. Not one request
//! may fail, and after each switch the unit answers the right revision.

mod e2e_support;

use std::time::Duration;

use e2e_support::load::Load;
use e2e_support::{get, Sim};

#[test]
fn switching_builds_under_load_fails_no_request() {
    let sim = Sim::new("127.0.42");
    sim.ok(&[
        "deploy",
        &sim.charm_dir(),
        "--units",
        "1",
        "--config",
        "build_label=r1",
    ]);
    sim.ok(&["config", "wsgi-app", "current_symlink=r1", "build_label=r2"]);
    let addr = sim.unit_url(0);
    assert_eq!(get(&addr).unwrap(), "It works! Revision 1");

    let load = Load::start(std::slice::from_ref(&addr), 2);
    std::thread::sleep(Duration::from_millis(300));
    let steps: &[(&[&str], &str)] = &[
        (
            &["run", "wsgi-app/0", "set-current-symlink", "symlink=r2"],
            "2",
        ),
        (
            &["run", "wsgi-app/0", "set-current-symlink", "symlink=r1"],
            "1",
        ),
        (&["run", "wsgi-app/0", "rollback"], "2"),
        (&["config", "wsgi-app", "current_symlink=r2"], "2"),
        (&["config", "wsgi-app", "current_symlink=r1"], "1"),
        (&["config", "wsgi-app", "current_symlink=latest"], "2"),
        (
            &["run", "wsgi-app/0", "set-current-symlink", "symlink=r1"],
            "1",
        ),
        // An environment change needs a new master too.
        (
            &[
                "config",
                "wsgi-app",
                "environment_variables=GREETING='hello world'",
            ],
            "1",
        ),
    ];
    for (args, revision) in steps {
        sim.ok(args);
        assert_eq!(
            get(&addr).unwrap(),
            format!("It works! Revision {revision}"),
            "after {args:?}"
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    let result = load.finish();
    let (sent, failed, errors) = (result.sent, result.failed, result.errors);
    eprintln!(
        "{sent} requests during {} switches, {failed} failed",
        steps.len()
    );
    assert!(sent > 100, "the load ran ({sent} requests)");
    assert_eq!(failed, 0, "{failed} of {sent} requests failed: {errors:?}");

    sim.destroy_and_check_nothing_left(&[&addr]);
}
