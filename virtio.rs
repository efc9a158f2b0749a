// SPDX-License-Identifier: GPL-2.0

//! Safe wrappers over the C virtio API: a virtio device lent to its driver
//! for the length of a callback, the driver registration whose C entry points
//! serialise the device's lifecycle, the virtqueues of a device as one set
//! that outlives every handle to them, and typed virtqueues whose tokens are
//! the values the driver gave them.

use crate::{
    bindings,
    dma::{self, SgLists, Sgs},
};
use core::{
    cell::UnsafeCell,
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
    sync::{aref::ARef, new_condvar, new_mutex, new_spinlock, rcu, Arc, CondVar, Mutex, SpinLock},
    types::{ForeignOwnable, Opaque},
};

/// A virtio device bound to driver `T`, lent to it for one callback.
///
/// # Invariants
///
/// `raw` is live and bound to the [`Registration`] of `T` for as long as the
/// value exists; only the trampolines of that registration make one, on
/// their stack, and lend it, so its virtqueue callbacks are always `T`'s.
/// `tethers` is the binding's count of what must not outlive it.
pub(crate) struct Device<T: Driver> {
    raw: NonNull<bindings::virtio_device>,
    tethers: Arc<Tethers>,
    _driver: PhantomData<T>,
}

impl<T: Driver> Device<T> {
    /// # Safety
    ///
    /// `ptr` is a `struct virtio_device` that stays live and bound to the
    /// registration of `T` while the value exists; `tethers` is its
    /// binding's.
    unsafe fn new(ptr: *mut bindings::virtio_device, tethers: Arc<Tethers>) -> Option<Self> {
        Some(Self {
            raw: NonNull::new(ptr)?,
            tethers,
            _driver: PhantomData,
        })
    }

    fn as_raw(&self) -> *mut bindings::virtio_device {
        self.raw.as_ptr()
    }

    /// The generic device, for `dev_*!` logging (names the device in dmesg).
    pub(crate) fn as_dev(&self) -> &device::Device {
        // SAFETY: By the type invariant the virtio device is live, so is the
        // `struct device` embedded in it, for as long as `self` is borrowed.
        unsafe { device::Device::from_raw(&raw mut (*self.as_raw()).dev) }
    }

    /// The device-specific configuration space, `len` bytes of it, if the
    /// transport lets the driver read it.
    pub(crate) fn config(&self, len: usize) -> Option<ConfigSpace<'_, T>> {
        // SAFETY: By the type invariant the device is live; the transport sets
        // `config` before probing and never changes it.
        let ops = unsafe { (*self.as_raw()).config };
        // SAFETY: `ops`, when not null, points to the transport's static ops.
        let readable = !ops.is_null() && unsafe { (*ops).get.is_some() };
        readable.then_some(ConfigSpace { dev: self, len })
    }

    /// Whether feature bit `bit` was negotiated.
    pub(crate) fn has_feature(&self, bit: u32) -> bool {
        // SAFETY: The device is live (type invariant).
        unsafe { bindings::vsrs_virtio_has_feature(self.as_raw(), bit) }
    }

    /// Creates the device's virtqueues, one per entry of `infos`, in order:
    /// the set (which resets the device and deletes them when its last handle
    /// goes) and one new queue per entry. Queues with `interrupt` set report
    /// used buffers through [`Driver::vq_done`] of `T`. The first
    /// `pre_vectors` queues get interrupt vectors that are not spread over the
    /// CPUs (control and event queues).
    pub(crate) fn find_vqs(
        &self,
        infos: &[VqInfo],
        pre_vectors: u32,
    ) -> Result<(Arc<VqSet>, KVec<NewQueue>)> {
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
        // Allocated before the queues exist, so that no failure can leave
        // queues without an owner.
        let set = Arc::new(
            VqSet {
                dev: self.handle(),
                created: false.into(),
            },
            GFP_KERNEL,
        )?;
        let mut handles = KVec::with_capacity(n, GFP_KERNEL)?;
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
        // From here on the set deletes the queues whatever happens.
        set.created.store(true, Ordering::Release);
        for vq in vqs {
            // On success the transport filled every slot.
            let vq = NonNull::new(vq).ok_or(EIO)?;
            handles.push(
                NewQueue {
                    vq,
                    set: set.clone(),
                },
                GFP_KERNEL,
            )?;
        }
        Ok((set, handles))
    }
}

/// The configuration space of a device, as far as the driver said it is.
pub(crate) struct ConfigSpace<'a, T: Driver> {
    dev: &'a Device<T>,
    len: usize,
}

