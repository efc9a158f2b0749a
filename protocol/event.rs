// SPDX-License-Identifier: GPL-2.0

//! The event queue (virtio spec 5.6.6.3): decoding and checking the events
//! the device writes into the driver's event buffers.

use super::wire::EVENT_SIZE;
use core::fmt;

/// `VIRTIO_SCSI_T_EVENTS_MISSED`: or-ed into the event code.
const EVENTS_MISSED: u32 = 0x8000_0000;

/// What a TRANSPORT_RESET event says happened (`VIRTIO_SCSI_EVT_RESET_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetReason {
    /// The target was reset: revalidate its LUNs.
    Hard,
    /// A LUN appeared: scan it.
    Rescan,
    /// A LUN went away: remove it.
    Removed,
}

/// One event, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// `VIRTIO_SCSI_T_NO_EVENT` (only meaningful with `missed`).
    None,
    /// `VIRTIO_SCSI_T_TRANSPORT_RESET` for a LUN.
    TransportReset {
        /// Target id.
        target: u8,
        /// The midlayer's LUN number.
        lun: u16,
        /// What happened.
        reason: ResetReason,
    },
    /// `VIRTIO_SCSI_T_ASYNC_NOTIFY`: the classes in `events` have news.
    AsyncNotify {
        /// Target id.
        target: u8,
        /// The midlayer's LUN number.
        lun: u16,
        /// Event class bits (`VIRTIO_SCSI_EVT_ASYNC_*`).
        events: u32,
    },
    /// `VIRTIO_SCSI_T_PARAM_CHANGE` with the sense code that says which.
    ParamChange {
        /// Target id.
        target: u8,
        /// The midlayer's LUN number.
        lun: u16,
        /// Additional sense code.
        asc: u8,
        /// Additional sense code qualifier.
        ascq: u8,
    },
}

/// An event buffer the driver could not make sense of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadEvent {
    /// The device wrote fewer bytes than an event has.
    Short(u32),
    /// An event code the spec does not define.
    UnknownType(u32),
    /// A TRANSPORT_RESET reason the spec does not define.
    UnknownReason(u32),
    /// The LUN field is not a single-level LUN of this bus.
    BadLun([u8; 8]),
}

impl fmt::Display for BadEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Short(n) => write!(f, "event of {n} bytes (at least {EVENT_SIZE} expected)"),
            Self::UnknownType(t) => write!(f, "unknown event type {t:#x}"),
            Self::UnknownReason(r) => write!(f, "unknown transport reset reason {r}"),
            Self::BadLun(l) => write!(f, "event for an invalid LUN field {l:02x?}"),
        }
    }
}

/// The target and the midlayer's LUN number of an 8-byte LUN field as
/// `encode_lun` writes it: byte 0 is 1, byte 1 the target, bytes 2-3 the LUN
/// (flat space addressing 0x40, or peripheral 0x00 for LUNs below 256), the
/// rest 0. The midlayer numbers LUNs below 256 plainly and the others as
/// REPORT LUNS gives them (0x4000 | n), which is what `encode_lun` takes.
pub fn decode_lun(l: &[u8; 8]) -> Option<(u8, u16)> {
    if l[0] != 1 || l[4..].iter().any(|&b| b != 0) {
        return None;
    }
    let n = match l[2] >> 6 {
        0 if l[2] == 0 => u16::from(l[3]),
        1 => u16::from_be_bytes([l[2] & 0x3f, l[3]]),
        _ => return None,
    };
    Some((l[1], if n < 256 { n } else { 0x4000 | n }))
}

