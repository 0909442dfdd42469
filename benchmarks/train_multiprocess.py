"""Two-process data-parallel training vs one process, on the same CPU cores.

* one process: :func:`cxrtool.train.train` pinned to cores {A, B} (``taskset``): one CPU
  device, XLA's thread pool over both cores, global batch B;
* two processes: the same run with ``--num-processes 2`` on localhost (JAX's CPU collectives,
  gloo), process 0 pinned to core A, process 1 to core B: one device each, B/2 images per
  process per step, the gradients all-reduced every step.

Same dataset, model, image size, global batch, seed and steps. Images/s are timed over the
train steps of the first epoch from the end of step ``--warmup`` (after compilation) to the end
of the last step (``train_throughput.StepTimer``; validation, calibration and saving are
outside the window); the two-process rate is process 0's window (the processes step together).
Each repeat runs both sides back to back, alternating which goes first, so a changing
background load does not favour one side. A second ratio uses CPU time (the two processes'
summed): on a shared machine other jobs distort it much less than wall time.

    python benchmarks/train_multiprocess.py                        # cnn, 64 px, batch 32, 40 steps, 3 repeats
    python benchmarks/train_multiprocess.py --repeats 1 --steps 20 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def worker(args) -> int:
    """One training process (run by the main process under ``taskset``); writes its timings as JSON."""
    from cxrtool.backend import import_keras
    from cxrtool.train import TrainOptions, train
    from train_throughput import StepTimer

    keras = import_keras()
    timer = StepTimer(keras, args.warmup, args.batch_size)
    multi = args.num_processes > 1
    options = TrainOptions(
        epochs=1, image_size=args.image_size, batch_size=args.batch_size, weights="none", seed=0,
        steps_per_epoch=args.steps, calibrate=False, fresh=True,
        coordinator=f"localhost:{args.port}" if multi else None,
        num_processes=args.num_processes if multi else None, process_id=args.process_id if multi else None,
    )
    train(args.dataset, "cnn", options=options, out=args.model_out, callbacks=[timer])
    result = {"images_per_s": timer.images_per_s, "cpu_s": timer.c1 - timer.c0, "wall_s": timer.t1 - timer.t0,
              "images": (timer.last - timer.first) * args.batch_size}
    Path(args.result).write_text(json.dumps(result))
    return 0


def run_side(processes: int, cores: list[int], dataset: Path, tmp: Path, tag: str, args) -> dict:
    """Start PROCESSES workers (process i pinned to its share of CORES); return their timings."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device per process
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(HERE.parent))
    procs, results = [], []
    share = len(cores) // processes
    for i in range(processes):
        mine = cores[i * share:(i + 1) * share]
        result = tmp / f"{tag}-{i}.json"
        results.append(result)
        cmd = ["taskset", "-c", ",".join(map(str, mine)), sys.executable, __file__, "--worker",
               "--dataset", str(dataset), "--model-out", str(tmp / f"{tag}-{i}.keras"), "--result", str(result),
               "--num-processes", str(processes), "--process-id", str(i), "--port", str(port),
               "--image-size", str(args.image_size), "--batch-size", str(args.batch_size),
               "--steps", str(args.steps), "--warmup", str(args.warmup)]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=1800)
        if p.returncode:
            raise SystemExit(f"{tag}: a worker failed ({p.returncode}): {err[-2000:]}")
    timings = [json.loads(r.read_text()) for r in results]
    return {"images_per_s": timings[0]["images_per_s"],
            "images_per_cpu_s": timings[0]["images"] * 1.0 / sum(t["cpu_s"] for t in timings)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32, help="global batch (each of the two processes: half)")
    ap.add_argument("--steps", type=int, default=40, help="train steps per run")
    ap.add_argument("--warmup", type=int, default=5, help="steps before the timed window (compilation)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    # internal: one worker process
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for name in ("--dataset", "--model-out", "--result"):
        ap.add_argument(name, type=Path, help=argparse.SUPPRESS)
    for name in ("--num-processes", "--process-id", "--port"):
        ap.add_argument(name, type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)

    cores = sorted(os.sched_getaffinity(0))[:2]
    if len(cores) < 2:
        raise SystemExit("needs two CPU cores")
    load_start = os.getloadavg()
    print(f"# cores {cores}, load {load_start[0]:.1f} {load_start[1]:.1f} {load_start[2]:.1f}", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        from train_throughput import make_benchmark_dataset

        dataset = make_benchmark_dataset(tmp / "data", args.steps * args.batch_size, args.batch_size, args.image_size)
        for rep in range(args.repeats):
            sides = [(1, "one"), (2, "two")] if rep % 2 == 0 else [(2, "two"), (1, "one")]
            got = {tag: run_side(n, cores, dataset, tmp, f"{tag}{rep}", args) for n, tag in sides}
            row = {"repeat": rep, "first": sides[0][1],
                   "one_process_images_per_s": round(got["one"]["images_per_s"], 2),
                   "two_processes_images_per_s": round(got["two"]["images_per_s"], 2),
                   "ratio": round(got["two"]["images_per_s"] / got["one"]["images_per_s"], 3),
                   "one_process_images_per_cpu_s": round(got["one"]["images_per_cpu_s"], 3),
                   "two_processes_images_per_cpu_s": round(got["two"]["images_per_cpu_s"], 3),
                   "cpu_ratio": round(got["two"]["images_per_cpu_s"] / got["one"]["images_per_cpu_s"], 3),
                   "load_avg": round(os.getloadavg()[0], 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    load_end = os.getloadavg()
    summary = {"median_ratio": statistics.median(r["ratio"] for r in rows),
               "median_cpu_ratio": statistics.median(r["cpu_ratio"] for r in rows),
               "load_start": [round(x, 1) for x in load_start], "load_end": [round(x, 1) for x in load_end],
               "image_size": args.image_size, "batch": args.batch_size, "steps": args.steps, "warmup": args.warmup}
    print(json.dumps(summary))
    print("\n| repeat | first | 1 process, 2 cores img/s | 2 processes, 1 core each img/s | ratio | ratio by CPU time |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['repeat'] + 1} | {r['first']} | {r['one_process_images_per_s']} | "
              f"{r['two_processes_images_per_s']} | {r['ratio']:.2f} | {r['cpu_ratio']:.2f} |")
    if args.json:
        from cxrtool.atomic import write_text

        write_text(args.json, json.dumps({"rows": rows, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
