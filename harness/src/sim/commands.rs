//! The `charm-sim` subcommands. Each one checks its arguments against the
//! model before changing anything, enqueues the hooks Juju would run (see
//! [`super::engine`]) and drains them, holding the model lock so that two
//! commands never run hooks on the same model at once.
//!
//! Why one file over 600 lines: one subcommand after another, all sharing the
//! model lock and the hook queue.

use std::fs;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use wsgi_app::ops::UnitHook;

use super::charm;
use super::container::{self, Machine};
use super::context::{self, ContextInfo, Program, Progress};
use super::engine::{self, Hook, OnFailure};
use super::flags;
use super::store::{App, Bag, Machines, Model, Relation, Unit};
use super::{actions, reaper, status, ErrorContext, Result};
use crate::schema::{CharmMeta, Role};
use crate::sim_err;

/// Options every command shares.
#[derive(Debug, Clone)]
pub struct Global {
    pub model_dir: PathBuf,
    pub quiet: bool,
    /// Used when a command creates the model (see `Model::create`).
    pub address_block: String,
}

impl Global {
    fn progress(&self) -> Progress {
        Progress { quiet: self.quiet }
    }
}

/// An exclusive lock on the model, released when dropped. The file is
/// opened close-on-exec, so daemons started by hooks never inherit it.
pub struct ModelLock {
    _file: fs::File,
}

fn lock_model(dir: &Path, progress: Progress) -> Result<ModelLock> {
    fs::create_dir_all(dir).context(format!("cannot create {}", dir.display()))?;
    let path = dir.join("lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .context(format!("cannot open {}", path.display()))?;
    let fd = file.as_raw_fd();
    // SAFETY: flock(2) on a descriptor we own.
    if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        progress.say("waiting for another charm-sim command on this model to finish...");
        // SAFETY: as above.
        if unsafe { libc::flock(fd, libc::LOCK_EX) } != 0 {
            return Err(sim_err!("cannot lock {}", path.display()));
        }
    }
    Ok(ModelLock { _file: file })
}

/// Open the model for a command that changes it.
fn open_locked(g: &Global) -> Result<(Model, ModelLock)> {
    if !Model::exists(&g.model_dir) {
        return Err(sim_err!(
            "no model in {} (run `charm-sim deploy` first, or pass --model DIR)",
            g.model_dir.display()
        ));
    }
    let lock = lock_model(&g.model_dir, g.progress())?;
    Ok((Model::open(&g.model_dir)?, lock))
}

fn tool_exe() -> Result<PathBuf> {
    std::env::current_exe().context("cannot find the charm-sim executable")
}

/// The executable the unit's hook tools link to. Container units see the
/// model directory only, so they get a copy of charm-sim inside it.
fn tool_exe_for(model: &Model) -> Result<PathBuf> {
    let exe = tool_exe()?;
    if model.machines()? == Machines::Directory {
        return Ok(exe);
    }
    let copy = model.dir().join("bin").join("charm-sim");
    if !copy.exists() {
        let dir = model.dir().join("bin");
        fs::create_dir_all(&dir).context(format!("cannot create {}", dir.display()))?;
        let temp = dir.join(".charm-sim.new");
        // From /proc/self/exe: the running binary even when a rebuild has
        // replaced (or deleted) the file it was started from.
        fs::copy("/proc/self/exe", &temp).context(format!("cannot copy {}", exe.display()))?;
        fs::rename(&temp, &copy).context(format!("cannot create {}", copy.display()))?;
    }
    Ok(copy)
}

/// Wait for the machines of the model's container units to boot.
fn wait_for_machines(model: &Model, units: &[Unit], g: &Global) -> Result<()> {
    if model.machines()? != Machines::Container {
        return Ok(());
    }
    for unit in units {
        let machine = Machine::new(model.dir(), unit.number);
        let state = machine.wait_running()?;
        g.progress().say(format!(
            "{}: machine {} booted ({state})",
            unit.name,
            machine.name()
        ));
    }
    Ok(())
}

fn charm_app(model: &Model, name: &str) -> Result<App> {
    let app = model.require_app(name)?;
    if app.remote {
        return Err(sim_err!(
            "{name:?} is a remote application (it has no charm or hooks)"
        ));
    }
    Ok(app)
}

fn charm_unit(model: &Model, name: &str) -> Result<Unit> {
    let unit = model.require_unit(name)?;
    if model.require_app(&unit.app)?.remote {
        return Err(sim_err!(
            "{name:?} is a unit of a remote application (it runs no hooks)"
        ));
    }
    Ok(unit)
}

fn valid_app_name(name: &str) -> Result<()> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(sim_err!(
            "invalid application name {name:?} (lowercase letters, digits and single hyphens, starting with a letter)"
        ))
    }
}

/// Print each charm unit with its address and status.
fn print_units(model: &Model, g: &Global) -> Result<()> {
    if g.quiet {
        return Ok(());
    }
    for app in model.apps()?.into_iter().filter(|a| !a.remote) {
        for unit in model.units(&app.name)? {
            let leader = if unit.leader { "*" } else { "" };
            let status = if unit.agent.current == "error" {
                format!("error: {}", unit.agent.message)
            } else if unit.workload.message.is_empty() {
                unit.workload.current.clone()
            } else {
                format!("{}: {}", unit.workload.current, unit.workload.message)
            };
            let ports: Vec<String> = model
                .ports(&unit.name)?
                .iter()
                .map(|p| p.port.to_string())
                .collect();
            let ports = if ports.is_empty() {
                String::new()
            } else {
                format!("  [{}]", ports.join(", "))
            };
            println!("{}{leader}  {}{ports}  {status}", unit.name, unit.address);
            for opened in model.ports(&unit.name)? {
                let port = opened.port;
                if port.protocol != wsgi_app::ops::Protocol::Tcp || port.from != port.to {
                    continue;
                }
                let addr = format!("{}:{}", unit.address, port.from);
                println!("    http://{addr}/  {}", first_answer(&addr));
            }
        }
    }
    Ok(())
}

