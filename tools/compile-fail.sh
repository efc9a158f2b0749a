#!/bin/bash
# Compile-fail checks: each tests/compile_fail/NAME.rs is a misuse of the
# module's safe abstractions that must not compile. The snippet is compiled as
# the module `compile_fail` of the crate (the cfg'ed include at the end of
# virtio_scsi_rs_main.rs; Kbuild adds `--cfg vsrs_compile_fail` when make is given
# VSRS_COMPILE_FAIL=/abs/snippet), with the kernel crate and flags of a normal
# build. A snippet passes when the build fails with an error that names the
# snippet's file and matches its `expect` regex.
#
#   tools/compile-fail.sh KDIR "MAKE ARGS" [SNIPPET.rs...]   (default: all)
#   tools/compile-fail.sh --table [SNIPPET.rs...]   RST table from the headers
#
# Snippet header, its first comment lines (other comment lines may be there):
#   // misuse: <what a careless driver would do>
#   // rule: <the type rule that stops it>
#   // expect: <extended regex the compiler's error must match>
#
# Builds run in a copy of the working tree (tracked and untracked, not ignored
# files), so the tree's own build outputs are untouched. First a canary snippet
# (valid Rust) must compile and be seen in the object's dependencies: if not,
# the harness or the tree is broken and every snippet is "not ok". Prints
# "ok: compile-fail NAME: MISUSE" or "not ok: compile-fail NAME: REASON" with
# "# " diagnostics; exits non-zero if anything is not ok.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)

# header FILE KEY: the value of "// KEY: value" in FILE's leading comment lines.
header() {
	awk -v key="$2: " '!/^\/\//{exit} {sub(/^\/\/ ?/, "")} index($0, key) == 1 {print substr($0, length(key) + 1); exit}' "$1"
}

