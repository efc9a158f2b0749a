// SPDX-License-Identifier: GPL-2.0

//! The virtio-scsi configuration space: where each field lives, and what the
//! driver makes of the values a device (which it does not trust) puts there.

use core::fmt;

/// Byte offsets of the fields of `struct virtio_scsi_config` (packed, 36 bytes).
pub mod offset {
    /// `num_queues` (u32): request virtqueues the device offers.
    pub const NUM_QUEUES: usize = 0;
    /// `seg_max` (u32): data segments per command.
    pub const SEG_MAX: usize = 4;
    /// `max_sectors` (u32): 512-byte sectors per command.
    pub const MAX_SECTORS: usize = 8;
    /// `cmd_per_lun` (u32): linked commands per LUN.
    pub const CMD_PER_LUN: usize = 12;
    /// `event_info_size` (u32): size of one event buffer.
    pub const EVENT_INFO_SIZE: usize = 16;
    /// `sense_size` (u32, driver-writable).
    pub const SENSE_SIZE: usize = 20;
    /// `cdb_size` (u32, driver-writable).
    pub const CDB_SIZE: usize = 24;
    /// `max_channel` (u16): must be 0.
    pub const MAX_CHANNEL: usize = 28;
    /// `max_target` (u16): highest target id.
    pub const MAX_TARGET: usize = 30;
    /// `max_lun` (u32): highest LUN.
    pub const MAX_LUN: usize = 32;
}

/// Highest target the LUN encoding can address (one byte).
pub const MAX_TARGET_LIMIT: u16 = 255;
/// Highest LUN the flat (single level) addressing method can carry (14 bits).
pub const MAX_LUN_LIMIT: u32 = 16383;
/// Smallest event buffer the driver posts: one `struct virtio_scsi_event`.
pub const EVENT_INFO_MIN: u32 = super::wire::EVENT_SIZE as u32;
/// Largest event buffer the driver is willing to post.
pub const EVENT_INFO_MAX: u32 = 4096;
/// `Scsi_Host::sg_tablesize` is an `unsigned short`.
pub const SEG_MAX_LIMIT: u32 = u16::MAX as u32;
/// `Scsi_Host::cmd_per_lun` is a `short`.
pub const CMD_PER_LUN_LIMIT: u32 = i16::MAX as u32;
/// What the driver uses when the device reports `max_sectors` as 0.
pub const MAX_SECTORS_DEFAULT: u32 = 0xffff;

/// The configuration space as the device presents it, field by field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawConfig {
    /// `num_queues`.
    pub num_queues: u32,
    /// `seg_max`.
    pub seg_max: u32,
    /// `max_sectors`.
    pub max_sectors: u32,
    /// `cmd_per_lun`.
    pub cmd_per_lun: u32,
    /// `event_info_size`.
    pub event_info_size: u32,
    /// `max_channel`.
    pub max_channel: u16,
    /// `max_target`.
    pub max_target: u16,
    /// `max_lun`.
    pub max_lun: u32,
}

/// A configuration field the driver had to correct.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fixup {
    /// The device reported 0 where 0 cannot work; `used` is taken instead.
    Zero {
        /// The field's name in the specification.
        field: &'static str,
        /// The value used instead.
        used: u32,
    },
    /// The device reported more than the driver (or the spec) allows.
    TooLarge {
        /// The field's name in the specification.
        field: &'static str,
        /// What the device reported.
        value: u32,
        /// The value used instead.
        used: u32,
    },
    /// The device reported less than the driver needs.
    TooSmall {
        /// The field's name in the specification.
        field: &'static str,
        /// What the device reported.
        value: u32,
        /// The value used instead.
        used: u32,
    },
}

impl fmt::Display for Fixup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Fixup::Zero { field, used } => {
                write!(f, "config {field} is 0, using {used}")
            }
            Fixup::TooLarge { field, value, used } => {
                write!(f, "config {field} = {value} is too large, using {used}")
            }
            Fixup::TooSmall { field, value, used } => {
                write!(f, "config {field} = {value} is too small, using {used}")
            }
        }
    }
}

