"""`cxrtool evaluate` end to end: train two small models on a phantom dataset, ensemble them,
evaluate all three in one call; every number must equal an independent scikit-learn
computation on the same predictions, and every promised file must exist."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxrtool import CLASSES
from cxrtool.errors import DatasetError, ModelFormatError

from helpers_dataset import make_dataset, read_rows, write_manifest

MODELS = ("cnn_a", "cnn_b", "ens")
N_BOOT = 200


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Dataset (2 sources, paired groups, 1 corrupt test image), 2 trained CNNs, their
    weighted ensemble, and one `cxrtool evaluate` call over all three with --format json."""
    import contextlib
    import io

    from cxrtool.cli import main
    from cxrtool.ensemble import build_ensemble
    from cxrtool.train import TrainOptions, train

    root = tmp_path_factory.mktemp("eval")
    data = make_dataset(root / "data", {"train": 10, "val": 4, "test": 8}, size=40, seed=1)
    rows = read_rows(data)
    test_rows = [r for r in rows if r["split"] == "test"]
    for i, r in enumerate(test_rows):
        r["source"] = "siteA" if i % 2 else "siteB"
        r["group"] = f"pair{i // 2}"  # two images per group (one patient, two films)
    write_manifest(data, rows)
    bad = test_rows[3]["file"]
    (data / bad).write_bytes(b"this is not a PNG")  # unreadable: counted, listed, excluded
    models = root / "models"
    for name, seed in (("cnn_a", 0), ("cnn_b", 1)):
        opts = TrainOptions(epochs=1, image_size=32, batch_size=16, seed=seed, augment=False, lr=1e-3)
        train(data, "cnn", options=opts, out=models / f"{name}.keras")
    build_ensemble(["cnn_a", "cnn_b"], name="ens", method="weighted", data=data, models_dir=models)
    out = root / "out"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["evaluate", str(data), "-m", "cnn_a", "-m", "cnn_b", "-m", "ens", "--models-dir", str(models),
                     "--out", str(out), "--format", "json", "--bootstrap", str(N_BOOT)])
    return {"code": code, "stdout": stdout.getvalue(), "stderr": stderr.getvalue(), "data": data,
            "models": models, "out": out, "bad": bad, "test_rows": test_rows}


