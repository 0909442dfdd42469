"""Cheap image-level checks that need no model: is this picture a chest X-ray at all?

A radiograph is grey, roughly square, has a spread of mid-tones, is smooth from pixel to
pixel (anatomy, not sensor noise) yet keeps some fine detail (ribs, vessels, film grain: it
is not a picture blown up from a few pixels or a synthetic smooth field), and has a dark
background in the lung fields with a bright mediastinum between them. A scanned letter, a
photograph, a chart, random noise or a flat ramp breaks at least one of these. Each check is a number computed from a 64 x 64 grey
thumbnail (plus the file's own size and colour), compared with a limit that real X-rays of
the shared public sources stay well inside (measured in docs/ood.md).

The image judged is the one the model sees, the model-size copy (:func:`file_views`), so
``predict``, ``gradcam`` and ``evaluate`` judge a file alike, and nothing has to be shrunk
from the full-resolution file a second time.

numpy and Pillow only: no Keras, so ``predict`` makes the thumbnails in its decoding threads and tests and
``build-dataset`` can import it for free. The model-based score is :mod:`cxrtool.ood`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

#: The flag of an input that fails an image-level check.
NOT_XRAY = "not-a-chest-xray"

#: Side of the thumbnail the statistics are computed on (independent of the model's size).
THUMB = 64

#: Side of the larger thumbnail the fine-detail statistic is computed on (the image itself when smaller).
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


def detail_thumbnail(gray: np.ndarray) -> np.ndarray | None:
    """The ``DETAIL`` px float copy of a grey uint8 image that :func:`fine_detail` judges (the
    image itself when its short side is at most ``DETAIL``; None under ``MIN_DETAIL_SIDE``)."""
    im = Image.fromarray(np.asarray(gray, dtype=np.uint8))
    if min(im.size) < MIN_DETAIL_SIDE:
        return None
    if min(im.size) > DETAIL:  # box-reduce by a whole factor first (5x cheaper on a big film)
        im = im.resize((DETAIL, DETAIL), Image.BILINEAR, reducing_gap=1.0)
    return np.asarray(im, dtype=np.float32)


def _upsample2(half: np.ndarray) -> np.ndarray:
    """Pillow's bilinear 2x enlargement of a stack of float images (n, h, w): each output pixel
    is 3/4 of its nearest input pixel and 1/4 of the next one on each axis, with the weights
    renormalised at the border (Pillow's own kernel at this scale, as slices instead of a
    resize per image; tests compare the two)."""
    def axis2x(a: np.ndarray, axis: int) -> np.ndarray:
        a = np.moveaxis(a, axis, -1)
        prev = np.concatenate([a[..., :1], a[..., :-1]], axis=-1)  # the border repeats: weight renormalised
        nxt = np.concatenate([a[..., 1:], a[..., -1:]], axis=-1)
        out = np.empty(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        out[..., 0::2] = 0.75 * a + 0.25 * prev
        out[..., 1::2] = 0.75 * a + 0.25 * nxt
        return np.moveaxis(out, -1, axis)

    return axis2x(axis2x(half, 1), 2)


def _fine_detail_stack(t: np.ndarray) -> np.ndarray:
    """:func:`fine_detail` of a stack of same-size detail thumbnails (n, h, w) float32."""
    n, h, w = t.shape
    if h % 2 or w % 2:  # odd sides (only images under DETAIL px): Pillow's box resize, one by one
        out = np.empty(n)
        for i, img in enumerate(t):
            f = Image.fromarray(img, mode="F")
            up = np.asarray(f.resize((w // 2, h // 2), Image.BOX).resize((w, h), Image.BILINEAR))
            out[i] = (img - up).std()
    else:  # what a 2x smaller copy (2 x 2 means, Pillow's reduce(2)) holds, enlarged again
        half = (t[:, 0::2, 0::2] + t[:, 0::2, 1::2] + t[:, 1::2, 0::2] + t[:, 1::2, 1::2]) * np.float32(0.25)
        out = (t - _upsample2(half)).std(axis=(1, 2))
    std = t.std(axis=(1, 2))
    # numpy's own reductions, no BLAS call: this can run beside XLA's threads, where
    # OpenBLAS's would spin (a dot product here once cost ~40% of predict's throughput)
    return np.where(std > 0, out / np.where(std > 0, std, 1.0), 0.0)


def fine_detail(gray: np.ndarray) -> float:
    """How much of an image's contrast sits in its finest detail: on a ``DETAIL`` px thumbnail
    (the image itself when smaller), the standard deviation of what a 2x smaller copy cannot
    hold, over the thumbnail's standard deviation. X-rays keep ribs, vessel edges and grain at
    that scale even when compressed; a picture blown up from a few pixels, a ramp or a smooth
    density field has next to none. NaN when the short side is under ``MIN_DETAIL_SIDE``."""
    t = detail_thumbnail(gray)
    return float("nan") if t is None else float(_fine_detail_stack(t[None])[0])


@dataclass(frozen=True)
class Views:
    """What the checks read from one decoded image: its thumbnail, the thumbnail its fine
    detail is judged on, its size and colour. ``predict`` makes these in its decoding threads
    (Pillow resizes, which release the GIL) and judges a whole batch at once in
    :func:`batch_stats` (a few dozen numpy calls per batch instead of per image)."""

    thumb: np.ndarray  # THUMB px float32 (or the image itself when smaller)
    detail: np.ndarray | None  # DETAIL px float32 (or the image itself); None: too small or not wanted
    width: int
    height: int
    colour: float = 0.0


def views(gray: np.ndarray, *, width: int | None = None, height: int | None = None, colour: float = 0.0,
          detail: bool = True) -> Views:
    """:class:`Views` of one grey uint8 image (arguments as in :func:`image_stats`)."""
    w, h = (width, height) if width and height else (gray.shape[1], gray.shape[0])
    return Views(thumbnail(gray), detail_thumbnail(gray) if detail else None, int(w), int(h), float(colour))


def judged_image(full: np.ndarray, model_input: np.ndarray) -> np.ndarray:
    """The image the checks judge for a file: the model-size copy ``model_input`` (what the
    model sees; ``evaluate`` only has that one), or the file's own pixels ``full`` when the
    model's input is smaller than the thumbnail (a 28 px test model: too few pixels to judge)."""
    return model_input if min(model_input.shape[:2]) >= THUMB else full


