//! Benchmark 2: a new build installed end to end. A loopback HTTP server
//! plays `code_assets_uri` and serves an archive holding a tiny WSGI app,
//! a requirements.txt (flask, psycopg[binary], pymongo) and the wheels
//! for them (downloaded once into target/bench/wheels). Ours: set a new
//! `build_label` and time the charm's `config-changed`, which fetches,
//! checks the sha256, extracts, makes a venv and installs the requirements
//! offline with uv, and swaps the `latest` symlink. The comparison: the
//! same steps in a shell script with `python3 -m venv` and
//! `pip install --no-index --find-links`. Runs alternate between the two.
//!
//! The served build stays pinned (`current_symlink=b00`) so the hook
//! installs without also switching gunicorn: the baseline has no
//! service to switch either.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use super::env::{BenchEnv, BUILD_REQUIREMENTS, UNIT_SYSTEM_PATH};
use super::http::FileServer;
use super::model::{CharmUnderTest, SimModel, ToolSet};
use super::stats::Summary;
use super::system::{run_checked, run_measured};
use super::{BenchmarkResult, Row};

const PORT: u16 = 18502;
const ARCHIVE: &str = "app.tar.gz";

/// The baseline: what a charm without uv does, step for step.
const VENV_PIP_SCRIPT: &str = r#"#!/bin/sh
# Install a build the venv+pip way: fetch, verify, extract, venv, pip, symlink.
set -e
url=$1 sha=$2 dir=$3 python=$4
mkdir -p "$dir/build"
curl -fsS -o "$dir/build/archive" "$url"
echo "$sha  $dir/build/archive" | sha256sum -c --quiet -
mkdir "$dir/build/code"
tar -xzf "$dir/build/archive" -C "$dir/build/code"
rm "$dir/build/archive"
"$python" -m venv "$dir/build/venv"
"$dir/build/venv/bin/pip" install --quiet --disable-pip-version-check \
    --no-index --find-links "$dir/build/code/wheels" \
    gunicorn -r "$dir/build/code/requirements.txt"
ln -s build "$dir/current.new"
mv -T "$dir/current.new" "$dir/current"
"#;

const APP_PY: &str = "def application(environ, start_response):\n    start_response(\"200 OK\", [(\"Content-Type\", \"text/plain\")])\n    return [b\"It works! Revision 1\\n\"]\n";

/// Make the archive; return its bytes and sha256.
fn make_archive(work: &Path, wheels: &Path) -> Result<(Vec<u8>, String), String> {
    let app = work.join("app");
    let _ = fs::remove_dir_all(&app);
    fs::create_dir_all(app.join("wheels")).map_err(|e| e.to_string())?;
    fs::write(app.join("example_wsgi.py"), APP_PY).map_err(|e| e.to_string())?;
    fs::write(
        app.join("requirements.txt"),
        BUILD_REQUIREMENTS.join("\n") + "\n",
    )
    .map_err(|e| e.to_string())?;
    for entry in fs::read_dir(wheels).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().and_then(|e| e.to_str()) == Some("whl") {
            fs::copy(
                &path,
                app.join("wheels").join(path.file_name().expect("a file")),
            )
            .map_err(|e| e.to_string())?;
        }
    }
    let archive = work.join(ARCHIVE);
    run_checked(
        Command::new("tar")
            .arg("-czf")
            .arg(&archive)
            .arg("-C")
            .arg(&app)
            .arg("."),
    )?;
    let sum = run_checked(Command::new("sha256sum").arg(&archive))?;
    let sha = sum.split_whitespace().next().unwrap_or("").to_string();
    let bytes = fs::read(&archive).map_err(|e| e.to_string())?;
    Ok((bytes, sha))
}

/// The build's venv can import what was asked for (checked after timing).
fn check_imports(venv: &Path) -> Result<(), String> {
    run_checked(
        Command::new(venv.join("bin/python"))
            .args(["-c", "import flask, psycopg, pymongo, gunicorn"]),
    )
    .map(|_| ())
    .map_err(|e| format!("the installed build is incomplete: {e}"))
}

