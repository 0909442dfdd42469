"""The dataset manifest: the contract between ``build-dataset`` and everything that trains
or evaluates. One CSV row per kept image; the file's SHA-256 is the dataset fingerprint.

A dataset folder may come from anyone, so :func:`read_manifest` trusts nothing in it: every
row must name a file *inside* the dataset folder (no absolute path, no ``..``, no symbolic
link that leads out), with a known label and split, listed once; the file must be UTF-8 CSV
with the required columns. Any violation is one :class:`DatasetError` naming the manifest
line, raised before a single image is read. :func:`verify_files` (``--verify``) checks the
images' bytes against the ``file_sha256`` column that ``build-dataset`` writes.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import os
import stat
from array import array
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Any, BinaryIO

import numpy as np

from .columns import Categorical, Strings, code_dtype, offset_dtype, one_row, positions
from .labels import CLASSES
from .errors import DatasetError
from .progress import ProgressFn, report

MANIFEST_NAME = "manifest.csv"
SPLITS = ("train", "val", "test")
REQUIRED = ("file", "label", "split")
#: The SHA-256 of the file as it lies in the dataset folder (``sha256`` is the source file's;
#: the two differ when ``--copy-mode png`` re-encodes). ``--verify`` checks it.
FILE_SHA256 = "file_sha256"

#: Column order of manifest.csv (the quality metrics come last).
COLUMNS = (
    "file",  # relative to the dataset folder
    "label",
    "split",
    "source",
    "source_file",  # relative to the source root
    "group",  # duplicate-cluster / patient group id: never crosses splits
    "patient",
    "sha256",  # of the source file's bytes
    FILE_SHA256,  # of the dataset file's bytes
    "phash",
    "width",
    "height",
    "mean",
    "dark_frac",
    "bright_frac",
    "contrast",
    "entropy",
)


@dataclass(frozen=True)
class Entry:
    """One image of a dataset as the manifest describes it (made on demand by :class:`Entries`)."""

    path: Path  # absolute path of the image file
    file: str
    label: str
    split: str
    source: str
    group: str
    patient: str
    line: int = 0  # line of manifest.csv (for messages)
    file_sha256: str = ""  # empty in manifests written before the column existed


@dataclass(frozen=True)
class Columns:
    """Every row of a manifest, one column per field (see :class:`Entries`)."""

    files: Strings
    labels: Categorical  # names: CLASSES
    splits: Categorical  # names: SPLITS
    sources: Categorical  # names sorted
    groups: Strings  # the file where the manifest names no group
    patients: Strings
    file_sha256: Strings  # stripped, lower case; empty where the manifest has none
    lines: np.ndarray  # line of manifest.csv of each row


def _column(name: str) -> property:
    """The column ``name`` of :class:`Columns`, for the rows an :class:`Entries` selects."""

    def get(self: Entries) -> Any:
        col = getattr(self._columns, name)
        return col if self._index is None else col[self._index]

    return property(get, doc=f"The ``{name}`` of these rows, as a column.")


class Entries(Sequence[Entry]):
    """The rows of a manifest, or of a selection of them (one split), held as columns.

    A sequence of :class:`Entry`: ``len``, indexing and iteration make each ``Entry`` when it
    is asked for, so a loop over ``manifest.entries`` or ``manifest.split("train")`` reads as
    before. Code that looks at every row reads the columns instead: ``labels``, ``splits``
    and ``sources`` (:class:`~cxrtool.columns.Categorical`: ``.codes`` is a NumPy array),
    ``files``, ``groups``, ``patients``, ``file_sha256`` (:class:`~cxrtool.columns.Strings`),
    ``lines`` and ``paths()``. Indexing with a slice, mask or positions gives an ``Entries``.
    """

    __slots__ = ("root", "_columns", "_index")

    def __init__(self, root: Path, columns: Columns, index: np.ndarray | None = None):
        self.root, self._columns, self._index = root, columns, index

    def __len__(self) -> int:
        return len(self._columns.lines) if self._index is None else len(self._index)

    def __getitem__(self, i: Any) -> Any:
        j = one_row(i, len(self))
        if j is None:
            rows = positions(i, len(self))
            return Entries(self.root, self._columns, rows if self._index is None else self._index[rows])
        if self._index is not None:
            j = int(self._index[j])
        c = self._columns
        file = c.files[j]
        return Entry(path=self.root / file, file=file, label=c.labels[j], split=c.splits[j], source=c.sources[j],
                     group=c.groups[j], patient=c.patients[j], line=int(c.lines[j]), file_sha256=c.file_sha256[j])

    def __iter__(self) -> Iterator[Entry]:
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        return f"Entries({self.root}, n={len(self)})"

    files = _column("files")
    labels = _column("labels")
    splits = _column("splits")
    sources = _column("sources")
    groups = _column("groups")
    patients = _column("patients")
    file_sha256 = _column("file_sha256")
    lines = _column("lines")

    def paths(self) -> Iterator[Path]:
        """The absolute path of every row's file, one at a time."""
        return (self.root / f for f in self.files)

    def where_split(self, names: Iterable[str]) -> Entries:
        """The rows whose split is one of ``names``."""
        splits = self.splits
        names = set(names)
        wanted = [code for code, s in enumerate(splits.names) if s in names]
        return self[np.isin(splits.codes, wanted)]


