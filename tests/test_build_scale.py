"""build-dataset's bounded-memory machinery: analysis in batches with the audit thumbnails
spilled to disk must give exactly the dataset one batch gives; the array-based leak counts
must count what the per-key sets counted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cxrtool.build.pipeline as pipeline
from cxrtool.build import BuildOptions, build_dataset
from cxrtool.build.analyse import THUMB
from cxrtool.build.pipeline import ThumbStore, WithThumbs, _spanning
from cxrtool.build.types import Analysis
from cxrtool.synthetic import write_source_tree


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return write_source_tree(tmp_path_factory.mktemp("scale") / "src", n_per_class=6).root


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_batched_analysis_builds_the_same_dataset(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 7 files (thumbnails spilled, analyses compacted between batches) against one
    batch: manifest, excluded.csv and report.json identical byte for byte; the audit ran."""
    options = BuildOptions(figures=False, workers=1)
    one = build_dataset([tree], tmp_path / "one", options).report
    events: list[dict] = []
    monkeypatch.setattr(pipeline, "ANALYSE_BATCH", 7)
    many = build_dataset([tree], tmp_path / "many", options, progress=events.append).report
    assert one["audit"] and "source_probes" in one["audit"]
    a, b = _files(tmp_path / "one"), _files(tmp_path / "many")
    assert a.keys() == b.keys()
    for name in ("manifest.csv", "excluded.csv", "report.md"):
        assert a[name] == b[name], name
    one["audit"].pop("seconds"), many["audit"].pop("seconds")
    assert one == many
    # progress counts over all files, not per batch
    done = [e["done"] for e in events if e["stage"] == "analyse"]
    total = {e["total"] for e in events if e["stage"] == "analyse"}
    assert done == list(range(1, len(done) + 1)) and total == {len(done)} and len(done) > 7


def test_thumb_store_round_trip(tmp_path: Path) -> None:
    """Each row reads back its own thumbnail, an all-black one included; rows without one read empty."""
    black, grey = bytes(THUMB * THUMB), bytes([128]) * (THUMB * THUMB)
    with ThumbStore(4) as store:
        store.put(0, grey)
        store.put(2, black)
        store.put(3, b"")
        assert [store.get(i) for i in range(4)] == [grey, b"", black, b""]
        analyses = [Analysis(sha256=str(i)) for i in range(3)]
        view = WithThumbs(analyses, [2, 0, 1], store)
        assert len(view) == 3
        assert [a.thumb for a in view] == [black, grey, b""]
        assert [a.sha256 for a in view[1:]] == ["1", "2"]


def test_spanning_counts_keys_in_several_splits() -> None:
    keys = ["g1", "g1", "g2", "g3", "g3", "g3", "g4"]
    splits = ["train", "val", "train", "test", "test", "train", "val"]
    assert _spanning(keys, splits) == 2  # g1 and g3
    assert _spanning([], []) == 0
    rng = np.random.default_rng(0)
    keys = [f"k{i}" for i in rng.integers(0, 300, 2000)]
    splits = [("train", "val", "test")[i] for i in rng.integers(0, 3, 2000)]
    seen: dict[str, set[str]] = {}
    for k, s in zip(keys, splits):
        seen.setdefault(k, set()).add(s)
    assert _spanning(keys, splits) == sum(len(v) > 1 for v in seen.values())
