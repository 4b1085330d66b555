//! Writing the suite's two outputs: `bench/results.json` (every sample,
//! the machine, tool versions) and `BENCHMARKS.md` (the latest figures as
//! a table, the machine they came from, how to reproduce them).
//!
//! Running a subset (`cargo xtask bench hooks`) replaces only those
//! benchmarks' entries; entries measured earlier on the same machine stay,
//! each with its own date. Entries from another machine are dropped, so
//! the page never mixes machines.

use std::fmt::Write as _;
use std::fs;

use serde::Serialize;
use serde_json::{json, Value};

use super::env::BenchEnv;
use super::system::{utc_timestamp, MachineInfo};
use super::{BenchmarkResult, BENCHMARKS};

/// How one benchmark's run went, apart from its figures.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub seconds: f64,
    pub load_before: f64,
    pub load_after: f64,
    pub quick: bool,
    pub measured_at: String,
}

pub fn write(
    env: &BenchEnv,
    outcomes: &[(BenchmarkResult, RunInfo)],
    total: f64,
) -> Result<(), String> {
    let machine = MachineInfo::detect();
    let json_path = env.workspace.join("bench/results.json");
    let previous: Value = fs::read_to_string(&json_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let same_machine = previous.get("machine") == Some(&json!(machine));
    let mut benchmarks = match previous.get("benchmarks") {
        Some(Value::Object(map)) if same_machine => map.clone(),
        _ => serde_json::Map::new(),
    };
    for (outcome, run) in outcomes {
        benchmarks.insert(
            outcome.name.to_string(),
            json!({
                "title": outcome.title,
                "measured_at": run.measured_at,
                "seconds": run.seconds,
                "quick": run.quick,
                "load_average_before": run.load_before,
                "load_average_after": run.load_after,
                "rows": outcome.rows,
                "notes": outcome.notes,
                "results": outcome.results,
            }),
        );
    }
    let document = json!({
        "generated_at": utc_timestamp(),
        "machine": machine,
        "tools": env.tool_versions(),
        "last_run": {
            "benchmarks": outcomes.iter().map(|(o, _)| o.name).collect::<Vec<_>>(),
            "seconds": total,
            "quick": env.quick,
        },
        "benchmarks": benchmarks,
    });
    fs::create_dir_all(env.workspace.join("bench")).map_err(|e| e.to_string())?;
    let text = serde_json::to_string_pretty(&document).expect("JSON values serialise");
    fs::write(&json_path, text + "\n").map_err(|e| format!("{}: {e}", json_path.display()))?;
    let md_path = env.workspace.join("BENCHMARKS.md");
    fs::write(&md_path, markdown(&document)).map_err(|e| format!("{}: {e}", md_path.display()))?;
    eprintln!(
        "bench: wrote {} and {}",
        json_path.display(),
        md_path.display()
    );
    Ok(())
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn met_cell(row: &Value) -> &'static str {
    match row["met"].as_bool() {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "",
    }
}

/// Render the page from results.json's document.
pub fn markdown(doc: &Value) -> String {
    let mut md = String::new();
    let m = &doc["machine"];
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Figures from `cargo xtask bench`, last written {}. Every sample is in \
         [bench/results.json](bench/results.json). Benchmarks are not tests: a missed \
         target is reported here, it fails nothing.\n",
        doc["generated_at"].as_str().unwrap_or("?")
    );
    let _ = writeln!(md, "## Machine\n");
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(md, "| CPU | {} |", m["cpu_model"].as_str().unwrap_or("?"));
    let _ = writeln!(md, "| cores | {} |", m["cores"]);
    let _ = writeln!(
        md,
        "| memory | {:.1} GiB |",
        m["memory_mib"].as_f64().unwrap_or(0.0) / 1024.0
    );
    let _ = writeln!(md, "| kernel | {} |", m["kernel"].as_str().unwrap_or("?"));
    let _ = writeln!(md, "| OS | {} |", m["os"].as_str().unwrap_or("?"));
    if let Some(tools) = doc["tools"].as_object() {
        for (name, version) in tools {
            let _ = writeln!(md, "| {name} | {} |", cell(version.as_str().unwrap_or("?")));
        }
    }
    let _ = writeln!(md);

    let benchmarks = doc["benchmarks"].as_object().cloned().unwrap_or_default();
    let ordered: Vec<(&str, &Value)> = BENCHMARKS
        .iter()
        .filter_map(|(name, _)| benchmarks.get(*name).map(|b| (*name, b)))
        .collect();

    let _ = writeln!(md, "## Targets\n");
    let _ = writeln!(
        md,
        "| benchmark | metric | figure | target | |\n|---|---|---|---|---|"
    );
    for (name, bench) in &ordered {
        for row in bench["rows"].as_array().into_iter().flatten() {
            if row["target"].is_string() {
                let _ = writeln!(
                    md,
                    "| {name} | {} | {} | {} | {} |",
                    cell(row["metric"].as_str().unwrap_or("")),
                    cell(row["figure"].as_str().unwrap_or("")),
                    cell(row["target"].as_str().unwrap_or("")),
                    met_cell(row)
                );
            }
        }
    }
    let _ = writeln!(md);

    for (name, bench) in &ordered {
        let _ = writeln!(
            md,
            "## {} (`{name}`)\n",
            bench["title"].as_str().unwrap_or(name)
        );
        let _ = writeln!(
            md,
            "Measured {}{}, in {:.0} s; load average {:.2} before, {:.2} after.\n",
            bench["measured_at"].as_str().unwrap_or("?"),
            if bench["quick"].as_bool() == Some(true) {
                " with `--quick`"
            } else {
                ""
            },
            bench["seconds"].as_f64().unwrap_or(0.0),
            bench["load_average_before"].as_f64().unwrap_or(f64::NAN),
            bench["load_average_after"].as_f64().unwrap_or(f64::NAN),
        );
        let _ = writeln!(md, "| metric | figure | target | |\n|---|---|---|---|");
        for row in bench["rows"].as_array().into_iter().flatten() {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                cell(row["metric"].as_str().unwrap_or("")),
                cell(row["figure"].as_str().unwrap_or("")),
                cell(row["target"].as_str().unwrap_or("")),
                met_cell(row)
            );
        }
        let _ = writeln!(md);
        for note in bench["notes"].as_array().into_iter().flatten() {
            let _ = writeln!(md, "- {}", note.as_str().unwrap_or(""));
        }
        let _ = writeln!(md);
    }

    let _ = writeln!(md, "## Reproducing\n");
    let _ = writeln!(
        md,
        "On a Debian or Ubuntu machine with Rust and Python 3, as root (it installs curl and \
         python3-venv with apt-get when missing, a venv with `ops` and a wheel directory \
         under `target/bench/`, and builds the release binaries first):\n"
    );
    let _ = writeln!(md, "```sh");
    let _ = writeln!(md, "cargo xtask bench                # the whole suite");
    let _ = writeln!(
        md,
        "cargo xtask bench --quick        # fewer samples, shorter loads"
    );
    let _ = writeln!(
        md,
        "cargo xtask bench hooks switch   # some benchmarks only"
    );
    let _ = writeln!(md, "```\n");
    let _ = writeln!(
        md,
        "Each benchmark deploys its own charm-sim model under `target/bench/models/` on its own \
         port (18501–18514) and destroys it at the end. All load is loopback-only and bounded. \
         Timings on a shared machine move with its load: the load average before and after \
         each benchmark is recorded beside its figures."
    );
    md
}
