//! `cargo xtask pack`: the wsgi-app charm as a `.charm` for real Juju.
//!
//! A `.charm` is a zip that Juju unpacks keeping unix modes and relative
//! symlinks (shared/reference/ops-and-interfaces.md §2.1). We write:
//! the entries [`crate::charm_contents`] lists (the same ones charm-sim lays
//! out), plus a generated manifest.yaml whose `bases` make this a "v2" charm.
//! `dispatch` is the charm binary itself, 0755; `hooks/{install,start,
//! upgrade-charm}` are symlink entries to `../dispatch` for Juju < 2.8, and
//! `actions/<name>` likewise, for an action run as a command (`juju exec`).
//!
//! The zip is deterministic: entries sorted by path, every timestamp
//! 1980-01-01 00:00, modes normalised, no generated dates in the manifest.
//! The same tree and binary always give the same bytes, so a sha256 names a
//! charm.
//!
//! Before writing anything, the binary must run on every base we claim: its
//! newest `GLIBC_x.y` symbol version may not exceed Ubuntu 22.04's glibc.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use super::elf::{self, GlibcVersion};
use crate::charm_contents::{self, Content, Entry};
use crate::schema::CharmMeta;

/// The Ubuntu releases the charm runs on: each packed charm lists both.
pub const BASE_CHANNELS: [&str; 2] = ["22.04", "24.04"];

/// The architectures we build for (charmcraft.yaml's platforms; `cargo
/// xtask pack` builds the one it is asked for).
pub const ARCHITECTURES: [&str; 2] = ["amd64", "arm64"];

/// glibc of the oldest base (Ubuntu 22.04 ships 2.35): the binary may need
/// no newer symbol version than this.
pub const OLDEST_BASE_GLIBC: &str = "2.35";

