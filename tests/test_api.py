"""The documented Python API (docs/api.md) works as written: examples/python_api.py, run with tiny
settings, goes from phantom sources to evaluated, explained and predicted models."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from cxrtool import CLASSES

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "python_api.py"


@pytest.mark.slow
def test_python_api_example_runs_end_to_end(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("python_api_example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)

    doc = example.main(tmp_path, image_size=24, epochs=1)
    printed = capsys.readouterr().out

    assert set(doc["models"]) == {"cnn", "vit", "ensemble"}
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["models"]["ensemble"]["metrics"]["accuracy"] == doc["models"]["ensemble"]["metrics"]["accuracy"]
    assert "heat map of the first image:" in printed and "ensemble weights:" in printed
    rows = list(csv.DictReader((tmp_path / "predictions.csv").open()))
    assert len(rows) == 4
    for row in rows:
        assert row["label"] in CLASSES and not row["error"]
        assert np.isclose(sum(float(row[c]) for c in CLASSES), 1.0, atol=1e-3)
