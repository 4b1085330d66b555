//! What gunicorn says over statsd, added up into the app's metrics.
//!
//! gunicorn (with `--statsd-host`) sends one datagram per event:
//! `gunicorn.request.status.<code>:1|c|@1.0` and
//! `gunicorn.request.duration:<ms>|ms` per request, `gunicorn.log.<level>`
//! per log line of that level. The charm's gunicorn config adds one gauge
//! per worker, [`BUSY_PREFIX`]`<pid>`: its requests in flight, sent when a
//! worker starts (0) and around each request. Anything else is counted and
//! otherwise ignored: the app's own statsd names are not ours to publish.

use std::collections::BTreeMap;

/// The per-worker gauge our gunicorn config sends: requests in flight in
/// worker `<pid>`.
pub const BUSY_PREFIX: &str = "wsgi_app.worker.busy.";

/// Upper bounds (seconds) of the request-duration histogram's buckets.
pub const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The log levels gunicorn's statsd logger counts.
pub const LOG_LEVELS: [&str; 4] = ["critical", "error", "warning", "exception"];

/// A cumulative histogram of request durations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Observations at or under each of [`DURATION_BUCKETS`].
    pub buckets: [u64; DURATION_BUCKETS.len()],
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, count) in DURATION_BUCKETS.iter().zip(self.buckets.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

/// Everything gunicorn said since the exporter started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Aggregate {
    /// Requests answered, by HTTP status code.
    pub requests: BTreeMap<u16, f64>,
    pub duration: Histogram,
    /// Log lines by level.
    pub log_messages: BTreeMap<String, f64>,
    /// Requests in flight per worker pid, as each worker last said.
    pub busy: BTreeMap<u32, f64>,
    /// Lines that were not statsd, or not ours.
    pub ignored_lines: u64,
}

impl Aggregate {
    /// Take in one datagram (one or more lines).
    pub fn ingest(&mut self, datagram: &str) {
        for line in datagram.lines().filter(|l| !l.trim().is_empty()) {
            if self.ingest_line(line.trim()).is_none() {
                self.ignored_lines += 1;
            }
        }
    }

    /// `None` when the line is not one of ours.
    fn ingest_line(&mut self, line: &str) -> Option<()> {
        let sample = Sample::parse(line)?;
        if let Some(code) = sample.name.strip_prefix("gunicorn.request.status.") {
            let code: u16 = code.parse().ok().filter(|c| (100..600).contains(c))?;
            (sample.kind == Kind::Counter).then_some(())?;
            *self.requests.entry(code).or_default() += sample.scaled();
        } else if sample.name == "gunicorn.request.duration" {
            matches!(sample.kind, Kind::Timer).then_some(())?;
            self.duration.observe(sample.value / 1000.0);
        } else if let Some(level) = sample.name.strip_prefix("gunicorn.log.") {
            (LOG_LEVELS.contains(&level) && sample.kind == Kind::Counter).then_some(())?;
            *self.log_messages.entry(level.to_string()).or_default() += sample.scaled();
        } else if let Some(pid) = sample.name.strip_prefix(BUSY_PREFIX) {
            let pid: u32 = pid.parse().ok()?;
            (sample.kind == Kind::Gauge).then_some(())?;
            self.busy.insert(pid, sample.value.max(0.0));
        } else if sample.name == "gunicorn.requests" || sample.name == "gunicorn.workers" {
            // The sum of the status counters, and each master's own worker
            // count (two masters overlap in a switch): the per-status
            // counters and the workers' own gauges say both better.
        } else {
            return None;
        }
        Some(())
    }

    /// Forget workers that are gone (`alive` says which pids still run),
    /// so a worker killed mid-request is not busy for ever.
    pub fn forget_dead_workers(&mut self, alive: impl Fn(u32) -> bool) {
        self.busy.retain(|pid, _| alive(*pid));
    }

