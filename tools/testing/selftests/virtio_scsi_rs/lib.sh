#!/bin/bash
# Guest-side helpers for the virtio_scsi_rs selftests: TAP result lines,
# module load/unload, dmesg and kmemleak checks. Sourced by the guest tests;
# run_tests.sh (host side) numbers the lines and adds the plan.
#
# Result lines are "ok - DESC" / "not ok - DESC"; "# ..." lines are diagnostics.
# Run by the kernel's kselftest runner instead (this directory in a kernel
# tree's tools/testing/selftests, or installed from there: the kselftest
# helpers are then in ../kselftest), they are KTAP through those helpers:
# numbered, the plan and totals at the end, exit status 0, 1, or 4 (skip).

ksft=
if [ -r ../kselftest/ktap_helpers.sh ]; then
	ksft=1
	# shellcheck source=/dev/null # the kernel's, not in this repository
	. ../kselftest/ktap_helpers.sh
	ktap_print_header
	trap 'ktap_set_plan $((KTAP_TESTNO - 1)); ktap_finished' EXIT
fi

# The module under test: the file VSRS_KO (run_tests.sh: the host's build,
# loaded with insmod), else the installed virtio_scsi_rs (modprobe; from
# under the root directory VSRS_MODROOT when that is set).
KO=${VSRS_KO:-virtio_scsi_rs}
MOD=virtio_scsi_rs
# VSRS_DRIVER=c: the tests drive the in-tree C driver (modprobe virtio_scsi)
# instead, to validate a test against a driver known to implement the feature.
if [ "${VSRS_DRIVER:-rs}" = c ]; then
	MOD=virtio_scsi
fi
is_c() { [ "$MOD" = virtio_scsi ]; }
. ./reports.sh

# Result lines also go to the kernel log ("vsrs-tap: "), which reaches the
# host's --klog file even when the guest's output port does not (run_tests.sh
# reads them from there then); not those of a test another one runs and
# judges itself (VSRS_NESTED: fuzz_shrink.py's trials).
ok() {
	if [ -n "$ksft" ]; then ktap_test_pass "$*"; else echo "ok - $*"; fi
	[ -n "${VSRS_NESTED:-}" ] || echo "vsrs-tap: ok - $*" >/dev/kmsg
}
not_ok() {
	if [ -n "$ksft" ]; then ktap_test_fail "$*"; else echo "not ok - $*"; fi
	[ -n "${VSRS_NESTED:-}" ] || echo "vsrs-tap: not ok - $*" >/dev/kmsg
}
diag() { sed 's/^/# /'; }
# fd 9: the test's own output, for diagnostics from inside check's capture.
exec 9>&1

# check DESC COMMAND...: one result line from COMMAND's status; its output
# goes to diagnostics when it fails.
check() {
	local desc=$1 out; shift
	if out=$("$@" 2>&1); then
		ok "$desc"
	else
		not_ok "$desc"
		[ -n "$out" ] && echo "$out" | diag
	fi
	return 0
}

# require DESC COMMAND...: a precondition, before any result. Under the
# kselftest runner, a machine where it does not hold skips the whole test
# (exit 4); under run_tests.sh, whose guests have it, it is one more check.
require() {
	local out
	if [ -n "$ksft" ] && ! out=$("${@:2}" 2>&1); then
		trap - EXIT
		[ -z "$out" ] || diag <<<"$out"
		ktap_skip_all "precondition not met: $1"
		exit "$KSFT_SKIP"
	fi
	check "$@"
}

# expect_eq DESC GOT WANT: one result line; shows both values on failure.
expect_eq() {
	if [ "$2" = "$3" ]; then
		ok "$1"
	else
		not_ok "$1"
		printf 'got:  %s\nwant: %s\n' "$2" "$3" | diag
	fi
}

debugfs() {
	mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug
}

# Ends the guest at once, for a test whose guest has lost its 9p root (pm.sh):
# run_tests.sh takes the guest's status as 0 after this line, and the results
# from the kernel log if the output port lost them. No sync: it would wait for
# the root.
power_off() {
	echo "vsrs-test: power off" >/dev/kmsg
	poweroff -n -f
}

