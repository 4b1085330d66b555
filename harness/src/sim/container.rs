//! Units as machines booted with systemd (`charm-sim deploy --machines
//! container`).
//!
//! Each unit gets a `systemd-nspawn -b` container over a Debian 12 root
//! made once with `debootstrap` and cached on the machine
//! ([`ensure_root`]); the unit's machine is an overlay on that root (its own
//! upper layer, so a reboot keeps what the charm wrote). The model
//! directory is bind-mounted at the same path inside, so the unit's charm
//! dir, its hook tools (links to a copy of the charm-sim binary in the
//! model) and the model's SQLite database are the same files inside and
//! out. Hooks run inside the container ([`Machine::enter`]: `nsenter` into
//! its PID 1) with no `WSGI_APP_ROOT` or `WSGI_APP_SERVICE_MANAGER`, so the
//! charm finds systemd and picks it by itself, as on a real unit.
//!
//! Networking: the container shares the host's network namespace; the
//! unit's own loopback address keeps its listeners apart (the charm binds
//! `WSGI_APP_BIND_ADDRESS`, nrpe gets a `server_address` of its own). No
//! traffic leaves the machine.
//!
//! Invariants: the cached root is complete or absent (built in a temporary
//! directory, renamed into place, under a lock); a machine is powered off
//! and its overlay unmounted before its directory is removed.

use std::fs;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::context::Progress;
use super::file_lock::FileLock;
use super::store::random_hex;
use super::{ErrorContext, Result};
use crate::sim_err;

/// The Debian release of the machines.
pub const SUITE: &str = "bookworm";
/// Where debootstrap fetches it from.
pub const MIRROR: &str = "http://deb.debian.org/debian";
/// What the root holds beyond `minbase`: systemd as PID 1, what the charm
/// runs (python3 and venv for builds, make for `update_make_target`,
/// logrotate for its rotation file) and the NRPE server for its checks.
pub const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "python3-venv",
    "ca-certificates",
    "nagios-nrpe-server",
    "monitoring-plugins-basic",
    "logrotate",
    "make",
    "iproute2",
];
/// Bumped whenever [`configure_root`] changes, so cached roots are remade.
const RECIPE: u32 = 1;
/// Units masked in the root: background jobs a test machine must not run
/// (apt's timers would race the charm's apt-get).
const MASKED: &[&str] = &[
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
];

/// The directory holding cached roots: `$CHARM_SIM_ROOT_CACHE`, else
/// `/var/cache/wsgi-app`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("CHARM_SIM_ROOT_CACHE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/wsgi-app"))
}

/// A short digest of everything the root is made from.
pub fn root_key() -> String {
    let recipe = format!(
        "recipe {RECIPE}\nsuite {SUITE}\nmirror {MIRROR}\npackages {}\nmasked {}\n",
        PACKAGES.join(","),
        MASKED.join(",")
    );
    let digest = Sha256::digest(recipe.as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// Where the root for the current recipe is (or will be) cached.
pub fn cached_root() -> PathBuf {
    cache_dir().join(format!("debian-{SUITE}-{}", root_key()))
}

/// The host programs the container machines need, and their packages.
const HOST_PROGRAMS: &[(&str, &str)] = &[
    ("debootstrap", "debootstrap"),
    ("systemd-nspawn", "systemd-container"),
    ("nsenter", "util-linux"),
];

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
        || ["/usr/sbin", "/sbin"]
            .iter()
            .any(|d| Path::new(d).join(program).is_file())
}

/// Fail naming what is missing when this host cannot run container units.
pub fn check_host() -> Result<()> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(sim_err!(
            "container machines need root (systemd-nspawn, mount); run charm-sim as root"
        ));
    }
    let missing: Vec<&str> = HOST_PROGRAMS
        .iter()
        .filter(|(program, _)| !on_path(program))
        .map(|(_, package)| *package)
        .collect();
    if !missing.is_empty() {
        return Err(sim_err!(
            "container machines need {} (apt-get install {})",
            missing.join(", "),
            missing.join(" ")
        ));
    }
    Ok(())
}

