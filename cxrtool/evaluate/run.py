"""``evaluate()``: run every model over one evaluation set and gather the result document.

The steps: open the set (:mod:`.evalset`) and check every model's classes before anything
heavy runs; decode the images once per input size; predict with each model; compute its
metrics (:mod:`.metrics`); with ``out``, write the files (:mod:`.outputs`). Returns data; the
CLI renders it.
"""

from __future__ import annotations

import os
import platform
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .calibration import calibration_report, model_temperature
from ..version import __version__
from ..atomic import staged_files
from ..errors import DatasetError, ModelFormatError, UsageError
from ..ood import shift_reference
from ..progress import ProgressFn, report
from .attention import attention_section, check_attention_options
from .evalset import EvalSet, load_set_images, open_eval_set
from .metrics import compute_metrics, table_rows
from .ood_section import image_checks, ood_section
from .outputs import write_outputs


def _labels(names: Sequence[str]) -> list[str]:
    """A short unique label per model: the name, or a path's file stem (``-2``, ``-3`` on clashes)."""
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

    from ..backend import import_keras

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
    attention: bool = False,
    attention_max: int = 200,
    attention_band: float = 0.1,
    shifts: str | Sequence[str] | None = None,
    shift_severities: Sequence[int] | None = None,
    progress: ProgressFn | None = None,
) -> dict:
    """Evaluate ``models`` (names or ``.keras`` paths) on ``split`` of the dataset ``data`` or on a
    folder of class sub-folders. Returns the metrics document; with ``out`` also writes
    ``metrics.json``, ``report.md``, ``predictions.csv`` and the PNGs there (paths in
    ``doc["files"]``). ``attention``: also measure where each model looks (Grad-CAM heat on
    the border band and on burnt-in text, :mod:`.attention`) on up to ``attention_max``
    images. ``shifts`` (``"all"`` or names of :data:`.shifts.SHIFTS`) adds the shift
    pass (:mod:`.shift_pass`): the ``shifts`` section of the document. Every user error is a
    :class:`~cxrtool.errors.CxrError`, raised before any model runs."""
    from .shifts import select_shifts

    started = time.perf_counter()
    if not models:
        raise UsageError("give at least one --model")
    if batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if n_boot < 0:
        raise UsageError("--bootstrap must be 0 (off) or more")
    if n_bins < 1:
        raise UsageError("--bins must be at least 1")
    if attention:
        check_attention_options(attention_max, attention_band)
    conditions = select_shifts(shifts, shift_severities)
    es = open_eval_set(data, split)
    classes = list(es.classes)
    refs = _check_models([str(m) for m in models], models_dir, es)

    sizes = sorted({info.image_size for _, _, info in refs})
    report(progress, "load", 0, len(es.items),
           message=f"reading {len(es.items)} images of {es.root}" + (f" ({es.split} split)" if es.split else ""))
    arrays, ok, failures = load_set_images(es, sizes, progress)
    kept = [it for it, good in zip(es.items, ok) if good]
    if not kept:
        raise DatasetError(f"{es.root}: none of the {len(es.items)} images could be read (first: {failures[0]['file']}: {failures[0]['reason']})")
    index = {c: i for i, c in enumerate(classes)}
    y = np.asarray([index[it.label] for it in kept], dtype=np.int64)
    groups = [it.group for it in kept]
    sources = [it.source for it in kept]

    predictions: dict[str, np.ndarray] = {}
    docs: dict[str, dict] = {}
    curves: dict[str, dict] = {}
    warnings = list(es.notes)
    if failures:
        warnings.append(f"{len(failures)} of {len(es.items)} images could not be read and were excluded (listed under unreadable)")
    from ..artifact import load_model

    keep_loaded = bool(conditions or attention)  # the shift pass and attention reuse the models
    loaded = {}
    # the image checks and the picture statistics depend on the images only: once per input size
    checked = {size: image_checks(arrays[size]) for size in sizes}
    for label, path, info in refs:
        model = load_model(path)
        if keep_loaded:
            loaded[label] = model
        checks, pictures = checked[info.image_size]
        probs, ood_scores = _predict(label, model, info, arrays[info.image_size], pictures, batch_size, progress)
        predictions[label] = probs[:, [list(info.classes).index(c) for c in classes]]  # the set's class order
        metrics, curves[label] = compute_metrics(y, predictions[label], classes, groups=groups, sources=sources,
                                                 n_boot=n_boot, seed=seed, n_bins=n_bins)
        docs[label] = _model_entry(path, info, metrics, es.fingerprint)
        docs[label]["ood"] = ood_section(arrays[info.image_size], y, predictions[label], ood_scores, sources, classes,
                                         checks=checks, reference=shift_reference(info))
        if (temperature := model_temperature(info)) is not None:  # ECE and log-loss before/after it
            docs[label]["calibration"] = calibration_report(y, predictions[label], temperature, n_bins)
        if docs[label]["trained_on_this_dataset"] and es.split in ("train", "val"):
            warnings.append(f"{label} was trained on this dataset: its {es.split} split is not an unbiased test")

    shift_section = None
    if conditions:
        from .shift_pass import shift_pass

        clean_seconds = time.perf_counter() - started
        shift_section = shift_pass(kept, y, classes, refs, conditions, {k: v["metrics"] for k, v in docs.items()},
                                   batch_size=batch_size, seed=seed, n_bins=n_bins, loaded=loaded, progress=progress)
        shift_section["seconds"]["clean_evaluation"] = clean_seconds

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
    attention_rows = None
    if attention:
        doc["attention"], attention_rows = attention_section(
            kept, refs, classes, max_images=attention_max, band=attention_band, batch_size=batch_size, seed=seed,
            loaded=loaded, progress=progress)
    if shift_section is not None:
        doc["shifts"] = shift_section
    if out is not None:
        # written aside, then moved in with metrics.json last: an interrupted run leaves the
        # previous results whole, and a folder without metrics.json is unfinished
        with staged_files(out, last="metrics.json") as staging:
            doc["files"] = write_outputs(doc, staging, kept, predictions, curves, attention_rows=attention_rows)
        report(progress, "write", 1, 1, message=f"wrote {Path(out)}")
    return doc


