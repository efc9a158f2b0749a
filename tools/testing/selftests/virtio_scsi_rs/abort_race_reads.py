#!/usr/bin/python3 -IS
# SPDX-License-Identifier: GPL-2.0
"""Guest helper of abort_race.sh: many direct reads of one disk at once.

    abort_race_reads.py DEV PATTERN FIRST COUNT SLOT TIMEOUT

Reads j = FIRST .. FIRST+COUNT-1 of DEV, one thread each, all released
together (a barrier) so that they reach the device within milliseconds:
read j is at offset j*SLOT, 4096 * (1 + (j*7) % 16) bytes long (4-64 KiB),
O_DIRECT, and must return the bytes of PATTERN at that offset. One process
for all of them: a process per read (dd) takes seconds to start them all in
a TCG guest, long enough for the first reads to time out, be retried and be
held again before the last ones are sent.

Prints a line for each read that failed ("read J (offset O, S bytes): WHAT")
and, last, "summary ok N io_errors N wrong N hung N first_ms N ms N" (hung:
not done after TIMEOUT s; first_ms, ms: from the barrier to the first and
the last read done).
"""

import mmap
import os
import sys
import threading
import time


def main():
    dev, pattern = sys.argv[1], sys.argv[2]
    first, count, slot, timeout = (int(a) for a in sys.argv[3:7])
    fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
    pfd = os.open(pattern, os.O_RDONLY)
    start = threading.Barrier(count + 1)
    results = [None] * count
    done_at = [0.0] * count

    def reader(i):
        j = first + i
        off, size = j * slot, 4096 * (1 + (j * 7) % 16)
        buf = mmap.mmap(-1, size)  # page-aligned, as O_DIRECT wants
        want = os.pread(pfd, size, off)
        start.wait()
        try:
            n = os.preadv(fd, [buf], off)
        except OSError as e:
            results[i] = f"I/O error ({e.strerror})"
        else:
            if n != size:
                results[i] = f"short read ({n} bytes)"
            elif buf[:size] != want:
                results[i] = "not the data written"
            else:
                results[i] = "ok"
        done_at[i] = time.monotonic()

    threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.monotonic()
    for t in threads:
        t.join(max(0.0, t0 + timeout - time.monotonic()))
    tally = {"ok": 0, "io_errors": 0, "wrong": 0, "hung": 0}
    for i, r in enumerate(results):
        j = first + i
        if r is None:
            r = f"not done after {timeout} s"
            tally["hung"] += 1
        elif r == "ok":
            tally["ok"] += 1
            continue
        elif r.startswith("I/O error"):
            tally["io_errors"] += 1
        else:
            tally["wrong"] += 1
        print(f"read {j} (offset {j * slot}, {4096 * (1 + (j * 7) % 16)} bytes): {r}")
    ended = [t for t in done_at if t > 0]
    first = min(ended) if ended else time.monotonic()
    last = max(ended) if tally["hung"] == 0 else time.monotonic()
    print(
        "summary "
        + " ".join(f"{k} {v}" for k, v in tally.items())
        + f" first_ms {int((first - t0) * 1000)} ms {int((last - t0) * 1000)}"
    )
    sys.stdout.flush()
    # A hung read's thread cannot be joined: leave without waiting for it.
    os._exit(0)


main()
