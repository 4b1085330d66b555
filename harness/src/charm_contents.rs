//! What the wsgi-app charm contains, and where each piece comes from in
//! this source tree.
//!
//! One list, two consumers: charm-sim lays the entries out as a charm
//! directory ([`write_dir`]) and `cargo xtask pack` zips them into a
//! `.charm` (`xtask::pack`), so a file added here ships in both and the
//! charm people try locally is the charm they deploy. Building the charm
//! binary ([`build_charm_binary`]) is shared for the same reason.
//!
//! Modes are normalised the way git stores them (0644, or 0755 when the
//! owner may execute), so the charm does not depend on the umask of the
//! checkout it was built from.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// Juju's metadata files, copied as they are (metadata.yaml is mandatory).
pub const METADATA_FILES: &[&str] = &["metadata.yaml", "config.yaml", "actions.yaml"];

/// Files charmcraft's `additional-files` linter knows, shipped when present.
pub const DOCUMENT_FILES: &[&str] = &["README.md", "icon.svg", "LICENSE"];

/// Directories the charm reads at run time: its templates and the example
/// builds in files/.
pub const ASSET_DIRS: &[&str] = &["templates", "files"];

/// The hooks Juju before 2.8 (no dispatch support) must find; charmcraft's
/// charm plugin writes the same three. They link to dispatch, and the binary
/// derives the event from `argv[0]` when `JUJU_DISPATCH_PATH` is unset.
pub const LEGACY_HOOKS: &[&str] = &["install", "start", "upgrade-charm"];

/// Where each legacy hook points: relative, so Juju's unpacker keeps it.
pub const LEGACY_HOOK_TARGET: &str = "../dispatch";

/// The name of the charm binary's entry in the charm.
pub const DISPATCH: &str = "dispatch";

/// Where an entry's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// A file on disk, read when the entry is written.
    File(PathBuf),
    /// Generated content (the manifest).
    Bytes(Vec<u8>),
    /// A symbolic link to this relative target.
    Symlink(String),
}

/// One file or link of the charm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the charm's root, `/`-separated (`templates/x.cfg`).
    pub path: String,
    /// Permission bits: 0o644, 0o755, or 0o777 for links.
    pub mode: u32,
    pub content: Content,
}

impl Entry {
    pub fn bytes(path: &str, content: impl Into<Vec<u8>>) -> Entry {
        Entry {
            path: path.into(),
            mode: 0o644,
            content: Content::Bytes(content.into()),
        }
    }
}

/// git's view of a file mode: executable by its owner or not.
fn normalised_mode(mode: u32) -> u32 {
    if mode & 0o100 != 0 {
        0o755
    } else {
        0o644
    }
}

