//! A bounded load for end-to-end tests: clients looping `GET /` on unit
//! addresses until told to stop (or a request cap), counting every request
//! that did not answer `It works! Revision ...` and keeping the first few.
//!
//! A client waits as long as a load balancer waits for a server (haproxy's
//! `timeout server` in charm-sim is 60 s) before it counts a request as
//! unanswered: on a machine kept busy by the whole suite and CPU burners
//! an answer now and then takes seconds, which is slowness, not a lost
//! request. Slow answers are counted and reported, not hidden.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// At most this many requests per client.
const CAP: u64 = 200_000;

/// How long a client waits for an answer before the request has failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Answers slower than this are counted as slow in the report.
const SLOW: Duration = Duration::from_secs(5);

pub struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    slow: Arc<AtomicU64>,
    slowest_ms: Arc<AtomicU64>,
    errors: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// What a load saw.
#[derive(Debug)]
pub struct LoadResult {
    pub sent: u64,
    pub failed: u64,
    /// Answers (right or wrong) that took longer than [`SLOW`].
    pub slow: u64,
    pub slowest: Duration,
    pub errors: Vec<String>,
}

impl Load {
    /// `clients_per_addr` clients on each of `addrs` (`host:port`).
    pub fn start(addrs: &[String], clients_per_addr: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let slow = Arc::new(AtomicU64::new(0));
        let slowest_ms = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for addr in addrs {
            for _ in 0..clients_per_addr {
                let (stop, sent, failed, errors) =
                    (stop.clone(), sent.clone(), failed.clone(), errors.clone());
                let (slow, slowest_ms) = (slow.clone(), slowest_ms.clone());
                let addr = addr.clone();
                threads.push(std::thread::spawn(move || {
                    for _ in 0..CAP {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        sent.fetch_add(1, Ordering::Relaxed);
                        let started = Instant::now();
                        let answer = super::get_path_within(&addr, "/", REQUEST_TIMEOUT);
                        let took = started.elapsed();
                        if took > SLOW {
                            slow.fetch_add(1, Ordering::Relaxed);
                        }
                        slowest_ms.fetch_max(took.as_millis() as u64, Ordering::Relaxed);
                        match answer {
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
            slow,
            slowest_ms,
            errors,
            threads,
        }
    }

    /// Stop the load and assert it ran (more than `at_least` requests) and
    /// failed none; what it sent, for the test's report.
    pub fn finish_without_failures(self, what: &str, at_least: u64) -> u64 {
        let result = self.finish();
        eprintln!(
            "{what}: {} requests, {} failed, {} slower than {} s (slowest {} ms)",
            result.sent,
            result.failed,
            result.slow,
            SLOW.as_secs(),
            result.slowest.as_millis()
        );
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
            slow: self.slow.load(Ordering::Relaxed),
            slowest: Duration::from_millis(self.slowest_ms.load(Ordering::Relaxed)),
            errors,
        }
    }
}
