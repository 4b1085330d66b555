//! Installing a build: fetch, verify, extract, virtualenv, requirements,
//! `make`, then rename into place. A build is complete or absent: every step
//! works in a staging directory that is removed on any failure, and the
//! rename into `builds/<label>` is the last thing that happens.
//!
//! Why one file over 600 lines: the install steps in the order they run, each
//! followed by its kill point, and the few build-set operations (manifests,
//! removal, symlink swaps) the charm uses between installs.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::archive::{self, ArchiveFormat};
use super::fetch;
use super::layout::{Layout, BUILD_MANIFEST};
use super::machine::{CommandOutput, CommandSpec, Machine};
use super::text::at_path;

/// How long one installer step (pip, make) may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(1800);

/// Why a build could not be installed. Each message names the step and what
/// the operator can do; the serving build is untouched whatever happened.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("archive_filename {0:?} has no known archive ending (.tar.gz, .tgz, .tar.bz2, .tar.bzip2, .tar.xz, .tar, .zip)")]
    UnknownFormat(String),
    #[error("build {label}: no archive at files/{label}/{file} in the charm; set code_assets_uri, or use a build label the charm ships (r1, r2)")]
    NotInCharm { label: String, file: String },
    #[error("build {label}: {source}")]
    Fetch {
        label: String,
        #[source]
        source: fetch::FetchError,
    },
    #[error("build {label}: {source}")]
    Archive {
        label: String,
        #[source]
        source: archive::ArchiveError,
    },
    #[error("build {label}: {what} not found in the archive; check {option}")]
    MissingPath {
        label: String,
        what: String,
        option: &'static str,
    },
    #[error("build {label}: {step} failed: {detail}")]
    Step {
        label: String,
        step: String,
        detail: String,
    },
    #[error("build {label}: {}: {source}", path.display())]
    Io {
        label: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl BuildError {
    /// An I/O error on `path`, which the message names: the kernel's
    /// text ("Permission denied") names nothing.
    fn io<'a>(label: &'a str, path: &'a Path) -> impl FnOnce(std::io::Error) -> BuildError + 'a {
        move |source| BuildError::Io {
            label: label.to_string(),
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What a build is made from: the options that shape it, as plain values
/// (the charm reads and validates them; this module only follows them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildSpec {
    /// The archive's file name, whose ending says its format.
    pub archive_filename: String,
    /// Download from `<uri>/<label>/<archive_filename>`; `None`: the
    /// charm's own `files/<label>/<archive_filename>`.
    pub code_assets_uri: Option<String>,
    /// The sha256 the archive must have, when given.
    pub archive_sha256: Option<String>,
    /// A requirements file, relative to the archive's root.
    pub requirements_path: Option<String>,
    /// A directory of wheels to install from offline, relative to the archive's root.
    pub pip_cache_path: Option<String>,
    /// `make <target>` after the requirements, with the app's environment.
    pub update_make_target: Option<String>,
}

/// The facts about a build the charm writes into it (`build.json`) and the store.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub label: String,
    pub archive: String,
    pub sha256: String,
    pub size: u64,
    pub installed_at: i64,
    pub installer: String,
    /// The gunicorn version installed in the build's venv (absent in
    /// builds installed before versions were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gunicorn: Option<String>,
    /// Milliseconds the install took, fetch to manifest (absent in builds
    /// installed before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_ms: Option<u64>,
}

/// The gunicorn a build gets unless its requirements name one: the version
/// the charm's unit files and switching are tested with. A new upstream
/// release must not change what new units run.
pub const GUNICORN_REQUIREMENT: &str = "gunicorn==27.0.1";
/// The uv the charm installs for itself, pinned for the same reason.
pub const UV_REQUIREMENT: &str = "uv==0.13.9";

/// The gunicorn requirement for a build: none when the app's own
/// requirements name gunicorn (the app chooses), the bare name when
/// installing offline (the operator's cache is the pin), else ours.
fn gunicorn_requirement(requirements: Option<&Path>, offline: bool) -> Option<&'static str> {
    let names_gunicorn = requirements
        .and_then(|path| fs::read_to_string(path).ok())
        .is_some_and(|text| text.lines().any(names_gunicorn));
    match (names_gunicorn, offline) {
        (true, _) => None,
        (false, true) => Some("gunicorn"),
        (false, false) => Some(GUNICORN_REQUIREMENT),
    }
}

/// Whether a requirements line asks for gunicorn (any version, extras or
/// marker); names compare as pip normalises them.
fn names_gunicorn(line: &str) -> bool {
    let line = line.split('#').next().unwrap_or_default().trim();
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
        .unwrap_or(line.len());
    let name = line[..name_end]
        .to_ascii_lowercase()
        .replace(['_', '.'], "-");
    name == "gunicorn"
}

/// The version of `package` installed in `venv`, as its metadata says.
fn installed_version(machine: &Machine, venv: &Path, package: &str) -> Option<String> {
    let python = venv.join("bin/python").to_string_lossy().into_owned();
    let query = format!("import importlib.metadata as m; print(m.version({package:?}))");
    let out = machine
        .runner
        .run(
            &CommandSpec::new(python)
                .args(["-c", &query])
                .timeout(Duration::from_secs(30)),
        )
        .ok()?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.success() && !version.is_empty() && !version.contains(char::is_whitespace))
        .then_some(version)
}

