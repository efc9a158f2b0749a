// SPDX-License-Identifier: GPL-2.0

//! Safe wrappers over the SCSI midlayer, for any low-level driver: a host
//! template typed by the driver's operations, a `Scsi_Host` that is added
//! once and removed when dropped, commands owned by the driver from
//! `queuecommand` until it completes them (exactly once, by type), what
//! error handling may look at, and references to hosts and devices for
//! scanning.

use crate::{bindings, dma};
use core::{
    ffi::c_void,
    marker::PhantomData,
    mem::{align_of, size_of},
    ptr::NonNull,
    sync::atomic::{AtomicU32, Ordering::Acquire},
};
use kernel::{
    device,
    error::{to_result, VTABLE_DEFAULT_ERROR},
    ffi::{c_char, c_int, c_uint},
    prelude::*,
    types::ForeignOwnable,
    ThisModule,
};

/// The host's data as the driver's callbacks see it.
pub(crate) type HostRef<'a, T> = <<T as Operations>::HostData as ForeignOwnable>::Borrowed<'a>;

/// What the midlayer calls: a low-level driver's operations.
#[vtable]
pub(crate) trait Operations: Sized + 'static {
    /// The driver's state of a host, kept in the host's private area from
    /// [`Host::add`] until the host is removed.
    type HostData: ForeignOwnable + Send + Sync;
    /// The driver's part of every command (`cmd_size`): zeroed once, when
    /// the midlayer allocates the command (`init_cmd_priv`, which also spares
    /// the midlayer's zeroing before each `queuecommand`), then as the
    /// previous command on it left it.
    type CmdData: pin_init::Zeroable + Sync;

    /// Start `cmd` (`queuecommand`): give it to the device, complete it, or
    /// hand it back as [`Busy`] for the midlayer to retry.
    fn queue_command(host: HostRef<'_, Self>, cmd: Command<Self>) -> Result<(), Busy<Self>>;
    /// Notify the device of commands queued without their last flag.
    fn commit_rqs(_host: HostRef<'_, Self>, _hwq: u16) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
    /// Complete what is done on poll queue `hwq`; returns how many.
    fn mq_poll(_host: HostRef<'_, Self>, _hwq: u32) -> i32 {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
    /// Lay out the hardware queues of the tag set.
    fn map_queues(_host: HostRef<'_, Self>, _maps: &mut QueueMaps<'_>) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
    /// Upper bound for a device's queue depth (`change_queue_depth`).
    fn max_queue_depth(_host: HostRef<'_, Self>) -> i32 {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
    /// A command timed out: `true` to give it more time (the timer restarts),
    /// `false` to let the midlayer's error handling abort it.
    fn eh_timed_out(_host: HostRef<'_, Self>, _cmd: &EhCommand<'_>) -> bool {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
    /// Abort `cmd` (`eh_abort_handler`).
    fn eh_abort(_host: HostRef<'_, Self>, _cmd: &EhCommand<'_>) -> EhOutcome {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
    /// Reset the LUN of `cmd` (`eh_device_reset_handler`).
    fn eh_device_reset(_host: HostRef<'_, Self>, _cmd: &EhCommand<'_>) -> EhOutcome {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
    /// Reset the target of `cmd` (`eh_target_reset_handler`).
    fn eh_target_reset(_host: HostRef<'_, Self>, _cmd: &EhCommand<'_>) -> EhOutcome {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
    /// Reset the whole host (`eh_host_reset_handler`).
    fn eh_host_reset(_host: HostRef<'_, Self>, _cmd: &EhCommand<'_>) -> EhOutcome {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
    /// A LUN is being allocated, before it is probed (`sdev_init`).
    fn sdev_init(_host: HostRef<'_, Self>, _sdev: &mut NewDevice<'_>) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
    /// A LUN was found and is about to be attached (`sdev_configure`).
    fn sdev_configure(_host: HostRef<'_, Self>, _sdev: &mut ScsiDevice<'_>) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// What an error handler reports to the midlayer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum EhOutcome {
    /// The step worked (`SUCCESS`): the commands it covers are done.
    Success,
    /// It did not (`FAILED`): the midlayer escalates.
    Failed,
}

impl EhOutcome {
    fn to_c(self) -> c_int {
        match self {
            Self::Success => bindings::scsi_disposition_SUCCESS as c_int,
            Self::Failed => bindings::scsi_disposition_FAILED as c_int,
        }
    }
}

/// A `struct scsi_host_template` for hosts driven by `T`, immutable once
/// made.
pub(crate) struct Template<T: Operations>(bindings::scsi_host_template, PhantomData<T>);

// SAFETY: The template is never written after `new`; it only points to
// `'static` strings, the module, and functions.
unsafe impl<T: Operations> Send for Template<T> {}
// SAFETY: As above.
unsafe impl<T: Operations> Sync for Template<T> {}

impl<T: Operations> Template<T> {
    /// The template of hosts driven by `T`.
    pub(crate) fn new(
        module: &'static ThisModule,
        name: &'static CStr,
        proc_name: &'static CStr,
    ) -> Self {
        let mut t: bindings::scsi_host_template = pin_init::zeroed();
        t.module = module.as_ptr();
        t.name = name.as_char_ptr();
        t.proc_name = proc_name.as_char_ptr();
        t.this_id = -1;
        // The private area follows the command: aligned as the command is.
        const { assert!(align_of::<T::CmdData>() <= align_of::<bindings::scsi_cmnd>()) };
        t.cmd_size = size_of::<T::CmdData>() as c_uint;
        t.init_cmd_priv = Some(init_cmd_priv::<T>);
        t.queuecommand = Some(queuecommand::<T>);
        t.commit_rqs = if T::HAS_COMMIT_RQS {
            Some(commit_rqs::<T>)
        } else {
            None
        };
        t.mq_poll = if T::HAS_MQ_POLL {
            Some(mq_poll::<T>)
        } else {
            None
        };
        t.map_queues = if T::HAS_MAP_QUEUES {
            Some(map_queues::<T>)
        } else {
            None
        };
        t.change_queue_depth = if T::HAS_MAX_QUEUE_DEPTH {
            Some(change_queue_depth::<T>)
        } else {
            None
        };
        t.eh_timed_out = if T::HAS_EH_TIMED_OUT {
            Some(eh_timed_out::<T>)
        } else {
            None
        };
        t.sdev_init = if T::HAS_SDEV_INIT {
            Some(sdev_init::<T>)
        } else {
            None
        };
        t.sdev_configure = if T::HAS_SDEV_CONFIGURE {
            Some(sdev_configure::<T>)
        } else {
            None
        };
        t.eh_abort_handler = if T::HAS_EH_ABORT {
            Some(eh_abort::<T>)
        } else {
            None
        };
        t.eh_device_reset_handler = if T::HAS_EH_DEVICE_RESET {
            Some(eh_device_reset::<T>)
        } else {
            None
        };
        t.eh_target_reset_handler = if T::HAS_EH_TARGET_RESET {
            Some(eh_target_reset::<T>)
        } else {
            None
        };
        t.eh_host_reset_handler = if T::HAS_EH_HOST_RESET {
            Some(eh_host_reset::<T>)
        } else {
            None
        };
        t.dma_boundary = u32::MAX as usize;
        t.set_track_queue_depth(1);
        // No bus to settle: a host reset handler returns once the device has
        // been reset, so the midlayer's 10 s sleep after it would only stall
        // error handling.
        t.set_skip_settle_delay(1);
        Self(t, PhantomData)
    }
}

/// Limits and shape of a host, set before it is added.
pub(crate) struct HostParams {
    pub(crate) can_queue: u32,
    pub(crate) sg_tablesize: u16,
    pub(crate) max_sectors: u32,
    pub(crate) cmd_per_lun: u16,
    pub(crate) max_id: u32,
    pub(crate) max_lun: u64,
    pub(crate) max_cmd_len: u16,
    /// Hardware queues.
    pub(crate) nr_hw_queues: u32,
    /// Queue maps: 1, or 3 when there are poll queues.
    pub(crate) nr_maps: u32,
    /// The device checks T10 protection information (DIF types 1-3, DIX
    /// with a CRC guard).
    pub(crate) t10_pi: bool,
}

/// A `Scsi_Host` driven by `T`, allocated and not added yet.
///
/// # Invariants
///
/// `shost` was allocated from a `Template<T>` with one pointer of private
/// area, which holds null; this value holds the allocation's reference.
pub(crate) struct Host<T: Operations> {
    shost: NonNull<bindings::Scsi_Host>,
    _ops: PhantomData<T>,
}

// SAFETY: The midlayer's host API may be used from any task.
unsafe impl<T: Operations> Send for Host<T> {}

impl<T: Operations> Host<T> {
    /// Allocates a host from `template` with the limits of `p`.
    pub(crate) fn alloc(template: &'static Template<T>, p: &HostParams) -> Result<Self> {
        // SAFETY: The template is `'static`; the private area holds one
        // pointer, zeroed by the allocation.
        let shost =
            unsafe { bindings::scsi_host_alloc(&template.0, size_of::<*mut c_void>() as c_int) };
        let shost = NonNull::new(shost).ok_or(ENOMEM)?;
        let h = shost.as_ptr();
        // SAFETY: The host is ours alone until it is added.
        unsafe {
            (*h).can_queue = p.can_queue as c_int;
            (*h).sg_tablesize = p.sg_tablesize;
            (*h).max_sectors = p.max_sectors;
            (*h).cmd_per_lun = p.cmd_per_lun as i16;
            (*h).max_id = p.max_id;
            (*h).max_lun = p.max_lun;
            (*h).max_channel = 0;
            (*h).max_cmd_len = p.max_cmd_len;
            (*h).nr_hw_queues = p.nr_hw_queues;
            (*h).nr_maps = p.nr_maps;
            if p.t10_pi {
                (*h).prot_capabilities =
                    bindings::scsi_host_prot_capabilities_SHOST_DIF_TYPE1_PROTECTION
                        | bindings::scsi_host_prot_capabilities_SHOST_DIF_TYPE2_PROTECTION
                        | bindings::scsi_host_prot_capabilities_SHOST_DIF_TYPE3_PROTECTION
                        | bindings::scsi_host_prot_capabilities_SHOST_DIX_TYPE1_PROTECTION
                        | bindings::scsi_host_prot_capabilities_SHOST_DIX_TYPE2_PROTECTION
                        | bindings::scsi_host_prot_capabilities_SHOST_DIX_TYPE3_PROTECTION;
                (*h).prot_guard_type = bindings::scsi_host_guard_type_SHOST_DIX_GUARD_CRC as u8;
            }
        }
        Ok(Self {
            shost,
            _ops: PhantomData,
        })
    }

    /// Adds the host below `dev` with `data` answering the midlayer's calls.
    /// The host is added once: this consumes it.
    pub(crate) fn add(self, data: T::HostData, dev: &device::Device) -> Result<AddedHost<T>> {
        let shost = self.shost;
        // The allocation's reference goes to the added host (or is put below).
        core::mem::forget(self);
        let ptr = data.into_foreign();
        // SAFETY: The host is live; nothing reads the private area before
        // `scsi_add_host` publishes the host (`map_queues` runs inside it).
        unsafe { *priv_slot(shost) = ptr };
        // SAFETY: The host is live and not added; `dev` is live for the call
        // and the midlayer takes its own reference.
        let ret =
            unsafe { bindings::scsi_add_host_with_dma(shost.as_ptr(), raw_dev(dev), raw_dev(dev)) };
        if let Err(e) = to_result(ret) {
            // SAFETY: Not added, so no callback holds a borrow; `ptr` came
            // from `into_foreign` above; the reference is the allocation's.
            unsafe {
                drop(T::HostData::from_foreign(ptr));
                bindings::scsi_host_put(shost.as_ptr());
            }
            return Err(e);
        }
        Ok(AddedHost {
            shost,
            _ops: PhantomData,
        })
    }
}

impl<T: Operations> Drop for Host<T> {
    fn drop(&mut self) {
        // SAFETY: The reference from `scsi_host_alloc` is ours (type
        // invariant); the host was never added.
        unsafe { bindings::scsi_host_put(self.shost.as_ptr()) };
    }
}

/// An added `Scsi_Host` driven by `T`. Dropping it removes it (the midlayer
/// stops calling in and waits for every command, so the device must still
/// work), drops the host data and puts the allocation's reference.
///
/// # Invariants
///
/// `shost` is added, with the private area holding `T::HostData` from
/// `into_foreign`, and the allocation's reference held by this value.
pub(crate) struct AddedHost<T: Operations> {
    shost: NonNull<bindings::Scsi_Host>,
    _ops: PhantomData<T>,
}

// SAFETY: The midlayer's host API may be used from any task.
unsafe impl<T: Operations> Send for AddedHost<T> {}
// SAFETY: `&AddedHost` allows reads and scans, which take the midlayer's locks.
unsafe impl<T: Operations> Sync for AddedHost<T> {}

impl<T: Operations> AddedHost<T> {
    /// The midlayer's host number (`hostN`).
    pub(crate) fn host_no(&self) -> u32 {
        // SAFETY: The host is live (type invariant); `host_no` is set at alloc.
        unsafe { (*self.shost.as_ptr()).host_no }
    }

    /// A counted reference to the host, for work that runs outside the
    /// driver's callbacks (event handling).
    pub(crate) fn handle(&self) -> HostHandle {
        // SAFETY: The host is live (type invariant); the reference taken is
        // put when the handle drops.
        unsafe { bindings::scsi_host_get(self.shost.as_ptr()) };
        HostHandle(self.shost)
    }
}

impl<T: Operations> Drop for AddedHost<T> {
    fn drop(&mut self) {
        let shost = self.shost;
        // SAFETY: The host is live and added (type invariant). After
        // `scsi_remove_host` the midlayer makes no more calls that borrow the
        // private area, whose pointer came from `add`; the reference is ours.
        unsafe {
            bindings::scsi_remove_host(shost.as_ptr());
            drop(T::HostData::from_foreign(*priv_slot(shost)));
            bindings::scsi_host_put(shost.as_ptr());
        }
    }
}

/// The private area of a host allocated by [`Host::alloc`] (one pointer).
///
/// # Safety
///
/// `shost` is live and was allocated by [`Host::alloc`].
unsafe fn priv_slot(shost: NonNull<bindings::Scsi_Host>) -> *mut *mut c_void {
    // SAFETY: The host is live; its private area holds one pointer.
    unsafe { (*shost.as_ptr()).hostdata.as_mut_ptr().cast() }
}

/// The C `struct device` of `dev` (`device::Device` is a transparent wrapper).
fn raw_dev(dev: &device::Device) -> *mut bindings::device {
    core::ptr::from_ref(dev).cast_mut().cast()
}

/// The host data of the host that `shost` belongs to.
///
/// # Safety
///
/// `shost` is a live host added by [`Host::add`] for `T` and not removed yet
/// (the midlayer calls the template's functions only then), and the borrow
/// does not outlive the callback.
unsafe fn host_data<'a, T: Operations>(shost: *mut bindings::Scsi_Host) -> HostRef<'a, T> {
    // SAFETY: The caller guarantees the host is added, so its private area
    // holds the data from `add` until `remove`, after which the midlayer makes
    // no calls.
    unsafe { T::HostData::borrow(*(*shost).hostdata.as_mut_ptr().cast::<*mut c_void>()) }
}

/// Which way the data of a command goes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataDir {
    /// No data.
    None,
    /// Guest to device (WRITE).
    ToDevice,
    /// Device to guest (READ).
    FromDevice,
    /// Both (bidirectional commands).
    Both,
}

/// Protection information of a command (T10 PI): its sectors and its disk's
/// integrity profile.
pub(crate) struct Integrity {
    /// 512-byte sectors of the request.
    pub(crate) sectors: u32,
    /// Protection interval, log2 of bytes.
    pub(crate) interval_exp: u8,
    /// Bytes of protection information per interval.
    pub(crate) metadata_size: u8,
}

/// Target id and LUN of a live command (`sdev->id`, `sdev->lun`).
///
/// # Safety
///
/// `sc` is a live midlayer command with a live device.
unsafe fn address(sc: *mut bindings::scsi_cmnd) -> (u32, u64) {
    // SAFETY: The caller guarantees the command and its device are live.
    unsafe {
        let sdev = (*sc).device;
        ((*sdev).id, (*sdev).lun)
    }
}

/// The block-layer tag of a live command that came through blk-mq (not one
/// the midlayer made up for a reset ioctl, which has no hardware queue).
///
/// # Safety
///
/// `sc` is a live command whose request was dispatched by blk-mq.
unsafe fn unique_tag(sc: *mut bindings::scsi_cmnd) -> u32 {
    // SAFETY: The request precedes the command in memory and, dispatched by
    // blk-mq, has its hardware queue set.
    unsafe { bindings::blk_mq_unique_tag(cmd_to_rq(sc)) }
}

/// A command the midlayer handed to `queuecommand`, owned by the driver
/// until it completes it ([`Command::complete`], which consumes it) or hands
/// it back ([`Command::busy`]). While it rides on a device queue, only the
/// raw pointer of [`dma::Owned`] stands for it.
///
/// # Invariants
///
/// `sc` is a live command of a host from a `Template<T>`, with a live device;
/// the driver owns it: it has not been completed or handed back.
pub(crate) struct Command<T: Operations> {
    sc: NonNull<bindings::scsi_cmnd>,
    _ops: PhantomData<T>,
}

// SAFETY: A command may be completed from any task or interrupt.
unsafe impl<T: Operations> Send for Command<T> {}

// The command, its private area (`T::CmdData`) and its data and protection
// tables stay valid and in place until it is completed, which needs the
// `Command` back.
// SAFETY: `into_raw` hands out the command pointer, `from_raw` rebuilds it.
unsafe impl<T: Operations> dma::Owned for Command<T> {
    fn into_raw(self) -> NonNull<c_void> {
        let p = self.sc.cast();
        core::mem::forget(self);
        p
    }

    unsafe fn from_raw(ptr: NonNull<c_void>) -> Self {
        Self {
            sc: ptr.cast(),
            _ops: PhantomData,
        }
    }
}

/// A command the driver could not start now: the midlayer retries it.
pub(crate) struct Busy<T: Operations>(Command<T>, BusyScope);

/// What a [`Busy`] command waits for.
#[derive(Clone, Copy)]
enum BusyScope {
    /// Room on the host (`SCSI_MLQUEUE_HOST_BUSY`): the midlayer holds back
    /// every LUN of the host and puts the LUNs it refuses on the host's
    /// starved list, run as commands complete.
    Host,
    /// This LUN only (`SCSI_MLQUEUE_DEVICE_BUSY`): its commands are retried
    /// as its own complete, or after a short delay when it has none.
    Device,
}

impl<T: Operations> Command<T> {
    fn raw(&self) -> *mut bindings::scsi_cmnd {
        self.sc.as_ptr()
    }

    /// Target id (`sdev->id`).
    pub(crate) fn target(&self) -> u32 {
        // SAFETY: The command and its device are live (type invariant).
        unsafe { address(self.raw()) }.0
    }

    /// LUN as the midlayer numbers it (`sdev->lun`).
    pub(crate) fn lun(&self) -> u64 {
        // SAFETY: As in `target`.
        unsafe { address(self.raw()) }.1
    }

    /// Block-layer tag, unique across the host's hardware queues (hardware
    /// queue in bits 31..16).
    pub(crate) fn unique_tag(&self) -> u32 {
        // SAFETY: The command is live and came through `queuecommand`, so
        // blk-mq dispatched its request.
        unsafe { unique_tag(self.raw()) }
    }

    /// Block-layer tag within its hardware queue (bits 15..0 of
    /// [`Command::unique_tag`]), read without a call.
    pub(crate) fn tag(&self) -> u32 {
        // SAFETY: The request precedes the live command; blk-mq set its tag
        // (a non-negative index into the queue's tags) before dispatching it.
        (unsafe { (*cmd_to_rq(self.raw())).tag }) as u32 & 0xffff
    }

    /// The CDB buffer: the CDB's `cmd_len` bytes, then zeroes (the midlayer
    /// clears it before building a command).
    pub(crate) fn cdb_buf(&self) -> &[u8; 32] {
        // SAFETY: The command is live; `cmnd` is an array in it, not written
        // while the driver owns the command.
        unsafe { &(*self.raw()).cmnd }
    }

    /// The CDB.
    pub(crate) fn cdb(&self) -> &[u8] {
        // SAFETY: The command is live; `cmnd` is an array in it, not written
        // while the driver owns the command.
        let (cmnd, len) = unsafe { (&(*self.raw()).cmnd, (*self.raw()).cmd_len) };
        &cmnd[..(len as usize).min(cmnd.len())]
    }

    /// The request's I/O priority (`IOPRIO_PRIO_VALUE`), as
    /// `req_get_ioprio`: its first bio's, or none.
    pub(crate) fn ioprio(&self) -> u16 {
        // SAFETY: The request precedes the live command; its bios live as
        // long as it.
        unsafe {
            let bio = (*cmd_to_rq(self.raw())).bio;
            if bio.is_null() {
                0
            } else {
                (*bio).bi_ioprio
            }
        }
    }

    /// Whether this is the last command of a batch (notify the device now).
    pub(crate) fn is_last(&self) -> bool {
        // SAFETY: The command is live.
        unsafe { (*self.raw()).flags as u32 & bindings::SCMD_LAST != 0 }
    }

    /// Which way its data goes.
    pub(crate) fn data_dir(&self) -> DataDir {
        // SAFETY: The command is live.
        match unsafe { (*self.raw()).sc_data_direction } {
            bindings::dma_data_direction_DMA_TO_DEVICE => DataDir::ToDevice,
            bindings::dma_data_direction_DMA_FROM_DEVICE => DataDir::FromDevice,
            bindings::dma_data_direction_DMA_BIDIRECTIONAL => DataDir::Both,
            _ => DataDir::None,
        }
    }

    /// Bytes the command is to transfer.
    pub(crate) fn transfer_len(&self) -> u32 {
        // SAFETY: The command is live.
        unsafe { (*self.raw()).sdb.length }
    }

    /// The data buffers, if any.
    pub(crate) fn data(&self) -> Option<dma::SgChain<'_>> {
        // SAFETY: The command is live; its table, when it has entries, is a
        // terminated chain describing the request's pages, valid until the
        // command completes (which needs `self`).
        unsafe {
            let t = &(*self.raw()).sdb.table;
            let sgl = NonNull::new(t.sgl).filter(|_| t.nents > 0)?;
            Some(dma::SgChain::from_raw(sgl))
        }
    }

    /// The protection information buffers (T10 PI), if the block layer
    /// attached some.
    pub(crate) fn protection(&self) -> Option<dma::SgChain<'_>> {
        // SAFETY: As in `data`, for `prot_sdb`, which when set is the
        // command's protection table.
        unsafe {
            let prot = (*self.raw()).prot_sdb;
            if prot.is_null() || (*prot).table.nents == 0 {
                return None;
            }
            Some(dma::SgChain::from_raw(NonNull::new((*prot).table.sgl)?))
        }
    }

    /// The command's protection information layout, if it carries some.
    pub(crate) fn integrity(&self) -> Option<Integrity> {
        self.protection()?;
        let rq = cmd_to_rq(self.raw());
        // SAFETY: The request precedes the live command; its disk's profile
        // outlives it.
        unsafe {
            let bi = bindings::vsrs_rq_integrity(rq);
            if bi.is_null() {
                return None;
            }
            Some(Integrity {
                // `blk_rq_sectors`.
                sectors: (*rq).__data_len >> 9,
                interval_exp: (*bi).interval_exp,
                metadata_size: (*bi).metadata_size,
            })
        }
    }

    /// The driver's part of the command.
    pub(crate) fn private(&self) -> &T::CmdData {
        // The midlayer allocated `cmd_size` bytes for a `T::CmdData` right
        // after the command (the template is `Template<T>`), aligned for it
        // (checked in `Template::new`); `init_cmd_priv` zeroed them.
        let data = self.raw().wrapping_add(1).cast::<T::CmdData>();
        // SAFETY: `data` points to those bytes, live while the command borrowed
        // through `self` is; valid since zeroed (`Zeroable`) and changed since only
        // through shared references (`CmdData` is `Sync`: interior mutability).
        unsafe { &*data }
    }

    /// Completes the command: `result` (host byte << 16 | status), residual
    /// `resid`, sense data `sense` (at most the sense buffer's size).
    pub(crate) fn complete(self, result: u32, resid: u32, sense: &[u8]) {
        let sc = self.raw();
        core::mem::forget(self);
        // SAFETY: The driver owns the live command (type invariant), and
        // gives it up here: `self` is consumed. The sense buffer holds
        // SCSI_SENSE_BUFFERSIZE bytes and the copy is bounded by that.
        unsafe {
            let n = sense.len().min(bindings::SCSI_SENSE_BUFFERSIZE as usize);
            if n > 0 {
                core::ptr::copy_nonoverlapping(sense.as_ptr(), (*sc).sense_buffer, n);
            }
            (*sc).resid_len = resid;
            (*sc).result = result as c_int;
            bindings::scsi_done(sc);
        }
    }

    /// Hands the command back to the midlayer, to be queued again once the
    /// host has room (a full queue shared by its LUNs).
    pub(crate) fn busy(self) -> Busy<T> {
        Busy(self, BusyScope::Host)
    }

    /// Hands the command back to the midlayer, to be retried for its LUN
    /// alone: for a wait that is not about room, such as a device reset.
    /// While the host has starved LUNs, every completion schedules its LUN's
    /// requeue work, and a LUN that a scan probes and destroys right after
    /// its last completion can have that work run its destroyed queue.
    pub(crate) fn busy_device(self) -> Busy<T> {
        Busy(self, BusyScope::Device)
    }
}

impl<T: Operations> Drop for Command<T> {
    /// A command dropped without being completed would never come back:
    /// complete it with `DID_ERROR`.
    fn drop(&mut self) {
        let sc = self.raw();
        // SAFETY: As in `complete`: the driver owned it and gives it up.
        unsafe {
            (*sc).result = (bindings::scsi_host_status_DID_ERROR << 16) as c_int;
            bindings::scsi_done(sc);
        }
    }
}

/// `scsi_cmd_to_rq` (`blk_mq_rq_from_pdu`): the request right before the
/// command. Pointer arithmetic only: using the result needs a live command.
fn cmd_to_rq(sc: *mut bindings::scsi_cmnd) -> *mut bindings::request {
    sc.cast::<bindings::request>().wrapping_sub(1)
}

/// # Safety
///
/// Called by the midlayer for a host added by [`Host::add`] for `T`, with a
/// live command it gives to the driver.
unsafe extern "C" fn queuecommand<T: Operations>(
    shost: *mut bindings::Scsi_Host,
    sc: *mut bindings::scsi_cmnd,
) -> bindings::scsi_qc_status {
    let Some(sc) = NonNull::new(sc) else {
        return bindings::scsi_qc_status_SCSI_MLQUEUE_HOST_BUSY;
    };
    let cmd = Command::<T> {
        sc,
        _ops: PhantomData,
    };
    // SAFETY: The host is added (the midlayer calls only then).
    match T::queue_command(unsafe { host_data::<T>(shost) }, cmd) {
        Ok(()) => 0,
        Err(Busy(back, scope)) if back.sc == sc => {
            // The midlayer owns it again.
            core::mem::forget(back);
            match scope {
                BusyScope::Host => bindings::scsi_qc_status_SCSI_MLQUEUE_HOST_BUSY,
                BusyScope::Device => bindings::scsi_qc_status_SCSI_MLQUEUE_DEVICE_BUSY,
            }
        }
        Err(Busy(other, _)) => {
            // Another command the driver owned: this one was taken care of,
            // the other is completed with an error when dropped.
            drop(other);
            0
        }
    }
}

/// # Safety
///
/// Called by the midlayer once per command it allocates for a host of a
/// `Template<T>`: `cmd` has `cmd_size` bytes for a `T::CmdData` after it.
unsafe extern "C" fn init_cmd_priv<T: Operations>(
    _shost: *mut bindings::Scsi_Host,
    cmd: *mut bindings::scsi_cmnd,
) -> c_int {
    // SAFETY: The private area is `size_of::<T::CmdData>()` bytes right after
    // the command (function safety), nobody else uses it yet; all zeroes is
    // a valid `T::CmdData` (`Zeroable`).
    unsafe { core::ptr::write_bytes(cmd.add(1).cast::<T::CmdData>(), 0, 1) };
    0
}

/// # Safety
///
/// Called by the midlayer for a host added by [`Host::add`] for `T`.
unsafe extern "C" fn commit_rqs<T: Operations>(shost: *mut bindings::Scsi_Host, hwq: u16) {
    // SAFETY: The host is added.
    T::commit_rqs(unsafe { host_data::<T>(shost) }, hwq);
}

/// # Safety
///
/// Called by the midlayer for a host added by [`Host::add`] for `T`.
unsafe extern "C" fn mq_poll<T: Operations>(shost: *mut bindings::Scsi_Host, hwq: c_uint) -> c_int {
    // SAFETY: The host is added.
    T::mq_poll(unsafe { host_data::<T>(shost) }, hwq)
}

/// # Safety
///
/// Called by the midlayer while adding a host (after its private area is
/// set) or updating its queues.
unsafe extern "C" fn map_queues<T: Operations>(shost: *mut bindings::Scsi_Host) {
    let Some(h) = NonNull::new(shost) else {
        return;
    };
    let mut maps = QueueMaps {
        shost: h,
        _life: PhantomData,
    };
    // SAFETY: `map_queues` runs from `scsi_add_host` on, after `add` stored
    // the data.
    T::map_queues(unsafe { host_data::<T>(shost) }, &mut maps);
}

/// # Safety
///
/// Called by the midlayer with a live device of a host added by [`Host::add`].
unsafe extern "C" fn change_queue_depth<T: Operations>(
    sdev: *mut bindings::scsi_device,
    depth: c_int,
) -> c_int {
    // SAFETY: The device and its host are live, the host added.
    let max = T::max_queue_depth(unsafe { host_data::<T>((*sdev).host) });
    // SAFETY: `sdev` is live.
    unsafe { bindings::scsi_change_queue_depth(sdev, depth.clamp(1, max.max(1))) }
}

/// The queue maps of a host's tag set, handed to [`Operations::map_queues`].
pub(crate) struct QueueMaps<'a> {
    shost: NonNull<bindings::Scsi_Host>,
    _life: PhantomData<&'a mut bindings::Scsi_Host>,
}

/// Which queue map.
#[derive(Clone, Copy)]
#[repr(u32)]
pub(crate) enum MapType {
    /// Interrupt-driven queues.
    Default = bindings::hctx_type_HCTX_TYPE_DEFAULT,
    /// Read queues (unused: a count of 0).
    Read = bindings::hctx_type_HCTX_TYPE_READ,
    /// Poll queues.
    Poll = bindings::hctx_type_HCTX_TYPE_POLL,
}

impl QueueMaps<'_> {
    /// Number of maps in use (`nr_maps`).
    pub(crate) fn count(&self) -> u32 {
        // SAFETY: The host is live while `map_queues` runs.
        unsafe { (*self.shost.as_ptr()).nr_maps }
    }

    /// Gives map `t` the `nr` hardware queues from `offset`, spread over the
    /// CPUs along the interrupt affinity of `dev`'s vectors from
    /// `first_vector` (`Some`), or evenly (`None`). `EINVAL` for a map not
    /// in use or queues the host does not have.
    pub(crate) fn set(
        &mut self,
        t: MapType,
        nr: u32,
        offset: u32,
        affinity: Option<(&device::Device, u32)>,
    ) -> Result {
        let h = self.shost.as_ptr();
        // SAFETY: The host is live while `map_queues` runs.
        let hw = unsafe { (*h).nr_hw_queues };
        if t as u32 >= self.count() || offset.checked_add(nr).is_none_or(|end| end > hw) {
            return Err(EINVAL);
        }
        // SAFETY: `map` has HCTX_MAX_TYPES > `t` entries (checked against
        // `nr_maps` above), and `map_queues` may change them.
        unsafe {
            let map = &raw mut (*h).tag_set.map[t as usize];
            (*map).nr_queues = nr;
            (*map).queue_offset = offset;
            if nr == 0 {
                return Ok(());
            }
            match affinity {
                Some((dev, first)) => bindings::blk_mq_map_hw_queues(map, raw_dev(dev), first),
                None => bindings::blk_mq_map_queues(map),
            }
        }
        Ok(())
    }
}

/// A command the midlayer's error handling asks about: the midlayer owns
/// it, so only fields that never change are readable (not the driver's
/// data, which a device may still be writing).
///
/// # Invariants
///
/// `sc` is a live command with a live device.
pub(crate) struct EhCommand<'a> {
    sc: NonNull<bindings::scsi_cmnd>,
    _life: PhantomData<&'a bindings::scsi_cmnd>,
}

impl EhCommand<'_> {
    /// Target id.
    pub(crate) fn target(&self) -> u32 {
        // SAFETY: The command and its device are live (type invariant).
        unsafe { address(self.sc.as_ptr()) }.0
    }

    /// The midlayer's LUN number.
    pub(crate) fn lun(&self) -> u64 {
        // SAFETY: As in `target`.
        unsafe { address(self.sc.as_ptr()) }.1
    }

    /// Block-layer tag, unique across the host's hardware queues; `None`
    /// for a command the midlayer made up for a reset ioctl (`sg_reset`),
    /// which never went through blk-mq.
    pub(crate) fn unique_tag(&self) -> Option<u32> {
        let sc = self.sc.as_ptr();
        // SAFETY: The command is live; every midlayer command is preceded by
        // its request (the reset ioctl allocates one, zeroed, before it).
        let dispatched = unsafe { !(*cmd_to_rq(sc)).mq_hctx.is_null() };
        // SAFETY: A request with a hardware queue was dispatched by blk-mq.
        dispatched.then(|| unsafe { unique_tag(sc) })
    }
}

macro_rules! eh_entry {
    ($name:ident, $method:ident) => {
        /// # Safety
        ///
        /// Called by the midlayer's error handling with a live command of a
        /// host added by [`Host::add`].
        unsafe extern "C" fn $name<T: Operations>(sc: *mut bindings::scsi_cmnd) -> c_int {
            let Some(c) = NonNull::new(sc) else {
                return EhOutcome::Failed.to_c();
            };
            let cmd = EhCommand {
                sc: c,
                _life: PhantomData,
            };
            // SAFETY: The command's device and host are live, the host added.
            T::$method(unsafe { host_data::<T>((*(*sc).device).host) }, &cmd).to_c()
        }
    };
}
eh_entry!(eh_abort, eh_abort);
eh_entry!(eh_device_reset, eh_device_reset);
eh_entry!(eh_target_reset, eh_target_reset);
eh_entry!(eh_host_reset, eh_host_reset);

/// # Safety
///
/// Called by the midlayer with a live command of a host added by [`Host::add`].
unsafe extern "C" fn eh_timed_out<T: Operations>(
    sc: *mut bindings::scsi_cmnd,
) -> bindings::scsi_timeout_action {
    let Some(c) = NonNull::new(sc) else {
        return bindings::scsi_timeout_action_SCSI_EH_NOT_HANDLED;
    };
    let cmd = EhCommand {
        sc: c,
        _life: PhantomData,
    };
    // SAFETY: The command's device and host are live, the host added.
    if T::eh_timed_out(unsafe { host_data::<T>((*(*sc).device).host) }, &cmd) {
        bindings::scsi_timeout_action_SCSI_EH_RESET_TIMER
    } else {
        bindings::scsi_timeout_action_SCSI_EH_NOT_HANDLED
    }
}

/// A LUN being allocated (`sdev_init`), before the midlayer probes it.
///
/// # Invariants
///
/// `0` is a live device not yet visible to anyone else.
pub(crate) struct NewDevice<'a>(NonNull<bindings::scsi_device>, PhantomData<&'a mut ()>);

