// SPDX-License-Identifier: GPL-2.0

//! The driver: probe reads and validates the configuration space and creates
//! the virtqueues and the SCSI host; the I/O path maps midlayer commands onto
//! the request virtqueues and completes them from their interrupts (or from
//! blk-mq polling); remove takes it all down. Safe Rust only: the C API is
//! reached through `virtio` and `scsi`.

use crate::{
    bindings::{VIRTIO_SCSI_F_CHANGE, VIRTIO_SCSI_F_HOTPLUG, VIRTIO_SCSI_F_T10_PI},
    irqlock::{IrqSaveBackend, IrqSpinLock},
    protocol::{
        cmd::{self, host_byte, Outcome, TaskAttr},
        config::{offset, Config, Limits, RawConfig},
        ctrl::{self, Tmf, CTRL_REQ_MAX, CTRL_RESP_MAX},
        event::{self, Event, ResetReason},
        wire,
    },
    scsi::{
        self, Command, DoneCommand, EhCommand, EhOutcome, HostBusy, HostHandle, HostOps,
        LiveCommand, MapType, QueueMaps, ReqQueue, ScsiDevice,
    },
    virtio::{self, SlotQueue, VqInfo},
};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use kernel::{
    debugfs, device,
    prelude::*,
    str::CString,
    sync::{
        aref::ARef,
        lock::{Guard, Lock},
        new_condvar, new_mutex, Arc, CondVar, CondVarTimeoutResult, Mutex,
    },
    time::{msecs_to_jiffies, Instant, Monotonic},
    workqueue::{self, impl_has_work, new_work, Work, WorkItem},
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

/// Control queue slots: one per error-handling step that may be waiting for
/// the device (a TMF that timed out keeps its slot until the device answers),
/// plus room for AN subscriptions.
const CTRL_SLOTS: usize = 8;

/// Events that wait for the event work beyond the posted buffers; more than
/// that and the driver rescans everything instead.
const PENDING_EVENTS: usize = 2 * SlotQueue::MAX_SLOTS;

/// ASC/ASCQ of CAPACITY DATA HAS CHANGED (a PARAM_CHANGE after block_resize).
const CAPACITY_CHANGED: (u8, u8) = (0x2a, 0x09);

/// Error-handling and event counters of a device.
#[derive(Default)]
struct EhStats {
    aborts: AtomicU64,
    lun_resets: AtomicU64,
    target_resets: AtomicU64,
    host_resets: AtomicU64,
    tmf_timeouts: AtomicU64,
    tmf_failed: AtomicU64,
    late_answers: AtomicU64,
    events: AtomicU64,
    events_missed: AtomicU64,
    bad_events: AtomicU64,
}

/// The control queue and the answers waiting for their TMF.
struct CtrlState {
    q: SlotQueue,
    /// Slots a request owns: from submission until its waiter took the
    /// answer, or, for a request whose waiter gave up (`abandoned`), until the
    /// device answers.
    owned: u64,
    abandoned: u64,
    answers: [Option<(u32, [u8; CTRL_RESP_MAX])>; CTRL_SLOTS],
}

/// Why a control request got no answer.
enum CtrlError {
    /// Every slot is held by a request the device has not answered.
    NoSlot,
    /// The queue refused the request.
    Ring(Error),
    /// No answer within the timeout.
    TimedOut,
    /// The waiting task got a signal (`sg_reset` interrupted).
    Interrupted,
}

impl core::fmt::Display for CtrlError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoSlot => f.write_str("every control slot awaits the device"),
            Self::Ring(e) => write!(f, "the control queue refused it (error {})", e.to_errno()),
            Self::TimedOut => f.write_str("no answer in time"),
            Self::Interrupted => f.write_str("interrupted by a signal"),
        }
    }
}

/// The control queue: requests wait, bounded, for the device's answer.
#[pin_data]
struct Control {
    #[pin]
    state: IrqSpinLock<CtrlState>,
    #[pin]
    answered: CondVar,
}