impl<T: Driver> ConfigSpace<'_, T> {
    fn fits(&self, offset: usize, size: usize) -> bool {
        offset.checked_add(size).is_some_and(|end| end <= self.len)
    }

    /// Reads a little-endian (or legacy native-endian) u32 at `offset`; `None`
    /// past the end.
    pub(crate) fn read_u32(&self, offset: usize) -> Option<u32> {
        // SAFETY: The device is live (type invariant of `Device`), `get` exists
        // (checked by `Device::config`) and the field lies inside the space.
        self.fits(offset, 4)
            .then(|| unsafe { bindings::vsrs_virtio_cread32(self.dev.as_raw(), offset as u32) })
    }

    /// Reads a u16; see [`ConfigSpace::read_u32`].
    pub(crate) fn read_u16(&self, offset: usize) -> Option<u16> {
        // SAFETY: As in `read_u32`.
        self.fits(offset, 2)
            .then(|| unsafe { bindings::vsrs_virtio_cread16(self.dev.as_raw(), offset as u32) })
    }

    /// Writes a u32 to a driver-writable field; `false` past the end.
    pub(crate) fn write_u32(&self, offset: usize, value: u32) -> bool {
        if !self.fits(offset, 4) {
            return false;
        }
        // SAFETY: As in `read_u32`; writing a field is a transport operation.
        unsafe { bindings::vsrs_virtio_cwrite32(self.dev.as_raw(), offset as u32, value) };
        true
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

/// The virtqueues of one device as a whole. The last handle to go (the set
/// itself or one of its queues) resets the device, so it stops touching
/// guest memory, and deletes the queues. Unbinding waits until every set of
/// the device has gone: a handle the driver kept past its own state (leaked,
/// or in a global) keeps the unbind waiting rather than deleting queues of
/// the device's next binding.
///
/// # Invariants
///
/// While `created`, the device of `dev` has these virtqueues.
pub(crate) struct VqSet {
    /// The device, bound to the driver that made the set (the handle holds
    /// the set in the binding's count until the set has gone).
    dev: DeviceHandle,
    created: core::sync::atomic::AtomicBool,
}

/// How many values that must not outlive a device's binding exist (its
/// [`VqSet`]s and [`DeviceHandle`]s); unbinding waits for none.
#[pin_data]
pub(crate) struct Tethers {
    #[pin]
    live: SpinLock<usize>,
    /// Notified when `live` drops to zero.
    #[pin]
    gone: CondVar,
}

impl Tethers {
    fn new() -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Tethers {
                live <- new_spinlock!(0),
                gone <- new_condvar!("vsrs_virtio_tethers_gone"),
            }),
            GFP_KERNEL,
        )
    }

    /// One more; the count, for it to hold.
    fn add(self: &Arc<Self>) -> Arc<Self> {
        *self.live.lock() += 1;
        self.clone()
    }

    /// One has gone.
    fn remove(&self) {
        let mut g = self.live.lock();
        *g -= 1;
        if *g == 0 {
            self.gone.notify_all();
        }
    }

    /// Waits until none is left.
    fn wait_none(&self) {
        let mut g = self.live.lock();
        while *g != 0 {
            self.gone.wait(&mut g);
        }
    }
}

impl VqSet {
    /// Sets DRIVER_OK: from now on the device may use the queues.
    pub(crate) fn device_ready(&self) {
        // SAFETY: The device is live (the handle in `dev`) and has its
        // queues (type invariant).
        unsafe { bindings::vsrs_virtio_device_ready(self.dev.vdev.as_ptr()) }
    }

    /// Resets the device: it uses none of these queues' buffers any more,
    /// and once this returns no virtqueue callback runs (on every transport:
    /// the callbacks are synchronised too). The proof lets the queues give
    /// back what they still hold ([`Virtqueue::detach_unused`]).
    /// Kicks prepared before the call (inside RCU read-side sections) have
    /// notified the device before it is reset.
    pub(crate) fn reset(&self) -> Reset<'_> {
        // SAFETY: The device is live (the handle in `dev`); this runs in
        // process context (it resets the device, which may sleep).
        unsafe {
            bindings::synchronize_rcu();
            bindings::virtio_reset_device(self.dev.vdev.as_ptr());
            bindings::vsrs_virtio_synchronize_cbs(self.dev.vdev.as_ptr());
        }
        Reset { set: self }
    }
}

impl Drop for VqSet {
    fn drop(&mut self) {
        if self.created.load(Ordering::Acquire) {
            // No handle is left (this is the last reference); once the
            // kicks of the queues' RCU read-side sections are done (the grace
            // period) and the device is reset, nothing uses the queues, so
            // deleting them frees nothing in use. Like the deletion, the
            // grace period needs process context, which a drop here has.
            // SAFETY: The device is live, bound to the driver that made the
            // set (unbinding waits for the handle, dropped after this), and
            // has these queues (type invariant): see above.
            unsafe {
                bindings::synchronize_rcu();
                bindings::virtio_reset_device(self.dev.vdev.as_ptr());
                bindings::vsrs_virtio_del_vqs(self.dev.vdev.as_ptr());
            }
        }
    }
}

/// Proof that the device of a [`VqSet`] was reset since its queues were
/// created: they are dead, and what they hold is the driver's again.
pub(crate) struct Reset<'a> {
    set: &'a VqSet,
}

/// A virtqueue just created, not yet given a token type.
pub(crate) struct NewQueue {
    vq: NonNull<bindings::virtqueue>,
    set: Arc<VqSet>,
}

impl NewQueue {
    /// Number of descriptors in the ring.
    pub(crate) fn size(&self) -> u32 {
        // SAFETY: The queue is live (its set holds it).
        unsafe { bindings::virtqueue_get_vring_size(self.vq.as_ptr()) }
    }

    /// The queue, carrying tokens of type `Tok` from now on.
    pub(crate) fn typed<Tok: dma::Owned>(self) -> Virtqueue<Tok> {
        Virtqueue {
            vq: self.vq,
            set: self.set,
            _tok: PhantomData,
        }
    }
}

// SAFETY: The C virtqueue API may be used from any task.
unsafe impl Send for NewQueue {}

/// A virtqueue whose tokens are values of type `Tok`: [`Virtqueue::add`]
/// gives one to the device with the buffers it owns, [`Virtqueue::get_buf`]
/// takes it back. Operations that change the ring take `&mut self`, so the
/// lock the driver keeps it in serialises them as the virtio API requires.
///
/// # Invariants
///
/// `vq` is a queue of `set`, which it keeps alive. Every token on the ring
/// came from `Tok::into_raw` in [`Virtqueue::add`] and has not been taken
/// back yet.
pub(crate) struct Virtqueue<Tok: dma::Owned> {
    vq: NonNull<bindings::virtqueue>,
    set: Arc<VqSet>,
    _tok: PhantomData<Tok>,
}

