//! What every unit writes on `cos-agent` (interface `cos_agent`, we provide):
//! the unit bag key `config`, one JSON object exactly as
//! modern-interfaces.md §5.1 gives it. The metric names come from
//! notes/metrics-spec.md; the exporter that serves them is not ours here.
//!
//! The collector adds the Juju topology labels (`juju_model`,
//! `juju_model_uuid`, `juju_application`, `juju_unit`) to what it scrapes, so
//! each rule expression matches on them: without that, one application's
//! alert would fire on another's series in the same Prometheus.

use std::io::Write;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::ops::config::ConfigError;
use crate::ops::Bag;

/// The unit bag key the collector reads.
pub const CONFIG_KEY: &str = "config";

/// The charm's name in metadata.yaml (a dashboard's tag names the charm,
/// not the application, so every deployment's dashboards group together).
pub const CHARM_NAME: &str = "wsgi-app";

/// Our scrape job before the application-specific prefix and hash; the
/// exporter-down rule finds the job's `up` series by it.
const JOB: &str = "wsgi_app_exporter";

const DASHBOARD: &str = include_str!("../../../templates/dashboards/wsgi-app.json");
/// Where the dashboard lives in the charm, hashed into its uid so a second
/// dashboard would get a uid of its own.
const DASHBOARD_PATH: &str = "templates/dashboards/wsgi-app.json";

/// Where the rules apply: the labels the collector puts on our series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub model: String,
    pub model_uuid: String,
    pub application: String,
}

impl Topology {
    /// `juju_model="…",juju_model_uuid="…",juju_application="…"`, for
    /// inside a PromQL or LogQL selector.
    fn matchers(&self) -> String {
        self.labels()
            .iter()
            .map(|(name, value)| format!("{name}={}", quoted(value)))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn labels(&self) -> [(&'static str, &str); 3] {
        [
            ("juju_model", &self.model),
            ("juju_model_uuid", &self.model_uuid),
            ("juju_application", &self.application),
        ]
    }

    fn label_map(&self) -> serde_json::Map<String, Value> {
        self.labels()
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect()
    }

    /// Rule groups are named per application: Prometheus keeps a group by
    /// its name within a file, and the collector may put several
    /// applications' rules side by side.
    fn group_name(&self, what: &str) -> String {
        let uuid: String = self.model_uuid.chars().take(8).collect();
        format!("{}_{uuid}_{}_{what}", self.model, self.application)
    }
}

/// A PromQL/LogQL string literal (both take Go's double-quoted escapes).
fn quoted(value: &str) -> String {
    serde_json::to_string(value).expect("a string serialises")
}

/// `alert_error_ratio` and `alert_latency_p99_seconds`, checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlertThresholds {
    pub error_ratio: f64,
    pub latency_p99_seconds: f64,
}

// Both values are checked finite in `new`, so no NaN ever breaks equality.
impl Eq for AlertThresholds {}

impl AlertThresholds {
    pub fn new(error_ratio: f64, latency_p99_seconds: f64) -> Result<Self, ConfigError> {
        if !(error_ratio.is_finite() && error_ratio > 0.0 && error_ratio <= 1.0) {
            return Err(ConfigError::new(
                "alert_error_ratio",
                format!(
                    "{error_ratio} is not a share of requests: use a number above 0 and at most 1, e.g. 0.05 for 5%"
                ),
            ));
        }
        if !(latency_p99_seconds.is_finite() && latency_p99_seconds > 0.0) {
            return Err(ConfigError::new(
                "alert_latency_p99_seconds",
                format!("{latency_p99_seconds} is not a duration: use seconds above 0, e.g. 2.0"),
            ));
        }
        Ok(AlertThresholds {
            error_ratio,
            latency_p99_seconds,
        })
    }
}

/// What the bag says, from what the charm knows.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub topology: &'a Topology,
    /// `None`: no exporter, so no scrape job.
    pub metrics_port: Option<u16>,
    pub thresholds: AlertThresholds,
}

/// The unit's whole bag on `cos-agent`: `config` and nothing else.
pub fn unit_data(inputs: &Inputs<'_>) -> Bag {
    let config = json!({
        "metrics_alert_rules": metrics_alert_rules(inputs.topology, inputs.thresholds),
        "log_alert_rules": log_alert_rules(inputs.topology),
        "dashboards": [encode_dashboard(&dashboard())],
        "metrics_scrape_jobs": scrape_jobs(&inputs.topology.application, inputs.metrics_port),
        "log_slots": [],
        "tracing_protocols": [],
    });
    Bag::from([(CONFIG_KEY.to_string(), config.to_string())])
}

