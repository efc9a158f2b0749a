// SPDX-License-Identifier: GPL-2.0

//! Everything the device hands back, from arbitrary bytes, through every
//! decoder, with the promises the driver relies on checked (host only: the
//! module does not build this file). One harness, two drivers: the
//! coverage-guided fuzzer in `fuzz/` (`make fuzz`, nightly Rust) and a
//! pseudo-random run in `cargo test` (`tests` below, stable Rust).
//!
//! A panic here is a finding: a decoder that panics would take the guest
//! down, and a broken promise would let a lying device reach the midlayer
//! with out-of-bounds lengths or the wrong LUN.

use crate::protocol::cmd::{
    decode_cmd_resp, encode_lun, host_byte, is_good, Outcome, GOOD, RESP_HEADER_SIZE,
};
use crate::protocol::config::{
    Config, Fixup, Limits, RawConfig, CMD_PER_LUN_LIMIT, EVENT_INFO_MAX, EVENT_INFO_MIN,
    MAX_LUN_LIMIT, MAX_TARGET_LIMIT, SEG_MAX_LIMIT,
};
use crate::protocol::ctrl::{decode_an_resp, decode_tmf_resp, TmfAnswer};
use crate::protocol::event::{decode_event, Event};
use crate::protocol::wire::{CMD_RESP_SIZE, EVENT_SIZE, SENSE_SIZE};

/// Takes fields off the input; zeroes once it runs out, so every input
/// reaches every decoder. Numbers are drawn near the bounds the decoders
/// check more often than plain bytes would land there: a selector byte picks
/// a small value, a bound give or take one, or raw bytes.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        let n = N.min(self.0.len());
        b[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        b
    }
    fn u8(&mut self) -> u8 {
        self.bytes::<1>()[0]
    }
    /// A number for a field the decoders bound by `bound`.
    fn num(&mut self, bound: u32) -> u32 {
        let sel = self.u8();
        match sel % 4 {
            0 => u32::from(sel >> 2),
            1 => bound.wrapping_add(u32::from(sel >> 2) % 3).wrapping_sub(1),
            2 => u32::from(u16::from_le_bytes(self.bytes())),
            _ => u32::from_le_bytes(self.bytes()),
        }
    }
    /// A byte that is usually one of `likely`.
    fn pick(&mut self, likely: &[u8]) -> u8 {
        let sel = self.u8();
        if sel & 1 == 0 {
            likely[usize::from(sel >> 1) % likely.len()]
        } else {
            self.u8()
        }
    }
}

/// Runs `data` through every decoder of device answers.
pub fn device_answers(data: &[u8]) {
    let mut input = Input(data);
    cmd_resp(&mut input);
    tmf_resp(&mut input);
    an_resp(&mut input);
    event(&mut input);
    config(&mut input);
}