impl Control {
    /// Sends `req` and waits up to `timeout_ms` for the answer: its used
    /// length and bytes.
    fn request(
        &self,
        req: &[u8],
        timeout_ms: u32,
    ) -> Result<(u32, [u8; CTRL_RESP_MAX]), CtrlError> {
        let mut g = self.state.lock();
        let i = (0..CTRL_SLOTS)
            .find(|&i| g.owned & (1 << i) == 0)
            .ok_or(CtrlError::NoSlot)?;
        g.answers[i] = None;
        g.q.submit(i, req).map_err(CtrlError::Ring)?;
        g.owned |= 1 << i;
        let mut left = msecs_to_jiffies(timeout_ms);
        let mut gave_up = None;
        loop {
            // An answer that came with the timeout or the signal still counts.
            if let Some(answer) = g.answers[i].take() {
                g.owned &= !(1 << i);
                return Ok(answer);
            }
            if let Some(err) = gave_up {
                // The device still holds the slot; it is freed when it answers.
                g.abandoned |= 1 << i;
                return Err(err);
            }
            match self.answered.wait_interruptible_timeout(&mut g, left) {
                CondVarTimeoutResult::Woken { jiffies } => left = jiffies,
                CondVarTimeoutResult::Timeout => gave_up = Some(CtrlError::TimedOut),
                CondVarTimeoutResult::Signal { .. } => gave_up = Some(CtrlError::Interrupted),
            }
        }
    }

    /// The device was reset: requests it held get no answer (their waiters
    /// see an empty one), and the queue is let go until [`Control::attach`].
    fn detach(&self) {
        let mut g = self.state.lock();
        g.q.detach();
        for i in 0..CTRL_SLOTS {
            let bit = 1u64 << i;
            if g.abandoned & bit != 0 {
                g.abandoned &= !bit;
                g.owned &= !bit;
            } else if g.owned & bit != 0 && g.answers[i].is_none() {
                g.answers[i] = Some((0, [0; CTRL_RESP_MAX]));
            }
        }
        drop(g);
        self.answered.notify_all();
    }

    /// Takes the device's answers (from the control queue's interrupt);
    /// returns how many came for requests whose waiter had given up.
    fn complete(&self) -> u64 {
        let mut late = 0;
        let mut g = self.state.lock();
        loop {
            if let Some(vq) = g.q.vq() {
                vq.disable_cb();
            }
            let mut buf = [0u8; CTRL_RESP_MAX];
            while let Some((i, len)) = g.q.take(&mut buf) {
                let bit = 1u64 << i;
                if g.abandoned & bit != 0 {
                    g.abandoned &= !bit;
                    g.owned &= !bit;
                    late += 1;
                } else if let Some(slot) = g.answers.get_mut(i) {
                    *slot = Some((len, buf));
                }
            }
            if g.q.vq().is_none_or(|vq| vq.is_broken() || vq.enable_cb()) {
                break;
            }
        }
        drop(g);
        self.answered.notify_all();
        late
    }
}

/// The event queue's state: posted buffers and events waiting for the work.
struct EventState {
    q: SlotQueue,
    /// Events taken from the ring, oldest first (used length, first bytes).
    pending: KVec<(u32, [u8; wire::EVENT_SIZE])>,
    /// Events were lost (by the device or here): rescan everything.
    missed: bool,
    /// The work is queued or running.
    work_busy: bool,
    /// The device is going away: queue no more work.
    stopping: bool,
}

/// The event queue and the work that acts on its events in process context.
#[pin_data]
struct Events {
    #[pin]
    state: IrqSpinLock<EventState>,
    /// Notified when the work goes idle.
    #[pin]
    idle: CondVar,
    /// The host the work scans; set while the device is started.
    #[pin]
    host: Mutex<Option<HostHandle>>,
    #[pin]
    work: Work<Events>,
    dev: ARef<device::Device>,
    shared: Arc<Shared>,
}

impl_has_work! {
    impl HasWork<Self> for Events { self.work }
}

impl WorkItem for Events {
    type Pointer = Arc<Events>;

    fn run(this: Arc<Events>) {
        this.run_pending();
    }
}

impl Events {
    /// Posts every buffer that is not with the device.
    fn post_all(&self) -> Result {
        let mut g = self.state.lock();
        while let Some(i) = g.q.free_slot() {
            g.q.submit(i, &[])?;
        }
        Ok(())
    }

    /// Takes the events the device wrote (from the event queue's interrupt),
    /// gives each buffer straight back, and queues the work.
    fn complete(self: &Arc<Self>) {
        let mut g = self.state.lock();
        let mut buf = [0u8; wire::EVENT_SIZE];
        let broken = loop {
            if let Some(vq) = g.q.vq() {
                vq.disable_cb();
            }
            while let Some((i, len)) = g.q.take(&mut buf) {
                if g.pending.len() < PENDING_EVENTS {
                    // Cannot fail: the capacity was reserved at probe.
                    let _ = g.pending.push_within_capacity((len, buf));
                } else {
                    g.missed = true;
                }
                // Re-posted before the event is handled, so a handler that
                // cannot allocate never costs a buffer.
                if let Err(e) = g.q.submit(i, &[]) {
                    dev_err!(self.dev, "cannot re-post event buffer {}: {:?}\n", i, e);
                }
            }
            // Re-arm the interrupt; a broken queue interrupts no more.
            let Some(vq) = g.q.vq() else {
                break false;
            };
            if vq.is_broken() {
                break true;
            }
            if vq.enable_cb() {
                break false;
            }
        };
        self.schedule(g);
        if broken {
            self.shared.recovery.broken("event", 0);
        }
    }

