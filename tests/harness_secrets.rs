//! Juju secrets in the in-memory Juju (modern-interfaces.md §6): owners,
//! revisions, grants on relations, each consumer's tracked revision and
//! bound label, and the `secret-changed` a new revision brings. Asked
//! directly through the `Backend` trait, and seen by a charm during a run.

mod ops_support;

use std::cell::RefCell;
use std::rc::Rc;

use harness::backend::HookScope;
use harness::{bag, on, CharmMeta, MemoryBackend, Relation, Secret, State};
use ops_support::{probe, Endpoint};
use wsgi_app::ops::{
    Backend, Event, ModelError, SecretContent, SecretEvent, SecretHook, SecretOwner, SecretRead,
    SecretRef,
};

const METADATA: &str = "
name: demo
summary: A charm for testing secrets in the in-memory Juju
description: One database endpoint.
requires:
  database: {interface: postgresql_client}
";

const LABEL: &str = "database.2.user.secret";

fn meta() -> CharmMeta {
    CharmMeta::from_yaml(METADATA, None, None).unwrap()
}

fn creds(password: &str) -> wsgi_app::ops::Bag {
    bag([("username", "relation-2"), ("password", password)])
}

/// demo/0 related to postgresql on database:2, and postgresql's user
/// secret granted on that relation.
fn world() -> (State, String) {
    let secret = Secret::new("postgresql", creds("pw-1"))
        .with_owner_label("database.2.user.secret")
        .granted_on(2);
    let id = secret.id.clone();
    let state = State::new()
        .with_relation(Relation::new(2, "database", "postgresql"))
        .with_secret(secret);
    (state, id)
}

fn password(content: Result<SecretContent, ModelError>) -> String {
    content.unwrap().get("password").unwrap().to_string()
}

#[test]
fn a_consumer_keeps_its_tracked_revision_until_it_refreshes() {
    let meta = meta();
    let (mut state, id) = world();
    // Never read: a new revision sends this unit nothing.
    assert_eq!(state.publish_secret_revision(&id, creds("pw-2")), None);

    let mut b = MemoryBackend::new(&meta, state, HookScope::default());
    // The label is unknown until a read by ID binds it.
    assert!(matches!(
        b.secret_get(SecretRef::Label(LABEL), SecretRead::Tracked),
        Err(ModelError::SecretNotFound(m)) if m == format!("consumer label {LABEL:?} not found")
    ));
    // The first read tracks the latest revision and binds the label.
    let by_id = SecretRef::IdWithLabel {
        id: &id,
        label: LABEL,
    };
    assert_eq!(password(b.secret_get(by_id, SecretRead::Tracked)), "pw-2");
    let (mut state, _) = b.finish(true);
    assert_eq!(state.secret(&id).unwrap().tracked, Some(2));
    assert_eq!(
        state.secret(&id).unwrap().consumer_label.as_deref(),
        Some(LABEL)
    );

    // The owner publishes revision 3: Juju runs secret-changed here, with
    // the label this unit bound.
    let event = state.publish_secret_revision(&id, creds("pw-3"));
    assert_eq!(event, Some(on::secret_changed(&id, LABEL)));

    let mut b = MemoryBackend::new(&meta, state, HookScope::default());
    let by_label = SecretRef::Label(LABEL);
    assert_eq!(
        password(b.secret_get(by_label, SecretRead::Tracked)),
        "pw-2"
    );
    assert_eq!(
        password(b.secret_get(SecretRef::Id(&id), SecretRead::Peek)),
        "pw-3"
    );
    assert_eq!(
        password(b.secret_get(by_label, SecretRead::Tracked)),
        "pw-2",
        "peek moves nothing"
    );
    assert_eq!(
        password(b.secret_get(by_label, SecretRead::Refresh)),
        "pw-3"
    );
    assert_eq!(
        password(b.secret_get(by_label, SecretRead::Tracked)),
        "pw-3"
    );
    // Either URI form names the same secret.
    let long = format!(
        "secret://00000000-0000-4000-8000-000000000000/{}",
        id.trim_start_matches("secret:")
    );
    assert_eq!(
        password(b.secret_get(SecretRef::Id(&long), SecretRead::Tracked)),
        "pw-3"
    );
    let (state, record) = b.finish(true);
    assert_eq!(state.secret(&id).unwrap().tracked, Some(3));
    assert_eq!(
        record.tool_calls[0],
        format!("secret-get --format=json --label {LABEL}")
    );
    assert_eq!(
        record.tool_calls[3],
        format!("secret-get --format=json --label {LABEL} --refresh")
    );
    // Up to date: the next revision is news again, an old one is not.
    let mut again = state.clone();
    assert!(again.publish_secret_revision(&id, creds("pw-4")).is_some());
}

