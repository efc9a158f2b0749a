// SPDX-License-Identifier: GPL-2.0

//! The control queue (virtio spec 5.6.6.2): task management functions and
//! asynchronous notification queries and subscriptions.

use super::wire::{CTRL_AN_REQ_SIZE, CTRL_AN_RESP_SIZE, CTRL_TMF_REQ_SIZE, CTRL_TMF_RESP_SIZE};
use core::fmt;

/// `VIRTIO_SCSI_T_TMF`.
const T_TMF: u32 = 0;
/// `VIRTIO_SCSI_T_AN_QUERY`.
const T_AN_QUERY: u32 = 1;
/// `VIRTIO_SCSI_T_AN_SUBSCRIBE`.
const T_AN_SUBSCRIBE: u32 = 2;

/// Task management functions the driver sends (`VIRTIO_SCSI_T_TMF_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Tmf {
    /// ABORT TASK: the command with the given tag.
    AbortTask = 0,
    /// LOGICAL UNIT RESET.
    LogicalUnitReset = 5,
    /// I_T NEXUS RESET: every LUN of the target.
    ItNexusReset = 4,
}

impl fmt::Display for Tmf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AbortTask => "ABORT TASK",
            Self::LogicalUnitReset => "LOGICAL UNIT RESET",
            Self::ItNexusReset => "I_T NEXUS RESET",
        })
    }
}

/// Bytes of the largest control request, and of the largest answer.
pub const CTRL_REQ_MAX: usize = if CTRL_TMF_REQ_SIZE > CTRL_AN_REQ_SIZE {
    CTRL_TMF_REQ_SIZE
} else {
    CTRL_AN_REQ_SIZE
};
/// See [`CTRL_REQ_MAX`]; the AN answer is the larger (8 bytes with padding
/// in the C struct, 5 on the wire: the device writes at most the 5).
pub const CTRL_RESP_MAX: usize = 8;

/// `struct virtio_scsi_ctrl_tmf_req` for `tmf` on `lun`; `tag` names the
/// command for ABORT TASK (0 otherwise).
pub fn encode_tmf_req(tmf: Tmf, lun: [u8; 8], tag: u64) -> [u8; CTRL_TMF_REQ_SIZE] {
    let mut b = [0u8; CTRL_TMF_REQ_SIZE];
    b[0..4].copy_from_slice(&T_TMF.to_le_bytes());
    b[4..8].copy_from_slice(&(tmf as u32).to_le_bytes());
    b[8..16].copy_from_slice(&lun);
    b[16..24].copy_from_slice(&tag.to_le_bytes());
    b
}

/// What the device answered to a TMF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TmfAnswer {
    /// FUNCTION COMPLETE (`VIRTIO_SCSI_S_FUNCTION_COMPLETE`, which is `_OK`).
    Complete,
    /// FUNCTION SUCCEEDED (`VIRTIO_SCSI_S_FUNCTION_SUCCEEDED`): done.
    Succeeded,
    /// FUNCTION REJECTED: the device does not do it.
    Rejected,
    /// The function failed (`VIRTIO_SCSI_S_FAILURE`).
    Failed,
    /// The LUN does not exist (`BAD_TARGET`, `INCORRECT_LUN`).
    NoSuchLun,
    /// Any other code: a device error.
    Unknown(u8),
    /// The device wrote no answer (used length 0).
    Short,
}

impl TmfAnswer {
    /// Whether the function was carried out.
    pub fn done(self) -> bool {
        matches!(self, Self::Complete | Self::Succeeded)
    }
}

impl fmt::Display for TmfAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Complete => f.write_str("function complete"),
            Self::Succeeded => f.write_str("function succeeded"),
            Self::Rejected => f.write_str("function rejected"),
            Self::Failed => f.write_str("function failed"),
            Self::NoSuchLun => f.write_str("no such LUN"),
            Self::Unknown(c) => write!(f, "unknown response code {c}"),
            Self::Short => f.write_str("no answer written"),
        }
    }
}

/// Decodes `struct virtio_scsi_ctrl_tmf_resp`; `used_len` is what the device
/// says it wrote.
pub fn decode_tmf_resp(resp: &[u8], used_len: u32) -> TmfAnswer {
    if (used_len as usize) < CTRL_TMF_RESP_SIZE || resp.is_empty() {
        return TmfAnswer::Short;
    }
    match resp[0] {
        0 => TmfAnswer::Complete,
        10 => TmfAnswer::Succeeded,
        11 => TmfAnswer::Rejected,
        9 => TmfAnswer::Failed,
        3 | 12 => TmfAnswer::NoSuchLun,
        c => TmfAnswer::Unknown(c),
    }
}

