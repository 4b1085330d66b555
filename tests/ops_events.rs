//! Events: every kind parsed from the environment Juju gives a hook
//! (shared/reference/juju-hook-tools.md §1.2 and Appendix B), and the
//! harness' `on::` constructors building that same environment.

mod ops_support;

use std::collections::BTreeMap;

use harness::{on, Relation, State};
use ops_support::idle;
use serde_json::json;
use wsgi_app::ops::event::{SecretEvent, StorageEvent};
use wsgi_app::ops::{
    ActionEvent, Dispatch, Event, EventError, RelationEvent, RelationHook, RelationId, SecretHook,
    StorageHook, UnitHook,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::AsRefStr)]
#[strum(serialize_all = "kebab-case")]
enum Ep {
    Db,
    Website,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::AsRefStr)]
#[strum(serialize_all = "kebab-case")]
enum Act {
    Backup,
}

type Ev = Event<Ep, Act>;

/// Appendix B: the environment of `db-relation-changed` on `myapp/0`,
/// including the variables that say nothing about the event.
fn appendix_b() -> BTreeMap<String, String> {
    let agent = "/var/lib/juju/agents/unit-myapp-0";
    [
        ("JUJU_DISPATCH_PATH", "hooks/db-relation-changed"),
        ("JUJU_HOOK_NAME", "db-relation-changed"),
        ("JUJU_RELATION", "db"),
        ("JUJU_RELATION_ID", "db:7"),
        ("JUJU_REMOTE_APP", "postgresql"),
        ("JUJU_REMOTE_UNIT", "postgresql/1"),
        ("JUJU_UNIT_NAME", "myapp/0"),
        ("JUJU_MODEL_NAME", "dev"),
        ("JUJU_MODEL_UUID", "0b6a3f5e-9e1c-4c4f-8f43-1b0e3a7d2c11"),
        ("JUJU_VERSION", "3.6.4"),
        ("JUJU_MACHINE_ID", "0"),
        ("JUJU_CHARM_DIR", "/var/lib/juju/agents/unit-myapp-0/charm"),
        ("CHARM_DIR", "/var/lib/juju/agents/unit-myapp-0/charm"),
        (
            "JUJU_CONTEXT_ID",
            "myapp/0-db-relation-changed-5d3f1c0a9b2e",
        ),
        ("JUJU_AGENT_SOCKET_NETWORK", "unix"),
        (
            "JUJU_AGENT_SOCKET_ADDRESS",
            "@/var/lib/juju/agents/unit-myapp-0/agent.socket",
        ),
        ("JUJU_PRINCIPAL_UNIT", ""),
        ("JUJU_AVAILABILITY_ZONE", "zone-a"),
        ("JUJU_API_ADDRESSES", "10.0.0.2:17070 10.0.0.3:17070"),
        ("CLOUD_API_VERSION", ""),
        ("JUJU_CHARM_HTTP_PROXY", ""),
        ("JUJU_CHARM_HTTPS_PROXY", ""),
        ("JUJU_CHARM_FTP_PROXY", ""),
        ("JUJU_CHARM_NO_PROXY", ""),
        ("JUJU_SLA", "unsupported"),
        ("LANG", "C.UTF-8"),
        ("TERM", "tmux-256color"),
        ("DEBIAN_FRONTEND", "noninteractive"),
        ("APT_LISTCHANGES_FRONTEND", "none"),
        ("PATH", "/var/lib/juju/tools/unit-myapp-0:/usr/bin:/bin"),
    ]
    .into_iter()
    .map(|(k, v)| {
        (
            k.to_string(),
            v.replace("/var/lib/juju/agents/unit-myapp-0", agent),
        )
    })
    .collect()
}

fn with(changes: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut env = appendix_b();
    // Start from a unit hook: drop the relation variables, then apply.
    for k in [
        "JUJU_RELATION",
        "JUJU_RELATION_ID",
        "JUJU_REMOTE_APP",
        "JUJU_REMOTE_UNIT",
    ] {
        env.remove(k);
    }
    for (k, v) in changes {
        env.insert(k.to_string(), v.to_string());
    }
    env
}