/// Every entry of the charm built from `source` (the workspace root) with
/// `binary` as its dispatch, sorted by path. Missing optional files are
/// skipped; a missing metadata.yaml is an error, as it is for Juju.
pub fn from_source(source: &Path, binary: &Path) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::new();
    for name in METADATA_FILES.iter().chain(DOCUMENT_FILES) {
        let path = source.join(name);
        match fs::metadata(&path) {
            Ok(meta) if meta.is_file() => entries.push(Entry {
                path: name.to_string(),
                mode: normalised_mode(meta.permissions().mode()),
                content: Content::File(path),
            }),
            _ if *name == "metadata.yaml" => {
                return Err(format!(
                    "{} is missing; Juju refuses a charm without it",
                    path.display()
                ))
            }
            _ => {}
        }
    }
    for dir in ASSET_DIRS {
        let path = source.join(dir);
        if path.is_dir() {
            walk(&path, dir, &mut entries)?;
        }
    }
    if !binary.is_file() {
        return Err(format!("the charm binary {} is missing", binary.display()));
    }
    entries.push(Entry {
        path: DISPATCH.into(),
        mode: 0o755,
        content: Content::File(binary.to_path_buf()),
    });
    for hook in LEGACY_HOOKS {
        entries.push(Entry {
            path: format!("hooks/{hook}"),
            mode: 0o777,
            content: Content::Symlink(LEGACY_HOOK_TARGET.into()),
        });
    }
    // Juju runs actions through dispatch; these are for operators who run
    // an action as a command (`juju exec`), as the older charms were run.
    let meta = crate::schema::CharmMeta::load(source).map_err(|e| e.to_string())?;
    for action in meta.actions.keys() {
        entries.push(Entry {
            path: format!("actions/{action}"),
            mode: 0o777,
            content: Content::Symlink(LEGACY_HOOK_TARGET.into()),
        });
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

/// Add the files under `dir` (shipped as `prefix/...`) in a stable order.
fn walk(dir: &Path, prefix: &str, entries: &mut Vec<Entry>) -> Result<(), String> {
    let mut children: Vec<_> = fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    children.sort_by_key(|c| c.file_name());
    for child in children {
        let name = child.file_name();
        let name = name
            .to_str()
            .ok_or_else(|| format!("{}: file names must be UTF-8", child.path().display()))?;
        let path = child.path();
        let relative = format!("{prefix}/{name}");
        let kind = child
            .file_type()
            .map_err(|e| format!("cannot stat {}: {e}", path.display()))?;
        if kind.is_symlink() {
            let target =
                fs::read_link(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            if !link_stays_inside(Path::new(&relative), &target) {
                return Err(format!(
                    "{} -> {} leaves the charm; Juju's unpacker would refuse it",
                    path.display(),
                    target.display()
                ));
            }
            entries.push(Entry {
                path: relative,
                mode: 0o777,
                content: Content::Symlink(target.to_string_lossy().into_owned()),
            });
        } else if kind.is_dir() {
            walk(&path, &relative, entries)?;
        } else if kind.is_file() {
            let mode = child
                .metadata()
                .map_err(|e| format!("cannot stat {}: {e}", path.display()))?
                .permissions()
                .mode();
            entries.push(Entry {
                path: relative,
                mode: normalised_mode(mode),
                content: Content::File(path),
            });
        } else {
            return Err(format!(
                "{} is neither a file, a directory nor a link",
                path.display()
            ));
        }
    }
    Ok(())
}

/// Whether a symlink at `link` (relative to the charm root) pointing at
/// `target` resolves inside the charm root — the rule Juju's unpacker
/// applies to the links in a `.charm`.
pub fn link_stays_inside(link: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i32 = link.components().count() as i32 - 1;
    for part in target.components() {
        match part {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

/// Lay the entries out as a charm directory at `to`: files copied with
/// their entry's mode, links recreated as links.
pub fn write_dir(entries: &[Entry], to: &Path) -> Result<(), String> {
    for entry in entries {
        let dst = to.join(&entry.path);
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        match &entry.content {
            Content::Symlink(target) => {
                symlink(target, &dst)
                    .map_err(|e| format!("cannot create {}: {e}", dst.display()))?;
                continue;
            }
            Content::File(src) => {
                fs::copy(src, &dst).map_err(|e| {
                    format!("cannot copy {} to {}: {e}", src.display(), dst.display())
                })?;
            }
            Content::Bytes(bytes) => {
                fs::write(&dst, bytes)
                    .map_err(|e| format!("cannot write {}: {e}", dst.display()))?;
            }
        }
        fs::set_permissions(&dst, fs::Permissions::from_mode(entry.mode))
            .map_err(|e| format!("cannot chmod {}: {e}", dst.display()))?;
    }
    Ok(())
}

/// How to build the charm binary.
#[derive(Debug, Clone, Default)]
pub struct BinaryBuild {
    pub release: bool,
    /// A target triple for cross builds; `None` builds for this machine.
    pub target: Option<String>,
    /// Hide cargo's progress lines (errors are shown either way).
    pub quiet: bool,
}

/// Build the charm binary of the workspace at `source` with cargo and
/// return the executable's path, as cargo reports it (so CARGO_TARGET_DIR,
/// --target and build configuration are honoured, never guessed).
pub fn build_charm_binary(source: &Path, build: &BinaryBuild) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(source)
        .args([
            "build",
            // Select the harness package too: cargo unifies dependency
            // features over the packages it builds, and building the charm
            // alone would rebuild crates that `cargo run -p harness` then
            // rebuilds back, on every call.
            "--package",
            "harness",
            "--package",
            "wsgi-app",
            "--bin",
            "wsgi-app",
            "--message-format=json-render-diagnostics",
        ])
        .arg("--manifest-path")
        .arg(source.join("Cargo.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if build.quiet {
        command.arg("--quiet");
    }
    if build.release {
        command.arg("--release");
    }
    if let Some(target) = &build.target {
        command.args(["--target", target]);
    }
    let out = command
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo build --bin wsgi-app failed ({})",
            out.status
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact" && msg["target"]["name"] == "wsgi-app")
        .filter_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .next_back()
        .ok_or_else(|| "cargo built no wsgi-app executable".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_may_not_leave_the_charm() {
        assert!(link_stays_inside(
            Path::new("hooks/install"),
            Path::new("../dispatch")
        ));
        assert!(!link_stays_inside(
            Path::new("hooks/install"),
            Path::new("../../x")
        ));
        assert!(!link_stays_inside(Path::new("a"), Path::new("/etc/passwd")));
    }

    #[test]
    fn modes_are_normalised_as_git_stores_them() {
        assert_eq!(normalised_mode(0o100600), 0o644);
        assert_eq!(normalised_mode(0o100664), 0o644);
        assert_eq!(normalised_mode(0o100700), 0o755);
        assert_eq!(normalised_mode(0o100775), 0o755);
    }

    #[test]
    fn the_workspace_charm_lists_every_piece_once_in_order() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let fake_binary = root.join("metadata.yaml");
        let entries = from_source(&root, &fake_binary).unwrap();
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        let mut sorted = paths.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(paths, sorted);
        for expected in ["metadata.yaml", "config.yaml", "actions.yaml", "dispatch"] {
            assert!(paths.contains(&expected), "{expected} missing: {paths:?}");
        }
        assert!(paths.iter().any(|p| p.starts_with("templates/")));
        assert!(paths.iter().any(|p| p.starts_with("files/r1/")));
        let install = entries.iter().find(|e| e.path == "hooks/install").unwrap();
        assert_eq!(install.content, Content::Symlink("../dispatch".into()));
    }
}
