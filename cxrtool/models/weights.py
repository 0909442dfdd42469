"""Where a model's first weights come from: ImageNet, a weights file, or another cxrtool model.

``--weights`` is checked here before anything is built (:func:`normalise_weights`). The
``keras.applications`` backbones get ImageNet or backbone weight files through a standalone
copy of the backbone (exactly the way Keras loads them), with one clear error when this
machine cannot download them (:func:`pretrained_backbone`). Any architecture can warm-start
from a whole-model file: a cxrtool ``.keras`` or a ``.weights.h5`` of the same model
(:func:`load_weights_file`).

This module does not import :mod:`cxrtool.artifact` (the artifact imports the model layers,
so that would be a cycle); it reads a warm-start file's architecture from its info layer.
Keras is imported inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from pathlib import Path

from ..errors import CxrError, ModelFormatError
from .names import INFO_LAYER
from .registry import ArchSpec, get_spec


def normalise_weights(name: str, weights: str | None) -> str:
    """"imagenet", "none" or an existing file path; a clear error for impossible choices."""
    spec = get_spec(name)
    if weights is None or weights == "":
        return spec.default_weights
    low = str(weights).lower()
    if low in ("none", "random", "scratch"):
        return "none"
    if low == "imagenet":
        if not spec.pretrained:
            raise CxrError(
                f"no ImageNet weights exist for {name} (it is trained from scratch); "
                "use --weights none or --weights PATH"
            )
        return "imagenet"
    path = Path(weights)
    if not path.is_file():
        raise CxrError(f"--weights {weights}: no such file (expected imagenet, none or a weights file)")
    return str(path)


def is_whole_model_file(spec: ArchSpec, weights: str) -> bool:
    """Is WEIGHTS a file of the whole model (loaded after building) rather than of the backbone?

    A cxrtool ``.keras`` always is; for architectures without ImageNet weights any file is,
    while the ``keras.applications`` backbones load their own weight files.
    """
    if weights in ("none", "imagenet"):
        return False
    return not spec.pretrained or weights.endswith(".keras")


def pretrained_backbone(constructor, name: str, size: int, weights: str):
    """A standalone ``keras.applications`` backbone (include_top=False) with WEIGHTS loaded.

    WEIGHTS is "imagenet" (downloaded once by Keras into ``~/.keras/models``) or a file path.
    Offline, the ImageNet case is one error line that says what to do instead.
    """
    try:
        # Keras prints "Downloading data from ..." on stdout: keep stdout for results only.
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return constructor(include_top=False, weights=weights, input_shape=(size, size, 3))
    except Exception as exc:
        text = _short(exc, 160)
        if weights == "imagenet":
            raise CxrError(
                f"cannot get the ImageNet weights for {name} (Keras downloads them once and caches them "
                f"in ~/.keras/models; this machine could not fetch them: {text}); "
                f"use --weights PATH with a local weights file (e.g. the Keras '..._notop.h5' copied "
                f"from a machine with internet) or --weights none to train from scratch"
            ) from None
        raise ModelFormatError(
            f"--weights {weights} does not fit the {name} backbone (include_top=False) at {size} px: {_short(exc)}"
        ) from None


def copy_weights_in_order(name: str, source_layers, target_layers) -> None:
    """Copy weights layer by layer, in order, between two builds of the same backbone."""
    src = [layer for layer in source_layers if layer.weights]
    dst = [layer for layer in target_layers if layer.weights]
    if len(src) != len(dst):
        raise ModelFormatError(f"{name}: weighted layer count differs ({len(src)} vs {len(dst)})")
    for a, b in zip(src, dst):
        b.set_weights(a.get_weights())


def load_weights_file(model, path: str) -> None:
    """Warm-start a whole model from a weights file.

    Accepts a cxrtool ``.keras`` model of the same architecture (weights copied layer by layer
    where the names and shapes match; at least 90% of the weighted layers must) or a Keras
    ``.weights.h5``/``.h5`` weights file of the same model.
    """
    if str(path).endswith(".keras"):
        source = _load_cxrtool_model(path)
        architecture = _architecture(source, path)
        if architecture != model.name:
            raise ModelFormatError(
                f"--weights {path} is a {architecture} model; it does not fit a {model.name} model"
            )
        weighted = [layer for layer in model.layers if layer.weights]
        copied = copy_matching_weights(source, model)
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
    """Copy weights from SOURCE to TARGET for layers with the same name and shapes; returns the count."""
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


def _load_cxrtool_model(path: str):
    from ..backend import import_keras

    keras = import_keras()
    from . import layers as _layers  # noqa: F401  (registers the custom layers)

    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:
        raise ModelFormatError(f"--weights {path}: cannot load the model ({type(exc).__name__}: {_short(exc)})") from None


def _architecture(model, path: str) -> str:
    try:
        return json.loads(model.get_layer(INFO_LAYER).info)["architecture"]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ModelFormatError(f"--weights {path}: a Keras model but not a cxrtool model") from None


def _short(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = [
    "copy_matching_weights",
    "copy_weights_in_order",
    "is_whole_model_file",
    "load_weights_file",
    "normalise_weights",
    "pretrained_backbone",
]