    /// Queues the work if there is something for it and it is not queued.
    fn schedule(self: &Arc<Self>, mut g: Guard<'_, EventState, IrqSaveBackend>) {
        if (g.pending.is_empty() && !g.missed) || g.work_busy || g.stopping {
            return;
        }
        g.work_busy = true;
        drop(g);
        // Queued at most once: `work_busy` is cleared only by the work itself.
        let _ = workqueue::system_freezable().enqueue(self.clone());
    }

    /// After a device reset or resume: rescan everything, since events may
    /// have been lost while the device was down.
    fn rescan_all(self: &Arc<Self>) {
        let mut g = self.state.lock();
        g.missed = true;
        self.schedule(g);
    }

    /// The work: acts on pending events until there are none.
    fn run_pending(&self) {
        loop {
            let mut g = self.state.lock();
            let missed = core::mem::replace(&mut g.missed, false);
            let next = if missed || g.pending.is_empty() {
                None
            } else {
                g.pending.remove(0).ok()
            };
            if !missed && next.is_none() {
                g.work_busy = false;
                drop(g);
                self.idle.notify_all();
                return;
            }
            drop(g);
            let host = self.host.lock();
            let Some(host) = host.as_ref() else {
                continue;
            };
            if missed {
                self.shared.eh.events_missed.fetch_add(1, Relaxed);
                dev_info!(self.dev, "events were missed: rescanning every target\n");
                host.scan_all();
                host.rescan_known(None);
            }
            if let Some((len, buf)) = next {
                self.handle(host, len, &buf);
            }
        }
    }

    /// Acts on one event.
    fn handle(&self, host: &HostHandle, len: u32, buf: &[u8]) {
        self.shared.eh.events.fetch_add(1, Relaxed);
        let (ev, missed) = event::decode_event(buf, len);
        if missed {
            self.state.lock().missed = true;
        }
        let ev = match ev {
            Ok(ev) => ev,
            Err(bad) => {
                self.shared.eh.bad_events.fetch_add(1, Relaxed);
                dev_err!(self.dev, "ignoring an event: {}\n", Show(bad));
                return;
            }
        };
        match ev {
            Event::None => {}
            Event::TransportReset {
                target,
                lun,
                reason,
            } => {
                let (t, l) = (u32::from(target), u64::from(lun));
                match reason {
                    ResetReason::Rescan if l == 0 => host.scan_target(t),
                    ResetReason::Rescan => {
                        if let Err(e) = host.add_lun(t, l) {
                            dev_warn!(self.dev, "cannot add LUN {}:{}: {:?}\n", t, l, e);
                        }
                    }
                    ResetReason::Removed => {
                        host.remove_lun(t, l);
                        if l == 0 {
                            // The spec asks to revalidate the target's other LUNs.
                            host.rescan_known(Some(t));
                        }
                    }
                    ResetReason::Hard => host.rescan_known(Some(t)),
                }
            }
            Event::ParamChange {
                target,
                lun,
                asc,
                ascq,
            } => {
                let (t, l) = (u32::from(target), u64::from(lun));
                if (asc, ascq) != CAPACITY_CHANGED {
                    dev_info!(
                        self.dev,
                        "parameters of LUN {}:{} changed (ASC {:#x} ASCQ {:#x}): rescanning it\n",
                        t,
                        l,
                        asc,
                        ascq
                    );
                }
                host.rescan_lun(t, l);
            }
            Event::AsyncNotify {
                target,
                lun,
                events,
            } => {
                if events & ctrl::an_class::MEDIA_CHANGE != 0 {
                    host.media_changed(u32::from(target), u64::from(lun));
                }
            }
        }
    }

    /// Stops the work for good and waits for it to finish, then lets go of
    /// the host.
    fn stop(&self) {
        let mut g = self.state.lock();
        g.stopping = true;
        while g.work_busy {
            self.idle.wait(&mut g);
        }
        drop(g);
        // The work may still be returning from `run` (and dropping its
        // reference); the module must not go before it has.
        crate::work::flush(&self.work);
        *self.host.lock() = None;
    }
}

