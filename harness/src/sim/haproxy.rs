//! charm-sim's load balancer: a remote application backed by a real
//! haproxy (Debian's package) on a loopback address, added with
//! `charm-sim add-remote lb --interface http --haproxy 127.0.54.1:80`.
//!
//! Related to our `website` endpoint, it does what the haproxy charm's
//! `reverseproxy` endpoint does with units that send no `services`
//! (shared/reference/ops-and-interfaces.md §3(c)): one backend, one server
//! per unit of ours in the relation, at that unit's `private-address`
//! (`hostname` when it has none) and `port`, named `<unit>-<port>` with the
//! `/` made a `-`. Unlike that charm's default it checks each server over
//! HTTP on our application's `nagios_index_path`, the page the charm's own
//! health gate judges, so a unit that stops answering it takes no traffic.
//!
//! Whenever what haproxy should serve changes (a unit's bag, a unit or the
//! relation going, `nagios_index_path`), [`follow`] writes the new
//! configuration, has `haproxy -c` judge it, and reloads: haproxy runs in
//! master-worker mode (`-W`), SIGUSR2 makes the master start a new worker
//! with the new file, and the new worker takes the listening socket over
//! from the old one instead of binding its own (haproxy 2.6's master hands
//! it `-x sockpair@…`; the stats socket's `expose-fd listeners` is the
//! documented way and offers the same), so no connection is refused during
//! a reload. Server states (UP/DOWN) are saved to the
//! `server-state-file` before each reload, so a server found DOWN stays
//! DOWN across it instead of taking traffic until its next failed check.
//!
//! A configuration haproxy refuses is not loaded: the previous one keeps
//! serving, and the remote application's status (and `charm-sim lb-status`)
//! says why. With no server (no relation, or no unit has sent its port),
//! the frontend stays up and answers 503; the haproxy charm serves a default
//! page with 200 instead, which a load test would count as a success.
//!
//! Everything lives in `<model>/haproxy/<app>/`: the configuration, the
//! master's pid file, the stats socket and haproxy's own output. haproxy
//! runs as a daemon (it outlives the charm-sim command that started it);
//! removing the remote application or destroying the model stops it.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddrV4};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use super::store::{App, Bag, Model};
use super::{local_server, reaper, ErrorContext, Result};
use crate::sim_err;

/// Debian's haproxy.
pub const HAPROXY: &str = "/usr/sbin/haproxy";
/// The interface the load balancer speaks, and its endpoint's name (the
/// haproxy charm's requirer side of `http`).
pub const INTERFACE: &str = "http";
pub const ENDPOINT: &str = "reverseproxy";
/// The one backend's name.
const BACKEND: &str = "website";
/// Health checks: every 2 s, every 500 ms while a server's state is
/// changing, up after 2 good answers, down after 3 bad ones.
const CHECK_TIMING: &str = "inter 2s fastinter 500ms rise 2 fall 3";
/// How long a reload or a stop may take before charm-sim gives up on it.
const PATIENCE: Duration = Duration::from_secs(30);

/// The model meta key prefix of a load balancer's frontend.
const KIND: &str = "haproxy";

/// The frontend address given to `--haproxy`: an IPv4 loopback address and
/// a port.
pub fn parse_frontend(text: &str) -> Result<SocketAddrV4> {
    local_server::parse_loopback_address("--haproxy", "haproxy", "127.0.54.1:80", text)
}

/// Where one load balancer's files live.
#[derive(Debug, Clone)]
pub struct LbPaths {
    pub dir: PathBuf,
    pub config: PathBuf,
    candidate: PathBuf,
    pub pid_file: PathBuf,
    pub stats_socket: PathBuf,
    server_state: PathBuf,
    pub output: PathBuf,
    lock: PathBuf,
}

impl LbPaths {
    pub fn new(model_dir: &Path, app: &str) -> LbPaths {
        let dir = model_dir.join("haproxy").join(app);
        LbPaths {
            config: dir.join("haproxy.cfg"),
            candidate: dir.join("haproxy.cfg.new"),
            pid_file: dir.join("haproxy.pid"),
            stats_socket: dir.join("stats.sock"),
            server_state: dir.join("server-state"),
            output: dir.join("haproxy.out"),
            lock: dir.join("lock"),
            dir,
        }
    }
}

/// The application `app` is, when it is a load balancer: its frontend.
pub fn frontend_of(model: &Model, app: &str) -> Option<SocketAddrV4> {
    local_server::address_of(model, KIND, app)
}

