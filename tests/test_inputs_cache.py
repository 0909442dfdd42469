"""The memory-mapped split cache (cxrtool.splitcache): what it holds, when it is trusted, what
it costs in memory, and that training and evaluation give the same results from it as from
the split in memory."""

from __future__ import annotations

import gc
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from helpers_dataset import make_dataset


@pytest.fixture()
def ds(tmp_path):
    return make_dataset(tmp_path / "d", {"train": 10, "val": 3}, size=40)


def _hidden(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) if folder.exists() else []


def test_the_cache_is_a_read_only_memmap_with_the_decoded_images(ds):
    from cxrtool.inputs import cache_path, load_dataset, load_resized

    data = load_dataset(ds, 24)
    x = data["train"].x
    target = cache_path(data.manifest, "train", 24)
    assert target.suffix == ".npy" and target.is_file()
    assert isinstance(x, np.memmap) and x.mode == "r" and not x.flags.writeable
    assert x.shape == (30, 24, 24) and x.dtype == np.uint8
    # the same pixels as decoding each image on its own (what the in-memory cache held)
    expected = np.stack([load_resized(e.path, 24) for e in data.manifest.split("train")])
    assert np.array_equal(x, expected)
    assert np.array_equal(load_dataset(ds, 24, cache=False)["train"].x, expected)
    # the second load opens the same file instead of decoding again
    again = load_dataset(ds, 24)["train"].x
    assert isinstance(again, np.memmap) and again.filename == x.filename


def test_an_interrupted_build_leaves_nothing_that_is_reused(ds, monkeypatch):
    import cxrtool.inputs as inputs
    from cxrtool.manifest import read_manifest
    from cxrtool.splitcache import cache_path

    manifest = read_manifest(ds)
    target = cache_path(manifest, "train", 24)
    real = inputs.load_resized
    calls = []

    def dies_halfway(path, size):
        calls.append(path)
        if len(calls) == 20:
            raise KeyboardInterrupt  # Ctrl-C / SIGTERM (cxrtool.interrupts) in the middle of the build
        return real(path, size)

    monkeypatch.setattr(inputs, "load_resized", dies_halfway)
    monkeypatch.setattr("cxrtool.splitcache.CHUNK_BYTES", 8 * 24 * 24)  # several chunks: part of it was written
    with pytest.raises(KeyboardInterrupt):
        inputs.load_split(manifest, "train", 24, workers=1)
    assert not target.exists() and _hidden(target.parent) == []
    monkeypatch.setattr(inputs, "load_resized", real)

    # what SIGKILL leaves: a hidden half-written temporary file next to the target
    leftover = target.parent / f".{target.name}.abc123.tmp.npy"
    np.lib.format.open_memmap(leftover, mode="w+", dtype=np.uint8, shape=(30, 24, 24))[:5] = 7
    split = inputs.load_split(manifest, "train", 24)
    assert Path(split.x.filename) == target.resolve()
    assert np.array_equal(split.x, np.stack([real(e.path, 24) for e in manifest.split("train")]))  # not the leftover
    assert leftover.exists()  # a recent temporary file may be a concurrent build's: kept...
    os.utime(leftover, (0, 0))
    target.unlink()
    inputs.load_split(manifest, "train", 24)
    assert not leftover.exists()  # ...an hour-old one is removed by the next build


def test_a_cache_that_does_not_match_is_rebuilt_and_older_caches_go(ds):
    from cxrtool.inputs import load_resized, load_split
    from cxrtool.manifest import read_manifest
    from cxrtool.splitcache import cache_path

    manifest = read_manifest(ds)
    target = cache_path(manifest, "val", 24)
    target.parent.mkdir(parents=True)
    old_v1 = target.parent / f"val-24px-{manifest.fingerprint[:16]}-v1.npz"
    np.savez(old_v1, x=np.zeros((9, 24, 24), np.uint8), files=np.asarray(["x"] * 9))
    other_size = target.parent / f"val-16px-{manifest.fingerprint[:16]}-v2.npy"
    np.save(other_size, np.zeros((9, 16, 16), np.uint8))
    expected = np.stack([load_resized(e.path, 24) for e in manifest.split("val")])
    for bad in (np.zeros((8, 24, 24), np.uint8), np.zeros((9, 24, 24), np.float32)):  # wrong length, wrong dtype
        np.save(target, bad)
        assert np.array_equal(load_split(manifest, "val", 24).x, expected)
    # a truncated file under the final name (a disk that lost its tail): rebuilt, not mapped
    data = target.read_bytes()
    target.write_bytes(data[: len(data) - 100])
    assert np.array_equal(load_split(manifest, "val", 24).x, expected)
    assert not old_v1.exists() and other_size.exists()  # v1 of this size went; other sizes stay


