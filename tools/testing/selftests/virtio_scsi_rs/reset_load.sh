#!/bin/bash
# Guest test (case "reset under load virtio_scsi_rs"): device resets after a
# broken request queue, under fio load. On the test device's RAM disks at
# 0:0 and 0:1 (run_tests.sh; num_queues = vCPUs) fio runs random writes with
# crc32c verification, one job per vCPU and disk pinned to that CPU
# (cpus_allowed: blk-mq maps each CPU to one request queue, so every queue
# carries I/O), iodepth 64, while the device breaks a request queue
# VSRS_BREAKS times, one at a time: a
# second used-ring entry for a descriptor already completed ("stray"), which
# the virtio core finds ("id N is not a head!") and marks the queue broken;
# the driver resets the device and the commands it held are retried. The
# next break is set up only once the driver has said the reset is done.
# The module is loaded with max_breaks=1000 (default 3 per 60 s).
#
# Checked: every break is followed by a reset, fio finishes every run with 0
# verify errors, every request queue carried I/O, the disks read afterwards,
# dmesg and kmemleak clean. No timing is asserted (the time taken is shown).
# At the first kernel report (oops, BUG, warning) the breaks stop, the report
# is shown and the guest is rebooted at once (QEMU exits): the I/O of a task
# that oopsed never finishes, so fio and poweroff would wait for it.
#
# With VSRS_RESET_SCANS=1 (case "reset during scans virtio_scsi_rs") a loop
# of full host scans runs beside: each probes the 255 targets the device has
# not got through temporary devices that the midlayer destroys, so resets
# meet devices being destroyed. Blocking the host for a reset raced with
# that (a use-after-free of a destroyed request queue, found by the fuzzer).
# Also checked then: the scans ran, and only the two disks remain.
#
# Environment:
#   VSRS_BREAKS       breaks (default 200)
#   VSRS_RESET_SCANS  1: full host scans in a loop during the breaks
#   VSRS_FIO_SIZE     bytes each fio job writes and verifies per run (default 16M)
#   VSRS_INSMOD_ARGS  module parameters (run_tests.sh: max_breaks=1000)
cd "$(dirname "$0")" && . ./lib.sh

case_name="reset under load"
[ -n "${VSRS_RESET_SCANS:-}" ] && case_name="reset during scans"
begin_rs_only "$case_name $MOD" "the C driver leaves a broken queue broken"
NB=${VSRS_BREAKS:-200}
size=${VSRS_FIO_SIZE:-16M}

load_two_disks
files=(/sys/kernel/debug/virtio_scsi_rs-*/stats)
stats=${files[0]}
ncpu=$(nproc)
nq=$(awk '$1 ~ /^[0-9]+$/' "$stats" | wc -l)
echo "$ncpu vCPUs, $nq request queues; debugfs $stats" | diag

# A sleep without a process: read from a FIFO nobody writes.
mkfifo /tmp/reset_load.sleep
exec {sleep_fd}<>/tmp/reset_load.sleep
nap() { read -r -t "$1" -u "$sleep_fd"; }
# drv_stat NAME: a counter of the driver's debugfs stats (bash only).
drv_stat() {
	local n v
	while read -r n v; do [ "$n" = "$1" ] && { echo "$v"; return; }; done <"$stats"
	echo 0
}
# Per-queue "submitted" column, as "q0 q1 ...".
queue_submitted() { awk '$1 ~ /^[0-9]+$/ {printf "%s ", $2}' "$stats"; }

# fio: on each disk, one job per vCPU pinned to it, each on its own region;
# so 2 x vCPUs jobs of iodepth 64.
region=$(($(cat "/sys/block/${d0##*/}/size") * 512 / ncpu))
fio_args=()
for ((c = 0; c < ncpu; c++)); do
	for dev in "$d0" "$d1"; do
		fio_args+=(--name="${dev##*/}-cpu$c" --filename="$dev" --cpus_allowed="$c" --offset=$((c * region)))
	done
