//! The in-memory Juju follows Juju's hook-context rules
//! (shared/reference/juju-hook-tools.md §1.4, §1.6, §3 and §5): asked
//! directly through the `Backend` trait, and seen by a charm during a run.

mod ops_support;

use harness::backend::HookScope;
use harness::{bag, on, CharmMeta, HarnessError, MemoryBackend, Relation, State};
use ops_support::{idle, note, notes, probe, Endpoint};
use wsgi_app::ops::{
    Backend, BagOwner, Event, ModelError, Network, Port, RelationEvent, RelationHook, RelationId,
    Scope, Status, StatusName,
};

const METADATA: &str = "
name: demo
summary: A charm for testing the in-memory Juju
description: Endpoints of each kind, and an extra binding.
peers:
  cluster: {interface: demo-peers}
requires:
  db: {interface: pgsql}
provides:
  website: {interface: http}
extra-bindings:
  admin:
";

fn meta() -> CharmMeta {
    CharmMeta::from_yaml(METADATA, None, None).unwrap()
}

/// demo/0 with db:2 (postgresql/2 and /10), db:10, and a peer relation
/// cluster:3 with demo/1.
fn world(leader: bool) -> State {
    State::new()
        .with_leader(leader)
        .with_relation(
            Relation::new(2, "db", "postgresql")
                .with_remote_units([2, 10])
                .with_remote_app_data(bag([("version", "16")])),
        )
        .with_relation(Relation::new(10, "db", "postgresql"))
        .with_relation(
            Relation::peer(3, "cluster")
                .with_remote_units([1])
                .with_local_app_data(bag([("leader-says", "hi")])),
        )
}

fn backend(meta: &CharmMeta, state: State, scope: HookScope) -> MemoryBackend<'_> {
    MemoryBackend::new(meta, state, scope)
}

#[test]
fn relation_ids_and_lists_sort_as_strings_and_hide_what_is_leaving() {
    let meta = meta();
    let mut b = backend(&meta, world(true), HookScope::default());
    assert_eq!(b.relation_ids("db").unwrap(), [10, 2], "db:10 < db:2");
    assert_eq!(b.relation_ids("nope").unwrap(), Vec::<u32>::new());
    assert_eq!(
        b.relation_list("db", 2).unwrap(),
        ["postgresql/10", "postgresql/2"]
    );
    assert_eq!(b.relation_list("cluster", 3).unwrap(), ["demo/1"]);
    assert!(matches!(
        b.relation_list("db", 99),
        Err(ModelError::RelationNotFound(m)) if m.contains("db:99")
    ));

    let breaking = HookScope {
        breaking: Some(2),
        ..HookScope::default()
    };
    let mut b = backend(&meta, world(true), breaking);
    assert_eq!(b.relation_ids("db").unwrap(), [10]);
    assert!(b.relation_list("db", 2).unwrap().is_empty());
    // Its data is still readable during the broken hook.
    let app = BagOwner::App("postgresql".into());
    assert_eq!(b.relation_get("db", 2, &app).unwrap()["version"], "16");

    let departing = HookScope {
        hidden_unit: Some((2, "postgresql/10".into())),
        ..HookScope::default()
    };
    let mut b = backend(&meta, world(true), departing);
    assert_eq!(b.relation_list("db", 2).unwrap(), ["postgresql/2"]);
    let unit = BagOwner::Unit("postgresql/10".into());
    assert!(b.relation_get("db", 2, &unit).is_ok());
}

