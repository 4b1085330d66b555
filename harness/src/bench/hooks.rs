//! Benchmark 1: hook dispatch latency. A unit that already serves r1 gets
//! `update-status` and `config-changed` with nothing to do; we time the
//! whole charm process for each, and the same hooks in a minimal Python
//! charm on `ops` (StoredState, observes both events, sets ActiveStatus),
//! both answered by the same fake hook tools (see `tools`). Also: our peak
//! RSS, and how many hook-tool calls each makes per hook.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::json;

use super::env::BenchEnv;
use super::model::{CharmUnderTest, HookRun, SimModel, ToolSet};
use super::stats::Summary;
use super::tools::{FakeTools, Recorder};
use super::{BenchmarkResult, Row};

const PORT: u16 = 18501;
const HOOKS: [&str; 2] = ["update-status", "config-changed"];

/// The comparison charm: what `charmcraft init` would give, cut down to
/// the two events we time.
const OPS_CHARM_PY: &str = r#"#!/usr/bin/env python3
"""A minimal ops charm for the wsgi-app benchmarks."""
import ops


class Minimal(ops.CharmBase):
    _stored = ops.StoredState()

    def __init__(self, framework):
        super().__init__(framework)
        self._stored.set_default(hooks=0)
        framework.observe(self.on.update_status, self._on_update_status)
        framework.observe(self.on.config_changed, self._on_config_changed)

    def _on_update_status(self, event):
        self._stored.hooks += 1
        self.unit.status = ops.ActiveStatus("serving r1")

    def _on_config_changed(self, event):
        self._stored.hooks += 1
        port = self.config.get("listen_port")
        self.unit.status = ops.ActiveStatus(f"serving r1 on :{port}")


if __name__ == "__main__":
    ops.main(Minimal)
"#;

const OPS_METADATA: &str = "name: wsgi-app\nsummary: minimal ops charm (benchmark)\ndescription: minimal ops charm used to compare hook latency\n";

/// Lay out the ops charm: metadata.yaml, src/charm.py and a dispatch that
/// runs it with the venv's interpreter (charmcraft packs the venv instead;
/// the work done per hook is the same).
fn write_ops_charm(dir: &Path, venv: &Path) -> std::io::Result<()> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir.join("src"))?;
    fs::write(dir.join("metadata.yaml"), OPS_METADATA)?;
    fs::write(dir.join("src/charm.py"), OPS_CHARM_PY)?;
    let dispatch = format!(
        "#!/bin/sh\nJUJU_DISPATCH_PATH=\"${{JUJU_DISPATCH_PATH:-$0}}\" PYTHONPATH=src exec {} ./src/charm.py\n",
        venv.join("bin/python3").display()
    );
    fs::write(dir.join("dispatch"), dispatch)?;
    fs::set_permissions(dir.join("dispatch"), fs::Permissions::from_mode(0o755))
}

struct Series {
    ms: Vec<f64>,
    rss_kib: Vec<f64>,
    calls: Vec<BTreeMap<String, usize>>,
}

impl Series {
    fn new() -> Series {
        Series {
            ms: Vec::new(),
            rss_kib: Vec::new(),
            calls: Vec::new(),
        }
    }
    fn push(&mut self, run: HookRun) {
        self.ms.push(run.measured.ms());
        self.rss_kib.push(run.measured.max_rss_kib as f64);
        if let Some(calls) = run.tool_calls {
            self.calls.push(calls);
        }
    }
    /// Tool calls per hook: the most any run made, with its breakdown.
    fn calls_json(&self) -> serde_json::Value {
        let most = self
            .calls
            .iter()
            .max_by_key(|c| c.values().sum::<usize>())
            .cloned()
            .unwrap_or_default();
        let least = self
            .calls
            .iter()
            .map(|c| c.values().sum::<usize>())
            .min()
            .unwrap_or(0);
        json!({
            "max_per_hook": most.values().sum::<usize>(),
            "min_per_hook": least,
            "by_tool_in_busiest_run": most,
        })
    }
    fn max_calls_of(&self, tool: &str) -> usize {
        self.calls
            .iter()
            .map(|c| c.get(tool).copied().unwrap_or(0))
            .max()
            .unwrap_or(0)
    }
}

