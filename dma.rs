// SPDX-License-Identifier: GPL-2.0

//! Memory a device reads or writes by DMA, and the ownership rule that keeps
//! it alive while the device has it. Nothing here knows a bus or a queue:
//! `virtio` takes buffers described this way, `scsi` hands out commands that
//! own such buffers.

use crate::bindings;
use core::{cell::UnsafeCell, ffi::c_void, marker::PhantomData, ptr::NonNull};

/// Bytes a device may read or write at any time by DMA.
///
/// The CPU only copies the whole array in or out with volatile accesses, so a
/// device writing meanwhile can make the copy stale or torn, never invalid
/// (every byte pattern is a valid `[u8; N]`), and no Rust reference to the
/// bytes themselves exists to be invalidated.
#[repr(transparent)]
pub(crate) struct DmaBytes<const N: usize>(UnsafeCell<[u8; N]>);

// SAFETY: Every access is a volatile copy of plain bytes (see the type's
// documentation), so sharing between tasks cannot produce an invalid value.
unsafe impl<const N: usize> Sync for DmaBytes<N> {}

// SAFETY: All zeroes is a valid `[u8; N]`.
unsafe impl<const N: usize> pin_init::Zeroable for DmaBytes<N> {}

impl<const N: usize> DmaBytes<N> {
    /// A copy of the bytes as they are now.
    pub(crate) fn read(&self) -> [u8; N] {
        // SAFETY: The pointer is valid and aligned for `[u8; N]` (it comes
        // from `&self`); any bytes are a valid value (type documentation).
        unsafe { self.0.get().read_volatile() }
    }

    /// Replaces the bytes with `bytes` (at most `N`), the rest zero.
    pub(crate) fn write(&self, bytes: &[u8]) {
        let mut a = [0u8; N];
        let n = bytes.len().min(N);
        a[..n].copy_from_slice(&bytes[..n]);
        // SAFETY: The pointer is valid and aligned for `[u8; N]` (it comes
        // from `&self`); one volatile store of the whole array.
        unsafe { self.0.get().write_volatile(a) };
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

/// One piece of a device request: a chain or a single buffer.
#[derive(Clone, Copy)]
enum Piece<'a> {
    Chain(SgChain<'a>),
    One(*mut c_void, u32, PhantomData<&'a ()>),
}

/// The buffers of one device request, in the order the device takes them:
/// every device-readable piece before every device-writable one.
pub(crate) struct Sgs<'a> {
    pieces: [Option<Piece<'a>>; Sgs::MAX],
    out: usize,
    inn: usize,
    /// A piece was refused (too many, or readable after writable).
    bad: bool,
}

impl<'a> Sgs<'a> {
    /// Pieces one request may have.
    pub(crate) const MAX: usize = 6;

    pub(crate) fn new() -> Self {
        Self {
            pieces: [None; Self::MAX],
            out: 0,
            inn: 0,
            bad: false,
        }
    }

    fn push(&mut self, p: Piece<'a>, readable: bool) {
        let n = self.out + self.inn;
        if n >= Self::MAX || (readable && self.inn > 0) {
            self.bad = true;
            return;
        }
        self.pieces[n] = Some(p);
        if readable {
            self.out += 1;
        } else {
            self.inn += 1;
        }
    }

    /// The first `len` bytes (at most `N`) of `b`, for the device to read.
    pub(crate) fn readable<const N: usize>(&mut self, b: &'a DmaBytes<N>, len: usize) {
        self.push(Piece::One(b.as_ptr(), len.min(N) as u32, PhantomData), true);
    }

    /// `b`, for the device to write.
    pub(crate) fn writable<const N: usize>(&mut self, b: &'a DmaBytes<N>) {
        self.push(Piece::One(b.as_ptr(), N as u32, PhantomData), false);
    }

    /// A chain for the device to read.
    pub(crate) fn readable_chain(&mut self, c: SgChain<'a>) {
        self.push(Piece::Chain(c), true);
    }

    /// A chain for the device to write.
    pub(crate) fn writable_chain(&mut self, c: SgChain<'a>) {
        self.push(Piece::Chain(c), false);
    }

    /// The pieces without their borrow, for the queue to use once the owner
    /// of what they describe has been given away. `EINVAL` if a piece was
    /// refused or there is none.
    pub(crate) fn lower(&self) -> kernel::error::Result<RawSgs> {
        let n = self.out + self.inn;
        if self.bad || n == 0 {
            return Err(kernel::error::code::EINVAL);
        }
        let mut pieces = [RawPiece::Chain(core::ptr::null_mut()); Self::MAX];
        for (raw, p) in pieces.iter_mut().zip(&self.pieces[..n]) {
            *raw = match p {
                Some(Piece::Chain(c)) => RawPiece::Chain(c.as_raw()),
                Some(Piece::One(ptr, len, _)) => RawPiece::One(*ptr, *len),
                None => return Err(kernel::error::code::EINVAL),
            };
        }
        Ok(RawSgs {
            pieces,
            n,
            out: self.out as u32,
            inn: self.inn as u32,
        })
    }
}

#[derive(Clone, Copy)]
enum RawPiece {
    Chain(*mut bindings::scatterlist),
    One(*mut c_void, u32),
}

/// The pieces of an [`Sgs`] as raw pointers: only a queue that took the
/// owner of the memory uses them.
pub(crate) struct RawSgs {
    pieces: [RawPiece; Sgs::MAX],
    n: usize,
    out: u32,
    inn: u32,
}

impl RawSgs {
    /// Calls `f` with the C arrays `virtqueue_add_sgs` takes (the list
    /// pointers, readable and writable counts), built on the stack.
    pub(crate) fn with_lists<R>(
        &self,
        f: impl FnOnce(&mut [*mut bindings::scatterlist], u32, u32) -> R,
    ) -> R {
        let mut ones: [bindings::scatterlist; Sgs::MAX] = pin_init::zeroed();
        let mut lists = [core::ptr::null_mut(); Sgs::MAX];
        for (i, p) in self.pieces[..self.n].iter().enumerate() {
            lists[i] = match *p {
                RawPiece::Chain(c) => c,
                RawPiece::One(ptr, len) => {
                    // SAFETY: `ones[i]` is a valid scatterlist to initialise;
                    // it only records `ptr` and `len`.
                    unsafe { bindings::sg_init_one(&mut ones[i], ptr, len) };
                    &raw mut ones[i]
                }
            };
        }
        f(&mut lists[..self.n], self.out, self.inn)
    }
}
