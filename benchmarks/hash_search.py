"""Benchmark: exact near-duplicate search over 64-bit perceptual hashes (cxrtool.build.search).

Random 64-bit codes plus planted near-duplicates (``--dup-frac`` of the rows are copies of
another row with 1..radius random bit flips). For every size and radius it measures
``hamming_pairs`` wall time and peak traced memory, checks that 100% of the planted pairs are
found and, up to ``--exact-max`` rows, that the result equals a brute-force reference
(faiss ``IndexBinaryFlat.range_search`` when faiss is importable, else our numpy brute force).

It also measures the brute-force popcount limit in the same run: faiss range_search timed on
``--faiss-n`` rows and extrapolated quadratically to larger sizes, and numpy chunked XOR +
popcount pairs/s measured on ``--numpy-n`` rows. faiss is only a benchmark reference, never a
dependency of the package.

    .venv/bin/python benchmarks/hash_search.py                      # 10k, 100k, 1M
    .venv/bin/python benchmarks/hash_search.py --sizes 10000 100000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import threading
from typing import Any

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from cxrtool.atomic import write_text  # noqa: E402
from cxrtool.build import search as H  # noqa: E402
from cxrtool.workers import available_cpus, default_workers  # noqa: E402


def make_codes(n: int, radius: int, dup_frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random codes with planted (src, dst) pairs at distance 1..radius; returns (codes, planted)."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 2**64 - 1, size=n, dtype=np.uint64, endpoint=True)
    k = int(n * dup_frac)
    rows = rng.permutation(n)[: 2 * k]
    src, dst = rows[:k], rows[k:]
    flips = rng.integers(1, max(1, radius) + 1, size=k)
    noise = np.zeros(k, dtype=np.uint64)
    for i in range(k):  # k distinct bits per row
        for bit in rng.choice(64, size=flips[i], replace=False):
            noise[i] |= np.uint64(1) << np.uint64(bit)
    codes[dst] = codes[src] ^ noise
    planted = np.stack([np.minimum(src, dst), np.maximum(src, dst)], axis=1).astype(np.int64)
    return codes.reshape(n, 1), planted


def contains(pairs: np.ndarray, query: np.ndarray, n: int) -> np.ndarray:
    key = pairs[:, 0] * n + pairs[:, 1]
    q = query[:, 0] * n + query[:, 1]
    idx = np.searchsorted(key, q)
    idx[idx == len(key)] = 0
    return key[idx] == q if len(key) else np.zeros(len(q), dtype=bool)


def faiss_pairs(codes: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Brute-force reference via faiss (SIMD XOR + popcount); returns (pairs, dists, seconds)."""
    import faiss

    x = np.ascontiguousarray(codes[:, 0].astype(">u8")).view(np.uint8).reshape(len(codes), 8)
    t0 = time.perf_counter()
    index = faiss.IndexBinaryFlat(64)
    index.add(x)
    lims, dist, ids = index.range_search(x, radius + 1)  # faiss keeps d < radius
    seconds = time.perf_counter() - t0
    q = np.repeat(np.arange(len(codes)), np.diff(lims.astype(np.int64)))
    ids = ids.astype(np.int64)
    keep = q < ids
    pairs = np.stack([q[keep], ids[keep]], axis=1).astype(np.int64)
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    return pairs[order], dist[keep][order].astype(np.int64), seconds


class PeakRSS:
    """Peak resident memory above the starting RSS, sampled every 10 ms from /proc (Linux).

    Sampling instead of tracemalloc: tracemalloc slows the Python-level loops of the search.
    """

    def __enter__(self) -> "PeakRSS":
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._rss())

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            return 0

    @property
    def mib(self) -> float:
        return (self.peak - self.base) / 2**20


