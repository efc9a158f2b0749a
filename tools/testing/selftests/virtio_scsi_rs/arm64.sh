#!/bin/bash
# The arm64 case of make check ARCH=arm64 (issue 19): virtio_scsi_rs built for
# arm64, loaded in an arm64 guest, the discovery and data checks.
#
#   arm64.sh KDIR KO DIR
#
# KDIR is the arm64 kernel (ARCH=arm64 tools/build-kernel.sh), KO the module
# built against it. The guest is qemu-system-aarch64's virt machine under
# TCG (-cpu max, 2 vCPUs), KDIR's Image with an initramfs root (an arm64
# busybox, the module, arm64_init.sh as /init): virtme-ng's shared root is
# the host's x86_64 binaries. One virtio-scsi-pci controller (2 request
# queues) with two scsi-hd disks on raw files in DIR: 64 MiB at target 0
# LUN 0, for the guest to write, and 48 MiB at target 2 LUN 3, whose first
# 16 MiB the host fills with random data first.
#
# Prints TAP ("ok N - ...", "not ok N - ...", "#" diagnostics) and, last,
# "N passed, N failed"; exits non-zero on a failure.
#
# Environment: VSRS_ARM64_BUSYBOX (default $VSRS_CACHE/arm64/busybox, which
# tools/setup-host.sh fetches for ARCH=arm64); VSRS_ARM64_TIMEOUT, seconds
# the guest gets from its start to its power-off (default 1200).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../../../.." && pwd)
# shellcheck source=tools/kernel.env
. "$top/tools/kernel.env"
# shellcheck source=tools/testing/selftests/virtio_scsi_rs/reports.sh
. "$here/reports.sh"
kdir=$1 ko=$2 dir=$3
busybox=${VSRS_ARM64_BUSYBOX:-$VSRS_CACHE/arm64/busybox}
timeout=${VSRS_ARM64_TIMEOUT:-1200}
w_size=$((64 << 20)) r_size=$((48 << 20)) r_data=$((16 << 20))

n=0 pass=0 fail=0
result() { # STATUS DESC
	n=$((n + 1))
	if [ "$1" = 0 ]; then pass=$((pass + 1)); echo "ok $n - $2"; else fail=$((fail + 1)); echo "not ok $n - $2"; fi
}
diag() { sed 's/^/# /'; }
finish() {
	echo "1..$n"
	echo "$pass passed, $fail failed"
	[ "$fail" -eq 0 ]
	exit
}

echo "TAP version 13"
mkdir -p "$dir"
log=$dir/console.log

# --- the module and the initramfs ---------------------------------------------
# An arm64 object for this kernel: ELF machine AArch64, vermagic that of KDIR.
ko_for_kernel() {
	local machine vermagic release
	machine=$(readelf -h "$ko" 2>/dev/null | sed -n 's/^ *Machine: *//p')
	vermagic=$(modinfo -F vermagic "$ko" 2>/dev/null)
	release=$(cat "$kdir/include/config/kernel.release")
	echo "# $ko: machine $machine, vermagic $vermagic; kernel $release"
	[ "$machine" = AArch64 ] && [ "${vermagic%% *}" = "$release" ]
}
ko_for_kernel
result $? "the module is an arm64 object for the arm64 kernel (ELF machine AArch64, vermagic)"
[ "$fail" = 0 ] || finish

root=$dir/root
rm -rf "$root"
mkdir -p "$root"/{bin,dev,proc,sys,tmp}
cp "$busybox" "$root/bin/busybox" && cp "$ko" "$root/driver.ko" &&
	cp "$here/arm64_init.sh" "$root/init" && chmod +x "$root/init" &&
	(cd "$root" && find . | cpio -o -H newc --quiet) >"$dir/initrd.cpio"
result $? "an initramfs with an arm64 busybox and the module"
[ "$fail" = 0 ] || finish

# --- the disks --------------------------------------------------------------------
rm -f "$dir/w.raw" "$dir/r.raw"
truncate -s "$w_size" "$dir/w.raw"
head -c "$r_data" /dev/urandom >"$dir/r.raw"
truncate -s "$r_size" "$dir/r.raw"
host_md5=$(head -c "$r_data" "$dir/r.raw" | md5sum | cut -d' ' -f1)

# --- the guest ------------------------------------------------------------------
# pauth-impdef: QEMU's own pointer-authentication algorithm instead of QARMA,
# which TCG emulates several times slower; the guest's kernel uses it the same.
start=$SECONDS
timeout "$timeout" qemu-system-aarch64 -name vsrs-arm64 -machine virt -accel tcg \
	-cpu max,pauth-impdef=on -smp 2 -m 1G \
	-nodefaults -no-user-config -display none -no-reboot \
	-kernel "$kdir/arch/arm64/boot/Image" -initrd "$dir/initrd.cpio" \
	-append "console=ttyAMA0 loglevel=7 panic=-1" -serial "file:$log" \
	-device virtio-scsi-pci,id=vs0,num_queues=2 \
	-blockdev "driver=file,filename=$dir/w.raw,node-name=w,cache.direct=off" \
	-device scsi-hd,bus=vs0.0,scsi-id=0,lun=0,drive=w,serial=vsrs-a64w \
	-blockdev "driver=file,filename=$dir/r.raw,node-name=r,cache.direct=off" \
	-device scsi-hd,bus=vs0.0,scsi-id=2,lun=3,drive=r,serial=vsrs-a64r \
	>"$dir/qemu.log" 2>&1
