"""Fake source trees in the layouts of the four public datasets, with known ground truth.

Why: the dataset builder (adapters, QC, exact/near dedup, label-conflict and patient leakage
handling) needs an input whose every planted problem is known.  :func:`write_source_tree`
writes the four public layouts with duplicates, near duplicates, label conflicts, bad
exposures, corrupt files and junk, and returns the ground truth as a :class:`SyntheticTree`;
:func:`write_class_folders` writes a clean ``root/<class>/*.png`` tree for model tests.

Near duplicates and "distinct" pictures are defined by ``imagehash`` pHash / dHash distances,
the same hashes build-dataset uses.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image

from ..labels import CLASSES
from .phantoms import _check_label, _hw, _seed_int, lung_mask, make_phantom

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


def _hashes(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """64-bit pHash and dHash bits of a uint8 image (the hashes build-dataset compares)."""
    im = Image.fromarray(arr)
    return imagehash.phash(im).hash.ravel(), imagehash.dhash(im).hash.ravel()


def _derive(*parts: int) -> int:
    """Collision-resistant 63-bit seed from several ints (keeps phantoms in a tree distinct)."""
    a, b = np.random.SeedSequence([_seed_int(p) for p in parts]).generate_state(2, np.uint32)
    return (int(a) << 31) ^ int(b)


# --------------------------------------------------------------------------------------
# Planted shortcut: a burnt-in marker
# --------------------------------------------------------------------------------------

#: Marker kinds in the order the held-out source cycles through them ("" = no marker).
MARKERS = ("covid", "pneumonia", "")


def marker_box(shape: tuple[int, int], kind: str) -> tuple[slice, slice] | None:
    """Where :func:`burn_marker` draws ``kind`` on an image of ``shape`` (None: no marker).

    A square of 9% of the shorter side, 2% in from the top corner (top-left for covid,
    top-right for pneumonia): inside the outer 1/8 border band the shortcut audit probes."""
    if not kind:
        return None
    h, w = shape
    side, off = max(2, round(min(h, w) * 0.09)), max(1, round(min(h, w) * 0.02))
    x0 = off if kind == "covid" else w - off - side
    return slice(off, off + side), slice(x0, x0 + side)


def burn_marker(arr: np.ndarray, kind: str) -> np.ndarray:
    """A copy of ``arr`` with a white marker square burnt in (like a hospital's laterality
    marker or a "PORTABLE" stamp): the planted shortcut of ``write_source_tree(marker=True)``."""
    if kind and kind not in MARKERS:
        raise ValueError(f"marker kind must be one of {MARKERS}, got {kind!r}")
    out = arr.copy()
    box = marker_box(arr.shape, kind)
    if box is not None:
        out[box] = 255
    return out


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
      encoding; ``imagehash.phash``).  Planted near copies aim for <= 4.
    * ``markers`` (only with ``marker=True``): image -> the burnt-in marker it shows
      (``"covid"``: a bright square in the top-left corner, ``"pneumonia"``: top-right, ``""``:
      none; see :func:`burn_marker`); copies show their original's marker.  In every source
      but ``marker_holdout`` the marker follows the class; in ``marker_holdout`` it cycles
      with the image's order, whatever its class.
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
    markers: dict[str, str] = field(default_factory=dict)
    marker_holdout: str = ""
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

    def __init__(self, root: Path, seed: int, marker_holdout: str | None = None) -> None:
        self.root = root
        self.seed = seed
        self.marker_holdout = marker_holdout  # None: no markers
        self.holdout_count = 0
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
            ph, dh = _hashes(arr)
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
        arr = self.phantom(draw_as or label, size)
        if self.marker_holdout is not None:
            if source == self.marker_holdout:  # class-independent: cycles with the order
                kind = MARKERS[self.holdout_count % len(MARKERS)]
                self.holdout_count += 1
            else:
                kind = label if label in MARKERS else ""
            arr = burn_marker(arr, kind)
            self.t.markers[rel] = kind
        return self.image(rel, arr, label, source, mode=mode, quality=quality)

    def exact_copy(self, orig: str, rel: str, label: str | None, source: str) -> str:
        self.put(rel, self.data[orig], label, source)
        if orig in self.t.markers:
            self.t.markers[rel] = self.t.markers[orig]
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
        ref = _hashes(src_arr)[0]

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
        dist = [int(np.count_nonzero(_hashes(a)[0] != ref)) for _, a in cands]
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
        if orig in self.t.markers:
            self.t.markers[rel] = self.t.markers[orig]
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
                      seed: int = 0, marker: bool = False,
                      marker_holdout: str = "cpn") -> SyntheticTree:
    """Write a small fake copy of the four public sources, with planted problems, under root.

    Why: the dataset builder (adapters, QC, exact/near dedup, label-conflict and patient
    leakage handling) needs an input whose ground truth is known exactly.  Each class folder
    gets ``n_per_class`` distinct phantoms plus the planted files; the same arguments always
    produce byte-identical files.  Returns the ground truth (see :class:`SyntheticTree`).

    ``marker=True`` plants a shortcut (off by default; trees without it are unchanged): every
    new phantom gets a burnt-in corner marker (:func:`burn_marker`) that follows its class in
    every source but ``marker_holdout`` (a key of :data:`SOURCE_DIRS`), where it is assigned
    in turn whatever the class. A model that learns the marker fails on the held-out source;
    the build-dataset shortcut audit must find it (``tree.markers`` is the ground truth).
    """
    if marker and marker_holdout not in SOURCE_DIRS:
        raise ValueError(f"marker_holdout must be one of {sorted(SOURCE_DIRS)}, got {marker_holdout!r}")
    if n_per_class < 4:
        raise ValueError("n_per_class must be >= 4 to plant every kind of problem")
    if size < 32:
        raise ValueError("size must be >= 32 (tiny images are planted at 24 px)")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    n, S = n_per_class, int(size)
    w = _TreeWriter(root, seed, marker_holdout if marker else None)
    t = w.t
    t.marker_holdout = marker_holdout if marker else ""
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
