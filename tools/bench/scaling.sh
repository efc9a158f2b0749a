# shellcheck shell=bash disable=SC2154,SC2034 # bench.sh's variables, and status for it
# bench.sh --scaling, sourced by tools/bench/bench.sh (its header says what
# is measured): the three guests, then tools/bench/scaling_report.py. Uses
# bench.sh's top, here, out, kdir, ko, rounds, runtime, ramp, seed, quick,
# lockstat, say, hostload_start, meta_common, pcprof_build and build_module.

# The controllers, "MODEL NUM_QUEUES VIRTQUEUE_SIZE LUNS" (MODEL: the product
# name of its disks, how the guest tells the controllers apart), and the
# points fio runs on them, "NAME MODEL LUNS" (guest.sh, scale_rounds).
controllers="SCALL 4 256 256,SCALQ1 1 256 1,SCALQ2 2 256 1,SCALV16 1 16 1,SCALV64 1 64 1"
cat >"$out/scale-configs.txt" <<EOT
l1 SCALL 1
l16 SCALL 16
l256 SCALL 256
q1 SCALQ1 1
q2 SCALQ2 1
v16 SCALV16 1
v64 SCALV64 1
EOT
# Each axis's points, "AXIS VALUE CONFIG", for the report.
cat >"$out/scale-points.txt" <<EOT
luns 1 l1
luns 16 l16
luns 256 l256
num_queues 1 q1
num_queues 2 q2
num_queues 4 l1
virtqueue_size 16 v16
virtqueue_size 64 v64
virtqueue_size 256 q1
EOT
scale_cpus=4 scale_mem=4G

# Sets q to the QEMU options of the CONTROLLERS (a comma-separated list as
# above), an iothread each, and ndisks to their number of disks.
scale_qemu() { # CONTROLLERS
	local c i=0 model nq vq n l
	q='' ndisks=0
	while read -r -d, c; do
		read -r model nq vq n <<<"$c"
		q+=" -object iothread,id=sit$i"
		q+=" -device virtio-scsi-pci,id=sc$i,num_queues=$nq,virtqueue_size=$vq,iothread=sit$i"
		for l in $(seq 0 $((n - 1))); do
			q+=" -blockdev driver=null-co,node-name=sc${i}n$l,size=1073741824,read-zeroes=on"
			q+=" -device scsi-hd,bus=sc$i.0,scsi-id=0,lun=$l,drive=sc${i}n$l,product=$model"
		done
		ndisks=$((ndisks + n)) i=$((i + 1))
	done <<<"$1,"
}

# The configuration of one guest (MODE: cost, iops or lock) in $out/scale-MODE.env.
scale_env() { # MODE KO MODDIR CONFIGS ROUNDS WINDOW
	cat >"$out/scale-$1.env" <<EOT
OUT=$out
KO=$2
MODDIR=$3
ROUNDS=$5
RUNTIME=$runtime
RAMP=$ramp
SCALE_CONFIGS=$4
SCALE_DISKS=$ndisks
SCALE_JOBS=$scale_cpus
SCALE_QD=32
SCALE_WARM=0.5
SCALE_WINDOW=$6
SCALE_SEED=$seed
EOT
}

# run_scale_guest MODE KDIR [run-guest options...]: guest.sh scale-MODE.
run_scale_guest() {
	local m=$1 k=$2
	shift 2
	VSRS_KDIR=$k "$top/tools/run-guest" --no-default-disks --cpus "$scale_cpus" --memory "$scale_mem" \
		--rwdir "$out" --klog "$out/console-scale-$m.txt" "$@" -- "$out/guest.sh" "$out/scale-$m.env" "scale-$m" 2>"$out/guest-scale-$m.log" >&2 || status=1
	grep -E '^(run-guest|bench-guest):' "$out/guest-scale-$m.log" >&2 || true
}

