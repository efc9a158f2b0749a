#!/bin/bash
# Host side of the cases "migration under I/O virtio_scsi_rs" and "... C
# driver" (issue 16 item 6): a guest live-migrated between two QEMU
# processes on this host while fio writes and verifies on its virtio-scsi
# disk, then stopped and continued.
#
#   migration.sh rs|c KDIR DIR
#
# The guest is KDIR's kernel with an initramfs root (migration_init.sh as
# /init, busybox, fio with its libraries, the driver): virtme-ng's shared 9p
# root blocks migration. Its disk is a file both QEMU processes open (one
# virtio-scsi-pci controller, two request queues, scsi-hd at target 0 LUN 0);
# the source migrates to the destination (-incoming) over a unix socket in
# DIR. Prints "ok - " / "not ok - " and "#" lines for run_tests.sh.
#
# Checked: the guest starts fio on the source; the migration completes
# (total time and downtime shown) while a fio run is under way; the
# destination's RAM, before it runs, is the source's byte for byte (QEMU's
# TCG now and then loses guest writes across a migration: such an attempt
# is void and made again, 3 at most, see below); the run under way ends on
# the destination; a run under way is stopped for 5 s (stop/cont)
# and ends; every fio run verifies (crc32c) without error; with
# virtio_scsi_rs, every command submitted to each queue completed, none
# twice or unknown (untracked 0), and no reset or abort was needed; rmmod;
# neither QEMU's console shows a kernel report from the driver's loading on.
#
# Environment: VSRS_MIG_SECONDS, how long the guest runs fio (default 120);
# VSRS_MIG_SIZE, what each of its 2 jobs writes a run (default 48M: some
# seconds a run on the test kernel, about as long as the migration; the
# debug kernel is slower, KERNEL=debug makes it 8M). At least 4 runs.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../../../.." && pwd)
. "$here/reports.sh"
drv=$1 kdir=$2 dir=$3
secs=${VSRS_MIG_SECONDS:-120}
# The guests' RAM in MiB: on q35 all of it lies below the PCI hole, so a
# pmemsave from address 0 of this much is every byte of it.
ram_mib=1024
size=${VSRS_MIG_SIZE:-$([ "${KERNEL:-test}" = debug ] && echo 8M || echo 48M)}
case $drv in
rs) ko=$top/virtio_scsi_rs.ko ;;
c) ko=$kdir/drivers/scsi/virtio_scsi.ko ;;
*) echo "migration.sh: driver must be rs or c" >&2; exit 2 ;;
esac
mkdir -p "$dir"
rm -f "$dir"/src.void*.log
src_log=$dir/src.log dst_log=$dir/dst.log

ok() { echo "ok - $*"; }
not_ok() { echo "not ok - $*"; }
check() { # DESC COMMAND...
	local desc=$1
	shift
	if "$@"; then ok "$desc"; else not_ok "$desc"; fi
}
# verdict DESC STATUS: ok when STATUS (of the test just run) is 0.
verdict() { if [ "$2" = 0 ]; then ok "$1"; else not_ok "$1"; fi; }
diag() { sed 's/^/# /'; }

# --- the initramfs ------------------------------------------------------------
root=$dir/root
rm -rf "$root"
mkdir -p "$root"/{bin,dev,proc,sys,tmp}
cp /bin/busybox "$root/bin/busybox"
cp /usr/bin/fio "$root/bin/fio"
for lib in $(ldd /usr/bin/fio | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
	mkdir -p "$root$(dirname "$lib")"
	cp -L "$lib" "$root$lib"
done
cp "$ko" "$root/driver.ko"
cp "$here/migration_init.sh" "$root/init"
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet) >"$dir/initrd.cpio" || {
	not_ok "an initramfs with busybox, fio and the driver"
	exit 0
}
rm -f "$dir/disk.raw"
truncate -s 128M "$dir/disk.raw"

