//! One dispatch, end to end: parse the event, open the store, replay
//! deferred notices, hand the event to the charm, collect its status, and
//! commit only if all of that succeeded.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Map, Value};

use super::backend::{Backend, LogLevel, ModelError, Status};
use super::event::{event_vars, Event, EventError, EventVars, Name, RelationHook, UnitHook};
use super::model::Model;
use super::store::{Migration, Opened, Store};

/// An error a handler cannot deal with: the dispatch fails and Juju retries.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The charm as the framework sees it. A fresh value is built for every
/// dispatch, as Juju starts a fresh process for every hook.
pub trait Charm {
    type Endpoint: Name;
    type Action: Name;

    /// The charm's stored-state schema.
    fn migrations(&self) -> &'static [Migration];

    /// Act on one event. Replayed deferred events come through here too.
    fn handle(
        &mut self,
        ctx: &mut HookContext<'_, '_, Self::Endpoint, Self::Action>,
        event: &Event<Self::Endpoint, Self::Action>,
    ) -> Result<(), HandlerError>;

    /// The params of an action an operator runs as a command in the unit's
    /// hook context (`juju exec -- "SYMLINK=r2 actions/set-current-symlink"`),
    /// read from that command's environment. Juju validated nothing: the
    /// handler checks them as it checks any params. By default an action
    /// runs only as a Juju action.
    fn command_action_params(
        &self,
        action: Self::Action,
        env: &BTreeMap<String, String>,
    ) -> Result<Map<String, Value>, String> {
        let _ = env;
        let name = action.as_ref();
        Err(format!(
            "{name} runs as a Juju action only: juju run <unit> {name} (Juju 2.9: juju run-action <unit> {name} --wait)"
        ))
    }

    /// The unit's status once the dispatch's work is done.
    fn collect_status(
        &mut self,
        ctx: &mut HookContext<'_, '_, Self::Endpoint, Self::Action>,
    ) -> Result<Status, HandlerError>;
}

/// What a handler works with: Juju (through the model), the stored state,
/// and, during an action, the action's params and results.
pub struct HookContext<'s, 'b, E, A> {
    pub model: Model<'b, E>,
    pub store: &'s Store,
    action: Option<ActionState>,
    defer_requested: bool,
    _action: std::marker::PhantomData<A>,
}

#[derive(Default)]
struct ActionState {
    results: BTreeMap<String, String>,
    failure: Option<String>,
    /// Set when the action runs as a command: its params, and the lines
    /// printed for the operator instead of Juju's action tools.
    command: Option<CommandAction>,
}

#[derive(Default)]
struct CommandAction {
    params: Map<String, Value>,
    output: Vec<String>,
}

impl<E: Name, A: Name> HookContext<'_, '_, E, A> {
    /// Run this (event, handler) again at the start of the next dispatch.
    /// Use sparingly: a holistic charm rarely needs it.
    pub fn defer(&mut self) {
        self.defer_requested = true;
    }

    /// The action's params, already validated and defaulted by Juju.
    pub fn action_params(&mut self) -> Result<Map<String, Value>, ModelError> {
        match &self.action {
            None => Err(ModelError::NotAnAction),
            Some(ActionState {
                command: Some(command),
                ..
            }) => Ok(command.params.clone()),
            Some(_) => self.model.action_params(),
        }
    }

    /// Add results (keys are dot-separated, `[a-z0-9-]` segments); sent once,
    /// when the handler is done.
    pub fn set_action_results<K: Into<String>, V: Into<String>>(
        &mut self,
        results: impl IntoIterator<Item = (K, V)>,
    ) -> Result<(), ModelError> {
        let state = self.action.as_mut().ok_or(ModelError::NotAnAction)?;
        for (k, v) in results {
            let key = k.into();
            super::backend::check_action_result_key(&key)?;
            state.results.insert(key, v.into());
        }
        Ok(())
    }

    /// A progress message the operator sees while the action runs.
    pub fn action_log(&mut self, message: &str) -> Result<(), ModelError> {
        match &mut self.action {
            None => Err(ModelError::NotAnAction),
            Some(ActionState {
                command: Some(command),
                ..
            }) => {
                command.output.push(message.to_string());
                Ok(())
            }
            Some(_) => self.model.action_log(message),
        }
    }

    /// Fail the action with a message for the operator. The handler goes on;
    /// stored state is still committed, since a refused action changed nothing
    /// that needs undoing.
    pub fn fail_action(&mut self, message: impl Into<String>) -> Result<(), ModelError> {
        let state = self.action.as_mut().ok_or(ModelError::NotAnAction)?;
        state.failure = Some(message.into());
        Ok(())
    }

    pub fn action_failed(&self) -> bool {
        self.action.as_ref().is_some_and(|a| a.failure.is_some())
    }
}