impl NewDevice<'_> {
    /// Asks the midlayer to read the VPD pages (transfer limits of
    /// passthrough LUNs) even of devices that claim an old SCSI version
    /// (`BLIST_TRY_VPD_PAGES`).
    pub(crate) fn try_vpd_pages(&mut self) {
        // SAFETY: The device is live and ours alone (type invariant).
        unsafe { (*self.0.as_ptr()).sdev_bflags |= bindings::VSRS_BLIST_TRY_VPD_PAGES };
    }
}

/// # Safety
///
/// Called by the midlayer with a new device of a host added by [`Host::add`].
unsafe extern "C" fn sdev_init<T: Operations>(sdev: *mut bindings::scsi_device) -> c_int {
    let Some(d) = NonNull::new(sdev) else {
        return EINVAL.to_errno();
    };
    let mut dev = NewDevice(d, PhantomData);
    // SAFETY: The device's host is live and added.
    T::sdev_init(unsafe { host_data::<T>((*sdev).host) }, &mut dev);
    0
}

/// A LUN being configured, before it is attached to its upper driver.
///
/// # Invariants
///
/// `0` is a live device of a host added by [`Host::add`], in `sdev_configure`.
pub(crate) struct ScsiDevice<'a>(NonNull<bindings::scsi_device>, PhantomData<&'a mut ()>);

