"""Class activation maps (Grad-CAM and friends) computed natively on the JAX backend.

No TensorFlow anywhere: Keras' own Grad-CAM example needs ``tf.GradientTape``; here the
model is split at the target layer (:func:`split_model`) and ``jax.value_and_grad`` of the
chosen class's pre-softmax score (the ``logits`` layer) is taken with respect to that
layer's activations, in one jitted, batched call per batch of images.

Shaped like pytorch-grad-cam (jacobgil): :class:`BaseCAM` holds the shared algorithm and
subclasses override one step, :meth:`BaseCAM.weights` (how gradients and activations
become per-position channel weights):

* :class:`GradCAM` (Selvaraju et al. 2017): spatially averaged gradients;
* :class:`GradCAMPlusPlus` (Chattopadhyay et al. 2018): second/third-order weighting;
* :class:`HiResCAM` (Draelos & Carin 2020): element-wise gradient x activation, faithful
  to the model's computation for a global-average-pooled head;
* :class:`LayerCAM` (Jiang et al. 2021): positive gradients, element-wise.

Adding a method is adding a subclass and one entry in :data:`METHODS`.

Token sequences (ViT ``blockN_*`` layers, shape ``(N, tokens, dim)``) are reshaped to the
patch grid ``(N, g, g, dim)`` (a leading class token, if any, is dropped). An ensemble's map
is the weighted mean of its members' maps (each on the member's own input size, normalised,
resized to the image): :func:`explain`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CxrError, UsageError

__all__ = [
    "BaseCAM",
    "CAMResult",
    "Explanation",
    "GradCAM",
    "GradCAMPlusPlus",
    "HiResCAM",
    "LayerCAM",
    "METHODS",
    "SplitModel",
    "candidate_layers",
    "default_layer",
    "explain",
    "make_cam",
    "normalise_map",
    "split_model",
    "tokens_to_grid",
    "upsample_map",
]

#: Layers that never make a Grad-CAM target (input side and head side of a cxrtool model).
_NOT_TARGETS = frozenset({"image", "augment", "preprocess", "avg_pool", "head_dropout", "logits", "probs", "cxrtool_info"})


# --------------------------------------------------------------------------------------
# layers and splitting
# --------------------------------------------------------------------------------------


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
    cxrtool model are excluded, and so is everything after ``avg_pool``.
    """
    found = []
    for layer in model.layers:
        if layer.name == "avg_pool":
            break
        kind = layer.__class__.__name__
        # padding layers only add a border of zeros; nested models are not one tensor
        if layer.name in _NOT_TARGETS or kind.startswith("ZeroPadding") or kind in ("Functional", "Model", "Sequential"):
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


def split_model(model, layer_name: str, logits_layer: str = "logits") -> SplitModel:
    """Split a flat functional classifier at ``layer_name`` (see :class:`SplitModel`)."""
    from .backend import import_keras

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


# --------------------------------------------------------------------------------------
# the CAM algorithm
# --------------------------------------------------------------------------------------


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


@dataclass
class CAMResult:
    """One batch of class activation maps on the target layer's grid."""

    maps: np.ndarray  # (N, h, w) float32, >= 0, not normalised
    class_index: np.ndarray  # (N,) the class each map explains
    logits: np.ndarray  # (N, n_classes)
    probabilities: np.ndarray  # (N, n_classes), softmax of logits
    layer: str


