"""``build-dataset``: scan sources, decode each image once, quality-filter, de-duplicate,
balance, split by group, and write the dataset atomically. No Keras, no JAX.

The pipeline is a sequence of plain functions over a list of :class:`Candidate` rows; each
step marks rows excluded with a reason, so ``excluded.csv`` accounts for every file.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import CLASSES, __version__
from .analyse import Analysis, analyse_files
from .dedup import find_duplicates, get_hasher
from .errors import UsageError
from .hamming import hamming_pairs, pack_hashes
from .manifest import COLUMNS, MANIFEST_NAME, SPLITS
from .quality import METRICS, Thresholds, problems
from .sources import Item, LabelMap, Scan, scan_sources
from .split import assign_splits, balance, stable_key

EXCLUDED_COLUMNS = ("source", "source_file", "label", "reason", "detail", "duplicate_of", "distance", "sha256")
COPY_MODES = ("copy", "hardlink", "png")


@dataclass(frozen=True)
class BuildOptions:
    """Every knob of build-dataset; the CLI maps options 1:1 onto these fields."""

    per_class: int | None = None  # None: keep natural class counts
    split: tuple[float, float, float] = (0.70, 0.15, 0.15)
    seed: int = 0
    workers: int | None = None  # None: all cores
    dry_run: bool = False
    overwrite: bool = False
    mode: str = "copy"  # copy | hardlink | png
    png_size: int | None = None  # with mode png: longest side, None keeps the size
    even_sources: bool = False
    hash_name: str = "phash"
    hash_size: int = 16
    radius: int | None = None  # None: 1/8 of the hash bits (32 of 256)
    thresholds: Thresholds = field(default_factory=Thresholds)
    label_map: Path | None = None
    labels_csv: dict[str, Path] = field(default_factory=dict)
    figures: bool = True

    def hash_radius(self) -> int:
        bits = self.hash_size * self.hash_size
        return self.radius if self.radius is not None else bits // 8


@dataclass
class Candidate:
    """One labelled image moving through the pipeline."""

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
    out: Path
    options: BuildOptions
    scans: list[Scan]
    candidates: list[Candidate]
    report: dict

    @property
    def kept(self) -> list[Candidate]:
        return [c for c in self.candidates if not c.reason]


# ---------------------------------------------------------------- checks


def check_paths(srcs: list[Path], out: Path, overwrite: bool, dry_run: bool) -> None:
    """Refuse OUT inside a SRC, a SRC inside OUT, and a non-empty OUT without --overwrite."""
    out_r = out.resolve()
    for src in srcs:
        src_r = src.resolve()
        if not src.is_dir():
            raise UsageError(f"{src}: source folder not found")
        if out_r == src_r or src_r in out_r.parents:
            raise UsageError(f"{out}: the output folder is inside the source {src}; sources are never written to")
        if out_r in src_r.parents:
            raise UsageError(f"{src}: the source is inside the output folder {out}")
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder")
    if not dry_run and out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UsageError(f"{out}: folder is not empty (use --overwrite to replace it)")


# ---------------------------------------------------------------- pipeline steps


def quality_step(cands: list[Candidate], t: Thresholds) -> None:
    for c in cands:
        a = c.analysis
        if a.error:
            c.reason, c.detail = f"unreadable: {a.error_kind}", a.error
            continue
        found = problems(a.quality, a.width, a.height, t)
        if found:
            c.reason, c.detail = found[0], "; ".join(found)


def duplicate_step(cands: list[Candidate], radius: int) -> dict:
    """Cluster the quality-passed images; keep one per cluster; drop label-conflict clusters."""
    live = [c for c in cands if not c.reason]
    dups = find_duplicates(
        [c.analysis.sha256 for c in live], [c.analysis.pixel_sha for c in live], [c.analysis.hash for c in live], radius
    )
    clusters: dict[int, list[int]] = defaultdict(list)
    for i, cid in enumerate(dups.cluster):
        live[i].cluster = int(cid)
        clusters[int(cid)].append(i)
    conflicts, dropped_dups, within_pairs, across_pairs, cross_clusters = [], 0, 0, 0, 0
    for cid, members in clusters.items():
        if len(members) == 1:
            continue
        per_source = Counter(live[i].item.source for i in members)
        same = sum(k * (k - 1) // 2 for k in per_source.values())
        within_pairs += same
        across_pairs += len(members) * (len(members) - 1) // 2 - same
        cross_clusters += len(per_source) > 1
        labels = sorted({live[i].item.label for i in members})
        if len(labels) > 1:
            names = ", ".join(f"{live[i].key} ({live[i].item.label})" for i in members[:6])
            conflicts.append({"cluster": cid, "labels": labels, "size": len(members), "members": [live[i].key for i in members]})
            for i in members:
                live[i].reason = "label conflict"
                live[i].detail = f"duplicate cluster with labels {' vs '.join(labels)}: {names}"
            continue
        # best resolution first, then the first in stable (source, path) order
        rep = min(members, key=lambda i: (-live[i].analysis.width * live[i].analysis.height, live[i].key))
        for i in members:
            if i == rep:
                continue
            c = live[i]
            same_bytes = c.analysis.sha256 == live[rep].analysis.sha256 or c.analysis.pixel_sha == live[rep].analysis.pixel_sha
            c.reason = "exact duplicate" if same_bytes else "near duplicate"
            c.duplicate_of = live[rep].key
            c.distance = str(dups.distance(i, rep))
            c.detail = f"duplicate of {live[rep].key}"
            dropped_dups += 1
    return {
        "hash_pairs_within_radius": dups.hash_pairs,
        "exact_duplicate_images": dups.exact_links,
        "clusters_with_duplicates": sum(1 for m in clusters.values() if len(m) > 1),
        "clusters_across_sources": cross_clusters,
        "duplicate_pairs_within_source": within_pairs,
        "duplicate_pairs_across_sources": across_pairs,
        "largest_cluster": max((len(m) for m in clusters.values()), default=0),
        "images_dropped_as_duplicates": dropped_dups,
        "label_conflicts": conflicts,
    }


def group_step(cands: list[Candidate]) -> None:
    """Group id = connected component of (duplicate cluster) and (source, patient) links, over
    every image that entered de-duplication, so dropped copies still link their patients."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    for c in cands:
        if c.cluster < 0:
            continue
        node = f"c{c.cluster:08d}"
        find(node)
        if c.item.patient:
            union(node, f"p:{c.item.source}:{c.item.patient}")
    for c in cands:
        if c.cluster >= 0:
            c.group = find(f"c{c.cluster:08d}")
    # readable, deterministic names: g00001... in order of the first kept member
    names: dict[str, str] = {}
    for c in sorted((c for c in cands if c.cluster >= 0), key=lambda c: c.key):
        names.setdefault(c.group, f"g{len(names) + 1:06d}")
    for c in cands:
        if c.group:
            c.group = names[c.group]


