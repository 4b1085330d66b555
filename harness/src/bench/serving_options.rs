//! Benchmark 4b: the serving options' cost. The app is
//! tests/fixtures/wsgi/factory (Flask, `gunicorn[gevent]`), so one build
//! serves every worker class and each answer says which kind of worker
//! made it. For `sync`, `gthread` and `gevent` in turn, requests/s through
//! the charm's gunicorn against the same build's gunicorn started by hand
//! with the same worker options (serving.rs's method: A B B A with the
//! closed-loop load). Then, with `sync`, the metrics endpoint: requests/s
//! with it on (gunicorn's statsd, each worker's busy gauge sent around
//! every request) against `metrics_port=0`, on off off on; and the
//! exporter's own scrape time under load and its resident memory.
//!
//! The unit lives in charm-sim's address block 127.0.66, so the exporter's
//! fixed ports (9102, statsd 9125 on the unit's address) meet no other
//! model's.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;

use super::env::BenchEnv;
use super::http::{get, get_path, wait_until_serving, LoadPlan};
use super::model::{charm_with_fixture, SimModel, APP};
use super::serving::{alternate, HandGunicorn, CLIENT_THREADS};
use super::stats::{percentile_of_sorted, Summary};
use super::system::{find_process, load_average, status_kib};
use super::{BenchmarkResult, Row};

const PORT: u16 = 18520;
const HAND_PORT: u16 = 18521;
const BLOCK: &str = "127.0.66";
/// config.yaml's default `metrics_port`.
const METRICS_PORT: u16 = 9102;
const WORKERS: u32 = 2;
const LABEL: &str = "factory";
const APP_CALLABLE: &str = "app:create_app('It works!')";
/// Worker class, `webserver_threads`, and the kind of worker the app
/// reports for it.
const CLASSES: &[(&str, u32, &str)] = &[
    ("sync", 1, "sync"),
    ("gthread", 4, "threads"),
    ("gevent", 1, "gevent"),
];
const SCRAPES: usize = 200;

/// The options the charm passes to gunicorn at config.yaml's defaults
/// (the charm's own `Serving`), with `class` and `threads`, so the
/// gunicorn by hand runs with the same.
fn hand_options(class: &str, threads: u32) -> Vec<String> {
    let serving = wsgi_app::workload::service::Serving {
        worker_class: class.parse().expect("a worker class the charm offers"),
        threads,
        ..Default::default()
    };
    let mut options = vec!["--workers".to_string(), WORKERS.to_string()];
    options.extend(serving.args());
    options
}

/// The answer at `addr` must come from a worker of `kind`: a switch that
/// did not happen, or a by-hand gunicorn of another class, would compare
/// the wrong things.
fn require_worker(addr: &SocketAddr, kind: &str) -> Result<(), String> {
    let response = get(addr, Duration::from_secs(5)).map_err(|e| format!("{addr}: {e}"))?;
    let body = String::from_utf8_lossy(&response.body);
    if response.status == 200 && body.contains(&format!("{kind} worker")) {
        Ok(())
    } else {
        Err(format!(
            "{addr} answered {} {body:?}, not a {kind} worker",
            response.status
        ))
    }
}

fn config(model: &SimModel, settings: &[String]) -> Result<(), String> {
    let mut args = vec!["config", APP];
    args.extend(settings.iter().map(String::as_str));
    model.cli(&args).map(drop)
}

