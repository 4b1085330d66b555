//! The emulated hook tools, run as subprocesses through symlinks named like
//! each tool, against shared/reference/juju-hook-tools.md: exit codes 2
//! (usage) vs 1 (runtime) with `ERROR` on stderr, JSON shapes, sorting,
//! missing keys, buffered vs immediate writes, action-set key rules and the
//! gnuflag grammar.
//!
//! Why one file over 600 lines: one test per behaviour of the tools in the
//! reference, in its order, sharing the subprocess helpers.

mod common;

use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{Ran, Sim, CHARM_SIM};
use harness::sim::context::{self, ContextInfo, OpenContext};
use harness::sim::engine::Hook;
use harness::sim::store::Model;
use serde_json::{json, Value};
use wsgi_app::ops::{RelationHook, UnitHook};

/// A model with two units of the fake charm, related on `db` to a remote
/// `pg` with two units, and a directory of tool symlinks.
struct Fixture {
    sim: Sim,
    model: Model,
    tools: PathBuf,
}

fn fixture() -> Fixture {
    let sim = Sim::new("exit 0");
    sim.deploy(2);
    sim.ok(&[
        "add-remote",
        "pg",
        "--interface",
        "pgsql",
        "--units",
        "2",
        "--unit-data",
        "host=db.example",
        "--app-data",
        "version=14",
    ]);
    sim.ok(&["relate", "fake:db", "pg"]);
    let tools = sim.tmp.path().join("tool-links");
    std::fs::create_dir_all(&tools).unwrap();
    for tool in harness::sim::tools::TOOL_NAMES {
        symlink(CHARM_SIM, tools.join(tool)).unwrap();
    }
    let model = Model::open(&sim.model).unwrap();
    Fixture { sim, model, tools }
}

impl Fixture {
    fn begin(&self, unit: &str, info: ContextInfo) -> OpenContext {
        let unit = self.model.require_unit(unit).unwrap();
        context::begin(&self.model, &unit, &info).unwrap()
    }

    /// A plain hook context (config-changed) on `unit`.
    fn hook(&self, unit: &str) -> OpenContext {
        self.begin(unit, Hook::Unit(UnitHook::ConfigChanged).context_info())
    }

    /// A relation hook context on `unit` for relation `db:0`.
    fn relation_hook(&self, unit: &str, kind: RelationHook, remote: Option<&str>) -> OpenContext {
        let hook = Hook::Relation {
            kind,
            relation_id: 0,
            endpoint: "db".into(),
            remote_app: "pg".into(),
            remote_unit: remote.map(str::to_string),
            departing_unit: None,
        };
        self.begin(unit, hook.context_info())
    }

