//! charm-sim's observability collector: a remote application emulating
//! the opentelemetry-collector subordinate on the `cos_agent` interface,
//! backed by a real Prometheus (Debian's package) on a loopback address,
//! added with `charm-sim add-remote cos --interface cos_agent --prometheus
//! 127.0.65.200:9090`.
//!
//! The collector is a subordinate: related to our `cos-agent` endpoint
//! (container scope), each unit of ours gets a collector unit of its own on
//! its machine (same address), made with the relation or with the unit,
//! seen by that unit only, and gone when the unit leaves the relation
//! (shared/reference/modern-interfaces.md §5). Each collector reads its
//! principal's unit bag key `config` (§5.1) and does what §5.3 says the
//! real one does, except that it feeds one Prometheus directly rather than
//! scraping locally and remote-writing: every `metrics_scrape_jobs` entry
//! becomes a scrape job of that unit, `localhost` in its targets is the
//! unit's own machine (its loopback address here), and each static config
//! gets the Juju topology labels; `metrics_alert_rules` become a rule file
//! Prometheus loads (the collector's leader forwards one set per
//! application).
//!
//! Whenever that changes, [`follow`] renders the configuration and rule
//! files into `next/`, has `promtool check config` judge them (it loads the
//! rule files too), swaps them in as `live/` and asks Prometheus to reload
//! (`POST /-/reload`, enabled by `--web.enable-lifecycle`, which answers
//! only once the reload is done or refused). A configuration promtool
//! refuses is not loaded: the previous one keeps serving, and the remote
//! application's status (and `charm-sim prom-status`) says why, as with the
//! load balancer ([`super::haproxy`]). Relation data that is not what §5.1
//! describes (a `config` that is not JSON, a job that is not an object) is
//! left out with a message naming the unit, never a failed command.
//!
//! Everything lives in `<model>/prometheus/<app>/`: `live/` (the
//! configuration and `rules/`), `data/` (the TSDB), the pid file and
//! Prometheus's own output. Prometheus runs in a session of its own (it
//! outlives the charm-sim command that started it); its command line names
//! the model directory, so the reaper ends it with the model, and
//! `remove-remote` and `destroy` stop it first.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::store::{Model, Relation};
use super::{local_server, reaper, ErrorContext, Result, SimError};
use crate::sim_err;

/// Debian's Prometheus and its promtool.
pub const PROMETHEUS: &str = "/usr/bin/prometheus";
pub const PROMTOOL: &str = "/usr/bin/promtool";
/// The interface the collector speaks, and its endpoint's name.
pub const INTERFACE: &str = "cos_agent";
pub const ENDPOINT: &str = "cos-agent";
/// Scrape and rule evaluation every 2 s: tests see a change within
/// seconds, and a loaded machine's exporter still answers within the
/// timeout (which may not exceed the interval).
pub const SCRAPE_INTERVAL: &str = "2s";
/// How long a start, reload or stop may take before charm-sim gives up.
const PATIENCE: Duration = Duration::from_secs(60);

/// The model meta key prefix of a collector's Prometheus address.
const KIND: &str = "prometheus";

/// The address given to `--prometheus`: an IPv4 loopback address and a
/// port.
pub fn parse_listen(text: &str) -> Result<SocketAddrV4> {
    local_server::parse_loopback_address("--prometheus", "Prometheus", "127.0.65.200:9090", text)
}

/// Where one collector's Prometheus keeps its files.
#[derive(Debug, Clone)]
pub struct PromPaths {
    pub dir: PathBuf,
    /// The configuration Prometheus serves, with its `rules/`.
    pub live: PathBuf,
    next: PathBuf,
    previous: PathBuf,
    /// The last rendering promtool refused, and why (so it is judged once).
    refused: PathBuf,
    /// The files Prometheus last loaded (started with, or reloaded).
    loaded: PathBuf,
    pub data: PathBuf,
    pub pid_file: PathBuf,
    pub output: PathBuf,
    lock: PathBuf,
}

