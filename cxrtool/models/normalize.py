"""Per-image intensity normalisation inside the model (``cxrtool train --normalize``).

Different hospitals' X-ray chains give the same anatomy different grey levels (exposure,
detector curve, post-processing). Normalising each image by its own statistics, inside the
model graph, removes part of that difference, and because it is a layer of the saved
``.keras`` model, ``predict``, ``evaluate`` and ``gradcam`` apply exactly what training did.

The :class:`Normalize` layer sits between ``augment`` and ``preprocess`` (so the augmented
intensities are normalised too) and maps 0..255 pixels back to 0..255, the range every
backbone's own scaling in :class:`~cxrtool.models.layers.Preprocess` expects. Modes:

- ``standardize``: zero mean, unit std per image, then ``127.5 + z * 127.5 / 3`` clipped to
  0..255 (+-3 std span the range).
- ``window``: clip to the image's own percentiles ``low``..``high`` (linear interpolation,
  as ``numpy.percentile``) and stretch that window to 0..255.
- ``equalize``: global histogram equalisation by rank: a pixel becomes
  ``255 * (c(v) - c(min)) / (N - c(min))`` where ``c(v)`` counts the image's pixels <= v
  (ties share a value; exact for float inputs, no binning). Not CLAHE: no tiles, no clip limit.

Importing this module imports Keras (through :mod:`cxrtool.backend`).
"""

from __future__ import annotations

from ..backend import import_keras
from .robustness import NORMALIZE_MODES, check_normalize

keras = import_keras()
ops = keras.ops

#: ``standardize`` maps this many standard deviations either side of the mean onto 0..127.5.
STANDARDIZE_SPAN = 3.0
#: the smallest std / window width divided by (a constant image stays finite: all mid-grey
#: for ``standardize``, all 0 for ``window``)
EPSILON = 1e-3


def standardize(x):
    """Per-image zero mean / unit std, mapped to 0..255 (see the module docstring)."""
    mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
    std = ops.sqrt(ops.mean(ops.square(x - mean), axis=(1, 2, 3), keepdims=True))
    z = (x - mean) / ops.maximum(std, EPSILON)
    return ops.clip(127.5 + z * (127.5 / STANDARDIZE_SPAN), 0.0, 255.0)


def window(x, low: float = 1.0, high: float = 99.0):
    """Clip to the per-image ``low``..``high`` percentiles and stretch to 0..255."""
    flat = ops.reshape(x, (ops.shape(x)[0], -1))
    q = ops.quantile(flat, ops.convert_to_tensor([low / 100.0, high / 100.0], dtype="float32"), axis=1)
    lo = ops.reshape(q[0], (-1, 1, 1, 1))
    hi = ops.reshape(q[1], (-1, 1, 1, 1))
    return ops.clip((x - lo) / ops.maximum(hi - lo, EPSILON), 0.0, 1.0) * 255.0


def _ranks(image):
    ordered = ops.sort(image)
    below = ops.cast(ops.searchsorted(ordered, image, side="right"), "float32")
    first = ops.cast(ops.searchsorted(ordered, ordered[:1], side="right"), "float32")
    total = float(image.shape[0])
    return 255.0 * (below - first) / ops.maximum(total - first, 1.0)


def equalize(x):
    """Global rank-based histogram equalisation per image, to 0..255."""
    shape = ops.shape(x)
    flat = ops.reshape(x, (shape[0], x.shape[1] * x.shape[2] * x.shape[3]))
    return ops.reshape(ops.vectorized_map(_ranks, flat), shape)


@keras.saving.register_keras_serializable(package="cxrtool")
class Normalize(keras.layers.Layer):
    """Per-image intensity normalisation, 0..255 in and out, the same in training and inference."""

    def __init__(self, mode: str = "none", low: float = 1.0, high: float = 99.0, **kwargs):
        kwargs.setdefault("dtype", "float32")
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        check_normalize(mode, low, high)
        self.mode = mode
        self.low = float(low)
        self.high = float(high)

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        if self.mode == "standardize":
            return standardize(x)
        if self.mode == "window":
            return window(x, self.low, self.high)
        if self.mode == "equalize":
            return equalize(x)
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(mode=self.mode, low=self.low, high=self.high)
        return config


__all__ = ["NORMALIZE_MODES", "Normalize", "equalize", "standardize", "window"]