def balance_step(cands: list[Candidate], options: BuildOptions) -> dict:
    live = [c for c in cands if not c.reason]
    keep = set(
        balance(
            [c.item.label for c in live],
            [c.analysis.sha256 + c.key for c in live],
            [c.item.source for c in live],
            options.per_class,
            options.seed,
            options.even_sources,
        )
    )
    for i, c in enumerate(live):
        if i not in keep:
            c.reason = "balanced out"
            c.detail = f"class {c.item.label} down-sampled to {options.per_class}"
    counts = Counter(c.item.label for i, c in enumerate(live) if i in keep)
    short = {label: counts.get(label, 0) for label in CLASSES if options.per_class and counts.get(label, 0) < options.per_class}
    return {"per_class": options.per_class, "even_sources": options.even_sources, "classes_below_target": short}


def split_step(cands: list[Candidate], options: BuildOptions) -> None:
    live = [c for c in cands if not c.reason]
    splits = assign_splits([c.item.label for c in live], [c.group for c in live], options.split, options.seed)
    used: set[str] = set()
    for c, split in zip(live, splits):
        c.split = split
    for c in sorted(live, key=lambda c: c.key):
        c.file = _unique_name(c, used, options)


def _unique_name(c: Candidate, used: set[str], options: BuildOptions) -> str:
    stem = Path(c.item.rel).stem
    suffix = ".png" if options.mode == "png" else Path(c.item.rel).suffix.lower()
    safe_source = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in c.item.source)
    safe_stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)
    name = f"{c.split}/{c.item.label}/{safe_source}__{safe_stem}{suffix}"
    if name.lower() in used:
        name = f"{c.split}/{c.item.label}/{safe_source}__{safe_stem}-{c.analysis.sha256[:8]}{suffix}"
    used.add(name.lower())
    return name


def leak_check(cands: list[Candidate], radius: int) -> dict:
    """Independent check after splitting: near-duplicate pairs and patients across splits (must be 0)."""
    kept = [c for c in cands if not c.reason]
    cross_pairs = 0
    same = Counter(c.analysis.sha256 for c in kept)
    if kept:
        pairs, _ = hamming_pairs(pack_hashes([c.analysis.hash for c in kept]), radius)
        split = np.array([c.split for c in kept])
        cross_pairs = int((split[pairs[:, 0]] != split[pairs[:, 1]]).sum()) if len(pairs) else 0
    patients: dict[str, set[str]] = defaultdict(set)
    for c in kept:
        if c.item.patient:
            patients[f"{c.item.source}:{c.item.patient}"].add(c.split)
    groups: dict[str, set[str]] = defaultdict(set)
    for c in kept:
        groups[c.group].add(c.split)
    return {
        "near_duplicate_pairs_across_splits": cross_pairs,
        "patients_across_splits": sum(1 for s in patients.values() if len(s) > 1),
        "groups_across_splits": sum(1 for s in groups.values() if len(s) > 1),
        "identical_files_kept_twice": sum(1 for n in same.values() if n > 1),
    }