/// The model's load balancers: (application, frontend).
pub fn load_balancers(model: &Model) -> Result<Vec<(String, SocketAddrV4)>> {
    local_server::registered(model, KIND)
}

/// A backend server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub name: String,
    pub unit: String,
    pub host: String,
    pub port: u16,
}

/// What haproxy should serve, from the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub frontend: SocketAddrV4,
    pub check_path: String,
    pub servers: Vec<Server>,
    /// Units in the relation that give no usable server, and why.
    pub skipped: Vec<String>,
}

/// A value that can sit in haproxy's configuration as one word: no
/// whitespace, no control character, no quote, backslash or `#` (haproxy
/// would read those as syntax), not empty.
fn is_config_word(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '\\' | '#'))
}

/// The server a unit's bag describes, or why there is none.
fn server_from_bag(unit: &str, bag: &Bag) -> std::result::Result<Server, String> {
    let nonempty = |key: &str| bag.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());
    let host = nonempty("private-address")
        .or_else(|| nonempty("hostname"))
        .ok_or("no private-address or hostname")?;
    let port_text = nonempty("port").ok_or("no port yet")?;
    if !is_config_word(host) {
        return Err(format!("address {host:?} is not a host name or address"));
    }
    let port = port_text
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("port {port_text:?} is not a TCP port"))?;
    Ok(Server {
        name: format!("{}-{port}", unit.replace('/', "-")),
        unit: unit.to_string(),
        host: host.to_string(),
        port,
    })
}

/// The health-check path: the related application's `nagios_index_path`,
/// `/` when it has no such option.
fn check_path(model: &Model, app: &App) -> Result<String> {
    let path = model
        .effective_config(app)?
        .get("nagios_index_path")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| "/".to_string());
    if !path.starts_with('/') || !is_config_word(&path) {
        return Err(sim_err!(
            "{}'s nagios_index_path {path:?} cannot be haproxy's health-check path \
             (it must start with \"/\" and hold no spaces, quotes, backslashes or \"#\")",
            app.name
        ));
    }
    Ok(path)
}

/// What load balancer `lb` should serve now. A relation being removed and
/// a unit being removed count as gone already: the haproxy charm hears of
/// both at once, before our unit stops its service.
pub fn desired(model: &Model, lb: &str) -> Result<Desired> {
    let frontend = frontend_of(model, lb)
        .ok_or_else(|| sim_err!("{lb:?} is not a load balancer (add it with --haproxy)"))?;
    let mut check = "/".to_string();
    let mut servers = Vec::new();
    let mut skipped = Vec::new();
    for rel in model.relations()? {
        if rel.remote_app != lb || rel.dying {
            continue;
        }
        let ours = model.require_app(&rel.app)?;
        check = check_path(model, &ours)?;
        for unit_name in model.scope(rel.id)? {
            let Some(unit) = model.unit(&unit_name)? else {
                continue;
            };
            if unit.app != rel.app || unit.dying {
                continue;
            }
            match server_from_bag(&unit.name, &model.bag(rel.id, &unit.name)?) {
                Ok(server) => servers.push(server),
                Err(why) => skipped.push(format!("{}: {why}", unit.name)),
            }
        }
    }
    Ok(Desired {
        frontend,
        check_path: check,
        servers,
        skipped,
    })
}

/// haproxy's configuration for `desired`.
pub fn render(desired: &Desired, paths: &LbPaths, lb: &str) -> String {
    let mut servers = String::new();
    for s in &desired.servers {
        let host = match s.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
            _ => s.host.clone(),
        };
        servers.push_str(&format!(
            "    server {} {host}:{} check maxconn 100\n",
            s.name, s.port
        ));
    }
    format!(
        "# charm-sim's load balancer {lb:?}; rewritten whenever the relation data changes.\n\
         global\n\
         \x20   stats socket {stats} mode 600 level admin expose-fd listeners\n\
         \x20   server-state-file {state}\n\
         \x20   maxconn 4096\n\
         \n\
         defaults\n\
         \x20   mode http\n\
         \x20   timeout connect 5s\n\
         \x20   timeout client 60s\n\
         \x20   timeout server 60s\n\
         \x20   timeout queue 20s\n\
         \x20   timeout check 5s\n\
         \x20   # A server that refuses the connection (it is stopping) is\n\
         \x20   # retried on another.\n\
         \x20   retries 3\n\
         \x20   option redispatch\n\
         \x20   load-server-state-from-file global\n\
         \n\
         frontend {lb}\n\
         \x20   bind {frontend}\n\
         \x20   default_backend {BACKEND}\n\
         \n\
         backend {BACKEND}\n\
         \x20   balance leastconn\n\
         \x20   option httpchk GET {path}\n\
         \x20   default-server {CHECK_TIMING}\n\
         {servers}",
        stats = paths.stats_socket.display(),
        state = paths.server_state.display(),
        frontend = desired.frontend,
        path = desired.check_path,
    )
}

