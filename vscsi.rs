// SPDX-License-Identifier: GPL-2.0

//! The driver: probe reads and validates the configuration space and creates
//! the virtqueues and the SCSI host; the I/O path maps midlayer commands onto
//! the request virtqueues and completes them from their interrupts (or from
//! blk-mq polling); remove takes it all down. Safe Rust only: the C API is
//! reached through `virtio` and `scsi`.

use crate::{
    bindings::{VIRTIO_SCSI_F_CHANGE, VIRTIO_SCSI_F_HOTPLUG},
    irqlock::IrqSpinLock,
    protocol::{
        cmd::{self, host_byte, Outcome, TaskAttr},
        config::{offset, Config, Limits, RawConfig},
        wire,
    },
    scsi::{self, Command, DoneCommand, HostBusy, HostOps, MapType, QueueMaps, ReqQueue},
    virtio::{self, VqInfo},
};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use kernel::{
    debugfs, device,
    prelude::*,
    str::CString,
    sync::{aref::ARef, lock::Lock, new_mutex, Arc, Mutex},
};

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

/// Midlayer LUN numbers of flat-addressed LUNs (REPORT LUNS) start here.
const FLAT_LUN_BASE: u64 = 0x4000;

/// Counters of one request queue.
#[derive(Default)]
struct QueueStats {
    submitted: AtomicU64,
    completed: AtomicU64,
    busy: AtomicU64,
    device_errors: AtomicU64,
    polled: AtomicU64,
}

/// One request virtqueue and its lock (taken with interrupts off: the
/// completion runs in the queue's interrupt).
struct RequestQueue {
    vq: Pin<KBox<IrqSpinLock<ReqQueue>>>,
    stats: QueueStats,
}

/// What the SCSI host and the interrupts share.
pub(crate) struct Shared {
    dev: ARef<device::Device>,
    cfg: Config,
    /// Entries of the smallest request virtqueue: the host's queue depth.
    ring: u32,
    queues: KVec<RequestQueue>,
    /// Device protocol violations seen, for rate-limiting their log lines.
    violations: AtomicU64,
}

/// The counters as `/sys/kernel/debug/virtio_scsi_rs-<device>/stats` shows
/// them: a header, one line per request queue, the protocol violations.
struct StatsView(Arc<Shared>);

impl core::fmt::Debug for StatsView {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        writeln!(f, "queue submitted completed busy device_errors polled")?;
        for (i, q) in self.0.queues.iter().enumerate() {
            let s = &q.stats;
            writeln!(
                f,
                "{i} {} {} {} {} {}",
                s.submitted.load(Relaxed),
                s.completed.load(Relaxed),
                s.busy.load(Relaxed),
                s.device_errors.load(Relaxed),
                s.polled.load(Relaxed)
            )?;
        }
        write!(f, "protocol_violations {}", self.0.violations.load(Relaxed))
    }
}

/// One bound virtio-scsi device.
#[pin_data]
pub(crate) struct VirtioScsi {
    /// The SCSI host; removed in `stop`, put when dropped.
    #[pin]
    host: Mutex<scsi::Host<Shared>>,
    shared: Arc<Shared>,
    /// `stats` in the device's debugfs directory.
    #[pin]
    stats: debugfs::File<StatsView>,
    _debugfs: debugfs::Dir,
    /// Owner of the virtqueues; declared last so it drops last, resetting the
    /// device and deleting the queues.
    vqs: virtio::Virtqueues,
}

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

