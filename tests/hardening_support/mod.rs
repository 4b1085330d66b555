//! Shared by the hardening tests: hostile payloads, a marker file that
//! proves nothing was executed, a snapshot of a whole machine root, and the
//! case counts the README's Security table is made from.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A file that must never exist: every command-injection payload tries to
/// create it. Unique per call, so parallel tests cannot mask each other.
pub struct Marker(PathBuf);

impl Marker {
    pub fn new(tag: &str) -> Marker {
        let mut bytes = [0u8; 8];
        if let Ok(data) = fs::read("/proc/sys/kernel/random/uuid") {
            let digest = Sha256::digest(&data);
            bytes.copy_from_slice(&digest[..8]);
        }
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let path = PathBuf::from(format!("/tmp/pwned-{tag}-{hex}"));
        let _ = fs::remove_file(&path);
        Marker(path)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn shell_word(&self) -> String {
        self.0.display().to_string()
    }
    /// Panics when a payload ran.
    pub fn assert_absent(&self, context: &str) {
        assert!(
            !self.0.exists(),
            "{context}: a payload was executed ({} exists)",
            self.0.display()
        );
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

pub const MIB: usize = 1 << 20;

/// Strings remote applications and operators could send, each named. The
/// command-injection ones would create `marker`.
pub fn payloads(marker: &Marker) -> Vec<(&'static str, String)> {
    let m = marker.shell_word();
    vec![
        ("newline", "first\nINJECTED=1".to_string()),
        ("carriage return", "first\rsecond".to_string()),
        ("double quotes", "say \"hi\"\"".to_string()),
        ("single quotes", "it's 'quoted''".to_string()),
        ("$() substitution", format!("$(touch {m})")),
        ("backticks", format!("`touch {m}`")),
        ("; and &&", format!("x; touch {m} && touch {m}")),
        ("| and >", format!("x | tee {m} > {m}")),
        ("${} variables", "${HOME}$PATH$1$$".to_string()),
        ("backslashes", "a\\b\\\\c\\".to_string()),
        ("NUL", "before\0after".to_string()),
        (
            "control characters",
            "a\u{1}b\u{1b}[31mred\u{7f}".to_string(),
        ),
        ("percent escapes", "%00%0A%zz%".to_string()),
        ("systemd specifiers", "%h%n%%".to_string()),
        ("unicode", "pässwörd-☃-\u{202e}rtl".to_string()),
        ("leading dash", "--help".to_string()),
        ("path traversal", "../../../etc/passwd".to_string()),
        ("1 MiB", "x".repeat(MIB)),
    ]
}

/// Payloads a DNS host name field could carry (plus a host that is fine).
pub fn host_payloads(marker: &Marker) -> Vec<(&'static str, String)> {
    let mut all = payloads(marker);
    all.push(("URL delimiters", "evil.example.com/x?y#z@w".to_string()));
    all.push(("IPv6 with zone", "fe80::1%eth0".to_string()));
    all.push((
        "1 MiB host name",
        format!("{}.example.com", "a".repeat(MIB)),
    ));
    all
}

/// Port values that are not ports.
pub fn port_payloads(marker: &Marker) -> Vec<(&'static str, String)> {
    let m = marker.shell_word();
    vec![
        ("negative", "-1".to_string()),
        ("zero", "0".to_string()),
        ("too big", "65536".to_string()),
        ("huge", "99999999999999999999999".to_string()),
        ("with command", format!("5432; touch {m}")),
        ("substitution", format!("$(touch {m})")),
        ("newline", "5432\nINJECTED=1".to_string()),
        ("NUL", "5432\0".to_string()),
        ("hex", "0x1538".to_string()),
        ("1 MiB", "1".repeat(MIB)),
    ]
}

/// Every path under `root` with its type, mode, owner and content digest.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut seen = BTreeMap::new();
    snapshot_into(root, root, &mut seen);
    seen
}

fn snapshot_into(root: &Path, dir: &Path, seen: &mut BTreeMap<PathBuf, String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let rel = path.strip_prefix(root).unwrap().to_path_buf();
        let owner = format!("{}:{} {:o}", meta.uid(), meta.gid(), meta.mode());
        let description = if meta.file_type().is_symlink() {
            format!("link {owner} -> {:?}", fs::read_link(&path).unwrap())
        } else if meta.is_dir() {
            snapshot_into(root, &path, seen);
            format!("dir {owner}")
        } else {
            let digest = Sha256::digest(fs::read(&path).unwrap_or_default());
            format!("file {owner} {:x}", digest)
        };
        seen.insert(rel, description);
    }
}

/// What changed between two snapshots, ignoring paths under any of `allowed`.
pub fn changes_outside(
    before: &BTreeMap<PathBuf, String>,
    after: &BTreeMap<PathBuf, String>,
    allowed: &[&str],
) -> Vec<String> {
    let ok = |p: &Path| allowed.iter().any(|a| p.starts_with(a));
    let mut out = Vec::new();
    for (path, was) in before {
        if ok(path) {
            continue;
        }
        match after.get(path) {
            None => out.push(format!("removed {}", path.display())),
            Some(now) if now != was => {
                out.push(format!("changed {}: {was} -> {now}", path.display()))
            }
            _ => {}
        }
    }
    for path in after.keys() {
        if !ok(path) && !before.contains_key(path) {
            out.push(format!("added {}", path.display()));
        }
    }
    out
}

/// Record how many cases of a class of bad input a test tried and what
/// happened, for the README's Security table (`cargo xtask security-table`).
pub fn record(class: &str, cases: usize, outcome: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/hardening-counts");
    let _ = fs::create_dir_all(&dir);
    let slug: String = class
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let body = serde_json::json!({ "class": class, "cases": cases, "outcome": outcome });
    let _ = fs::write(dir.join(format!("{slug}.json")), body.to_string());
}
