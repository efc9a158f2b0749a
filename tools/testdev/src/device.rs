// SPDX-License-Identifier: GPL-2.0
//! The virtio-scsi device logic, free of guest memory and vrings so that it
//! can be unit tested: request, control and event queue messages in and out
//! as byte vectors, the LUN table, the fault rules and the control commands.
//! Wire layouts: include/uapi/linux/virtio_scsi.h.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::fuzz::{Drawn, Fuzz, Lie};
use crate::scsi::{self, Kind, Lun};

pub const CDB_SIZE: usize = 32;
pub const SENSE_SIZE: usize = 96;
pub const CMD_REQ_SIZE: usize = 8 + 8 + 3 + CDB_SIZE; // 51
pub const CMD_REQ_PI_SIZE: usize = 8 + 8 + 3 + 8 + CDB_SIZE; // 59
pub const CMD_RESP_SIZE: usize = 4 + 4 + 2 + 1 + 1 + SENSE_SIZE; // 108
pub const EVENT_SIZE: usize = 16;

pub const S_OK: u8 = 0;
pub const S_OVERRUN: u8 = 1;
pub const S_ABORTED: u8 = 2;
pub const S_BAD_TARGET: u8 = 3;
pub const S_RESET: u8 = 4;
pub const S_BUSY: u8 = 5;
pub const S_TRANSPORT_FAILURE: u8 = 6;
pub const S_TARGET_FAILURE: u8 = 7;
pub const S_NEXUS_FAILURE: u8 = 8;
pub const S_FAILURE: u8 = 9;
pub const S_FUNCTION_SUCCEEDED: u8 = 10;
pub const S_FUNCTION_REJECTED: u8 = 11;
pub const S_INCORRECT_LUN: u8 = 12;

pub const T_TMF: u32 = 0;
pub const T_AN_QUERY: u32 = 1;
pub const T_AN_SUBSCRIBE: u32 = 2;
pub const TMF_ABORT_TASK: u32 = 0;
pub const TMF_ABORT_TASK_SET: u32 = 1;
pub const TMF_CLEAR_TASK_SET: u32 = 3;
pub const TMF_I_T_NEXUS_RESET: u32 = 4;
pub const TMF_LOGICAL_UNIT_RESET: u32 = 5;
pub const TMF_QUERY_TASK: u32 = 6;
pub const TMF_QUERY_TASK_SET: u32 = 7;

pub const T_EVENTS_MISSED: u32 = 0x8000_0000;
pub const T_TRANSPORT_RESET: u32 = 1;
pub const T_ASYNC_NOTIFY: u32 = 2;
pub const T_PARAM_CHANGE: u32 = 3;
pub const EVT_RESET_HARD: u32 = 0;
pub const EVT_RESET_RESCAN: u32 = 1;
pub const EVT_RESET_REMOVED: u32 = 2;
/// Asynchronous notification classes this device supports.
pub const EVT_ASYNC_MEDIA_CHANGE: u32 = 16;
pub const SUPPORTED_AN: u32 = EVT_ASYNC_MEDIA_CHANGE;

/// Most events kept while the driver has posted no buffer for them.
pub const MAX_PENDING_EVENTS: usize = 64;

/// The virtio LUN address of target T, LUN L (flat space addressing).
pub fn lun_bytes(target: u8, lun: u16) -> [u8; 8] {
    [1, target, 0x40 | (lun >> 8) as u8, lun as u8, 0, 0, 0, 0]
}

/// (target, LUN) from a virtio LUN address, None if it is not one.
pub fn parse_lun(b: &[u8]) -> Option<(u8, u16)> {
    if b[0] != 1 {
        return None;
    }
    match b[2] >> 6 {
        0 if b[2] == 0 => Some((b[1], b[3] as u16)),
        1 => Some((b[1], u16::from_be_bytes([b[2] & 0x3f, b[3]]))),
        _ => None,
    }
}

fn u32le(b: &[u8]) -> u32 {
    u32::from_le_bytes(b[..4].try_into().unwrap())
}

/// What a fault rule does to the requests it matches.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Used length `extra` bytes past the end of the driver's buffers.
    UsedLenOver(u32),
    /// Used length this many bytes (if that is less than the true one).
    UsedLenShort(u32),
    /// sense_len field set to this (larger than the 96-byte sense buffer).
    SenseLen(u32),
    /// Residual `extra` bytes larger than the transfer.
    ResidualOver(u32),
    /// This virtio response code (unknown ones too); the command is not run.
    Response(u8),
    /// CHECK CONDITION with this sense key/ASC/ASCQ; the command is not run.
    Sense(u8, u8, u8),
    /// This SCSI status byte, no sense; the command is not run.
    Status(u8),
    /// Complete after this many ms; None: only when released (or aborted).
    Hold(Option<u64>),
    /// PI: report a guard check error (the command's data is returned).
    GuardError,
    /// PI: corrupt the first guard tag a read returns (the driver's side
    /// must catch it).
    BadGuard,
    /// READ(16) only: the data handed back with the byte at this offset
    /// (modulo its length) changed, reported good. No driver can catch it;
    /// the reader's own check must.
    BadData(u32),
    /// After the completion, a second used-ring entry for the same head: a
    /// completion for a descriptor the driver has not (or no longer) submitted.
    Stray,
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub fault: Fault,
    /// Requests still to hit; None: every matching request.
    pub count: Option<u64>,
    pub target: Option<u8>,
    pub lun: Option<u16>,
    pub opcode: Option<u8>,
    /// A TMF aimed at a request this rule holds completes it (default).
    pub abortable: bool,
    /// On the control queue instead of the request queues: Hold and
    /// Response apply to TMFs.
    pub ctrl: bool,
    /// Put there by the fuzz mode for one request: removed after it.
    pub fuzz: bool,
}

impl Rule {
    fn matches(&self, ctrl: bool, t: u8, l: u16, op: u8) -> bool {
        self.ctrl == ctrl
            && self.count != Some(0)
            && self.target.map_or(true, |x| x == t)
            && self.lun.map_or(true, |x| x == l)
            && (ctrl || self.opcode.map_or(true, |x| x == op))
    }
}

/// A request the device has not completed yet.
#[derive(Clone, Debug)]
pub struct Held {
    pub queue: u16,
    pub head: u16,
    /// Writable buffers of the chain (guest address, length).
    pub segs: Vec<(u64, u32)>,
    pub bytes: Vec<u8>,
    pub used_len: u32,
    pub deadline: Option<Instant>,
    /// When the device started holding it.
    pub since: Instant,
    pub target: u8,
    pub lun: u16,
    pub tag: u64,
    pub abortable: bool,
    pub ctrl: bool,
}

/// A completion: bytes written in order into the writable buffers and the
/// used length reported; `hold` asks to keep it back.
#[derive(Debug, Default)]
pub struct Outcome {
    pub bytes: Vec<u8>,
    pub used_len: u32,
    pub hold: Option<(Option<u64>, bool)>,
    pub target: u8,
    pub lun: u16,
    pub tag: u64,
    /// Also complete the head a second time (Fault::Stray).
    pub stray: bool,
    /// Complete it without notifying the driver (fuzz: no_notify).
    pub quiet: bool,
}

#[derive(Default, Debug, Clone)]
pub struct Stats {
    pub cmds: u64,
    pub tmfs: u64,
    pub an: u64,
    pub events_sent: u64,
    pub events_dropped: u64,
    pub faults_hit: u64,
    /// Request-queue requests held (a hold rule hit them).
    pub holds: u64,
    /// Held requests completed when their time came (or on release).
    pub released: u64,
    /// Held requests a TMF ended (ABORTED / RESET) before their time.
    pub tmf_ended: u64,
}

