"""The shortcut audit: can a quick linear probe tell an image's SOURCE (hospital, dataset)
from the whole thumbnail, from its border alone, or from file properties, and how much of the
label does the source explain?

Why: a classifier trained on a merge of public sources scores well on a split of that merge
while learning where an image comes from instead of the disease (issue 11 measured accuracy
0.91 internally and 0.49 on other hospitals). When the label follows the source and the
source can be read off the image border (burnt-in text, markers, collimation, padding) a
model can learn the hospital instead of the disease; this module measures both, on the kept
images, in seconds, and says so loudly.

Every probe is ``StandardScaler`` + ``RidgeClassifier(class_weight="balanced")`` (a closed-form
linear probe: seconds on 5000 images where logistic regression took tens) scored by
balanced accuracy over out-of-fold predictions of a grouped, stratified cross-validation
(``StratifiedGroupKFold`` on the build's groups, so duplicates and one patient's images never
sit on both sides). scikit-learn is imported inside :func:`shortcut_audit`, so importing
:mod:`cxrtool.build` stays cheap. Plain lists and arrays in, a dict out.
"""

from __future__ import annotations

import math
import time
import warnings
from collections import Counter
from collections.abc import Sequence

import numpy as np

from ..sampling import stratified_sample
from .analyse import THUMB
from .report import DOMINANT_SOURCE
from .types import Analysis

#: At most this many kept images are probed (a seeded sample stratified by source and class).
MAX_IMAGES = 5000
#: Ridge penalty of the probes (on standardised features).
ALPHA = 10.0
#: Fewer kept images than this: no cross-validated probe means anything; the audit is skipped.
MIN_IMAGES = 20
#: Cross-validation folds (fewer when there are fewer groups).
FOLDS = 5
#: Border band width as a fraction of each side: the outer 1/8 (4 of 32 px) of the thumbnail.
BORDER = 1 / 8
#: Skill = (balanced accuracy - chance) / (1 - chance): 0 at chance, 1 perfect.
#: At or above STRONG a probe "tells it easily"; below WEAK it is "at chance".
STRONG = 0.5
WEAK = 0.1
#: A source is "recognised" by a probe when its recall (its images called it) and its
#: specificity (other images not called it) both reach this.
RECOGNISED = 0.8
#: The label "follows the source" when predicting each source's majority class removes at
#: least this share of the errors of always predicting the overall majority class.
FOLLOWS = 0.3


def border_mask(side: int = THUMB, frac: float = BORDER) -> np.ndarray:
    """Boolean (side, side) mask of the outer band ``round(side * frac)`` px wide (centre masked)."""
    band = max(1, round(side * frac))
    mask = np.ones((side, side), bool)
    mask[band : side - band, band : side - band] = False
    return mask


def thumbnails(analyses: Sequence[Analysis]) -> np.ndarray:
    """(N, THUMB, THUMB) uint8 from the thumbnails the analysis kept."""
    return np.frombuffer(b"".join(a.thumb for a in analyses), np.uint8).reshape(len(analyses), THUMB, THUMB)


def file_features(analyses: Sequence[Analysis]) -> np.ndarray:
    """One row per file: one-hot format and Pillow mode, width, height, aspect, bit depth,
    log file size and bytes per pixel (what a file says about itself, not its pixels)."""
    cols = []
    for values in ([a.format for a in analyses], [a.mode for a in analyses]):
        _, inverse = np.unique(values, return_inverse=True)
        cols.append(np.eye(inverse.max() + 1)[inverse])
    w = np.array([a.width for a in analyses], float)
    h = np.array([a.height for a in analyses], float)
    size = np.array([a.file_size for a in analyses], float)
    numeric = [w, h, w / np.maximum(h, 1), np.array([a.bits for a in analyses], float), np.log1p(size), size / np.maximum(w * h, 1)]
    return np.hstack(cols + [np.column_stack(numeric)])


def verdict(skill: float) -> str:
    """Plain words for a probe's skill."""
    if skill >= STRONG:
        return "far above chance"
    if skill >= WEAK:
        return "above chance"
    return "at chance"


def grouped_folds(y: Sequence[str], groups: Sequence[str], seed: int, folds: int = FOLDS) -> list:
    """(train, test) index pairs: ``StratifiedGroupKFold`` (shuffled, seeded), so a group never
    sits on both sides and each fold keeps the class (or source) mix. Computed once per target
    and shared by its probes."""
    from sklearn.model_selection import StratifiedGroupKFold

    largest = max(Counter(y).values())
    n_splits = max(2, min(folds, len(set(groups)), largest))
    cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # a class with fewer groups than folds: allowed, it lands in fewer folds
        warnings.simplefilter("ignore")
        return list(cv.split(np.zeros(len(y)), np.asarray(y), np.asarray(groups)))


