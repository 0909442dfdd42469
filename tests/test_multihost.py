"""Multi-process data-parallel training (``--coordinator --num-processes --process-id``): two
real processes on localhost, JAX's CPU collectives (gloo), checked against one process.

Two processes each own one CPU device; one process owns one. Both runs see exactly the same
global batches in the same order (the slices the feeders serve, put together in process order,
are the one-process batch), the same seed and the same dropout draws, so the only difference
is where float32 sums are split: each process reduces the gradient over its half of the batch
and the all-reduce adds the halves (likewise the val metrics). See :data:`ATOL`.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cxrtool.cli import main
from helpers_dataset import make_dataset

ROOT = Path(__file__).resolve().parent.parent
#: Weights of the two runs may differ by this much (absolute) after the run below (4 epochs of
#: 6 steps, Adam at lr 1e-4): float32 rounding (~6e-8 relative per operation) in differently
#: split sums, amplified a little by Adam (it divides each step by the root of the squared
#: gradients, so a weight whose gradient is near zero moves by up to lr whichever way the
#: rounding tips it). Measured here: 6.6e-7. A feeder that serves the same images per step in
#: another order within the global batch (other dropout masks; the sharding before this test
#: existed) gave 0.044, and per-epoch metrics 2-12% apart.
ATOL = 1e-4
#: Per-epoch metrics (loss, accuracy, val_loss, val_accuracy) of the two runs: relative
#: tolerance, for the same reason (measured: at most 6e-7).
RTOL_METRICS = 1e-4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    # 24 train images (6 steps of a global batch of 4), 12 val images (6 per process)
    return make_dataset(tmp_path_factory.mktemp("mh") / "data", {"train": 8, "val": 4, "test": 1}, size=40)


def _train_args(dataset: Path, models_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cxrtool", "train", str(dataset), "--model", "cnn", "--weights", "none",
            "--image-size", "24", "--batch-size", "4", "--seed", "3", "--no-augment",
            "--models-dir", str(models_dir), *extra]


def _env() -> dict:
    # one CPU device per process, whatever the caller's XLA_FLAGS
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS",)}
    return {**env, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}


def _start_pair(dataset: Path, dirs: list[Path], logs: Path, *extra: str) -> list[subprocess.Popen]:
    """Processes 0 and 1 of one run; stderr goes to LOGS/err0.txt, err1.txt (a pipe nobody
    reads while the other process is watched could fill up and stall it)."""
    port = _free_port()
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for i in range(2):
        with (logs / f"err{i}.txt").open("w") as err:
            procs.append(subprocess.Popen(
                _train_args(dataset, dirs[i], *extra, "--coordinator", f"localhost:{port}", "--num-processes", "2",
                            "--process-id", str(i)),
                stdout=subprocess.PIPE, stderr=err, text=True, env=_env(),
            ))
    return procs


def _finish(procs: list[subprocess.Popen], logs: Path, timeout: float) -> list[tuple[str, str]]:
    """(stdout, stderr) of every process once it ended (a hang fails the test instead of stalling the suite)."""
    try:
        outs = [p.communicate(timeout=timeout)[0] for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
            p.communicate()
        pytest.fail(f"a process hung; stderr tails: {[(logs / f'err{i}.txt').read_text()[-1500:] for i in range(2)]}")
    return [(out, (logs / f"err{i}.txt").read_text()) for i, out in enumerate(outs)]


def _epoch_lines(stderr: str) -> list[str]:
    # the rendered epoch rows without their timing ("... lr 0.0001  1.2s *")
    return [re.sub(r"\s+[\d.]+s( \*)?$", "", line.strip()) for line in re.findall(r"^epoch \d+/\d+ .*$", stderr, re.M)]


def _log(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_two_processes_train_like_one_process_and_only_process_0_writes(dataset, tmp_path):
    from cxrtool.artifact import load_model

    # process 1 gets its own models folder (as a second host with its own disk would): it must stay empty
    chief_dir, other_dir, single_dir = tmp_path / "m0", tmp_path / "m1", tmp_path / "single"
    extra = ("--epochs", "4", "--patience", "3", "--reduce-lr-patience", "1")
    procs = _start_pair(dataset, [chief_dir, other_dir], tmp_path / "logs", *extra)
    (out0, err0), (out1, err1) = _finish(procs, tmp_path / "logs", timeout=900)
    assert [p.returncode for p in procs] == [0, 0], (err0[-2000:], err1[-2000:])
    single = subprocess.run(_train_args(dataset, single_dir, *extra), capture_output=True, text=True,
                            env=_env(), timeout=900)
    assert single.returncode == 0, single.stderr[-2000:]

    # stdout: the model path from process 0 only; the collectives' chatter is on stderr
    assert out0.strip() == str(chief_dir / "cnn.keras") and out1 == ""
    assert "[Gloo]" in err0 + err1
    assert not other_dir.exists()  # one writer
    assert sorted(p.name for p in chief_dir.iterdir()) == ["cnn.curves.png", "cnn.keras", "cnn.log.csv"]

    # both processes saw the same combined metrics, epoch by epoch (so they decided the same)
    rows0, rows1 = _epoch_lines(err0), _epoch_lines(err1)
    assert rows0 == rows1 and len(rows0) >= 2

    multi, one = load_model(chief_dir / "cnn.keras"), load_model(single_dir / "cnn.keras")
    assert multi.info.training["processes"] == 2 and multi.info.training["devices"] == 2
    assert one.info.training["processes"] == 1
    for key in ("epochs_run", "best_epoch", "stopped_early", "events"):
        assert multi.info.training[key] == one.info.training[key], key
    # val_loss rises after epoch 1 here: the LR was lowered (and the same epoch kept as best) on both
    assert any("learning rate" in e for e in multi.info.training["events"]), multi.info.training["events"]
    log_multi, log_one = _log(chief_dir / "cnn.log.csv"), _log(single_dir / "cnn.log.csv")
    assert len(log_multi) == len(log_one)
    for a, b in zip(log_multi, log_one):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
            assert float(a[key]) == pytest.approx(float(b[key]), rel=RTOL_METRICS), (a["epoch"], key)

    wm, w1 = multi.model.get_weights(), one.model.get_weights()
    assert len(wm) == len(w1)
    worst = max(float(np.max(np.abs(a - b))) for a, b in zip(wm, w1))
    assert worst <= ATOL, f"weights differ by {worst:g}"
    # the weights did move (a comparison of two untrained models would prove nothing)
    assert any(float(np.max(np.abs(a))) > 0 for a in wm)
    # calibration and OOD statistics: fitted by process 0 alone on the same model, data and order
    assert multi.info.training["calibration"]["temperature"] == pytest.approx(
        one.info.training["calibration"]["temperature"], rel=1e-3)
    assert multi.info.extra["ood"]["n_train"] == one.info.extra["ood"]["n_train"]
    probe = np.random.default_rng(0).uniform(0, 255, (3, 24, 24, 1)).astype("float32")
    assert np.allclose(multi.model.predict(probe, verbose=0), one.model.predict(probe, verbose=0), atol=1e-4)


@pytest.mark.slow
def test_a_stopped_process_does_not_leave_the_other_hanging(dataset, tmp_path):
    """SIGTERM to process 1 mid-training: it exits 143 with its one line; process 0's next
    collective fails at once and it exits 1 with one line naming the cause (no hang)."""
    logs = tmp_path / "logs"
    procs = _start_pair(dataset, [tmp_path / "m", tmp_path / "m"], logs, "--epochs", "500")
    deadline = time.monotonic() + 600
    try:
        # process 1 is training (compiled, the first checkpoint written)
        while "epoch 2/" not in (logs / "err1.txt").read_text():
            assert time.monotonic() < deadline and procs[1].poll() is None, (logs / "err1.txt").read_text()[-2000:]
            time.sleep(0.2)
        procs[1].send_signal(signal.SIGTERM)
        (_, err0), (_, err1) = _finish(procs, logs, timeout=300)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert procs[1].returncode == 143, err1[-2000:]
    assert "error: interrupted (SIGTERM)" in err1
    assert procs[0].returncode == 1, err0[-2000:]
    assert "another process of this run stopped" in err0
    assert "Traceback" not in err0


@pytest.mark.slow
def test_an_interrupted_two_process_run_resumes_to_the_uninterrupted_weights(dataset, tmp_path):
    """docs/scaling.md: "Run the same commands with --resume on every process." SIGTERM to
    process 0 after its first checkpoint; the same two commands with ``--resume`` finish the run
    and give exactly the weights and losses of an uninterrupted two-process run (measured: bit
    for bit; both differ from a one-process run by 1.8e-4 after these 8 epochs at a constant LR,
    the float32 rounding of split sums growing with the steps, see :data:`ATOL`)."""
    from cxrtool.artifact import load_model

    models, logs = tmp_path / "m", tmp_path / "logs"  # one models folder: a shared file system
    extra = ("--epochs", "8", "--patience", "8")
    procs = _start_pair(dataset, [models, models], logs, *extra)
    deadline = time.monotonic() + 600
    try:
        while "epoch 1/8" not in (logs / "err0.txt").read_text():  # checkpoint 1 is on disk
            assert time.monotonic() < deadline and procs[0].poll() is None, (logs / "err0.txt").read_text()[-2000:]
            time.sleep(0.05)
        procs[0].send_signal(signal.SIGTERM)
        (_, err0), (_, err1) = _finish(procs, logs, timeout=300)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert procs[0].returncode == 143, err0[-2000:]
    assert procs[1].returncode != 0  # its peer is gone: exit 1, or JAX's own abort (134)
    run = models / "cnn.run"
    state = json.loads((run / "state.json").read_text())
    # (a signal that lands after the last epoch's checkpoint leaves only calibration and saving to resume)
    assert 1 <= state["epoch"] <= 8 and (run / "last.keras").is_file()
    assert not (models / "cnn.keras").exists()

    procs = _start_pair(dataset, [models, models], tmp_path / "logs2", *extra, "--resume")
    (out0, err0), (out1, err1) = _finish(procs, tmp_path / "logs2", timeout=900)
    assert [p.returncode for p in procs] == [0, 0], (err0[-2000:], err1[-2000:])
    assert out0.strip() == str(models / "cnn.keras") and out1 == ""
    assert not run.exists()

    plain = _start_pair(dataset, [tmp_path / "plain"] * 2, tmp_path / "logs3", *extra)
    _finish(plain, tmp_path / "logs3", timeout=900)
    assert [p.returncode for p in plain] == [0, 0]
    resumed, uninterrupted = load_model(models / "cnn.keras"), load_model(tmp_path / "plain" / "cnn.keras")
    assert resumed.info.training["resumed"] and resumed.info.training["processes"] == 2
    assert resumed.info.training["epochs_run"] == uninterrupted.info.training["epochs_run"] == 8
    assert resumed.info.training["best_epoch"] == uninterrupted.info.training["best_epoch"]
    for a, b in zip(resumed.model.get_weights(), uninterrupted.model.get_weights(), strict=True):
        assert np.array_equal(a, b)
    # and the run trained
    log_resumed, log_plain = _log(models / "cnn.log.csv"), _log(tmp_path / "plain" / "cnn.log.csv")
    assert [r["loss"] for r in log_resumed] == [r["loss"] for r in log_plain] and len(log_plain) == 8
    assert float(log_plain[-1]["loss"]) < float(log_plain[0]["loss"])


def test_feeder_slices_put_together_are_the_one_process_batches():
    from cxrtool.inputs import make_feeder

    x = np.arange(30 * 2 * 2, dtype=np.uint8).reshape(30, 2, 2)
    y = np.arange(30) % 3
    one = make_feeder(x, y, 6, seed=4)
    shards = [make_feeder(x, y, 3, seed=4, shard=(i, 2)) for i in range(2)]
    assert len(one) == len(shards[0]) == len(shards[1]) == 5
    for epoch in range(2):
        for i in range(len(one)):
            xb, yb, *_ = one[i]
            parts = [s[i] for s in shards]
            assert np.array_equal(np.concatenate([p[0] for p in parts]), xb)
            assert np.array_equal(np.concatenate([p[1] for p in parts]), yb)
        for f in (one, *shards):
            f.on_epoch_end()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--coordinator", "localhost:1", "--num-processes", "2", "--process-id", "2"], "--process-id 2 is outside 0..1"),
        (["--coordinator", "localhost:1", "--num-processes", "2", "--process-id", "-1"], "--process-id -1 is outside"),
        (["--num-processes", "2", "--process-id", "0"], "needs --coordinator"),
        (["--coordinator", "localhost:1", "--num-processes", "2", "--process-id", "0", "--batch-size", "5"],
         "--batch-size 5 is not divisible by the 2 processes"),
    ],
)
def test_multi_process_usage_errors_stop_before_connecting(dataset, tmp_path, capsys, monkeypatch, args, message):
    for name in ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES", "KERAS_DISTRIBUTION_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    code = main(["train", str(dataset), "--model", "cnn", "--weights", "none", "--image-size", "16",
                 "--epochs", "1", "--models-dir", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert not any(tmp_path.iterdir())  # nothing written


def test_process_settings_come_from_the_keras_environment_variables(monkeypatch):
    from cxrtool.errors import UsageError
    from cxrtool.train import TrainOptions
    from cxrtool.train.distribute import multihost_settings

    monkeypatch.setenv("KERAS_DISTRIBUTION_JOB_ADDRESSES", "10.0.0.1:1234,10.0.0.2:1234")
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "2")
    monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "1")
    assert multihost_settings(TrainOptions()) == ("10.0.0.1:1234,10.0.0.2:1234", 2, 1)
    # the options win over the environment
    assert multihost_settings(TrainOptions(coordinator="h:1", num_processes=3, process_id=2)) == ("h:1", 3, 2)
    monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "5")
    with pytest.raises(UsageError, match="outside 0..1"):
        multihost_settings(TrainOptions())
