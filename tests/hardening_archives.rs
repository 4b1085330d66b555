//! Hostile archives through the charm (the harness). tests/archive_hostile.rs
//! covers the extractor itself; here each class goes through a whole
//! config-changed, from `files/<label>/` of the charm or from a loopback
//! server at `code_assets_uri`, and must leave the unit Blocked with a
//! message naming the problem, nothing changed on the machine outside the
//! staging directory (the whole root is compared with a snapshot), no
//! staging left, and r1 still serving.

mod charm_support;
mod hardening_support;

use std::io::{Cursor, Write};

use charm_support::*;
use hardening_support::*;
use harness::{on, Context, State};
use tar::{EntryType, Header};
use wsgi_app::charm::WsgiApp;
use wsgi_app::ops::StatusName;

// --- building hostile archives ------------------------------------------------

enum Item<'a> {
    File(&'a str, u32, &'a [u8]),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Special(&'a str, EntryType, u32),
}

fn raw_header(name: &str, kind: EntryType, mode: u32, size: u64) -> Header {
    let mut header = Header::new_gnu();
    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(1_700_000_000);
    header
}

fn tar_of(items: &[Item<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for item in items {
        let (mut header, data): (Header, &[u8]) = match *item {
            Item::File(name, mode, data) => (
                raw_header(name, EntryType::Regular, mode, data.len() as u64),
                data,
            ),
            Item::Symlink(name, target) | Item::Hardlink(name, target) => {
                let kind = if matches!(item, Item::Symlink(..)) {
                    EntryType::Symlink
                } else {
                    EntryType::Link
                };
                let mut header = raw_header(name, kind, 0o777, 0);
                header.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
                (header, &[])
            }
            Item::Special(name, kind, mode) => (raw_header(name, kind, mode, 0), &[]),
        };
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap()
}

/// The tar formats the charm takes, each with the same entries.
const TAR_FORMATS: [&str; 4] = ["app.tar.gz", "app.tar.bz2", "app.tar.xz", "app.tar"];

fn compress(name: &str, tar: &[u8]) -> Vec<u8> {
    if name.ends_with(".gz") {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(tar).unwrap();
        e.finish().unwrap()
    } else if name.ends_with(".bz2") {
        let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        e.write_all(tar).unwrap();
        e.finish().unwrap()
    } else if name.ends_with(".xz") {
        let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
        e.write_all(tar).unwrap();
        e.finish().unwrap()
    } else {
        tar.to_vec()
    }
}

enum ZipItem<'a> {
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
}

fn zip_of(items: &[ZipItem<'_>]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().unix_permissions(0o644);
    for item in items {
        match *item {
            ZipItem::File(name, data) => {
                w.start_file(name, options).unwrap();
                w.write_all(data).unwrap();
            }
            ZipItem::Symlink(name, target) => w.add_symlink(name, target, options).unwrap(),
        }
    }
    w.finish().unwrap().into_inner()
}

/// Sets entry `name`'s Unix st_mode in the zip's central directory.
fn set_zip_mode(zip: &mut [u8], name: &str, mode: u32) {
    let mut at = 0;
    while at + 46 <= zip.len() {
        if zip[at..at + 4] == [0x50, 0x4b, 0x01, 0x02] {
            let len = u16::from_le_bytes([zip[at + 28], zip[at + 29]]) as usize;
            if &zip[at + 46..at + 46 + len] == name.as_bytes() {
                zip[at + 5] = 3;
                zip[at + 38..at + 42].copy_from_slice(&(mode << 16).to_le_bytes());
                return;
            }
        }
        at += 1;
    }
    panic!("{name} not in the zip");
}

/// Every `from` (same length as `to`) replaced: renames an entry in both headers.
fn rename_in_zip(zip: &mut [u8], from: &str, to: &str) {
    let (from, to) = (from.as_bytes(), to.as_bytes());
    let mut at = 0;
    while at + from.len() <= zip.len() {
        if &zip[at..at + from.len()] == from {
            zip[at..at + from.len()].copy_from_slice(to);
        }
        at += 1;
    }
}

// --- running a case -------------------------------------------------------------

struct Bench {
    charm: CharmDir,
    ctx: Context<WsgiApp>,
    base: State,
    next: u32,
    marker: Marker,
}

impl Bench {
    fn new() -> Bench {
        let charm = CharmDir::new();
        let ctx = charm.context();
        let base = serving_r1(&ctx);
        Bench {
            charm,
            ctx,
            base,
            next: 0,
            marker: Marker::new("archive"),
        }
    }

    /// Install `bytes` as build `h<N>` named `name`, from the charm's files/.
    fn install(&mut self, name: &str, bytes: &[u8], expected: &str) {
        self.next += 1;
        let label = format!("h{}", self.next);
        self.charm.add_file(&label, name, bytes);
        let state = self
            .base
            .clone()
            .with_config("build_label", label.as_str())
            .with_config("archive_filename", name);
        self.check(state, &label, expected);
    }

    fn check(&self, state: State, label: &str, expected: &str) {
        let case = format!("{label} ({expected})");
        let root = state.machine.root().to_path_buf();
        let before = snapshot(&root);
        let out = self.ctx.run(on::config_changed(), state).unwrap();
        assert!(out.succeeded(), "{case}: {}", out.failure_summary());
        assert_status(&out.state, StatusName::Blocked, expected);
        assert_status(&out.state, StatusName::Blocked, &format!("build {label}"));
        assert_status(&out.state, StatusName::Blocked, "serving r1");
        assert_untouched_r1(&out.state);
        assert_no_staging_left(&out.state);
        let changes = changes_outside(&before, &snapshot(&root), &["srv/wsgi-app/.staging"]);
        assert!(
            changes.is_empty(),
            "{case}: changed outside staging: {changes:#?}"
        );
        assert!(!out
            .state
            .machine
            .path(format!("/srv/wsgi-app/builds/{label}"))
            .exists());
        self.marker.assert_absent(&case);
    }
}

/// Each tar item list in every tar format, and returns how many cases ran.
fn every_tar_format(bench: &mut Bench, items: &[Item<'_>], expected: &str) -> usize {
    let tar = tar_of(items);
    for name in TAR_FORMATS {
        bench.install(name, &compress(name, &tar), expected);
    }
    TAR_FORMATS.len()
}

#[test]
fn path_escapes_are_refused_in_every_format() {
    let mut b = Bench::new();
    let mut cases = 0;
    for name in ["../../../../etc/evil", "app/../../../evil", "./../evil"] {
        cases += every_tar_format(
            &mut b,
            &[Item::File(name, 0o644, b"pwned")],
            "escapes the build directory",
        );
        b.install(
            "app.zip",
            &zip_of(&[ZipItem::File(name, b"pwned")]),
            "escapes the build directory",
        );
        cases += 1;
    }
    record("archives: ../ paths", cases, "Blocked \"archive entry … escapes the build directory\"; nothing outside staging; r1 kept serving");

    let mut cases = 0;
    for name in ["/etc/evil", "//tmp/evil"] {
        cases += every_tar_format(
            &mut b,
            &[Item::File(name, 0o644, b"pwned")],
            "is an absolute path",
        );
        b.install(
            "app.zip",
            &zip_of(&[ZipItem::File(name, b"pwned")]),
            "absolute path",
        );
        cases += 1;
    }
    record(
        "archives: absolute paths",
        cases,
        "Blocked \"archive entry … is an absolute path\"; nothing outside staging; r1 kept serving",
    );
}

#[test]
fn links_out_of_the_build_are_refused() {
    let mut b = Bench::new();
    let mut cases = 0;
    for (items, expected) in [
        (
            vec![Item::Symlink("etc", "/etc")],
            "is a symlink to the absolute path",
        ),
        (
            vec![Item::Symlink("up", "../../../../../etc")],
            "outside the build directory",
        ),
        (
            vec![Item::Symlink("d", "."), Item::File("d/x", 0o644, b"x")],
            "a symlink the archive created earlier",
        ),
        (
            vec![Item::Symlink("l", "a/../../x")],
            "cannot be checked safely",
        ),
    ] {
        cases += every_tar_format(&mut b, &items, expected);
    }
    for (target, expected) in [
        ("/etc/passwd", "outside the build directory"),
        ("../../../../etc/passwd", "outside the build directory"),
        ("missing.txt", "not a regular file extracted earlier"),
    ] {
        cases += every_tar_format(&mut b, &[Item::Hardlink("h", target)], expected);
    }
    for (target, expected) in [
        ("/etc/passwd", "absolute path"),
        ("../../../x", "outside the build directory"),
    ] {
        b.install(
            "app.zip",
            &zip_of(&[ZipItem::Symlink("link", target)]),
            expected,
        );
        cases += 1;
    }
    record(
        "archives: symlinks and hardlinks out of the build",
        cases,
        "Blocked naming the link and its target; nothing outside staging; r1 kept serving",
    );
}

#[test]
fn device_files_fifos_and_privilege_bits_are_refused() {
    let mut b = Bench::new();
    let mut cases = 0;
    for (kind, expected) in [
        (EntryType::Char, "is a device file"),
        (EntryType::Block, "is a device file"),
        (EntryType::Fifo, "FIFO"),
    ] {
        cases += every_tar_format(&mut b, &[Item::Special("dev", kind, 0o666)], expected);
    }
    for (mode, label) in [(0o4755, "setuid"), (0o2755, "setgid"), (0o1777, "sticky")] {
        let _ = label;
        cases += every_tar_format(
            &mut b,
            &[Item::File("tool", mode, b"#!/bin/sh\n")],
            "setuid, setgid or sticky",
        );
        let mut zip = zip_of(&[ZipItem::File("tool", b"#!/bin/sh\n")]);
        set_zip_mode(&mut zip, "tool", 0o100000 | mode);
        b.install("app.zip", &zip, "setuid, setgid or sticky");
        cases += 1;
    }
    for (mode, expected) in [
        (0o020644, "is a device file"),
        (0o010644, "FIFO"),
        (0o140644, "socket"),
    ] {
        let mut zip = zip_of(&[ZipItem::File("dev", b"")]);
        set_zip_mode(&mut zip, "dev", mode);
        b.install("app.zip", &zip, expected);
        cases += 1;
    }
    record(
        "archives: device files, FIFOs, sockets, setuid/setgid/sticky bits",
        cases,
        "Blocked naming the entry; nothing outside staging; r1 kept serving",
    );
}

#[test]
fn decompression_bombs_are_stopped() {
    let mut b = Bench::new();
    let mut cases = 0;
    // One file of zeros over the harness's 16 MiB unpacked limit.
    let zeros = vec![0u8; 17 * MIB];
    let tar = tar_of(&[Item::File("zeros.bin", 0o644, &zeros)]);
    for name in ["app.tar.gz", "app.tar.xz"] {
        let archive = compress(name, &tar);
        assert!(archive.len() < MIB / 4, "a bomb: a small archive");
        b.install(name, &archive, "decompression bomb");
        cases += 1;
    }
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    zip.start_file(
        "zeros.bin",
        zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated),
    )
    .unwrap();
    zip.write_all(&zeros).unwrap();
    b.install(
        "app.zip",
        &zip.finish().unwrap().into_inner(),
        "decompression bomb",
    );
    cases += 1;
    // Many small entries over the 2,000-entry limit.
    let names: Vec<String> = (0..2_100).map(|i| format!("f{i}")).collect();
    let items: Vec<Item<'_>> = names.iter().map(|n| Item::File(n, 0o644, b"")).collect();
    let tar = tar_of(&items);
    b.install(
        "app.tar.gz",
        &compress("app.tar.gz", &tar),
        "more than 2000 entries",
    );
    cases += 1;
    record("archives: decompression bombs (bytes and entries)", cases, "Blocked \"… is it a decompression bomb?\" while streaming; nothing outside staging; r1 kept serving");
}

#[test]
fn zip_with_duplicate_entries_and_tar_replacing_an_entry_are_refused() {
    let mut b = Bench::new();
    let mut zip = zip_of(&[
        ZipItem::File("app.py", b"good"),
        ZipItem::File("bpp.py", b"evil"),
    ]);
    rename_in_zip(&mut zip, "bpp.py", "app.py");
    b.install("app.zip", &zip, "duplicate entries");
    let mut cases = 1;
    cases += every_tar_format(
        &mut b,
        &[
            Item::File("app.py", 0o644, b"good"),
            Item::File("app.py", 0o644, b"evil"),
        ],
        "appears more than once",
    );
    record(
        "archives: duplicate entries (zip) and replaced entries (tar)",
        cases,
        "Blocked naming the entry; r1 kept serving",
    );
}

#[test]
fn corrupt_archives_and_wrong_checksums_are_refused() {
    let mut b = Bench::new();
    let good = std::fs::read(b.charm.path().join("files/r2/example-wsgi-app.tar.bzip2")).unwrap();
    let mut cases = 0;
    for cut in [10, good.len() / 2, good.len() - 4] {
        b.install("app.tar.bz2", &good[..cut], "corrupt or truncated");
        cases += 1;
    }
    b.install(
        "app.tar.gz",
        b"\x1f\x8b not really gzip",
        "corrupt or truncated",
    );
    b.install(
        "app.zip",
        b"PK\x03\x04 not really zip",
        "corrupt or truncated",
    );
    cases += 2;
    record(
        "archives: truncated or corrupt files",
        cases,
        "Blocked \"archive is corrupt or truncated\"; r1 kept serving",
    );

    // A wrong sha256, from the charm and over HTTP.
    let mut cases = 0;
    b.next += 1;
    let label = format!("h{}", b.next);
    b.charm
        .add_file(&label, "example-wsgi-app.tar.bzip2", &good);
    let state = b
        .base
        .clone()
        .with_config("build_label", label.as_str())
        .with_config("archive_sha256", "ab".repeat(32));
    b.check(state, &label, "but archive_sha256 is abab");
    cases += 1;
    let url = serve_once(good.clone()).url;
    let state = b
        .base
        .clone()
        .with_config("build_label", "r2")
        .with_config("code_assets_uri", url)
        .with_config("archive_sha256", "cd".repeat(32));
    b.check(state, "r2", "but archive_sha256 is cdcd");
    cases += 1;
    record(
        "archives: wrong archive_sha256",
        cases,
        "Blocked \"archive sha256 is …, but archive_sha256 is …\"; r1 kept serving",
    );
}

#[test]
fn a_download_cut_short_is_refused() {
    let b = Bench::new();
    let good = std::fs::read(b.charm.path().join("files/r2/example-wsgi-app.tar.bzip2")).unwrap();
    let mut cases = 0;
    for sent in [0, 1, good.len() / 2, good.len() - 1] {
        let url = serve_cut_short(good.clone(), sent, 8).url;
        let state = b
            .base
            .clone()
            .with_config("build_label", "r2")
            .with_config("code_assets_uri", url);
        b.check(state, "r2", "connection closed after");
        cases += 1;
    }
    record(
        "archives: download cut short by the server",
        cases,
        "Blocked \"the connection closed after N of M bytes\" (after retries); r1 kept serving",
    );
}
