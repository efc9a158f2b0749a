#!/bin/bash
# Guest test (issue 7, the fault table): the test device (run_tests.sh gives
# it RAM disks at 0:0 and 0:1) lies in one way at a time about one READ(10)
# of 0:1. For each fault: the guest survives, the other disk keeps working,
# and a "# table: ..." line records what the read got and what the kernel
# said (Documentation/virtio_scsi_rs.rst, "Faults", is made from these lines
# for both drivers). With virtio_scsi_rs the lie must be caught: one dmesg
# line naming the device, and the read returns the data written (the
# midlayer retries a command the driver failed with DID_ERROR; a fault hits
# one command only). With the C driver only survival is checked: its
# behaviour is what the table records.
#
# Environment:
#   VSRS_DRIVER       c: the in-tree C driver; else virtio_scsi_rs
#   VSRS_INSMOD_ARGS  module parameters for virtio_scsi_rs (run_tests.sh:
#                     tmf_timeout=5, for the late TMF)
cd "$(dirname "$0")" && . ./lib.sh

begin "testdev faults $MOD"
load_two_disks

# 64 KiB of known data at the start of 0:1.
dd if=/dev/urandom of=/tmp/pattern bs=64k count=1 status=none
want=$(md5sum </tmp/pattern | cut -d' ' -f1)
check "write 64 KiB of known data to $d1" dd if=/tmp/pattern of="$d1" bs=64k oflag=direct conv=fsync status=none

# read_d1: the first 64 KiB of $d1, read directly within 120 s; prints
# "ok" (the data written), "wrong data", "I/O error" or "hung".
read_d1() {
	local sum st
	timeout 120 dd if="$d1" of=/tmp/read.data bs=64k count=1 iflag=direct status=none 2>/tmp/read.err
	st=$?
	sum=$(md5sum </tmp/read.data | cut -d' ' -f1)
	rm -f /tmp/read.data
	if [ "$st" = 124 ]; then echo hung
	elif [ "$st" != 0 ]; then echo "I/O error"
	elif [ "$sum" = "$want" ]; then echo ok
	else echo "wrong data"; fi
}

# said_since_mark REGEX: the kernel logged a line matching REGEX since $mark.
said_since_mark() { dmesg | tail -n +"$((mark + 1))" | grep -qE "$1"; }
# reset_done: the driver reset the device after a broken queue since $r0.
reset_done() { [ "$(stat_of broken_queue_resets)" -gt "$r0" ]; }

# inject NAME JSON: sets the fault (a rule for one READ(10) of 0:1), reads,
# clears, records a table line; sets $got (read_d1) and $mark (dmesg lines
# before).
inject() {
	local said
	mark=$(dmesg | wc -l)
	if ! fault_ok "{\"cmd\":\"fault\",\"fault\":$2,\"target\":0,\"lun\":1,\"opcode\":40}"; then
		not_ok "fault $1: the test device takes it"
		got="not injected"
		return
	fi
	got=$(read_d1)
	said=$(dmesg | tail -n +"$((mark + 1))" | grep -v 'vsrs-tap: ' | grep -E 'virtio|sd |scsi|WARNING|BUG' |
		sed 's/^\[[ 0-9.]*\] //' | head -n 3 | tr '\n' '|')
	ctl_ok '{"cmd":"clear"}' >/dev/null
	echo "table: $MOD | $1 | read: $got | dmesg: ${said:-nothing}" | diag
}

# fault NAME JSON EXPECT [KEYWORD]: inject, then $d0 must still read and,
# with virtio_scsi_rs, the read must give EXPECT (read_d1's words) and a
# dmesg line naming the device must say KEYWORD.
fault() {
	inject "$1" "$2"
	check "fault $1: $d0 still reads" dd if="$d0" of=/dev/null bs=64k count=4 iflag=direct status=none
	is_c && return
	expect_eq "fault $1: the read gives" "$got" "$3"
	[ -z "${4:-}" ] || check "fault $1: dmesg names the device and says \"$4\"" \
		said_since_mark "virtio[0-9]+: device error #[0-9]+: .*$4"
}

fault "used length past the buffers" '"used_len","extra":4096' ok "used length"
fault "sense_len 200 (buffer 96)" '"sense_len","sense_len":200' ok "sense_len 200"
fault "residual past the transfer" '"residual","extra":4096' ok "residual"
fault "undefined response code 0x42" '"response","code":66' ok "unknown response code 66"
# The midlayer takes a status it does not know to its error handler (a LUN
# reset, then its own TEST UNIT READY); virtio_scsi_rs fails the command as
# a violation instead, and the midlayer retries it.
fault "undefined SCSI status 0x7f" '"status","status":127' ok "undefined SCSI status 0x7f"
# INCORRECT_LUN is a defined answer: DID_BAD_TARGET, which the midlayer does
# not retry (the C driver does not know the code: DID_ERROR, retried).
fault "response INCORRECT_LUN" '"response","code":12' "I/O error"
check "after the faults: $d1 reads the data written" test "$(read_d1)" = ok

