#!/bin/bash
# Guest test (issue 15, "Shutdown and remove under I/O"): lifecycle steps that
# race I/O, events or a recovery reset, with the test device (tools/testdev;
# run_tests.sh gives it RAM disks at 0:0 and 0:1, serials tdev-0-0, tdev-0-1).
# VSRS_RACE picks one race per guest:
#
#   poweroff  fio (random writes, crc32c verify, 4 jobs per disk, depth 32) on
#             both disks, then "poweroff -f" while it runs. Checked here: the
#             I/O reaches the device, fio has found no error, the kernel
#             reported nothing. The power-off itself ends the guest: the host
#             (run_tests.sh, post_poweroff) checks that the guest went off by
#             itself and that its console showed no report after
#             "vsrs-test: power off", and prints what it showed.
#   flood     flood commands (more PARAM_CHANGE events than posted buffers, so
#             EVENTS_MISSED follows) in a loop from a background job, while
#             the module is removed and loaded again VSRS_CYCLES times, then
#             while the device is unbound and bound through sysfs as many
#             times: each removal ends within 120 s, the disks come back and
#             read the data written before; no kernel report, kmemleak clean.
#   scan      a device a scan is still creating is on the host's list before
#             its budget map exists; a command the driver sent one then was
#             finished into the map allocated meanwhile, a write far out of
#             bounds (a panic in about 1 of 60 flood removals; the window is
#             too short to open on demand). First, deterministic: the scan of
#             an absent LUN (0:5) has its INQUIRY held 10 s while flood
#             commands make the driver ask every LUN it knows INQUIRY; it must
#             leave 0:5 to the scan (luns_gone unchanged, no such device).
#             Then flood commands run as above while user space runs full
#             host scans (a temporary device per absent target) in a loop for
#             VSRS_SCAN_SECONDS: both must run, the disks read the data
#             written before; no kernel report, kmemleak clean.
#   stray     a stray completion (a used-ring entry for a descriptor the driver
#             never submitted) on one read breaks the request queue and queues
#             the recovery reset; rmmod (then, in other cycles, an unbind) runs
#             as soon as that read returns. The next scan command (INQUIRY) is
#             held 3 s by the device, so the rescan the reset starts is still
#             running when the removal begins. Then (deterministic) the stray
#             on the SYNCHRONIZE CACHE that rmmod itself sends: the queue
#             breaks during the removal. Each removal ends within 120 s, the
#             disks come back and read the data written before; no kernel
#             report, kmemleak clean.
#   freeze    PM freeze (pm_test=devices) with the stray on the SYNCHRONIZE
#             CACHE that sd's suspend sends: the queue breaks after the
#             freezable workqueues are frozen, and the SYNCHRONIZE CACHE is
#             answered device-busy until the recovery reset has run (it is not
#             on a freezable workqueue, or the suspend would wait for ever).
#             The suspend must end,
#             the data written before read back on both disks, writes after
#             the resume land; no kernel report, kmemleak clean. Runs from a
#             tmpfs and powers the guest off, as pm.sh (same 9p root trap).
#             run_tests.sh gives the device num_queues=1, so that both disks'
#             commands share the queue that breaks.
#
# Environment:
#   VSRS_RACE         poweroff | flood | scan | stray | freeze
#   VSRS_CYCLES       removal cycles for flood and stray (default 3)
#   VSRS_SCAN_SECONDS how long scan runs host scans (default 60)
#   VSRS_FLOOD_PAUSE  seconds between two flood commands (default 0.1)
#   VSRS_RACE_DISKS   the test device's disks as T-L (default "0-0 0-1"; a
#                     control run of freeze with one disk: 0-0)
#   VSRS_DRIVER       c: the in-tree C driver (a reference; no counters)
#   VSRS_INSMOD_ARGS  module parameters for virtio_scsi_rs
cd "$(dirname "$0")" && . ./lib.sh
race=${VSRS_RACE:?VSRS_RACE must be poweroff, flood, scan, stray or freeze}
cycles=${VSRS_CYCLES:-3}
# The test device's disks (T-L); a control run of "freeze" with one disk: 0-0.
keys=${VSRS_RACE_DISKS:-0-0 0-1}

