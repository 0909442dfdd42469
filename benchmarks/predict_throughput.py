"""Throughput of `cxrtool predict`'s streaming pipeline against a bare `model.predict`.

    python benchmarks/predict_throughput.py [--arch cnn] [--size 100] [--n 512] [--image-px 256]
                                           [--batch-size 32] [--workers N] [--repeats 3]

Writes N phantom PNGs (``--image-px`` square) to a temporary folder, builds an untrained
model (speed does not depend on the weights), then in one process:

* baseline: ``model.predict(x, batch_size=B)`` on the images already decoded and resized
  (``(N, S, S, 1)`` float32 in memory): inference only;
* pipeline: :func:`cxrtool.predict.predict_stream` over the files: decoding and resizing in
  threads, overlapped with inference, rows in input order.

Both are warmed up (XLA compiled) first; the best of ``--repeats`` runs is reported, with the
ratio pipeline / baseline (target >= 0.8). Prints one JSON line on stdout.
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
    ap.add_argument("--size", type=int, default=None, help="model input size [default: the architecture's]")
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--image-px", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from PIL import Image

    from cxrtool.artifact import LoadedModel, ModelInfo
    from cxrtool.backend import import_keras
    from cxrtool.inputs import load_resized
    from cxrtool.models import build_model, get_spec
    from cxrtool.predict import predict_stream
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
        loaded = LoadedModel(model, ModelInfo(args.arch, image_size=size, gradcam_layer=spec.gradcam_layer), None)

        t0 = time.perf_counter()
        x = np.stack([load_resized(p, size) for p in paths]).astype(np.float32)[..., None]
        decode_serial = args.n / (time.perf_counter() - t0)

        def baseline() -> float:
            t = time.perf_counter()
            model.predict(x, batch_size=args.batch_size, verbose=0)
            return args.n / (time.perf_counter() - t)

        def pipeline() -> float:
            t = time.perf_counter()
            n = sum(len(rows) for rows in predict_stream(loaded, paths, batch_size=args.batch_size, workers=args.workers))
            assert n == args.n
            return args.n / (time.perf_counter() - t)

        baseline()  # compile (the full batches and the remainder)
        list(predict_stream(loaded, paths[: args.batch_size * 2 + 1], batch_size=args.batch_size, workers=args.workers))
        runs_b, runs_p = [], []
        for _ in range(args.repeats):  # interleaved, so drifts in machine load hit both
            runs_b.append(baseline())
            runs_p.append(pipeline())
    result = {
        "arch": args.arch,
        "input_px": size,
        "file_px": args.image_px,
        "images": args.n,
        "batch_size": args.batch_size,
        "workers": default_workers(cap=8, requested=args.workers),  # what predict_stream used
        "cpus": available_cpus(),
        "device": str(jax.devices()[0]),
        "decode_resize_serial_img_s": round(decode_serial, 1),
        "baseline_model_predict_img_s": round(max(runs_b), 1),
        "pipeline_predict_stream_img_s": round(max(runs_p), 1),
        "ratio": round(max(runs_p) / max(runs_b), 3),
        "runs_baseline": [round(r, 1) for r in runs_b],
        "runs_pipeline": [round(r, 1) for r in runs_p],
        "keras": keras.__version__,
        "jax": jax.__version__,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
