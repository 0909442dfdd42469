"""Training: the library entry behind ``cxrtool train`` (no CLI logic here).

:func:`train` validates everything it can *before* writing anything (dataset, splits,
classes, architecture, image size, weights), then trains with a cached uint8 input
pipeline, in-graph augmentation, per-epoch validation, a best-val checkpoint, optional
early stopping / LR reduction on plateau / frozen-backbone warm-up, resumable
checkpoints, and saves one self-contained ``.keras`` artifact atomically.

Files for a model saved as ``MODELS/NAME.keras``:

* ``MODELS/NAME.keras``       the model (best validation epoch), written at the end
* ``MODELS/NAME.log.csv``     per-epoch metrics, written at the end
* ``MODELS/NAME.curves.png``  loss/accuracy curves, written at the end
* ``MODELS/NAME.run/``        the resumable run while training (``last.keras`` with optimizer
  state, ``best.weights.h5``, ``state.json``, ``log.csv``); removed after a successful run
  unless ``keep_checkpoints``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import CLASSES, __version__
from .errors import CxrError, DatasetError, UsageError

ProgressFn = Callable[[dict], None]

MONITORS = ("val_loss", "val_accuracy")
PRECISIONS = ("float32", "mixed")


@dataclass
class TrainOptions:
    """All of ``cxrtool train``'s knobs. ``None`` means "the architecture's default"."""

    epochs: int = 100
    batch_size: int | None = None  # paper: 32 (CNNs), 16 (ViT)
    image_size: int | None = None  # paper: 100 (CNNs), 72 (ViT)
    lr: float = 1e-4
    weights: str | None = None  # imagenet | none | PATH; default imagenet for applications
    seed: int | None = None  # None: a random seed, recorded in the model
    dropout: float = 0.3
    #: batch-norm moving-average momentum while training. keras.applications ship 0.99 (ResNet)
    #: and 0.999 (MobileNetV2): their inference statistics need thousands of steps to settle, so
    #: a short run from scratch validates at chance. 0.9 settles within tens of steps. None: keep.
    bn_momentum: float | None = 0.9
    # transfer learning
    freeze_epochs: int = 0  # epochs with the backbone frozen before fine-tuning everything
    fine_tune_lr: float | None = None  # LR after unfreezing (default: lr)
    # schedule / stopping
    monitor: str = "val_loss"
    patience: int | None = None  # early stopping (None: off)
    reduce_lr_patience: int | None = None  # LR reduction on plateau (None: off)
    reduce_lr_factor: float = 0.5
    min_lr: float = 1e-7
    class_weight: str = "balanced"  # balanced | none
    # augmentation (in the compiled graph, training only)
    augment: bool = True
    rotation: float = 10.0
    shift: float = 0.05
    zoom: float = 0.1
    brightness: float = 0.1
    contrast: float = 0.1
    flip: bool = False
    # hardware
    precision: str = "float32"  # float32 | mixed (bfloat16)
    devices: str | int = "all"  # all | N local devices (data parallel when > 1)
    coordinator: str | None = None  # multi-host: coordinator address host:port
    num_processes: int | None = None
    process_id: int | None = None
    # run management
    resume: bool = False
    fresh: bool = False  # discard an unfinished run instead of refusing
    keep_checkpoints: bool = False
    checkpoint_every: int = 1
    cache: bool = True
    steps_per_epoch: int | None = None  # cap (smoke tests, benchmarks); None: the whole train split
    # architecture options (ViT)
    patch_size: int | None = None
    vit_layers: int | None = None
    vit_dim: int | None = None
    vit_heads: int | None = None
    vit_mlp: int | None = None

    def arch_options(self, family: str) -> dict:
        if family != "vit":
            given = {k: getattr(self, k) for k in ("patch_size", "vit_layers", "vit_dim", "vit_heads", "vit_mlp")}
            extra = [k for k, v in given.items() if v is not None]
            if extra:
                raise UsageError(f"--{extra[0].replace('_', '-')} applies to the vit model only")
            return {}
        return {
            k: getattr(self, k)
            for k in ("patch_size", "vit_layers", "vit_dim", "vit_heads", "vit_mlp")
            if getattr(self, k) is not None
        }

    def augment_config(self) -> dict | None:
        if not self.augment:
            return None
        return dict(
            rotation=self.rotation, shift=self.shift, zoom=self.zoom,
            brightness=self.brightness, contrast=self.contrast, flip=self.flip,
        )


