#!/bin/bash
# Guest test: T10 PI on the test device (run-guest --testdev '--t10-pi ...'
# --testdev-qemu t10_pi=on): a DIF type 1 disk at 0:0 (serial tdev-0-0).
#
# Environment:
#   VSRS_DRIVER   c: the in-tree C driver; else virtio_scsi_rs
cd "$(dirname "$0")" && . ./lib.sh

begin "testdev PI $MOD"
check "load $MOD" load
check "the PI disk appears" wait_for 120 has_disk 0-0
d=$(dev_of 0-0)
b=${d##*/}
expect_eq "$d integrity format" "$(cat /sys/block/$b/integrity/format 2>/dev/null)" T10-DIF-TYPE1-CRC
check "fio randwrite crc32c verify on $d (PI generated and checked)" fio_verify 1 8M "$d"
check "fault: corrupt the guard tag of the next READ(10)" \
	fault_ok '{"cmd":"fault","fault":"bad_guard","target":0,"lun":0,"opcode":40}'
read_fails "$d" "the read with a bad guard tag fails"
new_dmesg | grep -iE 'guard|integrity|protection|I/O error' | tail -n 5 | diag
check "the next read succeeds" dd if="$d" of=/dev/null bs=4k count=1 iflag=direct status=none
check "no kernel warnings, oopses or lockdep reports" no_kernel_reports
