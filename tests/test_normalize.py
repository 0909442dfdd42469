"""Intensity normalisation inside the model (--normalize) and acquisition augmentation (--acquisition)."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from PIL import Image

from cxrtool.models.robustness import ACQUISITION_LEVELS
from helpers_dataset import make_dataset


def _images(n: int = 3, size: int = 12, seed: int = 0) -> np.ndarray:
    """Random images with different exposures, plus ties (integer pixels) to exercise equalisation."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, size, size, 1)).astype("float32")
    x[n // 2] = np.round(x[n // 2] * 0.3 + 40)  # a dark, low-contrast image with many ties
    return x


# numpy references, written from the definitions in the docs


def _ref_standardize(img):
    z = (img - img.mean()) / max(img.std(), 1e-3)
    return np.clip(127.5 + z * 127.5 / 3.0, 0, 255)


def _ref_window(img, low, high):
    lo, hi = np.percentile(img, [low, high])
    return np.clip((img - lo) / max(hi - lo, 1e-3), 0, 1) * 255.0


def _ref_equalize(img):
    flat = img.ravel()
    ordered = np.sort(flat)
    count = np.searchsorted(ordered, flat, side="right")
    first = np.searchsorted(ordered, ordered[0], side="right")
    return (255.0 * (count - first) / max(flat.size - first, 1)).reshape(img.shape)


def _ref_clahe(img, tiles, clip):
    """OpenCV's CLAHE, loop by loop: clipped tile histograms, bilinear blend of tile mappings."""
    h, w = img.shape[:2]
    lv = np.clip(np.floor(img[..., 0]), 0, 255).astype(int)
    pad = np.pad(lv, ((0, -h % tiles), (0, -w % tiles)), mode="reflect")
    th, tw = pad.shape[0] // tiles, pad.shape[1] // tiles
    limit = max(int(clip * th * tw / 256), 1)
    luts = np.zeros((tiles, tiles, 256))
    for i in range(tiles):
        for j in range(tiles):
            hist = np.bincount(pad[i * th:(i + 1) * th, j * tw:(j + 1) * tw].ravel(), minlength=256).astype(float)
            hist = np.minimum(hist, limit) + np.maximum(hist - limit, 0).sum() / 256
            luts[i, j] = np.cumsum(hist) * 255.0 / (th * tw)

    def near(pos, tile):
        f = pos / tile - 0.5
        first = int(np.floor(f))
        return max(first, 0), min(first + 1, tiles - 1), f - first

    out = np.zeros((h, w, 1))
    for y in range(h):
        y0, y1, ay = near(y, th)
        for x in range(w):
            x0, x1, ax = near(x, tw)
            g = lv[y, x]
            out[y, x] = ((1 - ay) * ((1 - ax) * luts[y0, x0, g] + ax * luts[y0, x1, g])
                         + ay * ((1 - ax) * luts[y1, x0, g] + ax * luts[y1, x1, g]))
    return out


@pytest.mark.parametrize("mode", ["standardize", "window", "equalize", "clahe"])
def test_each_normalisation_equals_its_numpy_reference(mode):
    from cxrtool.models.normalize import Normalize

    x = _images()
    x[2] = 77.0  # a constant image stays finite
    if mode == "clahe":  # a size that is not a multiple of the tiles, a clip limit above 1 count
        x = np.concatenate([x, x], axis=1)[:, :21, :19]
    kwargs = {"window": {"low": 2.0, "high": 97.0}, "clahe": {"tiles": 4, "clip": 3.0}}.get(mode, {})
    got = np.asarray(Normalize(mode, **kwargs)(x))
    ref = {"standardize": _ref_standardize, "equalize": _ref_equalize,
           "window": lambda img: _ref_window(img, 2.0, 97.0), "clahe": lambda img: _ref_clahe(img, 4, 3.0)}[mode]
    expected = np.stack([ref(img) for img in x])
    assert np.isfinite(got).all() and got.min() >= 0 and got.max() <= 255
    np.testing.assert_allclose(got / 255.0, expected / 255.0, atol=1e-4)
    # the point of it: a global exposure change (a monotone curve) hardly changes the result
    shifted = 255.0 * (x[:1] / 255.0) ** 0.6
    if mode == "equalize":  # ranks are invariant to any increasing curve
        np.testing.assert_allclose(np.asarray(Normalize(mode)(shifted)), got[:1], atol=1e-3)
    cfg = Normalize(mode, **kwargs).get_config()
    assert Normalize.from_config(cfg).get_config() == cfg


def test_bad_normalisation_choices_are_usage_errors():
    from cxrtool.errors import UsageError
    from cxrtool.train import TrainOptions

    for opts, message in [(dict(normalize="he"), "--normalize"), (dict(normalize="window", window_low=50, window_high=10), "--window"),
                          (dict(acquisition="extreme"), "--acquisition"), (dict(acquisition="light", augment=False), "--no-augment")]:
        with pytest.raises(UsageError, match=message):
            TrainOptions(**opts).validate()


# acquisition transforms, each against a numpy reference with a fixed magnitude


def test_acquisition_functions_equal_numpy_references():
    from scipy.ndimage import gaussian_filter

    from cxrtool.models import acquisition as A

    x = _images(2, 16)
    np.testing.assert_allclose(np.asarray(A.apply_gamma(x, np.array([0.4, -0.4]))),
                               np.stack([255 * (x[0] / 255) ** np.exp(0.4), 255 * (x[1] / 255) ** np.exp(-0.4)]), atol=1e-2)
    # blur: a Gaussian truncated at 2 sigma with mirrored borders (scipy's "mirror"), blended by the weight
    blurred = np.stack([gaussian_filter(img[..., 0], 1.5, mode="mirror", truncate=2.0)[..., None] for img in x])
    np.testing.assert_allclose(np.asarray(A.apply_blur(x, np.array([1.0, 0.5]), 1.5)),
                               np.stack([blurred[0], 0.5 * x[1] + 0.5 * blurred[1]]), atol=1e-3)
    # JPEG-like: posterise to 32 levels, then blend in the 8x8 tile means
    step = 255 / 31
    poster = np.round(x / step) * step
    tiles = poster.reshape(2, 2, 8, 2, 8, 1).mean(axis=(2, 4), keepdims=True)
    means = np.broadcast_to(tiles, (2, 2, 8, 2, 8, 1)).reshape(x.shape)
    np.testing.assert_allclose(np.asarray(A.apply_jpeg_like(x, np.array([1.0, 0.0]))),
                               np.stack([means[0], poster[1]]), atol=1e-3)
    # border bands: 2 rows on top (0.125 * 16), 4 columns on the right
    banded = np.asarray(A.apply_border(x, np.array([0.125, 0.0]), np.zeros(2), np.zeros(2), np.array([0.25, 0.0])))
    expected = x.copy()
    expected[0, :2] = 0
    expected[0, :, 12:] = 0
    np.testing.assert_array_equal(banded, expected)
    # tiles at an image size that is not a multiple of 8 (edge tiles padded by replication)
    small = _images(1, 12)
    padded = np.pad(small, ((0, 0), (0, 4), (0, 4), (0, 0)), mode="edge")
    tiles = padded.reshape(1, 2, 8, 2, 8, 1).mean(axis=(2, 4), keepdims=True)
    ref = np.broadcast_to(tiles, (1, 2, 8, 2, 8, 1)).reshape(1, 16, 16, 1)[:, :12, :12]
    np.testing.assert_allclose(np.asarray(A.block_means(small)), ref, atol=1e-3)


ONLY = dict(rotation=0, shift=0, zoom=0, brightness=0, contrast=0)


@pytest.mark.parametrize("name,bound", [("gamma", 0.5), ("blur", 1.5), ("noise", 0.05), ("jpeg", 0.6), ("crop", 0.2),
                                        ("border", 0.1)])
def test_acquisition_augmentation_is_identity_at_inference_and_bounded_in_training(name, bound):
    from cxrtool.models.layers import Augment

    rng = np.random.default_rng(1)
    # a smooth image (a gradient plus mild texture) so each transform's effect is measurable
    ramp = np.linspace(20, 230, 32, dtype="float32")
    x = np.stack([np.add.outer(ramp, ramp)[..., None] / 2 + rng.uniform(-5, 5, (32, 32, 1)) for _ in range(8)])
    x = np.clip(x, 0, 255).astype("float32")
    layer = Augment(**ONLY, **{name: bound}, acquisition_p=1.0, seed=3)
    assert np.array_equal(np.asarray(layer(x, training=False)), x)
    y = np.asarray(layer(x, training=True))
    assert y.shape == x.shape and not np.allclose(y, x)
    assert y.min() >= 0.0 and y.max() <= 255.0
    lo, hi = x.min(axis=(1, 2, 3)), x.max(axis=(1, 2, 3))
    if name == "gamma":  # an increasing curve: the order of pixels is kept, the exponent bounded
        inside = (x > 1) & (x < 254)
        exponent = np.log(y[inside] / 255) / np.log(x[inside] / 255)
        assert exponent.min() >= np.exp(-bound) - 1e-3 and exponent.max() <= np.exp(bound) + 1e-3
    elif name in ("blur", "crop"):  # weighted averages of the image's own pixels
        assert (y.min(axis=(1, 2, 3)) >= lo - 1e-3).all() and (y.max(axis=(1, 2, 3)) <= hi + 1e-3).all()
    elif name == "noise":
        assert ((y - x).std(axis=(1, 2, 3)) <= bound * 255 * 1.2).all()
    elif name == "jpeg":  # posterised (half a grey step) and averaged within tiles
        step = 255 / 31
        assert (y.min(axis=(1, 2, 3)) >= lo - step).all() and (y.max(axis=(1, 2, 3)) <= hi + step).all()
    elif name == "border":  # only black bands, each at most bound * side wide
        changed = y != x
        assert (y[changed] == 0).all()
        band = int(np.ceil(bound * 32))
        assert not changed[:, band:32 - band, band:32 - band].any()
    cfg = layer.get_config()
    assert Augment.from_config(cfg).get_config() == cfg


def test_each_acquisition_transform_hits_a_share_of_the_images():
    from cxrtool.models.layers import Augment

    x = np.full((32, 16, 16, 1), 128.0, dtype="float32")
    y = np.asarray(Augment(**ONLY, border=0.2, seed=0)(x, training=True))  # acquisition_p 0.5 by default
    hit = (y != x).any(axis=(1, 2, 3))
    assert 4 <= hit.sum() <= 28  # binomial(32, 0.5): this range holds with probability > 0.9999


def _strip_new_keys(config):
    """config.json as an older cxrtool wrote it: Augment without the acquisition keys."""
    if isinstance(config, dict):
        if config.get("class_name") == "Augment":
            for key in ("gamma", "blur", "noise", "jpeg", "crop", "border", "acquisition_p"):
                config["config"].pop(key)
        for value in config.values():
            _strip_new_keys(value)
    elif isinstance(config, list):
        for value in config:
            _strip_new_keys(value)


def test_a_model_saved_before_these_options_loads_and_predicts_the_same(tmp_path):
    import json
    import zipfile

    from cxrtool.artifact import ModelInfo, load_model, save_model
    from cxrtool.models import build_model

    model = build_model("cnn", image_size=16, weights="none", augment={}, seed=0)
    new = save_model(model, tmp_path / "new.keras", ModelInfo(architecture="cnn", image_size=16))
    old = tmp_path / "old.keras"
    with zipfile.ZipFile(new) as src, zipfile.ZipFile(old, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                _strip_new_keys(config)
                assert "jpeg" not in json.dumps(config)
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    loaded = load_model(old).model
    assert loaded.get_layer("augment").get_config()["border"] == 0.0
    assert "normalize" not in [layer.name for layer in loaded.layers]
    x = _images(2, 16)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-6)


def test_old_augment_configs_load_with_acquisition_off():
    """A model saved before --acquisition existed has an Augment config without its keys."""
    from cxrtool.models.layers import Augment

    old = {"name": "augment", "trainable": True, "dtype": "float32", "rotation": 10.0, "shift": 0.05, "zoom": 0.1,
           "brightness": 0.1, "contrast": 0.1, "flip": False, "seed": 0}
    layer = Augment.from_config(old)
    assert [getattr(layer, k) for k in ("gamma", "blur", "noise", "jpeg", "crop", "border")] == [0.0] * 6


def test_normalised_model_saves_reloads_and_gradcam_still_splits_it(tmp_path):
    from cxrtool.artifact import ModelInfo, load_model, save_model
    from cxrtool.gradcam import candidate_layers, default_layer
    from cxrtool.models import build_model

    plain = build_model("cnn", image_size=16, weights="none", augment={}, seed=0)
    model = build_model("cnn", image_size=16, weights="none", augment={}, seed=0,
                        normalize={"mode": "clahe", "tiles": 4, "clip": 2.0})
    names = [layer.name for layer in model.layers]
    assert names[:4] == ["image", "augment", "normalize", "preprocess"]
    assert "normalize" not in [layer.name for layer in plain.layers]  # --normalize none: the graph is unchanged
    assert candidate_layers(model) == candidate_layers(plain)
    assert default_layer(model) == default_layer(plain) == "feature_map"
    path = save_model(model, tmp_path / "m.keras", ModelInfo(architecture="cnn", image_size=16))
    loaded = load_model(path).model  # safe mode
    assert loaded.get_layer("normalize").get_config()["mode"] == "clahe"
    x = _images(4, 16, seed=5)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-6)
    # Grad-CAM splits it at the recorded layer; its probabilities are the model's own
    from cxrtool.gradcam import explain

    reloaded = load_model(path)
    reloaded.info.gradcam_layer = "feature_map"  # what training records
    maps = explain(reloaded, [img[..., 0].astype(np.uint8) for img in x])
    assert [m.layer for m in maps] == ["feature_map"] * 4
    probs = np.array([[m.probabilities[c] for c in reloaded.info.classes] for m in maps])
    np.testing.assert_allclose(probs, np.asarray(model(x)), atol=1e-4)
    assert all(np.isfinite(m.heatmap).all() and m.heatmap.shape == (16, 16) for m in maps)


