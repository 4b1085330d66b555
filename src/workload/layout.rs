//! Where the charm keeps things on the machine, named once.
//!
//! Everything is per application (two charms of this kind can share a
//! machine), and under the machine root (`/` in production).

use std::path::PathBuf;

use super::machine::Machine;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub app: String,
    /// `/srv/<app>`: builds and the `current`/`latest` symlinks.
    pub base: PathBuf,
    /// `/etc/<app>`: the environment file.
    pub etc: PathBuf,
    /// `/var/log/<app>`: gunicorn's logs, writable by the app user.
    pub log_dir: PathBuf,
    /// `/run/<app>`: the service's runtime files.
    pub run_dir: PathBuf,
    /// `/var/lib/<app>`: the charm's tools (uv) and caches.
    pub lib_dir: PathBuf,
}

impl Layout {
    pub fn new(machine: &Machine, app: &str) -> Layout {
        Layout {
            app: app.to_string(),
            base: machine.path(format!("/srv/{app}")),
            etc: machine.path(format!("/etc/{app}")),
            log_dir: machine.path(format!("/var/log/{app}")),
            run_dir: machine.path(format!("/run/{app}")),
            lib_dir: machine.path(format!("/var/lib/{app}")),
        }
    }

    pub fn builds_dir(&self) -> PathBuf {
        self.base.join("builds")
    }
    /// An installed build: `code/` (the archive's contents), `venv/`, `build.json`.
    pub fn build_dir(&self, label: &str) -> PathBuf {
        self.builds_dir().join(label)
    }
    pub fn code_dir(&self, label: &str) -> PathBuf {
        self.build_dir(label).join("code")
    }
    pub fn venv_dir(&self, label: &str) -> PathBuf {
        self.build_dir(label).join("venv")
    }
    /// Where builds are put together before they are renamed into place.
    pub fn staging_dir(&self) -> PathBuf {
        self.base.join(".staging")
    }
    pub fn current_link(&self) -> PathBuf {
        self.base.join("current")
    }
    /// The build being judged by a pre-flight, before `current` may move.
    pub fn candidate_link(&self) -> PathBuf {
        self.base.join("candidate")
    }
    pub fn latest_link(&self) -> PathBuf {
        self.base.join("latest")
    }
    pub fn env_file(&self) -> PathBuf {
        self.etc.join("environment")
    }
    /// The CA a database relation's provider sent (`tls-ca`), named by the
    /// relation's endpoint; as private as the environment file.
    pub fn database_ca_file(&self, endpoint: &str) -> PathBuf {
        self.etc.join(format!("{endpoint}-ca.pem"))
    }
    /// What the charm tells the metrics exporter (world-readable).
    pub fn charm_metrics_file(&self) -> PathBuf {
        self.lib_dir.join("metrics/charm.json")
    }
    /// The charm's binary where the app user can run it as the exporter.
    pub fn exporter_program(&self) -> PathBuf {
        self.lib_dir.join("bin/wsgi-app")
    }
    /// A venv of the charm's own, holding uv.
    pub fn tools_venv(&self) -> PathBuf {
        self.lib_dir.join("tools")
    }
    /// uv's download cache, shared by builds so a rebuild is offline-fast.
    pub fn uv_cache(&self) -> PathBuf {
        self.lib_dir.join("uv-cache")
    }
}

/// The file inside a build that proves it is complete.
pub const BUILD_MANIFEST: &str = "build.json";