/// Whether build `label`'s Python can import `module`; else the error's
/// last line (`ModuleNotFoundError: No module named 'gevent'`).
pub fn can_import(
    machine: &Machine,
    layout: &Layout,
    label: &str,
    module: &str,
) -> Result<(), String> {
    let python = layout.venv_dir(label).join("bin/python");
    let out = machine
        .runner
        .run(
            &CommandSpec::new(python.to_string_lossy().into_owned())
                .args(["-c", &format!("import {module}")])
                .timeout(Duration::from_secs(60)),
        )
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if out.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("import failed")
        .trim()
        .to_string())
}

/// Read a build's manifest; `None` when the build is absent or incomplete.
pub fn read_manifest(layout: &Layout, label: &str) -> Option<Manifest> {
    let text = fs::read(layout.build_dir(label).join(BUILD_MANIFEST)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// What the installer reports as it goes ("fetching", "python requirements").
pub trait Progress {
    fn step(&mut self, message: &str);
}

impl<F: FnMut(&str)> Progress for F {
    fn step(&mut self, message: &str) {
        self(message)
    }
}

/// The python tooling: uv when present (much faster), else venv + pip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installer {
    Uv(PathBuf),
    Pip,
}

impl Installer {
    pub fn detect(machine: &Machine, layout: &Layout) -> Installer {
        let own_uv = layout.tools_venv().join("bin/uv");
        if super::system::is_executable(&own_uv) {
            return Installer::Uv(own_uv);
        }
        match machine.runner.which("uv") {
            Some(uv) => Installer::Uv(uv),
            None => Installer::Pip,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Installer::Uv(_) => "uv",
            Installer::Pip => "pip",
        }
    }
}

/// Install the charm's own uv into a tool venv, where the machine allows it
/// (PyPI reachable). Failing is fine: builds fall back to venv + pip.
pub fn install_uv(machine: &Machine, layout: &Layout) -> Result<(), String> {
    let venv = layout.tools_venv();
    if super::system::is_executable(&venv.join("bin/uv")) || machine.runner.which("uv").is_some() {
        return Ok(());
    }
    let run = |spec: CommandSpec| -> Result<(), String> {
        let out = machine
            .runner
            .run(&spec.timeout(Duration::from_secs(300)))
            .map_err(|e| e.to_string())?;
        if out.success() {
            Ok(())
        } else {
            Err(out.tail(3))
        }
    };
    run(CommandSpec::new("python3").args(["-m", "venv", &venv.to_string_lossy()]))?;
    run(
        CommandSpec::new(venv.join("bin/pip").to_string_lossy()).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            UV_REQUIREMENT,
        ]),
    )
}

