//! The real machine's runner: programs run for real with a clean
//! environment, killed as a process group on timeout.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::workload::machine::{CommandOutput, CommandSpec, Runner};
use crate::workload::proxy::ModelProxy;

/// The PATH programs get when the hook gave none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs programs for real, with a clean environment: PATH and LANG from the
/// hook, the model's proxy settings, plus what the command sets. Hook
/// variables (JUJU_*) never leak into the application's tools.
#[derive(Debug, Default, Clone)]
pub struct SystemRunner {
    /// Given to every program as `http_proxy` and friends.
    pub proxy: ModelProxy,
    /// The hook's PATH (read by `main`); empty: [`DEFAULT_PATH`].
    pub path: OsString,
}

impl SystemRunner {
    fn base_path(&self) -> OsString {
        if self.path.is_empty() {
            DEFAULT_PATH.into()
        } else {
            self.path.clone()
        }
    }
}

impl Runner for SystemRunner {
    fn run(&self, spec: &CommandSpec) -> std::io::Result<CommandOutput> {
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .env_clear()
            .env("PATH", self.base_path())
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in self.proxy.installer_env().iter().chain(&spec.env) {
            cmd.env(k, v);
        }
        if let Some(dir) = &spec.cwd {
            cmd.current_dir(dir);
        }
        if let Some(user) = &spec.user {
            let account = crate::workload::users::lookup(user)?;
            use std::os::unix::process::CommandExt;
            cmd.uid(account.uid).gid(account.gid);
            cmd.env("HOME", &account.home);
        }
        run_with_timeout(cmd, spec.timeout)
    }

    fn which(&self, program: &str) -> Option<PathBuf> {
        std::env::split_paths(&self.base_path())
            .map(|dir| dir.join(program))
            .find(|p| is_executable(p))
    }
}

pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Run `cmd`, killing its whole process group after `timeout`.
pub fn run_with_timeout(
    mut cmd: Command,
    timeout: Option<Duration>,
) -> std::io::Result<CommandOutput> {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    let mut child = cmd.spawn()?;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    // Read both pipes on threads so a chatty program cannot fill one and stall.
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let started = std::time::Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if timeout.is_some_and(|t| started.elapsed() > t) {
            // SAFETY: kill(2) on the child's own process group.
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
            timed_out = true;
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Ok(CommandOutput {
        code: status.code().unwrap_or(-1),
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
        timed_out,
    })
}