/// The cached Debian root, made first when it is missing (about two
/// minutes; once per machine and recipe). Several processes may ask at
/// once: one makes it, the others wait on the lock.
pub fn ensure_root(progress: Progress) -> Result<PathBuf> {
    check_host()?;
    let root = cached_root();
    if root.is_dir() {
        return Ok(root);
    }
    let cache = cache_dir();
    fs::create_dir_all(&cache).context(format!("cannot create {}", cache.display()))?;
    let _lock = FileLock::take(&cache.join("root.lock"))?;
    if root.is_dir() {
        return Ok(root);
    }
    let temp = cache.join(format!(".making-{}-{}", root_key(), std::process::id()));
    if temp.exists() {
        fs::remove_dir_all(&temp).context(format!("cannot clear {}", temp.display()))?;
    }
    let log_path = cache.join(format!("debootstrap-{}.log", root_key()));
    progress.say(format!(
        "making the Debian {SUITE} root for container machines (once; cached as {}; log in {})",
        root.display(),
        log_path.display()
    ));
    let log =
        fs::File::create(&log_path).context(format!("cannot create {}", log_path.display()))?;
    let status = Command::new("debootstrap")
        .arg("--variant=minbase")
        .arg(format!("--include={}", PACKAGES.join(",")))
        .arg(SUITE)
        .arg(&temp)
        .arg(MIRROR)
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("cannot dup the log")?)
        .stderr(log)
        .status()
        .context("cannot run debootstrap")?;
    if !status.success() {
        let tail = tail_lines(&log_path, 15);
        let _ = fs::remove_dir_all(&temp);
        return Err(sim_err!(
            "debootstrap of Debian {SUITE} from {MIRROR} failed ({status}); the end of {}:\n{tail}",
            log_path.display()
        ));
    }
    configure_root(&temp)?;
    fs::rename(&temp, &root).context(format!("cannot move the root to {}", root.display()))?;
    progress.say(format!("made {}", root.display()));
    Ok(root)
}

