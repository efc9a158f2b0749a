#!/bin/bash
# make bench: fio side by side on the in-tree C virtio_scsi driver,
# virtio_scsi_rs and virtio-blk, in one QEMU guest with the same command line
# for every driver, plus the scan time of a many-LUN controller.
#
#   tools/bench/bench.sh [--kernel bench|test] [--rounds N] [--runtime S] [--ramp S]
#                        [--cpus N] [--luns N] [--out DIR] [--smoke]
#                        [--disks 'null file iscsi'] [--rws 'randread randwrite']
#                        [--engines 'io_uring libaio'] [--iodepths '1 32 128']
#                        [--numjobs '1 N'] [--no-scan] [--no-blk] [--trace]
#                        [--cost [--ios N] [--seed S] [--rows REGEX]]
#                        [--profile [--ios N] [--rows REGEX]]
#                        [--scaling [--quick] [--no-lockstat]]
#
# Defaults: the non-debug bench kernel (built into the cache on first use,
# 30-60 min on 2 cores), 3 rounds, 2 s per fio job after 1 s of ramp, vCPUs 2,
# a 256-LUN scan. About 30 min under TCG. --smoke is what make check runs: one
# round of a tiny matrix with the iSCSI rows on the test kernel (never builds
# the bench kernel),
# written to a temporary directory unless --out is given.
#
# VSRS_KDIR=DIR uses that kernel build instead of the cached one; VSRS_BENCH_KO
# a module already built against it (VSRS_DEBUG_KO: against the debug
# kernel, for --scaling's lock statistics).
#
# --trace runs, instead of the fio matrix and the scan, one guest that traces
# each SCSI driver's submission and completion entry points with ftrace
# function_graph during a qd1 4k randread (--runtime S, default 5): calls and
# mean duration in trace.csv (where the time goes when Rust/C < 1.00).
#
# --cost runs, instead, guests under QEMU's -icount shift=0,sleep=off,
# where guest time counts executed instructions: for each row of the null
# disk's matrix (one job) and each SCSI driver, --rounds times (default 3),
# fio's CPU time per I/O and the instructions of each submission and
# completion (guest.sh run_cost, tools/bench/cost.py). --ios N: I/Os per
# trace (fio's CPU time is of 10 N; default 2000); --seed S: the rows' order
# (default 1); --rows REGEX: only the rows whose name matches (grep -E). Raw
# data in raw/cost.jsonl, the table in cost.md (tools/bench/cost_report.py).
#
# --profile runs the same rows once per SCSI driver (--ios N I/Os each,
# default 2000) in the same -icount guests with QEMU's pcprof plugin
# (tools/bench/pcprof.c, built here with cc): every guest kernel instruction
# counted, so profile.md (tools/bench/pcprof.py) has the instructions per I/O
# of each kernel and module function, C beside Rust, largest differences
# first: where the driver path's difference goes. Raw counts in
# raw/pcprof-G.txt.
#
# --scaling runs, instead, the scaling curves (issue 17 item 4): 4k random
# reads, fio with 4 jobs (one per vCPU, pinned) at iodepth 32 each, every
# job over all the LUNs of the point (fio's files in turn), against three
# axes: LUNs driven at once (1, 16, 256 of a 256-LUN controller with 4
# queues), num_queues (1, 2, 4; one LUN) and virtqueue_size (16, 64, 256;
# one LUN, one queue: the 128 commands in flight fill the small rings).
# Every point is a controller of its own (null-co read-zeroes disks, an
# iothread each; points that are the same configuration share one: 1 LUN
# is num_queues 4, virtqueue_size 256 is num_queues 1), all in one guest of
# 4 vCPUs, so each driver is loaded once per round and both drivers see the
# same devices. Three guests:
# - -icount shift=0,sleep=on with the pcprof plugin (as --profile), 2
#   rounds (driver order ABBA): every kernel instruction of all 4 vCPUs in a
#   window of 0.5 guest s (0.2 with --quick) after 0.5 s of fio, per I/O
#   (the window's I/Os: calls of scsi_finish_command); beside it those of
#   queued_spin_lock_slowpath (spinning on a contended lock), and the busy
#   returns (the tracepoint scsi:scsi_dispatch_cmd_error, either driver);
# - a normal TCG guest, --rounds (default 4) rounds of --runtime S (default
#   3) after --ramp S (default 1) per point and driver, ABBA, points in a
#   seeded order per round: IOPS, Rust/C with intervals as for the matrix;
# - the debug kernel (CONFIG_LOCK_STAT; built on first use, 20-35 min):
#   /proc/lock_stat over a run of --runtime S at num_queues 1 and 4, one
#   round (--no-lockstat leaves it out).
# --quick: 2 rounds of 1 s (ramp 0) and the shorter window. Each driver
# load scans the 256-LUN controller (minutes under TCG): 66 min with
# --rounds 2 at a host load of 9 (2026-12-06), once the kernels are built.
# Output in
# bench/results/<date>-scaling/: raw/ (the plugin's counts, jsonl of the
# windows and fio runs, fio JSON, lock_stat excerpts), scaling.md (tables),
# scaling.png (curves, C beside Rust); tools/bench/scaling_report.py.
#
# The disk iscsi (issue 16 item 7) is a real target passed through: a tgt
# disk over iSCSI on loopback (tools/tgt-target.sh), reached by QEMU's
# libiscsi driver, scsi-block on the SCSI controller and the block layer for
# virtio-blk (sessions of their own), read in three rows (4k random qd1 and
# qd32, 128k sequential qd32). Before the guest, iscsi-perf drives the same
# LUN from the host in each row (raw/host-iscsi.csv): the bare-metal
# reference, beside the guest's rows in results.md.
#
# The fio matrix: rounds alternate whether C runs before or after Rust (ABBA
# over two rounds; virtio-blk first or last), and each round runs the rows
# in its own order drawn from --seed (default 1). --no-blk leaves
# virtio-blk's runs out (its devices stay on the command line): a third
# less time per round, for more rounds of the pair the table compares.
#
# Output in bench/results/<date>/: raw/ (fio JSON per round and driver, the
# per-queue counters of virtio_scsi_rs), jobs-rN.fio (round N's order),
# hostload.txt (the host's 1-minute load, per 5 s), scan.csv, meta.env,
# results.md (the table) and iops.png (the plot).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
# shellcheck source=tools/kernel.env
. "$top/tools/kernel.env"