/// What the guest allows, handed to [`RawConfig::validate`].
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Request queues worth creating (the kernel's `blk_mq_num_possible_queues`).
    pub possible_queues: u32,
    /// Request queues the user asked to run without interrupts (module parameter).
    pub poll_queues: u32,
}

/// The configuration the driver runs with: every field within bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Request virtqueues to create, poll queues included (>= 1).
    pub req_queues: u32,
    /// Of those, how many run without interrupts (< `req_queues`).
    pub poll_queues: u32,
    /// Data segments per command (1..=65535).
    pub seg_max: u32,
    /// Sectors per command (>= 1).
    pub max_sectors: u32,
    /// Commands per LUN (1..=32767), before capping by the queue depth.
    pub cmd_per_lun: u32,
    /// Size of one event buffer.
    pub event_info_size: u32,
    /// Highest target id (<= 255).
    pub max_target: u16,
    /// Highest LUN (<= 16383).
    pub max_lun: u32,
}

impl RawConfig {
    /// Turns what the device reported into a configuration the driver can run
    /// with, calling `report` once for every field it had to correct.
    pub fn validate(&self, limits: Limits, mut report: impl FnMut(Fixup)) -> Config {
        let mut nonzero = |field, value: u32, used| {
            if value == 0 {
                report(Fixup::Zero { field, used });
                used
            } else {
                value
            }
        };
        let num_queues = nonzero("num_queues", self.num_queues, 1);
        let seg_max = nonzero("seg_max", self.seg_max, 1);
        let max_sectors = nonzero("max_sectors", self.max_sectors, MAX_SECTORS_DEFAULT);
        let cmd_per_lun = nonzero("cmd_per_lun", self.cmd_per_lun, 1);

        let mut at_most = |field, value: u32, limit: u32| {
            if value > limit {
                report(Fixup::TooLarge {
                    field,
                    value,
                    used: limit,
                });
                limit
            } else {
                value
            }
        };
        let seg_max = at_most("seg_max", seg_max, SEG_MAX_LIMIT);
        let cmd_per_lun = at_most("cmd_per_lun", cmd_per_lun, CMD_PER_LUN_LIMIT);
        // Reported only: the driver addresses channel 0 whatever the device says.
        at_most("max_channel", self.max_channel.into(), 0);
        let max_target = at_most(
            "max_target",
            self.max_target.into(),
            MAX_TARGET_LIMIT.into(),
        );
        let max_lun = at_most("max_lun", self.max_lun, MAX_LUN_LIMIT);
        let event_info_size = at_most("event_info_size", self.event_info_size, EVENT_INFO_MAX);

        let event_info_size = if event_info_size < EVENT_INFO_MIN {
            report(Fixup::TooSmall {
                field: "event_info_size",
                value: event_info_size,
                used: EVENT_INFO_MIN,
            });
            EVENT_INFO_MIN
        } else {
            event_info_size
        };

        // More queues than CPUs buy nothing: cap silently, as the C driver does.
        let req_queues = num_queues.min(limits.possible_queues.max(1));
        // Keep at least one interrupt-driven queue.
        let poll_queues = limits.poll_queues.min(req_queues - 1);

        Config {
            req_queues,
            poll_queues,
            seg_max,
            max_sectors,
            cmd_per_lun,
            event_info_size,
            // Both bounded by u16-sized limits above.
            max_target: max_target as u16,
            max_lun,
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    /// What QEMU's virtio-scsi-pci reports by default with num_queues=4.
    fn qemu() -> RawConfig {
        RawConfig {
            num_queues: 4,
            seg_max: 254,
            max_sectors: 0xffff,
            cmd_per_lun: 128,
            event_info_size: 16,
            max_channel: 0,
            max_target: 255,
            max_lun: 16383,
        }
    }

    fn run(raw: RawConfig, possible: u32, poll: u32) -> (Config, Vec<Fixup>) {
        let mut fixups = Vec::new();
        let limits = Limits {
            possible_queues: possible,
            poll_queues: poll,
        };
        let cfg = raw.validate(limits, |f| fixups.push(f));
        (cfg, fixups)
    }

    #[test]
    fn qemu_defaults_pass_unchanged() {
        let (cfg, fixups) = run(qemu(), 8, 0);
        assert_eq!(fixups, []);
        assert_eq!(
            cfg,
            Config {
                req_queues: 4,
                poll_queues: 0,
                seg_max: 254,
                max_sectors: 0xffff,
                cmd_per_lun: 128,
                event_info_size: 16,
                max_target: 255,
                max_lun: 16383,
            }
        );
    }

    #[test]
    fn zeroes_fall_back_and_are_reported() {
        let raw = RawConfig {
            max_target: 0,
            max_lun: 0,
            ..RawConfig::default()
        };
        let (cfg, fixups) = run(raw, 2, 0);
        assert_eq!(cfg.req_queues, 1);
        assert_eq!(cfg.seg_max, 1);
        assert_eq!(cfg.max_sectors, MAX_SECTORS_DEFAULT);
        assert_eq!(cfg.cmd_per_lun, 1);
        assert_eq!(cfg.event_info_size, 16);
        assert_eq!(cfg.max_target, 0);
        assert_eq!(cfg.max_lun, 0);
        let fields: Vec<_> = fixups
            .iter()
            .map(|f| match f {
                Fixup::Zero { field, .. } => *field,
                Fixup::TooSmall { field, .. } => *field,
                Fixup::TooLarge { field, .. } => *field,
            })
            .collect();
        assert_eq!(
            fields,
            [
                "num_queues",
                "seg_max",
                "max_sectors",
                "cmd_per_lun",
                "event_info_size"
            ]
        );
    }

    #[test]
    fn absurd_values_are_capped_and_reported() {
        let raw = RawConfig {
            num_queues: u32::MAX,
            seg_max: u32::MAX,
            max_sectors: u32::MAX,
            cmd_per_lun: u32::MAX,
            event_info_size: u32::MAX,
            max_channel: u16::MAX,
            max_target: u16::MAX,
            max_lun: u32::MAX,
        };
        let (cfg, fixups) = run(raw, 2, 0);
        assert_eq!(cfg.req_queues, 2);
        assert_eq!(cfg.seg_max, 65535);
        assert_eq!(cfg.cmd_per_lun, 32767);
        assert_eq!(cfg.event_info_size, EVENT_INFO_MAX);
        assert_eq!(cfg.max_target, 255);
        assert_eq!(cfg.max_lun, 16383);
        // max_sectors has no upper limit of its own: the block layer caps it.
        assert_eq!(cfg.max_sectors, u32::MAX);
        assert_eq!(fixups.len(), 6);
        assert!(fixups.contains(&Fixup::TooLarge {
            field: "max_channel",
            value: 65535,
            used: 0
        }));
        assert!(fixups.contains(&Fixup::TooLarge {
            field: "max_target",
            value: 65535,
            used: 255
        }));
    }

    #[test]
    fn poll_queues_leave_one_interrupt_queue() {
        assert_eq!(run(qemu(), 8, 2).0.poll_queues, 2);
        assert_eq!(run(qemu(), 8, 100).0.poll_queues, 3);
        let one = RawConfig {
            num_queues: 1,
            ..qemu()
        };
        assert_eq!(run(one, 8, 1).0.poll_queues, 0);
        // No possible queues reported at all still leaves one request queue.
        assert_eq!(run(qemu(), 0, 0).0.req_queues, 1);
    }

    #[test]
    fn fixups_read_as_one_line() {
        let f = Fixup::TooLarge {
            field: "max_target",
            value: 300,
            used: 255,
        };
        assert_eq!(
            std::format!("{f}"),
            "config max_target = 300 is too large, using 255"
        );
        let z = Fixup::Zero {
            field: "seg_max",
            used: 1,
        };
        assert_eq!(std::format!("{z}"), "config seg_max is 0, using 1");
    }

    #[test]
    fn offsets_follow_the_packed_layout() {
        assert_eq!(offset::MAX_LUN + 4, super::super::wire::CONFIG_SIZE);
        assert_eq!(offset::MAX_CHANNEL + 2, offset::MAX_TARGET);
    }
}
