//! Hardening end to end: the real charm binary run by charm-sim, with real
//! gunicorn.
//!
//! - Crash safety: the hook SIGKILLs itself at every kill point of a build
//!   install and a switch (`WSGI_APP_CRASH_AT`); a retry converges to what
//!   an uninterrupted run gives, the store is consistent, and the app
//!   answers every request throughout. A hook run twice changes nothing.
//! - Secrets: a distinctive PostgreSQL password appears nowhere but the env
//!   file (0640 root:<app group>) and the store (0600).
//! - Least privilege: the app runs as `nobody`, who cannot write its code,
//!   the env file, the store or the `current` symlink's directory.
//! - Injection: `$()` and backticks in config reach the env file and the
//!   NRPE command (run through `sh -c` as NRPE runs it) as plain text.
//!
//! Why one file over 600 lines: each scenario needs a deployed model with
//! real gunicorn; they share its setup and its checks.

mod e2e_support;
mod hardening_support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e_support::archives::archive_bytes;
use e2e_support::{get, Sim};
use hardening_support::*;
use wsgi_app::workload::machine::CRASH_POINTS;

/// A build archive (tar.bz2) answering "It works! Revision <n>", with a
/// Makefile for `update_make_target=noop`.
fn build_archive(revision: usize) -> Vec<u8> {
    let app = format!(
        "REVISION = {revision}\n\n\ndef application(environ, start_response):\n    body = f\"It works! Revision {{REVISION}}\".encode()\n    start_response(\"200 OK\", [(\"Content-Type\", \"text/plain\"), (\"Content-Length\", str(len(body)))])\n    return [body]\n"
    );
    archive_bytes(
        "example-wsgi-app.tar.bzip2",
        &[
            ("example_wsgi.py", app.as_bytes()),
            ("Makefile", b"noop:\n\ttrue\n"),
        ],
    )
}

