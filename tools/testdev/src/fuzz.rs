// SPDX-License-Identifier: GPL-2.0
//! Fuzz mode: a seeded generator of device lies. For each request (and each
//! TMF) the generator decides, from a small PRNG, whether the device lies
//! and how: a kind drawn by weight from the grammar below, with its
//! parameters drawn too. A lie about a request or TMF becomes a one-shot
//! fault rule of the fault table (device.rs applies it, as it applies the
//! rules the control socket sets); an event lie is queued through the same
//! event machinery as the control commands. Nothing here writes a response.
//!
//! Reproducible: each LUN's commands, and the TMFs, draw from a generator of
//! their own seeded from the seed, so the Nth command to a LUN (the Nth TMF)
//! meets the same decision whatever came between (a guest's request order
//! varies from run to run). Every lie is logged with the seed, its number
//! and its name, "T:L#N" (the Nth lie drawn for LUN T:L) or "tmf#N", and
//! counted by kind.
//!
//! Replay: with `only`, a list of lie names, every lie is still drawn (the
//! generators move as in the first run) but only those listed are told. A
//! shrinker (fuzz_shrink.py) narrows a run's lies down to the few that still
//! lead to a finding.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde_json::{json, Map, Value};

use crate::device::{
    Fault, S_ABORTED, S_BAD_TARGET, S_BUSY, S_FAILURE, S_FUNCTION_REJECTED, S_FUNCTION_SUCCEEDED,
    S_INCORRECT_LUN, S_NEXUS_FAILURE, S_OVERRUN, S_RESET, S_TARGET_FAILURE, S_TRANSPORT_FAILURE,
    T_ASYNC_NOTIFY, T_EVENTS_MISSED, T_PARAM_CHANGE, T_TRANSPORT_RESET,
};

/// splitmix64: small, fast, and its whole state is the seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }
    /// Uniform in lo..=hi.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    pub fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
}

/// Where a lie is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Site {
    /// About a request-queue command.
    Cmd,
    /// On the event queue, decided when a command arrives.
    Event,
    /// About a TMF on the control queue.
    Tmf,
}

/// One production of the grammar.
pub struct Kind {
    pub name: &'static str,
    pub site: Site,
    /// Only told about the LUNs named "hard": the lie fails the command for
    /// the application (an I/O error the driver cannot and should not
    /// hide), or leaves it unanswered past its timeout. The latter is the
    /// midlayer's error handling, which gives up on the LUN (offlines it)
    /// when one of its own commands fails after a host reset, as a second
    /// lie may make it: no driver can hide that. The other lies must be
    /// invisible to the application when the driver is right (it retries,
    /// recovers, rescans).
    pub hard: bool,
    pub weight: u32,
    pub what: &'static str,
}

const fn k(name: &'static str, site: Site, hard: bool, weight: u32, what: &'static str) -> Kind {
    Kind {
        name,
        site,
        hard,
        weight,
        what,
    }
}