#[test]
fn only_a_live_grant_lets_a_consumer_read() {
    let meta = meta();
    let (state, id) = world();
    let stranger = Secret::new("postgresql", creds("x")).granted_on(9);
    let elsewhere = Secret::new("mongodb", creds("y")).granted_on(2);
    let (stranger_id, elsewhere_id) = (stranger.id.clone(), elsewhere.id.clone());
    let state = state.with_secret(stranger).with_secret(elsewhere);

    let mut b = MemoryBackend::new(&meta, state.clone(), HookScope::default());
    for denied in [&stranger_id, &elsewhere_id] {
        assert!(matches!(
            b.secret_get(SecretRef::Id(denied), SecretRead::Tracked),
            Err(ModelError::AccessDenied(m)) if m == "permission denied"
        ));
    }
    assert!(matches!(
        b.secret_get(
            SecretRef::Id("secret:00000000000000000000"),
            SecretRead::Tracked
        ),
        Err(ModelError::SecretNotFound(_))
    ));
    assert_eq!(
        password(b.secret_get(SecretRef::Id(&id), SecretRead::Tracked)),
        "pw-1"
    );
    // A consumer may not read the owner's metadata.
    assert!(matches!(
        b.secret_info_get(SecretRef::Id(&id)),
        Err(ModelError::AccessDenied(_))
    ));
    assert_eq!(b.secret_ids().unwrap(), Vec::<String>::new());

    // Revoked: refused, even though the unit tracked a revision.
    let (state, _) = b.finish(true);
    let revoked = state.clone().revoke_secret(&id, 2);
    let mut b = MemoryBackend::new(&meta, revoked, HookScope::default());
    assert!(matches!(
        b.secret_get(SecretRef::Id(&id), SecretRead::Tracked),
        Err(ModelError::AccessDenied(_))
    ));
    // The relation gone: the grant went with it.
    let mut gone = state;
    gone.relations.clear();
    let mut b = MemoryBackend::new(&meta, gone, HookScope::default());
    assert!(matches!(
        b.secret_get(SecretRef::Id(&id), SecretRead::Peek),
        Err(ModelError::AccessDenied(_))
    ));
}

#[test]
fn an_owner_reads_the_latest_and_may_not_refresh() {
    let meta = meta();
    let ours = Secret::new("demo", creds("a-1"))
        .with_owner_label("admin")
        .with_revision(creds("a-2"));
    let mine = Secret::new("demo", creds("u")).with_owner_unit("demo/0");
    let theirs = Secret::new("demo", creds("v")).with_owner_unit("demo/1");
    let (ours_id, mine_id) = (ours.id.clone(), mine.id.clone());
    let state = State::new()
        .with_secret(ours)
        .with_secret(mine)
        .with_secret(theirs.clone());
    let mut b = MemoryBackend::new(&meta, state, HookScope::default());

    assert_eq!(
        password(b.secret_get(SecretRef::Label("admin"), SecretRead::Tracked)),
        "a-2"
    );
    assert!(matches!(
        b.secret_get(SecretRef::Id(&ours_id), SecretRead::Refresh),
        Err(ModelError::SecretOwnerCannotRefresh(_))
    ));
    // ID and label together: not the leader, so the label stays.
    assert_eq!(
        password(b.secret_get(
            SecretRef::IdWithLabel {
                id: &ours_id,
                label: "renamed"
            },
            SecretRead::Tracked
        )),
        "a-2"
    );
    let info = b.secret_info_get(SecretRef::Label("admin")).unwrap();
    assert_eq!(
        (info.revision, info.owner, info.label.as_str()),
        (2, SecretOwner::Application, "admin")
    );
    assert_eq!(
        b.secret_info_get(SecretRef::Id(&mine_id)).unwrap().owner,
        SecretOwner::Unit
    );
    assert!(matches!(
        b.secret_info_get(SecretRef::IdWithLabel {
            id: &ours_id,
            label: "admin"
        }),
        Err(ModelError::Usage { .. })
    ));
    // Another unit's secret is neither listed nor readable.
    let mut ids = vec![ours_id, mine_id];
    ids.sort();
    assert_eq!(b.secret_ids().unwrap(), ids);
    assert!(matches!(
        b.secret_get(SecretRef::Id(&theirs.id), SecretRead::Tracked),
        Err(ModelError::AccessDenied(_))
    ));
}

