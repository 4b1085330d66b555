//! [`Context`]: runs one dispatch of a charm against a [`State`], the way
//! Juju runs one hook: a fresh charm, the real `wsgi_app::ops::run`, an
//! in-memory Juju behind the `Backend` trait, and a machine whose disk is a
//! temporary directory, whose commands are recorded and whose services are
//! fake. [`Chain`] runs several events in a row, each from the last one's
//! output state.
//!
//! Here: the [`Context`] itself and one run. Around it: `env` (the hook
//! environment), `checks` (what Juju could not produce is refused) and
//! `chain` (runs in a row).

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use wsgi_app::ops::{
    Charm, Dispatch, DispatchOutcome, EventVars, LogLevel, RelationHook, Remembered, SecretHook,
    Status, Store, StoreError, UnitHook,
};
use wsgi_app::workload::fetch::DownloadOptions;
use wsgi_app::workload::machine::{
    CommandOutput, CommandSpec, HttpAnswer, Machine, ServiceManagerKind,
};
use wsgi_app::workload::service::ServiceSpec;

use crate::backend::{HookScope, MemoryBackend};
use crate::on::{Departing, EventSpec};
use crate::recorder::{
    answer_while_running, Answer, CommandEffect, CommandMatch, CommandRecorder, FakeProbe,
    FakeServices, HttpAnswerer, Rule, ServiceBook, ServiceCall,
};
use crate::schema::CharmMeta;
use crate::state::{State, StoreImage, MODEL_PROXY_KEYS};
use crate::HarnessError;

mod chain;
mod checks;
mod env;

pub use chain::Chain;
use checks::{check_relations_told, settle_relation_membership};

/// The charm directory of this workspace (metadata.yaml, config.yaml,
/// actions.yaml, templates/, files/).
pub const WORKSPACE_CHARM_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// What an action did, as `juju run` would report it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionOutput {
    /// The params the charm saw: validated, with defaults filled in.
    pub params: Map<String, Value>,
    /// `action-set` results, plus Juju's own `return-code`.
    pub results: BTreeMap<String, String>,
    /// `action-log` messages.
    pub logs: Vec<String>,
    /// Why the action failed: Juju refused the params, the charm called
    /// `action-fail`, or the dispatch exited non-zero (`exit status N`).
    pub failure: Option<String>,
}

/// Everything one dispatch produced.
#[derive(Debug, Clone)]
pub struct Output {
    /// The next state: run the next event from it.
    pub state: State,
    /// How `ops::run` ended (exit code 0 means Juju commits the hook).
    pub outcome: DispatchOutcome,
    /// False when Juju refused to run the action (bad params): the charm
    /// never ran.
    pub dispatched: bool,
    /// Every status the unit was given during the dispatch, in order, by
    /// the charm or by Juju; the last one is `state.unit_status`.
    pub unit_status_history: Vec<Status>,
    pub app_status_history: Vec<Status>,
    /// `juju-log` messages.
    pub logs: Vec<(LogLevel, String)>,
    pub action: Option<ActionOutput>,
    /// Commands the charm ran (secret environments redacted).
    pub commands: Vec<CommandSpec>,
    /// Calls the charm made on the service manager.
    pub service_calls: Vec<ServiceCall>,
    /// Every hook-tool call, in argv form (`config-get --format=json`).
    pub tool_calls: Vec<String>,
    /// Deferred events left in the store, oldest first.
    pub deferred: Vec<EventVars>,
}

impl Output {
    /// The charm ran and exited 0.
    pub fn succeeded(&self) -> bool {
        self.dispatched && self.outcome.exit_code == 0
    }

    /// How many times the charm called hook tool `tool`.
    pub fn calls_to(&self, tool: &str) -> usize {
        self.tool_calls
            .iter()
            .filter(|c| c.split(' ').next() == Some(tool))
            .count()
    }

    /// Run `event` from this output's state.
    pub fn then<C: Charm>(
        &self,
        ctx: &Context<C>,
        event: EventSpec,
    ) -> Result<Output, HarnessError> {
        ctx.run(event, self.state.clone())
    }

    /// A one-line account of a failure, for error messages.
    pub fn failure_summary(&self) -> String {
        if !self.dispatched {
            let why = self.action.as_ref().and_then(|a| a.failure.clone());
            return format!("not dispatched: {}", why.unwrap_or_default());
        }
        format!(
            "exit {}: {}",
            self.outcome.exit_code,
            self.outcome.error.as_deref().unwrap_or("no error message")
        )
    }
}

