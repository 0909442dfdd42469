"""Rendering Grad-CAM heat maps: overlays on the original X-ray and contact sheets.

Colour map: ``inferno`` by default. It is perceptually uniform and its lightness rises
monotonically from black to pale yellow, so "more heat" always reads as "brighter", equal
steps in the map look like equal steps, it survives grayscale printing and the common
colour-vision deficiencies. ``jet`` (the Keras example's and pytorch-grad-cam's default) has
a non-monotonic lightness profile that invents bands and edges the map does not contain.

Only numpy, Pillow and matplotlib (Agg, no pyplot state) are used; no Keras.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

DEFAULT_CMAP = "inferno"
#: Overlays of images smaller than this (shorter side, px) are enlarged by an integer factor
#: so the caption stays legible; real radiographs are far larger and keep their resolution.
MIN_DISPLAY_SIDE = 256

__all__ = [
    "DEFAULT_CMAP",
    "blend",
    "colorize",
    "render_overlay",
    "to_gray_uint8",
    "write_contact_sheet",
]


def to_gray_uint8(image: np.ndarray) -> np.ndarray:
    """(H, W) uint8 from a uint8 or 0..1 float grayscale image."""
    image = np.asarray(image)
    if image.ndim == 3:
        image = image[..., :3].mean(axis=-1) if image.shape[-1] >= 3 else image[..., 0]
    if image.dtype == np.uint8:
        return image
    image = image.astype(np.float32)
    if image.max(initial=0.0) <= 1.0:
        image = image * 255.0
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def colorize(heatmap: np.ndarray, cmap: str = DEFAULT_CMAP) -> np.ndarray:
    """A 0..1 map -> (H, W, 3) uint8 through a matplotlib colour map."""
    import matplotlib

    lut = (np.asarray(matplotlib.colormaps[cmap](np.linspace(0.0, 1.0, 256)))[:, :3] * 255.0).astype(np.uint8)
    idx = np.clip(np.rint(np.asarray(heatmap, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
    return lut[idx]


def blend(image: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.4, cmap: str = DEFAULT_CMAP) -> np.ndarray:
    """``(1 - alpha) * X-ray + alpha * colour(heat)``, (H, W, 3) uint8; shapes must match."""
    gray = to_gray_uint8(image).astype(np.float32)
    if gray.shape != heatmap.shape:
        raise ValueError(f"image {gray.shape} and heat map {heatmap.shape} differ in size")
    alpha = float(np.clip(alpha, 0.0, 1.0))
    colour = colorize(heatmap, cmap).astype(np.float32)
    out = (1.0 - alpha) * gray[..., None] + alpha * colour
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@lru_cache(maxsize=16)
def _font(size: int, bold: bool = True):
    try:
        from matplotlib import font_manager

        path = font_manager.findfont(
            font_manager.FontProperties(family="DejaVu Sans", weight="bold" if bold else "normal"),
            fallback_to_default=True,
        )
        return ImageFont.truetype(path, size)
    except Exception:  # no FreeType or no font file: Pillow's own (scalable since 10.1)
        try:
            return ImageFont.load_default(size=size)
        except TypeError:
            return ImageFont.load_default()


def _display_scale(height: int, width: int, min_side: int) -> int:
    short = min(height, width)
    return 1 if short >= min_side else int(math.ceil(min_side / max(short, 1)))


def render_overlay(
    image: np.ndarray,
    heatmap: np.ndarray,
    *,
    label: str,
    probability: float,
    target: str | None = None,
    target_probability: float | None = None,
    method: str = "Grad-CAM",
    layer: str | None = None,
    alpha: float = 0.4,
    cmap: str = DEFAULT_CMAP,
    colorbar: bool = True,
    min_side: int = MIN_DISPLAY_SIDE,
) -> Image.Image:
    """The heat map blended over the X-ray at its own resolution, with the prediction written
    in a dark box at the top left and a colour bar on the right. ``heatmap`` is 0..1 with the
    image's shape. Images smaller than ``min_side`` are enlarged (integer factor, smooth)."""
    gray = to_gray_uint8(image)
    h, w = gray.shape
    heatmap = np.asarray(heatmap, dtype=np.float32)
    scale = _display_scale(h, w, min_side)
    if scale > 1:
        size = (w * scale, h * scale)
        gray = np.asarray(Image.fromarray(gray, "L").resize(size, Image.BICUBIC))
        heatmap = np.clip(np.asarray(Image.fromarray(heatmap, "F").resize(size, Image.BICUBIC)), 0.0, 1.0)
    body = Image.fromarray(blend(gray, heatmap, alpha=alpha, cmap=cmap), "RGB")
    H, W = gray.shape
    short = min(H, W)

    # caption: big line with the prediction, small line with what the map explains
    big = _font(max(12, round(short * 0.055)))
    small = _font(max(10, round(short * 0.032)), bold=False)
    line1 = f"{label}  {probability:.3f}"
    what = method if target is None or target == label else f"{method} for {target} ({target_probability:.3f})"
    line2 = what + (f" · {layer}" if layer else "")
    draw = ImageDraw.Draw(body, "RGBA")
    pad = max(4, round(short * 0.015))
    b1 = draw.textbbox((0, 0), line1, font=big)
    b2 = draw.textbbox((0, 0), line2, font=small)
    box_w = max(b1[2], b2[2]) + 2 * pad
    box_h = (b1[3] - b1[1]) + (b2[3] - b2[1]) + 3 * pad
    if box_w > W - 2 * pad:  # a long layer name on a narrow image: drop the detail line
        line2, b2 = "", (0, 0, 0, 0)
        box_w, box_h = b1[2] + 2 * pad, (b1[3] - b1[1]) + 2 * pad
    x0 = y0 = pad
    draw.rectangle((x0, y0, x0 + box_w, y0 + box_h), fill=(0, 0, 0, 170))
    draw.text((x0 + pad, y0 + pad - b1[1]), line1, font=big, fill=(255, 255, 255, 255))
    if line2:
        draw.text((x0 + pad, y0 + 2 * pad + (b1[3] - b1[1]) - b2[1]), line2, font=small, fill=(225, 225, 225, 255))

    if not colorbar:
        return body
    # colour bar in a dark margin on the right: high at the top, low at the bottom
    margin = max(28, round(short * 0.09))
    canvas = Image.new("RGB", (W + margin, H), (24, 24, 24))
    canvas.paste(body, (0, 0))
    bar_w = max(8, margin // 3)
    top, bottom = round(H * 0.12), round(H * 0.88)
    ramp = np.linspace(1.0, 0.0, max(bottom - top, 2), dtype=np.float32)[:, None].repeat(bar_w, axis=1)
    canvas.paste(Image.fromarray(colorize(ramp, cmap), "RGB"), (W + (margin - bar_w) // 2, top))
    cdraw = ImageDraw.Draw(canvas)
    tick = _font(max(9, round(short * 0.028)), bold=False)
    for text, y in (("high", top), ("low", bottom)):
        tb = cdraw.textbbox((0, 0), text, font=tick)
        tx = W + (margin - (tb[2] - tb[0])) // 2
        ty = y - (tb[3] - tb[1]) - 4 - tb[1] if text == "high" else y + 4 - tb[1]
        cdraw.text((tx, ty), text, font=tick, fill=(230, 230, 230))
    return canvas


def write_contact_sheet(
    overlays: Sequence[Image.Image],
    titles: Sequence[str],
    path: str | Path,
    *,
    per_page: int = 48,
    thumb: int = 320,
) -> list[Path]:
    """A grid of overlays with titles (matplotlib, Agg). More than ``per_page`` images go to
    several pages ``contact_sheet.png``, ``contact_sheet_2.png``, ... Returns the files."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    written = []
    n_pages = max(1, math.ceil(len(overlays) / per_page))
    for page in range(n_pages):
        items = list(zip(overlays, titles))[page * per_page : (page + 1) * per_page]
        if not items and page:
            break
        n = max(len(items), 1)
        cols = min(6, math.ceil(math.sqrt(n)))
        rows = math.ceil(n / cols)
        fig = Figure(figsize=(3.2 * cols, 3.5 * rows), dpi=100, facecolor="white")
        FigureCanvasAgg(fig)
        for i in range(rows * cols):
            ax = fig.add_subplot(rows, cols, i + 1)
            ax.axis("off")
            if i >= len(items):
                continue
            im, title = items[i]
            im = im.copy()
            im.thumbnail((thumb, thumb), Image.LANCZOS)
            ax.imshow(np.asarray(im), interpolation="antialiased")
            ax.set_title(_shorten(title, 38), fontsize=9)
        fig.tight_layout()
        target = path if page == 0 else path.with_name(f"{path.stem}_{page + 1}{path.suffix}")
        fig.savefig(target, facecolor="white")
        written.append(target)
    return written


def _shorten(text: str, limit: int) -> str:
    lines = text.split("\n")
    return "\n".join(line if len(line) <= limit else "…" + line[-(limit - 1):] for line in lines)