/// One job scraping our exporter on this machine (the collector is a
/// subordinate beside it, so `localhost`), or none when metrics are off.
/// The job name has the collector's form, `<app>_<job>_<8 hex digits>`,
/// so one collector's jobs never share a name.
pub fn scrape_jobs(application: &str, metrics_port: Option<u16>) -> Value {
    let Some(metrics_port) = metrics_port else {
        return json!([]);
    };
    let mut job = json!({
        "metrics_path": "/metrics",
        "static_configs": [{"targets": [format!("localhost:{metrics_port}")]}],
    });
    let digest = Sha256::digest(job.to_string().as_bytes());
    let short: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    job["job_name"] = json!(format!("{application}_{JOB}_{short}"));
    json!([job])
}

struct Rule {
    alert: &'static str,
    expr: String,
    for_: Option<&'static str>,
    severity: &'static str,
    summary: String,
    description: String,
}

impl Rule {
    fn to_json(&self, topology: &Topology) -> Value {
        let mut labels = topology.label_map();
        labels.insert("severity".into(), json!(self.severity));
        let mut rule = json!({
            "alert": self.alert,
            "expr": self.expr,
            "labels": labels,
            "annotations": {"summary": self.summary, "description": self.description},
        });
        if let Some(for_) = self.for_ {
            rule["for"] = json!(for_);
        }
        rule
    }
}

/// The application's Prometheus rules. Aggregations keep the topology
/// labels, so a firing alert says which application it is about.
pub fn metrics_alert_rules(topology: &Topology, thresholds: AlertThresholds) -> Value {
    let t = topology.matchers();
    let by = "juju_model, juju_model_uuid, juju_application";
    let app = "{{ $labels.juju_application }}";
    let unit = "{{ $labels.juju_unit }}";
    let ratio = thresholds.error_ratio;
    let p99 = thresholds.latency_p99_seconds;
    let rules = [
        Rule {
            alert: "WsgiAppDown",
            expr: format!("wsgi_app_up{{{t}}} == 0"),
            for_: Some("2m"),
            severity: "critical",
            summary: format!("{unit}: the application does not answer its health check"),
            description: format!(
                "{unit} has not answered nagios_index_path as the nagios_* options expect for 2 minutes. \
                 Run `juju status {app}` and read /var/log/{app}/error.log on the unit; \
                 the rollback action moves the unit back to the build it served before."
            ),
        },
        Rule {
            alert: "WsgiAppMetricsExporterDown",
            expr: format!("up{{{t},job=~\".*{JOB}.*\"}} == 0"),
            for_: Some("2m"),
            severity: "warning",
            summary: format!("{unit}: the metrics exporter cannot be scraped"),
            description: format!(
                "The collector has not reached {unit}'s metrics exporter on metrics_port for 2 minutes, \
                 so the other alerts of {app} are blind there. Check the exporter's service on the unit \
                 and that nothing else holds metrics_port."
            ),
        },
        Rule {
            alert: "WsgiAppHighErrorRatio",
            expr: format!(
                "sum by ({by}) (rate(wsgi_app_requests_total{{{t},status=~\"5..\"}}[5m])) \
                 / sum by ({by}) (rate(wsgi_app_requests_total{{{t}}}[5m])) > {ratio}"
            ),
            for_: Some("5m"),
            severity: "critical",
            summary: format!("{app}: more than {ratio} of requests fail with a 5xx"),
            description: format!(
                "Over 5 minutes, more than {ratio} of {app}'s requests have been answered with a 5xx \
                 (alert_error_ratio). Read /var/log/{app}/error.log; if a new build caused it, \
                 run abort-rollout or rollback."
            ),
        },
        Rule {
            alert: "WsgiAppHighLatencyP99",
            expr: format!(
                "histogram_quantile(0.99, sum by (le, {by}) \
                 (rate(wsgi_app_request_duration_seconds_bucket{{{t}}}[5m]))) > {p99}"
            ),
            for_: Some("10m"),
            severity: "warning",
            summary: format!("{app}: 99th percentile latency above {p99} s"),
            description: format!(
                "For 10 minutes, 1% of {app}'s requests took longer than {p99} s \
                 (alert_latency_p99_seconds). Compare busy workers with workers on the dashboard: \
                 if all are busy, raise workers or add units; otherwise look at the app's backends."
            ),
        },
        Rule {
            alert: "WsgiAppRolloutHalted",
            expr: format!("wsgi_app_rollout_state{{{t},state=\"halted\"}} == 1"),
            for_: None,
            severity: "warning",
            summary: format!("{app}: the rollout is halted"),
            description: format!(
                "A unit of {app} failed its health gate during a rollout, and the rollout waits for an \
                 operator. Run the rollout-status action to see which unit and why, then \
                 resume-rollout or abort-rollout on the leader."
            ),
        },
        Rule {
            alert: "WsgiAppHealthGateFailures",
            expr: format!("increase(wsgi_app_health_gate_failures_total{{{t}}}[15m]) > 0"),
            for_: None,
            severity: "warning",
            summary: format!("{unit}: the health gate refused a build"),
            description: format!(
                "In the last 15 minutes the health gate on {unit} refused a build (pre-flight or the \
                 check after a switch); the unit keeps serving its previous build. \
                 `juju status {app}` names the build and why it failed."
            ),
        },
    ];
    json!({"groups": [{
        "name": topology.group_name("wsgi_app_alerts"),
        "rules": rules.iter().map(|r| r.to_json(topology)).collect::<Vec<_>>(),
    }]})
}