@dataclass(frozen=True)
class Manifest:
    root: Path
    entries: Entries
    fingerprint: str  # sha256 of manifest.csv
    classes: tuple[str, ...]
    has_file_sha256: bool = False

    def split(self, name: str) -> Entries:
        """The rows of split ``name`` (no rows for a name that is not a split)."""
        return self.entries.where_split([name])


def fingerprint_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _decode(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DatasetError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); a manifest is the UTF-8 CSV "
            "that build-dataset writes"
        ) from None


#: Bytes of manifest.csv read at a time.
READ_BYTES = 1 << 20


def _scan(path: Path) -> tuple[str, bool]:
    """The SHA-256 of the file and whether its text holds anything but white space, reading
    one block at a time; :class:`DatasetError` (naming the line) when it is not UTF-8."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    content = False
    try:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(READ_BYTES), b""):
                digest.update(block)
                content = bool(decoder.decode(block).strip()) or content
            content = bool(decoder.decode(b"", final=True).strip()) or content
    except UnicodeDecodeError:
        _decode(path, path.read_bytes())  # raises, naming the line of the first bad byte
        raise
    return digest.hexdigest(), content


class _Hashing(io.RawIOBase):
    """A binary file that hashes what is read through it."""

    def __init__(self, fh: BinaryIO):
        self.fh, self.digest = fh, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.fh.readinto(buffer)
        if n:
            self.digest.update(memoryview(buffer)[:n])
        return n


class _Resolver:
    """Where the manifest's files resolve to, for many files: each folder is resolved once
    and a file itself only when it is a symbolic link (``(root / file).resolve()`` per row
    would look up every folder on the way again)."""

    MAX_FOLDERS = 4096

    def __init__(self, root: Path, real_root: Path):
        self.root, self.real_root = root, real_root
        self.folders: dict[str, tuple[str, bool]] = {}  # folder -> (its real path, inside real_root?)

    def outside(self, file: str) -> Path | None:
        """What ``file`` resolves to when that is outside the dataset folder, else None."""
        folder, _, name = file.rpartition("/")
        if name in ("", ".", ".."):
            return self._resolved_outside(self.root / file)
        known = self.folders.get(folder)
        if known is None:
            if len(self.folders) >= self.MAX_FOLDERS:
                self.folders.clear()
            real = (self.root / folder).resolve()
            known = self.folders[folder] = (str(real), real.is_relative_to(self.real_root))
        joined = os.path.join(known[0], name)
        try:
            link = stat.S_ISLNK(os.lstat(joined).st_mode)
        except OSError:  # a missing file resolves to itself
            link = False
        if link:
            return self._resolved_outside(Path(joined))
        return None if known[1] else Path(joined)

    def _resolved_outside(self, path: Path) -> Path | None:
        target = path.resolve()
        return None if target.is_relative_to(self.real_root) else target


def check_file_name(root: Path, real_root: Path, file: str, *, resolver: _Resolver | None = None) -> str | None:
    """Why the manifest's FILE may not be read (None when it is a path inside the dataset folder)."""
    if not file:
        return "empty file name"
    if "\x00" in file:
        return "file name contains a NUL byte"
    # PurePosixPath(file).is_absolute() is a leading /; PureWindowsPath(file).drive needs a ':'
    # once backslashes are out (or a leading //)
    if "\\" in file or file.startswith("/") or (":" in file and PureWindowsPath(file).drive):
        return f"file {file!r} is not a relative path inside the dataset folder (use / and no drive or leading /)"
    if ".." in file.split("/"):  # PurePosixPath(file).parts, as far as '..' goes
        return f"file {file!r} leaves the dataset folder ('..')"
    target = (resolver or _Resolver(root, real_root)).outside(file)
    if target is not None:
        return f"file {file!r} resolves outside the dataset folder (to {target}: a symbolic link?)"
    return None