# --- QEMU ---------------------------------------------------------------------
# qemu NAME [OPTIONS...]: one of the two QEMU processes, in the background;
# its serial console goes to DIR/NAME.log, its QMP socket is DIR/NAME.qmp.
qemu() {
	local name=$1
	shift
	rm -f "$dir/$name.qmp" "$dir/$name.log"
	# One TCG thread for both vCPUs: QEMU 7.2's multi-threaded TCG loses
	# guest writes across a migration (the destination's RAM differed from
	# the source's at the switch, in kernel pages, with either driver, in
	# every debug-kernel run; it oopsed on it); a single thread loses them
	# far less often (below; Documentation, "Live migration under I/O").
	qemu-system-x86_64 -name "vsrs-mig-$name" -machine q35 -accel tcg,thread=single -cpu qemu64 -smp 2 -m "${ram_mib}M" \
		-nodefaults -no-user-config -display none -no-reboot \
		-kernel "$kdir/arch/x86/boot/bzImage" -initrd "$dir/initrd.cpio" \
		-append "console=ttyS0 loglevel=7 panic=-1 tsc=unstable vsrs_mig_seconds=$secs vsrs_mig_size=$size" \
		-serial "file:$dir/$name.log" -qmp "unix:$dir/$name.qmp,server=on,wait=off" \
		-device virtio-scsi-pci,id=vs0,num_queues=2 \
		-blockdev "driver=file,filename=$dir/disk.raw,node-name=d0,cache.direct=off" \
		-device scsi-hd,bus=vs0.0,scsi-id=0,lun=0,drive=d0,serial=vsrs-mig \
		"$@" >"$dir/$name.qemu" 2>&1 &
}
# qmp NAME JSON: one QMP command to DIR/NAME.qmp; prints its reply line.
qmp() {
	python3 - "$dir/$1.qmp" "$2" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(30)
s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()
def cmd(c):
    f.write(c + "\n")
    f.flush()
    while True:
        line = f.readline()
        if not line:
            sys.exit(1)
        if "return" in json.loads(line) or "error" in json.loads(line):
            return line.strip()
cmd('{"execute":"qmp_capabilities"}')
print(cmd(sys.argv[2]))
EOF
}
# status NAME: the guest's run state as QMP query-status tells it.
status() { qmp "$1" '{"execute":"query-status"}' | sed -n 's/.*"status": *"\([a-z-]*\)".*/\1/p'; }
# wait_line FILE SECONDS PATTERN: until FILE has a line matching PATTERN.
wait_line() {
	local end=$((SECONDS + $2))
	until grep -aq -E "$3" "$1" 2>/dev/null; do
		[ "$SECONDS" -lt "$end" ] || return 1
		sleep 1
	done
}
# last_started FILE: the number of the fio run that began last in FILE.
last_started() { grep -a -o 'vsrs-mig: fio run [0-9]* started' "$1" | tail -n 1 | awk '{print $4}'; }
stop_all() {
	local p
	for p in $(jobs -p); do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
}
trap stop_all EXIT

# same_ram: the source is stopped for good and the destination has not run:
# their RAM (all $ram_mib MiB, from address 0) must be the same.
same_ram() {
	local n f
	for n in src dst; do
		f=$dir/$n.ram
		qmp "$n" '{"execute":"pmemsave","arguments":{"val":0,"size":'"$((ram_mib << 20))"',"filename":"'"$f"'"}}' |
			grep -q '"return"' || { echo "pmemsave on $n failed" | diag; return 1; }
	done
	cmp -s "$dir/src.ram" "$dir/dst.ram" && return 0
	# Differing bytes per 4 KiB page (guest-physical page number in hex).
	cmp -l "$dir/src.ram" "$dir/dst.ram" | awk '
		{ p = int(($1 - 1) / 4096); if (k == 0 || p != last) { pg[++k] = p; last = p } n[p]++; t++ }
		END { printf "%d bytes differ in %d pages\n", t, k
			for (i = 1; i <= k && i <= 20; i++) printf "page %x: %d bytes\n", pg[i], n[pg[i]] }' | diag
	return 1
}

# migrate_once: boots the source, migrates it during a fio run to a
# destination held by -S and compares their RAM; prints its results.
# Returns 0 when the RAM is the same (the destination, still held, goes on
# below), 1 when it is not, 2 when an earlier step failed.
migrate_once() {
	qemu src
	if ! wait_line "$src_log" 900 'vsrs-mig: fio run 1 started'; then
		not_ok "the guest loads the driver and starts fio on the source"
		tail -n 30 "$src_log" "$dir/src.qemu" | diag
		return 2
	fi
	ok "the guest loads the driver and starts fio on the source"
	grep -a 'vsrs-mig: disk' "$src_log" | diag

	qemu dst -S -incoming "unix:$dir/mig.sock"
	for _ in $(seq 30); do [ -S "$dir/dst.qmp" ] && break; sleep 1; done
	# A second into the second fio run (each takes seconds, the migration
	# about as long), so the migration meets a run in full swing.
	wait_line "$src_log" 300 'vsrs-mig: fio run 2 started'
	sleep 1
	qmp src '{"execute":"migrate","arguments":{"uri":"unix:'"$dir"'/mig.sock"}}' >/dev/null
	local end=$((SECONDS + 300)) st='' info total down ram done_before status
	while [ "$SECONDS" -lt "$end" ]; do
		info=$(qmp src '{"execute":"query-migrate"}')
		st=$(sed -n 's/.*"status": *"\([a-z-]*\)".*/\1/p' <<<"$info")
		case $st in completed | failed | cancelled) break ;; esac
		sleep 1
	done
	total=$(grep -o '"total-time": *[0-9]*' <<<"$info" | grep -o '[0-9]*$')
	down=$(grep -o '"downtime": *[0-9]*' <<<"$info" | grep -o '[0-9]*$')
	ram=$(grep -o '"transferred": *[0-9]*' <<<"$info" | head -n 1 | grep -o '[0-9]*$')
	# The run under way at the switch: the last one begun on the source,
	# which must not have ended there.
	run=$(last_started "$src_log")
	done_before=$(grep -ac "vsrs-mig: fio run $run \(done\|failed\)" "$src_log")
	[ "$st" = completed ] && [ "$done_before" = 0 ]
	verdict "the migration completes (total ${total:-?} ms, downtime ${down:-?} ms, ${ram:-?} bytes of RAM) during fio run $run" $?
	[ "$st" = completed ] || { echo "$info" | diag; return 2; }
	same_ram
	status=$?
	verdict "the destination's RAM is the source's at the switch" $status
	rm -f "$dir/src.ram" "$dir/dst.ram"
	return $status
}