/// Wait until `/metrics` at `addr` answers 200, up to `limit`.
fn wait_for_metrics(addr: &SocketAddr, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        match get_path(addr, "/metrics", Duration::from_secs(2)) {
            Ok(r) if r.status == 200 => return Ok(()),
            _ if Instant::now() > deadline => {
                return Err(format!("no /metrics on {addr} within {limit:?}"))
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn median_range(s: &Summary) -> String {
    format!("{:.0} ({:.0}–{:.0})", s.median, s.min, s.max)
}

pub fn run(env: &BenchEnv) -> Result<BenchmarkResult, String> {
    let rounds = if env.quick { 2 } else { 4 };
    // The metrics' cost is a few per cent against runs that spread by
    // tens of per cent on a busy machine: more runs per side.
    let metrics_rounds = if env.quick { 2 } else { 6 };
    let seconds = Duration::from_secs(if env.quick { 2 } else { 4 });
    let work = env.dir.join("serving-options");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let result = measure_all(env, (rounds, metrics_rounds), seconds, &work);
    // The by-hand access logs grow with every request.
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn measure_all(
    env: &BenchEnv,
    (rounds, metrics_rounds): (usize, usize),
    seconds: Duration,
    work: &std::path::Path,
) -> Result<BenchmarkResult, String> {
    let charm = charm_with_fixture(
        env,
        "charm-with-factory-app",
        "factory",
        LABEL,
        &["app.py", "requirements.txt"],
    )?;
    let install_started = Instant::now();
    let model = SimModel::deploy_in_block(
        env,
        "serving-options",
        PORT,
        BLOCK,
        &charm,
        &[
            ("build_label", LABEL.into()),
            ("archive_filename", "app.tar.gz".into()),
            ("requirements_path", "requirements.txt".into()),
            ("wsgi_application", APP_CALLABLE.into()),
            ("nagios_index_content", "Revision factory".into()),
            ("workers", WORKERS.to_string()),
        ],
    )?;
    let charm_addr = model.unit_addr()?;
    wait_until_serving(&charm_addr, Duration::from_secs(120))?;
    eprintln!(
        "bench serving-options: deployed in {:.0} s (pip installs flask and gevent)",
        install_started.elapsed().as_secs_f64()
    );
    let build = model
        .unit_paths()?
        .root
        .join("srv/wsgi-app/builds")
        .join(LABEL);
    let hand_addr = SocketAddr::new(charm_addr.ip(), HAND_PORT);
    let metrics_addr = SocketAddr::new(charm_addr.ip(), METRICS_PORT);
    wait_for_metrics(&metrics_addr, Duration::from_secs(30))?;

    let mut rows = Vec::new();
    let mut classes_json = serde_json::Map::new();
    let mut loads = Vec::new();
    let mut failures = 0;

    // Metrics first, while the unit serves its first class (sync).
    eprintln!(
        "bench serving-options: metrics on/off, {metrics_rounds} rounds of {} s each",
        seconds.as_secs()
    );
    loads.push(("metrics on/off, start", load_average()));
    let mut metrics_on = true;
    let mut switches_ms = Vec::new();
    let on_off = alternate(metrics_rounds, seconds, |on| {
        if on != metrics_on {
            let port = if on { METRICS_PORT } else { 0 };
            let started = Instant::now();
            config(&model, &[format!("metrics_port={port}")])?;
            switches_ms.push(started.elapsed().as_secs_f64() * 1000.0);
            metrics_on = on;
            wait_until_serving(&charm_addr, Duration::from_secs(30))?;
            if on {
                wait_for_metrics(&metrics_addr, Duration::from_secs(30))?;
            } else if get_path(&metrics_addr, "/metrics", Duration::from_secs(2)).is_ok() {
                return Err("metrics_port=0 left the exporter answering".into());
            }
        }
        require_worker(&charm_addr, "sync")?;
        Ok(charm_addr)
    })?;
    failures += on_off.failures;
    if !metrics_on {
        config(&model, &[format!("metrics_port={METRICS_PORT}")])?;
        wait_for_metrics(&metrics_addr, Duration::from_secs(30))?;
    }
    loads.push(("metrics on/off, end", load_average()));
    let on_s = Summary::of(&on_off.a).expect("rounds > 0");
    let off_s = Summary::of(&on_off.b).expect("rounds > 0");
    let cost_pct = (on_s.median / off_s.median - 1.0) * 100.0;
    rows.push(Row::info(
        "requests/s, sync, metrics on (default: statsd, busy gauges sent) (median; min–max)".into(),
        median_range(&on_s),
    ));
    rows.push(Row::info(
        "requests/s, sync, metrics off (metrics_port=0) (median; min–max)".into(),
        median_range(&off_s),
    ));
    rows.push(Row::info(
        "metrics on vs off, requests/s (medians)".into(),
        format!("{cost_pct:+.1} %"),
    ));

    // The exporter as Prometheus meets it: scrapes while the app is busy.
    let load = LoadPlan {
        target: charm_addr,
        threads: CLIENT_THREADS,
        rate_per_thread: None,
        max_duration: Duration::from_secs(120),
        request_timeout: Duration::from_secs(5),
    }
    .start()?;
    std::thread::sleep(Duration::from_millis(500));
    loads.push(("scrapes, start", load_average()));
    let mut scrape_ms = Vec::with_capacity(SCRAPES);
    let mut scrape_failures = 0;
    let mut body_bytes = 0;
    for _ in 0..SCRAPES {
        let started = Instant::now();
        match get_path(&metrics_addr, "/metrics", Duration::from_secs(5)) {
            Ok(r) if r.status == 200 => {
                scrape_ms.push(started.elapsed().as_secs_f64() * 1000.0);
                body_bytes = r.body.len();
            }
            _ => scrape_failures += 1,
        }
    }
    let listen = metrics_addr.to_string();
    let exporter = find_process(&["metrics-exporter", "--listen", &listen]);
    let rss = exporter.and_then(|pid| status_kib(pid, "VmRSS"));
    let peak = exporter.and_then(|pid| status_kib(pid, "VmHWM"));
    let scrape_load = load.finish();
    loads.push(("scrapes, end", load_average()));
    let scrape_s = Summary::of(&scrape_ms)
        .ok_or("no scrape answered")?
        .without_samples();
    let mut sorted = scrape_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let scrape_p99 = percentile_of_sorted(&sorted, 99.0);
    let scrape_rps = scrape_load.iter().filter(|r| !r.failed()).count() as f64
        / scrape_load
            .last()
            .map_or(1.0, |r| r.end().as_secs_f64().max(0.001));
    rows.push(Row::info(
        format!(
            "GET /metrics under load, {} scrapes one after another (median; p99)",
            scrape_ms.len()
        ),
        format!(
            "{:.1} ms ({scrape_p99:.1}){}",
            scrape_s.median,
            if scrape_failures > 0 {
                format!("; {scrape_failures} failed")
            } else {
                String::new()
            }
        ),
    ));
    let mib =
        |kib: Option<u64>| kib.map_or("-".to_string(), |k| format!("{:.1}", k as f64 / 1024.0));
    rows.push(Row::info(
        "metrics-exporter resident memory after the scrapes (VmRSS; peak VmHWM)".into(),
        format!("{} MiB ({} MiB)", mib(rss), mib(peak)),
    ));

    for &(class, threads, kind) in CLASSES {
        eprintln!(
            "bench serving-options: {class} (threads {threads}), {rounds} rounds of {} s each side",
            seconds.as_secs()
        );
        config(
            &model,
            &[
                format!("webserver_worker_class={class}"),
                format!("webserver_threads={threads}"),
            ],
        )?;
        wait_until_serving(&charm_addr, Duration::from_secs(30))?;
        require_worker(&charm_addr, kind)?;
        let hand = HandGunicorn::start(
            &build,
            hand_addr,
            &hand_options(class, threads),
            work,
            APP_CALLABLE,
        )?;
        require_worker(&hand_addr, kind)?;
        let before = load_average();
        let found = alternate(rounds, seconds, |charm_side| {
            Ok(if charm_side { charm_addr } else { hand_addr })
        })?;
        drop(hand);
        let after = load_average();
        failures += found.failures;
        let charm_s = Summary::of(&found.a).expect("rounds > 0");
        let hand_s = Summary::of(&found.b).expect("rounds > 0");
        let ratio = charm_s.median / hand_s.median;
        let name = if threads > 1 {
            format!("{class}, {threads} threads")
        } else {
            class.to_string()
        };
        rows.push(Row::info(
            format!("requests/s, {name}, charm-managed gunicorn (median; min–max)"),
            median_range(&charm_s),
        ));
        rows.push(Row::info(
            format!("requests/s, {name}, gunicorn by hand (median; min–max)"),
            median_range(&hand_s),
        ));
        rows.push(Row::target(
            format!("charm / by hand, {name}"),
            format!("{ratio:.3}"),
            "≥ 0.95",
            ratio >= 0.95,
        ));
        classes_json.insert(
            class.to_string(),
            json!({
                "threads": threads,
                "charm_requests_per_second": charm_s,
                "by_hand_requests_per_second": hand_s,
                "ratio_charm_over_by_hand": ratio,
                "failed_requests": found.failures,
                "load_average_before": before,
                "load_average_after": after,
            }),
        );
        loads.push((class, after));
    }
    drop(model);

    let loads_text = loads
        .iter()
        .map(|(at, l)| format!("{at} {l:.1}"))
        .collect::<Vec<_>>()
        .join(", ");
    let switch_s = Summary::of(&switches_ms).map(|s| s.without_samples());
    Ok(BenchmarkResult {
        name: "serving-options",
        title: "Serving options: worker classes, the metrics endpoint's cost".into(),
        results: json!({
            "rounds": rounds,
            "metrics_rounds": metrics_rounds,
            "seconds_per_run": seconds.as_secs(),
            "client_threads": CLIENT_THREADS,
            "workers": WORKERS,
            "app": "tests/fixtures/wsgi/factory",
            "worker_classes": classes_json,
            "metrics": {
                "on_requests_per_second": on_s,
                "off_requests_per_second": off_s,
                "on_vs_off_percent": cost_pct,
                "metrics_port_change_ms": switch_s,
                "scrapes": scrape_ms.len(),
                "scrape_failures": scrape_failures,
                "scrape_ms": scrape_s,
                "scrape_p99_ms": scrape_p99,
                "scrape_body_bytes": body_bytes,
                "app_requests_per_second_while_scraped": scrape_rps,
                "exporter_rss_kib": rss,
                "exporter_peak_rss_kib": peak,
            },
            "failed_requests": failures,
            "load_average": loads.iter().map(|(at, l)| json!({"at": at, "load": l})).collect::<Vec<_>>(),
        }),
        rows,
        notes: vec![
            format!(
                "The app is tests/fixtures/wsgi/factory (Flask made by `{APP_CALLABLE}`, requirements `flask` and `gunicorn[gevent]==27.0.1`), one build shipped in the charm's files/ and installed by the charm with pip, so every worker class serves the same code; each side's answer is checked to come from the class measured. {WORKERS} workers throughout; the other gunicorn options at config.yaml's defaults on both sides."
            ),
            format!(
                "{CLIENT_THREADS} closed-loop client threads, a new connection per request (so keep-alive plays no part), {} s per run after a 0.3 s warm-up, {rounds} runs per side alternating A B B A; failed requests in all runs: {failures}.",
                seconds.as_secs()
            ),
            "Worker classes: the charm-managed side is the unit's gunicorn as the charm runs it by default, metrics on (its config file's busy-gauge hooks and `--statsd-host`); by hand is `venv/bin/python -m gunicorn` from the same build dir with the same worker class, threads and workers, bound to the unit's address on the next port, without config file or statsd, in a session of its own as the supervisor's gunicorn is (the kernel's autogroup shares the CPU by session). So the ratio carries the metrics' cost as well as the socket held by the supervisor, running as the app user and the config file's hooks.".into(),
            format!(
                "Metrics: the same unit, sync, with `metrics_port` at its default and at 0 (no exporter, no `--statsd-host`; the busy-gauge hooks stay in the config file but have no statsd logger to send through), changed with `charm-sim config` between runs (each change a switch to a new gunicorn master), on off off on …, {metrics_rounds} runs each. The scrape time is GET /metrics on the unit's address, {SCRAPES} one after another while the closed-loop load runs; each scrape also asks the app for nagios_index_path, so it includes one request through the busy app. Resident memory is read from /proc/<pid>/status of the `metrics-exporter` process right after the scrapes."
            ),
            format!(
                "The machine was busy with other work throughout (2 cores; the load generator shares them with gunicorn): 1-minute load average {loads_text}. Absolute requests/s are low and noisy for that reason; the alternation is what makes the comparisons fair."
            ),
        ],
    })
}
