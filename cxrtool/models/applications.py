"""MobileNetV2, ResNet50 and ResNet152 from ``keras.applications``, built flat.

The backbone is created on the output tensor of cxrtool's ``preprocess`` layer
(``input_tensor=``), so its layers sit directly in the classifier's graph and Grad-CAM can
split the model at any of them. Pretrained weights are loaded into a separate, standalone
copy of the backbone (:func:`cxrtool.models.weights.pretrained_backbone`) and copied over
layer by layer.
"""

from __future__ import annotations

import warnings

from ..backend import import_keras
from .weights import copy_weights_in_order, pretrained_backbone

keras = import_keras()

CONSTRUCTORS = {
    "mobilenetv2": keras.applications.MobileNetV2,
    "resnet50": keras.applications.ResNet50,
    "resnet152": keras.applications.ResNet152,
}


def build_backbone(spec, x, size: int, *, weights: str = "none", seed: int | None = None):
    """Build SPEC's backbone on tensor X; returns (feature tensor, backbone layer names).

    WEIGHTS: "none", "imagenet" or a backbone weights file. (SEED: unused, the applications
    initialise themselves.)
    """
    ctor = CONSTRUCTORS[spec.name]
    # load pretrained weights first: an offline ImageNet fetch or a bad file fails before any building
    source = pretrained_backbone(ctor, spec.name, size, weights) if weights != "none" else None
    before = {id(t) for t in _all_layers_upstream(x)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = ctor(include_top=False, weights=None, input_tensor=x, input_shape=(size, size, 3))
    features = graph.output
    names = tuple(layer.name for layer in graph.layers if id(layer) not in before)
    if features.name != spec.gradcam_layer and graph.layers[-1].name != spec.gradcam_layer:
        raise RuntimeError(f"{spec.name}: expected last backbone layer {spec.gradcam_layer}, got {graph.layers[-1].name}")
    if source is not None:
        copy_weights_in_order(spec.name, source.layers, graph.layers)
    return features, names


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