/// Two charm-sim processes never reload the same haproxy at once.
fn lock(paths: &LbPaths) -> Result<super::file_lock::FileLock> {
    local_server::lock(&paths.dir, &paths.lock)
}

/// The master's pid, when it is running (a pid file can outlive it, and
/// its pid can be reused: the process must still be haproxy on our file).
fn running_master(paths: &LbPaths) -> Option<i32> {
    let text = fs::read_to_string(&paths.pid_file).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let config = paths.config.as_os_str().as_encoded_bytes();
    let ours = cmdline.split(|b| *b == 0).any(|arg| arg == config);
    (ours && reaper::is_alive(pid)).then_some(pid)
}

/// Ask haproxy's stats socket one command; its answer.
fn ask(paths: &LbPaths, command: &str) -> Result<String> {
    let what = || format!("haproxy's stats socket {}", paths.stats_socket.display());
    let mut stream = UnixStream::connect(&paths.stats_socket).context(what())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .context(what())?;
    stream
        .write_all(format!("{command}\n").as_bytes())
        .context(what())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).context(what())?;
    Ok(answer)
}

/// The pid of the worker answering on the stats socket.
fn worker_pid(paths: &LbPaths) -> Option<i32> {
    let info = ask(paths, "show info").ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("Pid: "))
        .and_then(|p| p.trim().parse().ok())
}

/// Have haproxy judge `paths.candidate`; its complaint when it refuses it.
fn validate(paths: &LbPaths) -> Result<()> {
    let out = Command::new(HAPROXY)
        .arg("-c")
        .arg("-f")
        .arg(&paths.candidate)
        .stdin(Stdio::null())
        .output()
        .context(format!("cannot run {HAPROXY}"))?;
    if out.status.success() {
        return Ok(());
    }
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let alerts: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("ALERT"))
        .map(str::trim)
        .collect();
    let shown = if alerts.is_empty() {
        text.trim().to_string()
    } else {
        alerts.join("\n")
    };
    Err(sim_err!(
        "haproxy -c refused the new configuration ({}):\n{shown}",
        paths.candidate.display()
    ))
}

/// Start haproxy (master-worker, daemon) on `paths.config`.
fn start(paths: &LbPaths) -> Result<()> {
    let output = fs::File::create(&paths.output)
        .context(format!("cannot create {}", paths.output.display()))?;
    let errors = output
        .try_clone()
        .context(format!("cannot open {}", paths.output.display()))?;
    // Output to a file, not a pipe: the daemon keeps what it inherits, and
    // a pipe would make us wait for it.
    let status = Command::new(HAPROXY)
        .args(["-W", "-D", "-f"])
        .arg(&paths.config)
        .arg("-p")
        .arg(&paths.pid_file)
        .current_dir(&paths.dir)
        .stdin(Stdio::null())
        .stdout(output)
        .stderr(errors)
        .status()
        .context(format!("cannot run {HAPROXY}"))?;
    if !status.success() {
        let said = fs::read_to_string(&paths.output).unwrap_or_default();
        return Err(sim_err!(
            "haproxy did not start ({status}):\n{}",
            said.trim()
        ));
    }
    wait_for(|| worker_pid(paths).is_some()).map_err(|_| {
        sim_err!(
            "haproxy started but its stats socket {} does not answer",
            paths.stats_socket.display()
        )
    })
}

fn wait_for(done: impl FnMut() -> bool) -> std::result::Result<(), ()> {
    local_server::wait_for(PATIENCE, Duration::from_millis(50), done)
}