/// Counters of one request queue.
#[derive(Default)]
struct QueueStats {
    submitted: AtomicU64,
    completed: AtomicU64,
    busy: AtomicU64,
    device_errors: AtomicU64,
    polled: AtomicU64,
}

/// A virtqueue that breaks more often than this within [`BREAK_WINDOW_MS`]
/// is not reset again: its device is failed.
const MAX_BREAKS: u32 = 3;
const BREAK_WINDOW_MS: i64 = 60_000;

/// Whether a device reset after a broken virtqueue is queued, and the breaks
/// of the current window.
struct RecoveryState {
    queued: bool,
    /// The device is going away, or broke too often: no more resets.
    stopped: bool,
    breaks: u32,
    window: Option<Instant<Monotonic>>,
}

/// Device resets: the work that recovers from a broken virtqueue (the virtio
/// core breaks one when the device hands back a buffer it was not given) and
/// the midlayer's host reset, one at a time.
#[pin_data]
struct Recovery {
    #[pin]
    state: IrqSpinLock<RecoveryState>,
    /// Held for the whole of a reset.
    #[pin]
    resetting: Mutex<()>,
    #[pin]
    work: Work<Recovery>,
    vdev: virtio::DeviceHandle,
    dev: ARef<device::Device>,
    /// Resets done after a broken virtqueue.
    resets: AtomicU64,
}

impl_has_work! {
    impl HasWork<Self> for Recovery { self.work }
}

impl WorkItem for Recovery {
    type Pointer = Arc<Recovery>;

    fn run(this: Arc<Recovery>) {
        this.recover();
    }
}

impl Recovery {
    /// Virtqueue `name` was found broken. Returns `true` while a reset is
    /// under way (commands are to be retried), `false` once recovery has
    /// stopped (they are to fail).
    fn broken(self: &Arc<Self>, name: &str, index: usize) -> bool {
        let mut g = self.state.lock();
        if g.stopped {
            return false;
        }
        if !g.queued {
            g.queued = true;
            drop(g);
            dev_err!(
                self.dev,
                "{} queue {} is broken (the device handed back something it was not given): resetting the device\n",
                name,
                index
            );
            // Queued at most once: `queued` is cleared only by the work.
            let _ = workqueue::system_freezable().enqueue(self.clone());
        }
        true
    }

    /// Resets the device (driver suspend, virtio reset and feature
    /// negotiation, driver resume).
    fn reset(&self) -> Result {
        let _g = self.resetting.lock();
        self.vdev.reset()
    }

    /// The work: resets the device unless it broke too often.
    fn recover(&self) {
        let mut g = self.state.lock();
        if g.stopped {
            // Queued before the device started going away.
            g.queued = false;
            return;
        }
        if g.window
            .is_none_or(|t| t.elapsed().as_millis() > BREAK_WINDOW_MS)
        {
            g.window = Some(Instant::now());
            g.breaks = 0;
        }
        g.breaks += 1;
        let breaks = g.breaks;
        drop(g);
        let result = if breaks > MAX_BREAKS {
            dev_err!(
                self.dev,
                "virtqueues broke {} times within {} s: no more resets, failing its commands\n",
                breaks,
                BREAK_WINDOW_MS / 1000
            );
            Err(EIO)
        } else {
            self.resets.fetch_add(1, Relaxed);
            self.reset().inspect_err(|e| {
                dev_err!(
                    self.dev,
                    "device reset failed (error {}): failing its commands\n",
                    e.to_errno()
                );
            })
        };
        if result.is_ok() {
            dev_info!(self.dev, "device reset: its virtqueues work again\n");
        }
        let mut g = self.state.lock();
        g.queued = false;
        g.stopped |= result.is_err();
    }