// SAFETY: The C virtqueue API may be used from any task or interrupt
// context; the tokens are `Send`.
unsafe impl<Tok: dma::Owned> Send for Virtqueue<Tok> {}
// SAFETY: `&Virtqueue` only allows reads of immutable state or of the broken
// flag, which the C API allows concurrently.
unsafe impl<Tok: dma::Owned> Sync for Virtqueue<Tok> {}

impl<Tok: dma::Owned> Virtqueue<Tok> {
    fn as_raw(&self) -> *mut bindings::virtqueue {
        self.vq.as_ptr()
    }

    /// Whether the queue is broken (the device misbehaved or was removed).
    pub(crate) fn is_broken(&self) -> bool {
        // SAFETY: The queue is live (type invariant); this reads a flag.
        unsafe { bindings::virtqueue_is_broken(self.as_raw()) }
    }

    /// Gives `tok` to the device with the buffers `build` describes, which
    /// can only be memory `tok` owns (or `'static`). On error (`ENOSPC`: the
    /// ring is full; `EIO`: it is broken; `EINVAL`: a bad buffer list) the
    /// token comes back.
    pub(crate) fn add(
        &mut self,
        tok: Tok,
        build: impl for<'b> FnOnce(&'b Tok, &mut Sgs<'b>),
    ) -> Result<(), (Tok, Error)> {
        let mut sgl = SgLists::new();
        let mut sgs = Sgs::new(&mut sgl);
        build(&tok, &mut sgs);
        let (n, out, inn) = match sgs.counts() {
            Ok(c) => c,
            Err(e) => return Err((tok, e)),
        };
        // The lists lose the borrow of `tok` here, but what they describe
        // stays valid until the token comes back (`dma::Owned`).
        let lists = sgl.lists(n);
        let vq = self.as_raw();
        let raw = tok.into_raw();
        // The lists describe memory valid while the token is on the ring
        // (`dma::Owned`) and entries in `sgl`, alive during the call, the
        // only time the C code reads them.
        // SAFETY: The queue is live, `&mut self` serialises ring ops.
        let ret = unsafe {
            bindings::virtqueue_add_sgs(
                vq,
                lists.as_mut_ptr(),
                out,
                inn,
                raw.as_ptr(),
                bindings::GFP_ATOMIC,
            )
        };
        if ret == 0 {
            return Ok(());
        }
        // SAFETY: On failure the ring did not take `raw`, which came from
        // `into_raw` just above.
        Err((unsafe { Tok::from_raw(raw) }, Error::from_errno(ret)))
    }

    /// Takes the next used buffer: its token and the length the device claims
    /// to have written.
    pub(crate) fn get_buf(&mut self) -> Option<(Tok, u32)> {
        let mut len = 0u32;
        // SAFETY: The queue is live and `&mut self` serialises ring operations.
        let token = unsafe { bindings::virtqueue_get_buf(self.as_raw(), &mut len) };
        // SAFETY: The virtio core hands back only tokens it was given, each
        // once (it breaks the queue on a used entry it did not give out), and
        // every token on this ring came from `Tok::into_raw` (type invariant).
        NonNull::new(token).map(|t| (unsafe { Tok::from_raw(t) }, len))
    }

    /// Takes back a buffer the device never used. Needs proof that the device
    /// was reset since this queue was made; `None` once all are back (or for
    /// a proof of another set).
    pub(crate) fn detach_unused(&mut self, reset: &Reset<'_>) -> Option<Tok> {
        if !core::ptr::eq(reset.set, &*self.set) {
            return None;
        }
        // SAFETY: The queue is live; the device was reset, so it uses none of
        // its buffers, and the core returns each remaining token once.
        let token = unsafe { bindings::virtqueue_detach_unused_buf(self.as_raw()) };
        // SAFETY: As in `get_buf`.
        NonNull::new(token).map(|t| unsafe { Tok::from_raw(t) })
    }

    /// Whether the device must be notified of added buffers. The [`Kick`]
    /// does not borrow `self`: it can notify after the driver's lock is let
    /// go (the notification, a trap to the hypervisor, then holds no lock),
    /// as long as the RCU read-side section `rcu` lasts.
    pub(crate) fn kick_prepare<'r>(&mut self, _rcu: &'r rcu::Guard) -> Option<Kick<'r>> {
        // SAFETY: As in `get_buf`.
        let needed = unsafe { bindings::virtqueue_kick_prepare(self.as_raw()) };
        // INVARIANT: The queue is live (`self` holds its set) and the
        // read-side section `'r` began before this point.
        needed.then_some(Kick {
            vq: self.vq,
            _rcu: PhantomData,
        })
    }

    /// Stops interrupts for used buffers (a hint to the device).
    pub(crate) fn disable_cb(&mut self) {
        // SAFETY: As in `get_buf`.
        unsafe { bindings::virtqueue_disable_cb(self.as_raw()) }
    }

    /// Restarts interrupts; `false` when buffers were used in between (they
    /// raise no interrupt of their own: take them now).
    pub(crate) fn enable_cb(&mut self) -> bool {
        // SAFETY: As in `get_buf`.
        unsafe { bindings::virtqueue_enable_cb(self.as_raw()) }
    }
}

/// A pending notification of a virtqueue's device, for the RCU read-side
/// section it was prepared in (it borrows that section's guard, which stays
/// on its task).
///
/// # Invariants
///
/// `vq` was a live queue of a [`VqSet`] when the kick was made, inside the
/// read-side section `'r`. The set's drop waits for an RCU grace period
/// before deleting its queues, and [`VqSet::reset`] before resetting the
/// device, so until `'r` ends the queue stays live and the device is not
/// reset under the notification.
pub(crate) struct Kick<'r> {
    vq: NonNull<bindings::virtqueue>,
    _rcu: PhantomData<&'r rcu::Guard>,
}

