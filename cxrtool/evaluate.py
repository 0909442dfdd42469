"""Evaluation: the library behind ``cxrtool evaluate`` (the paper's Table III, Fig. 6 and Fig. 7,
plus what the paper did not measure).

For each model, on one split of a dataset (or on any folder of class sub-folders):

* per-class precision, recall, F1 and support; accuracy; macro and weighted averages; one-
  vs-rest ROC AUC per class and macro; log-loss; the confusion matrix -- all scikit-learn;
* 95% bootstrap confidence intervals for accuracy and macro F1, resampling whole *groups*
  (the manifest's duplicate/patient groups) so near-copies do not shrink the interval;
* calibration: top-label expected calibration error and a reliability diagram;
* a per-source breakdown (accuracy, per-class recall, what was predicted) because a high
  overall score can hide a model that learned where an image came from.

Images that cannot be read are counted, listed and excluded, never silently.
:func:`evaluate` returns the metrics document (what ``metrics.json`` holds) and, with ``out``,
writes ``metrics.json``, ``report.md``, ``predictions.csv`` and the figures there.

Importing this module is cheap; Keras, scikit-learn and matplotlib are imported lazily.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import re
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from . import CLASSES, __version__
from .errors import DatasetError, ImageLoadError, ModelFormatError, UsageError

FORMATS = ("table", "json", "markdown")
ProgressFn = Callable[[dict], None]


# --------------------------------------------------------------------------------------
# the evaluation set: a dataset split or a folder of class sub-folders
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    path: Path
    file: str  # relative to the set's root
    label: str
    source: str
    group: str


@dataclass
class EvalSet:
    root: Path
    kind: str  # "dataset" (manifest.csv) | "folder" (class sub-folders)
    split: str | None
    classes: tuple[str, ...]
    items: list[Item]
    fingerprint: str
    manifest: Any = None
    notes: list[str] = field(default_factory=list)


def open_eval_set(path: str | Path, split: str = "test") -> EvalSet:
    """A dataset folder (``manifest.csv``: its ``split``) or a folder of class sub-folders
    (``covid/``, ``pneumonia/``, ``normal/``, any case; one source; every image its own group)."""
    from .manifest import MANIFEST_NAME, SPLITS, read_manifest

    root = Path(path)
    if not root.exists():
        raise DatasetError(f"{root}: no such folder")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder (expected a dataset with manifest.csv or a folder of class sub-folders)")
    if (root / MANIFEST_NAME).is_file():
        if split not in SPLITS:
            raise UsageError(f"--split must be one of {', '.join(SPLITS)} (got {split!r})")
        manifest = read_manifest(root)
        entries = manifest.split(split)
        if not entries:
            have = Counter(e.split for e in manifest.entries)
            listing = ", ".join(f"{s} {have[s]}" for s in SPLITS if have[s]) or "no rows at all"
            raise DatasetError(f"{root}: the {split} split is empty (the manifest has {listing})")
        items = [Item(e.path, e.file, e.label, e.source or "unknown", e.group or e.file) for e in entries]
        return EvalSet(root, "dataset", split, tuple(manifest.classes), items, manifest.fingerprint, manifest)

    from .imageio import find_images

    known = {c.lower(): c for c in CLASSES}
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    matched = [(d, known[d.name.lower()]) for d in subdirs if d.name.lower() in known]
    if not matched:
        raise DatasetError(
            f"{root}: neither a dataset (no {MANIFEST_NAME}) nor a folder of class sub-folders "
            f"({', '.join(CLASSES)})"
        )
    labels = [c for _, c in matched]
    dup = {c for c in labels if labels.count(c) > 1}
    if dup:
        raise DatasetError(f"{root}: several sub-folders map to the class {', '.join(sorted(dup))} (names differ only in case)")
    notes = []
    ignored = [d.name for d in subdirs if d.name.lower() not in known]
    if ignored:
        notes.append(f"ignored sub-folders that are not classes: {', '.join(ignored)}")
    if split != "test":
        notes.append(f"--split {split} ignored: {root} is a folder of class sub-folders, not a dataset")
    source = root.resolve().name or "external"
    items = []
    for d, label in matched:
        for p in find_images(d):
            rel = p.relative_to(root).as_posix()
            items.append(Item(p, rel, label, source, rel))
    if not items:
        raise DatasetError(f"{root}: the class sub-folders hold no image files")
    return EvalSet(root, "folder", None, tuple(CLASSES), items, _folder_fingerprint(root, items), None, notes)


def _folder_fingerprint(root: Path, items: Sequence[Item]) -> str:
    """SHA-256 over (relative path, label, file SHA-256) of every image, sorted."""
    import hashlib

    outer = hashlib.sha256()
    for item in sorted(items, key=lambda i: i.file):
        try:
            digest = hashlib.sha256(item.path.read_bytes()).hexdigest()
        except OSError:
            digest = "unreadable"
        outer.update(f"{item.file}\t{item.label}\t{digest}\n".encode())
    return outer.hexdigest()


def load_images(
    items: Sequence[Item], sizes: Sequence[int], *, workers: int | None = None, progress: ProgressFn | None = None
) -> tuple[dict[int, np.ndarray], np.ndarray, list[dict]]:
    """Decode every image once and resize it to each of ``sizes`` (as training does).

    Returns ``({size: (n_ok, size, size) uint8}, ok mask (n,), failures)``; a failure is
    ``{"file", "kind", "reason"}`` and the image is excluded.
    """
    from .inputs import resize_image
    from .imageio import load_image

    n = len(items)
    full = {s: np.zeros((n, s, s), np.uint8) for s in sizes}
    ok = np.zeros(n, bool)
    failures: dict[int, dict] = {}

    def one(i: int) -> None:
        try:
            pixels = load_image(items[i].path)
        except ImageLoadError as exc:
            failures[i] = {"file": items[i].file, "kind": exc.kind, "reason": exc.reason}
            return
        for s in sizes:
            full[s][i] = resize_image(pixels, s)
        ok[i] = True

    done = 0
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        for _ in pool.map(one, range(n)):
            done += 1
            if progress:
                progress({"event": "load", "done": done, "total": n})
    return {s: a[ok] for s, a in full.items()}, ok, [failures[i] for i in sorted(failures)]


def _load_set_images(es: EvalSet, sizes: Sequence[int], progress: ProgressFn | None):
    """Use the dataset's decoded-split cache when every image reads; else the per-file path."""
    if es.manifest is not None:
        from .inputs import load_split

        try:
            arrays = {s: load_split(es.manifest, es.split, s).x for s in sizes}
            return arrays, np.ones(len(es.items), bool), []
        except DatasetError:  # an unreadable image: fall back to per-file loading that lists them
            pass
    return load_images(es.items, sizes, progress=progress)


