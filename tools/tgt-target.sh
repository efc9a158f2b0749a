#!/bin/bash
# A private iSCSI target (Debian's tgt) on loopback, for the tests that pass a
# real SCSI target through to a guest (QEMU's libiscsi driver).
#
#   tools/tgt-target.sh start DIR INITIATOR...
#   tools/tgt-target.sh stop DIR
#
# start: a tgtd of its own on a free 127.0.0.1 port, with a control port of
# its own (so that it cannot clash with the host's tgtd or another test's),
# serving one target whose LUNs are
#   1  a 64 MiB disk (DIR/disk.img)
#   2  a tape drive with a 16 MiB data cartridge (ssc, DIR/tape.img, tgtimg)
#   3  a DVD writer with a blank DVD+R (mmc, DIR/dvd.img, tgtimg)
# to the INITIATORs (iSCSI initiator names) only. Prints "127.0.0.1:PORT IQN"
# once an initiator of the list sees the target; fails, saying why, when the
# target cannot be set up (and stops what it started). tgtd's log is
# DIR/tgtd.log.
# stop: shuts that tgtd down and removes DIR.
set -euo pipefail

iqn=iqn.2026-12.invalid.vsrs:passthrough
# tgtd's control channel is the unix socket $sockets/socket.N.
sockets=/var/run/tgtd

die() { echo "tgt-target: $*" >&2; exit 1; }

stop() { # DIR
	local dir=$1 pid ctl
	[ -f "$dir/pid" ] || { rm -rf "$dir"; return 0; }
	read -r pid ctl <"$dir/pid"
	# tgtd shuts down only once it serves no target.
	tgtadm -C "$ctl" --lld iscsi --mode target --op delete --force --tid 1 >/dev/null 2>&1 || true
	tgtadm -C "$ctl" --mode system --op delete >/dev/null 2>&1 || true
	for _ in $(seq 1 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
	# tgtd leaves its socket and lock file behind.
	rm -f "$sockets/socket.$ctl" "$sockets/socket.$ctl.lock"
	rm -rf "$dir"
}

# tgtd_up PORT CTL: a tgtd started with its files in $dir (the caller's),
# its pid and control port in $dir/pid once it answers; fails when it does
# not come up (the port was taken after all), and leaves nothing running.
tgtd_up() {
	local port=$1 ctl=$2 pid
	tgtd -f -C "$ctl" --iscsi "portal=127.0.0.1:$port" </dev/null >"$dir/tgtd.log" 2>&1 &
	pid=$!
	for _ in $(seq 1 50); do
		kill -0 "$pid" 2>/dev/null || return 1
		if tgtadm -C "$ctl" --mode system --op show >/dev/null 2>&1; then
			echo "$pid $ctl" >"$dir/pid"
			return 0
		fi
		sleep 0.1
	done
	kill -KILL "$pid"
	return 1
}

start() { # DIR INITIATOR...
	local dir=$1 port ctl try lun name
	shift
	[ $# -gt 0 ] || die "start: no initiator named"
	mkdir -p "$dir" "$sockets"
	for try in 1 2 3; do
		port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
		# A control port no tgtd has used yet (0 is the host's tgtd;
		# tgtadm takes up to 32767).
		until ctl=$((RANDOM % 32000 + 700)); [ ! -e "$sockets/socket.$ctl.lock" ]; do :; done
		tgtd_up "$port" "$ctl" && break
		echo "tgt-target: tgtd on port $port, control port $ctl did not come up:" >&2
		cat "$dir/tgtd.log" >&2
		[ "$try" = 3 ] && { rm -rf "$dir"; die "no tgtd after 3 tries"; }
	done
	adm() { tgtadm -C "$ctl" --lld iscsi "$@" || { stop "$dir"; die "tgtadm $* failed"; }; }
	truncate -s 64M "$dir/disk.img"
	tgtimg --op new --device-type tape --barcode VSRS0001 --size 16 --type data --file "$dir/tape.img" >/dev/null ||
		{ stop "$dir"; die "tgtimg: no tape image"; }
	tgtimg --op new --device-type cd --type dvd+r --file "$dir/dvd.img" >/dev/null ||
		{ stop "$dir"; die "tgtimg: no DVD+R image"; }
	adm --mode target --op new --tid 1 --targetname "$iqn"
	adm --mode logicalunit --op new --tid 1 --lun 1 --backing-store "$dir/disk.img"
	adm --mode logicalunit --op new --tid 1 --lun 2 --device-type tape --bstype ssc --backing-store "$dir/tape.img"
	adm --mode logicalunit --op new --tid 1 --lun 3 --device-type cd --backing-store "$dir/dvd.img"
	for name in "$@"; do
		adm --mode target --op bind --tid 1 --initiator-name "$name"
	done
	# What a client sees: the target and its three LUNs, by discovery and
	# REPORT LUNS over iSCSI.
	lun=$(iscsi-ls -s -i "$1" "iscsi://127.0.0.1:$port" 2>&1) || true
	if [ "$(grep -c '^Lun:[123] ' <<<"$lun")" != 3 ]; then
		echo "$lun" >&2
		stop "$dir"
		die "iscsi-ls does not list the target's three LUNs"
	fi
	echo "127.0.0.1:$port $iqn"
}

case ${1:-} in
start) [ $# -ge 2 ] || die "usage: $0 start DIR INITIATOR..."; shift; start "$@" ;;
stop) [ $# = 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
*) die "usage: $0 start DIR INITIATOR... | stop DIR" ;;
esac
