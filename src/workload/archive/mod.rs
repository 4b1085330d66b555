//! Unpacking a build's archive (tar, tar.gz, tar.bz2, tar.xz, zip) into an
//! empty staging directory, treating the archive as hostile.
//!
//! The charm runs as root, and the archive comes from wherever
//! `code_assets_uri` points. A careless unpacker lets an archive overwrite
//! `/etc/passwd`, plant a setuid binary, or fill the disk. So:
//!
//! - **Nothing is written outside the staging directory.** Entry names are
//!   checked lexically: no absolute paths, no `..` components. The staging
//!   directory must be empty, so every path in it was created by this
//!   extraction and recorded in a table; an entry whose path goes through a
//!   symlink from that table is refused, so the kernel never follows an
//!   archive-made symlink while we write. Files are opened with
//!   `O_CREAT|O_EXCL|O_NOFOLLOW` and directories with `mkdir`, neither of
//!   which follows a symlink in the last component.
//! - **Symlinks stay inside.** A target must be relative, and its `..`
//!   components may only come first (`../../lib/x`, not `a/../../x`), no
//!   more of them than the link has parent directories. Those `..` then
//!   only ever climb real directories made by this extraction, and the rest
//!   of the target only descends: however links chain, resolution stays
//!   inside. (`a/../x` is refused because `a` may itself be a link, and
//!   then `..` is taken from wherever `a` points.)
//! - **Hard links** may only point at a regular file this archive already
//!   extracted.
//! - **No special files and no privilege bits**: device files, FIFOs,
//!   sockets, and setuid/setgid/sticky modes are refused. Files get 0755 if
//!   the archive gave them any execute bit, else 0644; directories get
//!   0755; everything is owned by us (never chowned to the archive's ids).
//! - **Every entry appears once**: an entry that would replace an earlier
//!   one (tar) or a name listed twice (zip) is refused, because which copy
//!   "wins" differs between tools, so what was reviewed need not be what
//!   runs.
//! - **Bounded**: a maximum entry count, a maximum total of unpacked bytes
//!   (counted while streaming, so a decompression bomb stops early; data
//!   decompressed only to be skipped counts too), maximum path lengths, and
//!   a small bound on tar long-name and pax records, which are held in
//!   memory.
//! - **Corrupt or truncated archives are errors**, never a panic and never a
//!   silently shorter file.
//!
//! On error the staging directory holds a partial tree: the caller, which
//! created it, deletes it. A build is either complete or absent.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use crate::workload::fetch::human_bytes;

mod staging;
mod untar;
mod unzip;

use staging::Staging;
use untar::extract_tar;
use unzip::extract_zip;

/// The archive formats the `archive_filename` option may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    TarGz,
    TarBz2,
    TarXz,
    Tar,
    Zip,
}

impl ArchiveFormat {
    /// The format implied by a file name's extension (case-insensitive), or
    /// `None` when it is not one we unpack.
    pub fn from_filename(name: &str) -> Option<ArchiveFormat> {
        const SUFFIXES: [(&str, ArchiveFormat); 9] = [
            (".tar.gz", ArchiveFormat::TarGz),
            (".tgz", ArchiveFormat::TarGz),
            (".tar.bz2", ArchiveFormat::TarBz2),
            (".tar.bzip2", ArchiveFormat::TarBz2),
            (".tbz2", ArchiveFormat::TarBz2),
            (".tar.xz", ArchiveFormat::TarXz),
            (".txz", ArchiveFormat::TarXz),
            (".tar", ArchiveFormat::Tar),
            (".zip", ArchiveFormat::Zip),
        ];
        let lower = name.to_ascii_lowercase();
        SUFFIXES
            .iter()
            .find(|(suffix, _)| lower.ends_with(suffix))
            .map(|&(_, format)| format)
    }
}

/// Bounds on what an archive may unpack to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractLimits {
    /// Entries of any kind, directories and links included.
    pub max_entries: u64,
    /// Total bytes of regular-file content.
    pub max_unpacked_bytes: u64,
    /// Longest path inside the staging directory, in bytes. The full path
    /// (staging directory included) is also kept under PATH_MAX.
    pub max_path_bytes: usize,
}

impl Default for ExtractLimits {
    fn default() -> Self {
        ExtractLimits {
            max_entries: 100_000,
            max_unpacked_bytes: 2 * 1024 * 1024 * 1024,
            max_path_bytes: 3072,
        }
    }
}

