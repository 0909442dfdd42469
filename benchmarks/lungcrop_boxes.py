"""Where the lung-field crop (``cxrtool train --crop lungs``) puts its box on real X-rays.

Samples images from the three public sources under SOURCES (default ../shared/data/sources),
resizes them as training does (``--size``, default 100), runs
:func:`cxrtool.models.lungcrop.lung_box` and prints, per source, how many fell back to the
whole image and the distribution of the box's share of the image area. ``--figure PATH``
draws the first few images per source with their box (the docs figure:
``python benchmarks/lungcrop_boxes.py --figure docs/img/lungcrop.png``); ``--failures DIR``
writes a sheet of the fallbacks to look at.

    nice -n 10 python benchmarks/lungcrop_boxes.py   # 125 images per source (Figure1 has 55)
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np

SOURCES = {  # short name -> folder
    "pediatric": "chest_xray",
    "adult": "COVID-19_Radiography_Dataset",
    "Figure1": "Figure1-COVID-chestxray-dataset",
}


def sample(root: Path, per_source: int, seed: int) -> list[tuple[str, Path]]:
    from cxrtool.imageio import find_images

    rng = random.Random(seed)
    out = []
    for name, folder in SOURCES.items():
        files = sorted(find_images(root / folder))
        out += [(name, p) for p in rng.sample(files, min(per_source, len(files)))]
    return out


def boxes_of(images: np.ndarray, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """The boxes (N, 4) and whether each fell back to the whole image (N,)."""
    from cxrtool.models.lungcrop import find_lung_box

    found = [find_lung_box(images[i:i + batch, ..., None].astype(np.float32)) for i in range(0, len(images), batch)]
    return np.concatenate([np.asarray(b) for b, _ in found]), np.concatenate([np.asarray(f) for _, f in found])


def draw(items, images, boxes, fallback, path: Path, cols: int = 4, side: int = 256) -> None:
    """A grid of the images with their box (green; red when it fell back to the whole image)."""
    from PIL import Image, ImageDraw

    from cxrtool.gradcam.overlay import _font

    rows = -(-len(items) // cols)
    title_h = 22
    page = Image.new("RGB", (cols * side, rows * (side + title_h)), "white")
    font = _font(13, bold=False)
    for i, ((name, p), img, box, fell_back) in enumerate(zip(items, images, boxes, fallback)):
        tile = Image.fromarray(img, "L").resize((side, side), Image.BILINEAR).convert("RGB")
        d = ImageDraw.Draw(tile)
        t, l, b, r = (float(v) * side for v in box)
        d.rectangle((l + 1, t + 1, r - 2, b - 2), outline=(230, 40, 40) if fell_back else (40, 230, 60), width=3)
        x, y = (i % cols) * side, (i // cols) * (side + title_h)
        label = name + ("  (fallback: whole image)" if fell_back else f"  box {(b - t) * (r - l) / side ** 2:.0%} of the image")
        ImageDraw.Draw(page).text((x + 6, y + 4), label, font=font, fill=(0, 0, 0))
        page.paste(tile, (x, y + title_h))
    path.parent.mkdir(parents=True, exist_ok=True)
    page.save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sources", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sources")
    ap.add_argument("--per-source", type=int, default=125)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--figure", type=Path, help="draw the first --figure-per-source images of each source here")
    ap.add_argument("--figure-per-source", type=int, default=3)
    ap.add_argument("--failures", type=Path, help="draw the fallbacks and the smallest boxes into this folder")
    args = ap.parse_args()

    from cxrtool.inputs import load_resized

    items = sample(args.sources, args.per_source, args.seed)
    images = np.stack([load_resized(p, args.size) for _, p in items])
    boxes, fallback = boxes_of(images)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    whole = area > 0.999
    summary = {}
    for name in SOURCES:
        sel = np.array([n == name for n, _ in items])
        a = area[sel & ~fallback]
        summary[name] = {"images": int(sel.sum()), "fallback": round(float(fallback[sel].mean()), 3),
                         "whole_image": round(float(whole[sel].mean()), 3),
                         "area_p5_p25_p50_p75_p95": [round(float(v), 3) for v in np.percentile(a, [5, 25, 50, 75, 95])] if len(a) else None}
    summary["all"] = {"images": len(items), "fallback": round(float(fallback.mean()), 3),
                      "whole_image": round(float(whole.mean()), 3),
                      "area_p5_p25_p50_p75_p95": [round(float(v), 3) for v in np.percentile(area[~fallback], [5, 25, 50, 75, 95])]}
    print(json.dumps(summary, indent=2))
    if args.figure:
        pick = [i for name in SOURCES for i in [j for j, (n, _) in enumerate(items) if n == name][: args.figure_per_source]]
        draw([items[i] for i in pick], images[pick], boxes[pick], fallback[pick], args.figure, cols=args.figure_per_source)
    if args.failures:
        bad = list(np.flatnonzero(fallback))[:16]
        small = [i for i in np.argsort(area) if not fallback[i]][:8]
        for name, idx in (("fallbacks.png", bad), ("smallest.png", small)):
            if len(idx):
                draw([items[i] for i in idx], images[idx], boxes[idx], fallback[idx], args.failures / name)


if __name__ == "__main__":
    main()
