//! `workload::fetch` against a canned HTTP server on 127.0.0.1: success and
//! hashing, 4xx without retry, 5xx with retry, size limits, truncated and
//! stalled bodies, URL redaction; the model's proxy settings (the same
//! canned server standing in for the proxy); and local copies and checksum
//! checks.
//!
//! The server answers each connection with the next canned response and
//! closes it, so the number of connections is the number of attempts. It
//! keeps each request's head, so a test can tell a proxy request
//! (`GET http://host/path`, `CONNECT host:443`) from a direct one.
//!
//! Why one file over 600 lines: the canned server, and one test per behaviour
//! of a single download.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wsgi_app::workload::fetch::{
    copy_local, download, verify_sha256, DownloadOptions, Downloaded, FetchError,
};
use wsgi_app::workload::proxy::ModelProxy;

enum Canned {
    /// Raw bytes written as the whole response, then the connection closes.
    Reply(Vec<u8>),
    /// Raw bytes, then silence while the connection stays open.
    Stall(Vec<u8>),
}

struct Server {
    base: String,
    connections: Arc<AtomicUsize>,
    /// Each request's head (request line and headers), in order.
    heads: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn request_lines(&self) -> Vec<String> {
        self.heads
            .lock()
            .unwrap()
            .iter()
            .map(|head| head.lines().next().unwrap_or_default().to_string())
            .collect()
    }
}

fn serve(responses: Vec<Canned>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let counter = connections.clone();
    let recorded = heads.clone();
    thread::spawn(move || {
        for response in responses {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let head = read_request_head(&mut stream);
            recorded.lock().unwrap().push(head);
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
    Server {
        base,
        connections,
        heads,
    }
}

fn read_request_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
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
        proxy: ModelProxy::default(),
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

// The model's proxy settings. Archives come from `.invalid` hosts, which
// resolve nowhere: only a proxy can fetch them.

/// What `ModelProxy` a hook environment holding `vars` gives, read as
/// `main` reads the real one.
fn model_proxy(vars: &[(&str, &str)]) -> ModelProxy {
    wsgi_app::charm::proxy::from_hook_env(|name| {
        vars.iter()
            .find(|(var, _)| *var == name)
            .map(|(_, value)| value.to_string())
    })
}

fn through(proxy: ModelProxy) -> DownloadOptions {
    DownloadOptions {
        proxy,
        ..test_options()
    }
}

/// Juju sets every `JUJU_CHARM_*_PROXY`, empty when the model has none.
fn juju_env<'a>(http: &'a str, https: &'a str, no_proxy: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("JUJU_CHARM_HTTP_PROXY", http),
        ("JUJU_CHARM_HTTPS_PROXY", https),
        ("JUJU_CHARM_FTP_PROXY", ""),
        ("JUJU_CHARM_NO_PROXY", no_proxy),
    ]
}

#[test]
fn a_download_goes_through_the_models_http_proxy() {
    let body = b"the archive, as the proxy relays it".to_vec();
    let proxy = serve(vec![ok_response(&body)]);
    let dir = tempfile::tempdir().unwrap();
    let options = through(model_proxy(&juju_env(&proxy.base, "", "")));
    let downloaded =
        download("http://assets.invalid/r2/app.tgz", &dest_in(&dir), &options).unwrap();
    assert_eq!(downloaded.sha256, sha256_hex(&body));
    assert_eq!(
        proxy.request_lines(),
        ["GET http://assets.invalid/r2/app.tgz HTTP/1.1"]
    );
}

#[test]
fn hosts_in_no_proxy_are_fetched_directly() {
    // Juju's default juju-no-proxy, an address, a CIDR, `*`, a name, and a
    // list with spaces around its commas.
    let cases = [
        ("127.0.0.1,localhost,::1", "127.0.0.1"),
        ("127.0.0.1", "127.0.0.1"),
        ("127.0.0.0/8", "127.0.0.1"),
        ("*", "127.0.0.1"),
        ("localhost", "localhost"),
        ("assets.example , .localhost ,127.0.0.1", "127.0.0.1"),
    ];
    for (no_proxy, host) in cases {
        let origin = serve(vec![ok_response(b"from the origin")]);
        // Would answer, so a wrong route shows as the wrong body too.
        let proxy = serve(vec![ok_response(b"from the proxy")]);
        let port = origin.base.rsplit(':').next().unwrap();
        let url = format!("http://{host}:{port}/r2/app.tgz");
        let dir = tempfile::tempdir().unwrap();
        let options = through(model_proxy(&juju_env(&proxy.base, &proxy.base, no_proxy)));
        let downloaded = download(&url, &dest_in(&dir), &options)
            .unwrap_or_else(|e| panic!("JUJU_CHARM_NO_PROXY={no_proxy:?}: {e}"));
        assert_eq!(
            downloaded.sha256,
            sha256_hex(b"from the origin"),
            "JUJU_CHARM_NO_PROXY={no_proxy:?}"
        );
        assert_eq!(
            origin.request_lines(),
            ["GET /r2/app.tgz HTTP/1.1"],
            "JUJU_CHARM_NO_PROXY={no_proxy:?}"
        );
        assert_eq!(
            proxy.connections.load(Ordering::SeqCst),
            0,
            "JUJU_CHARM_NO_PROXY={no_proxy:?}"
        );
    }
}

#[test]
fn no_proxy_entries_for_other_hosts_leave_the_proxy_in_use() {
    // A bare suffix matches only at a dot; other names, addresses and
    // networks do not match assets.invalid at all.
    for no_proxy in [
        "sets.invalid",
        "assets.invalid.example",
        "other.invalid,10.0.0.0/8,::1",
        "127.0.0.1,localhost",
    ] {
        let proxy = serve(vec![ok_response(b"relayed")]);
        let dir = tempfile::tempdir().unwrap();
        let options = through(model_proxy(&juju_env(&proxy.base, "", no_proxy)));
        download("http://assets.invalid/r2/app.tgz", &dest_in(&dir), &options)
            .unwrap_or_else(|e| panic!("JUJU_CHARM_NO_PROXY={no_proxy:?}: {e}"));
        assert_eq!(
            proxy.request_lines(),
            ["GET http://assets.invalid/r2/app.tgz HTTP/1.1"],
            "JUJU_CHARM_NO_PROXY={no_proxy:?}"
        );
    }
}

#[test]
fn an_https_download_goes_through_the_https_proxy_only() {
    let http_proxy = serve(vec![ok_response(b"the wrong proxy")]);
    // A proxy that refuses the tunnel: the test is about where the request
    // went, not TLS.
    let https_proxy = serve(vec![status_response("403 Forbidden")]);
    let dir = tempfile::tempdir().unwrap();
    let options = DownloadOptions {
        max_attempts: 1,
        ..through(model_proxy(&juju_env(
            &http_proxy.base,
            &https_proxy.base,
            "",
        )))
    };
    let error = download(
        "https://assets.invalid/r2/app.tgz",
        &dest_in(&dir),
        &options,
    )
    .unwrap_err();
    assert_eq!(
        https_proxy.request_lines(),
        ["CONNECT assets.invalid:443 HTTP/1.1"]
    );
    assert_eq!(http_proxy.connections.load(Ordering::SeqCst), 0);
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "download of https://assets.invalid/r2/app.tgz through proxy {}/ failed: ",
            https_proxy.base
        )),
        "{message}"
    );
}