/// Make the running haproxy serve `paths.config` (already in place): save
/// the servers' states, SIGUSR2 the master, and wait until a new worker
/// answers on the stats socket.
fn reload(paths: &LbPaths, master: i32) -> Result<()> {
    let old_worker = worker_pid(paths);
    if let Ok(states) = ask(paths, "show servers state") {
        fs::write(&paths.server_state, states)
            .context(format!("cannot write {}", paths.server_state.display()))?;
    }
    // SAFETY: kill(2) with a plain pid and signal number.
    if unsafe { libc::kill(master, libc::SIGUSR2) } != 0 {
        return Err(sim_err!("cannot signal haproxy's master (pid {master})"));
    }
    wait_for(|| matches!(worker_pid(paths), Some(pid) if Some(pid) != old_worker)).map_err(|_| {
        sim_err!(
            "haproxy's master (pid {master}) did not start a worker with the new configuration \
                 within {} s (its output: {})",
            PATIENCE.as_secs(),
            paths.output.display()
        )
    })
}

/// Bring load balancer `lb` to what the model says, starting haproxy if it
/// is not running. Returns whether anything changed.
pub fn converge(model: &Model, lb: &str) -> Result<bool> {
    let paths = LbPaths::new(model.dir(), lb);
    let _lock = lock(&paths)?;
    let desired = desired(model, lb)?;
    let config = render(&desired, &paths, lb);
    let master = running_master(&paths);
    let unchanged = fs::read_to_string(&paths.config).ok().as_deref() == Some(config.as_str());
    if unchanged && master.is_some() {
        return Ok(false);
    }
    fs::write(&paths.candidate, &config)
        .context(format!("cannot write {}", paths.candidate.display()))?;
    let judged = validate(&paths);
    if judged.is_err() {
        let _ = fs::remove_file(&paths.candidate);
    }
    judged?;
    fs::rename(&paths.candidate, &paths.config)
        .context(format!("cannot write {}", paths.config.display()))?;
    match master {
        Some(pid) => reload(&paths, pid)?,
        None => start(&paths)?,
    }
    Ok(true)
}

/// Follow every load balancer after a step of the model: reload those whose
/// configuration changed. A refusal or failure leaves the previous
/// configuration serving; it becomes the remote application's status (and
/// is printed), not the command's error, since our hooks went fine.
pub fn follow(model: &Model) -> Result<()> {
    for (lb, frontend) in load_balancers(model)? {
        let outcome = converge(model, &lb);
        let app = model.require_app(&lb)?;
        match outcome {
            Ok(changed) => {
                let serving = desired(model, &lb).map(|d| d.servers.len()).unwrap_or(0);
                let message = format!(
                    "haproxy on {frontend}, {serving} server{}",
                    if serving == 1 { "" } else { "s" }
                );
                if changed || app.status.current != "active" || app.status.message != message {
                    model.set_app_status(&lb, "active", &message)?;
                }
            }
            Err(e) => {
                eprintln!("charm-sim: {lb}: the previous haproxy configuration keeps serving: {e}");
                model.set_app_status(&lb, "blocked", &e.to_string())?;
            }
        }
    }
    Ok(())
}

/// Record `lb` as a load balancer on `frontend` and start its haproxy
/// (empty backend). Checks haproxy is installed and the socket path fits.
pub fn register(model: &Model, lb: &str, frontend: SocketAddrV4) -> Result<()> {
    if !Path::new(HAPROXY).exists() {
        return Err(sim_err!(
            "--haproxy needs Debian's haproxy ({HAPROXY} is missing; apt-get install haproxy)"
        ));
    }
    let paths = LbPaths::new(model.dir(), lb);
    // sun_path holds 108 bytes with its terminating NUL.
    if paths.stats_socket.as_os_str().len() > 107 {
        return Err(sim_err!(
            "the model directory's path is too long for haproxy's stats socket {} \
             (a unix socket path holds at most 107 bytes); use a shorter --model",
            paths.stats_socket.display()
        ));
    }
    for (other, address) in load_balancers(model)? {
        if address == frontend {
            return Err(sim_err!(
                "--haproxy {frontend}: load balancer {other:?} already listens there"
            ));
        }
    }
    model.set_meta(&local_server::meta_key(KIND, lb), &frontend.to_string())?;
    fs::create_dir_all(&paths.dir).context(format!("cannot create {}", paths.dir.display()))?;
    // No states to carry over yet: the file's format version alone, which
    // haproxy reads without a warning.
    fs::write(&paths.server_state, "1\n")
        .context(format!("cannot write {}", paths.server_state.display()))?;
    converge(model, lb)?;
    follow(model)
}