def have_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--radii", type=int, nargs="+", default=[10, 4], help="10 = imagededup's default")
    ap.add_argument("--dup-frac", type=float, default=0.01, help="fraction of rows planted as near-duplicates")
    ap.add_argument("--exact-max", type=int, default=100_000, help="compare with brute force up to this n")
    ap.add_argument("--faiss-n", type=int, default=100_000, help="rows for the timed faiss brute force")
    ap.add_argument("--numpy-n", type=int, default=20_000, help="rows for the numpy brute-force pairs/s")
    ap.add_argument("--repeat", type=int, default=1, help="best of N timings of our search")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args(argv)

    env = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpus": available_cpus(),
        "machine": platform.machine(),
        "faiss": have_faiss(),
        "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    rng = np.random.default_rng(args.seed + 1)

    # brute-force limits, measured in this run
    limits: dict[str, Any] = {}
    sample = rng.integers(0, 2**64 - 1, size=(args.numpy_n, 1), dtype=np.uint64, endpoint=True)
    t0 = time.perf_counter()
    H._brute(sample, max(args.radii), default_workers(cap=H._MAX_WORKERS))
    npy_s = time.perf_counter() - t0
    limits["numpy_pairs_per_s"] = args.numpy_n * (args.numpy_n - 1) / 2 / npy_s
    limits["numpy_n"] = args.numpy_n
    if env["faiss"]:
        fcodes = rng.integers(0, 2**64 - 1, size=(args.faiss_n, 1), dtype=np.uint64, endpoint=True)
        _, _, fs = faiss_pairs(fcodes, max(args.radii))
        limits["faiss_n"] = args.faiss_n
        limits["faiss_seconds"] = fs
        limits["faiss_pairs_per_s"] = args.faiss_n * (args.faiss_n - 1) / 2 / fs

    def brute_estimate(n: int) -> tuple[float | None, str]:
        if "faiss_seconds" in limits:
            if n == limits["faiss_n"]:
                return limits["faiss_seconds"], "faiss, measured"
            return n * (n - 1) / 2 / limits["faiss_pairs_per_s"], f"faiss, extrapolated from {limits['faiss_n']:,}"
        return n * (n - 1) / 2 / limits["numpy_pairs_per_s"], f"numpy, extrapolated from {args.numpy_n:,}"

    rows: list[dict[str, Any]] = []
    for n in args.sizes:
        for radius in args.radii:
            codes, planted = make_codes(n, radius, args.dup_frac, args.seed + n + radius)
            best = None
            for _ in range(max(1, args.repeat)):
                with PeakRSS() as mem:
                    t0 = time.perf_counter()
                    pairs, dist, stats = H.hamming_pairs(codes, radius, return_stats=True)
                    seconds = time.perf_counter() - t0
                peak = mem.mib
                if best is None or seconds < best[0]:
                    best = (seconds, peak, stats)
            seconds, peak, stats = best
            found = contains(pairs, planted, n)
            row: dict[str, Any] = {
                "n": n,
                "radius": radius,
                "seconds": seconds,
                "method": stats.method,
                "blocks": [list(b) for b in stats.blocks],
                "candidates": stats.candidates,
                "pairs": len(pairs),
                "planted": len(planted),
                "planted_found": int(found.sum()),
                "peak_rss_mib": peak,
            }
            if n <= args.exact_max:
                if env["faiss"]:
                    ref_p, ref_d, _ = faiss_pairs(codes, radius)
                    row["reference"] = "faiss"
                else:
                    ref_p, ref_d = H.hamming_pairs(codes, radius, method="brute")
                    row["reference"] = "numpy brute"
                row["exact"] = bool(np.array_equal(ref_p, pairs) and np.array_equal(ref_d, dist))
            est, how = brute_estimate(n)
            row["brute_seconds"] = est
            row["brute_how"] = how
            row["speedup_vs_brute"] = est / seconds if est else None
            rows.append(row)
            print(f"n={n:,} r={radius}: {seconds:.2f} s, {stats.method} {stats.blocks}, "
                  f"{stats.candidates:,} candidates, planted {row['planted_found']}/{len(planted)}"
                  f"{', exact=' + str(row['exact']) if 'exact' in row else ''}", file=sys.stderr, flush=True)
    env["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None

    lines = [
        "| n | radius | ours (s) | method, blocks (start, bits, t) | candidates verified | pairs | planted found | = brute force | brute-force limit (s) | ours faster by | peak RSS growth MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        blocks = " ".join(f"({a},{b},{c})" for a, b, c in r["blocks"]) or "-"
        exact = {True: "yes", False: "NO"}.get(r.get("exact"), "not run")
        if "reference" in r:
            exact += f" ({r['reference']})"
        lines.append(
            f"| {r['n']:,} | {r['radius']} | {r['seconds']:.2f} | {r['method']} {blocks} | {r['candidates']:,} "
            f"| {r['pairs']:,} | {r['planted_found']:,}/{r['planted']:,} | {exact} "
            f"| {r['brute_seconds']:.1f} ({r['brute_how']}) | {r['speedup_vs_brute']:.1f}x | {r['peak_rss_mib']:.0f} |"
        )
    lines.append("")
    lines.append(f"numpy chunked XOR+popcount brute force: {limits['numpy_pairs_per_s']:.3g} pairs/s "
                 f"(measured on {args.numpy_n:,} rows)")
    if "faiss_seconds" in limits:
        lines.append(f"faiss IndexBinaryFlat.range_search: {limits['faiss_seconds']:.2f} s on {limits['faiss_n']:,} rows "
                     f"= {limits['faiss_pairs_per_s']:.3g} pairs/s")
    lines.append(f"python {env['python']}, numpy {env['numpy']}, {env['cpus']} CPUs ({env['machine']}), "
                 f"load average at start {env['loadavg_start']}, at end {env['loadavg_end']}")
    print("\n".join(lines))
    if args.json:
        write_text(args.json, json.dumps({"env": env, "limits": limits, "rows": rows}, indent=2))
    return 0 if all(r["planted_found"] == r["planted"] and r.get("exact", True) for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
