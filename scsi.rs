// SPDX-License-Identifier: GPL-2.0

//! Safe wrappers over the SCSI midlayer for this driver: the host template,
//! the `Scsi_Host`, commands, and putting a command on a request virtqueue
//! and taking it back. With `virtio.rs` and `irqlock.rs`, this is where the
//! `unsafe` code lives.

use crate::{
    bindings,
    protocol::{
        cmd::{pi_bytes, PiBytes},
        wire::{CMD_REQ_PI_SIZE, CMD_RESP_SIZE},
    },
    virtio::Virtqueue,
};
use core::{
    ffi::c_void,
    marker::PhantomData,
    mem::size_of,
    ptr::NonNull,
    sync::atomic::{AtomicU8, Ordering},
};
use kernel::{
    device,
    error::to_result,
    ffi::{c_char, c_int, c_uint},
    prelude::*,
    sync::Arc,
    types::ForeignOwnable,
    ThisModule,
};

/// The per-command area the midlayer allocates with each command
/// (`cmd_size`): the request header the device reads and the response it
/// writes. It lives in the request's memory, which is DMA-able.
#[repr(C)]
pub(crate) struct CmdPriv {
    /// `struct virtio_scsi_cmd_req` (or `_pi`), encoded by the driver.
    pub(crate) req: [u8; CMD_REQ_PI_SIZE],
    /// `struct virtio_scsi_cmd_resp`, written by the device.
    resp: [u8; CMD_RESP_SIZE],
    /// 1 while the command is on a request virtqueue (set by `submit`,
    /// cleared by `next_done`): error handling reports success for a command
    /// only once the device has given it back.
    in_flight: AtomicU8,
}

/// The queue was full: the midlayer requeues the command later.
pub(crate) struct HostBusy;

