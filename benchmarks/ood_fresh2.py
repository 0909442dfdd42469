"""The ``fresh2`` set of non-X-rays for benchmarks/ood_detection.py: defined and committed
before any change that it measures was designed, and scored once, at the end.

Why a third set: the ``fresh`` set's misses (smooth ramps, density crops, upscaled digits) were
looked at when the image checks and scores were revised, so ``fresh`` became a development set
too. ``fresh2`` holds kinds of pictures none of the earlier sets has, so a rule fitted to the
earlier misses gets no free credit here:

* generated (numpy, Pillow, matplotlib; deterministic, seeds 9000+), 25 each of 9 kinds:
  gaussian blobs, 1/f "cloud" noise, interference of plane waves, upscaled tiny random images,
  terminal text (light on dark), a Mandelbrot set, shaded Voronoi cells, heavily blurred
  shapes, charts (line, bar, scatter, histogram, grey heat map);
* matplotlib's sample time series not used before (``membrane.dat``, ``eeg.dat``,
  ``goog.npz``) drawn as charts;
* pictures found on the machine outside this project (``--found`` globs; on the project's CPU
  box: the Adwaita 512 px icons, the Rust and Cargo books' screenshots and diagrams,
  networkx's test baselines, Node.js and Valgrind documentation images), deduplicated by
  content. Not reproducible on another machine file for file; their paths are recorded.
"""

from __future__ import annotations

import glob
import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

#: Generated kinds of fresh2 (none is a kind of cxrtool.synthetic.nonxray).
KINDS2 = ("blobs", "clouds", "interference", "upscaled", "terminal", "mandelbrot", "voronoi", "blurred-shapes",
          "chart")

#: Where the found pictures were on the project's CPU box (group name: glob).
FOUND_GLOBS = {
    "adwaita-icons": "/usr/share/icons/Adwaita/512x512/*/*.png",
    "rust-docs": "/root/.rustup/toolchains/stable-x86_64-unknown-linux-gnu/share/doc/rust/html/**/*.png",
    "networkx-baselines": "/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages/networkx/drawing/tests/baseline/*.png",
    "nodejs-docs": "/usr/share/doc/nodejs/**/*.png",
    "valgrind-docs": "/usr/share/doc/valgrind/html/images/*.png",
}


def _grey(a: np.ndarray) -> Image.Image:
    a = np.asarray(a, np.float64)
    a = (a - a.min()) / (np.ptp(a) or 1.0)
    return Image.fromarray((255 * a).astype(np.uint8))


def _blobs(rng, h, w):
    y, x = np.mgrid[0:h, 0:w]
    a = np.full((h, w), rng.uniform(0, 0.3))
    for _ in range(int(rng.integers(3, 13))):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        s = rng.uniform(0.03, 0.25) * max(h, w)
        a += rng.uniform(-0.5, 1.0) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * s * s))
    return _grey(a)


def _clouds(rng, h, w):
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]
    f = np.hypot(fy, fx)
    f[0, 0] = 1.0
    spectrum = (rng.normal(size=(h, w)) + 1j * rng.normal(size=(h, w))) / f ** (rng.uniform(1.5, 3.5) / 2)
    return _grey(np.real(np.fft.ifft2(spectrum)))


def _interference(rng, h, w):
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    a = np.zeros((h, w))
    for _ in range(int(rng.integers(2, 5))):
        k = rng.uniform(1, 12)
        t = rng.uniform(0, np.pi)
        a += np.cos(2 * np.pi * k * (np.cos(t) * x + np.sin(t) * y) + rng.uniform(0, 2 * np.pi))
    return _grey(a)


def _upscaled(rng, h, w):
    n = int(rng.integers(6, 25))
    small = Image.fromarray(rng.integers(0, 256, (n, n)).astype(np.uint8))
    return small.resize((w, h), [Image.BILINEAR, Image.BICUBIC, Image.LANCZOS][int(rng.integers(0, 3))])


def _terminal(rng, h, w):
    im = Image.new("L", (w, h), int(rng.integers(0, 40)))
    d = ImageDraw.Draw(im)
    words = ["$", "ls", "-la", "cxrtool", "predict", "error:", "ok", "total", "drwxr-xr-x", "root", "1024",
             "Dec", "model.keras", "loss", "0.4312", "epoch", "3/15", "python", "import", "numpy"]
    y, step = 4, max(9, int(h * rng.uniform(0.025, 0.05)))
    while y < h - step:
        d.text((4, y), " ".join(rng.choice(words, int(rng.integers(2, 10)))), fill=int(rng.integers(170, 256)))
        y += step
    return im


def _mandelbrot(rng, h, w):
    """A view of the Mandelbrot set that holds some of its boundary (redrawn until it does)."""
    y, x = np.mgrid[0:h, 0:w]
    for _ in range(30):
        cx, cy = rng.uniform(-1.6, 0.3), rng.uniform(-0.9, 0.9)
        span = 10 ** rng.uniform(-2.5, 0.5)
        c = (cx + span * (x / w - 0.5)) + 1j * (cy + span * (y / h - 0.5) * h / w)
        z = np.zeros_like(c)
        n = np.zeros(c.shape)
        for _i in range(80):
            inside = np.abs(z) <= 2
            z[inside] = z[inside] ** 2 + c[inside]
            n[inside] += 1
        if 0.05 < np.mean(n == 80) < 0.9:
            break
    return _grey(np.log1p(n))