/// manifest.yaml: what charmcraft would write, with our own provenance
/// field instead of `charmcraft-version`/`charmcraft-started-at` (a start
/// time would make every pack differ). Juju reads only `bases`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Manifest {
    pub packed_by: String,
    pub bases: Vec<ManifestBase>,
    pub analysis: Analysis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestBase {
    pub name: String,
    pub channel: String,
    pub architectures: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Analysis {
    pub attributes: Vec<AnalysisAttribute>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalysisAttribute {
    pub name: String,
    pub result: String,
}

impl Manifest {
    /// The manifest of a charm whose binary is built for `arch`.
    pub fn for_arch(arch: &str) -> Manifest {
        let attribute = |name: &str| AnalysisAttribute {
            name: name.into(),
            // Charmcraft's linters know Python and the ops/reactive
            // frameworks; a Rust binary is neither.
            result: "unknown".into(),
        };
        Manifest {
            packed_by: "cargo xtask pack".into(),
            bases: BASE_CHANNELS
                .iter()
                .map(|channel| ManifestBase {
                    name: "ubuntu".into(),
                    channel: channel.to_string(),
                    architectures: vec![arch.into()],
                })
                .collect(),
            analysis: Analysis {
                attributes: vec![attribute("language"), attribute("framework")],
            },
        }
    }

    pub fn to_yaml(&self) -> Result<String, String> {
        let body = serde_yaml_ng::to_string(self)
            .map_err(|e| format!("cannot write manifest.yaml: {e}"))?;
        Ok(format!(
            "# Written by `cargo xtask pack`; Juju reads only `bases`.\n{body}"
        ))
    }
}

/// What [`pack`] wrote.
#[derive(Debug, Clone)]
pub struct Packed {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
    /// The Debian architecture of the binary, as in the file name.
    pub arch: String,
    /// The newest glibc symbol version the binary needs (`None`: static).
    pub glibc: Option<GlibcVersion>,
}

/// Pack the charm of the workspace at `workspace_root`, with `binary` as its
/// dispatch, into `out_dir/<name>_<arch>.charm`. Refuses a binary that needs
/// a newer glibc than the oldest base, and metadata Juju would refuse.
pub fn pack(workspace_root: &Path, binary: &Path, out_dir: &Path) -> Result<Packed, String> {
    let arch = elf::debian_arch(binary)?;
    let glibc = check_glibc(binary)?;
    let name = check_metadata(workspace_root)?;

    let mut entries = charm_contents::from_source(workspace_root, binary)?;
    entries.push(Entry::bytes(
        "manifest.yaml",
        Manifest::for_arch(arch).to_yaml()?,
    ));
    entries.sort_by(|a, b| a.path.cmp(&b.path));

    fs::create_dir_all(out_dir).map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let path = out_dir.join(format!("{name}_{arch}.charm"));
    // Written beside and renamed into place: a failed pack never leaves a
    // truncated charm where the last good one was.
    let partial = out_dir.join(format!(".{name}_{arch}.charm.partial"));
    let written = write_zip(&entries, &partial);
    if let Err(e) = written {
        let _ = fs::remove_file(&partial);
        return Err(e);
    }
    fs::rename(&partial, &path).map_err(|e| format!("cannot rename to {}: {e}", path.display()))?;
    let bytes = fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(Packed {
        size: bytes.len() as u64,
        sha256: hex(&Sha256::digest(&bytes)),
        path,
        arch: arch.into(),
        glibc,
    })
}

/// The newest glibc version `binary` needs, or an error naming it when it
/// is newer than [`OLDEST_BASE_GLIBC`].
pub fn check_glibc(binary: &Path) -> Result<Option<GlibcVersion>, String> {
    let versions = elf::required_glibc_versions(binary)?;
    glibc_verdict(&binary.display().to_string(), &versions)
}

/// The newest of `versions` (sorted), or why it is too new for the oldest
/// base, naming every symbol version past the limit.
fn glibc_verdict(binary: &str, versions: &[GlibcVersion]) -> Result<Option<GlibcVersion>, String> {
    let newest = versions.last().cloned();
    let limit = GlibcVersion::parse(OLDEST_BASE_GLIBC).expect("a version");
    if let Some(newest) = &newest {
        if *newest > limit {
            let too_new: Vec<String> = versions
                .iter()
                .filter(|v| **v > limit)
                .map(|v| format!("GLIBC_{v}"))
                .collect();
            return Err(format!(
                "{binary} needs glibc {newest} (symbol versions {}), but Ubuntu {} has only \
                 {OLDEST_BASE_GLIBC}; build on an older distribution (Debian 12 or \
                 Ubuntu 22.04) or for a musl target",
                too_new.join(", "),
                BASE_CHANNELS[0]
            ));
        }
    }
    Ok(newest)
}

/// The charm's name, once its YAML passes the checks Juju makes; otherwise
/// every problem they find.
fn check_metadata(workspace_root: &Path) -> Result<String, String> {
    CharmMeta::load(workspace_root)
        .map(|meta| meta.name)
        .map_err(|e| e.to_string())
}

fn write_zip(entries: &[Entry], path: &Path) -> Result<(), String> {
    let file =
        fs::File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let mut zip = ZipWriter::new(std::io::BufWriter::new(file));
    let zip_err = |what: &str, e: zip::result::ZipError| format!("{}: {what}: {e}", path.display());
    // 1980-01-01 00:00, the earliest time a zip can hold: fixed so that
    // packing the same tree twice gives the same bytes.
    let fixed = SimpleFileOptions::default().last_modified_time(DateTime::default());
    for entry in entries {
        match &entry.content {
            Content::Symlink(target) => {
                // add_symlink stores S_IFLNK | 0777 and the target as content.
                zip.add_symlink(&entry.path, target, fixed)
                    .map_err(|e| zip_err(&entry.path, e))?;
            }
            Content::File(source) => {
                zip.start_file(&entry.path, file_options(fixed, entry.mode))
                    .map_err(|e| zip_err(&entry.path, e))?;
                let mut input = fs::File::open(source)
                    .map_err(|e| format!("cannot open {}: {e}", source.display()))?;
                std::io::copy(&mut input, &mut zip)
                    .map_err(|e| format!("cannot add {}: {e}", source.display()))?;
            }
            Content::Bytes(bytes) => {
                zip.start_file(&entry.path, file_options(fixed, entry.mode))
                    .map_err(|e| zip_err(&entry.path, e))?;
                zip.write_all(bytes)
                    .map_err(|e| format!("cannot add {}: {e}", entry.path))?;
            }
        }
    }
    let mut out = zip.finish().map_err(|e| zip_err("finishing", e))?;
    out.flush()
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn file_options(base: SimpleFileOptions, mode: u32) -> SimpleFileOptions {
    base.compression_method(CompressionMethod::Deflated)
        .unix_permissions(mode)
        // The binary is several MB; zip64 only when really needed keeps the
        // archive readable by every unzip.
        .large_file(false)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Read back one entry of a packed charm: its unix mode (file type bits
/// included) and content. For tests and for checking an artifact.
pub fn read_entry(charm: &Path, name: &str) -> Result<(u32, Vec<u8>), String> {
    let file =
        fs::File::open(charm).map_err(|e| format!("cannot open {}: {e}", charm.display()))?;
    let mut zip =
        zip::ZipArchive::new(file).map_err(|e| format!("{}: not a zip: {e}", charm.display()))?;
    let mut entry = zip
        .by_name(name)
        .map_err(|e| format!("{}: {name}: {e}", charm.display()))?;
    let mut content = Vec::new();
    entry
        .read_to_end(&mut content)
        .map_err(|e| format!("{}: {name}: {e}", charm.display()))?;
    Ok((entry.unix_mode().unwrap_or(0), content))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_lists_both_bases_for_one_arch_and_no_series() {
        let yaml = Manifest::for_arch("arm64").to_yaml().unwrap();
        assert!(!yaml.contains("series"), "{yaml}");
        let parsed: Manifest = serde_yaml_ng::from_str(&yaml).unwrap();
        let bases: Vec<(&str, &str, &[String])> = parsed
            .bases
            .iter()
            .map(|b| (b.name.as_str(), b.channel.as_str(), &b.architectures[..]))
            .collect();
        let arm64 = ["arm64".to_string()];
        assert_eq!(
            bases,
            [
                ("ubuntu", "22.04", &arm64[..]),
                ("ubuntu", "24.04", &arm64[..])
            ]
        );
        // Channels stay strings: an unquoted 22.04 would read back as a float.
        let raw: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).unwrap();
        assert!(raw["bases"][0]["channel"].is_string());
    }

    #[test]
    fn a_binary_needing_a_newer_glibc_than_22_04_is_refused() {
        let versions: Vec<GlibcVersion> = ["2.2.5", "2.34", "2.36", "2.38"]
            .iter()
            .map(|v| GlibcVersion::parse(v).unwrap())
            .collect();
        let error = glibc_verdict("dispatch", &versions).unwrap_err();
        assert!(error.contains("needs glibc 2.38"), "{error}");
        assert!(error.contains("GLIBC_2.36, GLIBC_2.38"), "{error}");
        assert!(error.contains("Ubuntu 22.04 has only 2.35"), "{error}");
        let fine = glibc_verdict("dispatch", &versions[..2]).unwrap();
        assert_eq!(fine.unwrap().to_string(), "2.34");
        assert_eq!(glibc_verdict("static", &[]).unwrap(), None);
    }

    #[test]
    fn the_workspace_metadata_passes_juju_checks() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        assert_eq!(check_metadata(&root).unwrap(), "wsgi-app");
    }
}
