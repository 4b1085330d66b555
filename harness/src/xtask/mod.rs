//! The library side of `cargo xtask` (harness/src/bin/xtask.rs): chores
//! that tests also need to call directly, without a nested cargo.
//!
//! - [`pack`]: build the `.charm` for real Juju from this tree and a built
//!   binary, deterministically.
//! - [`elf`]: what that binary asks of a machine (architecture, glibc).

pub mod elf;
pub mod pack;
