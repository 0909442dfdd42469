"""How well the OOD flag (cxrtool.imagecheck + cxrtool.ood) separates chest X-rays from
everything else, and which score to store: the numbers and the figure of docs/ood.md.

    python benchmarks/ood_detection.py MODEL.keras DATASET OUT_DIR [--label NAME] [--figure PNG]

Copies MODEL into OUT_DIR, fits the statistics on DATASET's train split (threshold: val 99th
percentile) with :func:`cxrtool.ood.fit_ood_model`, then scores, with every candidate score:

* the dataset's train, val and test splits (the test split is internal or a held-out source,
  depending on how DATASET was built);
* non-X-rays available offline: generated pictures (cxrtool.synthetic.nonxray, 8 kinds),
  matplotlib's sample data (photographs, a logo, an MRI slice, elevation maps) and the tool's
  own figures found under ``--figures`` folders (plots, contact sheets, Grad-CAM overlays).

Candidates: Mahalanobis in the top-64 PCA subspace with and without the residual term, full
Mahalanobis, energy (-logsumexp of the logits) and max softmax (1 - max p); each thresholded at
the val 99th percentile. Writes OUT_DIR/LABEL.json and, with ``--figure``, the score histogram.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
from pathlib import Path

import numpy as np


def non_xray_images(figure_dirs: list[Path], per_kind: int) -> list[tuple[str, str, np.ndarray, str | None]]:
    """``[(group, name, grey pixels, image-check flag)]`` of every non-X-ray."""
    from PIL import Image
    import matplotlib.cbook as cbook

    from cxrtool.imagecheck import check_image, colour_fraction
    from cxrtool.imageio import read_image
    from cxrtool.synthetic.nonxray import KINDS, make_non_xray

    out = []
    for kind in KINDS:
        for i in range(per_kind):
            size = [(256, 256), (320, 240), (240, 320), (512, 512)][i % 4]
            im = make_non_xray(kind, 1000 + i, size)
            g = np.asarray(im.convert("L"))
            out.append((f"generated:{kind}", f"{kind}-{i}", g,
                        check_image(g, width=im.width, height=im.height, colour=colour_fraction(im))))
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
            c = im.crop(box)
            g = np.asarray(c.convert("L"))
            out.append((f"matplotlib:{name}", f"{name}#{j}", g,
                        check_image(g, width=c.width, height=c.height, colour=colour_fraction(c))))
    for folder in figure_dirs:
        for p in sorted(folder.rglob("*.png")):
            img = read_image(p)
            out.append(("own figures", str(p), img.pixels,
                        check_image(img.pixels, width=img.width, height=img.height, colour=img.colour)))
    return out


def probe_outputs(model, x: np.ndarray, batch: int = 64):
    """(probabilities, pooled features, logits) for (n, s, s) uint8 images."""
    from cxrtool.backend import import_keras
    from cxrtool.models.names import LOGITS_LAYER, POOL_LAYER

    keras = import_keras()
    probe = keras.Model(model.inputs[0], [model.outputs[0], keras.layers.Flatten()(model.get_layer(POOL_LAYER).output),
                                          model.get_layer(LOGITS_LAYER).output])
    outs = [[], [], []]
    for i in range(0, len(x), batch):
        xb = x[i : i + batch]
        pad = np.concatenate([xb, np.repeat(xb[-1:], batch - len(xb), axis=0)]).astype(np.float32)[..., None]
        for k, o in enumerate(probe.predict_on_batch(pad)):
            outs[k].append(np.asarray(o, np.float64)[: len(xb)])
    return [np.concatenate(o) for o in outs]


def auroc(inlier: np.ndarray, outlier: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.r_[np.zeros(len(inlier)), np.ones(len(outlier))], np.r_[inlier, outlier]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("data", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--label", default=None)
    ap.add_argument("--figures", type=Path, action="append", default=[], help="folders of the tool's own PNG figures")
    ap.add_argument("--per-kind", type=int, default=25)
    ap.add_argument("--figure", type=Path, default=None)
    args = ap.parse_args(argv)

    from scipy.special import logsumexp

    from cxrtool.artifact import load_model
    from cxrtool.inputs import cache_path, load_split, resize_image
    from cxrtool.manifest import read_manifest
    from cxrtool.ood import fit_ood_model, fit_stats, set_threshold, Stats

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
    outs = {s: probe_outputs(loaded.model, sp.x) for s, sp in splits.items()}
    test_sources = sorted(set(splits["test"].sources)) if hasattr(splits["test"], "sources") else []
    nx = non_xray_images(args.figures, args.per_kind)
    x_nx = np.stack([resize_image(g, size) for _, _, g, _ in nx])
    outs["non-xray"] = probe_outputs(loaded.model, x_nx)
    image_flag = np.asarray([f is not None for *_, f in nx])
    groups = np.asarray([g for g, *_ in nx])
    # image checks on the dataset splits (the decoded files: colour and size as predict sees them)
    from cxrtool.imagecheck import check_image
    from cxrtool.imageio import read_image

    split_checks = {}
    for s in ("val", "test"):
        rows = manifest.split(s)
        flags = []
        for r in rows:
            img = read_image(manifest.root / r.file)
            flags.append(check_image(img.pixels, width=img.width, height=img.height, colour=img.colour) is not None)
        split_checks[s] = np.asarray(flags)

    y_train = splits["train"].y
    candidates = {}
    stored = Stats.from_record(loaded.info.extra["ood"])
    candidates["mahalanobis-pca64+residual (stored)"] = lambda o: stored.distance(o[1])
    for name, kw in (("mahalanobis-pca64", dict(dims=64, residual=False)),
                     ("mahalanobis-full", dict(dims=10_000, residual=False))):
        st = fit_stats(outs["train"][1], y_train, **kw)
        candidates[name] = (lambda st: lambda o: st.distance(o[1]))(st)
    candidates["energy"] = lambda o: -logsumexp(o[2], axis=1)
    candidates["max-softmax"] = lambda o: 1.0 - o[0].max(axis=1)

    result = {"model": str(args.model), "data": str(args.data), "label": label, "fit": fit.record,
              "n": {k: int(len(v[0])) for k, v in outs.items()}, "test_sources": test_sources,
              "image_checks": {"val_flagged": float(split_checks["val"].mean()),
                               "test_flagged": float(split_checks["test"].mean()),
                               "non_xray_flagged": float(image_flag.mean())},
              "candidates": {}, "non_xray_groups": {}}
    for name, fn in candidates.items():
        s = {k: np.asarray(fn(v), np.float64) for k, v in outs.items()}
        thr = float(np.quantile(s["val"], 0.99))
        model_flag_nx = s["non-xray"] > thr
        both = model_flag_nx | image_flag
        result["candidates"][name] = {
            "threshold": thr,
            "auroc_test_vs_nonxray": auroc(s["test"], s["non-xray"]),
            "val_flagged": float(np.mean(s["val"] > thr)),
            "test_flagged_model": float(np.mean(s["test"] > thr)),
            "test_flagged_total": float(np.mean((s["test"] > thr) | split_checks["test"])),
            "non_xray_flagged_model": float(model_flag_nx.mean()),
            "non_xray_flagged_total": float(both.mean()),
        }
        if name.endswith("(stored)"):
            for g in sorted(set(groups)):
                m = groups == g
                result["non_xray_groups"][g] = {"n": int(m.sum()), "image_check": int(image_flag[m].sum()),
                                                "model": int(model_flag_nx[m].sum()), "flagged": int(both[m].sum())}
            result["missed"] = [nx[i][1] for i in np.flatnonzero(~both)]
            stored_scores = {k: (v / thr).tolist() for k, v in s.items()}
    (args.out / f"{label}.json").write_text(json.dumps(result, indent=1))
    np.savez(args.out / f"{label}-scores.npz", **{k: np.asarray(v) for k, v in stored_scores.items()},
             image_flag=image_flag, groups=groups)
    json.dump(result, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