status=$?
echo "# guest: $((SECONDS - start)) s from QEMU's start to its exit (status $status)"
grep -a -o 'vsrs-arm64: .*' "$log" | tr -d '\r' | diag

# fact NAME: the value of the guest's "vsrs-arm64: NAME VALUE" line.
fact() { grep -a -o "vsrs-arm64: $1 .*" "$log" | tr -d '\r' | head -n 1 | sed "s/^vsrs-arm64: $1 //"; }

[ "$status" = 0 ] && grep -aq 'vsrs-arm64: end' "$log"
result $? "the guest runs to its end and powers itself off (QEMU status $status)"
[ "$(fact machine)" = aarch64 ] && [ "$(fact insmod)" = 0 ]
result $? "an aarch64 guest loads the module (uname -m $(fact machine), insmod status $(fact insmod))"
[ "$(fact insmod)" = 0 ] || { tail -n 40 "$log" "$dir/qemu.log" | tr -d '\r' | diag; finish; }

# The probe line: what the driver read from the device's configuration
# space (QEMU's defaults for 2 queues, through the arm64 guest's accessors).
probe=$(fact probe)
[[ $probe =~ virtio_scsi_rs\ virtio[0-9]+:\ host[0-9]+:\ 2\ request\ queues\ \(2\ default,\ 0\ poll\)\ of\ 256\ entries ]] &&
	[[ $probe == *"seg_max 254, max_sectors 65535, cmd_per_lun 128"* ]] &&
	[[ $probe == *"features hotplug change" ]]
result $? "dmesg: the driver's probe line (2 request queues of 256 entries; seg_max 254, max_sectors 65535, cmd_per_lun 128; features hotplug change)"

# Discovery: exactly these two disks, at their addresses, of their sizes.
disks=$(grep -a -o 'vsrs-arm64: disk .*' "$log" | tr -d '\r' | awk '{print $4, $5, $6, $7, $8}' | sort)
want=$(printf '%s\n' "0:0:0:0 $((w_size / 512)) QEMU QEMU HARDDISK" "0:0:2:3 $((r_size / 512)) QEMU QEMU HARDDISK" | sort)
[ "$disks" = "$want" ]
result $? "discovery: two disks, 0:0:0:0 of $((w_size >> 20)) MiB and 0:0:2:3 (target 2, LUN 3) of $((r_size >> 20)) MiB, QEMU HARDDISK"
[ "$disks" = "$want" ] || printf 'found:\n%s\nwanted:\n%s\n' "$disks" "$want" | diag

pattern=$(fact pattern)
# Not the md5 of nothing: an empty pattern read back as nothing proves no I/O.
[ "$pattern" = d41d8cd98f00b204e9800998ecf8427e ] && pattern=
[ -n "$pattern" ] && [ "$(fact write)" = 0 ] && [ "$(fact readback)" = "$pattern" ]
result $? "data: the guest reads back from 0:0:0:0 the 4 MiB it wrote (md5 ${pattern:-none}, write status $(fact write), read back $(fact readback))"
host_w=$(head -c $((4 << 20)) "$dir/w.raw" | md5sum | cut -d' ' -f1)
[ -n "$pattern" ] && [ "$host_w" = "$pattern" ]
result $? "data: the host reads in the disk's file what the guest wrote (md5 $host_w)"
[ "$(fact hostdata)" = "$host_md5" ]
result $? "data: the guest reads on 0:0:2:3 the 16 MiB the host wrote (md5 $(fact hostdata), host $host_md5)"

[ "$(fact rmmod)" = 0 ] && [ "$(fact 'disks after rmmod')" = 0 ]
result $? "rmmod virtio_scsi_rs (status $(fact rmmod)), no disk left ($(fact 'disks after rmmod'))"

# From the driver's loading on (the boot's own lines name lockdep).
if ! grep -aq 'vsrs-arm64: loading the module' "$log"; then
	result 1 "no kernel report on the console from the driver's loading on (the guest never loaded it)"
elif report=$(sed -n '/vsrs-arm64: loading the module/,$p' "$log" | tr -d '\r' | kernel_report 1); then
	result 0 "no kernel report (WARNING, BUG, Oops, KASAN, lockdep) on the console from the driver's loading on"
else
	result 1 "no kernel report (WARNING, BUG, Oops, KASAN, lockdep) on the console from the driver's loading on"
	echo "$report" | diag
fi
[ "$fail" = 0 ] || tail -n 60 "$log" | tr -d '\r' | sed 's/^/# console: /'
finish
