"""Decoded splits on disk: one memory-mapped uint8 ``.npy`` per split and image size.

Why: a split held in RAM grows with the dataset (a million 224 px images are 50 GB). The
cache ``DATASET/.cache/<split>-<S>px-<fp>-v2.npy`` (``<fp>``: the manifest fingerprint) holds
the resized images ``(N, S, S)`` uint8 in NumPy's own format and is opened with
``mmap_mode="r"``: batches are read from it on demand and the operating system keeps what fits
in its page cache, so a process' own memory does not depend on N.

Building it never holds the whole split either: the images are decoded in parallel, a chunk
of about :data:`CHUNK_BYTES` at a time, and each chunk is appended to a temporary file that is
renamed onto the final name only when it is complete (:func:`cxrtool.atomic.atomic_path`).
A build that is interrupted, even by SIGKILL, leaves at most a hidden temporary file that is
never opened as a cache (and is deleted by a later build once it is an hour old). The file is
written with plain ``write`` calls, not through a writable memory map, so a full disk is an
``OSError`` (training goes on in memory) instead of a SIGBUS.

``--no-cache`` (or a dataset folder that cannot be written) decodes into memory as before:
then memory grows with the split again.
"""

from __future__ import annotations

import mmap
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .errors import DatasetError, ImageLoadError, WriteError
from .manifest import Entry, Manifest
from .progress import ProgressFn, report
from .workers import default_workers

CACHE_DIR = ".cache"
#: 1: one .npz loaded into memory; 2: one .npy opened as a memory map.
CACHE_VERSION = 2
#: Decoded images held at once while a cache is built (per chunk).
CHUNK_BYTES = 32 << 20
#: A hidden temporary cache file older than this is a leftover of a killed build.
STALE_TEMP_S = 3600


def cache_path(manifest: Manifest, split: str, size: int) -> Path:
    """Where the cache of ``split`` at ``size`` px lives for this manifest (it may not exist)."""
    return manifest.root / CACHE_DIR / f"{split}-{size}px-{manifest.fingerprint[:16]}-v{CACHE_VERSION}.npy"


