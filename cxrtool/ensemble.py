"""Ensembles: several trained cxrtool models combined into one self-contained ``.keras`` model.

The ensemble is an ordinary cxrtool model (``ModelInfo.architecture == "ensemble"``), so
``predict``, ``evaluate`` and ``gradcam`` take it like any other. Its graph::

    image (None, S, S, 1), 0..255, S = the largest member input size
      -> [resize_i: keras Resizing to member i's size, bilinear + antialias; only when it differs]
      -> member_i  (the member's own functional model, nested, minus its cxrtool_info layer:
                    its augmentation, resizing and scaling stay inside it)
      -> weight_i  (keras Rescaling by the member's weight: a config value, not trainable)
      -> ensemble_mean (Add: the weighted mean of the members' class probabilities)
      -> cxrtool_info  (the ensemble's own metadata)

Only built-in Keras layers and cxrtool's registered ones are used, so an ensemble loads
wherever a member does (safe mode, no extra registration import needed).

``info.extra["members"]`` lists, per member: name, path, layer (``member_i``),
architecture, image_size, gradcam_layer, fingerprint (SHA-256 of the member file), weight,
classes, dataset_fingerprint. ``info.extra["method"]`` is ``mean`` or ``weighted``;
``weighted`` fits non-negative weights summing to 1 by minimising the log-loss of the
ensemble on the val split of a dataset (:func:`fit_weights`).

Importing this module is cheap; building or loading an ensemble imports Keras.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .artifact import LoadedModel, ModelInfo, read_info
from .errors import CxrError, DatasetError, ModelFormatError, UsageError
from .manifest import fingerprint_file
from .models.names import IMAGE_LAYER, INFO_LAYER
from .progress import ProgressFn, report

ARCHITECTURE = "ensemble"
METHODS = ("mean", "weighted")
MEMBER_LAYER = "member_{}"
RESIZE_LAYER = "resize_{}"
WEIGHT_LAYER = "weight_{}"
MEAN_LAYER = "ensemble_mean"


@dataclass
class EnsembleResult:
    model_path: Path
    info: ModelInfo
    weights: list[float]
    #: val-split figures (per member and for the ensemble) when a dataset was given
    val: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Member:
    name: str
    path: Path
    info: ModelInfo
    fingerprint: str


def is_ensemble(info: ModelInfo) -> bool:
    return info.architecture == ARCHITECTURE


def member_models(loaded: LoadedModel) -> list[tuple[Any, dict, float]]:
    """``[(member sub-model, member info dict, weight), ...]`` of a loaded ensemble.

    Each sub-model is the nested functional model ``member_i``: it takes raw 0..255 pixels
    at ``info["image_size"]`` (``(None, s, s, 1)``) and returns the member's class
    probabilities; its layers (e.g. ``info["gradcam_layer"]``) can be addressed by name, so
    Grad-CAM can run per member on the member's own input size and average the maps with
    the weights. The weights sum to 1.
    """
    info = loaded.info
    if not is_ensemble(info):
        raise ModelFormatError(f"{loaded.path or info.architecture}: not an ensemble (architecture {info.architecture})")
    out = []
    for member in info.extra.get("members", []):
        try:
            sub = loaded.model.get_layer(member["layer"])
        except ValueError:
            raise ModelFormatError(
                f"{loaded.path}: ensemble has no layer {member['layer']!r} (damaged or hand-edited model)"
            ) from None
        out.append((sub, dict(member), float(member["weight"])))
    if not out:
        raise ModelFormatError(f"{loaded.path}: ensemble without members")
    return out


# --------------------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------------------


def ensemble_log_loss(member_probs: Sequence[np.ndarray], y: np.ndarray, weights: Sequence[float]) -> float:
    """Log-loss (scikit-learn) of the weighted mean of the members' probabilities."""
    mixed = np.tensordot(np.asarray(weights, np.float64), np.stack(member_probs).astype(np.float64), axes=1)
    return _log_loss(y, mixed)


