#!/bin/bash
# Guest test: virtio_scsi_rs loads, binds every virtio-scsi device, reports
# the configuration QEMU was given, and unloads without a trace.
#
# Environment (set by run_tests.sh per QEMU configuration):
#   VSRS_INSMOD_ARGS  module parameters for insmod
#   VSRS_EXPECT       fragments that the driver's "request queues" dmesg line
#                     must contain, separated by '|'
#   VSRS_KO           the module file to insmod; unset, the installed module
#                     is loaded with modprobe (from under VSRS_MODROOT if set)
#
# Also the kselftest of this directory (Makefile: TEST_PROGS): on a machine
# without a virtio-scsi device or the module, or where the C driver or
# virtio_scsi_rs is loaded already, it is skipped (exit 4).
cd "$(dirname "$0")" && . ./lib.sh

not_loaded() { ! grep -q "^$1 " /proc/modules; }
ndev=$(scsi_virtio_devs | wc -l)
require "virtio_scsi_rs found: $KO" ko_info filename
require "virtio_scsi_rs is not loaded yet" not_loaded virtio_scsi_rs
require "the C driver virtio_scsi is not loaded" not_loaded virtio_scsi
require "a virtio-scsi device is present ($ndev)" test "$ndev" -ge 1

begin probe
if [ -n "${VSRS_MODROOT:-}" ]; then
	check "modprobe finds virtio_scsi_rs under $VSRS_MODROOT" \
		grep -q "^insmod $VSRS_MODROOT/" <<<"$(modprobe -d "$VSRS_MODROOT" --show-depends "$KO" 2>&1)"
fi
# shellcheck disable=SC2086 # parameters are words on purpose
check "load virtio_scsi_rs ${VSRS_INSMOD_ARGS:-}" load ${VSRS_INSMOD_ARGS:-}
check "lsmod lists virtio_scsi_rs" bash -c "lsmod | grep -q '^virtio_scsi_rs '"

check "modinfo: alias virtio:d00000008v*" test "$(ko_info alias)" = 'virtio:d00000008v*'
check "modinfo: license GPL, description" test "$(ko_info license)" = GPL -a -n "$(ko_info description)"
check "modinfo: parameter poll_queues" grep -q '^poll_queues:' <<<"$(ko_info parm)"

bound_all() {
	local d
	for d in $(scsi_virtio_devs); do
		[ "$(basename "$(readlink "$d/driver")")" = virtio_scsi_rs ] || { echo "$d not bound"; return 1; }
		# VIRTIO_CONFIG_S_DRIVER_OK (4) set, FAILED (0x80) not.
		local st=$(( $(cat "$d/status") ))
		(( st & 4 && !(st & 0x80) )) || { echo "$d status $st"; return 1; }
	done
}
check "every virtio-scsi device bound, status DRIVER_OK" bound_all

line="$(new_dmesg | grep "virtio_scsi_rs .*request queues" | tail -n1)$"
echo "$line" | diag
IFS='|' read -ra expect <<<"${VSRS_EXPECT:-request queues}"
for e in "${expect[@]}"; do
	check "config reported: $e" grep -qF -- "$e" <<<"$line"
done

check "rmmod virtio_scsi_rs" unload
unbound_all() {
	local d
	for d in $(scsi_virtio_devs); do
		[ ! -e "$d/driver" ] || { echo "$d still bound"; return 1; }
	done
	! loaded
}
check "rmmod leaves no device bound and no module" unbound_all

cycles() {
	local i
	for i in 1 2 3 4 5; do
		# shellcheck disable=SC2086
		load ${VSRS_INSMOD_ARGS:-} && bound_all && unload || { echo "cycle $i failed"; return 1; }
	done
}
check "5 more insmod/bind/rmmod cycles" cycles
check "kmemleak: no leak after the cycles" kmemleak_clean
check "dmesg: no WARN, BUG, KASAN, lockdep or hung-task report" no_kernel_reports
