"""Tests for cxrtool.synthetic: phantoms, masks and the fake multi-source tree."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image

from cxrtool import CLASSES
from cxrtool.synthetic import (
    SOURCE_DIRS,
    SyntheticTree,
    lung_mask,
    make_phantom,
    pattern_mask,
    phantom_layout,
    write_class_folders,
    write_source_tree,
)


# ----------------------------------------------------------------------------- phantoms


@pytest.mark.parametrize("label", CLASSES)
def test_phantom_deterministic_and_seed_dependent(label: str) -> None:
    a = make_phantom(label, 3, 64)
    b = make_phantom(label, 3, 64)
    c = make_phantom(label, 4, 64)
    assert a.dtype == np.uint8 and a.shape == (64, 64)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 2


def test_labels_with_same_seed_differ() -> None:
    imgs = [make_phantom(label, 0, 64).astype(int) for label in CLASSES]
    assert all(np.abs(imgs[i] - imgs[j]).mean() > 2 for i in range(3) for j in range(i + 1, 3))


@pytest.mark.parametrize("size, shape", [(32, (32, 32)), (128, (128, 128)), ((96, 120), (96, 120)),
                                         ((130, 100), (130, 100))])
def test_phantom_sizes(size, shape) -> None:
    img = make_phantom("covid", 1, size)
    assert img.shape == shape and img.dtype == np.uint8
    assert pattern_mask("covid", 1, size).shape == shape
    assert lung_mask("covid", 1, size).shape == shape


def test_phantom_rejects_bad_args() -> None:
    with pytest.raises(ValueError):
        make_phantom("lung_opacity", 0)
    with pytest.raises(ValueError):
        make_phantom("normal", 0, 4)
    with pytest.raises(ValueError):
        lung_mask("normal", 0, 64, side="middle")


def test_negative_and_huge_seeds_work() -> None:
    assert make_phantom("normal", -5, 32).shape == (32, 32)
    assert make_phantom("normal", 2**80, 32).shape == (32, 32)


def test_phantom_looks_like_a_chest() -> None:
    """Dark background at the top corners, dark lungs inside a brighter body, bright spine."""
    img = make_phantom("normal", 0, 128).astype(float)
    lungs = lung_mask("normal", 0, 128)
    corners = np.concatenate([img[:8, :8].ravel(), img[:8, -8:].ravel()])
    assert corners.mean() < 60
    body_rows = img[90:110]
    assert img[lungs].mean() < body_rows[:, 10:30].mean() - 30  # lungs darker than soft tissue
    spine_x = int(round(phantom_layout("normal", 0).spine_x * 128))
    assert img[100:120, spine_x - 2 : spine_x + 3].mean() > img[lungs].mean() + 40


def test_layout_shared_and_size_independent() -> None:
    lay = phantom_layout("pneumonia", 5)
    assert lay is phantom_layout("pneumonia", 5)  # cached
    assert len(lay.blobs) == 1
    assert len({b.lung for b in phantom_layout("covid", 5).blobs}) == 2  # bilateral
    assert phantom_layout("normal", 5).blobs == ()
    # Masks at different sizes describe the same region.
    small = pattern_mask("pneumonia", 5, 64)
    big = pattern_mask("pneumonia", 5, 128)
    assert small.any() and abs(small.mean() - big.mean()) < 0.01


@pytest.mark.parametrize("seed", range(8))
def test_pattern_mask_inside_lungs(seed: int) -> None:
    assert not pattern_mask("normal", seed, 64).any()
    for label in ("covid", "pneumonia"):
        pat = pattern_mask(label, seed, 64)
        lungs = lung_mask(label, seed, 64)
        assert pat.sum() >= 20
        assert not (pat & ~lungs).any()
    # pneumonia: one lung only; covid: both lungs
    left = lung_mask("pneumonia", seed, 64, side="left")
    right = lung_mask("pneumonia", seed, 64, side="right")
    pat = pattern_mask("pneumonia", seed, 64)
    assert (pat & left).any() != (pat & right).any()
    pat = pattern_mask("covid", seed, 64)
    assert (pat & lung_mask("covid", seed, 64, side="left")).any()
    assert (pat & lung_mask("covid", seed, 64, side="right")).any()


def test_pattern_region_is_brighter_than_in_normal_of_same_geometry() -> None:
    """The drawn pattern raises intensity where pattern_mask says it is."""
    for label in ("covid", "pneumonia"):
        gains = []
        for seed in range(10):
            img = make_phantom(label, seed, 64).astype(float)
            pat = pattern_mask(label, seed, 64)
            rest = lung_mask(label, seed, 64) & ~pat
            gains.append(img[pat].mean() - img[rest].mean())
        assert np.mean(gains) > 10, label


def _features(label: str, seed: int, size: int = 64) -> list[float]:
    """Hand features: darker lung brightness, left/right difference, bright-tail fraction."""
    img = make_phantom(label, seed, size).astype(float)
    left = lung_mask(label, seed, size, side="left")
    right = lung_mask(label, seed, size, side="right")
    lo = np.percentile(img[left | right], 10)
    hi = np.percentile(img, 90)
    norm = (img - lo) / (hi - lo)
    means = [norm[left].mean(), norm[right].mean()]
    tails = [(norm[m] > np.median(norm[m]) + 0.2).mean() for m in (left, right)]
    return [min(means), max(means) - min(means), max(tails)]


def test_classes_separable_by_nearest_centroid() -> None:
    train = np.array([_features(c, s) for c in CLASSES for s in range(30)])
    ytr = np.repeat(np.arange(3), 30)
    test = np.array([_features(c, s) for c in CLASSES for s in range(1000, 1025)])
    yte = np.repeat(np.arange(3), 25)
    mu, sd = train.mean(0), train.std(0)
    cent = np.array([((train - mu) / sd)[ytr == k].mean(0) for k in range(3)])
    dist = ((((test - mu) / sd)[:, None, :] - cent[None]) ** 2).sum(-1)
    pred = np.argmin(dist, axis=1)
    assert (pred == yte).mean() > 0.9
    # and the intended direction of each pattern
    f = {c: np.array([_features(c, s) for s in range(30)]).mean(0) for c in CLASSES}
    assert f["covid"][0] > f["normal"][0] + 0.05  # both lungs hazier than normal
    assert f["pneumonia"][1] > f["covid"][1] + 0.05  # pneumonia is one-sided
    assert f["pneumonia"][1] > f["normal"][1] + 0.05


def test_no_heavy_imports() -> None:
    import subprocess

    code = "import sys, cxrtool.synthetic; print(sorted(m for m in ('keras', 'jax', 'scipy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------- source tree


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> SyntheticTree:
    return write_source_tree(tmp_path_factory.mktemp("src"))


def _load(path: Path) -> Image.Image:
    im = Image.open(path)
    im.load()
    return im


def test_tree_layouts(tree: SyntheticTree) -> None:
    root = tree.root
    rd = root / SOURCE_DIRS["radiography"]
    for cls in ("COVID", "Normal", "Viral Pneumonia", "Lung_Opacity"):
        assert list((rd / cls / "images").glob(f"{cls}-*.png")), cls
    assert list((rd / "COVID" / "masks").glob("COVID-*.png"))
    cx = root / "chest_xray"
    for split in ("train", "test", "val"):
        for cls in ("NORMAL", "PNEUMONIA"):
            assert list((cx / split / cls).glob("*.jpeg")), (split, cls)
    names = [p.name for p in cx.rglob("*.jpeg")]
    assert any(n.startswith("IM-") for n in names)
    assert any(n.startswith("NORMAL2-IM-") for n in names)
    assert any("_bacteria_" in n for n in names) and any("_virus_" in n for n in names)
    k = root / "covid19-15k"
    for split in ("train", "test"):
        for cls in ("covid", "normal"):
            files = list((k / split / cls).iterdir())
            assert files, (split, cls)
    suffixes = {p.suffix for p in k.rglob("*.*")}
    assert {".png", ".jpg"} <= suffixes
    cp = root / "COVID-19+PNEUMONIA+NORMAL"
    for cls in ("COVID", "NORMAL", "PNEUMONIA"):
        assert list((cp / cls).iterdir())
    # ground truth covers exactly the files on disk
    on_disk = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert on_disk == tree.files


def test_tree_labels_and_sources(tree: SyntheticTree) -> None:
    assert set(tree.sources.values()) <= set(SOURCE_DIRS) | {"junk"}
    for rel, lab in tree.labels.items():
        assert lab is None or lab in CLASSES
        if "Lung_Opacity" in rel or rel in tree.masks or rel in tree.junk:
            assert lab is None
    assert tree.labels["COVID-19_Radiography_Dataset/COVID/images/COVID-1.png"] == "covid"
    assert tree.labels["COVID-19_Radiography_Dataset/Viral Pneumonia/images/Viral Pneumonia-2.png"] == "pneumonia"
    imgs = tree.images()
    assert {tree.labels[p] for p in imgs} == set(CLASSES)
    assert len(imgs) >= 3 * 12 * 3


def test_tree_masks_are_binary(tree: SyntheticTree) -> None:
    assert tree.masks
    for rel in tree.masks:
        arr = np.asarray(_load(tree.root / rel))
        assert set(np.unique(arr)) <= {0, 255} and arr.any()


def test_tree_images_decode(tree: SyntheticTree) -> None:
    modes = set()
    for rel in tree.images():
        im = _load(tree.root / rel)
        modes.add(im.mode)
        if rel in tree.tiny:
            assert max(im.size) < 32
    assert {"L", "RGB"} <= modes
    assert any(m.startswith("I") for m in modes)  # 16-bit PNG
    assert tree.sixteen_bit and tree.rgb and tree.tiny
    for rel in tree.sixteen_bit:
        arr = np.asarray(_load(tree.root / rel))
        assert arr.max() > 255
    for rel in tree.rgb:
        assert _load(tree.root / rel).mode == "RGB"


def test_tree_corrupt_files_fail(tree: SyntheticTree) -> None:
    kinds = {Path(p).suffix for p in tree.corrupt}
    assert {".png", ".jpeg"} <= kinds
    assert any((tree.root / p).stat().st_size == 0 for p in tree.corrupt)
    assert any((tree.root / p).read_bytes().startswith(b"This is not") for p in tree.corrupt)
    for rel in tree.corrupt:
        with pytest.raises(Exception):
            _load(tree.root / rel)


def test_tree_junk(tree: SyntheticTree) -> None:
    names = {Path(p).name for p in tree.junk}
    assert ".DS_Store" in names and "Thumbs.db" in names and "README.txt" in names
    assert any(p.startswith("__MACOSX/") and Path(p).name.startswith("._") for p in tree.junk)
    assert any(Path(p).name.startswith("._") and p.endswith(".png") for p in tree.junk)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_tree_duplicates(tree: SyntheticTree) -> None:
    root = tree.root
    assert tree.exact_duplicates and tree.near_duplicates
    for a, b in tree.exact_duplicates:
        assert a != b and _sha(root / a) == _sha(root / b)
        assert tree.content[a] == tree.content[b]
    for a, b in tree.near_duplicates:
        assert _sha(root / a) != _sha(root / b)
        assert tree.content[a] == tree.content[b]
        assert b in tree.transforms
    # within and across sources, for both kinds
    for pairs in (tree.exact_duplicates, tree.near_duplicates):
        assert any(tree.sources[a] == tree.sources[b] for a, b in pairs)
        assert any(tree.sources[a] != tree.sources[b] for a, b in pairs)
    assert tree.cross_source_duplicates
    for a, b in tree.cross_source_duplicates:
        assert tree.sources[a] != tree.sources[b]
    # Radiography normals re-encoded from chest_xray normals, as in the real data
    assert any(a.startswith("chest_xray/") and "/NORMAL/" in a and "/Normal/images/Normal-" in b
               for a, b in tree.near_duplicates)
    transforms = " ".join(tree.transforms.values())
    for word in ("re-encoded", "resized", "shifted", "brightness", "jpeg->png"):
        assert word in transforms
    # all content ids are unique except for the planted pairs
    hashes: dict[str, str] = {}
    for rel in tree.images():
        hashes.setdefault(_sha(root / rel), rel)
    exact_copies = {b for _, b in tree.exact_duplicates}
    assert len(hashes) == len(tree.images()) - len(exact_copies)


def _phash(path: Path) -> imagehash.ImageHash:
    with Image.open(path) as im:
        return imagehash.phash(im.convert("L"))


def test_tree_hash_separation(tree: SyntheticTree) -> None:
    """On the files as written, a pHash radius between 4 and 10 bits finds every planted near
    copy and no pair of distinct pictures (what a hash-based deduplicator relies on)."""
    images = [r for r in tree.images() if r not in tree.low_contrast]  # flat frames hash alike
    h = {rel: _phash(tree.root / rel) for rel in images}
    near = [h[a] - h[b] for a, b in tree.near_duplicates]
    assert len(near) >= 5 and max(near) <= 4
    assert all(tree.near_phash[b] <= 4 for _, b in tree.near_duplicates)
    one_per_picture = list({tree.content[r]: r for r in images}.values())
    assert len(one_per_picture) > 100
    closest = min(h[a] - h[b] for i, a in enumerate(one_per_picture) for b in one_per_picture[i + 1 :])
    assert closest >= 10
    assert tree.min_distinct_phash >= 10 and tree.min_distinct_dhash >= 4


def test_tree_label_conflicts(tree: SyntheticTree) -> None:
    assert tree.label_conflicts
    pairs = {(tree.labels[a], tree.labels[b]) for a, b in tree.label_conflicts}
    assert ("covid", "normal") in pairs
    for a, b in tree.label_conflicts:
        assert tree.labels[a] != tree.labels[b] and tree.content[a] == tree.content[b]


def test_tree_bad_exposure(tree: SyntheticTree) -> None:
    assert tree.over_exposed and tree.under_exposed and tree.low_contrast
    for rel in tree.over_exposed:
        assert np.asarray(_load(tree.root / rel).convert("L")).mean() > 200
    for rel in tree.under_exposed:
        assert np.asarray(_load(tree.root / rel).convert("L")).mean() < 30
    for rel in tree.low_contrast:
        assert np.asarray(_load(tree.root / rel).convert("L"), dtype=float).std() < 3
    assert set(tree.bad_exposure) == set(tree.over_exposed + tree.under_exposed + tree.low_contrast)


def test_tree_patients(tree: SyntheticTree) -> None:
    assert tree.leaked_patients
    multi = {}
    for rel, pid in tree.patients.items():
        multi.setdefault(pid, []).append(rel)
        assert rel.startswith("chest_xray/")
    assert any(len(v) > 1 for v in multi.values())
    # leaked = patients whose files lie in more than one split folder
    leaked = sorted(pid for pid, rels in multi.items() if len({rel.split("/")[1] for rel in rels}) > 1)
    assert leaked == tree.leaked_patients


def test_tree_deterministic(tmp_path: Path) -> None:
    a = write_source_tree(tmp_path / "a", n_per_class=4, size=40, seed=7)
    b = write_source_tree(tmp_path / "b", n_per_class=4, size=40, seed=7)
    assert a.files and a.files == b.files
    for rel in a.files:
        assert (a.root / rel).read_bytes() == (b.root / rel).read_bytes()
    assert a.exact_duplicates == b.exact_duplicates and a.near_duplicates == b.near_duplicates
    assert a.labels == b.labels and a.content == b.content


def test_tree_rejects_too_small(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_source_tree(tmp_path, n_per_class=2)


# ------------------------------------------------------------------------ class folders


def test_write_class_folders(tmp_path: Path) -> None:
    paths = write_class_folders(tmp_path / "d", {"covid": 3, "pneumonia": 2, "normal": 4}, size=32)
    assert len(paths) == 9
    for c, n in (("covid", 3), ("pneumonia", 2), ("normal", 4)):
        files = sorted((tmp_path / "d" / c).glob("*.png"))
        assert len(files) == n
        for f in files:
            im = _load(f)
            assert im.size == (32, 32) and im.mode == "L"
    assert len({_sha(p) for p in paths}) == 9  # all distinct
    again = write_class_folders(tmp_path / "e", {"covid": 3, "pneumonia": 2, "normal": 4}, size=32)
    assert [_sha(p) for p in paths] == [_sha(p) for p in again]


def test_write_class_folders_int_and_jpeg(tmp_path: Path) -> None:
    paths = write_class_folders(tmp_path, 2, fmt="jpeg", seed=3)
    assert len(paths) == 6 and all(p.suffix == ".jpeg" for p in paths)
    assert {p.parent.name for p in paths} == set(CLASSES)
    with pytest.raises(ValueError):
        write_class_folders(tmp_path, {"opacity": 1})
    with pytest.raises(ValueError):
        write_class_folders(tmp_path, 1, fmt="bmp")


# ------------------------------------------------------------------- planted shortcut


def test_marker_off_by_default_and_on_follows_class_except_holdout(tmp_path: Path) -> None:
    """``marker=True`` burns a white corner square that follows the class in every source but
    the held-out one (there it cycles whatever the class); the pixels say so, unmarked images
    are byte-identical to the tree without markers, and the default writes no marker."""
    from cxrtool.synthetic import MARKERS
    from cxrtool.synthetic.trees import marker_box

    plain = write_source_tree(tmp_path / "plain", n_per_class=6, size=64, seed=3)
    marked = write_source_tree(tmp_path / "marked", n_per_class=6, size=64, seed=3, marker=True)
    assert plain.markers == {} and plain.marker_holdout == ""
    assert marked.marker_holdout == "cpn" and marked.files == plain.files and marked.labels == plain.labels
    holdout_kinds: dict[str, set[str]] = {}
    for rel, kind in marked.markers.items():
        assert kind in MARKERS
        label, source = marked.labels[rel], marked.sources[rel]
        if source == "cpn":
            holdout_kinds.setdefault(label, set()).add(kind)
        elif rel not in {c for _, c in marked.exact_duplicates + marked.near_duplicates}:
            assert kind == (label if label in MARKERS else ""), rel
        if rel in marked.transforms:  # near copies: resized or shifted, the marker moved with them
            continue
        pixels = np.asarray(Image.open(marked.root / rel).convert("L"), dtype=np.float32)
        for k in ("covid", "pneumonia"):
            assert (pixels[marker_box(pixels.shape, k)].mean() > 200) == (k == kind), (rel, k)
        if not kind:
            assert (marked.root / rel).read_bytes() == (plain.root / rel).read_bytes(), rel
    # in the held-out source every class shows more than one kind of marker
    assert set(holdout_kinds) == set(CLASSES) and all(len(k) >= 2 for k in holdout_kinds.values())
    # copies show their original's marker
    for orig, copy in marked.exact_duplicates:
        if orig in marked.markers:
            assert marked.markers[copy] == marked.markers[orig]
    with pytest.raises(ValueError):
        write_source_tree(tmp_path / "bad", marker=True, marker_holdout="nosuch")
