//! Hostile relation data and config through the charm (the harness): values
//! with newlines, quotes, `$()`, backticks, NUL, control characters and
//! 1 MiB strings in every option and relation field the charm reads.
//!
//! For each one: the hook exits 0 (no error loop a remote application could
//! cause), nothing is executed (a marker file every injection payload would
//! create never appears), r1 keeps serving, status and log messages stay
//! small enough for a hook tool's argv, and each file the charm writes reads
//! back exactly what was meant (the env file through `read_env_file`, a URL
//! through a real URL parser, the NRPE command through `/bin/sh` after
//! NRPE's `$$` unescaping), or the input is refused with a message naming
//! the option or the relation.
//!
//! Why one file over 600 lines: one section per option and relation field,
//! sharing the hostile values and the checks above.

mod charm_support;
mod hardening_support;

use std::fs;
use std::path::Path;

use charm_support::*;
use hardening_support::*;
use harness::{bag, on, Context, Output, Relation, State};
use serde_json::json;
use wsgi_app::charm::relations::percent::decode_component;
use wsgi_app::charm::WsgiApp;
use wsgi_app::ops::{Bag, StatusName};
use wsgi_app::workload::envvars::{quote_for_config, read_env_file};

/// Hook tools take messages as arguments; Linux refuses one over 128 KiB.
const MAX_MESSAGE: usize = 16 * 1024;

fn env_of(state: &State) -> Vec<(String, String)> {
    read_env_file(&state.machine.path("/etc/wsgi-app/environment")).unwrap_or_default()
}

