#!/bin/bash
# Makes sure the host tools and the cached kernel of flavour $1 (test|bench)
# exist, then prints "KDIR<TAB>make arguments" for building modules against it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/setup-host.sh" >&2
kdir=$("$here/build-kernel.sh" "${1:-test}" | tail -n1)
printf '%s\t%s\n' "$kdir" "$(tr '\n' ' ' <"$kdir/.vsrs-make-args")"
