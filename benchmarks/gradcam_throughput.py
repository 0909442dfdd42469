"""End-to-end speed of `cxrtool gradcam` against `cxrtool predict` on the same images and model.

    python benchmarks/gradcam_throughput.py [--sources ../shared/data/sources] [--n 256] [--arch cnn]
                                            [--repeats 2] [--before-src /tmp/gc_orig] [--json out.json]

Copies N X-rays (224 px PNGs from ``--sources``' COVID-19 Radiography folder when present,
else phantoms drawn at 224 px) into a temporary folder, saves an untrained model (speed does
not depend on the weights), then times, as a user runs them, each command in its own process:

* ``cxrtool predict --model M DIR`` (CSV to /dev/null);
* ``cxrtool gradcam DIR --model M --out OUT`` (an overlay PNG per image plus the contact
  sheet), default options;
* with ``--before-src``: the same gradcam command on another checkout of cxrtool (its root on
  ``PYTHONPATH``), e.g. the code before the overlay work: ``git clone . /tmp/gc_orig && git -C
  /tmp/gc_orig checkout 1b59685``.

Wall time covers everything (interpreter start, model load, XLA compile, decode, writing),
so the numbers are what a user sees. Runs are interleaved, so drifts in machine load hit every
command; the best of ``--repeats`` is reported with the ratio gradcam / predict (target >= 0.5).
Each process' CPU time (user + system, all threads) is reported too: images per CPU-second are
steadier than wall time on a shared machine. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _inputs(folder: Path, sources: Path, n: int) -> str:
    """Fill ``folder`` with ``n`` 224 px PNGs; returns what they are."""
    from PIL import Image

    from cxrtool.synthetic import make_phantom

    real = sorted((sources / "COVID-19_Radiography_Dataset").rglob("*.png")) if sources.is_dir() else []
    if len(real) >= n:
        step = len(real) // n  # spread over both classes of the source
        for p in real[::step][:n]:
            shutil.copy(p, folder / p.name)
        return f"{n} PNGs from {sources / 'COVID-19_Radiography_Dataset'} (224 px, RGB)"
    labels = ("covid", "pneumonia", "normal")
    for i in range(n):
        Image.fromarray(make_phantom(labels[i % 3], i, 224)).save(folder / f"phantom{i:05d}.png")
    return f"{n} phantoms drawn at 224 px (PNG, grayscale)"


def _run(cmd: list[str], pythonpath: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child: user + system, all its threads)."""
    env = dict(os.environ, PYTHONPATH=str(pythonpath))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sources", type=Path, default=ROOT.parent / "shared" / "data" / "sources")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--arch", default="cnn")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--before-src", type=Path, default=None, help="another cxrtool checkout to time gradcam with")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    from cxrtool.artifact import ModelInfo, save_model
    from cxrtool.models import build_model, get_spec

    with tempfile.TemporaryDirectory(prefix="cxr-gradcam-bench-") as tmp:
        tmp = Path(tmp)
        images = tmp / "images"
        images.mkdir()
        what = _inputs(images, args.sources, args.n)
        spec = get_spec(args.arch)
        model_path = tmp / f"{args.arch}.keras"
        save_model(build_model(args.arch, image_size=spec.default_image_size, weights="none", seed=0), model_path,
                   ModelInfo(args.arch, image_size=spec.default_image_size, gradcam_layer=spec.gradcam_layer))

        cli = [sys.executable, "-m", "cxrtool"]
        commands = {
            "predict": ([*cli, "predict", "--model", str(model_path), str(images)], ROOT),
            "gradcam": ([*cli, "gradcam", str(images), "--model", str(model_path), "--out", str(tmp / "out")], ROOT),
        }
        if args.before_src:
            commands["gradcam_before"] = (
                [*cli, "gradcam", str(images), "--model", str(model_path), "--out", str(tmp / "out_before")],
                args.before_src.resolve(),
            )
        runs: dict[str, list[float]] = {name: [] for name in commands}
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, (cmd, pythonpath) in commands.items():
                wall, cpu_s = _run(cmd, pythonpath)
                runs[name].append(args.n / wall)
                cpu[name].append(args.n / cpu_s)
        written = len(list((tmp / "out").glob("*_gradcam.png")))
        assert written == args.n, f"gradcam wrote {written} overlays for {args.n} images"

    best = {name: max(r) for name, r in runs.items()}
    result = {
        "images": what,
        "model": f"{args.arch} ({spec.default_image_size} px input, untrained)",
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        **{f"{name}_img_s": round(v, 2) for name, v in best.items()},
        "ratio_gradcam_to_predict": round(best["gradcam"] / best["predict"], 3),
        **({"speedup_vs_before": round(best["gradcam"] / best["gradcam_before"], 2)} if args.before_src else {}),
        "runs_img_s": {name: [round(v, 2) for v in r] for name, r in runs.items()},
        # images per CPU-second of the whole process: less sensitive to other jobs on the machine
        "img_per_cpu_s": {name: round(max(r), 2) for name, r in cpu.items()},
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