# exec_from_tmpfs DIR SCRIPT [FILE...]: a static busybox, bash with its
# libraries, SCRIPT, lib.sh, reports.sh and the FILEs copied to DIR (a tmpfs),
# then SCRIPT exec'd from there with PATH=DIR/bin: for a test that suspends the
# guest, whose 9p root does not come back (pm.sh). The caller exports what
# the second phase needs first.
exec_from_tmpfs() {
	local dir=$1 script=$2 f ld libs
	shift 2
	mkdir -p "$dir/bin" "$dir/lib" && cp /bin/busybox /bin/bash "$script" lib.sh reports.sh "$@" "$dir/" &&
		"$dir/busybox" --install -s "$dir/bin" ||
		{ not_ok "a static busybox and bash in $dir (busybox-static)"; exit 1; }
	libs=$(ldd /bin/bash | grep -o '/[^ ]*')
	for f in $libs; do
		cp -L "$f" "$dir/lib/" || { not_ok "copy $f to $dir"; exit 1; }
	done
	ld=$(grep -o '[^/]*ld-linux[^/]*$' <<<"$libs")
	export PATH=$dir/bin
	exec "$dir/lib/$ld" --library-path "$dir/lib" "$dir/bash" "$dir/$script"
	not_ok "exec bash from $dir"
	exit 1
}

# Start of a guest test: dmesg marked, kmemleak's current reports cleared.
begin() {
	debugfs
	echo "vsrs-test: begin $*" >/dev/kmsg
	dmesg_start=$(dmesg | wc -l)
	[ -w /sys/kernel/debug/kmemleak ] && echo clear >/sys/kernel/debug/kmemleak
	return 0
}

# dmesg since begin().
new_dmesg() { dmesg | tail -n +"$((dmesg_start + 1))" | grep -v 'vsrs-tap: '; }

# Fails when the kernel reported a warning, bug, sanitizer or lockdep splat,
# or a hung task since begin() (reports.sh; the known sr_done report is a
# diagnostic line, not a failure).
no_kernel_reports() { new_dmesg | kernel_report 9; }

# Fails when kmemleak finds unreferenced objects allocated since begin().
# A scan that races a pointer's move can report an object that a later scan
# finds referenced, and kmemleak then drops it: a report is read again after
# two more scans, and only what is still there counts. Objects allocated by
# udev's inotify_add_watch (radix-tree nodes of the watch IDR) do not count:
# no disk's path allocates them, and one such report came from a run where
# the host CPUs were busy with other work; they are listed as diagnostics.
kmemleak_unrelated='inotify_add_watch'
kmemleak_clean() {
	local f=/sys/kernel/debug/kmemleak report i
	[ -e "$f" ] || { echo "kmemleak is not available in this kernel"; return 1; }
	# An object must be found unreferenced by two scans to be reported.
	for i in 1 2; do
		echo scan >"$f"; sleep 1; echo scan >"$f"
		report=$(cat "$f")
		[ -z "$report" ] || continue
		[ "$i" = 1 ] || echo "# kmemleak: the first report was gone after two more scans" >&9
		return 0
	done
	# One record per object: its "unreferenced object" line and those after.
	report=$(echo "$report" | awk -v skip="$kmemleak_unrelated" '
		function flush() {
			if (rec == "") return
			if (rec ~ skip) print "kmemleak, not counted: " rec | "sed \"s/^/# /\" >&9"
			else print rec
			rec = ""
		}
		/^unreferenced object/ { flush(); rec = $0; next }
		{ rec = rec "\n" $0 }
		END { flush() }')
	[ -z "$report" ] || { echo "$report" | head -n 60; return 1; }
}

# (modprobe does not find the cached kernel's modules in a vng guest: the C
# driver is loaded by path, $VSRS_C_KO from run-guest.)
load() {
	if is_c; then
		insmod "${VSRS_C_KO:?VSRS_C_KO must name the C driver virtio_scsi.ko}" "$@"
	elif [ -n "${VSRS_KO:-}" ]; then
		insmod "$KO" "$@"
	else
		modprobe ${VSRS_MODROOT:+-d "$VSRS_MODROOT"} "$KO" "$@"
	fi
}
# ko_info FIELD: a field of the module under test's modinfo.
ko_info() { modinfo ${VSRS_MODROOT:+-b "$VSRS_MODROOT"} -F "$1" "$KO"; }
# load, with VSRS_INSMOD_ARGS (module parameters, e.g. tmf_timeout=60) for
# virtio_scsi_rs; the C driver takes none of them.
load_with_args() {
	# shellcheck disable=SC2086 # parameters are words
	if is_c; then load; else load ${VSRS_INSMOD_ARGS:-}; fi
}
# rmmod, after udev has let go of the disks (it probes a disk again after a
# writer closes it, holding it open, and the module with it, for a moment).
unload() {
	local i
	for i in $(seq 1 20); do
		udevadm settle 2>/dev/null
		rmmod "$MOD" 2>/dev/null && return 0
		sleep 0.5
	done
	rmmod "$MOD"
}
loaded() { grep -q "^$MOD " /proc/modules; }

# The virtio devices that are virtio-scsi (device id 8).
scsi_virtio_devs() {
	local d
	for d in /sys/bus/virtio/devices/*; do
		[ "$(cat "$d/device")" = 0x0008 ] && echo "$d"
	done
	return 0
}

# Host numbers of the SCSI hosts virtio_scsi_rs drives. (Bash builtins only
# in these helpers: a guest may have hundreds of devices, and every process
# spawned under TCG costs.)
vsrs_hosts() {
	local h p
	for h in /sys/class/scsi_host/host*; do
		read -r p <"$h/proc_name" && [ "$p" = "$MOD" ] && echo "${h##*host}"
	done
}

# SCSI devices of those hosts (of SCSI type TYPE: 0 disk, 5 CD), as
# "H:C:T:L /dev/NAME" lines sorted by host, target and LUN.
vsrs_devices() { # [TYPE]
	local h d t b
	for h in $(vsrs_hosts); do
		for d in /sys/bus/scsi/devices/"$h":*; do
			[ -e "$d/type" ] || continue
			read -r t <"$d/type"
			[ -z "${1:-}" ] || [ "$t" = "$1" ] || continue
			b=("$d"/block/*)
			[ -e "${b[0]}" ] && b=${b[0]##*/} || b=
			echo "${d##*/} /dev/$b"
		done
	done | sort -t: -k1,1n -k3,3n -k4,4n
}

