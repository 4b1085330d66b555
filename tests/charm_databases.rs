//! Today's databases through the charm: `postgresql` (`postgresql_client`)
//! and `mongodb-client` (`mongodb_client`), with the provider data and Juju
//! secrets of shared/reference/modern-interfaces.md §2, §3 and §6.

mod charm_support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use charm_support::*;
use harness::{bag, on, Chain, Output, Relation, Secret, State, StoreImage};
use wsgi_app::charm::WsgiApp;
use wsgi_app::ops::{Bag, StatusName};
use wsgi_app::workload::envvars::read_env_file;

const PASSWORD: &str = "s3cr3t p@ss/w:rd";
const ROTATED: &str = "n3w s3cr3t?#";
const REQUESTED: &str = r#"["username","password","tls","tls-ca","uris","read-only-uris"]"#;

fn env_value(state: &State, name: &str) -> Option<String> {
    read_env_file(&state.machine.path("/etc/wsgi-app/environment"))
        .unwrap()
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn creds(password: &str) -> Bag {
    bag([("username", "relation-5"), ("password", password)])
}

/// PostgreSQL 16's leader answer (§2.2), credentials in `secret-user`.
fn pg_answer(secret: &str) -> Bag {
    bag([
        ("database", "wsgi-app"),
        ("endpoints", "10.0.0.5:5432"),
        ("read-only-endpoints", "10.0.0.6:5432"),
        ("version", "16.4"),
        ("secret-user", secret),
    ])
}

/// The provider's user secret, granted on relation 5 as its leader does.
fn user_secret(password: &str) -> Secret {
    Secret::new("postgresql", creds(password))
        .with_owner_label("database.5.user.secret")
        .granted_on(5)
}

/// Related (and asked), not answered yet.
fn related(ctx: &harness::Context<WsgiApp>, state: State) -> Chain<'_, WsgiApp> {
    ctx.chain(state.with_relation(Relation::new(5, "postgresql", "postgresql")))
        .relate(5)
        .unwrap()
}

/// The provider answers with `secret`: its app bag, then relation-changed.
fn answer<'c>(chain: Chain<'c, WsgiApp>, secret: Secret) -> Chain<'c, WsgiApp> {
    let id = secret.id.clone();
    chain
        .update_state(|s| {
            s.with_secret(secret)
                .update_remote_app_data(5, pg_answer(&id))
        })
        .run(on::relation_changed(5, None))
        .unwrap()
}

/// Nothing the unit showed or told Juju holds `password`, whole or encoded.
fn assert_password_nowhere(outputs: &[Output], password: &str) {
    let encoded = wsgi_app::charm::relations::percent::encode_component(password);
    for out in outputs {
        let shown = out
            .logs
            .iter()
            .map(|(_, line)| line.clone())
            .chain(out.unit_status_history.iter().map(|s| s.message.clone()))
            .chain(out.app_status_history.iter().map(|s| s.message.clone()))
            .chain(out.tool_calls.iter().cloned())
            .chain(out.commands.iter().map(|c| format!("{c:?}")));
        for text in shown {
            assert!(
                !text.contains(password) && !text.contains(&encoded),
                "the password shows in: {text}"
            );
        }
    }
}

/// The unit's store file holds no byte sequence of `password`, whole or
/// percent-encoded.
fn assert_store_holds_no(state: &State, password: &str) {
    let bytes = state.stored_state.as_ref().expect("a store").bytes();
    let encoded = wsgi_app::charm::relations::percent::encode_component(password);
    for needle in [password, encoded.as_str()] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "the store file holds the password ({} bytes searched)",
            bytes.len()
        );
    }
}

#[test]
fn the_leader_writes_the_request_and_non_leaders_do_not() {
    let ctx = context();
    let chain = related(&ctx, serving_r1(&ctx));
    let state = chain.state();
    let rel = state.relation(5).unwrap();
    assert_eq!(
        rel.local_app_data,
        bag([("database", "wsgi-app"), ("requested-secrets", REQUESTED)])
    );
    assert_eq!(
        rel.local_unit_data
            .get("requested-secrets")
            .map(String::as_str),
        Some(REQUESTED)
    );
    assert_status(
        state,
        StatusName::Waiting,
        "waiting for postgresql to create the database (postgresql:5)",
    );
    assert_eq!(env_value(state, "DATABASE_URL"), None);

    // database_name asks again for another name.
    let renamed = ctx
        .chain(chain.into_state().with_config("database_name", "shop"))
        .run(on::config_changed())
        .unwrap()
        .into_state();
    assert_eq!(
        renamed
            .relation(5)
            .unwrap()
            .local_app_data
            .get("database")
            .map(String::as_str),
        Some("shop")
    );

    // A non-leader asks nothing in the application bag (it may not).
    let follower = serving_r1(&ctx).with_leader(false);
    let chain = related(&ctx, follower);
    let state = chain.state();
    assert!(state.relation(5).unwrap().local_app_data.is_empty());
    assert!(chain
        .outputs()
        .iter()
        .flat_map(|o| o.tool_calls.iter())
        .all(|call| !(call.starts_with("relation-set") && call.contains("--app"))));
    assert_status(state, StatusName::Waiting, "(postgresql:5)");
}

