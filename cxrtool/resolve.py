"""The one place that turns ``--model NAME`` into a ``.keras`` file path."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ModelNotFoundError

MODELS_ENV = "CXRTOOL_MODELS"
DEFAULT_MODELS_DIR = Path("models")
MODEL_SUFFIX = ".keras"


def models_dir(explicit: str | Path | None = None) -> Path:
    """The models folder: ``--models-dir``, else ``$CXRTOOL_MODELS``, else ``./models``."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(MODELS_ENV)
    return Path(env) if env else DEFAULT_MODELS_DIR


def looks_like_path(name: str) -> bool:
    """A NAME with a separator or the ``.keras`` suffix is a file path, not a bare name."""
    return name.endswith(MODEL_SUFFIX) or "/" in name or os.sep in name


def model_path_for(name: str, directory: str | Path | None = None) -> Path:
    """Where a model called NAME lives (whether or not it exists yet): used when saving."""
    if looks_like_path(name):
        return Path(name)
    return models_dir(directory) / f"{name}{MODEL_SUFFIX}"


def available_models(directory: str | Path | None = None) -> list[str]:
    """Bare names of the ``.keras`` files in the models folder, sorted."""
    folder = models_dir(directory)
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob(f"*{MODEL_SUFFIX}") if p.is_file())


def resolve_model(name: str, directory: str | Path | None = None) -> Path:
    """Resolve ``--model NAME`` to an existing ``.keras`` file, or say what exists instead."""
    if not name:
        raise ModelNotFoundError("empty model name")
    path = model_path_for(name, directory)
    if path.is_file():
        return path
    if looks_like_path(name):
        raise ModelNotFoundError(f"{path}: no such model file")
    folder = models_dir(directory)
    found = available_models(directory)
    hint = f"available: {', '.join(found)}" if found else "it has no .keras models"
    raise ModelNotFoundError(
        f"model {name!r} not found as {path} (models folder {folder}, from "
        f"{'--models-dir' if directory else MODELS_ENV if os.environ.get(MODELS_ENV) else 'the default ./models'}; {hint})"
    )
