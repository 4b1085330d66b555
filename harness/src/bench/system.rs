//! The machine the figures come from, and running programs while measuring
//! them: wall time from spawn to reap, and peak resident memory from the
//! kernel's accounting (`wait4`'s `ru_maxrss`, what `/usr/bin/time -v`
//! prints as "Maximum resident set size").

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

/// What a reader needs to judge whether figures compare with theirs.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MachineInfo {
    pub cpu_model: String,
    pub cores: usize,
    pub memory_mib: u64,
    pub kernel: String,
    pub os: String,
}

impl MachineInfo {
    pub fn detect() -> MachineInfo {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map(|(_, name)| name.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let memory_mib = fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kib| kib / 1024);
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        let os = fs::read_to_string("/etc/os-release")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| "unknown".into());
        MachineInfo {
            cpu_model,
            cores,
            memory_mib,
            kernel,
            os,
        }
    }
}

/// The 1-minute load average: other work on the machine skews timings,
/// so the report records it before and after each benchmark.
pub fn load_average() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The first process whose command line holds every one of `words` as an
/// argument of its own (the charm's processes are told apart by theirs:
/// every unit runs the same binary).
pub fn find_process(words: &[&str]) -> Option<u32> {
    fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = fs::read(entry.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        words
            .iter()
            .all(|w| args.contains(&w.as_bytes()))
            .then_some(pid)
    })
}

/// A `kB` line of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in KiB.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let value = line.strip_prefix(field)?.strip_prefix(':')?;
        value.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// The first line a program prints for `args` (its version), or why not.
pub fn version_of(program: &Path, args: &[&str]) -> String {
    match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => {
            let text = if out.stdout.is_empty() {
                out.stderr
            } else {
                out.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        }
        Err(e) => format!("unavailable ({e})"),
    }
}

/// How a measured program ended.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    /// From just before spawn to just after the kernel reported its exit.
    pub wall: Duration,
    /// The exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    /// Peak resident set size in KiB, of the process (and of any
    /// descendants it reaped, whichever was largest).
    pub max_rss_kib: i64,
}

impl Measured {
    pub fn ms(&self) -> f64 {
        self.wall.as_secs_f64() * 1000.0
    }
}

/// Spawn `cmd` and wait for it with `wait4`, which hands back the
/// resource usage of exactly that child.
pub fn run_measured(cmd: &mut Command) -> std::io::Result<Measured> {
    let start = Instant::now();
    let child = cmd.spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter for wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waiting for our own child, with valid out-pointers.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    let wall = start.elapsed();
    // The child is reaped; `Child` neither waits nor kills on drop.
    drop(child);
    let code = if libc::WIFEXITED(status) {
        Some(libc::WEXITSTATUS(status))
    } else {
        None
    };
    Ok(Measured {
        wall,
        code,
        max_rss_kib: usage.ru_maxrss,
    })
}

/// Run a program to completion; its output on failure becomes the error.
pub fn run_checked(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stdout));
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Err(format!(
            "{cmd:?} failed ({}):\n{}",
            out.status,
            tail.join("\n")
        ))
    }
}

/// The current wall-clock time as an RFC 3339 UTC string.
pub fn utc_timestamp() -> String {
    wsgi_app::workload::text::rfc3339(wsgi_app::workload::builds::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_measured_run_reports_exit_code_and_memory() {
        let m = run_measured(Command::new("sh").args(["-c", "exit 3"])).unwrap();
        assert_eq!(m.code, Some(3));
        assert!(m.max_rss_kib > 0);
    }

    #[test]
    fn the_machine_is_described() {
        let info = MachineInfo::detect();
        assert!(info.cores >= 1);
        assert!(!info.kernel.is_empty());
    }
}