#[test]
fn a_name_postgresql_refuses_is_blocked_and_not_asked_for() {
    let ctx = context();
    let state = serving_r1(&ctx).with_config("database_name", "template1");
    let chain = related(&ctx, state);
    let state = chain.state();
    assert!(state.relation(5).unwrap().local_app_data.is_empty());
    assert_status(
        state,
        StatusName::Blocked,
        "postgresql:5: database_name \"template1\"",
    );
}

#[test]
fn credentials_from_the_secret_then_a_rotation_moves_the_app_to_the_new_password() {
    let ctx = context();
    let waiting = related(&ctx, serving_r1(&ctx));
    let fingerprint = waiting
        .state()
        .service_fingerprint("wsgi-app")
        .map(str::to_string);
    let secret = user_secret(PASSWORD);
    let id = secret.id.clone();
    let chain = answer(waiting, secret);
    let state = chain.state();
    assert_status(state, StatusName::Active, "serving r1 on :8080");
    let encoded = "s3cr3t%20p%40ss%2Fw%3Ard";
    let url = format!("postgresql://relation-5:{encoded}@10.0.0.5:5432/wsgi-app");
    assert_eq!(env_value(state, "DATABASE_URL"), Some(url.clone()));
    assert_eq!(env_value(state, "POSTGRESQL_DB_CONNECT_STRING"), Some(url));
    assert_eq!(
        env_value(state, "DATABASE_READ_ONLY_URL"),
        Some(format!(
            "postgresql://relation-5:{encoded}@10.0.0.6:5432/wsgi-app"
        ))
    );
    // Read by URI, binding our label, at the newest revision (§2.4).
    let label = "postgresql.5.user.secret";
    assert!(chain
        .last()
        .tool_calls
        .iter()
        .any(|c| c.starts_with("secret-get")
            && c.contains(&id)
            && c.contains(label)
            && c.contains("--refresh")));
    assert_eq!(
        state.secret(&id).unwrap().consumer_label.as_deref(),
        Some(label)
    );
    let before = state.service_fingerprint("wsgi-app").map(str::to_string);
    assert_ne!(before, fingerprint, "the app restarted with DATABASE_URL");

    // The provider rotates the password: Juju sends secret-changed.
    let mut state = chain.into_state();
    let changed = state
        .publish_secret_revision(&id, creds(ROTATED))
        .expect("this unit tracks the secret");
    let rotated = ctx.chain(state).run(changed).unwrap();
    let state = rotated.state();
    assert_eq!(
        env_value(state, "DATABASE_URL"),
        Some("postgresql://relation-5:n3w%20s3cr3t%3F%23@10.0.0.5:5432/wsgi-app".into())
    );
    assert_eq!(state.secret(&id).unwrap().tracked, Some(2));
    assert_ne!(
        state.service_fingerprint("wsgi-app").map(str::to_string),
        before,
        "a new gunicorn master with the new password"
    );
    assert_status(state, StatusName::Active, "serving r1 on :8080");
    assert_password_nowhere(rotated.outputs(), ROTATED);
}

#[test]
fn no_secret_reaches_a_log_a_status_or_a_hook_tool() {
    let ctx = context();
    let chain = answer(related(&ctx, serving_r1(&ctx)), user_secret(PASSWORD));
    assert!(env_value(chain.state(), "DATABASE_URL").is_some());
    let chain = chain
        .run(on::update_status())
        .unwrap()
        .run(on::config_changed())
        .unwrap()
        .run(on::relation_broken(5))
        .unwrap();
    assert_password_nowhere(chain.outputs(), PASSWORD);
}

