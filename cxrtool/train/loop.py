"""``train()``: the library entry behind ``cxrtool train`` (no CLI logic here).

It validates everything it can *before* writing anything (options, architecture, image
size, weights, an unfinished run, the dataset's splits and classes), then trains with the
cached uint8 input pipeline (:mod:`cxrtool.inputs`), in-graph augmentation, per-epoch
validation, a best-val checkpoint, optional early stopping / LR reduction on plateau /
frozen-backbone warm-up (:mod:`.callbacks`), resumable checkpoints (:mod:`.checkpoints`),
optional source-balanced sampling, a temperature fitted on val after training
(:mod:`cxrtool.evaluate.calibration`), and saves one self-contained ``.keras`` artifact atomically, with its CSV log and curves
(:mod:`.curves`). Keras is imported when :func:`train` runs, not with this module.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..version import __version__
from ..artifact import ModelInfo, load_model, save_model
from ..backend import import_keras
from ..evaluate.calibration import calibrate
from ..ood import fit_ood
from ..errors import CxrError, DatasetError
from ..locks import hold
from ..inputs import RESIZE, SplitData, balanced_class_weights, load_dataset, make_feeder, make_val_feeder
from ..models import ArchSpec, backbone_layer_names, build_model, check_image_size, get_spec, normalise_weights
from ..progress import ProgressFn, report
from .callbacks import make_monitor
from .checkpoints import (RunFiles, check_resumable, new_state, previous_state, restore_seed_states, run_files,
                          save_checkpoint)
from .curves import plot_curves, write_log_csv
from .distribute import (Topology, agree_seed, finish, is_collective_failure, leave_at_exit, local_copy,
                         multihost_settings, peer_failure, setup_distribution, shard_validation)
from .options import SOURCE_SAMPLING_POWER, TrainOptions


@dataclass
class TrainResult:
    model_path: Path
    info: ModelInfo
    history: list[dict]  # one row per epoch: epoch, loss, accuracy, val_*, lr, seconds, images_per_s
    best_epoch: int  # 1-based
    best: dict  # metrics of the best epoch
    epochs_run: int
    stopped_early: bool
    seconds: float
    log_csv: Path | None = None
    curves_png: Path | None = None
    counts: dict = field(default_factory=dict)  # images per class in train and val
    model: Any = None  # the trained keras.Model (best-val weights), as saved
    #: this process wrote the files (always, except processes 1.. of a multi-process run, whose
    #: ``info`` then lacks what process 0 added after training: calibration, OOD statistics)
    written: bool = True


@dataclass
class RunPlan:
    """A run's settings after validation (nothing written yet)."""

    spec: ArchSpec
    size: int
    batch: int
    weights: str
    arch_options: dict
    files: RunFiles
    previous: dict | None  # the state of the run being resumed


def train(
    dataset: str | Path,
    model_name: str,
    *,
    options: TrainOptions | None = None,
    models_dir: str | Path | None = None,
    out: str | Path | None = None,
    progress: ProgressFn | None = None,
    callbacks: Sequence[Any] = (),
) -> TrainResult:
    """Train ``model_name`` on ``dataset`` (a ``build-dataset`` folder) and save it.

    ``progress`` (:mod:`cxrtool.progress`) gets events with stage ``status`` (``message``),
    ``load`` (images of ``split`` decoded), ``batch`` (steps of ``epoch``) and ``epoch``
    (``logs``, ``best_epoch``). ``callbacks``: extra Keras callbacks (benchmarks, tests).
    Raises :class:`~cxrtool.errors.CxrError` subclasses for every user error, before writing.
    """
    o = options or TrainOptions()
    o.validate()
    files = target_files(model_name, models_dir, out)
    # one run per model file at a time; in a multi-host run only the chief writes it
    _, processes, pid = multihost_settings(o)
    try:
        with hold(files.model) if pid == 0 else contextlib.nullcontext():
            return _train(dataset, model_name, o, models_dir, out, progress, callbacks)
    except BaseException as exc:
        if processes > 1:  # the others are waiting in a collective with this process: let them go
            leave_at_exit(exc.exit_code if isinstance(exc, CxrError) else 130 if isinstance(exc, KeyboardInterrupt) else 1)
        raise


