"""End-to-end speed of ``build_dataset`` on the real sources against a naive baseline.

Baseline (single process, on the same labelled files build-dataset analyses):
  * hashing: ``imagehash.phash(Image.open(f))`` per file (full decode, 64-bit pHash);
  * pairwise comparison, two variants:
      - ImageHash ``a - b`` in a Python double loop: timed on a random sample of pairs and
        extrapolated to all n(n-1)/2 pairs (it would take far too long to run);
      - numpy XOR + popcount over all pairs in row chunks (a stronger baseline, run in full).
Ours: ``build_dataset`` with default options (all cores) as a dry run and as a full write
into a temporary folder (figures off and on), plus its decode+hash stage alone.

    python benchmarks/build_dataset.py [--sources DIR] [--json PATH] [--pair-sample N]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cxrtool.atomic import write_text
from cxrtool.workers import available_cpus

DEFAULT_SOURCES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sources"


def labelled_files(sources: Path) -> list[Path]:
    from cxrtool.build.sources import LabelMap, scan_sources

    return [item.path for scan in scan_sources([sources], LabelMap({})) for item in scan.items if item.label]


def naive_hash(files: list[Path]):
    import imagehash
    from PIL import Image

    t = time.perf_counter()
    hashes = [imagehash.phash(Image.open(f)) for f in files]
    return hashes, time.perf_counter() - t


def naive_pairs_python(hashes, sample: int, seed: int = 0) -> tuple[float, float, int]:
    """Seconds for ``sample`` random pairs with ImageHash ``-``; extrapolated seconds for all pairs."""
    n = len(hashes)
    rng = random.Random(seed)
    pairs = [(rng.randrange(n), rng.randrange(n)) for _ in range(sample)]
    t = time.perf_counter()
    close = 0
    for i, j in pairs:
        if hashes[i] - hashes[j] <= 6:
            close += 1
    dt = time.perf_counter() - t
    total_pairs = n * (n - 1) // 2
    return dt, dt / sample * total_pairs, total_pairs


def naive_pairs_numpy(hashes, radius: int = 6, chunk: int = 512) -> tuple[float, int]:
    bits = np.array([h.hash.ravel() for h in hashes], dtype=bool)
    codes = np.packbits(bits, axis=1).view(np.uint64)  # (n, 1) for 64-bit hashes
    t = time.perf_counter()
    found = 0
    n = len(codes)
    for start in range(0, n, chunk):
        block = codes[start : start + chunk]
        dist = np.bitwise_count(block[:, None, :] ^ codes[None, :, :]).sum(axis=2)
        rows, cols = np.nonzero(dist <= radius)
        found += int(((rows + start) < cols).sum())
    return time.perf_counter() - t, found


def ours_build(sources: Path, dry_run: bool, figures: bool) -> tuple[float, dict]:
    from cxrtool.build import BuildOptions, build_dataset

    with tempfile.TemporaryDirectory(prefix="cxr-bench-") as tmp:
        t = time.perf_counter()
        result = build_dataset([sources], Path(tmp) / "out", BuildOptions(dry_run=dry_run, figures=figures))
        return time.perf_counter() - t, result.report


def ours_analyse(files: list[Path], workers: int | None) -> float:
    from cxrtool.build.analyse import analyse_files

    t = time.perf_counter()
    analyse_files(files, "phash", 16, workers)
    return time.perf_counter() - t


def versions() -> dict[str, str]:
    import imagehash
    import PIL

    import cxrtool

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "Pillow": PIL.__version__,
        "ImageHash": imagehash.__version__,
        "cxrtool": cxrtool.__version__,
        "cpu_cores": str(available_cpus()),
        "machine": platform.machine(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sources", type=Path, default=DEFAULT_SOURCES)
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    ap.add_argument("--pair-sample", type=int, default=300_000, help="pairs timed for the ImageHash Python loop")
    ap.add_argument("--no-figures-run", action="store_true", help="skip the full write with figures")
    args = ap.parse_args(argv)
    if not args.sources.is_dir():
        print(f"sources not found: {args.sources}", file=sys.stderr)
        return 2

    files = labelled_files(args.sources)
    n = len(files)
    print(f"{n} labelled files under {args.sources}", file=sys.stderr)

    res: dict[str, float] = {}
    # warm the page cache so neither side pays for the first read
    for f in files:
        f.read_bytes()
    res["ours_dry_run_s"], report = ours_build(args.sources, dry_run=True, figures=False)
    res["ours_write_s"], _ = ours_build(args.sources, dry_run=False, figures=False)
    if not args.no_figures_run:
        res["ours_write_figures_s"], _ = ours_build(args.sources, dry_run=False, figures=True)
    res["ours_analyse_all_cores_s"] = ours_analyse(files, None)
    res["ours_analyse_1_worker_s"] = ours_analyse(files, 1)
    hashes, res["naive_hash_s"] = naive_hash(files)
    res["naive_pairs_python_sample_s"], res["naive_pairs_python_all_s_extrapolated"], total_pairs = naive_pairs_python(
        hashes, args.pair_sample
    )
    res["naive_pairs_numpy_s"], _ = naive_pairs_numpy(hashes)
    naive_py = res["naive_hash_s"] + res["naive_pairs_python_all_s_extrapolated"]
    naive_np = res["naive_hash_s"] + res["naive_pairs_numpy_s"]

    def ips(seconds: float) -> str:
        return f"{n / seconds:,.0f}"

    rows = [
        ("ours: build_dataset --dry-run", res["ours_dry_run_s"]),
        ("ours: build_dataset, write (copy, no figures)", res["ours_write_s"]),
    ]
    if "ours_write_figures_s" in res:
        rows.append(("ours: build_dataset, write (copy, figures)", res["ours_write_figures_s"]))
    rows += [
        ("naive: phash loop + ImageHash `-` all pairs (extrapolated)", naive_py),
        ("naive: phash loop + numpy XOR/popcount all pairs", naive_np),
    ]
    lines = [
        f"{n} labelled images, {total_pairs:,} pairs; {versions()['cpu_cores']} cores",
        "",
        "| pipeline | seconds | images/s | ours (dry run) is faster by |",
        "|---|---|---|---|",
    ]
    for name, sec in rows:
        lines.append(f"| {name} | {sec:,.1f} | {ips(sec)} | {sec / res['ours_dry_run_s']:.2f}x |")
    lines += [
        "",
        "| stage | seconds | images/s |",
        "|---|---|---|",
        f"| ours: decode + sha256 + pHash-256 + exposure metrics, all cores | {res['ours_analyse_all_cores_s']:.1f} | {ips(res['ours_analyse_all_cores_s'])} |",
        f"| ours: same, 1 worker | {res['ours_analyse_1_worker_s']:.1f} | {ips(res['ours_analyse_1_worker_s'])} |",
        f"| naive: `imagehash.phash(Image.open(f))`, 1 process | {res['naive_hash_s']:.1f} | {ips(res['naive_hash_s'])} |",
        f"| naive pairs: ImageHash `-`, {args.pair_sample:,} random pairs timed | {res['naive_pairs_python_sample_s']:.2f} | - |",
        f"| naive pairs: ImageHash `-`, all pairs (extrapolated) | {res['naive_pairs_python_all_s_extrapolated']:,.0f} | - |",
        f"| naive pairs: numpy XOR + popcount, all pairs | {res['naive_pairs_numpy_s']:.1f} | - |",
    ]
    print("\n".join(lines))
    if args.json:
        payload = {"images": n, "pairs": total_pairs, "seconds": res, "versions": versions(),
                   "ratio_vs_naive_python_pairs": naive_py / res["ours_dry_run_s"],
                   "ratio_vs_naive_numpy_pairs": naive_np / res["ours_dry_run_s"],
                   "ratio_write_vs_naive_numpy_pairs": naive_np / res["ours_write_s"]}
        write_text(args.json, json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
