"""Model inputs from images and datasets: the one resize, cached per-split arrays, the training feeder.

Each split of a dataset is decoded (through :func:`cxrtool.imageio.load_image`, the one
image loader) and resized **once** per image size into a uint8 array
``(N, size, size)``, cached as ``DATASET/.cache/<split>-<size>px-<fp>-v2.npy`` (``<fp>``: the
manifest fingerprint, so a changed manifest invalidates the cache) and opened as a read-only
memory map (:mod:`cxrtool.splitcache`): memory does not grow with the dataset. Batches are
read from it one ahead on a background thread and fed as uint8 (4x less host-to-device
traffic than float32); the model casts, augments (training only), resizes and scales inside
its compiled graph.

Importing this module does not import Keras; :func:`make_feeder` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .columns import Categorical
from .labels import CLASSES
from .errors import DatasetError
from .imageio import load_image
from .manifest import Manifest, read_manifest
from .progress import ProgressFn
from .splitcache import ReadAhead, cache_path, cached_split, read_rows

#: How every image becomes model input; recorded in each model's metadata.
RESIZE = {"method": "bilinear", "library": "pillow", "aspect": "squash", "dtype": "uint8"}


@dataclass
class SplitData:
    """One split at one image size: ``x`` (N, S, S) uint8, ``y`` (N,) int32 class indices,
    ``files`` and ``sources`` (N,) the manifest's file and source of each image (columns of the
    manifest, :class:`~cxrtool.columns.Strings` and :class:`~cxrtool.columns.Categorical`, when
    loaded by :func:`load_split`; any sequence of ``str`` otherwise).

    ``x`` is usually a read-only ``np.memmap`` of the split's cache: index it in batches
    (``x[i : i + b]``, ``x[sorted_indices]``); ``np.asarray(x, float)`` would read all of it."""

    name: str
    x: np.ndarray
    y: np.ndarray
    files: Sequence[str]
    classes: tuple[str, ...]
    sources: Sequence[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.y)

    def counts(self) -> dict[str, int]:
        found = np.bincount(self.y, minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, found)}

    def source_counts(self) -> dict[str, dict[str, int]]:
        """Images per source within each class: ``{class: {source: n}}``."""
        out: dict[str, dict[str, int]] = {c: {} for c in self.classes}
        n = min(len(self.y), len(self.sources))
        if n == 0:
            return out
        sources = Categorical.of(self.sources[:n] if n < len(self.sources) else self.sources)
        pairs, found = np.unique(np.stack([np.asarray(self.y[:n], np.int64), sources.codes.astype(np.int64)]),
                                 axis=1, return_counts=True)
        for (label, source), k in zip(pairs.T.tolist(), found.tolist()):
            out[self.classes[label]][sources.names[source]] = k
        return {c: dict(sorted(row.items())) for c, row in out.items()}


def resize_image(pixels: np.ndarray, size: int) -> np.ndarray:
    """Grayscale image -> (size, size) uint8, the same way for training and inference."""
    if pixels.dtype != np.uint8:
        pixels = np.clip(np.rint(np.asarray(pixels, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
    if pixels.shape == (size, size):
        return np.ascontiguousarray(pixels)
    im = Image.fromarray(pixels, mode="L").resize((size, size), Image.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


def load_resized(path: str | Path, size: int) -> np.ndarray:
    """Decode one image file and resize it for a model of input ``size``."""
    return resize_image(load_image(path), size)


def load_split(
    manifest: Manifest,
    split: str,
    size: int,
    *,
    cache: bool = True,
    workers: int | None = None,
    progress: ProgressFn | None = None,
) -> SplitData:
    """The split at ``size`` px: ``x`` is the memory-mapped cache (:mod:`cxrtool.splitcache`),
    built now if it is missing or does not match the manifest; in memory with ``cache=False``.

    ``progress`` gets a ``load`` event (``split``, done, total) per decoded image.
    """
    entries = manifest.split(split)
    classes = tuple(manifest.classes or CLASSES)
    index = {c: i for i, c in enumerate(classes)}
    labels = entries.labels  # the manifest's columns: no object per image
    y = np.asarray([index[c] for c in labels.names], dtype=np.int32)[labels.codes]
    x = cached_split(manifest, entries, split, size, load_resized, cache=cache, workers=workers, progress=progress)
    return SplitData(split, x, y, entries.files, classes, entries.sources)


@dataclass
class Dataset:
    manifest: Manifest
    size: int
    splits: dict[str, SplitData]

    def __getitem__(self, name: str) -> SplitData:
        return self.splits[name]


def load_dataset(
    dataset: str | Path,
    size: int,
    splits: Sequence[str] = ("train", "val"),
    *,
    cache: bool = True,
    require_all_classes: Sequence[str] = ("train",),
    progress: ProgressFn | None = None,
) -> Dataset:
    """Read the manifest and load ``splits``; clear :class:`DatasetError` for empty splits or
    a class missing from a split named in ``require_all_classes``. ``progress``: see :func:`load_split`."""
    manifest = read_manifest(dataset)
    out = {}
    for split in splits:
        entries = manifest.split(split)
        if not entries:
            raise DatasetError(f"{manifest.root}: the {split} split is empty (no rows with split={split} in the manifest)")
        found = entries.labels.counts()
        counts = {c: found.get(c, 0) for c in manifest.classes}
        missing = [c for c, n in counts.items() if n == 0]
        if missing and split in require_all_classes:
            raise DatasetError(
                f"{manifest.root}: class{'es' if len(missing) > 1 else ''} {', '.join(missing)} "
                f"missing from the {split} split; a classifier cannot learn a class it never sees"
            )
        out[split] = load_split(manifest, split, size, cache=cache, progress=progress)
    return Dataset(manifest, size, out)


def balanced_class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """sklearn-style "balanced" weights: n / (k * count_c); 0 for absent classes."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    weights = np.zeros(n_classes)
    present = counts > 0
    weights[present] = len(y) / (present.sum() * counts[present])
    return weights


