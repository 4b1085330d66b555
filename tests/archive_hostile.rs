//! Hostile archives against `workload::archive::extract`: every refusal the
//! module promises, with a check that nothing appeared or changed outside
//! the staging directory; happy paths for every format; and property tests
//! over random entry names.
//!
//! Archives are built here, byte by byte where the tar and zip writers
//! would (rightly) refuse to produce them.
//!
//! Why one file over 600 lines: one case per refusal the module documents,
//! with the byte-level archive builders those cases need.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Cursor, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use proptest::prelude::*;
use tar::{EntryType, Header};
use wsgi_app::workload::archive::{
    extract, ArchiveError, ArchiveFormat, ExtractLimits, ExtractReport,
};
use zip::write::SimpleFileOptions;

// ---------------------------------------------------------------------------
// A temporary layout with a sentinel around the staging directory:
//
//   <tmp>/outer/sentinel.txt   what "../" escapes would hit first
//   <tmp>/outer/staging/       the (empty) extraction target
//
// The archive file itself lives in a separate directory, so that writing
// it does not count as a change around the staging directory.
// ---------------------------------------------------------------------------

struct Layout {
    tmp: tempfile::TempDir,
    archives: tempfile::TempDir,
}

impl Layout {
    fn new() -> Layout {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("outer/staging")).unwrap();
        fs::write(tmp.path().join("outer/sentinel.txt"), b"untouched").unwrap();
        Layout {
            tmp,
            archives: tempfile::tempdir().unwrap(),
        }
    }
    fn root(&self) -> &Path {
        self.tmp.path()
    }
    fn staging(&self) -> PathBuf {
        self.root().join("outer/staging")
    }

    /// Everything under the temporary root except the staging directory:
    /// path → (kind, size, content of small files).
    fn outside_snapshot(&self) -> BTreeMap<PathBuf, String> {
        let mut seen = BTreeMap::new();
        snapshot_into(self.root(), &self.staging(), &mut seen);
        seen
    }

    fn extract_bytes(
        &self,
        archive: &[u8],
        format: ArchiveFormat,
        limits: &ExtractLimits,
    ) -> Result<ExtractReport, ArchiveError> {
        let path = self.archives.path().join("archive.bin");
        fs::write(&path, archive).unwrap();
        extract(&path, format, &self.staging(), limits)
    }
}

fn snapshot_into(dir: &Path, skip: &Path, seen: &mut BTreeMap<PathBuf, String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path == skip {
            continue;
        }
        let meta = fs::symlink_metadata(&path).unwrap();
        let description = if meta.file_type().is_symlink() {
            format!("link -> {:?}", fs::read_link(&path).unwrap())
        } else if meta.is_dir() {
            snapshot_into(&path, skip, seen);
            format!("dir {:o}", meta.mode())
        } else {
            format!(
                "file {:o} {:?}",
                meta.mode(),
                String::from_utf8_lossy(&fs::read(&path).unwrap()[..meta.len().min(64) as usize])
            )
        };
        seen.insert(path, description);
    }
}

/// Extracts `archive` and asserts it is refused with a message containing
/// `expected`, and that nothing outside the staging directory changed.
fn assert_refused(archive: &[u8], format: ArchiveFormat, expected: &str) -> String {
    assert_refused_with(archive, format, &ExtractLimits::default(), expected)
}

fn assert_refused_with(
    archive: &[u8],
    format: ArchiveFormat,
    limits: &ExtractLimits,
    expected: &str,
) -> String {
    let layout = Layout::new();
    let before = layout.outside_snapshot();
    let result = layout.extract_bytes(archive, format, limits);
    let message = match result {
        Ok(report) => panic!("expected refusal containing {expected:?}, got {report:?}"),
        Err(e) => e.to_string(),
    };
    assert!(
        message.contains(expected),
        "message {message:?} should contain {expected:?}"
    );
    assert_eq!(
        before,
        layout.outside_snapshot(),
        "something changed outside the staging directory"
    );
    message
}

// ---------------------------------------------------------------------------
// Tar building, with raw headers so that any name or type can be written.
// ---------------------------------------------------------------------------

enum TarItem<'a> {
    File(&'a [u8], u32, &'a [u8]),
    Dir(&'a [u8]),
    Symlink(&'a [u8], &'a [u8]),
    Hardlink(&'a [u8], &'a [u8]),
    Special(&'a [u8], EntryType, u32),
}

fn raw_header(name: &[u8], entry_type: EntryType, mode: u32, size: u64) -> Header {
    let mut header = Header::new_gnu();
    let field = &mut header.as_old_mut().name;
    assert!(
        name.len() <= field.len(),
        "test names fit the 100-byte field"
    );
    field[..name.len()].copy_from_slice(name);
    header.set_entry_type(entry_type);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_700_000_000);
    header
}

