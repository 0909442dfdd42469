"""Exposure and size quality control.

Metrics are computed once per image from its decoded grayscale (at a working size of at
most ``WORK_SIZE`` px, which is plenty for histogram statistics). Thresholds are a data
class so every one is a CLI option and is written into the report.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np

#: Longest side the metrics (and perceptual hashes) are computed at.
WORK_SIZE = 256

METRICS = ("mean", "dark_frac", "bright_frac", "contrast", "entropy")


@dataclass(frozen=True, slots=True)
class Quality:
    """Exposure metrics of one image, all in [0, 1] except entropy (bits, 0..8)."""

    mean: float  # mean brightness
    dark_frac: float  # fraction of near-black pixels (< 10/255)
    bright_frac: float  # fraction of near-white pixels (> 245/255)
    contrast: float  # robust contrast: 99th minus 1st percentile
    entropy: float  # Shannon entropy of the 256-bin histogram

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class Thresholds:
    """Exclusion rules. Defaults were chosen from the distributions of the public sources
    (see docs/build-dataset.md): they drop blank, burnt-out and black frames, not ordinary films."""

    min_size: int = 64  # shorter side, original pixels
    max_mean: float = 0.84  # over-exposed above this mean brightness ...
    max_bright_frac: float = 0.60  # ... or with this much of the frame near white
    min_mean: float = 0.12  # under-exposed below this mean brightness ...
    max_dark_frac: float = 0.75  # ... or with this much of the frame near black
    min_contrast: float = 0.25  # low contrast / near blank below this p99 - p1 ...
    min_entropy: float = 3.0  # ... or below this many bits (cleanvision's low-information rule)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def measure(gray: np.ndarray) -> Quality:
    """Exposure metrics of a grayscale uint8 image."""
    hist = np.bincount(gray.ravel(), minlength=256).astype(np.float64)
    total = hist.sum()
    p = hist / total
    cdf = np.cumsum(p)
    p1 = int(np.searchsorted(cdf, 0.01))
    p99 = int(np.searchsorted(cdf, 0.99))
    nz = p[p > 0]
    return Quality(
        mean=float((p * np.arange(256)).sum() / 255.0),
        dark_frac=float(hist[:10].sum() / total),
        bright_frac=float(hist[246:].sum() / total),
        contrast=float((p99 - p1) / 255.0),
        entropy=float(-(nz * np.log2(nz)).sum()),
    )


def problems(q: Quality, width: int, height: int, t: Thresholds) -> list[str]:
    """Every exclusion reason that applies (empty: the image passes). Order is fixed:
    size, then exposure, so the first reason is the most basic one."""
    found = []
    if min(width, height) < t.min_size:
        found.append(f"too small ({width}x{height} < {t.min_size} px)")
    if q.mean > t.max_mean or q.bright_frac > t.max_bright_frac:
        found.append("over-exposed")
    if q.mean < t.min_mean or q.dark_frac > t.max_dark_frac:
        found.append("under-exposed")
    if q.contrast < t.min_contrast or q.entropy < t.min_entropy:
        found.append("low contrast / near blank")
    return found


def reason_key(reason: str) -> str:
    """A stable short key for grouping reasons in reports ("too small (..)" -> "too-small")."""
    head = reason.split(" (")[0]
    return re.sub(r"[^a-z0-9]+", "-", head.lower()).strip("-")
