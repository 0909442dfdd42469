"""Phantom chest X-rays: deterministic drawings whose class pattern a small model can learn.

* :func:`make_phantom` draws a chest-like image whose class is encoded in a pattern a small
  CNN can learn at 32-64 px (lobar consolidation for pneumonia, bilateral peripheral
  ground-glass for COVID-19, clear lungs for normal).
* :func:`pattern_mask` / :func:`lung_mask` return the exact regions used for drawing, so
  Grad-CAM tests can check where the heat-map mass lands.
* :func:`phantom_layout` is the size-independent geometry both share, so an image and its
  masks can never disagree.

numpy and Pillow only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image

from ..labels import CLASSES

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
