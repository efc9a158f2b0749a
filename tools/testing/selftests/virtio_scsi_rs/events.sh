#!/bin/bash
# Guest test (issue 5, the event queue): the host changes the SCSI bus through
# QEMU's monitor (run-guest --ctl: qmp/hmp from lib.sh) and the guest checks
# that the driver follows, with no manual rescan.
#
# QEMU configuration (run_tests.sh "events"): controller vs0 (hotplug on) with
# a file-backed disk (serial vsrs-f0) at 0:0 for fio, a file-backed disk
# (node r0, serial vsrs-r0) at 0:1 to resize, a scsi-cd (id cd0, medium node
# cdA) at 1:0; controller vs1 (hotplug=off) with disk r1 (serial vsrs-r1) at 0:0.
#
# Environment:
#   VSRS_EVENTS     sub-tests, in order (default: lun target cycles many resize cd)
#   VSRS_IMG        host directory with cdB.iso (the second medium)
#   VSRS_CYCLES     add/del cycles under fio (default 5; 200 in the full run)
#   VSRS_MANY       disks added at once (default 32)
#   VSRS_DEADLINE   seconds a hot-added disk may take to appear/disappear (2)
cd "$(dirname "$0")" && . ./lib.sh

begin events
deadline=${VSRS_DEADLINE:-2}
check "load $MOD" load
check "the ${VSRS_NDISKS:-3} disks appear" wait_disks "${VSRS_NDISKS:-3}"
check "the control channel to QEMU's monitor (vsrs.ctl) opens" ctl_open
fdev=$(disks_with_serial vsrs-f0)
hosts=($(vsrs_hosts))
# vs0: the host of the fio disk.
h0=$(basename "$(readlink -f "/sys/block/${fdev##*/}/device")") h0=${h0%%:*}
echo "hosts ${hosts[*]}; fio disk $fdev" | diag
lsscsi | diag

# Times in microseconds (bash builtins: a process costs in a loaded TCG guest).
now() { echo "${EPOCHREALTIME/./}"; }
elapsed() { local d=$(($(now) - $1)); printf '%d.%02d' $((d / 1000000)) $((d % 1000000 / 10000)); }

# wait_until SECS COMMAND...: COMMAND succeeds within SECS (polled every 50 ms).
wait_until() {
	local end=$(($(now) + ${1%.*} * 1000000))
	shift
	until "$@"; do
		[ "$(now)" -gt "$end" ] && return 1
		sleep 0.05
	done
}
# wait_present ADDR SECS: the disk at ADDR has a block device within SECS.
wait_present() { wait_until "$2" has_blockdev "$1"; }
# wait_absent ADDR SECS: the SCSI device ADDR is gone within SECS.
wait_absent() { wait_until "$2" no_scsi_dev "$1"; }

node_null() { # NODE SIZE
	qmp "{\"execute\":\"blockdev-add\",\"arguments\":{\"driver\":\"null-co\",\"node-name\":\"$1\",\"size\":$2,\"read-zeroes\":true}}" >/dev/null
}
hd_add() { # ID NODE BUS TARGET LUN
	qmp "{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"scsi-hd\",\"id\":\"$1\",\"drive\":\"$2\",\"bus\":\"$3\",\"scsi-id\":$4,\"lun\":$5,\"serial\":\"$1\"}}" >/dev/null
}

# timed DESC START WAIT ADDR: one result: WAIT ADDR (wait_present or
# wait_absent) succeeds within $deadline s of START (no manual rescan); on a
# miss, how long it took after all (up to 30 s more) and lsscsi.
timed() {
	if "$3" "$4" "$deadline"; then
		ok "$1 in $(elapsed "$2") s (no rescan)"
	else
		not_ok "$1 within $deadline s (no rescan)"
		"$3" "$4" 30 && echo "it did after $(elapsed "$2") s" | diag
		lsscsi | diag
	fi
}

# hotplug_one DESC TARGET LUN: add a disk, it appears; delete it, it goes.
hotplug_one() {
	local id=hp$1_$2 addr=$h0:0:$1:$2 t sz
	node_null "n$id" 67108864 || return 1
	t=$(now)
	hd_add "$id" "n$id" vs0.0 "$1" "$2" || return 1
	timed "device_add at target $1 LUN $2: $addr appears" "$t" wait_present "$addr"
	dev=$(blockdev_of "$addr")
	sz=$(blockdev --getsize64 "$dev" 2>/dev/null)
	expect_eq "the new disk $dev has the node's size and serial" "$sz $(serial_of "$dev")" "67108864 $id"
	check "read from the new disk" dd if="$dev" of=/dev/null bs=64k count=16 iflag=direct status=none
	t=$(now)
	dev_del "$id" || not_ok "device_del $id: DEVICE_DELETED"
	timed "device_del: $addr disappears" "$t" wait_absent "$addr"
	qmp "{\"execute\":\"blockdev-del\",\"arguments\":{\"node-name\":\"n$id\"}}" >/dev/null
}

# fio verify in a loop on $fdev until /tmp/fio.stop exists; status in /tmp/fio.loop
fio_loop_start() {
	rm -f /tmp/fio.stop /tmp/fio.loop
	(
		n=0
		while [ ! -e /tmp/fio.stop ]; do
			if ! fio_verify 2 4M "$fdev" >/tmp/fio.loop.err 2>&1; then
				echo "fail after $n runs" >/tmp/fio.loop; exit 1
			fi
			n=$((n + 1))
		done
		echo "ok $n runs" >/tmp/fio.loop
	) &
	fio_pid=$!
}
fio_loop_stop() { # -> checks
	touch /tmp/fio.stop
	if ! wait_deadline "$fio_pid" 180; then
		not_ok "fio verify loop on $fdev finishes (hung)"; return
	fi
	case $(cat /tmp/fio.loop 2>/dev/null) in
	"ok "*) ok "fio crc32c verify on $fdev during the cycles: 0 mismatches ($(cat /tmp/fio.loop))" ;;
	*) not_ok "fio crc32c verify on $fdev during the cycles"; cat /tmp/fio.loop /tmp/fio.loop.err 2>&1 | diag ;;
	esac
}

