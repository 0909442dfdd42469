"""The model registry: every architecture ``cxrtool train --model NAME`` can build.

Importing this package is cheap (no Keras): the registry is plain data. :func:`build_model`
imports Keras lazily.

Every model built here is *flat* (the head hangs off the backbone's output tensor; no
``Model`` nested inside a ``Model``), takes raw grayscale pixels ``(None, S, S, 1)`` float32
in 0..255 and does its own augmentation (training only), resizing and scaling inside. Its
layers are named predictably:

``image`` (input) -> ``augment`` -> ``preprocess`` -> backbone ... ``<gradcam_layer>`` ->
``avg_pool`` -> ``head_dropout`` -> ``logits`` (pre-softmax scores) -> ``probs`` (softmax,
float32) -> ``cxrtool_info`` (identity carrying the metadata).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .. import CLASSES
from ..errors import CxrError, ModelNotFoundError

INFO_LAYER = "cxrtool_info"
LOGITS_LAYER = "logits"
PROBS_LAYER = "probs"
PREPROCESS_LAYER = "preprocess"
AUGMENT_LAYER = "augment"


@dataclass(frozen=True)
class ArchSpec:
    name: str
    family: str  # "applications" | "cnn" | "vit"
    default_image_size: int
    min_image_size: int
    default_batch_size: int
    default_weights: str  # "imagenet" | "none"
    scaling: str  # Preprocess scaling: "caffe" | "tf" | "unit"
    channels: int  # channels the backbone sees (gray repeated)
    gradcam_layer: str  # last spatial feature layer
    description: str
    options: dict = field(default_factory=dict)  # architecture options and their defaults


#: ViT defaults (paper: 72x72 input, patch 3 -> 576 tokens, 8 layers). See docs/training.md.
VIT_DEFAULTS = {"patch_size": 3, "vit_layers": 8, "vit_dim": 64, "vit_heads": 4, "vit_mlp": 128}

ARCHITECTURES: dict[str, ArchSpec] = {
    "mobilenetv2": ArchSpec(
        "mobilenetv2", "applications", 100, 32, 32, "imagenet", "tf", 3, "out_relu",
        "keras.applications.MobileNetV2 backbone (ImageNet transfer learning)",
    ),
    "resnet50": ArchSpec(
        "resnet50", "applications", 100, 32, 32, "imagenet", "caffe", 3, "conv5_block3_out",
        "keras.applications.ResNet50 backbone (ImageNet transfer learning)",
    ),
    "resnet152": ArchSpec(
        "resnet152", "applications", 100, 32, 32, "imagenet", "caffe", 3, "conv5_block3_out",
        "keras.applications.ResNet152 backbone (ImageNet transfer learning)",
    ),
    "cnn": ArchSpec(
        "cnn", "cnn", 100, 16, 32, "none", "unit", 1, "feature_map",
        "small custom CNN (4 conv stages, 0.54 M parameters), trained from scratch",
    ),
    "vit": ArchSpec(
        "vit", "vit", 72, 6, 16, "none", "unit", 1, "feature_map",
        "Vision Transformer (patch 3, 8 layers, dim 64, 4 heads, token average pooling)",
        options=dict(VIT_DEFAULTS),
    ),
}


def get_spec(name: str) -> ArchSpec:
    """The registry entry for NAME, or a one-line error listing the choices."""
    spec = ARCHITECTURES.get((name or "").lower())
    if spec is None:
        raise ModelNotFoundError(
            f"unknown model architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}"
        )
    return spec


def default_image_size(name: str) -> int:
    return get_spec(name).default_image_size


def min_image_size(name: str, **options) -> int:
    spec = get_spec(name)
    if spec.family == "vit":
        return 2 * int(options.get("patch_size") or VIT_DEFAULTS["patch_size"])
    return spec.min_image_size


def check_image_size(name: str, image_size: int, **options) -> None:
    low = min_image_size(name, **options)
    if image_size < low:
        raise CxrError(f"--image-size {image_size} is too small for {name}: it needs at least {low} px")
    if get_spec(name).family == "vit":
        patch = int(options.get("patch_size") or VIT_DEFAULTS["patch_size"])
        if image_size % patch:
            raise CxrError(
                f"--image-size {image_size} is not a multiple of the ViT patch size {patch} "
                f"(e.g. use {image_size - image_size % patch} or {image_size + patch - image_size % patch})"
            )


def build_model(
    name: str,
    *,
    image_size: int | None = None,
    weights: str | None = None,
    classes: Sequence[str] = CLASSES,
    dropout: float = 0.3,
    augment: dict | None = None,
    seed: int | None = None,
    **options,
):
    """Build a flat, uncompiled classifier for architecture NAME.

    ``weights``: "imagenet" (applications only), "none"/None (random init), or a path to a
    weights file (see :func:`cxrtool.models.applications.load_backbone_weights` and
    :func:`load_weights_file`). ``augment``: keyword arguments of
    :class:`~cxrtool.models.layers.Augment` or None for no augmentation layer.
    ``options``: architecture options (ViT: patch_size, vit_layers, vit_dim, vit_heads, vit_mlp).
    """
    spec = get_spec(name)
    size = int(image_size or spec.default_image_size)
    unknown = set(options) - set(spec.options)
    if unknown:
        raise CxrError(f"{name} has no option(s) {', '.join(sorted(unknown))}")
    opts = {**spec.options, **{k: v for k, v in options.items() if v is not None}}
    check_image_size(name, size, **opts)
    weights = normalise_weights(name, weights)
    # a whole-model file (a cxrtool .keras, or any file for cnn/vit) is loaded after building;
    # keras.applications loads ImageNet or backbone weight files itself
    whole_model_file = weights not in ("none", "imagenet") and (
        spec.family != "applications" or weights.endswith(".keras")
    )

    from ..backend import import_keras

    keras = import_keras()
    from . import layers as L

    inputs = keras.Input((size, size, 1), dtype="float32", name="image")
    x = inputs
    if augment is not None:
        x = L.Augment(**augment, seed=seed, name=AUGMENT_LAYER)(x)
    x = L.Preprocess(size, channels=spec.channels, scaling=spec.scaling, name=PREPROCESS_LAYER)(x)

    if spec.family == "applications":
        from .applications import build_backbone

        features, backbone_layers = build_backbone(spec, x, size, "none" if whole_model_file else weights)
    elif spec.family == "cnn":
        from .cnn import build_cnn

        features, backbone_layers = build_cnn(x, seed=seed)
    else:
        from .vit import build_vit

        features, backbone_layers = build_vit(x, size, seed=seed, **opts)

    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(features)
    x = keras.layers.Dropout(dropout, seed=seed, name="head_dropout")(x)
    x = keras.layers.Dense(len(classes), name=LOGITS_LAYER)(x)
    x = keras.layers.Activation("softmax", dtype="float32", name=PROBS_LAYER)(x)
    outputs = L.ModelInfoLayer("{}", name=INFO_LAYER)(x)
    model = keras.Model(inputs, outputs, name=spec.name)
    # remember which layers form the backbone (for --freeze-epochs); not serialised
    model._cxr_backbone_layers = tuple(backbone_layers)

    if whole_model_file:
        load_weights_file(model, weights)
    return model


def normalise_weights(name: str, weights: str | None) -> str:
    """"imagenet", "none" or an existing file path; a clear error for impossible choices."""
    from pathlib import Path

    spec = get_spec(name)
    if weights is None or weights == "":
        return spec.default_weights
    low = str(weights).lower()
    if low in ("none", "random", "scratch"):
        return "none"
    if low == "imagenet":
        if spec.family != "applications":
            raise CxrError(
                f"no ImageNet weights exist for {name} (it is trained from scratch); "
                "use --weights none or --weights PATH"
            )
        return "imagenet"
    path = Path(weights)
    if not path.is_file():
        raise CxrError(f"--weights {weights}: no such file (expected imagenet, none or a weights file)")
    return str(path)


def backbone_layer_names(model) -> tuple[str, ...]:
    """Names of the backbone layers of a model built (or loaded) by cxrtool."""
    names = getattr(model, "_cxr_backbone_layers", None)
    if names:
        return tuple(names)
    head = {"image", AUGMENT_LAYER, PREPROCESS_LAYER, "avg_pool", "head_dropout", LOGITS_LAYER, PROBS_LAYER, INFO_LAYER}
    return tuple(layer.name for layer in model.layers if layer.name not in head)


def load_weights_file(model, path: str) -> None:
    """Warm-start a whole model from a weights file.

    Accepts a cxrtool ``.keras`` model (weights copied layer by layer where the names and
    shapes match; at least the backbone must match) or a Keras ``.weights.h5``/``.h5``
    weights file of the same architecture.
    """
    from ..errors import ModelFormatError

    if str(path).endswith(".keras"):
        from ..artifact import load_model

        loaded = load_model(path)
        if loaded.info.architecture != model.name:
            raise ModelFormatError(
                f"--weights {path} is a {loaded.info.architecture} model; it does not fit a {model.name} model"
            )
        weighted = [layer for layer in model.layers if layer.weights]
        copied = copy_matching_weights(loaded.model, model)
        if copied < 0.9 * len(weighted):
            raise ModelFormatError(
                f"--weights {path}: only {copied} of {len(weighted)} layers fit this {model.name} model "
                "(different image size or options?)"
            )
        return
    try:
        model.load_weights(path)
    except Exception as exc:  # Keras raises ValueError/KeyError/OSError for mismatches
        raise ModelFormatError(
            f"--weights {path} does not fit a {model.name} model at this image size: {_short(exc)}"
        ) from None


def copy_matching_weights(source, target) -> int:
    """Copy weights from ``source`` to ``target`` for layers with the same name and shapes."""
    copied = 0
    for layer in target.layers:
        if not layer.weights:
            continue
        try:
            other = source.get_layer(layer.name)
        except ValueError:
            continue
        theirs = other.get_weights()
        mine = layer.get_weights()
        if len(theirs) == len(mine) and all(a.shape == b.shape for a, b in zip(theirs, mine)):
            layer.set_weights(theirs)
            copied += 1
    return copied


def _short(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = [
    "ARCHITECTURES",
    "ArchSpec",
    "INFO_LAYER",
    "LOGITS_LAYER",
    "PROBS_LAYER",
    "build_model",
    "check_image_size",
    "default_image_size",
    "get_spec",
    "min_image_size",
    "normalise_weights",
]
