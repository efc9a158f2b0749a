#!/bin/bash
# Guest test: T10 PI on the test device (run-guest --testdev '--t10-pi ...'
# --testdev-qemu t10_pi=on): a DIF type 1 disk at 0:0 (serial tdev-0-0).
#
# Environment:
#   VSRS_DRIVER   c: the in-tree C driver (modprobe virtio_scsi); else virtio_scsi_rs
cd "$(dirname "$0")" && . ./lib.sh

disk() {
	local b
	for b in /sys/block/sd*; do
		[ "$(tail -c +5 "$b/device/vpd_pg80" 2>/dev/null | tr -d '\0 ')" = tdev-0-0 ] && echo "/dev/${b##*/}"
	done
}
wait_disk() { local i; for i in $(seq 1 240); do [ -n "$(disk)" ] && return 0; sleep 0.5; done; return 1; }

driver=${VSRS_DRIVER:-rs}
# The C driver's module in the guest kernel's tree (modprobe does not find
# it: vng links the modules under another version).
c_ko=${VSRS_C_KO:-$(sed -n 's/.*virtme_link_mods=\([^ ]*\).*/\1/p' /proc/cmdline)/kernel/drivers/scsi/virtio_scsi.ko}
begin "testdev PI $driver"
if [ "$driver" = c ]; then
	check "insmod virtio_scsi.ko (C driver)" insmod "$c_ko"
else
	check "insmod virtio_scsi_rs" load
fi
check "the PI disk appears" wait_disk
d=$(disk)
b=${d##*/}
expect_eq "$d integrity format" "$(cat /sys/block/$b/integrity/format 2>/dev/null)" T10-DIF-TYPE1-CRC
check "fio randwrite crc32c verify on $d (PI generated and checked)" fio_verify 1 8M "$d"
check "fault: corrupt the guard tag of the next READ(10)" \
	ctl_ok '{"cmd":"fault","fault":"bad_guard","target":0,"lun":0,"opcode":40}'
read_fails "$d" "the read with a bad guard tag fails"
new_dmesg | grep -iE 'guard|integrity|protection|I/O error' | tail -n 5 | diag
check "the next read succeeds" dd if="$d" of=/dev/null bs=4k count=1 iflag=direct status=none
check "no kernel warnings, oopses or lockdep reports" no_kernel_reports
