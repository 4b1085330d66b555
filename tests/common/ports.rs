//! Loopback ports for the servers tests start.
//!
//! Not `bind(":0")` and release: that port comes from the kernel's
//! ephemeral range (32768–60999 by default), the same range client sockets
//! draw from, so a test's load generator can take it for an outgoing
//! connection before the server under test binds it. These come from below
//! that range, each one once per test binary.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

const FIRST: u32 = 20_000;
const COUNT: u32 = 12_000;

/// A port nothing listens on now, on 127.0.0.1 or the wildcard address.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Test binaries running at once start from different places.
    let start = std::process::id().wrapping_mul(97) % COUNT;
    for _ in 0..COUNT {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % COUNT;
        let port = (FIRST + offset) as u16;
        if TcpListener::bind(("0.0.0.0", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + COUNT);
}
