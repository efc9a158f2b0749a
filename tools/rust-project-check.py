#!/usr/bin/env python3
"""Checks a rust-project.json (make rust-analyzer) as an editor would load it.

    tools/rust-project-check.py [rust-project.json]

Prints one "ok: ..." or "not ok: ..." line per check, exits non-zero on any
failure: the file loads as JSON; every crate's root module exists (relative
paths are taken from the file's directory, as rust-analyzer does); the
module's crate root, virtio_scsi_rs_main.rs, is there exactly once and
depends on the kernel's
`kernel` crate, which is rust/kernel/lib.rs of the kernel tree.
"""
import json
import os
import sys

path = sys.argv[1] if len(sys.argv) > 1 else "rust-project.json"
base = os.path.dirname(os.path.abspath(path))
failed = 0


def result(good, what):
    global failed
    print(("ok: " if good else "not ok: ") + what)
    failed += not good


def where(crate):
    return os.path.realpath(os.path.join(base, crate["root_module"]))


try:
    with open(path) as f:
        crates = json.load(f)["crates"]
except (OSError, ValueError, KeyError) as e:
    result(False, f"{path} loads as a rust-project.json: {e}")
    sys.exit(1)
result(True, f"{path} loads: {len(crates)} crates")

missing = [c["display_name"] for c in crates if not os.path.isfile(where(c))]
result(not missing, "every crate's root module exists" + (f" (missing: {missing})" if missing else ""))

root = os.path.realpath(os.path.join(base, "virtio_scsi_rs_main.rs"))
ours = [c for c in crates if where(c) == root]
result(len(ours) == 1, f"the crate root virtio_scsi_rs_main.rs is one crate ({len(ours)} found)")

kernel = [c for c in crates if c["display_name"] == "kernel"]
result(len(kernel) == 1 and where(kernel[0]).endswith("/rust/kernel/lib.rs"),
       "the kernel crate is there: " + (where(kernel[0]) if kernel else "none"))
deps = {crates[d["crate"]]["display_name"] for c in ours for d in c["deps"]}
result("kernel" in deps, f"virtio_scsi_rs depends on the kernel crate (deps: {sorted(deps)})")

sys.exit(1 if failed else 0)
