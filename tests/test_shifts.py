"""`evaluate --shift`: the acquisition-shift transforms one by one, then a CLI run on a tiny
trained model whose per-shift numbers must equal an independent recomputation (apply the
transform, resize, predict, scikit-learn)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from cxrtool import CLASSES
from cxrtool.errors import UsageError
from cxrtool.evaluate.shifts import CROP, PAD, SHIFTS, describe, image_rng, select_shifts
from cxrtool.synthetic import make_phantom

from helpers_dataset import make_dataset

SHAPE = (150, 120)  # not square: crop and pad must treat height and width separately


@pytest.fixture(scope="module")
def image():
    return make_phantom("covid", 3, SHAPE)


def _apply(name: str, img: np.ndarray, severity: int, index: int = 0) -> np.ndarray:
    return SHIFTS[name].apply(img, severity, image_rng(0, name, severity, index))


def _all_conditions():
    return [(name, s) for name, shift in SHIFTS.items() for s in shift.levels]


@pytest.mark.parametrize("name,severity", _all_conditions())
def test_every_condition_keeps_dtype_and_shape(image, name, severity):
    before = image.copy()
    out = _apply(name, image, severity)
    assert out.dtype == np.uint8 and out.ndim == 2
    assert np.array_equal(image, before), "the input must not be modified"
    h, w = SHAPE
    if name == "crop":
        f = CROP[severity]
        assert out.shape == (h - 2 * round(f * h), w - 2 * round(f * w))
    elif name == "pad":
        f = PAD[severity]
        assert out.shape == (h + 2 * round(f * h), w + 2 * round(f * w))
    else:
        assert out.shape == SHAPE
        assert not np.array_equal(out, image), "every severity changes the image"
    assert name in describe() and str(severity) in describe()[name]["severities"]


@pytest.mark.parametrize("name", list(SHIFTS))
def test_severity_zero_is_the_identity(image, name):
    assert SHIFTS[name].apply(image, 0, image_rng(0, name, 0, 0)) is image
    with pytest.raises(UsageError, match="severities"):
        SHIFTS[name].apply(image, 9, image_rng(0, name, 9, 0))


def test_intensity_shifts(image):
    assert np.array_equal(_apply("invert", image, 1), 255 - image)
    ramp = np.tile(np.arange(256, dtype=np.uint8), (4, 1))
    means = []
    for s in (1, 2, 3):
        g = _apply("gamma", ramp, s)[0].astype(int)
        assert (np.diff(g) >= 0).all() and g[0] == 0 and g[-1] == 255  # monotone, ends fixed
        means.append(_apply("gamma", image, s).mean())
    assert image.mean() > means[0] > means[1] > means[2]  # mid-tones darker with severity
    stds = [image.std()] + [_apply("contrast", image, s).std() for s in (1, 2, 3)]
    assert all(a > b for a, b in zip(stds, stds[1:]))
    assert abs(_apply("contrast", image, 2).mean() - image.mean()) < 1.0  # around the mean
    bright = [image.mean()] + [_apply("brightness", image, s).mean() for s in (1, 2, 3)]
    assert all(a < b for a, b in zip(bright, bright[1:]))
    assert _apply("brightness", np.full((4, 4), 250, np.uint8), 1).max() == 255  # clipped, no wrap-around


def test_blur_noise_jpeg_downsample(image):
    def detail(x):  # energy of the pixel-to-pixel differences
        return float(np.abs(np.diff(x.astype(float), axis=1)).mean())

    blurred = [detail(image)] + [detail(_apply("blur", image, s)) for s in (1, 2, 3)]
    assert all(a > b for a, b in zip(blurred, blurred[1:]))
    down = [detail(_apply("downsample", image, s)) for s in (1, 2, 3)]
    assert detail(image) > down[0] > down[2]

    flat = np.full((200, 200), 128, np.uint8)
    for s, sigma in ((1, 8), (3, 32)):
        diff = _apply("noise", flat, s).astype(float) - 128
        assert abs(diff.std() - sigma) < 0.1 * sigma and abs(diff.mean()) < 1
    # seeded per image: the same (seed, shift, severity, index) gives the same noise, another index other noise
    assert np.array_equal(_apply("noise", image, 2, index=5), _apply("noise", image, 2, index=5))
    assert not np.array_equal(_apply("noise", image, 2, index=5), _apply("noise", image, 2, index=6))

    errors = []
    for s in (1, 2, 3):
        out = _apply("jpeg", image, s)
        err = np.abs(out.astype(int) - image).mean()
        assert 0 < err < 12  # changed, but still the same picture
        errors.append(err)
    assert errors[2] > errors[0]


def test_crop_and_pad_frame_the_same_picture(image):
    h, w = SHAPE
    dy, dx = round(0.10 * h), round(0.10 * w)
    assert np.array_equal(_apply("crop", image, 2), image[dy : h - dy, dx : w - dx])
    padded = _apply("pad", image, 2)
    assert np.array_equal(padded[dy : dy + h, dx : dx + w], image)
    border = np.ones(padded.shape, bool)
    border[dy : dy + h, dx : dx + w] = False
    assert padded[border].max() == 0


def test_text_changes_corners_only(image):
    h, w = SHAPE
    corners = {"top-left": (slice(0, h // 3), slice(0, w // 2)), "top-right": (slice(0, h // 3), slice(w // 2, w)),
               "bottom-left": (slice(2 * h // 3, h), slice(0, w // 2))}
    expected = {1: {"top-left"}, 2: {"top-left", "top-right"}, 3: {"top-left", "top-right", "bottom-left"}}
    for s in (1, 2, 3):
        out = _apply("text", image, s)
        changed = out != image
        assert (out[changed] > image[changed]).all() and (out[changed] >= 200).any()  # white, anti-aliased text
        touched = {c for c, (ys, xs) in corners.items() if changed[ys, xs].any()}
        assert touched == expected[s]
        outside = changed.copy()
        for c in expected[s]:
            outside[corners[c]] = False
        assert not outside.any()
        assert changed[h // 3 : 2 * h // 3].sum() == 0  # the middle band (lungs) untouched
    # the text grows with the severity
    assert (_apply("text", image, 3) != image).sum() > (_apply("text", image, 1) != image).sum()


def test_select_shifts():
    everything = select_shifts("all")
    assert everything == _all_conditions() and ("invert", 1) in everything and ("invert", 2) not in everything
    assert select_shifts("gamma,invert") == [("gamma", 1), ("gamma", 2), ("gamma", 3), ("invert", 1)]
    assert select_shifts(["invert", " GAMMA "], [1, 3]) == [("gamma", 1), ("gamma", 3), ("invert", 1)]
    assert select_shifts(None) == []
    with pytest.raises(UsageError, match="unknown shift bogus; known: all, gamma"):
        select_shifts("gamma,bogus")
    with pytest.raises(UsageError, match="between 1 and 3"):
        select_shifts("all", [0])
    with pytest.raises(UsageError, match="needs 'all'"):
        select_shifts(" , ")


# --- end to end -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A phantom dataset with 64 px originals, one tiny CNN (32 px) and a copy of it under
    another name (two models), and one `evaluate --shift all` through the CLI."""
    from cxrtool.cli import main
    from cxrtool.train import TrainOptions, train

    root = tmp_path_factory.mktemp("shift")
    data = make_dataset(root / "data", {"train": 8, "val": 3, "test": 6}, size=64, seed=4)
    models = root / "models"
    train(data, "cnn", options=TrainOptions(epochs=1, image_size=32, batch_size=16, seed=0, augment=False),
          out=models / "cnn_a.keras")
    shutil.copy(models / "cnn_a.keras", models / "cnn_b.keras")
    out = root / "out"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["evaluate", str(data), "-m", "cnn_a", "-m", "cnn_b", "--models-dir", str(models), "--out", str(out),
                     "--format", "json", "--bootstrap", "0", "--shift", "all"])
    return {"code": code, "doc": json.loads(stdout.getvalue()) if code == 0 else None, "stderr": stderr.getvalue(),
            "data": data, "models": models, "out": out}