def _voronoi(rng, h, w):
    k = int(rng.integers(8, 60))
    pts = rng.uniform(0, 1, (k, 2)) * (h, w)
    y, x = np.mgrid[0:h, 0:w]
    d = (y[..., None] - pts[:, 0]) ** 2 + (x[..., None] - pts[:, 1]) ** 2
    cell = d.argmin(axis=2)
    shade = rng.uniform(0, 255, k)[cell]
    return Image.fromarray(shade.astype(np.uint8)).filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 3)))


def _blurred_shapes(rng, h, w):
    im = Image.new("L", (w, h), int(rng.integers(0, 256)))
    d = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(3, 12))):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        d.ellipse([x0, y0, x0 + int(rng.integers(10, w // 2)), y0 + int(rng.integers(10, h // 2))],
                  fill=int(rng.integers(0, 256)))
    return im.filter(ImageFilter.GaussianBlur(rng.uniform(4, 20) * max(h, w) / 256))


def _figure_image(fig) -> Image.Image:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def _chart(rng, h, w):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(w / 100, h / 100), dpi=100)
    kind = int(rng.integers(0, 5))
    if kind == 0:
        ax.plot(np.cumsum(rng.normal(size=(200, int(rng.integers(1, 4)))), axis=0))
    elif kind == 1:
        ax.bar(range(8), rng.uniform(1, 10, 8), color="grey")
    elif kind == 2:
        ax.scatter(*rng.normal(size=(2, 300)), s=4, c="k")
    elif kind == 3:
        ax.hist(rng.normal(size=2000), bins=40, color="0.4")
    else:
        ax.imshow(np.asarray(_clouds(rng, 64, 64)), cmap="gray")
    ax.set_title(f"figure {int(rng.integers(1, 99))}")
    return _figure_image(fig).convert("L")


_DRAW2 = {"blobs": _blobs, "clouds": _clouds, "interference": _interference, "upscaled": _upscaled,
          "terminal": _terminal, "mandelbrot": _mandelbrot, "voronoi": _voronoi, "blurred-shapes": _blurred_shapes,
          "chart": _chart}

_SIZES = [(256, 256), (300, 400), (400, 300), (512, 512), (224, 224)]
assert tuple(_DRAW2) == KINDS2


def draw_set(label: str, draw: dict, sizes: list[tuple[int, int]], seed: int,
             per_kind: int) -> list[tuple[str, str, Image.Image]]:
    """``per_kind`` pictures of each kind in ``draw`` (name -> drawer), the i-th of kind k drawn
    with the generator seeded ``[seed + i, k]`` at ``sizes[i % len(sizes)]``."""
    out = []
    for k, (kind, drawer) in enumerate(draw.items()):
        for i in range(per_kind):
            rng = np.random.default_rng([seed + i, k])
            out.append((f"{label}-generated:{kind}", f"{kind}-{seed + i}", drawer(rng, *sizes[i % len(sizes)])))
    return out


def generated(per_kind: int = 25) -> list[tuple[str, str, Image.Image]]:
    return draw_set("fresh2", _DRAW2, _SIZES, 9000, per_kind)


def sample_series() -> list[tuple[str, str, Image.Image]]:
    """matplotlib's sample time series drawn as charts (three sizes each)."""
    import matplotlib
    import matplotlib.cbook as cbook

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {"membrane.dat": np.fromfile(cbook.get_sample_data("membrane.dat", asfileobj=False), dtype=np.float32),
              "eeg.dat": np.fromfile(cbook.get_sample_data("eeg.dat", asfileobj=False), dtype=np.int16)
              .astype(np.float64).reshape(-1, 4)}
    with np.load(cbook.get_sample_data("goog.npz", asfileobj=False)) as z:
        series["goog.npz"] = np.asarray(z["price_data"]["adj_close"], np.float64)
    out = []
    for name, data in series.items():
        for j, (w, h) in enumerate([(640, 480), (400, 400), (800, 300)]):
            fig, ax = plt.subplots(figsize=(w / 100, h / 100), dpi=100)
            ax.plot(data, lw=0.8)
            ax.set_title(name)
            out.append((f"fresh2-matplotlib:{name}", f"{name}#{j}", _figure_image(fig)))
    return out


def found(globs: dict[str, str] = FOUND_GLOBS) -> list[tuple[str, str, Image.Image]]:
    """Pictures found on this machine, deduplicated by content (RGBA flattened on white)."""
    seen, out = set(), []
    for group, pattern in globs.items():
        for p in sorted(glob.glob(pattern, recursive=True)):
            data = Path(p).read_bytes()
            digest = hashlib.sha1(data).hexdigest()
            if digest in seen:
                continue
            try:
                im = Image.open(io.BytesIO(data))
                im.load()
            except Exception:  # noqa: BLE001 - a file Pillow cannot read is not a sample
                continue
            if min(im.size) < 32:
                continue
            seen.add(digest)
            if im.mode in ("RGBA", "LA", "P"):
                rgba = im.convert("RGBA")
                im = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
            out.append((f"fresh2-found:{group}", p, im))
    return out


def fresh2_images(per_kind: int = 25, globs: dict[str, str] = FOUND_GLOBS) -> list[tuple[str, str, Image.Image]]:
    """Every fresh2 picture as ``(group, name, Pillow image)``."""
    return generated(per_kind) + sample_series() + found(globs)
