//! The ingress prefix end to end: the real charm binary under charm-sim,
//! a remote application answering on `ingress` as HAProxy does, and real
//! gunicorn serving an app that builds its links from SCRIPT_NAME.

mod e2e_support;

use std::path::Path;

use e2e_support::archives::archive_bytes;
use e2e_support::{get_path, Sim};

const URL: &str = "https://lb.example.com/sim-wsgi-app/";

/// A charm directory whose `files/links/app.tar.gz` is
/// tests/fixtures/wsgi/links.
fn charm_with_links_app(sim: &Sim) -> String {
    let dir = sim.charm_dir();
    let app = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wsgi/links/links_wsgi.py"),
    )
    .unwrap();
    let archive = archive_bytes("app.tar.gz", &[("links_wsgi.py", &app[..])]);
    let to = Path::new(&dir).join("files/links");
    std::fs::create_dir_all(&to).unwrap();
    std::fs::write(to.join("app.tar.gz"), archive).unwrap();
    dir
}

#[test]
fn an_ingress_prefix_reaches_the_app_and_goes_with_the_relation() {
    let sim = Sim::new("127.0.67");
    let charm = charm_with_links_app(&sim);
    sim.ok(&[
        "deploy",
        &charm,
        "--units",
        "1",
        "--config",
        "build_label=links",
        "--config",
        "archive_filename=app.tar.gz",
        "--config",
        "wsgi_application=links_wsgi:application",
    ]);
    let addr = sim.unit_url(0);
    assert_eq!(
        get_path(&addr, "/page").unwrap(),
        "path=/page <a href=\"/next\">next</a>"
    );

    sim.add_remote("haproxy", "ingress", 1, &[]);
    sim.ok(&["relate", "wsgi-app:ingress", "haproxy"]);
    let status = sim.status_json();
    assert_eq!(sim.workload_status(&status, "wsgi-app/0"), "waiting");
    assert!(
        sim.workload_message(&status, "wsgi-app/0")
            .contains("waiting for haproxy to answer on ingress:"),
        "{status}"
    );

    sim.ok(&[
        "set-remote-data",
        "haproxy",
        &format!(r#"ingress={{"url": "{URL}"}}"#),
    ]);
    assert_eq!(
        get_path(&addr, "/sim-wsgi-app/page").unwrap(),
        "path=/page <a href=\"/sim-wsgi-app/next\">next</a>"
    );
    let status = sim.status_json();
    assert_eq!(
        sim.workload_message(&status, "wsgi-app/0"),
        format!("serving links on :8080; ingress {URL}")
    );
    let builds = sim.ok(&["run", "wsgi-app/0", "list-builds"]);
    assert!(builds.contains(URL), "{builds}");

    sim.ok(&["unrelate", "wsgi-app:ingress", "haproxy"]);
    assert_eq!(
        get_path(&addr, "/page").unwrap(),
        "path=/page <a href=\"/next\">next</a>"
    );
    let status = sim.status_json();
    assert_eq!(
        sim.workload_message(&status, "wsgi-app/0"),
        "serving links on :8080"
    );

    sim.destroy_and_check_nothing_left(&[&addr]);
}
