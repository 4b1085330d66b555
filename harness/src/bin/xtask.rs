//! Project chores: `cargo xtask test` (install what the tests need, then run
//! them all), `cargo xtask pack` (build the .charm for real Juju; the work
//! is in `harness::xtask::pack`, which the tests call directly), `cargo
//! xtask bench` (the benchmarks, see BENCHMARKS.md), and
//! `cargo xtask security-table` (the README's Security table, from the case
//! counts the hardening tests wrote into target/hardening-counts/), and
//! `cargo xtask stress` (the whole suite again and again on a machine kept
//! busy, stopping at the first failure: how a race that fails one run in
//! ten is caught before it blocks landings).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use harness::charm_contents::{build_charm_binary, BinaryBuild};
use harness::xtask::pack::{pack, BASE_CHANNELS, OLDEST_BASE_GLIBC};

// The benchmarks live beside the library, not in it: charm-sim links the
// library in release mode, and editing a benchmark must not rebuild it.
#[path = "../bench/mod.rs"]
mod bench;
use bench::system::{load_average, utc_timestamp};

const USAGE: &str = "usage: cargo xtask test [cargo test args...]
       cargo xtask pack [--target TRIPLE] [--out DIR]
       cargo xtask bench [--quick] [hooks|builds|switch|switch-systemd|serving|serving-options|scale|rotation|rollout]...
       cargo xtask security-table
       cargo xtask stress [--runs N] [--burners K] [--out DIR] [cargo test args...]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("pack") => pack_command(&args[1..]),
        Some("bench") => bench::main(&workspace_root(), &args[1..]),
        Some("security-table") => security_table(),
        Some("stress") => stress(&args[1..]),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("harness lives inside the workspace")
        .to_path_buf()
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let status = cmd.status().map_err(|e| format!("{cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed with {status}"))
    }
}

/// Debian packages the tests use: check_http, a PostgreSQL server,
/// systemd-analyze, make, readelf (the pack test checks glibc versions),
/// haproxy and Prometheus (charm-sim's load balancer and collector; its
/// promtool judges the cos-agent alert rules too);
/// for the container units of tests/e2e_machines.rs, debootstrap (their
/// Debian root), systemd-nspawn and check_nrpe (asking their nrpe).
const TEST_PACKAGES: &[(&str, &str)] = &[
    ("/usr/bin/readelf", "binutils"),
    ("/usr/sbin/debootstrap", "debootstrap"),
    ("/usr/bin/systemd-nspawn", "systemd-container"),
    ("/usr/lib/nagios/plugins/check_nrpe", "nagios-nrpe-plugin"),
    (
        "/usr/lib/nagios/plugins/check_http",
        "monitoring-plugins-basic",
    ),
    // The server (initdb, pg_ctl): /usr/lib/postgresql alone comes with
    // the client too.
    ("/usr/bin/pg_createcluster", "postgresql"),
    ("/usr/bin/systemd-analyze", "systemd"),
    ("/usr/bin/make", "make"),
    // charm-sim's load balancer (`add-remote --haproxy`).
    ("/usr/sbin/haproxy", "haproxy"),
    // charm-sim's collector (`add-remote --prometheus`): the server, and
    // promtool, which judges its configuration, the exporter's output and
    // (tests/charm_observability.rs) the cos-agent alert rules.
    ("/usr/bin/promtool", "prometheus"),
];

fn install_test_packages() -> Result<(), String> {
    install_missing(TEST_PACKAGES)
}

