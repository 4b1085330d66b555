//! Converge the machine towards what config and recorded facts ask for.
//!
//! Order: packages, the build for `build_label`, the symlinks, the app's
//! environment, the gunicorn service (switched behind a health gate), then
//! what other applications see (port, website, nrpe, cos-agent), and
//! finally removing builds beyond `keep_builds`. Each step is a no-op when
//! nothing changed.
//!
//! Why one file over 600 lines: the converge step and the build switch with
//! its health gate; the switch is being rewritten in parallel, and moving it
//! out is left to that rewrite so the two do not collide.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::config::{Config, LATEST};
use super::rollout::{self, Outcome, Plan};
use super::state::{self, BuildRecord, Rollout};
use super::{ingress, integrations, nrpe, observability, Ctx, Endpoint, WsgiApp};
use crate::ops::{
    ConfigError, ConfigReader, HandlerError, LogLevel, Port, RelationEvent, Status, StatusName,
};
use crate::workload::builds::{self, BuildError};
use crate::workload::layout::Layout;
use crate::workload::machine::CommandSpec;
use crate::workload::service::HealthCriteria;
use crate::workload::service::{ServiceChange, ServiceError, ServiceSpec, ServiceState};
use crate::workload::{app_user, envvars, health, users};

/// How much of the world a reconcile re-reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Everything: relations, ports, published data (most events).
    Full,
    /// The periodic check (update-status): config, the build and the service,
    /// with relation facts from the store; no relation reads or writes.
    Check,
}

/// What the last reconcile found; the unit status is computed from it.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Things a human must fix (Blocked) or a peer must do (Waiting).
    problems: Vec<Status>,
    serving: Option<String>,
    port: Option<u16>,
    /// (pinned build, what the application wants) when this unit is pinned.
    pinned: Option<(String, String)>,
    /// Where this unit stands in a rollout that has not reached it.
    rollout_note: Option<String>,
    /// Where the proxy serves the application (`ingress https://…/`).
    reached_at: Option<String>,
    /// Nothing was examined (a read-only or refused action): the unit's
    /// status stays what it was.
    unexamined: bool,
}

impl Report {
    pub fn blocked(&mut self, message: impl Into<String>) {
        self.problems.push(Status::blocked(message));
    }
    pub fn waiting(&mut self, message: impl Into<String>) {
        self.problems.push(Status::waiting(message));
    }
    /// The app fails its health check. While a relation is still pending,
    /// that is most likely why (an app without its database answers 500),
    /// so it waits behind the relation's message rather than blocking.
    pub fn unhealthy(&mut self, message: impl Into<String>) {
        if self.problems.iter().any(|p| p.name == StatusName::Waiting) {
            self.waiting(message);
        } else {
            self.blocked(message);
        }
    }

    /// The worst problem (Blocked before Waiting), else Active with what is
    /// served. A problem's message also says what is still serving.
    /// A report for a dispatch that looks at nothing.
    pub fn unexamined() -> Self {
        Report {
            unexamined: true,
            ..Report::default()
        }
    }

    pub fn status(&self, ctx: &mut Ctx<'_, '_>) -> Result<Status, HandlerError> {
        if self.unexamined {
            return Ok(ctx.model.unit_status()?);
        }
        for problem in &self.problems {
            ctx.model.log(LogLevel::Warning, &problem.to_string());
        }
        let reached_at = self
            .reached_at
            .as_ref()
            .map(|at| format!("; {at}"))
            .unwrap_or_default();
        let serving = match (&self.serving, self.port) {
            (Some(label), Some(port)) => Some(format!("serving {label} on :{port}{reached_at}")),
            _ => None,
        };
        // The worst problem; the first reported among equals.
        let worst = self
            .problems
            .iter()
            .fold(None::<&Status>, |worst, s| match worst {
                Some(w) if w.name.priority() >= s.name.priority() => Some(w),
                _ => Some(s),
            });
        let worst = worst.cloned();
        if let Some(mut problem) = worst {
            let others = self.problems.len() - 1;
            if others > 0 {
                problem
                    .message
                    .push_str(&format!(" (+{others} more, see juju debug-log)"));
            }
            if let Some(serving) = serving {
                problem.message.push_str(&format!("; {serving}"));
            }
            return Ok(problem);
        }
        Ok(match (serving, &self.pinned, &self.rollout_note) {
            (Some(s), Some((_, wanted)), _) => {
                Status::active(format!("{s} (pinned; application wants {wanted})"))
            }
            (Some(s), None, Some(note)) => Status::active(format!("{s} ({note})")),
            (Some(s), None, None) => Status::active(s),
            (None, _, _) => Status::waiting("no build is serving yet"),
        })
    }
}