@dataclass
class TrainResult:
    model_path: Path
    info: Any  # artifact.ModelInfo
    history: list[dict]
    best_epoch: int  # 1-based
    best: dict  # metrics of the best epoch
    epochs_run: int
    stopped_early: bool
    seconds: float
    log_csv: Path | None = None
    curves_png: Path | None = None
    counts: dict = field(default_factory=dict)
    model: Any = None  # the trained keras.Model (best-val weights), as saved


# --------------------------------------------------------------------------------------
# validation helpers (no Keras)
# --------------------------------------------------------------------------------------


def _check_options(o: TrainOptions) -> None:
    if o.epochs < 1:
        raise UsageError("--epochs must be at least 1")
    if o.batch_size is not None and o.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if not (o.lr > 0):
        raise UsageError("--lr must be positive")
    if o.freeze_epochs < 0 or o.freeze_epochs > o.epochs:
        raise UsageError("--freeze-epochs must be between 0 and --epochs")
    if o.monitor not in MONITORS:
        raise UsageError(f"--monitor must be one of {', '.join(MONITORS)}")
    if o.precision not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}")
    if o.class_weight not in ("balanced", "none"):
        raise UsageError("--class-weight must be balanced or none")
    if o.resume and o.fresh:
        raise UsageError("--resume and --fresh contradict each other")
    if not 0 <= o.dropout < 1:
        raise UsageError("--dropout must be in [0, 1)")


def _paths(model_name: str, models_dir, out) -> tuple[Path, Path]:
    from .resolve import model_path_for

    path = Path(out) if out else model_path_for(model_name, models_dir)
    if path.suffix != ".keras":
        raise UsageError(f"--out {path}: the model file must end in .keras")
    return path, path.with_name(path.stem + ".run")


def _side_files(model_path: Path) -> tuple[Path, Path]:
    return model_path.with_name(model_path.stem + ".log.csv"), model_path.with_name(model_path.stem + ".curves.png")


# --------------------------------------------------------------------------------------
# distribution
# --------------------------------------------------------------------------------------


def _multihost_settings(o: TrainOptions) -> tuple[str | None, int, int]:
    env = os.environ
    address = o.coordinator or env.get("KERAS_DISTRIBUTION_JOB_ADDRESSES")
    count = o.num_processes or int(env.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "1") or 1)
    pid = o.process_id if o.process_id is not None else int(env.get("KERAS_DISTRIBUTION_PROCESS_ID", "0") or 0)
    if count > 1 and not address:
        raise UsageError("multi-host training needs --coordinator HOST:PORT (or KERAS_DISTRIBUTION_JOB_ADDRESSES)")
    if not 0 <= pid < count:
        raise UsageError(f"--process-id {pid} is outside 0..{count - 1}")
    return address, count, pid


def _setup_distribution(keras, o: TrainOptions, batch_size: int) -> tuple[Any, int, int, int]:
    """Returns (distribution or None, device count, process count, process id)."""
    address, processes, pid = _multihost_settings(o)
    if processes > 1:
        keras.distribution.initialize(job_addresses=address, num_processes=processes, process_id=pid)
    import jax

    available = jax.devices()
    if o.devices in (None, "all"):
        wanted = len(available)
    else:
        try:
            wanted = int(o.devices)
        except ValueError:
            raise UsageError(f"--devices {o.devices!r}: expected 'all' or a number") from None
        if not 1 <= wanted <= len(available):
            raise UsageError(f"--devices {wanted}: this machine has {len(available)} device(s) ({jax.default_backend()})")
    if wanted <= 1 and processes == 1:
        return None, 1, 1, 0
    if batch_size % wanted:
        raise UsageError(f"--batch-size {batch_size} is not divisible by the {wanted} devices used for data parallelism")
    dist = keras.distribution.DataParallel(devices=available[:wanted])
    return dist, wanted, processes, pid