cycles() {
	local n=${VSRS_CYCLES:-5} i addr=$h0:0:0:7 fail=0 t
	node_null ncyc 33554432 || return 1
	fio_loop_start
	t=$(now)
	for i in $(seq 1 "$n"); do
		hd_add cyc ncyc vs0.0 0 7 || { echo "cycle $i: device_add failed"; exit 1; }
		wait_present "$addr" 10 || { echo "cycle $i: $addr did not appear in 10 s"; exit 1; }
		dev_del cyc || { echo "cycle $i: no DEVICE_DELETED"; exit 1; }
		wait_absent "$addr" 10 || { echo "cycle $i: $addr still there 10 s after device_del"; exit 1; }
	done 2>&1 | diag
	[ "${PIPESTATUS[0]}" = 0 ] || fail=1
	if [ -e "/sys/bus/scsi/devices/$addr" ]; then fail=1; echo "$addr left behind" | diag; fi
	if [ "$fail" = 0 ]; then ok "$n device_add/device_del cycles at 0:7 under fio ($(elapsed "$t") s)"
	else not_ok "$n device_add/device_del cycles at 0:7 under fio"; fi
	fio_loop_stop
	qmp '{"execute":"blockdev-del","arguments":{"node-name":"ncyc"}}' >/dev/null
	check "kmemleak clean after the cycles" kmemleak_clean
}