/// Where the archive for `label` comes from.
fn archive_source(config: &BuildSpec, machine: &Machine, label: &str) -> String {
    match &config.code_assets_uri {
        Some(uri) => format!("{uri}/{label}/{}", config.archive_filename),
        None => machine
            .charm_dir
            .join("files")
            .join(label)
            .join(&config.archive_filename)
            .to_string_lossy()
            .into_owned(),
    }
}

/// A staging directory that removes itself unless kept.
struct Staging {
    dir: PathBuf,
    keep: bool,
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Remove leftovers of installs that were interrupted (a killed hook).
pub fn clean_staging(layout: &Layout) {
    let _ = fs::remove_dir_all(layout.staging_dir());
}

/// Install build `label` as `config` describes it. `app_env` is the
/// application's environment, for `make`. On success the build is in
/// `builds/<label>` with its manifest; on failure nothing of it remains.
/// Each step is followed by its kill point (see `CRASH_POINTS`).
pub fn install(
    machine: &Machine,
    layout: &Layout,
    config: &BuildSpec,
    label: &str,
    app_env: &[(String, String)],
    progress: &mut dyn Progress,
) -> Result<Manifest, BuildError> {
    let format = ArchiveFormat::from_filename(&config.archive_filename)
        .ok_or_else(|| BuildError::UnknownFormat(config.archive_filename.clone()))?;
    let began = std::time::Instant::now();
    let mut staging = Staging::create(layout, label)?;
    let source = archive_source(config, machine, label);
    progress.step(&format!("installing build {label}: fetching archive"));
    let fetched = fetch_archive(machine, config, &source, &staging, label)?;
    machine.crash_point("after-fetch");

    progress.step(&format!("installing build {label}: extracting"));
    let code = extract_code(machine, format, &staging, label)?;
    machine.crash_point("after-extract");
    let inputs = find_inputs(config, &code, label)?;

    let installer = Installer::detect(machine, layout);
    let venv = staging.dir.join("venv");
    install_requirements(
        machine, layout, &installer, &inputs, &venv, &code, label, progress,
    )?;
    machine.crash_point("after-requirements");

    if let Some(target) = &config.update_make_target {
        progress.step(&format!("installing build {label}: make {target}"));
        run_step(
            machine,
            label,
            &format!("make {target}"),
            make_command(&code, &venv, target, app_env),
        )?;
        machine.crash_point("after-make");
    }

    // The venv's scripts name the staging path; point them at the final one.
    let final_dir = layout.build_dir(label);
    retarget_scripts(&venv, &staging.dir, &final_dir).map_err(BuildError::io(label, &venv))?;

    let manifest = Manifest {
        label: label.to_string(),
        archive: if config.code_assets_uri.is_some() {
            super::text::redact_url_text(&source)
        } else {
            source.clone()
        },
        sha256: fetched.sha256.clone(),
        size: fetched.bytes,
        installed_at: now(),
        installer: installer.name().to_string(),
        gunicorn: installed_version(machine, &venv, "gunicorn"),
        install_ms: Some(began.elapsed().as_millis() as u64),
    };
    // Last: the manifest's presence is what "complete" means.
    let manifest_path = staging.dir.join(BUILD_MANIFEST);
    write_file_synced(
        &manifest_path,
        &serde_json::to_vec_pretty(&manifest).expect("manifest serialises"),
    )
    .map_err(BuildError::io(label, &manifest_path))?;
    machine.crash_point("after-manifest");
    rename_into_place(layout, &mut staging, &final_dir, label)?;
    machine.crash_point("after-rename");
    Ok(manifest)
}

impl Staging {
    /// A fresh `.staging/<label>`, after removing what an interrupted
    /// install left there.
    fn create(layout: &Layout, label: &str) -> Result<Staging, BuildError> {
        clean_staging(layout);
        let (staging_dir, builds_dir) = (layout.staging_dir(), layout.builds_dir());
        fs::create_dir_all(&staging_dir).map_err(BuildError::io(label, &staging_dir))?;
        fs::create_dir_all(&builds_dir).map_err(BuildError::io(label, &builds_dir))?;
        let staging = Staging {
            dir: layout.staging_dir().join(label),
            keep: false,
        };
        fs::create_dir(&staging.dir).map_err(BuildError::io(label, &staging.dir))?;
        fs::set_permissions(&staging.dir, fs::Permissions::from_mode(0o755))
            .map_err(BuildError::io(label, &staging.dir))?;
        Ok(staging)
    }
}

/// Step 1: the archive into `staging/archive`, downloaded or copied from
/// the charm, and checked against `archive_sha256` when given.
fn fetch_archive(
    machine: &Machine,
    config: &BuildSpec,
    source: &str,
    staging: &Staging,
    label: &str,
) -> Result<fetch::Downloaded, BuildError> {
    let archive_path = staging.dir.join("archive");
    let fetch_error = |source| BuildError::Fetch {
        label: label.into(),
        source,
    };
    let fetched = if config.code_assets_uri.is_some() {
        fetch::download(source, &archive_path, &machine.download)
    } else {
        if !Path::new(source).is_file() {
            return Err(BuildError::NotInCharm {
                label: label.into(),
                file: config.archive_filename.clone(),
            });
        }
        fetch::copy_local(Path::new(source), &archive_path, &machine.download)
    }
    .map_err(fetch_error)?;
    if let Some(expected) = &config.archive_sha256 {
        fetch::verify_sha256(&fetched, expected).map_err(fetch_error)?;
    }
    Ok(fetched)
}

/// Step 2: the archive's contents into `staging/code`, and the archive gone.
fn extract_code(
    machine: &Machine,
    format: ArchiveFormat,
    staging: &Staging,
    label: &str,
) -> Result<PathBuf, BuildError> {
    let archive_path = staging.dir.join("archive");
    let code = staging.dir.join("code");
    fs::create_dir(&code).map_err(BuildError::io(label, &code))?;
    archive::extract(&archive_path, format, &code, &machine.extract).map_err(|source| {
        BuildError::Archive {
            label: label.into(),
            source,
        }
    })?;
    fs::remove_file(&archive_path).map_err(BuildError::io(label, &archive_path))?;
    Ok(code)
}

/// What the options point at inside the extracted code.
struct BuildInputs {
    requirements: Option<PathBuf>,
    pip_cache: Option<PathBuf>,
}

/// The requirements file and pip cache the options name, which must exist
/// in the archive.
fn find_inputs(config: &BuildSpec, code: &Path, label: &str) -> Result<BuildInputs, BuildError> {
    let requirements = match &config.requirements_path {
        Some(rel) => {
            let path = code.join(rel);
            if !path.is_file() {
                return Err(BuildError::MissingPath {
                    label: label.into(),
                    what: format!("requirements file {rel:?}"),
                    option: "requirements_path",
                });
            }
            Some(path)
        }
        None => None,
    };
    let pip_cache = match &config.pip_cache_path {
        Some(rel) => {
            let path = code.join(rel);
            if !path.is_dir() {
                return Err(BuildError::MissingPath {
                    label: label.into(),
                    what: format!("pip cache directory {rel:?}"),
                    option: "pip_cache_path",
                });
            }
            Some(path)
        }
        None => None,
    };
    Ok(BuildInputs {
        requirements,
        pip_cache,
    })
}

/// Run one installer step; its failure names the step and ends with the
/// program's last lines of output.
fn run_step(
    machine: &Machine,
    label: &str,
    name: &str,
    spec: CommandSpec,
) -> Result<CommandOutput, BuildError> {
    let out = machine
        .runner
        .run(&spec.timeout(STEP_TIMEOUT))
        .map_err(|e| BuildError::Step {
            label: label.into(),
            step: name.into(),
            detail: e.to_string(),
        })?;
    if out.success() {
        Ok(out)
    } else {
        Err(BuildError::Step {
            label: label.into(),
            step: name.into(),
            detail: if out.timed_out {
                format!("timed out after {} s", STEP_TIMEOUT.as_secs())
            } else {
                out.tail(5)
            },
        })
    }
}

/// Step 3: the build's virtualenv with gunicorn and the requirements, by
/// uv or by venv + pip (offline from the pip cache when one is given).
#[allow(clippy::too_many_arguments)]
fn install_requirements(
    machine: &Machine,
    layout: &Layout,
    installer: &Installer,
    inputs: &BuildInputs,
    venv: &Path,
    code: &Path,
    label: &str,
    progress: &mut dyn Progress,
) -> Result<(), BuildError> {
    progress.step(&format!("installing build {label}: python virtualenv"));
    let venv_s = venv.to_string_lossy().into_owned();
    let python = venv.join("bin/python").to_string_lossy().into_owned();
    let mut packages: Vec<String> =
        gunicorn_requirement(inputs.requirements.as_deref(), inputs.pip_cache.is_some())
            .map(String::from)
            .into_iter()
            .collect();
    if let Some(req) = &inputs.requirements {
        packages.push("-r".into());
        packages.push(req.to_string_lossy().into_owned());
    }
    let mut index_args: Vec<String> = Vec::new();
    if let Some(cache) = &inputs.pip_cache {
        index_args.push("--no-index".into());
        index_args.push("--find-links".into());
        index_args.push(cache.to_string_lossy().into_owned());
    }
    let (create, install) = match installer {
        Installer::Uv(uv) => {
            let uv = uv.to_string_lossy().into_owned();
            let cache = layout.uv_cache().to_string_lossy().into_owned();
            (
                uv_command(&uv, &cache).args(["venv", "--quiet", "--python", "python3", &venv_s]),
                uv_command(&uv, &cache).args(["pip", "install", "--quiet", "--python", &python]),
            )
        }
        Installer::Pip => (
            CommandSpec::new("python3").args(["-m", "venv", &venv_s]),
            CommandSpec::new(&python).args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ]),
        ),
    };
    run_step(machine, label, "creating the virtualenv", create)?;
    machine.crash_point("after-venv");
    progress.step(&format!("installing build {label}: python requirements"));
    run_step(
        machine,
        label,
        "installing python requirements",
        install.args(index_args).args(packages).cwd(code),
    )?;
    Ok(())
}

