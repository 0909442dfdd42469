"""Where build-dataset's per-image stage runs: this machine's process pool, or a Dask cluster.

Why: decoding and hashing a few million files on shared storage can be more work than one
machine does in a night. Dask distributed already schedules, retries and monitors tasks across
machines; this module only hands it the work (no scheduler of our own):

* ``local`` (the default): :func:`cxrtool.build.analyse.analyse_files`' process pool.
* ``dask://HOST:PORT`` (or Dask's own ``tcp://`` / ``tls://`` address): an existing cluster,
  started with ``dask scheduler`` and ``dask worker``. The workers read the files themselves,
  so every worker must see the sources at the same absolute paths as this machine (shared
  storage) and have the same cxrtool installed; :func:`check_workers` verifies both.
* ``dask-local``: a ``LocalCluster`` of ``--workers`` processes on this machine (to try the
  cluster path, or to compare it with the pool).

The client sends batches of :data:`BATCH` absolute paths, keeps at most a few batches per
worker thread in flight (so neither the client nor the scheduler holds millions of tasks),
and puts each batch's small records back at its position: the result, and so the manifest, is
the same as a local build's. A worker that dies mid-batch is Dask's to handle (the scheduler
reruns its tasks elsewhere, up to ``distributed.scheduler.allowed-failures`` times); after
that, and for any other failure, one :class:`~cxrtool.errors.CxrError` line says what and where.

``distributed`` is imported only when a Dask executor is used: data preparation stays free of
heavy imports, and a machine without it gets one line naming ``pip install "cxrtool[dask]"``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CxrError, UsageError
from ..progress import ProgressFn, report
from ..version import __version__
from ..workers import default_workers
from .analyse import analyse_batch, analyse_files
from .types import Analysis

if TYPE_CHECKING:  # only for type hints: never imported unless a Dask executor is used
    from distributed import Client

LOCAL = "local"
DASK_LOCAL = "dask-local"
#: Files per Dask task: large enough that scheduling (~1 ms per task) is noise next to decoding
#: (~2 ms of CPU per file), small enough that a lost worker costs little to redo.
BATCH = 256
#: Tasks in flight per worker thread: one running, one queued so no thread waits for the client.
IN_FLIGHT_PER_THREAD = 2
#: Seconds to reach the scheduler, then to see at least one worker, before giving up.
CONNECT_TIMEOUT_S = 10.0
WORKERS_TIMEOUT_S = 30.0
#: Dask's default scheduler port (``dask scheduler`` listens there unless told otherwise).
DEFAULT_PORT = 8786
#: A LocalCluster's scheduler without the dashboard, its HTTP server on any free local port (the
#: default, 8787, warns when another cluster has it).
QUIET_SCHEDULER = {"dashboard": False, "dashboard_address": "127.0.0.1:0"}
INSTALL_HINT = 'pip install "cxrtool[dask]"'
SPELLINGS = "local, dask-local, or dask://HOST:PORT"


@dataclass(frozen=True)
class Executor:
    """A parsed ``--executor``: KIND is local, dask-local or dask; ADDRESS the scheduler's."""

    kind: str
    address: str = ""

    def __str__(self) -> str:
        return self.address if self.kind == "dask" else self.kind


def parse_executor(text: str) -> Executor:
    """``local``, ``dask-local``, ``dask://HOST[:PORT]`` (tcp), or a Dask ``tcp://`` / ``tls://`` address."""
    text = text.strip()
    if text in (LOCAL, DASK_LOCAL):
        return Executor(text)
    scheme, sep, rest = text.partition("://")
    host, _, port = rest.rpartition(":") if ":" in rest else (rest, "", str(DEFAULT_PORT))
    if not sep or scheme not in ("dask", "tcp", "tls") or not host or not port.isdigit() or "/" in rest:
        raise UsageError(f"--executor {text!r}: choose {SPELLINGS} (e.g. dask://10.0.0.5:8786)")
    return Executor("dask", f"{'tcp' if scheme == 'dask' else scheme}://{host}:{port}")


def require_distributed(executor: Executor | str) -> Any:
    """The ``distributed`` module, or one line saying how to install it."""
    try:
        import distributed
    except ImportError as exc:
        raise CxrError(f"--executor {executor}: Dask distributed cannot be imported ({exc}); {INSTALL_HINT}") from None
    return distributed