impl ScsiDevice<'_> {
    /// Target id.
    pub(crate) fn target(&self) -> u32 {
        // SAFETY: The device is live (type invariant).
        unsafe { (*self.0.as_ptr()).id }
    }

    /// The midlayer's LUN number.
    pub(crate) fn lun(&self) -> u64 {
        // SAFETY: The device is live (type invariant).
        unsafe { (*self.0.as_ptr()).lun }
    }

    /// Whether it is a CD/DVD device (peripheral type 5).
    pub(crate) fn is_cdrom(&self) -> bool {
        // SAFETY: The device is live; `type_` was set from INQUIRY.
        unsafe { (*self.0.as_ptr()).type_ == bindings::TYPE_ROM as c_char }
    }

    /// Declares that the driver reports media changes (`SDEV_EVT_MEDIA_CHANGE`
    /// events reach user space as uevents).
    pub(crate) fn set_reports_media_change(&mut self) {
        let bit = bindings::scsi_device_event_SDEV_EVT_MEDIA_CHANGE as usize;
        // SAFETY: The device is live and not attached yet, so nothing else
        // touches its event mask; the bit lies in the first word.
        unsafe { (*self.0.as_ptr()).supported_events[0] |= 1 << bit };
    }
}

/// # Safety
///
/// Called by the midlayer with a live device of a host added by [`Host::add`].
unsafe extern "C" fn sdev_configure<T: Operations>(
    sdev: *mut bindings::scsi_device,
    _lim: *mut bindings::queue_limits,
) -> c_int {
    let Some(d) = NonNull::new(sdev) else {
        return EINVAL.to_errno();
    };
    let mut dev = ScsiDevice(d, PhantomData);
    // SAFETY: The device's host is live and added.
    T::sdev_configure(unsafe { host_data::<T>((*sdev).host) }, &mut dev);
    0
}