impl PromPaths {
    pub fn new(model_dir: &Path, app: &str) -> PromPaths {
        let dir = model_dir.join("prometheus").join(app);
        PromPaths {
            live: dir.join("live"),
            next: dir.join("next"),
            previous: dir.join("previous"),
            refused: dir.join("refused.json"),
            loaded: dir.join("loaded.json"),
            data: dir.join("data"),
            pid_file: dir.join("prometheus.pid"),
            output: dir.join("prometheus.out"),
            lock: dir.join("lock"),
            dir,
        }
    }

    pub fn config(&self) -> PathBuf {
        self.live.join(CONFIG_FILE)
    }
}

const CONFIG_FILE: &str = "prometheus.yml";

/// The application `app` is, when it is a collector: its Prometheus's
/// address.
pub fn address_of(model: &Model, app: &str) -> Option<SocketAddrV4> {
    local_server::address_of(model, KIND, app)
}

/// The model's collectors: (application, Prometheus address).
pub fn collectors(model: &Model) -> Result<Vec<(String, SocketAddrV4)>> {
    local_server::registered(model, KIND)
}

// ----- the collector's units ------------------------------------------------------

/// Give `principal` (a unit of ours in `rel`) its collector unit, on its
/// machine, in the relation's scope with the collector's data; nothing
/// when `rel` is not to a collector or it has one already.
pub fn ensure_collector(model: &Model, rel: &Relation, principal: &str) -> Result<()> {
    if address_of(model, &rel.remote_app).is_none() {
        return Ok(());
    }
    if let Some(existing) = collector_of(model, &rel.remote_app, principal)? {
        let address = model.require_unit(principal)?.address;
        model.enter_scope(rel.id, &existing, &address)?;
        return Ok(());
    }
    let app = model.require_app(&rel.remote_app)?;
    let address = model.require_unit(principal)?.address;
    let unit = model.add_unit(&app)?;
    model.set_unit_address(&unit.name, &address)?;
    model.set_principal(&unit.name, principal)?;
    model.enter_scope(rel.id, &unit.name, &address)?;
    // §5.2: an OTLP receiver per tracing protocol asked for; we serve none.
    let receivers = [("receivers".to_string(), "[]".to_string())].into();
    model.update_bag(rel.id, &unit.name, &receivers)?;
    Ok(())
}

/// The collector unit of application `app` paired with `principal`.
fn collector_of(model: &Model, app: &str, principal: &str) -> Result<Option<String>> {
    for unit in model.units(app)? {
        if model.principal_of(&unit.name)?.as_deref() == Some(principal) {
            return Ok(Some(unit.name));
        }
    }
    Ok(None)
}

/// `principal` has left relation `rel`: its collector unit goes too, as a
/// subordinate does with the relation that made it.
pub fn principal_left(model: &Model, rel: &Relation, principal: &str) -> Result<()> {
    if address_of(model, &rel.remote_app).is_none() {
        return Ok(());
    }
    if let Some(unit) = collector_of(model, &rel.remote_app, principal)? {
        model.delete_unit(&unit)?;
    }
    Ok(())
}

// ----- rendering (pure) -----------------------------------------------------------

/// The model's part of the Juju topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub model: String,
    pub model_uuid: String,
}

/// One unit of ours as its collector sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub unit: String,
    pub app: String,
    pub charm: String,
    /// Its machine's address: where its `localhost` is.
    pub address: String,
    /// Its bag's `config`, when it has written one.
    pub config: Option<String>,
}

/// A scrape job the configuration holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Unique in the configuration: the unit's job name and the unit.
    pub name: String,
    /// The `job` label: the job name the unit gave.
    pub job: String,
    pub unit: String,
    pub targets: Vec<String>,
}

/// What the collectors make of their units' data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Files relative to the configuration's directory: `prometheus.yml`
    /// and `rules/<application>.yml`.
    pub files: BTreeMap<String, String>,
    pub jobs: Vec<Job>,
    /// What was left out, and why, naming the unit.
    pub skipped: Vec<String>,
}