    /// No more resets from now on; waits for one under way.
    fn stop(&self) {
        self.state.lock().stopped = true;
        crate::work::flush(&self.work);
    }
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
    ctrl: Pin<KBox<Control>>,
    recovery: Arc<Recovery>,
    /// VIRTIO_SCSI_F_T10_PI was negotiated: requests carry the PI header.
    t10_pi: bool,
    eh: EhStats,
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
        let e = &self.0.eh;
        for (name, v) in [
            ("aborts", &e.aborts),
            ("lun_resets", &e.lun_resets),
            ("target_resets", &e.target_resets),
            ("host_resets", &e.host_resets),
            ("broken_queue_resets", &self.0.recovery.resets),
            ("tmf_timeouts", &e.tmf_timeouts),
            ("tmf_failed", &e.tmf_failed),
            ("late_tmf_answers", &e.late_answers),
            ("events", &e.events),
            ("events_missed", &e.events_missed),
            ("bad_events", &e.bad_events),
        ] {
            writeln!(f, "{name} {}", v.load(Relaxed))?;
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
    events: Arc<Events>,
    /// `stats` in the device's debugfs directory.
    #[pin]
    stats: debugfs::File<StatsView>,
    _debugfs: debugfs::Dir,
    /// Owner of the virtqueues (none while suspended); declared last so it
    /// drops last, resetting the device and deleting the queues.
    #[pin]
    vqs: Mutex<Option<virtio::Virtqueues>>,
}

/// Creates the control, event and request virtqueues for `cfg`.
fn create_vqs(
    dev: &virtio::Device,
    cfg: &Config,
) -> Result<(virtio::Virtqueues, KVec<virtio::Virtqueue>)> {
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
    dev.find_vqs::<VirtioScsi>(&infos, VQ_BASE as u32)
        .inspect_err(|e| {
            dev_err!(
                dev.as_dev(),
                "cannot create {} virtqueues: {:?}\n",
                infos.len(),
                e
            );
        })
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

        let (vqs, handles) = create_vqs(dev, &cfg)?;

        dev.write_u32(offset::CDB_SIZE, wire::CDB_SIZE as u32);
        dev.write_u32(offset::SENSE_SIZE, wire::SENSE_SIZE as u32);

        let mut handles = handles.into_iter();
        let (Some(ctrl_vq), Some(event_vq)) = (handles.next(), handles.next()) else {
            return Err(EIO);
        };
        let mut queues = KVec::with_capacity(cfg.req_queues as usize, GFP_KERNEL)?;
        let mut ring = u32::MAX;
        for vq in handles {
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
        let ctrl_q = SlotQueue::new(ctrl_vq, CTRL_SLOTS, CTRL_REQ_MAX, CTRL_RESP_MAX)?;
        let ctrl = KBox::pin_init(
            pin_init!(Control {
                state <- Lock::new(
                    CtrlState {
                        q: ctrl_q,
                        owned: 0,
                        abandoned: 0,
                        answers: [None; CTRL_SLOTS],
                    },
                    c"vsrs_ctrl_vq",
                    kernel::static_lock_class!(),
                ),
                answered <- new_condvar!("vsrs_ctrl_answered"),
            }),
            GFP_KERNEL,
        )?;
        let nbuf = (*crate::module_parameters::event_buffers.value() as usize)
            .clamp(1, SlotQueue::MAX_SLOTS);
        let event_q = SlotQueue::new(event_vq, nbuf, 0, cfg.event_info_size as usize)?;
        let pending = KVec::with_capacity(PENDING_EVENTS, GFP_KERNEL)?;

        let t10_pi = dev.has_feature(VIRTIO_SCSI_F_T10_PI);
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
            t10_pi,
        };
        let host = scsi::Host::alloc(template, &params)?;
        let recovery = Arc::pin_init(
            pin_init!(Recovery {
                state <- Lock::new(
                    RecoveryState {
                        queued: false,
                        stopped: false,
                        breaks: 0,
                        window: None,
                    },
                    c"vsrs_recovery",
                    kernel::static_lock_class!(),
                ),
                resetting <- new_mutex!(()),
                work <- new_work!("vsrs_recovery"),
                vdev: dev.handle(),
                dev: d.into(),
                resets: AtomicU64::new(0),
            }),
            GFP_KERNEL,
        )?;
        let shared = Arc::new(
            Shared {
                dev: d.into(),
                cfg,
                ring,
                queues,
                ctrl,
                recovery,
                t10_pi,
                eh: EhStats::default(),
                violations: AtomicU64::new(0),
            },
            GFP_KERNEL,
        )?;
        let events_shared = shared.clone();
        let events = Arc::pin_init(
            pin_init!(Events {
                state <- Lock::new(
                    EventState {
                        q: event_q,
                        pending,
                        missed: false,
                        work_busy: false,
                        stopping: false,
                    },
                    c"vsrs_event_vq",
                    kernel::static_lock_class!(),
                ),
                idle <- new_condvar!("vsrs_events_idle"),
                host <- new_mutex!(None),
                work <- new_work!("vsrs_events"),
                dev: d.into(),
                shared: events_shared,
            }),
            GFP_KERNEL,
        )?;
        let dir = debugfs::Dir::new(&CString::try_from_fmt(fmt!("virtio_scsi_rs-{}", d.name()))?);
        let view = StatsView(shared.clone());
        KBox::pin_init(
            try_pin_init!(Self {
                host <- new_mutex!(host),
                shared,
                events,
                stats <- dir.read_only_file(c"stats", view),
                _debugfs: dir,
                vqs <- new_mutex!(Some(vqs)),
            }),
            GFP_KERNEL,
        )
    }

