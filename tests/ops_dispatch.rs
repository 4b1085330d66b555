//! One dispatch through `ops::run`, driven by the harness: the store's
//! transaction (commit on success, nothing kept on failure, together with
//! Juju's relation data), deferred events, schema migrations, Juju's checks
//! of config and action params, and the model's read cache.
//!
//! Why one file over 600 lines: every test here is one dispatch through
//! `ops::run` with the same test charm (ops_support), and the sections follow
//! the list above.

mod ops_support;

use harness::{bag, on, HarnessError, Relation, State};
use ops_support::{idle, note, notes, probe, probe_with, Ctx, ProbeEvent, V1, V2};
use serde_json::json;
use wsgi_app::ops::{
    ConfigReader, Event, HandlerError, LogLevel, Port, RelationId, Scope, Status, StatusName,
    UnitHook,
};

fn website(id: u32) -> RelationId<ops_support::Endpoint> {
    RelationId {
        endpoint: ops_support::Endpoint::Website,
        id,
    }
}

fn with_website() -> State {
    State::new().with_relation(Relation::new(1, "website", "haproxy"))
}

/// Writes a note, relation data and a port on config-changed, then fails
/// if `build_label` is "fail".
fn writer(ctx: &mut Ctx<'_, '_>, event: &ProbeEvent) -> Result<(), HandlerError> {
    if *event != Event::Unit(UnitHook::ConfigChanged) {
        return note(ctx, "installed");
    }
    note(ctx, "configured")?;
    ctx.model
        .update_relation_data(website(1), Scope::Unit, &bag([("port", "8080")]))?;
    ctx.model.set_ports(&[Port::tcp(8080)])?;
    let label = ConfigReader::new(ctx.model.config()?)
        .string("build_label")?
        .to_string();
    if label == "fail" {
        return Err("the build failed".into());
    }
    Ok(())
}

#[test]
fn a_failing_dispatch_keeps_neither_store_nor_relation_writes() {
    let ctx = probe(|ctx, event, _| writer(ctx, event));
    let installed = ctx.run(on::install(), with_website()).unwrap();
    assert!(installed.succeeded());
    assert_eq!(notes(&installed.state), ["installed"]);

    let configured = installed.then(&ctx, on::config_changed()).unwrap();
    // The same event from the same state, but the build fails:
    let failing = installed.state.clone().with_config("build_label", "fail");
    let failed_out = ctx.run(on::config_changed(), failing).unwrap();
    assert_eq!(failed_out.outcome.exit_code, 1);
    assert!(failed_out
        .outcome
        .error
        .as_deref()
        .unwrap()
        .contains("the build failed"));
    assert_eq!(notes(&failed_out.state), ["installed"]);
    let rel = failed_out.state.relation(1).unwrap();
    assert!(!rel.local_unit_data.contains_key("port"));
    assert!(failed_out.state.opened_ports.is_empty());
    // The charm did write; Juju threw it away.
    assert_eq!(failed_out.calls_to("relation-set"), 1);
    assert_eq!(failed_out.calls_to("open-port"), 1);

    // The succeeding run keeps all three.
    assert!(configured.succeeded());
    assert_eq!(notes(&configured.state), ["installed", "configured"]);
    let rel = configured.state.relation(1).unwrap();
    assert_eq!(rel.local_unit_data["port"], "8080");
    assert!(configured.state.opened_ports.contains(&Port::tcp(8080)));
}

#[test]
fn status_and_workload_version_are_immediate_even_when_the_dispatch_fails() {
    let ctx = probe(|ctx, _, _| {
        ctx.model
            .set_unit_status(&Status::maintenance("fetching r2"))?;
        ctx.model.set_workload_version("2.0")?;
        Err("network unreachable".into())
    });
    let out = ctx.run(on::update_status(), State::new()).unwrap();
    assert!(!out.succeeded());
    assert_eq!(out.state.unit_status, Status::maintenance("fetching r2"));
    assert_eq!(out.state.workload_version, "2.0");
    assert_eq!(
        out.unit_status_history,
        [Status::maintenance("fetching r2")]
    );
}