/// Asynchronous event classes (`VIRTIO_SCSI_EVT_ASYNC_*`), as a bit mask.
pub mod an_class {
    /// Media class: medium added, removed, eject request.
    pub const MEDIA_CHANGE: u32 = 1 << 4;
}

/// `struct virtio_scsi_ctrl_an_req` subscribing `lun` to the classes of
/// `events` (or only asking which are supported, with `subscribe` false).
pub fn encode_an_req(subscribe: bool, lun: [u8; 8], events: u32) -> [u8; CTRL_AN_REQ_SIZE] {
    let mut b = [0u8; CTRL_AN_REQ_SIZE];
    let t = if subscribe {
        T_AN_SUBSCRIBE
    } else {
        T_AN_QUERY
    };
    b[0..4].copy_from_slice(&t.to_le_bytes());
    b[4..12].copy_from_slice(&lun);
    b[12..16].copy_from_slice(&events.to_le_bytes());
    b
}

/// Decodes `struct virtio_scsi_ctrl_an_resp`: the classes the device will
/// report, or `None` when it did not answer OK. Classes that were not asked
/// for are dropped (a device may not add what the driver did not request).
pub fn decode_an_resp(resp: &[u8], used_len: u32, requested: u32) -> Option<u32> {
    if (used_len as usize) < CTRL_AN_RESP_SIZE || resp.len() < CTRL_AN_RESP_SIZE {
        return None;
    }
    let actual = u32::from_le_bytes([resp[0], resp[1], resp[2], resp[3]]);
    (resp[4] == 0).then_some(actual & requested)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmf_request_layout() {
        let lun = [1, 2, 0x40, 3, 0, 0, 0, 0];
        let b = encode_tmf_req(Tmf::AbortTask, lun, 0x1122_3344_5566_7788);
        assert_eq!(&b[0..4], &[0, 0, 0, 0]);
        assert_eq!(&b[4..8], &[0, 0, 0, 0]);
        assert_eq!(&b[8..16], &lun);
        assert_eq!(&b[16..24], &0x1122_3344_5566_7788u64.to_le_bytes());
        let b = encode_tmf_req(Tmf::LogicalUnitReset, lun, 0);
        assert_eq!(&b[4..8], &[5, 0, 0, 0]);
        let b = encode_tmf_req(Tmf::ItNexusReset, lun, 0);
        assert_eq!(&b[4..8], &[4, 0, 0, 0]);
    }

    #[test]
    fn tmf_answers() {
        assert_eq!(decode_tmf_resp(&[0], 1), TmfAnswer::Complete);
        assert_eq!(decode_tmf_resp(&[10], 1), TmfAnswer::Succeeded);
        assert_eq!(decode_tmf_resp(&[11], 1), TmfAnswer::Rejected);
        assert_eq!(decode_tmf_resp(&[9], 1), TmfAnswer::Failed);
        assert_eq!(decode_tmf_resp(&[3], 1), TmfAnswer::NoSuchLun);
        assert_eq!(decode_tmf_resp(&[12], 1), TmfAnswer::NoSuchLun);
        assert_eq!(decode_tmf_resp(&[200], 1), TmfAnswer::Unknown(200));
        // A device that wrote nothing did not answer, whatever the buffer holds.
        assert_eq!(decode_tmf_resp(&[0], 0), TmfAnswer::Short);
        assert_eq!(decode_tmf_resp(&[], 5), TmfAnswer::Short);
        assert!(TmfAnswer::Succeeded.done() && !TmfAnswer::Rejected.done());
    }

    #[test]
    fn an_request_and_answer() {
        let lun = [1, 0, 0x40, 0, 0, 0, 0, 0];
        let b = encode_an_req(true, lun, an_class::MEDIA_CHANGE);
        assert_eq!(&b[0..4], &[2, 0, 0, 0]);
        assert_eq!(&b[4..12], &lun);
        assert_eq!(&b[12..16], &[0x10, 0, 0, 0]);
        assert_eq!(&encode_an_req(false, lun, 0)[0..4], &[1, 0, 0, 0]);
        // QEMU answers OK with no class: no notifications will come.
        assert_eq!(decode_an_resp(&[0, 0, 0, 0, 0, 0, 0, 0], 5, 0x10), Some(0));
        assert_eq!(
            decode_an_resp(&[0x10, 0, 0, 0, 0, 0, 0, 0], 5, 0x10),
            Some(0x10)
        );
        // Classes never asked for are dropped; a failure or short answer is none.
        assert_eq!(
            decode_an_resp(&[0xff, 0, 0, 0, 0, 0, 0, 0], 5, 0x10),
            Some(0x10)
        );
        assert_eq!(decode_an_resp(&[0x10, 0, 0, 0, 9, 0, 0, 0], 5, 0x10), None);
        assert_eq!(decode_an_resp(&[0x10, 0, 0, 0, 0, 0, 0, 0], 4, 0x10), None);
    }
}