    fn run(&self, ctx: &OpenContext, tool: &str, args: &[&str], stdin: Option<&str>) -> Ran {
        let mut cmd = Command::new(self.tools.join(tool));
        cmd.args(args)
            .env_clear()
            .envs(ctx.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        let mut child = cmd.spawn().expect("spawn tool");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn finish(&self, ctx: &OpenContext, code: i32) {
        context::finish(&self.model, ctx, Some(code)).unwrap();
    }
}

#[test]
fn tools_need_a_context() {
    let f = fixture();
    let out = Command::new(f.tools.join("config-get"))
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "ERROR JUJU_CONTEXT_ID not set\n"
    );
    // A finished context no longer answers.
    let ctx = f.hook("fake/0");
    f.finish(&ctx, 0);
    f.run(&ctx, "config-get", &[], None)
        .failed(1, "unknown context");
}

#[test]
fn config_get_shapes_and_missing_keys() {
    let f = fixture();
    let ctx = f.hook("fake/0");
    let all = f.run(&ctx, "config-get", &["--format=json"], None).json();
    // Unset options without default are absent; a whole float prints as 2.
    assert_eq!(all, json!({"port": 8080, "ratio": 2, "flag": false}));
    assert_eq!(
        f.run(&ctx, "config-get", &["--format=json"], None).stdout,
        "{\"flag\":false,\"port\":8080,\"ratio\":2}\n"
    );
    let with_all = f
        .run(&ctx, "config-get", &["--all", "--format", "json"], None)
        .json();
    assert_eq!(with_all["label"], Value::Null);
    for key in ["label", "no-such-option"] {
        let ran = f.run(&ctx, "config-get", &[key, "--format=json"], None);
        assert_eq!((ran.code, ran.stdout.as_str()), (0, "null\n"), "{key}");
        let smart = f.run(&ctx, "config-get", &[key], None);
        assert_eq!((smart.code, smart.stdout.as_str()), (0, ""), "{key}");
    }
    assert_eq!(f.run(&ctx, "config-get", &["flag"], None).stdout, "False\n");
    assert_eq!(f.run(&ctx, "config-get", &["port"], None).stdout, "8080\n");
    f.run(&ctx, "config-get", &["port", "--all"], None)
        .failed(2, "cannot use argument --all together with key");
    f.run(&ctx, "config-get", &["a", "b"], None)
        .failed(2, "unrecognized args: [\"b\"]");
    f.run(&ctx, "config-get", &["--format=xml"], None)
        .failed(2, "invalid value \"xml\" for flag --format");
}

#[test]
fn flag_grammar() {
    let f = fixture();
    let ctx = f.hook("fake/0");
    // -r 0, -r0, --relation=db:0 and --relation db:0 all name relation 0.
    for args in [
        vec!["-r", "0"],
        vec!["-r0"],
        vec!["--relation=db:0"],
        vec!["--relation", "anything:0"],
    ] {
        let mut full = args.clone();
        full.push("--format=json");
        assert_eq!(
            f.run(&ctx, "relation-list", &full, None).json(),
            json!(["pg/0", "pg/1"]),
            "{args:?}"
        );
    }
    // -r=0 gives the value "=0", which is not a relation id.
    f.run(&ctx, "relation-list", &["-r=0"], None)
        .failed(2, "invalid value \"=0\" for flag -r: invalid relation id");
    f.run(&ctx, "relation-list", &["-r", "db:99"], None)
        .failed(2, "relation not found");
    f.run(&ctx, "relation-list", &["-r"], None)
        .failed(2, "flag needs an argument: -r");
    f.run(&ctx, "relation-list", &["--bogus"], None)
        .failed(2, "flag provided but not defined: --bogus");
    // One dash reads letters: -format is -f -o -r...
    f.run(&ctx, "config-get", &["-format", "json"], None)
        .failed(2, "flag provided but not defined: -f");
    // Flags after positionals, bool flags with explicit values, `--`.
    assert_eq!(
        f.run(&ctx, "relation-ids", &["db", "--format=json"], None)
            .json(),
        json!(["db:0"])
    );
    assert_eq!(
        f.run(
            &ctx,
            "relation-list",
            &["-r", "0", "--app=True", "--format=json"],
            None
        )
        .json(),
        json!("pg")
    );
    assert_eq!(
        f.run(
            &ctx,
            "relation-list",
            &["-r", "0", "--app=false", "--format=json"],
            None
        )
        .json(),
        json!(["pg/0", "pg/1"])
    );
    f.run(&ctx, "relation-list", &["-r", "0", "--app=perhaps"], None)
        .failed(2, "invalid value \"perhaps\" for flag --app");
    assert_eq!(
        f.run(
            &ctx,
            "status-set",
            &["maintenance", "--", "-starts with a dash"],
            None
        )
        .code,
        0
    );
    assert_eq!(
        f.model.require_unit("fake/0").unwrap().workload.message,
        "-starts with a dash"
    );
    let help = f.run(&ctx, "relation-get", &["-h"], None);
    assert_eq!(help.code, 0);
    assert!(help.stdout.contains("--relation"));
}

#[test]
fn relation_ids_and_lists_sort_as_strings() {
    let sim_fixture = fixture();
    // Relations db:1 .. db:10 next to db:0, and a remote with 11 units.
    for n in 1..=10 {
        let name = format!("pg{n}");
        sim_fixture.sim.ok(&[
            "add-remote",
            &name,
            "--interface",
            "pgsql",
            "--units",
            if n == 10 { "11" } else { "1" },
        ]);
        sim_fixture.sim.ok(&["relate", "fake:db", &name]);
    }
    let f = sim_fixture;
    let ctx = f.hook("fake/0");
    let ids = f
        .run(&ctx, "relation-ids", &["db", "--format=json"], None)
        .json();
    let ids: Vec<String> = serde_json::from_value(ids).unwrap();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    assert_eq!(ids.len(), 11);
    let pos = |k: &str| ids.iter().position(|i| i == k).unwrap();
    assert!(pos("db:10") < pos("db:2"), "lexicographic: {ids:?}");
    assert_eq!(
        f.run(&ctx, "relation-ids", &["website", "--format=json"], None)
            .json(),
        json!([])
    );
    assert_eq!(
        f.run(
            &ctx,
            "relation-ids",
            &["no-such-endpoint", "--format=json"],
            None
        )
        .json(),
        json!([])
    );
    f.run(&ctx, "relation-ids", &[], None)
        .failed(2, "no endpoint name specified");
    assert_eq!(
        f.run(&ctx, "relation-ids", &["db"], None)
            .stdout
            .lines()
            .count(),
        11,
        "smart: one per line"
    );

    let units: Vec<String> = serde_json::from_value(
        f.run(&ctx, "relation-list", &["-r", "10", "--format=json"], None)
            .json(),
    )
    .unwrap();
    assert_eq!(units.len(), 11);
    assert!(
        units.iter().position(|u| u == "pg10/10") < units.iter().position(|u| u == "pg10/2"),
        "{units:?}"
    );

    // relation-ids leaves out the relation whose -broken hook runs.
    let hook = Hook::Relation {
        kind: RelationHook::Broken,
        relation_id: 3,
        endpoint: "db".into(),
        remote_app: "pg3".into(),
        remote_unit: None,
        departing_unit: None,
    };
    let broken = f.begin("fake/0", hook.context_info());
    let ids = f
        .run(&broken, "relation-ids", &["--format=json"], None)
        .json();
    assert_eq!(ids.as_array().unwrap().len(), 10);
    assert!(!ids.as_array().unwrap().contains(&json!("db:3")));
}

#[test]
fn relation_get_targets_and_missing_keys() {
    let f = fixture();
    let joined = f.relation_hook("fake/0", RelationHook::Changed, Some("pg/1"));
    // Default target: the hook's remote unit.
    let bag = f
        .run(&joined, "relation-get", &["--format=json"], None)
        .json();
    assert_eq!(bag["host"], "db.example");
    assert_eq!(bag["private-address"], "127.0.62.2");
    assert_eq!(bag["ingress-address"], "127.0.62.2");
    assert_eq!(bag["egress-subnets"], "127.0.62.2/32");
    assert_eq!(
        f.run(&joined, "relation-get", &["host"], None).stdout,
        "db.example\n"
    );
    assert_eq!(
        f.run(
            &joined,
            "relation-get",
            &["-", "pg/0", "--format=json"],
            None
        )
        .json()["private-address"],
        "127.0.62.1"
    );
    let missing = f.run(&joined, "relation-get", &["nope", "--format=json"], None);
    assert_eq!((missing.code, missing.stdout.as_str()), (0, "null\n"));
    assert_eq!(
        f.run(
            &joined,
            "relation-get",
            &["--app", "-", "pg", "--format=json"],
            None
        )
        .json(),
        json!({"version": "14"})
    );
    assert_eq!(
        f.run(&joined, "relation-get", &["--app", "version", "pg/0"], None)
            .stdout,
        "14\n"
    );
    f.run(&joined, "relation-get", &["-", "pg"], None)
        .failed(2, "expected unit name, got application name \"pg\"");
    f.run(&joined, "relation-get", &["-", "Not_A_Unit"], None)
        .failed(2, "invalid unit name");
    f.run(&joined, "relation-get", &["-", "other/0"], None)
        .failed(1, "settings not found");
    // Own unit bag: the seeded addresses.
    assert_eq!(
        f.run(
            &joined,
            "relation-get",
            &["private-address", "fake/0"],
            None
        )
        .stdout,
        "127.0.61.1\n"
    );

    // In relation-created there is no remote unit: the remote app is read.
    let created = f.relation_hook("fake/0", RelationHook::Created, None);
    assert_eq!(
        f.run(&created, "relation-get", &["--format=json"], None)
            .json(),
        json!({"version": "14"})
    );
    // Outside a relation hook, -r is needed.
    let plain = f.hook("fake/0");
    f.run(&plain, "relation-get", &["-", "pg/0"], None)
        .failed(2, "no relation id specified");
    // Own app bag: leader only.
    let minion = f.relation_hook("fake/1", RelationHook::Changed, Some("pg/0"));
    f.run(&minion, "relation-get", &["--app", "-", "fake"], None)
        .failed(1, "permission denied");
}

#[test]
fn relation_set_is_buffered_until_the_hook_succeeds() {
    let f = fixture();
    let committed = |key: &str| f.model.bag(0, "fake/0").unwrap().get(key).cloned();

    // A failing hook: its writes are visible inside it, then dropped.
    let failing = f.hook("fake/0");
    assert_eq!(
        f.run(&failing, "relation-set", &["-r", "db:0", "lost=yes"], None)
            .code,
        0
    );
    assert_eq!(
        f.run(
            &failing,
            "relation-get",
            &["-r", "0", "lost", "fake/0"],
            None
        )
        .stdout,
        "yes\n"
    );
    assert_eq!(
        committed("lost"),
        None,
        "not visible to others before commit"
    );
    f.finish(&failing, 1);
    assert_eq!(committed("lost"), None, "discarded after a failed hook");

    // A succeeding hook: --file values kept verbatim, args trimmed and
    // overriding the file, "" deleting.
    let ok = f.hook("fake/0");
    let file = r#"{"spaced": "  kept  ", "over": "file", "private-address": ""}"#;
    let ran = f.run(
        &ok,
        "relation-set",
        &["-r", "db:0", "--file", "-", " over = arg "],
        Some(file),
    );
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(
        f.run(&ok, "relation-set", &["-r", "0", "n=1", "n=2"], None)
            .code,
        2,
        "duplicate keys"
    );
    f.run(&ok, "relation-set", &["-r", "0", "=v"], None)
        .failed(2, "expected \"key=value\"");
    f.finish(&ok, 0);
    assert_eq!(committed("spaced").as_deref(), Some("  kept  "));
    assert_eq!(committed("over").as_deref(), Some("arg"));
    assert_eq!(committed("private-address"), None, "an empty value deletes");

    // --app needs leadership.
    let minion = f.hook("fake/1");
    f.run(&minion, "relation-set", &["-r", "0", "--app", "k=v"], None)
        .failed(1, "cannot write relation settings");
    let leader = f.hook("fake/0");
    assert_eq!(
        f.run(&leader, "relation-set", &["-r", "0", "--app", "k=v"], None)
            .code,
        0
    );
    assert_eq!(
        f.run(
            &leader,
            "relation-get",
            &["-r", "0", "--app", "k", "fake"],
            None
        )
        .stdout,
        "v\n"
    );
    f.finish(&leader, 0);
    assert_eq!(f.model.bag(0, "fake").unwrap()["k"], "v");
}

#[test]
fn status_set_is_immediate_and_checked() {
    let f = fixture();
    let ctx = f.hook("fake/1");
    assert_eq!(
        f.run(&ctx, "status-set", &["blocked", "need config"], None)
            .code,
        0
    );
    f.finish(&ctx, 1);
    let unit = f.model.require_unit("fake/1").unwrap();
    assert_eq!(
        (
            unit.workload.current.as_str(),
            unit.workload.message.as_str()
        ),
        ("blocked", "need config")
    );

    let ctx = f.hook("fake/1");
    f.run(&ctx, "status-set", &["error", "x"], None).failed(
        2,
        "invalid status \"error\", expected one of [maintenance blocked waiting active]",
    );
    f.run(&ctx, "status-set", &["active", "a", "b"], None)
        .failed(2, "unrecognized args: [\"b\"]");
    f.run(&ctx, "status-set", &["--application", "active"], None)
        .failed(1, "this unit is not the leader");
    assert_eq!(
        f.run(&ctx, "status-get", &["--format=json"], None).json(),
        json!({"status": "blocked"})
    );
    assert_eq!(
        f.run(
            &ctx,
            "status-get",
            &["--include-data", "--format=json"],
            None
        )
        .json(),
        json!({"status": "blocked", "message": "need config", "status-data": {}})
    );
    assert_eq!(f.run(&ctx, "status-get", &[], None).stdout, "blocked\n");
    f.run(&ctx, "status-get", &["--application"], None)
        .failed(1, "not the leader");

    let leader = f.hook("fake/0");
    assert_eq!(
        f.run(
            &leader,
            "status-set",
            &["--application=True", "active", "all good"],
            None
        )
        .code,
        0
    );
    let app = f
        .run(
            &leader,
            "status-get",
            &["--application", "--include-data", "--format=json"],
            None,
        )
        .json();
    assert_eq!(app["application-status"]["status"], "active");
    assert_eq!(
        app["application-status"]["units"]["fake/1"]["status"],
        "blocked"
    );
}

#[test]
fn action_tools_follow_juju_rules() {
    let f = fixture();
    let hook = f.hook("fake/0");
    f.run(&hook, "action-get", &[], None)
        .failed(1, "not running an action");
    f.run(&hook, "action-set", &["a=1"], None)
        .failed(1, "not running an action");
    // Key rules are checked before anything else (exit 2, even outside an action).
    for (arg, why) in [
        ("Key=1", "must start and end with lowercase alphanumeric"),
        ("a_b=1", "must start and end with lowercase alphanumeric"),
        ("-a=1", "must start and end with lowercase alphanumeric"),
        ("a-=1", "must start and end with lowercase alphanumeric"),
        ("stdout=1", "cannot set reserved action key \"stdout\""),
        (
            "foo.stderr-encoding=1",
            "cannot set reserved action key \"stderr-encoding\"",
        ),
        ("novalue", "must be of the form key...=value"),
    ] {
        // After `--`, so that `-a=1` is an argument, not a flag.
        f.run(&hook, "action-set", &["--", arg], None)
            .failed(2, why);
    }

    let id = f
        .model
        .add_action("fake/0", "greet", &json!({"name": "bob", "opts": {"n": 2}}))
        .unwrap();
    let info = ContextInfo {
        dispatch_path: Some("actions/greet".into()),
        action_id: Some(id),
        action_name: Some("greet".into()),
        ..ContextInfo::default()
    };
    let action = f.begin("fake/0", info);
    assert!(
        action
            .env
            .contains(&("JUJU_HOOK_NAME".into(), String::new())),
        "JUJU_HOOK_NAME is empty for actions"
    );
    assert!(action
        .env
        .contains(&("JUJU_ACTION_TAG".into(), format!("action-{id}"))));
    assert_eq!(
        f.run(&action, "action-get", &["--format=json"], None)
            .json(),
        json!({"name": "bob", "opts": {"n": 2}})
    );
    assert_eq!(
        f.run(&action, "action-get", &["opts.n", "--format=json"], None)
            .json(),
        json!(2)
    );
    let missing = f.run(&action, "action-get", &["opts.zz", "--format=json"], None);
    assert_eq!((missing.code, missing.stdout.as_str()), (0, "null\n"));
    assert_eq!(
        f.run(
            &action,
            "action-set",
            &["out.a-b=1", "out.c=x=y", "top=2"],
            None
        )
        .code,
        0
    );
    assert_eq!(f.run(&action, "action-set", &["top=3"], None).code, 0);
    assert_eq!(
        f.run(&action, "action-log", &["working", "hard"], None)
            .code,
        0
    );
    f.run(&action, "action-log", &[], None)
        .failed(2, "no message specified");
    f.run(&action, "action-fail", &["a", "b"], None)
        .failed(2, "unrecognized args");
    assert_eq!(f.run(&action, "action-fail", &[], None).code, 0);
    f.finish(&action, 0);
    let record = f.model.action(id).unwrap();
    assert_eq!(
        record.results,
        json!({"out": {"a-b": "1", "c": "x=y"}, "top": "3"})
    );
    assert_eq!(record.status, "failed");
    assert_eq!(
        record.message,
        "action failed without reason given, check action for errors"
    );
    assert_eq!(f.model.action_logs(id, 0).unwrap()[0].1, "working hard");
}

#[test]
fn ports_are_buffered_and_validated() {
    let f = fixture();
    let ctx = f.hook("fake/0");
    assert_eq!(f.run(&ctx, "open-port", &["8080"], None).code, 0);
    assert_eq!(f.run(&ctx, "open-port", &["53/UDP"], None).code, 0);
    assert_eq!(f.run(&ctx, "open-port", &["icmp"], None).code, 0);
    assert_eq!(
        f.run(
            &ctx,
            "open-port",
            &["9000-9010/tcp", "--endpoints", "website"],
            None
        )
        .code,
        0
    );
    // Reads see this hook's pending changes, sorted icmp < tcp < udp.
    assert_eq!(
        f.run(&ctx, "opened-ports", &["--format=json"], None).json(),
        json!(["icmp", "8080/tcp", "9000-9010/tcp", "53/udp"])
    );
    assert_eq!(
        f.run(
            &ctx,
            "opened-ports",
            &["--endpoints", "--format=json"],
            None
        )
        .json(),
        json!([
            "icmp (*)",
            "8080/tcp (*)",
            "9000-9010/tcp (website)",
            "53/udp (*)"
        ])
    );
    f.run(&ctx, "open-port", &["9005/tcp"], None)
        .failed(1, "port range conflicts");
    f.run(&ctx, "open-port", &["80/sctp"], None).failed(
        2,
        "invalid protocol \"sctp\", expected \"tcp\", \"udp\", or \"icmp\"",
    );
    f.run(&ctx, "open-port", &["90-80/tcp"], None)
        .failed(2, "invalid port range");
    f.run(&ctx, "open-port", &["http"], None)
        .failed(2, "invalid port");
    f.run(&ctx, "open-port", &[], None)
        .failed(2, "no port or range specified");
    assert_eq!(f.run(&ctx, "close-port", &["icmp"], None).code, 0);
    assert!(
        f.model.ports("fake/0").unwrap().is_empty(),
        "nothing committed yet"
    );
    f.finish(&ctx, 1);
    assert!(
        f.model.ports("fake/0").unwrap().is_empty(),
        "discarded after a failed hook"
    );

    let ctx = f.hook("fake/0");
    assert_eq!(f.run(&ctx, "open-port", &["8080/tcp"], None).code, 0);
    f.finish(&ctx, 0);
    let ctx = f.hook("fake/0");
    assert_eq!(f.run(&ctx, "opened-ports", &[], None).stdout, "8080/tcp\n");
}

#[test]
fn addresses_network_and_leadership() {
    let f = fixture();
    let ctx = f.hook("fake/1");
    assert_eq!(
        f.run(&ctx, "unit-get", &["private-address"], None).stdout,
        "127.0.61.2\n"
    );
    assert_eq!(
        f.run(&ctx, "unit-get", &["public-address", "--format=json"], None)
            .json(),
        json!("127.0.61.2")
    );
    f.run(&ctx, "unit-get", &["mac"], None)
        .failed(2, "unknown setting \"mac\"");
    f.run(&ctx, "unit-get", &[], None)
        .failed(2, "no setting specified");
    let net = f
        .run(&ctx, "network-get", &["website", "--format=json"], None)
        .json();
    assert_eq!(net["ingress-addresses"], json!(["127.0.61.2"]));
    assert_eq!(net["egress-subnets"], json!(["127.0.61.2/32"]));
    assert_eq!(
        net["bind-addresses"][0]["addresses"][0]["value"],
        "127.0.61.2"
    );
    assert_eq!(
        f.run(
            &ctx,
            "network-get",
            &["db", "-r", "0", "--ingress-address"],
            None
        )
        .stdout,
        "127.0.61.2\n"
    );
    assert_eq!(
        f.run(
            &ctx,
            "network-get",
            &[
                "db",
                "--ingress-address",
                "--egress-subnets",
                "--format=json"
            ],
            None
        )
        .json(),
        json!({"ingress-address": "127.0.61.2", "egress-subnets": ["127.0.61.2/32"]})
    );
    f.run(&ctx, "network-get", &[], None)
        .failed(2, "no arguments specified");
    f.run(&ctx, "network-get", &["nope"], None)
        .failed(1, "no network config found for binding \"nope\"");

    assert_eq!(
        f.run(&ctx, "is-leader", &["--format=json"], None).json(),
        json!(false)
    );
    assert_eq!(f.run(&ctx, "is-leader", &[], None).stdout, "False\n");
    f.run(&ctx, "leader-set", &["a=b"], None)
        .failed(1, "not the leader");
    let leader = f.hook("fake/0");
    assert_eq!(
        f.run(&leader, "is-leader", &["--format=json"], None).json(),
        json!(true)
    );
    assert_eq!(
        f.run(&leader, "leader-set", &["a= 1 ", "b=2"], None).code,
        0
    );
    // Immediate: another context sees it before this one ends.
    assert_eq!(
        f.run(&ctx, "leader-get", &["--format=json"], None).json(),
        json!({"a": "1", "b": "2"})
    );
    assert_eq!(
        f.run(&ctx, "leader-get", &["zz", "--format=json"], None)
            .stdout,
        "null\n"
    );
    f.run(&ctx, "leader-get", &["k=v"], None)
        .failed(2, "invalid key \"k=v\"");
}

#[test]
fn logs_and_version() {
    let f = fixture();
    let ctx = f.relation_hook("fake/0", RelationHook::Changed, Some("pg/0"));
    assert_eq!(
        f.run(
            &ctx,
            "juju-log",
            &["--log-level", "warning", "--", "-careful"],
            None
        )
        .code,
        0
    );
    assert_eq!(
        f.run(&ctx, "juju-log", &["-l", "LOUD", "hello"], None).code,
        0,
        "an unknown level is not an error"
    );
    f.run(&ctx, "juju-log", &[], None)
        .failed(2, "no message specified");
    let logs = f.model.logs("fake/0").unwrap();
    assert!(
        logs.contains(&("WARNING".into(), "db:0: -careful".into())),
        "{logs:?}"
    );
    assert!(
        logs.contains(&("INFO".into(), "db:0: hello".into())),
        "{logs:?}"
    );

    assert_eq!(
        f.run(&ctx, "application-version-set", &["--", "1.2.3"], None)
            .code,
        0
    );
    f.run(&ctx, "application-version-set", &[], None)
        .failed(2, "no version specified");
    f.finish(&ctx, 1);
    assert_eq!(
        f.model.require_app("fake").unwrap().version,
        "1.2.3",
        "immediate"
    );
}

#[test]
fn hook_environment_is_built_like_juju() {
    let f = fixture();
    let ctx = f.relation_hook("fake/1", RelationHook::Created, None);
    let env: std::collections::BTreeMap<_, _> = ctx.env.iter().cloned().collect();
    assert_eq!(env["JUJU_DISPATCH_PATH"], "hooks/db-relation-created");
    assert_eq!(env["JUJU_HOOK_NAME"], "db-relation-created");
    assert_eq!(env["JUJU_RELATION_ID"], "db:0");
    assert_eq!(env["JUJU_REMOTE_UNIT"], "", "present but empty for created");
    assert_eq!(env["JUJU_REMOTE_APP"], "pg");
    assert_eq!(env["JUJU_UNIT_NAME"], "fake/1");
    assert_eq!(env["WSGI_APP_BIND_ADDRESS"], "127.0.61.2");
    assert_eq!(env["JUJU_PRINCIPAL_UNIT"], "");
    assert!(env["JUJU_CONTEXT_ID"].starts_with("fake/1-db-relation-created-"));
    assert!(env["PATH"]
        .split(':')
        .next()
        .unwrap()
        .ends_with("units/fake-1/tools"));
    assert!(!env.contains_key("HOME"));
    assert!(!env.contains_key("JUJU_DEPARTING_UNIT"));
}