class BaseCAM(ABC):
    """Gradient-weighted class activation mapping on a flat Keras 3 classifier (JAX backend).

    ``cam = ReLU(sum_c weights(A, dS/dA)[..., c] * A[..., c])`` where ``A`` is the target
    layer's activations and ``S`` the chosen class's pre-softmax score. Subclasses override
    :meth:`weights` only. Call the instance with a batch of model input ``(N, S, S, 1)``.
    """

    name = "base"

    def __init__(self, model, target_layer: str | None = None, *, logits_layer: str = "logits",
                 info=None, batch_size: int = 32):
        self.model = model
        self.layer = check_layer(model, target_layer) if target_layer else default_layer(model, info)
        self.split = split_model(model, self.layer, logits_layer)
        self.batch_size = max(1, int(batch_size))
        self._fn = None

    # -- the one step subclasses override ----------------------------------------------
    @abstractmethod
    def weights(self, activations, grads):
        """Channel weights, ``(N, 1, 1, C)`` (per channel) or ``(N, h, w, C)`` (per position)."""

    # -- shared machinery ---------------------------------------------------------------
    def _variables(self):
        import jax.numpy as jnp

        f, h = self.split.features, self.split.head
        return tuple(
            [jnp.asarray(v.value) for v in vs]
            for vs in (f.trainable_variables, f.non_trainable_variables, h.trainable_variables, h.non_trainable_variables)
        )

    def _forward_backward(self, variables, x, class_index):
        """(activations, d score / d activations, logits, chosen class) for one batch."""
        import jax
        import jax.numpy as jnp

        ftv, fntv, htv, hntv = variables
        split = self.split
        acts, _ = split.features.stateless_call(ftv, fntv, x, training=False)

        def score(a):
            inputs = [x, a] if split.head_takes_image else a
            logits, _ = split.head.stateless_call(htv, hntv, inputs, training=False)
            logits = logits.astype(jnp.float32)
            chosen = jnp.where(class_index < 0, jnp.argmax(logits, axis=-1), class_index)
            # each image's score depends on its own activations only: the gradient of the
            # sum is every image's own gradient, so one backward pass serves the batch
            total = jnp.sum(jnp.take_along_axis(logits, chosen[:, None], axis=-1))
            return total, (logits, chosen)

        (_, (logits, chosen)), grads = jax.value_and_grad(score, has_aux=True)(acts)
        return acts, grads, logits, chosen

    def _compute(self, variables, x, class_index):
        import jax
        import jax.numpy as jnp

        acts, grads, logits, chosen = self._forward_backward(variables, x, class_index)
        a = tokens_to_grid(acts.astype(jnp.float32))
        g = tokens_to_grid(grads.astype(jnp.float32))
        cam = jax.nn.relu(jnp.sum(self.weights(a, g) * a, axis=-1))
        return cam, logits, chosen

    def activations_and_gradients(self, x: np.ndarray, class_index: int | Sequence[int] | None = None):
        """The target layer's activations and the gradient of the class score with respect to
        them, in the layer's own shape (tokens are not reshaped), plus the logits. For tests and
        for new methods; one batch (jitted: faster than op-by-op even for a single call)."""
        import jax

        x = np.asarray(x, dtype=np.float32)
        targets = np.full(len(x), -1, np.int32) if class_index is None else \
            np.broadcast_to(np.asarray(class_index, np.int32), (len(x),)).copy()
        if getattr(self, "_fb", None) is None:
            self._fb = jax.jit(self._forward_backward)
        a, g, logits, _ = self._fb(self._variables(), x, targets)
        return np.asarray(a), np.asarray(g), np.asarray(logits)

    def __call__(self, x: np.ndarray, class_index: int | Sequence[int] | None = None) -> CAMResult:
        """Maps for model input ``x`` ``(N, S, S, 1)``; ``class_index`` None = the predicted class."""
        import jax

        x = np.asarray(x, dtype=np.float32)
        n = len(x)
        if class_index is None:
            targets = np.full(n, -1, np.int32)
        else:
            targets = np.broadcast_to(np.asarray(class_index, np.int32), (n,)).copy()
        if self._fn is None:
            self._fn = jax.jit(self._compute)
        variables = self._variables()
        maps, logits, chosen = [], [], []
        for start in range(0, n, self.batch_size):
            xb, tb = x[start : start + self.batch_size], targets[start : start + self.batch_size]
            m = len(xb)
            bucket = min(self.batch_size, 1 << (m - 1).bit_length())  # few distinct shapes -> few compiles
            if bucket > m:
                xb = np.concatenate([xb, np.repeat(xb[-1:], bucket - m, axis=0)])
                tb = np.concatenate([tb, np.repeat(tb[-1:], bucket - m)])
            cam, lg, ch = self._fn(variables, xb, tb)
            maps.append(np.asarray(cam)[:m])
            logits.append(np.asarray(lg)[:m])
            chosen.append(np.asarray(ch)[:m])
        if not n:
            empty = np.zeros((0, 1, 1), np.float32)
            return CAMResult(empty, np.zeros(0, np.int32), np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32), self.layer)
        logits_all = np.concatenate(logits).astype(np.float32)
        return CAMResult(
            maps=np.concatenate(maps).astype(np.float32),
            class_index=np.concatenate(chosen).astype(np.int32),
            logits=logits_all,
            probabilities=_softmax(logits_all),
            layer=self.layer,
        )


