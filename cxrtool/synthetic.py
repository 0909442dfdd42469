"""Deterministic phantom chest X-rays and fake multi-source dataset trees.

Why this exists: the real datasets (COVID-19 Radiography Database, Kermany ``chest_xray``,
the 15K COVID set, ``COVID-19+PNEUMONIA+NORMAL``) are large, licensed and not available in
CI.  Every other part of cxrtool -- source adapters, the deduplicating dataset builder, the
models, Grad-CAM -- is tested against the synthetic data produced here instead:

* :func:`make_phantom` draws a chest-like image whose class is encoded in a pattern a small
  CNN can learn at 32-64 px (lobar consolidation for pneumonia, bilateral peripheral
  ground-glass for COVID-19, clear lungs for normal).
* :func:`pattern_mask` / :func:`lung_mask` return the exact regions used for drawing, so
  Grad-CAM tests can check where the heat-map mass lands.
* :func:`write_source_tree` writes the four public source layouts with planted problems
  (duplicates, near duplicates, label conflicts, bad exposure, corrupt files, junk) and
  returns the ground truth as a :class:`SyntheticTree`.
* :func:`write_class_folders` writes a clean ``root/<class>/*.png`` tree for model tests.

Only numpy and Pillow are used (no Keras/JAX), so importing this module is cheap.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from . import CLASSES

__all__ = [
    "Layout",
    "SOURCE_DIRS",
    "SyntheticTree",
    "lung_mask",
    "make_phantom",
    "pattern_mask",
    "phantom_layout",
    "write_class_folders",
    "write_source_tree",
]

# --------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ellipse:
    """A (possibly rotated) ellipse in normalised image coordinates (0..1 on the short side)."""

    cx: float
    cy: float
    rx: float
    ry: float
    angle: float = 0.0  # radians, positive = clockwise on screen


@dataclass(frozen=True)
class Blob:
    """One drawn class-pattern opacity; ``lung`` is 0 (image left) or 1 (image right)."""

    ellipse: Ellipse
    amp: float
    edge: float
    lung: int


@dataclass(frozen=True)
class Layout:
    """Size-independent geometry and intensities of one phantom.

    Computed once from (label, seed) by :func:`phantom_layout` and shared by
    :func:`make_phantom`, :func:`pattern_mask` and :func:`lung_mask` so that the image and
    the masks can never disagree.
    """

    label: str
    seed: int
    body: Ellipse
    body_power: float  # super-ellipse exponent of the torso outline (3 or 4)
    neck_w: float
    lungs: tuple[Ellipse, Ellipse]
    heart: Ellipse
    spine_x: float
    spine_w: float
    rib_top: float
    rib_spacing: float
    rib_curve: float
    rib_phase: float
    clavicle_y: float
    clavicle_tilt: float
    bg: float
    tissue: float
    lung_depth: float
    bone: float
    rib_amp: float
    contrast: float
    gamma: float
    noise_sigma: float
    blobs: tuple[Blob, ...]
    texture: np.ndarray = field(repr=False, compare=False)  # small low-frequency noise grid
    patch_texture: np.ndarray = field(repr=False, compare=False)
    markings: np.ndarray = field(repr=False, compare=False)  # lung vessel-like texture
    rotation: float = 0.0  # radians; patient slightly rotated in the frame
    exposure: np.ndarray | None = field(default=None, repr=False, compare=False)
    gradient: tuple[float, float] = (0.0, 0.0)  # linear exposure ramp (x, y)
    marker: tuple[float, float, float] | None = None  # side marker (x, y, size)
    collimation: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)  # dark borders: left, top, right, bottom


def _check_label(label: str) -> int:
    if label not in CLASSES:
        raise ValueError(f"label must be one of {CLASSES}, got {label!r}")
    return CLASSES.index(label)


def _seed_int(seed: int) -> int:
    """Map any Python int onto a non-negative entropy value for numpy's SeedSequence."""
    return int(seed) % (1 << 64)


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        h, w = (int(v) for v in size)
    if h < 8 or w < 8:
        raise ValueError(f"phantom size must be at least 8x8, got {h}x{w}")
    return h, w


def _mirror(a: np.ndarray) -> np.ndarray:
    """Left-right symmetrise a noise grid: uneven exposure must not mimic a one-sided opacity."""
    return (a + a[:, ::-1]) / np.sqrt(2.0)