class _Rows:
    """The columns of a manifest as they are read: every string in one buffer, codes and
    offsets in typed arrays (a few dozen bytes a row beside the text)."""

    def __init__(self, path: Path, fields: list[str]):
        self.path = path
        self.col = {c: i for i, c in enumerate(fields)}  # the last of a repeated name, as csv.DictReader
        self.text = bytearray()
        self.bounds = array("q")  # end of file, group, patient, file_sha256 in text, per row
        self.labels, self.splits, self.sources = array("B"), array("B"), array("q")
        self.source_names: dict[str, int] = {}
        self.lines, self.keys = array("q"), array("q")

    def add(self, row: list[str], line: int) -> None:
        col, text, bounds = self.col, self.text, self.bounds
        file = row[col["file"]]
        text += file.encode("utf-8")
        bounds.append(len(text))
        group = row[col["group"]] if "group" in col else ""
        text += group.encode("utf-8")
        bounds.append(len(text))
        text += (row[col["patient"]] if "patient" in col else "").encode("utf-8")
        bounds.append(len(text))
        text += (row[col[FILE_SHA256]].strip().lower() if FILE_SHA256 in col else "").encode("utf-8")
        bounds.append(len(text))
        self.labels.append(_CLASS_CODE[row[col["label"]]])
        self.splits.append(_SPLIT_CODE[row[col["split"]]])
        source = row[col["source"]] if "source" in col else ""
        code = self.source_names.get(source)
        if code is None:
            code = self.source_names[source] = len(self.source_names)
        self.sources.append(code)
        self.lines.append(line)
        self.keys.append(hash(_file_key(file)))

    def first_duplicate(self) -> tuple[int, int] | None:
        """``(row, earlier row)`` of the first row whose file was listed on an earlier row."""
        keys = np.frombuffer(self.keys, np.int64)
        order = np.argsort(keys, kind="stable")  # rows of equal hash stay in file order
        sorted_keys = keys[order]
        same = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
        if not len(same):
            return None
        files = self._strings(0)
        first: tuple[int, int] | None = None
        runs = np.flatnonzero(np.diff(np.concatenate([[-2], same])) != 1)  # where each run of equal hashes starts
        for start in same[runs]:
            seen: dict[str, int] = {}
            pos = start
            while pos < len(keys) and sorted_keys[pos] == sorted_keys[start]:
                row = int(order[pos])
                key = _file_key(files[row])
                if key in seen:  # the first repeat of this run (the hashes of others may collide)
                    if first is None or row < first[0]:
                        first = (row, seen[key])
                    break
                seen[key] = row
                pos += 1
        return first

    def where(self, row: int) -> str:
        return f"{self.path}:{self.lines[row]}"

    def _strings(self, k: int) -> Strings:
        """Column ``k`` (0: file, 1: group, 2: patient, 3: file_sha256) of the rows read so far."""
        bounds = np.frombuffer(self.bounds, np.int64)
        ends = bounds[k::4]
        starts = bounds[k - 1 :: 4] if k else np.concatenate([[0], bounds[3:-1:4]])
        return Strings(self.text, starts, ends)

    def columns(self) -> Columns:
        bounds = np.frombuffer(self.bounds, np.int64).reshape(-1, 4)
        dtype = offset_dtype(len(self.text))
        ends = bounds.astype(dtype).T
        starts = np.empty_like(ends)
        starts[0, 0] = 0
        starts[0, 1:] = ends[3, :-1]
        starts[1:] = ends[:-1]
        no_group = starts[1] == ends[1]  # the group is then the file
        starts[1, no_group], ends[1, no_group] = starts[0, no_group], ends[0, no_group]
        del bounds
        names = sorted(self.source_names)
        rank = np.empty(len(names), np.int64)
        rank[[self.source_names[s] for s in names]] = np.arange(len(names))
        sources = rank[np.frombuffer(self.sources, np.int64)].astype(code_dtype(len(names)))
        strings = [Strings(self.text, starts[k].copy(), ends[k].copy()) for k in range(4)]
        return Columns(
            files=strings[0], groups=strings[1], patients=strings[2], file_sha256=strings[3],
            labels=Categorical(np.frombuffer(self.labels, np.uint8).copy(), CLASSES),
            splits=Categorical(np.frombuffer(self.splits, np.uint8).copy(), SPLITS),
            sources=Categorical(sources, names),
            lines=np.frombuffer(self.lines, np.int64).astype(offset_dtype(self.lines[-1] if self.lines else 0)),
        )