def probe(x: np.ndarray, y: Sequence[str], folds: list, alpha: float = ALPHA) -> dict:
    """Balanced accuracy of standardise + ridge classifier (balanced class weights), from
    out-of-fold predictions over ``folds``, next to chance (1 / number of classes) and the
    majority rate; recall per class says which sources (or classes) give themselves away."""
    from sklearn.linear_model import RidgeClassifier
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(y)
    names, counts = np.unique(y, return_counts=True)
    chance = 1.0 / len(names)
    model = make_pipeline(StandardScaler(), RidgeClassifier(alpha=alpha, class_weight="balanced"))
    pred = cross_val_predict(model, x.astype(np.float32), y, cv=folds)
    score = float(balanced_accuracy_score(y, pred))
    skill = (score - chance) / (1.0 - chance)
    cm = confusion_matrix(y, pred, labels=names).astype(float)
    recall = np.diag(cm) / cm.sum(axis=1)
    # one-vs-rest specificity: the share of the OTHER rows not called this class (base-rate free,
    # unlike precision: a probe that calls everything the big source has precision = its share)
    negatives = cm.sum() - cm.sum(axis=1)
    specificity = 1.0 - (cm.sum(axis=0) - np.diag(cm)) / np.maximum(negatives, 1)
    return {
        "balanced_accuracy": round(score, 4),
        "chance": round(chance, 4),
        "majority_rate": round(float(counts.max() / counts.sum()), 4),
        "skill": round(skill, 4),
        "verdict": verdict(skill),
        "recall": {str(k): round(float(r), 4) for k, r in zip(names, recall)},
        "specificity": {str(k): round(float(r), 4) for k, r in zip(names, specificity)},
        "features": int(x.shape[1]),
        "folds": len(folds),
    }


def label_vs_source(labels: Sequence[str], sources: Sequence[str]) -> dict:
    """How much of the label the source explains: accuracy of predicting each image's label
    as its source's most common label, against always predicting the most common label; the
    share of those errors it removes (lift); normalised mutual information and Cramér's V;
    and per class the share from its dominant source."""
    from scipy.stats.contingency import association
    from sklearn.metrics import normalized_mutual_info_score

    n = len(labels)
    pairs = Counter(zip(sources, labels))
    src_names, cls_names = sorted(set(sources)), sorted(set(labels))
    table = np.array([[pairs.get((s, c), 0) for c in cls_names] for s in src_names])
    majority = table.sum(axis=0).max() / n
    source_only = table.max(axis=1).sum() / n
    lift = (source_only - majority) / (1 - majority) if majority < 1 else 0.0
    cramers_v = float(association(table, method="cramer")) if min(table.shape) > 1 else 0.0
    per_class = {}
    for j, c in enumerate(cls_names):
        i = int(table[:, j].argmax())
        per_class[c] = {"dominant_source": src_names[i], "share": round(float(table[i, j] / table[:, j].sum()), 4)}
    return {
        "source_only_accuracy": round(float(source_only), 4),
        "majority_rate": round(float(majority), 4),
        "lift": round(float(lift), 4),
        "follows_source": bool(lift >= FOLLOWS),
        "normalised_mutual_information": round(float(normalized_mutual_info_score(labels, sources)), 4),
        "cramers_v": round(cramers_v if math.isfinite(cramers_v) else 0.0, 4),
        "per_class": per_class,
    }


def shortcut_audit(
    analyses: Sequence[Analysis],
    sources: Sequence[str],
    labels: Sequence[str],
    groups: Sequence[str],
    seed: int = 0,
    max_images: int = MAX_IMAGES,
    learned: Sequence[bool] | None = None,
) -> dict:
    """The audit of the kept images (one entry per image in each sequence): source probes on
    the whole thumbnail, the border band and the file properties; a label probe on the
    border band; label-versus-source statistics; and ``warning``, the loud message (or "").

    ``learned`` marks the images a model learns from (train and val). When given, the label
    statistics and the label probe use those images only: an external test split's label
    does not follow its source the way training's does (a held-out source of normals is 100%
    normal by construction), so counting it would misstate what a model can learn. The
    source probes use every kept image."""
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    start = time.perf_counter()
    # The probes' matrices are small (<= 5000 x 448): one BLAS thread solves a 448 x 448 system
    # in ~2 ms; two OpenBLAS threads on a busy machine took 0.9 s for the same solve (measured).
    with threadpool_limits(1):
        out = _audit(analyses, sources, labels, groups, seed, max_images, learned)
    out["seconds"] = round(time.perf_counter() - start, 2)
    return out


