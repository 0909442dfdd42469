"""`cxrtool train` end to end on tiny phantom datasets (tiny images, one short epoch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cxrtool.errors import CxrError, UsageError
from helpers_dataset import make_dataset, read_rows, write_manifest


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("ds") / "data", {"train": 4, "val": 2, "test": 1}, size=40)


def _probe(size: int) -> np.ndarray:
    return np.random.default_rng(7).uniform(0, 255, (4, size, size, 1)).astype("float32")


def _same_graph_predict(reloaded, original, x):
    """Probabilities of two models with the same graph, from ONE compiled function (saves an
    XLA compilation per architecture on CPU): the reloaded model's graph, run with each
    model's variables."""
    import jax

    fn = jax.jit(lambda tv, ntv, x: reloaded.stateless_call(tv, ntv, x, training=False)[0])

    def values(m):
        return [v.value for v in m.trainable_variables], [v.value for v in m.non_trainable_variables]

    assert [tuple(v.shape) for v in reloaded.variables] == [tuple(v.shape) for v in original.variables]
    return np.asarray(fn(*values(original), x)), np.asarray(fn(*values(reloaded), x))


def _check_saved(result, size: int, arch: str) -> None:
    from cxrtool.artifact import load_model, read_info

    path = result.model_path
    assert path.is_file() and result.log_csv.is_file() and result.curves_png.is_file()
    assert not path.with_name(path.stem + ".run").exists()  # checkpoints cleaned up after success
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []  # no temp files
    info = read_info(path)
    assert info.architecture == arch and info.image_size == size
    assert info.classes == ["covid", "pneumonia", "normal"]
    assert info.dataset_fingerprint and info.cxrtool_version and info.created
    assert info.training["options"]["epochs"] >= 1 and info.training["best_epoch"] >= 1
    loaded = load_model(path)  # safe mode
    model = loaded.model
    assert model.input.shape == (None, size, size, 1)
    assert not any(hasattr(layer, "layers") for layer in model.layers)  # flat: no nested Model
    fmap = model.get_layer(info.gradcam_layer).output
    assert len(fmap.shape) == 4
    x = _probe(size)
    expected, got = _same_graph_predict(model, result.model, x)
    assert got.shape == (4, 3) and np.allclose(got.sum(axis=1), 1.0, atol=1e-5)
    assert np.allclose(got, expected, atol=1e-5)


