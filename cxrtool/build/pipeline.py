"""``build-dataset`` from start to end: scan sources, decode each image once, quality-filter,
de-duplicate, group, balance, split, check for leaks, report, then write. No Keras, no JAX.

The steps are plain functions over one :class:`~cxrtool.build.table.CandidateTable` (a numpy
column per field, one row per labelled image; no Python object per image); each marks the rows
it drops with a reason, so ``excluded.csv`` accounts for every file. The algorithms they
apply (metrics, hashing, pair search, clustering, balancing, splitting) live in their own
modules and work on plain lists.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..labels import CLASSES
from ..errors import UsageError
from ..manifest import SPLITS
from ..progress import ProgressFn
from .analyse import THUMB
from .audit import shortcut_audit
from .dedup import components, find_duplicates, first_of
from .executors import analyse_with, connected
from .hashing import get_hasher
from .holdout import holdout_leak_check, holdout_step, pool_fractions, resolve_test_sources
from .quality import METRICS, Thresholds, problems
from .report import build_report
from .search import hamming_pairs
from .sources import LabelMap, scan_sources
from .split import balance, split_codes
from .table import CandidateTable
from .types import Analysis, BuildOptions, BuildResult
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


class RowValues(Sequence):
    """FN(row) for each of ROWS, computed on access: what the audit reads of a million images
    without a million objects at once (an analysis with its thumbnail, a group name)."""

    def __init__(self, fn, rows: Sequence[int] | np.ndarray) -> None:  # noqa: ANN001 - a row -> value function
        self._fn, self._rows = fn, rows

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, k):  # noqa: ANN001 - Sequence protocol (int or slice)
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        return self._fn(int(self._rows[k]))


class WithThumbs(RowValues):
    """Analyses with each thumbnail read back from the store on access (row ``rows[k]`` for
    ``analyses[k]``)."""

    def __init__(self, analyses: Sequence[Analysis], rows: Sequence[int], store: ThumbStore) -> None:
        super().__init__(lambda k: replace(analyses[k], thumb=store.get(rows[k])), range(len(analyses)))


def analyse_step(table: CandidateTable, options: BuildOptions, thumbs: ThumbStore, progress: ProgressFn | None) -> None:
    """Decode and measure every candidate (in parallel, ``ANALYSE_BATCH`` files at a time) into
    the table's columns; thumbnails go to ``thumbs``. Progress events count over all files, as
    one run would."""
    total = len(table)

    def shifted(offset: int) -> ProgressFn | None:
        if progress is None:
            return None
        return lambda event: progress({**event, "done": offset + event["done"], "total": total})

    with connected(options.executor, options.workers) as executor:  # a Dask spelling connects once, not per batch
        for lo in range(0, total, ANALYSE_BATCH):
            paths = [table.path(i) for i in range(lo, min(total, lo + ANALYSE_BATCH))]
            results = analyse_with(executor, paths, options.hash_name, options.hash_size, options.workers, shifted(lo))
            del paths
            for k, a in enumerate(results):
                thumbs.put(lo + k, a.thumb)
            table.set_analyses(lo, results)
            del results


# ---------------------------------------------------------------- pipeline steps


def quality_step(table: CandidateTable, t: Thresholds) -> None:
    """Drop unreadable files and those failing a size or exposure rule (first reason wins)."""
    q = table.quality
    cols = {m: q[:, k] for k, m in enumerate(METRICS)}
    # the rows any rule could catch (numpy float64 comparisons: the same as problems()'s); the
    # reasons themselves come from problems(), row by row, for those few
    suspect = (
        (np.minimum(table.width, table.height) < t.min_size)
        | (cols["mean"] > t.max_mean) | (cols["bright_frac"] > t.max_bright_frac)
        | (cols["mean"] < t.min_mean) | (cols["dark_frac"] > t.max_dark_frac)
        | (cols["contrast"] < t.min_contrast) | (cols["entropy"] < t.min_entropy)
        | ~table.has_quality
    )
    errors = table.errors
    for row in sorted(set(np.flatnonzero(suspect).tolist()) | set(errors)):
        error, kind = errors.get(row, ("", ""))
        if error:
            table.drop(row, f"unreadable: {kind}", error)
            continue
        found = problems(table.quality_of(row), int(table.width[row]), int(table.height[row]), t)
        if found:
            table.drop(row, found[0], "; ".join(found))


def duplicate_step(table: CandidateTable, radius: int) -> dict:
    """Cluster the quality-passed images; keep one per cluster; drop label-conflict clusters."""
    live = table.kept_rows()
    dups = find_duplicates(table.digests(live, "sha"), table.digests(live, "pixel"), table.codes(live), radius)
    table.cluster[live] = dups.cluster
    # only clusters of two or more need Python-level work: at a million images a dict of
    # one list per singleton cluster alone took hundreds of MB
    order = np.argsort(dups.cluster, kind="stable")
    ids, starts, sizes = np.unique(dups.cluster[order], return_index=True, return_counts=True)
    multi = np.flatnonzero(sizes > 1)
    clusters = {int(ids[k]): order[starts[k] : starts[k] + sizes[k]].tolist() for k in multi}
    conflicts, dropped_dups, within_pairs, across_pairs, cross_clusters = [], 0, 0, 0, 0
    for cid, members in clusters.items():
        rows = [int(live[i]) for i in members]
        per_source = Counter(int(table.source[r]) for r in rows)
        same = sum(k * (k - 1) // 2 for k in per_source.values())
        within_pairs += same
        across_pairs += len(members) * (len(members) - 1) // 2 - same
        cross_clusters += len(per_source) > 1
        labels = sorted({table.label_name(r) for r in rows})
        if len(labels) > 1:
            names = ", ".join(f"{table.key(r)} ({table.label_name(r)})" for r in rows[:6])
            conflicts.append({"cluster": cid, "labels": labels, "size": len(members), "members": [table.key(r) for r in rows]})
            table.drop(np.asarray(rows), "label conflict", f"duplicate cluster with labels {' vs '.join(labels)}: {names}")
            continue
        # best resolution first, then the first in stable (source, path) order
        best = min(range(len(rows)), key=lambda k: (-int(table.width[rows[k]]) * int(table.height[rows[k]]), table.key(rows[k])))
        rep, rep_row = members[best], rows[best]
        rep_key = table.key(rep_row)
        for i, r in zip(members, rows):
            if i == rep:
                continue
            same_bytes = table.sha256(r) == table.sha256(rep_row) or table.pixel_sha256(r) == table.pixel_sha256(rep_row)
            table.drop(r, "exact duplicate" if same_bytes else "near duplicate", f"duplicate of {rep_key}")
            table.duplicate_of[r] = rep_row
            table.distance[r] = dups.distance(i, rep)
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


def group_step(table: CandidateTable) -> None:
    """Group id = connected component of (duplicate cluster) and (source, patient) links, over
    every image that entered de-duplication, so dropped copies still link their patients."""
    entered = np.flatnonzero(table.cluster >= 0)
    if not entered.size:
        return
    n_clusters = int(table.cluster[entered].max()) + 1
    patients: dict[str, int] = {}  # patient -> its node, numbered after the cluster nodes
    edges_a, edges_b = [], []
    for row in entered.tolist():
        patient = table.patient(row)
        if patient:
            node = patients.setdefault(f"{table.source_name(row)}:{patient}", n_clusters + len(patients))
            edges_a.append(int(table.cluster[row]))
            edges_b.append(node)
    n_nodes = n_clusters + len(patients)
    del patients
    component = components(n_nodes, edges_a, edges_b)
    del edges_a, edges_b
    # readable, deterministic names: g000001... in (source, path) order of first member
    order = table.in_key_order(table.cluster >= 0)
    comp = component[table.cluster[order]]
    _, first, inverse = np.unique(comp, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    table.group[order] = rank[inverse.reshape(-1)] + 1


def balance_step(table: CandidateTable, options: BuildOptions) -> dict:
    """Down-sample each class to ``per_class`` (never up); report classes that fall short.
    Images already placed (a held-out test) are not balanced."""
    live = np.flatnonzero((table.reason == 0) & (table.split == 0))
    if options.per_class is not None:  # nothing to down-sample otherwise: no million sort keys
        keep = np.asarray(
            balance(
                [table.label_name(r) for r in live.tolist()],
                [table.sha256(r) + table.key(r) for r in live.tolist()],
                [table.source_name(r) for r in live.tolist()],
                options.per_class,
                options.seed,
                options.even_sources,
            ),
            dtype=np.int64,
        )
        out = np.ones(live.size, bool)
        out[keep] = False
        for code in range(len(CLASSES)):
            rows = live[out & (table.label[live] == code)]
            if rows.size:
                table.drop(rows, "balanced out", f"class {CLASSES[code]} down-sampled to {options.per_class}")
        live = live[~out]
    counts = np.bincount(table.label[live], minlength=len(CLASSES))
    short = {
        label: int(counts[k]) for k, label in enumerate(CLASSES) if options.per_class and counts[k] < options.per_class
    }
    return {"per_class": options.per_class, "even_sources": options.even_sources, "classes_below_target": short}


def split_step(table: CandidateTable, options: BuildOptions) -> None:
    """Assign each kept image its split (whole groups together) and its file name in OUT.
    With a held-out test already placed, the rest is split into train/val only."""
    live = table.reason == 0
    pool = np.flatnonzero(live & (table.split == 0))
    fractions = pool_fractions(options.split) if options.test_sources else options.split
    table.split[pool] = split_codes(table.label[pool], table.group[pool], fractions, options.seed, CLASSES) + 1
    table.png = options.mode == "png"
    used: set[str] = set()
    for row in table.in_key_order(live).tolist():
        name, renamed = table.base_name(row)
        if name.lower() in used:
            name = renamed
            table.renamed[row] = True
        used.add(name.lower())


def leak_check(table: CandidateTable, radius: int) -> dict:
    """Independent check after splitting: near-duplicate pairs and patients across splits (must be 0)."""
    kept = table.kept_rows()
    cross_pairs = 0
    shas = table.digests(kept, "sha")
    twice = int((np.unique(first_of(shas), return_counts=True)[1] > 1).sum()) if len(kept) else 0
    del shas
    split = table.split[kept]
    if kept.size:
        pairs, _ = hamming_pairs(table.codes(kept), radius)
        cross_pairs = int((split[pairs[:, 0]] != split[pairs[:, 1]]).sum()) if len(pairs) else 0
    patients = [(table.source_name(r), table.patient(r), s) for r, s in zip(kept.tolist(), split.tolist())]
    with_patient = [(f"{src}:{p}", s) for src, p, s in patients if p]
    del patients
    return {
        "near_duplicate_pairs_across_splits": cross_pairs,
        "patients_across_splits": _spanning([k for k, _ in with_patient], [s for _, s in with_patient]),
        "groups_across_splits": _spanning(table.group[kept], split),
        "identical_files_kept_twice": twice,
    }


def _spanning(keys: Sequence | np.ndarray, splits: Sequence | np.ndarray) -> int:
    """How many distinct keys occur in more than one split (arrays, not a set per key: a
    million singleton groups as Python sets took over 200 MB)."""
    if not len(keys):
        return 0
    _, key_id = np.unique(np.asarray(keys), return_inverse=True)
    _, split_id = np.unique(np.asarray(splits), return_inverse=True)
    pairs = np.unique(key_id.reshape(-1) * 4 + split_id.reshape(-1))
    return int((np.bincount(pairs // 4) > 1).sum())


def audit_step(table: CandidateTable, options: BuildOptions, thumbs: ThumbStore | None = None) -> dict | None:
    """The shortcut audit of the kept images (None when turned off); ``thumbs``: where
    :func:`analyse_step` spilled the thumbnails."""
    if not options.audit:
        return None
    rows = table.kept_rows()
    return shortcut_audit(
        RowValues(lambda r: table.analysis(r, thumbs.get(r) if thumbs is not None else b""), rows),
        [table.source_name(r) for r in rows.tolist()],
        [table.label_name(r) for r in rows.tolist()], RowValues(table.group_name, rows), options.seed,
        learned=(table.split[rows] != 1 + SPLITS.index("test")).tolist() if options.test_sources else None,
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
    table = CandidateTable(scans)
    if not len(table):
        raise UsageError(f"no labelled images found in {', '.join(map(str, srcs))}")
    held = resolve_test_sources(options.test_sources, scans)
    with ThumbStore(len(table)) as thumbs:
        analyse_step(table, options, thumbs, progress)
        return _build_rest(table, scans, held, out, options, thumbs, progress)


def _build_rest(
    table: CandidateTable, scans: list, held: list, out: Path, options: BuildOptions, thumbs: ThumbStore,
    progress: ProgressFn | None,
) -> BuildResult:
    quality_step(table, options.thresholds)
    radius = options.hash_radius()
    dup_stats = duplicate_step(table, radius)
    group_step(table)
    held_stats = holdout_step(table, held, options.allow_missing_class) if held else None
    balance_stats = balance_step(table, options)
    split_step(table, options)
    leak = leak_check(table, radius)
    if held:
        leak.update(holdout_leak_check(table, held, radius))
    result = BuildResult(out, options, scans, table, {})
    result.report = build_report(result, dup_stats, balance_stats, leak, audit_step(table, options, thumbs), held_stats=held_stats)
    if not options.dry_run:
        write_dataset(out, result, progress)
    return result
