//! An exclusive `flock` on a file, for charm-sim processes that must not
//! change the same thing at once (a remote's server, the cached Debian
//! root).

use std::fs;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use super::{ErrorContext, Result};
use crate::sim_err;

/// Held until dropped.
pub struct FileLock {
    _file: fs::File,
}

impl FileLock {
    /// Wait for and take the lock on `path` (created when missing).
    pub fn take(path: &Path) -> Result<FileLock> {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .context(format!("cannot open {}", path.display()))?;
        // SAFETY: flock(2) on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(sim_err!("cannot lock {}", path.display()));
        }
        Ok(FileLock { _file: file })
    }
}
