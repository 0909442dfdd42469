"""Build a classifier: the same flat graph around every architecture's backbone.

``image`` (input, raw grayscale ``(None, S, S, 1)`` float32 in 0..255) -> ``lung_crop``
(the lung-field crop, only when asked) -> ``augment``
(training only) -> ``normalize`` (per-image intensity normalisation, only when asked) -> ``preprocess`` (resize, gray to the backbone's channels, its scaling) ->
backbone ... ``<gradcam_layer>`` -> ``avg_pool`` -> ``head_dropout`` -> ``logits``
(pre-softmax scores) -> ``probs`` (softmax, float32) -> ``cxrtool_info`` (identity carrying
the metadata). A calibrated model also has ``temperature`` between ``logits`` and ``probs``
(added after training by :mod:`cxrtool.evaluate.calibration`). Flat means no ``Model``
nested inside a ``Model``: Grad-CAM can split the graph at any layer by name.

Importing this module is cheap; :func:`build_model` imports Keras.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from ..labels import CLASSES
from .names import (
    AUGMENT_LAYER,
    CROP_LAYER,
    DROPOUT_LAYER,
    HEAD_LAYERS,
    IMAGE_LAYER,
    INFO_LAYER,
    LOGITS_LAYER,
    NORMALIZE_LAYER,
    POOL_LAYER,
    PREPROCESS_LAYER,
    PROBS_LAYER,
)
from .registry import arch_options, check_image_size, get_spec
from .weights import is_whole_model_file, load_weights_file, normalise_weights


def build_model(
    name: str,
    *,
    image_size: int | None = None,
    weights: str | None = None,
    classes: Sequence[str] = CLASSES,
    dropout: float = 0.3,
    augment: dict | None = None,
    normalize: dict | None = None,
    crop: str = "none",
    seed: int | None = None,
    **options: Any,
) -> Any:
    """Build a flat, uncompiled ``keras.Model`` for architecture NAME.

    ``weights``: "imagenet" (the keras.applications backbones), "none"/None (random init, or
    the architecture's default), or a path to a weights file (see
    :mod:`cxrtool.models.weights`). ``augment``: keyword arguments of
    :class:`~cxrtool.models.layers.Augment`, or None for no augmentation layer. ``normalize``:
    keyword arguments of :class:`~cxrtool.models.normalize.Normalize` (``mode``, ``low``,
    ``high``), or None (or mode "none") for no normalisation layer. ``crop``: "lungs" puts a
    :class:`~cxrtool.models.lungcrop.LungCrop` layer first, "none" (default) leaves it out.
    ``options``: architecture options (ViT: patch_size, vit_layers, vit_dim, vit_heads, vit_mlp).
    Every bad choice is a :class:`~cxrtool.errors.CxrError` before anything is built.
    """
    spec = get_spec(name)
    size = int(image_size or spec.default_image_size)
    opts = arch_options(name, options)
    check_image_size(name, size, **opts)
    weights = normalise_weights(name, weights)
    whole_model_file = is_whole_model_file(spec, weights)

    from ..backend import import_keras

    keras = import_keras()
    from . import layers as L

    inputs = keras.Input((size, size, 1), dtype="float32", name=IMAGE_LAYER)
    x = inputs
    if crop != "none":
        x = L.LungCrop(crop, name=CROP_LAYER)(x)
    if augment is not None:
        x = L.Augment(**augment, seed=seed, name=AUGMENT_LAYER)(x)
    if normalize and normalize.get("mode", "none") != "none":
        x = L.Normalize(**normalize, name=NORMALIZE_LAYER)(x)
    x = L.Preprocess(size, channels=spec.channels, scaling=spec.scaling, name=PREPROCESS_LAYER)(x)

    builder = importlib.import_module(f"{__package__}.{spec.builder}")
    features, backbone_layers = builder.build_backbone(
        spec, x, size, weights="none" if whole_model_file else weights, seed=seed, **opts
    )

    x = keras.layers.GlobalAveragePooling2D(name=POOL_LAYER)(features)
    x = keras.layers.Dropout(dropout, seed=seed, name=DROPOUT_LAYER)(x)
    x = keras.layers.Dense(len(classes), name=LOGITS_LAYER)(x)
    x = keras.layers.Activation("softmax", dtype="float32", name=PROBS_LAYER)(x)
    outputs = L.ModelInfoLayer("{}", name=INFO_LAYER)(x)
    model = keras.Model(inputs, outputs, name=spec.name)
    # remember which layers form the backbone (for --freeze-epochs); not serialised
    model._cxr_backbone_layers = tuple(backbone_layers)

    if whole_model_file:
        load_weights_file(model, weights)
    return model


def backbone_layer_names(model) -> tuple[str, ...]:
    """Names of the backbone layers of a model built (or loaded) by cxrtool."""
    names = getattr(model, "_cxr_backbone_layers", None)
    if names:
        return tuple(names)
    return tuple(layer.name for layer in model.layers if layer.name not in HEAD_LAYERS)


__all__ = ["backbone_layer_names", "build_model"]
