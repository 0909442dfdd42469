"""`cxrtool train`: a thin wrapper over :func:`cxrtool.train.train`.

Nothing here imports Keras or JAX at module import time (the CLI starts fast); the
training library is imported inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app
from .verify import VerifyOption, verify_splits

EPILOG = (
    "[bold]Examples[/bold]\n\n"
    "  cxrtool train data/ --model resnet50                      # paper settings, ImageNet weights\n\n"
    "  cxrtool train data/ --model mobilenetv2 --freeze-epochs 5 --patience 10\n\n"
    "  cxrtool train data/ --model cnn --epochs 30 --seed 1\n\n"
    "  cxrtool train data/ --model vit                           # 72 px, patch 3, 8 layers, batch 16\n\n"
    "  cxrtool train data/ --model resnet50 --weights none       # from scratch (offline)\n\n"
    "  cxrtool train data/ --model resnet50 --weights resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5\n\n"
    "  cxrtool train data/ --model resnet50 --resume             # continue an interrupted run\n\n"
    "  cxrtool train data/ --model resnet50 --precision mixed --devices all\n\n"
    "  cxrtool train data/ --model cnn --sampling source-balanced    # every source equally often within a class\n\n"
    "  cxrtool train data/ --model cnn --no-calibrate               # keep the raw softmax (no temperature)\n\n"
    "  cxrtool train data/ --model cnn --normalize equalize --acquisition light   # robustness to new hospitals\n\n"
    "  cxrtool train data/ --model cnn --crop lungs              # the network sees the lung fields only\n\n"
    "The model is saved as MODELS_DIR/NAME.keras (default ./models or $CXRTOOL_MODELS), with "
    "NAME.log.csv and NAME.curves.png next to it; its path is printed on stdout."
)

_ARCH_HELP = "Architecture: mobilenetv2, resnet50, resnet152, cnn or vit."


@app.command("train", epilog=EPILOG)
def train(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder made by `cxrtool build-dataset` (has manifest.csv).")],
    model: Annotated[str, typer.Option("--model", "-m", help=_ARCH_HELP)],
    epochs: Annotated[int, typer.Option(help="Epochs (paper: 100).")] = 100,
    batch_size: Annotated[Optional[int], typer.Option(help="Global batch size \\[default: 32, vit 16].")] = None,
    image_size: Annotated[Optional[int], typer.Option(help="Input size in px \\[default: 100, vit 72].")] = None,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-4,
    weights: Annotated[
        Optional[str],
        typer.Option(help="imagenet | none | PATH to a weights file \\[default: imagenet for mobilenetv2/resnet*, none for cnn/vit]."),
    ] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed (deterministic on CPU); default: random, recorded in the model.")] = None,
    models_dir: Annotated[Optional[Path], typer.Option(help="Models folder \\[default: $CXRTOOL_MODELS or ./models].")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Save the model here instead of MODELS_DIR/NAME.keras.")] = None,
    freeze_epochs: Annotated[int, typer.Option(help="Train the head only (backbone frozen) for this many epochs, then fine-tune all.")] = 0,
    fine_tune_lr: Annotated[Optional[float], typer.Option(help="Learning rate after unfreezing \\[default: --lr].")] = None,
    patience: Annotated[Optional[int], typer.Option(help="Early stopping: stop after this many epochs without improvement.")] = None,
    reduce_lr_patience: Annotated[Optional[int], typer.Option(help="Multiply the LR by --reduce-lr-factor after this many epochs without improvement.")] = None,
    reduce_lr_factor: Annotated[float, typer.Option(help="LR reduction factor on plateau.")] = 0.5,
    monitor: Annotated[str, typer.Option(help="val_loss or val_accuracy: picks the best checkpoint, early stopping and plateau.")] = "val_loss",
    class_weight: Annotated[str, typer.Option(help="balanced (weights inverse to class frequency) or none.")] = "balanced",
    sampling: Annotated[str, typer.Option(help="uniform (every train image once per epoch), source-balanced (within each class every source is drawn equally often; small sources repeat) or source-sqrt (in proportion to the square root of a source's size), e.g. --sampling source-sqrt.")] = "uniform",
    calibrate: Annotated[bool, typer.Option("--calibrate/--no-calibrate", help="Fit a temperature on the val split after training and store it in the model, so every command sees calibrated probabilities (e.g. --no-calibrate to keep the raw softmax).")] = True,
    dropout: Annotated[float, typer.Option(help="Dropout before the softmax head.")] = 0.3,
    bn_momentum: Annotated[float, typer.Option(help="Batch-norm moving-average momentum while training (0: keep the architecture's own).")] = 0.9,
    augment: Annotated[bool, typer.Option("--augment/--no-augment", help="In-graph augmentation while training.")] = True,
    rotation: Annotated[float, typer.Option(help="Max random rotation, degrees.")] = 10.0,
    shift: Annotated[float, typer.Option(help="Max random shift, fraction of the side.")] = 0.05,
    zoom: Annotated[float, typer.Option(help="Max random zoom, fraction.")] = 0.1,
    brightness: Annotated[float, typer.Option(help="Max brightness change, fraction of 255.")] = 0.1,
    contrast: Annotated[float, typer.Option(help="Max contrast change, fraction.")] = 0.1,
    flip: Annotated[bool, typer.Option("--flip/--no-flip", help="Random horizontal flips (off: laterality matters in CXRs).")] = False,
    acquisition: Annotated[str, typer.Option(
        help="Acquisition augmentation while training: none, light or strong (gamma, blur, noise, JPEG-like "
             "blocks, random resized crop, black border bands), e.g. --acquisition light.")] = "none",
    normalize: Annotated[str, typer.Option(
        help="Per-image intensity normalisation inside the model (predict/evaluate/gradcam apply it too): "
             "none, standardize, window, equalize or clahe, e.g. --normalize equalize.")] = "none",
    window_low: Annotated[float, typer.Option(help="--normalize window: lower percentile, e.g. --window-low 2.")] = 1.0,
    window_high: Annotated[float, typer.Option(help="--normalize window: upper percentile, e.g. --window-high 98.")] = 99.0,
    clahe_tiles: Annotated[int, typer.Option(help="--normalize clahe: tiles per side, e.g. --clahe-tiles 4.")] = 8,
    clahe_clip: Annotated[float, typer.Option(help="--normalize clahe: clip limit, e.g. --clahe-clip 3.")] = 2.0,
    crop: Annotated[str, typer.Option(
        help="Crop each image to its lung fields inside the model, before augmentation (classical image "
             "processing, no downloaded weights; an implausible box falls back to the whole image; "
             "predict/evaluate/gradcam apply it too): none or lungs, e.g. --crop lungs.")] = "none",
    precision: Annotated[str, typer.Option(help="float32 or mixed (bfloat16 compute, float32 weights).")] = "float32",
    devices: Annotated[str, typer.Option(help="all or N: data-parallel over the local accelerators.")] = "all",
    coordinator: Annotated[Optional[str], typer.Option(help="Multi-host: coordinator HOST:PORT \\[env KERAS_DISTRIBUTION_JOB_ADDRESSES].")] = None,
    num_processes: Annotated[Optional[int], typer.Option(help="Multi-host: number of processes \\[env KERAS_DISTRIBUTION_NUM_PROCESSES].")] = None,
    process_id: Annotated[Optional[int], typer.Option(help="Multi-host: this process' id \\[env KERAS_DISTRIBUTION_PROCESS_ID].")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the interrupted run of this model from its last checkpoint.")] = False,
    fresh: Annotated[bool, typer.Option("--fresh", help="Discard an unfinished run of this model and start over.")] = False,
    keep_checkpoints: Annotated[bool, typer.Option("--keep-checkpoints", help="Keep NAME.run/ (checkpoints) after success.")] = False,
    checkpoint_every: Annotated[int, typer.Option(help="Write the resumable checkpoint every N epochs.")] = 1,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Cache decoded, resized splits in DATASET/.cache.")] = True,
    steps_per_epoch: Annotated[Optional[int], typer.Option(help="Cap the steps per epoch (smoke tests).")] = None,
    patch_size: Annotated[Optional[int], typer.Option(help="ViT patch size \\[default: 3].")] = None,
    vit_layers: Annotated[Optional[int], typer.Option(help="ViT transformer layers \\[default: 8].")] = None,
    vit_dim: Annotated[Optional[int], typer.Option(help="ViT token dimension \\[default: 64].")] = None,
    vit_heads: Annotated[Optional[int], typer.Option(help="ViT attention heads \\[default: 4].")] = None,
    vit_mlp: Annotated[Optional[int], typer.Option(help="ViT MLP hidden size \\[default: 128].")] = None,
    verify: VerifyOption = False,
) -> None:
    """Train one of the paper's models on a dataset made by `build-dataset`."""
    from .. import console, interrupts
    from ..train import TrainOptions
    from ..train import train as run_training
    from ..train.checkpoints import resume_advice
    from ..train.loop import target_files
    from .app import state

    options = TrainOptions(
        epochs=epochs, batch_size=batch_size, image_size=image_size, lr=lr, weights=weights, seed=seed,
        dropout=dropout, bn_momentum=bn_momentum or None, freeze_epochs=freeze_epochs, fine_tune_lr=fine_tune_lr, monitor=monitor,
        patience=patience, reduce_lr_patience=reduce_lr_patience, reduce_lr_factor=reduce_lr_factor,
        class_weight=class_weight, sampling=sampling, calibrate=calibrate, augment=augment, rotation=rotation,
        shift=shift, zoom=zoom, brightness=brightness, contrast=contrast, flip=flip, acquisition=acquisition,
        normalize=normalize, window_low=window_low, window_high=window_high, clahe_tiles=clahe_tiles,
        clahe_clip=clahe_clip, crop=crop, precision=precision,
        devices=devices, coordinator=coordinator, num_processes=num_processes, process_id=process_id,
        resume=resume, fresh=fresh, keep_checkpoints=keep_checkpoints, checkpoint_every=checkpoint_every,
        cache=cache, steps_per_epoch=steps_per_epoch, patch_size=patch_size, vit_layers=vit_layers,
        vit_dim=vit_dim, vit_heads=vit_heads, vit_mlp=vit_mlp,
    )
    if verify:
        verify_splits(dataset, ("train", "val"))
    with console.progress(transient=True) as bar:
        task = {"id": None}

        def new_task(description: str, total: int | None) -> None:
            if task["id"] is not None:
                bar.remove_task(task["id"])
            task["id"] = bar.add_task(description, total=total)

        def on_event(event: dict) -> None:
            stage, done = event["stage"], event["done"]
            if stage == "status":
                console.info(event["message"])
            elif stage == "load":
                if task["id"] is None or done == 1:
                    new_task(f"loading {event['split']}", event["total"])
                bar.update(task["id"], completed=done)
            elif stage == "batch":
                if done == 0:
                    new_task(f"epoch {event['epoch']}/{event['epochs']}", event["total"])
                elif task["id"] is not None:
                    bar.update(task["id"], completed=done)
            elif stage == "epoch":
                row = event["logs"]
                mark = " *" if event["best_epoch"] == done else ""
                console.info(
                    f"epoch {done}/{event['total']}  loss {row.get('loss', float('nan')):.4f}  "
                    f"acc {row.get('accuracy', float('nan')):.3f}  val_loss {row.get('val_loss', float('nan')):.4f}  "
                    f"val_acc {row.get('val_accuracy', float('nan')):.3f}  lr {row['lr']:.2g}  {row['seconds']:.1f}s{mark}"
                )

        with interrupts.advice(lambda: resume_advice(target_files(model, models_dir, out), state["argv"])):
            result = run_training(dataset, model, options=options, models_dir=models_dir, out=out, progress=on_event)

    _render(result)
    if result.written:  # in a multi-process run only process 0 saves, and only it names the file
        typer.echo(str(result.model_path))


