// SPDX-License-Identifier: GPL-2.0

//! Commands on the request queues (virtio spec 5.6.6.1): encoding the request
//! header, decoding and checking the response the device wrote.
//!
//! Multi-byte fields are little-endian, whatever the guest's byte order
//! (virtio 1.0+). A legacy device uses the guest's own order instead: the
//! same on the little-endian guests Rust-for-Linux builds for (x86_64, arm64
//! and the others); probe refuses a legacy device on a big-endian one.

use super::wire::{CDB_SIZE, CMD_REQ_PI_SIZE, CMD_REQ_SIZE, CMD_RESP_SIZE, SENSE_SIZE};
use core::fmt;

/// The 8-byte LUN field for `target` and the midlayer's LUN number `lun`:
/// single-level, flat space addressing (byte 2 carries 0x40), as QEMU and the
/// C driver use. LUNs >= 256 arrive from REPORT LUNS as 0x4000 | n and encode
/// the same way. `None` when the pair cannot be addressed.
pub fn encode_lun(target: u32, lun: u64) -> Option<[u8; 8]> {
    if target > 255 || lun > 0x7fff {
        return None;
    }
    Some([
        1,
        target as u8,
        0x40 | ((lun >> 8) as u8 & 0x3f),
        lun as u8,
        0,
        0,
        0,
        0,
    ])
}

/// SAM task attribute (`VIRTIO_SCSI_S_SIMPLE` ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum TaskAttr {
    /// SIMPLE: no ordering constraint.
    Simple = 0,
}

/// I/O priority classes (`IOPRIO_CLASS_*`), as the block layer hands them over.
pub mod ioprio {
    /// Real time.
    pub const CLASS_RT: u16 = 1;
    /// Best effort.
    pub const CLASS_BE: u16 = 2;
    /// Idle.
    pub const CLASS_IDLE: u16 = 3;
}

/// The SAM command priority (0: none, 1 highest ... 15 lowest) for a block
/// layer I/O priority (class in bits 15..13, level in bits 2..0):
/// RT levels 0-7 -> 1-8, BE levels 0-7 -> 9-12, IDLE -> 15, none -> 0.
pub fn sam_priority(ioprio: u16) -> u8 {
    let class = ioprio >> 13;
    let level = (ioprio & 7) as u8;
    match class {
        ioprio::CLASS_RT => 1 + level,
        ioprio::CLASS_BE => 9 + level / 2,
        ioprio::CLASS_IDLE => 15,
        _ => 0,
    }
}

/// Bytes of protection information (T10 PI) a command carries, each way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PiBytes {
    /// Sent with the data out (a write).
    pub out: u32,
    /// Received with the data in (a read).
    pub inn: u32,
}

/// Where a request header is written, a field at a time: memory the device
/// reads, stored into directly (no copy of the header on the way), or an
/// array in the tests.
pub trait HeaderSink {
    /// Writes `bytes` at byte offset `OFF`.
    fn put<const OFF: usize, const M: usize>(&self, bytes: &[u8; M]);
}

/// Writes `struct virtio_scsi_cmd_req` into `out` for a command whose CDB
/// buffer is `cdb` (the command's bytes, then zeroes: the midlayer's buffer
/// is the size of the header's field and cleared before each command is
/// built); with `pi`, `struct virtio_scsi_cmd_req_pi`, whose `pi_bytesout`
/// and `pi_bytesin` come between `crn` and the CDB. Returns the header's
/// length.
#[inline(always)]
pub fn encode_cmd_req(
    out: &impl HeaderSink,
    lun: [u8; 8],
    tag: u64,
    attr: TaskAttr,
    prio: u8,
    pi: Option<PiBytes>,
    cdb: &[u8; CDB_SIZE],
) -> usize {
    use super::wire::req_offset as at;
    out.put::<{ at::LUN }, 8>(&lun);
    out.put::<{ at::TAG }, 8>(&tag.to_le_bytes());
    // task_attr, prio, crn.
    out.put::<{ at::TASK_ATTR }, 3>(&[attr as u8, prio, 0]);
    match pi {
        None => {
            out.put::<{ at::CDB }, CDB_SIZE>(cdb);
            CMD_REQ_SIZE
        }
        Some(pi) => {
            out.put::<{ at::PI_BYTESOUT }, 4>(&pi.out.to_le_bytes());
            out.put::<{ at::PI_BYTESIN }, 4>(&pi.inn.to_le_bytes());
            out.put::<{ at::CDB_PI }, CDB_SIZE>(cdb);
            CMD_REQ_PI_SIZE
        }
    }
}

