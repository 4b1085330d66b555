//! Relations for real: a pgsql remote whose data points at a real
//! PostgreSQL (Debian's, started by the test on 127.0.0.1), an app that
//! connects with DATABASE_URL and answers from the database; the generated
//! NRPE command run as NRPE would run it, against the unit; MONGO_URL read
//! by pymongo's own URI parser.

mod e2e_support;

use std::path::Path;
use std::process::Command;

use e2e_support::archives::archive_bytes;
use e2e_support::ports::free_port;
use e2e_support::{get, Sim};
use harness::pg_server::PgServer;

const PASSWORD: &str = "p@ss:w/rd% 1'";

/// A charm directory whose `files/pgapp/app.tar.gz` is an app that reads
/// a greeting from PostgreSQL through DATABASE_URL.
fn charm_with_db_app(sim: &Sim) -> String {
    let dir = sim.charm_dir();
    let app = br#"import os

import psycopg


def application(environ, start_response):
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        (greeting,) = conn.execute("SELECT value FROM greeting").fetchone()
    body = greeting.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"#;
    let archive = archive_bytes(
        "app.tar.gz",
        &[
            ("db_app.py", &app[..]),
            ("requirements.txt", b"psycopg[binary]\n"),
        ],
    );
    let to = Path::new(&dir).join("files/pgapp");
    std::fs::create_dir_all(&to).unwrap();
    std::fs::write(to.join("app.tar.gz"), archive).unwrap();
    dir
}

#[test]
fn a_real_postgresql_a_real_nrpe_check_and_a_real_mongodb_uri_parser() {
    let pg = PgServer::start("127.0.0.1", free_port()).unwrap();
    let quoted_password = PASSWORD.replace('\'', "''");
    pg.admin_sql(
        "postgres",
        &format!("CREATE ROLE wsgi_app LOGIN PASSWORD '{quoted_password}'"),
    )
    .unwrap();
    pg.admin_sql("postgres", "CREATE DATABASE \"wsgi-app\" OWNER wsgi_app")
        .unwrap();
    pg.admin_sql(
        "wsgi-app",
        "CREATE TABLE greeting (value text); INSERT INTO greeting VALUES ('hello from postgres'); GRANT SELECT ON greeting TO wsgi_app;",
    )
    .unwrap();

    let sim = Sim::new("127.0.43");
    let charm = charm_with_db_app(&sim);
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
        "wsgi_application=db_app:application",
        "--config",
        "nagios_index_content=hello from postgres",
    ]);
    // Before the relation the app cannot answer: no DATABASE_URL.
    let addr = sim.unit_url(0);
    assert!(get(&addr).is_err());

    let port = pg.port.to_string();
    sim.add_remote(
        "postgresql",
        "pgsql",
        1,
        &[
            ("host", "127.0.0.1"),
            ("port", &port),
            ("user", "wsgi_app"),
            ("password", PASSWORD),
            ("database", "wsgi-app"),
            ("state", "standalone"),
            ("allowed-units", "wsgi-app/9"),
        ],
    );
    sim.ok(&["relate", "wsgi-app:pgsql", "postgresql"]);
    let status = sim.status_json();
    assert_eq!(sim.workload_status(&status, "wsgi-app/0"), "waiting");
    assert!(
        sim.workload_message(&status, "wsgi-app/0")
            .contains("to list wsgi-app/0 in allowed-units"),
        "{status}"
    );
    sim.ok(&[
        "set-remote-data",
        "postgresql/0",
        "allowed-units=wsgi-app/0",
    ]);
    assert_eq!(get(&addr).unwrap(), "hello from postgres");
    let status = sim.status_json();
    assert_eq!(
        sim.workload_message(&status, "wsgi-app/0"),
        "serving pgapp on :8080"
    );

    // Nagios: the NRPE command as written, run the way NRPE runs it.
    sim.add_remote(
        "nrpe",
        "nrpe-external-master",
        1,
        &[("nagios_hostname", "juju-wsgi-app-0")],
    );
    sim.ok(&["relate", "wsgi-app:nrpe-external-master", "nrpe"]);
    let cfg = std::fs::read_to_string(
        sim.unit_root("wsgi-app/0")
            .join("etc/nagios/nrpe.d/check_wsgi-app_http.cfg"),
    )
    .unwrap();
    let command = cfg
        .lines()
        .find_map(|l| l.strip_prefix("command[check_wsgi-app_http]="))
        .expect("a command line");
    // NRPE turns $$ into $ and hands the line to /bin/sh.
    let command = command.replace("$$", "$");
    let out = Command::new("sh").arg("-c").arg(&command).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.starts_with("HTTP OK"),
        "{command}: {text}"
    );

    // MongoDB: two units; pymongo's own parser reads MONGO_URL.
    sim.add_remote(
        "mongodb",
        "mongodb",
        2,
        &[("port", "27017"), ("replset", "rs0")],
    );
    sim.ok(&["set-remote-data", "mongodb/0", "hostname=10.1.0.1"]);
    sim.ok(&["set-remote-data", "mongodb/1", "hostname=10.1.0.2"]);
    sim.ok(&["relate", "wsgi-app:mongodb", "mongodb"]);
    let env = wsgi_app::workload::envvars::read_env_file(
        &sim.unit_root("wsgi-app/0").join("etc/wsgi-app/environment"),
    )
    .unwrap();
    let mongo_url = env
        .iter()
        .find(|(k, _)| k == "MONGO_URL")
        .map(|(_, v)| v.clone())
        .expect("MONGO_URL");
    let parsed = pymongo_parse(&mongo_url);
    assert_eq!(parsed, "[('10.1.0.1', 27017), ('10.1.0.2', 27017)] rs0");
    // The database still answers: mongodb did not disturb DATABASE_URL.
    assert_eq!(get(&addr).unwrap(), "hello from postgres");

    sim.destroy_and_check_nothing_left(&[&addr]);
}

/// Parse a MongoDB URI with pymongo (in a venv made once for the tests).
fn pymongo_parse(uri: &str) -> String {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pymongo-venv");
    let python = venv.join("bin/python");
    if !python.exists() || !venv.join(".ready").exists() {
        let ok = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status()
            .unwrap();
        assert!(ok.success());
        let ok = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "pymongo"])
            .status()
            .unwrap();
        assert!(ok.success(), "pip install pymongo");
        std::fs::write(venv.join(".ready"), "").unwrap();
    }
    let out = Command::new(python)
        .args([
            "-c",
            "import sys; from pymongo.uri_parser import parse_uri; p = parse_uri(sys.argv[1]); print(sorted(p['nodelist']), p['options'].get('replicaSet'))",
            uri,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