def _render(result) -> None:
    from rich.table import Table

    from ..console import err, verbosity

    if verbosity() <= 0:
        return
    best = result.best
    t = Table(title=f"{result.info.architecture}: best epoch {result.best_epoch} of {result.epochs_run}", show_header=False)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        if key in best:
            t.add_row(key, f"{best[key]:.4f}")
    opts = result.info.training.get("options", {})
    t.add_row("image size / batch", f"{result.info.image_size} / {opts.get('batch_size')}")
    t.add_row("weights", str(opts.get("weights")))
    t.add_row("normalize / acquisition", f"{opts.get('normalize', 'none')} / {opts.get('acquisition', 'none')}")
    t.add_row("crop", str(opts.get("crop", "none")))
    t.add_row("train images", ", ".join(f"{k} {v}" for k, v in result.counts.get("train", {}).items()))
    t.add_row("stopped early", "yes" if result.stopped_early else "no")
    cal = result.info.training.get("calibration")
    if cal:
        t.add_row("temperature", f"{cal['temperature']:.3f} (val ECE {cal['val_ece_before']:.3f} -> "
                                 f"{cal['val_ece_after']:.3f}, NLL {cal['val_nll_before']:.3f} -> {cal['val_nll_after']:.3f})")
    t.add_row("time", f"{result.seconds:.1f} s")
    t.add_row("model", str(result.model_path) + ("" if result.written else " (written by process 0)"))
    if result.log_csv and result.written:
        t.add_row("log", str(result.log_csv))
    if result.curves_png and result.written:
        t.add_row("curves", str(result.curves_png))
    for event in result.info.training.get("events", []):
        t.add_row("note", event)
    err.print(t)
