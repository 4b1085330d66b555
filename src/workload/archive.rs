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

use std::collections::HashMap;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::workload::fetch::human_bytes;

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
const NAME_MAX: usize = 255;
/// Longest path the kernel accepts, terminating NUL included.
const PATH_MAX: usize = 4096;

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

/// One entry, as either format describes it.
enum EntryKind<'r> {
    Directory,
    File {
        content: &'r mut dyn Read,
        declared_size: u64,
    },
    Symlink {
        target: Vec<u8>,
    },
    Hardlink {
        target: Vec<u8>,
    },
}

/// What the extraction has created at a path so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    /// `explicit`: the archive had an entry for it (rather than it being
    /// made as the parent of one). A second explicit entry is a duplicate.
    Directory {
        explicit: bool,
    },
    File,
    Symlink,
}

/// The staging directory and everything this extraction put in it.
struct Staging<'l> {
    root: PathBuf,
    limits: &'l ExtractLimits,
    /// Effective path limit: the configured one, or less when the staging
    /// directory's own path leaves less room under PATH_MAX.
    max_relative_path: usize,
    /// Normalized relative path ("app/lib/x.py") → what is there. Since the
    /// directory started empty, this is the whole truth about its contents.
    nodes: HashMap<String, Node>,
    entries_seen: u64,
    /// Bytes decompressed only to be skipped (data attached to non-file
    /// entries); they count against `max_unpacked_bytes` too.
    discarded_bytes: u64,
    report: ExtractReport,
}

impl<'l> Staging<'l> {
    fn new(root: &Path, limits: &'l ExtractLimits) -> Result<Self, ArchiveError> {
        let unusable = |reason: String| ArchiveError::Destination {
            path: root.to_owned(),
            reason,
        };
        let metadata = fs::symlink_metadata(root).map_err(|e| unusable(e.to_string()))?;
        if !metadata.is_dir() {
            return Err(unusable("it is not a directory".to_owned()));
        }
        let mut listing = fs::read_dir(root).map_err(|e| unusable(e.to_string()))?;
        if listing.next().is_some() {
            // Our safety argument rests on knowing every path in it.
            return Err(unusable(
                "it is not empty; extraction needs an empty staging directory".to_owned(),
            ));
        }
        let room_under_path_max = PATH_MAX
            .saturating_sub(1)
            .saturating_sub(root.as_os_str().len() + 1);
        Ok(Staging {
            root: root.to_owned(),
            limits,
            max_relative_path: limits.max_path_bytes.min(room_under_path_max),
            nodes: HashMap::new(),
            entries_seen: 0,
            discarded_bytes: 0,
            report: ExtractReport::default(),
        })
    }

    /// Counts an entry against `max_entries`; called before anything else
    /// is done with it, so even skipped and refused entries count.
    fn count_entry(&mut self) -> Result<(), ArchiveError> {
        self.entries_seen += 1;
        if self.entries_seen > self.limits.max_entries {
            return Err(ArchiveError::TooManyEntries {
                limit: self.limits.max_entries,
            });
        }
        Ok(())
    }

    fn unpacked_so_far(&self) -> u64 {
        self.report.bytes.saturating_add(self.discarded_bytes)
    }

    fn charge_discarded(&mut self, bytes: u64) -> Result<(), ArchiveError> {
        self.discarded_bytes = self.discarded_bytes.saturating_add(bytes);
        if self.unpacked_so_far() > self.limits.max_unpacked_bytes {
            return Err(ArchiveError::TooLarge {
                limit: self.limits.max_unpacked_bytes,
            });
        }
        Ok(())
    }

