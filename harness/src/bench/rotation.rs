//! Benchmark 7: a database password rotation against a real PostgreSQL.
//! A throwaway server (`harness::pg_server`) on 127.0.0.1, charm-sim's
//! emulated `postgresql_client` provider backed by it, and a unit serving
//! tests/fixtures/wsgi/pg, which answers each request with a query made
//! through DATABASE_URL and a digest of the password it logged in with.
//! Under a paced load, `charm-sim rotate-password` changes the role's
//! password in the server (`ALTER ROLE`), publishes a new secret revision
//! and runs the unit's `secret-changed`; we time from the command's start
//! to the first response made with the new password (a probe polling
//! beside the load reads the digest), and count failed requests.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::{Digest, Sha256};

use super::env::BenchEnv;
use super::http::{get, wait_until_serving, LoadPlan};
use super::model::{charm_with_fixture, SimModel, APP};
use super::stats::Summary;
use super::{BenchmarkResult, Row};
use harness::pg_server::PgServer;

const PORT: u16 = 18507;
const PG_PORT: u16 = 18508;
const THREADS: usize = 2;
const RATE_PER_THREAD: f64 = 100.0;
const STEADY: Duration = Duration::from_secs(2);
/// Pause between rotations, so each window is its own.
const PAUSE: Duration = Duration::from_millis(1500);
/// How often the probe asks which password serves.
const PROBE_EVERY: Duration = Duration::from_millis(10);
const ADMIN_PASSWORD: &str = "bench-admin-of-a-throwaway-server";

