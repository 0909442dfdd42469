"""Generated pictures that are not chest X-rays, for testing and measuring the out-of-
distribution flag (:mod:`cxrtool.imagecheck`, :mod:`cxrtool.ood`): noise, scanned-looking
documents, grey ramps, coloured images, line drawings and other phantom anatomy (a skull, a
hand). Deterministic for a seed; numpy and Pillow only."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

#: The kinds :func:`make_non_xray` draws.
KINDS = ("noise", "document", "gradient", "colour", "shapes", "skull", "hand", "texture")


def _noise(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    if rng.random() < 0.5:
        a = rng.integers(0, 256, (h, w))
    else:
        a = rng.normal(rng.uniform(60, 190), rng.uniform(20, 70), (h, w))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def _document(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    paper = int(rng.integers(225, 256))
    im = Image.new("L", (w, h), paper)
    d = ImageDraw.Draw(im)
    words = ["patient", "report", "chest", "findings", "normal", "the", "of", "and", "date", "signed",
             "radiology", "impression", "no", "acute", "disease", "lorem", "ipsum"]
    y = int(h * rng.uniform(0.04, 0.1))
    step = max(8, int(h * rng.uniform(0.03, 0.06)))
    while y < h * 0.92:
        line = " ".join(rng.choice(words, int(rng.integers(3, 14))))
        d.text((int(w * 0.08), y), line, fill=int(rng.integers(0, 60)))
        y += step
    if rng.random() < 0.5:  # a scan: slightly blurred and grey
        im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    return im


def _gradient(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * np.pi)
        t = np.cos(angle) * x + np.sin(angle) * y
    else:
        cy, cx = rng.uniform(0.2, 0.8, 2)
        t = np.hypot(x - cx, y - cy)
    t = (t - t.min()) / max(1e-6, t.max() - t.min())
    lo, hi = sorted(rng.uniform(0, 255, 2))
    return Image.fromarray((lo + (hi - lo) * t).astype(np.uint8))


def _colour(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    base = rng.integers(0, 256, (max(2, h // 16), max(2, w // 16), 3)).astype(np.uint8)
    im = Image.fromarray(base, "RGB").resize((w, h), Image.BICUBIC)
    if rng.random() < 0.5:
        d = ImageDraw.Draw(im)
        for _ in range(int(rng.integers(3, 10))):
            x0, y0 = rng.integers(0, w), rng.integers(0, h)
            d.ellipse([x0, y0, x0 + rng.integers(10, w // 2 + 11), y0 + rng.integers(10, h // 2 + 11)],
                      fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return im


def _shapes(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    im = Image.new("L", (w, h), int(rng.integers(0, 256)))
    d = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(4, 15))):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(5, w // 2)), y0 + int(rng.integers(5, h // 2))
        fill = int(rng.integers(0, 256))
        [d.rectangle, d.ellipse, d.line][int(rng.integers(0, 3))]([x0, y0, x1, y1], fill=fill)
    return im


def _skull(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    """A head seen from the front: a bright ring of bone around a mid-grey brain."""
    y, x = np.mgrid[0:h, 0:w]
    cy, cx = h * rng.uniform(0.45, 0.55), w * rng.uniform(0.45, 0.55)
    ry, rx = h * rng.uniform(0.36, 0.44), w * rng.uniform(0.28, 0.36)
    r = np.hypot((y - cy) / ry, (x - cx) / rx)
    a = np.where(r < 1.0, 90.0, 15.0) + np.where(np.abs(r - 0.95) < 0.05, 130.0, 0.0)
    a += np.where(np.hypot((y - cy - ry * 0.2) / (ry * 0.15), (np.abs(x - cx) - rx * 0.35) / (rx * 0.2)) < 1, -50, 0)
    a += rng.normal(0, 4, (h, w))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.5))


def _hand(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    """A hand: a palm and five fingers of bright bone on black."""
    im = Image.new("L", (w, h), int(rng.integers(0, 25)))
    d = ImageDraw.Draw(im)
    palm = [w * 0.3, h * 0.5, w * 0.7, h * 0.95]
    d.rounded_rectangle(palm, radius=int(w * 0.08), fill=110)
    for k in range(5):
        x = w * (0.28 + 0.11 * k) + rng.uniform(-3, 3)
        top = h * (0.1 + 0.08 * abs(k - 2)) + (h * 0.25 if k == 0 else 0)
        d.rounded_rectangle([x, top, x + w * 0.07, h * 0.55], radius=int(w * 0.03), fill=110)
        d.line([x + w * 0.035, top + 4, x + w * 0.035, h * 0.9], fill=200, width=max(2, w // 40))
    return im.filter(ImageFilter.GaussianBlur(1.2))


def _texture(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    """Stripes or a checkerboard (fabric, tiles, test patterns)."""
    y, x = np.mgrid[0:h, 0:w]
    period = rng.uniform(4, 24)
    if rng.random() < 0.5:
        a = ((x // period + y // period) % 2) * 255.0
    else:
        angle = rng.uniform(0, np.pi)
        a = 127.5 + 127.5 * np.sin(2 * np.pi * (np.cos(angle) * x + np.sin(angle) * y) / period)
    return Image.fromarray(a.astype(np.uint8))


_DRAW = {"noise": _noise, "document": _document, "gradient": _gradient, "colour": _colour, "shapes": _shapes,
         "skull": _skull, "hand": _hand, "texture": _texture}


def make_non_xray(kind: str, seed: int, size: int | tuple[int, int] = 256) -> Image.Image:
    """One picture of ``kind`` (see :data:`KINDS`), ``size`` square or ``(height, width)``."""
    h, w = (size, size) if isinstance(size, int) else size
    if kind not in _DRAW:
        raise ValueError(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    return _DRAW[kind](rng, h, w)


def write_non_xrays(folder, per_kind: int = 4, size: int = 256, seed: int = 0) -> list:
    """``per_kind`` pictures of every kind as PNG files in ``folder``; returns their paths."""
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for kind in KINDS:
        for i in range(per_kind):
            p = folder / f"{kind}-{i}.png"
            make_non_xray(kind, seed + i, size).save(p)
            paths.append(p)
    return paths


__all__ = ["KINDS", "make_non_xray", "write_non_xrays"]
