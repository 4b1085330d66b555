//! Juju's event order, as a queue of steps per unit (§2.3).
//!
//! Commands do not run hooks directly: they enqueue the steps Juju would
//! take (deploy: install → relation-created… → leader-elected /
//! leader-settings-changed → config-changed → start → joined/changed…;
//! relate: created → app-level changed → joined(u)+changed(u) per remote
//! unit; …) and then [`drain`] runs them: each unit's steps one at a time
//! in order, on an agent thread of its own beside the other units' (as each
//! Juju unit agent runs its own hooks), until the model is quiet. A failed
//! hook stays
//! at the head of its unit's queue and the unit goes into error, so nothing
//! else runs on it until `charm-sim resolve` retries (or skips) it, as with
//! Juju. Other units carry on.
//!
//! Bookkeeping that must happen after a unit's hooks (leaving a relation's
//! scope, removing a unit) is queued as steps too, so it waits for a
//! failed hook to be resolved.

use std::fs;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};
use wsgi_app::ops::{RelationHook, SecretHook, UnitHook};

use super::context::{self, ContextInfo, Program, Progress, UnitPaths};
use super::reaper;
use super::store::{Model, Relation, Unit};
use super::Result;
use crate::sim_err;

/// A hook event on one unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hook {
    Unit(#[serde(with = "juju_name")] UnitHook),
    Relation {
        #[serde(with = "juju_name")]
        kind: RelationHook,
        relation_id: i64,
        endpoint: String,
        remote_app: String,
        /// `None` for created, broken and app-level changed.
        remote_unit: Option<String>,
        departing_unit: Option<String>,
    },
    /// A secret hook (`sim::secrets` queues `secret-changed`).
    Secret {
        #[serde(with = "juju_name")]
        kind: SecretHook,
        /// The URI, for `JUJU_SECRET_ID`.
        id: String,
        /// For `JUJU_SECRET_LABEL`; empty when none.
        label: String,
        /// For secret-remove and secret-expired only.
        revision: Option<u32>,
    },
}

/// ops' hook enums have only their strum names (`as_ref`, `FromStr`); the
/// queue stores them by those.
mod juju_name {
    use std::str::FromStr;

    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(hook: &impl AsRef<str>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(hook.as_ref())
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: FromStr>(d: D) -> Result<T, D::Error> {
        let name = String::deserialize(d)?;
        name.parse()
            .map_err(|_| D::Error::custom(format!("unknown hook {name:?}")))
    }
}

impl Hook {
    /// The hook's name, e.g. `install` or `pgsql-relation-changed`.
    pub fn name(&self) -> String {
        match self {
            Hook::Unit(hook) => hook.as_ref().to_string(),
            Hook::Relation { kind, endpoint, .. } => {
                format!("{endpoint}-relation-{}", kind.as_ref())
            }
            Hook::Secret { kind, .. } => format!("secret-{}", kind.as_ref()),
        }
    }

    fn relation(kind: RelationHook, rel: &Relation, remote_unit: Option<&str>) -> Hook {
        Hook::Relation {
            kind,
            relation_id: rel.id,
            endpoint: rel.endpoint.clone(),
            remote_app: rel.remote_app.clone(),
            remote_unit: remote_unit.map(str::to_string),
            departing_unit: None,
        }
    }

    /// What the hook tools see of this event.
    pub fn context_info(&self) -> ContextInfo {
        let name = self.name();
        let mut info = ContextInfo {
            dispatch_path: Some(format!("hooks/{name}")),
            hook_name: name,
            ..ContextInfo::default()
        };
        if let Hook::Relation {
            kind,
            relation_id,
            endpoint,
            remote_app,
            remote_unit,
            departing_unit,
        } = self
        {
            info.relation_id = Some(*relation_id);
            info.relation_endpoint = Some(endpoint.clone());
            info.remote_app = Some(remote_app.clone());
            info.remote_unit = Some(remote_unit.clone().unwrap_or_default());
            info.departing_unit = departing_unit.clone();
            if *kind == RelationHook::Broken {
                info.broken_relation = Some(*relation_id);
            }
        }
        if let Hook::Secret {
            id,
            label,
            revision,
            ..
        } = self
        {
            info.secret_id = Some(id.clone());
            info.secret_label = Some(label.clone());
            info.secret_revision = *revision;
        }
        info
    }
}

/// One queued step on a unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    /// Run a hook.
    Run { hook: Hook },
    /// The unit leaves a relation's scope (after its departed/broken
    /// hooks); the relation goes once none of our units is left in it.
    LeaveScope { relation_id: i64 },
    /// The unit is gone: its processes, directory and records are removed
    /// and, if it led, leadership passes on.
    FinishRemoval,
}

