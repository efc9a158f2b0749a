// SPDX-License-Identifier: GPL-2.0

//! Memory a device reads or writes by DMA, and the ownership rule that keeps
//! it alive while the device has it. Nothing here knows a bus or a queue:
//! `virtio` takes buffers described this way, `scsi` hands out commands that
//! own such buffers.

use crate::bindings;
use core::{cell::UnsafeCell, ffi::c_void, marker::PhantomData, mem::MaybeUninit, ptr::NonNull};

/// Bytes a device may read or write at any time by DMA.
///
/// The CPU only copies the whole array in or out with volatile accesses, so a
/// device writing meanwhile can make the copy stale or torn, never invalid
/// (every byte pattern is a valid `[u8; N]`), and no Rust reference to the
/// bytes themselves exists to be invalidated.
///
/// Aligned to 8 bytes, so that [`DmaBytes::read_head`] and
/// [`DmaBytes::write_at`] copy whole words.
#[repr(C, align(8))]
pub(crate) struct DmaBytes<const N: usize>(UnsafeCell<[u8; N]>);

// SAFETY: Every access is a volatile copy of plain bytes (see the type's
// documentation), so sharing between tasks cannot produce an invalid value.
unsafe impl<const N: usize> Sync for DmaBytes<N> {}

// SAFETY: All zeroes is a valid `[u8; N]`.
unsafe impl<const N: usize> pin_init::Zeroable for DmaBytes<N> {}

impl<const N: usize> DmaBytes<N> {
    /// A copy of the first `M` bytes as they are now (`M <= N`, a multiple
    /// of 4, checked at build time), read a 32-bit word at a time.
    pub(crate) fn read_head<const M: usize>(&self) -> [u8; M] {
        const { assert!(M <= N && M % 4 == 0) };
        let base = self.0.get().cast::<u32>();
        let mut out = [0u8; M];
        for (i, word) in out.chunks_exact_mut(4).enumerate() {
            // SAFETY: Bytes `4 * i .. 4 * i + 4` lie within the first
            // `M <= N` bytes of the array `&self` points to, which is aligned
            // to 8 (the type's `align`); any bits are a valid `u32`.
            let w = unsafe { base.add(i).read_volatile() };
            word.copy_from_slice(&w.to_ne_bytes());
        }
        out
    }

    /// Copies the bytes from `offset` on as they are now into `out`, as many
    /// as both have room for; returns how many.
    pub(crate) fn read_at(&self, offset: usize, out: &mut [u8]) -> usize {
        let n = out.len().min(N.saturating_sub(offset));
        let base = self.0.get().cast::<u8>();
        for (i, o) in out[..n].iter_mut().enumerate() {
            // SAFETY: `offset + i < N`: a byte of the array `&self` points
            // to, read once.
            *o = unsafe { base.add(offset + i).read_volatile() };
        }
        n
    }

    /// Replaces the `M` bytes from offset `OFF` on with `bytes`
    /// (`OFF + M <= N`, checked at build time); the rest stay as they are.
    /// Whole 64-bit words where `OFF` and `M` allow, single bytes for fewer
    /// than 8, else one copy of the array: each a store from registers, not
    /// through a copy on the stack.
    #[inline(always)]
    pub(crate) fn write_at<const OFF: usize, const M: usize>(&self, bytes: &[u8; M]) {
        const { assert!(OFF + M <= N) };
        let base = self.0.get().cast::<u8>();
        if OFF % 8 == 0 && M % 8 == 0 {
            for (i, w) in bytes.chunks_exact(8).enumerate() {
                let w = u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
                // SAFETY: The 8 bytes at `OFF + 8 * i` lie in the array `&self`
                // points to (`OFF + M <= N`), a multiple of 8 from its start,
                // which is aligned to 8 (the type's `align`); one volatile store.
                unsafe { base.add(OFF + 8 * i).cast::<u64>().write_volatile(w) };
            }
        } else if M < 8 {
            for (i, &b) in bytes.iter().enumerate() {
                // SAFETY: `OFF + i < OFF + M <= N`: a byte of the array
                // `&self` points to, written once.
                unsafe { base.add(OFF + i).write_volatile(b) };
            }
        } else {
            // SAFETY: Bytes `OFF .. OFF + M` lie inside the array `&self`
            // points to (`OFF + M <= N`; alignment 1); one volatile store of
            // them.
            unsafe { base.add(OFF).cast::<[u8; M]>().write_volatile(*bytes) };
        }
    }

    fn as_ptr(&self) -> *mut c_void {
        self.0.get().cast()
    }
}

/// A value that can be given to a device and come back, such as a command
/// on its way through a queue: while it is away only a raw pointer stands
/// for it.
///
/// # Safety
///
/// `into_raw` returns a pointer that `from_raw` turns back into the same
/// value. Between the two, everything reachable through a `&Self` taken before
/// `into_raw` (in particular every [`DmaBytes`] and [`SgChain`] borrowed from
/// it) stays valid and in place.
pub(crate) unsafe trait Owned: Sized + Send {
    /// Gives up the value for a pointer.
    fn into_raw(self) -> NonNull<c_void>;

