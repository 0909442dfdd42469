"""Pictures people look at before they trust a dataset: sample sheets of kept and excluded
images, and exposure-metric histograms with the thresholds marked."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ..labels import CLASSES
from ..errors import ImageLoadError
from ..imageio import load_image
from .quality import METRICS, reason_key
from .table import Candidate, CandidateTable
from .types import BuildResult

THUMB = 160


def _pyplot():
    """matplotlib, imported on first use: importing the build package must stay cheap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _thumb(path: Path) -> np.ndarray | None:
    try:
        return load_image(path, draft=THUMB)
    except ImageLoadError:
        return None


def _pick(table: CandidateTable, rows: np.ndarray, n: int) -> list[Candidate]:
    """n evenly spaced members of ROWS in key order (deterministic, not just the first few)."""
    rank = table.key_rank()
    rows = rows[np.argsort(rank[rows], kind="stable")]
    if len(rows) > n:
        rows = rows[np.linspace(0, len(rows) - 1, n).round().astype(int)]
    return table.candidates(rows)


def _sheet(rows: list[tuple[str, list[Candidate]]], title: str, path: Path, caption) -> None:
    plt = _pyplot()
    ncols = max((len(r[1]) for r in rows), default=1) or 1
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.9 * ncols + 1.2, 2.15 * len(rows) + 0.6), squeeze=False)
    for r, (row_title, members) in enumerate(rows):
        for col in range(ncols):
            ax = axes[r][col]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if col >= len(members):
                continue
            img = _thumb(members[col].item.path)
            if img is not None:
                ax.imshow(img, cmap="gray", vmin=0, vmax=255)
            else:
                ax.text(0.5, 0.5, "unreadable", ha="center", va="center", transform=ax.transAxes, color="red")
            ax.set_title(caption(members[col]), fontsize=7)
        axes[r][0].set_ylabel(row_title, fontsize=9, rotation=0, ha="right", va="center", labelpad=8)
    fig.suptitle(title, fontsize=12)
    top_inches = 0.55  # room for the title above the first row's captions, whatever the height
    fig.tight_layout(rect=(0, 0, 1, 1 - top_inches / fig.get_figheight()))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def samples_sheet(result: BuildResult, path: Path, per_cell: int = 3) -> None:
    """Kept images per class (rows) and source (groups of columns), like the paper's Fig. 1."""
    table = result.table
    kept = table.reason == 0
    sources = sorted({table.source_names[k] for k in np.unique(table.source[kept]).tolist()})
    rows = []
    for code, label in enumerate(CLASSES):
        members = []
        for src in sources:
            cell = kept & (table.label == code) & (table.source == table.source_names.index(src))
            members += _pick(table, np.flatnonzero(cell), per_cell)
        rows.append((label, members[: per_cell * 4]))
    rows = [r for r in rows if r[1]] or [("(none)", [])]
    _sheet(rows, "Kept images per class (columns: sources)", path, lambda c: f"{c.item.source[:18]}\n{c.split}")


def excluded_sheet(result: BuildResult, path: Path, per_reason: int = 6) -> None:
    """A few excluded images per reason (balancing aside), so people can check the rules."""
    table = result.table
    by_reason: dict[str, list[int]] = defaultdict(list)  # reason key -> reason codes
    for code, reason in enumerate(table.reasons.values):
        if reason and reason != "balanced out":
            by_reason[reason_key(reason)].append(code)
    rows = [
        (key, _pick(table, np.flatnonzero(np.isin(table.reason, codes)), per_reason))
        for key, codes in sorted(by_reason.items())
    ]
    rows = [r for r in rows if r[1]] or [("(nothing excluded)", [])]
    _sheet(rows, "Excluded images by reason", path, lambda c: f"{c.item.source[:18]}\n{Path(c.item.rel).name[:22]}")


def exposure_histograms(result: BuildResult, path: Path) -> None:
    """One histogram per exposure metric over every decoded image, thresholds dashed."""
    plt = _pyplot()
    t = result.options.thresholds
    marks = {
        "mean": [(t.min_mean, "min"), (t.max_mean, "max")],
        "dark_frac": [(t.max_dark_frac, "max")],
        "bright_frac": [(t.max_bright_frac, "max")],
        "contrast": [(t.min_contrast, "min")],
        "entropy": [(t.min_entropy, "min")],
    }
    labels = {
        "mean": "mean brightness (0-1)",
        "dark_frac": "fraction of near-black pixels",
        "bright_frac": "fraction of near-white pixels",
        "contrast": "contrast: 99th - 1st percentile",
        "entropy": "entropy (bits)",
    }
    table = result.table
    measured = np.flatnonzero(table.has_quality)
    exposure = [k for k, r in enumerate(table.reasons.values) if r in ("over-exposed", "under-exposed", "low contrast / near blank")]
    failed = np.isin(table.reason[measured], exposure)
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3.4))
    for ax, m in zip(axes, METRICS):
        values = table.quality[measured, METRICS.index(m)]
        bins = np.linspace(0, 8 if m == "entropy" else 1, 41)
        counts, _, _ = ax.hist([values[~failed], values[failed]], bins=bins, stacked=True, color=["#4878a8", "#d1495b"],
                               label=["passed", "excluded (exposure)"])
        ax.set_yscale("log")
        # one full bin alone would autoscale to a sliver of a decade; headroom for the labels
        ax.set_ylim(0.5, max(2.0, float(np.max(counts[-1])) if len(values) else 2.0) * 4)
        for value, name in marks[m]:
            ax.axvline(value, color="black", linestyle="--", linewidth=1)
            # x in data, y in axes units: the label stays inside the panel whatever the scale
            ax.text(value, 0.97, f" {name} {value:g}", fontsize=8, va="top", transform=ax.get_xaxis_transform())
        ax.set_xlabel(labels[m])
        ax.set_ylabel("images")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=9, loc="upper right", ncol=2, frameon=False)
    fig.suptitle(f"Exposure metrics of {len(measured)} decoded images; dashed lines: thresholds", x=0.4)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def dataset_figures(folder: Path, result: BuildResult) -> None:
    """samples.png, excluded.png and exposure.png into FOLDER."""
    samples_sheet(result, folder / "samples.png")
    excluded_sheet(result, folder / "excluded.png")
    exposure_histograms(result, folder / "exposure.png")
