//! System accounts: looking them up, and creating the unprivileged user the
//! application runs as.

use std::ffi::{CStr, CString};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// Look a user up in the system's passwd database. A user that does not
/// exist is an error of kind [`NotFound`](std::io::ErrorKind::NotFound);
/// any other failure (an unreadable database, NSS down, out of memory) is
/// of another kind, so that a caller never takes it for "no such user".
pub fn lookup(name: &str) -> std::io::Result<Account> {
    let c_name = CString::new(name)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in user name"))?;
    let mut buf_len = 16 * 1024;
    loop {
        // SAFETY: getpwnam_r with a caller-owned buffer; the result points into it.
        unsafe {
            let mut pwd: libc::passwd = std::mem::zeroed();
            let mut buf = vec![0 as libc::c_char; buf_len];
            let mut result: *mut libc::passwd = std::ptr::null_mut();
            let rc = libc::getpwnam_r(
                c_name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            );
            if rc == libc::ERANGE && buf_len < 1 << 20 {
                buf_len *= 4;
                continue;
            }
            return match lookup_outcome(rc, !result.is_null()) {
                Lookup::Found => Ok(Account {
                    name: name.to_string(),
                    uid: pwd.pw_uid,
                    gid: pwd.pw_gid,
                    home: PathBuf::from(CStr::from_ptr(pwd.pw_dir).to_string_lossy().into_owned()),
                }),
                Lookup::NoSuchUser => Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no system user {name:?}"),
                )),
                Lookup::Failed(errno) => Err(std::io::Error::other(format!(
                    "cannot look up system user {name:?}: {}",
                    std::io::Error::from_raw_os_error(errno)
                ))),
            };
        }
    }
}

/// What getpwnam_r(3) answered.
#[derive(Debug, PartialEq, Eq)]
enum Lookup {
    Found,
    NoSuchUser,
    /// The look-up itself failed, with this errno.
    Failed(i32),
}

/// getpwnam_r(3) says "not found" with no entry and 0, ENOENT, ESRCH,
/// EBADF or EPERM (implementations differ); any other code is a failure
/// to look, not an answer.
fn lookup_outcome(rc: i32, found: bool) -> Lookup {
    match rc {
        0 if found => Lookup::Found,
        0 | libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => Lookup::NoSuchUser,
        errno => Lookup::Failed(errno),
    }
}

/// The group name for a gid.
pub fn group_name(gid: u32) -> Option<String> {
    // SAFETY: getgrgid_r with a caller-owned buffer.
    unsafe {
        let mut grp: libc::group = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut result: *mut libc::group = std::ptr::null_mut();
        let rc = libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr(), buf.len(), &mut result);
        if rc != 0 || result.is_null() {
            return None;
        }
        Some(CStr::from_ptr(grp.gr_name).to_string_lossy().into_owned())
    }
}

/// The gid of a group, looked up in the system's group database.
pub fn group_id(name: &str) -> Option<u32> {
    let c_name = CString::new(name).ok()?;
    // SAFETY: getgrnam_r with a caller-owned buffer.
    unsafe {
        let mut grp: libc::group = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut result: *mut libc::group = std::ptr::null_mut();
        let rc = libc::getgrnam_r(
            c_name.as_ptr(),
            &mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        );
        if rc != 0 || result.is_null() {
            return None;
        }
        Some(grp.gr_gid)
    }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Change a path's owner (not following symlinks).
pub fn chown(path: &std::path::Path, uid: u32, gid: u32) -> std::io::Result<()> {
    if !is_root() {
        return Ok(());
    }
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
}

/// The home directory of `uid`, from the user database.
pub fn home_of(uid: u32) -> Option<PathBuf> {
    // SAFETY: getpwuid_r with a caller-owned buffer.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result);
        if rc != 0 || result.is_null() {
            return None;
        }
        let home = std::ffi::CStr::from_ptr(pwd.pw_dir);
        Some(PathBuf::from(home.to_string_lossy().into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_answer_of_not_found_means_no_such_user() {
        assert_eq!(lookup_outcome(0, true), Lookup::Found);
        assert_eq!(lookup_outcome(0, false), Lookup::NoSuchUser);
        assert_eq!(lookup_outcome(libc::ENOENT, false), Lookup::NoSuchUser);
        assert_eq!(lookup_outcome(libc::EIO, false), Lookup::Failed(libc::EIO));
        assert_eq!(
            lookup_outcome(libc::EMFILE, false),
            Lookup::Failed(libc::EMFILE)
        );
        assert_eq!(
            lookup_outcome(libc::ERANGE, false),
            Lookup::Failed(libc::ERANGE)
        );
    }

    #[test]
    fn a_missing_user_is_not_found_and_root_is_found() {
        let missing = lookup("wsgi-app-no-such-user").unwrap_err();
        assert_eq!(missing.kind(), std::io::ErrorKind::NotFound, "{missing}");
        assert_eq!(lookup("root").unwrap().uid, 0);
    }
}
