"""Temperature scaling: calibrated probabilities stored inside the model.

A network trained with cross-entropy is usually over- (sometimes under-) confident. One
scalar ``T`` fitted on the val split fixes most of it without changing any prediction:
``probs = softmax(logits / T)`` keeps the arg-max, so accuracy, F1 and AUC stay the same,
while the log-loss and the calibration error (ECE) move. The fitted ``T`` becomes a
``temperature`` layer (:class:`cxrtool.models.layers.Temperature`) between ``logits`` and
``probs``, so ``predict``, ``evaluate``, ``gradcam`` and ``ensemble`` all see calibrated
probabilities with no extra step. An ensemble gets its temperature after the weighted mean
(on the log of the mean probabilities).

Because ``p = softmax(z / T)``, the probabilities before calibration are exactly
``softmax(T * log p)``: ``evaluate`` reports ECE and log-loss both ways from the calibrated
output alone (:func:`calibration_report`).

The math is numpy/scipy (cheap to import); :func:`with_temperature`, :func:`calibrate` and
:func:`calibrate_model` need Keras and import it when called.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..progress import ProgressFn, report

#: Search interval of T. Below 0.05 or above 20 the val split is almost surely too small or
#: degenerate (all correct, all wrong); the bound is recorded with the fit.
BOUNDS = (0.05, 20.0)


# --------------------------------------------------------------------------------------
# math (numpy / scipy)
# --------------------------------------------------------------------------------------


def nll(scores: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``softmax(scores / T)`` for labels ``y``.

    ``scores``: logits, or log-probabilities (softmax ignores a per-row constant).
    """
    from scipy.special import log_softmax

    z = np.asarray(scores, np.float64) / float(temperature)
    return float(-np.mean(log_softmax(z, axis=1)[np.arange(len(y)), np.asarray(y, np.int64)]))


