#!/bin/bash
# Guest side of make bench (tools/bench/bench.sh boots the guest and runs this).
#
#   guest.sh CONFIG fio    rounds of the fio matrix, the drivers alternating
#   guest.sh CONFIG scan   rounds of the many-LUN scan timing, SCSI drivers only
#   guest.sh CONFIG trace  ftrace of each SCSI driver's submission and completion
#   guest.sh CONFIG cost   instructions per I/O of each SCSI driver (-icount guest)
#   guest.sh CONFIG profile  the same by function (the pcprof plugin's guest)
#   guest.sh CONFIG scale-cost  bench.sh --scaling: instructions per I/O (pcprof guest)
#   guest.sh CONFIG scale-iops  bench.sh --scaling: IOPS, the drivers in ABBA order
#   guest.sh CONFIG scale-lock  bench.sh --scaling: /proc/lock_stat (debug kernel)
#
# CONFIG (written by bench.sh in the shared results directory) sets OUT,
# ROUNDS, KO, POLLQ, RUNTIME, ISCSI (1: the fio matrix reads the iSCSI
# disk), for scan LUNS, for cost COST_ROWS, COST_IOS and
# COST_SEED, for profile COST_ROWS, COST_IOS and PROFILE_GUEST, for the
# scale-* modes SCALE_CONFIGS, SCALE_DISKS, SCALE_JOBS, SCALE_QD, SCALE_WARM,
# SCALE_WINDOW and SCALE_SEED; MODDIR (default $OUT/modules) has the C
# modules of the guest's kernel. Raw results go to $OUT/raw/.
set -euo pipefail
# shellcheck source=/dev/null # written by bench.sh
. "${1:?CONFIG}"
mode=${2:?fio or scan}
raw=$OUT/raw
mkdir -p "$raw"
# The guest's stderr reaches the host only when the guest ends: progress also
# goes to a file in the shared directory.
log() { echo "bench-guest: $*" >&2; echo "$(date +%T) $*" >>"$OUT/progress.log"; }

mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug

# --- drivers ------------------------------------------------------------------
# Driver names: c (drivers/scsi/virtio_scsi.c), rust (virtio_scsi_rs), blk.
module_of() { case $1 in c) echo virtio_scsi ;; rust) echo virtio_scsi_rs ;; blk) echo virtio_blk ;; esac; }
loaded() { grep -q "^$1 " /proc/modules; }

# The C drivers by modprobe; if the guest cannot find them (virtme-ng links
# /lib/modules into the kernel build under /var/cache, which the guest does
# not see), by path from the copies bench.sh put in $OUT/modules.
load_c() { # MODULE [PARAM]
	modprobe "$1" ${2:+"$2"} 2>/dev/null || insmod "${MODDIR:-$OUT/modules}/$1.ko" ${2:+"$2"} 2>>"$OUT/progress.log"
}

load() { # DRIVER [POLL_QUEUES]
	local pq=${2:-0}
	# shellcheck disable=SC2046 # the parameter, or no word at all
	case $1 in
	c) load_c virtio_scsi $([ "$pq" -gt 0 ] && echo "virtscsi_poll_queues=$pq") ;;
	rust) insmod "$KO" $([ "$pq" -gt 0 ] && echo "poll_queues=$pq") ;;
	blk) load_c virtio_blk $([ "$pq" -gt 0 ] && echo "poll_queues=$pq") ;;
	esac
}

unload() { # DRIVER
	local m i
	m=$(module_of "$1")
	loaded "$m" || return 0
	for i in $(seq 1 40); do
		udevadm settle 2>/dev/null || true
		rmmod "$m" 2>/dev/null && return 0
		sleep 0.5
	done
	rmmod "$m"
}

# SCSI hosts whose proc_name is MODULE.
hosts_of() { # MODULE
	local h p
	for h in /sys/class/scsi_host/host*; do
		[ -e "$h/proc_name" ] && read -r p <"$h/proc_name" && [ "$p" = "$1" ] && echo "${h##*host}"
	done
	return 0
}

