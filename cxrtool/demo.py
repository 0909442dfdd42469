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

from . import CLASSES
from .atomic import atomic_path
from .errors import UsageError


@dataclass(frozen=True)
class DemoSettings:
    """How big the demo is; ``quick`` is the smallest setting (what the test runs)."""

    n_per_class: int  # phantoms per class per source layout
    phantom_size: int
    image_size: int  # CNN input
    vit_size: int  # ViT input (a multiple of its patch size, 3)
    epochs: int
    gradcam_images: int

    @classmethod
    def preset(cls, quick: bool) -> "DemoSettings":
        if quick:
            return cls(n_per_class=8, phantom_size=64, image_size=32, vit_size=15, epochs=3, gradcam_images=3)
        return cls(n_per_class=24, phantom_size=96, image_size=48, vit_size=24, epochs=8, gradcam_images=6)


@dataclass
class DemoResult:
    out: Path
    seconds: dict[str, float] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    evaluation: dict = field(default_factory=dict)


def run_demo(out: str | Path, *, quick: bool = False, seed: int = 0, say: Callable[[str], None] = lambda s: None) -> DemoResult:
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
    settings = DemoSettings.preset(quick)
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
        options = TrainOptions(
            epochs=settings.epochs,
            image_size=settings.image_size if arch == "cnn" else settings.vit_size,
            batch_size=8,
            lr=1e-3,
            seed=seed,
            monitor="val_accuracy",
            vit_layers=2 if arch == "vit" else None,
            vit_dim=32 if arch == "vit" else None,
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
