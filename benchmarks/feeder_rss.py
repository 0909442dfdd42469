"""Resident memory of one feeder epoch over a memory-mapped split, against the split's size.

    python benchmarks/feeder_rss.py DATASET [DATASET ...] [--code DIR] [--every 10]

For each DATASET (a build-dataset layout whose 64 px train cache exists, e.g. the datasets
``benchmarks/train_memory.py`` writes under /tmp/cxrtool-train-memory/), in a fresh process:
``load_dataset`` (train split, 64 px), then one whole epoch of ``make_feeder`` batches (batch
64) without a model, polling ``/proc/self/status`` every ``--every`` batches. Prints one JSON
line per dataset: the largest VmRSS, RssAnon (the process' own memory) and RssFile (file
pages mapped: shared libraries plus whatever of the cache the epoch left mapped), in MB, and
the epoch's images/s. ``--code DIR`` runs another checkout's cxrtool (e.g. a ``git archive``
export of an older commit) for a before/after pair in one invocation. Linux only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, sys, time
def status():
    d = {}
    for line in open("/proc/self/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "RssAnon", "RssFile"):
            d[k] = int(v.split()[0]) // 1024
    return d
from cxrtool.backend import import_keras
import_keras()
import cxrtool
from cxrtool.inputs import load_dataset, make_feeder
data, every = sys.argv[1], int(sys.argv[2])
split = load_dataset(data, 64, ("train",))["train"]
after_load = status()
feeder = make_feeder(split.x, split.y, 64, seed=0)
peak, t0, n = dict(after_load), time.perf_counter(), 0
for i in range(len(feeder)):
    n += len(feeder[i][0])
    if i % every == 0:
        peak = {k: max(v, peak[k]) for k, v in status().items()}
seconds = time.perf_counter() - t0
print(json.dumps({"data": data, "images": len(split.y), "after_load_mb": after_load,
                  "peak_mb": peak, "images_per_s": round(n / seconds),
                  "cxrtool": cxrtool.__file__}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("datasets", nargs="+")
    ap.add_argument("--code", help="a checkout whose cxrtool to run (default: this one)")
    ap.add_argument("--every", type=int, default=10)
    args = ap.parse_args()
    env = dict(os.environ)
    if args.code:
        env["PYTHONPATH"] = os.path.abspath(args.code)
    for data in args.datasets:
        # cwd "/": ``python -c`` puts the working directory first on sys.path, before PYTHONPATH
        out = subprocess.run([sys.executable, "-c", CHILD, os.path.abspath(data), str(args.every)], env=env,
                             cwd="/", capture_output=True, text=True, check=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        row["code"] = args.code or "this checkout"
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
