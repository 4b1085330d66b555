//! The real machine's runner: programs run for real with a clean
//! environment, killed as a process group on timeout.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::workload::machine::{CommandOutput, CommandSpec, Runner};
use crate::workload::proxy::ModelProxy;
use crate::workload::users::{lookup, Account};

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
        let mut account = None;
        if let Some(user) = &spec.user {
            let found = lookup(user)?;
            use std::os::unix::process::CommandExt;
            cmd.uid(found.uid).gid(found.gid);
            cmd.env("HOME", &found.home);
            account = Some(found);
        }
        run_with_timeout(cmd, spec.timeout)
            .map_err(|e| explain_run_error(spec, account.as_ref(), e))
    }

    fn which(&self, program: &str) -> Option<PathBuf> {
        std::env::split_paths(&self.base_path())
            .map(|dir| dir.join(program))
            .find(|p| is_executable(p))
    }
}

/// A program that could not be run, said with what an operator needs to
/// fix it: the program, the directory it was to run in and, for a program
/// run as another user, the first directory on the way that user cannot
/// enter (the kernel's bare "Permission denied" names none of them).
fn explain_run_error(spec: &CommandSpec, account: Option<&Account>, error: io::Error) -> io::Error {
    let mut message = format!("cannot run {}", spec.program);
    if let Some(cwd) = &spec.cwd {
        message.push_str(&format!(" in {}", cwd.display()));
    }
    if let Some(account) = account {
        message.push_str(&format!(" as {}", account.name));
    }
    message.push_str(&format!(": {error}"));
    if let (Some(account), io::ErrorKind::PermissionDenied) = (account, error.kind()) {
        let program = Path::new(&spec.program);
        let blocked = spec
            .cwd
            .iter()
            .map(PathBuf::as_path)
            .chain(program.is_absolute().then_some(program))
            .find_map(|path| unreachable_dir(path, account));
        if let Some((dir, mode)) = blocked {
            message.push_str(&format!(
                "; user {} cannot enter {} (mode {mode:04o})",
                account.name,
                dir.display()
            ));
        }
    }
    io::Error::new(error.kind(), message)
}

/// The first directory from `/` down to `path` (itself included when it is
/// a directory) that `account` may not search, by owner, group and other
/// bits (supplementary groups and ACLs are not consulted: this explains an
/// error, it does not decide anything).
fn unreachable_dir(path: &Path, account: &Account) -> Option<(PathBuf, u32)> {
    use std::os::unix::fs::MetadataExt;
    let ancestors: Vec<&Path> = path.ancestors().collect();
    ancestors.into_iter().rev().find_map(|dir| {
        let meta = std::fs::metadata(dir).ok().filter(|m| m.is_dir())?;
        let mode = meta.mode() & 0o7777;
        let search = if meta.uid() == account.uid {
            0o100
        } else if meta.gid() == account.gid {
            0o010
        } else {
            0o001
        };
        (account.uid != 0 && mode & search == 0).then(|| (dir.to_path_buf(), mode))
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A program the app user cannot start because a directory on the way
    /// is closed to it: the error names the program, the directory and the
    /// user, not just "Permission denied (os error 13)".
    #[test]
    fn a_run_the_app_user_cannot_start_names_the_directory_it_cannot_enter() {
        if !crate::workload::users::is_root() {
            eprintln!("skipped: switching to nobody needs root");
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let closed = tempfile::tempdir().unwrap();
        std::fs::set_permissions(closed.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let code = closed.path().join("code");
        std::fs::create_dir(&code).unwrap();
        let program = code.join("run");
        std::fs::write(&program, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let spec = CommandSpec::new(program.display().to_string()).as_user("nobody");
        let err = SystemRunner::default().run(&spec).unwrap_err();
        let message = err.to_string();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{message}");
        assert!(
            message.starts_with(&format!("cannot run {} as nobody: ", program.display())),
            "{message}"
        );
        assert!(
            message.contains(&format!(
                "user nobody cannot enter {} (mode 0700)",
                closed.path().display()
            )),
            "{message}"
        );
    }
}
