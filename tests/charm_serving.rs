//! The serving options (`webserver_*`, `wsgi_application`) through the
//! harness: what reaches gunicorn's command line, what is refused and how,
//! and that a change of them starts a new master.

mod charm_support;

use charm_support::*;
use harness::on;
use harness::recorder::{failure, output};
use wsgi_app::ops::StatusName;
use wsgi_app::workload::service::{gunicorn_args, Listen, WorkerClass};

/// gunicorn's words for the running spec.
fn running_args(state: &harness::State) -> String {
    let spec = running_spec(state);
    gunicorn_args(&spec, &spec.current_dir, Listen::SocketActivation, 2, None).join(" ")
}

#[test]
fn serving_options_reach_gunicorn_and_start_a_new_master() {
    let ctx = context();
    let before = base_fingerprint(&ctx);
    let state = serving_r1(&ctx);
    assert!(
        running_args(&state).contains(
            "--worker-class sync --threads 1 --timeout 30 --keep-alive 2 \
             --max-requests 0 --max-requests-jitter 0 --graceful-timeout 30"
        ),
        "gunicorn's own defaults: {}",
        running_args(&state)
    );
    let state = state
        .with_config("webserver_worker_class", "gthread")
        .with_config("webserver_threads", 8)
        .with_config("webserver_timeout", 120)
        .with_config("webserver_keepalive", 5)
        .with_config("webserver_max_requests", 1000)
        .with_config("webserver_max_requests_jitter", 50)
        .with_config("webserver_graceful_timeout", 10);
    let out = ctx.run(on::config_changed(), state).unwrap();
    assert_status(&out.state, StatusName::Active, "serving r1 on :8080");
    let spec = running_spec(&out.state);
    assert_eq!(spec.serving.worker_class, WorkerClass::Gthread);
    assert!(
        running_args(&out.state).contains(
            "--worker-class gthread --threads 8 --timeout 120 --keep-alive 5 \
             --max-requests 1000 --max-requests-jitter 50 --graceful-timeout 10"
        ),
        "{}",
        running_args(&out.state)
    );
    assert_ne!(
        out.state
            .service_fingerprint("wsgi-app")
            .map(str::to_string),
        before,
        "new options, new master"
    );
}

#[test]
fn bad_serving_options_are_blocked_naming_the_option_and_keep_r1() {
    let ctx = context();
    for (option, value, says) in [
        (
            "webserver_worker_class",
            serde_json::json!("eventlet"),
            "use one of sync, gthread, gevent",
        ),
        (
            "webserver_threads",
            serde_json::json!(0),
            "webserver_threads",
        ),
        (
            "webserver_graceful_timeout",
            serde_json::json!(0),
            "webserver_graceful_timeout",
        ),
        (
            "webserver_graceful_timeout",
            serde_json::json!(301),
            "webserver_graceful_timeout",
        ),
        (
            "webserver_timeout",
            serde_json::json!(-1),
            "webserver_timeout",
        ),
    ] {
        let state = serving_r1(&ctx).with_config(option, value);
        let out = ctx.run(on::config_changed(), state).unwrap();
        assert_status(&out.state, StatusName::Blocked, option);
        assert_status(&out.state, StatusName::Blocked, says);
        assert_untouched_r1(&out.state);
    }
}

#[test]
fn wsgi_application_takes_what_gunicorn_takes() {
    let ctx = context();
    for accepted in [
        "example_wsgi:application",
        "example_wsgi",
        "app:create_app()",
        "app.factory:create_app('production', debug=False)",
        "app:make_app ()",
    ] {
        let state = serving_r1(&ctx).with_config("wsgi_application", accepted);
        let out = ctx.run(on::config_changed(), state).unwrap();
        assert_eq!(
            running_spec(&out.state).wsgi_application,
            accepted,
            "{accepted}: {}",
            out.state.unit_status
        );
    }
    for refused in [
        "app:",
        ":application",
        "app:obj.attr",
        "app:create_app(",
        "app:create_app)",
        "my-app:application",
        "app:1st",
    ] {
        let state = serving_r1(&ctx).with_config("wsgi_application", refused);
        let out = ctx.run(on::config_changed(), state).unwrap();
        assert_status(&out.state, StatusName::Blocked, "wsgi_application");
        assert_status(&out.state, StatusName::Blocked, "module:factory()");
        assert_untouched_r1(&out.state);
    }
}

/// The build's Python importing gunicorn's gevent worker.
fn imports_the_gevent_worker(c: &wsgi_app::workload::machine::CommandSpec) -> bool {
    c.program.ends_with("venv/bin/python")
        && c.args
            .iter()
            .any(|a| a == "import gunicorn.workers.ggevent")
}

#[test]
fn gevent_is_refused_for_a_build_without_it_and_r1_keeps_serving() {
    let mut ctx = context();
    ctx.on_command(
        imports_the_gevent_worker,
        failure(
            1,
            "Traceback (most recent call last):\n  ...\nModuleNotFoundError: No module named 'gevent'\n",
        ),
    );
    let state = serving_r1(&ctx).with_config("webserver_worker_class", "gevent");
    let out = ctx.run(on::config_changed(), state.clone()).unwrap();
    assert_status(
        &out.state,
        StatusName::Blocked,
        "webserver_worker_class=gevent needs gunicorn[gevent] in build r1 \
         (ModuleNotFoundError: No module named 'gevent'): add gunicorn[gevent] to its requirements",
    );
    assert_eq!(
        running_spec(&out.state).serving.worker_class,
        WorkerClass::Sync,
        "the sync master still serves"
    );

    // The same build once the worker imports (gevent installed): it switches.
    ctx.on_command(imports_the_gevent_worker, output(""));
    let out = ctx.run(on::config_changed(), state).unwrap();
    assert_status(&out.state, StatusName::Active, "serving r1 on :8080");
    assert_eq!(
        running_spec(&out.state).serving.worker_class,
        WorkerClass::Gevent
    );
}

#[test]
fn options_a_master_cannot_start_with_are_refused_and_the_old_master_keeps_its_own() {
    // A build that cannot start with the new options is refused (no hook
    // error), and the old master keeps serving with the options it was
    // started with. (When the pre-flight passes and only the real start
    // fails, tests/e2e_serving.rs shows the same on a real unit.)
    let ctx = context();
    let mut state = serving_r1(&ctx).with_config("webserver_timeout", 120);
    state.service_fails_to_start = true;
    let out = ctx.run(on::config_changed(), state).unwrap();
    assert!(out.succeeded(), "no hook error: {}", out.state.unit_status);
    assert_status(&out.state, StatusName::Blocked, "build r1 did not start");
    assert_eq!(
        running_spec(&out.state).serving.timeout,
        30,
        "the old master, with the options it was started with"
    );
}
