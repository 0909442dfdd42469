"""build-dataset end to end: synthetic source trees with planted problems (ground truth in
:class:`cxrtool.synthetic.SyntheticTree`) through the library and the CLI, plus one build
of the real sources in ../shared/data/sources (skipped when absent)."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cxrtool.build.write
from cxrtool.build import BuildOptions, Thresholds, build_dataset
from cxrtool.build.quality import reason_key
from cxrtool.build.search import hamming_pairs, pack_hashes
from cxrtool.build.types import EXCLUDED_COLUMNS
from cxrtool.cli import main
from cxrtool.errors import UsageError
from cxrtool.manifest import COLUMNS, SPLITS
from cxrtool.synthetic import SOURCE_DIRS, SyntheticTree, write_class_folders, write_source_tree

REAL_SOURCES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sources"
DUP_REASONS = ("exact duplicate", "near duplicate")


# ---------------------------------------------------------------- helpers


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def key(row: dict[str, str]) -> str:
    return f"{row['source']}/{row['source_file']}"


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under root -> (mtime_ns, size, sha256)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[p.relative_to(root).as_posix()] = (st.st_mtime_ns, st.st_size, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def brute_force_pairs(hex_hashes: list[str], radius: int, chunk: int = 256) -> set[tuple[int, int]]:
    """All (i, j), i < j, whose hashes differ in at most ``radius`` bits: XOR + popcount in numpy."""
    raw = np.frombuffer(b"".join(bytes.fromhex(h) for h in hex_hashes), np.uint8).reshape(len(hex_hashes), -1)
    words = raw.view(np.uint64) if raw.shape[1] % 8 == 0 else raw
    found: set[tuple[int, int]] = set()
    n = len(words)
    for start in range(0, n, chunk):
        block = words[start : start + chunk]
        dist = np.bitwise_count(block[:, None, :] ^ words[None, :, :]).sum(axis=2, dtype=np.int32)
        rows, cols = np.nonzero(dist <= radius)
        rows = rows + start
        keep = cols > rows
        found.update(zip(rows[keep].tolist(), cols[keep].tolist()))
    return found


def assert_near_pairs_grouped(result, manifest: list[dict[str, str]], radius: int) -> None:
    """The leak guarantee, recomputed independently: every pair of hashes within the radius
    among all images that entered de-duplication (kept or dropped: brute force, and the fast
    search agrees) lies in one group, so it cannot cross splits; hence no two kept images are
    that close, and every group is whole in one split."""
    entered = [c for c in result.candidates if c.cluster >= 0]
    pairs = brute_force_pairs([c.analysis.hash for c in entered], radius)
    assert pairs  # the sources do hold near duplicates
    fast, _ = hamming_pairs(pack_hashes([c.analysis.hash for c in entered]), radius)
    assert {tuple(p) for p in fast.tolist()} == pairs
    assert all(entered[i].group == entered[j].group for i, j in pairs)
    assert brute_force_pairs([r["phash"] for r in manifest], radius) == set()
    split_of_group: dict[str, set[str]] = defaultdict(set)
    for r in manifest:
        split_of_group[r["group"]].add(r["split"])
    assert manifest and all(len(s) == 1 for s in split_of_group.values())


def one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


def live_before_balance(result) -> list:
    return [c for c in result.candidates if c.reason in ("", "balanced out")]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> SyntheticTree:
    return write_source_tree(tmp_path_factory.mktemp("tree") / "src")


@pytest.fixture(scope="module")
def before(tree) -> dict:
    return snapshot(tree.root)


@pytest.fixture(scope="module")
def built(tree, before, tmp_path_factory):
    out = tmp_path_factory.mktemp("built") / "dataset"
    result = build_dataset([tree.root], out, BuildOptions(workers=2, figures=False))
    manifest = read_csv(out / "manifest.csv")
    excluded = read_csv(out / "excluded.csv")
    return result, out, manifest, excluded


@pytest.fixture(scope="module")
def generic(tmp_path_factory) -> Path:
    """A clean generic source: covid/pneumonia/normal folders, 40 distinct phantoms each."""
    root = tmp_path_factory.mktemp("generic") / "gen"
    write_class_folders(root, 40, size=64, seed=5)
    return root


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("small") / "small"
    write_class_folders(root, {"covid": 6, "normal": 6}, size=64, seed=11)
    return root


# ---------------------------------------------------------------- synthetic tree: recognition and exclusions


def test_four_public_layouts_recognised(built):
    result = built[0]
    kinds = {s["name"]: s["kind"] for s in result.report["sources"]}
    assert kinds == {
        SOURCE_DIRS["radiography"]: "covid19-radiography",
        SOURCE_DIRS["chest_xray"]: "chest-xray-pneumonia",
        SOURCE_DIRS["covid15k"]: "covid19-15k",
        SOURCE_DIRS["cpn"]: "covid-pneumonia-normal",
    }
    assert "__MACOSX" not in kinds


def test_outputs_layout_manifest_columns(built):
    result, out, manifest, excluded = built
    with (out / "manifest.csv").open(encoding="utf-8") as fh:
        assert tuple(next(csv.reader(fh))) == COLUMNS
    with (out / "excluded.csv").open(encoding="utf-8") as fh:
        assert tuple(next(csv.reader(fh))) == EXCLUDED_COLUMNS
    assert manifest and len(manifest) == result.report["total_kept"]
    images = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.parent != out}
    assert images == {r["file"] for r in manifest}
    for r in manifest:
        split, label, _ = r["file"].split("/")
        assert (split, label) == (r["split"], r["label"]) and split in SPLITS
        data = (out / r["file"]).read_bytes()  # copy mode: the source's bytes
        assert hashlib.sha256(data).hexdigest() == r["sha256"]
        assert (result.scans[0].root.parent / key(r)).read_bytes() == data
    for name in ("report.json", "report.md", "excluded.csv"):
        assert (out / name).is_file()
    assert json.loads((out / "report.json").read_text())["total_kept"] == len(manifest)
    assert not any((out / f).exists() for f in ("samples.png", "excluded.png", "exposure.png"))  # figures off
    assert [p.name for p in out.parent.iterdir()] == ["dataset"]  # no temp folder left


def test_every_file_is_kept_excluded_or_junk(built, tree):
    _, _, manifest, excluded = built
    kept, dropped = {key(r) for r in manifest}, {key(r) for r in excluded}
    assert not kept & dropped
    assert all(r["reason"] for r in excluded)
    assert kept | dropped == set(tree.files) - set(tree.junk)


def test_masks_and_lung_opacity_excluded_and_reported(built, tree):
    result, _, manifest, excluded = built
    by_key = {key(r): r for r in excluded}
    assert tree.masks
    for rel in tree.masks:
        assert by_key[rel]["reason"] == "no label" and "mask" in by_key[rel]["detail"]
    opacity = [rel for rel in tree.files if "Lung_Opacity" in rel]
    assert opacity
    for rel in opacity:
        assert by_key[rel]["reason"] == "no label" and "Lung_Opacity" in by_key[rel]["detail"]
    unlabelled = result.report["unlabelled_by_reason"]
    assert sum(v for k, v in unlabelled.items() if "mask" in k) == len(tree.masks)
    assert sum(v for k, v in unlabelled.items() if "Lung_Opacity" in k) == len(opacity)
    assert not any("masks/" in r["file"] or "Lung_Opacity" in r["source_file"] for r in manifest)


def test_junk_skipped_and_counted(built, tree):
    result, _, manifest, excluded = built
    listed = {key(r) for r in manifest} | {key(r) for r in excluded}
    assert not listed & set(tree.junk)
    # junk inside the sources is counted per source; the root-level __MACOSX folder is not a source
    inside = [j for j in tree.junk if j.split("/")[0] in SOURCE_DIRS.values()]
    assert result.report["junk_skipped"] == len(inside) > 0
    assert "junk (not images)" in (built[1] / "report.md").read_text()


def test_corrupt_files_excluded_with_reason(built, tree):
    result, _, _, excluded = built
    by_key = {key(r): r for r in excluded}
    assert tree.corrupt
    for rel in tree.corrupt:
        assert by_key[rel]["reason"].startswith("unreadable: "), by_key[rel]
        assert by_key[rel]["detail"]
    reasons = result.report["excluded_by_reason"]
    assert sum(v for k, v in reasons.items() if k.startswith("unreadable")) == len(tree.corrupt)
    assert {reason_key(f"unreadable: {k}") for k in ("corrupt", "empty", "not-an-image")} <= set(reasons)


def test_exposure_and_size_filters(built, tree):
    result, _, manifest, excluded = built
    by_key = {key(r): r for r in excluded}
    expected = {"over-exposed": tree.over_exposed, "under-exposed": tree.under_exposed,
                "low contrast / near blank": tree.low_contrast}
    for reason, rels in expected.items():
        assert rels
        for rel in rels:
            assert by_key[rel]["reason"] == reason, (rel, by_key[rel])
    assert tree.tiny
    for rel in tree.tiny:
        assert by_key[rel]["reason"].startswith("too small")
    reasons = result.report["excluded_by_reason"]
    assert reasons[reason_key("over-exposed")] == len(tree.over_exposed)
    assert reasons[reason_key("under-exposed")] == len(tree.under_exposed)
    assert reasons[reason_key("low contrast / near blank")] == len(tree.low_contrast)
    assert reasons[reason_key("too small (24x24 < 64 px)")] == len(tree.tiny)
    t = Thresholds()
    assert manifest
    for r in manifest:  # nothing kept violates a threshold
        assert min(int(r["width"]), int(r["height"])) >= t.min_size
        assert t.min_mean <= float(r["mean"]) <= t.max_mean
        assert float(r["dark_frac"]) <= t.max_dark_frac and float(r["bright_frac"]) <= t.max_bright_frac
        assert float(r["contrast"]) >= t.min_contrast and float(r["entropy"]) >= t.min_entropy


# ---------------------------------------------------------------- duplicates


def _content_clusters(tree: SyntheticTree) -> dict[str, list[str]]:
    """Planted picture id -> files showing it, among images that pass quality control."""
    bad = set(tree.bad_exposure) | set(tree.tiny)
    clusters: dict[str, list[str]] = defaultdict(list)
    for rel in tree.images():
        if rel not in bad:
            clusters[tree.content[rel]].append(rel)
    return clusters


def _shifted(tree: SyntheticTree, members: list[str]) -> bool:
    return any("shifted" in tree.transforms.get(m, "") for m in members)


def _distance(a: str, b: str) -> int:
    return int(np.bitwise_count(np.frombuffer(bytes.fromhex(a), np.uint8) ^ np.frombuffer(bytes.fromhex(b), np.uint8)).sum())


def test_planted_duplicates_one_kept_per_cluster(built, tree):
    """Exact and near copies within and across sources: one file kept per planted picture
    (label-conflict pictures: none), and no distinct pictures merged. Copies shifted by 2-3 px
    of these ~100 px phantoms may lie beyond the default radius (see the xfail test below):
    then both files are kept and their hash distance must really exceed the radius."""
    result, _, manifest, excluded = built
    kept = {key(r) for r in manifest}
    phash = {key(r): r["phash"] for r in manifest}
    by_key = {key(r): r for r in excluded}
    radius = result.report["options"]["radius"]
    clusters = _content_clusters(tree)
    assert sum(len(m) > 1 for m in clusters.values()) >= 8
    missed_shifted = 0
    for cid, members in clusters.items():
        labels = {tree.labels[m] for m in members}
        kept_members = [m for m in members if m in kept]
        if len(labels) > 1:
            assert kept_members == []
            assert all(by_key[m]["reason"] == "label conflict" for m in members)
        elif len(kept_members) > 1 and _shifted(tree, members):
            missed_shifted += len(kept_members) - 1
            for i, a in enumerate(kept_members):
                for b in kept_members[i + 1 :]:
                    assert _distance(phash[a], phash[b]) > radius, (a, b)
        else:
            assert len(kept_members) == 1, (cid, members, kept_members)
    n_conflict = sum(1 for m in clusters.values() if len({tree.labels[x] for x in m}) > 1)
    assert len(kept) == len(clusters) - n_conflict + missed_shifted  # no distinct pictures merged
    exact = [(o, c) for o, c in tree.exact_duplicates if tree.labels[o] == tree.labels[c]]
    assert exact
    for orig, copy in exact:
        dropped = copy if copy not in kept else orig
        assert by_key[dropped]["reason"] == "exact duplicate"
    near = [(o, c) for o, c in tree.near_duplicates if tree.labels[o] == tree.labels[c] and "shifted" not in tree.transforms[c]]
    assert near
    for orig, copy in near:
        assert not (orig in kept and copy in kept), (orig, copy, tree.transforms[copy])
    dropped_dups = [r for r in excluded if r["reason"] in DUP_REASONS]
    assert dropped_dups
    for r in dropped_dups:
        assert r["duplicate_of"] in kept and r["distance"] != ""


@pytest.mark.xfail(reason="a copy shifted by 2-3 px of a ~100 px phantom is ~40-42 of 256 pHash bits away (measured), beyond the default radius")
def test_shifted_copies_caught_at_default_radius(built, tree):
    kept = {key(r) for r in built[2]}
    for members in _content_clusters(tree).values():
        if len({tree.labels[m] for m in members}) == 1 and _shifted(tree, members):
            assert sum(m in kept for m in members) == 1, members


def test_cross_source_duplicates_caught(built, tree):
    result, _, manifest, excluded = built
    kept = {key(r) for r in manifest}
    by_key = {key(r): r for r in excluded}
    assert tree.cross_source_duplicates
    cross_dropped = 0
    for orig, copy in tree.cross_source_duplicates:
        if "shifted" not in tree.transforms.get(copy, ""):
            assert not (orig in kept and copy in kept), (orig, copy)
        for rel in (orig, copy):
            r = by_key.get(rel)
            if r and r["reason"] in DUP_REASONS and r["duplicate_of"].split("/")[0] != r["source"]:
                cross_dropped += 1
    shifted = sum("shifted" in tree.transforms.get(c, "") for _, c in tree.cross_source_duplicates)
    assert cross_dropped >= len(tree.cross_source_duplicates) - len(tree.label_conflicts) - shifted > 0
    assert result.report["duplicates"]["duplicate_pairs_across_sources"] >= cross_dropped


def test_label_conflicts_dropped_whole_and_reported(built, tree):
    result, _, manifest, excluded = built
    kept = {key(r) for r in manifest}
    by_key = {key(r): r for r in excluded}
    conflicts = result.report["duplicates"]["label_conflicts"]
    assert tree.label_conflicts and len(conflicts) == len(tree.label_conflicts)
    reported = [set(c["members"]) for c in conflicts]
    for orig, copy in tree.label_conflicts:
        assert any({orig, copy} <= members for members in reported)
        for rel in (orig, copy):
            assert rel not in kept and by_key[rel]["reason"] == "label conflict"
            assert tree.labels[orig] in by_key[rel]["detail"] and tree.labels[copy] in by_key[rel]["detail"]
    md = (built[1] / "report.md").read_text()
    assert "label conflicts (clusters dropped whole): 2" in md


def test_representative_best_resolution_then_stable_order(built, tree):
    _, _, manifest, excluded = built
    src = tree.root
    size = {}
    for r in manifest + [r for r in excluded if r["reason"] in DUP_REASONS]:
        with Image.open(src / key(r)) as im:
            size[key(r)] = im.size[0] * im.size[1]
    checked = 0
    for r in excluded:
        if r["reason"] in DUP_REASONS:
            rep, me = r["duplicate_of"], key(r)
            assert size[rep] >= size[me]
            if size[rep] == size[me]:
                assert rep < me  # ties: first in (source, path) order
            checked += 1
    assert checked >= 8
    # the rule on the ground truth: wherever exactly one of a planted pair is kept, it is the larger one
    kept = {key(r) for r in manifest}
    decided = 0
    for orig, copy in tree.exact_duplicates + tree.near_duplicates:
        if (orig in kept) != (copy in kept):
            sizes = {}
            for rel in (orig, copy):
                with Image.open(src / rel) as im:
                    sizes[rel] = im.size[0] * im.size[1]
            winner = orig if orig in kept else copy
            assert sizes[winner] == max(sizes.values()), (orig, copy, sizes)
            decided += 1
    assert decided >= 6


# ---------------------------------------------------------------- split and leak check


def test_patients_never_cross_splits(built, tree):
    _, _, manifest, _ = built
    cx = [r for r in manifest if r["source"] == SOURCE_DIRS["chest_xray"]]
    assert cx
    for r in cx:
        assert r["patient"] == tree.patients[key(r)]
    splits: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in manifest:
        if r["patient"]:
            splits[(r["source"], r["patient"])].add(r["split"])
    assert all(len(s) == 1 for s in splits.values())
    assert tree.leaked_patients  # the source itself puts these patients in two of its splits
    leaked_kept = [k for k in splits if k[1] in tree.leaked_patients]
    assert leaked_kept
    groups: dict[str, set[str]] = defaultdict(set)
    for r in manifest:
        groups[r["group"]].add(r["split"])
    assert all(len(s) == 1 for s in groups.values())


def test_leak_check_zero_and_recomputed(built):
    result, _, manifest, _ = built
    leak = result.report["leak_check"]
    assert leak == {"near_duplicate_pairs_across_splits": 0, "patients_across_splits": 0,
                    "groups_across_splits": 0, "identical_files_kept_twice": 0}
    radius = result.report["options"]["radius"]
    assert radius == BuildOptions().hash_radius() and result.report["options"]["hash_size"] == 16
    assert_near_pairs_grouped(result, manifest, radius)
    assert "near-duplicate pairs across splits: 0" in (built[1] / "report.md").read_text()


def test_deterministic_manifest(built, tree, tmp_path):
    _, out, _, _ = built
    again = tmp_path / "again"
    build_dataset([tree.root], again, BuildOptions(workers=1, figures=False))  # other worker count too
    assert (again / "manifest.csv").read_bytes() == (out / "manifest.csv").read_bytes()
    assert (again / "excluded.csv").read_bytes() == (out / "excluded.csv").read_bytes()


def test_split_fractions_roughly_right(generic, tmp_path):
    result = build_dataset([generic], tmp_path / "out", BuildOptions(workers=2, dry_run=True, split=(0.6, 0.2, 0.2)))
    kept = result.kept
    assert len(kept) >= 110  # 120 distinct phantoms, at most a few look-alikes merged
    for label in ("covid", "pneumonia", "normal"):
        n = sum(c.item.label == label for c in kept)
        for split, frac in zip(SPLITS, (0.6, 0.2, 0.2)):
            got = sum(c.item.label == label and c.split == split for c in kept)
            assert abs(got - frac * n) <= 2, (label, split, got, n)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- balancing


def test_cli_per_class_downsamples_reports_short_classes_and_figures(built, tree, tmp_path, capsys):
    natural = {c: sum(v[c] for v in built[0].report["counts_after"].values()) for c in ("covid", "pneumonia", "normal")}
    target = max(natural.values()) - 5
    out = tmp_path / "pc"
    code = main(["build-dataset", str(tree.root), str(out), "--workers", "2", "--per-class", str(target), "--seed", "3"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.strip().splitlines()[-1] == str(out)
    manifest = read_csv(out / "manifest.csv")
    counts = Counter(r["label"] for r in manifest)
    short = {c: n for c, n in natural.items() if n < target}
    assert short  # the synthetic tree has uneven classes
    for label, n in natural.items():
        assert counts[label] == min(n, target)  # never up-sampled
    report = json.loads((out / "report.json").read_text())
    assert report["balance"]["classes_below_target"] == short
    assert any("fewer than --per-class" in w for w in report["warnings"])
    balanced_out = Counter(r["label"] for r in read_csv(out / "excluded.csv") if r["reason"] == "balanced out")
    assert dict(balanced_out) == {c: n - target for c, n in natural.items() if n > target}
    for name in ("samples.png", "excluded.png", "exposure.png"):
        with Image.open(out / name) as im:
            assert im.format == "PNG" and min(im.size) > 100
    assert "samples.png" in (out / "report.md").read_text()


def test_even_sources(generic, small, tmp_path):
    common = dict(workers=1, dry_run=True, per_class=12, figures=False)
    plain = build_dataset([generic, small], tmp_path / "a", BuildOptions(**common))
    even = build_dataset([generic, small], tmp_path / "b", BuildOptions(**common, even_sources=True))
    for label in ("covid", "normal"):
        avail = Counter(c.item.source for c in live_before_balance(even) if c.item.label == label)
        got = Counter(c.item.source for c in even.kept if c.item.label == label)
        assert sum(got.values()) == 12
        assert got["small"] == min(avail["small"], 6)
        assert got["gen"] == 12 - got["small"]
        assert Counter(c.item.source for c in plain.kept if c.item.label == label)["small"] < got["small"]
    assert sum(c.item.label == "pneumonia" for c in even.kept) == 12  # only gen has pneumonia


# ---------------------------------------------------------------- generic folders, label map, labels CSV


def _copy_class(generic: Path, label: str, dest: Path, n: int) -> list[str]:
    dest.mkdir(parents=True, exist_ok=True)
    names = []
    for p in sorted((generic / label).iterdir())[:n]:
        (dest / p.name).write_bytes(p.read_bytes())
        names.append(p.name)
    return names


def test_generic_alias_folders(generic, tmp_path):
    src = tmp_path / "aliases"
    _copy_class(generic, "covid", src / "train" / "COVID-19", 4)
    _copy_class(generic, "pneumonia", src / "train" / "Viral Pneumonia", 4)
    _copy_class(generic, "normal", src / "test" / "No Finding", 4)
    _copy_class(generic, "normal", src / "Lung Opacity", 2)
    _copy_class(generic, "covid", src / "Other", 2)
    result = build_dataset([src], tmp_path / "out", BuildOptions(workers=1, dry_run=True))
    assert [s.kind for s in result.scans] == ["generic"]
    labels = Counter(c.item.label for c in result.candidates)
    assert labels == {"covid": 4, "pneumonia": 4, "normal": 4}
    reasons = Counter(i.reason for i in result.scans[0].items if i.label is None)
    assert reasons["Lung_Opacity is not one of the three classes"] == 2
    assert sum(v for k, v in reasons.items() if "unknown folder 'Other'" in k) == 2


def test_label_map_json_and_csv(generic, tmp_path, capsys):
    src = tmp_path / "odd"
    _copy_class(generic, "covid", src / "Corona", 4)
    _copy_class(generic, "normal", src / "Clear", 4)
    _copy_class(generic, "pneumonia", src / "Scrap", 3)
    with pytest.raises(UsageError, match="no labelled images"):
        build_dataset([src], tmp_path / "x", BuildOptions(workers=1, dry_run=True))
    jmap = tmp_path / "map.json"
    jmap.write_text(json.dumps({"Corona": "covid", "clear": "normal", "Scrap": "exclude"}))
    result = build_dataset([src], tmp_path / "x", BuildOptions(workers=1, dry_run=True, label_map=jmap))
    assert Counter(c.item.label for c in result.candidates) == {"covid": 4, "normal": 4}
    assert all("label map" in i.reason for i in result.scans[0].items if i.label is None)
    cmap = tmp_path / "map.csv"
    cmap.write_text("folder,label\nCorona,covid\nClear,normal\nScrap,pneumonia\n")
    out = tmp_path / "viacli"
    assert main(["build-dataset", str(src), str(out), "--workers", "1", "--no-figures", "--label-map", str(cmap)]) == 0
    assert Counter(r["label"] for r in read_csv(out / "manifest.csv")) == {"covid": 4, "normal": 4, "pneumonia": 3}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"Corona": "flu"}))
    capsys.readouterr()
    assert main(["build-dataset", str(src), str(tmp_path / "y"), "--label-map", str(bad)]) == 2
    assert "flu" in one_error_line(capsys.readouterr().err)


def test_labels_csv_per_source(generic, tmp_path, capsys):
    src = tmp_path / "flat"
    names = _copy_class(generic, "covid", src, 3) + _copy_class(generic, "normal", src, 3)
    labels = tmp_path / "labels.csv"
    rows = ["file,label,patient"]
    rows += [f"{n},COVID-19,p{i}" for i, n in enumerate(names[:3])]
    rows += [f"{n},normal,p{i + 3}" for i, n in enumerate(names[3:5])]  # names[5] not listed
    labels.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    code = main(["build-dataset", str(src), str(out), "--workers", "1", "--no-figures", "--labels-csv", f"flat={labels}"])
    assert code == 0, capsys.readouterr().err
    manifest = read_csv(out / "manifest.csv")
    assert Counter(r["label"] for r in manifest) == {"covid": 3, "normal": 2}
    assert {r["patient"] for r in manifest} == {f"p{i}" for i in range(5)}
    excluded = {r["source_file"]: r for r in read_csv(out / "excluded.csv")}
    assert excluded[names[5]]["reason"] == "no label" and "not listed" in excluded[names[5]]["detail"]
    capsys.readouterr()
    assert main(["build-dataset", str(src), str(tmp_path / "o2"), "--labels-csv", f"nosuch={labels}"]) == 2
    assert "nosuch" in one_error_line(capsys.readouterr().err)


# ---------------------------------------------------------------- refusals, dry run, atomicity, modes


def test_refusals_exit_2_with_one_error_line(small, generic, tmp_path, capsys):
    capsys.readouterr()
    assert main(["build-dataset", str(small), str(small / "out")]) == 2
    assert "inside the source" in one_error_line(capsys.readouterr().err)
    assert not (small / "out").exists()

    outer = tmp_path / "outer"
    inner = outer / "src"
    _copy_class(generic, "covid", inner / "covid", 2)
    assert main(["build-dataset", str(inner), str(outer)]) == 2
    assert "inside the output" in one_error_line(capsys.readouterr().err)

    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("precious")
    assert main(["build-dataset", str(small), str(full)]) == 2
    assert "--overwrite" in one_error_line(capsys.readouterr().err)
    assert (full / "keep.txt").read_text() == "precious"

    assert main(["build-dataset", str(tmp_path / "missing"), str(tmp_path / "o")]) == 2
    assert "not found" in one_error_line(capsys.readouterr().err)
    assert main(["build-dataset", str(small), str(tmp_path / "o"), "--per-class", "0"]) == 2
    one_error_line(capsys.readouterr().err)

    assert main(["build-dataset", str(small), str(full), "--overwrite", "--workers", "1", "--no-figures"]) == 0
    assert (full / "manifest.csv").is_file() and not (full / "keep.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "outer"]


def test_dry_run_writes_nothing_and_thresholds_are_options(tree, tmp_path, capsys):
    out = tmp_path / "dry"
    code = main(["build-dataset", str(tree.root), str(out), "--dry-run", "--json", "--workers", "2",
                 "--min-size", "16", "--max-mean", "1", "--max-bright", "1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert not out.exists() and list(tmp_path.iterdir()) == []
    report = json.loads(captured.out)
    assert report["options"]["dry_run"] is True
    assert report["thresholds"]["min_size"] == 16 and report["thresholds"]["max_mean"] == 1.0
    assert reason_key("too small (1x1 < 16 px)") not in report["excluded_by_reason"]  # 24 px phantoms now pass
    assert reason_key("over-exposed") not in report["excluded_by_reason"]


def test_interrupted_write_leaves_no_dataset(small, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk full (simulated)")

    out = tmp_path / "out"
    monkeypatch.setattr(cxrtool.build.write, "write_reports", boom)
    with pytest.raises(RuntimeError, match="simulated"):
        build_dataset([small], out, BuildOptions(workers=1))
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no stray .out.partial-* folder

    monkeypatch.undo()
    build_dataset([small], out, BuildOptions(workers=1, figures=False))
    first = (out / "manifest.csv").read_bytes()
    monkeypatch.setattr(cxrtool.build.write, "write_reports", boom)
    with pytest.raises(RuntimeError):
        build_dataset([small], out, BuildOptions(workers=1, overwrite=True, seed=9))
    assert (out / "manifest.csv").read_bytes() == first  # the old dataset is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_hardlink_and_png_modes(small, tmp_path):
    linked = build_dataset([small], tmp_path / "hl", BuildOptions(workers=1, mode="hardlink", figures=False))
    assert linked.kept
    for c in linked.kept:
        assert os.stat(tmp_path / "hl" / c.file).st_ino == os.stat(c.item.path).st_ino
    pngs = build_dataset([small], tmp_path / "png", BuildOptions(workers=1, mode="png", png_size=32, figures=False))
    rows = read_csv(tmp_path / "png" / "manifest.csv")
    assert rows
    for r in rows:
        assert r["file"].endswith(".png")
        with Image.open(tmp_path / "png" / r["file"]) as im:
            assert im.format == "PNG" and im.mode == "L" and max(im.size) == 32
    assert len(pngs.kept) == len(linked.kept)


def test_progress_events_one_shape(small, tmp_path):
    """One cxrtool.progress event per decoded file ("analyse") and per placed image ("write")."""
    events: list[dict] = []
    result = build_dataset([small], tmp_path / "out", BuildOptions(workers=1, figures=False), progress=events.append)
    n, k = len(result.candidates), len(result.kept)
    assert n == 12 and k > 0
    assert [e for e in events if e["stage"] == "analyse"] == [{"stage": "analyse", "done": i, "total": n} for i in range(1, n + 1)]
    assert [e for e in events if e["stage"] == "write"] == [{"stage": "write", "done": i, "total": k} for i in range(1, k + 1)]
    assert len(events) == n + k


# ---------------------------------------------------------------- --test-source: an external test split

RADIO, CX, C15K = SOURCE_DIRS["radiography"], SOURCE_DIRS["chest_xray"], SOURCE_DIRS["covid15k"]


def assert_held_out_isolated(result, manifest: list[dict[str, str]], held) -> None:
    """Recomputed independently of the pipeline: held(c) picks the held-out images. Every one
    that entered de-duplication (kept or dropped) is, by brute force, farther than the radius
    from every train/val image, and shares no cluster, (source, patient) or group with one;
    the test split holds held-out images only."""
    radius = result.report["options"]["radius"]
    out = [c for c in result.candidates if c.cluster >= 0 and held(c)]
    kept = {f"{r['source']}/{r['source_file']}": r for r in manifest}
    pool = [c for c in result.candidates if c.key in kept and kept[c.key]["split"] in ("train", "val")]
    test = [c for c in result.candidates if c.key in kept and kept[c.key]["split"] == "test"]
    assert out and pool and test
    assert all(held(c) for c in test) and not any(held(c) for c in pool)
    assert [c for c in out if not c.reason] == test  # every kept held-out image is in test
    pairs = brute_force_pairs([c.analysis.hash for c in out + pool], radius)
    assert not [(i, j) for i, j in pairs if i < len(out) <= j]
    for attr in ("cluster", "group"):
        assert not {getattr(c, attr) for c in out} & {getattr(c, attr) for c in pool}
    def patients(rows):
        return {(c.item.source, c.item.patient) for c in rows if c.item.patient}
    assert not patients(out) & patients(pool)
    assert all(v == 0 for v in result.report["leak_check"].values()), result.report["leak_check"]


def test_test_source_class_held_out_whole_and_isolated(tree, tmp_path):
    opts = BuildOptions(workers=2, figures=False, test_sources=(f"{RADIO}:Normal",), split=(0.6, 0.2, 0.2))
    result = build_dataset([tree.root], tmp_path / "ext", opts)
    manifest = read_csv(tmp_path / "ext" / "manifest.csv")
    assert_held_out_isolated(result, manifest, lambda c: c.item.source == RADIO and c.item.label == "normal")

    # a cluster shared with another source is external to neither: dropped whole, test and train
    shared = [(a, b) for a, b in tree.cross_source_duplicates if "radiography" in (tree.sources[a], tree.sources[b]) and
              tree.labels[a] == tree.labels[b] == "normal"]
    assert shared  # the synthetic tree plants pediatric copies of adult normals
    by_key = {c.key: c for c in result.candidates}
    kept = {key(r) for r in manifest}
    for a, b in shared:
        ours, other = (by_key[a], by_key[b]) if a.startswith(RADIO) else (by_key[b], by_key[a])
        assert {ours.reason, other.reason} <= {*DUP_REASONS, "copy shared by the held-out test and a training source"}
        assert ours.key not in kept and other.key not in kept
    copies = [c for c in result.candidates if c.reason == "copy shared by the held-out test and a training source"]
    assert len(copies) == len(shared)  # one kept copy per shared cluster, now dropped
    also = Counter(f"{SOURCE_DIRS[tree.sources[a if tree.sources[b] == 'radiography' else b]]}:normal" for a, b in shared)
    assert result.report["external_test"]["test_copies_dropped"] == dict(also)

    # the pool is split train:val in --split's ratio, with no test share
    pool = Counter(r["split"] for r in manifest if r["split"] != "test")
    assert abs(pool["train"] / (pool["train"] + pool["val"]) - 0.75) < 0.08
    ext = result.report["external_test"]
    assert ext["held_out"] == [f"{RADIO}:normal"] and ext["pool_split"] == pytest.approx([0.75, 0.25])
    n_test = sum(r["split"] == "test" for r in manifest)
    assert ext["test_images_per_held_out"] == {f"{RADIO}:normal": n_test}
    assert ext["counts"] == {RADIO: {"covid": 0, "pneumonia": 0, "normal": n_test}}
    dropped = [c for c in result.candidates if c.reason == "shares a group with the held-out test"]
    assert dropped and not any(c.item.source == RADIO and c.item.label == "normal" for c in dropped)
    assert ext["pool_images_dropped_per_source"] == dict(Counter(c.item.source for c in dropped))
    assert {r["source_file"] for r in read_csv(tmp_path / "ext" / "excluded.csv")
            if r["reason"] == "shares a group with the held-out test"} == {c.item.rel for c in dropped}
    assert result.report["options"]["test_sources"] == [f"{RADIO}:Normal"]
    md = (tmp_path / "ext" / "report.md").read_text()
    assert "## External test split" in md and "held out clusters in train val: 0" in md


def test_cli_several_test_sources_per_class_balances_the_pool_only(tree, tmp_path, capsys):
    out = tmp_path / "multi"
    code = main(["build-dataset", str(tree.root), str(out), "--workers", "2", "--no-figures", "--per-class", "8",
                 "--test-source", f"{RADIO}:normal", "--test-source", C15K])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.strip() == str(out)
    assert "external test split (held out)" in captured.err
    manifest = read_csv(out / "manifest.csv")
    held = lambda c: c.item.source == C15K or (c.item.source == RADIO and c.item.label == "normal")  # noqa: E731
    result = build_dataset([tree.root], tmp_path / "dry", BuildOptions(
        workers=2, dry_run=True, per_class=8, test_sources=(f"{RADIO}:normal", C15K)))
    assert_held_out_isolated(result, manifest, held)
    test = Counter((r["source"], r["label"]) for r in manifest if r["split"] == "test")
    pool = Counter(r["label"] for r in manifest if r["split"] != "test")
    report = json.loads((out / "report.json").read_text())
    assert test[(C15K, "covid")] > 8 or test[(RADIO, "normal")] + test[(C15K, "normal")] > 8  # test kept whole
    assert set(test) == {(RADIO, "normal"), (C15K, "covid"), (C15K, "normal")}
    assert all(n <= 8 for n in pool.values()) and report["balance"]["per_class"] == 8
    assert report["external_test"]["held_out"] == [f"{RADIO}:normal", C15K]
    assert sum(report["external_test"]["test_images_per_held_out"].values()) == sum(test.values())


def test_cli_test_source_refusals_and_missing_class(tree, tmp_path, capsys):
    capsys.readouterr()
    base = ["build-dataset", str(tree.root), str(tmp_path / "o"), "--dry-run", "--workers", "2"]
    assert main(base + ["--test-source", "Nowhere"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "Nowhere" in line and RADIO in line and CX in line
    assert main(base + ["--test-source", f"{CX}:covid"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "its classes: pneumonia, normal" in line
    assert main(base + ["--test-source", f"{CX}:lungs"]) == 2
    one_error_line(capsys.readouterr().err)

    every_covid = [v for s in (RADIO, C15K, SOURCE_DIRS["cpn"]) for v in ("--test-source", f"{s}:covid")]
    assert main(base + every_covid) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "no training images of covid" in line and "--allow-missing-class" in line
    assert main(base + every_covid + ["--allow-missing-class", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["external_test"]["classes_without_training_images"] == ["covid"]
    assert any(w.startswith("NO TRAINING IMAGES of covid") for w in report["warnings"])
    assert report["counts_per_split"]["train"]["covid"] == report["counts_per_split"]["val"]["covid"] == 0
    assert report["counts_per_split"]["test"]["covid"] > 0
    assert not (tmp_path / "o").exists()


def test_without_test_source_no_external_section(built):
    assert built[0].report["external_test"] is None and built[0].report["options"]["test_sources"] == []
    assert "held_out_groups_in_train_val" not in built[0].report["leak_check"]


def test_zz_sources_never_modified(tree, before):
    """Runs after every build of this module that read the synthetic tree."""
    assert snapshot(tree.root) == before


# ---------------------------------------------------------------- the real sources


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    if not REAL_SOURCES.is_dir():
        pytest.skip(f"real sources not found at {REAL_SOURCES} (only the project's dev machine has them)")
    out = tmp_path_factory.mktemp("real") / "dataset"
    result = build_dataset([REAL_SOURCES], out, BuildOptions(workers=2, figures=False))
    return result, out, read_csv(out / "manifest.csv"), read_csv(out / "excluded.csv")


@pytest.mark.slow
@pytest.mark.realdata
def test_real_cross_source_duplicates_caught(real):
    _, _, _, excluded = real
    cross = [r for r in excluded if r["reason"] in DUP_REASONS and r["duplicate_of"].split("/")[0] != r["source"]]
    assert len(cross) > 100
    pair = Counter(frozenset((r["source"], r["duplicate_of"].split("/")[0])) for r in cross)
    radiography_vs_pediatric = frozenset(("COVID-19_Radiography_Dataset", "chest_xray"))
    assert pair[radiography_vs_pediatric] > 100
    normals = [r for r in cross if frozenset((r["source"], r["duplicate_of"].split("/")[0])) == radiography_vs_pediatric]
    assert all(r["label"] == "normal" for r in normals)


@pytest.mark.slow
@pytest.mark.realdata
def test_real_no_near_duplicate_pair_crosses_splits(real):
    result, _, manifest, _ = real
    assert result.report["leak_check"]["near_duplicate_pairs_across_splits"] == 0
    assert_near_pairs_grouped(result, manifest, result.report["options"]["radius"])


@pytest.mark.slow
@pytest.mark.realdata
def test_real_patients_and_unlabelled_rows(real):
    result, _, manifest, excluded = real
    splits: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in manifest:
        if r["patient"]:
            splits[(r["source"], r["patient"])].add(r["split"])
    assert sum(1 for s, _ in splits if s == "chest_xray") > 1000
    assert all(len(s) == 1 for s in splits.values())
    assert result.report["leak_check"]["patients_across_splits"] == 0
    fig1 = [r for r in excluded if r["source"] == "Figure1-COVID-chestxray-dataset" and r["reason"] == "no label"]
    assert len(fig1) == 15 and all("unlabelled" in r["detail"] for r in fig1)
    kinds = {s["name"]: s["kind"] for s in result.report["sources"]}
    assert kinds == {"COVID-19_Radiography_Dataset": "covid19-radiography", "chest_xray": "chest-xray-pneumonia",
                     "Figure1-COVID-chestxray-dataset": "figure1-covid"}


def test_real_adult_normals_held_out(tmp_path):
    """The issue's first protocol: the adult normals held out; pediatric copies among them dropped."""
    if not REAL_SOURCES.is_dir():
        pytest.skip(f"real sources not found at {REAL_SOURCES} (only the project's dev machine has them)")
    radio = "COVID-19_Radiography_Dataset"
    result = build_dataset([REAL_SOURCES], tmp_path / "x", BuildOptions(
        workers=2, dry_run=True, figures=False, test_sources=(f"{radio}:normal",)))
    report = result.report
    ext = report["external_test"]
    test = report["counts_per_split"]["test"]
    assert test["covid"] == test["pneumonia"] == 0 and test["normal"] > 1000
    assert ext["counts"] == {radio: test}
    assert ext["test_copies_dropped"].get("chest_xray:normal", 0) > 0  # some "adult" normals are pediatric copies
    assert all(v == 0 for v in report["leak_check"].values()), report["leak_check"]
    assert any(w.startswith("100% of normal training images come from chest_xray") for w in report["warnings"])
    # the report says plainly that pneumonia and normal were learned from children only
    pops = report["training_populations"]
    # (Figure 1 adds a couple of adult pneumonias: a handful against thousands)
    assert pops["pneumonia"]["pediatric"] >= 0.99 * sum(pops["pneumonia"].values())
    assert pops["covid"].get("pediatric", 0) == 0
    said = [w for w in report["warnings"] if w.startswith("POPULATION:")]
    assert any("of pneumonia training images are pediatric" in w and "adults" in w for w in said)
    assert any("of normal training images are pediatric" in w for w in said)
    assert not any(" covid " in w.split(":")[1][:40] for w in said)  # covid is learned from adults


def test_population_warning_only_when_a_class_is_learned_from_children_alone():
    from cxrtool.build.report import population_warnings

    children = {"covid": {"mixed": 400, "adult": 10}, "pneumonia": {"pediatric": 411}, "normal": {"mixed": 200, "pediatric": 211}}
    said = population_warnings(children)
    assert len(said) == 1 and said[0].startswith("POPULATION: 100% of pneumonia training images are pediatric")
    # every class pediatric: age cannot separate the classes, nothing to warn about
    assert population_warnings({c: {"pediatric": 5} for c in ("covid", "pneumonia", "normal")}) == []
    # no pediatric source at all
    assert population_warnings({c: {"adult": 5} for c in ("covid", "pneumonia", "normal")}) == []
