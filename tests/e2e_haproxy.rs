//! The local model's load balancer end to end: the real charm binary on
//! charm-sim's units, real gunicorn, and a real haproxy (`charm-sim
//! add-remote lb --interface http --haproxy ADDRESS:PORT`) related to our
//! `website` endpoint. Requests through haproxy reach every unit; a unit
//! added or removed under a bounded load through haproxy costs no request;
//! a unit that answers 500 on `nagios_index_path` is marked DOWN and gets
//! no traffic; a new `listen_port` moves the servers; without the relation
//! haproxy answers 503; removing the remote application stops haproxy.

mod e2e_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use e2e_support::load::Load;
use e2e_support::{get, get_path, Sim};

const BLOCK: &str = "127.0.54";
const FRONTEND: &str = "127.0.54.200:8054";

/// Says which address it was reached at, so a test sees which unit served;
/// `/health` answers 500 while a file `unhealthy` lies beside the module.
const WHOAMI: &str = r#"
import os

UNHEALTHY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "unhealthy")


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/health" and os.path.exists(UNHEALTHY):
        status, body = "500 Internal Server Error", b"unhealthy"
    else:
        host, port = environ["gunicorn.socket"].getsockname()[:2]
        status = "200 OK"
        body = ("It works! Revision whoami at %s:%d" % (host, port)).encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"#;

/// Each backend server's address and state.
fn servers(sim: &Sim) -> Vec<(String, String)> {
    let (healthy, status) = sim.lb_status("lb");
    assert!(
        healthy,
        "haproxy is not serving its configuration: {status:#}"
    );
    status["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let field = |k: &str| s[k].as_str().unwrap().to_string();
            (field("address"), field("state"))
        })
        .collect()
}

fn all_up(sim: &Sim, units: &[u32]) -> Vec<(String, String)> {
    units
        .iter()
        .map(|n| (sim.unit_url(*n), "UP".to_string()))
        .collect()
}

/// Wait (boundedly: haproxy's checks run every 2 s, every 500 ms while a
/// state changes) until haproxy's servers are `wanted`.
fn wait_for_servers(sim: &Sim, wanted: &[(String, String)]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = servers(sim);
        if now == wanted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "haproxy's servers stayed {now:?}, expected {wanted:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Send `n` requests through haproxy; every one must succeed. The unit
/// addresses that answered.
fn served_by(n: usize) -> BTreeSet<String> {
    (0..n)
        .map(|i| {
            let body = get(FRONTEND).unwrap_or_else(|e| panic!("request {i}: {e}"));
            body.strip_prefix("It works! Revision whoami at ")
                .unwrap_or_else(|| panic!("request {i} answered {body:?}"))
                .to_string()
        })
        .collect()
}

fn addresses(sim: &Sim, units: &[u32]) -> BTreeSet<String> {
    units.iter().map(|n| sim.unit_url(*n)).collect()
}

#[test]
fn haproxy_in_front_of_the_units_follows_the_relation_and_their_health() {
    let sim = Sim::new(BLOCK);
    sim.ship_build("whoami", WHOAMI);
    sim.ok(&[
        "deploy",
        &sim.charm_dir(),
        "--units",
        "2",
        "--config",
        "build_label=whoami",
        "--config",
        "nagios_index_path=/health",
    ]);
    sim.ok(&[
        "add-remote",
        "lb",
        "--interface",
        "http",
        "--haproxy",
        FRONTEND,
    ]);
    let unrelated = get(FRONTEND).unwrap_err();
    assert!(unrelated.starts_with("HTTP 503"), "{unrelated}");

    sim.ok(&["relate", "wsgi-app:website", "lb"]);
    wait_for_servers(&sim, &all_up(&sim, &[0, 1]));
    let config = std::fs::read_to_string(sim.model_dir().join("haproxy/lb/haproxy.cfg")).unwrap();
    assert!(
        config.contains("option httpchk GET /health"),
        "the check follows nagios_index_path:\n{config}"
    );
    assert_eq!(served_by(20), addresses(&sim, &[0, 1]));

    // wsgi-app/1's health page fails: DOWN, and no request reaches it.
    let marker = sim
        .unit_root("wsgi-app/1")
        .join("srv/wsgi-app/builds/whoami/code/unhealthy");
    std::fs::write(&marker, "").unwrap();
    assert!(get_path(&sim.unit_url(1), "/health").is_err());
    let mut one_down = all_up(&sim, &[0, 1]);
    one_down[1].1 = "DOWN".into();
    wait_for_servers(&sim, &one_down);
    assert_eq!(served_by(20), addresses(&sim, &[0]));

    // A unit joins under load: haproxy reloads with a third server, and
    // wsgi-app/1, still failing its check, gets no request.
    let load = Load::start(&[FRONTEND.to_string()], 2);
    sim.ok(&["add-unit", "wsgi-app"]);
    let after_reload = servers(&sim);
    assert_eq!(after_reload.len(), 3, "{after_reload:?}");
    assert_eq!(after_reload[1], one_down[1], "{after_reload:?}");
    assert_eq!(served_by(30), addresses(&sim, &[0, 2]));
    load.finish_without_failures("add-unit through haproxy", 0);

    std::fs::remove_file(&marker).unwrap();
    wait_for_servers(&sim, &all_up(&sim, &[0, 1, 2]));
    assert_eq!(served_by(30), addresses(&sim, &[0, 1, 2]));

    // A unit leaves under load: its server goes before its gunicorn stops.
    let load = Load::start(&[FRONTEND.to_string()], 2);
    sim.ok(&["remove-unit", "wsgi-app/2"]);
    assert_eq!(servers(&sim), all_up(&sim, &[0, 1]));
    assert_eq!(served_by(20), addresses(&sim, &[0, 1]));
    load.finish_without_failures("remove-unit through haproxy", 0);

    // A new port reaches haproxy through the units' bags.
    sim.ok(&["config", "wsgi-app", "listen_port=8081"]);
    let moved: Vec<(String, String)> = [0, 1]
        .iter()
        .map(|n| (format!("{}:8081", sim.unit_address(*n)), "UP".to_string()))
        .collect();
    wait_for_servers(&sim, &moved);
    let at_8081: BTreeSet<String> = moved.into_iter().map(|(address, _)| address).collect();
    assert_eq!(served_by(20), at_8081);

    // Without the relation, no server: haproxy answers 503.
    sim.ok(&["unrelate", "wsgi-app:website", "lb"]);
    assert_eq!(servers(&sim), Vec::new());
    let unrelated = get(FRONTEND).unwrap_err();
    assert!(unrelated.starts_with("HTTP 503"), "{unrelated}");

    // Removing the load balancer stops its haproxy.
    sim.ok(&["remove-remote", "lb"]);
    assert!(
        get(FRONTEND).is_err(),
        "haproxy still answers on {FRONTEND}"
    );
    let gone = sim.fails(&["lb-status", "lb"]);
    assert!(gone.contains("\"lb\""), "{gone}");

    let unit_0 = format!("{}:8081", sim.unit_address(0));
    let unit_1 = format!("{}:8081", sim.unit_address(1));
    sim.destroy_and_check_nothing_left(&[FRONTEND, &unit_0, &unit_1]);
}
