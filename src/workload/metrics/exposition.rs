//! Prometheus' text exposition format (0.0.4) for the exporter's metrics.
//! Every name the dashboard and alert rules use is spelled here.

use super::statsd::{Aggregate, DURATION_BUCKETS, LOG_LEVELS};
use super::{CharmMetrics, RolloutState};

/// What the exporter's own check of the app found at this scrape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UpCheck {
    pub up: bool,
    pub seconds: f64,
}

/// The whole `/metrics` page.
pub fn render(app: &Aggregate, charm: Option<&CharmMetrics>, check: Option<UpCheck>) -> String {
    let mut text = Text::default();
    text.family(
        "wsgi_app_requests_total",
        "counter",
        "Requests gunicorn answered, by HTTP status.",
    );
    for (status, count) in &app.requests {
        text.sample(
            "wsgi_app_requests_total",
            &[("status", &status.to_string())],
            *count,
        );
    }
    text.family(
        "wsgi_app_request_duration_seconds",
        "histogram",
        "Time gunicorn took to answer a request.",
    );
    for (bound, count) in DURATION_BUCKETS.iter().zip(app.duration.buckets) {
        text.sample(
            "wsgi_app_request_duration_seconds_bucket",
            &[("le", &number(*bound))],
            count as f64,
        );
    }
    text.sample(
        "wsgi_app_request_duration_seconds_bucket",
        &[("le", "+Inf")],
        app.duration.count as f64,
    );
    text.sample(
        "wsgi_app_request_duration_seconds_sum",
        &[],
        app.duration.sum,
    );
    text.sample(
        "wsgi_app_request_duration_seconds_count",
        &[],
        app.duration.count as f64,
    );
    text.family(
        "wsgi_app_workers",
        "gauge",
        "gunicorn worker processes alive.",
    );
    text.sample("wsgi_app_workers", &[], app.busy.len() as f64);
    text.family(
        "wsgi_app_workers_busy",
        "gauge",
        "Requests in flight over all gunicorn workers.",
    );
    text.sample("wsgi_app_workers_busy", &[], app.busy_total());
    text.family(
        "wsgi_app_log_messages_total",
        "counter",
        "Lines gunicorn logged, by level.",
    );
    for level in LOG_LEVELS {
        let count = app.log_messages.get(level).copied().unwrap_or(0.0);
        text.sample("wsgi_app_log_messages_total", &[("level", level)], count);
    }
    text.family(
        "wsgi_app_exporter_ignored_lines_total",
        "counter",
        "statsd lines the exporter did not recognise.",
    );
    text.sample(
        "wsgi_app_exporter_ignored_lines_total",
        &[],
        app.ignored_lines as f64,
    );
    if let Some(check) = check {
        text.family(
            "wsgi_app_up",
            "gauge",
            "1 if the app answered its index page as the nagios_* options expect.",
        );
        text.sample("wsgi_app_up", &[], if check.up { 1.0 } else { 0.0 });
        text.family(
            "wsgi_app_health_check_duration_seconds",
            "gauge",
            "How long the app took to answer that check.",
        );
        text.sample("wsgi_app_health_check_duration_seconds", &[], check.seconds);
    }
    if let Some(charm) = charm {
        render_charm(&mut text, charm);
    }
    text.0
}