#[test]
fn bags_follow_the_access_rules() {
    let meta = meta();
    let mut minion = backend(&meta, world(false), HookScope::default());
    let own_unit = BagOwner::Unit("demo/0".into());
    let own_app = BagOwner::App("demo".into());
    // Juju seeds the unit bags.
    let mine = minion.relation_get("db", 2, &own_unit).unwrap();
    assert_eq!(mine["private-address"], "192.0.2.0");
    assert_eq!(mine["ingress-address"], "192.0.2.0");
    assert_eq!(mine["egress-subnets"], "192.0.2.0/32");
    let theirs = minion
        .relation_get("db", 2, &BagOwner::Unit("postgresql/2".into()))
        .unwrap();
    assert_eq!(theirs["private-address"], "192.0.2.3");
    // The app bag is the leader's, except among peers.
    assert!(matches!(
        minion.relation_get("db", 2, &own_app),
        Err(ModelError::AccessDenied(_))
    ));
    assert_eq!(
        minion.relation_get("cluster", 3, &own_app).unwrap()["leader-says"],
        "hi"
    );
    assert!(matches!(
        minion.relation_set("cluster", 3, Scope::App, &bag([("k", "v")])),
        Err(ModelError::NotLeader(m)) if m == "cannot write relation settings"
    ));
    // Unit names, app names, and units not in the relation.
    assert!(matches!(
        minion.relation_get("db", 2, &BagOwner::Unit("postgresql".into())),
        Err(ModelError::Usage { .. })
    ));
    assert!(matches!(
        minion.relation_get("db", 2, &BagOwner::Unit("postgresql/7".into())),
        Err(ModelError::ToolFailed { code: 1, .. })
    ));
    assert!(matches!(
        minion.relation_get("db", 2, &BagOwner::App("mysql".into())),
        Err(ModelError::ToolFailed { code: 1, .. })
    ));
}

#[test]
fn relation_writes_are_pending_until_a_successful_end() {
    let meta = meta();
    let own_app = BagOwner::App("demo".into());
    let write = |b: &mut MemoryBackend<'_>| {
        b.relation_set(
            "db",
            2,
            Scope::App,
            &bag([("database", "app"), ("unused", "")]),
        )
        .unwrap();
        b.relation_set("db", 2, Scope::Unit, &bag([("private-address", "")]))
            .unwrap();
    };
    let mut start = world(true);
    let db = start.relation_mut(2).unwrap();
    db.local_app_data.insert("unused".into(), "x".into());

    let mut b = backend(&meta, start.clone(), HookScope::default());
    write(&mut b);
    // The hook reads its own writes, deletions included.
    let app_view = b.relation_get("db", 2, &own_app).unwrap();
    assert_eq!(app_view, bag([("database", "app")]));
    let (after, record) = b.finish(true);
    let rel = after.relation(2).unwrap();
    assert_eq!(rel.local_app_data, bag([("database", "app")]));
    assert!(!rel.local_unit_data.contains_key("private-address"));
    assert!(record
        .tool_calls
        .contains(&"relation-set -r db:2 --app --file -".to_string()));

    let mut b = backend(&meta, start.clone(), HookScope::default());
    write(&mut b);
    let (after, _) = b.finish(false);
    let (rel, before) = (after.relation(2).unwrap(), start.relation(2).unwrap());
    assert_eq!(rel.local_app_data, before.local_app_data);
    assert_eq!(rel.local_unit_data, before.local_unit_data);
}

#[test]
fn ports_are_pending_and_visible_to_the_hook() {
    let meta = meta();
    let mut state = world(true);
    state.opened_ports.insert(Port::tcp(80));
    let mut b = backend(&meta, state.clone(), HookScope::default());
    b.open_port(&Port::tcp(8080)).unwrap();
    b.close_port(&Port::tcp(80)).unwrap();
    assert_eq!(b.opened_ports().unwrap(), [Port::tcp(8080)]);
    // Reopening cancels the pending close; closing what is closed is a no-op.
    b.open_port(&Port::tcp(80)).unwrap();
    b.close_port(&Port::tcp(9999)).unwrap();
    assert_eq!(b.opened_ports().unwrap(), [Port::tcp(80), Port::tcp(8080)]);
    let overlapping: Port = "8000-8100/tcp".parse().unwrap();
    assert!(matches!(
        b.open_port(&overlapping),
        Err(ModelError::ToolFailed { code: 1, message, .. }) if message.contains("conflicts with 8080/tcp")
    ));
    let (committed, _) = b.finish(true);
    assert_eq!(
        committed.opened_ports.into_iter().collect::<Vec<_>>(),
        [Port::tcp(80), Port::tcp(8080)]
    );

    let mut b = backend(&meta, state.clone(), HookScope::default());
    b.open_port(&Port::tcp(8080)).unwrap();
    let (discarded, _) = b.finish(false);
    assert_eq!(discarded.opened_ports, state.opened_ports);
}