    /// Takes the value back.
    ///
    /// # Safety
    ///
    /// `ptr` came from `into_raw` of this type and is used once.
    unsafe fn from_raw(ptr: NonNull<c_void>) -> Self;
}

/// A chain of C scatterlist entries (`struct scatterlist`, ending with an end
/// mark) describing memory that stays valid for `'a`.
#[derive(Clone, Copy)]
pub(crate) struct SgChain<'a> {
    sgl: NonNull<bindings::scatterlist>,
    _life: PhantomData<&'a ()>,
}

impl<'a> SgChain<'a> {
    /// # Safety
    ///
    /// `sgl` is the first entry of a terminated scatterlist chain whose
    /// entries and the memory they describe stay valid for `'a`.
    pub(crate) unsafe fn from_raw(sgl: NonNull<bindings::scatterlist>) -> Self {
        Self {
            sgl,
            _life: PhantomData,
        }
    }

    pub(crate) fn as_raw(&self) -> *mut bindings::scatterlist {
        self.sgl.as_ptr()
    }
}

/// The buffers of one device request, in the order the device takes them:
/// every device-readable piece before every device-writable one, written
/// straight into the C lists of an [`SgLists`] (a single buffer gets an
/// entry of the lists' own), borrowed for `'a`. The counts live here, apart
/// from the lists the C code is handed, so that they stay in registers.
pub(crate) struct Sgs<'a> {
    l: &'a mut SgLists,
    n: usize,
    out: u32,
    inn: u32,
    /// A piece was refused (too many, or readable after writable).
    bad: bool,
}

impl<'a> Sgs<'a> {
    /// Pieces one request may have: a header, protection information,
    /// data and a response (a request carries data one way only).
    pub(crate) const MAX: usize = 4;

    /// Describes a request into `l`.
    pub(crate) fn new(l: &'a mut SgLists) -> Self {
        Self {
            l,
            n: 0,
            out: 0,
            inn: 0,
            bad: false,
        }
    }

    /// The next list slot, if a piece is allowed there (room left, no
    /// readable piece after a writable one); else the lists are refused.
    fn slot(&mut self, readable: bool) -> Option<usize> {
        if self.n >= Self::MAX || (readable && self.inn > 0) {
            self.bad = true;
            return None;
        }
        // At most `MAX` of each: no overflow.
        if readable {
            self.out += 1;
        } else {
            self.inn += 1;
        }
        self.n += 1;
        Some(self.n - 1)
    }

    fn one(&mut self, ptr: *mut c_void, len: u32, readable: bool) {
        if let Some(i) = self.slot(readable) {
            let sg = self.l.ones[i].as_mut_ptr();
            // SAFETY: `sg` is valid for writes of one scatterlist, which
            // `sg_init_one` initialises whole (it clears the entry before
            // setting it) to record `ptr` and `len`.
            unsafe { bindings::sg_init_one(sg, ptr, len) };
            self.l.lists[i] = sg;
        }
    }

    fn chain(&mut self, sgl: *mut bindings::scatterlist, readable: bool) {
        if let Some(i) = self.slot(readable) {
            self.l.lists[i] = sgl;
        }
    }

    /// The first `len` bytes (at most `N`) of `b`, for the device to read.
    pub(crate) fn readable<const N: usize>(&mut self, b: &'a DmaBytes<N>, len: usize) {
        self.one(b.as_ptr(), len.min(N) as u32, true);
    }

    /// `b`, for the device to write.
    pub(crate) fn writable<const N: usize>(&mut self, b: &'a DmaBytes<N>) {
        self.one(b.as_ptr(), N as u32, false);
    }

    /// A chain for the device to read.
    pub(crate) fn readable_chain(&mut self, c: SgChain<'a>) {
        self.chain(c.as_raw(), true);
    }

    /// A chain for the device to write.
    pub(crate) fn writable_chain(&mut self, c: SgChain<'a>) {
        self.chain(c.as_raw(), false);
    }

    /// How many lists the request has, and of them readable and writable;
    /// `EINVAL` if a piece was refused or there is none.
    pub(crate) fn counts(&self) -> kernel::error::Result<(usize, u32, u32)> {
        if self.bad || self.n == 0 {
            return Err(kernel::error::code::EINVAL);
        }
        Ok((self.n, self.out, self.inn))
    }
}

/// The C lists `virtqueue_add_sgs` takes, as an [`Sgs`] wrote them, kept
/// where the queue adds the request (its stack): they outlive the borrow of
/// what they describe, which only a queue that took the owner uses.
pub(crate) struct SgLists {
    /// The entries of single buffers; entry `i` initialised when `lists[i]`
    /// points to it.
    ones: [MaybeUninit<bindings::scatterlist>; Sgs::MAX],
    lists: [*mut bindings::scatterlist; Sgs::MAX],
}

impl SgLists {
    pub(crate) fn new() -> Self {
        Self {
            ones: [const { MaybeUninit::uninit() }; Sgs::MAX],
            lists: [core::ptr::null_mut(); Sgs::MAX],
        }
    }

    /// The first `n` list pointers (at most all), as [`Sgs::counts`] gave
    /// their number.
    pub(crate) fn lists(&mut self, n: usize) -> &mut [*mut bindings::scatterlist] {
        let n = n.min(Sgs::MAX);
        &mut self.lists[..n]
    }
}