/// Stop `lb`'s haproxy: a soft stop (SIGUSR1: finish what is in flight,
/// accept nothing new), then whatever is left is ended by the reaper.
/// Forgets it as a load balancer and removes its files.
pub fn stop(model: &Model, lb: &str) -> Result<()> {
    let paths = LbPaths::new(model.dir(), lb);
    if paths.dir.exists() {
        let _lock = lock(&paths)?;
        if let Some(master) = running_master(&paths) {
            // SAFETY: kill(2) with a plain pid and signal number.
            unsafe {
                libc::kill(master, libc::SIGUSR1);
            }
            let _ = wait_for(|| reaper::processes_under(&paths.dir).is_empty());
        }
        reaper::end_processes_under(&paths.dir)?;
    }
    if paths.dir.exists() {
        fs::remove_dir_all(&paths.dir).context(format!("cannot remove {}", paths.dir.display()))?;
    }
    model.delete_meta(&local_server::meta_key(KIND, lb))
}

/// A backend server as haproxy's stats show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    pub name: String,
    pub address: String,
    /// `UP`, `DOWN`, `UP 1/3` (going down), `MAINT`, …
    pub state: String,
    /// The last check's result, e.g. `L7OK/200` or `L7STS/500`.
    pub check: String,
}

/// Parse `show stat`'s CSV: the servers of our backend.
fn parse_stat(csv: &str) -> Vec<ServerState> {
    let mut lines = csv.lines();
    let Some(header) = lines.next().and_then(|h| h.strip_prefix("# ")) else {
        return Vec::new();
    };
    let columns: BTreeMap<&str, usize> = header
        .split(',')
        .enumerate()
        .map(|(i, name)| (name, i))
        .collect();
    let field = |fields: &[&str], name: &str| -> String {
        columns
            .get(name)
            .and_then(|i| fields.get(*i))
            .map(|v| v.to_string())
            .unwrap_or_default()
    };
    lines
        .map(|line| line.split(',').collect::<Vec<&str>>())
        .filter(|f| {
            field(f, "pxname") == BACKEND && !matches!(field(f, "svname").as_str(), "BACKEND" | "")
        })
        .map(|f| {
            let code = field(&f, "check_code");
            let status = field(&f, "check_status");
            ServerState {
                name: field(&f, "svname"),
                address: field(&f, "addr"),
                state: field(&f, "status"),
                check: if code.is_empty() {
                    status
                } else {
                    format!("{status}/{code}")
                },
            }
        })
        .collect()
}

/// What `charm-sim lb-status` reports: the frontend, whether haproxy runs,
/// the application's status and each backend server's state.
pub fn lb_status(model: &Model, lb: &str) -> Result<Value> {
    let app = model.require_app(lb)?;
    let frontend = frontend_of(model, lb).ok_or_else(|| {
        sim_err!("{lb:?} is not a load balancer (add one with `charm-sim add-remote NAME --interface http --haproxy ADDRESS:PORT`)")
    })?;
    let paths = LbPaths::new(model.dir(), lb);
    let master = running_master(&paths);
    let servers = match master {
        Some(_) => parse_stat(&ask(&paths, "show stat")?),
        None => Vec::new(),
    };
    let desired = desired(model, lb).ok();
    Ok(json!({
        "application": lb,
        "frontend": frontend.to_string(),
        "running": master.is_some(),
        "master-pid": master,
        "status": app.status.current,
        "message": app.status.message,
        "health-check": desired.as_ref().map(|d| format!("GET {} ({CHECK_TIMING})", d.check_path)),
        "servers": servers.iter().map(|s| json!({
            "name": s.name,
            "address": s.address,
            "state": s.state,
            "check": s.check,
        })).collect::<Vec<_>>(),
        "skipped-units": desired.map(|d| d.skipped).unwrap_or_default(),
        "config": paths.config.display().to_string(),
        "stats-socket": paths.stats_socket.display().to_string(),
    }))
}

