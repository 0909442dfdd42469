"""Where training runs: one device, data parallel over local devices, or several processes.

Multi-process initialisation must come before anything touches JAX's devices, so
:func:`setup_distribution` is the first Keras/JAX step of a run. JAX is imported inside.

A multi-process run (``--num-processes N``) keeps every process in step:

* every process feeds its slice of each global batch (:func:`cxrtool.inputs.make_feeder`'s
  ``shard``); Keras assembles the slices into one global array
  (``jax.make_array_from_process_local_data``), so the compiled step, its loss and the
  validation metrics are computed over the global batch and are the same on every process;
* the seed is process 0's (:func:`agree_seed`), so the weights start equal and every process
  draws the same epoch order;
* after the last epoch each process takes a copy of the weights that lives on its own
  devices (:func:`local_copy`): what follows (temperature, OOD statistics, saving) is done by
  process 0 alone, with no collective the others would have to join, while the others wait for
  its word (:func:`finish`);
* a process that fails leaves at once (:func:`leave_at_exit`): its closed connections make its
  peers' next collective fail within seconds (one clear line, :func:`peer_failure`) instead of
  the whole job waiting in JAX's shutdown barrier.

stdout is for results only, but the collectives library prints its chatter (``[Gloo] Rank 0
is connected to 1 peer ranks ...``) from C++ straight to file descriptor 1, where Python's
``sys.stdout`` cannot catch it: :func:`stdout_to_stderr` points descriptor 1 at stderr while
the distributed runtime starts, then puts it back.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import CxrError, DatasetError, UsageError
from .options import TrainOptions

#: Seconds every process waits for all the others to connect (JAX's default).
CONNECT_TIMEOUT_S = 300
#: A process that sends no heartbeat for this long is dead: JAX then ends every process of the job.
HEARTBEAT_TIMEOUT_S = 100
#: Seconds a finishing process waits for the others at JAX's shutdown barrier. The processes
#: reach it together: the others first wait for process 0's word (:data:`FINISH_TIMEOUT_S`).
SHUTDOWN_TIMEOUT_S = 60
#: Seconds the other processes wait for process 0 to calibrate, fit the OOD statistics and save.
FINISH_TIMEOUT_S = 6 * 3600
_FINISHED_KEY = "cxrtool/train/finished"
_SEED_KEY = "cxrtool/train/seed"


@dataclass(frozen=True)
class Topology:
    distribution: Any  # keras.distribution.DataParallel, or None on one device
    devices: int  # devices used (all processes)
    processes: int
    process_id: int

    @property
    def is_chief(self) -> bool:
        """Only process 0 writes files."""
        return self.process_id == 0

    @property
    def parallel(self) -> bool:
        return self.devices > 1 or self.processes > 1

    @property
    def multiprocess(self) -> bool:
        return self.processes > 1


def multihost_settings(o: TrainOptions) -> tuple[str | None, int, int]:
    """(coordinator address, process count, process id) from the options, else the Keras env vars."""
    env = os.environ
    address = o.coordinator or env.get("KERAS_DISTRIBUTION_JOB_ADDRESSES")
    count = o.num_processes or int(env.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "1") or 1)
    pid = o.process_id if o.process_id is not None else int(env.get("KERAS_DISTRIBUTION_PROCESS_ID", "0") or 0)
    if count < 1:
        raise UsageError(f"--num-processes {count}: must be at least 1")
    if count > 1 and not address:
        raise UsageError("multi-host training needs --coordinator HOST:PORT (or KERAS_DISTRIBUTION_JOB_ADDRESSES)")
    if not 0 <= pid < count:
        raise UsageError(f"--process-id {pid} is outside 0..{count - 1}")
    return address, count, pid


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send everything written to file descriptor 1 (C/C++ code included) to stderr inside the block."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    try:
        saved = os.dup(1)
    except OSError:  # no descriptor 1 at all: nothing to protect
        yield
        return
    try:
        os.dup2(2, 1)
        yield
    finally:
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, 1)
        os.close(saved)


def _connect(address: str, processes: int, pid: int) -> None:
    """``jax.distributed.initialize`` with cxrtool's timeouts (what ``keras.distribution.initialize``
    calls, minus its seed agreement: :func:`agree_seed` does that)."""
    import jax

    # KERAS_DISTRIBUTION_JOB_ADDRESSES may list every process: the first one is the coordinator
    coordinator = address.split(",")[0].strip()
    # JAX's preemption service installs its own SIGTERM handler (in C++), which records the
    # signal and carries on: `kill` then no longer stopped a process (measured: both kept training).
    # cxrtool.interrupts handles SIGTERM itself (exit 143 with the --resume advice).
    jax.config.update("jax_enable_preemption_service", False)
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator, num_processes=processes, process_id=pid,
            initialization_timeout=CONNECT_TIMEOUT_S, heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S,
            shutdown_timeout_seconds=SHUTDOWN_TIMEOUT_S,
        )
        _connected.append(True)
    except Exception as exc:  # noqa: BLE001 - JAX's errors here are RuntimeError/JaxRuntimeError/ValueError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CxrError(
            f"process {pid} of {processes} could not join the run at {coordinator} within {CONNECT_TIMEOUT_S} s "
            f"({first[:200]}); start all {processes} processes with the same --coordinator and --num-processes"
        ) from None


def setup_distribution(keras, o: TrainOptions, batch_size: int) -> Topology:
    """Initialise multi-process JAX if asked and pick the devices (``--devices``); does not set it globally.

    The distributed runtime and the device list (which connects the collectives) are started
    with stdout pointed at stderr, so their chatter never mixes with the results."""
    address, processes, pid = multihost_settings(o)
    if processes > 1 and batch_size % processes:  # checked before connecting: every process fails alike
        raise UsageError(f"--batch-size {batch_size} is not divisible by the {processes} processes")
    import jax

    if processes > 1:
        with stdout_to_stderr():
            _connect(address, processes, pid)
            available = jax.devices()
            # the collectives connect (and print their chatter) at the first one: do it here
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("cxrtool: connected")
    else:
        available = jax.devices()
    if o.devices in (None, "all"):
        wanted = len(available)
    else:
        try:
            wanted = int(o.devices)
        except ValueError:
            raise UsageError(f"--devices {o.devices!r}: expected 'all' or a number") from None
        if processes > 1 and wanted != len(available):
            raise UsageError(f"--devices {wanted}: a {processes}-process run uses the devices of every process "
                             f"({len(available)}); use --devices all")
        if not 1 <= wanted <= len(available):
            raise UsageError(f"--devices {wanted}: this machine has {len(available)} device(s) ({jax.default_backend()})")
    if wanted <= 1 and processes == 1:
        return Topology(None, 1, 1, 0)
    if batch_size % wanted:
        raise UsageError(f"--batch-size {batch_size} is not divisible by the {wanted} devices used for data parallelism")
    # each process' feeder already serves its own slice (make_feeder's ``shard``): Keras must not
    # shard again (it can only shard a tf.data.Dataset, and refuses anything else across processes)
    parallel = keras.distribution.DataParallel(devices=available[:wanted], auto_shard_dataset=False)
    return Topology(parallel, wanted, processes, pid)


@contextmanager
def without_distribution(keras) -> Iterator[None]:
    """Keras without a distribution inside the block: for what one process does alone (saving).

    Keras' saving builds a throwaway optimizer (to learn which attributes to skip); under a
    multi-process distribution its variable is placed on every process' devices, a collective
    the other processes never join: process 0 hung, or failed with "passed to device_put is not
    the same on each process" when the others were in a step. Reading the (replicated) weights
    needs no collective."""
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(previous)


def _client():
    """JAX's coordination-service client (key-value store, barriers), there once connected.

    Not public API: ``jax._src.distributed.global_state.client`` is what orbax reads too."""
    from jax._src import distributed

    return distributed.global_state.client


def agree_seed(seed: int, topo: Topology) -> int:
    """Process 0's seed on every process (a run without ``--seed`` draws one per process)."""
    if not topo.multiprocess:
        return seed
    client = _client()
    if topo.is_chief:
        client.key_value_set(_SEED_KEY, str(int(seed)))
        return int(seed)
    return int(client.blocking_key_value_get(_SEED_KEY, CONNECT_TIMEOUT_S * 1000))