/// Last step: staging renamed to `builds/<label>`, replacing an incomplete
/// leftover (no manifest) there; an installed build is never reinstalled,
/// so nothing complete is lost.
fn rename_into_place(
    layout: &Layout,
    staging: &mut Staging,
    final_dir: &Path,
    label: &str,
) -> Result<(), BuildError> {
    if final_dir.exists() {
        fs::remove_dir_all(final_dir).map_err(BuildError::io(label, final_dir))?;
    }
    fs::rename(&staging.dir, final_dir).map_err(BuildError::io(label, final_dir))?;
    sync_dir(&layout.builds_dir());
    staging.keep = true;
    Ok(())
}

/// uv with the charm's settings: the machine's CA certificates (as pip
/// uses them; a proxy with its own CA is common on units), never a
/// downloaded Python, and a cache shared by builds.
fn uv_command(uv: &str, cache: &str) -> CommandSpec {
    CommandSpec::new(uv)
        .env("UV_CACHE_DIR", cache)
        .env("UV_NATIVE_TLS", "1")
        .env("UV_PYTHON_DOWNLOADS", "never")
}

/// `make <target>` in a build's code, with the app's environment and venv.
pub fn make_command(
    code: &Path,
    venv: &Path,
    target: &str,
    app_env: &[(String, String)],
) -> CommandSpec {
    let path = format!(
        "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        venv.join("bin").display()
    );
    let mut spec = CommandSpec::new("make")
        .args(["-C", &code.to_string_lossy(), "--", target])
        .env("PATH", path)
        .env("VIRTUAL_ENV", venv.to_string_lossy());
    for (k, v) in app_env {
        spec = spec.env(k, v);
    }
    spec.env_is_secret = true;
    spec
}