kernel=bench rounds=3 runtime=2 ramp=1 cpus=2 luns=256 out='' smoke=0 scan=1 trace=0 cost=0 profile=0 ios=2000 seed=1 rows=.
scaling=0 quick=0 lockstat=1 blk=1
disks="null file iscsi" rws="randread randwrite" engines="io_uring libaio" iodepths="1 32 128" numjobs=
set_rounds='' set_runtime='' set_ramp='' set_luns=''
while [ $# -gt 0 ]; do
	case $1 in
	--kernel) kernel=$2; shift 2 ;;
	--rounds) rounds=$2; set_rounds=1; shift 2 ;;
	--runtime) runtime=$2; set_runtime=1; shift 2 ;;
	--ramp) ramp=$2; set_ramp=1; shift 2 ;;
	--cpus) cpus=$2; shift 2 ;;
	--luns) luns=$2; set_luns=1; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--disks) disks=$2; shift 2 ;;
	--rws) rws=$2; shift 2 ;;
	--engines) engines=$2; shift 2 ;;
	--iodepths) iodepths=$2; shift 2 ;;
	--numjobs) numjobs=$2; shift 2 ;;
	--no-scan) scan=0; shift ;;
	--no-blk) blk=0; shift ;;
	--trace) trace=1; shift ;;
	--cost) cost=1; shift ;;
	--profile) profile=1; shift ;;
	--scaling) scaling=1; shift ;;
	--quick) quick=1; shift ;;
	--no-lockstat) lockstat=0; shift ;;
	--ios) ios=$2; shift 2 ;;
	--seed) seed=$2; shift 2 ;;
	--rows) rows=$2; shift 2 ;;
	--smoke) smoke=1; shift ;;
	*) echo "bench: unknown option $1 (see the header of $0)" >&2; exit 2 ;;
	esac
done
if [ "$smoke" = 1 ]; then
	kernel=test disks="null iscsi" rws=randread engines=io_uring iodepths="1 32" numjobs=1
	[ -n "$set_rounds" ] || rounds=1
	[ -n "$set_runtime" ] || runtime=1
	[ -n "$set_ramp" ] || ramp=0
	[ -n "$set_luns" ] || luns=8
