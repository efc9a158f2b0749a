// SPDX-License-Identifier: GPL-2.0

//! Safe wrappers over the C virtio API: a virtio device borrowed from the
//! virtio core, its virtqueues, and the driver registration with its C entry
//! points. This file and `bindings/` are the only places with `unsafe`.

use crate::bindings;
use core::{
    ffi::c_void,
    marker::PhantomData,
    ptr::NonNull,
    sync::atomic::{AtomicPtr, Ordering},
};
use kernel::{
    device,
    error::to_result,
    ffi::c_int,
    prelude::*,
    sync::aref::ARef,
    types::{ForeignOwnable, Opaque},
};

/// A virtio device, borrowed from the virtio core for the length of a driver
/// callback (probe, remove).
///
/// # Invariants
///
/// The wrapped `struct virtio_device` is live and bound to this driver.
#[repr(transparent)]
pub(crate) struct Device(Opaque<bindings::virtio_device>);

impl Device {
    /// # Safety
    ///
    /// `ptr` points to a `struct virtio_device` that stays live and bound to
    /// this driver for `'a`.
    unsafe fn from_raw<'a>(ptr: *mut bindings::virtio_device) -> &'a Self {
        // SAFETY: `Device` is a transparent wrapper of `Opaque<virtio_device>`,
        // which has the layout of `virtio_device`; the caller guarantees `ptr`
        // is live for `'a`.
        unsafe { &*ptr.cast::<Self>() }
    }

    fn as_raw(&self) -> *mut bindings::virtio_device {
        self.0.get()
    }

    /// The generic device, for `dev_*!` logging (names the device in dmesg).
    pub(crate) fn as_dev(&self) -> &device::Device {
        // SAFETY: By the type invariant the virtio device is live, so is the
        // `struct device` embedded in it, for as long as `self` is borrowed.
        unsafe { device::Device::from_raw(&raw mut (*self.as_raw()).dev) }
    }

    /// Whether the transport lets the driver read the configuration space.
    pub(crate) fn config_readable(&self) -> bool {
        // SAFETY: By the type invariant the device is live; the transport sets
        // `config` before probing and never changes it.
        let ops = unsafe { (*self.as_raw()).config };
        // SAFETY: `ops`, when not null, points to the transport's static ops.
        !ops.is_null() && unsafe { (*ops).get.is_some() }
    }

    /// Reads a little-endian (or legacy native-endian) u32 from the config space.
    ///
    /// Callers pass offsets from `protocol::config::offset`; only call after
    /// [`Device::config_readable`] said yes.
    pub(crate) fn read_u32(&self, offset: usize) -> u32 {
        // SAFETY: The device is live (type invariant) and `get` exists (checked by
        // the caller through `config_readable`); offsets lie inside the config.
        unsafe { bindings::vsrs_virtio_cread32(self.as_raw(), offset as u32) }
    }

    /// Reads a u16 from the config space; see [`Device::read_u32`].
    pub(crate) fn read_u16(&self, offset: usize) -> u16 {
        // SAFETY: As in `read_u32`.
        unsafe { bindings::vsrs_virtio_cread16(self.as_raw(), offset as u32) }
    }

    /// Writes a u32 to a driver-writable field of the config space.
    pub(crate) fn write_u32(&self, offset: usize, value: u32) {
        // SAFETY: As in `read_u32`; writing a field is a transport operation.
        unsafe { bindings::vsrs_virtio_cwrite32(self.as_raw(), offset as u32, value) }
    }

    /// Whether feature bit `bit` was negotiated.
    pub(crate) fn has_feature(&self, bit: u32) -> bool {
        // SAFETY: The device is live (type invariant).
        unsafe { bindings::vsrs_virtio_has_feature(self.as_raw(), bit) }
    }

    /// Sets DRIVER_OK: from now on the device may use the virtqueues.
    pub(crate) fn ready(&self) {
        // SAFETY: The device is live (type invariant); the driver has set up
        // its virtqueues (the only way to get here is through `find_vqs`).
        unsafe { bindings::vsrs_virtio_device_ready(self.as_raw()) }
    }

