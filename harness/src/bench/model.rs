//! A charm-sim model for one benchmark, and running one hook on its unit
//! while measuring the charm's process.
//!
//! [`SimModel`] drives the `charm-sim` binary for setup (deploy, config,
//! relate, actions) and destroys the model when dropped, also when a
//! benchmark fails halfway, so no gunicorn outlives the run. Each
//! benchmark deploys its own model on its own `listen_port` (185xx), so
//! it never collides with other users of charm-sim's 127.0.1.N addresses.
//!
//! [`SimModel::run_hook`] opens a hook context through the charm-sim
//! library (the environment Juju would build), then spawns the charm's
//! `dispatch` itself: the timed span is exactly one charm process, from
//! spawn to exit, without charm-sim's own bookkeeping or polling.

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::env::BenchEnv;
use super::system::{run_checked, run_measured, Measured};
use super::tools::{FakeTools, Recorder};
use harness::sim::context::{self, ContextInfo, UnitPaths};
use harness::sim::store::Model;

/// The charm-sim application and unit the benchmarks deploy.
pub const APP: &str = "wsgi-app";
pub const UNIT: &str = "wsgi-app/0";

/// Which charm runs for a hook.
#[derive(Debug, Clone)]
pub enum CharmUnderTest {
    /// wsgi-app, from the unit's own charm directory.
    Ours,
    /// Another charm directory (the Python ops charm), run as the same unit.
    Other(PathBuf),
}