/// Create what the charm needs once per machine: the app user, uv.
pub fn prepare_machine(
    app: &mut WsgiApp,
    ctx: &mut Ctx<'_, '_>,
    layout: &Layout,
) -> Result<(), HandlerError> {
    ctx.model
        .set_unit_status(&Status::maintenance("preparing the machine"))?;
    app_user::ensure_app_user(&app.machine, &layout.app)?;
    if let Err(why) = builds::install_uv(&app.machine, layout) {
        ctx.model.log(
            LogLevel::Info,
            &format!("uv is not available ({why}); builds use python3 -m venv and pip"),
        );
    }
    Ok(())
}

/// A relation event: nothing to record beyond what Juju can tell us again,
/// except that a broken relation's URL must go.
pub fn record_relation_event(
    _app: &mut WsgiApp,
    ctx: &mut Ctx<'_, '_>,
    event: &RelationEvent<Endpoint>,
) -> Result<(), HandlerError> {
    ctx.model.log(
        LogLevel::Debug,
        &format!(
            "{}-relation-{} from {}",
            event.relation.endpoint.as_ref(),
            event.hook.as_ref(),
            event.remote_unit.as_deref().unwrap_or(&event.remote_app)
        ),
    );
    Ok(())
}

impl WsgiApp {
    pub(crate) fn reconcile(
        &mut self,
        ctx: &mut Ctx<'_, '_>,
        layout: &Layout,
        depth: Depth,
    ) -> Result<(), HandlerError> {
        self.report = Report::default();
        let config = match read_config(ctx) {
            Ok(c) => c,
            Err(e) => {
                // Keep whatever serves; the operator fixes the option.
                self.report.blocked(format!("invalid config: {e}"));
                let rollout = state::rollout(ctx.store.conn())?;
                self.report.serving = rollout.serving;
                return Ok(());
            }
        };
        self.report.port = Some(config.listen_port);
        let mut config = config;

        let (relation_env, ca_files) = if depth == Depth::Full {
            let (env, refreshed) =
                integrations::refresh(ctx, &config, &mut self.report, layout, &self.db_focus)?;
            (env, Some(refreshed))
        } else {
            ingress::report_recorded(ctx, &mut self.report)?;
            (integrations::relation_env(ctx, layout, &[])?, None)
        };
        self.report.reached_at = ingress::reached_at(ctx)?;

        self.ensure_packages(ctx, &config)?;
        let account = app_user::ensure_app_user(&self.machine, &layout.app)?;
        ensure_dirs(layout, &account)?;

        let mut app_env = config.environment.clone();
        app_env.extend(relation_env);
        serve_under_prefix(&mut config, &app_env);

        self.ensure_build(ctx, layout, &config, &app_env, depth == Depth::Check)?;
        let installed = sync_build_records(ctx, layout)?;

        if let Some(ca_files) = &ca_files {
            write_ca_files(ca_files, &account)?;
        }
        let env_changed = write_env_file(layout, &app_env, &account)
            .map_err(|e| format!("writing the environment file: {e}"))?;
        self.machine.crash_point("after-env-file");
        let env_hash = hash_env(&app_env);

        let mut rollout = state::rollout(ctx.store.conn())?;
        if let Some(newest) = installed.last() {
            builds::swap_symlink(&layout.latest_link(), &relative_build(&newest.label))?;
        }
        let wanted = resolve_target(None, None, &config, &installed);
        // The application caught up with a pinned unit (the seed's rolling
        // upgrade: one unit first, then the rest): it follows it again. A
        // pin elsewhere stays, and rollouts skip the unit.
        if rollout.pinned.is_some() && rollout.pinned.as_ref() == wanted.as_ref().ok() {
            ctx.model.log(
                LogLevel::Info,
                &format!(
                    "the application now wants {}: this unit is no longer pinned",
                    rollout.pinned.as_deref().unwrap_or_default()
                ),
            );
            rollout.pinned = None;
            state::save_rollout(ctx.store.conn(), &rollout)?;
        }
        // Only a full reconcile reads the peers; update-status keeps to the
        // build this unit was last allowed (a rollout moves only on grants).
        let turn = match depth {
            Depth::Full => Some(rollout::Turn::begin(
                ctx,
                &config,
                wanted.as_deref().ok(),
                rollout::UnitReport {
                    serving: rollout.serving.clone(),
                    pinned: rollout.pinned.clone(),
                    last_grant: None,
                },
            )?),
            Depth::Check => None,
        };
        let plan = match &turn {
            Some(turn) => turn.plan.clone(),
            None => match state::rollout_allowed(ctx.store.conn())? {
                Some(Some(build)) => Plan::Serve(build),
                Some(None) => Plan::Wait,
                None => Plan::FollowApplication,
            },
        };
        let granted = matches!(plan, Plan::Move { .. });
        let target = match &plan {
            Plan::Wait if rollout.pinned.is_none() => Err(Status::waiting(
                "waiting for the leader to grant this unit its turn in the application's rollout",
            )),
            Plan::FollowApplication | Plan::Wait => {
                resolve_target(rollout.pinned.as_deref(), None, &config, &installed)
            }
            Plan::Serve(build) | Plan::Move { target: build, .. } => {
                resolve_target(rollout.pinned.as_deref(), Some(build), &config, &installed)
            }
        };
        if let Some(pin) = &rollout.pinned {
            self.report.pinned = Some((pin.clone(), config.current_symlink.clone()));
        }
        let (outcome, no_target) = match target {
            Err(problem) => {
                let outcome = granted.then(|| Outcome::Failed(problem.message.clone()));
                self.report.problems.push(problem);
                (outcome, true)
            }
            Ok(_) if granted && rollout.pinned.is_some() => (Some(Outcome::SkippedPinned), false),
            Ok(target) => {
                if env_changed && rollout.serving.as_deref() == Some(target.as_str()) {
                    self.rerun_make(ctx, layout, &config, &target, &app_env)?;
                }
                // A grant is an operator's request passed on by the leader:
                // judged afresh, like an action.
                let judge_again = depth == Depth::Check || granted;
                let why = if granted { "rollout" } else { "config" };
                let switched = switch_to(
                    self,
                    ctx,
                    layout,
                    &config,
                    &target,
                    &env_hash,
                    why,
                    judge_again,
                )?;
                let outcome = match switched {
                    SwitchOutcome::Refused { failure, .. } => {
                        self.report.blocked(failure.clone());
                        Outcome::Failed(failure)
                    }
                    SwitchOutcome::ServingUnhealthy(message) => {
                        self.report.unhealthy(message.clone());
                        Outcome::Failed(message)
                    }
                    SwitchOutcome::Unchanged => {
                        // One quick look, so the status says the truth between switches.
                        if let Err(why) = probe_once(self, &config) {
                            self.report
                                .unhealthy(format!("build {target} is unhealthy: {why}"));
                        }
                        Outcome::Moved
                    }
                    SwitchOutcome::Switched { .. } => Outcome::Moved,
                };
                (granted.then_some(outcome), false)
            }
        };
        let serving = state::rollout(ctx.store.conn())?.serving;
        self.report.serving = serving.clone();
        if let Some(turn) = turn {
            self.report.rollout_note = turn.note(serving.as_deref());
            state::set_rollout_allowed(
                ctx.store.conn(),
                turn.has_peers().then_some(serving.as_deref()),
            )?;
            let phase = turn.finish(
                ctx,
                &config,
                wanted.as_deref().ok(),
                serving,
                rollout.pinned.clone(),
                outcome,
            )?;
            state::set_rollout_state(
                ctx.store.conn(),
                super::metrics::rollout_state(phase.as_ref()),
            )?;
        }
        if no_target {
            // No build to serve: nothing to switch or prune.
            if depth == Depth::Full {
                self.publish(ctx, layout, &config)?;
            }
            super::metrics::publish(self, ctx, layout, &config)?;
            return Ok(());
        }

        if depth == Depth::Full {
            self.publish(ctx, layout, &config)?;
        }
        prune_builds(ctx, layout, &config)?;
        super::metrics::publish(self, ctx, layout, &config)?;
        Ok(())
    }

