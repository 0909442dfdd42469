"""Lung-field crop inside the model (``cxrtool train --crop lungs``), with no downloaded weights.

Why: a model that sees the whole radiograph can learn the hospital instead of the disease from
what lies outside the lungs: burnt-in text and laterality markers in the corners, the black
margin, the collimation edges, the patient's shoulders and tubes (docs/generalisation.md). Cutting
the image down to the lung fields before the network sees it removes most of that.

How (classical image processing in ``keras.ops``: batch-vectorised, static shapes, traceable by
JAX, the same in training and inference because it is a layer of the saved ``.keras`` model):

1. each image is resized to a ``WORK`` x ``WORK`` grid, stretched between its own 1st and 99th
   percentiles (of 4 x 4 block means) and smoothed (a 3 x 3 mean);
2. the *body* is what is brighter than the air around it: a two-level Otsu threshold (the
   image's own Otsu threshold splits bone and abdomen from lungs and air; Otsu again on the
   dark side splits the air off);
3. a pixel is *inside* the body when at least ``ENCLOSE`` of its row is body on its left and on
   its right, and as much of its column above and below: air beside the chest, above the
   shoulders and between arm and head is not inside, the lungs are;
4. *dark* pixels are dark for their surroundings: a black top-hat (grey closing minus the
   image) over a ``CLOSING`` window wider than one lung, thresholded by Otsu over the pixels
   inside the body; lungs = dark and inside, then a binary opening (``OPENING``) drops thin
   structures (gaps between ribs, stripes along edges);
5. the box spans the central ``MASS`` share of the lung pixels along each axis (robust to
   stray pixels); one that is implausible (a flat or noisy image, lung pixels under
   ``MIN_LUNG`` or over ``MAX_LUNG`` of the image, a span under ``MIN_SIDE``, a centre off the
   middle by more than ``MAX_OFFSET``) falls back to the whole image, so a failed
   segmentation can never destroy an image; a plausible one grows by ``MARGIN`` (most at the
   bottom, where the costophrenic recesses are bright) and to at least ``LEAST``;
6. the box is cut out of the *input* image (full resolution) and resized back to the input
   size with bilinear sampling (``keras.ops.image.map_coordinates``, one box per image).

Where it sits: first, right after the ``image`` input and *before* ``augment`` and
``normalize``. Before augment, because the box must be found on the image as it was taken (an
augmented shift, rotation or black border band would move or break the body outline the
segmentation relies on, and training would then see different crops than inference); the
augmentation then acts on the lung crop, exactly what the network learns from. Before
normalize, so the per-image intensity statistics are those of the lung region, not of the
black margin and the text around it. Because the crop is deterministic and first,
:func:`lung_box` on the model's input gives exactly the box the model used, which is how
Grad-CAM maps its heat back onto the original image (:mod:`cxrtool.gradcam.explain`).

Importing this module imports Keras (through :mod:`cxrtool.backend`).
"""

from __future__ import annotations

from ..backend import import_keras
from .robustness import CROP_MODES, check_crop

keras = import_keras()
ops = keras.ops

