// SPDX-License-Identifier: GPL-2.0

//! The driver: probe reads and validates the configuration space, creates the
//! control, event and request virtqueues, and brings the device up; remove
//! takes it down. Safe Rust only: the C API is reached through `virtio`.

use crate::{
    bindings::{VIRTIO_SCSI_F_CHANGE, VIRTIO_SCSI_F_HOTPLUG},
    protocol::{
        config::{offset, Config, Limits, RawConfig},
        wire,
    },
    virtio::{self, VqInfo},
};
use kernel::prelude::*;

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

/// One bound virtio-scsi device.
pub(crate) struct VirtioScsi {
    /// The configuration the driver runs with.
    cfg: Config,
    /// Control, event, then request queues; dropped last, resetting the device.
    vqs: virtio::Virtqueues,
}

impl VirtioScsi {
    fn read_config(dev: &virtio::Device) -> RawConfig {
        RawConfig {
            num_queues: dev.read_u32(offset::NUM_QUEUES),
            seg_max: dev.read_u32(offset::SEG_MAX),
            max_sectors: dev.read_u32(offset::MAX_SECTORS),
            cmd_per_lun: dev.read_u32(offset::CMD_PER_LUN),
            event_info_size: dev.read_u32(offset::EVENT_INFO_SIZE),
            max_channel: dev.read_u16(offset::MAX_CHANNEL),
            max_target: dev.read_u16(offset::MAX_TARGET),
            max_lun: dev.read_u32(offset::MAX_LUN),
        }
    }
}

impl virtio::Driver for VirtioScsi {
    fn probe(dev: &virtio::Device) -> Result<KBox<Self>> {
        let d = dev.as_dev();
        if !dev.config_readable() {
            dev_err!(d, "the transport gives no access to the config space\n");
            return Err(EINVAL);
        }
        let raw = Self::read_config(dev);
        let limits = Limits {
            possible_queues: virtio::possible_queues(raw.num_queues),
            poll_queues: *crate::module_parameters::poll_queues.value(),
        };
        let cfg = raw.validate(limits, |fixup| dev_warn!(d, "{}\n", Show(fixup)));

        let irq_queues = (cfg.req_queues - cfg.poll_queues) as usize;
        let mut infos = KVec::with_capacity(VQ_BASE + cfg.req_queues as usize, GFP_KERNEL)?;
        infos.push(VqInfo { name: c"control" }, GFP_KERNEL)?;
        infos.push(VqInfo { name: c"event" }, GFP_KERNEL)?;
        for i in 0..cfg.req_queues as usize {
            let name = if i < irq_queues { c"request" } else { c"request_poll" };
            infos.push(VqInfo { name }, GFP_KERNEL)?;
        }
        let vqs = dev.find_vqs(&infos, VQ_BASE as u32).inspect_err(|e| {
            dev_err!(d, "cannot create {} virtqueues: {:?}\n", infos.len(), e);
        })?;

        dev.write_u32(offset::CDB_SIZE, wire::CDB_SIZE as u32);
        dev.write_u32(offset::SENSE_SIZE, wire::SENSE_SIZE as u32);

        let this = KBox::new(Self { cfg, vqs }, GFP_KERNEL)?;
        dev.ready();
        this.log_bound(dev);
        Ok(this)
    }

    fn remove(self: KBox<Self>, dev: &virtio::Device) {
        dev_info!(dev.as_dev(), "unbinding\n");
        // Dropping the queues resets the device before deleting them.
        drop(self);
    }
}

impl VirtioScsi {
    /// One line with what the driver found and runs with.
    fn log_bound(&self, dev: &virtio::Device) {
        let c = &self.cfg;
        let qsize = self.vqs.queues()[VQ_BASE].size();
        dev_info!(
            dev.as_dev(),
            "{} request queues ({} default, {} poll) of {} entries; targets 0-{}, LUNs 0-{}; \
             seg_max {}, max_sectors {}, cmd_per_lun {}, event_info_size {}; features{}{}\n",
            c.req_queues,
            c.req_queues - c.poll_queues,
            c.poll_queues,
            qsize,
            c.max_target,
            c.max_lun,
            c.seg_max,
            c.max_sectors,
            c.cmd_per_lun,
            c.event_info_size,
            if dev.has_feature(VIRTIO_SCSI_F_HOTPLUG) { " hotplug" } else { "" },
            if dev.has_feature(VIRTIO_SCSI_F_CHANGE) { " change" } else { "" },
        );
    }
}

// The protocol module's layouts, checked against bindgen's reading of the
// uapi header at build time: a mismatch does not compile.
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
};