two_disks() { local k; for k in $keys; do has_disk "$k" || return 1; done; }

# 1 MiB of random data at MiB 32 of each disk, kept in $pat.KEY.
pat=/tmp/vsrs-race.pat
write_patterns() {
	local k d
	for k in $keys; do
		d=$(dev_of "$k")
		[ -n "$d" ] || { echo "no disk $k"; return 1; }
		head -c 1M /dev/urandom >"$pat.$k"
		timeout 120 dd if="$pat.$k" of="$d" bs=1M seek=32 oflag=direct conv=fsync status=none ||
			{ echo "$k ($d): write failed"; return 1; }
	done
}
# Both disks there and reading back the patterns (within 60 s each).
patterns_read_back() {
	local k d
	for k in $keys; do
		d=$(dev_of "$k")
		[ -n "$d" ] || { echo "no disk $k"; tdev_disks; return 1; }
		timeout 60 dd if="$d" bs=1M skip=32 count=1 iflag=direct status=none >"$pat.back" ||
			{ echo "$k ($d): read failed or hung"; return 1; }
		cmp -s "$pat.$k" "$pat.back" || { echo "$k ($d): the data differs"; return 1; }
	done
}

# The virtio device the test device is (the only virtio-scsi one here).
vdev_name() { local d; d=$(scsi_virtio_devs | head -n 1); echo "${d##*/}"; }
drv_dir=/sys/bus/virtio/drivers/$MOD

# line_of MARK REGEX: the number (after MARK) of the first such line, or 0.
line_of() { dmesg | tail -n +"$(($1 + 1))" | grep -nE -m1 "$2" | cut -d: -f1 | grep . || echo 0; }

# Kernel stacks of the tasks stuck in D state (as diagnostics).
stuck_stacks() {
	local p s
	for p in /proc/[0-9]*; do
		read -r s <"$p/stat" 2>/dev/null || continue
		s=${s##*) }
		[ "${s%% *}" = D ] || continue
		echo "task ${p#/proc/} ($(cat "$p/comm" 2>/dev/null)) in D state:"
		cat "$p/stack" 2>/dev/null
	done
}

# wait_job PID SECONDS: waits for a background job of this shell; its exit
# status, or 124 if it still runs after SECONDS of wall time (lib.sh's
# wait_deadline counts sleeps, which take much longer in a starved guest).
wait_job() {
	local end=$((SECONDS + $2))
	while kill -0 "$1" 2>/dev/null; do
		[ "$SECONDS" -lt "$end" ] || return 124
		sleep 0.2
	done
	wait "$1"
}

# removal_ends DESC PID [THEN]: the removal job PID ends within 120 s with
# status 0. If it is still running, the stuck tasks' stacks are shown, THEN
# runs (the flood stops) and the job gets 120 s more, as a diagnostic.
removal_ends() {
	local st t0
	wait_job "$2" 120
	st=$?
	case $st in
	0) ok "$1"; return 0 ;;
	124) not_ok "$1 (still running after 120 s)" ;;
	*) not_ok "$1 (status $st)"; cat /tmp/vsrs-race.err 2>/dev/null | diag; return 0 ;;
	esac
	stuck_stacks | diag
	dmesg | grep -v 'vsrs-tap: ' | tail -n 40 | diag
	[ -z "${3:-}" ] || "$3"
	t0=$SECONDS
	wait_job "$2" 120
	case $? in
	124) echo "the removal is still running 120 s later${3:+ (after $3)}" ;;
	*) echo "the removal ended $((SECONDS - t0)) s later${3:+ (after $3)}" ;;
	esac | diag
	return 1
}

# The module is being removed (an rmmod that has not ended).
unloading() { grep -q "^$MOD .*Unloading" /proc/modules; }

# rmmod, retried as lib.sh's unload while udev holds a disk (EBUSY).
rmmod_now() {
	local i
	for i in $(seq 1 20); do
		rmmod "$MOD" 2>/tmp/vsrs-race.err && return 0
		grep -q 'in use' /tmp/vsrs-race.err || return 1
		udevadm settle 2>/dev/null
		sleep 0.5
	done
	return 1
}

