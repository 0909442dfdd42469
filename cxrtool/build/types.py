"""The data that moves through build-dataset: the options, what decoding one image tells
(:class:`Analysis`) and the result. The per-image rows themselves are the columns of
:class:`cxrtool.build.table.CandidateTable` (``Candidate`` is its row view).

Plain data only, so every step, the report and the figures can share it without importing
each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .quality import Quality, Thresholds
from .sources import Scan

#: Column order of excluded.csv (one row per file that is not in the manifest, junk aside).
EXCLUDED_COLUMNS = ("source", "source_file", "label", "reason", "detail", "duplicate_of", "distance", "sha256")
#: How kept images are placed in OUT: the source's bytes, a hard link, or a re-encoded PNG.
COPY_MODES = ("copy", "hardlink", "png")


@dataclass(frozen=True)
class BuildOptions:
    """Every knob of build-dataset; the CLI maps options 1:1 onto these fields."""

    per_class: int | None = None  # None: keep natural class counts
    split: tuple[float, float, float] = (0.70, 0.15, 0.15)
    seed: int = 0
    workers: int | None = None  # None: all cores
    executor: object = "local"  # "local", "dask-local", "dask://HOST:PORT" or a distributed.Client (build/executors.py)
    dry_run: bool = False
    overwrite: bool = False
    mode: str = "copy"  # one of COPY_MODES
    png_size: int | None = None  # with mode png: longest side, None keeps the size
    even_sources: bool = False
    hash_name: str = "phash"
    hash_size: int = 16
    radius: int | None = None  # None: 1/8 of the hash bits (32 of 256)
    thresholds: Thresholds = field(default_factory=Thresholds)
    label_map: Path | None = None
    labels_csv: dict[str, Path] = field(default_factory=dict)
    figures: bool = True
    audit: bool = True  # the shortcut audit (build/audit.py) in the report
    test_sources: tuple[str, ...] = ()  # NAME or NAME:CLASS held out as an external test split
    allow_missing_class: bool = False  # with test_sources: allow a class with no training images

    def hash_radius(self) -> int:
        bits = self.hash_size * self.hash_size
        return self.radius if self.radius is not None else bits // 8


@dataclass(frozen=True, slots=True)
class Analysis:
    """What one decode of one file tells (``error`` set: the file could not be read)."""

    sha256: str = ""
    pixel_sha: str = ""
    hash: str = ""
    width: int = 0
    height: int = 0
    quality: Quality | None = None
    error: str = ""
    error_kind: str = ""
    # for the shortcut audit (build/audit.py): what the file says about itself, and a tiny
    # THUMB x THUMB uint8 thumbnail (row-major bytes, 1 KiB) made from the same decode
    format: str = ""
    mode: str = ""
    bits: int = 0
    file_size: int = 0
    thumb: bytes = b""


@dataclass
class BuildResult:
    """What :func:`cxrtool.build.build_dataset` did: every candidate with its fate (the columns
    of ``table``, a :class:`~cxrtool.build.table.CandidateTable`), and the report."""

    out: Path
    options: BuildOptions
    scans: list[Scan]
    table: object  # a cxrtool.build.table.CandidateTable (not imported here: it imports this module)
    report: dict

    @property
    def candidates(self) -> list:
        """Every labelled image as a row view (:class:`cxrtool.build.table.Candidate`, built on each access)."""
        return self.table.candidates()

    @property
    def kept(self) -> list:
        """The kept images as row views, in scan order."""
        return self.table.candidates(self.table.kept_rows())
