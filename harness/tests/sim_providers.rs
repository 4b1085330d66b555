//! charm-sim's emulated database providers (`add-remote --provider`):
//! nothing but endpoints until our leader asks for a database, then the
//! credentials in a secret granted on the relation, as Charmed PostgreSQL
//! and Charmed MongoDB answer (modern-interfaces.md §2, §3).

mod common;

use std::fs;

use common::{dispatch_script, Sim, METADATA};
use harness::sim::store::Model;

/// A fake charm with a `pg` (postgresql_client) endpoint: its leader asks
/// for `shop` when `ask` is true, and every relation-changed saves what the
/// provider's user secret holds, when it names one.
fn sim(ask: bool) -> Sim {
    let sim = Sim::new("true");
    let out = sim.tmp.path();
    let request = if ask {
        r#"[ "$(is-leader --format=json)" = true ] && relation-set --app database=shop 'requested-secrets=["username","password","tls","tls-ca","uris","read-only-uris"]'"#
    } else {
        "true"
    };
    let body = format!(
        r#"case "$JUJU_DISPATCH_PATH" in
hooks/pg-relation-created) {request} ;;
hooks/pg-relation-changed|hooks/secret-changed)
  uri=$(relation-get -r pg:0 --app secret-user postgresql)
  if [ -n "$uri" ]; then secret-get --format=json --refresh "$uri" --label pg.0.user.secret > '{out}/creds.json'; fi ;;
esac"#,
        out = out.display()
    );
    fs::write(
        sim.charm.join("dispatch"),
        dispatch_script(&sim.events, &body),
    )
    .unwrap();
    fs::write(
        sim.charm.join("metadata.yaml"),
        METADATA.replace(
            "requires:\n",
            "requires:\n  pg:\n    interface: postgresql_client\n",
        ),
    )
    .unwrap();
    sim
}

fn creds(sim: &Sim) -> Option<serde_json::Value> {
    let text = fs::read_to_string(sim.tmp.path().join("creds.json")).ok()?;
    Some(serde_json::from_str(&text).unwrap())
}

#[test]
fn the_provider_answers_our_request_with_a_granted_secret() {
    let sim = sim(true);
    sim.deploy(1);
    sim.ok(&[
        "add-remote",
        "postgresql",
        "--interface",
        "postgresql_client",
        "--provider",
    ]);
    sim.ok(&["relate", "fake:pg", "postgresql"]);
    let model = Model::open(&sim.model).unwrap();
    let rel = model.relations().unwrap().remove(0);
    assert_eq!(rel.remote_endpoint, "database");
    let theirs = model.bag(rel.id, "postgresql").unwrap();
    assert_eq!(theirs.get("database").map(String::as_str), Some("shop"));
    assert_eq!(
        theirs.get("endpoints").map(String::as_str),
        Some("127.0.0.1:5432")
    );
    assert!(theirs.get("secret-user").unwrap().starts_with("secret:"));
    assert!(theirs.contains_key("secret-tls"));
    assert!(
        !theirs.contains_key("password"),
        "credentials travel in the secret"
    );
    let creds = creds(&sim).expect("the unit read the secret");
    assert_eq!(creds["username"], format!("relation-{}", rel.id));
    let password = creds["password"].as_str().unwrap().to_string();
    assert!(creds["uris"]
        .as_str()
        .unwrap()
        .starts_with("postgresql://relation-"));

    // A rotation: the unit gets secret-changed and reads the new revision.
    let uri = theirs.get("secret-user").unwrap().clone();
    sim.ok(&[
        "rotate-secret",
        &uri,
        &format!("username=relation-{}", rel.id),
        "password=rotated",
    ]);
    assert!(sim
        .events_of("fake/0")
        .iter()
        .any(|e| e == "secret-changed"));
    let rotated = self::creds(&sim).unwrap();
    assert_eq!(rotated["password"], "rotated");
    assert_ne!(password, "rotated");
}

#[test]
fn no_credentials_before_a_request() {
    let sim = sim(false);
    sim.deploy(1);
    sim.ok(&[
        "add-remote",
        "postgresql",
        "--interface",
        "postgresql_client",
        "--provider",
    ]);
    sim.ok(&["relate", "fake:pg", "postgresql"]);
    let model = Model::open(&sim.model).unwrap();
    let rel = model.relations().unwrap().remove(0);
    let theirs = model.bag(rel.id, "postgresql").unwrap();
    assert!(theirs.contains_key("endpoints"), "endpoints may come first");
    for key in ["database", "secret-user", "username", "password"] {
        assert!(!theirs.contains_key(key), "{key} before our request");
    }
    assert!(creds(&sim).is_none());
}

#[test]
fn only_the_database_interfaces_are_emulated() {
    let sim = sim(true);
    sim.deploy(1);
    let out = sim.cli(&["add-remote", "pg", "--interface", "pgsql", "--provider"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("emulates postgresql_client and mongodb_client only"));
}

#[test]
fn rotate_password_publishes_a_new_revision_with_a_new_password() {
    let sim = sim(true);
    sim.deploy(1);
    sim.ok(&[
        "add-remote",
        "postgresql",
        "--interface",
        "postgresql_client",
        "--provider",
    ]);
    sim.ok(&["relate", "fake:pg", "postgresql"]);
    let before = creds(&sim).expect("the unit read the secret");
    let out = sim.ok(&["rotate-password", "postgresql"]);
    assert!(out.contains("revision 2"), "{out}");
    let after = creds(&sim).expect("secret-changed read the new revision");
    assert_eq!(after["username"], before["username"]);
    assert_ne!(after["password"], before["password"]);
    let password = after["password"].as_str().unwrap();
    assert!(after["uris"].as_str().unwrap().contains(password));

    let out = sim.cli(&["rotate-password", "fake"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an emulated provider"));
}

#[test]
fn a_real_postgresql_is_named_by_a_url_and_only_for_postgresql_client() {
    let sim = sim(true);
    sim.deploy(1);
    for (args, why) in [
        (
            &[
                "--interface",
                "mongodb_client",
                "--provider",
                "--postgres",
                "postgresql://a@h",
            ][..],
            "--postgres backs a postgresql_client provider",
        ),
        (
            &[
                "--interface",
                "postgresql_client",
                "--provider",
                "--postgres",
                "postgresql://a:hunter2@h/db?x=1",
            ][..],
            "query parameters are not supported",
        ),
        (
            &[
                "--interface",
                "postgresql_client",
                "--postgres",
                "postgresql://a@h",
            ][..],
            "--provider",
        ),
    ] {
        let mut argv = vec!["add-remote", "db"];
        argv.extend_from_slice(args);
        let out = sim.cli(&argv);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains(why), "{argv:?}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}