def _csv_predictions(out: Path, model: str):
    with (out / "predictions.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    probs = np.asarray([[r[f"{model}:{c}"] for c in CLASSES] for r in rows], dtype=np.float32).astype(np.float64)
    y = np.asarray([CLASSES.index(r["label"]) for r in rows])
    return rows, y, probs


def test_outputs_exist(run):
    assert run["code"] == 0, run["stderr"]
    out = run["out"]
    doc = json.loads(run["stdout"])  # stdout is pure JSON
    assert doc == json.loads((out / "metrics.json").read_text())
    for name in ("metrics.json", "report.md", "predictions.csv", "comparison_roc.png"):
        assert (out / name).is_file(), name
    for m in MODELS:
        for kind in ("confusion", "roc", "reliability"):
            png = out / f"{m}_{kind}.png"
            with Image.open(png) as im:
                assert im.size[0] > 300 and im.size[1] > 300
    # the unreadable image: counted, listed (JSON and stderr), excluded
    assert doc["unreadable"]["count"] == 1 and doc["unreadable"]["files"][0]["file"] == run["bad"]
    assert run["bad"] in run["stderr"]
    assert doc["dataset"]["n_images"] == 24 and doc["dataset"]["n_evaluated"] == 23
    assert doc["dataset"]["fingerprint"] and doc["dataset"]["sources"] == {"siteA": 11, "siteB": 12}
    for m in MODELS:
        md = doc["models"][m]
        assert len(md["fingerprint"]) == 64 and md["trained_on_this_dataset"]
        assert md["metrics"]["n"] == 23
    assert [x["name"] for x in doc["models"]["ens"]["members"]] == ["cnn_a", "cnn_b"]
    assert {"keras", "jax", "scikit-learn", "numpy", "cxrtool"} <= set(doc["versions"])
    # the comparison table: Table III layout, on stderr and in the report
    assert len(doc["comparison"]) == 3 * (len(CLASSES) + 2)
    assert "Table III" in run["stderr"] and "Accuracy" in run["stderr"]
    # atomic writes: no temporary file left behind
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
    report = (out / "report.md").read_text()
    assert "| Model | Class | Precision | Recall | F1-score |" in report
    assert "comparison_roc.png" in report and "ens_confusion.png" in report and run["bad"] in report


def test_numbers_equal_independent_sklearn(run):
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        log_loss,
        precision_recall_fscore_support,
        recall_score,
        roc_auc_score,
    )

    from cxrtool.imageio import load_image
    from cxrtool.inference import open_model, predict_images

    doc = json.loads((run["out"] / "metrics.json").read_text())
    data = run["data"]
    labels = [0, 1, 2]
    for model in MODELS:
        rows, y, probs = _csv_predictions(run["out"], model)
        assert run["bad"] not in [r["file"] for r in rows] and len(rows) == 23
        # the CSV holds the model's own output on these images (independent prediction)
        images = [load_image(data / r["file"]) for r in rows]
        own = predict_images(open_model(model, run["models"]), images)
        np.testing.assert_allclose(probs, own, atol=1e-5)

        m = doc["models"][model]["metrics"]
        pred = probs.argmax(1)
        assert m["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
        p, r, f, s = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
        for j, c in enumerate(CLASSES):
            pc = m["per_class"][c]
            assert (pc["precision"], pc["recall"], pc["f1"], pc["support"]) == pytest.approx((p[j], r[j], f[j], s[j]))
            assert pc["auc"] == pytest.approx(roc_auc_score(y == j, probs[:, j]), abs=1e-12)
        for avg in ("macro", "weighted"):
            p, r, f, _ = precision_recall_fscore_support(y, pred, labels=labels, average=avg, zero_division=0)
            assert (m[avg]["precision"], m[avg]["recall"], m[avg]["f1"]) == pytest.approx((p, r, f), abs=1e-12)
        assert m["macro"]["auc"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr", labels=labels), abs=1e-12)
        assert m["confusion_matrix"]["matrix"] == confusion_matrix(y, pred, labels=labels).tolist()
        norm = probs / probs.sum(1, keepdims=True)
        assert m["log_loss"] == pytest.approx(log_loss(y, norm, labels=labels), abs=1e-9)

        # ECE, by hand: 10 equal-width bins of the top-label confidence
        conf, correct = probs.max(1), (pred == y)
        ece = 0.0
        for b in range(10):
            lo, hi = b / 10, (b + 1) / 10
            sel = (conf >= lo) & ((conf < hi) if b < 9 else (conf <= 1.0 + 1e-6))
            if sel.any():
                ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
        assert m["calibration"]["ece"] == pytest.approx(ece, abs=1e-9)
        assert sum(b["count"] for b in m["calibration"]["bins"]) == 23

        # group bootstrap, independently: concatenate the drawn groups' images
        groups = np.asarray([r["group"] for r in rows])
        uniq = np.unique(groups)
        members = [np.flatnonzero(groups == g) for g in uniq]
        rng = np.random.default_rng(0)
        accs, f1s = [], []
        for _ in range(N_BOOT):
            idx = np.concatenate([members[g] for g in rng.integers(0, len(uniq), len(uniq))])
            accs.append(accuracy_score(y[idx], pred[idx]))
            f1s.append(f1_score(y[idx], pred[idx], labels=labels, average="macro", zero_division=0))
        boot = m["bootstrap"]
        assert boot["n_groups"] == 12 and boot["unit"] == "group"
        assert (boot["accuracy"]["low"], boot["accuracy"]["high"]) == pytest.approx(tuple(np.percentile(accs, [2.5, 97.5])))
        assert (boot["macro_f1"]["low"], boot["macro_f1"]["high"]) == pytest.approx(tuple(np.percentile(f1s, [2.5, 97.5])))
        assert boot["accuracy"]["low"] <= m["accuracy"] <= boot["accuracy"]["high"]

        # per source
        sources = np.asarray([r["source"] for r in rows])
        for src in ("siteA", "siteB"):
            sel = sources == src
            ps = m["per_source"][src]
            assert ps["n"] == sel.sum() and ps["accuracy"] == pytest.approx(accuracy_score(y[sel], pred[sel]))
            rec = recall_score(y[sel], pred[sel], labels=labels, average=None, zero_division=0)
            for j, c in enumerate(CLASSES):
                assert ps["recall"][c] == pytest.approx(rec[j]) if (y[sel] == j).any() else ps["recall"][c] is None


def test_ensemble_probabilities_are_the_weighted_member_mean(run):
    """Both members are 32 px, so the ensemble needs no internal resize: exact equality."""
    from cxrtool.artifact import read_info

    weights = read_info(run["models"] / "ens.keras").extra["weights"]
    _, _, a = _csv_predictions(run["out"], "cnn_a")
    _, _, b = _csv_predictions(run["out"], "cnn_b")
    _, _, e = _csv_predictions(run["out"], "ens")
    np.testing.assert_allclose(e, weights[0] * a + weights[1] * b, atol=1e-6)


def test_external_folder(run, tmp_path):
    """A folder of class sub-folders (never built into a dataset) is one source; a class
    missing from it and an unreadable file are reported, a non-class folder is ignored."""
    from cxrtool.evaluate import evaluate
    from cxrtool.synthetic import write_class_folders

    ext = tmp_path / "hospital_x"
    write_class_folders(ext, {"covid": 3, "pneumonia": 3}, size=48, seed=9)
    (ext / "Normal").mkdir()  # any case
    write_class_folders(tmp_path / "n", {"normal": 2}, size=48, seed=10)
    for p in (tmp_path / "n" / "normal").iterdir():
        p.rename(ext / "Normal" / p.name)
    (ext / "covid" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (ext / "scratch").mkdir()
    events = []
    doc = evaluate(ext, ["cnn_a"], models_dir=run["models"], n_boot=20, progress=events.append)
    # the shared progress shape (cxrtool.progress): stage, done, total; reading counts every image
    assert all({"stage", "done", "total"} <= set(e) for e in events)
    assert [e["done"] for e in events if e["stage"] == "load"] == list(range(10))
    assert [e["done"] for e in events if e["stage"] == "predict"][-1] == 8
    d = doc["dataset"]
    assert d["kind"] == "folder" and d["sources"] == {"hospital_x": 8} and d["n_images"] == 9
    assert d["counts"] == {"covid": 3, "pneumonia": 3, "normal": 2}
    assert doc["unreadable"]["count"] == 1 and doc["unreadable"]["files"][0]["file"] == "covid/broken.png"
    assert any("scratch" in w for w in doc["warnings"])
    assert doc["files"] == {}  # no out: nothing written
    assert doc["models"]["cnn_a"]["trained_on_this_dataset"] is False


ALIASES = {"COVID-19": "covid", "covid19": "covid", "Viral Pneumonia": "pneumonia", "NORMAL": "normal",
           "No Finding": "normal"}


def test_folder_class_aliases_through_the_cli(run, tmp_path, capsys):
    """Class folders named as public datasets name them (build-dataset's aliases, via
    cxrtool.labels): folders of the same class are merged, an unknown folder is ignored with a
    one-line warning."""
    from cxrtool.cli import main
    from cxrtool.synthetic import make_phantom

    ext = tmp_path / "kaggle like"
    for i, (folder, label) in enumerate(ALIASES.items()):
        (ext / folder).mkdir(parents=True)
        for j in range(2):
            Image.fromarray(make_phantom(label, 30 + 2 * i + j, 40)).save(ext / folder / f"{j}.png")
    (ext / "Lung_Opacity").mkdir()
    Image.fromarray(make_phantom("normal", 99, 40)).save(ext / "Lung_Opacity" / "0.png")
    out = tmp_path / "out"
    code = main(["evaluate", str(ext), "-m", "cnn_a", "--models-dir", str(run["models"]), "--out", str(out),
                 "--format", "json", "--bootstrap", "0"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    doc = json.loads(captured.out)
    d = doc["dataset"]
    assert d["kind"] == "folder" and d["n_images"] == d["n_evaluated"] == 10
    assert d["counts"] == {"covid": 4, "pneumonia": 2, "normal": 4}
    with (out / "predictions.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["file"] for r in rows) == sorted(f"{folder}/{j}.png" for folder in ALIASES for j in range(2))
    for r in rows:
        assert r["label"] == ALIASES[r["file"].split("/")[0]], r
    ignored = [line for line in captured.err.splitlines() if "Lung_Opacity" in line]
    assert ignored == ["warning: ignored sub-folders that are not classes: Lung_Opacity"]
    assert any("COVID-19, covid19 -> covid" in w and "NORMAL, No Finding -> normal" in w for w in doc["warnings"])


def test_bad_inputs(run, tmp_path, capsys):
    from cxrtool.artifact import ModelInfo, save_model
    from cxrtool.cli import main
    from cxrtool.evaluate import evaluate
    from cxrtool.models import build_model

    models = run["models"]
    save_model(build_model("cnn", image_size=32, classes=("covid", "normal")), models / "two.keras",
               ModelInfo("cnn", classes=["covid", "normal"], image_size=32))
    with pytest.raises(ModelFormatError, match="predicts covid, normal but"):
        evaluate(run["data"], ["cnn_a", "two"], models_dir=models)

    empty = make_dataset(tmp_path / "empty", {"train": 1, "val": 1}, size=32)
    with pytest.raises(DatasetError, match="the test split is empty"):
        evaluate(empty, ["cnn_a"], models_dir=models)

    (tmp_path / "plain").mkdir()
    with pytest.raises(DatasetError, match="neither a dataset"):
        evaluate(tmp_path / "plain", ["cnn_a"], models_dir=models)

    junk = tmp_path / "junk" / "covid"
    junk.mkdir(parents=True)
    (junk / "a.png").write_bytes(b"nope")
    with pytest.raises(DatasetError, match="none of the 1 images could be read"):
        evaluate(tmp_path / "junk", ["cnn_a"], models_dir=models)

    # through the CLI: one line, exit 1 (user error) or 2 (usage)
    capsys.readouterr()
    assert main(["evaluate", str(run["data"]), "-m", "two", "--models-dir", str(models)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: model two predicts covid, normal")
    assert main(["evaluate", str(run["data"]), "-m", "cnn_a", "--format", "xml"]) == 2
    assert main(["evaluate", str(run["data"]), "-m", "nope", "--models-dir", str(models)]) == 1
    assert "not found" in capsys.readouterr().err
