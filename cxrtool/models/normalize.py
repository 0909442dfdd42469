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
  (ties share a value; exact for float inputs, no binning).
- ``clahe``: contrast-limited adaptive histogram equalisation as OpenCV does it: the image
  (padded by reflection to a multiple of ``tiles``) is cut into ``tiles`` x ``tiles`` tiles; each
  tile's 256-bin histogram (pixels floored to integer grey levels) is clipped at
  ``max(int(clip * tile_pixels / 256), 1)`` and the excess spread evenly over all bins (one
  pass, in floats); each tile's cumulative histogram times ``255 / tile_pixels`` is its grey
  mapping, and a pixel blends the mappings of the four nearest tile centres bilinearly.

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


def _tile_axis(length: int, tiles: int):
    """Per pixel along one axis: the two nearest tile centres and the weight of the second."""
    step = (length + (-length % tiles)) / tiles
    pos = ops.arange(length, dtype="float32") / step - 0.5
    first = ops.floor(pos)
    weight = pos - first
    low = ops.cast(ops.clip(first, 0, tiles - 1), "int32")
    high = ops.cast(ops.clip(first + 1, 0, tiles - 1), "int32")
    return low, high, weight


def clahe(x, tiles: int = 8, clip: float = 2.0):
    """Contrast-limited adaptive histogram equalisation per image, to 0..255 (see the module docstring)."""
    height, width = x.shape[1], x.shape[2]
    ph, pw = -height % tiles, -width % tiles
    levels = ops.cast(ops.clip(ops.floor(x), 0, 255), "int32")
    padded = ops.pad(levels, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="reflect") if ph or pw else levels
    th, tw = (height + ph) // tiles, (width + pw) // tiles
    area = th * tw
    # which tile each padded pixel is in, times 256, plus its grey level: one histogram bin id
    rows = ops.reshape(ops.arange(height + ph) // th, (-1, 1))
    cols = ops.reshape(ops.arange(width + pw) // tw, (1, -1))
    tile_of = ops.reshape((rows * tiles + cols) * 256, (-1,))
    bins = ops.reshape(padded, (ops.shape(x)[0], -1)) + tile_of
    count = tiles * tiles * 256

    def histogram(ids):
        return ops.segment_sum(ops.ones_like(ids, dtype="float32"), ids, num_segments=count)

    hist = ops.reshape(ops.vectorized_map(histogram, bins), (-1, tiles * tiles, 256))
    limit = float(max(int(clip * area / 256), 1))
    excess = ops.sum(ops.maximum(hist - limit, 0.0), axis=-1, keepdims=True)
    hist = ops.minimum(hist, limit) + excess / 256.0
    lut = ops.reshape(ops.cumsum(hist, axis=-1) * (255.0 / area), (-1, count))

    y0, y1, wy = _tile_axis(height, tiles)
    x0, x1, wx = _tile_axis(width, tiles)
    grey = ops.reshape(levels, (-1, height * width))

    def mapped(ty, tx):
        tile = ops.reshape(ty, (-1, 1)) * tiles + ops.reshape(tx, (1, -1))
        index = ops.reshape(tile * 256, (1, -1)) + grey
        return ops.take_along_axis(lut, index, axis=1)

    wy = ops.reshape(ops.repeat(wy, width), (1, -1))
    wx = ops.reshape(ops.tile(wx, [height]), (1, -1))
    top = (1 - wx) * mapped(y0, x0) + wx * mapped(y0, x1)
    bottom = (1 - wx) * mapped(y1, x0) + wx * mapped(y1, x1)
    return ops.reshape((1 - wy) * top + wy * bottom, ops.shape(x))


@keras.saving.register_keras_serializable(package="cxrtool")
class Normalize(keras.layers.Layer):
    """Per-image intensity normalisation, 0..255 in and out, the same in training and inference."""

    def __init__(self, mode: str = "none", low: float = 1.0, high: float = 99.0, tiles: int = 8, clip: float = 2.0,
                 **kwargs):
        kwargs.setdefault("dtype", "float32")
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        check_normalize(mode, low, high)
        self.mode = mode
        self.low = float(low)
        self.high = float(high)
        self.tiles = int(tiles)  # clahe: tiles per side
        self.clip = float(clip)  # clahe: clip limit, in multiples of the mean bin count

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        if self.mode == "standardize":
            return standardize(x)
        if self.mode == "window":
            return window(x, self.low, self.high)
        if self.mode == "equalize":
            return equalize(x)
        if self.mode == "clahe":
            return clahe(x, self.tiles, self.clip)
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(mode=self.mode, low=self.low, high=self.high, tiles=self.tiles, clip=self.clip)
        return config


__all__ = ["NORMALIZE_MODES", "Normalize", "clahe", "equalize", "standardize", "window"]