    /// Creates the device's virtqueues, one per entry of `infos`, in order,
    /// returning the owner (which resets the device and deletes them on drop)
    /// and one handle per queue.
    ///
    /// Queues with `interrupt` set report used buffers through
    /// [`Driver::vq_done`]. The first `pre_vectors` queues get interrupt
    /// vectors that are not spread over the CPUs (control and event queues).
    pub(crate) fn find_vqs<T: Driver>(
        &self,
        infos: &[VqInfo],
        pre_vectors: u32,
    ) -> Result<(Virtqueues, KVec<Virtqueue>)> {
        let n = infos.len();
        let mut c_infos = KVec::with_capacity(n, GFP_KERNEL)?;
        let mut vqs = KVec::with_capacity(n, GFP_KERNEL)?;
        for info in infos {
            c_infos.push(
                bindings::virtqueue_info {
                    name: info.name.as_char_ptr(),
                    callback: if info.interrupt {
                        Some(vq_callback::<T>)
                    } else {
                        None
                    },
                    ctx: false,
                },
                GFP_KERNEL,
            )?;
            vqs.push(core::ptr::null_mut(), GFP_KERNEL)?;
        }
        let mut desc = bindings::irq_affinity {
            pre_vectors,
            ..pin_init::zeroed()
        };
        // SAFETY: The device is live (type invariant); both arrays hold `n`
        // entries, names are static C strings, `desc` outlives the call.
        to_result(unsafe {
            bindings::vsrs_virtio_find_vqs(
                self.as_raw(),
                n as u32,
                vqs.as_mut_ptr(),
                c_infos.as_mut_ptr(),
                &mut desc,
            )
        })?;
        // From here on the owner deletes the queues whatever happens.
        let owner = Virtqueues {
            dev: NonNull::from(&self.0).cast(),
        };
        let mut handles = KVec::with_capacity(n, GFP_KERNEL)?;
        for vq in vqs {
            // On success the transport filled every slot.
            handles.push(Virtqueue(NonNull::new(vq).ok_or(EIO)?), GFP_KERNEL)?;
        }
        Ok((owner, handles))
    }

    /// Resets the device: it stops using its queues, and once this returns no
    /// virtqueue callback runs any more (the core synchronises them).
    pub(crate) fn reset(&self) {
        // SAFETY: The device is live (type invariant).
        unsafe { bindings::virtio_reset_device(self.as_raw()) }
    }

    /// The driver data slot (`virtio_device::priv`), read and written with
    /// ordering because interrupt callbacks read it.
    fn priv_slot(&self) -> &AtomicPtr<c_void> {
        // SAFETY: The device is live (type invariant); `priv` is a pointer-sized,
        // aligned field that only this driver touches, and only atomically.
        unsafe { AtomicPtr::from_ptr(&raw mut (*self.as_raw()).priv_) }
    }
}

/// What to create a virtqueue with.
pub(crate) struct VqInfo {
    /// Its name in /proc/interrupts and debugfs.
    pub(crate) name: &'static CStr,
    /// Whether used buffers raise an interrupt ([`Driver::vq_done`]); poll
    /// queues have none.
    pub(crate) interrupt: bool,
}

/// A virtqueue of a device.
///
/// # Invariants
///
/// The queue is live while the [`Virtqueues`] of its device is; the driver
/// keeps both in its device data and uses neither after `Driver::stop` and
/// the reset that follows it. Operations that change the ring take `&mut
/// self`, so the owner's lock serialises them as the virtio API requires.
pub(crate) struct Virtqueue(NonNull<bindings::virtqueue>);

// SAFETY: The C virtqueue API may be used from any task or interrupt context.
unsafe impl Send for Virtqueue {}
// SAFETY: `&Virtqueue` only allows reads of immutable state (`size`, `index`).
unsafe impl Sync for Virtqueue {}

impl Virtqueue {
    pub(crate) fn as_raw(&self) -> *mut bindings::virtqueue {
        self.0.as_ptr()
    }