impl virtio::Driver for VirtioScsi {
    fn probe(dev: &virtio::Device) -> Result<Pin<KBox<Self>>> {
        let d = dev.as_dev();
        if !dev.config_readable() {
            dev_err!(d, "the transport gives no access to the config space\n");
            return Err(EINVAL);
        }
        let template = crate::HOST_TEMPLATE.as_ref().ok_or(EINVAL)?;
        let raw = read_config(dev);
        let limits = Limits {
            possible_queues: virtio::possible_queues(raw.num_queues),
            poll_queues: *crate::module_parameters::poll_queues.value(),
        };
        let cfg = raw.validate(limits, |fixup| dev_warn!(d, "{}\n", Show(fixup)));

        let irq_queues = (cfg.req_queues - cfg.poll_queues) as usize;
        let mut infos = KVec::with_capacity(VQ_BASE + cfg.req_queues as usize, GFP_KERNEL)?;
        infos.push(
            VqInfo {
                name: c"control",
                interrupt: true,
            },
            GFP_KERNEL,
        )?;
        infos.push(
            VqInfo {
                name: c"event",
                interrupt: true,
            },
            GFP_KERNEL,
        )?;
        for i in 0..cfg.req_queues as usize {
            let (name, interrupt) = if i < irq_queues {
                (c"request", true)
            } else {
                (c"request_poll", false)
            };
            infos.push(VqInfo { name, interrupt }, GFP_KERNEL)?;
        }
        let (vqs, handles) = dev
            .find_vqs::<Self>(&infos, VQ_BASE as u32)
            .inspect_err(|e| {
                dev_err!(d, "cannot create {} virtqueues: {:?}\n", infos.len(), e);
            })?;

        dev.write_u32(offset::CDB_SIZE, wire::CDB_SIZE as u32);
        dev.write_u32(offset::SENSE_SIZE, wire::SENSE_SIZE as u32);

        let mut queues = KVec::with_capacity(cfg.req_queues as usize, GFP_KERNEL)?;
        let mut ring = u32::MAX;
        for vq in handles.into_iter().skip(VQ_BASE) {
            ring = ring.min(vq.size());
            queues.push(
                RequestQueue {
                    vq: KBox::pin_init(
                        Lock::new(
                            ReqQueue::new(vq),
                            c"vsrs_request_vq",
                            kernel::static_lock_class!(),
                        ),
                        GFP_KERNEL,
                    )?,
                    stats: QueueStats::default(),
                },
                GFP_KERNEL,
            )?;
        }

        let params = scsi::HostParams {
            can_queue: ring,
            sg_tablesize: cfg.seg_max as u16,
            max_sectors: cfg.max_sectors,
            cmd_per_lun: cfg.cmd_per_lun.min(ring) as u16,
            max_id: u32::from(cfg.max_target) + 1,
            // Sequential scanning numbers LUNs 0-255; REPORT LUNS numbers
            // flat-addressed ones from 0x4000.
            max_lun: FLAT_LUN_BASE + u64::from(cfg.max_lun) + 1,
            max_cmd_len: wire::CDB_SIZE as u16,
            nr_hw_queues: cfg.req_queues,
            nr_maps: if cfg.poll_queues > 0 {
                MapType::Poll as u32 + 1
            } else {
                1
            },
        };
        let host = scsi::Host::alloc(template, &params)?;
        let shared = Arc::new(
            Shared {
                dev: d.into(),
                cfg,
                ring,
                queues,
                violations: AtomicU64::new(0),
            },
            GFP_KERNEL,
        )?;
        let dir = debugfs::Dir::new(&CString::try_from_fmt(fmt!("virtio_scsi_rs-{}", d.name()))?);
        let view = StatsView(shared.clone());
        KBox::pin_init(
            try_pin_init!(Self {
                host <- new_mutex!(host),
                shared,
                stats <- dir.read_only_file(c"stats", view),
                _debugfs: dir,
                vqs,
            }),
            GFP_KERNEL,
        )
    }

    fn start(&self, dev: &virtio::Device) -> Result {
        let mut host = self.host.lock();
        host.add(self.shared.clone(), dev.as_dev())?;
        dev.ready();
        self.log_bound(dev, host.host_no());
        host.scan();
        Ok(())
    }

    fn stop(&self, _dev: &virtio::Device) {
        // Waits for every command to complete, through the still live queues.
        self.host.lock().remove();
    }

    fn vq_done(&self, index: usize) {
        // The control and event queues carry nothing yet.
        if let Some(i) = index.checked_sub(VQ_BASE) {
            self.shared.complete(i, false);
        }
    }
}

