//! The packed `.charm`, checked the way Juju will see it: its layout, modes
//! and symlink entries, a manifest with bases and no series, metadata that
//! passes Juju's checks, bytes that do not change between packs, agreement
//! with charmcraft.yaml — and then unpacked as Juju unpacks it and deployed
//! through charm-sim, serving the example build, with the Juju < 2.8 path
//! (hooks/install run directly, no JUJU_DISPATCH_PATH) exercised too.
//!
//! The pack runs through the library (`harness::xtask::pack::pack`) with the
//! charm binary cargo built for this test run, so no nested cargo waits on
//! the build lock. The binary is the dev-profile one; `cargo xtask pack`
//! packs the release build the same way.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use harness::charm_contents::{ASSET_DIRS, DISPATCH, DOCUMENT_FILES, LEGACY_HOOKS};
use harness::xtask::pack::{pack, Manifest, Packed, ARCHITECTURES, BASE_CHANNELS};
use harness::CharmMeta;
use serde_yaml_ng::Value;

const CHARM_SIM: &str = env!("CARGO_BIN_EXE_charm-sim");

/// A port other than the default, so the test also shows `listen_port`
/// reaching gunicorn, the opened port and the status.
const LISTEN_PORT: u16 = 18431;

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The charm binary: beside charm-sim, where `cargo test --workspace`
/// builds it; built once here if this test was run on its own.
fn charm_binary() -> PathBuf {
    let beside = Path::new(CHARM_SIM).with_file_name("wsgi-app");
    if !beside.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "harness", "-p", "wsgi-app"])
            .args(["--bin", "wsgi-app"])
            .current_dir(workspace_root())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the charm binary failed");
    }
    beside
}

/// One pack shared by the tests of this file, written under cargo's
/// per-target temporary directory.
fn packed() -> &'static Packed {
    static PACKED: OnceLock<Packed> = OnceLock::new();
    PACKED.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pack-test/first");
        pack(&workspace_root(), &charm_binary(), &out).expect("pack succeeds")
    })
}

/// Every entry of a zip: name → (unix mode with file type, content).
fn entries(charm: &Path) -> Vec<(String, u32, Vec<u8>, zip::DateTime)> {
    use std::io::Read;
    let mut zip = zip::ZipArchive::new(std::fs::File::open(charm).unwrap()).unwrap();
    (0..zip.len())
        .map(|i| {
            let mut entry = zip.by_index(i).unwrap();
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            let modified = entry.last_modified().unwrap_or_default();
            (
                entry.name().to_string(),
                entry.unix_mode().unwrap_or(0),
                content,
                modified,
            )
        })
        .collect()
}

fn text_entry(charm: &Path, name: &str) -> String {
    let (_, _, content, _) = entries(charm)
        .into_iter()
        .find(|e| e.0 == name)
        .unwrap_or_else(|| panic!("{name} missing"));
    String::from_utf8(content).unwrap()
}

fn yaml_entry(charm: &Path, name: &str) -> Value {
    serde_yaml_ng::from_str(&text_entry(charm, name)).unwrap()
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("no Debian name for {other} here"),
    }
}

#[test]
fn packing_the_same_tree_twice_gives_the_same_bytes() {
    let first = packed();
    let again_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pack-test/second");
    let again = pack(&workspace_root(), &charm_binary(), &again_dir).unwrap();
    assert_eq!(first.sha256, again.sha256);
    assert_eq!(
        std::fs::read(&first.path).unwrap(),
        std::fs::read(&again.path).unwrap()
    );
    assert_eq!(first.size, std::fs::metadata(&first.path).unwrap().len());
    assert_eq!(
        first.path.file_name().unwrap().to_str().unwrap(),
        format!("wsgi-app_{}.charm", host_arch())
    );
    // The glibc this build needs is within Ubuntu 22.04's.
    let glibc = first.glibc.as_ref().expect("a glibc-linked binary");
    assert!(glibc.0 <= vec![2, 35], "needs glibc {glibc}");
}