class GradCAM(BaseCAM):
    """Grad-CAM: each channel weighted by its spatially averaged gradient."""

    name = "gradcam"

    def weights(self, activations, grads):
        return grads.mean(axis=(1, 2), keepdims=True)


class GradCAMPlusPlus(BaseCAM):
    """Grad-CAM++: positive gradients weighted by the closed-form alpha coefficients."""

    name = "gradcam++"

    def weights(self, activations, grads):
        import jax.numpy as jnp

        g2 = grads**2
        g3 = g2 * grads
        sum_a = activations.sum(axis=(1, 2), keepdims=True)
        alpha = g2 / (2.0 * g2 + sum_a * g3 + 1e-7)
        alpha = jnp.where(grads != 0, alpha, 0.0)
        return (jnp.maximum(grads, 0.0) * alpha).sum(axis=(1, 2), keepdims=True)


class HiResCAM(BaseCAM):
    """HiResCAM: element-wise gradient x activation (no spatial averaging of gradients)."""

    name = "hirescam"

    def weights(self, activations, grads):
        return grads


class LayerCAM(BaseCAM):
    """LayerCAM: element-wise positive gradients (good on earlier, finer layers)."""

    name = "layercam"

    def weights(self, activations, grads):
        import jax.numpy as jnp

        return jnp.maximum(grads, 0.0)


METHODS: dict[str, type[BaseCAM]] = {c.name: c for c in (GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM)}


def make_cam(method: str, model, target_layer: str | None = None, **kwargs) -> BaseCAM:
    cls = METHODS.get(method.lower().replace("plusplus", "++").replace("_", "").replace("-", ""))
    if cls is None:
        raise UsageError(f"unknown CAM method {method!r}; choose one of {', '.join(METHODS)}")
    return cls(model, target_layer, **kwargs)


def _softmax(z: np.ndarray) -> np.ndarray:
    if z.size == 0:
        return z.astype(np.float32)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


# --------------------------------------------------------------------------------------
# post-processing
# --------------------------------------------------------------------------------------


def upsample_map(cam: np.ndarray, height: int, width: int) -> np.ndarray:
    """Smoothly (bicubic, on the float map) resize a CAM to ``(height, width)``; clipped at 0."""
    from PIL import Image

    cam = np.asarray(cam, dtype=np.float32)
    if cam.shape == (height, width):
        return cam.copy()
    im = Image.fromarray(np.ascontiguousarray(cam), mode="F").resize((int(width), int(height)), Image.BICUBIC)
    return np.maximum(np.asarray(im, dtype=np.float32), 0.0)


def normalise_map(cam: np.ndarray) -> np.ndarray:
    """Min-max scale to 0..1 (an all-constant map becomes all zeros)."""
    cam = np.asarray(cam, dtype=np.float32)
    lo, hi = float(cam.min(initial=0.0)), float(cam.max(initial=0.0))
    if hi - lo <= 1e-12:
        return np.zeros_like(cam)
    return (cam - lo) / (hi - lo)


# --------------------------------------------------------------------------------------
# explaining images with a cxrtool model (single or ensemble)
# --------------------------------------------------------------------------------------


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


def _class_index(classes: Sequence[str], class_name: str | None) -> int | None:
    if class_name is None:
        return None
    if class_name not in classes:
        raise UsageError(f"--class {class_name!r} is not a class of this model; choose one of {', '.join(classes)}")
    return list(classes).index(class_name)


