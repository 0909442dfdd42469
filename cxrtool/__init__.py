"""cxrtool: chest X-ray classification (COVID-19, pneumonia, normal) from dataset to Grad-CAM.

Importing the package is cheap: nothing here touches Keras or JAX. Modules that need them
import them lazily through :mod:`cxrtool.backend`; so does :func:`load_model`, the one
function offered at the top level.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .labels import CLASSES
from .version import __version__

if TYPE_CHECKING:
    from .artifact import load_model

__all__ = ["CLASSES", "__version__", "load_model"]


def __getattr__(name: str):
    """``cxrtool.load_model`` without importing Keras when the package is imported.

    ``cxrtool.load_model(path, *, compile=False) -> cxrtool.artifact.LoadedModel``: load a
    cxrtool ``.keras`` file with its custom layers registered, in Keras' safe mode. The
    result has ``.model`` (the ``keras.Model``: raw grayscale ``(N, S, S, 1)`` float32 pixels
    in 0..255 in, class probabilities out), ``.info`` (:class:`cxrtool.artifact.ModelInfo`:
    classes, image size S, training record) and ``.path``.
    """
    if name == "load_model":
        from .artifact import load_model

        globals()["load_model"] = load_model  # later look-ups skip this function
        return load_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
