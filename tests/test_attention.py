"""Where a Grad-CAM map puts its heat: border-band and text-region shares
(cxrtool.gradcam.attention), the per class/source aggregation, and `evaluate --attention`."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from cxrtool.gradcam.attention import (
    ImageAttention,
    aggregate,
    band_mask,
    heat_share,
    measure,
    summarise,
    text_mask,
)
from cxrtool.synthetic import make_phantom
from cxrtool.synthetic.phantoms import lung_mask, phantom_layout

from helpers_dataset import make_dataset, read_rows, write_manifest

SIZE = 256


def test_band_mask_area():
    m = band_mask((100, 200), 0.1)
    # 10 rows top and bottom, 20 columns left and right
    assert m.sum() == 100 * 200 - 80 * 160
    assert m[0].all() and m[:, -1].all() and not m[50, 100]
    assert not band_mask((10, 10), 0.0).any()
    with pytest.raises(ValueError):
        band_mask((10, 10), 0.5)


def test_border_share_of_border_heat_centre_blob_and_uniform():
    shape = (120, 90)
    border = band_mask(shape, 0.1)
    on_border = border.astype(np.float32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    blob = np.exp(-(((yy - 60) / 10.0) ** 2 + ((xx - 45) / 8.0) ** 2)).astype(np.float32)
    uniform = np.ones(shape, np.float32)
    image = np.full(shape, 80, np.uint8)  # no text anywhere
    assert heat_share(on_border, border) == pytest.approx(1.0)
    assert heat_share(blob, border) < 1e-3
    rec = measure(uniform, image, band=0.1)
    assert rec.border_share == pytest.approx(border.mean())  # uniform heat: the area share
    assert rec.border_share / rec.border_area == pytest.approx(1.0)  # lift 1
    assert rec.text_area == 0 and rec.text_share == 0
    assert measure(np.zeros(shape), image) is None  # no heat: no numbers
    assert summarise([rec])["border_lift"] == pytest.approx(1.0)
    assert summarise([rec])["text_lift"] is None  # no text region: no lift


def _with_text(img: np.ndarray, text: str = "F: Day 15") -> tuple[np.ndarray, np.ndarray]:
    """The phantom with white text in its top-left corner (as burnt-in text sits, on the
    dark margin), and the drawn text pixels."""
    h, w = img.shape
    im = Image.fromarray(img.copy(), mode="L")
    ImageDraw.Draw(im).text((0.02 * w, 0.015 * h), text, fill=255, font=ImageFont.load_default(size=h // 16))
    arr = np.asarray(im)
    return arr, (arr.astype(int) - img.astype(int)) > 40


def _text_cases(per_class: int = 2) -> list[tuple[str, int]]:
    """Phantoms without a side marker (so every find is the drawn text or a false positive)
    whose top-left corner, where the text goes, is dark margin (text on tissue is a known
    miss, see text_mask): the first ``per_class`` of each class."""
    cases: list[tuple[str, int]] = []
    for seed in range(80):
        label = ("covid", "pneumonia", "normal")[seed % 3]
        if (sum(c == label for c, _ in cases) < per_class and phantom_layout(label, seed).marker is None
                and make_phantom(label, seed, SIZE)[: SIZE // 10, : SIZE // 3].max() < 70):
            cases.append((label, seed))
    assert len(cases) == 3 * per_class
    return cases


@pytest.mark.parametrize("label,seed", _text_cases())
def test_text_detector_finds_drawn_text_and_not_the_lungs(label, seed):
    assert phantom_layout(label, seed).marker is None
    img = make_phantom(label, seed, SIZE)
    with_text, drawn = _with_text(img)
    found = text_mask(with_text)
    assert drawn.sum() > 150
    assert found[drawn].mean() > 0.9  # recall of the drawn text pixels
    near_text = ndimage.binary_dilation(drawn, iterations=6)
    assert (found & ~near_text).sum() < 0.001 * found.size  # nothing else, anywhere
    assert not (found & lung_mask(label, seed, SIZE)).any()


def test_text_detector_on_clean_phantoms_finds_only_the_side_marker():
    """A phantom without a marker gives (almost) nothing; on one with a side marker (a bright
    plate, planted by make_phantom) whatever it finds is that marker (a plate wider than the
    detector's window or on bright anatomy can be missed: see text_mask)."""
    clean, marked = 0, 0
    for seed in range(12):
        label = ("covid", "pneumonia", "normal")[seed % 3]
        img = make_phantom(label, seed, SIZE)
        found = text_mask(img)
        marker = phantom_layout(label, seed).marker
        if marker is None:
            clean += 1
            assert found.mean() < 1e-3, seed
        else:
            mx, my, ms = marker  # centre (x, y) and size as fractions of the image
            ys, xs = np.nonzero(found)
            marked += bool(ys.size)
            assert np.all(np.abs(xs / SIZE - mx) < ms + 0.03) and np.all(np.abs(ys / SIZE - my) < ms + 0.03), seed
    assert clean and marked


def test_aggregate_equals_hand_computation():
    recs = [
        ImageAttention(border_share=0.5, border_area=0.36, text_share=0.1, text_area=0.01),
        ImageAttention(border_share=0.3, border_area=0.36, text_share=0.0, text_area=0.0),
        ImageAttention(border_share=0.2, border_area=0.36, text_share=0.3, text_area=0.02),
        None,  # a map without heat: left out, counted
    ]
    labels = ["covid", "covid", "normal", "normal"]
    sources = ["a", "b", "a", "a"]
    agg = aggregate(recs, labels, sources)
    assert agg["no_heat"] == 1
    covid = agg["per_class"]["covid"]
    assert covid["n"] == 2
    assert covid["border_share"] == pytest.approx(0.4)
    assert covid["border_lift"] == pytest.approx(0.4 / 0.36)
    assert covid["text_share"] == pytest.approx(0.05) and covid["text_area"] == pytest.approx(0.005)
    assert covid["text_lift"] == pytest.approx(10.0) and covid["text_images"] == 1
    src_a = agg["per_source"]["a"]
    assert src_a["n"] == 2 and src_a["border_share"] == pytest.approx(0.35)
    assert src_a["text_lift"] == pytest.approx(0.2 / 0.015)
    assert agg["per_source"]["b"]["text_lift"] is None
    overall = agg["overall"]
    assert overall["n"] == 3 and overall["border_share"] == pytest.approx(1.0 / 3)
    assert overall["text_images"] == 2
    assert agg["per_class"]["normal"]["n"] == 1


def test_stratified_sample_keeps_every_stratum():
    from pathlib import Path

    from cxrtool.evaluate.evalset import Item
    from cxrtool.sampling import stratified_sample

    items = [Item(Path(f"{i}.png"), f"{i}.png", lab, src, f"g{i}")
             for i, (lab, src) in enumerate([("covid", "a")] * 60 + [("covid", "b")] * 20 + [("normal", "a")] * 20)]
    strata = [(it.label, it.source) for it in items]
    picked = stratified_sample(strata, 10, seed=0)
    assert len(picked) == 10 and picked == sorted(set(picked))
    kinds = [(items[i].label, items[i].source) for i in picked]
    assert kinds.count(("covid", "a")) == 6 and kinds.count(("covid", "b")) == 2 and kinds.count(("normal", "a")) == 2
    assert stratified_sample(strata, 10, seed=0) == picked  # deterministic
    assert stratified_sample(strata[:5], 10) == list(range(5))


@pytest.fixture(scope="module")
def attention_run(tmp_path_factory):
    """A tiny dataset with two sources (one with burnt-in text), a 1-epoch CNN, and
    `cxrtool evaluate DS -m cnn --attention` through the CLI."""
    import contextlib
    import io

    from cxrtool.cli import main
    from cxrtool.train import TrainOptions, train

    root = tmp_path_factory.mktemp("attn")
    data = make_dataset(root / "data", {"train": 6, "val": 2, "test": 4}, size=160, seed=3)
    rows = read_rows(data)
    for i, r in enumerate(r for r in rows if r["split"] == "test"):
        if i % 2:
            r["source"] = "stamped"
            path = data / r["file"]
            img = np.asarray(Image.open(path))
            Image.fromarray(_with_text(img, "G: 18")[0], mode="L").save(path)
    write_manifest(data, rows)
    models = root / "models"
    train(data, "cnn", options=TrainOptions(epochs=1, image_size=32, batch_size=8, seed=0, augment=False),
          out=models / "cnn.keras")
    out = root / "out"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["evaluate", str(data), "-m", "cnn", "--models-dir", str(models), "--out", str(out),
                     "--format", "json", "--bootstrap", "0", "--attention", "--attention-max", "10",
                     "--attention-band", "0.15"])
    return {"code": code, "stdout": stdout.getvalue(), "stderr": stderr.getvalue(), "out": out}


