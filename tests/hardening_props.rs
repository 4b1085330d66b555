//! Property tests for the parsers and renderers hostile input reaches that
//! had none yet: CIDR containment (against an integer model), MongoDB and
//! manager-service URLs from arbitrary bags, the NRPE command line through a
//! real `/bin/sh` (after NRPE's `$$` unescaping), message clamping, and
//! archive extraction of corrupted archives (a fuzzer's job; cargo-fuzz
//! needs a nightly toolchain, which CI does not have, so proptest mutates a
//! valid archive instead). Existing ones are not repeated: libpq conninfo,
//! percent-encoding and passwords in URLs (relations_data.rs), the
//! `environment_variables` parser and the env file (envvars.rs, with a
//! /bin/sh oracle), archive entry names (archive_hostile.rs).
//!
//! Bounded (256 cases each) so CI stays fast; a failure is saved by proptest
//! under `proptest-regressions/` next to this file and replayed first.

#[path = "common/archives.rs"]
mod archives;
mod hardening_support;

use std::net::Ipv4Addr;
use std::sync::Mutex;

use archives::archive_bytes;
use proptest::prelude::*;
use wsgi_app::charm::relations::cidr::Cidr;
use wsgi_app::charm::relations::{manager_service_url, mongo_connection, render_nrpe, NrpeCheck};
use wsgi_app::ops::Bag;
use wsgi_app::workload::archive::{extract, ArchiveFormat, ExtractLimits};

/// The row these tests add to the README's Security table.
const CLASS: &str = "property tests (proptest)";
const OUTCOME: &str = "CIDR, MongoDB and manager-service URLs, NRPE command via sh, message clamping, corrupted tar/tar.gz/zip: no panic, no escape, exact round trips";

/// Cases run so far by this binary's property tests.
static CASES: Mutex<usize> = Mutex::new(0);

/// Count one case and record the total so far: the tests run in parallel
/// and none knows which finishes last, so the last case run writes the
/// final count.
fn count_case() {
    let mut cases = CASES.lock().unwrap_or_else(|e| e.into_inner());
    *cases += 1;
    hardening_support::record(CLASS, *cases, OUTCOME);
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

/// Text with what hostile data likes: quotes, `$`, backticks, newlines,
/// NUL, non-ASCII.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9.:/@%$`'\"\\\\;&|<> \\n\\r\\t\\x00-]{0,40}",
        "[a-z0-9.-]{1,30}",
    ]
}

/// A port half the time, hostile text otherwise.
fn port_text() -> impl Strategy<Value = String> {
    prop_oneof![any::<u16>().prop_map(|p| p.to_string()), hostile_text()]
}