def local_copy(keras, model):
    """MODEL with its weights on this process' own devices: no step on it needs the other
    processes (the model trained under the run's distribution holds arrays spread over all of
    them, and any computation on those is a collective every process must join).

    Leaves Keras without a distribution (the caller's is put back at the end of ``train``)."""
    weights = model.get_weights()  # replicated: each process has all of them
    keras.distribution.set_distribution(None)
    copy = keras.models.clone_model(model)
    copy.set_weights(weights)
    return copy


def finish(topo: Topology, run: Callable[[], Any]) -> Any:
    """Process 0 runs RUN (calibrate, fit OOD, save) and tells the others how it went; the
    others wait for that word (at most :data:`FINISH_TIMEOUT_S`), then return None, or raise
    if process 0 failed. One process: just RUN."""
    if not topo.multiprocess:
        return run()
    client = _client()
    if topo.is_chief:
        try:
            result = run()
        except BaseException as exc:
            client.key_value_set(_FINISHED_KEY, f"failed: {exc}"[:500])
            raise
        client.key_value_set(_FINISHED_KEY, "ok")
        return result
    try:
        word = client.blocking_key_value_get(_FINISHED_KEY, FINISH_TIMEOUT_S * 1000)
    except Exception as exc:  # noqa: BLE001 - the coordination service's errors (process 0 gone, timeout)
        raise peer_failure(exc, topo) from None
    if word != "ok":
        raise CxrError(f"process 0 failed after training ({word}); nothing was saved by this process")
    return None