# --- poweroff ------------------------------------------------------------------
poweroff_race() {
	local d0 d1 pid s0 args=() k
	d0=$(dev_of 0-0) d1=$(dev_of 0-1)
	for k in $d0 $d1; do args+=(--name="${k##*/}" --filename="$k"); done
	s0=$(submitted)
	fio --ioengine=libaio --direct=1 --rw=randwrite --bsrange=4k-64k --iodepth=32 \
		--numjobs=4 --size=16M --offset_increment=16M --verify=crc32c --verify_backlog=64 \
		--verify_fatal=1 --time_based --runtime=3600 --group_reporting \
		"${args[@]}" >/tmp/fio.out 2>&1 &
	pid=$!
	flowing() { [ "$(submitted)" -ge $((s0 + 2000)) ]; }
	check "fio's writes and verify reads reach the device (2000 commands within 120 s)" wait_for 120 flowing
	check "fio is still running (no I/O error, no verify failure)" kill -0 "$pid"
	echo "commands submitted since fio began: $(($(submitted) - s0))" | diag
	check "dmesg: no WARN, BUG, KASAN, lockdep or hung-task report before the power-off" no_kernel_reports
	# What follows is the host's to check (run_tests.sh post_poweroff). The
	# marker also makes run_tests.sh take the guest's status as 0.
	echo "vsrs-test: power off under I/O (fio pid $pid)" >/dev/kmsg
	poweroff -f
	sleep 120
	not_ok "poweroff -f powers the guest off"
	exit 1
}
# Commands submitted on every request queue (debugfs).
submitted() {
	cat /sys/kernel/debug/virtio_scsi_rs-*/stats 2>/dev/null | awk '$1 ~ /^[0-9]+$/ {s += $2} END {print s + 0}'
}

# --- flood ---------------------------------------------------------------------
flood_on=/tmp/vsrs-race.flooding
# A pause between floods, so the guest keeps some CPU for the test itself;
# each flood gives the driver a rescan of everything, which takes far longer.
flood_pause=${VSRS_FLOOD_PAUSE:-0.1}
# The background job: flood commands until $flood_on goes; counts them.
flood_loop() {
	local n=0 bad=0 reply
	exec 7<>"$tdev_port"
	while [ -e "$flood_on" ]; do
		echo '{"cmd":"flood","target":0,"lun":1}' >&7
		reply=
		read -r -t 20 reply <&7
		case $reply in *'"ok":true'*) n=$((n + 1)) ;; *) bad=$((bad + 1)) ;; esac
		sleep "$flood_pause"
	done
	echo "$n floods, $bad not answered ok" >/tmp/vsrs-race.floods
}
flood_start() {
	touch "$flood_on"
	flood_loop &
	flood_pid=$!
}
flood_stop() {
	rm -f "$flood_on"
	wait_job "$flood_pid" 60 || echo "the flood job did not stop" | diag
	echo "flood job: $(cat /tmp/vsrs-race.floods 2>/dev/null)" | diag
}