fi
numjobs=${numjobs:-"1 $cpus"}
[ "$trace" = 0 ] || [ -n "$set_runtime" ] || runtime=5
[ "$cost" = 0 ] || [ -n "$set_rounds" ] || rounds=3
[ "$profile" = 0 ] || rounds=1
if [ "$scaling" = 1 ]; then
	[ -n "$set_rounds" ] || rounds=$((quick ? 2 : 4))
	[ -n "$set_runtime" ] || runtime=$((quick ? 1 : 3))
	[ -n "$set_ramp" ] || ramp=$((quick ? 0 : 1))
fi
say() { echo "bench: $*" >&2; }
# The host's 1-minute load, a sample per 5 s, to FILE until kill "$loadpid".
hostload_start() { # FILE
	(while :; do echo "$(date +%s) $(cut -d' ' -f1 /proc/loadavg)"; sleep 5; done) >"$1" &
	loadpid=$!
}

# --- kernel and module ------------------------------------------------------------
if [ -n "${VSRS_KDIR:-}" ]; then
	kdir=$(cd "$VSRS_KDIR" && pwd)
else
	line=$("$top/tools/kdir.sh" "$kernel")
	kdir=${line%%$'\t'*}
fi
# A module must be built against the kernel it is loaded into: build a copy
# of the sources per kernel build, so the tree's own .ko (test kernel) stays.
# The build directory is shared by every run against this kernel: one run at
# a time builds there and takes a copy of its module (to DEST).
build_module() { # KDIR DEST
	local mdir mlock
	mdir=$VSRS_CACHE/bench-module/$(basename "$1")
	mkdir -p "$mdir"
	exec {mlock}>"$mdir.lock"
	flock "$mlock"
	(cd "$top" && git ls-files -z --cached --others --exclude-standard -- ':!:bench' ':!:protocol/target' |
		rsync -a --from0 --files-from=- ./ "$mdir/")
	say "building the module against $1"
	# shellcheck disable=SC2046 # make words
	make -s -C "$1" M="$mdir" CONFIG_VIRTIO_SCSI_RS=m $(tr '\n' ' ' <"$1/.vsrs-make-args") modules >&2
	cp "$mdir/virtio_scsi_rs.ko" "$2"
	flock -u "$mlock"
	exec {mlock}>&-
}
if [ -n "${VSRS_BENCH_KO:-}" ]; then
	ko=$VSRS_BENCH_KO
else
	ko=$(mktemp /tmp/vsrs-bench-ko.XXXXXX) tmp_ko=$ko
	trap 'rm -f "$tmp_ko"' EXIT
	build_module "$kdir" "$ko"
fi
[ -f "$ko" ] || { say "no module at $ko"; exit 1; }

# --- results directory and the fio job files ------------------------------------
# The iSCSI rows, RW:BS:QD, each also run by iscsi-perf on the host (which
# reads only: random with -r, sequential without).
iscsi_rows="randread:4k:1 randread:4k:32 read:128k:32"
iscsi_name() { echo "iscsi-$1-$2-io_uring-qd$3-j1"; } # RW BS QD: the row's fio job name
if [ -z "$out" ]; then
	if [ "$smoke" = 1 ]; then
		out=$(mktemp -d /tmp/vsrs-bench-smoke.XXXXXX)
	elif [ "$scaling" = 1 ]; then
		out=$top/bench/results/$(date +%Y-%m-%d)-scaling
	else
		out=$top/bench/results/$(date +%Y-%m-%d-%H%M)
	fi
fi
mkdir -p "$out/raw"
out=$(cd "$out" && pwd)
say "results in $out"

