#!/bin/bash
# Guest test (case "abort race virtio_scsi_rs"): a held command's completion
# racing the driver's ABORT TASK. The test device (run_tests.sh gives it RAM
# disks at 0:0 and 0:1) holds READ(10)s of 0:1, VSRS_RACE_READS at once, of
# distinct 4-64 KiB blocks written with known data before; the disk's SCSI
# command timeout is T s.
#
# When does the abort arrive? blk-mq's timeout timer fires about 1 s after
# the first deadline (blk_round_jiffies adds roundup_pow_of_two(HZ) jiffies)
# and takes every read whose deadline has passed; the midlayer queues one
# abort per read and the driver's eh_abort_handler sends the ABORT TASKs one
# after the other. A first round measures it: the reads are held until a TMF
# ends them, and the test device says how long the first and the last of
# them had been held then (status tmf_ended_ms), A0 and A1 ms. Then one
# round per hold time M: T-400 ms (every read released before the timeout),
# nine from A0-100 to A1+100 (the device releases reads just before the
# timeouts fire, while eh_abort checks whether the device gave the command
# back, while ABORT TASKs are on their way; some TMFs end held reads, some
# find them gone), and A1+1000 (every read ended by its ABORT TASK first,
# ABORTED then FUNCTION COMPLETE, and read by the midlayer's retry).
#
# Checked: every read returns the data written, none hangs; the error
# handling never goes past ABORT TASK (no LUN/target/host reset, no TMF
# timeout or failure); every submitted command completed exactly once
# (debugfs); no broken queue, protocol violation, kernel warning or leak. No
# timing is asserted; the per-round lines ("# held ...") show how the held
# reads ended.
#
# Environment:
#   VSRS_RACE_TIMEOUT  the disk's SCSI command timeout in s (default 2)
#   VSRS_RACE_READS    reads held at once per round (default 48)
#   VSRS_RACE_DELAYS   hold times in ms instead of the measured sweep
#   VSRS_INSMOD_ARGS   module parameters
cd "$(dirname "$0")" && . ./lib.sh