/// A counted reference to a `Scsi_Host`, for scanning and removing its
/// devices from process context. The midlayer refuses scans of a host being
/// removed, so these are harmless after the host is.
///
/// # Invariants
///
/// `0` is a host with a reference held by this value.
pub(crate) struct HostHandle(NonNull<bindings::Scsi_Host>);

// SAFETY: The midlayer's scan and device API may be used from any task.
unsafe impl Send for HostHandle {}
// SAFETY: As above; every method takes the midlayer's own locks.
unsafe impl Sync for HostHandle {}

impl Drop for HostHandle {
    fn drop(&mut self) {
        // SAFETY: The reference is ours (type invariant).
        unsafe { bindings::scsi_host_put(self.0.as_ptr()) };
    }
}

/// Whether a scan is still creating `sdev` (`SDEV_CREATED`, or
/// `SDEV_CREATED_BLOCK` on a blocked host). The scan moves it on only after
/// it allocated the budget map and sent commands of its own (whose waits are
/// full barriers), so a later state read with acquire sees the map.
///
/// # Safety
///
/// `sdev` is a live device.
unsafe fn being_created(sdev: *mut bindings::scsi_device) -> bool {
    // SAFETY: `sdev_state` is an aligned `u32` field of the live device; the
    // midlayer writes it concurrently (under the device's state mutex), so
    // it is read atomically.
    let field = unsafe { AtomicU32::from_ptr((&raw mut (*sdev).sdev_state).cast::<u32>()) };
    let state = field.load(Acquire);
    state == bindings::scsi_device_state_SDEV_CREATED
        || state == bindings::scsi_device_state_SDEV_CREATED_BLOCK
}