#: side (px) of the grid the segmentation runs on, whatever the model's input size
WORK = 64
#: grey levels of the Otsu histogram
LEVELS = 64
#: a dark pixel is inside the body when at least this share of its row is body on its left and
#: on its right, and as much of its column above and below it
ENCLOSE = 0.05
#: window (px on the WORK grid) of the binary opening of the lung mask
OPENING = 5
#: window (px on the WORK grid) of the grey closing: wider than one lung
CLOSING = 25
#: the box spans the lung mass between these quantiles along each axis
MASS = (0.01, 0.99)
#: the box grows by these shares of its own side: (top, sides, bottom); the bottom most,
#: since the costophrenic recesses behind the diaphragm dome are brighter than the lungs above
MARGIN = (0.05, 0.18, 0.30)
#: a box shorter (narrower) than this share of the image height (width) grows to it (sideways
#: about its centre, downwards three times as much as upwards): the lung fields of a chest film
#: span at least that much, and the segmentation misses consolidated (white) lung, the bright
#: lung periphery and the bases far more often than it adds
LEAST = (0.65, 0.65)
#: an image whose 1st-99th percentile range is under MIN_SPREAD grey levels (flat), or whose
#: roughness is over MAX_ROUGH (noise; measured: real radiographs <= 0.12, phantoms <= 0.17,
#: uniform or Gaussian noise >= 0.32) is not segmented: the box is the whole image
MIN_SPREAD = 8.0
MAX_ROUGH = 0.25
#: plausibility bounds (shares of the image); outside them the box is the whole image
MIN_LUNG, MAX_LUNG = 0.03, 0.60
MIN_SIDE = 0.20  # of the lung pixels' span, before the margins
#: the lung pixels' centre at most this far from the image centre, (down, across), shares of the
#: side (lungs sit above the middle; one lung found alone sits far to the side)
MAX_OFFSET = (0.20, 0.20)


def _stretch(x):
    """Per image, 0..1 between the 1st and 99th percentiles of its 4 x 4 block means (a
    constant image: all 0); the blocks make the sort 16 times shorter."""
    flat = ops.reshape(ops.average_pool(x, 4, strides=4), (ops.shape(x)[0], -1))
    q = ops.quantile(flat, ops.convert_to_tensor([0.01, 0.99], dtype="float32"), axis=1)
    lo, hi = ops.reshape(q[0], (-1, 1, 1, 1)), ops.reshape(q[1], (-1, 1, 1, 1))
    return ops.clip((x - lo) / ops.maximum(hi - lo, 1e-3), 0.0, 1.0), ops.reshape(hi - lo, (-1,))


def _otsu(flat, weight=None):
    """Per image (rows of ``flat``, values in 0..1), the Otsu threshold on LEVELS grey levels,
    counting each pixel with its ``weight`` (default 1; 0 leaves a pixel out)."""
    if weight is None:
        weight = ops.ones_like(flat)
    level = ops.clip(ops.floor(flat * LEVELS), 0, LEVELS - 1)

    def histogram(pair):  # one image: (2, N) levels and weights -> (LEVELS,) weighted counts
        return ops.segment_sum(pair[1], ops.cast(pair[0], "int32"), num_segments=LEVELS)

    hist = ops.vectorized_map(histogram, ops.stack([level, weight], axis=1))  # (B, LEVELS)
    centres = (ops.arange(LEVELS, dtype="float32") + 0.5) / LEVELS
    n = ops.maximum(ops.sum(hist, axis=1, keepdims=True), 1e-6)
    n0 = ops.cumsum(hist, axis=1)[:, :-1]  # pixels at or below each candidate threshold
    s0 = ops.cumsum(hist * centres, axis=1)[:, :-1]
    total = ops.sum(hist * centres, axis=1, keepdims=True)
    w0 = n0 / n
    mu0 = s0 / ops.maximum(n0, 1e-6)
    mu1 = (total - s0) / ops.maximum(n - n0, 1e-6)
    between = w0 * (1.0 - w0) * ops.square(mu0 - mu1)
    # threshold between level i and i + 1: a pixel is "below" when its level is <= i
    return (ops.cast(ops.argmax(between, axis=1), "float32") + 1.0) / LEVELS


def _max_filter(x, k: int):
    """k x k moving maximum ("same" size), as two 1-D passes (a 2-D window is k / 2 times slower)."""
    return ops.max_pool(ops.max_pool(x, (k, 1), strides=1, padding="same"), (1, k), strides=1, padding="same")


def _enclosed(body, axis: int, wall: float):
    """1 where at least ``wall`` body pixels lie before and after a pixel along ``axis``."""
    before = ops.cumsum(body, axis=axis) - body
    after = ops.flip(ops.cumsum(ops.flip(body, axis=axis), axis=axis), axis=axis) - body
    return ops.cast((before >= wall) & (after >= wall), "float32")


