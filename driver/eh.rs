// SPDX-License-Identifier: GPL-2.0

//! Error handling: aborts and LUN and target resets as task management
//! functions on the control queue, bounded by `tmf_timeout`; the host reset
//! as a device reset. A step reports success only once every command it
//! covers is back from the device, so the midlayer never reuses a command
//! the device could still complete.

use super::{control::CtrlError, io::lun_key, io::Reaper, stats::bump, Shared, Show};
use crate::{
    protocol::{
        cmd,
        ctrl::{self, Tmf},
    },
    scsi::{EhCommand, EhOutcome, ScsiDevice},
};
use kernel::prelude::*;

/// The `tmf_timeout` parameter in milliseconds.
fn tmf_timeout_ms() -> u32 {
    (*crate::module_parameters::tmf_timeout.value())
        .max(1)
        .saturating_mul(1000)
}

impl Shared {
    /// Whether the device still holds the command with tag `tag`.
    fn holds(&self, tag: u32) -> bool {
        self.queues
            .get((tag >> 16) as usize)
            .is_some_and(|q| q.holds(tag))
    }

    pub(super) fn eh_abort(&self, cmd: &EhCommand<'_>) -> EhOutcome {
        bump(&self.eh.aborts);
        let (t, l) = (cmd.target(), cmd.lun());
        // Only commands that went through blk-mq are aborted (a reset
        // ioctl's made-up command never is).
        let Some(tag) = cmd.unique_tag() else {
            return EhOutcome::Failed;
        };
        // The queue lock orders this with the completion: `false` means the
        // completion has run to its end.
        if !self.holds(tag) {
            return EhOutcome::Success;
        }
        let outcome = self.tmf(Tmf::AbortTask, t, l, u64::from(tag));
        if !self.holds(tag) {
            // Back from the device (aborted, or completed before the TMF got
            // there): whatever the answer said, nothing is left to abort.
            return EhOutcome::Success;
        }
        if outcome == EhOutcome::Success {
            // The device says it aborted the command but still holds it; if
            // the midlayer reused it now, the old answer could complete the
            // new command. Escalate instead.
            dev_err!(
                self.dev,
                "{}:{}: ABORT TASK reported done but the command was not returned; escalating\n",
                t,
                l
            );
        }
        EhOutcome::Failed
    }

    pub(super) fn eh_device_reset(&self, cmd: &EhCommand<'_>) -> EhOutcome {
        bump(&self.eh.lun_resets);
        let (t, l) = (cmd.target(), cmd.lun());
        let key = lun_key(t, l);
        let outcome = self.tmf(Tmf::LogicalUnitReset, t, l, 0);
        self.check_covered(outcome, Tmf::LogicalUnitReset, t, l, |k| k == key)
    }

    pub(super) fn eh_target_reset(&self, cmd: &EhCommand<'_>) -> EhOutcome {
        bump(&self.eh.target_resets);
        let (t, l) = (cmd.target(), cmd.lun());
        let outcome = self.tmf(Tmf::ItNexusReset, t, l, 0);
        self.check_covered(outcome, Tmf::ItNexusReset, t, l, |k| {
            k >> 32 == u64::from(t)
        })
    }

    /// A reset reported done: the commands it covers must be back; if the
    /// device still holds some, escalate (the host reset takes them back).
    fn check_covered(
        &self,
        outcome: EhOutcome,
        tmf: Tmf,
        t: u32,
        l: u64,
        covered: impl Fn(u64) -> bool,
    ) -> EhOutcome {
        if outcome != EhOutcome::Success {
            return outcome;
        }
        let held: usize = self.queues.iter().map(|q| q.held_for(&covered)).sum();
        if held == 0 {
            return EhOutcome::Success;
        }
        dev_err!(
            self.dev,
            "{}:{}: {} reported done but the device still holds {} of its commands; escalating\n",
            t,
            l,
            Show(tmf),
            held
        );
        EhOutcome::Failed
    }

    pub(super) fn eh_host_reset(&self) -> EhOutcome {
        bump(&self.eh.host_resets);
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

    /// Sends `tmf` for `target`:`lun` and waits, bounded by the `tmf_timeout`
    /// parameter, for the answer; then takes the completions that raced it.
    fn tmf(&self, tmf: Tmf, target: u32, lun: u64, tag: u64) -> EhOutcome {
        let Some(lun_field) = cmd::encode_lun(target, lun) else {
            return EhOutcome::Failed;
        };
        let req = ctrl::encode_tmf_req(tmf, lun_field, tag);
        dev_info!(self.dev, "{}:{}: sending {}\n", target, lun, Show(tmf));
        let outcome = match self.ctrl.request(&req, tmf_timeout_ms()) {
            Ok((len, resp)) => {
                let answer = ctrl::decode_tmf_resp(&resp, len);
                if answer.done() {
                    EhOutcome::Success
                } else {
                    bump(&self.eh.tmf_failed);
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
                bump(&self.eh.tmf_timeouts);
                dev_err!(
                    self.dev,
                    "{}:{}: {}: no answer within {} s; escalating\n",
                    target,
                    lun,
                    Show(tmf),
                    tmf_timeout_ms() / 1000
                );
                EhOutcome::Failed
            }
            Err(e) => {
                bump(&self.eh.tmf_failed);
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

    /// `sdev_configure`: a CD/DVD LUN subscribes to media change
    /// notifications, if the device grants them.
    pub(super) fn sdev_configure(&self, sdev: &mut ScsiDevice<'_>) {
        if !sdev.is_cdrom() {
            return;
        }
        let (t, l) = (sdev.target(), sdev.lun());
        let Some(lun_field) = cmd::encode_lun(t, l) else {
            return;
        };
        let wanted = ctrl::an_class::MEDIA_CHANGE;
        let req = ctrl::encode_an_req(true, lun_field, wanted);
        let granted = match self.ctrl.request(&req, tmf_timeout_ms()) {
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