/// Protection information bytes of `sectors` 512-byte sectors with
/// protection intervals of `2^interval_exp` bytes and `metadata_size` bytes
/// per interval (`bio_integrity_bytes`); 0 for a nonsensical interval.
pub fn pi_bytes(sectors: u32, interval_exp: u8, metadata_size: u8) -> u32 {
    if !(9..=31).contains(&interval_exp) {
        return 0;
    }
    (sectors >> (interval_exp - 9)).saturating_mul(u32::from(metadata_size))
}

/// Bytes of the response before the sense data: sense_len, resid,
/// status_qualifier, status, response. A device that wrote fewer did not
/// answer.
pub const RESP_HEADER_SIZE: usize = 12;

/// `VIRTIO_SCSI_S_*` response codes of a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Response {
    /// Completed; `status` holds the SCSI status.
    Ok,
    /// More data than the buffers hold.
    Overrun,
    /// Aborted by a TMF.
    Aborted,
    /// The target does not exist.
    BadTarget,
    /// Aborted by a reset.
    Reset,
    /// The device is busy; retry.
    Busy,
    /// The transport is gone for now (e.g. migration); retry elsewhere.
    TransportFailure,
    /// The target failed; do not retry.
    TargetFailure,
    /// The nexus failed (reservation conflict, ...); do not retry.
    NexusFailure,
    /// Any other failure.
    Failure,
    /// The LUN field is invalid.
    IncorrectLun,
}

impl Response {
    /// The midlayer's host byte for the response (NEXUS_FAILURE's status is
    /// the caller's): looked up, on every completion, not found by a chain
    /// of compares.
    const fn host_byte(self) -> u8 {
        use host_byte::*;
        // In the order of the variants.
        const HOST: [u8; 11] = [
            DID_OK,                  // Ok
            DID_ERROR,               // Overrun
            DID_ABORT,               // Aborted
            DID_BAD_TARGET,          // BadTarget
            DID_RESET,               // Reset
            DID_BUS_BUSY,            // Busy
            DID_TRANSPORT_DISRUPTED, // TransportFailure
            DID_BAD_TARGET,          // TargetFailure
            DID_OK,                  // NexusFailure
            DID_ERROR,               // Failure
            DID_BAD_TARGET,          // IncorrectLun
        ];
        HOST[self as usize]
    }

    fn from_wire(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Ok,
            1 => Self::Overrun,
            2 => Self::Aborted,
            3 => Self::BadTarget,
            4 => Self::Reset,
            5 => Self::Busy,
            6 => Self::TransportFailure,
            7 => Self::TargetFailure,
            8 => Self::NexusFailure,
            9 => Self::Failure,
            12 => Self::IncorrectLun,
            _ => return None,
        })
    }
}

