//! Getting a build's archive onto the machine: downloaded over HTTP(S) from
//! `code_assets_uri`, or copied from the charm's own `files/` directory, and
//! hashed (sha256) on the way so `archive_sha256` can be checked without
//! reading the file twice.
//!
//! The charm runs as root and the server is not necessarily ours, so a
//! download is bounded in every dimension:
//!
//! - only `http` and `https` URLs;
//! - a connect timeout, a per-read idle timeout, and a total deadline that
//!   covers every attempt and the pauses between them;
//! - a few attempts with doubling back-off, only for failures that another
//!   attempt can fix (connection errors, timeouts, a body cut short, 5xx);
//!   a 4xx is the operator's to fix and is reported at once;
//! - a size limit, checked against `Content-Length` before reading and
//!   again while streaming (a server may lie or send none);
//! - a body shorter than its `Content-Length` is an error, never a
//!   silently truncated archive;
//! - a failed download leaves no file behind.
//!
//! The download goes through the model's proxy ([`ModelProxy`], read once
//! in `main`), never through proxy variables of the process: hosts in the
//! no-proxy list (names and their subdomains, IP addresses, CIDRs, `*`) are
//! fetched directly. A malformed proxy URL is an error naming its variable,
//! never a silent direct connection.
//!
//! Error messages name the URL, and the proxy a download went through,
//! without userinfo, query or fragment, because those are where credentials
//! live (`https://user:token@host/...`, presigned `?X-Amz-Signature=...`),
//! and these messages end up in `juju status` and the logs.
//!
//! Why one file over 600 lines: attempts, deadlines, proxy routing and the
//! wording of each failure are one download and only make sense together; the
//! proxy settings are in `proxy`, URL redaction in `text`.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use hyper_util::client::proxy::matcher::Matcher as ProxyMatcher;
use reqwest::blocking::Client;
use reqwest::{NoProxy, Proxy, StatusCode, Url};
use sha2::{Digest, Sha256};

use crate::workload::proxy::{ModelProxy, ProxySetting};
use crate::workload::text::{redact_unparsed, redact_url, redact_url_text};

/// How a download is bounded. [`Default`] suits a build archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadOptions {
    /// Longest wait for a TCP (and TLS) connection to open.
    pub connect_timeout: Duration,
    /// Longest wait for the response headers, and for each read of the body:
    /// a server that goes quiet for this long is given up on.
    pub read_timeout: Duration,
    /// Deadline for the whole download, every attempt and pause included.
    pub total_timeout: Duration,
    /// Attempts in all, the first included (at least 1 is made).
    pub max_attempts: u32,
    /// Pause before the second attempt; doubled before each further one.
    pub first_backoff: Duration,
    /// Largest archive accepted, in bytes.
    pub max_bytes: u64,
    /// The model's proxy settings; the default connects directly.
    pub proxy: ModelProxy,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            total_timeout: Duration::from_secs(15 * 60),
            max_attempts: 3,
            first_backoff: Duration::from_secs(2),
            max_bytes: 1024 * 1024 * 1024,
            proxy: ModelProxy::default(),
        }
    }
}

/// An archive now on disk: its size and its sha256 (lowercase hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    pub bytes: u64,
    pub sha256: String,
}

