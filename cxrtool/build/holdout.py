"""External test splits (``build-dataset --test-source NAME[:CLASS]``): a whole source, or one
class of a source, becomes the test split, and nothing of it reaches train or val.

Why: a test split drawn from the same sources as training measures how well a model knows
those hospitals, not how it does on a new one. Holding a source out (leave-one-source-out)
measures the second. The guarantee is stronger than "not the same files": no image that
shares a duplicate cluster or a (source, patient) with a held-out image, and hence no image
of a held-out group, is trained or validated on.

Rules (see docs/build-dataset.md, "External test split"):

* a duplicate cluster that joins a held-out image with an image of another (training) source is
  dropped whole: which source such a picture really comes from cannot be known, so it is
  external to neither (measured: 212 of the 1,500 "adult" normals of the COVID-19 Radiography
  subset are copies of pediatric normals; kept in the test they lifted normal recall from
  0.087 to 0.213);
* the other images of a group that touches a held-out image are dropped with the reason
  ``shares a group with the held-out test`` (the test stays exactly the named source[:class]);
* the remaining pool is split into train/val in the train:val ratio of ``--split``, and
  ``--per-class`` balances that pool only: the held-out test is kept whole;
* a class left without training images is an error unless ``allow_missing_class``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError
from ..labels import CLASSES, class_for_name
from ..manifest import SPLITS
from .search import hamming_pairs
from .sources import Scan
from .table import CandidateTable

#: The reason given (in excluded.csv) to pool images dropped because their group touches the test.
GROUP_REASON = "shares a group with the held-out test"
#: ... and to the kept copy of a duplicate cluster that joins held-out and training images.
COPY_REASON = "copy shared by the held-out test and a training source"


@dataclass(frozen=True)
class HeldOut:
    """One ``--test-source`` value, resolved: a source name and a class (None: every class)."""

    source: str
    label: str | None = None

    def __str__(self) -> str:
        return self.source if self.label is None else f"{self.source}:{self.label}"


def resolve_test_sources(values: Sequence[str], scans: Sequence[Scan]) -> list[HeldOut]:
    """``NAME`` or ``NAME:CLASS`` -> :class:`HeldOut`, checked against the scanned sources.

    NAME is a source name as the report lists it; CLASS a class name or alias (``COVID-19``,
    ``NORMAL``). An unknown source, or a class the source has no labelled image of, is a
    :class:`UsageError` that names what is available.
    """
    classes_of = {s.name: [c for k, c in enumerate(CLASSES) if (1 + k) in s.labels] for s in scans}
    resolved: list[HeldOut] = []
    for value in values:
        name, label_text = (value, "") if value in classes_of else value.rpartition(":")[::2]
        if name not in classes_of:
            raise UsageError(f"--test-source {value!r}: no source named {name or value!r}; sources: {', '.join(classes_of)}")
        label = None
        if label_text:
            label = class_for_name(label_text)
            if label not in classes_of[name]:
                raise UsageError(
                    f"--test-source {value!r}: {name} has no {label_text!r} images; "
                    f"its classes: {', '.join(classes_of[name]) or 'none'}"
                )
        held = HeldOut(name, label)
        if held not in resolved:
            resolved.append(held)
    return resolved


def held_mask(table: CandidateTable, held: Sequence[HeldOut]) -> np.ndarray:
    """Which rows belong to one of the held-out sources (or source classes)."""
    mask = np.zeros(len(table), bool)
    names = {name: k for k, name in enumerate(table.source_names)}
    for h in held:
        if h.source not in names:
            continue
        m = table.source == names[h.source]
        if h.label is not None:
            m &= table.label == CLASSES.index(h.label)
        mask |= m
    return mask


def holdout_step(table: CandidateTable, held: Sequence[HeldOut], allow_missing_class: bool = False) -> dict:
    """Put the kept held-out images in ``test``; drop held-out images another source has a copy
    of, and the pool images whose group touches a held-out image.

    Runs after grouping and before balancing. Clusters and groups are judged over every image
    that entered de-duplication (dropped copies too), the same set the groups were built from.
    """
    entered = table.cluster >= 0
    out = held_mask(table, held)
    tainted = np.unique(table.group[entered & out])
    shared = np.intersect1d(table.cluster[entered & out], table.cluster[entered & ~out])
    others: dict[int, set[str]] = {}  # shared cluster -> the not-held-out source:class members it has
    for row in np.flatnonzero(entered & ~out & np.isin(table.cluster, shared)).tolist():
        others.setdefault(int(table.cluster[row]), set()).add(f"{table.source_name(row)}:{table.label_name(row)}")
    dropped, copies = Counter(), Counter()
    live = table.reason == 0
    in_shared = live & np.isin(table.cluster, shared)
    for row in np.flatnonzero(in_shared).tolist():  # the cluster's kept copy, from either side
        members = others[int(table.cluster[row])]
        table.drop(row, COPY_REASON, f"held out and in {', '.join(sorted(members))}")
        copies.update(members)
    table.split[live & ~in_shared & out] = 1 + SPLITS.index("test")
    for row in np.flatnonzero(live & ~in_shared & ~out & np.isin(table.group, tainted)).tolist():
        table.drop(row, GROUP_REASON, f"group {table.group_name(row)} holds held-out images (duplicate or same patient)")
        dropped[table.source_name(row)] += 1
    kept = table.reason == 0
    test = kept & (table.split == 1 + SPLITS.index("test"))
    pool_n = np.bincount(table.label[kept & ~test], minlength=len(CLASSES))
    test_n = np.bincount(table.label[test], minlength=len(CLASSES))
    missing = [label for k, label in enumerate(CLASSES) if test_n[k] and not pool_n[k]]
    if missing and not allow_missing_class:
        raise UsageError(
            f"--test-source leaves no training images of {', '.join(missing)}: a model cannot learn a class it never "
            "sees, so its test score would only measure that (hold out one class of the source, e.g. NAME:normal, "
            "or pass --allow-missing-class)"
        )
    return {
        "held_out": [str(h) for h in held],
        "test_images_per_held_out": {str(h): int((test & held_mask(table, [h])).sum()) for h in held},
        "pool_images_dropped_per_source": dict(sorted(dropped.items())),
        "test_copies_dropped": dict(sorted(copies.items())),
        "classes_without_training_images": missing,
    }


def pool_fractions(split: tuple[float, float, float]) -> tuple[float, float, float]:
    """--split's train:val ratio with no test share: the held-out source is the test."""
    train, val, _ = split
    return (train / (train + val), val / (train + val), 0.0)