done
njobs=$((2 * ncpu))
runs=0 fio_fail=0
# At nice 10: a loaded TCG guest otherwise starves this script's loop, which
# sets up each break (seconds per fork). The driver's interrupts and work
# items run as before.
fio_start() {
	runs=$((runs + 1))
	nice -n 10 fio --ioengine=libaio --direct=1 --rw=randwrite --bsrange=4k-64k --iodepth=64 \
		--size="$size" --verify=crc32c --verify_fatal=1 --do_verify=1 \
		--group_reporting --output-format=terse "${fio_args[@]}" >/tmp/fio.$runs.out 2>&1 &
	fio_pid=$!
}
# fio_done STATUS: one run ended; its verify errors counted.
fio_done() {
	if [ "$1" != 0 ] || grep -qi 'verify:\|bad magic\|crc32c: verify failed' /tmp/fio.$runs.out; then
		fio_fail=$((fio_fail + 1))
		echo "fio run $runs: status $1" | diag
		tail -n 20 /tmp/fio.$runs.out | diag
	fi
}

# kstate: "N R" from the kernel log since the start: N the driver's "device
# reset: its virtqueues work again" lines, R 1 when the kernel made a report
# (reports.sh; then the loop stops: the guest may not last).
mark=$(dmesg | wc -l)
kstate() {
	dmesg | tail -n +"$((mark + 1))" | known_reports | awk -v re="$report_re" '
		/its virtqueues work again/ {n++} $0 ~ re {r = 1} END {print n + 0, r + 0}'
}
r0=$(drv_stat broken_queue_resets) q0=$(queue_submitted)
scan_pid=
if [ -n "${VSRS_RESET_SCANS:-}" ]; then
	host=$(vsrs_hosts | head -n 1)
	echo 0 >/tmp/reset_load.scans
	(
		n=0
		while :; do
			echo '- - -' >"/sys/class/scsi_host/host$host/scan"
			n=$((n + 1))
			echo "$n" >/tmp/reset_load.scans
		done
	) &
	scan_pid=$!
fi
fio_start
start=$SECONDS
done_breaks=0
for ((i = 1; i <= NB; i++)); do
	echo "vsrs-test: stray $i" >/dev/kmsg
	if ! ctl_ok '{"cmd":"fault","fault":"stray","target":0}' >/dev/null; then
		not_ok "break $i: the test device takes the stray rule"
		break
	fi
	# Until the driver has counted the reset and said it is done; 120 s.
	# The kernel log is read once the counter moved, and every 5 s.
	end=$((SECONDS + 120)) st=pending look=$((SECONDS + 5))
	while [ "$SECONDS" -lt "$end" ]; do
		if [ "$(drv_stat broken_queue_resets)" -ge $((r0 + i)) ] || [ "$SECONDS" -ge "$look" ]; then
			look=$((SECONDS + 5))
			read -r w rep < <(kstate)
			[ "$rep" = 1 ] && { st=oops; break; }
			[ "$w" -ge "$i" ] && { st=reset; break; }
		fi
		if ! kill -0 "$fio_pid" 2>/dev/null; then
			wait "$fio_pid"
			fio_done $?
			fio_start
		fi
		nap 0.1
	done
	if [ "$st" = oops ]; then
		echo "break $i: the kernel reported a problem; no more breaks" | diag
		oops_at=" (a kernel report during break $i)"
		break
	fi
	if [ "$st" != reset ]; then
		echo "break $i: no completed reset after 120 s (broken_queue_resets $(drv_stat broken_queue_resets), want $((r0 + i)); 'work again' lines $(kstate | cut -d' ' -f1), want $i)" | diag
		ctl '{"cmd":"status"}' | diag
		dmesg | tail -n +"$((mark + 1))" | tail -n 20 | diag
		break
	fi
	done_breaks=$i
done
took=$((SECONDS - start))
if [ -n "$scan_pid" ]; then
	kill "$scan_pid"
	wait "$scan_pid" 2>/dev/null
	scans=$(cat /tmp/reset_load.scans)
	expect_eq "full host scans ran during the breaks ($scans)" "$((scans >= 10))" 1