def test_loading_and_building_do_not_allocate_the_whole_split(tmp_path, monkeypatch):
    """tracemalloc sees numpy's allocations: the split is 300 x 64 x 64 bytes (1.2 MB); building
    holds one chunk of 8 images, opening the cache holds nothing of its size."""
    from cxrtool.inputs import load_split
    from cxrtool.manifest import read_manifest

    root = make_dataset(tmp_path / "big", {"train": 100, "val": 1}, size=64)
    manifest = read_manifest(root)
    nbytes = 300 * 64 * 64
    monkeypatch.setattr("cxrtool.splitcache.CHUNK_BYTES", 8 * 64 * 64)
    monkeypatch.setattr("cxrtool.splitcache.chunk_images", lambda size: 8)

    def peak(**kw):
        gc.collect()
        tracemalloc.start()
        try:
            split = load_split(manifest, "train", 64, workers=1, **kw)
            return split, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    built, build_peak = peak()
    opened, open_peak = peak()
    in_memory, memory_peak = peak(cache=False)
    assert isinstance(built.x, np.memmap) and isinstance(opened.x, np.memmap)
    assert memory_peak >= nbytes  # the old way: the whole split (the check can fail)
    assert build_peak < nbytes / 4, build_peak
    assert open_peak < nbytes / 10, open_peak
    assert np.array_equal(opened.x, in_memory.x)


def test_the_feeder_reads_ahead_the_same_batches_over_a_memmap(tmp_path):
    from cxrtool.inputs import balanced_class_weights, make_feeder

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (203, 8, 8), dtype=np.uint8)
    y = rng.integers(0, 3, 203).astype(np.int32)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    w = balanced_class_weights(y, 3)
    plain = make_feeder(x, y, 16, seed=3, class_weights=w)
    ahead = make_feeder(mapped, y, 16, seed=3, class_weights=w)
    for epoch in range(3):
        order = np.random.default_rng([3, epoch]).permutation(203)
        for i in list(range(len(ahead))) + [0, 5, 4]:  # in order, then out of order
            xa, ya, wa = ahead[i]
            xp, yp, wp = plain[i]
            sel = np.sort(order[i * 16 : (i + 1) * 16])
            assert np.array_equal(xa, x[sel][..., None]) and np.array_equal(xa, xp)
            assert np.array_equal(ya, y[sel]) and np.array_equal(wa, wp)
        ahead.on_epoch_end()
        plain.on_epoch_end()


def test_training_and_evaluation_give_the_same_results_from_the_memmap(tmp_path, monkeypatch):
    """One run trains from the memory-mapped cache, the other from the split in memory
    (``--no-cache``, the old path): the same history and weights; evaluate gives the same
    document from the cache as from in-memory arrays."""
    import cxrtool.evaluate.evalset as evalset
    from cxrtool.evaluate import evaluate
    from cxrtool.train import TrainOptions, train

    root = make_dataset(tmp_path / "d", {"train": 6, "val": 2, "test": 2}, size=32)
    runs = {}
    for name, cache in (("mapped", True), ("memory", False)):
        opts = TrainOptions(epochs=2, batch_size=4, image_size=16, weights="none", seed=0, cache=cache)
        runs[name] = train(root, "cnn", options=opts, out=tmp_path / f"{name}.keras")
    assert (root / ".cache").is_dir() and any((root / ".cache").glob("train-16px-*.npy"))
    hist = {k: [{m: v for m, v in row.items() if m not in ("seconds", "images_per_s")} for row in r.history]
            for k, r in runs.items()}
    assert hist["mapped"] == hist["memory"]
    for a, b in zip(runs["mapped"].model.get_weights(), runs["memory"].model.get_weights()):
        assert np.array_equal(a, b)
    ood = {k: {f: v for f, v in r.info.extra["ood"].items() if f != "seconds"} for k, r in runs.items()}
    assert ood["mapped"] == ood["memory"]

    import cxrtool.inputs as inputs

    mapped = evaluate(root, [tmp_path / "mapped.keras"], split="test", n_boot=10)
    original = inputs.load_split
    in_memory = []

    def without_cache(*args, **kwargs):
        split = original(*args, **{**kwargs, "cache": False})
        in_memory.append(type(split.x))
        return split

    monkeypatch.setattr(inputs, "load_split", without_cache)
    memory = evaluate(root, [tmp_path / "mapped.keras"], split="test", n_boot=10)
    assert in_memory == [np.ndarray]
    assert mapped["models"] == memory["models"]