/// What the unit answers at `/`, on one short line, for the user to see.
fn first_answer(addr: &str) -> String {
    let timeout = std::time::Duration::from_secs(2);
    match wsgi_app::workload::health::http_get(addr, "/", timeout) {
        Ok(answer) => {
            let line = answer.body.lines().next().unwrap_or("").trim();
            let short: String = line.chars().take(72).collect();
            if answer.status == 200 {
                short
            } else {
                format!("HTTP {} {}: {short}", answer.status, answer.reason)
            }
        }
        Err(e) => format!("(no answer: {e})"),
    }
}

/// Drain the queue and turn stuck units into the command's error.
fn settle(model: &Model, g: &Global) -> Result<()> {
    engine::drain(model, g.progress(), OnFailure::Stop)?.into_result()
}

/// Add one unit of `app`: its directory, relation scopes, and its hooks.
fn add_one_unit(model: &Model, app: &App, g: &Global) -> Result<Unit> {
    let unit = model.add_unit(app)?;
    context::prepare_unit_dir(model, &unit, &tool_exe_for(model)?)?;
    if model.machines()? == Machines::Container {
        let root = container::ensure_root(g.progress())?;
        let machine = Machine::new(model.dir(), unit.number);
        let uuid = model.uuid()?;
        let name = format!("{}-{}", unit.dir_name(), &uuid[..8]);
        machine.create(&root, &name, &unit.address)?;
        machine.boot(model.dir())?;
    }
    for rel in model.relations()? {
        if rel.app == app.name && !rel.dying {
            model.enter_scope(rel.id, &unit.name, &unit.address)?;
            super::cos::ensure_collector(model, &rel, &unit.name)?;
        }
    }
    engine::enqueue_new_unit(model, &unit)?;
    engine::enqueue_peer_joined(model, &unit)?;
    g.progress()
        .say(format!("{}: added at {}", unit.name, unit.address));
    Ok(unit)
}

// ----- deploy, config, units --------------------------------------------------------

/// `charm-sim deploy [CHARM] --units N [--config k=v]... [--name APP]`.
pub fn deploy(
    g: &Global,
    charm_path: Option<&Path>,
    units: u32,
    config: &[String],
    name: Option<&str>,
    machines: Machines,
) -> Result<()> {
    let progress = g.progress();
    if Model::exists(&g.model_dir) {
        let model = Model::open(&g.model_dir)?;
        if let Some(app) = model.charm_app()? {
            return Err(sim_err!(
                "application {:?} is already deployed in {} (charm-sim runs one charm per model); \
                 use `charm-sim add-unit`, or `charm-sim destroy` first",
                app.name,
                g.model_dir.display()
            ));
        }
    }
    let _lock = lock_model(&g.model_dir, progress)?;
    let staging = g.model_dir.join("charm.staging");
    if staging.exists() {
        fs::remove_dir_all(&staging).context(format!("cannot clear {}", staging.display()))?;
    }
    // Read the charm's YAML first so a bad --config fails before any build.
    let source_tree = match charm_path {
        None => Some(charm::find_source_tree()?),
        Some(_) => None,
    };
    let meta = match (charm_path, &source_tree) {
        (Some(path), _) if path.is_file() => {
            charm::unpack_charm(path, &staging)?;
            CharmMeta::load(&staging)?
        }
        (Some(path), _) if path.is_dir() => CharmMeta::load(path)?,
        (Some(path), _) => {
            return Err(sim_err!(
                "charm {} not found (give a charm directory or a .charm file)",
                path.display()
            ))
        }
        (None, Some(tree)) => CharmMeta::load(tree)?,
        (None, None) => unreachable!("source tree found above"),
    };
    let app_name = name.unwrap_or(&meta.name).to_string();
    valid_app_name(&app_name)?;
    let settings: Vec<(String, Option<Value>)> = config
        .iter()
        .map(|s| charm::parse_setting(&meta, s))
        .collect::<Result<_>>()?;
    if machines == Machines::Container {
        // Before anything is deployed: the root may take minutes to make,
        // and a host that cannot run containers should say so first.
        container::ensure_root(progress)?;
    }

    if !staging.exists() {
        match (&source_tree, charm_path) {
            (Some(tree), None) => charm::assemble_from_source(tree, &staging, g.quiet)?,
            (_, Some(path)) => charm::copy_tree(path, &staging)?,
            _ => unreachable!(),
        }
    }
    // The charm as deployed; each unit gets its own copy of it.
    let deployed = g.model_dir.join("charm");
    if deployed.exists() {
        fs::remove_dir_all(&deployed).context(format!("cannot clear {}", deployed.display()))?;
    }
    fs::rename(&staging, &deployed)
        .context(format!("cannot move the charm into {}", deployed.display()))?;

    let model = if Model::exists(&g.model_dir) {
        Model::open(&g.model_dir)?
    } else {
        Model::create(&g.model_dir, &g.address_block)?
    };
    if model.app(&app_name)?.is_some() {
        return Err(sim_err!("an application named {app_name:?} already exists"));
    }
    model.set_meta("machines", machines.as_str())?;
    model.add_charm_app(&app_name, &meta)?;
    // Peer relations exist from the start: each unit enters them as it is
    // added, and gets their created hook before leader-elected.
    for (endpoint, spec) in &meta.endpoints {
        if spec.role == Role::Peers {
            model.add_relation(&app_name, endpoint, &app_name, endpoint, &spec.interface)?;
        }
    }
    for (key, value) in &settings {
        model.set_config(&app_name, key, value.as_ref())?;
    }
    progress.say(format!(
        "deploying {app_name} ({} unit{}) in {}",
        units,
        if units == 1 { "" } else { "s" },
        model.dir().display()
    ));
    let app = model.require_app(&app_name)?;
    let mut added = Vec::new();
    for _ in 0..units {
        added.push(add_one_unit(&model, &app, g)?);
    }
    wait_for_machines(&model, &added, g)?;
    let drained = settle(&model, g);
    print_units(&model, g)?;
    drained
}

