#!/usr/bin/python3
"""make bench --scaling: the tables (scaling.md) and the curves (scaling.png)
of a results directory written by tools/bench/bench.sh --scaling.

    scaling_report.py RESULTS_DIR SYSTEM_MAP

Instructions (the -icount guest, tools/bench/pcprof.c): every kernel
instruction of the 4 vCPUs in each window, over the window's I/Os (calls of
scsi_finish_command, once per completed command for either driver); beside
it the instructions in queued_spin_lock_slowpath (spinning on a contended
spin lock, any lock) and the busy returns (scsi:scsi_dispatch_cmd_error) per
1000 I/Os. Median over the rounds; Rust/C the ratio of the medians with the
range of the per-round ratios.

IOPS (the TCG guest): mean over the rounds; Rust/C per round, geometric
mean with a 95% interval and Holm's correction over the configurations, as
tools/bench/report.py does for the matrix. Busy returns per 1000 reads
(reads counted from the disks' stat, ramp included).

Lock statistics (the debug kernel's /proc/lock_stat over one fio run): the
queue lock of each driver (C: &virtscsi_vq->vq_lock, Rust:
vsrs_request_vq; one lock class for all queues of all controllers), and
the most contended classes of the run.
"""
import collections
import json
import os
import re
import statistics
import sys

from pcprof import by_function, load, symbols
from report import LABEL, holm, ratio_ci, read_env

DRIVERS = ("c", "rust")
COLOUR = {"c": "tab:blue", "rust": "tab:orange"}
AXES = {"luns": "LUNs driven at once", "num_queues": "num_queues (4 vCPUs)",
        "virtqueue_size": "virtqueue_size (1 queue)"}
QUEUE_LOCK = {"c": "&virtscsi_vq->vq_lock", "rust": "vsrs_request_vq"}
SPIN = "queued_spin_lock_slowpath"
DONE = "scsi_finish_command"
IRQ = "vring_interrupt"
SWITCH = "__schedule"
# "  name:  con-bounces contentions wait-min wait-max wait-total wait-avg
#   acq-bounces acquisitions hold-min hold-max hold-total hold-avg"
LOCK_LINE = re.compile(r"^\s*(\S.*?):\s+((?:[\d.]+\s+){11}[\d.]+)\s*$")


def points(out):
    """[(axis, value, config)] in the file's order."""
    return [(a, int(v), c) for a, v, c in (line.split() for line in open(os.path.join(out, "scale-points.txt")))]


def cost(out, sysmap):
    """{(config, driver): [{"insns", "spin", "busy", "ios"} per round]}."""
    kernel = symbols(open(sysmap))
    metas = [json.loads(line) for line in open(os.path.join(out, "raw", "profile-scaling.jsonl"))]
    by = collections.defaultdict(list)
    for w, meta in zip(load(out), metas):
        funcs, _, calls = by_function(out, kernel, w)
        ios = calls[DONE]
        if not ios:
            continue
        module = {f[2] for f in (line.split() for line in open(os.path.join(out, "raw", w.kallsyms)))
                  if len(f) >= 4 and f[3] in ("[virtio_scsi]", "[virtio_scsi_rs]")}
        by[(meta["row"], meta["driver"])].append({
            "insns": sum(funcs.values()) / ios, "spin": funcs[SPIN] / ios,
            "driver": sum(n for f, n in funcs.items() if f in module) / ios,
            "irqs": calls[IRQ] / ios, "switches": calls[SWITCH] / ios,
            "busy": meta["busy"] * 1000 / ios, "ios": ios, "round": meta["round"]})
    return by


def iops(out):
    """{(config, driver): {round: {"iops", "busy"}}}."""
    by = collections.defaultdict(dict)
    path = os.path.join(out, "raw", "scale-iops.jsonl")
    if not os.path.exists(path):
        return by
    for line in open(path):
        r = json.loads(line)
        text = open(os.path.join(out, "raw", r["fio"])).read()
        job = json.loads(text[text.index("{"):])["jobs"][0]
        by[(r["config"], r["driver"])][r["round"]] = {
            "iops": job["read"]["iops"], "busy": r["busy"] * 1000 / r["reads"] if r["reads"] else float("nan")}
    return by