# QEMU 7.2's TCG loses guest writes across a migration now and then, with
# one TCG thread too (2 attempts in 15 on the debug kernel; Documentation, "Live
# migration under I/O"): the destination then runs on RAM the guest never
# wrote, and what breaks there says nothing of the driver. Such an attempt
# is void: its results become "#" lines, its source's console is kept for
# the report check below, and the migration is made again (3 attempts).
for attempt in 1 2 3; do
	migrate_once >"$dir/attempt.tap"
	status=$?
	[ "$status" = 1 ] && [ "$attempt" -lt 3 ] || break
	echo "attempt $attempt void: QEMU did not carry the guest's RAM over; once more" | diag
	diag <"$dir/attempt.tap"
	stop_all
	mv "$src_log" "$dir/src.void$attempt.log"
done
cat "$dir/attempt.tap"
# A step failed, or the third attempt's RAM differed too: what the
# destination would do says nothing more.
[ "$status" = 0 ] || exit 0
[ "$attempt" = 1 ] || echo "$((attempt - 1)) void attempt(s) before this one" | diag
qmp dst '{"execute":"cont"}' >/dev/null
qmp src '{"execute":"quit"}' >/dev/null 2>&1
[ "$(status dst)" = running ]
verdict "the guest runs on the destination" $?
check "fio run $run, begun on the source, ends on the destination" \
	wait_line "$dst_log" 300 "vsrs-mig: fio run $run (done|failed)"

# stop/cont: a run under way, held 5 s.
wait_line "$dst_log" 300 "vsrs-mig: fio run $((run + 1)) started"
sleep 1
run=$(last_started "$dst_log")
qmp dst '{"execute":"stop"}' >/dev/null
sleep 5
paused=$(status dst)
qmp dst '{"execute":"cont"}' >/dev/null
after=$(status dst)
[ "$paused" = paused ] && [ "$after" = running ]
verdict "stop holds the guest ($paused) and cont lets it run ($after)" $?
check "fio run $run, stopped for 5 s, ends" \
	wait_line "$dst_log" 300 "vsrs-mig: fio run $run (done|failed)"

if ! wait_line "$dst_log" $((secs + 600)) 'vsrs-mig: end'; then
	not_ok "the guest ends its runs on the destination"
	tail -n 30 "$dst_log" | diag
	exit 0
fi
for _ in $(seq 60); do [ -z "$(jobs -pr)" ] && break; sleep 1; done
log=$(cat "$src_log" "$dst_log" | tr -d '\r')
grep -a -E 'vsrs-mig: (fio runs|fio run [0-9]+ failed|fio:)' <<<"$log" | diag
read -r runs failed < <(sed -n 's/.*vsrs-mig: fio runs \([0-9]*\) failed \([0-9]*\).*/\1 \2/p' <<<"$log")
[ "${runs:-0}" -ge 3 ] && [ "${failed:-1}" = 0 ]
verdict "${runs:-no} fio runs (2 jobs, crc32c verify) across the migration and the stop: 0 verify errors" $?
if [ "$drv" = rs ]; then
	stats=$(sed -n 's/.*vsrs-mig: stats //p' <<<"$log")
	echo "$stats" | diag
	# Per request queue: submitted == completed, untracked 0; no error
	# handling, no reset.
	queues_even() {
		awk '$1 ~ /^[0-9]+$/ { n++; s += $2; if ($2 != $3 || $7 != 0) bad = 1 }
			END { exit !(n > 0 && s > 0 && !bad) }' <<<"$stats"
	}
	check "every command submitted completed once, none untracked" queues_even
	check "no abort, reset or protocol violation" awk '
		$1 ~ /^(aborts|lun_resets|target_resets|host_resets|broken_queue_resets|protocol_violations)$/ && $2 != 0 { bad = 1 }
		END { exit bad }' <<<"$stats"
fi
check "rmmod" grep -aq 'vsrs-mig: rmmod ok' <<<"$log"
# From the driver's loading on (the boot's own lines name lockdep), on
# this attempt's consoles and on the void attempts' sources, which ran on
# intact RAM until their switch.
after_insmod() { for f in "$@"; do [ -e "$f" ] && tr -d '\r' <"$f" | sed -n '/vsrs-mig: insmod/,$p'; done; }
if report=$(after_insmod "$dir"/src.void*.log <(echo "$log") | kernel_report 1); then
	ok "no kernel report on either console from the driver's loading on"
else
	not_ok "no kernel report on either console from the driver's loading on"
	echo "$report" | diag
fi