flood_race() {
	local i m0 v
	check "write 1 MiB of known data to each disk" write_patterns
	# (The C driver counts nothing: the flood gets 5 s.)
	missed() { if is_c; then sleep 5; else missed_since "$m0"; fi; }
	# A binding's counters start at 0; one that got its event buffers used
	# without an interrupt stays at 0 for good.
	hears() { is_c || [ "$(stat_of events_missed)" -gt 0 ] || [ "$(stat_of events)" -gt 0 ]; }
	# Nothing else may use the control port while the job has it open.
	m0=$(stat_of events_missed)
	flood_start
	check "the flood reaches the driver (events_missed moves within 60 s)" wait_for 60 missed
	for i in $(seq 1 "$cycles"); do
		echo "vsrs-test: flood cycle $i: rmmod" >/dev/kmsg
		rmmod_now &
		removal_ends "flood cycle $i: rmmod under the flood ends" $! flood_stop || break
		check "flood cycle $i: insmod under the flood" load_with_args
		check "flood cycle $i: the new binding gets events (within 120 s)" wait_for 120 hears
		check "flood cycle $i: both disks come back and read the data written" \
			wait_for 120 patterns_read_back
	done
	[ -e "$flood_on" ] && flood_stop
	if unloading; then
		not_ok "the unbind part: # SKIP the rmmod under the flood never ended"
		return
	fi
	# The module may have gone once the flood stopped.
	loaded || check "insmod for the unbind part" load_with_args
	check "disks 0:0 and 0:1 there" wait_for 120 two_disks
	v=$(vdev_name)
	m0=$(stat_of events_missed)
	flood_start
	check "the flood reaches the driver again (events_missed moves within 60 s)" wait_for 60 missed
	for i in $(seq 1 "$cycles"); do
		echo "vsrs-test: flood unbind $i" >/dev/kmsg
		(echo "$v" >"$drv_dir/unbind") 2>/tmp/vsrs-race.err &
		removal_ends "flood unbind $i: unbind of $v under the flood ends" $! flood_stop || break
		check "flood unbind $i: bind again under the flood" bash -c "echo $v >$drv_dir/bind"
		check "flood unbind $i: the new binding gets events (within 120 s)" wait_for 120 hears
		check "flood unbind $i: both disks come back and read the data written" \
			wait_for 120 patterns_read_back
	done
	[ -e "$flood_on" ] && flood_stop
	echo "driver (last binding): events $(stat_of events), events_missed $(stat_of events_missed)" | diag
	check "after the flood: both disks read the data written" wait_for 120 patterns_read_back
}

# --- scan ------------------------------------------------------------------------
faults_since() { [ "$(faults_hit)" -gt "$1" ]; }

# probing_left_alone HOST: a device the scan is still creating is the scan's.
# The INQUIRY of the scan of 0:5 (no such LUN) is held 10 s; meanwhile events
# are missed and the driver asks every LUN it knows INQUIRY. It must not ask
# 0:5: answered "not connected", it counted that device gone (luns_gone) and
# removed it, the scan's own. A rescan that begins after the scan ended shows
# the one during it over (one work item runs them in turn).
probing_left_alone() {
	local g0 m1 m2 f0 sp
	g0=$(stat_of luns_gone) m1=$(stat_of events_missed) f0=$(faults_hit)
	check "probe of 0:5: the test device holds its INQUIRY 10 s" \
		ctl_ok '{"cmd":"fault","fault":"hold","ms":10000,"target":0,"lun":5,"opcode":18}'
	echo "0 0 5" >"/sys/class/scsi_host/host$1/scan" &
	sp=$!
	check "probe of 0:5: its INQUIRY is held" wait_for 30 faults_since "$f0"
	ctl_ok '{"cmd":"flood","target":0,"lun":1}' >/dev/null
	check "probe of 0:5: events missed meanwhile (events_missed moves)" wait_for 60 missed_since "$m1"
	# (Not through check: its subshell cannot wait for this shell's job.)
	if wait_job "$sp" 60; then ok "probe of 0:5: the scan ends"; else not_ok "probe of 0:5: the scan ends"; fi
	m2=$(stat_of events_missed)
	ctl_ok '{"cmd":"flood","target":0,"lun":1}' >/dev/null
	check "probe of 0:5: a later rescan on events missed begins" wait_for 120 missed_since "$m2"
	check "probe of 0:5: the driver left the device being probed to the scan (luns_gone $g0 -> $(stat_of luns_gone))" \
		test "$(stat_of luns_gone)" = "$g0"
	check "probe of 0:5: no such device after it" no_scsi_dev "$1:0:0:5"
	# The flood job opens the port itself.
	exec 7>&-
}

scan_race() {
	local h m0 end n=0 secs=${VSRS_SCAN_SECONDS:-60}
	check "write 1 MiB of known data to each disk" write_patterns
	h=$(vsrs_hosts | head -n 1)
	is_c || probing_left_alone "$h"
	m0=$(stat_of events_missed)
	flood_start
	end=$((SECONDS + secs))
	while [ "$SECONDS" -lt "$end" ]; do
		echo "- - -" >"/sys/class/scsi_host/host$h/scan" || break
		n=$((n + 1))
	done
	flood_stop
	check "full host scans ran during the flood ($n in $secs s)" test "$n" -gt 0
	# (The C driver counts nothing.)
	is_c || check "the driver rescanned on events missed meanwhile (events_missed $m0 -> $(stat_of events_missed))" \
		missed_since "$m0"
	check "both disks read the data written" wait_for 120 patterns_read_back
}

