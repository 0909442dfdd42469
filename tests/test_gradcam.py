"""Grad-CAM on JAX: gradients checked by hand and by finite differences, layer choice, token
grids, the CLI's files and lines, and a trained model's heat mass on the drawn pattern."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxrtool.cli import main
from cxrtool.synthetic import make_phantom, pattern_mask

from cxrtool.backend import import_keras

keras = import_keras()

SIZE = 24


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """An untrained cnn (random weights) saved as a cxrtool model: for mechanics, not meaning."""
    from cxrtool.artifact import ModelInfo, load_model, save_model
    from cxrtool.models import build_model

    path = tmp_path_factory.mktemp("models") / "tiny.keras"
    model = build_model("cnn", image_size=SIZE, weights="none", seed=0)
    save_model(model, path, ModelInfo("cnn", image_size=SIZE, gradcam_layer="feature_map"))
    return load_model(path)


def _x(n: int, size: int = SIZE, seed: int = 0) -> np.ndarray:
    labels = ("covid", "pneumonia", "normal")
    return np.stack([make_phantom(labels[i % 3], seed + i, size) for i in range(n)]).astype(np.float32)[..., None]


# ---------------------------------------------------------------------------------------
# the algorithm, independent of training
# ---------------------------------------------------------------------------------------


def test_gradients_equal_the_linear_head_by_hand(tiny):
    """GAP -> Dense: d logit_k / d A[i, j, c] = W[c, k] / (h w) everywhere, so Grad-CAM is
    ReLU(A @ W[:, k]) / (h w) and HiResCAM equals it."""
    from cxrtool.gradcam import GradCAM, HiResCAM

    model = tiny.model
    x = _x(5)
    cam = GradCAM(model)
    assert cam.layer == "feature_map" and not cam.split.head_takes_image
    acts, grads, logits = cam.activations_and_gradients(x, class_index=1)
    n, h, w, c = acts.shape
    kernel, bias = model.get_layer("logits").get_weights()
    np.testing.assert_allclose(grads, np.broadcast_to(kernel[:, 1] / (h * w), grads.shape), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(logits, acts.mean(axis=(1, 2)) @ kernel + bias, rtol=1e-4, atol=1e-5)

    result = cam(x, class_index=1)
    expected = np.maximum(acts @ kernel[:, 1] / (h * w), 0.0)
    np.testing.assert_allclose(result.maps, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(HiResCAM(model)(x, class_index=1).maps, expected, rtol=1e-4, atol=1e-6)
    # default class = the predicted one; probabilities = the model's own output
    default = cam(x)
    probs = np.asarray(model.predict_on_batch(x))
    assert (default.class_index == probs.argmax(1)).all()
    np.testing.assert_allclose(default.probabilities, probs, atol=1e-5)


def _residual_model():
    """input -> conv -> relu "r1" -> conv -> relu "target" -> conv -> add(r1) -> relu -> GAP -> logits:
    the head needs "r1", which bypasses "target" (the split's two-input path)."""
    L = keras.layers
    inp = keras.Input((12, 12, 1), name="image")
    r1 = L.Activation("relu", name="r1")(L.Conv2D(4, 3, padding="same", name="c1", kernel_initializer=keras.initializers.GlorotNormal(seed=1))(inp))
    t = L.Activation("tanh", name="target")(L.Conv2D(4, 3, padding="same", name="c2", kernel_initializer=keras.initializers.GlorotNormal(seed=2))(r1))
    y = L.Add(name="add")([L.Conv2D(4, 3, padding="same", name="c3", kernel_initializer=keras.initializers.GlorotNormal(seed=3))(t), r1])
    y = L.Activation("softplus", name="feature_map")(y)
    y = L.GlobalAveragePooling2D(name="avg_pool")(y)
    logits = L.Dense(3, name="logits", kernel_initializer=keras.initializers.GlorotNormal(seed=4))(y)
    return keras.Model(inp, L.Activation("softmax", name="probs")(logits))


def test_gradients_match_finite_differences_through_a_residual_split():
    from cxrtool.gradcam import GradCAM

    model = _residual_model()
    cam = GradCAM(model, "target")
    assert cam.split.head_takes_image  # the bypass is recomputed from the image
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (2, 12, 12, 1)).astype(np.float32)
    acts, grads, logits = cam.activations_and_gradients(x, class_index=[0, 2])
    full = keras.Model(model.inputs[0], model.get_layer("logits").output)
    np.testing.assert_allclose(logits, np.asarray(full(x)), rtol=1e-5, atol=1e-6)
    head = cam.split.head
    for trial in range(3):
        v = rng.standard_normal(acts.shape).astype(np.float32)
        eps = 1e-2
        plus = np.asarray(head([x, acts + eps * v]))
        minus = np.asarray(head([x, acts - eps * v]))
        numeric = (plus - minus)[[0, 1], [0, 2]] / (2 * eps)
        analytic = (grads * v).reshape(2, -1).sum(axis=1)
        np.testing.assert_allclose(analytic, numeric, rtol=2e-3, atol=2e-4)