    /// Creates one entry; `name` has passed [`entry_name`].
    fn add(&mut self, name: &str, mode: u32, kind: EntryKind<'_>) -> Result<(), ArchiveError> {
        let refuse = |reason| refused(name, reason);
        if mode & 0o7000 != 0 {
            return Err(refuse(Refusal::SpecialModeBits {
                mode: mode & 0o7777,
            }));
        }
        let parts = normalized_components(name).map_err(refuse)?;
        let relative = parts.join("/");
        if relative.len() > self.max_relative_path {
            return Err(refuse(Refusal::PathTooLong {
                length: relative.len(),
                limit: self.max_relative_path,
            }));
        }
        if parts.is_empty() {
            // "./" is how many tars name the top directory: nothing to do.
            return match kind {
                EntryKind::Directory => Ok(()),
                _ => Err(refuse(Refusal::NamesBuildDirectory)),
            };
        }
        self.make_parents(name, &parts)?;

        let is_directory = matches!(kind, EntryKind::Directory);
        match self.nodes.get(&relative) {
            None => {}
            Some(Node::Directory { explicit: false }) if is_directory => {
                // A zip may list a directory after files inside it.
                self.nodes
                    .insert(relative, Node::Directory { explicit: true });
                return Ok(());
            }
            Some(_) => return Err(refuse(Refusal::Duplicate)),
        }

        let target_path = self.root.join(&relative);
        let write_error = |source| ArchiveError::Write {
            name: name.to_owned(),
            source,
        };
        let node = match kind {
            EntryKind::Directory => {
                make_directory(&target_path).map_err(write_error)?;
                self.report.dirs += 1;
                Node::Directory { explicit: true }
            }
            EntryKind::File {
                content,
                declared_size,
            } => {
                self.write_file(name, &target_path, mode, content, declared_size)?;
                self.report.files += 1;
                Node::File
            }
            EntryKind::Symlink { target } => {
                let target = symlink_target(name, &parts, &target)?;
                std::os::unix::fs::symlink(target, &target_path).map_err(write_error)?;
                self.report.symlinks += 1;
                Node::Symlink
            }
            EntryKind::Hardlink { target } => {
                let existing = self.hardlink_source(name, &target)?;
                // link(2) does not follow a symlink at the source, and the
                // table says the source is a regular file we wrote anyway.
                fs::hard_link(self.root.join(existing), &target_path).map_err(write_error)?;
                self.report.hardlinks += 1;
                Node::File
            }
        };
        self.nodes.insert(relative, node);
        Ok(())
    }

    /// Makes the missing parent directories of an entry, refusing to go
    /// through anything that is not a directory this extraction made.
    fn make_parents(&mut self, name: &str, parts: &[&str]) -> Result<(), ArchiveError> {
        let mut prefix = String::new();
        for part in &parts[..parts.len() - 1] {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            match self.nodes.get(&prefix) {
                Some(Node::Directory { .. }) => {}
                Some(Node::Symlink) => {
                    return Err(refused(
                        name,
                        Refusal::ThroughSymlink {
                            link: prefix.clone(),
                        },
                    ))
                }
                Some(Node::File) => {
                    return Err(refused(
                        name,
                        Refusal::InsideFile {
                            file: prefix.clone(),
                        },
                    ))
                }
                None => {
                    make_directory(&self.root.join(&prefix)).map_err(|source| {
                        ArchiveError::Write {
                            name: name.to_owned(),
                            source,
                        }
                    })?;
                    self.report.dirs += 1;
                    self.nodes
                        .insert(prefix.clone(), Node::Directory { explicit: false });
                }
            }
        }
        Ok(())
    }

    fn write_file(
        &mut self,
        name: &str,
        path: &Path,
        archive_mode: u32,
        content: &mut dyn Read,
        declared_size: u64,
    ) -> Result<(), ArchiveError> {
        let limit = self.limits.max_unpacked_bytes;
        // Refuse up front when the header already admits to too much...
        if self.unpacked_so_far().saturating_add(declared_size) > limit {
            return Err(ArchiveError::TooLarge { limit });
        }
        let write_error = |source| ArchiveError::Write {
            name: name.to_owned(),
            source,
        };
        // Keep "is it executable" and nothing else from the archive's mode.
        let mode = if archive_mode & 0o111 != 0 {
            0o755
        } else {
            0o644
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .mode(mode)
            .open(path)
            .map_err(write_error)?;
        // The umask may have taken bits away from `mode`; set it exactly.
        file.set_permissions(Permissions::from_mode(mode))
            .map_err(write_error)?;

        // ...and count while streaming, because headers can lie.
        let mut buffer = vec![0u8; 64 * 1024];
        let mut written: u64 = 0;
        loop {
            let n = match content.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(corrupt(Some(name), e)),
            };
            if self.unpacked_so_far() + n as u64 > limit {
                return Err(ArchiveError::TooLarge { limit });
            }
            file.write_all(&buffer[..n]).map_err(write_error)?;
            self.report.bytes += n as u64;
            written += n as u64;
        }
        if written != declared_size {
            return Err(ArchiveError::Corrupt {
                entry: Some(name.to_owned()),
                reason: format!("the entry holds {written} bytes but declares {declared_size}"),
            });
        }
        Ok(())
    }