def test_cli_shift_all_writes_every_condition(run):
    assert run["code"] == 0, run["stderr"]
    doc, out = run["doc"], run["out"]
    assert doc == json.loads((out / "metrics.json").read_text())
    sec = doc["shifts"]
    assert sec["images"] == 18 and sec["seed"] == 0 and set(sec["definitions"]) == set(SHIFTS)
    assert set(sec["seconds"]) == {"clean_evaluation", "shift_pass"}
    for model in ("cnn_a", "cnn_b"):
        m = sec["models"][model]
        clean = doc["models"][model]["metrics"]
        assert m["clean"]["accuracy"] == clean["accuracy"] and m["clean"]["ece"] == clean["calibration"]["ece"]
        assert m["clean"]["auc_macro"] == clean["macro"]["auc"] and m["clean"]["macro_f1"] == clean["macro"]["f1"]
        assert set(m["shifts"]) == set(SHIFTS)
        for name, shift in SHIFTS.items():
            assert set(m["shifts"][name]) == {str(s) for s in shift.levels}
            for v in m["shifts"][name].values():
                assert {"accuracy", "macro_f1", "auc_macro", "ece", "mean_confidence", "recall"} <= set(v)
                assert 0 <= v["accuracy"] <= 1 and 0 <= v["ece"] <= 1 and set(v["recall"]) == set(CLASSES)
    assert sec["models"]["cnn_a"] == sec["models"]["cnn_b"]  # the same weights, the same numbers
    with Image.open(out / "shifts.png") as im:
        assert im.size[0] > 800 and im.size[1] > 600
    assert doc["files"]["shifts"] == "shifts.png"
    report = (out / "report.md").read_text()
    assert "## Acquisition shifts" in report and "| invert | 1 | 255 - x |" in report and "![accuracy under shifts](shifts.png)" in report
    assert "largest accuracy drops" in run["stderr"]