# --- stray -----------------------------------------------------------------------
stray_race() {
	local mode i mark v r st b h0 t0
	check "write 1 MiB of known data to each disk" write_patterns
	v=$(vdev_name)
	for mode in rmmod unbind; do
		for i in $(seq 1 "$cycles"); do
			# The stray on the next READ(10) of 0:1; the rescan after the
			# reset starts with INQUIRY, held 3 s.
			fault_ok '{"cmd":"fault","fault":"stray","target":0,"lun":1,"opcode":40}' >/dev/null &&
				ctl_ok '{"cmd":"fault","fault":"hold","ms":3000,"opcode":18}' >/dev/null ||
				{ not_ok "stray $mode $i: the test device takes the faults"; continue; }
			mark=$(dmesg | wc -l)
			(
				dd if="$(dev_of 0-1)" of=/dev/null bs=4k count=1 skip=$((i * 64)) iflag=direct status=none
				echo "vsrs-test: stray $mode $i: removal begins" >/dev/kmsg
				if [ "$mode" = rmmod ]; then rmmod_now; else echo "$v" >"$drv_dir/unbind"; fi
			) 2>/tmp/vsrs-race.err &
			removal_ends "stray $mode $i: a read with a stray completion, then $mode at once: $mode ends" $! || return
			b=$(line_of "$mark" 'queue [0-9]+ is broken')
			st=$(line_of "$mark" "stray $mode $i: removal begins")
			r=$(line_of "$mark" 'device reset: its virtqueues work again')
			check "stray $mode $i: the stray broke the queue before the removal began (dmesg lines $b, $st)" \
				test "$b" -gt 0 -a "$b" -lt "$st"
			if [ "$r" = 0 ]; then
				echo "stray $mode $i: no recovery reset ran (the removal stopped it first)"
			elif [ "$r" -lt "$st" ]; then
				echo "stray $mode $i: the recovery reset ended before the removal began (its rescan held 3 s)"
			else
				echo "stray $mode $i: the recovery reset ended after the removal began"
			fi | diag
			ctl_ok '{"cmd":"clear"}' >/dev/null
			if [ "$mode" = rmmod ]; then
				check "stray $mode $i: insmod" load_with_args
			else
				check "stray $mode $i: bind again" bash -c "echo $v >$drv_dir/bind"
			fi
			check "stray $mode $i: both disks come back and read the data written" \
				wait_for 120 patterns_read_back
		done
	done

	# Deterministic: the queue breaks during the removal, on the first
	# SYNCHRONIZE CACHE(10) sd's removal sends (write cache on).
	h0=$(faults_hit)
	udevadm settle 2>/dev/null
	check "stray on rmmod's SYNCHRONIZE CACHE: the test device takes the fault" \
		ctl_ok '{"cmd":"fault","fault":"stray","target":0,"opcode":53}'
	mark=$(dmesg | wc -l)
	rmmod_now &
	removal_ends "stray on rmmod's SYNCHRONIZE CACHE: rmmod ends" $! || return
	t0=$(faults_hit)
	check "stray on rmmod's SYNCHRONIZE CACHE: the stray was sent (test device faults_hit $h0 -> $t0)" \
		test "${t0:-0}" -gt "${h0:-0}"
	dmesg | tail -n +"$((mark + 1))" | grep -v 'vsrs-tap: ' | tail -n 12 | diag
	ctl_ok '{"cmd":"clear"}' >/dev/null
	check "after it: insmod" load_with_args
	check "after it: both disks come back and read the data written" wait_for 120 patterns_read_back
}
faults_hit() { ctl '{"cmd":"status"}' | sed -n 's/.*"faults_hit":\([0-9]*\).*/\1/p'; }

