//! Hook contexts, and running one program (a hook, an action or a command)
//! on a unit the way Juju's uniter does.
//!
//! A context is what the hook tools of one run share: its id (in
//! `JUJU_CONTEXT_ID`), the unit, the event's relation/remote unit/action, and
//! its buffered writes (relation-set, open/close-port) that are applied only
//! when the program exits 0. This module lays out each unit's directory,
//! builds the hook environment from scratch (§1.2, Appendix B), finds the
//! handler (`dispatch`, else `hooks/<name>`/`actions/<name>`, §1.1), runs
//! it with cwd = charm dir and no stdin, shows progress while it runs, and
//! commits or discards the context when it ends.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::container::Machine;
use super::store::{now, random_hex, Machines, Model, Unit};
use super::tools::TOOL_NAMES;
use super::{charm, ErrorContext, Result, JUJU_VERSION, MODEL_ENV};
use crate::sim_err;

/// What the hook tools need to know about the event a context runs for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextInfo {
    /// `install`, `db-relation-changed`…; empty for actions and commands.
    pub hook_name: String,
    /// `hooks/<name>` or `actions/<name>`; `None` for `exec`.
    pub dispatch_path: Option<String>,
    pub relation_id: Option<i64>,
    pub relation_endpoint: Option<String>,
    pub remote_app: Option<String>,
    /// Set but possibly empty for relation hooks (created, broken and
    /// app-level changed have none).
    pub remote_unit: Option<String>,
    pub departing_unit: Option<String>,
    /// The relation whose -broken hook this is (relation-ids hides it).
    pub broken_relation: Option<i64>,
    pub action_id: Option<i64>,
    pub action_name: Option<String>,
    /// Secret hooks: `JUJU_SECRET_ID`, `JUJU_SECRET_LABEL` and (remove,
    /// expired) `JUJU_SECRET_REVISION`.
    #[serde(default)]
    pub secret_id: Option<String>,
    #[serde(default)]
    pub secret_label: Option<String>,
    #[serde(default)]
    pub secret_revision: Option<u32>,
}

/// Where a unit's things live on disk.
#[derive(Debug, Clone)]
pub struct UnitPaths {
    pub dir: PathBuf,
    pub charm: PathBuf,
    pub root: PathBuf,
    pub tools: PathBuf,
    pub hooks_log: PathBuf,
}

impl UnitPaths {
    pub fn new(model_dir: &Path, unit: &Unit) -> UnitPaths {
        let dir = model_dir.join("units").join(unit.dir_name());
        UnitPaths {
            charm: dir.join("charm"),
            root: dir.join("root"),
            tools: dir.join("tools"),
            hooks_log: dir.join("hooks.log"),
            dir,
        }
    }
}

/// Lay out a new unit's directory: its own copy of the charm, an empty
/// machine root, and the tools directory whose entries are symlinks to
/// `tool_exe` (the multi-call charm-sim binary).
pub fn prepare_unit_dir(model: &Model, unit: &Unit, tool_exe: &Path) -> Result<UnitPaths> {
    let paths = UnitPaths::new(model.dir(), unit);
    if paths.dir.exists() {
        fs::remove_dir_all(&paths.dir)
            .context(format!("cannot clear stale {}", paths.dir.display()))?;
    }
    charm::copy_tree(&model.dir().join("charm"), &paths.charm)?;
    for dir in [&paths.root, &paths.tools] {
        fs::create_dir_all(dir).context(format!("cannot create {}", dir.display()))?;
    }
    for tool in TOOL_NAMES {
        symlink(tool_exe, paths.tools.join(tool))
            .context(format!("cannot create tool link {tool}"))?;
    }
    fs::File::create(&paths.hooks_log)
        .context(format!("cannot create {}", paths.hooks_log.display()))?;
    Ok(paths)
}

/// The system part of the hook PATH (the agent's own PATH on Ubuntu).
const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/snap/bin";

