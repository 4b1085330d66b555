//! Shared set-up for end-to-end tests: a charm-sim model in a temporary
//! directory, running the real charm binary, on its own loopback block so
//! tests and people's models do not collide. Dropping it destroys the model.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub mod load;

#[path = "../common/ports.rs"]
pub mod ports;

#[path = "../common/archives.rs"]
pub mod archives;

use serde_json::Value;

pub struct Sim {
    dir: tempfile::TempDir,
    block: String,
    charm_sim: PathBuf,
    destroyed: std::cell::Cell<bool>,
}

/// The charm-sim binary: beside the charm binary cargo built for this test.
/// Built (or brought up to date: it is another package's binary, which
/// `cargo test` of this one does not rebuild) once per test process.
fn charm_sim_binary() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    let beside = Path::new(env!("CARGO_BIN_EXE_wsgi-app")).with_file_name("charm-sim");
    BUILT.call_once(|| {
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "-p",
                "harness",
                "-p",
                "wsgi-app",
                "--bin",
                "charm-sim",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building charm-sim failed");
    });
    beside
}

impl Sim {
    /// A model whose units live at `<block>.1`, `<block>.2`, ...
    pub fn new(block: &str) -> Sim {
        Sim {
            dir: tempfile::tempdir().unwrap(),
            block: block.to_string(),
            charm_sim: charm_sim_binary(),
            destroyed: std::cell::Cell::new(false),
        }
    }

    /// The charm laid out from this source tree and the built binary.
    pub fn charm_dir(&self) -> String {
        let to = self.dir.path().join("charm");
        if !to.exists() {
            harness::sim::charm::lay_out_charm(
                Path::new(env!("CARGO_MANIFEST_DIR")),
                Path::new(env!("CARGO_BIN_EXE_wsgi-app")),
                &to,
            )
            .expect("charm laid out");
        }
        to.to_string_lossy().into_owned()
    }

    /// Ship `example_wsgi.py` with `source` as build `label` in the
    /// charm's `files/` (lay the charm out first with [`Sim::charm_dir`]).
    pub fn ship_build(&self, label: &str, source: &str) {
        const ARCHIVE: &str = "example-wsgi-app.tar.bzip2";
        let dir = Path::new(&self.charm_dir()).join("files").join(label);
        std::fs::create_dir_all(&dir).unwrap();
        let bytes = archives::archive_bytes(ARCHIVE, &[("example_wsgi.py", source.as_bytes())]);
        std::fs::write(dir.join(ARCHIVE), bytes).unwrap();
    }

    pub fn model_dir(&self) -> PathBuf {
        self.dir.path().join("model")
    }

    /// `lb-status NAME --format json`: whether haproxy serves the
    /// configuration the model asks for (its exit status), and the status.
    pub fn lb_status(&self, name: &str) -> (bool, Value) {
        let (healthy, text) = self.run(&["lb-status", name, "--format", "json"]);
        let start = text.find('{').expect("JSON in lb-status output");
        let end = text.rfind('}').expect("JSON in lb-status output");
        let status = serde_json::from_str(&text[start..=end]).expect("lb-status is JSON");
        (healthy, status)
    }