@lru_cache(maxsize=4096)
def phantom_layout(label: str, seed: int) -> Layout:
    """Draw the random anatomy and class pattern for (label, seed); independent of image size."""
    li = _check_label(label)
    rng = np.random.default_rng([li, _seed_int(seed), 0x5EED])
    u = rng.uniform

    # Global pose: a few percent of shift / scale per seed, so images are all different.
    sx, sy = u(-0.06, 0.06), u(-0.08, 0.06)
    sc = u(0.84, 1.08)
    mid = 0.5 + sx

    def E(cx: float, cy: float, rx: float, ry: float, a: float = 0.0) -> Ellipse:
        return Ellipse(0.5 + (cx - 0.5) * sc + sx, 0.5 + (cy - 0.5) * sc + sy, rx * sc, ry * sc, a)

    body = E(0.5, 0.66 + u(-0.01, 0.01), 0.53 * u(0.95, 1.04), 0.56 * u(0.97, 1.03))
    lung_w = 0.165 * u(0.93, 1.07)
    lung_h = 0.32 * u(0.94, 1.06)
    gap = 0.085 * u(0.9, 1.1)
    lung_cy = 0.50 + u(-0.015, 0.015)
    tilt = u(0.06, 0.14)
    left = E(0.5 - gap - lung_w * 0.95, lung_cy + u(-0.01, 0.01), lung_w, lung_h, -tilt)
    right = E(0.5 + gap + lung_w * 0.92, lung_cy + u(-0.01, 0.01), lung_w * u(0.92, 1.0),
              lung_h * u(0.95, 1.0), tilt)
    heart = E(0.5 + 0.045 + u(-0.01, 0.02), 0.67 + u(-0.015, 0.015), 0.165 * u(0.9, 1.1),
              0.12 * u(0.9, 1.1), u(-0.45, -0.2))

    blobs: list[Blob] = []
    lungs = (left, right)
    if label == "pneumonia":
        side = int(rng.integers(0, 2))
        lung = lungs[side]
        lat = -1.0 if side == 0 else 1.0  # lateral direction on screen
        bx = lung.cx + lat * u(-0.1, 0.35) * lung.rx
        by = lung.cy + u(0.0, 0.5) * lung.ry
        r = u(0.55, 0.72) * lung.rx
        blobs.append(Blob(Ellipse(bx, by, r * u(0.95, 1.15), r * u(1.0, 1.3), u(-0.4, 0.4)),
                          amp=u(0.30, 0.36), edge=0.35, lung=side))
    elif label == "covid":
        for side, lung in enumerate(lungs):
            lat = -1.0 if side == 0 else 1.0
            for _ in range(int(rng.integers(3, 5))):
                bx = lung.cx + lat * u(0.25, 0.6) * lung.rx
                by = lung.cy + u(-0.15, 0.55) * lung.ry
                r = u(0.42, 0.6) * lung.rx
                blobs.append(Blob(Ellipse(bx, by, r * u(0.9, 1.2), r * u(0.9, 1.4), u(-0.6, 0.6)),
                                  amp=u(0.26, 0.32), edge=0.9, lung=side))

    lay = Layout(
        label=label,
        seed=int(seed),
        body=body,
        body_power=3.0 if rng.random() < 0.5 else 4.0,
        neck_w=0.075 * u(0.9, 1.15),
        lungs=lungs,
        heart=heart,
        spine_x=mid + u(-0.005, 0.005),
        spine_w=0.028 * u(0.9, 1.1) * sc,
        rib_top=left.cy - left.ry * 1.05,
        rib_spacing=0.062 * u(0.92, 1.08) * sc,
        rib_curve=u(1.3, 1.8),
        rib_phase=u(0.0, 1.0),
        clavicle_y=left.cy - left.ry * u(0.78, 0.9),
        clavicle_tilt=u(0.2, 0.35),
        bg=u(0.02, 0.07),
        tissue=u(0.52, 0.60),
        lung_depth=u(0.35, 0.39),
        bone=u(0.09, 0.13),
        rib_amp=u(0.07, 0.095),
        contrast=u(0.95, 1.05),
        gamma=u(0.94, 1.07),
        noise_sigma=u(0.012, 0.022),
        blobs=tuple(blobs),
        texture=rng.standard_normal((10, 10)).astype(np.float32),
        patch_texture=rng.standard_normal((14, 14)).astype(np.float32),
        markings=rng.standard_normal((30, 30)).astype(np.float32),
        rotation=u(-0.09, 0.09),
        exposure=_mirror(rng.standard_normal((4, 4))).astype(np.float32),
        gradient=(u(-0.02, 0.02), u(-0.08, 0.1)),
        marker=(u(0.06, 0.94), u(0.05, 0.2), u(0.03, 0.05)) if rng.random() < 0.7 else None,
        collimation=tuple(float(v) if rng.random() < 0.35 else 0.0 for v in u(0.02, 0.1, 4)),
    )
    for arr in (lay.texture, lay.patch_texture, lay.markings, lay.exposure):
        arr.flags.writeable = False  # the layout is cached and shared: keep it immutable
    return lay


# --------------------------------------------------------------------------------------
# Vectorised drawing primitives
# --------------------------------------------------------------------------------------


