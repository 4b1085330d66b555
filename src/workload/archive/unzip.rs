//! Zip: entries from the central directory, checked against its own count
//! (names listed twice collapse in the zip crate), then handed to the
//! staging rules.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use super::staging::*;
use super::*;

pub(super) fn extract_zip(mut file: File, staging: &mut Staging<'_>) -> Result<(), ArchiveError> {
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
pub(super) fn zip_listed_entry_count(file: &mut File) -> io::Result<Option<u64>> {
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
