"""Per-image analysis for build-dataset: one decode per file gives the checksums, the
perceptual hash and the exposure metrics. Runs in worker processes (no Keras, no JAX): this
machine's pool, or the workers of a Dask cluster (:mod:`cxrtool.build.executors`)."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ImageLoadError
from ..imageio import read_image
from ..interrupts import quiet_worker
from ..inputs import resize_image
from ..progress import ProgressFn, report
from ..workers import default_workers
from .hashing import get_hasher
from .quality import WORK_SIZE, measure
from .types import Analysis

#: JPEGs are decoded at the smallest power-of-two scale keeping both sides >= this: the hash
#: needs 4 x hash_size px (64 for the default 16) and exposure histograms need no more.
DRAFT_SIZE = 64
#: Side of the thumbnail kept for the shortcut audit: the pixels a 32 px model would see
#: (the one resize, squashed), 1 KiB per image.
THUMB = 32


def analyse_file(path: Path, hash_name: str = "phash", hash_size: int = 8) -> Analysis:
    """Decode once (JPEG at reduced scale via draft mode) and measure everything."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return Analysis(error=f"{path}: cannot read ({exc.strerror})", error_kind="unreadable")
    try:
        img = read_image(path, draft=DRAFT_SIZE, data=data)
    except ImageLoadError as exc:
        return Analysis(sha256=hashlib.sha256(data).hexdigest(), error=str(exc), error_kind=exc.kind)
    pixels = img.pixels
    pixel_sha = hashlib.sha256(np.asarray(pixels.shape, np.int64).tobytes() + pixels.tobytes()).hexdigest()
    if max(pixels.shape) > WORK_SIZE:
        small = Image.fromarray(pixels, mode="L")
        small.thumbnail((WORK_SIZE, WORK_SIZE), Image.Resampling.BOX)
        pixels = np.asarray(small)
    return Analysis(
        sha256=hashlib.sha256(data).hexdigest(),
        pixel_sha=pixel_sha,
        hash=get_hasher(hash_name, hash_size)(pixels),
        width=img.width,
        height=img.height,
        quality=measure(pixels),
        format=img.format,
        mode=img.mode,
        bits=img.bits,
        file_size=len(data),
        thumb=resize_image(pixels, THUMB).tobytes(),
    )


def _analyse_task(args: tuple[str, str, int]) -> Analysis:
    return analyse_file(Path(args[0]), args[1], args[2])


def analyse_batch(paths: list[str], hash_name: str, hash_size: int) -> list[Analysis]:
    """One Dask task: a batch of files read by the worker itself, records in the same order."""
    return [analyse_file(Path(p), hash_name, hash_size) for p in paths]


def _pool_context():
    """Fork is the cheapest start, but forking a process that has loaded JAX (multithreaded)
    can deadlock the child: then start workers from a clean server process instead."""
    methods = mp.get_all_start_methods()
    if "fork" in methods and "jax" not in sys.modules:
        return mp.get_context("fork")
    return mp.get_context("forkserver" if "forkserver" in methods else "spawn")


def analyse_files(
    paths: list[Path], hash_name: str, hash_size: int, workers: int | None, progress: ProgressFn | None = None,
) -> list[Analysis]:
    """Analyse many files in parallel on this machine, results in input order; one ``analyse``
    progress event per file. A Dask cluster instead: :func:`cxrtool.build.executors.analyse_with`."""
    tasks = [(str(p), hash_name, hash_size) for p in paths]
    workers = default_workers(requested=workers)
    total = len(tasks)
    results: list[Analysis] = []
    if workers <= 1 or total < 64:
        for task in tasks:
            results.append(_analyse_task(task))
            report(progress, "analyse", len(results), total)
        return results
    with _pool_context().Pool(workers, initializer=quiet_worker) as pool:  # Ctrl-C: no traceback per worker
        for result in pool.imap(_analyse_task, tasks, chunksize=32):
            results.append(result)
            report(progress, "analyse", len(results), total)
    return results