    /// Ask collector `remote`'s Prometheus (`add-remote --prometheus`) an
    /// instant query: the series of its answer (`data.result`).
    pub fn prom_query(&self, remote: &str, promql: &str) -> Vec<Value> {
        let text = self.ok(&["prom-query", remote, promql]);
        let json = &text[text.find('{').unwrap_or(0)..=text.rfind('}').unwrap_or(0)];
        let answer: Value = serde_json::from_str(json)
            .unwrap_or_else(|e| panic!("prom-query {promql:?} is JSON ({e}): {text}"));
        assert_eq!(answer["status"], "success", "{promql}: {answer:#}");
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// `prom-status NAME --format json`: whether the collector's Prometheus
    /// serves the configuration the model asks for (its exit status), and
    /// its targets and rule groups.
    pub fn prom_status(&self, remote: &str) -> (bool, Value) {
        let (healthy, text) = self.run(&["prom-status", remote, "--format", "json"]);
        let start = text.find('{').expect("JSON in prom-status output");
        let end = text.rfind('}').expect("JSON in prom-status output");
        let status = serde_json::from_str(&text[start..=end]).expect("prom-status is JSON");
        (healthy, status)
    }

    /// The model's relation to remote application `remote` (not simply
    /// the first: the application's peer relation is older).
    pub fn relation_to(&self, remote: &str) -> harness::sim::store::Relation {
        let model = harness::sim::store::Model::open(&self.model_dir()).unwrap();
        model
            .relations()
            .unwrap()
            .into_iter()
            .find(|r| r.remote_app == remote)
            .unwrap_or_else(|| panic!("no relation to {remote}"))
    }

    pub fn run(&self, args: &[&str]) -> (bool, String) {
        self.run_with_env(&[], args)
    }

    /// Run charm-sim with extra environment variables (e.g. the charm's
    /// test-only `WSGI_APP_CRASH_AT`, which charm-sim passes to hooks).
    pub fn run_with_env(&self, env: &[(&str, &str)], args: &[&str]) -> (bool, String) {
        let out = Command::new(&self.charm_sim)
            .envs(env.iter().copied())
            .arg("--model")
            .arg(self.model_dir())
            .arg("--address-block")
            .arg(&self.block)
            .args(args)
            .output()
            .expect("charm-sim runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Run charm-sim; it must succeed. Its output.
    pub fn ok(&self, args: &[&str]) -> String {
        let (ok, text) = self.run(args);
        assert!(ok, "charm-sim {args:?} failed:\n{text}");
        text
    }

    /// Run charm-sim; it must fail. Its output.
    pub fn fails(&self, args: &[&str]) -> String {
        let (ok, text) = self.run(args);
        assert!(!ok, "charm-sim {args:?} should have failed:\n{text}");
        text
    }

    /// `charm-sim add-remote`: an application outside the model speaking
    /// `interface`, with `units` units that each publish `unit_data`.
    pub fn add_remote(&self, app: &str, interface: &str, units: u32, unit_data: &[(&str, &str)]) {
        let units = units.to_string();
        let pairs: Vec<String> = unit_data.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args = vec![
            "add-remote",
            app,
            "--interface",
            interface,
            "--units",
            &units,
        ];
        for pair in &pairs {
            args.extend(["--unit-data", pair]);
        }
        self.ok(&args);
    }

    pub fn unit_address(&self, n: u32) -> String {
        format!("{}.{}", self.block, n + 1)
    }

    pub fn unit_url(&self, n: u32) -> String {
        format!("{}:8080", self.unit_address(n))
    }

    /// A unit's root directory (its machine).
    pub fn unit_root(&self, unit: &str) -> PathBuf {
        self.model_dir()
            .join("units")
            .join(unit.replace('/', "-"))
            .join("root")
    }

    pub fn status_json(&self) -> Value {
        let text = self.ok(&["status", "--format", "json"]);
        let start = text.find('{').expect("JSON in status output");
        serde_json::from_str(text[start..].trim()).expect("status is JSON")
    }

    pub fn workload_message(&self, status: &Value, unit: &str) -> String {
        let app = unit.split('/').next().unwrap();
        status["applications"][app]["units"][unit]["workload-status"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn workload_status(&self, status: &Value, unit: &str) -> String {
        let app = unit.split('/').next().unwrap();
        status["applications"][app]["units"][unit]["workload-status"]["current"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Destroy the model; no process of it and no listener may remain.
    pub fn destroy_and_check_nothing_left(&self, addrs: &[&str]) {
        self.ok(&["destroy"]);
        self.destroyed.set(true);
        for addr in addrs {
            assert!(get(addr).is_err(), "{addr} still answers after destroy");
        }
        let model = self.model_dir();
        let model = model.to_string_lossy();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            assert!(
                !cmdline.contains(model.as_ref()),
                "process {:?} of the model survived destroy: {cmdline}",
                entry.file_name()
            );
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if !self.destroyed.get() && self.model_dir().exists() {
            let _ = self.run(&["destroy"]);
        }
    }
}

/// GET / from `addr` (`host:port`): the body of a 200, else an error.
pub fn get(addr: &str) -> Result<String, String> {
    get_path(addr, "/")
}

pub fn get_path(addr: &str, path: &str) -> Result<String, String> {
    get_path_within(addr, path, Duration::from_secs(5))
}

/// GET `path` from `addr`, giving up after `timeout`: the body of a 200,
/// else an error.
pub fn get_path_within(addr: &str, path: &str, timeout: Duration) -> Result<String, String> {
    let answer =
        wsgi_app::workload::health::http_get(addr, path, timeout).map_err(|e| e.to_string())?;
    if answer.status == 200 {
        Ok(answer.body)
    } else {
        Err(format!(
            "HTTP {} {}: {}",
            answer.status, answer.reason, answer.body
        ))
    }
}
