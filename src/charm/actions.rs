//! The operator's actions: move this unit to a build (and pin it there),
//! roll back, list what is installed. Switches use the same zero-downtime
//! path and health gate as config-driven ones.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::config::{check_build_label, LATEST};
use super::reconcile::{read_config, switch_to, Depth, SwitchOutcome};
use super::rollout::{self, Peers, Record, UnitReport};
use super::state::{self, Rollout};
use super::{Action, Ctx, WsgiApp};
use crate::ops::{HandlerError, Scope};
use crate::workload::layout::Layout;

pub fn run(
    app: &mut WsgiApp,
    ctx: &mut Ctx<'_, '_>,
    layout: &Layout,
    action: Action,
) -> Result<(), HandlerError> {
    match action {
        Action::ListBuilds => list_builds(ctx, layout),
        Action::SetCurrentSymlink => {
            let params = ctx.action_params()?;
            let Some(label) = params.get("symlink").and_then(|v| v.as_str()) else {
                ctx.fail_action("symlink is required, e.g. symlink=r2")?;
                return Ok(());
            };
            let label = label.trim().to_string();
            pin_and_switch(app, ctx, layout, &label, "set-current-symlink")
        }
        Action::RolloutStatus => rollout_status(ctx),
        Action::ResumeRollout => steer_rollout(app, ctx, layout, "resume-rollout", |record, _| {
            record.resumed()
        }),
        Action::AbortRollout => {
            steer_rollout(app, ctx, layout, "abort-rollout", |record, units| {
                record.aborted(units)
            })
        }
        Action::Rollback => {
            let rollout = state::rollout(ctx.store.conn())?;
            match rollout.previous {
                Some(previous) => pin_and_switch(app, ctx, layout, &previous, "rollback"),
                None => {
                    ctx.fail_action(
                        "nothing to roll back to: this unit has served only one build",
                    )?;
                    Ok(())
                }
            }
        }
    }
}

/// The environment variables that name set-current-symlink's build when an
/// operator runs it as a command: `CURRENT_SYMLINK` is what the charms this
/// one replaces read (`juju run --unit u "CURRENT_SYMLINK=r2
/// actions/set-current-symlink"`), `SYMLINK` the param's own name.
pub const SYMLINK_VARIABLES: &[&str] = &["CURRENT_SYMLINK", "SYMLINK"];

/// An action's params from the environment of the command that ran it.
pub fn params_from_command_env(
    action: Action,
    env: &BTreeMap<String, String>,
) -> Result<Map<String, Value>, String> {
    let mut params = Map::new();
    if action == Action::SetCurrentSymlink {
        let label = SYMLINK_VARIABLES
            .iter()
            .find_map(|name| env.get(*name).filter(|v| !v.trim().is_empty()))
            .ok_or("set-current-symlink needs the build to serve: CURRENT_SYMLINK=r2 actions/set-current-symlink")?;
        params.insert("symlink".into(), Value::String(label.clone()));
    }
    Ok(params)
}