# --- freeze ----------------------------------------------------------------------
tmp=/dev/shm/vsrs-race
# Phase 1 (on the 9p root): data written, everything phase 2 needs copied to a
# tmpfs (see pm.sh), phase 2 exec'd from there.
freeze_before() {
	check "write 1 MiB of known data to each disk" write_patterns
	udevadm settle 2>/dev/null
	export dmesg_start VSRS_RACE VSRS_PHASE=2
	exec_from_tmpfs "$tmp" races.sh "$pat".*
}

# Phase 2 (everything from the tmpfs): the suspend.
freeze_after() {
	local r0 h0 mark b fr x
	pat=$tmp/vsrs-race.pat
	r0=$(stat_of broken_queue_resets) h0=$(faults_hit)
	check "the stray on the next SYNCHRONIZE CACHE(10): the test device takes the fault" \
		ctl_ok '{"cmd":"fault","fault":"stray","target":0,"opcode":53}'
	mark=$(dmesg | wc -l)
	echo "vsrs-test: freeze begins" >/dev/kmsg
	echo devices >/sys/power/pm_test
	if (echo freeze >/sys/power/state) 2>"$tmp/err"; then
		ok "suspend to freeze and resume (pm_test=devices) with the queue broken during it"
	else
		not_ok "suspend to freeze and resume (pm_test=devices) with the queue broken during it"
		diag <"$tmp/err"
	fi
	echo none >/sys/power/pm_test
	check "the stray was sent during the suspend (test device faults_hit $h0 -> $(faults_hit))" \
		test "$(faults_hit)" -gt "${h0:-0}"
	# The premise: the queue broke after the freezable workqueues froze.
	b=$(line_of "$mark" 'queue [0-9]+ is broken') fr=$(line_of "$mark" 'Freezing remaining freezable tasks completed')
	check "the queue broke while the workqueues were frozen (dmesg line $b after line $fr)" \
		test "$b" -gt "$fr" -a "$fr" -gt 0
	reset_done() { [ "$(stat_of broken_queue_resets)" -gt "$r0" ]; }
	check "the recovery reset ran (broken_queue_resets $r0 -> $(stat_of broken_queue_resets))" \
		wait_for 60 reset_done
	check "both disks read the data written before the suspend" wait_for 60 patterns_read_back
	for x in $keys; do
		dd if=/dev/urandom of="$tmp/after.$x" bs=1M count=1 2>/dev/null
	done
	after_io() {
		local k d
		for k in $keys; do
			d=$(dev_of "$k")
			timeout 60 dd if="$tmp/after.$k" of="$d" bs=1M seek=40 oflag=direct conv=fsync 2>/dev/null &&
				timeout 60 dd if="$d" bs=1M skip=40 count=1 iflag=direct 2>/dev/null | cmp -s - "$tmp/after.$k" ||
				{ echo "$k ($d): write or read back failed"; return 1; }
		done
	}
	check "a write after the resume lands on each disk and reads back" after_io
	dmesg | tail -n +"$((mark + 1))" | grep -v 'vsrs-tap: ' | grep -E 'virtio|sd |PM:|Freez|Restart' | tail -n 20 | diag
	check "dmesg: no WARN, BUG, KASAN, lockdep or hung-task report" no_kernel_reports
	check "kmemleak: no leak" kmemleak_clean
	power_off
}

if [ "$race" = freeze ] && [ "${VSRS_PHASE:-1}" = 2 ]; then
	freeze_after
	exit
fi

begin "lifecycle races: $race $MOD"
check "load $MOD${VSRS_INSMOD_ARGS:+ $VSRS_INSMOD_ARGS}" load_with_args
check "disks $keys appear" wait_for 120 two_disks
udevadm settle 2>/dev/null
case $race in
poweroff) poweroff_race ;;
flood) flood_race ;;
scan) scan_race ;;
stray) stray_race ;;
freeze) freeze_before ;;
*) not_ok "VSRS_RACE=$race: unknown (poweroff, flood, scan, stray or freeze)"; exit 1 ;;
esac
if unloading; then
	echo "no rmmod at the end: an earlier one has not ended" | diag
elif loaded; then
	check "rmmod at the end" unload
fi
check "dmesg: no WARN, BUG, KASAN, lockdep or hung-task report" no_kernel_reports
check "kmemleak: no leak" kmemleak_clean
