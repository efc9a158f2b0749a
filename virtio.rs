// SPDX-License-Identifier: GPL-2.0

//! Safe wrappers over the C virtio API: a virtio device borrowed from the
//! virtio core, its virtqueues, and the driver registration with its C entry
//! points. This file and `bindings/` are the only places with `unsafe`.

use crate::bindings;
use core::{marker::PhantomData, ptr::NonNull};
use kernel::{
    device,
    error::to_result,
    ffi::c_int,
    prelude::*,
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

    /// Creates the device's virtqueues, one per entry of `infos`, in order.
    ///
    /// The first `pre_vectors` queues get interrupt vectors that are not spread
    /// over the CPUs (control and event queues); the others are.
    pub(crate) fn find_vqs(&self, infos: &[VqInfo], pre_vectors: u32) -> Result<Virtqueues> {
        let n = infos.len();
        let mut c_infos = KVec::with_capacity(n, GFP_KERNEL)?;
        let mut vqs = KVec::with_capacity(n, GFP_KERNEL)?;
        for info in infos {
            c_infos.push(
                bindings::virtqueue_info {
                    name: info.name.as_char_ptr(),
                    callback: None,
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
        let mut queues = KVec::with_capacity(n, GFP_KERNEL)?;
        for vq in vqs {
            // On success the transport filled every slot.
            queues.push(Virtqueue(NonNull::new(vq).ok_or(EIO)?), GFP_KERNEL)?;
        }
        Ok(Virtqueues {
            dev: NonNull::from(&self.0).cast(),
            queues,
        })
    }
}

/// What to create a virtqueue with.
pub(crate) struct VqInfo {
    /// Its name in /proc/interrupts and debugfs.
    pub(crate) name: &'static CStr,
}

/// A virtqueue of a device, valid while the [`Virtqueues`] that owns it lives.
pub(crate) struct Virtqueue(NonNull<bindings::virtqueue>);

impl Virtqueue {
    /// Number of descriptors in the ring.
    pub(crate) fn size(&self) -> u32 {
        // SAFETY: The queue is live while its `Virtqueues` owner is.
        unsafe { bindings::virtqueue_get_vring_size(self.0.as_ptr()) }
    }
}

/// All virtqueues of one device. Dropping it resets the device (so it stops
/// touching guest memory) and deletes the queues.
///
/// # Invariants
///
/// `dev` is live and bound to this driver, and its queues are `queues`,
/// for as long as this value exists.
pub(crate) struct Virtqueues {
    dev: NonNull<bindings::virtio_device>,
    queues: KVec<Virtqueue>,
}

impl Virtqueues {
    /// The queues, in the order they were asked for.
    pub(crate) fn queues(&self) -> &[Virtqueue] {
        &self.queues
    }
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

// SAFETY: The queue pointers are only used through the C virtqueue API, which
// may be called from any task; the value is not tied to the creating thread.
unsafe impl Send for Virtqueues {}
// SAFETY: `&Virtqueues` only reads immutable data (`size`).
unsafe impl Sync for Virtqueues {}

/// The number of request queues worth creating for `max` offered by a device
/// (`blk_mq_num_possible_queues`: bounded by the possible CPUs, honouring
/// isolcpus).
pub(crate) fn possible_queues(max: u32) -> u32 {
    // SAFETY: A pure function of its argument and the CPU masks.
    unsafe { bindings::blk_mq_num_possible_queues(max) }
}

/// A virtio driver: what the C entry points of [`Registration`] call.
pub(crate) trait Driver: Sized + Send + Sync + 'static {
    /// Binds to `dev`; what it returns is kept until [`Driver::remove`].
    fn probe(dev: &Device) -> Result<KBox<Self>>;
    /// Unbinds from `dev`.
    fn remove(self: KBox<Self>, dev: &Device);
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
    match T::probe(dev) {
        Ok(data) => {
            // SAFETY: `vdev` is live; `priv` belongs to the bound driver.
            unsafe { (*vdev).priv_ = data.into_foreign() };
            0
        }
        Err(e) => e.to_errno(),
    }
}

/// # Safety
///
/// Called by the virtio core with a live device that `probe_callback` bound.
unsafe extern "C" fn remove_callback<T: Driver>(vdev: *mut bindings::virtio_device) {
    // SAFETY: The core keeps `vdev` live for the whole call; a successful probe
    // stored a `KBox<T>` in `priv`, which nothing else takes.
    let data = unsafe { KBox::<T>::from_foreign(core::mem::replace(&mut (*vdev).priv_, core::ptr::null_mut())) };
    // SAFETY: As above.
    T::remove(data, unsafe { Device::from_raw(vdev) });
}
