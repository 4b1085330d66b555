//! Every endpoint through the charm, with the realistic data of
//! shared/reference/ops-and-interfaces.md §3.

mod charm_support;

use charm_support::*;
use harness::{bag, on, Relation, State};
use wsgi_app::ops::{Bag, StatusName};
use wsgi_app::workload::envvars::read_env_file;

const PASSWORD: &str = "p@ss:w/rd%2F s";

/// A legacy PostgreSQL unit's bag (reference §3(a)), listing `allowed`.
fn postgres_bag(allowed: &str) -> Bag {
    bag([
        ("host", "10.0.0.10"),
        ("port", "5432"),
        ("user", "wsgi_app_user"),
        ("password", PASSWORD),
        ("database", "wsgi-app"),
        ("state", "standalone"),
        ("allowed-units", allowed),
        ("allowed-subnets", "192.0.2.0/32"),
        ("version", "14"),
    ])
}

fn app_env(state: &State) -> Vec<(String, String)> {
    read_env_file(&state.machine.path("/etc/wsgi-app/environment")).unwrap()
}

fn env_value(state: &State, name: &str) -> Option<String> {
    app_env(state)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn pgsql(allowed: &str) -> Relation {
    Relation::new(3, "pgsql", "postgresql").with_remote_unit_data(0, postgres_bag(allowed))
}

#[test]
fn database_url_waits_for_allowed_units_then_appears_percent_encoded() {
    let ctx = context();
    // Listed: another unit of ours, not this one.
    let state = serving_r1(&ctx).with_relation(pgsql("wsgi-app/1"));
    let chain = ctx.chain(state).relate(3).unwrap();
    let waiting = chain.state();
    assert_status(
        waiting,
        StatusName::Waiting,
        "waiting for postgresql/0 to list wsgi-app/0 in allowed-units",
    );
    assert_status(waiting, StatusName::Waiting, "serving r1");
    assert_eq!(env_value(waiting, "DATABASE_URL"), None);
    // We asked for our database, in our unit bag (and the app bag as leader).
    let rel = waiting.relation(3).unwrap();
    assert_eq!(
        rel.local_unit_data.get("database").map(String::as_str),
        Some("wsgi-app")
    );
    assert_eq!(
        rel.local_app_data.get("database").map(String::as_str),
        Some("wsgi-app")
    );
    let fingerprint = waiting.service_fingerprint("wsgi-app").map(str::to_string);

    let chain = chain
        .update_state(|s| {
            s.update_remote_unit_data(3, 0, bag([("allowed-units", "wsgi-app/0 wsgi-app/1")]))
        })
        .run(on::relation_changed(3, Some(0)))
        .unwrap();
    let ready = chain.state();
    assert_status(ready, StatusName::Active, "serving r1 on :8080");
    let url = env_value(ready, "DATABASE_URL").expect("DATABASE_URL set");
    assert_eq!(
        url,
        "postgresql://wsgi_app_user:p%40ss%3Aw%2Frd%252F%20s@10.0.0.10:5432/wsgi-app"
    );
    let parsed = url::Url::parse(&url).unwrap();
    assert_eq!(
        percent_decode(parsed.password().unwrap()),
        PASSWORD,
        "the password survives a real URL parser"
    );
    assert_ne!(
        ready.service_fingerprint("wsgi-app").map(str::to_string),
        fingerprint,
        "the app restarts with it"
    );
    // The secret goes nowhere but the env file.
    let out = chain.last();
    for (_, line) in &out.logs {
        assert!(
            !line.contains("p@ss") && !line.contains("p%40ss"),
            "secret in log: {line}"
        );
    }
    for status in &out.unit_status_history {
        assert!(!status.message.contains("p@ss"));
    }
}

fn percent_decode(s: &str) -> String {
    wsgi_app::charm::relations::percent::decode_component(s).unwrap()
}

#[test]
fn cross_model_access_is_checked_against_allowed_subnets() {
    let ctx = context();
    let mut bag = postgres_bag("");
    bag.remove("allowed-units");
    let state = serving_r1(&ctx)
        .with_relation(Relation::new(3, "pgsql", "postgresql").with_remote_unit_data(0, bag));
    let ready = ctx.chain(state).relate(3).unwrap().into_state();
    assert!(
        env_value(&ready, "DATABASE_URL").is_some(),
        "192.0.2.0/32 is allowed"
    );
}

#[test]
fn mongodb_two_units_with_a_replica_set() {
    let ctx = context();
    let unit = |host: &str| {
        bag([
            ("hostname", host),
            ("port", "27017"),
            ("replset", "rs0"),
            ("type", "database"),
        ])
    };
    let state = serving_r1(&ctx).with_relation(
        Relation::new(5, "mongodb", "mongodb")
            .with_remote_units([0, 1])
            .with_remote_unit_data(0, unit("10.0.0.21"))
            .with_remote_unit_data(1, unit("10.0.0.22")),
    );
    let ready = ctx.chain(state).relate(5).unwrap().into_state();
    assert_eq!(
        env_value(&ready, "MONGO_URL").as_deref(),
        Some("mongodb://10.0.0.21:27017,10.0.0.22:27017/?replicaSet=rs0")
    );
}

#[test]
fn a_broken_relation_removes_only_its_own_url() {
    let ctx = context();
    // Related one after the other, each told to the unit as Juju does.
    let both = ctx
        .chain(serving_r1(&ctx).with_relation(pgsql("wsgi-app/0")))
        .relate(3)
        .unwrap()
        .update_state(|s| {
            s.with_relation(
                Relation::new(5, "mongodb", "mongodb")
                    .with_remote_unit_data(0, bag([("hostname", "10.0.0.21"), ("port", "27017")])),
            )
        })
        .relate(5)
        .unwrap()
        .update_state(|s| {
            s.with_relation(
                Relation::new(7, "manager-service", "manager").with_remote_unit_data(
                    0,
                    bag([("hostname", "manager.example.com"), ("port", "8000")]),
                ),
            )
        })
        .relate(7)
        .unwrap()
        .into_state();
    assert!(env_value(&both, "DATABASE_URL").is_some());
    assert_eq!(
        env_value(&both, "MONGO_URL").as_deref(),
        Some("mongodb://10.0.0.21:27017/")
    );
    assert_eq!(
        env_value(&both, "MANAGER_SERVICE_URL").as_deref(),
        Some("http://manager.example.com:8000")
    );

    // mongodb goes: DATABASE_URL stays (the old charm removed it).
    let no_mongo = ctx
        .chain(both)
        .run(on::relation_departed(5, 0))
        .unwrap()
        .run(on::relation_broken(5))
        .unwrap()
        .into_state();
    assert_eq!(env_value(&no_mongo, "MONGO_URL"), None);
    assert!(env_value(&no_mongo, "DATABASE_URL").is_some());
    assert!(env_value(&no_mongo, "MANAGER_SERVICE_URL").is_some());

    // pgsql goes: DATABASE_URL goes, the others stay.
    let no_pg = ctx
        .chain(no_mongo)
        .run(on::relation_departed(3, 0))
        .unwrap()
        .run(on::relation_broken(3))
        .unwrap()
        .into_state();
    assert_eq!(env_value(&no_pg, "DATABASE_URL"), None);
    assert!(env_value(&no_pg, "MANAGER_SERVICE_URL").is_some());
    assert_status(&no_pg, StatusName::Active, "serving r1");
}

#[test]
fn website_data_follows_the_port() {
    let ctx = context();
    let state = serving_r1(&ctx).with_relation(Relation::new(9, "website", "haproxy"));
    let related = ctx.chain(state).relate(9).unwrap().into_state();
    let data = &related.relation(9).unwrap().local_unit_data;
    assert_eq!(data["port"], "8080");
    assert_eq!(data["hostname"], "192.0.2.0");
    assert_eq!(data["private-address"], "192.0.2.0");
    let moved = ctx
        .run(
            on::config_changed(),
            related.with_config("listen_port", 9090),
        )
        .unwrap();
    assert_eq!(
        moved.state.relation(9).unwrap().local_unit_data["port"],
        "9090"
    );
}

#[test]
fn nrpe_files_have_the_exact_contents_and_go_with_the_relation() {
    let ctx = context();
    let mut state = serving_r1(&ctx)
        .with_config("nagios_index_content", "It works! \"quoted\" $(reboot)")
        .with_relation(
            Relation::new(11, "nrpe-external-master", "nrpe")
                .with_remote_unit_data(0, bag([("nagios_hostname", "juju-wsgi-app-0")])),
        );
    std::fs::create_dir_all(state.machine.path("/var/lib/nagios/export")).unwrap();
    state = ctx.chain(state).relate(11).unwrap().into_state();
    let command = std::fs::read_to_string(
        state
            .machine
            .path("/etc/nagios/nrpe.d/check_wsgi-app_http.cfg"),
    )
    .unwrap();
    let line = command
        .lines()
        .find(|l| l.starts_with("command["))
        .expect("a command line");
    assert_eq!(
        line,
        "command[check_wsgi-app_http]=/usr/lib/nagios/plugins/check_http -I 192.0.2.0 -p 8080 -u / -e 200 -s 'It works! \"quoted\" $$(reboot)'"
    );
    let export = state
        .machine
        .path("/var/lib/nagios/export/service__juju-wsgi-app-0_check_wsgi-app_http.cfg");
    let export = std::fs::read_to_string(export).unwrap();
    assert!(
        export.contains("check_command") && export.contains("check_nrpe!check_wsgi-app_http"),
        "{export}"
    );
    let monitors = &state.relation(11).unwrap().local_unit_data["monitors"];
    assert!(monitors.contains("check_wsgi-app_http"), "{monitors}");

    let gone = ctx
        .chain(state)
        .run(on::relation_departed(11, 0))
        .unwrap()
        .run(on::relation_broken(11))
        .unwrap()
        .into_state();
    assert!(!gone
        .machine
        .path("/etc/nagios/nrpe.d/check_wsgi-app_http.cfg")
        .exists());
    assert!(!gone
        .machine
        .path("/var/lib/nagios/export/service__juju-wsgi-app-0_check_wsgi-app_http.cfg")
        .exists());
}

#[test]
fn relation_data_changes_rerun_the_make_target() {
    let ctx = context();
    let state = serving_r1(&ctx)
        .with_config("update_make_target", "migrate")
        .with_relation(pgsql("wsgi-app/0"));
    let out = ctx.chain(state).relate(3).unwrap();
    let made = out
        .outputs()
        .iter()
        .flat_map(|o| o.commands.iter())
        .any(|c| c.program == "make" && c.args.last().map(String::as_str) == Some("migrate"));
    assert!(made, "make migrate ran when DATABASE_URL arrived");
}
