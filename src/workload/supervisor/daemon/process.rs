//! The supervisor's process plumbing: signals (handlers only set flags),
//! detaching (double fork, `setsid`, stdio to the log), the listening socket
//! it holds and lends to each master as fd 3, and signalling masters and
//! their process groups.

use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{LISTEN_BACKLOG, TICK};
use crate::workload::service::{write_atomic, ServiceSpec, MAX_GRACEFUL_TIMEOUT_SECS};
use crate::workload::supervisor::protocol::{is_our_master, RunDir};

pub(super) static HUP: AtomicBool = AtomicBool::new(false);
pub(super) static STOP: AtomicBool = AtomicBool::new(false);

pub(super) extern "C" fn on_signal(signal: libc::c_int) {
    // Only async-signal-safe work here: set a flag for the loop.
    if signal == libc::SIGHUP {
        HUP.store(true, Ordering::SeqCst);
    } else {
        STOP.store(true, Ordering::SeqCst);
    }
}

pub(super) fn install_signal_handlers() {
    for signal in [libc::SIGHUP, libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a zeroed sigaction with a plain handler and an empty mask.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// Detach: double fork and `setsid`, stdio to the log. Returns
/// `Some(exit code)` in the original process (once the pidfile names the
/// daemon) and `None` in the daemon.
pub(super) fn daemonize(
    dirs: &RunDir,
    log: &std::fs::File,
    keep_fds: &[i32],
) -> Result<Option<i32>, String> {
    // SAFETY: the process is single-threaded (see the module invariants), so
    // the children may run ordinary code after fork.
    unsafe {
        match libc::fork() {
            -1 => return Err(format!("fork: {}", std::io::Error::last_os_error())),
            0 => {}
            first_child => {
                let mut status = 0;
                libc::waitpid(first_child, &mut status, 0);
                let code = if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    1
                };
                return Ok(Some(code));
            }
        }
        // First child: a new session, so no terminal or hook process group
        // signal reaches the daemon; then fork again so it can never
        // reacquire a controlling terminal.
        libc::setsid();
        match libc::fork() {
            -1 => libc::_exit(1),
            0 => {}
            daemon => {
                let written =
                    write_atomic(&dirs.pidfile(), format!("{daemon}\n").as_bytes(), 0o644);
                if written.is_err() {
                    libc::kill(daemon, libc::SIGKILL);
                    libc::_exit(1);
                }
                libc::_exit(0);
            }
        }
        // The daemon.
        libc::umask(0o022);
        let _ = libc::chdir(c"/".as_ptr());
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        libc::dup2(null, 0);
        libc::dup2(log.as_raw_fd(), 1);
        libc::dup2(log.as_raw_fd(), 2);
        // Whatever else the charm's process left open (without CLOEXEC)
        // must not stay open for the daemon's lifetime, e.g. the pipe the
        // charm reads our output from.
        close_inherited_fds(keep_fds);
    }
    Ok(None)
}

pub(super) fn close_inherited_fds(keep: &[i32]) {
    let fds: Vec<i32> = match std::fs::read_dir("/proc/self/fd") {
        Ok(entries) => entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => return,
    };
    for fd in fds {
        if fd > 2 && !keep.contains(&fd) {
            // SAFETY: closing a descriptor nobody in this process uses (the
            // directory handle used to list them is already closed).
            unsafe { libc::close(fd) };
        }
    }
}

/// A master left running by a supervisor that died (killed, or the machine's
/// OOM killer): it still holds the port, so stop it before binding.
pub(super) fn stop_orphaned_master(dirs: &RunDir) {
    let Ok(Some(state)) = dirs.read_state() else {
        return;
    };
    let Some(pid) = state.pid.filter(|pid| is_our_master(dirs, *pid)) else {
        return;
    };
    log!("stopping gunicorn master {pid} left by a previous supervisor");
    signal_group(pid, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(MAX_GRACEFUL_TIMEOUT_SECS + 5);
    while is_our_master(dirs, pid) && Instant::now() < deadline {
        std::thread::sleep(TICK);
    }
    if is_our_master(dirs, pid) {
        signal_group(pid, libc::SIGKILL);
    }
}

/// Send `signal` to a master's process group (the master and its workers).
/// Whether any process of the group `pgid` is left (zombies count until
/// reaped).
pub(super) fn group_alive(pgid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    let rc = unsafe { libc::kill(-(pgid as i32), 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// After SIGKILL: give the kernel a moment to take the processes down.
pub(super) fn give_up_wait(groups: &[u32]) {
    let until = Instant::now() + Duration::from_secs(2);
    while groups.iter().any(|pid| group_alive(*pid)) && Instant::now() < until {
        std::thread::sleep(TICK);
    }
}

pub(super) fn signal_group(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) on a process group we created (process_group(0)).
    unsafe { libc::kill(-(pid as i32), signal) };
}

pub(super) fn signal_pid(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid as i32, signal) };
}

/// The listening socket, bound by us and lent to each master as fd 3.
pub(super) struct HeldListener {
    pub(super) address: String,
    pub(super) socket: TcpListener,
}

impl HeldListener {
    pub(super) fn bind(spec: &ServiceSpec) -> Result<HeldListener, String> {
        let address = spec.listen_address();
        // std sets SO_REUSEADDR on Unix, so a restart does not wait out
        // TIME_WAIT connections of the previous listener.
        let socket =
            TcpListener::bind(&address).map_err(|e| format!("cannot listen on {address}: {e}"))?;
        // std listens with a small backlog; listen(2) again to enlarge it
        // (Linux applies a new backlog to a listening socket). The kernel
        // caps it at net.core.somaxconn.
        // SAFETY: listen on a socket we own.
        if unsafe { libc::listen(socket.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
            return Err(format!(
                "cannot set the backlog on {address}: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(HeldListener { address, socket })
    }

    pub(super) fn raw_fd(&self) -> i32 {
        self.socket.as_raw_fd()
    }
}

/// In the child, between fork and exec: make the held listener fd 3, open
/// across exec (dup2 clears close-on-exec on the copy; when the listener
/// already is fd 3 the flag is cleared in place).
pub(super) fn lend_listener_as_fd3(listener_fd: i32) -> std::io::Result<()> {
    // SAFETY: dup2/fcntl are async-signal-safe and act on our descriptors.
    unsafe {
        if listener_fd == 3 {
            let flags = libc::fcntl(3, libc::F_GETFD);
            if flags < 0 || libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(std::io::Error::last_os_error());
            }
        } else if libc::dup2(listener_fd, 3) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

pub(super) fn describe_wait_status(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exit code {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("wait status {status}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn wait_statuses_read_like_english() {
        assert_eq!(describe_wait_status(3 << 8), "exit code 3");
        assert_eq!(describe_wait_status(9), "killed by signal 9");
    }
}
