#!/bin/bash
# Guest test (issue 20, cases "testdev fuzz C driver" and "testdev fuzz
# virtio_scsi_rs"): the test device in fuzz mode (Documentation: "Fuzz
# mode") lies for VSRS_FUZZ_SECONDS under each seed of VSRS_FUZZ_SEEDS while
# the guest works on its disks (run_tests.sh: RAM disks 0:0, 64 MiB, and
# 0:1, 16 MiB):
#   - 0:0, "soft": fio random writes verified with crc32c, run after run.
#     Only lies the driver can hide are told about it (the device's "hard"
#     list is 0:1), so every fio run must end with no I/O error and no
#     verify error.
#   - 0:1, "hard": every lie, those that fail a command or leave it
#     unanswered (the midlayer's error handling, which may offline the LUN:
#     set running again once the lies stop) too. A loop writes
#     one of four known 64 KiB patterns and reads it back: each read must
#     give the data written, or an I/O error (a write that failed is not
#     read back) -- never other data.
#   - sg3_utils commands (TEST UNIT READY, INQUIRY, READ CAPACITY, REPORT
#     LUNS, VPD serial) on both disks in a loop; passthrough commands are
#     not retried, so they may fail: counted, not judged.
#   - from the test's main loop: a LUN 0:2 added and removed (hotplug
#     events, among the device's event lies; counted: a lie about the new
#     LUN's INQUIRY can make its scan fail for good) and sg_reset LUN,
#     target, bus and host resets in turn (TMFs, among its TMF lies).
# The device's lies carry no data corruption (none claims success for a
# command it did not execute), but one: read16_data changes a byte of what
# a READ(16) of the hard disk hands back, and the data loop's READ(16)
# reads, the only ones, check it. So wrong data is a failure anywhere but
# there, and there it must show exactly as often as the device lied. Then the
# lies stop, held requests are released, the workload must end, both disks
# read, a LUN added appears and goes when removed. At the end no kernel
# report and no kmemleak leak. Every diagnostic
# line names the seed; the device's log has one line per lie (seed,
# sequence number, kind, command).
#
# With the C driver (VSRS_DRIVER=c) nothing here fails the run but a guest
# that does not finish: what it survives is reported as "# C driver: ..."
# lines (the Documentation's fuzz table).
#
# Environment:
#   VSRS_FUZZ_SEEDS    seeds, one run each (default "1 2 3")
#   VSRS_FUZZ_SECONDS  seconds of lies per seed (default 100)
#   VSRS_FUZZ_RATE     lies per 1000 commands (default: the device's, 20)
#   VSRS_FUZZ_WEIGHTS  KIND=W,... weights other than the device's defaults
#                      (e.g. never=0,repeated=0: without what a driver is
#                      known not to survive)
#   VSRS_FUZZ_ONLY     a replay: only the lies of these names ("0:1#3
#                      tmf#2"; the device's log names every lie)
#   VSRS_FUZZ_EXPECT   a regular expression the kernel log must match during
#                      each seed (a reproducer: its lies still lead there)
#   VSRS_INSMOD_ARGS   virtio_scsi_rs parameters (run_tests.sh: tmf_timeout=5
#                      max_breaks=1000: a repeated completion breaks a queue
#                      every few seconds, more than the default 3 a minute)
cd "$(dirname "$0")" && . ./lib.sh

seeds=${VSRS_FUZZ_SEEDS:-1 2 3}
secs=${VSRS_FUZZ_SECONDS:-100}

begin "testdev fuzz $MOD"
exec 7<>"$tdev_port"
check "control socket answers status" ctl_ok '{"cmd":"status"}'
load_two_disks
# A command the device never answers is aborted after 5 s, not 30.
for d in "$d0" "$d1"; do echo 5 >"/sys/block/${d##*/}/device/timeout"; done
echo "soft disk $d0 (0:0), hard disk $d1 (0:1); seeds $seeds, $secs s each, rate ${VSRS_FUZZ_RATE:-default}, weights ${VSRS_FUZZ_WEIGHTS:-default}" | diag