# More events than posted buffers: the device drops the excess and sets
# EVENTS_MISSED on the next one; the driver rescans everything.
m0=$(stat_of events_missed)
check "event flood (posted buffers + 16)" ctl_ok '{"cmd":"flood","target":0,"lun":1}'
sleep 3
check "after the flood: both disks are still there" two_disks
is_c || check "after the flood: events_missed counted ($m0 -> $(stat_of events_missed))" \
	missed_since "$m0"

# A TMF the device answers late (issue 4): the read is held until a TMF, and
# the first TMF is itself held 15 s, longer than tmf_timeout (5 s): the abort
# gives up, escalates to a LUN reset, which ends the read; the abort's answer
# arrives later and must be counted, not completed twice.
if is_c; then
	ok "late TMF: # SKIP the C driver's eh_timed_out resets the timer while the device lives: the held read would wait forever"
else
	t0=$(stat_of tmf_timeouts) l0=$(stat_of late_tmf_answers)
	echo 5 >"/sys/block/${d1##*/}/device/timeout"
	check "late TMF: hold the next TMF 15 s" fault_ok '{"cmd":"fault","fault":"tmf_hold","ms":15000}'
	check "late TMF: hold the next READ(10) of 0:1 until a TMF" \
		fault_ok '{"cmd":"fault","fault":"hold","target":0,"lun":1,"opcode":40}'
	got=$(read_d1)
	echo "table: $MOD | TMF answered after 15 s (tmf_timeout 5 s) | read: $got | stats: tmf_timeouts $t0 -> $(stat_of tmf_timeouts)" | diag
	expect_eq "late TMF: the held read ends through error handling with the data" "$got" ok
	check "late TMF: the wait for the TMF expired (tmf_timeouts $t0 -> $(stat_of tmf_timeouts))" \
		test "$(stat_of tmf_timeouts)" -gt "$t0"
	wait_late() { [ "$(stat_of late_tmf_answers)" -gt "$l0" ]; }
	check "late TMF: its answer, 15 s later, is counted (late_tmf_answers)" wait_for 30 wait_late
	ctl_ok '{"cmd":"clear"}' >/dev/null
	check "late TMF: $d1 reads the data written afterwards" test "$(read_d1)" = ok
fi

# A TMF answered twice: the second answer names a descriptor the driver no
# longer has, and the virtio core breaks the control queue. virtio_scsi_rs
# resets the device at once (not at the next host reset, after every TMF
# until then has failed), and TMFs work again. The C driver's control queue
# stays broken: reported.
r0=$(stat_of broken_queue_resets)
mark=$(dmesg | wc -l)
check "TMF answered twice: the test device takes the fault" fault_ok '{"cmd":"fault","fault":"tmf_stray"}'
bounded 60 sg_reset -d "$d1" >/dev/null 2>&1
if is_c; then
	sleep 5
	echo "after a TMF answered twice: a LUN reset $(bounded 60 sg_reset -d "$d1" >/dev/null 2>&1 && echo succeeds || echo fails)" | diag
else
	check "TMF answered twice: the driver resets the device (broken_queue_resets $r0 -> $(stat_of broken_queue_resets))" \
		wait_for 30 reset_done
	check "TMF answered twice: dmesg names the broken control queue" \
		said_since_mark 'virtio[0-9]+: control queue 0 is broken'
	check "TMF answered twice: afterwards a LUN reset succeeds" bounded 60 sg_reset -d "$d1"
	expect_eq "TMF answered twice: afterwards $d1 reads the data written" "$(read_d1)" ok
fi
ctl_ok '{"cmd":"clear"}' >/dev/null

# Last, as it may break the queue for good: a second used-ring entry for a
# descriptor already completed. The virtio core marks the queue broken
# ("id N is not a head!"); virtio_scsi_rs resets the device, and its disks
# work again.
r0=$(stat_of broken_queue_resets)
inject "completion of a descriptor not submitted" '"stray"'
if is_c; then
	echo "after the stray completion: $d1 $(read_d1), $d0 $(dd if="$d0" of=/dev/null bs=4k count=1 iflag=direct status=none 2>&1 && echo reads || echo fails)" | diag
else
	check "stray completion: the driver resets the device (broken_queue_resets $r0 -> $(stat_of broken_queue_resets))" \
		wait_for 30 reset_done
	check "stray completion: dmesg names the broken queue" \
		said_since_mark 'virtio[0-9]+: request queue [0-9]+ is broken'
	expect_eq "stray completion: afterwards $d1 reads the data written" "$(read_d1)" ok
	check "stray completion: afterwards $d0 reads" dd if="$d0" of=/dev/null bs=64k count=16 iflag=direct status=none
fi

if is_c; then
	new_dmesg | known_reports | grep -E "$report_re" | head -n 5 | sed 's/^/C driver kernel report: /' | diag
else
	check "no kernel warnings, oopses or lockdep reports" no_kernel_reports
	check "kmemleak: no leak" kmemleak_clean
fi