/// The options of an application as `juju config APP` shows them.
fn config_yaml(model: &Model, app: &App) -> Result<String> {
    let set = model.config_set_values(&app.name)?;
    let mut settings = Map::new();
    for (key, option) in &app.meta()?.options {
        let mut entry = json!({
            "type": option.kind,
            "description": option.description.trim_end(),
            "source": if set.contains_key(key) { "user" } else if option.default.is_some() { "default" } else { "unset" },
        });
        if let Some(default) = &option.default {
            entry["default"] = default.clone();
        }
        if let Some(value) = set.get(key).or(option.default.as_ref()) {
            entry["value"] = value.clone();
        }
        settings.insert(key.clone(), entry);
    }
    let value = json!({
        "application": app.name,
        "charm": app.meta()?.name,
        "settings": settings,
    });
    serde_yaml_ng::to_string(&value).context("cannot render config as YAML")
}

/// `charm-sim config APP [k=v ...]`.
pub fn config(g: &Global, app_name: &str, settings: &[String]) -> Result<()> {
    if settings.is_empty() {
        let model = Model::open(&g.model_dir)?;
        let app = charm_app(&model, app_name)?;
        print!("{}", config_yaml(&model, &app)?);
        return Ok(());
    }
    let (model, _lock) = open_locked(g)?;
    let app = charm_app(&model, app_name)?;
    let parsed: Vec<(String, Option<Value>)> = settings
        .iter()
        .map(|s| charm::parse_setting(app.meta()?, s))
        .collect::<Result<_>>()?;
    for (key, value) in &parsed {
        model.set_config(&app.name, key, value.as_ref())?;
    }
    for unit in engine::live_units(&model, &app.name)? {
        engine::enqueue_hook(&model, &unit.name, Hook::Unit(UnitHook::ConfigChanged))?;
    }
    let drained = settle(&model, g);
    print_units(&model, g)?;
    drained
}

/// `charm-sim add-unit APP [-n N]`.
pub fn add_unit(g: &Global, app_name: &str, count: u32) -> Result<()> {
    let (model, _lock) = open_locked(g)?;
    let app = charm_app(&model, app_name)?;
    let mut added = Vec::new();
    for _ in 0..count {
        added.push(add_one_unit(&model, &app, g)?);
    }
    wait_for_machines(&model, &added, g)?;
    let drained = settle(&model, g);
    print_units(&model, g)?;
    drained
}

/// `charm-sim remove-unit UNIT`.
pub fn remove_unit(g: &Global, unit_name: &str) -> Result<()> {
    let (model, _lock) = open_locked(g)?;
    let unit = charm_unit(&model, unit_name)?;
    if unit.dying {
        return Err(sim_err!("unit {unit_name:?} is already being removed"));
    }
    engine::enqueue_remove_unit(&model, &unit)?;
    let drained = settle(&model, g);
    print_units(&model, g)?;
    drained
}

// ----- remote applications and relations ------------------------------------------

fn key_values(args: &[String]) -> Result<Bag> {
    flags::key_values(args).map_err(|e| sim_err!("{e}"))
}

/// `charm-sim add-remote NAME --interface IFACE [--endpoint EP] [--unit-data k=v]...
/// [--app-data k=v]... [--units N] [--provider [--postgres URL] | --haproxy ADDRESS:PORT
/// | --prometheus ADDRESS:PORT]`; with `--provider`, a PostgreSQL or MongoDB
/// that answers our requests (`super::providers`), with `--postgres` backed
/// by that real server; with `--haproxy`, a real haproxy listening there,
/// configured from the relation (`super::haproxy`); with `--prometheus`, a
/// collector subordinate feeding a real Prometheus listening there
/// (`super::cos`).
#[allow(clippy::too_many_arguments)]
pub fn add_remote(
    g: &Global,
    name: &str,
    interface: &str,
    endpoint: Option<&str>,
    unit_data: &[String],
    app_data: &[String],
    units: u32,
    provider: bool,
    postgres: Option<&str>,
    haproxy: Option<&str>,
    prometheus: Option<&str>,
) -> Result<()> {
    valid_app_name(name)?;
    if postgres.is_some() && !provider {
        return Err(sim_err!(
            "--postgres is for an emulated provider: add --provider"
        ));
    }
    let unit_data = key_values(unit_data)?;
    let mut app_data = key_values(app_data)?;
    let frontend = haproxy.map(super::haproxy::parse_frontend).transpose()?;
    if frontend.is_some() {
        if interface != super::haproxy::INTERFACE {
            return Err(sim_err!(
                "--haproxy: the load balancer speaks the {:?} interface (the haproxy charm's {} endpoint), not {interface:?}",
                super::haproxy::INTERFACE,
                super::haproxy::ENDPOINT
            ));
        }
        if units != 1 {
            return Err(sim_err!(
                "--haproxy: the load balancer is one haproxy, so one unit (drop --units {units})"
            ));
        }
    }
    let listen = prometheus.map(super::cos::parse_listen).transpose()?;
    if listen.is_some() {
        if interface != super::cos::INTERFACE {
            return Err(sim_err!(
                "--prometheus: the collector speaks the {:?} interface, not {interface:?}",
                super::cos::INTERFACE
            ));
        }
        if !unit_data.is_empty() {
            return Err(sim_err!(
                "--prometheus: the collector writes its own unit data (drop --unit-data)"
            ));
        }
        if units != 1 {
            return Err(sim_err!(
                "--prometheus: the collector is a subordinate: each related unit of ours gets one collector unit when related (drop --units {units})"
            ));
        }
    }
    let endpoint = match endpoint {
        None if provider => Some("database"),
        None if frontend.is_some() => Some(super::haproxy::ENDPOINT),
        None if listen.is_some() => Some(super::cos::ENDPOINT),
        other => other,
    };
    let _lock = lock_model(&g.model_dir, g.progress())?;
    let model = if Model::exists(&g.model_dir) {
        Model::open(&g.model_dir)?
    } else {
        Model::create(&g.model_dir, &g.address_block)?
    };
    if model.app(name)?.is_some() {
        return Err(sim_err!("an application named {name:?} already exists"));
    }
    if provider {
        let early = super::providers::register(&model, name, interface, postgres)?;
        for (k, v) in early {
            app_data.entry(k).or_insert(v);
        }
    }
    model.add_remote_app(name, interface, endpoint.unwrap_or(interface))?;
    model.update_remote_data(name, &app_data)?;
    let app = model.require_app(name)?;
    // A subordinate's units come with its relations.
    let units = if listen.is_some() { 0 } else { units };
    for _ in 0..units {
        let mut unit = model.add_unit(&app)?;
        if let Some(frontend) = frontend {
            unit.address = frontend.ip().to_string();
            model.set_unit_address(&unit.name, &unit.address)?;
        }
        model.update_remote_data(&unit.name, &unit_data)?;
        g.progress()
            .say(format!("{}: remote unit at {}", unit.name, unit.address));
    }
    if let Some(frontend) = frontend {
        if let Err(e) = super::haproxy::register(&model, name, frontend) {
            // Leave nothing half made, so the same command can run again.
            super::haproxy::stop(&model, name)?;
            forget_remote(&model, name)?;
            return Err(e);
        }
        g.progress().say(format!(
            "{name}: haproxy listening on {frontend} (no servers until related: it answers 503)"
        ));
    }
    if let Some(listen) = listen {
        if let Err(e) = super::cos::register(&model, name, listen) {
            super::cos::stop(&model, name)?;
            forget_remote(&model, name)?;
            return Err(e);
        }
        g.progress().say(format!(
            "{name}: Prometheus listening on http://{listen}/ (no scrape jobs until related)"
        ));
    }
    Ok(())
}

