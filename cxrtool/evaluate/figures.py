"""Figures of ``cxrtool evaluate``: confusion matrix, ROC curves (one model, all classes),
reliability diagram, the ROC comparison of several models (one panel per class), and the
shift plot (one panel per acquisition shift, metrics against severity).

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


def shifts_png(section: Mapping, n_classes: int, path: Path, title: str) -> Path:
    """One small panel per shift: accuracy (solid) and macro AUC (dashed) against severity, one
    colour per model; severity 0 is the clean images, the dotted line chance accuracy.

    ``section``: the ``shifts`` part of ``metrics.json`` (``definitions``, ``models``)."""
    from matplotlib.lines import Line2D

    plt = _pyplot()
    names = list(section["definitions"])
    ncols = min(4, len(names))
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.1 * ncols, 2.7 * nrows + 0.9), squeeze=False,
                             sharey=True)
    cmap = plt.get_cmap("tab10")
    top = max(int(k) for d in section["definitions"].values() for k in d["severities"])
    for a, name in enumerate(names):
        ax = axes[a // ncols][a % ncols]
        levels = sorted(int(k) for k in section["definitions"][name]["severities"])
        for m, (label, mdoc) in enumerate(section["models"].items()):
            got = mdoc["shifts"].get(name, {})
            xs = [0] + [s for s in levels if str(s) in got]
            rows = [mdoc["clean"]] + [got[str(s)] for s in xs[1:]]
            colour = cmap(m % 10)
            ax.plot(xs, [r["accuracy"] for r in rows], "o-", color=colour, lw=2, ms=4)
            auc = [np.nan if r["auc_macro"] is None else r["auc_macro"] for r in rows]
            ax.plot(xs, auc, "s--", color=colour, lw=1.2, ms=3, alpha=0.8)
        ax.axhline(1.0 / n_classes, color="grey", lw=1, ls=":")
        ax.set_title(section["definitions"][name]["title"], fontsize=10)
        ax.set_xticks([0, *levels], labels=["clean", *map(str, levels)])
        ax.set_xlim(-0.3, top + 0.3)  # the same severity scale in every panel
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        if a % ncols == 0:
            ax.set_ylabel("accuracy / AUC")
        if a // ncols == nrows - 1 or a + ncols >= len(names):
            ax.set_xlabel("severity")
    for a in range(len(names), nrows * ncols):
        axes[a // ncols][a % ncols].set_visible(False)
    handles = [Line2D([], [], color=cmap(m % 10), lw=2, label=label) for m, label in enumerate(section["models"])]
    handles += [Line2D([], [], color="black", marker="o", ms=4, lw=2, label="accuracy"),
                Line2D([], [], color="black", marker="s", ms=3, ls="--", lw=1.2, label="macro AUC"),
                Line2D([], [], color="grey", ls=":", lw=1, label=f"chance accuracy (1/{n_classes})")]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), frameon=False, fontsize=9)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.45 / (2.7 * nrows + 0.9), 1, 1))
    return _save(fig, path)


__all__ = ["comparison_roc_png", "confusion_matrix_png", "reliability_png", "roc_png", "shifts_png"]