def _log_loss(y: np.ndarray, probs: np.ndarray) -> float:
    """scikit-learn's log-loss of float32 softmax output (renormalised in float64)."""
    from sklearn.metrics import log_loss

    p = np.clip(np.asarray(probs, np.float64), 1e-12, None)
    return float(log_loss(y, p / p.sum(axis=1, keepdims=True), labels=list(range(p.shape[1]))))


def fit_weights(member_probs: Sequence[np.ndarray], y: np.ndarray) -> np.ndarray:
    """Non-negative weights summing to 1 that minimise the val log-loss of the weighted mean.

    ``member_probs``: one ``(n, k)`` probability array per member; ``y``: ``(n,)`` class
    indices. The objective (negative log-likelihood of a mixture) is convex in the weights,
    so SLSQP on the simplex finds the optimum; uniform weights are the start and fallback.
    """
    from scipy.optimize import minimize

    p = np.stack([np.asarray(m, np.float64)[np.arange(len(y)), y] for m in member_probs], axis=1)  # (n, m)
    m = p.shape[1]
    start = np.full(m, 1.0 / m)
    if len(y) == 0 or m == 1:
        return start

    def nll(w):
        return -np.mean(np.log(np.clip(p @ w, 1e-12, None)))

    def grad(w):
        return -np.mean(p / np.clip(p @ w, 1e-12, None)[:, None], axis=0)

    res = minimize(
        nll, start, jac=grad, method="SLSQP", bounds=[(0.0, 1.0)] * m,
        constraints=[{"type": "eq", "fun": lambda w: np.sum(w) - 1.0, "jac": lambda w: np.ones_like(w)}],
        options={"maxiter": 200, "ftol": 1e-10},
    )
    w = np.clip(res.x if res.success or nll(res.x) <= nll(start) else start, 0.0, None)
    w = w / w.sum() if w.sum() > 0 else start
    return w if nll(w) <= nll(start) + 1e-12 else start


# --------------------------------------------------------------------------------------
# building
# --------------------------------------------------------------------------------------


def _gather(members: Sequence[str | Path], models_dir) -> list[_Member]:
    from .resolve import resolve_model

    if len(members) < 2:
        raise UsageError("an ensemble needs at least two members")
    out: list[_Member] = []
    seen: dict[str, str] = {}
    for spec in members:
        path = resolve_model(str(spec), models_dir)
        info = read_info(path)
        if is_ensemble(info):
            raise CxrError(f"member {spec}: {path} is itself an ensemble; list its members instead")
        fp = fingerprint_file(path)
        if fp in seen:
            raise UsageError(f"member {spec} is the same model file as {seen[fp]} (identical SHA-256)")
        seen[fp] = str(spec)
        name = Path(str(spec)).stem if str(spec).endswith(".keras") or "/" in str(spec) else str(spec)
        out.append(_Member(name=name, path=path, info=info, fingerprint=fp))
    first = out[0]
    for m in out[1:]:
        if list(m.info.classes) != list(first.info.classes):
            raise ModelFormatError(
                f"members disagree on the classes: {first.name} has {', '.join(first.info.classes)}, "
                f"{m.name} has {', '.join(m.info.classes)}"
            )
    return out


def _strip_info(keras, model, name: str):
    """The member's functional model from its input to its probabilities, renamed ``name``."""
    try:
        info_layer = model.get_layer(INFO_LAYER)
        outputs = info_layer.input
    except ValueError:
        outputs = model.outputs[0]
    return keras.Model(model.inputs[0], outputs, name=name)  # a tensor, not a list: called with one


def _graph(keras, subs: Sequence[Any], sizes: Sequence[int], size: int, weights: Sequence[float] | None):
    """Input -> per member resize + sub-model (+ weight) -> (mean, info layer). With
    ``weights`` None: a probe model returning the members' probabilities as a list."""
    from .models import layers as L

    inputs = keras.Input((size, size, 1), dtype="float32", name=IMAGE_LAYER)
    outs = []
    for i, (sub, s) in enumerate(zip(subs, sizes)):
        x = inputs
        if s != size:
            x = keras.layers.Resizing(s, s, interpolation="bilinear", antialias=True, name=RESIZE_LAYER.format(i))(x)
        outs.append(sub(x))
    if weights is None:
        return keras.Model(inputs, outs, name="ensemble_probe")
    scaled = [keras.layers.Rescaling(float(w), name=WEIGHT_LAYER.format(i))(o) for i, (o, w) in enumerate(zip(outs, weights))]
    mean = keras.layers.Add(name=MEAN_LAYER, dtype="float32")(scaled)
    out = L.ModelInfoLayer("{}", name=INFO_LAYER)(mean)
    return keras.Model(inputs, out, name=ARCHITECTURE)


