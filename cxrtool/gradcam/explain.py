"""Explaining decoded images with a cxrtool model: one heat map per image, at the image's
own resolution, plus the prediction.

For a single model the CAM runs on the model's input (the training resize) and the grid map
is upsampled smoothly to the image and scaled to 0..1 (:func:`normalise_map`). An ensemble's map is the weighted
mean of its members' normalised maps, each computed on exactly the input the member sees
inside the ensemble, for the class the *ensemble* predicts (or the one asked for).

A model trained with ``--crop lungs`` sees only its lung box, so its grid map lives in crop
coordinates: it is resized into the box (:func:`cropped_boxes` recomputes the box with the
model's own :func:`~cxrtool.models.lungcrop.lung_box`) and is zero outside it, so overlays and
the border/text heat shares of ``evaluate --attention`` are in the original image's coordinates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import CxrError, UsageError
from ..models.names import CROP_LAYER, LOGITS_LAYER
from .methods import make_cam

__all__ = ["Explanation", "class_index", "cropped_boxes", "explain", "normalise_map", "place_map", "upsample_map"]


@dataclass
class Explanation:
    """One image explained: the heat map at the image's resolution plus the prediction."""

    heatmap: np.ndarray  # (H, W) float32 in 0..1, the original image's resolution
    label: str  # predicted class
    probability: float  # of the predicted class
    target: str  # the class the map explains (the predicted one unless asked otherwise)
    target_probability: float
    probabilities: dict[str, float]
    layer: str  # target layer (for an ensemble: "member:layer, ...")
    grid: tuple[int, int]  # the target layer's grid (h, w)
    members: list[dict] = field(default_factory=list)
    #: the lung box the model cropped to, (top, left, bottom, right) as fractions of the image
    #: (``--crop lungs`` models only; None: the model saw the whole image)
    box: tuple[float, float, float, float] | None = None


def upsample_map(cam: np.ndarray, height: int, width: int) -> np.ndarray:
    """Smoothly (bicubic, on the float map) resize a CAM to ``(height, width)``; clipped at 0."""
    from PIL import Image

    cam = np.asarray(cam, dtype=np.float32)
    if cam.shape == (height, width):
        return cam.copy()
    im = Image.fromarray(np.ascontiguousarray(cam), mode="F").resize((int(width), int(height)), Image.BICUBIC)
    return np.maximum(np.asarray(im, dtype=np.float32), 0.0)


def place_map(cam: np.ndarray, height: int, width: int, box=None) -> np.ndarray:
    """A grid map at the image's resolution: upsampled to ``(height, width)``, or, for a model
    that cropped to ``box`` (fractions ``(top, left, bottom, right)``), upsampled into that box
    of the image and zero outside it."""
    if box is None:
        return upsample_map(cam, height, width)
    top, bottom = _pixels(box[0], box[2], height)
    left, right = _pixels(box[1], box[3], width)
    out = np.zeros((height, width), np.float32)
    out[top:bottom, left:right] = upsample_map(cam, bottom - top, right - left)
    return out


def _pixels(start: float, stop: float, side: int) -> tuple[int, int]:
    a = min(max(int(round(float(start) * side)), 0), side - 1)
    return a, min(max(int(round(float(stop) * side)), a + 1), side)


def cropped_boxes(model, x: np.ndarray, batch_size: int = 64) -> np.ndarray | None:
    """The lung boxes a ``--crop lungs`` model cuts from its input ``x`` ``(N, S, S, 1)``
    (``(N, 4)``, see :func:`~cxrtool.models.lungcrop.lung_box`), or None for a model without
    the crop."""
    try:
        layer = model.get_layer(CROP_LAYER)
    except ValueError:
        return None
    if getattr(layer, "mode", "none") == "none":
        return None
    from ..models.lungcrop import lung_box

    x = np.asarray(x, dtype=np.float32)
    return np.concatenate([np.asarray(lung_box(x[i:i + batch_size]), dtype=np.float32)
                           for i in range(0, len(x), batch_size)])


def normalise_map(cam: np.ndarray) -> np.ndarray:
    """Scale to 0..1 from ``min(0, map.min())`` to the maximum: a CAM (>= 0 after its ReLU) is
    divided by its maximum, so "no evidence" stays 0 rather than becoming the image's minimum
    (pytorch-grad-cam subtracts the minimum). An all-constant map becomes all zeros."""
    cam = np.asarray(cam, dtype=np.float32)
    lo, hi = float(cam.min(initial=0.0)), float(cam.max(initial=0.0))
    if hi - lo <= 1e-12:
        return np.zeros_like(cam)
    return (cam - lo) / (hi - lo)


def class_index(classes: Sequence[str], class_name: str | None) -> int | None:
    """Index of ``class_name`` (None stays None: the predicted class); a UsageError if unknown."""
    if class_name is None:
        return None
    if class_name not in classes:
        raise UsageError(f"--class {class_name!r} is not a class of this model; choose one of {', '.join(classes)}")
    return list(classes).index(class_name)


