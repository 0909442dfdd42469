"""``cxrtool demo``: the whole pipeline on synthetic phantoms, nothing downloaded.

Every step calls the same library function as its subcommand (no second implementation):
phantom sources -> :func:`~cxrtool.build.build_dataset` -> :func:`~cxrtool.train.train`
(two small models) -> :func:`~cxrtool.ensemble.build_ensemble` ->
:func:`~cxrtool.evaluate.evaluate` -> :func:`~cxrtool.gradcam.gradcam_files` ->
:func:`~cxrtool.predict.predict_stream`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .labels import CLASSES
from .atomic import atomic_path
from .errors import UsageError


@dataclass(frozen=True)
class DemoSettings:
    """How big the demo is: a small setting in which every model learns.

    Measured on a 2-core CPU (docs/demo.md): with 24 phantoms per class and layout (164
    training images) the ViT stayed at chance after 8 epochs and overfitted when trained
    longer without augmentation; twice the phantoms, 8x8-pixel patches (a 6x6 token grid at
    48 px) and 80 epochs make it learn, at ~0.3 s per epoch after the first (compiling) one.
    """

    n_per_class: int = 48  # phantoms per class per source layout (about 330 training images)
    phantom_size: int = 96
    image_size: int = 48  # both models' input
    cnn_epochs: int = 8
    vit_epochs: int = 80  # the ViT starts slowly: near chance for its first 10-20 epochs
    vit_patch: int = 8
    vit_layers: int = 2
    vit_dim: int = 32
    gradcam_images: int = 6


@dataclass
class DemoResult:
    """What :func:`run_demo` made: the folder, seconds per step, the files a person opens and
    the evaluation document of :func:`~cxrtool.evaluate.evaluate` (test split)."""

    out: Path
    seconds: dict[str, float] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    evaluation: dict = field(default_factory=dict)

    @property
    def accuracy(self) -> dict[str, float]:
        """Test accuracy per model (cnn, vit, ensemble): the numbers that show the models learned."""
        return {name: doc["metrics"]["accuracy"] for name, doc in self.evaluation.get("models", {}).items()}

    @property
    def n_test(self) -> int:
        """Number of test images the accuracies are measured on."""
        return max((doc["metrics"]["n"] for doc in self.evaluation.get("models", {}).values()), default=0)

    @property
    def baseline(self) -> float:
        """Accuracy of always answering the test split's largest class: about what a model that
        learned nothing scores (the removed ``--quick`` setting's models scored 0.385 that way)."""
        docs = list(self.evaluation.get("models", {}).values())
        if not docs:
            return 0.0
        support = [row["support"] for row in docs[0]["metrics"]["per_class"].values()]
        return max(support) / sum(support)


def run_demo(
    out: str | Path,
    *,
    seed: int = 0,
    settings: DemoSettings = DemoSettings(),
    say: Callable[[str], None] = lambda s: None,
) -> DemoResult:
    """Run every step into ``out`` (which must be empty or absent) and return what it made."""
    from .build import BuildOptions, Thresholds, build_dataset
    from .ensemble import build_ensemble
    from .evaluate import evaluate
    from .gradcam import gradcam_files
    from .imageio import iter_images
    from .inference import open_model
    from .predict import predict_stream
    from .predict_writers import write_predictions
    from .synthetic import write_source_tree
    from .train import TrainOptions, train

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out}: folder is not empty; give --out a new folder")
    result = DemoResult(out)
    models = out / "models"

    def step(name: str):
        say(f"[bold]{name}[/bold]")
        result.seconds[name] = time.perf_counter()

    def done(name: str) -> None:
        result.seconds[name] = round(time.perf_counter() - result.seconds[name], 1)

    step("phantom sources")
    write_source_tree(out / "sources", n_per_class=settings.n_per_class, size=settings.phantom_size, seed=seed)
    done("phantom sources")

    step("build-dataset")
    data = out / "data"
    # phantoms are small and the tree plants down-scaled copies: keep them (min size 32, not 64)
    build = build_dataset([out / "sources"], data, BuildOptions(seed=seed, workers=1, thresholds=Thresholds(min_size=32)))
    done("build-dataset")
    say(f"  kept {build.report['total_kept']} images; excluded {sum(build.report['excluded_by_reason'].values())}")

    members = []
    for arch in ("cnn", "vit"):
        step(f"train {arch}")
        vit = arch == "vit"
        options = TrainOptions(
            epochs=settings.vit_epochs if vit else settings.cnn_epochs,
            image_size=settings.image_size,
            batch_size=8,
            lr=1e-3,
            seed=seed,
            monitor="val_accuracy",
            patch_size=settings.vit_patch if vit else None,
            vit_layers=settings.vit_layers if vit else None,
            vit_dim=settings.vit_dim if vit else None,
        )
        trained = train(data, arch, options=options, models_dir=models)
        members.append(arch)
        done(f"train {arch}")
        say(f"  {trained.model_path} (best val accuracy {trained.best.get('val_accuracy', float('nan')):.3f})")

    step("ensemble")
    build_ensemble(members, name="ensemble", method="mean", data=data, models_dir=models)
    done("ensemble")

    step("evaluate")
    result.evaluation = evaluate(data, [*members, "ensemble"], split="test", out=out / "eval", models_dir=models, n_boot=200)
    done("evaluate")

    step("gradcam")
    test_images = sorted((data / "test").rglob("*.*"))
    picks = [p for label in CLASSES for p in test_images if p.parent.name == label][:: max(1, len(test_images) // settings.gradcam_images)]
    ensemble = open_model("ensemble", models)
    for _ in gradcam_files(ensemble, picks[: settings.gradcam_images], out=out / "gradcam"):
        pass
    done("gradcam")

    step("predict")
    with atomic_path(out / "predictions.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        write_predictions(fh, predict_stream(ensemble, iter_images([data / "test"]), batch_size=32, workers=1),
                          ensemble.info.classes)
    done("predict")

    result.files = made_files(out)
    return result


def made_files(out: Path) -> list[Path]:
    """What a person opens after the demo: reports, figures, models; not the images themselves."""
    from .manifest import SPLITS

    files = []
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).parts
        if not path.is_file() or rel[0] == "sources" or ".cache" in rel or path.name.startswith("."):
            continue
        if rel[0] == "data" and len(rel) > 1 and rel[1] in SPLITS:
            continue
        files.append(path)
    return files