/// What the midlayer calls; implemented by the driver's shared state.
pub(crate) trait HostOps: Send + Sync + 'static {
    /// Start `cmd` (`queuecommand`).
    fn queue_command(&self, cmd: Command<'_>) -> Result<(), HostBusy>;
    /// Notify the device of commands queued without their last flag.
    fn commit_rqs(&self, hwq: u16);
    /// Complete what is done on poll queue `hwq`; returns how many.
    fn mq_poll(&self, hwq: u32) -> i32;
    /// Lay out the hardware queues of the tag set.
    fn map_queues(&self, maps: &mut QueueMaps<'_>);
    /// Upper bound for a device's queue depth (`change_queue_depth`).
    fn max_queue_depth(&self) -> i32;
    /// A command timed out: `true` to give it more time (the timer restarts),
    /// `false` to let the midlayer's error handling abort it.
    fn eh_timed_out(&self, cmd: &EhCommand<'_>) -> bool;
    /// Abort `cmd` (`eh_abort_handler`).
    fn eh_abort(&self, cmd: &EhCommand<'_>) -> EhOutcome;
    /// Reset the LUN of `cmd` (`eh_device_reset_handler`).
    fn eh_device_reset(&self, cmd: &EhCommand<'_>) -> EhOutcome;
    /// Reset the target of `cmd` (`eh_target_reset_handler`).
    fn eh_target_reset(&self, cmd: &EhCommand<'_>) -> EhOutcome;
    /// Reset the whole host (`eh_host_reset_handler`).
    fn eh_host_reset(&self, cmd: &EhCommand<'_>) -> EhOutcome;
    /// A LUN was found and is about to be attached (`sdev_configure`).
    fn sdev_configure(&self, sdev: &mut ScsiDevice<'_>);
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

/// A `struct scsi_host_template`, immutable once made.
pub(crate) struct Template(bindings::scsi_host_template);

// SAFETY: The template is never written after `new`; it only points to
// `'static` strings, the module, and functions.
unsafe impl Send for Template {}
// SAFETY: As above.
unsafe impl Sync for Template {}

impl Template {
    /// The template of hosts driven by `T`.
    pub(crate) fn new<T: HostOps>(
        module: &'static ThisModule,
        name: &'static CStr,
        proc_name: &'static CStr,
    ) -> Self {
        let mut t: bindings::scsi_host_template = pin_init::zeroed();
        t.module = module.as_ptr();
        t.name = name.as_char_ptr();
        t.proc_name = proc_name.as_char_ptr();
        t.this_id = -1;
        t.cmd_size = size_of::<CmdPriv>() as c_uint;
        t.queuecommand = Some(queuecommand::<T>);
        t.commit_rqs = Some(commit_rqs::<T>);
        t.mq_poll = Some(mq_poll::<T>);
        t.map_queues = Some(map_queues::<T>);
        t.change_queue_depth = Some(change_queue_depth::<T>);
        t.eh_timed_out = Some(eh_timed_out::<T>);
        t.sdev_configure = Some(sdev_configure::<T>);
        t.eh_abort_handler = Some(eh_abort::<T>);
        t.eh_device_reset_handler = Some(eh_device_reset::<T>);
        t.eh_target_reset_handler = Some(eh_target_reset::<T>);
        t.eh_host_reset_handler = Some(eh_host_reset::<T>);
        t.dma_boundary = u32::MAX as usize;
        t.set_track_queue_depth(1);
        // No bus to settle: the host reset handler returns once the device
        // has been reset and its queues set up again, so the midlayer's 10 s
        // sleep after a host reset would only stall error handling.
        t.set_skip_settle_delay(1);
        Self(t)
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
    /// Hardware queues (one per request virtqueue).
    pub(crate) nr_hw_queues: u32,
    /// Queue maps: 1, or 3 when there are poll queues.
    pub(crate) nr_maps: u32,
    /// The device checks T10 protection information (DIF types 1-3, DIX
    /// with a CRC guard).
    pub(crate) t10_pi: bool,
}

/// A `Scsi_Host` driven by `T`: allocated, then added with the driver's shared
/// state (which its private area holds a reference to), then removed. Dropping
/// it removes it if needed and puts the allocation's reference.
///
/// # Invariants
///
/// `shost` is a host allocated from a `Template` for `T`, with a reference
/// held by this value; while `added`, its private area holds an
/// `Arc<T>` from `into_foreign`.
pub(crate) struct Host<T: HostOps> {
    shost: NonNull<bindings::Scsi_Host>,
    added: bool,
    _ops: PhantomData<Arc<T>>,
}

// SAFETY: The midlayer's host API may be used from any task.
unsafe impl<T: HostOps> Send for Host<T> {}
// SAFETY: `&Host` allows nothing that races: all changes take `&mut self`.
unsafe impl<T: HostOps> Sync for Host<T> {}

impl<T: HostOps> Host<T> {
    /// Allocates a host from `template` with the limits of `p`.
    pub(crate) fn alloc(template: &'static Template, p: &HostParams) -> Result<Self> {
        // SAFETY: The template is `'static`; the private area holds one pointer.
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
            added: false,
            _ops: PhantomData,
        })
    }

    /// The midlayer's host number (`hostN`).
    pub(crate) fn host_no(&self) -> u32 {
        // SAFETY: The host is live (type invariant); `host_no` is set at alloc.
        unsafe { (*self.shost.as_ptr()).host_no }
    }

    /// Adds the host below `dev` with `ops` answering the midlayer's calls.
    pub(crate) fn add(&mut self, ops: Arc<T>, dev: &device::Device) -> Result {
        let ptr = ops.into_foreign();
        // SAFETY: The host is live; nothing reads the private area before
        // `scsi_add_host` publishes the host.
        unsafe { *self.priv_slot() = ptr };
        // SAFETY: The host is live and not added yet; `dev` is live for the call
        // and the midlayer takes its own reference.
        let ret = unsafe {
            bindings::scsi_add_host_with_dma(self.shost.as_ptr(), raw_dev(dev), raw_dev(dev))
        };
        if let Err(e) = to_result(ret) {
            // SAFETY: Not added, so no callback holds a borrow; `ptr` is ours.
            drop(unsafe { Arc::<T>::from_foreign(ptr) });
            return Err(e);
        }
        self.added = true;
        Ok(())
    }

    /// Scans the host for targets and LUNs (synchronously).
    pub(crate) fn scan(&self) {
        if self.added {
            // SAFETY: The host is live and added.
            unsafe { bindings::scsi_scan_host(self.shost.as_ptr()) }
        }
    }

    /// Removes the host: the midlayer stops calling in and waits for every
    /// command to complete, so the device must still be working.
    pub(crate) fn remove(&mut self) {
        if !self.added {
            return;
        }
        // SAFETY: The host is live and added.
        unsafe { bindings::scsi_remove_host(self.shost.as_ptr()) };
        self.added = false;
        // SAFETY: After `scsi_remove_host` the midlayer makes no more calls
        // that borrow the private area; the pointer came from `add`.
        drop(unsafe { Arc::<T>::from_foreign(*self.priv_slot()) });
    }

    /// A counted reference to the host, for work that runs outside the
    /// driver's callbacks (event handling).
    pub(crate) fn handle(&self) -> HostHandle {
        // SAFETY: The host is live (type invariant); the reference taken is
        // put when the handle drops.
        unsafe { bindings::scsi_host_get(self.shost.as_ptr()) };
        HostHandle(self.shost)
    }

    fn priv_slot(&self) -> *mut *mut c_void {
        // SAFETY: The host is live; its private area holds one pointer.
        unsafe { (*self.shost.as_ptr()).hostdata.as_mut_ptr().cast() }
    }
}

impl<T: HostOps> Drop for Host<T> {
    fn drop(&mut self) {
        self.remove();
        // SAFETY: The reference from `scsi_host_alloc` is ours.
        unsafe { bindings::scsi_host_put(self.shost.as_ptr()) };
    }
}

/// The C `struct device` of `dev` (`device::Device` is a transparent wrapper).
fn raw_dev(dev: &device::Device) -> *mut bindings::device {
    core::ptr::from_ref(dev).cast_mut().cast()
}

/// The driver state of the host that `shost` belongs to.
///
/// # Safety
///
/// `shost` is a live host added by [`Host::add`] and not removed yet.
unsafe fn ops<'a, T: HostOps>(
    shost: *mut bindings::Scsi_Host,
) -> <Arc<T> as ForeignOwnable>::Borrowed<'a> {
    // SAFETY: The caller guarantees the host is added, so its private area
    // holds the `Arc<T>` from `add` until `remove`, after which the midlayer
    // makes no calls.
    unsafe { Arc::<T>::borrow(*(*shost).hostdata.as_mut_ptr().cast::<*mut c_void>()) }
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

/// A command the midlayer handed to `queuecommand`, not yet given to the
/// device.
///
/// # Invariants
///
/// `sc` is a live command of a host from a `Template`, owned by the driver
/// (between `queuecommand` and `scsi_done`) and not given to the device.
pub(crate) struct Command<'a> {
    sc: NonNull<bindings::scsi_cmnd>,
    _life: PhantomData<&'a mut bindings::scsi_cmnd>,
}

/// What the I/O path and error handling both read of a live command.
///
/// # Safety
///
/// `raw` returns a command that is live, with a live device, for as long as
/// the implementor is.
pub(crate) unsafe trait LiveCommand {
    /// The command.
    fn raw(&self) -> *mut bindings::scsi_cmnd;

    /// Target id (`sdev->id`).
    fn target(&self) -> u32 {
        // SAFETY: The command and its device are live (trait contract).
        unsafe { (*(*self.raw()).device).id }
    }

    /// LUN as the midlayer numbers it (`sdev->lun`).
    fn lun(&self) -> u64 {
        // SAFETY: As in `target`.
        unsafe { (*(*self.raw()).device).lun }
    }

    /// Block-layer tag, unique across the host's hardware queues
    /// (hardware queue in bits 31..16).
    fn unique_tag(&self) -> u32 {
        // SAFETY: The command is live; its request precedes it in memory.
        unsafe { bindings::blk_mq_unique_tag(cmd_to_rq(self.raw())) }
    }
}

// SAFETY: `sc` is live with its device while the `Command` is (type invariant).
unsafe impl LiveCommand for Command<'_> {
    fn raw(&self) -> *mut bindings::scsi_cmnd {
        self.sc.as_ptr()
    }
}

impl Command<'_> {
    /// The CDB.
    pub(crate) fn cdb(&self) -> &[u8] {
        // SAFETY: The command is live; `cmnd` is an array in it.
        let (cmnd, len) = unsafe { (&(*self.raw()).cmnd, (*self.raw()).cmd_len) };
        &cmnd[..(len as usize).min(cmnd.len())]
    }

    /// The request's I/O priority (`IOPRIO_PRIO_VALUE`), as
    /// `req_get_ioprio`: its first bio's, or none.
    pub(crate) fn ioprio(&self) -> u16 {
        // SAFETY: As in `unique_tag`; the request's bios live as long as it.
        unsafe {
            let bio = (*cmd_to_rq(self.raw())).bio;
            if bio.is_null() {
                0
            } else {
                (*bio).bi_ioprio
            }
        }
    }

    /// Protection information bytes the command carries each way (T10 PI):
    /// none unless the block layer attached some.
    pub(crate) fn pi_bytes(&self) -> PiBytes {
        let sc = self.raw();
        // SAFETY: The command is live.
        let n = unsafe { pi_len(sc) };
        // SAFETY: The command is live.
        match unsafe { data_dir(sc) } {
            DataDir::ToDevice => PiBytes { out: n, inn: 0 },
            DataDir::FromDevice => PiBytes { out: 0, inn: n },
            _ => PiBytes { out: 0, inn: 0 },
        }
    }

    /// Whether this is the last command of a batch (notify the device now).
    pub(crate) fn is_last(&self) -> bool {
        // SAFETY: The command is live.
        unsafe { (*self.raw()).flags as u32 & bindings::SCMD_LAST != 0 }
    }

    /// The command's private area.
    pub(crate) fn priv_mut(&mut self) -> &mut CmdPriv {
        // SAFETY: The area is `cmd_size` bytes for `CmdPriv`, suitably aligned
        // after the command, and the driver owns the command (type invariant).
        unsafe { &mut *cmd_priv(self.raw()) }
    }

    /// Completes the command without involving the device.
    pub(crate) fn finish(self, result: u32) {
        // SAFETY: The driver owns the command; `scsi_done` hands it back.
        unsafe {
            (*self.raw()).result = result as c_int;
            bindings::scsi_done(self.raw());
        }
    }

    /// Gives the command to the device on `vq`: the request header (first
    /// `req_len` bytes of `req`) and data out, then the response and data in.
    /// On error (`ENOSPC`: the ring is full; `EIO`: it is broken; `EAGAIN`:
    /// the device is being reset) the command comes back unchanged.
    pub(crate) fn submit(self, vq: &mut ReqQueue, req_len: usize) -> Result<(), (Self, Error)> {
        let Some(vq) = vq.0.as_mut() else {
            return Err((self, EAGAIN));
        };
        let sc = self.raw();
        // SAFETY: The command is live and ours (type invariant); `prot_sdb`,
        // when set, is its protection table.
        let (dir, sgl, prot) = unsafe {
            let prot = (*sc).prot_sdb;
            let prot_sgl = if prot.is_null() || (*prot).table.nents == 0 {
                core::ptr::null_mut()
            } else {
                (*prot).table.sgl
            };
            (data_dir(sc), (*sc).sdb.table.sgl, prot_sgl)
        };
        let mut req_sg: bindings::scatterlist = pin_init::zeroed();
        let mut resp_sg: bindings::scatterlist = pin_init::zeroed();
        // SAFETY: The command is ours, so is its private area.
        let p = unsafe { &mut *cmd_priv(sc) };
        // SAFETY: Both buffers lie in the private area, which lives until
        // `scsi_done`; the scatterlists are only read during `add_sgs`.
        unsafe {
            bindings::sg_init_one(
                &mut req_sg,
                p.req.as_ptr().cast(),
                req_len.min(CMD_REQ_PI_SIZE) as c_uint,
            );
            bindings::sg_init_one(
                &mut resp_sg,
                p.resp.as_mut_ptr().cast(),
                CMD_RESP_SIZE as c_uint,
            );
        }
        let has_data = !sgl.is_null();
        let data_out = has_data && matches!(dir, DataDir::ToDevice | DataDir::Both);
        let data_in = has_data && matches!(dir, DataDir::FromDevice | DataDir::Both);
        // Device-readable lists first, then device-writable ones; protection
        // information precedes the data it protects.
        let has_prot = !prot.is_null();
        let mut sgs = [core::ptr::null_mut(); 6];
        let mut n = 0;
        for (sg, wanted) in [
            (&raw mut req_sg, true),
            (prot, data_out && has_prot),
            (sgl, data_out),
            (&raw mut resp_sg, true),
            (prot, data_in && has_prot),
            (sgl, data_in),
        ] {
            if wanted {
                sgs[n] = sg;
                n += 1;
            }
        }
        let out = 1 + usize::from(data_out) * (1 + usize::from(has_prot));
        let inn = n - out;
        p.in_flight.store(1, Ordering::Relaxed);
        // The lists describe memory valid until the command comes back through
        // `next_done`: the data buffers are the request's, header and response
        // its private area's.
        // SAFETY: The queue is live and `&mut` serialises ring operations; the
        // buffers outlive the submission (above); the token is the command.
        let ret = unsafe {
            bindings::virtqueue_add_sgs(
                vq.as_raw(),
                sgs.as_mut_ptr(),
                out as c_uint,
                inn as c_uint,
                sc.cast(),
                bindings::GFP_ATOMIC,
            )
        };
        to_result(ret).map_err(|e| {
            p.in_flight.store(0, Ordering::Relaxed);
            (self, e)
        })
    }
}

/// # Safety
///
/// `sc` is a live command.
unsafe fn data_dir(sc: *mut bindings::scsi_cmnd) -> DataDir {
    // SAFETY: The caller guarantees `sc` is live.
    match unsafe { (*sc).sc_data_direction } {
        bindings::dma_data_direction_DMA_TO_DEVICE => DataDir::ToDevice,
        bindings::dma_data_direction_DMA_FROM_DEVICE => DataDir::FromDevice,
        bindings::dma_data_direction_DMA_BIDIRECTIONAL => DataDir::Both,
        _ => DataDir::None,
    }
}

/// A request virtqueue: it only ever carries commands, put there by
/// [`Command::submit`] and taken back by [`ReqQueue::next_done`]. Between a
/// device reset's [`ReqQueue::detach`] and [`ReqQueue::attach`] it has none.
pub(crate) struct ReqQueue(Option<Virtqueue>);

impl ReqQueue {
    /// Makes `vq` a request queue; nothing else may use it.
    pub(crate) fn new(vq: Virtqueue) -> Self {
        Self(Some(vq))
    }

    /// The virtqueue, for ring operations that do not add or take buffers.
    pub(crate) fn vq(&mut self) -> Option<&mut Virtqueue> {
        self.0.as_mut()
    }

    /// The next command the device is done with, with the used length it
    /// reported.
    pub(crate) fn next_done(&mut self) -> Option<(DoneCommand, u32)> {
        let (token, len) = self.0.as_mut()?.get_buf()?;
        // Every token on this queue is a command submitted by `submit`, and the
        // virtio core returns each at most once; the midlayer keeps it live
        // until `DoneCommand::finish` calls `scsi_done`.
        Some((DoneCommand::returned(token.cast()), len))
    }

    /// The next command the device never got to; only once the device was
    /// reset. The caller completes it (as reset) before detaching the queue.
    pub(crate) fn next_unused(&mut self) -> Option<DoneCommand> {
        let token = self.0.as_mut()?.detach_unused()?;
        // As in `next_done`: the token is a live command, now ours again.
        Some(DoneCommand::returned(token.cast()))
    }

    /// Lets go of the virtqueue before the queues are deleted.
    pub(crate) fn detach(&mut self) {
        self.0 = None;
    }

    /// Uses `vq`, the new queue of this role after a reset.
    pub(crate) fn attach(&mut self, vq: Virtqueue) {
        self.0 = Some(vq);
    }
}

/// A command the device has handed back.
///
/// # Invariants
///
/// `0` is a live command owned by the driver, no longer used by the device.
pub(crate) struct DoneCommand(NonNull<bindings::scsi_cmnd>);

impl DoneCommand {
    /// The command of a token the device (or a reset) gave back: no longer
    /// in flight.
    fn returned(sc: NonNull<bindings::scsi_cmnd>) -> Self {
        // SAFETY: Tokens on request queues are live commands (see
        // `ReqQueue::next_done`); the private area is the driver's again.
        unsafe { &*cmd_priv(sc.as_ptr()) }
            .in_flight
            .store(0, Ordering::Release);
        Self(sc)
    }

    /// A copy of the response the device wrote (copied once, so that the
    /// checks and the use see the same bytes).
    pub(crate) fn response(&self) -> [u8; CMD_RESP_SIZE] {
        // SAFETY: The command is live and its private area ours again.
        unsafe { (*cmd_priv(self.0.as_ptr())).resp }
    }

    /// Bytes the command was to transfer.
    pub(crate) fn transfer_len(&self) -> u32 {
        // SAFETY: The command is live.
        unsafe { (*self.0.as_ptr()).sdb.length }
    }

    /// Protection information bytes the command carried (T10 PI), 0 without.
    pub(crate) fn pi_len(&self) -> u32 {
        // SAFETY: The command is live (type invariant).
        unsafe { pi_len(self.0.as_ptr()) }
    }

    /// Completes the command: `result` (host byte << 16 | status), residual
    /// `resid`, and sense data `sense` (at most the sense buffer's size).
    pub(crate) fn finish(self, result: u32, resid: u32, sense: &[u8]) {
        let sc = self.0.as_ptr();
        // SAFETY: The driver owns the live command; the sense buffer holds
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
}

/// The queue maps of a host's tag set, handed to [`HostOps::map_queues`].
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
    fn map(&mut self, t: MapType) -> *mut bindings::blk_mq_queue_map {
        // SAFETY: The host is live while `map_queues` runs; `map` has
        // HCTX_MAX_TYPES entries and `t` is one of them.
        unsafe { &raw mut (*self.shost.as_ptr()).tag_set.map[t as usize] }
    }

    /// Number of maps in use (`nr_maps`).
    pub(crate) fn count(&self) -> u32 {
        // SAFETY: As in `map`.
        unsafe { (*self.shost.as_ptr()).nr_maps }
    }

    /// Gives map `t` the `nr` hardware queues from `offset`, spread over the
    /// CPUs along the interrupt affinity of `dev`'s vectors from
    /// `first_vector` (`Some`), or evenly (`None`).
    pub(crate) fn set(
        &mut self,
        t: MapType,
        nr: u32,
        offset: u32,
        affinity: Option<(&device::Device, u32)>,
    ) {
        let map = self.map(t);
        // SAFETY: `map` is valid (see `map`) and `map_queues` may change it.
        unsafe {
            (*map).nr_queues = nr;
            (*map).queue_offset = offset;
            if nr == 0 {
                return;
            }
            match affinity {
                Some((dev, first)) => bindings::blk_mq_map_hw_queues(map, raw_dev(dev), first),
                None => bindings::blk_mq_map_queues(map),
            }
        }
    }
}

/// Protection information bytes of live command `sc` (T10 PI): its sectors
/// times the disk's tuple size, 0 unless the block layer attached protection
/// buffers. (The midlayer leaves `prot_sdb->length` 0.)
///
/// # Safety
///
/// `sc` is a live command of a host of ours.
unsafe fn pi_len(sc: *mut bindings::scsi_cmnd) -> u32 {
    // SAFETY: The command is live; `prot_sdb`, when set, points to its
    // protection table; the request and its disk's profile outlive it.
    unsafe {
        let prot = (*sc).prot_sdb;
        if prot.is_null() || (*prot).table.nents == 0 {
            return 0;
        }
        let rq = cmd_to_rq(sc);
        let bi = bindings::vsrs_rq_integrity(rq);
        if bi.is_null() {
            return 0;
        }
        pi_bytes(
            // `blk_rq_sectors`.
            (*rq).__data_len >> 9,
            (*bi).interval_exp,
            (*bi).metadata_size,
        )
    }
}

/// `scsi_cmd_priv` (`cmd + 1`), in Rust: the I/O path would otherwise make a
/// call per use into a C shim for one addition.
///
/// # Safety
///
/// `sc` is a command of a host of ours: blk-mq allocated `cmd_size` bytes
/// for a [`CmdPriv`] right after it.
unsafe fn cmd_priv(sc: *mut bindings::scsi_cmnd) -> *mut CmdPriv {
    // SAFETY: The caller's command is followed by its private area, in the
    // same allocation.
    unsafe { sc.add(1) }.cast()
}

/// `scsi_cmd_to_rq` (`blk_mq_rq_from_pdu`), in Rust: the request right
/// before the command.
///
/// # Safety
///
/// `sc` is a midlayer command: the PDU of a blk-mq request.
unsafe fn cmd_to_rq(sc: *mut bindings::scsi_cmnd) -> *mut bindings::request {
    // SAFETY: The request precedes its PDU in the same allocation.
    unsafe { sc.cast::<bindings::request>().sub(1) }
}

/// # Safety
///
/// Called by the midlayer for a host added by [`Host::add`], with a live
/// command it gives to the driver.
unsafe extern "C" fn queuecommand<T: HostOps>(
    shost: *mut bindings::Scsi_Host,
    sc: *mut bindings::scsi_cmnd,
) -> bindings::scsi_qc_status {
    // SAFETY: The host is added (the midlayer calls only then).
    let ops = unsafe { ops::<T>(shost) };
    let cmd = Command {
        // SAFETY: The midlayer passes a valid command.
        sc: unsafe { NonNull::new_unchecked(sc) },
        _life: PhantomData,
    };
    match ops.queue_command(cmd) {
        Ok(()) => 0,
        Err(HostBusy) => bindings::scsi_qc_status_SCSI_MLQUEUE_HOST_BUSY,
    }
}

/// # Safety
///
/// Called by the midlayer for a host added by [`Host::add`].
unsafe extern "C" fn commit_rqs<T: HostOps>(shost: *mut bindings::Scsi_Host, hwq: u16) {
    // SAFETY: The host is added.
    unsafe { ops::<T>(shost) }.commit_rqs(hwq);
}

/// # Safety
///
/// Called by the midlayer for a host added by [`Host::add`].
unsafe extern "C" fn mq_poll<T: HostOps>(shost: *mut bindings::Scsi_Host, hwq: c_uint) -> c_int {
    // SAFETY: The host is added.
    unsafe { ops::<T>(shost) }.mq_poll(hwq)
}

/// # Safety
///
/// Called by the midlayer while adding a host (after its private area is
/// set) or updating its queues.
unsafe extern "C" fn map_queues<T: HostOps>(shost: *mut bindings::Scsi_Host) {
    let mut maps = QueueMaps {
        // SAFETY: The midlayer passes a live host.
        shost: unsafe { NonNull::new_unchecked(shost) },
        _life: PhantomData,
    };
    // SAFETY: `map_queues` runs from `scsi_add_host` on, after `add` stored
    // the state.
    unsafe { ops::<T>(shost) }.map_queues(&mut maps);
}

/// # Safety
///
/// Called by the midlayer with a live device of a host added by [`Host::add`].
unsafe extern "C" fn change_queue_depth<T: HostOps>(
    sdev: *mut bindings::scsi_device,
    depth: c_int,
) -> c_int {
    // SAFETY: The device and its host are live, the host added.
    let max = unsafe { ops::<T>((*sdev).host) }.max_queue_depth();
    // SAFETY: `sdev` is live.
    unsafe { bindings::scsi_change_queue_depth(sdev, depth.clamp(1, max)) }
}

/// A command the midlayer's error handling asks about: read-only, since the
/// midlayer owns it now.
///
/// # Invariants
///
/// `sc` is a live command of a host from a `Template`, with a live device.
pub(crate) struct EhCommand<'a> {
    sc: NonNull<bindings::scsi_cmnd>,
    _life: PhantomData<&'a bindings::scsi_cmnd>,
}

// SAFETY: `sc` is live with its device while the `EhCommand` is (type
// invariant).
unsafe impl LiveCommand for EhCommand<'_> {
    fn raw(&self) -> *mut bindings::scsi_cmnd {
        self.sc.as_ptr()
    }
}

impl EhCommand<'_> {
    /// Whether the device still holds the command.
    pub(crate) fn in_flight(&self) -> bool {
        // SAFETY: The private area of a live command; `in_flight` is atomic.
        unsafe { &*cmd_priv(self.sc.as_ptr()) }
            .in_flight
            .load(Ordering::Acquire)
            != 0
    }
}

