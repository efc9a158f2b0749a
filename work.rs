// SPDX-License-Identifier: GPL-2.0

//! What the kernel crate's workqueue abstraction does not offer yet: waiting
//! for a work item to finish (`flush_work`).

use crate::bindings;
use kernel::workqueue::Work;

/// Waits until the last queueing of `w` has finished running, including the
/// return from its `run` (so module text and the item may go after this).
pub(crate) fn flush<T: ?Sized, const ID: u64>(w: &Work<T, ID>) {
    // SAFETY: `w` is a live, initialised `Work` (a reference to it exists);
    // `raw_get` only computes the address of its `work_struct`, which
    // `flush_work` may be called on at any time after initialisation.
    unsafe { bindings::flush_work(Work::raw_get(w)) };
}