def _finite_numbers(summary: dict) -> None:
    for key in ("border_share", "border_area", "border_lift", "text_share", "text_area"):
        assert isinstance(summary[key], float) and math.isfinite(summary[key]), key
    assert 0 <= summary["border_share"] <= 1 and 0 <= summary["text_share"] <= 1


def test_cli_attention_section(attention_run):
    assert attention_run["code"] == 0, attention_run["stderr"]
    doc = json.loads(attention_run["stdout"])
    assert doc == json.loads((attention_run["out"] / "metrics.json").read_text())
    a = doc["attention"]
    assert a["settings"]["n_images"] == 10 and a["settings"]["band"] == 0.15
    assert set(a["models"]) == set(doc["models"]) == {"cnn"}
    m = a["models"]["cnn"]
    assert m["overall"]["n"] + m["no_heat"] == 10
    _finite_numbers(m["overall"])
    assert m["overall"]["border_area"] == pytest.approx(1 - 0.7 * 0.7, abs=0.02)
    assert set(m["per_source"]) == {"phantom", "stamped"}
    assert set(m["per_class"]) <= {"covid", "pneumonia", "normal"}
    assert sum(v["n"] for v in m["per_class"].values()) == m["overall"]["n"]
    # the detector finds the stamped text, and not much on the plain phantoms
    assert m["per_source"]["stamped"]["text_images"] == m["per_source"]["stamped"]["n"]
    assert m["per_source"]["stamped"]["text_area"] > m["per_source"]["phantom"]["text_area"]
    # attention.csv: one row per explained image, the same numbers as the summary
    with (attention_run["out"] / "attention.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 10 and {r["model"] for r in rows} == {"cnn"}
    shares = [float(r["border_share"]) for r in rows if r["border_share"]]
    assert np.mean(shares) == pytest.approx(m["overall"]["border_share"], rel=1e-4)
    report = (attention_run["out"] / "report.md").read_text()
    assert "## Where the models look" in report and "| cnn | all |" in report and "source stamped" in report
    assert "Where the models look" in attention_run["stderr"]  # the rich table


def test_attention_options_are_checked():
    from cxrtool.errors import UsageError
    from cxrtool.evaluate.attention import check_attention_options

    with pytest.raises(UsageError, match="--attention-max"):
        check_attention_options(0, 0.1)
    with pytest.raises(UsageError, match="--attention-band"):
        check_attention_options(10, 0.6)
