// SPDX-License-Identifier: GPL-2.0

//! The virtio-scsi wire protocol, in pure Rust with no kernel dependency.
//!
//! The module includes this directory as `mod protocol`; `protocol/Cargo.toml`
//! builds the same files as a host crate so `cargo test` (and a fuzzer) run the
//! decoding and validation logic without a guest. Everything here works on
//! plain integers and byte slices and uses `core` only.

pub mod cmd;
pub mod config;
pub mod ctrl;
pub mod event;
pub mod wire;
