//! The direct supervisor against real gunicorn: start, switch under load
//! with zero failed requests, refuse a broken build while the old one keeps
//! serving, restart after a crash, stop without leftovers.
//!
//! Loopback only. Figures (failed requests, time to switch) are printed,
//! never asserted on time.

mod service_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use service_support::ports::free_port;
use service_support::Layout;
use wsgi_app::workload::health::http_check;
use wsgi_app::workload::service::{
    ServiceChange, ServiceError, ServiceManager, ServiceSpec, ServiceState,
};
use wsgi_app::workload::supervisor::client::DirectSupervisor;
use wsgi_app::workload::supervisor::protocol::{pid_alive, RunDir, Status};

const TIMEOUT: Duration = Duration::from_secs(10);

fn supervisor() -> DirectSupervisor {
    DirectSupervisor::new(env!("CARGO_BIN_EXE_wsgi-app"))
}

/// Stops the supervisor when a test ends, passing or not (declare it after
/// the layout, so it drops first and the run directory still exists).
struct StopOnDrop(ServiceSpec);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = supervisor().stop(&self.0);
    }
}

fn get(spec: &ServiceSpec, path: &str) -> String {
    http_check(&spec.listen_address(), path, 200, "", TIMEOUT)
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
        .excerpt
}

/// What a client saw while a switch ran.
#[derive(Debug, Default)]
struct Load {
    requests: usize,
    failures: Vec<String>,
    revision_1: usize,
    revision_2: usize,
}

/// Sends requests continuously from two threads until `done` is set and
/// a few hundred more have passed (so the end of the switch is covered),
/// bounded at 15 s.
fn load_during(spec: &ServiceSpec, done: Arc<AtomicBool>) -> std::thread::JoinHandle<Load> {
    let addr = spec.listen_address();
    std::thread::spawn(move || {
        let clients: Vec<_> = (0..2)
            .map(|_| {
                let addr = addr.clone();
                let done = done.clone();
                std::thread::spawn(move || {
                    let mut load = Load::default();
                    let started = Instant::now();
                    let mut after_done = 0;
                    while after_done < 150 && started.elapsed() < Duration::from_secs(15) {
                        if done.load(Ordering::SeqCst) {
                            after_done += 1;
                        }
                        load.requests += 1;
                        match http_check(&addr, "/", 200, "It works!", TIMEOUT) {
                            Ok(report) if report.excerpt.contains("Revision 1") => {
                                load.revision_1 += 1
                            }
                            Ok(report) if report.excerpt.contains("Revision 2") => {
                                load.revision_2 += 1
                            }
                            Ok(report) => load.failures.push(report.excerpt),
                            Err(e) => load.failures.push(e.to_string()),
                        }
                    }
                    load
                })
            })
            .collect();
        let mut total = Load::default();
        for client in clients {
            let load = client.join().unwrap();
            total.requests += load.requests;
            total.revision_1 += load.revision_1;
            total.revision_2 += load.revision_2;
            total.failures.extend(load.failures);
        }
        total
    })
}

/// Run `ensure(spec)` while the client sends requests; returns both.
fn ensure_under_load(
    manager: &DirectSupervisor,
    spec: &ServiceSpec,
) -> (Result<ServiceChange, ServiceError>, Load, Duration) {
    let done = Arc::new(AtomicBool::new(false));
    let client = load_during(spec, done.clone());
    std::thread::sleep(Duration::from_millis(200)); // the client is under way
    let started = Instant::now();
    let result = manager.ensure(spec);
    let took = started.elapsed();
    done.store(true, Ordering::SeqCst);
    (result, client.join().unwrap(), took)
}

/// Processes whose command line mentions `needle` (our run dir).
fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Some(line) = wsgi_app::workload::supervisor::protocol::cmdline(pid) {
            if line.contains(needle) && pid_alive(pid) {
                found.push((pid, line));
            }
        }
    }
    found
}

fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < limit, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn switches_builds_with_zero_failed_requests_and_survives_crashes() {
    let layout = Layout::new();
    let manager = supervisor();
    let spec1 = layout.spec(free_port(), "r1-fp");
    let _stop = StopOnDrop(spec1.clone());
    let dirs = RunDir::new(&spec1.run_dir);

    // A stale pidfile (our own, live pid) and a lock nobody holds must not
    // pass for a running supervisor.
    std::fs::create_dir_all(&spec1.run_dir).unwrap();
    std::fs::write(dirs.pidfile(), format!("{}\n", std::process::id())).unwrap();
    std::fs::write(dirs.supervisor_lock(), "").unwrap();
    assert_eq!(manager.state(&spec1).unwrap(), ServiceState::Stopped);

    // Start.
    assert_eq!(manager.ensure(&spec1).unwrap(), ServiceChange::Started);
    assert_eq!(get(&spec1, "/"), "It works! Revision 1");
    assert_eq!(get(&spec1, "/greeting"), "hello from the env file");
    assert_eq!(
        manager.state(&spec1).unwrap(),
        ServiceState::Running {
            fingerprint: "r1-fp".into()
        }
    );
    assert_eq!(manager.ensure(&spec1).unwrap(), ServiceChange::Unchanged);
    let supervisor_pid = dirs.running_supervisor().unwrap().expect("supervisor runs");
    let r1_master = dirs.read_state().unwrap().unwrap().pid.unwrap();

    // Switch to r2 under load: zero failed requests, r2 afterwards.
    layout.point_current_at("r2");
    let spec2 = layout.spec(spec1.port, "r2-fp");
    let (result, load, took) = ensure_under_load(&manager, &spec2);
    eprintln!(
        "switch r1 -> r2: {} requests, {} failed, {} answered r1, {} answered r2; ensure took {} ms",
        load.requests,
        load.failures.len(),
        load.revision_1,
        load.revision_2,
        took.as_millis()
    );
    assert_eq!(result.unwrap(), ServiceChange::Replaced);
    assert!(
        load.failures.is_empty(),
        "failed requests: {:?}",
        load.failures
    );
    assert!(load.revision_1 > 0 && load.revision_2 > 0, "{load:?}");
    assert_eq!(get(&spec2, "/"), "It works! Revision 2");
    let r2_master = dirs.read_state().unwrap().unwrap().pid.unwrap();
    assert_ne!(r2_master, r1_master);
    wait_until("the r1 master has exited", Duration::from_secs(40), || {
        !pid_alive(r1_master)
    });

    // Switch to the broken r3: refused, and r2 keeps serving throughout.
    layout.point_current_at("r3");
    let spec3 = layout.spec(spec1.port, "r3-fp");
    let (result, load, took) = ensure_under_load(&manager, &spec3);
    eprintln!(
        "switch r2 -> broken r3: {} requests, {} failed; ensure took {} ms",
        load.requests,
        load.failures.len(),
        took.as_millis()
    );
    match result {
        Err(ServiceError::StartFailed(message)) => {
            assert!(message.contains("r3 is broken at import"), "{message}");
        }
        other => panic!("expected StartFailed, got {other:?}"),
    }
    assert!(
        load.failures.is_empty(),
        "failed requests: {:?}",
        load.failures
    );
    assert_eq!(load.revision_1, 0, "{load:?}");
    assert_eq!(get(&spec3, "/"), "It works! Revision 2");
    assert_eq!(
        manager.state(&spec3).unwrap(),
        ServiceState::Running {
            fingerprint: "r2-fp".into()
        }
    );
    assert_eq!(dirs.read_state().unwrap().unwrap().pid, Some(r2_master));
    layout.point_current_at("r2");

    // Kill the master outright: the supervisor restarts the build it served.
    // SAFETY: kill(2) on the gunicorn master this test started.
    unsafe { libc::kill(r2_master as i32, libc::SIGKILL) };
    wait_until("a new master serves", Duration::from_secs(30), || {
        let state = dirs.read_state().unwrap().unwrap();
        state.status == Status::Running && state.pid.is_some_and(|pid| pid != r2_master)
    });
    assert_eq!(get(&spec2, "/"), "It works! Revision 2");
    assert_eq!(dirs.running_supervisor().unwrap(), Some(supervisor_pid));
    let error = dirs
        .read_state()
        .unwrap()
        .unwrap()
        .error
        .unwrap_or_default();
    assert!(error.contains("killed by signal 9"), "{error}");

    // Stop: no supervisor, no gunicorn, no listener.
    manager.stop(&spec2).unwrap();
    assert_eq!(manager.state(&spec2).unwrap(), ServiceState::Stopped);
    assert!(!pid_alive(supervisor_pid));
    let run_dir = spec2.run_dir.display().to_string();
    wait_until("gunicorn workers are gone", Duration::from_secs(10), || {
        processes_mentioning(&run_dir).is_empty()
    });
    let refused = std::net::TcpStream::connect(spec2.listen_address());
    assert!(
        refused.is_err(),
        "something still listens on {}",
        spec2.listen_address()
    );

    // And it starts again from the stopped state.
    assert_eq!(manager.ensure(&spec2).unwrap(), ServiceChange::Started);
    assert_eq!(get(&spec2, "/"), "It works! Revision 2");
    manager.stop(&spec2).unwrap();
}

#[test]
fn a_taken_port_is_a_start_failure_with_the_reason() {
    let layout = Layout::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let spec = layout.spec(taken.local_addr().unwrap().port(), "r1-fp");
    let _stop = StopOnDrop(spec.clone());
    match supervisor().ensure(&spec) {
        Err(ServiceError::StartFailed(message)) => {
            assert!(message.contains("cannot listen on 127.0.0.1:"), "{message}");
        }
        other => panic!("expected StartFailed, got {other:?}"),
    }
    assert_eq!(supervisor().state(&spec).unwrap(), ServiceState::Stopped);
}