/// The application's Loki rules over gunicorn's error log, which the
/// collector tails with everything under /var/log (§5.3). `filename` is the
/// label the collectors put on a tailed file's lines.
pub fn log_alert_rules(topology: &Topology) -> Value {
    let app = &topology.application;
    let selector = format!(
        "{{{},filename={}}}",
        topology.matchers(),
        quoted(&format!("/var/log/{app}/error.log"))
    );
    let by = "juju_model, juju_model_uuid, juju_application";
    let rules = [
        Rule {
            alert: "WsgiAppWorkerTimeouts",
            expr: format!(
                "sum by ({by}) (count_over_time({selector} |= \"WORKER TIMEOUT\" [5m])) > 0"
            ),
            for_: None,
            severity: "warning",
            summary: format!("{app}: gunicorn killed workers that timed out"),
            description: format!(
                "gunicorn killed at least one worker of {app} in the last 5 minutes for taking longer \
                 than webserver_timeout on a request. Find the slow requests in \
                 /var/log/{app}/access.log; raise webserver_timeout only if they are expected."
            ),
        },
        Rule {
            alert: "WsgiAppCriticalLogLines",
            expr: format!(
                "sum by ({by}) (count_over_time({selector} |~ \"\\\\[CRITICAL\\\\]\" [5m])) > 0"
            ),
            for_: None,
            severity: "warning",
            summary: format!("{app}: CRITICAL lines in the error log"),
            description: format!(
                "gunicorn or {app} wrote CRITICAL lines to /var/log/{app}/error.log in the last \
                 5 minutes. Read them there (or in Loki) to see what failed."
            ),
        },
    ];
    json!({"groups": [{
        "name": topology.group_name("wsgi_app_log_alerts"),
        "rules": rules.iter().map(|r| r.to_json(topology)).collect::<Vec<_>>(),
    }]})
}

/// The dashboard as the collector passes it on: a uid of at most 40
/// characters (Grafana's limit) fixed by the charm and the file, so a new
/// revision replaces the old dashboard, and the tag naming the charm.
pub fn dashboard() -> Value {
    let mut dashboard: Value =
        serde_json::from_str(DASHBOARD).expect("templates/dashboards/wsgi-app.json is JSON");
    let digest = Sha256::digest(format!("{CHARM_NAME}:{DASHBOARD_PATH}").as_bytes());
    let uid: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    dashboard["uid"] = json!(uid[..40]);
    let tag = json!(format!("charm: {CHARM_NAME}"));
    let tags = dashboard["tags"]
        .as_array_mut()
        .expect("the dashboard has tags");
    if !tags.contains(&tag) {
        tags.push(tag);
    }
    dashboard
}

/// base64(xz(JSON)): an xz container with CRC64 at preset 6, what Python's
/// `lzma.compress` makes by default, so the collector's decoder reads it.
pub fn encode_dashboard(dashboard: &Value) -> String {
    let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
    xz.write_all(dashboard.to_string().as_bytes())
        .and_then(|()| xz.finish())
        .map(|bytes| base64(&bytes))
        .expect("compressing into memory cannot fail")
}

/// Standard base64 with padding (RFC 4648 §4), as Python's b64encode.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_pads_as_rfc_4648_does() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn thresholds_name_their_option() {
        assert!(AlertThresholds::new(1.0, 0.001).is_ok());
        for (ratio, p99, option) in [
            (0.0, 2.0, "alert_error_ratio"),
            (1.5, 2.0, "alert_error_ratio"),
            (f64::NAN, 2.0, "alert_error_ratio"),
            (0.05, 0.0, "alert_latency_p99_seconds"),
            (0.05, f64::INFINITY, "alert_latency_p99_seconds"),
        ] {
            assert_eq!(AlertThresholds::new(ratio, p99).unwrap_err().option, option);
        }
    }

    #[test]
    fn a_topology_value_cannot_end_the_selector() {
        let topology = Topology {
            model: "m\"}".into(),
            model_uuid: "u".into(),
            application: "a".into(),
        };
        assert!(topology.matchers().starts_with(r#"juju_model="m\"}""#));
    }
}
