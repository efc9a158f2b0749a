#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Guest side of make fuzz-shrink (issue 20): narrows one fuzz seed's lies
down to a few that still lead to a finding.

A trial is one run of testdev_fuzz.sh for the seed (VSRS_FUZZ_SEEDS, the
module loaded and unloaded by it, VSRS_FUZZ_SECONDS of lies) telling only a
subset of the lies (VSRS_FUZZ_ONLY: the device still draws every lie, so
the lie named "0:1#7" is the 7th drawn for LUN 0:1's commands, whatever
came between). A trial reproduces when MATCH, a regular expression, matches its
kernel log or one of its "not ok" lines. The first trial tells every lie and
gives the list to shrink (the device's "told"); then ddmin (Zeller), one
trial per subset, up to --trials; the smallest list found is tried again
--confirm times. A guest's request order varies from run to run, so a trial
can miss: the confirmation counts say how often the result reproduces.

Prints "# shrink: ..." lines and, last, a result line "ok - shrink: seed S
only [N ...] (K of M lies), reproduced R of C" ("not ok" when the finding
does not appear with every lie told, or the result never reproduced).
"""

import argparse
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PORT = "/dev/virtio-ports/vsrs.testdev"


def say(msg):
    print(f"# shrink: {msg}", flush=True)


def ctl(cmd):
    """One command on the test device's control socket; its reply line."""
    fd = os.open(PORT, os.O_RDWR)
    try:
        os.write(fd, (cmd + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
        return buf.decode()
    finally:
        os.close(fd)


def result(good, what):
    """One result line of this test, on its output and in the kernel log
    (run_tests.sh takes them from there when the output lost some)."""
    line = f"{'ok' if good else 'not ok'} - shrink: {what}"
    print(line, flush=True)
    with open("/dev/kmsg", "w") as k:
        k.write(f"vsrs-tap: {line}\n")


def dmesg_lines():
    return subprocess.run(["dmesg"], capture_output=True, text=True).stdout.splitlines()


class Shrinker:
    def __init__(self, args):
        self.args = args
        self.match = re.compile(args.match)
        self.trials = 0

    def trial(self, only):
        """Runs the seed telling only `only` (None: every lie); whether
        MATCH was seen."""
        self.trials += 1
        env = dict(os.environ)
        env.update(
            VSRS_FUZZ_SEEDS=str(self.args.seed),
            VSRS_FUZZ_SECONDS=str(self.args.seconds),
            VSRS_FUZZ_ONLY="" if only is None else " ".join(only),
        )
        env.pop("VSRS_FUZZ_EXPECT", None)
        # Its results are this test's to judge: not result lines of the run.
        env["VSRS_NESTED"] = "1"
        # Each trial's kernel log alone (and no ring buffer wrapped by the
        # trials before).
        subprocess.run(["dmesg", "-C"], check=True)
        out = subprocess.run(
            [os.path.join(HERE, "testdev_fuzz.sh")],
            env=env,
            capture_output=True,
            text=True,
        ).stdout.splitlines()
        log = [l for l in dmesg_lines() if "vsrs-tap: " not in l]
        failed = [l for l in out if l.startswith("not ok")]
        hit = any(self.match.search(l) for l in log + failed)
        what = "all" if only is None else f"{len(only)}"
        say(f"trial {self.trials}: {what} lies: {'reproduced' if hit else 'not reproduced'}"
            f" ({len(failed)} failed checks)")
        return hit

    def ddmin(self, lies):
        """Zeller's ddmin over `lies` (which reproduce), within the trial
        budget: the smallest reproducing list found."""
        n = 2
        while len(lies) >= 2 and self.trials < self.args.trials:
            size = len(lies) // n
            chunks = [lies[i * size:(i + 1) * size if i < n - 1 else len(lies)] for i in range(n)]
            for c in chunks:
                if self.trials >= self.args.trials:
                    return lies
                if self.trial(c):
                    lies, n = c, 2
                    say(f"down to {len(lies)} lies")
                    break
            else:
                for i in range(n):
                    if self.trials >= self.args.trials:
                        return lies
                    rest = [x for j, c in enumerate(chunks) if j != i for x in c]
                    if n > 2 and self.trial(rest):
                        lies, n = rest, max(n - 1, 2)
                        say(f"down to {len(lies)} lies")
                        break
                else:
                    if n >= len(lies):
                        return lies
                    n = min(2 * n, len(lies))
        return lies


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--match", required=True, help="regular expression: the finding")
    p.add_argument("--seconds", type=int, default=30, help="lies per trial (s)")
    p.add_argument("--trials", type=int, default=30, help="trials at most")
    p.add_argument("--confirm", type=int, default=3, help="re-runs of the result")
    args = p.parse_args()
    s = Shrinker(args)
    say(f"seed {args.seed}, {args.seconds} s a trial, at most {args.trials} trials, match /{args.match}/")
    if not s.trial(None):
        result(False, f"seed {args.seed}: /{args.match}/ did not appear with every lie told")
        return 0
    lies = json.loads(ctl('{"cmd":"fuzz","told":true}')).get("told", [])
    say(f"{len(lies)} lies told")
    small = s.ddmin(lies)
    seen = sum(s.trial(small) for _ in range(args.confirm))
    found = (f"seed {args.seed} only [{' '.join(small)}] ({len(small)} of {len(lies)} lies),"
             f" reproduced {seen} of {args.confirm}")
    say(f"result {found}")
    result(seen > 0, found)
    return 0


if __name__ == "__main__":
    sys.exit(main())
