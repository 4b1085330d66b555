//! Helpers shared by the charm-sim tests: a temporary model driven through
//! the real `charm-sim` binary, and a tiny fake charm.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const CHARM_SIM: &str = env!("CARGO_BIN_EXE_charm-sim");

/// A temporary directory holding a fake charm and a model.
pub struct Sim {
    pub tmp: tempfile::TempDir,
    pub charm: PathBuf,
    pub model: PathBuf,
    pub events: PathBuf,
}

pub const METADATA: &str = "\
name: fake
summary: A fake charm for charm-sim tests
description: Records every event it gets.
requires:
  db:
    interface: pgsql
  cache:
    interface: redis
    limit: 1
provides:
  website:
    interface: http
";

pub const CONFIG: &str = "\
options:
  port:
    type: int
    default: 8080
  label:
    type: string
  ratio:
    type: float
    default: 2.0
  flag:
    type: boolean
    default: false
";

pub const ACTIONS: &str = "\
greet:
  params:
    name:
      type: string
    times:
      type: integer
      default: 1
  required: [name]
  additionalProperties: false
fail:
  params: {}
";

/// A dispatch script that appends `UNIT DISPATCH_PATH REMOTE_UNIT
/// DEPARTING_UNIT` to the events file (`$EVENTS` to `body`), then runs
/// `body` (shell).
pub fn dispatch_script(events: &Path, body: &str) -> String {
    format!(
        "#!/bin/sh\n\
         EVENTS='{}'\n\
         echo \"$JUJU_UNIT_NAME $JUJU_DISPATCH_PATH $JUJU_REMOTE_UNIT ${{JUJU_DEPARTING_UNIT-}}\" >> \"$EVENTS\"\n\
         {body}\n",
        events.display()
    )
}

impl Sim {
    /// A fake charm whose dispatch runs `body` after recording the event.
    pub fn new(body: &str) -> Sim {
        Sim::with_metadata(body, METADATA)
    }

    /// [`Sim::new`] with metadata.yaml of the test's own.
    pub fn with_metadata(body: &str, metadata: &str) -> Sim {
        let tmp = tempfile::tempdir().expect("tempdir");
        let charm = tmp.path().join("fake");
        let events = tmp.path().join("events.log");
        fs::create_dir_all(&charm).unwrap();
        fs::write(charm.join("metadata.yaml"), metadata).unwrap();
        fs::write(charm.join("config.yaml"), CONFIG).unwrap();
        fs::write(charm.join("actions.yaml"), ACTIONS).unwrap();
        let dispatch = charm.join("dispatch");
        fs::write(&dispatch, dispatch_script(&events, body)).unwrap();
        fs::set_permissions(&dispatch, fs::Permissions::from_mode(0o755)).unwrap();
        let model = tmp.path().join("model");
        Sim {
            tmp,
            charm,
            model,
            events,
        }
    }

    /// Run `charm-sim --model <model> ARGS`.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(CHARM_SIM)
            .arg("--model")
            .arg(&self.model)
            .args(args)
            .env_remove("CHARM_SIM_MODEL")
            // A block of its own, so a model someone runs by hand cannot collide.
            .env("CHARM_SIM_ADDRESS_BLOCK", "127.0.61")
            .stdin(Stdio::null())
            .output()
            .expect("run charm-sim")
    }

    /// Run a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "charm-sim {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn deploy(&self, units: u32) {
        let n = units.to_string();
        let charm = self.charm.display().to_string();
        self.ok(&["deploy", &charm, "--units", &n]);
    }

    /// The recorded events as (unit, dispatch path, remote unit, departing).
    pub fn events(&self) -> Vec<(String, String, String, String)> {
        fs::read_to_string(&self.events)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let mut parts = l.splitn(4, ' ');
                let mut next = || parts.next().unwrap_or_default().trim().to_string();
                (next(), next(), next(), next())
            })
            .collect()
    }

    /// One unit's events as `path` or `path(remote)` strings.
    pub fn events_of(&self, unit: &str) -> Vec<String> {
        self.events()
            .into_iter()
            .filter(|e| e.0 == unit)
            .map(|(_, path, remote, _)| {
                let name = path.trim_start_matches("hooks/").to_string();
                if remote.is_empty() {
                    name
                } else {
                    format!("{name}({remote})")
                }
            })
            .collect()
    }

    pub fn clear_events(&self) {
        let _ = fs::remove_file(&self.events);
    }

    pub fn status_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["status", "--format", "json"])).expect("status json")
    }
}

/// What a tool run printed and returned.
#[derive(Debug)]
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn json(&self) -> serde_json::Value {
        assert_eq!(self.code, 0, "tool failed: {}", self.stderr);
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.stdout))
    }

    /// A failure with exactly one `ERROR <msg>` line on stderr and nothing on stdout.
    pub fn failed(&self, code: i32, contains: &str) {
        assert_eq!(self.code, code, "expected exit {code}: {self:?}");
        assert!(self.stdout.is_empty(), "stdout must stay empty: {self:?}");
        assert!(
            self.stderr.starts_with("ERROR "),
            "stderr must start with ERROR: {self:?}"
        );
        assert_eq!(self.stderr.lines().count(), 1, "{self:?}");
        assert!(
            self.stderr.contains(contains),
            "stderr lacks {contains:?}: {self:?}"
        );
    }
}

/// A model destroyed when dropped: a failed test must not leave the real
/// servers it started (haproxy, Prometheus) running after its directory is
/// gone.
pub struct Model(pub Sim);

impl std::ops::Deref for Model {
    type Target = Sim;
    fn deref(&self) -> &Sim {
        &self.0
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        if self.0.model.exists() {
            let _ = self.0.cli(&["destroy"]);
        }
    }
}