/// Why an archive could not be fetched or did not match its checksum.
/// URLs in these messages never carry credentials (see the module doc).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot download {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot download {url}: only http and https URLs are supported")]
    UnsupportedScheme { url: String },
    #[error("cannot download {url}: {problem}")]
    InvalidProxy {
        url: String,
        problem: Box<ProxyProblem>,
    },
    #[error("download of {url} timed out after {} ({})", seconds(*.after), attempts_text(*.attempts))]
    TimedOut {
        url: String,
        after: Duration,
        attempts: u32,
    },
    #[error("download of {url} failed: the server answered {status}{}", retried_text(*.attempts))]
    HttpStatus {
        url: String,
        status: StatusCode,
        attempts: u32,
    },
    #[error("download of {url} failed: {reason}{}", retried_text(*.attempts))]
    Connection {
        url: String,
        reason: String,
        attempts: u32,
    },
    #[error(
        "download of {url} failed: the connection closed after {received} of {expected} bytes{}",
        retried_text(*.attempts)
    )]
    Truncated {
        url: String,
        received: u64,
        expected: u64,
        attempts: u32,
    },
    #[error("archive {source_name} is larger than the {} limit{}",
        human_bytes(*.limit),
        .announced.map(|n| format!(" (it announces {n} bytes)")).unwrap_or_default())]
    TooLarge {
        /// The URL (redacted) or the local path.
        source_name: String,
        limit: u64,
        /// The size the server or the file system announced, when known.
        announced: Option<u64>,
    },
    #[error("cannot read archive {path}: {source}")]
    ReadLocal {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write downloaded archive to {path}: {source}")]
    WriteDestination {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("archive sha256 is {actual}, but archive_sha256 is {expected}")]
    ChecksumMismatch { actual: String, expected: String },
    #[error("archive_sha256 {shown:?} is not a sha256 digest (64 hexadecimal characters)")]
    MalformedChecksum { shown: String },
}

/// A model proxy setting the download cannot use.
#[derive(Debug, thiserror::Error)]
#[error("{variable} (the model's {model_key}) {shown:?} is not a usable proxy URL: {reason}")]
pub struct ProxyProblem {
    pub variable: &'static str,
    pub model_key: &'static str,
    /// The value without its userinfo.
    pub shown: String,
    pub reason: String,
}

/// Downloads `url` into `dest_file` (created or truncated), hashing as it
/// streams. On error no file is left at `dest_file`.
pub fn download(
    url: &str,
    dest_file: &Path,
    options: &DownloadOptions,
) -> Result<Downloaded, FetchError> {
    let url = parse_download_url(url)?;
    let route =
        ProxyRoute::new(&options.proxy).map_err(|(setting, reason)| FetchError::InvalidProxy {
            url: redact_url(&url),
            problem: Box::new(ProxyProblem {
                variable: setting.variable,
                model_key: setting.model_key,
                shown: setting.redacted(),
                reason,
            }),
        })?;
    // Say which proxy carried the request: an error from the proxy (a 407,
    // a refused connection) reads like one from the server otherwise.
    let shown = match route.proxy_for(&url) {
        Some(proxy) => format!("{} through proxy {proxy}", redact_url(&url)),
        None => redact_url(&url),
    };
    let started = Instant::now();
    let deadline = started + options.total_timeout;

    let mut client = Client::builder()
        .connect_timeout(options.connect_timeout)
        // In reqwest's blocking client this bounds the wait for headers and
        // each read of the body: exactly an idle timeout. The total deadline
        // is ours to enforce (see `attempt_download`).
        .timeout(options.read_timeout)
        // Following a handful of redirects is what mirrors need; reqwest
        // refuses non-http(s) targets itself.
        .redirect(reqwest::redirect::Policy::limited(5))
        // Forget the process's own proxy variables: the model's are the
        // only ones that apply.
        .no_proxy();
    for proxy in route.proxies {
        client = client.proxy(proxy);
    }
    let client = client.build().map_err(|e| FetchError::Connection {
        url: shown.clone(),
        reason: error_chain(&e.without_url()),
        attempts: 0,
    })?;

    let mut backoff = options.first_backoff;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let failure = match attempt_download(&client, &url, dest_file, options, deadline) {
            Ok(downloaded) => return Ok(downloaded),
            Err(failure) => failure,
        };
        // Never leave a partial archive for a later step to trip over.
        let _ = fs::remove_file(dest_file);
        let out_of_time = Instant::now() + backoff >= deadline;
        if !failure.is_worth_retrying() || attempts >= options.max_attempts || out_of_time {
            return Err(failure.into_error(
                &shown,
                dest_file,
                options,
                attempts,
                started.elapsed(),
            ));
        }
        thread::sleep(backoff);
        backoff = backoff.saturating_mul(2);
    }
}

