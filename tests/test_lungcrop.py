"""The lung-field crop (``cxrtool train --crop lungs``, :mod:`cxrtool.models.lungcrop`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cxrtool.synthetic import make_phantom
from helpers_dataset import make_dataset

SOURCES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sources"


def _phantoms(n: int = 4, size: int = 64, seed: int = 0) -> np.ndarray:
    labels = ("covid", "normal", "pneumonia")
    return np.stack([make_phantom(labels[i % 3], seed + i, size) for i in range(n)]).astype(np.float32)[..., None]


def test_train_crop_lungs_saves_loads_and_predicts_the_same(tmp_path, capsys):
    """--crop reaches the saved model (a LungCrop layer first, the choice in the metadata), and
    the reloaded model (safe mode) and `cxrtool predict` give the model's own probabilities."""
    from cxrtool.artifact import load_model, read_info
    from cxrtool.cli import main
    from cxrtool.inference import predict_images

    data = make_dataset(tmp_path / "data", {"train": 3, "val": 1, "test": 1}, size=48)
    models = tmp_path / "models"
    assert main(["train", str(data), "--model", "cnn", "--image-size", "32", "--epochs", "1", "--batch-size", "6",
                 "--seed", "0", "--models-dir", str(models), "--crop", "lungs", "-q"]) == 0
    path = models / "cnn.keras"
    assert capsys.readouterr().out.strip() == str(path)
    info = read_info(path)
    assert info.preprocessing["crop"] == "lungs" and info.training["options"]["crop"] == "lungs"
    assert info.preprocessing["inside_model"][0].startswith("crop: lungs")
    loaded = load_model(path)
    names = [layer.name for layer in loaded.model.layers]
    assert names[:3] == ["image", "lung_crop", "augment"]
    x = _phantoms(3, 32, seed=7)
    np.testing.assert_allclose(predict_images(loaded, list(x[..., 0].astype(np.uint8))),
                               np.asarray(loaded.model(x)), atol=1e-5)
    assert main(["train", str(data), "--model", "cnn", "--crop", "eyes", "--epochs", "1"]) == 2