impl Kick<'_> {
    /// Notifies the device; `false` when the queue is broken.
    pub(crate) fn notify(self) -> bool {
        // SAFETY: The queue is live (type invariant).
        unsafe { bindings::virtqueue_notify(self.vq.as_ptr()) }
    }
}

/// The number of request queues worth creating for `max` offered by a device
/// (`blk_mq_num_possible_queues`: bounded by the possible CPUs, honouring
/// isolcpus).
pub(crate) fn possible_queues(max: u32) -> u32 {
    // SAFETY: A pure function of its argument and the CPU masks.
    unsafe { bindings::blk_mq_num_possible_queues(max) }
}

/// A virtio driver: what the C entry points of [`Registration`] call.
///
/// The registration serialises the lifecycle: binding runs `probe` then
/// `start`; `freeze`/`restore` (PM), `reset_prepare`/`reset_done` (device
/// reset) and `shutdown` run one at a time, each `restore` after a
/// successful `freeze`, each `reset_done` after a successful
/// `reset_prepare`, nothing but `stop` after `shutdown`; unbinding runs
/// `stop` (callbacks still delivered), resets the device, synchronises the
/// callbacks and drops the state.
pub(crate) trait Driver: Sized + Send + Sync + 'static {
    /// Prepares to drive `dev`.
    fn probe(dev: &Device<Self>) -> Result<Pin<KBox<Self>>>;
    /// Brings the device up; on error the device is reset and `self` dropped.
    fn start(&self, dev: &Device<Self>) -> Result;
    /// Quiesces everything that still needs the device working (remove).
    fn stop(&self, dev: &Device<Self>);
    /// The device used buffers of the virtqueue with index `index`.
    fn vq_done(&self, index: usize);
    /// PM freeze: take everything back from the device, delete the queues.
    fn freeze(&self, dev: &Device<Self>) -> Result;
    /// After `freeze` and the core's re-initialisation of the device
    /// (features negotiated again): create the queues anew, set DRIVER_OK.
    fn restore(&self, dev: &Device<Self>) -> Result;
    /// A device reset is coming (PCI function reset, or the driver's own):
    /// stop new work, take everything back, delete the queues.
    fn reset_prepare(&self, dev: &Device<Self>) -> Result;
    /// After `reset_prepare` and the reset: as `restore`, then let work in.
    fn reset_done(&self, dev: &Device<Self>) -> Result;
    /// The system goes down: stop the device for good.
    fn shutdown(&self, dev: &Device<Self>);
}

/// Where a bound device is in its lifecycle.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Frozen,
    Resetting,
    ShutDown,
    /// Being unbound: no step runs any more, and the driver's state goes.
    Unbound,
}

/// The driver's state with its lifecycle phase, in `virtio_device::priv`.
#[pin_data]
struct Binding<T: Driver> {
    #[pin]
    phase: Mutex<Phase>,
    /// Notified when a reset ends.
    #[pin]
    settled: CondVar,
    /// What must not outlive the binding (queue sets, device handles).
    tethers: Arc<Tethers>,
    /// The driver's state; `None` once `unbind` has taken it.
    data: UnsafeCell<Option<Pin<KBox<T>>>>,
}

impl<T: Driver> Binding<T> {
    /// Runs `f` if the phase is one of `from` once no reset is under way,
    /// moving to `to` if it succeeds; `EBUSY` in another phase.
    fn transition(&self, from: &[Phase], to: Phase, f: impl FnOnce(&T) -> Result) -> Result {
        let mut g = self.phase.lock();
        while *g == Phase::Resetting && to != Phase::Running {
            self.settled.wait(&mut g);
        }
        if !from.contains(&*g) {
            return Err(EBUSY);
        }
        // SAFETY: The phase lock is held and the phase is not `Unbound` (no
        // `from` lists it): `unbind` takes the state only after it set that
        // phase under this lock.
        let data = unsafe { self.data() }.ok_or(EBUSY)?;
        f(data)?;
        *g = to;
        drop(g);
        self.settled.notify_all();
        Ok(())
    }

    /// The driver's state.
    ///
    /// # Safety
    ///
    /// `unbind` does not take it meanwhile: the caller holds the phase lock
    /// in a phase other than `Unbound`, or is a virtqueue callback (`unbind`
    /// takes the state after synchronising them), or is the probe or remove
    /// path itself.
    unsafe fn data(&self) -> Option<&T> {
        // SAFETY: Nothing writes the cell meanwhile (caller's guarantee).
        unsafe { (*self.data.get()).as_deref() }
    }

    /// No step runs from now on; waits for a reset under way.
    fn retire(&self) {
        let mut g = self.phase.lock();
        while *g == Phase::Resetting {
            self.settled.wait(&mut g);
        }
        *g = Phase::Unbound;
    }
}

/// A reference to a bound virtio device, to reset it from contexts that have
/// no `&Device` (SCSI error handling, recovery work). Unbinding waits until
/// every handle has gone, so the device stays bound to the driver that made
/// the handle for as long as the handle exists.
///
/// # Invariants
///
/// `vdev` is the device of `_dev`, bound to the registration that made the
/// handle (whose binding counts the handle in `tethers`).
pub(crate) struct DeviceHandle {
    /// Keeps `vdev` (the device embedding it) alive.
    _dev: ARef<device::Device>,
    vdev: NonNull<bindings::virtio_device>,
    tethers: Arc<Tethers>,
}