    /// Number of descriptors in the ring.
    pub(crate) fn size(&self) -> u32 {
        // SAFETY: The queue is live (type invariant).
        unsafe { bindings::virtqueue_get_vring_size(self.as_raw()) }
    }

    /// Takes the next used buffer: its token and the length the device claims
    /// to have written.
    pub(crate) fn get_buf(&mut self) -> Option<(NonNull<c_void>, u32)> {
        let mut len = 0u32;
        // SAFETY: The queue is live and `&mut self` serialises ring operations.
        let token = unsafe { bindings::virtqueue_get_buf(self.as_raw(), &mut len) };
        NonNull::new(token).map(|t| (t, len))
    }

    /// Whether the device must be notified of added buffers; [`Kick::notify`]
    /// does it, preferably outside the lock.
    pub(crate) fn kick_prepare(&mut self) -> Option<Kick> {
        // SAFETY: As in `get_buf`.
        unsafe { bindings::virtqueue_kick_prepare(self.as_raw()) }.then_some(Kick(self.0))
    }

    /// Stops interrupts for used buffers (a hint to the device).
    pub(crate) fn disable_cb(&mut self) {
        // SAFETY: As in `get_buf`.
        unsafe { bindings::virtqueue_disable_cb(self.as_raw()) }
    }

    /// Restarts interrupts; `false` when buffers were used in between, which
    /// the caller must then take.
    pub(crate) fn enable_cb(&mut self) -> bool {
        // SAFETY: As in `get_buf`.
        unsafe { bindings::virtqueue_enable_cb(self.as_raw()) }
    }

    /// Takes back a buffer the device never used; only after the device was
    /// reset (or before it was started).
    pub(crate) fn detach_unused(&mut self) -> Option<NonNull<c_void>> {
        // SAFETY: As in `get_buf`; the virtio core only returns tokens of
        // buffers still on the ring.
        NonNull::new(unsafe { bindings::virtqueue_detach_unused_buf(self.as_raw()) })
    }

    /// Whether the queue is broken (the device misbehaved or was removed).
    pub(crate) fn is_broken(&self) -> bool {
        // SAFETY: The queue is live (type invariant); this reads a flag.
        unsafe { bindings::virtqueue_is_broken(self.as_raw()) }
    }
}

/// A pending notification of a virtqueue's device.
pub(crate) struct Kick(NonNull<bindings::virtqueue>);

impl Kick {
    /// Notifies the device; `false` when the queue is broken.
    pub(crate) fn notify(self) -> bool {
        // SAFETY: The queue is live: the `Kick` comes from a live `Virtqueue`
        // and is used right after, while the driver's data is alive.
        unsafe { bindings::virtqueue_notify(self.0.as_ptr()) }
    }
}

/// The virtqueues of one device as a whole. Dropping it resets the device
/// (so it stops touching guest memory) and deletes the queues.
///
/// # Invariants
///
/// `dev` is live and bound to this driver, and has virtqueues, for as long as
/// this value exists.
pub(crate) struct Virtqueues {
    dev: NonNull<bindings::virtio_device>,
}

impl Drop for Virtqueues {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the device is live and these are its
        // queues; after the reset the device no longer uses them, so deleting
        // them frees nothing still in use.
        unsafe {
            bindings::virtio_reset_device(self.dev.as_ptr());
            bindings::vsrs_virtio_del_vqs(self.dev.as_ptr());
        }
    }
}

// SAFETY: Dropping may happen in any task; the C API does not care which.
unsafe impl Send for Virtqueues {}
// SAFETY: `&Virtqueues` gives access to nothing.
unsafe impl Sync for Virtqueues {}

/// The number of request queues worth creating for `max` offered by a device
/// (`blk_mq_num_possible_queues`: bounded by the possible CPUs, honouring
/// isolcpus).
pub(crate) fn possible_queues(max: u32) -> u32 {
    // SAFETY: A pure function of its argument and the CPU masks.
    unsafe { bindings::blk_mq_num_possible_queues(max) }
}

