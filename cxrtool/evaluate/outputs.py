"""What ``evaluate`` writes: ``metrics.json`` (the result document), ``report.md`` (its text
for people), ``predictions.csv`` (every image's probabilities) and the figures.

Every file goes through :mod:`cxrtool.atomic`: an interrupted run leaves the previous file or
none, never half of one. A figure that cannot be drawn becomes a warning, never the loss of
the metrics.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path, write_text
from .evalset import Item


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("._") or "model"


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
    """The document as strict JSON (numpy numbers and paths converted, NaN refused)."""
    return json.dumps(doc, indent=1, default=_json_default, allow_nan=False)


def write_outputs(doc: dict, out: Path, items: Sequence[Item], predictions: dict[str, np.ndarray],
                  curves: dict[str, dict]) -> dict:
    """metrics.json, report.md, predictions.csv and the figures in ``out``; returns
    ``{name: file name}`` (also set as ``doc["files"]``). ``items``: the evaluated images, in
    the row order of each ``predictions[model]`` array."""
    from . import figures as F

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
    write_predictions_csv(out / "predictions.csv", items, classes, predictions)
    write_text(out / "metrics.json", to_json(doc) + "\n")
    write_text(out / "report.md", markdown(doc))
    return files


def write_predictions_csv(path: Path, items: Sequence[Item], classes: Sequence[str],
                          predictions: dict[str, np.ndarray]) -> Path:
    """One row per evaluated image: file, label, source, group, then per model the predicted
    class and every class probability (``MODEL:CLASS``), so any metric can be recomputed."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "label", "source", "group"]
                        + [f"{label}:{col}" for label in predictions for col in ("predicted", *classes)])
        for i, item in enumerate(items):
            row = [item.file, item.label, item.source, item.group]
            for probs in predictions.values():
                row += [classes[int(np.argmax(probs[i]))]] + [f"{p:.9g}" for p in probs[i]]
            writer.writerow(row)
    return path


def fmt(x, digits: int = 3) -> str:
    """A number for a table: 3 decimals, ``n/a`` for None."""
    return "n/a" if x is None else f"{x:.{digits}f}"


def fmt_ci(b: dict | None, key: str) -> str:
    """``estimate [low, high]`` of a bootstrap entry; empty without a bootstrap."""
    if not b:
        return ""
    v = b[key]
    return f"{v['estimate']:.3f} [{fmt(v['low'])}, {fmt(v['high'])}]"


def comparison_markdown(doc: dict) -> str:
    """Table III: per model and class precision, recall, F1 (and support, AUC); accuracy per model."""
    lines = ["| Model | Class | Precision | Recall | F1-score | Support | AUC | Accuracy |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    last = None
    for r in doc["comparison"]:
        first = r["model"] != last
        last = r["model"]
        lines.append(
            f"| {r['model'] if first else ''} | {r['class']} | {fmt(r['precision'])} | {fmt(r['recall'])} | "
            f"{fmt(r['f1'])} | {r['support']} | {fmt(r['auc'])} | {fmt(r['accuracy']) if first else ''} |"
        )
    return "\n".join(lines) + "\n"


def summary_markdown(doc: dict) -> str:
    lines = ["| Model | Accuracy [95% CI] | Macro F1 [95% CI] | Macro AUC | Log-loss | ECE | Images |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for label, mdoc in doc["models"].items():
        m = mdoc["metrics"]
        b = m.get("bootstrap")
        acc = fmt_ci(b, "accuracy") or fmt(m["accuracy"])
        f1 = fmt_ci(b, "macro_f1") or fmt(m["macro"]["f1"])
        lines.append(f"| {label} | {acc} | {f1} | {fmt(m['macro']['auc'])} | {fmt(m['log_loss'])} | "
                     f"{fmt(m['calibration']['ece'])} | {m['n']} |")
    return "\n".join(lines) + "\n"


def calibration_markdown(doc: dict) -> str:
    """ECE and log-loss before and after each calibrated model's temperature ("" when no model has one)."""
    rows = [(label, m["calibration"]) for label, m in doc["models"].items() if m.get("calibration")]
    if not rows:
        return ""
    lines = ["| Model | Temperature | ECE before | ECE after | Log-loss before | Log-loss after |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for label, c in rows:
        lines.append(f"| {label} | {fmt(c['temperature'])} | {fmt(c['ece_before'])} | {fmt(c['ece_after'])} | "
                     f"{fmt(c['nll_before'])} | {fmt(c['nll_after'])} |")
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
    if calibration := calibration_markdown(doc):
        out += ["## Calibration (temperature fitted on the val split, stored in the model)", "",
                "Before: the model's probabilities without its temperature, softmax(T log p).", "", calibration]
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
        out.append(f"- accuracy {fmt_ci(m.get('bootstrap'), 'accuracy') or fmt(m['accuracy'])}, macro F1 "
                   f"{fmt_ci(m.get('bootstrap'), 'macro_f1') or fmt(m['macro']['f1'])}, macro AUC {fmt(m['macro']['auc'])}, "
                   f"log-loss {fmt(m['log_loss'])}, ECE {fmt(m['calibration']['ece'])} "
                   f"(mean confidence {fmt(m['calibration']['mean_confidence'])})")
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
                out.append(f"| {src} | {v['n']} | {fmt(v['accuracy'])} | "
                           + " | ".join(fmt(v["recall"][c]) for c in classes) + " | "
                           + " | ".join(str(v["support"][c]) for c in classes) + " |")
        names = (files.get("models") or {}).get(label)
        if names:
            alt = {"confusion_matrix": "confusion matrix", "roc": "ROC", "reliability": "reliability"}
            out += ["", " ".join(f"![{alt[k]}]({v})" for k, v in names.items() if v)]
        out.append("")
    return "\n".join(out)
