"""Acquisition shifts: the changes a new hospital's X-rays bring, as plain image transforms.

Each shift takes a decoded grayscale ``uint8`` image at its ORIGINAL resolution (before the
model's resize, as a different scanner or export pipeline would produce it), a severity
``1..levels`` and a random generator, and returns a new ``uint8`` image. Severity ``0`` is
the identity for every shift (the clean image). Strengths are fixed and documented in each
:class:`Shift`'s ``levels`` (also written into ``metrics.json``), so numbers from different
runs and models are comparable. Only the noise uses the generator; the caller seeds it per
image (:func:`image_rng`), so a shifted set is the same for a seed whatever the threading.

Sizes are relative to the image (a fraction of its shorter side), so a shift means the same on
a 256 px and a 3000 px original. ``crop`` and ``pad`` change the image's shape (the model's
resize then squashes it back, as it would a differently framed film); every other shift keeps
it.

To add a shift: write ``def my_shift(image, severity, rng) -> image`` and add a
:class:`Shift` for it to :data:`SHIFTS`. Pure numpy and Pillow; no Keras.
"""

from __future__ import annotations

import io
import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ..errors import UsageError

Transform = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


def _lookup(image: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Apply a 256-entry grey-level curve (rounded, clipped to 0..255)."""
    return np.clip(np.rint(table), 0, 255).astype(np.uint8)[image]


def _short(image: np.ndarray) -> int:
    return min(image.shape[:2])


# --- intensity ------------------------------------------------------------------------------

GAMMA = {1: 1.5, 2: 2.0, 3: 3.0}


def gamma(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Grey-level curve ``255 * (x / 255) ** g``: mid-tones darker (a harder display/LUT curve);
    black and white stay put."""
    g = GAMMA[severity]
    return _lookup(image, 255.0 * (np.arange(256) / 255.0) ** g)


CONTRAST = {1: 0.7, 2: 0.5, 3: 0.3}


def contrast(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Contrast scaled by a factor around the image's mean grey (a flat, washed-out film)."""
    f, mean = CONTRAST[severity], float(image.mean())
    return _lookup(image, mean + f * (np.arange(256) - mean))


BRIGHTNESS = {1: 20, 2: 40, 3: 70}


def brightness(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Every pixel this many grey levels brighter, clipped at 255 (over-exposure, a raised window)."""
    return _lookup(image, np.arange(256) + BRIGHTNESS[severity])


def invert(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """``255 - x``: bone dark and air bright, as a MONOCHROME1 DICOM looks when its
    photometric interpretation is ignored. One severity: it is either inverted or not."""
    return 255 - image


# --- resolution and noise -------------------------------------------------------------------

BLUR = {1: 0.005, 2: 0.01, 3: 0.02}


def blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur, standard deviation a fraction of the shorter side (a soft detector, motion)."""
    sigma = BLUR[severity] * _short(image)
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(sigma)), np.uint8)


NOISE = {1: 8.0, 2: 16.0, 3: 32.0}


def noise(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise, standard deviation in grey levels (a low-dose or noisy detector)."""
    noisy = image.astype(np.float32) + rng.normal(0.0, NOISE[severity], image.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


JPEG = {1: 50, 2: 20, 3: 5}


def jpeg(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Re-encoded as JPEG at this Pillow quality (exports, PACS screenshots, web copies)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=JPEG[severity])
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("L"), np.uint8)


DOWNSAMPLE = {1: 4, 2: 8, 3: 16}


def downsample(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Shrunk by this factor per side (at least 8 px) and enlarged back, both bilinear: a
    low-resolution source (a thumbnail, a phone photo of a film)."""
    h, w = image.shape[:2]
    f = DOWNSAMPLE[severity]
    small = Image.fromarray(image).resize((max(8, round(w / f)), max(8, round(h / f))), Image.BILINEAR)
    return np.asarray(small.resize((w, h), Image.BILINEAR), np.uint8)


# --- framing --------------------------------------------------------------------------------

CROP = {1: 0.05, 2: 0.10, 3: 0.20}


def crop(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """This fraction of the height/width cut from EACH side (a tighter collimation; the
    image gets smaller, the model's resize enlarges it: a zoom)."""
    h, w = image.shape[:2]
    dy, dx = round(CROP[severity] * h), round(CROP[severity] * w)
    return np.ascontiguousarray(image[dy : h - dy, dx : w - dx])


PAD = {1: 0.05, 2: 0.10, 3: 0.20}


def pad(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A black border of this fraction of the height/width added on EACH side (a film placed
    on a larger canvas, a letterboxed export; the image gets larger)."""
    h, w = image.shape[:2]
    dy, dx = round(PAD[severity] * h), round(PAD[severity] * w)
    return np.pad(image, ((dy, dy), (dx, dx)), mode="constant", constant_values=0)


# --- burnt-in annotations -------------------------------------------------------------------

#: per severity: (text height as a fraction of the shorter side, [(corner, text), ...])
TEXT = {
    1: (0.05, [("top-left", "L")]),
    2: (0.07, [("top-left", "L"), ("top-right", "PORTABLE")]),
    3: (0.10, [("top-left", "L"), ("top-right", "PORTABLE"), ("bottom-left", "2020-03-14 AP")]),
}
#: text boxes stay within this fraction of each side, measured from their corner
TEXT_MARGIN = 0.02


_fonts = threading.local()


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at ``size`` px, loaded once per size and thread (loading costs more
    than drawing; a FreeType face must not be shared between threads)."""
    cache = _fonts.__dict__.setdefault("by_size", {})
    if size not in cache:
        cache[size] = ImageFont.load_default(size=size)
    return cache[size]


def text(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """White burnt-in text in the corners (a laterality marker, "PORTABLE", a date): the
    annotations a model can learn as a shortcut. The text's height is a fraction of the
    shorter side; each string is shrunk to fit in 45% of the width, so it stays in its corner."""
    height, items = TEXT[severity]
    out = Image.fromarray(image).copy()
    h, w = image.shape[:2]
    size = max(10, round(height * min(h, w)))
    margin = round(TEXT_MARGIN * min(h, w))
    draw = ImageDraw.Draw(out)
    for corner, words in items:
        font = _font(size)
        left, top, right, bottom = draw.textbbox((0, 0), words, font=font)
        while right - left > 0.45 * w and font.size > 6:  # long strings on narrow images
            font = _font(font.size - 1)
            left, top, right, bottom = draw.textbbox((0, 0), words, font=font)
        x = margin - left if corner.endswith("left") else w - margin - right
        y = margin - top if corner.startswith("top") else h - margin - bottom
        draw.text((x, y), words, fill=255, font=font)
    return np.asarray(out, np.uint8)


# --- the registry ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Shift:
    """One acquisition shift: its transform and what each severity does (for people)."""

    name: str
    title: str
    transform: Transform
    levels: dict[int, str]  # severity -> what it does, e.g. {1: "gamma 1.5"}

    def apply(self, image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
        """The shifted image; severity 0 is the image itself (unchanged)."""
        if severity == 0:
            return image
        if severity not in self.levels:
            raise UsageError(f"shift {self.name} has severities 1..{max(self.levels)} (got {severity})")
        return self.transform(image, severity, rng)


def _levels(table: dict, fmt: str) -> dict[int, str]:
    return {s: fmt.format(v=v, pct=100 * v if isinstance(v, float) else v) for s, v in table.items()}


SHIFTS: dict[str, Shift] = {s.name: s for s in (
    Shift("gamma", "gamma curve", gamma, _levels(GAMMA, "gamma {v:g} (mid-tones darker)")),
    Shift("contrast", "lower contrast", contrast, _levels(CONTRAST, "contrast x{v:g} around the mean")),
    Shift("brightness", "brighter", brightness, _levels(BRIGHTNESS, "+{v} grey levels")),
    Shift("blur", "Gaussian blur", blur, _levels(BLUR, "sigma {pct:g}% of the shorter side")),
    Shift("noise", "Gaussian noise", noise, _levels(NOISE, "sigma {v:g} grey levels")),
    Shift("jpeg", "JPEG re-encoding", jpeg, _levels(JPEG, "JPEG quality {v}")),
    Shift("downsample", "down- then up-sampling", downsample, _levels(DOWNSAMPLE, "1/{v} per side and back")),
    Shift("crop", "border crop", crop, _levels(CROP, "{pct:g}% cut from each side")),
    Shift("pad", "black padding", pad, _levels(PAD, "{pct:g}% black border on each side")),
    Shift("text", "burnt-in text", text, {s: f"{', '.join(repr(t) for _, t in items)}; {100 * hgt:g}% high"
                                          for s, (hgt, items) in TEXT.items()}),
    Shift("invert", "inverted grey (MONOCHROME1)", invert, {1: "255 - x"}),
)}


def select_shifts(names: str | Sequence[str] | None, severities: Sequence[int] | None = None) -> list[tuple[str, int]]:
    """``"all"`` or shift names (a list, or one comma-separated string) -> the (shift, severity)
    conditions to run, in registry order; ``severities`` limits them (each shift keeps the ones
    it has). Unknown names or severities are a :class:`~cxrtool.errors.UsageError`."""
    if names is None:
        return []
    if isinstance(names, str):
        names = [names]
    wanted = [n.strip().lower() for part in names for n in part.split(",") if n.strip()]
    if not wanted:
        raise UsageError("--shift needs 'all' or shift names: " + ", ".join(SHIFTS))
    if "all" in wanted:
        wanted = list(SHIFTS)
    unknown = [n for n in wanted if n not in SHIFTS]
    if unknown:
        raise UsageError(f"unknown shift {', '.join(unknown)}; known: all, {', '.join(SHIFTS)}")
    top = max(max(s.levels) for s in SHIFTS.values())
    if severities is not None:
        bad = [s for s in severities if not 1 <= int(s) <= top]
        if bad or not severities:
            raise UsageError(f"--shift-severities must be between 1 and {top} (got {', '.join(map(str, severities)) or 'none'})")
    keep = None if severities is None else {int(s) for s in severities}
    return [(name, s) for name in SHIFTS if name in wanted for s in sorted(SHIFTS[name].levels)
            if keep is None or s in keep]


def image_rng(seed: int, shift: str, severity: int, index: int) -> np.random.Generator:
    """The generator for one image under one condition: fixed by (seed, shift, severity, image
    index), so the shifted set does not depend on chunking or thread order."""
    return np.random.default_rng([seed, zlib.crc32(shift.encode()), severity, index])


def describe() -> dict[str, dict]:
    """Every shift's title and severities, as written into ``metrics.json``."""
    return {name: {"title": s.title, "severities": {str(k): v for k, v in s.levels.items()}}
            for name, s in SHIFTS.items()}


__all__ = ["SHIFTS", "Shift", "describe", "image_rng", "select_shifts"]