def apply_temperature(scores: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(scores / T)`` in float64."""
    from scipy.special import softmax

    return softmax(np.asarray(scores, np.float64) / float(temperature), axis=1)


def uncalibrated(probs: np.ndarray, temperature: float) -> np.ndarray:
    """The probabilities before a temperature ``T``: exactly ``softmax(T * log p)``."""
    with np.errstate(divide="ignore"):  # a float32 probability of exactly 0: log 0 = -inf, softmax gives 0
        logp = np.log(np.asarray(probs, np.float64))
    return apply_temperature(logp, 1.0 / float(temperature))


def fit_temperature(scores: np.ndarray, y: np.ndarray, bounds: tuple[float, float] = BOUNDS) -> float:
    """The ``T`` in ``bounds`` that minimises the NLL of ``softmax(scores / T)`` on labels ``y``.

    The NLL is smooth and unimodal in ``log T``, so a bounded scalar search over ``log T``
    finds the optimum; if the search ends worse than ``T = 1`` (it cannot in exact
    arithmetic), 1 is returned: fitting never raises the val NLL.
    """
    from scipy.optimize import minimize_scalar

    scores = np.asarray(scores, np.float64)
    y = np.asarray(y, np.int64)
    if len(y) == 0:
        return 1.0
    res = minimize_scalar(lambda t: nll(scores, y, np.exp(t)), bounds=tuple(np.log(bounds)), method="bounded",
                          options={"xatol": 1e-6})
    t = float(np.exp(res.x))
    return t if nll(scores, y, t) <= nll(scores, y, 1.0) else 1.0


def ece(y: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> float:
    """Top-label ECE, the one in :func:`cxrtool.evaluate.metrics.calibration`."""
    from .metrics import calibration

    return calibration(np.asarray(y, np.int64), np.asarray(probs, np.float64), n_bins)["ece"]


def log_loss(y: np.ndarray, probs: np.ndarray) -> float:
    """scikit-learn's log-loss of ``probs`` (renormalised, as in ``evaluate``)."""
    from sklearn.metrics import log_loss as sk_log_loss

    from .metrics import _normalise

    p = np.asarray(probs, np.float64)
    return float(sk_log_loss(y, _normalise(p), labels=list(range(p.shape[1]))))


def calibration_report(y: np.ndarray, probs: np.ndarray, temperature: float | None, n_bins: int = 10) -> dict | None:
    """ECE and log-loss before and after the model's temperature, from its calibrated output
    ``probs``; None for a model without a temperature."""
    if temperature is None:
        return None
    before = uncalibrated(probs, temperature)
    return {
        "temperature": float(temperature),
        "ece_before": ece(y, before, n_bins),
        "ece_after": ece(y, probs, n_bins),
        "nll_before": log_loss(y, before),
        "nll_after": log_loss(y, probs),
    }


def model_temperature(info: Any) -> float | None:
    """The temperature recorded in a model's metadata (``training.calibration``), or None."""
    record = (getattr(info, "training", None) or {}).get("calibration") or {}
    t = record.get("temperature")
    return None if t is None else float(t)


# --------------------------------------------------------------------------------------
# models (Keras)
# --------------------------------------------------------------------------------------


def _is_ensemble(model) -> bool:
    from ..ensemble import MEAN_LAYER

    return any(layer.name == MEAN_LAYER for layer in model.layers)


def _score_layer(model) -> tuple[str, bool]:
    """The layer whose output the temperature divides and whether it holds probabilities
    (an ensemble's weighted mean) rather than logits."""
    from ..ensemble import MEAN_LAYER
    from ..models.names import LOGITS_LAYER

    return (MEAN_LAYER, True) if _is_ensemble(model) else (LOGITS_LAYER, False)


def with_temperature(model, temperature: float):
    """A new ``keras.Model`` sharing MODEL's layers: ``<scores> -> temperature -> probs -> cxrtool_info``.

    ``<scores>`` is ``logits`` (or an ensemble's ``ensemble_mean``); a temperature already in
    the model is replaced, not stacked. The ``cxrtool_info`` layer is new (``save_model``
    fills it).
    """
    from ..backend import import_keras
    from ..models import layers as L
    from ..models.names import INFO_LAYER, PROBS_LAYER, TEMPERATURE_LAYER

    keras = import_keras()
    name, from_probs = _score_layer(model)
    x = model.get_layer(name).output
    x = L.Temperature(float(temperature), inputs="probs" if from_probs else "logits", name=TEMPERATURE_LAYER)(x)
    x = keras.layers.Activation("softmax", dtype="float32", name=PROBS_LAYER)(x)
    out = L.ModelInfoLayer("{}", name=INFO_LAYER)(x)
    return keras.Model(model.inputs[0], out, name=model.name)


def scores(model, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The uncalibrated scores (logits, or an ensemble's log mean probabilities) for images
    ``x`` (n, s, s) uint8, batch by batch."""
    from ..backend import import_keras

    keras = import_keras()
    name, from_probs = _score_layer(model)
    probe = keras.Model(model.inputs[0], model.get_layer(name).output)
    chunks = []
    for i in range(0, len(x), batch_size):
        # pad the last batch to the full size: one compiled shape, and a batch that a
        # data-parallel distribution can split over its devices
        xb = x[i : i + batch_size]
        padded = np.concatenate([xb, np.repeat(xb[-1:], batch_size - len(xb), axis=0)])
        chunks.append(np.asarray(probe.predict_on_batch(padded.astype(np.float32)[..., None]), np.float64)[: len(xb)])
    out = np.concatenate(chunks) if chunks else np.zeros((0, model.outputs[0].shape[-1]))
    if from_probs:
        with np.errstate(divide="ignore"):
            out = np.log(np.clip(out, 0.0, None))
    return out


def calibrate(model, x: np.ndarray, y: np.ndarray, *, batch_size: int = 64, n_bins: int = 10) -> tuple[Any, dict]:
    """Fit a temperature on (``x``, ``y``) (the val split) and return ``(calibrated model, record)``.

    The record (stored as ``ModelInfo.training["calibration"]``): temperature, val NLL and
    ECE before and after, the number of images, the bounds, and the seconds it took.
    """
    t0 = time.perf_counter()
    z = scores(model, x, batch_size)
    t = fit_temperature(z, y)
    before, after = apply_temperature(z, 1.0), apply_temperature(z, t)
    record = {
        "method": "temperature scaling",
        "fitted_on": "val",
        "temperature": t,
        "bounds": list(BOUNDS),
        "at_bound": bool(np.isclose(t, BOUNDS[0], rtol=1e-3) or np.isclose(t, BOUNDS[1], rtol=1e-3)),
        "n": int(len(y)),
        "val_nll_before": nll(z, y, 1.0),
        "val_nll_after": nll(z, y, t),
        "val_ece_before": ece(y, before, n_bins),
        "val_ece_after": ece(y, after, n_bins),
    }
    calibrated = with_temperature(model, t)
    record["seconds"] = round(time.perf_counter() - t0, 2)
    return calibrated, record


@dataclass
class CalibrationResult:
    model_path: Path
    info: Any  # ModelInfo
    record: dict  # what calibrate() measured (also info.training["calibration"])


def calibrate_model(
    path: str | Path,
    data: str | Path,
    *,
    out: str | Path | None = None,
    models_dir: str | Path | None = None,
    batch_size: int = 64,
    progress: ProgressFn | None = None,
) -> CalibrationResult:
    """Fit a temperature for an existing model (a trained model or an ensemble) on the val
    split of the dataset ``data`` and save the calibrated model to ``out`` (default: replace
    ``path``, atomically). A model that already has a temperature is re-fitted from its
    uncalibrated scores."""
    from ..artifact import save_model
    from ..inference import open_model_for_data
    from ..inputs import load_split

    source, manifest, loaded = open_model_for_data(path, data, splits=("val",), purpose="the temperature",
                                                   models_dir=models_dir, progress=progress)
    target = Path(out) if out is not None else source
    info = loaded.info
    split = load_split(manifest, "val", info.image_size, progress=progress)
    order = {c: i for i, c in enumerate(info.classes)}
    y = np.asarray([order[split.classes[t]] for t in split.y], dtype=np.int64)  # the model's class order
    report(progress, "predict", 0, len(y), message=f"fitting a temperature on {len(y)} val images")
    model, record = calibrate(loaded.model, split.x, y, batch_size=batch_size)
    record["dataset_fingerprint"] = manifest.fingerprint
    info.training = {**info.training, "calibration": record}
    report(progress, "save", 0, 1, message=f"saving {target}")
    save_model(model, target, info)
    return CalibrationResult(model_path=target, info=info, record=record)


__all__ = [
    "BOUNDS",
    "CalibrationResult",
    "apply_temperature",
    "calibrate",
    "calibrate_model",
    "calibration_report",
    "ece",
    "fit_temperature",
    "log_loss",
    "model_temperature",
    "nll",
    "scores",
    "uncalibrated",
    "with_temperature",
]
