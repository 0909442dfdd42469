"""``build-dataset`` from start to end: scan sources, decode each image once, quality-filter,
de-duplicate, group, balance, split, check for leaks, report, then write. No Keras, no JAX.

The steps are plain functions over one list of :class:`Candidate` rows; each marks the rows
it drops with a reason, so ``excluded.csv`` accounts for every file. The algorithms they
apply (metrics, hashing, pair search, clustering, balancing, splitting) live in their own
modules and work on plain lists.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..labels import CLASSES
from ..errors import UsageError
from ..progress import ProgressFn
from .analyse import THUMB
from .audit import shortcut_audit
from .dedup import components, find_duplicates
from .executors import analyse_with, connected
from .hashing import get_hasher
from .holdout import holdout_leak_check, holdout_step, pool_fractions, resolve_test_sources
from .quality import Thresholds, problems
from .report import build_report
from .search import hamming_pairs, pack_hashes
from .sources import LabelMap, scan_sources
from .split import assign_splits, balance
from .types import Analysis, BuildOptions, BuildResult, Candidate
from .write import write_dataset


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


# ---------------------------------------------------------------- analysis, in bounded batches

#: Files analysed per batch. Each batch's results are compacted (thumbnail spilled to disk,
#: repeated short strings shared) before the next starts, so memory never holds every
#: image's full analysis at once: at a million images those are 2 GB.
ANALYSE_BATCH = 20_000


class ThumbStore:
    """The shortcut audit's 1 KiB thumbnails, one fixed-size record per candidate, in an
    unnamed temporary file (deleted on close, even on a crash): at a million images they would
    be a gigabyte of memory, and the audit reads back only its sample (5000)."""

    SIZE = THUMB * THUMB

    def __init__(self, n: int) -> None:
        self._file = tempfile.TemporaryFile(prefix="cxrtool-thumbs-")
        self._has = np.zeros(n, dtype=bool)

    def __enter__(self) -> "ThumbStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()

    def put(self, row: int, thumb: bytes) -> None:
        if thumb:
            os.pwrite(self._file.fileno(), thumb, row * self.SIZE)
            self._has[row] = True

    def get(self, row: int) -> bytes:
        return os.pread(self._file.fileno(), self.SIZE, row * self.SIZE) if self._has[row] else b""


class WithThumbs(Sequence):
    """The kept images' analyses with each thumbnail read back from the store on access."""

    def __init__(self, analyses: Sequence[Analysis], rows: Sequence[int], store: ThumbStore) -> None:
        self._analyses, self._rows, self._store = analyses, rows, store

    def __len__(self) -> int:
        return len(self._analyses)

    def __getitem__(self, k):  # noqa: ANN001 - Sequence protocol (int or slice)
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        return replace(self._analyses[k], thumb=self._store.get(self._rows[k]))


def _compact(a: Analysis) -> Analysis:
    """The analysis without its thumbnail, its repeated short strings shared (one object each)."""
    return replace(a, thumb=b"", format=sys.intern(a.format), mode=sys.intern(a.mode), error_kind=sys.intern(a.error_kind))


def analyse_step(cands: list[Candidate], options: BuildOptions, thumbs: ThumbStore, progress: ProgressFn | None) -> None:
    """Decode and measure every candidate (in parallel, ``ANALYSE_BATCH`` files at a time);
    thumbnails go to ``thumbs``. Progress events count over all files, as one run would."""
    total = len(cands)

    def shifted(offset: int) -> ProgressFn | None:
        if progress is None:
            return None
        return lambda event: progress({**event, "done": offset + event["done"], "total": total})

    with connected(options.executor, options.workers) as executor:  # a Dask spelling connects once, not per batch
        for lo in range(0, total, ANALYSE_BATCH):
            batch = cands[lo : lo + ANALYSE_BATCH]
            results = analyse_with(executor, [c.item.path for c in batch], options.hash_name, options.hash_size,
                                   options.workers, shifted(lo))
            for k, (c, a) in enumerate(zip(batch, results)):
                thumbs.put(lo + k, a.thumb)
                c.analysis = _compact(a)
            del results