def explain(loaded, images: Sequence[np.ndarray], *, layer: str | None = None, class_name: str | None = None,
            method: str = "gradcam", batch_size: int = 32, _cams: dict | None = None) -> list[Explanation]:
    """Explain decoded grayscale images (any sizes) with a loaded cxrtool model.

    ``_cams``: a dict to cache the CAM objects (and their jitted functions) across calls.
    """
    from .inference import model_input

    info = loaded.info
    classes = list(info.classes)
    target = _class_index(classes, class_name)
    cams = _cams if _cams is not None else {}
    if not len(images):
        return []
    if info.architecture == "ensemble":
        return _explain_ensemble(loaded, images, layer=layer, target=target, method=method, batch_size=batch_size, cams=cams)
    key = ("model", layer, method)
    if key not in cams:
        cams[key] = make_cam(method, loaded.model, layer, logits_layer=info.logits_layer or "logits", info=info, batch_size=batch_size)
    cam = cams[key]
    result = cam(model_input(images, info.image_size), target)
    out = []
    for i, img in enumerate(images):
        h, w = img.shape[:2]
        heat = normalise_map(upsample_map(result.maps[i], h, w))
        out.append(_explanation(heat, result.probabilities[i], int(result.class_index[i]), classes, cam.layer,
                                result.maps[i].shape))
    return out


def _explanation(heat, probs, target_index, classes, layer, grid, members=()) -> Explanation:
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
    )


def _member_input(loaded, minfo: dict, member, x: np.ndarray, images) -> np.ndarray:
    """What member ``minfo`` sees inside the ensemble: the ensemble's input passed through the
    ensemble's own resize layer for that member (or decoded images resized to its size)."""
    from .inference import model_input

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
    from .ensemble import member_models  # lazy: the ensemble module imports Keras
    from .inference import model_input, predict_batches

    classes = list(loaded.info.classes)
    x = model_input(images, loaded.info.image_size)  # the ensemble's input, as predict sees it
    probs = next(iter(predict_batches(loaded, [x]))) if len(x) else np.zeros((0, len(classes)), np.float32)
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
                                     batch_size=batch_size, logits_layer="logits")
            except UsageError as exc:
                raise UsageError(f"ensemble member {minfo.get('name', k)}: {exc}") from None
        cam = cams[key]
        res = cam(_member_input(loaded, minfo, member, x, images), chosen)
        for i, img in enumerate(images):
            h, w = img.shape[:2]
            heats[i] += (weight / total) * normalise_map(upsample_map(res.maps[i], h, w))
        used.append({"name": minfo.get("name", f"member_{k}"), "layer": cam.layer, "weight": weight / total,
                     "grid": list(res.maps.shape[1:])})
    layer_text = ", ".join(f"{m['name']}:{m['layer']}" for m in used)
    return [
        _explanation(normalise_map(heats[i]), probs[i], int(chosen[i]), classes, layer_text,
                     used[0]["grid"], used)
        for i in range(len(images))
    ]


# --------------------------------------------------------------------------------------
# files in, overlays out (what `cxrtool gradcam` runs)
# --------------------------------------------------------------------------------------

CONTACT_SHEET = "contact_sheet.png"


@dataclass
class GradcamRecord:
    """The outcome for one input file."""

    path: str
    output: Path | None = None
    raw: Path | None = None
    explanation: Explanation | None = None
    error: str | None = None