/// What an extraction created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractReport {
    pub files: u64,
    /// Directories, including those created implicitly as parents.
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// Bytes of regular-file content written.
    pub bytes: u64,
    /// The one directory everything was unpacked under (`myapp-1.2/`), when
    /// there is exactly one top-level entry and it is a directory.
    pub single_top_level: Option<String>,
}

/// Why an archive could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot open archive {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot extract into {path}: {reason}")]
    Destination { path: PathBuf, reason: String },
    #[error("archive entry {name:?} {reason}")]
    Refused { name: String, reason: Refusal },
    #[error("archive has more than {limit} entries (limit); is it a decompression bomb?")]
    TooManyEntries { limit: u64 },
    #[error("archive unpacks to more than {} (limit); is it a decompression bomb?", human_bytes(*.limit))]
    TooLarge { limit: u64 },
    #[error(
        "zip archive lists {listed} entries but only {distinct} distinct names; \
         an archive with duplicate entries is refused"
    )]
    ZipDuplicateNames { listed: u64, distinct: u64 },
    #[error("archive is corrupt or truncated{}: {reason}",
        .entry.as_ref().map(|e| format!(" (at entry {e:?})")).unwrap_or_default())]
    Corrupt {
        entry: Option<String>,
        reason: String,
    },
    #[error("cannot extract archive entry {name:?}: {source}")]
    Write {
        name: String,
        #[source]
        source: io::Error,
    },
}

/// Why a single entry was refused; shown after `archive entry "<name>"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("is an absolute path")]
    AbsolutePath,
    #[error("escapes the build directory")]
    ParentComponent,
    #[error("goes through {link:?}, a symlink the archive created earlier")]
    ThroughSymlink { link: String },
    #[error("is inside {file:?}, which the archive created as a file")]
    InsideFile { file: String },
    #[error("names the build directory itself")]
    NamesBuildDirectory,
    #[error("is a symlink to the absolute path {target:?}")]
    SymlinkAbsolute { target: String },
    #[error("is a symlink to {target:?}, which is outside the build directory")]
    SymlinkEscapes { target: String },
    #[error(
        "is a symlink to {target:?}, whose \"..\" after a directory name cannot be checked safely"
    )]
    SymlinkClimbsAfterDescending { target: String },
    #[error("is a symlink with an empty or invalid target")]
    SymlinkInvalidTarget,
    #[error("is a hard link to {target:?}, which is outside the build directory")]
    HardlinkEscapes { target: String },
    #[error("is a hard link to {target:?}, which is not a regular file extracted earlier from this archive")]
    HardlinkNotExtractedFile { target: String },
    #[error("is a device file")]
    DeviceFile,
    #[error("is a FIFO (named pipe)")]
    Fifo,
    #[error("is a socket")]
    Socket,
    #[error("has setuid, setgid or sticky bits (mode {mode:04o})")]
    SpecialModeBits { mode: u32 },
    #[error("appears more than once in the archive (a later entry would replace an earlier one)")]
    Duplicate,
    #[error("is not valid UTF-8")]
    NotUtf8,
    #[error("contains a NUL byte")]
    ContainsNul,
    #[error("is {length} bytes long, over the {limit}-byte limit")]
    PathTooLong { length: usize, limit: usize },
    #[error("has a component longer than {NAME_MAX} bytes")]
    ComponentTooLong,
    #[error("is encrypted")]
    Encrypted,
    #[error("has an unsupported type ({kind})")]
    UnsupportedType { kind: String },
}

/// Longest file name Linux file systems accept.
pub(super) const NAME_MAX: usize = 255;
/// Longest path the kernel accepts, terminating NUL included.
pub(super) const PATH_MAX: usize = 4096;

/// Unpacks `archive_path` into `dest_dir`, which must be an existing, empty
/// directory. See the module documentation for what is refused.
pub fn extract(
    archive_path: &Path,
    format: ArchiveFormat,
    dest_dir: &Path,
    limits: &ExtractLimits,
) -> Result<ExtractReport, ArchiveError> {
    let mut staging = Staging::new(dest_dir, limits)?;
    let file = File::open(archive_path).map_err(|source| ArchiveError::Open {
        path: archive_path.to_owned(),
        source,
    })?;
    let buffered = BufReader::with_capacity(64 * 1024, file);
    match format {
        // Multi-member/multi-stream decoders: parallel compressors (pigz,
        // pbzip2, xz -T) write several concatenated streams, all valid.
        ArchiveFormat::TarGz => {
            extract_tar(flate2::read::MultiGzDecoder::new(buffered), &mut staging)?
        }
        ArchiveFormat::TarBz2 => {
            extract_tar(bzip2::read::MultiBzDecoder::new(buffered), &mut staging)?
        }
        ArchiveFormat::TarXz => extract_tar(
            liblzma::read::XzDecoder::new_multi_decoder(buffered),
            &mut staging,
        )?,
        ArchiveFormat::Tar => extract_tar(buffered, &mut staging)?,
        ArchiveFormat::Zip => extract_zip(buffered.into_inner(), &mut staging)?,
    }
    Ok(staging.finish())
}