#[test]
fn statuses_are_immediate_and_checked() {
    let meta = meta();
    let mut minion = backend(&meta, world(false), HookScope::default());
    let error = Status::new(StatusName::Error, "no");
    assert!(matches!(
        minion.status_set(Scope::Unit, &error),
        Err(ModelError::Usage { message, .. }) if message.contains("expected one of [maintenance blocked waiting active]")
    ));
    assert!(matches!(
        minion.status_set(Scope::App, &Status::active("")),
        Err(ModelError::NotLeader(_))
    ));
    assert!(matches!(
        minion.status_get(Scope::App),
        Err(ModelError::NotLeader(_))
    ));
    minion
        .status_set(Scope::Unit, &Status::blocked("set build_label"))
        .unwrap();
    assert_eq!(
        minion.status_get(Scope::Unit).unwrap(),
        Status::blocked("set build_label")
    );
    let (after, record) = minion.finish(false);
    assert_eq!(after.unit_status, Status::blocked("set build_label"));
    assert!(record
        .tool_calls
        .contains(&"status-set --application=False blocked -- 'set build_label'".to_string()));
}

#[test]
fn networks_come_from_the_state_or_the_default() {
    let meta = meta();
    let custom = Network {
        ingress_addresses: vec!["10.1.2.3".into()],
        ..Network::default()
    };
    let mut state = world(true);
    state.networks.insert("website".into(), custom.clone());
    let mut b = backend(&meta, state, HookScope::default());
    assert_eq!(b.network_get("website", None).unwrap(), custom);
    let db = b.network_get("db", Some(("db", 2))).unwrap();
    assert_eq!(db.ingress_address(), Some("192.0.2.0"));
    assert!(b.network_get("admin", None).is_ok(), "extra-bindings count");
    assert!(matches!(
        b.network_get("nope", None),
        Err(ModelError::ToolFailed { message, .. }) if message == "no network config found for binding \"nope\""
    ));
    assert!(matches!(
        b.network_get("db", Some(("db", 42))),
        Err(ModelError::RelationNotFound(_))
    ));
}

#[test]
fn action_tools_need_an_action() {
    let meta = meta();
    let mut b = backend(&meta, world(true), HookScope::default());
    assert!(matches!(b.action_get(), Err(ModelError::NotAnAction)));
    assert!(matches!(b.action_log("x"), Err(ModelError::NotAnAction)));
    let scope = HookScope {
        action: Some(Default::default()),
        ..HookScope::default()
    };
    let mut b = backend(&meta, world(true), scope);
    assert!(matches!(
        b.action_set(&bag([("Bad_Key", "v")])),
        Err(ModelError::Usage { .. })
    ));
    assert!(matches!(
        b.action_set(&bag([("a.stderr", "v")])),
        Err(ModelError::Usage { message, .. }) if message.contains("reserved")
    ));
}

// Seen by a charm during a run.

fn website(id: u32) -> RelationId<Endpoint> {
    RelationId {
        endpoint: Endpoint::Website,
        id,
    }
}

