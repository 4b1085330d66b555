//! The proxy endpoints through the charm: `haproxy-route` and `ingress` v2
//! exactly as shared/reference/modern-interfaces.md §4 gives them, the URL
//! the provider answers in the status and list-builds, SCRIPT_NAME for an
//! ingress prefix, and one proxy mode at a time beside `website`.

mod charm_support;

use charm_support::*;
use harness::{bag, on, Context, Output, Relation, State};
use serde_json::{json, Value};
use wsgi_app::charm::WsgiApp;
use wsgi_app::ops::{Bag, StatusName};
use wsgi_app::workload::envvars::read_env_file;
use wsgi_app::workload::machine::HttpAnswer;

const ROUTE: u32 = 4;
const INGRESS: u32 = 6;
const WEBSITE: u32 = 9;
const INGRESS_URL: &str = "https://lb.example.com/test-model-wsgi-app/";

fn env_value(state: &State, name: &str) -> Option<String> {
    read_env_file(&state.machine.path("/etc/wsgi-app/environment"))
        .unwrap()
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn local_app(state: &State, id: u32) -> &Bag {
    &state.relation(id).expect("related").local_app_data
}

fn local_unit(state: &State, id: u32) -> &Bag {
    &state.relation(id).expect("related").local_unit_data
}

fn decoded(bag: &Bag, key: &str) -> Value {
    serde_json::from_str(&bag[key]).unwrap_or_else(|e| panic!("{key}: {e}: {:?}", bag[key]))
}

fn keys(bag: &Bag) -> Vec<&str> {
    bag.keys().map(String::as_str).collect()
}

fn related(ctx: &Context<WsgiApp>, state: State, id: u32) -> State {
    ctx.chain(state).relate(id).unwrap().into_state()
}

fn provider_answers(ctx: &Context<WsgiApp>, state: State, id: u32, data: Bag) -> State {
    ctx.run(
        on::relation_changed(id, None),
        state.update_remote_app_data(id, data),
    )
    .unwrap()
    .state
}

/// `juju remove-relation`: each remote unit departs, then -broken.
fn removed(ctx: &Context<WsgiApp>, state: State, id: u32) -> State {
    let units: Vec<u32> = state
        .relation(id)
        .expect("related")
        .remote_units
        .keys()
        .copied()
        .collect();
    let mut chain = ctx.chain(state);
    for unit in units {
        chain = chain.run(on::relation_departed(id, unit)).unwrap();
    }
    chain.run(on::relation_broken(id)).unwrap().into_state()
}

fn list_builds(ctx: &Context<WsgiApp>, state: State) -> std::collections::BTreeMap<String, String> {
    let out: Output = ctx
        .run(on::action("list-builds", json!({})), state)
        .unwrap();
    out.action.expect("an action ran").results
}

/// An app answering as gunicorn does: with SCRIPT_NAME in its environment
/// file, any path outside the prefix is a 500.
fn gunicorn_like(ctx: &mut Context<WsgiApp>) {
    ctx.on_http_get(|path, running| {
        let Some(spec) = running else {
            return Err("connection refused".into());
        };
        let prefix = read_env_file(&spec.env_file)
            .unwrap_or_default()
            .into_iter()
            .find(|(k, _)| k == "SCRIPT_NAME")
            .map(|(_, v)| v)
            .unwrap_or_default();
        let (status, reason) = if path.starts_with(&prefix) {
            (200, "OK")
        } else {
            (500, "Internal Server Error")
        };
        Ok(HttpAnswer {
            status,
            reason: reason.into(),
            body: "It works!".into(),
        })
    });
}

#[test]
fn haproxy_route_data_is_json_with_defaults_left_out() {
    let ctx = context();
    let state = related(
        &ctx,
        serving_r1(&ctx)
            .with_relation(Relation::new(ROUTE, "haproxy-route", "haproxy").with_remote_units([0])),
        ROUTE,
    );
    let app = local_app(&state, ROUTE);
    assert_eq!(
        keys(app),
        ["check", "ports", "service"],
        "defaults are left out"
    );
    assert_eq!(app["service"], "\"wsgi-app\"");
    assert_eq!(app["ports"], "[8080]");
    assert_eq!(
        decoded(app, "check"),
        json!({"interval": 5, "rise": 2, "fall": 3, "path": "/"})
    );
    assert_eq!(local_unit(&state, ROUTE)["address"], "\"192.0.2.0\"");
    assert_status(
        &state,
        StatusName::Waiting,
        "waiting for haproxy to answer on haproxy-route:4",
    );
    assert!(state.unit_status.message.contains("serving r1 on :8080"));
}

#[test]
fn haproxy_route_options_are_sent_and_taken_back() {
    let ctx = context();
    let state = related(
        &ctx,
        serving_r1(&ctx).with_relation(Relation::new(ROUTE, "haproxy-route", "haproxy")),
        ROUTE,
    );
    let configured = ctx
        .run(
            on::config_changed(),
            state
                .with_config("ingress_hostname", "Shop.Example.com")
                .with_config(
                    "ingress_additional_hostnames",
                    "www.example.com *.shop.example.com",
                )
                .with_config("ingress_paths", "/api /static")
                .with_config("ingress_allow_http", true)
                .with_config("nagios_index_path", "/health")
                .with_config("listen_port", 9090),
        )
        .unwrap()
        .state;
    let app = local_app(&configured, ROUTE);
    assert_eq!(app["hostname"], "\"shop.example.com\"");
    assert_eq!(
        decoded(app, "additional_hostnames"),
        json!(["www.example.com", "*.shop.example.com"])
    );
    assert_eq!(decoded(app, "paths"), json!(["/api", "/static"]));
    assert_eq!(app["allow_http"], "true");
    assert_eq!(app["ports"], "[9090]");
    assert_eq!(decoded(app, "check")["path"], "/health");

    let back = ctx
        .run(
            on::config_changed(),
            configured
                .with_config("ingress_hostname", "")
                .with_config("ingress_additional_hostnames", "")
                .with_config("ingress_paths", "")
                .with_config("ingress_allow_http", false),
        )
        .unwrap()
        .state;
    assert_eq!(keys(local_app(&back, ROUTE)), ["check", "ports", "service"]);
}

#[test]
fn haproxy_route_endpoints_reach_the_status_and_list_builds_and_go_with_the_relation() {
    let ctx = context();
    let state = related(
        &ctx,
        serving_r1(&ctx)
            .with_relation(Relation::new(ROUTE, "haproxy-route", "haproxy").with_remote_units([0])),
        ROUTE,
    );
    let answered = provider_answers(
        &ctx,
        state,
        ROUTE,
        bag([("endpoints", r#"["https://shop.example.com/"]"#)]),
    );
    assert_status(
        &answered,
        StatusName::Active,
        "serving r1 on :8080; haproxy-route https://shop.example.com/",
    );
    // update-status reads no relation: the URL comes from the store.
    let later = ctx.run(on::update_status(), answered).unwrap().state;
    assert_status(
        &later,
        StatusName::Active,
        "haproxy-route https://shop.example.com/",
    );
    let results = list_builds(&ctx, later.clone());
    assert_eq!(results["ingress-endpoint"], "haproxy-route");
    assert_eq!(results["ingress-urls"], "https://shop.example.com/");
    assert_eq!(
        env_value(&later, "SCRIPT_NAME"),
        None,
        "haproxy-route paths reach the app as they are"
    );

    let gone = removed(&ctx, later, ROUTE);
    assert_eq!(gone.unit_status.message, "serving r1 on :8080");
    assert!(!list_builds(&ctx, gone).contains_key("ingress-urls"));
}

#[test]
fn bad_provider_answers_block_naming_the_relation() {
    let ctx = context();
    let state = related(
        &ctx,
        serving_r1(&ctx).with_relation(Relation::new(ROUTE, "haproxy-route", "haproxy")),
        ROUTE,
    );
    let bad = provider_answers(&ctx, state, ROUTE, bag([("endpoints", "https://x/")]));
    assert_status(
        &bad,
        StatusName::Blocked,
        "haproxy-route:4: endpoints is not a JSON list",
    );
    assert!(bad.unit_status.message.contains("serving r1"));
}

#[test]
fn ingress_data_is_json_with_defaults_left_out() {
    let ctx = context();
    let state = related(
        &ctx,
        serving_r1(&ctx)
            .with_relation(Relation::new(INGRESS, "ingress", "haproxy").with_remote_units([0])),
        INGRESS,
    );
    let app = local_app(&state, INGRESS);
    assert_eq!(keys(app), ["healthcheck_params", "model", "name", "port"]);
    assert_eq!(app["model"], "\"test-model\"");
    assert_eq!(app["name"], "\"wsgi-app\"");
    assert_eq!(app["port"], "8080");
    assert_eq!(
        decoded(app, "healthcheck_params"),
        json!({"path": "/", "interval": "10s"})
    );
    let unit = local_unit(&state, INGRESS);
    assert_eq!(unit["host"], "\"192.0.2.0\"");
    assert_eq!(unit["ip"], "\"192.0.2.0\"");

    let stripped = ctx
        .run(
            on::config_changed(),
            state.with_config("ingress_strip_prefix", true),
        )
        .unwrap()
        .state;
    assert_eq!(local_app(&stripped, INGRESS)["strip-prefix"], "true");
}

#[test]
fn the_ingress_prefix_reaches_the_app_as_script_name_and_every_health_check_asks_under_it() {
    let mut ctx = context();
    gunicorn_like(&mut ctx);
    let state = related(
        &ctx,
        serving_r1(&ctx)
            .with_relation(Relation::new(INGRESS, "ingress", "haproxy").with_remote_units([0])),
        INGRESS,
    );
    let answered = provider_answers(
        &ctx,
        state,
        INGRESS,
        bag([("ingress", format!(r#"{{"url": "{INGRESS_URL}"}}"#))]),
    );
    assert_eq!(
        env_value(&answered, "SCRIPT_NAME").as_deref(),
        Some("/test-model-wsgi-app")
    );
    // The app restarted with the prefix and passed its health check there.
    assert_status(
        &answered,
        StatusName::Active,
        &format!("serving r1 on :8080; ingress {INGRESS_URL}"),
    );
    assert_eq!(
        decoded(local_app(&answered, INGRESS), "healthcheck_params")["path"],
        "/test-model-wsgi-app/"
    );
    let checked = ctx.run(on::update_status(), answered).unwrap().state;
    assert_status(&checked, StatusName::Active, INGRESS_URL);
    assert_eq!(
        list_builds(&ctx, checked.clone())["ingress-urls"],
        INGRESS_URL
    );

    // The provider strips the prefix: the app no longer sees it.
    let stripped = ctx
        .run(
            on::config_changed(),
            checked.clone().with_config("ingress_strip_prefix", true),
        )
        .unwrap()
        .state;
    assert_eq!(env_value(&stripped, "SCRIPT_NAME"), None);
    assert_eq!(
        decoded(local_app(&stripped, INGRESS), "healthcheck_params")["path"],
        "/"
    );
    assert_status(&stripped, StatusName::Active, INGRESS_URL);

    // The relation goes: so do SCRIPT_NAME and the URL.
    let gone = removed(&ctx, checked, INGRESS);
    assert_eq!(env_value(&gone, "SCRIPT_NAME"), None);
    assert_eq!(gone.unit_status.name, StatusName::Active);
    assert_eq!(gone.unit_status.message, "serving r1 on :8080");
}

#[test]
fn a_script_name_of_the_operator_and_an_ingress_prefix_block() {
    let ctx = context();
    let state = serving_r1(&ctx).with_config("environment_variables", "SCRIPT_NAME=/shop");
    let state = ctx.run(on::config_changed(), state).unwrap().state;
    let state = related(
        &ctx,
        state.with_relation(
            Relation::new(INGRESS, "ingress", "haproxy")
                .with_remote_app_data(bag([("ingress", format!(r#"{{"url": "{INGRESS_URL}"}}"#))])),
        ),
        INGRESS,
    );
    assert_status(
        &state,
        StatusName::Blocked,
        "environment_variables sets SCRIPT_NAME",
    );
    assert!(state
        .unit_status
        .message
        .contains("ingress_strip_prefix=true"));
    assert_eq!(env_value(&state, "SCRIPT_NAME").as_deref(), Some("/shop"));
}

#[test]
fn non_leaders_write_their_address_and_no_application_data() {
    let ctx = context();
    let state = ctx
        .run_initial_hooks(
            State::new()
                .with_leader(false)
                .with_config("build_label", "r1"),
        )
        .unwrap()
        .into_state()
        .with_relation(Relation::new(ROUTE, "haproxy-route", "haproxy"));
    let state = related(&ctx, state, ROUTE);
    let state = related(
        &ctx,
        state.with_relation(Relation::new(INGRESS, "ingress", "traefik")),
        INGRESS,
    );
    assert!(local_app(&state, ROUTE).is_empty());
    assert!(local_app(&state, INGRESS).is_empty());
    assert_eq!(local_unit(&state, ROUTE)["address"], "\"192.0.2.0\"");
    assert_eq!(local_unit(&state, INGRESS)["ip"], "\"192.0.2.0\"");
}

#[test]
fn bad_proxy_options_block_naming_the_option_and_keep_serving() {
    let ctx = context();
    for (option, value, fragment) in [
        ("ingress_hostname", "shop example", "ingress_hostname"),
        (
            "ingress_additional_hostnames",
            "www.example.com",
            "needs ingress_hostname",
        ),
        ("ingress_paths", "api", "ingress_paths"),
    ] {
        let out = ctx
            .run(
                on::config_changed(),
                serving_r1(&ctx).with_config(option, value),
            )
            .unwrap();
        assert_status(&out.state, StatusName::Blocked, fragment);
        assert_untouched_r1(&out.state);
    }
}

/// Each pair of proxy modes: Blocked naming both, the app still serving,
/// and cleared when one goes.
#[test]
fn one_proxy_mode_at_a_time() {
    let ctx = context();
    let ingress_answered = || {
        Relation::new(INGRESS, "ingress", "haproxy-b")
            .with_remote_app_data(bag([("ingress", format!(r#"{{"url": "{INGRESS_URL}"}}"#))]))
    };
    let pairs: [(Relation, Relation, &str); 3] = [
        (
            Relation::new(WEBSITE, "website", "haproxy-a"),
            Relation::new(ROUTE, "haproxy-route", "haproxy-b")
                .with_remote_app_data(bag([("endpoints", r#"["https://shop.example.com/"]"#)])),
            "website and haproxy-route are both related",
        ),
        (
            Relation::new(WEBSITE, "website", "haproxy-a"),
            ingress_answered(),
            "website and ingress are both related",
        ),
        (
            Relation::new(ROUTE, "haproxy-route", "haproxy-a")
                .with_remote_app_data(bag([("endpoints", r#"["https://shop.example.com/"]"#)])),
            ingress_answered(),
            "haproxy-route and ingress are both related",
        ),
    ];
    for (first, second, message) in pairs {
        let (first_id, second_id) = (first.id, second.id);
        let second_endpoint = second.endpoint.clone();
        let state = related(&ctx, serving_r1(&ctx).with_relation(first), first_id);
        let both = related(&ctx, state.with_relation(second), second_id);
        assert_status(&both, StatusName::Blocked, message);
        assert!(
            both.unit_status.message.contains(&format!(
                "juju remove-relation wsgi-app:{second_endpoint} haproxy-b"
            )),
            "{}",
            both.unit_status
        );
        assert!(both.unit_status.message.contains("serving r1 on :8080"));
        assert_untouched_r1(&both);
        // Traffic without the prefix may arrive: no SCRIPT_NAME meanwhile.
        assert_eq!(env_value(&both, "SCRIPT_NAME"), None, "{message}");
        // update-status reads no relation, and still says so.
        let both = ctx.run(on::update_status(), both).unwrap().state;
        assert_status(&both, StatusName::Blocked, message);

        let one = removed(&ctx, both, second_id);
        assert_eq!(
            one.unit_status.name,
            StatusName::Active,
            "{message}: {}",
            one.unit_status
        );
    }
}
