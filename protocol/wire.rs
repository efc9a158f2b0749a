// SPDX-License-Identifier: GPL-2.0

//! Sizes of the structures the driver and the device exchange, as the virtio
//! specification (5.6.6) and `include/uapi/linux/virtio_scsi.h` lay them out.
//!
//! The module checks each against bindgen's view of the uapi header at build
//! time, and the host tests check them against the C compiler's.

/// Default CDB size the driver writes to the config space (`VIRTIO_SCSI_CDB_SIZE`).
pub const CDB_SIZE: usize = 32;
/// Default sense size the driver writes to the config space (`VIRTIO_SCSI_SENSE_SIZE`).
pub const SENSE_SIZE: usize = 96;

/// `struct virtio_scsi_cmd_req`: lun[8], tag, task_attr, prio, crn, cdb[32].
pub const CMD_REQ_SIZE: usize = 8 + 8 + 1 + 1 + 1 + CDB_SIZE;
/// `struct virtio_scsi_cmd_req_pi`: as above plus pi_bytesout and pi_bytesin.
pub const CMD_REQ_PI_SIZE: usize = 8 + 8 + 1 + 1 + 1 + 4 + 4 + CDB_SIZE;
/// Byte offsets of the fields of `struct virtio_scsi_cmd_req` and, where
/// they differ, of `struct virtio_scsi_cmd_req_pi`.
pub mod req_offset {
    /// `lun[8]`.
    pub const LUN: usize = 0;
    /// `tag` (u64).
    pub const TAG: usize = 8;
    /// `task_attr`, followed by `prio` and `crn` (a byte each).
    pub const TASK_ATTR: usize = 16;
    /// `cdb[32]` of the plain header.
    pub const CDB: usize = 19;
    /// `pi_bytesout` (u32, the PI header only).
    pub const PI_BYTESOUT: usize = 19;
    /// `pi_bytesin` (u32, the PI header only).
    pub const PI_BYTESIN: usize = 23;
    /// `cdb[32]` of the PI header.
    pub const CDB_PI: usize = 27;
}
/// `struct virtio_scsi_cmd_resp`: sense_len, resid, status_qualifier, status,
/// response, sense[96].
pub const CMD_RESP_SIZE: usize = 4 + 4 + 2 + 1 + 1 + SENSE_SIZE;
/// `struct virtio_scsi_ctrl_tmf_req`: type, subtype, lun[8], tag.
pub const CTRL_TMF_REQ_SIZE: usize = 4 + 4 + 8 + 8;
/// `struct virtio_scsi_ctrl_tmf_resp`: response.
pub const CTRL_TMF_RESP_SIZE: usize = 1;
/// `struct virtio_scsi_ctrl_an_req`: type, lun[8], event_requested.
pub const CTRL_AN_REQ_SIZE: usize = 4 + 8 + 4;
/// `struct virtio_scsi_ctrl_an_resp`: event_actual, response.
pub const CTRL_AN_RESP_SIZE: usize = 4 + 1;
/// `struct virtio_scsi_event`: event, lun[8], reason.
pub const EVENT_SIZE: usize = 4 + 8 + 4;
/// `struct virtio_scsi_config`.
pub const CONFIG_SIZE: usize = 7 * 4 + 2 * 2 + 4;