def file_views(full: np.ndarray, model_input: np.ndarray, *, width: int, height: int, colour: float = 0.0) -> Views:
    """:class:`Views` of a decoded file: its :func:`judged_image`, with the file's own size
    and colour (``predict`` and ``gradcam``; one rule, so both flag a file alike)."""
    return views(judged_image(full, model_input), width=width, height=height, colour=colour)


def _same_shape(arrays: Sequence[np.ndarray]) -> dict[tuple, list[int]]:
    groups: dict[tuple, list[int]] = {}
    for i, a in enumerate(arrays):
        groups.setdefault(a.shape, []).append(i)
    return groups


def _thumb_stats(t: np.ndarray) -> dict[str, np.ndarray]:
    """The statistics of a stack of same-size thumbnails (n, h, w) float32 (see :func:`image_stats`)."""
    n, h, w = t.shape
    std = t.std(axis=(1, 2))
    dy, dx = np.abs(np.diff(t, axis=1)), np.abs(np.diff(t, axis=2))
    rough = (dy.mean(axis=(1, 2)) + dx.mean(axis=(1, 2))) / 2.0
    inner = t[:, :-1, :-1]
    # exactly constant patches away from black and white: filled shapes, not anatomy or film
    flat_regions = np.mean((dx[:, :-1, :] < 0.5) & (dy[:, :, :-1] < 0.5) & (inner > 8) & (inner < 247), axis=(1, 2))
    # the central vertical band (spine, heart) against the two lung fields, mid-height
    rows = slice(h // 5, max(h // 5 + 1, h * 4 // 5))
    centre = t[:, rows, w * 7 // 16 : max(w * 7 // 16 + 1, w * 9 // 16)].mean(axis=(1, 2))
    lungs = (t[:, rows, w // 8 : max(w // 8 + 1, w * 3 // 8)].mean(axis=(1, 2))
             + t[:, rows, w * 5 // 8 : max(w * 5 // 8 + 1, w * 7 // 8)].mean(axis=(1, 2))) / 2.0
    # one histogram of the (whole-number) grey levels per image serves the fractions and the quantiles
    levels = np.clip(t, 0, 255).astype(np.int64).reshape(n, -1) + 256 * np.arange(n)[:, None]
    cdf = np.cumsum(np.bincount(levels.ravel(), minlength=256 * n).reshape(n, 256), axis=1) / (h * w)
    below = lambda v: cdf[:, v - 1] if v > 0 else np.zeros(n)  # noqa: E731 - fraction of pixels < v
    safe = np.where(std > 0, std, 1.0)
    return {
        "std": std.astype(np.float64),
        "midtones": below(216) - below(40),
        "bright": 1.0 - below(235),
        "roughness": np.where(std > 0, rough / safe, 0.0),
        "inverted": np.where(std > 0, (lungs - centre) / safe, 0.0),
        "flat_regions": flat_regions.astype(np.float64),
        # the grey-level histogram: no check of its own, part of the picture score (cxrtool.ood)
        "black": below(11),
        "white": 1.0 - below(250),
        # the lowest grey level with at least that fraction of the pixels at or below it
        **{f"q{q:02d}": (cdf < q / 100.0).sum(axis=1) / 255.0 for q in (5, 25, 50, 75, 95)},
    }


def batch_stats(items: Sequence[Views]) -> dict[str, np.ndarray]:
    """:func:`image_stats` of many images at once: each statistic as an array, in input order
    (thumbnails of one size are judged as one stack)."""
    n = len(items)
    out: dict[str, np.ndarray] = {
        "colour": np.asarray([v.colour for v in items], np.float64),
        "aspect": np.asarray([max(v.width, v.height) / max(1, min(v.width, v.height)) for v in items], np.float64),
    }
    for idx in _same_shape([v.thumb for v in items]).values():
        for k, a in _thumb_stats(np.stack([items[i].thumb for i in idx])).items():
            out.setdefault(k, np.empty(n))[idx] = a
    out["detail"] = np.full(n, np.nan)
    with_detail = [i for i, v in enumerate(items) if v.detail is not None]
    for idx in _same_shape([items[i].detail for i in with_detail]).values():
        rows = [with_detail[j] for j in idx]
        out["detail"][rows] = _fine_detail_stack(np.stack([items[i].detail for i in rows]))
    return out


def image_stats(gray: np.ndarray, *, width: int | None = None, height: int | None = None,
                colour: float = 0.0, detail: bool = True) -> dict[str, float]:
    """The numbers the checks compare: colour, aspect, std, midtones, bright, roughness,
    inverted (lung fields brighter than the mediastinum), flat_regions, detail; and the
    histogram (black, white, quantiles q05 to q95) for the picture score.

    ``width``, ``height``, ``colour``: the file's own, when ``gray`` is a resized grey copy
    (:func:`file_views`). ``detail=False`` skips the fine detail (NaN; the picture score does
    not use it).
    """
    stats = batch_stats([views(gray, width=width, height=height, colour=colour, detail=detail)])
    return {k: float(v[0]) for k, v in stats.items()}


#: The statistics the model-fitted picture score (:mod:`cxrtool.ood`) compares jointly: each
#: check looks at one number against a fixed limit; together they describe a chest film's
#: contrast, texture and histogram, and a picture can pass every limit yet sit far from the
#: training X-rays in all of them at once. (The fine detail is left out: it cost as much as
#: all the others together and changed nothing measured on the dev, fresh and fresh2 sets.)
PICTURE_KEYS = ("std", "midtones", "bright", "roughness", "inverted", "flat_regions", "black", "white",
                "q05", "q25", "q50", "q75", "q95")


def picture_vector(gray: np.ndarray, stats: dict[str, float] | None = None) -> np.ndarray:
    """:data:`PICTURE_KEYS` of one model-size grey image as a float vector. ``stats``:
    :func:`image_stats` already computed on a thumbnail of this image (the checks' numbers)."""
    if stats is None:
        stats = image_stats(gray, detail=False)
    return picture_rows(stats)


def picture_rows(stats: dict[str, np.ndarray]) -> np.ndarray:
    """:data:`PICTURE_KEYS` of :func:`batch_stats`' images, one row per image."""
    return np.stack([np.asarray(stats[k], np.float64) for k in PICTURE_KEYS], axis=-1)


def check_failures(stats: dict[str, np.ndarray], limits: Limits = LIMITS) -> dict[str, np.ndarray]:
    """Each check's name with a boolean array: which of these images (:func:`batch_stats`) fail it."""
    detail = np.asarray(stats.get("detail", np.nan))
    return {
        "colour": np.asarray(stats["colour"]) > limits.max_colour,
        "aspect": np.asarray(stats["aspect"]) > limits.max_aspect,
        "flat": np.asarray(stats["std"]) < limits.min_std,
        "binary": np.asarray(stats["midtones"]) < limits.min_midtones,
        "white-page": np.asarray(stats["bright"]) > limits.max_bright,
        "noise": np.asarray(stats["roughness"]) > limits.max_roughness,
        "smooth": np.asarray(stats["roughness"]) < limits.min_roughness,
        "inverted": np.asarray(stats["inverted"]) > limits.max_inverted,
        "flat-regions": np.asarray(stats["flat_regions"]) > limits.max_flat_regions,
        "no-detail": detail < limits.min_detail,  # NaN (too small to judge) compares False
    }


def failed_checks(stats: dict[str, float], limits: Limits = LIMITS) -> list[str]:
    """The names of the checks these statistics (one image's) fail (empty: looks like an X-ray)."""
    return [name for name, failed in check_failures(stats, limits).items() if failed]


def batch_checks(items: Sequence[Views], limits: Limits = LIMITS) -> tuple[list[str | None], np.ndarray]:
    """The image-check flag (:data:`NOT_XRAY` or None) and the picture-score statistics
    (:data:`PICTURE_KEYS`, one row per image) of many images, from one :func:`batch_stats`
    (the checks and the picture score read the same numbers)."""
    if not items:
        return [], np.empty((0, len(PICTURE_KEYS)))
    stats = batch_stats(items)
    failed = np.any(np.stack(list(check_failures(stats, limits).values())), axis=0)
    return [NOT_XRAY if f else None for f in failed], picture_rows(stats)


def flag_for_stats(stats: dict[str, float], limits: Limits = LIMITS) -> str | None:
    """:data:`NOT_XRAY` when these statistics fail any check, else None."""
    return NOT_XRAY if failed_checks(stats, limits) else None


def check_image(gray: np.ndarray, *, width: int | None = None, height: int | None = None,
                colour: float = 0.0, limits: Limits = LIMITS) -> str | None:
    """:data:`NOT_XRAY` when the image fails any check, else None (arguments: see :func:`image_stats`)."""
    return flag_for_stats(image_stats(gray, width=width, height=height, colour=colour), limits)


__all__ = ["DETAIL", "LIMITS", "Limits", "MIN_DETAIL_SIDE", "NOT_XRAY", "PICTURE_KEYS", "THUMB", "Views", "batch_checks",
           "batch_stats", "check_failures", "check_image", "colour_fraction", "detail_thumbnail", "failed_checks",
           "file_views", "fine_detail", "flag_for_stats", "image_stats", "judged_image", "picture_rows", "picture_vector", "thumbnail", "views"]