/// Install the Debian packages whose marker path is missing (as root), or
/// say which are needed.
fn install_missing(packages: &[(&str, &str)]) -> Result<(), String> {
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(path, _)| !Path::new(path).exists())
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(format!(
            "xtask needs these Debian packages: {} (run as root, or install them)",
            missing.join(" ")
        ));
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    run(Command::new("apt-get").args(["update", "-q"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Where the hardening tests write their case counts (see `security_table`).
fn hardening_counts_dir(root: &Path) -> PathBuf {
    root.join("target/hardening-counts")
}

fn test(extra: &[String]) -> Result<(), String> {
    let root = workspace_root();
    install_test_packages()?;
    // The Security table is this run's counts only: a class renamed or
    // dropped since an earlier run must not linger in it.
    let counts = hardening_counts_dir(&root);
    match std::fs::remove_dir_all(&counts) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: {e}", counts.display())),
    }
    // The container units' Debian root: made once (about two minutes),
    // then cached in /var/cache/wsgi-app between runs.
    harness::sim::container::ensure_root(harness::sim::context::Progress { quiet: false })
        .map_err(|e| e.to_string())?;
    run(Command::new("cargo")
        .current_dir(&root)
        .args(["test", "--workspace", "--all-targets"])
        .args(extra))
}

/// The value given after option `arg`.
fn option_value(args: &mut std::slice::Iter<'_, String>, arg: &str) -> Result<String, String> {
    args.next()
        .cloned()
        .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
}

/// `cargo xtask pack`: build the release binary, check it, and write
/// `dist/wsgi-app_<arch>.charm`.
fn pack_command(args: &[String]) -> Result<(), String> {
    let root = workspace_root();
    let mut target = None;
    let mut out_dir = root.join("dist");
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--target" => target = Some(option_value(&mut args, arg)?),
            "--out" => out_dir = PathBuf::from(option_value(&mut args, arg)?),
            _ => return Err(format!("unknown argument {arg:?}\n{USAGE}")),
        }
    }
    // readelf tells which glibc the binary needs; pack refuses to guess.
    install_missing(&[("/usr/bin/readelf", "binutils")])?;
    eprintln!("xtask: building the release charm binary");
    let binary = build_charm_binary(
        &root,
        &BinaryBuild {
            release: true,
            target,
            quiet: false,
        },
    )?;
    let packed = pack(&root, &binary, &out_dir)?;
    let shown = packed
        .path
        .strip_prefix(std::env::current_dir().unwrap_or_default())
        .unwrap_or(&packed.path);
    println!("{}", shown.display());
    println!(
        "  size    {} bytes ({:.1} MiB)",
        packed.size,
        packed.size as f64 / (1024.0 * 1024.0)
    );
    println!("  sha256  {}", packed.sha256);
    match &packed.glibc {
        Some(v) => println!(
            "  glibc   needs GLIBC_{v} at most (Ubuntu {} has {OLDEST_BASE_GLIBC})",
            BASE_CHANNELS[0]
        ),
        None => println!("  glibc   none (a static binary)"),
    }
    println!(
        "  bases   ubuntu {} on {}",
        BASE_CHANNELS.join(", "),
        packed.arch
    );
    Ok(())
}

/// Print the README's Security table from target/hardening-counts/*.json,
/// written by tests/hardening_*.rs and tests/e2e_hardening.rs during the
/// last `cargo xtask test` (which empties the directory first).
fn security_table() -> Result<(), String> {
    let dir = hardening_counts_dir(&workspace_root());
    let entries = std::fs::read_dir(&dir).map_err(|e| {
        format!(
            "{}: {e}; run the tests first (cargo xtask test)",
            dir.display()
        )
    })?;
    let mut rows: Vec<(String, u64, String)> = Vec::new();
    for entry in entries.flatten() {
        let text = std::fs::read_to_string(entry.path()).map_err(|e| e.to_string())?;
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        rows.push((
            value["class"].as_str().unwrap_or_default().to_string(),
            value["cases"].as_u64().unwrap_or_default(),
            value["outcome"].as_str().unwrap_or_default().to_string(),
        ));
    }
    rows.sort();
    println!("| bad input tried | cases | outcome |");
    println!("|---|---:|---|");
    for (class, cases, outcome) in rows {
        let cell = |s: &str| s.replace('|', "\\|");
        println!("| {} | {cases} | {} |", cell(&class), cell(&outcome));
    }
    Ok(())
}