pub struct Device {
    pub luns: BTreeMap<(u8, u16), Lun>,
    pub t10_pi: bool,
    pub rules: Vec<Rule>,
    pub an_subscribed: u32,
    pub pending_events: VecDeque<([u8; EVENT_SIZE], bool)>,
    pub events_missed: bool,
    pub held: Vec<Held>,
    pub stats: Stats,
    /// Event buffers the driver has posted (kept up to date by the backend).
    pub event_bufs: usize,
    /// Features the front-end acked (those vhost-user passes on).
    pub acked_features: u64,
    /// Shortest and longest time (ms) a held request was held before a TMF
    /// ended it, since the last "clear".
    pub tmf_ended_ms: Option<(u64, u64)>,
    /// Fuzz mode (fuzz.rs): lies decided per request, told by the rules.
    pub fuzz: Option<Fuzz>,
}

impl Device {
    pub fn new() -> Self {
        Device {
            luns: BTreeMap::new(),
            t10_pi: false,
            rules: Vec::new(),
            an_subscribed: 0,
            pending_events: VecDeque::new(),
            events_missed: false,
            held: Vec::new(),
            stats: Stats::default(),
            event_bufs: 0,
            acked_features: 0,
            tmf_ended_ms: None,
            fuzz: None,
        }
    }

    fn target_exists(&self, t: u8) -> bool {
        self.luns.range((t, 0)..=(t, u16::MAX)).next().is_some()
    }

    fn report_luns(&self, t: u8, alloc: usize) -> Vec<u8> {
        let mut d = vec![0u8; 8];
        for &(_, l) in self.luns.range((t, 0)..=(t, u16::MAX)).map(|(k, _)| k) {
            let mut e = [0u8; 8];
            if l < 256 {
                e[1] = l as u8;
            } else {
                e[0] = 0x40 | (l >> 8) as u8;
                e[1] = l as u8;
            }
            d.extend_from_slice(&e);
        }
        let n = (d.len() - 8) as u32;
        d[..4].copy_from_slice(&n.to_be_bytes());
        d.truncate(alloc);
        d
    }

    fn take_rule(
        &mut self,
        ctrl: bool,
        t: u8,
        l: u16,
        op: u8,
        pred: impl Fn(&Fault) -> bool,
    ) -> Option<Rule> {
        let r = self
            .rules
            .iter_mut()
            .find(|r| pred(&r.fault) && r.matches(ctrl, t, l, op))?;
        if let Some(c) = r.count.as_mut() {
            *c -= 1;
        }
        self.stats.faults_hit += 1;
        Some(r.clone())
    }

    fn cmd_hdr_size(&self) -> usize {
        if self.t10_pi {
            CMD_REQ_PI_SIZE
        } else {
            CMD_REQ_SIZE
        }
    }

    /// One request-queue message: `req` is all the driver's readable bytes
    /// (header and data-out), `in_cap` the size of its writable buffers.
    pub fn handle_cmd(&mut self, req: &[u8], in_cap: usize) -> Outcome {
        let lie = self.fuzz_cmd(req);
        let mut o = self.run_cmd(req, in_cap);
        self.fuzz_told(lie, &mut o);
        o
    }

    /// Fuzz mode: the lie (if any) about this request, set up as a one-shot
    /// rule matching it alone (first in the table), or its events queued.
    fn fuzz_cmd(&mut self, req: &[u8]) -> Option<(Drawn, String)> {
        let hdr = self.cmd_hdr_size();
        if self.fuzz.is_none() || req.len() < hdr {
            return None;
        }
        let (t, l) = parse_lun(&req[..8]).filter(|&(t, _)| self.target_exists(t))?;
        let op = req[hdr - CDB_SIZE];
        let luns: Vec<(u8, u16)> = self.luns.keys().copied().collect();
        let d = self.fuzz.as_mut()?.on_cmd(t, l, &luns)?;
        self.set_lie(&d.lie, Some((t, l, op)));
        Some((d, format!("{t}:{l} op {op:#04x}")))
    }

    /// Fuzz mode: the lie (if any) about this TMF, as fuzz_cmd.
    fn fuzz_tmf(&mut self, req: &[u8]) -> Option<(Drawn, String)> {
        if req.len() < 24 || u32le(req) != T_TMF {
            return None;
        }
        let d = self.fuzz.as_mut()?.on_tmf()?;
        self.set_lie(&d.lie, None);
        let what = format!("TMF {} lun {:02x?}", u32le(&req[4..8]), &req[8..16]);
        Some((d, what))
    }

    /// A lie as a one-shot rule for the command `cmd` (None: the next TMF),
    /// or its events queued.
    fn set_lie(&mut self, lie: &Lie, cmd: Option<(u8, u16, u8)>) {
        match lie {
            Lie::Rule(fault, abortable) => self.rules.insert(
                0,
                Rule {
                    fault: fault.clone(),
                    count: Some(1),
                    target: cmd.map(|c| c.0),
                    lun: cmd.map(|c| c.1),
                    opcode: cmd.map(|c| c.2),
                    abortable: *abortable,
                    ctrl: cmd.is_none(),
                    fuzz: true,
                },
            ),
            Lie::Events(v) => {
                for &(e, lun, reason, droppable) in v {
                    self.push_event(e, lun, reason, droppable);
                }
            }
            Lie::NoNotify => {}
        }
    }

    /// Fuzz mode, after the request: counts and logs the lie if it was
    /// told, drops its rule.
    fn fuzz_told(&mut self, lie: Option<(Drawn, String)>, o: &mut Outcome) {
        let Some((d, what)) = lie else { return };
        let told = match d.lie {
            Lie::Rule(..) => {
                let hit = self.rules.iter().any(|r| r.fuzz && r.count == Some(0));
                self.rules.retain(|r| !r.fuzz);
                hit
            }
            Lie::NoNotify => {
                o.quiet = true;
                true
            }
            Lie::Events(_) => true,
        };
        if let (true, Some(f)) = (told, self.fuzz.as_mut()) {
            f.told(&d, &what);
        }
    }

