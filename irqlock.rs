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
        // Without PREEMPT_RT or inlined lock functions, `spin_lock_irqsave`
        // is a call of the exported `_raw_spin_lock_irqsave` on the lock's
        // `raw_spinlock_t`: made directly, without a shim in between.
        #[cfg(not(any(CONFIG_PREEMPT_RT, CONFIG_INLINE_SPIN_LOCK_IRQSAVE)))]
        // SAFETY: The caller guarantees `ptr` points to an initialised lock.
        // Without PREEMPT_RT a `spinlock_t` is a union whose first member is
        // its `raw_spinlock_t` (`rlock`), the pointer `spinlock_check` gives.
        let flags = unsafe { bindings::_raw_spin_lock_irqsave(raw(ptr)) };
        #[cfg(any(CONFIG_PREEMPT_RT, CONFIG_INLINE_SPIN_LOCK_IRQSAVE))]
        // SAFETY: The caller guarantees `ptr` points to an initialised lock.
        let flags = unsafe { bindings::vsrs_spin_lock_irqsave(ptr) };
        flags as usize
    }

    unsafe fn try_lock(ptr: *mut Self::State) -> Option<Self::GuardState> {
        let mut flags = 0;
        // SAFETY: As in `lock`; `flags` is valid for writes.
        unsafe { bindings::vsrs_spin_trylock_irqsave(ptr, &mut flags) }.then_some(flags)
    }

    unsafe fn unlock(ptr: *mut Self::State, flags: &Self::GuardState) {
        #[cfg(not(any(CONFIG_PREEMPT_RT, CONFIG_INLINE_SPIN_UNLOCK_IRQRESTORE)))]
        // SAFETY: The caller owns the lock, taken by `lock`, which returned
        // `flags`; `raw` as in `lock`.
        unsafe {
            bindings::_raw_spin_unlock_irqrestore(raw(ptr), *flags as kernel::ffi::c_ulong)
        };
        #[cfg(any(CONFIG_PREEMPT_RT, CONFIG_INLINE_SPIN_UNLOCK_IRQRESTORE))]
        // SAFETY: The caller owns the lock, taken by `lock`, which returned `flags`.
        unsafe {
            bindings::vsrs_spin_unlock_irqrestore(ptr, *flags)
        };
    }

    unsafe fn assert_is_held(ptr: *mut Self::State) {
        // Every guard asserts its lock: a call that does nothing without
        // lockdep is not made then.
        #[cfg(CONFIG_LOCKDEP)]
        // SAFETY: The caller guarantees `ptr` points to an initialised lock.
        unsafe {
            bindings::spin_assert_is_held(ptr)
        };
        #[cfg(not(CONFIG_LOCKDEP))]
        let _ = ptr;
    }
}

/// The `raw_spinlock_t` of a `spinlock_t` (`spinlock_check`): its first
/// member without PREEMPT_RT. Pointer arithmetic only.
#[cfg(not(any(
    CONFIG_PREEMPT_RT,
    all(CONFIG_INLINE_SPIN_LOCK_IRQSAVE, CONFIG_INLINE_SPIN_UNLOCK_IRQRESTORE)
)))]
fn raw(ptr: *mut bindings::spinlock_t) -> *mut bindings::raw_spinlock_t {
    ptr.cast()
}