/// Runs a charm, one dispatch at a time. Built from the charm's directory
/// and a factory that makes a fresh charm from the machine it acts on.
pub struct Context<C: Charm> {
    meta: CharmMeta,
    charm_dir: PathBuf,
    factory: Box<dyn Fn(Machine) -> C>,
    rules: Vec<Rule>,
    programs: BTreeSet<String>,
    http: HttpAnswerer,
    juju_version: String,
    service_manager: ServiceManagerKind,
    bind_address: String,
    cpus: usize,
    runs: Cell<u32>,
}

impl<C: Charm> Context<C> {
    /// Load metadata.yaml, config.yaml and actions.yaml from `charm_dir`.
    /// Panics with the reason if they cannot be read: a test cannot go on.
    pub fn new(charm_dir: impl AsRef<Path>, factory: impl Fn(Machine) -> C + 'static) -> Self {
        match Self::try_new(charm_dir, factory) {
            Ok(ctx) => ctx,
            Err(e) => panic!("cannot load the charm: {e}"),
        }
    }

    pub fn try_new(
        charm_dir: impl AsRef<Path>,
        factory: impl Fn(Machine) -> C + 'static,
    ) -> Result<Self, HarnessError> {
        let meta = CharmMeta::load(charm_dir.as_ref())?;
        Ok(Self::with_meta(meta, charm_dir, factory))
    }

    /// Use metadata given in the test (see [`CharmMeta::from_yaml`]);
    /// `charm_dir` is only handed to the charm as `Machine::charm_dir`.
    pub fn with_meta(
        meta: CharmMeta,
        charm_dir: impl AsRef<Path>,
        factory: impl Fn(Machine) -> C + 'static,
    ) -> Self {
        Context {
            meta,
            charm_dir: charm_dir.as_ref().to_path_buf(),
            factory: Box::new(factory),
            rules: Vec::new(),
            programs: ["python3", "apt-get", "make"]
                .into_iter()
                .map(str::to_string)
                .collect(),
            http: Arc::new(answer_while_running),
            juju_version: "3.6.4".into(),
            service_manager: ServiceManagerKind::Systemd,
            bind_address: "0.0.0.0".into(),
            cpus: 2,
            runs: Cell::new(0),
        }
    }

    pub fn meta(&self) -> &CharmMeta {
        &self.meta
    }

    /// This unit's name in `state`, e.g. `wsgi-app/0`.
    pub fn unit_name(&self, state: &State) -> String {
        format!("{}/{}", self.meta.name, state.unit_id)
    }

    /// Answer commands matching `matcher` (a word prefix such as `"make"`
    /// or `"python3 -m venv"`, or [`CommandMatch::when`]) with `output`.
    /// Newer rules win over older ones; unmatched commands succeed silently.
    pub fn on_command(
        &mut self,
        matcher: impl Into<CommandMatch>,
        output: CommandOutput,
    ) -> &mut Self {
        self.rules.push(Rule {
            matcher: matcher.into(),
            answer: Answer::Output(output),
        });
        self
    }

    /// Like [`Context::on_command`], but run `effect` with the command and
    /// the machine root, e.g. to create `<venv>/bin/python` for a venv
    /// creation the charm then checks.
    pub fn on_command_do(
        &mut self,
        matcher: impl Into<CommandMatch>,
        effect: impl Fn(&CommandSpec, &Path) -> CommandOutput + Send + Sync + 'static,
    ) -> &mut Self {
        let effect: CommandEffect = Arc::new(effect);
        self.rules.push(Rule {
            matcher: matcher.into(),
            answer: Answer::Effect(effect),
        });
        self
    }

    /// Decide what the app answers to the charm's health checks. The
    /// closure gets the request path and the spec of the running service
    /// (None when stopped). Default: `200 OK` "It works!" while running,
    /// connection refused otherwise.
    pub fn on_http_get(
        &mut self,
        answer: impl Fn(&str, Option<&ServiceSpec>) -> Result<HttpAnswer, String>
            + Send
            + Sync
            + 'static,
    ) -> &mut Self {
        self.http = Arc::new(answer);
        self
    }

    /// Make `Runner::which(program)` find it (default: python3, apt-get, make).
    pub fn program_present(&mut self, program: &str) -> &mut Self {
        self.programs.insert(program.to_string());
        self
    }

    /// Make `Runner::which(program)` miss it (`uv` is absent by default).
    pub fn program_absent(&mut self, program: &str) -> &mut Self {
        self.programs.remove(program);
        self
    }