    fn run_cmd(&mut self, req: &[u8], in_cap: usize) -> Outcome {
        self.stats.cmds += 1;
        let hdr = self.cmd_hdr_size();
        let mut resp = vec![0u8; CMD_RESP_SIZE];
        if req.len() < hdr {
            resp[11] = S_FAILURE;
            return Outcome {
                used_len: CMD_RESP_SIZE.min(in_cap) as u32,
                bytes: resp,
                ..Default::default()
            };
        }
        let tag = u64::from_le_bytes(req[8..16].try_into().unwrap());
        let cdb = &req[hdr - CDB_SIZE..hdr];
        let mut data_out = &req[hdr..];
        let (mut pi_out, mut pi_in) = (0u32, 0u32);
        if self.t10_pi {
            pi_out = u32le(&req[19..23]);
            pi_in = u32le(&req[23..27]);
        }
        let data_cap = in_cap.saturating_sub(CMD_RESP_SIZE);
        let op = cdb[0];
        let Some((t, l)) = parse_lun(&req[..8]).filter(|&(t, _)| self.target_exists(t)) else {
            resp[11] = S_BAD_TARGET;
            return Outcome {
                used_len: CMD_RESP_SIZE.min(in_cap) as u32,
                bytes: resp,
                tag,
                ..Default::default()
            };
        };
        let mut out = Outcome {
            target: t,
            lun: l,
            tag,
            ..Default::default()
        };

        // Faults that replace the command.
        let pre = self.take_rule(false, t, l, op, |f| {
            matches!(f, Fault::Response(_) | Fault::Sense(..) | Fault::Status(_))
        });
        let mut r = match pre.as_ref().map(|r| &r.fault) {
            Some(Fault::Response(code)) => {
                resp[11] = *code;
                out.bytes = resp;
                out.used_len = CMD_RESP_SIZE.min(in_cap) as u32;
                return out;
            }
            Some(Fault::Sense(k, a, q)) => scsi::CmdResult::check(*k, *a, *q),
            Some(Fault::Status(s)) => scsi::CmdResult {
                status: *s,
                ..Default::default()
            },
            _ => {
                if pi_out as usize > data_out.len() {
                    pi_out = 0;
                }
                if op == 0xa0 {
                    let alloc = u32::from_be_bytes(cdb[6..10].try_into().unwrap()) as usize;
                    scsi::CmdResult::data(self.report_luns(t, alloc))
                } else if let Some(lun) = self.luns.get_mut(&(t, l)) {
                    if !lun.pi && pi_out > 0 {
                        // PI for a LUN not formatted with it: skipped.
                        data_out = &data_out[pi_out as usize..];
                    }
                    lun.execute(cdb, data_out)
                } else if op == 0x12 && cdb[1] & 1 == 0 {
                    // No such LUN on a target that exists: peripheral qualifier 3.
                    let mut d = vec![0u8; 36];
                    d[0] = 0x7f;
                    d[2] = 0x06;
                    d[3] = 0x12;
                    d[4] = 31;
                    let alloc = u16::from_be_bytes([cdb[3], cdb[4]]) as usize;
                    d.truncate(alloc);
                    scsi::CmdResult::data(d)
                } else if op == 0x03 {
                    scsi::CmdResult::data(scsi::sense(scsi::ILLEGAL_REQUEST, 0x25, 0))
                } else {
                    scsi::CmdResult::check(scsi::ILLEGAL_REQUEST, 0x25, 0x00)
                }
            }
        };
        if self
            .take_rule(false, t, l, op, |f| *f == Fault::GuardError)
            .is_some()
        {
            r.status = scsi::CHECK_CONDITION;
            r.sense = scsi::sense(scsi::ABORTED_COMMAND, 0x10, 0x01);
        }

        if pi_in >= 8 && r.data_in.len() >= 8 {
            if self
                .take_rule(false, t, l, op, |f| *f == Fault::BadGuard)
                .is_some()
            {
                r.data_in[0] ^= 0xff;
            }
        }
        if op == 0x88 && r.status == scsi::GOOD && !r.data_in.is_empty() {
            if let Some(Rule {
                fault: Fault::BadData(at),
                ..
            }) = self.take_rule(false, t, l, op, |f| matches!(f, Fault::BadData(_)))
            {
                let n = r.data_in.len();
                r.data_in[at as usize % n] ^= 0xa5;
            }
        }
        let mut response = S_OK;
        let mut residual = if r.data_in.is_empty() {
            data_out.len().saturating_sub(r.data_out_used) as u32
        } else {
            0
        };
        if r.data_in.len() > data_cap {
            // The driver's buffers are too small for the data.
            response = S_OVERRUN;
            r.data_in.truncate(data_cap);
        } else if !r.data_in.is_empty() || data_out.is_empty() {
            residual = (data_cap - r.data_in.len()) as u32;
        }
        let mut sense_len = r.sense.len().min(SENSE_SIZE) as u32;
        if let Some(rule) = self.take_rule(false, t, l, op, |f| matches!(f, Fault::SenseLen(_))) {
            if let Fault::SenseLen(n) = rule.fault {
                sense_len = n;
                if r.status == scsi::GOOD {
                    r.status = scsi::CHECK_CONDITION;
                    r.sense = scsi::sense(scsi::ABORTED_COMMAND, 0x00, 0x00);
                }
            }
        }
        if let Some(rule) = self.take_rule(false, t, l, op, |f| matches!(f, Fault::ResidualOver(_)))
        {
            if let Fault::ResidualOver(extra) = rule.fault {
                let transfer = if data_out.is_empty() {
                    data_cap
                } else {
                    data_out.len()
                };
                residual = transfer as u32 + extra;
            }
        }
        resp[0..4].copy_from_slice(&sense_len.to_le_bytes());
        resp[4..8].copy_from_slice(&residual.to_le_bytes());
        resp[10] = r.status;
        resp[11] = response;
        let n = r.sense.len().min(SENSE_SIZE);
        resp[12..12 + n].copy_from_slice(&r.sense[..n]);
        out.used_len = (CMD_RESP_SIZE + r.data_in.len()).min(in_cap) as u32;
        resp.extend_from_slice(&r.data_in);
        out.bytes = resp;
        if let Some(rule) = self.take_rule(false, t, l, op, |f| matches!(f, Fault::UsedLenOver(_)))
        {
            if let Fault::UsedLenOver(extra) = rule.fault {
                out.used_len = (in_cap as u32).saturating_add(extra);
            }
        }
        if let Some(rule) = self.take_rule(false, t, l, op, |f| matches!(f, Fault::UsedLenShort(_)))
        {
            if let Fault::UsedLenShort(n) = rule.fault {
                out.used_len = n.min(out.used_len.saturating_sub(1));
            }
        }
        if self
            .take_rule(false, t, l, op, |f| *f == Fault::Stray)
            .is_some()
        {
            out.stray = true;
        }
        if let Some(rule) = self.take_rule(false, t, l, op, |f| matches!(f, Fault::Hold(_))) {
            if let Fault::Hold(ms) = rule.fault {
                out.hold = Some((ms, rule.abortable));
            }
        }
        out
    }

    /// Completes held requests matching `pred` with response `code`;
    /// returns them for the backend to write back.
    fn end_held(&mut self, code: u8, pred: impl Fn(&Held) -> bool) -> Vec<Held> {
        let mut done = Vec::new();
        let mut i = 0;
        while i < self.held.len() {
            if !self.held[i].ctrl && self.held[i].abortable && pred(&self.held[i]) {
                let mut h = self.held.remove(i);
                h.bytes.truncate(CMD_RESP_SIZE);
                h.bytes[0..12].fill(0);
                h.bytes[11] = code;
                h.used_len = (CMD_RESP_SIZE as u32).min(h.segs.iter().map(|s| s.1).sum());
                let ms = h.since.elapsed().as_millis() as u64;
                self.tmf_ended_ms = Some(match self.tmf_ended_ms {
                    Some((lo, hi)) => (lo.min(ms), hi.max(ms)),
                    None => (ms, ms),
                });
                done.push(h);
            } else {
                i += 1;
            }
        }
        self.stats.tmf_ended += done.len() as u64;
        done
    }

    /// One control-queue message. Returns the completion and the held
    /// requests the TMF ended (to be completed before it).
    pub fn handle_ctrl(&mut self, req: &[u8], in_cap: usize) -> (Outcome, Vec<Held>) {
        let lie = self.fuzz_tmf(req);
        let (mut o, ended) = self.run_ctrl(req, in_cap);
        self.fuzz_told(lie, &mut o);
        (o, ended)
    }

    fn run_ctrl(&mut self, req: &[u8], in_cap: usize) -> (Outcome, Vec<Held>) {
        let mut out = Outcome::default();
        if req.len() < 4 {
            return (out, Vec::new());
        }
        match u32le(req) {
            T_TMF if req.len() >= 24 => {
                self.stats.tmfs += 1;
                let subtype = u32le(&req[4..8]);
                let (t, l) = parse_lun(&req[8..16]).unwrap_or((0xff, 0xffff));
                let tag = u64::from_le_bytes(req[16..24].try_into().unwrap());
                out.target = t;
                out.lun = l;
                out.tag = tag;
                let mut resp = S_OK; // FUNCTION_COMPLETE
                let ended = match subtype {
                    TMF_ABORT_TASK => {
                        self.end_held(S_ABORTED, |h| h.tag == tag && h.target == t && h.lun == l)
                    }
                    TMF_ABORT_TASK_SET | TMF_CLEAR_TASK_SET => {
                        self.end_held(S_ABORTED, |h| h.target == t && h.lun == l)
                    }
                    TMF_LOGICAL_UNIT_RESET => {
                        self.end_held(S_RESET, |h| h.target == t && h.lun == l)
                    }
                    TMF_I_T_NEXUS_RESET => self.end_held(S_RESET, |h| h.target == t),
                    TMF_QUERY_TASK => {
                        if self
                            .held
                            .iter()
                            .any(|h| !h.ctrl && h.tag == tag && h.target == t && h.lun == l)
                        {
                            resp = S_FUNCTION_SUCCEEDED;
                        }
                        Vec::new()
                    }
                    TMF_QUERY_TASK_SET => {
                        if self
                            .held
                            .iter()
                            .any(|h| !h.ctrl && h.target == t && h.lun == l)
                        {
                            resp = S_FUNCTION_SUCCEEDED;
                        }
                        Vec::new()
                    }
                    2 => Vec::new(), // CLEAR ACA
                    _ => {
                        resp = S_FUNCTION_REJECTED;
                        Vec::new()
                    }
                };
                if let Some(rule) =
                    self.take_rule(true, t, l, 0, |f| matches!(f, Fault::Response(_)))
                {
                    if let Fault::Response(c) = rule.fault {
                        resp = c;
                    }
                }
                if let Some(rule) = self.take_rule(true, t, l, 0, |f| matches!(f, Fault::Hold(_))) {
                    if let Fault::Hold(ms) = rule.fault {
                        out.hold = Some((ms, false));
                    }
                }
                if self
                    .take_rule(true, t, l, 0, |f| *f == Fault::Stray)
                    .is_some()
                {
                    out.stray = true;
                }
                out.bytes = vec![resp];
                out.used_len = 1.min(in_cap) as u32;
                (out, ended)
            }
            T_AN_QUERY | T_AN_SUBSCRIBE if req.len() >= 16 => {
                self.stats.an += 1;
                let requested = u32le(&req[12..16]);
                let actual = requested & SUPPORTED_AN;
                if u32le(req) == T_AN_SUBSCRIBE {
                    self.an_subscribed = actual;
                }
                let mut b = actual.to_le_bytes().to_vec();
                b.push(S_OK);
                out.used_len = 5.min(in_cap) as u32;
                out.bytes = b;
                (out, Vec::new())
            }
            _ => {
                // Unknown type: VIRTIO_SCSI_S_FAILURE in the first response byte
                // that both TMF and AN responses have (TMF: byte 0).
                out.bytes = vec![S_FAILURE];
                out.used_len = 1.min(in_cap) as u32;
                (out, Vec::new())
            }
        }
    }