    fn start(&self, dev: &virtio::Device) -> Result {
        let mut host = self.host.lock();
        host.add(self.shared.clone(), dev.as_dev())?;
        *self.events.host.lock() = Some(host.handle());
        dev.ready();
        // The device sends events only once DRIVER_OK is set, and may not be
        // notified before.
        if let Err(e) = self.events.post_all() {
            dev_err!(
                dev.as_dev(),
                "cannot post event buffers ({:?}): hotplug and resize events are lost\n",
                e
            );
        }
        self.log_bound(dev, host.host_no());
        host.scan();
        Ok(())
    }

    fn stop(&self, _dev: &virtio::Device) {
        // No event work may scan a host being removed, no reset run.
        self.events.stop();
        self.shared.recovery.stop();
        // Waits for every command to complete, through the still live queues.
        self.host.lock().remove();
    }

    fn vq_done(&self, index: usize) {
        match index {
            0 => {
                let late = self.shared.ctrl.complete();
                if late > 0 {
                    self.shared.eh.late_answers.fetch_add(late, Relaxed);
                    dev_warn!(
                        self.shared.dev,
                        "the device answered {} TMF(s) after their timeout\n",
                        late
                    );
                }
            }
            1 => self.events.complete(),
            i => {
                self.shared.complete(i - VQ_BASE, Reaper::Interrupt);
            }
        }
    }

    fn suspend(&self, dev: &virtio::Device) -> Result {
        // After the reset the device touches no buffer and no callback runs.
        dev.reset();
        for q in self.shared.queues.iter() {
            let mut vq = q.vq.lock();
            // Answers the device gave before the reset count; the rest go
            // back to the midlayer as reset, to be retried.
            while let Some((cmd, len)) = vq.next_done() {
                self.shared.finish(q, cmd, len);
            }
            while let Some(cmd) = vq.next_unused() {
                let len = cmd.transfer_len();
                cmd.finish(u32::from(host_byte::DID_RESET) << 16, len, &[]);
            }
            vq.detach();
        }
        self.shared.ctrl.detach();
        self.events.state.lock().q.detach();
        *self.vqs.lock() = None;
        Ok(())
    }

    fn resume(&self, dev: &virtio::Device) -> Result {
        let (vqs, handles) = create_vqs(dev, &self.shared.cfg)?;
        dev.write_u32(offset::CDB_SIZE, wire::CDB_SIZE as u32);
        dev.write_u32(offset::SENSE_SIZE, wire::SENSE_SIZE as u32);
        let mut handles = handles.into_iter();
        let (Some(ctrl_vq), Some(event_vq)) = (handles.next(), handles.next()) else {
            return Err(EIO);
        };
        self.shared.ctrl.state.lock().q.attach(ctrl_vq);
        self.events.state.lock().q.attach(event_vq);
        *self.vqs.lock() = Some(vqs);
        dev.ready();
        // Only now may commands go to the device: a notification before
        // DRIVER_OK may be ignored, leaving the command hanging. Until then
        // they were answered host-busy and are retried.
        for (q, vq) in self.shared.queues.iter().zip(handles) {
            q.vq.lock().attach(vq);
        }
        self.events.post_all()?;
        self.events.rescan_all();
        Ok(())
    }
}

impl VirtioScsi {
    /// One line with what the driver found and runs with.
    fn log_bound(&self, dev: &virtio::Device, host_no: u32) {
        let c = &self.shared.cfg;
        dev_info!(
            dev.as_dev(),
            "host{}: {} request queues ({} default, {} poll) of {} entries; targets 0-{}, LUNs 0-{}; \
             seg_max {}, max_sectors {}, cmd_per_lun {}, event_info_size {}; features{}{}{}\n",
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
            if self.shared.t10_pi { " t10_pi" } else { "" },
        );
    }
}

/// Who takes completions off a request queue.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reaper {
    /// The queue's interrupt.
    Interrupt,
    /// blk-mq polling (`mq_poll`).
    Poll,
    /// Error handling, after a TMF.
    ErrorHandler,
}

