"""``evaluate --attention``: where each model looks on the evaluation images, as numbers.

Picks a stratified sample of the evaluated images (every class and source in proportion),
decodes them at up to :data:`ANALYSIS_SIDE` px, computes each model's Grad-CAM maps with
:func:`cxrtool.gradcam.explain` (ensembles: the weighted mean of the members' maps) and
measures the heat share on the border band and on text-like regions
(:mod:`cxrtool.gradcam.attention`), per model, class and source. Returns data; the
writers and the CLI render it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from ..progress import ProgressFn, report
from ..sampling import stratified_sample
from .evalset import Item

ANALYSIS_SIDE = 512  # longer side of the images the maps and the text detector work on


def check_attention_options(max_images: int, band: float) -> None:
    """Refuse values that cannot work before anything heavy runs."""
    if max_images < 1:
        raise UsageError("--attention-max must be at least 1")
    if not 0.0 < band < 0.5:
        raise UsageError(f"--attention-band must be between 0 and 0.5 (a fraction of each side), got {band}")


def analysis_image(path: Path, side: int = ANALYSIS_SIDE) -> np.ndarray:
    """The image (uint8 grayscale) with its longer side shrunk to at most ``side`` (area
    averaging keeps thin bright text visible); small images stay as they are."""
    from PIL import Image

    from ..imageio import load_image

    pixels = load_image(path, draft=side)
    h, w = pixels.shape
    if max(h, w) <= side:
        return pixels
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(pixels, mode="L").resize(size, Image.BOX), dtype=np.uint8)


def attention_section(
    items: Sequence[Item],
    refs: Sequence[tuple[str, Path, Any]],
    classes: Sequence[str],
    *,
    max_images: int = 200,
    band: float = 0.1,
    batch_size: int = 32,
    seed: int = 0,
    loaded: Mapping[str, Any] | None = None,
    progress: ProgressFn | None = None,
) -> tuple[dict, list[dict]]:
    """The ``attention`` section of ``metrics.json`` and its per-image rows.

    ``items``: the evaluated images; ``refs``: ``[(label, path, info)]`` of the models;
    ``loaded``: models already loaded, by label (the others are loaded here).
    Returns ``(section, rows)``; a row is one (model, image): file, label, source, the
    predicted class and the four numbers (``attention.csv``)."""
    from ..artifact import load_model
    from ..errors import ImageLoadError
    from ..gradcam.attention import aggregate, measure, text_mask
    from ..gradcam.explain import explain
    from ..gradcam.overlay import is_flat

    picked = stratified_sample([(it.label, it.source) for it in items], max_images, seed)
    report(progress, "attention", 0, len(picked) * len(refs),
           message=f"attention: Grad-CAM of {len(picked)} images with {len(refs)} model(s)")
    images, chosen = [], []
    for i in picked:
        try:
            images.append(analysis_image(items[i].path))
        except ImageLoadError:
            continue
        chosen.append(items[i])
    texts = [text_mask(img) for img in images]  # the same regions for every model
    section: dict = {"settings": {"max_images": max_images, "band": band, "analysis_side": ANALYSIS_SIDE,
                                  "method": "gradcam", "target": "predicted class", "seed": seed,
                                  "n_images": len(chosen)},
                     "models": {}}
    rows: list[dict] = []
    done = 0
    for label, path, _info in refs:
        model = (loaded or {}).get(label) or load_model(path)
        cache: dict = {}
        records = []
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            for k, exp in enumerate(explain(model, batch, batch_size=batch_size, cache=cache)):
                j = start + k
                # a flat map (all zero or constant) says nothing about where the model looked
                rec = None if is_flat(exp.heatmap) else measure(exp.heatmap, images[j], band=band, text=texts[j])
                records.append(rec)
                it = chosen[j]
                rows.append({"model": label, "file": it.file, "label": it.label, "source": it.source,
                             "predicted": exp.label, **(rec.as_dict() if rec else {})})
            done += len(batch)
            report(progress, "attention", done, len(images) * len(refs), model=label)
        result = aggregate(records, [it.label for it in chosen], [it.source for it in chosen])
        result["per_class"] = {c: result["per_class"][c] for c in classes if c in result["per_class"]}
        section["models"][label] = result
    return section, rows