def _val_probs(probe, x: np.ndarray, n_members: int, batch_size: int) -> list[np.ndarray]:
    """Every member's probabilities on ``x`` (n, s, s) uint8, batch by batch."""
    chunks: list[list[np.ndarray]] = [[] for _ in range(n_members)]
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size].astype(np.float32)[..., None]
        outs = probe.predict_on_batch(xb)
        for j, o in enumerate(outs):
            chunks[j].append(np.asarray(o, np.float64))
    return [np.concatenate(c) for c in chunks]


def _val_dataset(data: str | Path, classes: Sequence[str]):
    """The manifest of ``data``, checked: the members' classes and a non-empty val split."""
    from .manifest import read_manifest

    manifest = read_manifest(data)
    if set(manifest.classes) != set(classes):
        raise ModelFormatError(
            f"the members predict {', '.join(classes)} but {data} has classes {', '.join(manifest.classes)}"
        )
    if not manifest.split("val"):
        raise DatasetError(f"{manifest.root}: the val split is empty; it is needed to fit/check the ensemble")
    return manifest


def _fit_on_val(probe, gathered: Sequence[_Member], manifest, size: int, method: str,
                batch_size: int) -> tuple[np.ndarray, dict[str, Any]]:
    """The weights (fitted for ``weighted``, equal for ``mean``) and the val figures of every
    member, of equal weights and of the chosen weights. ``probe``: the members' outputs."""
    from sklearn.metrics import accuracy_score

    from .inputs import load_split

    classes = list(gathered[0].info.classes)
    split = load_split(manifest, "val", size)
    order = {c: i for i, c in enumerate(classes)}
    y = np.asarray([order[split.classes[t]] for t in split.y], dtype=np.int64)
    probs = _val_probs(probe, split.x, len(gathered), batch_size)
    uniform = np.full(len(gathered), 1.0 / len(gathered))
    weights = fit_weights(probs, y) if method == "weighted" else uniform
    val = {
        "split": "val",
        "n": int(len(y)),
        "members": {
            m.name: {"log_loss": _log_loss(y, p), "accuracy": float(accuracy_score(y, p.argmax(1)))}
            for m, p in zip(gathered, probs)
        },
        "mean_log_loss": ensemble_log_loss(probs, y, uniform),
        "log_loss": ensemble_log_loss(probs, y, weights),
        "accuracy": float(accuracy_score(y, np.tensordot(weights, np.stack(probs), axes=1).argmax(1))),
    }
    return weights, val


