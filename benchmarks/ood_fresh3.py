"""The ``fresh3`` set of non-X-rays for benchmarks/ood_detection.py: defined and committed after
``fresh2`` was scored (and its misses, Mandelbrot views, 1/f clouds and a blurred shape, were
looked at) and before any change designed on those misses; scored once, at the end.

Kinds none of the earlier sets has:

* generated (numpy, Pillow; deterministic, seeds 13000+), 20 each of 12 kinds. Other
  radiographs and scans, the inputs a radiology user is most likely to feed by mistake, drawn
  roughly: a knee (two long bones meeting at a joint), a pelvis, a lateral spine, a mammogram,
  an axial CT slice, an ultrasound fan with speckle. Other pictures: a ramp under film-like
  grain (smooth and noisy at once), a star field, a spiral, wood-like rings, a barcode or QR-like
  block pattern, a contour map;
* pictures found on the machine outside this project in folders no earlier set used (the
  Google Cloud SDK's bundled docs, libxslt, sympy's plotting tests, Tk's demo images, pip's
  docs, libpng's example, an npm QR-code example, the hicolor and Adwaita 256 px icons, IDLE's
  icons), deduplicated by content.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ood_fresh2 import _grey, draw_set, found

#: Generated kinds of fresh3.
KINDS3 = ("knee", "pelvis", "spine-lateral", "mammogram", "ct-slice", "ultrasound", "grain-ramp", "stars", "spiral",
          "rings", "barcode", "contours")

FOUND_GLOBS3 = {
    "cloud-sdk-docs": "/usr/lib/google-cloud-sdk/**/*.png",
    "cloud-sdk-jpeg": "/usr/lib/google-cloud-sdk/**/*.jpg",
    "libxslt-docs": "/usr/share/doc/libxslt1-dev/html/*.gif",
    "sympy-plot-tests": "/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages/sympy/plotting/tests/*.png",
    "tk-images": "/usr/share/tcltk/tk8.6/images/*",
    "pip-docs": "/usr/share/doc/python3-pip/html/**/*.png",
    "libpng-example": "/usr/share/doc/libpng-dev/examples/*.png",
    "qrcode-example": "/usr/lib/node_modules/npm/node_modules/qrcode-terminal/example/*.png",
    "icons-256": "/usr/share/icons/Adwaita/256x256/*/*.png",
    "hicolor-icons": "/usr/share/icons/hicolor/48x48/apps/*.png",
    "idle-icons": "/root/.pyenv/versions/3.11.7/lib/python3.11/idlelib/Icons/*.gif",
}


def _radiograph(a: np.ndarray, rng, blur: float = 1.5) -> Image.Image:
    """Soft tissue and bone densities -> a film-like grey picture with grain."""
    a = a + rng.normal(0, 0.02, a.shape)
    return _grey(a).filter(ImageFilter.GaussianBlur(blur))


def _knee(rng, h, w):
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    cx = w / max(h, w) / 2 + rng.uniform(-0.05, 0.05)
    a = 0.25 * (np.abs(x - cx) < 0.3)  # soft tissue of the leg
    femur = (np.abs(x - cx) < 0.09) & (y < 0.45)
    tibia = (np.abs(x - cx) < 0.08) & (y > 0.52)
    condyles = ((x - cx + 0.06) ** 2 + (y - 0.45) ** 2 < 0.07 ** 2) | ((x - cx - 0.06) ** 2 + (y - 0.45) ** 2 < 0.07 ** 2)
    a += 0.6 * (femur | tibia | condyles)
    a += 0.2 * ((np.abs(x - cx) < 0.05) & ((y < 0.4) | (y > 0.6)))  # cortex brighter than marrow, roughly
    return _radiograph(a, rng)


def _pelvis(rng, h, w):
    y, x = np.mgrid[-1:1:complex(0, h), -1:1:complex(0, w)]
    a = 0.2 * (np.hypot(x / 0.95, (y - 0.1) / 0.9) < 1)
    wings = np.abs(np.hypot((np.abs(x) - 0.45) / 0.35, (y + 0.2) / 0.45) - 1) < 0.12
    ring = np.abs(np.hypot(x / 0.35, (y - 0.25) / 0.3) - 1) < 0.1
    heads = np.hypot(np.abs(x) - 0.62, y - 0.45) < 0.14
    a += 0.6 * (wings | ring | heads) + 0.4 * ((np.abs(x) < 0.08) & (y < -0.2))
    return _radiograph(a, rng)


def _spine_lateral(rng, h, w):
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    a = 0.2 * np.ones((h, w))
    n = int(rng.integers(5, 8))
    cx = w / max(h, w) * rng.uniform(0.45, 0.55)
    for k in range(n):
        cy = (k + 0.7) / (n + 0.4) * h / max(h, w)
        bend = 0.06 * np.sin(cy * 3)
        a += 0.55 * ((np.abs(x - cx - bend) < 0.09) & (np.abs(y - cy) < 0.045))
        a += 0.3 * ((x - cx - bend > 0.1) & (x - cx - bend < 0.2) & (np.abs(y - cy) < 0.02))
    return _radiograph(a, rng)


def _mammogram(rng, h, w):
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    left = rng.random() < 0.5
    xx = x if left else (w / max(h, w) - x)
    r = np.hypot(xx / 0.6, (y - h / max(h, w) / 2) / 0.45)
    a = np.where(r < 1, 0.5 - 0.3 * r, 0.0)
    a += 0.15 * (r < 1) * np.asarray(_grey(np.random.default_rng(int(rng.integers(1 << 30))).normal(size=(h // 8 + 1, w // 8 + 1)))
                                      .resize((w, h), Image.BICUBIC), np.float64)[:h, :w] / 255
    return _radiograph(a, rng, blur=1.0)


def _ct_slice(rng, h, w):
    y, x = np.mgrid[-1:1:complex(0, h), -1:1:complex(0, w)]
    body = np.hypot(x / 0.85, y / 0.65) < 1
    a = 0.05 + 0.45 * body
    a -= 0.4 * ((np.hypot((np.abs(x) - 0.38) / 0.3, y / 0.45) < 1) & body)  # lungs (dark) or organs
    a += 0.5 * (np.hypot(x, y - 0.45) < 0.09)  # vertebra
    a += 0.5 * (np.abs(np.hypot(x / 0.85, y / 0.65) - 0.97) < 0.02)  # ribs / skin line
    return _radiograph(a, rng, blur=1.0)


def _ultrasound(rng, h, w):
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    cx = w / max(h, w) / 2
    ang, r = np.arctan2(x - cx, y + 0.05), np.hypot(x - cx, y + 0.05)
    fan = (np.abs(ang) < 0.6) & (r > 0.1) & (r < 0.9)
    speckle = rng.rayleigh(0.3, (h, w))
    a = fan * speckle * (0.6 + 0.4 * np.sin(r * rng.uniform(8, 20)) ** 2)
    return Image.fromarray(np.clip(255 * a / max(1e-6, a.max()) * 1.5, 0, 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(0.7))


def _grain_ramp(rng, h, w):
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    t = rng.uniform(0, 2 * np.pi)
    a = np.cos(t) * x + np.sin(t) * y
    a = 60 + 140 * (a - a.min()) / (np.ptp(a) or 1) + rng.normal(0, rng.uniform(2, 8), (h, w))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.8)))


def _stars(rng, h, w):
    a = rng.normal(10, 3, (h, w))
    k = int(rng.integers(50, 600))
    ys, xs = rng.integers(0, h, k), rng.integers(0, w, k)
    a[ys, xs] = rng.uniform(120, 255, k)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))


def _spiral(rng, h, w):
    y, x = np.mgrid[-1:1:complex(0, h), -1:1:complex(0, w)]
    r, t = np.hypot(x, y), np.arctan2(y, x)
    return _grey(np.sin(rng.uniform(3, 12) * np.log(r + 0.05) * 4 + int(rng.integers(1, 6)) * t))


def _rings(rng, h, w):
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    cy, cx = rng.uniform(-0.5, 1.5, 2)
    r = np.hypot(x - cx, y - cy) + 0.02 * np.sin(x * rng.uniform(5, 30))
    return _grey(np.sin(r * rng.uniform(20, 80)) + 0.3 * rng.normal(size=(h, w)))


def _barcode(rng, h, w):
    if rng.random() < 0.5:
        bars = rng.integers(0, 2, int(rng.integers(30, 90)))
        a = np.repeat(bars, int(np.ceil(w / len(bars))))[:w][None, :].repeat(h, 0)
    else:
        n = int(rng.integers(21, 41))
        a = np.kron(rng.integers(0, 2, (n, n)), np.ones((h // n + 1, w // n + 1)))[:h, :w]
    return _grey(1 - a)


def _contours(rng, h, w):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ood_fresh2 import _figure_image

    y, x = np.mgrid[0:1:60j, 0:1:60j]
    z = sum(rng.normal() * np.exp(-((x - rng.random()) ** 2 + (y - rng.random()) ** 2) / rng.uniform(0.01, 0.1))
            for _ in range(6))
    fig, ax = plt.subplots(figsize=(w / 100, h / 100), dpi=100)
    ax.contour(x, y, z, levels=int(rng.integers(6, 20)), colors="k", linewidths=0.8)
    ax.set_axis_off()
    return _figure_image(fig).convert("L")


_DRAW3 = {"knee": _knee, "pelvis": _pelvis, "spine-lateral": _spine_lateral, "mammogram": _mammogram,
          "ct-slice": _ct_slice, "ultrasound": _ultrasound, "grain-ramp": _grain_ramp, "stars": _stars,
          "spiral": _spiral, "rings": _rings, "barcode": _barcode, "contours": _contours}

_SIZES3 = [(320, 256), (256, 256), (480, 400), (600, 600), (256, 320)]
assert tuple(_DRAW3) == KINDS3


def generated3(per_kind: int = 20) -> list[tuple[str, str, Image.Image]]:
    return draw_set("fresh3", _DRAW3, _SIZES3, 13000, per_kind)


def fresh3_images(per_kind: int = 20) -> list[tuple[str, str, Image.Image]]:
    """Every fresh3 picture as ``(group, name, Pillow image)``."""
    return generated3(per_kind) + [(g.replace("fresh2-", "fresh3-"), n, im) for g, n, im in found(FOUND_GLOBS3)]
