#!/bin/bash
# Install what building and testing virtio_scsi_rs needs on a Debian 12 host.
# Idempotent: each step checks first and does nothing when already satisfied.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tools/kernel.env
. "$here/kernel.env"

say() { echo "setup: $*"; }

DEBS=(
	build-essential flex bison bc cpio kmod libelf-dev libssl-dev dwarves rsync lz4
	# make dkms-install (and its check in the guest selftests)
	dkms
	rustc-web rust-web-src rustfmt-web rust-web-clippy
	"libclang${LLVM_SUFFIX}-dev" "clang${LLVM_SUFFIX}" "lld${LLVM_SUFFIX}" "llvm${LLVM_SUFFIX}"
	qemu-system-x86 qemu-utils udev fio sg3-utils lsscsi busybox-static python3-pip
	python3-matplotlib
	# A real SCSI target for the passthrough tests (tgtd over iSCSI on
	# loopback, reached by QEMU's libiscsi driver), what the guest burns and
	# tapes with, and iscsi-perf for the host's own reference numbers.
	tgt qemu-block-extra libiscsi-bin dvd+rw-tools genisoimage mt-st
	# The multipath case: dm-multipath maps built with dmsetup in the guest,
	# fio's JSON read there with jq.
	dmsetup jq
)

# ARCH=arm64 (make check ARCH=arm64) boots an arm64 guest: QEMU's aarch64
# system emulator, and an arm64 busybox for its initramfs (below). An x86_64
# set-up installs neither.
arch=${ARCH:-x86_64}
[ "$arch" = arm64 ] && DEBS+=(qemu-system-arm)

missing=()
for p in "${DEBS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	say "installing Debian packages: ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$(bindgen --version 2>/dev/null)" != "bindgen $BINDGEN_VERSION" ]; then
	say "installing bindgen-cli $BINDGEN_VERSION from the crate registry"
	cargo install --quiet --locked bindgen-cli --version "$BINDGEN_VERSION"
fi

if ! python3 -c "import virtme_ng.version as v, sys; sys.exit(v.VERSION != '$VIRTME_NG_VERSION')" 2>/dev/null; then
	say "installing virtme-ng $VIRTME_NG_VERSION from the Python package index"
	pip=(python3 -m pip install -q --root-user-action=ignore "virtme-ng==$VIRTME_NG_VERSION")
	# Debian's own python3 refuses pip installs outside a venv (PEP 668).
	"${pip[@]}" 2>/dev/null || "${pip[@]}" --break-system-packages
fi
# Debian's busybox-static for arm64, downloaded (not installed) and kept in
# the cache as $VSRS_CACHE/arm64/busybox. apt fetches arm64 packages only once
# dpkg has the architecture among its foreign ones.
if [ "$arch" = arm64 ] && [ ! -x "$VSRS_CACHE/arm64/busybox" ]; then
	if ! dpkg --print-foreign-architectures | grep -qx arm64; then
		say "adding arm64 to dpkg's foreign architectures (for apt-get download busybox-static:arm64)"
		dpkg --add-architecture arm64
		apt-get update -qq
	fi
	say "downloading busybox-static:arm64 for the arm64 guest's initramfs"
	mkdir -p "$VSRS_CACHE/dl" "$VSRS_CACHE/arm64"
	(cd "$VSRS_CACHE/dl" && apt-get download -qq busybox-static:arm64 2>/dev/null) ||
		{ echo "setup: error: apt-get download busybox-static:arm64 failed" >&2; exit 1; }
	x=$(mktemp -d)
	# shellcheck disable=SC2012 # Debian file names: no newlines
	dpkg-deb -x "$(ls "$VSRS_CACHE"/dl/busybox-static_*_arm64.deb | tail -n1)" "$x"
	cp "$x/bin/busybox" "$VSRS_CACHE/arm64/busybox.tmp"
	mv "$VSRS_CACHE/arm64/busybox.tmp" "$VSRS_CACHE/arm64/busybox"
	rm -rf "$x"
fi
say "host tools ready"