/// Forget a remote application that no relation names any more.
fn forget_remote(model: &Model, name: &str) -> Result<()> {
    for unit in model.units(name)? {
        model.delete_unit(&unit.name)?;
    }
    super::providers::forget(model, name)?;
    model.delete_app(name)
}

/// `charm-sim remove-remote NAME`: its relations are removed (departed and
/// broken on our units), then the application; a load balancer's haproxy
/// stops.
pub fn remove_remote(g: &Global, name: &str) -> Result<()> {
    let (model, _lock) = open_locked(g)?;
    let app = model.require_app(name)?;
    if !app.remote {
        return Err(sim_err!(
            "{name:?} is the charm under test, not a remote application; `charm-sim destroy` removes it with the model"
        ));
    }
    for rel in model.relations()? {
        if rel.remote_app == name && !rel.dying {
            remove_relation(&model, &rel)?;
        }
    }
    settle(&model, g)?;
    if super::haproxy::frontend_of(&model, name).is_some() {
        super::haproxy::stop(&model, name)?;
        g.progress().say(format!("{name}: haproxy stopped"));
    }
    if super::cos::address_of(&model, name).is_some() {
        super::cos::stop(&model, name)?;
        g.progress().say(format!("{name}: Prometheus stopped"));
    }
    forget_remote(&model, name)?;
    g.progress().say(format!("{name}: removed"));
    Ok(())
}

/// `charm-sim lb-status LB [--format json]`: the load balancer's backend
/// servers and their state. `false` when haproxy is not running or refused
/// its last configuration.
pub fn lb_status(g: &Global, name: &str, json_format: bool) -> Result<bool> {
    let model = Model::open(&g.model_dir)?;
    let status = super::haproxy::lb_status(&model, name)?;
    if json_format {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", super::haproxy::lb_status_text(&status));
    }
    Ok(status["running"] == json!(true) && status["status"] == json!("active"))
}

/// `charm-sim prom-status NAME [--format json]`: the collector's
/// Prometheus, its scrape targets' health and its rule groups. `false`
/// when Prometheus is not running or refused its last configuration.
pub fn prom_status(g: &Global, name: &str, json_format: bool) -> Result<bool> {
    let model = Model::open(&g.model_dir)?;
    let status = super::cos::prom_status(&model, name)?;
    if json_format {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", super::cos::prom_status_text(&status));
    }
    Ok(status["running"] == json!(true) && status["status"] == json!("active"))
}

/// `charm-sim prom-query NAME PROMQL`: Prometheus's answer to an instant
/// query, as JSON. `false` when Prometheus says the query failed.
pub fn prom_query(g: &Global, name: &str, promql: &str) -> Result<bool> {
    let model = Model::open(&g.model_dir)?;
    let answer = super::cos::query(&model, name, promql)?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(answer["status"] == json!("success"))
}

/// `charm-sim set-remote-data UNIT_OR_APP k=v ...`.
pub fn set_remote_data(g: &Global, target: &str, settings: &[String]) -> Result<()> {
    let changes = key_values(settings)?;
    if changes.is_empty() {
        return Err(sim_err!("no key=value settings given"));
    }
    let (model, _lock) = open_locked(g)?;
    let app_name = target.split('/').next().unwrap_or(target);
    let app = model.require_app(app_name)?;
    if !app.remote {
        return Err(sim_err!(
            "{target:?} belongs to the charm under test; its own hooks write its relation data"
        ));
    }
    if target.contains('/') {
        model.require_unit(target)?;
    }
    model.update_remote_data(target, &changes)?;
    for rel in model.relations()? {
        if rel.remote_app == app.name
            && (!target.contains('/') || model.in_scope(rel.id, target)?)
        {
            model.update_bag(rel.id, target, &changes)?;
        }
    }
    engine::enqueue_remote_change(&model, target)?;
    settle(&model, g)
}