/// The digest the app shows of the password in the unit's DATABASE_URL.
fn served_digest_wanted(unit_root: &Path) -> Result<String, String> {
    let env_file = unit_root.join("etc").join(APP).join("environment");
    let vars = wsgi_app::workload::envvars::read_env_file(&env_file).map_err(|e| e.to_string())?;
    let url = vars
        .into_iter()
        .find(|(k, _)| k == "DATABASE_URL")
        .map(|(_, v)| v)
        .ok_or("no DATABASE_URL in the unit's environment file")?;
    let credentials = url
        .split_once("://")
        .and_then(|(_, rest)| rest.rsplit_once('@'))
        .map(|(userinfo, _)| userinfo)
        .ok_or("DATABASE_URL has no credentials")?;
    let password = credentials
        .split_once(':')
        .and_then(|(_, p)| wsgi_app::charm::relations::percent::decode_component(p))
        .ok_or("DATABASE_URL has no password")?;
    let hex: String = Sha256::digest(password.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(hex[..12].to_string())
}

/// One probe answer: when it ended (from the load's start), and the
/// password digest it showed.
type Seen = (Duration, Option<String>);

/// A GET every [`PROBE_EVERY`], beside the load.
struct Probe {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<Seen>>>,
}

impl Probe {
    fn start(addr: SocketAddr, started: Instant) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                let digest = get(&addr, Duration::from_secs(5)).ok().and_then(|r| {
                    let body = String::from_utf8_lossy(&r.body).into_owned();
                    body.split_once("password-sha256=")
                        .map(|(_, d)| d.trim().to_string())
                });
                seen.push((started.elapsed(), digest));
                std::thread::sleep(PROBE_EVERY);
            }
            seen
        });
        Probe {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<Seen> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn run(env: &BenchEnv) -> Result<BenchmarkResult, String> {
    let rotations = if env.quick { 2 } else { 5 };
    let pg = PgServer::start("127.0.0.1", PG_PORT)?;
    pg.admin_sql(
        "postgres",
        &format!("ALTER ROLE postgres PASSWORD '{ADMIN_PASSWORD}'"),
    )?;
    let charm = charm_with_fixture(
        env,
        "charm-with-pg-app",
        "pg",
        "pgapp",
        &["pg_app.py", "requirements.txt"],
    )?;
    let model = SimModel::deploy_on(
        env,
        "rotation",
        PORT,
        Some(&charm),
        &[
            ("build_label", "pgapp".into()),
            ("archive_filename", "app.tar.gz".into()),
            ("requirements_path", "requirements.txt".into()),
            ("wsgi_application", "pg_app:application".into()),
            ("nagios_index_content", "It works!".into()),
            ("workers", "2".into()),
        ],
        "directory",
    )?;
    let admin = format!(
        "postgresql://postgres:{ADMIN_PASSWORD}@{}:{}/postgres",
        pg.address, pg.port
    );
    model.cli(&[
        "add-remote",
        "postgresql",
        "--interface",
        "postgresql_client",
        "--provider",
        "--postgres",
        &admin,
    ])?;
    model.cli(&["relate", &format!("{APP}:postgresql"), "postgresql"])?;
    let addr = model.unit_addr()?;
    wait_until_serving(&addr, Duration::from_secs(60))?;
    let unit_root = model.unit_paths()?.root;

    let plan = LoadPlan {
        target: addr,
        threads: THREADS,
        rate_per_thread: Some(RATE_PER_THREAD),
        max_duration: STEADY + Duration::from_secs(30 * rotations as u64),
        request_timeout: Duration::from_secs(5),
    };
    eprintln!(
        "bench rotation: {rotations} password rotations under {} requests/s",
        THREADS as f64 * RATE_PER_THREAD
    );
    let load = plan.start()?;
    let probe = Probe::start(addr, load.started);
    std::thread::sleep(STEADY);
    let mut windows = Vec::new();
    for _ in 0..rotations {
        let start = load.now();
        model.cli(&["rotate-password", "postgresql"])?;
        let end = load.now();
        windows.push((start, end, served_digest_wanted(&unit_root)?));
        std::thread::sleep(PAUSE);
    }
    let seen = probe.finish();
    let records = load.finish();
    drop(model);
    drop(pg);

    let mut to_new = Vec::new();
    let mut command_ms = Vec::new();
    for (start, end, digest) in &windows {
        command_ms.push(ms(*end - *start));
        if let Some((at, _)) = seen
            .iter()
            .find(|(at, d)| at >= start && d.as_deref() == Some(digest.as_str()))
        {
            to_new.push(ms(*at - *start));
        }
    }
    let failed = records.iter().filter(|r| r.failed()).count();
    let connection_errors = records.iter().filter(|r| r.status.is_none()).count();
    let to_new_summary = Summary::of(&to_new).map(|s| s.without_samples());
    let command = Summary::of(&command_ms).map(|s| s.without_samples());
    let rows = vec![
        Row::target(
            format!(
                "failed requests over {} requests, {} rotations",
                records.len(),
                windows.len()
            ),
            format!("{failed} ({connection_errors} connection errors)"),
            "0",
            failed == 0,
        ),
        Row::info(
            "rotate-password (ALTER ROLE, new secret revision, secret-changed) → first response with the new password (median; max)".into(),
            match &to_new_summary {
                Some(s) if to_new.len() == windows.len() => {
                    format!("{:.0} ms ({:.0})", s.median, s.max)
                }
                Some(s) => format!(
                    "{:.0} ms ({:.0}); {} of {} rotations never seen",
                    s.median,
                    s.max,
                    windows.len() - to_new.len(),
                    windows.len()
                ),
                None => "never".into(),
            },
        ),
        Row::info(
            "rotate-password, whole command (median; max)".into(),
            match &command {
                Some(s) => format!("{:.0} ms ({:.0})", s.median, s.max),
                None => "-".into(),
            },
        ),
    ];
    Ok(BenchmarkResult {
        name: "rotation",
        title: "Database password rotation, real PostgreSQL".into(),
        results: json!({
            "rotations": windows.len(),
            "requests": records.len(),
            "failed_requests": failed,
            "connection_errors": connection_errors,
            "to_new_password_ms": Summary::of(&to_new),
            "command_ms": Summary::of(&command_ms),
            "rate_per_s": THREADS as f64 * RATE_PER_THREAD,
        }),
        rows,
        notes: vec![
            "A throwaway PostgreSQL on 127.0.0.1; the app (tests/fixtures/wsgi/pg) logs each gunicorn worker in once at import and answers `SELECT current_user` with a digest of its password. The time runs from `charm-sim rotate-password` starting to the first probe answer (a GET every 10 ms beside the load) showing the new password's digest; the command changes the password in the server, publishes the secret revision and runs the unit's secret-changed, which moves gunicorn to a new master. Sessions the old master's workers opened stay valid, so they keep answering until it retires.".into(),
        ],
    })
}