@pytest.mark.parametrize("args,normalize,level", [
    (["--normalize", "equalize", "--acquisition", "strong"], {"mode": "equalize", "low": 1.0, "high": 99.0}, "strong"),
    (["--normalize", "clahe", "--clahe-tiles", "4", "--clahe-clip", "3", "--acquisition", "light"],
     {"mode": "clahe", "tiles": 4, "clip": 3.0}, "light"),
])
def test_train_with_normalisation_and_acquisition_then_predict_end_to_end(tmp_path, capsys, args, normalize, level):
    """The CLI options reach the saved model, and `cxrtool predict` on it applies the same
    normalisation as the model itself (so evaluate and gradcam, which load it, do too)."""
    from cxrtool.artifact import load_model, read_info
    from cxrtool.cli import main
    from cxrtool.inference import predict_images

    data = make_dataset(tmp_path / "data", {"train": 3, "val": 1, "test": 1}, size=24)
    models = tmp_path / "models"
    assert main(["train", str(data), "--model", "cnn", "--image-size", "16", "--epochs", "1", "--batch-size", "6",
                 "--seed", "0", "--models-dir", str(models), *args, "-q"]) == 0
    path = models / "cnn.keras"
    assert capsys.readouterr().out.strip() == str(path)
    info = read_info(path)
    assert info.preprocessing["normalize"] == normalize
    assert info.preprocessing["acquisition"] == level
    assert info.training["options"]["normalize"] == normalize["mode"] and info.training["options"]["acquisition"] == level
    loaded = load_model(path)
    augment = loaded.model.get_layer("augment").get_config()
    assert {k: augment[k] for k in ACQUISITION_LEVELS[level]} == ACQUISITION_LEVELS[level]
    layer = loaded.model.get_layer("normalize").get_config()
    assert {k: layer[k] for k in normalize} == normalize

    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (20 + 3 * i, 24), dtype=np.uint8) for i in range(3)]
    paths = []
    for i, img in enumerate(images):
        paths.append(tmp_path / f"scan{i}.png")
        Image.fromarray(img).save(paths[-1])
    assert main(["predict", "--model", str(path), *map(str, paths)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    got = np.array([[float(row[c]) for c in info.classes] for row in rows])
    np.testing.assert_allclose(got, predict_images(loaded, images), atol=1e-4)
