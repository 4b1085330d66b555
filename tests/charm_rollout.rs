//! Rollouts through the harness: pins, precedence between the action and
//! config, health gates, rollback, list-builds.

mod charm_support;

use charm_support::*;
use harness::{on, Context, Output, State};
use serde_json::json;
use wsgi_app::charm::WsgiApp;
use wsgi_app::ops::StatusName;
use wsgi_app::workload::machine::HttpAnswer;
use wsgi_app::workload::service::ServiceSpec;

/// r1 serving, r2 installed beside it (current_symlink=r1 build_label=r2).
fn r1_serving_r2_installed(ctx: &Context<WsgiApp>) -> State {
    let state = serving_r1(ctx)
        .with_config("current_symlink", "r1")
        .with_config("build_label", "r2");
    let out = ctx.run(on::config_changed(), state).unwrap();
    assert_status(&out.state, StatusName::Active, "serving r1 on :8080");
    assert!(out
        .state
        .machine
        .path("/srv/wsgi-app/builds/r2/build.json")
        .exists());
    out.state
}

fn switch(ctx: &Context<WsgiApp>, state: State, label: &str) -> Output {
    ctx.run(
        on::action("set-current-symlink", json!({ "symlink": label })),
        state,
    )
    .unwrap()
}

fn results(out: &Output) -> std::collections::BTreeMap<String, String> {
    out.action.as_ref().expect("an action ran").results.clone()
}

fn failure(out: &Output) -> Option<String> {
    out.action.as_ref().expect("an action ran").failure.clone()
}

#[test]
fn the_action_pins_one_unit_and_status_says_so() {
    let ctx = context();
    let out = switch(&ctx, r1_serving_r2_installed(&ctx), "r2");
    assert_eq!(failure(&out), None);
    let r = results(&out);
    assert_eq!(r["previous"], "r1");
    assert_eq!(r["current"], "r2");
    assert!(r["health"].contains("HTTP 200"), "{r:?}");
    assert_eq!(current_build(&out.state), "r2");
    assert_status(
        &out.state,
        StatusName::Active,
        "serving r2 on :8080 (pinned; application wants r1)",
    );
    assert_eq!(rollout(&out.state, "pinned").as_deref(), Some("r2"));
}

#[test]
fn a_pin_survives_config_changes_until_the_application_wants_the_pinned_build() {
    let ctx = context();
    let pinned = switch(&ctx, r1_serving_r2_installed(&ctx), "r2").state;
    let other = ctx
        .run(on::config_changed(), pinned.with_config("workers", 3))
        .unwrap();
    assert_eq!(
        current_build(&other.state),
        "r2",
        "an unrelated change keeps the pin"
    );
    assert_status(&other.state, StatusName::Active, "pinned");

    let caught_up = ctx
        .run(
            on::config_changed(),
            other.state.with_config("current_symlink", "r2"),
        )
        .unwrap();
    assert_eq!(current_build(&caught_up.state), "r2");
    assert_status(&caught_up.state, StatusName::Active, "serving r2 on :8080");
    assert!(!caught_up.state.unit_status.message.contains("pinned"));
    assert_eq!(rollout(&caught_up.state, "pinned"), None);
}

#[test]
fn the_application_moving_elsewhere_leaves_a_pinned_unit_where_it_is() {
    let ctx = context();
    let on_r2 = ctx
        .run(
            on::config_changed(),
            r1_serving_r2_installed(&ctx).with_config("current_symlink", "r2"),
        )
        .unwrap();
    assert_eq!(current_build(&on_r2.state), "r2");
    let pinned = switch(&ctx, on_r2.state, "r1").state;
    // current_symlink r2 -> latest (= r2 here): a rollout skips the pinned unit.
    let out = ctx
        .run(
            on::config_changed(),
            pinned.with_config("current_symlink", "latest"),
        )
        .unwrap();
    assert_eq!(current_build(&out.state), "r1");
    assert_eq!(rollout(&out.state, "pinned").as_deref(), Some("r1"));
    assert_status(
        &out.state,
        StatusName::Active,
        "serving r1 on :8080 (pinned",
    );
}

