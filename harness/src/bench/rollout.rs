//! Benchmark: a whole application's rollout, measured where users are.
//! Units of the charm (2, 4 and 8) behind charm-sim's real haproxy, each
//! with r1 and r2 installed and serving r1; a paced load through haproxy
//! while `charm-sim config wsgi-app current_symlink=r2` runs the leader's
//! rollout to its end, with `rollout_max_unavailable` 1 and then 50%. We
//! time the rollout (the command, which returns when every unit's hooks
//! are done), count failed requests at the balancer, and compare p99
//! latency during the rollout with the steady state before it.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;

use super::env::BenchEnv;
use super::http::{wait_until_serving, LoadPlan, RequestRecord};
use super::model::SimModel;
use super::stats::percentile;
use super::{BenchmarkResult, Row};

const PORT: u16 = 18515;
const FRONTEND: &str = "127.0.58.200:18516";
const THREADS: usize = 2;
const RATE_PER_THREAD: f64 = 100.0;
/// Load before the rollout: the steady-state sample.
const STEADY: Duration = Duration::from_secs(3);

struct Case {
    units: u32,
    batch: &'static str,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn p99_ms(records: &[&RequestRecord]) -> f64 {
    let latencies: Vec<f64> = records.iter().map(|r| ms(r.latency)).collect();
    if latencies.is_empty() {
        return f64::NAN;
    }
    percentile(&latencies, 99.0)
}

/// One rollout of `case`: (rollout ms, requests, failed, steady p99, p99
/// during the rollout, units on r2 after).
fn measure(env: &BenchEnv, case: &Case) -> Result<serde_json::Value, String> {
    let name = format!("rollout-{}-{}", case.units, case.batch.replace('%', "pct"));
    let model = SimModel::deploy_units(
        env,
        &name,
        PORT,
        case.units,
        None,
        &[
            ("build_label", "r1".to_string()),
            ("workers", "1".to_string()),
            ("rollout_max_unavailable", case.batch.to_string()),
        ],
        "directory",
    )?;
    let outcome = (|| {
        model.cli(&[
            "add-remote",
            "lb",
            "--interface",
            "http",
            "--haproxy",
            FRONTEND,
        ])?;
        model.cli(&["relate", "wsgi-app:website", "lb"])?;
        let frontend: SocketAddr = FRONTEND.parse().map_err(|e| format!("{e}"))?;
        wait_until_serving(&frontend, Duration::from_secs(30))?;
        model.cli(&["config", "wsgi-app", "current_symlink=r1", "build_label=r2"])?;
        let load = LoadPlan {
            target: frontend,
            threads: THREADS,
            rate_per_thread: Some(RATE_PER_THREAD),
            max_duration: Duration::from_secs(900),
            request_timeout: Duration::from_secs(5),
        }
        .start()?;
        std::thread::sleep(STEADY);
        let started = load.now();
        model.cli(&["config", "wsgi-app", "current_symlink=r2"])?;
        let ended = load.now();
        std::thread::sleep(Duration::from_millis(500));
        let records = load.finish();
        let steady: Vec<&RequestRecord> = records.iter().filter(|r| r.end() < started).collect();
        let during: Vec<&RequestRecord> = records
            .iter()
            .filter(|r| r.start >= started && r.start <= ended)
            .collect();
        let failed = records.iter().filter(|r| r.failed()).count();
        let status = model.cli(&["status", "--format", "json"])?;
        let on_r2 = status.matches("serving r2").count();
        Ok(json!({
            "units": case.units,
            "batch": case.batch,
            "rollout_ms": ms(ended - started),
            "requests": records.len(),
            "failed": failed,
            "steady_p99_ms": p99_ms(&steady),
            "rollout_p99_ms": p99_ms(&during),
            "units_on_r2": on_r2,
        }))
    })();
    let _ = model.cli(&["destroy"]);
    outcome
}

pub fn run(env: &BenchEnv) -> Result<BenchmarkResult, String> {
    let sizes: &[u32] = if env.quick { &[2, 4] } else { &[2, 4, 8] };
    let mut cases = Vec::new();
    for &units in sizes {
        for batch in ["1", "50%"] {
            cases.push(Case { units, batch });
        }
    }
    let mut results = Vec::new();
    let mut rows = Vec::new();
    for case in &cases {
        eprintln!(
            "bench: rollout of {} units, batch {}",
            case.units, case.batch
        );
        let r = measure(env, case)?;
        let failed = r["failed"].as_u64().unwrap_or(u64::MAX);
        let moved = r["units_on_r2"].as_u64().unwrap_or(0);
        rows.push(Row::target(
            format!(
                "{} units, batch {}: failed requests at haproxy",
                case.units, case.batch
            ),
            format!("{failed} of {}", r["requests"]),
            "0",
            failed == 0,
        ));
        rows.push(Row::target(
            format!(
                "{} units, batch {}: units on r2 after",
                case.units, case.batch
            ),
            moved.to_string(),
            &case.units.to_string(),
            moved == u64::from(case.units),
        ));
        rows.push(Row::info(
            format!("{} units, batch {}: rollout time", case.units, case.batch),
            format!(
                "{:.1} s",
                r["rollout_ms"].as_f64().unwrap_or(f64::NAN) / 1000.0
            ),
        ));
        rows.push(Row::info(
            format!(
                "{} units, batch {}: p99 during the rollout / steady",
                case.units, case.batch
            ),
            format!(
                "{:.1} ms / {:.1} ms",
                r["rollout_p99_ms"].as_f64().unwrap_or(f64::NAN),
                r["steady_p99_ms"].as_f64().unwrap_or(f64::NAN)
            ),
        ));
        results.push(r);
    }
    Ok(BenchmarkResult {
        name: "rollout",
        title: "Whole-application rollouts behind haproxy".into(),
        results: json!({ "cases": results }),
        rows,
        notes: vec![
            format!("Directory units of the charm behind charm-sim's real haproxy (`add-remote lb --haproxy {FRONTEND}`, `website`), one gunicorn worker each; r1 and r2 installed on every unit; the leader rolls `current_symlink=r2` out over the `rollout` peer relation, the units' hooks running side by side as Juju's agents run them."),
            format!("{THREADS} client threads at {RATE_PER_THREAD} requests/s each through haproxy, a new connection per request, 5 s timeout; a failure is a connection error, a timeout or any status but 200. Steady p99 is over the {} s before the rollout; rollout time is `charm-sim config` from start to return (every unit's hooks done).", STEADY.as_secs()),
        ],
    })
}
