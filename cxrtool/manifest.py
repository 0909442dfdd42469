"""The dataset manifest: the contract between ``build-dataset`` and everything that trains
or evaluates. One CSV row per kept image; the file's SHA-256 is the dataset fingerprint."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

from .labels import CLASSES
from .errors import DatasetError

MANIFEST_NAME = "manifest.csv"
SPLITS = ("train", "val", "test")

#: Column order of manifest.csv (the quality metrics come last).
COLUMNS = (
    "file",  # relative to the dataset folder
    "label",
    "split",
    "source",
    "source_file",  # relative to the source root
    "group",  # duplicate-cluster / patient group id: never crosses splits
    "patient",
    "sha256",
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


@dataclass(frozen=True)
class Manifest:
    root: Path
    entries: tuple[Entry, ...]
    fingerprint: str  # sha256 of manifest.csv
    classes: tuple[str, ...]

    def split(self, name: str) -> list[Entry]:
        return [e for e in self.entries if e.split == name]


def fingerprint_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_manifest(dataset: str | Path) -> Manifest:
    """Read ``DATASET/manifest.csv``; a clear :class:`DatasetError` when it is missing or malformed."""
    root = Path(dataset)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a dataset folder (no such directory)")
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise DatasetError(f"{root}: no {MANIFEST_NAME}; make one with `cxrtool build-dataset SRC {root}`")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"file", "label", "split"} - set(reader.fieldnames or ())
        if missing:
            raise DatasetError(f"{path}: missing columns {', '.join(sorted(missing))}")
        entries = []
        for line, row in enumerate(reader, start=2):
            if row["label"] not in CLASSES:
                raise DatasetError(f"{path}:{line}: unknown label {row['label']!r}")
            if row["split"] not in SPLITS:
                raise DatasetError(f"{path}:{line}: unknown split {row['split']!r}")
            entries.append(
                Entry(
                    path=root / row["file"],
                    file=row["file"],
                    label=row["label"],
                    split=row["split"],
                    source=row.get("source") or "",
                    group=row.get("group") or row["file"],
                    patient=row.get("patient") or "",
                )
            )
    return Manifest(root=root, entries=tuple(entries), fingerprint=fingerprint_file(path), classes=CLASSES)