#[test]
fn juju_sets_statuses_around_install_stop_and_remove() {
    let ctx = idle();
    let out = ctx.run(on::install(), State::new()).unwrap();
    assert_eq!(
        out.unit_status_history,
        [
            Status::maintenance("installing charm software"),
            Status::active("probe ready")
        ]
    );
    // Once the charm has set a status, install no longer overrides it.
    let again = out.then(&ctx, on::install()).unwrap();
    assert_eq!(again.unit_status_history, [Status::active("probe ready")]);

    let stopped = ctx.run(on::stop(), out.state.clone()).unwrap();
    assert_eq!(
        stopped.unit_status_history,
        [
            Status::maintenance("stopping charm software"),
            Status::active("probe ready"),
            Status::maintenance(""),
        ]
    );
    let removed = ctx.run(on::remove(), out.state).unwrap();
    assert_eq!(removed.state.unit_status.name, StatusName::Terminated);
}

#[test]
fn a_broken_relation_is_not_listed_and_then_gone() {
    let ctx = probe(|ctx, event, _| {
        if let Event::Relation(RelationEvent {
            hook: RelationHook::Broken,
            relation,
            ..
        }) = event
        {
            assert!(ctx.model.relations(Endpoint::Website)?.is_empty());
            assert!(ctx.model.relation_units(*relation)?.is_empty());
            note(ctx, "broken")?;
        }
        Ok(())
    });
    let state = State::new().with_relation(Relation::new(1, "website", "haproxy"));
    let out = ctx.run(on::relation_broken(1), state).unwrap();
    assert!(out.succeeded(), "{:?}", out.outcome);
    assert_eq!(notes(&out.state), ["broken"]);
    assert!(out.state.relations.is_empty());
}

#[test]
fn a_departing_unit_is_not_listed_and_its_data_stays() {
    let ctx = probe(|ctx, event, _| {
        if let Event::Relation(r) = event {
            let units = ctx.model.relation_units(r.relation)?.to_vec();
            note(ctx, &units.join(","))?;
            // The leaver's data stays readable.
            let owner = BagOwner::Unit("haproxy/1".into());
            ctx.model.relation_data(website(1), &owner)?;
        }
        Ok(())
    });
    let state = State::new().with_relation(
        Relation::new(1, "website", "haproxy")
            .with_remote_units([0, 1])
            .with_remote_unit_data(1, bag([("backend", "b1")])),
    );
    let out = ctx.run(on::relation_departed(1, 1), state).unwrap();
    assert!(out.succeeded(), "{:?}", out.outcome);
    assert_eq!(notes(&out.state), ["haproxy/0"]);
    let rel = out.state.relation(1).unwrap();
    assert_eq!(rel.remote_units.keys().collect::<Vec<_>>(), [&0]);
    assert_eq!(rel.departed_units[&1]["backend"], "b1");
    // Next hook: still gone from the list.
    let broken = out.then(&ctx, on::relation_broken(1)).unwrap();
    assert!(broken.succeeded(), "{:?}", broken.outcome);
}

#[test]
fn non_leaders_cannot_touch_their_app_bag() {
    let ctx = probe(|ctx, _, _| {
        let own_app = BagOwner::App("wsgi-app".into());
        assert!(matches!(
            ctx.model.relation_data(website(1), &own_app),
            Err(ModelError::AccessDenied(_))
        ));
        assert!(matches!(
            ctx.model
                .update_relation_data(website(1), Scope::App, &bag([("k", "v")])),
            Err(ModelError::NotLeader(_))
        ));
        note(ctx, "checked")
    });
    let state = State::new().with_relation(Relation::new(1, "website", "haproxy"));
    let out = ctx.run(on::update_status(), state).unwrap();
    assert_eq!(notes(&out.state), ["checked"]);
}