impl Shared {
    /// Completes what the device has finished on request queue `i`. Returns
    /// how many.
    fn complete(&self, i: usize, by: Reaper) -> i32 {
        let Some(q) = self.queues.get(i) else {
            return 0;
        };
        let irq = by == Reaper::Interrupt;
        let mut n = 0;
        let mut vq = q.vq.lock();
        let broken = loop {
            if irq {
                if let Some(v) = vq.vq() {
                    v.disable_cb();
                }
            }
            while let Some((cmd, len)) = vq.next_done() {
                self.finish(q, cmd, len);
                n += 1;
            }
            let Some(v) = vq.vq() else {
                break false;
            };
            match by {
                // Polling runs often and finds nothing most times: a broken
                // poll queue shows at the next submission (`EIO`).
                Reaper::Poll => break false,
                Reaper::ErrorHandler => break v.is_broken(),
                // Re-arm the interrupt; if buffers were used meanwhile, go
                // again. A broken queue interrupts no more: check it here.
                Reaper::Interrupt if v.is_broken() => break true,
                Reaper::Interrupt if v.enable_cb() => break false,
                Reaper::Interrupt => {}
            }
        };
        drop(vq);
        if broken {
            self.recovery.broken("request", i);
        }
        if n > 0 {
            q.stats.completed.fetch_add(n as u64, Relaxed);
            if by == Reaper::Poll {
                q.stats.polled.fetch_add(n as u64, Relaxed);
            }
        }
        n
    }

