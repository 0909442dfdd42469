"""Streaming batch prediction: paths in, one row per image out, as batches finish.

A feeder thread pulls paths from the (possibly endless, possibly slow) input iterator and
hands each to a thread pool that decodes and resizes it (Pillow releases the GIL while
decoding); a bounded queue of futures keeps at most ``prefetch`` batches decoded ahead, so
decoding overlaps inference and memory stays bounded. The main thread collects a batch in
input order, runs the model on it (:func:`cxrtool.inference.predict_batches`) and yields the
rows, so the first rows appear long before the last path has been read. A partial batch is
run when no new path has arrived for ``linger`` seconds (a slow ``find`` on stdin still gives
prompt output).

An unreadable file becomes a row with ``error`` set; the others go on. Every row also says
whether the input looks like the model's training data (``ood_score``, ``flag``; see
:mod:`cxrtool.ood`): the decoding threads make the thumbnails the image checks read, the checks'
numbers are computed for the whole batch at once while the model's forward pass runs on
JAX's threads (:meth:`cxrtool.ood.Scorer.dispatch`), and the feature distance comes from the
same forward pass as the probabilities.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import CxrError

if TYPE_CHECKING:
    from .imagecheck import Views

__all__ = ["Prediction", "decode_and_check", "decode_for_model", "iter_input_paths", "predict_paths", "predict_stream"]


@dataclass
class Prediction:
    """One input's outcome: the predicted label and probabilities, or an error."""

    path: str
    label: str | None = None
    probability: float | None = None
    probabilities: dict[str, float] | None = None
    error: str | None = None
    #: distance to the training data / threshold (> 1: out of distribution); None: unavailable
    ood_score: float | None = None
    #: "", "not-a-chest-xray" or "out-of-distribution" (cxrtool.ood)
    flag: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self, classes: Sequence[str]) -> dict:
        """Flat record: path, label, probability, one key per class, error (None when fine),
        ood_score (None when unavailable), flag ("" when not flagged)."""
        probs = self.probabilities or {}
        row = {"path": self.path, "label": self.label, "probability": self.probability}
        for c in classes:
            row[c] = probs.get(c)
        row["error"] = self.error
        row["ood_score"] = self.ood_score
        row["flag"] = self.flag
        return row


def iter_input_paths(items: Iterable[str | Path], stdin=None) -> Iterator[str]:
    """Expand the command line: files as given, folders recursively (images only, sorted),
    and ``-`` as one path per line from ``stdin`` (read lazily, blank lines skipped)."""
    from .imageio import iter_images

    def expanded() -> Iterator[str | Path]:
        for item in items:
            if str(item) == "-":
                import sys

                stream = stdin if stdin is not None else sys.stdin
                for line in stream:
                    line = line.rstrip("\r\n")
                    if line.strip():
                        yield line
            else:
                yield item

    for item in expanded():
        p = Path(item)
        if p.is_dir():
            for found in iter_images([p]):
                yield str(found)
        else:
            yield str(item)


def decode_for_model(path: str, size: int) -> np.ndarray:
    """Decode one file and resize it the way training did: (size, size) uint8."""
    from .inputs import resize_image
    from .imageio import read_image

    return resize_image(read_image(path).pixels, size)


def decode_and_check(path: str, size: int) -> tuple[np.ndarray, Views]:
    """:func:`decode_for_model` plus what the image checks and the picture score read
    (:class:`cxrtool.imagecheck.Views` of the model-size image, with the file's size and
    colour: :func:`cxrtool.imagecheck.file_views`), made here in a decoding thread; the numbers
    themselves are computed for a whole batch at once (:func:`cxrtool.imagecheck.batch_checks`).
    ``(pixels, views)``."""
    from .imagecheck import file_views
    from .inputs import resize_image
    from .imageio import read_image

    img = read_image(path)
    pixels = resize_image(img.pixels, size)
    return pixels, file_views(img.pixels, pixels, width=img.width, height=img.height, colour=img.colour)


_END = object()