pub fn enqueue_hook(model: &Model, unit: &str, hook: Hook) -> Result<()> {
    model.enqueue(unit, &Step::Run { hook })
}

/// The units in a relation that `unit` sees as remote, sorted as strings:
/// the remote application's (of a subordinate application, its own
/// subordinate only), or on a peer relation the other peers.
fn remote_units(model: &Model, rel: &Relation, unit: &str) -> Result<Vec<String>> {
    let mut seen = Vec::new();
    for remote in model.scope(rel.id)? {
        if remote.split('/').next() == Some(rel.remote_app.as_str())
            && remote != unit
            && model.sees(unit, &remote)?
        {
            seen.push(remote);
        }
    }
    Ok(seen)
}

/// A peer relation: our application on both sides.
fn is_peer(rel: &Relation) -> bool {
    rel.app == rel.remote_app
}

/// A unit just added meets its peers: each other live peer gets joined
/// and changed for it (the new unit's own side is in `enqueue_new_unit`).
pub fn enqueue_peer_joined(model: &Model, unit: &Unit) -> Result<()> {
    for rel in model.unit_relations(&unit.name)? {
        if !is_peer(&rel) {
            continue;
        }
        for peer in remote_units(model, &rel, &unit.name)? {
            for kind in [RelationHook::Joined, RelationHook::Changed] {
                enqueue_hook(model, &peer, Hook::relation(kind, &rel, Some(&unit.name)))?;
            }
        }
    }
    Ok(())
}

/// What a committed hook of `writer` changed in peer relations reaches the
/// other peers as relation-changed: unit-level for its unit bag, app-level
/// for the application bag (written by the leader). A unit never hears of
/// its own writes.
pub fn enqueue_peer_changes(model: &Model, writer: &str, changed: &[(i64, String)]) -> Result<()> {
    for (relation_id, owner) in changed {
        let Some(rel) = model.relation(*relation_id)? else {
            continue;
        };
        if !is_peer(&rel) || rel.dying {
            continue;
        }
        let remote_unit = (owner != &rel.app).then_some(owner.as_str());
        for peer in remote_units(model, &rel, writer)? {
            enqueue_hook(
                model,
                &peer,
                Hook::relation(RelationHook::Changed, &rel, remote_unit),
            )?;
        }
    }
    Ok(())
}

/// The hooks a unit gets when it meets a relation that is already there or
/// just made: app-level changed if the remote app has data, then
/// joined(u) and changed(u) for each remote unit in order.
fn enqueue_meeting(model: &Model, unit: &str, rel: &Relation) -> Result<()> {
    if !model.bag(rel.id, &rel.remote_app)?.is_empty() {
        enqueue_hook(
            model,
            unit,
            Hook::relation(RelationHook::Changed, rel, None),
        )?;
    }
    for remote in remote_units(model, rel, unit)? {
        enqueue_hook(
            model,
            unit,
            Hook::relation(RelationHook::Joined, rel, Some(&remote)),
        )?;
        enqueue_hook(
            model,
            unit,
            Hook::relation(RelationHook::Changed, rel, Some(&remote)),
        )?;
    }
    Ok(())
}