impl HostHandle {
    /// Runs `f` on the device `target`:`lun`, if the midlayer has it.
    fn with_device(
        &self,
        target: u32,
        lun: u64,
        f: impl FnOnce(*mut bindings::scsi_device),
    ) -> bool {
        // SAFETY: The host is live (type invariant); a found device comes with
        // a reference, put below.
        let sdev = unsafe { bindings::scsi_device_lookup(self.0.as_ptr(), 0, target, lun) };
        if sdev.is_null() {
            return false;
        }
        f(sdev);
        // SAFETY: The reference from the lookup.
        unsafe { bindings::scsi_device_put(sdev) };
        true
    }

    /// Whether the module of the host's driver is not being unloaded. Once
    /// it is, `scsi_device_get` refuses every device of the host, so a scan
    /// finds none of the known LUNs and adds each again (sysfs refuses the
    /// duplicate name, with a stack dump): scans are skipped from then on.
    fn driver_live(&self) -> bool {
        // SAFETY: The host is live (type invariant) and so is its template, a
        // static of the driver's module; `module` is that module (or null for
        // a built-in driver, which `module_is_live` reads as live).
        unsafe { bindings::vsrs_module_is_live((*(*self.0.as_ptr()).hostt).module) }
    }

    /// Adds the LUN (a REPORT LUNS-less probe of just that LUN).
    pub(crate) fn add_lun(&self, target: u32, lun: u64) -> Result {
        if !self.driver_live() {
            return Err(ENODEV);
        }
        // SAFETY: The host is live (type invariant).
        to_result(unsafe { bindings::scsi_add_device(self.0.as_ptr(), 0, target, lun) })
    }

