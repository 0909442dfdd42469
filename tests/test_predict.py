"""`cxrtool predict`: formats, inputs (files, folders, stdin), errors, order, streaming."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxrtool.cli import main
from cxrtool.synthetic import make_phantom

SIZE = 24
HEADER = ["path", "label", "probability", "covid", "pneumonia", "normal", "error", "ood_score", "flag"]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    """A tiny untrained cnn saved in the cxrtool format (predictions need no training)."""
    from cxrtool.artifact import ModelInfo, save_model
    from cxrtool.models import build_model

    path = tmp_path_factory.mktemp("models") / "tiny.keras"
    model = build_model("cnn", image_size=SIZE, weights="none", seed=0)
    save_model(model, path, ModelInfo("cnn", image_size=SIZE, gradcam_layer="feature_map"))
    return path


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> Path:
    """scans/{a,b/c}/*.png (different sizes) plus files that are not images."""
    root = tmp_path_factory.mktemp("scans")
    labels = ["covid", "pneumonia", "normal"]
    for i in range(7):
        folder = root / ("a" if i < 3 else "b/c")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(make_phantom(labels[i % 3], 100 + i, (30 + 4 * i, 36))).save(folder / f"img{i}.png")
    (root / "a" / "notes.txt").write_text("not an image")
    (root / "b" / ".DS_Store").write_bytes(b"\0\0")
    return root


def _run(capsys, *args, stdin: str | None = None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(["predict", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def _images(root: Path) -> list[Path]:
    return sorted(root.rglob("*.png"))


def test_csv_folders_recursed_images_only(capsys, model_path, scans):
    code, out, err = _run(capsys, "--model", model_path, scans, "--batch-size", "3")
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == HEADER and len(rows) == 1 + 7
    assert [r[0] for r in rows[1:]] == [str(p) for p in _images(scans)]  # sorted walk, no txt/DS_Store
    for r in rows[1:]:
        probs = [float(x) for x in r[3:6]]
        assert r[1] in ("covid", "pneumonia", "normal") and r[6] == ""
        assert abs(sum(probs) - 1) < 1e-4 and float(r[2]) == max(probs)
        assert r[1] == HEADER[3 + int(np.argmax(probs))]


def test_probabilities_match_the_shared_inference_path(capsys, model_path, scans):
    from cxrtool.artifact import load_model
    from cxrtool.imageio import load_image
    from cxrtool.inference import predict_images

    files = _images(scans)
    expected = predict_images(load_model(model_path), [load_image(f) for f in files])
    code, out, _ = _run(capsys, "--model", model_path, *files, "--format", "jsonl", "--batch-size", "4")
    got = np.array([[json.loads(line)[c] for c in ("covid", "pneumonia", "normal")] for line in out.splitlines()])
    assert code == 0 and np.allclose(got, expected, atol=1e-5)


def test_jsonl_and_table(capsys, model_path, scans):
    files = _images(scans)[:3]
    code, out, _ = _run(capsys, "--model", model_path, *files, "--format", "jsonl")
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(records) == 3
    assert set(records[0]) == set(HEADER) and records[0]["error"] is None
    assert records[0]["probability"] == records[0][records[0]["label"]]

    code, out, _ = _run(capsys, "--model", model_path, *files, "--format", "table")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["label", "probability", "covid", "pneumonia", "normal", "path"]
    assert len(lines) == 4 and all(line.endswith(str(f)) for line, f in zip(lines[1:], files))


def test_stdin_dash_mixed_with_arguments(capsys, monkeypatch, model_path, scans):
    files = _images(scans)
    stdin = "\n".join(str(f) for f in files[2:5]) + "\n\n"  # a trailing blank line is ignored
    code, out, _ = _run(capsys, "--model", model_path, files[0], "-", scans / "a", "--format", "jsonl",
                        stdin=stdin, monkeypatch=monkeypatch)
    paths = [json.loads(line)["path"] for line in out.splitlines()]
    assert code == 0
    assert paths == [str(files[0]), *map(str, files[2:5]), *map(str, _images(scans / "a"))]


def test_writers_are_a_library(capsys, model_path, scans):
    """cxrtool.predict_writers gives Python users (and the demo) the CLI's output byte for byte."""
    from cxrtool.artifact import load_model
    from cxrtool.errors import UsageError
    from cxrtool.predict import Prediction, predict_stream
    from cxrtool.predict_writers import write_predictions

    files = _images(scans)[:3]
    loaded = load_model(model_path)
    for fmt in ("csv", "jsonl", "table"):
        code, out, _ = _run(capsys, "--model", model_path, *files, "--format", fmt)
        buf = io.StringIO()
        n = write_predictions(buf, predict_stream(loaded, files), loaded.info.classes, fmt)
        assert code == 0 and n == 3 and buf.getvalue() == out, fmt

    buf = io.StringIO()  # a failed image keeps its place, with empty cells
    write_predictions(buf, [[Prediction("x.png", error="unreadable")]], ["covid", "pneumonia", "normal"])
    assert buf.getvalue() == ",".join(HEADER) + "\nx.png,,,,,,unreadable,,\n"
    with pytest.raises(UsageError, match="csv, jsonl, table"):
        write_predictions(io.StringIO(), [], ["covid"], "xml")


def test_unreadable_file_gives_error_row_and_exit_1(capsys, model_path, scans, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)  # a PNG signature, then nothing decodable
    missing = tmp_path / "missing.png"
    good = _images(scans)[:2]
    code, out, err = _run(capsys, "--model", model_path, good[0], bad, missing, good[1])
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 1
    assert [r["path"] for r in rows] == [str(good[0]), str(bad), str(missing), str(good[1])]
    for r in rows[1:3]:
        assert r["error"] and r["label"] == "" and r["covid"] == r["pneumonia"] == r["normal"] == r["probability"] == ""
    assert "corrupt" in rows[1]["error"] or "decode" in rows[1]["error"]
    assert rows[0]["error"] == rows[3]["error"] == "" and rows[3]["label"]
    err_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(err_lines) == 2 and str(bad) in err_lines[0] and str(missing) in err_lines[1]

    code, out, _ = _run(capsys, "--model", model_path, bad, "--format", "jsonl")
    rec = json.loads(out)
    assert code == 1 and rec["error"] and rec["label"] is None and rec["covid"] is None


def test_empty_input_is_header_only_exit_0(capsys, monkeypatch, model_path, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for args, stdin in (([empty], None), (["-"], ""), ([], None)):
        code, out, _ = _run(capsys, "--model", model_path, *args, stdin=stdin, monkeypatch=monkeypatch)
        assert code == 0 and out == ",".join(HEADER) + "\n"
    code, out, _ = _run(capsys, "--model", model_path, empty, "--format", "jsonl")
    assert code == 0 and out == ""


def test_output_order_is_input_order(capsys, model_path, scans):
    files = _images(scans)
    order = [files[i] for i in (5, 0, 6, 2, 1, 4, 3)] + [files[0]]  # shuffled, with a repeat
    code, out, _ = _run(capsys, "--model", model_path, *order, "--batch-size", "2", "--workers", "4")
    assert code == 0 and [r["path"] for r in csv.DictReader(io.StringIO(out))] == list(map(str, order))


def test_unknown_format_and_model(capsys, model_path, scans, tmp_path):
    code, _, err = _run(capsys, "--model", model_path, scans, "--format", "xml")
    assert code == 2 and "csv, jsonl, table" in err
    code, out, err = _run(capsys, "--model", tmp_path / "nope.keras", scans)
    assert code == 1 and out == "" and "no such model" in err


def test_library_streams_before_the_input_ends(model_path, scans):
    """Rows of the first batch come out while most of the input has not even been read."""
    from cxrtool.artifact import load_model
    from cxrtool.predict import predict_stream

    files = _images(scans) * 6  # 42 paths
    consumed = []

    def paths():
        for f in files:
            consumed.append(f)
            yield f

    loaded = load_model(model_path)
    stream = predict_stream(loaded, paths(), batch_size=2, prefetch=1, workers=2)
    first = next(stream)
    at_first = len(consumed)
    rest = [r for batch in stream for r in batch]
    assert [r.path for r in first] == [str(f) for f in files[:2]]
    # bounded read-ahead: a full queue of (prefetch + 1) batches, the batch in hand, one waiting to be queued
    assert at_first <= 2 * (1 + 1) + 2 + 1 < len(files)
    assert len(rest) == len(files) - 2 and all(r.ok for r in rest)


def _cli_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_cli_streams_rows_while_stdin_is_still_open(model_path, scans):
    """`producer | cxrtool predict -`: rows appear before the producer has finished."""
    files = _images(scans)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cxrtool", "predict", "--model", str(model_path), "-", "--batch-size", "2", "--format", "jsonl"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_cli_env(),
    )
    try:
        proc.stdin.write(f"{files[0]}\n{files[1]}\n")
        proc.stdin.flush()
        got: list[str] = []
        reader = threading.Thread(target=lambda: got.extend([proc.stdout.readline(), proc.stdout.readline()]))
        reader.start()
        reader.join(timeout=120)
        assert not reader.is_alive(), "no output while stdin was open: not streaming"
        assert [json.loads(line)["path"] for line in got] == [str(files[0]), str(files[1])]
        proc.stdin.write(f"{files[2]}\n")
        proc.stdin.close()
        rest = proc.stdout.read()
        assert proc.wait(timeout=60) == 0
        assert [json.loads(line)["path"] for line in rest.splitlines()] == [str(files[2])]
    finally:
        if proc.poll() is None:
            proc.kill()


def test_closed_pipe_ends_quietly(model_path, scans):
    """`cxrtool predict ... | head -n 2`: exit 0, no traceback, no 'Exception ignored'."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cxrtool", "predict", "--model", str(model_path), *[str(f) for f in _images(scans) * 30],
         "--batch-size", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_cli_env(),
    )
    proc.stdout.readline()
    proc.stdout.readline()
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert b"Traceback" not in err and b"Exception ignored" not in err and b"BrokenPipe" not in err
