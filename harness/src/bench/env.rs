//! What the benchmarks need on the machine, installed on first use: the
//! release binaries, Debian packages (curl for the venv+pip baseline,
//! python3-venv), and under `target/bench/` a Python venv with `ops` (the
//! comparison charm's framework) and a directory of wheels downloaded once
//! (flask, psycopg[binary], pymongo, gunicorn) that the build benchmark
//! installs offline.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::system::{run_checked, version_of};

/// The directories a unit's PATH holds after its tools, as charm-sim sets
/// it (and Juju on Ubuntu): the charm finds `python3` there, and so must
/// the baselines, so that everyone uses the same interpreter.
pub const UNIT_SYSTEM_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/snap/bin";

/// Where everything lives, and the run's options.
#[derive(Debug, Clone)]
pub struct BenchEnv {
    pub workspace: PathBuf,
    /// `target/bench`: venvs, wheels, models, scratch.
    pub dir: PathBuf,
    pub charm_sim: PathBuf,
    /// The python3 a unit sees first on its PATH.
    pub python: PathBuf,
    pub quick: bool,
}

impl BenchEnv {
    /// Build the release binaries and find python3; install the Debian
    /// packages the benchmarks use when they are missing.
    pub fn prepare(workspace: &Path, quick: bool) -> Result<BenchEnv, String> {
        ensure_debian_packages()?;
        eprintln!("bench: building the release binaries (cargo build --release -p harness -p wsgi-app --bins)");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(workspace)
            .args([
                "build",
                "--release",
                "--quiet",
                "-p",
                "harness",
                "-p",
                "wsgi-app",
                "--bins",
            ])
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !status.success() {
            return Err(format!("cargo build --release failed ({status})"));
        }
        let python = UNIT_SYSTEM_PATH
            .split(':')
            .map(|dir| Path::new(dir).join("python3"))
            .find(|p| p.exists())
            .ok_or("no python3 on the unit PATH (/usr/bin/python3); install python3")?;
        let dir = workspace.join("target/bench");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(BenchEnv {
            workspace: workspace.to_path_buf(),
            charm_sim: workspace.join("target/release/charm-sim"),
            dir,
            python,
            quick,
        })
    }

    /// `target/bench/venv`: python3 with `ops` (and pip, for downloads).
    pub fn python_venv(&self) -> Result<PathBuf, String> {
        let venv = self.dir.join("venv");
        let python = venv.join("bin/python3");
        let has_ops = Command::new(&python)
            .args(["-c", "import ops"])
            .output()
            .is_ok_and(|o| o.status.success());
        if has_ops {
            return Ok(venv);
        }
        eprintln!("bench: creating {} with ops", venv.display());
        let _ = std::fs::remove_dir_all(&venv);
        run_checked(Command::new(&self.python).arg("-m").arg("venv").arg(&venv))?;
        run_checked(Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "ops",
        ]))?;
        Ok(venv)
    }

    /// `target/bench/wheels`: the build benchmark's requirements as wheels.
    pub fn wheels(&self) -> Result<PathBuf, String> {
        let wheels = self.dir.join("wheels");
        let done = wheels.join(".complete");
        if done.exists() {
            return Ok(wheels);
        }
        let venv = self.python_venv()?;
        eprintln!("bench: downloading wheels into {}", wheels.display());
        run_checked(
            Command::new(venv.join("bin/python3"))
                .args([
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-d",
                ])
                .arg(&wheels)
                .args(BUILD_REQUIREMENTS)
                .arg("gunicorn"),
        )?;
        std::fs::write(&done, b"").map_err(|e| e.to_string())?;
        Ok(wheels)
    }

    /// The versions of the tools the figures depend on.
    pub fn tool_versions(&self) -> serde_json::Value {
        let venv_python = self.dir.join("venv/bin/python3");
        let ops = version_of(
            &venv_python,
            &["-c", "import ops; print('ops', ops.__version__)"],
        );
        serde_json::json!({
            "rustc": version_of(Path::new("rustc"), &["--version"]),
            "cargo": version_of(Path::new("cargo"), &["--version"]),
            "python3": version_of(&self.python, &["--version"]),
            "ops": ops,
            "charm-sim": version_of(&self.charm_sim, &["--version"]),
            "curl": version_of(Path::new("curl"), &["--version"]),
        })
    }
}

/// The build benchmark's requirements.txt.
pub const BUILD_REQUIREMENTS: &[&str] = &["flask", "psycopg[binary]", "pymongo"];

/// Debian packages: curl (the venv+pip baseline downloads with it),
/// python3-venv (venvs; Debian splits it from python3), debootstrap and
/// systemd-container (the container unit of `switch-systemd`).
fn ensure_debian_packages() -> Result<(), String> {
    let mut missing = Vec::new();
    if !Path::new("/usr/bin/curl").exists() {
        missing.push("curl");
    }
    if !Path::new("/usr/sbin/debootstrap").exists() {
        missing.push("debootstrap");
    }
    if !Path::new("/usr/bin/systemd-nspawn").exists() {
        missing.push("systemd-container");
    }
    // The rotation benchmark's server (initdb, pg_ctl).
    if !Path::new("/usr/bin/pg_createcluster").exists() {
        missing.push("postgresql");
    }
    let has_venv = Command::new("/usr/bin/python3")
        .args(["-c", "import ensurepip, venv"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_venv {
        missing.extend(["python3", "python3-venv"]);
    }
    if missing.is_empty() {
        return Ok(());
    }
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(format!(
            "the benchmarks need these Debian packages: {} (run as root, or install them)",
            missing.join(" ")
        ));
    }
    eprintln!("bench: installing {}", missing.join(" "));
    run_checked(Command::new("apt-get").args(["update", "-q"]))?;
    run_checked(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    Ok(())
}