def _audit(analyses, sources, labels, groups, seed: int, max_images: int, learned) -> dict:  # noqa: ANN001 - see shortcut_audit
    n_sources = len(set(sources))
    band = max(1, round(THUMB * BORDER))
    out: dict = {
        "images": len(sources),
        "sources": dict(sorted(Counter(sources).items())),
        "thumbnail": THUMB,
        "border_px": band,
        "border": f"outer {band} of {THUMB} px on each side (1/{round(1 / BORDER)}); the centre is masked",
        "probe": "standardise + ridge classifier (balanced), up to 5-fold grouped stratified CV, balanced accuracy",
        "whole_image": f"{THUMB // 2}x{THUMB // 2} (2x2 means of the thumbnail)",
    }
    if n_sources < 2:
        out["skipped"] = f"only one source ({next(iter(out['sources']), 'none')}): nothing to tell apart"
    elif len(sources) < MIN_IMAGES:
        out["skipped"] = f"only {len(sources)} kept images: too few for a cross-validated probe (at least {MIN_IMAGES})"
    if "skipped" in out:
        out["warning"] = ""
        return out
    if any(not a.thumb for a in analyses):
        raise ValueError("shortcut_audit needs the thumbnails of build.analyse (Analysis.thumb)")
    learn = [i for i in range(len(labels)) if learned is None or learned[i]]
    if learned is not None:
        out["label_images"] = f"{len(learn)} train/val images (the external test split is left out)"
    out["label_vs_source"] = label_vs_source([labels[i] for i in learn], [sources[i] for i in learn])
    idx = stratified_sample([f"{s}\0{c}" for s, c in zip(sources, labels)], max_images, seed)
    out["sampled"] = int(len(idx))
    a = [analyses[i] for i in idx]
    src = [sources[i] for i in idx]
    lab = [labels[i] for i in idx]
    grp = [groups[i] or f"row{i}" for i in idx]
    thumbs = thumbnails(a).astype(np.float32) / 255.0
    half = THUMB // 2  # the whole image at 16 x 16 (2 x 2 means): 4x fewer features, seconds not tens
    whole = thumbs.reshape(len(a), half, 2, half, 2).mean(axis=(2, 4)).reshape(len(a), -1)
    border = thumbs[:, border_mask()]
    folds = grouped_folds(src, grp, seed)
    out["source_probes"] = {
        "whole_image": probe(whole, src, folds),
        "border": probe(border, src, folds),
        "file_properties": probe(file_features(a), src, folds),
    }
    on = [k for k, i in enumerate(idx) if learned is None or learned[i]]
    lab_on, grp_on = [lab[k] for k in on], [grp[k] for k in on]
    if len(set(lab_on)) > 1:
        out["label_probes"] = {"border": probe(border[on], lab_on, grouped_folds(lab_on, grp_on, seed))}
    out["warning"] = shortcut_warning(out)
    return out


def shortcut_warning(audit: dict) -> str:
    """The loud message when a model could learn the source (or a marker) instead of the
    disease. (a) A class comes mostly from one source (>= DOMINANT_SOURCE of it, the report's
    dominance rule) and the border probe recognises that source (recall and specificity >=
    RECOGNISED); or (b) the label itself can be told from the border alone (skill >= STRONG).
    Empty when neither holds."""
    border = audit["source_probes"]["border"]
    reasons = []
    for label, dom in audit["label_vs_source"]["per_class"].items():
        src = dom["dominant_source"]
        recall, specificity = border["recall"].get(src, 0.0), border["specificity"].get(src, 0.0)
        if dom["share"] >= DOMINANT_SOURCE and recall >= RECOGNISED and specificity >= RECOGNISED:
            reasons.append(
                f"{dom['share']:.0%} of {label} images come from {src} and the image border alone recognises {src} "
                f"(recall {recall:.2f}, specificity {specificity:.2f})"
            )
    if reasons:
        reasons = ["; ".join(reasons) + ": a model can learn the hospital instead of the disease"]
    label_border = audit.get("label_probes", {}).get("border")
    if label_border and label_border["skill"] >= STRONG:
        reasons.append(
            f"the label can be told from the image border alone, without the lungs (balanced accuracy "
            f"{label_border['balanced_accuracy']:.2f}, chance {label_border['chance']:.2f}): a model can learn "
            "markers, text or framing instead of the disease"
        )
    return "SHORTCUT: " + "; and ".join(reasons) if reasons else ""