#[test]
fn secret_content_never_enters_the_store_and_the_app_keeps_its_url() {
    let ctx = context();
    let secret = user_secret(PASSWORD);
    let id = secret.id.clone();
    let chain = answer(related(&ctx, serving_r1(&ctx)), secret);
    let url = "postgresql://relation-5:s3cr3t%20p%40ss%2Fw%3Ard@10.0.0.5:5432/wsgi-app";
    assert_eq!(
        env_value(chain.state(), "DATABASE_URL").as_deref(),
        Some(url)
    );
    assert_store_holds_no(chain.state(), PASSWORD);
    let recorded: Vec<String> = chain
        .state()
        .stored_state
        .as_ref()
        .unwrap()
        .query(|c| {
            let mut stmt = c.prepare("SELECT value FROM relation_urls ORDER BY name")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect()
        })
        .unwrap();
    assert!(
        recorded.contains(&"postgresql://relation-5:***@10.0.0.5:5432/wsgi-app".to_string()),
        "{recorded:?}"
    );

    // Dispatches that do not read the secret keep the URL the app has.
    let chain = chain
        .run(on::update_status())
        .unwrap()
        .run(on::config_changed())
        .unwrap();
    assert_eq!(
        env_value(chain.state(), "DATABASE_URL").as_deref(),
        Some(url)
    );
    assert_store_holds_no(chain.state(), PASSWORD);

    let mut state = chain.into_state();
    let changed = state
        .publish_secret_revision(&id, creds(ROTATED))
        .expect("this unit tracks the secret");
    let rotated = ctx
        .chain(state)
        .run(changed)
        .unwrap()
        .run(on::update_status())
        .unwrap();
    assert_eq!(
        env_value(rotated.state(), "DATABASE_URL"),
        Some("postgresql://relation-5:n3w%20s3cr3t%3F%23@10.0.0.5:5432/wsgi-app".into())
    );
    assert_store_holds_no(rotated.state(), ROTATED);
    assert_store_holds_no(rotated.state(), PASSWORD);

    // A grant taken back: the secret cannot be read, the app keeps its URL.
    let revoked = rotated
        .update_state(|s| s.revoke_secret(&id, 5))
        .run(on::relation_changed(5, None))
        .unwrap();
    assert!(env_value(revoked.state(), "DATABASE_URL")
        .unwrap()
        .contains("n3w%20s3cr3t"));
    assert_store_holds_no(revoked.state(), ROTATED);
}

#[test]
fn a_store_from_before_the_redaction_forgets_the_password_on_upgrade() {
    let ctx = context();
    let secret = user_secret(PASSWORD);
    let id = secret.id.clone();
    let chain = answer(related(&ctx, serving_r1(&ctx)), secret);
    let url = env_value(chain.state(), "DATABASE_URL").unwrap();
    // What a unit of schema 1 kept: the whole URL. Its grant is gone, so the
    // upgrade cannot rebuild the URL and overwrite the row that way.
    let mut state = chain.into_state().revoke_secret(&id, 5);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    std::fs::write(&path, state.stored_state.as_ref().unwrap().bytes()).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE relation_urls SET value = ?1 WHERE name = 'DATABASE_URL'",
        [&url],
    )
    .unwrap();
    conn.execute(
        "UPDATE ops_meta SET value = '1' WHERE key = 'charm_schema'",
        [],
    )
    .unwrap();
    drop(conn);
    let old = std::fs::read(&path).unwrap();
    let encoded = wsgi_app::charm::relations::percent::encode_component(PASSWORD);
    assert!(
        old.windows(encoded.len()).any(|w| w == encoded.as_bytes()),
        "the old store holds the password"
    );
    state.stored_state = Some(StoreImage::from_bytes(old));

    let upgraded = ctx.chain(state).run(on::upgrade_charm()).unwrap();
    assert!(upgraded.last().succeeded());
    assert_store_holds_no(upgraded.state(), PASSWORD);
    assert_eq!(env_value(upgraded.state(), "DATABASE_URL"), Some(url));
}

#[test]
fn juju_without_secrets_gives_plain_fields() {
    let mut ctx = context();
    ctx.juju_version("2.9.49");
    let chain = related(&ctx, serving_r1(&ctx));
    let mut plain = creds(PASSWORD);
    plain.extend(bag([
        ("database", "wsgi-app"),
        ("endpoints", "10.0.0.5:5432"),
        ("tls", "False"),
    ]));
    let chain = chain
        .update_state(|s| s.update_remote_app_data(5, plain))
        .run(on::relation_changed(5, None))
        .unwrap();
    let state = chain.state();
    assert_eq!(
        env_value(state, "DATABASE_URL").as_deref(),
        Some("postgresql://relation-5:s3cr3t%20p%40ss%2Fw%3Ard@10.0.0.5:5432/wsgi-app")
    );
    assert!(chain
        .outputs()
        .iter()
        .flat_map(|o| o.tool_calls.iter())
        .all(|c| !c.starts_with("secret-")));
    assert_status(state, StatusName::Active, "serving r1");
}

