//! The app's metrics endpoint: `wsgi-app metrics-exporter`, a process of
//! the charm's own binary beside gunicorn, kept up by the same service
//! manager (a unit of its own under systemd, a child of the direct
//! supervisor), so it starts with the app and outlives every switch.
//!
//! It serves Prometheus' text format at `/metrics` on the machine's own
//! address, from three sources:
//! - what gunicorn sends over statsd ([`statsd`]), added up since the
//!   exporter started (counters restart at 0 with it, as Prometheus
//!   expects of a restarted target);
//! - what only the charm knows ([`CharmMetrics`]: the serving build,
//!   switches, health-gate failures, install durations, the rollout),
//!   a file the charm rewrites after each hook and the exporter reads at
//!   each scrape, so a restarted exporter loses none of it;
//! - its own GET of the app's index page at each scrape (`wsgi_app_up`),
//!   judged by the same criteria as the health gate.
//!
//! See `exposition` for the names; ARCHITECTURE.md says why this is ours
//! and not a statsd exporter package.

pub mod exporter;
mod exposition;
pub mod statsd;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use exposition::render;

pub use crate::workload::service::{MetricsSpec, EXPORTER_SUBCOMMAND as SUBCOMMAND};

/// Where a rollout of the application stands, as this unit sees it.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    strum::AsRefStr,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum RolloutState {
    #[default]
    Idle,
    InProgress,
    Halted,
}

/// The build gunicorn serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServingBuild {
    pub label: String,
    /// The archive's SHA-256.
    pub sha256: String,
}

/// How the exporter asks the app whether it is up: the health gate's
/// criteria (the charm's `nagios_*` options).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthTarget {
    /// `host:port`.
    pub address: String,
    pub path: String,
    pub expected_status: u16,
    pub expected_content: String,
}

/// What only the charm knows, written after each hook (world-readable: it
/// holds no secret) and read by the exporter at each scrape.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CharmMetrics {
    pub serving: Option<ServingBuild>,
    /// Switches to another build or to the same build with a new
    /// environment or options, since the unit was installed.
    pub switches: u64,
    /// Builds the health gate refused (pre-flight, or the check after a
    /// switch), since the unit was installed.
    pub health_gate_failures: u64,
    /// Seconds each installed build took to install, by label.
    pub install_seconds: BTreeMap<String, f64>,
    pub rollout: RolloutState,
    pub health: Option<HealthTarget>,
}

impl CharmMetrics {
    /// Write the file atomically, so a scrape reads the old or the new.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::workload::service::write_if_changed(path, &text, 0o644).map(|_| ())
    }

    /// The file as the charm last wrote it; `None` when there is none yet
    /// or it cannot be read (the scrape then shows only the app's side).
    pub fn read(path: &Path) -> Option<CharmMetrics> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }
}

/// If this process was started as `<binary> metrics-exporter …`, run the
/// exporter and return its exit code; otherwise `None`.
pub fn maybe_run(args: &[String]) -> Option<i32> {
    (args.get(1).map(String::as_str) == Some(SUBCOMMAND)).then(|| exporter::main(&args[2..]))
}

/// Put the charm's `binary` at `dest`, where the exporter runs it from: a
/// hard link when the filesystem allows (no copy, and the charm replacing
/// its own binary later leaves this one whole), else a copy with the same
/// modification time. Returns an identity of the content, which changes
/// when a new charm revision brings a new binary.
pub fn install_program(binary: &Path, dest: &Path) -> std::io::Result<String> {
    use crate::workload::text::at_path;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let source = std::fs::metadata(binary).map_err(at_path(binary))?;
    let identity =
        |m: &std::fs::Metadata| format!("{}-{}.{:09}", m.len(), m.mtime(), m.mtime_nsec());
    if let Ok(existing) = std::fs::metadata(dest) {
        if identity(&existing) == identity(&source) {
            return Ok(identity(&existing));
        }
    }
    let dir = dest.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(at_path(dir))?;
    let fresh = dest.with_extension("new");
    let _ = std::fs::remove_file(&fresh);
    if std::fs::hard_link(binary, &fresh).is_err() {
        std::fs::copy(binary, &fresh).map_err(at_path(&fresh))?;
        let file = std::fs::File::options()
            .write(true)
            .open(&fresh)
            .map_err(at_path(&fresh))?;
        file.set_modified(source.modified()?)
            .map_err(at_path(&fresh))?;
        file.set_permissions(std::fs::Permissions::from_mode(0o755))
            .map_err(at_path(&fresh))?;
    }
    std::fs::rename(&fresh, dest).map_err(at_path(dest))?;
    Ok(identity(&std::fs::metadata(dest).map_err(at_path(dest))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_is_put_in_place_once_and_again_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("dispatch");
        std::fs::write(&binary, b"v1").unwrap();
        let dest = dir.path().join("lib/bin/wsgi-app");
        let first = install_program(&binary, &dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"v1");
        assert_eq!(install_program(&binary, &dest).unwrap(), first);
        // A new charm revision writes a new file in the binary's place.
        std::fs::remove_file(&binary).unwrap();
        std::fs::write(&binary, b"v2, longer").unwrap();
        let second = install_program(&binary, &dest).unwrap();
        assert_ne!(second, first);
        assert_eq!(std::fs::read(&dest).unwrap(), b"v2, longer");
        assert!(!dest.with_extension("new").exists());
    }

    #[test]
    fn the_charm_file_round_trips_and_a_bad_one_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics/charm.json");
        let metrics = CharmMetrics {
            switches: 3,
            rollout: RolloutState::InProgress,
            ..Default::default()
        };
        metrics.write(&path).unwrap();
        assert_eq!(CharmMetrics::read(&path), Some(metrics));
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(CharmMetrics::read(&path), None);
    }
}
