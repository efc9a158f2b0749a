#!/bin/bash
# make fuzz: coverage-guided fuzzing (libFuzzer through cargo-fuzz) of every
# decoder of what the device hands back, with the checks of
# protocol/fuzz_checks.rs. Needs a nightly Rust toolchain (rustup); installs
# cargo-fuzz from the crate registry if it is missing.
#
#   tools/fuzz.sh [SECONDS]   default 300
#
# Findings go to protocol/fuzz/artifacts/device_answers/ (a crashing input
# each); cargo fuzz run device_answers FILE replays one. The corpus it grows
# stays in protocol/fuzz/corpus/ for the next run. The same checks run on
# pseudo-random inputs in cargo test (make check), on stable Rust.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-300}
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
	echo "fuzz: no nightly Rust toolchain (libFuzzer's instrumentation needs one): rustup toolchain install nightly" >&2
	exit 1
fi
command -v cargo-fuzz >/dev/null || cargo install --quiet --locked cargo-fuzz
cd "$top/protocol/fuzz"
exec cargo +nightly fuzz run device_answers -- -max_total_time="$seconds"