# What every meta.env has.
meta_common() {
	cat <<EOT
DATE=$(date +%Y-%m-%d)
QEMU=$(qemu-system-x86_64 --version | head -n1 | sed 's/^QEMU emulator version //')
KERNEL=$(basename "$kdir")
GUEST_UNAME=$(head -n1 "$out/guest-info.txt" 2>/dev/null | cut -d' ' -f3)
FIO=$(fio --version)
MODULE_COMMIT=$(cd "$top" && git rev-parse --short HEAD)$(cd "$top" && git diff --quiet HEAD -- '*.rs' || echo -dirty)
EOT
}
# The pcprof plugin (tools/bench/pcprof.c) in $out, and its marker: the
# address of __x64_sys_sync in the System.map of $kdir (guests with nokaslr).
pcprof_build() {
	cc -shared -fPIC -O2 -Wall -o "$out/pcprof.so" "$here/pcprof.c" -lpthread
	marker=$(awk '$3 == "__x64_sys_sync" {print $1}' "$kdir/System.map")
	[ -n "$marker" ] || { say "no __x64_sys_sync in $kdir/System.map"; exit 1; }
}
if [ "$scaling" = 1 ]; then
	# shellcheck source=tools/bench/scaling.sh
	. "$here/scaling.sh"
	exit $status
fi

{
	cat <<EOT
# Generated by tools/bench/bench.sh; DEV_NULL and DEV_FILE come from guest.sh.
[global]
direct=1
time_based=1
runtime=$runtime
ramp_time=$ramp
group_reporting=1
randrepeat=0
norandommap=1
size=1g
EOT
	for disk in $disks; do
		if [ "$disk" = iscsi ]; then
			for row in $iscsi_rows; do
				IFS=: read -r rw bs qd <<<"$row"
				printf '\n[%s]\nstonewall\nfilename=${DEV_ISCSI}\nsize=100%%\nrw=%s\nbs=%s\nioengine=io_uring\niodepth=%s\nnumjobs=1\n' \
					"$(iscsi_name "$rw" "$bs" "$qd")" "$rw" "$bs" "$qd"
			done
			continue
		fi
		dev='${DEV_NULL}'; [ "$disk" = file ] && dev='${DEV_FILE}'
		for rw in $rws; do
			for eng in $engines; do
				for nj in $numjobs; do
					for qd in $iodepths; do
						printf '\n[%s]\nstonewall\nfilename=%s\nrw=%s\nbs=4k\nioengine=%s\niodepth=%s\nnumjobs=%s\n' \
							"$disk-$rw-4k-$eng-qd$qd-j$nj" "$dev" "$rw" "$eng" "$qd" "$nj"
					done
				done
			done
		done
		printf '\n[%s]\nstonewall\nfilename=%s\nrw=read\nbs=128k\nioengine=io_uring\niodepth=32\nnumjobs=1\n' \
			"$disk-read-128k-io_uring-qd32-j1" "$dev"
	done
} >"$out/jobs.fio"
# io_uring --hipri on poll queues: 4k random reads on the null-co disk.
{
	sed -n '1,/^size=/p' "$out/jobs.fio"
	for qd in $iodepths; do
		printf '\n[%s]\nstonewall\nfilename=${DEV_NULL}\nrw=randread\nbs=4k\nioengine=io_uring\nhipri=1\niodepth=%s\nnumjobs=1\n' \
			"null-randread-4k-io_uring_hipri-qd$qd-j1" "$qd"
	done
} >"$out/hipri.fio"
pollq=$((cpus > 1 ? 1 : 0))
[ "$pollq" -gt 0 ] || : >"$out/hipri.fio"  # poll queues need a second queue
# Each round runs the sections in its own order, drawn from --seed and the
# round ([global] stays first): no row always follows the same one.
for r in $(seq 1 "$rounds"); do
	for f in jobs hipri; do
		/usr/bin/python3 - "$out/$f.fio" "$seed-$r" >"$out/$f-r$r.fio" <<'EOP'
import random
import sys
blocks = [b for b in open(sys.argv[1]).read().split("\n\n") if b.strip()]
rest = blocks[1:]
random.Random(sys.argv[2]).shuffle(rest)
if blocks:
    print("\n\n".join(blocks[:1] + rest))
EOP
	done
done

# The guest runs a copy: editing tools/bench/ during a run does not touch it.
# The modules too: the guest does not see /var/cache (the kernel build, the
# guest's /lib/modules, the bench module), only the shared results directory.
cp "$here/guest.sh" "$out/guest.sh"
mkdir -p "$out/modules"
cp "$ko" "$out/modules/virtio_scsi_rs.ko"
cp "$kdir/drivers/scsi/virtio_scsi.ko" "$kdir/drivers/block/virtio_blk.ko" "$out/modules/"
cat >"$out/guest.env" <<EOT
OUT=$out
ROUNDS=$rounds
KO=$out/modules/virtio_scsi_rs.ko
POLLQ=$pollq
LUNS=$luns
RUNTIME=$runtime
COST_IOS=$ios
COST_SEED=$seed
BLK=$blk
EOT

