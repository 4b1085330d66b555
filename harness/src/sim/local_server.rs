//! What charm-sim's real servers behind remote applications share (the
//! load balancer's haproxy, the collector's Prometheus): the loopback
//! address an operator gives for one, where the model remembers it, a
//! lock on its files, and waiting for it to change state.

use std::fs;
use std::net::SocketAddrV4;
use std::path::Path;
use std::time::{Duration, Instant};

use super::file_lock::FileLock;
use super::store::Model;
use super::{ErrorContext, Result};
use crate::sim_err;

/// The address given to `flag` (e.g. `--haproxy`) for `server`: an IPv4
/// loopback address and a port; `example` shows one in the error.
pub fn parse_loopback_address(
    flag: &str,
    server: &str,
    example: &str,
    text: &str,
) -> Result<SocketAddrV4> {
    let address: SocketAddrV4 = text.parse().map_err(|_| {
        sim_err!("{flag} {text:?}: expected an IPv4 loopback address and a port, e.g. {example}")
    })?;
    if !address.ip().is_loopback() {
        return Err(sim_err!(
            "{flag} {text:?}: charm-sim keeps {server} on this machine's loopback (127.0.0.0/8); {} is not",
            address.ip()
        ));
    }
    if address.port() == 0 {
        return Err(sim_err!(
            "{flag} {text:?}: give the port {server} listens on"
        ));
    }
    Ok(address)
}

/// The address `app`'s server was registered on under `kind` (its model
/// meta key is `<kind>:<app>`), when it is one.
pub fn address_of(model: &Model, kind: &str, app: &str) -> Option<SocketAddrV4> {
    model.meta(&meta_key(kind, app)).ok()?.parse().ok()
}

/// The model's remote applications that have a `kind` server: (application,
/// address).
pub fn registered(model: &Model, kind: &str) -> Result<Vec<(String, SocketAddrV4)>> {
    Ok(model
        .apps()?
        .into_iter()
        .filter(|a| a.remote)
        .filter_map(|a| address_of(model, kind, &a.name).map(|p| (a.name, p)))
        .collect())
}

pub fn meta_key(kind: &str, app: &str) -> String {
    format!("{kind}:{app}")
}

/// Lock `lock_file` in `dir` (made when missing): two charm-sim processes
/// never change the same server at once.
pub fn lock(dir: &Path, lock_file: &Path) -> Result<FileLock> {
    fs::create_dir_all(dir).context(format!("cannot create {}", dir.display()))?;
    FileLock::take(lock_file)
}

/// Ask `done` every `poll` until it says yes or `patience` has passed.
pub(super) fn wait_for(
    patience: Duration,
    poll: Duration,
    mut done: impl FnMut() -> bool,
) -> std::result::Result<(), ()> {
    let deadline = Instant::now() + patience;
    while Instant::now() < deadline {
        if done() {
            return Ok(());
        }
        std::thread::sleep(poll);
    }
    Err(())
}
