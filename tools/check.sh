#!/bin/bash
# make check: set-up if needed, host unit tests, a lint-clean module build,
# guest selftests. Ends with one line "N passed, N failed"; exits non-zero on
# any failure.
#
# KDIR=/path/to/built/linux uses that tree instead of the cached test kernel.
# CASES=REGEX runs only the guest cases whose name matches (run_tests.sh FILTER).
# ARCH=arm64: the arm64 kernel (cross-built, cached like the others), the
# module built for it with the same lint and warning checks, and the arm64
# guest case (selftests' arm64.sh) instead of the x86_64 suite.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
cd "$top" || exit 1
# shellcheck source=tools/kernel.env
. "$here/kernel.env"

case ${ARCH:-x86_64} in
x86 | x86_64) arch=x86_64 ;;
arm64) arch=arm64 ;;
*) echo "make check: ARCH must be x86_64 or arm64"; echo "0 passed, 1 failed"; exit 1 ;;
esac

pass=0 fail=0
tally() { # PASSED FAILED
	pass=$((pass + $1)); fail=$((fail + $2))
}
# tally_some PASSED FAILED: as tally, and no pass at all (the test did not
# run to its end) is a failure more.
tally_some() {
	local f=$2
	[ "$1" -gt 0 ] || f=$((f + 1))
	tally "$1" "$f"
}
# tally_tap FILE: FILE's TAP result lines.
tally_tap() {
	tally_some "$(grep -c '^ok ' "$1")" "$(grep -c '^not ok ' "$1")"
}
summary() {
	echo
	echo "$pass passed, $fail failed"
	[ "$fail" -eq 0 ]
}
step() { echo; echo "==== $*"; }

step "set-up and kernel"
start=$(date +%s)
if [ -n "${KDIR:-}" ]; then
	"$here/setup-host.sh" || exit 1
	kdir=$(cd "$KDIR" && pwd) kargs=""