/// The environment for a program run in a context, built from scratch as
/// Juju builds it (no HOME, no USER), plus what the sim's tools and the
/// wsgi-app charm under test need.
pub fn hook_env(
    model: &Model,
    unit: &Unit,
    context_id: &str,
    info: &ContextInfo,
) -> Result<Vec<(String, String)>> {
    let paths = UnitPaths::new(model.dir(), unit);
    let charm_dir = paths.charm.display().to_string();
    let mut env: Vec<(String, String)> = vec![
        ("CHARM_DIR".into(), charm_dir.clone()),
        ("JUJU_CHARM_DIR".into(), charm_dir),
        ("JUJU_CONTEXT_ID".into(), context_id.into()),
        ("JUJU_UNIT_NAME".into(), unit.name.clone()),
        ("JUJU_MODEL_NAME".into(), model.name()?),
        ("JUJU_MODEL_UUID".into(), model.uuid()?),
        // Each simulated unit has its own "machine", numbered like the unit.
        ("JUJU_MACHINE_ID".into(), unit.number.to_string()),
        ("JUJU_VERSION".into(), JUJU_VERSION.into()),
        (
            "JUJU_AGENT_SOCKET_ADDRESS".into(),
            format!("@{}/agent.socket", paths.dir.display()),
        ),
        ("JUJU_AGENT_SOCKET_NETWORK".into(), "unix".into()),
        ("JUJU_API_ADDRESSES".into(), "127.0.0.1:17070".into()),
        ("JUJU_PRINCIPAL_UNIT".into(), String::new()),
        ("JUJU_AVAILABILITY_ZONE".into(), String::new()),
        ("CLOUD_API_VERSION".into(), String::new()),
        ("JUJU_SLA".into(), "unsupported".into()),
        ("JUJU_CHARM_HTTP_PROXY".into(), String::new()),
        ("JUJU_CHARM_HTTPS_PROXY".into(), String::new()),
        ("JUJU_CHARM_FTP_PROXY".into(), String::new()),
        ("JUJU_CHARM_NO_PROXY".into(), String::new()),
        ("APT_LISTCHANGES_FRONTEND".into(), "none".into()),
        ("DEBIAN_FRONTEND".into(), "noninteractive".into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("TERM".into(), "tmux-256color".into()),
        (
            "PATH".into(),
            format!("{}:{SYSTEM_PATH}", paths.tools.display()),
        ),
        // How the emulated tools find the model.
        (MODEL_ENV.into(), model.dir().display().to_string()),
        // The wsgi-app charm's own loopback address.
        ("WSGI_APP_BIND_ADDRESS".into(), unit.address.clone()),
    ];
    if model.machines()? == Machines::Directory {
        // A directory unit: the charm's own root, and no systemd. A
        // container unit is a whole machine: the charm finds systemd there
        // and picks it by itself, as on a real unit.
        env.push(("WSGI_APP_ROOT".into(), paths.root.display().to_string()));
        env.push(("WSGI_APP_SERVICE_MANAGER".into(), "direct".into()));
    }
    // The charm's test-only kill point, when charm-sim itself was given one
    // (end-to-end crash tests).
    if let Some(point) = std::env::var("WSGI_APP_CRASH_AT")
        .ok()
        .filter(|p| !p.is_empty())
    {
        env.push(("WSGI_APP_CRASH_AT".into(), point));
    }
    if let Some(path) = &info.dispatch_path {
        env.push(("JUJU_DISPATCH_PATH".into(), path.clone()));
        env.push(("JUJU_HOOK_NAME".into(), info.hook_name.clone()));
    }
    if let (Some(id), Some(endpoint)) = (info.relation_id, &info.relation_endpoint) {
        env.push(("JUJU_RELATION".into(), endpoint.clone()));
        env.push(("JUJU_RELATION_ID".into(), format!("{endpoint}:{id}")));
        env.push((
            "JUJU_REMOTE_APP".into(),
            info.remote_app.clone().unwrap_or_default(),
        ));
        env.push((
            "JUJU_REMOTE_UNIT".into(),
            info.remote_unit.clone().unwrap_or_default(),
        ));
        if let Some(departing) = info.departing_unit.as_ref().filter(|d| !d.is_empty()) {
            env.push(("JUJU_DEPARTING_UNIT".into(), departing.clone()));
        }
    }
    if let Some(id) = &info.secret_id {
        env.push(("JUJU_SECRET_ID".into(), id.clone()));
        env.push((
            "JUJU_SECRET_LABEL".into(),
            info.secret_label.clone().unwrap_or_default(),
        ));
        // Juju exports the revision only when above 0 (§1.2).
        if let Some(revision) = info.secret_revision.filter(|r| *r > 0) {
            env.push(("JUJU_SECRET_REVISION".into(), revision.to_string()));
        }
    }
    if let (Some(id), Some(name)) = (info.action_id, &info.action_name) {
        env.push(("JUJU_ACTION_NAME".into(), name.clone()));
        env.push(("JUJU_ACTION_UUID".into(), id.to_string()));
        env.push(("JUJU_ACTION_TAG".into(), format!("action-{id}")));
    }
    Ok(env)
}

/// A started context: its id and the environment its programs get.
#[derive(Debug, Clone)]
pub struct OpenContext {
    pub id: String,
    pub unit: String,
    pub env: Vec<(String, String)>,
}

/// Start a context on `unit` (hook tools called with its id now work).
pub fn begin(model: &Model, unit: &Unit, info: &ContextInfo) -> Result<OpenContext> {
    let label = if !info.hook_name.is_empty() {
        info.hook_name.clone()
    } else if let Some(action) = &info.action_name {
        action.clone()
    } else {
        "run-commands".into()
    };
    let id = format!("{}-{}-{}", unit.name, label, random_hex(8));
    model.insert_context(&id, &unit.name, info)?;
    let env = hook_env(model, unit, &id, info)?;
    Ok(OpenContext {
        id,
        unit: unit.name.clone(),
        env,
    })
}

/// End a context: commit its buffered writes when the program exited 0,
/// otherwise throw them away (§1.3, §1.6).
/// What changed in a peer relation reaches the other peers.
pub fn finish(model: &Model, context: &OpenContext, exit_code: Option<i32>) -> Result<()> {
    let changed = model.finish_context(&context.id, &context.unit, exit_code == Some(0))?;
    super::engine::enqueue_peer_changes(model, &context.unit, &changed)
}

/// What to run in a context.
#[derive(Debug, Clone)]
pub enum Program {
    /// The charm's handler for a hook or action (`info.dispatch_path`).
    Handler,
    /// An arbitrary command (`charm-sim exec`), output passed through.
    Command(Vec<String>),
}

/// How a run ended.
#[derive(Debug, Clone, Default)]
pub struct ProgramOutcome {
    /// The exit code; `None` when killed by a signal or never started.
    pub code: Option<i32>,
    /// The handler was missing (a hook counts as done; an action fails).
    pub skipped: bool,
    /// Why the program could not be started, if it could not.
    pub start_error: Option<String>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ProgramOutcome {
    pub fn succeeded(&self) -> bool {
        self.code == Some(0)
    }

    /// The last `n` lines of stderr (or the start error), for reports.
    pub fn stderr_tail(&self, n: usize) -> Vec<String> {
        if let Some(e) = &self.start_error {
            return vec![e.clone()];
        }
        let text = String::from_utf8_lossy(&self.stderr);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| l.to_string())
            .collect()
    }
}

/// Prints progress while programs run (unless quiet).
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub quiet: bool,
}

