//! The unprivileged account the application runs as: which it is on this
//! machine, and creating it on a real one.

use std::path::PathBuf;

use crate::workload::machine::{CommandSpec, Machine};
use crate::workload::users::{is_root, lookup, Account};

/// The account the application runs as. On a real machine (root `/`) it is
/// a system user named after the application; under a test or local-model
/// root, where creating users would change the host, it is `nobody` (or the
/// current user when not running as root). Never root.
pub fn app_account(machine: &Machine, app: &str) -> std::io::Result<Account> {
    if machine.is_real_root() {
        return lookup(&system_user_name(app));
    }
    if is_root() {
        return lookup("nobody");
    }
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    Ok(Account {
        name: machine
            .invoking_user
            .clone()
            .unwrap_or_else(|| uid.to_string()),
        uid,
        gid,
        home: PathBuf::from("/"),
    })
}

/// Juju application names may be longer than a user name may be.
pub fn system_user_name(app: &str) -> String {
    app.chars().take(32).collect()
}

/// Create the application's system user on a real machine when missing.
pub fn ensure_app_user(machine: &Machine, app: &str) -> std::io::Result<Account> {
    if machine.is_real_root() && lookup(&system_user_name(app)).is_err() {
        let name = system_user_name(app);
        let out = machine.runner.run(&CommandSpec::new("useradd").args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            &format!("/srv/{app}"),
            "--shell",
            "/usr/sbin/nologin",
            &name,
        ]))?;
        if !out.success() {
            return Err(std::io::Error::other(format!(
                "useradd {name} failed: {}",
                out.tail(2)
            )));
        }
    }
    app_account(machine, app)
}
