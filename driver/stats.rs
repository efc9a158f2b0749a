// SPDX-License-Identifier: GPL-2.0

//! Counters: per request queue, of error handling and events, and the
//! debugfs view of them all.

use super::Shared;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use kernel::sync::Arc;

/// Counters of one request queue.
#[derive(Default)]
pub(super) struct QueueStats {
    pub(super) submitted: AtomicU64,
    pub(super) completed: AtomicU64,
    pub(super) busy: AtomicU64,
    pub(super) device_errors: AtomicU64,
    pub(super) polled: AtomicU64,
    /// Commands that came back while the in-flight table did not have them
    /// (completed twice, or never submitted): always 0 unless the driver
    /// is wrong.
    pub(super) untracked: AtomicU64,
}

/// Error-handling and event counters of a device.
#[derive(Default)]
pub(super) struct EhStats {
    pub(super) aborts: AtomicU64,
    pub(super) lun_resets: AtomicU64,
    pub(super) target_resets: AtomicU64,
    pub(super) host_resets: AtomicU64,
    pub(super) tmf_timeouts: AtomicU64,
    pub(super) tmf_failed: AtomicU64,
    pub(super) late_answers: AtomicU64,
    pub(super) events: AtomicU64,
    pub(super) events_missed: AtomicU64,
    pub(super) bad_events: AtomicU64,
    pub(super) luns_gone: AtomicU64,
    pub(super) bidi_refused: AtomicU64,
}

/// Adds one to a counter.
pub(super) fn bump(c: &AtomicU64) -> u64 {
    c.fetch_add(1, Relaxed) + 1
}

/// The counters as `/sys/kernel/debug/virtio_scsi_rs-<device>/stats` shows
/// them: a header, one line per request queue, then one line per counter.
pub(super) struct StatsView(pub(super) Arc<Shared>);

impl core::fmt::Debug for StatsView {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        writeln!(
            f,
            "queue submitted completed busy device_errors polled untracked"
        )?;
        for (i, q) in self.0.queues.iter().enumerate() {
            let s = &q.stats;
            writeln!(
                f,
                "{i} {} {} {} {} {} {}",
                s.submitted.load(Relaxed),
                s.completed.load(Relaxed),
                s.busy.load(Relaxed),
                s.device_errors.load(Relaxed),
                s.polled.load(Relaxed),
                s.untracked.load(Relaxed)
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
            ("luns_gone", &e.luns_gone),
            ("bidi_refused", &e.bidi_refused),
        ] {
            writeln!(f, "{name} {}", v.load(Relaxed))?;
        }
        write!(f, "protocol_violations {}", self.0.violations.load(Relaxed))
    }
}
