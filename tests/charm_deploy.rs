//! The charm deploying and serving builds, driven through the harness:
//! every option's effect, every archive format, and every failure path,
//! each showing that the build already serving is untouched.
//!
//! Why one file over 600 lines: one test per option, archive format and
//! failure path of a deploy, all on the same harness setup (charm_support).

mod charm_support;

use std::fs;
use std::path::Path;

use charm_support::*;
use harness::{failure, on, output, Context, State, WORKSPACE_CHARM_DIR};
use serde_json::json;
use wsgi_app::charm::WsgiApp;
use wsgi_app::ops::StatusName;

#[test]
fn initial_hooks_install_r1_and_serve_it() {
    let ctx = context();
    let state = State::new()
        .with_leader(true)
        .with_config("build_label", "r1");
    let chain = ctx.run_initial_hooks(state).expect("hooks succeed");
    let state = chain.state();
    assert_status(state, StatusName::Active, "serving r1 on :8080");
    let code = state
        .machine
        .path("/srv/wsgi-app/builds/r1/code/example_wsgi.py");
    assert!(fs::read_to_string(code).unwrap().contains("REVISION = 1"));
    assert_eq!(current_build(state), "r1");
    assert!(state
        .opened_ports
        .iter()
        .any(|p| p.to_string() == "8080/tcp"));
    assert!(state.service_fingerprint("wsgi-app").is_some());
    let manifest =
        fs::read_to_string(state.machine.path("/srv/wsgi-app/builds/r1/build.json")).unwrap();
    assert!(manifest.contains(R1_SHA256), "{manifest}");
    // The venv and the tested gunicorn were asked for, with pip (uv is
    // absent here).
    let commands = command_lines(chain.last());
    assert!(
        commands.is_empty(),
        "start re-installed something: {commands:?}"
    );
    let all: Vec<String> = chain.outputs().iter().flat_map(command_lines).collect();
    assert!(
        all.iter().any(|c| c.starts_with("python3 -m venv ")),
        "{all:?}"
    );
    assert!(
        all.iter()
            .any(|c| c.contains("-m pip install") && c.ends_with(" gunicorn==27.0.1")),
        "{all:?}"
    );
}

#[test]
fn without_a_build_label_the_unit_says_what_to_set() {
    let ctx = context();
    let chain = ctx
        .run_initial_hooks(State::new().with_leader(true))
        .unwrap();
    assert_status(chain.state(), StatusName::Blocked, "set build_label");
}

#[test]
fn a_second_build_installs_beside_the_first_and_latest_moves_to_it() {
    let ctx = context();
    let state = serving_r1(&ctx);
    let out = ctx
        .run(on::config_changed(), state.with_config("build_label", "r2"))
        .unwrap();
    assert!(out.succeeded());
    assert_status(&out.state, StatusName::Active, "serving r2 on :8080");
    assert_eq!(current_build(&out.state), "r2");
    assert!(out
        .state
        .machine
        .path("/srv/wsgi-app/builds/r1/code")
        .is_dir());
    assert_eq!(
        fs::read_link(out.state.machine.path("/srv/wsgi-app/latest")).unwrap(),
        Path::new("builds/r2")
    );
}

#[test]
fn a_checksum_mismatch_is_refused_and_r1_keeps_serving() {
    let ctx = context();
    let state = serving_r1(&ctx)
        .with_config("build_label", "r2")
        .with_config("archive_sha256", "0".repeat(64));
    let out = ctx.run(on::config_changed(), state).unwrap();
    assert!(
        out.succeeded(),
        "a bad checksum is the operator's to fix, not a hook error"
    );
    assert_status(&out.state, StatusName::Blocked, "archive_sha256");
    assert_status(&out.state, StatusName::Blocked, "serving r1");
    assert_untouched_r1(&out.state);
}