/// Rewrite `#!<from>/...` script headers in `venv/bin` to `#!<to>/...`.
fn retarget_scripts(venv: &Path, from: &Path, to: &Path) -> std::io::Result<()> {
    let bin = venv.join("bin");
    let Ok(entries) = fs::read_dir(&bin) else {
        return Ok(());
    };
    let from_prefix = format!("#!{}", from.display());
    let to_prefix = format!("#!{}", to.display());
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let data = fs::read(entry.path())?;
        if data.starts_with(from_prefix.as_bytes()) {
            let mut fixed = to_prefix.clone().into_bytes();
            fixed.extend_from_slice(&data[from_prefix.len()..]);
            let mode = entry.metadata()?.permissions();
            fs::write(entry.path(), fixed)?;
            fs::set_permissions(entry.path(), mode)?;
        }
    }
    Ok(())
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Write a file and flush it to disk before it is renamed or relied on.
pub fn write_file_synced(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(data)?;
    f.sync_all()
}

pub fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Remove an installed build (the manifest first, so a crash midway leaves
/// an incomplete build, which is never served).
pub fn remove(layout: &Layout, label: &str) -> std::io::Result<()> {
    let dir = layout.build_dir(label);
    let _ = fs::remove_file(dir.join(BUILD_MANIFEST));
    match fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(at_path(&dir)(e)),
        _ => Ok(()),
    }
}