    /// Queues an event; `droppable` ones are dropped (and EVENTS_MISSED set)
    /// when no buffer is posted for them.
    pub fn push_event(&mut self, event: u32, lun: [u8; 8], reason: u32, droppable: bool) {
        let mut e = [0u8; EVENT_SIZE];
        e[0..4].copy_from_slice(&event.to_le_bytes());
        e[4..12].copy_from_slice(&lun);
        e[12..16].copy_from_slice(&reason.to_le_bytes());
        if self.pending_events.len() >= MAX_PENDING_EVENTS {
            self.events_missed = true;
            self.stats.events_dropped += 1;
            return;
        }
        self.pending_events.push_back((e, droppable));
    }

    /// The next event to write into a posted buffer (with EVENTS_MISSED
    /// folded in when events were lost before it). With events lost and none
    /// pending, a NO_EVENT | EVENTS_MISSED, as QEMU sends when the driver
    /// posts buffers again.
    pub fn next_event(&mut self) -> Option<[u8; EVENT_SIZE]> {
        let mut e = match self.pending_events.pop_front() {
            Some((e, _)) => e,
            None if self.events_missed => [0u8; EVENT_SIZE],
            None => return None,
        };
        if self.events_missed {
            let v = u32le(&e) | T_EVENTS_MISSED;
            e[0..4].copy_from_slice(&v.to_le_bytes());
            self.events_missed = false;
        }
        self.stats.events_sent += 1;
        Some(e)
    }

    /// Called when no more buffers are posted: droppable events are lost.
    pub fn drop_undeliverable(&mut self) {
        let before = self.pending_events.len();
        self.pending_events.retain(|(_, d)| !d);
        let lost = before - self.pending_events.len();
        if lost > 0 {
            self.events_missed = true;
            self.stats.events_dropped += lost as u64;
        }
    }

    /// Held requests whose time has come (all of them with `all`).
    pub fn take_due(&mut self, now: Instant, all: bool) -> Vec<Held> {
        let mut due = Vec::new();
        let mut i = 0;
        while i < self.held.len() {
            if all || self.held[i].deadline.map_or(false, |d| d <= now) {
                if !self.held[i].ctrl {
                    self.stats.released += 1;
                }
                due.push(self.held.remove(i));
            } else {
                i += 1;
            }
        }
        due
    }

    pub fn hold(
        &mut self,
        o: Outcome,
        queue: u16,
        head: u16,
        segs: Vec<(u64, u32)>,
        ctrl: bool,
    ) -> Option<Duration> {
        let (ms, abortable) = o.hold.unwrap_or((Some(0), true));
        if !ctrl {
            self.stats.holds += 1;
        }
        self.held.push(Held {
            queue,
            head,
            segs,
            bytes: o.bytes,
            used_len: o.used_len,
            deadline: ms.map(|m| Instant::now() + Duration::from_millis(m)),
            since: Instant::now(),
            target: o.target,
            lun: o.lun,
            tag: o.tag,
            abortable,
            ctrl,
        });
        ms.map(Duration::from_millis)
    }

    fn lun_arg(v: &Value) -> Result<(u8, u16), String> {
        let t = v
            .get("target")
            .and_then(Value::as_u64)
            .ok_or("\"target\" missing")?;
        let l = v
            .get("lun")
            .and_then(Value::as_u64)
            .ok_or("\"lun\" missing")?;
        if t > 255 || l > 16383 {
            return Err("target 0-255, lun 0-16383".into());
        }
        Ok((t as u8, l as u16))
    }

    fn size_arg(v: &Value, default: u64) -> Result<u64, String> {
        match v.get("size") {
            None => Ok(default),
            Some(Value::Number(n)) => n.as_u64().ok_or_else(|| "bad size".into()),
            Some(Value::String(s)) => scsi::parse_size(s).ok_or_else(|| format!("bad size {s}")),
            _ => Err("bad size".into()),
        }
    }

    /// Makes a LUN from a JSON object: type disk (size), cd (size, medium), file (path).
    pub fn make_lun(v: &Value, t: u8, l: u16) -> Result<Lun, String> {
        let serial = format!("tdev-{t}-{l}");
        match v.get("type").and_then(Value::as_str).unwrap_or("disk") {
            "disk" => Ok(Lun::ram_disk(Self::size_arg(v, 64 << 20)?, &serial)),
            "cd" => {
                let medium = v.get("medium").and_then(Value::as_bool).unwrap_or(true);
                Ok(Lun::cd(
                    medium.then_some(Self::size_arg(v, 4 << 20)?),
                    &serial,
                ))
            }
            "file" => {
                let p = v
                    .get("path")
                    .and_then(Value::as_str)
                    .ok_or("\"path\" missing")?;
                Lun::file_disk(p, &serial).map_err(|e| format!("{p}: {e}"))
            }
            o => Err(format!("unknown LUN type {o}")),
        }
    }

    fn rule_from(v: &Value) -> Result<Rule, String> {
        let kind = v
            .get("fault")
            .and_then(Value::as_str)
            .ok_or("\"fault\" missing")?;
        let num = |k: &str, d: u64| v.get(k).and_then(Value::as_u64).unwrap_or(d);
        let fault = match kind {
            "used_len" => Fault::UsedLenOver(num("extra", 4096) as u32),
            "used_len_short" => Fault::UsedLenShort(num("len", 0) as u32),
            "status" => Fault::Status(num("status", 0x08) as u8),
            "sense_len" => Fault::SenseLen(num("sense_len", 200) as u32),
            "residual" => Fault::ResidualOver(num("extra", 4096) as u32),
            "response" => Fault::Response(num("code", 0x42) as u8),
            "sense" => Fault::Sense(
                num("key", 3) as u8,
                num("asc", 0x11) as u8,
                num("ascq", 0) as u8,
            ),
            "hold" | "tmf_hold" => Fault::Hold(v.get("ms").and_then(Value::as_u64)),
            "tmf_response" => Fault::Response(num("code", S_FUNCTION_REJECTED as u64) as u8),
            "guard" => Fault::GuardError,
            "bad_guard" => Fault::BadGuard,
            "bad_data" => Fault::BadData(num("at", 0) as u32),
            "stray" | "tmf_stray" => Fault::Stray,
            o => return Err(format!("unknown fault {o}")),
        };
        Ok(Rule {
            fault,
            count: match v.get("count") {
                Some(Value::Number(n)) if n.as_u64() == Some(0) => None,
                Some(Value::Number(n)) => n.as_u64(),
                _ => Some(1),
            },
            target: v.get("target").and_then(Value::as_u64).map(|x| x as u8),
            lun: v.get("lun").and_then(Value::as_u64).map(|x| x as u16),
            opcode: v.get("opcode").and_then(Value::as_u64).map(|x| x as u8),
            abortable: v.get("abortable").and_then(Value::as_bool).unwrap_or(true),
            ctrl: kind.starts_with("tmf_"),
            fuzz: false,
        })
    }

