// SPDX-License-Identifier: GPL-2.0

//! Every decoder of what the device hands back, on libFuzzer's inputs; the
//! harness and its checks are `protocol/fuzz_checks.rs`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    virtio_scsi_protocol::fuzz_checks::device_answers(data);
});