fn parse(env: BTreeMap<String, String>) -> Result<Ev, EventError> {
    let dispatch = Dispatch::from_env(env, None)?;
    assert_eq!(dispatch.unit, "myapp/0");
    Ev::parse(&dispatch.vars, None)
}

fn db(hook: RelationHook, remote_unit: Option<&str>, departing: Option<&str>) -> Ev {
    Event::Relation(RelationEvent {
        hook,
        relation: RelationId {
            endpoint: Ep::Db,
            id: 7,
        },
        remote_app: "postgresql".into(),
        remote_unit: remote_unit.map(str::to_string),
        departing_unit: departing.map(str::to_string),
    })
}

#[test]
fn appendix_b_relation_changed() {
    assert_eq!(
        parse(appendix_b()).unwrap(),
        db(RelationHook::Changed, Some("postgresql/1"), None)
    );
    let dispatch = Dispatch::from_env(appendix_b(), None).unwrap();
    assert_eq!(
        dispatch.charm_dir,
        std::path::Path::new("/var/lib/juju/agents/unit-myapp-0/charm")
    );
    // Only the identifying variables are kept (and stored when deferred).
    assert!(!dispatch.vars.contains_key("PATH"));
    assert!(!dispatch.vars.contains_key("JUJU_CONTEXT_ID"));
}

#[test]
fn app_level_relation_changed_has_an_empty_remote_unit() {
    let mut env = appendix_b();
    env.insert("JUJU_REMOTE_UNIT".into(), String::new());
    assert_eq!(parse(env).unwrap(), db(RelationHook::Changed, None, None));
}

#[test]
fn created_and_broken_have_an_empty_remote_unit() {
    for (hook, name) in [
        (RelationHook::Created, "created"),
        (RelationHook::Broken, "broken"),
    ] {
        let mut env = appendix_b();
        env.insert(
            "JUJU_DISPATCH_PATH".into(),
            format!("hooks/db-relation-{name}"),
        );
        env.insert("JUJU_HOOK_NAME".into(), format!("db-relation-{name}"));
        env.insert("JUJU_REMOTE_UNIT".into(), String::new());
        assert_eq!(parse(env).unwrap(), db(hook, None, None));
    }
}

#[test]
fn joined_and_departed_name_their_units() {
    let mut env = appendix_b();
    env.insert(
        "JUJU_DISPATCH_PATH".into(),
        "hooks/db-relation-joined".into(),
    );
    assert_eq!(
        parse(env).unwrap(),
        db(RelationHook::Joined, Some("postgresql/1"), None)
    );

    let mut env = appendix_b();
    env.insert(
        "JUJU_DISPATCH_PATH".into(),
        "hooks/db-relation-departed".into(),
    );
    env.insert("JUJU_DEPARTING_UNIT".into(), "postgresql/1".into());
    assert_eq!(
        parse(env).unwrap(),
        db(
            RelationHook::Departed,
            Some("postgresql/1"),
            Some("postgresql/1")
        )
    );

    // This unit being removed: Juju names it as the departing unit.
    let mut env = appendix_b();
    env.insert(
        "JUJU_DISPATCH_PATH".into(),
        "hooks/db-relation-departed".into(),
    );
    env.insert("JUJU_DEPARTING_UNIT".into(), "myapp/0".into());
    assert_eq!(
        parse(env).unwrap(),
        db(
            RelationHook::Departed,
            Some("postgresql/1"),
            Some("myapp/0")
        )
    );
}

#[test]
fn every_unit_hook() {
    let hooks = [
        ("install", UnitHook::Install),
        ("start", UnitHook::Start),
        ("stop", UnitHook::Stop),
        ("remove", UnitHook::Remove),
        ("config-changed", UnitHook::ConfigChanged),
        ("upgrade-charm", UnitHook::UpgradeCharm),
        ("update-status", UnitHook::UpdateStatus),
        ("leader-elected", UnitHook::LeaderElected),
        ("leader-settings-changed", UnitHook::LeaderSettingsChanged),
        ("leader-deposed", UnitHook::LeaderDeposed),
        ("pre-series-upgrade", UnitHook::PreSeriesUpgrade),
        ("post-series-upgrade", UnitHook::PostSeriesUpgrade),
        ("collect-metrics", UnitHook::CollectMetrics),
        ("meter-status-changed", UnitHook::MeterStatusChanged),
    ];
    for (name, hook) in hooks {
        let path = format!("hooks/{name}");
        let env = with(&[("JUJU_DISPATCH_PATH", &path), ("JUJU_HOOK_NAME", name)]);
        assert_eq!(parse(env).unwrap(), Event::Unit(hook), "{name}");
    }
}