def _train(dataset, model_name: str, o: TrainOptions, models_dir, out, progress: ProgressFn | None,
           callbacks: Sequence[Any]) -> TrainResult:
    plan = plan_run(model_name, o, models_dir, out)

    def say(message: str) -> None:
        report(progress, "status", 0, None, message=message)

    t_start = time.perf_counter()
    data = load_dataset(dataset, plan.size, ("train", "val"), cache=o.cache, progress=progress)
    if plan.previous is not None:
        check_resumable(plan.previous, plan.files, plan.spec.name, data.manifest.fingerprint)
    train_split, val_split = data["train"], data["val"]
    classes = tuple(data.manifest.classes)

    keras = import_keras()
    with _keras_globals_restored(keras):
        topo = setup_distribution(keras, o, plan.batch)  # before anything else touches JAX's devices
        seed = agree_seed(_seed(o, plan.previous), topo)
        keras.utils.set_random_seed(seed)
        if topo.distribution is not None:
            keras.distribution.set_distribution(topo.distribution)
        keras.config.set_dtype_policy("mixed_bfloat16" if o.precision == "mixed" else "float32")
        batch = _fit_batch_to_split(plan.batch, len(train_split), topo, say)

        model = _initial_model(plan, o, classes, seed, say)
        class_weights = (
            balanced_class_weights(train_split.y, len(classes)) if o.class_weight == "balanced" else None
        )
        feeder = make_feeder(
            train_split.x, train_split.y, batch // topo.processes, seed=seed, class_weights=class_weights,
            epoch=int(plan.previous["epoch"]) if plan.previous else 0, shard=(topo.process_id, topo.processes),
            sources=train_split.sources if o.sampling in SOURCE_SAMPLING_POWER else None,
            source_power=SOURCE_SAMPLING_POWER.get(o.sampling, 0.0),
        )
        steps = min(len(feeder), o.steps_per_epoch or len(feeder))
        validation = make_val_feeder(val_split.x, val_split.y, batch // topo.processes,
                                     rows=shard_validation(len(val_split.y), topo, say))

        state = _open_run(plan, o, dataset, data.manifest.fingerprint, seed, batch, topo)
        monitor = make_monitor(
            keras, state=state, files=plan.files, options=o, progress=progress, steps=steps, batch=batch,
            is_chief=topo.is_chief, keep_best=topo.multiprocess,
            save_checkpoint=lambda m, st: save_checkpoint(
                m, st, plan.files, ModelInfo(plan.spec.name, classes=list(classes), image_size=plan.size,
                                             training={"checkpoint": True}),
            ),
        )
        try:
            _fit_phases(keras, model, plan, o, state, feeder, steps, validation, [monitor, *callbacks], say)
            _restore_best(model, monitor, plan.files, topo)  # the best epoch becomes the model
        except Exception as exc:
            if topo.multiprocess and is_collective_failure(exc):
                raise peer_failure(exc, topo) from None
            raise
        if topo.multiprocess:  # from here on, process 0 works alone (no collective to join)
            model = local_copy(keras, model)
        info = _model_info(keras, plan, o, state, dataset, data.manifest.fingerprint, classes,
                           (train_split, val_split), class_weights, topo, time.perf_counter() - t_start)
        info.training.update(calibration=None, sources=train_split.source_counts())

        def calibrate_fit_ood_and_save() -> TrainResult:
            nonlocal model
            if o.calibrate:
                say(f"calibrating: fitting a temperature on {len(val_split)} val images")
                model, info.training["calibration"] = calibrate(model, val_split.x, val_split.y,
                                                                batch_size=batch // topo.processes)
            say(f"fitting OOD statistics on {len(train_split)} train and {len(val_split)} val images")
            info.extra["ood"] = fit_ood(model, train_split.x, train_split.y, val_split.x,
                                        batch_size=batch // topo.processes, val_y=val_split.y, classes=classes)
            return _save_outputs(model, plan, o, state, info, dataset, topo)

        if topo.is_chief:
            return finish(topo, calibrate_fit_ood_and_save)
        say("waiting for process 0 to calibrate, fit the OOD statistics and save the model")
        finish(topo, calibrate_fit_ood_and_save)
        return _result(model, plan, state, info, plan.files.curves_png, written=False)


def target_files(model_name: str, models_dir, out) -> RunFiles:
    """Where a run of MODEL_NAME writes: ``--out``, else ``MODELS_DIR/ARCH.keras`` (writes nothing)."""
    return run_files(get_spec(model_name).name if not out else model_name, models_dir, out)


def plan_run(model_name: str, o: TrainOptions, models_dir, out) -> RunPlan:
    """Check the options, architecture, image size, weights and any unfinished run; write nothing."""
    o.validate()
    spec = get_spec(model_name)
    arch_opts = o.arch_options(spec.name)
    weights = normalise_weights(spec.name, o.weights)
    files = target_files(model_name, models_dir, out)
    previous = previous_state(files, resume=o.resume, fresh=o.fresh)
    if previous is not None:  # a resumed run keeps its input size and batch
        size, batch = int(previous["image_size"]), int(previous["batch_size"])
    else:
        size = int(o.image_size or spec.default_image_size)
        batch = int(o.batch_size or spec.default_batch_size)
    check_image_size(spec.name, size, **arch_opts)
    return RunPlan(spec, size, batch, weights, arch_opts, files, previous)


@contextlib.contextmanager
def _keras_globals_restored(keras) -> Iterator[None]:
    """Training sets Keras' global dtype policy and distribution; put the caller's back after."""
    policy, distribution = keras.config.dtype_policy(), keras.distribution.distribution()
    try:
        yield
    finally:
        keras.config.set_dtype_policy(policy)
        keras.distribution.set_distribution(distribution)


def _seed(o: TrainOptions, previous: dict | None) -> int:
    """The resumed run's seed, else ``--seed``, else a random one (recorded in the model)."""
    if previous is not None and "seed" in previous:
        return int(previous["seed"])
    if o.seed is not None:
        return o.seed
    return int(np.random.SeedSequence().entropy % (2**31))


def _fit_batch_to_split(batch: int, n_train: int, topo: Topology, say) -> int:
    """A train split smaller than one batch trains with one batch of all of it (one device only)."""
    if n_train // topo.processes >= batch // topo.processes:
        return batch
    if topo.parallel:
        raise DatasetError(f"the train split has {n_train} images: fewer than one batch of {batch}")
    say(f"train split smaller than the batch: using batch size {n_train}")
    return n_train


def _initial_model(plan: RunPlan, o: TrainOptions, classes: tuple[str, ...], seed: int, say):
    """The resumed run's last checkpoint, or a freshly built model."""
    if plan.previous is not None:
        say(f"resuming {plan.files.run_dir} from epoch {plan.previous['epoch']}")
        model = load_model(plan.files.last, compile=True).model
        restore_seed_states(model, plan.previous.get("seed_states"))
    else:
        say(f"building {plan.spec.name} ({plan.size}x{plan.size}, weights {plan.weights})")
        model = build_model(
            plan.spec.name, image_size=plan.size, weights=plan.weights, classes=classes, dropout=o.dropout,
            augment=o.augment_config(), normalize=o.normalize_config(), crop=o.crop, seed=seed, **plan.arch_options,
        )
    if o.bn_momentum is not None:
        _set_bn_momentum(model, o.bn_momentum)
    return model


def _open_run(plan: RunPlan, o: TrainOptions, dataset, fingerprint: str, seed: int, batch: int,
              topo: Topology) -> dict:
    """Create the run folder (the first write of a run) and return the run state."""
    files = plan.files
    if topo.is_chief:
        if o.fresh and files.run_dir.exists():
            shutil.rmtree(files.run_dir)
        files.run_dir.mkdir(parents=True, exist_ok=True)
    record = o.record(seed=seed, size=plan.size, batch=batch, weights=plan.weights)
    if plan.previous is None:
        return new_state(architecture=plan.spec.name, size=plan.size, batch=batch, seed=seed,
                         dataset=str(Path(dataset)), fingerprint=fingerprint, options=record, monitor=o.monitor)
    state = plan.previous
    # a resumed run may extend the epochs or change the patience
    state["options"] = {**state["options"], **{k: record[k] for k in ("epochs", "patience", "reduce_lr_patience")}}
    return state


def _fit_phases(keras, model, plan: RunPlan, o: TrainOptions, state: dict, feeder, steps: int, validation,
                callbacks: list, say) -> None:
    """Train: an optional frozen-backbone warm-up, then everything; resumes mid-phase.

    Leaves every layer trainable again (as the model is saved).
    """
    backbone = set(backbone_layer_names(model))
    pretrained = plan.weights != "none" or plan.previous is not None
    phases = []
    if o.freeze_epochs > 0:
        phases.append(("frozen", o.freeze_epochs, o.lr))
    phases.append(("full", o.epochs, (o.fine_tune_lr or o.lr) if o.freeze_epochs else o.lr))
    start_epoch = int(state["epoch"])
    for phase, end_epoch, lr in phases:
        if start_epoch >= end_epoch or state.get("stopped_early"):
            continue
        if state.get("phase") != phase or not model.compiled:
            _set_trainable(model, backbone, phase, keep_bn_frozen=o.freeze_epochs > 0 and pretrained)
            model.compile(
                optimizer=keras.optimizers.Adam(learning_rate=lr),
                loss="sparse_categorical_crossentropy",
                metrics=["accuracy"],
                jit_compile=True,
            )
            state["wait"] = state["plateau_wait"] = 0
        state["phase"] = phase
        frozen = " (backbone frozen)" if phase == "frozen" else ""
        say(f"training {plan.spec.name}: epochs {start_epoch + 1}-{end_epoch}{frozen}")
        model.fit(
            feeder,
            epochs=end_epoch,
            initial_epoch=start_epoch,
            steps_per_epoch=steps if o.steps_per_epoch else None,
            validation_data=validation,
            callbacks=callbacks,
            verbose=0,
            # the feeder already draws each epoch's order from (seed, epoch); Keras' own batch
            # shuffle uses the global RNG, whose position a resumed run cannot restore
            shuffle=False,
        )
        start_epoch = int(state["epoch"])
        if state.get("stopped_early"):
            break
    _set_trainable(model, backbone, "full", keep_bn_frozen=False)


def _model_info(keras, plan: RunPlan, o: TrainOptions, state: dict, dataset, fingerprint: str,
                classes, splits: tuple[SplitData, SplitData], class_weights, topo: Topology,
                seconds: float) -> ModelInfo:
    """The saved model's metadata: how it was trained and on what."""
    history = state["history"]
    best_epoch = int(state["best_epoch"])
    best_row = _best_row(history, best_epoch)
    train_split, val_split = splits
    return ModelInfo(
        architecture=plan.spec.name,
        classes=list(classes),
        image_size=plan.size,
        preprocessing=_preprocessing_record(plan.spec, plan.size, o),
        gradcam_layer=plan.spec.gradcam_layer,
        training={
            "options": state["options"],
            "epochs_run": int(state["epoch"]),
            "best_epoch": best_epoch,
            "monitor": o.monitor,
            "best": {k: v for k, v in best_row.items() if k != "epoch"},
            "stopped_early": bool(state.get("stopped_early")),
            "events": state.get("events", []),
            "counts": {"train": train_split.counts(), "val": val_split.counts()},
            "class_weights": None if class_weights is None else [float(w) for w in class_weights],
            "devices": topo.devices,
            "processes": topo.processes,
            "precision": o.precision,
            "seconds": round(seconds, 1),
            "resumed": plan.previous is not None,
        },
        dataset_fingerprint=fingerprint,
        dataset=str(Path(dataset)),
        cxrtool_version=__version__,
        keras_version=keras.__version__,
    )


def _save_outputs(model, plan: RunPlan, o: TrainOptions, state: dict, info: ModelInfo, dataset,
                  topo: Topology) -> TrainResult:
    """Write the model, its CSV log and curves (chief only), drop the run folder, return the result."""
    files, history = plan.files, state["history"]
    curves: Path | None = files.curves_png
    if topo.is_chief:
        save_model(model, files.model, info)
        write_log_csv(files.log_csv, history)
        try:
            plot_curves(history, files.curves_png, title=f"{plan.spec.name} on {Path(dataset).name}")
        except Exception:  # a plotting problem must not lose a trained model
            curves = None
        if not o.keep_checkpoints:
            shutil.rmtree(files.run_dir, ignore_errors=True)
    return _result(model, plan, state, info, curves, written=topo.is_chief)


def _result(model, plan: RunPlan, state: dict, info: ModelInfo, curves: Path | None, *, written: bool) -> TrainResult:
    history, best_epoch = state["history"], int(state["best_epoch"])
    return TrainResult(
        model_path=plan.files.model, info=info, history=history, best_epoch=best_epoch,
        best=_best_row(history, best_epoch), epochs_run=int(state["epoch"]),
        stopped_early=bool(state.get("stopped_early")), seconds=info.training["seconds"],
        log_csv=plan.files.log_csv, curves_png=curves, counts=info.training["counts"], model=model,
        written=written,
    )


def _restore_best(model, monitor, files: RunFiles, topo: Topology) -> None:
    """Give MODEL the weights of the best epoch.

    One process: from ``best.weights.h5`` (as before). Several: every process must assign the
    same values at the same time (the weights are arrays shared by all of them), so each uses the
    copy its monitor kept in memory; a resumed run whose best epoch came before the interruption
    reads ``best.weights.h5`` on every process (resuming across hosts needs the models folder on
    a shared file system, as ``last.keras`` does)."""
    if not topo.multiprocess:
        if files.best_weights.is_file():
            model.load_weights(files.best_weights)
        return
    if monitor.best_weights is not None:
        model.set_weights(monitor.best_weights)
    elif files.best_weights.is_file():
        model.load_weights(files.best_weights)


def _best_row(history: list[dict], best_epoch: int) -> dict:
    return next((r for r in history if r["epoch"] == best_epoch), history[-1] if history else {})


def _set_bn_momentum(model, momentum: float) -> None:
    """Faster-settling batch-norm statistics (see ``TrainOptions.bn_momentum``)."""
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            layer.momentum = momentum


def _set_trainable(model, backbone: set[str], phase: str, *, keep_bn_frozen: bool) -> None:
    """Freeze the backbone ("frozen") or unfreeze it, keeping batch norm in inference mode if asked."""
    for layer in model.layers:
        if layer.name not in backbone:
            continue
        if phase == "frozen":
            layer.trainable = False
        else:
            layer.trainable = not (keep_bn_frozen and type(layer).__name__ == "BatchNormalization")


def _preprocessing_record(spec: ArchSpec, size: int, o: TrainOptions) -> dict:
    normalize = o.normalize_config() or {"mode": "none"}
    steps = [f"crop: {o.crop} (lung fields, cxrtool.models.lungcrop)"] if o.crop != "none" else []
    steps.append("augment (training only)")
    if normalize["mode"] != "none":
        steps.append(f"normalize: {normalize['mode']} (per image, to 0..255)")
    return {
        "input": "grayscale, shape (None, S, S, 1), float32 in 0..255 (uint8 pixel values)",
        "input_size": size,
        "resize": RESIZE,
        "inside_model": steps + ["resize to input_size (bilinear, if needed)",
                                 f"repeat gray to {spec.channels} channel(s)", f"scale: {spec.scaling}"],
        "scaling": spec.scaling,
        "channels": spec.channels,
        "normalize": normalize,
        "crop": o.crop,
        "acquisition": o.acquisition if o.augment else "none",
    }


__all__ = ["RunPlan", "TrainResult", "plan_run", "target_files", "train"]