    fn ensure_packages(
        &mut self,
        ctx: &mut Ctx<'_, '_>,
        config: &Config,
    ) -> Result<(), HandlerError> {
        let mut wanted = config.apt_dependencies.clone();
        wanted.sort();
        wanted.dedup();
        let wanted_s = wanted.join(" ");
        let installed = state::installed_packages(ctx.store.conn())?.unwrap_or_default();
        if wanted_s == installed {
            return Ok(());
        }
        if !wanted.is_empty() {
            ctx.model.set_unit_status(&Status::maintenance(format!(
                "installing packages: {wanted_s}"
            )))?;
            let apt = |args: &[&str]| {
                CommandSpec::new("apt-get")
                    .args(args.iter().copied())
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .timeout(Duration::from_secs(1800))
            };
            let update = self.machine.runner.run(&apt(&["update", "-q"]))?;
            let mut install_args = vec!["install", "-y", "-q", "--no-install-recommends"];
            install_args.extend(wanted.iter().map(String::as_str));
            let install = if update.success() {
                self.machine.runner.run(&apt(&install_args))?
            } else {
                update
            };
            if !install.success() {
                self.report.blocked(format!(
                    "apt_dependencies: apt-get could not install {wanted_s}: {}",
                    install.tail(2)
                ));
                return Ok(());
            }
        }
        // Packages no longer listed stay installed: removing them could take
        // away something else on the machine.
        state::set_installed_packages(ctx.store.conn(), &wanted_s)?;
        Ok(())
    }

