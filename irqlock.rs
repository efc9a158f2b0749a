// SPDX-License-Identifier: GPL-2.0

//! A spinlock taken with interrupts disabled (`spin_lock_irqsave`), for data
//! shared between process context and virtqueue interrupt callbacks. The
//! kernel crate's `SpinLock` does not disable interrupts.

use crate::bindings;
use kernel::sync::lock::{Backend, Lock};

/// `spin_lock_irqsave` / `spin_unlock_irqrestore` as a [`Backend`].
pub(crate) struct IrqSaveBackend;

/// A spinlock whose guard keeps local interrupts disabled.
pub(crate) type IrqSpinLock<T> = Lock<T, IrqSaveBackend>;

// SAFETY: The underlying `spinlock_t` provides mutual exclusion; the guard
// state carries the saved interrupt flags from `lock` to `unlock`, and the
// default `relock` takes the lock the same way again.
unsafe impl Backend for IrqSaveBackend {
    type State = bindings::spinlock_t;
    type GuardState = usize;

    unsafe fn init(
        ptr: *mut Self::State,
        name: *const kernel::ffi::c_char,
        key: *mut bindings::lock_class_key,
    ) {
        // SAFETY: The caller guarantees `ptr` is valid for writes and `name` and
        // `key` are valid for reads indefinitely.
        unsafe { bindings::__spin_lock_init(ptr, name, key) }
    }

    unsafe fn lock(ptr: *mut Self::State) -> Self::GuardState {
        // SAFETY: The caller guarantees `ptr` points to an initialised lock.
        unsafe { bindings::vsrs_spin_lock_irqsave(ptr) }
    }

    unsafe fn try_lock(ptr: *mut Self::State) -> Option<Self::GuardState> {
        let mut flags = 0;
        // SAFETY: As in `lock`; `flags` is valid for writes.
        unsafe { bindings::vsrs_spin_trylock_irqsave(ptr, &mut flags) }.then_some(flags)
    }

    unsafe fn unlock(ptr: *mut Self::State, flags: &Self::GuardState) {
        // SAFETY: The caller owns the lock, taken by `lock`, which returned `flags`.
        unsafe { bindings::vsrs_spin_unlock_irqrestore(ptr, *flags) }
    }

    unsafe fn assert_is_held(ptr: *mut Self::State) {
        // SAFETY: The caller guarantees `ptr` points to an initialised lock.
        unsafe { bindings::spin_assert_is_held(ptr) }
    }
}