// SAFETY: The C virtio API may be used from any task; `vdev` is kept live by
// the reference on its `struct device`.
unsafe impl Send for DeviceHandle {}
// SAFETY: `&DeviceHandle` allows only the reset, which the registration's
// callbacks serialise.
unsafe impl Sync for DeviceHandle {}

impl<T: Driver> Device<T> {
    /// A handle to this device, to reset it later.
    pub(crate) fn handle(&self) -> DeviceHandle {
        DeviceHandle {
            _dev: self.as_dev().into(),
            vdev: self.raw,
            tethers: self.tethers.add(),
        }
    }
}

impl DeviceHandle {
    /// Resets the device through its driver: [`Driver::reset_prepare`], a
    /// reset and feature negotiation by the virtio core,
    /// [`Driver::reset_done`]. Fails (`EBUSY`) if the device is frozen, shut
    /// down or being unbound; waits for a reset under way.
    pub(crate) fn reset(&self) -> Result {
        // SAFETY: The device is live (the reference in `_dev`) and bound to
        // our registration (type invariant): the core calls our callbacks,
        // which check the binding's phase.
        unsafe {
            to_result(bindings::virtio_device_reset_prepare(self.vdev.as_ptr()))?;
            to_result(bindings::virtio_device_reset_done(self.vdev.as_ptr()))
        }
    }
}

impl Drop for DeviceHandle {
    fn drop(&mut self) {
        self.tethers.remove();
    }
}

/// A virtio device id table, with the zero entry that ends it.
#[repr(C)]
pub(crate) struct IdTable<const N: usize> {
    ids: [bindings::virtio_device_id; N],
    end: bindings::virtio_device_id,
}