/// Handles every event by noting its name; defers everything but
/// update-status unless `build_label` is "release".
fn deferrer(ctx: &mut Ctx<'_, '_>, event: &ProbeEvent) -> Result<(), HandlerError> {
    note(ctx, &event.name())?;
    let release = ConfigReader::new(ctx.model.config()?).string("build_label")? == "release";
    if !release && *event != Event::Unit(UnitHook::UpdateStatus) {
        ctx.defer();
    }
    Ok(())
}

#[test]
fn deferred_events_replay_first_oldest_first_and_queue_once() {
    let ctx = probe(|ctx, event, _| deferrer(ctx, event));
    let chain = ctx.chain(with_website()).run(on::config_changed()).unwrap();
    assert_eq!(chain.last().deferred.len(), 1);
    assert_eq!(
        chain.last().deferred[0]["JUJU_DISPATCH_PATH"],
        "hooks/config-changed"
    );

    // The replayed config-changed defers again and keeps its place; the
    // second config-changed is the same event and is not queued twice.
    let chain = chain
        .run(on::relation_changed(1, Some(0)))
        .unwrap()
        .run(on::config_changed())
        .unwrap();
    let paths: Vec<&str> = chain
        .last()
        .deferred
        .iter()
        .map(|d| d["JUJU_DISPATCH_PATH"].as_str())
        .collect();
    assert_eq!(
        paths,
        ["hooks/config-changed", "hooks/website-relation-changed"]
    );
    assert_eq!(
        chain.last().deferred[1]["JUJU_REMOTE_UNIT"],
        "haproxy/0",
        "the snapshot keeps the event's identity"
    );

    // Released: both replay, oldest first, before the new event.
    let out = chain
        .update_state(|s| s.with_config("build_label", "release"))
        .run(on::update_status())
        .unwrap()
        .into_last();
    assert!(out.deferred.is_empty());
    assert_eq!(
        notes(&out.state),
        [
            "config-changed",
            // relation-changed: config-changed replayed first
            "config-changed",
            "website-relation-changed",
            // config-changed again: both replayed, then the new one (deduplicated)
            "config-changed",
            "website-relation-changed",
            "config-changed",
            // update-status
            "config-changed",
            "website-relation-changed",
            "update-status",
        ]
    );
}

#[test]
fn a_failed_dispatch_keeps_the_queue_as_it_was() {
    let ctx = probe(|ctx, event, _| {
        deferrer(ctx, event)?;
        if *event == Event::Unit(UnitHook::UpdateStatus) {
            return Err("update-status broke".into());
        }
        Ok(())
    });
    let deferred = ctx.run(on::config_changed(), State::new()).unwrap();
    let out = deferred.state.clone().with_config("build_label", "release");
    let out = ctx.run(on::update_status(), out).unwrap();
    assert!(!out.succeeded());
    // The replay dropped the notice inside the failed transaction only.
    assert_eq!(out.deferred, deferred.deferred);
    assert_eq!(notes(&out.state), ["config-changed"]);
}

#[test]
fn actions_cannot_be_deferred() {
    let ctx = probe(|ctx, _, _| {
        ctx.defer();
        Ok(())
    });
    let out = ctx
        .run(on::action("list-builds", json!({})), State::new())
        .unwrap();
    assert!(!out.succeeded());
    assert!(out.outcome.error.unwrap().contains("cannot be deferred"));
    assert_eq!(
        out.action.unwrap().failure.as_deref(),
        Some("exit status 1")
    );
    assert!(out.deferred.is_empty());
}

