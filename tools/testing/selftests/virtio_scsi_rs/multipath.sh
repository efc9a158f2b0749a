#!/bin/bash
# Guest test (issue 16, item 5): multipath inside the guest. One LUN reached
# through two virtio-scsi controllers, twice, each pair under a dm-multipath
# map built with dmsetup (no multipathd: the table is written here, and a
# path is reinstated by hand):
#   mpq  a file QEMU serves as two scsi-hd (same serial and WWN, share-rw=on):
#        path A on vs0 at target 0 LUN 0 (id mpa), path B on vs1 at target 2
#        LUN 0 (id mpb);
#   mpi  the tgt disk (tools/tgt-target.sh, LUN 1) through two iSCSI sessions
#        (two initiator names), scsi-block: path A on vs0 at target 1 LUN 1
#        (id isa), path B on vs1 at target 3 LUN 1 (id isb).
# For each map, while fio writes and verifies (crc32c) through it: path B is
# hot-unplugged (device_del), the map must fail it and go on through A, then
# B comes back (device_add) and the map is reloaded with the new B; then,
# separately, path A's controller is reset (sg_reset -H: the driver's host
# reset; the C driver has none and gets its strongest, a LUN reset). 0
# verify errors, the longest write stall reported; both paths active and
# carrying writes afterwards.
#
# Environment:
#   VSRS_DRIVER      c: the in-tree C driver; else virtio_scsi_rs
#   VSRS_MP_WWN      the WWN QEMU gave the scsi-hd pair (run_tests.sh)
#   VSRS_MP_RUNTIME  seconds of each fio run (default 10); a phase runs fio
#                    again until its events are over
cd "$(dirname "$0")" && . ./lib.sh

# dmsetup creates the /dev/mapper nodes itself instead of waiting for udev.
export DM_DISABLE_UDEV=1
runtime=${VSRS_MP_RUNTIME:-10}

begin "multipath $MOD"
check "load $MOD" load
check "the 4 paths (2 LUNs x 2 controllers) appear" wait_disks 4
# Opened here, in the test's main shell: the qmp calls inside check's
# subshells share it (a virtio port can be open only once at a time).
if ctl_open; then ok "the control channel to QEMU's monitor (vsrs.ctl) opens"; else not_ok "the control channel to QEMU's monitor (vsrs.ctl) opens"; fi
lsscsi | diag

# addr_of TARGET LUN: the H:C:T:L of the driver's device at TARGET:LUN (the
# targets differ between the controllers, so one address each).
addr_of() {
	local d
	for h in $(vsrs_hosts); do
		d=/sys/bus/scsi/devices/$h:0:$1:$2
		[ -e "$d" ] && { echo "${d##*/}"; return 0; }
	done
	return 1
}
majmin() { cat "/sys/block/${1##*/}/dev"; }
wwid() { cat "/sys/block/${1##*/}/device/wwid"; }
# writes DEV: write requests DEV completed (/sys/block/DEV/stat, field 5).
writes() { local s; read -r -a s <"/sys/block/${1##*/}/stat" && echo "${s[4]}"; }
# path_state MAJ:MIN: "A 0" / "F 2": the path's state and fail count in the
# map's status.
path_state() {
	dmsetup status "$map" | awk -v d="$1" '{ for (i = 1; i <= NF; i++) if ($i == d) { print $(i + 1), $(i + 2); exit } }'
}
path_is() { # MAJ:MIN A|F
	local s
	s=$(path_state "$1")
	[ "${s%% *}" = "$2" ]
}
both_active() {
	if ! path_is "$(majmin "$a")" A || ! path_is "$(majmin "$b")" A; then
		dmsetup status "$map"
		return 1
	fi
}
table() { echo "0 $(blockdev --getsz "$a") multipath 0 0 1 1 round-robin 0 2 1 $(majmin "$a") 1 $(majmin "$b") 1"; }
reload() { dmsetup reload "$map" --table "$(table)" && dmsetup resume "$map"; }

