// SPDX-License-Identifier: GPL-2.0

//! The driver, in safe Rust: the C API is reached through `virtio` and
//! `scsi` only. One file per concept:
//!
//! - `probe`: configuration space, virtqueues, the SCSI host's shape;
//! - `lifecycle`: start, remove, PM freeze/restore, device reset, shutdown;
//! - `io`: the I/O path and which commands the device holds;
//! - `eh`: error handling (TMFs, host reset);
//! - `control`: the control queue; `events`: the event queue and its work;
//! - `recovery`: device resets after a broken virtqueue;
//! - `stats`: counters and their debugfs view.

mod control;
mod eh;
mod events;
mod io;
mod lifecycle;
mod probe;
mod recovery;
mod stats;

use crate::{
    protocol::{cmd::host_byte, config::Config, wire},
    scsi::{self, Busy, Command, EhCommand, EhOutcome, HostRef, MapType, NewDevice, QueueMaps},
    virtio,
};
use core::sync::atomic::{AtomicBool, AtomicU64};
use kernel::{
    debugfs, device,
    prelude::*,
    sync::{aref::ARef, Arc, Mutex},
};

pub(crate) use io::VirtioCmd;

/// Shows a `core::fmt::Display` value (the protocol module's messages) in the
/// kernel's formatting macros, which take `kernel::fmt::Display`.
struct Show<T>(T);

impl<T: core::fmt::Display> kernel::fmt::Display for Show<T> {
    fn fmt(&self, f: &mut kernel::fmt::Formatter<'_>) -> kernel::fmt::Result {
        core::fmt::Display::fmt(&self.0, f)
    }
}

/// Control and event queues come before the request queues (spec 5.6.2).
const VQ_BASE: usize = 2;

/// What the SCSI host, the interrupts and the works share.
pub(crate) struct Shared {
    dev: ARef<device::Device>,
    cfg: Config,
    /// Entries of the smallest request virtqueue: the host's queue depth.
    ring: u32,
    queues: KVec<io::RequestQueue>,
    ctrl: Pin<KBox<control::Control>>,
    recovery: Arc<recovery::Recovery>,
    /// VIRTIO_SCSI_F_T10_PI was negotiated: requests carry the PI header.
    t10_pi: bool,
    eh: stats::EhStats,
    /// Device protocol violations seen, for rate-limiting their log lines.
    violations: AtomicU64,
    /// The system is going down: commands fail instead of waiting.
    shut_down: AtomicBool,
}

/// One bound virtio-scsi device.
#[pin_data]
pub(crate) struct VirtioScsi {
    /// The SCSI host, from `start` until `stop` (taken out of the lock to be
    /// removed, so nothing waits for the lock while the host goes).
    #[pin]
    host: Mutex<Option<scsi::AddedHost<Ops>>>,
    shared: Arc<Shared>,
    events: Arc<events::Events>,
    /// `stats` in the device's debugfs directory.
    #[pin]
    stats: debugfs::File<stats::StatsView>,
    _debugfs: debugfs::Dir,
    /// The virtqueue set (none while the device is down); dropping the last
    /// reference resets the device and deletes the queues.
    #[pin]
    vqs: Mutex<Option<Arc<virtio::VqSet>>>,
}

/// The SCSI side of the driver: what the midlayer calls.
pub(crate) struct Ops;

#[vtable]
impl scsi::Operations for Ops {
    type HostData = Arc<Shared>;
    type CmdData = VirtioCmd;

    fn queue_command(host: HostRef<'_, Self>, cmd: Command<Self>) -> Result<(), Busy<Self>> {
        host.queue_command(cmd)
    }

    fn commit_rqs(host: HostRef<'_, Self>, hwq: u16) {
        host.commit_rqs(hwq);
    }

    fn mq_poll(host: HostRef<'_, Self>, hwq: u32) -> i32 {
        host.poll(hwq as usize)
    }

    fn map_queues(host: HostRef<'_, Self>, maps: &mut QueueMaps<'_>) {
        let c = &host.cfg;
        let default = c.req_queues - c.poll_queues;
        // Interrupt-driven queues follow the affinity of their vectors, which
        // come after the control and event queues' ones.
        let mut r = maps.set(
            MapType::Default,
            default,
            0,
            Some((&host.dev, VQ_BASE as u32)),
        );
        if maps.count() > MapType::Poll as u32 {
            r = r
                .and(maps.set(MapType::Read, 0, default, None))
                .and(maps.set(MapType::Poll, c.poll_queues, default, None));
        }
        if let Err(e) = r {
            dev_err!(host.dev, "cannot map the hardware queues: {:?}\n", e);
        }
    }

    fn max_queue_depth(host: HostRef<'_, Self>) -> i32 {
        host.cfg.cmd_per_lun.min(host.ring) as i32
    }

    fn eh_timed_out(_host: HostRef<'_, Self>, _cmd: &EhCommand<'_>) -> bool {
        *crate::module_parameters::eh_reset_timer.value() != 0
    }

    fn eh_abort(host: HostRef<'_, Self>, cmd: &EhCommand<'_>) -> EhOutcome {
        host.eh_abort(cmd)
    }

    fn eh_device_reset(host: HostRef<'_, Self>, cmd: &EhCommand<'_>) -> EhOutcome {
        host.eh_device_reset(cmd)
    }

    fn eh_target_reset(host: HostRef<'_, Self>, cmd: &EhCommand<'_>) -> EhOutcome {
        host.eh_target_reset(cmd)
    }

