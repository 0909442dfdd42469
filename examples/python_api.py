"""The whole pipeline from Python, through the same library functions the CLI wraps.

    python examples/python_api.py OUT_FOLDER [SOURCES...]

Without SOURCES it writes a small phantom source tree first (nothing downloaded). Every call
below is documented in docs/api.md; tests/test_api.py runs this file with tiny settings.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cxrtool
from cxrtool.build import BuildOptions, Thresholds, build_dataset
from cxrtool.ensemble import build_ensemble
from cxrtool.evaluate import evaluate
from cxrtool.gradcam import explain
from cxrtool.imageio import iter_images, load_image
from cxrtool.predict import predict_paths
from cxrtool.predict_writers import write_predictions
from cxrtool.train import TrainOptions, train


def main(out: Path, sources: list[Path] | None = None, *, image_size: int = 48, epochs: int = 8) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    if not sources:
        from cxrtool.synthetic import write_source_tree

        write_source_tree(out / "sources", n_per_class=12, size=64)
        sources = [out / "sources"]

    # 1. build-dataset: dedup, QC, balance, group-aware split; the report is plain data
    built = build_dataset(sources, out / "data", BuildOptions(seed=0, thresholds=Thresholds(min_size=32)))
    print("split sizes:", built.report["counts_per_split"])

    # 2. train two models; each is one self-contained .keras file
    options = TrainOptions(epochs=epochs, image_size=image_size, batch_size=8, lr=1e-3, seed=0, monitor="val_accuracy")
    paths = [train(out / "data", arch, options=options, models_dir=out / "models").model_path for arch in ("cnn", "vit")]

    # 3. ensemble them (weights fitted on the val split)
    ens = build_ensemble(paths, method="weighted", data=out / "data", models_dir=out / "models")
    print("ensemble weights:", ens.weights)

    # 4. evaluate all three on the test split; the result is the metrics.json document
    doc = evaluate(out / "data", [*paths, ens.model_path], out=out / "eval", n_boot=100)
    for name, entry in doc["models"].items():
        print(f"{name}: accuracy {entry['metrics']['accuracy']:.3f}")

    # 5. load a model anywhere (custom layers registered), explain and predict
    model = cxrtool.load_model(ens.model_path)
    test_images = list(iter_images([out / "data" / "test"]))[:4]
    maps = explain(model, [load_image(p) for p in test_images])
    print("heat map of the first image:", maps[0].heatmap.shape, maps[0].label, f"{maps[0].probability:.3f}")
    rows = list(predict_paths(model, test_images))
    with open(out / "predictions.csv", "w", newline="") as fh:
        write_predictions(fh, [rows], model.info.classes)
    return doc


if __name__ == "__main__":
    main(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]])