# ---------------------------------------------------------------- pipeline steps


def quality_step(cands: list[Candidate], t: Thresholds) -> None:
    """Drop unreadable files and those failing a size or exposure rule (first reason wins)."""
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
    for c, cid in zip(live, dups.cluster.tolist()):
        c.cluster = cid
    # only clusters of two or more need Python-level work: at a million images a dict of
    # one list per singleton cluster alone took hundreds of MB
    order = np.argsort(dups.cluster, kind="stable")
    ids, starts, sizes = np.unique(dups.cluster[order], return_index=True, return_counts=True)
    multi = np.flatnonzero(sizes > 1)
    clusters = {int(ids[k]): order[starts[k] : starts[k] + sizes[k]].tolist() for k in multi}
    conflicts, dropped_dups, within_pairs, across_pairs, cross_clusters = [], 0, 0, 0, 0
    for cid, members in clusters.items():
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
        "clusters_with_duplicates": len(clusters),
        "clusters_across_sources": cross_clusters,
        "duplicate_pairs_within_source": within_pairs,
        "duplicate_pairs_across_sources": across_pairs,
        "largest_cluster": int(sizes.max()) if len(sizes) else 0,
        "images_dropped_as_duplicates": dropped_dups,
        "label_conflicts": conflicts,
    }


def group_step(cands: list[Candidate]) -> None:
    """Group id = connected component of (duplicate cluster) and (source, patient) links, over
    every image that entered de-duplication, so dropped copies still link their patients."""
    entered = [c for c in cands if c.cluster >= 0]
    if not entered:
        return
    n_clusters = max(c.cluster for c in entered) + 1
    patients: dict[str, int] = {}  # patient -> its node, numbered after the cluster nodes
    edges_a, edges_b = [], []
    for c in entered:
        if c.item.patient:
            node = patients.setdefault(f"{c.item.source}:{c.item.patient}", n_clusters + len(patients))
            edges_a.append(c.cluster)
            edges_b.append(node)
    component = components(n_clusters + len(patients), edges_a, edges_b)
    # readable, deterministic names: g000001... in (source, path) order of first member
    names: dict[int, str] = {}
    for c in sorted(entered, key=lambda c: c.key):
        c.group = names.setdefault(int(component[c.cluster]), f"g{len(names) + 1:06d}")


def balance_step(cands: list[Candidate], options: BuildOptions) -> dict:
    """Down-sample each class to ``per_class`` (never up); report classes that fall short.
    Images already placed (a held-out test) are not balanced."""
    live = [c for c in cands if not c.reason and not c.split]
    if options.per_class is None:  # nothing to down-sample: skip building a million sort keys
        keep = set(range(len(live)))
    else:
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
    """Assign each kept image its split (whole groups together) and its file name in OUT.
    With a held-out test already placed, the rest is split into train/val only."""
    live = [c for c in cands if not c.reason]
    pool = [c for c in live if not c.split]
    fractions = pool_fractions(options.split) if options.test_sources else options.split
    splits = assign_splits([c.item.label for c in pool], [c.group for c in pool], fractions, options.seed)
    used: set[str] = set()
    for c, split in zip(pool, splits):
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
    shas = sorted(c.analysis.sha256 for c in kept)  # a list, not a million-entry Counter
    twice = sum(1 for i in range(1, len(shas)) if shas[i] == shas[i - 1] and (i == 1 or shas[i - 1] != shas[i - 2]))
    if kept:
        pairs, _ = hamming_pairs(pack_hashes([c.analysis.hash for c in kept]), radius)
        split = np.array([c.split for c in kept])
        cross_pairs = int((split[pairs[:, 0]] != split[pairs[:, 1]]).sum()) if len(pairs) else 0
    with_patient = [c for c in kept if c.item.patient]
    return {
        "near_duplicate_pairs_across_splits": cross_pairs,
        "patients_across_splits": _spanning(
            [f"{c.item.source}:{c.item.patient}" for c in with_patient], [c.split for c in with_patient]
        ),
        "groups_across_splits": _spanning([c.group for c in kept], [c.split for c in kept]),
        "identical_files_kept_twice": twice,
    }


