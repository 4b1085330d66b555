//! A minimal HTTP/1.0 health check, the charm's own `check_http`: one GET
//! over a plain TCP or unix-socket connection, the status line and
//! up to [`BODY_CAP`] bytes of body read, the status and a substring
//! checked. Used by the rollout health gate.
//!
//! Invariants: every step is bounded by the caller's timeout (connect, each
//! read and write, and the whole exchange); errors read like check_http's
//! (`HTTP 500 Internal Server Error, expected 200`, `connection refused`,
//! `string "It works" not found`) so operators recognise them.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::machine::{HttpAnswer, Probe};

/// The most body we read and search.
pub const BODY_CAP: usize = 64 * 1024;
/// The longest excerpt of the body kept in a report.
const EXCERPT_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    pub status: u16,
    pub elapsed_ms: u64,
    /// The start of the body, for messages.
    pub excerpt: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealthError {
    #[error("connection refused")]
    Refused,
    #[error("timed out after {0} ms")]
    Timeout(u64),
    #[error("HTTP {status} {reason}, expected {expected}")]
    WrongStatus {
        status: u16,
        reason: String,
        expected: u16,
    },
    #[error("string {0:?} not found")]
    ContentMissing(String),
    #[error("invalid HTTP response: {0}")]
    BadResponse(String),
    #[error("{0}")]
    Io(String),
}

/// GET `path` from `addr` (`host:port`) and check the answer.
pub fn http_check(
    addr: &str,
    path: &str,
    expected_status: u16,
    expected_content: &str,
    timeout: Duration,
) -> Result<HealthReport, HealthError> {
    let started = Instant::now();
    let answer = http_get(addr, path, timeout)?;
    judge(
        &answer,
        expected_status,
        expected_content,
        started.elapsed(),
    )
}

/// GET `path` from `addr`: the status and the start of the body.
pub fn http_get(addr: &str, path: &str, timeout: Duration) -> Result<HttpAnswer, HealthError> {
    http_get_from(&HttpTarget::Tcp(addr.to_string()), path, timeout)
}

/// GET `path` from `target`: the status and the start of the body.
pub fn http_get_from(
    target: &HttpTarget,
    path: &str,
    timeout: Duration,
) -> Result<HttpAnswer, HealthError> {
    let response = get(target, path, timeout, Instant::now())?;
    let (status, reason, body) = parse_response(&response)?;
    Ok(HttpAnswer {
        status,
        reason,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Whether an answer is the one the nagios options describe.
pub fn judge(
    answer: &HttpAnswer,
    expected_status: u16,
    expected_content: &str,
    elapsed: Duration,
) -> Result<HealthReport, HealthError> {
    if answer.status != expected_status {
        return Err(HealthError::WrongStatus {
            status: answer.status,
            reason: answer.reason.clone(),
            expected: expected_status,
        });
    }
    if !answer.body.contains(expected_content) {
        return Err(HealthError::ContentMissing(expected_content.to_string()));
    }
    Ok(HealthReport {
        status: answer.status,
        elapsed_ms: elapsed.as_millis() as u64,
        excerpt: answer.body.chars().take(EXCERPT_CHARS).collect(),
    })
}

/// The machine's real [`Probe`]: a TCP connection to the app.
pub struct TcpProbe;

impl Probe for TcpProbe {
    fn http_get(&self, addr: &str, path: &str, timeout: Duration) -> Result<HttpAnswer, String> {
        http_get(addr, path, timeout).map_err(|e| e.to_string())
    }
}

fn io_error(e: std::io::Error, timeout: Duration) -> HealthError {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => HealthError::Refused,
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
            HealthError::Timeout(timeout.as_millis() as u64)
        }
        _ => HealthError::Io(e.to_string()),
    }
}

/// Where an HTTP GET connects: the served port, or the private unix socket
/// a build is judged on before it takes traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpTarget {
    /// `host:port`.
    Tcp(String),
    Unix(std::path::PathBuf),
}

impl std::fmt::Display for HttpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpTarget::Tcp(addr) => f.write_str(addr),
            HttpTarget::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A connection to an [`HttpTarget`].