def open_cache(target: Path, n: int, size: int) -> np.memmap | None:
    """The published cache as a read-only memory map, or None when it is absent, unreadable
    or not ``(n, size, size)`` uint8 (then it is rebuilt, never trusted)."""
    try:
        x = np.load(target, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return None
    if isinstance(x, np.memmap) and x.dtype == np.uint8 and x.shape == (n, size, size):
        return x
    return None


def chunk_images(size: int) -> int:
    """Images per decoding chunk: about :data:`CHUNK_BYTES`, at least 64."""
    return max(64, CHUNK_BYTES // (size * size))


#: ``load(path, size)`` -> (size, size) uint8: how one image file becomes model input
#: (:func:`cxrtool.inputs.load_resized`; passed in so this module does not import ``inputs``).
Loader = Callable[[str, int], np.ndarray]


def decode_chunks(entries: Sequence[Entry], size: int, split: str, load: Loader, *, workers: int | None = None,
                  progress: ProgressFn | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, images)`` for consecutive chunks of ``entries``, decoded by ``load`` in parallel.

    The chunk array is reused: use (copy or write) it before asking for the next one.
    ``progress`` gets a ``load`` event (``split``, done, total) per image.
    """
    n = len(entries)
    per = min(chunk_images(size), max(n, 1))
    buf = np.empty((per, size, size), np.uint8)

    def one(i: int, start: int) -> None:
        try:
            buf[i - start] = load(entries[i].path, size)
        except ImageLoadError as exc:
            raise DatasetError(f"{split} split: {exc} (rebuild the dataset or fix the file)") from None

    done = 0
    # decoding is I/O and Pillow (which releases the GIL): threads, capped at 8
    with ThreadPoolExecutor(max_workers=default_workers(cap=8, requested=workers)) as pool:
        for start in range(0, n, per):
            stop = min(n, start + per)
            futures = [pool.submit(one, i, start) for i in range(start, stop)]
            try:
                for f in futures:
                    f.result()
                    done += 1
                    report(progress, "load", done, n, split=split)
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
            yield start, buf[: stop - start]


def decode_in_memory(entries: Sequence[Entry], size: int, split: str, load: Loader, *, workers: int | None = None,
                     progress: ProgressFn | None = None) -> np.ndarray:
    """The split as one in-memory array (``--no-cache``, or no writable cache folder)."""
    x = np.empty((len(entries), size, size), np.uint8)
    for start, chunk in decode_chunks(entries, size, split, load, workers=workers, progress=progress):
        x[start : start + len(chunk)] = chunk
    return x


def build_cache(target: Path, entries: Sequence[Entry], size: int, split: str, load: Loader, *, workers: int | None = None,
                progress: ProgressFn | None = None) -> np.memmap:
    """Decode ``entries`` chunk by chunk into a temporary ``.npy``, publish it as ``target``
    atomically, delete older caches of the same split and size, and open it.

    Raises :class:`WriteError` (or ``OSError``) when the cache folder cannot take it, and
    :class:`DatasetError` for an unreadable image; nothing is left under ``target`` then.
    """
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
              "shape": (len(entries), size, size)}
    with atomic_path(target, suffix=".npy") as tmp:
        with open(tmp, "wb") as fh:
            np.lib.format.write_array_header_1_0(fh, header)
            for _, chunk in decode_chunks(entries, size, split, load, workers=workers, progress=progress):
                fh.write(memoryview(np.ascontiguousarray(chunk)))
    remove_stale(target)
    x = open_cache(target, len(entries), size)
    if x is None:  # replaced under us by something else: never trust it
        raise DatasetError(f"{target}: the cache just written does not read back; delete {target.parent} and retry")
    return x


def remove_stale(target: Path) -> None:
    """Delete other caches of ``target``'s split and size (older manifests, older versions such
    as v1's ``.npz``) and temporary files that killed builds left more than an hour ago."""
    prefix = target.name.split("px-")[0] + "px-"
    now = time.time()
    for old in target.parent.glob(f"{prefix}*"):
        if old != target:
            old.unlink(missing_ok=True)
    for tmp in target.parent.glob(f".{prefix}*.tmp*"):
        try:
            if now - tmp.stat().st_mtime > STALE_TEMP_S:
                tmp.unlink(missing_ok=True)
        except OSError:
            pass


def cached_split(manifest: Manifest, entries: Sequence[Entry], split: str, size: int, load: Loader, *,
                 cache: bool = True,
                 workers: int | None = None, progress: ProgressFn | None = None) -> np.ndarray:
    """The images of ``entries`` (the rows of ``split``) at ``size`` px: the memory-mapped cache
    when it exists, else built now; in memory with ``cache=False``, for an empty split, or
    when the cache folder cannot be written (a read-only dataset still trains)."""
    if not cache or not entries:
        return decode_in_memory(entries, size, split, load, workers=workers, progress=progress)
    target = cache_path(manifest, split, size)
    x = open_cache(target, len(entries), size)
    if x is not None:
        return x
    try:
        return build_cache(target, entries, size, split, load, workers=workers, progress=progress)
    except (OSError, WriteError):
        return decode_in_memory(entries, size, split, load, workers=workers, progress=progress)


def read_rows(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``x[rows]`` (``rows`` sorted); from a memory-mapped cache file by reading the file, not the map.

    Pages read through a memory map count in the process' RSS until the kernel reclaims them,
    and how many pages one read maps is the kernel's choice (fault-around, large folios):
    measured here, an epoch over a 1.2 GB cache kept 390 MB mapped although the pages were
    released every 256 MB counted at 64 kB per image. Read with ``os.preadv`` the data goes
    through the page cache only, and the process holds the batch it asked for, whatever the
    file's size. Anything but a whole memory-mapped ``.npy`` (an in-memory array, a view, a
    platform without ``preadv``) is indexed as usual.
    """
    if not (isinstance(x, np.memmap) and isinstance(x.base, mmap.mmap) and x.flags.c_contiguous
            and x.filename and hasattr(os, "preadv")):
        return x[rows]
    out = np.empty((len(rows),) + x.shape[1:], x.dtype)
    row_bytes = x.itemsize * int(np.prod(x.shape[1:], dtype=np.int64))
    fd = os.open(x.filename, os.O_RDONLY)
    try:
        for k, r in enumerate(rows):
            if os.preadv(fd, [out[k]], x.offset + int(r) * row_bytes) != row_bytes:
                raise DatasetError(f"{x.filename}: image cache shorter than its header says (row {int(r)})")
    finally:
        os.close(fd)
    return out


class ReadAhead:
    """Reads batch ``i + 1 .. i + depth`` on one background thread while batch ``i`` trains.

    ``read(i)`` must depend only on ``i`` and the current epoch: :meth:`reset` (at every epoch
    end) discards whatever was read ahead, so the batches are exactly those of a plain loop.
    """

    def __init__(self, read: Callable[[int], tuple], n: int, *, depth: int = 2):
        self._read, self._n, self._depth = read, n, depth
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cxrtool-read-ahead")
        self._pending: dict[int, Future] = {}

    def get(self, i: int) -> tuple:
        future = self._pending.pop(i, None)
        for j in range(i + 1, min(i + 1 + self._depth, self._n)):
            if j not in self._pending:
                self._pending[j] = self._pool.submit(self._read, j)
        for j in [j for j in self._pending if j <= i]:  # out-of-order access: drop what it skipped
            self._pending.pop(j).cancel()
        return future.result() if future is not None else self._read(i)

    def reset(self) -> None:
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()


__all__ = [
    "CACHE_DIR",
    "CACHE_VERSION",
    "Loader",
    "ReadAhead",
    "build_cache",
    "cache_path",
    "cached_split",
    "chunk_images",
    "decode_chunks",
    "decode_in_memory",
    "open_cache",
    "read_rows",
    "remove_stale",
]
