"""False alarms of the group-shift test (:func:`cxrtool.ood.group_shift`) on large sets that
are not shifted: the ``balanced out`` images of a dataset build (same sources as training,
never seen by the model; :mod:`ood_unused`), scored with predict's own path and tested per
source folder against the model's stored val scores, class by class, as ``evaluate`` does.

    python benchmarks/ood_shift_unused.py MODEL.keras DATASET [--sources ../shared/data/sources]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ood_unused import SOURCES, unused_labelled  # noqa: E402


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
    paths = [path for path, _ in unused]
    label = {str(path): name for path, name in unused}
    loaded = load_model(args.model)
    reference, why = shift_reference(loaded.info)
    if reference is None:
        raise SystemExit(f"{args.model}: {why}")
    by_folder: dict[str, tuple[list[float], list[str]]] = defaultdict(lambda: ([], []))
    for row in predict_paths(loaded, paths, batch_size=32):
        scores, labels = by_folder[str(Path(row.path).relative_to(args.sources).parts[0])]
        scores.append(row.ood_score)
        labels.append(label[row.path])
    print(f"{args.model.name}: group shift of the {len(paths)} unused images of {args.data}, per source")
    for folder, (scores, labels) in sorted(by_folder.items()):
        g = group_shift(scores, labels, reference)
        said = ", ".join(f"{c} n {e['n']} D {e['ks_d']:.3f} p {e['p']:.2g}" if "p" in e else f"{c} n {e['n']} (not tested)"
                         for c, e in g["per_class"].items())
        print(f"  {folder}: {'SHIFTED' if g['shifted'] else 'not shifted'} ({said})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