# Number of sd disks on the hosts of MODULE.
scsi_disk_count() { # MODULE
	local h d n=0
	for h in $(hosts_of "$1"); do
		for d in /sys/bus/scsi/devices/"$h":0:*/block/*; do
			[ -e "$d" ] && n=$((n + 1))
		done
	done
	echo "$n"
}

# /dev path of the sd disk at LUN of the (first) host of MODULE.
scsi_dev() { # MODULE LUN
	local h d
	h=$(hosts_of "$1" | head -n1)
	for d in /sys/bus/scsi/devices/"$h":0:0:"$2"/block/*; do
		[ -e "$d" ] && echo "/dev/${d##*/}" && return 0
	done
	return 1
}

blk_dev() { # SERIAL
	local d
	for d in /sys/block/vd*; do
		# No newline at the end of virtio_blk's serial: read(1) would fail.
		[ -e "$d/serial" ] && [ "$(cat "$d/serial")" = "$1" ] && echo "/dev/${d##*/}" && return 0
	done
	return 1
}

enough_disks() { [ "$(scsi_disk_count "$1")" -ge "$2" ]; } # MODULE N

wait_for() { # SECONDS COMMAND...: until COMMAND succeeds
	local end=$((SECONDS + $1)); shift
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.2
	done
}

# Sets DEV_NULL and DEV_FILE for DRIVER (loaded), and with ISCSI=1
# DEV_ISCSI, the tgt disk passed through (SCSI LUN 2; virtio-blk's by serial).
find_devs() { # DRIVER
	# look KEY: the disk of KEY (virtio-blk: a serial; SCSI: a LUN).
	local look null file iscsi
	case $1 in
	blk) look=(blk_dev) null=bench-null file=bench-file iscsi=bench-iscsi ;;
	*) look=(scsi_dev "$(module_of "$1")") null=0 file=1 iscsi=2 ;;
	esac
	wait_for 60 "${look[@]}" "$null" && wait_for 60 "${look[@]}" "$file" || return 1
	DEV_NULL=$("${look[@]}" "$null") DEV_FILE=$("${look[@]}" "$file") DEV_ISCSI=
	if [ "${ISCSI:-0}" = 1 ]; then
		wait_for 60 "${look[@]}" "$iscsi" || return 1
		DEV_ISCSI=$("${look[@]}" "$iscsi")
	fi
	udevadm settle 2>/dev/null || true
	local d
	for d in "$DEV_NULL" "$DEV_FILE" ${DEV_ISCSI:+"$DEV_ISCSI"}; do
		# The same (no) I/O scheduler for every driver.
		echo none >"/sys/block/${d#/dev/}/queue/scheduler" 2>/dev/null || true
	done
	export DEV_NULL DEV_FILE DEV_ISCSI
}

# Round R's order of the DRIVERS: rotated by R, so none is always first.
rotate() { # R DRIVERS...
	local r=$1; shift
	local a=("$@") n=$# i
	for i in $(seq 0 $((n - 1))); do echo "${a[$(((i + r) % n))]}"; done
}

# Round R's order of the fio drivers: C before Rust in odd rounds, after it
# in even ones (ABBA over two rounds for the pair the table compares), with
# virtio-blk first or last (left out with BLK=0).
abba() { # R
	local b=blk
	[ "${BLK:-1}" = 1 ] || b=
	if [ $(($1 % 2)) = 1 ]; then echo c rust $b; else echo $b rust c; fi
}

# Per-queue counters of virtio_scsi_rs, if it is loaded.
save_stats() { # FILE
	local f
	for f in /sys/kernel/debug/virtio_scsi_rs-*/stats; do
		[ -e "$f" ] && { echo "== $f"; cat "$f"; }
	done >"$1" 2>/dev/null || true
}

# Interrupts of the request virtqueues so far (virtio-scsi "request",
# virtio-blk "req.N"), summed over CPUs: completions per interrupt tell how
# well a driver batches.
req_irqs() {
	awk '/virtio[0-9]+-(request|req\.)/ {for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) s += $i} END {print s + 0}' /proc/interrupts
}

fio_run() { # DRIVER JOBFILE OUTPUT
	local d=$1 jobs=$2 outf=$3 i0
	find_devs "$d" || { log "$d: disks did not appear"; ls /sys/block >&2; return 1; }
	log "$d: $(basename "$outf") on $DEV_NULL $DEV_FILE $DEV_ISCSI"
	i0=$(req_irqs)
	fio --output-format=json --output="$outf" "$jobs" >"$outf.log" 2>&1 ||
		{ log "$d: fio failed"; tail -n 20 "$outf.log" >&2; return 1; }
	echo $(($(req_irqs) - i0)) >"${outf%.json}.irqs"
	rm -f "$outf.log"
}