# --------------------------------------------------------------------------------------
# metrics (pure numpy + scikit-learn; no Keras)
# --------------------------------------------------------------------------------------


def _none(x) -> float | None:
    x = float(x)
    return None if np.isnan(x) else x


def _normalise(probs: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probs, np.float64), 0.0, None)
    s = p.sum(axis=1, keepdims=True)
    return np.divide(p, s, out=np.full_like(p, 1.0 / p.shape[1]), where=s > 0)


def roc_curves(y: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> dict[str, dict]:
    """One-vs-rest ROC curve and AUC per class (``fpr``/``tpr``/``auc`` None when undefined)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    out = {}
    for j, c in enumerate(classes):
        pos = y == j
        if pos.all() or not pos.any():
            out[c] = {"fpr": None, "tpr": None, "auc": None}
            continue
        fpr, tpr, _ = roc_curve(pos, probs[:, j])
        out[c] = {"fpr": fpr, "tpr": tpr, "auc": float(roc_auc_score(pos, probs[:, j]))}
    return out


def calibration(y: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> dict:
    """Top-label calibration: ECE over ``n_bins`` equal-width confidence bins.

    Per-bin accuracy and mean confidence come from scikit-learn's ``calibration_curve``
    (``strategy="uniform"``, same bin edges); ECE = sum over bins of (bin share) x |accuracy -
    confidence|.
    """
    from sklearn.calibration import calibration_curve

    conf = np.clip(probs.max(axis=1), 0.0, 1.0)
    correct = (probs.argmax(axis=1) == y).astype(int)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    counts = np.bincount(np.searchsorted(edges[1:-1], conf), minlength=n_bins)
    acc, mean_conf = calibration_curve(correct, conf, n_bins=n_bins, strategy="uniform", pos_label=1)
    bins, r = [], 0
    ece = 0.0
    for b in range(n_bins):
        row = {"low": float(edges[b]), "high": float(edges[b + 1]), "count": int(counts[b]),
               "confidence": None, "accuracy": None}
        if counts[b]:
            row["confidence"], row["accuracy"] = float(mean_conf[r]), float(acc[r])
            ece += counts[b] / len(y) * abs(acc[r] - mean_conf[r])
            r += 1
        bins.append(row)
    return {"ece": float(ece), "n_bins": n_bins, "strategy": "uniform, top-label (predicted class)",
            "mean_confidence": float(conf.mean()), "accuracy": float(correct.mean()), "bins": bins}


def bootstrap(y: np.ndarray, pred: np.ndarray, groups: Sequence[str], k: int, *, n_boot: int = 1000,
              seed: int = 0, level: float = 0.95) -> dict:
    """Percentile CIs of accuracy and macro F1, resampling whole groups with replacement.

    A draw weights each image by how often its group was drawn (same as concatenating the
    drawn groups); the metrics are scikit-learn's with those sample weights.
    """
    from sklearn.metrics import accuracy_score, f1_score

    _, inv = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    n_groups = int(inv.max()) + 1 if len(inv) else 0
    rng = np.random.default_rng(seed)
    labels = list(range(k))
    acc = np.empty(n_boot)
    f1 = np.empty(n_boot)
    for b in range(n_boot):
        w = np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)[inv]
        acc[b] = accuracy_score(y, pred, sample_weight=w)
        f1[b] = f1_score(y, pred, labels=labels, average="macro", sample_weight=w, zero_division=0)
    tail = 100 * (1 - level) / 2
    out = {"n_boot": n_boot, "level": level, "unit": "group", "n_groups": n_groups, "seed": seed,
           "method": "percentile bootstrap over manifest groups"}
    for name, values, point in (
        ("accuracy", acc, accuracy_score(y, pred)),
        ("macro_f1", f1, f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
    ):
        low, high = np.percentile(values, [tail, 100 - tail]) if n_boot else (np.nan, np.nan)
        out[name] = {"estimate": float(point), "low": _none(low), "high": _none(high)}
    return out


def per_source(y: np.ndarray, pred: np.ndarray, sources: Sequence[str], classes: Sequence[str]) -> dict:
    """Accuracy, per-class recall (None where the source has no image of the class), support and
    the predicted-class counts of each source."""
    from sklearn.metrics import accuracy_score, recall_score

    sources = np.asarray(sources, dtype=str)
    labels = list(range(len(classes)))
    out = {}
    for s in sorted(set(sources.tolist())):
        m = sources == s
        support = np.bincount(y[m], minlength=len(classes))
        recall = recall_score(y[m], pred[m], labels=labels, average=None, zero_division=0)
        out[s] = {
            "n": int(m.sum()),
            "accuracy": float(accuracy_score(y[m], pred[m])),
            "recall": {c: (float(r) if support[j] else None) for j, (c, r) in enumerate(zip(classes, recall))},
            "support": {c: int(n) for c, n in zip(classes, support)},
            "predicted": {c: int(n) for c, n in zip(classes, np.bincount(pred[m], minlength=len(classes)))},
        }
    return out


def compute_metrics(
    y: np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
    *,
    groups: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    n_bins: int = 10,
) -> tuple[dict, dict]:
    """Every number of one model on one set. Returns ``(metrics, roc curves)``; the curves
    (arrays) are kept out of the JSON-able metrics."""
    from sklearn.metrics import (
        accuracy_score,
        classification_report,
        confusion_matrix,
        log_loss,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    y = np.asarray(y, dtype=np.int64)
    k = len(classes)
    labels = list(range(k))
    probs = np.asarray(probs, np.float64)  # the model's own numbers: AUCs depend on their exact order
    pred = probs.argmax(axis=1)
    prec, rec, f1, support = precision_recall_fscore_support(y, pred, labels=labels, average=None, zero_division=0)
    curves = roc_curves(y, probs, classes)
    warnings = []
    present = [c for c in classes if curves[c]["auc"] is not None]
    if len(present) == k:
        macro_auc = float(roc_auc_score(y, probs, multi_class="ovr", average="macro", labels=labels))
        if abs(macro_auc - np.mean([curves[c]["auc"] for c in classes])) > 1e-9:  # never expected
            raise AssertionError("macro AUC differs from the mean of the per-class AUCs")
    elif present:
        macro_auc = float(np.mean([curves[c]["auc"] for c in present]))
        warnings.append(f"ROC AUC undefined for {', '.join(c for c in classes if c not in present)} "
                        f"(no positive or no negative images); macro AUC averages {', '.join(present)}")
    else:
        macro_auc = None
    absent = [c for c, n in zip(classes, support) if n == 0]
    if absent:
        warnings.append(f"no images of {', '.join(absent)}: its recall/F1 are 0 by convention and pull the macro average down")
    averages = {}
    for avg in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y, pred, labels=labels, average=avg, zero_division=0)
        averages[avg] = {"precision": float(p), "recall": float(r), "f1": float(f)}
    averages["macro"]["auc"] = macro_auc
    averages["weighted"]["auc"] = (
        float(roc_auc_score(y, probs, multi_class="ovr", average="weighted", labels=labels)) if len(present) == k else None
    )
    cm = confusion_matrix(y, pred, labels=labels)
    metrics = {
        "n": int(len(y)),
        "accuracy": float(accuracy_score(y, pred)),
        "per_class": {
            c: {"precision": float(prec[j]), "recall": float(rec[j]), "f1": float(f1[j]),
                "support": int(support[j]), "auc": curves[c]["auc"]}
            for j, c in enumerate(classes)
        },
        "macro": averages["macro"],
        "weighted": averages["weighted"],
        "log_loss": float(log_loss(y, _normalise(probs), labels=labels)),  # float32 softmax: renormalised
        "confusion_matrix": {"labels": list(classes), "rows": "true class", "columns": "predicted class",
                             "matrix": cm.tolist()},
        "classification_report": classification_report(
            y, pred, labels=labels, target_names=list(classes), zero_division=0, digits=4),
        "calibration": calibration(y, probs, n_bins),
        "warnings": warnings,
    }
    if n_boot > 0:
        metrics["bootstrap"] = bootstrap(y, pred, groups if groups is not None else [str(i) for i in range(len(y))],
                                         k, n_boot=n_boot, seed=seed)
    if sources is not None:
        metrics["per_source"] = per_source(y, pred, sources, classes)
    return metrics, curves


def table_rows(models: dict[str, dict], classes: Sequence[str]) -> list[dict]:
    """The paper's Table III layout: one row per (model, class) plus macro and weighted averages;
    accuracy on each model's rows."""
    rows = []
    for label, doc in models.items():
        m = doc["metrics"]
        for c in classes:
            pc = m["per_class"][c]
            rows.append({"model": label, "class": c, "precision": pc["precision"], "recall": pc["recall"],
                         "f1": pc["f1"], "support": pc["support"], "auc": pc["auc"], "accuracy": m["accuracy"]})
        for avg in ("macro", "weighted"):
            a = m[avg]
            rows.append({"model": label, "class": f"{avg} avg", "precision": a["precision"], "recall": a["recall"],
                         "f1": a["f1"], "support": m["n"], "auc": a.get("auc"), "accuracy": m["accuracy"]})
    return rows


# --------------------------------------------------------------------------------------
# the entry point
# --------------------------------------------------------------------------------------


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("._") or "model"


def _labels(names: Sequence[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        base = Path(name).stem if (name.endswith(".keras") or "/" in name or os.sep in name) else name
        label, i = base, 2
        while label in out:
            label, i = f"{base}-{i}", i + 1
        out.append(label)
    return out


def _versions() -> dict:
    import matplotlib
    import sklearn

    from .backend import import_keras

    keras = import_keras()
    import jax

    return {"cxrtool": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "scikit-learn": sklearn.__version__, "matplotlib": matplotlib.__version__,
            "keras": keras.__version__, "jax": jax.__version__, "backend": keras.backend.backend()}


def evaluate(
    data: str | Path,
    models: Sequence[str | Path],
    split: str = "test",
    out: str | Path | None = None,
    *,
    models_dir: str | Path | None = None,
    batch_size: int = 64,
    n_boot: int = 1000,
    seed: int = 0,
    n_bins: int = 10,
    progress: ProgressFn | None = None,
) -> dict:
    """Evaluate ``models`` (names or ``.keras`` paths) on ``split`` of the dataset ``data`` or on a
    folder of class sub-folders. Returns the metrics document; with ``out`` also writes
    ``metrics.json``, ``report.md``, ``predictions.csv`` and the PNGs there (paths in
    ``doc["files"]``). Every user error is a :class:`~cxrtool.errors.CxrError`, raised before
    any model runs."""
    from .artifact import read_info
    from .manifest import fingerprint_file
    from .resolve import resolve_model

    def say(message: str) -> None:
        if progress:
            progress({"event": "status", "message": message})

    if not models:
        raise UsageError("give at least one --model")
    if batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if n_boot < 0:
        raise UsageError("--bootstrap must be 0 (off) or more")
    if n_bins < 1:
        raise UsageError("--bins must be at least 1")
    es = open_eval_set(data, split)
    classes = list(es.classes)

    # ---- models: resolve and check the classes before loading anything ----------------
    names = [str(m) for m in models]
    refs = []
    for name, label in zip(names, _labels(names)):
        path = resolve_model(name, models_dir)
        info = read_info(path)
        if set(info.classes) != set(classes) or len(info.classes) != len(classes):
            raise ModelFormatError(
                f"model {label} predicts {', '.join(info.classes)} but {es.root} has classes {', '.join(classes)}"
            )
        refs.append((label, path, info))

    # ---- images -------------------------------------------------------------------------
    sizes = sorted({info.image_size for _, _, info in refs})
    say(f"reading {len(es.items)} images of {es.root}" + (f" ({es.split} split)" if es.split else ""))
    arrays, ok, failures = _load_set_images(es, sizes, progress)
    kept = [it for it, good in zip(es.items, ok) if good]
    if not kept:
        raise DatasetError(f"{es.root}: none of the {len(es.items)} images could be read (first: {failures[0]['file']}: {failures[0]['reason']})")
    index = {c: i for i, c in enumerate(classes)}
    y = np.asarray([index[it.label] for it in kept], dtype=np.int64)
    groups = [it.group for it in kept]
    sources = [it.source for it in kept]

    # ---- predictions ----------------------------------------------------------------------
    from .artifact import load_model
    from .inference import predict_batches

    predictions: dict[str, np.ndarray] = {}
    docs: dict[str, dict] = {}
    curves: dict[str, dict] = {}
    warnings = list(es.notes)
    if failures:
        warnings.append(f"{len(failures)} of {len(es.items)} images could not be read and were excluded (listed under unreadable)")
    for label, path, info in refs:
        say(f"predicting with {label} ({info.architecture}, {info.image_size} px)")
        loaded = load_model(path)
        x = arrays[info.image_size]
        batches = (x[i : i + batch_size].astype(np.float32)[..., None] for i in range(0, len(x), batch_size))
        chunks = []
        for chunk in predict_batches(loaded, batches):
            chunks.append(chunk)
            if progress:
                progress({"event": "predict", "model": label, "done": sum(len(c) for c in chunks), "total": len(x)})
        probs = np.concatenate(chunks)
        probs = probs[:, [list(info.classes).index(c) for c in classes]]  # the set's class order
        predictions[label] = probs
        metrics, model_curves = compute_metrics(y, probs, classes, groups=groups, sources=sources,
                                                n_boot=n_boot, seed=seed, n_bins=n_bins)
        curves[label] = model_curves
        same = info.dataset_fingerprint is not None and info.dataset_fingerprint == es.fingerprint
        if same and es.split in ("train", "val"):
            warnings.append(f"{label} was trained on this dataset: its {es.split} split is not an unbiased test")
        doc = {
            "path": str(path),
            "fingerprint": fingerprint_file(path),
            "architecture": info.architecture,
            "image_size": info.image_size,
            "classes": list(info.classes),
            "dataset_fingerprint": info.dataset_fingerprint,
            "trained_on_this_dataset": same,
            "metrics": metrics,
        }
        if info.architecture == "ensemble":
            doc["members"] = [{k: m.get(k) for k in ("name", "fingerprint", "weight", "architecture", "image_size")}
                              for m in info.extra.get("members", [])]
            doc["method"] = info.extra.get("method")
        docs[label] = doc

    counts = Counter(it.label for it in kept)
    doc = {
        "cxrtool_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "dataset": {
            "path": str(es.root),
            "kind": es.kind,
            "split": es.split,
            "fingerprint": es.fingerprint,
            "classes": classes,
            "n_images": len(es.items),
            "n_evaluated": len(kept),
            "counts": {c: int(counts.get(c, 0)) for c in classes},
            "sources": dict(sorted(Counter(sources).items())),
            "groups": len(set(groups)),
        },
        "unreadable": {"count": len(failures), "files": failures},
        "settings": {"bootstrap": n_boot, "seed": seed, "confidence_level": 0.95, "calibration_bins": n_bins,
                     "batch_size": batch_size},
        "models": docs,
        "comparison": table_rows(docs, classes),
        "warnings": warnings,
        "files": {},
    }
    if out is not None:
        doc["files"] = write_outputs(doc, Path(out), kept, y, predictions, curves)
        say(f"wrote {Path(out)}")
    return doc


# --------------------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------------------


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def to_json(doc: dict) -> str:
    return json.dumps(doc, indent=1, default=_json_default, allow_nan=False)


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_outputs(doc: dict, out: Path, items: Sequence[Item], y: np.ndarray,
                  predictions: dict[str, np.ndarray], curves: dict[str, dict]) -> dict:
    """metrics.json, report.md, predictions.csv and the figures; returns {name: path}."""
    from . import eval_figures as F

    out.mkdir(parents=True, exist_ok=True)
    classes = doc["dataset"]["classes"]
    where = (Path(doc["dataset"]["path"]).resolve().name or doc["dataset"]["path"]) + (
        f" ({doc['dataset']['split']} split)" if doc["dataset"]["split"] else " (external folder)")
    files: dict[str, Any] = {"metrics": "metrics.json", "report": "report.md", "predictions": "predictions.csv",
                             "models": {}}

    def figure(name: str, draw) -> str | None:
        """Draw one PNG (``draw(path)``); a plotting failure is a warning, never the loss of the metrics."""
        try:
            draw(out / name)
        except Exception as exc:  # noqa: BLE001
            doc["warnings"].append(f"figure {name} could not be drawn: {type(exc).__name__}: {exc}")
            return None
        return name

    for label, mdoc in doc["models"].items():
        m = mdoc["metrics"]
        slug = _slug(label)
        cm_title = f"{label}: confusion matrix\n{where}, accuracy {m['accuracy']:.3f}"
        files["models"][label] = {
            "confusion_matrix": figure(f"{slug}_confusion.png", lambda p, m=m, t=cm_title: F.confusion_matrix_png(
                m["confusion_matrix"]["matrix"], classes, p, t)),
            "roc": figure(f"{slug}_roc.png", lambda p, m=m, label=label: F.roc_png(
                curves[label], p, f"{label}: ROC curves, {where}", m["macro"]["auc"])),
            "reliability": figure(f"{slug}_reliability.png", lambda p, m=m, label=label: F.reliability_png(
                m["calibration"]["bins"], m["calibration"]["ece"], p, f"{label}: reliability diagram, {where}")),
        }
    if len(doc["models"]) > 1:
        name = figure("comparison_roc.png", lambda p: F.comparison_roc_png(
            curves, classes, p, f"ROC curves of every model, {where}"))
        if name:
            files["comparison_roc"] = name
    doc["files"] = files
    with (out / ".predictions.csv.tmp").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "label", "source", "group"]
                        + [f"{label}:{col}" for label in predictions for col in ("predicted", *classes)])
        for i, item in enumerate(items):
            row = [item.file, item.label, item.source, item.group]
            for probs in predictions.values():
                row += [classes[int(np.argmax(probs[i]))]] + [f"{p:.9g}" for p in probs[i]]
            writer.writerow(row)
    os.replace(out / ".predictions.csv.tmp", out / "predictions.csv")
    _atomic_text(out / "metrics.json", to_json(doc) + "\n")
    _atomic_text(out / "report.md", markdown(doc))
    return files


