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
use super::tools::{FakeTools, Recorder};
use super::{BenchmarkResult, Row};

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
    let calls = recorder.successful_calls()?;
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

/// Whether time grows at most linearly over three sizes `a < b < c`, and
/// the per-item costs it is judged on: (small end a→b, large end b→c).
///
/// Growth is at most linear when the per-item cost at the large end is no
/// more than 1.5 times that at the small end. On a busy machine the
/// medians wander by more than a build or a unit costs, so the noise (half
/// the widest p10–p90 spread of the three points) is allowed for: a total
/// change within it is "flat", and the large-end cost may exceed 1.5× the
/// small-end cost by the two slopes' uncertainties (the noise divided by
/// each interval's length).
fn growth(a: &Point, b: &Point, c: &Point, by_builds: bool) -> Growth {
    let noise = [a, b, c]
        .iter()
        .map(|p| p.fake_ms.p90 - p.fake_ms.p10)
        .fold(0.0, f64::max)
        / 2.0;
    let small = slope(a, b, by_builds);
    let large = slope(b, c, by_builds);
    let overall = slope(a, c, by_builds);
    let span = |p: &Point| if by_builds { p.builds } else { p.units } as f64;
    let flat = (c.fake_ms.median - a.fake_ms.median).abs() <= noise;
    // Each slope is uncertain by the noise over its own interval.
    let uncertainty = noise / (span(c) - span(b)) + noise / (span(b) - span(a));
    let linear = large <= 1.5 * small.max(0.0) + uncertainty;
    Growth {
        small,
        large,
        overall,
        noise,
        flat,
        at_most_linear: flat || linear,
    }
}

struct Growth {
    small: f64,
    large: f64,
    overall: f64,
    noise: f64,
    flat: bool,
    at_most_linear: bool,
}

impl Growth {
    fn json(&self, small_key: &str, large_key: &str, overall_key: &str) -> Value {
        json!({
            small_key: self.small,
            large_key: self.large,
            overall_key: self.overall,
            "noise_ms": self.noise,
            "flat_within_noise": self.flat,
            "at_most_linear": self.at_most_linear,
        })
    }

    fn figure(&self) -> String {
        format!(
            "{:.3} vs {:.3} ms (overall {:.3}; noise ±{:.1} ms{})",
            self.small,
            self.large,
            self.overall,
            self.noise,
            if self.flat { ", flat within it" } else { "" }
        )
    }
}

pub fn run(env: &BenchEnv) -> Result<BenchmarkResult, String> {
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
    if largest == 50 {
        for &u in &UNIT_COUNTS {
            let g = growth(at(1, u), at(10, u), at(50, u), true);
            slopes.insert(
                format!("{u}_units"),
                g.json(
                    "ms_per_build_1_to_10",
                    "ms_per_build_10_to_50",
                    "ms_per_build_1_to_50",
                ),
            );
            if u == 1 || u == 20 {
                rows.push(Row::target(
                    format!("ms per installed build with {u} related unit(s): 1→10 vs 10→50"),
                    g.figure(),
                    "at most linear",
                    g.at_most_linear,
                ));
            }
        }
    } else {
        for &u in &UNIT_COUNTS {
            slopes.insert(
                format!("{u}_units"),
                json!({ "ms_per_build_1_to_10": slope(at(1, u), at(10, u), true) }),
            );
        }
    }
    for &b in &build_counts {
        let g = growth(at(b, 1), at(b, 5), at(b, 20), false);
        slopes.insert(
            format!("{b}_builds"),
            g.json(
                "ms_per_unit_1_to_5",
                "ms_per_unit_5_to_20",
                "ms_per_unit_1_to_20",
            ),
        );
        if b == 1 || b == largest {
            rows.push(Row::target(
                format!("ms per related unit with {b} build(s): 1→5 vs 5→20"),
                g.figure(),
                "at most linear",
                g.at_most_linear,
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
    Ok(BenchmarkResult {
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
            "Slopes are differences of medians (fake tools) divided by the difference in size. \"At most linear\": the per-item cost at the large end is at most 1.5× that at the small end, allowing for each slope's uncertainty (noise = half the widest p10–p90 spread of the three points, divided by the interval's length); a total change within the noise is reported as flat.".into(),
            "With charm-sim's emulated tools every hook-tool call costs about 10 ms, so there the figures follow the number of calls.".into(),
        ],
    })
}