def test_a_calibrated_model_reports_the_same_probability_as_predict(tmp_path):
    """The CAM works from the logits; a calibrated model divides them by its temperature before
    the softmax, and gradcam must print the number predict prints (it did not: 0.86 against
    0.94 on one image of a real model)."""
    from cxrtool.artifact import ModelInfo, load_model, save_model
    from cxrtool.evaluate.calibration import with_temperature
    from cxrtool.gradcam import explain
    from cxrtool.inference import predict_images
    from cxrtool.models import build_model

    model = with_temperature(build_model("cnn", image_size=SIZE, weights="none", seed=3), 4.0)
    save_model(model, tmp_path / "calibrated.keras", ModelInfo("cnn", image_size=SIZE, gradcam_layer="feature_map"))
    loaded = load_model(tmp_path / "calibrated.keras")
    images = [make_phantom(label, 7, SIZE) for label in ("covid", "pneumonia", "normal")]
    expected = predict_images(loaded, images)
    got = np.stack([[e.probabilities[c] for c in loaded.info.classes] for e in explain(loaded, images)])
    assert np.allclose(got, expected, atol=1e-5)
    assert not np.allclose(got, _softmax_of_logits(loaded, images), atol=1e-3)  # the temperature mattered


def _softmax_of_logits(loaded, images):
    from cxrtool.gradcam.cam import _softmax
    from cxrtool.gradcam.methods import make_cam
    from cxrtool.inference import model_input

    cam = make_cam("gradcam", loaded.model, None, info=loaded.info)
    return _softmax(cam(model_input(images, SIZE)).logits)


def test_methods_are_subclasses_overriding_one_step(tiny):
    from cxrtool.gradcam import METHODS, BaseCAM, GradCAM, make_cam

    assert set(METHODS) == {"gradcam", "gradcam++", "hirescam", "layercam"}
    for name, cls in METHODS.items():
        assert issubclass(cls, BaseCAM) and "weights" in cls.__dict__ and cls.name == name and cls.title
        assert set(cls.__dict__) - {"name", "title", "weights", "__doc__", "__module__", "__qualname__", "__firstlineno__",
                                     "__static_attributes__", "__abstractmethods__", "_abc_impl"} == set()
    assert isinstance(make_cam("Grad-CAM++".replace("Grad-", "grad"), tiny.model), METHODS["gradcam++"])
    assert type(make_cam("gradcam", tiny.model)) is GradCAM


def test_a_new_method_is_just_a_subclass(tiny):
    """Defining a subclass registers it: make_cam and --method find it with no other edit."""
    from cxrtool.gradcam import METHODS, BaseCAM, make_cam

    class Ones(BaseCAM):  # every channel weighted 1: the map is ReLU(sum_c A_c)
        name = "ones"
        title = "Ones"

        def weights(self, activations, grads):
            return activations[:, :1, :1, :] * 0 + 1

    try:
        cam = make_cam("ones", tiny.model)
        assert type(cam) is Ones and METHODS["ones"] is Ones
        x = _x(2)
        acts, _, _ = cam.activations_and_gradients(x)
        np.testing.assert_allclose(cam(x).maps, np.maximum(acts.sum(-1), 0), rtol=1e-5, atol=1e-6)
    finally:
        METHODS.pop("ones", None)


