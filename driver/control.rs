// SPDX-License-Identifier: GPL-2.0

//! The control queue: task management functions and asynchronous
//! notification requests wait, bounded, for the device's answer.

use crate::{
    irqlock::IrqSpinLock,
    protocol::ctrl::{CTRL_REQ_MAX, CTRL_RESP_MAX},
    virtio::{NewQueue, Reset, SlotMemory, SlotQueue},
};
use kernel::{
    new_condvar,
    prelude::*,
    sync::{lock::Lock, CondVar, CondVarTimeoutResult},
    time::msecs_to_jiffies,
};

/// Control queue slots: one per error-handling step that may be waiting for
/// the device (a TMF that timed out keeps its slot until the device answers),
/// plus room for AN subscriptions.
pub(super) const CTRL_SLOTS: usize = 8;

/// The control queue and the answers waiting for their request.
struct CtrlState {
    /// `None` while the device is down (reset, frozen).
    q: Option<SlotQueue>,
    /// The queue's memory while it is down.
    kept: Option<SlotMemory>,
    /// Slots a request owns: from submission until its waiter took the
    /// answer, or, for a request whose waiter gave up (`abandoned`), until the
    /// device answers.
    owned: u64,
    abandoned: u64,
    answers: [Option<(u32, [u8; CTRL_RESP_MAX])>; CTRL_SLOTS],
}

/// Why a control request got no answer.
pub(super) enum CtrlError {
    /// Every slot is held by a request the device has not answered.
    NoSlot,
    /// The queue refused the request (or the device is down).
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
pub(super) struct Control {
    #[pin]
    state: IrqSpinLock<CtrlState>,
    #[pin]
    answered: CondVar,
}

impl Control {
    pub(super) fn new(vq: NewQueue) -> Result<impl PinInit<Self>> {
        let q = SlotQueue::new(vq, CTRL_SLOTS, CTRL_REQ_MAX, CTRL_RESP_MAX)?;
        Ok(pin_init!(Self {
            state <- Lock::new(
                CtrlState {
                    q: Some(q),
                    kept: None,
                    owned: 0,
                    abandoned: 0,
                    answers: [None; CTRL_SLOTS],
                },
                c"vsrs_ctrl_vq",
                kernel::static_lock_class!(),
            ),
            answered <- new_condvar!("vsrs_ctrl_answered"),
        }))
    }

    /// Sends `req` and waits up to `timeout_ms` for the answer: its used
    /// length and bytes.
    pub(super) fn request(
        &self,
        req: &[u8],
        timeout_ms: u32,
    ) -> Result<(u32, [u8; CTRL_RESP_MAX]), CtrlError> {
        let mut g = self.state.lock();
        let i = (0..CTRL_SLOTS)
            .find(|&i| g.owned & (1 << i) == 0)
            .ok_or(CtrlError::NoSlot)?;
        g.answers[i] = None;
        let q = g.q.as_mut().ok_or(CtrlError::Ring(EAGAIN))?;
        q.submit(i, req).map_err(CtrlError::Ring)?;
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
    pub(super) fn detach(&self, reset: &Reset<'_>) {
        let mut g = self.state.lock();
        if let Some(q) = g.q.take() {
            g.kept = q.detach(reset);
        }
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

    /// Uses `vq`, the new control queue after a reset.
    pub(super) fn attach(&self, vq: NewQueue) -> Result {
        let mut g = self.state.lock();
        let q = match g.kept.take() {
            Some(mem) => SlotQueue::attach(vq, mem),
            None => SlotQueue::new(vq, CTRL_SLOTS, CTRL_REQ_MAX, CTRL_RESP_MAX)?,
        };
        g.q = Some(q);
        Ok(())
    }

    /// Takes the device's answers (from the control queue's interrupt):
    /// how many came for requests whose waiter had given up, and whether the
    /// queue is broken (it answers no more until the device is reset).
    pub(super) fn complete(&self) -> Answers {
        let mut late = 0;
        let mut broken = false;
        let mut g = self.state.lock();
        let mut buf = [0u8; CTRL_RESP_MAX];
        while let Some(q) = g.q.as_mut() {
            q.vq().disable_cb();
            let Some((i, len)) = q.take(&mut buf) else {
                broken = q.vq().is_broken();
                if broken || q.vq().enable_cb() {
                    break;
                }
                continue;
            };
            let bit = 1u64 << i;
            if g.abandoned & bit != 0 {
                g.abandoned &= !bit;
                g.owned &= !bit;
                late += 1;
            } else if let Some(slot) = g.answers.get_mut(i) {
                *slot = Some((len, buf));
            }
        }
        drop(g);
        self.answered.notify_all();
        Answers { late, broken }
    }
}

/// What [`Control::complete`] found.
pub(super) struct Answers {
    /// Answers to requests whose waiter had given up.
    pub(super) late: u64,
    /// The queue is broken.
    pub(super) broken: bool,
}