def _ensemble_info(gathered: Sequence[_Member], weights: Sequence[float], method: str, val: dict[str, Any],
                   manifest, data: str | Path | None, keras_version: str) -> ModelInfo:
    """The ensemble's metadata: its members (name, file fingerprint, weight, ...) and the
    dataset they share (``data`` if given, else the members' common one, else none)."""
    from .version import __version__
    from .inputs import RESIZE

    size = max(m.info.image_size for m in gathered)
    member_records = [
        {
            "name": m.name,
            "path": str(m.path),
            "layer": MEMBER_LAYER.format(i),
            "architecture": m.info.architecture,
            "image_size": int(m.info.image_size),
            "gradcam_layer": m.info.gradcam_layer,
            "fingerprint": m.fingerprint,
            "weight": float(w),
            "classes": list(m.info.classes),
            "dataset_fingerprint": m.info.dataset_fingerprint,
        }
        for i, (m, w) in enumerate(zip(gathered, weights))
    ]
    for record, m in zip(member_records, gathered):  # each member's OOD statistics (cxrtool.ood)
        if "ood" in m.info.extra:
            record["ood"] = m.info.extra["ood"]
    member_datasets = {m.info.dataset_fingerprint for m in gathered}
    if manifest is not None:
        dataset_fp, dataset_name = manifest.fingerprint, str(Path(data))
    elif len(member_datasets) == 1:
        dataset_fp, dataset_name = gathered[0].info.dataset_fingerprint, gathered[0].info.dataset
    else:
        dataset_fp, dataset_name = None, None
    return ModelInfo(
        architecture=ARCHITECTURE,
        classes=list(gathered[0].info.classes),
        image_size=int(size),
        preprocessing={
            "input": "grayscale, shape (None, S, S, 1), float32 in 0..255 (uint8 pixel values)",
            "input_size": int(size),
            "resize": RESIZE,
            "inside_model": [
                "per member: resize to the member's input size (bilinear, antialiased) if it differs",
                "per member: the member's own preprocessing",
                "mean of the members' class probabilities" if method == "mean"
                else "weighted mean of the members' class probabilities (weights in extra.weights)",
            ],
        },
        gradcam_layer="",
        logits_layer="",
        training={"method": method, "val": val} if val else {"method": method},
        dataset_fingerprint=dataset_fp,
        dataset=dataset_name,
        cxrtool_version=__version__,
        keras_version=keras_version,
        extra={"method": method, "members": member_records, "weights": [float(w) for w in weights]},
    )


def build_ensemble(
    members: Sequence[str | Path],
    *,
    name: str = "ensemble",
    method: str = "mean",
    data: str | Path | None = None,
    models_dir: str | Path | None = None,
    out: str | Path | None = None,
    batch_size: int = 64,
    progress: ProgressFn | None = None,
) -> EnsembleResult:
    """Combine trained models (names or ``.keras`` paths) into ``MODELS_DIR/NAME.keras``.

    ``method``: ``mean`` (soft voting, equal weights) or ``weighted`` (weights fitted on the
    val split of ``data``; see :func:`fit_weights`). With ``data`` and ``mean`` the val
    figures are computed and recorded too. Everything is validated before Keras is imported.
    """
    from .resolve import model_path_for

    if method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)} (got {method!r})")
    if method == "weighted" and data is None:
        raise UsageError("--method weighted fits the weights on the val split: give --data DATASET")
    gathered = _gather(members, models_dir)
    classes = list(gathered[0].info.classes)
    target = Path(out) if out else model_path_for(name, models_dir)
    if target.suffix != ".keras":
        raise UsageError(f"{target}: the model file must end in .keras")
    for m in gathered:
        if target.resolve() == m.path.resolve():
            raise UsageError(f"the ensemble would overwrite its member {m.name} ({m.path}); choose another --name")

    manifest = _val_dataset(data, classes) if data is not None else None

    from .backend import import_keras

    keras = import_keras()
    from .artifact import load_model, save_model

    size = max(m.info.image_size for m in gathered)
    sizes = [m.info.image_size for m in gathered]
    subs = []
    for i, m in enumerate(gathered):
        report(progress, "load", i, len(gathered),
               message=f"loading member {i}: {m.name} ({m.info.architecture}, {m.info.image_size} px)")
        subs.append(_strip_info(keras, load_model(m.path).model, MEMBER_LAYER.format(i)))

    weights = np.full(len(gathered), 1.0 / len(gathered))
    val: dict[str, Any] = {}
    if manifest is not None:
        report(progress, "predict", 0, len(manifest.split("val")),
               message=f"predicting the val split of {manifest.root} with every member")
        probe = _graph(keras, subs, sizes, size, None)
        weights, val = _fit_on_val(probe, gathered, manifest, size, method, batch_size)
    model = _graph(keras, subs, sizes, size, weights)
    info = _ensemble_info(gathered, weights, method, val, manifest, data, keras.__version__)
    report(progress, "save", 0, 1, message=f"saving {target}")
    save_model(model, target, info)
    return EnsembleResult(model_path=target, info=info, weights=[float(w) for w in weights], val=val)


__all__ = [
    "ARCHITECTURE",
    "EnsembleResult",
    "METHODS",
    "build_ensemble",
    "ensemble_log_loss",
    "fit_weights",
    "is_ensemble",
    "member_models",
]