fn tar_bytes(items: &[TarItem<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for item in items {
        let (mut header, data): (Header, &[u8]) = match *item {
            TarItem::File(name, mode, data) => (
                raw_header(name, EntryType::Regular, mode, data.len() as u64),
                data,
            ),
            TarItem::Dir(name) => (raw_header(name, EntryType::Directory, 0o755, 0), &[]),
            TarItem::Symlink(name, target) | TarItem::Hardlink(name, target) => {
                let entry_type = if matches!(item, TarItem::Symlink(..)) {
                    EntryType::Symlink
                } else {
                    EntryType::Link
                };
                let mut header = raw_header(name, entry_type, 0o777, 0);
                header.as_old_mut().linkname[..target.len()].copy_from_slice(target);
                (header, &[])
            }
            TarItem::Special(name, entry_type, mode) => {
                (raw_header(name, entry_type, mode, 0), &[])
            }
        };
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn bzip2(data: &[u8]) -> Vec<u8> {
    let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn xz(data: &[u8]) -> Vec<u8> {
    let mut encoder = liblzma::write::XzEncoder::new(Vec::new(), 1);
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn tar_refused(items: &[TarItem<'_>], expected: &str) -> String {
    assert_refused(&tar_bytes(items), ArchiveFormat::Tar, expected)
}

// ---------------------------------------------------------------------------
// Zip building, with patches for what the writer will not produce.
// ---------------------------------------------------------------------------

enum ZipItem<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
}

fn zip_bytes(items: &[ZipItem<'_>]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);
    for item in items {
        match *item {
            ZipItem::File(name, data) => {
                writer.start_file(name, options).unwrap();
                writer.write_all(data).unwrap();
            }
            ZipItem::Dir(name) => writer.add_directory(name, options).unwrap(),
            ZipItem::Symlink(name, target) => writer.add_symlink(name, target, options).unwrap(),
        }
    }
    writer.finish().unwrap().into_inner()
}

/// Central-directory headers: (offset, name) for each.
fn zip_central_headers(zip: &[u8]) -> Vec<(usize, Vec<u8>)> {
    let mut found = Vec::new();
    let mut at = 0;
    while at + 46 <= zip.len() {
        if zip[at..at + 4] == [0x50, 0x4b, 0x01, 0x02] {
            let name_len = u16::from_le_bytes([zip[at + 28], zip[at + 29]]) as usize;
            found.push((at, zip[at + 46..at + 46 + name_len].to_vec()));
        }
        at += 1;
    }
    found
}

/// Sets the Unix st_mode (file type and permission bits) of entry `name`.
fn set_zip_unix_mode(zip: &mut [u8], name: &str, mode: u32) {
    let (at, _) = zip_central_headers(zip)
        .into_iter()
        .find(|(_, n)| n == name.as_bytes())
        .expect("entry in central directory");
    zip[at + 5] = 3; // "version made by": Unix
    zip[at + 38..at + 42].copy_from_slice(&(mode << 16).to_le_bytes());
}

/// Replaces every occurrence of `from` with `to` (same length): renames an
/// entry in both its local header and the central directory.
fn replace_bytes(data: &mut [u8], from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let mut count = 0;
    let mut at = 0;
    while at + from.len() <= data.len() {
        if &data[at..at + from.len()] == from {
            data[at..at + from.len()].copy_from_slice(to);
            count += 1;
        }
        at += 1;
    }
    assert!(count >= 2, "expected the name in both headers");
}

fn zip_refused(zip: &[u8], expected: &str) -> String {
    assert_refused(zip, ArchiveFormat::Zip, expected)
}

// ---------------------------------------------------------------------------
// Escapes: absolute paths, "..", symlinks, hard links.
// ---------------------------------------------------------------------------

#[test]
fn tar_entries_with_dot_dot_are_refused() {
    let message = tar_refused(
        &[TarItem::File(b"../../evil.txt", 0o644, b"pwned")],
        "escapes the build directory",
    );
    assert_eq!(
        message,
        r#"archive entry "../../evil.txt" escapes the build directory"#
    );
    tar_refused(
        &[
            TarItem::File(b"ok.txt", 0o644, b"fine"),
            TarItem::File(b"app/../../sentinel.txt", 0o644, b"pwned"),
        ],
        "escapes the build directory",
    );
}

#[test]
fn tar_absolute_paths_are_refused() {
    let layout_probe = tempfile::tempdir().unwrap();
    // Aim at a real place so an escape would be visible.
    let target = format!("{}/abs-evil.txt", layout_probe.path().display());
    tar_refused(
        &[TarItem::File(target.as_bytes(), 0o644, b"pwned")],
        "is an absolute path",
    );
    assert!(!Path::new(&target).exists());
}

#[test]
fn tar_entry_through_an_earlier_symlink_is_refused() {
    // The link itself points inside, but writing through it is refused:
    // the path table, not the kernel, decides where an entry lands.
    tar_refused(
        &[
            TarItem::Dir(b"real"),
            TarItem::Symlink(b"shortcut", b"real"),
            TarItem::File(b"shortcut/file.txt", 0o644, b"x"),
        ],
        r#"goes through "shortcut", a symlink the archive created earlier"#,
    );
}

#[test]
fn tar_symlinks_pointing_outside_are_refused() {
    tar_refused(
        &[TarItem::Symlink(b"passwd", b"/etc/passwd")],
        "is a symlink to the absolute path \"/etc/passwd\"",
    );
    tar_refused(
        &[TarItem::Symlink(b"up", b"../sentinel.txt")],
        "which is outside the build directory",
    );
    tar_refused(
        &[TarItem::Symlink(b"a/b/up", b"../../../outer")],
        "which is outside the build directory",
    );
    // The two-step escape: a link to ".", then a link that climbs from it.
    tar_refused(
        &[
            TarItem::Symlink(b"a/here", b".."),
            TarItem::Symlink(b"a/escape", b"here/../.."),
        ],
        "cannot be checked safely",
    );
}

#[test]
fn tar_hardlinks_must_point_at_files_already_extracted() {
    tar_refused(
        &[TarItem::Hardlink(b"h", b"../sentinel.txt")],
        "is a hard link to \"../sentinel.txt\", which is outside the build directory",
    );
    tar_refused(
        &[TarItem::Hardlink(b"h", b"/etc/passwd")],
        "which is outside the build directory",
    );
    tar_refused(
        &[
            TarItem::Hardlink(b"h", b"later.txt"),
            TarItem::File(b"later.txt", 0o644, b"x"),
        ],
        "not a regular file extracted earlier",
    );
    tar_refused(
        &[
            TarItem::File(b"f", 0o644, b"x"),
            TarItem::Symlink(b"s", b"f"),
            TarItem::Hardlink(b"h", b"s"),
        ],
        "not a regular file extracted earlier",
    );
    tar_refused(
        &[TarItem::Dir(b"d"), TarItem::Hardlink(b"h", b"d")],
        "not a regular file extracted earlier",
    );
}

#[test]
fn zip_escapes_are_refused() {
    zip_refused(
        &zip_bytes(&[ZipItem::File("../evil.txt", b"pwned")]),
        "escapes the build directory",
    );
    zip_refused(
        &zip_bytes(&[ZipItem::File("/tmp/abs-evil.txt", b"pwned")]),
        "is an absolute path",
    );
    zip_refused(
        &zip_bytes(&[ZipItem::Symlink("up", "../..")]),
        "outside the build directory",
    );
    zip_refused(
        &zip_bytes(&[ZipItem::Symlink("abs", "/etc")]),
        "absolute path",
    );
    zip_refused(
        &zip_bytes(&[
            ZipItem::Dir("real/"),
            ZipItem::Symlink("shortcut", "real"),
            ZipItem::File("shortcut/x.py", b"x"),
        ]),
        "a symlink the archive created earlier",
    );
}

// ---------------------------------------------------------------------------
// Special files and privilege bits.
// ---------------------------------------------------------------------------

#[test]
fn tar_device_files_fifos_and_privilege_bits_are_refused() {
    let message = tar_refused(
        &[TarItem::Special(b"x", EntryType::Char, 0o644)],
        "is a device file",
    );
    assert_eq!(message, r#"archive entry "x" is a device file"#);
    tar_refused(
        &[TarItem::Special(b"disk", EntryType::Block, 0o644)],
        "is a device file",
    );
    tar_refused(
        &[TarItem::Special(b"pipe", EntryType::Fifo, 0o644)],
        "is a FIFO",
    );
    tar_refused(
        &[TarItem::File(b"su", 0o4755, b"#!/bin/sh\n")],
        "has setuid, setgid or sticky bits (mode 4755)",
    );
    tar_refused(
        &[TarItem::File(b"sg", 0o2755, b"#!/bin/sh\n")],
        "setuid, setgid or sticky",
    );
    tar_refused(
        &[TarItem::Special(b"tmp", EntryType::Directory, 0o1777)],
        "setuid, setgid or sticky",
    );
    tar_refused(
        &[TarItem::Special(b"odd", EntryType::new(b'Z'), 0o644)],
        "unsupported type",
    );
}

#[test]
fn zip_device_files_fifos_sockets_and_privilege_bits_are_refused() {
    let cases = [
        (0o020644, "is a device file"),
        (0o060644, "is a device file"),
        (0o010644, "is a FIFO"),
        (0o140644, "is a socket"),
        (0o104755, "setuid, setgid or sticky"),
        (0o102755, "setuid, setgid or sticky"),
    ];
    for (mode, expected) in cases {
        let mut zip = zip_bytes(&[ZipItem::File("special", b"")]);
        set_zip_unix_mode(&mut zip, "special", mode);
        zip_refused(&zip, expected);
    }
}

// ---------------------------------------------------------------------------
// Duplicates and names.
// ---------------------------------------------------------------------------

#[test]
fn tar_later_entry_replacing_an_earlier_one_is_refused() {
    tar_refused(
        &[
            TarItem::File(b"app.py", 0o644, b"reviewed"),
            TarItem::File(b"app.py", 0o644, b"evil"),
        ],
        "appears more than once",
    );
    // The same path spelled differently is the same path.
    tar_refused(
        &[
            TarItem::File(b"a/b.py", 0o644, b"reviewed"),
            TarItem::File(b"./a//b.py", 0o644, b"evil"),
        ],
        "appears more than once",
    );
    // A file replaced by a symlink (a classic two-step).
    tar_refused(
        &[
            TarItem::File(b"conf", 0o644, b"x"),
            TarItem::Symlink(b"conf", b"other"),
        ],
        "appears more than once",
    );
    tar_refused(
        &[TarItem::Dir(b"d"), TarItem::Dir(b"d/")],
        "appears more than once",
    );
}

#[test]
fn zip_duplicate_names_are_refused() {
    // Exactly the same name twice: the writer refuses, so rename one.
    let mut zip = zip_bytes(&[ZipItem::File("a.py", b"one"), ZipItem::File("b.py", b"two")]);
    replace_bytes(&mut zip, b"b.py", b"a.py");
    zip_refused(&zip, "duplicate entries");
    // Different spellings of one path.
    zip_refused(
        &zip_bytes(&[
            ZipItem::File("a/b.py", b"one"),
            ZipItem::File("a//b.py", b"two"),
        ]),
        "appears more than once",
    );
}

#[test]
fn bad_names_are_refused() {
    tar_refused(
        &[TarItem::File(b"bad\xff.py", 0o644, b"x")],
        "is not valid UTF-8",
    );
    let mut zip = zip_bytes(&[ZipItem::File("bad_.py", b"x")]);
    replace_bytes(&mut zip, b"bad_.py", b"bad\xff.py");
    zip_refused(&zip, "is not valid UTF-8");
    let mut zip = zip_bytes(&[ZipItem::File("nul_.py", b"x")]);
    replace_bytes(&mut zip, b"nul_.py", b"nul\0.py");
    zip_refused(&zip, "contains a NUL byte");
}

#[test]
fn overlong_paths_are_refused() {
    // The tar builder writes a GNU long-name record for this.
    let long_path = format!("{}file.py", "directory/".repeat(400));
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = Header::new_gnu();
    header.set_size(1);
    header.set_mode(0o644);
    header.set_entry_type(EntryType::Regular);
    builder
        .append_data(&mut header, &long_path, &b"x"[..])
        .unwrap();
    assert_refused(
        &builder.into_inner().unwrap(),
        ArchiveFormat::Tar,
        "-byte limit",
    );

    let long_component = "n".repeat(300);
    zip_refused(
        &zip_bytes(&[ZipItem::File(&long_component, b"x")]),
        "has a component longer than 255 bytes",
    );
}

// ---------------------------------------------------------------------------
// Tar metadata records: pax and GNU long names.
// ---------------------------------------------------------------------------

/// A tar whose entries are preceded by pax records.
fn tar_with_pax(records: &[(&str, &[u8])], header_name: &[u8], data: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_pax_extensions(records.iter().copied())
        .unwrap();
    let mut header = raw_header(header_name, EntryType::Regular, 0o644, data.len() as u64);
    header.set_cksum();
    builder.append(&header, data).unwrap();
    builder.into_inner().unwrap()
}

fn gnu_long_name_record(name: &[u8]) -> Vec<u8> {
    let mut header = raw_header(
        b"././@LongLink",
        EntryType::GNULongName,
        0o644,
        name.len() as u64,
    );
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, name).unwrap();
    let mut bytes = builder.into_inner().unwrap();
    bytes.truncate(bytes.len() - 1024); // drop the end-of-archive blocks
    bytes
}

#[test]
fn pax_and_gnu_long_names_are_checked_like_any_name() {
    // The header says "harmless.txt"; the pax record, which wins, escapes.
    assert_refused(
        &tar_with_pax(&[("path", b"../evil.txt")], b"harmless.txt", b"x"),
        ArchiveFormat::Tar,
        r#"archive entry "../evil.txt" escapes the build directory"#,
    );
    let mut gnu = gnu_long_name_record(b"../../evil.txt");
    gnu.extend(tar_bytes(&[TarItem::File(b"harmless.txt", 0o644, b"x")]));
    assert_refused(&gnu, ArchiveFormat::Tar, r#""../../evil.txt" escapes"#);
    // A pax record that names a symlink's target.
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_pax_extensions([("linkpath", &b"/etc/shadow"[..])])
        .unwrap();
    let mut header = raw_header(b"innocent", EntryType::Symlink, 0o777, 0);
    header.set_cksum();
    builder.append(&header, &[][..]).unwrap();
    assert_refused(
        &builder.into_inner().unwrap(),
        ArchiveFormat::Tar,
        "is a symlink to the absolute path \"/etc/shadow\"",
    );
}

#[test]
fn pax_and_gnu_names_that_disagree_are_refused() {
    let mut tar = gnu_long_name_record(b"one/name.py");
    tar.extend(tar_with_pax(&[("path", b"another/name.py")], b"x", b"x"));
    assert_refused(&tar, ArchiveFormat::Tar, "pax and GNU long names disagree");
}

#[test]
fn oversized_metadata_records_are_refused_before_reading_them() {
    // A 1 MiB "long name": the tar crate alone would read any size into
    // memory.
    let mut tar = gnu_long_name_record(&vec![b'a'; MIB as usize]);
    tar.extend(tar_bytes(&[TarItem::File(b"x", 0o644, b"x")]));
    assert_refused(&tar, ArchiveFormat::Tar, "long-name or pax record");
}

#[test]
fn long_names_extract_when_they_are_fine() {
    let deep = format!("{}module.py", "package/".repeat(20));
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = Header::new_gnu();
    header.set_size(2);
    header.set_mode(0o644);
    header.set_entry_type(EntryType::Regular);
    builder.append_data(&mut header, &deep, &b"ok"[..]).unwrap();
    let mut tar = builder.into_inner().unwrap();
    tar.truncate(tar.len() - 1024);
    tar.extend(tar_with_pax(
        &[
            ("path", "pax/".repeat(40).as_bytes()),
            ("mtime", b"1700000000.5"),
        ],
        b"short",
        b"pax",
    ));
    let layout = Layout::new();
    let report = layout
        .extract_bytes(&tar, ArchiveFormat::Tar, &ExtractLimits::default())
        .unwrap();
    assert_eq!(fs::read(layout.staging().join(&deep)).unwrap(), b"ok");
    // A trailing slash on a regular file's name marks an old-style
    // directory, so the pax path made a directory.
    assert!(layout.staging().join("pax/".repeat(40)).is_dir());
    assert_eq!(report.files, 1);
}

#[test]
fn data_attached_to_non_file_entries_counts_against_the_limit() {
    // A directory entry that claims 12 MiB of content: the reader would
    // decompress it all just to skip it.
    let mut header = raw_header(b"dir", EntryType::Directory, 0o755, 12 * MIB);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append(&header, &vec![0u8; 12 * MIB as usize][..])
        .unwrap();
    let limits = ExtractLimits {
        max_unpacked_bytes: 4 * MIB,
        ..ExtractLimits::default()
    };
    assert_refused_with(
        &gzip(&builder.into_inner().unwrap()),
        ArchiveFormat::TarGz,
        &limits,
        "decompression bomb",
    );
}

// ---------------------------------------------------------------------------
// Limits: entries and bytes.
// ---------------------------------------------------------------------------

#[test]
fn too_many_entries_are_refused() {
    let names: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
    let items: Vec<TarItem<'_>> = names
        .iter()
        .map(|n| TarItem::File(n.as_bytes(), 0o644, b""))
        .collect();
    let limits = ExtractLimits {
        max_entries: 10,
        ..ExtractLimits::default()
    };
    assert_refused_with(
        &tar_bytes(&items),
        ArchiveFormat::Tar,
        &limits,
        "more than 10 entries",
    );
    let zip_items: Vec<ZipItem<'_>> = names.iter().map(|n| ZipItem::File(n, b"")).collect();
    assert_refused_with(
        &zip_bytes(&zip_items),
        ArchiveFormat::Zip,
        &limits,
        "more than 10 entries",
    );
}

const MIB: u64 = 1024 * 1024;

/// A .tar.gz holding one 200 MiB file of zeros, built cheaply: gzip allows
/// concatenated members, so one compressed MiB of zeros is repeated.
fn gzip_bomb() -> Vec<u8> {
    let mut header = raw_header(b"zeros.bin", EntryType::Regular, 0o644, 200 * MIB);
    header.set_cksum();
    let mut archive = gzip(header.as_bytes());
    let zero_mib = gzip(&vec![0u8; MIB as usize]);
    for _ in 0..200 {
        archive.extend_from_slice(&zero_mib);
    }
    archive
}

fn staged_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in fs::read_dir(dir).unwrap() {
        let meta = entry.as_ref().unwrap().metadata().unwrap();
        total += if meta.is_dir() {
            staged_bytes(&entry.unwrap().path())
        } else {
            meta.len()
        };
    }
    total
}

#[test]
fn a_gzip_decompression_bomb_is_refused() {
    let bomb = gzip_bomb();
    assert!(bomb.len() < 2 * MIB as usize, "the bomb itself is small");
    let limits = ExtractLimits {
        max_unpacked_bytes: 10 * MIB,
        ..ExtractLimits::default()
    };
    let message = assert_refused_with(&bomb, ArchiveFormat::TarGz, &limits, "decompression bomb");
    assert_eq!(
        message,
        "archive unpacks to more than 10 MiB (limit); is it a decompression bomb?"
    );
}

#[test]
fn a_bomb_whose_headers_lie_is_stopped_while_streaming() {
    // Many files, each small enough by its header, adding up to too much:
    // and a zip whose declared sizes lie, so only counting while streaming
    // can catch it.
    let limits = ExtractLimits {
        max_unpacked_bytes: 4 * MIB,
        ..ExtractLimits::default()
    };
    let mut zip = zip_bytes(&[ZipItem::File("zeros.bin", &vec![0u8; 12 * MIB as usize])]);
    let real_size = (12 * MIB as u32).to_le_bytes();
    let claimed = 1000u32.to_le_bytes();
    let mut patched = 0;
    for at in 0..zip.len() - 4 {
        if zip[at..at + 4] == real_size {
            zip[at..at + 4].copy_from_slice(&claimed);
            patched += 1;
        }
    }
    assert_eq!(patched, 2, "local header and central directory");

    let layout = Layout::new();
    let before = layout.outside_snapshot();
    let error = layout
        .extract_bytes(&zip, ArchiveFormat::Zip, &limits)
        .unwrap_err();
    assert_eq!(before, layout.outside_snapshot());
    // Nothing past the limit was written.
    assert!(
        staged_bytes(&layout.staging()) <= 4 * MIB,
        "unpacked past the limit before stopping ({error})"
    );
    assert_eq!(
        error.to_string(),
        "archive unpacks to more than 4 MiB (limit); is it a decompression bomb?"
    );
}

// ---------------------------------------------------------------------------
// Corrupt and truncated archives: clean errors.
// ---------------------------------------------------------------------------

#[test]
fn truncated_and_corrupt_archives_are_clean_errors() {
    let tar = tar_bytes(&[
        TarItem::File(b"app/a.py", 0o644, &[b'a'; 5000]),
        TarItem::File(b"app/b.py", 0o644, &[b'b'; 5000]),
    ]);
    // Cut inside the first file's data: the entry comes up short.
    assert_refused(&tar[..2048], ArchiveFormat::Tar, "corrupt or truncated");
    let gz = gzip(&tar);
    assert_refused(
        &gz[..gz.len() / 2],
        ArchiveFormat::TarGz,
        "corrupt or truncated",
    );
    let xz_data = xz(&tar);
    assert_refused(
        &xz_data[..xz_data.len() / 2],
        ArchiveFormat::TarXz,
        "corrupt or truncated",
    );
    let bz = bzip2(&tar);
    assert_refused(
        &bz[..bz.len() / 2],
        ArchiveFormat::TarBz2,
        "corrupt or truncated",
    );
    let zip = zip_bytes(&[ZipItem::File("a.py", &[b'a'; 5000])]);
    assert_refused(
        &zip[..zip.len() / 2],
        ArchiveFormat::Zip,
        "corrupt or truncated",
    );

    let garbage = b"this is not an archive at all, just text pretending".repeat(20);
    for format in [
        ArchiveFormat::TarGz,
        ArchiveFormat::TarBz2,
        ArchiveFormat::TarXz,
        ArchiveFormat::Tar,
        ArchiveFormat::Zip,
    ] {
        assert_refused(&garbage, format, "corrupt or truncated");
    }

    // A flipped bit in a tar header breaks its checksum.
    let mut bad_checksum = tar.clone();
    bad_checksum[0] ^= 0x01;
    assert_refused(&bad_checksum, ArchiveFormat::Tar, "corrupt or truncated");
}

#[test]
fn the_staging_directory_must_exist_and_be_empty() {
    let layout = Layout::new();
    fs::write(layout.staging().join("leftover"), b"x").unwrap();
    let tar = tar_bytes(&[TarItem::File(b"a.py", 0o644, b"x")]);
    let error = layout
        .extract_bytes(&tar, ArchiveFormat::Tar, &ExtractLimits::default())
        .unwrap_err();
    assert!(error.to_string().contains("not empty"), "{error}");

    let missing = layout.root().join("nowhere");
    let archive = layout.archives.path().join("archive.bin");
    let error = extract(
        &archive,
        ArchiveFormat::Tar,
        &missing,
        &ExtractLimits::default(),
    )
    .unwrap_err();
    assert!(error.to_string().contains("cannot extract into"), "{error}");
}

// ---------------------------------------------------------------------------
// Happy paths.
// ---------------------------------------------------------------------------

fn sample_tar() -> Vec<u8> {
    tar_bytes(&[
        TarItem::Dir(b"./"),
        TarItem::Dir(b"app/"),
        TarItem::File(b"app/README", 0o600, b"read me"),
        TarItem::File(b"app/run.sh", 0o700, b"#!/bin/sh\necho hi\n"),
        TarItem::File(b"app/pkg/deep/mod.py", 0o664, b"x = 1\n"),
        TarItem::Symlink(b"app/pkg/readme-link", b"../README"),
        TarItem::Symlink(b"app/current", b"pkg/deep"),
        TarItem::Hardlink(b"app/pkg/mod-copy.py", b"app/pkg/deep/mod.py"),
        TarItem::Special(b"app/empty-dir", EntryType::Directory, 0o700),
    ])
}

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

fn check_sample_tree(staging: &Path, report: &ExtractReport, expect_hardlink: bool) {
    let app = staging.join("app");
    assert_eq!(fs::read(app.join("README")).unwrap(), b"read me");
    assert_eq!(mode_of(&app.join("README")), 0o644);
    assert_eq!(mode_of(&app.join("run.sh")), 0o755);
    assert_eq!(fs::read(app.join("pkg/deep/mod.py")).unwrap(), b"x = 1\n");
    assert_eq!(mode_of(&app.join("pkg/deep/mod.py")), 0o644);
    assert_eq!(mode_of(&app.join("pkg")), 0o755);
    assert_eq!(mode_of(&app.join("empty-dir")), 0o755);
    assert_eq!(
        fs::read_link(app.join("pkg/readme-link")).unwrap(),
        Path::new("../README")
    );
    assert_eq!(fs::read(app.join("pkg/readme-link")).unwrap(), b"read me");
    assert_eq!(fs::read(app.join("current/mod.py")).unwrap(), b"x = 1\n");
    assert_eq!(report.single_top_level.as_deref(), Some("app"));
    assert_eq!(report.symlinks, 2);
    if expect_hardlink {
        let original = fs::metadata(app.join("pkg/deep/mod.py")).unwrap();
        let copy = fs::metadata(app.join("pkg/mod-copy.py")).unwrap();
        assert_eq!(original.ino(), copy.ino(), "a hard link, not a copy");
        assert_eq!(report.hardlinks, 1);
    }
    // Owned by whoever ran the extraction, never the archive's uid 0 when
    // we are not root.
    let me = fs::metadata(staging).unwrap().uid();
    assert_eq!(fs::metadata(app.join("README")).unwrap().uid(), me);
}

#[test]
fn every_tar_flavour_extracts_the_same_tree() {
    let tar = sample_tar();
    for (format, bytes) in [
        (ArchiveFormat::Tar, tar.clone()),
        (ArchiveFormat::TarGz, gzip(&tar)),
        (ArchiveFormat::TarBz2, bzip2(&tar)),
        (ArchiveFormat::TarXz, xz(&tar)),
    ] {
        let layout = Layout::new();
        let before = layout.outside_snapshot();
        let report = layout
            .extract_bytes(&bytes, format, &ExtractLimits::default())
            .unwrap_or_else(|e| panic!("{format:?}: {e}"));
        check_sample_tree(&layout.staging(), &report, true);
        assert_eq!(report.files, 3, "{format:?}: hard links are counted apart");
        assert_eq!(report.dirs, 4, "{format:?}: app, pkg, deep, empty-dir");
        assert_eq!(report.bytes, 7 + 18 + 6);
        assert_eq!(before, layout.outside_snapshot());
    }
}

#[test]
fn zip_extracts_files_listed_before_their_directories() {
    let mut zip = zip_bytes(&[
        ZipItem::File("app/README", b"read me"),
        ZipItem::File("app/run.sh", b"#!/bin/sh\necho hi\n"),
        ZipItem::File("app/pkg/deep/mod.py", b"x = 1\n"),
        ZipItem::Symlink("app/pkg/readme-link", "../README"),
        ZipItem::Symlink("app/current", "pkg/deep"),
        ZipItem::Dir("app/pkg/"),
        ZipItem::Dir("app/empty-dir/"),
        ZipItem::Dir("app/"),
    ]);
    set_zip_unix_mode(&mut zip, "app/run.sh", 0o100700);
    let layout = Layout::new();
    let report = layout
        .extract_bytes(&zip, ArchiveFormat::Zip, &ExtractLimits::default())
        .unwrap();
    check_sample_tree(&layout.staging(), &report, false);
    assert_eq!(report.files, 3);
    assert_eq!(report.dirs, 4);
}

#[test]
fn zip_without_unix_modes_gets_plain_files_and_directories() {
    // Archives made on Windows carry DOS attributes only.
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default();
    writer.start_file("site/index.py", options).unwrap();
    writer.write_all(b"print('hi')").unwrap();
    let mut zip = writer.finish().unwrap().into_inner();
    let (at, _) = zip_central_headers(&zip).remove(0);
    zip[at + 5] = 0; // made by MS-DOS
    zip[at + 38..at + 42].copy_from_slice(&0x20u32.to_le_bytes()); // "archive" bit
    let layout = Layout::new();
    let report = layout
        .extract_bytes(&zip, ArchiveFormat::Zip, &ExtractLimits::default())
        .unwrap();
    assert_eq!(mode_of(&layout.staging().join("site/index.py")), 0o644);
    assert_eq!(report.single_top_level.as_deref(), Some("site"));
}

#[test]
fn no_single_top_level_when_the_archive_is_flat() {
    let layout = Layout::new();
    let tar = tar_bytes(&[
        TarItem::File(b"wsgi.py", 0o644, b"app = None\n"),
        TarItem::File(b"requirements.txt", 0o644, b""),
    ]);
    let report = layout
        .extract_bytes(&tar, ArchiveFormat::Tar, &ExtractLimits::default())
        .unwrap();
    assert_eq!(report.single_top_level, None);
    assert_eq!(report.files, 2);
    // A lone top-level file is not a directory to descend into either.
    let layout = Layout::new();
    let tar = tar_bytes(&[TarItem::File(b"wsgi.py", 0o644, b"")]);
    let report = layout
        .extract_bytes(&tar, ArchiveFormat::Tar, &ExtractLimits::default())
        .unwrap();
    assert_eq!(report.single_top_level, None);
}

// ---------------------------------------------------------------------------
// Property tests: random names never escape and never panic.
// ---------------------------------------------------------------------------

/// Weighted so that most archives get past their first entry: hostile
/// parts are common enough to appear in most cases, not in every name.
fn name_part() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just("..".to_owned()),
        1 => Just(".".to_owned()),
        1 => Just(String::new()),
        3 => Just("a".to_owned()),
        3 => Just("b".to_owned()),
        1 => Just("sentinel.txt".to_owned()),
        1 => Just("outer".to_owned()),
        1 => Just("é".to_owned()),
        1 => Just("日本".to_owned()),
        1 => Just("x y".to_owned()),
        2 => "[a-c.]{1,3}",
    ]
}

fn entry_name() -> impl Strategy<Value = String> {
    (
        prop::bool::weighted(0.1),
        prop::collection::vec(name_part(), 1..5),
    )
        .prop_map(|(absolute, parts)| {
            let joined = parts.join("/");
            if absolute {
                format!("/{joined}")
            } else {
                joined
            }
        })
}

#[derive(Debug, Clone)]
enum RandomEntry {
    File(String),
    Dir(String),
    Symlink(String, String),
    Hardlink(String, String),
}

fn random_entry() -> impl Strategy<Value = RandomEntry> {
    prop_oneof![
        3 => entry_name().prop_map(RandomEntry::File),
        1 => entry_name().prop_map(RandomEntry::Dir),
        2 => (entry_name(), entry_name()).prop_map(|(n, t)| RandomEntry::Symlink(n, t)),
        1 => (entry_name(), entry_name()).prop_map(|(n, t)| RandomEntry::Hardlink(n, t)),
    ]
}

/// Whatever happened, outside is untouched, and every symlink in staging
/// that resolves at all resolves inside it.
fn assert_contained(layout: &Layout, before: &BTreeMap<PathBuf, String>) {
    assert_eq!(before, &layout.outside_snapshot());
    let staging = fs::canonicalize(layout.staging()).unwrap();
    let mut pending = vec![staging.clone()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                if let Ok(resolved) = fs::canonicalize(&path) {
                    assert!(
                        resolved.starts_with(&staging),
                        "{path:?} resolves to {resolved:?}"
                    );
                }
            } else if meta.is_dir() {
                pending.push(path);
            }
        }
    }
}

fn fits_tar_header(entries: &[RandomEntry]) -> bool {
    entries.iter().all(|e| match e {
        RandomEntry::File(n) | RandomEntry::Dir(n) => n.len() <= 100,
        RandomEntry::Symlink(n, t) | RandomEntry::Hardlink(n, t) => {
            n.len() <= 100 && t.len() <= 100
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        // Failures are reported in the test output; no regression files.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_tar_names_never_escape(entries in prop::collection::vec(random_entry(), 1..7)) {
        prop_assume!(fits_tar_header(&entries));
        let items: Vec<TarItem<'_>> = entries.iter().map(|e| match e {
            RandomEntry::File(n) => TarItem::File(n.as_bytes(), 0o644, b"data"),
            RandomEntry::Dir(n) => TarItem::Dir(n.as_bytes()),
            RandomEntry::Symlink(n, t) => TarItem::Symlink(n.as_bytes(), t.as_bytes()),
            RandomEntry::Hardlink(n, t) => TarItem::Hardlink(n.as_bytes(), t.as_bytes()),
        }).collect();
        let layout = Layout::new();
        let before = layout.outside_snapshot();
        let _ = layout.extract_bytes(&tar_bytes(&items), ArchiveFormat::Tar, &ExtractLimits::default());
        assert_contained(&layout, &before);
    }

    #[test]
    fn random_zip_names_never_escape(entries in prop::collection::vec(random_entry(), 1..7)) {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = SimpleFileOptions::default().unix_permissions(0o644);
        for entry in &entries {
            // The writer refuses some names (duplicates); skip those entries.
            let _ = match entry {
                RandomEntry::File(n) | RandomEntry::Hardlink(n, _) => writer
                    .start_file(n.as_str(), options)
                    .and_then(|()| writer.write_all(b"data").map_err(Into::into)),
                RandomEntry::Dir(n) => writer.add_directory(n.as_str(), options),
                RandomEntry::Symlink(n, t) => writer.add_symlink(n.as_str(), t.as_str(), options),
            };
        }
        let zip = writer.finish().unwrap().into_inner();
        let layout = Layout::new();
        let before = layout.outside_snapshot();
        let _ = layout.extract_bytes(&zip, ArchiveFormat::Zip, &ExtractLimits::default());
        assert_contained(&layout, &before);
    }
}
