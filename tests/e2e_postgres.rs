//! Today's PostgreSQL for real: a PostgreSQL server of the test's own on
//! 127.0.49.200, charm-sim's emulated `postgresql_client` provider backed by
//! it (`add-remote --provider --postgres`), the real charm binary and real
//! gunicorn serving tests/fixtures/wsgi/pg, which answers a query made with
//! DATABASE_URL. The role `relation-<id>` and the database exist in the
//! server; `rotate-password` changes the role's password there and in a new
//! secret revision, under bounded load: no request fails, the app then
//! answers with the new password, and the server refuses the old one.

mod e2e_support;

use std::path::Path;
use std::time::Duration;

use e2e_support::archives::archive_bytes;
use e2e_support::load::Load;
use e2e_support::{get, Sim};
use harness::pg_server::PgServer;
use sha2::{Digest, Sha256};
use wsgi_app::workload::envvars::read_env_file;

/// This test's loopback block: units at 127.0.49.1…, the server at .200.
const BLOCK: &str = "127.0.49";
const SERVER: &str = "127.0.49.200";
const PORT: u16 = 5432;
/// The test server's superuser password, which charm-sim's provider uses.
const ADMIN_PASSWORD: &str = "admin-of-a-throwaway-server";

/// The charm, with tests/fixtures/wsgi/pg as build `pgapp`.
fn charm_with_pg_app(sim: &Sim) -> String {
    let dir = sim.charm_dir();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wsgi/pg");
    let app = std::fs::read(fixture.join("pg_app.py")).unwrap();
    let requirements = std::fs::read(fixture.join("requirements.txt")).unwrap();
    let archive = archive_bytes(
        "app.tar.gz",
        &[
            ("pg_app.py", &app[..]),
            ("requirements.txt", &requirements[..]),
        ],
    );
    let to = Path::new(&dir).join("files/pgapp");
    std::fs::create_dir_all(&to).unwrap();
    std::fs::write(to.join("app.tar.gz"), archive).unwrap();
    dir
}

/// DATABASE_URL as the unit's environment file gives it to the app.
fn database_url(sim: &Sim) -> url::Url {
    let path = sim.unit_root("wsgi-app/0").join("etc/wsgi-app/environment");
    let value = read_env_file(&path)
        .unwrap()
        .into_iter()
        .find(|(k, _)| k == "DATABASE_URL")
        .map(|(_, v)| v)
        .expect("DATABASE_URL in the environment file");
    url::Url::parse(&value).expect("DATABASE_URL parses")
}

/// What the app shows of the password it logged in with.
fn digest(password: &str) -> String {
    let hex: String = Sha256::digest(password.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    hex[..12].to_string()
}

#[test]
fn the_app_queries_as_its_relation_role_and_a_rotation_under_load_fails_no_request() {
    let pg = PgServer::start(SERVER, PORT).unwrap();
    pg.admin_sql(
        "postgres",
        &format!("ALTER ROLE postgres PASSWORD '{ADMIN_PASSWORD}'"),
    )
    .unwrap();

    let sim = Sim::new(BLOCK);
    let charm = charm_with_pg_app(&sim);
    sim.ok(&[
        "deploy",
        &charm,
        "--units",
        "1",
        "--config",
        "build_label=pgapp",
        "--config",
        "archive_filename=app.tar.gz",
        "--config",
        "requirements_path=requirements.txt",
        "--config",
        "wsgi_application=pg_app:application",
        "--config",
        "nagios_index_content=It works!",
    ]);
    let addr = sim.unit_url(0);
    assert!(get(&addr).is_err(), "no DATABASE_URL before the relation");

    let admin = format!("postgresql://postgres:{ADMIN_PASSWORD}@{SERVER}:{PORT}/postgres");
    sim.ok(&[
        "add-remote",
        "postgresql",
        "--interface",
        "postgresql_client",
        "--provider",
        "--postgres",
        &admin,
    ]);
    sim.ok(&["relate", "wsgi-app:postgresql", "postgresql"]);

    let url = database_url(&sim);
    let role = url.username().to_string();
    assert!(role.starts_with("relation-"), "{url}");
    assert_eq!(url.host_str(), Some(SERVER));
    assert_eq!(url.port(), Some(PORT));
    assert_eq!(url.path(), "/wsgi-app");
    let old_password = url.password().expect("a password").to_string();
    // The role and the database exist in the server, the role owns it.
    assert_eq!(
        pg.login(
            &role,
            &old_password,
            "wsgi-app",
            "SELECT current_user || ' ' || pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        ),
        Ok(format!("{role} {role}"))
    );
    let answer = |password: &str| {
        format!(
            "It works! Revision pg user={role} password-sha256={}",
            digest(password)
        )
    };
    assert_eq!(get(&addr), Ok(answer(&old_password)));
    let status = sim.status_json();
    assert_eq!(sim.workload_status(&status, "wsgi-app/0"), "active");

    // Its secret's revisions come from the server: rotate-secret would
    // publish a password PostgreSQL does not know.
    let model = harness::sim::store::Model::open(&sim.model_dir()).unwrap();
    let rel = sim.relation_to("postgresql");
    let uri = model.bag(rel.id, "postgresql").unwrap()["secret-user"].clone();
    drop(model);
    let refused = sim.fails(&["rotate-secret", &uri, "password=guessed"]);
    assert!(
        refused.contains("use `charm-sim rotate-password postgresql`"),
        "{refused}"
    );

    let load = Load::start(std::slice::from_ref(&addr), 2);
    std::thread::sleep(Duration::from_millis(300));
    let rotated = sim.ok(&["rotate-password", "postgresql"]);
    std::thread::sleep(Duration::from_millis(300));
    let result = load.finish();
    assert!(rotated.contains("revision 2"), "{rotated}");
    assert!(result.sent > 0);
    assert_eq!(result.failed, 0, "failed requests: {:?}", result.errors);

    let new_password = database_url(&sim).password().unwrap().to_string();
    assert_ne!(new_password, old_password);
    // Every worker now is the new master's, logged in with the new password.
    for _ in 0..8 {
        assert_eq!(get(&addr), Ok(answer(&new_password)));
    }
    let refused = pg
        .login(&role, &old_password, "wsgi-app", "SELECT 1")
        .expect_err("the old password no longer logs in");
    assert!(
        refused.contains("password authentication failed"),
        "{refused}"
    );
    assert_eq!(
        pg.login(&role, &new_password, "wsgi-app", "SELECT current_user"),
        Ok(role.clone())
    );

    // Neither password reached the server's log or charm-sim's status.
    let server_log = std::fs::read_to_string(pg.log_path()).unwrap();
    let status = sim.status_json().to_string();
    for text in [&server_log, &status] {
        for password in [&old_password, &new_password] {
            assert!(!text.contains(password.as_str()), "a password leaked");
        }
    }
    sim.destroy_and_check_nothing_left(&[&addr]);
}
