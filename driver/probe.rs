// SPDX-License-Identifier: GPL-2.0

//! Probe: the configuration space read and validated, the virtqueues
//! created, the driver's state built; and the shape of the SCSI host.

use super::{
    control::Control, events::Events, io::RequestQueue, recovery::Recovery, stats, Shared, Show,
    VirtioScsi, VQ_BASE,
};
use crate::{
    bindings::{
        VIRTIO_F_VERSION_1, VIRTIO_RING_F_INDIRECT_DESC, VIRTIO_SCSI_F_CHANGE,
        VIRTIO_SCSI_F_HOTPLUG, VIRTIO_SCSI_F_T10_PI,
    },
    protocol::{
        config::{offset, Config, Limits, RawConfig},
        wire,
    },
    scsi::{HostParams, MapType},
    virtio::{self, ConfigSpace, NewQueue, VqInfo, VqSet},
};
use core::sync::atomic::{AtomicBool, AtomicU64};
use kernel::{debugfs, new_mutex, prelude::*, str::CString, sync::Arc};

/// Midlayer LUN numbers of flat-addressed LUNs (REPORT LUNS) start here.
const FLAT_LUN_BASE: u64 = 0x4000;

type Device = virtio::Device<VirtioScsi>;

fn read_config(c: &ConfigSpace<'_, VirtioScsi>) -> RawConfig {
    let u32_at = |o| c.read_u32(o).unwrap_or(0);
    let u16_at = |o| c.read_u16(o).unwrap_or(0);
    RawConfig {
        num_queues: u32_at(offset::NUM_QUEUES),
        seg_max: u32_at(offset::SEG_MAX),
        max_sectors: u32_at(offset::MAX_SECTORS),
        cmd_per_lun: u32_at(offset::CMD_PER_LUN),
        event_info_size: u32_at(offset::EVENT_INFO_SIZE),
        max_channel: u16_at(offset::MAX_CHANNEL),
        max_target: u16_at(offset::MAX_TARGET),
        max_lun: u32_at(offset::MAX_LUN),
    }
}

/// The configuration space, or an error line naming the device.
pub(super) fn config_space(dev: &Device) -> Result<ConfigSpace<'_, VirtioScsi>> {
    dev.config(wire::CONFIG_SIZE).ok_or_else(|| {
        dev_err!(
            dev.as_dev(),
            "the transport gives no access to the config space\n"
        );
        EINVAL
    })
}

/// Tells the device the CDB and sense sizes the driver uses.
pub(super) fn write_sizes(c: &ConfigSpace<'_, VirtioScsi>) {
    c.write_u32(offset::CDB_SIZE, wire::CDB_SIZE as u32);
    c.write_u32(offset::SENSE_SIZE, wire::SENSE_SIZE as u32);
}

/// Creates the control, event and request virtqueues for `cfg`.
pub(super) fn create_vqs(dev: &Device, cfg: &Config) -> Result<(Arc<VqSet>, KVec<NewQueue>)> {
    let irq_queues = (cfg.req_queues - cfg.poll_queues) as usize;
    let mut infos = KVec::with_capacity(VQ_BASE + cfg.req_queues as usize, GFP_KERNEL)?;
    for name in [c"control", c"event"] {
        infos.push(
            VqInfo {
                name,
                interrupt: true,
            },
            GFP_KERNEL,
        )?;
    }
    for i in 0..cfg.req_queues as usize {
        let (name, interrupt) = if i < irq_queues {
            (c"request", true)
        } else {
            (c"request_poll", false)
        };
        infos.push(VqInfo { name, interrupt }, GFP_KERNEL)?;
    }
    dev.find_vqs(&infos, VQ_BASE as u32).inspect_err(|e| {
        dev_err!(
            dev.as_dev(),
            "cannot create {} virtqueues: {:?}\n",
            infos.len(),
            e
        );
    })
}

/// Without indirect descriptors every segment of a command takes a ring
/// entry, beside its header and response (and, with T10 PI, as many again
/// for protection information): a command larger than the ring would never
/// fit. The segment limit is lowered to what does.
fn cap_seg_max(dev: &Device, cfg: &mut Config, ring: u32, t10_pi: bool) {
    if dev.has_feature(VIRTIO_RING_F_INDIRECT_DESC) {
        return;
    }
    let room = ring.saturating_sub(2).max(1);
    let cap = if t10_pi { (room / 2).max(1) } else { room };
    if cfg.seg_max > cap {
        dev_warn!(
            dev.as_dev(),
            "seg_max {} does not fit a ring of {} entries without indirect descriptors: using {}\n",
            cfg.seg_max,
            ring,
            cap
        );
        cfg.seg_max = cap;
    }
}

