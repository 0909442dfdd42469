"""Duplicate detection: exact (same bytes or same decoded pixels) and near (perceptual hash
within a Hamming radius), grouped into clusters within and across sources.

The pair search itself is exact and sub-quadratic; it lives in :mod:`cxrtool.build.search`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .search import hamming_distance, hamming_search, pack_hashes


def components(n: int, a: Sequence[int] | np.ndarray, b: Sequence[int] | np.ndarray) -> np.ndarray:
    """Connected component of each of N nodes linked by the edges (a[k], b[k]), as (n,) int64
    labels numbered 0, 1, ... in order of each component's first node (deterministic ids)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    graph = coo_matrix((np.ones(a.size, dtype=bool), (a, b)), shape=(n, n))
    _, raw = connected_components(graph, directed=False)
    _, first, inverse = np.unique(raw, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    return rank[inverse.reshape(-1)].astype(np.int64)


@dataclass(frozen=True)
class Duplicates:
    """Clusters of duplicate images. ``cluster[i]`` is the cluster id of image i (numbered by
    first appearance); singletons are clusters of one."""

    cluster: np.ndarray
    codes: np.ndarray  # packed hashes, for distances to a cluster's representative
    exact_links: int  # images sharing bytes or pixels with an earlier image
    hash_pairs: int  # image pairs within the radius (counted, never materialised)

    @property
    def n_clusters(self) -> int:
        return int(self.cluster.max()) + 1 if self.cluster.size else 0

    def distance(self, i: int, j: int) -> int:
        return int(hamming_distance(self.codes[i : i + 1], self.codes[j : j + 1])[0])


def first_of(keys: Sequence[str] | np.ndarray) -> np.ndarray:
    """For each row, the first row whose key equals its own (itself when it is the first).

    KEYS: a sequence of strings, a 1-D array, or an (n, k) uint8 array (one k-byte key per
    row, e.g. SHA-256 digests): compared as arrays, with no Python object per row."""
    if isinstance(keys, np.ndarray):
        arr = keys
        if arr.ndim == 2:
            arr = np.ascontiguousarray(arr, dtype=np.uint8).view(f"V{arr.shape[1]}").reshape(-1)
        if arr.size == 0:
            return np.zeros(0, np.int64)
        _, first, inverse = np.unique(arr, return_index=True, return_inverse=True)
        return first[inverse.reshape(-1)].astype(np.int64)
    seen: dict = {}
    return np.fromiter((seen.setdefault(key, i) for i, key in enumerate(keys)), np.int64, len(keys))


def find_duplicates(
    sha256: Sequence[str] | np.ndarray, pixel_sha: Sequence[str] | np.ndarray, hashes: Sequence[str] | np.ndarray,
    radius: int,
) -> Duplicates:
    """Cluster images that share bytes, pixels, or a perceptual hash within ``radius`` bits.

    Clusters are connected components, so A~B and B~C put A, B, C together even if A and C
    are farther apart: what matters for a leak-free split is that no pair crosses splits.
    Identical hashes are searched once (10k blank frames cost nothing extra).

    ``sha256``/``pixel_sha``: strings or arrays of keys (see :func:`first_of`); ``hashes``: hex
    strings, or the (n, words) uint64 codes of :func:`~cxrtool.build.search.pack_hashes`.
    """
    n = len(hashes)
    if n == 0:
        return Duplicates(np.zeros(0, np.int64), np.zeros((0, 1), np.uint64), 0, 0)
    codes = hashes if isinstance(hashes, np.ndarray) and hashes.dtype == np.uint64 else pack_hashes(hashes)
    rows = np.arange(n, dtype=np.int64)
    firsts = [first_of(keys) for keys in (sha256, pixel_sha)]
    linked = [f != rows for f in firsts]
    edges_a = np.concatenate([f[m] for f, m in zip(firsts, linked)])
    edges_b = np.concatenate([rows[m] for m in linked])
    exact = int((linked[0] | linked[1]).sum())
    search = hamming_search(codes, radius)
    a = np.concatenate([edges_a, search.first[search.inverse], search.first[search.pairs[:, 0]]])
    b = np.concatenate([edges_b, rows, search.first[search.pairs[:, 1]]])
    return Duplicates(components(n, a, b), codes, exact, search.n_row_pairs())