/// The dispatch environment as Juju gives it (shared/reference §1.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dispatch {
    /// The variables that identify the event (see `EVENT_VARS`).
    pub vars: EventVars,
    pub unit: String,
    /// `JUJU_MODEL_NAME` (empty when Juju gave none).
    pub model: String,
    /// `JUJU_MODEL_UUID` (empty when Juju gave none).
    pub model_uuid: String,
    pub charm_dir: PathBuf,
    /// argv[0], for Juju before 2.8, which runs `hooks/<name>` directly.
    pub argv0: Option<String>,
    /// The rest of the environment (not `JUJU_*`): where an operator who
    /// runs an action as a command puts its params (`SYMLINK=r2 actions/…`).
    pub command_env: BTreeMap<String, String>,
}

impl Dispatch {
    pub fn from_env<I, K, V>(env: I, argv0: Option<String>) -> Result<Self, EventError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let all: BTreeMap<String, String> =
            env.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        let unit = all
            .get("JUJU_UNIT_NAME")
            .filter(|u| !u.is_empty())
            .cloned()
            .ok_or(EventError::Missing {
                var: "JUJU_UNIT_NAME",
                path: "any hook".into(),
            })?;
        let model = all.get("JUJU_MODEL_NAME").cloned().unwrap_or_default();
        let model_uuid = all.get("JUJU_MODEL_UUID").cloned().unwrap_or_default();
        let charm_dir = all
            .get("JUJU_CHARM_DIR")
            .or_else(|| all.get("CHARM_DIR"))
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::current_dir().unwrap_or_default());
        let command_env = all
            .iter()
            .filter(|(k, _)| !k.starts_with("JUJU_"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Dispatch {
            vars: event_vars(all),
            unit,
            model,
            model_uuid,
            charm_dir,
            argv0,
            command_env,
        })
    }
}

/// How a dispatch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchOutcome {
    /// 0: Juju commits the hook's changes; anything else: Juju retries it.
    pub exit_code: i32,
    /// Why it failed, for stderr (Juju puts that in the debug log).
    pub error: Option<String>,
    /// For an action run as a command: its log and results, for stdout.
    pub output: Option<String>,
}

impl DispatchOutcome {
    fn ok() -> Self {
        DispatchOutcome {
            exit_code: 0,
            error: None,
            output: None,
        }
    }
    fn failed(error: impl std::fmt::Display) -> Self {
        DispatchOutcome {
            exit_code: 1,
            error: Some(error.to_string()),
            output: None,
        }
    }
}

const OBSERVER: &str = "charm";

/// Run one dispatch of `charm` against `backend`, keeping state in `store_path`.
pub fn run<C: Charm>(
    charm: &mut C,
    backend: &mut dyn Backend,
    dispatch: &Dispatch,
    store_path: &std::path::Path,
) -> DispatchOutcome {
    let event =
        match Event::<C::Endpoint, C::Action>::parse(&dispatch.vars, dispatch.argv0.as_deref()) {
            Ok(event) => event,
            Err(e) => return DispatchOutcome::failed(e),
        };
    // Snapshot the event with its dispatch path spelled out, so a deferred
    // copy parses the same way whatever argv[0] the next dispatch has.
    let mut snapshot = dispatch.vars.clone();
    if let Ok(path) =
        Event::<C::Endpoint, C::Action>::dispatch_path(&dispatch.vars, dispatch.argv0.as_deref())
    {
        snapshot.insert("JUJU_DISPATCH_PATH".into(), path);
    }
    if let Event::Unknown(path) = &event {
        let mut model = Model::<C::Endpoint>::new(backend, &dispatch.unit, &dispatch.model, None)
            .with_model_uuid(&dispatch.model_uuid);
        model.log(
            LogLevel::Debug,
            &format!("{path}: not handled by this charm, ignored"),
        );
        return DispatchOutcome::ok();
    }
    let command = match &event {
        Event::Action(action) if action.is_command() => {
            match charm.command_action_params(action.action, &dispatch.command_env) {
                Ok(params) => Some(CommandAction {
                    params,
                    output: Vec::new(),
                }),
                Err(why) => return DispatchOutcome::failed(why),
            }
        }
        _ => None,
    };
    let (store, opened) = match Store::open(store_path, charm.migrations()) {
        Ok(s) => s,
        Err(e) => return DispatchOutcome::failed(e),
    };
    let run = Run {
        dispatch,
        store: &store,
        opened: &opened,
        snapshot: &snapshot,
    };
    match dispatch_event(charm, backend, &run, &event, command) {
        Ok(printed) => match store.commit() {
            Ok(()) => match printed {
                // A failed command action changed nothing worth undoing,
                // but the operator's shell must see it failed.
                Some(CommandReport { output, failure }) => DispatchOutcome {
                    exit_code: i32::from(failure.is_some()),
                    error: failure,
                    output: Some(output),
                },
                None => DispatchOutcome::ok(),
            },
            Err(e) => DispatchOutcome::failed(e),
        },
        Err(e) => {
            // Juju retries the hook; the retry reads everything from Juju
            // again, in case what was remembered is why this one failed.
            if let Err(forget) = store.abandon() {
                eprintln!("could not forget what this unit remembered: {forget}");
            }
            DispatchOutcome::failed(e)
        }
    }
}