# judge DESC COMMAND...: a result line with virtio_scsi_rs; with the C
# driver a "# C driver: DESC: yes/NO" line.
judge() {
	local desc=$1 out
	shift
	if ! is_c; then
		check "$desc" "$@"
	elif out=$("$@" 2>&1); then
		echo "C driver: $desc: yes" | diag
	else
		echo "C driver: $desc: NO" | diag
		[ -z "$out" ] || head -n 8 <<<"$out" | diag
	fi
}

# "NAME NAME ..." (lie names, T:L#N or tmf#N) as a JSON list.
only_json() {
	local n out=''
	for n in $1; do out+="${out:+,}\"$n\""; done
	echo "[$out]"
}

# KIND=W,... as a JSON object.
weights_json() {
	local kv out='' IFS=,
	for kv in $1; do out+="${out:+,}\"${kv%=*}\":${kv#*=}"; done
	echo "{$out}"
}

# A sleep without a process: read from a FIFO nobody writes.
mkfifo /tmp/fuzz.sleep
exec {sleep_fd}<>/tmp/fuzz.sleep
nap() { read -r -t "$1" -u "$sleep_fd"; }

# Four 64 KiB patterns and their sums.
for i in 0 1 2 3; do
	head -c 65536 /dev/urandom >/tmp/fuzz.p$i
	psum[i]=$(md5sum </tmp/fuzz.p$i | cut -d' ' -f1)
done

# fio_loop DIR: fio runs on $d0 until DIR/stop (or $d0 is gone: "RUNS
# disk-gone"); "RUN STATUS" lines in DIR/fio, a failed run's output kept as
# DIR/fio.RUN.
fio_loop() {
	local r=0 st
	while [ ! -e "$1/stop" ]; do
		[ -b "$d0" ] || { echo "$r disk-gone" >>"$1/fio"; return; }
		r=$((r + 1))
		nice -n 10 fio --name=fuzz --filename="$d0" --ioengine=libaio --direct=1 \
			--rw=randwrite --bsrange=4k-64k --iodepth=16 --size=16M --offset=$((r % 4 * 16))M \
			--verify=crc32c --verify_fatal=1 --do_verify=1 --output-format=terse \
			>"$1/fio.out" 2>&1
		st=$?
		grep -qi 'verify:\|bad magic\|crc32c: verify failed' "$1/fio.out" && st="$st verify"
		echo "$r $st" >>"$1/fio"
		[ "$st" = 0 ] || mv "$1/fio.out" "$1/fio.$r"
	done
}

# same P B FILE: "ok" when FILE holds pattern P, else "WRONG B".
same() {
	local sum
	sum=$(md5sum <"$3" | cut -d' ' -f1)
	if [ "$sum" = "${psum[$1]}" ]; then echo ok; else echo "WRONG $2"; fi
}

# data_loop DIR: on $d1 until DIR/stop, a pattern written to a 64 KiB block
# and read back; one line per round in DIR/data: "ok", "write-error",
# "read-error" or "WRONG BLOCK" ("disk-gone" and the end when $d1 is). Then
# the block read again with READ(16) through SG_IO, one line in DIR/data16:
# "ok", "read-error" or "WRONG BLOCK"; the only READ(16)s the hard LUN gets
# (sd sends READ(10) to a disk this small), so the device's read16_data lies
# land there and nowhere else.
data_loop() {
	local i=0 p b
	while [ ! -e "$1/stop" ]; do
		[ -b "$d1" ] || { echo disk-gone >>"$1/data"; return; }
		i=$((i + 1)) p=$((i % 4)) b=$((i * 7 % 200))
		if ! dd if=/tmp/fuzz.p$p of="$d1" bs=64k seek=$b count=1 oflag=direct status=none 2>/dev/null; then
			echo write-error >>"$1/data"
			continue
		fi
		if ! dd if="$d1" of="$1/rd" bs=64k skip=$b count=1 iflag=direct status=none 2>/dev/null; then
			echo read-error >>"$1/data"
			continue
		fi
		same "$p" "$b" "$1/rd" >>"$1/data"
		# LBA b * 128 (512-byte blocks) as the CDB's 8 bytes, 128 blocks.
		# shellcheck disable=SC2046 # the bytes are words
		if ! bounded 120 sg_raw -n -r 64k -o "$1/rd16" "$d1" 88 00 \
			$(printf '%016x' $((b * 128)) | sed 's/../& /g') 00 00 00 80 00 00 >/dev/null 2>&1; then
			echo read-error >>"$1/data16"
			continue
		fi
		same "$p" "$b" "$1/rd16" >>"$1/data16"
	done
}

