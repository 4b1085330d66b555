//! Today's databases with the real charm binary, charm-sim and real
//! gunicorn: relate `postgresql` to charm-sim's emulated PostgreSQL
//! (`add-remote --provider`), then rotate the password under bounded load.
//! The provider here has no real server behind it (tests/e2e_postgres.rs
//! gives it one), so the example app does not connect; what is checked is
//! the charm's side: the
//! request, DATABASE_URL in the environment file, the move to the new
//! password through a new gunicorn master with no failed request, and no
//! password in the status or the charm's log.

mod e2e_support;

use std::time::Duration;

use e2e_support::load::Load;
use e2e_support::{get, Sim};
use wsgi_app::workload::envvars::read_env_file;

fn env_value(sim: &Sim, name: &str) -> Option<String> {
    let path = sim.unit_root("wsgi-app/0").join("etc/wsgi-app/environment");
    read_env_file(&path)
        .unwrap()
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// Every unit's hooks.log (hook output and juju-log) under the model.
fn hooks_logs(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == "root") {
            continue;
        }
        if path.is_dir() && !path.is_symlink() {
            found.extend(hooks_logs(&path));
        } else if path.file_name().is_some_and(|n| n == "hooks.log") {
            found.push(std::fs::read_to_string(&path).unwrap_or_default());
        }
    }
    found
}

#[test]
fn a_password_rotation_moves_the_app_to_the_new_url_without_failing_a_request() {
    let sim = Sim::new("127.0.47");
    sim.ok(&[
        "deploy",
        &sim.charm_dir(),
        "--units",
        "1",
        "--config",
        "build_label=r1",
    ]);
    let addr = sim.unit_url(0);
    assert_eq!(get(&addr).unwrap(), "It works! Revision 1");

    sim.ok(&[
        "add-remote",
        "postgresql",
        "--interface",
        "postgresql_client",
        "--provider",
    ]);
    sim.ok(&["relate", "wsgi-app:postgresql", "postgresql"]);
    let url = env_value(&sim, "DATABASE_URL").expect("DATABASE_URL after the answer");
    assert!(url.starts_with("postgresql://relation-"), "{url}");
    assert!(url.ends_with("@127.0.0.1:5432/wsgi-app"), "{url}");
    let status = sim.status_json();
    assert_eq!(sim.workload_status(&status, "wsgi-app/0"), "active");

    let model = harness::sim::store::Model::open(&sim.model_dir()).unwrap();
    let rel = sim.relation_to("postgresql");
    let uri = model
        .bag(rel.id, "postgresql")
        .unwrap()
        .get("secret-user")
        .cloned()
        .expect("the provider's secret");
    let user = format!("relation-{}", rel.id);
    let rotated = "r0tated-Pa55";
    let uris = format!("postgresql://{user}:{rotated}@127.0.0.1:5432/wsgi-app");

    let load = Load::start(std::slice::from_ref(&addr), 2);
    std::thread::sleep(Duration::from_millis(300));
    sim.ok(&[
        "rotate-secret",
        &uri,
        &format!("username={user}"),
        &format!("password={rotated}"),
        &format!("uris={uris}"),
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let result = load.finish();
    assert!(result.sent > 0);
    assert_eq!(result.failed, 0, "failed requests: {:?}", result.errors);
    assert_eq!(env_value(&sim, "DATABASE_URL"), Some(uris));
    assert_eq!(get(&addr).unwrap(), "It works! Revision 1");

    let status = sim.status_json().to_string();
    let logs = hooks_logs(&sim.model_dir());
    assert!(!logs.is_empty(), "the units' hook logs");
    for text in logs.iter().chain([&status]) {
        assert!(!text.contains(rotated), "the password leaked");
    }
    sim.ok(&["unrelate", "wsgi-app:postgresql", "postgresql"]);
    assert_eq!(env_value(&sim, "DATABASE_URL"), None);
    sim.destroy_and_check_nothing_left(&[&addr]);
}
