"""The figure of docs/ood.md: ood_score distributions, one panel per model, from the
``LABEL-scores.npz`` files that benchmarks/ood_detection.py writes.

    python benchmarks/ood_figure.py OUT.png A-scores.npz:"title A" [I-scores.npz:"title I" ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out, specs = Path(argv[0]), argv[1:]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(specs), 1, figsize=(10, 4.2 * len(specs)), squeeze=False)
    bins = np.logspace(-1.5, 4, 56)
    for ax, spec in zip(axes[:, 0], specs):
        path, _, title = spec.partition(":")
        z = np.load(path)
        none = np.zeros(len(z["val"]), bool)
        series = [("val split (thresholds fitted here)", z["val"], none, "tab:blue"),
                  ("test split", z["test"], np.zeros(len(z["test"]), bool), "tab:green")]
        def pooled(keys):
            keys = [k for k in keys if k in z]
            return np.concatenate([z[k] for k in keys]), np.concatenate([z[f"image_flag_{k}"] for k in keys])

        for keys, what, colour in ((("dev", "fresh", "fresh2", "fresh3", "fresh5"),
                                    "dev, fresh, fresh2, fresh3, fresh5 non-X-rays (the detector was designed on these)", "tab:red"),
                                   (("fresh4",), "fresh4 non-X-rays (the feature grid was designed on its misses)", "tab:purple"),
                                   (("fresh6",), "fresh6 non-X-rays (scored once, with the version shipped)", "tab:brown")):
            if any(k in z for k in keys):
                series.append((what, *pooled(keys), colour))
        for name, v, checked, colour in series:
            flagged = np.mean((v > 1) | checked)
            ax.hist(np.clip(v, bins[0], bins[-1]), bins=bins, histtype="step", linewidth=2.2, color=colour,
                    weights=np.full(len(v), 1.0 / len(v)),
                    label=f"{name}: n={len(v)}; score > 1: {np.mean(v > 1):.1%}; flagged (score or image check): {flagged:.1%}")
        ax.axvline(1.0, color="black", linestyle="--", linewidth=1.5)
        ax.text(1.1, 0.97, "threshold = 1\n(99.7th pct. of unseen\nX-rays, each score)", transform=ax.get_xaxis_transform(), va="top", fontsize=10)
        ax.set_xscale("log")
        ax.set_xlabel("ood_score (largest of the feature, layout, picture and edge distances / threshold; log scale)", fontsize=11)
        ax.set_ylabel("fraction of the group per bin", fontsize=11)
        ax.set_title(title or Path(path).stem, fontsize=12)
        ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1, frameon=False)
        ax.tick_params(labelsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
