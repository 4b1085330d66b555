//! Benchmark 3: switching builds under load. A unit with r1 and r2
//! installed serves r1; a paced load (new connection per request) runs
//! while `set-current-symlink` moves it r1→r2→r1 again and again through
//! charm-sim. We count failed requests (connection errors and non-200s),
//! compare latency inside the switch windows with the steady state before
//! the first switch, and time from each action's start to the first
//! response that came from the new build. Then the same load while the
//! unit is asked, again and again, to switch to a build that imports fine
//! but answers 500 (broken at run time): the pre-flight must refuse it
//! before any request reaches it.
//!
//! `switch` measures a directory unit (the charm's direct supervisor);
//! `switch-systemd` the same on a container unit, a machine booted with
//! systemd where the charm uses systemd's socket unit and its two gunicorn
//! slots, as on a real Juju unit.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use super::env::BenchEnv;
use super::http::{wait_until_serving, LoadPlan, RequestRecord};
use super::model::{SimModel, APP, UNIT};
use super::stats::{percentile, Summary};
use super::{BenchmarkResult, Row};

const PORT: u16 = 18503;
const SYSTEMD_PORT: u16 = 18506;
/// Client threads and the rate each keeps: 500 requests/s in all.
const THREADS: usize = 2;
const RATE_PER_THREAD: f64 = 250.0;
/// Load before the first switch: the steady-state sample.
const STEADY: Duration = Duration::from_secs(3);
/// How long after an action returns its window still counts: the old
/// master finishes its in-flight requests then.
const WINDOW_TAIL: Duration = Duration::from_secs(1);
/// Pause between switches, so windows never overlap.
const PAUSE: Duration = Duration::from_millis(1500);