def holdout_leak_check(table: CandidateTable, held: Sequence[HeldOut], radius: int) -> dict:
    """Independent of the steps above: held-out images (every one that entered de-duplication,
    kept or dropped) against the kept train/val images; every count must be 0."""
    is_out = held_mask(table, held)
    out = np.flatnonzero((table.cluster >= 0) & is_out)
    pool = np.flatnonzero((table.reason == 0) & np.isin(table.split, [1 + SPLITS.index("train"), 1 + SPLITS.index("val")]))
    near = 0
    if out.size and pool.size:
        pairs, _ = hamming_pairs(table.codes(np.concatenate([out, pool])), radius)
        if len(pairs):
            side = np.array([0] * len(out) + [1] * len(pool))
            near = int((side[pairs[:, 0]] != side[pairs[:, 1]]).sum())

    def patients(rows: np.ndarray) -> set[str]:
        return {f"{table.source_name(r)}:{p}" for r in rows.tolist() if (p := table.patient(r))}

    return {
        "held_out_in_train_val": int(is_out[pool].sum()),
        "held_out_near_duplicates_in_train_val": near,
        "held_out_clusters_in_train_val": int(np.intersect1d(table.cluster[out], table.cluster[pool]).size),
        "held_out_patients_in_train_val": len(patients(out) & patients(pool)),
        "held_out_groups_in_train_val": int(np.intersect1d(table.group[out], table.group[pool]).size),
    }
