//! A real PostgreSQL behind charm-sim's emulated `postgresql_client`
//! provider (`add-remote NAME --interface postgresql_client --provider
//! --postgres postgresql://ADMIN[:PASSWORD]@HOST[:PORT][/DATABASE]`): the
//! role `relation-<id>` and the database it answers with are created in the
//! server for real, and `rotate-password` changes the role's password there.
//!
//! It talks to the server through Debian's `psql`, with the connection in
//! libpq's environment variables and the SQL on psql's standard input, so no
//! password (the admin's or a relation's) is ever on a command line that `ps`
//! shows. psql quotes the names itself (`:"role"` is an identifier,
//! `:'role'` a literal), and each session sets `log_min_error_statement` to
//! `panic`, so a statement that fails is not copied, password and all, into
//! the server's log.

use std::io::Write as _;
use std::process::{Command, Stdio};

use super::Result;
use crate::sim_err;
use wsgi_app::charm::relations::percent::decode_component;

/// What `--postgres` looks like, for messages (never the value given: it
/// may hold the admin's password).
const FORM: &str = "postgresql://ADMIN[:PASSWORD]@HOST[:PORT][/DATABASE]";

/// How charm-sim reaches the server as an administrator (a superuser: it
/// creates roles and databases and sets `log_min_error_statement`).
#[derive(Clone, PartialEq, Eq)]
pub struct Admin {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// None: psql finds it itself (`PGPASSWORD`, `~/.pgpass`), or the
    /// server trusts the admin.
    password: Option<String>,
    pub database: String,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Admin({}@{}/{})",
            self.user,
            self.endpoint(),
            self.database
        )
    }
}