/// Something the device got wrong in its answer to a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Violation {
    /// The used length does not even cover the response header.
    NoResponse {
        /// Used length the device reported.
        used_len: u32,
    },
    /// A used length beyond all the buffers the command gave the device.
    UsedLenTooLarge {
        /// Used length the device reported.
        used_len: u32,
        /// The command's buffers but its request header, in bytes.
        max: u64,
    },
    /// A response code the specification does not define.
    UnknownResponse(u8),
    /// A SCSI status byte SAM does not define, with response OK (the
    /// midlayer would take it to its error handler).
    UnknownStatus(u8),
    /// sense_len beyond the sense buffer.
    SenseLenTooLarge(u32),
    /// A residual beyond the transfer length.
    ResidTooLarge {
        /// Residual the device reported.
        resid: u32,
        /// Bytes the command was to transfer.
        transfer_len: u32,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NoResponse { used_len } => {
                write!(f, "used length {used_len} leaves no room for a response")
            }
            Self::UsedLenTooLarge { used_len, max } => {
                write!(
                    f,
                    "used length {used_len} exceeds the command's {max} bytes of buffers"
                )
            }
            Self::UnknownResponse(code) => write!(f, "unknown response code {code}"),
            Self::UnknownStatus(status) => write!(f, "undefined SCSI status {status:#04x}"),
            Self::SenseLenTooLarge(len) => {
                write!(
                    f,
                    "sense_len {len} exceeds the {SENSE_SIZE}-byte sense buffer"
                )
            }
            Self::ResidTooLarge {
                resid,
                transfer_len,
            } => {
                write!(
                    f,
                    "residual {resid} exceeds the transfer length {transfer_len}"
                )
            }
        }
    }
}

/// Host byte values of the SCSI midlayer (`include/scsi/scsi_status.h`;
/// userspace sees them through SG_IO, so they do not change). The module
/// checks them against the kernel's at build time.
pub mod host_byte {
    /// No error.
    pub const DID_OK: u8 = 0x00;
    /// The target cannot be reached any more (the device was shut down).
    pub const DID_NO_CONNECT: u8 = 0x01;
    /// Busy: retry.
    pub const DID_BUS_BUSY: u8 = 0x02;
    /// No such target or LUN.
    pub const DID_BAD_TARGET: u8 = 0x04;
    /// Aborted.
    pub const DID_ABORT: u8 = 0x05;
    /// Error the driver saw.
    pub const DID_ERROR: u8 = 0x07;
    /// Reset.
    pub const DID_RESET: u8 = 0x08;
    /// Transport disrupted: retry after recovery.
    pub const DID_TRANSPORT_DISRUPTED: u8 = 0x0e;
}

/// SAM status RESERVATION CONFLICT.
pub const SAM_STAT_RESERVATION_CONFLICT: u8 = 0x18;

/// The status bytes SAM defines, those now obsolete included (GOOD, CHECK
/// CONDITION, CONDITION MET, BUSY, INTERMEDIATE, INTERMEDIATE-CONDITION MET,
/// RESERVATION CONFLICT, COMMAND TERMINATED, TASK SET FULL, ACA ACTIVE, TASK
/// ABORTED): the midlayer knows each.
pub const SAM_STATUSES: [u8; 11] = [
    0x00,
    0x02,
    0x04,
    0x08,
    0x10,
    0x14,
    SAM_STAT_RESERVATION_CONFLICT,
    0x22,
    0x28,
    0x30,
    0x40,
];

/// [`SAM_STATUSES`] as a bit set, bit `s / 2` for status `s` (each is even
/// and below 0x80), so that checking a status on every completion is a
/// shift and a test, not a search.
const SAM_STATUS_SET: u64 = {
    let mut set = 0u64;
    let mut i = 0;
    while i < SAM_STATUSES.len() {
        assert!(SAM_STATUSES[i] & 0x81 == 0);
        set |= 1 << (SAM_STATUSES[i] >> 1);
        i += 1;
    }
    set
};

/// Whether SAM defines the status byte `status` (one of [`SAM_STATUSES`]).
pub const fn is_sam_status(status: u8) -> bool {
    status & 0x81 == 0 && (SAM_STATUS_SET >> (status >> 1)) & 1 != 0
}

/// What the driver makes of the device's answer to one command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A well-formed answer.
    Done {
        /// The response code.
        response: Response,
        /// SCSI status byte.
        status: u8,
        /// Valid bytes at the start of the sense buffer (<= 96).
        sense_len: usize,
        /// Bytes not transferred (<= the transfer length).
        resid: u32,
    },
    /// A malformed answer: the command fails, nothing of it is used.
    Invalid(Violation),
}

