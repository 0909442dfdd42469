"""Where a heat map puts its mass, as numbers: the share on the image border and on burnt-in
text, each next to the share of the image those regions cover.

A model that looks at the lungs puts little heat on the outer band of the image and on text
labels ("F: Day 15", "R", a hospital stamp); a model that learned the source puts a lot
there. The *lift* (heat share / area share) says how much more heat a region gets than a
uniform map would give it: 1 is "no preference", above 1 is attraction.

Pure numpy and scipy.ndimage; no Keras. The maps come from
:func:`cxrtool.gradcam.explain` (0..1, at the image's resolution).

The text detector (:func:`text_mask`) is a heuristic, not OCR. It looks for small, bright,
high-contrast marks on a dark surround: pixels much brighter than their surroundings (a
white top-hat: the image minus its grey opening with a window a few percent of the image
side), merged into words by a small closing, keeping small, compact words whose surround is
dark (burnt-in text and side markers sit on the black margin). Checked by eye on the shared
sources: it finds most "R"/"L" markers and burnt-in words on the margin. Limits: text on
tissue or on a bright label box, dark text on a light background, large serif markers, long
text lines and faint grey markers are missed; small bright objects on the margin that are
not text (ECG electrodes, clips, tube connectors) are found as "text" too. Read the text share
as "heat on small bright marks on the margin", and check a few overlays before trusting it
on a new source.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "DEFAULT_BAND",
    "ImageAttention",
    "aggregate",
    "band_mask",
    "heat_share",
    "lift",
    "measure",
    "summarise",
    "text_mask",
]

DEFAULT_BAND = 0.10  # outer fraction of each side counted as "border"


def band_mask(shape: tuple[int, int], band: float = DEFAULT_BAND) -> np.ndarray:
    """Boolean (H, W) mask of the outer ``band`` fraction of each side (rows at the top and
    bottom, columns at the left and right; at least one pixel when ``band`` > 0)."""
    if not 0.0 <= band < 0.5:
        raise ValueError(f"band must be in [0, 0.5), got {band}")
    h, w = int(shape[0]), int(shape[1])
    mask = np.zeros((h, w), bool)
    if band == 0:
        return mask
    bh, bw = max(1, int(round(band * h))), max(1, int(round(band * w)))
    mask[:bh], mask[h - bh:], mask[:, :bw], mask[:, w - bw:] = True, True, True, True
    return mask


def heat_share(heat: np.ndarray, mask: np.ndarray) -> float | None:
    """The fraction of the heat mass inside ``mask`` (None for a map without heat)."""
    heat = np.asarray(heat, dtype=np.float64)
    total = float(heat.sum())
    if total <= 0:
        return None
    return float(heat[mask].sum()) / total


def lift(share: float | None, area: float | None) -> float | None:
    """Heat share / area share: 1 for a uniform map, > 1 when the region draws heat
    (None when the region is empty or there is no heat)."""
    if share is None or area is None or area <= 0:
        return None
    return share / area


def text_mask(
    image: np.ndarray,
    *,
    min_level: float = 0.45,
    min_contrast: float = 0.25,
    max_surround: float = 0.3,
    window: float = 0.04,
    max_component: float = 0.02,
    max_side: float = 0.4,
    max_elongation: float = 12.0,
) -> np.ndarray:
    """Boolean mask of text-like regions (burnt-in labels and markers) of a grayscale image.

    A pixel is a stroke when it is at least ``min_level`` of the image's maximum and at least
    ``min_contrast`` of the full range brighter than its grey opening over a ``window``
    (fraction of the shorter side) square: thin bright marks stand out, wide bright anatomy
    (shoulders, spine, the mediastinum) does not. Strokes are merged into words by a closing;
    a word is kept when it is small (at most ``max_component`` of the image area and
    ``max_side`` of either side) and sits on a dark surround (the 75th percentile of a ring
    around it at most ``max_surround`` of the range): burnt-in text is written on the black
    margin, while rib and clavicle edges and the bright rim of the body against the
    background, the strongest look-alikes, have grey tissue on at least one side. Words must
    also be compact (longest side at most ``max_elongation`` times the mean thickness, area /
    longest side, and that thickness at least 2 px): wires, tubes and the rim of the body are
    long thin lines.
    The mask covers the words, not just the strokes, so heat *on* the text counts. See the
    module docstring for what it misses.
    """
    from scipy import ndimage

    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"expected a grayscale (H, W) image, got shape {img.shape}")
    if img.max(initial=0) > 1.0:
        img = img / 255.0
    h, w = img.shape
    short = min(h, w)
    k = max(3, int(round(window * short)) | 1)
    tophat = img - ndimage.grey_opening(img, size=(k, k))
    strokes = (img >= min_level * float(img.max(initial=0))) & (tophat >= min_contrast)
    if not strokes.any():
        return strokes
    # letters -> words: close small gaps between strokes
    gap = max(1, int(round(0.01 * short)))
    words = ndimage.binary_closing(strokes, structure=np.ones((2 * gap + 1, 2 * gap + 1), bool), border_value=0)
    words |= strokes
    labels, n = ndimage.label(words)
    # the ring around each word: its labels grown by half the window, minus the words
    grown = ndimage.grey_dilation(labels, size=(k + 1, k + 1))
    ring = np.where(words, 0, grown)
    index = np.arange(1, n + 1)
    surround = np.asarray(ndimage.labeled_comprehension(img, ring, index, lambda v: np.percentile(v, 75),
                                                        np.float64, np.inf), dtype=np.float64)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    keep = np.zeros(n + 1, bool)
    for i, sl in enumerate(ndimage.find_objects(labels)):
        ch, cw = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
        thickness = sizes[i] / max(ch, cw)  # a letter or a word is compact; a wire or a rim is a line
        keep[i + 1] = (sizes[i] <= max_component * h * w and ch <= max_side * h and cw <= max_side * w
                       and thickness >= 2 and max(ch, cw) <= max_elongation * thickness
                       and surround[i] <= max_surround)
    return keep[labels]


@dataclass(frozen=True)
class ImageAttention:
    """The attention numbers of one heat map (shares and areas are fractions, 0..1)."""

    border_share: float  # heat mass in the border band / total heat mass
    border_area: float  # the band's share of the image area
    text_share: float  # heat mass on text-like regions / total heat mass
    text_area: float  # text-like regions' share of the image area

    def as_dict(self) -> dict:
        return asdict(self)


def measure(heat: np.ndarray, image: np.ndarray, *, band: float = DEFAULT_BAND,
            text: np.ndarray | None = None) -> ImageAttention | None:
    """The attention numbers of one map (``heat`` (H, W) >= 0, at the image's resolution)
    over its image; ``text``: a precomputed :func:`text_mask`. None for a map without heat."""
    heat = np.asarray(heat, dtype=np.float64)
    if heat.shape != np.asarray(image).shape[:2]:
        raise ValueError(f"heat map {heat.shape} and image {np.asarray(image).shape[:2]} differ in size")
    border = band_mask(heat.shape, band)
    text = text_mask(image) if text is None else text
    b, t = heat_share(heat, border), heat_share(heat, text)
    if b is None or t is None:
        return None
    return ImageAttention(border_share=b, border_area=float(border.mean()), text_share=t, text_area=float(text.mean()))


def summarise(records: Sequence[ImageAttention]) -> dict:
    """Means over images, and lifts as ratios of the means (mean heat share / mean area share:
    images without text add nothing to either, so the text lift is the heat the text draws
    where there is text, weighted by how much text there is). ``text_images``: how many images
    had any text-like region."""
    n = len(records)
    if not n:
        return {"n": 0, "border_share": None, "border_area": None, "border_lift": None,
                "text_share": None, "text_area": None, "text_lift": None, "text_images": 0}
    arr = {k: float(np.mean([getattr(r, k) for r in records]))
           for k in ("border_share", "border_area", "text_share", "text_area")}
    return {"n": n, "border_share": arr["border_share"], "border_area": arr["border_area"],
            "border_lift": lift(arr["border_share"], arr["border_area"]),
            "text_share": arr["text_share"], "text_area": arr["text_area"],
            "text_lift": lift(arr["text_share"], arr["text_area"]),
            "text_images": int(sum(r.text_area > 0 for r in records))}


def aggregate(records: Sequence[ImageAttention | None], labels: Sequence[str], sources: Sequence[str]) -> dict:
    """``{"overall", "per_class", "per_source"}`` of :func:`summarise` over the images'
    records (a None record, a map without heat or a flat one, is left out and counted in ``no_heat``)."""
    by_class: dict[str, list[ImageAttention]] = defaultdict(list)
    by_source: dict[str, list[ImageAttention]] = defaultdict(list)
    kept = []
    for rec, label, source in zip(records, labels, sources, strict=True):
        if rec is None:
            continue
        kept.append(rec)
        by_class[label].append(rec)
        by_source[source].append(rec)
    return {"overall": summarise(kept),
            "per_class": {c: summarise(by_class[c]) for c in sorted(by_class)},
            "per_source": {s: summarise(by_source[s]) for s in sorted(by_source)},
            "no_heat": len(records) - len(kept)}
