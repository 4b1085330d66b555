//! [`Context`]: runs one dispatch of a charm against a [`State`], the way
//! Juju runs one hook: a fresh charm, the real `wsgi_app::ops::run`, an
//! in-memory Juju behind the `Backend` trait, and a machine whose disk is a
//! temporary directory, whose commands are recorded and whose services are
//! fake. [`Chain`] runs several events in a row, each from the last one's
//! output state.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use wsgi_app::charm::fetch::DownloadOptions;
use wsgi_app::charm::machine::{
    CommandOutput, CommandSpec, HttpAnswer, Machine, ModelProxy, ServiceManagerKind,
};
use wsgi_app::charm::service::ServiceSpec;
use wsgi_app::ops::{
    Charm, Dispatch, EventVars, LogLevel, Outcome, RelationHook, Remembered, SecretHook, Status,
    Store, StoreError, UnitHook,
};

use crate::backend::{HookScope, MemoryBackend};
use crate::on::{Departing, EventSpec};
use crate::recorder::{
    answer_while_running, Answer, CommandEffect, CommandMatch, CommandRecorder, FakeProbe,
    FakeServices, HttpAnswerer, Rule, ServiceBook, ServiceCall,
};
use crate::schema::CharmMeta;
use crate::state::{State, StoreImage, MODEL_PROXY_KEYS};
use crate::HarnessError;

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
    pub outcome: Outcome,
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

    /// Start a chain of runs from `state`.
    pub fn chain(&self, state: State) -> Chain<'_, C> {
        Chain {
            ctx: self,
            state,
            outputs: Vec::new(),
        }
    }

    /// Deploy: install, `-relation-created` for each relation already in
    /// the State, leader-elected (leader) or leader-settings-changed
    /// (others), config-changed, start — Juju's order (reference §2.3).
    pub fn run_initial_hooks(&self, state: State) -> Result<Chain<'_, C>, HarnessError> {
        self.chain(state).run_initial_hooks()
    }

    /// Check `state` against the charm's metadata and fill in what the
    /// metadata decides (interfaces, the peer relation's application).
    fn checked(&self, mut state: State) -> Result<State, HarnessError> {
        self.meta.config_values(&state.config)?;
        if let Some(key) = state
            .model_config
            .keys()
            .find(|key| !MODEL_PROXY_KEYS.iter().any(|(known, _)| known == key))
        {
            return Err(HarnessError::Inconsistent(format!(
                "model config {key:?} is not modelled by the harness (known: {})",
                MODEL_PROXY_KEYS.map(|(known, _)| known).join(", ")
            )));
        }
        let mut seen = BTreeSet::new();
        let mut per_endpoint: BTreeMap<String, u32> = BTreeMap::new();
        for rel in &mut state.relations {
            if !seen.insert(rel.id) {
                return Err(HarnessError::Inconsistent(format!(
                    "two relations have id {}",
                    rel.id
                )));
            }
            let Some(endpoint) = self.meta.endpoints.get(&rel.endpoint) else {
                return Err(HarnessError::Inconsistent(format!(
                    "relation {} is on endpoint {:?}, which metadata.yaml does not declare (known: {})",
                    rel.id,
                    rel.endpoint,
                    self.meta.endpoints.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            };
            if rel.interface.is_empty() {
                rel.interface = endpoint.interface.clone();
            } else if rel.interface != endpoint.interface {
                return Err(HarnessError::Inconsistent(format!(
                    "relation {} says interface {:?}, but {} uses {:?}",
                    rel.id, rel.interface, rel.endpoint, endpoint.interface
                )));
            }
            let count = per_endpoint.entry(rel.endpoint.clone()).or_default();
            *count += 1;
            if endpoint.limit.is_some_and(|limit| *count > limit) {
                return Err(HarnessError::Inconsistent(format!(
                    "endpoint {} has limit {}; Juju would refuse relation {}",
                    rel.endpoint,
                    endpoint.limit.unwrap_or_default(),
                    rel.id
                )));
            }
            if self.meta.is_peer(&rel.endpoint) {
                if rel.remote_app.is_empty() {
                    rel.remote_app = self.meta.name.clone();
                }
                if rel.remote_app != self.meta.name {
                    return Err(HarnessError::Inconsistent(format!(
                        "peer relation {} must be with {}, not {}",
                        rel.id, self.meta.name, rel.remote_app
                    )));
                }
                if rel.remote_units.contains_key(&state.unit_id) {
                    return Err(HarnessError::Inconsistent(format!(
                        "peer relation {} lists this unit ({}) among its peers",
                        rel.id, state.unit_id
                    )));
                }
            } else if rel.remote_app.is_empty() || rel.remote_app == self.meta.name {
                return Err(HarnessError::Inconsistent(format!(
                    "relation {} needs a remote application other than {}",
                    rel.id, self.meta.name
                )));
            }
        }
        Ok(state)
    }

    fn check_event(&self, event: &EventSpec, state: &State) -> Result<(), HarnessError> {
        match event {
            EventSpec::Unit(UnitHook::LeaderElected) if !state.leader => {
                Err(HarnessError::Inconsistent(
                    "leader-elected goes to the leader only: set State.leader = true".into(),
                ))
            }
            EventSpec::Unit(UnitHook::LeaderSettingsChanged) if state.leader => {
                Err(HarnessError::Inconsistent(
                    "leader-settings-changed goes to non-leaders only".into(),
                ))
            }
            EventSpec::Relation {
                id, remote_unit, ..
            } => {
                let rel = state.relation(*id).ok_or_else(|| {
                    HarnessError::Inconsistent(format!("the State has no relation {id}"))
                })?;
                if let Some(n) = remote_unit {
                    if !rel.remote_units.contains_key(n) {
                        return Err(HarnessError::Inconsistent(format!(
                            "relation {id} has no remote unit {n} (add it with State::add_remote_unit)"
                        )));
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn next_run(&self) -> u32 {
        let n = self.runs.get() + 1;
        self.runs.set(n);
        n
    }

    /// The environment Juju would give the charm for `event` in `state`
    /// (reference §1.2 and Appendix B).
    pub fn hook_env(
        &self,
        event: &EventSpec,
        state: &State,
    ) -> Result<BTreeMap<String, String>, HarnessError> {
        self.check_event(event, state)?;
        let run = self.next_run();
        let unit = self.unit_name(state);
        let agent = format!("unit-{}-{}", self.meta.name, state.unit_id);
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        let mut set = |k: &str, v: String| {
            env.insert(k.to_string(), v);
        };
        let charm_dir = format!("/var/lib/juju/agents/{agent}/charm");
        set("CHARM_DIR", charm_dir.clone());
        set("JUJU_CHARM_DIR", charm_dir);
        set(
            "JUJU_AGENT_SOCKET_ADDRESS",
            format!("@/var/lib/juju/agents/{agent}/agent.socket"),
        );
        set("JUJU_AGENT_SOCKET_NETWORK", "unix".into());
        set("JUJU_UNIT_NAME", unit.clone());
        set("JUJU_MODEL_NAME", state.model_name.clone());
        set("JUJU_MODEL_UUID", state.model_uuid.clone());
        set("JUJU_API_ADDRESSES", "192.0.2.254:17070".into());
        set("JUJU_MACHINE_ID", state.unit_id.to_string());
        set("JUJU_PRINCIPAL_UNIT", String::new());
        set("JUJU_AVAILABILITY_ZONE", String::new());
        set("JUJU_VERSION", self.juju_version.clone());
        set("CLOUD_API_VERSION", String::new());
        for (key, variable) in MODEL_PROXY_KEYS {
            set(
                variable,
                state.model_config.get(key).cloned().unwrap_or_default(),
            );
        }
        set("JUJU_SLA", "unsupported".into());
        set("APT_LISTCHANGES_FRONTEND", "none".into());
        set("DEBIAN_FRONTEND", "noninteractive".into());
        set("LANG", "C.UTF-8".into());
        set("TERM", "tmux-256color".into());
        set(
            "PATH",
            format!("/var/lib/juju/tools/{agent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        );
        let (path, hook_name) = match event {
            EventSpec::Unit(hook) => (
                format!("hooks/{}", hook.as_ref()),
                hook.as_ref().to_string(),
            ),
            EventSpec::Relation {
                hook,
                id,
                remote_unit,
                departing,
            } => {
                let rel = state.relation(*id).expect("checked above");
                let name = format!("{}-relation-{}", rel.endpoint, hook.as_ref());
                set("JUJU_RELATION", rel.endpoint.clone());
                set("JUJU_RELATION_ID", rel.juju_id());
                let remote_app = if rel.remote_app.is_empty() {
                    self.meta.name.clone()
                } else {
                    rel.remote_app.clone()
                };
                set("JUJU_REMOTE_APP", remote_app.clone());
                let remote = remote_unit.map(|n| format!("{remote_app}/{n}"));
                // Present but empty for created, broken and app-level changed.
                set("JUJU_REMOTE_UNIT", remote.clone().unwrap_or_default());
                if *hook == RelationHook::Departed {
                    let leaving = match departing {
                        Departing::Remote => remote.unwrap_or_default(),
                        Departing::ThisUnit => unit.clone(),
                    };
                    set("JUJU_DEPARTING_UNIT", leaving);
                }
                (format!("hooks/{name}"), name)
            }
            EventSpec::Action { name, id, .. } => {
                let id = id.clone().unwrap_or_else(|| run.to_string());
                set("JUJU_ACTION_NAME", name.clone());
                set("JUJU_ACTION_UUID", id.clone());
                set("JUJU_ACTION_TAG", format!("action-{id}"));
                (format!("actions/{name}"), String::new())
            }
            EventSpec::Storage {
                hook,
                storage,
                index,
                location,
            } => {
                let name = format!("{storage}-storage-{}", hook.as_ref());
                set("JUJU_STORAGE_ID", format!("{storage}/{index}"));
                set("JUJU_STORAGE_LOCATION", location.clone());
                set("JUJU_STORAGE_KIND", "filesystem".into());
                (format!("hooks/{name}"), name)
            }
            EventSpec::Secret {
                hook,
                id,
                label,
                revision,
            } => {
                let name = format!("secret-{}", hook.as_ref());
                set("JUJU_SECRET_ID", id.clone());
                set("JUJU_SECRET_LABEL", label.clone());
                let carries_revision = matches!(hook, SecretHook::Expired | SecretHook::Remove);
                if let Some(r) = revision.filter(|r| *r > 0 && carries_revision) {
                    set("JUJU_SECRET_REVISION", r.to_string());
                }
                (format!("hooks/{name}"), name)
            }
            EventSpec::Path(path) => {
                let hook = path.strip_prefix("hooks/").unwrap_or_default();
                (path.clone(), hook.to_string())
            }
        };
        let context_name = if hook_name.is_empty() {
            path.rsplit('/').next().unwrap_or_default().to_string()
        } else {
            hook_name.clone()
        };
        set(
            "JUJU_CONTEXT_ID",
            format!(
                "{unit}-{context_name}-{:012x}",
                0x5eed_0000_u64 + u64::from(run)
            ),
        );
        set("JUJU_HOOK_NAME", hook_name);
        set("JUJU_DISPATCH_PATH", path);
        Ok(env)
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
                proxy: ModelProxy::from_hook_env(|var| env.get(var).cloned()),
                ..DownloadOptions::default()
            },
            // Small, so a test's decompression bomb is stopped in moments.
            extract: wsgi_app::charm::archive::ExtractLimits {
                max_entries: 2_000,
                max_unpacked_bytes: 16 * 1024 * 1024,
                ..Default::default()
            },
            charm_dir: self.charm_dir.clone(),
            cpus: self.cpus,
            crash_at: None,
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
        outcome: Outcome {
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

/// Juju tells a unit of each relation before anything else happens on it
/// (`-created`) and of its end (`-broken`), and the framework trusts that
/// (`ops::Remembered`). A State whose relations differ from what the unit
/// was told is a history Juju cannot produce: refuse it, rather than let
/// the charm act on relations it could never have seen.
fn check_relations_told(
    told: &Remembered,
    event: &EventSpec,
    state: &State,
) -> Result<(), HarnessError> {
    if matches!(
        event,
        EventSpec::Unit(UnitHook::Install | UnitHook::Start | UnitHook::UpgradeCharm)
    ) {
        return Ok(());
    }
    let named = match event {
        EventSpec::Relation { hook, id, .. } if *hook != RelationHook::Broken => Some(*id),
        _ => None,
    };
    // Juju runs every pending -created before any other hook, so other
    // relations may still be untold while one of those runs.
    let telling = matches!(
        event,
        EventSpec::Relation {
            hook: RelationHook::Created,
            ..
        }
    );
    for (endpoint, ids) in &told.relations {
        for rel in state.relations.iter().filter(|r| &r.endpoint == endpoint) {
            if !ids.contains(&rel.id) && named != Some(rel.id) && !telling {
                return Err(HarnessError::Inconsistent(format!(
                    "relation {endpoint}:{id} is in the State but the unit was never told of it: run on::relation_created({id}) first, as Juju does",
                    id = rel.id
                )));
            }
        }
        for id in ids {
            if !state.relations.iter().any(|r| r.id == *id) {
                return Err(HarnessError::Inconsistent(format!(
                    "relation {endpoint}:{id} is gone from the State but the unit never ran its -broken hook: run on::relation_broken({id}) on the State that still has it"
                )));
            }
        }
    }
    Ok(())
}

/// Membership changes Juju makes once a departed or broken hook is done:
/// the departed unit leaves the list (its data stays readable), and a
/// broken relation is gone.
fn settle_relation_membership(event: &EventSpec, state: &mut State) {
    let EventSpec::Relation {
        hook,
        id,
        remote_unit,
        ..
    } = event
    else {
        return;
    };
    match hook {
        RelationHook::Departed => {
            if let (Some(rel), Some(n)) = (state.relation_mut(*id), remote_unit) {
                if let Some(bag) = rel.remote_units.remove(n) {
                    rel.departed_units.insert(*n, bag);
                }
            }
        }
        RelationHook::Broken => state.relations.retain(|r| r.id != *id),
        _ => {}
    }
}

/// Several events in a row, each run from the previous output's state. A
/// chain stops at the first dispatch that fails (as Juju stops on a hook
/// error): `run` returns [`HarnessError::HookFailed`] with its output.
pub struct Chain<'c, C: Charm> {
    ctx: &'c Context<C>,
    state: State,
    outputs: Vec<Output>,
}

impl<'c, C: Charm> Chain<'c, C> {
    pub fn run(mut self, event: EventSpec) -> Result<Self, HarnessError> {
        let label = event.label();
        let output = self.ctx.run(event, self.state.clone())?;
        if !output.succeeded() {
            return Err(HarnessError::HookFailed {
                event: label,
                output: Box::new(output),
            });
        }
        self.state = output.state.clone();
        self.outputs.push(output);
        Ok(self)
    }

    /// Change the state between runs, e.g. a remote unit writing its bag:
    /// `.update_state(|s| s.update_remote_unit_data(1, 0, bag([...])))`.
    pub fn update_state(mut self, change: impl FnOnce(State) -> State) -> Self {
        self.state = change(self.state);
        self
    }

    /// See [`Context::run_initial_hooks`].
    pub fn run_initial_hooks(self) -> Result<Self, HarnessError> {
        let mut ids: Vec<u32> = self.state.relations.iter().map(|r| r.id).collect();
        ids.sort_unstable();
        let leader = self.state.leader;
        let mut chain = self.run(crate::on::install())?;
        for id in ids {
            chain = chain.run(crate::on::relation_created(id))?;
        }
        chain = chain.run(if leader {
            crate::on::leader_elected()
        } else {
            crate::on::leader_settings_changed()
        })?;
        chain
            .run(crate::on::config_changed())?
            .run(crate::on::start())
    }

    /// `juju integrate`, for a relation already in the State: created, then
    /// [`Chain::join_units`].
    pub fn relate(self, id: u32) -> Result<Self, HarnessError> {
        self.run(crate::on::relation_created(id))?.join_units(id)
    }

    /// The hooks Juju runs as a relation's remote side shows up: the
    /// application-level changed if the remote app bag has data, then, for
    /// each remote unit in order, joined followed by changed.
    pub fn join_units(self, id: u32) -> Result<Self, HarnessError> {
        let rel = self
            .state
            .relation(id)
            .ok_or_else(|| HarnessError::Inconsistent(format!("the State has no relation {id}")))?;
        let app_data = !rel.remote_app_data.is_empty();
        let mut units: Vec<(String, u32)> = rel
            .remote_units
            .keys()
            .map(|n| (rel.remote_unit_name(*n), *n))
            .collect();
        // Juju orders unit names as strings.
        units.sort();
        let mut chain = self;
        if app_data {
            chain = chain.run(crate::on::relation_changed(id, None))?;
        }
        for (_, n) in units {
            chain = chain
                .run(crate::on::relation_joined(id, n))?
                .run(crate::on::relation_changed(id, Some(n)))?;
        }
        Ok(chain)
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn into_state(self) -> State {
        self.state
    }

    /// Every output so far, oldest first.
    pub fn outputs(&self) -> &[Output] {
        &self.outputs
    }

    /// The latest output. Panics if nothing has run yet.
    pub fn last(&self) -> &Output {
        self.outputs.last().expect("the chain has not run anything")
    }

    pub fn into_last(mut self) -> Output {
        self.outputs.pop().expect("the chain has not run anything")
    }
}
