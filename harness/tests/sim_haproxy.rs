//! charm-sim's load balancer (`add-remote --haproxy`) with a real haproxy
//! and a fake charm: bad command lines are refused before anything is made,
//! a configuration haproxy refuses leaves the previous one serving and says
//! why, a server found DOWN stays DOWN across a reload, and destroying the
//! model stops haproxy. The wsgi-app charm behind
//! it (traffic, health checks, reloads under load): tests/e2e_haproxy.rs.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::{Model, Sim};

/// Units of these models get 127.0.54.x; nothing listens there.
const BLOCK: &str = "127.0.54";

fn model(body: &str) -> Model {
    let sim = Sim::new(body);
    let charm = sim.charm.display().to_string();
    sim.ok(&["--address-block", BLOCK, "deploy", &charm]);
    Model(sim)
}

fn fails(sim: &Sim, args: &[&str], says: &str) {
    let out = sim.cli(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "charm-sim {args:?} succeeded");
    assert!(stderr.contains(says), "charm-sim {args:?}: {stderr}");
}

/// Whether any process names the model directory (haproxy does, in its
/// command line).
fn processes_of(sim: &Sim) -> Vec<String> {
    let model = sim.model.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&model))
        .collect()
}

fn answer(addr: &str) -> Result<u16, String> {
    wsgi_app::workload::health::http_get(addr, "/", Duration::from_secs(5))
        .map(|a| a.status)
        .map_err(|e| e.to_string())
}

#[test]
fn bad_load_balancer_command_lines_are_refused_and_leave_nothing() {
    let sim = model("true");
    fn add<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["add-remote", "lb", "--interface", "http"];
        args.extend(extra);
        args
    }
    fails(
        &sim,
        &add(&["--haproxy", "10.1.2.3:80"]),
        "keeps haproxy on this machine's loopback (127.0.0.0/8); 10.1.2.3 is not",
    );
    fails(
        &sim,
        &add(&["--haproxy", "127.0.54.211"]),
        "expected an IPv4 loopback address and a port",
    );
    fails(
        &sim,
        &[
            "add-remote",
            "lb",
            "--interface",
            "pgsql",
            "--haproxy",
            "127.0.54.211:8054",
        ],
        "speaks the \"http\" interface",
    );
    fails(
        &sim,
        &add(&["--haproxy", "127.0.54.211:8054", "--units", "2"]),
        "one unit",
    );
    fails(
        &sim,
        &add(&["--haproxy", "127.0.54.211:8054", "--provider"]),
        "cannot be used with",
    );
    // The address is taken: haproxy cannot bind, and says so.
    let taken = TcpListener::bind("127.0.54.211:8054").unwrap();
    fails(
        &sim,
        &add(&["--haproxy", "127.0.54.211:8054"]),
        "cannot bind socket",
    );
    drop(taken);
    let status = sim.status_json();
    assert!(
        status["applications"].get("lb").is_none(),
        "a refused add-remote leaves no application: {status:#}"
    );

    sim.ok(&add(&["--haproxy", "127.0.54.211:8054"]));
    fails(
        &sim,
        &[
            "add-remote",
            "lb2",
            "--interface",
            "http",
            "--haproxy",
            "127.0.54.211:8054",
        ],
        "load balancer \"lb\" already listens there",
    );
    sim.ok(&["add-remote", "db", "--interface", "pgsql"]);
    fails(&sim, &["lb-status", "db"], "\"db\" is not a load balancer");
    fails(&sim, &["remove-remote", "fake"], "is the charm under test");

    sim.ok(&["destroy"]);
    assert_eq!(processes_of(&sim), Vec::<String>::new());
    assert!(answer("127.0.54.211:8054").is_err());
}

#[test]
fn a_configuration_haproxy_refuses_leaves_the_previous_one_serving() {
    // A unit whose address haproxy cannot resolve.
    let sim = model(
        r#"case "$JUJU_DISPATCH_PATH" in
hooks/website-relation-joined) relation-set private-address=999.0.0.1 port=8080 ;;
esac"#,
    );
    let frontend = "127.0.54.212:8054";
    sim.ok(&[
        "add-remote",
        "lb",
        "--interface",
        "http",
        "--haproxy",
        frontend,
    ]);
    assert_eq!(answer(frontend), Ok(503));

    let out = sim.cli(&["relate", "fake:website", "lb"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "our hooks went fine: {stderr}");
    assert!(
        stderr.contains("lb: the previous haproxy configuration keeps serving")
            && stderr.contains("could not resolve address '999.0.0.1'"),
        "{stderr}"
    );

    let status = sim.cli(&["lb-status", "lb", "--format", "json"]);
    assert!(!status.status.success(), "lb-status reports the refusal");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["running"], true);
    assert_eq!(status["status"], "blocked");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("haproxy -c refused the new configuration"),
        "{status:#}"
    );
    assert_eq!(status["servers"], serde_json::json!([]));
    assert_eq!(
        answer(frontend),
        Ok(503),
        "the previous configuration serves"
    );

    sim.ok(&["destroy"]);
    assert_eq!(processes_of(&sim), Vec::<String>::new());
    assert!(answer(frontend).is_err(), "haproxy still answers");
}

/// Each server's name and state, from `lb-status --format json`.
fn server_states(sim: &Sim) -> Vec<(String, String)> {
    let out = sim.cli(&["lb-status", "lb", "--format", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    status["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let field = |k: &str| s[k].as_str().unwrap().to_string();
            (field("name"), field("state"))
        })
        .collect()
}

#[test]
fn a_server_found_down_stays_down_across_a_reload() {
    // Accepts connections and never answers: a check fails only when it
    // times out (5 s), so a server that forgot its state across a reload
    // would show UP until then.
    let silent = TcpListener::bind("127.0.54.220:18054").unwrap();
    let sim = model(
        "relation-set -r \"$JUJU_RELATION_ID\" private-address=127.0.54.220 port=18054 || true",
    );
    sim.ok(&[
        "add-remote",
        "lb",
        "--interface",
        "http",
        "--haproxy",
        "127.0.54.213:8054",
    ]);
    sim.ok(&["relate", "fake:website", "lb"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while server_states(&sim) != [("fake-0-18054".to_string(), "DOWN".to_string())] {
        assert!(
            std::time::Instant::now() < deadline,
            "fake/0 never went DOWN: {:?}",
            server_states(&sim)
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // A second unit: a new configuration, a new worker.
    sim.ok(&["add-unit", "fake"]);
    let after = server_states(&sim);
    assert_eq!(after.len(), 2, "{after:?}");
    assert_eq!(
        after[0],
        ("fake-0-18054".into(), "DOWN".into()),
        "{after:?}"
    );

    sim.ok(&["destroy"]);
    drop(silent);
    assert_eq!(processes_of(&sim), Vec::<String>::new());
}