def _flat_model(size: int = 6, channels: int = 4):
    """image -> preprocess (/255) -> 1x1 conv + ReLU "feature_map" -> Flatten -> Dense "logits"
    -> softmax. Everything after the target is linear, so by hand: A = ReLU(x/255 * w + b) and
    d logit_k / dA = the Dense kernel's column k laid out on the grid (it varies by position,
    which tells Grad-CAM, HiResCAM, LayerCAM and Grad-CAM++ apart)."""
    L = keras.layers
    init = keras.initializers
    inp = keras.Input((size, size, 1), name="image")
    y = L.Rescaling(1 / 255, name="preprocess")(inp)
    y = L.Conv2D(channels, 1, activation="relu", name="feature_map", kernel_initializer=init.RandomNormal(0.0, 2.0, seed=1),
                 bias_initializer=init.RandomUniform(-0.5, 0.5, seed=2))(y)
    logits = L.Dense(3, name="logits", kernel_initializer=init.RandomNormal(0.0, 0.3, seed=3))(L.Flatten(name="flat")(y))
    return keras.Model(inp, L.Activation("softmax", name="probs")(logits))


def _by_hand(model, x):
    """Activations (N, h, w, C), logits and the gradient of every class's logit (K, h, w, C) in numpy."""
    conv_w, conv_b = (np.asarray(v, np.float64) for v in model.get_layer("feature_map").get_weights())
    dense_w, dense_b = (np.asarray(v, np.float64) for v in model.get_layer("logits").get_weights())
    acts = np.maximum((x.astype(np.float64) / 255.0) @ conv_w[0, 0] + conv_b, 0.0)
    logits = acts.reshape(len(x), -1) @ dense_w + dense_b
    grads = dense_w.T.reshape((-1,) + acts.shape[1:])  # Flatten is row-major over (h, w, C)
    return acts, logits, grads


_FORMULAS = {
    # pytorch-grad-cam's definitions, written out on (h, w, C) arrays of one image
    "gradcam": lambda a, g: np.maximum((g.mean(axis=(0, 1)) * a).sum(-1), 0),
    "hirescam": lambda a, g: np.maximum((g * a).sum(-1), 0),
    "layercam": lambda a, g: np.maximum((np.maximum(g, 0) * a).sum(-1), 0),
    "gradcam++": lambda a, g: np.maximum((_plusplus_weights(a, g) * a).sum(-1), 0),
}


def _plusplus_weights(a, g):
    alpha = g**2 / (2 * g**2 + a.sum(axis=(0, 1)) * g**3 + 1e-7)
    alpha = np.where(g != 0, alpha, 0.0)
    return (alpha * np.maximum(g, 0)).sum(axis=(0, 1))


@pytest.mark.parametrize("method", sorted(_FORMULAS))
def test_each_method_matches_its_formula_by_hand(method):
    """The raw map (before upsampling and normalisation) of every method equals its formula
    computed in numpy from hand-computed activations and gradients; explain() then returns it
    normalised (the image is already at the model's size, so no resampling)."""
    from cxrtool.artifact import LoadedModel, ModelInfo
    from cxrtool.gradcam import explain, make_cam

    model = _flat_model()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (5, 6, 6, 1)).astype(np.float32)
    acts, logits, grads = _by_hand(model, x)
    cam = make_cam(method, model, "feature_map")
    got_a, got_g, got_logits = cam.activations_and_gradients(x, class_index=2)
    np.testing.assert_allclose(got_a, acts, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_g, np.broadcast_to(grads[2], got_g.shape), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got_logits, logits, rtol=1e-5, atol=1e-5)

    for class_index in (0, 2, None):  # None: each image's predicted class
        chosen = logits.argmax(1) if class_index is None else np.full(len(x), class_index)
        expected = np.stack([_FORMULAS[method](acts[i], grads[chosen[i]]) for i in range(len(x))])
        assert (expected > 0).any()  # a map of zeros would match anything that clips to zero
        result = cam(x, class_index=class_index)
        assert (result.class_index == chosen).all()
        np.testing.assert_allclose(result.maps, expected, rtol=1e-5, atol=1e-5 * expected.max())

    loaded = LoadedModel(model, ModelInfo("flat", image_size=6, gradcam_layer="feature_map"), None)
    images = [x[i, ..., 0].astype(np.uint8) for i in range(len(x))]
    expected = [_FORMULAS[method](acts[i], grads[logits[i].argmax()]) for i in range(len(x))]
    for ex, ref in zip(explain(loaded, images, method=method), expected, strict=True):
        # normalise_map scales from min(0, map.min()) to the max: a ReLU'd map is divided by its
        # maximum, so "no evidence" stays 0 (pytorch-grad-cam subtracts the minimum instead)
        np.testing.assert_allclose(ex.heatmap, ref / ref.max(), atol=1e-5)


