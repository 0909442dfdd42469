"""build-dataset's per-image stage: the local process pool against a Dask LocalCluster.

Both sides analyse the same labelled files with the defaults (pHash 16x16), WORKERS worker
processes each, interleaved (pool, cluster, pool, cluster, ...) so that a loaded machine
slows both alike. The cluster side is timed twice: the analysis alone (cluster already up) and
with the cluster's start and close; the pool side includes starting its pool. CPU seconds are
those of the worker processes (``RUSAGE_CHILDREN``, read after they exited) plus this process.
Also checks that both give the same records, in the same order.

    python benchmarks/build_dask.py [--sources DIR] [--workers 2] [--repeats 2] [--limit N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path

DEFAULT_SOURCES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sources"


def labelled_files(sources: Path) -> list[Path]:
    from cxrtool.build.sources import LabelMap, scan_sources

    return [item.path for scan in scan_sources([sources], LabelMap({})) for item in scan.items if item.label]


def cpu_s() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run_pool(files: list[Path], workers: int):
    from cxrtool.build.analyse import analyse_files

    t0, c0 = time.perf_counter(), cpu_s()
    records = analyse_files(files, "phash", 16, workers)
    return records, {"wall_s": time.perf_counter() - t0, "cpu_s": cpu_s() - c0}


def run_cluster(files: list[Path], workers: int):
    from cxrtool.build.executors import Executor, analyse_on_dask, dask_client

    t0, c0 = time.perf_counter(), cpu_s()
    with dask_client(Executor("dask-local"), workers) as client:
        t1 = time.perf_counter()
        records = analyse_on_dask(client, files, "phash", 16)
        analysis = time.perf_counter() - t1
    return records, {"wall_s": time.perf_counter() - t0, "analysis_s": analysis, "cpu_s": cpu_s() - c0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sources", type=Path, default=DEFAULT_SOURCES)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="analyse only the first N files (0: all)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import dask
    import distributed

    import cxrtool

    files = labelled_files(args.sources)
    if args.limit:
        files = files[: args.limit]
    load_start = os.getloadavg()
    runs: dict[str, list[dict]] = {"pool": [], "cluster": []}
    reference = None
    for rep in range(args.repeats):
        for side, fn in (("pool", run_pool), ("cluster", run_cluster)):
            records, timing = fn(files, args.workers)
            if reference is None:
                reference = records
            assert records == reference, f"{side}: records differ from the first run"
            runs[side].append(timing)
            print(f"rep {rep} {side:7s} " + " ".join(f"{k} {v:.1f}" for k, v in timing.items()), flush=True)
    load_end = os.getloadavg()
    med = {side: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for side, rs in runs.items()}
    result = {
        "files": len(files),
        "workers": args.workers,
        "repeats": args.repeats,
        "runs": runs,
        "median": med,
        "cluster_over_pool_wall": med["cluster"]["wall_s"] / med["pool"]["wall_s"],
        "cluster_analysis_over_pool_wall": med["cluster"]["analysis_s"] / med["pool"]["wall_s"],
        "cluster_over_pool_cpu": med["cluster"]["cpu_s"] / med["pool"]["cpu_s"],
        "load_start": load_start,
        "load_end": load_end,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "cxrtool": cxrtool.__version__,
        "dask": dask.__version__,
        "distributed": distributed.__version__,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":  # a Dask LocalCluster starts its workers by re-importing this file
    main()
