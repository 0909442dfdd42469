"""A seeded sample that keeps strata in proportion: used wherever a step looks at a subset of
the images (the shortcut audit of build-dataset, ``evaluate --attention``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence

import numpy as np


def stratified_sample(strata: Sequence[Hashable], cap: int, seed: int = 0) -> list[int]:
    """Sorted indices of at most ``cap`` rows, each stratum (e.g. a (class, source) pair) in
    proportion, and every stratum with at least one row when ``cap`` allows; all rows when
    there are no more than ``cap``.

    Each stratum is shuffled (seeded); its first row ranks first, the others by their relative
    position in the stratum, and the ``cap`` best-ranked rows are taken, so any ``cap`` gives
    the most proportional sample it allows.
    """
    n = len(strata)
    if n <= cap:
        return list(range(n))
    rng = np.random.default_rng(seed)
    by: dict[Hashable, list[int]] = defaultdict(list)
    for i, s in enumerate(strata):
        by[s].append(i)
    ranked = []
    for order, s in enumerate(sorted(by, key=repr)):
        members = rng.permutation(by[s])
        ranked += [(0.0 if rank == 0 else (rank + 0.5) / len(members), order, int(i)) for rank, i in enumerate(members)]
    ranked.sort()
    return sorted(i for _, _, i in ranked[:cap])