# Waits until the block devices of virtio_scsi_rs's disks exist (sd binds
# asynchronously after the scan that insmod ran); N expected, 120 s at most.
# (Counted with bash builtins and bounded by wall time: on a loaded host a
# process per poll costs seconds in a TCG guest.)
count_disks() {
	local h d n=0
	for h in $(vsrs_hosts); do
		for d in /sys/bus/scsi/devices/"$h":*/block/sd*; do
			[ -e "$d" ] && n=$((n + 1))
		done
	done
	echo "$n"
}
wait_disks() { # N [SECONDS, default 120]
	local end=$((${EPOCHREALTIME%.*} + ${2:-120}))
	while [ "${EPOCHREALTIME%.*}" -le "$end" ]; do
		[ "$(count_disks)" -ge "$1" ] && { udevadm settle 2>/dev/null; return 0; }
		sleep 0.5
	done
	echo "only $(vsrs_devices 0 | wc -l) of $1 disks appeared"; vsrs_devices; return 1
}

# The serial number QEMU was given for a disk (VPD page 0x80 after its
# 4-byte header, as sd cached it in sysfs).
serial_of() { tail -c +5 "/sys/block/${1##*/}/device/vpd_pg80" 2>/dev/null | tr -d '\0 '; }

# Disks whose serial starts with PREFIX (on host HOST only, if given).
disks_with_serial() { # PREFIX [HOST]
	local addr dev
	vsrs_devices 0 | while read -r addr dev; do
		[ -z "${2:-}" ] || [ "${addr%%:*}" = "$2" ] || continue
		case $(serial_of "$dev") in "$1"*) echo "$dev" ;; esac
	done
}

# fio random writes verified with crc32c on DEVICES, NUMJOBS jobs each.
# read_fails DEVICE DESC: one direct 4 KiB read of DEVICE must fail.
read_fails() {
	if dd if="$1" of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null; then
		not_ok "$2"
	else
		ok "$2"
	fi
}

fio_verify() { # NUMJOBS SIZE DEVICES...
	local jobs=$1 size=$2 dev args=(); shift 2
	for dev in "$@"; do
		args+=(--name="$(basename "$dev")" --filename="$dev")
	done
	fio --ioengine=libaio --direct=1 --rw=randwrite --bsrange=4k-64k --iodepth=16 \
		--numjobs="$jobs" --size="$size" --offset_increment="$size" --verify=crc32c \
		--verify_fatal=1 --do_verify=1 --group_reporting --output-format=terse \
		"${args[@]}" >/tmp/fio.out 2>&1 || { tail -n 30 /tmp/fio.out; return 1; }
	! grep -qi 'verify:\|bad magic\|crc32c: verify failed' /tmp/fio.out
}

