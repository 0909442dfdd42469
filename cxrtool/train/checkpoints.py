"""The files of one training run, and the resumable run folder.

For a model saved as ``MODELS/NAME.keras``:

* ``MODELS/NAME.keras``       the model (best validation epoch), written at the end
* ``MODELS/NAME.log.csv``     per-epoch metrics, written at the end
* ``MODELS/NAME.curves.png``  loss/accuracy curves, written at the end
* ``MODELS/NAME.run/``        the resumable run while training: ``last.keras`` (with the
  optimizer state), ``state.json`` (epoch, history, best, counters, seed), ``best.weights.h5``
  and ``log.csv``; removed after a successful run unless ``--keep-checkpoints``.

``last.keras`` is written before ``state.json``, both atomically, so the pair is consistent.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..artifact import ModelInfo, save_model
from ..atomic import write_text
from ..errors import CxrError, UsageError
from ..resolve import model_path_for


@dataclass(frozen=True)
class RunFiles:
    """Where a run writes: the final model, its side files and the run folder."""

    model: Path

    @property
    def log_csv(self) -> Path:
        return self.model.with_name(self.model.stem + ".log.csv")

    @property
    def curves_png(self) -> Path:
        return self.model.with_name(self.model.stem + ".curves.png")

    @property
    def run_dir(self) -> Path:
        return self.model.with_name(self.model.stem + ".run")

    @property
    def state(self) -> Path:
        return self.run_dir / "state.json"

    @property
    def last(self) -> Path:
        return self.run_dir / "last.keras"

    @property
    def best_weights(self) -> Path:
        return self.run_dir / "best.weights.h5"

    @property
    def run_log(self) -> Path:
        return self.run_dir / "log.csv"


def run_files(model_name: str, models_dir: str | Path | None, out: str | Path | None) -> RunFiles:
    """The run's files: ``--out``, else ``MODELS_DIR/NAME.keras``."""
    path = Path(out) if out else model_path_for(model_name, models_dir)
    if path.suffix != ".keras":
        raise UsageError(f"--out {path}: the model file must end in .keras")
    return RunFiles(path)


def previous_state(files: RunFiles, *, resume: bool, fresh: bool) -> dict | None:
    """The unfinished run's state when resuming; a clear error if there is none, or if one
    exists and the user said neither ``--resume`` nor ``--fresh``."""
    exists = files.state.is_file()
    if resume and not exists:
        raise CxrError(f"--resume: no unfinished run to resume at {files.run_dir} (expected {files.state.name})")
    if not resume and exists and not fresh:
        prev = read_state(files.state)
        raise UsageError(
            f"{files.run_dir} holds an unfinished run (epoch {prev.get('epoch', '?')}/"
            f"{prev.get('options', {}).get('epochs', '?')}); pass --resume to continue it or --fresh to discard it"
        )
    return read_state(files.state) if resume else None


def check_resumable(state: dict, files: RunFiles, architecture: str, fingerprint: str) -> None:
    """The run being resumed must be of the same architecture and dataset manifest."""
    if state.get("architecture") != architecture:
        raise CxrError(f"--resume: {files.run_dir} is a {state.get('architecture')} run, not {architecture}")
    if state.get("dataset_fingerprint") != fingerprint:
        raise CxrError(f"--resume: the dataset's manifest changed since {files.run_dir} was started; use --fresh")


def new_state(*, architecture: str, size: int, batch: int, seed: int, dataset: str, fingerprint: str,
              options: dict, monitor: str) -> dict:
    """The run state of a fresh run (what ``state.json`` holds)."""
    return {
        "architecture": architecture, "image_size": size, "batch_size": batch, "seed": seed,
        "dataset": dataset, "dataset_fingerprint": fingerprint, "options": options,
        "epoch": 0, "phase": None, "history": [],
        "best": -math.inf if monitor == "val_accuracy" else math.inf,
        "best_epoch": 0, "wait": 0, "plateau_wait": 0, "stopped_early": False, "events": [],
    }


def read_state(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CxrError(f"{path}: unreadable run state ({exc}); use --fresh to start over") from None


def write_state(path: Path, state: dict) -> None:
    write_text(path, json.dumps(state, indent=1, default=float))


def resume_advice(files: RunFiles, argv: Sequence[str]) -> str:
    """After an interrupt: what is kept and the exact command that continues (ARGV: the
    ``cxrtool`` arguments the run was started with)."""
    args = [a for a in argv if a != "--fresh"]
    if files.state.is_file():
        try:
            state = read_state(files.state)
        except CxrError:
            state = {}
        epochs = state.get("options", {}).get("epochs", "?")
        if "--resume" not in args:
            args.append("--resume")
        return (f"the last checkpoint (epoch {state.get('epoch', '?')} of {epochs}) is kept in {files.run_dir}; "
                f"continue with: {shlex.join(['cxrtool', *args])}")
    return f"no checkpoint was written yet; start again with: {shlex.join(['cxrtool', *args])}"


SEED_STATE = "seed_generator_state"


def seed_states(model) -> dict[str, list]:
    """The random-number positions of the layers that draw numbers (augmentation, dropout).

    Keras does not save them in a ``.keras`` file: a loaded model starts them over, so a
    resumed run would draw different augmentations than an uninterrupted one. The checkpoint
    keeps them in ``state.json`` instead.
    """
    import numpy as np

    out = {}
    for layer in model.layers:
        values = [np.asarray(v.value).tolist() for v in layer.variables if v.path.endswith(SEED_STATE)]
        if values:
            out[layer.name] = values
    return out


def restore_seed_states(model, states: dict[str, list] | None) -> None:
    """Put the positions saved by :func:`seed_states` back (a resumed run continues the draws)."""
    for name, values in (states or {}).items():
        variables = [v for v in model.get_layer(name).variables if v.path.endswith(SEED_STATE)]
        for variable, value in zip(variables, values, strict=True):
            variable.assign(value)


def save_checkpoint(model, state: dict, files: RunFiles, info: ModelInfo) -> None:
    """``last.keras`` (with optimizer state), then ``state.json``: always a consistent pair."""
    save_model(model, files.last, info, include_optimizer=True)
    state["seed_states"] = seed_states(model)
    write_state(files.state, state)


__all__ = [
    "RunFiles",
    "check_resumable",
    "new_state",
    "previous_state",
    "read_state",
    "restore_seed_states",
    "resume_advice",
    "seed_states",
    "run_files",
    "save_checkpoint",
    "write_state",
]
