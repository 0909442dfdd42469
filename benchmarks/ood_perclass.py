"""Exploration (not shipped): per-class thresholds (each part's val 99.5th percentile within the
predicted class) against the shipped global ones: val, test, the build's unused images by
folder (see ood_unused.py) and the dev/fresh/fresh2 non-X-rays (fresh3 not used). Written
for the three-part detector of 29147f1 (features, layout, picture): with a model fitted since,
it leaves the edge part out, so its "global" row is not the shipped score (docs/ood.md quotes
its numbers for 29147f1 only).

    python benchmarks/ood_perclass.py MODEL_WITH_STATS.keras DATASET [--sources DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

QUANTILE = 0.995


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("data", type=Path)
    ap.add_argument("--sources", type=Path, default=None)
    args = ap.parse_args(argv)

    import ood_detection as od
    from ood_unused import SOURCES, unused_images

    from cxrtool.artifact import load_model
    from cxrtool.imageio import read_image
    from cxrtool.inputs import load_split, resize_image
    from cxrtool.manifest import read_manifest
    from cxrtool.ood import Judge, layout_thumbnails, picture_vectors

    loaded = load_model(args.model)
    judge = Judge.from_record(loaded.info.extra["ood"])
    size = int(loaded.info.image_size)

    def parts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, 3) distances (features, layout, picture) and the predicted class of each image."""
        probs, _, feats, _ = od.probe_outputs(loaded.model, x, judge.grid)  # the features the record was fitted on
        d = np.stack([judge.features.distance(feats), judge.layout.distance(layout_thumbnails(x)),
                      judge.picture.distance(picture_vectors(x) / judge.picture_scale)], axis=1)
        return d, probs.argmax(axis=1)

    manifest = read_manifest(args.data)
    dv, cv = parts(load_split(manifest, "val", size).x)
    dt, ct = parts(load_split(manifest, "test", size).x)
    sources = args.sources or SOURCES
    unused = unused_images(args.data, sources)
    folders = np.array([str(p.relative_to(sources).parent) for p in unused])
    du, cu = parts(np.stack([resize_image(read_image(p).pixels, size) for p in unused]))
    items = od.non_xray_images([], 25) + od.fresh_non_xray_images(25) + od.fresh2_non_xray_images()
    dn, cn = parts(np.stack([resize_image(g, size) for _, _, g, _ in items]))
    image_flag = od.image_check_flags(((g, info) for *_, g, info in items), size)

    global_thr = np.array([judge.features.threshold, judge.layout.threshold, judge.picture.threshold])
    per_class = np.stack([np.quantile(dv[cv == c], QUANTILE, axis=0) if (cv == c).sum() >= 20 else global_thr
                          for c in range(len(loaded.info.classes))])

    def flagged(d: np.ndarray, c: np.ndarray, per: bool) -> np.ndarray:
        return (d > (per_class[c] if per else global_thr)).any(axis=1)

    label = args.model.stem
    print(label, "classes", list(loaded.info.classes), "predicted for non-X-rays:", np.bincount(cn, minlength=3),
          "val images per predicted class:", np.bincount(cv, minlength=3))
    for per in (False, True):
        by_folder = " ".join(f"{f.split('/')[-1]}={flagged(du[folders == f], cu[folders == f], per).mean():.2%}"
                             for f in sorted(set(folders)) if "COVID-19" in f)
        print(f"{label} {'per-class' if per else 'global'}: val {flagged(dv, cv, per).mean():.3%}  "
              f"test {flagged(dt, ct, per).mean():.3%}  unused {flagged(du, cu, per).mean():.3%} {by_folder}  "
              f"non-X-rays dev+fresh+fresh2 {(flagged(dn, cn, per) | image_flag).mean():.2%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