# --- the fio matrix -----------------------------------------------------------
run_fio() {
	local r d status=0
	{ uname -a; nproc; grep -m1 'model name' /proc/cpuinfo; } >"$OUT/guest-info.txt"
	for d in c rust blk; do unload "$d"; done
	for r in $(seq 1 "$ROUNDS"); do
		log "round $r of $ROUNDS"
		for d in $(abba "$r"); do
			load "$d" || { log "$d: load failed"; status=1; continue; }
			fio_run "$d" "$OUT/jobs-r$r.fio" "$raw/r$r-$d.json" || status=1
			[ "$d" = rust ] && save_stats "$raw/r$r-rust.stats"
			unload "$d" || { log "$d: rmmod failed"; status=1; }
		done
		if [ -s "$OUT/hipri-r$r.fio" ]; then
			for d in $(abba "$r"); do
				load "$d" "$POLLQ" || { log "$d: load with $POLLQ poll queue(s) failed"; status=1; continue; }
				fio_run "$d" "$OUT/hipri-r$r.fio" "$raw/r$r-$d-hipri.json" || status=1
				[ "$d" = rust ] && save_stats "$raw/r$r-rust-hipri.stats"
				unload "$d" || { log "$d: rmmod failed"; status=1; }
			done
		fi
	done
	return $status
}

# --- scan timing --------------------------------------------------------------
run_scan() {
	local r d m t0 t1 status=0
	echo "round,driver,luns,seconds" >"$OUT/scan.csv"
	for d in c rust; do unload "$d"; done
	for r in $(seq 1 "$ROUNDS"); do
		for d in $(rotate "$r" c rust); do
			m=$(module_of "$d")
			t0=$EPOCHREALTIME
			load "$d" || { log "$d: load failed"; echo "$r,$d,$LUNS,failed" >>"$OUT/scan.csv"; status=1; continue; }
			# Until every LUN is a disk (sd probes asynchronously after the scan).
			if wait_for 600 enough_disks "$m" "$LUNS"; then
				t1=$EPOCHREALTIME
				echo "$r,$d,$LUNS,$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')" >>"$OUT/scan.csv"
			else
				log "$d: only $(scsi_disk_count "$m") of $LUNS LUNs appeared"
				echo "$r,$d,$LUNS,timeout" >>"$OUT/scan.csv"
				status=1
			fi
			log "scan round $r $d: $(tail -n1 "$OUT/scan.csv")"
			unload "$d" || { log "$d: rmmod failed"; status=1; }
		done
	done
	return $status
}

# --- where the time goes: ftrace function_graph ----------------------------------
# graph_start FUNCTION...: a function_graph trace of these functions alone
# (set_ftrace_filter: what they call is not traced), each call's duration on
# its closing line, from an empty buffer. graph_end: tracing back to nop.
graph_start() {
	local t=/sys/kernel/tracing f
	echo 0 >"$t/tracing_on"
	echo nop >"$t/current_tracer"
	: >"$t/set_ftrace_filter"
	for f in "$@"; do
		echo "$f" >>"$t/set_ftrace_filter" || { log "cannot trace $f"; return 1; }
	done
	echo function_graph >"$t/current_tracer"
	echo 1 >"$t/options/funcgraph-tail"
	echo >"$t/trace"
	echo 1 >"$t/tracing_on"
}

graph_end() {
	echo nop >/sys/kernel/tracing/current_tracer
	: >/sys/kernel/tracing/set_ftrace_filter
}

