#!/bin/bash
# Guest test: a controller with many LUNs on one target is scanned completely,
# LUNs >= 256 included (REPORT LUNS hands those over flat-addressed, which the
# midlayer numbers 0x4000 + LUN).
#
# Environment:
#   VSRS_LUNS   the LUNs QEMU was given, as ranges: "0-127,256-383" (kept
#               short: the command reaches the guest on the kernel command line)
cd "$(dirname "$0")" && . ./lib.sh

begin luns
luns=()
IFS=, read -ra ranges <<<"${VSRS_LUNS:?}"
for r in "${ranges[@]}"; do
	for l in $(seq "${r%-*}" "${r#*-}"); do
		# The midlayer numbers flat-addressed LUNs (>= 256) 0x4000 + LUN.
		luns+=($((l < 256 ? l : 0x4000 + l)))
	done
done
want=$(IFS=,; echo "${luns[*]}")
check "insmod" load
# sd probes them after the scan and udev works through 512 new devices: a
# debug-kernel guest under TCG takes minutes.
check "all ${#luns[@]} LUNs appear as disks" wait_disks "${#luns[@]}" 900
expect_eq "the LUN numbers are exactly the configured ones" \
	"$(vsrs_devices 0 | awk -F'[: ]' '{print $4}' | sort -n | paste -sd,)" "$want"
last=/dev/$(vsrs_devices 0 | sort -t: -k4,4n | tail -n1 | sed 's|.*/dev/||')
check "the highest LUN ($last) reads" dd if="$last" of=/dev/null bs=4k count=16 iflag=direct status=none
check "rmmod" unload
check "kmemleak: no leak" kmemleak_clean
check "dmesg: no WARN, BUG, KASAN, lockdep or hung-task report" no_kernel_reports
