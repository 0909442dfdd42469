"""Every knob of ``cxrtool train`` (:class:`TrainOptions`) and its checks, before anything runs."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import UsageError
from ..models.registry import arch_options
from ..models.robustness import ACQUISITION_LEVELS, CROP_MODES, NORMALIZE_MODES, check_normalize

MONITORS = ("val_loss", "val_accuracy")
PRECISIONS = ("float32", "mixed")
#: How each epoch draws the train images: every image once, or, within each class, every
#: source equally often, or in proportion to the square root of its size (see
#: :func:`cxrtool.inputs.source_balanced_order`): the power of a source's size per sampling.
SOURCE_SAMPLING_POWER = {"source-balanced": 0.0, "source-sqrt": 0.5}
SAMPLINGS = ("uniform", *SOURCE_SAMPLING_POWER)
#: TrainOptions fields that are architecture options (passed to the model builder).
ARCH_OPTION_FIELDS = ("patch_size", "vit_layers", "vit_dim", "vit_heads", "vit_mlp")


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
    sampling: str = "uniform"  # uniform | source-balanced (sources drawn equally within a class) | source-sqrt
    #: fit a temperature on the val split after training and store it in the model (cxrtool.evaluate.calibration)
    calibrate: bool = True
    # augmentation (in the compiled graph, training only)
    augment: bool = True
    rotation: float = 10.0
    shift: float = 0.05
    zoom: float = 0.1
    brightness: float = 0.1
    contrast: float = 0.1
    flip: bool = False
    #: acquisition augmentation level (gamma, blur, noise, JPEG-like, resized crop, border bands;
    #: bounds in cxrtool.models.robustness.ACQUISITION_LEVELS); needs --augment
    acquisition: str = "none"
    # per-image intensity normalisation inside the model (train and inference alike)
    normalize: str = "none"  # none | standardize | window | equalize | clahe
    window_low: float = 1.0  # percentiles of --normalize window
    window_high: float = 99.0
    clahe_tiles: int = 8  # --normalize clahe: tiles per side (OpenCV's default)
    clahe_clip: float = 2.0  # --normalize clahe: clip limit (OpenCV's default)
    #: lung-field crop inside the model, before augmentation (cxrtool.models.lungcrop)
    crop: str = "none"  # none | lungs
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

    def validate(self) -> None:
        """A :class:`UsageError` for any option that is out of range or contradicts another."""
        if self.epochs < 1:
            raise UsageError("--epochs must be at least 1")
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError("--batch-size must be at least 1")
        if not (self.lr > 0):
            raise UsageError("--lr must be positive")
        if self.freeze_epochs < 0 or self.freeze_epochs > self.epochs:
            raise UsageError("--freeze-epochs must be between 0 and --epochs")
        if self.monitor not in MONITORS:
            raise UsageError(f"--monitor must be one of {', '.join(MONITORS)}")
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}")
        if self.class_weight not in ("balanced", "none"):
            raise UsageError("--class-weight must be balanced or none")
        if self.sampling not in SAMPLINGS:
            raise UsageError(f"--sampling must be one of {', '.join(SAMPLINGS)}")
        if self.resume and self.fresh:
            raise UsageError("--resume and --fresh contradict each other")
        if not 0 <= self.dropout < 1:
            raise UsageError("--dropout must be in [0, 1)")
        if self.acquisition not in ACQUISITION_LEVELS:
            raise UsageError(f"--acquisition must be one of {', '.join(ACQUISITION_LEVELS)}")
        if self.acquisition != "none" and not self.augment:
            raise UsageError("--acquisition needs augmentation: drop --no-augment")
        if self.normalize not in NORMALIZE_MODES:
            raise UsageError(f"--normalize must be one of {', '.join(NORMALIZE_MODES)}")
        try:
            check_normalize(self.normalize, self.window_low, self.window_high)
        except ValueError as exc:
            raise UsageError(f"--window-low/--window-high: {exc}") from None
        if self.crop not in CROP_MODES:
            raise UsageError(f"--crop must be one of {', '.join(CROP_MODES)}")
        if self.clahe_tiles < 1 or not self.clahe_clip > 0:
            raise UsageError("--clahe-tiles must be at least 1 and --clahe-clip positive")

    def arch_options(self, architecture: str) -> dict:
        """The architecture options for ARCHITECTURE (its defaults plus what was given).

        Giving an option the architecture does not have (``--patch-size`` for cnn) is a usage error.
        """
        return arch_options(architecture, {k: getattr(self, k) for k in ARCH_OPTION_FIELDS})

    def augment_config(self) -> dict | None:
        """Keyword arguments of the ``Augment`` layer, or None with ``--no-augment``."""
        if not self.augment:
            return None
        return dict(
            rotation=self.rotation, shift=self.shift, zoom=self.zoom,
            brightness=self.brightness, contrast=self.contrast, flip=self.flip,
            **ACQUISITION_LEVELS[self.acquisition],
        )

    def normalize_config(self) -> dict | None:
        """Keyword arguments of the ``Normalize`` layer, or None for ``--normalize none``."""
        if self.normalize == "none":
            return None
        if self.normalize == "clahe":
            return dict(mode="clahe", tiles=self.clahe_tiles, clip=self.clahe_clip)
        return dict(mode=self.normalize, low=self.window_low, high=self.window_high)

    def record(self, *, seed: int, size: int, batch: int, weights: str) -> dict:
        """The options as stored in the model's metadata, with the values actually used."""
        record = asdict(self)
        record.update(seed=seed, image_size=size, batch_size=batch, weights=weights)
        for key in ("resume", "fresh", "cache", "coordinator"):
            record.pop(key, None)
        return record


__all__ = ["MONITORS", "PRECISIONS", "SAMPLINGS", "TrainOptions"]
