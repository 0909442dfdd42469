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
costs what). Prints one JSON line: the best images/s of each and ``ratio`` = with / without (target >= 0.9),
and, because a shared machine makes the wall clock wander, the median images per CPU second
of this process (all threads) and ``cpu_ratio`` = with / without.
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
    ap.add_argument("--part", choices=("both", "checks", "score"), default="both",
                    help="what 'with' turns on: both (as shipped), only the image checks, only the feature score")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from PIL import Image

    import cxrtool.predict as predict_module
    from cxrtool.artifact import LoadedModel, ModelInfo
    from cxrtool.backend import import_keras
    from cxrtool.models import build_model, get_spec
    from cxrtool.ood import fit_ood
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
        without = LoadedModel(model, info, None)
        shipped = predict_module.decode_and_check

        def decode_only(path: str, s: int):
            return predict_module.decode_for_model(path, s), None, None

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
        for loaded, decode in ((with_model, with_decode), (without, decode_only)):  # compile both graphs first
            predict_module.decode_and_check = decode
            list(predict_module.predict_stream(loaded, paths[: args.batch_size * 2 + 1], batch_size=args.batch_size,
                                               workers=args.workers))
            predict_module.decode_and_check = shipped
        runs_with, runs_without = [], []
        for k in range(args.repeats):  # interleaved, order alternating, so drifts in machine load hit both
            if k % 2:
                runs_with.append(run(with_model, with_decode))
                runs_without.append(run(without, decode_only))
            else:
                runs_without.append(run(without, decode_only))
                runs_with.append(run(with_model, with_decode))
    result = {
        "part": args.part, "arch": args.arch, "input_px": size, "file_px": args.image_px, "images": args.n, "batch_size": args.batch_size,
        "workers": default_workers(cap=8, requested=args.workers), "cpus": available_cpus(),
        "device": str(jax.devices()[0]), "ood_dims": record["dims"], "feature_dim": record["feature_dim"],
        "without_img_s": round(max(w for w, _ in runs_without), 1), "with_img_s": round(max(w for w, _ in runs_with), 1),
        "ratio": round(max(w for w, _ in runs_with) / max(w for w, _ in runs_without), 3),
        # on a shared machine the wall clock wanders with other jobs; CPU seconds per image do not
        "without_img_per_cpu_s": round(float(np.median([c for _, c in runs_without])), 2),
        "with_img_per_cpu_s": round(float(np.median([c for _, c in runs_with])), 2),
        "cpu_ratio": round(float(np.median([c for _, c in runs_with]) / np.median([c for _, c in runs_without])), 3),
        "runs_without": [[round(w, 1), round(c, 1)] for w, c in runs_without],
        "runs_with": [[round(w, 1), round(c, 1)] for w, c in runs_with],
        "keras": keras.__version__, "jax": jax.__version__,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