/// Builds on disk with a manifest, i.e. complete ones.
pub fn installed_on_disk(layout: &Layout) -> Vec<Manifest> {
    let Ok(entries) = fs::read_dir(layout.builds_dir()) else {
        return Vec::new();
    };
    let mut found: Vec<Manifest> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|label| read_manifest(layout, &label))
        .collect();
    found.sort_by(|a, b| {
        a.installed_at
            .cmp(&b.installed_at)
            .then(a.label.cmp(&b.label))
    });
    found
}

/// Point `link` at `target` atomically: a new link beside it, renamed over it.
pub fn swap_symlink(link: &Path, target: &Path) -> std::io::Result<bool> {
    if fs::read_link(link).ok().as_deref() == Some(target) {
        return Ok(false);
    }
    let name = link
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = link.with_file_name(format!(".{name}.new"));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(at_path(&tmp))?;
    fs::rename(&tmp, link).map_err(at_path(link))?;
    if let Some(dir) = link.parent() {
        sync_dir(dir);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_chooses_its_gunicorn_else_the_tested_one_is_pinned() {
        let dir = tempfile::tempdir().unwrap();
        let req = dir.path().join("requirements.txt");
        for (text, named) in [
            ("flask==3.0\ngunicorn==21.2.0\n", true),
            ("Gunicorn[gevent]>=20 ; python_version>'3'\n", true),
            ("gunicorn\n", true),
            ("  # gunicorn==1\nflask\n", false),
            ("gunicorn-extras==1\n", false),
            ("flask\n", false),
        ] {
            std::fs::write(&req, text).unwrap();
            let expected = if named {
                None
            } else {
                Some(GUNICORN_REQUIREMENT)
            };
            assert_eq!(
                gunicorn_requirement(Some(&req), false),
                expected,
                "{text:?}"
            );
        }
        assert_eq!(
            gunicorn_requirement(None, false),
            Some(GUNICORN_REQUIREMENT)
        );
        assert_eq!(gunicorn_requirement(None, true), Some("gunicorn"));
    }

    /// An I/O error installing a build names the path it happened on.
    #[test]
    fn an_io_error_names_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("srv-app");
        fs::write(&base, "a file where the builds' directory should be").unwrap();
        let layout = Layout {
            app: "app".into(),
            base: base.clone(),
            etc: dir.path().join("etc"),
            log_dir: dir.path().join("log"),
            run_dir: dir.path().join("run"),
            lib_dir: dir.path().join("lib"),
        };
        let Err(err) = Staging::create(&layout, "r1") else {
            panic!("staging under a file was created");
        };
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("build r1: {}: ", base.join(".staging").display())),
            "{message}"
        );
        let link = base.join("current");
        let err = swap_symlink(&link, Path::new("builds/r1")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{}: ", base.join(".current.new").display())),
            "{err}"
        );
    }
}