def _grid(h: int, w: int, rotation: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates; the short side spans 0..1 and the anatomy stays centred.

    With a rotation the coordinates are turned about the image centre (full 2-D arrays).
    """
    s = float(min(h, w))
    x = ((np.arange(w, dtype=np.float32) + 0.5 - w / 2) / s + 0.5)[None, :]
    y = ((np.arange(h, dtype=np.float32) + 0.5 - h / 2) / s + 0.5)[:, None]
    if rotation:
        c, sn = np.float32(np.cos(rotation)), np.float32(np.sin(rotation))
        dx, dy = x - np.float32(0.5), y - np.float32(0.5)
        x, y = np.float32(0.5) + c * dx + sn * dy, np.float32(0.5) - sn * dx + c * dy
    return x, y


def _radius(e: Ellipse, x: np.ndarray, y: np.ndarray, power: float = 2.0) -> np.ndarray:
    """Normalised elliptical radius (1 on the outline)."""
    f32 = np.float32
    dx, dy = x - f32(e.cx), y - f32(e.cy)
    if e.angle:
        c, s = f32(np.cos(e.angle)), f32(np.sin(e.angle))
        dx, dy = dx * c + dy * s, dy * c - dx * s
    if power == 2.0:
        r = np.square(dx * f32(1 / e.rx))
        r += np.square(dy * f32(1 / e.ry))
        return np.sqrt(r, out=r)
    ax, ay = np.abs(dx * f32(1 / e.rx)), np.abs(dy * f32(1 / e.ry))
    if power == 3.0:
        return np.cbrt(ax * ax * ax + ay * ay * ay)
    if power == 4.0:
        ax *= ax
        ay *= ay
        return np.sqrt(np.sqrt(ax * ax + ay * ay))
    p = f32(power)
    return (ax**p + ay**p) ** (1 / p)


def _smooth(t: np.ndarray) -> np.ndarray:
    """Smoothstep of ``t`` clipped to [0, 1]; ``t`` is a temporary and is overwritten."""
    np.clip(t, 0.0, 1.0, out=t)
    out = np.float32(3.0) - np.float32(2.0) * t
    out *= t
    out *= t
    return out


def _soft_inside(r: np.ndarray, edge: float) -> np.ndarray:
    """1 well inside, 0 well outside, exactly 0.5 on r == 1; ``edge`` is the ramp width in r."""
    return _smooth((np.float32(1.0) - r) * np.float32(1 / edge) + np.float32(0.5))


def _upsample(grid: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bicubic upsampling of a small noise grid -> smooth, size-independent texture."""
    im = Image.fromarray(grid.astype(np.float32), mode="F")
    return np.asarray(im.resize((w, h), Image.BICUBIC), dtype=np.float32)


def _lung_fields(lay: Layout, x: np.ndarray, y: np.ndarray,
                 h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Soft lung fields (one per side) with the heart shadow carved out of them."""
    out = []
    for lung in lay.lungs:
        win = _window(lay, lung, 1.1, h, w)
        xs, ys = _crop(x, win), _crop(y, win)
        field_ = np.zeros((h, w), dtype=np.float32)
        inner = _soft_inside(_radius(lung, xs, ys), 0.12)
        inner *= np.float32(1.0) - _soft_inside(_radius(lay.heart, xs, ys), 0.25)
        field_[win] = inner
        out.append(field_)
    return out[0], out[1]


def _crop(a: np.ndarray, win: tuple[slice, slice]) -> np.ndarray:
    """Window of a grid array that may be broadcast along one axis (shape (1, W) / (H, 1))."""
    return a[win[0] if a.shape[0] > 1 else slice(None), win[1] if a.shape[1] > 1 else slice(None)]


def _window(lay: Layout, e: Ellipse, reach: float, h: int, w: int) -> tuple[slice, slice]:
    """Pixel window that certainly contains ``e`` grown by ``reach`` (in radius units)."""
    s = float(min(h, w))
    c, sn = np.cos(lay.rotation), np.sin(lay.rotation)
    dx, dy = e.cx - 0.5, e.cy - 0.5
    xi, yi = 0.5 + c * dx - sn * dy, 0.5 + sn * dx + c * dy  # undo the grid rotation
    rad = max(e.rx, e.ry) * reach * s + 2
    px, py = (xi - 0.5) * s + w / 2, (yi - 0.5) * s + h / 2
    x0, x1 = max(0, int(px - rad)), min(w, int(px + rad) + 1)
    y0, y1 = max(0, int(py - rad)), min(h, int(py + rad) + 1)
    return slice(y0, max(y0, y1)), slice(x0, max(x0, x1))


def _blob_fields(lay: Layout, x: np.ndarray, y: np.ndarray,
                 h: int, w: int) -> list[tuple[tuple[slice, slice], np.ndarray]]:
    """Soft opacity fields, each computed only inside its own window (fast at 1024 px)."""
    out = []
    for b in lay.blobs:
        win = _window(lay, b.ellipse, 1.0 + b.edge / 2, h, w)
        out.append((win, _soft_inside(_radius(b.ellipse, _crop(x, win), _crop(y, win)), b.edge)))
    return out


def _masks(lay: Layout, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(left lung, right lung, pattern) boolean masks; sides are as seen on the image."""
    x, y = _grid(h, w, lay.rotation)
    left, right = (f > 0.5 for f in _lung_fields(lay, x, y, h, w))
    pat = np.zeros((h, w), dtype=bool)
    for win, f in _blob_fields(lay, x, y, h, w):
        pat[win] |= f > 0.5
    return left, right, pat & (left | right)


def lung_mask(label: str, seed: int, size: int | tuple[int, int] = 128, *,
              side: str | None = None) -> np.ndarray:
    """Boolean lung-field mask of the phantom (heart shadow excluded), for region checks.

    ``side`` picks one lung as seen on the image: ``"left"`` or ``"right"`` (default both).
    """
    left, right, _ = _masks(phantom_layout(label, seed), *_hw(size))
    if side is None:
        return left | right
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left', 'right' or None, got {side!r}")
    return left if side == "left" else right


def pattern_mask(label: str, seed: int, size: int | tuple[int, int] = 128) -> np.ndarray:
    """Boolean mask of where the class pattern was drawn (all False for ``normal``).

    Covers the core (half-maximum) of each opacity, restricted to the lungs; the soft edges
    of the opacities extend slightly beyond it, so dilate a little for tolerant checks.
    """
    return _masks(phantom_layout(label, seed), *_hw(size))[2]


def make_phantom(label: str, seed: int, size: int | tuple[int, int] = 128) -> np.ndarray:
    """Render a deterministic uint8 grayscale chest-X-ray phantom of shape (H, W).

    ``size`` is an int (square) or ``(height, width)``.  The same (label, seed, size) always
    gives the same array; anatomy and class pattern depend only on (label, seed).
    """
    li = _check_label(label)
    h, w = _hw(size)
    lay = phantom_layout(label, seed)
    x, y = _grid(h, w, lay.rotation)
    f32 = np.float32

    tex = _upsample(lay.texture, h, w)

    # Body: super-ellipse torso with shoulders, plus a neck column at the top.
    body = _soft_inside(_radius(lay.body, x, y, lay.body_power), 0.05)
    neck = _smooth((f32(lay.neck_w) - np.abs(x - f32(lay.spine_x))) / f32(0.02) + 0.5) * _smooth(
        (f32(lay.body.cy) - y) / f32(0.1)
    )
    body = np.maximum(body, neck)
    # Soft tissue is brighter towards the edges of the torso (more tissue on the beam path).
    edge_boost = f32(0.08) * np.square(np.clip(np.abs(x - f32(lay.spine_x)) / f32(lay.body.rx), 0, 1))
    img = f32(lay.bg) + body * (f32(lay.tissue - lay.bg) + edge_boost + f32(0.03) * tex)

    # Mediastinum / heart (brighter than tissue).
    heart = _soft_inside(_radius(lay.heart, x, y), 0.35)
    column = _smooth((f32(0.075) - np.abs(x - f32(lay.spine_x))) / f32(0.05) + 0.5)
    column = column * _smooth((y - f32(lay.rib_top - 0.05)) / f32(0.15))
    img = img + f32(0.07) * np.maximum(heart, column) * body

    # Lungs: dark fields, slightly brighter medially (hilar vessels) and near the bases.
    left, right = _lung_fields(lay, x, y, h, w)
    lungs = left + right
    hilum = np.exp(-((np.abs(x - f32(lay.spine_x)) - f32(0.12)) / f32(0.06)) ** 2) * np.exp(
        -((y - f32(lay.lungs[0].cy)) / f32(0.15)) ** 2
    )
    marks = _upsample(lay.markings, h, w)
    depth = f32(lay.lung_depth) * (
        f32(1.0) - f32(0.28) * hilum + f32(0.03) * tex - f32(0.05) * np.abs(marks)
    )
    img = img - depth * lungs

    # Class pattern: opacities inside the lungs (patchy for COVID, dense for pneumonia).
    if lay.blobs:
        patch = _upsample(lay.patch_texture, h, w)
        if lay.label == "covid":
            mod = np.clip(f32(0.75) + f32(0.4) * patch, 0.35, 1.2)
        else:
            mod = f32(0.92) + f32(0.08) * patch
        pat = np.zeros((h, w), dtype=np.float32)
        for b, (win, f) in zip(lay.blobs, _blob_fields(lay, x, y, h, w)):
            side = left if b.lung == 0 else right
            np.maximum(pat[win], f32(b.amp) * f * mod[win] * side[win], out=pat[win])
        img = img + pat

    # Rib cage: periodic curved bands, visible over the lungs and fading outside them.
    dxm = np.abs(x - f32(lay.spine_x))
    v = (y - f32(lay.rib_top)) - f32(lay.rib_curve) * dxm**2 + f32(0.35) * dxm
    phase = v / f32(lay.rib_spacing) + f32(lay.rib_phase)
    ribs = (f32(1.0) + np.cos(f32(2 * np.pi) * phase)) * f32(0.5)
    ribs = ribs * ribs * ribs
    ribs *= ribs
    cage = _smooth((dxm - f32(lay.spine_w * 1.5)) / f32(0.04)) * _smooth(v / f32(0.03) + 0.5)
    cage = cage * _smooth((f32(lay.lungs[0].ry * 2.0) - v) / f32(0.08))
    cage = cage * body * (f32(0.2) + f32(0.8) * np.minimum(lungs, 1.0))
    img = img + f32(lay.rib_amp) * ribs * cage

    # Spine: bright column with vertebral modulation.
    spine = _smooth((f32(lay.spine_w) - np.abs(x - f32(lay.spine_x))) / f32(0.012) + 0.5)
    vert = f32(0.8) + f32(0.2) * np.cos(f32(2 * np.pi) * (y / f32(lay.rib_spacing * 0.9)))
    img = img + f32(lay.bone) * spine * vert * _smooth((y - f32(lay.rib_top - 0.12)) / f32(0.05))

    # Clavicles: bright bars from the sternal notch going laterally and slightly upwards.
    for sgn in (-1.0, 1.0):
        x0, y0 = lay.spine_x + sgn * 0.03, lay.clavicle_y
        x1, y1 = lay.spine_x + sgn * 0.27, lay.clavicle_y - lay.clavicle_tilt * 0.24
        vx, vy = x1 - x0, y1 - y0
        half = 0.5 * float(np.hypot(vx, vy)) + 0.03
        win = _window(lay, Ellipse((x0 + x1) / 2, (y0 + y1) / 2, half, half), 1.0, h, w)
        xs, ys = _crop(x, win), _crop(y, win)
        t = np.clip(((xs - f32(x0)) * f32(vx) + (ys - f32(y0)) * f32(vy)) / f32(vx * vx + vy * vy), 0, 1)
        d = np.hypot(xs - f32(x0) - t * f32(vx), ys - f32(y0) - t * f32(vy))
        img[win] += f32(lay.bone * 0.8) * _smooth((f32(0.013) - d) / f32(0.008) + f32(0.5))

    # Side marker (bright letter plate) and uneven exposure across the detector.
    if lay.marker is not None:
        mx, my, ms = lay.marker
        xi, yi = _grid(h, w)
        img = np.where((np.abs(xi - f32(mx)) < ms / 2) & (np.abs(yi - f32(my)) < ms * 0.6),
                       f32(0.9), img)
    xi, yi = _grid(h, w)
    ramp = f32(lay.gradient[0]) * (xi - f32(0.5)) * 2 + f32(lay.gradient[1]) * (yi - f32(0.5)) * 2
    img = img + ramp + f32(0.03) * _upsample(lay.exposure, h, w)

    # Collimator shutters: darker bands at some borders of the detector.
    cl, ct, cr, cb = lay.collimation
    if cl or ct or cr or cb:
        xr = (np.arange(w, dtype=np.float32) + 0.5)[None, :] / f32(w)
        yr = (np.arange(h, dtype=np.float32) + 0.5)[:, None] / f32(h)
        inside = ((xr > cl) & (xr < 1 - cr)) & ((yr > ct) & (yr < 1 - cb))
        img = np.where(inside, img, img * f32(0.25))

    # Exposure variation, mild noise, quantise.
    img = np.clip((img - f32(0.5)) * f32(lay.contrast) + f32(0.5), 0.0, 1.0) ** f32(lay.gamma)
    nrng = np.random.default_rng([li, _seed_int(lay.seed), h, w, 0x7015E])
    img = img + nrng.standard_normal((h, w), dtype=np.float32) * f32(lay.noise_sigma)
    return (np.clip(img, 0.0, 1.0) * f32(255.0) + f32(0.5)).astype(np.uint8)


# --------------------------------------------------------------------------------------
# Encoding helpers
# --------------------------------------------------------------------------------------


def _encode(arr: np.ndarray, fmt: str, *, mode: str = "L", quality: int = 92) -> bytes:
    """Encode a uint8 grayscale array as PNG/JPEG bytes in grayscale, RGB or 16-bit form."""
    if mode == "RGB":
        im = Image.fromarray(np.repeat(arr[:, :, None], 3, axis=2), mode="RGB")
    elif mode == "I;16":
        if fmt != "png":
            raise ValueError("16-bit output is PNG only")
        im = Image.fromarray(arr.astype(np.uint16) * np.uint16(257))
    else:
        im = Image.fromarray(arr, mode="L")
    buf = io.BytesIO()
    if fmt == "png":
        im.save(buf, format="PNG", optimize=False, compress_level=6)
    elif fmt in ("jpeg", "jpg"):
        im.save(buf, format="JPEG", quality=quality, subsampling=0 if mode == "RGB" else -1)
    else:
        raise ValueError(f"unsupported format {fmt!r}")
    return buf.getvalue()


def _decode(data: bytes) -> np.ndarray:
    """Decode bytes back to uint8 grayscale (what a re-encoding pipeline would start from)."""
    with Image.open(io.BytesIO(data)) as im:
        if im.mode in ("I;16", "I;16B", "I"):
            return (np.asarray(im, dtype=np.float64) / 257.0).round().clip(0, 255).astype(np.uint8)
        return np.asarray(im.convert("L"), dtype=np.uint8)


def _resize(arr: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.asarray(Image.fromarray(arr).resize((w, h), Image.BILINEAR), dtype=np.uint8)


def _shift(arr: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Translate by (dy, dx) pixels, filling the uncovered border by edge replication."""
    h, w = arr.shape
    pad = np.pad(arr, ((abs(dy), abs(dy)), (abs(dx), abs(dx))), mode="edge")
    y0, x0 = abs(dy) - dy, abs(dx) - dx
    return pad[y0 : y0 + h, x0 : x0 + w]


def _brightness(arr: np.ndarray, factor: float) -> np.ndarray:
    return np.clip(arr.astype(np.float32) * np.float32(factor), 0, 255).round().astype(np.uint8)


@lru_cache(maxsize=1)
def _dct_matrix(n: int = 32) -> np.ndarray:
    k = np.arange(n)[:, None]
    return np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * k / (2 * n))


def _phash_bits(arr: np.ndarray) -> np.ndarray:
    """64-bit DCT perceptual hash, bit-compatible with ``imagehash.phash`` (numpy only)."""
    px = np.asarray(Image.fromarray(arr).convert("L").resize((32, 32), Image.LANCZOS), np.float64)
    c = _dct_matrix(32)
    low = (c @ px @ c.T)[:8, :8]
    return (low > np.median(low)).ravel()


def _dhash_bits(arr: np.ndarray) -> np.ndarray:
    """64-bit difference hash, bit-compatible with ``imagehash.dhash``."""
    px = np.asarray(Image.fromarray(arr).convert("L").resize((9, 8), Image.LANCZOS), np.int16)
    return (px[:, 1:] > px[:, :-1]).ravel()


def _derive(*parts: int) -> int:
    """Collision-resistant 63-bit seed from several ints (keeps phantoms in a tree distinct)."""
    a, b = np.random.SeedSequence([_seed_int(p) for p in parts]).generate_state(2, np.uint32)
    return (int(a) << 31) ^ int(b)


# --------------------------------------------------------------------------------------
# Fake multi-source tree
# --------------------------------------------------------------------------------------

#: Source key -> top-level folder name, in the layouts of the four public datasets.
SOURCE_DIRS: dict[str, str] = {
    "radiography": "COVID-19_Radiography_Dataset",
    "chest_xray": "chest_xray",
    "covid15k": "covid19-15k",
    "cpn": "COVID-19+PNEUMONIA+NORMAL",
}

# Hash separation kept between distinct pictures of a tree, and the most a planted shifted
# near copy may drift (Hamming distances of 64-bit pHash / dHash).
_MIN_PHASH = 12
_MIN_DHASH = 6
_MAX_NEAR_PHASH = 4
_MAX_TRIES = 8
# Candidate 2-3 px translations for planted shifted copies (first detectable one is used).
_SHIFTS = ((2, 0), (0, 2), (-2, 0), (0, -2), (2, 2), (-2, 2), (2, -2), (-2, -2), (3, 0), (0, 3))

_DS_STORE = b"\x00\x00\x00\x01Bud1" + bytes(range(16)) * 4
_APPLE_DOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + b"\x00" * 40
_THUMBS_DB = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 56


@dataclass
class SyntheticTree:
    """Ground truth of a tree written by :func:`write_source_tree`.

    All paths are POSIX strings relative to ``root``.  Pairs are ``(original, copy)``.

    * ``labels``: every file -> intended class in :data:`CLASSES` (the label of the folder it
      sits in), or ``None`` for files the builder must not use as images of a class
      (masks, junk, ``Lung_Opacity``).  Corrupt / bad-exposure / tiny files keep their
      folder label; they are listed separately.
    * ``sources``: every file -> source key of :data:`SOURCE_DIRS` (``"junk"`` for the
      root-level ``__MACOSX`` folder).
    * ``content``: every decodable image -> id of the underlying picture (the path of the
      first file that showed it).  Files sharing an id are exact or near duplicates.
    * ``exact_duplicates``: byte-identical pairs (within and across sources).
    * ``near_duplicates``: re-encoded / resized / shifted / brightness-changed pairs;
      ``transforms`` maps each near copy to a description of what was done.
    * ``cross_source_duplicates``: the pairs (exact or near) whose files lie in different
      sources.  ``label_conflicts``: pairs showing the same picture under different labels.
    * ``over_exposed`` / ``under_exposed`` / ``low_contrast`` (near-blank and fully blank).
    * ``tiny``: decodable images smaller than 32 px.  ``corrupt``: files that PIL cannot
      load (truncated PNG/JPEG, zero bytes, text named ``.png``).  ``junk``: ``.DS_Store``,
      AppleDouble ``._*`` files, ``Thumbs.db``, ``README.txt``.  ``masks``: lung masks.
    * ``rgb`` / ``sixteen_bit``: images stored as RGB or 16-bit grayscale PNG.
    * ``patients``: ``chest_xray`` file -> patient id; ``leaked_patients``: patient ids with
      files in more than one split of ``chest_xray``.
    * ``near_phash``: near copy -> pHash Hamming distance to its original as drawn (before
      encoding; ``imagehash.phash``-compatible).  Planted near copies aim for <= 4.
    * ``min_distinct_phash`` / ``min_distinct_dhash``: smallest pHash / dHash distance
      between two *different* pictures of the tree (the flat blank frame excluded).  The
      writer rejection-samples phantoms to keep these >= 12 / >= 6, so a hash threshold in
      between separates planted near duplicates from distinct images (large trees may fall
      short; check these fields).
    """

    root: Path
    labels: dict[str, str | None] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    content: dict[str, str] = field(default_factory=dict)
    exact_duplicates: list[tuple[str, str]] = field(default_factory=list)
    near_duplicates: list[tuple[str, str]] = field(default_factory=list)
    transforms: dict[str, str] = field(default_factory=dict)
    cross_source_duplicates: list[tuple[str, str]] = field(default_factory=list)
    label_conflicts: list[tuple[str, str]] = field(default_factory=list)
    over_exposed: list[str] = field(default_factory=list)
    under_exposed: list[str] = field(default_factory=list)
    low_contrast: list[str] = field(default_factory=list)
    tiny: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    junk: list[str] = field(default_factory=list)
    masks: list[str] = field(default_factory=list)
    rgb: list[str] = field(default_factory=list)
    sixteen_bit: list[str] = field(default_factory=list)
    patients: dict[str, str] = field(default_factory=dict)
    leaked_patients: list[str] = field(default_factory=list)
    near_phash: dict[str, int] = field(default_factory=dict)
    min_distinct_phash: int = 64
    min_distinct_dhash: int = 64

    @property
    def files(self) -> list[str]:
        """Every file written, sorted."""
        return sorted(self.labels)

    @property
    def bad_exposure(self) -> list[str]:
        """Over-exposed, under-exposed and low-contrast/blank files together."""
        return sorted(self.over_exposed + self.under_exposed + self.low_contrast)

    def images(self) -> list[str]:
        """Decodable images with a class label (what a builder should read before QC/dedup)."""
        bad = set(self.corrupt) | set(self.junk) | set(self.masks)
        return sorted(p for p, lab in self.labels.items() if lab is not None and p not in bad)

    def source_of(self, rel: str) -> str:
        """Source key of a file (convenience for tests)."""
        return self.sources[rel]


class _TreeWriter:
    """Collects files + ground truth while writing; keeps bytes for planting copies."""

    def __init__(self, root: Path, seed: int) -> None:
        self.root = root
        self.seed = seed
        self.t = SyntheticTree(root=root)
        self.data: dict[str, bytes] = {}
        self.arrays: dict[str, np.ndarray] = {}
        self.counter = 0
        self.ph: list[np.ndarray] = []
        self.dh: list[np.ndarray] = []
        self.last: tuple[str, int] = ("normal", 0)

    def put(self, rel: str, data: bytes, label: str | None, source: str) -> str:
        if rel in self.t.labels:
            raise RuntimeError(f"synthetic tree wrote {rel} twice")
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.t.labels[rel] = label
        self.t.sources[rel] = source
        self.data[rel] = data
        return rel

    def phantom(self, label: str, size: int | tuple[int, int], *,
                transform=None) -> np.ndarray:  # noqa: ANN001 - internal
        """A fresh phantom whose hashes keep a distance from every picture already written.

        Rejection sampling (bounded) so that distinct pictures never look like accidental
        near duplicates to a hash-based deduplicator; the achieved minimum is recorded.
        """
        best: tuple[int, np.ndarray, tuple[str, int], np.ndarray, np.ndarray] | None = None
        for _ in range(_MAX_TRIES):
            self.counter += 1
            key = (label, _derive(self.seed, self.counter))
            arr = make_phantom(*key, size)
            if transform is not None:
                arr = transform(arr)
            ph, dh = _phash_bits(arr), _dhash_bits(arr)
            if self.ph:
                dp = int(np.count_nonzero(np.asarray(self.ph) != ph, axis=1).min())
                dd = int(np.count_nonzero(np.asarray(self.dh) != dh, axis=1).min())
            else:
                dp = dd = 64
            score = min(dp - _MIN_PHASH, dd - _MIN_DHASH)
            if best is None or score > best[0]:
                best = (score, arr, key, ph, dh)
            if score >= 0:
                break
        assert best is not None
        _, arr, self.last, ph, dh = best
        self.ph.append(ph)
        self.dh.append(dh)
        return arr

    def image(self, rel: str, arr: np.ndarray, label: str | None, source: str, *,
              mode: str = "L", quality: int = 92, content: str | None = None) -> str:
        fmt = "png" if rel.lower().endswith(".png") else "jpeg"
        self.put(rel, _encode(arr, fmt, mode=mode, quality=quality), label, source)
        self.arrays[rel] = arr
        self.t.content[rel] = content or rel
        if mode == "RGB":
            self.t.rgb.append(rel)
        elif mode == "I;16":
            self.t.sixteen_bit.append(rel)
        return rel

    def new(self, rel: str, label: str, source: str, size: int | tuple[int, int], *,
            draw_as: str | None = None, mode: str = "L", quality: int = 92) -> str:
        return self.image(rel, self.phantom(draw_as or label, size), label, source,
                          mode=mode, quality=quality)

    def exact_copy(self, orig: str, rel: str, label: str | None, source: str) -> str:
        self.put(rel, self.data[orig], label, source)
        self.arrays[rel] = self.arrays[orig]
        self.t.content[rel] = self.t.content[orig]
        for lst in (self.t.rgb, self.t.sixteen_bit):
            if orig in lst:
                lst.append(rel)
        self.t.exact_duplicates.append((orig, rel))
        self._pair(orig, rel)
        return rel

    def near_copy(self, orig: str, rel: str, label: str | None, source: str, *,
                  scale: float = 1.0, bright: float = 1.0, size: tuple[int, int] | None = None,
                  shifts: tuple[tuple[int, int], ...] = ((0, 0),), mode: str = "L",
                  quality: int = 85) -> str:
        """Plant a re-encoded / resized / shifted / brightness-changed copy of ``orig``.

        Of the candidate ``shifts`` the first whose result stays within ``_MAX_NEAR_PHASH``
        of the original is used (else the closest), so the copy remains detectable.
        """
        src_arr = _decode(self.data[orig])
        ref = _phash_bits(src_arr)

        def build(shift: tuple[int, int]) -> np.ndarray:
            arr = src_arr
            if size is not None:
                arr = _resize(arr, *size)
            elif scale != 1.0:
                h, w = arr.shape
                arr = _resize(arr, max(8, round(h * scale)), max(8, round(w * scale)))
            if shift != (0, 0):
                arr = _shift(arr, *shift)
            if bright != 1.0:
                arr = _brightness(arr, bright)
            return arr

        cands = [(s_, build(s_)) for s_ in shifts]
        dist = [int(np.count_nonzero(_phash_bits(a) != ref)) for _, a in cands]
        ok = [k for k, d in enumerate(dist) if d <= _MAX_NEAR_PHASH]
        k = ok[0] if ok else int(np.argmin(dist))
        shift, arr = cands[k]
        o_ext, c_ext = Path(orig).suffix.lstrip("."), Path(rel).suffix.lstrip(".")
        what = [f"re-encoded {o_ext}->{c_ext}" + ("" if c_ext == "png" else f" (q={quality})")]
        if size is not None:
            what.append(f"resized to {size[0]}x{size[1]}")
        elif scale != 1.0:
            what.append(f"resized x{scale:g}")
        if shift != (0, 0):
            what.append(f"shifted by {shift} px")
        if bright != 1.0:
            what.append(f"brightness x{bright:g}")
        self.image(rel, arr, label, source, mode=mode, quality=quality,
                   content=self.t.content[orig])
        self.t.near_duplicates.append((orig, rel))
        self.t.transforms[rel] = ", ".join(what)
        self.t.near_phash[rel] = dist[k]
        self._pair(orig, rel)
        return rel

    def _pair(self, orig: str, rel: str) -> None:
        if self.t.sources[orig] != self.t.sources[rel]:
            self.t.cross_source_duplicates.append((orig, rel))
        lo, lc = self.t.labels[orig], self.t.labels[rel]
        if lo is not None and lc is not None and lo != lc:
            self.t.label_conflicts.append((orig, rel))

    def bad(self, rel: str, label: str, source: str, size: int | tuple[int, int], kind: str) -> str:
        lists = {"over": self.t.over_exposed, "under": self.t.under_exposed,
                 "low_contrast": self.t.low_contrast, "blank": self.t.low_contrast}
        if kind == "blank":  # one flat grey frame, no structure at all
            h, w = _hw(size)
            arr = np.full((h, w), 131, dtype=np.uint8)
        else:
            gain, offset = {"over": (0.2, 205.0),  # mostly white, washed out
                            "under": (0.1, 0.0),  # mostly black
                            "low_contrast": (0.02, 120.0)}[kind]  # near blank: few grey levels

            def fn(a: np.ndarray) -> np.ndarray:
                return np.clip(a * np.float32(gain) + np.float32(offset), 0, 255).round().astype(np.uint8)

            arr = self.phantom(label, size, transform=fn)
        self.image(rel, arr, label, source)
        lists[kind].append(rel)
        return rel

    def corrupt(self, rel: str, label: str, source: str, kind: str, size: int) -> str:
        if kind == "truncated":
            fmt = "png" if rel.endswith(".png") else "jpeg"
            self.counter += 1
            data = _encode(make_phantom(label, _derive(self.seed, self.counter), size), fmt)
            data = data[: max(64, len(data) // 3)]
        elif kind == "empty":
            data = b""
        elif kind == "text":
            data = b"This is not an image. Download interrupted?\n"
        else:  # pragma: no cover - internal misuse
            raise ValueError(kind)
        self.put(rel, data, label, source)
        self.t.corrupt.append(rel)
        return rel

    def junk(self, rel: str, data: bytes, source: str) -> str:
        self.put(rel, data, None, source)
        self.t.junk.append(rel)
        return rel


def write_source_tree(root: Path, *, n_per_class: int = 12, size: int = 96,
                      seed: int = 0) -> SyntheticTree:
    """Write a small fake copy of the four public sources, with planted problems, under root.

    Why: the dataset builder (adapters, QC, exact/near dedup, label-conflict and patient
    leakage handling) needs an input whose ground truth is known exactly.  Each class folder
    gets ``n_per_class`` distinct phantoms plus the planted files; the same arguments always
    produce byte-identical files.  Returns the ground truth (see :class:`SyntheticTree`).
    """
    if n_per_class < 4:
        raise ValueError("n_per_class must be >= 4 to plant every kind of problem")
    if size < 32:
        raise ValueError("size must be >= 32 (tiny images are planted at 24 px)")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    n, S = n_per_class, int(size)
    w = _TreeWriter(root, seed)
    t = w.t
    rng = np.random.default_rng([_seed_int(seed), 0x7EE])

    def jit(base: int, frac: float = 0.06) -> int:
        return int(round(base * (1 + rng.uniform(-frac, frac))))

    def patient_plan(per: int) -> list[tuple[int, int, str]]:
        """(patient number, image number, split) per image; patient 1 leaks into test."""
        groups = [list(range(s, min(n, s + per))) for s in range(0, n, per)]
        plan = []
        for g, members in enumerate(groups):
            sp = "val" if g == len(groups) - 1 else ("test" if g % 3 == 2 else "train")
            for k, _ in enumerate(members):
                leak = g == 0 and k == len(members) - 1 and k > 0
                plan.append((g + 1, k + 1, "test" if leak else sp))
        return plan

    # ---- chest_xray (Kermany): JPEG, non-square, several images per patient ----------
    cx, src = SOURCE_DIRS["chest_xray"], "chest_xray"
    cx_normal: dict[str, list[str]] = {"train": [], "test": [], "val": []}
    cx_pneu: dict[str, list[str]] = {"train": [], "test": [], "val": []}
    patient_splits: dict[str, set[str]] = {}

    def cx_add(rel: str, patient: str, split: str) -> None:
        t.patients[rel] = patient
        patient_splits.setdefault(patient, set()).add(split)

    for p, k, sp in patient_plan(2):
        pid = ("" if p % 2 else "NORMAL2-") + f"IM-{p:04d}"
        rel = w.new(f"{cx}/{sp}/NORMAL/{pid}-{k:04d}.jpeg", "normal", src,
                    (jit(S), jit(round(S * 1.2))), quality=90)
        cx_normal[sp].append(rel)
        cx_add(rel, pid, sp)
    c = 0
    for p, _, sp in patient_plan(3):
        c += 1
        kind = "bacteria" if p % 2 else "virus"
        rel = w.new(f"{cx}/{sp}/PNEUMONIA/person{p}_{kind}_{c}.jpeg", "pneumonia", src,
                    (jit(S), jit(round(S * 1.2))), quality=90)
        cx_pneu[sp].append(rel)
        cx_add(rel, f"person{p}", sp)
    P = 1 + (n - 1) // 3
    # within-source exact duplicate under another patient id, in another split
    rel = w.exact_copy(cx_pneu["train"][0], f"{cx}/test/PNEUMONIA/person{P + 1}_bacteria_{c + 1}.jpeg",
                       "pneumonia", src)
    cx_add(rel, f"person{P + 1}", "test")
    # within-source near duplicate: shifted + re-encoded at lower quality, in val
    rel = w.near_copy(cx_normal["train"][0], f"{cx}/val/NORMAL/IM-0900-0001.jpeg", "normal", src,
                      shifts=_SHIFTS, quality=80)
    cx_add(rel, "IM-0900", "val")
    rel = w.bad(f"{cx}/train/PNEUMONIA/person{P + 2}_virus_{c + 2}.jpeg", "pneumonia", src,
                (S, round(S * 1.2)), "under")
    cx_add(rel, f"person{P + 2}", "train")
    w.corrupt(f"{cx}/train/NORMAL/IM-0950-0001.jpeg", "normal", src, "truncated", S)
    w.corrupt(f"{cx}/test/PNEUMONIA/person{P + 3}_bacteria_{c + 3}.jpeg", "pneumonia", src,
              "empty", S)
    w.junk(f"{cx}/.DS_Store", _DS_STORE, src)
    w.junk(f"{cx}/train/.DS_Store", _DS_STORE, src)
    w.junk(f"{cx}/__MACOSX/train/NORMAL/._{Path(cx_normal['train'][0]).name}", _APPLE_DOUBLE, src)
    t.leaked_patients = sorted(p for p, s in patient_splits.items() if len(s) > 1)

    # ---- COVID-19 Radiography Database: PNG, square, masks next to images ------------
    rd, src = SOURCE_DIRS["radiography"], "radiography"

    def rd_image(cls_dir: str, stem: str, label: str | None, *, draw_as: str | None = None,
                 mode: str = "L", mask: bool = True) -> str:
        rel = w.new(f"{rd}/{cls_dir}/images/{stem}.png", label, src, S,  # type: ignore[arg-type]
                    draw_as=draw_as, mode=mode)
        if mask:
            m = lung_mask(*w.last, S).astype(np.uint8) * 255
            w.put(f"{rd}/{cls_dir}/masks/{stem}.png", _encode(m, "png"), None, src)
            t.masks.append(f"{rd}/{cls_dir}/masks/{stem}.png")
        return rel

    for i in range(1, n + 1):
        rd_image("COVID", f"COVID-{i}", "covid", mode="RGB" if i % 4 == 0 else "L")
    # Some Radiography normals are re-encoded, resized copies of chest_xray normals (as in
    # the real data); the rest are new.
    k_from_cx = min(3, len(cx_normal["train"]))
    for i in range(1, n + 1):
        if i <= k_from_cx:
            w.near_copy(cx_normal["train"][i - 1], f"{rd}/Normal/images/Normal-{i}.png",
                        "normal", src, size=(S, S))
        else:
            rd_image("Normal", f"Normal-{i}", "normal", mask=i % 2 == 0)
    all_pneu = cx_pneu["train"] + cx_pneu["test"] + cx_pneu["val"]
    virus = next((r for r in all_pneu if "_virus_" in r), all_pneu[0])
    for i in range(1, n + 1):
        if i == 1:
            w.near_copy(virus, f"{rd}/Viral Pneumonia/images/Viral Pneumonia-1.png", "pneumonia",
                        src, size=(S, S))
        else:
            rd_image("Viral Pneumonia", f"Viral Pneumonia-{i}", "pneumonia", mask=False)
    for i in range(1, max(2, n // 2) + 1):
        rd_image("Lung_Opacity", f"Lung_Opacity-{i}", None, draw_as="pneumonia", mask=False)
    w.exact_copy(f"{rd}/COVID/images/COVID-2.png", f"{rd}/COVID/images/COVID-{n + 1}.png",
                 "covid", src)
    tiny = w.new(f"{rd}/COVID/images/COVID-{n + 2}.png", "covid", src, 24)
    t.tiny.append(tiny)
    w.bad(f"{rd}/Normal/images/Normal-{n + 1}.png", "normal", src, S, "over")
    w.corrupt(f"{rd}/Normal/images/Normal-{n + 2}.png", "normal", src, "truncated", S)
    w.junk(f"{rd}/COVID/images/._COVID-3.png", _APPLE_DOUBLE, src)
    w.junk(f"{rd}/COVID/.DS_Store", _DS_STORE, src)
    w.junk(f"{rd}/README.txt", b"COVID-19 Radiography Database (synthetic stand-in).\n", src)
    w.junk(f"__MACOSX/{rd}/COVID/images/._COVID-1.png", _APPLE_DOUBLE, "junk")

    # ---- 15K-style COVID set: {train,test}/{covid,normal}, PNG/JPEG mix --------------
    k15, src = SOURCE_DIRS["covid15k"], "covid15k"
    k15_files: dict[tuple[str, str, str], list[str]] = {}
    for label in ("covid", "normal"):
        for i in range(1, n + 1):
            sp = "train" if i % 4 else "test"
            ext = "png" if i % 2 else "jpg"
            sz = jit(S, 0.08)
            rel = w.new(f"{k15}/{sp}/{label}/{label}_{i:04d}.{ext}", label, src, (sz, sz),
                        quality=88)
            k15_files.setdefault((label, sp, ext), []).append(rel)
    w.new(f"{k15}/train/covid/covid_{n + 1:04d}.png", "covid", src, S, mode="I;16")
    w.near_copy(k15_files[("normal", "train", "jpg")][0], f"{k15}/test/normal/normal_{n + 1:04d}.png",
                "normal", src, scale=0.85)
    w.bad(f"{k15}/train/normal/normal_{n + 2:04d}.png", "normal", src, S, "low_contrast")
    w.corrupt(f"{k15}/test/covid/covid_{n + 2:04d}.png", "covid", src, "text", S)
    w.junk(f"{k15}/train/covid/Thumbs.db", _THUMBS_DB, src)

    # ---- COVID-19+PNEUMONIA+NORMAL: flat class folders, JPEG/PNG mix, some RGB --------
    cp, src = SOURCE_DIRS["cpn"], "cpn"
    for label, folder in (("covid", "COVID"), ("normal", "NORMAL"), ("pneumonia", "PNEUMONIA")):
        for i in range(1, n + 1):
            ext = ("jpg" if label != "pneumonia" else "jpeg") if i % 2 else "png"
            w.new(f"{cp}/{folder}/{folder} ({i}).{ext}", label, src, jit(S, 0.1),
                  mode="RGB" if i % 3 == 0 else "L", quality=90)
    k15_covid_png = k15_files[("covid", "train", "png")]
    w.exact_copy(k15_covid_png[0], f"{cp}/COVID/COVID ({n + 1}).png", "covid", src)
    # label conflict: the same picture is covid in the 15K set and normal here
    w.exact_copy(k15_covid_png[1], f"{cp}/NORMAL/NORMAL ({n + 1}).png", "normal", src)
    # label conflict via a near copy: 15K normal shows up as pneumonia here
    w.near_copy(k15_files[("normal", "test", "jpg")][0] if ("normal", "test", "jpg") in k15_files
                else k15_files[("normal", "train", "png")][0],
                f"{cp}/PNEUMONIA/PNEUMONIA ({n + 1}).jpg", "pneumonia", src, bright=1.06, quality=75)
    w.near_copy(cx_pneu["train"][1], f"{cp}/PNEUMONIA/PNEUMONIA ({n + 2}).jpeg", "pneumonia", src,
                scale=1.15, shifts=_SHIFTS[3:] + _SHIFTS[:3], quality=85)
    t.tiny.append(w.new(f"{cp}/NORMAL/NORMAL ({n + 2}).png", "normal", src, 24))
    w.bad(f"{cp}/COVID/COVID ({n + 2}).jpg", "covid", src, S, "over")
    w.bad(f"{cp}/COVID/COVID ({n + 3}).png", "covid", src, S, "blank")
    w.junk(f"{cp}/.DS_Store", _DS_STORE, src)

    for lst in (t.over_exposed, t.under_exposed, t.low_contrast, t.tiny, t.corrupt, t.junk,
                t.masks, t.rgb, t.sixteen_bit):
        lst.sort()
    t.min_distinct_phash = _min_pairwise(w.ph)
    t.min_distinct_dhash = _min_pairwise(w.dh)
    return t


def _min_pairwise(bits: list[np.ndarray]) -> int:
    """Smallest Hamming distance between any two hashes (64 when fewer than two)."""
    if len(bits) < 2:
        return 64
    b = np.asarray(bits)
    d = np.count_nonzero(b[:, None, :] != b[None, :, :], axis=2)
    d[np.diag_indices(len(b))] = 64
    return int(d.min())


def write_class_folders(root: Path, counts: dict[str, int] | int, *, size: int = 64,
                        seed: int = 0, fmt: str = "png") -> list[Path]:
    """Write a clean ``root/<class>/<class>_NNNN.<fmt>`` tree of distinct phantoms.

    Why: model, training and Grad-CAM tests need a small learnable dataset without the
    planted problems of :func:`write_source_tree`.  ``counts`` is one int for every class or
    a per-class dict (missing classes get none).  Returns the written paths, sorted.
    """
    fmt = fmt.lower().lstrip(".")
    if fmt not in ("png", "jpeg", "jpg"):
        raise ValueError(f"fmt must be png, jpeg or jpg, got {fmt!r}")
    per = {c: int(counts) for c in CLASSES} if isinstance(counts, int) else dict(counts)
    for c in per:
        _check_label(c)
    root = Path(root)
    out: list[Path] = []
    for c in CLASSES:
        if per.get(c, 0) <= 0:
            continue
        d = root / c
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per[c]):
            arr = make_phantom(c, _derive(seed, 0xC1A55, i), size)
            p = d / f"{c}_{i:04d}.{fmt}"
            p.write_bytes(_encode(arr, "png" if fmt == "png" else "jpeg", quality=95))
            out.append(p)
    return sorted(out)