impl Outcome {
    /// The midlayer's `scsi_cmnd::result` (host byte << 16 | status byte):
    /// the C driver's mapping, with INCORRECT_LUN as BAD_TARGET (the C driver
    /// logs it as unknown) and any malformed answer as DID_ERROR.
    #[inline]
    pub const fn scsi_result(&self) -> u32 {
        use host_byte::*;
        let (host, status) = match *self {
            Outcome::Invalid(_) => (DID_ERROR, 0),
            Outcome::Done {
                response: Response::NexusFailure,
                ..
            } => (DID_OK, SAM_STAT_RESERVATION_CONFLICT),
            Outcome::Done {
                response, status, ..
            } => (response.host_byte(), status),
        };
        (host as u32) << 16 | status as u32
    }
}

/// Decodes the header of `struct virtio_scsi_cmd_resp` (its first
/// [`RESP_HEADER_SIZE`] bytes) as the device left it; the sense bytes after
/// it, `sense_len` of them when the answer is `Done`, are the caller's to
/// read.
///
/// `used_len` is what the device reported writing, `transfer_len` the bytes
/// the command was to move and `pi_len` its protection information bytes.
/// The used length must cover the response header and must not exceed every
/// buffer of the command but the request header: QEMU reports the response
/// plus the data buffers whichever way the data went (for a WRITE, bytes it
/// read, not wrote), so a tighter bound would fail good writes. A `Done`
/// answer's `sense_len` fits the fixed-size response whatever the device
/// says.
pub fn decode_cmd_resp(
    resp: &[u8; RESP_HEADER_SIZE],
    used_len: u32,
    transfer_len: u32,
    pi_len: u32,
) -> Outcome {
    if (used_len as usize) < RESP_HEADER_SIZE {
        return Outcome::Invalid(Violation::NoResponse { used_len });
    }
    let max = CMD_RESP_SIZE as u64 + u64::from(transfer_len) + u64::from(pi_len);
    if u64::from(used_len) > max {
        return Outcome::Invalid(Violation::UsedLenTooLarge { used_len, max });
    }
    let le32 = |at: usize| u32::from_le_bytes([resp[at], resp[at + 1], resp[at + 2], resp[at + 3]]);
    let (sense_len, resid, status, code) = (le32(0), le32(4), resp[10], resp[11]);
    let Some(response) = Response::from_wire(code) else {
        return Outcome::Invalid(Violation::UnknownResponse(code));
    };
    if sense_len as usize > SENSE_SIZE {
        return Outcome::Invalid(Violation::SenseLenTooLarge(sense_len));
    }
    if resid > transfer_len {
        return Outcome::Invalid(Violation::ResidTooLarge {
            resid,
            transfer_len,
        });
    }
    // Failed as a violation, the command is retried; passed on, a status
    // the midlayer does not know sends it to the error handler, whose own
    // commands a second lie can make fail.
    if response == Response::Ok && !is_sam_status(status) {
        return Outcome::Invalid(Violation::UnknownStatus(status));
    }
    Outcome::Done {
        response,
        status,
        sense_len: sense_len as usize,
        resid,
    }
}

/// The outcome of a command that went well with nothing more to say:
/// response OK, status GOOD, no sense data, no residual.
pub const GOOD: Outcome = Outcome::Done {
    response: Response::Ok,
    status: 0,
    sense_len: 0,
    resid: 0,
};

