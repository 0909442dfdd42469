"""Acquisition shifts as in-graph tensor functions: what changes between hospitals' X-ray chains.

Each function takes a batch of grayscale images ``(N, H, W, 1)`` in 0..255 (float32) and a
per-image magnitude ``(N,)`` and returns images of the same shape, still in 0..255. They are
deterministic given their magnitudes (so tests can compare them with numpy); the training-only
:class:`~cxrtool.models.layers.Augment` layer draws the magnitudes at random. The presets
:data:`~cxrtool.models.robustness.ACQUISITION_LEVELS` bound each magnitude.

Importing this module imports Keras (through :mod:`cxrtool.backend`).
"""

from __future__ import annotations

import math

from ..backend import import_keras

keras = import_keras()
ops = keras.ops

JPEG_BLOCK = 8
JPEG_LEVELS = 32


def _per_image(values):
    return ops.reshape(ops.cast(values, "float32"), (-1, 1, 1, 1))


def apply_gamma(x, log_gamma):
    """``255 * (x / 255) ** exp(log_gamma)``: a different detector response curve."""
    unit = ops.clip(x / 255.0, 0.0, 1.0)
    return 255.0 * ops.power(unit + 1e-12, ops.exp(_per_image(log_gamma)))


def gaussian_kernel(sigma: float):
    """1-D normalised Gaussian taps (numpy-free, plain floats) with radius ceil(2 sigma)."""
    radius = max(1, int(math.ceil(2.0 * sigma)))
    taps = [math.exp(-0.5 * (i / sigma) ** 2) for i in range(-radius, radius + 1)]
    total = sum(taps)
    return [t / total for t in taps]


def gaussian_blur(x, sigma: float):
    """Separable Gaussian blur with reflected borders (so edges do not darken)."""
    taps = gaussian_kernel(sigma)
    radius = len(taps) // 2
    padded = ops.pad(x, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="reflect")
    kernel = ops.convert_to_tensor(taps, dtype="float32")
    rows = ops.depthwise_conv(padded, ops.reshape(kernel, (-1, 1, 1, 1)), padding="valid")
    return ops.depthwise_conv(rows, ops.reshape(kernel, (1, -1, 1, 1)), padding="valid")


def apply_blur(x, weight, sigma: float):
    """Blend each image with its Gaussian blur (sigma px) by ``weight`` in [0, 1]: a softer focal spot."""
    w = _per_image(weight)
    return x + w * (gaussian_blur(x, sigma) - x)


def block_means(x, block: int = JPEG_BLOCK):
    """Each ``block`` x ``block`` tile replaced by its mean (edge tiles padded by edge replication)."""
    height, width = x.shape[1], x.shape[2]
    ph, pw = -height % block, -width % block
    padded = ops.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge") if ph or pw else x
    h, w = height + ph, width + pw
    tiles = ops.reshape(padded, (-1, h // block, block, w // block, block, 1))
    means = ops.mean(tiles, axis=(2, 4), keepdims=True)
    full = ops.reshape(ops.broadcast_to(means, ops.shape(tiles)), (-1, h, w, 1))
    return full[:, :height, :width, :]


def apply_jpeg_like(x, weight, block: int = JPEG_BLOCK, levels: int = JPEG_LEVELS):
    """A cheap stand-in for JPEG re-encoding: posterise to ``levels`` grey levels, then blend
    in the ``block`` x ``block`` tile means by ``weight`` (blocking, lost fine detail).

    Not a DCT codec: it reproduces the two visible artefacts (8x8 blocks, fewer grey levels),
    not JPEG's ringing.
    """
    step = 255.0 / (levels - 1)
    poster = ops.round(x / step) * step
    w = _per_image(weight)
    return poster + w * (block_means(poster, block) - poster)


def apply_noise(x, std, noise):
    """Add ``std`` (per image, in 0..255 units) times the standard normal ``noise`` (quantum noise)."""
    return x + _per_image(std) * noise


def apply_border(x, top, bottom, left, right):
    """Black bands of the given fractions of the side on each edge (collimation, a different crop)."""
    height, width = x.shape[1], x.shape[2]
    rows = ops.reshape(ops.arange(height, dtype="float32"), (1, height, 1, 1))
    cols = ops.reshape(ops.arange(width, dtype="float32"), (1, 1, width, 1))
    keep = (
        (rows >= _per_image(top) * height)
        & (rows < height - _per_image(bottom) * height)
        & (cols >= _per_image(left) * width)
        & (cols < width - _per_image(right) * width)
    )
    return ops.where(keep, x, 0.0)


__all__ = [
    "apply_blur",
    "apply_border",
    "apply_gamma",
    "apply_jpeg_like",
    "apply_noise",
    "block_means",
    "gaussian_blur",
    "gaussian_kernel",
]
