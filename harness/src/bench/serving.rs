//! Benchmark 4: serving overhead. Requests per second through the
//! charm-managed gunicorn (held socket, supervisor, generated config)
//! against the same gunicorn started by hand: the same interpreter and
//! build, the same app, workers and logging, bound to the same address on
//! the next port. The same closed-loop load generator alternates between
//! them (A B B A ...), so drift on the machine hits both alike.

use std::net::SocketAddr;
use std::path::Path;
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
pub(super) const CLIENT_THREADS: usize = 4;

/// gunicorn started by hand; stopped (SIGTERM, then reaped) when dropped.
pub(super) struct HandGunicorn(Child);

impl HandGunicorn {
    /// `build`'s gunicorn serving `app` on `bind`, as the charm would start
    /// it (see `service::gunicorn_args`) but with a TCP bind instead of the
    /// held socket, no config file (no readiness hook, no statsd) and its
    /// logs in `logs`; `options` go where the charm puts its worker options.
    ///
    /// It gets a session of its own, as the charm's gunicorn does under the
    /// supervisor (which calls `setsid`): with the kernel's autogroup the
    /// scheduler shares the CPU between sessions, so on a busy machine a
    /// server in the load generator's session is woken sooner than one in
    /// another session, and the sides would not wait for the CPU alike.
    pub(super) fn start(
        build: &Path,
        bind: SocketAddr,
        options: &[String],
        logs: &Path,
        app: &str,
    ) -> Result<HandGunicorn, String> {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(build.join("venv/bin/python"));
        // SAFETY: only setsid (async-signal-safe) between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .args(["-m", "gunicorn", "--bind", &bind.to_string(), "--chdir"])
            .arg(build.join("code"))
            .args(options)
            .arg("--access-logfile")
            .arg(logs.join("access.log"))
            .arg("--error-logfile")
            .arg(logs.join("error.log"))
            .arg("--control-socket")
            .arg(logs.join("gunicorn.ctl"))
            .arg(app)
            .env_clear()
            .env("PATH", super::env::UNIT_SYSTEM_PATH)
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start gunicorn by hand: {e}"))?;
        let hand = HandGunicorn(child);
        wait_until_serving(&bind, Duration::from_secs(30))?;
        Ok(hand)
    }
}

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

/// Requests/s of two sides measured in turn, A B B A ...
pub(super) struct Alternation {
    pub a: Vec<f64>,
    pub b: Vec<f64>,
    pub failures: usize,
}

/// `rounds` rounds of one run per side, the order flipped every round so
/// drift on the machine hits both alike. `side(true)` readies side A and
/// returns where it serves, `side(false)` side B; each run starts after a
/// short warm-up, so both begin from the same state.
pub(super) fn alternate(
    rounds: usize,
    seconds: Duration,
    mut side: impl FnMut(bool) -> Result<SocketAddr, String>,
) -> Result<Alternation, String> {
    let mut found = Alternation {
        a: Vec::new(),
        b: Vec::new(),
        failures: 0,
    };
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for is_a in order {
            let target = side(is_a)?;
            measure(target, Duration::from_millis(300))?;
            let (rps, failed) = measure(target, seconds)?;
            found.failures += failed;
            if is_a {
                found.a.push(rps)
            } else {
                found.b.push(rps)
            }
        }
    }
    Ok(found)
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
    let hand = HandGunicorn::start(
        &build,
        hand_addr,
        &[
            "--workers".into(),
            WORKERS.to_string(),
            "--graceful-timeout".into(),
            "30".into(),
        ],
        &work,
        "example_wsgi:application",
    )?;
    eprintln!(
        "bench serving: {rounds} rounds of {} s each side",
        seconds.as_secs()
    );
    let found = alternate(rounds, seconds, |charm_side| {
        Ok(if charm_side { charm_addr } else { hand_addr })
    })?;
    let failures = found.failures;
    drop(hand);
    drop(model);
    let charm_s = Summary::of(&found.a).expect("rounds > 0");
    let hand_s = Summary::of(&found.b).expect("rounds > 0");
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
            "{CLIENT_THREADS} closed-loop client threads, a new connection per request, {} s per run, {rounds} runs per side alternating A B B A; {WORKERS} sync workers on both sides, both with access and error logs, each in a session of its own (the kernel's autogroup shares the CPU by session); failed requests in all runs: {failures}. The load generator shares the 2 cores with gunicorn.",
            seconds.as_secs()
        )],
    })
}
