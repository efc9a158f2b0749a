#!/usr/bin/python3
"""make bench --cost, on the host: the numbers of the guest's raw output.

    cost.py merge DIR    replace the fio report and the trace each line of
                         DIR/raw/cost.jsonl names by what they measured

The guest ran under QEMU -icount shift=0: guest time advanced one nanosecond
per executed instruction, so every duration is an instruction count.

fio: the job's CPU time (user + system, which the kernel keeps from the
scheduler's exact runtime) over its I/Os, from its JSON report: the whole
guest stack per I/O as the submitting task sees it, without fio's own start
and exit (completions that interrupt an idle CPU are not in it).

trace: the function_graph trace (set_ftrace_filter holding scsi_queue_rq,
scsi_mq_poll, vring_interrupt, scsi_done and scsi_complete, funcgraph-tail
on) gives per call of each function its own cost: its duration minus the
traced calls nested in it. A submission (scsi_queue_rq) is counted from the
calls no interrupt arrived in (no traced call nested: an interrupt's
vring_interrupt, the soft interrupt's scsi_complete), as
scsi_queue_rq_alone: the entry and exit of an interrupt are not traced, so
an interrupted call would carry about 1,400 of them, and at qd1 whether
the completion's interrupt comes before scsi_queue_rq returns varies from
run to run. Interrupted calls stay in scsi_queue_rq (all calls); a
completion pass (vring_interrupt, scsi_mq_poll)
excludes scsi_done, the midlayer's and block layer's part of each command,
the same code for every driver. What is left is the driver, the virtio core
and the midlayer's submission work. Completion passes that completed no
command (other virtio devices' interrupts, empty polls) are counted apart;
the others are also kept by the number of commands they completed
(completion_passes: count and mean cost per number).
"""
import json
import os
import re
import statistics
import sys

# " 1) + 12.345 us   |    } /* vring_interrupt */", " 0)   1.234 us    |  scsi_done();",
# " 0)               |  vring_interrupt() {"
LINE = re.compile(r"^\s*(\d+)\)\s+(?:[+!#*@$]\s+)?(?:([\d.]+) us\s+)?\|\s+(.*?)\s*$")
OPEN = re.compile(r"^(\w+)\(\) \{$")
CLOSE = re.compile(r"^\} /\* (\w+) \*/$")
LEAF = re.compile(r"^(\w+)\(\);$")
COMPLETION = ("vring_interrupt", "scsi_mq_poll")


def fio_cost(path):
    """CPU nanoseconds (instructions) of the fio job and its I/Os."""
    job = json.load(open(path))["jobs"][0]
    cpu_ns = (job["usr_cpu"] + job["sys_cpu"]) / 100 * job["job_runtime"] * 1e6
    ios = sum(job[d]["total_ios"] for d in ("read", "write", "trim"))
    return {"cpu_ns": cpu_ns, "ios": ios, "runtime_ms": job["job_runtime"],
            "per_io": cpu_ns / ios if ios else None}


def frames(lines):
    """(function, own ns, scsi_done calls nested, traced calls nested) per
    closed traced call."""
    stacks = {}  # per CPU: [function, nested ns, nested scsi_done, nested calls]
    for line in lines:
        m = LINE.match(line)
        if not m:
            continue
        cpu, dur, text = m.group(1), m.group(2), m.group(3)
        stack = stacks.setdefault(cpu, [])
        ns = round(float(dur) * 1000) if dur else None
        if (o := OPEN.match(text)):
            stack.append([o.group(1), 0, 0, 0])
            continue
        c, leaf = CLOSE.match(text), LEAF.match(text)
        if ns is None or not (c or leaf):
            continue
        if c:
            # A close without its open (the trace began inside the call).
            if not stack or stack[-1][0] != c.group(1):
                stack.clear()
                continue
            fn, nested, done, calls = stack.pop()
        else:
            fn, nested, done, calls = leaf.group(1), 0, 0, 0
        yield fn, ns - nested, done, calls
        if stack:
            stack[-1][1] += ns
            stack[-1][2] += fn == "scsi_done"
            stack[-1][3] += 1


def summary(values):
    values = sorted(values)
    if not values:
        return {"calls": 0}
    q = statistics.quantiles(values, n=10) if len(values) > 1 else values * 9
    return {"calls": len(values), "median": statistics.median(values),
            "p10": q[0], "p90": q[-1], "mean": statistics.fmean(values)}


def trace_summary(path):
    own, comp_ns, comp_cmds, idle, passes = {}, 0, 0, [], {}
    with open(path) as f:
        for fn, ns, done, calls in frames(f):
            own.setdefault(fn, []).append(ns)
            if fn == "scsi_queue_rq" and not calls:
                own.setdefault("scsi_queue_rq_alone", []).append(ns)
            if fn in COMPLETION:
                if done:
                    comp_ns += ns
                    comp_cmds += done
                    passes.setdefault(done, []).append(ns)
                else:
                    idle.append(ns)
    out = {fn: summary(v) for fn, v in own.items()}
    # The passes by how many commands they completed (how many a pass finds
    # depends on how fast the host answered): cost_report.py fits a pass's
    # cost as a fixed part and a part per command.
    out["completion_passes"] = {str(k): {"n": len(v), "mean": statistics.fmean(v)}
                                for k, v in sorted(passes.items())}
    # Per completed command: passes complete several at depth.
    out["completion_per_cmd"] = {"cmds": comp_cmds, "mean": comp_ns / comp_cmds if comp_cmds else None}
    out["completion_without_cmd"] = summary(idle)
    return out


def merge(out):
    raw = os.path.join(out, "raw")
    path = os.path.join(raw, "cost.jsonl")
    recs = [json.loads(line) for line in open(path) if line.strip()]
    for r in recs:
        for key, fn in (("fio", fio_cost), ("trace", trace_summary)):
            if isinstance(r[key], str):
                f = os.path.join(raw, r[key])
                r[key] = fn(f)
                os.remove(f)
    with open(path, "w") as f:
        for r in recs:
            f.write(json.dumps(r) + "\n")
    return 0


def main(argv):
    if len(argv) == 2 and argv[0] == "merge":
        return merge(argv[1])
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
