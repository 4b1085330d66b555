//! `charm::fetch` against a canned HTTP server on 127.0.0.1: success and
//! hashing, 4xx without retry, 5xx with retry, size limits, truncated and
//! stalled bodies, URL redaction; and local copies and checksum checks.
//!
//! The server answers each connection with the next canned response and
//! closes it, so the number of connections is the number of attempts.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wsgi_app::charm::fetch::{
    copy_local, download, verify_sha256, DownloadOptions, Downloaded, FetchError,
};

enum Canned {
    /// Raw bytes written as the whole response, then the connection closes.
    Reply(Vec<u8>),
    /// Raw bytes, then silence while the connection stays open.
    Stall(Vec<u8>),
}

struct Server {
    base: String,
    connections: Arc<AtomicUsize>,
}

fn serve(responses: Vec<Canned>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    thread::spawn(move || {
        for response in responses {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            read_request_head(&mut stream);
            match response {
                Canned::Reply(bytes) => {
                    let _ = stream.write_all(&bytes);
                }
                Canned::Stall(bytes) => {
                    let _ = stream.write_all(&bytes);
                    // Hold the connection open without sending more; the
                    // client gives up long before this ends.
                    thread::spawn(move || {
                        thread::sleep(Duration::from_secs(30));
                        drop(stream);
                    });
                }
            }
        }
        // Dropping the listener here makes any further attempt a refused
        // connection, which a test would notice.
    });
    Server { base, connections }
}

fn read_request_head(stream: &mut TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
}

fn ok_response(body: &[u8]) -> Canned {
    let mut bytes = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    Canned::Reply(bytes)
}

fn status_response(status: &str) -> Canned {
    Canned::Reply(
        format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into_bytes(),
    )
}

