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
say "host tools ready"