#[test]
fn the_charm_has_the_layout_modes_and_links_juju_needs() {
    let charm = &packed().path;
    let all = entries(charm);
    let names: Vec<&str> = all.iter().map(|e| e.0.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries are sorted");

    let top: BTreeSet<&str> = names.iter().map(|n| n.split('/').next().unwrap()).collect();
    let expected: BTreeSet<&str> = [
        "actions",
        "actions.yaml",
        "config.yaml",
        "dispatch",
        "files",
        "hooks",
        "icon.svg",
        "manifest.yaml",
        "metadata.yaml",
        "README.md",
        "templates",
    ]
    .into();
    assert_eq!(top, expected);
    assert!(names.contains(&"files/r1/example-wsgi-app.tar.bzip2"));
    assert!(names.contains(&"templates/wsgi-app.service"));

    for (name, mode, content, modified) in &all {
        // Fixed timestamps: 1980-01-01 00:00, the zip epoch.
        assert_eq!(
            (modified.year(), modified.month(), modified.day()),
            (1980, 1, 1),
            "{name}"
        );
        if name == DISPATCH {
            assert_eq!(*mode, S_IFREG | 0o755, "dispatch mode {mode:o}");
            assert_eq!(&content[..4], b"\x7fELF", "dispatch is the binary itself");
        } else if let Some(hook) = name.strip_prefix("hooks/") {
            assert!(LEGACY_HOOKS.contains(&hook), "unexpected hook {hook}");
            assert_eq!(*mode & S_IFMT, S_IFLNK, "{name} is a symlink entry");
            assert_eq!(*mode & 0o777, 0o777, "{name}");
            assert_eq!(content, b"../dispatch", "{name}");
        } else if name.starts_with("actions/") {
            assert_eq!(*mode & S_IFMT, S_IFLNK, "{name} is a symlink entry");
            assert_eq!(content, b"../dispatch", "{name}");
        } else {
            assert_eq!(*mode, S_IFREG | 0o644, "{name} mode {mode:o}");
        }
    }
    let hooks: Vec<&str> = names
        .iter()
        .filter_map(|n| n.strip_prefix("hooks/"))
        .collect();
    assert_eq!(hooks, ["install", "start", "upgrade-charm"]);
    // One per action, for operators who run an action as a command.
    let actions: Vec<&str> = names
        .iter()
        .filter_map(|n| n.strip_prefix("actions/"))
        .collect();
    assert_eq!(
        actions,
        [
            "abort-rollout",
            "list-builds",
            "resume-rollout",
            "rollback",
            "rollout-status",
            "set-current-symlink"
        ]
    );
}

#[test]
fn the_manifest_has_both_bases_and_nothing_says_series() {
    let charm = &packed().path;
    let manifest: Manifest = serde_yaml_ng::from_value(yaml_entry(charm, "manifest.yaml")).unwrap();
    let arch = host_arch().to_string();
    let bases: Vec<(String, String, Vec<String>)> = manifest
        .bases
        .iter()
        .map(|b| (b.name.clone(), b.channel.clone(), b.architectures.clone()))
        .collect();
    assert_eq!(
        bases,
        [
            ("ubuntu".into(), "22.04".into(), vec![arch.clone()]),
            ("ubuntu".into(), "24.04".into(), vec![arch.clone()]),
        ]
    );
    let attributes: Vec<(&str, &str)> = manifest
        .analysis
        .attributes
        .iter()
        .map(|a| (a.name.as_str(), a.result.as_str()))
        .collect();
    assert_eq!(
        attributes,
        [("language", "unknown"), ("framework", "unknown")]
    );
    for file in ["manifest.yaml", "metadata.yaml"] {
        let value = yaml_entry(charm, file);
        assert!(value.get("series").is_none(), "{file} has series");
    }
}

#[test]
fn the_packed_metadata_passes_juju_checks() {
    let charm = &packed().path;
    let meta = CharmMeta::from_yaml(
        &text_entry(charm, "metadata.yaml"),
        Some(&text_entry(charm, "config.yaml")),
        Some(&text_entry(charm, "actions.yaml")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(meta.name, "wsgi-app");
    let config = yaml_entry(charm, "config.yaml");
    assert!(config["options"]["build_label"]["type"] == "string");

    let icon = entries(charm)
        .into_iter()
        .find(|e| e.0 == "icon.svg")
        .unwrap()
        .2;
    let icon = String::from_utf8(icon).unwrap();
    assert!(icon.contains(r#"width="100" height="100" viewBox="0 0 100 100""#));
}

#[test]
fn charmcraft_yaml_describes_the_same_charm() {
    let text = std::fs::read_to_string(workspace_root().join("charmcraft.yaml")).unwrap();
    let project: Value = serde_yaml_ng::from_str(&text).unwrap();
    assert_eq!(project["type"], "charm");
    // The split files are the one source of metadata, config and actions;
    // charmcraft refuses keys defined in both places.
    for key in [
        "name",
        "summary",
        "description",
        "config",
        "actions",
        "provides",
        "requires",
        "peers",
        "bases",
        "base",
    ] {
        assert!(project.get(key).is_none(), "charmcraft.yaml repeats {key}");
    }

    // Platforms: every base we pack, on every architecture we build for.
    let platforms: BTreeSet<String> = project["platforms"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(name, spec)| {
            assert!(spec.is_null(), "{name:?}: shorthand platforms only");
            name.as_str().unwrap().to_string()
        })
        .collect();
    let expected: BTreeSet<String> = BASE_CHANNELS
        .iter()
        .flat_map(|c| ARCHITECTURES.iter().map(move |a| format!("ubuntu@{c}:{a}")))
        .collect();
    assert_eq!(platforms, expected);
    // ...and what pack wrote for this architecture is exactly its share.
    let manifest: Manifest =
        serde_yaml_ng::from_value(yaml_entry(&packed().path, "manifest.yaml")).unwrap();
    let packed_platforms: BTreeSet<String> = manifest
        .bases
        .iter()
        .flat_map(|b| {
            b.architectures
                .iter()
                .map(move |a| format!("{}@{}:{a}", b.name, b.channel))
        })
        .collect();
    let this_arch: BTreeSet<String> = platforms
        .iter()
        .filter(|p| p.ends_with(&format!(":{}", host_arch())))
        .cloned()
        .collect();
    assert_eq!(packed_platforms, this_arch);

    // The rust part builds only the root crate and organises its binary
    // into dispatch, as pack ships it.
    let parts = project["parts"].as_mapping().unwrap();
    let by_plugin = |plugin: &str| -> Vec<&Value> {
        parts
            .values()
            .filter(|p| p["plugin"] == plugin)
            .collect::<Vec<_>>()
    };
    let rust = by_plugin("rust");
    assert_eq!(rust.len(), 1, "one rust part");
    let rust = rust[0];
    assert_eq!(rust["source"], ".");
    assert_eq!(
        rust["rust-path"],
        serde_yaml_ng::from_str::<Value>("[\".\"]").unwrap()
    );
    assert_eq!(rust["organize"]["bin/wsgi-app"], DISPATCH);
    assert_eq!(
        rust["stage"],
        serde_yaml_ng::from_str::<Value>("[dispatch]").unwrap()
    );

    // The dump part stages what pack ships besides the YAML, the manifest,
    // dispatch, hooks/ and actions/ (charmcraft.yaml says why those two
    // are left out).
    let dump = by_plugin("dump");
    assert_eq!(dump.len(), 1, "one dump part");
    let staged: BTreeSet<&str> = dump[0]["stage"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let shipped: BTreeSet<String> = entries(&packed().path)
        .iter()
        .map(|e| e.0.split('/').next().unwrap().to_string())
        .filter(|top| {
            ![
                "metadata.yaml",
                "config.yaml",
                "actions.yaml",
                "manifest.yaml",
                "dispatch",
                "hooks",
                "actions",
            ]
            .contains(&top.as_str())
        })
        .collect();
    let shipped: BTreeSet<&str> = shipped.iter().map(String::as_str).collect();
    assert_eq!(staged, shipped);
    for name in ASSET_DIRS.iter().chain(DOCUMENT_FILES) {
        let present = workspace_root().join(name).exists();
        assert_eq!(staged.contains(name), present, "{name}");
    }
    assert_eq!(
        project["analysis"]["ignore"]["linters"],
        serde_yaml_ng::from_str::<Value>("[entrypoint]").unwrap()
    );
}

/// A charm-sim model in a temporary directory, destroyed when dropped
/// (passing or not), so no gunicorn outlives the test.
struct Model {
    dir: PathBuf,
}

impl Model {
    fn cli(&self, args: &[&str]) -> Output {
        Command::new(CHARM_SIM)
            .arg("--model")
            .arg(&self.dir)
            .args(args)
            .env_remove("CHARM_SIM_MODEL")
            // An address block of its own, apart from other models.
            .env("CHARM_SIM_ADDRESS_BLOCK", "127.0.44")
            .stdin(Stdio::null())
            .output()
            .expect("charm-sim runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "charm-sim {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn unit_status(&self) -> serde_json::Value {
        let status: serde_json::Value =
            serde_json::from_str(&self.ok(&["status", "--format", "json"])).unwrap();
        status["applications"]["wsgi-app"]["units"]["wsgi-app/0"].clone()
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        if self.dir.exists() {
            let _ = self.cli(&["destroy"]);
        }
    }
}

#[test]
fn the_unpacked_charm_deploys_serves_and_takes_old_juju_hooks() {
    let tmp = tempfile::tempdir().unwrap();
    let unpacked = tmp.path().join("charm");
    harness::sim::charm::unpack_charm(&packed().path, &unpacked).expect("unpacks");

    // As Juju's unpacker leaves it: dispatch executable, hooks as relative
    // links that resolve to it.
    let mode = std::fs::metadata(unpacked.join("dispatch"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    for hook in LEGACY_HOOKS {
        let link = unpacked.join("hooks").join(hook);
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("../dispatch"));
        assert_eq!(
            std::fs::canonicalize(&link).unwrap(),
            std::fs::canonicalize(unpacked.join("dispatch")).unwrap()
        );
    }

    let model = Model {
        dir: tmp.path().join("model"),
    };
    let port = LISTEN_PORT.to_string();
    let charm = unpacked.display().to_string();
    model.ok(&[
        "deploy",
        &charm,
        "--units",
        "1",
        "--config",
        "build_label=r1",
        "--config",
        &format!("listen_port={port}"),
    ]);
    let unit = model.unit_status();
    assert_eq!(unit["workload-status"]["current"], "active", "{unit}");
    assert_eq!(
        unit["workload-status"]["message"],
        format!("serving r1 on :{port}")
    );
    let address = unit["public-address"].as_str().unwrap().to_string();
    let answer = wsgi_app::workload::health::http_check(
        &format!("{address}:{port}"),
        "/",
        200,
        "It works!",
        Duration::from_secs(10),
    )
    .expect("the unit answers");
    assert!(
        answer.excerpt.contains("It works! Revision 1"),
        "{}",
        answer.excerpt
    );

    // Juju < 2.8 runs hooks/<name> itself and sets no JUJU_DISPATCH_PATH
    // (charm-sim exec gives the unit's hook environment without one). The
    // binary must take the event from argv[0] = hooks/install...
    let out = model.cli(&["exec", "wsgi-app/0", "--", "hooks/install"]);
    assert!(
        out.status.success(),
        "hooks/install failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // ...which is what made it work: the same binary started as dispatch,
    // with the same environment, has no event to run.
    let out = model.cli(&["exec", "wsgi-app/0", "--", "./dispatch"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("neither JUJU_DISPATCH_PATH nor argv[0] names a hook"),
        "{stderr}"
    );
    let unit = model.unit_status();
    assert_eq!(
        unit["workload-status"]["message"],
        format!("serving r1 on :{port}"),
        "the re-run install left the unit serving"
    );

    let stdout = model.ok(&["destroy"]);
    assert!(stdout.contains("destroyed the model"), "{stdout}");
    assert!(
        std::net::TcpStream::connect_timeout(
            &format!("{address}:{port}").parse().unwrap(),
            Duration::from_secs(1)
        )
        .is_err(),
        "gunicorn still listens on {address}:{port} after destroy"
    );
}