def explain(loaded, images: Sequence[np.ndarray], *, layer: str | None = None, class_name: str | None = None,
            method: str = "gradcam", batch_size: int = 32, cache: dict | None = None) -> list[Explanation]:
    """Explain decoded grayscale images (any sizes) with a loaded cxrtool model (or ensemble).

    ``layer``: the target layer (None: the model's recorded one); ``class_name``: the class to
    explain (None: the predicted one); ``method``: a key of :data:`METHODS`. ``cache``: a dict
    that keeps the CAM objects (and their compiled functions) across calls, so a stream of
    batches compiles once.
    """
    from ..inference import model_input

    info = loaded.info
    classes = list(info.classes)
    target = class_index(classes, class_name)
    cams = cache if cache is not None else {}
    if not len(images):
        return []
    if info.architecture == "ensemble":
        return _explain_ensemble(loaded, images, layer=layer, target=target, method=method, batch_size=batch_size, cams=cams)
    key = ("model", layer, method)
    if key not in cams:
        cams[key] = make_cam(method, loaded.model, layer, logits_layer=info.logits_layer or LOGITS_LAYER, info=info,
                             batch_size=batch_size)
    cam = cams[key]
    x = model_input(images, info.image_size)
    result = cam(x, target)
    boxes = cropped_boxes(loaded.model, x)
    out = []
    for i, img in enumerate(images):
        h, w = img.shape[:2]
        box = None if boxes is None else tuple(float(v) for v in boxes[i])
        heat = normalise_map(place_map(result.maps[i], h, w, box))
        out.append(_explanation(heat, result.probabilities[i], int(result.class_index[i]), classes, cam.layer,
                                result.maps[i].shape, box=box))
    return out


def _explanation(heat, probs, target_index, classes, layer, grid, members=(), box=None) -> Explanation:
    probs = np.asarray(probs, dtype=np.float64)
    top = int(np.argmax(probs))
    return Explanation(
        heatmap=heat.astype(np.float32),
        label=classes[top],
        probability=float(probs[top]),
        target=classes[target_index],
        target_probability=float(probs[target_index]),
        probabilities={c: float(p) for c, p in zip(classes, probs)},
        layer=layer,
        grid=(int(grid[0]), int(grid[1])),
        members=list(members),
        box=box,
    )


def _member_input(loaded, minfo: dict, member, x: np.ndarray, images) -> np.ndarray:
    """What member ``minfo`` sees inside the ensemble: the ensemble's input passed through the
    ensemble's own resize layer for that member (or decoded images resized to its size)."""
    from ..inference import model_input

    size = int(minfo.get("image_size") or member.inputs[0].shape[1])
    if size == x.shape[1]:
        return x
    layer_name = str(minfo.get("layer", ""))
    if layer_name.startswith("member_"):
        try:
            resize = loaded.model.get_layer("resize_" + layer_name[len("member_"):])
        except ValueError:
            resize = None
        if resize is not None:
            return np.asarray(resize(x), dtype=np.float32)
    return model_input(images, size)


def _explain_ensemble(loaded, images, *, layer, target, method, batch_size, cams) -> list[Explanation]:
    """Weighted mean of the members' normalised maps, each computed at the member's own input
    size and resized to the image; the class is the ensemble's prediction unless given."""
    from ..ensemble import member_models  # lazy: the ensemble module imports Keras
    from ..inference import model_input, predict_batches

    classes = list(loaded.info.classes)
    x = model_input(images, loaded.info.image_size)  # the ensemble's input, as predict sees it
    probs = next(iter(predict_batches(loaded, [x])))
    chosen = np.argmax(probs, axis=1) if target is None else np.full(len(images), target)
    members = member_models(loaded)
    if not members:
        raise CxrError(f"ensemble {loaded.path or loaded.model.name} has no members")
    total = float(sum(max(float(w), 0.0) for _, _, w in members)) or float(len(members))
    heats = [np.zeros(img.shape[:2], np.float32) for img in images]
    used = []
    for k, (member, minfo, weight) in enumerate(members):
        weight = max(float(weight), 0.0) if total else 1.0
        key = ("member", k, layer, method)
        if key not in cams:
            try:
                cams[key] = make_cam(method, member, layer or minfo.get("gradcam_layer") or None,
                                     batch_size=batch_size, logits_layer=LOGITS_LAYER)
            except UsageError as exc:
                raise UsageError(f"ensemble member {minfo.get('name', k)}: {exc}") from None
        cam = cams[key]
        xm = _member_input(loaded, minfo, member, x, images)
        res = cam(xm, chosen)
        boxes = cropped_boxes(member, xm)  # each member crops (or not) on its own
        for i, img in enumerate(images):
            h, w = img.shape[:2]
            box = None if boxes is None else boxes[i]
            heats[i] += (weight / total) * normalise_map(place_map(res.maps[i], h, w, box))
        used.append({"name": minfo.get("name", f"member_{k}"), "layer": cam.layer, "weight": weight / total,
                     "grid": list(res.maps.shape[1:]), "cropped": boxes is not None})
    layer_text = ", ".join(f"{m['name']}:{m['layer']}" for m in used)
    return [
        _explanation(normalise_map(heats[i]), probs[i], int(chosen[i]), classes, layer_text,
                     used[0]["grid"], used)
        for i in range(len(images))
    ]