/// Which hook tools the charm finds first on its PATH.
pub enum ToolSet<'a> {
    /// charm-sim's emulated tools, against the model.
    Emulated,
    /// charm-sim's tools behind a recorder.
    Recording(&'a Recorder),
    /// Replayed answers (fast, counted).
    Fake(&'a FakeTools),
}

/// One measured hook run.
#[derive(Debug, Clone)]
pub struct HookRun {
    pub measured: Measured,
    /// Calls per tool name, when the tools count them (fake tools only).
    pub tool_calls: Option<BTreeMap<String, usize>>,
}

impl HookRun {
    pub fn total_calls(&self) -> Option<usize> {
        self.tool_calls.as_ref().map(|c| c.values().sum())
    }
}

/// The charm from this tree laid out in `target/bench/<name>`, with
/// `files` of tests/fixtures/wsgi/`fixture` as build `label`'s
/// `app.tar.gz` in its `files/`, where the charm looks for a build before
/// downloading one.
pub fn charm_with_fixture(
    env: &BenchEnv,
    name: &str,
    fixture: &str,
    label: &str,
    files: &[&str],
) -> Result<PathBuf, String> {
    let charm = env.dir.join(name);
    let _ = fs::remove_dir_all(&charm);
    harness::sim::charm::lay_out_charm(
        &env.workspace,
        &env.workspace.join("target/release/wsgi-app"),
        &charm,
    )
    .map_err(|e| format!("laying out the charm: {e}"))?;
    let to = charm.join("files").join(label);
    fs::create_dir_all(&to).map_err(|e| e.to_string())?;
    let status = Command::new("tar")
        .arg("-C")
        .arg(env.workspace.join("tests/fixtures/wsgi").join(fixture))
        .arg("-czf")
        .arg(to.join("app.tar.gz"))
        .args(files)
        .status()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    if !status.success() {
        return Err(format!("tar failed ({status})"));
    }
    Ok(charm)
}

pub struct SimModel {
    pub dir: PathBuf,
    charm_sim: PathBuf,
    pub port: u16,
    /// charm-sim's `--address-block`; `None` is its default, 127.0.1.
    address_block: Option<&'static str>,
}

impl SimModel {
    /// Deploy one unit of wsgi-app from this source tree in
    /// `target/bench/models/<name>`, serving on `port`, with `config` on top.
    pub fn deploy(
        env: &BenchEnv,
        name: &str,
        port: u16,
        config: &[(&str, String)],
    ) -> Result<SimModel, String> {
        Self::deploy_on(env, name, port, None, config, "directory")
    }

    /// [`SimModel::deploy`] of the charm directory `charm` when given (else
    /// this source tree), on `machines` (`charm-sim deploy --machines`:
    /// `directory` or `container`).
    pub fn deploy_on(
        env: &BenchEnv,
        name: &str,
        port: u16,
        charm: Option<&Path>,
        config: &[(&str, String)],
        machines: &str,
    ) -> Result<SimModel, String> {
        Self::deploy_units(env, name, port, 1, charm, config, machines)
    }

    /// [`SimModel::deploy_on`] with `units` units.
    pub fn deploy_units(
        env: &BenchEnv,
        name: &str,
        port: u16,
        units: u32,
        charm: Option<&Path>,
        config: &[(&str, String)],
        machines: &str,
    ) -> Result<SimModel, String> {
        let model = SimModel::new(env, name, port, None);
        model.create(units, charm, config, machines)
    }

    /// One directory unit of the charm directory `charm`, its addresses in
    /// `block` (`127.0.N`): a benchmark whose unit listens on fixed ports
    /// (the metrics endpoint's) keeps clear of other models that way.
    pub fn deploy_in_block(
        env: &BenchEnv,
        name: &str,
        port: u16,
        block: &'static str,
        charm: &Path,
        config: &[(&str, String)],
    ) -> Result<SimModel, String> {
        SimModel::new(env, name, port, Some(block)).create(1, Some(charm), config, "directory")
    }

    fn new(env: &BenchEnv, name: &str, port: u16, address_block: Option<&'static str>) -> Self {
        SimModel {
            dir: env.dir.join("models").join(name),
            charm_sim: env.charm_sim.clone(),
            port,
            address_block,
        }
    }

    /// `charm-sim deploy`, afresh: a model a killed run left is destroyed first.
    fn create(
        self,
        units: u32,
        charm: Option<&Path>,
        config: &[(&str, String)],
        machines: &str,
    ) -> Result<SimModel, String> {
        if self.dir.exists() {
            // A run that was killed left it: end its processes first.
            let _ = self.cli(&["destroy"]);
            let _ = fs::remove_dir_all(&self.dir);
        }
        let mut args: Vec<String> = vec!["deploy".into()];
        args.extend(charm.map(|c| c.display().to_string()));
        args.extend([
            "--units".into(),
            units.to_string(),
            "--machines".into(),
            machines.into(),
        ]);
        let port_setting = ("listen_port", self.port.to_string());
        for (key, value) in std::iter::once(&port_setting).chain(config) {
            args.push("--config".into());
            args.push(format!("{key}={value}"));
        }
        eprintln!(
            "bench: deploying {} (port {})",
            self.dir.display(),
            self.port
        );
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        self.cli(&argv)?;
        Ok(self)
    }

    /// Run `charm-sim --model DIR --quiet ARGS...`; its stdout, or its
    /// error output as the error.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        let mut command = Command::new(&self.charm_sim);
        command.arg("--model").arg(&self.dir).arg("--quiet");
        if let Some(block) = self.address_block {
            command.args(["--address-block", block]);
        }
        run_checked(command.args(args))
    }

    fn open(&self) -> Result<Model, String> {
        Model::open(&self.dir).map_err(|e| e.to_string())
    }

    pub fn unit_paths(&self) -> Result<UnitPaths, String> {
        let model = self.open()?;
        let unit = model.require_unit(UNIT).map_err(|e| e.to_string())?;
        Ok(UnitPaths::new(model.dir(), &unit))
    }

    /// Where the unit's gunicorn listens.
    pub fn unit_addr(&self) -> Result<SocketAddr, String> {
        let model = self.open()?;
        let unit = model.require_unit(UNIT).map_err(|e| e.to_string())?;
        format!("{}:{}", unit.address, self.port)
            .parse()
            .map_err(|e| format!("unit address {}: {e}", unit.address))
    }

    /// Change config in the model without running a hook (the next
    /// measured `config-changed` sees it, as after `juju config`).
    pub fn set_config(&self, settings: &[(&str, Value)]) -> Result<(), String> {
        let model = self.open()?;
        for (key, value) in settings {
            model
                .set_config(APP, key, Some(value))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Run hook `hook` on the unit with `charm` and `tools`, timing the
    /// charm's process. A hook that fails is an error (with its stderr).
    pub fn run_hook(
        &self,
        hook: &str,
        charm: &CharmUnderTest,
        tools: &ToolSet,
    ) -> Result<HookRun, String> {
        let model = self.open()?;
        let unit = model.require_unit(UNIT).map_err(|e| e.to_string())?;
        let paths = UnitPaths::new(model.dir(), &unit);
        let info = ContextInfo {
            hook_name: hook.to_string(),
            dispatch_path: Some(format!("hooks/{hook}")),
            ..ContextInfo::default()
        };
        let open = context::begin(&model, &unit, &info).map_err(|e| e.to_string())?;
        let charm_dir = match charm {
            CharmUnderTest::Ours => paths.charm.clone(),
            CharmUnderTest::Other(dir) => dir.clone(),
        };
        let counter = paths.dir.join("bench-tool-calls");
        let mut env: Vec<(String, String)> = open.env.clone();
        let set = |env: &mut Vec<(String, String)>, key: &str, value: String| {
            env.retain(|(k, _)| k != key);
            env.push((key.to_string(), value));
        };
        set(&mut env, "CHARM_DIR", charm_dir.display().to_string());
        set(&mut env, "JUJU_CHARM_DIR", charm_dir.display().to_string());
        let unit_path = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        match tools {
            ToolSet::Emulated => {}
            ToolSet::Recording(recorder) => {
                set(
                    &mut env,
                    "PATH",
                    format!("{}:{unit_path}", recorder.bin_dir.display()),
                );
                set(
                    &mut env,
                    "BENCH_RECORD_DIR",
                    recorder.calls_dir.display().to_string(),
                );
                set(
                    &mut env,
                    "BENCH_REAL_TOOLS",
                    paths.tools.display().to_string(),
                );
            }
            ToolSet::Fake(fake) => {
                // Only the fake tools, then the system: a call that slipped
                // past them must not reach charm-sim's real ones.
                set(
                    &mut env,
                    "PATH",
                    format!(
                        "{}:{}",
                        fake.bin_dir.display(),
                        super::env::UNIT_SYSTEM_PATH
                    ),
                );
                fs::write(&counter, b"").map_err(|e| e.to_string())?;
                set(&mut env, "BENCH_TOOL_CALLS", counter.display().to_string());
            }
        }
        let out_path = paths.dir.join("bench-hook.out");
        let err_path = paths.dir.join("bench-hook.err");
        let file = |p: &Path| fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()));
        let mut cmd = Command::new(charm_dir.join("dispatch"));
        cmd.current_dir(&charm_dir)
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(file(&out_path)?)
            .stderr(file(&err_path)?);
        let measured = run_measured(&mut cmd).map_err(|e| format!("cannot run {hook}: {e}"))?;
        context::finish(&model, &open, measured.code).map_err(|e| e.to_string())?;
        if measured.code != Some(0) {
            let stderr = fs::read_to_string(&err_path).unwrap_or_default();
            let tail: Vec<&str> = stderr.lines().rev().take(10).collect();
            return Err(format!(
                "{hook} ({charm:?}) exited {:?}:\n{}",
                measured.code,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        let tool_calls = match tools {
            ToolSet::Fake(_) => {
                let mut counts = BTreeMap::new();
                for line in fs::read_to_string(&counter).unwrap_or_default().lines() {
                    *counts.entry(line.to_string()).or_insert(0) += 1;
                }
                Some(counts)
            }
            _ => None,
        };
        Ok(HookRun {
            measured,
            tool_calls,
        })
    }
}

impl Drop for SimModel {
    fn drop(&mut self) {
        if let Err(e) = self.cli(&["destroy"]) {
            eprintln!(
                "bench: could not destroy the model in {}: {e}",
                self.dir.display()
            );
        }
    }
}
