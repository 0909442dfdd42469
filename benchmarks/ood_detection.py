"""How well the OOD flag (cxrtool.imagecheck + cxrtool.ood) separates chest X-rays from
everything else, and which score to store: the numbers and the figure of docs/ood.md.

    python benchmarks/ood_detection.py MODEL.keras DATASET OUT_DIR [--label NAME] [--figure PNG]

Copies MODEL into OUT_DIR, fits the statistics on DATASET's train and val splits with
:func:`cxrtool.ood.fit_ood_model` (as ``train`` and ``fit-ood`` do), then scores, with every
candidate score:

* the dataset's train, val and test splits (the test split is internal or a held-out source,
  depending on how DATASET was built);
* non-X-rays available offline, in seven sets. ``dev``: generated pictures
  (cxrtool.synthetic.nonxray, 8 kinds, seeds 1000+), matplotlib's sample data (photographs, a
  logo, an MRI slice, elevation maps; whole and 3 crops) and the tool's own figures found under
  ``--figures`` folders; the layout score's settings (24 px) were chosen on this set.
  ``fresh``: generated pictures with other seeds and sizes, scikit-learn's two sample
  photographs in colour and in grey, the grey Grace Hopper, other crops of the MRI slice and
  the elevation maps, matplotlib's bivariate-normal density and scikit-learn's handwritten
  digits (upscaled). ``fresh2`` to ``fresh6`` (benchmarks/ood_fresh2.py, ...): each
  committed before the change designed on the previous set's misses, and scored once after it
  (docs/ood.md has the history). ``--sets`` picks the sets; the default is all seven.

Candidates: what predict stores and computes (:class:`cxrtool.ood.Scorer`: the largest of the
feature, layout, picture and edge scores, each divided by its own threshold), each part alone,
the image parts without the features, the previous release's detector (b93d354: the feature
part on the pooled features, the whole map's average, instead of the 3 x 3 grid of cell
averages; refitted in the same run), and, on the pooled features, Mahalanobis in the top-64
PCA subspace without the residual term, full Mahalanobis, energy (-logsumexp of the logits)
and max softmax (1 - max p), each thresholded at the val quantile. Writes OUT_DIR/LABEL.json
and OUT_DIR/LABEL-scores.npz.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
from pathlib import Path

import numpy as np


def non_xray_images(figure_dirs: list[Path], per_kind: int) -> list[tuple[str, str, np.ndarray, tuple]]:
    """``[(group, name, grey pixels, (width, height, colour))]`` of every non-X-ray (see
    :func:`file_item`)."""
    from PIL import Image
    import matplotlib.cbook as cbook

    from cxrtool.imageio import read_image
    from cxrtool.synthetic.nonxray import KINDS, make_non_xray

    out = []
    for kind in KINDS:
        for i in range(per_kind):
            size = [(256, 256), (320, 240), (240, 320), (512, 512)][i % 4]
            out.append(file_item(f"generated:{kind}", f"{kind}-{i}", make_non_xray(kind, 1000 + i, size)))
    sample = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).parent
    pics = []
    for name in ("grace_hopper.jpg", "logo2.png", "Minduka_Present_Blue_Pack.png"):
        pics.append((name, Image.open(sample / name)))
    mri = np.frombuffer(gzip.open(sample / "s1045.ima.gz").read(), ">u2").reshape(256, 256).astype(np.float64)
    pics.append(("s1045.ima (MRI slice)", Image.fromarray((255 * mri / mri.max()).astype(np.uint8))))
    for name, key in (("topobathy.npz", "topo"), ("jacksboro_fault_dem.npz", "elevation")):
        with np.load(sample / name) as z:
            a = z[key].astype(np.float64)
        pics.append((name, Image.fromarray((255 * (a - a.min()) / (np.ptp(a) or 1)).astype(np.uint8))))
    for name, im in pics:  # and a few crops of each: more samples of the same kinds of content
        w, h = im.size
        for j, box in enumerate([(0, 0, w, h), (0, 0, w // 2, h // 2), (w // 2, h // 2, w, h), (w // 4, h // 4, 3 * w // 4, 3 * h // 4)]):
            out.append(file_item(f"matplotlib:{name}", f"{name}#{j}", im.crop(box)))
    for folder in figure_dirs:
        for p in sorted(folder.rglob("*.png")):
            img = read_image(p)
            out.append(("own figures", str(p), img.pixels, (img.width, img.height, img.colour)))
    return out


def fresh_non_xray_images(per_kind: int) -> list[tuple[str, str, np.ndarray, tuple]]:
    """The ``fresh`` set: non-X-rays not used for any choice (see the module docstring)."""
    from PIL import Image
    import matplotlib.cbook as cbook
    from sklearn.datasets import load_digits, load_sample_image

    from cxrtool.synthetic.nonxray import KINDS, make_non_xray

    out = []
    for kind in KINDS:
        for i in range(per_kind):
            size = [(300, 300), (384, 288), (288, 384), (640, 640), (200, 200)][i % 5]
            out.append(file_item(f"generated:{kind}", f"{kind}-{5000 + i}", make_non_xray(kind, 5000 + i, size)))
    sample = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).parent
    pics = [(f"sklearn:{n} (colour)", Image.fromarray(load_sample_image(n))) for n in ("china.jpg", "flower.jpg")]
    pics += [(f"sklearn:{n} (grey)", Image.fromarray(load_sample_image(n)).convert("L")) for n in ("china.jpg", "flower.jpg")]
    pics.append(("matplotlib:grace_hopper.jpg (grey)", Image.open(sample / "grace_hopper.jpg").convert("L")))
    mri = np.frombuffer(gzip.open(sample / "s1045.ima.gz").read(), ">u2").reshape(256, 256).astype(np.float64)
    pics.append(("matplotlib:s1045.ima (MRI slice)", Image.fromarray((255 * mri / mri.max()).astype(np.uint8))))
    for name, key in (("topobathy.npz", "topo"), ("jacksboro_fault_dem.npz", "elevation")):
        with np.load(sample / name) as z:
            a = z[key].astype(np.float64)
        pics.append((f"matplotlib:{name}", Image.fromarray((255 * (a - a.min()) / (np.ptp(a) or 1)).astype(np.uint8))))
    bivariate = np.load(sample / "axes_grid" / "bivariate_normal.npy")
    pics.append(("matplotlib:bivariate_normal.npy", Image.fromarray(
        (255 * (bivariate - bivariate.min()) / np.ptp(bivariate)).astype(np.uint8)).resize((256, 256), Image.BICUBIC)))
    for group, im in pics:  # crops other than the dev set's (right half, bottom-left quadrant, centre 60%, top strip)
        w, h = im.size
        for j, box in enumerate([(w // 2, 0, w, h), (0, h // 2, w // 2, h), (w // 5, h // 5, 4 * w // 5, 4 * h // 5),
                                 (0, 0, w, h * 2 // 3)]):
            out.append(file_item(group, f"{group}#{j}", im.crop(box)))
    digits = load_digits().images
    for i in range(0, 40, 2):  # 20 digits, upscaled 8 -> 128 px
        d = Image.fromarray((digits[i] * 255 / 16).astype(np.uint8)).resize((128, 128), Image.BICUBIC)
        out.append(file_item("sklearn:digits", f"digit-{i}", d))
    return out


def file_item(group: str, name: str, im) -> tuple[str, str, np.ndarray, tuple]:
    """``(group, name, grey pixels, (width, height, colour))`` of a Pillow image: what predict
    reads from a file (:func:`image_check_flags` judges them as predict does)."""
    from cxrtool.imagecheck import colour_fraction

    return (group, name, np.asarray(im.convert("L")), (im.width, im.height, colour_fraction(im)))


def image_check_flags(files, size: int) -> np.ndarray:
    """Whether each of ``files`` (an iterable of ``(grey pixels, (width, height, colour))``)
    fails an image check, judged exactly as ``predict`` judges a file for a ``size`` px model
    (:func:`cxrtool.imagecheck.file_views`: the model-size image, the file's own size and
    colour). Only the thumbnails are kept, so a generator of decoded files streams."""
    from cxrtool.imagecheck import batch_checks, file_views
    from cxrtool.inputs import resize_image

    seen = [file_views(g, resize_image(g, size), width=w, height=h, colour=c) for g, (w, h, c) in files]
    return np.asarray([f is not None for f in batch_checks(seen)[0]], dtype=bool)


def fresh2_non_xray_images() -> list[tuple[str, str, np.ndarray, tuple]]:
    """The ``fresh2`` set (benchmarks/ood_fresh2.py: 25 of each generated kind)."""
    from ood_fresh2 import fresh2_images

    return [file_item(*item) for item in fresh2_images()]


def fresh3_non_xray_images() -> list[tuple[str, str, np.ndarray, tuple]]:
    """The ``fresh3`` set (benchmarks/ood_fresh3.py: 20 of each generated kind)."""
    from ood_fresh3 import fresh3_images

    return [file_item(*item) for item in fresh3_images()]


def fresh4_non_xray_images() -> list[tuple[str, str, np.ndarray, tuple]]:
    """The ``fresh4`` set (benchmarks/ood_fresh4.py: 20 of each generated kind)."""
    from ood_fresh4 import fresh4_images

    return [file_item(*item) for item in fresh4_images()]


def fresh5_non_xray_images() -> list[tuple[str, str, np.ndarray, tuple]]:
    """The ``fresh5`` set (benchmarks/ood_fresh5.py: 20 of each generated kind)."""
    from ood_fresh5 import fresh5_images

    return [file_item(*item) for item in fresh5_images()]


def fresh6_non_xray_images() -> list[tuple[str, str, np.ndarray, tuple]]:
    """The ``fresh6`` set (benchmarks/ood_fresh6.py: 20 of each generated kind)."""
    from ood_fresh6 import fresh6_images

    return [file_item(*item) for item in fresh6_images()]


def probe_outputs(model, x: np.ndarray, grid: int, batch: int = 64):
    """(probabilities, pooled features, the feature map's ``grid`` x ``grid`` cell means,
    logits) for (n, s, s) uint8 images."""
    from cxrtool.backend import import_keras
    from cxrtool.models.names import LOGITS_LAYER, POOL_LAYER
    from cxrtool.ood import grid_pool

    keras = import_keras()
    probe = keras.Model(model.inputs[0], [model.outputs[0], model.get_layer(POOL_LAYER).input,
                                          model.get_layer(LOGITS_LAYER).output])
    outs = [[], [], [], []]
    for i in range(0, len(x), batch):
        xb = x[i : i + batch]
        pad = np.concatenate([xb, np.repeat(xb[-1:], batch - len(xb), axis=0)]).astype(np.float32)[..., None]
        probs, maps, logits = (np.asarray(o)[: len(xb)] for o in probe.predict_on_batch(pad))
        for k, o in enumerate((probs, grid_pool(maps, 1), grid_pool(maps, grid), logits)):
            outs[k].append(np.asarray(o, np.float64))
    return [np.concatenate(o) for o in outs]


def auroc(inlier: np.ndarray, outlier: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.r_[np.zeros(len(inlier)), np.ones(len(outlier))], np.r_[inlier, outlier]))


def stored_scores(loaded, x: np.ndarray, batch: int = 32) -> np.ndarray:
    """``ood_score`` exactly as predict computes it (:class:`cxrtool.ood.Scorer`)."""
    from cxrtool.ood import Scorer

    scorer = Scorer(loaded)
    out = []
    for i in range(0, len(x), batch):
        xb = x[i : i + batch]
        pad = np.concatenate([xb, np.repeat(xb[-1:], batch - len(xb), axis=0)]).astype(np.float32)[..., None]
        out.append(scorer.predict(pad)[1][: len(xb)])
    return np.concatenate(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("data", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--label", default=None)
    ap.add_argument("--figures", type=Path, action="append", default=[], help="folders of the tool's own PNG figures")
    ap.add_argument("--per-kind", type=int, default=25, help="generated pictures of each kind in dev and fresh")
    ap.add_argument("--sets", default="dev,fresh,fresh2,fresh3,fresh4,fresh5,fresh6",
                    help="comma-separated: dev, fresh, fresh2, ..., fresh6")
    args = ap.parse_args(argv)

    from scipy.special import logsumexp

    from cxrtool.artifact import load_model
    from cxrtool.imageio import read_image
    from cxrtool.inputs import cache_path, load_split, resize_image
    from cxrtool.manifest import read_manifest
    from cxrtool.ood import QUANTILE, Judge, edge_histograms, fit_ood_model, fit_stats, layout_thumbnails, picture_vectors, set_threshold

    label = args.label or args.model.stem
    args.out.mkdir(parents=True, exist_ok=True)
    copy = args.out / f"{label}-ood.keras"
    shutil.copyfile(args.model, copy)
    fit = fit_ood_model(copy, args.data)
    loaded = load_model(copy)
    size = int(loaded.info.image_size)
    manifest = read_manifest(args.data)
    # read a cache where one exists, never write one into the dataset folder
    splits = {s: load_split(manifest, s, size, cache=cache_path(manifest, s, size).is_file())
              for s in ("train", "val", "test")}
    x = {s: sp.x for s, sp in splits.items()}
    test_sources = sorted(set(splits["test"].sources)) if hasattr(splits["test"], "sources") else []
    makers = {"dev": lambda: non_xray_images(args.figures, args.per_kind),
              "fresh": lambda: fresh_non_xray_images(args.per_kind), "fresh2": fresh2_non_xray_images, "fresh3": fresh3_non_xray_images,
              "fresh4": fresh4_non_xray_images, "fresh5": fresh5_non_xray_images,
              "fresh6": fresh6_non_xray_images}
    sets = {name: makers[name]() for name in args.sets.split(",")}
    for name, items in sets.items():
        x[name] = np.stack([resize_image(g, size) for _, _, g, _ in items])
    record = loaded.info.extra["ood"]
    judge = Judge.from_record(record)
    outs = {k: probe_outputs(loaded.model, v, judge.grid) for k, v in x.items()}
    image_flag = {k: image_check_flags(((g, info) for *_, g, info in items), size) for k, items in sets.items()}
    # image checks on the dataset splits (the decoded files, one at a time: colour and size as predict sees them)
    for s in ("val", "test"):
        files = (read_image(manifest.root / r.file) for r in manifest.split(s))
        image_flag[s] = image_check_flags(((img.pixels, (img.width, img.height, img.colour)) for img in files), size)

    features, layout, picture, picture_scale = judge.features, judge.layout, judge.picture, judge.picture_scale
    y_train = splits["train"].y
    # each candidate: (scores, threshold); flagged above the threshold. The stored scores are
    # already divided by their thresholds; the others are thresholded at the val quantile
    # (energy is negative: comparing, not dividing, keeps its order)
    scores = {"stored: max(features, layout, picture, edges)": {k: stored_scores(loaded, v) for k, v in x.items()},
              "features (stored part)": {k: features.score(o[2]) for k, o in outs.items()},
              "layout (stored part)": {k: layout.score(layout_thumbnails(v)) for k, v in x.items()},
              "picture (stored part)": {k: picture.score(picture_vectors(v) / picture_scale) for k, v in x.items()},
              "edges (stored part)": {k: judge.edges.score(edge_histograms(v, *judge.edge_grid)) for k, v in x.items()}}
    image_parts = {k: np.maximum.reduce([scores[f"{p} (stored part)"][k] for p in ("layout", "picture", "edges")]) for k in x}
    scores["max(layout, picture, edges): the image parts without the features"] = image_parts
    # the previous release (b93d354): the feature part on the pooled features (the whole map's
    # average), fitted and thresholded as fit_ood does; the same image parts
    pooled = fit_stats(outs["train"][1], y_train)
    set_threshold(pooled, outs["val"][1], QUANTILE)
    scores["pooled features (previous release's feature part)"] = {k: pooled.score(o[1]) for k, o in outs.items()}
    scores["previous release: max(pooled features, layout, picture, edges)"] = {
        k: np.maximum(image_parts[k], scores["pooled features (previous release's feature part)"][k]) for k in x}
    thresholds = dict.fromkeys(scores, 1.0)
    raw = {}
    for name, kw in (("mahalanobis-pca64", dict(dims=64, residual=False)),
                     ("mahalanobis-full", dict(dims=10_000, residual=False))):
        st = fit_stats(outs["train"][1], y_train, **kw)
        raw[name] = {k: st.distance(o[1]) for k, o in outs.items()}
    raw["energy"] = {k: -logsumexp(o[3], axis=1) for k, o in outs.items()}
    raw["max-softmax"] = {k: 1.0 - o[0].max(axis=1) for k, o in outs.items()}
    for name, r in raw.items():
        scores[name], thresholds[name] = r, float(np.quantile(r["val"], QUANTILE))

    result = {"model": str(args.model), "data": str(args.data), "label": label, "fit": fit.record,
              "quantile": QUANTILE, "n": {k: int(len(v)) for k, v in x.items()}, "test_sources": test_sources,
              "image_checks": {k: float(v.mean()) for k, v in image_flag.items()}, "candidates": {}, "groups": {}}
    for name, sc in scores.items():
        flagged = {k: v > thresholds[name] for k, v in sc.items()}
        c = {"val_flagged": float(np.mean(flagged["val"])), "test_flagged_model": float(np.mean(flagged["test"])),
             "test_flagged_total": float(np.mean(flagged["test"] | image_flag["test"]))}
        for k in sets:
            c[f"auroc_test_vs_{k}"] = auroc(sc["test"], sc[k])
            c[f"{k}_flagged_model"] = float(np.mean(flagged[k]))
            c[f"{k}_flagged_total"] = float(np.mean(flagged[k] | image_flag[k]))
        result["candidates"][name] = c
    stored = scores["stored: max(features, layout, picture, edges)"]
    for k, items in sets.items():
        groups = np.asarray([g for g, *_ in items])
        both = (stored[k] > 1) | image_flag[k]
        result["groups"][k] = {g: {"n": int((groups == g).sum()), "image_check": int(image_flag[k][groups == g].sum()),
                                   "features": int((scores["features (stored part)"][k][groups == g] > 1).sum()),
                                   "layout": int((scores["layout (stored part)"][k][groups == g] > 1).sum()),
                                   "picture": int((scores["picture (stored part)"][k][groups == g] > 1).sum()),
                                   "edges": int((scores["edges (stored part)"][k][groups == g] > 1).sum()),
                                   "flagged": int(both[groups == g].sum())} for g in sorted(set(groups))}
        result[f"missed_{k}"] = [items[i][1] for i in np.flatnonzero(~both)]
    (args.out / f"{label}.json").write_text(json.dumps(result, indent=1))
    np.savez(args.out / f"{label}-scores.npz", **{k: np.asarray(v) for k, v in stored.items()},
             **{f"image_flag_{k}": v for k, v in image_flag.items()},
             **{f"groups_{k}": np.asarray([g for g, *_ in items]) for k, items in sets.items()})
    json.dump(result, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
