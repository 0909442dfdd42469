"""Typed, user-facing errors.

Every failure a user can cause (a bad image, a missing model, a wrong folder) is a
:class:`CxrError`: the CLI prints its message as one line on stderr and exits 1
(:class:`UsageError`: exit 2). Anything else is a bug and gets a traceback with ``--debug``.
"""

from __future__ import annotations

from pathlib import Path


class CxrError(Exception):
    """A failure caused by the user's input or environment; the message is shown as-is."""

    exit_code = 1


class UsageError(CxrError):
    """The command line itself is wrong (conflicting or invalid options)."""

    exit_code = 2


class BackendError(CxrError):
    """Keras is not (or cannot be) running on the JAX backend."""


class ModelNotFoundError(CxrError):
    """``--model NAME`` resolved to no ``.keras`` file."""


class ModelFormatError(CxrError):
    """A ``.keras`` file is not a cxrtool model or does not fit the data."""


class DatasetError(CxrError):
    """A dataset folder, manifest or split is missing or inconsistent."""


class WriteError(CxrError):
    """Writing an output failed (disk full, read-only file system, permission denied).

    Names the destination the user chose (a dataset folder, a model file, a report), never a
    temporary name or a source file, and the cause in words."""

    def __init__(self, destination: str | Path, cause: str, detail: str = ""):
        self.destination = Path(destination)
        self.cause = cause
        self.detail = detail
        extra = f" (while writing {detail})" if detail else ""
        super().__init__(f"{destination}: cannot write: {cause}{extra}")


class ImageLoadError(CxrError):
    """An image could not be read; ``path`` and ``reason`` say which and why."""

    kind = "unreadable"

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class MissingFileError(ImageLoadError):
    kind = "missing"


class EmptyFileError(ImageLoadError):
    kind = "empty"


class NotAnImageError(ImageLoadError):
    kind = "not-an-image"


class CorruptImageError(ImageLoadError):
    kind = "corrupt"


class ImageTooLargeError(ImageLoadError):
    kind = "too-large"


class UnsupportedImageError(ImageLoadError):
    """A real image in a mode or format cxrtool cannot turn into grayscale safely."""

    kind = "unsupported"