def lock_stats(path):
    """[(class, {field: value})] of a lock_stat excerpt, in its order."""
    names = ("con_bounces", "contentions", "wait_min", "wait_max", "wait_total", "wait_avg",
             "acq_bounces", "acquisitions", "hold_min", "hold_max", "hold_total", "hold_avg")
    out = []
    for line in open(path):
        m = LOCK_LINE.match(line)
        if m:
            out.append((m.group(1).strip(), dict(zip(names, map(float, m.group(2).split())))))
    return out


def med(runs, key):
    v = [r[key] for r in runs]
    return statistics.median(v) if v else float("nan")


def spread(runs, key):
    v = [r[key] for r in runs]
    m = statistics.median(v) if v else 0
    return max(abs(x - m) for x in v) / m * 100 if m else 0.0


def cost_table(pts, by):
    lines = ["| axis | value | instructions/IO C | Rust | Rust/C [range] | driver module/IO C | Rust "
             "| spinning/IO C | Rust | interrupts/IO C | Rust | context switches/IO C | Rust "
             "| busy/1000 IO C | Rust |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for axis, value, cfg in pts:
        c, r = by.get((cfg, "c"), []), by.get((cfg, "rust"), [])
        if not c or not r:
            lines.append(f"| {axis} | {value} |" + " – |" * 13)
            continue
        rc = {x["round"]: x["insns"] for x in c}
        ratios = [x["insns"] / rc[x["round"]] for x in r if x["round"] in rc]
        rng = f" [{min(ratios):.3f}, {max(ratios):.3f}]" if len(ratios) > 1 else ""
        lines.append(
            f"| {axis} | {value} | {med(c, 'insns'):,.0f} ±{spread(c, 'insns'):.1f}% "
            f"| {med(r, 'insns'):,.0f} ±{spread(r, 'insns'):.1f}% | {med(r, 'insns') / med(c, 'insns'):.3f}{rng} "
            f"| {med(c, 'driver'):,.0f} | {med(r, 'driver'):,.0f} | {med(c, 'spin'):,.1f} | {med(r, 'spin'):,.1f} "
            f"| {med(c, 'irqs'):.3f} | {med(r, 'irqs'):.3f} | {med(c, 'switches'):.2f} | {med(r, 'switches'):.2f} "
            f"| {med(c, 'busy'):.2f} | {med(r, 'busy'):.2f} |")
    return lines


def iops_table(pts, by):
    cfgs = list(dict.fromkeys(cfg for _, _, cfg in pts))
    cis = {cfg: ratio_ci(by.get((cfg, "rust"), {}), by.get((cfg, "c"), {})) for cfg in cfgs}
    adj = dict(zip(cfgs, holm([cis[cfg][3] for cfg in cfgs])))
    lines = ["| axis | value | IOPS C | Rust | Rust/C [95% CI] Holm p | busy/1000 reads C | Rust |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for axis, value, cfg in pts:
        r, lo, hi, _, n = cis[cfg]
        m = {d: [x["iops"] for x in by.get((cfg, d), {}).values()] for d in DRIVERS}
        b = {d: [x["busy"] for x in by.get((cfg, d), {}).values()] for d in DRIVERS}
        if not m["c"] or not m["rust"]:
            lines.append(f"| {axis} | {value} | – | – | – | – | – |")
            continue
        ratio = f"{r:.3f}"
        if n > 1:
            ratio += f" [{lo:.3f}, {hi:.3f}] p={adj[cfg]:.2g}"
            if adj[cfg] < 0.05:
                ratio = f"**{ratio}**" if r > 1 else ratio + " below"
        lines.append(f"| {axis} | {value} | {statistics.fmean(m['c']):,.0f} | {statistics.fmean(m['rust']):,.0f} "
                     f"| {ratio} | {statistics.fmean(b['c']):.2f} | {statistics.fmean(b['rust']):.2f} |")
    return lines


def lock_table(out):
    rows = ["| num_queues | driver | queue lock | acquisitions | contentions | contended % | wait total µs "
            "| wait avg µs | IOPS (debug kernel) | most contended classes (contentions) |",
            "|---:|---|---|---:|---:|---:|---:|---:|---:|---|"]
    found = False
    for cfg, nq in (("q1", 1), ("l1", 4)):
        for d in DRIVERS:
            path = os.path.join(out, "raw", f"lockstat-{d}-{cfg}.txt")
            if not os.path.exists(path):
                continue
            found = True
            stats = lock_stats(path)
            q = next((s for name, s in stats if name == QUEUE_LOCK[d]), None)
            top = sorted({name: s for name, s in stats}.items(), key=lambda x: -x[1]["contentions"])[:3]
            text = open(os.path.join(out, "raw", f"lockstat-{d}-{cfg}.json")).read()
            io = json.loads(text[text.index("{"):])["jobs"][0]["read"]["iops"]
            tops = ", ".join(f"`{n}` {s['contentions']:,.0f}" for n, s in top)
            if q is None:
                rows.append(f"| {nq} | {LABEL[d]} | `{QUEUE_LOCK[d]}` not taken | | | | | | {io:,.0f} | {tops} |")
                continue
            pct = 100 * q["contentions"] / q["acquisitions"] if q["acquisitions"] else float("nan")
            rows.append(f"| {nq} | {LABEL[d]} | `{QUEUE_LOCK[d]}` | {q['acquisitions']:,.0f} | {q['contentions']:,.0f} "
                        f"| {pct:.2f} | {q['wait_total']:,.0f} | {q['wait_avg']:.2f} | {io:,.0f} | {tops} |")
    return rows if found else []


def plot(pts, cost_by, iops_by, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 3, figsize=(15, 11), squeeze=False)
    for col, axis in enumerate(AXES):
        ps = [(v, cfg) for a, v, cfg in pts if a == axis]
        xs = [v for v, _ in ps]
        top, mid, bottom = axes[0][col], axes[1][col], axes[2][col]
        for d in DRIVERS:
            runs = [cost_by.get((cfg, d), []) for _, cfg in ps]
            if all(runs):
                top.plot(xs, [med(r, "insns") for r in runs], "-o", color=COLOUR[d], label=f"{LABEL[d]} all")
                top.plot(xs, [med(r, "spin") for r in runs], ":s", color=COLOUR[d], ms=3,
                         label=f"{LABEL[d]} spinning")
                mid.plot(xs, [med(r, "switches") for r in runs], "-o", color=COLOUR[d],
                         label=f"{LABEL[d]} context switches")
                mid.plot(xs, [med(r, "irqs") for r in runs], "--^", color=COLOUR[d], label=f"{LABEL[d]} interrupts")
            samples = [[x["iops"] for x in iops_by.get((cfg, d), {}).values()] for _, cfg in ps]
            if all(samples):
                ys = [statistics.fmean(s) for s in samples]
                err = [statistics.stdev(s) if len(s) > 1 else 0 for s in samples]
                bottom.errorbar(xs, ys, yerr=err, fmt="-o", color=COLOUR[d], capsize=3, label=LABEL[d])
        for ax in (top, mid, bottom):
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs, [str(x) for x in xs])
            ax.set_xlabel(AXES[axis])
            ax.set_ylim(bottom=0)
            ax.grid(True, alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
        top.set_ylabel("kernel instructions per I/O (-icount)")
        mid.set_ylabel("per I/O (-icount)")
        bottom.set_ylabel("IOPS (TCG, mean ± sd over rounds)")
    fig.suptitle("4k randread, 4 fio jobs x iodepth 32, 4 vCPUs: C virtio_scsi and virtio_scsi_rs")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main(out, sysmap):
    env = read_env(os.path.join(out, "meta.env"))
    pts = points(out)
    cost_by, iops_by = cost(out, sysmap), iops(out)
    head = [
        f"# Scaling, {env.get('DATE', '?')} (make bench BENCH_ARGS=--scaling)", "",
        f"4k random reads, fio with {env.get('JOBS', '?')} jobs (one per vCPU, pinned) at iodepth "
        f"{env.get('IODEPTH', '?')} each, over all the LUNs of the point; {env.get('CPUS', '?')} vCPUs, null-co "
        f"read-zeroes disks, a controller (and iothread) per configuration, both drivers in the same guest; "
        f"kernel {env.get('KERNEL', '?')}, module {env.get('MODULE_COMMIT', '?')}, QEMU {env.get('QEMU', '?')}, "
        f"host CPU {env.get('HOST_CPU', '?')}. Axes: LUNs driven at once (num_queues 4), num_queues (one LUN), "
        "virtqueue_size (one LUN, num_queues 1). Method: tools/bench/scaling_report.py.", ""]
    body = [f"## Kernel instructions per I/O (-icount {env.get('ICOUNT', '?')}, all vCPUs, windows of "
            f"{env.get('WINDOW', '?')} guest s, {env.get('COST_ROUNDS', '?')} rounds; median ± largest deviation)", ""]
    body += cost_table(pts, cost_by)
    body += ["", "Driver module: instructions in virtio_scsi's or virtio_scsi_rs's own functions. Spinning: in "
             "queued_spin_lock_slowpath (any contended spin lock). Interrupts: calls of vring_interrupt; context "
             "switches: of __schedule (both per I/O; a window with more of them went idle more often, which "
             "depends on how the host's iothread kept up, not only on the driver). Busy: queuecommand returned "
             "busy (scsi:scsi_dispatch_cmd_error) per 1000 I/Os.", "",
             f"## IOPS (TCG, {len({r for v in iops_by.values() for r in v})} rounds of {env.get('RUNTIME', '?')} s after "
             f"{env.get('RAMP', '?')} s, ABBA)", ""]
    body += iops_table(pts, iops_by)
    load_path = os.path.join(out, "hostload.txt")
    if os.path.exists(load_path):
        load = [float(line.split()[1]) for line in open(load_path) if line.strip()]
        if load:
            body += ["", f"Host 1-minute load during the IOPS guest (hostload.txt): mean {statistics.fmean(load):.1f}, "
                     f"{min(load):.1f} to {max(load):.1f}."]
    body += ["", "Bold: Rust/C significantly above 1.00 after Holm's correction over the 7 configurations; "
             "\"below\": significantly below. The points luns 1 / num_queues 4 and num_queues 1 / "
             "virtqueue_size 256 are the same configuration, measured once."]
    lock = lock_table(out)
    if lock:
        body += ["", f"## Queue lock contention (debug kernel {env.get('DEBUG_KERNEL', '?')}, /proc/lock_stat over "
                 f"{env.get('RUNTIME', '?')} s of fio, one LUN)", ""] + lock
        body += ["", "One lock class per driver for all its queues of all controllers; the debug kernel "
                 "(lockdep, KASAN on the SCSI, block and virtio code) is many times slower, so contention "
                 "there is an upper bound of the bench kernel's."]
    stats = sorted(f for f in os.listdir(os.path.join(out, "raw")) if f.startswith("scale-iops-") and f.endswith(".stats"))
    if stats:
        body += ["", f"virtio_scsi_rs per-queue counters after the IOPS guest's last round ({stats[-1]}):", "",
                 "```", open(os.path.join(out, "raw", stats[-1])).read().rstrip(), "```"]
    open(os.path.join(out, "scaling.md"), "w").write("\n".join(head + body) + "\n")
    plot(pts, cost_by, iops_by, os.path.join(out, "scaling.png"))
    print("\n".join(body))
    return 0 if cost_by or iops_by else 1


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