/// Small timeouts and back-off so failing cases finish quickly; no test
/// asserts on how long anything took.
fn test_options() -> DownloadOptions {
    DownloadOptions {
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_millis(300),
        total_timeout: Duration::from_secs(10),
        max_attempts: 3,
        first_backoff: Duration::from_millis(10),
        max_bytes: 1024,
        use_environment_proxy: false,
    }
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn dest_in(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("app.tgz")
}

#[test]
fn a_download_streams_to_the_file_and_hashes_it() {
    let body = b"pretend this is a tarball".repeat(10);
    let server = serve(vec![ok_response(&body)]);
    let dir = tempfile::tempdir().unwrap();
    let downloaded = download(
        &format!("{}/r2/app.tgz", server.base),
        &dest_in(&dir),
        &test_options(),
    )
    .unwrap();
    assert_eq!(
        downloaded,
        Downloaded {
            bytes: body.len() as u64,
            sha256: sha256_hex(&body),
        }
    );
    assert_eq!(std::fs::read(dest_in(&dir)).unwrap(), body);
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn a_404_is_reported_at_once_without_retrying() {
    let server = serve(vec![status_response("404 Not Found"), ok_response(b"late")]);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{}/r9/app.tgz", server.base);
    let error = download(&url, &dest_in(&dir), &test_options()).unwrap_err();
    assert!(matches!(error, FetchError::HttpStatus { attempts: 1, .. }));
    assert_eq!(
        error.to_string(),
        format!("download of {url} failed: the server answered 404 Not Found")
    );
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    assert!(!dest_in(&dir).exists());
}

#[test]
fn a_500_is_retried_and_the_next_attempt_succeeds() {
    let server = serve(vec![
        status_response("500 Internal Server Error"),
        status_response("503 Service Unavailable"),
        ok_response(b"third time lucky"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let downloaded = download(
        &format!("{}/app.tgz", server.base),
        &dest_in(&dir),
        &test_options(),
    )
    .unwrap();
    assert_eq!(downloaded.sha256, sha256_hex(b"third time lucky"));
    assert_eq!(server.connections.load(Ordering::SeqCst), 3);
}

#[test]
fn persistent_5xx_gives_up_after_the_attempt_limit() {
    let server = serve(vec![
        status_response("502 Bad Gateway"),
        status_response("502 Bad Gateway"),
        status_response("502 Bad Gateway"),
        ok_response(b"never reached"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let error = download(
        &format!("{}/app.tgz", server.base),
        &dest_in(&dir),
        &test_options(),
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .ends_with("502 Bad Gateway (after 3 attempts)"),
        "{error}"
    );
    assert_eq!(server.connections.load(Ordering::SeqCst), 3);
}

#[test]
fn a_content_length_over_the_limit_is_refused_before_reading() {
    let mut head =
        b"HTTP/1.1 200 OK\r\nContent-Length: 5000000\r\nConnection: close\r\n\r\n".to_vec();
    head.extend_from_slice(&[0u8; 100]);
    let server = serve(vec![Canned::Reply(head)]);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{}/big.tgz", server.base);
    let error = download(&url, &dest_in(&dir), &test_options()).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("archive {url} is larger than the 1 KiB limit (it announces 5000000 bytes)")
    );
    assert_eq!(server.connections.load(Ordering::SeqCst), 1, "no retry");
    assert!(!dest_in(&dir).exists());
}

#[test]
fn a_body_longer_than_the_limit_is_cut_off_while_streaming() {
    // No Content-Length: the body runs until the connection closes.
    let mut reply = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
    reply.extend_from_slice(&[7u8; 64 * 1024]);
    let server = serve(vec![Canned::Reply(reply)]);
    let dir = tempfile::tempdir().unwrap();
    let error = download(
        &format!("{}/big.tgz", server.base),
        &dest_in(&dir),
        &test_options(),
    )
    .unwrap_err();
    assert!(
        matches!(
            error,
            FetchError::TooLarge {
                limit: 1024,
                announced: None,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(!dest_in(&dir).exists(), "no partial file is left");
}

#[test]
fn a_body_cut_short_of_its_content_length_is_an_error() {
    let truncated = || {
        let mut reply =
            b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\nConnection: close\r\n\r\n".to_vec();
        reply.extend_from_slice(&[1u8; 120]);
        Canned::Reply(reply)
    };
    let server = serve(vec![truncated(), truncated()]);
    let dir = tempfile::tempdir().unwrap();
    let options = DownloadOptions {
        max_attempts: 2,
        ..test_options()
    };
    let url = format!("{}/app.tgz", server.base);
    let error = download(&url, &dest_in(&dir), &options).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "download of {url} failed: the connection closed after 120 of 500 bytes \
             (after 2 attempts)"
        )
    );
    assert_eq!(server.connections.load(Ordering::SeqCst), 2, "retried");
    assert!(!dest_in(&dir).exists());
}

#[test]
fn a_server_that_stalls_times_out() {
    let stall = || {
        let mut head =
            b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\nConnection: close\r\n\r\n".to_vec();
        head.extend_from_slice(&[1u8; 10]);
        Canned::Stall(head)
    };
    let server = serve(vec![stall(), stall()]);
    let dir = tempfile::tempdir().unwrap();
    let options = DownloadOptions {
        max_attempts: 2,
        ..test_options()
    };
    let url = format!("{}/r2/app.tgz", server.base);
    let error = download(&url, &dest_in(&dir), &options).unwrap_err();
    assert!(
        matches!(error, FetchError::TimedOut { attempts: 2, .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("download of {url} timed out after ")),
        "{message}"
    );
    assert!(message.ends_with(" s (2 attempts)"), "{message}");
    assert!(!dest_in(&dir).exists());
}

#[test]
fn a_refused_connection_is_retried_then_reported() {
    // Bind and drop to get a loopback port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let error = download(
        &format!("http://127.0.0.1:{port}/app.tgz"),
        &dest_in(&dir),
        &test_options(),
    )
    .unwrap_err();
    assert!(
        matches!(error, FetchError::Connection { attempts: 3, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("(after 3 attempts)"), "{error}");
}

#[test]
fn credentials_in_the_url_never_reach_the_message() {
    let server = serve(vec![status_response("403 Forbidden")]);
    let dir = tempfile::tempdir().unwrap();
    let url = server.base.replace("http://", "http://deploy:hunter2@")
        + "/r2/app.tgz?X-Amz-Signature=s3cr3t#frag";
    let error = download(&url, &dest_in(&dir), &test_options()).unwrap_err();
    let message = error.to_string();
    assert!(!message.contains("hunter2"), "{message}");
    assert!(!message.contains("deploy"), "{message}");
    assert!(!message.contains("s3cr3t"), "{message}");
    let shown = format!("{}/r2/app.tgz?…", server.base);
    assert!(message.contains(&shown), "{message}");
    assert!(message.contains("403 Forbidden"), "{message}");
    let debug = format!("{error:?}");
    assert!(
        !debug.contains("hunter2") && !debug.contains("s3cr3t"),
        "{debug}"
    );
}

#[test]
fn only_http_and_https_urls_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    for url in ["file:///etc/shadow", "ftp://user:pw@mirror/app.tgz"] {
        let error = download(url, &dest_in(&dir), &test_options()).unwrap_err();
        assert!(
            matches!(error, FetchError::UnsupportedScheme { .. }),
            "{url}: {error:?}"
        );
        assert!(!error.to_string().contains("pw@"), "{error}");
    }
    let error = download("not a url", &dest_in(&dir), &test_options()).unwrap_err();
    assert!(matches!(error, FetchError::InvalidUrl { .. }), "{error:?}");
}

#[test]
fn local_copies_are_hashed_and_size_limited() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("r1.tar.gz");
    std::fs::write(&source, b"a charm-shipped build").unwrap();
    let dest = dir.path().join("copy.tgz");
    let copied = copy_local(&source, &dest, &test_options()).unwrap();
    assert_eq!(copied.sha256, sha256_hex(b"a charm-shipped build"));
    assert_eq!(copied.bytes, 21);
    assert_eq!(std::fs::read(&dest).unwrap(), b"a charm-shipped build");

    std::fs::write(&source, vec![0u8; 4096]).unwrap();
    let error = copy_local(&source, &dest, &test_options()).unwrap_err();
    assert!(
        matches!(
            error,
            FetchError::TooLarge {
                announced: Some(4096),
                ..
            }
        ),
        "{error:?}"
    );

    let error = copy_local(Path::new("/nonexistent/r3.tgz"), &dest, &test_options()).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("cannot read archive /nonexistent/r3.tgz"),
        "{error}"
    );
}

#[test]
fn checksums_compare_case_insensitively_and_name_both_digests() {
    let downloaded = Downloaded {
        bytes: 3,
        sha256: sha256_hex(b"abc"),
    };
    verify_sha256(&downloaded, &downloaded.sha256.to_uppercase()).unwrap();
    verify_sha256(&downloaded, &format!(" {} \n", downloaded.sha256)).unwrap();

    let other = sha256_hex(b"abd");
    let error = verify_sha256(&downloaded, &other).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "archive sha256 is {}, but archive_sha256 is {other}",
            downloaded.sha256
        )
    );

    for malformed in ["", "abc", &"g".repeat(64), &"a".repeat(65)] {
        let error = verify_sha256(&downloaded, malformed).unwrap_err();
        assert!(
            matches!(error, FetchError::MalformedChecksum { .. }),
            "{malformed:?}: {error:?}"
        );
    }
}
