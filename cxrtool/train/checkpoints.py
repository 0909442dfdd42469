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


def save_checkpoint(model, state: dict, files: RunFiles, info: ModelInfo) -> None:
    """``last.keras`` (with optimizer state), then ``state.json``: always a consistent pair."""
    save_model(model, files.last, info, include_optimizer=True)
    write_state(files.state, state)


__all__ = [
    "RunFiles",
    "check_resumable",
    "new_state",
    "previous_state",
    "read_state",
    "run_files",
    "save_checkpoint",
    "write_state",
]