/// A virtio driver: what the C entry points of [`Registration`] call.
///
/// Binding runs `probe` (create the queues and the driver's state; the device
/// is not live yet), then `start` with the state reachable from interrupt
/// callbacks. Unbinding runs `stop` (callbacks still delivered), resets the
/// device, and drops the state.
pub(crate) trait Driver: Sized + Send + Sync + 'static {
    /// Prepares to drive `dev`.
    fn probe(dev: &Device) -> Result<Pin<KBox<Self>>>;
    /// Brings the device up; on error the device is reset and `self` dropped.
    fn start(&self, dev: &Device) -> Result;
    /// Quiesces everything that still needs the device working.
    fn stop(&self, dev: &Device);
    /// The device used buffers of the virtqueue with index `index`.
    fn vq_done(&self, index: usize);
    /// Suspend (PM freeze) or a device reset is coming: take everything back
    /// from the device and delete the virtqueues.
    fn suspend(&self, dev: &Device) -> Result;
    /// After [`Driver::suspend`] and the core's re-initialisation of the
    /// device (features negotiated again): create the virtqueues anew and
    /// set DRIVER_OK.
    fn resume(&self, dev: &Device) -> Result;
}

/// A counted reference to a bound virtio device, to reset it from contexts
/// that have no `&Device` (SCSI error handling).
pub(crate) struct DeviceHandle(ARef<device::Device>);

impl Device {
    /// A counted reference to this device.
    pub(crate) fn handle(&self) -> DeviceHandle {
        DeviceHandle(self.as_dev().into())
    }
}

impl DeviceHandle {
    /// Resets the device through its driver: [`Driver::suspend`], a reset and
    /// feature negotiation by the virtio core, [`Driver::resume`]. Fails if
    /// the device is no longer bound.
    pub(crate) fn reset(&self) -> Result {
        // SAFETY: The reference keeps the `struct device`, embedded in a
        // `struct virtio_device` (`Device::handle` got it from one), alive; the
        // core checks whether a driver is bound and calls its callbacks.
        unsafe {
            let vdev =
                bindings::vsrs_dev_to_virtio(core::ptr::from_ref(&*self.0).cast_mut().cast());
            to_result(bindings::virtio_device_reset_prepare(vdev))?;
            to_result(bindings::virtio_device_reset_done(vdev))
        }
    }
}

/// A registered `struct virtio_driver`; unregistered on drop.
#[pin_data(PinnedDrop)]
pub(crate) struct Registration<T: Driver> {
    #[pin]
    drv: Opaque<bindings::virtio_driver>,
    _driver: PhantomData<T>,
}

// SAFETY: After registration the C driver core owns the struct and serialises
// its use; Rust never touches it again but to unregister it.
unsafe impl<T: Driver> Send for Registration<T> {}
// SAFETY: `&Registration` gives no access to the struct at all.
unsafe impl<T: Driver> Sync for Registration<T> {}

impl<T: Driver> Registration<T> {
    /// Registers driver `name` for the devices of `ids` (terminated by a zero
    /// entry), offering the feature bits of `features`.
    pub(crate) fn new(
        name: &'static CStr,
        ids: &'static [bindings::virtio_device_id],
        features: &'static [u32],
    ) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            drv <- Opaque::try_ffi_init(move |drv: *mut bindings::virtio_driver| {
                let mut c: bindings::virtio_driver = pin_init::zeroed();
                c.driver.name = name.as_char_ptr();
                c.id_table = ids.as_ptr();
                c.feature_table = features.as_ptr();
                c.feature_table_size = features.len() as u32;
                c.probe = Some(probe_callback::<T>);
                c.remove = Some(remove_callback::<T>);
                c.freeze = Some(suspend_callback::<T>);
                c.restore = Some(resume_callback::<T>);
                c.reset_prepare = Some(suspend_callback::<T>);
                c.reset_done = Some(resume_callback::<T>);
                // SAFETY: `drv` is valid for writes and pinned: it lives in the
                // module's state until `PinnedDrop` unregisters it. The tables and
                // the name are `'static`; `ids` ends with a zero entry.
                unsafe {
                    drv.write(c);
                    to_result(bindings::vsrs_register_virtio_driver(drv))
                }
            }),
            _driver: PhantomData,
        })
    }
}

