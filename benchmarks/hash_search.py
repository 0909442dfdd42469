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
    .venv/bin/python benchmarks/hash_search.py --codes realistic --compare   # 256-bit, radius 32

Realistic mode: 256-bit codes (pHash hash size 16, radius 32: the build-dataset defaults) drawn
from a model fitted to the pHashes of real X-rays (``--sources``, hashed with build-dataset's own
analysis; see :class:`RealisticCodes`), its pairwise-distance histogram compared with the real
one, 1 % planted near copies (weight-preserving bit swaps, distance 2..radius), exactness
checked against our numpy brute force up to ``--exact-max``; ``--compare`` also runs the
planner without its large-sample correction (what it did before), interleaved.
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


def _unpack(codes: np.ndarray) -> np.ndarray:
    """(n, words) uint64 -> (n, 64 * words) bool, bit 0 = MSB of word 0 (as pack_hashes)."""
    return np.unpackbits(codes.astype(">u8").view(np.uint8).reshape(len(codes), -1), axis=1).astype(bool)


def real_codes(sources: str, cache: str | None) -> np.ndarray:
    """Distinct 256-bit pHashes (hash size 16, the default) of the real images under SOURCES,
    computed with build-dataset's own analysis (decode + hash), cached as .npy."""
    if cache and os.path.exists(cache):
        return np.load(cache)
    from pathlib import Path

    from cxrtool.build.analyse import analyse_files
    from cxrtool.build.sources import LabelMap, scan_sources

    files = [item.path for scan in scan_sources([Path(sources)], LabelMap({})) for item in scan.items]
    found = [a.hash for a in analyse_files(files, "phash", 16, None) if a.hash]
    codes = np.unique(H.pack_hashes(found), axis=0)
    if cache:
        np.save(cache, codes)
    return codes


class RealisticCodes:
    """256-bit codes distributed like real X-ray pHashes, as many as wanted.

    A Gaussian copula fitted to the real codes: every bit's frequency and every pair of bits'
    correlation (tetrachoric, ``sin(pi/2 * r)``) are those of the real hashes; a latent
    Gaussian vector is drawn with that correlation, shifted by each bit's threshold, and its
    bits are set where it exceeds its own median, exactly as pHash sets a bit where a DCT
    coefficient exceeds the median (so every code has weight 128, as every real pHash has).
    Real sources also hold several images of one patient or study, whose hashes are closer
    than strangers': codes come in groups (1 + Poisson(``sibling_rate``) members) sharing
    ``sibling_share`` of their latent vector. Check the fit with :func:`distance_histograms`.
    """

    def __init__(self, real: np.ndarray, sibling_rate: float = 0.5, sibling_share: float = 0.6):
        from scipy.stats import norm

        bits = _unpack(real).astype(float)
        freq = bits.mean(axis=0).clip(1e-3, 1 - 1e-3)
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.nan_to_num(np.corrcoef(bits, rowvar=False))
        latent = np.sin(np.pi / 2 * corr)
        np.fill_diagonal(latent, 1.0)
        w, v = np.linalg.eigh(latent)
        self.factor = v * np.sqrt(w.clip(1e-6))
        self.tau = norm.ppf(1 - freq)
        self.words = real.shape[1]
        self.sibling_rate = sibling_rate
        self.sibling_share = sibling_share

    def sample(self, n: int, rng: np.random.Generator, chunk: int = 65536) -> np.ndarray:
        out = []
        nbits = 64 * self.words
        done = 0
        while done < n:
            k = min(chunk, n - done)
            sizes = 1 + rng.poisson(self.sibling_rate, k)
            group = np.repeat(np.arange(k), sizes)[:k]
            shared = rng.standard_normal((k, nbits))[group]
            own = rng.standard_normal((k, nbits))
            z = (np.sqrt(self.sibling_share) * shared + np.sqrt(1 - self.sibling_share) * own) @ self.factor.T - self.tau
            out.append(np.packbits(z > np.median(z, axis=1, keepdims=True), axis=1).view(">u8").astype(np.uint64))
            done += k
        codes = np.concatenate(out)
        return codes[rng.permutation(n)]