/// A new unit's life so far (§2.3 Deploy): install, created for existing
/// relations, leader-elected or leader-settings-changed, config-changed,
/// start, then joined/changed for the relations' remote units.
pub fn enqueue_new_unit(model: &Model, unit: &Unit) -> Result<()> {
    let relations = model.unit_relations(&unit.name)?;
    enqueue_hook(model, &unit.name, Hook::Unit(UnitHook::Install))?;
    for rel in &relations {
        enqueue_hook(
            model,
            &unit.name,
            Hook::relation(RelationHook::Created, rel, None),
        )?;
    }
    let leadership = if unit.leader {
        Hook::Unit(UnitHook::LeaderElected)
    } else {
        Hook::Unit(UnitHook::LeaderSettingsChanged)
    };
    enqueue_hook(model, &unit.name, leadership)?;
    enqueue_hook(model, &unit.name, Hook::Unit(UnitHook::ConfigChanged))?;
    enqueue_hook(model, &unit.name, Hook::Unit(UnitHook::Start))?;
    for rel in &relations {
        enqueue_meeting(model, &unit.name, rel)?;
    }
    Ok(())
}

/// Our units that are alive (not being removed).
pub fn live_units(model: &Model, app: &str) -> Result<Vec<Unit>> {
    Ok(model.units(app)?.into_iter().filter(|u| !u.dying).collect())
}

/// A new relation (§2.3 Relate): every unit of ours enters scope and gets
/// created, app-level changed if the remote app has data, then joined(u)
/// + changed(u) per remote unit.
pub fn enqueue_relate(model: &Model, rel: &Relation) -> Result<()> {
    for unit in live_units(model, &rel.app)? {
        model.enter_scope(rel.id, &unit.name, &unit.address)?;
        enqueue_hook(
            model,
            &unit.name,
            Hook::relation(RelationHook::Created, rel, None),
        )?;
        enqueue_meeting(model, &unit.name, rel)?;
    }
    Ok(())
}

/// Departed for each remote unit (with `departing` as JUJU_DEPARTING_UNIT),
/// broken, then leaving scope, on one unit.
fn enqueue_leaving(model: &Model, unit: &str, rel: &Relation, departing_self: bool) -> Result<()> {
    for remote in remote_units(model, rel, unit)? {
        let departing = if departing_self {
            unit.to_string()
        } else {
            remote.clone()
        };
        enqueue_hook(
            model,
            unit,
            Hook::Relation {
                kind: RelationHook::Departed,
                relation_id: rel.id,
                endpoint: rel.endpoint.clone(),
                remote_app: rel.remote_app.clone(),
                remote_unit: Some(remote),
                departing_unit: Some(departing),
            },
        )?;
    }
    // A peer relation is never broken: the unit stays in it (its other
    // hooks still see it) until the unit itself is gone.
    if is_peer(rel) {
        return Ok(());
    }
    enqueue_hook(model, unit, Hook::relation(RelationHook::Broken, rel, None))?;
    model.enqueue(
        unit,
        &Step::LeaveScope {
            relation_id: rel.id,
        },
    )
}

/// Removing a relation (§2.3 remove-relation): departed per remote unit,
/// then broken, on each of our units in scope.
pub fn enqueue_unrelate(model: &Model, rel: &Relation) -> Result<()> {
    model.set_relation_dying(rel.id)?;
    for unit in model.units(&rel.app)? {
        if model.in_scope(rel.id, &unit.name)? {
            enqueue_leaving(model, &unit.name, rel, false)?;
        }
    }
    Ok(())
}

/// Removing a unit (§2.3 remove-unit): for each relation, departed for
/// every remote unit with JUJU_DEPARTING_UNIT = the unit itself, then
/// broken; then stop, remove, and the unit is gone.
pub fn enqueue_remove_unit(model: &Model, unit: &Unit) -> Result<()> {
    model.set_dying(&unit.name)?;
    for rel in model.unit_relations(&unit.name)? {
        if is_peer(&rel) {
            // The other peers see it depart.
            for peer in remote_units(model, &rel, &unit.name)? {
                enqueue_hook(
                    model,
                    &peer,
                    Hook::Relation {
                        kind: RelationHook::Departed,
                        relation_id: rel.id,
                        endpoint: rel.endpoint.clone(),
                        remote_app: rel.remote_app.clone(),
                        remote_unit: Some(unit.name.clone()),
                        departing_unit: Some(unit.name.clone()),
                    },
                )?;
            }
        }
        enqueue_leaving(model, &unit.name, &rel, true)?;
    }
    enqueue_hook(model, &unit.name, Hook::Unit(UnitHook::Stop))?;
    enqueue_hook(model, &unit.name, Hook::Unit(UnitHook::Remove))?;
    model.enqueue(&unit.name, &Step::FinishRemoval)
}