# sg_loop DIR: sg3_utils commands on both disks until DIR/stop; "CMD STATUS"
# lines in DIR/sg (status 124: no answer in 120 s).
sg_loop() {
	local c d st
	while [ ! -e "$1/stop" ]; do
		for c in sg_turs sg_inq sg_readcap sg_luns "sg_vpd -p sn"; do
			for d in "$d0" "$d1"; do
				# shellcheck disable=SC2086 # c is a command and its options
				bounded 120 $c "$d" >/dev/null 2>&1
				st=$?
				echo "${c%% *} $st" >>"$1/sg"
				# A command stuck for good: no more of them.
				[ "$st" = 124 ] && return
			done
		done
		nap 1
	done
}

# counts FILE: its lines counted, "N LINE" joined by commas.
counts() { sort "$1" 2>/dev/null | uniq -c | awk '{$1 = $1; printf "%s%s", (NR > 1 ? ", " : ""), $0}'; }
# drv_stats: the driver's counters as "name value" lines (C: none).
drv_stats() {
	is_c && return
	cat /sys/kernel/debug/virtio_scsi_rs-*/stats 2>/dev/null | awk 'NF == 2 && $1 !~ /^[0-9]+$/'
}
# stats_delta BEFORE AFTER: the counters that moved, "name +n".
stats_delta() {
	awk 'NR == FNR {b[$1] = $2; next} $2 != b[$1] {printf "%s +%d ", $1, $2 - b[$1]}' "$1" "$2"
}
# lun2: the SCSI device 0:0:2 exists (not its disk's serial: a lie about
# the VPD page during the probe leaves a disk without one).
lun2() {
	local d
	for d in /sys/bus/scsi/devices/*:0:0:2; do [ -e "$d" ] && return 0; done
	return 1
}
no_lun2() { ! lun2; }
# sdev_state DISK: its SCSI device's state (running, offline, ...).
sdev_state() { cat "/sys/block/${1##*/}/device/state" 2>/dev/null || echo gone; }
# fuzz_field NAME: a number from the device's fuzz state (crude JSON read).
fuzz_field() { ctl '{"cmd":"fuzz"}' | grep -o "\"$1\":[0-9]*" | head -n 1 | cut -d: -f2; }

