#!/bin/bash
# Guest test: a selftest as the kernel's kselftest runner runs it. The
# run_kselftest.sh of an installed copy (VSRS_KSFT: run_tests.sh installs it
# from a copy of the kernel's tools/testing/selftests) runs VSRS_KSFT_TEST
# (COLLECTION:TEST) with this environment. The test's own KTAP results (the
# runner indents them: "# ok N DESC") become result lines here, and so does
# the runner's verdict, which must be a pass (not a skip).
cd "$(dirname "$0")" && . ./lib.sh

# The runner writes the test's output to /dev/stdout, which in a virtme-ng
# guest is the console port itself, not this script's output: per-test logs
# (-p) keep it in a file of its own, DIR/TEST. No timeout of the runner's
# (-o 0): a TCG guest on a loaded host can take longer than the settings
# file allows a real machine; run_tests.sh bounds the guest as for any test.
logs=$(mktemp -d)
verdict=$("${VSRS_KSFT:?VSRS_KSFT must name an installed kselftest}/run_kselftest.sh" \
	-p "$logs" -o 0 -t "$VSRS_KSFT_TEST" 2>&1)
status=$?
diag <<<"$verdict"
# Printed, not ok()/not_ok(): the test wrote their copies to the kernel log.
while IFS= read -r line; do
	case $line in
	"# ok "[0-9]*) line=${line#"# ok "}; echo "ok - ${line#* }" ;;
	"# not ok "[0-9]*) line=${line#"# not ok "}; echo "not ok - ${line#* }" ;;
	"#"*) echo "$line" ;;
	esac
done <"$logs/${VSRS_KSFT_TEST#*:}"
expect_eq "run_kselftest.sh -t $VSRS_KSFT_TEST: a pass, exit status 0" \
	"$(grep -E '^(not )?ok 1 ' <<<"$verdict"), status $status" \
	"ok 1 selftests: ${VSRS_KSFT_TEST%%:*}: ${VSRS_KSFT_TEST#*:}, status 0"
rm -rf "$logs"