    fn ensure_build(
        &mut self,
        ctx: &mut Ctx<'_, '_>,
        layout: &Layout,
        config: &Config,
        app_env: &[(String, String)],
        retry_failed: bool,
    ) -> Result<(), HandlerError> {
        let Some(label) = &config.build_label else {
            return Ok(());
        };
        let inputs = build_inputs(config, label);
        if let Some(failed) = state::failed_build(ctx.store.conn())? {
            if failed.label == *label && failed.inputs == inputs && !retry_failed {
                self.report.blocked(format!(
                    "{} (retried at the next update-status, or when the build's options change)",
                    failed.error
                ));
                return Ok(());
            }
        }
        if let Some(manifest) = builds::read_manifest(layout, label) {
            if let Some(expected) = &config.archive_sha256 {
                if &manifest.sha256 != expected {
                    self.report.blocked(format!(
                        "build {label} is installed from an archive with sha256 {}, not archive_sha256 {expected}; builds are immutable: publish the new archive under a new build_label",
                        short(&manifest.sha256)
                    ));
                }
            }
            return Ok(());
        }
        let sequence = state::next_build_sequence(ctx.store.conn())?;
        let mut progress = |message: &str| {
            let _ = ctx.model.set_unit_status(&Status::maintenance(message));
        };
        match builds::install(
            &self.machine,
            layout,
            &config.build_spec(),
            label,
            app_env,
            &mut progress,
        ) {
            Ok(manifest) => {
                let record = BuildRecord::from_manifest(&manifest, sequence);
                state::record_build(ctx.store.conn(), &record)?;
                state::set_failed_build(ctx.store.conn(), None)?;
                self.machine.crash_point("after-store-record");
                ctx.model.log(
                    LogLevel::Info,
                    &format!("installed build {label} (sha256 {})", record.sha256),
                );
            }
            Err(BuildError::Io {
                label,
                path,
                source,
            }) => {
                return Err(
                    format!("installing build {label}: {}: {source}", path.display()).into(),
                );
            }
            Err(e) => {
                ctx.model.log(LogLevel::Error, &e.to_string());
                self.report.blocked(e.to_string());
                let failed = state::FailedBuild {
                    label: label.clone(),
                    inputs,
                    error: e.to_string(),
                };
                state::set_failed_build(ctx.store.conn(), Some(&failed))?;
            }
        }
        Ok(())
    }

    fn rerun_make(
        &mut self,
        ctx: &mut Ctx<'_, '_>,
        layout: &Layout,
        config: &Config,
        label: &str,
        app_env: &[(String, String)],
    ) -> Result<(), HandlerError> {
        let Some(target) = &config.update_make_target else {
            return Ok(());
        };
        ctx.model
            .set_unit_status(&Status::maintenance(format!("running make {target}")))?;
        let spec = builds::make_command(
            &layout.code_dir(label),
            &layout.venv_dir(label),
            target,
            app_env,
        );
        let out = self
            .machine
            .runner
            .run(&spec.timeout(Duration::from_secs(1800)))?;
        if !out.success() {
            self.report.blocked(format!(
                "update_make_target: make {target} failed in build {label}: {}",
                out.tail(3)
            ));
        }
        Ok(())
    }

    /// What other applications see: the open port, website and proxy data,
    /// nrpe checks, what the COS collector scrapes and alerts on.
    fn publish(
        &mut self,
        ctx: &mut Ctx<'_, '_>,
        layout: &Layout,
        config: &Config,
    ) -> Result<(), HandlerError> {
        ctx.model.set_ports(&[Port::tcp(config.listen_port)])?;
        integrations::publish_website(ctx, config)?;
        ingress::publish(ctx, config, &mut self.report)?;
        nrpe::reconcile(&self.machine, ctx, layout, config, &mut self.report)?;
        observability::publish(ctx, config)?;
        Ok(())
    }

