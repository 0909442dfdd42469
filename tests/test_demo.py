"""`cxrtool demo --quick`: the whole pipeline on phantoms, through the CLI, nothing downloaded."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cxrtool import CLASSES
from cxrtool.cli import main


@pytest.mark.slow
def test_demo_quick_runs_every_step(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    listed = capsys.readouterr().out.split()
    # the files it lists exist, and every step left its outputs
    assert listed and all(Path(f).is_file() for f in listed)
    for name in ("data/manifest.csv", "data/report.json", "data/samples.png", "models/cnn.keras", "models/vit.keras",
                 "models/ensemble.keras", "eval/metrics.json", "eval/comparison_roc.png", "gradcam/contact_sheet.png",
                 "predictions.csv"):
        assert str(out / name) in listed, name
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert set(metrics["models"]) == {"cnn", "vit", "ensemble"}
    # predict covered the whole test split, one row per image, probabilities summing to 1
    manifest = list(csv.DictReader((out / "data" / "manifest.csv").open()))
    n_test = sum(r["split"] == "test" for r in manifest)
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == n_test > 0
    for row in rows:
        assert not row["error"]
        assert abs(sum(float(row[c]) for c in CLASSES) - 1) < 1e-3
    # a second run refuses the non-empty folder instead of mixing outputs
    assert main(["demo", "--quick", "--out", str(out)]) == 2