#[test]
fn setups_juju_would_never_produce_are_refused() {
    let ctx = idle();
    let inconsistent = |state: State, event| match ctx.run(event, state) {
        Err(HarnessError::Inconsistent(why)) => why,
        other => panic!("expected an inconsistent setup, got {other:?}"),
    };
    assert!(inconsistent(State::new(), on::leader_elected()).contains("leader"));
    assert!(inconsistent(
        State::new().with_leader(true),
        on::leader_settings_changed()
    )
    .contains("non-leaders"));
    let undeclared = State::new().with_relation(Relation::new(1, "cache", "redis"));
    assert!(inconsistent(undeclared, on::install()).contains("\"cache\""));
    let twice = State::new()
        .with_relation(Relation::new(1, "website", "a"))
        .with_relation(Relation::new(1, "pgsql", "b"));
    assert!(inconsistent(twice, on::install()).contains("two relations have id 1"));
    let over_limit = State::new()
        .with_relation(Relation::new(1, "mongodb", "m1"))
        .with_relation(Relation::new(2, "mongodb", "m2"));
    assert!(inconsistent(over_limit, on::install()).contains("limit 1"));
    let wrong_interface =
        State::new().with_relation(Relation::new(1, "website", "haproxy").with_interface("pgsql"));
    assert!(inconsistent(wrong_interface, on::install()).contains("interface"));
    assert!(inconsistent(State::new(), on::relation_changed(5, None)).contains("no relation 5"));
    let one_unit = State::new().with_relation(Relation::new(1, "website", "haproxy"));
    assert!(inconsistent(one_unit, on::relation_joined(1, 3)).contains("no remote unit 3"));
    // A model setting the harness would silently not pass on.
    let unmodelled = State::new().with_model_config("http-proxy", "http://squid:3128");
    assert!(inconsistent(unmodelled, on::install()).contains("\"http-proxy\""));
}

#[test]
fn the_models_proxy_settings_reach_the_hook_as_juju_passes_them() {
    let state = State::new()
        .with_model_config("juju-http-proxy", "http://squid.internal:3128")
        .with_model_config("juju-no-proxy", "127.0.0.1,localhost,::1");
    let env = idle().hook_env(&on::install(), &state).unwrap();
    let proxy_vars: Vec<(&str, &str)> = env
        .iter()
        .filter(|(name, _)| name.starts_with("JUJU_CHARM_") && name.ends_with("_PROXY"))
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    assert_eq!(
        proxy_vars,
        [
            ("JUJU_CHARM_FTP_PROXY", ""),
            ("JUJU_CHARM_HTTPS_PROXY", ""),
            ("JUJU_CHARM_HTTP_PROXY", "http://squid.internal:3128"),
            ("JUJU_CHARM_NO_PROXY", "127.0.0.1,localhost,::1"),
        ]
    );
}

#[test]
fn the_interface_comes_from_metadata() {
    let out = idle()
        .run(
            on::install(),
            State::new().with_relation(Relation::new(1, "pgsql", "postgresql")),
        )
        .unwrap();
    assert_eq!(out.state.relation(1).unwrap().interface, "pgsql");
}

/// The framework trusts Juju to tell the unit of every relation
/// (`-created`) and of its end (`-broken`); the harness refuses a State
/// that skips either, and accepts the orders Juju really uses.
#[test]
fn relations_the_unit_was_never_told_of_are_refused() {
    let ctx = probe(|ctx, _, _| {
        ctx.model.relations(Endpoint::Website)?;
        Ok(())
    });
    let one = ctx
        .run(
            on::install(),
            State::new().with_relation(Relation::new(1, "website", "haproxy")),
        )
        .unwrap()
        .state;
    let untold = one
        .clone()
        .with_relation(Relation::new(2, "website", "apache"))
        .with_relation(Relation::new(3, "website", "nginx"));
    match ctx.run(on::config_changed(), untold.clone()) {
        Err(HarnessError::Inconsistent(why)) => {
            assert!(why.contains("on::relation_created(2)"), "{why}")
        }
        other => panic!("expected an inconsistent setup, got {other:?}"),
    }
    // Juju runs every pending -created first: 2's while 3 is still untold.
    let told = ctx
        .chain(untold)
        .run(on::relation_created(2))
        .unwrap()
        .run(on::relation_created(3))
        .unwrap()
        .run(on::config_changed())
        .unwrap();
    assert!(told.last().succeeded());

    let mut vanished = told.into_state();
    vanished.relations.retain(|r| r.id != 1);
    match ctx.run(on::update_status(), vanished) {
        Err(HarnessError::Inconsistent(why)) => {
            assert!(why.contains("on::relation_broken(1)"), "{why}")
        }
        other => panic!("expected an inconsistent setup, got {other:?}"),
    }
}