/// What one dispatch works in, besides the charm and Juju.
struct Run<'a> {
    dispatch: &'a Dispatch,
    store: &'a Store,
    opened: &'a Opened,
    /// The event as it would be stored if deferred.
    snapshot: &'a EventVars,
}

/// What an action run as a command prints, and whether it failed.
struct CommandReport {
    output: String,
    failure: Option<String>,
}

/// The dispatch inside the store's transaction; an error leaves the
/// transaction uncommitted.
fn dispatch_event<C: Charm>(
    charm: &mut C,
    backend: &mut dyn Backend,
    run: &Run<'_>,
    event: &Event<C::Endpoint, C::Action>,
    command: Option<CommandAction>,
) -> Result<Option<CommandReport>, HandlerError> {
    let Run {
        dispatch,
        store,
        opened,
        snapshot,
    } = *run;
    let breaking = match event {
        Event::Relation(r) if r.hook == RelationHook::Broken => Some(r.relation),
        _ => None,
    };
    let is_action = matches!(event, Event::Action(_));
    let mut ctx = HookContext {
        model: Model::new(backend, &dispatch.unit, &dispatch.model, breaking)
            .with_model_uuid(&dispatch.model_uuid),
        store,
        action: is_action.then(|| ActionState {
            command,
            ..ActionState::default()
        }),
        defer_requested: false,
        _action: std::marker::PhantomData,
    };
    if opened.migrated_from != opened.schema {
        ctx.model.log(
            LogLevel::Info,
            &format!(
                "stored state migrated from schema {} to {}",
                opened.migrated_from, opened.schema
            ),
        );
    }
    // Install, start (also after a reboot) and upgrade-charm read the
    // relations and ports afresh; other hooks trust what was learnt.
    if !matches!(
        event,
        Event::Unit(UnitHook::Install | UnitHook::Start | UnitHook::UpgradeCharm)
    ) {
        ctx.model.recall(store.remembered()?);
    }
    if let Event::Relation(r) = event {
        ctx.model.note_relation(r.relation);
        ctx.model.note_remote_app(r.relation, &r.remote_app);
        if r.hook == RelationHook::Departed && r.departing_unit.as_deref() == Some(&*dispatch.unit)
        {
            ctx.model.note_leaving(r.relation);
        }
    }
    replay_deferred(charm, &mut ctx, event)?;
    charm
        .handle(&mut ctx, event)
        .map_err(|e| format!("{}: {e}", event.name()))?;
    if std::mem::take(&mut ctx.defer_requested) {
        if !event.is_deferrable() {
            return Err(format!("{} cannot be deferred", event.name()).into());
        }
        store.defer(OBSERVER, snapshot)?;
    }
    let printed = finish(charm, &mut ctx)?;
    store.remember(&ctx.model.remembered())?;
    Ok(printed)
}

fn replay_deferred<C: Charm>(
    charm: &mut C,
    ctx: &mut HookContext<'_, '_, C::Endpoint, C::Action>,
    event: &Event<C::Endpoint, C::Action>,
) -> Result<(), HandlerError> {
    if event.is_restricted() {
        return Ok(());
    }
    let notices = ctx.store.notices()?;
    if notices.is_empty() {
        return Ok(());
    }
    ctx.model.log(
        LogLevel::Debug,
        &format!("re-running {} deferred event(s)", notices.len()),
    );
    for notice in notices {
        let deferred = Event::<C::Endpoint, C::Action>::parse(&notice.event, None)?;
        if let Event::Unknown(path) = &deferred {
            // Deferred by an earlier version of the charm that declared this
            // hook. Charms never see Unknown events; keeping the notice would
            // fail every dispatch from now on.
            ctx.model.log(
                LogLevel::Warning,
                &format!("dropping deferred {path}: this charm no longer handles it"),
            );
            ctx.store.drop_notice(notice.sequence)?;
            continue;
        }
        ctx.defer_requested = false;
        charm
            .handle(ctx, &deferred)
            .map_err(|e| format!("deferred {}: {e}", deferred.name()))?;
        if !std::mem::take(&mut ctx.defer_requested) {
            ctx.store.drop_notice(notice.sequence)?;
        }
    }
    Ok(())
}

fn finish<C: Charm>(
    charm: &mut C,
    ctx: &mut HookContext<'_, '_, C::Endpoint, C::Action>,
) -> Result<Option<CommandReport>, HandlerError> {
    let status = charm.collect_status(ctx)?;
    ctx.model.set_unit_status(&status)?;
    let Some(action) = ctx.action.take() else {
        return Ok(None);
    };
    if let Some(command) = action.command {
        return Ok(Some(CommandReport {
            output: command_output(&command.output, &action.results),
            failure: action.failure,
        }));
    }
    ctx.model.action_set(&action.results)?;
    if let Some(message) = action.failure {
        ctx.model.action_fail(&message)?;
    }
    Ok(None)
}

/// The log lines, then the results as `key: value` lines, as `juju run`
/// shows them.
fn command_output(log: &[String], results: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for line in log {
        out.push_str(line);
        out.push('\n');
    }
    for (key, value) in results {
        out.push_str(&format!("{key}: {}\n", value.replace('\n', "\n  ")));
    }
    out
}