/// Copies an archive shipped in the charm (`files/`) to `dest`, with the same
/// size limit and hashing as [`download`]. On error no file is left at `dest`.
pub fn copy_local(
    source: &Path,
    dest: &Path,
    options: &DownloadOptions,
) -> Result<Downloaded, FetchError> {
    let read_error = |source_error| FetchError::ReadLocal {
        path: source.to_owned(),
        source: source_error,
    };
    let mut input = File::open(source).map_err(read_error)?;
    let announced = input.metadata().map_err(read_error)?.len();
    let too_large = |announced| FetchError::TooLarge {
        source_name: source.display().to_string(),
        limit: options.max_bytes,
        announced,
    };
    if announced > options.max_bytes {
        return Err(too_large(Some(announced)));
    }
    let mut output = create_destination(dest).map_err(|e| write_error(dest, e))?;
    let result = stream_hashed(&mut input, &mut output, options.max_bytes, None);
    drop(output);
    let result = match result {
        Ok(downloaded) => Ok(downloaded),
        Err(StreamError::Read { error, .. }) => Err(read_error(error)),
        Err(StreamError::Write(e)) => Err(write_error(dest, e)),
        Err(StreamError::OverLimit) => Err(too_large(None)),
        Err(StreamError::PastDeadline) => unreachable!("no deadline given"),
    };
    if result.is_err() {
        let _ = fs::remove_file(dest);
    }
    result
}

/// Checks a fetched archive against the operator's `archive_sha256`.
/// `expected` is 64 hex digits in either case, surrounding spaces ignored.
pub fn verify_sha256(downloaded: &Downloaded, expected: &str) -> Result<(), FetchError> {
    let expected = expected.trim();
    if expected.len() != 64 || !expected.bytes().all(|b| b.is_ascii_hexdigit()) {
        // Show only a prefix: a pasted value may be long and is not secret,
        // but a wall of text helps nobody.
        let shown: String = expected.chars().take(72).collect();
        return Err(FetchError::MalformedChecksum { shown });
    }
    let expected = expected.to_ascii_lowercase();
    if downloaded.sha256 != expected {
        return Err(FetchError::ChecksumMismatch {
            actual: downloaded.sha256.clone(),
            expected,
        });
    }
    Ok(())
}

/// What went wrong in one attempt, before we know whether to try again.
#[derive(Debug)]
enum AttemptFailure {
    Timeout,
    Connection(String),
    Status(StatusCode),
    Truncated { received: u64, expected: u64 },
    TooLarge { announced: Option<u64> },
    Write(io::Error),
}

impl AttemptFailure {
    fn is_worth_retrying(&self) -> bool {
        match self {
            AttemptFailure::Timeout
            | AttemptFailure::Connection(_)
            | AttemptFailure::Truncated { .. } => true,
            AttemptFailure::Status(status) => status.is_server_error(),
            AttemptFailure::TooLarge { .. } | AttemptFailure::Write(_) => false,
        }
    }

    fn into_error(
        self,
        url: &str,
        dest_file: &Path,
        options: &DownloadOptions,
        attempts: u32,
        elapsed: Duration,
    ) -> FetchError {
        let url = url.to_owned();
        match self {
            AttemptFailure::Timeout => FetchError::TimedOut {
                url,
                after: elapsed,
                attempts,
            },
            AttemptFailure::Connection(reason) => FetchError::Connection {
                url,
                reason,
                attempts,
            },
            AttemptFailure::Status(status) => FetchError::HttpStatus {
                url,
                status,
                attempts,
            },
            AttemptFailure::Truncated { received, expected } => FetchError::Truncated {
                url,
                received,
                expected,
                attempts,
            },
            AttemptFailure::TooLarge { announced } => FetchError::TooLarge {
                source_name: url,
                limit: options.max_bytes,
                announced,
            },
            AttemptFailure::Write(source) => write_error(dest_file, source),
        }
    }
}