def lung_mask(x):
    """Per image, the dark pixels inside the body on the ``WORK`` grid, ``(B, WORK, WORK, 1)``
    float 0/1, and whether the image looks like a picture at all, ``(B,)`` bool (not flat, not
    noise: the fallback's first test)."""
    x = ops.cast(x, "float32")
    if x.shape[-1] != 1:
        x = ops.mean(x, axis=-1, keepdims=True)
    small = ops.image.resize(x, (WORK, WORK), interpolation="bilinear", antialias=True)
    small, spread = _stretch(small)
    smooth = ops.average_pool(small, 3, strides=1, padding="same")
    # a radiograph on this grid is smooth; noise is not: mean |pixel - its 3 x 3 mean| / std
    rough = ops.mean(ops.abs(small - smooth), axis=(1, 2, 3)) / ops.maximum(ops.std(small, axis=(1, 2, 3)), 1e-3)
    picture = (spread > MIN_SPREAD) & (rough <= MAX_ROUGH)
    small = smooth
    batch = ops.shape(small)[0]
    # the body: brighter than the air outside it. Two-level Otsu: the image's threshold splits
    # bright (bone, abdomen) from dark (lungs and air); the dark side's own threshold splits air
    # from lungs (with no air in view it splits the lungs, which is harmless: see below)
    flat = ops.reshape(small, (batch, -1))
    darker = ops.cast(flat <= ops.reshape(_otsu(flat), (-1, 1)), "float32")
    body = ops.cast(small > ops.reshape(_otsu(flat, darker), (-1, 1, 1, 1)), "float32")
    # a pixel is inside the body when enough body lies on both sides of it in its row and in
    # its column (air beside the chest, above the shoulders and between arm and head is not)
    wall = float(ENCLOSE * WORK)
    inside = _enclosed(body, 2, wall) * _enclosed(body, 1, wall)
    # dark for its surroundings: a black top-hat (grey closing minus the image) over a window
    # wider than a lung, thresholded by Otsu over the pixels inside the body
    k = CLOSING
    closed = -_max_filter(-_max_filter(small, k), k)
    hat = ops.clip(closed - small, 0.0, 1.0)
    hat = hat / ops.maximum(ops.max(hat * inside, axis=(1, 2, 3), keepdims=True), 1e-3)
    hat = ops.clip(hat, 0.0, 1.0)
    flat_inside = ops.reshape(inside, (batch, -1))
    threshold = ops.reshape(_otsu(ops.reshape(hat, (batch, -1)), flat_inside), (-1, 1, 1, 1))
    lungs = ops.cast(hat > threshold, "float32") * inside
    # an opening drops what is thinner than a lung: gaps between ribs, stripes along edges
    opened = _max_filter(-_max_filter(-lungs, OPENING), OPENING)
    return opened, picture


def _span(profile):
    """(start, stop) in 0..1 of the central MASS share of a (B, WORK) mass profile."""
    cum = ops.cumsum(profile, axis=1) / ops.maximum(ops.sum(profile, axis=1, keepdims=True), 1e-6)
    start = ops.sum(ops.cast(cum < MASS[0], "float32"), axis=1)
    stop = ops.sum(ops.cast(cum < MASS[1], "float32"), axis=1) + 1.0
    return start / WORK, stop / WORK


def _grow(start, stop, least: float, before: float = 0.5):
    """``(start, stop)`` widened to at least ``least`` (``before`` of the extra before the start,
    the rest after the stop), then moved (not shrunk) back inside 0..1."""
    extra = ops.maximum(least - (stop - start), 0.0)
    start, stop = start - before * extra, stop + (1.0 - before) * extra
    start, stop = start - ops.maximum(stop - 1.0, 0.0), stop - ops.minimum(start, 0.0)
    return ops.maximum(start, 0.0), ops.minimum(stop, 1.0)


