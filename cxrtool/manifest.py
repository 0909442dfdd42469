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

import csv
import hashlib
import io
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

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
    """One image of a dataset as the manifest describes it."""

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
class Manifest:
    root: Path
    entries: tuple[Entry, ...]
    fingerprint: str  # sha256 of manifest.csv
    classes: tuple[str, ...]
    has_file_sha256: bool = False

    def split(self, name: str) -> list[Entry]:
        return [e for e in self.entries if e.split == name]


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


def check_file_name(root: Path, real_root: Path, file: str) -> str | None:
    """Why the manifest's FILE may not be read (None when it is a path inside the dataset folder)."""
    if not file:
        return "empty file name"
    if "\x00" in file:
        return "file name contains a NUL byte"
    if "\\" in file or PurePosixPath(file).is_absolute() or PureWindowsPath(file).drive:
        return f"file {file!r} is not a relative path inside the dataset folder (use / and no drive or leading /)"
    if ".." in PurePosixPath(file).parts:
        return f"file {file!r} leaves the dataset folder ('..')"
    target = (root / file).resolve()
    if not target.is_relative_to(real_root):
        return f"file {file!r} resolves outside the dataset folder (to {target}: a symbolic link?)"
    return None


def read_manifest(dataset: str | Path) -> Manifest:
    """Read ``DATASET/manifest.csv``, checking every row; one clear :class:`DatasetError` naming
    the line when it is missing, empty, not UTF-8, lacks a column, or a row names a file outside
    the dataset folder, an unknown label or split, or a file listed before."""
    root = Path(dataset)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a dataset folder (no such directory)")
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise DatasetError(f"{root}: no {MANIFEST_NAME}; make one with `cxrtool build-dataset SRC {root}`")
    raw = path.read_bytes()
    text = _decode(path, raw)
    if not text.strip():
        raise DatasetError(f"{path}: empty file (no header, no rows); rebuild it with `cxrtool build-dataset`")
    real_root = root.resolve()
    reader = csv.DictReader(io.StringIO(text, newline=""), restkey="\x00extra")
    try:
        fields = reader.fieldnames or []
        missing = [c for c in REQUIRED if c not in fields]
        if missing:
            raise DatasetError(f"{path}:1: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        entries: list[Entry] = []
        seen: dict[str, int] = {}
        for row in reader:
            line = reader.line_num
            where = f"{path}:{line}"
            if "\x00extra" in row or any(row.get(c) is None for c in fields):
                raise DatasetError(f"{where}: {len(fields)} columns in the header but not in this row")
            file = row["file"]
            problem = check_file_name(root, real_root, file)
            if problem:
                raise DatasetError(f"{where}: {problem}")
            if row["label"] not in CLASSES:
                raise DatasetError(f"{where}: unknown label {row['label']!r} (expected one of {', '.join(CLASSES)})")
            if row["split"] not in SPLITS:
                raise DatasetError(f"{where}: unknown split {row['split']!r} (expected one of {', '.join(SPLITS)})")
            key = os.path.normcase(os.path.normpath(file))
            if key in seen:
                raise DatasetError(f"{where}: file {file!r} is listed twice (first on line {seen[key]})")
            seen[key] = line
            entries.append(
                Entry(
                    path=root / file,
                    file=file,
                    label=row["label"],
                    split=row["split"],
                    source=row.get("source") or "",
                    group=row.get("group") or file,
                    patient=row.get("patient") or "",
                    line=line,
                    file_sha256=(row.get(FILE_SHA256) or "").strip().lower(),
                )
            )
    except csv.Error as exc:
        raise DatasetError(f"{path}:{reader.line_num}: not a CSV file ({exc})") from None
    if not entries:
        raise DatasetError(f"{path}: lists no images (a header without rows)")
    return Manifest(
        root=root, entries=tuple(entries), fingerprint=hashlib.sha256(raw).hexdigest(), classes=CLASSES,
        has_file_sha256=FILE_SHA256 in fields,
    )


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
    wanted = None if splits is None else set(splits)
    entries = [e for e in manifest.entries if wanted is None or e.split in wanted]
    for e in entries:
        if len(e.file_sha256) != 64:
            raise DatasetError(f"{path}:{e.line}: {e.file}: no valid {FILE_SHA256} to verify against")
    bad: list[tuple[Entry, str]] = []
    with ThreadPoolExecutor(max_workers=default_workers(cap=8, requested=workers)) as pool:
        for done, (e, digest) in enumerate(zip(entries, pool.map(_sha256_of, [e.path for e in entries])), start=1):
            if digest is None:
                bad.append((e, "missing or unreadable"))
            elif digest != e.file_sha256:
                bad.append((e, "its bytes differ from the manifest's SHA-256 (changed since build-dataset)"))
            report(progress, "verify", done, len(entries))
    if bad:
        e, why = bad[0]
        more = f" (and {len(bad) - 1} more file{'s' if len(bad) > 2 else ''})" if len(bad) > 1 else ""
        raise DatasetError(f"{path}:{e.line}: {e.file}: {why}{more}")
    return len(entries)


def verify_dataset(dataset: str | Path, splits: Iterable[str] | None = None, *,
                   progress: ProgressFn | None = None) -> int:
    """:func:`read_manifest` + :func:`verify_files`: what ``--verify`` runs before any training or evaluating."""
    return verify_files(read_manifest(dataset), splits, progress=progress)


__all__ = [
    "COLUMNS",
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