# --------------------------------------------------------------------------------------
# the training callback: progress, CSV, best/last checkpoints, early stopping, plateau LR
# --------------------------------------------------------------------------------------


def _make_monitor(keras, *, state: dict, run_dir: Path, options: TrainOptions, progress: ProgressFn | None,
                  steps: int, batch: int, is_chief: bool, save_checkpoint: Callable[[Any, dict], None]):
    class Monitor(keras.callbacks.Callback):
        async_safe = True  # on_train_batch_end only counts; it never reads tensors

        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.perf_counter()
            if progress:
                progress({"event": "epoch_begin", "epoch": epoch + 1, "epochs": options.epochs, "steps": steps})

        def on_train_batch_end(self, batch_index, logs=None):
            if progress:
                progress({"event": "batch", "step": batch_index + 1, "steps": steps})

        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            seconds = time.perf_counter() - self._t0
            row = {"epoch": epoch + 1, **logs, "lr": lr, "seconds": round(seconds, 3),
                   "images_per_s": round(steps * batch / seconds, 2) if seconds > 0 else 0.0}
            state["history"].append(row)
            value = logs.get(options.monitor, math.nan)
            better = (value < state["best"]) if options.monitor == "val_loss" else (value > state["best"])
            if state["best_epoch"] == 0 or better:
                state["best"], state["best_epoch"], state["wait"] = value, epoch + 1, 0
                if is_chief:
                    self.model.save_weights(run_dir / "best.weights.h5")
            else:
                state["wait"] += 1
                state["plateau_wait"] += 1
            if better:
                state["plateau_wait"] = 0
            if options.reduce_lr_patience and state["plateau_wait"] >= options.reduce_lr_patience:
                new_lr = max(lr * options.reduce_lr_factor, options.min_lr)
                if new_lr < lr:
                    self.model.optimizer.learning_rate = new_lr
                    state["events"].append(f"epoch {epoch + 1}: learning rate {lr:.3g} -> {new_lr:.3g}")
                state["plateau_wait"] = 0
            if options.patience and state["wait"] >= options.patience:
                self.model.stop_training = True
                state["stopped_early"] = True
                state["events"].append(f"epoch {epoch + 1}: early stop ({options.monitor} did not improve for {options.patience} epochs)")
            state["epoch"] = epoch + 1
            if is_chief:
                _write_csv(run_dir / "log.csv", state["history"])
                finished = epoch + 1 >= options.epochs or self.model.stop_training
                # a finished run is saved as the final model right away; its resumable checkpoint
                # would be deleted a moment later, so skip that (large) write unless asked to keep it
                due = (epoch + 1) % max(1, options.checkpoint_every) == 0
                if (due and not finished) or (finished and options.keep_checkpoints):
                    save_checkpoint(self.model, state)  # last.keras, then state.json: always a consistent pair
            if progress:
                progress({"event": "epoch_end", "epoch": epoch + 1, "epochs": options.epochs, "logs": row,
                          "best_epoch": state["best_epoch"]})

    return Monitor()


def _write_csv(path: Path, history: Sequence[dict]) -> None:
    if not history:
        return
    keys: list[str] = []
    for row in history:
        keys.extend(k for k in row if k not in keys)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
    os.replace(tmp, path)