/// The grammar of lies, default weights. No lie here claims success for a
/// command the device did not execute (RECOVERED ERROR / NO SENSE sense,
/// CONDITION MET status, response OK without data): those corrupt data
/// silently whatever the driver does, and are not in this version. One
/// corrupts data on purpose, where the reader checks it: `read16_data`
/// changes a byte of what a READ(16) reads, and only the test's checked
/// reads of the hard LUN send READ(16) (sd uses READ(10) on small disks).
#[rustfmt::skip]
pub const KINDS: &[Kind] = &[
    k("used_len_over", Site::Cmd, false, 10, "used length past the buffers"),
    k("used_len_short", Site::Cmd, false, 10, "used length short of the response"),
    k("sense_len", Site::Cmd, false, 8, "sense_len > 96, CHECK CONDITION"),
    k("residual", Site::Cmd, false, 8, "residual past the transfer"),
    k("response_retry", Site::Cmd, false, 10, "OVERRUN, RESET, BUSY, TRANSPORT_FAILURE, FAILURE or an undefined response; not run"),
    k("sense_retry", Site::Cmd, false, 8, "UNIT ATTENTION, ABORTED COMMAND or NOT READY (becoming ready); not run"),
    k("status_busy", Site::Cmd, false, 5, "status BUSY, TASK SET FULL or TASK ABORTED; not run"),
    k("status_unknown", Site::Cmd, false, 1, "an undefined status byte; not run"),
    k("late", Site::Cmd, false, 10, "completed 1-300 ms later (out of order)"),
    k("never", Site::Cmd, true, 1, "completed only when a TMF ends it"),
    k("after_abort", Site::Cmd, true, 1, "completed 8-20 s later, TMFs leave it alone"),
    k("repeated", Site::Cmd, false, 1, "completed twice (the queue breaks)"),
    k("no_notify", Site::Cmd, false, 5, "completed without a used-buffer notification"),
    k("response_fail", Site::Cmd, true, 4, "BAD_TARGET, TARGET_FAILURE, INCORRECT_LUN, ABORTED or NEXUS_FAILURE; not run"),
    k("sense_fail", Site::Cmd, true, 4, "MEDIUM ERROR, HARDWARE ERROR, ILLEGAL REQUEST or DATA PROTECT; not run"),
    k("status_fail", Site::Cmd, true, 2, "RESERVATION CONFLICT; not run"),
    k("read16_data", Site::Cmd, true, 2, "READ(16) data with one byte changed, reported good"),
    k("event_flood", Site::Event, false, 2, "1-100 PARAM_CHANGE events (the excess dropped, EVENTS_MISSED)"),
    k("event_missed_storm", Site::Event, false, 2, "1-40 NO_EVENT | EVENTS_MISSED events"),
    k("event_unknown", Site::Event, false, 2, "an event of an undefined type"),
    k("event_bad_lun", Site::Event, false, 2, "TRANSPORT_RESET with malformed LUN bytes"),
    k("event_no_such_lun", Site::Event, false, 2, "RESCAN or REMOVED for a LUN that does not exist"),
    k("event_reset_hard", Site::Event, false, 1, "TRANSPORT_RESET / RESET_HARD for a LUN that does (no reset done)"),
    k("event_async", Site::Event, false, 1, "ASYNC_NOTIFY nobody subscribed to"),
    k("tmf_late", Site::Tmf, false, 4, "answered 1-8 s later"),
    k("tmf_never", Site::Tmf, false, 1, "not answered until the device is reset"),
    k("tmf_wrong", Site::Tmf, false, 4, "FUNCTION_REJECTED, FAILURE, FUNCTION_SUCCEEDED or an undefined answer"),
    k("tmf_twice", Site::Tmf, false, 1, "answered twice (the control queue breaks)"),
];

/// What the device does for a lie.
#[derive(Clone, Debug, PartialEq)]
pub enum Lie {
    /// A one-shot fault rule for this command (`abortable` for holds).
    Rule(Fault, bool),
    /// Complete without notifying the driver.
    NoNotify,
    /// Events to queue: (type, LUN bytes, reason, droppable).
    Events(Vec<(u32, [u8; 8], u32, bool)>),
}

/// A generator of lies: one per LUN, one for the TMFs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Stream {
    Lun(u8, u16),
    Tmf,
}

impl core::fmt::Display for Stream {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Stream::Lun(t, l) => write!(f, "{t}:{l}"),
            Stream::Tmf => f.write_str("tmf"),
        }
    }
}

/// A stream's generator and the lies it drew.
struct StreamState {
    rng: Rng,
    drawn: u64,
}

pub struct Fuzz {
    pub seed: u64,
    streams: BTreeMap<Stream, StreamState>,
    pub on: bool,
    /// Lies per 1000 commands, and per 1000 TMFs.
    pub rate: u32,
    pub tmf_rate: u32,
    pub weights: Vec<u32>,
    /// LUNs that may be told hard lies.
    pub hard: Vec<(u8, u16)>,
    /// Lies to tell at most; None: no limit.
    pub budget: Option<u64>,
    /// Lies told.
    pub seq: u64,
    /// Replay: tell only the lies of these names.
    pub only: Option<BTreeSet<String>>,
    /// The names of the lies told (a shrinker's first list).
    pub told: Vec<String>,
    pub cmds: u64,
    pub tmfs: u64,
    pub counts: Vec<u64>,
    /// FNV-1a over every lie's log text: equal digests, equal lie sequences.
    pub digest: u64,
    /// The last RECENT lies' log lines (for a test's report).
    pub recent: VecDeque<String>,
    pub log: bool,
}

