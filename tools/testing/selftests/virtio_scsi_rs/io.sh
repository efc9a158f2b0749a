#!/bin/bash
# Guest test: discovery and data on the topology run_tests.sh gives QEMU.
#
# Environment:
#   VSRS_INSMOD_ARGS   module parameters
#   VSRS_TOPOLOGY      "T:L,T:L,..." of the disks (scsi-hd) expected on the
#                      first host, in order; plus VSRS_CDROM=T:L when a scsi-cd
#                      is expected
#   VSRS_DISK_SIZE     bytes of each file-backed disk (serial vsrs-f*)
#   VSRS_LUNS2         when set: a second host with this many LUNs on target 0
#   VSRS_FIO_SIZE      fio size per job (default 8M)
#   VSRS_POLL          when set: io_uring --hipri I/O must complete through
#                      the poll queues (debugfs counters)
#   VSRS_PATTERN       when set: write 4 MiB of random data to the disk with
#                      serial vsrs-f0 and save it here for the host to compare
cd "$(dirname "$0")" && . ./lib.sh

begin io
IFS=, read -ra topo <<<"${VSRS_TOPOLOGY:?}"
ndisks=${#topo[@]}
# shellcheck disable=SC2086
check "insmod virtio_scsi_rs ${VSRS_INSMOD_ARGS:-}" load ${VSRS_INSMOD_ARGS:-}
check "all $ndisks disks of host 1 appear" wait_disks "$((ndisks + ${VSRS_LUNS2:-0}))"

hosts=($(vsrs_hosts))
h=${hosts[0]}
first_host_disks() { vsrs_devices 0 | awk -v h="$h" -F'[: ]' '$1 == h {print $3 ":" $4}' | paste -sd,; }
expect_eq "host $h: disks at exactly the configured targets and LUNs" "$(first_host_disks)" "$VSRS_TOPOLOGY"
if [ -n "${VSRS_CDROM:-}" ]; then
	check "host $h: a CD drive at ${VSRS_CDROM}" bash -c \
		"lsscsi | grep -E '^\\[$h:0:${VSRS_CDROM/:/:}\\][[:space:]]+cd/dvd' || { lsscsi; false; }"
fi
lsscsi -s 2>&1 | diag

firstdisk=$(vsrs_devices 0 | awk -v h="$h" -F'[: ]' '$1 == h {print $NF; exit}')
firstdev=/dev/${firstdisk##*/}
check "sg_inq $firstdev: QEMU HARDDISK" bash -c "sg_inq '$firstdev' | grep -q 'Product identification: QEMU HARDDISK'"
t0luns=$(printf '%s\n' "${topo[@]}" | grep -c '^0:')
expect_eq "sg_luns $firstdev: $t0luns LUNs on target 0" \
	"$(sg_luns "$firstdev" | grep -cE '^ +[0-9a-f]{16}')" "$t0luns"
fdisk=$(disks_with_serial vsrs-f0 "$h")
if [ -n "${VSRS_DISK_SIZE:-}" ]; then
	blocks=$((VSRS_DISK_SIZE / 512))
	check "sg_readcap $fdisk: $blocks blocks of 512 bytes" bash -c \
		"sg_readcap '$fdisk' | grep -q 'Last LBA=$((blocks - 1)) ' && sg_readcap '$fdisk' | grep -q 'Logical block length=512 bytes'"
fi
if [ -n "${VSRS_LUNS2:-}" ]; then
	h2=${hosts[1]:-none}
	expect_eq "host $h2: all $VSRS_LUNS2 LUNs scanned" \
		"$(vsrs_devices 0 | grep -c "^$h2:0:0:")" "$VSRS_LUNS2"
fi

mapfile -t fdisks < <(disks_with_serial vsrs-f "$h")
jobs=$(nproc)
check "fio randwrite crc32c verify on ${#fdisks[@]} disks, $jobs jobs each" \
	fio_verify "$jobs" "${VSRS_FIO_SIZE:-8M}" "${fdisks[@]}"

# Sum of a column of the per-queue counters of every bound device.
counter() { # COLUMN
	cat /sys/kernel/debug/virtio_scsi_rs-*/stats | awk -v c="$1" '
		NR == 1 || FNR == 1 { for (i = 1; i <= NF; i++) if ($i == c) col = i; next }
		$1 ~ /^[0-9]+$/ { s += $col } END { print s + 0 }'
}
# udev probes a disk fio closed after writing: a read may be in flight for a
# moment; a lost command never completes.
in_flight() {
	cat /sys/kernel/debug/virtio_scsi_rs-*/stats | awk '$1 ~ /^[0-9]+$/ {d += $2 - $3} END {print d + 0}'
}
none_in_flight() { [ "$(in_flight)" = 0 ]; }
check "debugfs counters: every submitted command completed" wait_for 20 none_in_flight
expect_eq "debugfs counters: no command came back that the driver did not hold" "$(untracked)" 0
# tools/vsrs-stat (issue 19): one line per host, naming its device and SCSI
# host, with the commands it counted and none in flight. Retried as the
# counters' check above: udev reads a disk fio has closed after writing
# (its change event), and once such a read was in flight at the first try.
stat_lines() {
	local out hosts
	out=$(../../../../tools/vsrs-stat -q) || return 1
	echo "$out" | diag >&9
	hosts=$(ls -d /sys/kernel/debug/virtio_scsi_rs-* | wc -l)
	[ "$(echo "$out" | grep -cE '^virtio[0-9]+ host[0-9]+: [0-9]+ queues, [0-9]+ LUNs; [0-9]+ commands, 0 in flight, ')" = "$hosts" ] &&
		echo "$out" | grep -qE ' [1-9][0-9]* commands, '
}
check "tools/vsrs-stat: a line per host, commands counted, none in flight" wait_for 20 stat_lines
if [ -n "${VSRS_POLL:-}" ]; then
	before=$(counter polled)
	poll_io() {
		fio --name=hipri --filename="$fdisk" --ioengine=io_uring --hipri=1 --direct=1 \
			--rw=randread --bs=4k --iodepth=8 --size=4M --output-format=terse >/tmp/fio-poll.out 2>&1 ||
			{ cat /tmp/fio-poll.out; return 1; }
	}
	check "fio io_uring --hipri on $fdisk completes" poll_io
	after=$(counter polled)
	check "the poll counters moved ($before -> $after)" test "$after" -gt "$before"
fi

if [ -n "${VSRS_PATTERN:-}" ]; then
	write_pattern() {
		head -c 4M /dev/urandom >"$VSRS_PATTERN" &&
			dd if="$VSRS_PATTERN" of="$fdisk" bs=1M oflag=direct status=none && sync
	}
	check "4 MiB written to $fdisk for the host to read back" write_pattern
fi

check "rmmod virtio_scsi_rs" unload
check "kmemleak: no leak" kmemleak_clean
check "dmesg: no WARN, BUG, KASAN, lockdep or hung-task report" no_kernel_reports