fn env_value(state: &State, name: &str) -> Option<String> {
    env_of(state)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn env_bytes(state: &State) -> Vec<u8> {
    fs::read(state.machine.path("/etc/wsgi-app/environment")).unwrap_or_default()
}

/// What every run must satisfy, whatever the input.
fn assert_safe(out: &Output, marker: &Marker, case: &str) {
    assert!(
        out.succeeded(),
        "{case}: the hook failed ({}); hostile input must not cause a hook error loop",
        out.failure_summary()
    );
    marker.assert_absent(case);
    assert_untouched_r1_or_serving(&out.state, case);
    for status in &out.unit_status_history {
        assert!(
            status.message.len() <= MAX_MESSAGE,
            "{case}: a {}-byte status message (hook tools take it as one argument)",
            status.message.len()
        );
    }
    for (_, line) in &out.logs {
        assert!(
            line.len() <= MAX_MESSAGE,
            "{case}: a {}-byte juju-log message",
            line.len()
        );
    }
}

fn assert_untouched_r1_or_serving(state: &State, case: &str) {
    assert_eq!(current_build(state), "r1", "{case}");
    assert_eq!(rollout(state, "serving").as_deref(), Some("r1"), "{case}");
    running_spec(state);
}

fn config_case(ctx: &Context<WsgiApp>, base: &State, option: &str, value: &str) -> Output {
    ctx.run(
        on::config_changed(),
        base.clone().with_config(option, value),
    )
    .unwrap()
}

fn short(text: &str) -> String {
    let mut s: String = text.chars().take(40).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    format!("{s:?}")
}

// --- environment_variables -------------------------------------------------

/// What /bin/sh makes of an assignment list the parser accepted (it promises
/// the same meaning, with nothing expanded). Only ever called on accepted
/// input, so a payload that expanded would show as the marker file.
fn sh_reads(text: &str, name: &str) -> String {
    let script = format!("{text}\nprintf '%s' \"${name}\"");
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .env_clear()
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn environment_variables_read_back_exactly_or_are_refused_by_name() {
    let ctx = context();
    let base = serving_r1(&ctx);
    let marker = Marker::new("envvars");
    let mut cases = 0;
    let mut refused = 0;
    for (what, payload) in payloads(&marker) {
        // Quoted as the docs say: every representable value is accepted.
        // Raw: whatever sh would do, or refused.
        let quoted = quote_for_config(&[("HOSTILE".to_string(), payload.clone())]);
        let raw = format!("HOSTILE={payload}");
        for (form, text) in [("quoted", quoted), ("raw", raw)] {
            cases += 1;
            let case = format!("environment_variables {form} {what} {}", short(&text));
            let before = env_bytes(&base);
            let out = config_case(&ctx, &base, "environment_variables", &text);
            assert_safe(&out, &marker, &case);
            let representable = !payload.contains('\0')
                && payload.len() <= wsgi_app::workload::envvars::MAX_VALUE_BYTES
                && !payload
                    .chars()
                    .any(|c| c.is_ascii_control() && !matches!(c, '\t' | '\n'));
            // The disk is shared along the test: a refusal is told by the
            // status, and must leave the file as it was.
            let blocked = out.state.unit_status.name == StatusName::Blocked;
            match (!blocked).then(|| env_value(&out.state, "HOSTILE")) {
                Some(value) => {
                    let value = value.unwrap_or_else(|| panic!("{case}: accepted but not written"));
                    if form == "quoted" {
                        assert_eq!(value, payload, "{case}");
                    } else {
                        assert_eq!(value, sh_reads(&text, "HOSTILE"), "{case}");
                        marker.assert_absent(&case);
                    }
                    assert_status(&out.state, StatusName::Active, "serving r1");
                }
                None => {
                    refused += 1;
                    assert!(
                        !(form == "quoted" && representable),
                        "{case}: a quoted representable value was refused: {}",
                        out.state.unit_status
                    );
                    assert_status(&out.state, StatusName::Blocked, "environment_variables");
                    assert_eq!(env_bytes(&out.state), before, "{case}: env file changed");
                }
            }
        }
    }
    // Invalid names and the relation-owned ones.
    for text in [
        "1X=a",
        "-X=a",
        "X-Y=a",
        "DATABASE_URL=postgresql://evil",
        "MONGO_URL=x",
        "MANAGER_SERVICE_URL=x",
        "X=1 X=2",
        "JUST_A_NAME",
        "=value",
        "X=\u{0}",
    ] {
        cases += 1;
        refused += 1;
        let out = config_case(&ctx, &base, "environment_variables", text);
        assert_safe(&out, &marker, text);
        assert_status(&out.state, StatusName::Blocked, "environment_variables");
    }
    record(
        "config environment_variables",
        cases,
        &format!("{} read back exactly; {refused} refused naming the option; nothing executed; r1 kept serving", cases - refused),
    );
}

// --- other options ------------------------------------------------------------

#[test]
fn every_string_option_is_refused_by_name_or_harmless() {
    let ctx = context();
    let base = serving_r1(&ctx);
    let marker = Marker::new("options");
    let options = [
        "build_label",
        "archive_filename",
        "code_assets_uri",
        "archive_sha256",
        "wsgi_application",
        "current_symlink",
        "requirements_path",
        "pip_cache_path",
        "apt_dependencies",
        "update_make_target",
        "nagios_context",
        "nagios_servicegroups",
        "nagios_index_path",
        "nagios_index_content",
        "manager_service_protocol",
        "rollout_max_unavailable",
        "ingress_hostname",
        "ingress_additional_hostnames",
        "ingress_paths",
    ];
    let mut cases = 0;
    for option in options {
        for (what, payload) in payloads(&marker) {
            cases += 1;
            let case = format!("{option} {what}");
            let out = config_case(&ctx, &base, option, &payload);
            assert_safe(&out, &marker, &case);
            let status = &out.state.unit_status;
            // Accepted values of these options are used verbatim and must
            // leave r1 serving (checked above); refused ones name the option.
            if status.name == StatusName::Blocked {
                assert!(
                    status.message.contains(option)
                        || status.message.contains("build ")
                        || status.message.contains("current_symlink"),
                    "{case}: {status}"
                );
            }
        }
    }
    for (option, value) in [
        ("listen_port", json!(-1)),
        ("listen_port", json!(0)),
        ("listen_port", json!(65536)),
        ("listen_port", json!(i64::MAX)),
        ("workers", json!(-5)),
        ("workers", json!(100000)),
        ("keep_builds", json!(0)),
        ("keep_builds", json!(-1)),
        ("nagios_expected_status", json!(99)),
        ("nagios_expected_status", json!(600)),
        ("nagios_expected_status", json!(-200)),
        ("nagios_expected_status", json!(i64::MIN)),
    ] {
        cases += 1;
        let case = format!("{option}={value}");
        let out = ctx
            .run(
                on::config_changed(),
                base.clone().with_config(option, value),
            )
            .unwrap();
        assert_safe(&out, &marker, &case);
        assert_status(&out.state, StatusName::Blocked, option);
    }
    record(
        "config: every other option",
        cases,
        "refused naming the option, or used verbatim; nothing executed; r1 kept serving",
    );
}

// --- pgsql ------------------------------------------------------------------

fn postgres_bag(field: &str, value: &str) -> Bag {
    let mut b = bag([
        ("host", "10.0.0.10"),
        ("port", "5432"),
        ("user", "wsgi_app_user"),
        ("password", "plain-password"),
        ("database", "wsgi-app"),
        ("state", "standalone"),
        ("allowed-units", "wsgi-app/0"),
    ]);
    b.insert(field.to_string(), value.to_string());
    b
}

fn relate(ctx: &Context<WsgiApp>, base: &State, relation: Relation) -> Output {
    let id = relation.id;
    let state = base.clone().with_relation(relation);
    let chain = ctx
        .chain(state)
        .relate(id)
        .unwrap_or_else(|e| panic!("relating failed: {e}"));
    chain.into_last()
}

#[test]
fn pgsql_fields_are_percent_encoded_exactly_or_refused() {
    let ctx = context();
    let base = serving_r1(&ctx);
    let marker = Marker::new("pgsql");
    let mut cases = 0;
    let mut encoded = 0;
    for field in ["user", "password", "host"] {
        for (what, payload) in host_payloads(&marker) {
            if payload.trim().is_empty() {
                continue;
            }
            cases += 1;
            let case = format!("pgsql {field} {what}");
            let out = relate(
                &ctx,
                &base,
                Relation::new(3, "pgsql", "postgresql")
                    .with_remote_unit_data(0, postgres_bag(field, &payload)),
            );
            assert_safe(&out, &marker, &case);
            match env_value(&out.state, "DATABASE_URL") {
                Some(url) if field == "host" && payload.contains("%eth0") => {
                    // RFC 6874 zone id; the url crate does not read those.
                    encoded += 1;
                    assert!(url.contains("@[fe80::1%25eth0]:5432/"), "{case}: {url}");
                }
                Some(url) => {
                    encoded += 1;
                    let parsed = url::Url::parse(&url)
                        .unwrap_or_else(|e| panic!("{case}: {url:?} does not parse: {e}"));
                    let got = match field {
                        "user" => decode_component(parsed.username()),
                        "password" => decode_component(parsed.password().unwrap()),
                        _ => {
                            // Hosts: IPv6 in brackets, names percent-encoded.
                            let authority = url.split('@').nth(1).unwrap();
                            let host = authority.rsplit_once(':').unwrap().0;
                            let host = host.trim_start_matches('[').trim_end_matches(']');
                            decode_component(&host.replace("%25", "%"))
                                .or_else(|| decode_component(host))
                        }
                    };
                    if field != "host" || !payload.contains("::") {
                        assert_eq!(got.as_deref(), Some(payload.trim()), "{case}");
                    }
                    assert!(
                        !url.contains(['\n', '\r', '\0', ' ', '"', '`', '$']),
                        "{case}"
                    );
                }
                None => {
                    let status = &out.state.unit_status;
                    assert!(
                        status.message.contains("DATABASE_URL")
                            || status.message.contains("postgresql"),
                        "{case}: refused without saying why: {status}"
                    );
                }
            }
        }
    }
    for (what, payload) in port_payloads(&marker) {
        cases += 1;
        let case = format!("pgsql port {what}");
        let out = relate(
            &ctx,
            &base,
            Relation::new(3, "pgsql", "postgresql")
                .with_remote_unit_data(0, postgres_bag("port", &payload)),
        );
        assert_safe(&out, &marker, &case);
        assert_eq!(env_value(&out.state, "DATABASE_URL"), None, "{case}");
        assert_status(&out.state, StatusName::Waiting, "valid port");
    }
    for (what, payload) in payloads(&marker) {
        for field in [
            "database",
            "state",
            "allowed-units",
            "allowed-subnets",
            "master",
        ] {
            cases += 1;
            let case = format!("pgsql {field} {what}");
            let mut data = postgres_bag(field, &payload);
            if field == "allowed-subnets" || field == "master" {
                data.remove("allowed-units");
                data.remove("host");
            }
            let out = relate(
                &ctx,
                &base,
                Relation::new(3, "pgsql", "postgresql").with_remote_unit_data(0, data),
            );
            assert_safe(&out, &marker, &case);
            assert_eq!(env_value(&out.state, "DATABASE_URL"), None, "{case}");
            assert_eq!(
                out.state.unit_status.name,
                StatusName::Waiting,
                "{case}: {}",
                out.state.unit_status
            );
        }
    }
    record(
        "pgsql relation data",
        cases,
        &format!("{encoded} percent-encoded into DATABASE_URL and parsed back exactly; the rest Waiting or Blocked naming DATABASE_URL/PostgreSQL; nothing executed; r1 kept serving"),
    );
}

// --- mongodb ------------------------------------------------------------------

#[test]
fn mongodb_hosts_ports_and_replica_sets_are_checked_or_encoded() {
    let ctx = context();
    let base = serving_r1(&ctx);
    let marker = Marker::new("mongo");
    let mut cases = 0;
    let mut used = 0;
    let run = |data: Bag, case: &str| -> Output {
        let out = relate(
            &ctx,
            &base,
            Relation::new(5, "mongodb", "mongodb").with_remote_unit_data(0, data),
        );
        assert_safe(&out, &marker, case);
        out
    };
    for (what, payload) in host_payloads(&marker) {
        cases += 1;
        let case = format!("mongodb hostname {what}");
        let out = run(
            bag([("hostname", payload.as_str()), ("port", "27017")]),
            &case,
        );
        match env_value(&out.state, "MONGO_URL") {
            Some(url) => {
                used += 1;
                assert!(url.starts_with("mongodb://"), "{case}");
                assert!(
                    !url.contains(['\n', '\r', '\0', ' ', '"', '`', '$', ';']),
                    "{case}: {url:?}"
                );
            }
            None => assert!(
                out.state.unit_status.name == StatusName::Waiting
                    || out.state.unit_status.message.contains("MONGO_URL"),
                "{case}: {}",
                out.state.unit_status
            ),
        }
    }
    for (what, payload) in port_payloads(&marker) {
        cases += 1;
        let case = format!("mongodb port {what}");
        let out = run(
            bag([("hostname", "10.0.0.21"), ("port", payload.as_str())]),
            &case,
        );
        assert_eq!(env_value(&out.state, "MONGO_URL"), None, "{case}");
        assert_status(&out.state, StatusName::Waiting, "mongodb");
    }
    for (what, payload) in payloads(&marker) {
        cases += 1;
        let case = format!("mongodb replset {what}");
        let out = run(
            bag([
                ("hostname", "10.0.0.21"),
                ("port", "27017"),
                ("replset", payload.as_str()),
            ]),
            &case,
        );
        match env_value(&out.state, "MONGO_URL") {
            Some(url) => {
                used += 1;
                let set = url.split("replicaSet=").nth(1).unwrap_or_default();
                if !payload.trim().is_empty() {
                    assert_eq!(
                        decode_component(set).as_deref(),
                        Some(payload.trim()),
                        "{case}"
                    );
                }
            }
            None => assert!(
                out.state.unit_status.message.contains("MONGO_URL"),
                "{case}: {}",
                out.state.unit_status
            ),
        }
    }
    record(
        "mongodb relation data",
        cases,
        &format!("{used} used (hosts checked, replica set percent-encoded, read back exactly); the rest ignored with Waiting or Blocked naming MONGO_URL; nothing executed"),
    );
}

// --- manager-service ------------------------------------------------------------

#[test]
fn manager_service_hosts_must_be_host_names() {
    let ctx = context();
    let base = serving_r1(&ctx);
    let marker = Marker::new("manager");
    let mut cases = 0;
    let mut used = 0;
    for key in ["hostname", "private-address"] {
        for (what, payload) in host_payloads(&marker) {
            cases += 1;
            let case = format!("manager-service {key} {what}");
            let mut data = bag([("port", "8000")]);
            data.insert(key.to_string(), payload.clone());
            let out = relate(
                &ctx,
                &base,
                Relation::new(7, "manager-service", "manager").with_remote_unit_data(0, data),
            );
            assert_safe(&out, &marker, &case);
            match env_value(&out.state, "MANAGER_SERVICE_URL") {
                Some(url) => {
                    used += 1;
                    let parsed = url::Url::parse(&url)
                        .unwrap_or_else(|e| panic!("{case}: {url:?} is not a URL: {e}"));
                    assert_eq!(parsed.port(), Some(8000), "{case}");
                    assert!(
                        !url.contains(['\n', '\r', '\0', ' ', '"', '`', '$', ';', '\'', '\\']),
                        "{case}: {url:?}"
                    );
                }
                None => assert_eq!(out.state.unit_status.name, StatusName::Waiting, "{case}"),
            }
        }
    }
    for (what, payload) in port_payloads(&marker) {
        cases += 1;
        let case = format!("manager-service port {what}");
        let out = relate(
            &ctx,
            &base,
            Relation::new(7, "manager-service", "manager").with_remote_unit_data(
                0,
                bag([
                    ("hostname", "manager.example.com"),
                    ("port", payload.as_str()),
                ]),
            ),
        );
        assert_safe(&out, &marker, &case);
        assert_eq!(env_value(&out.state, "MANAGER_SERVICE_URL"), None, "{case}");
    }
    record(
        "manager-service relation data",
        cases,
        &format!("{used} used as plain host names; the rest ignored (Waiting for an address); nothing executed"),
    );
}

// --- haproxy-route and ingress ------------------------------------------------

/// The URL a proxy answers reaches the status, list-builds and (its path,
/// on ingress) the environment file as SCRIPT_NAME: hostile answers are
/// refused naming the relation, or carried literally.
#[test]
fn proxy_answers_are_refused_naming_the_relation_or_carried_literally() {
    let ctx = context();
    let base = serving_r1(&ctx);
    let marker = Marker::new("proxy");
    let mut cases = 0;
    let mut prefixes = 0;
    for (what, payload) in host_payloads(&marker) {
        let url = format!("https://lb.example.com/{payload}/");
        let answers = [
            (
                "ingress url",
                Relation::new(6, "ingress", "haproxy")
                    .with_remote_app_data(bag([("ingress", json!({ "url": url }).to_string())])),
            ),
            (
                "ingress raw",
                Relation::new(6, "ingress", "haproxy")
                    .with_remote_app_data(bag([("ingress", payload.as_str())])),
            ),
            (
                "haproxy-route endpoints",
                Relation::new(4, "haproxy-route", "haproxy")
                    .with_remote_app_data(bag([("endpoints", json!([url]).to_string())])),
            ),
        ];
        for (field, relation) in answers {
            cases += 1;
            let case = format!("{field} {what}");
            let out = relate(&ctx, &base, relation);
            assert_safe(&out, &marker, &case);
            let status = &out.state.unit_status;
            match env_value(&out.state, "SCRIPT_NAME") {
                Some(prefix) => {
                    prefixes += 1;
                    // The URL's path, without its query or fragment.
                    assert!(
                        url.starts_with(&format!("https://lb.example.com{prefix}")),
                        "{case}: {prefix:?}"
                    );
                    assert!(!prefix.contains(['?', '#']), "{case}: {prefix:?}");
                    assert!(status.message.contains(&url), "{case}: {status}");
                }
                None if status.name == StatusName::Blocked => assert!(
                    status.message.contains("ingress:6")
                        || status.message.contains("haproxy-route:4"),
                    "{case}: {status}"
                ),
                None => assert!(status.message.contains("serving r1"), "{case}: {status}"),
            }
        }
    }
    record(
        "haproxy-route and ingress answers",
        cases,
        &format!(
            "{prefixes} carried literally as SCRIPT_NAME; the rest refused naming the relation; nothing executed"
        ),
    );
}

// --- nrpe --------------------------------------------------------------------

const NRPE_FILE: &str = "/etc/nagios/nrpe.d/check_wsgi-app_http.cfg";

/// Run an NRPE command line as NRPE does: `$$` → `$`, then `/bin/sh -c`,
/// with the plugin replaced by a script that records its arguments.
fn nrpe_argv(command_file: &str, work: &Path) -> Vec<String> {
    let line = command_file
        .lines()
        .find_map(|l| l.strip_prefix("command[check_wsgi-app_http]="))
        .expect("a command line");
    let unescaped = line.replace("$$", "$");
    let plugin = "/usr/lib/nagios/plugins/check_http";
    assert!(unescaped.starts_with(plugin), "{unescaped}");
    let recorder = work.join("record-args");
    let args_file = work.join("args");
    fs::write(
        &recorder,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done > '{}'\n",
            args_file.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&recorder, fs::Permissions::from_mode(0o755)).unwrap();
    let command = format!("{}{}", recorder.display(), &unescaped[plugin.len()..]);
    let status = std::process::Command::new("sh")
        .args(["-c", &command])
        .env_clear()
        .status()
        .unwrap();
    assert!(status.success(), "{command}");
    let raw = fs::read(&args_file).unwrap();
    raw.split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8(a.to_vec()).unwrap())
        .collect()
}

fn nrpe_relation(hostname: &str) -> Relation {
    Relation::new(11, "nrpe-external-master", "nrpe")
        .with_remote_unit_data(0, bag([("nagios_hostname", hostname)]))
}

#[test]
fn nrpe_command_lines_carry_hostile_options_literally() {
    let ctx = context();
    let marker = Marker::new("nrpe");
    let work = tempfile::tempdir().unwrap();
    let base = serving_r1(&ctx);
    fs::create_dir_all(base.machine.path("/var/lib/nagios/export")).unwrap();
    let base = ctx
        .chain(base.with_relation(nrpe_relation("juju-host-0")))
        .relate(11)
        .unwrap()
        .into_state();
    let mut cases = 0;
    let mut executed_checked = 0;
    for option in ["nagios_index_content", "nagios_index_path"] {
        for (what, payload) in payloads(&marker) {
            let value = if option == "nagios_index_path" {
                format!("/{payload}")
            } else {
                payload.clone()
            };
            cases += 1;
            let case = format!("{option} {what}");
            let before = fs::read_to_string(base.machine.path(NRPE_FILE)).unwrap();
            let out = config_case(&ctx, &base, option, &value);
            assert_safe(&out, &marker, &case);
            let after = fs::read_to_string(out.state.machine.path(NRPE_FILE)).unwrap();
            // Blocked either refuses the option (naming it), or accepts it and
            // reports that the app's page does not match it (the health probe).
            // Every problem is logged, so a refusal naming the option is
            // found even when the status shows another problem first.
            let refused = out.state.unit_status.name == StatusName::Blocked
                && (out.state.unit_status.message.contains(option)
                    || out.logs.iter().any(|(_, line)| line.contains(option)));
            if refused {
                assert!(before == after, "{case}: refused, yet the command changed");
                continue;
            }
            let argv = nrpe_argv(&after, work.path());
            marker.assert_absent(&case);
            executed_checked += 1;
            let flag = if option == "nagios_index_path" {
                "-u"
            } else {
                "-s"
            };
            let at = argv
                .iter()
                .position(|a| a == flag)
                .unwrap_or_else(|| panic!("{case}: {argv:?}"));
            assert_eq!(argv[at + 1], value, "{case}");
        }
    }
    for (what, payload) in host_payloads(&marker) {
        cases += 1;
        let case = format!("nrpe nagios_hostname {what}");
        let etc_before: Vec<_> = snapshot(&base.machine.path("/etc")).into_keys().collect();
        let state = base.clone().update_remote_unit_data(
            11,
            0,
            bag([("nagios_hostname", payload.as_str())]),
        );
        let out = ctx.run(on::relation_changed(11, Some(0)), state).unwrap();
        assert_safe(&out, &marker, &case);
        if out.state.unit_status.name == StatusName::Blocked {
            assert!(
                out.state.unit_status.message.contains("nagios_hostname"),
                "{case}"
            );
        }
        // Files only where they belong, named only with Nagios-safe names.
        let etc_after: Vec<_> = snapshot(&out.state.machine.path("/etc"))
            .into_keys()
            .collect();
        assert_eq!(etc_after, etc_before, "{case}");
        for path in snapshot(&out.state.machine.path("/var/lib/nagios")).into_keys() {
            let name = path.to_string_lossy().into_owned();
            assert!(
                name == "export"
                    || (name.starts_with("export/service__")
                        && name.ends_with("_check_wsgi-app_http.cfg")
                        && !name[7..].contains('/')
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"/._-@".contains(&b))),
                "{case}: {name}"
            );
        }
    }
    for (option, value) in [
        ("nagios_context", "ctx;rm -rf /"),
        ("nagios_context", "a b"),
        ("nagios_context", "../../x"),
        ("nagios_servicegroups", "web;$(id)"),
        ("nagios_servicegroups", "web,ev\nil"),
        ("nagios_servicegroups", "web!x"),
    ] {
        cases += 1;
        let out = config_case(&ctx, &base, option, value);
        assert_safe(&out, &marker, option);
        assert_status(&out.state, StatusName::Blocked, option);
    }
    record(
        "nrpe: nagios_* options and nagios_hostname",
        cases,
        &format!("{executed_checked} command lines run through sh -c (after $$ unescaping) gave check_http exactly the configured text; the rest refused naming the option or nagios_hostname; nothing executed; no file outside the NRPE and export directories"),
    );
}

