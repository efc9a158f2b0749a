// SPDX-License-Identifier: GPL-2.0

//! The device's lifecycle: start (the SCSI host added and scanned), stop
//! (remove), and the queues taken down and brought up again around PM
//! freeze/restore, device resets and shutdown. The virtio registration runs
//! these one at a time (see Documentation, "Lifecycle rules").

use super::{probe, VirtioScsi};
use crate::{protocol::cmd::host_byte, scsi, virtio};
use core::sync::atomic::Ordering::Relaxed;
use kernel::prelude::*;

type Device = virtio::Device<VirtioScsi>;

impl VirtioScsi {
    /// Adds the SCSI host, lets the device run, scans.
    pub(super) fn start_host(&self, dev: &Device) -> Result {
        let template = crate::HOST_TEMPLATE.as_ref().ok_or(EINVAL)?;
        let host = scsi::Host::alloc(template, &self.shared.host_params())?;
        let host = host.add(self.shared.clone(), dev.as_dev())?;
        let handle = host.handle();
        self.events.set_host(Some(host.handle()));
        let host_no = host.host_no();
        *self.host.lock() = Some(host);
        if let Some(set) = self.vqs.lock().as_ref() {
            set.device_ready();
        }
        // The device sends events only once DRIVER_OK is set, and may not be
        // notified before.
        if let Err(e) = self.events.post_all() {
            dev_err!(
                dev.as_dev(),
                "cannot post event buffers ({:?}): hotplug and resize events are lost\n",
                e
            );
        }
        self.shared.log_bound(dev, host_no);
        // Outside the host lock: a reset may run during the scan.
        handle.scan_all();
        Ok(())
    }

    /// Remove: no event work may scan a host being removed, no reset run;
    /// removing the host waits for every command, through the live queues;
    /// then the device is reset and what it still holds (event buffers, late
    /// TMFs) taken back, so every buffer is freed.
    pub(super) fn stop_all(&self) {
        self.events.stop();
        self.shared.recovery.stop();
        let host = self.host.lock().take();
        drop(host);
        self.take_down(host_byte::DID_NO_CONNECT);
    }

    /// Resets the device and takes back everything it held: commands go back
    /// to the midlayer with `result`; then the queues are deleted. Commands
    /// that come meanwhile are answered device-busy (retried) or, after
    /// shutdown, failed.
    pub(super) fn take_down(&self, result: u8) {
        let set = self.vqs.lock().take();
        let Some(set) = set else {
            return;
        };
        self.shared.park_all();
        let reset = set.reset();
        self.shared.take_back_all(&reset, result);
        self.shared.ctrl.detach(&reset);
        self.events.detach(&reset);
        // The last reference to the set: the queues are deleted here, in
        // process context, outside every lock.
        drop(set);
    }

    /// Creates the queues anew (after restore or reset), sets DRIVER_OK; the
    /// caller rescans, since events may have been lost meanwhile.
    pub(super) fn bring_up(&self, dev: &Device) -> Result {
        let space = probe::config_space(dev)?;
        let (set, handles) = probe::create_vqs(dev, &self.shared.cfg)?;
        probe::write_sizes(&space);
        let mut handles = handles.into_iter();
        let (Some(ctrl_vq), Some(event_vq)) = (handles.next(), handles.next()) else {
            return Err(EIO);
        };
        self.shared.ctrl.attach(ctrl_vq)?;
        self.events.attach(event_vq)?;
        set.device_ready();
        // Only now may commands go to the device: a notification before
        // DRIVER_OK may be ignored, leaving the command hanging. Until then
        // they were answered host-busy and are retried.
        for (q, vq) in self.shared.queues.iter().zip(handles) {
            q.attach(vq);
        }
        *self.vqs.lock() = Some(set);
        self.events.post_all()
    }

    /// The system goes down: no more resets or event work; the device is
    /// reset and every command it held fails, as do later ones.
    pub(super) fn shut_down(&self) {
        self.shared.shut_down.store(true, Relaxed);
        self.shared.recovery.stop();
        self.events.stop();
        self.take_down(host_byte::DID_NO_CONNECT);
    }
}