/// Hosts that mean the unit's own machine to a collector on it.
fn is_local_host(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

/// `host:port` with a local host made the unit's address.
fn rewrite_target(target: &str, address: &str) -> String {
    match target.rsplit_once(':') {
        Some((host, port)) if is_local_host(host) => format!("{address}:{port}"),
        None if is_local_host(target) => address.to_string(),
        _ => target.to_string(),
    }
}

/// The scrape jobs of one unit's `config`, with what was left out.
fn unit_jobs(topology: &Topology, source: &Source, skipped: &mut Vec<String>) -> Vec<(Job, Value)> {
    let unit = &source.unit;
    let Some(text) = &source.config else {
        return Vec::new();
    };
    let config: Value = match serde_json::from_str(text) {
        Ok(Value::Object(config)) => Value::Object(config),
        Ok(_) => {
            skipped.push(format!("{unit}: `config` is not a JSON object"));
            return Vec::new();
        }
        Err(e) => {
            skipped.push(format!("{unit}: `config` is not JSON ({e})"));
            return Vec::new();
        }
    };
    let entries = match config.get("metrics_scrape_jobs") {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(entries)) => entries.clone(),
        Some(_) => {
            skipped.push(format!("{unit}: `metrics_scrape_jobs` is not a list"));
            return Vec::new();
        }
    };
    let labels = [
        ("juju_model", topology.model.as_str()),
        ("juju_model_uuid", topology.model_uuid.as_str()),
        ("juju_application", source.app.as_str()),
        ("juju_unit", unit.as_str()),
        ("juju_charm", source.charm.as_str()),
    ];
    let mut jobs = Vec::new();
    for (index, entry) in entries.into_iter().enumerate() {
        let Value::Object(mut entry) = entry else {
            skipped.push(format!(
                "{unit}: metrics_scrape_jobs[{index}] is not an object"
            ));
            continue;
        };
        let job = match entry.get("job_name") {
            Some(Value::String(name)) if !name.is_empty() => name.clone(),
            None => format!("job{index}"),
            Some(_) => {
                skipped.push(format!(
                    "{unit}: metrics_scrape_jobs[{index}].job_name is not a name"
                ));
                continue;
            }
        };
        let statics = match entry.remove("static_configs") {
            None => Vec::new(),
            Some(Value::Array(statics)) => statics,
            Some(_) => {
                skipped.push(format!("{unit}: job {job:?}: static_configs is not a list"));
                continue;
            }
        };
        let mut targets = Vec::new();
        let mut rewritten = Vec::new();
        let mut bad = None;
        for group in statics {
            let Value::Object(mut group) = group else {
                bad = Some("a static config is not an object");
                break;
            };
            let Some(Value::Array(list)) = group.remove("targets") else {
                bad = Some("a static config has no list of targets");
                break;
            };
            let mut these = Vec::new();
            for target in list {
                let Value::String(target) = target else {
                    bad = Some("a target is not a string");
                    break;
                };
                these.push(rewrite_target(&target, &source.address));
            }
            let mut group_labels = match group.remove("labels") {
                Some(Value::Object(l)) => l,
                None => Map::new(),
                Some(_) => {
                    bad = Some("a static config's labels are not an object");
                    break;
                }
            };
            // The `job` label as the unit named it: job names must be
            // unique in one configuration, and one Prometheus here stands
            // for what every unit's collector sends on.
            group_labels
                .entry("job".to_string())
                .or_insert_with(|| json!(job));
            for (key, value) in labels {
                group_labels.insert(key.to_string(), json!(value));
            }
            targets.extend(these.iter().cloned());
            group.insert("targets".into(), json!(these));
            group.insert("labels".into(), Value::Object(group_labels));
            rewritten.push(Value::Object(group));
        }
        if let Some(why) = bad {
            skipped.push(format!("{unit}: job {job:?}: {why}"));
            continue;
        }
        let name = format!("{job}/{unit}");
        entry.insert("job_name".into(), json!(name));
        entry.insert("static_configs".into(), Value::Array(rewritten));
        jobs.push((
            Job {
                name,
                job,
                unit: unit.clone(),
                targets,
            },
            Value::Object(entry),
        ));
    }
    jobs
}