def test_the_hand_checked_methods_differ_on_the_flat_model():
    """So the test above tells the methods apart: on this model no two formulas agree."""
    model = _flat_model()
    x = np.random.default_rng(0).integers(0, 256, (5, 6, 6, 1)).astype(np.float32)
    acts, _, grads = _by_hand(model, x)
    maps = {m: np.stack([f(acts[i], grads[2]) for i in range(len(x))]) for m, f in _FORMULAS.items()}
    names = sorted(maps)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not np.allclose(maps[a] / maps[a].max(), maps[b] / maps[b].max(), atol=1e-3), (a, b)


def test_batched_call_equals_one_by_one(tiny):
    from cxrtool.gradcam import GradCAM

    cam = GradCAM(tiny.model, batch_size=4)
    x = _x(7)
    together = cam(x).maps  # batches of 4 and 3 (padded to 4)
    alone = np.concatenate([cam(x[i : i + 1]).maps for i in range(7)])
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-6)


def test_vit_token_sequence_becomes_the_patch_grid():
    from cxrtool.gradcam import GradCAM, candidate_layers, default_layer, tokens_to_grid
    from cxrtool.models import build_model

    model = build_model("vit", image_size=12, weights="none", seed=0, patch_size=3, vit_layers=1, vit_dim=8, vit_heads=2)
    assert default_layer(model) == "feature_map"
    names = dict(candidate_layers(model))
    assert names["block1_add2"] == (4, 4) and names["feature_map"] == (4, 4)  # 12 / 3 = 4x4 patches
    x = _x(2, 12)
    on_tokens = GradCAM(model, "block1_add2")
    acts, _, _ = on_tokens.activations_and_gradients(x)
    assert acts.shape == (2, 16, 8)  # the raw token sequence of the last block
    assert on_tokens(x).maps.shape == (2, 4, 4)
    assert GradCAM(model)(x).maps.shape == (2, 4, 4)

    seq = np.arange(2 * 17 * 3, dtype=np.float32).reshape(2, 17, 3)  # a class token first
    grid = tokens_to_grid(seq)
    assert grid.shape == (2, 4, 4, 3) and grid[0, 0, 0, 0] == seq[0, 1, 0] and grid[1, 3, 3, 2] == seq[1, 16, 2]


def test_layer_choice_and_candidates(tiny):
    from cxrtool.errors import UsageError
    from cxrtool.gradcam import GradCAM, candidate_layers

    cands = dict(candidate_layers(tiny.model))
    assert cands["feature_map"] == (3, 3) and cands["stage3_relu2"] == (6, 6) and cands["stage2_relu1"] == (12, 12)
    assert not {"image", "preprocess", "avg_pool", "logits", "probs"} & set(cands)
    assert GradCAM(tiny.model, "stage3_relu2")(_x(1)).maps.shape == (1, 6, 6)  # finer, earlier layer
    with pytest.raises(UsageError, match=r"feature_map \(3x3\)"):
        GradCAM(tiny.model, "nope")
    with pytest.raises(UsageError, match="not a spatial feature map"):
        GradCAM(tiny.model, "logits")


def test_upsampling_is_smooth_and_at_the_original_resolution():
    from cxrtool.gradcam import normalise_map, upsample_map

    grid = np.zeros((4, 4), np.float32)
    grid[1, 2] = 1.0
    up = upsample_map(grid, 50, 70)  # non-square, not a multiple of the grid
    assert up.shape == (50, 70) and up.min() >= 0
    assert len(np.unique(np.round(up, 4))) > 50  # smooth, not blocky nearest-neighbour
    peak = np.unravel_index(np.argmax(up), up.shape)
    assert abs(peak[0] - 1.5 * 50 / 4) <= 4 and abs(peak[1] - 2.5 * 70 / 4) <= 5
    assert normalise_map(up).max() == pytest.approx(1.0) and normalise_map(np.zeros((3, 3))).max() == 0


