"""Training throughput: `cxrtool train`'s full pipeline vs a bare `model.fit` on in-memory arrays.

For each model, in one process and on the same device:

* pipeline: :func:`cxrtool.train.train` on a phantom dataset written in the `build-dataset`
  layout (manifest, PNG files): cached uint8 arrays, the PyDataset feeder, class weights,
  in-graph augmentation, the training callback (progress, CSV, checkpoints);
* bare: the same architecture built by :func:`cxrtool.models.build_model` without the
  augmentation layer, ``model.fit(x, y)`` on random float32 arrays already in memory.

Both use the same image size, batch, optimizer and jit. Images/s are timed over the train
steps of one epoch, from the end of step ``--warmup`` (after compilation) to the end of the
last step, blocking on the device at both ends only (validation and checkpointing are not in
the window). The JSON also has the pipeline's whole-epoch rate, which includes compilation and
validation (only meaningful with many steps). On CPU a second ratio uses this process' CPU time
instead of wall time, which other jobs on a shared machine distort much less.

    python benchmarks/train_throughput.py                       # paper settings (100 px, batch 32)
    python benchmarks/train_throughput.py --steps 12 --models mobilenetv2 resnet50 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


class StepTimer:
    """A Keras callback timing train steps [warmup, last] of the first epoch it sees."""

    def __new__(cls, keras, warmup: int, batch: int):
        class _Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.t0 = self.t1 = None
                self.first = self.last = None
                self.done = False

            def on_train_batch_end(self, step, logs=None):
                if self.done:
                    return
                if step + 1 == warmup:
                    _block(logs)
                    self.t0, self.first = time.perf_counter(), step
                    self.c0 = time.process_time()
                elif self.t0 is not None and step + 1 == self.params["steps"]:
                    _block(logs)  # the last step of the epoch has finished on the device
                    self.t1, self.last = time.perf_counter(), step
                    self.c1 = time.process_time()
                    self.done = True

            @property
            def images_per_s(self):
                if self.t1 is None:
                    return float("nan")
                return (self.last - self.first) * batch / (self.t1 - self.t0)

            @property
            def images_per_cpu_s(self):
                """Images per second of this process' CPU time: robust to other load on a shared
                machine (only meaningful on CPU, where the device work is this process' work)."""
                if self.t1 is None:
                    return float("nan")
                return (self.last - self.first) * batch / (self.c1 - self.c0)

        return _Timer()


def _block(logs):
    import jax

    jax.block_until_ready([v for v in (logs or {}).values() if hasattr(v, "block_until_ready")])


def make_benchmark_dataset(root: Path, train_images: int, val_images: int, size: int) -> Path:
    from helpers_dataset import make_dataset

    per_class = {"train": -(-train_images // 3), "val": max(1, val_images // 3)}
    return make_dataset(root, per_class, size=size)


def run_pipeline(keras, dataset: Path, name: str, size: int, batch: int, steps: int, warmup: int, models: Path):
    from cxrtool.train import TrainOptions, train

    timer = StepTimer(keras, warmup, batch)
    t = time.perf_counter()
    result = train(dataset, name, options=TrainOptions(
        epochs=1, image_size=size, batch_size=batch, weights="none", seed=0, steps_per_epoch=steps,
    ), models_dir=models, callbacks=[timer])
    wall = time.perf_counter() - t
    epoch = result.history[0]
    return {"images_per_s": timer.images_per_s, "images_per_cpu_s": timer.images_per_cpu_s,
            "epoch_seconds": epoch["seconds"], "total_seconds": wall}


def run_bare(keras, name: str, size: int, batch: int, steps: int, warmup: int):
    from cxrtool.models import build_model

    keras.utils.set_random_seed(0)
    model = build_model(name, image_size=size, weights="none", augment=None, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=True)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (steps * batch, size, size, 1)).astype("float32")
    y = rng.integers(0, 3, steps * batch).astype("int32")
    timer = StepTimer(keras, warmup, batch)
    t = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, callbacks=[timer], verbose=0, shuffle=True)
    return {"images_per_s": timer.images_per_s, "images_per_cpu_s": timer.images_per_cpu_s,
            "total_seconds": time.perf_counter() - t}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["mobilenetv2", "resnet50"])
    ap.add_argument("--image-size", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=None, help="train steps per measurement [default: 60 on GPU, 8 on CPU]")
    ap.add_argument("--warmup", type=int, default=2, help="steps before the timed window (compilation)")
    ap.add_argument("--repeats", type=int, default=1, help="alternate pipeline/bare this many times per model")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)

    from cxrtool.backend import import_keras, runtime_info

    keras = import_keras()
    import jax

    on_cpu = jax.default_backend() == "cpu"
    steps = args.steps or (8 if on_cpu else 60)
    facts = runtime_info()
    device = facts["devices"][0]["kind"] if facts["devices"] else "?"
    print(f"# device {device} x{len(facts['devices'])}, keras {facts['keras']}, jax {facts['jax']}, "
          f"cpu cores {os.cpu_count()}, load {os.getloadavg()[0]:.1f}", file=sys.stderr)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        dataset = make_benchmark_dataset(Path(tmp) / "data", steps * args.batch_size, args.batch_size,
                                         args.image_size)
        for name in args.models:
            for rep in range(args.repeats):
                # alternate the order so a changing background load does not favour one side
                def pipeline():
                    return run_pipeline(keras, dataset, name, args.image_size, args.batch_size, steps,
                                        args.warmup, Path(tmp) / f"models{rep}")

                def bare_fit():
                    return run_bare(keras, name, args.image_size, args.batch_size, steps, args.warmup)

                if rep % 2 == 0:
                    pipe, bare = pipeline(), bare_fit()
                else:
                    bare, pipe = bare_fit(), pipeline()
                row = {
                    "model": name, "image_size": args.image_size, "batch": args.batch_size, "steps": steps,
                    "repeat": rep, "pipeline_images_per_s": round(pipe["images_per_s"], 2),
                    "bare_images_per_s": round(bare["images_per_s"], 2),
                    "ratio": round(pipe["images_per_s"] / bare["images_per_s"], 3),
                    "pipeline_images_per_cpu_s": round(pipe["images_per_cpu_s"], 3),
                    "bare_images_per_cpu_s": round(bare["images_per_cpu_s"], 3),
                    "cpu_ratio": round(pipe["images_per_cpu_s"] / bare["images_per_cpu_s"], 3),
                    "pipeline_epoch_incl_compile_and_val_images_per_s": round(steps * args.batch_size / pipe["epoch_seconds"], 2),
                    "device": device, "devices": len(facts["devices"]), "keras": facts["keras"],
                    "jax": facts["jax"], "load_avg": round(os.getloadavg()[0], 1),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    print("\n| model | input | batch | device | run | bare fit img/s | cxrtool pipeline img/s | ratio | "
          "ratio by process CPU time |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['model']} | {r['image_size']} | {r['batch']} | {r['device']} | {r['repeat'] + 1} | "
              f"{r['bare_images_per_s']} | {r['pipeline_images_per_s']} | {r['ratio']:.2f} | {r['cpu_ratio']:.2f} |")
    if args.json:
        from cxrtool.atomic import write_text

        write_text(args.json, json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
