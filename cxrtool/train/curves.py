"""A training run's per-epoch record for people: the CSV log and the loss/accuracy curves PNG."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

from ..atomic import atomic_path


def write_log_csv(path: Path, history: Sequence[dict]) -> Path | None:
    """One row per epoch (every metric Keras logged, lr, seconds, images/s); written atomically."""
    if not history:
        return None
    keys: list[str] = []
    for row in history:
        keys.extend(k for k in row if k not in keys)
    with atomic_path(path, suffix=".csv") as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
    return path


def plot_curves(history: Sequence[dict], path: Path, title: str = "") -> Path:
    """Loss and accuracy per epoch (train and val) as a PNG; written atomically."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    try:
        for ax, metric in zip(axes, ("loss", "accuracy")):
            for key, style in ((metric, "-"), (f"val_{metric}", "--")):
                values = [r.get(key, math.nan) for r in history]
                if any(not math.isnan(v) for v in values):
                    ax.plot(epochs, values, style, marker="o", markersize=3, label=key)
            ax.set_xlabel("epoch")
            ax.set_ylabel(metric)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
            ax.grid(alpha=0.3)
            ax.legend()
        fig.suptitle(title)
        fig.tight_layout()
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
    return path


__all__ = ["plot_curves", "write_log_csv"]