# Rust functions carry no fentry hook (rustc gets no -mfentry), so the trace is
# of the C functions around each driver: scsi_queue_rq (blk-mq's submission,
# the driver's queuecommand inside) and vring_interrupt (the virtio core's
# interrupt handler, the driver's request-queue callback inside), traced alone
# (set_ftrace_filter: no nested tracing overhead) during a qd1 4k randread on
# the null disk. $OUT/trace.csv gets calls and mean duration per function;
# vring_interrupt also counts the few interrupts of the guest's other virtio
# devices (console, 9p).
run_trace() {
	local t=/sys/kernel/tracing d status=0
	mountpoint -q "$t" || mount -t tracefs none "$t"
	echo "driver,function,calls,mean_us" >"$OUT/trace.csv"
	for d in c rust; do unload "$d"; done
	for d in c rust; do
		load "$d" && find_devs "$d" || { log "$d: no disks"; status=1; continue; }
		graph_start scsi_queue_rq vring_interrupt || { status=1; unload "$d"; continue; }
		fio --name=trace --filename="$DEV_NULL" --direct=1 --rw=randread --bs=4k --ioengine=io_uring \
			--iodepth=1 --time_based --runtime="$RUNTIME" --output=/dev/null
		echo 0 >"$t/tracing_on"
		# "CPU) [+!] DURATION us | function();" or "| } /* function */".
		awk -F'|' -v d="$d" 'NF >= 2 && $1 ~ /us/ {
				n = split($1, a, " "); us = a[n - 1]; f = $2; gsub(/[ ;(){}*\/]/, "", f)
				s[f] += us; c[f]++
			} END { for (f in s) printf "%s,%s,%d,%.2f\n", d, f, c[f], s[f] / c[f] }' "$t/trace" >>"$OUT/trace.csv"
		graph_end
		log "$d: traced"
		unload "$d"
	done
	return $status
}

# --- instructions per I/O under -icount shift=0 ---------------------------------
# For each row of $COST_ROWS ("NAME FIO-OPTIONS..."), on the null disk, fio
# pinned to CPU 0: a warm-up, a run of 10 x COST_IOS I/Os whose fio report
# gives the job's CPU time, then a function_graph trace of COST_IOS I/Os. The
# host makes them numbers (cost.py merge): nothing is parsed under TCG.
# Rounds alternate which driver goes first (ABBA over two rounds); within a
# round each driver runs the rows in an order drawn from COST_SEED and the
# round. One JSON line per row, round and driver in $OUT/raw/cost.jsonl.
# row_fio NAME FIO-OPTIONS...: one row's fio job on the null disk, pinned to
# CPU 0, with more options (how many I/Os, where the report goes) at the end.
row_fio() {
	local name=$1
	shift
	fio --name="$name" --filename="$DEV_NULL" --direct=1 --size=1g --norandommap \
		--randrepeat=0 --cpus_allowed=0 "$@"
}

# Huge pages for the rows whose fio buffers are in them (--iomem=shmhuge:
# the 128k row). In 4k pages a 128k read maps to as many segments as its
# buffer's pages happen to lie apart, which moved a submission by some
# 4,000 instructions between rounds; in a huge page it is two segments of
# 64 KiB every time.
reserve_huge_pages() { echo 16 >/proc/sys/vm/nr_hugepages; }

cost_row() { # ROUND DRIVER NAME FIO-OPTIONS...
	local r=$1 d=$2 name=$3 t=/sys/kernel/tracing tr js
	shift 3
	row_fio "$name" "$@" --number_ios=$((COST_IOS / 4)) --output=/dev/null >/dev/null || return 1
	js=fio-r$r-$d-$name.json
	row_fio "$name" "$@" --number_ios=$((10 * COST_IOS)) --output-format=json --output="$raw/$js" >/dev/null || return 1
	graph_start scsi_queue_rq scsi_mq_poll vring_interrupt scsi_done scsi_complete || return 1
	row_fio "$name" "$@" --number_ios="$COST_IOS" --output=/dev/null >/dev/null || return 1
	echo 0 >"$t/tracing_on"
	grep -q 'LOST' "$t/trace" && { log "$d $name: trace events lost"; return 1; }
	tr=trace-r$r-$d-$name.txt
	cp "$t/trace" "$raw/$tr"
	graph_end
	printf '{"round": %d, "driver": "%s", "row": "%s", "ios": %d, "fio": "%s", "trace": "%s"}\n' \
		"$r" "$d" "$name" "$COST_IOS" "$js" "$tr" >>"$raw/cost.jsonl"
}

run_cost() {
	local r d order name opts status=0
	reserve_huge_pages
	mountpoint -q /sys/kernel/tracing || mount -t tracefs none /sys/kernel/tracing
	# Room for a trace of COST_IOS I/Os per CPU (LOST events fail the row).
	echo 16384 >/sys/kernel/tracing/buffer_size_kb
	{ uname -a; nproc; grep -m1 'model name' /proc/cpuinfo; } >"$OUT/guest-info.txt"
	for d in c rust; do unload "$d"; done
	for r in $(seq 1 "$ROUNDS"); do
		order="c rust"
		[ $((r % 2)) = 0 ] && order="rust c"
		for d in $order; do
			load "$d" "$POLLQ" && find_devs "$d" || { log "$d: no disks"; status=1; continue; }
			# shellcheck disable=SC2086 # fio options are words
			while read -r name opts; do
				log "cost round $r $d $name"
				cost_row "$r" "$d" "$name" $opts || { log "$d $name: failed"; status=1; }
			done < <(awk -v seed="$COST_SEED$r" 'BEGIN {srand(seed)} {print rand() "\t" $0}' "$COST_ROWS" |
				sort -n | cut -f2-)
			unload "$d" || { log "$d: rmmod failed"; status=1; }
		done
	done
	return $status
}

