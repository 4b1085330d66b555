//! Shared set-up for the charm's harness tests.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use harness::recorder::ServiceCall;
use harness::state::ServiceRecord;
use harness::{Context, Output, State, WORKSPACE_CHARM_DIR};
use wsgi_app::charm::WsgiApp;
use wsgi_app::ops::StatusName;
use wsgi_app::workload::service::ServiceSpec;

#[path = "../common/archives.rs"]
pub mod archives;
use archives::archive_bytes;

/// sha256sum files/r1/example-wsgi-app.tar.bzip2
pub const R1_SHA256: &str = "f34e85df572f8322c6276b3eb6b150047c64d0bdd171efce64e565c35793036e";

pub fn context() -> Context<WsgiApp> {
    Context::new(WORKSPACE_CHARM_DIR, WsgiApp::new)
}

/// A unit that went through its initial hooks and serves r1.
pub fn serving_r1(ctx: &Context<WsgiApp>) -> State {
    let state = State::new()
        .with_leader(true)
        .with_config("build_label", "r1");
    let state = ctx
        .run_initial_hooks(state)
        .expect("initial hooks")
        .into_state();
    assert_status(&state, StatusName::Active, "serving r1 on :8080");
    state
}

/// The fingerprint a fresh unit serving r1 runs.
pub fn base_fingerprint(ctx: &Context<WsgiApp>) -> Option<String> {
    serving_r1(ctx)
        .service_fingerprint("wsgi-app")
        .map(str::to_string)
}

pub fn assert_status(state: &State, name: StatusName, fragment: &str) {
    assert_eq!(
        state.unit_status.name, name,
        "status: {}",
        state.unit_status
    );
    assert!(
        state.unit_status.message.contains(fragment),
        "status {:?} does not mention {fragment:?}",
        state.unit_status.message
    );
}

/// The build `current` points at.
pub fn current_build(state: &State) -> String {
    let link = fs::read_link(state.machine.path("/srv/wsgi-app/current")).expect("current exists");
    link.file_name().unwrap().to_string_lossy().into_owned()
}

/// r1 is still installed, current, and what the service runs.
pub fn assert_untouched_r1(state: &State) {
    assert_eq!(current_build(state), "r1");
    assert!(state
        .machine
        .path("/srv/wsgi-app/builds/r1/build.json")
        .is_file());
    let spec = running_spec(state);
    assert_eq!(
        spec.current_dir,
        state.machine.path("/srv/wsgi-app/current")
    );
    assert_eq!(rollout(state, "serving").as_deref(), Some("r1"));
}

/// One column of the charm's rollout row.
pub fn rollout(state: &State, column: &str) -> Option<String> {
    state
        .stored_state
        .as_ref()
        .expect("the charm has a store")
        .query(|c| c.query_row(&format!("SELECT {column} FROM rollout"), [], |r| r.get(0)))
        .expect("store readable")
}

pub fn assert_no_staging_left(state: &State) {
    let staging = state.machine.path("/srv/wsgi-app/.staging");
    let left = fs::read_dir(&staging).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "staging left behind in {}", staging.display());
}

pub fn running_spec(state: &State) -> ServiceSpec {
    match state.services.get("wsgi-app") {
        Some(ServiceRecord::Running(spec)) => spec.clone(),
        other => panic!("wsgi-app is not running: {other:?}"),
    }
}

/// The commands a dispatch ran, as command lines.
pub fn command_lines(out: &Output) -> Vec<String> {
    out.commands
        .iter()
        .map(|c| {
            let program = Path::new(&c.program)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            std::iter::once(program)
                .chain(c.args.iter().cloned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

pub fn ensures(out: &Output) -> usize {
    out.service_calls
        .iter()
        .filter(|c| matches!(c, ServiceCall::Ensure(_)))
        .count()
}

/// A charm directory of our own, to ship extra builds in `files/`.
pub struct CharmDir {
    dir: tempfile::TempDir,
}

impl CharmDir {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let src = Path::new(WORKSPACE_CHARM_DIR);
        for file in ["metadata.yaml", "config.yaml", "actions.yaml"] {
            fs::copy(src.join(file), dir.path().join(file)).unwrap();
        }
        for label in ["r1", "r2"] {
            let to = dir.path().join("files").join(label);
            fs::create_dir_all(&to).unwrap();
            fs::copy(
                src.join("files")
                    .join(label)
                    .join("example-wsgi-app.tar.bzip2"),
                to.join("example-wsgi-app.tar.bzip2"),
            )
            .unwrap();
        }
        CharmDir { dir }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub fn context(&self) -> Context<WsgiApp> {
        Context::new(self.dir.path(), WsgiApp::new)
    }

    pub fn add_file(&self, label: &str, name: &str, bytes: &[u8]) {
        let dir = self.dir.path().join("files").join(label);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(name), bytes).unwrap();
    }

    /// An archive of `entries` in the format `name`'s ending says. Names
    /// are written as given, even hostile ones.
    pub fn add_archive(&self, label: &str, name: &str, entries: &[(&str, &[u8])]) {
        self.add_file(label, name, &archive_bytes(name, entries));
    }
}

/// A loopback archive server, which also stands in for a proxy (it answers
/// a proxy request as it answers any other).
pub struct ArchiveServer {
    /// `http://127.0.0.1:PORT/builds`, a `code_assets_uri`.
    pub url: String,
    /// `http://127.0.0.1:PORT`, a proxy URL.
    pub origin: String,
    request_lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ArchiveServer {
    /// The request line of every request so far: `GET /builds/...` when
    /// asked directly, `GET http://host/...` when asked as a proxy.
    pub fn request_lines(&self) -> Vec<String> {
        self.request_lines.lock().unwrap().clone()
    }
}

/// Serve `body` at any path on a loopback port, for a few requests.
pub fn serve_once(body: Vec<u8>) -> ArchiveServer {
    let whole = body.len();
    serve_cut_short(body, whole, 3)
}

/// A loopback server that announces all of `body` but sends only its
/// first `sent` bytes before closing, for up to `connections` requests
/// (the charm retries). With `sent == body.len()` it is an ordinary server.
pub fn serve_cut_short(body: Vec<u8>, sent: usize, connections: usize) -> ArchiveServer {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let request_lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = request_lines.clone();
    std::thread::spawn(move || {
        use std::io::Read;
        for stream in listener.incoming().take(connections) {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut chunk = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&chunk[..n]),
                }
            }
            let head = String::from_utf8_lossy(&head);
            recorded
                .lock()
                .unwrap()
                .push(head.lines().next().unwrap_or_default().to_string());
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body[..sent]);
        }
    });
    ArchiveServer {
        url: format!("{origin}/builds"),
        origin,
        request_lines,
    }
}