#[test]
fn a_v1_store_migrates_to_v2() {
    let v1 = probe_with(V1, |ctx, _, _| note(ctx, "from v1"));
    let v2 = probe_with(V2, |ctx, _, _| {
        ctx.store.conn().execute(
            "INSERT INTO notes (text, author) VALUES ('from v2', 'upgrade')",
            [],
        )?;
        Ok(())
    });
    let old = v1.run(on::install(), State::new()).unwrap();
    let version = |state: &State| {
        state
            .stored_state
            .as_ref()
            .unwrap()
            .query(|c| {
                c.query_row(
                    "SELECT value FROM ops_meta WHERE key = 'charm_schema'",
                    [],
                    |r| r.get::<_, String>(0),
                )
            })
            .unwrap()
    };
    assert_eq!(version(&old.state), "1");

    let new = v2.run(on::upgrade_charm(), old.state).unwrap();
    assert!(new.succeeded(), "{:?}", new.outcome);
    assert_eq!(version(&new.state), "2");
    assert!(new.logs.contains(&(
        LogLevel::Info,
        "stored state migrated from schema 1 to 2".into()
    )));
    let authors: Vec<(String, String)> = new
        .state
        .stored_state
        .as_ref()
        .unwrap()
        .query(|c| {
            let mut stmt = c.prepare("SELECT text, author FROM notes ORDER BY id")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
        .unwrap();
    assert_eq!(
        authors,
        [
            ("from v1".to_string(), "unknown".to_string()),
            ("from v2".to_string(), "upgrade".to_string())
        ]
    );

    // The v1 charm (a downgrade) refuses the v2 store and leaves it be.
    let refused = v1.run(on::upgrade_charm(), new.state.clone()).unwrap();
    assert!(!refused.succeeded());
    assert!(refused
        .outcome
        .error
        .as_deref()
        .unwrap()
        .contains("schema version 2, newer than this charm's 1"));
    assert_eq!(version(&refused.state), "2");
    assert_eq!(
        refused.state.stored_state.as_ref().unwrap().bytes(),
        new.state.stored_state.as_ref().unwrap().bytes()
    );
}

#[test]
fn config_of_the_wrong_type_is_refused_before_running() {
    let ctx = idle();
    for (option, value, why) in [
        ("listen_port", json!("8080"), "must be a whole number"),
        ("listen_port", json!(8080.5), "must be a whole number"),
        ("build_label", json!(2), "must be a string"),
        ("build_label", json!(null), "must be a string"),
        (
            "listen-port",
            json!(8080),
            "is not an option in config.yaml",
        ),
    ] {
        let state = State::new().with_config(option, value);
        match ctx.run(on::config_changed(), state) {
            Err(HarnessError::Config { option: o, message }) => {
                assert_eq!(o, option);
                assert!(message.contains(why), "{option}: {message}");
            }
            other => panic!("{option}: expected a config error, got {other:?}"),
        }
    }
}

#[test]
fn config_reaches_the_charm_over_the_defaults() {
    let ctx = probe(|ctx, _, _| {
        let config = ConfigReader::new(ctx.model.config()?);
        let line = format!(
            "{} {} {}",
            config.int("listen_port")?,
            config.string("current_symlink")?,
            config.int("keep_builds")?
        );
        note(ctx, &line)
    });
    let out = ctx
        .run(
            on::config_changed(),
            State::new().with_config("listen_port", 9000),
        )
        .unwrap();
    assert_eq!(notes(&out.state), ["9000 latest 5"]);
}

#[test]
fn action_params_are_checked_against_actions_yaml() {
    let ctx = idle();
    let refusals = [
        ("set-current-symlink", json!({}), "symlink is required"),
        (
            "set-current-symlink",
            json!({"symlink": "r2", "force": true}),
            "Additional property force is not allowed",
        ),
        (
            "set-current-symlink",
            json!({"symlink": 2}),
            "symlink: Invalid type. Expected: string, given: integer",
        ),
        (
            "set-current-symlink",
            json!({"symlink": ""}),
            "String length must be greater than or equal to 1",
        ),
        (
            "rollback",
            json!({"to": "r1"}),
            "Additional property to is not allowed",
        ),
    ];
    for (action, params, why) in refusals {
        let out = ctx
            .run(on::action(action, params.clone()), State::new())
            .unwrap();
        assert!(!out.dispatched, "{action} {params}");
        let failure = out.action.unwrap().failure.unwrap();
        assert!(failure.contains(why), "{action} {params}: {failure}");
        assert!(out.tool_calls.is_empty(), "the charm never ran");
    }
    assert!(matches!(
        ctx.run(on::action("deploy", json!({})), State::new()),
        Err(HarnessError::UnknownAction(name)) if name == "deploy"
    ));
}

#[test]
fn a_valid_action_runs_with_its_params_and_results() {
    let ctx = probe(|ctx, _, _| {
        let params = ctx.action_params()?;
        let symlink = params["symlink"].as_str().unwrap_or_default().to_string();
        ctx.action_log(&format!("switching to {symlink}"))?;
        ctx.set_action_results([("current", symlink.as_str()), ("builds.r2.state", "ok")])?;
        if symlink == "r9" {
            ctx.fail_action("r9 is not installed")?;
        }
        Ok(())
    });
    let out = ctx
        .run(
            on::action("set-current-symlink", json!({"symlink": "r2"})),
            State::new(),
        )
        .unwrap();
    assert!(out.succeeded());
    let action = out.action.unwrap();
    assert_eq!(action.params["symlink"], json!("r2"));
    assert_eq!(action.logs, ["switching to r2"]);
    assert_eq!(action.results["current"], "r2");
    assert_eq!(action.results["builds.r2.state"], "ok");
    assert_eq!(action.results["return-code"], "0");
    assert_eq!(action.failure, None);

    let out = ctx
        .run(
            on::action("set-current-symlink", json!({"symlink": "r9"})),
            State::new(),
        )
        .unwrap();
    assert!(out.succeeded(), "action-fail is not a hook failure");
    assert_eq!(
        out.action.unwrap().failure.as_deref(),
        Some("r9 is not installed")
    );
}

#[test]
fn action_result_keys_follow_juju_rules() {
    let ctx = probe(|ctx, _, _| {
        for key in ["Current", "build_label", "-x", "out.stdout"] {
            assert!(ctx.set_action_results([(key, "v")]).is_err(), "{key}");
        }
        ctx.set_action_results([("fine-key.nested-1", "v")])?;
        Ok(())
    });
    let out = ctx
        .run(on::action("list-builds", json!({})), State::new())
        .unwrap();
    assert!(out.succeeded());
    assert_eq!(out.action.unwrap().results["fine-key.nested-1"], "v");
}

#[test]
fn one_config_get_per_dispatch_however_often_config_is_read() {
    let ctx = probe(|ctx, _, _| {
        for _ in 0..5 {
            ConfigReader::new(ctx.model.config()?).int("listen_port")?;
            ctx.model.is_leader()?;
        }
        let rel = website(1);
        for _ in 0..3 {
            ctx.model
                .relation_data(rel, &wsgi_app::ops::BagOwner::App("haproxy".into()))?;
        }
        Ok(())
    });
    let out = ctx.run(on::update_status(), with_website()).unwrap();
    assert!(out.succeeded());
    assert_eq!(out.calls_to("config-get"), 1, "{:#?}", out.tool_calls);
    assert_eq!(out.calls_to("is-leader"), 1);
    assert_eq!(out.calls_to("relation-get"), 1);
    assert_eq!(
        out.tool_calls.last().unwrap(),
        "status-set --application=False active -- 'probe ready'"
    );
}

#[test]
fn unknown_hooks_are_ignored_without_touching_the_store() {
    let ctx = probe(|ctx, _, _| note(ctx, "ran"));
    let out = ctx
        .run(on::dispatch_path("hooks/made-up"), State::new())
        .unwrap();
    assert!(out.succeeded());
    assert!(out.state.stored_state.is_none());
    assert_eq!(out.logs.len(), 1);
    assert_eq!(out.logs[0].0, LogLevel::Debug);
    assert!(out.logs[0].1.contains("not handled by this charm"));
    assert_eq!(out.state.unit_status.name, StatusName::Unknown);
}

/// The same charm after an upgrade that dropped its `website` endpoint.
mod without_website {
    use wsgi_app::ops::{Charm, Event, HandlerError, Migration, Status};

    #[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::AsRefStr)]
    #[strum(serialize_all = "kebab-case")]
    pub enum Endpoint {
        Pgsql,
    }

    pub struct Upgraded;

    type Ctx<'s, 'b> = wsgi_app::ops::HookContext<'s, 'b, Endpoint, super::ops_support::Action>;

    impl Charm for Upgraded {
        type Endpoint = Endpoint;
        type Action = super::ops_support::Action;

        fn migrations(&self) -> &'static [Migration] {
            super::ops_support::V1
        }

        fn handle(
            &mut self,
            ctx: &mut Ctx<'_, '_>,
            event: &Event<Endpoint, Self::Action>,
        ) -> Result<(), HandlerError> {
            if let Event::Unknown(path) = event {
                return Err(format!("handed an event it does not know: {path}").into());
            }
            ctx.store
                .conn()
                .execute("INSERT INTO notes (text) VALUES (?1)", [event.name()])?;
            Ok(())
        }

        fn collect_status(&mut self, _ctx: &mut Ctx<'_, '_>) -> Result<Status, HandlerError> {
            Ok(Status::active(""))
        }
    }
}

#[test]
fn a_deferred_event_the_upgraded_charm_no_longer_knows_is_dropped() {
    let old = probe(|ctx, event, _| deferrer(ctx, event));
    let deferred = old
        .run(on::relation_changed(1, Some(0)), with_website())
        .unwrap();
    assert_eq!(deferred.deferred.len(), 1);

    let new = harness::Context::new(harness::WORKSPACE_CHARM_DIR, |_| without_website::Upgraded);
    let out = new.run(on::upgrade_charm(), deferred.state).unwrap();
    assert!(out.succeeded(), "{:?}", out.outcome);
    assert!(out.deferred.is_empty());
    assert_eq!(
        notes(&out.state),
        ["website-relation-changed", "upgrade-charm"]
    );
    assert!(out
        .logs
        .iter()
        .any(|(level, m)| *level == LogLevel::Warning
            && m.contains("hooks/website-relation-changed")));
}

/// Notes the website relations it sees and opens 8080; fails when
/// `build_label` is "fail".
fn topology_reader(ctx: &mut Ctx<'_, '_>, _event: &ProbeEvent) -> Result<(), HandlerError> {
    let ids: Vec<String> = ctx
        .model
        .relations(ops_support::Endpoint::Website)?
        .iter()
        .map(|r| r.id.to_string())
        .collect();
    note(ctx, &format!("website:{}", ids.join(",")))?;
    ctx.model.set_ports(&[Port::tcp(8080)])?;
    if ConfigReader::new(ctx.model.config()?).string("build_label")? == "fail" {
        return Err("the build failed".into());
    }
    Ok(())
}

fn last_note(state: &State) -> String {
    notes(state).last().cloned().unwrap_or_default()
}

#[test]
fn relations_and_ports_are_read_once_then_kept_up_to_date_by_the_events_that_change_them() {
    let ctx = probe(|ctx, event, _| topology_reader(ctx, event));
    let installed = ctx.run(on::install(), with_website()).unwrap();
    assert!(installed.succeeded());
    assert_eq!(installed.calls_to("relation-ids"), 1);
    assert_eq!(installed.calls_to("opened-ports"), 1);
    assert_eq!(installed.calls_to("open-port"), 1);

    let configured = installed.then(&ctx, on::config_changed()).unwrap();
    assert_eq!(last_note(&configured.state), "website:1");
    assert_eq!(configured.calls_to("relation-ids"), 0);
    assert_eq!(configured.calls_to("opened-ports"), 0);
    assert_eq!(configured.calls_to("open-port"), 0);

    // A second relation: its -created hook is how the unit learns of it.
    let related = configured
        .state
        .clone()
        .with_relation(Relation::new(2, "website", "apache"));
    let created = ctx.run(on::relation_created(2), related).unwrap();
    assert_eq!(last_note(&created.state), "website:1,2");
    assert_eq!(created.calls_to("relation-ids"), 0);
    let both = created.then(&ctx, on::update_status()).unwrap();
    assert_eq!(last_note(&both.state), "website:1,2");

    // Juju no longer lists a breaking relation, and forgets it after.
    let broken = both.then(&ctx, on::relation_broken(1)).unwrap();
    assert_eq!(last_note(&broken.state), "website:2");
    let after = broken.then(&ctx, on::config_changed()).unwrap();
    assert_eq!(last_note(&after.state), "website:2");
    assert_eq!(after.calls_to("relation-ids"), 0);

    // A new charm may declare new endpoints: upgrade-charm reads afresh.
    let upgraded = after.then(&ctx, on::upgrade_charm()).unwrap();
    assert_eq!(upgraded.calls_to("relation-ids"), 1);
    assert_eq!(upgraded.calls_to("opened-ports"), 1);
    assert_eq!(last_note(&upgraded.state), "website:2");
}

#[test]
fn a_relation_hook_teaches_the_unit_a_relation_whose_created_hook_it_missed() {
    // `juju resolved --no-retry` on a failed -created hook skips it; the
    // relation's later hooks still name it.
    let ctx = probe(|ctx, event, _| topology_reader(ctx, event));
    let installed = ctx.run(on::install(), State::new()).unwrap();
    assert_eq!(last_note(&installed.state), "website:");
    let related = installed
        .state
        .clone()
        .with_relation(Relation::new(4, "website", "haproxy").with_remote_units([0]));
    let joined = ctx.run(on::relation_joined(4, 0), related).unwrap();
    assert_eq!(last_note(&joined.state), "website:4");
    assert_eq!(joined.calls_to("relation-ids"), 0);
}

#[test]
fn a_failed_dispatch_makes_the_next_one_read_relations_and_ports_from_juju() {
    let ctx = probe(|ctx, event, _| topology_reader(ctx, event));
    let installed = ctx.run(on::install(), with_website()).unwrap();
    let failing = installed.state.clone().with_config("build_label", "fail");
    let failed = ctx.run(on::config_changed(), failing).unwrap();
    assert!(!failed.succeeded());
    assert_eq!(failed.calls_to("relation-ids"), 0);

    let fixed = failed.state.clone().with_config("build_label", "r1");
    let retried = ctx.run(on::config_changed(), fixed).unwrap();
    assert!(retried.succeeded());
    assert_eq!(retried.calls_to("relation-ids"), 1);
    assert_eq!(retried.calls_to("opened-ports"), 1);
    let next = retried.then(&ctx, on::update_status()).unwrap();
    assert_eq!(next.calls_to("relation-ids"), 0);
}

#[test]
fn a_unit_that_departs_a_relation_as_itself_forgets_it_without_a_broken_hook() {
    // A unit being removed leaves a peer relation with its -departed hooks
    // only (peers are never broken): the next hook reads that endpoint's
    // relations from Juju instead of trusting what the unit remembered.
    let ctx = probe(|ctx, event, _| topology_reader(ctx, event));
    let related =
        State::new().with_relation(Relation::new(1, "website", "haproxy").with_remote_units([0]));
    let joined = ctx
        .run(on::install(), related)
        .unwrap()
        .then(&ctx, on::relation_created(1))
        .unwrap()
        .then(&ctx, on::relation_joined(1, 0))
        .unwrap();
    let departed = joined
        .then(&ctx, on::relation_departed_by_this_unit(1, 0))
        .unwrap();
    assert!(departed.succeeded());
    assert_eq!(
        last_note(&departed.state),
        "website:1",
        "live during its departed hook"
    );
    let next = departed.then(&ctx, on::stop()).unwrap();
    assert_eq!(next.calls_to("relation-ids"), 1, "read afresh");

    // A remote unit departing changes nothing the unit remembers.
    let remote_left = joined.then(&ctx, on::relation_departed(1, 0)).unwrap();
    let next = remote_left.then(&ctx, on::update_status()).unwrap();
    assert_eq!(next.calls_to("relation-ids"), 0);
}