/// One application's alert rules: `metrics_alert_rules` of its first unit
/// that has groups (every unit sends the application's rules; the real
/// collector's leader forwards one set).
fn app_rules(sources: &[&Source], skipped: &mut Vec<String>) -> Option<Value> {
    for source in sources {
        let Some(text) = &source.config else {
            continue;
        };
        let Ok(config) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        match config.get("metrics_alert_rules") {
            None | Some(Value::Null) => {}
            Some(Value::Object(rules)) if rules.is_empty() => {}
            Some(Value::Object(rules)) => match rules.get("groups") {
                Some(Value::Array(groups)) if groups.is_empty() => {}
                Some(Value::Array(_)) => return Some(Value::Object(rules.clone())),
                _ => skipped.push(format!(
                    "{}: `metrics_alert_rules` has no list of groups",
                    source.unit
                )),
            },
            Some(_) => skipped.push(format!(
                "{}: `metrics_alert_rules` is not an object",
                source.unit
            )),
        }
    }
    None
}

fn yaml(value: &Value) -> String {
    // A serde_json Value always has a YAML form.
    serde_yaml_ng::to_string(value).unwrap_or_default()
}

/// Prometheus's configuration and rule files for `sources` (every unit of
/// ours related to the collector, in order).
pub fn render(topology: &Topology, sources: &[Source]) -> Rendered {
    let mut skipped = Vec::new();
    let mut jobs = Vec::new();
    let mut scrape_configs = Vec::new();
    for source in sources {
        for (job, config) in unit_jobs(topology, source, &mut skipped) {
            jobs.push(job);
            scrape_configs.push(config);
        }
    }
    let mut by_app: BTreeMap<&str, Vec<&Source>> = BTreeMap::new();
    for source in sources {
        by_app.entry(&source.app).or_default().push(source);
    }
    let mut files = BTreeMap::new();
    for (app, units) in by_app {
        if let Some(rules) = app_rules(&units, &mut skipped) {
            files.insert(format!("rules/{app}.yml"), yaml(&rules));
        }
    }
    let config = json!({
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            "scrape_timeout": SCRAPE_INTERVAL,
            "evaluation_interval": SCRAPE_INTERVAL,
        },
        // Relative to this file: judged in `next/`, served from `live/`.
        "rule_files": ["rules/*.yml"],
        "scrape_configs": scrape_configs,
    });
    files.insert(
        CONFIG_FILE.to_string(),
        format!(
            "# charm-sim's collector: rewritten whenever our units' cos-agent data changes.\n{}",
            yaml(&config)
        ),
    );
    Rendered {
        files,
        jobs,
        skipped,
    }
}

// ----- the model's side -------------------------------------------------------------

/// What collector `app`'s Prometheus should load now. A relation being
/// removed and a unit being removed count as gone already, as for the load
/// balancer.
pub fn desired(model: &Model, app: &str) -> Result<Rendered> {
    let topology = Topology {
        model: model.name()?,
        model_uuid: model.uuid()?,
    };
    let mut sources = Vec::new();
    for rel in model.relations()? {
        if rel.remote_app != app || rel.dying {
            continue;
        }
        let ours = model.require_app(&rel.app)?;
        let charm = ours.meta().map(|m| m.name.clone()).unwrap_or_default();
        for unit_name in model.scope(rel.id)? {
            let Some(unit) = model.unit(&unit_name)? else {
                continue;
            };
            if unit.app != rel.app || unit.dying {
                continue;
            }
            sources.push(Source {
                config: model.bag(rel.id, &unit.name)?.get("config").cloned(),
                unit: unit.name,
                app: rel.app.clone(),
                charm: charm.clone(),
                address: unit.address,
            });
        }
    }
    Ok(render(&topology, &sources))
}

fn lock(paths: &PromPaths) -> Result<super::file_lock::FileLock> {
    local_server::lock(&paths.dir, &paths.lock)
}

/// The files under `dir` as [`Rendered::files`] names them.
fn read_tree(dir: &Path) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    if let Ok(text) = fs::read_to_string(dir.join(CONFIG_FILE)) {
        files.insert(CONFIG_FILE.to_string(), text);
    }
    if let Ok(entries) = fs::read_dir(dir.join("rules")) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Ok(text) = fs::read_to_string(entry.path()) {
                files.insert(format!("rules/{name}"), text);
            }
        }
    }
    files
}

