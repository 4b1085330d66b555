//! Leader-coordinated rollouts where users are: four units of the real
//! charm behind charm-sim's real haproxy (`website`), their hooks running
//! side by side as Juju's agents run them, the peer relation carrying the
//! leader's grants, and a bounded load through haproxy for the whole of
//! each rollout. r1 → r2 moves every unit with no failed request at the
//! balancer; r2 → r3 (imports, then answers 500) halts at the first unit,
//! which the pre-flight keeps on r2, with no failed request and every unit
//! still on r2; `abort-rollout` ends it, and `rollout-status` shows each
//! step.

mod e2e_support;

use e2e_support::load::Load;
use e2e_support::{get, Sim};

const BLOCK: &str = "127.0.57";
const FRONTEND: &str = "127.0.57.200:8057";
const UNITS: [&str; 4] = ["wsgi-app/0", "wsgi-app/1", "wsgi-app/2", "wsgi-app/3"];

/// Imports fine, answers 500 on every path: broken only at run time.
const ANSWERS_500: &str = r#"
def application(environ, start_response):
    body = b"TemplateNotFound: index.html"
    start_response("500 Internal Server Error", [("Content-Length", str(len(body)))])
    return [body]
"#;

fn app_status(sim: &Sim) -> (String, String) {
    let status = sim.status_json();
    let app = &status["applications"]["wsgi-app"]["application-status"];
    (
        app["current"].as_str().unwrap_or_default().to_string(),
        app["message"].as_str().unwrap_or_default().to_string(),
    )
}

/// `rollout-status` on the leader, as its results.
fn rollout_status(sim: &Sim) -> String {
    sim.ok(&["run", "wsgi-app/0", "rollout-status"])
}

fn revision_of_each_unit(sim: &Sim) -> Vec<String> {
    (0..UNITS.len() as u32)
        .map(|n| get(&sim.unit_url(n)).unwrap())
        .collect()
}

/// When `unit` started serving `build`: the start time of the hook that
/// logged it (charm-sim's hooks.log headers carry the time).
fn switched_at(sim: &Sim, unit: &str, build: &str) -> f64 {
    let log = sim
        .model_dir()
        .join("units")
        .join(unit.replace('/', "-"))
        .join("hooks.log");
    let text = std::fs::read_to_string(&log).unwrap();
    let mut hook_started = None;
    for line in text.lines() {
        if let Some(header) = line.strip_prefix("=== ") {
            hook_started = header
                .split_whitespace()
                .next()
                .and_then(|t| t.parse().ok());
        } else if line.contains(&format!("serving build {build} ")) {
            return hook_started.expect("a hook header before the log line");
        }
    }
    panic!("{unit} never logged serving {build}:\n{text}");
}

#[test]
fn rollouts_behind_a_real_haproxy_move_batch_by_batch_and_halt_on_a_broken_build() {
    let sim = Sim::new(BLOCK);
    sim.ship_build("r3", ANSWERS_500);
    sim.ok(&[
        "deploy",
        &sim.charm_dir(),
        "--units",
        "4",
        "--config",
        "build_label=r1",
    ]);
    sim.ok(&[
        "add-remote",
        "lb",
        "--interface",
        "http",
        "--haproxy",
        FRONTEND,
    ]);
    sim.ok(&["relate", "wsgi-app:website", "lb"]);
    assert_eq!(get(FRONTEND).unwrap(), "It works! Revision 1");

    // Install r2 beside r1 on every unit, still serving r1.
    sim.ok(&["config", "wsgi-app", "current_symlink=r1", "build_label=r2"]);
    assert_eq!(revision_of_each_unit(&sim), vec!["It works! Revision 1"; 4]);

    // r1 → r2, one unit at a time, under load at the balancer.
    let load = Load::start(&[FRONTEND.to_string()], 2);
    std::thread::sleep(std::time::Duration::from_millis(300));
    sim.ok(&["config", "wsgi-app", "current_symlink=r2"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    load.finish_without_failures("rollout r1 → r2 through haproxy", 100);
    assert_eq!(revision_of_each_unit(&sim), vec!["It works! Revision 2"; 4]);
    let done = rollout_status(&sim);
    assert!(done.contains("target: r2"), "{done}");
    assert!(done.contains("state: done"), "{done}");
    // Batch 1, leader last: the units moved one after another, in the
    // order the leader granted them, the leader (wsgi-app/0) at the end.
    let moved: Vec<f64> = UNITS.iter().map(|u| switched_at(&sim, u, "r2")).collect();
    assert!(
        moved[1] < moved[2] && moved[2] < moved[3] && moved[3] < moved[0],
        "switch times {moved:?}"
    );

    // r2 → r3, which answers 500: the first unit's pre-flight refuses it,
    // the rollout halts there, and nothing else moves.
    sim.ok(&["config", "wsgi-app", "build_label=r3"]);
    let load = Load::start(&[FRONTEND.to_string()], 2);
    std::thread::sleep(std::time::Duration::from_millis(300));
    sim.ok(&["config", "wsgi-app", "current_symlink=r3"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    load.finish_without_failures("rollout r2 → r3 (broken) through haproxy", 100);
    assert_eq!(
        revision_of_each_unit(&sim),
        vec!["It works! Revision 2"; 4],
        "no unit serves r3"
    );
    let (state, message) = app_status(&sim);
    assert_eq!(state, "blocked", "{message}");
    assert!(
        message.starts_with("rollout of r3 halted: wsgi-app/1"),
        "the first unit granted is the first non-leader: {message}"
    );
    assert!(message.contains("HTTP 500"), "{message}");
    assert!(message.contains("(0 of 4 units on r3)"), "{message}");
    let halted = rollout_status(&sim);
    assert!(halted.contains("state: halted"), "{halted}");
    for unit in &UNITS[2..] {
        let message = sim.workload_message(&sim.status_json(), unit);
        assert!(message.contains("serving r2"), "{unit}: {message}");
    }
    // Halted stays halted: another hook moves nothing.
    sim.ok(&["update-status"]);
    assert_eq!(revision_of_each_unit(&sim), vec!["It works! Revision 2"; 4]);
    assert_eq!(app_status(&sim).0, "blocked");

    // abort-rollout: every unit serves what the application served before.
    sim.ok(&["run", "wsgi-app/0", "abort-rollout"]);
    assert_eq!(revision_of_each_unit(&sim), vec!["It works! Revision 2"; 4]);
    let aborted = rollout_status(&sim);
    assert!(!aborted.contains("state: halted"), "{aborted}");
    assert_eq!(get(FRONTEND).unwrap(), "It works! Revision 2");

    // Seen once on a busy machine: read right after the abort, the stats
    // socket listed 2 servers while charm-sim's configuration had 4 (most
    // likely the worker being replaced answering; not proven). What counts
    // is where the balancer settles, so ask for a bounded while.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let servers = loop {
        let (_, servers) = sim.lb_status("lb");
        let listed = servers["servers"].as_array().map_or(0, Vec::len);
        if listed == 4 || std::time::Instant::now() > deadline {
            break servers;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    assert_eq!(
        servers["servers"].as_array().unwrap().len(),
        4,
        "{servers:#}"
    );
    sim.ok(&["remove-remote", "lb"]);
    let addrs: Vec<String> = (0..4).map(|n| sim.unit_url(n)).collect();
    let addrs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    sim.destroy_and_check_nothing_left(&addrs);
}
