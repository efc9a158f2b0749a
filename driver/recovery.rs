// SPDX-License-Identifier: GPL-2.0

//! Device resets: the work that recovers from a broken virtqueue (the virtio
//! core breaks one when the device hands back a buffer it was not given),
//! and the midlayer's host reset. Both go through the virtio core's
//! `reset_prepare`/`reset_done`, which the registration serialises with PM
//! and PCI function resets.

use crate::{irqlock::IrqSpinLock, virtio};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use kernel::{
    device,
    prelude::*,
    sync::{aref::ARef, lock::Lock, Arc},
    time::{Instant, Monotonic},
    workqueue::{self, impl_has_work, new_work, Work, WorkItem},
};

/// Virtqueues that break more often than `max_breaks` (module parameter)
/// within this window fail their device instead of resetting it again.
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

/// The recovery work and its state.
#[pin_data]
pub(super) struct Recovery {
    #[pin]
    state: IrqSpinLock<RecoveryState>,
    #[pin]
    work: Work<Recovery>,
    vdev: virtio::DeviceHandle,
    dev: ARef<device::Device>,
    /// Resets done after a broken virtqueue.
    pub(super) resets: AtomicU64,
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
    pub(super) fn new(vdev: virtio::DeviceHandle, dev: ARef<device::Device>) -> Result<Arc<Self>> {
        Arc::pin_init(
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
                work <- new_work!("vsrs_recovery"),
                vdev,
                dev,
                resets: AtomicU64::new(0),
            }),
            GFP_KERNEL,
        )
    }

    /// Virtqueue `name` was found broken. Returns `true` while a reset is
    /// under way (commands are to be retried), `false` once recovery has
    /// stopped (they are to fail). A request queue reports under its lock,
    /// which orders the report before the reset parks that queue.
    pub(super) fn broken(self: &Arc<Self>, name: &str, index: usize) -> bool {
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
            // Queued at most once: `queued` is cleared only by the work. Not
            // on a freezable queue: a queue that breaks during a system
            // suspend (on the SYNCHRONIZE CACHE of sd's suspend) answers
            // host-busy until the reset, so the suspend waits for it.
            let _ = workqueue::system_long().enqueue(self.clone());
        }
        true
    }

    /// Resets the device (the driver's `reset_prepare`, a virtio reset and
    /// feature negotiation, the driver's `reset_done`).
    pub(super) fn reset(&self) -> Result {
        self.vdev.reset()
    }

    /// Counts a break in the current window; `false` past the limit.
    fn count_break(&self) -> bool {
        let max = *crate::module_parameters::max_breaks.value();
        let mut g = self.state.lock();
        if g.window
            .is_none_or(|t| t.elapsed().as_millis() > BREAK_WINDOW_MS)
        {
            g.window = Some(Instant::now());
            g.breaks = 0;
        }
        g.breaks += 1;
        if g.breaks > max {
            dev_err!(
                self.dev,
                "virtqueues broke {} times within {} s: no more resets, failing its commands\n",
                g.breaks,
                BREAK_WINDOW_MS / 1000
            );
            return false;
        }
        true
    }

    /// The work: resets the device unless it broke too often.
    fn recover(&self) {
        if self.state.lock().stopped {
            // Queued before the device started going away.
            self.state.lock().queued = false;
            return;
        }
        let result = if self.count_break() {
            match self.reset() {
                Ok(()) => {
                    self.resets.fetch_add(1, Relaxed);
                    dev_info!(self.dev, "device reset: its virtqueues work again\n");
                    Ok(())
                }
                Err(e) if e == EBUSY => {
                    // Frozen since the break (or shut down, and stopped by
                    // then): the restore brings up new queues.
                    dev_info!(
                        self.dev,
                        "device frozen: no reset, the restore renews its queues\n"
                    );
                    Ok(())
                }
                Err(e) => {
                    dev_err!(
                        self.dev,
                        "device reset failed (error {}): failing its commands\n",
                        e.to_errno()
                    );
                    Err(e)
                }
            }
        } else {
            Err(EIO)
        };
        let mut g = self.state.lock();
        g.queued = false;
        g.stopped |= result.is_err();
    }

    /// No more resets from now on; waits for one under way.
    pub(super) fn stop(&self) {
        self.state.lock().stopped = true;
        crate::work::flush(&self.work);
    }
}