/// Pin this unit to `requested` and switch to it; undo the pin if the
/// build cannot serve.
fn pin_and_switch(
    app: &mut WsgiApp,
    ctx: &mut Ctx<'_, '_>,
    layout: &Layout,
    requested: &str,
    why: &str,
) -> Result<(), HandlerError> {
    let config = match read_config(ctx) {
        Ok(c) => c,
        Err(e) => {
            ctx.fail_action(format!("the charm's config is invalid, fix it first: {e}"))?;
            return Ok(());
        }
    };
    if requested != LATEST {
        if let Err(e) = check_build_label("symlink", requested) {
            ctx.fail_action(e.to_string())?;
            return Ok(());
        }
    }
    let installed = state::builds(ctx.store.conn())?;
    let target = if requested == LATEST {
        installed.last().map(|b| b.label.clone())
    } else {
        installed
            .iter()
            .find(|b| b.label == requested)
            .map(|b| b.label.clone())
    };
    let Some(target) = target else {
        let names: Vec<&str> = installed.iter().map(|b| b.label.as_str()).collect();
        ctx.fail_action(format!(
            "build {requested} is not installed on this unit; installed builds: {}",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ))?;
        return Ok(());
    };

    let before: Rollout = state::rollout(ctx.store.conn())?;
    let mut pinned = before.clone();
    // Asking for what the application wants is asking to follow it again
    // (the reconcile releases a pin to the build the application wants).
    let follows_application =
        requested == config.current_symlink || target == config.current_symlink;
    if follows_application {
        pinned.pinned = None;
    } else {
        pinned.pinned = Some(target.clone());
    }
    state::save_rollout(ctx.store.conn(), &pinned)?;

    let mut env = config.environment.clone();
    env.extend(super::integrations::relation_env(ctx, layout, &[])?);
    let mut config = config;
    super::reconcile::serve_under_prefix(&mut config, &env);
    let env_hash = super::reconcile::hash_env(&env);
    ctx.action_log(&format!("switching this unit to build {target}"))?;
    // An operator asking is always judged afresh.
    match switch_to(app, ctx, layout, &config, &target, &env_hash, why, true)? {
        SwitchOutcome::Unchanged => {
            ctx.set_action_results([
                ("previous", before.serving.clone().unwrap_or_default()),
                ("current", target.clone()),
                ("health", "unchanged: already serving".to_string()),
            ])?;
        }
        SwitchOutcome::Switched { previous, health } => {
            ctx.set_action_results([
                ("previous", previous.unwrap_or_default()),
                ("current", target.clone()),
                ("health", health),
            ])?;
        }
        SwitchOutcome::Refused { failure, kept } => {
            let message = match kept {
                Some(kept) => format!("{failure}; {kept} still serving"),
                None => failure,
            };
            fail_switch(ctx, &before, message)?;
        }
        SwitchOutcome::ServingUnhealthy(message) => fail_switch(ctx, &before, message)?,
    }
    // The leader skips a pinned unit and waits on granted ones: tell it
    // now, not at this unit's next hook.
    if let Some(peers) = Peers::read(ctx, false)? {
        let own = rollout::answer_grant(peers.record.as_ref(), &peers.me, own_report(ctx, &peers)?);
        peers.publish_own(ctx, &own)?;
    }
    // Recompute the status from the new facts.
    app.reconcile(ctx, layout, Depth::Check)
}

/// Fail the action; the pin goes with the failed switch, so this unit
/// stays where it was.
fn fail_switch(
    ctx: &mut Ctx<'_, '_>,
    before: &Rollout,
    message: String,
) -> Result<(), HandlerError> {
    let mut restored = state::rollout(ctx.store.conn())?;
    restored.pinned = before.pinned.clone();
    state::save_rollout(ctx.store.conn(), &restored)?;
    Ok(ctx.fail_action(message)?)
}

fn list_builds(ctx: &mut Ctx<'_, '_>, layout: &Layout) -> Result<(), HandlerError> {
    let conn = ctx.store.conn();
    let builds = state::builds(conn)?;
    let rollout = state::rollout(conn)?;
    let latest = builds.last().map(|b| b.label.clone());
    let mut results: Vec<(String, String)> = vec![("count".into(), builds.len().to_string())];
    for (field, value) in [
        ("latest", latest.clone()),
        ("current", rollout.serving.clone()),
        ("pinned", rollout.pinned.clone()),
        ("previous", rollout.previous.clone()),
    ] {
        results.push((field.into(), value.unwrap_or_default()));
    }
    if let Some(answer) = state::proxy_answer(conn)? {
        results.push(("ingress-endpoint".into(), answer.endpoint));
        results.push(("ingress-urls".into(), answer.urls.join(" ")));
    }
    // Labels may hold characters action keys may not: index the builds.
    for (index, b) in builds.iter().enumerate() {
        let key = |field: &str| format!("builds.{}.{field}", index + 1);
        let flag = |x: &Option<String>| (x.as_deref() == Some(b.label.as_str())).to_string();
        results.extend([
            (key("label"), b.label.clone()),
            (key("sha256"), b.sha256.clone()),
            (key("size"), b.size.to_string()),
            (
                key("installed-at"),
                crate::workload::text::rfc3339(b.installed_at),
            ),
            (key("archive"), b.archive.clone()),
            (
                key("gunicorn"),
                crate::workload::builds::read_manifest(layout, &b.label)
                    .and_then(|m| m.gunicorn)
                    .unwrap_or_else(|| "unknown".into()),
            ),
            (key("latest"), flag(&latest)),
            (key("current"), flag(&rollout.serving)),
            (key("pinned"), flag(&rollout.pinned)),
        ]);
    }
    ctx.set_action_results(results)?;
    Ok(())
}