#[test]
fn an_answer_before_our_request_is_refused() {
    let ctx = context();
    // Credentials in the provider's bag before we asked, for no database:
    // data_interfaces' provider refuses to write that (§2.2).
    let early = Relation::new(5, "postgresql", "postgresql").with_remote_app_data(bag([
        ("endpoints", "10.0.0.5:5432"),
        ("username", "relation-5"),
        ("password", PASSWORD),
    ]));
    let chain = ctx
        .chain(serving_r1(&ctx).with_relation(early))
        .relate(5)
        .unwrap();
    let state = chain.state();
    assert_eq!(env_value(state, "DATABASE_URL"), None);
    assert_status(
        state,
        StatusName::Waiting,
        "postgresql:5: the provider sent credentials before our request",
    );
    // Our request went out all the same; the answer to it is taken.
    assert_eq!(
        state
            .relation(5)
            .unwrap()
            .local_app_data
            .get("database")
            .map(String::as_str),
        Some("wsgi-app")
    );
    let chain = chain
        .update_state(|s| s.update_remote_app_data(5, bag([("database", "wsgi-app")])))
        .run(on::relation_changed(5, None))
        .unwrap();
    assert!(env_value(chain.state(), "DATABASE_URL").is_some());
    assert_password_nowhere(chain.outputs(), PASSWORD);
}

#[test]
fn a_revoked_grant_waits_naming_the_relation_and_shows_no_secret() {
    let ctx = context();
    let secret = user_secret(PASSWORD);
    let id = secret.id.clone();
    let chain = answer(related(&ctx, serving_r1(&ctx)), secret);
    let chain = chain
        .update_state(|s| s.revoke_secret(&id, 5))
        .run(on::relation_changed(5, None))
        .unwrap();
    let state = chain.state();
    assert!(chain.last().succeeded(), "no hook error loop");
    assert_status(
        state,
        StatusName::Waiting,
        "postgresql:5: secret-user names a secret this unit may not read (permission denied)",
    );
    assert_password_nowhere(chain.outputs(), PASSWORD);
}

