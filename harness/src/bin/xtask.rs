//! Project chores: `cargo xtask test` (install what the tests need, then run
//! them all), `cargo xtask pack` (build the .charm for real Juju; the work
//! is in `harness::xtask::pack`, which the tests call directly), `cargo
//! xtask bench` (the benchmarks, see BENCHMARKS.md), and
//! `cargo xtask security-table` (the README's Security table, from the case
//! counts the hardening tests wrote into target/hardening-counts/).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use harness::charm_contents::{build_charm_binary, BinaryBuild};
use harness::xtask::pack::{pack, BASE_CHANNELS, OLDEST_BASE_GLIBC};

// The benchmarks live beside the library, not in it: charm-sim links the
// library in release mode, and editing a benchmark must not rebuild it.
#[path = "../bench/mod.rs"]
mod bench;

const USAGE: &str = "usage: cargo xtask test [cargo test args...]
       cargo xtask pack [--target TRIPLE] [--out DIR]
       cargo xtask bench [--quick] [hooks|builds|switch|switch-systemd|serving|serving-options|scale|rotation|rollout]...
       cargo xtask security-table";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("pack") => pack_command(&args[1..]),
        Some("bench") => bench::main(&workspace_root(), &args[1..]),
        Some("security-table") => security_table(),
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

/// `cargo xtask pack`: build the release binary, check it, and write
/// `dist/wsgi-app_<arch>.charm`.
fn pack_command(args: &[String]) -> Result<(), String> {
    let root = workspace_root();
    let mut target = None;
    let mut out_dir = root.join("dist");
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .cloned()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--target" => target = Some(value()?),
            "--out" => out_dir = PathBuf::from(value()?),
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
