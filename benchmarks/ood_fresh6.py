"""The ``fresh6`` set of non-X-rays for benchmarks/ood_detection.py: defined and committed after
``fresh5`` and before any change designed after ``fresh5`` was scored (written without looking at
how the detector works); scored once, at the end.

Kinds none of the earlier sets has:

* generated (numpy, Pillow; deterministic, seeds 16000+), 20 each of 12 kinds. Other
  radiographs and medical images, the inputs a radiology user is most likely to feed by
  mistake, drawn as plausibly as numpy and Pillow allow (soft-tissue greys, brighter bone with a
  cortex, grain and blur, dark background outside the body, collimation edges, side markers,
  viewer overlays): a frontal (PA) skull, a wrist (PA, sometimes beside an oblique view), a
  lateral knee with the patella, a lateral ankle, a frog-leg lateral hip, an intravenous urogram
  (contrast in the collecting systems, ureters and bladder; sometimes the plain KUB film), an
  intra-operative C-arm fluoroscopy frame (a hip nail or plate, or pedicle screws, often an
  instrument; round field), an axial CT of the head (brain or bone window, sometimes a filmed
  page of slices), a whole-body PET maximum-intensity projection (inverted grey or a hot colour
  scale), a colour Doppler ultrasound screen of a vessel (often with a spectral trace), a retinal
  OCT B-scan (grey or false colour, often beside the infrared fundus picture), and a
  colonoscopy or gastroscopy video frame (colour);
* pictures found on the machine outside this project in folders no earlier set used (the
  Adwaita 96 px devices and mimetypes icons, CMake's Windows app templates), deduplicated by
  content.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ood_fresh2 import draw_set, found
from ood_fresh5 import _marker, _smooth_noise

#: Generated kinds of fresh6.
KINDS6 = ("skull-frontal", "wrist", "knee-lateral", "ankle-lateral", "hip-lateral", "urogram", "fluoro", "ct-head",
          "pet-mip", "doppler", "oct-retina", "endoscopy")

#: Where the found pictures were on the project's CPU box (group name: glob).
FOUND_GLOBS6 = {
    "adwaita-96-devices": "/usr/share/icons/Adwaita/96x96/devices/*.png",
    "adwaita-96-mimetypes": "/usr/share/icons/Adwaita/96x96/mimetypes/*.png",
    "cmake-windows-templates": "/usr/share/cmake-3.25/Templates/Windows/*.png",
}

# --- helpers ---------------------------------------------------------------------------------


class _Pose:
    """Unit coordinates (u to the right, v down; one unit = ``scale`` times the shorter side of the
    picture) -> pixels of a ``k`` times larger canvas, turned by ``angle`` degrees about the point
    (cx, cy) (fractions of the width and height), mirrored left-right when ``flip``."""

    def __init__(self, h, w, scale, cx=0.5, cy=0.5, angle=0.0, flip=False, k=2):
        self.h, self.w, self.k = h, w, k
        self.s = scale * min(h, w) * k
        self.cx, self.cy = cx * w * k, cy * h * k
        t = np.deg2rad(angle)
        self.c, self.sn = np.cos(t), np.sin(t)
        self.flip = flip

    def __call__(self, pts):
        out = []
        for u, v in pts:
            u = -u if self.flip else u
            out.append((float(self.cx + self.s * (self.c * u - self.sn * v)),
                        float(self.cy + self.s * (self.sn * u + self.c * v))))
        return out

    def L(self, r):
        return float(r * self.s)

    def mask(self, fn) -> np.ndarray:
        """A float mask in [0, 1] of what ``fn(ImageDraw)`` draws (255 on 0), at the picture's size."""
        im = Image.new("L", (self.w * self.k, self.h * self.k), 0)
        fn(ImageDraw.Draw(im))
        if self.k > 1:
            im = im.reduce(self.k)
        return np.asarray(im, np.float64) / 255


def _ell(cu, cv, ru, rv, rot=0.0, n=60):
    """The outline of an ellipse turned by ``rot`` degrees, as a list of (u, v)."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(np.deg2rad(rot)), np.sin(np.deg2rad(rot))
    x, y = ru * np.cos(t), rv * np.sin(t)
    return list(zip(cu + c * x - s * y, cv + s * x + c * y))


def _sell(cu, cv, ru, rv, p=3.0, n=80):
    """The outline of a superellipse (a rounded square for ``p`` > 2)."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    return list(zip(cu + ru * np.sign(c) * np.abs(c) ** (2 / p), cv + rv * np.sign(s) * np.abs(s) ** (2 / p)))


def _rot(pts, deg, about=(0.0, 0.0)):
    c, s = np.cos(np.deg2rad(deg)), np.sin(np.deg2rad(deg))
    return [(about[0] + c * (u - about[0]) - s * (v - about[1]), about[1] + s * (u - about[0]) + c * (v - about[1]))
            for u, v in pts]


def _tube(centre, widths):
    """A closed outline around a polyline ``centre`` of (u, v) with a width at each point."""
    p = np.asarray(centre, np.float64)
    wd = np.broadcast_to(np.asarray(widths, np.float64), (len(p),))
    t = np.gradient(p, axis=0)
    t /= np.linalg.norm(t, axis=1, keepdims=True) + 1e-12
    nrm = np.stack([-t[:, 1], t[:, 0]], 1)
    left, right = p + nrm * wd[:, None] / 2, p - nrm * wd[:, None] / 2
    return [tuple(q) for q in left] + [tuple(q) for q in right[::-1]]


def _blur(a: np.ndarray, r: float) -> np.ndarray:
    """A Gaussian blur of ``a`` (any floats, kept to about 1/255 of their range) with sigma ``r`` pixels."""
    a = np.asarray(a, np.float64)
    if r < 0.3:
        return a
    lo, hi = float(a.min()), float(a.max())
    if hi - lo < 1e-9:
        return a.copy()
    im = Image.fromarray(np.round(255 * (a - lo) / (hi - lo)).astype(np.uint8)).filter(ImageFilter.GaussianBlur(r))
    return lo + (hi - lo) * np.asarray(im, np.float64) / 255


def _chaikin(pts, n=3, closed=True):
    """An outline (or, not ``closed``, a path) with its corners cut ``n`` times (rounder)."""
    p = np.asarray(pts, np.float64)
    for _ in range(n):
        q = np.roll(p, -1, axis=0)
        cut = np.stack([0.75 * p + 0.25 * q, 0.25 * p + 0.75 * q], 1).reshape(-1, 2)
        p = cut if closed else np.concatenate([p[:1], cut[:-2], p[-1:]])
    return [tuple(x) for x in p]


def _path(pts, n=3):
    return _chaikin(pts, n, closed=False)