/// Whether [`decode_cmd_resp`] makes [`GOOD`] of `resp` for a command of
/// `transfer_len` bytes, whatever its protection information: the answer to
/// almost every command, told by three words and the used length's bounds
/// (the status qualifier is not read, as there). `false` only means that
/// the full decoding is needed.
#[inline(always)]
pub fn is_good(resp: &[u8; RESP_HEADER_SIZE], used_len: u32, transfer_len: u32) -> bool {
    let word = |at: usize| u32::from_le_bytes([resp[at], resp[at + 1], resp[at + 2], resp[at + 3]]);
    // sense_len, resid, then status and response (bytes 10 and 11).
    word(0) | word(4) | word(8) >> 16 == 0
        && used_len as usize >= RESP_HEADER_SIZE
        && u64::from(used_len) <= CMD_RESP_SIZE as u64 + u64::from(transfer_len)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn lun_encoding_matches_the_c_driver() {
        assert_eq!(encode_lun(0, 0), Some([1, 0, 0x40, 0, 0, 0, 0, 0]));
        assert_eq!(encode_lun(3, 7), Some([1, 3, 0x40, 7, 0, 0, 0, 0]));
        assert_eq!(encode_lun(255, 255), Some([1, 255, 0x40, 255, 0, 0, 0, 0]));
        // Flat LUN 300 as REPORT LUNS hands it to the midlayer: 0x4000 | 300.
        assert_eq!(
            encode_lun(0, 0x4000 | 300),
            Some([1, 0, 0x41, 44, 0, 0, 0, 0])
        );
        // The highest flat LUN.
        assert_eq!(
            encode_lun(0, 0x4000 | 16383),
            Some([1, 0, 0x7f, 0xff, 0, 0, 0, 0])
        );
        // QEMU reads the LUN back as ((lun[2] << 8) | lun[3]) & 0x3fff.
        for lun in [0u64, 1, 255, 256, 1000, 16383] {
            let l = encode_lun(1, lun | if lun > 255 { 0x4000 } else { 0 }).unwrap();
            assert_eq!(((u64::from(l[2]) << 8) | u64::from(l[3])) & 0x3fff, lun);
        }
    }

    #[test]
    fn unaddressable_luns_are_refused() {
        assert_eq!(encode_lun(256, 0), None);
        assert_eq!(encode_lun(0, 0x8000), None);
        assert_eq!(encode_lun(0, u64::MAX), None);
    }

    /// A CDB buffer as the midlayer hands it over: `cdb`, then zeroes.
    fn cdb_buf(cdb: &[u8]) -> [u8; CDB_SIZE] {
        let mut b = [0u8; CDB_SIZE];
        b[..cdb.len()].copy_from_slice(cdb);
        b
    }

    /// A request header written into an array.
    struct Header(core::cell::Cell<[u8; CMD_REQ_PI_SIZE]>);

    impl HeaderSink for Header {
        fn put<const OFF: usize, const M: usize>(&self, bytes: &[u8; M]) {
            let mut b = self.0.get();
            b[OFF..OFF + M].copy_from_slice(bytes);
            self.0.set(b);
        }
    }

    /// The header `encode_cmd_req` writes over bytes of 0xee, and its length.
    fn header(
        lun: [u8; 8],
        tag: u64,
        prio: u8,
        pi: Option<PiBytes>,
        cdb: &[u8],
    ) -> ([u8; CMD_REQ_PI_SIZE], usize) {
        let h = Header(core::cell::Cell::new([0xee; CMD_REQ_PI_SIZE]));
        let n = encode_cmd_req(&h, lun, tag, TaskAttr::Simple, prio, pi, &cdb_buf(cdb));
        (h.0.get(), n)
    }

    #[test]
    fn request_header_layout() {
        let cdb = [0x28, 0, 0, 0, 0, 8, 0, 0, 1, 0];
        let (buf, n) = header(
            [1, 2, 0x40, 3, 0, 0, 0, 0],
            0x0102_0304_0506_0708,
            5,
            None,
            &cdb,
        );
        assert_eq!(n, CMD_REQ_SIZE);
        assert_eq!(&buf[0..8], &[1, 2, 0x40, 3, 0, 0, 0, 0]);
        assert_eq!(&buf[8..16], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(buf[16..19], [0, 5, 0]);
        assert_eq!(&buf[19..29], &cdb);
        assert!(
            buf[29..n].iter().all(|&b| b == 0),
            "the rest of the CDB is zero"
        );
        assert!(
            buf[n..].iter().all(|&b| b == 0xee),
            "nothing written past the header"
        );
        let full = [0xa5; CDB_SIZE];
        assert_eq!(&header([0; 8], 0, 0, None, &full).0[19..n], &full);
    }

    #[test]
    fn pi_header_layout() {
        let cdb = [0x8a, 0x20, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 8, 0, 0];
        let lun = [1, 0, 0x40, 2, 0, 0, 0, 0];
        let (plain, _) = header(lun, 77, 3, None, &cdb);
        let (b, n) = header(lun, 77, 3, Some(PiBytes { out: 64, inn: 0 }), &cdb);
        assert_eq!(n, CMD_REQ_PI_SIZE);
        // lun, tag, task_attr, prio, crn as in the plain header.
        assert_eq!(&b[..19], &plain[..19]);
        assert_eq!(&b[19..23], &[64, 0, 0, 0], "pi_bytesout");
        assert_eq!(&b[23..27], &[0, 0, 0, 0], "pi_bytesin");
        assert_eq!(&b[27..27 + cdb.len()], &cdb);
        assert!(b[27 + cdb.len()..].iter().all(|&x| x == 0));
        let pi = PiBytes {
            out: 0,
            inn: 0x0102_0304,
        };
        assert_eq!(&header(lun, 77, 3, Some(pi), &cdb).0[23..27], &[4, 3, 2, 1]);
    }

    #[test]
    fn pi_byte_counts() {
        // DIF type 1 on 512-byte blocks: 8 bytes per sector.
        assert_eq!(pi_bytes(8, 9, 8), 64);
        // 4 KiB protection intervals: 8 bytes per 8 sectors.
        assert_eq!(pi_bytes(64, 12, 8), 64);
        assert_eq!(pi_bytes(7, 12, 8), 0, "less than one interval");
        // Larger metadata (e.g. 16-byte tuples of 64-bit guards).
        assert_eq!(pi_bytes(2, 9, 16), 32);
        // Nonsense from a corrupted profile never overflows or shifts out of range.
        assert_eq!(pi_bytes(u32::MAX, 9, 255), u32::MAX);
        assert_eq!(pi_bytes(8, 8, 8), 0);
        assert_eq!(pi_bytes(8, 40, 8), 0);
    }

    #[test]
    fn priorities() {
        assert_eq!(sam_priority(0), 0);
        assert_eq!(sam_priority(ioprio::CLASS_RT << 13), 1);
        assert_eq!(sam_priority(ioprio::CLASS_RT << 13 | 7), 8);
        assert_eq!(sam_priority(ioprio::CLASS_BE << 13 | 4), 11);
        assert_eq!(sam_priority(ioprio::CLASS_BE << 13 | 7), 12);
        assert_eq!(sam_priority(ioprio::CLASS_IDLE << 13), 15);
        assert_eq!(sam_priority(3), 0, "class none");
        assert_eq!(
            sam_priority(7 << 13),
            0,
            "undefined classes get no priority"
        );
    }

    fn resp(sense_len: u32, resid: u32, status: u8, response: u8) -> [u8; RESP_HEADER_SIZE] {
        let mut r = [0u8; RESP_HEADER_SIZE];
        r[0..4].copy_from_slice(&sense_len.to_le_bytes());
        r[4..8].copy_from_slice(&resid.to_le_bytes());
        r[10] = status;
        r[11] = response;
        r
    }

    const LEN: u32 = CMD_RESP_SIZE as u32 + 4096;

    #[test]
    fn good_responses_decode() {
        assert_eq!(
            decode_cmd_resp(&resp(0, 0, 0, 0), LEN, 4096, 0),
            Outcome::Done {
                response: Response::Ok,
                status: 0,
                sense_len: 0,
                resid: 0
            }
        );
        // CHECK CONDITION with 18 bytes of sense and a short transfer.
        assert_eq!(
            decode_cmd_resp(&resp(18, 512, 2, 0), 12, 4096, 0),
            Outcome::Done {
                response: Response::Ok,
                status: 2,
                sense_len: 18,
                resid: 512
            }
        );
        let all = [
            (0, Response::Ok),
            (1, Response::Overrun),
            (2, Response::Aborted),
            (3, Response::BadTarget),
            (4, Response::Reset),
            (5, Response::Busy),
            (6, Response::TransportFailure),
            (7, Response::TargetFailure),
            (8, Response::NexusFailure),
            (9, Response::Failure),
            (12, Response::IncorrectLun),
        ];
        for (code, response) in all {
            match decode_cmd_resp(&resp(0, 0, 0, code), LEN, 4096, 0) {
                Outcome::Done { response: r, .. } => assert_eq!(r, response),
                o => panic!("{code}: {o:?}"),
            }
        }
    }

    #[test]
    fn malformed_responses_are_rejected() {
        let ok = resp(0, 0, 0, 0);
        assert_eq!(
            decode_cmd_resp(&ok, 11, 0, 0),
            Outcome::Invalid(Violation::NoResponse { used_len: 11 })
        );
        // QEMU's used length for a WRITE counts the data it read: the bound
        // is every buffer but the request header, PI included.
        assert!(matches!(
            decode_cmd_resp(&ok, LEN + 64, 4096, 64),
            Outcome::Done { .. }
        ));
        assert_eq!(
            decode_cmd_resp(&ok, LEN + 1, 4096, 0),
            Outcome::Invalid(Violation::UsedLenTooLarge {
                used_len: LEN + 1,
                max: u64::from(LEN)
            })
        );
        assert!(matches!(
            decode_cmd_resp(&ok, u32::MAX, u32::MAX, u32::MAX),
            Outcome::Done { .. }
        ));
        assert!(matches!(
            decode_cmd_resp(&ok, u32::MAX, 0, 0),
            Outcome::Invalid(Violation::UsedLenTooLarge { .. })
        ));
        for code in [10u8, 11, 13, 0x7f, 0xff] {
            assert_eq!(
                decode_cmd_resp(&resp(0, 0, 0, code), LEN, 4096, 0),
                Outcome::Invalid(Violation::UnknownResponse(code))
            );
        }
        assert_eq!(
            decode_cmd_resp(&resp(97, 0, 2, 0), LEN, 4096, 0),
            Outcome::Invalid(Violation::SenseLenTooLarge(97))
        );
        assert_eq!(
            decode_cmd_resp(&resp(u32::MAX, 0, 2, 0), LEN, 4096, 0),
            Outcome::Invalid(Violation::SenseLenTooLarge(u32::MAX))
        );
        assert_eq!(
            decode_cmd_resp(&resp(0, 4097, 0, 0), LEN, 4096, 0),
            Outcome::Invalid(Violation::ResidTooLarge {
                resid: 4097,
                transfer_len: 4096
            })
        );
        for status in [0x01u8, 0x3e, 0x7f, 0xff] {
            assert_eq!(
                decode_cmd_resp(&resp(0, 0, status, 0), LEN, 4096, 0),
                Outcome::Invalid(Violation::UnknownStatus(status))
            );
            // With a failed response the host byte decides.
            assert!(matches!(
                decode_cmd_resp(&resp(0, 0, status, 9), LEN, 4096, 0),
                Outcome::Done { .. }
            ));
        }
        for status in 0..=u8::MAX {
            assert_eq!(is_sam_status(status), SAM_STATUSES.contains(&status));
        }
        for status in SAM_STATUSES {
            assert!(matches!(
                decode_cmd_resp(&resp(0, 0, status, 0), LEN, 4096, 0),
                Outcome::Done { .. }
            ));
        }
        // Exactly the full sense buffer and a full residual are fine.
        assert!(matches!(
            decode_cmd_resp(&resp(96, 4096, 2, 0), LEN, 4096, 0),
            Outcome::Done { .. }
        ));
    }

    #[test]
    fn the_short_path_agrees_with_the_full_decoding() {
        // Every header built from values at and around the checks' bounds,
        // with the status qualifier (not read) set and clear.
        let lens = [
            0u32,
            11,
            12,
            13,
            107,
            108,
            109,
            4095,
            4096,
            4203,
            4204,
            4205,
            4268,
            u32::MAX,
        ];
        let transfers = [0u32, 1, 4096, u32::MAX];
        let mut good = 0;
        for &sense_len in &[0u32, 1, 96, 1 << 16, 1 << 24] {
            for &resid in &[0u32, 1, 4096, 1 << 24] {
                for status in [0u8, 2, 0x18, 0x80] {
                    for response in [0u8, 1, 8, 9, 12, 0x80] {
                        for qualifier in [0u8, 0xff] {
                            let mut r = resp(sense_len, resid, status, response);
                            r[8] = qualifier;
                            r[9] = qualifier;
                            for &used_len in &lens {
                                for &transfer_len in &transfers {
                                    if !is_good(&r, used_len, transfer_len) {
                                        continue;
                                    }
                                    good += 1;
                                    for pi_len in [0, 64, u32::MAX] {
                                        assert_eq!(
                                            decode_cmd_resp(&r, used_len, transfer_len, pi_len),
                                            GOOD,
                                            "{r:?} {used_len} {transfer_len} {pi_len}"
                                        );
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(good > 0);
        // And it answers yes for the usual good completion.
        assert!(is_good(&resp(0, 0, 0, 0), LEN, 4096));
        assert!(
            is_good(&resp(0, 0, 0, 0), 12, 4096),
            "a read of nothing but the response"
        );
        assert!(
            !is_good(&resp(0, 0, 0, 0), LEN + 1, 4096),
            "beyond the buffers but PI: decoded in full"
        );
        assert!(!is_good(&resp(0, 0, 0, 0), 11, 4096));
        assert_eq!(GOOD.scsi_result(), 0);
    }

    #[test]
    fn results_for_the_midlayer() {
        let done = |response, status| Outcome::Done {
            response,
            status,
            sense_len: 0,
            resid: 0,
        };
        assert_eq!(done(Response::Ok, 0).scsi_result(), 0);
        assert_eq!(
            done(Response::Ok, 2).scsi_result(),
            2,
            "CHECK CONDITION passes through"
        );
        assert_eq!(done(Response::Overrun, 0).scsi_result(), 0x07_0000);
        assert_eq!(done(Response::Aborted, 0).scsi_result(), 0x05_0000);
        assert_eq!(done(Response::BadTarget, 0).scsi_result(), 0x04_0000);
        assert_eq!(done(Response::IncorrectLun, 0).scsi_result(), 0x04_0000);
        assert_eq!(done(Response::TargetFailure, 0).scsi_result(), 0x04_0000);
        assert_eq!(done(Response::Reset, 0).scsi_result(), 0x08_0000);
        assert_eq!(done(Response::Busy, 0).scsi_result(), 0x02_0000);
        assert_eq!(done(Response::TransportFailure, 0).scsi_result(), 0x0e_0000);
        assert_eq!(done(Response::NexusFailure, 0).scsi_result(), 0x18);
        assert_eq!(done(Response::Failure, 0).scsi_result(), 0x07_0000);
        let bad = Outcome::Invalid(Violation::UnknownResponse(99));
        assert_eq!(bad.scsi_result(), 0x07_0000);
    }

    #[test]
    fn violations_read_as_one_line() {
        let v = Violation::ResidTooLarge {
            resid: 9,
            transfer_len: 8,
        };
        assert_eq!(
            std::format!("{v}"),
            "residual 9 exceeds the transfer length 8"
        );
    }
}