else
	line=$("$here/kdir.sh" "${KERNEL:-test}") || { echo "set-up failed"; echo "0 passed, 1 failed"; exit 1; }
	kdir=${line%%$'\t'*} kargs=${line#*$'\t'}
fi
echo "kernel: $kdir ($(( $(date +%s) - start )) s)"

# cargo_tests DIR: cargo test in DIR, tallied.
cargo_tests() {
	local out p f
	step "host unit tests (cargo test, $1/)"
	out=$(cd "$1" && CARGO_TARGET_DIR=$(cargo_target_dir .) nice cargo test --quiet 2>&1)
	echo "$out" | tail -n 30
	read -r p f < <(echo "$out" | sed -n 's/^test result: .*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\1 \2/p' |
		awk '{p += $1; f += $2} END {print p + 0, f + 0}')
	tally_some "$p" "$f"
}
# The module against $kdir with clippy, no warnings, rustfmt; stops make
# check when it does not build.
module_build() {
	local build status
	step "module build with the kernel's clippy lints, rustfmt ($arch)"
	# shellcheck disable=SC2086 # kargs are make words
	make -s -C "$kdir" M="$top" CONFIG_VIRTIO_SCSI_RS=m $kargs clean >/dev/null 2>&1
	# shellcheck disable=SC2086
	build=$(make -C "$kdir" M="$top" CONFIG_VIRTIO_SCSI_RS=m $kargs CLIPPY=1 modules 2>&1)
	status=$?
	echo "$build" | grep -vE '^\s*(CC|LD|RUSTC|CLIPPY|BINDGEN|MODPOST|BTF|make)' | tail -n 60
	if [ $status -eq 0 ] && [ -f virtio_scsi_rs.ko ]; then
		echo "ok: module built"; tally 1 0
	else
		echo "not ok: module build failed"; tally 0 1
		summary
		exit 1
	fi
	if echo "$build" | grep -qE '^(warning|error)'; then
		echo "not ok: the build has warnings"; tally 0 1
	else
		echo "ok: no compiler or clippy warnings"; tally 1 0
	fi
	if make -s fmt-check; then
		echo "ok: rustfmt clean"; tally 1 0
	else
		echo "not ok: rustfmt would change the files above"; tally 0 1
	fi
}

if [ "$arch" = arm64 ]; then
	module_build
	step "arm64 guest (tools/testing/selftests/virtio_scsi_rs/arm64.sh)"
	dir=$(mktemp -d /tmp/vsrs-arm64.XXXXXX) tap=$(mktemp)
	tools/testing/selftests/virtio_scsi_rs/arm64.sh "$kdir" "$top/virtio_scsi_rs.ko" "$dir" 2>&1 | tee "$tap"
	# Its disks and console log stay for a look when a check failed.
	if [ "${PIPESTATUS[0]}" = 0 ]; then rm -rf "$dir"; else echo "# the guest's files: $dir"; fi
	tally_tap "$tap"
	rm -f "$tap"
	summary
	exit
fi

cargo_tests protocol
cargo_tests tools/testdev
module_build

# The bench smoke (a guest of its own) runs beside the host steps below,
# which keep about one CPU busy; its output and verdict come after the
# guest selftests. A run of some guest cases only (CASES) leaves it out.
bench_pid=
if [ -z "${CASES:-}" ]; then
	bench_out=$(mktemp -d /tmp/vsrs-bench-smoke.XXXXXX)
	VSRS_KDIR=$kdir VSRS_BENCH_KO=$top/virtio_scsi_rs.ko tools/bench/bench.sh --smoke --out "$bench_out" \
		>"$bench_out.log" 2>&1 &
	bench_pid=$!
fi

# tally_lines WHAT COMMAND...: runs COMMAND, shows its output and tallies its
# "ok: " and "not ok: " lines; a failure that printed no "not ok" (or nothing
# at all) still counts.
tally_lines() {
	local what=$1 out status p f
	shift
	out=$(mktemp)
	"$@" 2>&1 | tee "$out"
	status=${PIPESTATUS[0]}
	p=$(grep -c '^ok: ' "$out")
	f=$(grep -c '^not ok: ' "$out")
	rm -f "$out"
	if { [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; } || [ $((p + f)) -eq 0 ]; then
		echo "not ok: $what (exit status $status)"
		f=$((f + 1))
	fi
	tally "$p" "$f"
}

step "compile-fail checks (tests/compile_fail, tools/compile-fail.sh)"
tally_lines "compile-fail checks" "$here/compile-fail.sh" "$kdir" "$kargs"

step "rust-analyzer project (make rust-analyzer, tools/rust-project-check.py)"
rust_project() {
	# shellcheck disable=SC2086 # kargs are make words
	make -s KDIR="$kdir" $kargs rust-analyzer && "$here/rust-project-check.py" rust-project.json
}
tally_lines "make rust-analyzer" rust_project

step "in-tree patch series (make patch, tools/patch-series.sh)"
# The series applied to a copy of the cached source (hard links: patch
# writes new files, the cache keeps its own): commit style, checkpatch with
# no error, the Kconfig entry taken by olddefconfig, and the module built
# from the tree's drivers/scsi/virtio_scsi_rs/ with no warning.
in_tree() {
	local t src p n=0 bad out
	t=$(mktemp -d /tmp/vsrs-intree.XXXXXX)
	# The real directory, not the build's link to it (cp -a would copy the
	# link, and the series would go into the cache).
	src=$(cd "$kdir/source" 2>/dev/null && pwd -P) || src=$(cd "$kdir" && pwd -P)
	# shellcheck disable=SC2086 # kargs are make words
	if ! make -s KDIR="$kdir" PATCH_OUT="$t/patches" patch >"$t/log" 2>&1; then
		cat "$t/log"; echo "not ok: make patch"; rm -rf "$t"; return
	fi
	echo "ok: make patch: $(find "$t/patches" -name '0*.patch' | wc -l) files (cover letter and patches)"
	bad=$(grep -h '^Subject: ' "$t"/patches/0*.patch | grep -v -c -E '^Subject: \[PATCH [0-9]+/[0-9]+\] scsi: virtio_scsi_rs: .{1,60}$')
	# Message bodies (up to the diffstat) wrapped at 75 columns (a
	# sign-off is as long as its address).
	for p in "$t"/patches/0*.patch; do
		n=$((n + $(awk '/^$/ && !body {body = 1; next} /^---$/ {exit} body && length > 75 && !/^Signed-off-by: /' "$p" | wc -l)))
	done
	[ "$bad" = 0 ] && [ "$n" = 0 ] && echo "ok: subjects \"scsi: virtio_scsi_rs: ...\", bodies within 75 columns" ||
		echo "not ok: patch style: $bad subjects not \"[PATCH n/m] scsi: virtio_scsi_rs: ...\" (60 columns), $n body lines over 75"
	out=$(perl "$src/scripts/checkpatch.pl" --no-tree --terse "$t"/patches/0[0-9][0-9][1-9]-*.patch 2>&1)
	echo "$out" | grep -E 'WARNING|ERROR' | sed 's/^/# checkpatch: /' | head -n 20
	if echo "$out" | grep -q ': ERROR:'; then echo "not ok: checkpatch reports errors"; else echo "ok: checkpatch: no error"; fi
	cp -al "$src" "$t/linux"
	for p in "$t"/patches/0[0-9][0-9][1-9]-*.patch; do
		patch -p1 -d "$t/linux" --quiet <"$p" || { echo "not ok: ${p##*/} does not apply"; rm -rf "$t"; return; }
	done
	if grep -q VIRTIO_SCSI_RS "$src/drivers/scsi/Kconfig"; then
		echo "not ok: the series went into the cached source $src"; rm -rf "$t"; return
	fi
	echo "ok: the series applies to $(make -s -C "$src" kernelversion)"
	mkdir "$t/o"
	{ cat "$kdir/.config"; echo CONFIG_VIRTIO_SCSI_RS=m; } >"$t/o/.config"
	# shellcheck disable=SC2086
	if make -s -C "$t/linux" O="$t/o" $kargs olddefconfig >"$t/log" 2>&1 &&
		grep -q '^CONFIG_VIRTIO_SCSI_RS=m$' "$t/o/.config"; then
		echo "ok: Kconfig: olddefconfig keeps CONFIG_VIRTIO_SCSI_RS=m"
	else
		tail -n 20 "$t/log"; echo "not ok: Kconfig: CONFIG_VIRTIO_SCSI_RS=m not taken"
	fi
	# shellcheck disable=SC2086
	out=$(nice make -C "$kdir" M="$t/linux/drivers/scsi/virtio_scsi_rs" $kargs CONFIG_VIRTIO_SCSI_RS=m modules 2>&1)
	if [ -f "$t/linux/drivers/scsi/virtio_scsi_rs/virtio_scsi_rs.ko" ] && ! grep -qE '^(warning|error)|warning:' <<<"$out"; then
		echo "ok: drivers/scsi/virtio_scsi_rs of the patched tree builds with no warning"
	else
		echo "$out" | tail -n 30; echo "not ok: drivers/scsi/virtio_scsi_rs of the patched tree does not build cleanly"
	fi
	rm -rf "$t"
}
tally_lines "in-tree patch series" in_tree

step "kernel report filter (tools/testing/selftests/virtio_scsi_rs/reports_test.sh)"
out=$(tools/testing/selftests/virtio_scsi_rs/reports_test.sh 2>&1)
echo "$out"
read -r p f < <(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' <<<"$out")
# No summary line (the test did not run to its end) is a failure.
tally_some "${p:-0}" "${f:-0}"

step "guest selftests (tools/testing/selftests/virtio_scsi_rs)"
tap=$(mktemp)
VSRS_KDIR=$kdir tools/testing/selftests/virtio_scsi_rs/run_tests.sh "${CASES:-}" 2>&1 | tee "$tap"
tally_tap "$tap"
rm -f "$tap"

if [ -n "$bench_pid" ]; then
	step "make bench smoke (one round of a tiny matrix; no timing asserted; run beside the host steps)"
	wait "$bench_pid"
	status=$?
	tail -n 30 "$bench_out.log"
	rm -f "$bench_out.log"
	# Every driver ran: virtio-blk, C and Rust columns of the first row and
	# of the passed-through iSCSI disk's, and the host's iscsi-perf column.
	row='io_uring qd1 j1 \| [0-9]+ \| [0-9]+ \| [0-9]+ \|'
	if [ "$status" = 0 ] && [ -s "$bench_out/results.md" ] && [ -s "$bench_out/iops.png" ] &&
		grep -qE "^\\| null randread 4k $row" "$bench_out/results.md" &&
		grep -qE "^\\| iscsi randread 4k $row" "$bench_out/results.md" &&
		grep -qE '^\| iscsi randread 4k io_uring qd1 j1 \| [0-9]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \|$' "$bench_out/results.md"; then
		echo "ok: bench smoke: every driver ran on the null and the iSCSI disk, the host reference too, table and plot written"; tally 1 0
		rm -rf "$bench_out"
	else
		echo "not ok: bench smoke (exit status $status; output in $bench_out)"; tally 0 1
	fi
fi

summary