/// A remote unit's or app's data changed: relation-changed on every unit of
/// ours that knows it (app-level, with no remote unit, for app data).
pub fn enqueue_remote_change(model: &Model, owner: &str) -> Result<()> {
    let app = owner.split('/').next().unwrap_or(owner);
    let is_unit = owner.contains('/');
    for rel in model.relations()? {
        if rel.remote_app != app || rel.dying {
            continue;
        }
        if is_unit && !model.in_scope(rel.id, owner)? {
            continue;
        }
        for unit in live_units(model, &rel.app)? {
            if model.in_scope(rel.id, &unit.name)? && (!is_unit || model.sees(&unit.name, owner)?) {
                let remote = is_unit.then_some(owner);
                enqueue_hook(
                    model,
                    &unit.name,
                    Hook::relation(RelationHook::Changed, &rel, remote),
                )?;
            }
        }
    }
    Ok(())
}

/// Units that a drain left in error: (unit, agent message).
#[derive(Debug, Default)]
pub struct DrainReport {
    pub errors: Vec<(String, String)>,
}

impl DrainReport {
    /// An error for the command's exit status when any unit is stuck.
    pub fn into_result(self) -> Result<()> {
        if self.errors.is_empty() {
            return Ok(());
        }
        let lines: Vec<String> = self
            .errors
            .iter()
            .map(|(unit, message)| {
                format!("{unit} is in error ({message}); fix the cause, then run `charm-sim resolve {unit}`")
            })
            .collect();
        Err(sim_err!("{}", lines.join("\n")))
    }
}

/// How a drain treats hook failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Like Juju: the unit stops in error until resolved.
    Stop,
    /// Report and carry on (destroy must finish whatever the charm does).
    Continue,
}

/// Run every queued step until no unit that is not in error has anything
/// left. Each unit runs its own queue, one hook at a time, on a thread of
/// its own, beside the others, as each Juju unit agent does: a slow hook on
/// one unit (a build install, a switch) does not hold back the others, and
/// two units' hooks may run at the same moment.
pub fn drain(model: &Model, progress: Progress, on_failure: OnFailure) -> Result<DrainReport> {
    loop {
        let ran = run_unit_agents(model, progress, on_failure)?;
        // Agents follow the load balancers after each of their steps, side
        // by side: one may render from data another agent's hook was about
        // to change. Once all are quiet, the committed data has the last
        // word.
        super::haproxy::follow(model)?;
        super::cos::follow(model)?;
        // Emulated providers answer once our hooks have committed.
        if !ran && !super::providers::answer_requests(model)? {
            break;
        }
    }
    // A relation removed with none of our units in it ran no step.
    super::haproxy::follow(model)?;
    super::cos::follow(model)?;
    let mut report = DrainReport::default();
    for unit in model.all_units()? {
        if unit.agent.current == "error" {
            report.errors.push((unit.name, unit.agent.message));
        }
    }
    Ok(report)
}

/// What the unit agents of one drain share.
struct Agents {
    progress: Progress,
    on_failure: OnFailure,
    /// Agents running a step now: only they can queue new steps.
    busy: AtomicUsize,
    /// Whether any agent ran a step.
    ran: AtomicBool,
    /// Set by an agent that failed (not a hook: charm-sim itself), so the
    /// others stop instead of waiting for its queue forever.
    failed: AtomicBool,
}

/// How often an idle agent looks for new steps.
const IDLE_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// One agent per unit, until every queue a live agent can run is empty and
/// no agent is busy; whether any step ran.
fn run_unit_agents(model: &Model, progress: Progress, on_failure: OnFailure) -> Result<bool> {
    let agents = Agents {
        progress,
        on_failure,
        busy: AtomicUsize::new(0),
        ran: AtomicBool::new(false),
        failed: AtomicBool::new(false),
    };
    let units = model.all_units()?;
    let dir = model.dir();
    let results: Vec<Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = units
            .iter()
            .map(|unit| {
                let agents = &agents;
                scope.spawn(move || {
                    let outcome = unit_agent(dir, &unit.name, agents);
                    if outcome.is_err() {
                        agents.failed.store(true, Ordering::SeqCst);
                    }
                    outcome
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(sim_err!("a unit agent panicked")))
            })
            .collect()
    });
    for result in results {
        result?;
    }
    Ok(agents.ran.load(Ordering::SeqCst))
}

