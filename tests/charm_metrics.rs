//! The metrics endpoint through the harness: the exporter the charm asks
//! the service manager for, gunicorn's statsd, and the file of the
//! charm's own metrics (the build serving, switches, health-gate
//! failures, install times, the rollout).

mod charm_support;

use charm_support::*;
use harness::{on, State};
use serde_json::json;
use wsgi_app::ops::StatusName;
use wsgi_app::workload::machine::HttpAnswer;
use wsgi_app::workload::metrics::{CharmMetrics, RolloutState};
use wsgi_app::workload::service::{gunicorn_args, Listen};

fn charm_metrics(state: &State) -> CharmMetrics {
    let path = state.machine.path("/var/lib/wsgi-app/metrics/charm.json");
    CharmMetrics::read(&path).unwrap_or_else(|| panic!("{} is missing", path.display()))
}

#[test]
fn a_unit_runs_the_exporter_and_gunicorn_sends_it_statsd() {
    let ctx = context();
    let state = serving_r1(&ctx);
    let spec = running_spec(&state);
    let metrics = spec.metrics.clone().expect("an exporter by default");
    assert_eq!(metrics.listen, "127.0.0.1:9102");
    assert_eq!(metrics.statsd, "127.0.0.1:9125");
    assert_eq!(
        metrics.program,
        state.machine.path("/var/lib/wsgi-app/bin/wsgi-app")
    );
    assert_eq!(
        std::fs::read(&metrics.program).unwrap(),
        std::fs::read(state.machine.path("/var/lib/juju/charm/dispatch")).unwrap(),
        "the charm's own binary, put where the app user can run it"
    );
    let args = gunicorn_args(&spec, &spec.current_dir, Listen::SocketActivation, 2, None);
    assert!(
        args.join(" ").contains("--statsd-host 127.0.0.1:9125"),
        "{args:?}"
    );

    let file = charm_metrics(&state);
    let serving = file.serving.clone().expect("r1 serves");
    assert_eq!(
        (serving.label.as_str(), serving.sha256.as_str()),
        ("r1", R1_SHA256)
    );
    assert_eq!(file.switches, 1, "the first start is a switch");
    assert_eq!(file.health_gate_failures, 0);
    assert_eq!(file.rollout, RolloutState::Idle);
    assert!(file.install_seconds.contains_key("r1"), "{file:?}");
    let health = file.health.expect("how to ask the app");
    assert_eq!(health.address, "127.0.0.1:8080");
    assert_eq!((health.path.as_str(), health.expected_status), ("/", 200));
}

#[test]
fn a_new_metrics_port_moves_the_exporter_and_leaves_gunicorn_alone() {
    let ctx = context();
    let state = serving_r1(&ctx);
    let before = running_spec(&state).fingerprint;
    let out = ctx
        .run(
            on::config_changed(),
            state.with_config("metrics_port", 9200),
        )
        .unwrap();
    let spec = running_spec(&out.state);
    assert_eq!(spec.fingerprint, before, "no new master for a new port");
    assert_eq!(ensures(&out), 0);
    assert_eq!(spec.metrics.unwrap().listen, "127.0.0.1:9200");
    assert_status(&out.state, StatusName::Active, "serving r1 on :8080");
}

#[test]
fn metrics_port_zero_turns_off_the_exporter_and_statsd() {
    let ctx = context();
    let state = serving_r1(&ctx);
    let before = running_spec(&state).fingerprint;
    let out = ctx
        .run(on::config_changed(), state.with_config("metrics_port", 0))
        .unwrap();
    let spec = running_spec(&out.state);
    assert_eq!(spec.metrics, None);
    assert_ne!(
        spec.fingerprint, before,
        "gunicorn restarts without --statsd-host"
    );
    let args = gunicorn_args(&spec, &spec.current_dir, Listen::SocketActivation, 2, None);
    assert!(!args.iter().any(|a| a == "--statsd-host"), "{args:?}");
    assert_status(&out.state, StatusName::Active, "serving r1 on :8080");
}

#[test]
fn a_bad_metrics_port_is_blocked_naming_the_option_and_r1_keeps_serving() {
    let ctx = context();
    for (port, says) in [
        (json!(8080), "8080 is listen_port's"),
        (json!(80), "must be 0 (no metrics) or 1024-65535"),
        (json!(70000), "must be 0 (no metrics) or 1024-65535"),
    ] {
        let state = serving_r1(&ctx).with_config("metrics_port", port);
        let out = ctx.run(on::config_changed(), state).unwrap();
        assert_status(&out.state, StatusName::Blocked, "metrics_port");
        assert_status(&out.state, StatusName::Blocked, says);
        assert_untouched_r1(&out.state);
    }
}

#[test]
fn a_refused_build_counts_as_a_health_gate_failure_not_a_switch() {
    let mut ctx = context();
    let state = serving_r1(&ctx).with_config("build_label", "r2");
    ctx.on_http_get(|_, running| {
        let spec = running.expect("a build is asked");
        let build = std::fs::read_link(&spec.current_dir).unwrap();
        let (status, reason) = if build.ends_with("r2") {
            (500, "Internal Server Error")
        } else {
            (200, "OK")
        };
        Ok(HttpAnswer {
            status,
            reason: reason.into(),
            body: "It works!".into(),
        })
    });
    let out = ctx.run(on::config_changed(), state).unwrap();
    assert_status(
        &out.state,
        StatusName::Blocked,
        "build r2 failed its pre-flight",
    );
    let file = charm_metrics(&out.state);
    assert_eq!(file.serving.as_ref().unwrap().label, "r1");
    assert_eq!((file.switches, file.health_gate_failures), (1, 1));
    assert!(file.install_seconds.contains_key("r2"), "{file:?}");
}