pub fn run(env: &BenchEnv) -> Result<BenchmarkResult, String> {
    let runs = if env.quick { 10 } else { 30 };
    let emulated_runs = if env.quick { 3 } else { 10 };
    let venv = env.python_venv()?;
    let work = env.dir.join("hooks");
    fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let ops_dir = work.join("ops-charm");
    write_ops_charm(&ops_dir, &venv).map_err(|e| format!("writing the ops charm: {e}"))?;

    let model = SimModel::deploy(
        env,
        "hooks",
        PORT,
        &[("build_label", "r1".into()), ("workers", "2".into())],
    )?;
    let charms = [
        ("wsgi-app", CharmUnderTest::Ours),
        ("ops", CharmUnderTest::Other(ops_dir.clone())),
    ];

    // Record what charm-sim answers for every call either charm makes
    // (twice: the first ops run also initialises its state).
    eprintln!("bench hooks: recording hook-tool answers");
    let recorder = Recorder::create(&work.join("recorder")).map_err(|e| e.to_string())?;
    for _ in 0..2 {
        for hook in HOOKS {
            for (_, charm) in &charms {
                model.run_hook(hook, charm, &ToolSet::Recording(&recorder))?;
            }
        }
    }
    let calls = recorder.successful_calls()?;
    let fake = FakeTools::create(&work.join("fake-tools"), &calls).map_err(|e| e.to_string())?;
    let fake_tools = ToolSet::Fake(&fake);

    // Warm-up (page cache, Python bytecode), not counted.
    for _ in 0..3 {
        for hook in HOOKS {
            for (_, charm) in &charms {
                model.run_hook(hook, charm, &fake_tools)?;
            }
        }
    }
    eprintln!("bench hooks: {runs} runs per hook and charm, fake tools");
    let mut fake_series: BTreeMap<(&str, &str), Series> = BTreeMap::new();
    for _ in 0..runs {
        for hook in HOOKS {
            for (name, charm) in &charms {
                let run = model.run_hook(hook, charm, &fake_tools)?;
                fake_series
                    .entry((name, hook))
                    .or_insert_with(Series::new)
                    .push(run);
            }
        }
    }
    eprintln!("bench hooks: {emulated_runs} runs per hook and charm, charm-sim's emulated tools");
    let mut emulated_series: BTreeMap<(&str, &str), Series> = BTreeMap::new();
    for _ in 0..emulated_runs {
        for hook in HOOKS {
            for (name, charm) in &charms {
                let run = model.run_hook(hook, charm, &ToolSet::Emulated)?;
                emulated_series
                    .entry((name, hook))
                    .or_insert_with(Series::new)
                    .push(run);
            }
        }
    }
    drop(model);

    let mut rows = Vec::new();
    let mut per_hook = serde_json::Map::new();
    for hook in HOOKS {
        let ours = &fake_series[&("wsgi-app", hook)];
        let ops = &fake_series[&("ops", hook)];
        let ours_ms = Summary::of(&ours.ms).expect("runs > 0");
        let ops_ms = Summary::of(&ops.ms).expect("runs > 0");
        let ours_rss = Summary::of(&ours.rss_kib).expect("runs > 0");
        let ops_rss = Summary::of(&ops.rss_kib).expect("runs > 0");
        let ratio = ops_ms.median / ours_ms.median;
        let emu_ours = Summary::of(&emulated_series[&("wsgi-app", hook)].ms).expect("runs > 0");
        let emu_ops = Summary::of(&emulated_series[&("ops", hook)].ms).expect("runs > 0");
        let emu_ratio = emu_ops.median / emu_ours.median;
        let config_gets = ours.max_calls_of("config-get");
        per_hook.insert(
            hook.to_string(),
            json!({
                "fake_tools": {
                    "wsgi_app_ms": ours_ms,
                    "ops_ms": ops_ms,
                    "ratio_ops_over_ours": ratio,
                    "wsgi_app_max_rss_kib": ours_rss,
                    "ops_max_rss_kib": ops_rss,
                    "wsgi_app_tool_calls": ours.calls_json(),
                    "ops_tool_calls": ops.calls_json(),
                },
                "charm_sim_tools": {
                    "wsgi_app_ms": emu_ours,
                    "ops_ms": emu_ops,
                    "ratio_ops_over_ours": emu_ratio,
                },
            }),
        );
        rows.push(Row::target(
            format!("{hook}: median, wsgi-app (fake tools; p10–p90)"),
            format!(
                "{:.2} ms ({:.2}–{:.2})",
                ours_ms.median, ours_ms.p10, ours_ms.p90
            ),
            "≤ 10 ms",
            ours_ms.median <= 10.0,
        ));
        rows.push(Row::info(
            format!("{hook}: median, ops (fake tools; p10–p90)"),
            format!(
                "{:.1} ms ({:.1}–{:.1})",
                ops_ms.median, ops_ms.p10, ops_ms.p90
            ),
        ));
        rows.push(Row::target(
            format!("{hook}: ops / wsgi-app (fake tools)"),
            format!("{ratio:.1}×"),
            "≥ 20×",
            ratio >= 20.0,
        ));
        rows.push(Row::info(
            format!("{hook}: with charm-sim's emulated tools, wsgi-app / ops"),
            format!(
                "{:.1} ms / {:.1} ms ({emu_ratio:.1}×)",
                emu_ours.median, emu_ops.median
            ),
        ));
        rows.push(Row::target(
            format!("{hook}: peak RSS, wsgi-app (max over runs)"),
            format!("{:.1} MiB", ours_rss.max / 1024.0),
            "≤ 15 MiB",
            ours_rss.max <= 15.0 * 1024.0,
        ));
        rows.push(Row::info(
            format!("{hook}: peak RSS, ops (max over runs)"),
            format!("{:.1} MiB", ops_rss.max / 1024.0),
        ));
        rows.push(Row::target(
            format!("{hook}: hook-tool calls, wsgi-app / ops"),
            format!(
                "{} / {} ({} config-get)",
                ours.calls_json()["max_per_hook"],
                ops.calls_json()["max_per_hook"],
                config_gets
            ),
            "≤ 1 config-get",
            config_gets <= 1,
        ));
    }
    let results = json!({
        "runs_per_hook_and_charm": runs,
        "emulated_tool_runs": emulated_runs,
        "setup": "charm-sim model, one unit serving r1 (2 workers) on port 18501; each hook is one dispatch process spawned directly with the hook environment charm-sim builds; fake tools replay answers recorded from that model",
        "hooks": per_hook,
        "recorded_calls": calls.len(),
        "ops_charm": ops_dir.display().to_string(),
    });
    Ok(BenchmarkResult {
        name: "hooks",
        title: "Hook dispatch latency (nothing to do)".into(),
        results,
        rows,
        notes: vec![
            "Each figure is the whole process: spawn, the charm, its hook-tool calls, exit. Both charms run as the same unit with the same fake tools (one /bin/sh script per tool replaying answers recorded from charm-sim's model), so the difference is the charms themselves.".into(),
            "charm-sim's emulated tools open the model's SQLite database on every call (≈10 ms each); the rows \"with charm-sim's emulated tools\" show what that adds.".into(),
            "With nothing to do, update-status makes two hook-tool calls: config-get and status-set. config-changed also reads the `rollout` peer relation (relation-list, relation-get of the leader's record and of this unit's report), asks is-leader and, as leader, sets the application status: what coordinating rollouts costs it. The framework remembers the relation ids and the opened ports between dispatches (Juju changes them only through hooks the unit sees: relation-created, -broken, its own open-port), so it needs no relation-ids per endpoint and no opened-ports; install, start, upgrade-charm and any failed dispatch make it read them from Juju again (ARCHITECTURE.md, Invariants).".into(),
        ],
    })
}