def test_importing_the_package_loads_no_keras_jax_or_plotting():
    code = ("import sys, cxrtool.gradcam as g; assert g.explain and g.gradcam_files and g.METHODS and g.make_cam; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'keras', 'jax', 'matplotlib', 'PIL', 'tensorflow'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_overlay_blend_is_the_colour_map_formula():
    """The lookup tables give exactly (1 - alpha) * gray + alpha * colourmap(heat), rounded."""
    import matplotlib

    from cxrtool.gradcam.overlay import blend, render_overlay

    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (30, 40)).astype(np.uint8)
    heat = rng.uniform(0, 1, (30, 40)).astype(np.float32)
    for cmap, alpha in (("inferno", 0.4), ("viridis", 0.75)):
        colour = np.asarray(matplotlib.colormaps[cmap](np.linspace(0, 1, 256)))[:, :3] * 255.0
        idx = np.clip(np.rint(heat * 255), 0, 255).astype(int)
        expected = (1 - alpha) * gray[..., None] + alpha * colour.astype(np.uint8)[idx]
        np.testing.assert_array_less(np.abs(blend(gray, heat, alpha=alpha, cmap=cmap) - expected), 0.5 + 1e-3)
    big = rng.integers(0, 256, (300, 320)).astype(np.uint8)  # no enlargement at >= 256 px
    ov = render_overlay(big, np.zeros((300, 320), np.float32), label="covid", probability=0.9, alpha=0.4)
    body = np.asarray(ov)[200:, :320]  # below the caption: the X-ray darkened by the colour of 0 heat
    colour0 = (np.asarray(matplotlib.colormaps["inferno"](0.0))[:3] * 255).astype(np.uint8)
    np.testing.assert_array_less(np.abs(body - (0.6 * big[200:, :, None] + 0.4 * colour0)), 0.5 + 1e-3)
    assert ov.size[0] > 320 and ov.size[1] == 300  # the colour bar margin on the right


def test_contact_sheet_pages_in_input_order(monkeypatch, tiny, tmp_path):
    from cxrtool.gradcam import files, gradcam_files

    paths = []
    for i in range(5):
        paths.append(tmp_path / f"in{i}.png")
        Image.fromarray(make_phantom("covid", i, 40)).save(paths[-1])
    monkeypatch.setattr(files, "SHEET_PER_PAGE", 2)
    gen = gradcam_files(tiny, paths, out=tmp_path / "out", batch_size=2, workers=2)
    records = []
    while True:
        try:
            records.append(next(gen))
        except StopIteration as stop:
            sheets = stop.value
            break
    assert [r.path for r in records] == list(map(str, paths)) and all(r.output.is_file() for r in records)
    assert [p.name for p in sheets] == ["contact_sheet.png", "contact_sheet_2.png", "contact_sheet_3.png"]
    assert [Image.open(p).size for p in sheets] == [(640, 350), (640, 350), (320, 350)]
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temporary files left