def test_read_ahead_reads_each_batch_once_and_resets_per_epoch():
    from cxrtool.splitcache import ReadAhead

    reads = []

    def read(i):
        reads.append(i)
        return (i,)

    ahead = ReadAhead(read, 10, depth=2)
    assert [ahead.get(i)[0] for i in range(10)] == list(range(10))
    assert sorted(reads) == list(range(10))  # read ahead, but each batch once
    ahead.reset()
    assert ahead.get(4) == (4,)


def _mapped_kib(path) -> int:
    """RSS (kB) of this process' mappings of ``path`` (``/proc/self/smaps``)."""
    total, inside = 0, False
    for line in open("/proc/self/smaps"):
        head = line.split()
        if len(head) >= 5 and "-" in head[0] and not line.startswith(("Rss", "Size")) and ":" not in head[0]:
            inside = line.rstrip("\n").endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(head[1])
    return total


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs Linux /proc/self/smaps")
def test_an_epoch_over_a_memmapped_split_does_not_map_it(tmp_path):
    """docs/scaling-data.md: the feeder reads batches from the cache file (``os.preadv``), so an
    epoch adds nothing to the process' RSS however large the file; the batches are ``x[rows]``.
    (Indexing the memory map instead maps every page it reads: the first check fails then.)"""
    from cxrtool.inputs import make_feeder
    from cxrtool.splitcache import read_rows

    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (2000, 64, 64), dtype=np.uint8)  # 8 MB
    y = rng.integers(0, 3, 2000).astype(np.int32)
    path = tmp_path / "x.npy"
    np.save(path, x)
    mapped = np.load(path, mmap_mode="r")
    feeder = make_feeder(mapped, y, 32, seed=0)
    for i in range(len(feeder)):
        feeder[i]
    assert _mapped_kib(path) == 0
    rows = np.sort(rng.choice(2000, 100, replace=False))
    assert np.array_equal(read_rows(mapped, rows), x[rows])
    assert np.array_equal(read_rows(x, rows), x[rows])  # an in-memory array: plain indexing
    mapped[rows]  # the check itself can fail: indexing the map maps pages
    assert _mapped_kib(path) > 0


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs Linux /proc/self/smaps")
def test_the_val_feeder_gives_the_rows_in_order_without_mapping_the_split(tmp_path):
    """Validation reads the val split like the training batches (``read_rows``): the rows in
    order, the last batch smaller, a process' strided share as asked, and nothing mapped."""
    from cxrtool.inputs import make_val_feeder

    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (1000, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 3, 1000).astype(np.int32)
    path = tmp_path / "val.npy"
    np.save(path, x)
    mapped = np.load(path, mmap_mode="r")
    for rows in (None, np.arange(1, 1000, 2)[:496]):  # all; process 1 of 2, trimmed
        want = np.arange(1000) if rows is None else rows
        feeder = make_val_feeder(mapped, y, 64, rows=rows)
        got = [feeder[i] for i in range(len(feeder))]
        assert len(feeder) == -(-len(want) // 64) and len(got[-1][1]) == len(want) - 64 * (len(feeder) - 1)
        assert np.array_equal(np.concatenate([b[0] for b in got]), x[want][..., None])
        assert np.array_equal(np.concatenate([b[1] for b in got]), y[want])
    assert _mapped_kib(path) == 0
