//! An ingress prefix through real gunicorn: the environment file the charm
//! writes with `SCRIPT_NAME` (tests/charm_ingress.rs shows the prefix gets
//! there) reaches gunicorn under the direct supervisor, which takes the
//! prefix off `PATH_INFO` and hands it to the app, so a link the app builds
//! carries it. A path outside the prefix is gunicorn's 500, which is why the
//! charm asks for its health checks under the prefix.

mod service_support;

use std::time::Duration;

use service_support::ports::free_port;
use service_support::{test_venv, Layout};
use wsgi_app::workload::envvars::render_env_file;
use wsgi_app::workload::health::{http_check, http_get};
use wsgi_app::workload::service::{ServiceChange, ServiceManager, ServiceSpec};
use wsgi_app::workload::supervisor::client::DirectSupervisor;

const TIMEOUT: Duration = Duration::from_secs(10);
const PREFIX: &str = "/test-model-wsgi-app";

fn supervisor() -> DirectSupervisor {
    DirectSupervisor::new(env!("CARGO_BIN_EXE_wsgi-app"))
}

/// Stops the supervisor when the test ends, passing or not.
struct StopOnDrop(ServiceSpec);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = supervisor().stop(&self.0);
    }
}

#[test]
fn the_app_sees_the_prefix_as_script_name_and_builds_links_with_it() {
    let layout = Layout::new();
    let build = layout.path().join("builds/links");
    std::fs::create_dir_all(build.join("code")).unwrap();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/wsgi/links/links_wsgi.py");
    std::fs::copy(fixture, build.join("code/links_wsgi.py")).unwrap();
    std::os::unix::fs::symlink(test_venv(), build.join("venv")).unwrap();
    layout.point_current_at("links");
    let env = render_env_file(&[("SCRIPT_NAME".to_string(), PREFIX.to_string())]).unwrap();
    std::fs::write(layout.path().join("env"), env).unwrap();

    let spec = ServiceSpec {
        wsgi_application: "links_wsgi:application".into(),
        ..layout.spec(free_port(), "links-fp")
    };
    let _stop = StopOnDrop(spec.clone());
    assert_eq!(supervisor().ensure(&spec).unwrap(), ServiceChange::Started);

    let page = http_check(
        &spec.listen_address(),
        &format!("{PREFIX}/page"),
        200,
        "",
        TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("GET {PREFIX}/page: {e}"));
    assert_eq!(
        page.excerpt,
        format!("path=/page <a href=\"{PREFIX}/next\">next</a>")
    );
    // The health check's path under the prefix: the index page.
    let index = http_check(
        &spec.listen_address(),
        &format!("{PREFIX}/"),
        200,
        "",
        TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("GET {PREFIX}/: {e}"));
    assert!(index.excerpt.starts_with("path=/ "), "{}", index.excerpt);

    let outside = http_get(&spec.listen_address(), "/", TIMEOUT).unwrap();
    assert_eq!(
        outside.status, 500,
        "gunicorn refuses a path outside SCRIPT_NAME"
    );
    supervisor().stop(&spec).unwrap();
}