#[test]
fn the_right_checksum_is_accepted() {
    let ctx = context();
    let state = State::new()
        .with_leader(true)
        .with_config("build_label", "r1")
        .with_config("archive_sha256", R1_SHA256.to_uppercase());
    let chain = ctx.run_initial_hooks(state).unwrap();
    assert_status(chain.state(), StatusName::Active, "serving r1");
}

#[test]
fn a_bad_archive_is_refused_and_r1_keeps_serving() {
    let charm = CharmDir::new();
    charm.add_file(
        "bad",
        "example-wsgi-app.tar.bzip2",
        b"this is not bzip2 at all",
    );
    let ctx = charm.context();
    let state = serving_r1(&ctx).with_config("build_label", "bad");
    let out = ctx.run(on::config_changed(), state).unwrap();
    assert!(out.succeeded());
    assert_status(&out.state, StatusName::Blocked, "build bad");
    assert_untouched_r1(&out.state);
    assert!(!out.state.machine.path("/srv/wsgi-app/builds/bad").exists());
    assert_no_staging_left(&out.state);
}

#[test]
fn a_hostile_archive_is_refused_naming_the_entry() {
    let charm = CharmDir::new();
    charm.add_archive(
        "evil",
        "example-wsgi-app.tar.gz",
        &[("../../etc/evil", b"x")],
    );
    let ctx = charm.context();
    let state = serving_r1(&ctx)
        .with_config("build_label", "evil")
        .with_config("archive_filename", "example-wsgi-app.tar.gz");
    let out = ctx.run(on::config_changed(), state).unwrap();
    assert_status(
        &out.state,
        StatusName::Blocked,
        "escapes the build directory",
    );
    assert!(!out.state.machine.path("/etc/evil").exists());
    assert!(!out.state.machine.path("/srv/etc/evil").exists());
    assert_untouched_r1(&out.state);
}

#[test]
fn a_label_the_charm_does_not_ship_says_how_to_get_it() {
    let ctx = context();
    let state = serving_r1(&ctx).with_config("build_label", "r9");
    let out = ctx.run(on::config_changed(), state).unwrap();
    assert_status(
        &out.state,
        StatusName::Blocked,
        "files/r9/example-wsgi-app.tar.bzip2",
    );
    assert_untouched_r1(&out.state);
}

#[test]
fn a_download_from_a_dead_server_is_refused_and_r1_keeps_serving() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accept and never answer: the download must time out.
    let _server = std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().take(4).collect();
        std::thread::sleep(std::time::Duration::from_secs(10));
        drop(held);
    });
    let ctx = context();
    let state = serving_r1(&ctx)
        .with_config("build_label", "r2")
        .with_config("code_assets_uri", format!("http://127.0.0.1:{port}/builds"));
    let out = ctx.run(on::config_changed(), state).unwrap();
    assert_status(&out.state, StatusName::Blocked, "timed out");
    assert_untouched_r1(&out.state);
}

#[test]
fn a_build_downloaded_from_code_assets_uri_installs() {
    let archive =
        fs::read(Path::new(WORKSPACE_CHARM_DIR).join("files/r2/example-wsgi-app.tar.bzip2"))
            .unwrap();
    let server = serve_once(archive);
    let ctx = context();
    let state = serving_r1(&ctx)
        .with_config("build_label", "r2")
        .with_config("code_assets_uri", server.url.as_str());
    let out = ctx.run(on::config_changed(), state).unwrap();
    assert_status(&out.state, StatusName::Active, "serving r2");
    let manifest =
        fs::read_to_string(out.state.machine.path("/srv/wsgi-app/builds/r2/build.json")).unwrap();
    assert!(
        manifest.contains("/r2/example-wsgi-app.tar.bzip2"),
        "{manifest}"
    );
}

fn r2_archive() -> Vec<u8> {
    fs::read(Path::new(WORKSPACE_CHARM_DIR).join("files/r2/example-wsgi-app.tar.bzip2")).unwrap()
}

/// Everything the unit showed or logged during a dispatch.
fn everything_shown(out: &harness::Output) -> String {
    let statuses = out.unit_status_history.iter().map(|s| s.message.clone());
    let logs = out.logs.iter().map(|(_, line)| line.clone());
    statuses.chain(logs).collect::<Vec<_>>().join("\n")
}

