//! Shared by the service tests: one virtualenv with gunicorn per test run
//! (created once, in cargo's target tmp dir), and a fake machine layout with
//! builds r1/r2/r3 of the example app and a `current` symlink.
#![allow(dead_code)] // each test binary uses a different part

use std::path::{Path, PathBuf};
use std::process::Command;

use wsgi_app::workload::service::ServiceSpec;

#[path = "../common/ports.rs"]
pub mod ports;

/// The shared test venv with gunicorn: `<target>/tmp/test-venv`. Created
/// on first use (under a lock: test binaries run in parallel) with
/// `python3 -m venv` and pip from PyPI; a failure fails the test loudly.
pub fn test_venv() -> PathBuf {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let venv = base.join("test-venv");
    let complete = venv.join(".wsgi-app-test-venv-complete");
    std::fs::create_dir_all(&base).unwrap();
    let lock = std::fs::File::create(base.join("test-venv.lock")).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: flock on our own descriptor; released when `lock` drops.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    if !complete.exists() {
        let _ = std::fs::remove_dir_all(&venv);
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
        run(Command::new(venv.join("bin/python")).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "gunicorn",
        ]));
        std::fs::write(&complete, "").unwrap();
    }
    drop(lock);
    venv
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed (the service tests need python3 and PyPI):\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A machine layout in a temporary directory.
pub struct Layout {
    pub dir: tempfile::TempDir,
}

impl Layout {
    /// builds/r1, r2, r3 (broken at import), r4 (answers 500) (code from
    /// tests/fixtures/wsgi, venv a symlink to the shared test venv),
    /// `current` → r1, an environment file.
    pub fn new() -> Layout {
        let venv = test_venv();
        let dir = tempfile::Builder::new().prefix("wsgi").tempdir().unwrap();
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wsgi");
        for label in ["r1", "r2", "r3", "r4"] {
            let build = dir.path().join("builds").join(label);
            std::fs::create_dir_all(build.join("code")).unwrap();
            std::fs::copy(
                fixtures.join(label).join("example_wsgi.py"),
                build.join("code/example_wsgi.py"),
            )
            .unwrap();
            std::os::unix::fs::symlink(&venv, build.join("venv")).unwrap();
        }
        std::fs::write(
            dir.path().join("env"),
            "# test environment\nGREETING='hello from the env file'\n",
        )
        .unwrap();
        let layout = Layout { dir };
        layout.point_current_at("r1");
        layout
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Swap `current` atomically, as the charm does.
    pub fn point_current_at(&self, label: &str) {
        let tmp = self.path().join("current.tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(Path::new("builds").join(label), &tmp).unwrap();
        std::fs::rename(&tmp, self.path().join("current")).unwrap();
    }

    pub fn spec(&self, port: u16, fingerprint: &str) -> ServiceSpec {
        let (user, group) = if unsafe { libc::geteuid() } == 0 {
            ("root", "root")
        } else {
            // Not root: gunicorn runs as us whatever the spec says.
            ("nobody", "nogroup")
        };
        ServiceSpec {
            name: "wsgi-app-test".into(),
            current_dir: self.path().join("current"),
            wsgi_application: "example_wsgi:application".into(),
            bind_address: "127.0.0.1".into(),
            port,
            workers: 2,
            env_file: self.path().join("env"),
            user: user.into(),
            group: group.into(),
            log_dir: self.path().join("log"),
            run_dir: self.path().join("run"),
            serving: wsgi_app::workload::service::Serving::default(),
            metrics: None,
            fingerprint: fingerprint.into(),
        }
    }
}