fn write_tree(dir: &Path, files: &BTreeMap<String, String>) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).context(format!("cannot clear {}", dir.display()))?;
    }
    fs::create_dir_all(dir.join("rules")).context(format!("cannot create {}", dir.display()))?;
    for (name, text) in files {
        let path = dir.join(name);
        fs::write(&path, text).context(format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// The running Prometheus's pid (a pid file can outlive it, and its pid
/// can be reused: the process must still be Prometheus on our file).
fn running(paths: &PromPaths) -> Option<i32> {
    let text = fs::read_to_string(&paths.pid_file).ok()?;
    let pid: i32 = text.trim().parse().ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let config_arg = format!("--config.file={}", paths.config().display());
    let ours = cmdline
        .split(|b| *b == 0)
        .any(|arg| arg == config_arg.as_bytes());
    (ours && reaper::is_alive(pid)).then_some(pid)
}

/// Have promtool judge `paths.next`; its complaint when it refuses.
fn validate(paths: &PromPaths) -> Result<()> {
    let out = Command::new(PROMTOOL)
        .args(["check", "config"])
        .arg(paths.next.join(CONFIG_FILE))
        .stdin(Stdio::null())
        .output()
        .context(format!("cannot run {PROMTOOL}"))?;
    if out.status.success() {
        return Ok(());
    }
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let failures: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.contains("FAILED") || l.starts_with('-'))
        .collect();
    let shown = if failures.is_empty() {
        text.trim().to_string()
    } else {
        failures.join("\n")
    };
    Err(sim_err!(
        "promtool check config refused the new configuration:\n{shown}"
    ))
}

/// A small HTTP/1.0 exchange with Prometheus: the status and the body.
/// HTTP/1.0, so the answer is never chunked and ends with the connection.
pub fn http(address: SocketAddrV4, method: &str, path: &str) -> Result<(u16, String)> {
    let what = || format!("Prometheus on {address}: {method} {path}");
    let mut stream =
        TcpStream::connect_timeout(&address.into(), Duration::from_secs(5)).context(what())?;
    stream.set_read_timeout(Some(PATIENCE)).context(what())?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {address}\r\nContent-Length: 0\r\n\r\n"
    )
    .context(what())?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).context(what())?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| sim_err!("{}: not an HTTP answer: {head:?}", what()))?;
    Ok((status, body.to_string()))
}

fn wait_for(done: impl FnMut() -> bool) -> std::result::Result<(), ()> {
    local_server::wait_for(PATIENCE, Duration::from_millis(100), done)
}