#[test]
fn an_unknown_label_fails_and_changes_nothing() {
    let ctx = context();
    let before = r1_serving_r2_installed(&ctx);
    let out = switch(&ctx, before.clone(), "r9");
    let why = failure(&out).expect("the action fails");
    assert!(
        why.contains("build r9 is not installed on this unit; installed builds: r1, r2"),
        "{why}"
    );
    assert_eq!(current_build(&out.state), "r1");
    assert_eq!(
        out.state.unit_status, before.unit_status,
        "status unchanged"
    );
    assert_eq!(rollout(&out.state, "pinned"), None);
}

#[test]
fn a_label_that_is_a_path_is_refused() {
    let ctx = context();
    for label in ["../../etc", "/etc", "r1/../r2", "current"] {
        let out = switch(&ctx, r1_serving_r2_installed(&ctx), label);
        let why = failure(&out).unwrap_or_else(|| panic!("{label} accepted"));
        assert!(why.contains("symlink"), "{why}");
        assert_eq!(current_build(&out.state), "r1");
    }
}

/// The build `spec.current_dir` leads to, and whether it is the pre-flight's
/// private candidate or the served `current`.
fn build_of(running: Option<&ServiceSpec>) -> (String, bool) {
    let spec = running.expect("a build is asked");
    let link = std::fs::read_link(&spec.current_dir).unwrap();
    let label = link.file_name().unwrap().to_string_lossy().into_owned();
    (label, spec.current_dir.ends_with("candidate"))
}

fn answer(status: u16, body: &str) -> Result<HttpAnswer, String> {
    Ok(HttpAnswer {
        status,
        reason: if status == 200 {
            "OK"
        } else {
            "Internal Server Error"
        }
        .into(),
        body: body.into(),
    })
}

#[test]
fn an_unhealthy_build_fails_its_preflight_and_never_takes_traffic() {
    let mut ctx = context();
    let state = r1_serving_r2_installed(&ctx);
    ctx.on_http_get(|_, running| match build_of(running).0.as_str() {
        "r2" => answer(500, "Traceback (most recent call last)"),
        _ => answer(200, "It works!"),
    });
    let out = switch(&ctx, state, "r2");
    let why = failure(&out).expect("the action fails");
    assert!(why.contains("build r2 failed its pre-flight"), "{why}");
    assert!(
        why.contains("HTTP 500 Internal Server Error, expected 200"),
        "{why}"
    );
    assert!(why.ends_with("; r1 still serving"), "{why}");
    assert_eq!(ensures(&out), 0, "r2 was never started for real");
    assert_untouched_r1(&out.state);
    assert_eq!(
        rollout(&out.state, "pinned"),
        None,
        "the pin goes with the failed switch"
    );
    assert_status(&out.state, StatusName::Active, "serving r1 on :8080");
}

#[test]
fn a_build_that_passes_its_preflight_but_fails_after_the_switch_is_switched_back() {
    let mut ctx = context();
    let state = r1_serving_r2_installed(&ctx);
    // Good in private, broken under the real socket: what only real
    // traffic shows.
    ctx.on_http_get(|_, running| match build_of(running) {
        (label, false) if label == "r2" => answer(500, "broken under load"),
        _ => answer(200, "It works!"),
    });
    let out = switch(&ctx, state, "r2");
    let why = failure(&out).expect("the action fails");
    assert!(why.contains("build r2 is unhealthy"), "{why}");
    assert!(why.ends_with("; r1 still serving"), "{why}");
    assert_untouched_r1(&out.state);
    assert_status(&out.state, StatusName::Active, "serving r1 on :8080");
}

#[test]
fn a_first_build_failing_its_preflight_still_starts_as_nothing_else_can_serve() {
    let mut ctx = context();
    ctx.on_http_get(|_, _| answer(500, "no database yet"));
    let state = State::default()
        .with_leader(true)
        .with_config("build_label", "r1");
    let state = ctx.run_initial_hooks(state).unwrap().into_state();
    assert_eq!(current_build(&state), "r1");
    assert!(state.service_fingerprint("wsgi-app").is_some(), "r1 runs");
    assert_status(&state, StatusName::Blocked, "build r1 is unhealthy");
    assert_status(&state, StatusName::Blocked, "; serving r1 on :8080");
}

