//! The `cos-agent` endpoint through the charm: the unit bag key `config`
//! exactly as shared/reference/modern-interfaces.md §5.1 gives it, written
//! by every unit and kept up with the options; the dashboard read back with
//! Python's own lzma and base64, and the alert rules judged by Debian's
//! promtool (`check rules`, and `test rules` on synthetic series).

mod charm_support;

use std::path::Path;
use std::process::{Command, Stdio};

use charm_support::*;
use harness::{on, Context, Relation, State};
use serde_json::{json, Value};
use wsgi_app::charm::WsgiApp;
use wsgi_app::ops::StatusName;

const COS: u32 = 7;
const MODEL: &str = "test-model";
const MODEL_UUID: &str = "00000000-0000-4000-8000-000000000000";
const APP: &str = "wsgi-app";

fn collector() -> Relation {
    Relation::new(COS, "cos-agent", "opentelemetry-collector").with_remote_units([0])
}

fn related(ctx: &Context<WsgiApp>, state: State) -> State {
    ctx.chain(state.with_relation(collector()))
        .relate(COS)
        .unwrap()
        .into_state()
}

/// The `config` object this unit wrote, decoded.
fn written(state: &State) -> Value {
    let bag = &state.relation(COS).expect("related").local_unit_data;
    // Juju seeds the address keys; ours is config alone.
    let keys: Vec<&str> = bag
        .keys()
        .map(String::as_str)
        .filter(|k| !["egress-subnets", "ingress-address", "private-address"].contains(k))
        .collect();
    assert_eq!(
        keys,
        ["config"],
        "the unit bag holds config and nothing else"
    );
    serde_json::from_str(&bag["config"]).expect("config is JSON")
}

fn configured(ctx: &Context<WsgiApp>, state: State, option: &str, value: Value) -> State {
    ctx.run(on::config_changed(), state.with_config(option, value))
        .unwrap()
        .state
}

fn topology_matchers() -> [String; 3] {
    [
        format!("juju_model=\"{MODEL}\""),
        format!("juju_model_uuid=\"{MODEL_UUID}\""),
        format!("juju_application=\"{APP}\""),
    ]
}

fn rules(file: &Value) -> Vec<&Value> {
    file["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules"))
        .collect()
}

fn assert_rules_carry_topology_and_guidance(file: &Value) {
    let rules = rules(file);
    assert!(!rules.is_empty());
    for rule in rules {
        let name = &rule["alert"];
        let expr = rule["expr"].as_str().expect("expr");
        for matcher in topology_matchers() {
            assert!(expr.contains(&matcher), "{name}: {expr} lacks {matcher}");
        }
        assert_eq!(rule["labels"]["juju_model"], MODEL, "{name}");
        assert_eq!(rule["labels"]["juju_model_uuid"], MODEL_UUID, "{name}");
        assert_eq!(rule["labels"]["juju_application"], APP, "{name}");
        assert!(
            ["critical", "warning"].contains(&rule["labels"]["severity"].as_str().unwrap()),
            "{name}"
        );
        for annotation in ["summary", "description"] {
            let text = rule["annotations"][annotation].as_str().unwrap_or_default();
            assert!(text.len() > 20, "{name}: {annotation} {text:?}");
        }
    }
}