# --- the guest ----------------------------------------------------------------------
img=$(mktemp -d /dev/shm/vsrs-bench.XXXXXX) tgt_dir=
# The iSCSI target (tgt_dir, below) is stopped first: its disk is in $img.
trap '[ -z "$tgt_dir" ] || "$top/tools/tgt-target.sh" stop "$tgt_dir"; rm -rf "$img" ${tmp_ko:+"$tmp_ko"}' EXIT
# tmpfs-backed raw files, allocated up front so every driver sees the same state.
for f in scsi blk; do fallocate -l 1G "$img/$f.raw"; done
q="-object iothread,id=iot0"
q+=" -device virtio-scsi-pci,id=vs0,num_queues=$cpus,iothread=iot0"
q+=" -blockdev driver=null-co,node-name=snull,size=1073741824,read-zeroes=on"
q+=" -device scsi-hd,bus=vs0.0,scsi-id=0,lun=0,drive=snull,serial=bench-null"
q+=" -blockdev driver=file,filename=$img/scsi.raw,node-name=sfile0,cache.direct=off"
q+=" -blockdev driver=raw,file=sfile0,node-name=sfile"
q+=" -device scsi-hd,bus=vs0.0,scsi-id=0,lun=1,drive=sfile,serial=bench-file"
q+=" -blockdev driver=null-co,node-name=bnull,size=1073741824,read-zeroes=on"
q+=" -device virtio-blk-pci,drive=bnull,iothread=iot0,num-queues=$cpus,serial=bench-null"
q+=" -blockdev driver=file,filename=$img/blk.raw,node-name=bfile0,cache.direct=off"
q+=" -blockdev driver=raw,file=bfile0,node-name=bfile"
q+=" -device virtio-blk-pci,drive=bfile,iothread=iot0,num-queues=$cpus,serial=bench-file"
echo "$q" >"$out/qemu-fio.txt"

status=0
if [ "$trace" = 1 ]; then
	say "trace guest: ${runtime} s of qd1 randread per SCSI driver"
	VSRS_KDIR=$kdir "$top/tools/run-guest" --no-default-disks --cpus "$cpus" --rwdir "$out" --qemu "$q" \
		-- "$out/guest.sh" "$out/guest.env" trace 2>"$out/guest-trace.log" >&2 || status=1
	grep -E '^(run-guest|bench-guest):' "$out/guest-trace.log" >&2 || true
	rm -rf "$out/guest.sh" "$out/modules"
	column -s, -t "$out/trace.csv" 2>/dev/null || cat "$out/trace.csv"
	exit $status
