"""Duplicate detection: exact (same bytes or same decoded pixels) and near (perceptual hash
within a Hamming radius), grouped into clusters within and across sources.

Hashers follow imagededup's shape: a tiny base class and one small subclass per hash type.
The pair search itself is exact and sub-quadratic; it lives in :mod:`cxrtool.hamming`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image

from .errors import UsageError
from .hamming import hamming_distance, hamming_search, pack_hashes


class Hasher(ABC):
    """A perceptual hash of a grayscale image; subclasses pick the imagehash function."""

    name = "base"

    def __init__(self, hash_size: int = 8):
        if hash_size < 2:
            raise UsageError(f"--hash-size must be at least 2 (got {hash_size})")
        self.hash_size = hash_size

    @property
    def bits(self) -> int:
        return self.hash_size * self.hash_size

    @abstractmethod
    def compute(self, image: Image.Image) -> imagehash.ImageHash:
        """The imagehash of a grayscale PIL image."""

    def __call__(self, pixels: np.ndarray) -> str:
        """Hex string of the hash of a uint8 grayscale array (what the manifest stores)."""
        value = self.compute(Image.fromarray(pixels, mode="L"))
        if value.hash.size % 8:
            return str(value)
        bits = value.hash
        return np.packbits(bits.ravel()).tobytes().hex()  # == str(ImageHash), without a Python loop per bit


class PHash(Hasher):
    """DCT perceptual hash: robust to re-encoding, resizing and small brightness changes."""

    name = "phash"

    def compute(self, image):
        return imagehash.phash(image, hash_size=self.hash_size)


class DHash(Hasher):
    """Difference hash: fast, sensitive to gradients."""

    name = "dhash"

    def compute(self, image):
        return imagehash.dhash(image, hash_size=self.hash_size)


class AHash(Hasher):
    """Average hash: the simplest; most false positives on look-alike X-rays."""

    name = "ahash"

    def compute(self, image):
        return imagehash.average_hash(image, hash_size=self.hash_size)


class WHash(Hasher):
    """Wavelet hash (Haar); hash_size must be a power of two."""

    name = "whash"

    def __init__(self, hash_size: int = 8):
        if hash_size & (hash_size - 1):
            raise UsageError(f"whash needs a power-of-two --hash-size (got {hash_size})")
        super().__init__(hash_size)

    def compute(self, image):
        return imagehash.whash(image, hash_size=self.hash_size)


HASHERS: dict[str, type[Hasher]] = {cls.name: cls for cls in (PHash, DHash, AHash, WHash)}


def get_hasher(name: str, hash_size: int = 8) -> Hasher:
    try:
        return HASHERS[name](hash_size)
    except KeyError:
        raise UsageError(f"unknown hash {name!r}; choose one of {', '.join(HASHERS)}") from None


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


def find_duplicates(sha256: list[str], pixel_sha: list[str], hashes: list[str], radius: int) -> Duplicates:
    """Cluster images that share bytes, pixels, or a perceptual hash within ``radius`` bits.

    Clusters are connected components, so A~B and B~C put A, B, C together even if A and C
    are farther apart: what matters for a leak-free split is that no pair crosses splits.
    Identical hashes are searched once (10k blank frames cost nothing extra).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(hashes)
    codes = pack_hashes(hashes) if n else np.zeros((0, 1), np.uint64)
    if n == 0:
        return Duplicates(np.zeros(0, np.int64), codes, 0, 0)
    edges_a, edges_b = [], []
    for keys in (sha256, pixel_sha):
        first: dict[str, int] = {}
        for i, key in enumerate(keys):
            j = first.setdefault(key, i)
            if j != i:
                edges_a.append(j)
                edges_b.append(i)
    exact = len({b for b in edges_b})
    search = hamming_search(codes, radius)
    rows = np.arange(n, dtype=np.int64)
    a = np.concatenate([np.asarray(edges_a, np.int64), search.first[search.inverse], search.first[search.pairs[:, 0]]])
    b = np.concatenate([np.asarray(edges_b, np.int64), rows, search.first[search.pairs[:, 1]]])
    graph = coo_matrix((np.ones(a.size, np.int8), (a, b)), shape=(n, n))
    _, raw = connected_components(graph, directed=False)
    # renumber by first appearance so ids are deterministic and readable
    _, first_index, inverse = np.unique(raw, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first_index))
    return Duplicates(order[inverse].astype(np.int64), codes, exact, search.n_row_pairs())