impl Progress {
    pub fn say(&self, line: impl AsRef<str>) {
        if !self.quiet {
            println!("{}", line.as_ref());
        }
    }
}

/// Which file handles a hook event, per Juju's lookup (§1.1).
enum Handler {
    Found(PathBuf),
    Missing,
    CharmMissing,
}

fn find_handler(charm_dir: &Path, dispatch_path: &str) -> Handler {
    if !charm_dir.join("metadata.yaml").is_file() {
        return Handler::CharmMissing;
    }
    let dispatch = charm_dir.join("dispatch");
    // An existing but non-executable dispatch is still chosen: running it
    // fails, which is a hook error, with no fallback to hooks/.
    if fs::symlink_metadata(&dispatch).is_ok() {
        return Handler::Found(dispatch);
    }
    let legacy = charm_dir.join(dispatch_path);
    if legacy.exists() {
        return Handler::Found(legacy);
    }
    Handler::Missing
}

/// Run `program` in a fresh context for `info` on `unit`, printing status
/// changes while it runs, and commit or discard the context at the end.
pub fn run(
    model: &Model,
    unit: &Unit,
    info: &ContextInfo,
    program: &Program,
    progress: Progress,
) -> Result<ProgramOutcome> {
    let paths = UnitPaths::new(model.dir(), unit);
    let context = begin(model, unit, info)?;
    let outcome = run_in(model, unit, &paths, &context, info, program, progress);
    let finished = finish(model, &context, outcome.as_ref().ok().and_then(|o| o.code));
    let outcome = outcome?;
    finished?;
    Ok(outcome)
}