    /// One control-socket command (a JSON object); the reply object.
    /// `release_all` is set when held requests must be completed now.
    pub fn control(&mut self, v: &Value) -> Value {
        match self.control_inner(v) {
            Ok(mut r) => {
                r["ok"] = json!(true);
                r
            }
            Err(e) => json!({"ok": false, "error": e}),
        }
    }

    fn control_inner(&mut self, v: &Value) -> Result<Value, String> {
        let cmd = v
            .get("cmd")
            .and_then(Value::as_str)
            .ok_or("\"cmd\" missing")?;
        match cmd {
            "status" => Ok(json!({
                "luns": self.luns.iter().map(|((t, l), x)| json!({
                    "target": t, "lun": l,
                    "type": if x.kind == Kind::Disk { "disk" } else { "cd" },
                    "blocks": x.blocks(), "block_size": x.block_size,
                })).collect::<Vec<_>>(),
                "held": self.held.len(),
                "event_buffers": self.event_bufs,
                "pending_events": self.pending_events.len(),
                "an_subscribed": self.an_subscribed,
                "acked_features": format!("{:#x}", self.acked_features),
                "rules": self.rules.iter().filter(|r| r.count != Some(0)).count(),
                "tmf_ended_ms": self.tmf_ended_ms.map(|(lo, hi)| json!([lo, hi])),
                "fuzz": self.fuzz.as_ref().map(Fuzz::status),
                "stats": {
                    "cmds": self.stats.cmds, "tmfs": self.stats.tmfs, "an": self.stats.an,
                    "events_sent": self.stats.events_sent, "events_dropped": self.stats.events_dropped,
                    "faults_hit": self.stats.faults_hit,
                    "holds": self.stats.holds, "released": self.stats.released,
                    "tmf_ended": self.stats.tmf_ended,
                },
            })),
            "add_lun" => {
                let (t, l) = Self::lun_arg(v)?;
                if self.luns.contains_key(&(t, l)) {
                    return Err(format!("{t}:{l} exists"));
                }
                let lun = Self::make_lun(v, t, l)?;
                self.luns.insert((t, l), lun);
                self.push_event(T_TRANSPORT_RESET, lun_bytes(t, l), EVT_RESET_RESCAN, false);
                Ok(json!({}))
            }
            "remove_lun" => {
                let (t, l) = Self::lun_arg(v)?;
                self.luns.remove(&(t, l)).ok_or(format!("no LUN {t}:{l}"))?;
                self.push_event(T_TRANSPORT_RESET, lun_bytes(t, l), EVT_RESET_REMOVED, false);
                Ok(json!({}))
            }
            "change_medium" => {
                let (t, l) = Self::lun_arg(v)?;
                let present = v.get("present").and_then(Value::as_bool).unwrap_or(true);
                let size = Self::size_arg(v, 4 << 20)?;
                let lun = self.luns.get_mut(&(t, l)).ok_or(format!("no LUN {t}:{l}"))?;
                if lun.kind != Kind::Cd {
                    return Err(format!("{t}:{l} is not a CD"));
                }
                lun.change_medium(present.then_some(size));
                let notified = self.an_subscribed & EVT_ASYNC_MEDIA_CHANGE != 0;
                if notified {
                    self.push_event(T_ASYNC_NOTIFY, lun_bytes(t, l), EVT_ASYNC_MEDIA_CHANGE, false);
                }
                Ok(json!({"notified": notified}))
            }
            "reset_hard" => {
                let (t, l) = Self::lun_arg(v)?;
                for ((_, _), x) in self.luns.range_mut((t, 0)..=(t, u16::MAX)) {
                    x.ua = Some((0x29, 0x00)); // POWER ON, RESET, OR BUS DEVICE RESET OCCURRED
                }
                self.push_event(T_TRANSPORT_RESET, lun_bytes(t, l), EVT_RESET_HARD, false);
                Ok(json!({}))
            }
            "param_change" => {
                let (t, l) = Self::lun_arg(v)?;
                let asc = v.get("asc").and_then(Value::as_u64).unwrap_or(0x2a) as u32;
                let ascq = v.get("ascq").and_then(Value::as_u64).unwrap_or(0x09) as u32;
                if let Some(x) = self.luns.get_mut(&(t, l)) {
                    x.ua = Some((asc as u8, ascq as u8));
                }
                self.push_event(T_PARAM_CHANGE, lun_bytes(t, l), asc | ascq << 8, false);
                Ok(json!({}))
            }
            "event" => {
                // A raw event: {"event": N, "target", "lun", "reason"}
                let (t, l) = Self::lun_arg(v).unwrap_or((0, 0));
                let e = v.get("event").and_then(Value::as_u64).ok_or("\"event\" missing")? as u32;
                let reason = v.get("reason").and_then(Value::as_u64).unwrap_or(0) as u32;
                self.push_event(e, lun_bytes(t, l), reason, false);
                Ok(json!({}))
            }
            "flood" => {
                // More events than buffers: the excess is dropped, the next
                // delivered event carries EVENTS_MISSED.
                let n = v.get("count").and_then(Value::as_u64).unwrap_or(self.event_bufs as u64 + 16);
                let (t, l) = Self::lun_arg(v).unwrap_or((0, 0));
                for _ in 0..n {
                    self.push_event(T_PARAM_CHANGE, lun_bytes(t, l), 0x2a | 0x09 << 8, true);
                }
                Ok(json!({"count": n, "event_buffers": self.event_bufs}))
            }
            "fault" => {
                let r = Self::rule_from(v)?;
                self.rules.push(r);
                Ok(json!({"rules": self.rules.len()}))
            }
            "clear" => {
                self.rules.clear();
                self.tmf_ended_ms = None;
                Ok(json!({}))
            }
            "release" => {
                // Held requests get a deadline of now; the backend completes them.
                let now = Instant::now();
                for h in &mut self.held {
                    h.deadline = Some(now);
                }
                Ok(json!({"released": self.held.len()}))
            }
            "fuzz" => {
                let f = self.fuzz.get_or_insert_with(|| Fuzz::new(0));
                f.configure(v)?;
                // "told": true: the names of the lies told (a shrinker's
                // first list), not the whole status.
                if v.get("told").and_then(Value::as_bool) == Some(true) {
                    return Ok(json!({"told": f.told_list()}));
                }
                Ok(json!({"fuzz": f.status()}))
            }
            "needs_reset" | "config" => Err(format!(
                "{cmd}: QEMU 7.2's vhost-user-scsi owns config space and device status; \
                 use run-guest --testdev-qemu props (num_queues, max_sectors, cmd_per_lun, virtqueue_size)"
            )),
            o => Err(format!("unknown cmd {o}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> Device {
        let mut d = Device::new();
        d.luns.insert((0, 0), Lun::ram_disk(1 << 20, "a"));
        d.luns.insert((0, 1), Lun::ram_disk(1 << 20, "b"));
        d.luns.insert((1, 0), Lun::cd(None, "c"));
        d
    }

    fn req(t: u8, l: u16, cdb: &[u8], tag: u64) -> Vec<u8> {
        let mut r = lun_bytes(t, l).to_vec();
        r.extend_from_slice(&tag.to_le_bytes());
        r.extend_from_slice(&[0, 0, 0]);
        let mut c = [0u8; CDB_SIZE];
        c[..cdb.len()].copy_from_slice(cdb);
        r.extend_from_slice(&c);
        r
    }

    fn resp(o: &Outcome) -> (u32, u32, u8, u8) {
        let b = &o.bytes;
        (u32le(&b[0..4]), u32le(&b[4..8]), b[10], b[11])
    }

    fn ctl(d: &mut Device, s: &str) -> Value {
        d.control(&serde_json::from_str(s).unwrap())
    }

    /// A test device that took one control command (a fault, usually).
    fn dev_after(s: &str) -> Device {
        let mut d = dev();
        ctl(&mut d, s);
        d
    }

    const READ1: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    const READ16: [u8; 16] = [0x88, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0];

    #[test]
    fn bad_data_changes_one_byte_of_a_read16() {
        let mut d = dev();
        let good = d.handle_cmd(&req(0, 0, &READ16, 1), CMD_RESP_SIZE + 512);
        // READ(10) does not take the rule; the READ(16) after it does.
        let mut d = dev_after(r#"{"cmd":"fault","fault":"bad_data","at":1000,"target":0,"lun":0}"#);
        let plain = d.handle_cmd(&req(0, 0, &READ1, 2), CMD_RESP_SIZE + 512);
        assert_eq!(resp(&plain).3, S_OK);
        let bad = d.handle_cmd(&req(0, 0, &READ16, 3), CMD_RESP_SIZE + 512);
        assert_eq!(resp(&bad), (0, 0, scsi::GOOD, S_OK));
        let diff: Vec<usize> = (0..good.bytes.len())
            .filter(|&i| good.bytes[i] != bad.bytes[i])
            .collect();
        assert_eq!(diff, vec![CMD_RESP_SIZE + 1000 % 512]);
        let again = d.handle_cmd(&req(0, 0, &READ16, 4), CMD_RESP_SIZE + 512);
        assert_eq!(again.bytes, good.bytes);
    }

    #[test]
    fn lun_parsing() {
        assert_eq!(parse_lun(&lun_bytes(3, 300)), Some((3, 300)));
        assert_eq!(parse_lun(&[1, 2, 0, 5, 0, 0, 0, 0]), Some((2, 5)));
        assert_eq!(parse_lun(&[0xc1, 1, 0, 0, 0, 0, 0, 0]), None);
    }

    #[test]
    fn read_good_and_residual() {
        let mut d = dev();
        let o = d.handle_cmd(&req(0, 0, &READ1, 1), CMD_RESP_SIZE + 4096);
        assert_eq!(resp(&o), (0, 4096 - 512, 0, S_OK));
        assert_eq!(o.used_len as usize, CMD_RESP_SIZE + 512);
        let o = d.handle_cmd(&req(0, 0, &READ1, 1), CMD_RESP_SIZE + 100);
        assert_eq!(resp(&o).3, S_OVERRUN);
    }

    #[test]
    fn bad_target_and_missing_lun() {
        let mut d = dev();
        assert_eq!(
            resp(&d.handle_cmd(&req(7, 0, &[0], 1), 200)).3,
            S_BAD_TARGET
        );
        let o = d.handle_cmd(&req(0, 5, &[0x12, 0, 0, 0, 36], 1), 200);
        assert_eq!(o.bytes[CMD_RESP_SIZE], 0x7f);
        let o = d.handle_cmd(&req(0, 5, &[0], 1), 200);
        assert_eq!(resp(&o).2, scsi::CHECK_CONDITION);
        assert_eq!(o.bytes[12 + 12], 0x25);
        let o = d.handle_cmd(&req(0, 5, &[0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0], 1), 400);
        assert_eq!(&o.bytes[CMD_RESP_SIZE..CMD_RESP_SIZE + 4], &[0, 0, 0, 16]);
    }

    #[test]
    fn write_data_out() {
        let mut d = dev();
        let mut r = req(0, 1, &[0x2a, 0, 0, 0, 0, 2, 0, 0, 1, 0], 1);
        r.extend(std::iter::repeat(0xab).take(512));
        let o = d.handle_cmd(&r, CMD_RESP_SIZE);
        assert_eq!(resp(&o), (0, 0, 0, S_OK));
        let o = d.handle_cmd(
            &req(0, 1, &[0x28, 0, 0, 0, 0, 2, 0, 0, 1, 0], 1),
            CMD_RESP_SIZE + 512,
        );
        assert!(o.bytes[CMD_RESP_SIZE..].iter().all(|&b| b == 0xab));
    }

    #[test]
    fn fault_used_len_sense_len_residual_response() {
        let mut d = dev();
        let cap = CMD_RESP_SIZE + 512;
        ctl(&mut d, r#"{"cmd":"fault","fault":"used_len","extra":100}"#);
        assert_eq!(
            d.handle_cmd(&req(0, 0, &READ1, 1), cap).used_len as usize,
            cap + 100
        );
        assert_eq!(
            d.handle_cmd(&req(0, 0, &READ1, 1), cap).used_len as usize,
            cap,
            "count 1"
        );
        ctl(
            &mut d,
            r#"{"cmd":"fault","fault":"sense_len","sense_len":4000}"#,
        );
        let o = d.handle_cmd(&req(0, 0, &READ1, 1), cap);
        assert_eq!((resp(&o).0, resp(&o).2), (4000, scsi::CHECK_CONDITION));
        ctl(&mut d, r#"{"cmd":"fault","fault":"residual","extra":1}"#);
        assert_eq!(resp(&d.handle_cmd(&req(0, 0, &READ1, 1), cap)).1, 513);
        ctl(
            &mut d,
            r#"{"cmd":"fault","fault":"response","code":66,"target":0,"lun":1}"#,
        );
        assert_eq!(
            resp(&d.handle_cmd(&req(0, 0, &READ1, 1), cap)).3,
            S_OK,
            "other LUN"
        );
        assert_eq!(resp(&d.handle_cmd(&req(0, 1, &READ1, 1), cap)).3, 66);
    }

    #[test]
    fn fault_sense_by_opcode_count() {
        let mut d = dev_after(r#"{"cmd":"fault","fault":"sense","opcode":40,"count":2}"#);
        let cap = CMD_RESP_SIZE + 512;
        assert_eq!(
            resp(&d.handle_cmd(&req(0, 0, &[0], 1), cap)).2,
            0,
            "TUR untouched"
        );
        for _ in 0..2 {
            let o = d.handle_cmd(&req(0, 0, &READ1, 1), cap);
            assert_eq!(
                (resp(&o).2, o.bytes[12 + 2], o.bytes[12 + 12]),
                (2, 3, 0x11)
            );
        }
        assert_eq!(resp(&d.handle_cmd(&req(0, 0, &READ1, 1), cap)).2, 0);
    }

    #[test]
    fn fault_stray_completion() {
        let mut d = dev_after(r#"{"cmd":"fault","fault":"stray","lun":1}"#);
        assert!(!d.handle_cmd(&req(0, 0, &READ1, 1), 700).stray);
        let o = d.handle_cmd(&req(0, 1, &READ1, 1), 700);
        assert!(o.stray);
        assert_eq!(resp(&o).3, S_OK);
        assert!(!d.handle_cmd(&req(0, 1, &READ1, 1), 700).stray);
    }

    fn pi_req(cdb: &[u8], pi_out: u32, pi_in: u32) -> Vec<u8> {
        let mut r = lun_bytes(0, 0).to_vec();
        r.extend_from_slice(&1u64.to_le_bytes());
        r.extend_from_slice(&[0, 0, 0]);
        r.extend_from_slice(&pi_out.to_le_bytes());
        r.extend_from_slice(&pi_in.to_le_bytes());
        let mut c = [0u8; CDB_SIZE];
        c[..cdb.len()].copy_from_slice(cdb);
        r.extend_from_slice(&c);
        r
    }

    #[test]
    fn t10_pi_write_read_guard() {
        let mut d = dev();
        d.t10_pi = true;
        d.luns.get_mut(&(0, 0)).unwrap().set_pi(true);
        let data = vec![0x33u8; 512];
        let guard = scsi::crc_t10dif(&data);
        let mut pi = guard.to_be_bytes().to_vec();
        pi.extend_from_slice(&[0, 0, 0, 0, 0, 5]);
        // WRITE(10) with WRPROTECT=1: PI then data.
        let mut r = pi_req(&[0x2a, 0x20, 0, 0, 0, 5, 0, 0, 1, 0], 8, 0);
        r.extend_from_slice(&pi);
        r.extend_from_slice(&data);
        assert_eq!(resp(&d.handle_cmd(&r, CMD_RESP_SIZE)).2, scsi::GOOD);
        // A wrong guard is refused (device-side check).
        let mut bad = r.clone();
        bad[CMD_REQ_PI_SIZE] ^= 1;
        let o = d.handle_cmd(&bad, CMD_RESP_SIZE);
        assert_eq!(
            (o.bytes[12 + 2], o.bytes[12 + 12], o.bytes[12 + 13]),
            (scsi::ABORTED_COMMAND, 0x10, 1)
        );
        // READ(10) RDPROTECT=1: PI then data back.
        let rd = pi_req(&[0x28, 0x20, 0, 0, 0, 5, 0, 0, 1, 0], 0, 8);
        let o = d.handle_cmd(&rd, CMD_RESP_SIZE + 520);
        assert_eq!(&o.bytes[CMD_RESP_SIZE..CMD_RESP_SIZE + 8], &pi[..]);
        assert_eq!(&o.bytes[CMD_RESP_SIZE + 8..], &data[..]);
        ctl(&mut d, r#"{"cmd":"fault","fault":"bad_guard"}"#);
        let o = d.handle_cmd(&rd, CMD_RESP_SIZE + 520);
        assert_ne!(&o.bytes[CMD_RESP_SIZE..CMD_RESP_SIZE + 2], &pi[..2]);
        ctl(&mut d, r#"{"cmd":"fault","fault":"guard"}"#);
        let o = d.handle_cmd(&rd, CMD_RESP_SIZE + 520);
        assert_eq!(
            (resp(&o).2, o.bytes[12 + 12]),
            (scsi::CHECK_CONDITION, 0x10)
        );
        // READ CAPACITY(16) says PROT_EN.
        let o = d.handle_cmd(
            &pi_req(&[0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32], 0, 0),
            200,
        );
        assert_eq!(o.bytes[CMD_RESP_SIZE + 12], 1);
    }

    #[test]
    fn hold_and_abort() {
        let mut d = dev_after(r#"{"cmd":"fault","fault":"hold"}"#);
        let o = d.handle_cmd(&req(0, 0, &READ1, 77), CMD_RESP_SIZE + 512);
        assert_eq!(o.hold, Some((None, true)));
        d.hold(o, 2, 5, vec![(0x1000, 620)], false);
        assert!(d.take_due(Instant::now(), false).is_empty(), "held forever");
        let mut tmf = T_TMF.to_le_bytes().to_vec();
        tmf.extend_from_slice(&TMF_QUERY_TASK.to_le_bytes());
        tmf.extend_from_slice(&lun_bytes(0, 0));
        tmf.extend_from_slice(&77u64.to_le_bytes());
        assert_eq!(d.handle_ctrl(&tmf, 1).0.bytes, [S_FUNCTION_SUCCEEDED]);
        tmf[4..8].copy_from_slice(&TMF_ABORT_TASK.to_le_bytes());
        let (o, ended) = d.handle_ctrl(&tmf, 1);
        assert_eq!(o.bytes, [S_OK]);
        assert_eq!(ended.len(), 1);
        assert_eq!(
            (ended[0].head, ended[0].bytes[11], ended[0].used_len),
            (5, S_ABORTED, 108)
        );
        assert!(d.held.is_empty());
        assert_eq!(
            (d.stats.holds, d.stats.released, d.stats.tmf_ended),
            (1, 0, 1)
        );
        let st = ctl(&mut d, r#"{"cmd":"status"}"#);
        assert!(st["tmf_ended_ms"][0].as_u64().unwrap() < 1000);
        ctl(&mut d, r#"{"cmd":"clear"}"#);
        assert!(ctl(&mut d, r#"{"cmd":"status"}"#)["tmf_ended_ms"].is_null());
    }

    #[test]
    fn hold_ms_and_release() {
        let mut d = dev_after(r#"{"cmd":"fault","fault":"hold","ms":50,"count":0}"#);
        for i in 0..2 {
            let o = d.handle_cmd(&req(0, 0, &READ1, i), CMD_RESP_SIZE + 512);
            assert_eq!(
                d.hold(o, 2, i as u16, vec![], false),
                Some(Duration::from_millis(50))
            );
        }
        assert!(d.take_due(Instant::now(), false).is_empty());
        assert_eq!(
            d.take_due(Instant::now() + Duration::from_millis(60), false)
                .len(),
            2
        );
        let o = d.handle_cmd(&req(0, 0, &READ1, 9), CMD_RESP_SIZE + 512);
        d.hold(o, 2, 9, vec![], false);
        ctl(&mut d, r#"{"cmd":"release"}"#);
        assert_eq!(d.take_due(Instant::now(), false).len(), 1);
        assert_eq!(
            (d.stats.holds, d.stats.released, d.stats.tmf_ended),
            (3, 3, 0)
        );
        let st = ctl(&mut d, r#"{"cmd":"status"}"#);
        assert_eq!(
            (&st["stats"]["holds"], &st["stats"]["released"]),
            (&json!(3), &json!(3))
        );
    }

    #[test]
    fn tmf_faults_and_an() {
        let mut d = dev();
        let mut tmf = T_TMF.to_le_bytes().to_vec();
        tmf.extend_from_slice(&TMF_LOGICAL_UNIT_RESET.to_le_bytes());
        tmf.extend_from_slice(&lun_bytes(0, 0));
        tmf.extend_from_slice(&0u64.to_le_bytes());
        assert_eq!(d.handle_ctrl(&tmf, 1).0.bytes, [S_OK]);
        ctl(
            &mut d,
            r#"{"cmd":"fault","fault":"tmf_response","code":200}"#,
        );
        assert_eq!(d.handle_ctrl(&tmf, 1).0.bytes, [200]);
        ctl(&mut d, r#"{"cmd":"fault","fault":"tmf_hold","ms":10}"#);
        assert_eq!(d.handle_ctrl(&tmf, 1).0.hold, Some((Some(10), false)));
        let mut an = T_AN_SUBSCRIBE.to_le_bytes().to_vec();
        an.extend_from_slice(&lun_bytes(1, 0));
        an.extend_from_slice(&(EVT_ASYNC_MEDIA_CHANGE | 2).to_le_bytes());
        let (o, _) = d.handle_ctrl(&an, 5);
        assert_eq!(o.bytes, [16, 0, 0, 0, S_OK]);
        assert_eq!(d.an_subscribed, EVT_ASYNC_MEDIA_CHANGE);
    }

    #[test]
    fn hotplug_media_reset_param_events() {
        let mut d = dev();
        assert_eq!(
            ctl(
                &mut d,
                r#"{"cmd":"add_lun","target":2,"lun":3,"size":"1M"}"#
            )["ok"],
            true
        );
        let e = d.next_event().unwrap();
        assert_eq!(
            (u32le(&e), &e[4..12], u32le(&e[12..])),
            (T_TRANSPORT_RESET, &lun_bytes(2, 3)[..], EVT_RESET_RESCAN)
        );
        assert_eq!(resp(&d.handle_cmd(&req(2, 3, &[0], 1), 200)).2, 0);
        ctl(&mut d, r#"{"cmd":"remove_lun","target":2,"lun":3}"#);
        assert_eq!(u32le(&d.next_event().unwrap()[12..]), EVT_RESET_REMOVED);
        assert_eq!(
            resp(&d.handle_cmd(&req(2, 3, &[0], 1), 200)).3,
            S_BAD_TARGET
        );
        // Media change: event only once subscribed.
        let r = ctl(
            &mut d,
            r#"{"cmd":"change_medium","target":1,"lun":0,"size":"1M"}"#,
        );
        assert_eq!(r["notified"], false);
        assert!(d.next_event().is_none());
        d.an_subscribed = EVT_ASYNC_MEDIA_CHANGE;
        ctl(
            &mut d,
            r#"{"cmd":"change_medium","target":1,"lun":0,"present":false}"#,
        );
        let e = d.next_event().unwrap();
        assert_eq!(
            (u32le(&e), u32le(&e[12..])),
            (T_ASYNC_NOTIFY, EVT_ASYNC_MEDIA_CHANGE)
        );
        ctl(&mut d, r#"{"cmd":"reset_hard","target":0,"lun":0}"#);
        let e = d.next_event().unwrap();
        assert_eq!(
            (u32le(&e), u32le(&e[12..])),
            (T_TRANSPORT_RESET, EVT_RESET_HARD)
        );
        let o = d.handle_cmd(&req(0, 1, &[0], 1), 200);
        assert_eq!(
            (o.bytes[12 + 2], o.bytes[12 + 12]),
            (scsi::UNIT_ATTENTION, 0x29)
        );
        ctl(&mut d, r#"{"cmd":"param_change","target":0,"lun":0}"#);
        let e = d.next_event().unwrap();
        assert_eq!(
            (u32le(&e), u32le(&e[12..])),
            (T_PARAM_CHANGE, 0x2a | 0x09 << 8)
        );
        assert!(ctl(&mut d, r#"{"cmd":"change_medium","target":0,"lun":0}"#)["ok"] == false);
        assert!(ctl(&mut d, r#"{"cmd":"bogus"}"#)["ok"] == false);
    }

    #[test]
    fn fault_status_used_len_short_tmf_stray() {
        let mut d = dev_after(r#"{"cmd":"fault","fault":"status","status":24}"#);
        let cap = CMD_RESP_SIZE + 512;
        let o = d.handle_cmd(&req(0, 0, &READ1, 1), cap);
        assert_eq!(
            (resp(&o).2, resp(&o).3, o.used_len),
            (0x18, S_OK, CMD_RESP_SIZE as u32)
        );
        ctl(
            &mut d,
            r#"{"cmd":"fault","fault":"used_len_short","len":10}"#,
        );
        assert_eq!(d.handle_cmd(&req(0, 0, &READ1, 1), cap).used_len, 10);
        ctl(&mut d, r#"{"cmd":"fault","fault":"tmf_stray"}"#);
        let mut tmf = T_TMF.to_le_bytes().to_vec();
        tmf.extend_from_slice(&TMF_LOGICAL_UNIT_RESET.to_le_bytes());
        tmf.extend_from_slice(&lun_bytes(0, 0));
        tmf.extend_from_slice(&0u64.to_le_bytes());
        assert!(d.handle_ctrl(&tmf, 1).0.stray);
        assert!(!d.handle_ctrl(&tmf, 1).0.stray);
    }

    /// Feeds `n` commands (reads and writes on 0:0 and 0:1, now and then a
    /// LUN reset) to a device in fuzz mode; the fuzz status after.
    fn fuzz_run(set: &str, n: u64) -> (Device, Value) {
        let mut d = dev();
        d.event_bufs = 8;
        let r = ctl(&mut d, set);
        assert_eq!(r["ok"], true, "{r}");
        d.fuzz.as_mut().unwrap().log = false;
        let mut tmf = T_TMF.to_le_bytes().to_vec();
        tmf.extend_from_slice(&TMF_LOGICAL_UNIT_RESET.to_le_bytes());
        tmf.extend_from_slice(&lun_bytes(0, 1));
        tmf.extend_from_slice(&0u64.to_le_bytes());
        for i in 0..n {
            let lun = (i % 2) as u16;
            let o = if i % 3 == 0 {
                let mut r = req(0, lun, &[0x2a, 0, 0, 0, 0, 2, 0, 0, 1, 0], i);
                r.extend(std::iter::repeat(0xab).take(512));
                d.handle_cmd(&r, CMD_RESP_SIZE)
            } else if i % 3 == 1 {
                d.handle_cmd(&req(0, lun, &READ16, i), CMD_RESP_SIZE + 512)
            } else {
                d.handle_cmd(&req(0, lun, &READ1, i), CMD_RESP_SIZE + 512)
            };
            if o.hold.is_some() {
                d.hold(o, 2, i as u16, vec![], false);
            }
            if i % 50 == 0 {
                d.handle_ctrl(&tmf, 1);
            }
            while d.next_event().is_some() {}
            d.take_due(Instant::now(), true);
        }
        let st = ctl(&mut d, r#"{"cmd":"fuzz"}"#)["fuzz"].clone();
        (d, st)
    }

    #[test]
    fn fuzz_same_seed_same_lies() {
        let set = r#"{"cmd":"fuzz","seed":42,"rate":100,"hard":["0:1"]}"#;
        let (_, a) = fuzz_run(set, 20_000);
        let (_, b) = fuzz_run(set, 20_000);
        let (_, c) = fuzz_run(&set.replace("42", "43"), 20_000);
        assert_eq!(a, b);
        assert!(a["lies"].as_u64().unwrap() > 1000, "{a}");
        assert_ne!(a["digest"], c["digest"]);
        assert_eq!(a["cmds"], 20_000);
    }

    #[test]
    fn fuzz_every_kind_is_told() {
        let (d, st) = fuzz_run(
            r#"{"cmd":"fuzz","seed":7,"rate":200,"tmf_rate":1000,"hard":["0:1"]}"#,
            30_000,
        );
        for k in crate::fuzz::KINDS {
            assert!(
                st["counts"][k.name].as_u64().unwrap() > 0,
                "{} never told: {st}",
                k.name
            );
        }
        // Every lie told was hit by its request: no fuzz rule left behind.
        assert!(d.rules.is_empty());
        assert_eq!(
            d.stats.faults_hit,
            st["lies"].as_u64().unwrap() - {
                let c = &st["counts"];
                crate::fuzz::KINDS
                    .iter()
                    .filter(|k| k.name.starts_with("event_") || k.name == "no_notify")
                    .map(|k| c[k.name].as_u64().unwrap())
                    .sum::<u64>()
            }
        );
    }

    #[test]
    fn fuzz_soft_luns_get_no_hard_lies() {
        let (_, st) = fuzz_run(r#"{"cmd":"fuzz","seed":3,"rate":300,"hard":[]}"#, 20_000);
        for k in crate::fuzz::KINDS.iter().filter(|k| k.hard) {
            assert_eq!(st["counts"][k.name], 0, "{}", k.name);
        }
        let (_, st) = fuzz_run(r#"{"cmd":"fuzz","seed":3,"rate":0,"tmf_rate":0}"#, 5_000);
        assert_eq!(st["lies"], 0);
    }

    #[test]
    fn event_flood_sets_events_missed() {
        let mut d = dev();
        d.event_bufs = 4;
        ctl(&mut d, r#"{"cmd":"flood","count":10}"#);
        // The backend delivers 4, then drops the rest.
        for _ in 0..4 {
            assert_eq!(u32le(&d.next_event().unwrap()), T_PARAM_CHANGE);
        }
        d.drop_undeliverable();
        assert!(d.pending_events.is_empty());
        // Buffers posted again with nothing pending: NO_EVENT | EVENTS_MISSED.
        assert_eq!(u32le(&d.next_event().unwrap()), T_EVENTS_MISSED);
        assert!(d.next_event().is_none());
        assert_eq!(d.stats.events_dropped, 6);
    }

    #[test]
    fn events_missed_folds_into_the_next_pending_event() {
        let mut d = dev();
        d.event_bufs = 1;
        ctl(&mut d, r#"{"cmd":"flood","count":3}"#);
        assert_eq!(u32le(&d.next_event().unwrap()), T_PARAM_CHANGE);
        d.drop_undeliverable();
        ctl(&mut d, r#"{"cmd":"param_change","target":0,"lun":0}"#);
        assert_eq!(
            u32le(&d.next_event().unwrap()),
            T_PARAM_CHANGE | T_EVENTS_MISSED
        );
        assert!(d.next_event().is_none());
    }
}