status=0
cp "$here/guest.sh" "$out/guest.sh"
mkdir -p "$out/modules"
cp "$ko" "$out/modules/virtio_scsi_rs.ko"
cp "$kdir/drivers/scsi/virtio_scsi.ko" "$out/modules/"
scale_qemu "$controllers"
echo "$q" >"$out/qemu-scaling.txt"
window=0.5
[ "$quick" = 0 ] || window=0.2
: >"$out/raw/profile-scaling.jsonl"
rm -f "$out/raw/scale-iops.jsonl"

# sleep=on: an idle guest's clock follows the host's. With sleep=off it jumps
# to the next timer whenever every vCPU waits, which with commands in
# QEMU's hands is their 30 s timeout: aborts, then resets (and QEMU 7.2's
# iothread TMFs assert in blk_drain). The plugin counts instructions
# either way.
icount=shift=0,sleep=on cost_rounds=2
start=$(date +%s)
pcprof_build
say "scaling, instructions: -icount guest, $cost_rounds rounds of 7 points per driver, windows of $window guest s"
scale_env cost "$out/modules/virtio_scsi_rs.ko" "$out/modules" "$out/scale-configs.txt" "$cost_rounds" "$window"
run_scale_guest cost "$kdir" --append nokaslr \
	--qemu "-icount $icount -plugin file=$out/pcprof.so,marker=0x$marker,out=$out/raw/pcprof-scaling.txt $q"
rm -f "$out/pcprof.so"
cost_s=$(($(date +%s) - start))

start=$(date +%s)
say "scaling, IOPS: TCG guest, $rounds rounds of 7 points per driver, ${runtime}+${ramp} s each"
scale_env iops "$out/modules/virtio_scsi_rs.ko" "$out/modules" "$out/scale-configs.txt" "$rounds" "$window"
hostload_start "$out/hostload.txt"
run_scale_guest iops "$kdir" --qemu "$q"
kill "$loadpid" 2>/dev/null || true
iops_s=$(($(date +%s) - start))

lock_s=0 dkdir=
if [ "$lockstat" = 1 ]; then
	start=$(date +%s)
	line=$("$top/tools/kdir.sh" debug)
	dkdir=${line%%$'\t'*}
	mkdir -p "$out/modules-debug"
	if [ -n "${VSRS_DEBUG_KO:-}" ]; then
		cp "$VSRS_DEBUG_KO" "$out/modules-debug/virtio_scsi_rs.ko"
	else
		build_module "$dkdir" "$out/modules-debug/virtio_scsi_rs.ko"
	fi
	cp "$dkdir/drivers/scsi/virtio_scsi.ko" "$out/modules-debug/"
	# num_queues 4 and 1, a LUN each.
	scale_qemu "SCALL 4 256 1,SCALQ1 1 256 1"
	grep -E '^(l1|q1) ' "$out/scale-configs.txt" >"$out/scale-configs-lock.txt"
	say "scaling, lock statistics: debug kernel guest, num_queues 1 and 4, $runtime s per driver"
	scale_env lock "$out/modules-debug/virtio_scsi_rs.ko" "$out/modules-debug" "$out/scale-configs-lock.txt" 1 "$window"
	run_scale_guest lock "$dkdir" --qemu "$q"
	lock_s=$(($(date +%s) - start))
fi

rm -rf "$out/guest.sh" "$out/modules" "$out/modules-debug"
{
	cat <<EOT
CPUS=$scale_cpus
ICOUNT=$icount
ROUNDS=$rounds
COST_ROUNDS=$cost_rounds
WINDOW=$window
RUNTIME=$runtime
RAMP=$ramp
SEED=$seed
JOBS=$scale_cpus
IODEPTH=32
HOST_CPU=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
DEBUG_KERNEL=${dkdir:+$(basename "$dkdir")}
COST_GUEST_SECONDS=$cost_s
IOPS_GUEST_SECONDS=$iops_s
LOCK_GUEST_SECONDS=$lock_s
EOT
	meta_common
} >"$out/meta.env"
/usr/bin/python3 "$here/scaling_report.py" "$out" "$kdir/System.map" || status=1
# The plugin's counts, 60 MB, as results keep them (pcprof.py reads either).
xz -f -T2 "$out/raw/pcprof-scaling.txt" || status=1
say "tables: $out/scaling.md; curves: $out/scaling.png"
