#!/usr/bin/python3
"""make bench --cost: the table (cost.md) of instructions per I/O from a
results directory's raw/cost.jsonl (tools/bench/guest.sh run_cost).

    cost_report.py RESULTS_DIR

Per row and driver, over the rounds (each round measured both drivers in the
same guest, one after the other):
- fio CPU / I/O: the fio job's CPU time over its I/Os (10N of them): the
  whole guest stack per I/O as the submitting task sees it (completions that
  interrupt an idle CPU are not in it);
- driver path / I/O: the median instructions of one submission
  (scsi_queue_rq, from the calls no interrupt arrived in: cost.py) plus the
  instructions per command of the completion passes (vring_interrupt or
  scsi_mq_poll, scsi_done excluded) at the row's commands per pass: the
  part that differs between drivers. How many commands a pass finds at
  depth depends on how fast the host answered (it moved the mean cost per
  command by up to 15% between rounds), so each measurement's passes are
  fitted as a fixed part a and a part b per command (least squares over
  the passes, weighted by their number), and the completion is a/k + b at
  k, the mean commands per pass of the row over both drivers and every
  round: the same batching for both. Where a measurement's passes all
  completed the same number of commands (qd1), its mean per command;
- completion measured: the mean instructions per command as measured
  (the passes as they came), and the mean commands per pass;
Each is the median over rounds with its spread, the largest deviation of a
round from the median in percent. Rust/C is the ratio of the medians, with
the range of the per-round ratios.
"""
import json
import os
import statistics
import sys

from report import read_env

COLUMNS = ("fio", "path", "submit", "complete", "batch")


def passes(rec):
    """[(commands, passes, mean cost)] of a measurement's completion passes."""
    return [(int(k), v["n"], v["mean"]) for k, v in rec["trace"].get("completion_passes", {}).items()]


def per_pass(ps):
    """Mean commands per pass."""
    n = sum(w for _, w, _ in ps)
    return sum(w * k for k, w, _ in ps) / n if n else None


def fit(ps):
    """(a, b) of cost = a + b * commands, least squares weighted by the
    number of passes; None when every pass completed as many commands."""
    mk = per_pass(ps)
    if mk is None:
        return None
    mc = sum(w * c for _, w, c in ps) / sum(w for _, w, _ in ps)
    skk = sum(w * (k - mk) ** 2 for k, w, _ in ps)
    if skk == 0:
        return None
    b = sum(w * (k - mk) * (c - mc) for k, w, c in ps) / skk
    return mc - b * mk, b


def measures(rec, k_row):
    t = rec["trace"]
    fio = rec["fio"]["per_io"]
    submit = t.get("scsi_queue_rq_alone", {}).get("median")
    measured = t.get("completion_per_cmd", {}).get("mean")
    ps = passes(rec)
    ab = fit(ps)
    complete = ab[0] / k_row + ab[1] if ab and k_row else measured
    path = submit + complete if submit is not None and complete is not None else None
    return {"fio": fio, "path": path, "submit": submit, "complete": measured, "batch": per_pass(ps)}


def spread(values):
    m = statistics.median(values)
    return max(abs(v - m) for v in values) / m * 100 if m else 0.0


def main(out):
    recs = [json.loads(line) for line in open(os.path.join(out, "raw", "cost.jsonl")) if line.strip()]
    env = read_env(os.path.join(out, "meta.env"))
    rows = []
    for r in recs:
        if r["row"] not in rows:
            rows.append(r["row"])
    k_rows = {}  # row -> its commands per pass, every measurement's passes
    for row in rows:
        k_rows[row] = per_pass([p for r in recs if r["row"] == row for p in passes(r)])
    by = {}  # (row, driver) -> {round: measures}
    for r in recs:
        by.setdefault((r["row"], r["driver"]), {})[r["round"]] = measures(r, k_rows[r["row"]])
    lines = [
        f"# Instructions per I/O ({env.get('DATE', '?')}, QEMU -icount {env.get('ICOUNT', '?')})",
        "",
        f"Kernel {env.get('KERNEL', '?')}, {env.get('CPUS', '?')} vCPU ({env.get('CPUS_POLLED', '?')} for the polled "
        "rows, the second one idle), fio pinned to CPU 0, null-co disk, "
        f"{env.get('COST_IOS', '?')} I/Os per measurement, {env.get('ROUNDS', '?')} rounds (driver order "
        f"alternating, row order seeded with {env.get('COST_SEED', '?')}), module {env.get('MODULE_COMMIT', '?')}.",
        "Guest time counts instructions: every number is an instruction count. Median over rounds, "
        "± the largest deviation of a round from it (%); Rust/C: ratio of the medians [range of the "
        "per-round ratios]. Columns: see tools/bench/cost_report.py.",
        "",
        "| row | fio CPU/IO C | Rust | Rust/C | driver path/IO C | Rust | Rust/C | submit C | Rust "
        "| completion measured C | Rust | commands/pass C | Rust |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    summary = {}
    for row in rows:
        c, rs = by.get((row, "c"), {}), by.get((row, "rust"), {})
        cells = [row]
        for col in COLUMNS:
            vc = [m[col] for m in c.values() if m[col] is not None]
            vr = [m[col] for m in rs.values() if m[col] is not None]
            if not vc or not vr:
                cells += ["–", "–"] + (["–"] if col in ("fio", "path") else [])
                continue
            mc, mr = statistics.median(vc), statistics.median(vr)
            if col == "batch":
                cells += [f"{mc:.2f}", f"{mr:.2f}"]
                continue
            cells += [f"{mc:,.0f} ±{spread(vc):.1f}%", f"{mr:,.0f} ±{spread(vr):.1f}%"]
            if col in ("fio", "path"):
                per_round = [rs[k][col] / c[k][col] for k in sorted(set(c) & set(rs))
                             if rs[k][col] is not None and c[k][col]]
                lo, hi = (min(per_round), max(per_round)) if per_round else (0, 0)
                bold = "**" if len(per_round) >= 2 and hi < 1.0 else ""
                cells.append(f"{bold}{mr / mc:.3f}{bold} [{lo:.3f}, {hi:.3f}]")
                summary.setdefault(col, []).append(mr / mc)
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Bold: at least two rounds, and every round's ratio below 1.00.")
    for d, name in (("c", "C"), ("rust", "Rust")):
        shares = [t.get("scsi_queue_rq_alone", {}).get("calls", 0) / t["scsi_queue_rq"]["calls"] * 100
                  for r in recs if r["driver"] == d
                  for t in [r["trace"]] if t.get("scsi_queue_rq", {}).get("calls")]
        if shares:
            lines.append(f"Submissions no interrupt arrived in (those counted), {name}: "
                         f"{min(shares):.0f}-{max(shares):.0f}% of the calls per row and round.")
    for col, label in (("fio", "fio CPU/IO"), ("path", "driver path/IO")):
        v = summary.get(col)
        if v:
            geo = statistics.geometric_mean(v)
            lines.append(f"Geometric mean of Rust/C, {label}: {geo:.3f} over {len(v)} rows; "
                         f"rows above 1.00: {sum(x > 1 for x in v)}.")
    text = "\n".join(lines) + "\n"
    open(os.path.join(out, "cost.md"), "w").write(text)
    print(text)
    return 0 if recs else 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
