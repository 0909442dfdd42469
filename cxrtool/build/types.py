"""The data that moves through build-dataset: the options, one row per labelled image
(:class:`Candidate`, with what decoding it told in :class:`Analysis`) and the result.

Plain data only, so every step, the report and the figures can share it without importing
each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .quality import Quality, Thresholds
from .sources import Item, Scan

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


@dataclass(slots=True)
class Candidate:
    """One labelled image moving through the pipeline; a step that drops it sets ``reason``."""

    item: Item
    analysis: Analysis = field(default_factory=Analysis)
    reason: str = ""  # set when excluded
    detail: str = ""
    duplicate_of: str = ""
    distance: str = ""
    cluster: int = -1
    group: str = ""
    split: str = ""
    file: str = ""  # path inside OUT

    @property
    def key(self) -> str:
        return f"{self.item.source}/{self.item.rel}"


@dataclass
class BuildResult:
    """What :func:`cxrtool.build.build_dataset` did: every candidate with its fate, and the report."""

    out: Path
    options: BuildOptions
    scans: list[Scan]
    candidates: list[Candidate]
    report: dict

    @property
    def kept(self) -> list[Candidate]:
        return [c for c in self.candidates if not c.reason]
