"""`cxrtool ensemble`: the saved ensemble is a self-contained cxrtool model whose output is the
(weighted) mean of its members' probabilities, whose members stay addressable for Grad-CAM,
and whose errors are clear. Members are untrained models (pure plumbing, fast)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from cxrtool import CLASSES
from cxrtool.artifact import ModelInfo, read_info
from cxrtool.errors import CxrError, ModelFormatError, UsageError

from helpers_dataset import make_dataset


def _save(path, arch, size, seed, classes=CLASSES):
    from cxrtool.artifact import save_model
    from cxrtool.models import build_model, get_spec

    model = build_model(arch, image_size=size, seed=seed, classes=classes, vit_layers=1) if arch == "vit" else \
        build_model(arch, image_size=size, seed=seed, classes=classes)
    info = ModelInfo(arch, classes=list(classes), image_size=size, gradcam_layer=get_spec(arch).gradcam_layer)
    return save_model(model, path, info)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """Three untrained members (cnn 32 px, cnn 24 px, vit 18 px) and a tiny phantom dataset."""
    root = tmp_path_factory.mktemp("zoo")
    models = root / "models"
    _save(models / "cnn32.keras", "cnn", 32, 1)
    _save(models / "cnn24.keras", "cnn", 24, 2)
    _save(models / "vit18.keras", "vit", 18, 3)
    _save(models / "two.keras", "cnn", 32, 5, classes=("covid", "normal"))  # other classes
    data = make_dataset(root / "data", {"train": 2, "val": 6, "test": 3}, size=40, seed=3)
    return {"models": models, "data": data, "root": root}


def _images(n=7, seed=0):
    from cxrtool.synthetic import make_phantom

    sizes = [40, 32, 57, 24, 64, 33, 48]
    return [make_phantom(CLASSES[i % 3], seed + i, sizes[i % len(sizes)]) for i in range(n)]


def test_mean_ensemble_equals_mean_of_members(zoo):
    """Same input size for both members: no in-graph resize, so equality is exact."""
    from cxrtool.ensemble import build_ensemble
    from cxrtool.inference import open_model, predict_images

    models = zoo["models"]
    _save(models / "cnn32b.keras", "cnn", 32, 11)
    result = build_ensemble(["cnn32", "cnn32b"], name="same", models_dir=models)
    assert result.model_path == models / "same.keras"
    images = _images()
    ens = open_model("same", models)
    a, b = open_model("cnn32", models), open_model("cnn32b", models)
    p = predict_images(ens, images)
    expected = (predict_images(a, images) + predict_images(b, images)) / 2
    np.testing.assert_allclose(p, expected, atol=1e-6)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)


def test_weighted_ensemble_mixed_sizes(zoo):
    """Members of different input sizes and architectures; weights fitted on val."""
    from cxrtool.backend import import_keras
    from cxrtool.ensemble import build_ensemble, member_models
    from cxrtool.inference import model_input, open_model, predict_images

    keras = import_keras()
    models = zoo["models"]
    events = []
    result = build_ensemble(
        ["cnn32", str(models / "cnn24.keras"), "vit18"], name="mixed", method="weighted",
        data=zoo["data"], models_dir=models, progress=events.append,
    )
    # the shared progress shape (cxrtool.progress), one event per step, each with a message
    assert [(e["stage"], e["done"], e["total"]) for e in events] == \
        [("load", 0, 3), ("load", 1, 3), ("load", 2, 3), ("predict", 0, 18), ("save", 0, 1)]
    assert all(e["message"] for e in events)
    w = np.asarray(result.weights)
    assert (w >= 0).all() and abs(w.sum() - 1) < 1e-6
    assert result.val["n"] == 18 and result.val["log_loss"] <= result.val["mean_log_loss"] + 1e-9

    # metadata, readable without Keras
    info = read_info(models / "mixed.keras")
    assert info.architecture == "ensemble" and info.image_size == 32 and info.gradcam_layer == ""
    assert info.extra["method"] == "weighted"
    members = info.extra["members"]
    assert [m["name"] for m in members] == ["cnn32", "cnn24", "vit18"]
    assert [m["layer"] for m in members] == ["member_0", "member_1", "member_2"]
    assert [m["image_size"] for m in members] == [32, 24, 18]
    assert [m["gradcam_layer"] for m in members] == ["feature_map"] * 3
    for m, name in zip(members, ["cnn32", "cnn24", "vit18"]):
        assert m["fingerprint"] == hashlib.sha256((models / f"{name}.keras").read_bytes()).hexdigest()
        assert set(m) >= {"name", "path", "layer", "architecture", "image_size", "gradcam_layer", "fingerprint", "weight"}
    np.testing.assert_allclose([m["weight"] for m in members], w)
    assert info.dataset_fingerprint is not None

    # loaded from disk: probabilities == weighted mean of the nested members on the resized input
    ens = open_model("mixed", models)
    images = _images()
    x = model_input(images, 32)
    p = np.asarray(ens.model.predict_on_batch(x))
    parts = member_models(ens)
    assert [pw for _, _, pw in parts] == pytest.approx(list(w))
    mixed = 0
    for sub, minfo, weight in parts:
        s = minfo["image_size"]
        xs = x if s == 32 else keras.ops.convert_to_numpy(
            keras.layers.Resizing(s, s, interpolation="bilinear", antialias=True)(x))
        mixed = mixed + weight * np.asarray(sub.predict_on_batch(xs))
    np.testing.assert_allclose(p, mixed, atol=1e-5)

    # ...and close to the members' own pipelines (Pillow resize from the original images)
    own = sum(weight * predict_images(open_model(name, models), images)
              for (_, _, weight), name in zip(parts, ["cnn32", "cnn24", "vit18"]))
    np.testing.assert_allclose(predict_images(ens, images), own, atol=0.02)

    # Grad-CAM contract: each nested member is a usable functional model, layers addressable by name
    for sub, minfo, _ in parts:
        s = minfo["image_size"]
        assert tuple(sub.inputs[0].shape) == (None, s, s, 1)
        layer = sub.get_layer(minfo["gradcam_layer"])
        split = keras.Model(sub.inputs, [layer.output, sub.outputs[0]])
        fmap, probs = split(model_input(images[:2], s))
        assert len(fmap.shape) == 4 and probs.shape == (2, 3)


def test_fit_weights_is_the_log_loss_optimum():
    """The fitted weights beat every point of a fine simplex grid (scikit-learn log_loss)."""
    from sklearn.metrics import log_loss

    from cxrtool.ensemble import fit_weights

    rng = np.random.default_rng(0)
    n, k = 200, 3
    y = rng.integers(0, k, n)
    good = np.full((n, k), 0.1)
    good[np.arange(n), y] = 0.8
    flip = rng.random(n) < 0.2  # the good member is confidently wrong on 20%
    good[flip] = np.roll(good[flip], 1, axis=1)
    noise = rng.dirichlet(np.ones(k), n)
    w = fit_weights([good, noise], y)
    assert w.shape == (2,) and w.min() >= 0 and w.sum() == pytest.approx(1)

    def loss(a):
        return log_loss(y, a * good + (1 - a) * noise, labels=[0, 1, 2])

    grid = min(loss(a) for a in np.linspace(0, 1, 1001))
    assert loss(w[0]) <= grid + 1e-6
    assert 0.5 < w[0] < 1.0  # mixing helps against confident mistakes


def test_errors(zoo, tmp_path):
    from cxrtool.ensemble import build_ensemble, member_models
    from cxrtool.inference import open_model

    models = zoo["models"]
    with pytest.raises(ModelFormatError, match="disagree on the classes"):
        build_ensemble(["cnn32", "two"], models_dir=models, out=tmp_path / "x.keras")
    with pytest.raises(UsageError, match="at least two"):
        build_ensemble(["cnn32"], models_dir=models, out=tmp_path / "x.keras")
    with pytest.raises(UsageError, match="--data"):
        build_ensemble(["cnn32", "cnn24"], method="weighted", models_dir=models, out=tmp_path / "x.keras")
    with pytest.raises(UsageError, match="--method"):
        build_ensemble(["cnn32", "cnn24"], method="vote", models_dir=models, out=tmp_path / "x.keras")
    with pytest.raises(UsageError, match="same model file"):
        build_ensemble(["cnn32", str(models / "cnn32.keras")], models_dir=models, out=tmp_path / "x.keras")
    with pytest.raises(UsageError, match="overwrite its member"):
        build_ensemble(["cnn32", "cnn24"], name="cnn32", models_dir=models)
    with pytest.raises(CxrError, match="not found"):
        build_ensemble(["cnn32", "nope"], models_dir=models, out=tmp_path / "x.keras")
    build_ensemble(["cnn32", "cnn24"], models_dir=models, out=tmp_path / "e.keras")
    with pytest.raises(CxrError, match="itself an ensemble"):
        build_ensemble(["cnn32", str(tmp_path / "e.keras")], models_dir=models, out=tmp_path / "y.keras")
    with pytest.raises(ModelFormatError, match="not an ensemble"):
        member_models(open_model("cnn32", models))
    assert not (tmp_path / "x.keras").exists()


def test_cli(zoo, tmp_path, capsys):
    from cxrtool.cli import main

    models = zoo["models"]
    code = main(["ensemble", "cnn32", "cnn24", "--name", "cli", "--models-dir", str(models)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.strip() == str(models / "cli.keras")
    assert read_info(models / "cli.keras").extra["method"] == "mean"
    code = main(["ensemble", "cnn32", "two", "--models-dir", str(models), "--name", "bad"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: members disagree on the classes") and len(err.strip().splitlines()) == 1
    # --json prints the metadata
    code = main(["ensemble", "cnn32", "cnn24", "--name", "cli2", "--models-dir", str(models),
                 "--method", "weighted", "--data", str(zoo["data"]), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    doc = json.loads(captured.out)
    assert doc["path"] == str(models / "cli2.keras") and len(doc["weights"]) == 2


def test_ensemble_works_in_predict_and_gradcam(zoo, tmp_path, capsys):
    """The ensemble is used like any model: `cxrtool predict` and Grad-CAM (the weighted mean
    of the members' maps, each on the member's own input size)."""
    from PIL import Image

    from cxrtool.cli import main
    from cxrtool.ensemble import build_ensemble
    from cxrtool.inference import open_model, predict_images

    models = zoo["models"]
    build_ensemble(["cnn32", "cnn24", "vit18"], name="trio", models_dir=models)
    images = _images(3)
    paths = []
    for i, img in enumerate(images):
        paths.append(tmp_path / f"x{i}.png")
        Image.fromarray(img).save(paths[-1])
    capsys.readouterr()
    assert main(["predict", "--model", "trio", "--models-dir", str(models), "--format", "jsonl",
                 *map(str, paths)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    ens = open_model("trio", models)
    expected = predict_images(ens, images)
    assert len(rows) == 3
    np.testing.assert_allclose([[row[c] for c in CLASSES] for row in rows], expected, atol=1e-4)

    from cxrtool.gradcam import explain

    explained = explain(ens, images)
    assert len(explained) == 3
    for e, img in zip(explained, images):
        assert e.heatmap.shape == img.shape and np.isfinite(e.heatmap).all()
        assert [m["name"] for m in e.members] == ["cnn32", "cnn24", "vit18"]
