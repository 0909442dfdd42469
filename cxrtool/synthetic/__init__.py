"""Deterministic phantom chest X-rays and fake multi-source dataset trees.

Why this exists: the real datasets (COVID-19 Radiography Database, Kermany ``chest_xray``,
the 15K COVID set, ``COVID-19+PNEUMONIA+NORMAL``) are large, licensed and not available in
CI.  Every other part of cxrtool -- source adapters, the deduplicating dataset builder, the
models, Grad-CAM, the demo -- is tested against the synthetic data produced here instead.

* :mod:`.phantoms`: one image at a time (:func:`make_phantom`, :func:`pattern_mask`,
  :func:`lung_mask`, :func:`phantom_layout`).
* :mod:`.trees`: whole source trees with planted problems and their ground truth
  (:func:`write_source_tree`, :class:`SyntheticTree`, :func:`write_class_folders`).

Only numpy, Pillow and imagehash are imported (no Keras/JAX), so importing this is cheap.
"""

from __future__ import annotations

from .phantoms import Layout, lung_mask, make_phantom, pattern_mask, phantom_layout
from .trees import MARKERS, SOURCE_DIRS, SyntheticTree, burn_marker, write_class_folders, write_source_tree

__all__ = [
    "Layout",
    "MARKERS",
    "SOURCE_DIRS",
    "SyntheticTree",
    "burn_marker",
    "lung_mask",
    "make_phantom",
    "pattern_mask",
    "phantom_layout",
    "write_class_folders",
    "write_source_tree",
]
