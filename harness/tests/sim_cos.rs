//! charm-sim's collector (`add-remote --interface cos_agent --prometheus`):
//! what it makes of our units' `cos-agent` data (pure rendering: scrape
//! jobs per unit, `localhost` made the unit's address, topology labels,
//! rule files, bad data left out with a message), and, with a fake charm,
//! static /metrics servers and Debian's real Prometheus, that each unit
//! gets a collector of its own, Prometheus scrapes every unit with its
//! labels and loads the rules, a configuration promtool refuses leaves the
//! previous one serving, a unit or relation removed takes its jobs with
//! it, and destroying the model stops Prometheus. The wsgi-app charm
//! behind it: tests/e2e_observability.rs.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Model, Sim};
use harness::sim::cos::{render, Source, Topology};
use serde_json::{json, Value};

/// Units of these models get 127.0.64.x, the collector's Prometheus
/// 127.0.65.x (remote units' block).
const BLOCK: &str = "127.0.64";
const PROMETHEUS: &str = "127.0.65.201:9090";

fn topology() -> Topology {
    Topology {
        model: "sim".into(),
        model_uuid: "0123".into(),
    }
}

fn source(unit: &str, address: &str, config: Option<&str>) -> Source {
    Source {
        unit: unit.into(),
        app: unit.split('/').next().unwrap().into(),
        charm: "fake".into(),
        address: address.into(),
        config: config.map(str::to_string),
    }
}

fn agent_config(job: &str, port: u16) -> String {
    json!({
        "metrics_alert_rules": {"groups": [{"name": "fake_alerts", "rules": [
            {"alert": "FakeDown", "expr": "fake_up == 0", "for": "1m"}
        ]}]},
        "log_alert_rules": {},
        "dashboards": [],
        "metrics_scrape_jobs": [{
            "job_name": job,
            "metrics_path": "/metrics",
            "static_configs": [{"targets": [format!("localhost:{port}")]}],
        }],
        "log_slots": [],
    })
    .to_string()
}

fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).unwrap()
}

