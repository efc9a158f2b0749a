#!/bin/bash
# Guest test (issue 4, error handling): a command the host holds (blkdebug
# breakpoint through HMP qemu-io, run-guest --ctl) times out and the abort
# path runs; SCSI resets (sg_reset -d/-t/-H) under fio verify load.
#
# QEMU configuration (run_tests.sh "tmf"): controller vs0 with a blkdebug disk
# (scsi-hd id bd0, serial vsrs-b0) at 0:0 and a file-backed disk (serial
# vsrs-f0) at 0:1.
#
# Environment:
#   VSRS_TMF        sub-tests, in order (default: abort resets many)
#   VSRS_TIMEOUT    the held disk's command timeout in s (default 5)
#   VSRS_HOLD       how long the host holds the read in s (default 40)
#   VSRS_RESETS     resets in a row for "many" (default 100)
#   VSRS_INSMOD_ARGS module parameters for virtio_scsi_rs
cd "$(dirname "$0")" && . ./lib.sh

begin tmf
check "load $MOD${VSRS_INSMOD_ARGS:+ $VSRS_INSMOD_ARGS}" load_with_args
check "the 2 disks appear" wait_disks 2
check "the control channel to QEMU's monitor (vsrs.ctl) opens" ctl_open
bdev=$(disks_with_serial vsrs-b0)
fdev=$(disks_with_serial vsrs-f0)
echo "held disk $bdev, other disk $fdev" | diag
udevadm settle 2>/dev/null

eh_stats() {
	is_c && return 0
	echo "stats: $(for s in aborts lun_resets target_resets host_resets tmf_timeouts events events_missed; do printf '%s=%s ' $s "$(stat_of $s)"; done)"
}

abort() {
	local to=${VSRS_TIMEOUT:-5} hold=${VSRS_HOLD:-40} dd_pid st mark a0 r
	echo "$to" >"/sys/block/${bdev##*/}/device/timeout"
	a0=$(stat_of aborts)
	if ! r=$(hmp 'qemu-io -d bd0 "break read_aio t1"'); then
		not_ok "hmp qemu-io -d bd0 \"break read_aio t1\""; echo "$r" | diag; return
	fi
	ok "hmp qemu-io -d bd0 \"break read_aio t1\""
	mark=$(dmesg | wc -l)
	dd if="$bdev" of=/dev/null bs=4k skip=1000 count=1 iflag=direct status=none 2>/tmp/dd.err &
	dd_pid=$!
	# Held: the read must not complete while the host holds it.
	sleep 2
	check "the read is held by the host (dd still running after 2 s)" kill -0 "$dd_pid"
	sleep "$hold"
	echo "dmesg while the read was held ${hold} s (timeout ${to} s):" | diag
	dmesg | tail -n +"$((mark + 1))" | tail -n 30 | diag
	eh_stats | diag
	if is_c; then
		# The C driver's eh_timed_out resets the timer for as long as the
		# device is alive: no abort, the read simply waits.
		check "C driver: no abort while held (eh_timed_out keeps resetting the timer)" \
			bash -c "! dmesg | tail -n +$((mark + 1)) | grep -qi 'abort'"
		check "C driver: the read is still pending after $hold s" kill -0 "$dd_pid"
	else
		check "the timeout ran the abort path (stats aborts $a0 -> $(stat_of aborts))" \
			test "$(stat_of aborts)" -gt "$a0"
		check "dmesg: an abort line" bash -c "dmesg | tail -n +$((mark + 1)) | grep -qi 'abort'"
	fi
	local before; before=$(kill -0 "$dd_pid" 2>/dev/null && echo pending || echo finished)
	if ! r=$(hmp 'qemu-io -d bd0 "resume t1"'); then
		not_ok "hmp qemu-io -d bd0 \"resume t1\""; echo "$r" | diag
	else
		ok "hmp qemu-io -d bd0 \"resume t1\" (the read was $before before)"
	fi
	wait_deadline "$dd_pid" 60
	st=$?
	if [ "$st" = 124 ]; then
		not_ok "the held read finishes within 60 s of resume"
	else
		ok "the held read finishes (dd status $st: $(head -c 200 /tmp/dd.err | tr '\n' ' '))"
	fi
	sleep 2
	echo "dmesg after resume:" | diag
	dmesg | tail -n +"$((mark + 1))" | tail -n 30 | diag
	eh_stats | diag
	check "dmesg: no WARN/BUG after resume (nothing completed twice)" no_kernel_reports
	if ! is_c; then
		check "debugfs: every submitted command completed exactly once" bash -c \
			"[ \"\$(cat /sys/kernel/debug/virtio_scsi_rs-*/stats | awk '\$1 ~ /^[0-9]+\$/ {d += \$2 - \$3} END {print d + 0}')\" = 0 ]"
		expect_eq "debugfs: no command came back that the driver did not hold (untracked)" "$(untracked)" 0
	fi
	echo 30 >"/sys/block/${bdev##*/}/device/timeout"
	check "fio verify on $bdev afterwards" fio_verify 2 8M "$bdev"
}

# fio verify on both disks in the background; fio_wait checks it.
fio_start() {
	fio_verify 2 "${1:-16M}" "$bdev" "$fdev" >/tmp/fio.bg 2>&1 &
	fio_pid=$!
}
fio_wait() { # DESC
	wait_deadline "$fio_pid" 600
	case $? in
	0) ok "$1: fio crc32c verify, 0 mismatches" ;;
	124) not_ok "$1: fio finishes (hung)" ;;
	*) not_ok "$1: fio crc32c verify"; tail -n 30 /tmp/fio.bg | diag ;;
	esac
}

resets() {
	local kind opt s0 s
	for kind in d:lun_resets t:target_resets H:host_resets; do
		opt=${kind%%:*} s=${kind#*:}
		s0=$(stat_of "$s")
		fio_start 16M
		sleep 3
		check "sg_reset -$opt $bdev under fio load succeeds" sg_reset -"$opt" "$bdev"
		is_c || check "stats $s moved ($s0 -> $(stat_of "$s"))" test "$(stat_of "$s")" -gt "$s0"
		fio_wait "sg_reset -$opt"
	done
	eh_stats | diag
}

many() {
	local n=${VSRS_RESETS:-100} i fails=0 opts=(d t H) runs=1 fio_fail=0
	fio_start 64M
	sleep 2
	for i in $(seq 1 "$n"); do
		sg_reset -"${opts[i % 3]}" "$bdev" >/dev/null 2>&1 || fails=$((fails + 1))
		if ! kill -0 "$fio_pid" 2>/dev/null; then
			wait "$fio_pid" || { fio_fail=$((fio_fail + 1)); tail -n 20 /tmp/fio.bg | diag; }
			fio_start 64M; runs=$((runs + 1))
		fi
	done
	expect_eq "$n resets in a row (-d/-t/-H in turn) under fio: all succeed" "$fails failed" "0 failed"
	expect_eq "fio runs that finished during the resets: $((runs - 1)), none failed verification" "$fio_fail failed" "0 failed"
	fio_wait "$n resets, last fio run"
	eh_stats | diag
	check "kmemleak clean after $n resets" kmemleak_clean
}

for t in ${VSRS_TMF:-abort resets many}; do
	case $t in
	abort) abort ;;
	resets) resets ;;
	many) many ;;
	esac
done
check "dmesg: no WARN, BUG, KASAN, lockdep or hung-task report" no_kernel_reports
check "unload $MOD" unload