#[test]
fn actions_have_an_empty_hook_name() {
    let env = with(&[
        ("JUJU_DISPATCH_PATH", "actions/backup"),
        ("JUJU_HOOK_NAME", ""),
        ("JUJU_ACTION_NAME", "backup"),
        ("JUJU_ACTION_UUID", "12"),
        ("JUJU_ACTION_TAG", "action-12"),
    ]);
    assert_eq!(
        parse(env).unwrap(),
        Event::Action(ActionEvent {
            action: Act::Backup,
            id: Some("12".into())
        })
    );
}

#[test]
fn storage_hooks() {
    let env = with(&[
        ("JUJU_DISPATCH_PATH", "hooks/data-storage-attached"),
        ("JUJU_HOOK_NAME", "data-storage-attached"),
        ("JUJU_STORAGE_ID", "data/0"),
        ("JUJU_STORAGE_LOCATION", "/srv/data"),
        ("JUJU_STORAGE_KIND", "filesystem"),
    ]);
    assert_eq!(
        parse(env).unwrap(),
        Event::Storage(StorageEvent {
            hook: StorageHook::Attached,
            storage: "data".into(),
            id: "data/0".into(),
            location: "/srv/data".into(),
        })
    );
    let env = with(&[
        ("JUJU_DISPATCH_PATH", "hooks/data-storage-detaching"),
        ("JUJU_STORAGE_ID", "data/0"),
    ]);
    assert!(matches!(
        parse(env).unwrap(),
        Event::Storage(StorageEvent {
            hook: StorageHook::Detaching,
            ..
        })
    ));
}

#[test]
fn secret_hooks() {
    let env = with(&[
        ("JUJU_DISPATCH_PATH", "hooks/secret-changed"),
        ("JUJU_SECRET_ID", "secret:cn8f3mvmp25c7a5b6b2g"),
        ("JUJU_SECRET_LABEL", "db-password"),
    ]);
    assert_eq!(
        parse(env).unwrap(),
        Event::Secret(SecretEvent {
            hook: SecretHook::Changed,
            id: "secret:cn8f3mvmp25c7a5b6b2g".into(),
            label: "db-password".into(),
            revision: None,
        })
    );
    let env = with(&[
        ("JUJU_DISPATCH_PATH", "hooks/secret-remove"),
        ("JUJU_SECRET_ID", "secret:cn8f3mvmp25c7a5b6b2g"),
        ("JUJU_SECRET_LABEL", ""),
        ("JUJU_SECRET_REVISION", "3"),
    ]);
    assert!(matches!(
        parse(env).unwrap(),
        Event::Secret(SecretEvent { hook: SecretHook::Remove, revision: Some(3), ref label, .. }) if label.is_empty()
    ));
}

#[test]
fn argv0_names_the_hook_when_juju_is_older_than_2_8() {
    let mut env = with(&[]);
    env.remove("JUJU_DISPATCH_PATH");
    let dispatch = Dispatch::from_env(env.clone(), None).unwrap();
    let argv0 = "/var/lib/juju/agents/unit-myapp-0/charm/hooks/install";
    assert_eq!(
        Ev::parse(&dispatch.vars, Some(argv0)).unwrap(),
        Event::Unit(UnitHook::Install)
    );
    // An empty JUJU_DISPATCH_PATH counts as unset, as charmcraft's dispatch does.
    env.insert("JUJU_DISPATCH_PATH".into(), String::new());
    let dispatch = Dispatch::from_env(env, None).unwrap();
    assert_eq!(
        Ev::parse(&dispatch.vars, Some(argv0)).unwrap(),
        Event::Unit(UnitHook::Install)
    );
    assert_eq!(
        Ev::parse(&dispatch.vars, Some("/usr/bin/wsgi-app")),
        Err(EventError::NoDispatchPath)
    );
    assert_eq!(
        Ev::parse(&dispatch.vars, None),
        Err(EventError::NoDispatchPath)
    );
}