# --- control channel to QEMU's monitor (tools/run-guest --ctl) ---------------
# The guest end of the virtio-serial port the host relay (qmp_relay.py) serves.
ctl_port() {
	local f n
	[ -e /dev/virtio-ports/vsrs.ctl ] && { echo /dev/virtio-ports/vsrs.ctl; return 0; }
	for f in /sys/class/virtio-ports/*/name; do
		[ -e "$f" ] || continue
		read -r n <"$f"
		[ "$n" = vsrs.ctl ] && { f=${f%/name}; echo "/dev/${f##*/}"; return 0; }
	done
	echo "no virtio-serial port vsrs.ctl (run-guest --ctl?)" >&2
	return 1
}

# ctl_open: opens the port once, in the test's main shell (a virtio port can
# be open only once at a time; call it before qmp runs in a subshell).
ctl_open() {
	local p
	p=$(ctl_port) || return 1
	exec {ctl_fd}<>"$p"
}

# qmp JSON: sends one command (or relay pseudo-command) and prints the reply
# line; fails when there is no reply within VSRS_QMP_TIMEOUT s (default 120)
# or the reply is an error.
qmp() {
	local reply
	[ -n "${ctl_fd:-}" ] || ctl_open || return 1
	printf '%s\n' "$1" >&"$ctl_fd"
	if ! IFS= read -r -t "${VSRS_QMP_TIMEOUT:-120}" reply <&"$ctl_fd"; then
		echo "qmp: no reply to $1" >&2
		return 1
	fi
	echo "$reply"
	case $reply in '{"return"'*) return 0 ;; *) echo "qmp: $1 -> $reply" >&2; return 1 ;; esac
}

