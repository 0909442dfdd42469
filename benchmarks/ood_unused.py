"""False flags on the real X-rays a dataset build left out: the ``balanced out`` rows of
``excluded.csv`` (same sources as training, never seen by the model; duplicates, label
conflicts and exposure rejects are not counted), scored with predict's own path
(:func:`cxrtool.predict.predict_paths`), per source folder. A far larger sample of the
internal distribution than a 225-image test split. For a model that keeps its val scores
(``reference``), the same scores also give the group-shift test per source
(:func:`cxrtool.ood.group_shift`, as ``evaluate`` runs it): its false alarms on sets that are
not shifted.

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
    from cxrtool.ood import group_shift, shift_reference
    from cxrtool.predict import predict_paths

    unused = unused_labelled(args.data, args.sources)
    label = {str(path): name for path, name in unused}
    loaded = load_model(args.model)
    t0 = time.perf_counter()
    counts: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    reasons: collections.Counter = collections.Counter()
    by_source: dict[str, tuple[list[float], list[str]]] = collections.defaultdict(lambda: ([], []))
    for row in predict_paths(loaded, [path for path, _ in unused], batch_size=32):
        rel = Path(row.path).relative_to(args.sources)
        folder = str(rel.parent)
        counts[folder][0] += 1
        if row.flag:
            counts[folder][1] += 1
            reasons[row.flag] += 1
        scores, labels = by_source[rel.parts[0]]
        scores.append(row.ood_score)
        labels.append(label[row.path])
    n, k = sum(v[0] for v in counts.values()), sum(v[1] for v in counts.values())
    print(f"{args.model.name} on the {n} unused images of {args.data}: {k} flagged ({100 * k / max(n, 1):.2f}%), "
          f"{dict(reasons)}, {time.perf_counter() - t0:.0f} s")
    for folder, (a, b) in sorted(counts.items()):
        print(f"  {folder}: {b} of {a} ({100 * b / a:.2f}%)")
    reference, why = shift_reference(loaded.info)
    if reference is None:
        print(f"group shift: not tested ({why})")
        return 0
    print("group shift against the model's val scores, per source (class by class, as evaluate tests):")
    for source, (scores, labels) in sorted(by_source.items()):
        g = group_shift(scores, labels, reference)
        said = ", ".join(f"{c} n {e['n']} D {e['ks_d']:.3f} p {e['p']:.2g}" if "p" in e else f"{c} n {e['n']} (not tested)"
                         for c, e in g["per_class"].items())
        print(f"  {source}: {'SHIFTED' if g['shifted'] else 'not shifted'} ({said})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
