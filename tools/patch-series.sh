#!/bin/bash
# make patch KDIR=/path/to/linux-7.2-source [PATCH_OUT=DIR]: the module as a
# git format-patch series that adds drivers/scsi/virtio_scsi_rs/ to that
# kernel tree (issue 19), with a cover letter:
#
#   1. the virtio-scsi wire format (protocol/)
#   2. bindings and C helpers (bindings/)
#   3. the SCSI host and virtio wrappers (the other top-level .rs files)
#   4. the driver, its Kbuild and Kconfig, wired into drivers/scsi
#
# Each patch builds: the first three add files nothing builds yet. Apply with
# `git am DIR/*.patch` in a git tree (or patch -p1 in order); then
# CONFIG_VIRTIO_SCSI_RS=m. make check applies the series to a copy of the
# cached source and builds the result (tools/check.sh).
#
#   tools/patch-series.sh SRC OUT FILE...   FILE...: the module's sources,
#                                           relative to the project
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
src=${1:?kernel source tree}
out=${2:?output directory}
shift 2
die() { echo "patch: $*" >&2; exit 1; }
# A kernel build directory (O=) names its source.
[ -e "$src/source" ] && src=$(cd "$src/source" && pwd -P)
[ -f "$src/drivers/scsi/Kconfig" ] && [ -f "$src/drivers/scsi/Makefile" ] ||
	die "$src is not a kernel source tree (no drivers/scsi/Kconfig)"
grep -q '^config SCSI_VIRTIO$' "$src/drivers/scsi/Kconfig" || die "$src/drivers/scsi/Kconfig has no SCSI_VIRTIO"
grep -q '^obj-$(CONFIG_SCSI_VIRTIO)' "$src/drivers/scsi/Makefile" || die "$src/drivers/scsi/Makefile has no SCSI_VIRTIO line"
grep -q VIRTIO_SCSI_RS "$src/drivers/scsi/Kconfig" && die "$src already has virtio_scsi_rs"

work=$(mktemp -d /tmp/vsrs-patch.XXXXXX)
trap 'rm -rf "$work"' EXIT
name=$(git -C "$top" config user.name || echo "virtio_scsi_rs developers")
email=$(git -C "$top" config user.email || echo "virtio-scsi-rs@localhost")
git -C "$work" init -q
git -C "$work" config user.name "$name"
git -C "$work" config user.email "$email"
mkdir -p "$work/drivers/scsi"
cp "$src/drivers/scsi/Kconfig" "$src/drivers/scsi/Makefile" "$work/drivers/scsi/"
git -C "$work" add -A
git -C "$work" commit -q -m "base: drivers/scsi of $(make -s -C "$src" kernelversion 2>/dev/null || echo the tree)"
base=$(git -C "$work" rev-parse HEAD)
dst=drivers/scsi/virtio_scsi_rs

# commit SUBJECT BODY FILE...: the files copied under $dst, one commit.
commit() {
	local subject=$1 body=$2 f
	shift 2
	for f in "$@"; do
		mkdir -p "$work/$dst/$(dirname "$f")"
		cp "$top/$f" "$work/$dst/$f"
	done
	git -C "$work" add -A
	printf '%s\n\n%s\n\nSigned-off-by: %s <%s>\n' "$subject" "$body" "$name" "$email" |
		git -C "$work" commit -q -F -
}

