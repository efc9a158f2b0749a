#!/bin/bash
# Guest test (issue 5, PM freeze/restore): suspends with pm_test=devices (the
# devices' freeze and restore callbacks run, the machine does not sleep), once
# to "freeze" and once to "mem", and checks that the data written before reads
# back after each resume, that new writes land, and that the kernel reported
# nothing.
#
# The guest's root is virtme-ng's 9p share, and the 9p virtio driver has no
# freeze/restore: the virtio core resets its device on restore and every later
# access to the root hangs (with the C driver as with ours). So before the
# first suspend every tool moves to a tmpfs (a static busybox, its applets
# first on PATH), the body is one function (bash reads a script file as it
# runs it, a function it has parsed whole), and this test ends its guest.
#
# QEMU configuration (run_tests.sh "pm"): one file-backed disk, serial vsrs-f0.
cd "$(dirname "$0")" && . ./lib.sh

main() {
	begin pm
	check "load $MOD" load
	check "the disk appears" wait_disks 1
	dev=$(disks_with_serial vsrs-f0)
	check "fio verify on $dev before the suspends" fio_verify 2 4M "$dev"

	tmp=/dev/shm/vsrs-pm
	mkdir -p "$tmp/bin" && cp /bin/busybox "$tmp/" && "$tmp/busybox" --install -s "$tmp/bin" ||
		{ not_ok "a static busybox in $tmp (busybox-static)"; exit 1; }
	PATH=$tmp/bin
	hash -r
	read -r states </sys/power/state

	# Reads N MiB at MiB offset OFF of the disk, directly: prints its md5, or
	# nothing when the read fails or hangs for 120 s.
	disk_md5() { # OFF N
		timeout 120 dd if="$dev" bs=1M skip="$1" count="$2" iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1
	}
	# Writes N MiB of FILE at MiB offset OFF, directly, in 120 s at most.
	disk_write() { # FILE OFF
		timeout 120 dd if="$1" of="$dev" bs=1M seek="$2" oflag=direct conv=fsync 2>/dev/null
	}

	dd if=/dev/urandom of="$tmp/before" bs=1M count=8 2>/dev/null
	want=$(md5sum <"$tmp/before" | cut -d' ' -f1)
	check "write 8 MiB at 64 MiB before the suspends" disk_write "$tmp/before" 64

	off=80
	for state in freeze mem; do
		case " $states " in
		*" $state "*) ;;
		*) ok "pm $state: # SKIP /sys/power/state offers only: $states"; continue ;;
		esac
		echo devices >/sys/power/pm_test
		if (echo "$state" >/sys/power/state) 2>"$tmp/err"; then
			ok "pm $state (pm_test=devices): suspend and resume"
		else
			not_ok "pm $state (pm_test=devices): suspend and resume"
			diag <"$tmp/err"
		fi
		echo none >/sys/power/pm_test
		expect_eq "pm $state: what was written before reads back after resume" "$(disk_md5 64 8)" "$want"
		dd if=/dev/urandom of="$tmp/after" bs=1M count=4 2>/dev/null
		check "pm $state: a write after resume completes" disk_write "$tmp/after" "$off"
		expect_eq "pm $state: and reads back" "$(disk_md5 "$off" 4)" "$(md5sum <"$tmp/after" | cut -d' ' -f1)"
		check "pm $state: the disk is still there" test -b "$dev"
		off=$((off + 4))
	done

	check "dmesg: no WARN, BUG, KASAN, lockdep or hung-task report" no_kernel_reports
	check "kmemleak: no leak" kmemleak_clean
}
main; exit
