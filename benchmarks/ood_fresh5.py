"""The ``fresh5`` set of non-X-rays for benchmarks/ood_detection.py: defined and committed after
``fresh4`` was defined and before any change designed on ``fresh4``'s misses (written without
looking at how the detector works); scored once, at the end.

Kinds none of the earlier sets has:

* generated (numpy, Pillow; deterministic, seeds 15000+), 20 each of 12 kinds. Other
  radiographs and medical images, the inputs a radiology user is most likely to feed by
  mistake, drawn as plausibly as numpy and Pillow allow (soft-tissue greys, brighter bone with a
  cortex, film grain and blur, dark background outside the body, the usual framing and
  markers): a frontal cervical spine, a frontal shoulder (humeral head, glenoid, clavicle and
  acromion), a lateral elbow, a lower-leg long film (tibia and fibula, sometimes a plate and
  screws), a frontal pelvis with one or two hip prostheses, a sinus film (Waters view), a barium
  study (double-contrast enema or small-bowel follow-through), a coronal CT of the abdomen
  (soft-tissue window), a sagittal T2 MRI of the lumbar spine, a whole-body bone scan
  (anterior and posterior), a digital subtraction angiogram (dark branching vessels on grey),
  and a 12-lead ECG printout;
* pictures found on the machine outside this project in folders no earlier set used (the
  Adwaita 96 px legacy, places and emblems icons, CMake's logo, Python 2.7's IDLE icons),
  deduplicated by content.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ood_fresh2 import _grey, draw_set, found

#: Generated kinds of fresh5.
KINDS5 = ("cspine-frontal", "shoulder", "elbow-lateral", "leg-long", "pelvis-prosthesis", "sinus-waters", "barium",
          "ct-coronal", "mri-spine-sagittal", "bone-scan", "angiogram", "ecg")

FOUND_GLOBS5 = {
    "adwaita-96-legacy": "/usr/share/icons/Adwaita/96x96/legacy/*.png",
    "adwaita-96-places": "/usr/share/icons/Adwaita/96x96/places/*.png",
    "adwaita-96-emblems": "/usr/share/icons/Adwaita/96x96/emblems/*.png",
    "cmake-logo": "/usr/share/doc/cmake-data/*.gif",
    "idle-icons-2.7": "/root/.pyenv/versions/2.7.18/lib/python2.7/idlelib/Icons/*",
}


# --- helpers ---------------------------------------------------------------------------------

def _film(a: np.ndarray, rng, blur: float = 1.2, grain: float = 0.02) -> Image.Image:
    """Densities -> a film-like grey picture with grain."""
    a = np.asarray(a, np.float64) + rng.normal(0, grain, np.shape(a))
    return _grey(a).filter(ImageFilter.GaussianBlur(blur))


def _smooth_noise(rng, h, w, cell: int) -> np.ndarray:
    """Smooth noise in [0, 1] with features about ``cell`` pixels across."""
    cell = max(2, int(cell))
    small = rng.random((max(2, h // cell + 2), max(2, w // cell + 2)))
    im = Image.fromarray((255 * small).astype(np.uint8)).resize((w + 2 * cell, h + 2 * cell), Image.BICUBIC)
    return np.asarray(im, np.float64)[cell:cell + h, cell:cell + w] / 255


def _layer(h, w, draw_fn, scale: int = 2) -> np.ndarray:
    """A float mask in [0, 1] of what ``draw_fn(ImageDraw, W, H)`` draws on a ``scale`` times
    larger canvas of W x H pixels (white on black), brought back to h x w."""
    im = Image.new("L", (w * scale, h * scale), 0)
    draw_fn(ImageDraw.Draw(im), w * scale, h * scale)
    if scale > 1:
        im = im.resize((w, h), Image.LANCZOS)
    return np.asarray(im, np.float64) / 255


def _bony(rng, m: np.ndarray, rim: float = 0.7, cortex: float = 0.012) -> np.ndarray:
    """A bone mask -> bone density: a bright cortex at the edges, a textured medulla inside."""
    h, w = m.shape
    k = max(3, int(cortex * min(h, w)) | 1)
    inner = np.asarray(Image.fromarray((255 * m).astype(np.uint8)).filter(ImageFilter.MinFilter(k)), np.float64) / 255
    trabecular = 0.85 + 0.3 * _smooth_noise(rng, h, w, max(2, min(h, w) // 120))
    return 0.6 * m * trabecular + rim * np.clip(m - inner, 0, 1)


def _thick(d, pts, width, fill=255):
    """A polyline with round joints and ends."""
    pts = [tuple(map(float, p)) for p in pts]
    d.line(pts, fill=fill, width=max(1, int(width)), joint="curve")
    r = width / 2
    for p in (pts[0], pts[-1]):
        d.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=fill)


def _marker(im: Image.Image, rng) -> Image.Image:
    """Most radiographs carry a lead side marker (a bright letter in a box) near a corner."""
    if rng.random() < 0.35:
        return im
    w, h = im.size
    s = max(12, int(min(w, h) * rng.uniform(0.05, 0.08)))
    letter = Image.new("L", (12, 14), 0)
    ImageDraw.Draw(letter).text((3, 1), str(rng.choice(["L", "R"])), fill=255)
    letter = letter.resize((s, int(s * 14 / 12)), Image.NEAREST)
    x0 = int(rng.choice([0.04, 0.82]) * w)
    y0 = int(rng.choice([0.04, 0.85]) * h)
    a = np.asarray(im, np.float64).copy()
    lm = np.asarray(letter, np.float64)[:h - y0, :w - x0]
    region = a[y0:y0 + lm.shape[0], x0:x0 + lm.shape[1]]
    region[:] = np.maximum(region, np.where(lm > 0, 245, region * 0.6 + 40))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def _overlay_text(im: Image.Image, rng, lines_tl, lines_br=()) -> Image.Image:
    """Viewer-style annotations in the corners of a scan."""
    mode = im.mode
    im = im.convert("L") if mode not in ("L", "RGB") else im.copy()
    d = ImageDraw.Draw(im)
    fill = 230 if im.mode == "L" else (230, 230, 230)
    w, h = im.size
    for i, line in enumerate(lines_tl):
        d.text((4, 3 + 11 * i), line, fill=fill)
    for i, line in enumerate(lines_br):
        d.text((w - 6 * len(line) - 6, h - 12 * (len(lines_br) - i) - 3), line, fill=fill)
    return im


def _grid(h, w):
    y, x = np.mgrid[0:h, 0:w]
    return y / h, x / w


# --- radiographs -----------------------------------------------------------------------------

def _cspine_frontal(rng, h, w):
    y, x = _grid(h, w)
    cx = 0.5 + rng.uniform(-0.03, 0.03)
    S = rng.uniform(0.9, 1.1)  # scale of the spine across the image
    half = 0.22 * S + 0.32 * np.clip((y - 0.74) / 0.26, 0, 1) ** 1.3  # neck widening into the shoulders
    body = np.abs(x - cx) < half
    a = 0.04 + 0.3 * body * (1 - 0.35 * (np.abs(x - cx) / half) ** 4)
    a -= 0.09 * np.exp(-((x - cx) / (0.035 * S)) ** 2) * (y > 0.3) * (y < 0.95)  # the tracheal air column
    a += 0.08 * np.exp(-((y - 0.05) / 0.1) ** 2)  # skull base and occiput at the top

    def verts(d, W, H):
        for i in range(6):
            cy = (0.28 + i * 0.1) * H
            vw, vh = 0.085 * S * W, 0.072 * H
            d.rounded_rectangle([cx * W - vw, cy, cx * W + vw, cy + vh], radius=int(vw * 0.15), fill=255)
            for side in (-1, 1):  # uncinate processes
                d.polygon([(cx * W + side * vw, cy + vh * 0.05), (cx * W + side * vw * 1.08, cy - vh * 0.18),
                           (cx * W + side * vw * 0.85, cy + vh * 0.05)], fill=255)
        d.rounded_rectangle([cx * W - 0.03 * S * W, 0.17 * H, cx * W + 0.03 * S * W, 0.3 * H], radius=int(0.02 * W),
                            fill=255)  # the dens behind the jaw

    def posterior(d, W, H):
        for i in range(7):
            cy = (0.26 + i * 0.1) * H
            for side in (-1, 1):  # the lateral masses / articular pillars, a wavy column each side
                px = cx * W + side * 0.115 * S * W
                d.ellipse([px - 0.035 * S * W, cy, px + 0.035 * S * W, cy + 0.09 * H], fill=200)
            d.ellipse([cx * W - 0.018 * W, cy + 0.05 * H, cx * W + 0.018 * W, cy + 0.085 * H], fill=255)  # spinous
        for side in (-1, 1):  # the first ribs, curving down and out from T1
            bx, by = cx * W + side * 0.1 * S * W, 0.9 * H
            d.arc([bx - 0.35 * W if side > 0 else bx - 0.05 * W, by - 0.05 * H,
                   bx + 0.05 * W if side < 0 else bx + 0.35 * W, by + 0.3 * H],
                  start=190 if side < 0 else 270, end=270 if side < 0 else 350, fill=200, width=max(2, int(0.025 * H)))

    def jaw_clavicles(d, W, H):
        jy = rng.uniform(0.2, 0.27) * H  # the mandible across the top of the neck
        d.arc([cx * W - 0.38 * W, -0.25 * H, cx * W + 0.38 * W, jy], start=10, end=170, fill=255,
              width=max(2, int(0.035 * H)))
        for i in range(10):  # lower teeth
            tx = cx * W + (i - 4.5) * 0.045 * W
            d.rounded_rectangle([tx - 0.017 * W, jy - rng.uniform(0.07, 0.1) * H + abs(i - 4.5) ** 2 * 0.002 * H,
                                 tx + 0.017 * W, jy - 0.02 * H + abs(i - 4.5) ** 2 * 0.002 * H],
                                radius=int(0.008 * W) + 1, fill=int(rng.integers(110, 170)))
        for side in (-1, 1):  # the clavicles, from the sternal notch out and up
            p0 = (cx * W + side * 0.07 * W, 0.96 * H)
            _thick(d, [p0, (cx * W + side * 0.25 * W, 0.9 * H), (cx * W + side * 0.5 * W, 0.86 * H)],
                   0.035 * H, fill=230)

    a += 0.35 * _bony(rng, _layer(h, w, verts)) * body
    a += 0.22 * _bony(rng, _layer(h, w, posterior), rim=0.4) * body
    a += 0.3 * _bony(rng, _layer(h, w, jaw_clavicles)) * body
    return _marker(_film(a, rng, blur=rng.uniform(1.0, 1.8), grain=0.02), rng)


def _shoulder(rng, h, w):
    y, x = _grid(h, w)
    hx, hy, hr = rng.uniform(0.6, 0.66), rng.uniform(0.36, 0.42), rng.uniform(0.12, 0.15)
    def outline(d, W, H):  # trunk, the trapezius slope, the deltoid cap and the arm
        cap = hr + rng.uniform(0.1, 0.14)
        d.polygon([(-0.1 * W, -0.1 * H), (0.12 * W, -0.1 * H), ((hx - 0.05) * W, (hy - cap) * H), (hx * W, (hy - cap) * H),
                   (hx * W, 1.1 * H), (-0.1 * W, 1.1 * H)], fill=255)
        d.ellipse([(hx - cap) * W, (hy - cap) * H, (hx + cap) * W, (hy + cap * 1.2) * H], fill=255)
        d.rectangle([(hx - cap) * W, hy * H, (hx + cap * 0.95) * W, 1.1 * H], fill=255)

    soft = _layer(h, w, outline)
    a = 0.05 + 0.3 * soft * (0.92 + 0.16 * _smooth_noise(rng, h, w, max(8, w // 10)))
    lung = (x < hx - hr - 0.04) & (y > 0.3) & (x > 0.02)
    a -= 0.09 * lung * np.clip((hx - hr - 0.04 - x) / 0.1, 0, 1)  # the lateral edge of the lung, medially

    def bones(d, W, H):
        # humerus: head, neck and shaft
        d.ellipse([(hx - hr) * W, (hy - hr) * H, (hx + hr) * W, (hy + hr) * H], fill=255)
        d.polygon([((hx - hr * 0.7) * W, hy * H), ((hx + hr * 1.02) * W, (hy - 0.02) * H),
                   ((hx + hr * 0.5) * W, (hy + hr * 1.6) * H), ((hx + hr * 0.45) * W, 1.05 * H),
                   ((hx - hr * 0.35) * W, 1.05 * H), ((hx - hr * 0.45) * W, (hy + hr * 1.4) * H)], fill=255)
        # glenoid and scapula
        gx = hx - hr * 1.05
        d.polygon([(gx * W, (hy - 0.1) * H), ((gx + 0.01) * W, (hy + 0.08) * H), ((gx - 0.12) * W, 0.95 * H),
                   ((gx - 0.17) * W, 0.95 * H), ((gx - 0.3) * W, 0.35 * H), ((gx - 0.25) * W, 0.27 * H)], fill=90)
        d.ellipse([(gx - 0.03) * W, (hy - 0.1) * H, (gx + 0.025) * W, (hy + 0.09) * H], fill=255)
        # acromion over the head, the coracoid hook, the clavicle
        _thick(d, [((gx - 0.15) * W, (hy - hr - 0.06) * H), ((hx + hr * 0.3) * W, (hy - hr - 0.05) * H)],
               0.045 * H, fill=230)
        _thick(d, [((gx - 0.03) * W, (hy - 0.14) * H), ((gx + 0.05) * W, (hy - 0.09) * H)], 0.03 * H, fill=230)
        _thick(d, [(-0.05 * W, (hy - hr - 0.02) * H), (0.2 * W, (hy - hr - 0.1) * H),
                   ((gx - 0.05) * W, (hy - hr - 0.08) * H), ((hx - 0.02) * W, (hy - hr - 0.07) * H)],
               0.05 * H, fill=255)

    def ribs(d, W, H):
        for i in range(5):
            ry = (0.3 + 0.14 * i) * H
            d.arc([-0.6 * W, ry - 0.1 * H, (hx - hr - 0.02) * W, ry + 0.25 * H], start=270, end=350, fill=255,
                  width=max(2, int(0.022 * H)))

    bone = _layer(h, w, bones)
    a += 0.35 * _bony(rng, bone, rim=0.8)
    a += 0.12 * _bony(rng, _layer(h, w, ribs), rim=0.5) * (1 - bone)
    a -= 0.05 * _layer(h, w, lambda d, W, H: d.ellipse([(hx - hr * 0.6) * W, (hy - hr * 0.6) * H,
                                                        (hx + hr * 0.5) * W, (hy + hr * 0.5) * H], fill=255))
    if rng.random() < 0.5:
        a = a[:, ::-1]
    return _marker(_film(a, rng, blur=rng.uniform(1.0, 1.8)), rng)


def _elbow_lateral(rng, h, w):
    n = max(h, w)
    J = np.array([0.47, 0.5]) * n
    hum_ang = np.deg2rad(rng.uniform(-15, 15))  # the humerus comes down from the top
    u_hum = np.array([np.sin(hum_ang), -np.cos(hum_ang)])
    flex = np.deg2rad(rng.uniform(80, 110))  # the forearm goes off to the right, flexed about 90 degrees
    fa = hum_ang + np.pi - flex
    u_fa = np.array([np.sin(fa), -np.cos(fa)])
    nrm = np.array([-u_fa[1], u_fa[0]])
    if nrm @ u_hum < 0:
        nrm = -nrm
    sc = rng.uniform(0.9, 1.1) * n

    def P(v):
        return tuple(map(float, v))

    def tissue(d, W, H):
        k = W / w
        _thick(d, [P(k * J), P(k * (J + 0.7 * sc * u_hum))], 0.3 * sc * k)
        _thick(d, [P(k * J), P(k * (J + 0.75 * sc * u_fa))], 0.25 * sc * k)
        d.ellipse([k * (J[0] - 0.17 * sc), k * (J[1] - 0.17 * sc), k * (J[0] + 0.17 * sc), k * (J[1] + 0.17 * sc)],
                  fill=255)

    def bones(d, W, H):
        k = W / w
        _thick(d, [P(k * (J + 0.04 * sc * u_hum)), P(k * (J + 0.8 * sc * u_hum))], 0.1 * sc * k)  # humerus
        d.polygon([P(k * (J + 0.2 * sc * u_hum + 0.06 * sc * nrm)), P(k * (J + 0.02 * sc * nrm + 0.07 * sc * u_fa)),
                   P(k * (J - 0.05 * sc * u_fa)), P(k * (J + 0.2 * sc * u_hum - 0.05 * sc * nrm))], fill=255)
        r = 0.07 * sc * k  # trochlea and capitulum: overlapping circles
        d.ellipse([k * J[0] - r, k * J[1] - r, k * J[0] + r, k * J[1] + r], fill=255)
        ol = J - 0.09 * sc * u_fa - 0.01 * sc * nrm  # the olecranon behind the trochlea
        _thick(d, [P(k * ol), P(k * (J - 0.04 * sc * nrm + 0.15 * sc * u_fa)), P(k * (J - 0.03 * sc * nrm + 0.85 * sc * u_fa))],
               0.06 * sc * k)  # ulna
        _thick(d, [P(k * (J + 0.07 * sc * nrm + 0.08 * sc * u_fa)), P(k * (J + 0.05 * sc * nrm + 0.85 * sc * u_fa))],
               0.045 * sc * k)  # radius
        rh = J + 0.065 * sc * nrm + 0.08 * sc * u_fa  # the radial head
        d.ellipse([k * (rh[0] - 0.04 * sc), k * (rh[1] - 0.04 * sc), k * (rh[0] + 0.04 * sc), k * (rh[1] + 0.04 * sc)],
                  fill=255)

    def rings(d, W, H):
        k = W / w
        for rr in (0.07, 0.045):
            r = rr * sc * k
            d.ellipse([k * J[0] - r, k * J[1] - r, k * J[0] + r, k * J[1] + r], outline=255, width=max(1, int(0.008 * sc * k)))

    t = _layer(h, w, tissue)
    a = 0.05 + 0.3 * t * (0.92 + 0.16 * _smooth_noise(rng, h, w, max(8, n // 10)))
    a -= 0.05 * _layer(h, w, lambda d, W, H: d.ellipse(  # the anterior fat pad
        [W / w * (J[0] + 0.06 * sc * u_hum[0] + 0.1 * sc * nrm[0]) - 0.03 * sc * W / w,
         H / h * (J[1] + 0.06 * sc * u_hum[1] + 0.1 * sc * nrm[1]) - 0.015 * sc * W / w,
         W / w * (J[0] + 0.06 * sc * u_hum[0] + 0.1 * sc * nrm[0]) + 0.03 * sc * W / w,
         H / h * (J[1] + 0.06 * sc * u_hum[1] + 0.1 * sc * nrm[1]) + 0.015 * sc * W / w], fill=255))
    a += 0.4 * _bony(rng, _layer(h, w, bones), rim=0.8, cortex=0.01)
    a += 0.06 * _layer(h, w, rings)
    if rng.random() < 0.5:
        a = a[:, ::-1]
    im = _film(a, rng, blur=rng.uniform(0.8, 1.5))
    return _marker(im.rotate(rng.uniform(-20, 20), resample=Image.BICUBIC, fillcolor=int(np.asarray(im)[:5, :5].mean())), rng)


def _leg_long(rng, h, w):
    L = min(0.55 * w, 0.3 * h) * rng.uniform(0.85, 1.1)  # the width of the knee, in pixels
    cx0 = w / 2 + rng.uniform(-0.08, 0.08) * w
    tilt = rng.uniform(-0.03, 0.03)
    ys = np.linspace(-0.02, 1.02, 60) * h

    def cx(yy):
        return cx0 + tilt * (yy - h / 2)

    def outline(widths):
        left = [(cx(yy) - wd(yy / h) * L, yy) for yy in ys for wd in [widths]]
        right = [(cx(yy) + wd(yy / h) * L, yy) for yy in ys[::-1] for wd in [widths]]
        return left + right

    def calf(t):
        return 0.62 + 0.12 * np.exp(-((t - 0.3) / 0.15) ** 2) - 0.22 * np.clip((t - 0.6) / 0.3, 0, 1)

    def tissue(d, W, H):
        k = W / w
        d.polygon([(px * k, py * k) for px, py in outline(calf)], fill=255)

    def tib_half(t):
        return 0.14 + 0.26 * np.exp(-(max(t - 0.08, 0) / 0.05) ** 2) + 0.13 * np.exp(-((t - 0.94) / 0.04) ** 2)

    def bones(d, W, H):
        k = W / w
        med = -0.08 * L  # the tibia medial of the midline, the fibula lateral
        left = [((cx(yy) + med - tib_half(yy / h) * L) * k, yy * k) for yy in ys if 0.07 * h < yy < 0.965 * h]
        right = [((cx(yy) + med + tib_half(yy / h) * L * 0.9) * k, yy * k) for yy in ys[::-1] if 0.07 * h < yy < 0.965 * h]
        d.polygon(left + right, fill=255)
        # femoral condyles at the top, the patella over them
        for side in (-1, 1):
            d.ellipse([(cx(0) + side * 0.2 * L - 0.22 * L) * k, (0.055 * h - 0.5 * L) * k,
                       (cx(0) + side * 0.2 * L + 0.22 * L) * k, 0.055 * h * k], fill=255)
        d.rectangle([(cx(0) - 0.4 * L) * k, -10, (cx(0) + 0.4 * L) * k, max(-5.0, (0.055 * h - 0.2 * L) * k)],
                    fill=255)
        # the fibula: head below the lateral plateau, thin shaft, lateral malleolus
        fx = 0.3 * L
        _thick(d, [((cx(0.12 * h) + fx) * k, 0.12 * h * k), ((cx(0.5 * h) + fx * 0.85) * k, 0.5 * h * k),
                   ((cx(0.97 * h) + fx * 1.05) * k, 0.97 * h * k)], 0.07 * L * k)
        d.ellipse([(cx(0.12 * h) + fx - 0.08 * L) * k, 0.1 * h * k, (cx(0.12 * h) + fx + 0.08 * L) * k,
                   (0.1 * h + 0.18 * L) * k], fill=255)
        # the talus at the bottom
        d.ellipse([(cx(h) - 0.3 * L) * k, 0.975 * h * k, (cx(h) + 0.25 * L) * k, (0.975 * h + 0.4 * L) * k], fill=255)

    def patella(d, W, H):
        k = W / w
        d.ellipse([(cx(0) - 0.17 * L) * k, (0.055 * h - 0.35 * L) * k, (cx(0) + 0.17 * L) * k, (0.055 * h + 0.05 * L) * k],
                  fill=255)

    leg = _layer(h, w, tissue)
    a = 0.04 + 0.3 * leg * (0.92 + 0.16 * _smooth_noise(rng, h, w, max(8, h // 12)))
    a += 0.4 * _bony(rng, _layer(h, w, bones), rim=0.9, cortex=0.02)
    a += 0.08 * _layer(h, w, patella)
    a -= 0.06 * (np.abs(_grid(h, w)[0] - 0.065) < 0.004) * leg  # the joint space of the knee
    if rng.random() < 0.35:  # a plate and screws on the tibia
        y0 = rng.uniform(0.3, 0.55)

        def plate(d, W, H):
            k = W / w
            px = cx(y0 * h) - 0.08 * L - 0.16 * L
            d.rectangle([(px - 0.05 * L) * k, y0 * h * k, (px + 0.05 * L) * k, (y0 + 0.3) * h * k], fill=255)
            for j in range(6):
                sy = (y0 + 0.02 + j * 0.05) * h * k
                d.rectangle([(px - 0.06 * L) * k, sy, (px + 0.32 * L) * k, sy + 0.025 * L * k], fill=255)

        a = np.maximum(a, 1.6 * _layer(h, w, plate))
    if rng.random() < 0.5:
        a = a[:, ::-1]
    return _marker(_film(a, rng, blur=rng.uniform(0.9, 1.6)), rng)


def _pelvis_prosthesis(rng, h, w):
    y, x = _grid(h, w)
    a = 0.05 + 0.33 * (np.abs(x - 0.5) < 0.48 + 0.02 * y) * (1 - 0.4 * ((x - 0.5) / 0.5) ** 4)
    a += 0.05 * np.exp(-((y - 0.2) / 0.15) ** 2) * (np.abs(x - 0.5) < 0.3)  # bowel and soft tissue over the sacrum
    a -= 0.06 * (_smooth_noise(rng, h, w, max(6, w // 25)) > 0.7) * (y < 0.45) * (np.abs(x - 0.5) < 0.35)  # bowel gas
    sides = [-1, 1]
    implant = {s: rng.random() < 0.6 for s in sides}
    if not any(implant.values()):
        implant[int(rng.choice(sides))] = True

    def pelvis(d, W, H):
        d.rounded_rectangle([0.44 * W, -0.05 * H, 0.56 * W, 0.08 * H], radius=int(0.01 * W), fill=200)  # L5
        d.polygon([(0.42 * W, 0.12 * H), (0.58 * W, 0.12 * H), (0.53 * W, 0.5 * H), (0.47 * W, 0.5 * H)], fill=200)
        for s in sides:
            cx = 0.5 + s * 0.26
            d.chord([(cx - 0.22) * W, 0.04 * H, (cx + 0.22) * W, 0.7 * H], start=190 if s < 0 else 200,
                    end=340 if s < 0 else 350, fill=170)  # iliac wings
            d.polygon([((0.5 + s * 0.06) * W, 0.2 * H), ((0.5 + s * 0.4) * W, 0.3 * H), ((0.5 + s * 0.3) * W, 0.58 * H),
                       ((0.5 + s * 0.08) * W, 0.45 * H)], fill=170)
            d.ellipse([(0.5 + s * 0.16 - 0.09) * W, 0.66 * H, (0.5 + s * 0.16 + 0.09) * W, 0.92 * H], fill=220)  # pubis/ischium
            d.line([((0.5 + s * 0.01) * W, 0.74 * H), ((0.5 + s * 0.2) * W, 0.6 * H)], fill=220, width=max(2, int(0.05 * H)))
            d.ellipse([(0.5 + s * 0.26 - 0.1) * W, 0.42 * H, (0.5 + s * 0.26 + 0.1) * W, 0.66 * H], fill=230)  # acetabulum
            # the femur: head, neck, trochanter and shaft
            fx, fy = 0.5 + s * 0.27, 0.55
            d.ellipse([(fx - 0.075) * W, (fy - 0.1) * H, (fx + 0.075) * W, (fy + 0.1) * H], fill=230)
            d.polygon([(fx * W, (fy - 0.06) * H), ((fx + s * 0.12) * W, (fy + 0.02) * H), ((fx + s * 0.13) * W, (fy + 0.16) * H),
                       ((fx + s * 0.02) * W, (fy + 0.12) * H)], fill=230)
            d.polygon([((fx + s * 0.03) * W, (fy + 0.1) * H), ((fx + s * 0.15) * W, (fy + 0.1) * H),
                       ((fx + s * 0.13) * W, 1.05 * H), ((fx + s * 0.04) * W, 1.05 * H)], fill=230)

    def holes(d, W, H):
        d.ellipse([0.36 * W, 0.3 * H, 0.64 * W, 0.68 * H], outline=255, width=max(2, int(0.03 * H)))  # pelvic brim
        for s in sides:  # obturator foramina
            d.ellipse([(0.5 + s * 0.15 - 0.06) * W, 0.7 * H, (0.5 + s * 0.15 + 0.06) * W, 0.86 * H], fill=255)
        d.ellipse([0.25 * W, 0.22 * H, 0.75 * W, 0.45 * H], fill=128)  # true pelvis less dense

    def metal(d, W, H):
        for s in sides:
            if not implant[s]:
                continue
            fx, fy = 0.5 + s * 0.27, 0.55
            d.pieslice([(fx - 0.09) * W, (fy - 0.12) * H, (fx + 0.09) * W, (fy + 0.12) * H],
                       start=150 if s < 0 else 210, end=330 if s < 0 else 30, fill=255)  # acetabular cup
            d.pieslice([(fx - 0.07) * W, (fy - 0.095) * H, (fx + 0.07) * W, (fy + 0.095) * H],
                       start=150 if s < 0 else 210, end=330 if s < 0 else 30, fill=0)
            d.ellipse([(fx - 0.06) * W, (fy - 0.08) * H, (fx + 0.06) * W, (fy + 0.08) * H], fill=255)  # ball
            stem_len = rng.uniform(0.4, 0.5)
            d.polygon([(fx * W, fy * H), ((fx + s * 0.09) * W, (fy + 0.08) * H), ((fx + s * 0.095) * W, (fy + 0.15) * H),
                       ((fx + s * 0.085) * W, (fy + stem_len) * H), ((fx + s * 0.07) * W, (fy + stem_len) * H),
                       ((fx + s * 0.05) * W, (fy + 0.15) * H), ((fx + s * 0.02) * W, (fy + 0.08) * H)], fill=255)
            if rng.random() < 0.4:  # screws through the cup
                for t in (-0.4, 0.3):
                    d.line([((fx - s * 0.03) * W, (fy - 0.08) * H),
                            ((fx - s * 0.03 + np.sin(t) * 0.08) * W, (fy - 0.08 - np.cos(t) * 0.15) * H)],
                           fill=255, width=max(2, int(0.012 * W)))

    def cement(d, W, H):
        for s in sides:
            if implant[s] and rng.random() < 0.6:
                fx, fy = 0.5 + s * 0.27, 0.55
                d.polygon([((fx + s * 0.03) * W, (fy + 0.07) * H), ((fx + s * 0.12) * W, (fy + 0.12) * H),
                           ((fx + s * 0.1) * W, (fy + 0.5) * H), ((fx + s * 0.06) * W, (fy + 0.5) * H)], fill=255)

    a += 0.3 * _bony(rng, _layer(h, w, pelvis), rim=0.7) - 0.08 * _layer(h, w, holes)
    a += 0.15 * _layer(h, w, cement)
    m = _layer(h, w, metal)
    a = np.where(m > 0.5, 1.4, a + 1.0 * m)
    for _ in range(int(rng.integers(0, 14)) if rng.random() < 0.4 else 0):  # skin staples along the incision
        s = [s for s in sides if implant[s]][0]
        sy, sx = rng.uniform(0.45, 0.85), 0.5 + s * 0.4
        yy, xx = int(sy * h), int(sx * w)
        a[max(0, yy - 1):yy + 2, max(0, xx - 4):xx + 5] = 1.4
    return _marker(_film(a, rng, blur=rng.uniform(0.8, 1.4)), rng)


def _sinus_waters(rng, h, w):
    y, x = _grid(h, w)
    asp = w / h
    cx, cy = 0.5 + rng.uniform(-0.02, 0.02), 0.5
    rx, ry = 0.4 / asp ** 0.5 if asp > 1 else 0.42, 0.46
    r = np.hypot((x - cx) / rx, (y - cy) / ry)
    a = 0.04 + 0.28 * (r < 1.06) * (1 - 0.3 * r ** 6 * (r < 1.06))
    a += 0.35 * (np.abs(r - 1.0) < 0.03) * (y < cy + 0.1) + 0.12 * ((r > 0.94) & (r < 1.0)) * (y < cy + 0.1)  # vault
    a += 0.05 * _smooth_noise(rng, h, w, max(4, h // 30)) * (r < 1)

    def dark(d, W, H):  # air: frontal sinus, orbits (less), maxillary sinuses, nasal cavity
        X, Y = cx * W, cy * H
        for i in range(int(rng.integers(2, 5))):
            fx = X + (i - 1.5) * 0.04 * W
            d.ellipse([fx - 0.035 * W, Y - 0.36 * H, fx + 0.035 * W, Y - 0.25 * H], fill=255)
        for s in (-1, 1):
            if s == 1 and rng.random() < 0.25:  # an opaque antrum (sinusitis) now and then
                continue
            level = rng.uniform(0.0, 0.1) if rng.random() < 0.2 else 0.2
            d.polygon([(X + s * 0.05 * W, Y - 0.06 * H), (X + s * 0.22 * W, Y - 0.07 * H), (X + s * 0.2 * W, Y + level * H),
                       (X + s * 0.1 * W, Y + 0.13 * H), (X + s * 0.05 * W, Y + 0.08 * H)], fill=255)
        d.polygon([(X - 0.04 * W, Y - 0.12 * H), (X + 0.04 * W, Y - 0.12 * H), (X + 0.055 * W, Y + 0.12 * H),
                   (X - 0.055 * W, Y + 0.12 * H)], fill=255)

    def orbits(d, W, H):
        X, Y = cx * W, cy * H
        for s in (-1, 1):
            d.ellipse([X + s * 0.16 * W - 0.11 * W, Y - 0.28 * H, X + s * 0.16 * W + 0.11 * W, Y - 0.08 * H], fill=255)

    def bright(d, W, H):
        X, Y = cx * W, cy * H
        lw = max(2, int(0.018 * H))
        for s in (-1, 1):
            ox, oy = X + s * 0.16 * W, Y - 0.18 * H
            rim = [(ox + (0.11 + rng.normal(0, 0.006)) * W * np.cos(t), oy + (0.1 + rng.normal(0, 0.006)) * H * np.sin(t))
                   for t in np.linspace(0, 2 * np.pi, 25)]
            d.line(rim, fill=int(rng.integers(150, 200)), width=int(lw * 1.6), joint="curve")  # orbital rims
            d.arc([X + s * 0.28 * W - 0.1 * W, Y - 0.15 * H, X + s * 0.28 * W + 0.1 * W, Y + 0.02 * H],
                  start=0 if s > 0 else 90, end=90 if s > 0 else 180, fill=230, width=lw)  # zygomatic arches
            _thick(d, [(X + s * 0.1 * W, Y + 0.18 * H), (X + s * 0.25 * W, Y + 0.14 * H), (X + s * 0.4 * W, Y + 0.1 * H)],
                   0.03 * H, fill=200)  # petrous ridges, projected below the antra
            d.line([(X + s * 0.22 * W, Y - 0.07 * H), (X + s * 0.2 * W, Y + 0.15 * H)], fill=200, width=lw)  # antral walls
        d.line([(X, Y - 0.12 * H), (X + 0.005 * W, Y + 0.12 * H)], fill=220, width=max(1, lw // 2))  # nasal septum
        for s in (-1, 1):  # the mandible: rami up the sides, the body across the bottom
            _thick(d, [(X + s * 0.33 * W, Y + 0.02 * H), (X + s * 0.31 * W, Y + 0.3 * H), (X + s * 0.15 * W, Y + 0.42 * H),
                       (X, Y + 0.45 * H)], 0.06 * H, fill=110)
        for i in range(12):  # upper teeth, superimposed on the hard palate
            tx = X + (i - 5.5) * 0.032 * W
            ty = Y + 0.17 * H - abs(i - 5.5) ** 2 * 0.002 * H + rng.normal(0, 0.004) * H
            d.rounded_rectangle([tx - 0.013 * W, ty, tx + 0.013 * W, ty + rng.uniform(0.05, 0.08) * H],
                                radius=int(0.008 * W) + 1, fill=int(rng.integers(120, 170)))
        d.rounded_rectangle([X - 0.05 * W, Y + 0.28 * H, X + 0.05 * W, Y + 0.42 * H], radius=int(0.02 * W), fill=90)  # C2

    a -= 0.15 * _layer(h, w, dark) + 0.05 * _layer(h, w, orbits)
    a += 0.3 * _bony(rng, _layer(h, w, bright), rim=0.5, cortex=0.006) / 0.6
    return _marker(_film(a, rng, blur=rng.uniform(1.2, 2.0)), rng)


def _barium(rng, h, w):
    y, x = _grid(h, w)
    flank = 0.46 + 0.03 * np.sin(y * 3)
    body = np.abs(x - 0.5) < flank
    a = 0.05 + 0.3 * body * (1 - 0.5 * (np.abs(x - 0.5) / flank) ** 4)

    def skeleton(d, W, H):
        for i in range(5):
            cy = (0.02 + i * 0.13) * H
            d.rounded_rectangle([0.45 * W, cy, 0.55 * W, cy + 0.1 * H], radius=int(0.01 * W), fill=200)
        d.polygon([(0.44 * W, 0.68 * H), (0.56 * W, 0.68 * H), (0.52 * W, H), (0.48 * W, H)], fill=190)
        for s in (-1, 1):
            c = 0.5 + s * 0.27
            d.arc([(c - 0.2) * W, 0.62 * H, (c + 0.2) * W, 1.3 * H], start=180, end=360, fill=230, width=max(2, int(0.012 * W)))

    a += 0.12 * _layer(h, w, skeleton) * body
    double = rng.random() < 0.5

    def contrast(d, W, H):
        if rng.random() < 0.5:  # barium enema: rectum, sigmoid, colon frame with haustra
            frame = [(0.5, 1.05), (0.5, 0.85), (0.42, 0.75), (0.62, 0.68), (0.78, 0.6), (0.8, 0.35), (0.75, 0.18),
                     (0.55, 0.25 + rng.uniform(-0.05, 0.12)), (0.3, 0.2), (0.2, 0.3), (0.2, 0.6), (0.24, 0.75)]
            pts = np.array([(W * (px + rng.normal(0, 0.012)), H * (py + rng.normal(0, 0.012))) for px, py in frame])
            path = []
            for p, q in zip(pts[:-1], pts[1:]):
                for t in np.linspace(0, 1, 14, endpoint=False):
                    path.append(p + (q - p) * t)
            base = W * rng.uniform(0.035, 0.05)
            radii = [base * (1.1 if i < 20 else 1.0) * (1 + 0.18 * np.cos(i * 2 * np.pi / 5)) for i in range(len(path))]
            for c, r in zip(path, radii):
                d.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=255)
            if double:
                for c, r in zip(path, radii):
                    r *= 0.72
                    d.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=110)
        else:  # small-bowel follow-through: stomach, duodenal loop, coiled jejunum and ileum
            d.chord([0.55 * W, 0.0 * H, 0.85 * W, 0.35 * H], start=0, end=260, fill=255)
            _thick(d, [(0.58 * W, 0.25 * H), (0.48 * W, 0.28 * H), (0.42 * W, 0.36 * H), (0.45 * W, 0.42 * H),
                       (0.55 * W, 0.4 * H)], 0.04 * W)
            for _ in range(int(rng.integers(8, 16))):
                c = np.array([W * rng.uniform(0.25, 0.75), H * rng.uniform(0.35, 0.85)])
                ang = rng.uniform(0, 2 * np.pi)
                pts = [tuple(c)]
                for _s in range(int(rng.integers(6, 14))):
                    ang += rng.normal(0, 0.8)
                    c = c + W * 0.035 * np.array([np.cos(ang), np.sin(ang)])
                    pts.append(tuple(c))
                d.line(pts, fill=int(rng.integers(170, 256)), width=max(2, int(W * rng.uniform(0.025, 0.04))), joint="curve")

    ba = _layer(h, w, contrast)
    feather = 0.85 + 0.15 * (_smooth_noise(rng, h, w, max(3, w // 80)) > 0.5)
    a += 0.9 * ba * feather
    return _marker(_film(a, rng, blur=rng.uniform(0.8, 1.5), grain=0.02), rng)


# --- cross-sectional and other medical images ------------------------------------------------

def _ct_coronal(rng, h, w):
    y, x = _grid(h, w)
    asp = w / h
    # Hounsfield-like values, shown in a soft-tissue window at the end
    half = (0.38 + 0.04 * np.sin(np.pi * y)) / max(asp, 1) ** 0.5 * rng.uniform(0.9, 1.05)
    r = np.abs(x - 0.5) / half
    hu = np.where(r < 1, 40.0, -1000.0)
    hu = np.where((r < 1) & (r > 0.86), -100.0, hu)  # subcutaneous fat
    hu = np.where((r < 0.86) & (r > 0.8), 55.0, hu)  # abdominal wall muscle
    inner = r < 0.8
    loops = _smooth_noise(rng, h, w, max(4, w // 16))  # bowel loops in mesenteric fat, some holding air or contrast
    gut = np.where(loops > 0.42, 35.0, -90.0)
    gut = np.where((loops > 0.55) & (_smooth_noise(rng, h, w, max(4, w // 12)) > 0.7), -900.0, gut)
    gut = np.where((loops > 0.55) & (_smooth_noise(rng, h, w, max(4, w // 12)) > 0.75), 280.0, gut)
    hu = np.where(inner, gut, hu)

    def organ(fn):
        return _layer(h, w, fn) > 0.5

    def X(v):
        return (0.5 + (v - 0.5) * half.mean() / 0.4)

    lung = organ(lambda d, W, H: [d.chord([X(0.5 + s * 0.2 - 0.17) * W, -0.15 * H, X(0.5 + s * 0.2 + 0.17) * W, 0.2 * H],
                                          start=180, end=360, fill=255) for s in (-1, 1)]) & inner
    liver = organ(lambda d, W, H: d.polygon([(X(0.15) * W, 0.08 * H), (X(0.55) * W, 0.08 * H), (X(0.5) * W, 0.25 * H),
                                             (X(0.35) * W, 0.45 * H), (X(0.17) * W, 0.5 * H)], fill=255)) & inner
    spleen = organ(lambda d, W, H: d.ellipse([X(0.7) * W, 0.09 * H, X(0.84) * W, 0.3 * H], fill=255)) & inner
    kidneys = organ(lambda d, W, H: [d.ellipse([X(0.5 + s * 0.2 - 0.06) * W, (0.36 - 0.03 * s) * H,
                                                X(0.5 + s * 0.2 + 0.06) * W, (0.58 - 0.03 * s) * H], fill=255) for s in (-1, 1)])
    pelvis_s = organ(lambda d, W, H: [d.ellipse([X(0.5 + s * 0.2 - 0.03) * W, 0.4 * H, X(0.5 + s * 0.2 + 0.02) * W,
                                                 0.5 * H], fill=255) for s in (-1, 1)])
    bladder = organ(lambda d, W, H: d.ellipse([X(0.4) * W, 0.82 * H, X(0.6) * W, 1.0 * H], fill=255)) & inner
    psoas = organ(lambda d, W, H: [d.polygon([(X(0.5 + s * 0.05) * W, 0.45 * H), (X(0.5 + s * 0.1) * W, 0.55 * H),
                                              (X(0.5 + s * 0.16) * W, 0.85 * H), (X(0.5 + s * 0.07) * W, 0.85 * H)], fill=255)
                                   for s in (-1, 1)])
    aorta = organ(lambda d, W, H: (d.line([(X(0.54) * W, 0.05 * H), (X(0.54) * W, 0.62 * H)], fill=255,
                                          width=max(2, int(0.035 * W))),
                                   [d.line([(X(0.54) * W, 0.62 * H), (X(0.5 + s * 0.12) * W, 0.8 * H)], fill=255,
                                           width=max(2, int(0.022 * W))) for s in (-1, 1)]))
    hu = np.where(lung, -850 + 60 * _smooth_noise(rng, h, w, 3), hu)
    hu = np.where(liver, 100 + 8 * _smooth_noise(rng, h, w, 5), hu)
    hu = np.where(spleen, 110.0, hu)
    hu = np.where(psoas, 50.0, hu)
    hu = np.where(kidneys, 160.0, hu)
    hu = np.where(pelvis_s, 5.0, hu)
    hu = np.where(bladder, 8.0, hu)
    hu = np.where(aorta & inner, 220.0, hu)

    def spine(d, W, H):
        for i in range(8):
            cy = (0.06 + i * 0.085) * H
            d.rounded_rectangle([X(0.455) * W, cy, X(0.545) * W, cy + 0.07 * H], radius=int(0.008 * W), fill=255)
        d.polygon([(X(0.44) * W, 0.75 * H), (X(0.56) * W, 0.75 * H), (X(0.53) * W, 0.95 * H), (X(0.47) * W, 0.95 * H)],
                  fill=255)
        for s in (-1, 1):
            d.arc([X(0.5 + s * 0.28 - 0.16) * W, 0.72 * H, X(0.5 + s * 0.28 + 0.16) * W, 1.3 * H],
                  start=200 if s < 0 else 270, end=270 if s < 0 else 340, fill=255, width=max(3, int(0.018 * W)))  # iliac wings
            for j in range(3):  # lowest ribs in cross-section along the flanks
                ry = (0.1 + j * 0.1) * H
                d.ellipse([X(0.5 + s * 0.36) * W - 0.012 * W, ry, X(0.5 + s * 0.36) * W + 0.012 * W, ry + 0.03 * H], fill=255)

    column = _layer(h, w, lambda d, W, H: d.rectangle([X(0.46) * W, 0.05 * H, X(0.54) * W, 0.76 * H], fill=255))
    hu = np.where(column > 0.5, 80.0, hu)  # the discs between the bodies
    bone = _layer(h, w, spine)
    hu = np.where(bone > 0.3, 150 + 900 * _bony(rng, bone, rim=0.9) * (0.6 + 0.4 * _smooth_noise(rng, h, w, 3)), hu)
    hu += rng.normal(0, 12, hu.shape)
    wl, ww = rng.choice([40, 50, 60]), rng.choice([350, 400, 450])
    a = np.clip((hu - (wl - ww / 2)) / ww, 0, 1)
    im = Image.fromarray((255 * a).astype(np.uint8)).filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 0.9)))
    if rng.random() < 0.7:
        im = _overlay_text(im, rng, [f"SE {int(rng.integers(2, 9))} IM {int(rng.integers(20, 180))}", "COR 3.0mm"],
                           [f"W {ww} L {wl}", f"{int(rng.integers(100, 140))} kV"])
    return im


def _mri_spine_sagittal(rng, h, w):
    y, x = _grid(h, w)
    front = rng.random() < 0.5
    xs = 0.42 + 0.06 * np.sin(np.pi * y) + rng.uniform(-0.04, 0.04)  # the anterior edge of the bodies (lordosis)
    u = x - xs  # distance behind the front of the bodies
    a = np.zeros((h, w))
    skin_front, skin_back = xs - rng.uniform(0.25, 0.32), xs + rng.uniform(0.42, 0.5)
    inside = (x > skin_front) & (x < skin_back)
    a += inside * (0.3 + 0.1 * _smooth_noise(rng, h, w, max(4, w // 25)))  # bowel and abdominal contents, mixed
    a += 0.5 * inside * (_smooth_noise(rng, h, w, max(4, w // 18)) > 0.75) * (u < -0.05)  # fluid in bowel
    a = np.where(inside & ((x < skin_front + 0.04) | (x > skin_back - 0.06)), 0.75, a)  # subcutaneous fat
    a = np.where((u > 0.2) & (u < skin_back - xs - 0.06), 0.22 + 0.06 * _smooth_noise(rng, h, w, 6), a)  # paraspinal muscle
    a = np.where((u > -0.06) & (u < 0.0), 0.2, a)  # the aorta and psoas in front (flow void, dark)
    n = 7
    level_h = 1.0 / (n - 0.6)
    for i in range(n):
        top = -0.2 * level_h + i * level_h
        body = (u > 0) & (u < 0.17) & (y > top) & (y < top + 0.78 * level_h)
        a = np.where(body, 0.42 + 0.1 * _smooth_noise(rng, h, w, 5), a)
        a = np.where(body & ((u < 0.008) | (u > 0.162) | (y < top + 0.01) | (y > top + 0.77 * level_h)), 0.08, a)
        disc = (u > 0.005) & (u < 0.165) & (y >= top + 0.78 * level_h) & (y < top + level_h)
        bright = 0.8 if rng.random() < 0.7 else 0.3
        nucleus = np.exp(-((u - 0.085) / 0.05) ** 2 - ((y - top - 0.89 * level_h) / (0.05 * level_h)) ** 2)
        a = np.where(disc, 0.2 + (bright - 0.2) * nucleus, a)
        sp = (u > 0.27) & (u < 0.37) & (y > top + 0.2 * level_h) & (y < top + 0.65 * level_h)  # spinous process
        a = np.where(sp, 0.35, a)
    canal = (u > 0.17) & (u < 0.235)
    a = np.where(canal, 0.92, a)  # CSF
    conus_end = rng.uniform(0.25, 0.4)
    cord = (np.abs(u - 0.2) < 0.015 * np.clip((conus_end - y) / 0.05, 0, 1)) & canal
    a = np.where(cord, 0.35, a)
    roots = canal & (y > conus_end) & (np.sin((u - 0.17) * 600) > 0.85)
    a = np.where(roots, 0.55, a)
    a = np.where((u > 0.235) & (u < 0.27), 0.18, a)  # ligaments and laminae, dark
    a = np.abs(a + rng.normal(0, 0.03, a.shape) + 1j * rng.normal(0, 0.03, a.shape))  # Rician background noise
    if front:
        a = a[:, ::-1]
    im = Image.fromarray((255 * np.clip(a, 0, 1)).astype(np.uint8)).filter(ImageFilter.GaussianBlur(rng.uniform(0.6, 1.1)))
    if rng.random() < 0.7:
        im = _overlay_text(im, rng, ["T2 TSE SAG", f"TR {int(rng.integers(2500, 4500))} TE {int(rng.integers(90, 120))}"],
                           [f"SL {int(rng.integers(5, 13))}/15"])
    return im


def _bone_scan(rng, h, w):
    H0, W0 = 256, 128  # one view at its native matrix, drawn twice side by side

    def skeleton(d, hot):
        c, s = W0 / 2, H0 / 256
        d.ellipse([c - 16, 4, c + 16, 40], outline=160, width=4)  # skull
        d.ellipse([c - 12, 26, c + 12, 48], outline=140, width=3)  # face and jaw
        for i in range(24):  # the spine, brighter lower down
            d.rectangle([c - 4, 50 + i * 4.3, c + 4, 53 + i * 4.3], fill=140 + 3 * i)
        for i in range(10):  # ribs
            yy = 60 + i * 7
            for sd in (-1, 1):
                d.arc([c - 2 if sd > 0 else c - 32 + i, yy - 6, c + 32 - i if sd > 0 else c + 2, yy + 14],
                      start=180 if sd < 0 else 270, end=270 if sd < 0 else 360, fill=110, width=2)
        d.line([(c, 56), (c, 92)], fill=150, width=4)  # sternum
        for sd in (-1, 1):
            d.line([(c + sd * 4, 54), (c + sd * 26, 50)], fill=150, width=3)  # clavicles
            d.ellipse([c + sd * 26 - 6, 46, c + sd * 26 + 6, 58], fill=200)  # shoulders
            d.line([(c + sd * 28, 56), (c + sd * 34, 110)], fill=130, width=4)  # humeri
            d.line([(c + sd * 34, 112), (c + sd * 40, 150)], fill=110, width=3)  # forearms
            d.ellipse([c + sd * 40 - 5, 150, c + sd * 40 + 5, 166], fill=120)  # hands
            d.chord([c + sd * 14 - 16, 150, c + sd * 14 + 16, 186], start=180, end=360, fill=170)  # iliac wings
            d.ellipse([c + sd * 18 - 6, 164, c + sd * 18 + 6, 176], fill=210)  # hips
            d.line([(c + sd * 18, 172), (c + sd * 14, 225)], fill=140, width=5)  # femurs
            d.ellipse([c + sd * 13 - 6, 221, c + sd * 13 + 6, 233], fill=200)  # knees
            d.line([(c + sd * 13, 232), (c + sd * 12, 280)], fill=140, width=4)  # tibiae
            d.ellipse([c + sd * 9 - 8, 66, c + sd * 9 + 8, 80], fill=40)  # kidneys, faint
        d.ellipse([c - 8, 170, c + 8, 184], fill=255)  # the bladder
        for hx, hy in hot:  # metastases
            d.ellipse([c + hx - 3, hy - 3, c + hx + 3, hy + 3], fill=255)

    hot = [(float(rng.uniform(-25, 25)), float(rng.uniform(55, 180))) for _ in range(int(rng.integers(0, 8)))]
    views = []
    for mirror in (False, True):
        im = Image.new("L", (W0, H0), 0)
        skeleton(ImageDraw.Draw(im), hot)
        im = im.filter(ImageFilter.GaussianBlur(2.0))
        a = np.asarray(im, np.float64) / 255
        a = a + 0.06 + 0.04 * _smooth_noise(rng, H0, W0, 20)  # soft-tissue background
        a = a[:, ::-1] if mirror else a
        views.append(rng.poisson(a * rng.uniform(30, 80)).astype(np.float64))
    both = np.concatenate([views[0], np.zeros((H0, 12)), views[1]], axis=1)
    both = np.clip(both / np.percentile(both, 99.5), 0, 1)
    if rng.random() < 0.75:  # the usual display: uptake dark on white
        both = 1 - both
    im = Image.fromarray((255 * both).astype(np.uint8)).resize((w, h), Image.BILINEAR)
    d = ImageDraw.Draw(im)
    fill = 0 if np.asarray(im)[:4, :4].mean() > 128 else 255
    d.text((4, 3), "ANT", fill=fill)
    d.text((w // 2 + 8, 3), "POST", fill=fill)
    return im


def _angiogram(rng, h, w):
    n = min(h, w)
    layer = Image.new("L", (2 * w, 2 * h), 0)
    d = ImageDraw.Draw(layer)
    maxw = n * rng.uniform(0.015, 0.028) * 2

    def branch(p, ang, width, depth):
        length = 2 * n * rng.uniform(0.06, 0.14) * (width / maxw) ** 0.4
        pts = [tuple(p)]
        for _ in range(6):
            ang += rng.normal(0, 0.15)
            p = p + length / 6 * np.array([np.cos(ang), np.sin(ang)])
            pts.append(tuple(p))
        d.line(pts, fill=int(255 * min(1.0, 0.45 + 0.55 * width / maxw)), width=max(1, int(width)), joint="curve")
        if depth <= 0 or width < 1.5:
            return
        for s in (-1, 1):
            if rng.random() < 0.9:
                branch(p, ang + s * rng.uniform(0.25, 0.7), width * rng.uniform(0.6, 0.82), depth - 1)

    start = np.array([rng.uniform(0.2, 0.8) * 2 * w, rng.uniform(0.1, 0.3) * 2 * h])
    branch(start, rng.uniform(0.3, 2.8), maxw, int(rng.integers(8, 11)))
    for _ in range(int(rng.integers(0, 3))):  # a second trunk
        branch(start + rng.normal(0, 20, 2), rng.uniform(0, 2 * np.pi), maxw * 0.7, 8)
    cath_from = np.array([rng.choice([0, 2 * w]), rng.uniform(0.5, 1.0) * 2 * h])
    d.line([tuple(cath_from), tuple((cath_from + start) / 2 + rng.normal(0, 40, 2)), tuple(start)], fill=255,
           width=max(2, int(n * 0.008)), joint="curve")
    v = np.asarray(layer.resize((w, h), Image.LANCZOS), np.float64) / 255
    bg = 0.55 + 0.06 * (_smooth_noise(rng, h, w, max(8, n // 6)) - 0.5)
    ghost = np.asarray(Image.fromarray((255 * _smooth_noise(rng, h, w, max(6, n // 10))).astype(np.uint8))
                       .filter(ImageFilter.FIND_EDGES), np.float64) / 255
    a = bg - 0.45 * v + 0.15 * ghost + rng.normal(0, 0.025, (h, w))  # vessels dark; misregistered bone edges
    y, x = np.mgrid[0:h, 0:w]
    if rng.random() < 0.5:  # the round image intensifier field
        a = np.where(np.hypot(y - h / 2, x - w / 2) > 0.5 * n * rng.uniform(0.92, 1.0), 0.0, a)
    im = Image.fromarray((255 * np.clip(a, 0, 1)).astype(np.uint8)).filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.0)))
    if rng.random() < 0.6:
        im = _overlay_text(im, rng, ["DSA", f"{int(rng.integers(2, 6))} fps"], [f"LAO {int(rng.integers(0, 40))}"])
    return im


def _ecg(rng, h, w):
    mm = w / rng.uniform(200, 280)  # pixels per millimetre
    paper = np.array([255, 250, 248]) - rng.uniform(0, 12)
    grid_c = np.array(rng.choice([[240, 170, 170], [245, 190, 160], [200, 200, 200]]))
    im = Image.new("RGB", (w, h), tuple(int(c) for c in paper))
    d = ImageDraw.Draw(im)
    for i, xx in enumerate(np.arange(0, w, mm)):
        d.line([(xx, 0), (xx, h)], fill=tuple(int(c) for c in (grid_c if i % 5 == 0 else (grid_c + paper) / 2)),
               width=1)
    for i, yy in enumerate(np.arange(0, h, mm)):
        d.line([(0, yy), (w, yy)], fill=tuple(int(c) for c in (grid_c if i % 5 == 0 else (grid_c + paper) / 2)),
               width=1)
    d.text((6, 3), f"HR {int(rng.integers(55, 110))} bpm  PR 160 ms  QRS 90 ms  QT 380 ms   25 mm/s  10 mm/mV",
           fill=(30, 30, 30))
    leads = [["I", "aVR", "V1", "V4"], ["II", "aVL", "V2", "V5"], ["III", "aVF", "V3", "V6"]]
    rows = 4
    top = 0.08 * h
    row_h = (h - top) / rows
    rr = rng.uniform(0.6, 1.0)  # seconds per beat
    fs = 1 / mm / 25  # seconds per pixel at 25 mm/s
    t_all = np.arange(0, w) * fs
    beat_phase = rng.uniform(0, rr)

    def trace(t, amp, inv):
        tb = (t + beat_phase) % rr
        v = (0.12 * np.exp(-((tb - 0.1) / 0.025) ** 2) - 0.1 * np.exp(-((tb - 0.2) / 0.008) ** 2)
             + amp * np.exp(-((tb - 0.22) / 0.012) ** 2) - 0.25 * np.exp(-((tb - 0.245) / 0.01) ** 2)
             + 0.28 * np.exp(-((tb - 0.45) / 0.05) ** 2))
        return (-v if inv else v) + rng.normal(0, 0.01, t.shape)

    for r in range(rows):
        base = top + (r + 0.6) * row_h
        x0 = int(6 * mm)
        d.line([(2 * mm, base), (3 * mm, base), (3 * mm, base - 10 * mm), (5 * mm, base - 10 * mm), (5 * mm, base),
                (6 * mm, base)], fill=(20, 20, 20), width=max(1, int(mm / 3)))  # the calibration pulse
        t = t_all[x0:]
        if r < 3:
            seg = (w - x0) / 4
            v = np.zeros_like(t)
            for c in range(4):
                sl = slice(int(c * seg), int((c + 1) * seg))
                v[sl] = trace(t[sl], rng.uniform(0.5, 1.5), leads[r][c] == "aVR")[:len(v[sl])]
                d.text((x0 + c * seg + 4, base - 0.45 * row_h), leads[r][c], fill=(20, 20, 20))
        else:
            v = trace(t, rng.uniform(0.7, 1.3), False)
            d.text((x0 + 4, base - 0.45 * row_h), "II", fill=(20, 20, 20))
        pts = list(zip(np.arange(x0, w).astype(float), (base - v * 10 * mm).astype(float)))
        d.line(pts, fill=(15, 15, 15), width=max(1, int(mm / 4)))
    im = im.rotate(rng.uniform(-1.5, 1.5), resample=Image.BICUBIC, fillcolor=tuple(int(c) for c in paper))
    im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 0.7)))
    return im.convert("L") if rng.random() < 0.4 else im


_DRAW5 = {"cspine-frontal": _cspine_frontal, "shoulder": _shoulder, "elbow-lateral": _elbow_lateral,
          "leg-long": _leg_long, "pelvis-prosthesis": _pelvis_prosthesis, "sinus-waters": _sinus_waters,
          "barium": _barium, "ct-coronal": _ct_coronal, "mri-spine-sagittal": _mri_spine_sagittal,
          "bone-scan": _bone_scan, "angiogram": _angiogram, "ecg": _ecg}

_SIZES5 = [(448, 384), (320, 320), (576, 448), (720, 600), (300, 400)]
assert tuple(_DRAW5) == KINDS5


def generated5(per_kind: int = 20) -> list[tuple[str, str, Image.Image]]:
    return draw_set("fresh5", _DRAW5, _SIZES5, 15000, per_kind)


def fresh5_images(per_kind: int = 20) -> list[tuple[str, str, Image.Image]]:
    """Every fresh5 picture as ``(group, name, Pillow image)``."""
    return generated5(per_kind) + [(g.replace("fresh2-", "fresh5-"), n, im) for g, n, im in found(FOUND_GLOBS5)]