def _bone(rng, m: np.ndarray, cortex: float = 0.012, rim: float = 0.8, fill: float = 0.55) -> np.ndarray:
    """A bone mask -> density: a cortex about ``cortex`` of the shorter side thick, brighter at
    the edges seen end-on, a trabecular medulla inside, thicker in the middle."""
    h, w = m.shape
    n = min(h, w)
    inner = np.clip((_blur(m, cortex * n) - 0.8) / 0.15, 0, 1) * m
    core = np.clip(_blur(m, 0.02 * n), 0, 1)
    trab = 0.6 * _smooth_noise(rng, h, w, max(2, n // 160)) + 0.4 * _smooth_noise(rng, h, w, max(3, n // 50))
    d = m * fill * (0.55 + 0.45 * core) * (0.8 + 0.4 * trab) + rim * np.clip(m - inner, 0, 1)
    return _blur(d, 0.0012 * n)


def _soft(rng, m: np.ndarray, r: float = 0.04) -> np.ndarray:
    """A body mask -> soft-tissue thickness, rounded at the edges, a little uneven."""
    n = min(m.shape)
    t = m * np.sqrt(np.clip(_blur(m, r * n) * 1.6 - 0.3, 0, 1))
    return t * (0.92 + 0.16 * _smooth_noise(rng, *m.shape, max(6, n // 8)))


def _xray(a: np.ndarray, rng, blur=None, grain=0.018, collimate=0.7, marker=True) -> Image.Image:
    """Densities (air 0, bone about 1) -> a digital radiograph: exposure and contrast varied,
    grain, unsharpness, sometimes collimation edges, a lead side marker."""
    h, w = a.shape
    a = np.asarray(a, np.float64)
    a = a / (np.percentile(a, 99.7) or 1.0)
    a = np.clip(a * rng.uniform(0.85, 1.1) + rng.uniform(-0.02, 0.06), 0, None) ** rng.uniform(0.75, 1.3)
    a = a + rng.normal(0, grain, a.shape) + grain * (_smooth_noise(rng, h, w, 3) - 0.5)
    if rng.random() < collimate:  # the collimated field: outside, unexposed (light) or masked black
        y0, y1 = rng.uniform(0, 0.07) * h, (1 - rng.uniform(0, 0.07)) * h
        x0, x1 = rng.uniform(0, 0.08) * w, (1 - rng.uniform(0, 0.08)) * w
        yy, xx = np.mgrid[0:h, 0:w]
        outside = (yy < y0) | (yy > y1) | (xx < x0) | (xx > x1)
        level = 0.0 if rng.random() < 0.5 else rng.uniform(0.7, 0.9)
        a = np.where(outside, level + rng.normal(0, grain, a.shape) * (level > 0), a)
    im = Image.fromarray((255 * np.clip(a, 0, 1)).astype(np.uint8))
    im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.6, 1.3) if blur is None else blur))
    return _marker(im, rng) if marker else im


def _text(im: Image.Image, xy, s: str, fill, scale: int = 1):
    """Pillow's bitmap font, enlarged ``scale`` times."""
    if scale <= 1:
        ImageDraw.Draw(im).text(xy, s, fill=fill)
        return
    mode = im.mode
    tw = 6 * len(s) + 4
    mask = Image.new("L", (tw, 14), 0)
    ImageDraw.Draw(mask).text((1, 1), s, fill=255)
    mask = mask.resize((tw * scale, 14 * scale), Image.NEAREST)
    im.paste(Image.new(mode, mask.size, fill), (int(xy[0]), int(xy[1])), mask)


# --- radiographs -----------------------------------------------------------------------------

def _wrist_view(rng, h, w, oblique=False) -> np.ndarray:
    P = _Pose(h, w, rng.uniform(1.45, 1.9), cx=0.5 + rng.uniform(-0.05, 0.05), cy=rng.uniform(0.5, 0.62),
              angle=rng.uniform(-12, 12), flip=rng.random() < 0.5)
    sq = 0.8 if oblique else 1.0  # an oblique view is narrower, the bones overlap more

    def S(pts, n=3):
        return P(_chaikin([(u * sq, v) for u, v in pts], n))

    def tissue(d):
        d.polygon(S([(-0.21, 1.4), (-0.2, 0.3), (-0.18, 0.04), (-0.21, -0.12), (-0.24, -0.35), (-0.25, -1.4),
                     (0.23, -1.4), (0.23, -0.3), (0.19, -0.08), (0.165, 0.05), (0.19, 0.3), (0.21, 1.4)]), fill=255)
        d.polygon(S(_tube([(-0.16, -0.1), (-0.27, -0.28), (-0.36, -0.48), (-0.44, -0.66)], [0.15, 0.12, 0.1, 0.09]), 2),
                  fill=255)  # the thumb

    a = 0.3 * _soft(rng, P.mask(tissue))

    def radius(d):
        d.polygon(S([(-0.1, 1.4), (-0.105, 0.3), (-0.125, 0.15), (-0.165, 0.06), (-0.17, 0.0), (-0.155, -0.015),
                     (-0.08, 0.015), (0.012, 0.045), (0.02, 0.1), (-0.005, 0.18), (-0.03, 0.3), (-0.035, 1.4)]),
                  fill=255)

    def ulna(d):
        d.polygon(S([(0.05, 1.4), (0.05, 0.3), (0.035, 0.14), (0.04, 0.07), (0.075, 0.045), (0.105, 0.045),
                     (0.118, 0.022), (0.13, 0.05), (0.12, 0.13), (0.1, 0.3), (0.095, 1.4)]), fill=255)

    def carpals(d):
        for cu, cv, ru, rv, r in [(-0.105, -0.045, 0.06, 0.033, -55), (-0.02, -0.027, 0.042, 0.036, 0),
                                  (0.058, -0.037, 0.033, 0.035, 0), (-0.14, -0.118, 0.04, 0.034, 20),
                                  (-0.077, -0.125, 0.031, 0.03, 0), (-0.012, -0.115, 0.039, 0.055, 0),
                                  (0.058, -0.112, 0.041, 0.048, 10)]:
            d.polygon(S(_ell(cu, cv, ru, rv, r), 0), fill=255)

    def pisiform(d):
        d.polygon(S(_ell(0.075, -0.05, 0.024, 0.024), 0), fill=255)

    def metacarpals(d):
        d.polygon(S(_tube([(-0.165, -0.15), (-0.24, -0.27), (-0.31, -0.4)], [0.055, 0.038, 0.05]), 2), fill=255)
        d.polygon(S(_ell(-0.315, -0.41, 0.03, 0.03), 0), fill=255)
        d.polygon(S(_tube([(-0.33, -0.45), (-0.38, -0.55), (-0.42, -0.64)], [0.04, 0.03, 0.036]), 2), fill=255)
        for j, (u0, u1) in enumerate([(-0.085, -0.13), (-0.02, -0.035), (0.04, 0.05), (0.09, 0.13)]):
            wd = [0.052, 0.032, 0.048] if j < 2 else [0.046, 0.029, 0.042]
            L = 0.52 - 0.04 * j
            d.polygon(S(_tube([(u0, -0.16), ((u0 + u1) / 2, -0.16 - L / 2), (u1, -0.16 - L)], wd), 2), fill=255)
            d.polygon(S(_ell(u1, -0.16 - L, 0.029, 0.03), 0), fill=255)
            d.polygon(S(_tube([(u1 * 1.02, -0.2 - L), (u1 * 1.1, -0.2 - L - 0.15), (u1 * 1.15, -0.2 - L - 0.3)],
                              [0.038, 0.026, 0.032]), 2), fill=255)

    for fn, f, c in [(radius, 1.0, 0.012), (ulna, 0.9, 0.012), (carpals, 0.85, 0.006), (pisiform, 0.6, 0.005),
                     (metacarpals, 0.9, 0.009)]:
        a += f * 0.55 * _bone(rng, P.mask(fn), cortex=c, rim=0.6)
    return a


def _wrist(rng, h, w):
    """A wrist, PA (sometimes with an oblique view beside it on the same image)."""
    if w > 1.1 * h or rng.random() < 0.3:
        w2 = w // 2
        a = np.concatenate([_wrist_view(rng, h, w2), _wrist_view(rng, h, w - w2, oblique=True)], axis=1)
        a[:, w2 - 2:w2 + 2] = 0
    else:
        a = _wrist_view(rng, h, w)
    return _xray(a, rng, collimate=0.5)


def _knee_lateral(rng, h, w):
    """A knee, lateral: femoral condyles, the patella in front, tibia and fibular head, flexed a little."""
    P = _Pose(h, w, rng.uniform(1.0, 1.3), cx=0.5 + rng.uniform(-0.05, 0.05), cy=0.5 + rng.uniform(-0.06, 0.06),
              angle=rng.uniform(-10, 10), flip=rng.random() < 0.5)
    bend = rng.uniform(5, 35)  # flexion: the femur's top and the tibia's foot both go back (u > 0)
    F = lambda pts, n=3: P(_rot(_chaikin(pts, n), bend / 2))  # noqa: E731
    T = lambda pts, n=3: P(_rot(_chaikin(pts, n), -bend / 2))  # noqa: E731

    def tissue(d):
        d.polygon(F([(-0.28, -1.4), (-0.28, -0.4), (-0.3, -0.2), (-0.27, 0.05), (0.1, 0.1), (0.28, -0.05),
                     (0.3, -0.3), (0.34, -1.4)]), fill=255)
        d.polygon(T([(-0.24, -0.05), (-0.2, 0.25), (-0.15, 1.4), (0.2, 1.4), (0.3, 0.5), (0.3, 0.2), (0.27, -0.05)]),
                  fill=255)

    a = 0.3 * _soft(rng, P.mask(tissue), 0.06)
    a -= 0.07 * _blur(P.mask(lambda d: d.polygon(T([(-0.19, 0.0), (-0.1, 0.02), (-0.13, 0.15), (-0.2, 0.16)]),
                                                 fill=255)), 0.01 * min(h, w))  # Hoffa's fat pad
    a -= 0.05 * _blur(P.mask(lambda d: d.polygon(F([(-0.19, -0.3), (-0.11, -0.3), (-0.12, -0.55), (-0.21, -0.55)]),
                                                 fill=255)), 0.01 * min(h, w))  # suprapatellar fat
    cu, cv, r = 0.03, -0.085, 0.135
    arc = [(cu + r * np.cos(t), cv + r * np.sin(t)) for t in np.deg2rad(np.linspace(170, -40, 30))]

    def femur(d):
        d.polygon(F([(-0.1, -1.4), (-0.1, -0.45), (-0.14, -0.28), (-0.16, -0.17), (-0.14, -0.08)] + arc +
                    [(0.14, -0.22), (0.12, -0.32), (0.1, -0.45), (0.1, -1.4)], 2), fill=255)

    def condyle2(d):
        d.line(F([(c[0] + 0.025, c[1] + 0.012) for c in arc[4:26]], 0), fill=255, width=max(1, int(P.L(0.008))))

    def patella(d):
        d.polygon(F([(-0.2, -0.27), (-0.26, -0.2), (-0.285, -0.1), (-0.26, -0.04), (-0.22, -0.05), (-0.18, -0.12),
                     (-0.175, -0.22)]), fill=255)

    def tibia(d):
        d.polygon(T([(-0.15, 0.07), (-0.06, 0.065), (-0.02, 0.035), (0.0, 0.055), (0.025, 0.03), (0.05, 0.06),
                     (0.16, 0.055), (0.17, 0.1), (0.14, 0.2), (0.09, 0.34), (0.08, 1.4), (-0.08, 1.4), (-0.1, 0.42),
                     (-0.165, 0.25), (-0.16, 0.15)], 2), fill=255)

    def fibula(d):
        d.polygon(T(_ell(0.12, 0.2, 0.045, 0.05, 20), 0), fill=255)
        d.polygon(T(_tube([(0.12, 0.22), (0.11, 0.7), (0.1, 1.4)], [0.07, 0.055, 0.06]), 2), fill=255)

    def fabella(d):
        d.polygon(F(_ell(0.2, -0.15, 0.02, 0.025), 0), fill=255)

    parts = [(femur, 1.0, 0.014), (condyle2, 0.25, 0.004), (patella, 0.9, 0.008), (tibia, 1.0, 0.012),
             (fibula, 0.8, 0.008)]
    if rng.random() < 0.3:
        parts.append((fabella, 0.8, 0.004))
    for fn, f, c in parts:
        a += f * 0.55 * _bone(rng, P.mask(fn), cortex=c, rim=0.6)
    return _xray(np.clip(a, 0, None), rng)


def _ankle_lateral(rng, h, w):
    """An ankle, lateral: tibia and fibula, the talar dome, calcaneus, midfoot; heel pad and sole."""
    P = _Pose(h, w, rng.uniform(0.95, 1.25), cx=0.5 + rng.uniform(-0.04, 0.1), cy=0.45 + rng.uniform(-0.05, 0.08),
              angle=rng.uniform(-8, 8), flip=rng.random() < 0.5)
    S = lambda pts, n=3: P(_chaikin(pts, n))  # noqa: E731

    def tissue(d):
        d.polygon(S([(-0.21, -1.5), (-0.2, -0.3), (-0.22, -0.08), (-0.4, 0.0), (-1.4, 0.12), (-1.4, 0.43),
                     (-0.3, 0.44), (0.1, 0.46), (0.3, 0.43), (0.37, 0.32), (0.34, 0.1), (0.26, -0.2), (0.25, -1.5)]),
                  fill=255)

    a = 0.3 * _soft(rng, P.mask(tissue), 0.05)
    a -= 0.06 * _blur(P.mask(lambda d: d.polygon(S([(0.13, -0.5), (0.19, -0.5), (0.25, 0.1), (0.14, 0.1)]),
                                                 fill=255)), 0.008 * min(h, w))  # Kager's fat pad

    def tibia(d):
        d.polygon(S([(-0.11, -1.5), (-0.11, -0.4), (-0.155, -0.12), (-0.15, -0.05), (-0.07, -0.045), (0.0, -0.065),
                     (0.08, -0.05), (0.15, -0.04), (0.15, -0.15), (0.11, -0.4), (0.11, -1.5)], 2), fill=255)

    def fibula(d):
        d.polygon(S(_tube([(0.08, -1.5), (0.08, -0.5), (0.06, -0.1), (0.05, 0.07)], [0.06, 0.055, 0.09, 0.07]), 2),
                  fill=255)

    def talus(d):
        d.polygon(S([(-0.14, 0.02), (-0.12, -0.02), (-0.05, -0.05), (0.03, -0.045), (0.11, -0.015), (0.15, 0.05),
                     (0.12, 0.12), (0.02, 0.17), (-0.1, 0.16), (-0.2, 0.14), (-0.28, 0.12), (-0.28, 0.05),
                     (-0.22, 0.03)]), fill=255)

    def calcaneus(d):
        d.polygon(S([(0.0, 0.17), (0.12, 0.13), (0.24, 0.14), (0.31, 0.2), (0.32, 0.3), (0.26, 0.36), (0.1, 0.35),
                     (-0.1, 0.33), (-0.2, 0.3), (-0.25, 0.24), (-0.16, 0.2), (-0.08, 0.21)]), fill=255)

    def midfoot(d):
        d.polygon(S(_ell(-0.32, 0.1, 0.045, 0.07, 15), 0), fill=255)  # navicular
        d.polygon(S([(-0.25, 0.21), (-0.36, 0.2), (-0.38, 0.3), (-0.26, 0.31)]), fill=255)  # cuboid
        d.polygon(S([(-0.36, 0.05), (-0.46, 0.06), (-0.46, 0.19), (-0.36, 0.19)]), fill=255)  # cuneiforms
        for j in range(4):
            v0 = 0.12 + 0.04 * j
            d.polygon(S(_tube([(-0.44, v0), (-0.9, v0 + 0.09 + 0.015 * j), (-1.4, v0 + 0.2 + 0.02 * j)],
                              [0.06, 0.035, 0.045]), 2), fill=255)

    for fn, f, c in [(tibia, 1.0, 0.016), (fibula, 0.5, 0.01), (talus, 1.0, 0.008), (calcaneus, 0.95, 0.008),
                     (midfoot, 0.8, 0.006)]:
        a += f * 0.55 * _bone(rng, P.mask(fn), cortex=c, rim=0.6)
    return _xray(np.clip(a, 0, None), rng)


def _hip_lateral(rng, h, w):
    """One hip, frog-leg lateral: femoral head in the acetabulum, the neck, both trochanters, the
    shaft going out and down, the ilium above, ischium and pubis around the obturator foramen."""
    P = _Pose(h, w, rng.uniform(0.85, 1.15), cx=0.42 + rng.uniform(-0.06, 0.06), cy=0.42 + rng.uniform(-0.06, 0.06),
              angle=rng.uniform(-10, 10), flip=rng.random() < 0.5)
    S = lambda pts, n=3: P(_chaikin(pts, n))  # noqa: E731
    n = min(h, w)
    a = 0.3 + 0.03 * _smooth_noise(rng, h, w, max(8, n // 5))
    ang = rng.uniform(20, 45)  # the femoral shaft below the horizontal
    dv = np.array([np.cos(np.deg2rad(ang)), np.sin(np.deg2rad(ang))])
    up = np.array([dv[1], -dv[0]])
    a += 0.06 * _blur(P.mask(lambda d: d.polygon(S(_tube([(-0.2, 0.1), (0.3, 0.15)]
                                                         + [tuple(np.array([0.3, 0.15]) + t * dv)
                                                                                   for t in (0.8, 2.0)], 0.7)),
                                                  fill=255)), 0.03 * n)  # the thigh
    gas = (_smooth_noise(rng, h, w, max(6, n // 14)) > 0.7) * P.mask(lambda d: d.polygon(S([(-1.2, -1.5), (0.3, -1.5),
                                                                                           (0.2, -0.3), (-1.2, -0.1)]),
                                                                                         fill=255))
    a -= 0.1 * _blur(gas, 0.006 * n)

    def ilium(d):
        d.polygon(S([(0.04, 0.13), (0.1, 0.08), (0.15, -0.08), (0.2, -0.15), (0.3, -0.4), (0.42, -0.9), (0.2, -1.05),
                     (-0.2, -1.05), (-0.45, -0.75), (-0.45, -0.35), (-0.35, 0.02), (-0.15, 0.12)]), fill=255)

    def ring(d):
        d.polygon(S([(-0.12, 0.1), (0.06, 0.12), (0.08, 0.3), (0.0, 0.46), (-0.14, 0.45), (-0.3, 0.36),
                     (-0.55, 0.3), (-0.6, 0.18), (-0.45, 0.12)]), fill=255)

    def foramen(d):
        d.polygon(P(_ell(-0.22, 0.25, 0.14, 0.085, 15)), fill=255)

    def sourcil(d):
        d.line(P([(0.13 * np.cos(t), 0.13 * np.sin(t)) for t in np.deg2rad(np.linspace(195, 345, 20))]),
               fill=255, width=max(2, int(P.L(0.02))))

    def femur(d):
        s0 = np.array([0.3, 0.1])
        top = [(0.0, -0.06), (0.12, -0.045), (0.2, -0.05), (0.28, -0.06), tuple(s0 + 0.08 * up),
               tuple(s0 + 0.075 * up + 0.3 * dv), tuple(s0 + 0.075 * up + 1.8 * dv)]
        low = [tuple(s0 - 0.075 * up + 1.8 * dv), tuple(s0 - 0.075 * up + 0.25 * dv), tuple(s0 - 0.13 * up + 0.1 * dv),
               tuple(s0 - 0.1 * up + 0.0 * dv), (0.16, 0.1), (0.08, 0.06), (0.0, 0.06)]
        d.polygon(S(top + low, 2), fill=255)
        d.polygon(P(_ell(0.0, 0.0, 0.115, 0.115)), fill=255)

    def trochanter(d):  # the greater trochanter, seen through the neck
        c = np.array([0.25, 0.0])
        d.polygon(S(_ell(*c, 0.08, 0.06, ang - 20), 1), fill=255)

    def rims(d):  # the acetabular rims crossing the head, the teardrop
        for r0, a0, a1 in ((0.125, 150, 330), (0.12, 200, 390)):
            d.line(P([(r0 * np.cos(t) + 0.01, r0 * np.sin(t) * 0.95) for t in np.deg2rad(np.linspace(a0, a1, 24))]),
                   fill=255, width=max(2, int(P.L(0.012))))
        d.line(S([(-0.16, -0.05), (-0.19, 0.06), (-0.15, 0.1)], 0), fill=255, width=max(2, int(P.L(0.015))))

    a += 0.45 * _bone(rng, P.mask(ilium), cortex=0.01, rim=0.5, fill=0.45)
    a += 0.5 * _bone(rng, np.clip(P.mask(ring) - P.mask(foramen), 0, 1), cortex=0.008, rim=0.6, fill=0.45)
    a += 0.2 * _blur(P.mask(sourcil), 0.003 * n)
    a += 0.6 * _bone(rng, P.mask(femur), cortex=0.014, rim=0.7)
    a += 0.2 * _bone(rng, P.mask(trochanter), cortex=0.006, rim=0.5)
    a += 0.12 * _blur(P.mask(rims), 0.003 * n)
    return _xray(np.clip(a, 0, None), rng, collimate=0.8)


def _skull_frontal(rng, h, w):
    """A skull, PA: the vault, orbits with the petrous ridges across them, the nasal cavity and
    maxillary sinuses, teeth, the mandible, the upper cervical spine below."""
    P = _Pose(h, w, rng.uniform(0.78, 0.95), cx=0.5 + rng.uniform(-0.04, 0.04), cy=0.47 + rng.uniform(-0.04, 0.04),
              angle=rng.uniform(-6, 6))
    S = lambda pts, n=3: P(_chaikin(pts, n))  # noqa: E731
    n = min(h, w)
    dv = rng.uniform(-0.04, 0.04)  # head tilt: the petrous ridges move up or down in the orbits

    def tissue(d):
        d.polygon(P(_ell(0.0, -0.07, 0.445, 0.52)), fill=255)
        d.polygon(S([(-0.38, 0.05), (-0.34, 0.4), (-0.22, 0.6), (-0.24, 0.8), (-0.5, 1.3), (0.5, 1.3), (0.24, 0.8),
                     (0.22, 0.6), (0.34, 0.4), (0.38, 0.05)]), fill=255)

    a = 0.26 * _soft(rng, P.mask(tissue), 0.03)
    v, vi = P.mask(lambda d: d.polygon(P(_ell(0.0, -0.08, 0.415, 0.49)), fill=255)), \
        P.mask(lambda d: d.polygon(P(_ell(0.0, -0.07, 0.385, 0.455)), fill=255))
    a += 0.6 * _bone(rng, np.clip(v - vi, 0, 1), cortex=0.003, rim=0.4, fill=0.9)
    a += 0.28 * vi * (0.85 + 0.3 * _smooth_noise(rng, h, w, max(4, n // 40)))  # both tables over the brain

    def face(d):
        d.polygon(S([(-0.36, 0.02), (0.36, 0.02), (0.32, 0.3), (0.2, 0.4), (-0.2, 0.4), (-0.32, 0.3)]), fill=255)
        for s in (-1, 1):
            d.polygon(P(_ell(s * 0.37, 0.16, 0.04, 0.07)), fill=128)  # mastoids

    a += 0.2 * _blur(P.mask(face), 0.02 * n)

    def orbits(d):
        for s in (-1, 1):
            d.polygon(P(_rot(_sell(s * 0.14, 0.09, 0.09, 0.085), -s * 8, (s * 0.14, 0.09))), fill=255)

    o = P.mask(orbits)
    a -= 0.12 * _blur(o, 0.004 * n)
    a += 0.12 * _blur(np.clip(_blur(o, 0.008 * n) - o, 0, 1), 0.002 * n) * 3  # the orbital margins

    def petrous(d):
        for s in (-1, 1):
            d.polygon(S(_tube([(s * 0.08, 0.17 + dv), (s * 0.2, 0.12 + dv), (s * 0.36, 0.1 + dv)],
                              [0.025, 0.045, 0.05]), 2), fill=255)

    a += 0.3 * _blur(P.mask(petrous), 0.006 * n)

    def air(d):
        d.polygon(P(_ell(0.0, 0.27, 0.055, 0.1)), fill=255)  # nasal cavity
        for s in (-1, 1):
            d.polygon(S([(s * 0.06, 0.2), (s * 0.21, 0.2), (s * 0.19, 0.33), (s * 0.07, 0.35)]), fill=255)  # maxillary
        if rng.random() < 0.8:
            for cu in (-0.05, 0.0, 0.05):
                d.polygon(P(_ell(cu, -0.05, 0.03, 0.045)), fill=255)  # frontal sinus

    a -= 0.13 * _blur(P.mask(air), 0.01 * n)
    a += 0.12 * _blur(P.mask(lambda d: d.line(P([(0.0, 0.17), (0.0, 0.36)]), fill=255, width=max(1, int(P.L(0.01))))),
                      0.002 * n)

    def mandible(d):
        d.polygon(S(_tube([(-0.33, 0.05), (-0.33, 0.36), (-0.22, 0.5), (0.0, 0.56), (0.22, 0.5), (0.33, 0.36),
                           (0.33, 0.05)], [0.04, 0.05, 0.06, 0.07, 0.06, 0.05, 0.04]), 1), fill=255)

    a += 0.5 * _bone(rng, P.mask(mandible), cortex=0.008, rim=0.6)

    def teeth(d):
        for v0, sgn in ((0.36, -1), (0.44, 1)):
            for j in range(14):
                u = -0.23 + j * 0.46 / 13
                vv = v0 + 0.14 * u * u
                d.polygon(S([(u - 0.015, vv), (u + 0.015, vv), (u + 0.01, vv + sgn * 0.06),
                             (u - 0.01, vv + sgn * 0.06)],
                            2), fill=255)

    a += 0.22 * _blur(P.mask(teeth), 0.003 * n)
    if rng.random() < 0.5:  # fillings
        a += 0.6 * P.mask(lambda d: [d.polygon(P(_ell(u, 0.4 + 0.14 * u * u, 0.012, 0.01)), fill=255)
                                      for u in rng.choice(np.linspace(-0.2, 0.2, 14), int(rng.integers(1, 4)))])
    a += 0.2 * _bone(rng, P.mask(lambda d: [d.polygon(S([(-0.05, 0.52 + 0.1 * i), (0.05, 0.52 + 0.1 * i),
                                                          (0.05, 0.6 + 0.1 * i), (-0.05, 0.6 + 0.1 * i)], 2), fill=255)
                                             for i in range(6)]), cortex=0.004)
    a += 0.1 * _blur(P.mask(lambda d: d.line(S([(-0.32, -0.2), (-0.12, -0.43), (0.0, -0.5), (0.12, -0.43),
                                                 (0.32, -0.2)], 0), fill=255, width=max(1, int(P.L(0.004))))),
                     0.002 * n)  # the coronal suture
    return _xray(np.clip(a, 0, None), rng)


def _lumbar(d, P, v0, dv, width, S):
    """Five lumbar vertebrae from ``v0`` down, ``dv`` apart (AP view): bodies, transverse processes,
    pedicles (drawn at 128, for the caller to pick out) and spinous processes."""
    for i in range(5):
        v = v0 + i * dv
        wd = width * (1 + 0.04 * i)
        d.polygon(S([(-wd / 2, v), (0, v + 0.03 * dv), (wd / 2, v), (wd / 2 * 1.05, v + 0.76 * dv),
                     (0, v + 0.73 * dv), (-wd / 2 * 1.05, v + 0.76 * dv)], 1), fill=255)
        tp = (0.55 + 0.35 * (i == 2) + 0.15 * (i == 1)) * width
        for s in (-1, 1):  # transverse processes
            d.polygon(S(_tube([(s * wd * 0.4, v + 0.3 * dv), (s * (wd / 2 + tp), v + 0.3 * dv + 0.05 * dv)],
                              [0.3 * dv, 0.2 * dv]), 1), fill=255)
        d.polygon(S([(0, v + 0.15 * dv), (0.06 * width, v + 0.45 * dv), (0, v + 0.95 * dv),
                     (-0.06 * width, v + 0.45 * dv)], 2), fill=255)  # the spinous process, end-on


def _pedicles(d, P, v0, dv, width):
    for i in range(5):
        for s in (-1, 1):
            d.polygon(P(_ell(s * 0.33 * width, v0 + i * dv + 0.25 * dv, 0.08 * width, 0.14 * dv)), outline=255,
                      width=max(2, int(P.L(0.09 * width))))


def _urogram(rng, h, w):
    """An abdominal film of an intravenous urogram: contrast in the kidneys' collecting systems,
    the ureters and the bladder (sometimes a plain KUB film before contrast), over the lumbar
    spine and pelvis, with bowel gas."""
    P = _Pose(h, w, rng.uniform(0.85, 1.05) * (1.0 if h >= w else 0.85), cx=0.5 + rng.uniform(-0.03, 0.03),
              cy=0.46 + rng.uniform(-0.04, 0.04), angle=rng.uniform(-3, 3))
    S = lambda pts, k=3: P(_chaikin(pts, k))  # noqa: E731
    Q = lambda pts, k=3: P(_path(pts, k))  # noqa: E731
    n = min(h, w)
    contrast = rng.random() < 0.85
    phase = rng.uniform(0, 1)  # early: dense nephrograms; late: more in the bladder
    body = P.mask(lambda d: d.polygon(S([(-0.5, -1.2), (-0.52, -0.3), (-0.5, 0.3), (-0.46, 1.2), (0.46, 1.2),
                                         (0.5, 0.3), (0.52, -0.3), (0.5, -1.2)]), fill=255))
    a = 0.32 * _soft(rng, body, 0.08)
    a += 0.05 * _blur(P.mask(lambda d: d.polygon(S([(-0.52, -1.0), (0.05, -1.0), (0.0, -0.55), (-0.2, -0.3),
                                                    (-0.5, -0.2)]), fill=255)), 0.05 * n)  # the liver
    gas = _smooth_noise(rng, h, w, max(5, n // 22))
    colon = P.mask(lambda d: d.line(Q([(-0.36, 0.3), (-0.38, -0.1), (-0.3, -0.35), (0.0, -0.28), (0.3, -0.4),
                                       (0.38, -0.1), (0.36, 0.35), (0.15, 0.45)], 2), fill=255, width=int(P.L(0.12)),
                                    joint="curve"))
    g = (gas > rng.uniform(0.55, 0.7)) * (0.4 + 0.6 * colon) * body
    g += 0.8 * P.mask(lambda d: d.polygon(P(_ell(0.28, -0.6, 0.1, 0.06)), fill=255)) * (rng.random() < 0.7)
    a -= 0.11 * _blur(np.clip(g, 0, 1), 0.006 * n)
    a -= 0.03 * _blur(P.mask(lambda d: [d.line(Q([(s * 0.06, -0.35), (s * 0.15, 0.2), (s * 0.2, 0.35)], 1), fill=255,
                                               width=max(1, int(P.L(0.012)))) for s in (-1, 1)]), 0.004 * n)  # psoas
    v0, dv, wd = -0.45, 0.14, 0.15

    def spine(d):
        _lumbar(d, P, v0, dv, wd, S)
        d.polygon(S([(-0.12, v0 + 5 * dv), (0.12, v0 + 5 * dv), (0.05, v0 + 5 * dv + 0.26),
                     (-0.05, v0 + 5 * dv + 0.26)], 2), fill=255)  # sacrum

    def ilia(d):
        for s in (-1, 1):
            d.polygon(S([(s * 0.1, v0 + 5 * dv + 0.02), (s * 0.16, 0.08), (s * 0.3, 0.02), (s * 0.43, 0.07),
                         (s * 0.45, 0.2), (s * 0.38, 0.42), (s * 0.3, 0.56), (s * 0.2, 0.58), (s * 0.12, 0.42)], 2),
                      fill=255)

    def pelvis(d):
        for s in (-1, 1):
            d.polygon(S(_tube([(s * 0.24, 0.6), (s * 0.14, 0.74), (s * 0.03, 0.76)], 0.05), 1), fill=255)  # pubic rami
            d.polygon(S(_tube([(s * 0.22, 0.58), (s * 0.2, 0.74), (s * 0.14, 0.78)], 0.06), 1), fill=255)  # ischia
            d.polygon(P(_ell(s * 0.33, 0.66, 0.075, 0.075)), fill=255)  # femoral heads
            d.polygon(S(_tube([(s * 0.33, 0.66), (s * 0.42, 0.76), (s * 0.44, 1.3)], [0.08, 0.1, 0.14]), 1), fill=255)
            for j in range(3):  # the lowest ribs
                v = -0.95 + 0.13 * j
                d.line(Q([(s * 0.08, v), (s * 0.25, v + 0.04), (s * 0.4, v + 0.14), (s * 0.5, v + 0.3)], 2), fill=255,
                       width=max(2, int(P.L(0.028))), joint="curve")

    a += 0.5 * _bone(rng, P.mask(spine), cortex=0.006, rim=0.5)
    a += 0.15 * _blur(P.mask(lambda d: _pedicles(d, P, v0, dv, wd)), 0.002 * n)
    a += 0.5 * _bone(rng, P.mask(ilia), cortex=0.008, rim=0.35, fill=0.3)
    a += 0.12 * _blur(P.mask(lambda d: d.line(Q([(-0.12, 0.42), (-0.22, 0.3), (-0.1, 0.22), (0.1, 0.22), (0.22, 0.3),
                                                 (0.12, 0.42)], 2), fill=255, width=max(2, int(P.L(0.012))),
                                              joint="curve")), 0.003 * n)  # the pelvic brim
    a += 0.45 * _bone(rng, P.mask(pelvis), cortex=0.008, rim=0.5)
    a -= 0.1 * _blur(P.mask(lambda d: [d.polygon(P(_ell(s * 0.045, 0.33 + 0.05 * j, 0.012, 0.01)), fill=255)
                                       for s in (-1, 1) for j in range(4)]), 0.003 * n)  # sacral foramina
    drop = rng.uniform(0.03, 0.07)  # the right kidney a little lower than the left
    kid = {s: (s * 0.22, -0.27 + (drop if s < 0 else 0.0)) for s in (-1, 1)}
    kidneys = P.mask(lambda d: [d.polygon(P(_ell(*kid[s], 0.075, 0.14, -s * 14)), fill=255) for s in (-1, 1)])
    a += (0.05 + (0.12 * (1 - phase) if contrast else 0.0)) * _blur(kidneys, 0.004 * n)
    if contrast:
        def calyces(s):
            """(major stem end, [minor calyx tips]) for the upper, middle and lower groups."""
            cu, cv = kid[s]
            out = []
            for t, k in ((-0.085, 2), (0.0, 1 + int(rng.random() < 0.5)), (0.085, 2)):
                stem = (cu - s * 0.005, cv + t * 0.8)
                tips = [(cu + s * (0.04 - 0.15 * abs(t)), cv + t + dt) for dt in np.linspace(-0.022, 0.022, k)]
                out.append((_rot([stem], -s * 14, kid[s])[0], _rot(tips, -s * 14, kid[s])))
            return out

        def collecting(d):
            for s in (-1, 1):
                cu, cv = kid[s]
                pel = (cu - s * 0.065, cv + 0.035)
                d.polygon(S([(pel[0] + s * 0.045, pel[1] - 0.04), (pel[0] + s * 0.045, pel[1] + 0.045),
                             (pel[0] - s * 0.03, pel[1] + 0.045), (pel[0] - s * 0.02, pel[1] + 0.02)], 2), fill=255)
                for stem, tips in calyces(s):
                    d.line(Q([(pel[0] + s * 0.03, pel[1]), stem], 1), fill=255, width=max(2, int(P.L(0.018))),
                           joint="curve")
                    for tip in tips:
                        d.line([*P([stem]), *P([tip])], fill=255, width=max(2, int(P.L(0.011))))
                        d.polygon(P(_ell(tip[0] + s * 0.006, tip[1], 0.012, 0.013)), fill=255)

        def cups(d):
            for s in (-1, 1):
                for _stem, tips in calyces(s):
                    for tip in tips:
                        d.polygon(P(_ell(tip[0] + s * 0.017, tip[1], 0.008, 0.009)), fill=255)

        def ureters(d):
            for s in (-1, 1):
                cu, cv = kid[s]
                pts = Q([(cu - s * 0.085, cv + 0.08), (s * 0.08, 0.05), (s * 0.075, 0.3), (s * 0.16, 0.48),
                         (s * 0.06, 0.58)], 3)
                keep = rng.uniform(0.5, 1.0)
                for j in range(0, len(pts) - 1, 4):
                    if rng.random() < keep:
                        d.line(pts[j:j + 5], fill=255, width=max(2, int(P.L(0.01))), joint="curve")

        cs = np.clip(P.mask(collecting) - P.mask(cups), 0, 1)
        a += rng.uniform(0.5, 0.8) * _blur(cs, 0.002 * n)
        a += rng.uniform(0.3, 0.6) * _blur(P.mask(ureters), 0.002 * n)
        bl = P.mask(lambda d: d.polygon(S(_ell(0.0, 0.56, 0.13 + 0.05 * phase, 0.07 + 0.03 * phase)), fill=255))
        a += (0.15 + 0.4 * phase) * _blur(bl, 0.004 * n)
    elif rng.random() < 0.5:  # a stone
        st = (float(rng.choice([-1, 1])) * rng.uniform(0.12, 0.2), rng.uniform(-0.3, 0.4))
        a += 0.4 * _blur(P.mask(lambda d: d.polygon(P(_ell(*st, 0.012, 0.016, 30)), fill=255)), 0.002 * n)
    im = _xray(np.clip(a, 0, None), rng, collimate=0.6)
    if rng.random() < 0.6:
        _text(im, (int(0.06 * w), int(0.9 * h)), str(rng.choice(["5 MIN", "10 MIN", "15 MIN", "20 MIN", "POST MIC"]))
              if contrast else "KUB", 230, scale=max(1, n // 300))
    return im


def _fluoro(rng, h, w):
    """An intra-operative C-arm fluoroscopy frame: the round field of the image intensifier, a hip
    with a nail or screws, or a lumbar spine with pedicle screws, often an instrument in the field;
    noisy, edge-enhanced, with the usual overlays."""
    n = min(h, w)
    P = _Pose(h, w, rng.uniform(0.9, 1.3), cx=0.5 + rng.uniform(-0.05, 0.05), cy=0.5 + rng.uniform(-0.05, 0.05),
              angle=rng.uniform(-25, 25), flip=rng.random() < 0.5)
    S = lambda pts, k=3: P(_chaikin(pts, k))  # noqa: E731
    a = 0.3 * _soft(rng, P.mask(lambda d: d.polygon(S([(-0.8, -1.5), (0.6, -1.5), (0.55, 1.5), (-0.8, 1.5)]),
                                                    fill=255)), 0.06)
    metal = np.zeros((h, w))
    scene = int(rng.integers(0, 2))
    if scene == 0:  # the proximal femur, AP, with a cephalomedullary nail or a sliding hip screw
        P = _Pose(h, w, rng.uniform(0.7, 1.0), cx=0.5 + rng.uniform(-0.05, 0.05), cy=0.55 + rng.uniform(-0.05, 0.05),
                  angle=rng.uniform(-15, 15), flip=P.flip)

        def femur(d):
            d.polygon(P(_ell(-0.25, -0.3, 0.12, 0.12)), fill=255)
            d.polygon(S([(-0.2, -0.4), (0.0, -0.3), (0.1, -0.38), (0.17, -0.25), (0.14, 0.0), (0.12, 1.5),
                         (-0.08, 1.5), (-0.07, 0.0), (-0.1, -0.15), (-0.3, -0.2)], 2), fill=255)

        def acetab(d):
            d.polygon(S([(-0.8, -0.6), (-0.3, -0.48), (-0.12, -0.45), (-0.1, -1.2), (-0.8, -1.2)]), fill=255)

        a += 0.4 * _bone(rng, P.mask(acetab), cortex=0.01, rim=0.4, fill=0.45)
        a += 0.6 * _bone(rng, P.mask(femur), cortex=0.014, rim=0.6)

        def implant(d):
            if rng.random() < 0.5:  # a nail down the shaft, a lag screw up the neck
                d.polygon(S(_tube([(0.08, -0.45), (0.05, 0.1), (0.02, 1.5)], [0.06, 0.045, 0.04]), 1), fill=255)
                d.polygon(P(_tube([(0.12, -0.02), (-0.27, -0.3)], 0.045)), fill=255)
            else:  # a side plate with a barrel and a lag screw, cortical screws
                d.polygon(P(_tube([(0.16, -0.02), (0.155, 0.9)], 0.035)), fill=255)
                d.polygon(P(_tube([(0.17, 0.0), (-0.27, -0.3)], 0.04)), fill=255)
                for j in range(4):
                    v = 0.2 + 0.17 * j
                    d.polygon(P(_tube([(0.2, v), (-0.09, v - 0.03)], 0.02)), fill=255)
            for j in range(int(rng.integers(0, 3))):  # guide wires
                d.line(P([(0.25 + 0.05 * j, 0.05 * j), (-0.3, -0.3 - 0.06 * j)]), fill=255,
                       width=max(1, int(P.L(0.006))))

        metal += P.mask(implant)
    else:  # a lumbar spine, AP, with pedicle screws and rods
        v0, dv, wd = -0.55, 0.24, 0.24
        a += 0.45 * _bone(rng, P.mask(lambda d: _lumbar(d, P, v0, dv, wd, S)), cortex=0.008, rim=0.5)
        a += 0.2 * _blur(P.mask(lambda d: _pedicles(d, P, v0, dv, wd)), 0.002 * n)
        first = int(rng.integers(0, 3))
        levels = list(range(first, first + int(rng.integers(2, 4))))

        def implant(d):
            for i in levels:
                for s in (-1, 1):
                    head = (s * 0.17, v0 + dv * (i + 0.25))
                    d.polygon(P(_tube([head, (s * 0.03, v0 + dv * (i + 0.3))], [0.04, 0.02])), fill=255)
                    d.polygon(P(_ell(*head, 0.035, 0.03)), fill=255)
            for s in (-1, 1):
                d.line(P([(s * 0.17, v0 + dv * (levels[0] + 0.1)), (s * 0.175, v0 + dv * (levels[-1] + 0.4))]),
                       fill=255, width=max(2, int(P.L(0.025))))

        metal += P.mask(implant)
    if rng.random() < 0.6:  # an instrument: a clamp or forceps coming in from the edge
        base = np.array([rng.uniform(-0.3, 0.3), 1.6])
        tip = np.array([rng.uniform(-0.3, 0.3), rng.uniform(-0.4, 0.3)])

        def tool(d):
            for s in (-1, 1):
                mid = (base + tip) / 2 + np.array([s * 0.04, 0.0])
                d.polygon(P(_tube([tuple(base + [s * 0.1, 0]), tuple(mid), tuple(tip + [s * 0.01, 0])],
                                  [0.05, 0.035, 0.02])),
                          fill=255)
            d.polygon(P(_ell(*((base + tip) / 2 + [0.0, 0.15]), 0.03, 0.03)), fill=255)

        metal += P.mask(tool)
    a = a / np.percentile(a, 99.5) + 1.2 * np.clip(metal, 0, 1)
    a = a + 0.8 * (a - _blur(a, 0.006 * n))  # edge enhancement
    a = np.clip(a, 0, None) + rng.normal(0, rng.uniform(0.05, 0.09), a.shape)
    a = _blur(a, 0.0015 * n)
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot((yy - h / 2) / (n / 2), (xx - w / 2) / (n / 2))
    if rng.random() < 0.6:  # dense dark, as most C-arms show it
        a = 1 - a * rng.uniform(0.7, 0.9)
    a = a * (1 - 0.25 * r ** 2)
    a = np.clip(a * rng.uniform(0.85, 1.05) + rng.uniform(-0.05, 0.05), 0, 1)
    field = (r < rng.uniform(0.9, 0.98) if rng.random() < 0.75
             else (np.abs(xx - w / 2) < 0.46 * n) & (np.abs(yy - h / 2) < 0.46 * n))  # round, or a square panel
    a = np.where(field, a, 0.0)
    im = Image.fromarray((255 * a).astype(np.uint8))
    d = ImageDraw.Draw(im)
    d.text((6, 5), str(rng.choice(["FLUORO", "PULSE 8 p/s", "DIGITAL SPOT", "HLC"])), fill=220)
    d.text((6, 18), f"{int(rng.integers(55, 90))} kV  {rng.uniform(0.5, 4):.1f} mA", fill=220)
    d.text((w - 70, 5), f"00:{int(rng.integers(0, 5)):02d}:{int(rng.integers(0, 60)):02d}", fill=220)
    d.text((w - 60, h - 16), f"IMG {int(rng.integers(1, 60))}", fill=220)
    if rng.random() < 0.6:
        _text(im, (int(0.12 * w), int(0.12 * h)), str(rng.choice(["L", "R"])), 220, scale=max(2, n // 200))
    return im


# --- other medical images ------------------------------------------------------------------

def _head_hu(rng, N, level, atrophy):
    """An axial CT slice of the head in Hounsfield units, N x N; ``level`` 0 (posterior fossa and
    orbits), 1 (basal ganglia and ventricles), 2 (above the ventricles)."""
    y, x = (np.mgrid[0:N, 0:N] + 0.5) / N * 2 - 1
    sc = rng.uniform(0.85, 1.0)
    cx, cy = rng.uniform(-0.04, 0.04), rng.uniform(-0.06, 0.02)
    t = np.deg2rad(rng.uniform(-8, 8))
    X = (np.cos(t) * (x - cx) + np.sin(t) * (y - cy)) / sc
    Y = (-np.sin(t) * (x - cx) + np.cos(t) * (y - cy)) / sc
    rx, ry = (0.66, 0.82) if level < 2 else (0.62, 0.76)
    if level == 0:
        rx, ry = 0.6, 0.8
    rho = np.hypot(X / rx, Y / ry)
    ang = np.arctan2(Y, X)
    thick = 0.055 + 0.012 * np.sin(3 * ang + rng.uniform(0, 6)) + 0.01 * (Y > 0.4)
    hu = np.full((N, N), -1000.0)
    hu = np.where(rho < 1.0, 40.0, hu)  # scalp
    hu = np.where((rho < 0.985) & (rho > 0.97), -90.0, hu)  # a little fat under the skin
    skull_in = 0.955 - thick
    brain = rho < skull_in
    hu = np.where((rho < 0.955) & ~brain, 1400.0, hu)
    diploe = (rho < 0.955 - 0.3 * thick) & (rho > skull_in + 0.3 * thick)
    hu = np.where(diploe, 550 + 200 * _smooth_noise(rng, N, N, 3), hu)
    wm = 28 + 3 * _smooth_noise(rng, N, N, max(4, N // 30))
    gyri = _smooth_noise(rng, N, N, max(4, N // 28))
    cortex = brain & (rho > skull_in - 0.08)
    hu = np.where(brain, wm, hu)
    hu = np.where(cortex | (brain & (np.abs(gyri - 0.5) < 0.06) & (rho > skull_in - 0.2)), 38.0, hu)
    sulci = brain & (np.abs(gyri - 0.5) < 0.012 + 0.012 * atrophy) & (rho > skull_in - 0.2)
    hu = np.where(sulci | (brain & (rho > skull_in - 0.01 - 0.015 * atrophy)), 6.0, hu)
    fissure = brain & (np.abs(X) < 0.006 + 0.004 * atrophy) & (np.abs(Y) > 0.15 - 0.1 * (level == 2))
    hu = np.where(fissure, 8.0, hu)  # the interhemispheric fissure
    hu = np.where(brain & (np.abs(X) < 0.004) & (np.abs(Y) > 0.2), 65.0, hu)  # the falx
    vs = 0.8 + 0.6 * atrophy
    if level == 1:
        def e(cu, cv, ru, rv, r=0.0):
            c, s_ = np.cos(np.deg2rad(r)), np.sin(np.deg2rad(r))
            u, v = c * (X - cu) + s_ * (Y - cv), -s_ * (X - cu) + c * (Y - cv)
            return (u / ru) ** 2 + (v / rv) ** 2 < 1

        for s_ in (-1, 1):
            hu = np.where(e(s_ * 0.17, 0.02, 0.09, 0.16, s_ * 10), 36.0, hu)  # lentiform nuclei
            hu = np.where(e(s_ * 0.1, 0.12, 0.07, 0.08), 37.0, hu)  # thalami
            sylvian = e(s_ * 0.36, -0.05, 0.012 + 0.015 * atrophy, 0.1, s_ * 30) & brain
            hu = np.where(sylvian, 7.0, hu)
            hu = np.where(e(s_ * 0.055 * vs, -0.22, 0.045 * vs, 0.13 * vs, -s_ * 20), 4.0, hu)  # frontal horns
            hu = np.where(e(s_ * 0.13 * vs, 0.32, 0.05 * vs, 0.1 * vs, s_ * 25), 4.0, hu)  # trigones
            hu = np.where(e(s_ * 0.14 * vs, 0.33, 0.02, 0.02), 120.0, hu)  # choroid plexus calcification
        hu = np.where(e(0.0, 0.06, 0.008 * vs, 0.07), 5.0, hu)  # third ventricle
        hu = np.where(e(0.0, 0.2, 0.015, 0.015), 200.0, hu)  # the pineal
    elif level == 2:
        for s_ in (-1, 1):
            roof = np.hypot((X - s_ * 0.09 * vs) / (0.03 * vs), Y / (0.2 * vs)) < 1  # the ventricles' roofs
            hu = np.where(roof & (atrophy > 0.4), 5.0, hu)
    else:
        orb = np.zeros((N, N), bool)
        for s_ in (-1, 1):
            g = np.hypot((X - s_ * 0.23) / 0.1, (Y + 0.5) / 0.1)
            orb |= g < 1.35
            hu = np.where((g < 1.5) & (g > 1.3) & (Y > -0.53), 1100.0, hu)  # orbital walls
            hu = np.where(g < 1.3, -80.0, hu)  # orbital fat
            hu = np.where(g < 1.0, 12.0, hu)  # the globes
            hu = np.where(np.hypot((X - s_ * 0.23) / 0.04, (Y + 0.585) / 0.014) < 1, 110.0, hu)  # lenses
            hu = np.where(np.hypot((X - s_ * 0.3) / 0.13, (Y + 0.18) / 0.16) < 1, 37.0, hu)  # temporal lobes
            pet = np.abs((Y - 0.05) - 0.6 * (s_ * X - 0.25)) < 0.022
            hu = np.where(pet & (s_ * X > 0.12) & (s_ * X < 0.5) & brain, 1300.0, hu)  # petrous bones
            hu = np.where((np.hypot((X - s_ * 0.44) / 0.07, (Y - 0.22) / 0.09) < 1)
                          & (_smooth_noise(rng, N, N, 3) > 0.55), -900.0, hu)  # mastoid air cells
        hu = np.where((np.abs(X) < 0.08) & (Y > -0.62) & (Y < -0.25) & ~orb & (_smooth_noise(rng, N, N, 4) > 0.3),
                      -950.0, hu)  # ethmoid / sphenoid air cells
        cb = (np.hypot(X / 0.5, (Y - 0.45) / 0.35) < 1) & brain & (Y > 0.12 + 0.6 * np.abs(X) - 0.2)
        hu = np.where(cb, 34.0 + 5 * _smooth_noise(rng, N, N, max(3, N // 60)), hu)  # cerebellum
        hu = np.where(np.hypot(X / 0.13, (Y - 0.12) / 0.11) < 1, 32.0, hu)  # the pons
        hu = np.where(np.hypot(X / 0.05, (Y - 0.3) / 0.03) < 1, 5.0, hu)  # fourth ventricle
    holder = (np.abs(rho - rng.uniform(1.04, 1.1)) < 0.012) & (Y > 0.35 * ry)
    hu = np.where(holder, 250.0, hu)  # the head holder
    hu = np.where((rho > 1.0) & (rho < 1.04) & (Y > 0.5 * ry), -150.0, hu)  # its pad
    hu += rng.normal(0, rng.uniform(2.5, 5), hu.shape)
    return _blur(hu, 0.6)


def _ct_head(rng, h, w):
    """An axial CT of the head as a viewer shows it (brain window, sometimes bone window), or a
    filmed page of several slices."""
    atrophy = rng.uniform(0, 1)
    bone = rng.random() < 0.2
    wl, ww = (rng.choice([400, 500, 600]), rng.choice([2000, 2500, 3000])) if bone else \
        (rng.choice([35, 40, 40, 45]), rng.choice([80, 80, 100, 120]))

    def win(hu):
        return (255 * np.clip((hu - (wl - ww / 2)) / ww, 0, 1)).astype(np.uint8)

    canvas = Image.new("L", (w, h), 0)
    if rng.random() < 0.3:  # a filmed page: a grid of slices
        g = int(rng.choice([2, 3]))
        N = min(h, w) // g - 4
        for i in range(g * g):
            lv = min(2, i * 3 // (g * g))
            tile = Image.fromarray(win(_head_hu(np.random.default_rng(rng.integers(1 << 30)), N, lv, atrophy)))
            ImageDraw.Draw(tile).text((3, 2), f"{int(rng.integers(1, 40))}", fill=220)
            canvas.paste(tile, ((w - g * (N + 4)) // 2 + (i % g) * (N + 4),
                                (h - g * (N + 4)) // 2 + (i // g) * (N + 4)))
    else:
        N = int(min(h, w) * rng.uniform(0.85, 1.0))
        tile = Image.fromarray(win(_head_hu(rng, N, int(rng.choice([0, 1, 1, 2])), atrophy)))
        canvas.paste(tile, ((w - N) // 2, (h - N) // 2))
        d = ImageDraw.Draw(canvas)
        if rng.random() < 0.8:
            d.text((5, 4), "HEAD W/O", fill=220)
            d.text((5, 16), f"Se: {int(rng.integers(2, 6))}  Im: {int(rng.integers(5, 40))}", fill=220)
            d.text((5, 28), f"Ax {rng.choice(['5.0', '2.5', '0.625'])}mm", fill=220)
            d.text((w - 84, h - 28), f"W:{ww} L:{wl}", fill=220)
            d.text((w - 84, h - 16), f"{int(rng.integers(100, 140))} kV", fill=220)
            d.text((w // 2 - 3, 4), "A", fill=220)
            d.text((4, h // 2), "R", fill=220)
    return canvas


def _pet_mip(rng, h, w):
    """A whole-body FDG PET maximum-intensity projection, anterior: brain, heart, kidneys and
    bladder hot, some lesions; shown inverted grey (or in a hot colour scale), padded to the frame."""
    H = h
    W = max(40, min(w, int(h * rng.uniform(0.42, 0.55))))
    P = _Pose(H, W, 1.0 / min(H, W) * H, cx=0.5, cy=0.0, k=1)  # units of the image's height, v from the top
    arms_up = rng.random() < 0.6
    sx = W / H / 0.5  # squeeze the body into a narrower frame

    def S(pts, k=2):
        return P(_chaikin([(u * sx, v) for u, v in pts], k))

    def E(cu, cv, ru, rv, r=0.0):
        return P([(u * sx, v) for u, v in _ell(cu, cv, ru, rv, r)])

    def body(d):
        d.polygon(E(0.0, 0.1, 0.065, 0.08), fill=255)
        d.polygon(S([(-0.035, 0.17), (0.035, 0.17), (0.04, 0.22), (0.17, 0.26), (0.18, 0.45), (0.16, 0.62),
                     (0.17, 0.7), (0.14, 1.05), (0.02, 1.05), (0.0, 0.75), (-0.02, 1.05), (-0.14, 1.05), (-0.17, 0.7),
                     (-0.16, 0.62), (-0.18, 0.45), (-0.17, 0.26), (-0.04, 0.22)]), fill=255)
        for s_ in (-1, 1):
            if arms_up:
                d.polygon(S(_tube([(s_ * 0.15, 0.27), (s_ * 0.14, 0.12), (s_ * 0.1, -0.02)], 0.06)), fill=255)
            else:
                d.polygon(S(_tube([(s_ * 0.19, 0.27), (s_ * 0.22, 0.45), (s_ * 0.23, 0.62)], 0.055)), fill=255)

    bm = P.mask(body)
    act = 0.07 * bm * (0.8 + 0.4 * _smooth_noise(rng, H, W, max(4, H // 60)))
    lungs = P.mask(lambda d: [d.polygon(S([(s_ * 0.02, 0.26), (s_ * 0.13, 0.27), (s_ * 0.15, 0.42), (s_ * 0.03, 0.4)]),
                                        fill=255) for s_ in (-1, 1)])
    act = act * (1 - 0.55 * _blur(lungs, 0.01 * H))
    rng_brain = rng.uniform(0.8, 1.0)

    def organ(fn, val):
        nonlocal act
        m = P.mask(fn)
        act = np.maximum(act, val * m)

    organ(lambda d: d.polygon(E(0.0, 0.095, 0.055, 0.068), fill=255), rng_brain * 0.85)
    organ(lambda d: d.polygon(E(0.0, 0.1, 0.03, 0.035), fill=255), rng_brain)
    organ(lambda d: [d.polygon(E(s_ * 0.025, 0.17, 0.012, 0.012), fill=255) for s_ in (-1, 1)], rng.uniform(0.2, 0.4))
    heart = rng.uniform(0.05, 0.9)
    organ(lambda d: d.polygon(E(0.035, 0.34, 0.045, 0.04, -30), fill=255), heart * 0.4)
    organ(lambda d: d.polygon(E(0.035, 0.34, 0.045, 0.04, -30), outline=255, width=max(2, int(0.012 * H))), heart)
    organ(lambda d: d.polygon(S([(-0.15, 0.37), (0.02, 0.39), (0.0, 0.45), (-0.08, 0.5), (-0.15, 0.48)]), fill=255),
          rng.uniform(0.18, 0.28))  # liver
    organ(lambda d: d.polygon(E(0.11, 0.42, 0.03, 0.045), fill=255), rng.uniform(0.12, 0.2))  # spleen
    organ(lambda d: [d.polygon(E(s_ * 0.065, 0.49, 0.025, 0.045, s_ * 10), fill=255) for s_ in (-1, 1)],
          rng.uniform(0.35, 0.7))
    organ(lambda d: d.line(S([(-0.01, 0.26), (-0.01, 0.55)], 0), fill=255, width=max(1, int(0.02 * W))), 0.12)  # spine
    bowel = (_smooth_noise(rng, H, W, max(4, H // 70)) > 0.62) * P.mask(
        lambda d: d.polygon(S([(-0.12, 0.5), (0.12, 0.5), (0.13, 0.66), (-0.13, 0.66)]), fill=255))
    act = np.maximum(act, rng.uniform(0.15, 0.45) * bowel)
    organ(lambda d: d.polygon(E(0.0, 0.69, 0.04, 0.03), fill=255), rng.uniform(1.2, 2.0))  # bladder
    for _ in range(int(rng.integers(0, 10))):  # lesions
        site = rng.choice(["neck", "chest", "abdomen", "axilla"])
        cu, cv = {"neck": (rng.uniform(-0.05, 0.05), rng.uniform(0.18, 0.23)),
                  "chest": (rng.uniform(-0.12, 0.12), rng.uniform(0.27, 0.4)),
                  "abdomen": (rng.uniform(-0.12, 0.12), rng.uniform(0.42, 0.62)),
                  "axilla": (rng.choice([-1, 1]) * rng.uniform(0.12, 0.16), rng.uniform(0.26, 0.32))}[site]
        r = rng.uniform(0.006, 0.02)
        organ(lambda d: d.polygon(E(cu, cv, r, r), fill=255), rng.uniform(0.3, 1.2))
    act = _blur(act, rng.uniform(0.004, 0.007) * H)
    counts = rng.uniform(150, 400)
    act = rng.poisson(act * counts) / counts
    act = _blur(act, 0.002 * H)
    top = np.percentile(act[act > 0.05], 99) * rng.uniform(0.35, 0.8) if np.any(act > 0.05) else 1.0
    v = np.clip(act / top, 0, 1)
    style = rng.choice(["inverted", "inverted", "inverted", "hot", "grey"])
    if style == "hot":
        rgb = np.stack([np.clip(3 * v, 0, 1), np.clip(3 * v - 1, 0, 1), np.clip(3 * v - 2, 0, 1)], -1)
        mip, bg = Image.fromarray((255 * rgb).astype(np.uint8)), (0, 0, 0)
    else:
        g = 1 - v if style == "inverted" else v
        mip, bg = Image.fromarray((255 * g).astype(np.uint8)), 255 if style == "inverted" else 0
    canvas = Image.new(mip.mode, (w, h), bg)
    canvas.paste(mip, ((w - W) // 2, 0))
    fg = (0 if style == "inverted" else 230) if mip.mode == "L" else (230, 230, 230)
    d = ImageDraw.Draw(canvas)
    d.text((4, 4), "MIP", fill=fg)
    d.text((4, 16), f"SUV 0-{rng.choice([5, 6, 8, 10])}", fill=fg)
    d.text((4, h - 14), "ANT", fill=fg)
    if w - W > 60:  # a scale bar at the side
        for i in range(int(0.3 * h)):
            t = 1 - i / (0.3 * h)
            c = (int(255 * (1 - t)) if style == "inverted" else int(255 * t)) if mip.mode == "L" else \
                tuple(int(255 * np.clip(3 * t - k, 0, 1)) for k in (0, 1, 2))
            d.line([(w - 24, 30 + i), (w - 12, 30 + i)], fill=c)
    return canvas


def _speckle(rng, h, w, cell=1.5):
    """Ultrasound speckle: Rayleigh-distributed, correlated over a few pixels, longer sideways."""
    z = rng.normal(size=(h, w)) + 1j * rng.normal(size=(h, w))
    re = _blur(z.real, cell)
    im = _blur(z.imag, cell)
    s = np.hypot(re, im)
    return s / s.mean()


def _doppler(rng, h, w):
    """A colour Doppler ultrasound screen of a vessel (a carotid or leg artery, linear probe):
    grey B-mode tissue, the colour box with red/blue flow, often a spectral trace below."""
    canvas = np.zeros((h, w, 3))
    duplex = rng.random() < 0.6
    x0, x1 = int(0.16 * w), int(rng.uniform(0.78, 0.86) * w)
    y0 = int(0.08 * h)
    y1 = int((0.55 if duplex else 0.92) * h)
    ih, iw = y1 - y0, x1 - x0
    yy, xx = np.mgrid[0:ih, 0:iw] / max(ih, 1)
    depth = yy
    base = 0.35 * np.exp(-1.2 * depth) + 0.1
    fibres = 0.5 + 0.5 * np.sin(2 * np.pi * (yy * rng.uniform(8, 16) + xx * rng.uniform(-3, 3))
                                + 6 * _smooth_noise(rng, ih, iw, max(4, ih // 6)))
    tissue = base * (0.6 + 0.35 * fibres + 0.5 * _smooth_noise(rng, ih, iw, max(3, ih // 12)))
    for fy in rng.uniform(0.08, 0.95, int(rng.integers(2, 5))):  # fascial planes
        tissue += 0.5 * np.exp(-((yy - fy - 0.02 * np.sin(6 * xx)) / 0.008) ** 2)
    tissue += 0.9 * np.exp(-(yy / 0.012) ** 2)  # the skin line
    vy = rng.uniform(0.4, 0.6)
    vr = rng.uniform(0.06, 0.11)
    tilt = rng.uniform(-0.15, 0.15)
    cyl = vy + tilt * (xx - xx.max() / 2) + 0.02 * np.sin(3 * xx + rng.uniform(0, 6))
    dist = (yy - cyl) / vr
    lumen = np.abs(dist) < 1
    wall = np.exp(-((np.abs(dist) - 1.08) / 0.06) ** 2)
    tissue = np.where(lumen, 0.03, tissue) + 0.9 * wall
    if rng.random() < 0.4:  # a plaque on the far wall, with a shadow under it
        px = rng.uniform(0.2, 0.8) * xx.max()
        pl = (np.abs(xx - px) < 0.08) & (dist > 0.55) & (dist < 1.05)
        tissue = np.where(pl, 0.9, tissue)
        tissue = np.where((np.abs(xx - px) < 0.05) & (dist > 1.05), tissue * 0.25, tissue)
        lumen = lumen & ~pl
    img = np.clip(tissue * _speckle(rng, ih, iw) * 0.9, 0, 1) ** 0.8
    rgb = np.repeat(img[..., None], 3, axis=2)
    steer = rng.choice([-1, 1]) * rng.uniform(0.2, 0.35)
    bx0, bx1 = rng.uniform(0.1, 0.3) * iw, rng.uniform(0.6, 0.9) * iw
    by0, by1 = (vy - vr - 0.12) * ih, (vy + vr + 0.12) * ih
    Y, Xp = np.mgrid[0:ih, 0:iw]
    Xs = Xp - steer * (Y - by0)
    box = (Y > by0) & (Y < by1) & (Xs > bx0) & (Xs < bx1)
    phase = rng.uniform(0, 1)
    vmax = rng.uniform(0.6, 1.6) * (0.6 + 0.4 * np.cos(2 * np.pi * phase))
    vel = vmax * (1 - dist ** 2) * np.sign(steer) * rng.choice([-1, 1])
    vel = vel + 0.08 * rng.normal(size=vel.shape)
    vel = (vel + 1) % 2 - 1  # aliasing past the scale
    flow = box & lumen & (np.abs(vel) > 0.08)
    pos = np.stack([0.55 + 0.45 * np.clip(vel * 1.5, 0, 1), np.clip(vel * 2 - 1.2, 0, 1), np.zeros_like(vel)], -1)
    neg = np.stack([np.zeros_like(vel), np.clip(-vel * 2 - 1.2, 0, 1) * 0.9 + 0.1 * np.clip(-vel, 0, 1),
                    0.55 + 0.45 * np.clip(-vel * 1.5, 0, 1)], -1)
    col = np.where((vel > 0)[..., None], pos, neg)
    rgb = np.where(flow[..., None], col, rgb)
    edge = box & ~((Y > by0 + 1.5) & (Y < by1 - 1.5) & (Xs > bx0 + 1.5) & (Xs < bx1 - 1.5))
    rgb = np.where(edge[..., None], np.array([0.7, 0.7, 0.7]), rgb)
    canvas[y0:y1, x0:x1] = rgb
    im = Image.fromarray((255 * np.clip(canvas, 0, 1)).astype(np.uint8))
    d = ImageDraw.Draw(im)
    for i in range(int(0.3 * h)):  # the colour scale and the grey bar on the left
        t = i / (0.3 * h)
        c = (int(255 * (1 - 2 * t)), int(max(0, 200 * (0.25 - t) * 4)), 0) if t < 0.5 else \
            (0, int(max(0, 200 * (t - 0.75) * 4)), int(255 * (2 * t - 1)))
        d.line([(int(0.05 * w), y0 + i), (int(0.05 * w) + 10, y0 + i)], fill=c)
        d.line([(int(0.05 * w) + 16, y0 + i), (int(0.05 * w) + 22, y0 + i)], fill=(int(255 * (1 - t)),) * 3)
    vs = f"{rng.uniform(20, 80):.1f}"
    d.text((int(0.05 * w) - 6, y0 - 11), "+" + vs, fill=(220, 220, 220))
    d.text((int(0.05 * w) - 6, y0 + int(0.3 * h) + 2), "-" + vs, fill=(220, 220, 220))
    d.text((6, 4), f"{rng.choice(['L12-5', 'L9-3', 'ML6-15', '9L'])}   "
                   f"{rng.choice(['Carotid', 'Vasc', 'LE Art', 'Venous'])}"
                   f"   MI {rng.uniform(0.4, 1.3):.1f}  TIs {rng.uniform(0.1, 0.9):.1f}", fill=(220, 220, 220))
    for k in range(6):  # the depth scale
        yk = y0 + k * ih / 5
        d.line([(x1 + 4, yk), (x1 + 10, yk)], fill=(200, 200, 200))
        d.text((x1 + 13, yk - 5), str(k), fill=(200, 200, 200))
    if duplex:
        gx = x0 + (bx0 + bx1) / 2 + steer * ((vy * ih) - by0)
        gy = y0 + vy * ih + tilt * ((bx0 + bx1) / 2 - iw / 2) / ih * ih
        d.line([(gx - 8, gy - 4), (gx + 8, gy - 4)], fill=(255, 255, 255), width=2)
        d.line([(gx - 8, gy + 4), (gx + 8, gy + 4)], fill=(255, 255, 255), width=2)
        d.line([(gx - 40 * steer, gy - 40), (gx + 40 * steer, gy + 40)], fill=(255, 255, 255))
        sy0, sy1 = int(0.6 * h), int(0.96 * h)
        sh, sw = sy1 - sy0, x1 - x0
        base_y = int(rng.uniform(0.6, 0.8) * sh)
        tt = np.arange(sw) / sw * rng.uniform(2.5, 5)  # beats across the sweep
        ph = tt % 1
        env = (0.15 + 0.85 * np.exp(-((ph - 0.12) / 0.05) ** 2) + 0.25 * np.exp(-((ph - 0.32) / 0.04) ** 2)
               - 0.1 * (ph > 0.2)) * rng.uniform(0.5, 0.9) * base_y
        if rng.random() < 0.3:  # venous: low, phasic
            env = (0.25 + 0.1 * np.sin(2 * np.pi * tt / 3)) * base_y + 0 * ph
        rows = np.arange(sh)[:, None]
        hgt = base_y - rows  # height above the baseline
        fill_ = (hgt > 0) & (hgt < env[None, :])
        spec = (fill_ * (0.4 + 0.6 * np.clip(hgt / np.maximum(env[None, :], 1), 0, 1) ** 0.5)
                * rng.uniform(0.5, 1.0, (sh, sw)))
        spec += 0.05 * rng.random((sh, sw))
        spec = _blur(spec, 0.8)
        area = np.repeat(np.clip(spec, 0, 1)[..., None], 3, axis=2)
        arr = np.asarray(im).copy()
        arr[sy0:sy1, x0:x1] = (255 * area).astype(np.uint8)
        im = Image.fromarray(arr)
        d = ImageDraw.Draw(im)
        d.line([(x0, sy0 + base_y), (x1, sy0 + base_y)], fill=(160, 160, 160))
        for k in range(5):
            yk = sy0 + base_y - k * base_y / 4
            d.text((x1 + 6, yk - 5), str(int(k * float(vs) * 1.5 / 4)), fill=(200, 200, 200))
        psv = rng.uniform(40, 140)
        d.text((x0, int(0.56 * h)), f"PSV {psv:.1f} cm/s   EDV {psv * rng.uniform(0.1, 0.35):.1f} cm/s   "
                                    f"RI {rng.uniform(0.6, 0.85):.2f}", fill=(230, 230, 100))
    return im


def _oct(rng, h, w):
    """A retinal OCT: a B-scan through the fovea (retinal layers, bright RPE, choroid below) in
    grey, often beside the infrared fundus picture with the scan line, sometimes in false colour."""
    with_fundus = w > 1.1 * h or rng.random() < 0.5
    fw = int(min(h, 0.42 * w)) if with_fundus else 0
    bw = w - fw
    bh = int(h * (rng.uniform(0.5, 0.7) if with_fundus else rng.uniform(0.7, 0.9)))
    zz, xx_ = np.mgrid[0:bh, 0:bw]
    z, x = zz / bh, xx_ / bw
    xf = rng.uniform(0.4, 0.6)
    curv = rng.uniform(0.05, 0.25)
    z_rpe = rng.uniform(0.55, 0.68) + curv * (x - 0.5) ** 2 + rng.uniform(-0.05, 0.05) * (x - 0.5)
    pit = np.exp(-((x - xf) / rng.uniform(0.05, 0.08)) ** 2)
    nasal = rng.choice([-1, 1])
    thick = 0.28 * (1 - 0.55 * pit) * (1 + 0.1 * nasal * (x - 0.5))
    inner = 1 - 0.97 * pit  # the inner layers thin out at the fovea
    rnfl = 0.08 * inner * (1 + 0.8 * np.clip(nasal * (x - xf) * 3, 0, 1.5))
    fr = [("rnfl", rnfl), ("gcl", 0.12 * inner), ("ipl", 0.09 * inner), ("inl", 0.09 * inner), ("opl", 0.07 * inner)]
    bright = {"rnfl": 0.85, "gcl": 0.42, "ipl": 0.62, "inl": 0.22, "opl": 0.55}
    z_ilm = z_rpe - thick
    d_ = (z - z_ilm) / np.maximum(thick, 1e-3)  # 0 at the ILM, 1 at the RPE
    a = np.full((bh, bw), 0.03)
    cum = np.zeros_like(x)
    for name, f in fr:
        a = np.where((d_ >= cum) & (d_ < cum + f), bright[name], a)
        cum = cum + f
    a = np.where((d_ >= cum) & (d_ < 0.86), 0.14, a)  # outer nuclear layer
    a = np.where((d_ >= 0.86) & (d_ < 0.88), 0.45, a)  # external limiting membrane
    a = np.where((d_ >= 0.88) & (d_ < 0.92), 0.3, a)
    a = np.where((d_ >= 0.92) & (d_ < 0.95), 0.8, a)  # ellipsoid zone
    a = np.where((d_ >= 0.95) & (d_ < 0.97), 0.45, a)
    drusen = np.zeros_like(x)
    if rng.random() < 0.35:
        for c in rng.uniform(0.2, 0.8, int(rng.integers(2, 7))):
            drusen += 0.02 * np.exp(-((x - c) / 0.02) ** 2)
    zr = z_rpe - drusen
    a = np.where((z >= zr - 0.004 * 6) & (z < zr + 0.015), 0.97, a)  # RPE / Bruch's membrane
    ch = (z >= zr + 0.015) & (z < zr + 0.015 + rng.uniform(0.12, 0.2))
    vessels = _smooth_noise(rng, bh, bw, max(3, bh // 40))
    a = np.where(ch, np.where(vessels > 0.6, 0.12, 0.55) * np.exp(-3 * (z - zr)), a)
    a = np.where(z >= zr + 0.015 + 0.2, 0.18 * np.exp(-4 * (z - zr)), a)
    if rng.random() < 0.25:  # a pocket of subretinal fluid
        a = np.where((z > zr - 0.05 * pit - 0.001) & (z < zr) & (pit > 0.3) & (d_ > 0.86), 0.03, a)
    a = np.where(z < z_ilm, 0.02, a)
    spk = rng.gamma(1.3, 1 / 1.3, a.shape)
    a = _blur(a * spk, 0.7)
    a = np.log1p(30 * np.clip(a, 0, None)) / np.log1p(30)
    a = np.clip(a * rng.uniform(0.9, 1.15) - rng.uniform(0.0, 0.1), 0, 1)
    colour = rng.random() < 0.3
    if colour:  # a false-colour scale: black, blue, green, yellow, red, white
        stops = np.array([[0, 0, 0], [0, 0, 0.6], [0, 0.7, 0.5], [0.9, 0.9, 0.1], [0.9, 0.1, 0], [1, 1, 1]])
        t = a * (len(stops) - 1)
        i0 = np.clip(t.astype(int), 0, len(stops) - 2)
        f = (t - i0)[..., None]
        scan = Image.fromarray((255 * ((1 - f) * stops[i0] + f * stops[i0 + 1])).astype(np.uint8))
        canvas = Image.new("RGB", (w, h), (0, 0, 0))
    else:
        scan = Image.fromarray((255 * a).astype(np.uint8))
        canvas = Image.new("RGB" if with_fundus else "L", (w, h), 0)
    canvas.paste(scan.convert(canvas.mode), (fw, (h - bh) // 2))
    d = ImageDraw.Draw(canvas)
    white = 230 if canvas.mode == "L" else (230, 230, 230)
    if with_fundus:
        n = fw
        fy, fx = np.mgrid[0:n, 0:n] / n
        g = 0.45 + 0.1 * _smooth_noise(rng, n, n, max(4, n // 6))
        dx_ = rng.choice([-1, 1]) * 0.3
        disc = np.hypot(fx - 0.5 - dx_, fy - 0.5) < 0.08
        g = np.where(disc, 0.85, g) - 0.15 * np.exp(-(np.hypot(fx - 0.5, fy - 0.5) / 0.08) ** 2)
        vm = Image.new("L", (n, n), 0)
        vd = ImageDraw.Draw(vm)
        for s_ in (-1, 1):
            for k in range(3):
                pts = [(n * (0.5 + dx_), n * 0.5)]
                ang = np.deg2rad(-s_ * (40 + 30 * k) + (180 if dx_ > 0 else 0))
                for _ in range(8):
                    ang += rng.normal(0, 0.2)
                    pts.append((pts[-1][0] + n * 0.08 * np.cos(ang), pts[-1][1] + n * 0.08 * np.sin(ang) * s_))
                vd.line(pts, fill=255, width=max(1, n // 90), joint="curve")
        g = g - 0.2 * np.asarray(vm.filter(ImageFilter.GaussianBlur(1)), np.float64) / 255
        g = np.clip(g + 0.03 * rng.normal(size=g.shape), 0, 1)
        fim = Image.fromarray((255 * g).astype(np.uint8)).convert("RGB")
        fd = ImageDraw.Draw(fim)
        ly = int(n * 0.5)
        fd.line([(int(0.1 * n), ly), (int(0.9 * n), ly)], fill=(0, 230, 0), width=max(1, n // 150))
        fd.polygon([(int(0.9 * n), ly - 5), (int(0.9 * n) + 9, ly), (int(0.9 * n), ly + 5)], fill=(0, 230, 0))
        canvas.paste(fim, (0, (h - n) // 2))
        d.text((4, 4), "IR 30 ART", fill=white)
    d.text((fw + 4, 4), f"HS {rng.choice(['OD', 'OS'])}  ART ({int(rng.integers(9, 100))})  "
                        f"Q: {int(rng.integers(20, 40))}",
           fill=white)
    d.line([(w - 50, h - 10), (w - 10, h - 10)], fill=white)
    d.text((w - 50, h - 22), "200 um", fill=white)
    return canvas


def _endoscopy(rng, h, w):
    """A colonoscopy or gastroscopy frame as the video processor shows it: looking down the
    lumen, haustral folds (colon) or rugae (stomach) lit from the scope, pink and red mucosa with
    fine vessels, glints of light, the cut-corner frame and text on black."""
    n = min(h, w)
    fs = int(n * rng.uniform(0.82, 0.95))  # the picture's side
    ox, oy = w - fs - int((w - fs) * rng.uniform(0.1, 0.3)), (h - fs) // 2
    y, x = np.mgrid[0:fs, 0:fs] / fs
    lx, ly = rng.uniform(0.25, 0.75), rng.uniform(0.25, 0.75)  # where the lumen is
    r = np.hypot((x - lx) * rng.uniform(0.8, 1.2), y - ly) + 1e-3
    th = np.arctan2(y - ly, x - lx)
    wob = _smooth_noise(rng, fs, fs, max(6, fs // 5)) - 0.5
    z = 0.12 / r * (1 + 0.35 * wob)  # the distance along the tube to the wall seen at each pixel
    colon = rng.random() < 0.6
    if colon:  # haustral folds: ridges across the tube every so often, crescents rather than rings
        per = rng.uniform(0.25, 0.45)
        ph = (z / per + 0.15 * np.sin(3 * th + rng.uniform(0, 6))) % 1.0
        amp = np.clip(0.2 + 1.4 * _smooth_noise(rng, fs, fs, max(6, fs // 4)), 0, 1)
    else:  # gastric rugae: thick folds along the tube, winding
        k = int(rng.integers(5, 10))
        ph = (k * th / (2 * np.pi) + 0.6 * np.sin(z * 2.5 + rng.uniform(0, 6)) + 0.8 * wob) % 1.0
        amp = np.clip(0.4 + 1.2 * _smooth_noise(rng, fs, fs, max(6, fs // 4)), 0, 1)
    facing = np.clip(np.where(ph < 0.5, (ph - 0.2) / 0.3, 1 - (ph - 0.5) / 0.1), 0, 1)  # lit side of a fold
    shadow = np.clip(1 - np.abs(ph - 0.62) / 0.08, 0, 1)  # behind its crest
    fold = amp * (0.35 * facing - 0.45 * shadow)
    light = np.clip(1.3 / (1 + (z / rng.uniform(0.5, 0.9)) ** 2), 0, 1.2)  # falls off with the distance
    lum = np.clip(light * (0.8 + fold), 0, 1.3)
    base = np.array([0.95, 0.55, 0.45]) if colon else np.array([0.92, 0.4, 0.3])
    base = base * rng.uniform(0.9, 1.05, 3)
    far = np.clip(z / 2.0, 0, 1)[..., None]
    col = base[None, None, :] * (1 - 0.35 * far * np.array([0.0, 0.6, 0.5]))  # redder and darker deeper in
    tex = _smooth_noise(rng, fs, fs, max(3, fs // 110))
    vessels = np.exp(-((tex - 0.5) / 0.025) ** 2) * np.clip(1.2 - z, 0, 1) * (rng.random() < 0.8)
    rgb = lum[..., None] * col * (1 - 0.35 * vessels[..., None] * np.array([0.15, 0.9, 0.7]))
    glint = (facing * amp > 0.6) & (rng.random((fs, fs)) < 0.0004) & (z < 1.5)
    spots = np.clip(_blur(_blur(glint.astype(np.float64), 0.003 * fs) > 0.004, 0.002 * fs) * 1.5, 0, 1)
    rgb = rgb + spots[..., None] * np.array([1.0, 1.0, 1.0])
    rgb = rgb * (1 - 0.45 * np.clip((np.hypot(x - 0.5, y - 0.5) - 0.35) / 0.35, 0, 1))[..., None]
    if rng.random() < 0.25:  # an instrument: the biopsy forceps' sheath from the lower right
        along = (x - 1.0) * 0.6 + (y - 1.0) * 0.8
        across = (x - 1.0) * 0.8 - (y - 1.0) * 0.6
        tool = (np.abs(across) < 0.05) & (along > -rng.uniform(0.3, 0.5))
        tg = 0.35 + 0.55 * np.cos(across / 0.05 * np.pi / 2) ** 2
        rgb = np.where(tool[..., None], tg[..., None] * np.array([0.8, 0.82, 0.85]), rgb)
    frame = (np.abs(x - 0.5) < 0.5) & (np.abs(y - 0.5) < 0.5)
    frame &= (np.abs(x - 0.5) + np.abs(y - 0.5)) < rng.uniform(0.82, 0.95)
    if rng.random() < 0.3:
        frame &= np.hypot(x - 0.5, y - 0.5) < 0.5
    rgb = np.where(frame[..., None], rgb, 0.0)
    img = Image.merge("RGB", [Image.fromarray((255 * np.clip(_blur(rgb[..., c], 0.7), 0, 1)).astype(np.uint8))
                              for c in range(3)])
    canvas = Image.new("RGB", (w, h), (0, 0, 0))
    canvas.paste(img, (ox, oy))
    d = ImageDraw.Draw(canvas)
    lines = [f"ID: {int(rng.integers(100000, 999999))}", "Name:", "Sex:   Age:", f"{int(rng.integers(1, 29)):02d}/"
             f"{int(rng.integers(1, 13)):02d}/20{int(rng.integers(10, 25))}", f"{int(rng.integers(8, 18)):02d}:"
             f"{int(rng.integers(0, 60)):02d}:{int(rng.integers(0, 60)):02d}", "", f"Eh:A{int(rng.integers(1, 8))}",
             f"Cst:{int(rng.integers(1, 6))}", "CVP:1", "Ct:N", f"{rng.choice(['CF-HQ190L', 'GIF-H190', 'EC-760R'])}"]
    for i, t in enumerate(lines):
        d.text((6, 6 + 13 * i), t, fill=(235, 235, 235))
    return canvas


_DRAW6 = {"skull-frontal": _skull_frontal, "wrist": _wrist, "knee-lateral": _knee_lateral,
          "ankle-lateral": _ankle_lateral, "hip-lateral": _hip_lateral, "urogram": _urogram, "fluoro": _fluoro,
          "ct-head": _ct_head, "pet-mip": _pet_mip, "doppler": _doppler, "oct-retina": _oct, "endoscopy": _endoscopy}

_SIZES6 = [(512, 512), (896, 736), (600, 800), (1024, 1024), (432, 576), (1400, 1120)]
assert tuple(_DRAW6) == KINDS6


def generated6(per_kind: int = 20) -> list[tuple[str, str, Image.Image]]:
    return draw_set("fresh6", _DRAW6, _SIZES6, 16000, per_kind)


def fresh6_images(per_kind: int = 20) -> list[tuple[str, str, Image.Image]]:
    """Every fresh6 picture as ``(group, name, Pillow image)``."""
    return generated6(per_kind) + [(g.replace("fresh2-", "fresh6-"), n, im) for g, n, im in found(FOUND_GLOBS6)]
