//! The unprivileged account the application runs as: which it is on this
//! machine, and creating it on a real one.

use std::path::PathBuf;

use crate::workload::machine::{CommandSpec, Machine, Runner};
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
    if machine.is_real_root() {
        create_if_missing(machine.runner.as_ref(), app, lookup)?;
    }
    app_account(machine, app)
}

/// Run `useradd` for `app`'s system user when `look_up` says there is no
/// such user. A look-up that failed for another reason is an error, and
/// nothing is created: `useradd` on an existing user fails, and the hook
/// would blame it instead of the look-up.
fn create_if_missing(
    runner: &dyn Runner,
    app: &str,
    look_up: impl Fn(&str) -> std::io::Result<Account>,
) -> std::io::Result<()> {
    let name = system_user_name(app);
    match look_up(&name) {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let out = runner.run(&CommandSpec::new("useradd").args([
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::io;

    use super::*;
    use crate::workload::machine::CommandOutput;

    /// Records what it is asked to run; every program succeeds.
    #[derive(Default)]
    struct Recorder(RefCell<Vec<String>>);

    impl Runner for Recorder {
        fn run(&self, cmd: &CommandSpec) -> io::Result<CommandOutput> {
            self.0.borrow_mut().push(cmd.display());
            Ok(CommandOutput::default())
        }
        fn which(&self, _: &str) -> Option<PathBuf> {
            None
        }
    }

    fn account(name: &str) -> Account {
        Account {
            name: name.into(),
            uid: 999,
            gid: 999,
            home: "/srv/app".into(),
        }
    }

    #[test]
    fn useradd_runs_only_for_a_user_that_does_not_exist() {
        let runner = Recorder::default();
        create_if_missing(&runner, "app", |n| Ok(account(n))).unwrap();
        assert!(runner.0.borrow().is_empty());

        let missing = |n: &str| Err(io::Error::new(io::ErrorKind::NotFound, format!("no {n}")));
        create_if_missing(&runner, "app", missing).unwrap();
        assert_eq!(runner.0.borrow().len(), 1);
        assert!(runner.0.borrow()[0].starts_with("useradd --system"));
    }

    #[test]
    fn a_failed_look_up_is_an_error_not_a_missing_user() {
        let runner = Recorder::default();
        let broken = |_: &str| Err(io::Error::other("cannot look up system user: EIO"));
        let err = create_if_missing(&runner, "app", broken).unwrap_err();
        assert!(err.to_string().contains("EIO"), "{err}");
        assert!(
            runner.0.borrow().is_empty(),
            "useradd ran: {:?}",
            runner.0.borrow()
        );
    }
}