/// The bytes of a small valid archive of each format.
fn valid_archives() -> Vec<(ArchiveFormat, Vec<u8>)> {
    let tree: &[(&str, &[u8])] = &[("app/a.py", b"print(1)\n"), ("app/b/c.txt", b"hello")];
    let tar = archive_bytes("x.tar", tree);
    let gz = archive_bytes("x.tar.gz", tree);
    let zip = archive_bytes("x.zip", &tree[..1]);
    vec![
        (ArchiveFormat::Tar, tar),
        (ArchiveFormat::TarGz, gz),
        (ArchiveFormat::Zip, zip),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn cidr_parse_never_panics_and_shows_what_it_read(text in hostile_text()) {
        count_case();
        if let Ok(cidr) = Cidr::parse(&text) {
            // What it read parses back to the same subnet.
            prop_assert_eq!(Cidr::parse(&cidr.to_string()).unwrap(), cidr);
        }
    }

    #[test]
    fn ipv4_containment_matches_an_integer_model(
        outer in any::<u32>(), outer_len in 0u8..=32,
        inner in any::<u32>(), inner_len in 0u8..=32,
    ) {
        count_case();
        let a = Cidr::parse(&format!("{}/{outer_len}", Ipv4Addr::from(outer))).unwrap();
        let b = Cidr::parse(&format!("{}/{inner_len}", Ipv4Addr::from(inner))).unwrap();
        let model = inner_len >= outer_len && (outer & mask(outer_len)) == (inner & mask(outer_len));
        prop_assert_eq!(a.contains(&b), model);
        prop_assert!(a.contains(&a));
        // A subnet inside `a` built from a's own address is contained.
        let narrower = Cidr::parse(&format!("{}/{}", Ipv4Addr::from(outer), outer_len.max(inner_len))).unwrap();
        prop_assert!(a.contains(&narrower));
        // IPv4 is never inside IPv6 and the other way round.
        let v6 = Cidr::parse("::/0").unwrap();
        prop_assert!(!v6.contains(&a) && !a.contains(&v6));
    }

    #[test]
    fn mongo_urls_hold_only_url_safe_text(
        units in prop::collection::vec((hostile_text(), port_text(), hostile_text()), 0..4),
        database in prop::option::of(hostile_text()),
    ) {
        count_case();
        let bags: Vec<(String, Bag)> = units
            .iter()
            .enumerate()
            .map(|(i, (host, port, replset))| {
                let bag: Bag = [("hostname", host), ("port", port), ("replset", replset)]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect();
                (format!("mongodb/{i}"), bag)
            })
            .collect();
        if let Some(conn) = mongo_connection(&bags, database.as_deref()) {
            let url = conn.url;
            prop_assert!(url.starts_with("mongodb://"));
            prop_assert!(
                url.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%:/,[]?=".contains(&b)),
                "{:?}", url
            );
            let parsed = url::Url::parse(&url);
            if !url.contains(',') && !url.contains('[') {
                prop_assert!(parsed.is_ok(), "{:?}: {:?}", url, parsed);
            }
            for note in conn.notes {
                prop_assert!(!note.contains('\0'));
            }
        }
    }

    #[test]
    fn manager_service_urls_are_urls_of_the_given_host(
        hostname in hostile_text(), address in hostile_text(), port in port_text(),
        protocol in prop_oneof![Just("http"), Just("https")],
    ) {
        count_case();
        let bag: Bag = [("hostname", &hostname), ("private-address", &address), ("port", &port)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        if let Ok(Some(url)) = manager_service_url(protocol, &[("manager/0".to_string(), bag)]) {
            let parsed = url::Url::parse(&url).unwrap();
            prop_assert_eq!(parsed.scheme(), protocol);
            prop_assert_eq!(parsed.port_or_known_default().map(|p| p.to_string()), Some(port.trim().trim_start_matches('+').parse::<u16>().unwrap().to_string()));
            // The URL names the host the remote unit sent, as a URL parser
            // reads that host (all-digit names are IPv4 numbers to it).
            let as_url_host = |h: &str| {
                url::Url::parse(&format!("http://{}/", if h.contains(':') { format!("[{h}]") } else { h.to_string() }))
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_string))
            };
            let host = parsed.host_str().map(str::to_string);
            prop_assert!(
                host == as_url_host(hostname.trim()) || host == as_url_host(address.trim()),
                "{:?} from {:?} / {:?}", url, hostname, address
            );
        }
    }

    #[test]
    fn nrpe_commands_give_check_http_exactly_the_configured_text(
        content in "[^\\n\\r\\x00]{0,60}",
        path in "/[^\\s\\x00-\\x1f\\x7f]{0,40}",
        status in 100u16..600,
    ) {
        count_case();
        let check = NrpeCheck {
            app: "wsgi-app",
            unit: "wsgi-app/0",
            nagios_context: "juju",
            nagios_servicegroups: "",
            relation_nagios_hostname: None,
            address: "10.0.0.5",
            port: 8080,
            index_path: &path,
            expected_status: status,
            index_content: &content,
            check_http_path: "/usr/lib/nagios/plugins/check_http",
        };
        let Ok(files) = render_nrpe(&check) else {
            // Only a check_http path with a character a URL path cannot
            // carry is refused; any content fits on the line here.
            prop_assert!(path.chars().any(|c| c.is_whitespace() || c.is_control()));
            return Ok(());
        };
        let line = files.command.contents.lines()
            .find_map(|l| l.strip_prefix("command[check_wsgi-app_http]="))
            .unwrap()
            .replace("$$", "$");
        let line = line.replacen("/usr/lib/nagios/plugins/check_http", "printf '%s\\0'", 1);
        let out = std::process::Command::new("sh").args(["-c", &line]).env_clear().output().unwrap();
        prop_assert!(out.status.success());
        let argv: Vec<String> = out.stdout.split(|&b| b == 0).map(|a| String::from_utf8(a.to_vec()).unwrap()).collect();
        let mut expected: Vec<String> = ["-I", "10.0.0.5", "-p", "8080", "-u", &path, "-e", &status.to_string()]
            .iter().map(|s| s.to_string()).collect();
        if !content.is_empty() {
            expected.push("-s".into());
            expected.push(content.clone());
        }
        expected.push(String::new()); // after the last NUL
        prop_assert_eq!(argv, expected);
    }

    #[test]
    fn clamped_messages_fit_a_hook_tool_argument(message in prop_oneof![
        any::<String>(),
        ".{4000,9000}",
        "[☃é]{1500,5000}",
    ]) {
        count_case();
        let clamped = wsgi_app::ops::model::clamp_message(&message);
        prop_assert!(clamped.len() <= wsgi_app::ops::model::MAX_MESSAGE_BYTES + 64);
        if message.len() <= wsgi_app::ops::model::MAX_MESSAGE_BYTES {
            prop_assert_eq!(&*clamped, message.as_str());
        } else {
            let head: String = message.chars().take(100).collect();
            let tail: String = message.chars().rev().take(100).collect::<Vec<_>>().into_iter().rev().collect();
            prop_assert!(clamped.starts_with(&head) && clamped.ends_with(&tail));
        }
    }

    #[test]
    fn corrupted_archives_never_panic_nor_write_outside_staging(
        which in 0usize..3,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        count_case();
        let (format, mut bytes) = valid_archives().swap_remove(which);
        for (at, value) in &flips {
            let i = at.index(bytes.len());
            bytes[i] ^= value | 1;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path().join("outer/staging");
        std::fs::create_dir_all(&staging).unwrap();
        std::fs::write(dir.path().join("outer/sentinel"), b"untouched").unwrap();
        let archive = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(archive.path(), &bytes).unwrap();
        let before = hardening_support::snapshot(dir.path());
        let limits = ExtractLimits { max_entries: 100, max_unpacked_bytes: 1 << 20, max_path_bytes: 512 };
        let _ = extract(archive.path(), format, &staging, &limits);
        let after = hardening_support::snapshot(dir.path());
        let changed = hardening_support::changes_outside(&before, &after, &["outer/staging"]);
        prop_assert!(changed.is_empty(), "{:?}", changed);
        // Nothing special was created inside either.
        for (path, what) in after {
            if path.starts_with("outer/staging") {
                prop_assert!(what.starts_with("dir") || what.starts_with("file") || what.starts_with("link"), "{:?}: {}", path, what);
                prop_assert!(!what.contains(" 104") && !what.contains(" 102"), "{:?}: {}", path, what);
            }
        }
    }
}
