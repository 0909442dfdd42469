"""Registered, serialisable custom layers used inside every cxrtool model.

All of them load in Keras' safe mode (no lambdas): they are plain registered classes whose
config is JSON. Importing this module imports Keras (through :mod:`cxrtool.backend`), so
only model-building and model-loading code imports it, never the CLI at start-up.
"""

from __future__ import annotations

import json
import math

from ..backend import import_keras
from . import acquisition
from .lungcrop import LungCrop  # registered with the other cxrtool layers
from .normalize import Normalize  # registered with the other cxrtool layers

keras = import_keras()
ops = keras.ops

PACKAGE = "cxrtool"

#: Per-backbone input scaling, applied to 0..255 grayscale replicated to ``channels``.
#: "caffe": ResNet's ImageNet preprocessing (BGR mean subtraction, no scaling; for a gray
#: image repeated to 3 channels the BGR flip is a no-op, the per-channel means still apply).
#: "tf": MobileNetV2's, scale to [-1, 1]. "unit": scale to [0, 1] (custom CNN, ViT).
SCALINGS = ("caffe", "tf", "unit")
CAFFE_MEANS_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package=PACKAGE)
class Preprocess(keras.layers.Layer):
    """Raw grayscale pixels (0..255, any float dtype) -> what the backbone expects.

    Resizes to ``image_size`` (a no-op when the input already has that size, which is the
    case for the saved models' fixed input), repeats the gray channel ``channels`` times
    and applies the backbone's own scaling. Always computes in float32.
    """

    def __init__(self, image_size: int, channels: int = 1, scaling: str = "unit", **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if scaling not in SCALINGS:
            raise ValueError(f"unknown scaling {scaling!r}; expected one of {SCALINGS}")
        self.image_size = int(image_size)
        self.channels = int(channels)
        self.scaling = scaling

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        if x.shape[-1] != 1:  # an RGB image slipped in: average to gray
            x = ops.mean(x, axis=-1, keepdims=True)
        if x.shape[1] != self.image_size or x.shape[2] != self.image_size:
            x = ops.image.resize(x, (self.image_size, self.image_size), interpolation="bilinear")
        if self.scaling == "unit":
            x = x / 255.0
        elif self.scaling == "tf":
            x = x / 127.5 - 1.0
        if self.channels > 1:
            x = ops.repeat(x, self.channels, axis=-1)
        if self.scaling == "caffe":
            means = ops.convert_to_tensor(CAFFE_MEANS_BGR[: self.channels], dtype="float32")
            x = x - ops.reshape(means, (1, 1, 1, self.channels))
        return x

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.image_size, self.image_size, self.channels)

    def get_config(self):
        config = super().get_config()
        config.update(image_size=self.image_size, channels=self.channels, scaling=self.scaling)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class Augment(keras.layers.Layer):
    """Chest-X-ray-safe augmentation, in the compiled graph, active only when training.

    One affine resample per image (rotation, shift, zoom and a random resized crop composed
    into a single transform) plus brightness and contrast jitter, in the 0..255 pixel range.
    No horizontal flip unless asked (laterality matters: the heart is on the left).

    The acquisition transforms (``gamma``, ``crop``, ``blur``, ``noise``, ``jpeg``, ``border``;
    see :mod:`cxrtool.models.acquisition`) default to 0 (off), so models saved before they
    existed load unchanged. Each one hits an image with probability ``acquisition_p`` (all six
    on every image at once proved too much: measured in docs/training.md).
    """

    def __init__(
        self,
        rotation: float = 10.0,  # degrees, +-
        shift: float = 0.05,  # fraction of the side, +-
        zoom: float = 0.1,  # fraction, scale in [1 - zoom, 1 + zoom]
        brightness: float = 0.1,  # fraction of 255, +-
        contrast: float = 0.1,  # factor in [1 - contrast, 1 + contrast]
        flip: bool = False,
        seed: int | None = None,
        gamma: float = 0.0,  # |log gamma| bound
        blur: float = 0.0,  # Gaussian sigma, px
        noise: float = 0.0,  # max noise std, fraction of 255
        jpeg: float = 0.0,  # max blend weight of the JPEG-like artefacts
        crop: float = 0.0,  # random resized crop: side fraction in [1 - crop, 1]
        border: float = 0.0,  # max black band per edge, fraction of the side
        acquisition_p: float = 0.5,  # probability that each acquisition transform hits an image
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.rotation = float(rotation)
        self.shift = float(shift)
        self.zoom = float(zoom)
        self.brightness = float(brightness)
        self.contrast = float(contrast)
        self.flip = bool(flip)
        self.seed = seed
        self.gamma = float(gamma)
        self.blur = float(blur)
        self.noise = float(noise)
        self.jpeg = float(jpeg)
        self.crop = float(crop)
        self.border = float(border)
        self.acquisition_p = float(acquisition_p)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _uniform(self, batch, bound):
        return keras.random.uniform((batch,), -bound, bound, seed=self.seed_generator)

    def _magnitude(self, batch, bound, symmetric=False, hit=None):
        """An acquisition transform's per-image magnitude: U(0, bound) (or U(-bound, bound)),
        zero for the images it skips (probability 1 - acquisition_p, unless ``hit`` is given)."""
        low = -bound if symmetric else 0.0
        value = keras.random.uniform((batch,), low, bound, seed=self.seed_generator)
        if hit is None:
            hit = keras.random.uniform((batch,), seed=self.seed_generator) < self.acquisition_p
        return ops.where(hit, value, 0.0)

    def call(self, inputs, training=None):
        x = ops.cast(inputs, "float32")
        if not training:
            return x
        batch = ops.shape(x)[0]
        height, width = x.shape[1], x.shape[2]
        if self.rotation or self.shift or self.zoom or self.flip or self.crop:
            angle = self._uniform(batch, math.radians(self.rotation))
            scale = 1.0 + self._uniform(batch, self.zoom)
            tx = self._uniform(batch, self.shift * width)
            ty = self._uniform(batch, self.shift * height)
            if self.crop:  # keep a window of side fraction f, anywhere inside the image, resized up
                f = 1.0 - self._magnitude(batch, self.crop)
                scale = scale / f
                tx = tx + self._uniform(batch, 1.0) * (1.0 - f) / 2.0 * width
                ty = ty + self._uniform(batch, 1.0) * (1.0 - f) / 2.0 * height
            cos, sin = ops.cos(angle) / scale, ops.sin(angle) / scale
            sign = ops.ones((batch,))
            if self.flip:
                coin = keras.random.uniform((batch,), seed=self.seed_generator)
                sign = ops.where(coin < 0.5, -1.0, 1.0)
            cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
            # output (x, y) -> input (a0 x + a1 y + a2, b0 x + b1 y + b2), about the centre
            a0, a1 = cos * sign, -sin
            b0, b1 = sin * sign, cos
            a2 = cx - a0 * cx - a1 * cy - tx
            b2 = cy - b0 * cx - b1 * cy - ty
            zeros = ops.zeros((batch,))
            transform = ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
            x = ops.image.affine_transform(x, transform, interpolation="bilinear", fill_mode="nearest")
        if self.gamma:
            x = acquisition.apply_gamma(x, self._magnitude(batch, self.gamma, symmetric=True))
        if self.brightness:
            x = x + ops.reshape(self._uniform(batch, self.brightness * 255.0), (-1, 1, 1, 1))
        if self.contrast:
            factor = 1.0 + ops.reshape(self._uniform(batch, self.contrast), (-1, 1, 1, 1))
            mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
            x = (x - mean) * factor + mean
        if self.brightness or self.contrast:
            x = ops.clip(x, 0.0, 255.0)
        if self.blur or self.jpeg or self.noise or self.border:
            x = self._acquisition(x, batch)
        return x

    def _acquisition(self, x, batch):
        """Blur, JPEG-like artefacts, noise and border bands, each with a random magnitude per image."""
        def draw(bound):
            return self._magnitude(batch, bound)

        if self.blur:
            x = acquisition.apply_blur(x, draw(1.0), self.blur)
        if self.jpeg:
            x = acquisition.apply_jpeg_like(x, draw(self.jpeg))
        if self.noise:
            normal = keras.random.normal(ops.shape(x), seed=self.seed_generator)
            x = acquisition.apply_noise(x, draw(self.noise * 255.0), normal)
        x = ops.clip(x, 0.0, 255.0)
        if self.border:
            hit = keras.random.uniform((batch,), seed=self.seed_generator) < self.acquisition_p  # all 4 edges
            x = acquisition.apply_border(x, *(self._magnitude(batch, self.border, hit=hit) for _ in range(4)))
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            rotation=self.rotation,
            shift=self.shift,
            zoom=self.zoom,
            brightness=self.brightness,
            contrast=self.contrast,
            flip=self.flip,
            seed=self.seed,
            gamma=self.gamma,
            blur=self.blur,
            noise=self.noise,
            jpeg=self.jpeg,
            crop=self.crop,
            border=self.border,
            acquisition_p=self.acquisition_p,
        )
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned position embedding to a (batch, tokens, dim) sequence."""

    def __init__(self, num_tokens: int, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.num_tokens = int(num_tokens)
        self.dim = int(dim)

    def build(self, input_shape):
        self.embedding = self.add_weight(
            name="embedding",
            shape=(1, self.num_tokens, self.dim),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
        )

    def call(self, inputs):
        return inputs + ops.cast(self.embedding, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(num_tokens=self.num_tokens, dim=self.dim)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class ModelInfoLayer(keras.layers.Layer):
    """Identity on the model's output; its config carries cxrtool's metadata as a JSON string.

    Keeping the metadata in a layer config means it lives in ``config.json`` inside the
    ``.keras`` zip, survives safe-mode loading and any re-save by Keras itself, and can be
    read without building the model (:func:`cxrtool.artifact.read_info`).
    """

    def __init__(self, info: str = "{}", **kwargs):
        kwargs.setdefault("dtype", "float32")
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        self.info = info if isinstance(info, str) else json.dumps(info)

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["info"] = self.info
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class Temperature(keras.layers.Layer):
    """Temperature scaling: ``scores / T`` before the softmax (see :mod:`cxrtool.evaluate.calibration`).

    ``inputs="logits"``: the scores are logits. ``inputs="probs"`` (an ensemble's weighted
    mean): the scores are ``log p``, so the softmax after this layer gives
    ``softmax(log p / T)``. ``T`` is a config value, not a weight: fitting a new one builds a
    new graph. Always computes in float32.
    """

    def __init__(self, temperature: float = 1.0, inputs: str = "logits", **kwargs):
        kwargs.setdefault("dtype", "float32")
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if inputs not in ("logits", "probs"):
            raise ValueError(f"inputs must be 'logits' or 'probs', got {inputs!r}")
        self.temperature = float(temperature)
        self.inputs_kind = inputs

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        if self.inputs_kind == "probs":
            x = ops.log(ops.maximum(x, 1e-30))
        return x / self.temperature

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(temperature=self.temperature, inputs=self.inputs_kind)
        return config


CUSTOM_OBJECTS = {
    "Preprocess": Preprocess,
    "Normalize": Normalize,
    "LungCrop": LungCrop,
    "Augment": Augment,
    "PositionEmbedding": PositionEmbedding,
    "ModelInfoLayer": ModelInfoLayer,
    "Temperature": Temperature,
}
