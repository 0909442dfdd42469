"""The one cxrtool model artifact format: a self-contained Keras ``.keras`` file.

The model takes raw grayscale pixels ``(None, S, S, 1)`` in 0..255 and does its own
resizing/scaling. Its metadata (:class:`ModelInfo`) is a JSON string in the config of the
registered identity layer ``cxrtool_info`` at the model's output, so it lives in the zip's
``config.json``, survives safe-mode loading and re-saving by Keras, and :func:`read_info`
can read it without importing Keras.

Importing this module is cheap; :func:`save_model` and :func:`load_model` import Keras.
"""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .labels import CLASSES
from .version import __version__
from .atomic import atomic_path, write_bytes
from .errors import ModelFormatError, ModelNotFoundError
from .models.names import INFO_LAYER, LOGITS_LAYER

FORMAT = "cxrtool-model"
FORMAT_VERSION = 1
INFO_CLASS = "ModelInfoLayer"


@dataclass
class ModelInfo:
    """Everything a consumer of a saved model needs to know about it."""

    architecture: str
    classes: list[str] = field(default_factory=lambda: list(CLASSES))
    image_size: int = 100
    #: how raw pixels become model input; the model does all of it itself, this is documentation
    #: plus what a caller must match when it resizes images *before* the model (``resize``).
    preprocessing: dict[str, Any] = field(default_factory=dict)
    gradcam_layer: str = ""
    logits_layer: str = LOGITS_LAYER
    #: training options and outcome (epochs run, best epoch, best val metrics, ...)
    training: dict[str, Any] = field(default_factory=dict)
    dataset_fingerprint: str | None = None
    dataset: str | None = None
    cxrtool_version: str = __version__
    keras_version: str | None = None
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    #: free-form; the ensemble uses it for members and weights
    extra: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelInfo:
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        if "architecture" not in kwargs:
            raise ValueError("no architecture")
        info = cls(**kwargs)
        unknown = {k: v for k, v in data.items() if k not in known}
        if unknown:  # newer writer: keep what we do not understand instead of dropping it
            info.extra = {**info.extra, "_unknown": unknown}
        return info


@dataclass
class LoadedModel:
    """A loaded cxrtool model: the ``keras.Model`` and its metadata, side by side."""

    model: Any  # keras.Model
    info: ModelInfo
    path: Path | None = None


def set_info(model, info: ModelInfo) -> None:
    """Write ``info`` into the model's ``cxrtool_info`` layer (before saving)."""
    try:
        layer = model.get_layer(INFO_LAYER)
    except ValueError:
        raise ModelFormatError(f"model {model.name!r} has no {INFO_LAYER} layer: not built by cxrtool") from None
    layer.info = info.to_json()


def get_info(model) -> ModelInfo:
    try:
        layer = model.get_layer(INFO_LAYER)
    except ValueError:
        raise ModelFormatError(f"model {model.name!r} has no {INFO_LAYER} layer: not a cxrtool model") from None
    return ModelInfo.from_dict(json.loads(layer.info))


def save_model(model, path: str | Path, metadata: ModelInfo, *, include_optimizer: bool = False) -> Path:
    """Save MODEL with METADATA as a ``.keras`` file, atomically; returns the path.

    A crash or error leaves either the old file or the new one, never half a file.
    ``include_optimizer`` keeps the optimizer state (used for resumable checkpoints).
    """
    from .backend import import_keras

    keras = import_keras()
    path = Path(path)
    if path.suffix != ".keras":
        raise ModelFormatError(f"{path}: a cxrtool model file must end in .keras")
    if metadata.keras_version is None:
        metadata.keras_version = keras.__version__
    set_info(model, metadata)
    optimizer = None
    if not include_optimizer and getattr(model, "optimizer", None) is not None:
        # Keras always writes the optimizer of a compiled model; the final artifact does not need it.
        optimizer, compiled = model.optimizer, model.compiled
        model.optimizer = None
        model.compiled = False
    try:
        with atomic_path(path, suffix=".keras") as tmp:  # Keras picks the format by the suffix
            model.save(tmp)
    finally:
        if optimizer is not None:
            model.optimizer = optimizer
            model.compiled = compiled
    return path


class _WeightsBuffer(io.BytesIO):
    """An in-memory file Keras accepts as a weights path (it only checks the name's ending)."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def __str__(self) -> str:
        return self.name


def save_weights(model, path: str | Path) -> Path:
    """``model.save_weights(path)``, atomically, and safe on a full or read-only disk.

    The HDF5 file is built in memory and then written with :func:`cxrtool.atomic.write_bytes`:
    h5py writing straight to a full disk leaves a broken open file behind that HDF5 retries
    (and can crash on) at exit; this way a failed write is one :class:`WriteError`.
    """
    path = Path(path)
    buffer = _WeightsBuffer(path.name)
    try:
        model.save_weights(buffer)
    except (TypeError, ValueError):  # a Keras that wants a real path: write a temporary file
        with atomic_path(path, suffix=".weights.h5") as tmp:
            model.save_weights(tmp)
        return path
    return write_bytes(path, buffer.getvalue())


#: Limits on what a ``.keras`` zip may declare before anything is extracted (a zip bomb: a
#: small file that expands to gigabytes). The largest model cxrtool makes, a ResNet152 at
#: 224 px, expands to about 240 MB; an ensemble of several stays well under the total.
MAX_EXPANDED_BYTES = 4 * 1024**3
MAX_MEMBERS = 10_000
MAX_CONFIG_BYTES = 64 * 1024**2
#: Weights barely compress (float32): a member expanding more than this many times over its
#: compressed size, and to more than MIN_BOMB_BYTES, is refused too.
MAX_RATIO = 200
MIN_BOMB_BYTES = 64 * 1024**2


def check_archive(path: Path, zf: zipfile.ZipFile) -> None:
    """Refuse an archive whose *declared* sizes are hostile, before extracting anything.

    Python's zipfile (which Keras uses) never returns more than a member's declared size, so
    checking the declarations bounds what loading can expand to."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise ModelFormatError(f"{path}: refused: the archive has {len(infos)} members (a model has a handful)")
    total = sum(i.file_size for i in infos)
    if total > MAX_EXPANDED_BYTES:
        raise ModelFormatError(
            f"{path}: refused: the archive expands to {total / 1024**3:.1f} GiB "
            f"(limit {MAX_EXPANDED_BYTES / 1024**3:.0f} GiB; a zip bomb or not a cxrtool model)"
        )
    for i in infos:
        if i.file_size > MIN_BOMB_BYTES and i.file_size > MAX_RATIO * max(i.compress_size, 1):
            raise ModelFormatError(
                f"{path}: refused: {i.filename} expands {i.file_size // max(i.compress_size, 1)}-fold to "
                f"{i.file_size / 1024**2:.0f} MiB (a zip bomb; model weights do not compress like that)"
            )
        if i.filename == "config.json" and i.file_size > MAX_CONFIG_BYTES:
            raise ModelFormatError(f"{path}: refused: config.json declares {i.file_size / 1024**2:.0f} MiB")