/// The end of Prometheus's output, for an error.
fn output_tail(paths: &PromPaths) -> String {
    let text = fs::read_to_string(&paths.output).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

/// Start Prometheus on `paths.live`, in a session of its own, and wait
/// until it is ready.
fn start(paths: &PromPaths, address: SocketAddrV4) -> Result<()> {
    let output = fs::File::create(&paths.output)
        .context(format!("cannot create {}", paths.output.display()))?;
    let errors = output
        .try_clone()
        .context(format!("cannot open {}", paths.output.display()))?;
    let mut command = Command::new(PROMETHEUS);
    command
        .arg(format!("--config.file={}", paths.config().display()))
        .arg(format!("--storage.tsdb.path={}", paths.data.display()))
        .arg(format!("--web.listen-address={address}"))
        .arg("--web.enable-lifecycle")
        .arg("--storage.tsdb.retention.time=1d")
        .current_dir(&paths.dir)
        .stdin(Stdio::null())
        .stdout(output)
        .stderr(errors);
    // SAFETY: setsid(2) is async-signal-safe; between fork and exec we
    // call nothing else.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .context(format!("cannot run {PROMETHEUS}"))?;
    fs::write(&paths.pid_file, child.id().to_string())
        .context(format!("cannot write {}", paths.pid_file.display()))?;
    let mut exited = None;
    let ready = wait_for(|| {
        if let Ok(Some(status)) = child.try_wait() {
            exited = Some(status);
            return true;
        }
        matches!(http(address, "GET", "/-/ready"), Ok((200, _)))
    });
    if let Some(status) = exited {
        return Err(sim_err!(
            "Prometheus did not start ({status}):\n{}",
            output_tail(paths)
        ));
    }
    ready.map_err(|_| {
        sim_err!(
            "Prometheus started but {address}/-/ready did not answer 200 within {} s (its output: {})",
            PATIENCE.as_secs(),
            paths.output.display()
        )
    })
}

/// Make the running Prometheus load `paths.live`.
fn reload(address: SocketAddrV4) -> Result<()> {
    match http(address, "POST", "/-/reload")? {
        (200, _) => Ok(()),
        (status, body) => Err(sim_err!(
            "Prometheus refused to reload (HTTP {status}): {}",
            body.trim()
        )),
    }
}

/// Put `paths.next` in place of `paths.live`.
fn swap_in(paths: &PromPaths) -> Result<()> {
    if paths.previous.exists() {
        fs::remove_dir_all(&paths.previous)
            .context(format!("cannot clear {}", paths.previous.display()))?;
    }
    if paths.live.exists() {
        fs::rename(&paths.live, &paths.previous)
            .context(format!("cannot move {}", paths.live.display()))?;
    }
    fs::rename(&paths.next, &paths.live)
        .context(format!("cannot move {}", paths.next.display()))?;
    if paths.previous.exists() {
        fs::remove_dir_all(&paths.previous)
            .context(format!("cannot clear {}", paths.previous.display()))?;
    }
    Ok(())
}

/// Bring collector `app`'s Prometheus to what the model says, starting it
/// if it is not running. Returns whether anything changed.
pub fn converge(model: &Model, app: &str) -> Result<bool> {
    let address = address_of(model, app)
        .ok_or_else(|| sim_err!("{app:?} is not a collector (add it with --prometheus)"))?;
    let paths = PromPaths::new(model.dir(), app);
    let _lock = lock(&paths)?;
    let rendered = desired(model, app)?;
    let pid = running(&paths);
    // What Prometheus itself took, not what is on disk: a reload it
    // refused is asked for again rather than taken as done.
    let loaded: Option<BTreeMap<String, String>> = fs::read_to_string(&paths.loaded)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    if loaded.as_ref() == Some(&rendered.files) && pid.is_some() {
        return Ok(false);
    }
    let refused = if read_tree(&paths.live) == rendered.files {
        None
    } else {
        judge_and_swap(&paths, &rendered)
    };
    let _ = fs::remove_file(&paths.loaded);
    match pid {
        Some(_) if refused.is_none() || loaded.is_none() => reload(address)?,
        Some(_) => {}
        // Stopped (or never started): it serves whatever was judged last.
        None if paths.config().exists() => start(&paths, address)?,
        None => {}
    }
    let live = serde_json::to_string(&read_tree(&paths.live))?;
    fs::write(&paths.loaded, live).context(format!("cannot write {}", paths.loaded.display()))?;
    match refused {
        Some(e) => Err(e),
        None => Ok(true),
    }
}

/// Have promtool judge `rendered` and, when it accepts, put it in place of
/// `paths.live`; the refusal otherwise. A rendering refused before is
/// refused again without asking promtool: the agents follow after every
/// step.
fn judge_and_swap(paths: &PromPaths, rendered: &Rendered) -> Option<SimError> {
    let mut record = json!({"files": rendered.files});
    if let Ok(text) = fs::read_to_string(&paths.refused) {
        if let Ok(previous) = serde_json::from_str::<Value>(&text) {
            if previous["files"] == record["files"] {
                return Some(sim_err!(
                    "{}",
                    previous["error"].as_str().unwrap_or_default()
                ));
            }
        }
    }
    let judged = write_tree(&paths.next, &rendered.files)
        .and_then(|_| validate(paths))
        .and_then(|_| swap_in(paths));
    match judged {
        Ok(()) => {
            let _ = fs::remove_file(&paths.refused);
            None
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&paths.next);
            record["error"] = json!(e.to_string());
            let _ = fs::write(&paths.refused, record.to_string());
            Some(e)
        }
    }
}

/// The status message of a serving collector.
fn serving_message(address: SocketAddrV4, rendered: &Rendered) -> String {
    let jobs = rendered.jobs.len();
    let rules = rendered.files.len() - 1;
    let mut message = format!(
        "prometheus on {address}, {jobs} scrape job{}, {rules} rule file{}",
        if jobs == 1 { "" } else { "s" },
        if rules == 1 { "" } else { "s" },
    );
    if !rendered.skipped.is_empty() {
        message.push_str(&format!("; left out: {}", rendered.skipped.join("; ")));
    }
    message
}

