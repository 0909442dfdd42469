"""The manifest held as columns: what ``read_manifest`` costs per row, and that the columns
read as the rows did (``Entry`` objects made on demand)."""

from __future__ import annotations

import gc
import hashlib
import tracemalloc

import numpy as np
import pytest

from cxrtool import CLASSES
from cxrtool.manifest import COLUMNS, FILE_SHA256, MANIFEST_NAME, Entry, read_manifest
from helpers_dataset import write_manifest

SPLITS_OF = ("train", "train", "train", "val", "test")


def _rows(n: int) -> list[dict]:
    """N rows as build-dataset writes them (the files need not exist to read the manifest)."""
    rows = []
    for i in range(n):
        label, split = CLASSES[i % len(CLASSES)], SPLITS_OF[i % len(SPLITS_OF)]
        rel = f"{split}/{label}/{label}-{i:07d}.png"
        digest = hashlib.sha256(rel.encode()).hexdigest()
        row = dict.fromkeys(COLUMNS, "")
        row.update(file=rel, label=label, split=split, source=f"site{i % 4}", source_file=f"x/{i}.png",
                   group=f"g{i}" if i % 3 else "", patient=f"p{i // 2}", sha256=digest, file_sha256=digest.upper(),
                   phash="0" * 16, width=64, height=64, mean="120.50", contrast="40.25")
        rows.append(row)
    return rows


def _dataset(root, n: int):
    root.mkdir()
    write_manifest(root, _rows(n))
    return root


def _traced(dataset) -> tuple[int, int]:
    """(bytes held by the manifest once read, peak bytes while reading it), as tracemalloc sees them."""
    read_manifest(dataset)  # imports and caches warm
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        manifest = read_manifest(dataset)
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(manifest.entries)
    return held - before, peak - before


def test_read_manifest_holds_columns_not_an_object_per_row(tmp_path):
    """Bytes per extra row, held and at the peak, between a 2k- and a 20k-row manifest (~120
    bytes of text a row): ~150 held and ~250 at the peak; one ``Entry`` per row (the reader
    before the columns) held ~1,000 and peaked at ~2,600, and fails this test."""
    small, large = _dataset(tmp_path / "small", 2_000), _dataset(tmp_path / "large", 20_000)
    (held_s, peak_s), (held_l, peak_l) = _traced(small), _traced(large)
    per_row_held = (held_l - held_s) / 18_000
    per_row_peak = (peak_l - peak_s) / 18_000
    assert per_row_held < 300, f"{per_row_held:.0f} bytes held per row"
    assert per_row_peak < 600, f"{per_row_peak:.0f} bytes at the peak per row"


def test_the_columns_read_as_the_rows(tmp_path):
    root = _dataset(tmp_path / "d", 50)
    raw = (root / MANIFEST_NAME).read_bytes()
    m = read_manifest(root)
    rows = _rows(50)
    assert m.fingerprint == hashlib.sha256(raw).hexdigest() and m.has_file_sha256
    entries = m.entries
    assert len(entries) == 50 and isinstance(entries[0], Entry)
    for i, (e, r) in enumerate(zip(entries, rows)):
        assert e == Entry(path=root / r["file"], file=r["file"], label=r["label"], split=r["split"],
                          source=r["source"], group=r["group"] or r["file"], patient=r["patient"], line=i + 2,
                          file_sha256=r[FILE_SHA256].lower())
    assert entries[-1] == entries[49] and list(entries[10:13]) == [entries[10], entries[11], entries[12]]
    # bulk columns: the same values, without an object per row
    assert entries.files.tolist() == [r["file"] for r in rows]
    assert list(entries.groups) == [r["group"] or r["file"] for r in rows]
    assert np.array_equal(np.asarray(entries.sources), [r["source"] for r in rows])
    assert entries.labels.names == CLASSES and np.array_equal(entries.labels.codes, [i % 3 for i in range(50)])
    assert entries.lines.tolist() == list(range(2, 52))
    train = m.split("train")
    assert [e.file for e in train] == [r["file"] for r in rows if r["split"] == "train"]
    assert train.files.tolist() == [e.file for e in train] and train.sources.tolist() == [e.source for e in train]
    assert train.labels.counts() == {c: sum(1 for e in train if e.label == c) for c in CLASSES}
    assert len(m.split("holdout")) == 0 and not m.split("holdout")
    assert list(train.paths()) == [e.path for e in train]
    with pytest.raises(IndexError):
        entries[50]