#[test]
fn a_build_is_downloaded_through_the_models_proxy() {
    let proxy = serve_once(r2_archive());
    let ctx = context();
    // assets.invalid resolves nowhere: only the proxy can fetch from it.
    let state = serving_r1(&ctx)
        .with_model_config("juju-http-proxy", proxy.origin.as_str())
        .with_config("build_label", "r2")
        .with_config("code_assets_uri", "http://assets.invalid/builds");
    let out = ctx.run(on::config_changed(), state).unwrap();
    assert_status(&out.state, StatusName::Active, "serving r2");
    assert_eq!(
        proxy.request_lines(),
        ["GET http://assets.invalid/builds/r2/example-wsgi-app.tar.bzip2 HTTP/1.1"]
    );
}

#[test]
fn a_host_in_juju_no_proxy_is_downloaded_directly() {
    let origin = serve_once(r2_archive());
    // Serves the archive too, so only its record tells a wrong route.
    let proxy = serve_once(r2_archive());
    let ctx = context();
    let state = serving_r1(&ctx)
        .with_model_config("juju-http-proxy", proxy.origin.as_str())
        // Juju's default juju-no-proxy.
        .with_model_config("juju-no-proxy", "127.0.0.1,localhost,::1")
        .with_config("build_label", "r2")
        .with_config("code_assets_uri", origin.url.as_str());
    let out = ctx.run(on::config_changed(), state).unwrap();
    assert_status(&out.state, StatusName::Active, "serving r2");
    assert_eq!(
        origin.request_lines(),
        ["GET /builds/r2/example-wsgi-app.tar.bzip2 HTTP/1.1"]
    );
    assert_eq!(proxy.request_lines(), Vec::<String>::new());
}

