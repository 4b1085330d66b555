//! Juju secrets in charm-sim (modern-interfaces.md §6): the emulated
//! `secret-get`, `secret-info-get` and `secret-ids` run as subprocesses,
//! with Juju's owner and consumer rules, exit codes and formats; a new
//! revision queues `secret-changed` for the units tracking an older one;
//! and `charm-sim add-secret` / `rotate-secret` / `revoke-secret` drive it
//! from the CLI.

mod common;

use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{Ran, Sim, CHARM_SIM};
use harness::sim::context::{self, OpenContext};
use harness::sim::engine::{Hook, Step};
use harness::sim::secrets;
use harness::sim::store::Model;
use serde_json::json;
use wsgi_app::ops::{SecretHook, UnitHook};

const LABEL: &str = "db.0.user.secret";

struct Fixture {
    sim: Sim,
    model: Model,
    tools: PathBuf,
}

/// Two units of the fake charm related on `db` (relation 0) to `pg`.
fn fixture() -> Fixture {
    let sim = Sim::new("exit 0");
    sim.deploy(2);
    sim.ok(&["add-remote", "pg", "--interface", "pgsql", "--units", "1"]);
    sim.ok(&["relate", "fake:db", "pg"]);
    let tools = sim.tmp.path().join("tool-links");
    std::fs::create_dir_all(&tools).unwrap();
    for tool in harness::sim::tools::TOOL_NAMES {
        symlink(CHARM_SIM, tools.join(tool)).unwrap();
    }
    let model = Model::open(&sim.model).unwrap();
    Fixture { sim, model, tools }
}

fn creds(password: &str) -> harness::sim::store::Bag {
    [("username", "relation-0"), ("password", password)]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into()
}

impl Fixture {
    fn hook(&self, unit: &str) -> OpenContext {
        let unit = self.model.require_unit(unit).unwrap();
        context::begin(
            &self.model,
            &unit,
            &Hook::Unit(UnitHook::UpdateStatus).context_info(),
        )
        .unwrap()
    }