def sample_distances(codes: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """Hamming distances of m random pairs of distinct rows."""
    n = len(codes)
    ia = rng.integers(0, n, m)
    ib = rng.integers(0, n - 1, m)
    ib = ib + (ib >= ia)
    return H.hamming_distance(codes[ia], codes[ib])


def distance_histograms(real: np.ndarray, fake: np.ndarray, m: int = 400_000, seed: int = 0) -> dict[str, Any]:
    """Compare the pairwise-distance distributions: L1 distance of the histograms and quantiles."""
    rng = np.random.default_rng(seed)
    dr, df = sample_distances(real, m, rng), sample_distances(fake, m, rng)
    bins = 64 * real.shape[1] + 1
    hr = np.bincount(dr, minlength=bins) / m
    hf = np.bincount(df, minlength=bins) / m
    qs = [0.01, 0.1, 1, 5, 25, 50, 75, 95, 99]
    return {
        "pairs_sampled": m,
        "l1": float(np.abs(hr - hf).sum()),
        "quantiles_pct": qs,
        "real": [float(x) for x in np.percentile(dr, qs)],
        "generated": [float(x) for x in np.percentile(df, qs)],
        "real_within_64": float((dr <= 64).mean()),
        "generated_within_64": float((df <= 64).mean()),
    }


def plant_copies(codes: np.ndarray, radius: int, dup_frac: float, rng: np.random.Generator) -> np.ndarray:
    """Overwrite ``dup_frac`` of the rows with near copies of other rows, in place; returns the
    planted (i < j) pairs. A copy swaps s = 1..radius/2 set bits with s clear bits (distance 2s,
    weight kept, like a re-encoded image's pHash)."""
    n, words = codes.shape
    k = int(n * dup_frac)
    rows = rng.permutation(n)[: 2 * k]
    src, dst = rows[:k], rows[k:]
    bits = _unpack(codes[src])
    swaps = rng.integers(1, max(1, radius // 2) + 1, size=k)
    r = rng.random(bits.shape)
    flip = np.zeros_like(bits)
    for value in (True, False):  # the `swaps` lowest-ranked set bits and as many clear bits
        rank = np.argsort(np.argsort(np.where(bits == value, r, 2.0), axis=1), axis=1)
        flip |= (rank < swaps[:, None]) & (bits == value)
    bits ^= flip
    codes[dst] = np.packbits(bits, axis=1).view(">u8").astype(np.uint64)
    return np.stack([np.minimum(src, dst), np.maximum(src, dst)], axis=1).astype(np.int64)


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


DEFAULT_SOURCES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "sources")


def _cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def load_baseline(path: str) -> Any:
    """A ``search.py`` of another revision as a module, e.g. from
    ``git show main:cxrtool/build/search.py > /tmp/search_main.py``."""
    import types

    source = open(path, encoding="utf-8").read().replace("from ..workers import", "from cxrtool.workers import")
    module = types.ModuleType("baseline_search")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, path, "exec"), module.__dict__)  # noqa: S102 - a benchmark loading a file the user named
    return module


def _timed_search(codes: np.ndarray, radius: int, replans: int | None, module: Any = H) -> dict[str, Any]:
    """One hamming_pairs call (planner correction on, or off with replans=0; or another
    revision's module): wall, CPU, stats."""
    saved = H._REPLANS
    if replans is not None:
        H._REPLANS = replans
    try:
        with PeakRSS() as mem:
            t0, c0 = time.perf_counter(), _cpu()
            pairs, dist, stats = module.hamming_pairs(codes, radius, return_stats=True)
            seconds, cpu = time.perf_counter() - t0, _cpu() - c0
    finally:
        H._REPLANS = saved
    return {"pairs": pairs, "dist": dist, "stats": stats, "seconds": seconds, "cpu": cpu, "peak": mem.mib}