fn attempt_download(
    client: &Client,
    url: &Url,
    dest_file: &Path,
    options: &DownloadOptions,
    deadline: Instant,
) -> Result<Downloaded, AttemptFailure> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Err(AttemptFailure::Timeout);
    }
    let mut response = client
        .get(url.clone())
        .timeout(options.read_timeout.min(remaining))
        .send()
        .map_err(classify_request_error)?;
    let status = response.status();
    if !status.is_success() {
        return Err(AttemptFailure::Status(status));
    }
    let announced = response.content_length();
    if announced.is_some_and(|n| n > options.max_bytes) {
        return Err(AttemptFailure::TooLarge { announced });
    }
    let mut output = create_destination(dest_file).map_err(AttemptFailure::Write)?;
    let downloaded = stream_hashed(
        &mut response,
        &mut output,
        options.max_bytes,
        Some(deadline),
    )
    .map_err(|e| match e {
        StreamError::Read { error, received } => {
            match classify_body_error(&error) {
                // The connection broke before the announced length arrived:
                // say so in those words rather than hyper's.
                AttemptFailure::Connection(_) if announced.is_some_and(|n| received < n) => {
                    AttemptFailure::Truncated {
                        received,
                        expected: announced.unwrap_or_default(),
                    }
                }
                other => other,
            }
        }
        StreamError::Write(e) => AttemptFailure::Write(e),
        StreamError::OverLimit => AttemptFailure::TooLarge { announced },
        StreamError::PastDeadline => AttemptFailure::Timeout,
    })?;
    // hyper reports a body cut short of its Content-Length as an error, but
    // the check is cheap and the consequence of missing it is a broken build.
    if let Some(expected) = announced {
        if downloaded.bytes != expected {
            return Err(AttemptFailure::Truncated {
                received: downloaded.bytes,
                expected,
            });
        }
    }
    Ok(downloaded)
}

enum StreamError {
    Read { error: io::Error, received: u64 },
    Write(io::Error),
    OverLimit,
    PastDeadline,
}

/// Copies `input` to `output` while hashing, stopping as soon as more than
/// `max_bytes` arrive or the deadline passes.
fn stream_hashed(
    input: &mut dyn Read,
    output: &mut File,
    max_bytes: u64,
    deadline: Option<Instant>,
) -> Result<Downloaded, StreamError> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut total: u64 = 0;
    loop {
        let n = match input.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                return Err(StreamError::Read {
                    error,
                    received: total,
                })
            }
        };
        total += n as u64;
        if total > max_bytes {
            return Err(StreamError::OverLimit);
        }
        hasher.update(&buffer[..n]);
        output.write_all(&buffer[..n]).map_err(StreamError::Write)?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(StreamError::PastDeadline);
        }
    }
    output.flush().map_err(StreamError::Write)?;
    Ok(Downloaded {
        bytes: total,
        sha256: lowercase_hex(&hasher.finalize()),
    })
}

fn create_destination(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

fn write_error(path: &Path, source: io::Error) -> FetchError {
    FetchError::WriteDestination {
        path: path.to_owned(),
        source,
    }
}

fn parse_download_url(raw: &str) -> Result<Url, FetchError> {
    let url = Url::parse(raw).map_err(|e| FetchError::InvalidUrl {
        // The string did not parse, so we cannot cut credentials out of it
        // reliably: show only what comes before any '@', '?' or '#'.
        url: redact_unparsed(raw),
        reason: e.to_string(),
    })?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        _ => Err(FetchError::UnsupportedScheme {
            url: redact_url(&url),
        }),
    }
}

/// The model's proxies as reqwest uses them, and the same rules again to
/// tell which proxy (if any) a URL goes through.
struct ProxyRoute {
    proxies: Vec<Proxy>,
    matcher: ProxyMatcher,
}