def test_no_tensorflow_is_imported(tiny):
    from cxrtool.gradcam import explain

    explain(tiny, [make_phantom("covid", 1, 40)])
    assert not [m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow.")]


# ---------------------------------------------------------------------------------------
# the CLI: files, names, lines, errors
# ---------------------------------------------------------------------------------------


@pytest.fixture()
def images(tmp_path) -> list[Path]:
    src = tmp_path / "src"
    (src / "x").mkdir(parents=True)
    (src / "y").mkdir()
    paths = [src / "x" / "scan.png", src / "y" / "scan.png", src / "x" / "wide.png"]
    Image.fromarray(make_phantom("pneumonia", 3, 40)).save(paths[0])
    Image.fromarray(make_phantom("covid", 4, 40)).save(paths[1])
    Image.fromarray(make_phantom("normal", 5, (30, 50))).save(paths[2])  # non-square
    return paths


def test_cli_one_image_to_file_with_raw(capsys, tiny, images, tmp_path):
    out = tmp_path / "out" / "cam.png"
    code = main(["gradcam", str(images[2]), "--model", str(tiny.path), "--out", str(out), "--save-raw", "--class", "covid"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    path, label, prob, written, *notes = stdout.strip().split("\t")
    assert path == str(images[2]) and label in ("covid", "pneumonia", "normal") and 0 < float(prob) <= 1
    assert written == str(out) and out.is_file()
    # an untrained model's map for one class can be all zero (ReLU of a negative sum): then the
    # line says so; which way a near-zero map falls varied between runs (threaded float sums)
    assert notes in ([], ["flat"])
    raw = np.load(out.with_suffix(".npy"))
    assert raw.shape == (30, 50) and raw.dtype == np.float32 and 0 <= raw.min() and raw.max() <= 1
    overlay = Image.open(out)
    assert overlay.mode == "RGB" and overlay.height % 30 == 0 and overlay.width > 50 * overlay.height // 30


def test_cli_several_images_to_folder_unique_names_and_contact_sheet(capsys, tiny, images, tmp_path):
    out = tmp_path / "cams"
    code = main(["gradcam", *map(str, images), "--model", str(tiny.path), "--out", str(out)])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    lines = [line.split("\t") for line in stdout.splitlines()]
    assert [line[0] for line in lines] == list(map(str, images))
    names = [Path(line[3]).name for line in lines]
    assert names == ["scan_gradcam.png", "scan_2_gradcam.png", "wide_gradcam.png"]
    assert all((out / n).is_file() for n in names) and (out / "contact_sheet.png").is_file()
    assert not list(images[0].parent.glob("*gradcam*"))  # nothing written next to the inputs


def test_cli_default_out_folder_and_unreadable_image(capsys, monkeypatch, tiny, images, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    bad = tmp_path / "bad.png"
    bad.write_text("not a png")
    code = main(["gradcam", str(images[0]), str(bad), "--model", str(tiny.path)])
    stdout, err = capsys.readouterr()
    assert code == 1
    assert len(stdout.splitlines()) == 1 and (work / "gradcam" / "scan_gradcam.png").is_file()
    assert f"error: {bad}" in err


def test_cli_wrong_layer_lists_candidates_and_layer_list(capsys, tiny, images):
    code = main(["gradcam", str(images[0]), "--model", str(tiny.path), "--layer", "conv5_block3_out"])
    _, err = capsys.readouterr()
    assert code == 2 and "feature_map (3x3)" in err and "stage3_relu2 (6x6)" in err
    code = main(["gradcam", "--model", str(tiny.path), "--layer", "list"])
    stdout, _ = capsys.readouterr()
    assert code == 0 and "feature_map\t3x3* (default)" in stdout and "stage2_relu1\t12x12" in stdout


def test_cli_bad_options(capsys, tiny, images, tmp_path):
    for extra, message in ((["--class", "flu"], "covid, pneumonia, normal"), (["--alpha", "2"], "alpha"),
                           (["--out", str(images[0])], "input images")):
        code = main(["gradcam", str(images[0]), "--model", str(tiny.path), *extra])
        _, err = capsys.readouterr()
        assert code == 2 and message in err, err
    code = main(["gradcam", *map(str, images), "--model", str(tiny.path), "--out", str(tmp_path / "x.png")])
    assert code == 2 and "must be a folder" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# a trained model looks where the class pattern is
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    sys.path.insert(0, str(Path(__file__).parent))
    from helpers_dataset import make_dataset

    from cxrtool.artifact import load_model
    from cxrtool.train import TrainOptions, train

    root = make_dataset(tmp_path_factory.mktemp("ds") / "data", {"train": 60, "val": 10}, size=48, seed=4)
    result = train(root, "cnn", options=TrainOptions(
        epochs=8, image_size=48, batch_size=4, lr=1e-3, seed=4, augment=False, monitor="val_accuracy"),
        out=tmp_path_factory.mktemp("m") / "cnn48.keras")
    return load_model(result.model_path)


def _mass_ratios(loaded, label: str, seeds, size: int = 48):
    """(mass inside the pattern / the pattern's area fraction) per image, and accuracy."""
    from cxrtool.gradcam import explain

    images = [make_phantom(label, s, size) for s in seeds]
    masks = [pattern_mask(label, s, size) for s in seeds]
    explanations = explain(loaded, images, class_name=label)
    ratios = []
    for ex, mask in zip(explanations, masks):
        if mask.any():
            inside = float((ex.heatmap * mask).sum() / max(ex.heatmap.sum(), 1e-9))
            ratios.append(inside / float(mask.mean()))
    assert len(ratios) == len(images)  # every phantom of these classes has a drawn pattern
    correct = sum(ex.label == label for ex in explanations)
    return np.array(ratios), correct / len(images)


@pytest.mark.slow
def test_heat_mass_lands_on_the_drawn_pattern(trained):
    """Unseen phantoms: the map of the true class puts more mass per pixel inside the drawn
    opacities than the image average (ratio 1.0 = a map that ignores the pattern).

    Measured with this protocol over training seeds 4-7 (docs/gradcam.md): medians 1.68-2.71,
    60-100% of images above 1 (70% the lowest); a model that learned nothing scored 0.19."""
    seeds = range(900_000, 900_020)
    for label in ("covid", "pneumonia"):
        ratios, _ = _mass_ratios(trained, label, seeds)
        assert np.median(ratios) > 1.4 and np.mean(ratios > 1.0) >= 0.6, (label, ratios.round(2))


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory):
    """Two untrained cnn members at different input sizes (24 and 32 px), mean-combined."""
    from cxrtool.artifact import ModelInfo, load_model, save_model
    from cxrtool.ensemble import build_ensemble
    from cxrtool.models import build_model

    folder = tmp_path_factory.mktemp("ens")
    paths = []
    for k, size in enumerate((24, 32)):
        path = folder / f"m{k}.keras"
        save_model(build_model("cnn", image_size=size, weights="none", seed=10 + k), path,
                   ModelInfo("cnn", image_size=size, gradcam_layer="feature_map"))
        paths.append(path)
    result = build_ensemble(paths, out=folder / "ens.keras")
    return load_model(result.model_path), [load_model(p) for p in paths]


def test_ensemble_map_is_the_weighted_mean_of_member_maps(ensemble):
    from cxrtool.gradcam import GradCAM, explain, normalise_map, upsample_map
    from cxrtool.inference import model_input, predict_images

    loaded, members = ensemble
    images = [make_phantom("covid", 7, (40, 44)), make_phantom("pneumonia", 8, 50)]
    got = explain(loaded, images)
    probs = predict_images(loaded, images)
    chosen = probs.argmax(1)
    weights = [m["weight"] for m in loaded.info.extra["members"]]
    for i, (img, ex) in enumerate(zip(images, got)):
        assert ex.heatmap.shape == img.shape and ex.label == loaded.info.classes[chosen[i]]
        assert ex.probability == pytest.approx(float(probs[i].max()), abs=1e-5)
        # reference: each member file on its own, at its own size, for the ensemble's class
        ref = np.zeros(img.shape, np.float32)
        for member, w in zip(members, weights):
            cam = GradCAM(member.model)(model_input([img], member.info.image_size), class_index=int(chosen[i]))
            ref += w * normalise_map(upsample_map(cam.maps[0], *img.shape))
        ref = normalise_map(ref)
        # members see the ensemble's own (Keras, antialiased) resize instead of Pillow's: close, not equal
        assert np.corrcoef(ref.ravel(), ex.heatmap.ravel())[0, 1] > 0.98
        assert np.abs(ref - ex.heatmap).mean() < 0.03
        assert [m["grid"] for m in ex.members] == [[3, 3], [4, 4]]


def test_cli_gradcam_on_an_ensemble(capsys, ensemble, tmp_path):
    loaded, _ = ensemble
    src = tmp_path / "scan.png"
    Image.fromarray(make_phantom("covid", 9, 40)).save(src)
    code = main(["gradcam", str(src), "--model", str(loaded.path), "--out", str(tmp_path / "e.png")])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert (tmp_path / "e.png").is_file() and stdout.count("\t") == 3
    code = main(["gradcam", "--model", str(loaded.path), "--layer", "list"])
    stdout, _ = capsys.readouterr()
    assert code == 0 and "m0\tfeature_map\t3x3* (default)" in stdout and "m1\tfeature_map\t4x4* (default)" in stdout
