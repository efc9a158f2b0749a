#!/usr/bin/env python3
"""Instructions per I/O by function, from the pcprof plugin's counts.

    tools/bench/pcprof.py OUT SYSTEM_MAP [--insns FUNCTION]   (Markdown on stdout)

OUT is a make bench --profile results directory: raw/profile-G.jsonl (a line
per window: driver, row, I/Os, the file of the modules' symbols then) and
raw/pcprof-G.txt or .txt.xz (the plugin's "WINDOW ADDRESS COUNT" lines) for each guest
G. Each address is the function whose symbol (System.map for the kernel, the
window's /proc/kallsyms lines for modules) is the last at or below it. For
each row: every function that ran at least once per 100 I/Os with either
driver, C's and Rust's instructions per I/O and the difference, largest
differences first, with calls per I/O (runs of the function's first
instruction), then the totals.

--insns FUNCTION (a substring of the demangled name) lists that function's
instructions instead: address, offset from the first one that ran (its
entry, when it was called: llvm-objdump's offsets), and per I/O for each
driver.
"""
import bisect
import collections
import json
import lzma
import os
import subprocess
import sys


def symbols(lines):
    """[(address, name)] of the text symbols in System.map or kallsyms lines."""
    out = []
    for line in lines:
        f = line.split()
        if len(f) >= 3 and f[1] in "tTwW":
            out.append((int(f[0], 16), f[2]))
    return out


def demangle(names):
    """{name: demangled} (Rust v0 and C++ names; C names stay)."""
    names = sorted(names)
    r = subprocess.run(["llvm-cxxfilt-19"], input="\n".join(names), capture_output=True, text=True, check=True)
    return dict(zip(names, r.stdout.splitlines()))


class Window:
    def __init__(self, meta):
        self.driver = meta["driver"]
        self.row = meta["row"]
        self.ios = meta["ios"]
        self.kallsyms = meta["kallsyms"]
        self.pcs = collections.Counter()


def load(out):
    windows = []  # [Window], every guest's
    for name in sorted(os.listdir(os.path.join(out, "raw"))):
        if not (name.startswith("profile-") and name.endswith(".jsonl")):
            continue
        g = name[len("profile-"):-len(".jsonl")]
        ws = [Window(json.loads(line)) for line in open(os.path.join(out, "raw", name))]
        counts = os.path.join(out, "raw", f"pcprof-{g}.txt")
        # Committed results keep it xz-compressed.
        lines = open(counts) if os.path.exists(counts) else lzma.open(counts + ".xz", "rt")
        for line in lines:
            w, pc, n = line.split()
            w = int(w)
            if w >= len(ws):
                sys.exit(f"pcprof: {counts} has window {w}, {name} only {len(ws)}")
            ws[w].pcs[int(pc, 16)] += int(n)
        windows += ws
    if not windows:
        sys.exit(f"pcprof: no raw/profile-*.jsonl in {out}")
    return windows


def by_function(out, kernel, w):
    """{function: instructions} of window w, {function: {address: count}}
    and {function: calls} (runs of its first instruction)."""
    syms = sorted(kernel + symbols(open(os.path.join(out, "raw", w.kallsyms))))
    starts = [a for a, _ in syms]
    funcs = collections.Counter()
    insns = collections.defaultdict(collections.Counter)
    calls = collections.Counter()
    for pc, n in w.pcs.items():
        i = bisect.bisect_right(starts, pc) - 1
        f = syms[i][1] if i >= 0 else "?"
        funcs[f] += n
        insns[f][pc] += n
        if i >= 0 and pc == starts[i]:
            calls[f] += n
    return funcs, insns, calls


def main():
    if len(sys.argv) not in (3, 5) or (len(sys.argv) == 5 and sys.argv[3] != "--insns"):
        sys.exit(__doc__)
    out, sysmap = sys.argv[1], sys.argv[2]
    pick = sys.argv[4] if len(sys.argv) == 5 else None
    kernel = symbols(open(sysmap))
    windows = load(out)
    rows = collections.defaultdict(dict)  # row: {driver: (Window, funcs, insns, calls)}
    for w in windows:
        rows[w.row][w.driver] = (w,) + by_function(out, kernel, w)
    names = demangle({f for r in rows.values() for _, funcs, _, _ in r.values() for f in funcs})
    print("# Instructions per I/O by function (make bench --profile, tools/bench/pcprof.py)\n")
    print("Every guest kernel instruction between the window's two syncs, counted by QEMU's")
    print("pcprof plugin, divided by the window's I/Os (fio's own start and end included).\n")
    for row, d in rows.items():
        if "c" not in d or "rust" not in d:
            print(f"## {row}\n\nnot both drivers: {sorted(d)}\n")
            continue
        (wc, fc, ic, cc), (wr, fr, ir, cr) = d["c"], d["rust"]
        print(f"## {row} ({wc.ios} I/Os per driver)\n")
        if pick:
            for f in sorted(set(fc) | set(fr)):
                if pick not in names[f]:
                    continue
                print(f"### {names[f]}\n\n| address | offset | C/IO | Rust/IO |\n|---|---|---|---|")
                base = min(set(ic[f]) | set(ir[f]))
                for pc in sorted(set(ic[f]) | set(ir[f])):
                    print(f"| {pc:x} | {pc - base:#x} | {ic[f][pc] / wc.ios:.2f} | {ir[f][pc] / wr.ios:.2f} |")
                print()
            continue
        print("| function | C/IO | Rust/IO | Rust-C | calls/IO C | Rust |\n|---|---|---|---|---|---|")
        per = {f: (fc[f] / wc.ios, fr[f] / wr.ios) for f in set(fc) | set(fr)}
        shown = [f for f, (c, r) in per.items() if max(c, r) >= 0.01]
        for f in sorted(shown, key=lambda f: -abs(per[f][1] - per[f][0])):
            c, r = per[f]
            print(f"| {names[f]} | {c:,.1f} | {r:,.1f} | {r - c:+,.1f} | {cc[f] / wc.ios:.2f} | {cr[f] / wr.ios:.2f} |")
        tc, tr = sum(fc.values()) / wc.ios, sum(fr.values()) / wr.ios
        print(f"| **all kernel code** | {tc:,.1f} | {tr:,.1f} | {tr - tc:+,.1f} | | |\n")


if __name__ == "__main__":
    main()