#[test]
fn an_action_run_as_a_command_has_no_juju_id_and_one_juju_ran_must_have_one() {
    // `juju exec -- "CURRENT_SYMLINK=r2 actions/backup"`: a hook context
    // without JUJU_DISPATCH_PATH or any action variable.
    let mut env = with(&[("CURRENT_SYMLINK", "r2")]);
    env.remove("JUJU_DISPATCH_PATH");
    let dispatch = Dispatch::from_env(env, None).unwrap();
    assert_eq!(dispatch.command_env["CURRENT_SYMLINK"], "r2");
    assert!(dispatch.command_env.keys().all(|k| !k.starts_with("JUJU_")));
    let event = Ev::parse(&dispatch.vars, Some("actions/backup")).unwrap();
    assert_eq!(
        event,
        Event::Action(ActionEvent {
            action: Act::Backup,
            id: None
        })
    );

    // Juju itself always names the path and the action's id.
    let env = with(&[
        ("JUJU_DISPATCH_PATH", "actions/backup"),
        ("JUJU_HOOK_NAME", ""),
    ]);
    assert_eq!(
        parse(env),
        Err(EventError::Missing {
            var: "JUJU_ACTION_UUID",
            path: "actions/backup".into()
        })
    );
}

#[test]
fn what_the_charm_does_not_declare_is_unknown() {
    for path in [
        "hooks/cache-relation-joined",
        "actions/restore",
        "hooks/made-up",
        "hooks/web-pebble-ready",
    ] {
        let mut env = appendix_b();
        env.insert("JUJU_DISPATCH_PATH".into(), path.into());
        env.insert("JUJU_ACTION_UUID".into(), "1".into());
        assert_eq!(parse(env).unwrap(), Event::Unknown(path.into()), "{path}");
    }
}

#[test]
fn a_relation_hook_needs_its_relation_id() {
    let mut env = appendix_b();
    env.remove("JUJU_RELATION_ID");
    assert!(matches!(
        parse(env),
        Err(EventError::Missing {
            var: "JUJU_RELATION_ID",
            ..
        })
    ));
    let mut env = appendix_b();
    env.insert("JUJU_RELATION_ID".into(), "db:x".into());
    assert!(matches!(parse(env), Err(EventError::Invalid { .. })));
}

// The harness' constructors: the environment a real Juju would export.

fn state() -> State {
    State::new().with_relation(Relation::new(7, "pgsql", "postgresql").with_remote_units([0, 1]))
}

#[test]
fn harness_relation_env_is_jujus() {
    let ctx = idle();
    let env = ctx
        .hook_env(&on::relation_changed(7, Some(1)), &state())
        .unwrap();
    let get = |k: &str| env.get(k).map(String::as_str);
    assert_eq!(
        get("JUJU_DISPATCH_PATH"),
        Some("hooks/pgsql-relation-changed")
    );
    assert_eq!(get("JUJU_HOOK_NAME"), Some("pgsql-relation-changed"));
    assert_eq!(get("JUJU_RELATION"), Some("pgsql"));
    assert_eq!(get("JUJU_RELATION_ID"), Some("pgsql:7"));
    assert_eq!(get("JUJU_REMOTE_APP"), Some("postgresql"));
    assert_eq!(get("JUJU_REMOTE_UNIT"), Some("postgresql/1"));
    assert_eq!(get("JUJU_UNIT_NAME"), Some("wsgi-app/0"));
    assert_eq!(get("JUJU_DEPARTING_UNIT"), None);
    assert_eq!(
        get("JUJU_CHARM_DIR"),
        Some("/var/lib/juju/agents/unit-wsgi-app-0/charm")
    );
    assert!(get("JUJU_CONTEXT_ID")
        .unwrap()
        .starts_with("wsgi-app/0-pgsql-relation-changed-"));
    assert_eq!(get("HOME"), None, "Juju exports no HOME");

    for event in [
        on::relation_created(7),
        on::relation_broken(7),
        on::relation_changed(7, None),
    ] {
        let env = ctx.hook_env(&event, &state()).unwrap();
        assert_eq!(env.get("JUJU_REMOTE_UNIT").map(String::as_str), Some(""));
    }

    let env = ctx
        .hook_env(&on::relation_departed(7, 1), &state())
        .unwrap();
    assert_eq!(env["JUJU_DEPARTING_UNIT"], "postgresql/1");
    let env = ctx
        .hook_env(&on::relation_departed_by_this_unit(7, 1), &state())
        .unwrap();
    assert_eq!(env["JUJU_DEPARTING_UNIT"], "wsgi-app/0");
    assert_eq!(env["JUJU_REMOTE_UNIT"], "postgresql/1");
}

