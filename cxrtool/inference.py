"""The one path from images to class probabilities, shared by ``predict``, ``evaluate``,
``gradcam`` and ``ensemble``: resolve ``--model``, load the ``.keras`` artifact, resize the
way training did (:func:`cxrtool.inputs.resize_image`) and run the model in batches."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from .artifact import LoadedModel, load_model
from .inputs import resize_image
from .resolve import resolve_model


def open_model(name: str, models_dir: str | Path | None = None) -> LoadedModel:
    """``--model NAME`` (a bare name or a ``.keras`` path) -> the loaded model and its metadata."""
    return load_model(resolve_model(name, models_dir))


def open_model_for_data(path: str | Path, data: str | Path, *, splits: Sequence[str], purpose: str,
                        models_dir: str | Path | None = None, progress=None):  # noqa: ANN001 - ProgressFn
    """``(source, manifest, loaded)`` for a fit on an existing model (a temperature, OOD
    statistics): the model file resolved, the dataset's ``splits`` present, the model loaded and
    its classes those of the dataset; one clear error otherwise."""
    from .errors import DatasetError, ModelFormatError
    from .manifest import read_manifest
    from .progress import report

    source = resolve_model(str(path), models_dir)
    manifest = read_manifest(data)
    for split in splits:
        if not manifest.split(split):
            raise DatasetError(f"{manifest.root}: the {split} split is empty; it is needed to fit {purpose}")
    report(progress, "load", 0, 1, message=f"loading {source}")
    loaded = load_model(source)
    info = loaded.info
    if set(manifest.classes) != set(info.classes):
        raise ModelFormatError(f"model {source} predicts {', '.join(info.classes)} but {data} has classes "
                               f"{', '.join(manifest.classes)}")
    return source, manifest, loaded


def model_input(images: Sequence[np.ndarray], size: int) -> np.ndarray:
    """Grayscale images of any size -> ``(N, size, size, 1)`` float32 in 0..255, as in training."""
    if not len(images):
        return np.zeros((0, size, size, 1), np.float32)
    return np.stack([resize_image(img, size) for img in images]).astype(np.float32)[..., None]


def predict_batches(loaded: LoadedModel, batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """Probabilities ``(n, n_classes)`` for each batch of model input, batch by batch (streaming)."""
    for x in batches:
        if len(x):
            yield np.asarray(loaded.model.predict_on_batch(x), dtype=np.float32)
        else:
            yield np.zeros((0, len(loaded.info.classes)), np.float32)


def predict_images(loaded: LoadedModel, images: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
    """Probabilities for a list of decoded grayscale images (any sizes)."""
    size = loaded.info.image_size
    batches = (model_input(images[i : i + batch_size], size) for i in range(0, len(images), batch_size))
    out = list(predict_batches(loaded, batches))
    return np.concatenate(out) if out else np.zeros((0, len(loaded.info.classes)), np.float32)