/// Follow every collector after a step of the model: reload the
/// Prometheus whose configuration changed. A refusal or failure leaves the
/// previous configuration serving; it becomes the remote application's
/// status (and is printed), not the command's error, since our hooks went
/// fine.
pub fn follow(model: &Model) -> Result<()> {
    for (app, address) in collectors(model)? {
        let outcome = converge(model, &app);
        let current = model.require_app(&app)?;
        match outcome {
            Ok(changed) => {
                let rendered = desired(model, &app)?;
                if changed {
                    for why in &rendered.skipped {
                        eprintln!("charm-sim: {app}: left out {why}");
                    }
                }
                let message = serving_message(address, &rendered);
                if current.status.current != "active" || current.status.message != message {
                    model.set_app_status(&app, "active", &message)?;
                }
            }
            Err(e) => {
                let message = e.to_string();
                if current.status.current != "blocked" || current.status.message != message {
                    eprintln!(
                        "charm-sim: {app}: the previous Prometheus configuration keeps serving: {e}"
                    );
                    model.set_app_status(&app, "blocked", &message)?;
                }
            }
        }
    }
    Ok(())
}

/// Record `app` as a collector whose Prometheus listens on `address`, and
/// start it (no jobs yet). Checks Prometheus is installed and the address
/// is free of other collectors.
pub fn register(model: &Model, app: &str, address: SocketAddrV4) -> Result<()> {
    for tool in [PROMETHEUS, PROMTOOL] {
        if !Path::new(tool).exists() {
            return Err(sim_err!(
                "--prometheus needs Debian's prometheus ({tool} is missing; apt-get install prometheus)"
            ));
        }
    }
    for (other, taken) in collectors(model)? {
        if taken == address {
            return Err(sim_err!(
                "--prometheus {address}: collector {other:?} already listens there"
            ));
        }
    }
    model.set_meta(&local_server::meta_key(KIND, app), &address.to_string())?;
    converge(model, app)?;
    follow(model)
}

/// Stop `app`'s Prometheus (SIGTERM: it finishes writing its TSDB), then
/// whatever is left is ended by the reaper. Forgets it as a collector and
/// removes its files.
pub fn stop(model: &Model, app: &str) -> Result<()> {
    let paths = PromPaths::new(model.dir(), app);
    if paths.dir.exists() {
        let _lock = lock(&paths)?;
        if let Some(pid) = running(&paths) {
            // SAFETY: kill(2) with a plain pid and signal number.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
            let _ = wait_for(|| !reaper::is_alive(pid));
        }
        reaper::end_processes_under(&paths.dir)?;
    }
    if paths.dir.exists() {
        fs::remove_dir_all(&paths.dir).context(format!("cannot remove {}", paths.dir.display()))?;
    }
    model.delete_meta(&local_server::meta_key(KIND, app))
}

// ----- looking at it ------------------------------------------------------------------

fn require_address(model: &Model, app: &str) -> Result<SocketAddrV4> {
    model.require_app(app)?;
    address_of(model, app).ok_or_else(|| {
        sim_err!("{app:?} is not a collector (add one with `charm-sim add-remote NAME --interface cos_agent --prometheus ADDRESS:PORT`)")
    })
}

/// GET an API path of collector `app`'s Prometheus: its JSON answer.
pub fn api(model: &Model, app: &str, path: &str) -> Result<Value> {
    let address = require_address(model, app)?;
    let (status, body) = http(address, "GET", path)?;
    serde_json::from_str(&body).map_err(|_| {
        sim_err!(
            "Prometheus on {address} answered {path} with HTTP {status}: {}",
            body.trim()
        )
    })
}

/// `/api/v1/query` for `promql`, as Prometheus answers it.
pub fn query(model: &Model, app: &str, promql: &str) -> Result<Value> {
    let encoded = wsgi_app::charm::relations::percent::encode_component(promql);
    api(model, app, &format!("/api/v1/query?query={encoded}"))
}

