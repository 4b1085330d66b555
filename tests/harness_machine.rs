//! The harness' machine (recorded commands, fake services, a temporary
//! root shared along a chain) and chaining dispatches the way Juju orders
//! them.

mod ops_support;

use std::path::PathBuf;

use harness::{
    bag, failure, on, output, HarnessError, Relation, ServiceCall, ServiceRecord, State,
};
use ops_support::{note, notes, probe, Ctx, ProbeEvent};
use wsgi_app::ops::{ConfigReader, Event, HandlerError, UnitHook};
use wsgi_app::workload::machine::{CommandOutput, CommandSpec, Machine};
use wsgi_app::workload::service::{ServiceChange, ServiceSpec};

#[test]
fn commands_are_recorded_and_answered_from_the_script() {
    let mut ctx = probe(|ctx, _, machine| {
        let run = |spec: CommandSpec| machine.runner.run(&spec);
        let venv = machine.path("/srv/app/builds/r1/venv");
        let created = run(CommandSpec::new("python3")
            .args(["-m", "venv"])
            .arg(venv.to_string_lossy()))?;
        assert!(created.success());
        assert!(venv.join("bin/python").exists(), "the scripted effect ran");
        let pip =
            run(CommandSpec::new(venv.join("bin/pip").to_string_lossy())
                .args(["install", "gunicorn"]))?;
        assert_eq!(pip.stdout, b"Successfully installed gunicorn");
        let mut make = CommandSpec::new("make")
            .arg("migrate")
            .env("DATABASE_URL", "postgresql://app:s3cret@db/app")
            .cwd("/srv/app/current");
        make.env_is_secret = true;
        let migrated = run(make)?;
        note(ctx, &format!("make exited {}", migrated.code))?;
        note(ctx, &migrated.tail(1))?;
        let apt = run(CommandSpec::new("apt-get").args(["install", "-y", "libpq5"]))?;
        assert!(apt.success(), "unscripted commands succeed");
        note(
            ctx,
            &format!(
                "uv={:?} python3={:?}",
                machine.runner.which("uv"),
                machine.runner.which("python3")
            ),
        )
    });
    ctx.on_command_do(
        "python3 -m venv",
        |spec: &CommandSpec, _root: &std::path::Path| {
            // The venv path is already under the machine root.
            let bin = PathBuf::from(spec.args.last().unwrap()).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            std::fs::write(bin.join("python"), "").unwrap();
            CommandOutput::default()
        },
    )
    .on_command("pip install", output("Successfully installed gunicorn"))
    .on_command(
        "make",
        failure(2, "make: *** No rule to make target 'migrate'\n"),
    );

    let out = ctx.run(on::install(), State::new()).unwrap();
    assert!(out.succeeded(), "{:?}", out.outcome);
    assert_eq!(
        notes(&out.state),
        [
            "make exited 2",
            "make: *** No rule to make target 'migrate'",
            "uv=None python3=Some(\"/usr/bin/python3\")",
        ]
    );
    let programs: Vec<String> = out.commands.iter().map(|c| c.display()).collect();
    assert_eq!(programs.len(), 4);
    assert!(programs[0].starts_with("python3 -m venv /"));
    assert!(programs[1].ends_with("/venv/bin/pip install gunicorn"));
    assert_eq!(programs[2], "make migrate");
    // Secret environments are never kept.
    assert_eq!(
        out.commands[2].env,
        [("DATABASE_URL".to_string(), harness::REDACTED.to_string())]
    );
    assert!(out
        .state
        .machine
        .path("/srv/app/builds/r1/venv/bin/python")
        .exists());
}

#[test]
fn newer_rules_win_and_which_is_configurable() {
    let mut ctx = probe(|ctx, _, machine| {
        let run = |args: &[&str]| {
            machine
                .runner
                .run(&CommandSpec::new("make").args(args.iter().copied()))
        };
        let migrate = run(&["migrate"])?;
        let check = run(&["check"])?;
        let uv = machine.runner.which("uv").is_some();
        let python = machine.runner.which("python3").is_some();
        note(
            ctx,
            &format!("{} {} {uv} {python}", migrate.code, check.code),
        )
    });
    ctx.on_command("make", failure(2, ""))
        .on_command("make migrate", failure(3, ""))
        // A predicate instead of a prefix:
        .on_command(
            |spec: &CommandSpec| spec.args.iter().any(|a| a == "check"),
            failure(4, ""),
        )
        .program_present("uv")
        .program_absent("python3");
    let out = ctx.run(on::install(), State::new()).unwrap();
    assert_eq!(notes(&out.state), ["3 4 true false"]);
}