/// Juju treats a consumer's first read as a refresh, whatever its flags:
/// even a first `--peek` starts tracking the latest revision.
#[test]
fn a_first_peek_starts_tracking() {
    let meta = meta();
    let (state, id) = world();
    let mut b = MemoryBackend::new(&meta, state, HookScope::default());
    assert_eq!(
        password(b.secret_get(SecretRef::Id(&id), SecretRead::Peek)),
        "pw-1"
    );
    let (mut state, _) = b.finish(true);
    assert_eq!(state.secret(&id).unwrap().tracked, Some(1));
    assert_eq!(
        state.publish_secret_revision(&id, creds("pw-2")),
        Some(on::secret_changed(&id, ""))
    );
}

/// A charm's secret-changed handler re-reads with `--refresh` through the
/// model; the output State tracks the new revision; nothing the charm saw
/// reaches a log, a status or the store.
#[test]
fn a_charm_follows_a_rotation_through_secret_changed() {
    let seen: Rc<RefCell<Vec<String>>> = Rc::default();
    let log = seen.clone();
    let ctx = probe(move |ctx, event, _| {
        if let Event::Secret(SecretEvent {
            hook: SecretHook::Changed,
            id,
            label,
            ..
        }) = event
        {
            let secret = SecretRef::IdWithLabel { id, label };
            let content = ctx.model.secret_content(secret, SecretRead::Refresh)?;
            // Cached for the rest of the dispatch.
            let again = ctx.model.secret_content(secret, SecretRead::Tracked)?;
            assert_eq!(content, again);
            log.borrow_mut()
                .push(content.get("password").unwrap_or_default().into());
        }
        Ok(())
    });
    let label = "pgsql.2.user.secret";
    let secret = Secret::new("postgresql", creds("pw-1"))
        .granted_on(2)
        .tracked_by_unit(1, Some(label));
    let id = secret.id.clone();
    let mut state = State::new()
        .with_relation(Relation::new(2, Endpoint::Pgsql.as_ref(), "postgresql"))
        .with_secret(secret);
    let event = state.publish_secret_revision(&id, creds("pw-2")).unwrap();
    let out = ctx.run(event, state).unwrap();
    assert!(out.succeeded(), "{}", out.failure_summary());
    assert_eq!(*seen.borrow(), ["pw-2"]);
    assert_eq!(out.state.secret(&id).unwrap().tracked, Some(2));
    let secret_gets: Vec<&String> = out
        .tool_calls
        .iter()
        .filter(|c| c.starts_with("secret-get"))
        .collect();
    assert_eq!(
        secret_gets,
        [&format!(
            "secret-get --format=json {id} --label {label} --refresh"
        )]
    );
    for (_, message) in &out.logs {
        assert!(!message.contains("pw-"), "{message}");
    }
    assert!(!format!("{:?}", out.state.unit_status).contains("pw-"));
}