# ---------------------------------------------------------------- writing


def manifest_rows(cands: list[Candidate]) -> list[dict[str, str]]:
    rows = []
    for c in sorted((c for c in cands if not c.reason), key=lambda c: c.file):
        a = c.analysis
        q = a.quality.as_dict()
        rows.append(
            {
                "file": c.file,
                "label": c.item.label,
                "split": c.split,
                "source": c.item.source,
                "source_file": c.item.rel,
                "group": c.group,
                "patient": c.item.patient,
                "sha256": a.sha256,
                "phash": a.hash,
                "width": str(a.width),
                "height": str(a.height),
                **{m: f"{q[m]:.5f}" for m in METRICS},
            }
        )
    return rows


def excluded_rows(scans: list[Scan], cands: list[Candidate]) -> list[dict[str, str]]:
    rows = []
    for scan in scans:
        for item in scan.items:
            if item.label is None:
                rows.append({"source": item.source, "source_file": item.rel, "label": "", "reason": "no label", "detail": item.reason})
    for c in cands:
        if c.reason:
            rows.append(
                {
                    "source": c.item.source,
                    "source_file": c.item.rel,
                    "label": c.item.label or "",
                    "reason": c.reason,
                    "detail": c.detail,
                    "duplicate_of": c.duplicate_of,
                    "distance": c.distance,
                    "sha256": c.analysis.sha256,
                }
            )
    rows.sort(key=lambda r: (r["source"], r["source_file"]))
    return rows


def _csv_text(columns, rows) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _place_image(c: Candidate, dest: Path, options: BuildOptions) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if options.mode == "hardlink":
        try:
            os.link(c.item.path, dest)
            return
        except OSError:
            pass  # another file system: fall back to a copy
    if options.mode == "png":
        from PIL import Image

        from .imageio import load_image

        im = Image.fromarray(load_image(c.item.path), mode="L")
        if options.png_size:
            im.thumbnail((options.png_size, options.png_size), Image.Resampling.LANCZOS)
        im.save(dest, format="PNG")
        return
    shutil.copyfile(c.item.path, dest)


def write_dataset(out: Path, result: BuildResult, on_file=None) -> None:
    """Write into a temporary sibling folder, then rename: an interrupted run leaves no
    folder that looks like a finished dataset."""
    from .report import write_reports

    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        for c in result.kept:
            _place_image(c, tmp / c.file, result.options)
            if on_file:
                on_file(1)
        (tmp / "excluded.csv").write_text(_csv_text(EXCLUDED_COLUMNS, excluded_rows(result.scans, result.candidates)), encoding="utf-8")
        write_reports(tmp, result)
        # manifest last: its presence marks a complete dataset
        (tmp / MANIFEST_NAME).write_text(_csv_text(COLUMNS, manifest_rows(result.candidates)), encoding="utf-8")
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ---------------------------------------------------------------- entry point


def build_dataset(srcs: list[Path], out: Path, options: BuildOptions | None = None, progress=None) -> BuildResult:
    """Build a dataset from SRC folders into OUT. ``progress(description, total)`` returns a
    callable that advances a bar (the CLI passes rich; the library default is silent)."""
    options = options or BuildOptions()
    srcs = [Path(s) for s in srcs]
    out = Path(out)
    get_hasher(options.hash_name, options.hash_size)  # validate early
    check_paths(srcs, out, options.overwrite, options.dry_run)
    scans = scan_sources(srcs, LabelMap.load(options.label_map), options.labels_csv)
    cands = [Candidate(item) for scan in scans for item in scan.items if item.label]
    if not cands:
        raise UsageError(f"no labelled images found in {', '.join(map(str, srcs))}")
    tick = progress("Decoding and hashing", len(cands)) if progress else None
    results = analyse_files([c.item.path for c in cands], options.hash_name, options.hash_size, options.workers, tick)
    for c, a in zip(cands, results):
        c.analysis = a
    quality_step(cands, options.thresholds)
    radius = options.hash_radius()
    dup_stats = duplicate_step(cands, radius)
    group_step(cands)
    balance_stats = balance_step(cands, options)
    split_step(cands, options)
    from .report import build_report

    result = BuildResult(out, options, scans, cands, {})
    result.report = build_report(result, dup_stats, balance_stats, leak_check(cands, radius))
    if not options.dry_run:
        tick = progress("Writing images", len(result.kept)) if progress else None
        write_dataset(out, result, tick)
    return result