    fn eh_host_reset(host: HostRef<'_, Self>, _cmd: &EhCommand<'_>) -> EhOutcome {
        host.eh_host_reset()
    }

    fn sdev_init(_host: HostRef<'_, Self>, sdev: &mut NewDevice<'_>) {
        // Passthrough LUNs need their VPD transfer limits, even those that
        // claim an old SCSI version (as the C driver).
        sdev.try_vpd_pages();
    }

    fn sdev_configure(host: HostRef<'_, Self>, sdev: &mut scsi::ScsiDevice<'_>) {
        host.sdev_configure(sdev);
    }
}

impl virtio::Driver for VirtioScsi {
    fn probe(dev: &virtio::Device<Self>) -> Result<Pin<KBox<Self>>> {
        probe::probe(dev)
    }

    fn start(&self, dev: &virtio::Device<Self>) -> Result {
        self.start_host(dev)
    }

    fn stop(&self, _dev: &virtio::Device<Self>) {
        self.stop_all();
    }

    fn vq_done(&self, index: usize) {
        // Kept a thin dispatcher: the request queues' path (every I/O)
        // pays no frame for the control and event queues' handling.
        match index {
            0 => self.control_done(),
            1 => self.events_done(),
            i => {
                self.shared.complete(i - VQ_BASE, io::Reaper::Interrupt);
            }
        }
    }

    fn freeze(&self, _dev: &virtio::Device<Self>) -> Result {
        // The PM core has quiesced the SCSI devices already.
        self.take_down(host_byte::DID_RESET);
        Ok(())
    }

    fn restore(&self, dev: &virtio::Device<Self>) -> Result {
        self.bring_up(dev)?;
        self.events.rescan_all();
        Ok(())
    }

    fn reset_prepare(&self, _dev: &virtio::Device<Self>) -> Result {
        self.take_down(host_byte::DID_RESET);
        Ok(())
    }

    fn reset_done(&self, dev: &virtio::Device<Self>) -> Result {
        let r = self.bring_up(dev);
        self.events.rescan_after_reset();
        r
    }

    fn shutdown(&self, _dev: &virtio::Device<Self>) {
        self.shut_down();
    }
}

impl VirtioScsi {
    /// The control queue's interrupt: TMF answers.
    #[inline(never)]
    fn control_done(&self) {
        let control::Answers { late, broken } = self.shared.ctrl.complete();
        if broken {
            // Every TMF would fail, and every error handling escalate to a
            // host reset, until the device is reset: reset it now.
            self.shared.recovery.broken("control", 0);
        }
        if late > 0 {
            self.shared
                .eh
                .late_answers
                .fetch_add(late, core::sync::atomic::Ordering::Relaxed);
            dev_warn!(
                self.shared.dev,
                "the device answered {} TMF(s) after their timeout\n",
                late
            );
        }
    }

    /// The event queue's interrupt.
    #[inline(never)]
    fn events_done(&self) {
        self.events.complete();
    }
}

// The protocol module's layouts and values, checked against bindgen's reading
// of the C headers at build time: a mismatch does not compile.
const _: () = {
    use crate::bindings as b;
    use core::mem::size_of;
    assert!(size_of::<b::virtio_scsi_cmd_req>() == wire::CMD_REQ_SIZE);
    assert!(size_of::<b::virtio_scsi_cmd_req_pi>() == wire::CMD_REQ_PI_SIZE);
    assert!(size_of::<b::virtio_scsi_cmd_resp>() == wire::CMD_RESP_SIZE);
    assert!(size_of::<b::virtio_scsi_ctrl_tmf_req>() == wire::CTRL_TMF_REQ_SIZE);
    assert!(size_of::<b::virtio_scsi_ctrl_tmf_resp>() == wire::CTRL_TMF_RESP_SIZE);
    assert!(size_of::<b::virtio_scsi_ctrl_an_req>() == wire::CTRL_AN_REQ_SIZE);
    assert!(size_of::<b::virtio_scsi_ctrl_an_resp>() == wire::CTRL_AN_RESP_SIZE);
    assert!(size_of::<b::virtio_scsi_event>() == wire::EVENT_SIZE);
    assert!(size_of::<b::virtio_scsi_config>() == wire::CONFIG_SIZE);
    assert!(b::VIRTIO_SCSI_CDB_SIZE as usize == wire::CDB_SIZE);
    assert!(b::VIRTIO_SCSI_SENSE_SIZE as usize == wire::SENSE_SIZE);
    assert!(b::scsi_host_status_DID_OK as u8 == host_byte::DID_OK);
    assert!(b::scsi_host_status_DID_NO_CONNECT as u8 == host_byte::DID_NO_CONNECT);
    assert!(b::scsi_host_status_DID_BUS_BUSY as u8 == host_byte::DID_BUS_BUSY);
    assert!(b::scsi_host_status_DID_BAD_TARGET as u8 == host_byte::DID_BAD_TARGET);
    assert!(b::scsi_host_status_DID_ABORT as u8 == host_byte::DID_ABORT);
    assert!(b::scsi_host_status_DID_ERROR as u8 == host_byte::DID_ERROR);
    assert!(b::scsi_host_status_DID_RESET as u8 == host_byte::DID_RESET);
    assert!(
        b::scsi_host_status_DID_TRANSPORT_DISRUPTED as u8 == host_byte::DID_TRANSPORT_DISRUPTED
    );
};
