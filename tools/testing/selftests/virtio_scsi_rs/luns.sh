#!/bin/bash
# Guest test: a controller with many LUNs on one target is scanned completely,
# LUNs >= 256 included (REPORT LUNS hands those over flat-addressed, which the
# midlayer numbers 0x4000 + LUN).
#
# Environment:
#   VSRS_LUNS   the LUNs QEMU was given, as the midlayer numbers them,
#               comma-separated in ascending order
cd "$(dirname "$0")" && . ./lib.sh

begin luns
IFS=, read -ra luns <<<"${VSRS_LUNS:?}"
check "insmod" load
check "all ${#luns[@]} LUNs appear as disks" wait_disks "${#luns[@]}"
expect_eq "the LUN numbers are exactly the configured ones" \
	"$(vsrs_devices 0 | awk -F'[: ]' '{print $4}' | sort -n | paste -sd,)" "$VSRS_LUNS"
last=/dev/$(vsrs_devices 0 | sort -t: -k4,4n | tail -n1 | sed 's|.*/dev/||')
check "the highest LUN ($last) reads" dd if="$last" of=/dev/null bs=4k count=16 iflag=direct status=none
check "rmmod" unload
check "kmemleak: no leak" kmemleak_clean
check "dmesg: no WARN, BUG, KASAN, lockdep or hung-task report" no_kernel_reports