const RECENT: usize = 16;

impl Fuzz {
    pub fn new(seed: u64) -> Self {
        Fuzz {
            seed,
            streams: BTreeMap::new(),
            on: true,
            rate: 20,
            tmf_rate: 250,
            weights: KINDS.iter().map(|k| k.weight).collect(),
            hard: Vec::new(),
            budget: None,
            seq: 0,
            only: None,
            told: Vec::new(),
            cmds: 0,
            tmfs: 0,
            counts: vec![0; KINDS.len()],
            digest: 0xcbf2_9ce4_8422_2325,
            recent: VecDeque::new(),
            log: true,
        }
    }

    fn spent(&self) -> bool {
        !self.on || self.budget.map_or(false, |b| self.seq >= b)
    }

    /// Whether to lie about this command to LUN t:l, and how. `luns`: the
    /// LUNs that exist (events name others).
    pub fn on_cmd(&mut self, t: u8, l: u16, luns: &[(u8, u16)]) -> Option<Drawn> {
        self.cmds += 1;
        let hard = self.hard.contains(&(t, l));
        self.decide(
            Stream::Lun(t, l),
            self.rate,
            &[Site::Cmd, Site::Event],
            hard,
            luns,
        )
    }

    /// Whether to lie about this TMF, and how.
    pub fn on_tmf(&mut self) -> Option<Drawn> {
        self.tmfs += 1;
        self.decide(Stream::Tmf, self.tmf_rate, &[Site::Tmf], false, &[])
    }

    /// From `stream`'s generator: a lie at `rate` per 1000, its kind among
    /// `sites` and its parameters; named, and kept unless a replay leaves
    /// it out.
    fn decide(
        &mut self,
        stream: Stream,
        rate: u32,
        sites: &[Site],
        hard: bool,
        luns: &[(u8, u16)],
    ) -> Option<Drawn> {
        if self.spent() {
            return None;
        }
        let seed = self.seed;
        let st = self.streams.entry(stream).or_insert_with(|| {
            let key = match stream {
                Stream::Tmf => 0,
                Stream::Lun(t, l) => 1 + ((t as u64) << 16 | l as u64),
            };
            StreamState {
                rng: Rng::new(seed ^ key.wrapping_mul(0xd1b5_4a32_d192_ed03)),
                drawn: 0,
            }
        });
        if st.rng.below(1000) >= rate as u64 {
            return None;
        }
        let i = draw(&self.weights, &mut st.rng, sites, hard)?;
        let (t, l) = match stream {
            Stream::Lun(t, l) => (t, l),
            Stream::Tmf => (0, 0),
        };
        let lie = make(&mut st.rng, i, t, l, luns);
        st.drawn += 1;
        let name = format!("{stream}#{}", st.drawn);
        match &self.only {
            Some(only) if !only.contains(&name) => None,
            _ => Some(Drawn { kind: i, name, lie }),
        }
    }
}

/// A lie drawn, to be told.
pub struct Drawn {
    /// Its kind, an index into [`KINDS`].
    pub kind: usize,
    /// "T:L#N" or "tmf#N".
    pub name: String,
    pub lie: Lie,
}

/// A kind of `sites` drawn by weight (hard ones only if `hard`).
fn draw(weights: &[u32], rng: &mut Rng, sites: &[Site], hard: bool) -> Option<usize> {
    let ok = |i: usize| sites.contains(&KINDS[i].site) && (hard || !KINDS[i].hard);
    let total: u64 = (0..KINDS.len())
        .filter(|&i| ok(i))
        .map(|i| weights[i] as u64)
        .sum();
    if total == 0 {
        return None;
    }
    let mut x = rng.below(total);
    for i in (0..KINDS.len()).filter(|&i| ok(i)) {
        let w = weights[i] as u64;
        if x < w {
            return Some(i);
        }
        x -= w;
    }
    None
}