@pytest.mark.parametrize("name,severity", [("gamma", 2), ("noise", 3), ("pad", 3)])
def test_numbers_equal_an_independent_recomputation(run, name, severity):
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    from cxrtool.imageio import load_image
    from cxrtool.inference import open_model, predict_images
    from cxrtool.manifest import read_manifest

    entries = read_manifest(run["data"]).split("test")
    y = np.asarray([CLASSES.index(e.label) for e in entries])
    shifted = [SHIFTS[name].transform(load_image(e.path), severity, image_rng(0, name, severity, i))
               for i, e in enumerate(entries)]
    probs = predict_images(open_model("cnn_a", run["models"]), shifted).astype(np.float64)
    pred = probs.argmax(1)
    got = run["doc"]["shifts"]["models"]["cnn_a"]["shifts"][name][str(severity)]
    assert got["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    assert got["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro", labels=[0, 1, 2], zero_division=0), abs=1e-12)
    assert got["auc_macro"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr", labels=[0, 1, 2]), abs=1e-6)
    conf, correct = probs.max(1), pred == y
    ece = sum(sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
              for b in range(10) if (sel := (conf >= b / 10) & ((conf < (b + 1) / 10) if b < 9 else (conf <= 1 + 1e-6))).any())
    assert got["ece"] == pytest.approx(ece, abs=1e-6)


def test_chunks_and_severity_filter_change_nothing(run, monkeypatch, capsys):
    """Small chunks (several decode rounds) and a subset of shifts and severities give the
    same numbers as the full run; bad values are usage errors (exit 2)."""
    from cxrtool.cli import main
    from cxrtool.evaluate import shift_pass

    monkeypatch.setattr(shift_pass, "CHUNK_IMAGES", 8)
    capsys.readouterr()
    code = main(["evaluate", str(run["data"]), "-m", "cnn_a", "--models-dir", str(run["models"]), "--out",
                 str(run["out"].parent / "sub"), "--format", "json", "--bootstrap", "0", "--batch-size", "4",
                 "--shift", "invert,gamma", "--shift-severities", "1,3"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    sub = json.loads(captured.out)["shifts"]["models"]["cnn_a"]["shifts"]
    full = run["doc"]["shifts"]["models"]["cnn_a"]["shifts"]
    assert list(sub) == ["gamma", "invert"] and list(sub["gamma"]) == ["1", "3"] and list(sub["invert"]) == ["1"]
    for name, levels in sub.items():
        for sev, v in levels.items():
            assert v["accuracy"] == full[name][sev]["accuracy"] and v["macro_f1"] == full[name][sev]["macro_f1"]
            assert v["auc_macro"] == pytest.approx(full[name][sev]["auc_macro"], abs=1e-6)

    base = ["evaluate", str(run["data"]), "-m", "cnn_a", "--models-dir", str(run["models"])]
    assert main(base + ["--shift", "gamma,bogus"]) == 2
    assert "unknown shift bogus" in capsys.readouterr().err
    assert main(base + ["--shift", "gamma", "--shift-severities", "one"]) == 2
    assert main(base + ["--shift", "gamma", "--shift-severities", "7"]) == 2
