//! Benchmark 5: scale. How `config-changed` with nothing to do grows with
//! the number of installed builds (1, 10, 50) and of related units on
//! `website` (1, 5, 20). Builds are cheap to make: a loopback server
//! serves the charm's small r1 archive under every label, and uv installs
//! gunicorn from its warm cache. Remote load balancers `lb1`, `lb5` and
//! `lb20` are added once and related one at a time.
//!
//! Each point is timed like the hooks benchmark: answers recorded from the
//! model at that point, replayed by fast fake tools (so the figure is the
//! charm's own cost), plus a few runs with charm-sim's emulated tools.

use std::collections::BTreeMap;
use std::fs;

use serde_json::{json, Value};

use super::env::BenchEnv;
use super::http::FileServer;
use super::model::{CharmUnderTest, SimModel, ToolSet, APP};
use super::stats::Summary;
use super::tools::{failed_calls, FakeTools, Recorder};
use super::{Outcome, Row};

const PORT: u16 = 18505;
const ARCHIVE: &str = "example-wsgi-app.tar.bzip2";
const UNIT_COUNTS: [usize; 3] = [1, 5, 20];

struct Point {
    builds: usize,
    units: usize,
    fake_ms: Summary,
    emulated_ms: Summary,
    tool_calls: usize,
}

/// Time a nothing-to-do config-changed at the model's current state.
fn measure(
    env: &BenchEnv,
    model: &SimModel,
    builds: usize,
    units: usize,
    samples: usize,
) -> Result<Point, String> {
    let work = env.dir.join("scale");
    let recorder = Recorder::create(&work.join("recorder")).map_err(|e| e.to_string())?;
    for _ in 0..2 {
        model.run_hook(
            "config-changed",
            &CharmUnderTest::Ours,
            &ToolSet::Recording(&recorder),
        )?;
    }
    let calls = recorder.calls().map_err(|e| e.to_string())?;
    let failed = failed_calls(&calls);
    if !failed.is_empty() {
        return Err(format!(
            "hook-tool calls failed while recording:\n{}",
            failed.join("\n")
        ));
    }
    let fake = FakeTools::create(&work.join("fake-tools"), &calls).map_err(|e| e.to_string())?;
    let mut fake_ms = Vec::new();
    let mut tool_calls = 0;
    for i in 0..samples + 2 {
        let run = model.run_hook(
            "config-changed",
            &CharmUnderTest::Ours,
            &ToolSet::Fake(&fake),
        )?;
        // The first two warm the page cache.
        if i >= 2 {
            fake_ms.push(run.measured.ms());
            tool_calls = tool_calls.max(run.total_calls().unwrap_or(0));
        }
    }
    let mut emulated_ms = Vec::new();
    for _ in 0..3 {
        let run = model.run_hook("config-changed", &CharmUnderTest::Ours, &ToolSet::Emulated)?;
        emulated_ms.push(run.measured.ms());
    }
    let point = Point {
        builds,
        units,
        fake_ms: Summary::of(&fake_ms).expect("samples > 0"),
        emulated_ms: Summary::of(&emulated_ms).expect("3 runs"),
        tool_calls,
    };
    eprintln!(
        "bench scale: {builds} builds, {units} units: {:.2} ms (fake tools), {:.1} ms (charm-sim tools), {tool_calls} calls",
        point.fake_ms.median, point.emulated_ms.median
    );
    Ok(point)
}

/// Per-item cost between two sizes, from medians.
fn slope(a: &Point, b: &Point, by_builds: bool) -> f64 {
    let (x0, x1) = if by_builds {
        (a.builds, b.builds)
    } else {
        (a.units, b.units)
    };
    (b.fake_ms.median - a.fake_ms.median) / (x1 as f64 - x0 as f64)
}

/// Growth is at most linear when the per-item cost at the large end is no
/// more than 1.5 times that at the small end (plus 0.05 ms of noise).
fn at_most_linear(small: f64, large: f64) -> bool {
    large <= 1.5 * small.max(0.0) + 0.05
}