#[test]
fn harness_action_env_is_jujus() {
    let ctx = idle();
    let env = ctx
        .hook_env(
            &on::action("rollback", json!({})).with_action_id("12"),
            &state(),
        )
        .unwrap();
    assert_eq!(env["JUJU_DISPATCH_PATH"], "actions/rollback");
    assert_eq!(env["JUJU_HOOK_NAME"], "");
    assert_eq!(env["JUJU_ACTION_NAME"], "rollback");
    assert_eq!(env["JUJU_ACTION_UUID"], "12");
    assert_eq!(env["JUJU_ACTION_TAG"], "action-12");
}

#[test]
fn harness_secret_revision_only_where_juju_sets_it() {
    let ctx = idle();
    let env = ctx
        .hook_env(&on::secret_remove("secret:abc", "", 3), &state())
        .unwrap();
    assert_eq!(env["JUJU_SECRET_REVISION"], "3");
    let env = ctx
        .hook_env(&on::secret_changed("secret:abc", "pw"), &state())
        .unwrap();
    assert!(!env.contains_key("JUJU_SECRET_REVISION"));
}

/// Every constructor's environment parses back into the event it names.
#[test]
fn harness_events_round_trip_through_the_parser() {
    use ops_support::{Action, Endpoint};
    let ctx = idle();
    let st = state().with_leader(true);
    let pgsql = |hook, unit: Option<&str>, departing: Option<&str>| {
        Event::Relation(RelationEvent {
            hook,
            relation: RelationId {
                endpoint: Endpoint::Pgsql,
                id: 7,
            },
            remote_app: "postgresql".into(),
            remote_unit: unit.map(str::to_string),
            departing_unit: departing.map(str::to_string),
        })
    };
    let cases: Vec<(harness::EventSpec, Event<Endpoint, Action>)> = vec![
        (on::install(), Event::Unit(UnitHook::Install)),
        (on::start(), Event::Unit(UnitHook::Start)),
        (on::stop(), Event::Unit(UnitHook::Stop)),
        (on::remove(), Event::Unit(UnitHook::Remove)),
        (on::config_changed(), Event::Unit(UnitHook::ConfigChanged)),
        (on::upgrade_charm(), Event::Unit(UnitHook::UpgradeCharm)),
        (on::update_status(), Event::Unit(UnitHook::UpdateStatus)),
        (on::leader_elected(), Event::Unit(UnitHook::LeaderElected)),
        (
            on::relation_created(7),
            pgsql(RelationHook::Created, None, None),
        ),
        (
            on::relation_joined(7, 1),
            pgsql(RelationHook::Joined, Some("postgresql/1"), None),
        ),
        (
            on::relation_changed(7, Some(0)),
            pgsql(RelationHook::Changed, Some("postgresql/0"), None),
        ),
        (
            on::relation_changed(7, None),
            pgsql(RelationHook::Changed, None, None),
        ),
        (
            on::relation_departed(7, 1),
            pgsql(
                RelationHook::Departed,
                Some("postgresql/1"),
                Some("postgresql/1"),
            ),
        ),
        (
            on::relation_broken(7),
            pgsql(RelationHook::Broken, None, None),
        ),
        (
            on::action("list-builds", json!({})).with_action_id("3"),
            Event::Action(ActionEvent {
                action: Action::ListBuilds,
                id: Some("3".into()),
            }),
        ),
        (
            on::storage_attached("data", 1, "/srv/data"),
            Event::Storage(StorageEvent {
                hook: StorageHook::Attached,
                storage: "data".into(),
                id: "data/1".into(),
                location: "/srv/data".into(),
            }),
        ),
        (
            on::dispatch_path("hooks/made-up"),
            Event::Unknown("hooks/made-up".into()),
        ),
    ];
    for (spec, expected) in cases {
        let env = ctx.hook_env(&spec, &st).unwrap();
        let dispatch = Dispatch::from_env(env, None).unwrap();
        assert_eq!(
            Event::<Endpoint, Action>::parse(&dispatch.vars, None).unwrap(),
            expected,
            "{spec:?}"
        );
    }
}

