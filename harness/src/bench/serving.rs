//! Benchmark 4: serving overhead. Requests per second through the
//! charm-managed gunicorn (held socket, supervisor, generated config)
//! against the same gunicorn started by hand: the same interpreter and
//! build, the same app, workers and logging, bound to the same address on
//! the next port. The same closed-loop load generator alternates between
//! them (A B B A ...), so drift on the machine hits both alike.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use super::env::BenchEnv;
use super::http::{wait_until_serving, LoadPlan};
use super::model::SimModel;
use super::stats::Summary;
use super::{BenchmarkResult, Row};

const PORT: u16 = 18504;
const HAND_PORT: u16 = 18514;
const WORKERS: u32 = 2;
const CLIENT_THREADS: usize = 4;

/// gunicorn started by hand; stopped (SIGTERM, then reaped) when dropped.
struct HandGunicorn(Child);

impl Drop for HandGunicorn {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = self.0.wait();
    }
}

/// Closed-loop load on `target` for `seconds`; (successful requests/s, failures).
fn measure(target: SocketAddr, seconds: Duration) -> Result<(f64, usize), String> {
    let records = LoadPlan {
        target,
        threads: CLIENT_THREADS,
        rate_per_thread: None,
        max_duration: seconds,
        request_timeout: Duration::from_secs(5),
    }
    .run()?;
    let ok = records.iter().filter(|r| !r.failed()).count();
    Ok((ok as f64 / seconds.as_secs_f64(), records.len() - ok))
}

pub fn run(env: &BenchEnv) -> Result<BenchmarkResult, String> {
    let rounds = if env.quick { 2 } else { 6 };
    let seconds = Duration::from_secs(if env.quick { 2 } else { 4 });
    let work = env.dir.join("serving");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let model = SimModel::deploy(
        env,
        "serving",
        PORT,
        &[
            ("build_label", "r1".into()),
            ("workers", WORKERS.to_string()),
        ],
    )?;
    let charm_addr = model.unit_addr()?;
    wait_until_serving(&charm_addr, Duration::from_secs(30))?;
    let build = model.unit_paths()?.root.join("srv/wsgi-app/builds/r1");
    let hand_addr = SocketAddr::new(charm_addr.ip(), HAND_PORT);
    // The charm's own command line (see `service::gunicorn_args`) with a
    // TCP bind instead of the held socket and no readiness hook.
    let hand = HandGunicorn(
        Command::new(build.join("venv/bin/python"))
            .args([
                "-m",
                "gunicorn",
                "--bind",
                &hand_addr.to_string(),
                "--chdir",
            ])
            .arg(build.join("code"))
            .args([
                "--workers",
                &WORKERS.to_string(),
                "--graceful-timeout",
                "30",
            ])
            .arg("--access-logfile")
            .arg(work.join("access.log"))
            .arg("--error-logfile")
            .arg(work.join("error.log"))
            .arg("--control-socket")
            .arg(work.join("gunicorn.ctl"))
            .arg("example_wsgi:application")
            .env_clear()
            .env("PATH", super::env::UNIT_SYSTEM_PATH)
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start gunicorn by hand: {e}"))?,
    );
    wait_until_serving(&hand_addr, Duration::from_secs(30))?;

    let mut charm_rps = Vec::new();
    let mut hand_rps = Vec::new();
    let mut failures = 0;
    eprintln!(
        "bench serving: {rounds} rounds of {} s each side",
        seconds.as_secs()
    );
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for charm_side in order {
            let target = if charm_side { charm_addr } else { hand_addr };
            // A short warm-up so each side starts from the same state.
            measure(target, Duration::from_millis(300))?;
            let (rps, failed) = measure(target, seconds)?;
            failures += failed;
            if charm_side {
                charm_rps.push(rps)
            } else {
                hand_rps.push(rps)
            }
        }
    }
    drop(hand);
    drop(model);
    let charm_s = Summary::of(&charm_rps).expect("rounds > 0");
    let hand_s = Summary::of(&hand_rps).expect("rounds > 0");
    let ratio = charm_s.median / hand_s.median;
    Ok(BenchmarkResult {
        name: "serving",
        title: "Serving overhead".into(),
        results: json!({
            "rounds": rounds,
            "seconds_per_run": seconds.as_secs(),
            "client_threads": CLIENT_THREADS,
            "workers": WORKERS,
            "charm_requests_per_second": charm_s,
            "by_hand_requests_per_second": hand_s,
            "ratio_charm_over_by_hand": ratio,
            "failed_requests": failures,
        }),
        rows: vec![
            Row::info(
                "requests/s, charm-managed gunicorn (median; min–max)".into(),
                format!("{:.0} ({:.0}–{:.0})", charm_s.median, charm_s.min, charm_s.max),
            ),
            Row::info(
                "requests/s, gunicorn by hand (median; min–max)".into(),
                format!("{:.0} ({:.0}–{:.0})", hand_s.median, hand_s.min, hand_s.max),
            ),
            Row::target(
                "charm / by hand".into(),
                format!("{ratio:.3}"),
                "≥ 0.95",
                ratio >= 0.95,
            ),
        ],
        notes: vec![format!(
            "{CLIENT_THREADS} closed-loop client threads, a new connection per request, {} s per run, {rounds} runs per side alternating A B B A; {WORKERS} sync workers on both sides, both with access and error logs; failed requests in all runs: {failures}. The load generator shares the 2 cores with gunicorn.",
            seconds.as_secs()
        )],
    })
}
