"""Every number of one model on one evaluation set: scikit-learn's per-class and averaged
metrics, one-vs-rest ROC curves, top-label calibration (ECE), percentile CIs from a bootstrap
over whole groups, and a per-source breakdown.

Pure numpy + scikit-learn (imported inside the functions, so importing this module is cheap);
no Keras, no files.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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
