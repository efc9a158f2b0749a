#!/usr/bin/python3
"""make bench: the table (results.md) and the plot (iops.png) of a results
directory written by tools/bench/bench.sh.

    report.py RESULTS_DIR [README]

With README, the table and the plot also replace what is between the
<!-- bench-latest --> markers there (make bench does this for its own runs).

Rust/C is computed per round (both drivers ran in the same round, next to each
other; rounds alternate which of the two goes first) and given as the geometric
mean with a 95% confidence interval (Student's t over the rounds, on the log of
the ratios). Each row's p-value (two-sided t-test of log ratio 0) is corrected
for the number of rows with Holm's method; a ratio is bold only where the
corrected p-value is below 0.05 and the ratio below 1.00 (significantly
faster), and marked "above" where it is significantly above 1.00.
"""
import glob
import json
import math
import os
import re
import statistics
import sys

DRIVERS = ("blk", "c", "rust")
DISKS = ("null", "file", "iscsi")
LABEL = {"blk": "virtio-blk", "c": "C virtio_scsi", "rust": "virtio_scsi_rs"}
# Two-sided 95% Student t quantiles, by degrees of freedom.
T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
       2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
       2.060, 2.056, 2.052, 2.048, 2.045, 2.042]
NAME = re.compile(r"^(?P<disk>\w+)-(?P<rw>\w+)-(?P<bs>\w+)-(?P<eng>\w+)-qd(?P<qd>\d+)-j(?P<nj>\d+)$")


def read_env(path):
    env = {}
    if os.path.exists(path):
        for line in open(path):
            if "=" in line and not line.startswith("#"):
                k, v = line.rstrip("\n").split("=", 1)
                env[k] = v
    return env


def load(outdir):
    """{key: {driver: {round: sample}}}; key = (disk, rw, bs, eng, qd, nj)."""
    data = {}
    for path in sorted(glob.glob(os.path.join(outdir, "raw", "r*-*.json"))):
        m = re.match(r"r(\d+)-(\w+?)(-hipri)?\.json$", os.path.basename(path))
        rnd, drv = int(m.group(1)), m.group(2)
        try:
            doc = json.load(open(path))
        except ValueError:
            # fio may print warnings before the JSON document.
            text = open(path).read()
            doc = json.loads(text[text.index("{"):])
        for job in doc["jobs"]:
            n = NAME.match(job["jobname"])
            if not n:
                continue
            key = (n["disk"], n["rw"], n["bs"], n["eng"], int(n["qd"]), int(n["nj"]))
            side = job["write"] if "write" in n["rw"] else job["read"]
            pct = side["clat_ns"].get("percentile", {})
            ios = job["read"]["total_ios"] + job["write"]["total_ios"]
            cpu_ms = (job["usr_cpu"] + job["sys_cpu"]) / 100 * job.get("job_runtime", 0)
            data.setdefault(key, {}).setdefault(drv, {})[rnd] = {
                "iops": side["iops"],
                "mean_us": side["lat_ns"]["mean"] / 1000,
                "p99_us": pct.get("99.000000", float("nan")) / 1000,
                "cpu_us_per_io": cpu_ms * 1000 / ios if ios else float("nan"),
            }
    return data


def by_round(paths):
    """raw/rN-... files in round order (r10 after r9, not after r1)."""
    return sorted(paths, key=lambda p: (int(re.match(r"r(\d+)", os.path.basename(p)).group(1)), p))


def mean(xs):
    return statistics.fmean(xs) if xs else float("nan")


def betacf(a, b, x):
    """Continued fraction of the regularised incomplete beta function."""
    qab, qap, qam = a + b, a + 1, a - 1
    c, d = 1.0, 1 - qab * x / qap
    d = 1 / (d if abs(d) > 1e-300 else 1e-300)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                   -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1 + aa * d
            d = 1 / (d if abs(d) > 1e-300 else 1e-300)
            c = 1 + aa / c
            c = c if abs(c) > 1e-300 else 1e-300
            h *= d * c
        if abs(d * c - 1) < 1e-12:
            break
    return h


def t_pvalue(t, df):
    """Two-sided p-value of Student's t with df degrees of freedom."""
    x = df / (df + t * t)
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    a, b = df / 2, 0.5
    lbeta = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(1 - x)
    if x < (a + 1) / (a + b + 2):
        return min(1.0, math.exp(lbeta) * betacf(a, b, x) / a)
    return min(1.0, 1 - math.exp(lbeta) * betacf(b, a, 1 - x) / b)


def holm(pvalues):
    """Holm-adjusted p-values, in the order given (None stays None)."""
    idx = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    out, run = [None] * len(pvalues), 0.0
    for rank, (p, i) in enumerate(idx):
        run = max(run, min(1.0, (len(idx) - rank) * p))
        out[i] = run
    return out