// --- actions -----------------------------------------------------------------

#[test]
fn action_labels_that_are_paths_or_payloads_are_refused() {
    let ctx = context();
    let base = serving_r1(&ctx);
    let marker = Marker::new("action");
    let mut cases = 0;
    let mut labels: Vec<String> = vec![
        "../../etc".into(),
        "/etc".into(),
        "r1/../../etc".into(),
        "..".into(),
        ".".into(),
        "current".into(),
        "r1/".into(),
        " r1/../x".into(),
    ];
    labels.extend(payloads(&marker).into_iter().map(|(_, p)| p));
    for label in labels {
        cases += 1;
        let case = format!("set-current-symlink symlink={}", short(&label));
        let root_before = snapshot(base.machine.root());
        let out = ctx
            .run(
                on::action("set-current-symlink", json!({ "symlink": label })),
                base.clone(),
            )
            .unwrap();
        marker.assert_absent(&case);
        let failure = out.action.as_ref().and_then(|a| a.failure.clone());
        let failure = failure.unwrap_or_else(|| panic!("{case} was not refused"));
        assert!(
            failure.contains("is not a build label")
                || failure.contains("names a symlink")
                || failure.contains("not installed"),
            "{case}: {failure}"
        );
        assert!(
            failure.len() <= MAX_MESSAGE,
            "{case}: {}-byte failure message",
            failure.len()
        );
        assert_untouched_r1(&out.state);
        assert_eq!(rollout(&out.state, "pinned"), None, "{case}");
        let changes = changes_outside(&root_before, &snapshot(out.state.machine.root()), &[]);
        assert!(changes.is_empty(), "{case}: {changes:?}");
    }
    record(
        "action labels (set-current-symlink)",
        cases,
        "refused (\"is not a build label\"); nothing on the machine changed; r1 kept serving",
    );
}