#[test]
fn config_has_each_field_as_section_5_1_gives_it() {
    let ctx = context();
    let state = related(&ctx, serving_r1(&ctx));
    let config = written(&state);
    let fields: Vec<&str> = config
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = [
        "dashboards",
        "log_alert_rules",
        "log_slots",
        "metrics_alert_rules",
        "metrics_scrape_jobs",
        "tracing_protocols",
    ];
    expected.sort();
    let mut fields = fields;
    fields.sort();
    assert_eq!(fields, expected);

    let jobs = config["metrics_scrape_jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!(job["metrics_path"], "/metrics");
    assert_eq!(
        job["static_configs"],
        json!([{"targets": ["localhost:9102"]}])
    );
    let job_name = job["job_name"].as_str().unwrap();
    let hash = job_name
        .strip_prefix("wsgi-app_wsgi_app_exporter_")
        .unwrap_or_else(|| panic!("{job_name}: <app>_<job>_<hash>"));
    assert!(
        hash.len() == 8 && hash.chars().all(|c| c.is_ascii_hexdigit()),
        "{job_name}"
    );

    assert_eq!(config["log_slots"], json!([]));
    assert_eq!(config["tracing_protocols"], json!([]));

    let dashboards = config["dashboards"].as_array().unwrap();
    assert_eq!(dashboards.len(), 1);
    assert!(
        dashboards[0].as_str().unwrap().starts_with("/Td6WFo"),
        "xz magic, base64"
    );

    let alerts = &config["metrics_alert_rules"];
    assert_rules_carry_topology_and_guidance(alerts);
    let names: Vec<&str> = rules(alerts)
        .iter()
        .map(|r| r["alert"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "WsgiAppDown",
            "WsgiAppMetricsExporterDown",
            "WsgiAppHighErrorRatio",
            "WsgiAppHighLatencyP99",
            "WsgiAppRolloutHalted",
            "WsgiAppHealthGateFailures",
        ]
    );
    let by_name = |name: &str| {
        rules(alerts)
            .into_iter()
            .find(|r| r["alert"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(by_name("WsgiAppDown")["for"], "2m");
    assert!(by_name("WsgiAppHighErrorRatio")["expr"]
        .as_str()
        .unwrap()
        .ends_with("> 0.05"));
    assert_eq!(by_name("WsgiAppHighErrorRatio")["for"], "5m");
    assert!(by_name("WsgiAppHighLatencyP99")["expr"]
        .as_str()
        .unwrap()
        .ends_with("> 2"));
    assert_eq!(by_name("WsgiAppHighLatencyP99")["for"], "10m");

    let logs = &config["log_alert_rules"];
    assert_rules_carry_topology_and_guidance(logs);
    for rule in rules(logs) {
        let expr = rule["expr"].as_str().unwrap();
        assert!(
            expr.contains("filename=\"/var/log/wsgi-app/error.log\"") && expr.contains("[5m]"),
            "{expr}"
        );
    }
    assert_status(&state, StatusName::Active, "serving r1 on :8080");
}

#[test]
fn every_unit_writes_it_not_only_the_leader() {
    let ctx = context();
    let follower = ctx
        .run_initial_hooks(
            State::new()
                .with_leader(false)
                .with_config("build_label", "r1"),
        )
        .unwrap()
        .into_state();
    let follower = related(&ctx, follower);
    let config = written(&follower);
    assert_eq!(
        config["metrics_scrape_jobs"][0]["static_configs"][0]["targets"][0],
        "localhost:9102"
    );
    assert!(
        follower.relation(COS).unwrap().local_app_data.is_empty(),
        "only unit bags are exchanged on cos_agent"
    );
}

#[test]
fn metrics_port_and_thresholds_reach_the_bag_and_zero_turns_the_scrape_job_off() {
    let ctx = context();
    let state = related(&ctx, serving_r1(&ctx));
    let out = ctx
        .run(
            on::config_changed(),
            state.with_config("metrics_port", 9200),
        )
        .unwrap();
    assert!(
        out.tool_calls
            .iter()
            .any(|c| c.starts_with("relation-set") && c.contains("cos-agent")),
        "the new port is written: {:?}",
        out.tool_calls
    );
    let moved = out.state;
    assert_eq!(
        written(&moved)["metrics_scrape_jobs"][0]["static_configs"],
        json!([{"targets": ["localhost:9200"]}])
    );

    let stricter = configured(&ctx, moved, "alert_error_ratio", json!(0.01));
    let stricter = configured(&ctx, stricter, "alert_latency_p99_seconds", json!(0.75));
    let exprs: Vec<String> = rules(&written(&stricter)["metrics_alert_rules"])
        .iter()
        .map(|r| r["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(exprs.iter().any(|e| e.ends_with("> 0.01")), "{exprs:?}");
    assert!(exprs.iter().any(|e| e.ends_with("> 0.75")), "{exprs:?}");

    let off = configured(&ctx, stricter, "metrics_port", json!(0));
    let config = written(&off);
    assert_eq!(config["metrics_scrape_jobs"], json!([]));
    assert_eq!(config["dashboards"].as_array().unwrap().len(), 1);
    assert!(!rules(&config["metrics_alert_rules"]).is_empty());
    assert_status(&off, StatusName::Active, "serving r1 on :8080");
}

/// A hook with nothing new to say writes nothing: every write would wake
/// the collector with a relation-changed of its own.
#[test]
fn an_unchanged_config_is_not_written_again() {
    let ctx = context();
    let state = related(&ctx, serving_r1(&ctx));
    let again = ctx.run(on::config_changed(), state).unwrap();
    assert_eq!(again.outcome.exit_code, 0);
    assert!(
        !again
            .tool_calls
            .iter()
            .any(|c| c.starts_with("relation-set") && c.contains("cos-agent")),
        "{:?}",
        again.tool_calls
    );
}

#[test]
fn bad_options_are_blocked_naming_the_option() {
    let ctx = context();
    let state = related(&ctx, serving_r1(&ctx));
    for (option, value) in [
        ("alert_error_ratio", json!(0)),
        ("alert_error_ratio", json!(1.5)),
        ("alert_error_ratio", json!(-0.1)),
        ("alert_latency_p99_seconds", json!(0)),
        ("alert_latency_p99_seconds", json!(-2.0)),
        ("metrics_port", json!(8080)),
        ("metrics_port", json!(70000)),
        ("metrics_statsd_port", json!(0)),
    ] {
        let out = ctx
            .run(
                on::config_changed(),
                state.clone().with_config(option, value.clone()),
            )
            .unwrap();
        assert_eq!(out.outcome.exit_code, 0, "{option}={value}");
        assert_status(&out.state, StatusName::Blocked, option);
        assert_untouched_r1(&out.state);
    }
}

#[test]
fn removing_the_relation_leaves_nothing_behind() {
    let ctx = context();
    let state = related(&ctx, serving_r1(&ctx));
    let departed = ctx.run(on::relation_departed(COS, 0), state).unwrap();
    assert_eq!(departed.outcome.exit_code, 0);
    let broken = ctx.run(on::relation_broken(COS), departed.state).unwrap();
    assert_eq!(broken.outcome.exit_code, 0, "{:?}", broken.outcome.error);
    assert!(broken.state.relation(COS).is_none());
    assert!(
        !broken
            .tool_calls
            .iter()
            .any(|c| c.starts_with("relation-set") && c.contains("cos-agent")),
        "{:?}",
        broken.tool_calls
    );
    assert_status(&broken.state, StatusName::Active, "serving r1 on :8080");

    let later = ctx
        .run(
            on::config_changed(),
            broken.state.with_config("metrics_port", 9300),
        )
        .unwrap();
    assert_eq!(later.outcome.exit_code, 0);
    assert!(
        !later.tool_calls.iter().any(|c| c.contains("cos-agent:")),
        "{:?}",
        later.tool_calls
    );
}

/// Python's own decoders, not ours: what the collector runs.
#[test]
fn the_dashboard_decodes_with_pythons_lzma_and_base64() {
    let ctx = context();
    let state = related(&ctx, serving_r1(&ctx));
    let encoded = written(&state)["dashboards"][0]
        .as_str()
        .unwrap()
        .to_string();
    let mut python = Command::new("python3")
        .args([
            "-c",
            "import base64, lzma, sys; \
             sys.stdout.write(lzma.decompress(base64.b64decode(sys.stdin.read(), validate=True)).decode())",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    use std::io::Write;
    python
        .stdin
        .take()
        .unwrap()
        .write_all(encoded.as_bytes())
        .unwrap();
    let out = python.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dashboard: Value = serde_json::from_slice(&out.stdout).expect("the dashboard is JSON");

    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 36);
    let uid = dashboard["uid"].as_str().unwrap();
    assert!(!uid.is_empty() && uid.len() <= 40, "{uid}");
    assert!(
        dashboard["tags"]
            .as_array()
            .unwrap()
            .contains(&json!("charm: wsgi-app")),
        "{}",
        dashboard["tags"]
    );
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(variables
        .iter()
        .any(|v| v["name"] == "prometheusds" && v["type"] == "datasource"));
    let panels = dashboard["panels"].as_array().unwrap();
    let titles: Vec<&str> = panels
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for title in [
        "Requests per second by status",
        "Request latency (p50, p90, p99)",
        "Workers busy vs workers",
        "Serving build",
        "Build switches and health-gate failures",
        "Rollout state",
        "App up",
    ] {
        assert!(titles.contains(&title), "{title} missing from {titles:?}");
    }
    let exprs: Vec<&str> = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .map(|t| t["expr"].as_str().unwrap())
        .collect();
    for metric in [
        "wsgi_app_requests_total",
        "wsgi_app_request_duration_seconds_bucket",
        "wsgi_app_workers_busy",
        "wsgi_app_workers)",
        "wsgi_app_build_info",
        "wsgi_app_switches_total",
        "wsgi_app_health_gate_failures_total",
        "wsgi_app_rollout_state",
        "wsgi_app_up",
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(metric)),
            "no panel reads {metric}"
        );
    }
    for quantile in ["0.5", "0.9", "0.99"] {
        assert!(exprs
            .iter()
            .any(|e| e.starts_with(&format!("histogram_quantile({quantile},"))));
    }
    for panel in panels {
        assert_eq!(
            panel["datasource"]["uid"], "${prometheusds}",
            "{}",
            panel["title"]
        );
    }
}

fn promtool() -> &'static str {
    const PROMTOOL: &str = "/usr/bin/promtool";
    assert!(
        Path::new(PROMTOOL).exists(),
        "{PROMTOOL} is missing: apt-get install prometheus (cargo xtask test installs it)"
    );
    PROMTOOL
}

fn promtool_in(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn the_alert_rules_pass_promtool_check_rules() {
    let ctx = context();
    let state = related(&ctx, serving_r1(&ctx));
    let dir = tempfile::tempdir().unwrap();
    // A rule file is YAML, and JSON is YAML.
    std::fs::write(
        dir.path().join("rules.json"),
        written(&state)["metrics_alert_rules"].to_string(),
    )
    .unwrap();
    let text = promtool_in(dir.path(), &["check", "rules", "rules.json"]);
    assert!(text.contains("SUCCESS: 6 rules found"), "{text}");
}

/// The alert's annotations as Prometheus expands them for one series.
fn expanded(rule: &Value, unit: Option<&str>) -> Value {
    let mut annotations = rule["annotations"].clone();
    for text in annotations.as_object_mut().unwrap().values_mut() {
        let mut s = text
            .as_str()
            .unwrap()
            .replace("{{ $labels.juju_application }}", APP);
        if let Some(unit) = unit {
            s = s.replace("{{ $labels.juju_unit }}", unit);
        }
        *text = json!(s);
    }
    annotations
}

#[test]
fn promtool_test_rules_fires_the_error_ratio_and_rollout_halted_alerts() {
    let ctx = context();
    let state = related(&ctx, serving_r1(&ctx));
    let alerts = written(&state)["metrics_alert_rules"].clone();
    let rule = |name: &str| {
        rules(&alerts)
            .into_iter()
            .find(|r| r["alert"] == name)
            .unwrap()
            .clone()
    };
    let topology = format!(
        "juju_model=\"{MODEL}\",juju_model_uuid=\"{MODEL_UUID}\",juju_application=\"{APP}\""
    );
    let labels = |extra: &[(&str, &str)]| {
        let mut labels = json!({
            "juju_model": MODEL,
            "juju_model_uuid": MODEL_UUID,
            "juju_application": APP,
        });
        for (k, v) in extra {
            labels[*k] = json!(v);
        }
        labels
    };
    let unit = "wsgi-app/0";
    let test = json!({
        "rule_files": ["rules.json"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                // 10% of requests are 5xx: over the default 0.05.
                {"series": format!("wsgi_app_requests_total{{{topology},juju_unit=\"{unit}\",status=\"200\"}}"),
                 "values": "0+90x30"},
                {"series": format!("wsgi_app_requests_total{{{topology},juju_unit=\"{unit}\",status=\"503\"}}"),
                 "values": "0+10x30"},
                // Another application failing every request: not ours to alert on.
                {"series": format!("wsgi_app_requests_total{{juju_model=\"{MODEL}\",juju_model_uuid=\"{MODEL_UUID}\",juju_application=\"other\",status=\"500\"}}"),
                 "values": "0+50x30"},
                {"series": format!("wsgi_app_rollout_state{{{topology},juju_unit=\"{unit}\",state=\"halted\"}}"),
                 "values": "0 0 0 1 1 1 1"},
                {"series": format!("wsgi_app_rollout_state{{{topology},juju_unit=\"{unit}\",state=\"idle\"}}"),
                 "values": "1 1 1 0 0 0 0"},
            ],
            "alert_rule_test": [
                // Pending, not yet firing: the ratio must hold for 5m.
                {"eval_time": "3m", "alertname": "WsgiAppHighErrorRatio", "exp_alerts": []},
                {"eval_time": "15m", "alertname": "WsgiAppHighErrorRatio", "exp_alerts": [{
                    "exp_labels": labels(&[("severity", "critical")]),
                    "exp_annotations": expanded(&rule("WsgiAppHighErrorRatio"), None),
                }]},
                {"eval_time": "2m", "alertname": "WsgiAppRolloutHalted", "exp_alerts": []},
                {"eval_time": "5m", "alertname": "WsgiAppRolloutHalted", "exp_alerts": [{
                    "exp_labels": labels(&[("severity", "warning"), ("juju_unit", unit), ("state", "halted")]),
                    "exp_annotations": expanded(&rule("WsgiAppRolloutHalted"), Some(unit)),
                }]},
            ],
        }],
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.json"), alerts.to_string()).unwrap();
    std::fs::write(dir.path().join("test.json"), test.to_string()).unwrap();
    let text = promtool_in(dir.path(), &["test", "rules", "test.json"]);
    assert!(text.contains("SUCCESS"), "{text}");
}
