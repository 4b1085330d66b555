//! Loopback HTTP for the benchmarks: a tiny file server that plays
//! `code_assets_uri`, one-shot GET requests (a new connection each, no
//! keep-alive, as the switching test requires), and a bounded load
//! generator. Nothing here talks to an address off this machine: every
//! target is checked to be a loopback address.

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Serves `GET /<anything>` from a function of the path, on 127.0.0.1.
/// Stops (and joins its thread) when dropped.
pub struct FileServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FileServer {
    pub fn start(
        content: impl Fn(&str) -> Option<Vec<u8>> + Send + 'static,
    ) -> std::io::Result<FileServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop_flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let _ = serve_one(stream, &content);
                }
            }
        });
        Ok(FileServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve_one(
    mut stream: TcpStream,
    content: &impl Fn(&str) -> Option<Vec<u8>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
    match content(&path) {
        Some(body) => {
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            stream.write_all(&body)?;
        }
        None => stream.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?,
    }
    stream.flush()
}

/// Refuse anything but a loopback target: benchmark load stays on this machine.
pub fn require_loopback(addr: &SocketAddr) -> Result<(), String> {
    let ok = match addr.ip() {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => ip.is_loopback(),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{addr} is not a loopback address; the benchmarks only load this machine"
        ))
    }
}

/// One response: status code and body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// `GET /` on a fresh connection with `Connection: close`.
pub fn get(addr: &SocketAddr, timeout: Duration) -> std::io::Result<Response> {
    get_path(addr, "/", timeout)
}

/// `GET path` on a fresh connection with `Connection: close`.
pub fn get_path(addr: &SocketAddr, path: &str, timeout: Duration) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: wsgi-app-bench\r\nConnection: close\r\n\r\n"
    )?;
    let _ = stream.shutdown(Shutdown::Write);
    let mut raw = Vec::with_capacity(512);
    stream.read_to_end(&mut raw)?;
    parse_response(&raw).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("malformed HTTP response ({} bytes)", raw.len()),
        )
    })
}

fn parse_response(raw: &[u8]) -> Option<Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some(Response {
        status,
        body: raw[split + 4..].to_vec(),
    })
}

/// What happened to one request of a load run.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// When it started, from the load run's start.
    pub start: Duration,
    pub latency: Duration,
    /// The HTTP status, or `None` for a connection error or timeout.
    pub status: Option<u16>,
    /// Which build answered ("Revision N" in the body), when it said.
    pub revision: Option<u8>,
}

impl RequestRecord {
    pub fn failed(&self) -> bool {
        self.status != Some(200)
    }
    pub fn end(&self) -> Duration {
        self.start + self.latency
    }
}

/// A bounded load: `threads` clients, each sending one request at a time
/// (a new connection per request), paced to `rate_per_thread` requests per
/// second when given (else as fast as answers come), until `stop` is set
/// or `max_duration` has passed, whichever is first.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    pub target: SocketAddr,
    pub threads: usize,
    pub rate_per_thread: Option<f64>,
    pub max_duration: Duration,
    pub request_timeout: Duration,
}

/// A load run in progress; [`RunningLoad::finish`] stops it and returns
/// every request, ordered by start time.
pub struct RunningLoad {
    pub started: Instant,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<RequestRecord>>>,
}

impl LoadPlan {
    pub fn start(&self) -> Result<RunningLoad, String> {
        require_loopback(&self.target)?;
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..self.threads)
            .map(|i| {
                let plan = self.clone();
                let stop = stop.clone();
                std::thread::spawn(move || client_loop(&plan, started, &stop, i))
            })
            .collect();
        Ok(RunningLoad {
            started,
            stop,
            threads,
        })
    }

    /// Run for the whole `max_duration` and return the records.
    pub fn run(&self) -> Result<Vec<RequestRecord>, String> {
        let load = self.start()?;
        std::thread::sleep(self.max_duration);
        Ok(load.finish())
    }
}