def _check_models(names: Sequence[str], models_dir: str | Path | None, es: EvalSet) -> list[tuple[str, Path, Any]]:
    """``[(label, path, info)]`` of every model; refuses one whose classes differ from the set's
    (read from the file's metadata, before any model is loaded)."""
    from ..artifact import read_info
    from ..resolve import resolve_model

    refs = []
    for name, label in zip(names, _labels(names)):
        path = resolve_model(name, models_dir)
        info = read_info(path)
        if set(info.classes) != set(es.classes) or len(info.classes) != len(es.classes):
            raise ModelFormatError(
                f"model {label} predicts {', '.join(info.classes)} but {es.root} has classes {', '.join(es.classes)}"
            )
        refs.append((label, path, info))
    return refs


def _predict(label: str, loaded: Any, info: Any, x: np.ndarray, pictures: np.ndarray, batch_size: int,
             progress: ProgressFn | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The model's class probabilities (its own class order) for the images ``x`` (n, s, s)
    uint8 and its ``ood_score`` per image (None without OOD statistics; :mod:`cxrtool.ood`;
    ``pictures``: the picture statistics of ``x``, :func:`image_checks`)."""
    from ..ood import Scorer

    report(progress, "predict", 0, len(x), model=label,
           message=f"predicting with {label} ({info.architecture}, {info.image_size} px)")
    batches = (x[i : i + batch_size].astype(np.float32)[..., None] for i in range(0, len(x), batch_size))
    scorer = Scorer(loaded)
    chunks, scores, done = [], [], 0
    for xb in batches:
        chunk, s = scorer.predict(xb, pictures[done : done + len(xb)])
        chunks.append(chunk)
        scores.append(s)
        done += len(chunk)
        report(progress, "predict", done, len(x), model=label)
    return np.concatenate(chunks), (np.concatenate(scores) if scorer.available and scores else None)


def _model_entry(path: Path, info: Any, metrics: dict, set_fingerprint: str) -> dict:
    """One model's part of the document: where it came from, what it is, its metrics."""
    from ..manifest import fingerprint_file

    entry = {
        "path": str(path),
        "fingerprint": fingerprint_file(path),
        "architecture": info.architecture,
        "image_size": info.image_size,
        "classes": list(info.classes),
        "dataset_fingerprint": info.dataset_fingerprint,
        "trained_on_this_dataset": info.dataset_fingerprint is not None and info.dataset_fingerprint == set_fingerprint,
        "metrics": metrics,
    }
    if info.architecture == "ensemble":
        entry["members"] = [{k: m.get(k) for k in ("name", "fingerprint", "weight", "architecture", "image_size")}
                            for m in info.extra.get("members", [])]
        entry["method"] = info.extra.get("method")
    return entry