def _read_config(path: Path) -> dict:
    if not path.exists():
        raise ModelNotFoundError(f"{path}: no such model file")
    if not zipfile.is_zipfile(path):
        raise ModelFormatError(f"{path}: not a .keras model file (not a zip archive)")
    try:
        with zipfile.ZipFile(path) as zf:
            check_archive(path, zf)
            return json.loads(zf.read("config.json"))
    except (KeyError, json.JSONDecodeError, zipfile.BadZipFile, OSError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{path}: not a .keras model file ({exc})") from None


def _find_info(config: Any) -> str | None:
    if isinstance(config, dict):
        if config.get("class_name") == INFO_CLASS or str(config.get("registered_name", "")).endswith(
            f">{INFO_CLASS}"
        ):
            inner = config.get("config") or {}
            if "info" in inner:
                return inner["info"]
        for value in config.values():
            found = _find_info(value)
            if found is not None:
                return found
    elif isinstance(config, list):
        for value in config:
            found = _find_info(value)
            if found is not None:
                return found
    return None


def read_info(path: str | Path) -> ModelInfo:
    """The metadata of a saved model, without importing Keras or building the model."""
    path = Path(path)
    raw = _find_info(_read_config(path))
    if raw is None:
        raise ModelFormatError(f"{path}: a Keras model but not a cxrtool model (no {INFO_LAYER} metadata)")
    try:
        info = ModelInfo.from_dict(json.loads(raw))
    except (ValueError, TypeError) as exc:
        raise ModelFormatError(f"{path}: unreadable cxrtool metadata ({exc})") from None
    if info.format != FORMAT:
        raise ModelFormatError(f"{path}: unknown model format {info.format!r}")
    if info.format_version > FORMAT_VERSION:
        raise ModelFormatError(
            f"{path}: model format version {info.format_version} is newer than this cxrtool "
            f"({__version__}, format {FORMAT_VERSION}); upgrade cxrtool"
        )
    check_classes(path, info)
    return info


def check_classes(path: Path, info: ModelInfo) -> None:
    """The metadata may name only cxrtool's classes, each once; an ensemble's members must
    predict exactly the ensemble's classes in the same order (their outputs are added)."""
    classes = info.classes
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise ModelFormatError(f"{path}: the metadata's classes are not a list of names ({classes!r})")
    unknown = [c for c in classes if c not in CLASSES]
    if unknown:
        raise ModelFormatError(
            f"{path}: the metadata names class{'es' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"a cxrtool model predicts {', '.join(CLASSES)}"
        )
    if len(set(classes)) != len(classes):
        raise ModelFormatError(f"{path}: the metadata names a class twice ({', '.join(classes)})")
    if info.architecture == "ensemble":
        for k, member in enumerate(info.extra.get("members") or []):
            member_classes = member.get("classes") if isinstance(member, dict) else None
            if member_classes is not None and list(member_classes) != list(classes):
                name = member.get("name", f"member {k}")
                raise ModelFormatError(
                    f"{path}: ensemble member {name} predicts {', '.join(map(str, member_classes))} but the "
                    f"ensemble predicts {', '.join(classes)}: the members disagree on the classes"
                )


def load_model(path: str | Path, *, compile: bool = False) -> LoadedModel:
    """Load a cxrtool ``.keras`` model in Keras' safe mode; returns ``LoadedModel(model, info, path)``.

    Registers cxrtool's custom layers first (plain ``keras.saving.load_model`` cannot find
    them otherwise). A file that is missing or not a cxrtool model is a clear
    :class:`ModelNotFoundError` / :class:`ModelFormatError`, raised before Keras is imported.
    """
    path = Path(path)
    info = read_info(path)  # fails fast, before Keras, on files that are not cxrtool models
    from .backend import import_keras

    keras = import_keras()
    from .models import layers as _layers  # noqa: F401  (registers the custom layers)

    try:
        model = keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as exc:
        text = " ".join(str(exc).split())
        raise ModelFormatError(f"{path}: cannot load the model ({type(exc).__name__}: {text[:300]})") from None
    return LoadedModel(model=model, info=info, path=path)


__all__ = [
    "INFO_LAYER",
    "LoadedModel",
    "ModelInfo",
    "get_info",
    "load_model",
    "read_info",
    "save_model",
    "save_weights",
    "set_info",
    "check_archive",
    "check_classes",
]