    /// The relative path of the file a hard link entry points at.
    fn hardlink_source(&self, name: &str, raw_target: &[u8]) -> Result<String, ArchiveError> {
        let shown = String::from_utf8_lossy(raw_target).into_owned();
        let escapes = || {
            refused(
                name,
                Refusal::HardlinkEscapes {
                    target: shown.clone(),
                },
            )
        };
        let target = std::str::from_utf8(raw_target).map_err(|_| escapes())?;
        if target.contains('\0') {
            return Err(escapes());
        }
        let parts = normalized_components(target).map_err(|_| escapes())?;
        let relative = parts.join("/");
        match self.nodes.get(&relative) {
            Some(Node::File) => Ok(relative),
            _ => Err(refused(
                name,
                Refusal::HardlinkNotExtractedFile { target: shown },
            )),
        }
    }

    fn finish(mut self) -> ExtractReport {
        let mut top_level = self.nodes.iter().filter(|(path, _)| !path.contains('/'));
        let only = match (top_level.next(), top_level.next()) {
            (Some((path, Node::Directory { .. })), None) => Some(path.clone()),
            _ => None,
        };
        self.report.single_top_level = only;
        self.report
    }
}

fn refused(name: &str, reason: Refusal) -> ArchiveError {
    ArchiveError::Refused {
        name: name.to_owned(),
        reason,
    }
}

fn corrupt(entry: Option<&str>, error: impl std::fmt::Display) -> ArchiveError {
    ArchiveError::Corrupt {
        entry: entry.map(str::to_owned),
        reason: error.to_string(),
    }
}

/// An entry's name as text: it must be UTF-8 (it becomes a path that
/// Python imports and operators read) and free of NUL (which would cut
/// the path short in every C API).
fn entry_name(raw: &[u8]) -> Result<String, ArchiveError> {
    let shown = || String::from_utf8_lossy(raw).into_owned();
    let name = std::str::from_utf8(raw).map_err(|_| refused(&shown(), Refusal::NotUtf8))?;
    if name.contains('\0') {
        return Err(refused(name, Refusal::ContainsNul));
    }
    Ok(name.to_owned())
}

/// The path's components with "" and "." dropped; absolute paths and ".."
/// are refused outright rather than resolved, since no honest build
/// archive needs them.
fn normalized_components(name: &str) -> Result<Vec<&str>, Refusal> {
    if name.starts_with('/') {
        return Err(Refusal::AbsolutePath);
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(Refusal::ParentComponent),
            _ if part.len() > NAME_MAX => return Err(Refusal::ComponentTooLong),
            _ => parts.push(part),
        }
    }
    Ok(parts)
}

/// Checks a symlink's target (see the module doc for why this rule is
/// enough) and returns it as written in the archive.
fn symlink_target<'t>(
    name: &str,
    link_parts: &[&str],
    raw_target: &'t [u8],
) -> Result<&'t str, ArchiveError> {
    let target = match std::str::from_utf8(raw_target) {
        Ok(t) if !t.is_empty() && !t.contains('\0') && t.len() < PATH_MAX => t,
        _ => return Err(refused(name, Refusal::SymlinkInvalidTarget)),
    };
    let owned = || target.to_owned();
    if target.starts_with('/') {
        return Err(refused(name, Refusal::SymlinkAbsolute { target: owned() }));
    }
    // The link's directory is `link_parts` minus its own name.
    let depth = link_parts.len() - 1;
    let mut climbs = 0;
    let mut descended = false;
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." if descended => {
                return Err(refused(
                    name,
                    Refusal::SymlinkClimbsAfterDescending { target: owned() },
                ))
            }
            ".." => {
                climbs += 1;
                if climbs > depth {
                    return Err(refused(name, Refusal::SymlinkEscapes { target: owned() }));
                }
            }
            _ => descended = true,
        }
    }
    Ok(target)
}

