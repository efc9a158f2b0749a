#!/bin/busybox sh
# /init of the arm64 guest (arm64.sh builds its initramfs: an arm64 busybox
# and the driver as /driver.ko). It judges nothing: every fact goes to the
# serial console on a line of its own starting with "vsrs-arm64: " (the
# kernel's messages are there too), and arm64.sh compares them with what it
# set up. Ends with a power-off.
#
# Facts: the machine (uname -m), a line before insmod and its status, the driver's probe line
# from dmesg, each disk (name, H:C:T:L, 512-byte sectors, vendor, model);
# on target 0 LUN 0, the md5 of 4 MiB of random data, dd's status writing it
# and the md5 of what is read back once the page cache is dropped; on
# target 2 LUN 3, the md5 of its first 16 MiB (which the host wrote); rmmod's
# status and the disks left after it.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
say() { echo "vsrs-arm64: $*" >/dev/console; }

say "machine $(uname -m)"
say "loading the module"
insmod /driver.ko
say "insmod $?"
ndisks() {
	c=0
	for d in /sys/block/sd*; do [ -e "$d" ] && c=$((c + 1)); done
	echo "$c"
}
# Both disks, or 60 s.
n=0
while [ "$(ndisks)" -lt 2 ] && [ "$n" -lt 600 ]; do
	sleep 0.1
	n=$((n + 1))
done
say "probe $(dmesg | grep 'virtio_scsi_rs .*request queues' | tail -n 1)"

# disk H:C:T:L: the block device of that SCSI address, if any.
disk() {
	for d in /sys/block/sd*; do
		[ "$(basename "$(readlink "$d/device")")" = "$1" ] && { basename "$d"; return; }
	done
}
for d in /sys/block/sd*; do
	[ -e "$d" ] || continue
	dev=$d/device
	say "disk $(basename "$d") $(basename "$(readlink "$dev")") $(cat "$d/size") $(cat "$dev/vendor") $(cat "$dev/model")"
done

w=$(disk 0:0:0:0) r=$(disk 0:0:2:3)
if [ -n "$w" ]; then
	dd if=/dev/urandom of=/tmp/pattern bs=64k count=64 2>/dev/null
	say "pattern $(md5sum </tmp/pattern | cut -d' ' -f1)"
	dd if=/tmp/pattern of="/dev/$w" bs=1M conv=fsync 2>/dev/null
	say "write $?"
	blockdev --flushbufs "/dev/$w"
	echo 3 >/proc/sys/vm/drop_caches
	say "readback $(dd if="/dev/$w" bs=1M count=4 2>/dev/null | md5sum | cut -d' ' -f1)"
fi
if [ -n "$r" ]; then
	say "hostdata $(dd if="/dev/$r" bs=64k count=256 2>/dev/null | md5sum | cut -d' ' -f1)"
fi

rmmod virtio_scsi_rs
say "rmmod $?"
say "disks after rmmod $(ndisks)"
say "end"
poweroff -f