/// Every unit counts the unit hooks it ran in its own peer bag and notes
/// the peer hooks it got; the leader names itself in the application bag.
fn counting_peers() -> harness::Context<ops_support::Probe> {
    probe(|ctx, event, _| {
        let Some(rel) = ctx.model.relations(Endpoint::Rollout)?.first().copied() else {
            return Ok(());
        };
        if let Event::Relation(RelationEvent {
            hook, remote_unit, ..
        }) = event
        {
            let from = remote_unit.as_deref().unwrap_or("the application");
            note(ctx, &format!("{} {from}", hook.as_ref()))?;
        }
        let me = ctx.model.unit_name().to_string();
        if let Event::Unit(_) = event {
            let hooks: u32 = ctx
                .model
                .relation_data(rel, &BagOwner::Unit(me.clone()))?
                .get("hooks")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            ctx.model.update_relation_data(
                rel,
                Scope::Unit,
                &bag([("hooks", (hooks + 1).to_string())]),
            )?;
        }
        if ctx.model.is_leader()? {
            ctx.model
                .update_relation_data(rel, Scope::App, &bag([("leader", me)]))?;
        }
        Ok(())
    })
}

#[test]
fn a_cluster_passes_peer_writes_on_as_juju_does() {
    let ctx = counting_peers();
    let mut cluster = harness::Cluster::deploy(&ctx, State::new(), "rollout", 4, 3).unwrap();
    let view = |cluster: &harness::Cluster<'_, ops_support::Probe>, of: u32, from: u32| {
        cluster.unit(of).relation(4).unwrap().remote_units[&from].clone()
    };
    for n in 0..3 {
        for m in (0..3).filter(|&m| m != n) {
            assert_eq!(view(&cluster, n, m), cluster.unit_bag(m), "{n} sees {m}");
        }
        let app = &cluster.unit(n).relation(4).unwrap().local_app_data;
        assert_eq!(app["leader"], "wsgi-app/0", "unit {n}");
    }
    // install, leader-settings-changed, config-changed, start.
    assert_eq!(cluster.unit_bag(1)["hooks"], "4");
    let got = notes(cluster.unit(1));
    for expected in [
        "created the application",
        "joined wsgi-app/0",
        "joined wsgi-app/2",
        "changed wsgi-app/0",
        "changed the application",
    ] {
        assert!(got.iter().any(|n| n == expected), "{expected}: {got:?}");
    }

    cluster.elect(2);
    cluster.settle().unwrap();
    for n in 0..3 {
        let app = &cluster.unit(n).relation(4).unwrap().local_app_data;
        assert_eq!(app["leader"], "wsgi-app/2", "unit {n}");
    }

    cluster.remove_unit(1).unwrap();
    cluster.settle().unwrap();
    assert_eq!(cluster.unit_numbers(), [0, 2]);
    for n in [0, 2] {
        let rel = cluster.unit(n).relation(4).unwrap();
        assert!(!rel.remote_units.contains_key(&1), "unit {n}");
        assert!(rel.departed_units.contains_key(&1), "unit {n}");
    }

    let added = cluster.add_unit();
    cluster.settle().unwrap();
    assert_eq!(view(&cluster, 0, added), cluster.unit_bag(added));
    assert_eq!(
        cluster.unit(added).relation(4).unwrap().local_app_data["leader"],
        "wsgi-app/2"
    );
}