fn make_directory(path: &Path) -> io::Result<()> {
    // mkdir fails if anything, a symlink included, is already there.
    DirBuilder::new().mode(0o755).create(path)?;
    fs::set_permissions(path, Permissions::from_mode(0o755))
}

/// Longest GNU long-name or pax record we accept. The tar crate would read
/// these into memory whole, whatever their size, so we read them ourselves
/// (in raw mode) with this bound.
const MAX_TAR_METADATA_RECORD: u64 = 64 * 1024;

/// Names and sizes that GNU long-name and pax records set for the entry
/// that follows them.
#[derive(Default)]
struct PendingTarMetadata {
    gnu_long_name: Option<Vec<u8>>,
    gnu_long_link: Option<Vec<u8>>,
    pax_path: Option<Vec<u8>>,
    pax_link_path: Option<Vec<u8>>,
    pax_size: Option<u64>,
}

impl PendingTarMetadata {
    /// Reads one metadata record into `self`; `Ok(false)` when the entry is
    /// not a metadata record.
    fn absorb<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<bool, ArchiveError> {
        let entry_type = entry.header().entry_type();
        let is_metadata = entry_type.is_gnu_longname()
            || entry_type.is_gnu_longlink()
            || entry_type.is_pax_local_extensions();
        if !is_metadata {
            return Ok(false);
        }
        if entry.size() > MAX_TAR_METADATA_RECORD {
            return Err(corrupt(
                None,
                format!(
                    "a {} byte long-name or pax record (limit {})",
                    entry.size(),
                    human_bytes(MAX_TAR_METADATA_RECORD)
                ),
            ));
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data).map_err(|e| corrupt(None, e))?;
        let twice = || corrupt(None, "two metadata records of one kind for one entry");
        if entry_type.is_gnu_longname() || entry_type.is_gnu_longlink() {
            // GNU stores the name NUL-terminated.
            while data.last() == Some(&0) {
                data.pop();
            }
            let slot = if entry_type.is_gnu_longname() {
                &mut self.gnu_long_name
            } else {
                &mut self.gnu_long_link
            };
            if slot.replace(data).is_some() {
                return Err(twice());
            }
            return Ok(true);
        }
        if self.pax_path.is_some() || self.pax_link_path.is_some() || self.pax_size.is_some() {
            return Err(twice());
        }
        for record in tar::PaxExtensions::new(&data) {
            let record = record.map_err(|e| corrupt(None, format!("bad pax record: {e}")))?;
            match record.key_bytes() {
                b"path" => self.pax_path = Some(record.value_bytes().to_vec()),
                b"linkpath" => self.pax_link_path = Some(record.value_bytes().to_vec()),
                b"size" => {
                    let size = record
                        .value()
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| corrupt(None, "bad pax size record"))?;
                    self.pax_size = Some(size);
                }
                // Times, owners, xattrs: nothing we apply.
                _ => {}
            }
        }
        Ok(true)
    }

    /// The name to use: pax wins (POSIX), but a GNU long name that says
    /// something else makes the entry ambiguous between tools.
    fn choose(
        pax: Option<Vec<u8>>,
        gnu: Option<Vec<u8>>,
        header: Option<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>, ArchiveError> {
        match (pax, gnu) {
            (Some(pax), Some(gnu)) if pax != gnu => Err(corrupt(
                Some(&String::from_utf8_lossy(&pax)),
                "its pax and GNU long names disagree",
            )),
            (Some(name), _) | (None, Some(name)) => Ok(Some(name)),
            (None, None) => Ok(header),
        }
    }
}

