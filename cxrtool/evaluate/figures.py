"""Figures of ``cxrtool evaluate``: confusion matrix, ROC curves (one model, all classes),
reliability diagram, and the ROC comparison of several models (one panel per class).

matplotlib (Agg) is imported inside the functions; every PNG is written atomically
(:mod:`cxrtool.atomic`), so an interrupted run never leaves half a figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..atomic import atomic_path

DPI = 110
#: line styles cycled with the colours so overlapping curves of similar models stay visible
STYLES = ("-", "--", "-.", ":")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path = Path(path)
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=DPI, bbox_inches="tight")
    finally:
        _pyplot().close(fig)
    return path


def _fmt_auc(auc: float | None) -> str:
    return "AUC n/a" if auc is None else f"AUC {auc:.3f}"


def confusion_matrix_png(cm: Sequence[Sequence[int]], classes: Sequence[str], path: Path, title: str) -> Path:
    """Counts and row percentages (recall on the diagonal); colour = row fraction."""
    plt = _pyplot()
    cm = np.asarray(cm, dtype=np.int64)
    k = len(classes)
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros_like(cm, dtype=float), where=rows > 0)
    size = 1.3 * k + 2.4
    fig, ax = plt.subplots(figsize=(size + 0.8, size))
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            dark = frac[i, j] > 0.55
            ax.text(j, i, f"{cm[i, j]}\n{100 * frac[i, j]:.1f}%", ha="center", va="center",
                    fontsize=11, color="white" if dark else "black")
    ax.set_xticks(range(k), labels=list(classes))
    ax.set_yticks(range(k), labels=[f"{c}\n(n={int(n)})" for c, n in zip(classes, rows[:, 0])])
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    ax.set_title(title)
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label("fraction of the true class (row)")
    return _save(fig, path)


def roc_png(curves: Mapping[str, dict], path: Path, title: str, macro_auc: float | None = None) -> Path:
    """One-vs-rest ROC curve of every class; ``curves[class] = {"fpr", "tpr", "auc"}`` (may be
    missing ``fpr`` when the class has no positives or no negatives)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 6))
    for name, c in curves.items():
        if c.get("fpr") is None:
            ax.plot([], [], " ", label=f"{name} (AUC n/a: one-sided)")
            continue
        ax.plot(c["fpr"], c["tpr"], lw=2, label=f"{name} ({_fmt_auc(c.get('auc'))})")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="chance (AUC 0.5)")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("False positive rate (1 - specificity)")
    ax.set_ylabel("True positive rate (sensitivity)")
    ax.set_title(title + (f"\nmacro one-vs-rest AUC {macro_auc:.3f}" if macro_auc is not None else ""))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", title="class (one vs rest)")
    return _save(fig, path)


def reliability_png(bins: Sequence[dict], ece: float | None, path: Path, title: str) -> Path:
    """Top-label reliability diagram (accuracy vs confidence per bin) over a confidence histogram.

    ``bins``: ``{"low", "high", "count", "confidence", "accuracy"}`` per equal-width bin
    (confidence/accuracy None for empty bins).
    """
    plt = _pyplot()
    fig, (ax, hx) = plt.subplots(2, 1, figsize=(6, 7.2), sharex=True, gridspec_kw={"height_ratios": [3, 1.1]})
    lows = np.array([b["low"] for b in bins])
    widths = np.array([b["high"] - b["low"] for b in bins])
    counts = np.array([b["count"] for b in bins])
    full = [b for b in bins if b["count"]]
    acc = np.array([b["accuracy"] if b["count"] else 0.0 for b in bins])
    ax.bar(lows, acc, width=widths, align="edge", color="tab:blue", alpha=0.75, edgecolor="black", label="accuracy in bin")
    if full:
        ax.plot([b["confidence"] for b in full], [b["accuracy"] for b in full], "o-", color="tab:orange",
                label="accuracy vs mean confidence")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("Accuracy")
    ax.set_title(title + (f"\nexpected calibration error (ECE) {ece:.3f}" if ece is not None else ""))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    hx.bar(lows, counts, width=widths, align="edge", color="tab:grey", edgecolor="black")
    hx.set_xlabel("Confidence (probability of the predicted class)")
    hx.set_ylabel("Images")
    hx.grid(alpha=0.3)
    return _save(fig, path)


def comparison_roc_png(models: Mapping[str, Mapping[str, dict]], classes: Sequence[str], path: Path, title: str) -> Path:
    """One panel per class, one curve per model (AUC in the legend)."""
    plt = _pyplot()
    k = len(classes)
    fig, axes = plt.subplots(1, k, figsize=(4.6 * k, 5.0), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for j, cls in enumerate(classes):
        ax = axes[0][j]
        for m, (label, curves) in enumerate(models.items()):
            c = curves.get(cls, {})
            if c.get("fpr") is None:
                ax.plot([], [], " ", label=f"{label} (AUC n/a)")
                continue
            ax.plot(c["fpr"], c["tpr"], lw=2, color=cmap(m % 10), linestyle=STYLES[m % len(STYLES)],
                    label=f"{label} ({_fmt_auc(c.get('auc'))})")
        ax.plot([0, 1], [0, 1], "--", color="grey", lw=1)
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.set_aspect("equal")
        ax.set_title(f"{cls} vs rest")
        ax.set_xlabel("False positive rate")
        if j == 0:
            ax.set_ylabel("True positive rate")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=9, title="model")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


__all__ = ["comparison_roc_png", "confusion_matrix_png", "reliability_png", "roc_png"]
