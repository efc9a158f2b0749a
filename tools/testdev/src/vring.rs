// SPDX-License-Identifier: GPL-2.0
//! The device's vring: vhost-user-backend's `VringRwLock`, except that a
//! queue looks at its available ring when it becomes enabled.
//!
//! QEMU 7.2 sends VHOST_USER_SET_VRING_ENABLE last when it starts the device,
//! without waiting for an answer; the guest may kick a queue before the
//! message thread has enabled it. vhost-user-backend reads (consumes) that
//! kick and drops it because the ring is disabled: the request stays in the
//! ring until the driver kicks that queue again. A real device looks at the
//! ring when it starts; so does this one: enabling a queue kicks it.

use std::fs::File;
use std::io;

use vhost_user_backend::{VringRwLock, VringStateGuard, VringStateMutGuard, VringT};
use virtio_queue::Error as VirtQueError;
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};

type Mem = GuestMemoryAtomic<GuestMemoryMmap>;

#[derive(Clone)]
pub struct Vring(VringRwLock<Mem>);

impl<'a> VringStateGuard<'a, Mem> for Vring {
    type G = <VringRwLock<Mem> as VringStateGuard<'a, Mem>>::G;
}

impl<'a> VringStateMutGuard<'a, Mem> for Vring {
    type G = <VringRwLock<Mem> as VringStateMutGuard<'a, Mem>>::G;
}

impl VringT<Mem> for Vring {
    fn new(mem: Mem, max_queue_size: u16) -> Result<Self, VirtQueError> {
        VringRwLock::new(mem, max_queue_size).map(Vring)
    }

    fn get_ref(&self) -> <Self as VringStateGuard<'_, Mem>>::G {
        self.0.get_ref()
    }

    fn get_mut(&self) -> <Self as VringStateMutGuard<'_, Mem>>::G {
        self.0.get_mut()
    }

    fn add_used(&self, desc_index: u16, len: u32) -> Result<(), VirtQueError> {
        self.0.add_used(desc_index, len)
    }

    fn signal_used_queue(&self) -> io::Result<()> {
        self.0.signal_used_queue()
    }

    fn enable_notification(&self) -> Result<bool, VirtQueError> {
        self.0.enable_notification()
    }

    fn disable_notification(&self) -> Result<(), VirtQueError> {
        self.0.disable_notification()
    }

    fn needs_notification(&self) -> Result<bool, VirtQueError> {
        self.0.needs_notification()
    }

    fn set_enabled(&self, enabled: bool) {
        let mut state = self.0.get_mut();
        state.set_enabled(enabled);
        if enabled {
            if let Some(kick) = state.get_kick() {
                let _ = kick.write(1);
            }
        }
    }

    fn set_queue_info(&self, desc: u64, avail: u64, used: u64) -> Result<(), VirtQueError> {
        self.0.set_queue_info(desc, avail, used)
    }

    fn queue_next_avail(&self) -> u16 {
        self.0.queue_next_avail()
    }

    fn set_queue_next_avail(&self, base: u16) {
        self.0.set_queue_next_avail(base)
    }

    fn set_queue_next_used(&self, idx: u16) {
        self.0.set_queue_next_used(idx)
    }

    fn queue_used_idx(&self) -> Result<u16, VirtQueError> {
        self.0.queue_used_idx()
    }

    fn set_queue_size(&self, num: u16) {
        self.0.set_queue_size(num)
    }

    fn set_queue_event_idx(&self, enabled: bool) {
        self.0.set_queue_event_idx(enabled)
    }

    fn set_queue_ready(&self, ready: bool) {
        self.0.set_queue_ready(ready)
    }

    fn set_kick(&self, file: Option<File>) {
        self.0.set_kick(file)
    }

    fn read_kick(&self) -> io::Result<bool> {
        self.0.read_kick()
    }

    fn set_call(&self, file: Option<File>) {
        let signal = file.is_some();
        self.0.set_call(file);
        // QEMU sends VHOST_USER_SET_VRING_CALL after the queue's kick and
        // enable: what the device used in between (events waiting since
        // before the start fill the buffers the driver posts at DRIVER_OK)
        // was signalled to no file descriptor, and a driver that refills its
        // buffers from the interrupt would wait for good. The new descriptor
        // is signalled once; a spurious interrupt is harmless.
        if signal {
            let _ = self.0.signal_used_queue();
        }
    }

    fn set_err(&self, file: Option<File>) {
        self.0.set_err(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, FromRawFd};
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    /// A second descriptor of `fd`, as QEMU would pass one.
    fn copy_of(fd: &EventFd) -> File {
        // SAFETY: dup(2) of our own open eventfd returns a new descriptor
        // (checked below) that nothing else owns: the File owns it.
        let copy = unsafe { libc_dup(fd.as_raw_fd()) };
        assert!(copy >= 0, "dup failed");
        // SAFETY: see above.
        unsafe { File::from_raw_fd(copy) }
    }

    #[test]
    fn enabling_a_queue_kicks_it() {
        let v = Vring::new(GuestMemoryAtomic::new(GuestMemoryMmap::new()), 16).unwrap();
        let kick = EventFd::new(EFD_NONBLOCK).unwrap();
        v.set_kick(Some(copy_of(&kick)));
        v.set_enabled(false);
        assert!(kick.read().is_err(), "disabling must not kick");
        v.set_enabled(true);
        assert_eq!(kick.read().unwrap(), 1);
    }

    #[test]
    fn a_new_call_descriptor_is_signalled() {
        let v = Vring::new(GuestMemoryAtomic::new(GuestMemoryMmap::new()), 16).unwrap();
        let call = EventFd::new(EFD_NONBLOCK).unwrap();
        v.set_call(Some(copy_of(&call)));
        assert_eq!(call.read().unwrap(), 1);
        v.set_call(None);
        assert!(call.read().is_err(), "a removal must not signal");
    }

    extern "C" {
        #[link_name = "dup"]
        fn libc_dup(fd: i32) -> i32;
    }
}
