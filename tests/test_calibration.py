"""Temperature scaling (cxrtool.evaluate.calibration): the fit, the Temperature layer in saved models,
calibrating existing models and ensembles, and evaluate's ECE before/after."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.special import softmax

from cxrtool.evaluate.calibration import (
    BOUNDS,
    apply_temperature,
    calibration_report,
    fit_temperature,
    model_temperature,
    nll,
    uncalibrated,
)
from helpers_dataset import make_dataset


def _ece(y: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> float:
    """Top-label ECE written out here, independently of cxrtool.evaluate.metrics."""
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    total = 0.0
    for b in range(n_bins):
        low, high = b / n_bins, (b + 1) / n_bins
        m = (conf > low) & (conf <= high) if b else (conf >= low) & (conf <= high)
        if m.any():
            total += m.mean() * abs((pred[m] == y[m]).mean() - conf[m].mean())
    return float(total)


def _sample(t0: float, n: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from softmax(logits / t0)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 3.0, (n, 3))
    p = softmax(z / t0, axis=1)
    y = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    return z, y


@pytest.mark.parametrize("t0", [0.5, 2.0])
def test_fit_temperature_recovers_a_known_temperature(t0):
    z, y = _sample(t0)
    t = fit_temperature(z, y)
    assert t == pytest.approx(t0, rel=0.05)
    assert nll(z, y, t) < nll(z, y, 1.0)


def test_fitting_never_raises_the_nll_and_stays_in_bounds():
    rng = np.random.default_rng(1)
    for z, y in [
        (rng.normal(0, 1, (50, 3)), rng.integers(0, 3, 50)),  # noise: T grows
        (np.eye(3)[np.arange(30) % 3] * 5, np.arange(30) % 3),  # all correct: T shrinks towards the lower bound
        (np.zeros((10, 3)), np.arange(10) % 3),  # uniform scores: every T is the same
    ]:
        t = fit_temperature(z, y)
        assert BOUNDS[0] <= t <= BOUNDS[1]
        assert nll(z, y, t) <= nll(z, y, 1.0) + 1e-12
    assert fit_temperature(np.eye(3)[np.arange(30) % 3] * 5, np.arange(30) % 3) < 0.2  # the NLL is ~0 there
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0, int)) == 1.0


def test_probabilities_before_calibration_are_recovered_exactly():
    z, y = _sample(1.5, n=500)
    t = 1.7
    p = apply_temperature(z, t).astype(np.float32)  # what a calibrated model outputs
    assert np.allclose(uncalibrated(p, t), softmax(z, axis=1), atol=1e-5)
    report = calibration_report(y, p, t)
    assert report["temperature"] == t
    assert report["ece_before"] == pytest.approx(_ece(y, softmax(z, axis=1)), abs=1e-5)
    assert report["ece_after"] == pytest.approx(_ece(y, p.astype(np.float64)), abs=1e-6)
    assert report["nll_before"] == pytest.approx(nll(z, y, 1.0), abs=1e-5)
    assert report["nll_after"] == pytest.approx(nll(z, y, t), abs=1e-5)
    assert calibration_report(y, p, None) is None


# --------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("ds") / "data", {"train": 4, "val": 4, "test": 3}, size=32)


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    """The same seeded run saved without (``raw``) and with (``cal``) a temperature."""
    from cxrtool.train import TrainOptions, train

    root = tmp_path_factory.mktemp("models")
    opts = dict(epochs=2, image_size=16, batch_size=6, seed=2, lr=3e-3)
    raw = train(dataset, "cnn", options=TrainOptions(**opts, calibrate=False), out=root / "raw.keras")
    cal = train(dataset, "cnn", options=TrainOptions(**opts), out=root / "cal.keras")
    return raw, cal


def _images(n: int = 5, size: int = 16) -> np.ndarray:
    return np.random.default_rng(3).uniform(0, 255, (n, size, size, 1)).astype(np.float32)


def _layer_output(model, name: str, x: np.ndarray) -> np.ndarray:
    from cxrtool.backend import import_keras

    keras = import_keras()
    return np.asarray(keras.Model(model.inputs[0], model.get_layer(name).output).predict_on_batch(x), np.float64)


def test_saved_model_outputs_softmax_of_logits_over_t(trained):
    from cxrtool.artifact import load_model, read_info
    from cxrtool.gradcam.layers import candidate_layers, default_layer

    raw, cal = trained
    record = read_info(cal.model_path).training["calibration"]
    t = model_temperature(read_info(cal.model_path))
    assert t == record["temperature"] and BOUNDS[0] <= t <= BOUNDS[1]
    assert record["val_nll_after"] <= record["val_nll_before"] and record["n"] == 12
    assert {"val_ece_before", "val_ece_after", "seconds", "at_bound"} <= set(record)
    assert cal.info.training["options"]["calibrate"] is True and raw.info.training["options"]["calibrate"] is False
    assert raw.info.training["calibration"] is None and model_temperature(raw.info) is None

    model = load_model(cal.model_path).model  # safe mode
    names = [layer.name for layer in model.layers]
    assert names[-4:] == ["logits", "temperature", "probs", "cxrtool_info"]
    assert "temperature" not in [layer.name for layer in load_model(raw.model_path).model.layers]
    x = _images()
    logits = _layer_output(model, "logits", x)
    got = np.asarray(model.predict_on_batch(x), np.float64)
    assert np.allclose(got, softmax(logits / t, axis=1), atol=1e-6)
    # the temperature is the only difference: same weights, same logits as the raw model
    raw_model = load_model(raw.model_path).model
    assert np.allclose(_layer_output(raw_model, "logits", x), logits, atol=1e-5)
    # Grad-CAM never targets the temperature and keeps its default layer
    assert candidate_layers(model) == candidate_layers(raw_model)
    assert default_layer(model, cal.info) == default_layer(raw_model, raw.info) == "feature_map"


def test_evaluate_reports_ece_before_and_after(trained, dataset, tmp_path, capsys):
    from cxrtool.cli import main

    raw, cal = trained
    out = tmp_path / "ev"
    code = main(["evaluate", str(dataset), "-m", str(raw.model_path), "-m", str(cal.model_path), "--bootstrap", "0",
                 "--out", str(out), "--format", "json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    doc = json.loads(captured.out)
    assert "calibration" not in doc["models"]["raw"]  # a model without a temperature: as before
    c = doc["models"]["cal"]["calibration"]
    t = model_temperature(cal.info)
    assert c["temperature"] == pytest.approx(t)
    # recompute from predictions.csv, independently of cxrtool's ECE
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    classes = doc["dataset"]["classes"]
    y = np.asarray([classes.index(r["label"]) for r in rows])
    p = np.asarray([[float(r[f"cal:{k}"]) for k in classes] for r in rows])
    before = softmax(t * np.log(p), axis=1)
    assert c["ece_after"] == pytest.approx(_ece(y, p), abs=1e-6)
    assert c["ece_before"] == pytest.approx(_ece(y, before), abs=1e-6)
    assert c["nll_after"] == pytest.approx(-np.mean(np.log(p[np.arange(len(y)), y])), abs=1e-5)
    assert c["nll_before"] == pytest.approx(-np.mean(np.log(before[np.arange(len(y)), y])), abs=1e-5)
    assert c["ece_after"] == pytest.approx(doc["models"]["cal"]["metrics"]["calibration"]["ece"])
    # "before" is the raw model: the same run without the temperature
    raw_metrics = doc["models"]["raw"]["metrics"]
    assert c["nll_before"] == pytest.approx(raw_metrics["log_loss"], abs=1e-4)
    assert c["ece_before"] == pytest.approx(raw_metrics["calibration"]["ece"], abs=1e-4)
    assert "Calibration: before and after" in captured.err
    report = (out / "report.md").read_text()
    assert "## Calibration" in report and f"| cal | {t:.3f} |" in report


def test_calibrate_an_existing_model_and_an_ensemble(trained, dataset, tmp_path, capsys):
    from cxrtool.artifact import load_model, read_info
    from cxrtool.cli import main
    from cxrtool.evaluate.calibration import calibrate_model
    from cxrtool.ensemble import build_ensemble, member_models

    raw, cal = trained
    first = calibrate_model(raw.model_path, dataset, out=tmp_path / "raw-cal.keras")
    assert first.model_path.is_file() and not any(p.name.startswith(".") for p in tmp_path.iterdir())
    # same logits, same val split: the temperature the training run fitted
    assert first.record["temperature"] == pytest.approx(model_temperature(cal.info), rel=1e-4)
    assert read_info(first.model_path).training["options"] == raw.info.training["options"]
    # re-calibrating replaces the temperature instead of stacking a second one
    again = calibrate_model(first.model_path, dataset)
    assert again.model_path == first.model_path
    model = load_model(again.model_path).model
    assert [layer.name for layer in model.layers].count("temperature") == 1
    assert again.record["temperature"] == pytest.approx(first.record["temperature"], rel=1e-4)

    # an ensemble: the temperature goes after the weighted mean, on its log
    ens = build_ensemble([raw.model_path, cal.model_path], out=tmp_path / "ens.keras")
    mean = np.asarray(load_model(ens.model_path).model.predict_on_batch(_images()), np.float64)
    capsys.readouterr()
    code = main(["calibrate", str(ens.model_path), "--data", str(dataset), "--out", str(tmp_path / "ens-cal.keras")])
    captured = capsys.readouterr()
    assert code == 0 and captured.out.strip() == str(tmp_path / "ens-cal.keras")
    info = read_info(tmp_path / "ens-cal.keras")
    t = model_temperature(info)
    assert f"temperature {t:.3f} on 12 val images" in captured.err
    loaded = load_model(tmp_path / "ens-cal.keras")
    got = np.asarray(loaded.model.predict_on_batch(_images()), np.float64)
    assert np.allclose(got, softmax(np.log(mean) / t, axis=1), atol=1e-5)
    assert len(member_models(loaded)) == 2  # Grad-CAM still finds the members
    assert info.extra["members"] == ens.info.extra["members"] and info.training["calibration"]["n"] == 12
    # a dataset whose val split is empty: one error line, exit 1, nothing written
    empty = make_dataset(tmp_path / "noval", {"train": 1, "test": 1}, size=20)
    code = main(["calibrate", str(ens.model_path), "--data", str(empty), "--out", str(tmp_path / "x.keras")])
    assert code == 1 and "val split is empty" in capsys.readouterr().err
    assert not (tmp_path / "x.keras").exists()
