"""The ``ood`` entry of each model in ``metrics.json``: how much of the evaluation set the
model flags (:mod:`cxrtool.ood`) per source and per class, and the headline metrics with and
without the flagged images, and whether the set as a whole scores higher than the model's val
images (:func:`cxrtool.ood.group_shift`). On a folder from another hospital these are the first
signs that its X-rays differ from the training data; on the internal test split, the false-flag
and false-alarm rates.

The image checks run on the decoded, resized images the models see (colour and the original
aspect ratio are not kept by the evaluation loader, so those two checks do not run here)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..imagecheck import PICTURE_KEYS, batch_checks, views
from ..ood import SHIFT_MIN_IMAGES, flag_for, group_shift


def image_checks(x: np.ndarray, chunk: int = 256) -> tuple[list[str | None], np.ndarray]:
    """The image-check flag and the picture-score statistics (:func:`cxrtool.ood.picture_vectors`)
    of each resized image ``x`` (n, s, s) uint8, from one :func:`batch_checks` per chunk (the
    checks and the picture score read the same numbers)."""
    flags: list[str | None] = []
    pictures = np.empty((len(x), len(PICTURE_KEYS)), np.float64)
    for i in range(0, len(x), chunk):  # ``x`` may be a memory map larger than memory
        f, pictures[i : i + chunk] = batch_checks([views(np.asarray(img)) for img in x[i : i + chunk]])
        flags += f
    return flags, pictures


def _headline(y: np.ndarray, probs: np.ndarray, n_classes: int) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    if not len(y):
        return {"n": 0, "accuracy": None, "macro_f1": None}
    pred = probs.argmax(axis=1)
    return {"n": int(len(y)), "accuracy": float(accuracy_score(y, pred)),
            "macro_f1": float(f1_score(y, pred, labels=list(range(n_classes)), average="macro", zero_division=0))}


def _fractions(keys: Sequence[str], flagged: np.ndarray) -> dict:
    out = {}
    for k in sorted(set(keys)):
        m = np.asarray([kk == k for kk in keys])
        out[k] = {"n": int(m.sum()), "flagged": int(flagged[m].sum()), "fraction": float(flagged[m].mean())}
    return out


def ood_section(x: np.ndarray, y: np.ndarray, probs: np.ndarray, scores: np.ndarray | None,
                sources: Sequence[str], classes: Sequence[str], checks: Sequence[str | None] | None = None,
                reference: tuple[dict | None, str] = (None, "the model has no OOD statistics")) -> dict:
    """Flag counts overall, per source and per class, accuracy / macro F1 on all images and on
    the unflagged ones, and the group-shift test. ``scores``: the model's ``ood_score`` (None:
    the model has no statistics, only the image checks count); ``checks``: the image-check
    flags of ``x`` when the caller has them (:func:`image_checks`); ``reference``: the model's
    val reference scores, or None and why not (:func:`cxrtool.ood.shift_reference`)."""
    checks = image_checks(x)[0] if checks is None else list(checks)
    flags = [flag_for(None if scores is None else float(s), f) for s, f in
             zip(scores if scores is not None else [None] * len(checks), checks)]
    flagged = np.asarray([bool(f) for f in flags], dtype=bool)
    names = [classes[int(t)] for t in y]
    return {
        "available": scores is not None,
        "n": int(len(flags)),
        "flagged": int(flagged.sum()),
        "fraction": float(flagged.mean()) if len(flags) else 0.0,
        "by_flag": {f: int(sum(1 for g in flags if g == f)) for f in sorted({g for g in flags if g})},
        "per_source": _fractions(list(sources), flagged),
        "per_class": _fractions(names, flagged),
        "all": _headline(y, probs, len(classes)),
        "unflagged": _headline(y[~flagged], probs[~flagged], len(classes)),
        "scores": None if scores is None else {"median": float(np.median(scores)),
                                                "p95": float(np.quantile(scores, 0.95))},
        "group_shift": (group_shift(scores, names, reference[0]) if scores is not None and reference[0] is not None
                        else {"available": False, "tested": 0, "shifted": False, "why": reference[1]}),
    }


def shift_sentence(shift: dict) -> str:
    """One line on the group-shift test (:func:`cxrtool.ood.group_shift`) for people."""
    if not shift["available"]:
        return f"group shift not tested: {shift.get('why', 'no val reference scores')}"
    if not shift["tested"]:
        return (f"group shift not tested: no class has {SHIFT_MIN_IMAGES} images both here and among the "
                "model's val images")
    tested = {c: e for c, e in shift["per_class"].items() if "p" in e}

    def said(c: str, e: dict) -> str:
        return (f"{c} median {e['median']:.3f} against {e['reference_median']:.3f} "
                f"(KS D {e['ks_d']:.2f}, p {e['p']:.2g}, {e['n']} images)")

    shifted = [said(c, e) for c, e in tested.items() if e["shifted"]]
    if shifted:
        return ("as a group these images score higher than the model's val images of the same class: "
                + "; ".join(shifted) + ". The set as a whole differs from the model's training data")
    c, e = max(tested.items(), key=lambda kv: kv[1]["ks_d"])
    return (f"no group shift against the model's val images ({len(tested)} class(es) tested; largest: "
            + said(c, e) + ")")


def ood_markdown(doc: dict) -> str:
    """The report.md table: flagged fraction and the metrics with and without flagged images."""
    rows = [(label, m["ood"]) for label, m in doc["models"].items() if m.get("ood")]
    if not rows:
        return ""

    def f3(v):
        return "" if v is None else f"{v:.3f}"

    out = ["| Model | Statistics | Flagged | Accuracy (all) | Accuracy (unflagged) | Macro F1 (all) | Macro F1 (unflagged) |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for label, o in rows:
        out.append(f"| {label} | {'yes' if o['available'] else 'none (image checks only)'} | "
                   f"{o['flagged']} of {o['n']} ({o['fraction']:.1%}) | {f3(o['all']['accuracy'])} | "
                   f"{f3(o['unflagged']['accuracy'])} | {f3(o['all']['macro_f1'])} | {f3(o['unflagged']['macro_f1'])} |")
    for label, o in rows:
        parts = [f"{k} {v['flagged']}/{v['n']}" for k, v in {**o["per_source"], **o["per_class"]}.items()]
        out.append("")
        out.append(f"{label}, flagged per source and class: " + ", ".join(parts))
        if "group_shift" in o:
            out.append("")
            out.append(f"{label}, {shift_sentence(o['group_shift'])}.")
    return "\n".join(out) + "\n"


__all__ = ["image_checks", "ood_markdown", "ood_section", "shift_sentence"]
