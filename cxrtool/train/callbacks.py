"""What happens at the end of every epoch: best-epoch tracking, early stopping, LR on plateau,
the run log and checkpoints, and progress events.

The decisions are plain Python on the run state (:func:`track_epoch`, testable without
Keras); :func:`make_monitor` wraps them in the Keras callback that applies them.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..artifact import save_weights
from ..progress import ProgressFn, report
from .curves import write_log_csv
from .distribute import without_distribution
from .options import TrainOptions


@dataclass
class EpochDecision:
    improved: bool  # a new best epoch (its weights are to be kept)
    new_lr: float | None  # lower the learning rate to this (plateau), or None
    stop: bool  # stop early


def track_epoch(state: dict, options: TrainOptions, epoch: int, value: float, lr: float) -> EpochDecision:
    """Update STATE's best/wait counters for EPOCH (1-based) whose monitored metric is VALUE.

    Records LR reductions and early stops in ``state["events"]``.
    """
    if options.monitor == "val_loss":
        better = value < state["best"]
    else:
        better = value > state["best"]
    improved = state["best_epoch"] == 0 or better
    if improved:
        state["best"], state["best_epoch"], state["wait"] = value, epoch, 0
    else:
        state["wait"] += 1
        state["plateau_wait"] += 1
    if better:
        state["plateau_wait"] = 0
    new_lr = None
    if options.reduce_lr_patience and state["plateau_wait"] >= options.reduce_lr_patience:
        lowered = max(lr * options.reduce_lr_factor, options.min_lr)
        if lowered < lr:
            new_lr = lowered
            state["events"].append(f"epoch {epoch}: learning rate {lr:.3g} -> {lowered:.3g}")
        state["plateau_wait"] = 0
    stop = bool(options.patience and state["wait"] >= options.patience)
    if stop:
        state["stopped_early"] = True
        state["events"].append(
            f"epoch {epoch}: early stop ({options.monitor} did not improve for {options.patience} epochs)"
        )
    state["epoch"] = epoch
    return EpochDecision(improved, new_lr, stop)


def make_monitor(
    keras,
    *,
    state: dict,
    files,  # checkpoints.RunFiles
    options: TrainOptions,
    progress: ProgressFn | None,
    steps: int,
    batch: int,
    is_chief: bool,
    save_checkpoint: Callable[[Any, dict], None],
    keep_best: bool = False,
):
    """The Keras callback of a training run (one instance; ``keras`` passed in: no import here).

    ``keep_best``: also keep the best epoch's weights in memory (``monitor.best_weights``, a list
    of arrays, else None): in a multi-process run every process restores them from there, since
    only process 0 writes ``best.weights.h5``, possibly on a disk the others cannot read.

    Progress events: ``batch`` (done = step of the epoch, 0 when it begins; total = steps;
    ``epoch``, ``epochs``) and ``epoch`` (done = epoch, total = epochs; ``logs``, ``best_epoch``).
    """

    class Monitor(keras.callbacks.Callback):
        async_safe = True  # on_train_batch_end only counts; it never reads tensors
        best_weights = None

        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.perf_counter()
            self._epoch = epoch + 1
            self._lock = threading.Lock()
            self._done = 0
            report(progress, "batch", 0, steps, epoch=self._epoch, epochs=options.epochs)

        def on_train_batch_end(self, batch_index, logs=None):
            # Keras dispatches async-safe batch callbacks from a thread pool, so step 2 can arrive
            # before step 1. Steps run in order, so step N done means every step before it is:
            # report the steps not yet reported, in order, and ignore a late one.
            with self._lock:
                for done in range(self._done + 1, batch_index + 2):
                    report(progress, "batch", done, steps, epoch=self._epoch, epochs=options.epochs)
                self._done = max(self._done, batch_index + 1)

        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            seconds = time.perf_counter() - self._t0
            row = {"epoch": epoch + 1, **logs, "lr": lr, "seconds": round(seconds, 3),
                   "images_per_s": round(steps * batch / seconds, 2) if seconds > 0 else 0.0}
            state["history"].append(row)
            decision = track_epoch(state, options, epoch + 1, logs.get(options.monitor, math.nan), lr)
            if decision.improved and keep_best:
                self.best_weights = self.model.get_weights()  # replicated: a full copy on each process
            if decision.improved and is_chief:
                with without_distribution(keras):  # process 0 alone: no collective in the save
                    save_weights(self.model, files.best_weights)  # atomic, one clean error on a full disk
            if decision.new_lr is not None:
                self.model.optimizer.learning_rate = decision.new_lr
            if decision.stop:
                self.model.stop_training = True
            if is_chief:
                write_log_csv(files.run_log, state["history"])
                finished = epoch + 1 >= options.epochs or self.model.stop_training
                # a finished run is saved as the final model right away; its resumable checkpoint
                # would be deleted a moment later, so skip that (large) write unless asked to keep it
                due = (epoch + 1) % max(1, options.checkpoint_every) == 0
                if (due and not finished) or (finished and options.keep_checkpoints):
                    with without_distribution(keras):
                        save_checkpoint(self.model, state)
            report(progress, "epoch", epoch + 1, options.epochs, logs=row, best_epoch=state["best_epoch"])

    return Monitor()


__all__ = ["EpochDecision", "make_monitor", "track_epoch"]