def _spanning(keys: list[str], splits: list[str]) -> int:
    """How many distinct keys occur in more than one split (arrays, not a set per key: a
    million singleton groups as Python sets took over 200 MB)."""
    if not keys:
        return 0
    _, key_id = np.unique(np.array(keys), return_inverse=True)
    _, split_id = np.unique(np.array(splits), return_inverse=True)
    pairs = np.unique(key_id.reshape(-1) * 4 + split_id.reshape(-1))
    return int((np.bincount(pairs // 4) > 1).sum())


def audit_step(cands: list[Candidate], options: BuildOptions, thumbs: ThumbStore | None = None) -> dict | None:
    """The shortcut audit of the kept images (None when turned off). ``thumbs``: where
    :func:`analyse_step` spilled the thumbnails (None: they are still in each analysis)."""
    if not options.audit:
        return None
    rows = [i for i, c in enumerate(cands) if not c.reason]
    kept = [cands[i] for i in rows]
    analyses: Sequence[Analysis] = [c.analysis for c in kept]
    if thumbs is not None:
        analyses = WithThumbs(analyses, rows, thumbs)
    return shortcut_audit(
        analyses, [c.item.source for c in kept], [c.item.label for c in kept],
        [c.group for c in kept], options.seed,
        learned=[c.split != "test" for c in kept] if options.test_sources else None,
    )


# ---------------------------------------------------------------- entry point


def build_dataset(
    srcs: list[Path], out: Path, options: BuildOptions | None = None, progress: ProgressFn | None = None
) -> BuildResult:
    """Build a dataset from SRC folders into OUT (nothing written with ``dry_run``).

    PROGRESS receives ``analyse`` events while images are decoded and ``write`` events while
    they are placed (see :mod:`cxrtool.progress`); the report is ``result.report``.
    """
    options = options or BuildOptions()
    srcs = [Path(s) for s in srcs]
    out = Path(out)
    get_hasher(options.hash_name, options.hash_size)  # validate early
    check_paths(srcs, out, options.overwrite, options.dry_run)
    scans = scan_sources(srcs, LabelMap.load(options.label_map), options.labels_csv)
    cands = [Candidate(item) for scan in scans for item in scan.items if item.label]
    if not cands:
        raise UsageError(f"no labelled images found in {', '.join(map(str, srcs))}")
    held = resolve_test_sources(options.test_sources, scans)
    with ThumbStore(len(cands)) as thumbs:
        analyse_step(cands, options, thumbs, progress)
        return _build_rest(cands, scans, held, out, options, thumbs, progress)


def _build_rest(
    cands: list[Candidate], scans: list, held: list, out: Path, options: BuildOptions, thumbs: ThumbStore,
    progress: ProgressFn | None,
) -> BuildResult:
    quality_step(cands, options.thresholds)
    radius = options.hash_radius()
    dup_stats = duplicate_step(cands, radius)
    group_step(cands)
    held_stats = holdout_step(cands, held, options.allow_missing_class) if held else None
    balance_stats = balance_step(cands, options)
    split_step(cands, options)
    leak = leak_check(cands, radius)
    if held:
        leak.update(holdout_leak_check(cands, held, radius))
    result = BuildResult(out, options, scans, cands, {})
    result.report = build_report(result, dup_stats, balance_stats, leak, audit_step(cands, options, thumbs), held_stats=held_stats)
    if not options.dry_run:
        write_dataset(out, result, progress)
    return result
