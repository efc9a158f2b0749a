#!/bin/bash
# Build (or reuse) a Rust-enabled guest kernel in the cache outside the repository.
#
#   tools/build-kernel.sh [test|debug|bench]
#   ARCH=arm64 tools/build-kernel.sh [test]
#
# Prints the kernel build directory (a KDIR for out-of-tree modules) as its last
# line. The cache key is kernel package version + flavour + a hash of everything
# that decides the config and the toolchain, so a second run with nothing
# changed reuses the tree, and CI on the same machine does too.
#
# ARCH (default x86_64, the host's) picks the guest architecture. arm64 is
# cross-built with the same LLVM (clang's target comes from the kernel's
# scripts/Makefile.clang, rustc's from arch/arm64/Makefile) for QEMU's virt
# machine: arch/arm64/configs/defconfig and virt.config, then the fragments
# below and kconfig/arm64.config, with every module off but the C driver. Its
# directory is named $KVER-arm64-FLAVOUR-KEY; the arch and arm64.config enter
# its key only, so the x86_64 kernels keep theirs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tools/kernel.env
. "$here/kernel.env"
flavour=${1:-test}
case $flavour in test|debug|bench) ;; *) echo "build-kernel: flavour must be test, debug or bench" >&2; exit 2;; esac
arch=${ARCH:-x86_64}
case $arch in
x86 | x86_64) arch=x86_64 ;;
arm64)
	# Only what make check ARCH=arm64 boots.
	[ "$flavour" = test ] || { echo "build-kernel: ARCH=arm64 has the test flavour only" >&2; exit 2; } ;;
*) echo "build-kernel: ARCH must be x86_64 or arm64" >&2; exit 2 ;;
esac

say() { echo "build-kernel: $*" >&2; }
die() { echo "build-kernel: error: $*" >&2; exit 1; }

mkdir -p "$VSRS_CACHE/dl" "$VSRS_CACHE/src" "$VSRS_CACHE/build"
# The cache-wide lock covers the source download and unpacking only; a build
# holds a lock of its own build directory (below), so a 40-minute bench kernel
# build does not keep anyone from using the cached test kernel meanwhile.
exec 9>"$VSRS_CACHE/.lock"
flock 9

# --- kernel source: Debian's linux-source-$KVER from the testing suite --------
src=$VSRS_CACHE/src/$KPKG
if [ ! -f "$src/.vsrs-extracted" ]; then
	if [ ! -f /etc/apt/sources.list.d/vsrs-$KPKG_SUITE.sources ]; then
		say "adding Debian $KPKG_SUITE to apt at pin priority 50 (download only, no upgrades)"
		cat >/etc/apt/sources.list.d/vsrs-$KPKG_SUITE.sources <<EOF
Types: deb
URIs: http://deb.debian.org/debian
Suites: $KPKG_SUITE
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
		cat >/etc/apt/preferences.d/90-vsrs-$KPKG_SUITE <<EOF
Package: *
Pin: release a=$KPKG_SUITE
Pin-Priority: 50
EOF
		apt-get update -qq
	fi
	deb=$(ls "$VSRS_CACHE"/dl/${KPKG}_*.deb 2>/dev/null | tail -n1 || true)
	if [ -z "$deb" ]; then
		say "downloading $KPKG"
		(cd "$VSRS_CACHE/dl" && apt-get download -qq "$KPKG" 2>/dev/null) || die \
"Debian's $KPKG package is not in the $KPKG_SUITE suite any more.
  Either bump KVER in tools/kernel.env to a linux-source-X.Y that 'apt-cache policy' lists,
  or build against your own Rust-enabled kernel tree: make KDIR=/path/to/built/linux"
		deb=$(ls "$VSRS_CACHE"/dl/${KPKG}_*.deb | tail -n1)
	fi
	say "extracting $(basename "$deb")"
	rm -rf "$src" "$VSRS_CACHE/x"
	dpkg-deb -x "$deb" "$VSRS_CACHE/x"
	tar -C "$VSRS_CACHE/src" -xf "$VSRS_CACHE/x/usr/src/$KPKG.tar.xz"
	rm -rf "$VSRS_CACHE/x"
	basename "$deb" >"$src/.vsrs-extracted"
fi

# --- cache key --------------------------------------------------------------
make_args=(LLVM="$LLVM_SUFFIX" RUSTC="$KRUSTC" HOSTRUSTC="$KRUSTC" BINDGEN="$(command -v bindgen)")
# ARCH goes into the arguments saved for module builds too (.vsrs-make-args).
[ "$arch" = x86_64 ] || make_args=(ARCH="$arch" "${make_args[@]}")
# Arguments for the kernel build only (not for modules built against it).
build_args=()
if [ "$flavour" = debug ]; then
	# KASAN where the driver's memory goes: the SCSI midlayer, the block layer,
	# the virtio core, the Rust crates (rustc refuses to link an instrumented
	# crate against uninstrumented ones: "mixing -Zsanitizer will cause an
	# ABI mismatch") and every out-of-tree module (an M= build does not get
	# this variable, so virtio_scsi_rs is instrumented in full). The rest of
	# the kernel runs uninstrumented: a fully instrumented guest spends more
	# than 5 minutes in udev under TCG before the first command, and loses
	# the command's output and status. Allocation tracking (use after free,
	# double free, redzones checked by instrumented code), lockdep, kmemleak
	# and the other debug options cover the whole kernel as before. See
	# Documentation/virtio_scsi_rs.rst, "The debug kernel".
	build_args+=('KASAN_SANITIZE=$(if $(filter drivers/scsi drivers/scsi/% drivers/virtio drivers/virtio/% block block/% rust rust/%,$(obj)),y,n)')