// ----- secrets (the rules live in `super::secrets`) -----------------------------------

/// `charm-sim add-secret REMOTE_APP [--label L] [--grant REL]... k=v ...`:
/// a secret owned by a remote application, granted on its relations, as a
/// provider's leader creates one. Prints the URI.
pub fn add_secret(
    g: &Global,
    owner: &str,
    label: &str,
    grants: &[String],
    settings: &[String],
) -> Result<String> {
    let content = key_values(settings)?;
    let (model, _lock) = open_locked(g)?;
    let app = model.require_app(owner)?;
    if !app.remote {
        return Err(sim_err!(
            "{owner:?} is the charm under test; its own hooks create its secrets"
        ));
    }
    let mut relation_ids = Vec::new();
    for grant in grants {
        let number = grant.rsplit(':').next().unwrap_or_default();
        let id: i64 = number
            .parse()
            .map_err(|_| sim_err!("--grant {grant:?}: expected a relation id (e.g. 3 or db:3)"))?;
        relation_ids.push(id);
    }
    let uri = super::secrets::add_secret(&model, owner, None, label, &content)?;
    for id in relation_ids {
        super::secrets::grant(&model, &uri, id)?;
    }
    Ok(uri)
}

/// `charm-sim rotate-secret URI k=v ...`: the owner publishes a new
/// revision; consumers tracking an older one run `secret-changed`.
pub fn rotate_secret(g: &Global, uri: &str, settings: &[String]) -> Result<u32> {
    let content = key_values(settings)?;
    let (model, _lock) = open_locked(g)?;
    let found =
        super::secrets::secret(&model, uri)?.ok_or_else(|| sim_err!("secret {uri:?} not found"))?;
    if !model.require_app(&found.owner_app)?.remote {
        return Err(sim_err!(
            "{uri} belongs to the charm under test; its own hooks publish its revisions"
        ));
    }
    if super::providers::real_postgres(&model, &found.owner_app)?.is_some() {
        return Err(sim_err!(
            "{uri} belongs to {0}, whose passwords live in a real PostgreSQL: use `charm-sim rotate-password {0}`, which changes the role's password in the server too",
            found.owner_app
        ));
    }
    let (revision, _) = super::secrets::publish_revision(&model, uri, &content)?;
    settle(&model, g)?;
    Ok(revision)
}

/// `charm-sim rotate-password APP`: emulated provider `APP` gives each
/// relation's user a new password (in its real PostgreSQL too, when it has
/// one) and publishes it; consumers run `secret-changed`. One line per
/// relation: its id, and the secret's new revision.
pub fn rotate_password(g: &Global, app: &str) -> Result<Vec<String>> {
    let (model, _lock) = open_locked(g)?;
    let rotated = super::providers::rotate_password(&model, app)?;
    settle(&model, g)?;
    Ok(rotated
        .into_iter()
        .map(|(rel, uri, revision)| match uri {
            Some(uri) => format!("{}: {uri} revision {revision}", rel.key()),
            None => format!("{}: new password in the relation data", rel.key()),
        })
        .collect())
}

/// `charm-sim revoke-secret URI --relation REL`: the owner takes a grant
/// back; the other side's reads are refused from now on.
pub fn revoke_secret(g: &Global, uri: &str, relation: &str) -> Result<()> {
    let number = relation.rsplit(':').next().unwrap_or_default();
    let id: i64 = number.parse().map_err(|_| {
        sim_err!("--relation {relation:?}: expected a relation id (e.g. 3 or db:3)")
    })?;
    let (model, _lock) = open_locked(g)?;
    super::secrets::revoke(&model, uri, id)
}

/// Split `APP[:ENDPOINT]`.
fn split_endpoint(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once(':') {
        Some((app, ep)) => (app, Some(ep)),
        None => (spec, None),
    }
}

