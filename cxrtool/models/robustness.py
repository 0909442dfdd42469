"""The choices of the robustness training options, Keras-free (the CLI and option checks import them).

``--normalize`` picks a :class:`~cxrtool.models.normalize.Normalize` mode; ``--acquisition``
picks a level of bounded acquisition augmentation, applied by the training-only
:class:`~cxrtool.models.layers.Augment` layer (see :mod:`cxrtool.models.acquisition`);
``--crop`` picks a :class:`~cxrtool.models.lungcrop.LungCrop` mode.
"""

from __future__ import annotations

NORMALIZE_MODES = ("none", "standardize", "window", "equalize", "clahe")
#: ``--crop``: none, or the lung-field crop of :mod:`cxrtool.models.lungcrop`
CROP_MODES = ("none", "lungs")

#: Bounds of the acquisition transforms per ``--acquisition`` level (0 turns a transform off).
#: gamma: |log gamma| <= value; blur: Gaussian sigma in px (blended in with weight U(0, 1));
#: noise: max Gaussian noise std, fraction of 255; jpeg: max blend weight of the 8x8
#: block-mean image (after posterisation to 32 grey levels); crop: a random resized crop keeps
#: a side fraction in [1 - crop, 1]; border: each edge loses a black band of up to this
#: fraction of the side.
ACQUISITION_LEVELS: dict[str, dict[str, float]] = {
    "none": dict(gamma=0.0, blur=0.0, noise=0.0, jpeg=0.0, crop=0.0, border=0.0),
    "light": dict(gamma=0.25, blur=0.8, noise=0.02, jpeg=0.3, crop=0.1, border=0.04),
    "strong": dict(gamma=0.5, blur=1.5, noise=0.05, jpeg=0.6, crop=0.2, border=0.08),
}


def check_normalize(mode: str, low: float = 1.0, high: float = 99.0) -> None:
    """A ``ValueError`` for an unknown mode or a window that is not 0 <= low < high <= 100."""
    if mode not in NORMALIZE_MODES:
        raise ValueError(f"unknown normalisation {mode!r}; expected one of {', '.join(NORMALIZE_MODES)}")
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"window percentiles must satisfy 0 <= low < high <= 100, got {low:g}, {high:g}")


def check_crop(mode: str) -> None:
    """A ``ValueError`` for an unknown ``--crop`` mode."""
    if mode not in CROP_MODES:
        raise ValueError(f"unknown crop {mode!r}; expected one of {', '.join(CROP_MODES)}")


__all__ = ["ACQUISITION_LEVELS", "CROP_MODES", "NORMALIZE_MODES", "check_crop", "check_normalize"]