/// Decodes the event buffer `buf`, of which the device says it wrote
/// `used_len` bytes. The second value is whether events were missed (the
/// device had no buffer for some): the driver must rescan everything.
pub fn decode_event(buf: &[u8], used_len: u32) -> (Result<Event, BadEvent>, bool) {
    if (used_len as usize) < EVENT_SIZE || buf.len() < EVENT_SIZE {
        return (Err(BadEvent::Short(used_len)), false);
    }
    let word = |at: usize| u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    let code = word(0);
    let missed = code & EVENTS_MISSED != 0;
    let reason = word(12);
    let mut lun_field = [0u8; 8];
    lun_field.copy_from_slice(&buf[4..12]);
    let addr = || decode_lun(&lun_field).ok_or(BadEvent::BadLun(lun_field));
    let ev = match code & !EVENTS_MISSED {
        0 => Ok(Event::None),
        1 => addr().and_then(|(target, lun)| {
            let reason = match reason {
                0 => ResetReason::Hard,
                1 => ResetReason::Rescan,
                2 => ResetReason::Removed,
                r => return Err(BadEvent::UnknownReason(r)),
            };
            Ok(Event::TransportReset {
                target,
                lun,
                reason,
            })
        }),
        2 => addr().map(|(target, lun)| Event::AsyncNotify {
            target,
            lun,
            events: reason,
        }),
        3 => addr().map(|(target, lun)| Event::ParamChange {
            target,
            lun,
            asc: reason as u8,
            ascq: (reason >> 8) as u8,
        }),
        t => Err(BadEvent::UnknownType(t)),
    };
    (ev, missed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::encode_lun;

    fn event(code: u32, lun: [u8; 8], reason: u32) -> [u8; EVENT_SIZE] {
        let mut b = [0u8; EVENT_SIZE];
        b[0..4].copy_from_slice(&code.to_le_bytes());
        b[4..12].copy_from_slice(&lun);
        b[12..16].copy_from_slice(&reason.to_le_bytes());
        b
    }

    #[test]
    fn lun_round_trip() {
        for (t, l) in [
            (0u32, 0u16),
            (3, 7),
            (255, 255),
            (1, 0x4000 | 300),
            (0, 0x7fff),
        ] {
            let f = encode_lun(t, u64::from(l)).unwrap();
            assert_eq!(decode_lun(&f), Some((t as u8, l)));
        }
        // Peripheral addressing of a LUN below 256, as some devices write it.
        assert_eq!(decode_lun(&[1, 2, 0, 5, 0, 0, 0, 0]), Some((2, 5)));
        assert_eq!(decode_lun(&[0, 2, 0x40, 5, 0, 0, 0, 0]), None);
        assert_eq!(decode_lun(&[1, 2, 0x80, 5, 0, 0, 0, 0]), None);
        assert_eq!(decode_lun(&[1, 2, 0x40, 5, 0, 0, 1, 0]), None);
        assert_eq!(decode_lun(&[1, 2, 0x01, 5, 0, 0, 0, 0]), None);
    }

    #[test]
    fn qemu_events() {
        let lun = encode_lun(1, 3).unwrap();
        assert_eq!(
            decode_event(&event(1, lun, 1), 16),
            (
                Ok(Event::TransportReset {
                    target: 1,
                    lun: 3,
                    reason: ResetReason::Rescan
                }),
                false
            )
        );
        assert_eq!(
            decode_event(&event(1, lun, 2), 16).0,
            Ok(Event::TransportReset {
                target: 1,
                lun: 3,
                reason: ResetReason::Removed
            })
        );
        assert_eq!(
            decode_event(&event(1, lun, 0), 16).0,
            Ok(Event::TransportReset {
                target: 1,
                lun: 3,
                reason: ResetReason::Hard
            })
        );
        // block_resize: CAPACITY DATA HAS CHANGED, ASC 0x2a ASCQ 0x09.
        assert_eq!(
            decode_event(&event(3, lun, 0x092a), 16).0,
            Ok(Event::ParamChange {
                target: 1,
                lun: 3,
                asc: 0x2a,
                ascq: 0x09
            })
        );
        assert_eq!(
            decode_event(&event(2, lun, 0x10), 16).0,
            Ok(Event::AsyncNotify {
                target: 1,
                lun: 3,
                events: 0x10
            })
        );
        // No buffer was posted when an event happened.
        assert_eq!(
            decode_event(&event(0x8000_0000, [0; 8], 0), 16),
            (Ok(Event::None), true)
        );
        assert_eq!(decode_event(&event(0x8000_0001, lun, 1), 16).1, true);
    }

    #[test]
    fn malformed_events() {
        let lun = encode_lun(0, 0).unwrap();
        assert_eq!(
            decode_event(&event(1, lun, 1), 15).0,
            Err(BadEvent::Short(15))
        );
        assert_eq!(
            decode_event(&event(1, lun, 1)[..8], 16).0,
            Err(BadEvent::Short(16))
        );
        assert_eq!(
            decode_event(&event(7, lun, 1), 16).0,
            Err(BadEvent::UnknownType(7))
        );
        assert_eq!(
            decode_event(&event(1, lun, 9), 16).0,
            Err(BadEvent::UnknownReason(9))
        );
        let bad = [9, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            decode_event(&event(1, bad, 1), 16).0,
            Err(BadEvent::BadLun(bad))
        );
        // A longer buffer (event_info_size > 16) is fine; the rest is ignored.
        let mut long = [0xffu8; 64];
        long[..16].copy_from_slice(&event(1, lun, 1));
        assert!(decode_event(&long, 64).0.is_ok());
    }
}
