//! `cargo xtask bench`: the performance suite. Benchmarks are not tests:
//! nothing here asserts on time. Each benchmark measures, compares with
//! its target, and reports whether it was met; the suite writes
//! `bench/results.json` (every sample) and `BENCHMARKS.md` (the table).
//!
//! ```text
//! cargo xtask bench                 # the whole suite (about 10 minutes on 2 cores)
//! cargo xtask bench --quick         # fewer samples, shorter loads
//! cargo xtask bench hooks scale     # only these benchmarks
//! ```
//!
//! Modules: [`hooks`], [`builds`], [`switch`], [`serving`],
//! [`serving_options`], [`scale`], [`rotation`] are the benchmarks; [`model`] runs charm-sim models and times single
//! hooks; [`tools`] records and replays hook-tool answers; [`http`] is the
//! loopback file server and load generator; [`env`] installs what the
//! suite needs; [`system`] describes the machine and measures processes;
//! [`stats`] summarises samples; [`report`] writes the two files.
//!
//! All load goes to loopback addresses, is bounded in count and time, and
//! every charm-sim model a benchmark deploys is destroyed when it ends,
//! also when it fails.

pub mod builds;
pub mod env;
pub mod hooks;
pub mod http;
pub mod model;
pub mod report;
pub mod rollout;
pub mod rotation;
pub mod scale;
pub mod serving;
pub mod serving_options;
pub mod stats;
pub mod switch;
pub mod system;
pub mod tools;

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use env::BenchEnv;

/// The benchmarks, in the order the suite runs them.
pub const BENCHMARKS: &[(&str, &str)] = &[
    ("hooks", "hook dispatch latency vs an ops charm"),
    ("builds", "a new build installed end to end vs venv+pip"),
    ("switch", "switching builds under load"),
    (
        "switch-systemd",
        "the same on a container unit booted with systemd",
    ),
    (
        "serving",
        "requests/s through the charm's gunicorn vs by hand",
    ),
    (
        "serving-options",
        "requests/s per worker class vs by hand; the metrics endpoint's cost",
    ),
    (
        "scale",
        "config-changed with 1/10/50 builds and 1/20 related units",
    ),
    (
        "rotation",
        "a database password rotation under load, real PostgreSQL",
    ),
    (
        "rollout",
        "whole-application rollouts of 2, 4 and 8 units behind a real haproxy",
    ),
];

/// What one benchmark found.
#[derive(Debug, Clone, Serialize)]
pub struct BenchmarkResult {
    pub name: &'static str,
    pub title: String,
    /// Every sample and derived figure, for results.json.
    pub results: serde_json::Value,
    /// The lines of the Markdown table.
    pub rows: Vec<Row>,
    /// How to read the figures (method, caveats).
    pub notes: Vec<String>,
}

/// One line of the report: a figure, and its target when it has one.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub metric: String,
    pub figure: String,
    pub target: Option<String>,
    pub met: Option<bool>,
}

impl Row {
    pub fn target(metric: String, figure: String, target: &str, met: bool) -> Row {
        Row {
            metric,
            figure,
            target: Some(target.to_string()),
            met: Some(met),
        }
    }
    pub fn info(metric: String, figure: String) -> Row {
        Row {
            metric,
            figure,
            target: None,
            met: None,
        }
    }
}

const USAGE: &str =
    "usage: cargo xtask bench [--quick] [hooks|builds|switch|switch-systemd|serving|serving-options|scale|rotation|rollout]...";

/// The `bench` subcommand: parse `args`, run, write the reports.
pub fn main(workspace: &Path, args: &[String]) -> Result<(), String> {
    let mut quick = false;
    let mut selected: Vec<&'static str> = Vec::new();
    for arg in args {
        match arg.as_str() {
            "--quick" => quick = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                for (name, what) in BENCHMARKS {
                    println!("  {name:14} {what}");
                }
                return Ok(());
            }
            name => match BENCHMARKS.iter().find(|(n, _)| *n == name) {
                Some((n, _)) if !selected.contains(n) => selected.push(n),
                Some(_) => {}
                None => return Err(format!("unknown benchmark {name:?}\n{USAGE}")),
            },
        }
    }
    if selected.is_empty() {
        selected = BENCHMARKS.iter().map(|(n, _)| *n).collect();
    }
    let env = BenchEnv::prepare(workspace, quick)?;
    let suite_start = Instant::now();
    let mut outcomes = Vec::new();
    let mut failures = Vec::new();
    for name in &selected {
        eprintln!("bench: === {name} ===");
        let started = Instant::now();
        let load_before = system::load_average();
        let result = match *name {
            "hooks" => hooks::run(&env),
            "builds" => builds::run(&env),
            "switch" => switch::run(&env),
            "switch-systemd" => switch::run_systemd(&env),
            "serving" => serving::run(&env),
            "serving-options" => serving_options::run(&env),
            "scale" => scale::run(&env),
            "rotation" => rotation::run(&env),
            "rollout" => rollout::run(&env),
            _ => unreachable!("names come from BENCHMARKS"),
        };
        let seconds = started.elapsed().as_secs_f64();
        match result {
            Ok(outcome) => {
                eprintln!("bench: {name} done in {seconds:.0} s");
                let timing = report::RunInfo {
                    seconds,
                    load_before,
                    load_after: system::load_average(),
                    quick,
                    measured_at: system::utc_timestamp(),
                };
                outcomes.push((outcome, timing));
            }
            Err(e) => {
                eprintln!("bench: {name} FAILED: {e}");
                failures.push(format!("{name}: {e}"));
            }
        }
    }
    let total = suite_start.elapsed().as_secs_f64();
    if !outcomes.is_empty() {
        report::write(&env, &outcomes, total)?;
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("benchmarks failed:\n{}", failures.join("\n")))
    }
}