#[test]
fn a_build_that_does_not_start_leaves_the_old_one_serving() {
    let ctx = context();
    let mut state = r1_serving_r2_installed(&ctx);
    state.service_fails_to_start = true;
    let out = switch(&ctx, state, "r2");
    let why = failure(&out).expect("the action fails");
    assert!(why.contains("build r2 did not start"), "{why}");
    assert_untouched_r1(&out.state);
}

#[test]
fn a_config_driven_switch_with_a_failed_gate_is_blocked_and_keeps_the_old_build() {
    let mut ctx = context();
    let state = r1_serving_r2_installed(&ctx);
    ctx.on_http_get(|_, running| match build_of(running).0.as_str() {
        "r2" => answer(200, "broken"),
        _ => answer(200, "It works!"),
    });
    let state = state
        .with_config("nagios_index_content", "It works!")
        .with_config("current_symlink", "r2");
    let out = ctx.run(on::config_changed(), state).unwrap();
    assert!(out.succeeded());
    assert_eq!(ensures(&out), 0, "r2 was never started for real");
    assert_status(
        &out.state,
        StatusName::Blocked,
        "build r2 failed its pre-flight",
    );
    assert_status(
        &out.state,
        StatusName::Blocked,
        "string \"It works!\" not found",
    );
    // Each thing once: the serving build is named by the status alone.
    let message = &out.state.unit_status.message;
    assert_eq!(message.matches("r1").count(), 1, "{message}");
    assert!(message.ends_with("; serving r1 on :8080"), "{message}");
    assert_untouched_r1(&out.state);
}

#[test]
fn rollback_returns_to_the_previous_build_and_pins_it() {
    let ctx = context();
    let state = r1_serving_r2_installed(&ctx);
    let moved = ctx
        .run(
            on::config_changed(),
            state.with_config("current_symlink", "r2"),
        )
        .unwrap();
    assert_eq!(current_build(&moved.state), "r2");
    let back = ctx
        .run(on::action("rollback", json!({})), moved.state)
        .unwrap();
    assert_eq!(failure(&back), None);
    assert_eq!(results(&back)["current"], "r1");
    assert_eq!(results(&back)["previous"], "r2");
    assert_eq!(current_build(&back.state), "r1");
    assert_status(
        &back.state,
        StatusName::Active,
        "serving r1 on :8080 (pinned; application wants r2)",
    );
    // And back again: previous is now r2, the build the application wants,
    // so the unit follows the application again rather than being pinned.
    let again = ctx
        .run(on::action("rollback", json!({})), back.state)
        .unwrap();
    assert_eq!(current_build(&again.state), "r2");
    assert_status(&again.state, StatusName::Active, "serving r2 on :8080");
    assert_eq!(rollout(&again.state, "pinned"), None);
}

#[test]
fn switching_a_pinned_unit_to_the_build_the_application_wants_unpins_it() {
    let ctx = context();
    let pinned = switch(&ctx, r1_serving_r2_installed(&ctx), "r2").state;
    assert_eq!(rollout(&pinned, "pinned").as_deref(), Some("r2"));
    let back = switch(&ctx, pinned, "r1");
    assert_eq!(failure(&back), None);
    assert_eq!(current_build(&back.state), "r1");
    assert_status(&back.state, StatusName::Active, "serving r1 on :8080");
    assert_eq!(rollout(&back.state, "pinned"), None);
    // Unpinned, it follows the application's next move.
    let moved = ctx
        .run(
            on::config_changed(),
            back.state.with_config("current_symlink", "r2"),
        )
        .unwrap();
    assert_eq!(current_build(&moved.state), "r2");
    assert_status(&moved.state, StatusName::Active, "serving r2 on :8080");
}