/// Owner hooks: rotate has no revision; expired and remove must have one
/// (Juju exports `JUJU_SECRET_REVISION` for those only, and only above 0).
#[test]
fn secret_owner_hooks_and_their_revisions() {
    let env = with(&[
        ("JUJU_DISPATCH_PATH", "hooks/secret-rotate"),
        ("JUJU_SECRET_ID", "secret:cn8f3mvmp25c7a5b6b2g"),
        ("JUJU_SECRET_LABEL", "database.7.user.secret"),
    ]);
    let event = parse(env).unwrap();
    assert!(!event.is_deferrable());
    assert_eq!(event.name(), "secret-rotate");
    let Event::Secret(secret) = event else {
        panic!("not a secret event")
    };
    assert_eq!(secret.hook, SecretHook::Rotate);
    assert_eq!(secret.label(), Some("database.7.user.secret"));
    assert_eq!(secret.revision, None);

    let env = with(&[
        ("JUJU_DISPATCH_PATH", "hooks/secret-expired"),
        ("JUJU_SECRET_ID", "secret:cn8f3mvmp25c7a5b6b2g"),
        ("JUJU_SECRET_REVISION", "12"),
    ]);
    let event = parse(env).unwrap();
    assert!(!event.is_deferrable());
    assert!(matches!(
        event,
        Event::Secret(SecretEvent {
            hook: SecretHook::Expired,
            revision: Some(12),
            ..
        })
    ));

    for hook in ["hooks/secret-expired", "hooks/secret-remove"] {
        let env = with(&[
            ("JUJU_DISPATCH_PATH", hook),
            ("JUJU_SECRET_ID", "secret:cn8f3mvmp25c7a5b6b2g"),
        ]);
        assert_eq!(
            parse(env),
            Err(EventError::Missing {
                var: "JUJU_SECRET_REVISION",
                path: hook.into()
            })
        );
    }
    for bad in ["0", "-1", "two"] {
        let env = with(&[
            ("JUJU_DISPATCH_PATH", "hooks/secret-remove"),
            ("JUJU_SECRET_ID", "secret:cn8f3mvmp25c7a5b6b2g"),
            ("JUJU_SECRET_REVISION", bad),
        ]);
        assert!(
            matches!(
                parse(env),
                Err(EventError::Invalid {
                    var: "JUJU_SECRET_REVISION",
                    ..
                })
            ),
            "{bad}"
        );
    }
}

/// secret-changed is a consumer's hook: deferrable, revision-less, and
/// refused without the secret's ID.
#[test]
fn secret_changed_needs_the_id_and_may_be_deferred() {
    let env = with(&[
        ("JUJU_DISPATCH_PATH", "hooks/secret-changed"),
        ("JUJU_SECRET_ID", "secret:cn8f3mvmp25c7a5b6b2g"),
        ("JUJU_SECRET_LABEL", ""),
    ]);
    let event = parse(env).unwrap();
    assert!(event.is_deferrable());
    let Event::Secret(secret) = event else {
        panic!("not a secret event")
    };
    assert_eq!(secret.label(), None);

    let env = with(&[("JUJU_DISPATCH_PATH", "hooks/secret-changed")]);
    assert_eq!(
        parse(env),
        Err(EventError::Missing {
            var: "JUJU_SECRET_ID",
            path: "hooks/secret-changed".into()
        })
    );
}
