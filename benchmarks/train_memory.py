"""Training memory against dataset size: the in-memory split (v1 ``.npz`` cache) vs the
memory-mapped split (v2 ``.npy`` cache, :mod:`cxrtool.splitcache`), in one run.

Datasets: phantom datasets at 64 px in the ``build-dataset`` layout (``manifest.csv`` and one
PNG per image), written directly (not through ``build-dataset``, whose own cost is measured
elsewhere): 300 distinct phantoms per class (:func:`cxrtool.synthetic.make_phantom`) are
encoded once and written to N separate files (every file is read and decoded for real; the
pixel content repeats, which changes neither memory nor decode cost). N - 1,000 train and
1,000 val images.

Per size, each side runs in its own subprocess, the old code taken from ``git archive`` of
``--old-ref`` (default: where this branch left ``main``) and the new code from this tree,
interleaved: old cold, new cold, then ``--repeats`` x (old warm, new warm). Each side has its
own hard-linked copy of the dataset so neither deletes the other's cache.

``--old-ref`` may name any commit: against one that already has the memory-mapped split
(e.g. 356c5cb), the two sides differ in how ``read_manifest`` holds the rows (one ``Entry``
object per row vs columns), see docs/benchmarks.md. ``--old-cold-max`` (the old side's cache
written from the new one's) assumes an old side with the v1 ``.npz`` cache.

* cold: no cache yet; ``load_dataset`` builds it, then one whole epoch of the train split is
  read through ``make_feeder`` without a model (the memory of a build and of an epoch over
  every image; images/s of the feeder alone).
* warm: cache present; the same feeder epoch above ``--train-max``, else :func:`cxrtool.train.train` (``cnn``, ``--weights none``, 64 px, batch
  64, ``--steps-per-epoch --steps``, no calibration; validation and the OOD fit run as usual).
  XLA programs come from a JAX compilation cache shared by all runs (the first run fills it),
  so the runs do not spend most of their time compiling.

Measured per run: peak RSS (``ru_maxrss`` of the child from ``os.wait4``), peak anonymous
RSS (``RssAnon`` polled from ``/proc/PID/status`` every 50 ms: memory that is the process'
own, not page cache mapped from files), seconds until the splits were loaded/built, images/s
(train: over steps ``--warmup``..last, blocking on the device at both ends; also per CPU
second of the child, robust to other load) and the child's CPU seconds. Linux only.

    nice -n 15 python benchmarks/train_memory.py --sizes 10000 100000 300000 --json out.json
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DISTINCT = 300  # distinct phantoms per class
VAL = 1000
SIZE = 64

DRIVER = r"""
import json, sys, time
args = json.loads(sys.argv[1])
import numpy as np
from cxrtool.backend import import_keras
keras = import_keras()
out = {}
t0 = time.perf_counter()
def progress(ev):
    if ev.get("stage") == "load":
        out["load_s"] = round(time.perf_counter() - t0, 2)
if args["mode"] == "feeder":
    from cxrtool.inputs import load_dataset, make_feeder
    data = load_dataset(args["data"], args["size"], ("train",), progress=progress)
    split = data["train"]
    feeder = make_feeder(split.x, split.y, args["batch"], seed=0)
    t1 = time.perf_counter()
    total = 0
    for i in range(len(feeder)):
        total += len(feeder[i][0])
    out["images"] = total
    out["images_per_s"] = round(total / (time.perf_counter() - t1), 1)
    out["x_type"] = type(split.x).__name__
else:
    import jax
    from cxrtool.train import TrainOptions, train
    class Timer(keras.callbacks.Callback):
        t = {}
        def on_train_batch_end(self, step, logs=None):
            if step + 1 in (args["warmup"], args["steps"]):
                jax.block_until_ready(logs)
                self.t[step + 1] = (time.perf_counter(), time.process_time())
    timer = Timer()
    opts = TrainOptions(epochs=1, batch_size=args["batch"], image_size=args["size"], weights="none", seed=0,
                        calibrate=False, steps_per_epoch=args["steps"], fresh=True)
    res = train(args["data"], "cnn", options=opts, out=args["out"], progress=progress, callbacks=[timer])
    (w0, c0), (w1, c1) = timer.t[args["warmup"]], timer.t[args["steps"]]
    n = (args["steps"] - args["warmup"]) * args["batch"]
    out["images_per_s"] = round(n / (w1 - w0), 1)
    out["images_per_cpu_s"] = round(n / (c1 - c0), 1)
    out["val_loss"] = float(res.history[-1]["val_loss"])
