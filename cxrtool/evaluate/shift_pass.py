"""``evaluate --shift``: the same images again, under each acquisition shift and severity.

After the clean evaluation, the evaluated images are decoded again at their original
resolution, in chunks (so a large set never sits in memory whole), each chunk is transformed
by every (shift, severity) of :mod:`.shifts` in a thread pool, resized with the one resize
(:func:`cxrtool.inputs.resize_image`) and predicted by every model. Per condition and model the
numbers come from :func:`.metrics.compute_metrics` without a bootstrap (speed): accuracy, macro
F1, macro AUC, top-label ECE, mean confidence and per-class recall. Returns the ``shifts``
section of ``metrics.json``; draws and writes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..progress import ProgressFn, report
from .evalset import Item
from .metrics import compute_metrics
from .shifts import SHIFTS, describe, image_rng

#: about this many images decoded and transformed at a time (rounded to whole batches)
CHUNK_IMAGES = 128


def summarise(metrics: dict) -> dict:
    """The numbers kept per condition: from a full :func:`compute_metrics` result."""
    return {
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro"]["f1"],
        "auc_macro": metrics["macro"]["auc"],
        "ece": metrics["calibration"]["ece"],
        "mean_confidence": metrics["calibration"]["mean_confidence"],
        "recall": {c: v["recall"] for c, v in metrics["per_class"].items()},
    }


def shift_pass(
    items: Sequence[Item],
    y: np.ndarray,
    classes: Sequence[str],
    refs: Sequence[tuple[str, Path, Any]],
    conditions: Sequence[tuple[str, int]],
    clean: dict[str, dict],
    *,
    batch_size: int = 64,
    seed: int = 0,
    n_bins: int = 10,
    workers: int | None = None,
    loaded: Mapping[str, Any] | None = None,
    progress: ProgressFn | None = None,
) -> dict:
    """Evaluate every model of ``refs`` (``(label, path, info)``) on ``items`` under each
    ``(shift, severity)`` of ``conditions``. ``clean``: each model's clean metrics (severity 0).
    ``loaded``: models already loaded by the clean pass, by label (the others are loaded here).

    Returns ``{"seed", "images", "definitions", "seconds", "models": {label: {"clean": {...},
    "shifts": {shift: {"1": {...}, ...}}}}}``."""
    from ..artifact import load_model
    from ..imageio import load_image
    from ..inference import predict_batches
    from ..inputs import resize_image
    from ..workers import default_workers

    start = time.perf_counter()
    n = len(items)
    sizes = sorted({info.image_size for _, _, info in refs})
    loaded = loaded or {}
    models = [(label, loaded.get(label) or load_model(path), info, [list(info.classes).index(c) for c in classes])
              for label, path, info in refs]
    probs = {label: {c: np.zeros((n, len(classes)), np.float64) for c in conditions} for label, *_ in models}
    chunk = batch_size * max(1, CHUNK_IMAGES // batch_size)  # whole batches: one partial batch shape per run
    steps = len(conditions) * -(-n // chunk)
    report(progress, "shift", 0, steps, message=f"shift pass: {len(conditions)} shifted copies of {n} images "
           f"({len(sorted({s for s, _ in conditions}))} shifts) x {len(models)} model(s)")
    done = 0
    with ThreadPoolExecutor(max_workers=default_workers(cap=8, requested=workers)) as pool:
        for lo in range(0, n, chunk):
            originals = list(pool.map(lambda item: load_image(item.path), items[lo : lo + chunk]))
            for shift, severity in conditions:
                def one(i: int, shift=shift, severity=severity) -> dict[int, np.ndarray]:
                    img = SHIFTS[shift].apply(originals[i], severity, image_rng(seed, shift, severity, lo + i))
                    return {s: resize_image(img, s) for s in sizes}

                resized = list(pool.map(one, range(len(originals))))
                for label, loaded, info, order in models:
                    x = np.stack([r[info.image_size] for r in resized]).astype(np.float32)[..., None]
                    batches = (x[i : i + batch_size] for i in range(0, len(x), batch_size))
                    out = np.concatenate(list(predict_batches(loaded, batches)))
                    probs[label][(shift, severity)][lo : lo + len(x)] = out[:, order]
                done += 1
                report(progress, "shift", done, steps)

    result: dict[str, dict] = {}
    for label, *_ in models:
        per_shift: dict[str, dict] = {}
        for (shift, severity), p in probs[label].items():
            metrics, _ = compute_metrics(y, p, classes, n_boot=0, n_bins=n_bins)
            per_shift.setdefault(shift, {})[str(severity)] = summarise(metrics)
        result[label] = {"clean": summarise(clean[label]), "shifts": per_shift}
    chosen = sorted({s for s, _ in conditions}, key=list(SHIFTS).index)
    return {
        "seed": seed,
        "images": n,
        "definitions": {k: v for k, v in describe().items() if k in chosen},
        "seconds": {"shift_pass": time.perf_counter() - start},
        "models": result,
    }


def worst_drops(section: dict, top: int = 5) -> list[dict]:
    """The ``top`` conditions per model that cost the most accuracy against the clean images:
    ``[{"model", "shift", "severity", "accuracy", "clean_accuracy", "drop", ...}]``, worst first."""
    rows = []
    for label, m in section["models"].items():
        mine = []
        for shift, levels in m["shifts"].items():
            for sev, v in levels.items():
                mine.append({"model": label, "shift": shift, "severity": int(sev), **v,
                             "clean_accuracy": m["clean"]["accuracy"],
                             "drop": m["clean"]["accuracy"] - v["accuracy"]})
        rows += sorted(mine, key=lambda r: (-r["drop"], r["shift"], r["severity"]))[:top]
    return rows


__all__ = ["shift_pass", "summarise", "worst_drops"]
