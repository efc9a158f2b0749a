// SPDX-License-Identifier: GPL-2.0

//! The I/O path: midlayer commands onto the request virtqueues (one blk-mq
//! hardware queue per request virtqueue), their completion from the queue's
//! interrupt or from blk-mq polling, and which commands the device holds.

use super::{stats::QueueStats, Ops, Shared, Show};
use crate::{
    dma::{DmaBytes, Sgs},
    irqlock::{IrqSaveBackend, IrqSpinLock},
    protocol::{
        cmd::{self, host_byte, Outcome, PiBytes, TaskAttr},
        wire,
    },
    scsi::{Busy, Command, DataDir},
    virtio::{NewQueue, Reset, Virtqueue},
};
use core::sync::atomic::Ordering::Relaxed;
use kernel::{
    prelude::*,
    sync::{
        lock::{Guard, Lock},
        rcu,
    },
};

/// The driver's part of every command: the request header the device reads
/// and the response it writes.
#[repr(C)]
#[derive(pin_init::Zeroable)]
pub(crate) struct VirtioCmd {
    /// `struct virtio_scsi_cmd_req` (or `_pi`).
    req: DmaBytes<{ wire::CMD_REQ_PI_SIZE }>,
    /// `struct virtio_scsi_cmd_resp`.
    resp: DmaBytes<{ wire::CMD_RESP_SIZE }>,
}

type Cmd = Command<Ops>;

/// A command's request header as the protocol writes it: each field stored
/// straight into the bytes the device reads, the CDB copied from the
/// midlayer's buffer once.
struct ReqHeader<'a>(&'a DmaBytes<{ wire::CMD_REQ_PI_SIZE }>);

impl cmd::HeaderSink for ReqHeader<'_> {
    #[inline(always)]
    fn put<const OFF: usize, const M: usize>(&self, bytes: &[u8; M]) {
        self.0.write_at::<OFF, M>(bytes);
    }
}

/// No command on this tag.
const FREE: u64 = u64::MAX;

/// Which LUN a tag's command is for, as kept in the in-flight table.
pub(super) fn lun_key(target: u32, lun: u64) -> u64 {
    (u64::from(target) << 32) | (lun & 0xffff_ffff)
}

/// A request virtqueue and the commands it holds.
struct ReqState {
    /// `None` while the device is down (reset, frozen, shut down).
    vq: Option<Virtqueue<Cmd>>,
    /// The queue between [`Shared::park_all`] and the device reset: no
    /// command goes on it and none comes off until [`Shared::take_back_all`].
    parked: Option<Virtqueue<Cmd>>,
    /// Per tag of this hardware queue: the LUN key of the command the device
    /// holds, or `FREE`.
    inflight: KVec<u64>,
}

/// Records `key` for `tag` in an in-flight table; `false` for a tag beyond
/// the table (which the host's queue depth rules out).
fn set_key(inflight: &mut [u64], tag: u32, key: u64) -> bool {
    match inflight.get_mut((tag & 0xffff) as usize) {
        Some(slot) => {
            *slot = key;
            true
        }
        None => false,
    }
}

/// Clears the in-flight entry of `cmd`, which came back from the device;
/// counts it in `stats` if the table did not have it (a command completed
/// twice, or never submitted: the debug counter the tests read).
fn returned(inflight: &mut [u64], cmd: &Cmd, stats: &QueueStats) {
    let slot = inflight.get_mut(cmd.tag() as usize);
    match slot {
        Some(k) if *k != FREE => *k = FREE,
        _ => {
            stats.untracked.fetch_add(1, Relaxed);
        }
    }
}

/// Completes `cmd` with `result`, `resid` and the first `sense_len` sense
/// bytes of its response (at most the sense field), read once.
#[cold]
fn complete_with_sense(cmd: Cmd, result: u32, resid: u32, sense_len: usize) {
    let mut sense = [0u8; wire::SENSE_SIZE];
    let n = match sense.get_mut(..sense_len) {
        Some(s) => cmd.private().resp.read_at(cmd::RESP_HEADER_SIZE, s),
        None => 0,
    };
    cmd.complete(result, resid, &sense[..n]);
}

/// Lets go of the queue lock `g`, then notifies the device of what was
/// added under it, if the device needs that: a notification traps to the
/// hypervisor, which should not hold up the queue's completions (the C
/// driver notifies after its unlock too). The RCU read-side section keeps
/// the queue alive meanwhile.
fn unlock_and_kick(mut g: Guard<'_, ReqState, IrqSaveBackend>) {
    let rcu = rcu::read_lock();
    let kick = g.vq.as_mut().and_then(|vq| vq.kick_prepare(&rcu));
    drop(g);
    if let Some(kick) = kick {
        kick.notify();
    }
}