fn run_in(
    model: &Model,
    unit: &Unit,
    paths: &UnitPaths,
    context: &OpenContext,
    info: &ContextInfo,
    program: &Program,
    progress: Progress,
) -> Result<ProgramOutcome> {
    let label = match (program, &info.dispatch_path) {
        (Program::Command(argv), _) => format!("exec {}", argv.join(" ")),
        (Program::Handler, Some(path)) => path.clone(),
        (Program::Handler, None) => return Err(sim_err!("no hook or action to run")),
    };
    let mut log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&paths.hooks_log)
        .context(format!("cannot open {}", paths.hooks_log.display()))?;
    writeln!(
        log,
        "=== {} {} {label} (context {}) ===",
        now(),
        unit.name,
        context.id
    )
    .context("cannot write hooks.log")?;

    // On a container unit the program runs inside the unit's machine (the
    // model directory is at the same path there).
    let machine = match model.machines()? {
        Machines::Container => Some(Machine::new(model.dir(), unit.number)),
        Machines::Directory => None,
    };
    let start = |program: &std::ffi::OsStr| -> Result<Command> {
        Ok(match &machine {
            Some(machine) => {
                let mut c = machine.enter(&paths.charm)?;
                c.arg(program);
                c
            }
            None => Command::new(program),
        })
    };

    let mut command = match program {
        Program::Command(argv) => {
            let (first, rest) = argv
                .split_first()
                .ok_or_else(|| sim_err!("no command given to run"))?;
            let mut c = match start(first.as_ref()) {
                Ok(c) => c,
                Err(e) => return Ok(not_started(&mut log, e)),
            };
            c.args(rest);
            c
        }
        Program::Handler => {
            let path = info.dispatch_path.as_deref().unwrap_or_default();
            match find_handler(&paths.charm, path) {
                Handler::Found(file) => match start(file.as_os_str()) {
                    Ok(c) => c,
                    Err(e) => return Ok(not_started(&mut log, e)),
                },
                Handler::Missing => {
                    writeln!(log, "=== skipped {label}: no handler in the charm ===").ok();
                    return Ok(ProgramOutcome {
                        code: Some(0),
                        skipped: true,
                        ..ProgramOutcome::default()
                    });
                }
                Handler::CharmMissing => {
                    let message = "charm missing from disk (no metadata.yaml)".to_string();
                    writeln!(log, "=== failed: {message} ===").ok();
                    return Ok(ProgramOutcome {
                        start_error: Some(message),
                        ..ProgramOutcome::default()
                    });
                }
            }
        }
    };

    // Output goes to files, not pipes: a daemon the hook starts may keep
    // the descriptors open long after the hook exits, and must not block
    // us or see a closed pipe. Each run gets fresh files (new inodes), so a
    // lingering daemon never scribbles into the next run's capture.
    let stdout_path = paths.dir.join("last-run.stdout");
    let stderr_path = paths.dir.join("last-run.stderr");
    let passthrough = matches!(program, Program::Command(_));
    let fresh = |p: &Path| -> Result<fs::File> {
        let _ = fs::remove_file(p);
        fs::File::options()
            .create(true)
            .read(true)
            .write(true)
            .truncate(true)
            .open(p)
            .context(format!("cannot create {}", p.display()))
    };
    let mut stdout_file = fresh(&stdout_path)?;
    let mut stderr_file = fresh(&stderr_path)?;
    command
        .current_dir(&paths.charm)
        .env_clear()
        .envs(context.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null());
    if passthrough {
        command.stdout(Stdio::inherit()).stderr(Stdio::inherit());
    } else {
        command
            .stdout(stdout_file.try_clone().context("cannot dup stdout file")?)
            .stderr(stderr_file.try_clone().context("cannot dup stderr file")?);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let message = format!("cannot run {label}: {e}");
            writeln!(log, "=== failed: {message} ===").ok();
            return Ok(ProgramOutcome {
                start_error: Some(message),
                ..ProgramOutcome::default()
            });
        }
    };

    let mut watcher = StatusWatcher::new(model, unit, info.action_id)?;
    // Poll quickly at first (most hooks are short), then every 100 ms.
    let mut pause = Duration::from_millis(2);
    let status = loop {
        if let Some(status) = child.try_wait().context("cannot wait for the hook")? {
            break status;
        }
        watcher.poll(model, progress)?;
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    };
    watcher.poll(model, progress)?;

    let read_all = |f: &mut fs::File| -> Vec<u8> {
        let mut buf = Vec::new();
        let _ = f.seek(SeekFrom::Start(0));
        let _ = f.read_to_end(&mut buf);
        buf
    };
    let stdout = read_all(&mut stdout_file);
    let stderr = read_all(&mut stderr_file);
    let _ = fs::remove_file(&stdout_path);
    let _ = fs::remove_file(&stderr_path);
    log.write_all(&stdout).ok();
    if !stderr.is_empty() {
        writeln!(log, "--- stderr ---").ok();
        log.write_all(&stderr).ok();
        if !stderr.ends_with(b"\n") {
            writeln!(log).ok();
        }
    }
    let code = status.code();
    match code {
        Some(c) => writeln!(log, "=== {label} exited {c} ===").ok(),
        None => writeln!(log, "=== {label} killed by a signal ({status}) ===").ok(),
    };
    Ok(ProgramOutcome {
        code,
        skipped: false,
        start_error: None,
        stdout,
        stderr,
    })
}