def plot_curves(history: Sequence[dict], path: Path, title: str = "") -> Path:
    """Loss and accuracy per epoch (train and val) as a PNG; written atomically."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key, style in ((metric, "-"), (f"val_{metric}", "--")):
            values = [r.get(key, math.nan) for r in history]
            if any(not math.isnan(v) for v in values):
                ax.plot(epochs, values, style, marker="o", markersize=3, label=key)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------------------
# the entry point
# --------------------------------------------------------------------------------------


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

    ``progress`` receives dict events: ``status`` (message), ``load`` (split, done, total),
    ``epoch_begin``, ``batch``, ``epoch_end`` (logs). ``callbacks``: extra Keras callbacks
    (benchmarks). Raises :class:`CxrError` subclasses for every user error, before writing.
    """
    from .models import check_image_size, get_spec, normalise_weights

    o = options or TrainOptions()
    _check_options(o)
    spec = get_spec(model_name)
    arch = spec.name
    arch_opts = o.arch_options(spec.family)
    size = int(o.image_size or spec.default_image_size)
    check_image_size(arch, size, **arch_opts)
    batch = int(o.batch_size or spec.default_batch_size)
    weights = normalise_weights(arch, o.weights)
    model_path, run_dir = _paths(arch if not out else model_name, models_dir, out)
    state_file = run_dir / "state.json"
    if o.resume and not state_file.is_file():
        raise CxrError(f"--resume: no unfinished run to resume at {run_dir} (expected {state_file.name})")
    if not o.resume and state_file.is_file() and not o.fresh:
        prev = _read_state(state_file)
        raise UsageError(
            f"{run_dir} holds an unfinished run (epoch {prev.get('epoch', '?')}/{prev.get('options', {}).get('epochs', '?')}); "
            "pass --resume to continue it or --fresh to discard it"
        )

    def say(message: str) -> None:
        if progress:
            progress({"event": "status", "message": message})

    # ---- data (validates the manifest, splits and classes) ---------------------------
    from .inputs import balanced_class_weights, load_dataset, make_feeder

    t_start = time.perf_counter()
    data = load_dataset(
        dataset, size, ("train", "val"), cache=o.cache,
        progress=(lambda s, d, t: progress({"event": "load", "split": s, "done": d, "total": t})) if progress else None,
    )
    manifest = data.manifest
    classes = tuple(manifest.classes)
    train_split, val_split = data["train"], data["val"]
    prev_state = _read_state(state_file) if o.resume else None
    if prev_state is not None:
        if prev_state.get("architecture") != arch:
            raise CxrError(f"--resume: {run_dir} is a {prev_state.get('architecture')} run, not {arch}")
        if prev_state.get("dataset_fingerprint") != manifest.fingerprint:
            raise CxrError(f"--resume: the dataset's manifest changed since {run_dir} was started; use --fresh")
        size = int(prev_state["image_size"])
        batch = int(prev_state["batch_size"])

    # ---- Keras, precision, distribution --------------------------------------------
    from .backend import import_keras

    keras = import_keras()
    from . import artifact
    from .models import backbone_layer_names, build_model
    from .models import layers as _layers  # noqa: F401  (registers custom layers)

    seed = o.seed if o.seed is not None else int(np.random.SeedSequence().entropy % (2**31))
    if prev_state is not None:
        seed = int(prev_state.get("seed", seed))

    previous_policy = keras.config.dtype_policy()
    previous_dist = keras.distribution.distribution()
    try:
        # multi-host initialisation must come before anything touches JAX's devices
        dist, n_devices, processes, pid = _setup_distribution(keras, o, batch)
        keras.utils.set_random_seed(seed)
        is_chief = pid == 0
        if dist is not None:
            keras.distribution.set_distribution(dist)
        keras.config.set_dtype_policy("mixed_bfloat16" if o.precision == "mixed" else "float32")
        per_process_batch = batch // processes
        if len(train_split) // processes < per_process_batch:
            if processes > 1 or n_devices > 1:
                raise DatasetError(
                    f"the train split has {len(train_split)} images: fewer than one batch of {batch}"
                )
            per_process_batch = batch = len(train_split)  # tiny dataset: one full batch per epoch
            say(f"train split smaller than the batch: using batch size {batch}")

        # ---- model --------------------------------------------------------------------
        if prev_state is not None:
            say(f"resuming {run_dir} from epoch {prev_state['epoch']}")
            model = artifact.load_model(run_dir / "last.keras", compile=True).model
        else:
            say(f"building {arch} ({size}x{size}, weights {weights})")
            model = build_model(
                arch, image_size=size, weights=weights, classes=classes, dropout=o.dropout,
                augment=o.augment_config(), seed=seed, **arch_opts,
            )
        if o.bn_momentum is not None:
            _set_bn_momentum(model, o.bn_momentum)
        backbone = set(backbone_layer_names(model))

        class_weights = balanced_class_weights(train_split.y, len(classes)) if o.class_weight == "balanced" else None
        feeder = make_feeder(
            train_split.x, train_split.y, per_process_batch, seed=seed, class_weights=class_weights,
            epoch=int(prev_state["epoch"]) if prev_state else 0, shard=(pid, processes),
        )
        steps = len(feeder) if not o.steps_per_epoch else min(len(feeder), o.steps_per_epoch)
        val_x, val_y = val_split.x[..., None], val_split.y
        if n_devices > 1 or processes > 1:
            # every (last) validation batch must split evenly over the devices: each process
            # validates its share, trimmed to a multiple of its local device count
            local = max(1, n_devices // processes)
            val_x, val_y = val_x[pid::processes], val_y[pid::processes]
            keep = (len(val_split) // processes) // local * local
            if keep < 1:
                raise DatasetError(f"the val split has {len(val_split)} images: too few for {n_devices} devices")
            if keep < len(val_split) // processes or len(val_split) % processes:
                say(f"validating on {keep * processes} of {len(val_split)} val images (a multiple of the device count)")
            val_x, val_y = val_x[:keep], val_y[:keep]

        # ---- run state and checkpoints (only now is anything written) ------------------
        if is_chief:
            if o.fresh and run_dir.exists():
                shutil.rmtree(run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
        train_options = _options_record(o, seed=seed, size=size, batch=batch, weights=weights)
        state = prev_state or {
            "architecture": arch, "image_size": size, "batch_size": batch, "seed": seed,
            "dataset": str(Path(dataset)), "dataset_fingerprint": manifest.fingerprint,
            "options": train_options, "epoch": 0, "phase": None, "history": [], "best": math.inf,
            "best_epoch": 0, "wait": 0, "plateau_wait": 0, "stopped_early": False, "events": [],
        }
        if o.resume:  # a resumed run may extend the epochs or change patience etc.
            state["options"] = {**state["options"], **{k: train_options[k] for k in ("epochs", "patience", "reduce_lr_patience")}}
        if o.monitor == "val_accuracy" and not state["history"]:
            state["best"] = -math.inf

        def save_checkpoint(m, st) -> None:
            tmp_info = artifact.ModelInfo(arch, classes=list(classes), image_size=size, training={"checkpoint": True})
            artifact.save_model(m, run_dir / "last.keras", tmp_info, include_optimizer=True)
            _write_json(state_file, st)

        monitor = _make_monitor(
            keras, state=state, run_dir=run_dir, options=o, progress=progress, steps=steps,
            batch=batch, is_chief=is_chief, save_checkpoint=save_checkpoint,
        )

        # ---- phases: frozen backbone warm-up, then everything --------------------------
        pretrained = weights != "none" or prev_state is not None
        phases = []
        if o.freeze_epochs > 0:
            phases.append(("frozen", o.freeze_epochs, o.lr))
        phases.append(("full", o.epochs, o.fine_tune_lr or o.lr if o.freeze_epochs else o.lr))
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
            say(f"training {arch}: epochs {start_epoch + 1}-{end_epoch}" + (" (backbone frozen)" if phase == "frozen" else ""))
            model.fit(
                feeder,
                epochs=end_epoch,
                initial_epoch=start_epoch,
                steps_per_epoch=steps if o.steps_per_epoch else None,
                validation_data=(val_x, val_y),
                validation_batch_size=per_process_batch,
                callbacks=[monitor, *callbacks],
                verbose=0,
            )
            start_epoch = int(state["epoch"])
            if state.get("stopped_early"):
                break

        # ---- the artifact: best-val weights, metadata, logs ----------------------------
        history = state["history"]
        best_epoch = int(state["best_epoch"])
        if is_chief and (run_dir / "best.weights.h5").is_file():
            model.load_weights(run_dir / "best.weights.h5")
        _set_trainable(model, backbone, "full", keep_bn_frozen=False)
        best_row = next((r for r in history if r["epoch"] == best_epoch), history[-1] if history else {})
        seconds = time.perf_counter() - t_start
        info = artifact.ModelInfo(
            architecture=arch,
            classes=list(classes),
            image_size=size,
            preprocessing=_preprocessing_record(spec, size),
            gradcam_layer=spec.gradcam_layer,
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
                "devices": n_devices,
                "processes": processes,
                "precision": o.precision,
                "seconds": round(seconds, 1),
                "resumed": prev_state is not None,
            },
            dataset_fingerprint=manifest.fingerprint,
            dataset=str(Path(dataset)),
            cxrtool_version=__version__,
            keras_version=keras.__version__,
        )
        log_csv, curves = _side_files(model_path)
        if is_chief:
            artifact.save_model(model, model_path, info)
            _write_csv(log_csv, history)
            try:
                plot_curves(history, curves, title=f"{arch} on {Path(dataset).name}")
            except Exception:  # a plotting problem must not lose a trained model
                curves = None
            if not o.keep_checkpoints:
                shutil.rmtree(run_dir, ignore_errors=True)
        return TrainResult(
            model_path=model_path, info=info, history=history, best_epoch=best_epoch, best=best_row,
            epochs_run=int(state["epoch"]), stopped_early=bool(state.get("stopped_early")), seconds=seconds,
            log_csv=log_csv, curves_png=curves, counts=info.training["counts"], model=model,
        )
    finally:
        keras.config.set_dtype_policy(previous_policy)
        keras.distribution.set_distribution(previous_dist)


def _set_bn_momentum(model, momentum: float) -> None:
    """Faster-settling batch-norm statistics (see ``TrainOptions.bn_momentum``)."""
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            layer.momentum = momentum


def _set_trainable(model, backbone: set[str], phase: str, *, keep_bn_frozen: bool) -> None:
    keras_bn = "BatchNormalization"
    for layer in model.layers:
        if layer.name not in backbone:
            continue
        if phase == "frozen":
            layer.trainable = False
        else:
            layer.trainable = not (keep_bn_frozen and type(layer).__name__ == keras_bn)


def _preprocessing_record(spec, size: int) -> dict:
    from .inputs import RESIZE

    return {
        "input": "grayscale, shape (None, S, S, 1), float32 in 0..255 (uint8 pixel values)",
        "input_size": size,
        "resize": RESIZE,
        "inside_model": ["augment (training only)", "resize to input_size (bilinear, if needed)",
                         f"repeat gray to {spec.channels} channel(s)", f"scale: {spec.scaling}"],
        "scaling": spec.scaling,
        "channels": spec.channels,
    }


def _options_record(o: TrainOptions, *, seed: int, size: int, batch: int, weights: str) -> dict:
    record = asdict(o)
    record.update(seed=seed, image_size=size, batch_size=batch, weights=weights)
    for key in ("resume", "fresh", "cache", "coordinator"):
        record.pop(key, None)
    return record


def _read_state(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CxrError(f"{path}: unreadable run state ({exc}); use --fresh to start over") from None


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=float))
    os.replace(tmp, path)


__all__ = ["TrainOptions", "TrainResult", "plot_curves", "train"]
