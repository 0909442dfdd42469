"""False flags on the real X-rays a dataset build left out: the ``balanced out`` rows of
``excluded.csv`` (same sources as training, never seen by the model; duplicates, label
conflicts and exposure rejects are not counted), scored with predict's own path
(:func:`cxrtool.predict.predict_paths`), per source folder. A far larger sample of the
internal distribution than a 225-image test split.

    python benchmarks/ood_unused.py MODEL.keras DATASET [--sources ../shared/data/sources]
"""

from __future__ import annotations

import argparse
import collections
import csv
import time
from pathlib import Path


#: Where the shared sources are, beside this checkout.
SOURCES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sources"


def unused_labelled(data: Path, sources: Path) -> list[tuple[Path, str]]:
    """(source file, label) of a dataset build's ``balanced out`` rows (``excluded.csv``)."""
    with open(data / "excluded.csv", newline="") as f:
        return [(sources / r["source"] / r["source_file"], r["label"])
                for r in csv.DictReader(f) if r["reason"] == "balanced out"]


def unused_images(data: Path, sources: Path) -> list[Path]:
    """The source files of a dataset build's ``balanced out`` rows (``excluded.csv``)."""
    return [path for path, _ in unused_labelled(data, sources)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("data", type=Path)
    ap.add_argument("--sources", type=Path, default=SOURCES)
    args = ap.parse_args(argv)

    from cxrtool.artifact import load_model
    from cxrtool.predict import predict_paths

    unused = unused_images(args.data, args.sources)
    loaded = load_model(args.model)
    t0 = time.perf_counter()
    counts: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    reasons: collections.Counter = collections.Counter()
    for row in predict_paths(loaded, unused, batch_size=32):
        folder = str(Path(row.path).relative_to(args.sources).parent)
        counts[folder][0] += 1
        if row.flag:
            counts[folder][1] += 1
            reasons[row.flag] += 1
    n, k = sum(v[0] for v in counts.values()), sum(v[1] for v in counts.values())
    print(f"{args.model.name} on the {n} unused images of {args.data}: {k} flagged ({100 * k / max(n, 1):.2f}%), "
          f"{dict(reasons)}, {time.perf_counter() - t0:.0f} s")
    for folder, (a, b) in sorted(counts.items()):
        print(f"  {folder}: {b} of {a} ({100 * b / a:.2f}%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
