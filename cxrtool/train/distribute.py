"""Where training runs: one device, data parallel over local devices, or several hosts.

Multi-host initialisation must come before anything touches JAX's devices, so
:func:`setup_distribution` is the first Keras/JAX step of a run. JAX is imported inside.

stdout is for results only, but the collectives library prints its chatter (``[Gloo] Rank 0
is connected to 1 peer ranks ...``) from C++ straight to file descriptor 1, where Python's
``sys.stdout`` cannot catch it: :func:`stdout_to_stderr` points descriptor 1 at stderr while
the distributed runtime starts, then puts it back.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DatasetError, UsageError
from .options import TrainOptions


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


def multihost_settings(o: TrainOptions) -> tuple[str | None, int, int]:
    """(coordinator address, process count, process id) from the options, else the Keras env vars."""
    env = os.environ
    address = o.coordinator or env.get("KERAS_DISTRIBUTION_JOB_ADDRESSES")
    count = o.num_processes or int(env.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "1") or 1)
    pid = o.process_id if o.process_id is not None else int(env.get("KERAS_DISTRIBUTION_PROCESS_ID", "0") or 0)
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


def setup_distribution(keras, o: TrainOptions, batch_size: int) -> Topology:
    """Initialise multi-host JAX if asked and pick the devices (``--devices``); does not set it globally.

    The distributed runtime and the device list (which connects the collectives) are started
    with stdout pointed at stderr, so their chatter never mixes with the results."""
    address, processes, pid = multihost_settings(o)
    import jax

    if processes > 1:
        with stdout_to_stderr():
            keras.distribution.initialize(job_addresses=address, num_processes=processes, process_id=pid)
            available = jax.devices()
    else:
        available = jax.devices()
    if o.devices in (None, "all"):
        wanted = len(available)
    else:
        try:
            wanted = int(o.devices)
        except ValueError:
            raise UsageError(f"--devices {o.devices!r}: expected 'all' or a number") from None
        if not 1 <= wanted <= len(available):
            raise UsageError(f"--devices {wanted}: this machine has {len(available)} device(s) ({jax.default_backend()})")
    if wanted <= 1 and processes == 1:
        return Topology(None, 1, 1, 0)
    if batch_size % wanted:
        raise UsageError(f"--batch-size {batch_size} is not divisible by the {wanted} devices used for data parallelism")
    # each process' feeder already serves its own shard (make_feeder's ``shard``): Keras must not
    # shard again (it can only shard a tf.data.Dataset, and refuses anything else across processes)
    parallel = keras.distribution.DataParallel(devices=available[:wanted], auto_shard_dataset=False)
    return Topology(parallel, wanted, processes, pid)


def shard_validation(
    x: np.ndarray, y: np.ndarray, topo: Topology, say: Callable[[str], None]
) -> tuple[np.ndarray, np.ndarray]:
    """This process' share of the val split, trimmed so every batch splits evenly over its devices."""
    if not topo.parallel:
        return x, y
    n, processes, pid = len(y), topo.processes, topo.process_id
    local = max(1, topo.devices // processes)
    x, y = x[pid::processes], y[pid::processes]
    keep = (n // processes) // local * local
    if keep < 1:
        raise DatasetError(f"the val split has {n} images: too few for {topo.devices} devices")
    if keep < n // processes or n % processes:
        say(f"validating on {keep * processes} of {n} val images (a multiple of the device count)")
    return x[:keep], y[:keep]


__all__ = ["Topology", "multihost_settings", "setup_distribution", "shard_validation", "stdout_to_stderr"]