/// Settings every machine shares, made once in the cached root.
fn configure_root(root: &Path) -> Result<()> {
    let system = root.join("etc/systemd/system");
    for unit in MASKED {
        let link = system.join(unit);
        let _ = fs::remove_file(&link);
        symlink("/dev/null", &link).context(format!("cannot mask {unit}"))?;
    }
    // Each machine writes its own machine-id.
    fs::write(root.join("etc/machine-id"), "").context("cannot empty /etc/machine-id")?;
    // The downloaded packages are not needed again.
    if let Ok(entries) = fs::read_dir(root.join("var/cache/apt/archives")) {
        for entry in entries.flatten() {
            if entry.path().extension().is_some_and(|e| e == "deb") {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    Ok(())
}

fn tail_lines(path: &Path, n: usize) -> String {
    let text = fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// One unit's machine: `<model>/machines/<n>/` with the overlay's `upper/`
/// and `work/`, the merged `rootfs/`, the boot log and nspawn's pid.
#[derive(Debug, Clone)]
pub struct Machine {
    pub dir: PathBuf,
}

/// How long a machine may take to reach `running`.
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a clean power-off may take before the machine is killed.
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(60);

impl Machine {
    /// The machine of unit number `number` in the model at `model_dir`.
    pub fn new(model_dir: &Path, number: u32) -> Machine {
        Machine {
            dir: model_dir.join("machines").join(number.to_string()),
        }
    }

    /// Every machine directory in the model.
    pub fn all(model_dir: &Path) -> Vec<Machine> {
        let mut machines: Vec<Machine> = fs::read_dir(model_dir.join("machines"))
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| Machine { dir: e.path() })
                    .collect()
            })
            .unwrap_or_default();
        machines.sort_by(|a, b| a.dir.cmp(&b.dir));
        machines
    }

    /// The machine's root as the host sees it (the merged overlay).
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    pub fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("nspawn.pid")
    }

    /// The machine's name (its hostname).
    pub fn name(&self) -> String {
        fs::read_to_string(self.dir.join("name"))
            .map(|n| n.trim().to_string())
            .unwrap_or_default()
    }

    /// Make the machine: its overlay on `lower`, and the files that differ
    /// per machine (machine-id; nrpe on the unit's address; the host's CA
    /// certificates and pip settings, so installers inside reach the
    /// package index as the host does).
    pub fn create(&self, lower: &Path, name: &str, address: &str) -> Result<()> {
        if self.dir.exists() {
            self.destroy()?;
        }
        for sub in ["upper", "work", "rootfs"] {
            let d = self.dir.join(sub);
            fs::create_dir_all(&d).context(format!("cannot create {}", d.display()))?;
        }
        fs::write(self.dir.join("name"), format!("{name}\n")).context("cannot write name")?;
        fs::write(self.dir.join("lower"), lower.as_os_str().as_encoded_bytes())
            .context("cannot write lower")?;
        self.mount()?;
        let root = self.rootfs();
        let put = |path: &str, contents: &[u8]| -> Result<()> {
            let file = root.join(path.trim_start_matches('/'));
            if let Some(parent) = file.parent() {
                fs::create_dir_all(parent)
                    .context(format!("cannot create {}", parent.display()))?;
            }
            fs::write(&file, contents).context(format!("cannot write {}", file.display()))
        };
        put(
            "/etc/machine-id",
            format!("{}\n", random_hex(16)).as_bytes(),
        )?;
        put("/etc/hostname", format!("{name}\n").as_bytes())?;
        put(
            "/etc/nagios/nrpe.d/00-charm-sim.cfg",
            format!(
                "# charm-sim: this machine's nrpe listens on the unit's own address\n\
                 server_address={address}\nallowed_hosts=127.0.0.0/8\n"
            )
            .as_bytes(),
        )?;
        for file in [
            "/etc/ssl/certs/ca-certificates.crt",
            "/etc/pip.conf",
            "/etc/uv/uv.toml",
        ] {
            if let Ok(contents) = fs::read(file) {
                put(file, &contents)?;
            }
        }
        if let Ok(entries) = fs::read_dir("/usr/local/share/ca-certificates") {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "crt") {
                    if let Ok(contents) = fs::read(&path) {
                        put(&path.display().to_string(), &contents)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether the overlay is mounted on `rootfs/`.
    pub fn is_mounted(&self) -> bool {
        let target = self.rootfs();
        let target = target.as_os_str().as_encoded_bytes();
        fs::read("/proc/self/mountinfo")
            .map(|info| {
                info.split(|b| *b == b'\n').any(|line| {
                    line.split(|b| *b == b' ')
                        .nth(4)
                        .is_some_and(|mount_point| mount_point == target)
                })
            })
            .unwrap_or(false)
    }

    /// Mount the overlay (if it is not mounted yet).
    pub fn mount(&self) -> Result<()> {
        if self.is_mounted() {
            return Ok(());
        }
        let lower = fs::read_to_string(self.dir.join("lower"))
            .context(format!("cannot read {}/lower", self.dir.display()))?;
        let options = format!(
            "lowerdir={lower},upperdir={},workdir={}",
            self.dir.join("upper").display(),
            self.dir.join("work").display()
        );
        let out = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &options])
            .arg(self.rootfs())
            .output()
            .context("cannot run mount")?;
        if !out.status.success() {
            return Err(sim_err!(
                "cannot mount the machine's overlay on {}: {}",
                self.rootfs().display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(())
    }

    /// nspawn's pid, if it is running.
    pub fn nspawn_pid(&self) -> Option<i32> {
        let pid: i32 = fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        is_alive(pid).then_some(pid)
    }

    /// The container's PID 1 (systemd) as the host sees it: nspawn's
    /// descendant whose pid in its own namespace is 1.
    pub fn init_pid(&self) -> Option<i32> {
        let nspawn = self.nspawn_pid()?;
        let mut frontier = vec![nspawn];
        for _depth in 0..3 {
            let children = children_of(&frontier);
            if let Some(pid) = children.iter().copied().find(|p| ns_pid_is_one(*p)) {
                return Some(pid);
            }
            frontier = children;
        }
        None
    }

    /// Boot the machine in the background (`systemd-nspawn -b`), with the
    /// model directory bind-mounted at its own path. Returns at once; see
    /// [`Machine::wait_running`].
    pub fn boot(&self, model_dir: &Path) -> Result<()> {
        if self.nspawn_pid().is_some() {
            return Ok(());
        }
        self.mount()?;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.console_log())
            .context(format!("cannot open {}", self.console_log().display()))?;
        let mut command = Command::new("systemd-nspawn");
        command
            .args(["--quiet", "--boot", "--register=no", "--keep-unit"])
            .arg(format!("--directory={}", self.rootfs().display()))
            .arg(format!("--machine={}", self.name()))
            // Not recursive: the model directory holds every machine's
            // mounted root, which no machine should see (or unmount when it
            // shuts down).
            .arg(format!(
                "--bind={}:{}:norbind",
                model_dir.display(),
                model_dir.display()
            ))
            .env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("cannot dup the console log")?)
            .stderr(log)
            // Its own process group: a Ctrl-C at charm-sim's terminal must
            // not reach the machine.
            .process_group(0);
        let child = command.spawn().context("cannot run systemd-nspawn")?;
        fs::write(self.pid_file(), format!("{}\n", child.id()))
            .context("cannot write nspawn.pid")?;
        Ok(())
    }

    /// Wait until systemd in the machine says `running` (or `degraded`);
    /// an error naming why when it does not.
    pub fn wait_running(&self) -> Result<String> {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        let mut last = String::from("(no answer yet)");
        loop {
            if self.nspawn_pid().is_none() {
                return Err(sim_err!(
                    "machine {} did not boot: systemd-nspawn exited; the end of {}:\n{}",
                    self.name(),
                    self.console_log().display(),
                    tail_lines(&self.console_log(), 15)
                ));
            }
            if let Some(pid) = self.init_pid() {
                if let Ok(out) = self
                    .enter_at(pid, Path::new("/"))
                    .args(["systemctl", "is-system-running"])
                    .stdin(Stdio::null())
                    .output()
                {
                    last = String::from_utf8_lossy(&out.stdout).trim().to_string();
                    if last == "running" || last == "degraded" {
                        return Ok(last);
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(sim_err!(
                    "machine {} did not finish booting within {} s (systemctl is-system-running: {last}); the end of {}:\n{}",
                    self.name(),
                    BOOT_TIMEOUT.as_secs(),
                    self.console_log().display(),
                    tail_lines(&self.console_log(), 15)
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn enter_at(&self, pid: i32, cwd: &Path) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--target={pid}"))
            .arg("--all")
            .arg(format!("--wdns={}", cwd.display()))
            .arg("--");
        command
    }

    /// A command that runs its arguments inside the machine (in all its
    /// namespaces, working directory `cwd`); add the program and its
    /// arguments. The environment is the command's own.
    pub fn enter(&self, cwd: &Path) -> Result<Command> {
        let pid = self.init_pid().ok_or_else(|| {
            sim_err!(
                "machine {} is not running (see {})",
                self.name(),
                self.console_log().display()
            )
        })?;
        Ok(self.enter_at(pid, cwd))
    }

    /// Power the machine off cleanly (SIGRTMIN+4 to its systemd), killing
    /// it if it does not stop in time. Nothing of it runs afterwards.
    pub fn poweroff(&self) -> Result<()> {
        let Some(nspawn) = self.nspawn_pid() else {
            return Ok(());
        };
        if let Some(init) = self.init_pid() {
            // SAFETY: kill(2) with a plain pid and signal number.
            unsafe {
                libc::kill(init, libc::SIGRTMIN() + 4);
            }
        }
        if !wait_gone(nspawn, POWEROFF_TIMEOUT) {
            // Killing PID 1 of a pid namespace kills everything in it.
            if let Some(init) = self.init_pid() {
                // SAFETY: as above.
                unsafe {
                    libc::kill(init, libc::SIGKILL);
                }
            }
            // SAFETY: as above.
            unsafe {
                libc::kill(nspawn, libc::SIGKILL);
            }
            if !wait_gone(nspawn, Duration::from_secs(10)) {
                return Err(sim_err!(
                    "machine {} (systemd-nspawn pid {nspawn}) would not stop",
                    self.name()
                ));
            }
        }
        let _ = fs::remove_file(self.pid_file());
        // nspawn leaves its propagation directory when /run is not a tmpfs.
        let _ = fs::remove_dir(Path::new("/run/systemd/nspawn/propagate").join(self.name()));
        Ok(())
    }

    /// Power off, unmount and remove the machine.
    pub fn destroy(&self) -> Result<()> {
        self.poweroff()?;
        if self.is_mounted() {
            let out = Command::new("umount")
                .arg(self.rootfs())
                .output()
                .context("cannot run umount")?;
            if !out.status.success() || self.is_mounted() {
                return Err(sim_err!(
                    "cannot unmount {}: {}",
                    self.rootfs().display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        fs::remove_dir_all(&self.dir).context(format!("cannot remove {}", self.dir.display()))
    }

    /// Append a line to the console log (what charm-sim did to the machine).
    pub fn note(&self, line: &str) {
        if let Ok(mut f) = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.console_log())
        {
            let _ = writeln!(f, "--- charm-sim: {line}");
        }
    }
}

fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    Some(after.split_whitespace().map(str::to_string).collect())
}

fn is_alive(pid: i32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().map(String::as_str) != Some("Z"))
}

/// Wait for `pid` to exit (reaping it if it is our child); whether it did.
fn wait_gone(pid: i32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        // SAFETY: waitpid on a pid with WNOHANG; fails harmlessly when it is
        // not our child.
        unsafe {
            libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG);
        }
        if !is_alive(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn children_of(parents: &[i32]) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            stat_fields(*pid)
                .and_then(|f| f.get(1).and_then(|p| p.parse::<i32>().ok()))
                .is_some_and(|ppid| parents.contains(&ppid))
        })
        .collect()
}

/// Whether `pid` is PID 1 of a namespace below ours (`NSpid: <ours> 1`).
fn ns_pid_is_one(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find(|l| l.starts_with("NSpid:")).map(|l| {
                let ids: Vec<&str> = l.split_whitespace().skip(1).collect();
                ids.len() >= 2 && ids.last() == Some(&"1")
            })
        })
        .unwrap_or(false)
}

/// The NRPE checks a machine's nrpe serves (`command[NAME]=` in
/// `/etc/nagios/nrpe.d/*.cfg`), by name.
pub fn nrpe_checks(machine: &Machine) -> Vec<String> {
    let dir = machine.rootfs().join("etc/nagios/nrpe.d");
    let mut names = Vec::new();
    let Ok(entries) = fs::read_dir(&dir) else {
        return names;
    };
    let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    files.sort();
    for file in files {
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        for line in text.lines() {
            if let Some(rest) = line.trim().strip_prefix("command[") {
                if let Some((name, _)) = rest.split_once("]=") {
                    names.push(name.to_string());
                }
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_key_follows_the_recipe() {
        let key = root_key();
        assert_eq!(key.len(), 12);
        assert!(key.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(cached_root().to_string_lossy().ends_with(&key));
    }

    #[test]
    fn nrpe_check_names_are_read_from_the_machine() {
        let dir = tempfile::tempdir().unwrap();
        let machine = Machine {
            dir: dir.path().to_path_buf(),
        };
        let nrpe = machine.rootfs().join("etc/nagios/nrpe.d");
        fs::create_dir_all(&nrpe).unwrap();
        fs::write(nrpe.join("00-charm-sim.cfg"), "server_address=127.0.1.1\n").unwrap();
        fs::write(
            nrpe.join("check_app_http.cfg"),
            "# header\ncommand[check_app_http]=/usr/lib/nagios/plugins/check_http -I 127.0.1.1\n",
        )
        .unwrap();
        assert_eq!(nrpe_checks(&machine), vec!["check_app_http".to_string()]);
    }
}