impl<const N: usize> IdTable<N> {
    /// Devices `(device, vendor)`; `VIRTIO_DEV_ANY_ID` matches any vendor.
    pub(crate) const fn new(ids: [(u32, u32); N]) -> Self {
        const ZERO: bindings::virtio_device_id = bindings::virtio_device_id {
            device: 0,
            vendor: 0,
        };
        let mut t = Self {
            ids: [ZERO; N],
            end: ZERO,
        };
        let mut i = 0;
        while i < N {
            t.ids[i].device = ids[i].0;
            t.ids[i].vendor = ids[i].1;
            i += 1;
        }
        t
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
    /// Registers driver `name` for the devices of `ids`, offering the feature
    /// bits of `features`.
    pub(crate) fn new<const N: usize>(
        name: &'static CStr,
        ids: &'static IdTable<N>,
        features: &'static [u32],
    ) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            drv <- Opaque::try_ffi_init(move |drv: *mut bindings::virtio_driver| {
                let mut c: bindings::virtio_driver = pin_init::zeroed();
                c.driver.name = name.as_char_ptr();
                c.id_table = ids.ids.as_ptr();
                c.feature_table = features.as_ptr();
                c.feature_table_size = features.len() as u32;
                c.probe = Some(probe_callback::<T>);
                c.remove = Some(remove_callback::<T>);
                c.shutdown = Some(shutdown_callback::<T>);
                c.freeze = Some(freeze_callback::<T>);
                c.restore = Some(restore_callback::<T>);
                c.reset_prepare = Some(reset_prepare_callback::<T>);
                c.reset_done = Some(reset_done_callback::<T>);
                // `drv` lives, pinned, in the module's state until `PinnedDrop`
                // unregisters it; `IdTable` ends with its zero entry (`repr(C)`).
                // SAFETY: `drv` is valid for writes; tables and name are `'static`.
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

/// The `virtio_device::priv` slot, read and written with ordering because
/// interrupt callbacks read it.
///
/// # Safety
///
/// `vdev` is live; only this driver touches its `priv`, and only through here.
unsafe fn priv_slot<'a>(vdev: *mut bindings::virtio_device) -> &'a AtomicPtr<c_void> {
    // SAFETY: `priv` is a pointer-sized, aligned field of a live device
    // (caller's guarantee), accessed only atomically.
    unsafe { AtomicPtr::from_ptr(&raw mut (*vdev).priv_) }
}

/// The binding of a device, if the driver's state is there.
///
/// # Safety
///
/// `vdev` is live and bound to the registration of `T`, and `unbind` does
/// not free the binding meanwhile: the caller runs in a callback the core does
/// not run concurrently with `remove`, in a virtqueue callback (`unbind`
/// synchronises them before it frees), in one reached through a
/// [`DeviceHandle`] (`unbind` frees once no handle is left), or is `unbind`.
unsafe fn binding<'a, T: Driver>(
    vdev: *mut bindings::virtio_device,
) -> Option<Pin<&'a Binding<T>>> {
    // SAFETY: The caller guarantees `vdev` is live and ours.
    let ptr = unsafe { priv_slot(vdev) }.load(Ordering::Acquire);
    // SAFETY: A non-null `priv` is the binding `probe_callback` stored, freed
    // only by `unbind` after clearing `priv`, synchronising callbacks and
    // waiting for every device handle; not meanwhile (caller's guarantee).
    (!ptr.is_null()).then(|| unsafe { <Pin<KBox<Binding<T>>>>::borrow(ptr) })
}

/// # Safety
///
/// Called by the virtio core with a live device that it is binding to us.
unsafe extern "C" fn probe_callback<T: Driver>(vdev: *mut bindings::virtio_device) -> c_int {
    let tethers = match Tethers::new() {
        Ok(s) => s,
        Err(e) => return e.to_errno(),
    };
    // SAFETY: The core keeps `vdev` live and bound for the whole call, and
    // `dev` does not outlive it; `tethers` is new, the binding's from here on.
    let Some(dev) = (unsafe { Device::<T>::new(vdev, tethers.clone()) }) else {
        return EINVAL.to_errno();
    };
    let probed = match T::probe(&dev) {
        Ok(data) => data,
        Err(e) => {
            // Not bound: no set the probe made may outlive the binding.
            tethers.wait_none();
            return e.to_errno();
        }
    };
    let boxed = match KBox::pin_init(
        pin_init!(Binding {
            phase <- new_mutex!(Phase::Running),
            settled <- new_condvar!("vsrs_virtio_settled"),
            tethers,
            data: UnsafeCell::new(Some(probed)),
        }),
        GFP_KERNEL,
    ) {
        Ok(b) => b,
        Err(e) => {
            dev.tethers.wait_none();
            return e.to_errno();
        }
    };
    // SAFETY: `vdev` is live and ours.
    unsafe { priv_slot(vdev) }.store(boxed.into_foreign(), Ordering::Release);
    // SAFETY: The binding was stored just above; only `unbind` frees it. This
    // is the probe path, so nothing takes the state meanwhile.
    let result = unsafe { binding::<T>(vdev) }
        .and_then(|b| unsafe { b.get_ref().data() })
        .map_or(Err(EINVAL), |d| d.start(&dev));
    match result {
        Ok(()) => 0,
        Err(e) => {
            unbind::<T>(&dev, false);
            e.to_errno()
        }
    }
}

/// Takes the device down (`stop` unless it never started): no lifecycle
/// step runs from then on, the device is reset, the driver's state dropped
/// once no callback can see it, and the binding freed once nothing tethered
/// to it is left.
fn unbind<T: Driver>(dev: &Device<T>, started: bool) {
    let vdev = dev.as_raw();
    // SAFETY: The binding is freed only below, by this function.
    let b = unsafe { binding::<T>(vdev) };
    if started {
        // SAFETY: The remove path: nothing takes the state meanwhile.
        if let Some(d) = b.and_then(|b| unsafe { b.get_ref().data() }) {
            d.stop(dev);
        }
    }
    if let Some(b) = b {
        b.retire();
    }
    // SAFETY: The device is live; after the reset and the synchronisation no
    // virtqueue callback runs or starts (whatever the transport), and no
    // reset can create queues again (the phase is `Unbound`).
    unsafe {
        bindings::virtio_reset_device(vdev);
        bindings::vsrs_virtio_synchronize_cbs(vdev);
    }
    if let Some(b) = b {
        // SAFETY: No step reads the state any more (the phase is `Unbound`,
        // set under the phase lock), nor does a virtqueue callback (they are
        // synchronised); this function is the only writer.
        let data = unsafe { (*b.data.get()).take() };
        drop(data);
    }
    // The driver's state is gone, and with it (normally) every queue set and
    // device handle: none may outlive the binding.
    dev.tethers.wait_none();
    // SAFETY: `vdev` is live and ours.
    let ptr = unsafe { priv_slot(vdev) }.swap(core::ptr::null_mut(), Ordering::AcqRel);
    if !ptr.is_null() {
        // No borrow of the binding is left: virtqueue callbacks are
        // synchronised, no device handle is left, and the core runs no other
        // device callback concurrently with remove.
        // SAFETY: `ptr` is the binding from `probe_callback`, unborrowed.
        drop(unsafe { <Pin<KBox<Binding<T>>>>::from_foreign(ptr) });
    }
}

/// # Safety
///
/// Called by the virtio core with a live device that `probe_callback` bound.
unsafe extern "C" fn remove_callback<T: Driver>(vdev: *mut bindings::virtio_device) {
    // SAFETY: A device callback, not concurrent with the others.
    let Some(tethers) = (unsafe { binding::<T>(vdev) }).map(|b| b.tethers.clone()) else {
        return;
    };
    // SAFETY: The core keeps `vdev` live and bound for the whole call;
    // `tethers` is its binding's.
    if let Some(dev) = unsafe { Device::<T>::new(vdev, tethers) } {
        unbind::<T>(&dev, true);
    }
}

/// Runs a lifecycle step of the driver with the device's binding.
///
/// # Safety
///
/// Called from a virtio core device callback with a live device bound to `T`.
unsafe fn step<T: Driver>(
    vdev: *mut bindings::virtio_device,
    f: impl FnOnce(&Binding<T>, &Device<T>) -> Result,
) -> c_int {
    // SAFETY: A device callback, not concurrent with remove.
    let Some(b) = (unsafe { binding::<T>(vdev) }) else {
        return EINVAL.to_errno();
    };
    // SAFETY: The core keeps `vdev` live and bound for the whole call;
    // `tethers` is its binding's.
    let Some(dev) = (unsafe { Device::<T>::new(vdev, b.tethers.clone()) }) else {
        return EINVAL.to_errno();
    };
    match f(&*b, &dev) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// # Safety
///
/// Called by the virtio core with a live device that `probe_callback` bound.
unsafe extern "C" fn freeze_callback<T: Driver>(vdev: *mut bindings::virtio_device) -> c_int {
    // SAFETY: As documented for this callback.
    unsafe {
        step::<T>(vdev, |b, dev| {
            b.transition(&[Phase::Running], Phase::Frozen, |d| d.freeze(dev))
        })
    }
}

/// # Safety
///
/// As [`freeze_callback`].
unsafe extern "C" fn restore_callback<T: Driver>(vdev: *mut bindings::virtio_device) -> c_int {
    // SAFETY: As documented for this callback.
    unsafe {
        step::<T>(vdev, |b, dev| {
            b.transition(&[Phase::Frozen], Phase::Running, |d| d.restore(dev))
        })
    }
}

/// # Safety
///
/// As [`freeze_callback`].
unsafe extern "C" fn reset_prepare_callback<T: Driver>(
    vdev: *mut bindings::virtio_device,
) -> c_int {
    // SAFETY: As documented for this callback.
    unsafe {
        step::<T>(vdev, |b, dev| {
            b.transition(&[Phase::Running], Phase::Resetting, |d| {
                d.reset_prepare(dev)
            })
        })
    }
}

/// # Safety
///
/// As [`freeze_callback`].
unsafe extern "C" fn reset_done_callback<T: Driver>(vdev: *mut bindings::virtio_device) -> c_int {
    // SAFETY: As documented for this callback.
    unsafe {
        step::<T>(vdev, |b, dev| {
            // The reset is over whatever `reset_done` says: the phase goes
            // back to running (a failed device fails its commands).
            let mut result = Ok(());
            let r = b.transition(&[Phase::Resetting], Phase::Running, |d| {
                result = d.reset_done(dev);
                Ok(())
            });
            r.and(result)
        })
    }
}

/// # Safety
///
/// As [`freeze_callback`].
unsafe extern "C" fn shutdown_callback<T: Driver>(vdev: *mut bindings::virtio_device) {
    // SAFETY: As documented for this callback.
    unsafe {
        step::<T>(vdev, |b, dev| {
            b.transition(&[Phase::Running, Phase::Frozen], Phase::ShutDown, |d| {
                d.shutdown(dev);
                Ok(())
            })
        })
    };
}

/// # Safety
///
/// Called by the virtio core for a live virtqueue created by
/// `Device::<T>::find_vqs`.
unsafe extern "C" fn vq_callback<T: Driver>(vq: *mut bindings::virtqueue) {
    // SAFETY: The core passes a live queue, whose device is live and bound to
    // `T` (its queues' callbacks are `T`'s: `find_vqs` of `Device<T>`); a
    // virtqueue callback is synchronised by `unbind` before it frees.
    let (b, index) = unsafe { (binding::<T>((*vq).vdev), (*vq).index) };
    // No binding: before `probe` stored it or after `unbind` took it; nothing
    // is in flight then.
    if let Some(b) = b {
        // SAFETY: A virtqueue callback: `unbind` takes the state only after
        // synchronising them.
        if let Some(d) = unsafe { b.data() } {
            d.vq_done(index as usize);
        }
    }
}

/// A virtqueue whose buffers the driver owns (control and event queues):
/// `slots` fixed slots, each `out_len` device-readable bytes followed by
/// `in_len` device-writable ones, the writable part on cache lines of its
/// own (the device's writes never share a line with the CPU's). Requests are
/// copied in and answers copied out, so no caller ever holds a reference
/// into memory the device writes.
///
/// # Invariants
///
/// `mem` holds `slots * stride` bytes; `busy` bit `i` is set exactly while
/// slot `i` is on the ring (token [`Slot`] `i`). Memory of a busy slot is
/// never freed: dropping the queue with slots busy leaks it.
pub(crate) struct SlotQueue {
    vq: Virtqueue<Slot>,
    mem: KVec<Line>,
    slots: usize,
    out_len: usize,
    in_len: usize,
    busy: u64,
}

/// The unit of a slot's memory: a whole number of the architecture's cache
/// lines and DMA alignment units (64 and 8 bytes on x86_64; 64 and 128, its
/// `ARCH_DMA_MINALIGN`, on arm64, whose devices may not snoop the cache), so
/// that what the device writes never shares a line with anything else and a
/// DMA mapping's cache maintenance touches no other slot. Checked at build
/// time against the kernel's values.
#[repr(C, align(128))]
pub(crate) struct Line([u8; 128]);

const _: () = {
    let line = core::mem::size_of::<Line>();
    assert!(line == core::mem::align_of::<Line>());
    assert!(line % bindings::VSRS_ARCH_DMA_MINALIGN == 0);
    assert!(line % bindings::VSRS_L1_CACHE_BYTES == 0);
};

/// The token of a [`SlotQueue`]'s request: the slot's index, plus one so it
/// is never null.
pub(crate) struct Slot(usize);

// SAFETY: A `Slot` owns no memory (the queue owns the slots', which it never
// frees while a slot is busy), so nothing reachable from it can go; the
// pointer is the index plus one, never null, turned back as is.
unsafe impl dma::Owned for Slot {
    fn into_raw(self) -> NonNull<c_void> {
        NonNull::new((self.0 + 1) as *mut c_void).unwrap_or(NonNull::dangling())
    }

    unsafe fn from_raw(ptr: NonNull<c_void>) -> Self {
        Self((ptr.as_ptr() as usize).wrapping_sub(1))
    }
}

impl SlotQueue {
    /// The most slots a queue has (one bit each in `busy`).
    pub(crate) const MAX_SLOTS: usize = 64;

    fn lines(n: usize) -> usize {
        n.div_ceil(core::mem::size_of::<Line>())
    }

    fn stride(&self) -> usize {
        (Self::lines(self.out_len) + Self::lines(self.in_len)) * core::mem::size_of::<Line>()
    }

    /// Makes `vq` a queue of `slots` (at most [`Self::MAX_SLOTS`]) slots.
    pub(crate) fn new(vq: NewQueue, slots: usize, out_len: usize, in_len: usize) -> Result<Self> {
        if slots == 0 || slots > Self::MAX_SLOTS || out_len + in_len == 0 {
            return Err(EINVAL);
        }
        let n = slots * (Self::lines(out_len) + Self::lines(in_len));
        let mut mem = KVec::with_capacity(n, GFP_KERNEL)?;
        for _ in 0..n {
            mem.push(Line([0; 128]), GFP_KERNEL)?;
        }
        Ok(Self {
            vq: vq.typed(),
            mem,
            slots,
            out_len,
            in_len,
            busy: 0,
        })
    }

    /// The virtqueue, for ring operations that do not add or take buffers.
    pub(crate) fn vq(&mut self) -> &mut Virtqueue<Slot> {
        &mut self.vq
    }

    /// Whether slot `i` is with the device.
    pub(crate) fn is_busy(&self, i: usize) -> bool {
        i < self.slots && self.busy & (1 << i) != 0
    }

    /// A slot that is not with the device.
    pub(crate) fn free_slot(&self) -> Option<usize> {
        (0..self.slots).find(|&i| !self.is_busy(i))
    }

    fn slot_ptr(&mut self, i: usize) -> *mut u8 {
        let stride = self.stride();
        // In bounds: `i < slots`, checked by callers (type invariant).
        self.mem.as_mut_ptr().cast::<u8>().wrapping_add(i * stride)
    }

    fn in_offset(&self) -> usize {
        Self::lines(self.out_len) * core::mem::size_of::<Line>()
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
        let (out_len, in_len, in_off) = (self.out_len, self.in_len, self.in_offset());
        let p = self.slot_ptr(i);
        let mut sg_out: bindings::scatterlist = pin_init::zeroed();
        let mut sg_in: bindings::scatterlist = pin_init::zeroed();
        // SAFETY: The slot is not with the device (not busy), so this value
        // alone accesses its `stride` bytes, which lie inside `mem`.
        unsafe {
            core::ptr::write_bytes(p, 0, in_off + in_len);
            core::ptr::copy_nonoverlapping(req.as_ptr(), p, req.len());
        }
        let mut sgs = [core::ptr::null_mut(); 2];
        let mut n = 0;
        let (outs, ins) = (usize::from(out_len > 0), usize::from(in_len > 0));
        // SAFETY: Both regions lie in `mem`, which is never freed while the
        // slot is busy (type invariant); the lists are only read by `add_sgs`.
        unsafe {
            if outs > 0 {
                bindings::sg_init_one(&mut sg_out, p.cast(), out_len as u32);
                sgs[n] = &raw mut sg_out;
                n += 1;
            }
            if ins > 0 {
                bindings::sg_init_one(&mut sg_in, p.add(in_off).cast(), in_len as u32);
                sgs[n] = &raw mut sg_in;
            }
        }
        let tok = dma::Owned::into_raw(Slot(i));
        // SAFETY: The queue is live and `&mut self` serialises ring operations;
        // the token is a `Slot`'s, as the queue's type says.
        to_result(unsafe {
            bindings::virtqueue_add_sgs(
                self.vq.as_raw(),
                sgs.as_mut_ptr(),
                outs as u32,
                ins as u32,
                tok.as_ptr(),
                bindings::GFP_ATOMIC,
            )
        })?;
        self.busy |= 1 << i;
        if let Some(kick) = self.vq.kick_prepare(&rcu::read_lock()) {
            kick.notify();
        }
        Ok(())
    }

    /// Takes the next slot the device is done with: its index and the length
    /// it claims to have written; copies what it wrote (at most `in_len` and
    /// `answer.len()` bytes, the rest of `answer` zero) into `answer`.
    pub(crate) fn take(&mut self, answer: &mut [u8]) -> Option<(usize, u32)> {
        loop {
            let (Slot(i), len) = self.vq.get_buf()?;
            // The core hands back only tokens it was given, each once; a
            // token of a slot not busy cannot happen, skip it regardless.
            if !self.is_busy(i) {
                continue;
            }
            self.busy &= !(1 << i);
            answer.fill(0);
            let n = answer.len().min(self.in_len).min(len as usize);
            let in_off = self.in_offset();
            let p = self.slot_ptr(i);
            // SAFETY: The device is done with slot `i`; its input part holds
            // `in_len >= n` bytes inside `mem`.
            unsafe { core::ptr::copy_nonoverlapping(p.add(in_off), answer.as_mut_ptr(), n) };
            return Some((i, len));
        }
    }

    /// Lets go of the virtqueue after its device was reset: every slot is the
    /// driver's again, and its memory is kept for [`SlotQueue::attach`].
    /// `None` for a proof of another queue set: the busy slots' memory is
    /// then never freed.
    pub(crate) fn detach(mut self, reset: &Reset<'_>) -> Option<SlotMemory> {
        if !core::ptr::eq(reset.set, &*self.vq.set) {
            return None;
        }
        while self.vq.detach_unused(reset).is_some() {}
        self.busy = 0;
        Some(SlotMemory {
            mem: core::mem::take(&mut self.mem),
            slots: self.slots,
            out_len: self.out_len,
            in_len: self.in_len,
        })
    }

    /// A queue on `vq`, a new virtqueue of the same role, on the memory of
    /// the old one.
    pub(crate) fn attach(vq: NewQueue, old: SlotMemory) -> Self {
        Self {
            vq: vq.typed(),
            mem: old.mem,
            slots: old.slots,
            out_len: old.out_len,
            in_len: old.in_len,
            busy: 0,
        }
    }
}

/// The memory of a detached [`SlotQueue`], none of it with a device.
pub(crate) struct SlotMemory {
    mem: KVec<Line>,
    slots: usize,
    out_len: usize,
    in_len: usize,
}

impl Drop for SlotQueue {
    fn drop(&mut self) {
        if self.busy != 0 {
            // The device may still write the busy slots: never free them.
            core::mem::forget(core::mem::take(&mut self.mem));
        }
    }
}
