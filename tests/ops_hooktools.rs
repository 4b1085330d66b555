//! `HookTools` against fake hook tools: each `Backend` call must run the
//! argv ops runs (shared/reference/juju-hook-tools.md, Appendix A), read
//! Juju's JSON, and map exit codes and stderr to typed errors.
//!
//! The fakes are one shell script, symlinked under every tool name into a
//! per-test directory. It appends its argv to `calls.log`, saves stdin when
//! given `--file -`, and answers with `<tool>.out`, `<tool>.stderr` and
//! `<tool>.code` from that directory when the test wrote them.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::{json, Value};
use wsgi_app::ops::{
    Backend, BagOwner, HookTools, LogLevel, Model, ModelError, Port, Protocol, Scope, SecretOwner,
    SecretRead, SecretRef, Status, StatusName,
};

const TOOLS: &[&str] = &[
    "config-get",
    "is-leader",
    "relation-ids",
    "relation-list",
    "relation-get",
    "relation-set",
    "status-get",
    "status-set",
    "application-version-set",
    "juju-log",
    "action-get",
    "action-set",
    "action-log",
    "action-fail",
    "open-port",
    "close-port",
    "opened-ports",
    "network-get",
    "secret-get",
    "secret-info-get",
    "secret-ids",
];

const FAKE_TOOL: &str = r#"#!/bin/sh
# A fake Juju hook tool (see tests/ops_hooktools.rs).
dir=$(dirname "$0")
tool=$(basename "$0")
{
  printf 'CALL %s\n' "$tool"
  for a in "$@"; do printf 'ARG %s\n' "$a"; done
} >> "$dir/calls.log"
case " $* " in
  *" --file - "*) cat > "$dir/$tool.stdin" ;;
esac
if [ -f "$dir/$tool.stderr" ]; then cat "$dir/$tool.stderr" >&2; fi
if [ -f "$dir/$tool.out" ]; then cat "$dir/$tool.out"; fi
code=0
if [ -f "$dir/$tool.code" ]; then code=$(cat "$dir/$tool.code"); fi
exit "$code"
"#;

/// The script, written once per test process. Every test goes through
/// here before it runs anything, so no other thread can fork while the
/// file is still open for writing (which would make exec fail with
/// "text file busy").
fn fake_tool_script() -> &'static Path {
    static SCRIPT: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = SCRIPT.get_or_init(|| {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("fake-hook-tool");
        std::fs::write(&path, FAKE_TOOL).expect("write the fake tool");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("make it executable");
        (dir, path)
    });
    path
}

struct FakeTools {
    dir: tempfile::TempDir,
}

impl FakeTools {
    fn new() -> Self {
        let script = fake_tool_script();
        let dir = tempfile::tempdir().expect("temp dir");
        for tool in TOOLS {
            std::os::unix::fs::symlink(script, dir.path().join(tool)).expect("symlink");
        }
        FakeTools { dir }
    }

    fn answer(&self, tool: &str, stdout: &str) -> &Self {
        std::fs::write(self.dir.path().join(format!("{tool}.out")), stdout).unwrap();
        self
    }

    fn fail(&self, tool: &str, code: i32, stderr: &str) -> &Self {
        std::fs::write(
            self.dir.path().join(format!("{tool}.code")),
            code.to_string(),
        )
        .unwrap();
        std::fs::write(self.dir.path().join(format!("{tool}.stderr")), stderr).unwrap();
        self
    }

    fn backend(&self) -> HookTools {
        HookTools::in_dir(self.dir.path())
    }

    /// Each call's argv, tool name first.
    fn calls(&self) -> Vec<Vec<String>> {
        let log = std::fs::read_to_string(self.dir.path().join("calls.log")).unwrap_or_default();
        let mut calls: Vec<Vec<String>> = Vec::new();
        for line in log.lines() {
            if let Some(tool) = line.strip_prefix("CALL ") {
                calls.push(vec![tool.to_string()]);
            } else if let Some(arg) = line.strip_prefix("ARG ") {
                calls.last_mut().expect("CALL first").push(arg.to_string());
            }
        }
        calls
    }

