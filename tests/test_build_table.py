"""build-dataset's columnar per-image state (cxrtool/build/table.py) must build the dataset the
object-per-image pipeline built: output names (clashes included) and splits pinned to what
main's code produced, the array versions of the split and de-duplication helpers equal to the
list versions, and the row views equal to the columns they read."""

from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from cxrtool.build import BuildOptions, build_dataset
from cxrtool.build.dedup import first_of
from cxrtool.build.sources.base import Strings
from cxrtool.build.split import assign_splits, split_codes
from cxrtool.labels import CLASSES
from cxrtool.manifest import SPLITS
from cxrtool.synthetic.trees import write_class_folders


def clash_tree(root: Path) -> Path:
    """Two sources; in ``gen`` the same stems in train/ and test/ folders of a class, and upper-
    case variants (``img 1.png`` vs ``IMG 1.PNG``: one output name once lower-cased), so some
    output names need their SHA-256 prefix; non-ASCII names and spaces too."""
    gen = root / "gen"
    # one clean phantom set, named three ways: no two files of a folder are copies of each other
    paths = write_class_folders(root / "tmp", 9, size=64, seed=2)
    for label in CLASSES:
        mine = [p for p in paths if p.parent.name == label]
        for split in ("train", "test"):
            (gen / split / label).mkdir(parents=True, exist_ok=True)
        for k, p in enumerate(mine[:3]):
            shutil.copy(p, gen / "train" / label / f"img {k}.png")
        for k, p in enumerate(mine[3:6]):
            shutil.copy(p, gen / "test" / label / f"IMG {k}.PNG")
        for k, p in enumerate(mine[6:]):
            shutil.copy(p, gen / "test" / label / f"röntgen-{k}.png")
    shutil.rmtree(root / "tmp")
    write_class_folders(root / "gen-b", 5, size=64, seed=9)
    return root


def _manifest(folder: Path) -> list[dict[str, str]]:
    with open(folder / "manifest.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


#: (file, split) of every manifest row of the clash tree's build below, as main's code (commit
#: 356c5cb, one Candidate object per image) wrote it: the SHA-256 of the lines "file,split\n".
MAIN_NAMES_SPLITS_SHA256 = "678cf641435d56dec6661022a66c4d30bc2abf3e803275e750b7dd9ef452945b"  # 42 rows
#: ... and a few of those rows in full, so a failure shows what changed.
MAIN_ROWS = {
    "train/covid/img 1.png": ("train/covid/gen__img_1-376ceab7.png", "train"),  # clashes with test/covid/IMG 1.PNG
    "train/covid/img 2.png": ("train/covid/gen__img_2-611619e7.png", "train"),
    "test/covid/röntgen-0.png": ("train/covid/gen__röntgen-0.png", "train"),
    "covid/covid_0000.png": ("test/covid/gen-b__covid_0000.png", "test"),
    "covid/covid_0002.png": ("test/covid/gen-b__covid_0002.png", "test"),
}


def test_names_and_splits_are_mains(tmp_path: Path) -> None:
    src = clash_tree(tmp_path / "src")
    result = build_dataset([src], tmp_path / "ds", BuildOptions(workers=1, figures=False, audit=False))
    rows = _manifest(tmp_path / "ds")
    text = "".join(f"{r['file']},{r['split']}\n" for r in rows)
    got = {r["source_file"]: (r["file"], r["split"]) for r in rows}
    for source_file, expected in MAIN_ROWS.items():
        assert got[source_file] == expected, source_file
    assert hashlib.sha256(text.encode()).hexdigest() == MAIN_NAMES_SPLITS_SHA256
    # invariants the names must keep whatever the code: unique once lower-cased, under
    # split/label/, a clash resolved with the SHA-256 prefix
    files = [r["file"] for r in rows]
    assert len({f.lower() for f in files}) == len(files)
    assert all(f.split("/")[:2] == [r["split"], r["label"]] for f, r in zip(files, rows))
    renamed = [r for r in rows if r["file"].rsplit(".", 1)[0].endswith("-" + r["sha256"][:8])]
    assert renamed, "the clash tree must exercise the SHA-256 suffix"
    # the row views read the same columns the manifest was written from
    by_key = {c.key: c for c in result.kept}
    for r in rows:
        c = by_key[f"{r['source']}/{r['source_file']}"]
        assert (c.file, c.split, c.group, c.analysis.sha256, c.analysis.hash) == (
            r["file"], r["split"], r["group"], r["sha256"], r["phash"])
        assert c.item.path == src / r["source"] / r["source_file"]


def _greedy_split_reference(labels, groups, fractions, seed):
    """The split algorithm as first written, one list and Counter per group (assign_splits
    before split_codes replaced it): the oracle both must reproduce."""
    from collections import Counter, defaultdict

    from cxrtool.build.split import stable_key

    members = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    class_total = Counter(labels)
    filled = {s: Counter() for s in SPLITS}
    result = [""] * len(labels)
    for g in sorted(members, key=lambda g: (-len(members[g]), stable_key(seed, g))):
        counts = Counter(labels[i] for i in members[g])
        major = max(sorted(counts), key=lambda c: counts[c])
        best, best_gap = SPLITS[0], None
        for split, frac in zip(SPLITS, fractions):
            if frac <= 0:
                continue
            target = frac * class_total[major]
            gap = (target - filled[split][major]) / max(target, 1e-9)
            if best_gap is None or gap > best_gap + 1e-12:
                best, best_gap = split, gap
        for i in members[g]:
            result[i] = best
        filled[best].update(counts)
    return result


def test_split_codes_and_assign_splits_equal_the_reference_greedy() -> None:
    rng = np.random.default_rng(1)
    for trial in range(40):
        n = int(rng.integers(1, 300))
        labels = rng.integers(0, 3, n)
        groups = rng.integers(1, int(rng.integers(1, n + 1)) + 1, n)
        fractions = [(0.7, 0.15, 0.15), (0.8, 0.2, 0.0), (0.5, 0.25, 0.25)][trial % 3]
        names = [CLASSES[k] for k in labels]
        expected = _greedy_split_reference(names, [f"g{g:06d}" for g in groups], fractions, trial)
        got = split_codes(labels, groups, fractions, trial, CLASSES)
        assert [SPLITS[k] for k in got] == expected, trial
        free = [f"patient-{g * 7919 % 1000}" for g in groups]  # any group names, any label names
        assert assign_splits(names, free, fractions, trial) == _greedy_split_reference(names, free, fractions, trial)
    assert assign_splits([], [], (0.7, 0.15, 0.15), 0) == []


def test_first_of_arrays_equal_strings() -> None:
    rng = np.random.default_rng(2)
    digests = rng.integers(0, 256, (500, 32), dtype=np.uint8)
    digests[rng.integers(0, 500, 100)] = digests[rng.integers(0, 500, 100)]
    hexes = [d.tobytes().hex() for d in digests]
    expected = [hexes.index(h) for h in hexes]
    assert first_of(digests).tolist() == expected
    assert first_of(hexes).tolist() == expected
    assert first_of(np.zeros((0, 32), np.uint8)).size == 0


@pytest.mark.parametrize("values", [[], ["a"], ["", "normal/x.png", "röntgen/ü.png", "a\udcff.png", ""]])
def test_strings_round_trip(values: list[str]) -> None:
    s = Strings(values)
    assert len(s) == len(values)
    assert list(s) == values
    if values:
        assert s[-1] == values[-1]