#[test]
fn tls_puts_the_ca_in_a_file_the_app_group_reads_and_the_url_verifies_it() {
    let ctx = context();
    let user = user_secret(PASSWORD);
    let tls = Secret::new(
        "postgresql",
        bag([
            ("tls", "True"),
            ("tls-ca", "-----BEGIN CERTIFICATE-----\nMIIB\n"),
        ]),
    )
    .granted_on(5);
    let tls_id = tls.id.clone();
    let user_id = user.id.clone();
    let chain = related(&ctx, serving_r1(&ctx))
        .update_state(|s| {
            let mut answer = pg_answer(&user_id);
            answer.insert("secret-tls".into(), tls_id.clone());
            s.with_secret(user)
                .with_secret(tls)
                .update_remote_app_data(5, answer)
        })
        .run(on::relation_changed(5, None))
        .unwrap();
    let state = chain.state();
    let ca = state.machine.path("/etc/wsgi-app/postgresql-ca.pem");
    assert_eq!(
        std::fs::read_to_string(&ca).unwrap(),
        "-----BEGIN CERTIFICATE-----\nMIIB\n"
    );
    let meta = std::fs::metadata(&ca).unwrap();
    let env_meta = std::fs::metadata(state.machine.path("/etc/wsgi-app/environment")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    assert_eq!(meta.uid(), 0);
    assert_eq!(
        meta.gid(),
        env_meta.gid(),
        "the app's group, as the env file"
    );
    let url = env_value(state, "DATABASE_URL").unwrap();
    let encoded_path = wsgi_app::charm::relations::percent::encode_component(&ca.to_string_lossy());
    assert!(
        url.ends_with(&format!("?sslmode=verify-full&sslrootcert={encoded_path}")),
        "{url}"
    );
    assert_status(state, StatusName::Active, "serving r1");

    // The relation goes: the variables and the CA go with it.
    let gone = chain
        .run(on::relation_departed(5, 0))
        .unwrap()
        .run(on::relation_broken(5))
        .unwrap()
        .into_state();
    for name in [
        "DATABASE_URL",
        "POSTGRESQL_DB_CONNECT_STRING",
        "DATABASE_READ_ONLY_URL",
    ] {
        assert_eq!(env_value(&gone, name), None, "{name}");
    }
    assert!(!ca.exists());
    assert_status(&gone, StatusName::Active, "serving r1");
}

#[test]
fn mongodb_client_gives_mongo_url_and_broken_removes_it() {
    let ctx = context();
    let secret = Secret::new("mongodb", creds(PASSWORD))
        .with_owner_label("database.6.user.secret")
        .granted_on(6);
    let id = secret.id.clone();
    let chain = ctx
        .chain(serving_r1(&ctx).with_relation(Relation::new(6, "mongodb-client", "mongodb")))
        .relate(6)
        .unwrap();
    assert_eq!(
        chain
            .state()
            .relation(6)
            .unwrap()
            .local_app_data
            .get("database")
            .map(String::as_str),
        Some("wsgi-app")
    );
    let chain = chain
        .update_state(|s| {
            s.with_secret(secret).update_remote_app_data(
                6,
                bag([
                    ("database", "wsgi-app"),
                    ("endpoints", "10.0.0.8:27017,10.0.0.9:27017"),
                    ("replset", "rs0"),
                    ("secret-user", &id),
                ]),
            )
        })
        .run(on::relation_changed(6, None))
        .unwrap();
    let state = chain.state();
    let url = "mongodb://relation-5:s3cr3t%20p%40ss%2Fw%3Ard@10.0.0.8:27017,10.0.0.9:27017/wsgi-app?replicaSet=rs0&authSource=admin";
    assert_eq!(env_value(state, "MONGO_URL").as_deref(), Some(url));
    assert_eq!(
        env_value(state, "MONGODB_DB_CONNECT_STRING").as_deref(),
        Some(url)
    );
    assert_eq!(env_value(state, "DATABASE_URL"), None);
    let gone = chain
        .run(on::relation_departed(6, 0))
        .unwrap()
        .run(on::relation_broken(6))
        .unwrap();
    assert_eq!(env_value(gone.state(), "MONGO_URL"), None);
    assert_eq!(env_value(gone.state(), "MONGODB_DB_CONNECT_STRING"), None);
    assert_password_nowhere(gone.outputs(), PASSWORD);
}

#[test]
fn legacy_and_modern_for_the_same_database_are_blocked_naming_both() {
    let ctx = context();
    let chain = ctx
        .chain(serving_r1(&ctx).with_relation(Relation::new(3, "pgsql", "old-postgresql")))
        .relate(3)
        .unwrap()
        .update_state(|s| s.with_relation(Relation::new(5, "postgresql", "postgresql")))
        .relate(5)
        .unwrap();
    let state = chain.state();
    assert_status(
        state,
        StatusName::Blocked,
        "pgsql:3 (old-postgresql) and postgresql:5 (postgresql) are both related, which the providers warn against: remove one (juju remove-relation wsgi-app:pgsql old-postgresql); pgsql:3 provides DATABASE_URL meanwhile",
    );
    let chain = answer(chain, user_secret(PASSWORD));
    assert_status(
        chain.state(),
        StatusName::Blocked,
        "pgsql:3 (old-postgresql) and postgresql:5",
    );
    assert_eq!(env_value(chain.state(), "DATABASE_URL"), None);

    // The legacy relation goes: the modern one provides.
    let chain = chain
        .run(on::relation_departed(3, 0))
        .unwrap()
        .run(on::relation_broken(3))
        .unwrap();
    assert!(env_value(chain.state(), "DATABASE_URL")
        .unwrap()
        .starts_with("postgresql://relation-5:"));

    let mongo = ctx
        .chain(serving_r1(&ctx).with_relation(Relation::new(4, "mongodb", "old-mongodb")))
        .relate(4)
        .unwrap()
        .update_state(|s| s.with_relation(Relation::new(6, "mongodb-client", "mongodb")))
        .relate(6)
        .unwrap();
    assert_status(
        mongo.state(),
        StatusName::Blocked,
        "mongodb:4 (old-mongodb) and mongodb-client:6 (mongodb) are both related",
    );
}

#[test]
fn bad_provider_data_is_blocked_naming_the_relation_and_field() {
    let ctx = context();
    let mut content = creds(PASSWORD);
    content.insert("uris".into(), format!("{PASSWORD} is no URI"));
    let secret = Secret::new("postgresql", content).granted_on(5);
    let chain = answer(related(&ctx, serving_r1(&ctx)), secret);
    assert!(chain.last().succeeded(), "no hook error loop");
    assert_status(
        chain.state(),
        StatusName::Blocked,
        "postgresql:5: uris is not a postgresql:// URI",
    );
    assert_eq!(env_value(chain.state(), "DATABASE_URL"), None);
    assert_password_nowhere(chain.outputs(), PASSWORD);
}
