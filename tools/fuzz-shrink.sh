#!/bin/bash
# make fuzz-shrink: one fuzz seed's lies narrowed down, in one guest, to a
# few that still lead to a finding (issue 20; the guest side is
# tools/testing/selftests/virtio_scsi_rs/fuzz_shrink.py).
#
#   make fuzz-shrink SEED=N MATCH=REGEX [TRIAL_SECONDS=30] [TRIALS=30] [WEIGHTS=KIND=W,...]
#
# MATCH is matched against each trial's kernel log and its failed checks.
# The result line gives the seed and the sequence numbers of the lies left:
# with the same weights, VSRS_FUZZ_SEEDS=N VSRS_FUZZ_ONLY="..." runs them
# again (testdev_fuzz.sh; run_tests.sh's "testdev fuzz reproducer" cases).
# KERNEL=debug for the debug kernel (default: the test kernel). Logs go to
# FUZZ_SHRINK_OUT (default /tmp/vsrs-fuzz-shrink.DATE).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.." || exit 1
: "${SEED:?SEED=N: the fuzz seed}" "${MATCH:?MATCH=REGEX: the finding}"
kernel=${KERNEL:-test}
seconds=${TRIAL_SECONDS:-30} trials=${TRIALS:-30}
out=${FUZZ_SHRINK_OUT:-/tmp/vsrs-fuzz-shrink.$(date +%Y%m%d-%H%M)}
line=$("$here/kdir.sh" "$kernel") || { echo "fuzz-shrink: kernel set-up failed"; exit 1; }
# shellcheck disable=SC2086 # the kernel's make arguments are words
make -s KDIR="${line%%$'\t'*}" ${line#*$'\t'} modules || { echo "fuzz-shrink: module build failed"; exit 1; }
mkdir -p "$out"
# A trial: the boot's share aside, its lies, the drain and checks (about 2
# minutes); the confirmation's 3 more.
KERNEL=$kernel VSRS_KDIR=${line%%$'\t'*} VSRS_KEEP_LOGS=$out \
	VSRS_SHRINK_SEED=$SEED VSRS_SHRINK_MATCH=$MATCH VSRS_SHRINK_SECONDS=$seconds \
	VSRS_SHRINK_TRIALS=$trials VSRS_FUZZ_WEIGHTS=${WEIGHTS:-} \
	VSRS_GUEST_TIMEOUT=$(((trials + 4) * (seconds + 180) + 600)) \
	tools/testing/selftests/virtio_scsi_rs/run_tests.sh '^testdev fuzz shrink$' | tee "$out/shrink.tap"
grep -q '^ok .*shrink: ' "$out/shrink.tap"