def ratio_ci(rust, c):
    """Per-round Rust/C: geometric mean, 95% CI (low, high), p-value, rounds."""
    rs = [rust[r]["iops"] / c[r]["iops"] for r in rust if r in c and c[r]["iops"] > 0 and rust[r]["iops"] > 0]
    nan = float("nan")
    if not rs:
        return nan, nan, nan, None, 0
    logs = [math.log(x) for x in rs]
    m = mean(logs)
    if len(rs) == 1:
        return math.exp(m), nan, nan, None, 1
    se = statistics.stdev(logs) / math.sqrt(len(rs))
    t = T95[len(rs) - 2] if len(rs) - 2 < len(T95) else 1.96
    p = t_pvalue(m / se, len(rs) - 1) if se > 0 else (0.0 if m != 0 else 1.0)
    return math.exp(m), math.exp(m - t * se), math.exp(m + t * se), p, len(rs)


def fmt(x, spec="{:.0f}"):
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else spec.format(x)


def workload(key):
    disk, rw, bs, eng, qd, nj = key
    return f"{disk} {rw} {bs} {eng.replace('_hipri', ' --hipri')} qd{qd} j{nj}"


def order(key):
    disk, rw, bs, eng, qd, nj = key
    return (DISKS.index(disk) if disk in DISKS else 9,
            "hipri" in eng, bs != "4k", rw, eng, nj, qd)


