#!/bin/bash
# Guest-side helpers for the virtio_scsi_rs selftests: TAP result lines,
# module load/unload, dmesg and kmemleak checks. Sourced by the guest tests;
# run_tests.sh (host side) numbers the lines and adds the plan.
#
# Result lines are "ok - DESC" / "not ok - DESC"; "# ..." lines are diagnostics.

KO=${VSRS_KO:?VSRS_KO must name virtio_scsi_rs.ko}
MOD=virtio_scsi_rs

ok() { echo "ok - $*"; }
not_ok() { echo "not ok - $*"; }
diag() { sed 's/^/# /'; }

# check DESC COMMAND...: one result line from COMMAND's status; its output
# goes to diagnostics when it fails.
check() {
	local desc=$1 out; shift
	if out=$("$@" 2>&1); then
		ok "$desc"
	else
		not_ok "$desc"
		[ -n "$out" ] && echo "$out" | diag
	fi
	return 0
}

debugfs() {
	mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug
}

# Start of a guest test: dmesg marked, kmemleak's current reports cleared.
begin() {
	debugfs
	echo "vsrs-test: begin $*" >/dev/kmsg
	dmesg_start=$(dmesg | wc -l)
	[ -w /sys/kernel/debug/kmemleak ] && echo clear >/sys/kernel/debug/kmemleak
	return 0
}

# dmesg since begin().
new_dmesg() { dmesg | tail -n +"$((dmesg_start + 1))"; }

# Fails when the kernel reported a warning, bug, sanitizer or lockdep splat,
# or a hung task since begin().
no_kernel_reports() {
	local bad
	bad=$(new_dmesg | grep -E 'WARNING:|BUG:|KASAN|UBSAN|Oops|general protection|lockdep|possible (recursive|circular) locking|inconsistent lock state|blocked for more than|Call Trace' || true)
	[ -z "$bad" ] || { new_dmesg | tail -n 60; return 1; }
}

# Fails when kmemleak finds unreferenced objects allocated since begin().
kmemleak_clean() {
	local f=/sys/kernel/debug/kmemleak report
	[ -e "$f" ] || { echo "kmemleak is not available in this kernel"; return 1; }
	# An object must be found unreferenced by two scans to be reported.
	echo scan >"$f"; sleep 1; echo scan >"$f"
	report=$(cat "$f")
	[ -z "$report" ] || { echo "$report" | head -n 60; return 1; }
}

load() { insmod "$KO" "$@"; }
unload() { rmmod "$MOD"; }
loaded() { grep -q "^$MOD " /proc/modules; }

# The virtio devices that are virtio-scsi (device id 8).
scsi_virtio_devs() {
	local d
	for d in /sys/bus/virtio/devices/*; do
		[ "$(cat "$d/device")" = 0x0008 ] && echo "$d"
	done
	return 0
}