def peer_failure(exc: BaseException, topo: Topology) -> CxrError:
    """The one line for a collective or coordination step that failed because another process
    of the run stopped (killed, interrupted or failed)."""
    text = " ".join(str(exc).split())
    return CxrError(f"process {topo.process_id} of {topo.processes}: another process of this run stopped "
                    f"or cannot be reached ({text[:200]}); this process stops too")


def is_collective_failure(exc: BaseException) -> bool:
    """An error raised by JAX's runtime (a collective whose peer left, the coordination service)."""
    import jax

    return isinstance(exc, jax.errors.JaxRuntimeError) or "Gloo" in str(exc)


_exit_code: list[int] = []
_connected: list[bool] = []  # [True] once this process joined a multi-process run


def leave_at_exit(code: int) -> None:
    """End this process with CODE as soon as Python exits, skipping JAX's shutdown barrier.

    That barrier waits (:data:`SHUTDOWN_TIMEOUT_S`) for every process, but after a failure the
    others are stuck in a collective with this one: they only move on (with an error) once its
    connections close. ``atexit`` runs handlers last-registered first, so this one runs before
    JAX's."""
    if not _connected:  # nothing to skip (a usage error before connecting, one process)
        return
    if not _exit_code:
        atexit.register(_leave)
    _exit_code[:] = [code]


def _leave() -> None:
    from ..locks import remove_held

    remove_held()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(_exit_code[0])


def shard_validation(n: int, topo: Topology, say: Callable[[str], None]) -> np.ndarray:
    """The rows of the val split (of ``n``) this process validates on, trimmed so every batch
    splits evenly over its devices."""
    if not topo.parallel:
        return np.arange(n)
    processes, pid = topo.processes, topo.process_id
    local = max(1, topo.devices // processes)
    keep = (n // processes) // local * local
    if keep < 1:
        raise DatasetError(f"the val split has {n} images: too few for {topo.devices} devices")
    if keep < n // processes or n % processes:
        say(f"validating on {keep * processes} of {n} val images (a multiple of the device count)")
    return np.arange(pid, n, processes)[:keep]


__all__ = ["Topology", "agree_seed", "finish", "is_collective_failure", "leave_at_exit", "local_copy",
           "multihost_settings", "peer_failure", "setup_distribution", "shard_validation", "stdout_to_stderr",
           "without_distribution"]
