#!/bin/busybox sh
# /init of the migration guest (migration.sh builds its initramfs: busybox,
# fio and its libraries, the driver as /driver.ko). Its root is in RAM, so
# nothing blocks migration (virtme-ng's shared 9p root does).
#
# Loads the driver, waits for the disk (target 0 LUN 0), then runs fio
# write-and-verify runs back to back until vsrs_mig_seconds (kernel command
# line) have passed since the first began, and at least 4 runs (each job
# writes vsrs_mig_size, default 48M, then verifies); the host migrates the guest and
# stops and continues it meanwhile. Every line for the host starts with
# "vsrs-mig: " on the serial console (the kernel's messages are there too).
# Ends with the driver's counters, its removal, and a power-off.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t debugfs debugfs /sys/kernel/debug
say() { echo "vsrs-mig: $*" >/dev/console; }

seconds=120 size=48M
for a in $(cat /proc/cmdline); do
	case $a in
	vsrs_mig_seconds=*) seconds=${a#*=} ;;
	vsrs_mig_size=*) size=${a#*=} ;;
	esac
done

if insmod /driver.ko; then say "insmod ok"; else say "insmod failed"; fi
n=0
while [ ! -b /dev/sda ] && [ "$n" -lt 600 ]; do sleep 0.1; n=$((n + 1)); done
if [ -b /dev/sda ]; then
	say "disk /dev/sda $(cat /sys/block/sda/size) sectors"
	start=$(cut -d. -f1 /proc/uptime)
	runs=0 failed=0
	while [ "$runs" -lt 4 ] || [ $(($(cut -d. -f1 /proc/uptime) - start)) -lt "$seconds" ]; do
		runs=$((runs + 1))
		say "fio run $runs started"
		# Two jobs on regions of their own, random writes of 4-64 KiB at
		# depth 16, each block checked (crc32c) once the region is written.
		if fio --name=mig --filename=/dev/sda --ioengine=libaio --direct=1 \
			--rw=randwrite --bsrange=4k-64k --iodepth=16 --numjobs=2 \
			--size="$size" --offset_increment="$size" --verify=crc32c \
			--do_verify=1 --verify_fatal=1 --group_reporting \
			--output-format=terse >/tmp/fio.out 2>&1; then
			say "fio run $runs done"
		else
			failed=$((failed + 1))
			say "fio run $runs failed"
			sed 's/^/vsrs-mig: fio: /' /tmp/fio.out | tail -n 20 >/dev/console
		fi
	done
	say "fio runs $runs failed $failed"
	for f in /sys/kernel/debug/virtio_scsi_rs-*/stats; do
		[ -e "$f" ] && sed 's/^/vsrs-mig: stats /' "$f" >/dev/console
	done
else
	say "no disk"
fi
m=$(awk '{print $1}' /proc/modules | grep -x 'virtio_scsi\(_rs\)\?')
if [ -n "$m" ] && rmmod "$m"; then say "rmmod ok"; else say "rmmod failed"; fi
say "end"
poweroff -f