def test_cnn_through_the_cli(dataset, tmp_path, capsys):
    from cxrtool.cli import main

    models = tmp_path / "models"
    code = main(["train", str(dataset), "--model", "cnn", "--image-size", "16", "--epochs", "2",
                 "--batch-size", "6", "--seed", "3", "--models-dir", str(models), "-q"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.strip() == str(models / "cnn.keras")
    from cxrtool.artifact import read_info

    info = read_info(models / "cnn.keras")
    assert info.gradcam_layer == "feature_map" and info.training["epochs_run"] == 2
    log = (models / "cnn.log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,") and "val_loss" in log[0] and len(log) == 3

    # --seed makes CPU training deterministic: the library call with the same options gives
    # bit-identical weights and losses
    from cxrtool.artifact import load_model
    from cxrtool.train import TrainOptions, train

    again = train(dataset, "cnn", options=TrainOptions(epochs=2, image_size=16, batch_size=6, seed=3),
                  models_dir=tmp_path / "again")
    first = load_model(models / "cnn.keras").model
    assert len(first.get_weights()) == len(again.model.get_weights()) > 0
    for a, b in zip(first.get_weights(), again.model.get_weights()):
        assert np.array_equal(a, b)
    assert [r["loss"] for r in again.history] == [float(line.split(",")[log[0].split(",").index("loss")])
                                                  for line in log[1:]]


def test_vit_trains_saves_and_reloads(dataset, tmp_path):
    from cxrtool.train import TrainOptions, train

    result = train(dataset, "vit", options=TrainOptions(
        epochs=1, image_size=24, batch_size=6, vit_layers=1, seed=0), models_dir=tmp_path)
    _check_saved(result, 24, "vit")
    assert tuple(result.model.get_layer("feature_map").output.shape[1:]) == (8, 8, 64)


def test_resnet50_trains_saves_and_reloads(dataset, tmp_path):
    from cxrtool.train import TrainOptions, train

    result = train(dataset, "resnet50", options=TrainOptions(
        epochs=1, image_size=32, batch_size=6, weights="none", seed=0), models_dir=tmp_path)
    _check_saved(result, 32, "resnet50")
    assert result.info.gradcam_layer == "conv5_block3_out"
    assert result.info.preprocessing["scaling"] == "caffe"


@pytest.mark.slow
def test_resnet152_trains_saves_and_reloads(dataset, tmp_path):
    """ResNet50 covers full backpropagation through the same keras.applications blocks; here the
    backbone is frozen (head-only training), which halves the XLA compile of this deep graph."""
    from cxrtool.train import TrainOptions, train

    result = train(dataset, "resnet152", options=TrainOptions(
        epochs=1, freeze_epochs=1, image_size=32, batch_size=6, weights="none", seed=0, augment=False),
        models_dir=tmp_path)
    _check_saved(result, 32, "resnet152")
    assert result.info.gradcam_layer == "conv5_block3_out"


def test_mobilenetv2_with_a_weights_file(dataset, tmp_path):
    """A backbone weights file round-trips through --weights PATH (frozen backbone: kept exactly)."""
    from cxrtool.backend import import_keras
    from cxrtool.train import TrainOptions, train

    keras = import_keras()
    keras.utils.set_random_seed(11)
    backbone = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    weights_file = tmp_path / "mnv2_backbone.weights.h5"
    backbone.save_weights(weights_file)
    result = train(dataset, "mobilenetv2", options=TrainOptions(
        epochs=1, freeze_epochs=1, image_size=32, batch_size=6, weights=str(weights_file), seed=0),
        models_dir=tmp_path / "models")
    _check_saved(result, 32, "mobilenetv2")
    assert result.info.gradcam_layer == "out_relu"
    assert result.info.training["options"]["weights"] == str(weights_file)
    trained = result.model
    for name in ("Conv1", "bn_Conv1", "block_16_project", "Conv_1"):
        kept, got = backbone.get_layer(name).get_weights(), trained.get_layer(name).get_weights()
        assert len(kept) == len(got) > 0, name
        for a, b in zip(kept, got):
            assert np.array_equal(a, b), name
    # a weights file of another network does not fit: one clear error, nothing written
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    bad = tmp_path / "other.weights.h5"
    other.save_weights(bad)
    models = tmp_path / "bad-models"
    with pytest.raises(CxrError, match="does not fit"):
        train(dataset, "mobilenetv2", options=TrainOptions(epochs=1, image_size=32, weights=str(bad)),
              models_dir=models)
    assert not models.exists()


def test_resume_continues_an_interrupted_run(dataset, tmp_path):
    from cxrtool.backend import import_keras
    from cxrtool.train import TrainOptions, train

    keras = import_keras()

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                raise KeyboardInterrupt

    opts = dict(epochs=2, image_size=16, batch_size=6, seed=5)
    with pytest.raises(KeyboardInterrupt):
        train(dataset, "cnn", options=TrainOptions(**opts), models_dir=tmp_path, callbacks=[Interrupt()])
    run = tmp_path / "cnn.run"
    assert (run / "last.keras").is_file() and json.loads((run / "state.json").read_text())["epoch"] == 1
    assert not (tmp_path / "cnn.keras").exists()
    with pytest.raises(UsageError, match="--resume"):
        train(dataset, "cnn", options=TrainOptions(**opts), models_dir=tmp_path)
    events = []
    result = train(dataset, "cnn", options=TrainOptions(**opts, resume=True), models_dir=tmp_path,
                   progress=events.append)
    assert [r["epoch"] for r in result.history] == [1, 2]
    # progress: one event shape (stage, done, total); the resumed run reports epoch 2 of 2 only
    assert all({"stage", "done", "total"} <= set(e) for e in events)
    assert any(e["stage"] == "status" and "resuming" in e["message"] for e in events)
    epochs = [e for e in events if e["stage"] == "epoch"]
    assert [(e["done"], e["total"], e["best_epoch"]) for e in epochs] == [(2, 2, result.best_epoch)]
    assert epochs[0]["logs"] == result.history[-1]
    steps = [e["done"] for e in events if e["stage"] == "batch"]
    assert steps == list(range(len(steps))) and len(steps) == 3  # 12 train images, batch 6: 2 steps
    assert result.info.training["resumed"] and result.info.training["epochs_run"] == 2
    assert (tmp_path / "cnn.keras").is_file() and not run.exists()
    with pytest.raises(CxrError, match="no unfinished run"):
        train(dataset, "cnn", options=TrainOptions(**opts, resume=True), models_dir=tmp_path)


@pytest.mark.slow
def test_data_parallel_on_two_forced_cpu_devices_with_mixed_precision(dataset, tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    out = tmp_path / "dp.keras"
    proc = subprocess.run(
        [sys.executable, "-m", "cxrtool", "train", str(dataset), "--model", "cnn", "--image-size", "16",
         "--epochs", "1", "--batch-size", "4", "--devices", "2", "--precision", "mixed", "--seed", "0",
         "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == str(out)
    from cxrtool.artifact import load_model

    loaded = load_model(out)
    assert loaded.info.training["devices"] == 2 and loaded.info.training["precision"] == "mixed"
    probs = loaded.model.predict(_probe(16), verbose=0)
    assert probs.dtype == np.float32 and np.allclose(probs.sum(axis=1), 1.0, atol=1e-3)


def test_cache_is_invalidated_when_the_manifest_changes(tmp_path):
    from cxrtool.inputs import cache_path, load_dataset

    root = make_dataset(tmp_path / "d", {"train": 2, "val": 1}, size=24)
    first = load_dataset(root, 16)
    old_cache = cache_path(first.manifest, "train", 16)
    assert old_cache.is_file() and first["train"].x.shape == (6, 16, 16)
    again = load_dataset(root, 16)
    assert np.array_equal(again["train"].x, first["train"].x)
    rows = read_rows(root)
    write_manifest(root, [r for r in rows if not (r["split"] == "train" and r["label"] == "normal")][:] + [
        r for r in rows if r["split"] == "train" and r["label"] == "normal"][:1])
    changed = load_dataset(root, 16)
    assert changed.manifest.fingerprint != first.manifest.fingerprint
    assert changed["train"].x.shape == (5, 16, 16)
    assert not old_cache.exists() and cache_path(changed.manifest, "train", 16).is_file()
    # a cache that does not match its manifest rows is rebuilt, not trusted
    np.savez(cache_path(changed.manifest, "train", 16), x=np.zeros((1, 16, 16), np.uint8), files=np.asarray(["x"]))
    assert load_dataset(root, 16)["train"].x.shape == (5, 16, 16)


def test_feeder_batches_are_fixed_size_deterministic_and_weighted():
    from cxrtool.inputs import balanced_class_weights, make_feeder

    x = np.arange(10 * 4 * 4, dtype=np.uint8).reshape(10, 4, 4)
    y = np.asarray([0] * 6 + [1] * 3 + [2] * 1, dtype=np.int32)
    w = balanced_class_weights(y, 3)
    assert np.allclose(w, [10 / 18, 10 / 9, 10 / 3])
    feeder = make_feeder(x, y, 4, seed=1, class_weights=w)
    assert len(feeder) == 2
    xb, yb, wb = feeder[0]
    assert xb.shape == (4, 4, 4, 1) and xb.dtype == np.uint8 and np.allclose(wb, w[yb])
    again = make_feeder(x, y, 4, seed=1, class_weights=w)
    assert np.array_equal(again[1][0], feeder[1][0])
    first_epoch = feeder[0][0].copy()
    feeder.on_epoch_end()
    assert feeder.epoch == 1
    # a new epoch is a new permutation, the same one a feeder started at epoch 1 draws
    assert not np.array_equal(feeder[0][0], first_epoch)
    assert np.array_equal(feeder[0][0], make_feeder(x, y, 4, seed=1, epoch=1)[0][0])
    shard0 = make_feeder(x, y, 2, seed=1, shard=(0, 2))
    shard1 = make_feeder(x, y, 2, seed=1, shard=(1, 2))
    seen = set(map(tuple, np.concatenate([shard0[0][0], shard1[0][0]]).reshape(4, -1)))
    assert len(seen) == 4


def test_epoch_tracking_keeps_the_best_lowers_the_lr_and_stops_early():
    from cxrtool.train import TrainOptions
    from cxrtool.train.callbacks import track_epoch
    from cxrtool.train.checkpoints import new_state

    def run(monitor, values, lr=1.0, **opts):
        o = TrainOptions(monitor=monitor, **opts)
        state = new_state(architecture="cnn", size=16, batch=4, seed=0, dataset="d", fingerprint="f",
                          options={}, monitor=monitor)
        return state, [track_epoch(state, o, e, v, lr) for e, v in enumerate(values, start=1)]

    state, got = run("val_loss", [1.0, 0.8, 0.9, 0.85, 0.95], patience=3, reduce_lr_patience=2, min_lr=0.3)
    assert [d.improved for d in got] == [True, True, False, False, False]
    assert [d.new_lr for d in got] == [None, None, None, 0.5, None]
    assert [d.stop for d in got] == [False, False, False, False, True]
    assert state["best_epoch"] == 2 and state["best"] == 0.8 and state["epoch"] == 5 and state["stopped_early"]
    assert len(state["events"]) == 2 and "early stop" in state["events"][1]
    # the LR never goes below min_lr; nothing stops without --patience
    state, got = run("val_loss", [1.0, 1.1, 1.2], lr=0.3, reduce_lr_patience=1, min_lr=0.3)
    assert [d.new_lr for d in got] == [None, None, None] and not any(d.stop for d in got)
    assert state["events"] == [] and not state["stopped_early"]
    # val_accuracy: higher is better
    state, got = run("val_accuracy", [0.5, 0.7, 0.6])
    assert [d.improved for d in got] == [True, True, False] and state["best_epoch"] == 2


def _bad(root: Path, rows: list[dict]) -> Path:
    write_manifest(root, rows)
    return root


@pytest.mark.parametrize(
    "case, args, message",
    [
        ("no-manifest", ["--model", "cnn"], "no manifest.csv"),
        ("empty-val", ["--model", "cnn"], "val split is empty"),
        ("missing-class", ["--model", "cnn"], "missing from the train split"),
        ("ok", ["--model", "alexnet"], "unknown model architecture"),
        ("ok", ["--model", "resnet50", "--image-size", "16"], "too small for resnet50"),
        ("ok", ["--model", "vit", "--weights", "imagenet"], "no ImageNet weights exist for vit"),
        ("ok", ["--model", "cnn", "--weights", "nothere.h5"], "no such file"),
    ],
)
def test_bad_input_is_one_line_exit_1_and_nothing_written(tmp_path, capsys, case, args, message):
    from cxrtool.cli import main

    root = make_dataset(tmp_path / "d", {"train": 1, "val": 1}, size=20)
    rows = read_rows(root)
    if case == "no-manifest":
        (root / "manifest.csv").unlink()
    elif case == "empty-val":
        _bad(root, [r for r in rows if r["split"] != "val"])
    elif case == "missing-class":
        _bad(root, [r for r in rows if not (r["split"] == "train" and r["label"] == "covid")])
    models = tmp_path / "models"
    code = main(["train", str(root), *args, "--models-dir", str(models)])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    lines = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], captured.err
    assert not models.exists()


def test_source_balanced_sampling_draws_every_source_equally_within_a_class():
    from cxrtool.inputs import balanced_class_weights, make_feeder, source_balanced_order

    # class 0: sources a 10, b 2, c 1; class 1: a 5, d 7; class 2: a 3 (one source)
    y = np.asarray([0] * 13 + [1] * 12 + [2] * 3, dtype=np.int32)
    sources = ["a"] * 10 + ["b"] * 2 + ["c"] + ["a"] * 5 + ["d"] * 7 + ["a"] * 3
    src = np.asarray(sources)
    for epoch in range(3):
        order = source_balanced_order(y, sources, np.random.default_rng([0, epoch]))
        assert np.array_equal(np.bincount(y[order], minlength=3), np.bincount(y))  # class sizes kept
        for c in range(3):
            drawn = src[order][y[order] == c]
            counts = [int((drawn == s).sum()) for s in sorted(set(src[y == c]))]
            assert max(counts) - min(counts) <= 1, (c, counts)  # 13 = 5 + 4 + 4, 12 = 6 + 6, 3
        # a small source repeats its images evenly; a large one is sub-sampled without repeats
        per_image = np.bincount(order, minlength=len(y))
        assert set(per_image[10:12]) <= {2, 3} and per_image[12] in (4, 5)
        assert set(per_image[:10]) <= {0, 1}
    assert np.array_equal(source_balanced_order(y, sources, np.random.default_rng(5)),
                          source_balanced_order(y, sources, np.random.default_rng(5)))

    # through the feeder: one epoch of batches draws the same counts; class weights still apply
    x = np.arange(len(y), dtype=np.uint8).reshape(-1, 1, 1)  # each image's pixel is its index
    w = balanced_class_weights(y, 3)
    feeder = make_feeder(x, y, 4, seed=2, class_weights=w, sources=sources)
    assert len(feeder) == 7
    batches = [feeder[i] for i in range(len(feeder))]
    index = np.concatenate([b[0].reshape(-1) for b in batches]).astype(int)
    assert np.array_equal(np.sort(index), np.sort(source_balanced_order(y, sources, np.random.default_rng([2, 0]))))
    assert all(np.allclose(b[2], w[b[1]]) for b in batches)
    feeder.on_epoch_end()
    assert not np.array_equal(np.concatenate([feeder[i][0].reshape(-1) for i in range(7)]), index)


def test_source_sqrt_sampling_draws_sources_by_the_square_root_of_their_size():
    from cxrtool.inputs import make_feeder, source_balanced_order

    # one class: sources of 400, 100 and 4 images -> shares 20 : 10 : 2 of 504 draws
    sizes = {"big": 400, "mid": 100, "tiny": 4}
    sources = [s for s, n in sizes.items() for _ in range(n)]
    y = np.zeros(len(sources), np.int32)
    src = np.asarray(sources)
    for epoch in range(3):
        order = source_balanced_order(y, sources, np.random.default_rng([0, epoch]), power=0.5)
        assert len(order) == len(y)
        counts = {s: int((src[order] == s).sum()) for s in sizes}
        expected = {s: 504 * np.sqrt(n) / (20 + 10 + 2) for s, n in sizes.items()}  # 315, 157.5, 31.5
        assert all(abs(counts[s] - expected[s]) <= 1 for s in sizes), counts
        per_image = np.bincount(order, minlength=len(y))
        assert set(per_image[-4:]) <= {7, 8} and set(per_image[:400]) <= {0, 1}  # tiny repeats, big sub-sampled
    # power 1 draws every source by its size: each image once, like a uniform epoch
    order = source_balanced_order(y, sources, np.random.default_rng(3), power=1.0)
    assert np.array_equal(np.sort(order), np.arange(len(y)))
    feeder = make_feeder(np.zeros((len(y), 1, 1), np.uint8), y, 8, seed=1, sources=sources, source_power=0.5)
    drawn = np.concatenate([feeder._order])
    assert np.array_equal(np.sort(drawn), np.sort(source_balanced_order(y, sources, np.random.default_rng([1, 0]), 0.5)))


@pytest.mark.parametrize("sampling", ["source-balanced", "source-sqrt"])
def test_sampling_and_calibration_options_through_the_cli(sampling, tmp_path, capsys):
    from cxrtool.artifact import read_info
    from cxrtool.cli import main

    root = make_dataset(tmp_path / "d", {"train": 4, "val": 2}, size=20)
    rows = read_rows(root)
    for i, r in enumerate(rows):  # two sources: every other train image comes from "other"
        if r["split"] == "train" and i % 2:
            r["source"] = "other"
    write_manifest(root, rows)
    out = tmp_path / "m.keras"
    code = main(["train", str(root), "--model", "cnn", "--image-size", "16", "--epochs", "1", "--batch-size", "6",
                 "--seed", "1", "--sampling", sampling, "--no-calibrate", "--out", str(out), "-q"])
    assert code == 0 and capsys.readouterr().out.strip() == str(out)
    training = read_info(out).training
    assert training["options"]["sampling"] == sampling and training["options"]["calibrate"] is False
    assert training["calibration"] is None
    assert training["sources"] == {c: {"other": 2, "phantom": 2} for c in ("covid", "pneumonia", "normal")}
    code = main(["train", str(root), "--model", "cnn", "--sampling", "by-source", "--out", str(tmp_path / "x.keras")])
    assert code == 2 and "--sampling must be one of uniform, source-balanced, source-sqrt" in capsys.readouterr().err
    assert not (tmp_path / "x.keras").exists()


def test_batch_progress_stays_in_order_when_keras_delivers_steps_out_of_order():
    """Keras calls async-safe batch callbacks from a thread pool, so step 2 can arrive before
    step 1 (seen as [0, 2, 1] in CI): the events still count 0, 1, 2, 3 with nothing repeated."""
    from cxrtool.backend import import_keras
    from cxrtool.train import TrainOptions
    from cxrtool.train.callbacks import make_monitor

    events = []
    monitor = make_monitor(import_keras(), state={}, files=None, options=TrainOptions(epochs=1), progress=events.append,
                           steps=3, batch=4, is_chief=False, save_checkpoint=lambda *a: None)
    monitor.on_epoch_begin(0)
    for index in (1, 0, 2):  # step 2 ends first, then step 1 arrives late
        monitor.on_train_batch_end(index)
    assert [e["done"] for e in events if e["stage"] == "batch"] == [0, 1, 2, 3]
