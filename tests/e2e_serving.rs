//! The serving options end to end: a Flask application given as an app
//! factory (`app:create_app('It works!')`, tests/fixtures/wsgi/factory, Flask
//! and gevent from PyPI) serves; each worker class (`sync`, `gthread`,
//! `gevent`) then serves it under a bounded load, the switch between them
//! failing no request; a build without gevent is refused, Blocked naming
//! the option, while the serving build goes on.

mod e2e_support;

use std::path::Path;

use e2e_support::archives::archive_bytes;
use e2e_support::load::Load;
use e2e_support::{get, Sim};

const BLOCK: &str = "127.0.56";

/// The charm with tests/fixtures/wsgi/factory as build `factory`.
fn charm_with_factory_app(sim: &Sim) -> String {
    let dir = sim.charm_dir();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wsgi/factory");
    let app = std::fs::read(fixture.join("app.py")).unwrap();
    let requirements = std::fs::read(fixture.join("requirements.txt")).unwrap();
    let archive = archive_bytes(
        "app.tar.gz",
        &[
            ("app.py", &app[..]),
            ("requirements.txt", &requirements[..]),
        ],
    );
    let to = Path::new(&dir).join("files/factory");
    std::fs::create_dir_all(&to).unwrap();
    std::fs::write(to.join("app.tar.gz"), archive).unwrap();
    dir
}

/// The gunicorn command lines running in the model, as one text.
fn gunicorn_command_lines(sim: &Sim) -> String {
    let model = sim.model_dir().display().to_string();
    let mut lines = String::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("-m gunicorn") && cmdline.contains(&model) {
            lines.push_str(&cmdline);
            lines.push('\n');
        }
    }
    lines
}

#[test]
fn an_app_factory_serves_under_each_worker_class() {
    let sim = Sim::new(BLOCK);
    let charm = charm_with_factory_app(&sim);
    sim.ok(&[
        "deploy",
        &charm,
        "--config",
        "build_label=factory",
        "--config",
        "archive_filename=app.tar.gz",
        "--config",
        "requirements_path=requirements.txt",
        "--config",
        "wsgi_application=app:create_app('It works!')",
        "--config",
        "nagios_index_content=Revision factory",
    ]);
    let addr = sim.unit_url(0);
    assert_eq!(
        get(&addr).unwrap(),
        "It works! Revision factory, sync worker"
    );

    for (class, extra, kind) in [
        ("gthread", "webserver_threads=4", "threads"),
        ("gevent", "webserver_keepalive=5", "gevent"),
        ("sync", "webserver_threads=1", "sync"),
    ] {
        let load = Load::start(std::slice::from_ref(&addr), 2);
        std::thread::sleep(std::time::Duration::from_millis(300));
        sim.ok(&[
            "config",
            "wsgi-app",
            &format!("webserver_worker_class={class}"),
            extra,
        ]);
        assert_eq!(
            get(&addr).unwrap(),
            format!("It works! Revision factory, {kind} worker"),
            "{class}"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
        let result = load.finish();
        eprintln!(
            "switch to {class}: {} requests, {} failed",
            result.sent, result.failed
        );
        assert!(result.sent > 50, "{class}: the load ran ({})", result.sent);
        assert_eq!(
            result.failed, 0,
            "{class}: {} of {} failed: {:?}",
            result.failed, result.sent, result.errors
        );
        let lines = gunicorn_command_lines(&sim);
        assert!(
            lines.contains(&format!("--worker-class {class}")),
            "{class}: {lines}"
        );
    }

    // The example build has no gevent: refused before it serves anything.
    sim.ok(&["config", "wsgi-app", "webserver_worker_class=gevent"]);
    sim.ok(&[
        "config",
        "wsgi-app",
        "build_label=r1",
        "archive_filename=example-wsgi-app.tar.bzip2",
        "requirements_path=",
        "wsgi_application=example_wsgi:application",
        "nagios_index_content=",
        "current_symlink=r1",
    ]);
    let status = sim.status_json();
    let message = sim.workload_message(&status, "wsgi-app/0");
    assert_eq!(
        sim.workload_status(&status, "wsgi-app/0"),
        "blocked",
        "{message}"
    );
    assert!(
        message.contains("webserver_worker_class=gevent needs gunicorn[gevent] in build r1"),
        "{message}"
    );
    assert_eq!(
        get(&addr).unwrap(),
        "It works! Revision factory, gevent worker",
        "the serving build goes on"
    );
    sim.destroy_and_check_nothing_left(&[&addr]);
}
