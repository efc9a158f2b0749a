#!/bin/bash
# Guest half of `make run` (see run-demo.sh).
set -euo pipefail
echo "== insmod $VSRS_KO"
insmod "$VSRS_KO"
udevadm settle 2>/dev/null || sleep 1
echo "== lsmod"
lsmod | grep -E '^(Module|virtio_scsi)'
echo "== virtio-scsi devices and their driver"
for d in /sys/bus/virtio/devices/*; do
	[ "$(cat "$d/device")" = 0x0008 ] || continue
	echo "$(basename "$d"): driver $(basename "$(readlink "$d/driver")"), status $(cat "$d/status")"
done
echo "== dmesg"
dmesg | grep virtio_scsi_rs
echo "== SCSI hosts"
for h in /sys/class/scsi_host/host*; do
	[ -e "$h" ] && echo "$(basename "$h"): $(cat "$h/proc_name")"
done
echo "== disks"
lsscsi -s 2>/dev/null || true
disks=$(lsscsi 2>/dev/null | awk '$2 == "disk" && $NF ~ /^\/dev\// {print $NF}')
[ -n "$disks" ] || { echo "no disks found"; exit 1; }
for dev in $disks; do
	if sg_vpd -p sn "$dev" 2>/dev/null | grep -q 'vsrs-null'; then
		echo "== I/O on $dev (null-co backend): read 16 MiB"
		dd if="$dev" of=/dev/null bs=1M count=16 iflag=direct status=none && echo "$dev: read ok"
		continue
	fi
	echo "== I/O on $dev: write 4 MiB of random data, read it back"
	head -c 4M /dev/urandom >/tmp/pattern
	dd if=/tmp/pattern of="$dev" bs=1M oflag=direct status=none
	dd if="$dev" of=/tmp/readback bs=1M count=4 iflag=direct status=none
	cmp /tmp/pattern /tmp/readback && echo "$dev: data read back matches"
done
echo "== per-queue counters (debugfs)"
mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug
cat /sys/kernel/debug/virtio_scsi_rs-*/stats
echo "== rmmod"
rmmod virtio_scsi_rs && echo "unloaded"