impl Admin {
    /// Parse `--postgres`. Errors say what is wrong without repeating the
    /// value.
    pub fn parse(url: &str) -> Result<Admin> {
        let bad = |why: &str| sim_err!("--postgres: {why}; expected {FORM}");
        let rest = url
            .strip_prefix("postgresql://")
            .or_else(|| url.strip_prefix("postgres://"))
            .ok_or_else(|| bad("not a postgresql:// URL"))?;
        if rest.contains('?') || rest.contains('#') {
            return Err(bad("query parameters are not supported"));
        }
        let (authority, database) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = authority
            .rsplit_once('@')
            .ok_or_else(|| bad("no admin user (ADMIN@ before the host)"))?;
        let (user, password) = match userinfo.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (userinfo, None),
        };
        let decode = |part: &str, what: &str| {
            decode_component(part)
                .ok_or_else(|| bad(&format!("the {what} is not valid percent-encoding")))
        };
        let user = decode(user, "admin user")?;
        if user.is_empty() {
            return Err(bad("no admin user (ADMIN@ before the host)"));
        }
        let password = password.map(|p| decode(p, "password")).transpose()?;
        let (host, port) = match hostport.strip_prefix('[') {
            Some(bracketed) => {
                let (host, after) = bracketed
                    .split_once(']')
                    .ok_or_else(|| bad("an unclosed [ in the host"))?;
                (host, after.strip_prefix(':'))
            }
            None => match hostport.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (hostport, None),
            },
        };
        let port = match port {
            None => 5432,
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?,
        };
        if host.is_empty() || host.starts_with('/') {
            return Err(bad(
                "no host: the emulated provider publishes HOST:PORT as its endpoints, so it must be a TCP address the app can reach",
            ));
        }
        let database = match decode(database, "database")? {
            d if d.is_empty() => "postgres".to_string(),
            d => d,
        };
        Ok(Admin {
            host: host.to_string(),
            port,
            user,
            password,
            database,
        })
    }

    /// `HOST:PORT`, as the provider publishes it in `endpoints`.
    pub fn endpoint(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The server's version (`SHOW server_version`), which also proves the
    /// admin can log in.
    pub fn server_version(&self) -> Result<String> {
        let out = self.psql(&["-A", "-t", "-c", "SHOW server_version"], None)?;
        Ok(out.trim().to_string())
    }

    /// Create `role` (LOGIN) if missing and set its password, then create
    /// `database` if missing and make `role` its owner.
    pub fn create_role_and_database(
        &self,
        role: &str,
        password: &str,
        database: &str,
    ) -> Result<()> {
        let script = format!(
            "{}\
SELECT format('CREATE ROLE %I LOGIN', :'role') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \\gexec
ALTER ROLE :\"role\" WITH LOGIN PASSWORD :'password';
SELECT format('CREATE DATABASE %I OWNER %I', :'database', :'role') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'database') \\gexec
ALTER DATABASE :\"database\" OWNER TO :\"role\";
",
            session_preamble(password)?
        );
        self.psql(
            &[
                "-v",
                &format!("role={role}"),
                "-v",
                &format!("database={database}"),
            ],
            Some(&script),
        )
        .map(drop)
    }

    /// Give `role` a new password (`ALTER ROLE … PASSWORD`). Sessions it
    /// already opened stay open, as in PostgreSQL; new logins need the new
    /// password.
    pub fn set_password(&self, role: &str, password: &str) -> Result<()> {
        let script = format!(
            "{}ALTER ROLE :\"role\" WITH PASSWORD :'password';\n",
            session_preamble(password)?
        );
        self.psql(&["-v", &format!("role={role}")], Some(&script))
            .map(drop)
    }

    /// Run psql against the admin connection with `args` (names only, no
    /// secret) and `script` on its standard input; its standard output.
    fn psql(&self, args: &[&str], script: Option<&str>) -> Result<String> {
        let mut cmd = Command::new("psql");
        cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
            .args(args)
            .env("PGHOST", &self.host)
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", &self.user)
            .env("PGDATABASE", &self.database)
            .env("PGCONNECT_TIMEOUT", "10")
            .env("PGAPPNAME", "charm-sim")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(password) = &self.password {
            cmd.env("PGPASSWORD", password);
        }
        let mut child = cmd.spawn().map_err(|e| {
            sim_err!(
                "cannot run psql (Debian's postgresql-client) for the PostgreSQL at {}: {e}",
                self.endpoint()
            )
        })?;
        if let Some(mut stdin) = child.stdin.take() {
            // A psql that failed to connect may have closed it already;
            // its exit status and message say why.
            let _ = stdin.write_all(script.unwrap_or_default().as_bytes());
        }
        let out = child
            .wait_with_output()
            .map_err(|e| sim_err!("psql for the PostgreSQL at {}: {e}", self.endpoint()))?;
        if !out.status.success() {
            return Err(sim_err!(
                "the PostgreSQL at {} as {:?} refused: {}",
                self.endpoint(),
                self.user,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// The start of every script that carries a password: no statement of this
/// session reaches the server's log, and `:'password'` holds it.
fn session_preamble(password: &str) -> Result<String> {
    // Only the provider's own random hex comes here; anything else could
    // break out of psql's `\set` quoting.
    if password.is_empty() || !password.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(sim_err!("internal: a relation password must be hex digits"));
    }
    Ok(format!(
        "SET log_min_error_statement TO panic;\n\\set password '{password}'\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_gives_host_port_user_and_database() {
        let admin = Admin::parse("postgresql://postgres:p%40ss@127.0.49.200:5433/admin").unwrap();
        assert_eq!(admin.host, "127.0.49.200");
        assert_eq!(admin.port, 5433);
        assert_eq!(admin.user, "postgres");
        assert_eq!(admin.password.as_deref(), Some("p@ss"));
        assert_eq!(admin.database, "admin");
        assert_eq!(admin.endpoint(), "127.0.49.200:5433");
        let short = Admin::parse("postgres://me@db.example").unwrap();
        assert_eq!((short.port, short.database.as_str()), (5432, "postgres"));
        assert_eq!(short.password, None);
        let v6 = Admin::parse("postgresql://me@[::1]:6000").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 6000));
        assert_eq!(v6.endpoint(), "[::1]:6000");
    }

    #[test]
    fn bad_urls_say_what_is_wrong_without_the_password() {
        for (url, why) in [
            ("mysql://root:hunter2@h/db", "not a postgresql:// URL"),
            ("postgresql://h:5432/db", "no admin user"),
            (
                "postgresql://root:hunter2@h:99999/db",
                "the port is not a number",
            ),
            (
                "postgresql://root:hunter2@h/db?sslmode=require",
                "query parameters",
            ),
            ("postgresql://root:hunter2@:5432/db", "no host"),
        ] {
            let e = Admin::parse(url).unwrap_err().to_string();
            assert!(e.contains(why), "{url}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
        assert!(
            !format!("{:?}", Admin::parse("postgresql://root:hunter2@h").unwrap())
                .contains("hunter2")
        );
    }

    #[test]
    fn only_hex_passwords_reach_psql() {
        assert!(session_preamble("00ff")
            .unwrap()
            .contains("\\set password '00ff'"));
        assert!(session_preamble("x'; DROP ROLE postgres; --").is_err());
        assert!(session_preamble("").is_err());
    }
}