pub fn run(env: &BenchEnv) -> Result<Outcome, String> {
    let build_counts: Vec<usize> = if env.quick {
        vec![1, 10]
    } else {
        vec![1, 10, 50]
    };
    let samples = if env.quick { 5 } else { 15 };
    let largest = *build_counts.last().expect("non-empty");
    let archive = fs::read(env.workspace.join("files/r1").join(ARCHIVE))
        .map_err(|e| format!("files/r1/{ARCHIVE}: {e}"))?;
    let server = FileServer::start(move |path| {
        path.ends_with(&format!("/{ARCHIVE}"))
            .then(|| archive.clone())
    })
    .map_err(|e| format!("archive server: {e}"))?;
    let model = SimModel::deploy(
        env,
        "scale",
        PORT,
        &[
            ("code_assets_uri", server.url()),
            ("build_label", "s01".into()),
            ("current_symlink", "s01".into()),
            ("keep_builds", (largest + 10).to_string()),
            ("workers", "1".into()),
        ],
    )?;
    for n in UNIT_COUNTS {
        model.cli(&[
            "add-remote",
            &format!("lb{n}"),
            "--interface",
            "http",
            "--units",
            &n.to_string(),
        ])?;
    }
    let mut installed = 1;
    let mut install_ms = Vec::new();
    let mut related: Option<usize> = None;
    let mut points = Vec::new();
    for (i, &builds) in build_counts.iter().enumerate() {
        if builds > installed {
            eprintln!("bench scale: installing builds up to {builds}");
        }
        while installed < builds {
            installed += 1;
            let started = std::time::Instant::now();
            model.cli(&["config", APP, &format!("build_label=s{installed:02}")])?;
            install_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        // Alternate the order so each size change needs one relate only.
        let mut order = UNIT_COUNTS.to_vec();
        if i % 2 == 1 {
            order.reverse();
        }
        for units in order {
            if related != Some(units) {
                if let Some(old) = related.take() {
                    model.cli(&["unrelate", "wsgi-app:website", &format!("lb{old}")])?;
                }
                model.cli(&["relate", "wsgi-app:website", &format!("lb{units}")])?;
                related = Some(units);
            }
            points.push(measure(env, &model, builds, units, samples)?);
        }
    }
    let on_disk = fs::read_dir(model.unit_paths()?.root.join("srv/wsgi-app/builds"))
        .map(|d| d.count())
        .unwrap_or(0);
    drop(model);
    drop(server);
    if on_disk < largest {
        return Err(format!(
            "expected {largest} builds on the unit, found {on_disk}"
        ));
    }

    let at = |b: usize, u: usize| {
        points
            .iter()
            .find(|p| p.builds == b && p.units == u)
            .expect("every point measured")
    };
    let mut rows = Vec::new();
    let mut slopes = serde_json::Map::new();
    for &u in &UNIT_COUNTS {
        let small = slope(at(1, u), at(10, u), true);
        let mut entry = json!({ "ms_per_build_1_to_10": small });
        if largest == 50 {
            let large = slope(at(10, u), at(50, u), true);
            let overall = slope(at(1, u), at(50, u), true);
            entry["ms_per_build_10_to_50"] = json!(large);
            entry["ms_per_build_1_to_50"] = json!(overall);
            entry["at_most_linear"] = json!(at_most_linear(small, large));
            if u == 1 || u == 20 {
                rows.push(Row::target(
                    format!("ms per installed build with {u} related unit(s): 1→10 vs 10→50"),
                    format!("{small:.3} vs {large:.3} (overall {overall:.3})"),
                    "at most linear",
                    at_most_linear(small, large),
                ));
            }
        }
        slopes.insert(format!("{u}_units"), entry);
    }
    for &b in &build_counts {
        let small = slope(at(b, 1), at(b, 5), false);
        let large = slope(at(b, 5), at(b, 20), false);
        let overall = slope(at(b, 1), at(b, 20), false);
        slopes.insert(
            format!("{b}_builds"),
            json!({
                "ms_per_unit_1_to_5": small,
                "ms_per_unit_5_to_20": large,
                "ms_per_unit_1_to_20": overall,
                "at_most_linear": at_most_linear(small, large),
            }),
        );
        if b == 1 || b == largest {
            rows.push(Row::target(
                format!("ms per related unit with {b} build(s): 1→5 vs 5→20"),
                format!("{small:.3} vs {large:.3} (overall {overall:.3})"),
                "at most linear",
                at_most_linear(small, large),
            ));
        }
    }
    for p in &points {
        if (p.builds == 1 || p.builds == largest) && (p.units == 1 || p.units == 20) {
            rows.push(Row::info(
                format!(
                    "config-changed, {} build(s), {} unit(s): fake tools / charm-sim tools, calls",
                    p.builds, p.units
                ),
                format!(
                    "{:.2} ms / {:.1} ms, {} calls",
                    p.fake_ms.median, p.emulated_ms.median, p.tool_calls
                ),
            ));
        }
    }
    let install = Summary::of(&install_ms);
    if let Some(s) = &install {
        rows.push(Row::info(
            "installing one small build (charm-sim config, whole command; median)".into(),
            format!("{:.0} ms", s.median),
        ));
    }
    let table: Vec<Value> = points
        .iter()
        .map(|p| {
            json!({
                "builds": p.builds,
                "related_units": p.units,
                "fake_tools_ms": p.fake_ms,
                "charm_sim_tools_ms": p.emulated_ms,
                "tool_calls": p.tool_calls,
            })
        })
        .collect();
    let calls_by_units: BTreeMap<String, usize> = points
        .iter()
        .filter(|p| p.builds == 1)
        .map(|p| (format!("{}_units", p.units), p.tool_calls))
        .collect();
    Ok(Outcome {
        name: "scale",
        title: "Scale: config-changed with many builds and related units".into(),
        results: json!({
            "samples_per_point": samples,
            "points": table,
            "slopes": slopes,
            "tool_calls_with_1_build": calls_by_units,
            "small_build_install_ms": install,
        }),
        rows,
        notes: vec![
            "Slopes are differences of medians (fake tools) divided by the difference in size; \"at most linear\" means the per-item cost at the large end is at most 1.5× that at the small end, plus 0.05 ms for noise.".into(),
            "With charm-sim's emulated tools every hook-tool call costs about 10 ms, so there the figures follow the number of calls.".into(),
        ],
    })
}