    pub(crate) fn service_spec(
        &self,
        layout: &Layout,
        config: &Config,
        label: &str,
        sha256: &str,
        env_hash: &str,
    ) -> Result<ServiceSpec, HandlerError> {
        let account = app_user::app_account(&self.machine, &layout.app)?;
        let workers = config.effective_workers(self.machine.cpus);
        let metrics = super::metrics::exporter_spec(self, layout, config)?;
        let mut fingerprint = Sha256::new();
        for part in [
            label,
            sha256,
            env_hash,
            &config.wsgi_application,
            &self.machine.bind_address,
            &config.listen_port.to_string(),
            &workers.to_string(),
            &serde_json::to_string(&config.serving).expect("serving options serialise"),
            // gunicorn's --statsd-host; the exporter itself restarts apart.
            metrics.as_ref().map_or("", |m| m.statsd.as_str()),
        ] {
            fingerprint.update(part.as_bytes());
            fingerprint.update([0]);
        }
        Ok(ServiceSpec {
            name: layout.app.clone(),
            current_dir: layout.current_link(),
            wsgi_application: config.wsgi_application.clone(),
            bind_address: self.machine.bind_address.clone(),
            port: config.listen_port,
            workers,
            env_file: layout.env_file(),
            user: account.name.clone(),
            group: users::group_name(account.gid).unwrap_or_else(|| account.name.clone()),
            log_dir: layout.log_dir.clone(),
            run_dir: layout.run_dir.clone(),
            serving: config.serving.clone(),
            metrics,
            fingerprint: hex(&fingerprint.finalize()),
        })
    }
}

pub(crate) fn read_config(ctx: &mut Ctx<'_, '_>) -> Result<Config, ConfigError> {
    let values = ctx
        .model
        .config()
        .map_err(|e| ConfigError::new("config", e.to_string()))?;
    Config::from_reader(ConfigReader::new(values), |text| {
        envvars::parse_environment_variables(text)
            .map_err(|e| ConfigError::new("environment_variables", e.to_string()))
    })
}

/// A digest of what shapes a build: a failed install is retried when it changes.
fn build_inputs(config: &Config, label: &str) -> String {
    let mut h = Sha256::new();
    for part in [
        Some(label),
        Some(config.archive_filename.as_str()),
        config.code_assets_uri.as_deref(),
        config.archive_sha256.as_deref(),
        config.requirements_path.as_deref(),
        config.pip_cache_path.as_deref(),
        config.update_make_target.as_deref(),
    ] {
        h.update(part.unwrap_or("").as_bytes());
        h.update([0]);
    }
    hex(&h.finalize())
}