    /// Checks the device's answer to `cmd` and hands the command back.
    fn finish(&self, q: &RequestQueue, cmd: DoneCommand, used_len: u32) {
        let resp = cmd.response();
        let transfer_len = cmd.transfer_len();
        let outcome = cmd::decode_cmd_resp(&resp, used_len, transfer_len, cmd.pi_len());
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
        let mut hdr = [0u8; wire::CMD_REQ_SIZE];
        if cmd::encode_cmd_req(
            &mut hdr,
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
        // With T10 PI negotiated every command carries the PI header.
        let req_len = if self.t10_pi {
            let pi = cmd.pi_bytes();
            cmd.priv_mut().req = cmd::encode_cmd_req_pi(&hdr, pi);
            wire::CMD_REQ_PI_SIZE
        } else {
            cmd.priv_mut().req[..wire::CMD_REQ_SIZE].copy_from_slice(&hdr);
            wire::CMD_REQ_SIZE
        };
        let last = cmd.is_last();

        let mut vq = q.vq.lock();
        match cmd.submit(&mut vq, req_len) {
            Ok(()) => {
                q.stats.submitted.fetch_add(1, Relaxed);
                let kick = if last {
                    vq.vq().and_then(|v| v.kick_prepare())
                } else {
                    None
                };
                drop(vq);
                if let Some(kick) = kick {
                    kick.notify();
                }
                Ok(())
            }
            Err((cmd, e)) if e == EIO => {
                // The queue is broken: the device misbehaved (retried after
                // the reset this schedules) or is gone.
                drop(vq);
                if self.recovery.broken("request", (tag >> 16) as usize) {
                    q.stats.busy.fetch_add(1, Relaxed);
                    return Err(HostBusy);
                }
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
            let kick = q.vq.lock().vq().and_then(|v| v.kick_prepare());
            if let Some(kick) = kick {
                kick.notify();
            }
        }
    }

    fn mq_poll(&self, hwq: u32) -> i32 {
        self.complete(hwq as usize, Reaper::Poll)
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

    fn eh_timed_out(&self, _cmd: &EhCommand<'_>) -> bool {
        *crate::module_parameters::eh_reset_timer.value() != 0
    }

    fn eh_abort(&self, cmd: &EhCommand<'_>) -> EhOutcome {
        self.eh.aborts.fetch_add(1, Relaxed);
        if !cmd.in_flight() {
            // The device gave it back meanwhile: nothing left to abort.
            return EhOutcome::Success;
        }
        let outcome = self.tmf(
            Tmf::AbortTask,
            cmd.target(),
            cmd.lun(),
            u64::from(cmd.unique_tag()),
        );
        if outcome == EhOutcome::Success && cmd.in_flight() {
            // The device says it aborted the command but still holds it; if
            // the midlayer reused it now, the old answer could complete the
            // new command. Escalate instead.
            dev_err!(
                self.dev,
                "{}:{}: ABORT TASK reported done but the command was not returned; escalating\n",
                cmd.target(),
                cmd.lun()
            );
            return EhOutcome::Failed;
        }
        outcome
    }

    fn eh_device_reset(&self, cmd: &EhCommand<'_>) -> EhOutcome {
        self.eh.lun_resets.fetch_add(1, Relaxed);
        self.tmf(Tmf::LogicalUnitReset, cmd.target(), cmd.lun(), 0)
    }

    fn eh_target_reset(&self, cmd: &EhCommand<'_>) -> EhOutcome {
        self.eh.target_resets.fetch_add(1, Relaxed);
        self.tmf(Tmf::ItNexusReset, cmd.target(), cmd.lun(), 0)
    }

    fn eh_host_reset(&self, _cmd: &EhCommand<'_>) -> EhOutcome {
        self.eh.host_resets.fetch_add(1, Relaxed);
        dev_warn!(
            self.dev,
            "host reset: resetting the device and its virtqueues\n"
        );
        match self.recovery.reset() {
            Ok(()) => EhOutcome::Success,
            Err(e) => {
                dev_err!(self.dev, "host reset failed: error {}\n", e.to_errno());
                EhOutcome::Failed
            }
        }
    }

    fn sdev_configure(&self, sdev: &mut ScsiDevice<'_>) {
        if !sdev.is_cdrom() {
            return;
        }
        let (t, l) = (sdev.target(), sdev.lun());
        let Some(lun_field) = cmd::encode_lun(t, l) else {
            return;
        };
        let wanted = ctrl::an_class::MEDIA_CHANGE;
        let req = ctrl::encode_an_req(true, lun_field, wanted);
        let secs = (*crate::module_parameters::tmf_timeout.value()).max(1);
        let granted = match self.ctrl.request(&req, secs.saturating_mul(1000)) {
            Ok((len, resp)) => ctrl::decode_an_resp(&resp, len, wanted).unwrap_or(0),
            Err(e) => {
                dev_warn!(
                    self.dev,
                    "{}:{}: AN SUBSCRIBE not answered: {}\n",
                    t,
                    l,
                    Show(e)
                );
                0
            }
        };
        if granted & wanted != 0 {
            sdev.set_reports_media_change();
            dev_info!(self.dev, "{}:{}: the device notifies media changes\n", t, l);
        } else {
            dev_info!(
                self.dev,
                "{}:{}: no asynchronous media notification; the sr driver polls instead\n",
                t,
                l
            );
        }
    }
}

impl Shared {
    /// Sends `tmf` for `target`:`lun` and waits, bounded by the `tmf_timeout`
    /// parameter, for the answer; then takes the completions that raced it.
    fn tmf(&self, tmf: Tmf, target: u32, lun: u64, tag: u64) -> EhOutcome {
        let Some(lun_field) = cmd::encode_lun(target, lun) else {
            return EhOutcome::Failed;
        };
        let req = ctrl::encode_tmf_req(tmf, lun_field, tag);
        let secs = (*crate::module_parameters::tmf_timeout.value()).max(1);
        dev_info!(self.dev, "{}:{}: sending {}\n", target, lun, Show(tmf));
        let outcome = match self.ctrl.request(&req, secs.saturating_mul(1000)) {
            Ok((len, resp)) => {
                let answer = ctrl::decode_tmf_resp(&resp, len);
                if answer.done() {
                    EhOutcome::Success
                } else {
                    self.eh.tmf_failed.fetch_add(1, Relaxed);
                    dev_warn!(
                        self.dev,
                        "{}:{}: {}: {}\n",
                        target,
                        lun,
                        Show(tmf),
                        Show(answer)
                    );
                    EhOutcome::Failed
                }
            }
            Err(CtrlError::TimedOut) => {
                self.eh.tmf_timeouts.fetch_add(1, Relaxed);
                dev_err!(
                    self.dev,
                    "{}:{}: {}: no answer within {} s; escalating\n",
                    target,
                    lun,
                    Show(tmf),
                    secs
                );
                EhOutcome::Failed
            }
            Err(e) => {
                self.eh.tmf_failed.fetch_add(1, Relaxed);
                dev_err!(self.dev, "{}:{}: {}: {}\n", target, lun, Show(tmf), Show(e));
                EhOutcome::Failed
            }
        };
        // The device completes the commands a TMF covers before answering it,
        // but their interrupts may not have run yet: take them now.
        for i in 0..self.queues.len() {
            self.complete(i, Reaper::ErrorHandler);
        }
        outcome
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
