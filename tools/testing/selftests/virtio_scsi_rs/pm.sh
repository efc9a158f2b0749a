#!/bin/bash
# Guest test (issue 5, PM freeze/restore): suspends with pm_test=devices (the
# devices' freeze and restore callbacks run, the machine does not sleep) to
# $VSRS_PM_STATE ("freeze" or "mem"), and checks that the data written before
# reads back after the resume, that new writes land, and that the kernel
# reported nothing.
#
# The guest's root is virtme-ng's 9p share, and the 9p virtio driver has no
# freeze/restore: the virtio core resets its device on restore and every later
# access to the root hangs, killably, so the hung-task detector stays silent
# (with the C driver as with ours). A page of bash or of its libraries that is
# not yet in memory is such an access, and a task stuck there cannot be
# frozen, so a second suspend in the same guest fails (EBUSY): one sleep state
# per guest. The test runs in two phases: the
# first loads the driver, writes the data and copies everything the second
# needs to a tmpfs (bash, its libraries and loader, a static busybox whose
# applets come first on PATH, this script and lib.sh); the second, exec'd
# from there, suspends, checks and powers the guest off (lib.sh power_off).
#
# QEMU configuration (run_tests.sh "pm freeze", "pm mem"): one file-backed
# disk, serial vsrs-f0.
cd "$(dirname "$0")" && . ./lib.sh
tmp=/dev/shm/vsrs-pm
state=${VSRS_PM_STATE:-freeze}

# Reads N MiB at MiB offset OFF of the disk, directly: prints its md5, or
# nothing when the read fails or hangs for 120 s.
disk_md5() { # OFF N
	timeout 120 dd if="$dev" bs=1M skip="$1" count="$2" iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1
}
# Writes N MiB of FILE at MiB offset OFF, directly, in 120 s at most.
disk_write() { # FILE OFF
	timeout 120 dd if="$1" of="$dev" bs=1M seek="$2" oflag=direct conv=fsync 2>/dev/null
}

# Phase 1 (on the 9p root): load, write, copy to the tmpfs, exec phase 2.
before() {
	begin "pm $state"
	check "load $MOD" load
	check "the disk appears" wait_disks 1
	dev=$(disks_with_serial vsrs-f0)
	check "fio verify on $dev before the suspends" fio_verify 2 4M "$dev"

	mkdir -p "$tmp"
	dd if=/dev/urandom of="$tmp/before" bs=1M count=8 2>/dev/null
	want=$(md5sum <"$tmp/before" | cut -d' ' -f1)
	check "write 8 MiB at 64 MiB before the suspends" disk_write "$tmp/before" 64

	export dev want dmesg_start VSRS_PM_STATE=$state VSRS_PM_PHASE=2
	exec_from_tmpfs "$tmp" pm.sh
}

# Phase 2 (everything from the tmpfs): the suspend.
after() {
	local states
	read -r states </sys/power/state
	case " $states " in
	*" $state "*)
		echo devices >/sys/power/pm_test
		if (echo "$state" >/sys/power/state) 2>"$tmp/err"; then
			ok "suspend to $state and resume (pm_test=devices)"
		else
			not_ok "suspend to $state and resume (pm_test=devices)"
			diag <"$tmp/err"
		fi
		echo none >/sys/power/pm_test
		expect_eq "what was written before reads back after resume" "$(disk_md5 64 8)" "$want"
		dd if=/dev/urandom of="$tmp/after" bs=1M count=4 2>/dev/null
		check "a write after resume completes" disk_write "$tmp/after" 80
		expect_eq "and reads back" "$(disk_md5 80 4)" "$(md5sum <"$tmp/after" | cut -d' ' -f1)"
		check "the disk is still there" test -b "$dev"
		;;
	*) ok "suspend to $state: # SKIP /sys/power/state offers only: $states" ;;
	esac

	check "dmesg: no WARN, BUG, KASAN, lockdep or hung-task report" no_kernel_reports
	check "kmemleak: no leak" kmemleak_clean
	# virtme-ng's way out of the guest needs the root: power off instead.
	power_off
}

if [ "${VSRS_PM_PHASE:-1}" = 1 ]; then before; else after; fi
exit
