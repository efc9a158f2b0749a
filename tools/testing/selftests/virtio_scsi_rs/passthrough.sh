#!/bin/bash
# Guest test: a real SCSI target passed through (issue 16). The host's tgtd
# (tools/tgt-target.sh) serves a disk (LUN 1), a tape drive (LUN 2) and a DVD
# writer with a blank DVD+R (LUN 3); QEMU reaches them over iSCSI (libiscsi)
# and puts them on controller vs0 (disk and DVD scsi-block, tape
# scsi-generic), and the disk once more on vs1 through a second iSCSI session
# with another initiator name: a second initiator for the reservations.
#
# Environment:
#   VSRS_DRIVER    c: the in-tree C driver; else virtio_scsi_rs
#   VSRS_ISO       an ISO image the host made, to burn onto the DVD+R
#   VSRS_PATTERN   4 MiB of random data are written to the disk and saved
#                  here, for the host to compare with the target's file
cd "$(dirname "$0")" && . ./lib.sh

begin "passthrough $MOD"
check "load $MOD" load

# H:C:T:L of the driver's SCSI devices whose INQUIRY product is $1.
by_model() {
	local addr m
	vsrs_devices | while read -r addr _; do
		read -r m <"/sys/bus/scsi/devices/$addr/model" && [ "$m" = "$1" ] && echo "$addr"
	done
	return 0
}
# node ADDR CLASS: the /dev node of SCSI device ADDR in CLASS (block,
# scsi_generic).
node() {
	local n=(/sys/bus/scsi/devices/"$1"/"$2"/*)
	[ -e "${n[0]}" ] && echo "/dev/${n[0]##*/}"
}
# nst ADDR: the non-rewinding st node of tape ADDR.
nst() {
	local n
	for n in /sys/bus/scsi/devices/"$1"/scsi_tape/nst*; do
		[[ ${n##*/} =~ ^nst[0-9]+$ ]] && { echo "/dev/${n##*/}"; return 0; }
	done
	return 1
}
# All four: the disk on both hosts (with their block devices), the tape (its
# sg node and st's) and the DVD writer (sr).
found() {
	local d t
	[ "$(by_model VIRTUAL-DISK | wc -l)" = 2 ] || return 1
	for d in $(by_model VIRTUAL-DISK); do node "$d" block >/dev/null || return 1; done
	t=$(by_model VIRTUAL-TAPE)
	node "$t" scsi_generic >/dev/null && nst "$t" >/dev/null && node "$(by_model VIRTUAL-CDROM)" block >/dev/null
}
check "IET VIRTUAL-DISK twice, VIRTUAL-TAPE and VIRTUAL-CDROM appear" wait_for 120 found
lsscsi -g | diag
tape_addr=$(by_model VIRTUAL-TAPE)
tape=$(node "$tape_addr" scsi_generic)
nst=$(nst "$tape_addr")
sr=$(node "$(by_model VIRTUAL-CDROM)" block)
# The first path is the disk on the tape's host (vs0), the second the other.
for d in $(by_model VIRTUAL-DISK); do
	if [ "${d%%:*}" = "${tape_addr%%:*}" ]; then da=$(node "$d" block); else db=$(node "$d" block); fi
done
echo "disk: $da (first initiator), $db (second); tape: $tape and $nst; DVD writer: $sr" | diag

# --- disk ----------------------------------------------------------------------
write_pattern() {
	head -c 4M /dev/urandom >"$VSRS_PATTERN" &&
		dd if="$VSRS_PATTERN" of="$da" bs=1M oflag=direct status=none
}
check "4 MiB of random data written to $da" write_pattern
check "... read back byte for byte from $da" bash -c \
	"dd if='$da' bs=1M count=4 iflag=direct status=none | cmp - '$VSRS_PATTERN'"
check "... and through the second session, $db" bash -c \
	"dd if='$db' bs=1M count=4 iflag=direct status=none | cmp - '$VSRS_PATTERN'"

# --- tape through sg, raw CDBs -------------------------------------------------
# tape [SG_RAW-OPTION VALUE]... CDB...: one CDB to the tape; its status,
# sense and data counts in /tmp/tape.out.
tape() {
	local opts=()
	while [ "${1:0:1}" = - ]; do opts+=("$1" "$2"); shift 2; done
	sg_raw -v "${opts[@]}" "$tape" "$@" >/tmp/tape.out 2>&1
}
# rw6 OPCODE BYTES [SG_RAW-OPTION VALUE]...: a READ(6) or WRITE(6) of one
# variable-length record of BYTES (FIXED 0: the transfer length, bytes 2-4
# of the CDB, counts bytes).
rw6() {
	local op=$1 len=$2 hi mid lo
	shift 2
	printf -v hi %02x $((len >> 16))
	printf -v mid %02x $((len >> 8 & 255))
	printf -v lo %02x $((len & 255))
	tape "$@" "$op" 00 "$hi" "$mid" "$lo" 00
}
block_limits() {
	tape -r 6 -o /tmp/limits 05 00 00 00 00 00 || { cat /tmp/tape.out; return 1; }
	read -r _ a b c d e <<<"$(od -An -tu1 /tmp/limits)"
	echo "READ BLOCK LIMITS: maximum $((a << 16 | b << 8 | c)), minimum $((d << 8 | e))" >&9
	[ $((a << 16 | b << 8 | c)) -ge 65536 ]
}
# The first command of the tape's session gets the power-on UNIT ATTENTION
# (st has not opened the tape yet: sg hands it to the caller); the second
# must find it ready.
tur() {
	tape 00 00 00 00 00 00 && return 0
	echo "# first TEST UNIT READY: $(grep -m1 'Sense key' /tmp/tape.out)" >&9
	tape 00 00 00 00 00 00 || { cat /tmp/tape.out; return 1; }
}
check "TEST UNIT READY on $tape: ready" tur
check "READ BLOCK LIMITS on $tape: variable records of 64 KiB allowed" block_limits
check "REWIND before writing" tape 01 00 00 00 00 00
sizes=(1 512 10000 65536)
for i in "${!sizes[@]}"; do
	head -c "${sizes[i]}" /dev/urandom >"/tmp/rec$i"
	check "WRITE(6) a variable record of ${sizes[i]} bytes" \
		rw6 0a "${sizes[i]}" -s "${sizes[i]}" -i "/tmp/rec$i"
done
check "WRITE FILEMARKS(6) one filemark" tape 10 00 00 00 01 00
check "REWIND before reading" tape 01 00 00 00 00 00
for i in "${!sizes[@]}"; do
	rm -f "/tmp/read$i"
	rw6 08 "${sizes[i]}" -r "${sizes[i]}" -o "/tmp/read$i"
	check "READ(6) the ${sizes[i]}-byte record back byte for byte" cmp "/tmp/rec$i" "/tmp/read$i"
done
# The READ that meets the filemark: CHECK CONDITION, fixed sense with the
# FILEMARK bit, sense key NO SENSE, ASC/ASCQ 00/01 (filemark detected), and
# VALID with the information field = the 512 bytes not read. (Not the
# residual: QEMU's SG_IO over libiscsi reports none, so sg_raw counts the
# 512 bytes as received, with either driver.)
rw6 08 512 -r 512 -o /tmp/fm
diag </tmp/tape.out
mapfile -t s < <(sed -n '/Raw sense data/,/^$/p' /tmp/tape.out | tail -n +2 | grep -oE '\b[0-9a-f]{2}\b')
check "READ(6) at the filemark: CHECK CONDITION" grep -q 'SCSI Status: Check Condition' /tmp/tape.out
expect_eq "... sense: fixed, FILEMARK, NO SENSE, 00/01 filemark detected, 512 not read" \
	"${s[0]:-} ${s[2]:-} ${s[3]:-}${s[4]:-}${s[5]:-}${s[6]:-} ${s[12]:-}/${s[13]:-}" "f0 80 00000200 00/01"
check "REWIND at the end" tape 01 00 00 00 00 00

# --- tape through st: mt and tar on the non-rewinding node ---------------------
# File 0 a tar archive of a small tree, file 1 1 MiB of 64 KiB variable
# records; st writes the filemark after each when the writer closes.
# file_number: the file number mt status reports.
file_number() { mt -f "$nst" status | sed -n 's/.*File number=\([0-9-]*\).*/\1/p'; }
rm -rf /tmp/tree /tmp/untar && mkdir -p /tmp/tree/sub /tmp/untar
head -c 100000 /dev/urandom >/tmp/tree/a
head -c 1 /dev/urandom >/tmp/tree/sub/b
head -c 300000 /dev/urandom >/tmp/tree/sub/c
head -c 1M /dev/urandom >/tmp/blob
check "mt rewind, setblk 0 (variable records) on $nst" \
	bash -c "mt -f '$nst' rewind && mt -f '$nst' setblk 0"
check "tar writes a tree to $nst (file 0)" tar -cf "$nst" -b 128 -C /tmp/tree .
check "dd writes 1 MiB in 64 KiB records (file 1)" \
	dd if=/tmp/blob of="$nst" bs=64k status=none
expect_eq "mt status: two files written, at file 2" "$(file_number)" 2
check "mt rewind" mt -f "$nst" rewind
check "tar extracts file 0 from $nst" tar -xf "$nst" -b 128 -C /tmp/untar
check "... the tree byte for byte" diff -r /tmp/tree /tmp/untar
check "mt rewind, fsf 1" bash -c "mt -f '$nst' rewind && mt -f '$nst' fsf 1"
expect_eq "mt status: at file 1" "$(file_number)" 1
check "file 1 reads back byte for byte, up to its filemark" \
	bash -c "dd if='$nst' bs=64k status=none | cmp - /tmp/blob"
expect_eq "mt status: past the filemark, at file 2" "$(file_number)" 2
check "mt rewind at the end" mt -f "$nst" rewind
expect_eq "mt status: at file 0" "$(file_number)" 0

# --- persistent reservations ---------------------------------------------------
pr() { sg_persist "$@" 2>&1; }
# has PATTERN COMMAND...: COMMAND's output matches PATTERN (whatever its
# status: a command that fails on purpose is checked by what it said).
has() {
	local p=$1 out; shift
	out=$("$@")
	grep -qE "$p" <<<"$out" || { echo "$out"; return 1; }
}
# write10 DEV FILE: FILE (one block) written at LBA 16384 with a raw
# WRITE(10); sg_raw's status and what it said. The holder writes zeros, the
# second initiator a block of B's.
head -c 512 /dev/zero >/tmp/zeros
tr '\0' B </tmp/zeros >/tmp/bees
write10() { sg_raw -s 512 -i "$2" "$1" 2a 00 00 00 40 00 00 00 01 00 2>&1; }
# block_is DEV FILE: LBA 16384 of DEV holds FILE.
block_is() { dd if="$1" bs=512 skip=16384 count=1 iflag=direct status=none | cmp - "$2"; }
check "PR register key 0xa1 through $da" pr --out --register --param-sark=0xa1 "$da"
check "PR read keys through $db: 0xa1" has '^ +0xa1$' pr --in --read-keys "$db"
check "PR reserve, Write Exclusive, through $da" pr --out --reserve --param-rk=0xa1 --prout-type=1 "$da"
check "PR read reservation: 0xa1 holds Write Exclusive" \
	has 'type: Write Exclusive' pr --in --read-reservation "$da"
check "the holder writes" write10 "$da" /tmp/zeros
check "the second initiator's WRITE(10) gets RESERVATION CONFLICT" \
	has 'Reservation Conflict' write10 "$db" /tmp/bees
check "... and does not reach the medium" block_is "$da" /tmp/zeros
# The midlayer maps the status itself to BLK_STS_RESV_CONFLICT (EBADE):
# a driver that reported another error would give EIO.
resv_write() { dd if=/dev/zero of="$db" bs=4k count=1 seek=4096 oflag=direct 2>&1; }
check "... and a block-layer write there fails with EBADE (Invalid exchange)" \
	has 'Invalid exchange' resv_write
check "... while it still reads" dd if="$db" of=/dev/null bs=4k count=1 skip=4096 iflag=direct status=none
check "PR release through $da" pr --out --release --param-rk=0xa1 --prout-type=1 "$da"
check "PR read reservation: none" has 'NO reservation held' pr --in --read-reservation "$da"
check "the second initiator writes again" write10 "$db" /tmp/bees
check "... and the first reads what it wrote" block_is "$da" /tmp/bees
check "PR unregister 0xa1" pr --out --register --param-rk=0xa1 --param-sark=0 "$da"
check "PR read keys: none" has 'NO registered reservation keys' pr --in --read-keys "$da"

# --- DVD burning ---------------------------------------------------------------
# Last: a read that fails near the end of a disc (the midlayer's or udev's,
# of the new medium) can bring Linux 7.2's sr_done lockdep report (reports.sh),
# after which lockdep checks nothing more in this boot.
# READ DISC INFORMATION: byte 2, bits 0-1 is the disc status (0 blank,
# 1 appendable, 2 complete).
disc_status() {
	sg_raw -r 34 -o /tmp/discinfo "$sr" 51 00 00 00 00 00 00 00 22 00 >/dev/null 2>&1 &&
		echo $(($(od -An -tu1 -j2 -N1 /tmp/discinfo) & 3))
}
expect_eq "READ DISC INFORMATION on $sr: a blank disc" "$(disc_status)" 0
iso_blocks=$(($(stat -c %s "$VSRS_ISO" || echo 0) / 2048))
check "growisofs burns the host's ISO ($iso_blocks blocks) onto $sr" \
	growisofs -dvd-compat -Z "$sr=$VSRS_ISO"
expect_eq "READ DISC INFORMATION on $sr: a complete disc" "$(disc_status)" 2
last_lba=$(sg_readcap "$sr" 2>&1 | sed -n 's/.*Last LBA=\([0-9]*\).*/\1/p')
check "READ CAPACITY on $sr: the ISO fits (last LBA ${last_lba:-none})" \
	test "${last_lba:-0}" -ge "$((iso_blocks - 1))"
check "the ISO reads back byte for byte from $sr" bash -c \
	"dd if='$sr' bs=2048 count=$iso_blocks iflag=direct status=none | cmp - '$VSRS_ISO'"

check "rmmod $MOD" unload
check "kmemleak: no leak" kmemleak_clean
check "dmesg: no WARN, BUG, KASAN, lockdep or hung-task report" no_kernel_reports