# fio_map SECONDS OUT: random writes verified with crc32c (inline, every 64
# writes, and at the end) through the map for SECONDS; JSON to OUT.
fio_map() {
	fio --name=mp --filename="/dev/mapper/$map" --ioengine=libaio --direct=1 --rw=randwrite \
		--bs=16k --iodepth=16 --size=32M --time_based --runtime="$1" --verify=crc32c \
		--verify_backlog=64 --verify_fatal=1 --do_verify=1 --output-format=json --output="$2" \
		>"$2.err" 2>&1
}
# fio_start NAME [SECONDS]: fio_map runs of SECONDS (default $runtime) one
# after another, in the background, until fio_stop (at least one); JSON in
# /tmp/mp-NAME.N.json. (Runs in a loop: a phase takes as long as its host
# events take, and the I/O must go on until it ends.)
fio_start() {
	rm -f /tmp/mp-"$1".* /tmp/mp.stop
	(
		i=0
		while [ "$i" = 0 ] || [ ! -e /tmp/mp.stop ]; do
			fio_map "${2:-$runtime}" "/tmp/mp-$1.$i.json" || exit 1
			i=$((i + 1))
		done
	) &
	fio_pid=$! fio_name=$1
}
# fio_stop DESC: the runs end (the current one finishes), all with no error
# and something verified; the longest write completion (the write stall)
# as a diagnostic.
fio_stop() {
	local st n err w r wmax rmax
	touch /tmp/mp.stop
	wait_deadline "$fio_pid" $((runtime + 300))
	st=$?
	if [ "$st" = 124 ]; then
		not_ok "$1: fio through /dev/mapper/$map finishes (hung)"
		return
	fi
	read -r n err w r wmax rmax < <(jq -s -r '[.[].jobs[0]] | "\(length) \(map(.error) | add) \(map(.write.io_bytes) | add) \(map(.read.io_bytes) | add) \(map(.write.clat_ns.max) | max) \(map(.read.clat_ns.max) | max)"' /tmp/mp-"$fio_name".*.json 2>/dev/null)
	if [ "$st" = 0 ] && [ "${err:-1}" = 0 ] && [ "${r:-0}" -gt 0 ]; then
		ok "$1: fio ($n runs) wrote $((w >> 20)) MiB through /dev/mapper/$map and verified $((r >> 20)) MiB: 0 verify errors"
		echo "$1: longest write stall $((wmax / 1000000)) ms (fio's longest write completion; longest verify read $((rmax / 1000000)) ms)" | diag
		stalls+=("$1: $((wmax / 1000000)) ms;")
	else
		not_ok "$1: fio through /dev/mapper/$map (status $st, error ${err:-none}): 0 verify errors"
		tail -n 20 /tmp/mp-"$fio_name".*.err | diag
	fi
}
a_writes_past() { [ "$(writes "$a")" -gt "$1" ]; }
# flowing A0 B0: both paths completed writes since their counts were A0, B0.
flowing() { [ "$(writes "$a")" -gt "$1" ] && [ "$(writes "$b")" -gt "$2" ]; }
# fio_flowing NAME DESC: fio_start NAME; its writes reach both paths.
fio_flowing() {
	local a0 b0
	a0=$(writes "$a") b0=$(writes "$b")
	fio_start "$1"
	check "$2: fio's writes reach both paths" wait_for 60 flowing "$a0" "$b0"
}
# carry DESC: 5 s more of fio through the map; both paths complete writes.
carry() {
	local a0 b0
	a0=$(writes "$a") b0=$(writes "$b")
	fio_start carry 5
	fio_stop "$1, 5 s more"
	check "$1: both paths carry writes ($a +$(($(writes "$a") - a0)), $b +$(($(writes "$b") - b0)))" \
		flowing "$a0" "$b0"
}