fn extract_tar(reader: impl Read, staging: &mut Staging<'_>) -> Result<(), ArchiveError> {
    let mut archive = tar::Archive::new(reader);
    // Raw mode: long-name and pax records come to us (see
    // `MAX_TAR_METADATA_RECORD`) instead of being read into memory unbounded.
    let entries = archive.entries().map_err(|e| corrupt(None, e))?.raw(true);
    let mut previous_name: Option<String> = None;
    let mut pending = PendingTarMetadata::default();
    for entry in entries {
        // A bad header is reported against the last good entry: the
        // nearest thing to a location a tar has.
        let mut entry = entry.map_err(|e| match &previous_name {
            Some(prev) => corrupt(None, format!("after entry {prev:?}: {e}")),
            None => corrupt(None, e),
        })?;
        staging.count_entry()?;
        if pending.absorb(&mut entry)? {
            continue;
        }
        let entry_type = entry.header().entry_type();
        let declared_size = entry.size();
        let is_regular = matches!(
            entry_type,
            tar::EntryType::Regular | tar::EntryType::Continuous
        );
        if !is_regular {
            // The tar reader decompresses and discards any data a
            // non-file entry claims to have: bound that work as well.
            staging.charge_discarded(declared_size)?;
        }
        if entry_type == tar::EntryType::XGlobalHeader {
            // pax global metadata (e.g. `git archive`'s commit id), not a file.
            continue;
        }
        let metadata = std::mem::take(&mut pending);
        let raw_name = PendingTarMetadata::choose(
            metadata.pax_path,
            metadata.gnu_long_name,
            Some(entry.path_bytes().into_owned()),
        )?
        .unwrap_or_default();
        let name = entry_name(&raw_name)?;
        let link_target = PendingTarMetadata::choose(
            metadata.pax_link_path,
            metadata.gnu_long_link,
            entry.link_name_bytes().map(|t| t.into_owned()),
        )?;
        if metadata.pax_size.is_some_and(|size| size != declared_size) {
            // Only files over 8 GiB need a pax size, far above our limit.
            return Err(corrupt(
                Some(&name),
                "its pax size differs from its header size",
            ));
        }
        let mode = entry.header().mode().map_err(|e| corrupt(Some(&name), e))?;
        let kind = match entry_type {
            tar::EntryType::Directory => EntryKind::Directory,
            // Old tars mark directories as regular files ending in '/'.
            _ if is_regular && name.ends_with('/') => EntryKind::Directory,
            _ if is_regular => EntryKind::File {
                content: &mut entry,
                declared_size,
            },
            tar::EntryType::Symlink => EntryKind::Symlink {
                target: link_target.unwrap_or_default(),
            },
            tar::EntryType::Link => EntryKind::Hardlink {
                target: link_target.unwrap_or_default(),
            },
            tar::EntryType::Char | tar::EntryType::Block => {
                return Err(refused(&name, Refusal::DeviceFile))
            }
            tar::EntryType::Fifo => return Err(refused(&name, Refusal::Fifo)),
            other => {
                return Err(refused(
                    &name,
                    Refusal::UnsupportedType {
                        kind: format!("tar {other:?}"),
                    },
                ))
            }
        };
        staging.add(&name, mode, kind)?;
        previous_name = Some(name);
    }
    // Read the stream to its end: a compressed stream's trailer holds its
    // checksum (gzip CRC32 and length, bzip2 stream CRC, xz check), and an
    // archive cut short there must be an error, not an install. What is
    // left after the tar's end counts against the unpacked limit.
    let mut rest = archive.into_inner();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match rest.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => staging.charge_discarded(n as u64)?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let at = previous_name.map(|p| format!("after entry {p:?}: "));
                return Err(corrupt(None, format!("{}{e}", at.unwrap_or_default())));
            }
        }
    }
    Ok(())
}

