"""The architectures ``cxrtool train --model NAME`` can build, as plain data (no Keras).

Each :class:`ArchSpec` names its builder: a module in :mod:`cxrtool.models` with a
``build_backbone(spec, x, size, *, weights, seed, **options)`` function. Adding an
architecture is adding that module and one entry to :data:`ARCHITECTURES`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import CxrError, ModelNotFoundError, UsageError


@dataclass(frozen=True)
class ArchSpec:
    name: str
    builder: str  # module in cxrtool.models that defines build_backbone(...)
    default_image_size: int
    min_image_size: int
    default_batch_size: int
    #: ImageNet weights exist (keras.applications); its builder also loads backbone weight
    #: files (``--weights PATH`` to a ``..._notop.h5``). Otherwise trained from scratch.
    pretrained: bool
    scaling: str  # Preprocess scaling: "caffe" | "tf" | "unit"
    channels: int  # channels the backbone sees (gray repeated)
    gradcam_layer: str  # last spatial feature layer
    description: str
    options: dict = field(default_factory=dict)  # architecture options and their defaults

    @property
    def default_weights(self) -> str:
        return "imagenet" if self.pretrained else "none"


#: ViT defaults (paper: 72x72 input, patch 3 -> 576 tokens, 8 layers). See docs/training.md.
VIT_DEFAULTS = {"patch_size": 3, "vit_layers": 8, "vit_dim": 64, "vit_heads": 4, "vit_mlp": 128}


def _applications(name: str, scaling: str, gradcam_layer: str, backbone: str) -> ArchSpec:
    return ArchSpec(
        name, builder="applications", default_image_size=100, min_image_size=32, default_batch_size=32,
        pretrained=True, scaling=scaling, channels=3, gradcam_layer=gradcam_layer,
        description=f"keras.applications.{backbone} backbone (ImageNet transfer learning)",
    )


ARCHITECTURES: dict[str, ArchSpec] = {
    "mobilenetv2": _applications("mobilenetv2", "tf", "out_relu", "MobileNetV2"),
    "resnet50": _applications("resnet50", "caffe", "conv5_block3_out", "ResNet50"),
    "resnet152": _applications("resnet152", "caffe", "conv5_block3_out", "ResNet152"),
    "cnn": ArchSpec(
        "cnn", builder="cnn", default_image_size=100, min_image_size=16, default_batch_size=32,
        pretrained=False, scaling="unit", channels=1, gradcam_layer="feature_map",
        description="small custom CNN (4 conv stages, 0.54 M parameters), trained from scratch",
    ),
    "vit": ArchSpec(
        "vit", builder="vit", default_image_size=72, min_image_size=6, default_batch_size=16,
        pretrained=False, scaling="unit", channels=1, gradcam_layer="feature_map",
        description="Vision Transformer (patch 3, 8 layers, dim 64, 4 heads, token average pooling)",
        options=dict(VIT_DEFAULTS),
    ),
}


def get_spec(name: str) -> ArchSpec:
    """The registry entry for NAME, or a one-line error listing the choices."""
    spec = ARCHITECTURES.get((name or "").lower())
    if spec is None:
        raise ModelNotFoundError(
            f"unknown model architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}"
        )
    return spec


def arch_options(name: str, given: dict) -> dict:
    """NAME's options: its defaults overridden by the non-None values in GIVEN.

    An option the architecture does not have is a usage error naming the models that have it.
    """
    spec = get_spec(name)
    unknown = sorted(k for k, v in given.items() if v is not None and k not in spec.options)
    if unknown:
        owners = [n for n, s in ARCHITECTURES.items() if unknown[0] in s.options]
        where = f"the {' / '.join(owners)} model only" if owners else "no model"
        raise UsageError(f"--{unknown[0].replace('_', '-')} applies to {where}")
    return {**spec.options, **{k: v for k, v in given.items() if v is not None}}


def default_image_size(name: str) -> int:
    return get_spec(name).default_image_size


def _patch(name: str, options: dict) -> int | None:
    """The patch size of a patch-based architecture (ViT), else None."""
    spec = get_spec(name)
    if "patch_size" not in spec.options:
        return None
    return int(options.get("patch_size") or spec.options["patch_size"])


def min_image_size(name: str, **options) -> int:
    patch = _patch(name, options)
    return 2 * patch if patch else get_spec(name).min_image_size


def check_image_size(name: str, image_size: int, **options) -> None:
    """A clear error for an input side the architecture cannot take."""
    low = min_image_size(name, **options)
    if image_size < low:
        raise CxrError(f"--image-size {image_size} is too small for {name}: it needs at least {low} px")
    patch = _patch(name, options)
    if patch and image_size % patch:
        raise CxrError(
            f"--image-size {image_size} is not a multiple of the ViT patch size {patch} "
            f"(e.g. use {image_size - image_size % patch} or {image_size + patch - image_size % patch})"
        )


__all__ = [
    "ARCHITECTURES",
    "ArchSpec",
    "VIT_DEFAULTS",
    "arch_options",
    "check_image_size",
    "default_image_size",
    "get_spec",
    "min_image_size",
]