/// Polls the app every few milliseconds until stopped, counting answers
/// that are not "200 It works!".
struct Poller {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Poller {
    fn start(addr: String) -> Poller {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let (s, o, f) = (stop.clone(), ok.clone(), failures.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match get(&addr) {
                    Ok(body) if body.starts_with("It works! Revision ") => {
                        o.fetch_add(1, Ordering::Relaxed);
                    }
                    other => f.lock().unwrap().push(format!("{other:?}")),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Poller {
            stop,
            ok,
            failures,
            thread: Some(thread),
        }
    }

    /// Stop; every answer during `what` must have been good, and more than
    /// `at_least` of them. The number of good answers.
    fn finish_without_failures(mut self, what: &str, at_least: usize) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        let ok = self.ok.load(Ordering::Relaxed);
        let failures = self.failures.lock().unwrap().clone();
        assert!(
            failures.is_empty(),
            "requests failed during {what}: {failures:?}"
        );
        assert!(ok > at_least, "the poller barely ran ({ok} answers)");
        ok
    }
}

/// The test charm with builds k1..k<count> in files/; its path.
fn charm_with_builds(sim: &Sim, count: usize) -> String {
    let charm = sim.charm_dir();
    for n in 1..=count {
        let dir = Path::new(&charm).join(format!("files/k{n}"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("example-wsgi-app.tar.bzip2"), build_archive(n)).unwrap();
    }
    charm
}

fn unit_dir(sim: &Sim) -> PathBuf {
    sim.model_dir().join("units/wsgi-app-0")
}

fn store_path(sim: &Sim) -> PathBuf {
    unit_dir(sim).join("charm/.unit-state.db")
}

/// The store's tables as text, with times and timings left out; also
/// checks its integrity.
fn store_dump(sim: &Sim) -> String {
    let conn = rusqlite::Connection::open_with_flags(
        store_path(sim),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let mut dump = String::new();
    let mut tables = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap();
    let names: Vec<String> = tables
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for table in names {
        let mut rows = conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY 1"))
            .unwrap();
        let columns: Vec<String> = rows.column_names().iter().map(|c| c.to_string()).collect();
        let mut q = rows.query([]).unwrap();
        while let Some(row) = q.next().unwrap() {
            let mut line = format!("{table}:");
            for (i, column) in columns.iter().enumerate() {
                if ["installed_at", "switched_at", "health", "sequence"].contains(&column.as_str())
                {
                    continue;
                }
                let value: rusqlite::types::Value = row.get(i).unwrap();
                line.push_str(&format!(" {column}={value:?}"));
            }
            dump.push_str(&line);
            dump.push('\n');
        }
    }
    dump
}

fn store_labels(sim: &Sim) -> Vec<String> {
    let conn = rusqlite::Connection::open_with_flags(
        store_path(sim),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut q = conn
        .prepare("SELECT label FROM builds ORDER BY sequence")
        .unwrap();
    let labels = q
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    labels
}

fn complete_builds_on_disk(root: &Path) -> Vec<String> {
    let mut labels: Vec<String> = fs::read_dir(root.join("srv/wsgi-app/builds"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().join("build.json").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    labels.sort_by_key(|l| l[1..].parse::<u32>().unwrap_or(0));
    labels
}

fn hooks_killed(sim: &Sim) -> usize {
    fs::read_to_string(unit_dir(sim).join("hooks.log"))
        .unwrap_or_default()
        .matches("killed by a signal")
        .count()
}

/// The unit converged on build k<n> exactly as an uninterrupted run leaves it.
fn assert_converged(sim: &Sim, n: usize, context: &str) {
    let root = sim.unit_root("wsgi-app/0");
    assert_serving(sim, n, &format!("serving k{n} on :8080"), context);
    assert_eq!(
        fs::read_link(root.join("srv/wsgi-app/latest")).unwrap(),
        Path::new(&format!("builds/k{n}")),
        "{context}"
    );
    let expected: Vec<String> = (1..=n).map(|i| format!("k{i}")).collect();
    assert_eq!(
        complete_builds_on_disk(&root),
        expected,
        "{context}: builds on disk"
    );
    let all_dirs = fs::read_dir(root.join("srv/wsgi-app/builds"))
        .unwrap()
        .count();
    assert_eq!(
        all_dirs, n,
        "{context}: an incomplete build directory is left"
    );
    assert_eq!(
        store_labels(sim),
        expected,
        "{context}: builds in the store"
    );
    let staging = fs::read_dir(root.join("srv/wsgi-app/.staging"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(staging, 0, "{context}: staging left");
    let dump = store_dump(sim);
    if n > 1 {
        assert!(
            dump.contains(&format!("previous=Text(\"k{}\")", n - 1)),
            "{context}: {dump}"
        );
    }
    assert!(!dump.contains("failed_build"), "{context}: {dump}");
}

#[test]
fn a_hook_killed_at_any_point_converges_on_retry_and_the_app_serves_throughout() {
    let sim = Sim::new("127.0.51");
    let charm = charm_with_builds(&sim, CRASH_POINTS.len() + 2);
    sim.ok(&[
        "deploy",
        &charm,
        "--config",
        "build_label=k1",
        "--config",
        "update_make_target=noop",
        "--config",
        "workers=1",
        "--config",
        "keep_builds=100",
    ]);
    assert_converged(&sim, 1, "deploy");
    let poller = Poller::start(sim.unit_url(0));

    // The reference: an uninterrupted install and switch.
    sim.ok(&["config", "wsgi-app", "build_label=k2"]);
    assert_converged(&sim, 2, "uninterrupted");

    let mut n = 2;
    for point in CRASH_POINTS {
        n += 1;
        let context = format!("killed at {point} installing k{n}");
        let killed = hooks_killed(&sim);
        let _ = sim.run_with_env(
            &[("WSGI_APP_CRASH_AT", point)],
            &["config", "wsgi-app", &format!("build_label=k{n}")],
        );
        assert_eq!(
            hooks_killed(&sim),
            killed + 1,
            "{context}: the hook was not killed"
        );
        // Whatever the kill left: the store is intact and records no build
        // that is not complete on disk; something serves.
        let root = sim.unit_root("wsgi-app/0");
        store_dump(&sim);
        let on_disk = complete_builds_on_disk(&root);
        for label in store_labels(&sim) {
            assert!(
                on_disk.contains(&label),
                "{context}: store records {label}, not complete on disk"
            );
        }
        let body = get(&sim.unit_url(0)).unwrap_or_else(|e| panic!("{context}: {e}"));
        assert!(
            body == format!("It works! Revision {}", n - 1)
                || body == format!("It works! Revision {n}"),
            "{context}: {body}"
        );
        sim.ok(&["resolve", "wsgi-app/0"]);
        assert_converged(&sim, n, &context);
    }

    // The same hook again changes nothing: the machine and the store.
    let root = sim.unit_root("wsgi-app/0");
    let volatile = ["var/log", "run/wsgi-app"];
    let before = (snapshot(&root), store_dump(&sim));
    sim.ok(&["config", "wsgi-app", &format!("build_label=k{n}")]);
    let after = (snapshot(&root), store_dump(&sim));
    assert_eq!(
        changes_outside(&before.0, &after.0, &volatile),
        Vec::<String>::new()
    );
    assert_eq!(before.1, after.1);
    sim.ok(&["update-status"]);
    assert_eq!(
        changes_outside(&before.0, &snapshot(&root), &volatile),
        Vec::<String>::new()
    );
    assert_converged(&sim, n, "after reruns");

    let ok = poller.finish_without_failures("kills and retries", 50);
    record(
        "crash safety: SIGKILL at each kill point (real binary)",
        CRASH_POINTS.len(),
        &format!("every retry converged to the uninterrupted result (builds, symlinks, store rows, revision served); store integrity ok, no half build recorded; {ok} requests during the kills, none failed; a rerun changed nothing"),
    );
    sim.destroy_and_check_nothing_left(&[&sim.unit_url(0)]);
}

/// The kill points an action's switch passes, in order.
const SWITCH_POINTS: &[&str] = &[
    "after-env-file",
    "after-symlink-swap",
    "after-ensure",
    "after-health-check",
    "after-rollout-save",
];

/// The unit serves k<n>: the status, the answer, `current` and the store agree.
fn assert_serving(sim: &Sim, n: usize, status_message: &str, context: &str) {
    let status = sim.status_json();
    assert_eq!(
        sim.workload_message(&status, "wsgi-app/0"),
        status_message,
        "{context}"
    );
    assert_eq!(
        get(&sim.unit_url(0)).unwrap(),
        format!("It works! Revision {n}"),
        "{context}"
    );
    assert_eq!(
        fs::read_link(sim.unit_root("wsgi-app/0").join("srv/wsgi-app/current")).unwrap(),
        Path::new(&format!("builds/k{n}")),
        "{context}"
    );
    let dump = store_dump(sim);
    assert!(
        dump.contains(&format!("serving=Text(\"k{n}\")")),
        "{context}: {dump}"
    );
}

#[test]
fn an_action_killed_mid_switch_fails_and_the_next_hook_puts_the_unit_back_in_order() {
    // Juju never retries an action: the killed switch must leave a unit the
    // next hook (here update-status) makes whole, and the operator's rerun
    // of the action must then work.
    let sim = Sim::new("127.0.53");
    let charm = charm_with_builds(&sim, 2);
    sim.ok(&[
        "deploy",
        &charm,
        "--config",
        "build_label=k1",
        "--config",
        "workers=1",
    ]);
    sim.ok(&["config", "wsgi-app", "current_symlink=k1", "build_label=k2"]);
    assert_serving(&sim, 1, "serving k1 on :8080", "before");
    let poller = Poller::start(sim.unit_url(0));
    let pinned = "serving k2 on :8080 (pinned; application wants k1)";

    for point in SWITCH_POINTS {
        let context = format!("action killed at {point}");
        let killed = hooks_killed(&sim);
        let (ok, output) = sim.run_with_env(
            &[("WSGI_APP_CRASH_AT", point)],
            &["run", "wsgi-app/0", "set-current-symlink", "symlink=k2"],
        );
        assert!(!ok, "{context}: the action did not fail:\n{output}");
        assert_eq!(
            hooks_killed(&sim),
            killed + 1,
            "{context}: the action was not killed"
        );
        // Killed inside the dispatch's transaction: the pin was never
        // recorded, so the unit belongs on k1 again.
        sim.ok(&["update-status"]);
        assert_serving(&sim, 1, "serving k1 on :8080", &context);

        sim.ok(&["run", "wsgi-app/0", "set-current-symlink", "symlink=k2"]);
        assert_serving(&sim, 2, pinned, &format!("{context}, then rerun"));
        sim.ok(&["run", "wsgi-app/0", "rollback"]);
        assert_serving(
            &sim,
            1,
            "serving k1 on :8080",
            &format!("{context}, then rollback"),
        );
    }

    let ok = poller.finish_without_failures("killed actions", 20);
    record(
        "crash safety: SIGKILL in an action's switch (real binary)",
        SWITCH_POINTS.len(),
        &format!("each killed action failed; the next update-status put status, served build, `current` and store back in agreement; the rerun action pinned the unit; {ok} requests, none failed"),
    );
    sim.destroy_and_check_nothing_left(&[&sim.unit_url(0)]);
}

// --- secrets, privilege, injection -----------------------------------------------

const PASSWORD: &str = "S3cr3t-p@ss:w/rd%";

fn nobody() -> (u32, u32) {
    let account = wsgi_app::workload::users::lookup("nobody").unwrap();
    (account.uid, account.gid)
}

fn runuser_test(flag: &str, path: &Path) -> bool {
    std::process::Command::new("runuser")
        .args(["-u", "nobody", "--", "test", flag])
        .arg(path)
        .status()
        .unwrap()
        .success()
}

/// Processes started by this model: (pid, cmdline, uid).
fn model_processes(model: &Path) -> Vec<(String, String, u32)> {
    let model = model.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let cmdline =
            String::from_utf8_lossy(&fs::read(entry.path().join("cmdline")).unwrap_or_default())
                .replace('\0', " ");
        if !cmdline.contains(&model) {
            continue;
        }
        let uid = fs::metadata(entry.path())
            .map(|m| m.uid())
            .unwrap_or(u32::MAX);
        found.push((pid, cmdline, uid));
    }
    found
}

#[test]
fn secrets_stay_in_the_env_file_the_app_runs_unprivileged_and_nothing_is_executed() {
    let sim = Sim::new("127.0.52");
    let marker = Marker::new("e2e");
    let m = marker.shell_word();
    sim.ok(&[
        "deploy",
        &sim.charm_dir(),
        "--config",
        "build_label=r1",
        "--config",
        "workers=1",
    ]);
    sim.add_remote(
        "postgresql",
        "pgsql",
        1,
        &[
            ("host", "10.9.9.9"),
            ("port", "5432"),
            ("user", "wsgi"),
            ("password", PASSWORD),
            ("database", "wsgi-app"),
            ("state", "standalone"),
            ("allowed-units", "wsgi-app/0"),
        ],
    );
    sim.ok(&["relate", "wsgi-app:pgsql", "postgresql"]);
    // Injection attempts through config, run by the real binary.
    sim.ok(&[
        "config",
        "wsgi-app",
        &format!("environment_variables=GREETING='$(touch {m}) `touch {m}`'"),
    ]);
    sim.add_remote(
        "nrpe",
        "nrpe-external-master",
        1,
        &[("nagios_hostname", "juju-host-0")],
    );
    sim.ok(&["relate", "wsgi-app:nrpe-external-master", "nrpe"]);
    sim.ok(&[
        "config",
        "wsgi-app",
        &format!("nagios_index_content=$(touch {m}) `touch {m}`; touch {m}"),
    ]);
    // A status quoting a value over the argv limit once escaped (30,000
    // control characters shown as \u{1}): Blocked, not a failed hook.
    let huge = "\u{1}".repeat(30_000);
    sim.ok(&["config", "wsgi-app", &format!("nagios_context={huge}")]);
    let status = sim.status_json();
    assert_eq!(sim.workload_status(&status, "wsgi-app/0"), "blocked");
    assert!(sim
        .workload_message(&status, "wsgi-app/0")
        .contains("nagios_context"));
    // Each injection is counted where its outcome has been checked.
    let mut injection_cases = 1;
    sim.ok(&["config", "wsgi-app", "nagios_context="]);
    let out = sim.ok(&["run", "wsgi-app/0", "list-builds"]);
    assert!(out.contains("r1"), "{out}");
    sim.ok(&["run", "wsgi-app/0", "set-current-symlink", "symlink=r1"]);
    let _ = sim.run(&[
        "run",
        "wsgi-app/0",
        "set-current-symlink",
        "symlink=../../etc",
    ]);
    assert_eq!(get(&sim.unit_url(0)).unwrap(), "It works! Revision 1");
    injection_cases += 1;

    let root = sim.unit_root("wsgi-app/0");
    let (nobody_uid, nobody_gid) = nobody();

    // The env file: DATABASE_URL with the password, percent-encoded; the
    // GREETING literal; mode 0640 root:<nobody's group>.
    let env_path = root.join("etc/wsgi-app/environment");
    let env = wsgi_app::workload::envvars::read_env_file(&env_path).unwrap();
    let env: BTreeMap<String, String> = env.into_iter().collect();
    let encoded = wsgi_app::charm::relations::percent::encode_component(PASSWORD);
    assert_eq!(
        env["DATABASE_URL"],
        format!("postgresql://wsgi:{encoded}@10.9.9.9:5432/wsgi-app")
    );
    assert_eq!(env["GREETING"], format!("$(touch {m}) `touch {m}`"));
    injection_cases += 1;
    let meta = fs::metadata(&env_path).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o640, 0, nobody_gid)
    );
    let store = store_path(&sim);
    assert_eq!(fs::metadata(&store).unwrap().mode() & 0o7777, 0o600);

    // The NRPE command, run as NRPE runs it: $$ → $, then sh -c.
    let nrpe = fs::read_to_string(root.join("etc/nagios/nrpe.d/check_wsgi-app_http.cfg")).unwrap();
    let line = nrpe
        .lines()
        .find_map(|l| l.strip_prefix("command[check_wsgi-app_http]="))
        .unwrap()
        .replace("$$", "$");
    let plugin_present = Path::new("/usr/lib/nagios/plugins/check_http").exists();
    let run = std::process::Command::new("sh")
        .args(["-c", &line])
        .output()
        .unwrap();
    marker.assert_absent("the NRPE command with $() in nagios_index_content");
    injection_cases += 1;
    if plugin_present {
        // check_http looked for the literal text, and did not find it.
        let said = String::from_utf8_lossy(&run.stdout);
        assert!(!run.status.success() && said.contains("string"), "{said}");
        sim.ok(&[
            "config",
            "wsgi-app",
            "nagios_index_content=It works! Revision 1",
        ]);
        let nrpe =
            fs::read_to_string(root.join("etc/nagios/nrpe.d/check_wsgi-app_http.cfg")).unwrap();
        let line = nrpe
            .lines()
            .find_map(|l| l.strip_prefix("command[check_wsgi-app_http]="))
            .unwrap()
            .replace("$$", "$");
        let run = std::process::Command::new("sh")
            .args(["-c", &line])
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stdout)
        );
    }
    marker.assert_absent("hooks, gunicorn and the NRPE command");

    // Secrets: nowhere but the env file and the store.
    let forms = [PASSWORD.to_string(), encoded.clone(), "S3cr3t".to_string()];
    let leaks = |text: &str| forms.iter().any(|f| text.contains(f.as_str()));
    let model = sim.model_dir();
    let mut checked = 0;
    let mut stack = vec![model.clone()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            if !meta.is_file() {
                continue;
            }
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            // Ours, by design; and the sim's own database, which holds
            // PostgreSQL's relation data as Juju's controller does (what of it
            // our unit wrote or logged is checked below).
            if path == env_path
                || name.starts_with(".unit-state.db")
                || path.parent() == Some(&model) && name.starts_with("model.db")
            {
                continue;
            }
            checked += 1;
            let data = fs::read(&path).unwrap_or_default();
            assert!(
                !leaks(&String::from_utf8_lossy(&data)),
                "the password is in {}",
                path.display()
            );
            if meta.mode() & 0o004 != 0 && path.starts_with(&root) {
                // World-readable files on the unit: never the secret (checked
                // above), listed for the record.
            }
        }
    }
    assert!(checked > 20, "only {checked} files checked");
    let shown = sim.ok(&["show-unit", "wsgi-app/0"]);
    let start = shown.find('{').unwrap();
    let unit: serde_json::Value = serde_json::from_str(&shown[start..]).unwrap();
    let unit = &unit["wsgi-app/0"];
    for part in ["juju-log", "status-history", "workload-status"] {
        assert!(
            !leaks(&unit[part].to_string()),
            "the password is in show-unit's {part}"
        );
    }
    assert!(unit["juju-log"].as_array().is_some_and(|l| !l.is_empty()));
    for rel in unit["relation-info"].as_array().unwrap() {
        for part in ["local-unit", "local-application-data"] {
            assert!(
                !leaks(&rel[part].to_string()),
                "the password is in our {part} on {}",
                rel["endpoint"]
            );
        }
    }
    assert!(!leaks(&sim.ok(&["status", "--format", "json"])));
    assert!(!leaks(&sim.ok(&["status"])));
    let actions = sim.ok(&["run", "wsgi-app/0", "list-builds"]);
    assert!(!leaks(&actions), "{actions}");

    // Processes: no secret on a command line; the app runs as nobody.
    let procs = model_processes(&model);
    assert!(!procs.is_empty());
    let mut gunicorns = 0;
    for (pid, cmdline, uid) in &procs {
        assert!(!leaks(cmdline), "process {pid}: {cmdline}");
        if cmdline.contains("gunicorn") && !cmdline.contains("supervise") {
            gunicorns += 1;
            assert_eq!(
                *uid, nobody_uid,
                "gunicorn {pid} runs as uid {uid}: {cmdline}"
            );
        }
    }
    assert!(gunicorns >= 2, "a master and a worker: {procs:?}");

    // Least privilege: nobody can read its code and write its logs (so the
    // checks below are not vacuous), and can write nothing else of ours.
    let code = root.join("srv/wsgi-app/current/code");
    assert!(
        runuser_test("-r", &code.join("example_wsgi.py")),
        "nobody cannot read the code"
    );
    assert!(
        runuser_test("-w", &root.join("var/log/wsgi-app")),
        "nobody cannot write its logs"
    );
    let mut privilege_cases = 0;
    for path in [
        code.clone(),
        code.join("example_wsgi.py"),
        root.join("srv/wsgi-app/current/venv/bin"),
        root.join("srv/wsgi-app/builds"),
        root.join("srv/wsgi-app"),
        root.join("etc/wsgi-app"),
        env_path.clone(),
        store.clone(),
        store.parent().unwrap().to_path_buf(),
    ] {
        privilege_cases += 1;
        assert!(
            !runuser_test("-w", &path),
            "nobody can write {}",
            path.display()
        );
    }
    assert!(!runuser_test("-r", &store), "nobody can read the store");
    privilege_cases += 1;

    record(
        "secrets: a PostgreSQL password (raw and percent-encoded) end to end",
        checked,
        "files under the model checked (hooks.log, unit roots, charm dirs); absent there, in juju-log, status, show-unit, action results and command lines; env file 0640 root:nogroup, store 0600",
    );
    record(
        "least privilege (real gunicorn)",
        privilege_cases,
        "gunicorn runs as nobody; nobody cannot write the code, venv, builds, current's directory, env file or store, nor read the store",
    );
    record(
        "injection through the real binary (env file, NRPE via sh -c, 180 KB status, action label)",
        injection_cases,
        "nothing executed; values read back literally; an over-long status is cut, the hook succeeds",
    );
    sim.destroy_and_check_nothing_left(&[&sim.unit_url(0)]);
}
