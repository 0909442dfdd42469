"""Which layer a CAM explains, and cutting the model there.

A target is a layer whose output is a spatial map ``(N, h, w, C)`` or a token sequence
``(N, T, D)`` on a square patch grid (ViT blocks); :func:`split_model` cuts the classifier
into ``features: image -> A`` and ``head: A -> logits`` so the gradient of a class score with
respect to ``A`` can be taken without TensorFlow's ``GradientTape``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import CxrError, UsageError
from ..models.names import HEAD_LAYERS, LOGITS_LAYER, POOL_LAYER

__all__ = ["SplitModel", "candidate_layers", "check_layer", "default_layer", "describe_candidates", "split_model",
           "tokens_to_grid"]


def _grid_of_shape(shape: Sequence[Any]) -> tuple[int, int] | None:
    """The spatial grid of a layer output shape, or None when it is not a spatial map."""
    if len(shape) == 4 and shape[1] and shape[2]:
        return int(shape[1]), int(shape[2])
    if len(shape) == 3 and shape[1]:
        tokens = int(shape[1])
        for t in (tokens, tokens - 1):  # patch tokens, or patch tokens plus a class token
            g = math.isqrt(max(t, 0))
            if g >= 1 and g * g == t:
                return g, g
    return None


def _output_shape(layer) -> tuple | None:
    try:
        out = layer.output
    except (AttributeError, ValueError):  # a layer used several times, or never called
        return None
    if isinstance(out, (list, tuple)):
        return None
    return tuple(out.shape)


def candidate_layers(model) -> list[tuple[str, tuple[int, int]]]:
    """Layers Grad-CAM can target, input to output: ``(name, (grid_h, grid_w))``.

    A candidate outputs a spatial map ``(N, h, w, C)`` or a token sequence ``(N, T, D)``
    whose token count (less a class token) is a square; the input and head layers of a
    cxrtool model are excluded, and so is everything after the global pooling layer.
    """
    found = []
    for layer in model.layers:
        if layer.name == POOL_LAYER:
            break
        kind = layer.__class__.__name__
        # padding layers only add a border of zeros; nested models are not one tensor
        if layer.name in HEAD_LAYERS or kind.startswith("ZeroPadding") or kind in ("Functional", "Model", "Sequential"):
            continue
        shape = _output_shape(layer)
        grid = _grid_of_shape(shape) if shape else None
        if grid:
            found.append((layer.name, grid))
    return found


def default_layer(model, info=None) -> str:
    """The last spatial feature map before the classifier head.

    The model's recorded ``gradcam_layer`` when it is a valid target, otherwise the deepest
    candidate (so models built outside cxrtool work too).
    """
    candidates = candidate_layers(model)
    names = {n for n, _ in candidates}
    recorded = getattr(info, "gradcam_layer", None) if info is not None else None
    if recorded and recorded in names:
        return recorded
    if not candidates:
        raise CxrError(f"model {model.name!r} has no spatial feature layer to compute Grad-CAM on")
    return candidates[-1][0]


def describe_candidates(model, *, limit: int = 12) -> str:
    """A one-line list for error messages: the last layer of each grid size, then the deepest."""
    candidates = candidate_layers(model)
    if not candidates:
        return "none"
    stage_ends = []
    for i, (name, grid) in enumerate(candidates):
        if i + 1 == len(candidates) or candidates[i + 1][1] != grid:
            stage_ends.append((name, grid))
    shown, seen = [], set()
    for name, grid in list(reversed(stage_ends)) + list(reversed(candidates)):
        if name not in seen and len(shown) < limit:
            shown.append(f"{name} ({grid[0]}x{grid[1]})")
            seen.add(name)
    more = len(candidates) - len(shown)
    text = ", ".join(shown)
    return text + (f", ... and {more} more (--layer list shows all)" if more > 0 else "")


def check_layer(model, layer_name: str) -> str:
    """``layer_name`` if Grad-CAM can target it; else a UsageError listing the choices."""
    names = [n for n, _ in candidate_layers(model)]
    if layer_name in names:
        return layer_name
    try:
        model.get_layer(layer_name)
        why = "is not a spatial feature map"
    except ValueError:
        why = "does not exist in"
    raise UsageError(
        f"--layer {layer_name!r} {why} model {model.name!r}; Grad-CAM layers (coarsest first, "
        f"last layer of each grid size): {describe_candidates(model)}"
    )


@dataclass
class SplitModel:
    """A classifier cut at ``layer``: ``features(image) -> A`` and ``head(A) -> logits``.

    When the rest of the graph also needs tensors that bypass ``layer`` (a layer inside a
    residual block), ``head`` takes ``[image, A]`` and ``head_takes_image`` is True: the
    bypassing branches are recomputed from the image, the ones through ``A`` use ``A``.
    """

    features: Any  # keras.Model
    head: Any  # keras.Model
    layer: str
    head_takes_image: bool


def split_model(model, layer_name: str, logits_layer: str = LOGITS_LAYER) -> SplitModel:
    """Split a flat functional classifier at ``layer_name`` (see :class:`SplitModel`)."""
    from ..backend import import_keras

    keras = import_keras()
    try:
        target = model.get_layer(layer_name).output
    except ValueError:
        check_layer(model, layer_name)  # raises with the candidate list
        raise
    try:
        logits = model.get_layer(logits_layer).output
    except ValueError:
        raise CxrError(f"model {model.name!r} has no {logits_layer!r} layer (pre-softmax scores)") from None
    image = model.inputs[0]
    features = keras.Model(image, target, name=f"{model.name}_to_{layer_name}")
    try:
        head = keras.Model(target, logits, name=f"{model.name}_from_{layer_name}")
        takes_image = False
    except ValueError:  # "not connected": part of the head bypasses the target tensor
        head = keras.Model([image, target], logits, name=f"{model.name}_from_{layer_name}")
        takes_image = True
    return SplitModel(features, head, layer_name, takes_image)


def tokens_to_grid(a):
    """(N, T, D) token sequence -> (N, g, g, D); a leading class token (T = g*g + 1) is dropped.
    4-D input is returned unchanged. Works on numpy and jax arrays."""
    if a.ndim == 4:
        return a
    if a.ndim != 3:
        raise ValueError(f"expected (N, h, w, C) or (N, tokens, dim), got shape {a.shape}")
    n, t, d = a.shape
    g = math.isqrt(t)
    if g * g != t:
        g = math.isqrt(t - 1)
        if g * g != t - 1:
            raise ValueError(f"{t} tokens do not form a square patch grid")
        a = a[:, 1:, :]
    return a.reshape(n, g, g, d)
