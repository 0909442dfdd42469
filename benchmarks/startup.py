"""Start-up time of the CLI: `python -m cxrtool --help` against a bare `python -c pass`.

    python benchmarks/startup.py [--repeats 7] [--args=--version]

Runs each command ``--repeats`` times in fresh interpreters (after one warm-up run each, so
the page cache and ``__pycache__`` are warm) and reports the best and median wall times and the
ratio of the bests. ``--help`` must stay instant: it imports no Keras/JAX/scikit-learn/matplotlib
(``tests/test_cli.py`` checks that; this measures what the imports that remain cost). Prints one
JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path


def timed(cmd: list[str], env: dict[str, str], repeats: int) -> list[float]:
    subprocess.run(cmd, capture_output=True, env=env, check=True)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, env=env, check=True)
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--args", default="--help", help="arguments after `python -m cxrtool` [default: --help]")
    args = ap.parse_args(argv)

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))}
    bare = timed([sys.executable, "-c", "pass"], env, args.repeats)
    cli = timed([sys.executable, "-m", "cxrtool", *shlex.split(args.args)], env, args.repeats)
    result = {
        "command": f"python -m cxrtool {args.args}",
        "repeats": args.repeats,
        "python_best_s": round(min(bare), 4),
        "python_median_s": round(statistics.median(bare), 4),
        "cxrtool_best_s": round(min(cli), 4),
        "cxrtool_median_s": round(statistics.median(cli), 4),
        "ratio_best": round(min(cli) / min(bare), 2),
        "load_average": os.getloadavg()[0],
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