#[test]
fn a_broken_first_build_fails_and_leaves_nothing_listening() {
    let layout = Layout::new();
    layout.point_current_at("r3");
    let manager = supervisor();
    let spec = layout.spec(free_port(), "r3-fp");
    let _stop = StopOnDrop(spec.clone());
    match manager.ensure(&spec) {
        Err(ServiceError::StartFailed(message)) => {
            assert!(message.contains("r3 is broken at import"), "{message}");
        }
        other => panic!("expected StartFailed, got {other:?}"),
    }
    assert!(matches!(
        manager.state(&spec).unwrap(),
        ServiceState::Failed(_)
    ));
    assert!(std::net::TcpStream::connect(spec.listen_address()).is_err());
    // The next ensure, with a good build, starts it.
    layout.point_current_at("r1");
    let spec = layout.spec(spec.port, "r1-fp");
    assert_eq!(manager.ensure(&spec).unwrap(), ServiceChange::Started);
    assert_eq!(get(&spec, "/"), "It works! Revision 1");
    manager.stop(&spec).unwrap();
}

#[test]
fn a_killed_supervisor_is_replaced_and_its_orphaned_master_stopped() {
    let layout = Layout::new();
    let manager = supervisor();
    let spec = layout.spec(free_port(), "r1-fp");
    let _stop = StopOnDrop(spec.clone());
    let dirs = RunDir::new(&spec.run_dir);
    assert_eq!(manager.ensure(&spec).unwrap(), ServiceChange::Started);
    let old_supervisor = dirs.running_supervisor().unwrap().unwrap();
    let orphan = dirs.read_state().unwrap().unwrap().pid.unwrap();

    // SAFETY: kill(2) on the supervisor this test started.
    unsafe { libc::kill(old_supervisor as i32, libc::SIGKILL) };
    wait_until("the supervisor is dead", Duration::from_secs(10), || {
        dirs.running_supervisor().unwrap().is_none()
    });
    assert_eq!(manager.state(&spec).unwrap(), ServiceState::Stopped);
    assert!(pid_alive(orphan), "the master outlives its supervisor");

    // The next ensure starts a supervisor, which stops the orphan (it holds
    // the port) and serves again.
    assert_eq!(manager.ensure(&spec).unwrap(), ServiceChange::Started);
    assert!(!pid_alive(orphan));
    assert_eq!(get(&spec, "/"), "It works! Revision 1");
    manager.stop(&spec).unwrap();
}

#[test]
fn moving_to_another_port_serves_there_and_frees_the_old_one() {
    let layout = Layout::new();
    let manager = supervisor();
    let old = layout.spec(free_port(), "r1-port-a");
    let _stop = StopOnDrop(old.clone());
    assert_eq!(manager.ensure(&old).unwrap(), ServiceChange::Started);

    // A broken build on a new port: the new socket is not kept.
    layout.point_current_at("r3");
    let broken = layout.spec(free_port(), "r3-port-b");
    assert!(matches!(
        manager.ensure(&broken),
        Err(ServiceError::StartFailed(_))
    ));
    assert!(std::net::TcpStream::connect(broken.listen_address()).is_err());
    assert_eq!(get(&old, "/"), "It works! Revision 1");

    layout.point_current_at("r1");
    let new = layout.spec(free_port(), "r1-port-c");
    assert_eq!(manager.ensure(&new).unwrap(), ServiceChange::Replaced);
    assert_eq!(get(&new, "/"), "It works! Revision 1");
    wait_until("the old port is closed", Duration::from_secs(40), || {
        std::net::TcpStream::connect(old.listen_address()).is_err()
    });
    manager.stop(&new).unwrap();
}

#[test]
fn once_a_switch_returns_only_the_build_it_reported_answers() {
    let layout = Layout::new();
    let manager = supervisor();
    let port = free_port();
    let first = layout.spec(port, "r1-fp");
    let _stop = StopOnDrop(first.clone());
    assert_eq!(manager.ensure(&first).unwrap(), ServiceChange::Started);

    let mut stale = Vec::new();
    for switch in 0..50 {
        let (label, answer) = if switch % 2 == 0 {
            ("r2", "It works! Revision 2")
        } else {
            ("r1", "It works! Revision 1")
        };
        layout.point_current_at(label);
        let spec = layout.spec(port, &format!("{label}-fp-{switch}"));
        assert_eq!(manager.ensure(&spec).unwrap(), ServiceChange::Replaced);
        // Fresh connections, right away: the old build's workers must
        // already be out of reach.
        for request in 0..20 {
            let body = get(&spec, "/");
            if body != answer {
                stale.push(format!(
                    "switch {switch} to {label}, request {request}: {body}"
                ));
            }
        }
    }
    assert!(stale.is_empty(), "the old build answered: {stale:#?}");
    manager.stop(&first).unwrap();
}