#[test]
fn an_http_download_without_an_http_proxy_is_direct() {
    let origin = serve(vec![ok_response(b"from the origin")]);
    let https_proxy = serve(vec![ok_response(b"from the proxy")]);
    let dir = tempfile::tempdir().unwrap();
    let options = through(model_proxy(&juju_env("", &https_proxy.base, "")));
    let downloaded = download(
        &format!("{}/r2/app.tgz", origin.base),
        &dest_in(&dir),
        &options,
    )
    .unwrap();
    assert_eq!(downloaded.sha256, sha256_hex(b"from the origin"));
    assert_eq!(https_proxy.connections.load(Ordering::SeqCst), 0);
}

#[test]
fn proxy_credentials_are_sent_to_the_proxy_and_never_shown() {
    let proxy = serve(vec![status_response("407 Proxy Authentication Required")]);
    let with_credentials = proxy.base.replace("http://", "http://deploy:hunter2@");
    let dir = tempfile::tempdir().unwrap();
    let options = through(model_proxy(&juju_env(&with_credentials, "", "")));
    let error = download("http://assets.invalid/r2/app.tgz", &dest_in(&dir), &options).unwrap_err();

    let heads = proxy.heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "a 407 is not retried");
    // base64("deploy:hunter2")
    assert!(
        heads[0].lines().any(
            |line| line.eq_ignore_ascii_case("proxy-authorization: Basic ZGVwbG95Omh1bnRlcjI=")
        ),
        "{}",
        heads[0]
    );
    assert_eq!(
        error.to_string(),
        format!(
            "download of http://assets.invalid/r2/app.tgz through proxy {}/ failed: \
             the server answered 407 Proxy Authentication Required",
            proxy.base
        )
    );
    for shown in [
        error.to_string(),
        format!("{error:?}"),
        format!("{options:?}"),
    ] {
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("deploy"), "{shown}");
    }
}