/// `cargo xtask stress`: the README's test command run `--runs` times in a
/// row (default 10) while `--burners` threads (default one per core) spin,
/// so the tests meet a machine as busy as a loaded CI runner or a shared
/// host. Each run's output goes to `--out` (default target/stress/) as
/// run-N.out, and a line per run to its log; the first failed run ends it,
/// because the question is whether the suite passes every time.
fn stress(args: &[String]) -> Result<(), String> {
    let root = workspace_root();
    let mut runs: u32 = 10;
    let mut burners = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut out_dir = root.join("target/stress");
    let mut test_args: Vec<String> = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => {
                runs = option_value(&mut args, arg)?
                    .parse()
                    .map_err(|_| format!("--runs takes a count of runs\n{USAGE}"))?
            }
            "--burners" => {
                burners = option_value(&mut args, arg)?
                    .parse()
                    .map_err(|_| format!("--burners takes a count of threads\n{USAGE}"))?
            }
            "--out" => out_dir = PathBuf::from(option_value(&mut args, arg)?),
            _ => test_args.push(arg.clone()),
        }
    }
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let log_path = out_dir.join("log");
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("{}: {e}", log_path.display()))?;
    let mut say = |line: String| {
        use std::io::Write;
        println!("{line}");
        let _ = writeln!(log, "{line}");
    };
    let head = Command::new("git")
        .current_dir(&root)
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    say(format!(
        "{} stress: {runs} runs of `cargo xtask test{}` at {head}, {burners} burner threads",
        utc_timestamp(),
        test_args
            .iter()
            .map(|a| format!(" {a}"))
            .collect::<String>()
    ));
    // Built once before the burners start: the runs measure the tests,
    // and a compile under a burner only makes the first run slower.
    run(Command::new("cargo").current_dir(&root).args([
        "test",
        "--workspace",
        "--all-targets",
        "--no-run",
        "--quiet",
    ]))?;

    let stop = Arc::new(AtomicBool::new(false));
    let spinning: Vec<_> = (0..burners)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut n: u64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            })
        })
        .collect();
    let mut outcome = Ok(());
    for i in 1..=runs {
        let output_path = out_dir.join(format!("run-{i}.out"));
        let output = std::fs::File::create(&output_path)
            .map_err(|e| format!("{}: {e}", output_path.display()))?;
        let errors = output.try_clone().map_err(|e| e.to_string())?;
        let load_before = load_average();
        let started = Instant::now();
        // Through cargo, as the README says it: building the tests may have
        // replaced this very binary.
        let status = Command::new("cargo")
            .current_dir(&root)
            .args(["xtask", "test"])
            .args(&test_args)
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(errors)
            .status()
            .map_err(|e| format!("cargo xtask test: {e}"))?;
        let text = std::fs::read_to_string(&output_path).unwrap_or_default();
        let tally = SuiteTally::read(&text);
        say(format!(
            "{} run {i}/{runs}: {} in {} s, {} passed, {} failed, load {:.1} -> {:.1}{}",
            utc_timestamp(),
            if status.success() { "pass" } else { "FAIL" },
            started.elapsed().as_secs(),
            tally.passed,
            tally.failed,
            load_before,
            load_average(),
            if tally.failing.is_empty() {
                String::new()
            } else {
                format!(" ({})", tally.failing.join(", "))
            }
        ));
        if !status.success() {
            outcome = Err(format!(
                "run {i} of {runs} failed ({status}); its output: {}",
                output_path.display()
            ));
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for thread in spinning {
        let _ = thread.join();
    }
    if outcome.is_ok() {
        say(format!(
            "{} stress: {runs} of {runs} runs passed",
            utc_timestamp()
        ));
    }
    outcome
}

/// What `cargo test` printed: the passed and failed counts over every test
/// binary, and the names of the failed tests.
#[derive(Default)]
struct SuiteTally {
    passed: u64,
    failed: u64,
    failing: Vec<String>,
}

impl SuiteTally {
    fn read(output: &str) -> SuiteTally {
        let mut tally = SuiteTally::default();
        for line in output.lines() {
            if let Some(rest) = line.strip_prefix("test result: ") {
                // "ok. 12 passed; 0 failed; 0 ignored; ..."
                for part in rest.split(';') {
                    let mut words = part.split_whitespace().rev();
                    let (Some(kind), Some(count)) = (words.next(), words.next()) else {
                        continue;
                    };
                    let count: u64 = count.parse().unwrap_or(0);
                    match kind {
                        "passed" => tally.passed += count,
                        "failed" => tally.failed += count,
                        _ => {}
                    }
                }
            } else if let Some(name) = line
                .strip_prefix("test ")
                .and_then(|l| l.strip_suffix(" ... FAILED"))
            {
                tally.failing.push(name.to_string());
            }
        }
        tally
    }
}

#[cfg(test)]
mod tests {
    use super::SuiteTally;

    #[test]
    fn the_tally_adds_every_binary_and_names_the_failed_tests() {
        let output = "\
running 2 tests
test a_switch_answers_the_new_build ... ok
test rollback_answers_the_old_build ... FAILED
test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.20s

running 12 tests
test result: ok. 12 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s
";
        let tally = SuiteTally::read(output);
        assert_eq!(tally.passed, 13);
        assert_eq!(tally.failed, 1);
        assert_eq!(tally.failing, ["rollback_answers_the_old_build"]);
    }
}