fn spec(fingerprint: &str) -> ServiceSpec {
    ServiceSpec {
        name: "wsgi-app".into(),
        current_dir: "/srv/wsgi-app/current".into(),
        wsgi_application: "example_wsgi:application".into(),
        bind_address: "0.0.0.0".into(),
        port: 8080,
        workers: 2,
        env_file: "/etc/wsgi-app/env".into(),
        user: "wsgi-app".into(),
        group: "wsgi-app".into(),
        log_dir: "/var/log/wsgi-app".into(),
        run_dir: "/run/wsgi-app".into(),
        serving: wsgi_app::workload::service::Serving::default(),
        metrics: None,
        fingerprint: fingerprint.into(),
    }
}

/// Ensures the service runs the fingerprint named by `build_label`, stops
/// it on stop, and notes what happened.
fn service_keeper(
    ctx: &mut Ctx<'_, '_>,
    event: &ProbeEvent,
    machine: &Machine,
) -> Result<(), HandlerError> {
    let label = ConfigReader::new(ctx.model.config()?)
        .string("build_label")?
        .to_string();
    if *event == Event::Unit(UnitHook::Stop) {
        machine.services.stop(&spec(&label))?;
        return note(ctx, "stopped");
    }
    match machine.services.ensure(&spec(&label)) {
        Ok(change) => note(ctx, &format!("{change:?}")),
        Err(e) => note(ctx, &format!("error: {e}")),
    }
}

#[test]
fn the_fake_service_manager_keeps_its_state_in_the_state() {
    let ctx = probe(service_keeper);
    let start = State::new().with_config("build_label", "r1");
    let chain = ctx
        .chain(start)
        .run(on::start())
        .unwrap()
        .run(on::update_status())
        .unwrap();
    assert_eq!(chain.state().service_fingerprint("wsgi-app"), Some("r1"));
    assert_eq!(
        chain.last().service_calls,
        [ServiceCall::Ensure(spec("r1"))]
    );

    // A failed start leaves the old master running, once.
    let chain = chain
        .update_state(|mut s| {
            s.service_fails_to_start = true;
            s.with_config("build_label", "r2")
        })
        .run(on::config_changed())
        .unwrap();
    assert_eq!(chain.state().service_fingerprint("wsgi-app"), Some("r1"));
    assert!(!chain.state().service_fails_to_start);
    let chain = chain
        .run(on::config_changed())
        .unwrap()
        .run(on::stop())
        .unwrap();
    assert_eq!(
        notes(chain.state()),
        [
            format!("{:?}", ServiceChange::Started),
            format!("{:?}", ServiceChange::Unchanged),
            "error: gunicorn did not start: wsgi-app failed to start (scripted by the test)"
                .to_string(),
            format!("{:?}", ServiceChange::Replaced),
            "stopped".to_string(),
        ]
    );
    assert_eq!(chain.state().services["wsgi-app"], ServiceRecord::Stopped);
    assert_eq!(
        chain.last().service_calls,
        [ServiceCall::Stop("wsgi-app".into())]
    );

    // With nothing running before, a failed start is a failed service.
    let mut fresh = State::new().with_config("build_label", "r1");
    fresh.service_fails_to_start = true;
    let out = ctx.run(on::start(), fresh).unwrap();
    assert!(matches!(
        out.state.services["wsgi-app"],
        ServiceRecord::Failed(_)
    ));
}

/// Notes each event's name.
fn journal(ctx: &mut Ctx<'_, '_>, event: &ProbeEvent) -> Result<(), HandlerError> {
    note(ctx, &event.name())
}

