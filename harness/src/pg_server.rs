//! A throwaway PostgreSQL server for the end-to-end tests and the
//! benchmarks: Debian's server binaries (package `postgresql`), a cluster in
//! a temporary directory owned by the `postgres` system user (the server
//! refuses to run as root), listening on one TCP address only. The admin
//! (`postgres`) logs in over a Unix socket in that directory, which only
//! root and `postgres` can reach; every login over TCP needs a SCRAM
//! password. Dropping it stops the server, and the directory goes with it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A running cluster.
pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// The TCP address it listens on.
    pub address: String,
    pub port: u16,
}

impl PgServer {
    /// initdb and start a cluster listening on `address`:`port` only.
    pub fn start(address: &str, port: u16) -> Result<PgServer, String> {
        let versions = std::fs::read_dir("/usr/lib/postgresql").map_err(|e| {
            format!("/usr/lib/postgresql: {e} (install Debian's postgresql; cargo xtask test does)")
        })?;
        let bin = versions
            .flatten()
            .map(|e| e.path().join("bin"))
            .find(|b| b.join("initdb").exists())
            .ok_or("no initdb under /usr/lib/postgresql/*/bin (install Debian's postgresql)")?;
        let dir = tempfile::Builder::new()
            .prefix("wsgi-app-pg")
            .tempdir()
            .map_err(|e| format!("a directory for PostgreSQL: {e}"))?;
        checked(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path()),
        )?;
        let server = PgServer {
            dir,
            bin,
            address: address.to_string(),
            port,
        };
        let data = server.data_dir();
        checked(
            server
                .as_postgres(&server.bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args([
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-U",
                    "postgres",
                ]),
        )?;
        std::fs::write(
            data.join("pg_hba.conf"),
            format!(
                "local all postgres trust\nhost all all 127.0.0.1/32 scram-sha-256\nhost all all {address}/32 scram-sha-256\n"
            ),
        )
        .map_err(|e| format!("{}: {e}", data.display()))?;
        let options = format!(
            "-p {port} -k {} -c listen_addresses={address}",
            server.dir.path().display()
        );
        checked(
            server
                .as_postgres(&server.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .args(["-o", &options, "-l"])
                .arg(server.log_path())
                .args(["-w", "start"]),
        )?;
        Ok(server)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server's log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    fn as_postgres(&self, program: &Path) -> Command {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    }

    /// Run `sql` in `database` as the admin, over the Unix socket; psql's
    /// output.
    pub fn admin_sql(&self, database: &str, sql: &str) -> Result<String, String> {
        let out = checked(
            self.as_postgres(&self.bin.join("psql"))
                .arg("-h")
                .arg(self.dir.path())
                .args([
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                    "-X",
                    "-A",
                    "-t",
                ])
                .args(["-v", "ON_ERROR_STOP=1", "-d", database, "-c", sql]),
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Log in over TCP as `user` with `password` (in psql's environment,
    /// never its command line) and run `sql`: its output, or psql's error.
    pub fn login(
        &self,
        user: &str,
        password: &str,
        database: &str,
        sql: &str,
    ) -> Result<String, String> {
        let out = checked(
            Command::new(self.bin.join("psql"))
                .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
                .env("PGHOST", &self.address)
                .env("PGPORT", self.port.to_string())
                .env("PGUSER", user)
                .env("PGPASSWORD", password)
                .env("PGDATABASE", database)
                .env("PGCONNECT_TIMEOUT", "10"),
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self
            .as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "-w", "stop"])
            .output();
    }
}

/// Run `cmd`; its output when it succeeds, else what it printed.
fn checked(cmd: &mut Command) -> Result<Output, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{:?} failed ({}): {}{}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
