"""Model registry, custom layers and the artifact format (no training here)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cxrtool import CLASSES
from cxrtool.errors import CxrError, ModelFormatError, ModelNotFoundError, UsageError
from cxrtool.models import ARCHITECTURES, default_image_size, get_spec, min_image_size


def test_registry_follows_the_paper():
    assert set(ARCHITECTURES) == {"mobilenetv2", "resnet50", "resnet152", "cnn", "vit"}
    for name in ("mobilenetv2", "resnet50", "resnet152", "cnn"):
        assert default_image_size(name) == 100
        assert get_spec(name).default_batch_size == 32
    assert default_image_size("vit") == 72 and get_spec("vit").default_batch_size == 16
    vit = get_spec("vit")
    assert vit.options["patch_size"] == 3 and vit.options["vit_layers"] == 8
    assert (vit.default_image_size // vit.options["patch_size"]) ** 2 == 576  # the paper's 576 patches
    assert min_image_size("resnet50") == 32 and min_image_size("mobilenetv2") == 32
    assert {get_spec(n).default_weights for n in ("mobilenetv2", "resnet50", "resnet152")} == {"imagenet"}
    assert get_spec("cnn").default_weights == get_spec("vit").default_weights == "none"
    with pytest.raises(ModelNotFoundError, match="choose one of"):
        get_spec("alexnet")


def test_registry_import_is_cheap():
    code = "import sys, cxrtool.models, cxrtool.artifact, cxrtool.inputs, cxrtool.train, cxrtool.cli; " \
           "print('keras' in sys.modules or 'jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_every_architecture_names_a_builder_module():
    import importlib.util

    for name, spec in ARCHITECTURES.items():
        assert spec.name == name
        assert importlib.util.find_spec(f"cxrtool.models.{spec.builder}") is not None, name


def test_top_level_load_model_in_a_fresh_process(tmp_path):
    """``import cxrtool`` imports no Keras/JAX; ``cxrtool.load_model`` registers the custom
    layers itself (plain ``keras.saving.load_model`` fails with "Could not locate class")."""
    from cxrtool.artifact import ModelInfo, save_model
    from cxrtool.models import build_model

    model = build_model("cnn", image_size=16, weights="none", augment={}, seed=0)
    path = save_model(model, tmp_path / "cnn.keras", ModelInfo("cnn", image_size=16))
    x = np.random.default_rng(0).uniform(0, 255, (3, 16, 16, 1)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    code = (
        "import sys, numpy as np, cxrtool\n"
        "print('keras' in sys.modules or 'jax' in sys.modules)\n"
        "m = cxrtool.load_model(sys.argv[1])\n"
        "print(type(m).__name__, m.info.architecture, m.info.image_size)\n"
        "np.save(sys.argv[3], m.model.predict(np.load(sys.argv[2]), verbose=0))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "x.npy"), str(tmp_path / "p.npy")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[:2] == ["False", "LoadedModel cnn 16"]
    assert np.allclose(np.load(tmp_path / "p.npy"), model.predict(x, verbose=0), atol=1e-6)


def test_impossible_weights_and_sizes_are_clear_errors(tmp_path):
    from cxrtool.models import build_model, check_image_size, normalise_weights

    with pytest.raises(CxrError, match="no ImageNet weights exist for vit"):
        normalise_weights("vit", "imagenet")
    with pytest.raises(CxrError, match="no such file"):
        normalise_weights("resnet50", str(tmp_path / "missing.h5"))
    with pytest.raises(CxrError, match="too small for resnet152"):
        check_image_size("resnet152", 16)
    with pytest.raises(CxrError, match="multiple of the ViT patch size"):
        check_image_size("vit", 25)
    with pytest.raises(CxrError, match="too small"):
        build_model("cnn", image_size=8, weights="none")
    with pytest.raises(UsageError, match="--patch-size applies to the vit model only"):
        build_model("cnn", image_size=16, weights="none", patch_size=4)


def test_preprocess_scalings():
    from cxrtool.models.layers import CAFFE_MEANS_BGR, Preprocess

    x = np.full((1, 4, 4, 1), 255.0, dtype="float32")
    assert np.allclose(np.asarray(Preprocess(4, 1, "unit")(x)), 1.0)
    assert np.allclose(np.asarray(Preprocess(4, 3, "tf")(x)), 1.0)
    caffe = np.asarray(Preprocess(4, 3, "caffe")(x))
    assert caffe.shape == (1, 4, 4, 3)
    assert np.allclose(caffe[0, 0, 0], 255.0 - np.asarray(CAFFE_MEANS_BGR), atol=1e-3)
    resized = np.asarray(Preprocess(8, 1, "unit")(x))
    assert resized.shape == (1, 8, 8, 1)


def test_augment_is_identity_at_inference_and_bounded_in_training():
    from cxrtool.models.layers import Augment

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (4, 16, 16, 1)).astype("float32")
    layer = Augment(rotation=15, shift=0.1, zoom=0.2, brightness=0.2, contrast=0.2, seed=1)
    assert np.array_equal(np.asarray(layer(x, training=False)), x)
    y = np.asarray(layer(x, training=True))
    assert y.shape == x.shape and not np.allclose(y, x)
    assert y.min() >= 0.0 and y.max() <= 255.0
    cfg = layer.get_config()
    assert Augment.from_config(cfg).get_config() == cfg


def test_vit_head_pools_tokens_instead_of_flattening():
    from cxrtool.models import build_model

    model = build_model("vit", image_size=24, weights="none", vit_layers=1)
    fmap = model.get_layer("feature_map").output
    assert tuple(fmap.shape[1:]) == (8, 8, 64)
    dense = [layer for layer in model.layers if type(layer).__name__ == "Dense"]
    assert max(int(np.prod(w.shape)) for layer in dense for w in layer.weights) <= 64 * 128
    assert model.count_params() < 200_000


def test_cnn_is_small_and_flat():
    from cxrtool.models import build_model

    model = build_model("cnn", image_size=32, weights="none", augment={})
    assert model.input.shape == (None, 32, 32, 1)
    assert model.count_params() < 1_000_000
    assert not any(hasattr(layer, "layers") for layer in model.layers)  # no nested Model
    names = [layer.name for layer in model.layers]
    assert names[:3] == ["image", "augment", "preprocess"]
    assert names[-5:] == ["avg_pool", "head_dropout", "logits", "probs", "cxrtool_info"]
    assert len(model.get_layer("feature_map").output.shape) == 4


def test_artifact_round_trip_and_format_errors(tmp_path):
    from cxrtool.artifact import ModelInfo, load_model, read_info, save_model
    from cxrtool.backend import import_keras
    from cxrtool.models import build_model

    keras = import_keras()
    model = build_model("cnn", image_size=16, weights="none")
    info = ModelInfo("cnn", classes=list(CLASSES), image_size=16, gradcam_layer="feature_map",
                     dataset_fingerprint="abc", extra={"members": ["a", "b"]})
    path = save_model(model, tmp_path / "m" / "cnn.keras", info)
    assert sorted(p.name for p in path.parent.iterdir()) == ["cnn.keras"]  # no temp file left
    got = read_info(path)
    assert got.architecture == "cnn" and got.extra == {"members": ["a", "b"]} and got.keras_version
    loaded = load_model(path)
    x = np.random.default_rng(0).uniform(0, 255, (3, 16, 16, 1)).astype("float32")
    assert np.allclose(loaded.model.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert loaded.info.dataset_fingerprint == "abc"

    # a failing save leaves the old file intact and no temp file
    class Boom(Exception):
        pass

    original = model.save
    model.save = lambda *a, **k: (_ for _ in ()).throw(Boom())
    with pytest.raises(Boom):
        save_model(model, path, info)
    model.save = original
    assert read_info(path).architecture == "cnn"
    assert sorted(p.name for p in path.parent.iterdir()) == ["cnn.keras"]

    plain = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    plain.save(tmp_path / "plain.keras")
    with pytest.raises(ModelFormatError, match="not a cxrtool model"):
        load_model(tmp_path / "plain.keras")
    (tmp_path / "junk.keras").write_text("hello")
    with pytest.raises(ModelFormatError, match="not a .keras model file"):
        read_info(tmp_path / "junk.keras")
    with pytest.raises(ModelNotFoundError):
        read_info(tmp_path / "none.keras")
    # metadata is plain JSON inside config.json
    with zipfile.ZipFile(path) as zf:
        config = zf.read("config.json").decode()
    assert "cxrtool_info" in config and json.loads(config)


_MNV2_CACHE = Path.home() / ".keras" / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


@pytest.mark.skipif(_MNV2_CACHE.exists(), reason="ImageNet weights are cached here: nothing to fail")
def test_imagenet_offline_is_a_clear_error():
    from cxrtool.models import build_model

    with pytest.raises(CxrError) as err:
        build_model("mobilenetv2", image_size=32, weights="imagenet")
    message = str(err.value)
    assert "ImageNet weights" in message and "--weights PATH" in message and "--weights none" in message
    assert "\n" not in message


def test_warm_start_from_a_cxrtool_model_file(tmp_path):
    from cxrtool.artifact import ModelInfo, save_model
    from cxrtool.models import build_model

    source = build_model("cnn", image_size=16, weights="none", seed=1)
    path = save_model(source, tmp_path / "cnn.keras", ModelInfo("cnn", image_size=16))
    warm = build_model("cnn", image_size=16, weights=str(path), seed=2)
    assert len(warm.get_weights()) == len(source.get_weights()) > 0
    for a, b in zip(source.get_weights(), warm.get_weights()):
        assert np.array_equal(a, b)
    vit = build_model("vit", image_size=12, weights="none", vit_layers=1)
    other = save_model(vit, tmp_path / "vit.keras", ModelInfo("vit", image_size=12))
    with pytest.raises(ModelFormatError, match="does not fit a cnn model"):
        build_model("cnn", image_size=16, weights=str(other))
    from cxrtool.backend import import_keras

    keras = import_keras()
    plain = tmp_path / "plain.keras"
    keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]).save(plain)
    with pytest.raises(ModelFormatError, match="not a cxrtool model"):
        build_model("cnn", image_size=16, weights=str(plain))
