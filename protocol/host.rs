// SPDX-License-Identifier: GPL-2.0

//! Host crate root for the protocol module: the kernel module compiles
//! `mod.rs` as its `protocol` module, this file compiles the same source for
//! `cargo test` on the host.

#![no_std]

#[path = "mod.rs"]
mod protocol;
pub use protocol::*;

#[cfg(test)]
mod uapi_layout;

/// The fuzzing harness (`fuzz/`, and a pseudo-random run in `cargo test`).
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz_checks;