/// What `current` should point at: the pin, else the build the rollout
/// allows, else `current_symlink` (`latest` meaning the newest installed
/// build). With neither pin nor rollout build, what the application wants.
fn resolve_target(
    pinned: Option<&str>,
    rollout_build: Option<&str>,
    config: &Config,
    installed: &[BuildRecord],
) -> Result<String, Status> {
    let names = || {
        installed
            .iter()
            .map(|b| b.label.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if installed.is_empty() {
        return Err(match &config.build_label {
            None => Status::blocked(
                "no build installed: set build_label, e.g. `juju config <app> build_label=r1`",
            ),
            // The install itself reported why it failed.
            Some(label) => Status::waiting(format!("build {label} is not installed yet")),
        });
    }
    let is_installed = |label: &str| installed.iter().any(|b| b.label == label);
    if let Some(pin) = pinned {
        return if is_installed(pin) {
            Ok(pin.to_string())
        } else {
            Err(Status::blocked(format!(
                "this unit is pinned to {pin}, which is no longer installed; run set-current-symlink with one of: {}",
                names()
            )))
        };
    }
    if let Some(build) = rollout_build {
        return if is_installed(build) {
            Ok(build.to_string())
        } else {
            Err(Status::blocked(format!(
                "the application's rollout asks this unit for build {build}, which is not installed here; installed builds: {} (set build_label={build} to install it)",
                names()
            )))
        };
    }
    let wanted = config.current_symlink.as_str();
    if wanted == LATEST {
        return Ok(installed.last().expect("not empty").label.clone());
    }
    if is_installed(wanted) {
        Ok(wanted.to_string())
    } else {
        Err(Status::blocked(format!(
            "current_symlink: build {wanted} is not installed; installed builds: {} (set build_label={wanted} to install it)",
            names()
        )))
    }
}

/// How a switch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwitchOutcome {
    /// Already serving the target with the same environment.
    Unchanged,
    /// Now serving the target; the health check's one-line result.
    Switched {
        previous: Option<String>,
        health: String,
    },
    /// The target could not serve; `kept` (the previous build, if any)
    /// still does. The failure does not name `kept`: the status appends
    /// what serves, and an action's message adds it.
    Refused {
        failure: String,
        kept: Option<String>,
    },
    /// The target fails its health check, but there is nothing else to
    /// serve (the first build, or the same build with a new environment):
    /// it stays, and the status says what is wrong.
    ServingUnhealthy(String),
}

/// Move gunicorn onto `target` with zero failed requests, check its health,
/// and switch back when it is unhealthy. A switch refused before with the
/// same fingerprint is refused again at once unless `judge_again`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn switch_to(
    app: &WsgiApp,
    ctx: &mut Ctx<'_, '_>,
    layout: &Layout,
    config: &Config,
    target: &str,
    env_hash: &str,
    why: &str,
    judge_again: bool,
) -> Result<SwitchOutcome, HandlerError> {
    let conn = ctx.store.conn();
    let mut rollout = state::rollout(conn)?;
    let records = state::builds(conn)?;
    let sha_of = |label: &str| {
        records
            .iter()
            .find(|b| b.label == label)
            .map(|b| b.sha256.clone())
            .unwrap_or_default()
    };
    let spec = app.service_spec(layout, config, target, &sha_of(target), env_hash)?;
    let running = app.machine.services.state(&spec)?;
    let same_build = rollout.serving.as_deref() == Some(target);
    if same_build
        && running
            == (ServiceState::Running {
                fingerprint: spec.fingerprint.clone(),
            })
    {
        builds::swap_symlink(&layout.current_link(), &relative_build(target))?;
        state::set_refused_switch(conn, None)?;
        app.machine.services.ensure_metrics(&spec)?;
        return Ok(SwitchOutcome::Unchanged);
    }
    if let Some(refused) = state::refused_switch(conn)? {
        if refused.fingerprint == spec.fingerprint && !judge_again {
            return Ok(SwitchOutcome::Refused {
                failure: format!(
                    "{} (judged again at the next update-status, or when the build or its environment changes)",
                    refused.failure
                ),
                kept: rollout.serving.clone(),
            });
        }
    }
    let previous = rollout.serving.clone().filter(|p| p != target);
    if let Some(extra) = config.serving.worker_class.needs_extra() {
        if let Err(missing) = builds::can_import(
            &app.machine,
            layout,
            target,
            config.serving.worker_class.module(),
        ) {
            let failure = format!(
                "webserver_worker_class={class} needs gunicorn[{extra}] in build {target} \
                 ({missing}): add gunicorn[{extra}] to its requirements, or choose sync or gthread",
                class = config.serving.worker_class
            );
            return refuse(ctx, &mut rollout, &spec, failure);
        }
    }
    if !same_build {
        ctx.model.set_unit_status(&Status::maintenance(format!(
            "judging build {target} before it takes traffic ({why})"
        )))?;
    }
    // Judge the target privately first. Only a build with nothing to fall
    // back to (the first, or the one already serving, with a new
    // environment) may go on to serve after failing: the status says so.
    let can_fall_back = previous.is_some() && matches!(running, ServiceState::Running { .. });
    builds::swap_symlink(&layout.candidate_link(), &relative_build(target))?;
    let candidate = ServiceSpec {
        current_dir: layout.candidate_link(),
        ..spec.clone()
    };
    let preflight = app
        .machine
        .services
        .preflight(&candidate, &health_criteria(config));
    let mut failed_preflight = false;
    let refused = match preflight {
        Ok(report) => {
            ctx.model.log(
                LogLevel::Info,
                &format!("build {target} passed its pre-flight: {report}"),
            );
            None
        }
        Err(ServiceError::StartFailed(detail)) => {
            Some(format!("build {target} did not start: {detail}"))
        }
        Err(ServiceError::Unhealthy(detail)) if can_fall_back => {
            Some(format!("build {target} failed its pre-flight: {detail}"))
        }
        Err(ServiceError::Unhealthy(detail)) => {
            failed_preflight = true;
            ctx.model.log(
                LogLevel::Warning,
                &format!(
                    "build {target} failed its pre-flight ({detail}); \
                     starting it anyway: nothing else can serve"
                ),
            );
            None
        }
        Err(other) => return Err(other.into()),
    };
    if let Some(failure) = refused {
        return refuse(ctx, &mut rollout, &spec, failure);
    }
    if !same_build {
        ctx.model.set_unit_status(&Status::maintenance(format!(
            "switching to build {target} ({why})"
        )))?;
    }
    builds::swap_symlink(&layout.current_link(), &relative_build(target))?;
    app.machine.crash_point("after-symlink-swap");
    let started = app.machine.services.ensure(&spec);
    let started_ok = started.is_ok();
    app.machine.crash_point("after-ensure");
    let failure = match started {
        Ok(ServiceChange::Unchanged) | Ok(ServiceChange::Started) | Ok(ServiceChange::Replaced) => {
            // Judged unhealthy already: one look says how it is now.
            let health = if failed_preflight {
                probe_once(app, config)
            } else {
                check_health(app, config)
            };
            app.machine.crash_point("after-health-check");
            match health {
                Ok(health) => {
                    rollout.previous = previous.clone().or(rollout.previous.take());
                    rollout.serving = Some(target.to_string());
                    rollout.switched_at = Some(builds::now());
                    rollout.health = Some(health.clone());
                    state::save_rollout(conn, &rollout)?;
                    state::set_refused_switch(conn, None)?;
                    state::count(conn, |c| c.switches += 1)?;
                    app.machine.crash_point("after-rollout-save");
                    ctx.model.log(
                        LogLevel::Info,
                        &format!("serving build {target} ({why}); health: {health}"),
                    );
                    return Ok(SwitchOutcome::Switched { previous, health });
                }
                Err(why) => format!("build {target} is unhealthy: {why}"),
            }
        }
        Err(ServiceError::StartFailed(detail)) => format!("build {target} did not start: {detail}"),
        Err(other) => return Err(other.into()),
    };
    if started_ok && previous.is_none() {
        rollout.serving = Some(target.to_string());
        rollout.switched_at = Some(builds::now());
        rollout.health = Some(failure.clone());
        state::save_rollout(conn, &rollout)?;
        state::count(conn, |c| {
            c.switches += 1;
            c.health_gate_failures += 1;
        })?;
        ctx.model.log(LogLevel::Warning, &failure);
        return Ok(SwitchOutcome::ServingUnhealthy(failure));
    }
    // Back to what served before, if anything did. A master that did not
    // start replaced nothing (the old one still serves, with what it was
    // started with), and asking again with today's options would fail the
    // same way.
    if let Some(back) = &rollout.serving {
        builds::swap_symlink(&layout.current_link(), &relative_build(back))?;
        if started_ok {
            let back_spec = app.service_spec(layout, config, back, &sha_of(back), env_hash)?;
            app.machine.services.ensure(&back_spec)?;
        }
    }
    refuse(ctx, &mut rollout, &spec, failure)
}