/// The lie of kind `i` about LUN t:l, its parameters drawn.
fn make(r: &mut Rng, i: usize, t: u8, l: u16, luns: &[(u8, u16)]) -> Lie {
    use crate::device::lun_bytes;
    let rule = |f| Lie::Rule(f, true);
    match KINDS[i].name {
        "used_len_over" => rule(Fault::UsedLenOver(r.pick(&[
            1,
            7,
            512,
            4096,
            1 << 20,
            u32::MAX / 2,
        ]))),
        "used_len_short" => rule(Fault::UsedLenShort(r.range(0, 200) as u32)),
        "sense_len" => rule(Fault::SenseLen(r.pick(&[97, 200, 4096, u32::MAX]))),
        "residual" => rule(Fault::ResidualOver(r.range(1, 1 << 16) as u32)),
        "response_retry" => rule(response_or_undefined(
            r,
            &[S_OVERRUN, S_RESET, S_BUSY, S_TRANSPORT_FAILURE, S_FAILURE],
        )),
        "sense_retry" => {
            let (k, a, q) = r.pick(&[
                (6, 0x29, 0),
                (6, 0x2a, 0x09),
                (6, 0x3f, 0x0e),
                (0x0b, 0, 0),
                (2, 4, 1),
            ]);
            rule(Fault::Sense(k, a, q))
        }
        "status_busy" => rule(Fault::Status(r.pick(&[0x08, 0x28, 0x40]))),
        "status_unknown" => rule(Fault::Status(r.pick(&[0x01, 0x3e, 0x7f, 0xff]))),
        "late" => rule(Fault::Hold(Some(r.range(1, 300)))),
        "never" => rule(Fault::Hold(None)),
        "after_abort" => Lie::Rule(Fault::Hold(Some(r.range(8000, 20000))), false),
        "repeated" => rule(Fault::Stray),
        "no_notify" => Lie::NoNotify,
        "response_fail" => rule(Fault::Response(r.pick(&[
            S_BAD_TARGET,
            S_TARGET_FAILURE,
            S_INCORRECT_LUN,
            S_ABORTED,
            S_NEXUS_FAILURE,
        ]))),
        "sense_fail" => {
            let (k, a, q) = r.pick(&[(3, 0x11, 0), (4, 0, 0), (5, 0x24, 0), (7, 0x27, 0)]);
            rule(Fault::Sense(k, a, q))
        }
        "status_fail" => rule(Fault::Status(0x18)),
        "read16_data" => rule(Fault::BadData(r.next() as u32)),
        "event_flood" => {
            let n = r.range(1, 100) as usize;
            Lie::Events(vec![
                (
                    T_PARAM_CHANGE,
                    lun_bytes(t, l),
                    0x2a | 0x09 << 8,
                    true
                );
                n
            ])
        }
        "event_missed_storm" => {
            let n = r.range(1, 40) as usize;
            Lie::Events(vec![(T_EVENTS_MISSED, [0; 8], 0, true); n])
        }
        "event_unknown" => {
            let any = r.next() as u32 & 0x7fff_ffff;
            let ty = r.pick(&[4, 5, 0x7fff_ffff, 0x8000_0007, any]);
            Lie::Events(vec![(ty, lun_bytes(t, l), r.next() as u32, false)])
        }
        "event_bad_lun" => {
            let mut b = (r.next()).to_le_bytes();
            if b[0] == 1 {
                b[0] = 0;
            }
            let b = r.pick(&[
                b,
                [1, t, 0x80 | b[2], b[3], 0, 0, 0, 0],
                [1, t, 0xc0, 0, 0, 0, 0, 0],
            ]);
            Lie::Events(vec![(T_TRANSPORT_RESET, b, r.range(0, 2) as u32, false)])
        }
        "event_no_such_lun" => {
            let (mut et, mut el) = (r.range(0, 3) as u8, r.range(0, 16383) as u16);
            while luns.contains(&(et, el)) {
                el = (el + 1) % 16384;
                et = et.wrapping_add((el == 0) as u8);
            }
            Lie::Events(vec![(
                T_TRANSPORT_RESET,
                lun_bytes(et, el),
                r.range(1, 2) as u32,
                false,
            )])
        }
        "event_reset_hard" => Lie::Events(vec![(T_TRANSPORT_RESET, lun_bytes(t, l), 0, false)]),
        "event_async" => Lie::Events(vec![(
            T_ASYNC_NOTIFY,
            lun_bytes(t, l),
            1 << r.range(1, 7),
            false,
        )]),
        "tmf_late" => Lie::Rule(Fault::Hold(Some(r.range(1000, 8000))), false),
        "tmf_never" => Lie::Rule(Fault::Hold(None), false),
        "tmf_wrong" => rule(response_or_undefined(
            r,
            &[S_FUNCTION_REJECTED, S_FAILURE, S_FUNCTION_SUCCEEDED],
        )),
        "tmf_twice" => rule(Fault::Stray),
        o => unreachable!("kind {o}"),
    }
}