#[pinned_drop]
impl<T: Driver> PinnedDrop for Registration<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: The driver was registered in `new` (it would not exist
        // otherwise); unregistering removes every device first.
        unsafe { bindings::unregister_virtio_driver(self.drv.get()) };
    }
}

/// # Safety
///
/// Called by the virtio core with a live device that it is binding to us.
unsafe extern "C" fn probe_callback<T: Driver>(vdev: *mut bindings::virtio_device) -> c_int {
    // SAFETY: The core keeps `vdev` live and bound for the whole call.
    let dev = unsafe { Device::from_raw(vdev) };
    let data = match T::probe(dev) {
        Ok(data) => data,
        Err(e) => return e.to_errno(),
    };
    let ptr = data.into_foreign();
    dev.priv_slot().store(ptr, Ordering::Release);
    // SAFETY: `ptr` came from `into_foreign` just above and is reclaimed only
    // in `unbind`, after this borrow ends.
    let result = T::start(unsafe { &<Pin<KBox<T>>>::borrow(ptr) }, dev);
    match result {
        Ok(()) => 0,
        Err(e) => {
            unbind::<T>(dev, false);
            e.to_errno()
        }
    }
}

/// Takes the device down (`stop` unless it never started), resets it, and
/// drops the driver's state.
fn unbind<T: Driver>(dev: &Device, started: bool) {
    let ptr = dev.priv_slot().load(Ordering::Acquire);
    if started {
        // SAFETY: `priv` holds the `Pin<KBox<T>>` stored by `probe_callback`; it
        // is reclaimed below, after this borrow ends.
        T::stop(unsafe { &<Pin<KBox<T>>>::borrow(ptr) }, dev);
    }
    // No callback runs after the reset, so none can see the state go away.
    dev.reset();
    dev.priv_slot()
        .store(core::ptr::null_mut(), Ordering::Release);
    // SAFETY: As above; nothing else reclaims it, and no borrow is left.
    drop(unsafe { <Pin<KBox<T>>>::from_foreign(ptr) });
}

/// # Safety
///
/// Called by the virtio core with a live device that `probe_callback` bound.
unsafe extern "C" fn remove_callback<T: Driver>(vdev: *mut bindings::virtio_device) {
    // SAFETY: The core keeps `vdev` live for the whole call.
    unbind::<T>(unsafe { Device::from_raw(vdev) }, true);
}

