"""Exact near-duplicate search over perceptual hashes (Hamming radius queries).

The dataset builder hashes every image (imagehash phash/dhash/ahash/whash) and needs *every*
pair of images whose hashes differ in at most ``radius`` bits: a missed pair is a leaked
duplicate between train and test, so approximate indexes are not acceptable.

Method (pure numpy, no compiled extension):

1. Identical codes are collapsed first (``np.unique``), so 10k blank images that all hash
   alike cost one search row, not 5e7 candidate pairs.
2. Multi-index hashing with a generalised pigeonhole: split the bit positions into blocks
   with thresholds ``t_i`` whose ``sum(t_i + 1) = radius + 1``; any pair within ``radius``
   then differs by at most ``t_i`` bits in some block ``i``. For each block the codes are
   sorted by block key, neighbouring keys (all flips of at most ``t_i`` bits) are looked up,
   the matching buckets are expanded to candidate pairs in bounded chunks and verified with a
   vectorised XOR + popcount. A pair is reported only by the first block that could find it,
   so no global de-duplication is needed.
3. The block layout is chosen by a small dynamic programme over a cost model whose collision
   probabilities are measured on sampled pairs of the actual data; rare collisions the small
   sample cannot see are modelled, and that model is corrected (and the layout re-chosen) by
   the rates a large pair sample measures on the chosen blocks, because real pHashes (biased,
   correlated DCT bits) collide several times more often than the model says. The estimate
   (``SearchStats.est_candidates``, ``est_seconds``) prices the final layout with measured
   rates. When brute force is predicted cheaper (small n, or a radius too large for pruning)
   a tiled brute-force XOR + popcount is used instead.

Work is spread over threads (numpy releases the GIL in the hot loops); memory is bounded by
the chunk size (about ``_CHUNK`` candidates per worker) plus the output itself.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..workers import default_workers

__all__ = [
    "HammingSearch",
    "SearchStats",
    "hamming_distance",
    "hamming_pairs",
    "hamming_search",
    "pack_hashes",
]

#: Candidate pairs verified at once; bounds the transient memory of one worker (~50 B each).
#: Kept well below glibc's 32 MiB mmap threshold: larger temporaries are mmapped afresh on
#: every allocation and page-faulting them in costs more than the arithmetic.
_CHUNK = 1 << 20
#: Neighbour-key lookups per task.
_LOOKUP_CHUNK = 1 << 23
#: Dense key->bucket tables are used up to this many key bits (int32 table, 4 << bits bytes).
_DENSE_BITS = 22
#: Largest Hamming ball (number of flip masks) a block may enumerate.
_MAX_MASKS = 1 << 21
#: When brute force is predicted to take less than this (modelled seconds), "auto" skips the
#: planner (which itself costs ~0.05-0.1 s) and brute-forces.
_BRUTE_FAST = 0.05
#: Sampled pairs that price the chosen layout (and correct the collision model, see _plan).
_ESTIMATE_PAIRS = 1 << 18
#: Re-plans after correcting the collision model, and the modelled cost (single-core seconds)
#: below which a layout is kept without re-planning (one re-plan costs ~0.05-0.1 s).
_REPLANS = 3
_REPLAN_MIN = 0.5
#: At most this many search threads, however many cores there are.
_MAX_WORKERS = 8

# Cost model constants, seconds per unit on one core, measured on the development machine
# (2-core AMD EPYC VM, numpy 2.4); only their ratios matter for the plan.
_C_LOOKUP = 1.0e-8  # one (element, flip mask) neighbour lookup in a dense table
_C_LOOKUP_SS = 4.0e-8  # same via searchsorted (keys wider than _DENSE_BITS)
_C_CAND = 2.4e-8  # expand + verify one candidate pair of 64-bit codes
_C_CAND_WORD = 9.0e-9  # each further 64-bit word of a candidate (row gathers, XOR, popcount)
_C_BRUTE = 4.0e-9  # one pair of the tiled brute force, per 64-bit word
_C_BLOCK = 4.7e-7  # per code and block: key extraction, sort, bucket bookkeeping

_U64 = np.uint64


def _rowdist(x: np.ndarray) -> np.ndarray:
    """Hamming weight of XORed codes: 1-D (one word) or (k, words) -> (k,) int."""
    if x.ndim == 1:
        return np.bitwise_count(x)
    counts = np.bitwise_count(x)  # one pass over the whole (k, words) block, then column sums
    out = counts[:, 0].astype(np.uint16)
    for w in range(1, x.shape[1]):
        out += counts[:, w]
    return out


# --------------------------------------------------------------------------------------
# Packing


_HEX_LUT = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate("0123456789abcdef"):
    _HEX_LUT[ord(_c)] = _i
    _HEX_LUT[ord(_c.upper())] = _i


def _pack_bool(bits: np.ndarray) -> np.ndarray:
    """(n, B) bool -> (n, ceil(B/64)) uint64, bit 0 is the MSB of word 0 (imagehash hex order)."""
    n, nbits = bits.shape
    words = max(1, -(-nbits // 64))
    packed = np.packbits(bits.astype(bool, copy=False), axis=1)  # big-endian bits
    buf = np.zeros((n, words * 8), dtype=np.uint8)
    buf[:, : packed.shape[1]] = packed
    return buf.view(">u8").astype(np.uint64).reshape(n, words)


def _pack_hex(strings: Sequence[str]) -> np.ndarray:
    lengths = {len(s) for s in strings}
    if len(lengths) != 1:
        raise ValueError(f"hashes have mixed lengths: {sorted(lengths)} hex digits")
    (length,) = lengths
    if length == 0:
        raise ValueError("empty hash string")
    if length % 16 == 0:  # whole 64-bit words (every square hash of even size): no per-bit arrays
        try:
            raw_bytes = bytes.fromhex("".join(strings))
        except ValueError:
            raw_bytes = None  # not hex (or whitespace): the path below says which
        if raw_bytes is not None and len(raw_bytes) * 2 == length * len(strings):
            return np.frombuffer(raw_bytes, dtype=">u8").astype(np.uint64).reshape(len(strings), length // 16)
    try:
        raw = np.frombuffer("".join(strings).encode("ascii"), dtype=np.uint8)
    except UnicodeEncodeError as exc:
        raise ValueError("hash strings must be hexadecimal") from exc
    nib = _HEX_LUT[raw].reshape(len(strings), length)
    if (nib == 255).any():
        raise ValueError("hash strings must be hexadecimal")
    bits = np.unpackbits(nib[:, :, None], axis=2)[:, :, 4:].reshape(len(strings), length * 4)
    return _pack_bool(bits)


def pack_hashes(hashes: Any) -> np.ndarray:
    """Pack perceptual hashes into an (n, words) uint64 array, the input of the searches.

    Accepts a sequence of ``imagehash.ImageHash`` objects, hex strings (``str(ImageHash)``)
    or a 2-D bool array (n, bits). The first hash bit becomes the most significant bit of
    word 0, so a 64-bit hash packs to ``int(str(h), 16)``; shorter tails are zero-padded.
    All rows must have the same bit length (``ValueError`` otherwise), because distances
    between hashes of different sizes/kinds are meaningless.
    """
    if isinstance(hashes, np.ndarray):
        if hashes.ndim != 2:
            raise ValueError("a hash array must be 2-D (n, bits)")
        if hashes.dtype != bool and not np.isin(hashes, (0, 1)).all():
            raise ValueError("a hash array must hold booleans / 0-1 values")
        if hashes.shape[1] == 0:
            raise ValueError("hashes must have at least one bit")
        return _pack_bool(hashes.astype(bool))
    items = list(hashes)
    if not items:
        return np.zeros((0, 1), dtype=np.uint64)
    if all(isinstance(h, str) for h in items):
        return _pack_hex(items)
    if all(hasattr(h, "hash") for h in items):
        arrays = [np.asarray(h.hash, dtype=bool).reshape(-1) for h in items]
        sizes = {a.size for a in arrays}
        if len(sizes) != 1:
            raise ValueError(f"hashes have mixed lengths: {sorted(sizes)} bits")
        if 0 in sizes:
            raise ValueError("hashes must have at least one bit")
        return _pack_bool(np.stack(arrays))
    raise ValueError("expected ImageHash objects, hex strings or a 2-D bool array")


def _as_codes(codes: np.ndarray) -> np.ndarray:
    arr = np.asarray(codes)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise ValueError("codes must be an (n, words) uint64 array (see pack_hashes)")
    if arr.dtype != np.uint64:
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError("codes must be an integer (uint64) array")
        arr = arr.astype(np.uint64)
    return np.ascontiguousarray(arr)


def hamming_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Hamming distance of two packed code arrays (broadcasting over rows)."""
    x = np.bitwise_xor(_as_codes(a), _as_codes(b))
    return _rowdist(x).astype(np.int64)