#[test]
fn a_malformed_model_proxy_blocks_the_build_naming_it_and_r1_keeps_serving() {
    let origin = serve_once(r2_archive());
    let ctx = context();
    let state = serving_r1(&ctx)
        .with_model_config(
            "juju-http-proxy",
            "http://deploy:hunter2@squid.internal:99999",
        )
        .with_config("build_label", "r2")
        .with_config("code_assets_uri", origin.url.as_str());
    let out = ctx.run(on::config_changed(), state).unwrap();
    assert!(out.succeeded(), "{}", out.failure_summary());
    assert_status(
        &out.state,
        StatusName::Blocked,
        "JUJU_CHARM_HTTP_PROXY (the model's juju-http-proxy) \"http://squid.internal:99999\" \
         is not a usable proxy URL: invalid port number",
    );
    assert_status(&out.state, StatusName::Blocked, "serving r1");
    assert_untouched_r1(&out.state);
    assert!(!out.state.machine.path("/srv/wsgi-app/builds/r2").exists());
    assert_eq!(origin.request_lines(), Vec::<String>::new());
    let shown = everything_shown(&out);
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[test]
fn a_download_failing_through_the_proxy_names_it_without_its_credentials() {
    let archive = r2_archive();
    let whole = archive.len();
    // Every attempt through the proxy breaks off after 10 bytes.
    let proxy = serve_cut_short(archive, 10, 4);
    let ctx = context();
    let state = serving_r1(&ctx)
        .with_model_config(
            "juju-http-proxy",
            proxy.origin.replace("http://", "http://deploy:hunter2@"),
        )
        .with_config("build_label", "r2")
        .with_config("code_assets_uri", "http://assets.invalid/builds");
    let out = ctx.run(on::config_changed(), state).unwrap();
    assert_status(
        &out.state,
        StatusName::Blocked,
        &format!(
            "download of http://assets.invalid/builds/r2/example-wsgi-app.tar.bzip2 \
             through proxy {}/ failed: the connection closed after 10 of {whole} bytes",
            proxy.origin
        ),
    );
    assert_untouched_r1(&out.state);
    assert!(!proxy.request_lines().is_empty());
    let shown = everything_shown(&out);
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(!shown.contains("deploy@"), "{shown}");
}

#[test]
fn a_failing_make_target_is_refused_and_r1_keeps_serving() {
    let mut ctx = context();
    let state = serving_r1(&ctx)
        .with_config("build_label", "r2")
        .with_config("update_make_target", "migrate");
    ctx.on_command(
        "make",
        failure(2, "make: *** No rule to make target 'migrate'.  Stop."),
    );
    let out = ctx.run(on::config_changed(), state).unwrap();
    assert_status(&out.state, StatusName::Blocked, "make migrate failed");
    assert_status(&out.state, StatusName::Blocked, "No rule to make target");
    assert_untouched_r1(&out.state);
    assert!(!out.state.machine.path("/srv/wsgi-app/builds/r2").exists());
}

#[test]
fn make_runs_in_the_build_with_the_apps_environment() {
    let ctx = context();
    let state = serving_r1(&ctx)
        .with_config("build_label", "r2")
        .with_config("update_make_target", "migrate")
        .with_config("environment_variables", "GREETING=\"hello world\"");
    let out = ctx.run(on::config_changed(), state).unwrap();
    let make = out
        .commands
        .iter()
        .find(|c| c.program == "make")
        .expect("make ran");
    assert!(make
        .args
        .ends_with(&["--".to_string(), "migrate".to_string()]));
    assert!(make.env_is_secret, "the app environment may hold secrets");
    assert!(make.env.iter().any(|(k, _)| k == "GREETING"));
    assert_status(&out.state, StatusName::Active, "serving r2");
}

#[test]
fn a_missing_requirements_file_names_the_option() {
    let ctx = context();
    let state = serving_r1(&ctx)
        .with_config("build_label", "r2")
        .with_config("requirements_path", "requirements.txt");
    let out = ctx.run(on::config_changed(), state).unwrap();
    assert_status(&out.state, StatusName::Blocked, "requirements_path");
    assert_untouched_r1(&out.state);
}

#[test]
fn requirements_install_offline_from_the_pip_cache_with_uv_when_present() {
    let charm = CharmDir::new();
    charm.add_archive(
        "r5",
        "app.tar.gz",
        &[
            ("example_wsgi.py", b"application = None\n"),
            ("requirements.txt", b"flask\n"),
            ("wheels/README", b"wheels go here\n"),
        ],
    );
    let mut ctx = charm.context();
    ctx.program_present("uv");
    let state = State::new()
        .with_leader(true)
        .with_config("build_label", "r5")
        .with_config("archive_filename", "app.tar.gz")
        .with_config("requirements_path", "requirements.txt")
        .with_config("pip_cache_path", "wheels");
    let chain = ctx.run_initial_hooks(state).unwrap();
    let all: Vec<String> = chain.outputs().iter().flat_map(command_lines).collect();
    let install = all
        .iter()
        .find(|c| c.contains("pip install"))
        .unwrap_or_else(|| panic!("no install in {all:?}"));
    assert!(install.starts_with("uv pip install"), "{install}");
    assert!(install.contains("--no-index --find-links "), "{install}");
    assert!(install.contains("/wheels "), "{install}");
    assert!(install.contains(" -r "), "{install}");
    assert_status(chain.state(), StatusName::Active, "serving r5");
}

#[test]
fn every_archive_format_installs() {
    for name in [
        "app.tar.gz",
        "app.tgz",
        "app.tar.bz2",
        "app.tar.bzip2",
        "app.tar.xz",
        "app.tar",
        "app.zip",
    ] {
        let charm = CharmDir::new();
        charm.add_archive(
            "r7",
            name,
            &[("pkg/example_wsgi.py", b"application = None\n")],
        );
        let ctx = charm.context();
        let state = State::new()
            .with_leader(true)
            .with_config("build_label", "r7")
            .with_config("archive_filename", name);
        let chain = ctx.run_initial_hooks(state).unwrap();
        assert_status(chain.state(), StatusName::Active, "serving r7");
        assert!(
            chain
                .state()
                .machine
                .path("/srv/wsgi-app/builds/r7/code/pkg/example_wsgi.py")
                .is_file(),
            "{name}"
        );
    }
}

#[test]
fn an_unknown_archive_ending_names_the_option() {
    let ctx = context();
    let state = serving_r1(&ctx)
        .with_config("build_label", "r2")
        .with_config("archive_filename", "app.rar");
    let out = ctx.run(on::config_changed(), state).unwrap();
    assert_status(&out.state, StatusName::Blocked, "archive_filename");
    assert_untouched_r1(&out.state);
}

#[test]
fn an_unknown_current_symlink_names_the_installed_builds() {
    let ctx = context();
    let state = serving_r1(&ctx).with_config("current_symlink", "r8");
    let out = ctx.run(on::config_changed(), state).unwrap();
    assert_status(
        &out.state,
        StatusName::Blocked,
        "build r8 is not installed; installed builds: r1",
    );
    assert_untouched_r1(&out.state);
}

#[test]
fn invalid_options_are_blocked_with_the_fix_and_exit_zero() {
    let cases: &[(&str, serde_json::Value, &str)] = &[
        (
            "listen_port",
            json!(80),
            "listen_port: must be from 1024 to 65535",
        ),
        ("workers", json!(-1), "workers"),
        ("build_label", json!("../../etc"), "build_label"),
        ("current_symlink", json!("a/b"), "current_symlink"),
        ("code_assets_uri", json!("ftp://x"), "code_assets_uri"),
        (
            "archive_sha256",
            json!("abc"),
            "archive_sha256: must be 64 hex digits",
        ),
        (
            "wsgi_application",
            json!("app:obj.attr"),
            "wsgi_application",
        ),
        ("requirements_path", json!("../x"), "requirements_path"),
        ("apt_dependencies", json!("ok bad;pkg"), "apt_dependencies"),
        (
            "environment_variables",
            json!("A=\"unterminated"),
            "environment_variables",
        ),
        ("environment_variables", json!("DATABASE_URL=x"), "pgsql"),
        ("update_make_target", json!("-rf /"), "update_make_target"),
        ("nagios_index_path", json!("index"), "nagios_index_path"),
        (
            "nagios_expected_status",
            json!(99),
            "nagios_expected_status",
        ),
        (
            "manager_service_protocol",
            json!("ftp"),
            "manager_service_protocol",
        ),
        ("keep_builds", json!(1), "keep_builds"),
    ];
    let ctx = context();
    let base = serving_r1(&ctx);
    for (option, value, expected) in cases {
        let out = ctx
            .run(
                on::config_changed(),
                base.clone().with_config(*option, value.clone()),
            )
            .unwrap();
        assert!(
            out.succeeded(),
            "{option}: a config error must not fail the hook"
        );
        assert_status(&out.state, StatusName::Blocked, expected);
        assert_untouched_r1(&out.state);
    }
}

#[test]
fn environment_variables_reach_the_env_file_quoted_and_private() {
    let ctx = context();
    let state = serving_r1(&ctx).with_config(
        "environment_variables",
        r#"GREETING="hello world" TOKEN='a$b"c' EMPTY="#,
    );
    let out = ctx.run(on::config_changed(), state).unwrap();
    assert!(out.succeeded());
    let path = out.state.machine.path("/etc/wsgi-app/environment");
    let env = wsgi_app::workload::envvars::read_env_file(&path).unwrap();
    assert_eq!(
        env,
        vec![
            ("GREETING".to_string(), "hello world".to_string()),
            ("TOKEN".to_string(), "a$b\"c".to_string()),
            ("EMPTY".to_string(), String::new()),
        ]
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o640
    );
    // A new environment means a new gunicorn master.
    assert_ne!(
        out.state.service_fingerprint("wsgi-app"),
        base_fingerprint(&ctx).as_deref()
    );
    // Values never reach the log.
    assert!(!out.logs.iter().any(|(_, m)| m.contains("hello world")));
}

#[test]
fn apt_dependencies_install_once_per_change() {
    let ctx = context();
    let state = serving_r1(&ctx).with_config("apt_dependencies", "libpq5 libxml2");
    let out = ctx.run(on::config_changed(), state).unwrap();
    let apt: Vec<String> = command_lines(&out)
        .into_iter()
        .filter(|c| c.starts_with("apt-get"))
        .collect();
    assert_eq!(
        apt,
        vec![
            "apt-get update -q",
            "apt-get install -y -q --no-install-recommends libpq5 libxml2"
        ]
    );
    let again = ctx.run(on::config_changed(), out.state).unwrap();
    assert!(command_lines(&again)
        .iter()
        .all(|c| !c.starts_with("apt-get")));
}

#[test]
fn a_failed_apt_install_is_blocked_and_retried_next_time() {
    let mut ctx = context();
    ctx.on_command(
        "apt-get install",
        failure(100, "E: Unable to locate package nosuch"),
    );
    let state = serving_r1(&ctx).with_config("apt_dependencies", "nosuch");
    let out = ctx.run(on::config_changed(), state).unwrap();
    assert_status(&out.state, StatusName::Blocked, "apt_dependencies");
    assert_status(&out.state, StatusName::Blocked, "Unable to locate package");
    let mut ctx = context();
    ctx.on_command("apt-get install", output(""));
    let again = ctx.run(on::update_status(), out.state).unwrap();
    assert!(command_lines(&again)
        .iter()
        .any(|c| c.starts_with("apt-get install")));
}

#[test]
fn installer_output_quoting_a_proxy_password_reaches_the_status_without_it() {
    let mut ctx = context();
    ctx.on_command(
        "apt-get update",
        failure(
            100,
            "E: Failed to fetch http://archive.ubuntu.com/ubuntu/dists/jammy/InRelease  Could not connect to http://bob:S3cret-proxy@proxy.internal:3128/ (10.0.0.9)",
        ),
    );
    let state = serving_r1(&ctx).with_config("apt_dependencies", "libpq5");
    let out = ctx.run(on::config_changed(), state).unwrap();
    assert_status(&out.state, StatusName::Blocked, "apt_dependencies");
    assert_status(
        &out.state,
        StatusName::Blocked,
        "http://proxy.internal:3128/",
    );
    let everything = format!("{:?} {:?}", out.unit_status_history, out.logs);
    assert!(!everything.contains("S3cret-proxy"), "{everything}");
}

#[test]
fn workers_zero_means_two_per_core_plus_one() {
    let ctx = context();
    let state = serving_r1(&ctx);
    assert_eq!(running_spec(&state).workers, 5, "2 cores in the harness");
    let out = ctx
        .run(on::config_changed(), state.with_config("workers", 3))
        .unwrap();
    assert_eq!(running_spec(&out.state).workers, 3);
}

#[test]
fn a_new_listen_port_moves_the_service_and_the_opened_port() {
    let ctx = context();
    let state = serving_r1(&ctx);
    let out = ctx
        .run(on::config_changed(), state.with_config("listen_port", 9000))
        .unwrap();
    assert_eq!(running_spec(&out.state).port, 9000);
    let ports: Vec<String> = out
        .state
        .opened_ports
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(ports, vec!["9000/tcp"]);
    assert_status(&out.state, StatusName::Active, "serving r1 on :9000");
}

#[test]
fn running_a_hook_twice_changes_nothing_the_second_time() {
    let ctx = context();
    let state = serving_r1(&ctx);
    let out = ctx.run(on::config_changed(), state).unwrap();
    assert!(out.commands.is_empty(), "{:?}", command_lines(&out));
    assert!(out
        .service_calls
        .iter()
        .all(|c| matches!(c, harness::recorder::ServiceCall::Ensure(_))));
    let again = ctx.run(on::config_changed(), out.state.clone()).unwrap();
    assert_eq!(again.state.unit_status, out.state.unit_status);
    assert_eq!(
        again.state.service_fingerprint("wsgi-app"),
        out.state.service_fingerprint("wsgi-app")
    );
}

#[test]
fn update_status_reads_config_once_and_never_relations() {
    let ctx = context();
    let out = ctx.run(on::update_status(), serving_r1(&ctx)).unwrap();
    assert_eq!(out.calls_to("config-get"), 1);
    assert_eq!(out.calls_to("relation-ids"), 0, "{:?}", out.tool_calls);
    assert_status(&out.state, StatusName::Active, "serving r1");
}

#[test]
fn keep_builds_removes_the_oldest_but_never_current_or_latest() {
    let charm = CharmDir::new();
    for label in ["b1", "b2", "b3", "b4"] {
        charm.add_archive(
            label,
            "app.tar.gz",
            &[("example_wsgi.py", b"application = None\n")],
        );
    }
    let ctx = charm.context();
    let mut state = State::new()
        .with_leader(true)
        .with_config("archive_filename", "app.tar.gz")
        .with_config("keep_builds", 2)
        .with_config("current_symlink", "b1")
        .with_config("build_label", "b1");
    state = ctx.run_initial_hooks(state).unwrap().into_state();
    for label in ["b2", "b3", "b4"] {
        state = ctx
            .run(
                on::config_changed(),
                state.with_config("build_label", label),
            )
            .unwrap()
            .state;
    }
    let builds = state.machine.path("/srv/wsgi-app/builds");
    let mut left: Vec<String> = fs::read_dir(builds)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    // b1 serves (current_symlink), b4 is latest and the build_label.
    assert_eq!(left, vec!["b1", "b4"]);
    assert_status(&state, StatusName::Active, "serving b1");
}

#[test]
fn the_charm_declares_exactly_metadata_endpoints_and_actions() {
    use strum::IntoEnumIterator;
    let ctx = Context::new(WORKSPACE_CHARM_DIR, WsgiApp::new);
    let meta = ctx.meta();
    let mut endpoints: Vec<String> = wsgi_app::charm::Endpoint::iter()
        .map(|e| e.as_ref().to_string())
        .collect();
    endpoints.sort();
    let mut declared: Vec<String> = meta.endpoints.keys().cloned().collect();
    declared.sort();
    assert_eq!(endpoints, declared);
    let mut actions: Vec<String> = wsgi_app::charm::Action::iter()
        .map(|a| a.as_ref().to_string())
        .collect();
    actions.sort();
    let mut declared: Vec<String> = meta.actions.keys().cloned().collect();
    declared.sort();
    assert_eq!(actions, declared);
}

#[test]
fn a_failed_build_is_retried_at_update_status_or_when_its_options_change_not_every_hook() {
    let charm = CharmDir::new();
    charm.add_file("bad", "example-wsgi-app.tar.bzip2", b"not an archive");
    let ctx = charm.context();
    let state = serving_r1(&ctx).with_config("build_label", "bad");
    let fetched = |out: &harness::Output| {
        out.unit_status_history
            .iter()
            .any(|s| s.message.contains("fetching archive"))
    };
    let first = ctx.run(on::config_changed(), state).unwrap();
    assert!(fetched(&first));
    let again = ctx.run(on::start(), first.state).unwrap();
    assert!(
        !fetched(&again),
        "a failed build is not retried on every hook"
    );
    assert_status(
        &again.state,
        StatusName::Blocked,
        "retried at the next update-status",
    );
    let periodic = ctx.run(on::update_status(), again.state).unwrap();
    assert!(fetched(&periodic), "update-status retries it");
    let changed = ctx
        .run(
            on::config_changed(),
            periodic.state.with_config("archive_sha256", R1_SHA256),
        )
        .unwrap();
    assert!(fetched(&changed), "a changed option retries it");
    assert_untouched_r1(&changed.state);
}
