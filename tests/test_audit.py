"""The build-dataset shortcut audit (cxrtool.build.audit): hand-made thumbnails whose answer is
known (a border stripe, a centre stripe, nothing), label-versus-source numbers recomputed by
hand, and the planted marker of the synthetic tree found end to end through the library and
the CLI (and not found without it)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cxrtool.build import BuildOptions, build_dataset
from cxrtool.build.analyse import THUMB
from cxrtool.build.report import audit_markdown
from cxrtool.build.audit import border_mask, grouped_folds, label_vs_source, shortcut_audit
from cxrtool.sampling import stratified_sample
from cxrtool.build.types import Analysis
from cxrtool.cli import main
from cxrtool.synthetic import write_source_tree


def fake(pixels: np.ndarray, fmt: str = "PNG", size: int = 1000) -> Analysis:
    """An Analysis as build.analyse makes it, from a THUMB x THUMB uint8 array."""
    return Analysis(width=256, height=256, format=fmt, mode="L", bits=8, file_size=size, thumb=pixels.tobytes())


def noise_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(40, 200, size=(n, THUMB, THUMB), dtype=np.uint8)


def audit_of(images: np.ndarray, sources: list[str], labels: list[str], **kw) -> dict:
    return shortcut_audit([fake(im) for im in images], sources, labels, [f"g{i}" for i in range(len(images))], **kw)


# ---------------------------------------------------------------- building blocks


def test_border_mask_is_the_outer_eighth():
    mask = border_mask()
    band = THUMB // 8
    assert mask.shape == (THUMB, THUMB) and mask.sum() == THUMB * THUMB - (THUMB - 2 * band) ** 2
    assert not mask[band:-band, band:-band].any()
    assert mask[:band].all() and mask[-band:].all() and mask[:, :band].all() and mask[:, -band:].all()


def test_grouped_folds_never_split_a_group():
    rng = np.random.default_rng(0)
    groups = [f"p{i // 3}" for i in range(300)]  # three images per patient
    y = [["a", "b"][int(rng.integers(2))] for _ in groups]
    folds = grouped_folds(y, groups, seed=0)
    assert len(folds) == 5
    seen = np.concatenate([test for _, test in folds])
    assert sorted(seen.tolist()) == list(range(300))  # a partition
    for train, test in folds:
        assert not {groups[i] for i in train} & {groups[i] for i in test}


def test_stratified_sample_keeps_proportions_and_is_seeded():
    strata = ["a"] * 900 + ["b"] * 90 + ["c"] * 10
    idx = stratified_sample(strata, 100, seed=3)
    picked = [strata[i] for i in idx]
    assert (picked.count("a"), picked.count("b"), picked.count("c")) == (90, 9, 1)
    assert np.array_equal(idx, stratified_sample(strata, 100, seed=3))
    assert not np.array_equal(idx, stratified_sample(strata, 100, seed=4))
    assert np.array_equal(stratified_sample(strata, 5000, seed=0), np.arange(1000))
    # a stratum too small for its proportional share still gets its one row
    tiny = ["a"] * 995 + ["b"] * 5
    assert sum(tiny[i] == "b" for i in stratified_sample(tiny, 50, seed=0)) == 1


def test_label_vs_source_recomputed_by_hand():
    # source A: 30 covid, 10 normal; source B: 5 covid, 55 normal
    sources = ["A"] * 40 + ["B"] * 60
    labels = ["covid"] * 30 + ["normal"] * 10 + ["covid"] * 5 + ["normal"] * 55
    got = label_vs_source(labels, sources)
    n = 100
    assert got["majority_rate"] == pytest.approx(65 / n)  # normal overall
    assert got["source_only_accuracy"] == pytest.approx((30 + 55) / n)  # A -> covid, B -> normal
    assert got["lift"] == pytest.approx(((85 - 65) / n) / (1 - 65 / n), abs=1e-4)
    assert got["follows_source"] is True
    table = np.array([[30, 10], [5, 55]], float)
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / n
    chi2 = ((table - expected) ** 2 / expected).sum()
    assert got["cramers_v"] == pytest.approx(math.sqrt(chi2 / n), abs=1e-4)  # min(r, c) - 1 = 1
    p = table / n
    px, py = p.sum(1), p.sum(0)
    mi = sum(p[i, j] * math.log(p[i, j] / (px[i] * py[j])) for i in range(2) for j in range(2))
    hx, hy = -(px * np.log(px)).sum(), -(py * np.log(py)).sum()
    assert got["normalised_mutual_information"] == pytest.approx(mi / ((hx + hy) / 2), abs=1e-4)
    assert got["per_class"] == {"covid": {"dominant_source": "A", "share": pytest.approx(30 / 35, abs=1e-4)},
                                "normal": {"dominant_source": "B", "share": pytest.approx(55 / 65, abs=1e-4)}}
    independent = label_vs_source(["covid", "normal"] * 50, ["A"] * 50 + ["B"] * 50)
    assert independent["lift"] == 0 and independent["follows_source"] is False


# ---------------------------------------------------------------- hand-made thumbnails


def test_border_stripe_found_by_border_probe_centre_stripe_is_not():
    """Source B has a bright stripe in the top 2 rows (inside the border band): the border and
    whole-image probes tell the sources apart; a stripe in the centre shows only to the whole
    image; with no stripe every probe is at chance (file properties are the same throughout)."""
    n = 200
    sources = ["A"] * (n // 2) + ["B"] * (n // 2)
    labels = ["covid", "normal"] * (n // 2)  # independent of the source
    base = noise_images(n, seed=1)

    border = base.copy()
    border[n // 2 :, :2, :] = 255
    a = audit_of(border, sources, labels)
    probes = a["source_probes"]
    assert probes["border"]["balanced_accuracy"] >= 0.95 and probes["border"]["verdict"] == "far above chance"
    assert probes["whole_image"]["balanced_accuracy"] >= 0.95
    assert probes["border"]["chance"] == 0.5 and probes["border"]["majority_rate"] == 0.5
    assert abs(probes["file_properties"]["balanced_accuracy"] - 0.5) <= 0.1
    assert a["label_vs_source"]["follows_source"] is False
    assert a["warning"] == ""  # the source shows, but the label does not follow it

    centre = base.copy()
    centre[n // 2 :, 15:17, 8:24] = 255
    c = audit_of(centre, sources, labels)
    assert c["source_probes"]["whole_image"]["balanced_accuracy"] >= 0.9
    assert abs(c["source_probes"]["border"]["balanced_accuracy"] - 0.5) <= 0.15

    none = audit_of(base, sources, labels)
    for name, p in none["source_probes"].items():
        assert abs(p["balanced_accuracy"] - 0.5) <= 0.15, (name, p)
    assert abs(none["label_probes"]["border"]["balanced_accuracy"] - 0.5) <= 0.15


def test_file_properties_probe_sees_format():
    n = 120
    images = noise_images(n, seed=2)
    sources = ["jpeg-site"] * (n // 2) + ["png-site"] * (n // 2)
    analyses = [fake(im, fmt="JPEG" if i < n // 2 else "PNG") for i, im in enumerate(images)]
    a = shortcut_audit(analyses, sources, ["normal", "covid"] * (n // 2), [str(i) for i in range(n)])
    assert a["source_probes"]["file_properties"]["balanced_accuracy"] == 1.0
    assert abs(a["source_probes"]["border"]["balanced_accuracy"] - 0.5) <= 0.15


def test_loud_warning_when_label_follows_source_and_border_shows_it():
    n = 200
    images = noise_images(n, seed=3)
    images[n // 2 :, -2:, :] = 255  # source B: a bright bottom stripe
    sources = ["A"] * (n // 2) + ["B"] * (n // 2)
    labels = ["pneumonia"] * (n // 2) + ["normal"] * (n // 2)  # the label IS the source
    a = audit_of(images, sources, labels)
    assert a["label_vs_source"]["source_only_accuracy"] == 1.0
    assert a["warning"].startswith("SHORTCUT: 100% of normal images come from B and the image border alone recognises B")
    assert "100% of pneumonia images come from A" in a["warning"]
    assert "the hospital instead of the disease" in a["warning"]
    assert "label can be told from the image border" in a["warning"]  # here the border shows the label too
    # the same label-follows-source split without the stripe: the source does not show, no warning
    quiet = audit_of(noise_images(n, seed=3), sources, labels)
    assert quiet["label_vs_source"]["follows_source"] is True and quiet["warning"] == ""


def test_one_source_or_too_few_images_skipped_with_a_note():
    a = audit_of(noise_images(10, seed=4), ["only"] * 10, ["covid", "normal"] * 5)
    assert "skipped" in a and "only one source" in a["skipped"] and a["warning"] == ""
    assert "source_probes" not in a
    tiny = audit_of(noise_images(3, seed=4), ["A", "A", "B"], ["covid", "covid", "normal"])
    assert "too few" in tiny["skipped"] and tiny["warning"] == ""


def test_a_probe_that_calls_everything_the_big_source_recognises_nothing():
    """Covid is 100% from A, but the border (noise) does not show A: a probe that calls most
    images A has A's recall near 1 and a high precision (A is 92% of the images), yet a low
    specificity, so no warning."""
    n = 60
    sources = ["A"] * 55 + ["B"] * 5
    labels = ["covid"] * 55 + ["normal"] * 5
    a = audit_of(noise_images(n, seed=6), sources, labels)
    assert a["label_vs_source"]["per_class"]["covid"] == {"dominant_source": "A", "share": 1.0}
    assert a["source_probes"]["border"]["specificity"]["A"] < 0.8
    assert a["warning"] == ""


def test_sample_capped_and_deterministic():
    n = 300
    images = noise_images(n, seed=5)
    sources = ["A", "B", "C"] * 100
    labels = ["covid"] * 150 + ["normal"] * 150
    a = audit_of(images, sources, labels, max_images=120, seed=7)
    assert a["images"] == n and a["sampled"] == 120
    b = audit_of(images, sources, labels, max_images=120, seed=7)
    a.pop("seconds"), b.pop("seconds")
    assert a == b


# ---------------------------------------------------------------- planted marker, end to end


@pytest.fixture(scope="module")
def marked(tmp_path_factory):
    root = tmp_path_factory.mktemp("marked") / "src"
    tree = write_source_tree(root, n_per_class=30, marker=True)
    return tree, build_dataset([root], tmp_path_factory.mktemp("o") / "ds", BuildOptions(workers=2, dry_run=True, figures=False))


@pytest.fixture(scope="module")
def unmarked(tmp_path_factory):
    root = tmp_path_factory.mktemp("unmarked") / "src"
    write_source_tree(root, n_per_class=30)
    return root, build_dataset([root], tmp_path_factory.mktemp("o") / "ds", BuildOptions(workers=2, dry_run=True, figures=False))


def test_planted_marker_found_and_warned(marked):
    tree, result = marked
    audit = result.report["audit"]
    label_border = audit["label_probes"]["border"]
    # the marker follows the class in 3 of 4 sources: far above chance from the border alone
    assert label_border["skill"] >= 0.5 and label_border["verdict"] == "far above chance"
    assert audit["warning"].startswith("SHORTCUT") and "border alone" in audit["warning"]
    assert result.report["warnings"][0] == audit["warning"]
    # the probe sees the kept images, each of which was marked as the ground truth says
    kept = {c.key: c.item.label for c in result.kept}
    assert audit["images"] == len(kept)
    follows = [label == tree.markers[k] or (label == "normal" and tree.markers[k] == "")
               for k, label in kept.items() if tree.sources[k] != tree.marker_holdout and k in tree.markers]
    assert follows and all(follows)


def test_no_marker_no_warning(unmarked, marked):
    _, result = unmarked
    audit = result.report["audit"]
    assert audit["warning"] == "" and not any(w.startswith("SHORTCUT") for w in result.report["warnings"])
    assert audit["label_probes"]["border"]["skill"] < 0.5
    assert audit["label_vs_source"]["follows_source"] is False
    # the marker is what the probe found: the same tree without it scores far lower
    marked_score = marked[1].report["audit"]["label_probes"]["border"]["balanced_accuracy"]
    assert marked_score - audit["label_probes"]["border"]["balanced_accuracy"] >= 0.2


def test_label_statistics_leave_out_the_external_test_split(unmarked, tmp_path):
    """With --test-source, what the label follows is measured on train/val only: the held-out
    source's normals are 100% normal by construction and say nothing about what a model learns."""
    root, _ = unmarked
    options = BuildOptions(workers=2, dry_run=True, figures=False, test_sources=("chest_xray:normal",))
    result = build_dataset([root], tmp_path / "ds", options)
    audit = result.report["audit"]
    learned = [c for c in result.kept if c.split != "test"]
    everything = result.kept
    assert len(learned) < len(everything)
    expect = label_vs_source([c.item.label for c in learned], [c.item.source for c in learned])
    assert audit["label_vs_source"] == expect
    assert "train/val" in audit["label_images"] and str(len(learned)) in audit["label_images"]
    # counting the held-out normals would have changed the statistics (the test can fail)
    assert label_vs_source([c.item.label for c in everything], [c.item.source for c in everything]) != expect
    # the source probes still see every kept image
    assert audit["images"] == len(everything)
    assert "external test split is left out" in "\n".join(audit_markdown(audit))


def test_cli_audit_rendered_and_no_audit(marked, tmp_path, capsys):
    tree, _ = marked
    assert main(["build-dataset", str(tree.root), str(tmp_path / "a"), "--dry-run", "--json", "--no-figures", "--workers", "1"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["audit"]["label_probes"]["border"]["skill"] >= 0.5
    assert "Shortcut audit" in err and "the border alone" in err and "file properties" in err
    assert "SHORTCUT" in err and "instead of the disease" in err

    ds = tmp_path / "b"
    assert main(["build-dataset", str(tree.root), str(ds), "--no-audit", "--no-figures", "--workers", "1"]) == 0
    out, err = capsys.readouterr()
    report = json.loads((ds / "report.json").read_text())
    assert report["audit"] is None and "SHORTCUT" not in err and "Shortcut audit" not in err
    assert "## Shortcut audit\n\nNot run (--no-audit)." in (ds / "report.md").read_text()


def test_report_md_has_the_audit_table(marked):
    from cxrtool.build.report import markdown

    text = markdown(marked[1].report)
    section = text[text.index("## Shortcut audit") :]
    assert "| source from the border alone |" in section and "| label from the border alone |" in section
    assert "**SHORTCUT" in section and "Cramér's V" in section
