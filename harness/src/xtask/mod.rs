//! The library side of `cargo xtask` (harness/src/bin/xtask.rs): chores
//! that tests also need to call directly, without a nested cargo.
//!
//! - [`pack`]: build the `.charm` for real Juju from this tree and a built
//!   binary, deterministically.
//! - [`elf`]: what that binary asks of a machine (architecture, glibc).
//! - [`metadata`]: the checks Juju runs on metadata.yaml and actions.yaml.

pub mod elf;
pub mod metadata;
pub mod pack;