    fn run(&self, ctx: &OpenContext, tool: &str, args: &[&str]) -> Ran {
        let out = Command::new(self.tools.join(tool))
            .args(args)
            .env_clear()
            .envs(ctx.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn password(&self, ctx: &OpenContext, args: &[&str]) -> String {
        let mut all = vec!["--format=json"];
        all.extend_from_slice(args);
        let answer = self.run(ctx, "secret-get", &all).json();
        answer["password"].as_str().unwrap().to_string()
    }

    /// pg's user secret, granted on relation 0.
    fn provider_secret(&self) -> String {
        let uri = secrets::add_secret(&self.model, "pg", None, "", &creds("pw-1")).unwrap();
        secrets::grant(&self.model, &uri, 0).unwrap();
        uri
    }
}

#[test]
fn a_consumer_tracks_its_revision_until_it_refreshes() {
    let f = fixture();
    let uri = f.provider_secret();
    let ctx = f.hook("fake/0");

    f.run(&ctx, "secret-get", &["--label", LABEL])
        .failed(1, &format!("consumer label {LABEL:?} not found"));
    assert_eq!(f.password(&ctx, &[&uri, "--label", LABEL]), "pw-1");
    assert_eq!(
        secrets::consumer(&f.model, &uri, "fake/0").unwrap(),
        Some((Some(1), Some(LABEL.into())))
    );

    // A new revision: only the unit that read the secret hears of it.
    let (revision, notified) = secrets::publish_revision(&f.model, &uri, &creds("pw-2")).unwrap();
    assert_eq!((revision, notified), (2, vec!["fake/0".to_string()]));
    let mut queued = Vec::new();
    while let Some((seq, step)) = f.model.next_step::<Step>("fake/0").unwrap() {
        queued.push(step);
        f.model.drop_step(seq).unwrap();
    }
    let changed = Hook::Secret {
        kind: SecretHook::Changed,
        id: uri.clone(),
        label: LABEL.into(),
        revision: None,
    };
    assert_eq!(
        queued,
        [Step::Run {
            hook: changed.clone()
        }]
    );
    assert!(f.model.next_step::<Step>("fake/1").unwrap().is_none());

    assert_eq!(f.password(&ctx, &["--label", LABEL]), "pw-1", "tracked");
    assert_eq!(f.password(&ctx, &[&uri, "--peek"]), "pw-2");
    assert_eq!(
        f.password(&ctx, &["--label", LABEL]),
        "pw-1",
        "peek moves nothing"
    );
    assert_eq!(f.password(&ctx, &["--label", LABEL, "--refresh"]), "pw-2");
    assert_eq!(f.password(&ctx, &[&uri]), "pw-2");

    // Default format is YAML; a key prints its value; #base64 encodes it.
    let yaml = f.run(&ctx, "secret-get", &[&uri]);
    assert_eq!(yaml.stdout, "password: pw-2\nusername: relation-0\n");
    assert_eq!(
        f.run(&ctx, "secret-get", &[&uri, "password"]).stdout,
        "pw-2\n"
    );
    assert_eq!(
        f.run(
            &ctx,
            "secret-get",
            &[&uri, "password#base64", "--format=json"]
        )
        .json(),
        json!("cHctMg==")
    );
    f.run(&ctx, "secret-get", &[&uri, "nope"])
        .failed(1, "not found");
    context::finish(&f.model, &ctx, Some(0)).unwrap();

    // The secret-changed hook's environment.
    let unit = f.model.require_unit("fake/0").unwrap();
    let hook_ctx = context::begin(&f.model, &unit, &changed.context_info()).unwrap();
    let env: std::collections::BTreeMap<_, _> = hook_ctx.env.iter().cloned().collect();
    assert_eq!(env["JUJU_DISPATCH_PATH"], "hooks/secret-changed");
    assert_eq!(env["JUJU_HOOK_NAME"], "secret-changed");
    assert_eq!(env["JUJU_SECRET_ID"], uri);
    assert_eq!(env["JUJU_SECRET_LABEL"], LABEL);
    assert!(!env.contains_key("JUJU_SECRET_REVISION"));
}

#[test]
fn grants_owners_and_usage_follow_juju() {
    let f = fixture();
    let uri = f.provider_secret();
    let ungranted = secrets::add_secret(&f.model, "pg", None, "", &creds("x")).unwrap();
    let ours = secrets::add_secret(&f.model, "fake", None, "admin", &creds("own")).unwrap();
    let ctx = f.hook("fake/1");

    f.run(&ctx, "secret-get", &[&ungranted])
        .failed(1, "permission denied");
    f.run(&ctx, "secret-info-get", &[&uri])
        .failed(1, "permission denied");
    f.run(&ctx, "secret-get", &["secret:cn8f3mvmp25c7a5b6b2g"])
        .failed(1, "not found");
    f.run(&ctx, "secret-get", &["nonsense"])
        .failed(2, "invalid secret URI");
    f.run(&ctx, "secret-get", &[])
        .failed(2, "secret URI or label");
    f.run(&ctx, "secret-get", &[&uri, "--peek", "--refresh"])
        .failed(2, "specify one of --peek or --refresh but not both");
    f.run(&ctx, "secret-info-get", &[&ours, "--label", "admin"])
        .failed(2, "specify either a secret URI or label but not both");

    // The owner: latest always, no --refresh.
    assert_eq!(f.password(&ctx, &["--label", "admin"]), "own");
    f.run(&ctx, "secret-get", &[&ours, "--refresh"])
        .failed(1, "secret owner cannot use --refresh");
    assert_eq!(
        f.run(
            &ctx,
            "secret-info-get",
            &["--label", "admin", "--format=json"]
        )
        .json(),
        json!({ &ours: {"revision": 1, "label": "admin", "owner": "application"} })
    );
    assert_eq!(
        f.run(&ctx, "secret-ids", &["--format=json"]).json(),
        json!([ours])
    );

    // ID and label together: a non-leader just reads; the leader
    // relabels its application's secret (Juju 3.6).
    let label_of = |f: &Fixture| secrets::secret(&f.model, &ours).unwrap().unwrap().label;
    assert!(!f.model.require_unit("fake/1").unwrap().leader);
    assert_eq!(f.password(&ctx, &[&ours, "--label", "admin-2"]), "own");
    assert_eq!(label_of(&f), "admin");
    let leader = f.hook("fake/0");
    assert_eq!(f.password(&leader, &[&ours, "--label", "admin-2"]), "own");
    assert_eq!(label_of(&f), "admin-2");
    assert_eq!(f.password(&ctx, &["--label", "admin-2"]), "own");

    // A first read, even a peek, starts tracking.
    let peeked = secrets::add_secret(&f.model, "pg", None, "", &creds("first")).unwrap();
    secrets::grant(&f.model, &peeked, 0).unwrap();
    assert_eq!(f.password(&ctx, &[&peeked, "--peek"]), "first");
    assert_eq!(
        secrets::consumer(&f.model, &peeked, "fake/1").unwrap(),
        Some((Some(1), None))
    );

    // Revoked, or the relation gone: refused.
    assert_eq!(f.password(&ctx, &[&uri]), "pw-1");
    secrets::revoke(&f.model, &uri, 0).unwrap();
    f.run(&ctx, "secret-get", &[&uri])
        .failed(1, "permission denied");
}

/// `charm-sim add-secret` / `rotate-secret`: the charm's secret-changed
/// runs on each unit that read the secret, with its ID and label.
#[test]
fn the_cli_creates_and_rotates_a_granted_secret() {
    let f = fixture();
    let uri = f
        .sim
        .ok(&[
            "add-secret",
            "pg",
            "--grant",
            "db:0",
            "username=u",
            "password=p1",
        ])
        .trim()
        .to_string();
    assert!(uri.starts_with("secret:"), "{uri}");
    let ctx = f.hook("fake/0");
    assert_eq!(f.password(&ctx, &[&uri, "--label", LABEL]), "p1");
    context::finish(&f.model, &ctx, Some(0)).unwrap();

    let out = f
        .sim
        .ok(&["rotate-secret", &uri, "username=u", "password=p2"]);
    assert!(out.contains("revision 2"), "{out}");
    let events: Vec<_> = f
        .sim
        .events()
        .into_iter()
        .filter(|(_, path, ..)| path == "hooks/secret-changed")
        .map(|(unit, ..)| unit)
        .collect();
    assert_eq!(events, ["fake/0"]);

    let err = f
        .sim
        .cli(&["rotate-secret", "secret:cn8f3mvmp25c7a5b6b2g", "a=b"]);
    assert!(!err.status.success());
    let err = f.sim.cli(&["add-secret", "fake", "a=b"]);
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("charm under test"));
}