def uncorrected_estimate(codes: np.ndarray, radius: int, seed: int = 0) -> float:
    """What the planner estimated before its large-sample correction (binomial model from the
    small pair sample only), in the units of ``SearchStats.est_seconds``: the same sample as
    ``hamming_search`` draws, priced and laid out without the correction."""
    u = H._groups(H._as_codes(codes))[0]
    n, words = u.shape
    bits = 64 * words
    npairs = n * (n - 1) / 2
    nsamp = int(min(npairs, max(1024, min(n // 4, 8192, 524_288 // bits))))
    x = H._pair_sample(u, nsamp, np.random.default_rng(seed)).astype(">u8").view(np.uint8).reshape(nsamp, words * 8)
    cs = np.zeros((nsamp, bits + 1), dtype=np.int16)
    np.cumsum(np.unpackbits(x, axis=1), axis=1, out=cs[:, 1:])
    costs, sizes = H._shape_costs(u, radius, cs, np.ones(radius + 2))
    _, cost = H._cheapest_layout(costs, sizes, bits, radius + 1)
    return cost / default_workers(cap=H._MAX_WORKERS)


def finish(lines: list[str], env: dict[str, Any], json_path: str | None, extra: dict[str, Any], rows: list[dict[str, Any]]) -> int:
    """Print the table with the machine line, write the JSON; exit 1 unless every row is exact."""
    lines.append(f"python {env['python']}, numpy {env['numpy']}, {env['cpus']} CPUs ({env['machine']}), "
                 f"load average at start {env['loadavg_start']}, at end {env['loadavg_end']}")
    print("\n".join(lines))
    if json_path:
        write_text(json_path, json.dumps({"env": env, **extra, "rows": rows}, indent=2))
    return 0 if all(r["planted_found"] == r["planted"] and r.get("exact", True) for r in rows) else 1


def realistic_main(args: argparse.Namespace, env: dict[str, Any]) -> int:
    """256-bit codes like real X-ray pHashes, at the build-dataset defaults (radius 32)."""
    real = real_codes(args.sources, args.real_hashes)
    gen = RealisticCodes(real)
    check = distance_histograms(real, gen.sample(100_000, np.random.default_rng(args.seed)))
    print(f"fit: {len(real):,} distinct real pHashes; distance-histogram L1 {check['l1']:.3f}; quantiles "
          f"{check['quantiles_pct']} % real {check['real']} generated {check['generated']}", file=sys.stderr, flush=True)
    radius = args.radii[0] if args.radii else 32
    baseline = load_baseline(args.baseline) if args.baseline else None
    rows: list[dict[str, Any]] = []
    for n in args.sizes:
        codes = gen.sample(n, np.random.default_rng(args.seed + n))
        planted = plant_copies(codes, radius, args.dup_frac, np.random.default_rng(args.seed + n + 1))
        runs = {}
        # interleaved, so both see the same load: the corrected planner, then the uncorrected one
        for name, replans in (("corrected", None), ("uncorrected", 0)) if args.compare else (("corrected", None),):
            runs[name] = _timed_search(codes, radius, replans)
        if baseline is not None:
            runs["baseline"] = _timed_search(codes, radius, None, baseline)
        ours = runs["corrected"]
        stats = ours["stats"]
        found = contains(ours["pairs"], planted, n)
        row: dict[str, Any] = {
            "n": n, "radius": radius, "bits": stats.bits, "n_unique": stats.n_unique,
            "seconds": ours["seconds"], "cpu_seconds": ours["cpu"], "peak_rss_mib": ours["peak"],
            "est_seconds": stats.est_seconds, "workers": default_workers(cap=H._MAX_WORKERS),
            "method": stats.method, "blocks": [list(b) for b in stats.blocks],
            "candidates": stats.candidates, "est_candidates": stats.est_candidates,
            "pairs": len(ours["pairs"]), "planted": len(planted), "planted_found": int(found.sum()),
        }
        if "uncorrected" in runs:
            u = runs["uncorrected"]
            row["uncorrected"] = {
                "seconds": u["seconds"], "cpu_seconds": u["cpu"], "est_seconds": uncorrected_estimate(codes, radius),
                "candidates": u["stats"].candidates, "blocks": [list(b) for b in u["stats"].blocks],
                "same_pairs": bool(np.array_equal(u["pairs"], ours["pairs"])),
            }
        if "baseline" in runs:
            b = runs["baseline"]
            row["baseline"] = {
                "file": args.baseline, "seconds": b["seconds"], "cpu_seconds": b["cpu"],
                "est_seconds": b["stats"].est_seconds, "candidates": b["stats"].candidates,
                "blocks": [list(x) for x in b["stats"].blocks],
                "same_pairs": bool(np.array_equal(b["pairs"], ours["pairs"])),
            }
        if n <= args.exact_max:
            t0 = time.perf_counter()
            ref_p, ref_d = H.hamming_pairs(codes, radius, method="brute")
            row["brute_seconds"] = time.perf_counter() - t0
            row["exact"] = bool(np.array_equal(ref_p, ours["pairs"]) and np.array_equal(ref_d, ours["dist"]))
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "blocks"}), file=sys.stderr, flush=True)
    env["loadavg_end"] = os.getloadavg()
    lines = [
        "| n | wall (s) | CPU (s) | planner estimate (s) | candidates: verified / estimated | blocks | "
        "uncorrected planner: wall, CPU, estimate (s), candidates | pairs | planted found | = brute force | peak RSS growth MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        u = r.get("uncorrected")
        old = f"{u['seconds']:.1f}, {u['cpu_seconds']:.1f}, {u['est_seconds']:.1f}, {u['candidates']:,}" if u else "-"
        exact = "not run" if "exact" not in r else f"yes ({r['brute_seconds']:.0f} s)" if r["exact"] else "NO"
        b = r.get("baseline")
        if b:
            old += (f"; baseline: {b['seconds']:.1f}, {b['cpu_seconds']:.1f}, {b['est_seconds']:.1f}, "
                    f"{b['candidates']:,}, same pairs {b['same_pairs']}")
        lines.append(
            f"| {r['n']:,} | {r['seconds']:.2f} | {r['cpu_seconds']:.2f} | {r['est_seconds']:.2f} "
            f"| {r['candidates']:,} / {r['est_candidates']:,.0f} | {len(r['blocks'])} ({r['method']}) | {old} "
            f"| {r['pairs']:,} | {r['planted_found']:,}/{r['planted']:,} | {exact} | {r['peak_rss_mib']:.0f} |"
        )
    lines.append("")
    lines.append(f"fit to {len(real):,} real pHashes: histogram L1 {check['l1']:.3f}; distance quantiles "
                 f"{check['quantiles_pct']} %: real {check['real']}, generated {check['generated']}")
    return finish(lines, env, args.json, {"fit": check}, rows)


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
    ap.add_argument("--codes", choices=("random", "realistic"), default="random",
                    help="realistic: 256-bit codes fitted to real X-ray pHashes, radius 32 (the build-dataset defaults)")
    ap.add_argument("--sources", default=DEFAULT_SOURCES, help="real images whose pHashes the realistic codes are fitted to")
    ap.add_argument("--real-hashes", metavar="NPY", help="cache of those pHashes (computed once when missing)")
    ap.add_argument("--compare", action="store_true", help="realistic: also run the uncorrected planner, interleaved")
    ap.add_argument("--baseline", metavar="SEARCH_PY", help="realistic: also time this search.py (another revision) on the same codes")
    args = ap.parse_args(argv)
    if args.codes == "realistic" and args.radii == [10, 4]:
        args.radii = [32]

    env = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpus": available_cpus(),
        "machine": platform.machine(),
        "faiss": have_faiss(),
        "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    if args.codes == "realistic":
        return realistic_main(args, env)
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
    return finish(lines, env, args.json, {"limits": limits}, rows)


if __name__ == "__main__":
    raise SystemExit(main())