#[test]
fn each_units_jobs_scrape_its_own_address_with_topology_labels() {
    let config = agent_config("fake_default_1a2b3c4d", 9102);
    let rendered = render(
        &topology(),
        &[
            source("fake/0", "127.0.64.1", Some(&config)),
            source("fake/1", "127.0.64.2", Some(&config)),
        ],
    );
    assert!(rendered.skipped.is_empty(), "{:?}", rendered.skipped);
    let prometheus = yaml(&rendered.files["prometheus.yml"]);
    let jobs = prometheus["scrape_configs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2, "{prometheus:#?}");
    assert_eq!(jobs[1]["job_name"], "fake_default_1a2b3c4d/fake/1");
    assert_eq!(jobs[1]["metrics_path"], "/metrics");
    let group = &jobs[1]["static_configs"][0];
    assert_eq!(group["targets"], json!(["127.0.64.2:9102"]));
    assert_eq!(
        group["labels"],
        json!({
            "job": "fake_default_1a2b3c4d",
            "juju_model": "sim",
            "juju_model_uuid": "0123",
            "juju_application": "fake",
            "juju_unit": "fake/1",
            "juju_charm": "fake",
        })
    );
    assert_eq!(
        jobs[0]["static_configs"][0]["targets"],
        json!(["127.0.64.1:9102"])
    );
    assert_eq!(prometheus["global"]["scrape_interval"], "2s");
    assert_eq!(prometheus["rule_files"], json!(["rules/*.yml"]));
    // One rule file for the application, whichever unit sent it.
    let names: Vec<&String> = rendered.files.keys().collect();
    assert_eq!(names, ["prometheus.yml", "rules/fake.yml"]);
    let rules = yaml(&rendered.files["rules/fake.yml"]);
    assert_eq!(rules["groups"][0]["name"], "fake_alerts");
    assert_eq!(rules["groups"][0]["rules"][0]["expr"], "fake_up == 0");
}

#[test]
fn a_unit_without_jobs_has_no_job_and_other_hosts_are_left_alone() {
    let remote = json!({"metrics_scrape_jobs": [{
        "job_name": "remote",
        "static_configs": [{"targets": ["db.internal:9187", "localhost:9102"],
                            "labels": {"tier": "db", "juju_unit": "spoofed"}}],
    }]})
    .to_string();
    let rendered = render(
        &topology(),
        &[
            source("fake/0", "127.0.64.1", None),
            source("fake/1", "127.0.64.2", Some("{}")),
            source(
                "fake/2",
                "127.0.64.3",
                Some(r#"{"metrics_scrape_jobs":[]}"#),
            ),
            source("fake/3", "127.0.64.4", Some(&remote)),
        ],
    );
    assert!(rendered.skipped.is_empty(), "{:?}", rendered.skipped);
    assert_eq!(rendered.jobs.len(), 1, "{:?}", rendered.jobs);
    assert_eq!(rendered.jobs[0].unit, "fake/3");
    assert_eq!(
        rendered.jobs[0].targets,
        ["db.internal:9187", "127.0.64.4:9102"]
    );
    let prometheus = yaml(&rendered.files["prometheus.yml"]);
    let labels = &prometheus["scrape_configs"][0]["static_configs"][0]["labels"];
    assert_eq!(labels["tier"], "db");
    assert_eq!(
        labels["juju_unit"], "fake/3",
        "the topology is the collector's"
    );
    // No rules sent: no rule file.
    assert_eq!(rendered.files.len(), 1);
    // No unit at all: a configuration with no job, which Prometheus loads.
    let empty = render(&topology(), &[]);
    assert_eq!(
        yaml(&empty.files["prometheus.yml"])["scrape_configs"],
        json!([])
    );
}

#[test]
fn bad_data_is_left_out_with_a_message_naming_the_unit() {
    let good = agent_config("good", 9102);
    let not_a_job = json!({"metrics_scrape_jobs": ["localhost:9102", {
        "job_name": "fine", "static_configs": [{"targets": ["localhost:9102"]}]
    }, {
        "job_name": "targets", "static_configs": [{"targets": "localhost:9102"}]
    }]})
    .to_string();
    let rendered = render(
        &topology(),
        &[
            source("fake/0", "127.0.64.1", Some("{not json")),
            source("fake/1", "127.0.64.2", Some("[1, 2]")),
            source(
                "fake/2",
                "127.0.64.3",
                Some(r#"{"metrics_scrape_jobs": 7}"#),
            ),
            source("fake/3", "127.0.64.4", Some(&not_a_job)),
            source("fake/4", "127.0.64.5", Some(&good)),
        ],
    );
    let skipped = rendered.skipped.join("\n");
    for says in [
        "fake/0: `config` is not JSON (",
        "fake/1: `config` is not a JSON object",
        "fake/2: `metrics_scrape_jobs` is not a list",
        "fake/3: metrics_scrape_jobs[0] is not an object",
        "fake/3: job \"targets\": a static config has no list of targets",
    ] {
        assert!(skipped.contains(says), "{says:?} in\n{skipped}");
    }
    let jobs: Vec<&str> = rendered.jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(jobs, ["fine/fake/3", "good/fake/4"]);
}

// ----- with a real Prometheus -----------------------------------------------------------

const METADATA: &str = "\
name: fake
summary: A fake charm for charm-sim tests
description: Sends what a file holds as its cos-agent config.
provides:
  cos-agent:
    interface: cos_agent
    limit: 1
";

/// A /metrics endpoint on `addr` answering with `body`, until dropped
/// (destroy checks that nothing listens on a unit's address).
struct MetricsServer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MetricsServer {
    fn start(addr: &str, body: &'static str) -> MetricsServer {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                let Ok((mut stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        MetricsServer {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn write_config(dir: &Path, unit: &str, text: &str) {
    std::fs::write(dir.join(unit.replace('/', "-")), text).unwrap();
}

fn prom_status(sim: &Sim) -> (bool, Value) {
    let out = sim.cli(&["prom-status", "cos", "--format", "json"]);
    let status = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "prom-status is JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), status)
}

/// Each scrape target as (job, url, health).
fn targets(sim: &Sim) -> Vec<(String, String, String)> {
    let mut found: Vec<_> = prom_status(sim).1["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let field = |k: &str| t[k].as_str().unwrap_or_default().to_string();
            (field("job"), field("url"), field("health"))
        })
        .collect();
    found.sort();
    found
}

/// Wait (Prometheus applies a reload's targets and scrapes every 2 s)
/// until the targets are `wanted`.
fn wait_for_targets(sim: &Sim, wanted: &[(&str, &str, &str)]) {
    let wanted: Vec<(String, String, String)> = wanted
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let now = targets(sim);
        if now == wanted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus's targets stayed {now:#?}, expected {wanted:#?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn query(sim: &Sim, promql: &str) -> Vec<Value> {
    let answer: Value = serde_json::from_str(&sim.ok(&["prom-query", "cos", promql])).unwrap();
    assert_eq!(answer["status"], "success", "{answer:#}");
    answer["data"]["result"].as_array().unwrap().clone()
}

fn target(unit: u32) -> (String, String) {
    (
        format!("fake_default/fake/{unit}"),
        format!("http://127.0.64.{}:9102/metrics", unit + 1),
    )
}

#[test]
fn a_real_prometheus_scrapes_each_unit_through_its_own_collector() {
    let tmp = tempfile::tempdir().unwrap();
    let configs = tmp.path().to_path_buf();
    let body = format!(
        "for r in $(relation-ids cos-agent); do \
           relation-set -r \"$r\" config=\"$(cat '{}'/\"$(echo $JUJU_UNIT_NAME | tr / -)\" 2>/dev/null)\" || true; \
         done; true",
        configs.display()
    );
    let sim = Model(Sim::with_metadata(&body, METADATA));
    let config = agent_config("fake_default", 9102);
    for unit in ["fake/0", "fake/1", "fake/2"] {
        write_config(&configs, unit, &config);
    }
    const METRICS: &str = "# TYPE fake_up gauge\nfake_up 1\n";
    let servers: Vec<MetricsServer> = (1..=3)
        .map(|n| MetricsServer::start(&format!("127.0.64.{n}:9102"), METRICS))
        .collect();
    let charm = sim.charm.display().to_string();
    sim.ok(&["--address-block", BLOCK, "deploy", &charm, "--units", "2"]);
    sim.ok(&[
        "add-remote",
        "cos",
        "--interface",
        "cos_agent",
        "--prometheus",
        PROMETHEUS,
    ]);
    let status = sim.status_json();
    assert_eq!(status["applications"]["cos"]["units"], json!({}));
    assert_eq!(
        status["applications"]["cos"]["prometheus"],
        format!("http://{PROMETHEUS}/")
    );

    sim.ok(&["relate", "fake:cos-agent", "cos"]);
    // A collector per unit, on its machine, seen by that unit only.
    let status = sim.status_json();
    let collectors = &status["applications"]["cos"]["units"];
    assert_eq!(collectors["cos/0"]["public-address"], "127.0.64.1");
    assert_eq!(collectors["cos/1"]["public-address"], "127.0.64.2");
    assert_eq!(
        sim.events_of("fake/1").last().unwrap(),
        "cos-agent-relation-changed(cos/1)"
    );
    assert!(
        !sim.events_of("fake/1").iter().any(|e| e.contains("cos/0")),
        "{:?}",
        sim.events_of("fake/1")
    );
    let (t0, t1) = (target(0), target(1));
    wait_for_targets(&sim, &[(&t0.0, &t0.1, "up"), (&t1.0, &t1.1, "up")]);
    let series = query(&sim, "fake_up");
    assert_eq!(series.len(), 2, "{series:#?}");
    for (n, s) in series.iter().enumerate() {
        let labels = &s["metric"];
        assert_eq!(labels["juju_unit"], format!("fake/{n}"), "{s:#}");
        assert_eq!(labels["juju_application"], "fake");
        assert_eq!(labels["juju_model"], "sim");
        assert_eq!(labels["job"], "fake_default");
        assert_eq!(labels["instance"], format!("127.0.64.{}:9102", n + 1));
    }
    let (healthy, status) = prom_status(&sim);
    assert!(healthy, "{status:#}");
    assert_eq!(
        status["rule-groups"][0]["name"], "fake_alerts",
        "{status:#}"
    );
    assert_eq!(status["rule-groups"][0]["not-ok"], json!([]), "{status:#}");

    // A job Prometheus cannot load: promtool refuses it, the previous
    // configuration keeps serving, and the status says why.
    let bad = json!({"metrics_scrape_jobs": [{
        "job_name": "fake_default", "scrape_interval": "soon",
        "static_configs": [{"targets": ["localhost:9102"]}],
    }]})
    .to_string();
    write_config(&configs, "fake/0", &bad);
    let out = sim.cli(&["config", "fake", "label=bad"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "our hooks went fine: {stderr}");
    assert!(
        stderr.contains("cos: the previous Prometheus configuration keeps serving"),
        "{stderr}"
    );
    let (healthy, status) = prom_status(&sim);
    assert!(!healthy, "{status:#}");
    assert_eq!(status["status"], "blocked");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("promtool check config refused"),
        "{status:#}"
    );
    assert_eq!(targets(&sim).len(), 2, "the previous configuration serves");

    // A config that is not JSON: that unit's jobs go, with a message.
    write_config(&configs, "fake/0", &config);
    write_config(&configs, "fake/1", "{not json");
    sim.ok(&["config", "fake", "label=not-json"]);
    wait_for_targets(&sim, &[(&t0.0, &t0.1, "up")]);
    let (healthy, status) = prom_status(&sim);
    assert!(healthy, "{status:#}");
    let left_out = status["left-out"].to_string();
    assert!(
        left_out.contains("fake/1: `config` is not JSON"),
        "{left_out}"
    );
    write_config(&configs, "fake/1", &config);
    sim.ok(&["config", "fake", "label=fixed"]);

    // A unit added gets its own collector; removed, its job goes.
    sim.ok(&["add-unit", "fake"]);
    let t2 = target(2);
    wait_for_targets(
        &sim,
        &[
            (&t0.0, &t0.1, "up"),
            (&t1.0, &t1.1, "up"),
            (&t2.0, &t2.1, "up"),
        ],
    );
    assert_eq!(
        sim.status_json()["applications"]["cos"]["units"]["cos/2"]["public-address"],
        "127.0.64.3"
    );
    sim.ok(&["remove-unit", "fake/2"]);
    wait_for_targets(&sim, &[(&t0.0, &t0.1, "up"), (&t1.0, &t1.1, "up")]);
    assert!(sim.status_json()["applications"]["cos"]["units"]
        .get("cos/2")
        .is_none());

    // The relation removed: no job, no collector unit, no rules.
    sim.ok(&["unrelate", "fake:cos-agent", "cos"]);
    wait_for_targets(&sim, &[]);
    assert_eq!(sim.status_json()["applications"]["cos"]["units"], json!({}));
    assert_eq!(prom_status(&sim).1["rule-groups"], json!([]));

    drop(servers);
    sim.ok(&["destroy"]);
    let model = sim.model.display().to_string();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains(&model),
            "a process of the model survived destroy"
        );
    }
    assert!(std::net::TcpStream::connect(PROMETHEUS).is_err());
}