#[test]
fn rollback_with_nothing_before_fails_clearly() {
    let ctx = context();
    let out = ctx
        .run(on::action("rollback", json!({})), serving_r1(&ctx))
        .unwrap();
    let why = failure(&out).expect("fails");
    assert!(why.contains("nothing to roll back to"), "{why}");
    assert_untouched_r1(&out.state);
}

#[test]
fn list_builds_reports_every_build_and_leaves_the_status_alone() {
    let ctx = context();
    let state = switch(&ctx, r1_serving_r2_installed(&ctx), "r2").state;
    let before = state.unit_status.clone();
    let out = ctx
        .run(on::action("list-builds", json!({})), state)
        .unwrap();
    let r = results(&out);
    assert_eq!(r["count"], "2");
    assert_eq!(r["latest"], "r2");
    assert_eq!(r["current"], "r2");
    assert_eq!(r["pinned"], "r2");
    assert_eq!(r["builds.1.label"], "r1");
    assert_eq!(r["builds.1.sha256"], R1_SHA256);
    assert_eq!(r["builds.1.current"], "false");
    assert_eq!(r["builds.2.current"], "true");
    assert!(r["builds.1.installed-at"].ends_with('Z'));
    assert_eq!(out.state.unit_status, before);
}

#[test]
fn actions_refuse_params_juju_would_refuse() {
    let ctx = context();
    let state = serving_r1(&ctx);
    for params in [
        json!({}),
        json!({"symlink": "r1", "extra": 1}),
        json!({"symlink": 2}),
    ] {
        let out = ctx
            .run(
                on::action("set-current-symlink", params.clone()),
                state.clone(),
            )
            .unwrap();
        assert!(!out.dispatched, "{params} reached the charm");
        assert!(failure(&out).is_some());
    }
}

fn preflights(out: &Output) -> usize {
    out.service_calls
        .iter()
        .filter(|c| matches!(c, harness::recorder::ServiceCall::Preflight(_)))
        .count()
}

#[test]
fn a_refused_build_is_judged_again_only_at_update_status_or_when_it_changes() {
    let mut ctx = context();
    let state = r1_serving_r2_installed(&ctx);
    ctx.on_http_get(|_, running| match build_of(running).0.as_str() {
        "r2" => answer(500, "broken"),
        _ => answer(200, "It works!"),
    });
    let refused = ctx
        .run(
            on::config_changed(),
            state.with_config("current_symlink", "r2"),
        )
        .unwrap();
    assert_eq!(preflights(&refused), 1);
    assert_status(&refused.state, StatusName::Blocked, "failed its pre-flight");

    // Another hook: the same build and environment are not judged again.
    let again = ctx.run(on::config_changed(), refused.state).unwrap();
    assert_eq!(preflights(&again), 0);
    assert_status(&again.state, StatusName::Blocked, "failed its pre-flight");
    assert_status(
        &again.state,
        StatusName::Blocked,
        "judged again at the next update-status",
    );
    assert_untouched_r1(&again.state);

    // update-status judges it again; once it is fixed, it switches.
    ctx.on_http_get(|_, _| answer(200, "It works!"));
    let fixed = ctx.run(on::update_status(), again.state).unwrap();
    assert_eq!(preflights(&fixed), 1);
    assert_eq!(current_build(&fixed.state), "r2");
    assert_status(&fixed.state, StatusName::Active, "serving r2 on :8080");
}

#[test]
fn rollout_status_without_peers_shows_this_unit_following_the_application() {
    let ctx = context();
    let out = ctx
        .run(on::action("rollout-status", json!({})), serving_r1(&ctx))
        .unwrap();
    assert_eq!(failure(&out), None);
    let r = results(&out);
    assert_eq!(r["rollout.state"], "none yet");
    assert_eq!(r["units.1.unit"], "wsgi-app/0");
    assert_eq!(r["units.1.serving"], "r1");
    assert_eq!(r["units.1.state"], "no rollout: follows current_symlink");

    let refused = ctx
        .run(on::action("abort-rollout", json!({})), serving_r1(&ctx))
        .unwrap();
    let why = failure(&refused).expect("nothing to abort");
    assert!(why.contains("abort-rollout: no rollout"), "{why}");
}