    /// Requests in flight over all workers.
    pub fn busy_total(&self) -> f64 {
        self.busy.values().sum()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Timer,
}

/// One statsd line: `name:value|type[|@rate][|#tags]`.
#[derive(Debug, Clone, PartialEq)]
struct Sample<'a> {
    name: &'a str,
    value: f64,
    kind: Kind,
    rate: f64,
}

impl<'a> Sample<'a> {
    fn parse(line: &'a str) -> Option<Sample<'a>> {
        let (name, rest) = line.split_once(':')?;
        let mut fields = rest.split('|');
        let value: f64 = fields
            .next()?
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())?;
        let kind = match fields.next()? {
            "c" => Kind::Counter,
            "g" => Kind::Gauge,
            "ms" | "h" => Kind::Timer,
            _ => return None,
        };
        let mut rate = 1.0;
        for field in fields {
            if let Some(r) = field.strip_prefix('@') {
                rate = r.parse().ok().filter(|r: &f64| *r > 0.0 && *r <= 1.0)?;
            }
        }
        Some(Sample {
            name,
            value,
            kind,
            rate,
        })
    }

    /// A sampled counter's value stands for `1/rate` times as many events.
    fn scaled(&self) -> f64 {
        self.value / self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_status_and_timed() {
        let mut agg = Aggregate::default();
        agg.ingest("gunicorn.request.duration:12.5|ms");
        agg.ingest("gunicorn.requests:1|c|@1.0");
        agg.ingest("gunicorn.request.status.200:1|c|@1.0");
        agg.ingest("gunicorn.request.status.200:1|c|@0.5");
        agg.ingest("gunicorn.request.status.503:1|c|@1.0\ngunicorn.request.duration:3000|ms");
        assert_eq!(agg.requests.get(&200), Some(&3.0), "a 1-in-2 sample is 2");
        assert_eq!(agg.requests.get(&503), Some(&1.0));
        assert_eq!(agg.duration.count, 2);
        assert!(
            (agg.duration.sum - 3.0125).abs() < 1e-9,
            "{}",
            agg.duration.sum
        );
        // 12.5 ms is under 0.025 s but not 0.01 s; 3 s only under 5 and 10.
        assert_eq!(agg.duration.buckets[1], 0);
        assert_eq!(agg.duration.buckets[2], 1);
        assert_eq!(agg.duration.buckets[8], 1);
        assert_eq!(agg.duration.buckets[9], 2);
        assert_eq!(agg.ignored_lines, 0);
    }

    #[test]
    fn busy_workers_are_per_pid_and_dead_ones_forgotten() {
        let mut agg = Aggregate::default();
        agg.ingest("wsgi_app.worker.busy.100:0|g");
        agg.ingest("wsgi_app.worker.busy.101:2|g");
        agg.ingest("wsgi_app.worker.busy.100:1|g");
        assert_eq!(agg.busy_total(), 3.0);
        agg.forget_dead_workers(|pid| pid == 100);
        assert_eq!(agg.busy_total(), 1.0);
        assert_eq!(agg.busy.len(), 1);
    }

    #[test]
    fn what_is_not_ours_is_counted_and_ignored() {
        let mut agg = Aggregate::default();
        for line in [
            "myapp.orders:1|c",
            "gunicorn.request.status.abc:1|c",
            "gunicorn.request.status.200:1|g",
            "gunicorn.request.status.200:NaN|c",
            "gunicorn.request.status.200:1|c|@0",
            "gunicorn.log.debug:1|c",
            "no colon here",
            "gunicorn.request.duration:5|x",
        ] {
            agg.ingest(line);
        }
        assert_eq!(agg.ignored_lines, 8);
        assert!(agg.requests.is_empty() && agg.duration.count == 0);
        agg.ingest("gunicorn.log.error:1|c|@1.0\ngunicorn.workers:4|g");
        assert_eq!(agg.log_messages.get("error"), Some(&1.0));
        assert_eq!(agg.ignored_lines, 8);
    }
}