    pub fn juju_version(&mut self, version: &str) -> &mut Self {
        self.juju_version = version.to_string();
        self
    }

    pub fn service_manager_kind(&mut self, kind: ServiceManagerKind) -> &mut Self {
        self.service_manager = kind;
        self
    }

    pub fn bind_address(&mut self, address: &str) -> &mut Self {
        self.bind_address = address.to_string();
        self
    }

    pub fn cpus(&mut self, cpus: usize) -> &mut Self {
        self.cpus = cpus;
        self
    }

    fn next_run(&self) -> u32 {
        let n = self.runs.get() + 1;
        self.runs.set(n);
        n
    }

    /// Run one event against `state`. `Err` means the test setup is wrong
    /// (a config value of the wrong type, an undeclared endpoint, ...), not
    /// that the charm failed: that is `Output::outcome`.
    pub fn run(&self, event: EventSpec, state: State) -> Result<Output, HarnessError> {
        let state = self.checked(state)?;
        let env = self.hook_env(&event, &state)?;

        let mut scope = HookScope {
            secrets_unavailable: !wsgi_app::ops::backend::juju_has_secrets(&self.juju_version),
            ..HookScope::default()
        };
        if let EventSpec::Action { name, params, .. } = &event {
            match self.meta.action_params(name, params)? {
                Ok(params) => scope.action = Some(params),
                Err(refusal) => return Ok(refused(state, refusal.to_string())),
            }
        }
        if let EventSpec::Relation {
            hook,
            id,
            remote_unit,
            ..
        } = &event
        {
            match hook {
                RelationHook::Broken => scope.breaking = Some(*id),
                RelationHook::Departed => {
                    let rel = state.relation(*id).expect("checked");
                    let n = remote_unit.expect("departed names a unit");
                    scope.hidden_unit = Some((*id, rel.remote_unit_name(n)));
                }
                _ => {}
            }
        }

        // The store lives outside the machine root, as the charm's state
        // lives in the agent's charm directory: one fresh file per run,
        // loaded from and saved back into the State.
        let store_dir = tempfile::Builder::new()
            .prefix("harness-store-")
            .tempdir()?;
        let store_path = store_dir.path().join(".unit-state.db");
        if let Some(image) = &state.stored_state {
            std::fs::write(&store_path, image.bytes())?;
        }

        let book = Arc::new(Mutex::new(ServiceBook {
            services: state.services.clone(),
            fail_next_start: state.service_fails_to_start,
            calls: Vec::new(),
        }));
        let commands = Arc::new(Mutex::new(Vec::new()));
        // The charm's binary as Juju unpacks it on the machine: a stand-in,
        // since the fake service manager runs nothing; the charm puts it in
        // place for its metrics exporter like any other file.
        let charm_binary = state.machine.root().join("var/lib/juju/charm/dispatch");
        if !charm_binary.exists() {
            std::fs::create_dir_all(charm_binary.parent().expect("a parent"))?;
            std::fs::write(&charm_binary, "#!/bin/false\n")?;
        }
        let machine = Machine {
            root: state.machine.root().to_path_buf(),
            bind_address: self.bind_address.clone(),
            service_manager: self.service_manager,
            services: Box::new(FakeServices::new(book.clone(), self.http.clone())),
            runner: std::rc::Rc::new(CommandRecorder::new(
                self.rules.clone(),
                self.programs.clone(),
                state.machine.root().to_path_buf(),
                commands.clone(),
            )),
            probe: Box::new(FakeProbe::new(book.clone(), self.http.clone())),
            // Short, so a test of a dead server fails fast.
            download: DownloadOptions {
                connect_timeout: std::time::Duration::from_millis(500),
                read_timeout: std::time::Duration::from_millis(500),
                total_timeout: std::time::Duration::from_secs(5),
                max_attempts: 2,
                first_backoff: std::time::Duration::from_millis(20),
                // Read from the hook environment as `main` reads it.
                proxy: wsgi_app::charm::proxy::from_hook_env(|var| env.get(var).cloned()),
                ..DownloadOptions::default()
            },
            // Small, so a test's decompression bomb is stopped in moments.
            extract: wsgi_app::workload::archive::ExtractLimits {
                max_entries: 2_000,
                max_unpacked_bytes: 16 * 1024 * 1024,
                ..Default::default()
            },
            charm_dir: self.charm_dir.clone(),
            cpus: self.cpus,
            crash_at: None,
            // As `main` hands it over, for the app account when not root.
            invoking_user: std::env::var("USER").ok(),
            charm_binary: Some(charm_binary),
        };

        let mut charm = (self.factory)(machine);
        if let Some(image) = &state.stored_state {
            let told = read_store(&store_dir, image.bytes(), &charm, |store| {
                store.remembered()
            })
            .unwrap_or_default();
            check_relations_told(&told, &event, &state)?;
        }

        let hook = match &event {
            EventSpec::Unit(h) => Some(*h),
            _ => None,
        };
        let mut backend = MemoryBackend::new(&self.meta, state, scope);
        // What Juju shows before the hook runs (reference §1.4).
        match hook {
            Some(UnitHook::Install) if !backend.charm_set_unit_status() => {
                backend.juju_sets_unit_status(Status::maintenance("installing charm software"))
            }
            Some(UnitHook::Stop) => {
                backend.juju_sets_unit_status(Status::maintenance("stopping charm software"))
            }
            Some(UnitHook::Remove) => backend
                .juju_sets_unit_status(Status::maintenance("cleaning up prior to charm deletion")),
            _ => {}
        }

        let dispatch = Dispatch::from_env(env, None).map_err(|e| {
            HarnessError::Inconsistent(format!("the harness built a bad environment: {e}"))
        })?;
        let outcome = wsgi_app::ops::run(&mut charm, &mut backend, &dispatch, &store_path);
        let succeeded = outcome.exit_code == 0;

        // What Juju shows after a successful hook (reference §1.4).
        match hook {
            Some(UnitHook::Start) if succeeded && !backend.charm_set_unit_status() => {
                backend.juju_sets_unit_status(Status::unknown())
            }
            Some(UnitHook::Stop) if succeeded => {
                backend.juju_sets_unit_status(Status::maintenance(""))
            }
            Some(UnitHook::Remove) if succeeded => backend
                .juju_sets_unit_status(Status::new(wsgi_app::ops::StatusName::Terminated, "")),
            _ => {}
        }

        let stored = std::fs::read(&store_path).unwrap_or_default();
        let deferred = read_store(&store_dir, &stored, &charm, |store| {
            Ok(store
                .notices()?
                .into_iter()
                .map(|notice| notice.event)
                .collect())
        })
        .unwrap_or_default();
        drop(charm);

        let (mut state, record) = backend.finish(succeeded);
        state.stored_state = (!stored.is_empty()).then(|| StoreImage::from_bytes(stored));
        let book = std::mem::take(&mut *book.lock().expect("service lock"));
        state.services = book.services;
        state.service_fails_to_start = book.fail_next_start;
        if succeeded {
            settle_relation_membership(&event, &mut state);
        }

        let mut action = record.action;
        if let Some(action) = &mut action {
            action
                .results
                .insert("return-code".into(), outcome.exit_code.to_string());
            if !succeeded && action.failure.is_none() {
                action.failure = Some(format!("exit status {}", outcome.exit_code));
            }
        }
        let commands = std::mem::take(&mut *commands.lock().expect("recorder lock"));
        Ok(Output {
            state,
            outcome,
            dispatched: true,
            unit_status_history: record.unit_status_history,
            app_status_history: record.app_status_history,
            logs: record.logs,
            action,
            commands,
            service_calls: book.calls,
            tool_calls: record.tool_calls,
            deferred,
        })
    }
}