/// One request virtqueue and its lock (taken with interrupts off: the
/// completion runs in the queue's interrupt).
pub(super) struct RequestQueue {
    state: Pin<KBox<IrqSpinLock<ReqState>>>,
    pub(super) stats: QueueStats,
}

impl RequestQueue {
    /// A request queue on `vq` for `tags` tags.
    pub(super) fn new(vq: NewQueue, tags: u32) -> Result<Self> {
        let mut inflight = KVec::with_capacity(tags as usize, GFP_KERNEL)?;
        for _ in 0..tags {
            inflight.push(FREE, GFP_KERNEL)?;
        }
        let state = ReqState {
            vq: Some(vq.typed()),
            parked: None,
            inflight,
        };
        Ok(Self {
            state: KBox::pin_init(
                Lock::new(state, c"vsrs_request_vq", kernel::static_lock_class!()),
                GFP_KERNEL,
            )?,
            stats: QueueStats::default(),
        })
    }

    /// Uses `vq`, the new queue of this role after a reset.
    pub(super) fn attach(&self, vq: NewQueue) {
        self.state.lock().vq = Some(vq.typed());
    }

    /// Whether the device holds the command with tag `tag`.
    pub(super) fn holds(&self, tag: u32) -> bool {
        let g = self.state.lock();
        g.inflight
            .get((tag & 0xffff) as usize)
            .is_some_and(|&k| k != FREE)
    }

    /// How many commands the device holds for LUNs `covered` selects.
    pub(super) fn held_for(&self, covered: impl Fn(u64) -> bool) -> usize {
        let g = self.state.lock();
        g.inflight
            .iter()
            .filter(|&&k| k != FREE && covered(k))
            .count()
    }
}

/// Who takes completions off a request queue.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Reaper {
    /// The queue's interrupt.
    Interrupt,
    /// Error handling, after a TMF.
    ErrorHandler,
}

/// Puts the request header, protection information, data and the response
/// of `c` on the list for the device (bidirectional commands were refused).
fn describe<'b>(c: &'b Cmd, s: &mut Sgs<'b>, req_len: usize) {
    let p = c.private();
    s.readable(&p.req, req_len);
    let dir = c.data_dir();
    if dir == DataDir::ToDevice {
        if let Some(prot) = c.protection() {
            s.readable_chain(prot);
        }
        if let Some(data) = c.data() {
            s.readable_chain(data);
        }
    }
    s.writable(&p.resp);
    if dir == DataDir::FromDevice {
        if let Some(prot) = c.protection() {
            s.writable_chain(prot);
        }
        if let Some(data) = c.data() {
            s.writable_chain(data);
        }
    }
}

impl Shared {
    /// Encodes the request header of `cmd`, for target and LUN `addr` with
    /// block-layer tag `tag`, into its private area; returns its length, or
    /// the host byte to fail the command with.
    #[inline(always)]
    fn encode(&self, cmd: &Cmd, (target, lun): (u32, u64), tag: u32) -> Result<usize, u8> {
        let lun = cmd::encode_lun(target, lun).ok_or(host_byte::DID_BAD_TARGET)?;
        let prio = cmd::sam_priority(cmd.ioprio());
        // With T10 PI negotiated every command carries the PI header.
        let pi = self.t10_pi.then(|| {
            let n = cmd.integrity().map_or(0, |i| {
                cmd::pi_bytes(i.sectors, i.interval_exp, i.metadata_size)
            });
            match cmd.data_dir() {
                DataDir::ToDevice => PiBytes { out: n, inn: 0 },
                DataDir::FromDevice => PiBytes { out: 0, inn: n },
                _ => PiBytes { out: 0, inn: 0 },
            }
        });
        let req = ReqHeader(&cmd.private().req);
        let tag = u64::from(tag);
        Ok(cmd::encode_cmd_req(
            &req,
            lun,
            tag,
            TaskAttr::Simple,
            prio,
            pi,
            cmd.cdb_buf(),
        ))
    }