pub fn run(env: &BenchEnv) -> Result<BenchmarkResult, String> {
    let runs = if env.quick { 3 } else { 5 };
    let wheels = env.wheels()?;
    let work = env.dir.join("builds");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let (archive, sha) = make_archive(&work, &wheels)?;
    let archive_mib = archive.len() as f64 / (1024.0 * 1024.0);
    let server = FileServer::start(move |path| {
        path.ends_with(&format!("/{ARCHIVE}"))
            .then(|| archive.clone())
    })
    .map_err(|e| format!("archive server: {e}"))?;
    let script = work.join("venv-pip.sh");
    fs::write(&script, VENV_PIP_SCRIPT).map_err(|e| e.to_string())?;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;

    // b00 is installed at deploy, which also warms uv's cache: the timed
    // builds are what every later build costs on a unit.
    let model = SimModel::deploy(
        env,
        "builds",
        PORT,
        &[
            ("code_assets_uri", server.url()),
            ("archive_filename", ARCHIVE.into()),
            ("archive_sha256", sha.clone()),
            ("requirements_path", "requirements.txt".into()),
            ("pip_cache_path", "wheels".into()),
            ("build_label", "b00".into()),
            ("current_symlink", "b00".into()),
            ("keep_builds", (runs + 3).to_string()),
            ("workers", "1".into()),
        ],
    )?;
    let unit = model.unit_paths()?;
    let builds_dir = unit.root.join("srv/wsgi-app/builds");

    let mut ours = Vec::new();
    let mut venv_pip = Vec::new();
    for i in 1..=runs {
        let label = format!("b{i:02}");
        eprintln!("bench builds: run {i}/{runs}");
        model.set_config(&[("build_label", Value::from(label.clone()))])?;
        let run = model.run_hook("config-changed", &CharmUnderTest::Ours, &ToolSet::Emulated)?;
        if !builds_dir.join(&label).join("build.json").is_file() {
            return Err(format!(
                "config-changed exited 0 but build {label} is not installed (see the unit's hooks.log)"
            ));
        }
        ours.push(run.measured.ms());

        let dir = work.join(format!("venv-pip-{i}"));
        let url = format!("{}/{label}/{ARCHIVE}", server.url());
        let measured = run_measured(
            Command::new(&script)
                .args([url.as_str(), sha.as_str()])
                .arg(&dir)
                .arg(&env.python)
                .env("PATH", UNIT_SYSTEM_PATH)
                .stdin(Stdio::null())
                .stdout(Stdio::null()),
        )
        .map_err(|e| format!("venv+pip: {e}"))?;
        if measured.code != Some(0) {
            return Err(format!("the venv+pip script failed ({:?})", measured.code));
        }
        venv_pip.push(measured.ms());
    }
    check_imports(&builds_dir.join(format!("b{runs:02}/venv")))?;
    check_imports(&work.join(format!("venv-pip-{runs}/build/venv")))?;
    let installer = fs::read_to_string(builds_dir.join(format!("b{runs:02}/build.json")))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|m| m["installer"].as_str().map(String::from))
        .unwrap_or_else(|| "?".into());
    let uv_version = super::system::version_of(
        &unit.root.join("var/lib/wsgi-app/tools/bin/uv"),
        &["--version"],
    );
    drop(model);
    drop(server);

    let ours_s = Summary::of(&ours).expect("runs > 0");
    let pip_s = Summary::of(&venv_pip).expect("runs > 0");
    let ratio = pip_s.median / ours_s.median;
    let rows = vec![
        Row::target(
            "new build, wsgi-app config-changed (median; min–max)".into(),
            format!(
                "{:.2} s ({:.2}–{:.2})",
                ours_s.median / 1000.0,
                ours_s.min / 1000.0,
                ours_s.max / 1000.0
            ),
            "≤ 2 s",
            ours_s.median <= 2000.0,
        ),
        Row::info(
            "same inputs, python3 -m venv + pip (median; min–max)".into(),
            format!(
                "{:.2} s ({:.2}–{:.2})",
                pip_s.median / 1000.0,
                pip_s.min / 1000.0,
                pip_s.max / 1000.0
            ),
        ),
        Row::target(
            "venv+pip / wsgi-app".into(),
            format!("{ratio:.1}×"),
            "≥ 5×",
            ratio >= 5.0,
        ),
    ];
    Ok(BenchmarkResult {
        name: "builds",
        title: "A new build installed end to end".into(),
        results: json!({
            "runs": runs,
            "archive_mib": archive_mib,
            "requirements": BUILD_REQUIREMENTS,
            "wsgi_app_installer": installer,
            "uv": uv_version,
            "wsgi_app_config_changed_ms": ours_s,
            "venv_pip_ms": pip_s,
            "ratio_venv_pip_over_ours": ratio,
        }),
        rows,
        notes: vec![
            format!("The archive ({archive_mib:.1} MiB, tar.gz) holds the app, requirements.txt and the wheels of flask, psycopg[binary], pymongo and gunicorn with their dependencies; both sides download it from the same loopback server, check its sha256, extract it and install offline from its wheels."),
            "wsgi-app's figure is its whole config-changed hook with charm-sim's emulated hook tools (each call ≈10 ms); uv's cache is warm from the build installed at deploy, as it is on a unit after its first build. The served build is pinned, so no gunicorn switch is included.".into(),
            "The baseline is a shell script: curl, sha256sum, tar, python3 -m venv, pip install --no-index --find-links, ln + mv.".into(),
        ],
    })
}
