//! Getting a charm onto disk, and its config from the command line.
//!
//! - Config settings (`key=value`) typed the way `juju deploy --config` and
//!   `juju config` type them, then checked by [`crate::schema`], which also
//!   reads the charm's YAML for charm-sim (kept in the model as JSON, so
//!   hook tools never re-read it).
//! - Unpacking a `.charm` zip (unix modes and relative symlinks kept, as Juju's
//!   unpacker does), copying a charm directory per unit, and assembling the
//!   wsgi-app charm from this source tree when no charm is named (the
//!   entries come from [`crate::charm_contents`], which `cargo xtask pack`
//!   zips too).

use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{ErrorContext, Result, SimError};
use crate::charm_contents::{self, build_charm_binary, link_stays_inside, BinaryBuild};
use crate::schema::{check_option_value, CharmMeta, OptionType};
use crate::sim_err;

/// Parse a `key=value` config setting from the command line into the
/// option's type. `Ok(None)` means "reset to the default" (`key=`).
pub fn parse_setting(meta: &CharmMeta, setting: &str) -> Result<(String, Option<Value>)> {
    let (key, raw) = setting
        .split_once('=')
        .ok_or_else(|| sim_err!("expected key=value, got {setting:?}"))?;
    let key = key.trim();
    let option = meta.options.get(key).ok_or_else(|| {
        sim_err!(
            "unknown option {key:?} for charm {:?} (config.yaml has: {})",
            meta.name,
            meta.options.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })?;
    // `key=` resets the option to its default (charm-sim's rule; Juju
    // spells it `juju config --reset key`).
    if raw.is_empty() {
        return Ok((key.to_string(), None));
    }
    let value = typed_config_value(key, option.kind, raw)?;
    check_option_value(option.kind, &value).map_err(|m| sim_err!("option {key:?} {m}"))?;
    Ok((key.to_string(), Some(value)))
}

/// Convert command-line text into a config value of the option's type,
/// with the error wording Juju uses for a mismatch.
pub fn typed_config_value(key: &str, kind: OptionType, raw: &str) -> Result<Value> {
    let bad = || sim_err!("option {key:?} expected {}, got {raw:?}", kind.as_ref());
    match kind {
        OptionType::String | OptionType::Secret => Ok(Value::String(raw.to_string())),
        OptionType::Int => raw
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| bad()),
        OptionType::Float => {
            let f: f64 = raw.trim().parse().map_err(|_| bad())?;
            serde_json::Number::from_f64(f)
                .map(Value::Number)
                .ok_or_else(bad)
        }
        OptionType::Boolean => parse_go_bool(raw.trim()).map(Value::Bool).ok_or_else(bad),
    }
}

/// Go's `strconv.ParseBool`, which Juju uses for booleans and bool flags.
pub fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Copy a directory tree: hardlink regular files when the filesystem allows
/// (units share the charm's bytes, as they would share an unpacked archive's
/// content), recreate symlinks as symlinks, keep modes.
pub fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).context(format!("cannot create {}", to.display()))?;
    for entry in fs::read_dir(from).context(format!("cannot read {}", from.display()))? {
        let entry = entry.context(format!("cannot read {}", from.display()))?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let kind = entry
            .file_type()
            .context(format!("cannot stat {}", src.display()))?;
        if kind.is_symlink() {
            let target = fs::read_link(&src).context(format!("cannot read {}", src.display()))?;
            symlink(&target, &dst).context(format!("cannot create {}", dst.display()))?;
        } else if kind.is_dir() {
            copy_tree(&src, &dst)?;
            let mode = fs::metadata(&src)
                .context(format!("cannot stat {}", src.display()))?
                .permissions();
            fs::set_permissions(&dst, mode).context(format!("cannot chmod {}", dst.display()))?;
        } else if fs::hard_link(&src, &dst).is_err() {
            fs::copy(&src, &dst).context(format!(
                "cannot copy {} to {}",
                src.display(),
                dst.display()
            ))?;
        }
    }
    Ok(())
}