impl VirtioScsi {
    /// One line with what the driver found and runs with.
    fn log_bound(&self, dev: &virtio::Device, host_no: u32) {
        let c = &self.shared.cfg;
        dev_info!(
            dev.as_dev(),
            "host{}: {} request queues ({} default, {} poll) of {} entries; targets 0-{}, LUNs 0-{}; \
             seg_max {}, max_sectors {}, cmd_per_lun {}, event_info_size {}; features{}{}\n",
            host_no,
            c.req_queues,
            c.req_queues - c.poll_queues,
            c.poll_queues,
            self.shared.ring,
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

impl Shared {
    /// Completes what the device has finished on request queue `i`; from its
    /// interrupt, or from blk-mq polling (`polled`). Returns how many.
    fn complete(&self, i: usize, polled: bool) -> i32 {
        let Some(q) = self.queues.get(i) else {
            return 0;
        };
        let mut n = 0;
        let mut vq = q.vq.lock();
        loop {
            if !polled {
                vq.vq().disable_cb();
            }
            while let Some((cmd, len)) = vq.next_done() {
                self.finish(q, cmd, len);
                n += 1;
            }
            // Re-arm the interrupt; if buffers were used meanwhile, go again.
            if polled || vq.vq().is_broken() || vq.vq().enable_cb() {
                break;
            }
        }
        q.stats.completed.fetch_add(n as u64, Relaxed);
        if polled {
            q.stats.polled.fetch_add(n as u64, Relaxed);
        }
        n
    }

    /// Checks the device's answer to `cmd` and hands the command back.
    fn finish(&self, q: &RequestQueue, cmd: DoneCommand, used_len: u32) {
        let resp = cmd.response();
        let transfer_len = cmd.transfer_len();
        let outcome = cmd::decode_cmd_resp(&resp, used_len, transfer_len);
        match outcome {
            Outcome::Done {
                sense_len, resid, ..
            } => {
                let sense = &resp[cmd::RESP_HEADER_SIZE..cmd::RESP_HEADER_SIZE + sense_len];
                cmd.finish(outcome.scsi_result(), resid, sense);
            }
            Outcome::Invalid(v) => {
                q.stats.device_errors.fetch_add(1, Relaxed);
                self.log_violation(v);
                cmd.finish(outcome.scsi_result(), transfer_len, &[]);
            }
        }
    }

    /// Logs a device protocol violation: the first ten, then one in a
    /// thousand, so a device that lies cannot flood the log.
    fn log_violation(&self, v: cmd::Violation) {
        let n = self.violations.fetch_add(1, Relaxed) + 1;
        if n <= 10 || n % 1000 == 0 {
            dev_err!(
                self.dev,
                "device error #{}: {}; failing the command with DID_ERROR\n",
                n,
                Show(v)
            );
        }
    }
}

impl HostOps for Shared {
    fn queue_command(&self, mut cmd: Command<'_>) -> Result<(), HostBusy> {
        let tag = cmd.unique_tag();
        let Some(q) = self.queues.get((tag >> 16) as usize) else {
            cmd.finish(u32::from(host_byte::DID_ERROR) << 16);
            return Ok(());
        };
        let Some(lun) = cmd::encode_lun(cmd.target(), cmd.lun()) else {
            cmd.finish(u32::from(host_byte::DID_BAD_TARGET) << 16);
            return Ok(());
        };
        let mut cdb = [0u8; wire::CDB_SIZE];
        let len = cmd.cdb().len();
        cdb[..len].copy_from_slice(cmd.cdb());
        let prio = cmd::sam_priority(cmd.ioprio());
        let req = &mut cmd.priv_mut().req;
        let hdr: &mut [u8; wire::CMD_REQ_SIZE] = (&mut req[..wire::CMD_REQ_SIZE])
            .try_into()
            .map_err(|_| HostBusy)?;
        if cmd::encode_cmd_req(
            hdr,
            lun,
            u64::from(tag),
            TaskAttr::Simple,
            prio,
            &cdb[..len],
        )
        .is_err()
        {
            cmd.finish(u32::from(host_byte::DID_ERROR) << 16);
            return Ok(());
        }
        let last = cmd.is_last();

        let mut vq = q.vq.lock();
        match cmd.submit(&mut vq, wire::CMD_REQ_SIZE) {
            Ok(()) => {
                q.stats.submitted.fetch_add(1, Relaxed);
                let kick = if last { vq.vq().kick_prepare() } else { None };
                drop(vq);
                if let Some(kick) = kick {
                    kick.notify();
                }
                Ok(())
            }
            Err((cmd, e)) if e == EIO => {
                // The queue is broken: the device is gone or misbehaved.
                drop(vq);
                cmd.finish(u32::from(host_byte::DID_BAD_TARGET) << 16);
                Ok(())
            }
            Err(_) => {
                // The ring is full (or indirect descriptors could not be
                // allocated): the midlayer retries later.
                q.stats.busy.fetch_add(1, Relaxed);
                Err(HostBusy)
            }
        }
    }

    fn commit_rqs(&self, hwq: u16) {
        if let Some(q) = self.queues.get(usize::from(hwq)) {
            let kick = q.vq.lock().vq().kick_prepare();
            if let Some(kick) = kick {
                kick.notify();
            }
        }
    }

    fn mq_poll(&self, hwq: u32) -> i32 {
        self.complete(hwq as usize, true)
    }

    fn map_queues(&self, maps: &mut QueueMaps<'_>) {
        let c = &self.cfg;
        let default = c.req_queues - c.poll_queues;
        // Interrupt-driven queues follow the affinity of their vectors, which
        // come after the control and event queues' ones.
        maps.set(
            MapType::Default,
            default,
            0,
            Some((&self.dev, VQ_BASE as u32)),
        );
        if maps.count() > MapType::Poll as u32 {
            maps.set(MapType::Read, 0, default, None);
            maps.set(MapType::Poll, c.poll_queues, default, None);
        }
    }

    fn max_queue_depth(&self) -> i32 {
        self.cfg.cmd_per_lun.min(self.ring) as i32
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
    assert!(b::scsi_host_status_DID_BUS_BUSY as u8 == host_byte::DID_BUS_BUSY);
    assert!(b::scsi_host_status_DID_BAD_TARGET as u8 == host_byte::DID_BAD_TARGET);
    assert!(b::scsi_host_status_DID_ABORT as u8 == host_byte::DID_ABORT);
    assert!(b::scsi_host_status_DID_ERROR as u8 == host_byte::DID_ERROR);
    assert!(b::scsi_host_status_DID_RESET as u8 == host_byte::DID_RESET);
    assert!(
        b::scsi_host_status_DID_TRANSPORT_DISRUPTED as u8 == host_byte::DID_TRANSPORT_DISRUPTED
    );
};
