//! A broken build never serves a request: each is judged on a private
//! socket before it takes traffic. The real charm binary under charm-sim,
//! real gunicorn, and a bounded load (two clients, a new connection per
//! request) through every switch: builds that answer 500, answer 200
//! without the expected text, hang on `/`, or take 20 s to import, each
//! followed by a good build. Not one request may fail, and once a switch
//! returns only the build it reported answers. On both service managers:
//! directory units (the direct supervisor) and container units (machines
//! booted with systemd, where the charm uses systemd's units).

mod e2e_support;

use e2e_support::load::Load;
use e2e_support::{get, Sim};

const ANSWERS_500: &str = r#"
def application(environ, start_response):
    body = b"TemplateNotFound: index.html"
    start_response("500 Internal Server Error", [("Content-Length", str(len(body)))])
    return [body]
"#;

const ANSWERS_WITHOUT_CONTENT: &str = r#"
def application(environ, start_response):
    body = b"Welcome! (the wrong page)"
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
"#;

const HANGS: &str = r#"
import time

def application(environ, start_response):
    time.sleep(3600)
"#;

const SLOW_IMPORT: &str = r#"
import time

time.sleep(20)

def application(environ, start_response):
    body = b"It works! Revision slow"
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
"#;

/// Streams its answer (no Content-Length), split so that a client reading
/// chunked framing raw would not find "It works!".
const STREAMS: &str = r#"
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"It "
    yield b"works! Revision streaming"
"#;

#[test]
fn broken_builds_are_refused_before_any_request_reaches_them_on_the_direct_supervisor() {
    broken_builds_are_refused("directory", "127.0.61");
}

#[test]
fn broken_builds_are_refused_before_any_request_reaches_them_under_systemd() {
    broken_builds_are_refused("container", "127.0.62");
}

/// Every answer on fresh connections, right after a switch returned, comes
/// from the build it reported.
fn only_the_reported_build_answers(addr: &str, expected: &str) {
    for request in 0..20 {
        assert_eq!(get(addr).unwrap(), expected, "request {request}");
    }
}

fn broken_builds_are_refused(machines: &str, block: &str) {
    let sim = Sim::new(block);
    let charm = sim.charm_dir();
    for (label, source) in [
        ("answers500", ANSWERS_500),
        ("wrongpage", ANSWERS_WITHOUT_CONTENT),
        ("hangs", HANGS),
        ("slow", SLOW_IMPORT),
        ("streams", STREAMS),
    ] {
        sim.ship_build(label, source);
    }
    sim.ok(&[
        "deploy",
        &charm,
        "--machines",
        machines,
        "--units",
        "1",
        "--config",
        "build_label=r1",
        "--config",
        "nagios_index_content=It works!",
    ]);
    let addr = sim.unit_url(0);
    assert_eq!(get(&addr).unwrap(), "It works! Revision 1");
    // The tested gunicorn, pinned, and shown per build.
    let builds = sim.ok(&["run", "wsgi-app/0", "list-builds"]);
    assert!(builds.contains("27.0.1"), "{builds}");

    let load = Load::start(std::slice::from_ref(&addr), 2);
    let mut good = ["r2", "r1"].into_iter().cycle();
    for (broken, why) in [
        ("answers500", "HTTP 500 Internal Server Error, expected 200"),
        ("wrongpage", "string \"It works!\" not found"),
        ("hangs", "timed out"),
    ] {
        let serving = get(&addr).unwrap();
        sim.ok(&[
            "config",
            "wsgi-app",
            &format!("build_label={broken}"),
            &format!("current_symlink={broken}"),
        ]);
        let status = sim.status_json();
        let message = sim.workload_message(&status, "wsgi-app/0");
        assert_eq!(
            sim.workload_status(&status, "wsgi-app/0"),
            "blocked",
            "{message}"
        );
        assert!(
            message.contains(&format!("build {broken} failed its pre-flight: GET /: ")),
            "{message}"
        );
        assert!(message.contains(why), "{message}");
        assert_eq!(get(&addr).unwrap(), serving, "after {broken}");

        let next = good.next().unwrap();
        sim.ok(&[
            "config",
            "wsgi-app",
            &format!("build_label={next}"),
            &format!("current_symlink={next}"),
        ]);
        let revision = &next[1..];
        only_the_reported_build_answers(&addr, &format!("It works! Revision {revision}"));
        let status = sim.status_json();
        assert_eq!(
            sim.workload_status(&status, "wsgi-app/0"),
            "active",
            "{}",
            sim.workload_message(&status, "wsgi-app/0")
        );
    }

    // Slow to import is not broken: judged once ready, then it serves,
    // and the old build answers meanwhile (two masters side by side, on
    // both service managers).
    for (label, answer) in [
        ("streams", "It works! Revision streaming"),
        ("slow", "It works! Revision slow"),
    ] {
        sim.ok(&[
            "config",
            "wsgi-app",
            &format!("build_label={label}"),
            &format!("current_symlink={label}"),
        ]);
        only_the_reported_build_answers(&addr, answer);
        let status = sim.status_json();
        assert_eq!(
            sim.workload_status(&status, "wsgi-app/0"),
            "active",
            "{}",
            sim.workload_message(&status, "wsgi-app/0")
        );
    }

    load.finish_without_failures("the switches", 100);
    sim.destroy_and_check_nothing_left(&[&addr]);
}