snippets=()
# pick_snippets [FILE...]: the named snippets (absolute paths), or all of them.
pick_snippets() {
	local f
	if [ $# -eq 0 ]; then
		shopt -s nullglob
		set -- "$top"/tests/compile_fail/*.rs
		shopt -u nullglob
	fi
	for f in "$@"; do
		[ -f "$f" ] || { echo "compile-fail: no such snippet: $f" >&2; return 1; }
		snippets+=("$(cd "$(dirname "$f")" && pwd)/$(basename "$f")")
	done
}

# rst TEXT: `code` as RST literals (an escaped space before a word character
# right after one, as RST wants).
rst() {
	perl -pe 's/`([^`]+)`(\w?)/"``$1``" . ($2 eq "" ? "" : "\\ $2")/ge' <<<"$1"
}

if [ "${1:-}" = --table ]; then
	shift
	pick_snippets "$@" || exit 1
	printf '.. list-table::\n   :header-rows: 1\n\n   * - snippet\n     - misuse\n     - rule\n'
	status=0
	for f in "${snippets[@]}"; do
		misuse=$(header "$f" misuse) rule=$(header "$f" rule)
		if [ -z "$misuse" ] || [ -z "$rule" ]; then
			echo "compile-fail: $f: no misuse or rule header" >&2
			status=1
		fi
		# shellcheck disable=SC2016 # RST literals, not expansions
		printf '   * - ``%s``\n     - %s\n     - %s\n' "$(basename "$f" .rs)" "$(rst "$misuse")" "$(rst "$rule")"
	done
	exit $status
fi

if [ $# -lt 2 ]; then
	echo "usage: $0 KDIR \"MAKE ARGS\" [SNIPPET.rs...] | $0 --table [SNIPPET.rs...]" >&2
	exit 2
fi
kdir=$1 kargs=$2
shift 2
pick_snippets "$@" || exit 1

tmp=$(mktemp -d /tmp/vsrs-compile-fail.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT
tree=$tmp/tree
mkdir "$tree"

# The working tree as it is: tracked files still present, untracked ones not
# ignored.
if ! (cd "$top" && git ls-files -z -c -o --exclude-standard |
	while IFS= read -r -d '' f; do
		if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
	done | tar -c --null -T - -f - | tar -x -C "$tree" -f -); then
	echo "not ok: compile-fail: cannot copy the working tree of $top"
	exit 1
fi

obj=$tree/virtio_scsi_rs_main.o
# build SNIPPET LOG: compile the crate object with SNIPPET; make's status.
build() {
	rm -f "$obj"
	# shellcheck disable=SC2086 # kargs are make words
	nice make -C "$kdir" M="$tree" CONFIG_VIRTIO_SCSI_RS=m $kargs \
		VSRS_COMPILE_FAIL="$1" virtio_scsi_rs_main.o >"$2" 2>&1
}

# error_blocks LOG: rustc's error diagnostics in LOG, each ended by a NUL.
# A block runs from its "error..." line to the next diagnostic or make line.
error_blocks() {
	awk '
		function flush() { if (block != "") printf "%s%c", block, 0; block = "" }
		/^(error|warning)(\[E[0-9]+\])?:/ { flush(); inerr = /^error/ }
		/^make(\[[0-9]+\])?: |^  [A-Z]+ / { flush(); inerr = 0 }
		inerr { block = block $0 "\n" }
		END { flush() }' "$1"
}

# diag LOG: the compiler's errors (or, if none, the end of the log) as "# ".
diag() {
	local errs
	errs=$(error_blocks "$1" | tr '\0' '\n')
	if [ -n "$errs" ]; then
		echo "$errs" | head -n 40
	else
		tail -n 20 "$1"
	fi | sed 's/^/# /'
}

# now_ds: the time in tenths of a second; secs DS: DS as seconds ("12.3").
now_ds() { echo $(($(date +%s%N) / 100000000)); }
secs() { printf '%d.%d' $(($1 / 10)) $(($1 % 10)); }

pass=0 fail=0
ok() { echo "ok: compile-fail $*"; pass=$((pass + 1)); }
notok() { echo "not ok: compile-fail $*"; fail=$((fail + 1)); }

# The canary: valid Rust, must compile, and the object must depend on it (the
# cfg and the path reached rustc, so the snippets below are really compiled).
canary=$tmp/canary.rs
printf '%s\n' '// The compile-fail harness canary: valid Rust, must compile.' 'fn _canary() {}' >"$canary"
start=$(now_ds)
build "$canary" "$tmp/canary.log"
status=$?
canary_s=$(secs $(($(now_ds) - start)))
if [ $status -eq 0 ] && grep -qF "$canary" "$tree/.virtio_scsi_rs_main.o.cmd" 2>/dev/null; then
	ok "canary: a valid snippet compiles into the crate (${canary_s} s, with bindgen)"
	canary_ok=1
else
	notok "canary: a valid snippet does not compile into the crate: harness or tree broken"
	if [ $status -eq 0 ]; then
		echo "# it built, but the object does not depend on it: the snippet was not compiled in"
	else
		echo "# the build failed (make status $status):"
	fi
	diag "$tmp/canary.log"
	canary_ok=0
fi

start_all=$(now_ds)
for f in "${snippets[@]}"; do
	name=$(basename "$f" .rs)
	misuse=$(header "$f" misuse) rule=$(header "$f" rule) expect=$(header "$f" expect)
	if [ -z "$misuse" ] || [ -z "$rule" ] || [ -z "$expect" ]; then
		notok "$name: header lacks a misuse, rule or expect line"
		continue
	fi
	if [ $canary_ok = 0 ]; then
		notok "$name: not run (the canary failed)"
		continue
	fi
	log=$tmp/$name.log
	start=$(now_ds)
	build "$f" "$log"
	status=$?
	echo "# $name: $(secs $(($(now_ds) - start))) s"
	if [ $status -eq 0 ]; then
		notok "$name: compiled"
		continue
	fi
	# An error that names the snippet's file and matches the expect regex.
	matched=0
	while IFS= read -r -d '' block; do
		if grep -qF -- "$f" <<<"$block" && grep -qE -- "$expect" <<<"$block"; then
			matched=1
			break
		fi
	done < <(error_blocks "$log")
	if [ $matched = 1 ]; then
		ok "$name: $misuse"
	else
		notok "$name: failed for another reason (expected /$expect/ in an error naming $f)"
		diag "$log"
	fi
done
n=${#snippets[@]}
if [ $canary_ok = 1 ] && [ "$n" -gt 0 ]; then
	total=$(($(now_ds) - start_all))
	echo "# $n snippet(s) in $(secs "$total") s, $(secs $((total / n))) s each"
fi
[ $fail -eq 0 ]
