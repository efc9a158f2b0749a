# SPDX-License-Identifier: GPL-2.0
#
# virtio_scsi_rs: out-of-tree build and the project's commands.
#
#   make            build virtio_scsi_rs.ko (against the cached test kernel,
#                   built on first use; or KDIR=/path/to/built/linux;
#                   ARCH=arm64: against the cached arm64 kernel)
#   make run        boot a guest with virtio-scsi disks, load the module, show
#                   what it bound, do I/O
#   make check      host unit tests + guest tests; ends with "N passed, N failed"
#                   (KERNEL=debug: on the KASAN/lockdep/kmemleak kernel;
#                   CASES='resets|tmf': only the guest cases matching that regex;
#                   ARCH=arm64: the module built for a cross-built arm64 kernel
#                   and its discovery and data case in an arm64 TCG guest)
#   make CLIPPY=1   build with the kernel's clippy lints
#   make fmt-check  rustfmt over every Rust file
#   make fuzz       libFuzzer over the decoders of device answers (nightly
#                   Rust; FUZZ_SECONDS, default 300)
#   make fuzz-guest the guest fuzz case as a soak on the debug kernel
#                   (FUZZ_GUEST_MINUTES, default 120; FUZZ_GUEST_C=1 also
#                   the C driver's, =only just it; tools/fuzz-guest.sh)
#   make fuzz-shrink SEED=N MATCH=REGEX  one seed's lies narrowed down to
#                   a few that still lead to REGEX (tools/fuzz-shrink.sh)
#   make rust-analyzer  rust-project.json for an editor: the kernel's crates
#                   and this module's (KDIR as for make)
#   make patch      a git format-patch series adding drivers/scsi/virtio_scsi_rs/
#                   to a kernel source tree (KDIR, or the cached kernel's
#                   source) in PATCH_OUT (default patches/; tools/patch-series.sh)
#   make dkms-install  add, build and install the module with DKMS for the
#                   running kernel (DKMS_KVER=release, KDIR=its tree for
#                   another; DKMS_ROOT=/staging installs under that root)
#   make bench      fio side by side: C virtio_scsi, virtio_scsi_rs, virtio-blk,
#                   on the non-debug bench kernel (built on first use); table
#                   and plot in bench/results/<date>/. BENCH_ARGS passes options
#                   to tools/bench/bench.sh (--rounds N, --runtime S, ...)
#
# Kbuild reads ./Kbuild, not this file, when it descends into this directory.

KERNEL ?= test
export KERNEL

# Prints "KDIR<TAB>extra make args". With KDIR given, no kernel set-up at all.
KDIR_CMD = $(if $(KDIR),printf '%s\t\n' '$(abspath $(KDIR))',tools/kdir.sh $(KERNEL))

# The Kbuild invocation, with $$kdir and $$kargs set by the recipe.
KBUILD = $(MAKE) -C "$$kdir" M="$(CURDIR)" CONFIG_VIRTIO_SCSI_RS=m $$kargs

define with_kdir
set -e; line=$$($(KDIR_CMD)); kdir=$${line%%	*}; kargs=$${line#*	};
endef

.PHONY: all modules clean run check fmt-check bench fuzz fuzz-guest fuzz-shrink rust-analyzer dkms-install patch

all: modules

modules:
	@$(with_kdir) $(KBUILD) modules

clean:
	@$(with_kdir) $(KBUILD) clean
	rm -rf protocol/target protocol/fuzz/target

run: modules
	@$(with_kdir) VSRS_KDIR="$$kdir" tools/run-demo.sh

check:
	@tools/check.sh

# The kernel's scripts/generate_rust_analyzer.py, through Kbuild (it takes
# external modules), run on this directory: it finds the crate root by its
# object in ./Kbuild. Checked by tools/rust-project-check.py in make check.
rust-analyzer:
	@$(with_kdir) $(KBUILD) rust-analyzer

fmt-check:
	rustfmt --check --edition 2021 --config-path $(CURDIR)/.rustfmt.toml \
		$$(git ls-files '*.rs')

bench:
	@tools/bench/bench.sh $(BENCH_ARGS)

# What builds the module, and nothing else (no build outputs, no host tools).
MODULE_SOURCES = Kbuild Makefile \
	$(wildcard *.rs driver/*.rs protocol/*.rs) \
	bindings/bindgen_parameters bindings/mod.rs $(wildcard bindings/*.[ch])

# DKMS (dkms.conf): the sources copied to /usr/src/virtio_scsi_rs-VERSION
# (replacing an earlier copy and registration of the same version), then dkms
# add, build, install for DKMS_KVER. The kernel's tree is DKMS's default
# (/lib/modules/KVER/build) unless KDIR names it. DKMS_ROOT=DIR keeps it all
# under DIR (DIR/usr/src, DIR/var/lib/dkms, DIR/lib/modules: make check's
# staging tree, a modprobe -d DIR root), depmod run on that tree.
DKMS_VERSION = $(shell sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' dkms.conf)
DKMS_KVER ?= $(shell uname -r)
DKMS_SRC = $(DKMS_ROOT)/usr/src/virtio_scsi_rs-$(DKMS_VERSION)
DKMS = dkms $(if $(DKMS_ROOT),--sourcetree $(DKMS_ROOT)/usr/src --dkmstree $(DKMS_ROOT)/var/lib/dkms \
	--installtree $(DKMS_ROOT)/lib/modules --no-depmod)
DKMS_MOD = -m virtio_scsi_rs -v $(DKMS_VERSION)
DKMS_KERNEL = -k $(DKMS_KVER) $(if $(KDIR),--kernelsourcedir $(abspath $(KDIR)))

dkms-install:
	$(DKMS) remove $(DKMS_MOD) --all >/dev/null 2>&1 || true
	rm -rf $(DKMS_SRC)
	mkdir -p $(DKMS_SRC) $(if $(DKMS_ROOT),$(DKMS_ROOT)/var/lib/dkms $(DKMS_ROOT)/lib/modules/$(DKMS_KVER))
	cp --parents $(MODULE_SOURCES) dkms.conf $(DKMS_SRC)/
	$(DKMS) add $(DKMS_MOD)
	$(DKMS) build $(DKMS_MOD) $(DKMS_KERNEL)
	$(DKMS) install $(DKMS_MOD) $(DKMS_KERNEL)
	$(if $(DKMS_ROOT),depmod -b $(DKMS_ROOT) $(DKMS_KVER))

fuzz:
	@tools/fuzz.sh $(FUZZ_SECONDS)

patch:
	@$(with_kdir) tools/patch-series.sh "$$kdir" "$(or $(PATCH_OUT),patches)" $(MODULE_SOURCES)

fuzz-guest:
	@KERNEL=$(if $(filter command line environment,$(origin KERNEL)),$(KERNEL),debug) tools/fuzz-guest.sh

fuzz-shrink:
	@tools/fuzz-shrink.sh
