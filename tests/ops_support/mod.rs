//! A small charm for testing the framework and the harness: its behaviour
//! is a closure the test passes in, so each test says exactly what the
//! charm does. Its endpoints and actions are the workspace's (metadata.yaml
//! and actions.yaml at the root), so the harness validates against the
//! real files. It is not the wsgi-app charm.

#![allow(dead_code)] // each test file uses a different part of this

use std::rc::Rc;

use harness::{Context, WORKSPACE_CHARM_DIR};
use wsgi_app::ops::{self, Charm, Event, HandlerError, Migration, Status};
use wsgi_app::workload::machine::Machine;

#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::AsRefStr)]
#[strum(serialize_all = "kebab-case")]
pub enum Endpoint {
    Website,
    NrpeExternalMaster,
    Pgsql,
    Mongodb,
    ManagerService,
    Rollout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::AsRefStr)]
#[strum(serialize_all = "kebab-case")]
pub enum Action {
    SetCurrentSymlink,
    Rollback,
    ListBuilds,
}

pub type Ctx<'s, 'b> = ops::HookContext<'s, 'b, Endpoint, Action>;
pub type ProbeEvent = Event<Endpoint, Action>;
pub type Handler = dyn Fn(&mut Ctx<'_, '_>, &ProbeEvent, &Machine) -> Result<(), HandlerError>;

/// One schema version: a table of notes the handlers may write to.
pub const V1: &[Migration] = &[Migration {
    version: 1,
    description: "notes",
    sql: "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL);",
}];

/// V1 plus a column added in version 2.
pub const V2: &[Migration] = &[
    V1[0],
    Migration {
        version: 2,
        description: "notes get an author",
        sql: "ALTER TABLE notes ADD COLUMN author TEXT NOT NULL DEFAULT 'unknown';",
    },
];

pub struct Probe {
    machine: Machine,
    handler: Rc<Handler>,
    migrations: &'static [Migration],
}

impl Charm for Probe {
    type Endpoint = Endpoint;
    type Action = Action;

    fn migrations(&self) -> &'static [Migration] {
        self.migrations
    }

    fn handle(&mut self, ctx: &mut Ctx<'_, '_>, event: &ProbeEvent) -> Result<(), HandlerError> {
        (self.handler)(ctx, event, &self.machine)
    }

    fn collect_status(&mut self, _ctx: &mut Ctx<'_, '_>) -> Result<Status, HandlerError> {
        Ok(Status::active("probe ready"))
    }
}

/// A harness context for a probe whose every event runs `handler`.
pub fn probe(
    handler: impl Fn(&mut Ctx<'_, '_>, &ProbeEvent, &Machine) -> Result<(), HandlerError> + 'static,
) -> Context<Probe> {
    probe_with(V1, handler)
}

/// The same, with a chosen schema.
pub fn probe_with(
    migrations: &'static [Migration],
    handler: impl Fn(&mut Ctx<'_, '_>, &ProbeEvent, &Machine) -> Result<(), HandlerError> + 'static,
) -> Context<Probe> {
    let handler: Rc<Handler> = Rc::new(handler);
    Context::new(WORKSPACE_CHARM_DIR, move |machine| Probe {
        machine,
        handler: handler.clone(),
        migrations,
    })
}

/// A probe that does nothing but report its status.
pub fn idle() -> Context<Probe> {
    probe(|_, _, _| Ok(()))
}

/// Add a note to the store (the probe's only table).
pub fn note(ctx: &Ctx<'_, '_>, text: &str) -> Result<(), HandlerError> {
    ctx.store
        .conn()
        .execute("INSERT INTO notes (text) VALUES (?1)", [text])?;
    Ok(())
}

/// The notes in a state's store, oldest first.
pub fn notes(state: &harness::State) -> Vec<String> {
    let Some(image) = &state.stored_state else {
        return Vec::new();
    };
    image
        .query(|conn| {
            let mut stmt = conn.prepare("SELECT text FROM notes ORDER BY id")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect()
        })
        .unwrap_or_default()
}