impl Fuzz {
    /// Counts and logs a lie told about `what`.
    pub fn told(&mut self, d: &Drawn, what: &str) {
        let i = d.kind;
        self.seq += 1;
        self.counts[i] += 1;
        self.told.push(d.name.clone());
        let line = format!(
            "fuzz seed={} seq={} lie={} cmd={} tmf={} {} {what} {}",
            self.seed,
            self.seq,
            d.name,
            self.cmds,
            self.tmfs,
            KINDS[i].name,
            brief(&d.lie)
        );
        for b in line.bytes() {
            self.digest = (self.digest ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
        if self.log {
            eprintln!("testdev: {line}");
        }
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(line);
    }

    pub fn status(&self) -> Value {
        let counts: Map<String, Value> = KINDS
            .iter()
            .zip(&self.counts)
            .map(|(k, n)| (k.name.to_string(), json!(n)))
            .collect();
        // Only the weights changed from the defaults: with the seed and
        // the rates, what it takes to tell the same lies again.
        let weights: Map<String, Value> = KINDS
            .iter()
            .zip(&self.weights)
            .filter(|(k, w)| k.weight != **w)
            .map(|(k, w)| (k.name.to_string(), json!(w)))
            .collect();
        json!({
            "seed": self.seed, "weights": weights, "on": self.on, "rate": self.rate, "tmf_rate": self.tmf_rate,
            "budget": self.budget, "lies": self.seq, "cmds": self.cmds, "tmfs": self.tmfs,
            "only": self.only,
            "hard": self.hard.iter().map(|(t, l)| format!("{t}:{l}")).collect::<Vec<_>>(),
            "counts": counts, "digest": format!("{:016x}", self.digest),
            "recent": self.recent,
        })
    }

    /// The names of the lies told so far.
    pub fn told_list(&self) -> Value {
        json!(self.told)
    }

    /// Settings from a control command or the command line: "seed" (starts
    /// over: counters zeroed), "on", "rate", "tmf_rate", "budget" (0: none),
    /// "hard" (["T:L", ...]), "weights" ({"kind": w, ...}), "only" (["T:L#N"
    /// or "tmf#N", ...]: a replay telling only those lies; null: all).
    pub fn configure(&mut self, v: &Value) -> Result<(), String> {
        if let Some(s) = v.get("seed") {
            let s = s.as_u64().ok_or("bad seed")?;
            let keep = (
                self.rate,
                self.tmf_rate,
                self.weights.clone(),
                self.hard.clone(),
                self.budget,
                self.log,
            );
            *self = Fuzz::new(s);
            (
                self.rate,
                self.tmf_rate,
                self.weights,
                self.hard,
                self.budget,
                self.log,
            ) = keep;
        }
        if let Some(b) = v.get("on") {
            self.on = b.as_bool().ok_or("bad on")?;
        }
        let num = |k: &str| v.get(k).map(|x| x.as_u64().ok_or(format!("bad {k}")));
        if let Some(r) = num("rate") {
            self.rate = r?.min(1000) as u32;
        }
        if let Some(r) = num("tmf_rate") {
            self.tmf_rate = r?.min(1000) as u32;
        }
        if let Some(b) = num("budget") {
            self.budget = Some(b?).filter(|&b| b > 0);
        }
        if let Some(h) = v.get("hard") {
            let h = h.as_array().ok_or("hard: a list of \"T:L\"")?;
            self.hard = h
                .iter()
                .map(|x| x.as_str().and_then(parse_tl).ok_or(format!("bad LUN {x}")))
                .collect::<Result<_, _>>()?;
        }
        if let Some(o) = v.get("only") {
            self.only = match o {
                Value::Null => None,
                o => Some(
                    o.as_array()
                        .ok_or("only: a list of lie names")?
                        .iter()
                        .map(|x| {
                            x.as_str()
                                .filter(|n| n.contains('#'))
                                .map(str::to_string)
                                .ok_or(format!("bad lie name {x}"))
                        })
                        .collect::<Result<_, _>>()?,
                ),
            };
        }
        if let Some(w) = v.get("weights") {
            let w = w.as_object().ok_or("weights: an object")?;
            for (name, x) in w {
                let i = KINDS
                    .iter()
                    .position(|k| k.name == name)
                    .ok_or(format!("no lie kind {name}"))?;
                self.weights[i] = x.as_u64().ok_or(format!("bad weight of {name}"))? as u32;
            }
        }
        Ok(())
    }
}

/// A response code: one of `codes` or, as often as each, an undefined one.
fn response_or_undefined(r: &mut Rng, codes: &[u8]) -> Fault {
    let undefined = r.range(13, 255) as u8;
    let i = r.below(codes.len() as u64 + 1) as usize;
    Fault::Response(codes.get(i).copied().unwrap_or(undefined))
}

/// "T:L" as (target, LUN).
pub fn parse_tl(s: &str) -> Option<(u8, u16)> {
    let (t, l) = s.split_once(':')?;
    Some((t.parse().ok()?, l.parse().ok()?))
}

/// A lie's parameters, for the log.
fn brief(lie: &Lie) -> String {
    match lie {
        Lie::Rule(f, abortable) => format!("{f:?}{}", if *abortable { "" } else { " unabortable" }),
        Lie::NoNotify => "NoNotify".into(),
        Lie::Events(v) => format!(
            "{} x event {:#x} lun {:02x?} reason {:#x}",
            v.len(),
            v[0].0,
            v[0].1,
            v[0].2
        ),
    }
}

/// Command-line settings: "kind=w,kind=w" as a weights object.
pub fn weights_arg(s: &str) -> Result<Value, String> {
    let mut m = Map::new();
    for kv in s.split(',').filter(|x| !x.is_empty()) {
        let (k, w) = kv.split_once('=').ok_or(format!("bad weight {kv}"))?;
        m.insert(
            k.into(),
            json!(w.parse::<u64>().map_err(|_| format!("bad weight {kv}"))?),
        );
    }
    Ok(Value::Object(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_seeded() {
        let (mut a, mut b, mut c) = (Rng::new(7), Rng::new(7), Rng::new(8));
        let va: Vec<u64> = (0..8).map(|_| a.next()).collect();
        assert_eq!(va, (0..8).map(|_| b.next()).collect::<Vec<_>>());
        assert_ne!(va, (0..8).map(|_| c.next()).collect::<Vec<_>>());
        assert!((0..1000).all(|_| a.range(3, 5) >= 3 && a.range(3, 5) <= 5));
    }

    #[test]
    fn weights_are_respected() {
        let mut f = Fuzz::new(1);
        f.log = false;
        f.rate = 1000;
        f.configure(&json!({"hard": ["0:1"]})).unwrap();
        let n = 200_000;
        for _ in 0..n {
            if let Some(d) = f.on_cmd(0, 1, &[(0, 0), (0, 1)]) {
                f.told(&d, "");
            }
        }
        let total: u64 = KINDS
            .iter()
            .enumerate()
            .filter(|(_, k)| k.site != Site::Tmf)
            .map(|(i, _)| f.weights[i] as u64)
            .sum();
        for (i, k) in KINDS
            .iter()
            .enumerate()
            .filter(|(_, k)| k.site != Site::Tmf)
        {
            let want = n as f64 * k.weight as f64 / total as f64;
            let got = f.counts[i] as f64;
            assert!(
                (got - want).abs() < 5.0 * want.sqrt() + 1.0,
                "{}: {got} vs {want}",
                k.name
            );
        }
        // Hard lies only for the LUNs named; rate 0: none.
        let mut f = Fuzz::new(1);
        f.log = false;
        f.rate = 1000;
        for _ in 0..10_000 {
            let i = f.on_cmd(0, 0, &[]).unwrap().kind;
            assert!(!KINDS[i].hard, "{}", KINDS[i].name);
        }
        f.rate = 0;
        assert!((0..10_000).all(|_| f.on_cmd(0, 0, &[]).is_none()));
    }

    /// The lies a run of `n` commands tells: (name, log line). Commands go
    /// to 0:0 and 0:1 in turn (0:1 first with `swap`), a TMF after every
    /// 50th.
    fn lies_told(f: &mut Fuzz, n: u64, swap: u64) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for c in 0..n {
            let cmd = f.on_cmd(0, (c % 2 ^ swap) as u16, &[(0, 0), (0, 1)]);
            let tmf = if c % 50 == 49 { f.on_tmf() } else { None };
            for d in cmd.into_iter().chain(tmf) {
                f.told(&d, "");
                out.push((d.name, f.recent.back().unwrap().clone()));
            }
        }
        out
    }

    /// The lies' names and kinds (a log line without its counters).
    fn named(lies: &[(String, String)]) -> Vec<String> {
        let mut v: Vec<String> = lies
            .iter()
            .map(|(n, line)| format!("{n} {}", line.split(' ').nth(6).unwrap()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn replay_tells_only_the_lies_listed() {
        let set = json!({"seed": 5, "rate": 100, "hard": ["0:1"]});
        let mut f = Fuzz::new(0);
        f.log = false;
        f.configure(&set).unwrap();
        let all = lies_told(&mut f, 20_000, 0);
        assert_eq!(f.told, all.iter().map(|l| l.0.clone()).collect::<Vec<_>>());
        // Every third lie, and the last: told as in the first run, word for
        // word; no other.
        let keep: Vec<String> = all
            .iter()
            .enumerate()
            .filter(|(k, _)| k % 3 == 0 || *k == all.len() - 1)
            .map(|(_, l)| l.0.clone())
            .collect();
        let mut g = Fuzz::new(0);
        g.log = false;
        g.configure(&set).unwrap();
        g.configure(&json!({ "only": keep })).unwrap();
        let replay = lies_told(&mut g, 20_000, 0);
        assert_eq!(replay.iter().map(|l| l.0.clone()).collect::<Vec<_>>(), keep);
        let mut want = named(&all);
        want.retain(|w| keep.iter().any(|k| w.starts_with(&format!("{k} "))));
        assert_eq!(named(&replay), want);
        // null: all again.
        g.configure(&json!({"only": null})).unwrap();
        assert!(g.only.is_none());
        assert!(g.configure(&json!({"only": ["0:1#1", 3]})).is_err());
    }

    #[test]
    fn each_lun_and_the_tmfs_draw_their_own_lies() {
        // The same commands per LUN and the same TMFs, interleaved
        // otherwise: the same lies by name and kind.
        let set = json!({"seed": 9, "rate": 100, "hard": ["0:1"]});
        let run = |swap| {
            let mut f = Fuzz::new(0);
            f.log = false;
            f.configure(&set).unwrap();
            named(&lies_told(&mut f, 20_000, swap))
        };
        let a = run(0);
        assert!(a.len() > 1000);
        assert_eq!(a, run(1));
    }

    #[test]
    fn rate_and_budget() {
        let mut f = Fuzz::new(99);
        f.log = false;
        let mut lies = 0;
        for _ in 0..100_000 {
            if let Some(d) = f.on_cmd(0, 0, &[]) {
                f.told(&d, "");
                lies += 1;
            }
        }
        assert!(
            (1700..2300).contains(&lies),
            "{lies} lies per 100000 at 20/1000"
        );
        f.configure(&json!({"budget": lies + 5})).unwrap();
        for _ in 0..10_000 {
            if let Some(d) = f.on_cmd(0, 0, &[]) {
                f.told(&d, "");
            }
        }
        assert_eq!(f.seq, lies + 5);
        assert!(f.configure(&json!({"weights": {"nonsense": 1}})).is_err());
    }
}