out["seconds"] = round(time.perf_counter() - t0, 1)
print("RESULT " + json.dumps(out))
"""


def phantom_pngs(seed: int = 0) -> dict:
    """DISTINCT phantoms per class, PNG-encoded once: ``{(class, k): (bytes, sha256)}``."""
    from PIL import Image

    from cxrtool.labels import CLASSES
    from cxrtool.synthetic import make_phantom

    pngs = {}
    for c in CLASSES:
        for k in range(DISTINCT):
            buf = io.BytesIO()
            img = make_phantom(c, seed * 10_000_000 + CLASSES.index(c) * 10_000 + k, SIZE)
            Image.fromarray(img, mode="L").save(buf, "PNG")
            data = buf.getvalue()
            pngs[c, k] = (data, hashlib.sha256(data).hexdigest())
    return pngs


def make_dataset(root: Path, n: int, pngs: dict) -> Path:
    """N images (N - VAL train, VAL val) as PNG files plus manifest.csv; reused if complete."""
    from cxrtool.labels import CLASSES
    from cxrtool.manifest import COLUMNS, MANIFEST_NAME

    if (root / MANIFEST_NAME).is_file():
        return root
    shutil.rmtree(root, ignore_errors=True)
    for split in ("train", "val"):
        for label in CLASSES:
            (root / split / label).mkdir(parents=True)
    rows = []
    for i in range(n):
        split = "val" if i < VAL else "train"
        label = CLASSES[i % len(CLASSES)]
        data, digest = pngs[label, (i // len(CLASSES)) % DISTINCT]
        rel = f"{split}/{label}/{label}-{i:07d}.png"
        with open(root / rel, "wb") as fh:
            fh.write(data)
        row = dict.fromkeys(COLUMNS, "")
        row.update(file=rel, label=label, split=split, source="phantom", source_file=rel, group=f"g{i}",
                   patient=f"p{i}", sha256=digest, file_sha256=digest, phash="0" * 16, width=SIZE, height=SIZE)
        rows.append(row)
    tmp = root / (MANIFEST_NAME + ".partial")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(root / MANIFEST_NAME)  # the manifest last: a half-written dataset is never reused
    return root


def linked_copy(src: Path, dst: Path) -> Path:
    """A hard-linked copy of the dataset (without its cache): each side keeps its own cache."""
    if not (dst / "manifest.csv").is_file():
        shutil.rmtree(dst, ignore_errors=True)
        subprocess.run(["cp", "-al", str(src), str(dst)], check=True)
        shutil.rmtree(dst / ".cache", ignore_errors=True)
    return dst


def old_cache_from_new(new: Path, old: Path) -> None:
    """Write the old side's v1 ``.npz`` caches from the new side's ``.npy`` ones (same pixels,
    the old format: ``x`` and ``files``), so a size whose old cold build is skipped still gets
    old warm runs without decoding every image again."""
    import numpy as np

    from cxrtool.manifest import read_manifest

    manifest = read_manifest(old)
    fp = manifest.fingerprint[:16]
    (old / ".cache").mkdir(exist_ok=True)
    for split in ("train", "val"):
        found = list((new / ".cache").glob(f"{split}-{SIZE}px-*-v2.npy"))
        if not found:  # feeder runs load the train split only
            continue
        x = np.load(found[0], mmap_mode="r")
        files = np.asarray([e.file for e in manifest.split(split)], dtype=str)
        tmp = old / ".cache" / f"{split}-{SIZE}px-{fp}-v1.partial.npz"
        np.savez(tmp, x=x, files=files)
        tmp.replace(old / ".cache" / f"{split}-{SIZE}px-{fp}-v1.npz")


def export_source(ref: str, dst: Path) -> Path:
    """``cxrtool/`` as it is at git REF, unpacked into DST."""
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    blob = subprocess.run(["git", "-C", str(REPO), "archive", ref, "cxrtool"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(dst, filter="data")
    return dst


JAX_CACHE = {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1"}


def run(src: Path, args: dict, nice: int) -> dict:
    """One driver run under PYTHONPATH=SRC: its RESULT plus peak RSS, peak RssAnon and CPU time."""
    env = {**os.environ, "PYTHONPATH": str(src), "KERAS_BACKEND": "jax", **JAX_CACHE}
    cmd = [sys.executable, "-c", DRIVER, json.dumps(args)]
    # cwd=SRC: ``python -c`` puts the working directory first on sys.path
    proc = subprocess.Popen(cmd, env=env, cwd=src, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=(lambda: os.nice(nice)) if nice else None)
    peak_anon = [0]
    stop = threading.Event()

    def poll():
        status = Path(f"/proc/{proc.pid}/status")
        while not stop.is_set():
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("RssAnon:"):
                        peak_anon[0] = max(peak_anon[0], int(line.split()[1]))
            except OSError:
                return
            stop.wait(0.05)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    stdout = proc.stdout.read()
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    stop.set()
    watcher.join()
    if proc.returncode != 0:
        raise RuntimeError(f"driver failed ({proc.returncode}): {stderr[-3000:]}")
    result = json.loads(next(line for line in stdout.splitlines() if line.startswith("RESULT "))[7:])
    result.update(peak_rss_mb=round(usage.ru_maxrss / 1024, 1), peak_anon_mb=round(peak_anon[0] / 1024, 1),
                  cpu_s=round(usage.ru_utime + usage.ru_stime, 1))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 300_000])
    ap.add_argument("--work", type=Path, default=Path("/tmp/cxrtool-train-memory"))
    ap.add_argument("--old-ref", default=None, help="git ref of the old code (default: merge-base with main)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--nice", type=int, default=0, help="niceness of the child runs")
    ap.add_argument("--old-cold-max", type=int, default=10**9,
                    help="above this size, skip the old side's cold build: its cache is written from the new one")
    ap.add_argument("--train-max", type=int, default=10**9,
                    help="above this size, warm runs read one epoch through the feeder instead of training")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()

    ref = a.old_ref or subprocess.run(["git", "-C", str(REPO), "merge-base", "HEAD", "main"], check=True,
                                      capture_output=True, text=True).stdout.strip()
    a.work.mkdir(parents=True, exist_ok=True)
    JAX_CACHE["JAX_COMPILATION_CACHE_DIR"] = str(a.work / "jax-cache")
    sides = {"old": export_source(ref, a.work / "old-src"), "new": REPO}
    report = {"old_ref": ref, "load_start": os.getloadavg(), "cpus": os.cpu_count(), "steps": a.steps,
              "warmup": a.warmup, "batch": a.batch, "size": SIZE, "results": []}
    pngs = phantom_pngs()
    for n in a.sizes:
        t = time.perf_counter()
        base = make_dataset(a.work / f"ds-{n}", n, pngs)
        print(f"# dataset {n}: {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
        data = {side: linked_copy(base, a.work / f"ds-{n}-{side}") for side in sides}
        for side in sides:
            shutil.rmtree(data[side] / ".cache", ignore_errors=True)
        cold = list(sides) if n <= a.old_cold_max else ["new"]
        plan = [("cold", s) for s in cold] + [("warm", s) for _ in range(a.repeats) for s in sides]
        for kind, side in plan:
            if kind == "warm" and "old" not in cold and not any((data["old"] / ".cache").glob("*.npz")):
                old_cache_from_new(data["new"], data["old"])
            mode = "train" if kind == "warm" and n <= a.train_max else "feeder"
            args = {"mode": mode, "data": str(data[side]), "size": SIZE,
                    "batch": a.batch, "steps": a.steps, "warmup": a.warmup, "out": str(a.work / f"m-{side}.keras")}
            r = run(sides[side], args, a.nice)
            r.update(n=n, side=side, kind=kind, mode=mode, load=os.getloadavg()[0])
            report["results"].append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
            if a.json:
                a.json.write_text(json.dumps(report, indent=1))
    report["load_end"] = os.getloadavg()
    text = json.dumps(report, indent=1)
    if a.json:
        a.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