def _f(x, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _ci(b: dict | None, key: str) -> str:
    if not b:
        return ""
    v = b[key]
    return f"{v['estimate']:.3f} [{_f(v['low'])}, {_f(v['high'])}]"


def comparison_markdown(doc: dict) -> str:
    """Table III: per model and class precision, recall, F1 (and support, AUC); accuracy per model."""
    lines = ["| Model | Class | Precision | Recall | F1-score | Support | AUC | Accuracy |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    last = None
    for r in doc["comparison"]:
        first = r["model"] != last
        last = r["model"]
        lines.append(
            f"| {r['model'] if first else ''} | {r['class']} | {_f(r['precision'])} | {_f(r['recall'])} | "
            f"{_f(r['f1'])} | {r['support']} | {_f(r['auc'])} | {_f(r['accuracy']) if first else ''} |"
        )
    return "\n".join(lines) + "\n"


def summary_markdown(doc: dict) -> str:
    lines = ["| Model | Accuracy [95% CI] | Macro F1 [95% CI] | Macro AUC | Log-loss | ECE | Images |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for label, mdoc in doc["models"].items():
        m = mdoc["metrics"]
        b = m.get("bootstrap")
        acc = _ci(b, "accuracy") or _f(m["accuracy"])
        f1 = _ci(b, "macro_f1") or _f(m["macro"]["f1"])
        lines.append(f"| {label} | {acc} | {f1} | {_f(m['macro']['auc'])} | {_f(m['log_loss'])} | "
                     f"{_f(m['calibration']['ece'])} | {m['n']} |")
    return "\n".join(lines) + "\n"


def markdown(doc: dict) -> str:
    d = doc["dataset"]
    classes = d["classes"]
    s = doc["settings"]
    out = [f"# Evaluation: {d['path']}" + (f" ({d['split']} split)" if d["split"] else ""), ""]
    per_class = ", ".join(f"{c} {d['counts'][c]}" for c in classes)
    sources_text = ", ".join(f"{k} {v}" for k, v in d["sources"].items())
    out.append(f"- Images: {d['n_evaluated']} evaluated of {d['n_images']} ({per_class}); {d['groups']} groups; "
               f"sources: {sources_text}")
    out.append(f"- Set: {d['kind']}, fingerprint `{d['fingerprint'][:16]}`")
    out.append(f"- cxrtool {doc['cxrtool_version']}, Keras {doc['versions']['keras']} on {doc['versions']['backend']}, "
               f"scikit-learn {doc['versions']['scikit-learn']}; {doc['created']}")
    out.append(f"- Confidence intervals: {int(100 * s['confidence_level'])}% percentile bootstrap, {s['bootstrap']} "
               f"resamples of whole groups (duplicates/patients), seed {s['seed']}")
    out.append("")
    if doc["unreadable"]["count"]:
        out += [f"## Unreadable images ({doc['unreadable']['count']}, excluded)", ""]
        out += [f"- `{f['file']}`: {f['kind']}: {f['reason']}" for f in doc["unreadable"]["files"]]
        out.append("")
    if doc["warnings"]:
        out += ["## Warnings", ""] + [f"- {w}" for w in doc["warnings"]] + [""]
    out += ["## Summary", "", summary_markdown(doc), "## Per class (Table III layout)", "", comparison_markdown(doc)]
    files = doc.get("files") or {}
    if files.get("comparison_roc"):
        out += ["## ROC curves of every model", "", f"![ROC comparison]({files['comparison_roc']})", ""]
    for label, mdoc in doc["models"].items():
        m = mdoc["metrics"]
        out += [f"## {label}", ""]
        out.append(f"- `{mdoc['path']}` ({mdoc['architecture']}, {mdoc['image_size']} px), sha256 `{mdoc['fingerprint'][:16]}`"
                   + ("; trained on this dataset" if mdoc["trained_on_this_dataset"] else ""))
        if mdoc.get("members"):
            out.append("- ensemble (" + str(mdoc.get("method")) + ") of " + ", ".join(
                f"{x['name']} ({x['weight']:.3f})" for x in mdoc["members"]))
        out.append(f"- accuracy {_ci(m.get('bootstrap'), 'accuracy') or _f(m['accuracy'])}, macro F1 "
                   f"{_ci(m.get('bootstrap'), 'macro_f1') or _f(m['macro']['f1'])}, macro AUC {_f(m['macro']['auc'])}, "
                   f"log-loss {_f(m['log_loss'])}, ECE {_f(m['calibration']['ece'])} "
                   f"(mean confidence {_f(m['calibration']['mean_confidence'])})")
        for w in m["warnings"]:
            out.append(f"- note: {w}")
        out += ["", "Confusion matrix (rows: true, columns: predicted):", "",
                "| true \\ predicted | " + " | ".join(classes) + " |", "| --- |" + " ---: |" * len(classes)]
        for c, row in zip(classes, m["confusion_matrix"]["matrix"]):
            out.append(f"| {c} | " + " | ".join(str(v) for v in row) + " |")
        if m.get("per_source"):
            out += ["", "Per source (a model that learned the source instead of the disease shows it here):", "",
                    "| Source | Images | Accuracy | " + " | ".join(f"recall {c}" for c in classes) + " | "
                    + " | ".join(f"n {c}" for c in classes) + " |",
                    "| --- | ---: | ---: |" + " ---: |" * (2 * len(classes))]
            for src, v in m["per_source"].items():
                out.append(f"| {src} | {v['n']} | {_f(v['accuracy'])} | "
                           + " | ".join(_f(v["recall"][c]) for c in classes) + " | "
                           + " | ".join(str(v["support"][c]) for c in classes) + " |")
        names = (files.get("models") or {}).get(label)
        if names:
            alt = {"confusion_matrix": "confusion matrix", "roc": "ROC", "reliability": "reliability"}
            out += ["", " ".join(f"![{alt[k]}]({v})" for k, v in names.items() if v)]
        out.append("")
    return "\n".join(out)


def render_table(doc: dict) -> None:
    """The comparison and summary tables on stderr (rich)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from .console import err, verbosity

    if verbosity() <= 0:
        return

    def show(table) -> None:
        # piped or captured stderr: rich assumes 80 columns; print the table at its natural width
        if err.is_terminal:
            err.print(table)
            return
        width = max(err.width, err.measure(table, options=err.options.update_width(400)).maximum)
        Console(stderr=True, width=width, highlight=False, color_system=None).print(table)

    t = Table(title="Per class (Table III layout)", box=box.SIMPLE_HEAD)
    for col in ("Model", "Class", "Precision", "Recall", "F1", "Support", "AUC", "Accuracy"):
        t.add_column(col, justify="left" if col in ("Model", "Class") else "right")
    last = None
    for r in doc["comparison"]:
        first = r["model"] != last
        if first and last is not None:
            t.add_section()
        last = r["model"]
        t.add_row(r["model"] if first else "", r["class"], _f(r["precision"]), _f(r["recall"]), _f(r["f1"]),
                  str(r["support"]), _f(r["auc"]), _f(r["accuracy"]) if first else "")
    show(t)
    s = Table(title="Summary (95% group-bootstrap CIs)", box=box.SIMPLE_HEAD)
    for col in ("Model", "Accuracy [95% CI]", "Macro F1 [95% CI]", "Macro AUC", "ECE", "Images"):
        s.add_column(col, justify="left" if col == "Model" else "right")
    for label, mdoc in doc["models"].items():
        m = mdoc["metrics"]
        b = m.get("bootstrap")
        s.add_row(label, _ci(b, "accuracy") or _f(m["accuracy"]), _ci(b, "macro_f1") or _f(m["macro"]["f1"]),
                  _f(m["macro"]["auc"]), _f(m["calibration"]["ece"]), str(m["n"]))
    show(s)
    sources = doc["dataset"]["sources"]
    if len(sources) > 1:
        classes = doc["dataset"]["classes"]
        p = Table(title="Per source (a source shortcut shows as recall collapsing on one source)", box=box.SIMPLE_HEAD)
        for col in ("Model", "Source", "Images", "Accuracy", *(f"recall {c}" for c in classes)):
            p.add_column(col, justify="left" if col in ("Model", "Source") else "right")
        for i, (label, mdoc) in enumerate(doc["models"].items()):
            if i:
                p.add_section()
            for j, (src, v) in enumerate(mdoc["metrics"].get("per_source", {}).items()):
                p.add_row(label if j == 0 else "", src, str(v["n"]), _f(v["accuracy"]),
                          *(_f(v["recall"][c]) for c in classes))
        show(p)


__all__ = [
    "FORMATS",
    "EvalSet",
    "bootstrap",
    "calibration",
    "comparison_markdown",
    "compute_metrics",
    "evaluate",
    "load_images",
    "markdown",
    "open_eval_set",
    "per_source",
    "render_table",
    "roc_curves",
    "table_rows",
    "to_json",
]