/// ops' data libraries retry an owner's refresh without `--refresh`; so
/// does `Model::secret_content`.
#[test]
fn the_model_retries_an_owners_refresh_without_it() {
    let seen: Rc<RefCell<Vec<String>>> = Rc::default();
    let log = seen.clone();
    let ours = Secret::new("wsgi-app", creds("own-2")).with_owner_label("mine");
    let ctx = probe(move |ctx, _, _| {
        let content = ctx
            .model
            .secret_content(SecretRef::Label("mine"), SecretRead::Refresh)?;
        log.borrow_mut()
            .push(content.get("password").unwrap_or_default().into());
        Ok(())
    });
    let out = ctx
        .run(on::update_status(), State::new().with_secret(ours))
        .unwrap();
    assert!(out.succeeded(), "{}", out.failure_summary());
    assert_eq!(*seen.borrow(), ["own-2"]);
    let secret_gets: Vec<&str> = out
        .tool_calls
        .iter()
        .map(String::as_str)
        .filter(|c| c.starts_with("secret-get"))
        .collect();
    assert_eq!(
        secret_gets,
        [
            "secret-get --format=json --label mine --refresh",
            "secret-get --format=json --label mine"
        ]
    );
}

/// Juju before 3.0.3 has no secrets: the tools are missing, as on a real
/// 2.9 agent (where providers send plain bag fields instead, §2.5).
#[test]
fn juju_without_secrets_has_no_secret_tools() {
    let seen: Rc<RefCell<Vec<String>>> = Rc::default();
    let log = seen.clone();
    let mut ctx = probe(move |ctx, _, _| {
        let answer = ctx.model.secret_content(
            SecretRef::Id("secret:cn8f3mvmp25c7a5b6b2g"),
            SecretRead::Tracked,
        );
        log.borrow_mut().push(match answer {
            Err(ModelError::ToolMissing { tool }) => tool,
            other => format!("{other:?}"),
        });
        Ok(())
    });
    let secret = Secret::new("postgresql", creds("pw")).with_id("secret:cn8f3mvmp25c7a5b6b2g");
    ctx.juju_version("2.9.49");
    let out = ctx
        .run(
            on::update_status(),
            State::new().with_secret(secret.clone()),
        )
        .unwrap();
    assert!(out.succeeded());
    assert!(!out.tool_calls.iter().any(|c| c.starts_with("secret-")));
    ctx.juju_version("3.0.3");
    ctx.run(on::update_status(), State::new().with_secret(secret))
        .unwrap();
    // From 3.0.3 the tool answers (here: not granted).
    let seen = seen.borrow();
    assert_eq!(seen[0], "secret-get");
    assert!(seen[1].starts_with("Err(AccessDenied"), "{}", seen[1]);
}

/// A deferred secret-changed is stored by its identifying variables only
/// (the ID and label, never content) and comes back whole at the next
/// dispatch.
#[test]
fn a_deferred_secret_changed_comes_back_with_its_id_and_label() {
    let seen: Rc<RefCell<Vec<String>>> = Rc::default();
    let log = seen.clone();
    let ctx = probe(move |ctx, event, _| {
        if let Event::Secret(secret) = event {
            log.borrow_mut().push(format!(
                "{} {} {:?}",
                secret.id, secret.label, secret.revision
            ));
            if log.borrow().len() == 1 {
                ctx.defer();
            }
        }
        Ok(())
    });
    let uri = "secret:cn8f3mvmp25c7a5b6b2g";
    let out = ctx
        .run(on::secret_changed(uri, LABEL), State::new())
        .unwrap();
    assert!(out.succeeded());
    assert_eq!(out.deferred.len(), 1);
    let stored: Vec<(&String, &String)> = out.deferred[0]
        .iter()
        .filter(|(k, _)| k.starts_with("JUJU_SECRET"))
        .collect();
    assert_eq!(
        stored,
        [
            (&"JUJU_SECRET_ID".to_string(), &uri.to_string()),
            (&"JUJU_SECRET_LABEL".to_string(), &LABEL.to_string())
        ]
    );
    let out = ctx.run(on::update_status(), out.state).unwrap();
    assert!(out.succeeded());
    assert!(out.deferred.is_empty());
    assert_eq!(
        *seen.borrow(),
        [format!("{uri} {LABEL} None"), format!("{uri} {LABEL} None")]
    );
}