# --- instructions per I/O by function: the pcprof plugin (tools/bench/pcprof.c) ---
# The guest runs with nokaslr under QEMU with the plugin, whose marker is the
# kernel's __x64_sys_sync: each sync opens or closes a window. For each row
# of $COST_ROWS and each SCSI driver: a warm-up, then a window of COST_IOS
# I/Os, then the modules' symbols as they are loaded (the host maps
# addresses to functions). One JSON line per window in
# $OUT/raw/profile-$PROFILE_GUEST.jsonl, in window order.
run_profile() {
	local d name opts w=0 status=0 ks
	reserve_huge_pages
	{ uname -a; nproc; grep -m1 'model name' /proc/cpuinfo; } >"$OUT/guest-info.txt"
	for d in c rust; do unload "$d"; done
	# shellcheck disable=SC2086 # fio options are words
	while read -r name opts; do
		for d in c rust; do
			load "$d" "$POLLQ" && find_devs "$d" || { log "$d: no disks"; return 1; }
			log "profile $d $name"
			row_fio "$name" $opts --number_ios=$((COST_IOS / 4)) --output=/dev/null >/dev/null || status=1
			# Both syncs whatever fio does: the windows stay numbered.
			sync
			row_fio "$name" $opts --number_ios="$COST_IOS" --output=/dev/null >/dev/null || status=1
			sync
			ks=kallsyms-$PROFILE_GUEST-$w.txt
			grep '\[' /proc/kallsyms >"$raw/$ks"
			printf '{"window": %d, "driver": "%s", "row": "%s", "ios": %d, "kallsyms": "%s"}\n' \
				"$w" "$d" "$name" "$COST_IOS" "$ks" >>"$raw/profile-$PROFILE_GUEST.jsonl"
			w=$((w + 1))
			unload "$d" || { log "$d: rmmod failed"; status=1; }
		done
	done <"$COST_ROWS"
	return $status
}

# --- scaling: bench.sh --scaling ------------------------------------------------
# The guest has a controller per QEMU configuration (num_queues,
# virtqueue_size, LUNs), told apart by the model (scsi-hd product=) of their
# disks. $SCALE_CONFIGS has a line "NAME MODEL LUNS" per point: fio drives
# the first LUNS disks of the controller whose disks are MODEL, with
# SCALE_JOBS jobs (one per vCPU, pinned) of 4k random reads at SCALE_QD,
# each job over all those disks (fio's files in turn).

# The host number of MODULE's controller whose LUN 0 is a MODEL.
host_of_model() { # MODULE MODEL
	local h m
	for h in $(hosts_of "$1"); do
		read -r m <"/sys/bus/scsi/devices/$h:0:0:0/model" 2>/dev/null && [ "$m" = "$2" ] && echo "$h" && return 0
	done
	return 1
}

# The first N disks of that controller, as fio's ':'-separated filename.
scale_disks() { # MODULE MODEL N
	local h l d disks=()
	h=$(host_of_model "$1" "$2") || return 1
	for l in $(seq 0 $(($3 - 1))); do
		for d in /sys/bus/scsi/devices/"$h":0:0:"$l"/block/*; do
			[ -e "$d" ] || return 1
			disks+=("/dev/${d##*/}")
		done
	done
	local IFS=:
	echo "${disks[*]}"
}