/// This unit's report as rollout-status shows it: serving and pin from the
/// store (the truth), the last grant from its bag.
fn own_report(ctx: &mut Ctx<'_, '_>, peers: &Peers) -> Result<UnitReport, HandlerError> {
    let now = state::rollout(ctx.store.conn())?;
    Ok(UnitReport {
        serving: now.serving,
        pinned: now.pinned,
        last_grant: peers.own.last_grant.clone(),
    })
}

fn rollout_status(ctx: &mut Ctx<'_, '_>) -> Result<(), HandlerError> {
    let peers = Peers::read(ctx, true)?;
    let units = match &peers {
        Some(peers) => peers.all_units(&own_report(ctx, peers)?),
        // No peers: this unit alone, following current_symlink itself.
        None => {
            let now = state::rollout(ctx.store.conn())?;
            let me = ctx.model.unit_name().to_string();
            [(
                me,
                UnitReport {
                    serving: now.serving,
                    pinned: now.pinned,
                    last_grant: None,
                },
            )]
            .into()
        }
    };
    let record = peers.as_ref().and_then(|p| p.record.as_ref());
    let mut results: Vec<(String, String)> = Vec::new();
    if let Some(record) = record {
        results.extend([
            ("rollout.id".to_string(), record.id.to_string()),
            ("rollout.target".to_string(), record.target.clone()),
            (
                "rollout.from".to_string(),
                record.from.clone().unwrap_or_default(),
            ),
            ("rollout.state".to_string(), record.phase_name().to_string()),
            (
                "rollout.granted".to_string(),
                rollout::by_number(record.granted.iter().cloned()).join(", "),
            ),
            (
                "rollout.status".to_string(),
                rollout::app_status(record, &units).message,
            ),
        ]);
    } else {
        results.push(("rollout.state".into(), "none yet".into()));
    }
    // Unit names hold a '/', which action keys may not: index the units.
    for (index, unit) in rollout::by_number(units.keys().cloned()).iter().enumerate() {
        let report = &units[unit];
        let key = |field: &str| format!("units.{}.{field}", index + 1);
        results.extend([
            (key("unit"), unit.clone()),
            (key("serving"), report.serving.clone().unwrap_or_default()),
            (key("pinned"), report.pinned.clone().unwrap_or_default()),
            (key("state"), rollout::unit_state(record, unit, report)),
        ]);
    }
    ctx.set_action_results(results)?;
    Ok(())
}

/// resume-rollout and abort-rollout: the leader changes its record, then
/// takes the rollout's next step at once (the first grants go out now).
fn steer_rollout(
    app: &mut WsgiApp,
    ctx: &mut Ctx<'_, '_>,
    layout: &Layout,
    action: &str,
    change: impl FnOnce(&Record, &BTreeMap<String, UnitReport>) -> Result<Record, String>,
) -> Result<(), HandlerError> {
    if !ctx.model.is_leader()? {
        let unit = ctx.model.unit_name().to_string();
        ctx.fail_action(format!(
            "{action} runs on the leader only, and {unit} is not the leader: run it on the unit juju status marks with *"
        ))?;
        return Ok(());
    }
    let Some(peers) = Peers::read(ctx, true)? else {
        ctx.fail_action(format!(
            "{action}: no rollout, the rollout peer relation does not exist yet"
        ))?;
        return Ok(());
    };
    let Some(record) = peers.record.clone() else {
        ctx.fail_action(format!("{action}: no rollout has run yet"))?;
        return Ok(());
    };
    let units = peers.all_units(&own_report(ctx, &peers)?);
    let next = match change(&record, &units) {
        Ok(next) => next,
        Err(why) => {
            ctx.fail_action(why)?;
            return Ok(());
        }
    };
    ctx.model
        .update_relation_data(peers.relation, Scope::App, &next.to_bag())?;
    ctx.action_log(&format!(
        "{action}: rollout {} now moves the application to {}",
        next.id, next.target
    ))?;
    app.reconcile(ctx, layout, Depth::Full)?;
    let after = Peers::read(ctx, true)?
        .and_then(|p| p.record)
        .unwrap_or(next);
    ctx.set_action_results([
        ("rollout.id", after.id.to_string()),
        ("rollout.target", after.target.clone()),
        ("rollout.state", after.phase_name().to_string()),
        (
            "rollout.granted",
            rollout::by_number(after.granted.iter().cloned()).join(", "),
        ),
    ])?;
    Ok(())
}