    /// Removes the LUN; `false` if the midlayer did not have it.
    pub(crate) fn remove_lun(&self, target: u32, lun: u64) -> bool {
        self.with_device(target, lun, |sdev| {
            // SAFETY: `sdev` is live and referenced (see `with_device`).
            unsafe { bindings::scsi_remove_device(sdev) }
        })
    }

    /// Revalidates the LUN (capacity, VPD pages); `false` if unknown.
    pub(crate) fn rescan_lun(&self, target: u32, lun: u64) -> bool {
        self.with_device(target, lun, |sdev| {
            // SAFETY: As in `remove_lun`. A device that is not running is
            // skipped by the midlayer (it answers -EWOULDBLOCK).
            unsafe { bindings::scsi_rescan_device(sdev) };
        })
    }

    /// Tells the block layer the medium of the LUN changed (a media change
    /// uevent); `false` if unknown.
    pub(crate) fn media_changed(&self, target: u32, lun: u64) -> bool {
        self.with_device(target, lun, |sdev| {
            // SAFETY: As in `remove_lun`.
            unsafe {
                bindings::sdev_evt_send_simple(
                    sdev,
                    bindings::scsi_device_event_SDEV_EVT_MEDIA_CHANGE,
                    bindings::GFP_KERNEL,
                )
            }
        })
    }

