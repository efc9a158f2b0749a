// SPDX-License-Identifier: GPL-2.0

//! The event queue: the device's hotplug, unplug, parameter change and media
//! change events, acted on by a work item in process context.

use super::{stats::bump, Shared, Show};
use crate::{
    irqlock::{IrqSaveBackend, IrqSpinLock},
    protocol::{
        ctrl,
        event::{self, Event, ResetReason},
        wire,
    },
    scsi::HostHandle,
    virtio::{NewQueue, Reset, SlotMemory, SlotQueue},
};
use kernel::{
    device, new_condvar, new_mutex,
    prelude::*,
    sync::{
        aref::ARef,
        lock::{Guard, Lock},
        Arc, CondVar, Mutex,
    },
    workqueue::{self, impl_has_work, new_work, Work, WorkItem},
};

/// Events that wait for the event work beyond the posted buffers; more than
/// that and the driver rescans everything instead.
const PENDING_EVENTS: usize = 2 * SlotQueue::MAX_SLOTS;

/// ASC/ASCQ of CAPACITY DATA HAS CHANGED (a PARAM_CHANGE after block_resize).
const CAPACITY_CHANGED: (u8, u8) = (0x2a, 0x09);

/// The event queue's state: posted buffers and events waiting for the work.
struct EventState {
    /// `None` while the device is down (reset, frozen).
    q: Option<SlotQueue>,
    /// The queue's memory while it is down.
    kept: Option<SlotMemory>,
    /// Buffers to post, and their size.
    slots: usize,
    size: usize,
    /// Events taken from the ring, oldest first (used length, first bytes).
    pending: KVec<(u32, [u8; wire::EVENT_SIZE])>,
    /// Events were lost (by the device or here): rescan everything.
    missed: bool,
    /// The device was reset: rescan the known targets.
    was_reset: bool,
    /// The work is queued or running.
    work_busy: bool,
    /// The device is going away: queue no more work.
    stopping: bool,
}

/// The event queue and the work that acts on its events in process context.
#[pin_data]
pub(super) struct Events {
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
    /// The event queue on `vq`: `slots` buffers of `size` bytes.
    pub(super) fn new(
        vq: NewQueue,
        slots: usize,
        size: usize,
        shared: Arc<Shared>,
    ) -> Result<Arc<Self>> {
        let q = SlotQueue::new(vq, slots, 0, size)?;
        let pending = KVec::with_capacity(PENDING_EVENTS, GFP_KERNEL)?;
        let dev = shared.dev.clone();
        Arc::pin_init(
            pin_init!(Events {
                state <- Lock::new(
                    EventState {
                        q: Some(q),
                        kept: None,
                        slots,
                        size,
                        pending,
                        missed: false,
                        was_reset: false,
                        work_busy: false,
                        stopping: false,
                    },
                    c"vsrs_event_vq",
                    kernel::static_lock_class!(),
                ),
                idle <- new_condvar!("vsrs_events_idle"),
                host <- new_mutex!(None),
                work <- new_work!("vsrs_events"),
                dev,
                shared,
            }),
            GFP_KERNEL,
        )
    }

    /// Sets (or clears) the host the work scans.
    pub(super) fn set_host(&self, host: Option<HostHandle>) {
        *self.host.lock() = host;
    }

    /// Posts every buffer that is not with the device.
    pub(super) fn post_all(&self) -> Result {
        let mut g = self.state.lock();
        let q = g.q.as_mut().ok_or(EAGAIN)?;
        while let Some(i) = q.free_slot() {
            q.submit(i, &[])?;
        }
        Ok(())
    }

    /// The device was reset: its buffers are ours again until `attach`.
    pub(super) fn detach(&self, reset: &Reset<'_>) {
        let mut g = self.state.lock();
        if let Some(q) = g.q.take() {
            g.kept = q.detach(reset);
        }
    }

    /// Uses `vq`, the new event queue after a reset (buffers not posted yet).
    pub(super) fn attach(&self, vq: NewQueue) -> Result {
        let mut g = self.state.lock();
        let q = match g.kept.take() {
            Some(mem) => SlotQueue::attach(vq, mem),
            None => SlotQueue::new(vq, g.slots, 0, g.size)?,
        };
        g.q = Some(q);
        Ok(())
    }

