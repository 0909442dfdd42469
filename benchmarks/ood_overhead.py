"""What the OOD flag costs `cxrtool predict`: throughput with it against without it, in one run.

    python benchmarks/ood_overhead.py [--arch cnn] [--size 100] [--n 512] [--image-px 512]
                                      [--batch-size 32] [--workers N] [--repeats 3]

Writes N phantom PNGs (``--image-px`` square) to a temporary folder, builds an untrained model
(speed does not depend on the weights) and fits its OOD statistics on a few phantoms, then
times :func:`cxrtool.predict.predict_stream` over the files, interleaved ``--repeats`` times:

* with: as shipped (the image checks in the decoding threads, the features beside the
  probabilities in the same forward pass, the Mahalanobis distance per batch);
* without: the same model without statistics and the decoding without the image checks (what
  predict did before the flag existed).

``--part checks`` or ``score`` turns on only one of the two in the "with" runs (to see which
costs what). ``--pooled`` adds a third configuration to the interleaved runs: as shipped, but
with the feature statistics fitted on the pooled features (the map's one average, as models
fitted before the 3 x 3 grid have them), so the grid's own cost is measured in the same
process (``pooled_ratio`` = with / pooled). Prints one JSON line: the best images/s of each and ``ratio`` = with / without (target >= 0.9),
and, because a shared machine makes the wall clock wander, ``paired_ratio`` (the median over
the repeats of with / without within one repeat: the two ran back to back), the median images
per CPU second of this process (all threads) and ``cpu_ratio`` = with / without.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="cnn")
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--image-px", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pooled", action="store_true", help="also time the pooled-feature record (the previous release's feature part)")
    ap.add_argument("--part", choices=("both", "checks", "score"), default="both",
                    help="what 'with' turns on: both (as shipped), only the image checks, only the feature score")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from PIL import Image

    import cxrtool.predict as predict_module
    from cxrtool.artifact import LoadedModel, ModelInfo
    from cxrtool.backend import import_keras
    from cxrtool.models import build_model, get_spec
    from cxrtool.ood import fit_ood, fit_stats, predict_features, set_threshold
    from cxrtool.synthetic import make_phantom
    from cxrtool.workers import available_cpus, default_workers

    keras = import_keras()
    import jax

    spec = get_spec(args.arch)
    size = args.size or spec.default_image_size
    labels = ("covid", "pneumonia", "normal")
    with tempfile.TemporaryDirectory(prefix="cxr-bench-") as tmp:
        base = [make_phantom(labels[i % 3], i, args.image_px) for i in range(min(args.n, 30))]
        paths = []
        for i in range(args.n):
            p = Path(tmp) / f"img{i:05d}.png"
            Image.fromarray(base[i % len(base)]).save(p)
            paths.append(str(p))
        model = build_model(args.arch, image_size=size, weights="none", seed=0)
        fit_x = np.stack([make_phantom(labels[i % 3], 500 + i, size) for i in range(90)])
        record = fit_ood(model, fit_x[:60], np.arange(60) % 3, fit_x[60:], batch_size=args.batch_size)
        info = ModelInfo(args.arch, image_size=size, gradcam_layer=spec.gradcam_layer)
        with_ood = LoadedModel(model, ModelInfo(**{**info.__dict__, "extra": {"ood": record}}), None)
        pooled_record = dict(record)  # the same record with the feature part on the pooled features
        pooled_stats = fit_stats(predict_features(model, fit_x[:60], grid=1)[1], np.arange(60) % 3)
        set_threshold(pooled_stats, predict_features(model, fit_x[60:], grid=1)[1])
        pooled_record.update(pooled_stats.to_record(), grid=1)
        pooled = LoadedModel(model, ModelInfo(**{**info.__dict__, "extra": {"ood": pooled_record}}), None)
        without = LoadedModel(model, info, None)
        shipped = predict_module.decode_and_check

        def decode_only(path: str, s: int):
            return predict_module.decode_for_model(path, s), None  # no views: predict skips the checks

        def run(loaded, decode) -> tuple[float, float]:
            """(images per wall second, images per CPU second of this process, all threads)."""
            predict_module.decode_and_check = decode
            try:
                t, c = time.perf_counter(), time.process_time()
                n = sum(len(rows) for rows in predict_module.predict_stream(loaded, paths, batch_size=args.batch_size,
                                                                            workers=args.workers))
                assert n == args.n
                return args.n / (time.perf_counter() - t), args.n / (time.process_time() - c)
            finally:
                predict_module.decode_and_check = shipped

        with_model = with_ood if args.part != "checks" else without
        with_decode = shipped if args.part != "score" else decode_only
        configs = [(with_model, with_decode), (without, decode_only)] + ([(pooled, with_decode)] if args.pooled else [])
        for loaded, decode in configs:  # compile the graphs first
            predict_module.decode_and_check = decode
            list(predict_module.predict_stream(loaded, paths[: args.batch_size * 2 + 1], batch_size=args.batch_size,
                                               workers=args.workers))
            predict_module.decode_and_check = shipped
        runs: list[list[tuple[float, float]]] = [[] for _ in configs]
        for k in range(args.repeats):  # interleaved, order rotating, so drifts in machine load hit all
            for j in range(len(configs)):
                c = (j + k) % len(configs)
                runs[c].append(run(*configs[c]))
        runs_with, runs_without = runs[0], runs[1]
    result = {
        "part": args.part, "arch": args.arch, "input_px": size, "file_px": args.image_px, "images": args.n, "batch_size": args.batch_size,
        "workers": default_workers(cap=8, requested=args.workers), "cpus": available_cpus(),
        "device": str(jax.devices()[0]), "ood_dims": record["dims"], "feature_dim": record["feature_dim"],
        "without_img_s": round(max(w for w, _ in runs_without), 1), "with_img_s": round(max(w for w, _ in runs_with), 1),
        "ratio": round(max(w for w, _ in runs_with) / max(w for w, _ in runs_without), 3),
        # the two configurations of one repeat ran back to back: their ratio is the least
        # touched by the box's drifts (which moved single runs by 10-20% on the 2-core box)
        "paired_ratio": round(float(np.median([a[0] / b[0] for a, b in zip(runs_with, runs_without)])), 3),
        "paired_ratios": [round(a[0] / b[0], 3) for a, b in zip(runs_with, runs_without)],
        # on a shared machine the wall clock wanders with other jobs; CPU seconds per image do not
        "without_img_per_cpu_s": round(float(np.median([c for _, c in runs_without])), 2),
        "with_img_per_cpu_s": round(float(np.median([c for _, c in runs_with])), 2),
        "cpu_ratio": round(float(np.median([c for _, c in runs_with]) / np.median([c for _, c in runs_without])), 3),
        "runs_without": [[round(w, 1), round(c, 1)] for w, c in runs_without],
        "runs_with": [[round(w, 1), round(c, 1)] for w, c in runs_with],
        "keras": keras.__version__, "jax": jax.__version__,
    }
    if args.pooled:
        runs_pooled = runs[2]
        result.update(pooled_img_s=round(max(w for w, _ in runs_pooled), 1),
                      pooled_ratio=round(max(w for w, _ in runs_with) / max(w for w, _ in runs_pooled), 3),
                      pooled_ratio_to_without=round(max(w for w, _ in runs_pooled) / max(w for w, _ in runs_without), 3),
                      pooled_cpu_ratio=round(float(np.median([c for _, c in runs_with]) / np.median([c for _, c in runs_pooled])), 3),
                      runs_pooled=[[round(w, 1), round(c, 1)] for w, c in runs_pooled])
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