# Reads completed so far on the disks of a filename list.
disk_reads() { # FILES
	local d n sum=0
	for d in ${1//:/ }; do
		read -r n _ <"/sys/block/${d#/dev/}/stat"
		sum=$((sum + n))
	done
	echo "$sum"
}

reads_past() { [ "$(disk_reads "$1")" -ge "$2" ]; } # FILES N

# Loads DRIVER and waits for all SCALE_DISKS disks, without an I/O scheduler.
scale_load() { # DRIVER
	local m d
	m=$(module_of "$1")
	load "$1" && wait_for 600 enough_disks "$m" "$SCALE_DISKS" || return 1
	udevadm settle 2>/dev/null || true
	for d in /sys/bus/scsi/devices/*/block/*; do
		echo none >"$d/queue/scheduler" 2>/dev/null || true
	done
}

# fio's options for a point on FILES, in the array scale_args (fio itself is
# started by the caller: $! of a function in the background is a subshell).
# gtod_reduce: no latency statistics, so none of fio's clock reads (under TCG
# a system call and an HPET read each, more instructions than the driver's);
# disk_util=0: fio's start looks each disk up in sysfs otherwise, minutes
# under TCG for 256 disks.
scale_opts() { # FILES
	scale_args=(--name=scale --filename="$1" --direct=1 --rw=randread --bs=4k --ioengine=io_uring
		--iodepth="$SCALE_QD" --numjobs="$SCALE_JOBS" --cpus_allowed="0-$((SCALE_JOBS - 1))"
		--cpus_allowed_policy=split --group_reporting --norandommap --randrepeat=0 --size=1g
		--gtod_reduce=1 --disk_util=0)
}

# Busy returns (queuecommand refused a command: the tracepoint
# scsi:scsi_dispatch_cmd_error, any driver) from busy_start to busy_count:
# the trace's count of entries written, whatever the buffer kept.
busy_start() {
	local t=/sys/kernel/tracing
	mountpoint -q "$t" || mount -t tracefs none "$t"
	echo 0 >"$t/tracing_on"
	echo >"$t/trace"
	echo 1 >"$t/events/scsi/scsi_dispatch_cmd_error/enable"
	echo 1 >"$t/tracing_on"
}

busy_count() {
	local t=/sys/kernel/tracing
	echo 0 >"$t/events/scsi/scsi_dispatch_cmd_error/enable"
	echo 0 >"$t/tracing_on"
	sed -n 's|^# entries-in-buffer/entries-written: [0-9]*/\([0-9]*\).*|\1|p' "$t/trace"
}

# Request queues of the disk's tag sets that blk-mq counts as active (the
# largest count over the first disk's hardware queues). Each disk of a
# controller has a request queue of its own on the controller's tag sets,
# and a queue that had a request stays active until its timeout timer finds
# it idle, about 30 s after its last request (blk_mq_timeout_work); while N
# are active, each may hold about 1/N of a hardware queue's tags
# (hctx_may_queue). Right after the 256-LUN point, one LUN would get 4 of
# its 256.
active_queues() { # FILES
	local d=${1%%:*} f a m=0
	for f in /sys/kernel/debug/block/"${d#/dev/}"/hctx*/tags; do
		a=$(sed -n 's/^active_queues=//p' "$f")
		[ "${a:-0}" -gt "$m" ] && m=$a
	done
	echo "$m"
}

at_most_active() { [ "$(active_queues "$1")" -le "$2" ]; } # FILES N

# Each round's driver order (C first in odd rounds) and config order (seeded).
# A point waits (up to 60 s) until no more queues are active than it drives:
# it measures what its LUNs get, not what an earlier point left.
scale_rounds() { # FUNCTION: FUNCTION ROUND DRIVER NAME FILES per config
	local r d name model luns files status=0
	{ uname -a; nproc; grep -m1 'model name' /proc/cpuinfo; } >"$OUT/guest-info.txt"
	for d in c rust; do unload "$d"; done
	for r in $(seq 1 "$ROUNDS"); do
		for d in $(abba "$r"); do
			[ "$d" = blk ] && continue
			scale_load "$d" || { log "$d: only $(scsi_disk_count "$(module_of "$d")") of $SCALE_DISKS disks"; status=1; unload "$d"; continue; }
			while read -r name model luns; do
				files=$(scale_disks "$(module_of "$d")" "$model" "$luns") || { log "$d $name: no disks"; status=1; continue; }
				wait_for 60 at_most_active "$files" "$luns" ||
					log "$d $name: still $(active_queues "$files") active queues"
				log "round $r $d $name ($(active_queues "$files") active queues)"
				"$1" "$r" "$d" "$name" "$files" || { log "$d $name: failed"; status=1; }
			done < <(awk -v seed="$SCALE_SEED$r" 'BEGIN {srand(seed)} {print rand() "\t" $0}' "$SCALE_CONFIGS" |
				sort -n | cut -f2-)
			[ "$d" = rust ] && save_stats "$raw/scale-$MODE_TAG-r$r-rust.stats"
			unload "$d" || { log "$d: rmmod failed"; status=1; }
		done
	done
	return $status
}

# -icount guest with the pcprof plugin (bench.sh): fio runs until it has
# read 1000 times and SCALE_WARM guest seconds more, then a window of SCALE_WINDOW between two syncs (the plugin counts
# every kernel instruction of every vCPU in it), then is stopped. The host
# takes the I/Os of the window from the plugin's counts too (calls of
# scsi_finish_command). One JSON line per window, in window order.
scale_cost_one() { # ROUND DRIVER NAME FILES
	local pid busy ks
	scale_opts "$4"
	fio "${scale_args[@]}" --time_based --runtime=3600 --output=/dev/null >/dev/null &
	pid=$!
	# Until fio is past its start (opening 256 disks takes a while) and
	# reading: 1000 reads, then SCALE_WARM more.
	wait_for 600 reads_past "$4" $(($(disk_reads "$4") + 1000)) || { kill -TERM "$pid"; wait "$pid"; return 1; }
	sleep "$SCALE_WARM"
	busy_start
	sync
	sleep "$SCALE_WINDOW"
	sync
	busy=$(busy_count)
	kill -TERM "$pid"
	wait "$pid" || true
	log "window $WINDOW: $busy busy"
	ks=kallsyms-scale-$WINDOW.txt
	grep '\[' /proc/kallsyms >"$raw/$ks"
	printf '{"window": %d, "round": %d, "driver": "%s", "row": "%s", "ios": 0, "busy": %d, "kallsyms": "%s"}\n' \
		"$WINDOW" "$1" "$2" "$3" "${busy:-0}" "$ks" >>"$raw/profile-scaling.jsonl"
	WINDOW=$((WINDOW + 1))
}

# A normal TCG guest: fio's IOPS, the busy returns over all its reads.
scale_iops_one() { # ROUND DRIVER NAME FILES
	local js=scale-iops-r$1-$2-$3.json n0 busy
	n0=$(disk_reads "$4")
	scale_opts "$4"
	busy_start
	fio "${scale_args[@]}" --time_based --runtime="$RUNTIME" --ramp_time="$RAMP" \
		--output-format=json --output="$raw/$js" >/dev/null || return 1
	busy=$(busy_count)
	printf '{"round": %d, "driver": "%s", "config": "%s", "fio": "%s", "busy": %d, "reads": %d}\n' \
		"$1" "$2" "$3" "$js" "${busy:-0}" $(($(disk_reads "$4") - n0)) >>"$raw/scale-iops.jsonl"
}

# The debug kernel: /proc/lock_stat over one fio run, cleared before it. Kept:
# the most contended classes (the file's order) and the queue locks' blocks.
scale_lock_one() { # ROUND DRIVER NAME FILES
	local f=$raw/lockstat-$2-$3.txt
	echo 0 >/proc/lock_stat
	scale_opts "$4"
	echo 1 >/proc/sys/kernel/lock_stat
	fio "${scale_args[@]}" --time_based --runtime="$RUNTIME" --output-format=json \
		--output="$raw/lockstat-$2-$3.json" >/dev/null || return 1
	echo 0 >/proc/sys/kernel/lock_stat
	{ head -n 120 /proc/lock_stat; echo "== queue locks"
		grep -A 12 -E '(vq_lock|vsrs_request_vq):' /proc/lock_stat; } >"$f" || true
}

run_scale() { # cost|iops|lock
	MODE_TAG=$1 WINDOW=0
	case $1 in
	cost) scale_rounds scale_cost_one ;;
	iops) scale_rounds scale_iops_one ;;
	lock) [ -e /proc/lock_stat ] || { log "no /proc/lock_stat (CONFIG_LOCK_STAT)"; return 1; }
		scale_rounds scale_lock_one ;;
	esac
}

case $mode in
scale-cost | scale-iops | scale-lock) run_scale "${mode#scale-}" ;;
fio) run_fio ;;
cost) run_cost ;;
profile) run_profile ;;
scan) run_scan ;;
trace) run_trace ;;
*) echo "guest.sh: mode must be fio, scan, trace, cost, profile or scale-cost|iops|lock" >&2; exit 2 ;;
esac