@contextlib.contextmanager
def dask_client(executor: Executor, workers: int | None = None, visible: Sequence[Path] = (),
                timeout: float = CONNECT_TIMEOUT_S) -> Iterator[Client]:
    """A connected client with at least one checked worker (closed, with its LocalCluster, after).

    ``dask-local`` starts WORKERS single-threaded worker processes here; ``dask`` connects to
    the scheduler at the address within TIMEOUT seconds. VISIBLE: paths every worker must see.
    """
    distributed = require_distributed(executor)
    with contextlib.ExitStack() as stack:
        if executor.kind == DASK_LOCAL:
            cluster = stack.enter_context(distributed.LocalCluster(
                n_workers=default_workers(requested=workers), threads_per_worker=1, processes=True,
                host="127.0.0.1", scheduler_kwargs=QUIET_SCHEDULER,
                silence_logs=logging.ERROR,  # no WARNING per cancelled task on Ctrl-C
                preload=[__name__]))  # preload: dask_setup below
            client = stack.enter_context(distributed.Client(cluster, set_as_default=False))
        elif executor.kind == "dask":
            try:
                client = distributed.Client(executor.address, timeout=timeout, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise CxrError(f"{executor.address}: cannot reach the Dask scheduler within {timeout:g} s "
                               f"(is `dask scheduler` running there, and the port open?)") from exc
            stack.enter_context(client)
        else:
            raise UsageError(f"--executor {executor}: not a Dask executor")
        try:
            client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_S)
        except TimeoutError:
            raise CxrError(f"{executor}: the Dask scheduler has no workers after {WORKERS_TIMEOUT_S:g} s; "
                           f"start some with `dask worker {client.scheduler.address}`") from None
        check_workers(client, visible)
        yield client