fi
key=$( {
	cat "$src/.vsrs-extracted"
	echo "$flavour" "${build_args[@]}"
	cat "$here/kconfig/common.config" "$here/kconfig/$flavour.config"
	python3 -c 'import virtme_ng.version as v; print(v.VERSION)'
	"$KRUSTC" --version; "clang$LLVM_SUFFIX" --version | head -n1; bindgen --version
	# Nothing more for x86_64: its keys stay what they were before arm64.
	[ "$arch" = x86_64 ] || { echo "ARCH=$arch"; cat "$here/kconfig/$arch.config"; }
} | sha256sum | cut -c1-12)
if [ "$arch" = x86_64 ]; then
	bdir=$VSRS_CACHE/build/$KVER-$flavour-$key
else
	bdir=$VSRS_CACHE/build/$KVER-$arch-$flavour-$key
fi
flock -u 9
exec 8>"$bdir.lock"
flock 8

if [ -f "$bdir/.vsrs-built" ]; then
	say "reusing cached $flavour kernel $bdir"
	echo "$bdir"
	exit 0
fi

# --- config -----------------------------------------------------------------
mkdir -p "$bdir"
say "configuring $flavour kernel in $bdir"
make -s -C "$src" O="$bdir" "${make_args[@]}" rustavailable >&2 ||
	die "the Rust toolchain is not usable for this kernel (see above); run tools/setup-host.sh"
fragments=("$here/kconfig/common.config" "$here/kconfig/$flavour.config")
if [ "$arch" = x86_64 ]; then
	(cd "$src" && virtme-configkernel --defconfig O="$bdir" "${make_args[@]}" >&2)
	# virtme-configkernel applies its own list after any --custom fragment (it
	# forces SCSI_VIRTIO=y and DWARF debug info on), so our fragments are
	# merged afterwards.
else
	# virtme-configkernel has no use here (the arm64 guest is an initramfs
	# one, not virtme-ng's shared root) and would start from the whole
	# defconfig; virt.config takes every SoC platform out of it.
	make -s -C "$src" O="$bdir" "${make_args[@]}" defconfig >&2
	fragments=("$src/arch/$arch/configs/virt.config" "${fragments[@]}" "$here/kconfig/$arch.config")
fi
(cd "$bdir" && "$src/scripts/kconfig/merge_config.sh" -m -O "$bdir" "$bdir/.config" \
	"${fragments[@]}" >/dev/null)
make -s -C "$src" O="$bdir" "${make_args[@]}" olddefconfig >&2
if [ "$arch" != x86_64 ]; then
	# The defconfig's 240 modules (network PHYs, CAN, crypto, filesystems):
	# the guest loads none but the two drivers, so none is built.
	sed -i -E '/^CONFIG_SCSI_VIRTIO=m$/! s/^(CONFIG_[A-Za-z0-9_]+)=m$/# \1 is not set/' "$bdir/.config"
	make -s -C "$src" O="$bdir" "${make_args[@]}" olddefconfig >&2
fi

required=(RUST MODULES MODULE_UNLOAD SCSI_VIRTIO=m BLK_DEV_SD BLK_DEV_SR CHR_DEV_SG
	CHR_DEV_ST MD BLK_DEV_DM DM_MULTIPATH BLK_DEV_INTEGRITY DEBUG_FS IO_URING PM_DEBUG)
case $flavour in
test) required+=(PROVE_LOCKING DEBUG_ATOMIC_SLEEP DEBUG_KMEMLEAK DETECT_HUNG_TASK) ;;
debug) required+=(KASAN PROVE_LOCKING LOCK_STAT DEBUG_ATOMIC_SLEEP DEBUG_KMEMLEAK DETECT_HUNG_TASK) ;;
esac
# What the arm64 guest boots on (kconfig/arm64.config).
[ "$arch" = arm64 ] && required+=(VIRTIO_PCI PCI_HOST_GENERIC SERIAL_AMBA_PL011_CONSOLE
	BLK_DEV_INITRD DEVTMPFS CPU_LITTLE_ENDIAN)
for opt in "${required[@]}"; do
	name=${opt%%=*}; want=y; [[ $opt == *=* ]] && want=${opt#*=}
	grep -qx "CONFIG_$name=$want" "$bdir/.config" ||
		die "CONFIG_$name=$want did not survive olddefconfig (a dependency is missing); see $bdir/.config"
done

# --- build --------------------------------------------------------------------
say "building (about 20 minutes of CPU on 2 cores); log: $bdir/build.log"
start=$(date +%s)
# arm64: the uncompressed Image QEMU boots and the modules (not the default
# Image.gz and device trees).
targets=()
[ "$arch" = arm64 ] && targets=(Image modules)
if ! make -C "$src" O="$bdir" "${make_args[@]}" "${build_args[@]}" -j"$(nproc)" "${targets[@]}" >"$bdir/build.log" 2>&1; then
	tail -n 40 "$bdir/build.log" >&2
	die "kernel build failed; full log in $bdir/build.log"
fi
printf '%s\n' "${make_args[@]}" CLIPPY_DRIVER="$KCLIPPY" >"$bdir/.vsrs-make-args"
touch "$bdir/.vsrs-built"
say "built in $(( $(date +%s) - start )) s"
echo "$bdir"