impl RunningLoad {
    /// Time since the load started (the records' time base).
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn finish(mut self) -> Vec<RequestRecord> {
        self.stop.store(true, Ordering::SeqCst);
        let mut all: Vec<RequestRecord> = std::mem::take(&mut self.threads)
            .into_iter()
            .flat_map(|t| t.join().unwrap_or_default())
            .collect();
        all.sort_by_key(|r| r.start);
        all
    }
}

impl Drop for RunningLoad {
    /// A benchmark that fails mid-load still stops its clients.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in std::mem::take(&mut self.threads) {
            let _ = thread.join();
        }
    }
}

fn client_loop(
    plan: &LoadPlan,
    started: Instant,
    stop: &AtomicBool,
    index: usize,
) -> Vec<RequestRecord> {
    let mut records = Vec::new();
    let interval = plan
        .rate_per_thread
        .map(|rate| Duration::from_secs_f64(1.0 / rate));
    // Stagger paced clients so their requests interleave evenly.
    let mut next = match interval {
        Some(i) => i.mul_f64(index as f64 / plan.threads.max(1) as f64),
        None => Duration::ZERO,
    };
    while !stop.load(Ordering::SeqCst) && started.elapsed() < plan.max_duration {
        if let Some(interval) = interval {
            let now = started.elapsed();
            if next > now {
                std::thread::sleep(next - now);
            }
            next += interval;
        }
        let start = started.elapsed();
        let result = get(&plan.target, plan.request_timeout);
        let latency = started.elapsed() - start;
        let (status, revision) = match result {
            Ok(response) => (Some(response.status), revision_in(&response.body)),
            Err(_) => (None, None),
        };
        records.push(RequestRecord {
            start,
            latency,
            status,
            revision,
        });
    }
    records
}

/// The example app answers `It works! Revision N`.
pub fn revision_in(body: &[u8]) -> Option<u8> {
    let text = std::str::from_utf8(body).ok()?;
    let rest = &text[text.find("Revision ")? + "Revision ".len()..];
    rest.chars().next()?.to_digit(10).map(|d| d as u8)
}

/// Wait until `addr` answers 200, up to `limit`.
pub fn wait_until_serving(addr: &SocketAddr, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        match get(addr, Duration::from_secs(2)) {
            Ok(r) if r.status == 200 => return Ok(()),
            _ if Instant::now() > deadline => {
                return Err(format!("{addr} did not serve within {limit:?}"))
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_server_answers_and_the_client_parses() {
        let server = FileServer::start(|path| {
            (path == "/r1/a.tar").then(|| b"It works! Revision 7".to_vec())
        })
        .unwrap();
        let response = get(&server.addr, Duration::from_secs(5)).unwrap();
        assert_eq!(response.status, 404);
        let body = std::process::Command::new("curl")
            .args(["-fsS", &format!("{}/r1/a.tar", server.url())])
            .output();
        if let Ok(out) = body {
            if out.status.success() {
                assert_eq!(revision_in(&out.stdout), Some(7));
            }
        }
    }

    #[test]
    fn load_is_refused_off_loopback() {
        let plan = LoadPlan {
            target: "192.0.2.1:80".parse().unwrap(),
            threads: 1,
            rate_per_thread: None,
            max_duration: Duration::from_millis(1),
            request_timeout: Duration::from_millis(1),
        };
        assert!(plan.start().is_err());
    }

    #[test]
    fn a_bounded_load_stops_by_itself() {
        let server = FileServer::start(|_| Some(b"It works! Revision 1".to_vec())).unwrap();
        let plan = LoadPlan {
            target: server.addr,
            threads: 2,
            rate_per_thread: Some(50.0),
            max_duration: Duration::from_millis(300),
            request_timeout: Duration::from_secs(2),
        };
        let records = plan.run().unwrap();
        assert!(!records.is_empty() && records.len() < 100);
        assert!(records.iter().all(|r| !r.failed() && r.revision == Some(1)));
    }
}