/// # Safety
///
/// Called by the virtio core with a live device that `probe_callback` bound
/// (PM freeze, or before a device reset).
unsafe extern "C" fn suspend_callback<T: Driver>(vdev: *mut bindings::virtio_device) -> c_int {
    // SAFETY: The core keeps `vdev` live and bound for the whole call.
    let dev = unsafe { Device::from_raw(vdev) };
    let ptr = dev.priv_slot().load(Ordering::Acquire);
    // SAFETY: While bound, `priv` holds the state stored by `probe_callback`,
    // reclaimed only by `unbind`, which the core does not run concurrently.
    match T::suspend(unsafe { &<Pin<KBox<T>>>::borrow(ptr) }, dev) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// # Safety
///
/// As [`suspend_callback`] (PM restore, or after a device reset).
unsafe extern "C" fn resume_callback<T: Driver>(vdev: *mut bindings::virtio_device) -> c_int {
    // SAFETY: The core keeps `vdev` live and bound for the whole call.
    let dev = unsafe { Device::from_raw(vdev) };
    let ptr = dev.priv_slot().load(Ordering::Acquire);
    // SAFETY: As in `suspend_callback`.
    match T::resume(unsafe { &<Pin<KBox<T>>>::borrow(ptr) }, dev) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// # Safety
///
/// Called by the virtio core for a live virtqueue created by `find_vqs::<T>`.
unsafe extern "C" fn vq_callback<T: Driver>(vq: *mut bindings::virtqueue) {
    // SAFETY: The core passes a live queue, whose device is live.
    let (dev, index) = unsafe { (Device::from_raw((*vq).vdev), (*vq).index) };
    let ptr = dev.priv_slot().load(Ordering::Acquire);
    if ptr.is_null() {
        // Before `start` or after the state is gone: nothing is in flight.
        return;
    }
    // SAFETY: A non-null `priv` is the state `probe_callback` stored; `unbind`
    // resets the device (which waits for running callbacks) before it clears
    // `priv` and drops the state.
    T::vq_done(unsafe { &<Pin<KBox<T>>>::borrow(ptr) }, index as usize);
}

/// A virtqueue whose buffers the driver owns (control and event queues):
/// `slots` fixed slots, each `out_len` device-readable bytes followed by
/// `in_len` device-writable ones. Requests are copied in and answers copied
/// out, so no caller ever holds a reference into memory the device writes.
///
/// # Invariants
///
/// `mem` is a live allocation of `slots * (out_len + in_len)` bytes (the
/// leaked buffer of a `KVec<u8>` of capacity `cap`); `busy` bit `i` is set
/// exactly while slot `i` is on the ring, with token `i + 1`. The memory
/// outlives the device's use of it: the queue is dropped only after the
/// device was reset (see [`Driver`]).
pub(crate) struct SlotQueue {
    /// `None` between [`SlotQueue::detach`] and [`SlotQueue::attach`].
    vq: Option<Virtqueue>,
    mem: NonNull<u8>,
    cap: usize,
    slots: usize,
    out_len: usize,
    in_len: usize,
    busy: u64,
}

// SAFETY: The buffer is plain memory owned by this value; the virtqueue is
// `Send`.
unsafe impl Send for SlotQueue {}

impl SlotQueue {
    /// The most slots a queue has (one bit each in `busy`).
    pub(crate) const MAX_SLOTS: usize = 64;

    /// Makes `vq` a queue of `slots` (at most [`Self::MAX_SLOTS`]) slots.
    pub(crate) fn new(vq: Virtqueue, slots: usize, out_len: usize, in_len: usize) -> Result<Self> {
        if slots == 0 || slots > Self::MAX_SLOTS || out_len + in_len == 0 {
            return Err(EINVAL);
        }
        let size = slots.checked_mul(out_len + in_len).ok_or(EINVAL)?;
        let mut buf = KVec::<u8>::with_capacity(size, GFP_KERNEL)?;
        buf.resize(size, 0, GFP_KERNEL)?;
        let (ptr, _len, cap) = buf.into_raw_parts();
        Ok(Self {
            vq: Some(vq),
            // `KVec` pointers are never null.
            mem: NonNull::new(ptr).ok_or(ENOMEM)?,
            cap,
            slots,
            out_len,
            in_len,
            busy: 0,
        })
    }

    /// The virtqueue, for ring operations that do not add or take buffers.
    pub(crate) fn vq(&mut self) -> Option<&mut Virtqueue> {
        self.vq.as_mut()
    }

    /// Lets go of the virtqueue (the device was reset and the queues are
    /// about to be deleted): every slot is the driver's again.
    pub(crate) fn detach(&mut self) {
        self.vq = None;
        self.busy = 0;
    }

    /// Uses `vq`, a new virtqueue of the same role (after a reset).
    pub(crate) fn attach(&mut self, vq: Virtqueue) {
        self.vq = Some(vq);
        self.busy = 0;
    }

    /// Whether slot `i` is with the device.
    pub(crate) fn is_busy(&self, i: usize) -> bool {
        i < self.slots && self.busy & (1 << i) != 0
    }

    /// A slot that is not with the device.
    pub(crate) fn free_slot(&self) -> Option<usize> {
        (0..self.slots).find(|&i| !self.is_busy(i))
    }

    fn slot_ptr(&self, i: usize) -> *mut u8 {
        // In bounds: `i < slots` (checked by callers), see the invariants.
        self.mem
            .as_ptr()
            .wrapping_add(i * (self.out_len + self.in_len))
    }

    /// Gives slot `i` to the device: `req` (at most `out_len` bytes, the rest
    /// zero) to read, `in_len` zeroed bytes to write; then notifies it.
    /// `EBUSY` if the slot is with the device, `ENOSPC`/`EIO` from the ring.
    pub(crate) fn submit(&mut self, i: usize, req: &[u8]) -> Result {
        if i >= self.slots || req.len() > self.out_len {
            return Err(EINVAL);
        }
        if self.is_busy(i) {
            return Err(EBUSY);
        }
        let Some(vq) = self.vq.as_mut() else {
            return Err(EIO);
        };
        let p = self
            .mem
            .as_ptr()
            .wrapping_add(i * (self.out_len + self.in_len));
        let mut sg_out: bindings::scatterlist = pin_init::zeroed();
        let mut sg_in: bindings::scatterlist = pin_init::zeroed();
        // SAFETY: The slot is not with the device (not busy), so this value
        // alone accesses its `out_len + in_len` bytes, which lie inside `mem`.
        unsafe {
            core::ptr::write_bytes(p, 0, self.out_len + self.in_len);
            core::ptr::copy_nonoverlapping(req.as_ptr(), p, req.len());
        }
        let mut sgs = [core::ptr::null_mut(); 2];
        let mut n = 0;
        let (outs, ins) = (usize::from(self.out_len > 0), usize::from(self.in_len > 0));
        // SAFETY: Both regions lie in `mem`, which outlives the device's use
        // (type invariant); the scatterlists are only read during `add_sgs`.
        unsafe {
            if outs > 0 {
                bindings::sg_init_one(&mut sg_out, p.cast(), self.out_len as u32);
                sgs[n] = &raw mut sg_out;
                n += 1;
            }
            if ins > 0 {
                bindings::sg_init_one(&mut sg_in, p.add(self.out_len).cast(), self.in_len as u32);
                sgs[n] = &raw mut sg_in;
            }
        }
        // SAFETY: The queue is live and `&mut self` serialises ring operations;
        // the token `i + 1` is never null.
        to_result(unsafe {
            bindings::virtqueue_add_sgs(
                vq.as_raw(),
                sgs.as_mut_ptr(),
                outs as u32,
                ins as u32,
                (i + 1) as *mut c_void,
                bindings::GFP_ATOMIC,
            )
        })?;
        if let Some(kick) = vq.kick_prepare() {
            kick.notify();
        }
        self.busy |= 1 << i;
        Ok(())
    }

    /// Takes the next slot the device is done with: its index and the length
    /// it claims to have written; copies what it wrote (at most `in_len` and
    /// `answer.len()` bytes, the rest of `answer` zero) into `answer`.
    pub(crate) fn take(&mut self, answer: &mut [u8]) -> Option<(usize, u32)> {
        loop {
            let (token, len) = self.vq.as_mut()?.get_buf()?;
            let i = (token.as_ptr() as usize).wrapping_sub(1);
            // The core hands back only tokens it was given, each once; a
            // token of a slot not busy cannot happen, skip it regardless.
            if !self.is_busy(i) {
                continue;
            }
            self.busy &= !(1 << i);
            answer.fill(0);
            let n = answer.len().min(self.in_len).min(len as usize);
            // SAFETY: The device is done with slot `i`; its input part holds
            // `in_len >= n` bytes inside `mem`.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    self.slot_ptr(i).add(self.out_len),
                    answer.as_mut_ptr(),
                    n,
                )
            };
            return Some((i, len));
        }
    }
}

impl Drop for SlotQueue {
    fn drop(&mut self) {
        // SAFETY: `mem` and `cap` came from `into_raw_parts` of a `KVec<u8>`
        // (type invariant), whose bytes were all initialised; the device no
        // longer uses them.
        drop(unsafe {
            KVec::<u8>::from_raw_parts(
                self.mem.as_ptr(),
                self.slots * (self.out_len + self.in_len),
                self.cap,
            )
        });
    }
}
