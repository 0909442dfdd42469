"""MobileNetV2, ResNet50 and ResNet152 from ``keras.applications``, built flat.

The backbone is created on the output tensor of cxrtool's ``preprocess`` layer
(``input_tensor=``), so its layers sit directly in the classifier's graph and Grad-CAM can
split the model at any of them. Pretrained weights are loaded into a separate, standalone
copy of the backbone (exactly the way Keras loads them) and copied over layer by layer.
"""

from __future__ import annotations

import contextlib
import sys
import warnings

from ..backend import import_keras
from ..errors import CxrError, ModelFormatError

keras = import_keras()

CONSTRUCTORS = {
    "mobilenetv2": keras.applications.MobileNetV2,
    "resnet50": keras.applications.ResNet50,
    "resnet152": keras.applications.ResNet152,
}


def build_backbone(spec, x, size: int, weights: str):
    """Build ``spec``'s backbone on tensor ``x``; returns (feature tensor, backbone layer names)."""
    ctor = CONSTRUCTORS[spec.name]
    # load pretrained weights first: an offline ImageNet fetch or a bad file fails before any building
    source = standalone_backbone(spec.name, size, weights) if weights != "none" else None
    before = {id(t) for t in _all_layers_upstream(x)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = ctor(include_top=False, weights=None, input_tensor=x, input_shape=(size, size, 3))
    features = graph.output
    names = tuple(layer.name for layer in graph.layers if id(layer) not in before)
    if features.name != spec.gradcam_layer and graph.layers[-1].name != spec.gradcam_layer:
        raise RuntimeError(f"{spec.name}: expected last backbone layer {spec.gradcam_layer}, got {graph.layers[-1].name}")
    if source is not None:
        copy_backbone_weights(spec, source, graph)
    return features, names


def copy_backbone_weights(spec, source, graph) -> None:
    """Copy the weights of a standalone backbone into the flat graph, layer by layer in order."""
    src_layers = [layer for layer in source.layers if layer.weights]
    dst_layers = [layer for layer in graph.layers if layer.weights]
    if len(src_layers) != len(dst_layers):
        raise ModelFormatError(f"{spec.name}: weighted layer count differs ({len(src_layers)} vs {len(dst_layers)})")
    for src, dst in zip(src_layers, dst_layers):
        dst.set_weights(src.get_weights())


def standalone_backbone(name: str, size: int, weights: str):
    """A plain ``keras.applications`` backbone (include_top=False) with ``weights`` loaded."""
    ctor = CONSTRUCTORS[name]
    try:
        # Keras prints "Downloading data from ..." on stdout: keep stdout for results only.
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ctor(include_top=False, weights=weights, input_shape=(size, size, 3))
    except Exception as exc:
        text = " ".join(str(exc).split())
        if weights == "imagenet":
            raise CxrError(
                f"cannot get the ImageNet weights for {name} (Keras downloads them once and caches them "
                f"in ~/.keras/models; this machine could not fetch them: {text[:160]}); "
                f"use --weights PATH with a local weights file (e.g. the Keras '..._notop.h5' copied "
                f"from a machine with internet) or --weights none to train from scratch"
            ) from None
        raise ModelFormatError(
            f"--weights {weights} does not fit the {name} backbone (include_top=False) at {size} px: {text[:200]}"
        ) from None


def _all_layers_upstream(tensor):
    """Layers that produced ``tensor`` and everything before it."""
    seen, stack, out = set(), [tensor], []
    while stack:
        t = stack.pop()
        history = getattr(t, "_keras_history", None)
        if history is None:
            continue
        op = history.operation
        if id(op) in seen:
            continue
        seen.add(id(op))
        out.append(op)
        for node in op._inbound_nodes:
            stack.extend(node.input_tensors)
    return out