/// Run `unit`'s steps in order until the whole model is quiet.
fn unit_agent(dir: &std::path::Path, unit: &str, agents: &Agents) -> Result<()> {
    // SQLite connections are not shared between threads: one per agent.
    let model = Model::open(dir)?;
    loop {
        if agents.failed.load(Ordering::SeqCst) {
            return Ok(());
        }
        // Busy before looking: an agent that sees nobody busy and nothing
        // queued knows no step can appear any more.
        agents.busy.fetch_add(1, Ordering::SeqCst);
        let stepped = run_next_step(&model, unit, agents);
        agents.busy.fetch_sub(1, Ordering::SeqCst);
        if stepped? {
            continue;
        }
        if agents.busy.load(Ordering::SeqCst) == 0 && !model.any_runnable_step()? {
            return Ok(());
        }
        std::thread::sleep(IDLE_POLL);
    }
}

/// Run the head of `unit`'s queue, if it has one and is not in error;
/// whether it did.
fn run_next_step(model: &Model, unit: &str, agents: &Agents) -> Result<bool> {
    let Some(current) = model.unit(unit)? else {
        return Ok(false);
    };
    if current.agent.current == "error" {
        return Ok(false);
    }
    let Some((seq, step)) = model.next_step::<Step>(&current.name)? else {
        return Ok(false);
    };
    agents.ran.store(true, Ordering::SeqCst);
    let ok = run_step(model, &current, &step, agents.progress)?;
    // Load balancers take in what the step changed before the unit's next
    // hook (a departing unit's stop, say); so does the collector, whose
    // scrape jobs follow the same data.
    super::haproxy::follow(model)?;
    super::cos::follow(model)?;
    if ok || agents.on_failure == OnFailure::Continue {
        model.drop_step(seq)?;
        if !ok {
            model.set_agent_status(&current.name, "idle", "")?;
        }
    }
    Ok(true)
}

/// Run one step; `false` when it was a hook that failed.
fn run_step(model: &Model, unit: &Unit, step: &Step, progress: Progress) -> Result<bool> {
    match step {
        Step::Run { hook } => run_hook(model, unit, hook, progress),
        Step::LeaveScope { relation_id } => {
            model.leave_scope(*relation_id, &unit.name)?;
            if let Some(rel) = model.relation(*relation_id)? {
                // A subordinate goes with its principal's relation to it.
                super::cos::principal_left(model, &rel, &unit.name)?;
                let ours_left = model
                    .scope(rel.id)?
                    .iter()
                    .any(|u| u.split('/').next() == Some(rel.app.as_str()));
                if !ours_left && rel.dying {
                    model.delete_relation(rel.id)?;
                }
            }
            Ok(true)
        }
        Step::FinishRemoval => {
            finish_removal(model, unit, progress)?;
            Ok(true)
        }
    }
}