def table(data):
    rows = ["| workload | virtio-blk IOPS | C IOPS | Rust IOPS | Rust/C [95% CI] Holm p "
            "| mean lat µs blk / C / Rust | p99 lat µs blk / C / Rust |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    slow = []
    keys = sorted(data, key=order)
    cis = [ratio_ci(data[k].get("rust", {}), data[k].get("c", {})) for k in keys]
    adjusted = holm([ci[3] for ci in cis])
    for key, (r, lo, hi, _, n), padj in zip(keys, cis, adjusted):
        d = data[key]
        agg = {drv: {f: mean([s[f] for s in d.get(drv, {}).values()])
                     for f in ("iops", "mean_us", "p99_us", "cpu_us_per_io")} for drv in DRIVERS}
        ratio = fmt(r, "{:.3f}")
        if n > 1:
            ratio += f" [{lo:.3f}, {hi:.3f}] p={padj:.2g}"
        if padj is not None and padj < 0.05:
            if r < 1.0:
                ratio = f"**{ratio}**"
                slow.append((key, r, agg))
            else:
                ratio += " above"
        lat = " / ".join(fmt(agg[x]["mean_us"]) for x in DRIVERS)
        p99 = " / ".join(fmt(agg[x]["p99_us"]) for x in DRIVERS)
        rows.append(f"| {workload(key)} | {fmt(agg['blk']['iops'])} | {fmt(agg['c']['iops'])} "
                    f"| {fmt(agg['rust']['iops'])} | {ratio} | {lat} | {p99} |")
    return rows, slow


def host_table(outdir, data):
    """The iSCSI rows beside iscsi-perf on the host (raw/host-iscsi.csv): the
    bare-metal reference of the passed-through disk, and each driver's share
    of it (means over the rounds)."""
    path = os.path.join(outdir, "raw", "host-iscsi.csv")
    if not os.path.exists(path):
        return []
    host = {}
    for line in open(path).read().splitlines()[1:]:
        _, row, iops = line.split(",")
        host.setdefault(row, []).append(float(iops))
    rows = ["The passed-through disk against the host: the same LUN read by iscsi-perf (libiscsi) on the "
            "host, the bare-metal reference; each driver's IOPS as a share of it:", "",
            "| workload | host iscsi-perf IOPS | virtio-blk / host | C / host | Rust / host |",
            "| --- | ---: | ---: | ---: | ---: |"]
    for key in sorted((k for k in data if k[0] == "iscsi"), key=order):
        name = "{}-{}-{}-{}-qd{}-j{}".format(*key)
        h = mean(host.get(name, []))
        share = [mean([s["iops"] for s in data[key].get(drv, {}).values()]) / h if h else float("nan")
                 for drv in DRIVERS]
        rows.append(f"| {workload(key)} | {fmt(h)} | " + " | ".join(fmt(x, "{:.3f}") for x in share) + " |")
    return rows


def scan_table(outdir):
    path = os.path.join(outdir, "scan.csv")
    if not os.path.exists(path):
        return []
    times = {}
    for line in open(path).read().splitlines()[1:]:
        rnd, drv, luns, secs = line.split(",")
        try:
            times.setdefault(drv, {})[int(rnd)] = float(secs)
        except ValueError:  # "timeout" or "failed"
            times.setdefault(drv, {})[int(rnd)] = None
    if not times:
        return []
    luns = open(path).read().splitlines()[1].split(",")[2]
    rows = [f"Scan of a {luns}-LUN controller (insmod/modprobe until every LUN is a disk), seconds:", "",
            "| driver | mean | rounds |", "| --- | ---: | --- |"]
    for drv in ("c", "rust"):
        t = times.get(drv, {})
        ok = [x for x in t.values() if x is not None]
        rows.append(f"| {LABEL[drv]} | {fmt(mean(ok), '{:.2f}')} | "
                    + ", ".join("failed" if x is None else f"{x:.2f}" for _, x in sorted(t.items())) + " |")
    c, rust = times.get("c", {}), times.get("rust", {})
    rs = [rust[r] / c[r] for r in rust if r in c and rust[r] and c[r]]
    if rs:
        s = f"{mean(rs):.2f}"
        if len(rs) > 1:
            t = T95[len(rs) - 2] if len(rs) - 2 < len(T95) else 1.96
            s += f" ± {t * statistics.stdev(rs) / math.sqrt(len(rs)):.2f}"
        rows += ["", f"Scan time Rust/C: {s} (lower is better)."]
    return rows


def plot(data, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(k[0], k[1], k[2], k[3].replace("libaio", "io_uring"))
                     for k in data if k[2] == "4k"}, key=lambda p: order(p + (0, 0)))
    panels = [p for p in panels if len({k[4] for k in data if k[:3] == p[:3]}) > 0]
    if not panels:
        return
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
    colour = {"blk": "tab:green", "c": "tab:blue", "rust": "tab:orange"}
    for ax, (disk, rw, bs, eng) in zip(axes.flat, panels):
        engs = [eng] if "hipri" in eng else sorted({k[3] for k in data if k[:3] == (disk, rw, bs)
                                                    and "hipri" not in k[3]})
        for e in engs:
            for nj in sorted({k[5] for k in data if k[:4] == (disk, rw, bs, e)}):
                for drv in DRIVERS:
                    pts = sorted((k[4], list(data[k].get(drv, {}).values())) for k in data
                                 if k[:4] == (disk, rw, bs, e) and k[5] == nj and drv in data[k])
                    if not pts:
                        continue
                    xs = [p[0] for p in pts]
                    ys = [mean([s["iops"] for s in p[1]]) for p in pts]
                    err = [statistics.stdev([s["iops"] for s in p[1]]) if len(p[1]) > 1 else 0 for p in pts]
                    style = ("-" if nj == 1 else "--") if e.startswith("io_uring") else ":"
                    ax.errorbar(xs, ys, yerr=err, fmt=style + "o", color=colour[drv], ms=3, capsize=2,
                                label=f"{LABEL[drv]} {e} j{nj}")
        ax.set_xscale("log", base=2)
        ax.set_title(f"{disk} {rw} {bs}{' --hipri' if 'hipri' in eng else ''}")
        ax.set_xlabel("iodepth")
        ax.set_ylabel("IOPS")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def irq_table(outdir):
    """I/Os per request-queue interrupt over each driver's whole fio run."""
    per = {}
    for path in sorted(glob.glob(os.path.join(outdir, "raw", "r*-*.irqs"))):
        m = re.match(r"r(\d+)-(\w+?)(-hipri)?\.irqs$", os.path.basename(path))
        jpath = path[:-len(".irqs")] + ".json"
        if not m or m.group(3) or not os.path.exists(jpath):
            continue
        text = open(jpath).read()
        doc = json.loads(text[text.index("{"):])
        ios = sum(j["read"]["total_ios"] + j["write"]["total_ios"] for j in doc["jobs"])
        irqs = int(open(path).read().strip() or 0)
        if irqs > 0:
            per.setdefault(m.group(2), []).append(ios / irqs)
    if not per:
        return []
    return ["", "I/Os completed per request-queue interrupt (whole matrix, mean over rounds; "
            "higher means completions are batched): "
            + ", ".join(f"{LABEL[d]} {mean(per[d]):.2f}" for d in DRIVERS if d in per) + "."]


