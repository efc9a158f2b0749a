// SPDX-License-Identifier: GPL-2.0

//! The layouts in `wire` and `config::offset` against the C compiler's view of
//! the uapi header `<linux/virtio_scsi.h>` (linux-libc-dev on the host).

extern crate std;

use crate::{config::offset, wire, wire::req_offset as req};
use std::{collections::HashMap, fs, process::Command, string::String};

const PROBE: &str = r#"
#include <stdio.h>
#include <stddef.h>
#include <linux/virtio_scsi.h>
#define S(t) printf(#t " %zu\n", sizeof(struct t))
#define O(t, f) printf(#t "." #f " %zu\n", offsetof(struct t, f))
int main(void) {
    S(virtio_scsi_cmd_req); S(virtio_scsi_cmd_req_pi); S(virtio_scsi_cmd_resp);
    S(virtio_scsi_ctrl_tmf_req); S(virtio_scsi_ctrl_tmf_resp);
    S(virtio_scsi_ctrl_an_req); S(virtio_scsi_ctrl_an_resp);
    S(virtio_scsi_event); S(virtio_scsi_config);
    O(virtio_scsi_config, num_queues); O(virtio_scsi_config, seg_max);
    O(virtio_scsi_config, max_sectors); O(virtio_scsi_config, cmd_per_lun);
    O(virtio_scsi_config, event_info_size); O(virtio_scsi_config, sense_size);
    O(virtio_scsi_config, cdb_size); O(virtio_scsi_config, max_channel);
    O(virtio_scsi_config, max_target); O(virtio_scsi_config, max_lun);
    O(virtio_scsi_cmd_req, lun); O(virtio_scsi_cmd_req, tag);
    O(virtio_scsi_cmd_req, task_attr); O(virtio_scsi_cmd_req, prio);
    O(virtio_scsi_cmd_req, crn); O(virtio_scsi_cmd_req, cdb);
    O(virtio_scsi_cmd_req_pi, lun); O(virtio_scsi_cmd_req_pi, tag);
    O(virtio_scsi_cmd_req_pi, task_attr); O(virtio_scsi_cmd_req_pi, pi_bytesout);
    O(virtio_scsi_cmd_req_pi, pi_bytesin); O(virtio_scsi_cmd_req_pi, cdb);
    printf("VIRTIO_SCSI_CDB_SIZE %d\nVIRTIO_SCSI_SENSE_SIZE %d\n",
           VIRTIO_SCSI_CDB_SIZE, VIRTIO_SCSI_SENSE_SIZE);
    return 0;
}
"#;

/// Compiles and runs the probe in a directory of its own per caller (tests run in parallel).
fn c_layout(caller: &str) -> HashMap<String, usize> {
    let dir = std::env::temp_dir().join(std::format!("vsrs-uapi-{}-{caller}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let (src, bin) = (dir.join("probe.c"), dir.join("probe"));
    fs::write(&src, PROBE).unwrap();
    let cc = Command::new("cc")
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .status()
        .expect("no C compiler");
    assert!(cc.success(), "the uapi probe did not compile");
    let out = Command::new(&bin).output().unwrap();
    fs::remove_dir_all(&dir).unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap();
            (k.into(), v.parse().unwrap())
        })
        .collect()
}

/// Each of `ours` (a probe line's name, our value) is what the C compiler says.
fn expect(c: &HashMap<String, usize>, ours: &[(&str, usize)]) {
    for &(name, value) in ours {
        assert_eq!(c[name], value, "{name}");
    }
}

#[test]
fn wire_sizes_match_uapi() {
    expect(
        &c_layout("sizes"),
        &[
            ("virtio_scsi_cmd_req", wire::CMD_REQ_SIZE),
            ("virtio_scsi_cmd_req_pi", wire::CMD_REQ_PI_SIZE),
            ("virtio_scsi_cmd_resp", wire::CMD_RESP_SIZE),
            ("virtio_scsi_ctrl_tmf_req", wire::CTRL_TMF_REQ_SIZE),
            ("virtio_scsi_ctrl_tmf_resp", wire::CTRL_TMF_RESP_SIZE),
            ("virtio_scsi_ctrl_an_req", wire::CTRL_AN_REQ_SIZE),
            ("virtio_scsi_ctrl_an_resp", wire::CTRL_AN_RESP_SIZE),
            ("virtio_scsi_event", wire::EVENT_SIZE),
            ("virtio_scsi_config", wire::CONFIG_SIZE),
            ("VIRTIO_SCSI_CDB_SIZE", wire::CDB_SIZE),
            ("VIRTIO_SCSI_SENSE_SIZE", wire::SENSE_SIZE),
        ],
    );
}

#[test]
fn config_offsets_match_uapi() {
    expect(
        &c_layout("offsets"),
        &[
            ("virtio_scsi_config.num_queues", offset::NUM_QUEUES),
            ("virtio_scsi_config.seg_max", offset::SEG_MAX),
            ("virtio_scsi_config.max_sectors", offset::MAX_SECTORS),
            ("virtio_scsi_config.cmd_per_lun", offset::CMD_PER_LUN),
            (
                "virtio_scsi_config.event_info_size",
                offset::EVENT_INFO_SIZE,
            ),
            ("virtio_scsi_config.sense_size", offset::SENSE_SIZE),
            ("virtio_scsi_config.cdb_size", offset::CDB_SIZE),
            ("virtio_scsi_config.max_channel", offset::MAX_CHANNEL),
            ("virtio_scsi_config.max_target", offset::MAX_TARGET),
            ("virtio_scsi_config.max_lun", offset::MAX_LUN),
        ],
    );
}

#[test]
fn request_offsets_match_uapi() {
    expect(
        &c_layout("request"),
        &[
            ("virtio_scsi_cmd_req.lun", req::LUN),
            ("virtio_scsi_cmd_req.tag", req::TAG),
            ("virtio_scsi_cmd_req.task_attr", req::TASK_ATTR),
            ("virtio_scsi_cmd_req.prio", req::TASK_ATTR + 1),
            ("virtio_scsi_cmd_req.crn", req::TASK_ATTR + 2),
            ("virtio_scsi_cmd_req.cdb", req::CDB),
            ("virtio_scsi_cmd_req_pi.lun", req::LUN),
            ("virtio_scsi_cmd_req_pi.tag", req::TAG),
            ("virtio_scsi_cmd_req_pi.task_attr", req::TASK_ATTR),
            ("virtio_scsi_cmd_req_pi.pi_bytesout", req::PI_BYTESOUT),
            ("virtio_scsi_cmd_req_pi.pi_bytesin", req::PI_BYTESIN),
            ("virtio_scsi_cmd_req_pi.cdb", req::CDB_PI),
        ],
    );
}