    /// `queuecommand`: gives `cmd` to the device on its hardware queue's
    /// virtqueue, fails it, or hands it back to be retried.
    pub(super) fn queue_command(&self, cmd: Cmd) -> Result<(), Busy<Ops>> {
        let tag = cmd.unique_tag();
        let hwq = (tag >> 16) as usize;
        let Some(q) = self.queues.get(hwq) else {
            cmd.complete(u32::from(host_byte::DID_ERROR) << 16, 0, &[]);
            return Ok(());
        };
        if cmd.data_dir() == DataDir::Both {
            self.refuse_bidi(cmd);
            return Ok(());
        }
        let addr = (cmd.target(), cmd.lun());
        let req_len = match self.encode(&cmd, addr, tag) {
            Ok(n) => n,
            Err(host) => {
                cmd.complete(u32::from(host) << 16, 0, &[]);
                return Ok(());
            }
        };
        let (last, key) = (cmd.is_last(), lun_key(addr.0, addr.1));
        let mut g = q.state.lock();
        let ReqState { vq, inflight, .. } = &mut *g;
        let Some(vq) = vq.as_mut() else {
            drop(g);
            return self.device_down(q, cmd);
        };
        // Recorded before the device can have it (error handling trusts the
        // table); the completion takes this lock too.
        if !set_key(inflight, tag, key) {
            drop(g);
            cmd.complete(u32::from(host_byte::DID_ERROR) << 16, 0, &[]);
            return Ok(());
        }
        let (cmd, e) = match vq.add(cmd, |c, s| describe(c, s, req_len)) {
            Ok(()) => {
                if last {
                    unlock_and_kick(g);
                } else {
                    drop(g);
                }
                q.stats.submitted.fetch_add(1, Relaxed);
                return Ok(());
            }
            Err(failed) => failed,
        };
        set_key(inflight, tag, FREE);
        if e != EIO {
            drop(g);
            // The ring is full (or indirect descriptors could not be
            // allocated): the midlayer retries later.
            q.stats.busy.fetch_add(1, Relaxed);
            return Err(cmd.busy());
        }
        // The queue is broken: the device misbehaved (retried after the
        // reset this schedules) or is gone. Reported under the queue lock,
        // so a reset that parks this queue later finds the report made and
        // does not get a second one for the same break.
        let retry = self.recovery.broken("request", hwq);
        drop(g);
        if retry {
            q.stats.busy.fetch_add(1, Relaxed);
            return Err(cmd.busy_device());
        }
        cmd.complete(u32::from(host_byte::DID_BAD_TARGET) << 16, 0, &[]);
        Ok(())
    }

    /// A command while the queues are down: retried after a reset or resume,
    /// failed after shutdown.
    fn device_down(&self, q: &RequestQueue, cmd: Cmd) -> Result<(), Busy<Ops>> {
        if self.shut_down.load(Relaxed) {
            cmd.complete(u32::from(host_byte::DID_NO_CONNECT) << 16, 0, &[]);
            return Ok(());
        }
        q.stats.busy.fetch_add(1, Relaxed);
        Err(cmd.busy_device())
    }

    /// A bidirectional command: VIRTIO_SCSI_F_INOUT is not negotiated, so the
    /// device may not take one. Failed, with a rate-limited log line.
    fn refuse_bidi(&self, cmd: Cmd) {
        let n = super::stats::bump(&self.eh.bidi_refused);
        if n <= 10 || n % 1000 == 0 {
            dev_err!(
                self.dev,
                "{}:{}: bidirectional command (opcode {:#x}) refused: VIRTIO_SCSI_F_INOUT not negotiated (#{})\n",
                cmd.target(),
                cmd.lun(),
                cmd.cdb().first().copied().unwrap_or(0),
                n
            );
        }
        cmd.complete(u32::from(host_byte::DID_ERROR) << 16, 0, &[]);
    }

    /// `commit_rqs`: notifies the device of what was queued without a kick.
    pub(super) fn commit_rqs(&self, hwq: u16) {
        if let Some(q) = self.queues.get(usize::from(hwq)) {
            unlock_and_kick(q.state.lock());
        }
    }

    /// Completes what the device has finished on request queue `i`. Returns
    /// how many.
    pub(super) fn complete(&self, i: usize, by: Reaper) -> i32 {
        let Some(q) = self.queues.get(i) else {
            return 0;
        };
        let mut n = 0;
        let mut g = q.state.lock();
        let ReqState { vq, inflight, .. } = &mut *g;
        let broken = match vq.as_mut() {
            None => false,
            Some(vq) => loop {
                if by == Reaper::Interrupt {
                    vq.disable_cb();
                }
                n += self.drain(q, vq, inflight);
                match by {
                    Reaper::ErrorHandler => break vq.is_broken(),
                    // Re-arm the interrupt; if buffers were used meanwhile,
                    // go again. A broken queue interrupts no more.
                    Reaper::Interrupt if vq.is_broken() => break true,
                    Reaper::Interrupt if vq.enable_cb() => break false,
                    Reaper::Interrupt => {}
                }
            },
        };
        if broken {
            // Under the queue lock, as in `queue_command`.
            self.recovery.broken("request", i);
        }
        drop(g);
        if n > 0 {
            q.stats.completed.fetch_add(n as u64, Relaxed);
        }
        n
    }