#[test]
fn initial_hooks_run_in_jujus_order() {
    let ctx = probe(|ctx, event, _| journal(ctx, event));
    let state =
        State::new()
            .with_leader(true)
            .with_relation(Relation::new(4, "pgsql", "postgresql"));
    let chain = ctx.run_initial_hooks(state).unwrap();
    assert_eq!(
        notes(chain.state()),
        [
            "install",
            "pgsql-relation-created",
            "leader-elected",
            "config-changed",
            "start"
        ]
    );
    assert_eq!(chain.outputs().len(), 5);

    let minion = ctx.run_initial_hooks(State::new()).unwrap();
    assert_eq!(
        notes(minion.state()),
        [
            "install",
            "leader-settings-changed",
            "config-changed",
            "start"
        ]
    );
}

#[test]
fn relating_runs_created_app_changed_then_joined_and_changed_per_unit() {
    let ctx = probe(|ctx, event, _| {
        let line = match event {
            Event::Relation(r) => format!(
                "{} {}",
                event.name(),
                r.remote_unit.as_deref().unwrap_or("(app)")
            ),
            other => other.name(),
        };
        note(ctx, &line)
    });
    let rel = Relation::new(4, "pgsql", "postgresql")
        .with_remote_units([10, 2])
        .with_remote_app_data(bag([("version", "16")]));
    let chain = ctx
        .chain(State::new().with_relation(rel))
        .relate(4)
        .unwrap()
        // A remote unit writes to its bag:
        .update_state(|s| s.update_remote_unit_data(4, 2, bag([("allowed-units", "wsgi-app/0")])))
        .run(on::relation_changed(4, Some(2)))
        .unwrap();
    assert_eq!(
        notes(chain.state()),
        [
            "pgsql-relation-created (app)",
            "pgsql-relation-changed (app)",
            // Unit names sort as strings: postgresql/10 before postgresql/2.
            "pgsql-relation-joined postgresql/10",
            "pgsql-relation-changed postgresql/10",
            "pgsql-relation-joined postgresql/2",
            "pgsql-relation-changed postgresql/2",
            "pgsql-relation-changed postgresql/2",
        ]
    );
    assert_eq!(
        chain.state().relation(4).unwrap().remote_units[&2]["allowed-units"],
        "wsgi-app/0"
    );
}

#[test]
fn a_chain_stops_at_a_failed_hook() {
    let ctx = probe(|ctx, event, _| {
        journal(ctx, event)?;
        if *event == Event::Unit(UnitHook::ConfigChanged) {
            return Err("cannot parse environment_variables".into());
        }
        Ok(())
    });
    let err = ctx
        .chain(State::new())
        .run(on::install())
        .and_then(|c| c.run(on::config_changed()))
        .and_then(|c| c.run(on::start()))
        .err()
        .expect("config-changed fails");
    let HarnessError::HookFailed { event, output } = &err else {
        panic!("expected HookFailed, got {err}");
    };
    assert_eq!(event, "config-changed");
    assert!(err
        .to_string()
        .contains("cannot parse environment_variables"));
    // The failed dispatch's state is the one Juju would retry from.
    assert_eq!(notes(&output.state), ["install"]);
}

#[test]
fn files_are_shared_along_a_chain_and_stores_are_not_shared_between_branches() {
    let ctx = probe(|ctx, event, machine| {
        let marker = machine.path("/etc/wsgi-app/marker");
        if *event == Event::Unit(UnitHook::Install) {
            std::fs::create_dir_all(marker.parent().unwrap())?;
            std::fs::write(&marker, "installed")?;
        }
        let seen = std::fs::read_to_string(&marker).unwrap_or_default();
        note(ctx, &format!("{} saw {seen:?}", event.name()))
    });
    let installed = ctx.run(on::install(), State::new()).unwrap();
    assert_eq!(
        installed.state.read_file("/etc/wsgi-app/marker").unwrap(),
        "installed"
    );

    // Two branches from the same state: each gets the machine's files, but
    // its own copy of the store.
    let a = installed.then(&ctx, on::update_status()).unwrap();
    let b = installed.then(&ctx, on::config_changed()).unwrap();
    assert_eq!(
        notes(&a.state),
        [
            "install saw \"installed\"",
            "update-status saw \"installed\""
        ]
    );
    assert_eq!(
        notes(&b.state),
        [
            "install saw \"installed\"",
            "config-changed saw \"installed\""
        ]
    );
    assert_eq!(a.state.machine, installed.state.machine);
}