def load_table(outdir):
    """The host's mean 1-minute load during each fio run (hostload.txt)."""
    path = os.path.join(outdir, "hostload.txt")
    if not os.path.exists(path):
        return []
    samples = [(int(t), float(v)) for t, v in (line.split() for line in open(path) if line.strip())]
    runs = []
    for jpath in by_round(glob.glob(os.path.join(outdir, "raw", "r*-*.json"))):
        text = open(jpath).read()
        doc = json.loads(text[text.index("{"):])
        start = doc["timestamp"]
        end = start + sum(j.get("job_runtime", 0) for j in doc["jobs"]) // 1000 + 1
        during = [v for t, v in samples if start <= t <= end]
        if during:
            runs.append(f"{os.path.basename(jpath)[:-5]} {mean(during):.1f}")
    if not runs:
        return []
    return ["", "Host load (1-minute average, mean over each fio run, by the guest's start time of the "
            "run; hostload.txt has the samples): " + ", ".join(runs) + "."]


def took(meta):
    """How long the fio guest and the scan guest took (meta.env), as a clause."""
    def span(secs):
        return f"{secs / 60:.0f} min" if secs >= 120 else f"{secs} s"

    parts = [f"{what} guest {span(int(meta[key]))}" for what, key in
             (("the fio", "FIO_GUEST_SECONDS"), ("the scan", "SCAN_GUEST_SECONDS"))
             if meta.get(key, "0") not in ("", "0")]
    return "; it took " + " and ".join(parts) if parts else ""


def main():
    outdir = sys.argv[1]
    meta = read_env(os.path.join(outdir, "meta.env"))
    data = load(outdir)
    if not data:
        print("report: no fio results in", outdir, file=sys.stderr)
        return 1
    rows, slow = table(data)
    host = host_table(outdir, data)
    if host:
        rows += [""] + host
    head = [f"# make bench, {meta.get('DATE', '?')}", "",
            f"Accelerator {meta.get('ACCEL', '?')}, QEMU {meta.get('QEMU', '?')}, {meta.get('CPUS', '?')} vCPUs, "
            f"guest kernel {meta.get('GUEST_UNAME', '?')} ({meta.get('KERNEL', '?')}), host CPU {meta.get('HOST_CPU', '?')}; "
            f"{meta.get('ROUNDS', '?')} round(s), fio {meta.get('FIO', '?')} jobs of {meta.get('RUNTIME', '?')} s "
            f"after {meta.get('RAMP', '?')} s ramp; module at {meta.get('MODULE_COMMIT', '?')}"
            f"{took(meta)}. "
            "IOPS and latencies are means over the rounds; Rust/C is the geometric mean of the per-round "
            "ratios with its 95% confidence interval and the Holm-corrected p-value over the rows; **bold** "
            "where significantly below 1.00, \"above\" where significantly above. Workload names: disk "
            "(null = null-co read-zeroes, file = raw file on tmpfs, iscsi = a tgt disk over iSCSI on loopback "
            "through QEMU's libiscsi: scsi-block for the SCSI drivers, the block layer for virtio-blk), "
            "pattern, block size, engine, iodepth, numjobs.",
            ""]
    body = rows + [""] + scan_table(outdir) + irq_table(outdir) + load_table(outdir)
    if slow:
        body += ["", "Where Rust/C is significantly below 1.00: fio's CPU time per I/O in the guest (usr+sys µs; the "
                 "submission path and the completions that interrupted fio), C / Rust:", ""]
        body += [f"- {workload(k)}: {r:.3f}; CPU/IO {fmt(a['c']['cpu_us_per_io'], '{:.1f}')} / "
                 f"{fmt(a['rust']['cpu_us_per_io'], '{:.1f}')} µs" for k, r, a in slow]
    stats = by_round(glob.glob(os.path.join(outdir, "raw", "r*-rust*.stats")))
    if stats:
        body += ["", f"virtio_scsi_rs per-queue counters after the last run ({os.path.basename(stats[-1])}):",
                 "", "```", open(stats[-1]).read().rstrip(), "```"]
    open(os.path.join(outdir, "results.md"), "w").write("\n".join(head + body) + "\n")
    plot(data, os.path.join(outdir, "iops.png"))
    print("\n".join(body[:len(rows)]))
    if len(sys.argv) > 2:
        readme = sys.argv[2]
        rel = os.path.relpath(os.path.join(outdir, "iops.png"), os.path.dirname(os.path.abspath(readme)))
        latest = ["<!-- bench-latest -->",
                  f"Latest run, {meta.get('DATE', '?')} ({os.path.relpath(outdir, os.path.dirname(os.path.abspath(readme)))}/results.md): "
                  + head[2], ""] + body[:len(rows)] + ["", f"![IOPS against iodepth per driver]({rel})",
                                                        "<!-- /bench-latest -->"]
        text = open(readme).read()
        a, b = text.index("<!-- bench-latest -->"), text.index("<!-- /bench-latest -->")
        open(readme, "w").write(text[:a] + "\n".join(latest) + text[b + len("<!-- /bench-latest -->"):])
    return 0


if __name__ == "__main__":
    sys.exit(main())
