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
from .ood_section import ood_markdown


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
                  curves: dict[str, dict], *, attention_rows: list[dict] | None = None) -> dict:
    """metrics.json, report.md, predictions.csv and the figures in ``out``; returns
    ``{name: file name}`` (also set as ``doc["files"]``). ``items``: the evaluated images, in
    the row order of each ``predictions[model]`` array; ``attention_rows``: per (model, image)
    attention numbers for ``attention.csv`` (``evaluate --attention``)."""
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
    if attention_rows is not None:
        files["attention"] = "attention.csv"
    if doc.get("shifts"):
        name = figure("shifts.png", lambda p: F.shifts_png(
            doc["shifts"], len(classes), p, f"Accuracy and AUC under acquisition shifts, {where}"))
        if name:
            files["shifts"] = name
    doc["files"] = files
    if attention_rows is not None:
        write_attention_csv(out / "attention.csv", attention_rows)
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


ATTENTION_COLUMNS = ("model", "file", "label", "source", "predicted", "border_share", "border_area",
                     "text_share", "text_area")


def write_attention_csv(path: Path, rows: Sequence[dict]) -> Path:
    """One row per (model, image) of ``evaluate --attention``: where that map put its heat, so
    the images whose text drew the heat can be found and opened with ``cxrtool gradcam``."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(ATTENTION_COLUMNS), restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return path


ATTENTION_HEADER = ("Images", "Border share", "Border area", "Border lift", "Text share", "Text area", "Text lift",
                    "With text")


def attention_cells(v: dict) -> list[str]:
    """One summary (:func:`cxrtool.gradcam.attention.summarise`) as table cells, in
    :data:`ATTENTION_HEADER` order; the CLI table uses it too."""
    return [str(v["n"]), fmt(v["border_share"]), fmt(v["border_area"]), fmt(v["border_lift"], 2),
            fmt(v["text_share"]), fmt(v["text_area"], 4), fmt(v["text_lift"], 2), str(v["text_images"])]


def attention_groups(model_attention: dict) -> list[tuple[str, dict]]:
    """``[(row name, summary)]``: all images, then per class, then per source."""
    m = model_attention
    return ([("all", m["overall"])] + [(f"class {c}", v) for c, v in m["per_class"].items()]
            + [(f"source {s}", v) for s, v in m["per_source"].items()])


def attention_markdown(doc: dict) -> str:
    """Per model: the overall, per-class and per-source heat shares of ``evaluate --attention``."""
    a = doc["attention"]
    st = a["settings"]
    lines = [f"Grad-CAM of the predicted class on {st['n_images']} images (stratified by class and source), "
             f"border band {st['band']:.0%} of each side. Share: the fraction of the heat mass in the region; "
             "area: the fraction of the image it covers; lift: share / area (1 = no preference, above 1: "
             "the model looks there more than a uniform map would). Lungs-first models have a low border lift "
             "and a text lift near 0; see docs/evaluate.md.", "",
             "| Model | Group | " + " | ".join(ATTENTION_HEADER) + " |",
             "| --- | --- |" + " ---: |" * len(ATTENTION_HEADER)]
    for label, m in a["models"].items():
        for j, (name, v) in enumerate(attention_groups(m)):
            lines.append(f"| {label if j == 0 else ''} | {name} | " + " | ".join(attention_cells(v)) + " |")
    return "\n".join(lines) + "\n"


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


def shifts_markdown(doc: dict) -> str:
    """Per model: the clean row, then every shift and severity with the accuracy drop."""
    sec = doc["shifts"]
    out = [f"The {sec['images']} evaluated images again, under each acquisition shift (noise seed {sec['seed']}); "
           "severity 0 is the clean set. The transforms are described in docs/evaluate.md.", ""]
    for label, m in sec["models"].items():
        clean = m["clean"]
        out += [f"### {label}", "",
                "| Shift | Severity | What it does | Accuracy | Δ accuracy | Macro F1 | Macro AUC | ECE |",
                "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
                f"| clean | 0 | | {fmt(clean['accuracy'])} | | {fmt(clean['macro_f1'])} | {fmt(clean['auc_macro'])} | "
                f"{fmt(clean['ece'])} |"]
        for shift, levels in m["shifts"].items():
            for sev, v in levels.items():
                what = sec["definitions"][shift]["severities"][sev]
                out.append(f"| {shift} | {sev} | {what} | {fmt(v['accuracy'])} | {v['accuracy'] - clean['accuracy']:+.3f} | "
                           f"{fmt(v['macro_f1'])} | {fmt(v['auc_macro'])} | {fmt(v['ece'])} |")
        out.append("")
    return "\n".join(out)


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
    if doc.get("attention"):
        out += ["## Where the models look (Grad-CAM heat on borders and burnt-in text)", "", attention_markdown(doc)]
    if ood := ood_markdown(doc):
        out += ["## Inputs unlike the training data (OOD flags, cxrtool.ood)", "", ood]
    if calibration := calibration_markdown(doc):
        out += ["## Calibration (temperature fitted on the val split, stored in the model)", "",
                "Before: the model's probabilities without its temperature, softmax(T log p).", "", calibration]
    files = doc.get("files") or {}
    if files.get("comparison_roc"):
        out += ["## ROC curves of every model", "", f"![ROC comparison]({files['comparison_roc']})", ""]
    if doc.get("shifts"):
        out += ["## Acquisition shifts", "", shifts_markdown(doc)]
        if files.get("shifts"):
            out += [f"![accuracy under shifts]({files['shifts']})", ""]
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
