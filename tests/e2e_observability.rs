//! Monitoring sees the app, end to end: two units of the real charm
//! serving build r1 under a bounded load, related on `cos-agent` to
//! charm-sim's collector (`add-remote --interface cos_agent --prometheus`),
//! which has Debian's real Prometheus scrape each unit's exporter with the
//! Juju topology labels and load the charm's alert rules. Through
//! Prometheus's HTTP API: both targets up, `wsgi_app_requests_total`
//! growing under load, `wsgi_app_build_info` naming r1 on both units, then
//! r2 and `wsgi_app_switches_total` up by one after the rollout; every
//! alert rule evaluated without error. The exporter's own output passes
//! Debian's `promtool check metrics`. Removing the relation takes the jobs
//! away. Names: /work/notes/metrics-spec.md.

mod e2e_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e_support::load::Load;
use e2e_support::Sim;
use serde_json::Value;

const BLOCK: &str = "127.0.64";
/// In the remote units' block (127.0.65), far above the collector units'.
const PROMETHEUS: &str = "127.0.65.200:9090";
const UNITS: [&str; 2] = ["wsgi-app/0", "wsgi-app/1"];
/// The exporter's port (option `metrics_port`'s default).
const METRICS_PORT: u16 = 9102;

/// Wait (boundedly: Prometheus scrapes every 2 s) until `done` holds.
fn wait_until<T: std::fmt::Debug>(
    what: &str,
    mut probe: impl FnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let now = probe();
        if done(&now) {
            return now;
        }
        assert!(Instant::now() < deadline, "{what}: still {now:#?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A query's value per unit (`juju_unit` label), for queries with one
/// series per unit.
fn per_unit(sim: &Sim, promql: &str) -> BTreeMap<String, f64> {
    sim.prom_query("cos", promql)
        .iter()
        .map(|s| {
            let unit = s["metric"]["juju_unit"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let value = s["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN);
            (unit, value)
        })
        .collect()
}

fn units() -> Vec<String> {
    UNITS.iter().map(|u| u.to_string()).collect()
}

/// Each scrape target's unit and health.
fn target_health(sim: &Sim) -> Vec<(String, String)> {
    let (_, status) = sim.prom_status("cos");
    let mut found: Vec<(String, String)> = status["targets"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|t| {
            let field = |k: &str| t[k].as_str().unwrap_or_default().to_string();
            (field("unit"), field("health"))
        })
        .collect();
    found.sort();
    found
}

#[test]
fn a_real_prometheus_scrapes_both_units_and_follows_a_rollout() {
    let sim = Sim::new(BLOCK);
    sim.ok(&[
        "deploy",
        &sim.charm_dir(),
        "--units",
        "2",
        "--config",
        "build_label=r1",
    ]);
    sim.ok(&[
        "add-remote",
        "cos",
        "--interface",
        "cos_agent",
        "--prometheus",
        PROMETHEUS,
    ]);
    sim.ok(&["relate", "wsgi-app:cos-agent", "cos"]);
    let status = sim.status_json();
    assert!(
        status["applications"]["cos"]["application-status"]["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with(&format!("prometheus on {PROMETHEUS}, 2 scrape jobs")),
        "{:#}",
        status["applications"]["cos"]
    );

    let load = Load::start(&[sim.unit_url(0), sim.unit_url(1)], 2);
    let up: Vec<(String, String)> = UNITS
        .iter()
        .map(|u| (u.to_string(), "up".to_string()))
        .collect();
    wait_until("both targets up", || target_health(&sim), |t| *t == up);

    // Requests counted on each unit, and counted on.
    let total = "sum by (juju_unit) (wsgi_app_requests_total)";
    let first = wait_until(
        "requests counted",
        || per_unit(&sim, total),
        |v| v.keys().cloned().collect::<Vec<_>>() == units() && v.values().all(|n| *n > 0.0),
    );
    let second = wait_until(
        "requests counted on",
        || per_unit(&sim, total),
        |v| {
            units()
                .iter()
                .all(|u| v.get(u).copied().unwrap_or(0.0) > first[u])
        },
    );
    eprintln!("wsgi_app_requests_total by unit: {first:?} then {second:?}");

    let on_r1 = wait_until(
        "build_info names r1",
        || per_unit(&sim, r#"wsgi_app_build_info{build_label="r1"}"#),
        |v| v.keys().cloned().collect::<Vec<_>>() == units(),
    );
    assert!(on_r1.values().all(|v| *v == 1.0), "{on_r1:?}");
    let series = sim.prom_query("cos", r#"wsgi_app_build_info{juju_unit="wsgi-app/1"}"#);
    let labels = &series[0]["metric"];
    assert_eq!(labels["juju_application"], "wsgi-app", "{labels:#}");
    assert_eq!(labels["juju_model"], "sim", "{labels:#}");
    assert_eq!(
        labels["instance"],
        format!("{}:{METRICS_PORT}", sim.unit_address(1))
    );

    // The exporter's own answer, as Prometheus's own linter judges it.
    let check = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "curl -fsS http://{}:{METRICS_PORT}/metrics | promtool check metrics",
            sim.unit_address(0)
        ))
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    eprintln!(
        "promtool check metrics: exit {:?}, said {said:?}",
        check.status.code()
    );
    assert!(check.status.success(), "promtool check metrics: {said}");

    // r2, rolled out under the same load: build_info follows and each
    // unit counts one more switch.
    let switches = "wsgi_app_switches_total";
    // A counter not yet exported counts as 0, as Prometheus's increase() would.
    let exported = per_unit(&sim, switches);
    let before: BTreeMap<String, f64> = units()
        .into_iter()
        .map(|u| {
            let n = exported.get(&u).copied().unwrap_or(0.0);
            (u, n)
        })
        .collect();
    sim.ok(&["config", "wsgi-app", "build_label=r2"]);
    for n in 0..2 {
        assert_eq!(
            e2e_support::get(&sim.unit_url(n)).unwrap(),
            "It works! Revision 2"
        );
    }
    let on_r2 = wait_until(
        "build_info names r2",
        || per_unit(&sim, r#"wsgi_app_build_info{build_label="r2"}"#),
        |v| v.keys().cloned().collect::<Vec<_>>() == units(),
    );
    assert!(on_r2.values().all(|v| *v == 1.0), "{on_r2:?}");
    let after = wait_until(
        "switches counted",
        || per_unit(&sim, switches),
        |v| {
            units()
                .iter()
                .all(|u| v.get(u).copied().unwrap_or(0.0) > before[u])
        },
    );
    eprintln!("wsgi_app_switches_total by unit: {before:?} then {after:?}");
    load.finish_without_failures("rollout r1 → r2 watched by Prometheus", 100);

    // The charm's alert rules: loaded, and every rule evaluated cleanly.
    let (healthy, status) = wait_until(
        "every alert rule evaluated",
        || sim.prom_status("cos"),
        |(_, s): &(bool, Value)| {
            let groups = s["rule-groups"].as_array().cloned().unwrap_or_default();
            !groups.is_empty()
                && groups
                    .iter()
                    .all(|g| g["not-ok"].as_array().is_some_and(Vec::is_empty))
        },
    );
    assert!(healthy, "{status:#}");
    eprintln!("rule groups: {:#}", status["rule-groups"]);

    // The relation removed: no job is left.
    sim.ok(&["unrelate", "wsgi-app:cos-agent", "cos"]);
    wait_until("no target", || target_health(&sim), Vec::is_empty);
    sim.ok(&["remove-remote", "cos"]);
    let addrs = [sim.unit_url(0), sim.unit_url(1), PROMETHEUS.to_string()];
    let addrs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    sim.destroy_and_check_nothing_left(&addrs);
}