/// Unpack a `.charm` (a zip) into `to`, keeping unix modes and recreating
/// relative symlinks; entries that would land outside `to` are refused.
pub fn unpack_charm(archive: &Path, to: &Path) -> Result<()> {
    let file = fs::File::open(archive).context(format!("cannot open {}", archive.display()))?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| sim_err!("{} is not a charm archive (zip): {e}", archive.display()))?;
    fs::create_dir_all(to).context(format!("cannot create {}", to.display()))?;
    for index in 0..zip.len() {
        let mut entry = zip
            .by_index(index)
            .map_err(|e| sim_err!("{}: {e}", archive.display()))?;
        let name = entry.name().to_string();
        let relative = entry.enclosed_name().ok_or_else(|| {
            sim_err!(
                "{}: entry {name:?} leaves the charm directory",
                archive.display()
            )
        })?;
        let dst = to.join(&relative);
        let mode = entry.unix_mode();
        if entry.is_dir() {
            fs::create_dir_all(&dst).context(format!("cannot create {}", dst.display()))?;
            continue;
        }
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent).context(format!("cannot create {}", parent.display()))?;
        }
        let mut content = Vec::new();
        entry
            .read_to_end(&mut content)
            .map_err(|e| sim_err!("{}: cannot read {name:?}: {e}", archive.display()))?;
        const S_IFMT: u32 = 0o170000;
        const S_IFLNK: u32 = 0o120000;
        if mode.is_some_and(|m| m & S_IFMT == S_IFLNK) {
            let target = PathBuf::from(String::from_utf8_lossy(&content).into_owned());
            if !link_stays_inside(&relative, &target) {
                return Err(sim_err!(
                    "{}: symlink {name:?} -> {} leaves the charm directory",
                    archive.display(),
                    target.display()
                ));
            }
            symlink(&target, &dst).context(format!("cannot create {}", dst.display()))?;
            continue;
        }
        fs::write(&dst, &content).context(format!("cannot write {}", dst.display()))?;
        if let Some(mode) = mode {
            fs::set_permissions(&dst, fs::Permissions::from_mode(mode & 0o7777))
                .context(format!("cannot chmod {}", dst.display()))?;
        }
    }
    Ok(())
}

/// Find the wsgi-app source tree: the workspace this binary was built from
/// if it is still there, else the nearest directory above the current one
/// that holds metadata.yaml and harness/.
pub fn find_source_tree() -> Result<PathBuf> {
    let is_root = |dir: &Path| dir.join("metadata.yaml").is_file() && dir.join("harness").is_dir();
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if is_root(&built_from) {
        return Ok(built_from.canonicalize().unwrap_or(built_from));
    }
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    cwd.ancestors()
        .find(|dir| is_root(dir))
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            sim_err!(
                "no charm given and no wsgi-app source tree found (looked in {} and above {}); \
                 pass a charm directory or a .charm file",
                built_from.display(),
                cwd.display()
            )
        })
}

/// Build the charm binary with cargo (same profile as this charm-sim) and
/// lay out a charm directory at `to` (see [`lay_out_charm`]).
pub fn assemble_from_source(source: &Path, to: &Path, quiet: bool) -> Result<()> {
    let release = !cfg!(debug_assertions);
    if !quiet {
        eprintln!(
            "charm-sim: building the wsgi-app charm ({} profile) in {}",
            if release { "release" } else { "dev" },
            source.display()
        );
    }
    let build = BinaryBuild {
        release,
        target: None,
        quiet: true,
    };
    let binary = build_charm_binary(source, &build).map_err(SimError)?;
    lay_out_charm(source, &binary, to)
}

/// Lay out a charm directory at `to` from the source tree and a built
/// charm binary: the same entries `cargo xtask pack` zips (YAML files,
/// templates/, files/, the binary as `dispatch`, and
/// hooks/{install,start,upgrade-charm} linking to it for Juju < 2.8).
pub fn lay_out_charm(source: &Path, binary: &Path, to: &Path) -> Result<()> {
    let entries = charm_contents::from_source(source, binary).map_err(SimError)?;
    fs::create_dir_all(to).context(format!("cannot create {}", to.display()))?;
    charm_contents::write_dir(&entries, to).map_err(SimError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_values_take_the_option_type() {
        assert_eq!(
            typed_config_value("p", OptionType::Int, "80").unwrap(),
            Value::from(80)
        );
        assert!(typed_config_value("p", OptionType::Int, "8.5").is_err());
        assert_eq!(
            typed_config_value("b", OptionType::Boolean, "True").unwrap(),
            Value::Bool(true)
        );
        assert!(typed_config_value("b", OptionType::Boolean, "yes").is_err());
        assert_eq!(
            typed_config_value("s", OptionType::String, " a ").unwrap(),
            Value::from(" a ")
        );
    }

    #[test]
    fn settings_are_checked_as_juju_checks_config() {
        let meta = CharmMeta::from_yaml(
            "name: demo\nsummary: s\ndescription: d\n",
            Some("options:\n  token: {type: secret}\n  port: {type: int}\n"),
            None,
        )
        .unwrap();
        assert_eq!(
            parse_setting(&meta, "port=80").unwrap(),
            ("port".to_string(), Some(Value::from(80)))
        );
        assert_eq!(
            parse_setting(&meta, "port=").unwrap(),
            ("port".to_string(), None)
        );
        assert!(parse_setting(&meta, "token=secret:abc").is_ok());
        let err = parse_setting(&meta, "token=abc").unwrap_err().to_string();
        assert!(err.contains("secret URI"), "{err}");
        assert!(parse_setting(&meta, "nope=1").is_err());
    }
}