fn extract_zip(mut file: File, staging: &mut Staging<'_>) -> Result<(), ArchiveError> {
    // The zip crate keeps one entry per name, so names listed twice would
    // silently collapse; compare its count with the central directory's.
    let listed = zip_listed_entry_count(&mut file).map_err(|e| corrupt(None, e))?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| corrupt(None, e))?;
    let mut archive = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| corrupt(None, e))?;
    let distinct = archive.len() as u64;
    if let Some(listed) = listed {
        if listed > staging.limits.max_entries {
            return Err(ArchiveError::TooManyEntries {
                limit: staging.limits.max_entries,
            });
        }
        if listed > distinct {
            return Err(ArchiveError::ZipDuplicateNames { listed, distinct });
        }
    }
    for index in 0..archive.len() {
        staging.count_entry()?;
        let (raw_name, encrypted) = {
            let entry = archive.by_index_raw(index).map_err(|e| corrupt(None, e))?;
            (entry.name_raw().to_vec(), entry.encrypted())
        };
        let name = entry_name(&raw_name)?;
        if encrypted {
            return Err(refused(&name, Refusal::Encrypted));
        }
        let mut entry = archive
            .by_index(index)
            .map_err(|e| corrupt(Some(&name), e))?;
        // Archives made on Unix carry st_mode in the top half of the
        // external attributes; others carry none, and are plain files and
        // directories.
        let mode = entry.unix_mode().unwrap_or(0);
        let declared_size = entry.size();
        let kind = match mode & libc::S_IFMT {
            libc::S_IFDIR => EntryKind::Directory,
            0 | libc::S_IFREG if name.ends_with('/') => EntryKind::Directory,
            0 | libc::S_IFREG => EntryKind::File {
                content: &mut entry,
                declared_size,
            },
            libc::S_IFLNK => {
                // A zip symlink's target is its content; bound the read.
                let mut target = Vec::new();
                (&mut entry)
                    .take(PATH_MAX as u64)
                    .read_to_end(&mut target)
                    .map_err(|e| corrupt(Some(&name), e))?;
                EntryKind::Symlink { target }
            }
            libc::S_IFCHR | libc::S_IFBLK => return Err(refused(&name, Refusal::DeviceFile)),
            libc::S_IFIFO => return Err(refused(&name, Refusal::Fifo)),
            libc::S_IFSOCK => return Err(refused(&name, Refusal::Socket)),
            other => {
                return Err(refused(
                    &name,
                    Refusal::UnsupportedType {
                        kind: format!("zip file type {other:o}"),
                    },
                ))
            }
        };
        staging.add(&name, mode & 0o7777, kind)?;
    }
    Ok(())
}

/// The number of entries the zip's end-of-central-directory record lists,
/// or `None` when the record cannot be located unambiguously (the zip
/// crate then decides whether the archive is readable at all).
fn zip_listed_entry_count(file: &mut File) -> io::Result<Option<u64>> {
    const EOCD_SIGNATURE: [u8; 4] = [0x50, 0x4b, 0x05, 0x06];
    const ZIP64_LOCATOR_SIGNATURE: [u8; 4] = [0x50, 0x4b, 0x06, 0x07];
    const ZIP64_EOCD_SIGNATURE: [u8; 4] = [0x50, 0x4b, 0x06, 0x06];
    const EOCD_LEN: usize = 22;
    const ZIP64_LOCATOR_LEN: usize = 20;

    let file_len = file.metadata()?.len();
    let tail_len = file_len.min((EOCD_LEN + u16::MAX as usize) as u64);
    file.seek(SeekFrom::Start(file_len - tail_len))?;
    let mut tail = vec![0u8; tail_len as usize];
    file.read_exact(&mut tail)?;

    let u16_at = |buf: &[u8], at: usize| u16::from_le_bytes([buf[at], buf[at + 1]]);
    let Some(eocd) = (0..=tail.len().saturating_sub(EOCD_LEN))
        .rev()
        .find(|&pos| {
            tail.len() >= EOCD_LEN
                && tail[pos..pos + 4] == EOCD_SIGNATURE
                && pos + EOCD_LEN + u16_at(&tail, pos + 20) as usize == tail.len()
        })
    else {
        return Ok(None);
    };
    let total = u16_at(&tail, eocd + 10);
    if total != u16::MAX {
        return Ok(Some(u64::from(total)));
    }
    // Zip64: the real count is in the zip64 record the locator points at.
    let Some(locator) = eocd.checked_sub(ZIP64_LOCATOR_LEN) else {
        return Ok(None);
    };
    if tail[locator..locator + 4] != ZIP64_LOCATOR_SIGNATURE {
        return Ok(None);
    }
    let mut offset = [0u8; 8];
    offset.copy_from_slice(&tail[locator + 8..locator + 16]);
    let zip64_eocd = u64::from_le_bytes(offset);
    let mut record = [0u8; 40];
    file.seek(SeekFrom::Start(zip64_eocd))?;
    if file.read_exact(&mut record).is_err() || record[..4] != ZIP64_EOCD_SIGNATURE {
        return Ok(None);
    }
    let mut count = [0u8; 8];
    count.copy_from_slice(&record[32..40]);
    Ok(Some(u64::from_le_bytes(count)))
}

#[cfg(test)]
mod tests {
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