    /// Scans every LUN of `target` (REPORT LUNS), adding new ones and
    /// revalidating the known ones.
    pub(crate) fn scan_target(&self, target: u32) {
        if !self.driver_live() {
            return;
        }
        // SAFETY: The host is live (type invariant); its generic device is
        // the parent of its targets.
        unsafe {
            bindings::scsi_scan_target(
                &raw mut (*self.0.as_ptr()).shost_gendev,
                0,
                target,
                u64::MAX,
                bindings::scsi_scan_mode_SCSI_SCAN_RESCAN,
            )
        }
    }

    /// Scans the whole host.
    pub(crate) fn scan_all(&self) {
        if !self.driver_live() {
            return;
        }
        // SAFETY: The host is live (type invariant).
        unsafe { bindings::scsi_scan_host(self.0.as_ptr()) }
    }

    /// Asks every known LUN INQUIRY and removes those that answer they are
    /// not attached (peripheral qualifier not 0), or whose target is gone
    /// (`DID_BAD_TARGET`). Returns how many went.
    pub(crate) fn remove_absent_luns(&self) -> u32 {
        const INQUIRY: u8 = 0x12;
        const LEN: usize = 255;
        let Ok(mut buf) = KVec::<u8>::from_elem(0, LEN, GFP_KERNEL) else {
            return 0;
        };
        let timeout = kernel::time::msecs_to_jiffies(30_000) as c_int;
        let mut gone = 0;
        self.for_each_device(|sdev| {
            buf.fill(0);
            // SAFETY: `sdev` is live and referenced during the call.
            let len = match unsafe { (*sdev).inquiry_len } {
                0 => 36,
                n => usize::from(n).min(LEN),
            };
            let cdb = [INQUIRY, 0, 0, 0, len as u8, 0];
            // SAFETY: `sdev` is live and referenced; the CDB and the buffer
            // (`len` bytes) live across the synchronous call; no extra args.
            let result = unsafe {
                bindings::scsi_execute_cmd(
                    sdev,
                    cdb.as_ptr(),
                    bindings::req_op_REQ_OP_DRV_IN,
                    buf.as_mut_ptr().cast(),
                    len as c_uint,
                    timeout,
                    5,
                    core::ptr::null(),
                )
            };
            let absent = result == 0 && buf[0] >> 5 != 0;
            let bad_target = result > 0
                && (result >> 16) & 0xff == bindings::scsi_host_status_DID_BAD_TARGET as c_int;
            if absent || bad_target {
                // SAFETY: As above; the iterator keeps its reference, put at
                // the next step.
                unsafe { bindings::scsi_remove_device(sdev) };
                gone += 1;
            }
        });
        gone
    }