/// One switch: when its action started and ended (from the load's start),
/// and the revision it moved to.
struct Window {
    start: Duration,
    end: Duration,
    revision: u8,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A build that imports fine and answers 500 to everything.
const BROKEN_AT_RUN_TIME: &str = r#"
def application(environ, start_response):
    body = b"TemplateNotFound: index.html"
    start_response("500 Internal Server Error", [("Content-Length", str(len(body)))])
    return [body]
"#;

/// The charm from this tree with one more build in `files/`: `broken`.
fn charm_with_broken_build(env: &BenchEnv) -> Result<PathBuf, String> {
    let charm = env.dir.join("charm-with-broken-build");
    let _ = std::fs::remove_dir_all(&charm);
    harness::sim::charm::lay_out_charm(
        &env.workspace,
        &env.workspace.join("target/release/wsgi-app"),
        &charm,
    )
    .map_err(|e| format!("laying out the charm: {e}"))?;
    let source = env.dir.join("broken-build-source");
    std::fs::create_dir_all(&source).map_err(|e| e.to_string())?;
    std::fs::write(source.join("example_wsgi.py"), BROKEN_AT_RUN_TIME)
        .map_err(|e| e.to_string())?;
    let files = charm.join("files/broken");
    std::fs::create_dir_all(&files).map_err(|e| e.to_string())?;
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(&source)
        .arg("-cjf")
        .arg(files.join("example-wsgi-app.tar.bzip2"))
        .arg("example_wsgi.py")
        .status()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    if !status.success() {
        return Err(format!("tar failed ({status})"));
    }
    Ok(charm)
}

/// Where the benchmark's unit runs.
struct Substrate {
    name: &'static str,
    title: &'static str,
    machines: &'static str,
    port: u16,
}

pub fn run(env: &BenchEnv) -> Result<BenchmarkResult, String> {
    run_on(
        env,
        &Substrate {
            name: "switch",
            title: "Switching builds under load",
            machines: "directory",
            port: PORT,
        },
    )
}

pub fn run_systemd(env: &BenchEnv) -> Result<BenchmarkResult, String> {
    run_on(
        env,
        &Substrate {
            name: "switch-systemd",
            title: "Switching builds under load, container unit (systemd)",
            machines: "container",
            port: SYSTEMD_PORT,
        },
    )
}

fn run_on(env: &BenchEnv, substrate: &Substrate) -> Result<BenchmarkResult, String> {
    let round_trips = if env.quick { 3 } else { 10 };
    let broken_attempts = if env.quick { 2 } else { 5 };
    let charm = charm_with_broken_build(env)?;
    let model = SimModel::deploy_on(
        env,
        substrate.name,
        substrate.port,
        Some(&charm),
        &[("build_label", "r1".into()), ("workers", "2".into())],
        substrate.machines,
    )?;
    eprintln!(
        "bench {}: installing r2 and a broken build beside r1",
        substrate.name
    );
    model.cli(&["config", APP, "build_label=broken", "current_symlink=r1"])?;
    model.cli(&["config", APP, "build_label=r2", "current_symlink=r1"])?;
    let addr = model.unit_addr()?;
    wait_until_serving(&addr, Duration::from_secs(30))?;

    // Bounded by time whatever happens: steady state, plus at most 20 s
    // per switch (the actions take about one).
    let plan = LoadPlan {
        target: addr,
        threads: THREADS,
        rate_per_thread: Some(RATE_PER_THREAD),
        max_duration: STEADY + Duration::from_secs(20 * (2 * round_trips + broken_attempts) as u64),
        request_timeout: Duration::from_secs(5),
    };
    eprintln!(
        "bench {}: {} switches under {} requests/s",
        substrate.name,
        2 * round_trips,
        THREADS as f64 * RATE_PER_THREAD
    );
    let load = plan.start()?;
    std::thread::sleep(STEADY);
    let mut windows = Vec::new();
    for _ in 0..round_trips {
        for (label, revision) in [("r2", 2u8), ("r1", 1u8)] {
            let start = load.now();
            model.cli(&[
                "run",
                UNIT,
                "set-current-symlink",
                &format!("symlink={label}"),
            ])?;
            let end = load.now();
            windows.push(Window {
                start,
                end,
                revision,
            });
            std::thread::sleep(PAUSE);
        }
    }
    // The unit serves r1 now; each attempt must leave it there.
    let mut broken_windows = Vec::new();
    for _ in 0..broken_attempts {
        let start = load.now();
        let refused = model
            .cli(&["run", UNIT, "set-current-symlink", "symlink=broken"])
            .is_err();
        let end = load.now();
        if !refused {
            return Err("the switch to the broken build was not refused".into());
        }
        broken_windows.push(Window {
            start,
            end,
            revision: 1,
        });
        std::thread::sleep(PAUSE);
    }
    let records = load.finish();
    drop(model);
    let mut outcome = analyse(substrate, &records, &windows, round_trips)?;
    add_broken_build_rows(&mut outcome, &records, &broken_windows);
    Ok(outcome)
}

/// Rows and figures for the switches to a build broken at run time.
fn add_broken_build_rows(
    outcome: &mut BenchmarkResult,
    records: &[RequestRecord],
    windows: &[Window],
) {
    let in_window = |r: &RequestRecord| {
        windows
            .iter()
            .any(|w| r.start >= w.start && r.start <= w.end + WINDOW_TAIL)
    };
    let during: Vec<&RequestRecord> = records.iter().filter(|r| in_window(r)).collect();
    let failed = during.iter().filter(|r| r.failed()).count();
    let not_r1 = during
        .iter()
        .filter(|r| !r.failed() && r.revision != Some(1))
        .count();
    let latencies: Vec<f64> = during
        .iter()
        .filter(|r| !r.failed())
        .map(|r| ms(r.latency))
        .collect();
    let p99 = if latencies.is_empty() {
        f64::NAN
    } else {
        percentile(&latencies, 99.0)
    };
    let steady_p99 = outcome.results["steady_p99_ms"]
        .as_f64()
        .unwrap_or(f64::NAN);
    let action_ms: Vec<f64> = windows.iter().map(|w| ms(w.end - w.start)).collect();
    let action = Summary::of(&action_ms).map(|s| s.without_samples());
    outcome.rows.push(Row::target(
        format!(
            "failed requests while refusing a build that answers 500 ({} requests, {} attempts)",
            during.len(),
            windows.len()
        ),
        format!("{failed} (and {not_r1} answered by another build than r1)"),
        "0",
        failed == 0 && not_r1 == 0,
    ));
    outcome.rows.push(Row::info(
        "latency p99 while refusing it / steady p99".into(),
        format!(
            "{p99:.2} ms / {steady_p99:.2} ms ({:.2}×)",
            p99 / steady_p99
        ),
    ));
    if let Some(action) = &action {
        outcome.rows.push(Row::info(
            "refused set-current-symlink, whole command (median; max)".into(),
            format!("{:.0} ms ({:.0})", action.median, action.max),
        ));
    }
    outcome.results["broken_build"] = json!({
        "attempts": windows.len(),
        "requests_in_windows": during.len(),
        "failed_requests": failed,
        "answered_by_another_build": not_r1,
        "p99_ms": p99,
        "action_ms": action,
    });
    outcome.notes.push("The broken build imports fine and answers 500 to every request; each attempt is `set-current-symlink symlink=broken` on a unit serving r1, and must fail with r1 still serving. Its window runs like a good switch's.".into());
}

fn analyse(
    substrate: &Substrate,
    records: &[RequestRecord],
    windows: &[Window],
    round_trips: usize,
) -> Result<BenchmarkResult, String> {
    let first_switch = windows.first().map_or(Duration::MAX, |w| w.start);
    let in_window = |r: &RequestRecord| {
        windows
            .iter()
            .any(|w| r.start >= w.start && r.start <= w.end + WINDOW_TAIL)
    };
    let latencies = |pick: &dyn Fn(&RequestRecord) -> bool| -> Vec<f64> {
        records
            .iter()
            .filter(|r| !r.failed() && pick(r))
            .map(|r| ms(r.latency))
            .collect()
    };
    let steady = latencies(&|r| r.start < first_switch);
    let switching = latencies(&|r| in_window(r));
    if steady.is_empty() || switching.is_empty() {
        return Err("no successful requests to measure".into());
    }
    let failed: Vec<&RequestRecord> = records.iter().filter(|r| r.failed()).collect();
    let connection_errors = failed.iter().filter(|r| r.status.is_none()).count();
    let failed_in_windows = failed.iter().filter(|r| in_window(r)).count();
    let mut to_new_build = Vec::new();
    let mut action_ms = Vec::new();
    let mut stale_after_window = 0;
    for (i, w) in windows.iter().enumerate() {
        action_ms.push(ms(w.end - w.start));
        if let Some(first) = records
            .iter()
            .filter(|r| {
                r.start >= w.start && r.status == Some(200) && r.revision == Some(w.revision)
            })
            .map(RequestRecord::end)
            .min()
        {
            to_new_build.push(ms(first - w.start));
        }
        // Requests started after the window (before the next switch) that
        // the old build still answered.
        let next = windows.get(i + 1).map_or(Duration::MAX, |n| n.start);
        stale_after_window += records
            .iter()
            .filter(|r| {
                r.start > w.end + WINDOW_TAIL
                    && r.start < next
                    && r.status == Some(200)
                    && r.revision != Some(w.revision)
            })
            .count();
    }
    let steady_s = Summary::of(&steady)
        .expect("checked non-empty")
        .without_samples();
    let switch_s = Summary::of(&switching)
        .expect("checked non-empty")
        .without_samples();
    let steady_p99 = percentile(&steady, 99.0);
    let switch_p99 = percentile(&switching, 99.0);
    let p99_ratio = switch_p99 / steady_p99;
    let to_new = Summary::of(&to_new_build);
    let action = Summary::of(&action_ms).expect("at least one switch");
    let duration = records.last().map_or(0.0, |r| r.end().as_secs_f64());

    let mut rows = vec![
        Row::target(
            format!(
                "failed requests over {} requests, {} switches",
                records.len(),
                windows.len()
            ),
            format!("{} ({connection_errors} connection errors)", failed.len()),
            "0",
            failed.is_empty(),
        ),
        Row::info(
            "latency p50 / p99, steady state".into(),
            format!("{:.2} / {:.2} ms", steady_s.median, steady_p99),
        ),
        Row::info(
            "latency p50 / p99, during switches".into(),
            format!("{:.2} / {:.2} ms", switch_s.median, switch_p99),
        ),
        Row::target(
            "p99 during switches / steady p99".into(),
            format!("{p99_ratio:.2}×"),
            "≤ 3×",
            p99_ratio <= 3.0,
        ),
        Row::info(
            "action start → first response from the new build (median; max)".into(),
            match &to_new {
                Some(s) => format!("{:.0} ms ({:.0})", s.median, s.max),
                None => "never".into(),
            },
        ),
        Row::info(
            "set-current-symlink through charm-sim, whole command (median; max)".into(),
            format!("{:.0} ms ({:.0})", action.median, action.max),
        ),
    ];
    if to_new_build.len() < windows.len() {
        rows.push(Row::target(
            "switches whose new build answered".into(),
            format!("{} of {}", to_new_build.len(), windows.len()),
            "all",
            false,
        ));
    }
    Ok(BenchmarkResult {
        name: substrate.name,
        title: substrate.title.into(),
        results: json!({
            "machines": substrate.machines,
            "round_trips": round_trips,
            "switches": windows.len(),
            "load": {
                "threads": THREADS,
                "requests_per_second_target": THREADS as f64 * RATE_PER_THREAD,
                "requests": records.len(),
                "seconds": duration,
                "keep_alive": false,
            },
            "failed_requests": failed.len(),
            "connection_errors": connection_errors,
            "failed_in_switch_windows": failed_in_windows,
            "old_build_answers_after_window": stale_after_window,
            "steady_latency_ms": steady_s,
            "steady_p99_ms": steady_p99,
            "switch_latency_ms": switch_s,
            "switch_p99_ms": switch_p99,
            "p99_ratio_switch_over_steady": p99_ratio,
            "action_start_to_new_build_ms": to_new,
            "action_ms": action,
            "window_tail_ms": ms(WINDOW_TAIL),
        }),
        rows,
        notes: vec![
            format!("{THREADS} client threads at {RATE_PER_THREAD} requests/s each, a new TCP connection per request (no keep-alive), 5 s timeout; a failure is a connection error, a timeout or any status but 200."),
            format!("A switch window runs from the moment `charm-sim run {UNIT} set-current-symlink` starts until {} ms after it returns; steady state is the {} s of load before the first switch. Actions are {} ms apart.", ms(WINDOW_TAIL), STEADY.as_secs(), PAUSE.as_millis()),
            match substrate.machines {
                "container" => "The unit is a systemd-nspawn machine booted with systemd (`charm-sim deploy --machines container`): the charm pre-flights the new build, then starts it in the idle slot (`wsgi-app@a.service` / `@b`) beside the serving one, both on `wsgi-app.socket`'s listener, and stops the old slot once a worker of the new one has imported the app; the client runs on the host, over loopback.".to_string(),
                _ => "The unit is a directory with the charm's direct supervisor, which starts the new master on the held socket before the old one retires.".to_string(),
            },
        ],
    })
}
