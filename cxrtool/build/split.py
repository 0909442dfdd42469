"""Balancing and the group-aware, stratified train/val/test split.

Groups (duplicate clusters joined with patients) never cross splits; within that constraint
each class is split as close to the requested fractions as possible. Deterministic: the
same rows and seed give the same assignment whatever order they came in.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict, deque
from collections.abc import Callable, Sequence

import numpy as np

from ..errors import UsageError
from ..manifest import SPLITS


def parse_split(text: str) -> tuple[float, float, float]:
    """``70/15/15`` (or ``0.7,0.15,0.15``) -> fractions summing to 1."""
    parts = [p for p in text.replace(",", "/").split("/") if p.strip()]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise UsageError(f"--split {text!r}: expected three numbers like 70/15/15") from None
    if len(values) != 3 or any(v < 0 for v in values) or sum(values) <= 0 or values[0] == 0:
        raise UsageError(f"--split {text!r}: expected three non-negative numbers like 70/15/15, train > 0")
    total = sum(values)
    return tuple(v / total for v in values)  # type: ignore[return-value]


def stable_key(seed: int, text: str) -> str:
    """A seeded, order-independent sort key (so sampling does not depend on scan order)."""
    return hashlib.sha256(f"{seed}:{text}".encode()).hexdigest()


def balance(
    labels: Sequence[str],
    keys: Sequence[str],
    sources: Sequence[str],
    per_class: int | None,
    seed: int,
    even_sources: bool = False,
) -> list[int]:
    """Indices kept after down-sampling each class to ``per_class`` (None: keep all).

    Never up-samples. ``even_sources`` draws round-robin across sources within a class so
    no single source dominates a class more than its size forces.
    """
    by_class: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_class[label].append(i)
    kept: list[int] = []
    for label in sorted(by_class):
        members = sorted(by_class[label], key=lambda i: stable_key(seed, keys[i]))
        if per_class is None or len(members) <= per_class:
            kept.extend(members)
            continue
        if not even_sources:
            kept.extend(members[:per_class])
            continue
        queues: dict[str, deque[int]] = defaultdict(deque)
        for i in members:
            queues[sources[i]].append(i)
        order = sorted(queues)
        chosen: list[int] = []
        while len(chosen) < per_class:
            for src in order:
                if queues[src] and len(chosen) < per_class:
                    chosen.append(queues[src].popleft())
        kept.extend(chosen)
    return sorted(kept)


def assign_splits(
    labels: Sequence[str], groups: Sequence[str], fractions: tuple[float, float, float], seed: int
) -> list[str]:
    """Split name per row: whole groups go to one split, greedily filling each class's quota.

    Groups are taken largest first (ties in seeded order), each to the split whose share of
    that group's majority class is furthest below target: the standard greedy for
    stratified group splitting, exact enough and fully deterministic. Lists of names in and
    out; the work is :func:`split_codes`'s.
    """
    if not len(labels):
        return []
    label_names = sorted(set(labels))
    group_names = sorted(set(groups))
    label_code = {c: k for k, c in enumerate(label_names)}
    group_code = {g: k for k, g in enumerate(group_names)}
    codes = split_codes(
        np.fromiter((label_code[c] for c in labels), np.int64, len(labels)),
        np.fromiter((group_code[g] for g in groups), np.int64, len(groups)),
        fractions, seed, label_names, group_name=lambda g: group_names[g],
    )
    return [SPLITS[k] for k in codes.tolist()]


def split_codes(
    labels: np.ndarray, groups: np.ndarray, fractions: tuple[float, float, float], seed: int,
    label_names: Sequence[str], group_name: Callable[[int], str] = lambda g: f"g{g:06d}",
) -> np.ndarray:
    """The split of every row (an index into ``SPLITS``), as :func:`assign_splits` describes:
    LABELS as codes into ``label_names``, GROUPS as integers named by ``group_name`` (the
    names order ties). Arrays, no Python list or Counter per group: at a million singleton
    groups those took hundreds of MB."""
    labels = np.asarray(labels, dtype=np.int64)
    n = labels.size
    if n == 0:
        return np.zeros(0, np.int8)
    n_labels = len(label_names)
    gid, inverse, sizes = np.unique(np.asarray(groups), return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    keys = np.array([stable_key(seed, group_name(int(g))).encode() for g in gid.tolist()], dtype="S64")
    order = np.lexsort((keys, -sizes))  # largest first, ties in seeded order
    del keys
    counts = np.bincount(inverse * n_labels + labels, minlength=gid.size * n_labels).reshape(gid.size, n_labels)
    alphabetical = sorted(range(n_labels), key=lambda k: label_names[k])
    major = np.asarray(alphabetical)[np.argmax(counts[:, alphabetical], axis=1)]  # first of the most common, by name
    class_total = np.bincount(labels, minlength=n_labels).tolist()
    filled = [[0] * n_labels for _ in SPLITS]
    chosen = np.zeros(gid.size, np.int8)
    active = [(s, frac) for s, frac in enumerate(fractions) if frac > 0]
    single = (sizes == 1).tolist()
    major_l = major.tolist()
    first_label = labels[np.unique(inverse, return_index=True)[1]].tolist()  # a singleton's label
    for g in order.tolist():
        m = major_l[g]
        best, best_gap = 0, None
        for s, frac in active:
            target = frac * class_total[m]
            gap = (target - filled[s][m]) / max(target, 1e-9)
            if best_gap is None or gap > best_gap + 1e-12:
                best, best_gap = s, gap
        chosen[g] = best
        if single[g]:
            filled[best][first_label[g]] += 1
        else:
            row = filled[best]
            for k, c in enumerate(counts[g].tolist()):
                row[k] += c
    return chosen[inverse]