fi
ctl_ok '{"cmd":"clear"}' >/dev/null
resets=$(($(drv_stat broken_queue_resets) - r0))
echo "$done_breaks breaks, $resets resets in $took s; $runs fio runs ($njobs jobs of iodepth 64 each, $size per job)" | diag
dmesg | tail -n +"$((mark + 1))" | grep -o 'request queue [0-9]* is broken' | sort | uniq -c | diag
# From the kernel log's timestamps, means and maxima of: the stray rule set
# ("vsrs-test: stray N") to the broken queue found, that to the reset done
# ("work again"), and that to the next rule set (this script's loop).
dmesg | tail -n +"$((mark + 1))" | awk -F'[][]' '
	function add(k, v) { sum[k] += v; n[k]++; if (v > max[k]) max[k] = v }
	/vsrs-test: stray/ { s = $2 + 0; if (w) add("loop", s - w) }
	/queue [0-9]+ is broken/ && s { b = $2 + 0; add("break", b - s) }
	/its virtqueues work again/ && b { w = $2 + 0; add("reset", w - b) }
	END { for (k in n) printf "%s: %d, %.0f ms on average, %.0f ms at most\n", k, n[k], 1000 * sum[k] / n[k], 1000 * max[k] }' |
	sed 's/^break/rule set to broken queue/; s/^reset/broken queue to reset done/; s/^loop/reset done to next rule/' | diag
expect_eq "$NB breaks of a request queue under fio: a device reset after each ($resets resets in $took s)" \
	"$done_breaks breaks, $resets resets${oops_at:-}" "$NB breaks, $NB resets"
if [ "$st" = oops ]; then
	# fio cannot finish (a task that oopsed holds its I/O): report and stop
	# the guest now instead of waiting for the timeouts. Not poweroff: its
	# device shutdown waits for that I/O too (seen: the guest ran on until
	# run_tests.sh's timeout). A reboot ends QEMU at once (-no-reboot);
	# run_tests.sh takes the guest's status as 0 after "vsrs-test: power off"
	# and reads the results.
	check "no kernel warnings, oopses or lockdep reports" no_kernel_reports
	diag <"$stats"
	echo "vsrs-test: power off" >/dev/kmsg
	sleep 2
	echo b >/proc/sysrq-trigger
fi

wait_deadline "$fio_pid" 600
st=$?
if [ "$st" = 124 ]; then
	not_ok "the last fio run finishes within 600 s after the breaks"
	tail -n 20 /tmp/fio.$runs.out | diag
else
	ok "the last fio run finishes after the breaks"
	fio_done "$st"
fi
expect_eq "$runs fio runs ($njobs jobs, iodepth 64, crc32c verify) during and after the resets: 0 verify errors" \
	"$fio_fail failed" "0 failed"
q1=$(queue_submitted)
echo "commands submitted per request queue: before $q0, after $q1" | diag
moved() {
	local -a a b
	read -r -a a <<<"$q0"
	read -r -a b <<<"$q1"
	local k
	for k in "${!b[@]}"; do [ "${b[k]}" -gt "${a[k]:-0}" ] || { echo "queue $k: no command"; return 1; }; done
}
check "every request queue ($nq) carried I/O" moved
check "$d0 reads after the resets" dd if="$d0" of=/dev/null bs=64k count=16 iflag=direct status=none
check "$d1 reads after the resets" dd if="$d1" of=/dev/null bs=64k count=16 iflag=direct status=none
if [ -n "$scan_pid" ]; then
	expect_eq "after the scans: the two disks and no other device" "$(vsrs_devices | wc -l)" 2
fi
failed_reset() { ! dmesg | tail -n +"$((mark + 1))" | grep -E 'device reset failed|no more resets|double|blk[-_]mq'; }
check "dmesg: no failed reset, no double completion or blk-mq complaint" failed_reset
diag <"$stats"
check "no kernel warnings, oopses or lockdep reports" no_kernel_reports
check "kmemleak: no leak" kmemleak_clean
check "rmmod $MOD" unload
