//! The staging rules: what an entry may be and where it may go, whatever
//! format it came in. Every entry of either format goes through
//! [`Staging::add`], which keeps the table of what this extraction created
//! and refuses what the `archive` module's documentation lists.

use std::collections::HashMap;
use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::*;

/// One entry, as either format describes it.
pub(super) enum EntryKind<'r> {
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
pub(super) enum Node {
    /// `explicit`: the archive had an entry for it (rather than it being
    /// made as the parent of one). A second explicit entry is a duplicate.
    Directory {
        explicit: bool,
    },
    File,
    Symlink,
}

/// The staging directory and everything this extraction put in it.
pub(super) struct Staging<'l> {
    root: PathBuf,
    pub(super) limits: &'l ExtractLimits,
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
    pub(super) fn new(root: &Path, limits: &'l ExtractLimits) -> Result<Self, ArchiveError> {
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
    pub(super) fn count_entry(&mut self) -> Result<(), ArchiveError> {
        self.entries_seen += 1;
        if self.entries_seen > self.limits.max_entries {
            return Err(ArchiveError::TooManyEntries {
                limit: self.limits.max_entries,
            });
        }
        Ok(())
    }

    pub(super) fn unpacked_so_far(&self) -> u64 {
        self.report.bytes.saturating_add(self.discarded_bytes)
    }

    pub(super) fn charge_discarded(&mut self, bytes: u64) -> Result<(), ArchiveError> {
        self.discarded_bytes = self.discarded_bytes.saturating_add(bytes);
        if self.unpacked_so_far() > self.limits.max_unpacked_bytes {
            return Err(ArchiveError::TooLarge {
                limit: self.limits.max_unpacked_bytes,
            });
        }
        Ok(())
    }

    /// Creates one entry; `name` has passed [`entry_name`].
    pub(super) fn add(
        &mut self,
        name: &str,
        mode: u32,
        kind: EntryKind<'_>,
    ) -> Result<(), ArchiveError> {
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
    pub(super) fn make_parents(&mut self, name: &str, parts: &[&str]) -> Result<(), ArchiveError> {
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

    pub(super) fn write_file(
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
    pub(super) fn hardlink_source(
        &self,
        name: &str,
        raw_target: &[u8],
    ) -> Result<String, ArchiveError> {
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

    pub(super) fn finish(mut self) -> ExtractReport {
        let mut top_level = self.nodes.iter().filter(|(path, _)| !path.contains('/'));
        let only = match (top_level.next(), top_level.next()) {
            (Some((path, Node::Directory { .. })), None) => Some(path.clone()),
            _ => None,
        };
        self.report.single_top_level = only;
        self.report
    }
}

pub(super) fn refused(name: &str, reason: Refusal) -> ArchiveError {
    ArchiveError::Refused {
        name: name.to_owned(),
        reason,
    }
}

pub(super) fn corrupt(entry: Option<&str>, error: impl std::fmt::Display) -> ArchiveError {
    ArchiveError::Corrupt {
        entry: entry.map(str::to_owned),
        reason: error.to_string(),
    }
}

/// An entry's name as text: it must be UTF-8 (it becomes a path that
/// Python imports and operators read) and free of NUL (which would cut
/// the path short in every C API).
pub(super) fn entry_name(raw: &[u8]) -> Result<String, ArchiveError> {
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
pub(super) fn normalized_components(name: &str) -> Result<Vec<&str>, Refusal> {
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
pub(super) fn symlink_target<'t>(
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

pub(super) fn make_directory(path: &Path) -> io::Result<()> {
    // mkdir fails if anything, a symlink included, is already there.
    DirBuilder::new().mode(0o755).create(path)?;
    fs::set_permissions(path, Permissions::from_mode(0o755))
}