    /// Scans (REPORT LUNS) each target that has a known LUN. Unlike
    /// [`HostHandle::scan_all`] it probes no absent target, so it makes and
    /// destroys no temporary device: the midlayer destroys such a device's
    /// queue before it cancels the device's requeue work, which a completion
    /// schedules whenever the host has starved devices (a blocked host, a
    /// busy one), and that work then runs the destroyed queue (an oops in
    /// `blk_mq_requeue_work`, seen under fio across device resets).
    pub(crate) fn scan_known_targets(&self) {
        let mut known = [0u64; 4];
        self.for_each_device(|sdev| {
            // SAFETY: `sdev` is live and referenced during the call.
            let id = unsafe { (*sdev).id } as usize;
            if let Some(w) = known.get_mut(id / 64) {
                *w |= 1 << (id % 64);
            }
        });
        for (i, w) in known.iter().enumerate() {
            for bit in 0..64 {
                if w & (1 << bit) != 0 {
                    self.scan_target((i * 64 + bit) as u32);
                }
            }
        }
    }

    /// Revalidates every known LUN of `target`, or of every target.
    pub(crate) fn rescan_known(&self, target: Option<u32>) {
        self.for_each_device(|sdev| {
            // SAFETY: `sdev` is live and referenced during the call.
            unsafe {
                if target.is_none_or(|t| (*sdev).id == t) {
                    bindings::scsi_rescan_device(sdev);
                }
            }
        });
    }

    /// Runs `f` on each device of the host the midlayer has added, holding a
    /// reference on it during the call.
    ///
    /// Not on a device a scan is still creating (`SDEV_CREATED`, also every
    /// temporary device of an absent LUN): it is on the host's list before
    /// its budget map exists, and a command sent to it then takes the
    /// no-map budget token (`INT_MAX`), which the completion puts into the
    /// map allocated meanwhile: a write far out of bounds (the flood race
    /// panic, Documentation). The scan probes and removes such a device
    /// itself.
    fn for_each_device(&self, mut f: impl FnMut(*mut bindings::scsi_device)) {
        let mut sdev = core::ptr::null_mut();
        loop {
            // SAFETY: The host is live (type invariant); the iterator takes a
            // reference on the device it returns and puts the one it is given.
            sdev = unsafe { bindings::__scsi_iterate_devices(self.0.as_ptr(), sdev) };
            if sdev.is_null() {
                break;
            }
            // SAFETY: `sdev` is live and referenced.
            if unsafe { being_created(sdev) } {
                continue;
            }
            f(sdev);
        }
    }
}