def lung_box(x):
    """The lung-field boxes the :class:`LungCrop` layer cuts: ``(B, 4)`` float32 rows
    ``(top, left, bottom, right)`` as fractions of the image's height and width; the whole
    image ``(0, 0, 1, 1)`` where the segmentation is implausible. ``x``: ``(B, H, W, 1)``,
    0..255. One implementation for the layer and for Grad-CAM."""
    return find_lung_box(x)[0]


def find_lung_box(x):
    """:func:`lung_box`'s boxes and, per image, whether it fell back to the whole image
    (``(B,)`` bool; a plausible box can also grow to the whole image)."""
    mask, picture = lung_mask(x)
    mask = mask[..., 0]
    share = ops.mean(mask, axis=(1, 2))
    top, bottom = _span(ops.sum(mask, axis=2))
    left, right = _span(ops.sum(mask, axis=1))
    height, width = bottom - top, right - left
    plausible = (
        picture
        & (share >= MIN_LUNG) & (share <= MAX_LUNG)
        & (height >= MIN_SIDE) & (width >= MIN_SIDE)
        & (ops.abs((top + bottom) / 2 - 0.5) <= MAX_OFFSET[0])
        & (ops.abs((left + right) / 2 - 0.5) <= MAX_OFFSET[1])
    )
    top, bottom = _grow(top - MARGIN[0] * height, bottom + MARGIN[2] * height, LEAST[0], before=0.25)
    left, right = _grow(left - MARGIN[1] * width, right + MARGIN[1] * width, LEAST[1])
    box = ops.stack([top, left, bottom, right], axis=1)
    whole = ops.convert_to_tensor([[0.0, 0.0, 1.0, 1.0]], dtype="float32")
    return ops.stop_gradient(ops.where(plausible[:, None], box, whole)), ~plausible


def crop_resize(x, box, size: tuple[int, int] | None = None):
    """Cut each image's ``box`` (rows of :func:`lung_box`) out of ``x`` ``(B, H, W, C)`` and
    resize it to ``size`` (default: the input's) with bilinear sampling."""
    x = ops.cast(x, "float32")
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    oh, ow = size or (h, w)
    batch = ops.shape(x)[0]
    fy = (ops.arange(oh, dtype="float32") + 0.5) / oh  # output pixel centres, 0..1
    fx = (ops.arange(ow, dtype="float32") + 0.5) / ow
    top, left, bottom, right = (ops.reshape(box[:, i], (-1, 1)) for i in range(4))
    ys = (top + fy[None, :] * (bottom - top)) * h - 0.5  # (B, oh) input row coordinates
    xs = (left + fx[None, :] * (right - left)) * w - 0.5  # (B, ow)
    shape = (batch, oh, ow, c)
    b = ops.broadcast_to(ops.reshape(ops.cast(ops.arange(batch), "float32"), (-1, 1, 1, 1)), shape)
    yy = ops.broadcast_to(ops.reshape(ys, (-1, oh, 1, 1)), shape)
    xx = ops.broadcast_to(ops.reshape(xs, (-1, 1, ow, 1)), shape)
    cc = ops.broadcast_to(ops.reshape(ops.arange(c, dtype="float32"), (1, 1, 1, c)), shape)
    coords = ops.stack([b, yy, xx, cc], axis=0)
    return ops.image.map_coordinates(x, coords, order=1, fill_mode="nearest")


@keras.saving.register_keras_serializable(package="cxrtool")
class LungCrop(keras.layers.Layer):
    """Crop each image to its lung fields (see the module docstring) and resize back; 0..255 in
    and out, the same shape, the same in training and inference."""

    def __init__(self, mode: str = "lungs", **kwargs):
        kwargs.setdefault("dtype", "float32")
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        check_crop(mode)
        self.mode = mode

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        if self.mode == "none":
            return x
        return crop_resize(x, lung_box(x))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(mode=self.mode)
        return config


__all__ = ["CROP_MODES", "LungCrop", "check_crop", "crop_resize", "find_lung_box", "lung_box", "lung_mask"]
