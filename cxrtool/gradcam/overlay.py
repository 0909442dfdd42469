"""Drawing Grad-CAM heat maps: overlays on the original X-ray and contact-sheet pages.

Colour map: ``inferno`` by default. It is perceptually uniform and its lightness rises
monotonically from black to pale yellow, so "more heat" always reads as "brighter", equal
steps in the map look like equal steps, it survives grayscale printing and the common
colour-vision deficiencies. ``jet`` (the Keras example's and pytorch-grad-cam's default) has
a non-monotonic lightness profile that invents bands and edges the map does not contain.

Fast by construction, since ``cxrtool gradcam`` draws one overlay per image: the colour map
is read from matplotlib once as a 256-entry lookup table, the blend of every (gray, heat)
pair is precomputed as a 256 x 256 table applied with numpy indexing, the colour bar is drawn
once per size and pasted, and the rest is Pillow (which releases the GIL, so overlays can be
drawn in threads). Functions return images; writing them is ``files.py``'s job.

A flat map (all zero, or the same value everywhere: :func:`is_flat`) says nothing about
where the model looked; painted through the colour map it would read as uniform "low" or
uniform "high". Such an overlay shows the X-ray alone with the caption :data:`FLAT_CAPTION`
and no colour bar.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

DEFAULT_CMAP = "inferno"
#: Overlays of images smaller than this (shorter side, px) are enlarged by an integer factor
#: so the caption stays legible; real radiographs are far larger and keep their resolution.
MIN_DISPLAY_SIDE = 256
#: Contact sheet cell (px): 3.2 x 3.5 inches at 100 dpi, as the matplotlib version drew it.
CELL_W, CELL_H = 320, 350
THUMB = 304  # largest thumbnail side inside a cell
BOX_COLOUR = (0, 220, 255)  # the lung-crop box outline

#: A map whose values all lie within this fraction of its maximum is flat: over such a range
#: the 256-step colour map moves by at most ~3 steps, i.e. it would paint one uniform colour.
FLAT_RANGE = 0.01
FLAT_CAPTION = "flat heat map: no evidence of where the model looked"

__all__ = [
    "DEFAULT_CMAP",
    "FLAT_CAPTION",
    "FLAT_RANGE",
    "is_flat",
    "blend",
    "colorize",
    "colour_lut",
    "contact_sheet_page",
    "render_overlay",
    "thumbnail",
    "to_gray_uint8",
]


def is_flat(heatmap: np.ndarray, tolerance: float = FLAT_RANGE) -> bool:
    """True for a degenerate map: all zero (or empty, or not finite), or varying by less than
    ``tolerance`` of its maximum anywhere (a constant map normalised to 0..1 is all ones)."""
    heat = np.asarray(heatmap, dtype=np.float64)
    if not heat.size or not np.all(np.isfinite(heat)):
        return True
    hi, lo = float(heat.max()), float(heat.min())
    return hi <= 0.0 or (hi - lo) <= tolerance * abs(hi)


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


@lru_cache(maxsize=32)
def colour_lut(cmap: str = DEFAULT_CMAP) -> np.ndarray:
    """(256, 3) uint8: the matplotlib colour map sampled once (read-only)."""
    import matplotlib

    lut = (np.asarray(matplotlib.colormaps[cmap](np.linspace(0.0, 1.0, 256)))[:, :3] * 255.0).astype(np.uint8)
    lut.setflags(write=False)
    return lut


@lru_cache(maxsize=32)
def _blend_table(cmap: str, alpha: float) -> np.ndarray:
    """(256, 256, 3) uint8: ``rint((1 - alpha) * gray + alpha * colour(heat))`` for every pair."""
    gray = np.arange(256, dtype=np.float32)[:, None, None]
    colour = colour_lut(cmap).astype(np.float32)[None, :, :]
    table = np.clip(np.rint((1.0 - alpha) * gray + alpha * colour), 0, 255).astype(np.uint8)
    table.setflags(write=False)
    return table


def _heat_index(heatmap: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(heatmap, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def colorize(heatmap: np.ndarray, cmap: str = DEFAULT_CMAP) -> np.ndarray:
    """A 0..1 map -> (H, W, 3) uint8 through a matplotlib colour map."""
    return colour_lut(cmap)[_heat_index(heatmap)]


def blend(image: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.4, cmap: str = DEFAULT_CMAP) -> np.ndarray:
    """``(1 - alpha) * X-ray + alpha * colour(heat)``, (H, W, 3) uint8; shapes must match."""
    gray = to_gray_uint8(image)
    if gray.shape != np.shape(heatmap):
        raise ValueError(f"image {gray.shape} and heat map {np.shape(heatmap)} differ in size")
    return _blend_table(cmap, float(np.clip(alpha, 0.0, 1.0)))[gray, _heat_index(heatmap)]


_font_lock = threading.Lock()
_thread_fonts = threading.local()  # FreeType faces are not shared between threads


@lru_cache(maxsize=2)
def _font_path(bold: bool) -> str | None:
    try:
        from matplotlib import font_manager

        return font_manager.findfont(
            font_manager.FontProperties(family="DejaVu Sans", weight="bold" if bold else "normal"),
            fallback_to_default=True,
        )
    except Exception:  # no matplotlib font cache: Pillow's own font below
        return None


def _font(size: int, bold: bool = True):
    fonts = _thread_fonts.__dict__.setdefault("fonts", {})
    if (size, bold) not in fonts:
        with _font_lock:  # matplotlib's font manager is built on first use
            path = _font_path(bold)
        try:
            fonts[size, bold] = ImageFont.truetype(path, size) if path else ImageFont.load_default(size=size)
        except OSError:  # no FreeType: Pillow's bitmap font
            fonts[size, bold] = ImageFont.load_default()
    return fonts[size, bold]


def _display_scale(height: int, width: int, min_side: int) -> int:
    short = min(height, width)
    return 1 if short >= min_side else int(math.ceil(min_side / max(short, 1)))


@lru_cache(maxsize=64)
def _colour_bar(cmap: str, height: int, short: int) -> Image.Image:
    """The dark right-hand margin with the colour bar (high at the top) and its two ticks.
    Drawn once per (colour map, size), then pasted onto every overlay of that size."""
    margin = max(28, round(short * 0.09))
    panel = Image.new("RGB", (margin, height), (24, 24, 24))
    bar_w = max(8, margin // 3)
    top, bottom = round(height * 0.12), round(height * 0.88)
    ramp = np.linspace(1.0, 0.0, max(bottom - top, 2), dtype=np.float32)[:, None].repeat(bar_w, axis=1)
    panel.paste(Image.fromarray(colorize(ramp, cmap), "RGB"), ((margin - bar_w) // 2, top))
    draw = ImageDraw.Draw(panel)
    tick = _font(max(9, round(short * 0.028)), bold=False)
    for text, y in (("high", top), ("low", bottom)):
        tb = draw.textbbox((0, 0), text, font=tick)
        tx = (margin - (tb[2] - tb[0])) // 2
        ty = y - (tb[3] - tb[1]) - 4 - tb[1] if text == "high" else y + 4 - tb[1]
        draw.text((tx, ty), text, font=tick, fill=(230, 230, 230))
    return panel


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
    flat: bool = False,
    box: Sequence[float] | None = None,
    flag: str = "",
) -> Image.Image:
    """The heat map blended over the X-ray at its own resolution, with the prediction written
    in a dark box at the top left and a colour bar on the right. ``heatmap`` is 0..1 with the
    image's shape. Images smaller than ``min_side`` are enlarged (integer factor, smooth).
    ``flat`` (:func:`gradcam_files` passes :func:`is_flat` of the map): draw the X-ray alone,
    say so in the caption, and put a plain panel where the colour bar goes (same size, so
    overlays line up); otherwise the map is painted as given, even an all-zero one.
    ``box`` (fractions ``(top, left, bottom, right)``): the lung box a ``--crop lungs`` model
    saw, outlined thinly in cyan (a colour the inferno map does not use).
    ``flag`` (cxrtool.ood: not-a-chest-xray, out-of-distribution) adds a red band at the bottom."""
    gray = to_gray_uint8(image)
    h, w = gray.shape
    heatmap = np.asarray(heatmap, dtype=np.float32)
    scale = _display_scale(h, w, min_side)
    if scale > 1:
        size = (w * scale, h * scale)
        gray = np.asarray(Image.fromarray(gray, "L").resize(size, Image.BICUBIC))
        if not flat:
            heatmap = np.asarray(Image.fromarray(heatmap, "F").resize(size, Image.BICUBIC))
    if flat:
        body = Image.fromarray(gray, "L").convert("RGB")
    else:
        body = Image.fromarray(blend(gray, heatmap, alpha=alpha, cmap=cmap), "RGB")
    H, W = gray.shape
    short = min(H, W)
    if box is not None:
        top, left, bottom, right = (float(v) for v in box)
        ImageDraw.Draw(body).rectangle((left * W, top * H, right * W - 1, bottom * H - 1), outline=BOX_COLOUR,
                                       width=max(1, round(short * 0.006)))
    if flat:
        _flat_caption(body, f"{label}  {probability:.3f}", short)
        if flag:
            _flag_band(body, flag, short)
        if not colorbar:
            return body
        margin = _colour_bar(cmap, H, short).width
        canvas = Image.new("RGB", (W + margin, H), (24, 24, 24))
        canvas.paste(body, (0, 0))
        draw = ImageDraw.Draw(canvas)  # "flat" where the colour bar would be: no scale to read
        tick = _font(max(9, round(short * 0.028)), bold=False)
        tb = draw.textbbox((0, 0), "flat", font=tick)
        draw.text((W + (margin - (tb[2] - tb[0])) // 2 - tb[0], H // 2 - tb[3] // 2), "flat", font=tick,
                  fill=(255, 200, 80))
        return canvas

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
    if flag:
        _flag_band(body, flag, short)

    if not colorbar:
        return body
    bar = _colour_bar(cmap, H, short)
    canvas = Image.new("RGB", (W + bar.width, H))
    canvas.paste(body, (0, 0))
    canvas.paste(bar, (W, 0))
    return canvas


def _flag_band(body: Image.Image, flag: str, short: int) -> None:
    """A red band at the bottom saying the input does not look like the training data
    (cxrtool.ood), where the eye lands after the caption."""
    draw = ImageDraw.Draw(body, "RGBA")
    W, H = body.size
    pad = max(4, round(short * 0.015))
    small = _font(max(10, round(short * 0.032)), bold=False)
    note = f"FLAGGED: {flag}"
    bf = draw.textbbox((0, 0), note, font=small)
    draw.rectangle((0, H - (bf[3] - bf[1]) - 2 * pad, W, H), fill=(200, 0, 0, 200))
    draw.text((pad, H - pad - bf[3]), note, font=small, fill=(255, 255, 255, 255))


def _flat_caption(body: Image.Image, prediction: str, short: int) -> None:
    """The prediction and, in a warning colour, :data:`FLAT_CAPTION` on two lines, in a dark
    box at the top left; the font shrinks until the box fits the image's width."""
    draw = ImageDraw.Draw(body, "RGBA")
    W = body.width
    pad = max(4, round(short * 0.015))
    head, tail = FLAT_CAPTION.split(": ", 1)
    lines = [(prediction, True, (255, 255, 255, 255)), (head + ":", False, (255, 200, 80, 255)),
             (tail, False, (255, 200, 80, 255))]
    big_size, small_size = max(12, round(short * 0.055)), max(10, round(short * 0.04))
    while True:
        fonts = [_font(big_size if bold else small_size, bold=bold) for _, bold, _ in lines]
        boxes = [draw.textbbox((0, 0), text, font=f) for (text, _, _), f in zip(lines, fonts)]
        box_w = max(b[2] for b in boxes) + 2 * pad
        if box_w <= W - 2 * pad or small_size <= 6:
            break
        big_size, small_size = max(6, big_size - 1), small_size - 1
    box_h = sum(b[3] - b[1] for b in boxes) + (len(lines) + 1) * pad
    draw.rectangle((pad, pad, pad + box_w, pad + box_h), fill=(0, 0, 0, 190))
    y = 2 * pad
    for (text, _, colour), f, b in zip(lines, fonts, boxes):
        draw.text((2 * pad, y - b[1]), text, font=f, fill=colour)
        y += (b[3] - b[1]) + pad