    /// Takes the events the device wrote (from the event queue's interrupt),
    /// gives each buffer straight back, and queues the work.
    pub(super) fn complete(self: &Arc<Self>) {
        let mut g = self.state.lock();
        let mut buf = [0u8; wire::EVENT_SIZE];
        let broken = loop {
            let EventState {
                q,
                pending,
                missed,
                stopping,
                ..
            } = &mut *g;
            let Some(q) = q.as_mut() else {
                break false;
            };
            q.vq().disable_cb();
            while let Some((i, len)) = q.take(&mut buf) {
                if *stopping {
                    // Not acted on: the device is going away.
                } else if pending.len() < PENDING_EVENTS {
                    // Cannot fail: the capacity was reserved at probe.
                    let _ = pending.push_within_capacity((len, buf));
                } else {
                    *missed = true;
                }
                // Re-posted before the event is handled, so a handler that
                // cannot allocate never costs a buffer.
                if let Err(e) = q.submit(i, &[]) {
                    dev_err!(self.dev, "cannot re-post event buffer {}: {:?}\n", i, e);
                }
            }
            // Re-arm the interrupt; a broken queue interrupts no more.
            if q.vq().is_broken() {
                break true;
            }
            if q.vq().enable_cb() {
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
        if (g.pending.is_empty() && !g.missed && !g.was_reset) || g.work_busy || g.stopping {
            return;
        }
        g.work_busy = true;
        drop(g);
        // Queued at most once: `work_busy` is cleared only by the work itself.
        let _ = workqueue::system_freezable().enqueue(self.clone());
    }

    /// After a resume: rescan everything, since events may have been lost
    /// while the device was down.
    pub(super) fn rescan_all(self: &Arc<Self>) {
        let mut g = self.state.lock();
        g.missed = true;
        self.schedule(g);
    }

    /// After a device reset: events may have been lost, so the known targets
    /// are scanned (REPORT LUNS: LUNs added meanwhile) and their LUNs
    /// revalidated. Not every target: a reset comes under load, often, and a
    /// full scan probes every absent target (see
    /// `HostHandle::scan_known_targets`).
    pub(super) fn rescan_after_reset(self: &Arc<Self>) {
        let mut g = self.state.lock();
        g.was_reset = true;
        self.schedule(g);
    }

    /// The work: acts on pending events until there are none.
    fn run_pending(&self) {
        loop {
            let mut g = self.state.lock();
            if g.stopping {
                // The device is going away: a flood of events must not keep
                // the removal waiting, nor scan a host being removed.
                g.pending.clear();
                g.missed = false;
                g.was_reset = false;
            }
            let missed = core::mem::replace(&mut g.missed, false);
            // A full rescan covers what the one after a reset does.
            let was_reset = core::mem::replace(&mut g.was_reset, false) && !missed;
            let next = if missed || was_reset || g.pending.is_empty() {
                None
            } else {
                g.pending.remove(0).ok()
            };
            if !missed && !was_reset && next.is_none() {
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
                self.rescan_after_missed(host);
            }
            if was_reset {
                host.scan_known_targets();
                host.rescan_known(None);
            }
            if let Some((len, buf)) = next {
                self.handle(host, len, &buf);
            }
        }
    }

    /// Events were lost: LUNs that went away are removed (as the C driver
    /// does: each known LUN is asked INQUIRY), then every target rescanned.
    fn rescan_after_missed(&self, host: &HostHandle) {
        bump(&self.shared.eh.events_missed);
        dev_info!(self.dev, "events were missed: rescanning every target\n");
        let gone = host.remove_absent_luns();
        if gone > 0 {
            self.shared
                .eh
                .luns_gone
                .fetch_add(u64::from(gone), core::sync::atomic::Ordering::Relaxed);
            dev_info!(self.dev, "{} LUN(s) no longer present: removed\n", gone);
        }
        host.scan_all();
        host.rescan_known(None);
    }

    /// Acts on one event.
    fn handle(&self, host: &HostHandle, len: u32, buf: &[u8]) {
        bump(&self.shared.eh.events);
        let (ev, missed) = event::decode_event(buf, len);
        if missed {
            self.state.lock().missed = true;
        }
        match ev {
            Ok(ev) => self.act(host, ev),
            Err(bad) => {
                bump(&self.shared.eh.bad_events);
                dev_err!(self.dev, "ignoring an event: {}\n", Show(bad));
            }
        }
    }

    fn act(&self, host: &HostHandle, ev: Event) {
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
    pub(super) fn stop(&self) {
        let mut g = self.state.lock();
        g.stopping = true;
        while g.work_busy {
            self.idle.wait(&mut g);
        }
        drop(g);
        // The work may still be returning from `run` (and dropping its
        // reference); the module must not go before it has.
        crate::work::flush(&self.work);
        self.set_host(None);
    }
}
