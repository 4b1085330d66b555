//! Tar (plain, gzip, bzip2, xz): entries read in raw mode, so that GNU
//! long-name and pax records are read here with a bound instead of whole
//! into memory, then handed to the staging rules.

use std::io::{self, Read};

use super::staging::*;
use super::*;

/// Longest GNU long-name or pax record we accept. The tar crate would read
/// these into memory whole, whatever their size, so we read them ourselves
/// (in raw mode) with this bound.
pub(super) const MAX_TAR_METADATA_RECORD: u64 = 64 * 1024;

/// Names and sizes that GNU long-name and pax records set for the entry
/// that follows them.
#[derive(Default)]
pub(super) struct PendingTarMetadata {
    gnu_long_name: Option<Vec<u8>>,
    gnu_long_link: Option<Vec<u8>>,
    pax_path: Option<Vec<u8>>,
    pax_link_path: Option<Vec<u8>>,
    pax_size: Option<u64>,
}

impl PendingTarMetadata {
    /// Reads one metadata record into `self`; `Ok(false)` when the entry is
    /// not a metadata record.
    pub(super) fn absorb<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<bool, ArchiveError> {
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
    pub(super) fn choose(
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

pub(super) fn extract_tar(
    reader: impl Read,
    staging: &mut Staging<'_>,
) -> Result<(), ArchiveError> {
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