/// A command's response: what `Done` carries stays within the buffers the
/// driver gave, and anything else is an error for that command only.
fn cmd_resp(input: &mut Input<'_>) {
    let transfer_len = input.num(1 << 20);
    let pi_len = input.num(64);
    let max = (CMD_RESP_SIZE as u32)
        .wrapping_add(transfer_len)
        .wrapping_add(pi_len);
    let near = if input.u8() & 1 == 0 {
        max
    } else {
        RESP_HEADER_SIZE as u32
    };
    let used_len = input.num(near);
    let mut resp = [0u8; RESP_HEADER_SIZE];
    resp[0..4].copy_from_slice(&input.num(SENSE_SIZE as u32).to_le_bytes());
    resp[4..8].copy_from_slice(&input.num(transfer_len).to_le_bytes());
    resp[10] = input.u8();
    resp[11] = input.pick(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
    let outcome = decode_cmd_resp(&resp, used_len, transfer_len, pi_len);
    let result = outcome.scsi_result();
    // The driver's short path for good answers decides as the decoding does.
    if is_good(&resp, used_len, transfer_len) {
        assert_eq!(outcome, GOOD);
    }
    match outcome {
        Outcome::Done {
            sense_len, resid, ..
        } => {
            assert!(used_len as usize >= RESP_HEADER_SIZE);
            assert!(
                u64::from(used_len)
                    <= CMD_RESP_SIZE as u64 + u64::from(transfer_len) + u64::from(pi_len)
            );
            assert!(sense_len <= SENSE_SIZE, "sense_len {sense_len}");
            assert!(resid <= transfer_len, "resid {resid} > {transfer_len}");
            assert_eq!(
                u32::from_le_bytes([resp[0], resp[1], resp[2], resp[3]]) as usize,
                sense_len
            );
            assert!(
                [
                    host_byte::DID_OK,
                    host_byte::DID_BUS_BUSY,
                    host_byte::DID_BAD_TARGET,
                    host_byte::DID_ABORT,
                    host_byte::DID_ERROR,
                    host_byte::DID_RESET,
                    host_byte::DID_TRANSPORT_DISRUPTED,
                ]
                .contains(&((result >> 16) as u8)),
                "result {result:#x}"
            );
        }
        Outcome::Invalid(_) => assert_eq!(result, u32::from(host_byte::DID_ERROR) << 16),
    }
    assert_eq!(result >> 24, 0, "result {result:#x}");
}

/// A TMF answer counts as done only when the device wrote one saying so.
fn tmf_resp(input: &mut Input<'_>) {
    let len = usize::from(input.u8() % 4);
    let resp: [u8; 3] = input.bytes();
    let used_len = input.num(1);
    let answer = decode_tmf_resp(&resp[..len], used_len);
    if answer.done() {
        assert!(len >= 1 && used_len >= 1);
        assert!(resp[0] == 0 || resp[0] == 10, "done with code {}", resp[0]);
    }
    if len == 0 || used_len == 0 {
        assert_eq!(answer, TmfAnswer::Short);
    }
}

/// An AN answer grants nothing the driver did not ask for.
fn an_resp(input: &mut Input<'_>) {
    let len = usize::from(input.u8() % 8);
    let resp: [u8; 7] = input.bytes();
    let (used_len, requested) = (input.num(5), input.num(1 << 4));
    if let Some(granted) = decode_an_resp(&resp[..len], used_len, requested) {
        assert_eq!(granted & !requested, 0);
        assert!(len >= 5 && used_len >= 5 && resp[4] == 0);
    }
}

/// QEMU's reading of an 8-byte LUN field (`virtio_scsi_get_lun`): target in
/// byte 1, LUN in the low 14 bits of bytes 2-3.
fn device_lun(l: &[u8; 8]) -> (u8, u16) {
    (l[1], u16::from_be_bytes([l[2], l[3]]) & 0x3fff)
}

/// An event names a LUN the driver then addresses: the one the device
/// meant, by the device's own reading of the field.
fn event(input: &mut Input<'_>) {
    let len = usize::from(input.pick(&[EVENT_SIZE as u8, EVENT_SIZE as u8 + 1])) % (EVENT_SIZE + 2);
    let used_len = input.num(EVENT_SIZE as u32);
    let mut buf = [0u8; EVENT_SIZE + 1];
    buf[0] = input.pick(&[0, 1, 2, 3]);
    buf[3] = input.pick(&[0, 0x80]);
    buf[4] = input.pick(&[1]);
    buf[5] = input.u8();
    buf[6] = input.pick(&[0x00, 0x40, 0x41, 0x7f, 0x80]);
    buf[7] = input.u8();
    for b in &mut buf[8..12] {
        *b = input.pick(&[0]);
    }
    buf[12..16].copy_from_slice(&input.num(3).to_le_bytes());
    let (ev, missed) = decode_event(&buf[..len], used_len);
    if len < EVENT_SIZE || (used_len as usize) < EVENT_SIZE {
        assert!(ev.is_err() && !missed);
        return;
    }
    assert_eq!(missed, buf[3] & 0x80 != 0);
    let (target, lun) = match ev {
        Ok(Event::TransportReset { target, lun, .. })
        | Ok(Event::AsyncNotify { target, lun, .. })
        | Ok(Event::ParamChange { target, lun, .. }) => (target, lun),
        Ok(Event::None) | Err(_) => return,
    };
    let mut field = [0u8; 8];
    field.copy_from_slice(&buf[4..12]);
    let ours = encode_lun(target.into(), lun.into()).expect("a decoded LUN is addressable");
    assert_eq!(device_lun(&ours), device_lun(&field), "event LUN {field:?}");
}

/// Whatever the config space says, the driver runs within bounds, and a
/// field it did not report correcting is used as the device gave it.
fn config(input: &mut Input<'_>) {
    let info_bound = if input.u8() & 1 == 0 {
        EVENT_INFO_MIN
    } else {
        EVENT_INFO_MAX
    };
    let raw = RawConfig {
        num_queues: input.num(4),
        seg_max: input.num(SEG_MAX_LIMIT),
        max_sectors: input.num(0),
        cmd_per_lun: input.num(CMD_PER_LUN_LIMIT),
        event_info_size: input.num(info_bound),
        max_channel: input.num(0) as u16,
        max_target: input.num(MAX_TARGET_LIMIT.into()) as u16,
        max_lun: input.num(MAX_LUN_LIMIT),
    };
    let limits = Limits {
        possible_queues: input.num(4),
        poll_queues: input.num(2),
    };
    let mut fixed = [""; 16];
    let mut n = 0;
    let c: Config = raw.validate(limits, |f| {
        let (Fixup::Zero { field, .. }
        | Fixup::TooLarge { field, .. }
        | Fixup::TooSmall { field, .. }) = f;
        assert!(n < fixed.len(), "more fixups than fields");
        fixed[n] = field;
        n += 1;
    });
    assert!(c.req_queues >= 1 && c.req_queues <= limits.possible_queues.max(1));
    assert!(c.poll_queues < c.req_queues);
    assert!((1..=SEG_MAX_LIMIT).contains(&c.seg_max));
    assert!(c.max_sectors >= 1);
    assert!((1..=CMD_PER_LUN_LIMIT).contains(&c.cmd_per_lun));
    assert!((EVENT_INFO_MIN..=EVENT_INFO_MAX).contains(&c.event_info_size));
    assert!(c.max_target <= MAX_TARGET_LIMIT);
    assert!(c.max_lun <= MAX_LUN_LIMIT);
    for (name, used, given) in [
        ("seg_max", c.seg_max, raw.seg_max),
        ("max_sectors", c.max_sectors, raw.max_sectors),
        ("cmd_per_lun", c.cmd_per_lun, raw.cmd_per_lun),
        ("event_info_size", c.event_info_size, raw.event_info_size),
        ("max_target", c.max_target.into(), raw.max_target.into()),
        ("max_lun", c.max_lun, raw.max_lun),
    ] {
        if !fixed[..n].contains(&name) {
            assert_eq!(used, given, "{name} changed without a report");
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::device_answers;
    use std::vec::Vec;

    /// xorshift64*: reproducible inputs without a crate.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Pseudo-random inputs, biased towards the values decoders get wrong
    /// (0, 1, all ones, the sizes of the structures), of every length up to
    /// a little more than the harness reads.
    #[test]
    fn device_answers_from_random_bytes() {
        const SPECIAL: [u8; 8] = [0, 1, 0xff, 0x7f, 0x80, 12, 16, 108];
        let mut state: u64 = 0x5eed_0f5c_5150_0001;
        let mut buf = Vec::new();
        for _ in 0..200_000 {
            let len = (next(&mut state) % 256) as usize;
            buf.clear();
            for _ in 0..len {
                let r = next(&mut state);
                buf.push(if r % 4 == 0 {
                    SPECIAL[(r >> 8) as usize % SPECIAL.len()]
                } else {
                    (r >> 16) as u8
                });
            }
            device_answers(&buf);
        }
    }
}