def plan_outputs(paths: Sequence[str | Path], out: str | Path | None) -> tuple[list[Path], Path | None]:
    """Output PNG per input and the contact sheet (None for a single image).

    One image: ``out`` is the PNG file (or an existing/slash-terminated folder). Several:
    ``out`` is a folder that gets ``<stem>_gradcam.png`` per input (``<stem>_2_gradcam.png``
    ... when stems collide) and ``contact_sheet.png``. Default: ``./gradcam/``. Never an input.
    """
    out_text = str(out) if out is not None else None
    folder_mode = (
        out is None
        or len(paths) != 1
        or Path(out).is_dir()
        or out_text.endswith(("/", "\\"))
        or Path(out).suffix == ""
    )
    if out is not None and len(paths) > 1 and (Path(out).is_file() or Path(out).suffix.lower() == ".png"):
        raise UsageError(f"--out {out}: with {len(paths)} images --out must be a folder (one PNG per image)")
    if not folder_mode:
        target = Path(out)
        if target.suffix.lower() != ".png":
            raise UsageError(f"--out {out}: the overlay is a PNG; use a .png file name or a folder")
        outputs = [target]
        sheet = None
    else:
        folder = Path(out) if out is not None else Path("gradcam")
        used: set[str] = set()
        outputs = []
        for p in paths:
            stem = Path(p).stem or "image"
            name, k = f"{stem}_gradcam.png", 1
            while name.lower() in used or name.lower() == CONTACT_SHEET:
                k += 1
                name = f"{stem}_{k}_gradcam.png"
            used.add(name.lower())
            outputs.append(folder / name)
        sheet = folder / CONTACT_SHEET if len(paths) > 1 else None
    inputs = {Path(p).resolve() for p in paths}
    for o in outputs:
        if o.resolve() in inputs:
            raise UsageError(f"--out {o} is one of the input images; inputs are never overwritten")
    return outputs, sheet


def gradcam_files(
    loaded,
    paths: Sequence[str | Path],
    *,
    out: str | Path | None = None,
    layer: str | None = None,
    class_name: str | None = None,
    method: str = "gradcam",
    alpha: float = 0.4,
    cmap: str | None = None,
    save_raw: bool = False,
    batch_size: int = 16,
    contact_sheet: bool = True,
):
    """Explain image files; yields a :class:`GradcamRecord` per input, in order, as each batch
    is written. Unreadable files give a record with ``error`` and no output. The contact
    sheet (several inputs) is written after the last image; its paths are in the generator's
    return value (``StopIteration.value``)."""
    from .imageio import read_image
    from .overlay import DEFAULT_CMAP, render_overlay, write_contact_sheet

    if not 0.0 <= alpha <= 1.0:
        raise UsageError(f"--alpha {alpha}: must be between 0 and 1")
    cmap = cmap or DEFAULT_CMAP
    import matplotlib

    if cmap not in matplotlib.colormaps:
        raise UsageError(f"--cmap {cmap!r}: not a matplotlib colour map (e.g. inferno, magma, viridis, turbo)")
    _class_index(list(loaded.info.classes), class_name)
    paths = [str(p) for p in paths]
    outputs, sheet = plan_outputs(paths, out)
    label = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "hirescam": "HiResCAM", "layercam": "LayerCAM"}
    cams: dict = {}
    thumbs, titles = [], []
    for start in range(0, len(paths), batch_size):
        chunk = list(range(start, min(start + batch_size, len(paths))))
        images, ok, records = [], [], {}
        for i in chunk:
            try:
                images.append(read_image(paths[i]).pixels)
                ok.append(i)
            except CxrError as exc:
                records[i] = GradcamRecord(paths[i], error=getattr(exc, "reason", str(exc)))
        explanations = explain(loaded, images, layer=layer, class_name=class_name, method=method,
                               batch_size=batch_size, _cams=cams)
        for i, img, ex in zip(ok, images, explanations):
            overlay = render_overlay(img, ex.heatmap, label=ex.label, probability=ex.probability, target=ex.target,
                                     target_probability=ex.target_probability, method=label.get(method, method),
                                     layer=ex.layer if len(ex.layer) <= 40 else None, alpha=alpha, cmap=cmap)
            target = outputs[i]
            target.parent.mkdir(parents=True, exist_ok=True)
            overlay.save(target)
            raw = None
            if save_raw:
                raw = target.with_suffix(".npy")
                np.save(raw, ex.heatmap.astype(np.float32))
            if sheet is not None and contact_sheet:
                small = overlay.copy()
                small.thumbnail((320, 320), 1)  # LANCZOS
                thumbs.append(small)
                titles.append(f"{Path(paths[i]).name}\n{ex.label} {ex.probability:.3f}")
            records[i] = GradcamRecord(paths[i], output=target, raw=raw, explanation=ex)
        for i in chunk:
            yield records[i]
    written: list[Path] = []
    if sheet is not None and contact_sheet and thumbs:
        written = write_contact_sheet(thumbs, titles, sheet)
    return written