# The module's sources by concept; the project's Makefile is for out-of-tree
# builds only (Kbuild is the tree's).
protocol=() bindings=() wrappers=() driver=(Kconfig)
for f in "$@"; do
	case $f in
	Makefile) ;;
	protocol/*) protocol+=("$f") ;;
	bindings/*) bindings+=("$f") ;;
	driver/* | virtio_scsi_rs_main.rs | Kbuild) driver+=("$f") ;;
	*.rs) wrappers+=("$f") ;;
	*) driver+=("$f") ;;
	esac
done
[ ${#protocol[@]} -gt 0 ] && [ ${#bindings[@]} -gt 0 ] && [ ${#wrappers[@]} -gt 0 ] ||
	die "missing sources (protocol, bindings or wrappers): $*"

commit "scsi: virtio_scsi_rs: add the virtio-scsi wire format" \
"The layouts and values of the virtio-scsi device (virtio spec 1.3,
section 5.6) and the decoders of everything the device hands back: a
response header, a TMF or AN answer, an event, the config space. Each
decoder checks what it reads (used length, response code, status,
sense length, residual, LUN addressing) and says why an answer is
malformed, so that the driver never trusts the device. No kernel code:
the same files build as a host crate for unit tests and fuzzing." \
	"${protocol[@]}"

commit "scsi: virtio_scsi_rs: add bindings and C helpers" \
"The bindgen input for what the driver reaches of the SCSI midlayer,
blk-mq and the virtio core, and the few C helpers for inline functions
and macros bindgen cannot see. Only the wrappers of the next patch use
them." \
	"${bindings[@]}"

commit "scsi: virtio_scsi_rs: add SCSI host and virtio wrappers" \
"Safe wrappers, shaped so that they could move to rust/kernel: a SCSI
host template and its callbacks (nothing virtio in it), virtqueues with
typed tokens and buffer ownership, DMA-safe byte buffers, an irq-safe
spin lock and work items. Preconditions that types cannot carry are
unsafe functions with their safety contract." \
	"${wrappers[@]}"

commit "scsi: virtio_scsi_rs: add a virtio-scsi driver in Rust" \
"A driver for the virtio-scsi device (virtio device id 8) with the
features of virtio_scsi.c: one blk-mq hardware queue per request
virtqueue, poll queues, TMF aborts and resets on the control queue,
hotplug, unplug, parameter and media change events, T10 PI, suspend and
resume. Beyond it: every value the device hands back is validated and a
malformed answer fails its command alone, a virtqueue the device breaks
is recovered by a device reset, task management waits are bounded and
escalate, and counters per queue are in debugfs.

It builds as drivers/scsi/virtio_scsi_rs with CONFIG_VIRTIO_SCSI_RS
(depends on RUST, VIRTIO and SCSI)." \
	"${driver[@]}"
# The wiring, in the same commit: the source line after SCSI_VIRTIO's
# block, the object line after its object.
awk '{ print } /^config SCSI_VIRTIO$/ { inblock = 1 }
	inblock && /^$/ { print "source \"drivers/scsi/virtio_scsi_rs/Kconfig\"\n"; inblock = 0 }' \
	"$work/drivers/scsi/Kconfig" >"$work/Kconfig.new"
mv "$work/Kconfig.new" "$work/drivers/scsi/Kconfig"
awk '{ print } /^obj-\$\(CONFIG_SCSI_VIRTIO\)/ { print "obj-$(CONFIG_VIRTIO_SCSI_RS)\t+= virtio_scsi_rs/" }' \
	"$work/drivers/scsi/Makefile" >"$work/Makefile.new"
mv "$work/Makefile.new" "$work/drivers/scsi/Makefile"
grep -q 'virtio_scsi_rs/Kconfig' "$work/drivers/scsi/Kconfig" || die "Kconfig: no place for the source line"
git -C "$work" add -A
git -C "$work" commit -q --amend --no-edit

mkdir -p "$out"
rm -f "$out"/*.patch
git -C "$work" format-patch -q --cover-letter -o "$(cd "$out" && pwd)" "$base"..HEAD
cover=$(ls "$out"/0000-*.patch)
python3 - "$cover" <<'EOF'
import sys
p = sys.argv[1]
s = open(p).read()
s = s.replace("*** SUBJECT HERE ***", "scsi: virtio_scsi_rs: a virtio-scsi driver in Rust")
s = s.replace("*** BLURB HERE ***", """\
A guest driver for the virtio-scsi device, written in Rust: the features
of drivers/scsi/virtio_scsi.c, and a guest that need not trust its host
(every byte the device hands back is checked; a broken virtqueue is
recovered; task management is bounded). Tested in QEMU guests against
QEMU's emulated targets, a vhost-user test device that lies on purpose,
and real SCSI targets through iSCSI passthrough (disk, tape, DVD burning,
persistent reservations, multipath).""")
open(p, "w").write(s)
EOF
ls "$out"
