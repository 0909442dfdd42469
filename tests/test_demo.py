"""`cxrtool demo`: the whole pipeline on phantoms, through the CLI, nothing downloaded.

The test runs exactly what the README tells a new user to run, and checks that the models
learn, not only that files appear: a model that learned nothing scores the largest class's
share of the test split (about 0.4), which none of the thresholds below lets through.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cxrtool import CLASSES
from cxrtool.cli import main


@pytest.mark.slow
def test_demo_runs_every_step_and_the_models_learn(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    listed = capsys.readouterr().out.split()
    # the files it lists exist, and every step left its outputs
    assert listed and all(Path(f).is_file() for f in listed)
    for name in ("data/manifest.csv", "data/report.json", "data/samples.png", "models/cnn.keras", "models/vit.keras",
                 "models/ensemble.keras", "eval/metrics.json", "eval/comparison_roc.png", "gradcam/contact_sheet.png",
                 "predictions.csv"):
        assert str(out / name) in listed, name

    # the models learned: accuracy on the test split, against the always-one-class baseline
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert set(metrics["models"]) == {"cnn", "vit", "ensemble"}
    accuracy = {name: doc["metrics"]["accuracy"] for name, doc in metrics["models"].items()}
    support = [row["support"] for row in metrics["models"]["cnn"]["metrics"]["per_class"].values()]
    n_test = sum(support)
    baseline = max(support) / n_test
    assert n_test >= 60 and baseline < 0.5
    assert accuracy["cnn"] >= 0.85, accuracy
    assert accuracy["ensemble"] >= 0.85, accuracy
    assert accuracy["vit"] >= 0.6, accuracy  # measured 0.88-0.93 over seeds 0-2; chance is ~0.4

    # predict covered the whole test split, one row per image, probabilities summing to 1,
    # and its labels (the ensemble's) are right as often as evaluate says
    manifest = list(csv.DictReader((out / "data" / "manifest.csv").open()))
    assert sum(r["split"] == "test" for r in manifest) == n_test
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == n_test
    for row in rows:
        assert not row["error"]
        assert abs(sum(float(row[c]) for c in CLASSES) - 1) < 1e-3
    right = sum(row["label"] == Path(row["path"]).parent.name for row in rows)
    assert right / n_test >= 0.85

    # a second run refuses the non-empty folder instead of mixing outputs
    assert main(["demo", "--out", str(out)]) == 2


def test_quick_is_gone(tmp_path):
    """`--quick` trained models that stayed at chance; it is an unknown option now."""
    assert main(["demo", "--quick", "--out", str(tmp_path / "demo")]) == 2
    assert not (tmp_path / "demo").exists()