/// What `charm-sim prom-status` reports: where Prometheus listens, whether
/// it runs, the application's status, each scrape target's health and
/// each rule group's, and what was left out of the configuration.
pub fn prom_status(model: &Model, app: &str) -> Result<Value> {
    let address = require_address(model, app)?;
    let current = model.require_app(app)?;
    let paths = PromPaths::new(model.dir(), app);
    let pid = running(&paths);
    let (targets, groups) = match pid {
        Some(_) => (
            api(model, app, "/api/v1/targets?state=active")?,
            api(model, app, "/api/v1/rules")?,
        ),
        None => (Value::Null, Value::Null),
    };
    let targets: Vec<Value> = targets["data"]["activeTargets"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|t| {
            json!({
                "job": t["scrapePool"],
                "unit": t["labels"]["juju_unit"],
                "url": t["scrapeUrl"],
                "health": t["health"],
                "last-error": t["lastError"],
            })
        })
        .collect();
    let groups: Vec<Value> = groups["data"]["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|g| {
            let rules = g["rules"].as_array().cloned().unwrap_or_default();
            let unhealthy: Vec<Value> = rules
                .iter()
                .filter(|r| r["health"] != json!("ok"))
                .map(|r| json!({"name": r["name"], "health": r["health"], "last-error": r["lastError"]}))
                .collect();
            json!({
                "name": g["name"],
                "file": g["file"],
                "rules": rules.len(),
                "not-ok": unhealthy,
            })
        })
        .collect();
    let rendered = desired(model, app).ok();
    Ok(json!({
        "application": app,
        "address": address.to_string(),
        "running": pid.is_some(),
        "pid": pid,
        "status": current.status.current,
        "message": current.status.message,
        "targets": targets,
        "rule-groups": groups,
        "left-out": rendered.map(|r| r.skipped).unwrap_or_default(),
        "config": paths.config().display().to_string(),
    }))
}

/// `prom_status` as lines for people.
pub fn prom_status_text(status: &Value) -> String {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let problem = match status["status"].as_str().unwrap_or_default() {
        "active" => String::new(),
        other => format!(", {other}: {}", text(&status["message"])),
    };
    let mut out = format!(
        "{}: prometheus on {} ({}){problem}\n",
        text(&status["application"]),
        text(&status["address"]),
        match status["pid"].as_i64() {
            Some(pid) => format!("pid {pid}"),
            None => "not running".to_string(),
        },
    );
    let targets = status["targets"].as_array().cloned().unwrap_or_default();
    out.push_str(&format!("targets ({}):\n", targets.len()));
    for t in &targets {
        let error = text(&t["last-error"]);
        out.push_str(&format!(
            "  {}  {}  {}{}\n",
            text(&t["job"]),
            text(&t["url"]),
            text(&t["health"]),
            if error.is_empty() {
                String::new()
            } else {
                format!("  {error}")
            }
        ));
    }
    let groups = status["rule-groups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    out.push_str(&format!("rule groups ({}):\n", groups.len()));
    for g in &groups {
        let not_ok = g["not-ok"].as_array().map(Vec::len).unwrap_or(0);
        out.push_str(&format!(
            "  {}  {} rules{}\n",
            text(&g["name"]),
            text(&g["rules"]),
            if not_ok == 0 {
                String::new()
            } else {
                format!(", {not_ok} not ok: {}", g["not-ok"])
            }
        ));
    }
    for why in status["left-out"].as_array().cloned().unwrap_or_default() {
        out.push_str(&format!("  left out: {}\n", text(&why)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_are_loopback_address_and_port() {
        assert!(parse_listen("127.0.65.200:9090").is_ok());
        for (bad, says) in [
            ("127.0.65.200", "expected an IPv4 loopback"),
            ("10.0.0.1:9090", "10.0.0.1 is not"),
            ("127.0.0.1:0", "give the port"),
        ] {
            let e = parse_listen(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn local_targets_become_the_units_address() {
        assert_eq!(
            rewrite_target("localhost:9102", "127.0.64.2"),
            "127.0.64.2:9102"
        );
        assert_eq!(
            rewrite_target("127.0.0.1:80", "127.0.64.2"),
            "127.0.64.2:80"
        );
        assert_eq!(rewrite_target("localhost", "127.0.64.2"), "127.0.64.2");
        assert_eq!(
            rewrite_target("db.internal:5432", "127.0.64.2"),
            "db.internal:5432"
        );
    }
}