/// End a switch refused with `failure`: what serves still serves, and the
/// refusal is remembered for `spec` so it is not judged again on every hook.
fn refuse(
    ctx: &mut Ctx<'_, '_>,
    rollout: &mut Rollout,
    spec: &ServiceSpec,
    failure: String,
) -> Result<SwitchOutcome, HandlerError> {
    let conn = ctx.store.conn();
    rollout.health = Some(failure.clone());
    state::save_rollout(conn, rollout)?;
    state::count(conn, |c| c.health_gate_failures += 1)?;
    state::set_refused_switch(
        conn,
        Some(&state::RefusedSwitch {
            fingerprint: spec.fingerprint.clone(),
            failure: failure.clone(),
        }),
    )?;
    ctx.model.log(LogLevel::Error, &failure);
    Ok(SwitchOutcome::Refused {
        failure,
        kept: rollout.serving.clone(),
    })
}

/// gunicorn answers only paths under a `SCRIPT_NAME` in its environment
/// (500 for any other), so with one every health check (the pre-flight,
/// NRPE, the proxy's) asks for `nagios_index_path` under the prefix.
pub(crate) fn serve_under_prefix(config: &mut Config, app_env: &[(String, String)]) {
    let prefix = app_env
        .iter()
        .rev()
        .find(|(name, _)| name == ingress::SCRIPT_NAME)
        .map(|(_, prefix)| prefix.trim_end_matches('/'))
        .filter(|prefix| !prefix.is_empty());
    if let Some(prefix) = prefix {
        config.nagios_index_path = format!("{prefix}{}", config.nagios_index_path);
    }
}

/// What the index page must answer, from the nagios options.
fn health_criteria(config: &Config) -> HealthCriteria {
    HealthCriteria {
        path: config.nagios_index_path.clone(),
        expected_status: config.nagios_expected_status,
        expected_content: config.nagios_index_content.clone(),
    }
}