/// A machine that is not running fails the run like a program that cannot
/// start (so `destroy` goes on past it).
fn not_started(log: &mut fs::File, e: super::SimError) -> ProgramOutcome {
    writeln!(log, "=== failed: {e} ===").ok();
    ProgramOutcome {
        start_error: Some(e.to_string()),
        ..ProgramOutcome::default()
    }
}

/// Follows a unit's workload status (and an action's log) while a program
/// runs, printing each change.
struct StatusWatcher {
    unit: String,
    last: (String, String),
    action: Option<(i64, i64)>,
}

impl StatusWatcher {
    fn new(model: &Model, unit: &Unit, action: Option<i64>) -> Result<StatusWatcher> {
        let unit = model.require_unit(&unit.name)?;
        Ok(StatusWatcher {
            last: (unit.workload.current.clone(), unit.workload.message.clone()),
            unit: unit.name,
            action: action.map(|id| (id, 0)),
        })
    }

    fn poll(&mut self, model: &Model, progress: Progress) -> Result<()> {
        if let Some(unit) = model.unit(&self.unit)? {
            let now = (unit.workload.current, unit.workload.message);
            if now != self.last {
                if now.1.is_empty() {
                    progress.say(format!("{}: {}", self.unit, now.0));
                } else {
                    progress.say(format!("{}: {}: {}", self.unit, now.0, now.1));
                }
                self.last = now;
            }
        }
        if let Some((id, seen)) = &mut self.action {
            for (row, message) in model.action_logs(*id, *seen)? {
                progress.say(format!("{}: {message}", self.unit));
                *seen = row;
            }
        }
        Ok(())
    }
}
