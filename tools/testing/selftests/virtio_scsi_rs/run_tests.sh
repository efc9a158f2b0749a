#!/bin/bash
# Host side of the virtio_scsi_rs selftests: boots one guest per QEMU
# configuration through tools/run-guest, runs a guest test in it, and prints
# one TAP stream (kselftest style) numbering every result line. A guest that
# fails to boot, hangs or crashes is a failed test of its own.
#
#   run_tests.sh [FILTER]   only the cases whose name contains FILTER
#
# Exit status: 0 when every test passed.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../../../.." && pwd)
run_guest=$top/tools/run-guest
filter=${1:-}
guest_timeout=${VSRS_GUEST_TIMEOUT:-900}

n=0 pass=0 fail=0
result() { # STATUS DESC
	n=$((n + 1))
	if [ "$1" = ok ]; then pass=$((pass + 1)); echo "ok $n $2"; else fail=$((fail + 1)); echo "not ok $n $2"; fi
}

# guest NAME "RUN-GUEST OPTIONS" "ENV ASSIGNMENTS" TEST
guest() {
	local name=$1 opts=$2 env=$3 test=$4 out status line
	case $name in *"$filter"*) ;; *) return 0 ;; esac
	echo "# $name: $test"
	out=$(mktemp)
	# shellcheck disable=SC2086 # option strings are split on purpose
	eval "timeout $guest_timeout $run_guest $opts -- env $env $here/$test" >"$out" 2>&1
	status=$?
	local results=0
	while IFS= read -r line; do
		case $line in
		"ok - "*) result ok "$name: ${line#ok - }"; results=$((results + 1)) ;;
		"not ok - "*) result fail "$name: ${line#not ok - }"; results=$((results + 1)) ;;
		"#"*) echo "$line" ;;
		esac
	done <"$out"
	if [ "$status" -ne 0 ] || [ "$results" -eq 0 ]; then
		result fail "$name: guest finished (status $status, $results results)"
		grep -v -E '^(ok|not ok) - ' "$out" | tail -n 40 | sed 's/^/# /'
	fi
	rm -f "$out"
}

disks="-blockdev driver=null-co,node-name=n0,size=1073741824,read-zeroes=on \
-device scsi-hd,bus=vs0.0,scsi-id=0,lun=0,drive=n0"

echo "TAP version 13"

guest "one queue, small ring" \
	"--no-default-disks --cpus 2 --qemu '-device virtio-scsi-pci,id=vs0,num_queues=1,virtqueue_size=64,max_sectors=1024,cmd_per_lun=16,hotplug=off,param_change=off $disks'" \
	"VSRS_EXPECT='1 request queues (1 default, 0 poll) of 64 entries|targets 0-255, LUNs 0-16383|seg_max 62, max_sectors 1024, cmd_per_lun 16, event_info_size 16|features\$'" \
	probe.sh

guest "four queues, one polled" \
	"--no-default-disks --cpus 4 --qemu '-device virtio-scsi-pci,id=vs0,num_queues=4 $disks'" \
	"VSRS_INSMOD_ARGS=poll_queues=1 VSRS_EXPECT='4 request queues (3 default, 1 poll) of 256 entries|seg_max 254, max_sectors 65535, cmd_per_lun 128|features hotplug change\$'" \
	probe.sh

echo "1..$n"
echo "# selftests: $pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$n" -gt 0 ]