fi
if [ "$cost" = 1 ] || [ "$profile" = 1 ]; then
	# The matrix's one-job rows on the null disk (the device costs nothing:
	# what is counted is the guest's work).
	for rw in $rws; do
		for eng in $engines; do
			for qd in $iodepths; do
				echo "null-$rw-4k-$eng-qd$qd-j1 --rw=$rw --bs=4k --ioengine=$eng --iodepth=$qd"
			done
		done
	done >"$out/cost-rows.txt"
	echo "null-read-128k-io_uring-qd32-j1 --rw=read --bs=128k --ioengine=io_uring --iodepth=32 --iomem=shmhuge" >>"$out/cost-rows.txt"
	if [ "$pollq" -gt 0 ]; then
		for qd in $iodepths; do
			echo "null-randread-4k-io_uring_hipri-qd$qd-j1 --rw=randread --bs=4k --ioengine=io_uring --hipri --iodepth=$qd"
		done >>"$out/cost-rows.txt"
	fi
	grep -E -- "^[^ ]*($rows)" "$out/cost-rows.txt" >"$out/cost-rows.sel" || { say "no row matches $rows"; exit 2; }
	mv "$out/cost-rows.sel" "$out/cost-rows.txt"
	mode=cost plugin='' append=()
	if [ "$profile" = 0 ]; then
		: >"$out/raw/cost.jsonl"
	else
		mode=profile
		pcprof_build
		# The System.map's addresses are the running kernel's.
		append=(--append nokaslr)
	fi
	start=$(date +%s)
	# Under -icount the vCPUs share one instruction clock: a duration on one
	# vCPU also counts what the other executed meanwhile. So one vCPU, except
	# for the polled rows: a poll queue needs a second queue, so a second
	# vCPU (C caps its queues at the CPUs), which stays idle (fio polls on
	# CPU 0; the poll queue has no interrupt).
	for g in 1 2; do
		if [ "$g" = 1 ]; then
			grep -v hipri "$out/cost-rows.txt" >"$out/cost-rows-$g.txt" || continue
			gcpus=1 gpollq=0
		else
			grep hipri "$out/cost-rows.txt" >"$out/cost-rows-$g.txt" || continue
			gcpus=2 gpollq=1
		fi
		{ cat "$out/guest.env"; echo "POLLQ=$gpollq"; echo "COST_ROWS=$out/cost-rows-$g.txt"
			echo "PROFILE_GUEST=$g"; } >"$out/guest-$mode-$g.env"
		[ "$profile" = 0 ] || plugin="-plugin file=$out/pcprof.so,marker=0x$marker,out=$out/raw/pcprof-$g.txt"
		say "$mode guest $g (-icount, $gcpus vCPU): $rounds round(s) of $(wc -l <"$out/cost-rows-$g.txt") rows, $ios I/Os per measurement"
		VSRS_KDIR=$kdir "$top/tools/run-guest" --no-default-disks --cpus "$gcpus" --rwdir "$out" \
			--qemu "-icount shift=0,sleep=off $plugin $q" "${append[@]}" \
			-- "$out/guest.sh" "$out/guest-$mode-$g.env" "$mode" 2>"$out/guest-$mode-$g.log" >&2 || status=1
		grep -E '^(run-guest|bench-guest):' "$out/guest-$mode-$g.log" >&2 || true
	done
	rm -rf "$out/guest.sh" "$out/modules"
	cat >"$out/meta.env" <<EOT
ICOUNT=shift=0,sleep=off
CPUS=1
CPUS_POLLED=2
ROUNDS=$rounds
COST_IOS=$ios
COST_SEED=$seed
COST_GUEST_SECONDS=$(( $(date +%s) - start ))
EOT
	meta_common >>"$out/meta.env"
	if [ "$profile" = 1 ]; then
		rm -f "$out/pcprof.so"
		/usr/bin/python3 "$here/pcprof.py" "$out" "$kdir/System.map" >"$out/profile.md" || status=1
		say "table: $out/profile.md"
		exit $status
	fi
	/usr/bin/python3 "$here/cost.py" merge "$out" && /usr/bin/python3 "$here/cost_report.py" "$out" || status=1
	# Beside it, what the built objects hold on each entry point's path.
	{ printf '\n## Static counts (tools/bench/hotpath.py)\n\n'
		/usr/bin/python3 "$here/hotpath.py" "$kdir/drivers/scsi/virtio_scsi.ko" "$ko"; } >>"$out/cost.md" || status=1
	say "table: $out/cost.md"
	exit $status