begin_rs_only "abort race $MOD" "the C driver's eh_timed_out resets the timer: it never aborts"
T=${VSRS_RACE_TIMEOUT:-2}
N=${VSRS_RACE_READS:-48}
rounds=12 # the measuring one and 11 hold times
if [ -n "${VSRS_RACE_DELAYS:-}" ]; then
	read -r -a given <<<"$VSRS_RACE_DELAYS"
	rounds=$((${#given[@]} + 1))
fi

load_two_disks

# Read j (0 .. rounds*N-1) is at 64 KiB slot j, 4-64 KiB long.
slot=65536
total=$((rounds * N))
dd if=/dev/urandom of=/tmp/pattern bs=$slot count=$total status=none
check "write $((total * slot / 1024)) KiB of known data to $d1" \
	dd if=/tmp/pattern of="$d1" bs=1M oflag=direct conv=fsync status=none
echo "$T" >"/sys/block/${d1##*/}/device/timeout"
check "SCSI command timeout of $d1 is $T s" test "$(cat "/sys/block/${d1##*/}/device/timeout")" = "$T"

# A sleep without a process: read from a FIFO nobody writes.
mkfifo /tmp/abort_race.sleep
exec {sleep_fd}<>/tmp/abort_race.sleep
nap() { read -r -t "$1" -u "$sleep_fd"; }

# The device's counter NAME (status "stats"), and the driver's eh counters.
dev_stats=
dev_stat() { [[ $dev_stats =~ \"$1\":([0-9]+) ]] && echo "${BASH_REMATCH[1]}" || echo 0; }
drv_stats=
drv_stat() { # NAME: from the last read of debugfs stats
	local n v
	while read -r n v; do [ "$n" = "$1" ] && { echo "$v"; return; }; done <<<"$drv_stats"
	echo 0
}
# snap ARRAY: both sides' counters into the associative array ARRAY.
declare -A S0 S1 A B
# shellcheck disable=SC2034,SC2004 # into is a nameref to an associative array
snap() {
	local -n into=$1
	local s
	dev_stats=$(ctl '{"cmd":"status"}')
	drv_stats=$(cat /sys/kernel/debug/virtio_scsi_rs-*/stats 2>/dev/null)
	for s in holds released tmf_ended tmfs; do into[$s]=$(dev_stat $s); done
	for s in aborts lun_resets target_resets host_resets tmf_timeouts tmf_failed \
		broken_queue_resets protocol_violations; do
		into[$s]=$(drv_stat $s)
	done
}
# d NAME: B[NAME] - A[NAME]; t NAME: S1[NAME] - S0[NAME].
d() { echo $((B[$1] - A[$1])); }
t() { echo $((S1[$1] - S0[$1])); }

# summary_line FILE: sets sum to the reader's summary line, if there is one.
summary_line() {
	local l
	while read -r l; do [[ $l == "summary "* ]] && { sum=$l; return 0; }; done <"$1"
	return 1
}
# reader_state PID: state, wait channel and kernel stack of each thread.
reader_state() {
	local t st
	[ -d "/proc/$1/task" ] || { echo "(gone before it could be shown)"; return; }
	for t in /proc/"$1"/task/*; do
		read -r st <"$t/stat" 2>/dev/null || continue
		st=${st##*) }
		echo "thread ${t##*/}: state ${st%% *}, wchan $(cat "$t/wchan" 2>/dev/null)"
		head -n 12 "$t/stack" 2>/dev/null | sed 's/^/  /'
	done | head -n 80
}
# round R M: round R (reads R*N ..) with every read held M ms, or until a
# TMF if M is empty. Sets tmf_lo/tmf_hi (how long the held reads TMFs ended
# had been held: shortest, longest; empty if none); adds to the tallies.
bad=0 hung=0 errs=0 wrong=0 linger=0
round() {
	local r=$1 M=$2 label rule sum ok_reads e w h rpid end first_ms last_ms
	label="held ${M:-until a TMF}${M:+ ms}"
	rule="{\"cmd\":\"fault\",\"fault\":\"hold\",${M:+\"ms\":$M,}\"count\":$N,\"target\":0,\"lun\":1,\"opcode\":40}"
	snap A
	# Exactly N READ(10)s of 0:1 are held: the N reads below, not their
	# retries (the rule is spent by then).
	if ! fault_ok "$rule"; then
		not_ok "$label: the test device takes the hold rule"
		bad=$((bad + 1))
		return 1
	fi
	# One process reads them all, from threads released together: they
	# reach the device within milliseconds of each other, so that every
	# first try is held and no retry is. (The output file is emptied here,
	# not only by the child's redirection: the loop below must not find the
	# last round's summary before the child has run.)
	: >/tmp/reads.out
	/usr/bin/python3 -I -S ./abort_race_reads.py "$d1" /tmp/pattern $((r * N)) "$N" "$slot" 120 \
		>/tmp/reads.out 2>&1 &
	rpid=$!
	# Until its summary line (120 s bound inside, 180 s here), then until it
	# has gone; a reader that stays after its summary is shown and killed.
	end=$((SECONDS + 180)) sum=''
	while [ "$SECONDS" -lt "$end" ]; do
		summary_line /tmp/reads.out && break
		kill -0 "$rpid" 2>/dev/null || { summary_line /tmp/reads.out; break; }
		nap 0.2
	done
	end=$((SECONDS + 10))
	while kill -0 "$rpid" 2>/dev/null && [ "$SECONDS" -lt "$end" ]; do nap 0.2; done
	if kill -0 "$rpid" 2>/dev/null; then
		echo "$label: the reader is still there${sum:+ 10 s after its summary}; its threads:" | diag
		reader_state "$rpid" | diag
		kill -9 "$rpid" 2>/dev/null
		linger=$((linger + 1))
	fi
	if [ -z "$sum" ]; then
		echo "$label: the reader gave no summary:" | diag
		tail -n 5 /tmp/reads.out | diag
		bad=$((bad + 1))
		sum="summary ok 0 io_errors 0 wrong 0 hung $N first_ms 0 ms 0"
	fi
	grep -v '^summary ' /tmp/reads.out | sed "s/^/$label: /" | head -n 20 | diag
	read -r _ _ ok_reads _ e _ w _ h _ first_ms _ last_ms <<<"$sum"
	errs=$((errs + e)) wrong=$((wrong + w)) hung=$((hung + h))
	snap B
	ctl_ok '{"cmd":"clear"}' >/dev/null
	tmf_lo='' tmf_hi=''
	[[ $dev_stats =~ \"tmf_ended_ms\":\[([0-9]+),([0-9]+)\] ]] &&
		tmf_lo=${BASH_REMATCH[1]} tmf_hi=${BASH_REMATCH[2]}
	echo "$label (timeout $T s): $(d holds) held; released by the device $(d released), ended by a TMF $(d tmf_ended)${tmf_lo:+ after $tmf_lo-$tmf_hi ms}; eh aborts $(d aborts), LUN resets $(d lun_resets), TMFs at the device $(d tmfs); $ok_reads/$N reads gave the data written, back after $first_ms-$last_ms ms" | diag
}

snap S0
mark=$(dmesg | wc -l)
# The measuring round.
round 0 ""
if [ -n "$tmf_lo" ]; then
	a0=$tmf_lo a1=$tmf_hi
else
	a0=$((T * 1000 + 1000)) a1=$((T * 1000 + 1300))
fi
if [ -n "${VSRS_RACE_DELAYS:-}" ]; then
	delays=("${given[@]}")
else
	lo=$((a0 - 100)) hi=$((a1 + 100))
	delays=($((T * 1000 - 400)))
	for k in 0 1 2 3 4 5 6 7 8; do delays+=($((lo + (hi - lo) * k / 8))); done
	delays+=($((a1 + 1000)))
fi
echo "the aborts ended held reads ${a0}-${a1} ms after the device took them; hold times: ${delays[*]} ms" | diag
for ((r = 1; r < rounds; r++)); do
	round "$r" "${delays[r - 1]}"
done
snap S1
# What the driver said, counted by kind (timestamps and LUNs left out).
new_dmesg | grep -iE 'abort|escalat|reset|broken|device error' | sed -E 's/^\[[ 0-9.]*\] //; s/ [0-9]+:[0-9]+: / T:L: /' |
	sort | uniq -c | sort -rn | head -n 12 | diag

held=$(t holds) rel=$(t released) ended=$(t tmf_ended)
nd=${#delays[@]}
expect_eq "$total reads in $rounds rounds (until a TMF, then held ${delays[0]}-${delays[nd - 1]} ms; SCSI timeout $T s): none hung" "$hung hung" "0 hung"
expect_eq "$held held reads across $nd delays and until a TMF completed with the data written" \
	"$errs I/O errors, $wrong wrong data, $bad rounds not run" "0 I/O errors, 0 wrong data, 0 rounds not run"
check "the device held at least 500 reads ($held)" test "$held" -ge 500
expect_eq "every reader process exited after its reads" "$linger rounds with a reader left" "0 rounds with a reader left"
check "the sweep covered both orders: $rel released by the device, $ended ended by a TMF ($(t aborts) eh aborts, $(t tmfs) TMFs)" \
	test "$rel" -gt 0 -a "$ended" -gt 0
expect_eq "no escalation past ABORT TASK" \
	"lun_resets $(t lun_resets) target_resets $(t target_resets) host_resets $(t host_resets) tmf_timeouts $(t tmf_timeouts) tmf_failed $(t tmf_failed)" \
	"lun_resets 0 target_resets 0 host_resets 0 tmf_timeouts 0 tmf_failed 0"
expect_eq "no broken queue, no protocol violation" \
	"broken_queue_resets $(t broken_queue_resets) protocol_violations $(t protocol_violations)" \
	"broken_queue_resets 0 protocol_violations 0"
check "the device holds nothing any more" test "$(dev_stat held)" = 0
check "debugfs: every submitted command completed exactly once" bash -c \
	"[ \"\$(cat /sys/kernel/debug/virtio_scsi_rs-*/stats | awk '\$1 ~ /^[0-9]+\$/ {d += \$2 - \$3} END {print d + 0}')\" = 0 ]"
no_double() { ! dmesg | tail -n +"$((mark + 1))" | grep -v 'vsrs-tap: ' | grep -iE 'double|blk[-_]mq|refcount|list_(add|del) corruption'; }
check "dmesg: no double completion, blk-mq or refcount complaint" no_double
check "no kernel warnings, oopses or lockdep reports" no_kernel_reports
check "kmemleak: no leak" kmemleak_clean
check "rmmod $MOD" unload