def _feeder(paths: Iterable[str], pool: ThreadPoolExecutor, work: queue.Queue, stop: threading.Event, size: int) -> None:
    def put(item) -> bool:
        while not stop.is_set():
            try:
                work.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    try:
        for path in paths:
            if stop.is_set():
                return
            if not put((path, pool.submit(decode_and_check, path, size))):
                return
        put(_END)
    except BaseException as exc:  # e.g. a folder that cannot be listed: surface it in the consumer
        put(exc)


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, CxrError):
        return getattr(exc, "reason", None) or str(exc)
    return f"{type(exc).__name__}: {exc}"


def predict_stream(
    loaded,
    paths: Iterable[str | Path],
    *,
    batch_size: int = 32,
    workers: int | None = None,
    prefetch: int = 2,
    linger: float = 0.5,
) -> Iterator[list[Prediction]]:
    """Yield one list of :class:`Prediction` per batch, in input order, as batches finish.

    ``paths`` is consumed lazily (a generator over stdin is fine). ``workers``: decoding
    threads (default: the CPU count, at most 8). ``prefetch``: batches decoded ahead.
    """
    from .imagecheck import THUMB, batch_checks
    from .ood import Scorer, flag_for
    from .workers import default_workers

    if batch_size < 1:
        raise CxrError(f"--batch-size {batch_size}: must be at least 1")
    classes = list(loaded.info.classes)
    size = int(loaded.info.image_size)
    workers = default_workers(cap=8, requested=workers)
    scorer = Scorer(loaded)
    work: queue.Queue = queue.Queue(maxsize=batch_size * (prefetch + 1))
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cxrtool-decode")
    feeder = threading.Thread(
        target=_feeder, args=((str(p) for p in paths), pool, work, stop, size), daemon=True, name="cxrtool-feeder"
    )
    feeder.start()
    try:
        done = False
        while not done:
            batch: list[tuple[str, Future]] = []
            while len(batch) < batch_size:
                try:
                    item = work.get(timeout=linger) if batch else work.get()
                except queue.Empty:  # the input is slow: run what we have
                    break
                if item is _END:
                    done = True
                    break
                if isinstance(item, BaseException):
                    raise item
                batch.append(item)
            if not batch:
                continue
            rows: list[Prediction] = []
            pixels, seen, where = [], [], []
            for path, fut in batch:
                try:
                    px, image_views = fut.result()
                    pixels.append(px)
                    seen.append(image_views)
                    where.append(len(rows))
                    rows.append(Prediction(path))
                except Exception as exc:  # one bad file never stops the run
                    rows.append(Prediction(path, error=_error_text(exc)))
            if pixels:
                n = len(pixels)
                # pad to a power of two (<= batch_size): a handful of input shapes, so XLA
                # compiles a few times at most instead of once per odd batch size
                bucket = min(batch_size, 1 << (n - 1).bit_length())
                x = np.stack(pixels + [pixels[-1]] * (bucket - n)).astype(np.float32)[..., None]
                pending = scorer.dispatch(x)  # the model runs while the checks judge the pictures
                pictures = None
                if all(v is not None for v in seen):  # (a replaced decoder may not give them)
                    image_flags, pictures = batch_checks(seen)
                    for k, image_flag in zip(where, image_flags):
                        rows[k].flag = image_flag or ""
                    if size < THUMB:  # the checks looked at the full image, the picture score reads the model input
                        pictures = None
                if pictures is not None:
                    pictures = np.concatenate([pictures, np.repeat(pictures[-1:], bucket - n, axis=0)])
                probs, scores = scorer.finish(pending, x, pictures=pictures)
                probs = probs[:n]
                for j, (k, p) in enumerate(zip(where, probs)):
                    top = int(np.argmax(p))
                    rows[k].label = classes[top]
                    rows[k].probability = float(p[top])
                    rows[k].probabilities = {c: float(v) for c, v in zip(classes, p)}
                    rows[k].ood_score = None if scores is None else float(scores[j])
                    rows[k].flag = flag_for(rows[k].ood_score, rows[k].flag)
            yield rows
    finally:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)


def predict_paths(loaded, paths: Iterable[str | Path], **kwargs) -> Iterator[Prediction]:
    """Rows one by one (see :func:`predict_stream`)."""
    for rows in predict_stream(loaded, paths, **kwargs):
        yield from rows