many() {
	local n=${VSRS_MANY:-32} i want got t
	for i in $(seq 0 $((n - 1))); do node_null "nm$i" 16777216 || return 1; done
	t=$(now)
	# Targets 2..: 8 LUNs each, so the adds mix new targets and new LUNs.
	for i in $(seq 0 $((n - 1))); do
		hd_add "m$i" "nm$i" vs0.0 $((2 + i / 8)) $((i % 8)) || return 1
	done
	want=$(for i in $(seq 0 $((n - 1))); do echo "$h0:0:$((2 + i / 8)):$((i % 8))"; done | sort)
	listing() { vsrs_devices 0 | awk -v h="$h0" -F'[: ]' '$1 == h && $3 >= 2 && $5 != "/dev/" {print $1 ":" $2 ":" $3 ":" $4}' | sort; }
	local end=$((${EPOCHREALTIME%.*} + 120))
	while [ "${EPOCHREALTIME%.*}" -le "$end" ]; do
		got=$(listing)
		[ "$got" = "$want" ] && break
		sleep 0.2
	done
	sleep 2; got=$(listing)  # and nothing more turns up
	if [ "$got" = "$want" ]; then ok "$n device_add at once: exactly those $n disks appear ($(elapsed "$t") s)"
	else not_ok "$n device_add at once: exactly those $n disks appear"
		diff <(echo "$want") <(echo "$got") | diag; fi
	t=$(now)
	for i in $(seq 0 $((n - 1))); do
		qmp "{\"execute\":\"device_del\",\"arguments\":{\"id\":\"m$i\"}}" >/dev/null
	done
	for i in $(seq 0 $((n - 1))); do
		qmp_wait_event DEVICE_DELETED 30 "{\"device\":\"m$i\"}" >/dev/null || echo "no DEVICE_DELETED for m$i" | diag
	done
	end=$((${EPOCHREALTIME%.*} + 60))
	while [ "${EPOCHREALTIME%.*}" -le "$end" ]; do [ -z "$(listing)" ] && break; sleep 0.2; done
	got=$(listing)
	expect_eq "$n device_del at once: all $n disks go ($(elapsed "$t") s)" "$got" ""
	for i in $(seq 0 $((n - 1))); do
		qmp "{\"execute\":\"blockdev-del\",\"arguments\":{\"node-name\":\"nm$i\"}}" >/dev/null
	done
}

# resize NODE SERIAL DESC: block_resize, the guest's disk follows.
resize() {
	local dev sz new t
	dev=$(disks_with_serial "$2")
	[ -n "$dev" ] || { not_ok "resize $3: the disk with serial $2 exists"; return; }
	sz=$(blockdev --getsize64 "$dev")
	new=$((sz + 16777216))
	t=$(now)
	qmp "{\"execute\":\"block_resize\",\"arguments\":{\"node-name\":\"$1\",\"size\":$new}}" >/dev/null ||
		{ not_ok "block_resize $1"; return; }
	local i got=
	local end=$((${EPOCHREALTIME%.*} + 20))
	while [ "${EPOCHREALTIME%.*}" -le "$end" ]; do
		read -r got <"/sys/block/${dev##*/}/size"; got=$((got * 512))
		[ "$got" = "$new" ] && break
		sleep 0.1
	done
	expect_eq "block_resize $1 ($3): $dev grows from $sz to $new bytes without a rescan ($(elapsed "$t") s)" "$got" "$new"
	check "$dev: reading its last MiB" dd if="$dev" of=/dev/null bs=1M skip=$((new / 1048576 - 1)) count=1 iflag=direct status=none
}

# The sr device of the scsi-cd.
cd_dev() { vsrs_devices 5 | awk '{print $2; exit}'; }
# turs_no_medium DEV: TEST UNIT READY gets NOT READY, "medium not present"
# (the sense, which sg_turs shows with -vv; a unit attention may come
# first); prints what sg_turs said otherwise.
turs_no_medium() {
	local out i
	for i in 1 2 3; do
		out=$(sg_turs -vv "$1" 2>&1)
		case ${out,,} in *"medium not present"*) return 0 ;; esac
	done
	echo "$out"
	return 1
}
cd_size() { blockdev --getsize64 "$1" 2>&1; }
cdrom() {
	local sr size i
	sr=$(cd_dev)
	[ -n "$sr" ] || { not_ok "a CD drive exists"; return; }
	size=$(cd_size "$sr")
	expect_eq "$sr: the first medium (4 MiB)" "$size" 4194304
	qmp '{"execute":"eject","arguments":{"id":"cd0","force":true}}' >/dev/null || { not_ok "eject cd0"; return; }
	for i in $(seq 1 50); do
		size=$(cd_size "$sr")
		case $size in *"No medium"*) break ;; esac
		sleep 0.1
	done
	check "after eject, $sr reports no medium ($size)" bash -c "case '$size' in *'No medium found'*) ;; *) false ;; esac"
	check "TEST UNIT READY on $sr: medium not present" turs_no_medium "$sr"
	qmp "{\"execute\":\"blockdev-change-medium\",\"arguments\":{\"id\":\"cd0\",\"filename\":\"$VSRS_IMG/cdB.iso\",\"format\":\"raw\",\"read-only-mode\":\"read-only\"}}" >/dev/null ||
		{ not_ok "blockdev-change-medium cd0"; return; }
	for i in $(seq 1 50); do
		size=$(cd_size "$sr")
		[ "$size" = 6291456 ] && break
		sleep 0.1
	done
	expect_eq "after blockdev-change-medium, $sr has the new medium's size (6 MiB)" "$size" 6291456
	check "$sr: the new medium reads (its first block is 'vsrs-cdB')" bash -c \
		"[ \"\$(dd if='$sr' bs=2048 count=1 status=none | head -c 8)\" = vsrs-cdB ]"
}

