#!/bin/bash
# Guest test: the programmable test device (tools/testdev, run-guest --testdev)
# with one driver. run_tests.sh gives the device two 64 MiB RAM disks at 0:0
# and 0:1 (serials tdev-T-L) and a CD at 1:0.
#
# Environment:
#   VSRS_DRIVER   c: the in-tree C driver (insmod virtio_scsi.ko); else virtio_scsi_rs
#   VSRS_FIO_SIZE fio size per job (default 8M)
cd "$(dirname "$0")" && . ./lib.sh

begin "testdev $MOD"
check "control socket answers status" ctl_ok '{"cmd":"status"}'
check "load $MOD" load
two_disks() { [ "$(tdev_disks | grep -c '^0-[01] /dev/sd')" -eq 2 ]; }
check "disks 0:0 and 0:1 appear" wait_for 120 two_disks
tdev_disks | diag
d0=$(dev_of 0-0) d1=$(dev_of 0-1)
expect_eq "$d0 size (512-byte sectors)" "$(cat /sys/block/${d0##*/}/size 2>/dev/null)" 131072
check "fio randwrite crc32c verify on $d0 $d1" fio_verify 2 "${VSRS_FIO_SIZE:-8M}" "$d0" "$d1"

# Hotplug through the event queue: TRANSPORT_RESET RESCAN / REMOVED.
check "add_lun 0:2 (RESCAN event)" ctl_ok '{"cmd":"add_lun","target":0,"lun":2,"size":"16M"}'
check "disk 0:2 appears" wait_for 60 has_disk 0-2
check "remove_lun 0:2 (REMOVED event)" ctl_ok '{"cmd":"remove_lun","target":0,"lun":2}'
check "disk 0:2 goes away" wait_for 60 no_disk 0-2

# A medium error on one read: that read fails, the disk stays usable.
check "fault: next READ(10) on 0:1 gets MEDIUM ERROR" \
	fault_ok '{"cmd":"fault","fault":"sense","target":0,"lun":1,"opcode":40,"key":3,"asc":17}'
read_fails "$d1" "the faulted read fails"
check "the next read of $d1 succeeds" dd if="$d1" of=/dev/null bs=4k count=1 iflag=direct status=none
check "$d0 unaffected" dd if="$d0" of=/dev/null bs=64k count=16 iflag=direct status=none

# A request held for 3 s completes late but completes.
check "fault: hold the next READ(10) on 0:0 for 3000 ms" \
	fault_ok '{"cmd":"fault","fault":"hold","ms":3000,"target":0,"lun":0,"opcode":40}'
start=$(date +%s%N)
check "the held read completes" dd if="$d0" of=/dev/null bs=4k count=1 skip=100 iflag=direct status=none
ms=$((($(date +%s%N) - start) / 1000000))
check "...after the hold (${ms} ms)" test "$ms" -ge 2500

# A request held past the SCSI timeout (5 s here). virtio_scsi_rs: the
# timeout fires, the abort TMF ends it (ABORTED), the retry succeeds. The C
# driver's eh_timed_out restarts the timer while the device lives: no TMF, the
# read waits for the device (held 12 s here; held forever it waits forever).
tmfs() { ctl '{"cmd":"status"}' | sed -n 's/.*"tmfs":\([0-9]*\).*/\1/p'; }
t0=$(tmfs)
echo 5 >"/sys/block/${d0##*/}/device/timeout"
if is_c; then
	hold='"ms":12000,' held="for 12 s" ends="when the device answers" tmf="without a TMF" more=-eq
else
	hold='' held="until a TMF" ends="after error handling" tmf="through a TMF" more=-gt
fi
check "fault: hold the next READ(10) on 0:0 $held" \
	fault_ok "{\"cmd\":\"fault\",\"fault\":\"hold\",$hold\"target\":0,\"lun\":0,\"opcode\":40}"
check "the held read completes $ends" \
	timeout 120 dd if="$d0" of=/dev/null bs=4k count=1 skip=200 iflag=direct status=none
t1=$(tmfs)
check "...$tmf ($t0 -> $t1 TMFs)" test "${t1:-0}" "$more" "${t0:-0}"
new_dmesg | grep -iE 'abort|reset|timing out|timed out' | tail -n 5 | diag

check "no kernel warnings, oopses or lockdep reports" no_kernel_reports
ctl '{"cmd":"status"}' | diag
check "rmmod $MOD" unload