def source_balanced_order(
    y: np.ndarray, sources: Sequence[str], rng: np.random.Generator, power: float = 0.0
) -> np.ndarray:
    """One epoch's image indices in which, within each class, sources are drawn by their size to ``power``.

    ``power=0`` (``--sampling source-balanced``): every source of a class equally often, so a
    source of two images weighs as much as one of five hundred. ``power=0.5``
    (``--sampling source-sqrt``): in proportion to the square root of a source's size, a middle
    way (a source 100 times larger is drawn 10 times as often, not 100 times or once).
    Each class keeps its size ``n_c`` (so class weights still balance the classes and the
    epoch has as many steps as a uniform one); a source's quota is ``floor(n_c * share)``, the
    remainder going one each to randomly chosen sources. A source with fewer images than its
    quota repeats them (each image ``floor`` or ``ceil`` times), a larger one is sub-sampled,
    a new subset each epoch. The order is shuffled.
    """
    y = np.asarray(y)
    sources = Categorical.of(sources).sorted_codes()  # codes in the order of the sorted source names
    picked = []
    for c in np.unique(y):
        in_class = np.flatnonzero(y == c)
        names, sizes = np.unique(sources[in_class], return_counts=True)
        weights = sizes.astype(np.float64) ** power
        quota = np.floor(len(in_class) * weights / weights.sum() + 1e-9).astype(np.int64)
        quota[rng.permutation(len(names))[: len(in_class) - int(quota.sum())]] += 1
        for name, q in zip(names, quota):
            if q == 0:  # more sources than images in the class
                continue
            pool = in_class[sources[in_class] == name]
            reps = -(-q // len(pool))  # ceil: enough whole permutations to cover the quota
            picked.append(np.concatenate([rng.permutation(pool) for _ in range(reps)])[:q])
    order = np.concatenate(picked) if picked else np.zeros(0, np.int64)
    return order[rng.permutation(len(order))]


def make_feeder(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    *,
    seed: int = 0,
    class_weights: np.ndarray | None = None,
    shuffle: bool = True,
    epoch: int = 0,
    shard: tuple[int, int] = (0, 1),
    sources: Sequence[str] | None = None,
    source_power: float = 0.0,
):
    """A ``keras.utils.PyDataset`` of fixed-size uint8 batches ``(x[..., None], y, w)``.

    Every batch has exactly ``batch_size`` images (the remainder of a shuffled epoch is
    dropped, a different one each epoch) so the compiled train step never recompiles.
    ``shard=(i, n)``: multi-process training with a global batch of ``n * batch_size``: process
    ``i`` reads only the ``i``-th slice of each (sorted) global batch of the same permutation, so
    the slices put together in process order are exactly the one-process batch. The epoch's
    permutation depends on (seed, epoch) only.
    ``sources`` (one per image): draw each epoch with :func:`source_balanced_order` (sources
    weighted by their size to ``source_power``) instead of a permutation.
    """
    from .backend import import_keras

    keras = import_keras()

    class Feeder(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=1, use_multiprocessing=False)
            self.x, self.y = x, y
            self.batch_size = batch_size
            self.seed, self.epoch = seed, epoch
            self.weights = None if class_weights is None else np.asarray(class_weights, np.float32)[y]
            self.process, self.processes = shard
            self.steps = len(y) // (batch_size * self.processes)
            if self.steps < 1:
                raise DatasetError(f"the train split has {len(y)} images: fewer than one batch of {batch_size * self.processes}")
            self._order = self._permutation()
            # the next batches are read from the (memory-mapped) split while this one trains
            self._ahead = ReadAhead(self._batch, self.steps)

        def _permutation(self):
            idx = np.arange(len(self.y))
            rng = np.random.default_rng([self.seed, self.epoch])
            if sources is not None:
                idx = source_balanced_order(self.y, sources, rng, source_power)
            elif shuffle:
                idx = rng.permutation(len(self.y))
            return idx

        def __len__(self):
            return self.steps

        def __getitem__(self, i):
            return self._ahead.get(i)

        def _batch(self, i):
            size = self.batch_size * self.processes  # the global batch; this process reads its slice
            sel = np.sort(self._order[i * size : (i + 1) * size])
            sel = sel[self.process * self.batch_size : (self.process + 1) * self.batch_size]
            xb = read_rows(self.x, sel)[..., None]
            yb = self.y[sel]
            if self.weights is None:
                return xb, yb
            return xb, yb, self.weights[sel]

        def on_epoch_end(self):
            self.epoch += 1
            self._order = self._permutation()
            self._ahead.reset()

    return Feeder()



def make_val_feeder(x: np.ndarray, y: np.ndarray, batch_size: int, *, rows: np.ndarray | None = None):
    """A ``keras.utils.PyDataset`` of the split's ``rows`` (default: all) in order, in batches of
    ``batch_size`` (the last one smaller): ``(x[rows][..., None], y[rows])``.

    For ``validation_data``: read with :func:`cxrtool.splitcache.read_rows` like the training
    batches, so validating on a large memory-mapped split maps none of it into the process
    (an array handed to ``fit`` is sliced through the map, every page read staying resident).
    """
    from .backend import import_keras

    keras = import_keras()
    rows = np.arange(len(y)) if rows is None else np.asarray(rows)

    class ValFeeder(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=1, use_multiprocessing=False)

        def __len__(self):
            return -(-len(rows) // batch_size)

        def __getitem__(self, i):
            sel = rows[i * batch_size : (i + 1) * batch_size]
            return read_rows(x, sel)[..., None], y[sel]

    return ValFeeder()


__all__ = [
    "Dataset",
    "RESIZE",
    "SplitData",
    "balanced_class_weights",
    "cache_path",
    "load_dataset",
    "load_resized",
    "load_split",
    "make_feeder",
    "make_val_feeder",
    "resize_image",
    "source_balanced_order",
]