/// GET the index page until it answers as the nagios options say
/// (bounded: a starting app gets a few seconds).
fn check_health(app: &WsgiApp, config: &Config) -> Result<String, String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let verdict = probe_once(app, config);
        if verdict.is_ok() || std::time::Instant::now() >= deadline {
            return verdict;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// One GET of the index page, judged as the nagios options say.
fn probe_once(app: &WsgiApp, config: &Config) -> Result<String, String> {
    let addr = app.machine.local_address(config.listen_port);
    let path = &config.nagios_index_path;
    let started = std::time::Instant::now();
    app.machine
        .probe
        .http_get(&addr, path, Duration::from_secs(5))
        .and_then(|answer| {
            health::judge(
                &answer,
                config.nagios_expected_status,
                &config.nagios_index_content,
                started.elapsed(),
            )
            .map_err(|e| e.to_string())
        })
        .map(|report| {
            format!(
                "GET {path}: HTTP {} in {} ms",
                report.status, report.elapsed_ms
            )
        })
        .map_err(|e| format!("GET {path}: {e}"))
}

/// Make the store's build records agree with the disk (the disk wins: a
/// build renamed into place before a crash is adopted; one removed by hand
/// is forgotten). Returns the installed builds, oldest first.
fn sync_build_records(
    ctx: &mut Ctx<'_, '_>,
    layout: &Layout,
) -> Result<Vec<BuildRecord>, HandlerError> {
    let conn = ctx.store.conn();
    let on_disk = builds::installed_on_disk(layout);
    let recorded = state::builds(conn)?;
    for r in &recorded {
        if !on_disk.iter().any(|m| m.label == r.label) {
            state::forget_build(conn, &r.label)?;
        }
    }
    for m in &on_disk {
        if !recorded.iter().any(|r| r.label == m.label) {
            let record = BuildRecord::from_manifest(m, state::next_build_sequence(conn)?);
            state::record_build(conn, &record)?;
        }
    }
    Ok(state::builds(conn)?)
}

/// Remove the oldest builds beyond `keep_builds`, never the one serving,
/// the latest, the pinned one or the rollback target.
fn prune_builds(
    ctx: &mut Ctx<'_, '_>,
    layout: &Layout,
    config: &Config,
) -> Result<(), HandlerError> {
    let conn = ctx.store.conn();
    let installed = state::builds(conn)?;
    let excess = installed.len().saturating_sub(config.keep_builds as usize);
    if excess == 0 {
        return Ok(());
    }
    let rollout = state::rollout(conn)?;
    let keep: Vec<&str> = [
        rollout.serving.as_deref(),
        rollout.pinned.as_deref(),
        rollout.previous.as_deref(),
        installed.last().map(|b| b.label.as_str()),
        Some(config.current_symlink.as_str()),
        config.build_label.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let doomed: Vec<String> = installed
        .iter()
        .filter(|b| !keep.contains(&b.label.as_str()))
        .take(excess)
        .map(|b| b.label.clone())
        .collect();
    for label in doomed {
        builds::remove(layout, &label)?;
        state::forget_build(conn, &label)?;
        ctx.model.log(
            LogLevel::Info,
            &format!("removed build {label} (keep_builds={})", config.keep_builds),
        );
    }
    Ok(())
}

/// `current` and `latest` point at builds relative to the base directory.
pub fn relative_build(label: &str) -> PathBuf {
    Path::new("builds").join(label)
}

fn ensure_dirs(layout: &Layout, account: &users::Account) -> Result<(), HandlerError> {
    for dir in [&layout.base, &layout.etc, &layout.lib_dir, &layout.run_dir] {
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    }
    fs::create_dir_all(&layout.log_dir)?;
    users::chown(&layout.log_dir, account.uid, account.gid)?;
    fs::set_permissions(&layout.log_dir, fs::Permissions::from_mode(0o750))?;
    Ok(())
}

fn write_env_file(
    layout: &Layout,
    vars: &[(String, String)],
    account: &users::Account,
) -> Result<bool, HandlerError> {
    Ok(envvars::write_env_file(
        &layout.env_file(),
        vars,
        0,
        account.gid,
    )?)
}

/// The databases' CA files, before the environment file names them: mode
/// 0640, root and the app's group, like the environment file.
fn write_ca_files(
    refreshed: &super::databases::Refreshed,
    account: &users::Account,
) -> Result<(), HandlerError> {
    for ca in &refreshed.ca_files {
        envvars::write_group_readable(&ca.path, ca.pem.as_bytes(), 0, account.gid)
            .map_err(|e| format!("writing a database CA: {e}"))?;
    }
    for stale in &refreshed.stale_ca_files {
        envvars::remove_file(stale).map_err(|e| format!("removing a database CA: {e}"))?;
    }
    Ok(())
}

/// A digest of the app's environment, part of the service fingerprint.
pub fn hash_env(vars: &[(String, String)]) -> String {
    let mut h = Sha256::new();
    let sorted: BTreeMap<&str, &str> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    for (k, v) in sorted {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    hex(&h.finalize())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// `stop`: take gunicorn down gracefully.
pub fn stop(app: &mut WsgiApp, ctx: &mut Ctx<'_, '_>, layout: &Layout) -> Result<(), HandlerError> {
    if let Ok(config) = read_config(ctx) {
        let spec = app.service_spec(layout, &config, "", "", "")?;
        app.machine.services.stop(&spec)?;
    }
    app.report
        .problems
        .push(Status::new(StatusName::Maintenance, "stopped"));
    Ok(())
}

/// `remove`: stop, and take away what other software would trip over
/// (service definitions, nrpe checks). Builds stay for forensics.
pub fn remove(
    app: &mut WsgiApp,
    ctx: &mut Ctx<'_, '_>,
    layout: &Layout,
) -> Result<(), HandlerError> {
    stop(app, ctx, layout)?;
    nrpe::remove_files(&app.machine, layout)?;
    Ok(())
}