# unplug NAME: path B hot-unplugged under fio, then added back and reinstated.
unplug() {
	local bmm wa t td tg mark
	bmm=$(majmin "$b")
	fio_flowing unplug "$1"
	t=$SECONDS mark=$(dmesg | wc -l)
	check "$1: device_del $bid (path B, $b) under fio" dev_del "$bid"
	td=$SECONDS
	check "$1: ... its SCSI device $baddr goes" wait_for 30 no_scsi_dev "$baddr"
	tg=$SECONDS
	check "$1: the map fails path B ($bmm F in dmsetup status)" wait_for 60 path_is "$bmm" F
	echo "$1: after device_del: DEVICE_DELETED in $((td - t)) s, $baddr gone in $((tg - t)) s, path B failed in $((SECONDS - t)) s; status: $(dmsetup status "$map")" | diag
	echo "$1: the kernel log from device_del to the failed path:" | diag
	dmesg | tail -n +"$((mark + 1))" | grep -E 'device-mapper|multipath|sd[a-z]+|[0-9]+:0:[0-9]+:[0-9]+' | head -n 20 | diag
	wa=$(writes "$a")
	check "$1: ... and writes go on through path A $a (from $wa)" wait_for 30 a_writes_past "$wa"
	echo "$1: path A's completed writes $wa -> $(writes "$a")" | diag
	check "$1: device_add $bid (path B back)" qmp "$badd"
	check "$1: ... a block device at $baddr again" wait_for 60 has_blockdev "$baddr"
	b=$(blockdev_of "$baddr")
	udevadm settle 2>/dev/null
	expect_eq "$1: ... $b has path A's WWID" "$(wwid "$b")" "$(wwid "$a")"
	check "$1: the map reloaded with the new path B $b ($(majmin "$b"))" reload
	check "$1: ... both paths active" both_active
	fio_stop "$1, unplug"
	dmsetup status "$map" | diag
	carry "$1, B reinstated"
}

# reset NAME: path A's controller reset under fio; a path the reset failed
# is reinstated (no multipathd to do it).
reset() {
	local kind mm s h0
	fio_flowing reset "$1"
	if is_c; then
		# The C driver has no eh_host_reset_handler: sg_reset -H is
		# refused; a LUN reset is the most it does.
		check "$1: sg_reset -H $a refused by the C driver (no host reset handler)" bash -c "! sg_reset -H '$a'"
		kind=d
	else
		kind=H h0=$(stat_of host_resets)
	fi
	check "$1: sg_reset -$kind $a (path A) under fio" sg_reset -"$kind" "$a"
	is_c || check "$1: ... the driver reset the controller (stats host_resets $h0 -> $(stat_of host_resets))" \
		test "$(stat_of host_resets)" -gt "$h0"
	fio_stop "$1, reset -$kind"
	echo "$1: after sg_reset -$kind: $(dmsetup status "$map")" | diag
	for mm in $(majmin "$a") $(majmin "$b"); do
		s=$(path_state "$mm")
		[ "${s%% *}" = F ] || continue
		echo "$1: the reset failed path $mm; reinstating it" | diag
		dmsetup message "$map" 0 reinstate_path "$mm"
	done
	check "$1: ... both paths active" both_active
	carry "$1, after the reset"
}

stalls=()
# mp MAP ID-A TARGET:LUN-A ID-B TARGET:LUN-B DEVICE_ADD-JSON-FOR-B
mp() {
	local aaddr
	map=$1 bid=$4 badd=$6
	aaddr=$(addr_of "${3%:*}" "${3#*:}") baddr=$(addr_of "${5%:*}" "${5#*:}")
	a=$(blockdev_of "$aaddr") b=$(blockdev_of "$baddr")
	echo "$map: path A $aaddr $a ($2), path B $baddr $b ($4)" | diag
	expect_eq "$map: both paths report the same WWID" "$(wwid "$b")" "$(wwid "$a")"
	check "$map: dmsetup create, multipath over $a and $b" dmsetup create "$map" --table "$(table)"
	check "$map: ... both paths active" both_active
	dmsetup table "$map" | diag
	unplug "$map"
	reset "$map"
	check "$map: dmsetup remove" dmsetup remove "$map"
}

mp mpq mpa 0:0 mpb 2:0 "{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"scsi-hd\",\"id\":\"mpb\",\"drive\":\"mp\",\"bus\":\"vs1.0\",\"scsi-id\":2,\"lun\":0,\"serial\":\"vsrs-mp\",\"wwn\":$((VSRS_MP_WWN)),\"share-rw\":true}}"
mp mpi isa 1:1 isb 3:1 '{"execute":"device_add","arguments":{"driver":"scsi-block","id":"isb","drive":"ib","bus":"vs1.0","scsi-id":3,"lun":1}}'
echo "longest write stalls: ${stalls[*]}" | diag

check "rmmod $MOD" unload
check "kmemleak: no leak" kmemleak_clean
check "dmesg: no WARN, BUG, KASAN, lockdep or hung-task report" no_kernel_reports