_CLASS_CODE = {c: i for i, c in enumerate(CLASSES)}
_SPLIT_CODE = {s: i for i, s in enumerate(SPLITS)}


def _file_key(file: str) -> str:
    """Two rows with the same key name the same file."""
    return os.path.normcase(os.path.normpath(file))


def read_manifest(dataset: str | Path) -> Manifest:
    """Read ``DATASET/manifest.csv``, checking every row; one clear :class:`DatasetError` naming
    the line when it is missing, empty, not UTF-8, lacks a column, or a row names a file outside
    the dataset folder, an unknown label or split, or a file listed before.

    The file is read twice, a block at a time, and never held whole: once for its SHA-256 (the
    fingerprint) and to check that it is UTF-8 text, then row by row into columns
    (:class:`Entries`): about the bytes of its strings plus 40 a row, not an object per row.
    """
    root = Path(dataset)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a dataset folder (no such directory)")
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise DatasetError(f"{root}: no {MANIFEST_NAME}; make one with `cxrtool build-dataset SRC {root}`")
    fingerprint, content = _scan(path)
    if not content:
        raise DatasetError(f"{path}: empty file (no header, no rows); rebuild it with `cxrtool build-dataset`")
    real_root = root.resolve()
    resolver = _Resolver(root, real_root)
    with path.open("rb") as raw:
        hashing = _Hashing(raw)
        text = io.TextIOWrapper(io.BufferedReader(hashing, READ_BYTES), encoding="utf-8-sig", newline="")
        fields, rows = _read_rows(path, csv.reader(text), root, real_root, resolver)
        if hashing.digest.hexdigest() != fingerprint:
            raise DatasetError(f"{path}: changed while it was being read; read it again when nothing writes to it")
    return Manifest(
        root=root, entries=Entries(root, rows.columns()), fingerprint=fingerprint, classes=CLASSES,
        has_file_sha256=FILE_SHA256 in fields,
    )