macro_rules! eh_entry {
    ($name:ident, $method:ident) => {
        /// # Safety
        ///
        /// Called by the midlayer's error handling with a live command of a
        /// host added by [`Host::add`].
        unsafe extern "C" fn $name<T: HostOps>(sc: *mut bindings::scsi_cmnd) -> c_int {
            let cmd = EhCommand {
                // SAFETY: The midlayer passes a valid command.
                sc: unsafe { NonNull::new_unchecked(sc) },
                _life: PhantomData,
            };
            // SAFETY: The command's device and host are live, the host added.
            unsafe { ops::<T>((*(*sc).device).host) }
                .$method(&cmd)
                .to_c()
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
unsafe extern "C" fn eh_timed_out<T: HostOps>(
    sc: *mut bindings::scsi_cmnd,
) -> bindings::scsi_timeout_action {
    let cmd = EhCommand {
        // SAFETY: The midlayer passes a valid command.
        sc: unsafe { NonNull::new_unchecked(sc) },
        _life: PhantomData,
    };
    // SAFETY: The command's device and host are live, the host added.
    if unsafe { ops::<T>((*(*sc).device).host) }.eh_timed_out(&cmd) {
        bindings::scsi_timeout_action_SCSI_EH_RESET_TIMER
    } else {
        bindings::scsi_timeout_action_SCSI_EH_NOT_HANDLED
    }
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
unsafe extern "C" fn sdev_configure<T: HostOps>(
    sdev: *mut bindings::scsi_device,
    _lim: *mut bindings::queue_limits,
) -> c_int {
    // SAFETY: The midlayer passes a valid device.
    let mut dev = ScsiDevice(unsafe { NonNull::new_unchecked(sdev) }, PhantomData);
    // SAFETY: The device's host is live and added.
    unsafe { ops::<T>((*sdev).host) }.sdev_configure(&mut dev);
    0
}

/// A counted reference to a `Scsi_Host`, for scanning and removing its
/// devices from process context. The midlayer refuses scans of a host being
/// removed, so these are harmless after `Host::remove`.
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

    /// Adds the LUN (a REPORT LUNS-less probe of just that LUN).
    pub(crate) fn add_lun(&self, target: u32, lun: u64) -> Result {
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
        // SAFETY: The host is live (type invariant).
        unsafe { bindings::scsi_scan_host(self.0.as_ptr()) }
    }

    /// Revalidates every known LUN of `target`, or of every target.
    pub(crate) fn rescan_known(&self, target: Option<u32>) {
        let mut sdev = core::ptr::null_mut();
        loop {
            // SAFETY: The host is live; the iterator takes a reference on the
            // device it returns and puts the one it is given.
            sdev = unsafe { bindings::__scsi_iterate_devices(self.0.as_ptr(), sdev) };
            if sdev.is_null() {
                break;
            }
            // SAFETY: `sdev` is live and referenced until the next iteration.
            unsafe {
                if target.is_none_or(|t| (*sdev).id == t) {
                    bindings::scsi_rescan_device(sdev);
                }
            }
        }
    }
}
