"""Class activation maps (Grad-CAM and friends) computed natively on JAX, and the overlay
files ``cxrtool gradcam`` writes.

* ``layers.py``: which layers can be explained, cutting the model there, token grids;
* ``cam.py``: :class:`BaseCAM`, the shared algorithm (jitted, batched) and :data:`METHODS`;
* ``methods.py``: one subclass per method (Grad-CAM, Grad-CAM++, HiResCAM, LayerCAM);
* ``explain.py``: :func:`explain`, maps at each image's resolution (ensembles too);
* ``overlay.py``: drawing overlays and contact-sheet pages (Pillow, colour-map tables);
* ``files.py``: :func:`gradcam_files`, files in, overlays out, in parallel.

Importing this package loads numpy only; Keras, JAX, Pillow and matplotlib are imported
when a map is computed or drawn.
"""

from __future__ import annotations

from .cam import METHODS, BaseCAM, CAMResult
from .explain import Explanation, explain, normalise_map, upsample_map
from .files import GradcamRecord, gradcam_files, plan_outputs
from .layers import SplitModel, candidate_layers, check_layer, default_layer, split_model, tokens_to_grid
from .methods import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, make_cam

__all__ = [
    "BaseCAM",
    "CAMResult",
    "Explanation",
    "GradCAM",
    "GradCAMPlusPlus",
    "GradcamRecord",
    "HiResCAM",
    "LayerCAM",
    "METHODS",
    "SplitModel",
    "candidate_layers",
    "check_layer",
    "default_layer",
    "explain",
    "gradcam_files",
    "make_cam",
    "normalise_map",
    "plan_outputs",
    "split_model",
    "tokens_to_grid",
    "upsample_map",
]
