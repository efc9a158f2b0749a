#!/usr/bin/env python3
"""Static counts of the I/O path of the C virtio_scsi.ko and virtio_scsi_rs.ko.

    tools/bench/hotpath.py C_KO RS_KO    (a Markdown table on stdout)

For each entry point the block layer and the virtio core call per I/O
(queuecommand, commit_rqs, mq_poll, the request queue's callback), from the
disassembly (llvm-objdump -dr) of the module: the entry function alone, and
everything in the module it can reach by calls and tail calls (error paths
included: a bound, not a trace). Counted: instructions, calls out of the
module (to the kernel), indirect calls, lock-prefixed instructions, and calls
to memcpy/memset/memmove. Instruction counts of what runs are the icount
measurement's; this says where the calls and atomics are.
"""
import re
import subprocess
import sys

ENTRIES = {
    "C": [("queuecommand", r"^virtscsi_queuecommand$"),
          ("commit_rqs", r"^virtscsi_commit_rqs$"),
          ("mq_poll", r"^virtscsi_mq_poll$"),
          ("request vq callback", r"^virtscsi_req_done$")],
    "Rust": [("queuecommand", r"^virtio_scsi_rs_main::scsi::queuecommand::<"),
             ("commit_rqs", r"^virtio_scsi_rs_main::scsi::commit_rqs::<"),
             ("mq_poll", r"^virtio_scsi_rs_main::scsi::mq_poll::<"),
             ("request vq callback", r"^virtio_scsi_rs_main::virtio::vq_callback::<")],
}
FUNC = re.compile(r"^([0-9a-f]+) <(.+)>:$")
SECTION = re.compile(r"^Disassembly of section (\S+):$")
INSN = re.compile(r"^\s+[0-9a-f]+:\s+(\S.*)$")
LOCAL = re.compile(r"^(call|jmp)\w*\s+0x[0-9a-f]+ <([^+>]+)>$")
RELOC = re.compile(r"^\s+[0-9a-f]+:\s+R_X86_64_(\w+)\s+(\S+?)(?:([-+])0x([0-9a-f]+))?$")
MEM = re.compile(r"^(__)?(memcpy|memset|memmove)$")
RET_THUNK = "__x86_return_thunk"


class Insn:
    def __init__(self, text):
        self.op = text.split()[0]
        self.text = text
        m = LOCAL.match(text)
        self.local = m.group(2) if m else None  # a direct call or jump to a function
        self.sym = None  # the relocation's symbol: another function or the kernel's
        self.taken = None  # a function whose address this instruction loads

    def is_call(self):
        return self.op.startswith("call")

    def is_tail_call(self):
        return self.op.startswith("jmp") and (self.local or self.sym) and self.sym != RET_THUNK


def disassemble(ko):
    """{mangled function name: [Insn]}"""
    out = subprocess.run(["llvm-objdump-19", "-dr", "--no-show-raw-insn", ko],
                         check=True, capture_output=True, text=True).stdout
    funcs, at, cur, section = {}, {}, None, None
    relocs = []
    for line in out.splitlines():
        m = SECTION.match(line)
        if m:
            section, cur = m.group(1), None
            continue
        m = FUNC.match(line)
        if m and m.group(2).startswith(("__pfx_", "__cfi_")):
            cur = None  # the padding before a function
            continue
        if m:
            cur = funcs.setdefault(m.group(2), [])
            at[(section, int(m.group(1), 16))] = m.group(2)
            continue
        if cur is None:
            continue
        r = RELOC.match(line)
        if r and cur:
            addend = int(r.group(4) or "0", 16) * (-1 if r.group(3) == "-" else 1)
            # A PC-relative field's addend has the field's end (-4) in it.
            if r.group(1) in ("PC32", "PLT32"):
                addend += 4
            relocs.append((cur[-1], r.group(2), addend))
            continue
        i = INSN.match(line)
        if i:
            cur.append(Insn(i.group(1)))
    for insn, sym, addend in relocs:
        if sym in funcs or sym.startswith("."):
            # A section-relative reference is to a static function when the
            # addend is one's start.
            target = sym if sym in funcs else at.get((sym, addend))
            if insn.is_call() or insn.op.startswith("jmp"):
                insn.local = target or insn.local
            elif target:
                insn.taken = target
        else:
            insn.sym = sym
    return funcs


def counts(names, funcs):
    n = {"functions": len(names), "insns": 0, "calls out": 0, "indirect": 0, "lock": 0, "mem": 0}
    for f in names:
        for insn in funcs[f]:
            n["insns"] += 1
            n["lock"] += insn.op.startswith("lock")
            if not (insn.is_call() or insn.is_tail_call()) or insn.local:
                continue
            if insn.sym is None or "indirect_thunk" in insn.sym:
                n["indirect"] += 1
            else:
                n["calls out"] += 1
                n["mem"] += bool(MEM.match(insn.sym))
    return n


def reach(entry, funcs):
    """entry and the module functions it calls, jumps to or takes the address
    of (a callback it passes on), transitively."""
    seen, todo = set(), [entry]
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        todo.extend(t for i in funcs[f] for t in (i.local, i.taken) if t in funcs)
    return seen


def demangled(names):
    out = subprocess.run(["llvm-cxxfilt-19"], input="\n".join(names), check=True,
                         capture_output=True, text=True).stdout
    return dict(zip(names, out.splitlines()))


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    cols = ["functions", "insns", "calls out", "indirect", "lock", "mem"]
    print("| driver | entry point | scope | " + " | ".join(cols) + " |")
    print("|---|---|---|" + "---|" * len(cols))
    for (driver, entries), ko in zip(ENTRIES.items(), sys.argv[1:]):
        funcs = disassemble(ko)
        shown = demangled(list(funcs))
        for label, pattern in entries:
            found = [f for f in funcs if re.search(pattern, shown[f])]
            if len(found) != 1:
                sys.exit(f"hotpath: {ko}: {len(found)} functions match {pattern}")
            for scope, names in (("alone", {found[0]}), ("reachable", reach(found[0], funcs))):
                n = counts(names, funcs)
                print(f"| {driver} | {label} | {scope} | " + " | ".join(str(n[c]) for c in cols) + " |")


if __name__ == "__main__":
    main()