#[test]
fn a_malformed_proxy_url_is_refused_naming_its_variable() {
    let origin = serve(vec![ok_response(b"never fetched")]);
    let url = format!("{}/r2/app.tgz", origin.base);
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "JUJU_CHARM_HTTP_PROXY",
            "http://deploy:hunter2@squid.internal:99999",
        ),
        ("JUJU_CHARM_HTTP_PROXY", "http://deploy:hunter2@[::1"),
        ("JUJU_CHARM_HTTP_PROXY", "http://"),
        ("JUJU_CHARM_HTTP_PROXY", "ftp://squid.internal:3128"),
        (
            "JUJU_CHARM_HTTP_PROXY",
            "socks5://deploy:hunter2@127.0.0.1:1080",
        ),
        // Not needed for this http download, and refused all the same.
        ("JUJU_CHARM_HTTPS_PROXY", "http://squid.internal:3128:3128"),
    ];
    for (variable, value) in cases {
        let mut vars = juju_env("", "", "");
        if variable == "JUJU_CHARM_HTTPS_PROXY" {
            vars[0].1 = "http://squid.internal:3128";
        }
        vars.retain(|(var, _)| *var != variable);
        vars.push((variable, value));
        let error = download(&url, &dest_in(&dir), &through(model_proxy(&vars))).unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(&error, FetchError::InvalidProxy { problem, .. } if problem.variable == variable),
            "{value}: {error:?}"
        );
        let model_key = if variable == "JUJU_CHARM_HTTP_PROXY" {
            "juju-http-proxy"
        } else {
            "juju-https-proxy"
        };
        assert!(
            message.starts_with(&format!(
                "cannot download {url}: {variable} (the model's {model_key}) \""
            )),
            "{message}"
        );
        assert!(message.contains("is not a usable proxy URL: "), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        assert!(!format!("{error:?}").contains("hunter2"), "{error:?}");
    }
    assert_eq!(origin.connections.load(Ordering::SeqCst), 0);
    assert!(!dest_in(&dir).exists());
}

#[test]
fn a_proxy_without_a_scheme_is_an_http_proxy() {
    let proxy = serve(vec![ok_response(b"relayed")]);
    let address = proxy.base.trim_start_matches("http://");
    let dir = tempfile::tempdir().unwrap();
    let options = through(model_proxy(&juju_env(address, "", "")));
    download("http://assets.invalid/r2/app.tgz", &dest_in(&dir), &options).unwrap();
    assert_eq!(
        proxy.request_lines(),
        ["GET http://assets.invalid/r2/app.tgz HTTP/1.1"]
    );
}

#[test]
fn legacy_proxy_variables_apply_when_juju_gives_no_juju_proxy() {
    // A model with the legacy http-proxy setting: Juju sets http_proxy and
    // friends, and the JUJU_CHARM_* variables empty (juju-no-proxy keeps
    // its default).
    let proxy = serve(vec![ok_response(b"relayed")]);
    let mut vars = juju_env("", "", "127.0.0.1,localhost,::1");
    vars.extend([
        ("http_proxy", proxy.base.as_str()),
        ("HTTP_PROXY", &proxy.base),
    ]);
    let dir = tempfile::tempdir().unwrap();
    download(
        "http://assets.invalid/r2/app.tgz",
        &dest_in(&dir),
        &through(model_proxy(&vars)),
    )
    .unwrap();
    assert_eq!(
        proxy.request_lines(),
        ["GET http://assets.invalid/r2/app.tgz HTTP/1.1"]
    );
}

#[test]
fn juju_proxy_settings_win_over_legacy_variables() {
    let juju_proxy = serve(vec![ok_response(b"relayed")]);
    let legacy_proxy = serve(vec![ok_response(b"the wrong proxy")]);
    let mut vars = juju_env(&juju_proxy.base, "", "");
    vars.push(("http_proxy", &legacy_proxy.base));
    let dir = tempfile::tempdir().unwrap();
    let downloaded = download(
        "http://assets.invalid/r2/app.tgz",
        &dest_in(&dir),
        &through(model_proxy(&vars)),
    )
    .unwrap();
    assert_eq!(downloaded.sha256, sha256_hex(b"relayed"));
    assert_eq!(legacy_proxy.connections.load(Ordering::SeqCst), 0);
}

#[test]
fn the_installers_get_the_settings_the_download_uses() {
    let model = model_proxy(&juju_env(
        "http://deploy:hunter2@squid.internal:3128",
        "http://squid.internal:3129",
        "127.0.0.1,.internal",
    ));
    assert_eq!(
        model.installer_env(),
        [
            ("http_proxy", "http://deploy:hunter2@squid.internal:3128"),
            ("HTTP_PROXY", "http://deploy:hunter2@squid.internal:3128"),
            ("https_proxy", "http://squid.internal:3129"),
            ("HTTPS_PROXY", "http://squid.internal:3129"),
            ("no_proxy", "127.0.0.1,.internal"),
            ("NO_PROXY", "127.0.0.1,.internal"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
    );
    assert!(model_proxy(&juju_env("", "", "127.0.0.1"))
        .installer_env()
        .iter()
        .all(|(name, _)| name.eq_ignore_ascii_case("no_proxy")));
}