fi
# The passed-through disk: a tgtd of this run's own, stopped on exit.
iscsi_ini=iqn.2026-12.invalid.vsrs:bench
case " $disks " in
*" iscsi "*)
	target=$("$top/tools/tgt-target.sh" start "$img/tgt" "$iscsi_ini-scsi" "$iscsi_ini-blk" "$iscsi_ini-host") ||
		{ say "no iSCSI target (tools/tgt-target.sh, above)"; exit 1; }
	tgt_dir=$img/tgt
	read -r portal iqn <<<"$target"
	b="driver=iscsi,transport=tcp,portal=$portal,target=$iqn,lun=1"
	q+=" -blockdev $b,initiator-name=$iscsi_ini-scsi,node-name=siscsi"
	q+=" -device scsi-block,bus=vs0.0,scsi-id=0,lun=2,drive=siscsi"
	q+=" -blockdev $b,initiator-name=$iscsi_ini-blk,node-name=biscsi"
	q+=" -device virtio-blk-pci,drive=biscsi,iothread=iot0,num-queues=$cpus,serial=bench-iscsi"
	echo "$q" >"$out/qemu-fio.txt"
	echo ISCSI=1 >>"$out/guest.env"
	# The reference: the same rows from the host, iscsi-perf over the
	# target's 512-byte blocks, a run per row and round.
	say "host reference: iscsi-perf, $rounds round(s) of $(wc -w <<<"$iscsi_rows") rows of $runtime s"
	echo "round,row,iops" >"$out/raw/host-iscsi.csv"
	for r in $(seq 1 "$rounds"); do
		for row in $iscsi_rows; do
			IFS=: read -r rw bs qd <<<"$row"
			blocks=$(( ${bs%k} * 2 )) random=()
			[ "$rw" = randread ] && random=(-r)
			iops=$(timeout $((runtime + 30)) iscsi-perf -i "$iscsi_ini-host" -m "$qd" -b "$blocks" \
				"${random[@]}" -t "$runtime" "iscsi://$portal/$iqn/1" 2>&1 |
				tr '\r' '\n' | sed -n 's/^iops average \([0-9]*\) .*/\1/p' | tail -n1) || true
			[ -n "$iops" ] || { say "iscsi-perf gave no result for $row"; exit 1; }
			echo "$r,$(iscsi_name "$rw" "$bs" "$qd"),$iops" >>"$out/raw/host-iscsi.csv"
		done
	done
	;;
esac

start=$(date +%s)
say "fio guest: $rounds round(s), $(grep -c "^\[" "$out/jobs.fio") sections of ${runtime}+${ramp} s per driver"
# The host's load while the fio guest runs (TCG shares the host's CPUs: a
# busy host slows the guest), a sample per 5 s; report.py gives each fio run
# its mean beside the table.
hostload_start "$out/hostload.txt"
VSRS_KDIR=$kdir "$top/tools/run-guest" --no-default-disks --cpus "$cpus" --rwdir "$out" --qemu "$q" \
	-- "$out/guest.sh" "$out/guest.env" fio 2>"$out/guest-fio.log" >&2 || status=1
kill "$loadpid" 2>/dev/null || true
grep -E '^(run-guest|bench-guest):' "$out/guest-fio.log" >&2 || true
fio_s=$(( $(date +%s) - start ))

scan_s=0
if [ "$scan" = 1 ]; then
	start=$(date +%s)
	s="-object iothread,id=iot0 -device virtio-scsi-pci,id=vs0,num_queues=$cpus,iothread=iot0"
	for l in $(seq 0 $((luns - 1))); do
		s+=" -blockdev driver=null-co,node-name=n$l,size=1073741824,read-zeroes=on"
		s+=" -device scsi-hd,bus=vs0.0,scsi-id=0,lun=$l,drive=n$l"
	done
	say "scan guest: $luns LUNs, $rounds round(s)"
	VSRS_KDIR=$kdir "$top/tools/run-guest" --no-default-disks --cpus "$cpus" --rwdir "$out" --qemu "$s" \
		-- "$out/guest.sh" "$out/guest.env" scan 2>"$out/guest-scan.log" >&2 || status=1
	grep -E '^bench-guest:' "$out/guest-scan.log" >&2 || true
	scan_s=$(( $(date +%s) - start ))
fi

# The copies were for the guests only: the results keep what they produced.
rm -rf "$out/guest.sh" "$out/modules"

accel=TCG
grep -q 'accelerator: KVM' "$out/guest-fio.log" 2>/dev/null && accel=KVM
cat >"$out/meta.env" <<EOT
ACCEL=$accel
CPUS=$cpus
HOST_CPU=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
ROUNDS=$rounds
RUNTIME=$runtime
RAMP=$ramp
LUNS=$luns
FIO_GUEST_SECONDS=$fio_s
SCAN_GUEST_SECONDS=$scan_s
SMOKE=$smoke
EOT
meta_common >>"$out/meta.env"

# Debian's python3: python3-matplotlib is installed for it (not for a pyenv one).
readme=()
case $out in "$top"/bench/results/*) [ "$smoke" = 1 ] || readme=("$top/README.md") ;; esac
/usr/bin/python3 "$here/report.py" "$out" "${readme[@]}" || status=1
say "table: $out/results.md; plot: $out/iops.png"
exit $status
