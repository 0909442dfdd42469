"""Keras-on-JAX selection, in one place.

Keras reads ``KERAS_BACKEND`` once, at its first import, so cxrtool sets it before any
module imports Keras. Nothing here imports Keras or JAX at module import time: data
preparation and ``--help`` stay fast.
"""

from __future__ import annotations

import os
import sys

from .errors import BackendError

_warned = False


def select_jax_backend() -> None:
    """Make Keras use JAX; say once, clearly, if the user had asked for another backend."""
    global _warned
    requested = os.environ.get("KERAS_BACKEND")
    if "keras" in sys.modules:
        import keras

        actual = keras.backend.backend()
        if actual != "jax":
            raise BackendError(
                f"Keras was already imported with the {actual!r} backend; cxrtool needs JAX. "
                "Set KERAS_BACKEND=jax before importing keras."
            )
        return
    if requested and requested.lower() != "jax" and not _warned:
        _warned = True
        # one plain line, like every other cxrtool warning (not a Python warning with a source line)
        sys.stderr.write(f"warning: KERAS_BACKEND={requested} ignored: cxrtool runs Keras on the JAX backend only\n")
    os.environ["KERAS_BACKEND"] = "jax"
    # Keras prints nothing useful at import on JAX; keep TensorFlow-style log spam away if present.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def import_keras():
    """Return the ``keras`` module, guaranteed to run on JAX."""
    select_jax_backend()
    import keras

    if keras.backend.backend() != "jax":  # e.g. a keras.json we could not override
        raise BackendError(f"Keras runs on {keras.backend.backend()!r}; cxrtool needs JAX.")
    return keras


def runtime_info() -> dict[str, object]:
    """Versions, backend and the devices JAX sees (for ``cxrtool info`` and metrics files)."""
    import platform

    from .version import __version__

    keras = import_keras()
    import jax

    devices = [
        {"id": d.id, "platform": d.platform, "kind": getattr(d, "device_kind", d.platform)}
        for d in jax.devices()
    ]
    return {
        "cxrtool": __version__,
        "python": platform.python_version(),
        "keras": keras.__version__,
        "jax": jax.__version__,
        "jaxlib": getattr(__import__("jaxlib"), "__version__", "?"),
        "backend": keras.backend.backend(),
        "default_platform": jax.default_backend(),
        "devices": devices,
    }