fn render_charm(text: &mut Text, charm: &CharmMetrics) {
    text.family(
        "wsgi_app_build_info",
        "gauge",
        "The build gunicorn serves (1), with its label and archive SHA-256.",
    );
    if let Some(build) = &charm.serving {
        text.sample(
            "wsgi_app_build_info",
            &[("build_label", &build.label), ("sha256", &build.sha256)],
            1.0,
        );
    }
    text.family(
        "wsgi_app_switches_total",
        "counter",
        "Switches of the serving build or its environment since the unit was installed.",
    );
    text.sample("wsgi_app_switches_total", &[], charm.switches as f64);
    text.family(
        "wsgi_app_health_gate_failures_total",
        "counter",
        "Builds the health gate refused since the unit was installed.",
    );
    text.sample(
        "wsgi_app_health_gate_failures_total",
        &[],
        charm.health_gate_failures as f64,
    );
    text.family(
        "wsgi_app_build_install_duration_seconds",
        "gauge",
        "How long installing each installed build took.",
    );
    for (label, seconds) in &charm.install_seconds {
        text.sample(
            "wsgi_app_build_install_duration_seconds",
            &[("build_label", label)],
            *seconds,
        );
    }
    text.family(
        "wsgi_app_rollout_state",
        "gauge",
        "Where the application's rollout stands (1 for the current state).",
    );
    for state in <RolloutState as strum::VariantArray>::VARIANTS {
        let value = if *state == charm.rollout { 1.0 } else { 0.0 };
        text.sample(
            "wsgi_app_rollout_state",
            &[("state", state.as_ref())],
            value,
        );
    }
}

#[derive(Default)]
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        use std::fmt::Write;
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        use std::fmt::Write;
        self.0.push_str(name);
        if !labels.is_empty() {
            let pairs: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = write!(self.0, "{{{}}}", pairs.join(","));
        }
        let _ = writeln!(self.0, " {}", number(value));
    }
}

/// A label value as the format quotes it.
fn escape(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// A sample value as the format spells it (`+Inf`, not Rust's `inf`).
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::metrics::ServingBuild;

    #[test]
    fn the_page_has_every_family_and_quotes_labels() {
        let mut app = Aggregate::default();
        app.ingest("gunicorn.request.status.200:3|c\ngunicorn.request.duration:20|ms");
        app.ingest("wsgi_app.worker.busy.7:1|g");
        let charm = CharmMetrics {
            serving: Some(ServingBuild {
                label: "r\"2\\".into(),
                sha256: "ab".into(),
            }),
            switches: 4,
            rollout: RolloutState::Halted,
            install_seconds: [("r2".to_string(), 12.5)].into(),
            ..Default::default()
        };
        let page = render(
            &app,
            Some(&charm),
            Some(UpCheck {
                up: true,
                seconds: 0.003,
            }),
        );
        for line in [
            "wsgi_app_requests_total{status=\"200\"} 3",
            "wsgi_app_request_duration_seconds_bucket{le=\"0.025\"} 1",
            "wsgi_app_request_duration_seconds_bucket{le=\"0.01\"} 0",
            "wsgi_app_request_duration_seconds_bucket{le=\"+Inf\"} 1",
            "wsgi_app_request_duration_seconds_count 1",
            "wsgi_app_workers 1",
            "wsgi_app_workers_busy 1",
            "wsgi_app_log_messages_total{level=\"error\"} 0",
            "wsgi_app_up 1",
            r#"wsgi_app_build_info{build_label="r\"2\\",sha256="ab"} 1"#,
            "wsgi_app_switches_total 4",
            "wsgi_app_build_install_duration_seconds{build_label=\"r2\"} 12.5",
            "wsgi_app_rollout_state{state=\"halted\"} 1",
            "wsgi_app_rollout_state{state=\"in_progress\"} 0",
            "# TYPE wsgi_app_request_duration_seconds histogram",
        ] {
            assert!(
                page.lines().any(|l| l == line),
                "{line:?} missing in\n{page}"
            );
        }
    }

    #[test]
    fn without_the_charm_file_only_the_app_side_shows() {
        let page = render(&Aggregate::default(), None, None);
        assert!(page.contains("wsgi_app_requests_total"), "{page}");
        assert!(!page.contains("wsgi_app_build_info"), "{page}");
        assert!(!page.contains("wsgi_app_up"), "{page}");
    }

    #[test]
    fn numbers_are_spelled_as_prometheus_reads_them() {
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(1.0), "1");
        assert_eq!(number(0.005), "0.005");
    }
}