# Time the workload has to end once the lies stop; the C driver is known to
# wait for good for a command the device never answered.
drain=600
is_c && drain=120
hung=
resets=(-d -t -b -H)
nreset=0
for seed in $seeds; do
	dir=/tmp/fuzz.$seed
	mkdir -p "$dir"
	touch "$dir/fio" "$dir/data" "$dir/sg" "$dir/resets"
	drv_stats >"$dir/stats0"
	check "seed $seed: fuzz mode on" ctl_ok "{\"cmd\":\"fuzz\",\"seed\":$seed,\"on\":true,\"hard\":[\"0:1\"]${VSRS_FUZZ_RATE:+,\"rate\":$VSRS_FUZZ_RATE}${VSRS_FUZZ_WEIGHTS:+,\"weights\":$(weights_json "$VSRS_FUZZ_WEIGHTS")}${VSRS_FUZZ_ONLY:+,\"only\":$(only_json "$VSRS_FUZZ_ONLY")}}"
	echo "vsrs-test: fuzz seed $seed" >/dev/kmsg
	seed_mark=$(dmesg | wc -l)
	fio_loop "$dir" &
	fio_pid=$!
	data_loop "$dir" &
	data_pid=$!
	sg_loop "$dir" &
	sg_pid=$!
	end=$((SECONDS + secs)) added=0 appeared=0 removed=0 gone=0
	while [ "$SECONDS" -lt "$end" ]; do
		# Hotplug: 0:2 added, then removed, each seen within 60 s.
		ctl_ok '{"cmd":"add_lun","target":0,"lun":2,"size":"4M"}' >/dev/null && added=$((added + 1))
		wait_for 60 lun2 && appeared=$((appeared + 1))
		ctl_ok '{"cmd":"remove_lun","target":0,"lun":2}' >/dev/null && removed=$((removed + 1))
		wait_for 60 no_lun2 && gone=$((gone + 1))
		# One reset through the ioctl: LUN, target, bus, host in turn.
		r=${resets[nreset % 4]}
		nreset=$((nreset + 1))
		bounded 120 sg_reset "$r" "$d1" >/dev/null 2>&1
		echo "sg_reset$r $?" >>"$dir/resets"
		nap 5
	done
	ctl_ok '{"cmd":"fuzz","on":false}' >/dev/null
	ctl_ok '{"cmd":"release"}' >/dev/null
	: >"$dir/stop"
	state=$(ctl '{"cmd":"fuzz"}')
	lies=$(fuzz_field lies) cmds=$(fuzz_field cmds) tmfs=$(fuzz_field tmfs)
	by_kind=$(grep -o '"counts":{[^}]*}' <<<"$state")
	echo "seed $seed: $lies lies in $cmds commands and $tmfs TMFs; by kind: $(tr -d '"{}' <<<"$by_kind" | sed 's/^counts://; s/,/, /g')" | diag
	echo "seed $seed: digest $(grep -o '"digest":"[0-9a-f]*"' <<<"$state" | cut -d'"' -f4)" | diag
	check "seed $seed: the device lied ($lies lies)" test "${lies:-0}" -gt 0
	ended() { ! kill -0 "$fio_pid" 2>/dev/null && ! kill -0 "$data_pid" 2>/dev/null && ! kill -0 "$sg_pid" 2>/dev/null; }
	if wait_for "$drain" ended; then
		ok "seed $seed: the workload ends after the lies stop"
		wait "$fio_pid" "$data_pid" "$sg_pid"
	else
		hung=$seed
		judge "seed $seed: the workload ends within $drain s after the lies stop" false
		echo "seed $seed: still running: $(ps -o pid=,stat=,wchan:32=,args= -p "$fio_pid,$data_pid,$sg_pid" 2>/dev/null | tr '\n' ';')" | diag
		ps -eo pid=,stat=,wchan:32=,args= | awk '$2 ~ /D/' | head -n 10 | diag
		sed 's/.*"recent":\["//; s/"\].*//; s/","/\n/g' <<<"$state" | sed "s/^/seed $seed: recent: /" | diag
	fi
	fio_runs=$(wc -l <"$dir/fio") fio_bad=$(awk '$2 != 0' "$dir/fio" | wc -l)
	for f in "$dir"/fio.[0-9]*; do
		[ -e "$f" ] && grep -v '^[0-9]*;' "$f" | head -n 5 | sed "s|^|seed $seed: fio run ${f##*.}: |" | diag
	done
	judge "seed $seed: $fio_runs fio runs on $d0 (soft): no I/O or verify error" \
		test "$fio_bad" = 0 -a "$fio_runs" -gt 0
	echo "seed $seed: $d1 (hard) rounds: $(counts "$dir/data")" | diag
	wrong=$(grep -c WRONG "$dir/data")
	judge "seed $seed: $d1 (hard): every read gave the data written or an I/O error ($wrong wrong)" \
		test "$wrong" = 0
	# The device changed a byte of $told16 READ(16)s (read16_data): each
	# must show as wrong data, and no other read may.
	echo "seed $seed: $d1 (hard) READ(16) rounds: $(counts "$dir/data16")" | diag
	wrong16=$(grep -c WRONG "$dir/data16")
	told16=$(grep -o '"read16_data":[0-9]*' <<<"$by_kind" | cut -d: -f2)
	judge "seed $seed: $d1 (hard): the READ(16)s the device changed, and only those, gave wrong data ($wrong16 wrong, ${told16:-?} changed)" \
		test "$wrong16" = "${told16:-x}"
	echo "seed $seed: sg3_utils: $(counts "$dir/sg")" | diag
	echo "seed $seed: resets: $(counts "$dir/resets"); LUN 0:2 added $added (appeared $appeared), removed $removed (gone $gone)" | diag
	# Under the lies a scan may fail for good (the midlayer does not retry
	# a failed INQUIRY of a new LUN): counted above. Once they stop, a LUN
	# added must appear and one removed go, whatever the state left.
	ctl_ok '{"cmd":"remove_lun","target":0,"lun":2}' >/dev/null
	ctl_ok '{"cmd":"add_lun","target":0,"lun":2,"size":"4M"}' >/dev/null
	judge "seed $seed: after the lies, LUN 0:2 added appears" wait_for 60 lun2
	ctl_ok '{"cmd":"remove_lun","target":0,"lun":2}' >/dev/null
	judge "seed $seed: after the lies, LUN 0:2 removed goes away" wait_for 60 no_lun2
	# The midlayer offlines a LUN whose error handling failed (a lie about
	# its own TEST UNIT READY after a host reset): the hard disk may be
	# offline, and is set running again as an administrator would; the soft
	# disk gets no lie that reaches the error handler (its fio runs above).
	st0=$(sdev_state "$d0") st1=$(sdev_state "$d1")
	echo "seed $seed: device state: $d0 $st0, $d1 $st1" | diag
	[ "$st1" = offline ] && echo running >"/sys/block/${d1##*/}/device/state"
	if [ -n "${VSRS_FUZZ_EXPECT:-}" ]; then
		saw() { dmesg | tail -n +"$((seed_mark + 1))" | grep -v 'vsrs-tap: ' | grep -qE "$VSRS_FUZZ_EXPECT"; }
		judge "seed $seed: the kernel log says \"$VSRS_FUZZ_EXPECT\"" saw
	fi
	judge "seed $seed: $d0 reads afterwards" bounded 60 dd if="$d0" of=/dev/null bs=64k count=16 iflag=direct status=none
	judge "seed $seed: $d1 reads afterwards" bounded 60 dd if="$d1" of=/dev/null bs=64k count=16 iflag=direct status=none
	drv_stats >"$dir/stats1"
	is_c || echo "seed $seed: driver counters: $(stats_delta "$dir/stats0" "$dir/stats1")" | diag
	[ -z "$hung" ] || break
done

if [ -n "$hung" ]; then
	# A task stuck on a command (the C driver waits for good for an answer
	# that never comes) keeps poweroff waiting too: report, then reboot
	# (QEMU exits; run_tests.sh reads the results).
	if is_c; then
		ok "C driver: the soak ran (report only; stuck after seed $hung)"
		new_dmesg | known_reports | grep -E "$report_re" | head -n 5 | sed 's/^/C driver kernel report: /' | diag
	else
		check "no kernel warnings, oopses or lockdep reports" no_kernel_reports
	fi
	echo "vsrs-test: power off" >/dev/kmsg
	sleep 2
	echo b >/proc/sysrq-trigger
	sleep 30
	exit 0
fi
if is_c; then
	ok "C driver: the soak ran (report only)"
	new_dmesg | known_reports | grep -E "$report_re" | head -n 5 | sed 's/^/C driver kernel report: /' | diag
else
	check "no kernel warnings, oopses, lockdep or hung-task reports" no_kernel_reports
	check "kmemleak: no leak" kmemleak_clean
	check "rmmod $MOD" unload
fi