/// Juju refused the action's params: nothing ran, nothing changed.
fn refused(state: State, why: String) -> Output {
    Output {
        state,
        outcome: DispatchOutcome {
            exit_code: 0,
            error: None,
            output: None,
        },
        dispatched: false,
        unit_status_history: Vec::new(),
        app_status_history: Vec::new(),
        logs: Vec::new(),
        action: Some(ActionOutput {
            failure: Some(why),
            ..ActionOutput::default()
        }),
        commands: Vec::new(),
        service_calls: Vec::new(),
        tool_calls: Vec::new(),
        deferred: Vec::new(),
    }
}

/// Read the store through the framework's own `Store`, on a throw-away
/// copy (opening migrates; the copy absorbs that). `None` when there is no
/// store yet, or the charm refuses it (newer than the charm).
fn read_store<C: Charm, T>(
    dir: &tempfile::TempDir,
    stored: &[u8],
    charm: &C,
    read: impl FnOnce(&Store) -> Result<T, StoreError>,
) -> Option<T> {
    if stored.is_empty() {
        return None;
    }
    let copy = dir.path().join("read-only-copy.db");
    std::fs::write(&copy, stored).ok()?;
    let (store, _) = Store::open(&copy, charm.migrations()).ok()?;
    read(&store).ok()
}