json_str() { # STRING: as a JSON string literal
	local s=${1//\\/\\\\}
	s=${s//\"/\\\"}
	printf '"%s"' "$s"
}

# hmp 'COMMAND': a human monitor command; prints its output (the "return"
# string, unescaped); fails on a QMP error or when the output says Error.
hmp() {
	local r
	r=$(qmp "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":$(json_str "$1")}}") || return 1
	# Unescape the JSON string in bash (a python3 start costs seconds in a
	# loaded TCG guest): {"return": "TEXT"}.
	r=${r#*\"return\": \"}
	r=${r%\"\}}
	r=${r//\\r\\n/$'\n'}
	r=${r//\\n/$'\n'}
	r=${r//\\\"/\"}
	r=${r//\\\\/\\}
	printf '%s' "$r"
	case $r in *rror*) return 1 ;; esac
	return 0
}

# qmp_wait_event NAME [TIMEOUT [DATA-JSON]]: waits for (and consumes) an event
# QEMU sent since the last qmp_clear_events; prints it.
qmp_wait_event() {
	qmp "{\"wait-event\":\"$1\",\"timeout\":${2:-10}${3:+,\"data\":$3}}"
}
qmp_clear_events() { qmp '{"clear-events":true}' >/dev/null; }
# dev_del ID: device_del and wait for QEMU's DEVICE_DELETED.
dev_del() {
	qmp "{\"execute\":\"device_del\",\"arguments\":{\"id\":\"$1\"}}" >/dev/null &&
		qmp_wait_event DEVICE_DELETED 30 "{\"device\":\"$1\"}" >/dev/null
}

# The block device of the SCSI device H:C:T:L, or nothing.
blockdev_of() {
	local b=(/sys/bus/scsi/devices/"$1"/block/*)
	[ -e "${b[0]}" ] && echo "/dev/${b[0]##*/}"
}
# has_blockdev ADDR / no_scsi_dev ADDR: the SCSI device ADDR has a block
# device / is gone.
has_blockdev() { [ -n "$(blockdev_of "$1")" ]; }
no_scsi_dev() { ! [ -e "/sys/bus/scsi/devices/$1" ]; }

# wait_deadline PID SECS: waits for a background job of this shell; its exit
# status, or 124 (the job left running, e.g. stuck in D state) after SECS.
wait_deadline() {
	local i
	for i in $(seq 1 $(($2 * 10))); do
		kill -0 "$1" 2>/dev/null || { wait "$1"; return; }
		sleep 0.1
	done
	return 124
}

# bounded SECS COMMAND...: COMMAND in the background; its status, or 124
# when it has not ended after SECS and was left behind (a task stuck in D
# state ignores signals: timeout(1) would wait for it too).
bounded() {
	local secs=$1
	shift
	"$@" &
	wait_deadline $! "$secs"
}

# --- the test device's control socket (run-guest --testdev) ---
tdev_port=/dev/virtio-ports/vsrs.testdev
# ctl JSON: one command on the device's control socket, prints the reply.
ctl() {
	local reply
	[ -e /proc/self/fd/7 ] || exec 7<>"$tdev_port"
	echo "$1" >&7
	read -r -t 20 reply <&7 || reply='{"ok":false,"error":"no reply"}'
	echo "$reply"
}
ctl_ok() { case $(ctl "$1") in *'"ok":true'*) return 0 ;; *) ctl "$1"; return 1 ;; esac; }
# fault_ok JSON: ctl_ok for a fault rule, once udev is idle: a one-shot rule
# must hit the test's own read, not udev's probe of a disk the test just
# wrote (close after write -> change event -> blkid reads it; late on the
# debug kernel, it took the MEDIUM ERROR meant for the test's read once).
fault_ok() {
	udevadm settle --timeout=60 >/dev/null 2>&1
	ctl_ok "$1"
}

# Block devices of the test device's LUNs (VPD serial tdev-T-L), as
# "T-L /dev/sdX" lines.
tdev_disks() {
	local b s
	for b in /sys/block/sd* /sys/block/sr*; do
		[ -e "$b/device/vpd_pg80" ] || continue
		# Bash only (every process costs under TCG); read drops the NULs.
		s=
		read -r s <"$b/device/vpd_pg80" 2>/dev/null
		case $s in *tdev-*) echo "${s#*tdev-} /dev/${b##*/}" ;; esac
	done
}
dev_of() { tdev_disks | awk -v k="$1" '$1 == k {print $2}'; }
wait_for() { # SECONDS COMMAND...: until COMMAND succeeds (wall clock: under
	# TCG one try can take seconds)
	local end=$((SECONDS + $1)); shift
	while [ "$SECONDS" -lt "$end" ]; do "$@" && return 0; sleep 0.5; done
	"$@"
}
has_disk() { [ -n "$(dev_of "$1")" ]; }
no_disk() { [ -z "$(dev_of "$1")" ]; }
two_disks() { has_disk 0-0 && has_disk 0-1; }

# begin_rs_only NAME WHY: begin, for a test of what only virtio_scsi_rs does:
# the C driver gets one SKIP line saying WHY, and the test ends there.
# Otherwise the test device's control port is opened here, in the test's
# main shell (a virtio port can be open only once at a time).
begin_rs_only() {
	begin "$1"
	if is_c; then
		ok "$1 # SKIP $2"
		exit 0
	fi
	exec 7<>"$tdev_port"
}

# load_two_disks: the driver loaded (with VSRS_INSMOD_ARGS), the test
# device's disks 0:0 and 0:1 there (run_tests.sh), as $d0 and $d1.
load_two_disks() {
	check "load $MOD${VSRS_INSMOD_ARGS:+ $VSRS_INSMOD_ARGS}" load_with_args
	check "disks 0:0 and 0:1 appear" wait_for 120 two_disks
	d0=$(dev_of 0-0) d1=$(dev_of 0-1)
	udevadm settle 2>/dev/null
}

# stat_of NAME: a virtio_scsi_rs debugfs counter (stats lines "NAME VALUE"),
# summed over its devices; 0 with the C driver.
stat_of() { # NAME
	is_c && { echo 0; return; }
	cat /sys/kernel/debug/virtio_scsi_rs-*/stats 2>/dev/null | awk -v n="$1" '$1 == n {s += $2} END {print s + 0}'
}
# missed_since N: events_missed has passed N (a rescan on events missed began).
missed_since() { [ "$(stat_of events_missed)" -gt "$1" ]; }

# untracked: commands virtio_scsi_rs got back from the device that its
# in-flight table did not hold (completed twice, or never submitted), summed
# over the request queues of every bound device; 0 unless the driver is wrong.
untracked() {
	cat /sys/kernel/debug/virtio_scsi_rs-*/stats 2>/dev/null | awk '
		FNR == 1 { c = 0; for (i = 1; i <= NF; i++) if ($i == "untracked") c = i; next }
		$1 ~ /^[0-9]+$/ && c { s += $c } END { print s + 0 }'
}