# --------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class SearchStats:
    """What a search did, so callers can log why it was fast or slow."""

    method: str  #: "mih", "brute" or "trivial"
    n: int  #: input rows
    n_unique: int  #: distinct codes actually searched
    radius: int
    bits: int  #: 64 * words (padding bits never differ)
    blocks: tuple[tuple[int, int, int], ...]  #: MIH blocks as (first bit, size, threshold)
    candidates: int  #: candidate pairs verified (brute: all pairs of distinct codes)
    pairs: int  #: pairs found between distinct codes
    seconds: float
    est_seconds: float  #: planner's estimate for the chosen method
    #: candidate pairs the planner expected (MIH: measured on sampled pairs; brute: all pairs)
    est_candidates: float = 0.0


@dataclass(frozen=True)
class HammingSearch:
    """Search result at the level of groups of identical codes (output-size frugal).

    ``inverse[i]`` is the group of row ``i``; groups are numbered by first appearance and
    ``first[g]`` is that row. ``pairs`` (k, 2) holds group pairs (g < h) within the radius
    and ``distances`` their Hamming distances; rows inside one group are at distance 0.
    """

    inverse: np.ndarray
    first: np.ndarray
    counts: np.ndarray
    pairs: np.ndarray
    distances: np.ndarray
    stats: SearchStats

    def n_row_pairs(self) -> int:
        """Number of row pairs ``hamming_pairs`` would return (without building them)."""
        c = self.counts.astype(np.int64)
        within = int((c * (c - 1) // 2).sum())
        if len(self.pairs):
            within += int((c[self.pairs[:, 0]] * c[self.pairs[:, 1]]).sum())
        return within


# --------------------------------------------------------------------------------------
# Helpers


def _run_tasks(tasks: Iterable[Callable[[], Any]], workers: int) -> list[Any]:
    """Run zero-arg callables on a thread pool with a bounded number in flight (memory)."""
    results: list[Any] = []
    if workers <= 1:
        return [t() for t in tasks]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[Future[Any]] = deque()
        for task in tasks:
            pending.append(pool.submit(task))
            if len(pending) >= 2 * workers:
                results.append(pending.popleft().result())
        while pending:
            results.append(pending.popleft().result())
    return results


def _expand(src: np.ndarray, start: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each i emit (src[i], start[i] + k) for k in range(length[i]), vectorised."""
    total = int(length.sum())
    if total == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    a = np.repeat(src, length)
    offs = np.cumsum(length) - length
    b = np.arange(total, dtype=np.int64) - np.repeat(offs - start, length)
    return a, b


def _chunks_by_weight(weight: np.ndarray, cap: int) -> Iterator[slice]:
    """Consecutive slices whose weight sums stay near ``cap`` (at least one item each)."""
    n = len(weight)
    if n == 0:
        return
    cum = np.cumsum(weight, dtype=np.int64)
    lo = 0
    base = 0
    while lo < n:
        hi = int(np.searchsorted(cum, base + cap, side="right"))
        hi = max(hi, lo + 1)
        yield slice(lo, hi)
        base = int(cum[hi - 1])
        lo = hi


def _extract(x: np.ndarray, start: int, size: int) -> np.ndarray:
    """Bits [start, start+size) of each code (bit 0 = MSB of word 0) as uint64 keys."""
    x2 = x if x.ndim == 2 else x[:, None]
    w0, off = divmod(start, 64)
    if off + size <= 64:
        v = x2[:, w0]
        shift = 64 - off - size
        if shift:
            v = v >> _U64(shift)
        if size < 64:
            v = v & _U64((1 << size) - 1)
        return v
    head = 64 - off  # bits taken from word w0
    tail = size - head  # bits taken from the top of word w0 + 1
    hi = (x2[:, w0] & _U64((1 << head) - 1)) << _U64(tail)
    return hi | (x2[:, w0 + 1] >> _U64(64 - tail))


def _flip_masks(size: int, t: int) -> tuple[np.ndarray, np.ndarray]:
    """All non-zero ``size``-bit masks of weight <= t, with the index of their top bit."""
    if t <= 0:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    top = np.arange(size, dtype=np.int64)
    cur = np.left_shift(np.uint64(1), top.astype(np.uint64))
    low = top.copy()  # lowest set bit of each mask
    masks, tops = [cur], [top]
    for _ in range(1, t):
        keep = low > 0
        cur, low, top = cur[keep], low[keep], top[keep]
        src, bit = _expand(np.arange(len(cur)), np.zeros(len(cur), dtype=np.int64), low)
        cur = cur[src] | np.left_shift(np.uint64(1), bit.astype(np.uint64))
        low, top = bit, top[src]
        if not len(cur):
            break
        masks.append(cur)
        tops.append(top)
    return np.concatenate(masks), np.concatenate(tops)


def _ball(size: int, t: int) -> int:
    return sum(math.comb(size, k) for k in range(0, min(t, size) + 1)) if t >= 0 else 0


# --------------------------------------------------------------------------------------
# Brute force


def _brute(u: np.ndarray, radius: int, workers: int) -> tuple[list[tuple[np.ndarray, ...]], int]:
    """Tiled XOR + popcount over the upper triangle; exact, O(n^2) but cache friendly."""
    n, words = u.shape
    flat = u[:, 0] if words == 1 else u
    tile_c = 4096
    tile_r = max(1, min(256, _CHUNK // tile_c))

    def task(r0: int) -> tuple[np.ndarray, ...]:
        r1 = min(n, r0 + tile_r)
        a_out, b_out, d_out = [], [], []
        rows = flat[r0:r1]
        xbuf = np.empty((r1 - r0, tile_c), dtype=np.uint64)
        dbuf = np.empty((r1 - r0, tile_c), dtype=np.uint8 if words == 1 else np.uint16)
        tbuf = np.empty((r1 - r0, tile_c), dtype=np.uint8)
        hbuf = np.empty((r1 - r0, tile_c), dtype=bool)
        for c0 in range(r0, n, tile_c):
            c1 = min(n, c0 + tile_c)
            k = c1 - c0
            x, d, hit = xbuf[:, :k], dbuf[:, :k], hbuf[:, :k]
            if words == 1:
                np.bitwise_xor(rows[:, None], flat[None, c0:c1], out=x)
                np.bitwise_count(x, out=d, casting="unsafe")
            else:
                d[...] = 0
                for w in range(words):
                    np.bitwise_xor(rows[:, None, w], flat[None, c0:c1, w], out=x)
                    tb = tbuf[:, :k]
                    np.bitwise_count(x, out=tb, casting="unsafe")
                    np.add(d, tb, out=d)
            np.less_equal(d, radius, out=hit)
            if c0 < r1:  # diagonal tile: keep j > i only
                hit &= np.arange(r0, r1)[:, None] < np.arange(c0, c1)[None, :]
            if not hit.any():
                continue
            ii, jj = np.nonzero(hit)
            a_out.append(ii + r0)
            b_out.append(jj + c0)
            d_out.append(d[ii, jj].astype(np.int64))
        if not a_out:
            e = np.zeros(0, dtype=np.int64)
            return e, e, e
        return np.concatenate(a_out), np.concatenate(b_out), np.concatenate(d_out)

    parts = _run_tasks(((lambda r0=r0: task(r0)) for r0 in range(0, n, tile_r)), workers)
    return parts, n * (n - 1) // 2


# --------------------------------------------------------------------------------------
# Multi-index hashing


def _mih_block(
    u: np.ndarray,
    radius: int,
    block: tuple[int, int, int],
    earlier: Sequence[tuple[int, int, int]],
    workers: int,
) -> tuple[list[tuple[np.ndarray, ...]], int]:
    """Find pairs whose block ``block`` differs in <= t bits and no earlier block qualifies."""
    start, size, t = block
    n, words = u.shape
    keys = _extract(u, start, size)
    order = np.argsort(keys, kind="stable")
    ks = keys[order]
    us = u[order]
    us = us[:, 0].copy() if words == 1 else us
    new = np.flatnonzero(ks[1:] != ks[:-1]) + 1
    bstart = np.concatenate([[0], new]).astype(np.int64)
    cnt = np.diff(np.concatenate([bstart, [n]])).astype(np.int64)
    ukeys = ks[bstart]
    del keys

    def verify(pa: np.ndarray, pb: np.ndarray) -> tuple[np.ndarray, ...]:
        if words == 1:
            x = us[pa] ^ us[pb]
        else:  # np.take gathers whole rows ~3x faster than fancy indexing (measured, 256-bit codes)
            x = np.take(us, pa, axis=0)
            np.bitwise_xor(x, np.take(us, pb, axis=0), out=x)
        d = _rowdist(x)
        keep = np.flatnonzero(d <= radius)
        if len(keep) and earlier:
            xk = x[keep]
            ok = np.ones(len(keep), dtype=bool)
            for s0, sz, tt in earlier:
                ok &= np.bitwise_count(_extract(xk, s0, sz)) > tt
            keep = keep[ok]
        a, b = order[pa[keep]], order[pb[keep]]
        return np.minimum(a, b), np.maximum(a, b), d[keep].astype(np.int64), len(pa)

    def run_elements(pos: np.ndarray, pstart: np.ndarray, plen: np.ndarray) -> list[tuple[np.ndarray, ...]]:
        out = []
        for sl in _chunks_by_weight(plen, _CHUNK):
            pa, pb = _expand(pos[sl], pstart[sl], plen[sl])
            if len(pa):
                out.append(verify(pa, pb))
        return out

    tasks: list[Callable[[], list[tuple[np.ndarray, ...]]]] = []

    # exact block match: pairs inside each bucket
    multi = np.flatnonzero(cnt > 1)
    if len(multi):
        mpos = _expand(multi, bstart[multi], cnt[multi])[1]
        end = np.repeat(bstart[multi] + cnt[multi], cnt[multi])
        plen = end - mpos - 1
        pos0, plen0 = mpos[plen > 0], plen[plen > 0]
        for sl in _chunks_by_weight(plen0, _CHUNK):
            tasks.append(lambda p=pos0[sl], q=plen0[sl]: run_elements(p, p + 1, q))

    # neighbouring buckets: every element p against the bucket of key(p) ^ mask, for every
    # mask of weight 1..t, only from elements whose key has the mask's top bit clear, so each
    # unordered pair of buckets (hence of elements) is seen exactly once.
    masks, tops = _flip_masks(size, t)
    if len(masks):
        dense = size <= _DENSE_BITS
        if dense:  # int32 keys and a key -> bucket table: one gather per lookup
            kdt = np.int32 if size <= 30 and len(ukeys) < 2**31 else np.int64
            table = np.full(1 << size, -1, dtype=kdt)
            table[ukeys.astype(np.int64)] = np.arange(len(ukeys), dtype=kdt)
            ksd = ks.astype(kdt)
            masks_d = masks.astype(kdt)
        else:
            ksd, masks_d = ks, masks
        layers = 4  # bucket members emitted by direct indexing; larger buckets by _expand

        def flush(pa: np.ndarray, kb: np.ndarray) -> list[tuple[np.ndarray, ...]]:
            pb = bstart[kb]
            c = cnt[kb]
            out = [verify(pa, pb)]
            for j in range(1, layers):
                sub = np.flatnonzero(c > j)
                if not len(sub):
                    return out
                pa, pb, c = pa[sub], pb[sub], c[sub]
                out.append(verify(pa, pb + j))
            sub = np.flatnonzero(c > layers)
            if len(sub):
                out.extend(run_elements(pa[sub], pb[sub] + layers, c[sub] - layers))
            return out

        def lookup(rows: np.ndarray, msk: np.ndarray) -> list[tuple[np.ndarray, ...]]:
            krows = ksd[rows]
            out: list[tuple[np.ndarray, ...]] = []
            pa_l: list[np.ndarray] = []
            kb_l: list[np.ndarray] = []
            held = 0
            tgt = np.empty_like(krows)
            kbuf = np.empty(len(krows), dtype=table.dtype if dense else np.intp)
            for mu in msk:
                np.bitwise_xor(krows, mu, out=tgt)
                if dense:
                    np.take(table, tgt, out=kbuf, mode="clip")  # tgt < 2**size: clip is a no-op
                    hit = np.flatnonzero(kbuf >= 0)
                    kb = kbuf[hit]
                else:
                    idx = np.searchsorted(ukeys, tgt)
                    idx[idx == len(ukeys)] = 0
                    hit = np.flatnonzero(ukeys[idx] == tgt)
                    kb = idx[hit]
                if len(hit):
                    pa_l.append(rows[hit])
                    kb_l.append(kb)
                    held += len(hit)
                if held >= _CHUNK // 2:
                    out.extend(flush(np.concatenate(pa_l), np.concatenate(kb_l).astype(np.int64)))
                    pa_l, kb_l, held = [], [], 0
            if held:
                out.extend(flush(np.concatenate(pa_l), np.concatenate(kb_l).astype(np.int64)))
            return out

        order_m = np.argsort(tops, kind="stable")
        masks_d, tops = masks_d[order_m], tops[order_m]
        bounds = np.searchsorted(tops, np.arange(size + 1))
        for h in range(size):
            msk = masks_d[bounds[h] : bounds[h + 1]]
            if not len(msk):
                continue
            rows = np.flatnonzero(((ks >> _U64(h)) & _U64(1)) == 0)
            if not len(rows):
                continue
            # about _LOOKUP_CHUNK lookups per task, split over masks first, then rows
            per = max(1, _LOOKUP_CHUNK // len(rows))
            rstep = len(rows) if per > 1 else _LOOKUP_CHUNK
            for r0 in range(0, len(rows), rstep):
                for m0 in range(0, len(msk), per):
                    tasks.append(lambda r=rows[r0 : r0 + rstep], m=msk[m0 : m0 + per]: lookup(r, m))

    results = _run_tasks(tasks, workers)
    parts = [p for res in results for p in res]
    cands = sum(p[3] for p in parts)
    return [p[:3] for p in parts], cands


# --------------------------------------------------------------------------------------
# Planning


def _pair_sample(u: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """XOR of ``m`` random pairs of distinct rows, (m, words) uint64."""
    n = len(u)
    ia = rng.integers(0, n, m)
    ib = rng.integers(0, n - 1, m)
    ib = ib + (ib >= ia)
    return u[ia] ^ u[ib]


def _block_hits(x: np.ndarray, blocks: Sequence[tuple[int, int, int]]) -> np.ndarray:
    """For each block, how many sampled pair XORs differ in at most t of its bits."""
    return np.array([int((np.bitwise_count(_extract(x, s, z)) <= t).sum()) for s, z, t in blocks], dtype=np.int64)


def _estimate_candidates(u: np.ndarray, blocks: Sequence[tuple[int, int, int]], rng: np.random.Generator) -> np.ndarray:
    """Expected candidate pairs per block, measured on ``_ESTIMATE_PAIRS`` sampled pairs.

    Unbiased whatever the code distribution (biased bits, correlated bits, clusters): it is the
    fraction of sampled pairs the block would bring up, times the number of pairs.
    """
    n = len(u)
    npairs = n * (n - 1) / 2
    m = int(min(_ESTIMATE_PAIRS, max(1, npairs)))
    return _block_hits(_pair_sample(u, m, rng), blocks) * (npairs / m)


def _shape_costs(
    u: np.ndarray, radius: int, cs: np.ndarray, correction: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Modelled cost of every block shape: costs[size, start, t + 1] (t + 1 = 0: block unused).

    Collision probabilities come from the small pair sample ``cs`` (prefix sums of differing
    bits) where it saw enough hits, else from a binomial model of the block's mean per-bit
    disagreement times ``correction[t]`` (what the large sample said that model misses on
    these codes: correlated and biased bits collide more often than independent ones).
    """
    n, words = u.shape
    bits = 64 * words
    nsamp = len(cs)
    npairs = n * (n - 1) / 2
    brute_cost = _C_BRUTE * words * npairs
    rmax = radius + 1
    mcs = cs.mean(axis=0)
    inf = math.inf
    max_size = min(64, bits)
    costs = np.full((max_size + 1, bits + 1, rmax + 1), inf)
    per_block = _C_BLOCK * n
    # tiny blocks never pay off; wide ones only matter coarsely (keeps the planner ~0.1 s)
    size_set = np.array([z for z in range(6, 25)] + [26, 28, 30, 32, 36, 40, 48, 56, 64], dtype=np.int64)
    size_set = size_set[size_set <= max_size]
    if not len(size_set):
        size_set = np.array([max_size], dtype=np.int64)
    for size in size_set.tolist():
        nstart = bits - size + 1
        c = costs[size, :nstart]
        c[:, 0] = 0.0
        tmax = -1
        while tmax + 1 < rmax and _ball(size, tmax + 1) <= _MAX_MASKS:
            tmax += 1
        if tmax < 0 or per_block >= brute_cost:
            continue
        d = np.minimum(cs[:, size:] - cs[:, :-size], tmax + 1).astype(np.intp)  # (nsamp, nstart)
        d += (tmax + 2) * np.arange(nstart)
        hits = np.cumsum(np.bincount(d.ravel(), minlength=nstart * (tmax + 2)).reshape(nstart, tmax + 2), axis=1)
        q = np.clip((mcs[size:] - mcs[:-size]) / size, 1e-3, 0.5)  # mean per-bit disagreement
        model = np.zeros(nstart)
        per_lookup = _C_LOOKUP if size <= _DENSE_BITS else _C_LOOKUP_SS
        for t in range(tmax + 1):
            model = model + math.comb(size, t) * q**t * (1 - q) ** (size - t)  # binomial cdf
            fixed = np.minimum(model * correction[t], 1.0)
            p = np.where(hits[:, t] >= 8, np.maximum(hits[:, t] / nsamp, fixed), fixed)
            c[:, t + 1] = per_block + per_lookup * n * (_ball(size, t) - 1) / 2 + _cand_cost(words) * npairs * p
    return costs, size_set


def _cheapest_layout(costs: np.ndarray, size_set: np.ndarray, bits: int, rmax: int) -> tuple[list[tuple[int, int, int]], float]:
    """DP over bit positions: the cheapest blocks with sum(t_i + 1) = rmax (``[]`` if none).

    f[b, v] = min cost covering bits [0, b) with sum(t_i + 1) = v; arg[b, v] = (size, w) of the
    block ending at bit b, size 0 = bit b-1 left unused.
    """
    inf = math.inf
    f = np.full((bits + 1, rmax + 1), inf)
    f[0, 0] = 0.0
    arg_size = np.zeros((bits + 1, rmax + 1), dtype=np.int64)
    arg_w = np.zeros((bits + 1, rmax + 1), dtype=np.int64)
    vv = np.arange(rmax + 1)
    ww = np.arange(1, rmax + 1)
    src = vv[None, :] - ww[:, None]  # [w-1, v] -> v - w
    valid = src >= 0
    src = np.where(valid, src, 0)
    for b in range(1, bits + 1):
        f[b] = f[b - 1]
        sizes = size_set[size_set <= b]
        if not len(sizes):
            continue
        starts = b - sizes
        # m[size-1, w-1, v] = f[b - size, v - w] + costs[size, b - size, w]
        m = f[starts][:, src] + costs[sizes, starts][:, 1:, None]
        m = np.where(valid[None], m, inf).reshape(len(sizes) * rmax, rmax + 1)
        k = np.argmin(m, axis=0)
        g = m[k, vv]
        better = g < f[b]
        if better.any():
            f[b, better] = g[better]
            arg_size[b, better] = sizes[k[better] // rmax]
            arg_w[b, better] = k[better] % rmax + 1
    if not math.isfinite(f[bits, rmax]):
        return [], inf
    blocks: list[tuple[int, int, int]] = []
    b, v = bits, rmax
    while b > 0:
        size = int(arg_size[b, v])
        if size:
            w = int(arg_w[b, v])
            blocks.append((b - size, size, w - 1))
            b, v = b - size, v - w
        else:
            b -= 1
    blocks.reverse()
    return blocks, float(f[bits, rmax])


def _plan(u: np.ndarray, radius: int, rng: np.random.Generator) -> tuple[list[tuple[int, int, int]], float, float]:
    """Choose MIH blocks (start, size, threshold) minimising the modelled cost.

    Returns (blocks, mih_cost, brute_cost) in modelled single-core seconds.

    1. A small sample of pairs prices every block shape: measured collision rates where it
       saw enough hits, a binomial model of the block's per-bit disagreement elsewhere.
    2. The cheapest layout is checked on a large pair sample (``_ESTIMATE_PAIRS``): on real,
       clustered hashes (biased, correlated DCT bits) the binomial model under-counts
       candidates several-fold, so the model is corrected per threshold t by the ratio the
       large sample measured on the chosen blocks, and the layout re-chosen, up to
       ``_REPLANS`` times. The returned cost prices the final layout with the measured rates,
       so the estimate stays honest even where the correction is imperfect.
    """
    n, words = u.shape
    bits = 64 * words
    npairs = n * (n - 1) / 2
    brute_cost = _C_BRUTE * words * npairs
    rmax = radius + 1  # budget of sum(t_i + 1)
    nsamp = int(min(npairs, max(1024, min(n // 4, 8192, 524_288 // bits))))
    x = _pair_sample(u, nsamp, rng).astype(">u8").view(np.uint8).reshape(nsamp, words * 8)
    cs = np.zeros((nsamp, bits + 1), dtype=np.int16)
    np.cumsum(np.unpackbits(x, axis=1), axis=1, out=cs[:, 1:])
    mbig = int(min(_ESTIMATE_PAIRS, max(1, npairs)))
    big = _pair_sample(u, mbig, rng)
    correction = np.ones(rmax + 1)
    best: tuple[list[tuple[int, int, int]], float] = ([], math.inf)
    seen: set[tuple[tuple[int, int, int], ...]] = set()
    for _ in range(_REPLANS + 1):
        costs, size_set = _shape_costs(u, radius, cs, correction)
        blocks, _ = _cheapest_layout(costs, size_set, bits, rmax)
        if not blocks or tuple(blocks) in seen:
            break
        seen.add(tuple(blocks))
        hits = _block_hits(big, blocks)
        measured = 0.0
        ratios: dict[int, list[float]] = {}  # per t: measured / modelled rate on the chosen blocks
        for (start, size, t), h in zip(blocks, hits):
            modelled = (costs[size, start, t + 1] - _block_cost(n, (start, size, t), 0.0)) / (_cand_cost(words) * npairs)
            rate = h / mbig if h >= 8 else max(h / mbig, modelled)  # too few hits: trust the model
            measured += _block_cost(n, (start, size, t), npairs * rate, words)
            if h >= 8 and modelled > 0:
                ratios.setdefault(t, []).append(h / mbig / modelled)
        if measured < best[1]:
            best = (blocks, measured)
        if measured < _REPLAN_MIN:  # the estimate is honest now; a better layout could not pay for the re-plan
            break
        if not ratios:
            break
        overall = float(np.exp(np.mean(np.log([r for rs in ratios.values() for r in rs]))))
        new = np.array([float(np.exp(np.mean(np.log(ratios[t])))) if t in ratios else overall for t in range(rmax + 1)])
        new = correction * np.maximum(new, 1.0)  # the binomial floor never over-counts much
        if np.allclose(new, correction, rtol=0.25):
            break
        correction = new
    return best[0], best[1], brute_cost


def _cand_cost(words: int) -> float:
    """Modelled single-core seconds to expand and verify one candidate pair of ``words``-word codes."""
    return _C_CAND + _C_CAND_WORD * (words - 1)


def _block_cost(n: int, block: tuple[int, int, int], candidates: float, words: int = 1) -> float:
    """Modelled single-core seconds of one MIH block that verifies ``candidates`` pairs."""
    _, size, t = block
    per_lookup = _C_LOOKUP if size <= _DENSE_BITS else _C_LOOKUP_SS
    return _C_BLOCK * n + per_lookup * n * (_ball(size, t) - 1) / 2 + _cand_cost(words) * candidates


# --------------------------------------------------------------------------------------
# Public API


def _groups(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distinct codes numbered by first appearance: (unique codes, inverse, first, counts)."""
    n, words = codes.shape
    if words == 1:
        _, first, inv, counts = np.unique(codes[:, 0], return_index=True, return_inverse=True, return_counts=True)
    else:
        _, first, inv, counts = np.unique(codes, axis=0, return_index=True, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    first = first[order].astype(np.int64)
    return codes[first], rank[inv].astype(np.int64), first, counts[order].astype(np.int64)


def hamming_search(codes: np.ndarray, radius: int, *, method: str = "auto", seed: int = 0) -> HammingSearch:
    """All pairs of *distinct* codes within ``radius``, with identical codes grouped.

    Use this instead of :func:`hamming_pairs` when many images can share a hash: the result
    stays proportional to the number of distinct codes. ``method`` is "auto" (planner picks
    multi-index hashing or brute force), "mih" or "brute"; all are exact. ``seed`` only
    affects the planner's pair sample, never the result.
    """
    if method not in ("auto", "mih", "brute"):
        raise ValueError(f"method must be 'auto', 'mih' or 'brute', got {method!r}")
    radius = int(radius)
    if radius < 0:
        raise ValueError("radius must be >= 0")
    t0 = time.perf_counter()
    arr = _as_codes(codes)
    n, words = arr.shape
    bits = 64 * words
    u, inv, first, counts = _groups(arr)
    nu = len(u)
    workers = default_workers(cap=_MAX_WORKERS)
    blocks: list[tuple[int, int, int]] = []
    est = 0.0
    used = "trivial"
    parts: list[tuple[np.ndarray, ...]] = []
    cands = 0
    est_cands = 0.0
    if nu >= 2 and radius >= 1:
        chosen = method
        plannable = radius < bits and radius < 64
        cheap = _C_BRUTE * words * nu * (nu - 1) / 2 < _BRUTE_FAST
        if method != "brute" and not (method == "auto" and cheap) and plannable:
            blocks, mih_cost, brute_cost = _plan(u, radius, np.random.default_rng(seed))
            if method == "auto":
                chosen = "mih" if blocks and mih_cost < brute_cost else "brute"
            est = mih_cost if chosen == "mih" else brute_cost
        else:
            chosen = "brute"
        if chosen == "mih" and not blocks:
            chosen = "brute"
        if est and est < 0.05:  # thread hand-offs cost more than they save on tiny jobs
            workers = 1
        if chosen == "brute":
            blocks = []
            est_cands = nu * (nu - 1) / 2
            parts, cands = _brute(u, radius, workers)
        else:
            est_cands = float(_estimate_candidates(u, blocks, np.random.default_rng(seed + 1)).sum())
            for k, blk in enumerate(blocks):
                p, c = _mih_block(u, radius, blk, blocks[:k], workers)
                parts.extend(p)
                cands += c
        used = chosen
    if parts:
        a = np.concatenate([p[0] for p in parts]).astype(np.int64)
        b = np.concatenate([p[1] for p in parts]).astype(np.int64)
        d = np.concatenate([p[2] for p in parts]).astype(np.int64)
        o = np.lexsort((b, a))
        pairs = np.stack([a[o], b[o]], axis=1)
        dist = d[o]
    else:
        pairs = np.zeros((0, 2), dtype=np.int64)
        dist = np.zeros(0, dtype=np.int64)
    stats = SearchStats(
        method=used,
        n=n,
        n_unique=nu,
        radius=radius,
        bits=bits,
        blocks=tuple(blocks),
        candidates=int(cands),
        pairs=len(pairs),
        seconds=time.perf_counter() - t0,
        est_seconds=est / workers,
        est_candidates=est_cands,
    )
    return HammingSearch(inverse=inv, first=first, counts=counts, pairs=pairs, distances=dist, stats=stats)


def _expand_groups(res: HammingSearch) -> tuple[np.ndarray, np.ndarray]:
    n = len(res.inverse)
    members = np.argsort(res.inverse, kind="stable").astype(np.int64)  # ascending within group
    gstart = np.cumsum(res.counts) - res.counts
    ia_parts, ib_parts, d_parts = [], [], []
    multi = np.flatnonzero(res.counts > 1)
    if len(multi):
        pos = _expand(multi, gstart[multi], res.counts[multi])[1]
        end = np.repeat(gstart[multi] + res.counts[multi], res.counts[multi])
        a, b = _expand(pos, pos + 1, end - pos - 1)
        ia_parts.append(members[a])
        ib_parts.append(members[b])
        d_parts.append(np.zeros(len(a), dtype=np.int64))
    if len(res.pairs):
        g, h = res.pairs[:, 0], res.pairs[:, 1]
        k, ea = _expand(np.arange(len(g)), gstart[g], res.counts[g])
        k2, eb = _expand(ea, gstart[h[k]], res.counts[h[k]])
        x, y = members[k2], members[eb]
        ia_parts.append(np.minimum(x, y))
        ib_parts.append(np.maximum(x, y))
        d_parts.append(np.repeat(res.distances[k], res.counts[h[k]]))
    if not ia_parts:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64)
    a = np.concatenate(ia_parts)
    b = np.concatenate(ib_parts)
    d = np.concatenate(d_parts)
    o = np.argsort(a * n + b, kind="stable")
    return np.stack([a[o], b[o]], axis=1), d[o]


def hamming_pairs(
    codes: np.ndarray, radius: int, *, method: str = "auto", return_stats: bool = False
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, SearchStats]:
    """Every row pair (i < j) whose codes differ in at most ``radius`` bits; exact.

    Returns ``(pairs, distances)``: pairs (k, 2) int64 sorted lexicographically, distances
    (k,) int64; with ``return_stats=True`` a :class:`SearchStats` is appended. ``radius=0``
    finds identical hashes. The pair list can be quadratic in the size of groups of identical
    hashes; use :func:`hamming_search` when that matters.
    """
    res = hamming_search(codes, radius, method=method)
    pairs, dist = _expand_groups(res)
    if return_stats:
        return pairs, dist, res.stats
    return pairs, dist
