//! What the charm tells the metrics exporter: the build serving, its
//! counts of switches and health-gate failures, how long builds took to
//! install, where the rollout stands, and how to ask the app whether it is
//! up. Written after every reconcile; the exporter reads it at each scrape.

use super::config::Config;
use super::rollout::Phase;
use super::state;
use super::{Ctx, WsgiApp};
use crate::ops::HandlerError;
use crate::workload::builds;
use crate::workload::layout::Layout;
use crate::workload::metrics::{
    CharmMetrics, HealthTarget, MetricsSpec, RolloutState, ServingBuild,
};

/// The exporter beside gunicorn for `config`, its program put in place;
/// `None` when `metrics_port` is 0 or the charm is not a process of its own.
pub fn exporter_spec(
    app: &WsgiApp,
    layout: &Layout,
    config: &Config,
) -> Result<Option<MetricsSpec>, HandlerError> {
    let (Some(port), Some(binary)) = (config.metrics_port, &app.machine.charm_binary) else {
        return Ok(None);
    };
    let program = layout.exporter_program();
    let program_id = crate::workload::metrics::install_program(binary, &program)
        .map_err(|e| format!("putting the metrics exporter in place: {e}"))?;
    Ok(Some(MetricsSpec {
        program,
        program_id,
        listen: app.machine.local_address(port),
        statsd: app.machine.local_address(config.metrics_statsd_port),
        charm_metrics: layout.charm_metrics_file(),
    }))
}

/// The rollout's phase as the metrics name it.
pub fn rollout_state(phase: Option<&Phase>) -> RolloutState {
    match phase {
        Some(Phase::Running) => RolloutState::InProgress,
        Some(Phase::Halted { .. }) => RolloutState::Halted,
        Some(Phase::Done) | None => RolloutState::Idle,
    }
}

/// Rewrite the file the exporter reads. `config` is the one the reconcile
/// served with (its index path under a `SCRIPT_NAME`).
pub fn publish(
    app: &WsgiApp,
    ctx: &mut Ctx<'_, '_>,
    layout: &Layout,
    config: &Config,
) -> Result<(), HandlerError> {
    if config.metrics_port.is_none() {
        return Ok(());
    }
    let conn = ctx.store.conn();
    let serving = state::rollout(conn)?.serving;
    let records = state::builds(conn)?;
    let counts = state::metric_counts(conn)?;
    let metrics = CharmMetrics {
        serving: serving.map(|label| ServingBuild {
            sha256: records
                .iter()
                .find(|b| b.label == label)
                .map(|b| b.sha256.clone())
                .unwrap_or_default(),
            label,
        }),
        switches: counts.switches,
        health_gate_failures: counts.health_gate_failures,
        install_seconds: builds::installed_on_disk(layout)
            .into_iter()
            .filter_map(|m| Some((m.label, m.install_ms? as f64 / 1000.0)))
            .collect(),
        rollout: state::rollout_state(conn)?,
        health: Some(HealthTarget {
            address: app.machine.local_address(config.listen_port),
            path: config.nagios_index_path.clone(),
            expected_status: config.nagios_expected_status,
            expected_content: config.nagios_index_content.clone(),
        }),
    };
    let path = layout.charm_metrics_file();
    metrics
        .write(&path)
        .map_err(|e| format!("writing the charm's metrics: {e}"))?;
    Ok(())
}
