//! A bounded load for end-to-end tests: clients looping `GET /` on unit
//! addresses until told to stop (or a request cap), counting every request
//! that did not answer `It works! Revision ...` and keeping the first few.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// At most this many requests per client.
const CAP: u64 = 200_000;

pub struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    errors: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// What a load saw.
#[derive(Debug)]
pub struct LoadResult {
    pub sent: u64,
    pub failed: u64,
    pub errors: Vec<String>,
}

impl Load {
    /// `clients_per_addr` clients on each of `addrs` (`host:port`).
    pub fn start(addrs: &[String], clients_per_addr: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for addr in addrs {
            for _ in 0..clients_per_addr {
                let (stop, sent, failed, errors) =
                    (stop.clone(), sent.clone(), failed.clone(), errors.clone());
                let addr = addr.clone();
                threads.push(std::thread::spawn(move || {
                    for _ in 0..CAP {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        sent.fetch_add(1, Ordering::Relaxed);
                        match super::get(&addr) {
                            Ok(body) if body.starts_with("It works! Revision ") => {}
                            other => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                let mut errors = errors.lock().unwrap();
                                if errors.len() < 5 {
                                    errors.push(format!("{addr}: {other:?}"));
                                }
                            }
                        }
                    }
                }));
            }
        }
        Load {
            stop,
            sent,
            failed,
            errors,
            threads,
        }
    }

    /// Stop the load and assert it ran (more than `at_least` requests) and
    /// failed none; what it sent, for the test's report.
    pub fn finish_without_failures(self, what: &str, at_least: u64) -> u64 {
        let result = self.finish();
        eprintln!("{what}: {} requests, {} failed", result.sent, result.failed);
        assert!(
            result.sent > at_least,
            "{what}: the load ran ({} requests)",
            result.sent
        );
        assert_eq!(
            result.failed, 0,
            "{what}: {} of {} requests failed: {:?}",
            result.failed, result.sent, result.errors
        );
        result.sent
    }

    pub fn finish(self) -> LoadResult {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let errors = self.errors.lock().unwrap().clone();
        LoadResult {
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            errors,
        }
    }
}
