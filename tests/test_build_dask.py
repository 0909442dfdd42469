"""build-dataset's per-image stage on a Dask distributed cluster (``--executor``), against real
``distributed.LocalCluster``s: the same dataset as the local pool, the CLI option end to end,
a worker killed mid-run, Ctrl-C, and the one-line errors (no distributed, no scheduler, a
worker that cannot see the files)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")
import dask  # noqa: E402  (installed with distributed)

from cxrtool.build import BuildOptions, Thresholds, build_dataset  # noqa: E402
from cxrtool.build import analyse, executors  # noqa: E402
from cxrtool.build.executors import Executor, analyse_on_dask, check_workers, parse_executor  # noqa: E402
from cxrtool.errors import CxrError, UsageError  # noqa: E402
from cxrtool.synthetic import write_source_tree  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "cxrtool"]
HANG = 120  # seconds: a process or condition not done by then is hung
HEAVY = ("keras", "jax", "jaxlib", "sklearn", "matplotlib", "tensorflow", "torch")
OPTS = dict(seed=0, thresholds=Thresholds(min_size=32), figures=False, audit=False)
OUTPUTS = ("manifest.csv", "excluded.csv", "report.json", "report.md")


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dask") / "src"
    write_source_tree(root, n_per_class=12, size=64)
    return root


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded workers in this process: cheap to start, and a test can reach into them."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp",
                                  host="127.0.0.1", scheduler_kwargs=executors.QUIET_SCHEDULER) as cluster:  # tcp: other processes connect
        yield cluster


@pytest.fixture(scope="module")
def local_build(tree, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "ds"
    build_dataset([tree], out, BuildOptions(workers=2, **OPTS))
    return out


def dask_address(cluster) -> str:
    return cluster.scheduler_address.replace("tcp://", "dask://")


def same_outputs(a: Path, b: Path) -> None:
    for name in OUTPUTS:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    files = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def run_cli(*args: str, timeout: float = HANG, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO, **kw)


# ---------------------------------------------------------------- the spelling


def test_executor_spellings():
    assert parse_executor("local") == Executor("local")
    assert parse_executor("dask-local") == Executor("dask-local")
    assert parse_executor("dask://10.0.0.5:8786") == Executor("dask", "tcp://10.0.0.5:8786")
    assert parse_executor("dask://sched") == Executor("dask", "tcp://sched:8786")  # Dask's default port
    assert parse_executor("tcp://10.0.0.5:9000") == Executor("dask", "tcp://10.0.0.5:9000")  # as Dask prints it
    assert parse_executor("tls://h:1") == Executor("dask", "tls://h:1")
    for bad in ("dask", "ray://h:1", "dask://", "dask://h:port", "dask://h:1/x", "loc"):
        with pytest.raises(UsageError, match="--executor"):
            parse_executor(bad)


# ---------------------------------------------------------------- same dataset as the pool


def test_dask_build_writes_the_same_dataset_as_the_local_pool(tree, cluster, local_build, tmp_path, monkeypatch):
    monkeypatch.setattr(executors, "BATCH", 7)  # many small batches, finishing out of order
    events: list[dict] = []
    with distributed.Client(cluster, set_as_default=False) as client:
        result = build_dataset([tree], tmp_path / "ds", BuildOptions(executor=client, **OPTS), progress=events.append)
    same_outputs(local_build, tmp_path / "ds")
    analysed = [e for e in events if e["stage"] == "analyse"]
    total = len(result.candidates)
    assert total > 7 * 4 and len(analysed) == -(-total // 7)  # one event per batch
    assert [e["done"] for e in analysed] == sorted(e["done"] for e in analysed) and analysed[-1]["done"] == total


def test_in_flight_tasks_are_bounded_and_records_come_back_in_input_order(tree, cluster):
    paths = sorted(p for p in tree.rglob("*.png"))[:60]
    expected = [analyse.analyse_file(p, "phash", 16) for p in paths]
    with distributed.Client(cluster, set_as_default=False) as client:
        submitted, finished, most = [0], [0], [0]
        real_submit = client.submit

        def counting_submit(*args, **kwargs):
            submitted[0] += 1
            most[0] = max(most[0], submitted[0] - finished[0])
            return real_submit(*args, **kwargs)

        def on_event(event: dict) -> None:
            finished[0] += 1

        client.submit = counting_submit
        got = analyse_on_dask(client, paths, "phash", 16, on_event, batch=4, in_flight=3)
    assert got == expected
    assert submitted[0] == 15 and finished[0] == 15
    assert most[0] == 3  # never more than in_flight batches submitted and not yet back


# ---------------------------------------------------------------- the CLI option


def test_cli_executor_option_end_to_end(tree, cluster, local_build, tmp_path):
    proc = run_cli("build-dataset", str(tree), str(tmp_path / "ds"), "--no-figures", "--no-audit", "--min-size", "32",
                   "--executor", dask_address(cluster))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == str(tmp_path / "ds")
    same_outputs(local_build, tmp_path / "ds")


def test_cli_dask_local_starts_a_cluster_of_worker_processes_here(tree, local_build, tmp_path):
    proc = run_cli("build-dataset", str(tree), str(tmp_path / "ds"), "--no-figures", "--no-audit", "--min-size", "32",
                   "--executor", "dask-local", "--workers", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "distributed." not in proc.stderr  # no Dask log lines
    same_outputs(local_build, tmp_path / "ds")


def test_a_dask_build_imports_no_keras_or_jax_and_a_local_one_no_distributed(tree, cluster, tmp_path):
    script = f"""