impl ProxyRoute {
    /// Checks every proxy URL, whether or not this download needs it: a
    /// setting that only works for some URLs would fail later, elsewhere.
    fn new(model: &ModelProxy) -> Result<ProxyRoute, (&ProxySetting, String)> {
        let no_proxy = model
            .no_proxy
            .as_ref()
            .map_or(String::new(), |s| s.value.clone());
        let mut proxies = Vec::new();
        // reqwest matches `*` against names only, never against an IP
        // address; curl and pip bypass the proxy for every host.
        let bypass_all = no_proxy.split(',').any(|entry| entry.trim() == "*");
        let mut matcher = ProxyMatcher::builder().no(no_proxy.as_str());
        if let Some(setting) = &model.http {
            let url = parse_proxy_url(&setting.value).map_err(|reason| (setting, reason))?;
            proxies.push(Proxy::http(url.as_str()).map_err(|e| (setting, error_chain(&e)))?);
            matcher = matcher.http(url.as_str());
        }
        if let Some(setting) = &model.https {
            let url = parse_proxy_url(&setting.value).map_err(|reason| (setting, reason))?;
            proxies.push(Proxy::https(url.as_str()).map_err(|e| (setting, error_chain(&e)))?);
            matcher = matcher.https(url.as_str());
        }
        if bypass_all {
            return Ok(ProxyRoute {
                proxies: Vec::new(),
                matcher: ProxyMatcher::builder().build(),
            });
        }
        let proxies = proxies
            .into_iter()
            .map(|p| p.no_proxy(NoProxy::from_string(&no_proxy)))
            .collect();
        Ok(ProxyRoute {
            proxies,
            matcher: matcher.build(),
        })
    }

    /// The proxy `url` goes through, as a message may show it (no userinfo).
    fn proxy_for(&self, url: &Url) -> Option<String> {
        let intercept = self.matcher.intercept(&url.as_str().parse().ok()?)?;
        // The matcher keeps credentials apart from the URI; redact anyway
        // so this never depends on that.
        Some(redact_url_text(&intercept.uri().to_string()))
    }
}

/// A proxy URL as curl and pip read it: `http://` when no scheme is given,
/// and only http or https (reqwest speaks no other proxy protocol here).
fn parse_proxy_url(raw: &str) -> Result<Url, String> {
    let with_scheme = if raw.contains("://") {
        raw.to_string()
    } else {
        format!("http://{raw}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "the scheme is {:?}; only http and https proxies are supported",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("it names no host".to_string());
    }
    Ok(url)
}

fn classify_request_error(error: reqwest::Error) -> AttemptFailure {
    if error.is_timeout() {
        AttemptFailure::Timeout
    } else {
        AttemptFailure::Connection(error_chain(&error.without_url()))
    }
}

fn classify_body_error(error: &io::Error) -> AttemptFailure {
    let is_timeout = error.kind() == io::ErrorKind::TimedOut
        || error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<reqwest::Error>())
            .is_some_and(reqwest::Error::is_timeout);
    if is_timeout {
        AttemptFailure::Timeout
    } else {
        AttemptFailure::Connection(error_chain(error))
    }
}

/// "client error (Connect): tcp connect error: Connection refused": the
/// outer message alone rarely says what happened, so follow the sources.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(e) = current {
        let mut text = e.to_string();
        // A reqwest error with a URL prints it, credentials and all.
        if let Some(url) = e
            .downcast_ref::<reqwest::Error>()
            .and_then(reqwest::Error::url)
        {
            text = text.replace(&format!(" for url ({url})"), "");
        }
        // Wrappers often repeat their source's message; say it once.
        if !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

fn lowercase_hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut text = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(text, "{b:02x}");
    }
    text
}

fn seconds(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs >= 10.0 {
        format!("{} s", secs.round())
    } else {
        format!("{secs:.1} s")
    }
}

fn attempts_text(attempts: u32) -> String {
    if attempts == 1 {
        "1 attempt".to_owned()
    } else {
        format!("{attempts} attempts")
    }
}

fn retried_text(attempts: u32) -> String {
    if attempts > 1 {
        format!(" (after {attempts} attempts)")
    } else {
        String::new()
    }
}

/// "2 GiB", "10 MiB", "1.5 KiB", "512 bytes": sizes as operators write them.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (name, size) in UNITS {
        if n >= size {
            let whole = n / size;
            return if whole * size == n {
                format!("{whole} {name}")
            } else {
                format!("{:.1} {name}", n as f64 / size as f64)
            };
        }
    }
    format!("{n} bytes")
}
