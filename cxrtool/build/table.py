"""build-dataset's per-image state as columns: one :class:`CandidateTable` row per labelled
image, numpy arrays instead of one Python object per image.

Why: at a million images the per-image objects of the first pipeline (the scan's ``Item`` with
its ``Path``, a ``Candidate``, an ``Analysis`` with three hex digests and a ``Quality``, output
names and groups as strings) took ~2.4 KiB each in the main process, 2.5 GB in all. Here a row
costs ~0.2 KiB: the source and class as small codes, the relative path and patient in the
scan's compact :class:`~cxrtool.build.sources.base.Strings`, the SHA-256s as 32 bytes each,
the perceptual hash as fixed-width ASCII, the metrics as float64 (the values the manifest and
report print, unchanged), reasons and details as codes into interned vocabularies, groups and
splits as integers. Output file names are derived on demand (a flag marks the rare name that
needed its SHA-256 prefix to stay unique).

Code that wants one object per image still has one: :class:`Candidate` is a light row view
(``table.candidates()``), its ``item`` an :class:`~cxrtool.build.sources.Item` and its
``analysis`` an :class:`~cxrtool.build.types.Analysis` rebuilt from the columns.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..labels import CLASSES
from ..manifest import SPLITS
from .quality import METRICS, Quality
from .search import pack_hashes
from .sources import Item, Scan
from .types import Analysis

DIGEST_BYTES = 32


class Vocab:
    """Strings interned to integer codes; code 0 is the empty string."""

    __slots__ = ("values", "_index")

    def __init__(self) -> None:
        self.values: list[str] = [""]
        self._index: dict[str, int] = {"": 0}

    def code(self, value: str) -> int:
        code = self._index.get(value)
        if code is None:
            code = self._index[value] = len(self.values)
            self.values.append(value)
        return code

    def __getitem__(self, code: int) -> str:
        return self.values[code]


def _hex_rows(hexes: Sequence[str]) -> np.ndarray | None:
    """(n, 32) uint8 from n lowercase 64-digit hex strings, or None if any is not one."""
    if not hexes or any(len(h) != 2 * DIGEST_BYTES for h in hexes):
        return None
    text = "".join(hexes)
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return None
    if raw.hex() != text:  # upper case: keep the text as it was
        return None
    return np.frombuffer(raw, np.uint8).reshape(len(hexes), DIGEST_BYTES)


class CandidateTable:
    """Every labelled image of the scans, in scan order, with what analysis told and what
    each step decided, one numpy column per field (see the module docstring)."""

    def __init__(self, scans: Sequence[Scan]) -> None:
        self.scans = list(scans)
        self.source_names = [s.name for s in self.scans]
        src, rows, labels = [], [], []
        for k, scan in enumerate(self.scans):
            codes = np.frombuffer(bytes(scan.labels), np.uint8)
            idx = np.flatnonzero(codes)
            src.append(np.full(idx.size, k, np.int32))
            rows.append(idx.astype(np.int64))
            labels.append((codes[idx] - 1).astype(np.int8))
        self.source = np.concatenate(src) if src else np.zeros(0, np.int32)
        self.item_row = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        self.label = np.concatenate(labels) if labels else np.zeros(0, np.int8)
        n = self.n = int(self.source.size)
        # what analysis told
        self.sha = np.zeros((n, DIGEST_BYTES), np.uint8)
        self.has_sha = np.zeros(n, bool)
        self.pixel_sha = np.zeros((n, DIGEST_BYTES), np.uint8)
        self.has_pixel_sha = np.zeros(n, bool)
        self.odd_digests: dict[tuple[str, int], str] = {}  # ("sha"|"pixel", row) -> a digest not 64 hex digits
        self.hash = np.zeros(n, "S1")  # perceptual hash, hex ASCII (width grows to the hash's)
        self.width = np.zeros(n, np.int64)
        self.height = np.zeros(n, np.int64)
        self.quality = np.zeros((n, len(METRICS)), np.float64)
        self.has_quality = np.zeros(n, bool)
        self.formats, self.modes = Vocab(), Vocab()
        self.format = np.zeros(n, np.int32)
        self.mode = np.zeros(n, np.int32)
        self.bits = np.zeros(n, np.int32)
        self.file_size = np.zeros(n, np.int64)
        self.errors: dict[int, tuple[str, str]] = {}  # row -> (error, error_kind): rare
        # what the steps decided
        self.reasons, self.details = Vocab(), Vocab()
        self.reason = np.zeros(n, np.int32)  # code in reasons; 0: kept (so far)
        self.detail = np.zeros(n, np.int32)
        self.duplicate_of = np.full(n, -1, np.int64)  # row of the kept copy
        self.distance = np.full(n, -1, np.int32)
        self.cluster = np.full(n, -1, np.int64)
        self.group = np.zeros(n, np.int64)  # 0: none; k: "g%06d" % k
        self.split = np.zeros(n, np.int8)  # 0: none; k: SPLITS[k - 1]
        self.renamed = np.zeros(n, bool)  # output name carries the SHA-256 prefix (a clash)
        self.png = False  # output names end in .png (--copy-mode png)
        self._key_order: np.ndarray | None = None

    def __len__(self) -> int:
        return self.n

    # ------------------------------------------------------------ filling

    def set_analyses(self, lo: int, analyses: Sequence[Analysis]) -> None:
        """Store the analyses of rows lo, lo + 1, ... (thumbnails are not kept here)."""
        hi = lo + len(analyses)
        if not analyses:
            return
        for name, arr, has in (("sha", self.sha, self.has_sha), ("pixel", self.pixel_sha, self.has_pixel_sha)):
            texts = [a.sha256 if name == "sha" else a.pixel_sha for a in analyses]
            rows = _hex_rows(texts)
            if rows is not None:
                arr[lo:hi] = rows
                has[lo:hi] = True
                continue
            for k, text in enumerate(texts):
                one = _hex_rows([text]) if text else None
                if one is not None:
                    arr[lo + k] = one[0]
                    has[lo + k] = True
                elif text:
                    self.odd_digests[(name, lo + k)] = text
        hashes = [a.hash.encode("ascii", "surrogateescape") for a in analyses]
        width = max(len(h) for h in hashes)
        if width > self.hash.dtype.itemsize:
            self.hash = self.hash.astype(f"S{width}")
        self.hash[lo:hi] = hashes
        self.width[lo:hi] = [a.width for a in analyses]
        self.height[lo:hi] = [a.height for a in analyses]
        self.bits[lo:hi] = [a.bits for a in analyses]
        self.file_size[lo:hi] = [a.file_size for a in analyses]
        self.format[lo:hi] = [self.formats.code(a.format) for a in analyses]
        self.mode[lo:hi] = [self.modes.code(a.mode) for a in analyses]
        for k, a in enumerate(analyses):
            if a.quality is not None:
                q = a.quality
                self.quality[lo + k] = (q.mean, q.dark_frac, q.bright_frac, q.contrast, q.entropy)
                self.has_quality[lo + k] = True
            if a.error or a.error_kind:
                self.errors[lo + k] = (a.error, a.error_kind)

    def drop(self, rows: int | np.ndarray, reason: str, detail: str = "") -> None:
        """Mark one row (or an array of rows) as dropped, for REASON."""
        self.reason[rows] = self.reasons.code(reason)
        self.detail[rows] = self.details.code(detail)

    # ------------------------------------------------------------ reading one row

    def source_name(self, row: int) -> str:
        return self.source_names[self.source[row]]

    def label_name(self, row: int) -> str:
        return CLASSES[self.label[row]]

    def rel(self, row: int) -> str:
        return self.scans[self.source[row]].rels[int(self.item_row[row])]

    def patient(self, row: int) -> str:
        return self.scans[self.source[row]].patients[int(self.item_row[row])]

    def path(self, row: int) -> Path:
        return self.scans[self.source[row]].root / self.rel(row)

    def key(self, row: int) -> str:
        """``source/relative path``: unique, and the order ties are broken in."""
        return f"{self.source_names[self.source[row]]}/{self.rel(row)}"

    def item(self, row: int) -> Item:
        return self.scans[self.source[row]].item(int(self.item_row[row]))

    def sha256(self, row: int) -> str:
        if self.has_sha[row]:
            return self.sha[row].tobytes().hex()
        return self.odd_digests.get(("sha", row), "") if self.odd_digests else ""

    def pixel_sha256(self, row: int) -> str:
        if self.has_pixel_sha[row]:
            return self.pixel_sha[row].tobytes().hex()
        return self.odd_digests.get(("pixel", row), "") if self.odd_digests else ""

    def hash_hex(self, row: int) -> str:
        return self.hash[row].decode("ascii", "surrogateescape")

    def quality_of(self, row: int) -> Quality | None:
        return Quality(*self.quality[row].tolist()) if self.has_quality[row] else None

    def analysis(self, row: int, thumb: bytes = b"") -> Analysis:
        error, kind = self.errors.get(row, ("", ""))
        return Analysis(
            sha256=self.sha256(row), pixel_sha=self.pixel_sha256(row), hash=self.hash_hex(row),
            width=int(self.width[row]), height=int(self.height[row]), quality=self.quality_of(row),
            error=error, error_kind=kind, format=self.formats[self.format[row]], mode=self.modes[self.mode[row]],
            bits=int(self.bits[row]), file_size=int(self.file_size[row]), thumb=thumb,
        )

    def reason_text(self, row: int) -> str:
        return self.reasons[self.reason[row]]

    def detail_text(self, row: int) -> str:
        return self.details[self.detail[row]]

    def group_name(self, row: int) -> str:
        g = int(self.group[row])
        return f"g{g:06d}" if g else ""

    def split_name(self, row: int) -> str:
        s = int(self.split[row])
        return SPLITS[s - 1] if s else ""

    def base_name(self, row: int) -> tuple[str, str]:
        """The output name of a row without and with its SHA-256 prefix (used on a clash)."""
        rel = self.rel(row)
        pure = Path(rel)
        suffix = ".png" if self.png else pure.suffix.lower()
        source = self.source_name(row)
        safe_source = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in source)
        safe_stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in pure.stem)
        head = f"{self.split_name(row)}/{self.label_name(row)}/{safe_source}__{safe_stem}"
        return f"{head}{suffix}", f"{head}-{self.sha256(row)[:8]}{suffix}"

    def file(self, row: int) -> str:
        """Path of the row's image inside OUT ("" until split_step named it)."""
        if not self.split[row] or self.reason[row]:
            return ""
        plain, renamed = self.base_name(row)
        return renamed if self.renamed[row] else plain

    # ------------------------------------------------------------ many rows at once

    def digests(self, rows: np.ndarray, which: str = "sha") -> np.ndarray | list[str]:
        """The rows' SHA-256s (``sha``: of the bytes, ``pixel``: of the pixels) as an (n, 32)
        uint8 array; as hex strings if any of them is not a 64-digit digest."""
        arr, has = (self.sha, self.has_sha) if which == "sha" else (self.pixel_sha, self.has_pixel_sha)
        if has[rows].all():
            return arr[rows]
        text = self.sha256 if which == "sha" else self.pixel_sha256
        return [text(int(r)) for r in rows]

    def codes(self, rows: np.ndarray) -> np.ndarray:
        """The rows' perceptual hashes packed for the pair search, as
        :func:`~cxrtool.build.search.pack_hashes` packs their hex strings."""
        if not len(rows):
            return pack_hashes([])
        hexes = self.hash[rows]
        width = hexes.dtype.itemsize
        if width % 16 == 0 and (np.char.str_len(hexes) == width).all():  # whole 64-bit words: no str per row
            try:
                raw = bytes.fromhex(hexes.tobytes().decode("ascii"))
            except (ValueError, UnicodeDecodeError):
                raw = None
            if raw is not None and len(raw) * 2 == width * len(rows):
                return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(len(rows), width // 16)
        return pack_hashes([h.decode("ascii", "surrogateescape") for h in hexes.tolist()])

    # ------------------------------------------------------------ selections

    def kept_mask(self) -> np.ndarray:
        return self.reason == 0

    def kept_rows(self) -> np.ndarray:
        return np.flatnonzero(self.reason == 0)

    def key_order(self) -> np.ndarray:
        """Every row, ordered by :meth:`key` (computed once; Python's string order)."""
        if self._key_order is None:
            self._key_order = np.array(sorted(range(self.n), key=self.key), dtype=np.int64)
        return self._key_order

    def key_rank(self) -> np.ndarray:
        """Each row's position in :meth:`key_order`."""
        order = self.key_order()
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        return rank

    def in_key_order(self, mask: np.ndarray) -> np.ndarray:
        """The rows where MASK holds, ordered by key."""
        order = self.key_order()
        return order[mask[order]]

    def candidates(self, rows: Iterator[int] | np.ndarray | None = None) -> list["Candidate"]:
        """Row views (every row, or ROWS)."""
        rows = range(self.n) if rows is None else rows
        return [Candidate(self, int(r)) for r in rows]


class Candidate:
    """One row of a :class:`CandidateTable` seen as an object (a view: reads the columns)."""

    __slots__ = ("table", "row")

    def __init__(self, table: CandidateTable, row: int) -> None:
        self.table, self.row = table, row

    def __repr__(self) -> str:
        return f"Candidate({self.key!r}, reason={self.reason!r}, split={self.split!r})"

    def __eq__(self, other: object) -> bool:  # two views of one row are the same candidate
        return isinstance(other, Candidate) and other.table is self.table and other.row == self.row

    def __hash__(self) -> int:
        return hash((id(self.table), self.row))

    @property
    def item(self) -> Item:
        return self.table.item(self.row)

    @property
    def analysis(self) -> Analysis:
        return self.table.analysis(self.row)

    @property
    def key(self) -> str:
        return self.table.key(self.row)

    @property
    def reason(self) -> str:
        return self.table.reason_text(self.row)

    @property
    def detail(self) -> str:
        return self.table.detail_text(self.row)

    @property
    def duplicate_of(self) -> str:
        j = int(self.table.duplicate_of[self.row])
        return self.table.key(j) if j >= 0 else ""

    @property
    def distance(self) -> str:
        d = int(self.table.distance[self.row])
        return str(d) if d >= 0 else ""

    @property
    def cluster(self) -> int:
        return int(self.table.cluster[self.row])

    @property
    def group(self) -> str:
        return self.table.group_name(self.row)

    @property
    def split(self) -> str:
        return self.table.split_name(self.row)

    @property
    def file(self) -> str:
        return self.table.file(self.row)
