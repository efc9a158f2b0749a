#!/bin/bash
# Guest test: repeated load / I/O / unload, and unload refused while one of
# the module's disks holds a mounted filesystem.
#
# Environment:
#   VSRS_CYCLES   load/unload cycles (default 20)
cd "$(dirname "$0")" && . ./lib.sh

begin lifecycle
cycles=${VSRS_CYCLES:-20}
cycle() {
	local i dev
	for i in $(seq 1 "$cycles"); do
		load || { echo "cycle $i: insmod failed"; return 1; }
		wait_disks 1 || { echo "cycle $i: no disk"; return 1; }
		dev=$(disks_with_serial vsrs-f0)
		[ -n "$dev" ] || { echo "cycle $i: the file-backed disk is missing"; return 1; }
		head -c 1M /dev/urandom >/tmp/cycle.pat
		dd if=/tmp/cycle.pat of="$dev" bs=64k seek=$((i * 16)) oflag=direct status=none &&
			dd if="$dev" of=/tmp/cycle.back bs=64k skip=$((i * 16)) count=16 iflag=direct status=none &&
			cmp -s /tmp/cycle.pat /tmp/cycle.back || { echo "cycle $i: data mismatch or I/O error"; return 1; }
		unload || { echo "cycle $i: rmmod failed"; return 1; }
	done
}
check "$cycles cycles of insmod, 1 MiB written and read back, rmmod" cycle

check "insmod" load
check "a disk appears" wait_disks 1
dev=$(disks_with_serial vsrs-f0)
mnt=$(mktemp -d)
check "mkfs.ext4 and mount $dev" bash -c "mkfs.ext4 -q -F '$dev' && mount '$dev' '$mnt' && echo data >'$mnt/file' && sync"
check "rmmod is refused while $dev is mounted" bash -c "! rmmod $MOD 2>&1"
check "the module is still loaded and the filesystem readable" bash -c "grep -q '^$MOD ' /proc/modules && [ \"\$(cat '$mnt/file')\" = data ]"
check "umount, then rmmod succeeds" bash -c "umount '$mnt' && rmmod $MOD"
check "kmemleak: no leak" kmemleak_clean
check "dmesg: no WARN, BUG, KASAN, lockdep or hung-task report" no_kernel_reports
