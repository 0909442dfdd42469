"""The ``fresh4`` set of non-X-rays for benchmarks/ood_detection.py: defined and committed after
``fresh3`` was defined and before any change designed on ``fresh3``'s misses (written without
looking at how the detector works); scored once, at the end.

Kinds none of the earlier sets has:

* generated (numpy, Pillow; deterministic, seeds 14000+), 20 each of 12 kinds. Other
  radiographs and scans, the inputs a radiology user is most likely to feed by mistake, drawn
  roughly: a dental panoramic film, an abdominal film (spine, pelvis rim, bowel gas), a foot
  (metatarsals and toes), a lateral skull (vault, face, jaw, neck), an axial brain MRI slice
  (T1 or T2, with ventricles), a hand radiograph printed as a negative (bones dark on light),
  a grey fundus photograph. Other pictures: a histology-like field (H&E colours or grey), a
  photograph-like outdoor scene, a scanned form with boxes and handwriting-like strokes, a
  fingerprint, a satellite-like mosaic of fields;
* pictures found on the machine outside this project in folders no earlier set used (the
  Adwaita 96 px symbolic emotes, categories and ui icons, GnuPG's info diagrams, pyenv's README
  pictures, scipy.ndimage's test picture, the Python email tests' banner, Debian's pixmaps),
  deduplicated by content.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ood_fresh2 import _grey, draw_set, found

#: Generated kinds of fresh4.
KINDS4 = ("dental-panoramic", "abdomen", "foot", "skull-lateral", "mri-brain", "hand-negative", "fundus",
          "histology", "photo-scene", "scanned-form", "fingerprint", "satellite-fields")

FOUND_GLOBS4 = {
    "adwaita-96-emotes": "/usr/share/icons/Adwaita/96x96/emotes/*.png",
    "adwaita-96-categories": "/usr/share/icons/Adwaita/96x96/categories/*.png",
    "adwaita-96-ui": "/usr/share/icons/Adwaita/96x96/ui/*.png",
    "gnupg-info": "/usr/share/info/*.png",
    "pyenv-readme-png": "/root/.pyenv/*.png",
    "pyenv-readme-gif": "/root/.pyenv/*.gif",
    "scipy-ndimage-tests": "/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages/scipy/ndimage/tests/*.png",
    "email-test-banner": "/root/.pyenv/versions/*/lib/python*/test/test_email/data/*.gif",
    "pixmaps": "/usr/share/pixmaps/*",
}


def _film(a: np.ndarray, rng, blur: float = 1.2, grain: float = 0.02) -> Image.Image:
    """Densities -> a film-like grey picture with grain."""
    a = np.asarray(a, np.float64) + rng.normal(0, grain, np.shape(a))
    return _grey(a).filter(ImageFilter.GaussianBlur(blur))


def _smooth_noise(rng, h, w, cell: int) -> np.ndarray:
    """Smooth noise in [0, 1] with features about ``cell`` pixels across."""
    small = rng.random((max(2, h // cell + 2), max(2, w // cell + 2)))
    im = Image.fromarray((255 * small).astype(np.uint8)).resize((w + 2 * cell, h + 2 * cell), Image.BICUBIC)
    return np.asarray(im, np.float64)[cell:cell + h, cell:cell + w] / 255


def _layer(h, w, draw_fn, scale: int = 1) -> np.ndarray:
    """A float mask in [0, 1] of what ``draw_fn(ImageDraw, s)`` draws in white on black."""
    im = Image.new("L", (w * scale, h * scale), 0)
    draw_fn(ImageDraw.Draw(im), scale)
    if scale > 1:
        im = im.resize((w, h), Image.LANCZOS)
    return np.asarray(im, np.float64) / 255


def _bone(d, p, q, width, fill=255):
    """A long bone from p to q: a thick line with rounded ends."""
    d.line([tuple(p), tuple(q)], fill=fill, width=max(1, int(width)))
    for c in (p, q):
        r = width * 0.6
        d.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=fill)


def _rays(rng, h, w, spec, base, up, s):
    """Chains of bones (metacarpals/metatarsals then phalanges), one per digit.

    ``spec`` rows: (angle from ``up`` in rad, start offset from base (dx, dy) in units of s,
    [segment lengths], bone width). Returns [(p, q, width)] and the digit tips."""
    segs, tips = [], []
    for ang, (ox, oy), lengths, bw in spec:
        p = np.array([base[0] + ox * s, base[1] + oy * s])
        a = up + ang
        for j, ln in enumerate(lengths):
            a += rng.normal(0, 0.04) + (0.1 * ang if j == 1 else 0)  # digits splay a little at the joints
            q = p + ln * s * np.array([np.sin(a), -np.cos(a)])
            segs.append((p.copy(), q.copy(), bw * s * (0.85 if j else 1.0) * (0.9 ** max(0, j - 1))))
            p = q + 0.018 * s * np.array([np.sin(a), -np.cos(a)])  # the joint space
        tips.append(p)
    return segs, tips


def _limb_film(rng, h, w, spec, carpals, forearm: bool, negative: bool) -> Image.Image:
    s = min(h, w) * rng.uniform(0.95, 1.15)
    base = np.array([w / 2 + rng.uniform(-0.05, 0.05) * w, h * rng.uniform(0.78, 0.86)])
    up = rng.normal(0, 0.12)
    if rng.random() < 0.5:  # left or right
        spec = [(-a, (-ox, oy), ln, bw) for a, (ox, oy), ln, bw in spec]
        carpals = [(-x, y, r) for x, y, r in carpals]
    segs, tips = _rays(rng, h, w, spec, base, up, s)

    def soft(d, k):
        for p, q, bw in segs:
            _bone(d, p * k, q * k, bw * k * 2.6)
        pts = [tuple(p * k) for p, _q, _bw in segs[::len(segs) // len(spec)]]
        d.polygon([(base[0] * k + (x - base[0] * k) * 1.15, base[1] * k + (y - base[1] * k) * 1.15) for x, y in pts]
                  + [(base[0] * k + 0.17 * s * k, base[1] * k + 0.1 * s * k),
                     (base[0] * k - 0.17 * s * k, base[1] * k + 0.1 * s * k)], fill=255)
        if forearm:
            d.rectangle([base[0] * k - 0.16 * s * k, base[1] * k, base[0] * k + 0.16 * s * k, h * k], fill=255)
        else:  # the heel and the sole
            d.ellipse([base[0] * k - 0.2 * s * k, base[1] * k - 0.15 * s * k, base[0] * k + 0.2 * s * k, h * k + 0.05 * s * k],
                      fill=255)

    def cortex(d, k):
        for p, q, bw in segs:
            _bone(d, p * k, q * k, bw * k)
        for x, y, r in carpals:
            c = base + np.array([x, y]) * s
            d.ellipse([(c[0] - r * s) * k, (c[1] - r * s * 0.85) * k, (c[0] + r * s) * k, (c[1] + r * s * 0.85) * k], fill=255)
        if forearm:
            for dx in (-0.07, 0.06):
                _bone(d, (base + np.array([dx, 0.09]) * s) * k, (base + np.array([dx * 1.1, 0.6]) * s) * k,
                      (0.07 if dx < 0 else 0.05) * s * k)

    def marrow(d, k):
        for p, q, bw in segs:
            m = (p + q) / 2
            d.line([tuple(((p + m) / 2) * k), tuple(((q + m) / 2) * k)], fill=255, width=max(1, int(bw * k * 0.45)))

    tissue = _layer(h, w, soft, 2)
    bone = _layer(h, w, cortex, 2)
    med = _layer(h, w, marrow, 2)
    a = 0.05 + 0.3 * tissue * (0.9 + 0.2 * _smooth_noise(rng, h, w, 40)) + 0.55 * bone - 0.12 * med * bone
    img = _film(a, rng, blur=rng.uniform(0.8, 1.6))
    if negative:
        img = Image.fromarray(255 - np.asarray(img))
    return img


_HAND = [(-0.75, (-0.1, -0.06), [0.17, 0.13, 0.1], 0.042),  # thumb: metacarpal, proximal, distal
         (-0.2, (-0.07, -0.12), [0.27, 0.17, 0.1, 0.08], 0.036),
         (-0.06, (-0.02, -0.13), [0.26, 0.19, 0.12, 0.08], 0.037),
         (0.08, (0.03, -0.125), [0.24, 0.18, 0.11, 0.08], 0.034),
         (0.22, (0.075, -0.11), [0.22, 0.14, 0.08, 0.07], 0.03)]
_CARPALS = [(x, y, 0.03) for x in (-0.07, -0.025, 0.02, 0.065) for y in (-0.08, -0.02)]

_FOOT = [(-0.06, (-0.08, -0.22), [0.3, 0.12, 0.09], 0.06),  # big toe: metatarsal and two phalanges
         (-0.02, (-0.03, -0.21), [0.3, 0.08, 0.05, 0.04], 0.038),
         (0.03, (0.01, -0.2), [0.28, 0.07, 0.045, 0.04], 0.035),
         (0.08, (0.05, -0.19), [0.26, 0.065, 0.04, 0.035], 0.033),
         (0.14, (0.09, -0.17), [0.23, 0.06, 0.04, 0.035], 0.032)]
_TARSALS = ([(x, -0.18, 0.035) for x in (-0.08, -0.035, 0.01, 0.06)] + [(-0.04, -0.1, 0.06), (0.05, -0.1, 0.05)]
            + [(0.0, 0.0, 0.1), (0.0, 0.1, 0.11)])


def _hand_negative(rng, h, w):
    return _limb_film(rng, h, w, _HAND, _CARPALS, forearm=True, negative=True)


def _foot(rng, h, w):
    return _limb_film(rng, h, w, _FOOT, _TARSALS, forearm=False, negative=rng.random() < 0.15)


def _dental_panoramic(rng, h, w):
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    a = 0.12 + 0.08 * _smooth_noise(rng, h, w, max(8, w // 12))
    a += 0.25 * np.exp(-((x - 0.5) / 0.38) ** 2 - ((y - 0.45) / 0.3) ** 2)  # the face, brighter in the middle
    a -= 0.12 * ((np.abs(x - 0.5) < 0.12) & (y < 0.32) & (y > 0.1))  # nasal cavity
    a -= 0.1 * np.exp(-(((np.abs(x - 0.5) - 0.2) / 0.09) ** 2) - ((y - 0.25) / 0.08) ** 2)  # maxillary sinuses
    a += 0.25 * (np.abs(y - (0.36 - 0.05 * np.cos((x - 0.5) * 6))) < 0.012) * (np.abs(x - 0.5) < 0.35)  # palate
    mouth = 0.5 + rng.uniform(-0.03, 0.03)

    def jaw(d, k):
        W, H = w * k, h * k
        pts_out = [(W * (0.5 + 0.45 * np.sin(t)), H * (mouth + 0.38 * np.cos(t) ** 0.7 * np.sign(np.cos(t)) * 0.9))
                   for t in np.linspace(-1.5, 1.5, 60)]
        pts_in = [(W * (0.5 + 0.38 * np.sin(t)), H * (mouth + 0.2 * np.cos(t))) for t in np.linspace(1.4, -1.4, 60)]
        d.polygon(pts_out + pts_in, fill=200)  # the mandible
        for side in (-1, 1):  # rami and condyles
            d.polygon([(W * (0.5 + side * 0.37), H * (mouth + 0.05)), (W * (0.5 + side * 0.45), H * (mouth + 0.05)),
                       (W * (0.5 + side * 0.44), H * 0.2), (W * (0.5 + side * 0.39), H * 0.2)], fill=200)
            d.ellipse([W * (0.5 + side * 0.415) - 0.03 * W, H * 0.15, W * (0.5 + side * 0.415) + 0.03 * W, H * 0.23],
                      fill=220)

    def teeth(d, k):
        W, H = w * k, h * k
        n = 16
        missing = set(rng.choice(32, int(rng.integers(0, 5)), replace=False).tolist())
        for arch, sign in ((0, -1), (1, 1)):
            for i in range(n):
                if arch * n + i in missing:
                    continue
                t = (i + 0.5) / n
                cx = W * (0.14 + 0.72 * t)
                curve = 0.035 * np.cos((t - 0.5) * 3.0)
                molar = abs(i - (n - 1) / 2) > 4.5
                tw = W * 0.72 / n * (0.9 if molar else 0.7)
                crown_y = H * (mouth + sign * (0.02 + 0.02 - curve * 0.5))
                crown_h = H * 0.09
                root_h = H * rng.uniform(0.13, 0.18)
                y0, y1 = (crown_y, crown_y + sign * crown_h)
                d.rounded_rectangle([cx - tw / 2, min(y0, y1), cx + tw / 2, max(y0, y1)], radius=int(tw / 3), fill=255)
                y2 = y1 + sign * root_h
                nroots = 2 if molar else 1
                for r in range(nroots):
                    off = (r - (nroots - 1) / 2) * tw * 0.45
                    d.polygon([(cx + off - tw * 0.25, y1), (cx + off + tw * 0.25, y1), (cx + off + tw * 0.05, y2),
                               (cx + off - tw * 0.05, y2)], fill=185)

    a += 0.35 * _layer(h, w, jaw, 2)
    t = _layer(h, w, teeth, 2)
    a = np.where(t > 0.05, np.maximum(a, 0.35 + 0.55 * t), a)
    a -= 0.15 * (np.abs(y - mouth) < 0.012) * (np.abs(x - 0.5) < 0.36)  # the bite line / air between the arches
    for side in (-1, 1):  # ghost of the cervical spine at both edges
        a += 0.12 * np.exp(-((x - 0.5 - side * 0.49) / 0.04) ** 2) * (y > 0.3)
    return _film(a, rng, blur=rng.uniform(0.8, 1.5), grain=0.025)


def _abdomen(rng, h, w):
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    flank = 0.46 + 0.03 * np.sin(y * 3)
    body = np.abs(x - 0.5) < flank
    a = 0.05 + 0.4 * body * (1 - 0.5 * (np.abs(x - 0.5) / flank) ** 4)
    a -= 0.08 * body * (np.abs(np.abs(x - 0.5) - flank + 0.04) < 0.015)  # flank fat stripe
    a += 0.06 * np.exp(-((np.abs(x - 0.5) - 0.08 - 0.15 * y) / 0.05) ** 2) * (y > 0.2)  # psoas
    a += 0.08 * np.exp(-((x - 0.72) / 0.12) ** 2 - ((y - 0.12) / 0.12) ** 2)  # liver/spleen mass at the top

    def spine_pelvis(d, k):
        W, H = w * k, h * k
        n = 5
        for i in range(n):
            cy = H * (0.06 + i * 0.13)
            vw, vh = W * 0.1, H * 0.1
            d.rounded_rectangle([W * 0.5 - vw / 2, cy, W * 0.5 + vw / 2, cy + vh], radius=int(vw / 8), fill=200)
            for side in (-1, 1):  # transverse processes and pedicles
                d.line([(W * 0.5 + side * vw / 2, cy + vh * 0.4), (W * 0.5 + side * vw * (1.3 + 0.2 * (i == 2)), cy + vh * 0.45)],
                       fill=170, width=max(1, int(vh * 0.15)))
                d.ellipse([W * 0.5 + side * vw * 0.3 - vw * 0.1, cy + vh * 0.2, W * 0.5 + side * vw * 0.3 + vw * 0.1,
                           cy + vh * 0.5], fill=255)
        d.polygon([(W * 0.44, H * 0.72), (W * 0.56, H * 0.72), (W * 0.52, H), (W * 0.48, H)], fill=190)  # sacrum
        for side in (-1, 1):  # iliac wings
            cx = W * (0.5 + side * 0.27)
            d.chord([cx - W * 0.2, H * 0.66, cx + W * 0.2, H * 1.3], start=180 + (0 if side < 0 else 20),
                    end=360 - (20 if side < 0 else 0), fill=150)
            d.arc([cx - W * 0.2, H * 0.66, cx + W * 0.2, H * 1.3], start=180, end=360, fill=230,
                  width=max(2, int(W * 0.012)))
        for j in range(3):  # lowest ribs at the top corners
            for side in (-1, 1):
                d.arc([W * (0.5 + side * 0.2) - W * 0.35, -H * (0.35 - j * 0.05), W * (0.5 + side * 0.2) + W * 0.35,
                       H * (0.05 + j * 0.05)], start=20 if side > 0 else 110, end=70 if side > 0 else 160,
                      fill=160, width=max(1, int(H * 0.012)))

    def gas(d, k):
        W, H = w * k, h * k
        # colon frame: ascending (image left), transverse, descending (image right)
        frame = [(0.2, 0.8), (0.18, 0.55), (0.2, 0.3), (0.3, 0.22), (0.5, 0.28 + rng.uniform(-0.05, 0.1)),
                 (0.7, 0.22), (0.8, 0.28), (0.82, 0.55), (0.78, 0.8)]
        pts = [(W * (px + rng.normal(0, 0.01)), H * (py + rng.normal(0, 0.01))) for px, py in frame]
        keep = rng.uniform(0.4, 1.0)
        for p, q in list(zip(pts[:-1], pts[1:]))[:max(2, int(len(pts) * keep))]:
            for t in np.linspace(0, 1, 8):
                c = (p[0] + (q[0] - p[0]) * t, p[1] + (q[1] - p[1]) * t)
                r = W * rng.uniform(0.035, 0.05)  # haustral bulges
                d.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=int(rng.integers(120, 220)))
        for _ in range(int(rng.integers(2, 9))):  # small bowel loops
            c = np.array([W * rng.uniform(0.3, 0.7), H * rng.uniform(0.35, 0.7)])
            ang = rng.uniform(0, 2 * np.pi)
            pts = []
            for _s in range(int(rng.integers(5, 12))):
                ang += rng.normal(0, 0.7)
                c = c + W * 0.03 * np.array([np.cos(ang), np.sin(ang)])
                pts.append(tuple(c))
            d.line(pts, fill=int(rng.integers(150, 255)), width=max(2, int(W * rng.uniform(0.02, 0.035))), joint="curve")

    a += 0.3 * _layer(h, w, spine_pelvis, 2) * body
    g = _layer(h, w, gas, 2)
    a -= 0.25 * g * body * (0.7 + 0.6 * (_smooth_noise(rng, h, w, 6) > 0.6))  # gas, mottled with stool
    return _film(a, rng, blur=rng.uniform(1.0, 2.0), grain=0.02)


def _skull_lateral(rng, h, w):
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    H, W = h / max(h, w), w / max(h, w)
    cx, cy = W * rng.uniform(0.52, 0.58), H * rng.uniform(0.38, 0.44)
    rx, ry = 0.36 * min(W, H) / 0.8, 0.3 * min(W, H) / 0.8
    r = np.hypot((x - cx) / rx, (y - cy) / ry)
    a = 0.05 + 0.25 * (r < 1.08)  # scalp and the head
    table = (np.abs(r - 1.0) < 0.03) | (np.abs(r - 0.93) < 0.02)
    diploe = (r > 0.93) & (r < 1.0)
    a += 0.45 * table + 0.25 * diploe
    a += 0.05 * (r < 0.93) * _smooth_noise(rng, h, w, max(6, h // 25))  # convolutional markings
    # the face: forwards (image left) and down
    fx, fy = cx - rx * 0.75, cy + ry * 0.55
    face = np.hypot((x - fx) / (rx * 0.45), (y - fy) / (ry * 0.55)) < 1
    a += 0.25 * face
    a -= 0.15 * (np.hypot((x - fx + rx * 0.1) / (rx * 0.13), (y - fy + ry * 0.45) / (ry * 0.13)) < 1)  # orbit
    a -= 0.12 * (np.hypot((x - fx) / (rx * 0.18), (y - fy) / (ry * 0.15)) < 1)  # maxillary sinus
    a += 0.3 * (np.abs(np.hypot((x - cx - rx * 0.05) / (rx * 0.08), (y - cy - ry * 0.3) / (ry * 0.07)) - 1) < 0.25) * (
        y > cy + ry * 0.3)  # sella turcica
    a += 0.2 * (np.abs(y - (cy + ry * 0.45 + 0.25 * (x - cx))) < 0.02) * (x > cx - rx * 0.5) * (x < cx + rx * 0.3)  # skull base

    def jaw_neck(d, k):
        S = max(h, w) * k
        jx, jy = fx * S, (fy + ry * 0.55) * S
        d.line([(jx - rx * 0.25 * S, jy + ry * 0.25 * S), (jx + rx * 0.6 * S, jy + ry * 0.15 * S),
                (jx + rx * 0.7 * S, jy - ry * 0.45 * S)], fill=200, width=max(2, int(ry * 0.12 * S)), joint="curve")
        for i in range(8):  # teeth
            tx = jx - rx * 0.3 * S + i * rx * 0.07 * S
            d.rectangle([tx, jy - ry * 0.12 * S, tx + rx * 0.05 * S, jy + ry * 0.06 * S], fill=255)
        for i in range(4):  # cervical vertebrae behind the jaw
            vx, vy = (cx + rx * 0.15) * S, (cy + ry * (1.05 + 0.28 * i)) * S
            d.rounded_rectangle([vx, vy, vx + rx * 0.28 * S, vy + ry * 0.2 * S], radius=int(rx * 0.03 * S), fill=190)
            d.line([(vx + rx * 0.28 * S, vy + ry * 0.1 * S), (vx + rx * 0.55 * S, vy + ry * 0.15 * S)], fill=160,
                   width=max(1, int(ry * 0.06 * S)))

    a += 0.4 * _layer(h, w, jaw_neck, 2)
    a += 0.15 * (np.hypot(x - cx - rx * 0.55, y - cy - ry * 0.75) < 0.05) * (_smooth_noise(rng, h, w, 4) > 0.5)  # mastoid
    a = a[:, ::-1] if rng.random() < 0.5 else a
    return _film(a, rng, blur=rng.uniform(1.0, 1.8))


def _mri_brain(rng, h, w):
    y, x = np.mgrid[-1:1:complex(0, h), -1:1:complex(0, w)]
    x = x * w / max(h, w)
    y = y * h / max(h, w)
    sx, sy = rng.uniform(0.62, 0.72), rng.uniform(0.8, 0.9)
    r = np.hypot(x / sx, y / sy)
    t = np.arctan2(y, x)
    t1 = rng.random() < 0.5
    gyri = (0.015 * np.sin(t * rng.uniform(25, 40) + 3 * _smooth_noise(rng, h, w, max(4, h // 20)))
            + 0.08 * (_smooth_noise(rng, h, w, max(4, h // 18)) - 0.5))
    brain = r < 0.88 + gyri
    white = r < 0.72 + 0.6 * gyri + 0.05 * _smooth_noise(rng, h, w, max(4, h // 10))
    csf_val, grey_val, white_val, fat_val, bone_val = (0.1, 0.45, 0.7, 0.95, 0.05) if t1 else (0.95, 0.6, 0.4, 0.6, 0.05)
    a = np.zeros((h, w))
    a[r < 1.0] = fat_val  # scalp
    a[r < 0.96] = bone_val  # skull
    a[r < 0.92] = csf_val  # CSF around the brain
    a[brain] = grey_val
    a[brain & white] = white_val
    # lateral ventricles: two crescents either side of the midline, and the third ventricle
    for side in (-1, 1):  # ")(": bodies near the midline, frontal and occipital horns splayed
        length = rng.uniform(0.28, 0.4) * sy
        u = (y + 0.03) / length
        centre = side * (rng.uniform(0.03, 0.05) + rng.uniform(0.08, 0.14) * u ** 2)
        v = (np.abs(u) < 1) & (np.abs(x - centre) < rng.uniform(0.025, 0.045) * np.sqrt(np.clip(1 - u ** 2, 0, 1)))
        a[v & brain] = csf_val
    a[(np.abs(x) < 0.015) & (np.abs(y - 0.12) < 0.1)] = csf_val
    a[(np.abs(x) < 0.006) & brain & ((y < -0.4) | (y > 0.45))] = csf_val  # interhemispheric fissure
    a = a * (0.85 + 0.3 * _smooth_noise(rng, h, w, max(8, h // 4)))  # coil shading
    a += np.abs(rng.normal(0, 0.03, (h, w)))  # Rician-like background noise
    return _grey(a).filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.0)))


def _fundus(rng, h, w):
    y, x = np.mgrid[0:h, 0:w]
    s = min(h, w)
    cx, cy, R = w / 2, h / 2, s * rng.uniform(0.42, 0.49)
    r = np.hypot(x - cx, y - cy) / R
    a = np.where(r < 1, 0.55 - 0.3 * r ** 2, 0.0) * (0.9 + 0.2 * _smooth_noise(rng, h, w, max(6, s // 10)))
    side = 1 if rng.random() < 0.5 else -1
    dx, dy = cx + side * R * 0.42, cy + R * rng.uniform(-0.08, 0.08)
    dr = R * rng.uniform(0.11, 0.15)
    disc = np.hypot((x - dx) / dr, (y - dy) / (dr * 1.1))
    a += 0.4 * np.exp(-disc ** 4) + 0.15 * np.exp(-(disc / 0.45) ** 2)
    a -= 0.15 * np.exp(-np.hypot(x - (cx - side * R * 0.05), y - cy) ** 2 / (2 * (R * 0.12) ** 2))  # macula

    def vessels(d, k):
        def branch(p, ang, width, length, depth):
            if depth == 0 or width < 0.6:
                return
            pts = [p]
            for _ in range(12):
                ang += rng.normal(0, 0.12)
                p = p + length / 12 * np.array([np.cos(ang), np.sin(ang)])
                pts.append(p)
            d.line([tuple(q * k) for q in pts], fill=255, width=max(1, int(width * k)), joint="curve")
            for _ in range(2):
                j = int(rng.integers(4, 12))
                branch(pts[j], ang + rng.choice([-1, 1]) * rng.uniform(0.3, 0.8), width * 0.7, length * 0.7, depth - 1)

        for main in (-1, 1):  # the arcades leave the disc up and down, towards the macula
            for wdt in (s * 0.018, s * 0.012):
                ang0 = (np.pi if side > 0 else 0) + main * 1.1
                branch(np.array([dx, dy]), ang0 + rng.normal(0, 0.15), wdt, R * 0.6, 4)
        for _ in range(3):
            branch(np.array([dx, dy]), rng.uniform(0, 2 * np.pi), s * 0.006, R * 0.35, 2)

    v = _layer(h, w, vessels, 2)
    a -= 0.22 * v * (r < 1)
    a += rng.normal(0, 0.01, (h, w))
    return _grey(np.clip(a, 0, None)).filter(ImageFilter.GaussianBlur(rng.uniform(0.6, 1.2)))


def _histology(rng, h, w):
    pink = np.array([235, 170, 200]) + rng.normal(0, 8, 3)
    purple = np.array([90, 40, 130]) + rng.normal(0, 8, 3)
    stroma = 0.35 + 0.65 * _smooth_noise(rng, h, w, max(4, min(h, w) // 30))
    img = np.ones((h, w, 3)) * 250
    img = img - (250 - pink) * stroma[..., None]
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(2, 7))):  # glands: white lumens ringed by nuclei
        gx, gy = rng.uniform(0, w), rng.uniform(0, h)
        gr = rng.uniform(0.05, 0.15) * min(h, w)
        d.ellipse([gx - gr, gy - gr * 0.7, gx + gr, gy + gr * 0.7], fill=(248, 240, 245))
        for t in np.linspace(0, 2 * np.pi, int(gr / 3) + 6, endpoint=False):
            nx, ny = gx + 1.15 * gr * np.cos(t), gy + 0.8 * gr * np.sin(t)
            nr = rng.uniform(2, 4) * min(h, w) / 300
            d.ellipse([nx - nr, ny - nr * 1.4, nx + nr, ny + nr * 1.4], fill=tuple(int(c) for c in purple))
    n = int(h * w / rng.uniform(150, 500))
    for _ in range(n):  # scattered nuclei
        nx, ny = rng.uniform(0, w), rng.uniform(0, h)
        nr = rng.uniform(1.5, 4.0) * min(h, w) / 300
        shade = purple + rng.normal(0, 15, 3)
        d.ellipse([nx - nr, ny - nr * rng.uniform(0.6, 1.5), nx + nr, ny + nr], fill=tuple(int(c) for c in np.clip(shade, 0, 255)))
    im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.0)))
    return im.convert("L") if rng.random() < 0.5 else im


def _photo_scene(rng, h, w):
    horizon = rng.uniform(0.45, 0.7)
    yy = np.linspace(0, 1, h)[:, None, None]
    top, low = np.array([70, 120, 200]) + rng.normal(0, 15, 3), np.array([200, 215, 235]) + rng.normal(0, 10, 3)
    sky = top + (low - top) * np.clip(yy / horizon, 0, 1)
    ground_c = np.array(rng.choice([[90, 120, 60], [150, 130, 90], [110, 110, 100]])) + rng.normal(0, 10, 3)
    ground = ground_c * (0.7 + 0.5 * (yy - horizon) / (1 - horizon))
    img = np.where(yy < horizon, sky, ground) * np.ones((1, w, 1))
    img += 25 * (_smooth_noise(rng, h, w, max(3, h // 40))[..., None] - 0.5) * (yy > horizon)
    clouds = _smooth_noise(rng, h, w, max(8, w // 6))
    img = np.where((yy < horizon) & (clouds[..., None] > 0.65), img + 120 * (clouds[..., None] - 0.65), img)
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(im)
    hy = horizon * h
    if rng.random() < 0.6:  # hills
        xs = np.linspace(0, w, 40)
        ridge = hy - h * (0.05 + 0.15 * np.abs(np.cumsum(rng.normal(0, 0.15, 40))) / 3)
        d.polygon([(0, hy)] + list(zip(xs, ridge)) + [(w, hy)], fill=tuple(int(c) for c in ground_c * 0.6 + 40))
    if rng.random() < 0.5:  # sun
        sx, sy, sr = rng.uniform(0.1, 0.9) * w, rng.uniform(0.05, 0.3) * h, rng.uniform(0.02, 0.05) * min(h, w)
        d.ellipse([sx - sr, sy - sr, sx + sr, sy + sr], fill=(255, 245, 210))
    for _ in range(int(rng.integers(2, 10))):
        bx = rng.uniform(0, w)
        if rng.random() < 0.5:  # a tree
            th = rng.uniform(0.1, 0.3) * h
            d.rectangle([bx - th * 0.04, hy - th * 0.5, bx + th * 0.04, hy + th * 0.05], fill=(80, 55, 35))
            d.ellipse([bx - th * 0.3, hy - th, bx + th * 0.3, hy - th * 0.35], fill=(40, int(rng.integers(70, 120)), 40))
        else:  # a building with windows
            bw, bh = rng.uniform(0.05, 0.15) * w, rng.uniform(0.1, 0.4) * h
            c = int(rng.integers(90, 200))
            d.rectangle([bx, hy - bh, bx + bw, hy + 2], fill=(c, c - 10, c - 20))
            for wy in np.arange(hy - bh + bh * 0.1, hy - bh * 0.15, bh * 0.15):
                for wx in np.arange(bx + bw * 0.15, bx + bw * 0.8, bw * 0.25):
                    d.rectangle([wx, wy, wx + bw * 0.12, wy + bh * 0.07], fill=(40, 50, 70))
    im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    arr = np.asarray(im, np.float64) + rng.normal(0, 3, (h, w, 3))
    im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    return im.convert("L") if rng.random() < 0.4 else im


def _handwriting(d, rng, x0, y0, width, height, ink):
    """Handwriting-like strokes: joined loops along a line."""
    n = int(width / max(4.0, height * 0.6))
    if n < 2:
        return
    t = np.linspace(0, n * 2 * np.pi, n * 12)
    xs = x0 + t / t[-1] * width + height * 0.25 * np.cos(t + rng.uniform(0, 1))
    amp = height * (0.25 + 0.2 * rng.random(len(t)))
    ys = y0 + height * 0.5 - amp * np.sin(t) * (0.6 + 0.4 * np.sin(t * 0.37 + rng.uniform(0, 6)))
    gaps = rng.random(len(t)) < 0.04
    seg = []
    for px, py, g in zip(xs, ys, gaps):
        if g and len(seg) > 1:
            d.line(seg, fill=ink, width=max(1, int(height / 10)), joint="curve")
            seg = []
        seg.append((float(px), float(py)))
    if len(seg) > 1:
        d.line(seg, fill=ink, width=max(1, int(height / 10)), joint="curve")


def _scanned_form(rng, h, w):
    paper = int(rng.integers(215, 250))
    im = Image.new("L", (w, h), paper)
    d = ImageDraw.Draw(im)
    m = int(0.06 * w)
    d.rectangle([m, int(0.04 * h), w - m, int(0.1 * h)], fill=int(rng.integers(40, 90)))  # the header bar
    d.text((m + 6, int(0.05 * h)), rng.choice(["REQUEST FORM", "CONSENT", "REFERRAL", "ORDER SHEET", "INTAKE"]),
           fill=paper)
    y = int(0.13 * h)
    labels = ["Name", "Date of birth", "ID", "Ward", "Clinician", "Address", "Phone", "Signature", "Date", "Reason"]
    ink = int(rng.integers(20, 80))
    while y < 0.88 * h:
        row_h = int(h * rng.uniform(0.06, 0.1))
        cols = int(rng.integers(1, 4))
        edges = np.sort(rng.uniform(0, 1, cols - 1)) if cols > 1 else np.array([])
        xs = [m] + [int(m + e * (w - 2 * m)) for e in edges] + [w - m]
        for x0, x1 in zip(xs[:-1], xs[1:]):
            d.rectangle([x0, y, x1, y + row_h], outline=30, width=1)
            d.text((x0 + 3, y + 2), str(rng.choice(labels)), fill=40)
            if rng.random() < 0.75 and x1 - x0 > 30:
                _handwriting(d, rng, x0 + 6, y + row_h * 0.35, (x1 - x0 - 12) * rng.uniform(0.3, 0.9), row_h * 0.55, ink)
        y += row_h
        if rng.random() < 0.3 and y < 0.8 * h:  # a row of tick boxes
            bs = max(6, int(h * 0.02))
            for i in range(int(rng.integers(3, 7))):
                bx = m + i * (w - 2 * m) // 6
                d.rectangle([bx, y + 6, bx + bs, y + 6 + bs], outline=30)
                d.text((bx + bs + 4, y + 5), str(rng.choice(["yes", "no", "n/a", "left", "right"])), fill=40)
                if rng.random() < 0.4:
                    d.line([(bx + 1, y + 6 + bs * 0.5), (bx + bs * 0.4, y + 6 + bs), (bx + bs * 1.3, y + 2)], fill=ink, width=2)
            y += bs + 14
    im = im.rotate(rng.uniform(-2.5, 2.5), resample=Image.BICUBIC, fillcolor=paper)
    a = np.asarray(im, np.float64)
    a *= 1 - 0.25 * np.linspace(0, 1, w)[None, :] ** 6 * (rng.random() < 0.5)  # scanner shadow at an edge
    a += rng.normal(0, 3, a.shape)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.9)))


def _fingerprint(rng, h, w):
    y, x = np.mgrid[0:h, 0:w] / min(h, w)
    cx, cy = w / min(h, w) * 0.5 + rng.uniform(-0.05, 0.05), h / min(h, w) * rng.uniform(0.4, 0.5)
    warp = 0.05 * (_smooth_noise(rng, h, w, max(8, min(h, w) // 5)) - 0.5)
    dx, dy = x - cx + warp, y - cy
    whorl = np.hypot(dx, dy * rng.uniform(0.8, 1.2))
    arch = (y - cy) * 1.0 - 0.25 * np.exp(-(dx / 0.2) ** 2) + 0.35
    blend = 1 / (1 + np.exp(-(dy - 0.05) / 0.05))
    phase = (1 - blend) * whorl + blend * arch
    freq = rng.uniform(45, 75)
    ridges = np.sin(2 * np.pi * freq * phase / 2)
    mask = np.hypot((x - cx) / 0.33, (y - cy - 0.05) / 0.45)
    ink = np.clip(1.3 - mask, 0, 1) * (0.6 + 0.6 * _smooth_noise(rng, h, w, max(6, min(h, w) // 8)))
    a = 1 - np.clip(ink * (ridges > rng.uniform(-0.3, 0.2)), 0, 1) * 0.9
    a += 0.15 * (rng.random((h, w)) < 0.03) * (ridges > 0)  # pores
    return _grey(a).filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 0.9)))


def _satellite_fields(rng, h, w):
    big = int(np.ceil(1.5 * max(h, w)))
    colours = [(110, 140, 70), (160, 150, 90), (90, 110, 60), (180, 170, 120), (130, 100, 70), (60, 90, 50)]
    im = Image.new("RGB", (big, big), (120, 130, 80))
    d = ImageDraw.Draw(im)
    boxes = [(0, 0, big, big)]
    for _ in range(int(rng.integers(20, 60))):  # split parcels
        i = int(rng.integers(0, len(boxes)))
        x0, y0, x1, y1 = boxes.pop(i)
        if (x1 - x0 > y1 - y0 and x1 - x0 > 30) or y1 - y0 <= 30:
            c = int(x0 + (x1 - x0) * rng.uniform(0.3, 0.7))
            boxes += [(x0, y0, c, y1), (c, y0, x1, y1)]
        else:
            c = int(y0 + (y1 - y0) * rng.uniform(0.3, 0.7))
            boxes += [(x0, y0, x1, c), (x0, c, x1, y1)]
    for x0, y0, x1, y1 in boxes:
        col = np.array(colours[int(rng.integers(0, len(colours)))]) + rng.normal(0, 10, 3)
        d.rectangle([x0, y0, x1, y1], fill=tuple(int(c) for c in col))
        kind = rng.random()
        if kind < 0.5:  # crop rows
            step = int(rng.integers(3, 8))
            dark = tuple(int(c * 0.8) for c in col)
            if rng.random() < 0.5:
                for xx in range(x0, x1, step):
                    d.line([(xx, y0), (xx, y1)], fill=dark)
            else:
                for yy in range(y0, y1, step):
                    d.line([(x0, yy), (x1, yy)], fill=dark)
        elif kind < 0.7:  # woodland
            for _ in range(int((x1 - x0) * (y1 - y0) / 40)):
                tx, ty, tr = rng.uniform(x0, x1), rng.uniform(y0, y1), rng.uniform(1.5, 4)
                d.ellipse([tx - tr, ty - tr, tx + tr, ty + tr], fill=(40 + int(rng.integers(0, 30)), 70, 40))
        d.rectangle([x0, y0, x1, y1], outline=(150, 145, 120), width=1)  # hedges and tracks
    for _ in range(int(rng.integers(1, 4))):  # roads
        p = rng.uniform(0, big, 2)
        q = rng.uniform(0, big, 2)
        d.line([tuple(p), tuple(q)], fill=(200, 195, 185), width=int(rng.integers(2, 5)))
    if rng.random() < 0.6:  # a river
        pts, c, ang = [], np.array([0.0, rng.uniform(0, big)]), rng.normal(0, 0.3)
        while 0 <= c[0] <= big and len(pts) < 400:
            ang += rng.normal(0, 0.25)
            ang = np.clip(ang, -1.2, 1.2)
            c = c + 6 * np.array([np.cos(ang), np.sin(ang)])
            pts.append(tuple(c))
        d.line(pts, fill=(40, 60, 80), width=int(rng.integers(4, 12)), joint="curve")
    im = im.rotate(rng.uniform(0, 360), resample=Image.BILINEAR)
    left, top = (big - w) // 2, (big - h) // 2
    im = im.crop((left, top, left + w, top + h)).filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.0)))
    return im.convert("L") if rng.random() < 0.35 else im


_DRAW4 = {"dental-panoramic": _dental_panoramic, "abdomen": _abdomen, "foot": _foot, "skull-lateral": _skull_lateral,
          "mri-brain": _mri_brain, "hand-negative": _hand_negative, "fundus": _fundus, "histology": _histology,
          "photo-scene": _photo_scene, "scanned-form": _scanned_form, "fingerprint": _fingerprint,
          "satellite-fields": _satellite_fields}

_SIZES4 = [(352, 288), (288, 288), (400, 512), (640, 560), (240, 320)]
assert tuple(_DRAW4) == KINDS4


def generated4(per_kind: int = 20) -> list[tuple[str, str, Image.Image]]:
    return draw_set("fresh4", _DRAW4, _SIZES4, 14000, per_kind)


def fresh4_images(per_kind: int = 20) -> list[tuple[str, str, Image.Image]]:
    """Every fresh4 picture as ``(group, name, Pillow image)``."""
    return generated4(per_kind) + [(g.replace("fresh2-", "fresh4-"), n, im) for g, n, im in found(FOUND_GLOBS4)]