/// Run one hook with Juju's status effects around it (§1.3, §1.4).
pub fn run_hook(model: &Model, unit: &Unit, hook: &Hook, progress: Progress) -> Result<bool> {
    let name = hook.name();
    match hook {
        Hook::Relation {
            kind: RelationHook::Joined,
            relation_id,
            remote_unit: Some(remote),
            ..
        } => model.set_member(*relation_id, &unit.name, remote, true)?,
        Hook::Relation {
            kind: RelationHook::Departed,
            relation_id,
            remote_unit: Some(remote),
            ..
        } => model.set_member(*relation_id, &unit.name, remote, false)?,
        _ => {}
    }
    let status_set = model.require_unit(&unit.name)?.status_set;
    match hook {
        Hook::Unit(UnitHook::Install) if !status_set => model.set_workload_status(
            &unit.name,
            "maintenance",
            "installing charm software",
            false,
        )?,
        Hook::Unit(UnitHook::Stop) => model.set_workload_status(
            &unit.name,
            "maintenance",
            "stopping charm software",
            false,
        )?,
        Hook::Unit(UnitHook::Remove) => model.set_workload_status(
            &unit.name,
            "maintenance",
            "cleaning up prior to charm deletion",
            false,
        )?,
        _ => {}
    }
    if *hook != Hook::Unit(UnitHook::UpdateStatus) {
        model.set_agent_status(&unit.name, "executing", &format!("running {name} hook"))?;
    }
    match hook {
        Hook::Relation {
            remote_unit: Some(remote),
            ..
        } => progress.say(format!("{}: running {name} for {remote}", unit.name)),
        _ => progress.say(format!("{}: running {name}", unit.name)),
    }

    let outcome = context::run(
        model,
        unit,
        &hook.context_info(),
        &Program::Handler,
        progress,
    )?;
    if !outcome.succeeded() {
        let code = match (outcome.code, &outcome.start_error) {
            (_, Some(_)) => "could not start".to_string(),
            (Some(c), None) => format!("exit code {c}"),
            (None, None) => "killed by a signal".to_string(),
        };
        eprintln!("{}: hook {name:?} failed ({code})", unit.name);
        for line in outcome.stderr_tail(10) {
            eprintln!("    {line}");
        }
        eprintln!(
            "    (full output in {})",
            UnitPaths::new(model.dir(), unit).hooks_log.display()
        );
        model.set_agent_status(&unit.name, "error", &format!("hook failed: {name:?}"))?;
        return Ok(false);
    }
    let status_set = model.require_unit(&unit.name)?.status_set;
    match hook {
        Hook::Unit(UnitHook::Start) if !status_set => {
            model.set_workload_status(&unit.name, "unknown", "", false)?
        }
        Hook::Unit(UnitHook::Stop) => {
            model.set_workload_status(&unit.name, "maintenance", "", false)?
        }
        Hook::Unit(UnitHook::Remove) => {
            model.set_workload_status(&unit.name, "terminated", "", false)?
        }
        _ => {}
    }
    if *hook != Hook::Unit(UnitHook::UpdateStatus) {
        model.set_agent_status(&unit.name, "idle", "")?;
    }
    Ok(true)
}

/// The unit is gone: end whatever it left running, remove its directory and
/// records, and hand leadership to the lowest-numbered remaining unit.
fn finish_removal(model: &Model, unit: &Unit, progress: Progress) -> Result<()> {
    let paths = UnitPaths::new(model.dir(), unit);
    let ended = reaper::end_processes_under(&paths.dir)?;
    if ended > 0 {
        progress.say(format!("{}: ended {ended} leftover process(es)", unit.name));
    }
    let was_leader = model.require_unit(&unit.name)?.leader;
    model.delete_unit(&unit.name)?;
    if paths.dir.exists() {
        fs::remove_dir_all(&paths.dir)
            .map_err(|e| sim_err!("cannot remove {}: {e}", paths.dir.display()))?;
    }
    progress.say(format!("{}: removed", unit.name));
    if was_leader {
        if let Some(next) = live_units(model, &unit.app)?.into_iter().next() {
            model.set_leader(&unit.app, &next.name)?;
            progress.say(format!("{}: is the new leader", next.name));
            enqueue_hook(model, &next.name, Hook::Unit(UnitHook::LeaderElected))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_hooks_keep_their_juju_names() {
        let departed = Hook::Relation {
            kind: RelationHook::Departed,
            relation_id: 3,
            endpoint: "db".into(),
            remote_app: "pg".into(),
            remote_unit: Some("pg/0".into()),
            departing_unit: Some("pg/0".into()),
        };
        for (hook, name) in [
            (
                Hook::Unit(UnitHook::LeaderSettingsChanged),
                "leader-settings-changed",
            ),
            (departed, "db-relation-departed"),
        ] {
            assert_eq!(hook.name(), name);
            let step = Step::Run { hook };
            let stored = serde_json::to_string(&step).unwrap();
            assert_eq!(serde_json::from_str::<Step>(&stored).unwrap(), step);
        }
        let unknown = r#"{"step":"run","hook":{"unit":"bogus"}}"#;
        assert!(serde_json::from_str::<Step>(unknown).is_err());
    }
}