def _read_rows(path: Path, reader: Any, root: Path, real_root: Path, resolver: _Resolver) -> tuple[list[str], _Rows]:
    """Every row of ``reader`` checked, as :class:`_Rows`; the first problem (in the order of
    the file) as a :class:`DatasetError` naming its line as ``csv.DictReader`` counts lines."""
    line = 0  # as csv.DictReader.line_num: the reader's line after the header and after each row
    rows: _Rows | None = None
    try:
        fields = next(reader, None) or []
        line = reader.line_num
        missing = [c for c in REQUIRED if c not in fields]
        if missing:
            raise DatasetError(f"{path}:1: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        rows = _Rows(path, fields)
        col = rows.col
        for row in reader:
            line = reader.line_num  # where a csv.Error while skipping blank lines is said to be
            while row == []:  # csv.DictReader skips blank lines
                row = next(reader)
            line = reader.line_num
            where = f"{path}:{line}"
            if len(row) != len(fields):
                _fail(rows, f"{where}: {len(fields)} columns in the header but not in this row")
            file = row[col["file"]]
            problem = check_file_name(root, real_root, file, resolver=resolver)
            if problem:
                _fail(rows, f"{where}: {problem}")
            label, split = row[col["label"]], row[col["split"]]
            if label not in _CLASS_CODE:
                _fail(rows, f"{where}: unknown label {label!r} (expected one of {', '.join(CLASSES)})")
            if split not in _SPLIT_CODE:
                _fail(rows, f"{where}: unknown split {split!r} (expected one of {', '.join(SPLITS)})")
            rows.add(row, line)
    except StopIteration:  # blank lines at the end of the file
        pass
    except csv.Error as exc:
        _fail(rows, f"{path}:{line}: not a CSV file ({exc})")
    assert rows is not None
    _fail(rows, None)
    if not rows.lines:
        raise DatasetError(f"{path}: lists no images (a header without rows)")
    return fields, rows


def _fail(rows: _Rows | None, message: str | None) -> None:
    """Raise the first problem of the file: a file listed twice among the rows read so far
    (they come before the row of ``message``), else ``message`` (None: no problem)."""
    if rows is not None:
        twice = rows.first_duplicate()
        if twice is not None:
            row, earlier = twice
            raise DatasetError(f"{rows.where(row)}: file {rows._strings(0)[row]!r} is listed twice "
                               f"(first on line {rows.lines[earlier]})")
    if message is not None:
        raise DatasetError(message)


#: Files hashed per batch of ``verify_files``.
VERIFY_CHUNK = 1024


def _sha256_of(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def verify_files(manifest: Manifest, splits: Iterable[str] | None = None, *, workers: int | None = None,
                 progress: ProgressFn | None = None) -> int:
    """Check the files of SPLITS (all when None) against the manifest's ``file_sha256``.

    Returns the number of files checked; a :class:`DatasetError` names the first row whose file
    is missing or whose bytes differ (and how many more do), or says that the manifest predates
    the column. ``progress`` gets one ``verify`` event per file.
    """
    from .workers import default_workers

    path = manifest.root / MANIFEST_NAME
    if not manifest.has_file_sha256:
        raise DatasetError(
            f"{path}: no {FILE_SHA256} column (written by an older cxrtool), so the files cannot be verified; "
            "rebuild the dataset with `cxrtool build-dataset` or drop --verify"
        )
    entries = manifest.entries if splits is None else manifest.entries.where_split(splits)
    for i, digest in enumerate(entries.file_sha256):
        if len(digest) != 64:
            e = entries[i]
            raise DatasetError(f"{path}:{e.line}: {e.file}: no valid {FILE_SHA256} to verify against")
    first_bad: tuple[int, str] | None = None
    n_bad = done = 0
    with ThreadPoolExecutor(max_workers=default_workers(cap=8, requested=workers)) as pool:
        for start in range(0, len(entries), VERIFY_CHUNK):  # a chunk at a time: no Path or future per row held
            part = entries[start : start + VERIFY_CHUNK]
            for i, expected, digest in zip(range(start, start + len(part)), part.file_sha256,
                                           pool.map(_sha256_of, part.paths())):
                why = ("missing or unreadable" if digest is None else
                       "its bytes differ from the manifest's SHA-256 (changed since build-dataset)" if digest != expected
                       else None)
                if why is not None:
                    n_bad += 1
                    first_bad = first_bad or (i, why)
                done += 1
                report(progress, "verify", done, len(entries))
    if first_bad is not None:
        (i, why), e = first_bad, entries[first_bad[0]]
        more = f" (and {n_bad - 1} more file{'s' if n_bad > 2 else ''})" if n_bad > 1 else ""
        raise DatasetError(f"{path}:{e.line}: {e.file}: {why}{more}")
    return len(entries)


def verify_dataset(dataset: str | Path, splits: Iterable[str] | None = None, *,
                   progress: ProgressFn | None = None) -> int:
    """:func:`read_manifest` + :func:`verify_files`: what ``--verify`` runs before any training or evaluating."""
    return verify_files(read_manifest(dataset), splits, progress=progress)


__all__ = [
    "COLUMNS",
    "Columns",
    "Entries",
    "Entry",
    "FILE_SHA256",
    "MANIFEST_NAME",
    "Manifest",
    "REQUIRED",
    "SPLITS",
    "check_file_name",
    "fingerprint_file",
    "read_manifest",
    "verify_dataset",
    "verify_files",
]