    fn last_call(&self) -> Vec<String> {
        self.calls().pop().expect("a call was made")
    }

    fn stdin(&self, tool: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{tool}.stdin"))).unwrap_or_default()
    }
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

#[test]
fn reads_use_appendix_a_argv_and_parse_json() {
    let tools = FakeTools::new();
    let mut b = tools.backend();

    tools.answer(
        "config-get",
        r#"{"listen_port": 8080, "build_label": "r1"}"#,
    );
    let config = b.config_get().unwrap();
    assert_eq!(config["listen_port"], json!(8080));
    assert_eq!(tools.last_call(), argv(&["config-get", "--format=json"]));

    tools.answer("is-leader", "true\n");
    assert!(b.is_leader().unwrap());
    assert_eq!(tools.last_call(), argv(&["is-leader", "--format=json"]));

    tools.answer("relation-ids", r#"["db:10","db:2"]"#);
    assert_eq!(b.relation_ids("db").unwrap(), vec![10, 2]);
    assert_eq!(
        tools.last_call(),
        argv(&["relation-ids", "db", "--format=json"])
    );

    tools.answer("relation-list", r#"["postgresql/0","postgresql/1"]"#);
    assert_eq!(b.relation_list("db", 7).unwrap().len(), 2);
    assert_eq!(
        tools.last_call(),
        argv(&["relation-list", "--format=json", "-r", "db:7"])
    );

    tools.answer("relation-list", r#""postgresql""#);
    assert_eq!(b.relation_remote_app("db", 7).unwrap(), "postgresql");
    assert_eq!(
        tools.last_call(),
        argv(&["relation-list", "--format=json", "--app", "-r", "db:7"])
    );

    tools.answer(
        "relation-get",
        r#"{"database":"app","private-address":"10.0.0.5"}"#,
    );
    let unit = BagOwner::Unit("postgresql/1".into());
    assert_eq!(b.relation_get("db", 7, &unit).unwrap()["database"], "app");
    assert_eq!(
        tools.last_call(),
        argv(&[
            "relation-get",
            "--format=json",
            "-r",
            "db:7",
            "-",
            "postgresql/1"
        ])
    );
    tools.answer("relation-get", "null\n");
    let app = BagOwner::App("postgresql".into());
    assert!(b.relation_get("db", 7, &app).unwrap().is_empty());
    assert_eq!(
        tools.last_call(),
        argv(&[
            "relation-get",
            "--format=json",
            "-r",
            "db:7",
            "--app",
            "-",
            "postgresql"
        ])
    );

    tools.answer(
        "status-get",
        r#"{"message":"serving r2","status":"active","status-data":{}}"#,
    );
    assert_eq!(
        b.status_get(Scope::Unit).unwrap(),
        Status::active("serving r2")
    );
    assert_eq!(
        tools.last_call(),
        argv(&[
            "status-get",
            "--include-data",
            "--format=json",
            "--application=false"
        ])
    );
    // The application's status is nested, with the units inside it.
    tools.answer(
        "status-get",
        r#"{"application-status":{"message":"","status":"waiting","status-data":{},"units":{"wsgi-app/0":{"message":"","status":"active","status-data":{}}}}}"#,
    );
    assert_eq!(b.status_get(Scope::App).unwrap().name, StatusName::Waiting);
    assert_eq!(tools.last_call()[3], "--application=true");

    tools.answer("action-get", r#"{"symlink":"r2"}"#);
    assert_eq!(b.action_get().unwrap()["symlink"], json!("r2"));
    assert_eq!(tools.last_call(), argv(&["action-get", "--format=json"]));

    tools.answer("opened-ports", r#"["icmp","80/tcp","8000-8999/udp"]"#);
    let ports = b.opened_ports().unwrap();
    assert_eq!(ports[0].protocol, Protocol::Icmp);
    assert_eq!(ports[1], Port::tcp(80));
    assert_eq!((ports[2].from, ports[2].to), (8000, 8999));
    assert_eq!(tools.last_call(), argv(&["opened-ports", "--format=json"]));

    tools.answer(
        "network-get",
        r#"{"bind-addresses":[{"mac-address":"00:16:3e:00:00:01","interface-name":"eth0","addresses":[{"hostname":"","value":"10.0.0.5","cidr":"10.0.0.0/24"}]}],"egress-subnets":["10.0.0.5/32"],"ingress-addresses":["10.0.0.5"]}"#,
    );
    let net = b.network_get("website", Some(("website", 3))).unwrap();
    assert_eq!(net.ingress_address(), Some("10.0.0.5"));
    assert_eq!(
        tools.last_call(),
        argv(&["network-get", "--format=json", "-r", "3", "website"])
    );
    b.network_get("website", None).unwrap();
    assert_eq!(
        tools.last_call(),
        argv(&["network-get", "--format=json", "website"])
    );
}

#[test]
fn writes_use_appendix_a_argv() {
    let tools = FakeTools::new();
    let mut b = tools.backend();

    let data = [("port", "8080"), ("gone", "")]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
    b.relation_set("website", 3, Scope::App, &data).unwrap();
    assert_eq!(
        tools.last_call(),
        argv(&["relation-set", "-r", "website:3", "--app", "--file", "-"])
    );
    let sent: Value = serde_json::from_str(&tools.stdin("relation-set")).unwrap();
    assert_eq!(sent, json!({"port": "8080", "gone": ""}));
    b.relation_set("website", 3, Scope::Unit, &data).unwrap();
    assert_eq!(
        tools.last_call(),
        argv(&["relation-set", "-r", "website:3", "--file", "-"])
    );

    b.status_set(Scope::Unit, &Status::active("serving r2"))
        .unwrap();
    assert_eq!(
        tools.last_call(),
        argv(&[
            "status-set",
            "--application=False",
            "active",
            "--",
            "serving r2"
        ])
    );
    b.status_set(Scope::App, &Status::blocked("-starts with a dash"))
        .unwrap();
    assert_eq!(
        tools.last_call(),
        argv(&[
            "status-set",
            "--application=True",
            "blocked",
            "--",
            "-starts with a dash"
        ])
    );

    b.application_version_set("1.2.3").unwrap();
    assert_eq!(
        tools.last_call(),
        argv(&["application-version-set", "--", "1.2.3"])
    );

    b.juju_log(LogLevel::Warning, "disk is full").unwrap();
    assert_eq!(
        tools.last_call(),
        argv(&["juju-log", "--log-level", "WARNING", "--", "disk is full"])
    );

    let results = [("previous", "r1"), ("builds.r2.sha256", "abc")]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
    b.action_set(&results).unwrap();
    assert_eq!(
        tools.last_call(),
        argv(&["action-set", "builds.r2.sha256=abc", "previous=r1"])
    );
    b.action_log("switching").unwrap();
    assert_eq!(tools.last_call(), argv(&["action-log", "--", "switching"]));
    b.action_fail("r9 is not installed").unwrap();
    assert_eq!(
        tools.last_call(),
        argv(&["action-fail", "--", "r9 is not installed"])
    );

    b.open_port(&Port::tcp(8080)).unwrap();
    assert_eq!(tools.last_call(), argv(&["open-port", "8080/tcp"]));
    b.open_port(&"icmp".parse().unwrap()).unwrap();
    assert_eq!(tools.last_call(), argv(&["open-port", "icmp"]));
    b.close_port(&"8000-8999/udp".parse().unwrap()).unwrap();
    assert_eq!(tools.last_call(), argv(&["close-port", "8000-8999/udp"]));

    // Nothing to send: no call at all.
    let before = tools.calls().len();
    b.relation_set("website", 3, Scope::Unit, &Default::default())
        .unwrap();
    b.action_set(&Default::default()).unwrap();
    assert_eq!(tools.calls().len(), before);
}

#[test]
fn exit_2_is_a_usage_error_and_exit_1_a_runtime_failure() {
    let tools = FakeTools::new();
    let mut b = tools.backend();
    tools.fail(
        "config-get",
        2,
        "ERROR flag provided but not defined: --frmat\n",
    );
    match b.config_get() {
        Err(ModelError::Usage { tool, message }) => {
            assert_eq!(tool, "config-get");
            // Juju's `ERROR ` prefix is stripped.
            assert_eq!(message, "flag provided but not defined: --frmat");
        }
        other => panic!("expected a usage error, got {other:?}"),
    }
    tools.fail("juju-log", 1, "ERROR cannot reach the unit agent\n");
    match b.juju_log(LogLevel::Info, "hello") {
        Err(ModelError::ToolFailed {
            tool,
            code,
            message,
        }) => {
            assert_eq!((tool.as_str(), code), ("juju-log", 1));
            assert_eq!(message, "cannot reach the unit agent");
        }
        other => panic!("expected a tool failure, got {other:?}"),
    }
}

#[test]
fn juju_failures_map_to_typed_errors() {
    let tools = FakeTools::new();
    let mut b = tools.backend();

    tools.fail(
        "relation-get",
        2,
        "ERROR invalid value \"db:99\" for flag -r: relation not found\n",
    );
    match b.relation_get("db", 99, &BagOwner::App("postgresql".into())) {
        Err(ModelError::RelationNotFound(message)) => {
            assert_eq!(
                message,
                "invalid value \"db:99\" for flag -r: relation not found"
            )
        }
        other => panic!("expected RelationNotFound, got {other:?}"),
    }

    tools.fail("relation-set", 1, "ERROR cannot write relation settings\n");
    let data = [("k".to_string(), "v".to_string())].into();
    assert!(matches!(
        b.relation_set("db", 7, Scope::App, &data),
        Err(ModelError::NotLeader(_))
    ));

    tools.fail("status-set", 1, "ERROR this unit is not the leader\n");
    assert!(matches!(
        b.status_set(Scope::App, &Status::active("")),
        Err(ModelError::NotLeader(_))
    ));

    tools.fail("action-get", 1, "ERROR not running an action\n");
    assert!(matches!(b.action_get(), Err(ModelError::NotAnAction)));

    tools.answer("is-leader", "yes please\n");
    assert!(matches!(
        b.is_leader(),
        Err(ModelError::BadOutput { tool, .. }) if tool == "is-leader"
    ));
}

#[test]
fn a_missing_tool_is_reported_as_missing() {
    fake_tool_script();
    let empty = tempfile::tempdir().unwrap();
    let mut b = HookTools::in_dir(empty.path());
    match b.config_get() {
        Err(ModelError::ToolMissing { tool }) => assert_eq!(tool, "config-get"),
        other => panic!("expected ToolMissing, got {other:?}"),
    }
}

/// The model over real hook tools: one `config-get` and one `is-leader`
/// per dispatch, and `relation-set` carries only what changed.
#[test]
fn the_model_caches_reads_and_sends_deltas() {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::AsRefStr)]
    #[strum(serialize_all = "kebab-case")]
    enum Ep {
        Website,
    }
    let tools = FakeTools::new();
    tools
        .answer("config-get", r#"{"listen_port": 8080}"#)
        .answer("is-leader", "true")
        .answer("relation-get", r#"{"hostname":"a","port":"8080"}"#);
    let mut backend = tools.backend();
    let mut model = Model::<Ep>::new(&mut backend, "wsgi-app/0", "test-model", None);
    for _ in 0..3 {
        assert_eq!(model.config().unwrap()["listen_port"], json!(8080));
        assert!(model.is_leader().unwrap());
    }
    let rel = wsgi_app::ops::RelationId {
        endpoint: Ep::Website,
        id: 3,
    };
    let changes = [("hostname", "a"), ("port", "8081")]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
    model
        .update_relation_data(rel, Scope::Unit, &changes)
        .unwrap();
    let tools_called: Vec<String> = tools.calls().into_iter().map(|c| c[0].clone()).collect();
    assert_eq!(
        tools_called,
        ["config-get", "is-leader", "relation-get", "relation-set"]
    );
    let sent: Value = serde_json::from_str(&tools.stdin("relation-set")).unwrap();
    assert_eq!(sent, json!({"port": "8081"}));
}

/// A non-leader may read its own application's bag on a peer relation
/// (whose remote application is its own), and nowhere else.
#[test]
fn only_peers_may_read_their_own_application_bag_without_leading() {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::AsRefStr)]
    #[strum(serialize_all = "kebab-case")]
    enum Ep {
        Cluster,
        Website,
    }
    let own_app = BagOwner::App("wsgi-app".into());
    let tools = FakeTools::new();
    tools
        .answer("is-leader", "false")
        .answer("relation-list", r#""wsgi-app""#)
        .answer("relation-get", r#"{"members":"3"}"#);
    let mut backend = tools.backend();
    let mut model = Model::<Ep>::new(&mut backend, "wsgi-app/1", "test-model", None);
    let peers = wsgi_app::ops::RelationId {
        endpoint: Ep::Cluster,
        id: 1,
    };
    assert_eq!(
        model.relation_data(peers, &own_app).unwrap()["members"],
        "3"
    );

    let tools = FakeTools::new();
    tools
        .answer("is-leader", "false")
        .answer("relation-list", r#""haproxy""#);
    let mut backend = tools.backend();
    let mut model = Model::<Ep>::new(&mut backend, "wsgi-app/1", "test-model", None);
    let website = wsgi_app::ops::RelationId {
        endpoint: Ep::Website,
        id: 2,
    };
    assert!(matches!(
        model.relation_data(website, &own_app),
        Err(ModelError::AccessDenied(_))
    ));
    assert_eq!(
        tools
            .calls()
            .iter()
            .filter(|c| c[0] == "relation-get")
            .count(),
        0
    );
}

const URI: &str = "secret:cn8f3mvmp25c7a5b6b2g";

/// secret-get, secret-info-get and secret-ids with ops' argv
/// (modern-interfaces.md §6.4) and Juju's JSON shapes (§6.1).
#[test]
fn secret_tools_use_ops_argv_and_parse_json() {
    let tools = FakeTools::new();
    let mut b = tools.backend();
    tools.answer(
        "secret-get",
        r#"{"username":"relation-7","password":"p@ss w:rd/%","uris":"postgresql://x"}"#,
    );
    let label = "database.7.user.secret";
    let cases = [
        (
            SecretRef::Id(URI),
            SecretRead::Tracked,
            vec!["--format=json", URI],
        ),
        (
            SecretRef::Label(label),
            SecretRead::Tracked,
            vec!["--format=json", "--label", label],
        ),
        (
            SecretRef::IdWithLabel { id: URI, label },
            SecretRead::Tracked,
            vec!["--format=json", URI, "--label", label],
        ),
        (
            SecretRef::IdWithLabel { id: URI, label },
            SecretRead::Refresh,
            vec!["--format=json", URI, "--label", label, "--refresh"],
        ),
        (
            SecretRef::Label(label),
            SecretRead::Peek,
            vec!["--format=json", "--label", label, "--peek"],
        ),
    ];
    for (secret, read, args) in cases {
        let content = b.secret_get(secret, read).unwrap();
        assert_eq!(content.get("password"), Some("p@ss w:rd/%"));
        assert_eq!(
            content.keys().collect::<Vec<_>>(),
            ["password", "uris", "username"]
        );
        let mut expected = argv(&["secret-get"]);
        expected.extend(argv(&args));
        assert_eq!(tools.last_call(), expected, "{secret} {read:?}");
    }

    tools.answer(
        "secret-info-get",
        &format!(
            r#"{{"{URI}":{{"revision":3,"label":"db-pass","owner":"application","rotation":"monthly","expiry":"2026-12-01T00:00:00Z","rotates":"2026-12-01T00:00:00Z"}}}}"#
        ),
    );
    let info = b.secret_info_get(SecretRef::Id(URI)).unwrap();
    assert_eq!(
        tools.last_call(),
        argv(&["secret-info-get", "--format=json", URI])
    );
    assert_eq!(info.id, URI);
    assert_eq!(info.revision, 3);
    assert_eq!(info.label, "db-pass");
    assert_eq!(info.owner, SecretOwner::Application);
    assert_eq!(info.rotation.as_deref(), Some("monthly"));
    assert_eq!(info.expiry.as_deref(), Some("2026-12-01T00:00:00Z"));
    assert_eq!(info.description, None);
    b.secret_info_get(SecretRef::Label("db-pass")).unwrap();
    assert_eq!(
        tools.last_call(),
        argv(&["secret-info-get", "--format=json", "--label", "db-pass"])
    );

    tools.answer("secret-ids", &format!(r#"["{URI}"]"#));
    assert_eq!(b.secret_ids().unwrap(), [URI]);
    assert_eq!(tools.last_call(), argv(&["secret-ids", "--format=json"]));
}

/// Juju's secret errors (§6.2) become typed errors; nothing the tool
/// printed on stdout (the content) reaches an error or a Debug print.
#[test]
fn secret_failures_are_typed_and_never_show_content() {
    let tools = FakeTools::new();
    let mut b = tools.backend();

    tools.fail(
        "secret-get",
        1,
        "ERROR secret \"cn8f3mvmp25c7a5b6b2g\" not found\n",
    );
    assert!(matches!(
        b.secret_get(SecretRef::Id(URI), SecretRead::Tracked),
        Err(ModelError::SecretNotFound(m)) if m.contains("not found")
    ));
    tools.fail("secret-get", 1, "ERROR secret owner cannot use --refresh\n");
    assert!(matches!(
        b.secret_get(SecretRef::Id(URI), SecretRead::Refresh),
        Err(ModelError::SecretOwnerCannotRefresh(_))
    ));
    tools.fail("secret-get", 1, "ERROR permission denied\n");
    assert!(matches!(
        b.secret_get(SecretRef::Id(URI), SecretRead::Tracked),
        Err(ModelError::AccessDenied(m)) if m == "permission denied"
    ));
    tools.fail(
        "secret-get",
        2,
        "ERROR specify one of --peek or --refresh but not both\n",
    );
    assert!(matches!(
        b.secret_get(SecretRef::Id(URI), SecretRead::Peek),
        Err(ModelError::Usage { .. })
    ));

    // ID and label together: refused as Juju refuses it, without a call.
    let calls = tools.calls().len();
    match b.secret_info_get(SecretRef::IdWithLabel {
        id: URI,
        label: "x",
    }) {
        Err(ModelError::Usage { tool, message }) => {
            assert_eq!(tool, "secret-info-get");
            assert_eq!(message, "specify either a secret URI or label but not both");
        }
        other => panic!("expected a usage error, got {other:?}"),
    }
    assert_eq!(tools.calls().len(), calls);

    // Output that is not a flat map of strings: the error names the key,
    // never a value.
    let tools = FakeTools::new();
    let mut b = tools.backend();
    for out in [
        r#"{"password":["hunter2-secret"]}"#,
        r#"["hunter2-secret"]"#,
        "password: hunter2-secret\n",
        "{\"password\":\"hunter2-secret",
    ] {
        tools.answer("secret-get", out);
        let err = b
            .secret_get(SecretRef::Id(URI), SecretRead::Tracked)
            .unwrap_err();
        assert!(matches!(err, ModelError::BadOutput { .. }), "{err:?}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
    }
    std::fs::write(
        tools.dir.path().join("secret-get.out"),
        b"{\"password\":\"\xff\"}",
    )
    .unwrap();
    assert!(matches!(
        b.secret_get(SecretRef::Id(URI), SecretRead::Tracked),
        Err(ModelError::BadOutput { .. })
    ));

    tools.answer("secret-get", r#"{"password":"hunter2-secret"}"#);
    let content = b
        .secret_get(SecretRef::Id(URI), SecretRead::Tracked)
        .unwrap();
    let shown = format!("{content:?}");
    assert!(
        shown.contains("password") && !shown.contains("hunter2"),
        "{shown}"
    );
}
