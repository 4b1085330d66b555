//! The exporter process: `wsgi-app metrics-exporter --listen HOST:PORT
//! --statsd HOST:PORT --charm-metrics FILE`.
//!
//! One thread takes in gunicorn's statsd datagrams; the main thread
//! answers scrapes one at a time (a scrape is a few kilobytes, asked for
//! every few seconds at most), each bounded by [`IO_TIMEOUT`], so a client
//! that stalls cannot hold the endpoint for long. It runs as the app's
//! unprivileged user and writes nothing.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::exposition::{render, UpCheck};
use super::statsd::Aggregate;
use super::CharmMetrics;

/// The longest a scrape's client may take to send or read.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest the app may take to answer the exporter's own check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// The largest request head read.
const REQUEST_CAP: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Options {
    listen: String,
    statsd: String,
    charm_metrics: PathBuf,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let (mut listen, mut statsd, mut charm_metrics) = (None, None, None);
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let slot = match flag.as_str() {
            "--listen" => &mut listen,
            "--statsd" => &mut statsd,
            "--charm-metrics" => &mut charm_metrics,
            other => return Err(format!("unknown argument {other:?}")),
        };
        *slot = Some(
            args.next()
                .ok_or_else(|| format!("{flag} needs a value"))?
                .clone(),
        );
    }
    Ok(Options {
        listen: listen.ok_or("--listen is missing")?,
        statsd: statsd.ok_or("--statsd is missing")?,
        charm_metrics: charm_metrics.ok_or("--charm-metrics is missing")?.into(),
    })
}

/// The arguments after the subcommand; the exit code.
pub fn main(args: &[String]) -> i32 {
    let options = match parse(args) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("wsgi-app metrics-exporter: {e}");
            eprintln!(
                "usage: wsgi-app metrics-exporter --listen HOST:PORT --statsd HOST:PORT --charm-metrics FILE"
            );
            return 2;
        }
    };
    match serve(&options) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("wsgi-app metrics-exporter: {e}");
            1
        }
    }
}

fn serve(options: &Options) -> Result<(), String> {
    let statsd = UdpSocket::bind(&options.statsd)
        .map_err(|e| format!("cannot listen for statsd on {}: {e}", options.statsd))?;
    let http = TcpListener::bind(&options.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", options.listen))?;
    eprintln!(
        "wsgi-app metrics-exporter: /metrics on {}, statsd on {}",
        options.listen, options.statsd
    );
    let app = Arc::new(Mutex::new(Aggregate::default()));
    let sink = Arc::clone(&app);
    std::thread::spawn(move || take_in_statsd(&statsd, &sink));
    for stream in http.incoming() {
        match stream {
            Ok(stream) => {
                if let Err(e) = answer(stream, &app, &options.charm_metrics) {
                    eprintln!("wsgi-app metrics-exporter: a scrape failed: {e}");
                }
            }
            Err(e) => eprintln!("wsgi-app metrics-exporter: accept: {e}"),
        }
    }
    Ok(())
}

fn take_in_statsd(socket: &UdpSocket, app: &Mutex<Aggregate>) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match socket.recv(&mut buffer) {
            Ok(n) => {
                let text = String::from_utf8_lossy(&buffer[..n]);
                app.lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .ingest(&text);
            }
            Err(e) => {
                eprintln!("wsgi-app metrics-exporter: statsd: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn answer(mut stream: TcpStream, app: &Mutex<Aggregate>, charm_file: &Path) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let head = read_head(&mut stream)?;
    let request_line = head.lines().next().unwrap_or_default();
    let mut words = request_line.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            scrape(app, charm_file),
        ),
        ("GET" | "HEAD", "/") => (
            "200 OK",
            "text/plain; charset=utf-8",
            "wsgi-app metrics exporter: see /metrics\n".to_string(),
        ),
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found: try /metrics\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET\n".to_string(),
        ),
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        response.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&response)?;
    stream.flush()
}

fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < REQUEST_CAP {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

fn scrape(app: &Mutex<Aggregate>, charm_file: &Path) -> String {
    let charm = CharmMetrics::read(charm_file);
    let check = charm
        .as_ref()
        .and_then(|c| c.health.as_ref())
        .map(|target| {
            let started = Instant::now();
            let up = crate::workload::health::http_check(
                &target.address,
                &target.path,
                target.expected_status,
                &target.expected_content,
                CHECK_TIMEOUT,
            )
            .is_ok();
            UpCheck {
                up,
                seconds: started.elapsed().as_secs_f64(),
            }
        });
    let mut app = app.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    app.forget_dead_workers(|pid| Path::new("/proc").join(pid.to_string()).exists());
    render(&app, charm.as_ref(), check)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_all_required_and_named_when_wrong() {
        let args: Vec<String> = [
            "--listen",
            "127.0.0.1:9102",
            "--statsd",
            "127.0.0.1:9125",
            "--charm-metrics",
            "/var/lib/app/metrics.json",
        ]
        .map(String::from)
        .to_vec();
        let options = parse(&args).unwrap();
        assert_eq!(options.statsd, "127.0.0.1:9125");
        assert_eq!(parse(&args[..4]).unwrap_err(), "--charm-metrics is missing");
        assert_eq!(parse(&args[..1]).unwrap_err(), "--listen needs a value");
        assert!(parse(&["--port".into()]).unwrap_err().contains("--port"));
    }

    #[test]
    fn a_scrape_sees_statsd_and_the_charm_file() {
        use std::net::UdpSocket;
        let dir = tempfile::tempdir().unwrap();
        let charm_file = dir.path().join("metrics.json");
        CharmMetrics {
            switches: 2,
            ..Default::default()
        }
        .write(&charm_file)
        .unwrap();
        // Bound here, on ports the kernel picks, and served from threads.
        let statsd = UdpSocket::bind("127.0.0.1:0").unwrap();
        let statsd_address = statsd.local_addr().unwrap();
        let http = TcpListener::bind("127.0.0.1:0").unwrap();
        let listen = http.local_addr().unwrap().to_string();
        let app = Arc::new(Mutex::new(Aggregate::default()));
        let sink = Arc::clone(&app);
        std::thread::spawn(move || take_in_statsd(&statsd, &sink));
        let charm_metrics = charm_file.clone();
        std::thread::spawn(move || {
            for stream in http.incoming().flatten() {
                let _ = answer(stream, &app, &charm_metrics);
            }
        });
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .send_to(b"gunicorn.request.status.200:1|c|@1.0", statsd_address)
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let answer =
                crate::workload::health::http_get(&listen, "/metrics", IO_TIMEOUT).unwrap();
            assert_eq!(answer.status, 200);
            if answer
                .body
                .contains("wsgi_app_requests_total{status=\"200\"} 1")
            {
                assert!(
                    answer.body.contains("wsgi_app_switches_total 2"),
                    "{}",
                    answer.body
                );
                break;
            }
            assert!(Instant::now() < deadline, "{}", answer.body);
            std::thread::sleep(Duration::from_millis(20));
        }
        let missing = crate::workload::health::http_get(&listen, "/nope", IO_TIMEOUT).unwrap();
        assert_eq!(missing.status, 404);
    }
}
