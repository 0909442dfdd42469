"""The classifiers cxrtool builds. Importing this package is cheap (no Keras).

Modules, by job:

* :mod:`~cxrtool.models.names`    the fixed layer names every model has
* :mod:`~cxrtool.models.registry` the architectures (:class:`ArchSpec`), their defaults and size checks
* :mod:`~cxrtool.models.build`    :func:`build_model`: the flat graph around a backbone
* :mod:`~cxrtool.models.weights`  ImageNet / file weights, warm starts, the offline error
* :mod:`~cxrtool.models.layers`   the registered custom layers (imports Keras)
* :mod:`~cxrtool.models.robustness` the ``--normalize`` modes and ``--acquisition`` levels (no Keras)
* :mod:`~cxrtool.models.normalize` the per-image intensity normalisation layer (imports Keras)
* :mod:`~cxrtool.models.lungcrop` the lung-field crop layer and :func:`lung_box` (imports Keras)
* :mod:`~cxrtool.models.acquisition` acquisition shifts as tensor functions, for ``Augment`` (imports Keras)
* :mod:`~cxrtool.models.applications`, :mod:`~cxrtool.models.cnn`, :mod:`~cxrtool.models.vit`
  one backbone builder each (``build_backbone``; import Keras)

This file only re-exports.
"""

from __future__ import annotations

from .build import backbone_layer_names, build_model
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
from .registry import (
    ARCHITECTURES,
    VIT_DEFAULTS,
    ArchSpec,
    arch_options,
    check_image_size,
    default_image_size,
    get_spec,
    min_image_size,
)
from .weights import normalise_weights

__all__ = [
    "ARCHITECTURES",
    "AUGMENT_LAYER",
    "CROP_LAYER",
    "ArchSpec",
    "DROPOUT_LAYER",
    "HEAD_LAYERS",
    "IMAGE_LAYER",
    "INFO_LAYER",
    "LOGITS_LAYER",
    "NORMALIZE_LAYER",
    "POOL_LAYER",
    "PREPROCESS_LAYER",
    "PROBS_LAYER",
    "VIT_DEFAULTS",
    "arch_options",
    "backbone_layer_names",
    "build_model",
    "check_image_size",
    "default_image_size",
    "get_spec",
    "min_image_size",
    "normalise_weights",
]
