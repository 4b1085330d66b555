//! Project chores: `cargo xtask test` (install what the tests need, then run
//! them all), `cargo xtask pack` (build the .charm), `cargo xtask bench`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

// The benchmarks live beside the library, not in it: charm-sim links the
// library in release mode, and editing a benchmark must not rebuild it.
#[path = "../bench/mod.rs"]
mod bench;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("bench") => bench::main(&workspace_root(), &args[1..]),
        _ => Err(
            "usage: cargo xtask test [cargo test args...] | bench [--quick] [NAME...]".to_string(),
        ),
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

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

/// Debian packages the tests use: check_http, a PostgreSQL server,
/// systemd-analyze, make.
const TEST_PACKAGES: &[(&str, &str)] = &[
    (
        "/usr/lib/nagios/plugins/check_http",
        "monitoring-plugins-basic",
    ),
    ("/usr/lib/postgresql", "postgresql"),
    ("/usr/bin/systemd-analyze", "systemd"),
    ("/usr/bin/make", "make"),
];

fn install_test_packages() -> Result<(), String> {
    let missing: Vec<&str> = TEST_PACKAGES
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
            "the tests need these Debian packages: {} (run as root, or install them)",
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

/// A venv with gunicorn (and uv) shared by the tests that run real gunicorn.
pub fn test_venv(root: &Path) -> Result<PathBuf, String> {
    let venv = root.join("target/test-venv");
    if venv.join("bin/gunicorn").exists() && venv.join("bin/uv").exists() {
        return Ok(venv);
    }
    if !have("python3") {
        return Err("python3 is needed for the tests".into());
    }
    eprintln!("xtask: creating {} with gunicorn and uv", venv.display());
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "gunicorn",
        "uv",
    ]))?;
    Ok(venv)
}

fn test(extra: &[String]) -> Result<(), String> {
    let root = workspace_root();
    install_test_packages()?;
    let venv = test_venv(&root)?;
    run(Command::new("cargo")
        .current_dir(&root)
        .args(["test", "--workspace", "--all-targets"])
        .args(extra)
        .env("WSGI_APP_TEST_VENV", &venv))
}
