//! A small operator framework for Juju machine charms.
//!
//! It knows Juju and nothing of WSGI. A dispatch turns the hook environment
//! into a typed [`Event`], opens the unit's [`Store`] in one transaction,
//! replays deferred notices, hands the event to a [`Charm`], sets the status
//! the charm reports, and commits only if everything succeeded.
//!
//! The only way to Juju is the [`Backend`] trait: [`HookTools`] runs Juju's
//! hook tools; the `harness` crate is an in-memory Juju for tests.

pub mod backend;
pub mod config;
pub mod dispatch;
pub mod event;
pub mod hooktools;
pub mod model;
pub mod store;

pub use backend::{
    Backend, Bag, BagOwner, LogLevel, ModelError, Network, Port, Protocol, Scope, SecretContent,
    SecretInfo, SecretOwner, SecretRead, SecretRef, Status, StatusName,
};
pub use config::{ConfigError, ConfigReader};
pub use dispatch::{run, Charm, Dispatch, DispatchOutcome, HandlerError, HookContext};
pub use event::{
    ActionEvent, Event, EventError, EventVars, RelationEvent, RelationHook, RelationId,
    SecretEvent, SecretHook, StorageHook, UnitHook,
};
pub use hooktools::{HookTools, ToolCall};
pub use model::{Model, Remembered};
pub use store::{Migration, Notice, Store, StoreError};