trait Connection: Read + Write {}
impl<T: Read + Write> Connection for T {}

fn connect(target: &HttpTarget, timeout: Duration) -> Result<Box<dyn Connection>, HealthError> {
    match target {
        HttpTarget::Tcp(addr) => {
            let socket_addr = addr
                .to_socket_addrs()
                .map_err(|e| HealthError::Io(format!("{addr}: {e}")))?
                .next()
                .ok_or_else(|| HealthError::Io(format!("{addr}: no address")))?;
            let stream = TcpStream::connect_timeout(&socket_addr, timeout)
                .map_err(|e| io_error(e, timeout))?;
            stream
                .set_read_timeout(Some(timeout))
                .and_then(|_| stream.set_write_timeout(Some(timeout)))
                .map_err(|e| io_error(e, timeout))?;
            Ok(Box::new(stream))
        }
        HttpTarget::Unix(path) => {
            let stream =
                std::os::unix::net::UnixStream::connect(path).map_err(|e| io_error(e, timeout))?;
            stream
                .set_read_timeout(Some(timeout))
                .and_then(|_| stream.set_write_timeout(Some(timeout)))
                .map_err(|e| io_error(e, timeout))?;
            Ok(Box::new(stream))
        }
    }
}

/// Send the request and read the response (headers and the capped body).
///
/// The request is HTTP/1.0, so a server may not answer with a chunked
/// body: an app that streams its answer (no Content-Length) is read to the
/// end of the connection like any other. A server that chunks anyway is
/// decoded in [`parse_response`].
fn get(
    target: &HttpTarget,
    path: &str,
    timeout: Duration,
    started: Instant,
) -> Result<Vec<u8>, HealthError> {
    let mut stream = connect(target, timeout)?;
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let host = match target {
        HttpTarget::Tcp(addr) => addr.as_str(),
        HttpTarget::Unix(_) => "localhost",
    };
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: wsgi-app-health\r\nAccept: */*\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| io_error(e, timeout))?;
    let header_cap = 16 * 1024;
    let mut response = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if started.elapsed() > timeout {
            return Err(HealthError::Timeout(timeout.as_millis() as u64));
        }
        let read = match stream.read(&mut chunk) {
            Ok(read) => read,
            // A peer that closes with unread data may reset; what we have counts.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !response.is_empty() => 0,
            Err(e) => return Err(io_error(e, timeout)),
        };
        if read == 0 {
            break;
        }
        response.extend_from_slice(&chunk[..read]);
        if response.len() >= header_cap + BODY_CAP {
            break;
        }
    }
    Ok(response)
}

/// The payload of a chunked body, as far as it goes (a cut-off body
/// yields what arrived).
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    while let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            break;
        };
        if size == 0 {
            break;
        }
        let data = &body[line_end + 2..];
        let taken = size.min(data.len());
        payload.extend_from_slice(&data[..taken]);
        if taken < size || data.len() < size + 2 {
            break;
        }
        body = &data[size + 2..];
    }
    payload
}

/// Status code, reason phrase and body (capped, de-chunked) of a raw
/// response.
fn parse_response(response: &[u8]) -> Result<(u16, String, Vec<u8>), HealthError> {
    if response.is_empty() {
        return Err(HealthError::BadResponse("empty response".into()));
    }
    let header_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| HealthError::BadResponse("no end of headers".into()))?;
    let head = String::from_utf8_lossy(&response[..header_end]);
    let status_line = head.lines().next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/") {
        return Err(HealthError::BadResponse(format!(
            "status line {status_line:?}"
        )));
    }
    let status = parts
        .next()
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| HealthError::BadResponse(format!("status line {status_line:?}")))?;
    let reason = parts.next().unwrap_or_default().trim().to_string();
    let chunked = head.lines().skip(1).any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.to_ascii_lowercase().contains("chunked")
        })
    });
    let raw = &response[header_end + 4..];
    let mut body = if chunked { dechunk(raw) } else { raw.to_vec() };
    body.truncate(BODY_CAP);
    Ok((status, reason, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot server answering `response` to the first connection, and
    /// handing back the request it read.
    fn serve_once(response: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let handle = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            conn.write_all(response.as_bytes()).unwrap();
            String::from_utf8(request).unwrap()
        });
        (addr, handle)
    }

    const SECOND: Duration = Duration::from_secs(5);

    #[test]
    fn passes_with_the_right_status_and_content() {
        let (addr, server) =
            serve_once("HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\nIt works! Revision 1");
        let report = http_check(&addr, "/", 200, "It works", SECOND).unwrap();
        assert_eq!(report.status, 200);
        assert_eq!(report.excerpt, "It works! Revision 1");
        let request = server.join().unwrap();
        assert!(request.starts_with("GET / HTTP/1.0\r\n"), "{request}");
        assert!(request.contains(&format!("Host: {addr}\r\n")), "{request}");
        // HTTP/1.0 closes by default; no keep-alive is asked for.
        assert!(!request.contains("keep-alive"), "{request}");
    }

    #[test]
    fn a_chunked_body_is_decoded_before_the_content_check() {
        // A server that chunks even for HTTP/1.0, with the expected text
        // split across chunks: read raw, "It works!" would not be found.
        let (addr, _server) = serve_once(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nIt \r\n6;x=y\r\nworks!\r\n0\r\n\r\n",
        );
        let report = http_check(&addr, "/", 200, "It works!", Duration::from_secs(5)).unwrap();
        assert_eq!(report.excerpt, "It works!");
    }

    #[test]
    fn wrong_status_reads_like_check_http() {
        let (addr, _server) = serve_once("HTTP/1.1 500 Internal Server Error\r\n\r\noops");
        let err = http_check(&addr, "/", 200, "", SECOND).unwrap_err();
        assert_eq!(
            err.to_string(),
            "HTTP 500 Internal Server Error, expected 200"
        );
    }

    #[test]
    fn missing_content_names_the_string() {
        let (addr, _server) = serve_once("HTTP/1.0 200 OK\r\n\r\nIt broke");
        let err = http_check(&addr, "health", 200, "It works", SECOND).unwrap_err();
        assert_eq!(err.to_string(), r#"string "It works" not found"#);
    }

    /// A loopback port that refuses connections for as long as the value
    /// lives: bound, never listening. (A port bound with `:0` and released
    /// may be taken by a parallel test's server before it is probed.)
    struct RefusingPort {
        fd: libc::c_int,
        port: u16,
    }

    impl RefusingPort {
        fn new() -> Self {
            // SAFETY: plain socket calls on a descriptor this value owns.
            unsafe {
                let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
                assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
                let mut addr: libc::sockaddr_in = std::mem::zeroed();
                addr.sin_family = libc::AF_INET as libc::sa_family_t;
                addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
                let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
                let ptr = &mut addr as *mut libc::sockaddr_in as *mut libc::sockaddr;
                assert_eq!(libc::bind(fd, ptr, len), 0, "bind");
                let mut bound_len = len;
                assert_eq!(libc::getsockname(fd, ptr, &mut bound_len), 0, "getsockname");
                RefusingPort {
                    fd,
                    port: u16::from_be(addr.sin_port),
                }
            }
        }
    }

    impl Drop for RefusingPort {
        fn drop(&mut self) {
            // SAFETY: closing the descriptor this value owns.
            unsafe {
                libc::close(self.fd);
            }
        }
    }

    #[test]
    fn closed_port_is_connection_refused() {
        let closed = RefusingPort::new();
        let err =
            http_check(&format!("127.0.0.1:{}", closed.port), "/", 200, "", SECOND).unwrap_err();
        assert_eq!(err, HealthError::Refused);
        assert_eq!(err.to_string(), "connection refused");
    }

    #[test]
    fn garbage_is_an_invalid_response() {
        let (addr, _server) = serve_once("SSH-2.0-OpenSSH\r\n\r\n");
        let err = http_check(&addr, "/", 200, "", SECOND).unwrap_err();
        assert!(matches!(err, HealthError::BadResponse(_)), "{err}");
    }
}
