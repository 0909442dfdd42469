"""Cheap image-level checks that need no model: is this picture a chest X-ray at all?

A radiograph is grey, roughly square, has a spread of mid-tones, is smooth from pixel to
pixel (anatomy, not sensor noise) yet keeps some fine detail (ribs, vessels, film grain: it
is not a picture blown up from a few pixels or a synthetic smooth field), and has a dark
background in the lung fields with a bright mediastinum between them. A scanned letter, a
photograph, a chart, random noise or a flat ramp breaks at least one of these. Each check is a number computed from a 64 x 64 grey
thumbnail (plus the file's own size and colour), compared with a limit that real X-rays of
the shared public sources stay well inside (measured in docs/ood.md).

numpy and Pillow only: no Keras, so ``predict`` runs it in its decoding threads and tests and
``build-dataset`` can import it for free. The model-based score is :mod:`cxrtool.ood`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

#: The flag of an input that fails an image-level check.
NOT_XRAY = "not-a-chest-xray"

#: Side of the thumbnail the statistics are computed on (independent of the model's size).
THUMB = 64

#: Side of the larger thumbnail the fine-detail statistic is computed on (from the full image).
DETAIL = 128

#: Below this short side the fine-detail statistic is not computed (too few pixels to judge).
MIN_DETAIL_SIDE = 32


@dataclass(frozen=True)
class Limits:
    """Where a check fails. Every real X-ray of the shared sources passes all of them
    (docs/ood.md lists the measured ranges)."""

    max_colour: float = 0.05  # fraction of pixels with visible colour (chroma > 40 of 255)
    max_aspect: float = 2.0  # longer side / shorter side
    min_std: float = 12.0  # grey-level standard deviation: flat or blank below
    min_midtones: float = 0.15  # fraction of pixels in 40..215: binary pictures (text, line art) below
    max_bright: float = 0.45  # fraction of near-white pixels (>= 235): a white page above
    max_roughness: float = 0.30  # mean |neighbour difference| / std: noise and texture above
    min_roughness: float = 0.045  # ... and a perfectly smooth ramp or blob below
    max_inverted: float = 1.0  # (lung fields - mediastinum) / std: a negative (inverted) film above
    max_flat_regions: float = 0.45  # fraction of mid-grey pixels equal to their neighbours: drawn shapes above
    min_detail: float = 0.020  # fine-detail energy / std at 128 px: blown-up small pictures, smooth fields below


LIMITS = Limits()


def colour_fraction(im: Image.Image) -> float:
    """Fraction of a Pillow image's pixels with visible colour (max - min channel > 40), on a
    64 x 64 nearest-neighbour sample; 0 for grey modes. Many X-rays are stored as RGB with equal
    channels, which gives 0 too."""
    if im.mode in ("1", "L", "LA", "La", "I", "F") or im.mode.startswith("I;"):
        return 0.0
    small = np.asarray(im.resize((THUMB, THUMB), Image.NEAREST).convert("RGB"), dtype=np.int16)
    chroma = small.max(axis=2) - small.min(axis=2)
    return float(np.mean(chroma > 40))


def thumbnail(gray: np.ndarray) -> np.ndarray:
    """A ``THUMB x THUMB`` float copy of a grey uint8 image (smaller images keep their size:
    upsampling would make any picture look smooth)."""
    im = Image.fromarray(np.asarray(gray, dtype=np.uint8))
    if min(im.size) > THUMB:
        im = im.resize((THUMB, THUMB), Image.BILINEAR)
    return np.asarray(im, dtype=np.float32)


def fine_detail(gray: np.ndarray) -> float:
    """How much of an image's contrast sits in its finest detail: on a ``DETAIL`` px thumbnail
    (the image itself when smaller), the standard deviation of what a 2x smaller copy cannot
    hold, over the thumbnail's standard deviation. X-rays keep ribs, vessel edges and grain at
    that scale even when compressed; a picture blown up from a few pixels, a ramp or a smooth
    density field has next to none. NaN when the short side is under ``MIN_DETAIL_SIDE``."""
    im = Image.fromarray(np.asarray(gray, dtype=np.uint8))
    if min(im.size) < MIN_DETAIL_SIDE:
        return float("nan")
    if min(im.size) > DETAIL:  # box-reduce by a whole factor first (5x cheaper on a big film)
        im = im.resize((DETAIL, DETAIL), Image.BILINEAR, reducing_gap=1.0)
    # in float: rounding the smaller copy to 8 bits would add detail of its own
    f = im.convert("F")
    even = f.width % 2 == 0 and f.height % 2 == 0
    half = f.reduce(2) if even else f.resize((f.width // 2, f.height // 2), Image.BOX)
    t = np.asarray(f)
    # numpy's own reductions, no BLAS call: this runs in predict's decoding threads, where
    # OpenBLAS's threads would spin beside XLA's (a dot product here cost ~40% of throughput)
    std = float(t.std())
    if std == 0:
        return 0.0
    return float((t - np.asarray(half.resize(f.size, Image.BILINEAR))).std()) / std


def image_stats(gray: np.ndarray, *, width: int | None = None, height: int | None = None,
                colour: float = 0.0, full: np.ndarray | None = None, detail: bool = True) -> dict[str, float]:
    """The numbers the checks compare: colour, aspect, std, midtones, bright, roughness,
    inverted (lung fields brighter than the mediastinum), flat_regions, detail; and the
    histogram (black, white, quantiles q05 to q95) for the picture score.

    ``full``: the image at its own resolution when ``gray`` is a smaller copy (``predict``
    passes the model-size image as ``gray`` to save a resize): the fine detail is judged on it.
    ``detail=False`` skips the fine detail (NaN; the picture score does not use it).
    """
    t = thumbnail(gray)
    std = float(t.std())
    dy, dx = np.abs(np.diff(t, axis=0)), np.abs(np.diff(t, axis=1))
    rough = (dy.mean() + dx.mean()) / 2.0
    inner = t[:-1, :-1]
    # exactly constant patches away from black and white: filled shapes, not anatomy or film
    flat_regions = float(np.mean((dx[:-1, :] < 0.5) & (dy[:, :-1] < 0.5) & (inner > 8) & (inner < 247)))
    w, h = (width, height) if width and height else (gray.shape[1], gray.shape[0])
    # the central vertical band (spine, heart) against the two lung fields, mid-height
    n, m = t.shape
    rows = slice(n // 5, max(n // 5 + 1, n * 4 // 5))
    centre = t[rows, m * 7 // 16 : max(m * 7 // 16 + 1, m * 9 // 16)].mean()
    lungs = (t[rows, m // 8 : max(m // 8 + 1, m * 3 // 8)].mean() + t[rows, m * 5 // 8 : max(m * 5 // 8 + 1, m * 7 // 8)].mean()) / 2.0
    # one histogram of the (whole-number) grey levels serves the fractions and the quantiles
    cdf = np.cumsum(np.bincount(np.clip(t, 0, 255).astype(np.uint8).ravel(), minlength=256)) / t.size
    below = lambda v: float(cdf[v - 1]) if v > 0 else 0.0  # noqa: E731 - fraction of pixels < v
    return {
        "colour": float(colour),
        "aspect": float(max(w, h) / max(1, min(w, h))),
        "std": std,
        "midtones": below(216) - below(40),
        "bright": 1.0 - below(235),
        "roughness": float(rough / std) if std > 0 else 0.0,
        "inverted": float((lungs - centre) / std) if std > 0 else 0.0,
        "flat_regions": flat_regions,
        "detail": fine_detail(gray if full is None else full) if detail else float("nan"),
        # the grey-level histogram: no check of its own, part of the picture score (cxrtool.ood)
        "black": below(11),
        "white": 1.0 - below(250),
        # the lowest grey level with at least that fraction of the pixels at or below it
        **{f"q{q:02d}": float(np.searchsorted(cdf, q / 100.0)) / 255.0 for q in (5, 25, 50, 75, 95)},
    }


#: The statistics the model-fitted picture score (:mod:`cxrtool.ood`) compares jointly: each
#: check looks at one number against a fixed limit; together they describe a chest film's
#: contrast, texture and histogram, and a picture can pass every limit yet sit far from the
#: training X-rays in all of them at once. (The fine detail is left out: it cost as much as
#: all the others together and changed nothing measured on the dev, fresh and fresh2 sets.)
PICTURE_KEYS = ("std", "midtones", "bright", "roughness", "inverted", "flat_regions", "black", "white",
                "q05", "q25", "q50", "q75", "q95")


def picture_vector(gray: np.ndarray, stats: dict[str, float] | None = None) -> np.ndarray:
    """:data:`PICTURE_KEYS` of one model-size grey image as a float vector. ``stats``:
    :func:`image_stats` already computed on a thumbnail of this image (``predict``'s checks)."""
    if stats is None:
        stats = image_stats(gray, detail=False)
    return np.asarray([stats[k] for k in PICTURE_KEYS], np.float64)


def failed_checks(stats: dict[str, float], limits: Limits = LIMITS) -> list[str]:
    """The names of the checks these statistics fail (empty: looks like an X-ray)."""
    failed = []
    if stats["colour"] > limits.max_colour:
        failed.append("colour")
    if stats["aspect"] > limits.max_aspect:
        failed.append("aspect")
    if stats["std"] < limits.min_std:
        failed.append("flat")
    if stats["midtones"] < limits.min_midtones:
        failed.append("binary")
    if stats["bright"] > limits.max_bright:
        failed.append("white-page")
    if stats["roughness"] > limits.max_roughness:
        failed.append("noise")
    elif stats["roughness"] < limits.min_roughness:
        failed.append("smooth")
    if stats["inverted"] > limits.max_inverted:
        failed.append("inverted")
    if stats["flat_regions"] > limits.max_flat_regions:
        failed.append("flat-regions")
    if stats.get("detail", float("nan")) < limits.min_detail:  # NaN (too small to judge) compares False
        failed.append("no-detail")
    return failed


def flag_for_stats(stats: dict[str, float], limits: Limits = LIMITS) -> str | None:
    """:data:`NOT_XRAY` when these statistics fail any check, else None."""
    return NOT_XRAY if failed_checks(stats, limits) else None


def check_image(gray: np.ndarray, *, width: int | None = None, height: int | None = None,
                colour: float = 0.0, full: np.ndarray | None = None, limits: Limits = LIMITS) -> str | None:
    """:data:`NOT_XRAY` when the image fails any check, else None (``full``: see :func:`image_stats`)."""
    return flag_for_stats(image_stats(gray, width=width, height=height, colour=colour, full=full), limits)


__all__ = ["DETAIL", "LIMITS", "Limits", "MIN_DETAIL_SIDE", "NOT_XRAY", "PICTURE_KEYS", "THUMB", "check_image",
           "colour_fraction", "failed_checks", "fine_detail", "flag_for_stats", "image_stats", "picture_vector", "thumbnail"]