    /// `mq_poll`: completes what the device has finished on poll queue `i`;
    /// how many. Polling runs often and finds nothing most times, so it does
    /// only that: a broken poll queue shows at the next submission (`EIO`).
    pub(super) fn poll(&self, i: usize) -> i32 {
        let Some(q) = self.queues.get(i) else {
            return 0;
        };
        let mut g = q.state.lock();
        let ReqState { vq, inflight, .. } = &mut *g;
        let n = match vq.as_mut() {
            Some(vq) => self.drain(q, vq, inflight),
            None => 0,
        };
        drop(g);
        if n > 0 {
            q.stats.completed.fetch_add(n as u64, Relaxed);
            q.stats.polled.fetch_add(n as u64, Relaxed);
        }
        n
    }

    /// Completes every command the device has finished on `vq`, request
    /// queue `q`'s (whose lock the caller holds); how many.
    #[inline(always)]
    fn drain(&self, q: &RequestQueue, vq: &mut Virtqueue<Cmd>, inflight: &mut [u64]) -> i32 {
        let mut n = 0;
        while let Some((cmd, len)) = vq.get_buf() {
            returned(inflight, &cmd, &q.stats);
            self.finish(q, cmd, len);
            n += 1;
        }
        n
    }

    /// The device is about to be reset: no command goes to its queues from
    /// now on (each is answered device-busy), and none is completed until
    /// [`Shared::take_back_all`]. The queue lock orders this after every
    /// submission under way, and the device's reset waits for the kicks
    /// they prepared ([`crate::virtio::VqSet::reset`]), so the device is
    /// never notified once reset.
    pub(super) fn park_all(&self) {
        for q in self.queues.iter() {
            let mut g = q.state.lock();
            if let Some(vq) = g.vq.take() {
                g.parked = Some(vq);
            }
        }
    }

    /// The device was reset: answers it gave before count, the rest go back
    /// to the midlayer with `result` (to be retried, or failed after
    /// shutdown); the queues are let go until `attach`.
    pub(super) fn take_back_all(&self, reset: &Reset<'_>, result: u8) {
        for q in self.queues.iter() {
            let mut g = q.state.lock();
            let Some(mut vq) = g.parked.take() else {
                continue;
            };
            while let Some((cmd, len)) = vq.get_buf() {
                returned(&mut g.inflight, &cmd, &q.stats);
                self.finish(q, cmd, len);
            }
            while let Some(cmd) = vq.detach_unused(reset) {
                returned(&mut g.inflight, &cmd, &q.stats);
                let len = cmd.transfer_len();
                cmd.complete(u32::from(result) << 16, len, &[]);
            }
            drop(g);
            // Not the last reference to the queue set (the caller's reset
            // proof borrows it), so nothing is deleted here.
            drop(vq);
        }
    }

    /// Checks the device's answer to `cmd` and hands the command back: a
    /// good answer with nothing more to say (almost every one) on a short
    /// path, any other decoded in full.
    #[inline(always)]
    fn finish(&self, q: &RequestQueue, cmd: Cmd, used_len: u32) {
        // The header once; the sense bytes after it only as many as it says.
        let hdr = cmd.private().resp.read_head::<{ cmd::RESP_HEADER_SIZE }>();
        if cmd::is_good(&hdr, used_len, cmd.transfer_len()) {
            cmd.complete(const { cmd::GOOD.scsi_result() }, 0, &[]);
        } else {
            self.finish_decoded(q, cmd, used_len, hdr);
        }
    }

    /// [`Shared::finish`] for any answer but a plain good one.
    #[inline(never)]
    fn finish_decoded(
        &self,
        q: &RequestQueue,
        cmd: Cmd,
        used_len: u32,
        hdr: [u8; cmd::RESP_HEADER_SIZE],
    ) {
        let transfer_len = cmd.transfer_len();
        let pi_len = cmd.integrity().map_or(0, |i| {
            cmd::pi_bytes(i.sectors, i.interval_exp, i.metadata_size)
        });
        let outcome = cmd::decode_cmd_resp(&hdr, used_len, transfer_len, pi_len);
        match outcome {
            Outcome::Done {
                sense_len, resid, ..
            } => {
                let result = outcome.scsi_result();
                if sense_len == 0 {
                    cmd.complete(result, resid, &[]);
                } else {
                    complete_with_sense(cmd, result, resid, sense_len);
                }
            }
            Outcome::Invalid(v) => self.invalid(q, cmd, v),
        }
    }

    /// A command the device answered against the protocol: counted, logged
    /// (rate-limited) and failed.
    #[cold]
    fn invalid(&self, q: &RequestQueue, cmd: Cmd, v: cmd::Violation) {
        q.stats.device_errors.fetch_add(1, Relaxed);
        self.log_violation(v);
        let len = cmd.transfer_len();
        cmd.complete(Outcome::Invalid(v).scsi_result(), len, &[]);
    }

    /// Logs a device protocol violation: the first ten, then one in a
    /// thousand, so a device that lies cannot flood the log.
    fn log_violation(&self, v: cmd::Violation) {
        let n = super::stats::bump(&self.violations);
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