import sys
from cxrtool.cli import main
common = ["--dry-run", "--no-figures", "--no-audit", "--workers", "2"]
assert main(["build-dataset", {str(tree)!r}, {str(tmp_path / 'a')!r}, *common]) == 0
assert "distributed" not in sys.modules, "a local build imported distributed"
assert main(["build-dataset", {str(tree)!r}, {str(tmp_path / 'b')!r}, *common,
             "--executor", {dask_address(cluster)!r}]) == 0
assert "distributed" in sys.modules
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
assert not heavy, heavy[:10]
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=HANG, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")


# ---------------------------------------------------------------- errors


def test_without_distributed_one_line_names_the_extra(tree, tmp_path):
    script = f"""
import sys
sys.modules["distributed"] = None  # what a machine without the [dask] extra sees: ImportError
from cxrtool.cli import main
sys.exit(main(["build-dataset", {str(tree)!r}, {str(tmp_path / 'ds')!r}, "--executor", "dask://127.0.0.1:8786"]))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=HANG, cwd=REPO)
    assert proc.returncode == 1, proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: --executor tcp://127.0.0.1:8786"), lines
    assert 'pip install "cxrtool[dask]"' in lines[0]
    assert not (tmp_path / "ds").exists()


def test_an_unreachable_scheduler_is_one_line_naming_its_address(tree, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = run_cli("build-dataset", str(tree), str(tmp_path / "ds"), "--executor", f"dask://127.0.0.1:{port}")
    assert proc.returncode == 1, proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: tcp://127.0.0.1:{port}: cannot reach the Dask scheduler within "), lines
    assert list(tmp_path.iterdir()) == []  # refused before the lock file and the scan


def test_a_worker_that_cannot_see_the_files_is_named(cluster, tmp_path):
    with distributed.Client(cluster, set_as_default=False) as client:
        check_workers(client, [tmp_path])  # seen: no error
        with pytest.raises(CxrError, match=r"Dask worker tcp://\S+ cannot see /no/such/share/x.png: every worker"):
            check_workers(client, ["/no/such/share/x.png"])


# ---------------------------------------------------------------- workers that die


def _arm_one_worker_to_die_in_its_first_task(client) -> int:
    """One worker's ``analyse_batch`` becomes a SIGKILL of itself: it dies mid-task, whenever
    its first batch arrives (a kill from outside could land when it holds no task). Tasks name
    the function by reference, so the worker resolves the armed one; its restart is clean.
    Returns the victim's pid."""
    address, pid = sorted(client.run(os.getpid).items())[0]

    def arm() -> None:
        import os as _os
        import signal as _signal

        from cxrtool.build import analyse as _analyse

        _analyse.analyse_batch = lambda *args, **kwargs: _os.kill(_os.getpid(), _signal.SIGKILL)

    client.run(arm, workers=[address])
    return pid


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as f:  # a zombie not yet reaped counts as gone
        return f.read().split(") ")[-1].startswith("Z")


@pytest.mark.parametrize("allowed_failures", [3, 0])
def test_a_worker_killed_mid_run_is_retried_or_one_clear_error(tree, local_build, tmp_path, monkeypatch,
                                                               allowed_failures):
    """Dask reruns a dead worker's tasks elsewhere (its default, 3 tries per task): the same
    dataset. With no retries allowed, the build stops with one CxrError naming the files."""
    monkeypatch.setattr(executors, "BATCH", 4)  # both workers busy when one dies
    with dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                     scheduler_kwargs=executors.QUIET_SCHEDULER) as lc, \
            distributed.Client(lc, set_as_default=False) as client:
        victim = _arm_one_worker_to_die_in_its_first_task(client)
        options = BuildOptions(executor=client, **OPTS)
        if allowed_failures:
            build_dataset([tree], tmp_path / "ds", options)
            same_outputs(local_build, tmp_path / "ds")
        else:
            with pytest.raises(CxrError, match=r"Dask workers kept dying on the \d+ files from "):
                build_dataset([tree], tmp_path / "ds", options)
            assert not (tmp_path / "ds").exists()
    assert _gone(victim)


# ---------------------------------------------------------------- Ctrl-C


def test_ctrl_c_cancels_the_cluster_tasks_and_exits_130(tree, cluster, tmp_path, monkeypatch):
    release = threading.Event()
    real = analyse.analyse_batch

    def held_batch(*args, **kwargs):  # the workers run in this process: hold their tasks here
        release.wait(HANG)
        return real(*args, **kwargs)

    monkeypatch.setattr(analyse, "analyse_batch", held_batch)
    scheduler = cluster.scheduler
    ours = lambda: [k for k in list(scheduler.tasks) if str(k).startswith("cxrtool-analyse-")]  # noqa: E731
    try:
        proc = subprocess.Popen([*CLI, "build-dataset", str(tree), str(tmp_path / "ds"),
                                 "--executor", dask_address(cluster)], cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        deadline = time.monotonic() + HANG
        while not ours():  # the batches are on the cluster
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "no task reached the cluster"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        stdout, err = proc.communicate(timeout=HANG)
        assert proc.returncode == 130, err
        assert stdout == "" and "Traceback" not in err
        assert [line for line in err.splitlines() if line.startswith("error:")] == ["error: interrupted (SIGINT)"]
        assert list(tmp_path.iterdir()) == []  # no dataset, no partial folder, no lock
        while ours():  # cancelled (or released with the client): nothing of the run keeps running
            assert time.monotonic() < deadline, f"tasks left on the cluster: {ours()[:5]}"
            time.sleep(0.05)
    finally:
        release.set()
