// SPDX-License-Identifier: GPL-2.0

//! Raw bindings: bindgen's output for `bindings_helper.h`, generated at build
//! time by the module's Kbuild (never committed), plus the C shims of `shim.c`.
//!
//! Only `virtio.rs` (and the other thin wrappers) use this module; driver
//! logic goes through their safe API.

// Names and shapes are C's; the lints the kernel crate allows for its own
// bindings apply here too (see `rust/bindings/lib.rs`).
#![allow(
    clippy::all,
    clippy::undocumented_unsafe_blocks,
    clippy::ptr_as_ptr,
    clippy::ref_as_ptr,
    clippy::cast_lossless,
    clippy::as_underscore,
    dead_code,
    missing_docs,
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    improper_ctypes,
    unreachable_pub,
    unsafe_op_in_unsafe_fn,
    unknown_lints,
    unnecessary_transmutes
)]

// Types the generated code names but does not define come from the kernel
// crate's bindings (see `bindgen_parameters`).
pub(crate) use kernel::bindings::*;
use kernel::ffi;
use pin_init::MaybeZeroable;

include!("bindings_generated.rs");

// SAFETY: `__BindgenBitfieldUnit<Storage>` is a newtype around `Storage` (as in
// the kernel crate's bindings).
unsafe impl<Storage> pin_init::Zeroable for __BindgenBitfieldUnit<Storage> where
    Storage: pin_init::Zeroable
{
}