pub(super) fn probe(dev: &Device) -> Result<Pin<KBox<VirtioScsi>>> {
    let d = dev.as_dev();
    // Requests and responses are little-endian (protocol::cmd), as a modern
    // device has them; a legacy one has the guest's byte order.
    if cfg!(target_endian = "big") && !dev.has_feature(VIRTIO_F_VERSION_1) {
        dev_err!(d, "legacy device on a big-endian guest: not supported\n");
        return Err(ENODEV);
    }
    let space = config_space(dev)?;
    let raw = read_config(&space);
    let limits = Limits {
        possible_queues: virtio::possible_queues(raw.num_queues),
        poll_queues: *crate::module_parameters::poll_queues.value(),
    };
    let mut cfg = raw.validate(limits, |fixup| dev_warn!(d, "{}\n", Show(fixup)));
    let (set, handles) = create_vqs(dev, &cfg)?;
    write_sizes(&space);

    let mut handles = handles.into_iter();
    let (Some(ctrl_vq), Some(event_vq)) = (handles.next(), handles.next()) else {
        return Err(EIO);
    };
    let handles: KVec<NewQueue> = {
        let mut v = KVec::with_capacity(cfg.req_queues as usize, GFP_KERNEL)?;
        for h in handles {
            v.push(h, GFP_KERNEL)?;
        }
        v
    };
    let ring = handles.iter().map(|h| h.size()).min().unwrap_or(0);
    if ring == 0 {
        return Err(EIO);
    }
    let t10_pi = dev.has_feature(VIRTIO_SCSI_F_T10_PI);
    cap_seg_max(dev, &mut cfg, ring, t10_pi);
    let mut queues = KVec::with_capacity(handles.len(), GFP_KERNEL)?;
    for vq in handles {
        queues.push(RequestQueue::new(vq, ring)?, GFP_KERNEL)?;
    }
    let shared = Arc::new(
        Shared {
            dev: d.into(),
            cfg,
            ring,
            queues,
            ctrl: KBox::pin_init(Control::new(ctrl_vq)?, GFP_KERNEL)?,
            recovery: Recovery::new(dev.handle(), d.into())?,
            t10_pi,
            eh: stats::EhStats::default(),
            violations: AtomicU64::new(0),
            shut_down: AtomicBool::new(false),
        },
        GFP_KERNEL,
    )?;
    let nbuf = (*crate::module_parameters::event_buffers.value() as usize)
        .clamp(1, crate::virtio::SlotQueue::MAX_SLOTS);
    let events = Events::new(event_vq, nbuf, cfg.event_info_size as usize, shared.clone())?;
    let dir = debugfs::Dir::new(&CString::try_from_fmt(fmt!("virtio_scsi_rs-{}", d.name()))?);
    let view = stats::StatsView(shared.clone());
    KBox::pin_init(
        try_pin_init!(VirtioScsi {
            host <- new_mutex!(None),
            shared,
            events,
            stats <- dir.read_only_file(c"stats", view),
            _debugfs: dir,
            vqs <- new_mutex!(Some(set)),
        }),
        GFP_KERNEL,
    )
}

impl Shared {
    /// The SCSI host's limits and shape.
    pub(super) fn host_params(&self) -> HostParams {
        let c = &self.cfg;
        HostParams {
            can_queue: self.ring,
            sg_tablesize: c.seg_max as u16,
            max_sectors: c.max_sectors,
            cmd_per_lun: c.cmd_per_lun.min(self.ring) as u16,
            max_id: u32::from(c.max_target) + 1,
            // Sequential scanning numbers LUNs 0-255; REPORT LUNS numbers
            // flat-addressed ones from 0x4000.
            max_lun: FLAT_LUN_BASE + u64::from(c.max_lun) + 1,
            max_cmd_len: wire::CDB_SIZE as u16,
            nr_hw_queues: c.req_queues,
            nr_maps: if c.poll_queues > 0 {
                MapType::Poll as u32 + 1
            } else {
                1
            },
            t10_pi: self.t10_pi,
        }
    }

    /// One line with what the driver found and runs with.
    pub(super) fn log_bound(&self, dev: &Device, host_no: u32) {
        let c = &self.cfg;
        dev_info!(
            dev.as_dev(),
            "host{}: {} request queues ({} default, {} poll) of {} entries; targets 0-{}, LUNs 0-{}; \
             seg_max {}, max_sectors {}, cmd_per_lun {}, event_info_size {}; features{}{}{}\n",
            host_no,
            c.req_queues,
            c.req_queues - c.poll_queues,
            c.poll_queues,
            self.ring,
            c.max_target,
            c.max_lun,
            c.seg_max,
            c.max_sectors,
            c.cmd_per_lun,
            c.event_info_size,
            if dev.has_feature(VIRTIO_SCSI_F_HOTPLUG) { " hotplug" } else { "" },
            if dev.has_feature(VIRTIO_SCSI_F_CHANGE) { " change" } else { "" },
            if self.t10_pi { " t10_pi" } else { "" },
        );
    }
}