/// Resolve the two sides of `relate`/`unrelate` into (our app, our
/// endpoint, remote app, remote endpoint), in either order.
fn relation_sides(model: &Model, first: &str, second: &str) -> Result<(App, String, App, String)> {
    let (a, a_ep) = split_endpoint(first);
    let (b, b_ep) = split_endpoint(second);
    let app_a = model.require_app(a)?;
    let app_b = model.require_app(b)?;
    let ((ours, our_ep), (theirs, their_ep)) = match (app_a.remote, app_b.remote) {
        (false, true) => ((app_a, a_ep), (app_b, b_ep)),
        (true, false) => ((app_b, b_ep), (app_a, a_ep)),
        (true, true) => return Err(sim_err!("{a:?} and {b:?} are both remote applications; relate the charm to one of them")),
        (false, false) => return Err(sim_err!("charm-sim relates the charm to remote applications only ({a:?} and {b:?} are both charms)")),
    };
    let interface = theirs.interface.clone().unwrap_or_default();
    let meta = ours.meta()?;
    let endpoint = match our_ep {
        Some(ep) => {
            let spec = meta.endpoints.get(ep).ok_or_else(|| {
                sim_err!(
                    "application {:?} has no endpoint {ep:?} (metadata.yaml declares: {})",
                    ours.name,
                    meta.endpoints
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            if spec.interface != interface {
                return Err(sim_err!(
                    "cannot relate {}:{ep} (interface {:?}) to {} (interface {interface:?})",
                    ours.name,
                    spec.interface,
                    theirs.name
                ));
            }
            if spec.role == Role::Peers {
                return Err(sim_err!(
                    "{}:{ep} is a peer endpoint; it cannot be related to another application",
                    ours.name
                ));
            }
            ep.to_string()
        }
        None => {
            let candidates: Vec<&String> = meta
                .endpoints
                .iter()
                .filter(|(_, e)| e.interface == interface && e.role != Role::Peers)
                .map(|(n, _)| n)
                .collect();
            match candidates.as_slice() {
                [one] => one.to_string(),
                [] => return Err(sim_err!("{:?} has no endpoint with interface {interface:?}", ours.name)),
                many => {
                    return Err(sim_err!(
                        "ambiguous relation: {:?} has several endpoints with interface {interface:?} ({}); name one as {}:ENDPOINT",
                        ours.name,
                        many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                        ours.name
                    ))
                }
            }
        }
    };
    let their_endpoint = their_ep
        .map(str::to_string)
        .or_else(|| theirs.endpoint.clone())
        .unwrap_or_else(|| interface.clone());
    Ok((ours, endpoint, theirs, their_endpoint))
}

fn find_relation(
    model: &Model,
    ours: &App,
    endpoint: &str,
    theirs: &App,
) -> Result<Option<Relation>> {
    Ok(model
        .relations()?
        .into_iter()
        .find(|r| r.app == ours.name && r.endpoint == endpoint && r.remote_app == theirs.name))
}

/// `charm-sim relate APP:ENDPOINT REMOTE`.
pub fn relate(g: &Global, first: &str, second: &str) -> Result<()> {
    let (model, _lock) = open_locked(g)?;
    let (ours, endpoint, theirs, their_endpoint) = relation_sides(&model, first, second)?;
    if let Some(existing) = find_relation(&model, &ours, &endpoint, &theirs)? {
        let state = if existing.dying {
            " (and is being removed)"
        } else {
            ""
        };
        return Err(sim_err!(
            "relation {}:{endpoint} {} already exists{state}",
            ours.name,
            theirs.name
        ));
    }
    // Juju enforces `limit` (0 or absent: none) when relations are added.
    let limit = ours.meta()?.endpoints.get(&endpoint).and_then(|e| e.limit);
    if let Some(limit) = limit.filter(|&l| l > 0) {
        let current = model
            .relations()?
            .iter()
            .filter(|r| r.app == ours.name && r.endpoint == endpoint)
            .count();
        if current >= limit as usize {
            return Err(sim_err!(
                "establishing a new relation for {}:{endpoint} would exceed its maximum relation limit of {limit}",
                ours.name
            ));
        }
    }
    let interface = theirs.interface.clone().unwrap_or_default();
    let rel = model.add_relation(
        &ours.name,
        &endpoint,
        &theirs.name,
        &their_endpoint,
        &interface,
    )?;
    // The remote side enters scope first: its data is there when our
    // units hear of the relation. A subordinate's units are made now, one
    // for each unit of ours.
    model.update_bag(rel.id, &theirs.name, &model.remote_data(&theirs.name)?)?;
    for unit in engine::live_units(&model, &ours.name)? {
        super::cos::ensure_collector(&model, &rel, &unit.name)?;
    }
    for unit in model.units(&theirs.name)? {
        model.enter_scope(rel.id, &unit.name, &unit.address)?;
        model.update_bag(rel.id, &unit.name, &model.remote_data(&unit.name)?)?;
    }
    g.progress().say(format!(
        "related {}:{endpoint} to {}:{their_endpoint} as {}",
        ours.name,
        theirs.name,
        rel.key()
    ));
    engine::enqueue_relate(&model, &rel)?;
    settle(&model, g)
}

/// `charm-sim unrelate APP:ENDPOINT REMOTE`.
pub fn unrelate(g: &Global, first: &str, second: &str) -> Result<()> {
    let (model, _lock) = open_locked(g)?;
    let (ours, endpoint, theirs, _) = relation_sides(&model, first, second)?;
    let rel = find_relation(&model, &ours, &endpoint, &theirs)?.ok_or_else(|| {
        sim_err!(
            "relation {}:{endpoint} {} not found",
            ours.name,
            theirs.name
        )
    })?;
    if rel.dying {
        return Err(sim_err!("relation {} is already being removed", rel.key()));
    }
    remove_relation(&model, &rel)?;
    settle(&model, g)
}

/// Queue a relation's removal; one none of our units is in goes at once.
fn remove_relation(model: &Model, rel: &Relation) -> Result<()> {
    engine::enqueue_unrelate(model, rel)?;
    let any_of_ours = model
        .scope(rel.id)?
        .iter()
        .any(|u| u.split('/').next() == Some(rel.app.as_str()));
    if !any_of_ours {
        model.delete_relation(rel.id)?;
    }
    Ok(())
}

// ----- actions, exec, update-status, resolve ---------------------------------------------

/// Base64 (standard alphabet, padded): non-UTF-8 action output, and
/// `secret-get key#base64`.
pub(super) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Put captured output into action results as Juju does (§1.5).
fn capture_output(results: &mut Value, key: &str, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => results[key] = json!(text),
        Err(_) => {
            results[key] = json!(base64(bytes));
            results[format!("{key}-encoding")] = json!("base64");
        }
    }
}

/// `charm-sim run UNIT ACTION [k=v ...]`: returns whether it completed.
pub fn run_action(g: &Global, unit_name: &str, action: &str, args: &[String]) -> Result<bool> {
    let (model, _lock) = open_locked(g)?;
    let unit = charm_unit(&model, unit_name)?;
    let app = model.require_app(&unit.app)?;
    let meta = app.meta()?;
    if !meta.actions.contains_key(action) {
        return Err(sim_err!(
            "action {action:?} is not defined by charm {:?} (actions.yaml has: {})",
            meta.name,
            meta.actions.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    let params = actions::validate(meta, action, &actions::parse_params(args)?)?;
    // Let the unit settle first, so the action sees the model as the user
    // left it.
    settle(&model, g)?;
    let unit = model.require_unit(unit_name)?;
    if unit.dying {
        return Err(sim_err!("unit {unit_name:?} is being removed"));
    }
    let id = model.add_action(&unit.name, action, &params)?;
    model.set_agent_status(&unit.name, "executing", &format!("running action {action}"))?;
    g.progress()
        .say(format!("{}: running action {action} (id {id})", unit.name));
    let info = ContextInfo {
        hook_name: String::new(),
        dispatch_path: Some(format!("actions/{action}")),
        action_id: Some(id),
        action_name: Some(action.to_string()),
        ..ContextInfo::default()
    };
    let outcome = context::run(&model, &unit, &info, &Program::Handler, g.progress())?;
    model.set_agent_status(&unit.name, "idle", "")?;

    let record = model.action(id)?;
    let mut results = match record.results {
        Value::Object(m) => Value::Object(m),
        _ => json!({}),
    };
    capture_output(&mut results, "stdout", &outcome.stdout);
    capture_output(&mut results, "stderr", &outcome.stderr);
    results["return-code"] = json!(outcome.code.unwrap_or(-1));
    model.set_action_results(id, &results)?;
    let (status, message) = if outcome.skipped {
        (
            "failed".to_string(),
            format!("action not implemented on unit {:?}", unit.name),
        )
    } else if let Some(e) = &outcome.start_error {
        ("failed".to_string(), e.clone())
    } else if record.status == "failed" {
        ("failed".to_string(), record.message.clone())
    } else if !outcome.succeeded() {
        let message = match outcome.code {
            Some(c) => format!("exit status {c}"),
            None => "killed by a signal".to_string(),
        };
        ("failed".to_string(), message)
    } else {
        ("completed".to_string(), String::new())
    };
    model.set_action_status(id, &status, &message)?;
    let mut report = json!({
        "id": id.to_string(),
        "unit": unit.name,
        "action": action,
        "status": status,
        "results": results,
    });
    if !message.is_empty() {
        report["message"] = json!(message);
    }
    print!(
        "{}",
        serde_yaml_ng::to_string(&report).context("cannot render results")?
    );
    Ok(status == "completed")
}

/// `charm-sim exec UNIT -- CMD...`: returns the command's exit code.
pub fn exec(g: &Global, unit_name: &str, command: &[String]) -> Result<i32> {
    if command.is_empty() {
        return Err(sim_err!(
            "no command given (usage: charm-sim exec UNIT -- CMD...)"
        ));
    }
    let (model, _lock) = open_locked(g)?;
    let unit = charm_unit(&model, unit_name)?;
    let outcome = context::run(
        &model,
        &unit,
        &ContextInfo::default(),
        &Program::Command(command.to_vec()),
        Progress { quiet: true },
    )?;
    if let Some(e) = outcome.start_error {
        return Err(sim_err!("{e}"));
    }
    Ok(outcome.code.unwrap_or(128))
}

/// `charm-sim update-status`.
pub fn update_status(g: &Global) -> Result<()> {
    let (model, _lock) = open_locked(g)?;
    for app in model.apps()?.into_iter().filter(|a| !a.remote) {
        for unit in engine::live_units(&model, &app.name)? {
            engine::enqueue_hook(&model, &unit.name, Hook::Unit(UnitHook::UpdateStatus))?;
        }
    }
    let drained = settle(&model, g);
    print_units(&model, g)?;
    drained
}

/// `charm-sim resolve UNIT [--no-retry]`.
pub fn resolve(g: &Global, unit_name: &str, no_retry: bool) -> Result<()> {
    let (model, _lock) = open_locked(g)?;
    let unit = charm_unit(&model, unit_name)?;
    if unit.agent.current != "error" {
        return Err(sim_err!("unit {unit_name:?} is not in error"));
    }
    if no_retry {
        if let Some((seq, _)) = model.next_step::<engine::Step>(&unit.name)? {
            model.drop_step(seq)?;
        }
    }
    model.set_agent_status(&unit.name, "idle", "")?;
    let drained = settle(&model, g);
    print_units(&model, g)?;
    drained
}

// ----- machines ----------------------------------------------------------------------

/// `charm-sim reboot UNIT [--no-hooks]`: power the unit's machine off, boot
/// it again, then run `start` as Juju does after a reboot (with
/// `--no-hooks`, start is queued for the next command that runs hooks).
pub fn reboot(g: &Global, unit_name: &str, no_hooks: bool) -> Result<()> {
    let (model, _lock) = open_locked(g)?;
    let unit = charm_unit(&model, unit_name)?;
    if model.machines()? != Machines::Container {
        return Err(sim_err!(
            "{unit_name} has no machine to reboot: this model's units are directories \
             (deploy with --machines container)"
        ));
    }
    let progress = g.progress();
    let machine = Machine::new(model.dir(), unit.number);
    progress.say(format!("{}: powering off {}", unit.name, machine.name()));
    machine.poweroff()?;
    machine.note("rebooting");
    machine.boot(model.dir())?;
    let state = machine.wait_running()?;
    progress.say(format!(
        "{}: machine {} booted again ({state})",
        unit.name,
        machine.name()
    ));
    engine::enqueue_hook(&model, &unit.name, Hook::Unit(UnitHook::Start))?;
    if no_hooks {
        progress.say(format!(
            "{}: start is queued; it runs with the next command that runs hooks",
            unit.name
        ));
        return Ok(());
    }
    let drained = settle(&model, g);
    print_units(&model, g)?;
    drained
}

/// Where Debian's nagios-nrpe-plugin puts `check_nrpe`.
pub const CHECK_NRPE: &str = "/usr/lib/nagios/plugins/check_nrpe";

/// `charm-sim nagios`: ask every unit's nrpe, from this machine, for each
/// check its configuration defines (like the old charm's `make nagios`).
/// `false` when any check is not OK.
pub fn nagios(g: &Global) -> Result<bool> {
    let model = Model::open(&g.model_dir)?;
    if model.machines()? != Machines::Container {
        return Err(sim_err!(
            "this model's units are directories, with no NRPE server; \
             deploy with --machines container to run their checks"
        ));
    }
    if !Path::new(CHECK_NRPE).exists() {
        return Err(sim_err!(
            "{CHECK_NRPE} is missing (apt-get install nagios-nrpe-plugin)"
        ));
    }
    let mut all_ok = true;
    for app in model.apps()?.into_iter().filter(|a| !a.remote) {
        for unit in model.units(&app.name)? {
            let machine = Machine::new(model.dir(), unit.number);
            let checks = container::nrpe_checks(&machine);
            if checks.is_empty() {
                println!(
                    "{}  (no NRPE checks; relate nrpe-external-master)",
                    unit.name
                );
            }
            for check in checks {
                let out = std::process::Command::new(CHECK_NRPE)
                    .args(["-H", &unit.address, "-t", "30", "-c", &check])
                    .stdin(std::process::Stdio::null())
                    .output()
                    .context(format!("cannot run {CHECK_NRPE}"))?;
                let text = String::from_utf8_lossy(&out.stdout);
                let first = text.lines().next().unwrap_or("").trim();
                let state = match out.status.code() {
                    Some(0) => "OK",
                    Some(1) => "WARNING",
                    Some(2) => "CRITICAL",
                    _ => "UNKNOWN",
                };
                if state != "OK" {
                    all_ok = false;
                }
                println!("{}  {check}  {state}  {first}", unit.name);
            }
        }
    }
    Ok(all_ok)
}

// ----- status, show-unit -------------------------------------------------------------

/// `charm-sim status [--format json]`.
pub fn status(g: &Global, json_format: bool) -> Result<()> {
    let model = Model::open(&g.model_dir)?;
    if json_format {
        println!(
            "{}",
            serde_json::to_string_pretty(&status::status_json(&model)?)?
        );
    } else {
        print!("{}", status::status_table(&model)?);
    }
    Ok(())
}

/// `charm-sim show-unit UNIT`.
pub fn show_unit(g: &Global, unit_name: &str) -> Result<()> {
    let model = Model::open(&g.model_dir)?;
    let unit = model.require_unit(unit_name)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&status::show_unit(&model, &unit)?)?
    );
    Ok(())
}

// ----- destroy ------------------------------------------------------------------------

/// `charm-sim destroy`: remove every unit (departed/broken, stop, remove,
/// whatever the hooks do), end every process the model started, check no
/// listener is left on a unit address, and delete the model directory.
pub fn destroy(g: &Global) -> Result<()> {
    let progress = g.progress();
    if !g.model_dir.exists() {
        progress.say(format!(
            "no model in {}; nothing to destroy",
            g.model_dir.display()
        ));
        return Ok(());
    }
    let dir = g
        .model_dir
        .canonicalize()
        .context(format!("cannot resolve {}", g.model_dir.display()))?;
    let _lock = lock_model(&dir, progress)?;
    let mut addresses = Vec::new();
    if Model::exists(&dir) {
        let model = Model::open(&dir)?;
        for app in model.apps()?.into_iter().filter(|a| !a.remote) {
            for unit in model.units(&app.name)? {
                addresses.push(unit.address.clone());
                if unit.agent.current == "error" {
                    model.set_agent_status(&unit.name, "idle", "")?;
                }
                if !unit.dying {
                    engine::enqueue_remove_unit(&model, &unit)?;
                }
            }
        }
        // Hooks may fail here; destroy goes on regardless (like --force).
        engine::drain(&model, progress, OnFailure::Continue)?;
        for (lb, frontend) in super::haproxy::load_balancers(&model)? {
            addresses.push(frontend.ip().to_string());
            progress.say(format!("stopping {lb}'s haproxy"));
            if let Err(e) = super::haproxy::stop(&model, &lb) {
                // What is left of it names the model: the reaper ends it below.
                eprintln!("charm-sim: {lb}: {e}");
            }
        }
        for (collector, address) in super::cos::collectors(&model)? {
            addresses.push(address.ip().to_string());
            progress.say(format!("stopping {collector}'s Prometheus"));
            if let Err(e) = super::cos::stop(&model, &collector) {
                eprintln!("charm-sim: {collector}: {e}");
            }
        }
    }
    // Machines outlive their units (as with Juju); they go with the model.
    let mut problems = Vec::new();
    for machine in Machine::all(&dir) {
        progress.say(format!("powering off machine {}", machine.name()));
        if let Err(e) = machine.destroy() {
            problems.push(e.to_string());
        }
    }
    if !problems.is_empty() {
        return Err(sim_err!(
            "cannot remove the model's machines (the model directory is kept):\n{}",
            problems.join("\n")
        ));
    }
    let ended = reaper::end_processes_under(&dir)?;
    if ended > 0 {
        progress.say(format!("ended {ended} leftover process(es)"));
    }
    for listener in reaper::listeners_on(&addresses) {
        let owners = reaper::socket_owners(listener.inode);
        problems.push(format!(
            "{}:{} is still listening (process {})",
            listener.address,
            listener.port,
            if owners.is_empty() {
                "unknown".to_string()
            } else {
                owners
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ));
    }
    fs::remove_dir_all(&dir).context(format!("cannot remove {}", dir.display()))?;
    progress.say(format!("destroyed the model in {}", dir.display()));
    if !problems.is_empty() {
        return Err(sim_err!(
            "the model is gone, but listeners it did not start remain on its addresses:\n{}",
            problems.join("\n")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_with_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(&[0xff, 0xfe, 0x00, 0x80]), "//4AgA==");
    }

    #[test]
    fn non_utf8_output_is_base64_with_an_encoding_key() {
        let mut results = json!({});
        capture_output(&mut results, "stdout", &[0xff, 0x00]);
        capture_output(&mut results, "stderr", b"");
        assert_eq!(
            results,
            json!({"stdout": "/wA=", "stdout-encoding": "base64"})
        );
    }
}