# The controller goes away under I/O: device_del of the virtio-scsi-pci
# (on a pcie-root-port, id vs0) while fio runs. The guest kernel needs a PCI
# hotplug driver to complete the unplug; without one (the test kernel has
# neither HOTPLUG_PCI_ACPI nor HOTPLUG_PCI_PCIE) the PCI function is removed
# from the guest side (sysfs remove) instead, which is what the driver's
# remove() sees either way.
unplug() {
	local pci st r
	pci=$(basename "$(readlink -f /sys/class/scsi_host/host$h0/device/../..)")
	echo "controller of host $h0: PCI $pci" | diag
	fio --name=unplug --filename="$fdev" --ioengine=libaio --direct=1 --rw=randrw --bs=4k --iodepth=32 \
		--time_based --runtime=600 --size=32M >/tmp/unplug.fio 2>&1 &
	fio_pid=$!
	sleep 5
	if r=$(qmp '{"execute":"device_del","arguments":{"id":"vs0"}}' 2>&1); then
		if qmp_wait_event DEVICE_DELETED 20 '{"device":"vs0"}' >/dev/null 2>&1; then
			ok "device_del vs0: QEMU removed the controller"
		else
			echo "device_del vs0 accepted, but no DEVICE_DELETED in 20 s (no PCI hotplug driver in the guest kernel); removing $pci through sysfs" | diag
			echo 1 >"/sys/bus/pci/devices/$pci/remove" &
			wait_deadline $! 120 || not_ok "sysfs remove of $pci finishes (hung)"
		fi
	else
		echo "device_del vs0 refused: $r; removing $pci through sysfs" | diag
		echo 1 >"/sys/bus/pci/devices/$pci/remove" &
		wait_deadline $! 120 || not_ok "sysfs remove of $pci finishes (hung)"
	fi
	wait_deadline "$fio_pid" 120
	st=$?
	case $st in
	124) not_ok "fio on the removed controller's disk ends (hung)" ;;
	0) not_ok "fio on the removed controller's disk fails (it succeeded)"; tail -n 5 /tmp/unplug.fio | diag ;;
	*) ok "fio on the removed controller's disk fails cleanly (status $st: $(grep -m1 -o 'error=[^,]*' /tmp/unplug.fio))" ;;
	esac
	check "the SCSI host $h0 is gone" bash -c "! [ -e /sys/class/scsi_host/host$h0 ]"
	check "$fdev is gone" bash -c "! [ -e '$fdev' ]"
}

for t in ${VSRS_EVENTS:-lun target cycles many resize cd}; do
	case $t in
	lun) hotplug_one 0 3 ;;
	target) hotplug_one 5 0 ;;
	cycles) cycles ;;
	many) many ;;
	resize)
		resize r0 vsrs-r0 "vs0, hotplug on"
		resize r1 vsrs-r1 "vs1, hotplug=off" ;;
	cd) cdrom ;;
	unplug) unplug ;;
	esac
done

lsscsi | diag
if ! is_c; then
	cat /sys/kernel/debug/virtio_scsi_rs-*/stats 2>/dev/null | grep -E '^(events|events_missed) ' | diag
fi
check "dmesg: no WARN, BUG, KASAN, lockdep or hung-task report" no_kernel_reports
check "kmemleak: no leak" kmemleak_clean