/// `lb_status` as lines for people.
pub fn lb_status_text(status: &Value) -> String {
    let text = |key: &str| status[key].as_str().unwrap_or_default().to_string();
    // An active status's message repeats the first line; any other says
    // what went wrong.
    let problem = match text("status").as_str() {
        "active" => String::new(),
        other => format!(", {other}: {}", text("message")),
    };
    let mut out = format!(
        "{}: haproxy on {} ({}){problem}\n",
        text("application"),
        text("frontend"),
        match status["master-pid"].as_i64() {
            Some(pid) => format!("master pid {pid}"),
            None => "not running".to_string(),
        },
    );
    out.push_str(&format!(
        "backend {BACKEND}: health check {}\n",
        text("health-check")
    ));
    let servers = status["servers"].as_array().cloned().unwrap_or_default();
    if servers.is_empty() {
        out.push_str("  (no servers: haproxy answers 503)\n");
    }
    for s in servers {
        let field = |k: &str| s[k].as_str().unwrap_or_default().to_string();
        out.push_str(&format!(
            "  {}  {}  {}  {}\n",
            field("name"),
            field("address"),
            field("state"),
            field("check")
        ));
    }
    for skipped in status["skipped-units"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        out.push_str(&format!(
            "  not a server: {}\n",
            skipped.as_str().unwrap_or_default()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bag(pairs: &[(&str, &str)]) -> Bag {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn frontends_are_loopback_address_and_port() {
        assert_eq!(
            parse_frontend("127.0.54.1:80").unwrap(),
            "127.0.54.1:80".parse::<SocketAddrV4>().unwrap()
        );
        for (bad, says) in [
            ("127.0.54.1", "expected an IPv4 loopback address and a port"),
            (
                "localhost:80",
                "expected an IPv4 loopback address and a port",
            ),
            ("10.0.0.1:80", "10.0.0.1 is not"),
            ("127.0.0.1:0", "give the port"),
        ] {
            let e = parse_frontend(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_unit_bag_gives_a_server_named_like_the_haproxy_charm_does() {
        let server = server_from_bag(
            "wsgi-app/1",
            &bag(&[
                ("hostname", "10.1.1.1"),
                ("private-address", "127.0.54.2"),
                ("port", "8080"),
            ]),
        )
        .unwrap();
        assert_eq!(server.name, "wsgi-app-1-8080");
        assert_eq!((server.host.as_str(), server.port), ("127.0.54.2", 8080));
        let by_hostname =
            server_from_bag("a/0", &bag(&[("hostname", "web.internal"), ("port", "80")])).unwrap();
        assert_eq!(by_hostname.host, "web.internal");
    }

    #[test]
    fn a_bag_that_could_rewrite_the_configuration_gives_no_server() {
        for (pairs, why) in [
            (&[("private-address", "127.0.0.1")][..], "no port yet"),
            (
                &[
                    ("private-address", "127.0.0.1"),
                    ("port", "80\n    server x"),
                ][..],
                "is not a TCP port",
            ),
            (
                &[("private-address", "1.2.3.4 backup"), ("port", "80")][..],
                "is not a host name",
            ),
            (
                &[("private-address", "127.0.0.1"), ("port", "0")][..],
                "is not a TCP port",
            ),
        ] {
            let e = server_from_bag("a/0", &bag(pairs)).unwrap_err();
            assert!(e.contains(why), "{pairs:?}: {e}");
        }
    }

    #[test]
    fn the_configuration_has_one_checked_server_per_unit() {
        let paths = LbPaths::new(Path::new("/m"), "lb");
        let desired = Desired {
            frontend: "127.0.54.200:8054".parse().unwrap(),
            check_path: "/health".into(),
            servers: vec![Server {
                name: "wsgi-app-0-8080".into(),
                unit: "wsgi-app/0".into(),
                host: "127.0.54.1".into(),
                port: 8080,
            }],
            skipped: vec![],
        };
        let config = render(&desired, &paths, "lb");
        for line in [
            "    stats socket /m/haproxy/lb/stats.sock mode 600 level admin expose-fd listeners",
            "    bind 127.0.54.200:8054",
            "    option httpchk GET /health",
            "    server wsgi-app-0-8080 127.0.54.1:8080 check maxconn 100",
        ] {
            assert!(config.lines().any(|l| l == line), "{line:?} in\n{config}");
        }
    }

    #[test]
    fn stats_csv_gives_each_server_of_the_backend() {
        let csv = "# pxname,svname,qcur,status,check_status,check_code,addr,\n\
                   lb,FRONTEND,,OPEN,,,,\n\
                   website,wsgi-app-0-8080,0,UP,L7OK,200,127.0.54.1:8080,\n\
                   website,wsgi-app-1-8080,0,DOWN,L7STS,500,127.0.54.2:8080,\n\
                   website,BACKEND,0,UP,,,,\n";
        let servers = parse_stat(csv);
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[1].state, "DOWN");
        assert_eq!(servers[1].check, "L7STS/500");
        assert_eq!(servers[0].address, "127.0.54.1:8080");
    }
}