def thumbnail(overlay: Image.Image, side: int = THUMB) -> Image.Image:
    """A copy of ``overlay`` at most ``side`` px on its longer side (for the contact sheet)."""
    small = overlay.copy()
    small.thumbnail((side, side), Image.LANCZOS)
    return small


def contact_sheet_page(thumbs: Sequence[Image.Image], titles: Sequence[str]) -> Image.Image:
    """A white grid (at most 6 columns) of thumbnails, each under its centred title lines."""
    n = max(len(thumbs), 1)
    cols = min(6, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / cols)
    page = Image.new("RGB", (cols * CELL_W, rows * CELL_H), "white")
    draw = ImageDraw.Draw(page)
    font = _font(12, bold=False)
    line_h = 15
    for i, (thumb, title) in enumerate(zip(thumbs, titles)):
        x, y = (i % cols) * CELL_W, (i // cols) * CELL_H
        lines = [_shorten(line, 38) for line in title.split("\n")]
        ty = y + 8
        for line in lines:
            tw = draw.textlength(line, font=font)
            draw.text((x + (CELL_W - tw) / 2, ty), line, font=font, fill=(0, 0, 0))
            ty += line_h
        room = CELL_H - (ty - y) - 8
        if thumb.height > room or thumb.width > CELL_W - 8:
            thumb = thumbnail(thumb, min(room, CELL_W - 8))
        page.paste(thumb, (x + (CELL_W - thumb.width) // 2, ty + 4 + (room - thumb.height) // 2))
    return page


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else "…" + text[-(limit - 1):]
