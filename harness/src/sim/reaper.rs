//! Finding and ending the processes a model started, and checking that no
//! listener is left on a unit's address.
//!
//! The charm's services are not our children: the wsgi-app direct
//! supervisor daemonizes with setsid, so it is re-parented away from
//! charm-sim. We find such processes through /proc instead: a process
//! belongs to a directory (the model, or one unit's directory) when its
//! environment or command line names a path under it, or when its working
//! directory is under it and it has no controlling terminal (so a user's
//! shell that merely `cd`-ed into the model is left alone). charm-sim itself
//! and its ancestors are never touched.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use super::Result;

/// Process ids of charm-sim and every ancestor (never to be signalled).
fn protected_pids() -> BTreeSet<i32> {
    let mut pids = BTreeSet::new();
    let mut pid = std::process::id() as i32;
    while pid > 1 && pids.insert(pid) {
        pid = match stat_fields(pid) {
            Some(fields) => fields.get(1).and_then(|p| p.parse().ok()).unwrap_or(0),
            None => 0,
        };
    }
    pids
}

/// Fields of /proc/PID/stat after the `(comm)` field: state, ppid, pgrp,
/// session, tty_nr, …
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    Some(after.split_whitespace().map(str::to_string).collect())
}

/// Whether process `pid` is running.
pub fn is_alive(pid: i32) -> bool {
    // A zombie has exited; only its parent's wait() is missing.
    stat_fields(pid).is_some_and(|f| f.first().map(String::as_str) != Some("Z"))
}

fn mentions(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether process `pid` belongs to `dir` (see the module comment).
fn belongs_to(pid: i32, dir: &Path) -> bool {
    let dir_text = dir.as_os_str().as_encoded_bytes();
    let mut dir_slash = dir_text.to_vec();
    dir_slash.push(b'/');
    let names_dir = |blob: &[u8]| {
        blob.split(|b| *b == 0).any(|item| {
            // An env var `NAME=/model/...`, a PATH entry, or an argument.
            mentions(item, &dir_slash) || item.ends_with(dir_text)
        })
    };
    if let Ok(environ) = fs::read(format!("/proc/{pid}/environ")) {
        if names_dir(&environ) {
            return true;
        }
    }
    if let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) {
        if names_dir(&cmdline) {
            return true;
        }
    }
    if let Ok(cwd) = fs::read_link(format!("/proc/{pid}/cwd")) {
        if cwd.starts_with(dir) {
            let tty = stat_fields(pid)
                .and_then(|f| f.get(4).and_then(|t| t.parse::<i64>().ok()))
                .unwrap_or(0);
            return tty == 0;
        }
    }
    false
}

/// Live processes that belong to `dir`.
pub fn processes_under(dir: &Path) -> Vec<i32> {
    let protected = protected_pids();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| !protected.contains(pid) && is_alive(*pid) && belongs_to(*pid, dir))
        .collect()
}

fn signal(pid: i32, sig: libc::c_int) {
    // SAFETY: kill(2) with a plain pid and signal number has no memory effects.
    unsafe {
        libc::kill(pid, sig);
    }
}

fn wait_gone(pids: &[i32], within: Duration) -> Vec<i32> {
    let deadline = Instant::now() + within;
    loop {
        let alive: Vec<i32> = pids.iter().copied().filter(|p| is_alive(*p)).collect();
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// End every process that belongs to `dir`: SIGTERM, a grace period, then
/// SIGKILL. Repeats while new ones appear (a supervisor may respawn a
/// worker before it is itself ended). Returns how many were ended.
pub fn end_processes_under(dir: &Path) -> Result<usize> {
    let mut ended = BTreeSet::new();
    for _round in 0..5 {
        let pids = processes_under(dir);
        if pids.is_empty() {
            break;
        }
        for pid in &pids {
            signal(*pid, libc::SIGTERM);
        }
        let stubborn = wait_gone(&pids, Duration::from_secs(5));
        for pid in &stubborn {
            signal(*pid, libc::SIGKILL);
        }
        wait_gone(&stubborn, Duration::from_secs(2));
        ended.extend(pids);
    }
    Ok(ended.len())
}

/// A TCP listener: its address, port and socket inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub address: String,
    pub port: u16,
    pub inode: u64,
}

/// Decode /proc/net/tcp's little-endian IPv4 (or the IPv4-mapped tail of
/// an IPv6) address.
fn decode_v4(hex: &str) -> Option<String> {
    let tail = match hex.len() {
        8 => hex,
        32 if hex[16..24].eq_ignore_ascii_case("FFFF0000")
            && hex[..16].chars().all(|c| c == '0') =>
        {
            &hex[24..]
        }
        _ => return None,
    };
    let n = u32::from_str_radix(tail, 16).ok()?;
    let b = n.to_le_bytes();
    Some(format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3]))
}

/// TCP sockets in LISTEN state on any of `addresses`.
pub fn listeners_on(addresses: &[String]) -> Vec<Listener> {
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 || fields[3] != "0A" {
                continue;
            }
            let Some((addr_hex, port_hex)) = fields[1].split_once(':') else {
                continue;
            };
            let (Some(address), Ok(port), Ok(inode)) = (
                decode_v4(addr_hex),
                u16::from_str_radix(port_hex, 16),
                fields[9].parse::<u64>(),
            ) else {
                continue;
            };
            if addresses.contains(&address) {
                out.push(Listener {
                    address,
                    port,
                    inode,
                });
            }
        }
    }
    out
}

/// The processes holding a socket inode open.
pub fn socket_owners(inode: u64) -> Vec<i32> {
    let wanted = format!("socket:[{inode}]");
    let mut owners = Vec::new();
    let Ok(procs) = fs::read_dir("/proc") else {
        return owners;
    };
    for pid in procs.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        if fds
            .filter_map(|fd| fs::read_link(fd.ok()?.path()).ok())
            .any(|link| link.as_os_str() == wanted.as_str())
        {
            owners.push(pid);
        }
    }
    owners
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_addresses_decode() {
        assert_eq!(decode_v4("0101007F").as_deref(), Some("127.0.1.1"));
        assert_eq!(
            decode_v4("0000000000000000FFFF00000201007F").as_deref(),
            Some("127.0.1.2")
        );
        assert_eq!(decode_v4("00000000000000000000000001000000"), None);
    }
}