def dask_setup(worker: Any) -> None:
    """Dask preload hook of ``dask-local``'s worker processes: a terminal's Ctrl-C reaches the
    whole process group, and the parent alone decides (cancel, close, exit 130), so a worker
    ignores SIGINT instead of printing a traceback (like the pool's ``quiet_worker``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _worker_facts(paths: list[str]) -> tuple[str, list[bool]]:
    """Runs on each worker: its cxrtool version and which of PATHS it can see."""
    return __version__, [os.path.exists(p) for p in paths]


def check_workers(client: Client, visible: Iterable[Path | str] = ()) -> None:
    """Every connected worker runs this cxrtool version and sees every path in VISIBLE."""
    paths = [os.path.abspath(p) for p in visible]
    try:
        facts = client.run(_worker_facts, paths)
    except Exception as exc:  # noqa: BLE001 - e.g. ModuleNotFoundError: cxrtool is not installed there
        raise CxrError(f"a Dask worker cannot run cxrtool ({type(exc).__name__}: {exc}); "
                       f"install cxrtool {__version__} on every worker") from None
    for worker, (version, seen) in sorted(facts.items()):
        if version != __version__:
            raise CxrError(f"Dask worker {worker} runs cxrtool {version}, this machine {__version__}: "
                           "install the same version on every worker")
        missing = [p for p, ok in zip(paths, seen) if not ok]
        if missing:
            raise CxrError(f"Dask worker {worker} cannot see {missing[0]}: every worker must see the "
                           "sources at the same paths as this machine (shared storage)")


def analyse_on_dask(client: Client, paths: Sequence[Path], hash_name: str, hash_size: int,
                    progress: ProgressFn | None = None, batch: int | None = None,
                    in_flight: int | None = None) -> list[Analysis]:
    """:func:`~cxrtool.build.analyse.analyse_files` on a Dask cluster: same results, same order.

    Sends BATCH absolute paths per task (default :data:`BATCH`), at most IN_FLIGHT tasks at a
    time (default: two per worker thread); one ``analyse`` progress event per finished batch.
    An interrupt (Ctrl-C) cancels the submitted tasks before it propagates.
    """
    from distributed import as_completed

    total = len(paths)
    if not total:
        return []
    check_workers(client, [paths[0]])
    batch = batch or BATCH
    in_flight = in_flight or max(2, IN_FLIGHT_PER_THREAD * sum(client.nthreads().values()))
    name = f"cxrtool-analyse-{uuid.uuid4().hex[:8]}"  # one run's tasks in the dashboard
    starts = iter(range(0, total, batch))
    live: dict[str, tuple[Any, int]] = {}  # key of a submitted task -> (its future, its first file)

    def submit(start: int):
        chunk = [os.path.abspath(p) for p in paths[start:start + batch]]
        future = client.submit(analyse_batch, chunk, hash_name, hash_size, key=f"{name}-{start}")
        live[future.key] = (future, start)
        return future

    results: list[Analysis] = [Analysis()] * total
    done = 0
    pending = as_completed([submit(s) for s in islice(starts, in_flight)], loop=client.loop)
    try:
        for future in pending:
            start = live[future.key][1]
            try:
                records = future.result()
            except Exception as exc:  # noqa: BLE001 - a task failure: say which files, stop
                raise _task_error(exc, paths, start, batch) from None
            results[start:start + len(records)] = records
            del live[future.key]
            future.release()
            done += len(records)
            report(progress, "analyse", done, total)
            nxt = next(starts, None)
            if nxt is not None:
                pending.add(submit(nxt))
    except BaseException:  # Ctrl-C (Interrupted) included: nothing keeps running on the cluster
        with contextlib.suppress(Exception):
            client.cancel([f for f, _ in live.values()], force=True)
        raise
    return results


def _task_error(exc: Exception, paths: Sequence[Path], start: int, batch: int) -> CxrError:
    where = f"the {min(batch, len(paths) - start)} files from {paths[start]}"
    kind = type(exc).__name__
    if kind == "KilledWorker":
        return CxrError(f"Dask workers kept dying on {where} (the scheduler gave up: {exc}); "
                        "see the workers' logs (out of memory?)")
    if "Cancelled" in kind:
        return CxrError(f"the Dask cluster cancelled the task for {where} (scheduler lost or restarted?)")
    return CxrError(f"a Dask task failed on {where}: {kind}: {exc}")


@contextlib.contextmanager
def connected(executor: str | Executor | Client, workers: int | None = None) -> Iterator[str | Client]:
    """EXECUTOR ready for many :func:`~cxrtool.build.analyse.analyse_files` calls: a Dask
    spelling is connected (a ``dask-local`` cluster started) once for the block; ``local`` and a
    connected Client pass through. ``distributed`` is imported only for a Dask spelling."""
    if isinstance(executor, Executor) or (isinstance(executor, str) and executor.strip() != LOCAL):
        spec = parse_executor(executor) if isinstance(executor, str) else executor
        with dask_client(spec, workers) as client:
            yield client
    else:
        yield executor


def analyse_with(executor: str | Executor | Client, paths: Sequence[Path], hash_name: str, hash_size: int,
                 workers: int | None = None, progress: ProgressFn | None = None) -> list[Analysis]:
    """The per-image stage on EXECUTOR: ``local`` (this machine's pool,
    :func:`~cxrtool.build.analyse.analyse_files`), a Dask spelling or a connected Client."""
    if isinstance(executor, str) and executor.strip() == LOCAL:
        return analyse_files(list(paths), hash_name, hash_size, workers, progress)
    return analyse_distributed(executor, paths, hash_name, hash_size, workers, progress)


def analyse_distributed(executor: str | Executor | Client, paths: Sequence[Path], hash_name: str, hash_size: int,
                        workers: int | None = None, progress: ProgressFn | None = None) -> list[Analysis]:
    """Run the per-image stage on EXECUTOR: a spelling (connects for the call) or a connected Client."""
    if isinstance(executor, (str, Executor)):
        spec = parse_executor(executor) if isinstance(executor, str) else executor
        with dask_client(spec, workers) as client:
            return analyse_on_dask(client, paths, hash_name, hash_size, progress)
    return analyse_on_dask(executor, paths, hash_name, hash_size, progress)


__all__ = [
    "BATCH", "DASK_LOCAL", "Executor", "INSTALL_HINT", "LOCAL", "analyse_distributed", "analyse_on_dask", "analyse_with",
    "check_workers", "connected", "dask_client", "parse_executor", "require_distributed",
]
