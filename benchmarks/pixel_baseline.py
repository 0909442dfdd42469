"""The issue's pixel baseline: a logistic regression on 32 x 32 pixels, on any cxrtool dataset.

    python benchmarks/pixel_baseline.py DATASET [--size 32] [--json OUT.json]

Issue 11 measured that on X-rays from other hospitals the default cnn did no better than this
baseline; a mitigation only counts when it beats it. Trains scikit-learn's
``LogisticRegression`` (balanced class weights, standardised pixels, C chosen on the val split
from 1e-4..1) on the train split's images resized exactly as the models see them
(:func:`cxrtool.inputs.load_split`), and reports on val and test: accuracy, macro-F1, the
recall per class, what the test images are called, and, when the test split holds only normals
of a source that also gave covid images to train/val (protocol A in docs/generalisation.md), the
COVID-vs-normal AUC that docs/generalisation.md uses: that source's val covid images against the
held-out normals, ranked by p(covid) / (p(covid) + p(normal)).
Reads an existing split cache and never writes one into the dataset folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score, recall_score, roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from cxrtool.inputs import cache_path, load_split
    from cxrtool.manifest import read_manifest

    manifest = read_manifest(args.data)
    classes = list(manifest.classes)
    splits = {s: load_split(manifest, s, args.size, cache=cache_path(manifest, s, args.size).is_file())
              for s in ("train", "val", "test")}
    flat = {s: sp.x.reshape(len(sp.x), -1).astype(np.float32) / 255.0 for s, sp in splits.items()}

    best = None
    for c in (1e-4, 1e-3, 1e-2, 1e-1, 1.0):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=2000))
        clf.fit(flat["train"], splits["train"].y)
        acc = accuracy_score(splits["val"].y, clf.predict(flat["val"]))
        if best is None or acc > best[0]:
            best = (acc, c, clf)
    _, c, clf = best

    result = {"data": str(args.data), "size": args.size, "C": c, "classes": classes, "n": {s: len(sp.y) for s, sp in splits.items()}}
    for s in ("val", "test"):
        y, pred = splits[s].y, clf.predict(flat[s])
        present = sorted(set(y.tolist()))
        result[s] = {
            "accuracy": float(accuracy_score(y, pred)),
            "macro_f1": float(f1_score(y, pred, labels=present, average="macro")),
            "recall": {classes[k]: float(recall_score(y == k, pred == k)) for k in present},
            "predicted": {classes[k]: int(n) for k, n in sorted(Counter(pred.tolist()).items())},
            "mean_confidence": float(clf.predict_proba(flat[s]).max(axis=1).mean()),
        }
        if len(present) == len(classes):
            result[s]["macro_auc"] = float(roc_auc_score(y, clf.predict_proba(flat[s]), multi_class="ovr"))
    test_sources = set(splits["test"].sources)
    test_labels = set(splits["test"].y.tolist())
    covid, normal = classes.index("covid"), classes.index("normal")
    if test_labels == {normal} and len(test_sources) == 1:
        (source,) = test_sources
        val = splits["val"]
        pos = flat["val"][(val.y == covid) & (np.asarray(val.sources) == source)]
        if len(pos):
            p = clf.predict_proba(np.concatenate([pos, flat["test"]]))
            score = p[:, covid] / (p[:, covid] + p[:, normal] + 1e-12)
            truth = np.r_[np.ones(len(pos)), np.zeros(len(flat["test"]))]
            result["covid_vs_normal_auc"] = float(roc_auc_score(truth, score))
            result["covid_vs_normal_auc_n"] = [int(len(pos)), int(len(flat["test"]))]
    text = json.dumps(result, indent=1)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