#[cfg(test)]
mod tests {
    use super::staging::*;
    use super::*;

    #[test]
    fn formats_are_recognised_by_extension_in_any_case() {
        let cases = [
            ("app.tar.gz", Some(ArchiveFormat::TarGz)),
            ("APP.TGZ", Some(ArchiveFormat::TarGz)),
            ("app.tar.bz2", Some(ArchiveFormat::TarBz2)),
            ("app.tar.bzip2", Some(ArchiveFormat::TarBz2)),
            ("app.tbz2", Some(ArchiveFormat::TarBz2)),
            ("app.tar.xz", Some(ArchiveFormat::TarXz)),
            ("app.txz", Some(ArchiveFormat::TarXz)),
            ("app.tar", Some(ArchiveFormat::Tar)),
            ("app.zip", Some(ArchiveFormat::Zip)),
            ("app.rar", None),
            ("app.gz", None),
            ("app.tar.zst", None),
            ("tar", None),
        ];
        for (name, expected) in cases {
            assert_eq!(ArchiveFormat::from_filename(name), expected, "{name}");
        }
    }

    #[test]
    fn components_drop_dots_and_empties_and_refuse_escapes() {
        assert_eq!(
            normalized_components("./a//b/./c/").unwrap(),
            vec!["a", "b", "c"]
        );
        assert_eq!(normalized_components("./").unwrap(), Vec::<&str>::new());
        assert_eq!(
            normalized_components("/etc/passwd"),
            Err(Refusal::AbsolutePath)
        );
        assert_eq!(
            normalized_components("a/../../etc"),
            Err(Refusal::ParentComponent)
        );
        // ".." inside a name is just a name.
        assert_eq!(
            normalized_components("a..b/..c").unwrap(),
            vec!["a..b", "..c"]
        );
        assert_eq!(
            normalized_components(&"x".repeat(256)),
            Err(Refusal::ComponentTooLong)
        );
    }

    fn symlink_verdict(link: &str, target: &str) -> Result<(), String> {
        let parts = normalized_components(link).unwrap();
        symlink_target(link, &parts, target.as_bytes())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn symlink_targets_may_climb_only_as_far_as_the_link_is_deep() {
        assert!(symlink_verdict("a/b/link", "../../top.py").is_ok());
        assert!(symlink_verdict("a/link", "sibling/x").is_ok());
        assert!(symlink_verdict("a/link", "./.").is_ok());
        assert!(symlink_verdict("a/link", "..").is_ok());
        let escape = symlink_verdict("a/link", "../../etc").unwrap_err();
        assert!(escape.contains("outside the build directory"), "{escape}");
        let top = symlink_verdict("link", "..").unwrap_err();
        assert!(top.contains("outside the build directory"), "{top}");
        let absolute = symlink_verdict("link", "/etc/shadow").unwrap_err();
        assert!(absolute.contains("absolute path"), "{absolute}");
        // "x/.." only stays put if x is a real directory, which a later
        // entry could make untrue; refused rather than guessed.
        let backtrack = symlink_verdict("a/b/link", "x/../y").unwrap_err();
        assert!(
            backtrack.contains("cannot be checked safely"),
            "{backtrack}"
        );
        assert!(symlink_verdict("link", "").is_err());
    }

    #[test]
    fn sizes_are_shown_in_binary_units() {
        assert_eq!(human_bytes(2 * 1024 * 1024 * 1024), "2 GiB");
        assert_eq!(human_bytes(10 * 1024 * 1024), "10 MiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(512), "512 bytes");
    }

    #[test]
    fn error_messages_name_the_entry_and_the_reason() {
        let error = refused("../../etc/passwd", Refusal::ParentComponent);
        assert_eq!(
            error.to_string(),
            r#"archive entry "../../etc/passwd" escapes the build directory"#
        );
        let bomb = ArchiveError::TooLarge {
            limit: 2 * 1024 * 1024 * 1024,
        };
        assert_eq!(
            bomb.to_string(),
            "archive unpacks to more than 2 GiB (limit); is it a decompression bomb?"
        );
    }
}
