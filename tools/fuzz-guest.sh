#!/bin/bash
# make fuzz-guest: the fuzz case ("testdev fuzz virtio_scsi_rs", issue 20) as
# a soak: FUZZ_GUEST_MINUTES (default 120) of generated lies on the debug
# kernel (KASAN, lockdep, kmemleak), in seeds of FUZZ_GUEST_SEED_SECONDS
# (default 600) from FUZZ_GUEST_FIRST_SEED (default 1) on, in one guest.
# FUZZ_GUEST_C=1 runs the C driver's soak (report only) first, as make
# check's VSRS_FUZZ_C; FUZZ_GUEST_C=only runs only it (beside a soak of
# virtio_scsi_rs started on its own). KERNEL=test takes the test kernel
# instead.
#
# Writes to FUZZ_GUEST_OUT (default /tmp/vsrs-fuzz-guest.DATE): soak.tap (the
# TAP stream), logs/ (each guest's output, console and test device log) and
# summary.txt (the seeds' numbers summed: commands, lies by kind, TMFs, fio
# runs, the hard disk's rounds, the driver's counters), which is printed.
# Ends with "N passed, N failed"; exits non-zero on any failure.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
cd "$top" || exit 1

kernel=${KERNEL:-debug}
minutes=${FUZZ_GUEST_MINUTES:-120}
per_seed=${FUZZ_GUEST_SEED_SECONDS:-600}
first=${FUZZ_GUEST_FIRST_SEED:-1}
out=${FUZZ_GUEST_OUT:-/tmp/vsrs-fuzz-guest.$(date +%Y%m%d-%H%M)}
nseeds=$(((minutes * 60 + per_seed - 1) / per_seed))
seeds=$(seq "$first" $((first + nseeds - 1)) | tr '\n' ' ')
seeds=${seeds% }

line=$("$here/kdir.sh" "$kernel") || { echo "fuzz-guest: kernel set-up failed"; echo "0 passed, 1 failed"; exit 1; }
kdir=${line%%$'\t'*}
# shellcheck disable=SC2086 # the kernel's make arguments are words
make -s KDIR="${line%%$'\t'*}" ${line#*$'\t'} modules || { echo "fuzz-guest: module build failed"; echo "0 passed, 1 failed"; exit 1; }
mkdir -p "$out/logs"
echo "fuzz-guest: $kernel kernel $kdir; seeds $seeds, $per_seed s each; results in $out"

cases='^testdev fuzz virtio_scsi_rs$'
case ${FUZZ_GUEST_C:-} in
'') ;;
only) cases='^testdev fuzz C driver$' ;;
*) cases='^testdev fuzz (C driver|virtio_scsi_rs)$' ;;
esac
# The guest's whole budget: the lies, then per seed the drain (up to 600 s)
# and its checks, and the boot.
KERNEL=$kernel VSRS_KDIR=$kdir VSRS_KEEP_LOGS=$out/logs VSRS_FUZZ_C=${FUZZ_GUEST_C:-} \
	VSRS_FUZZ_SEEDS=$seeds VSRS_FUZZ_SECONDS=$per_seed \
	VSRS_GUEST_TIMEOUT=$((nseeds * (per_seed + 900) + 1200)) \
	tools/testing/selftests/virtio_scsi_rs/run_tests.sh "$cases" 2>&1 | tee "$out/soak.tap"

# summary: per driver, the "# seed N: ..." lines summed.
awk '
/^# testdev fuzz / {
	drv = $0; sub(/^# testdev fuzz /, "", drv); sub(/:.*/, "", drv)
	if (!(drv in seen)) { seen[drv] = 1; order[++nd] = drv }
}
/^# seed [0-9]+: [0-9]+ lies in / {
	s[drv]++; lies[drv] += $4; cmds[drv] += $7; tmfs[drv] += $10
	line = $0; sub(/.*by kind: /, "", line); n = split(line, kv, /, /)
	for (i = 1; i <= n; i++) { split(kv[i], p, ":"); kind[drv, p[1]] += p[2]; kinds[p[1]] = 1 }
}
match($0, /seed [0-9]+: [0-9]+ fio runs on/) { split(substr($0, RSTART, RLENGTH), w, " "); fio[drv] += w[3] }
/^# seed [0-9]+: .* \(hard\) rounds: / {
	line = $0; sub(/.*rounds: /, "", line); n = split(line, kv, /, /)
	for (i = 1; i <= n; i++) { split(kv[i], p, " "); round[drv, p[2]] += p[1]; rounds[p[2]] = 1 }
}
/^# seed [0-9]+: driver counters: / {
	for (i = 6; i < NF; i += 2) { c = $i; v = $(i + 1); sub(/^\+/, "", v); ctr[drv, c] += v; ctrs[c] = 1 }
}
# most: NAME COUNT pairs of the non-zero entries of a sum, most first.
function most(names, sums, drv,    n, i, j, k, v, t, out) {
	n = 0
	for (k in names) if (sums[drv, k]) { n++; key[n] = k; val[n] = sums[drv, k] }
	for (i = 2; i <= n; i++)
		for (j = i; j > 1 && val[j] > val[j - 1]; j--) {
			t = val[j]; val[j] = val[j - 1]; val[j - 1] = t
			t = key[j]; key[j] = key[j - 1]; key[j - 1] = t
		}
	out = ""
	for (i = 1; i <= n; i++) out = out sprintf("%s %s %d", i > 1 ? "," : "", key[i], val[i])
	return out
}
END {
	for (d = 1; d <= nd; d++) {
		drv = order[d]
		printf "%s: %d seeds, %d lies in %d commands and %d TMFs; %d fio runs on the soft disk\n", drv, s[drv], lies[drv], cmds[drv], tmfs[drv], fio[drv]
		print "  lies by kind:" most(kinds, kind, drv)
		print "  hard disk rounds:" most(rounds, round, drv)
		print "  driver counters:" most(ctrs, ctr, drv)
	}
}' "$out/soak.tap" | tee "$out/summary.txt"

p=$(grep -c '^ok ' "$out/soak.tap")
f=$(grep -c '^not ok ' "$out/soak.tap")
[ "$p" -gt 0 ] || f=$((f + 1))
echo "$p passed, $f failed"
[ "$f" -eq 0 ]
