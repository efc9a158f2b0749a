#!/bin/bash
# Guest test: a read error the host injects (QEMU blkdebug, once, at sector
# VSRS_ERR_SECTOR of the disk with serial vsrs-e0: MEDIUM ERROR) fails that request only;
# the disk stays usable.
cd "$(dirname "$0")" && . ./lib.sh

begin deverr
sector=${VSRS_ERR_SECTOR:?}
check "insmod" load
check "the disks appear" wait_disks 2
dev=$(disks_with_serial vsrs-e0)
other=$(disks_with_serial vsrs-f0)
# MEDIUM ERROR reaches the reader as ENODATA ("No data available").
check "the read of sector $sector fails" bash -c \
	"! dd if='$dev' of=/dev/null bs=512 skip=$sector count=1 iflag=direct 2>/tmp/dd.err && grep -qE 'No data available|Input/output error' /tmp/dd.err"
logged() { new_dmesg | grep -qF "$1"; }
check "the midlayer got the sense: dmesg names the disk and the sector" logged "critical medium error, dev ${dev##*/}, sector $sector "
check "a read elsewhere on the disk succeeds" \
	dd if="$dev" of=/dev/null bs=512 skip=$((sector + 64)) count=8 iflag=direct status=none
check "the same sector reads again (the error was injected once)" \
	dd if="$dev" of=/dev/null bs=512 skip="$sector" count=1 iflag=direct status=none
check "fio verify on $dev and $other afterwards" fio_verify 2 8M "$dev" "$other"
check "rmmod" unload
check "dmesg: no WARN, BUG, KASAN, lockdep or hung-task report" no_kernel_reports
