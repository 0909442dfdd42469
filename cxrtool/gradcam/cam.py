"""The CAM algorithm shared by every method: cut, forward, backward, weight, sum, batch.

Shaped like pytorch-grad-cam (jacobgil): :class:`BaseCAM` holds the algorithm and a method
is a subclass overriding one step, :meth:`BaseCAM.weights` (how the gradients and the
activations become channel weights). A subclass with a ``name`` registers itself in
:data:`METHODS`, so adding a method is adding a subclass (see ``methods.py``).

Computed natively on the JAX backend: the model is split at the target layer
(:func:`~cxrtool.gradcam.layers.split_model`) and ``jax.value_and_grad`` of the chosen class's
pre-softmax score (the ``logits`` layer) is taken with respect to that layer's activations,
in one jitted, batched call per batch of images.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..models.names import LOGITS_LAYER, TEMPERATURE_LAYER
from .layers import check_layer, default_layer, split_model, tokens_to_grid

__all__ = ["BaseCAM", "CAMResult", "METHODS"]

#: ``--method`` name -> CAM class; filled by :meth:`BaseCAM.__init_subclass__`.
METHODS: dict[str, type[BaseCAM]] = {}


@dataclass
class CAMResult:
    """One batch of class activation maps on the target layer's grid."""

    maps: np.ndarray  # (N, h, w) float32, >= 0, not normalised
    class_index: np.ndarray  # (N,) the class each map explains
    logits: np.ndarray  # (N, n_classes)
    probabilities: np.ndarray  # (N, n_classes), softmax of logits / the model's temperature: what predict reports
    layer: str


class BaseCAM(ABC):
    """Gradient-weighted class activation mapping on a flat Keras 3 classifier (JAX backend).

    ``cam = ReLU(sum_c weights(A, dS/dA)[..., c] * A[..., c])`` where ``A`` is the target
    layer's activations and ``S`` the chosen class's pre-softmax score. Subclasses set
    ``name`` (the ``--method`` value) and ``title`` (the overlay caption) and override
    :meth:`weights` only. Call the instance with a batch of model input ``(N, S, S, 1)``.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name:
            METHODS[cls.name] = cls

    def __init__(self, model, target_layer: str | None = None, *, logits_layer: str = LOGITS_LAYER,
                 info=None, batch_size: int = 32):
        self.model = model
        self.layer = check_layer(model, target_layer) if target_layer else default_layer(model, info)
        self.split = split_model(model, self.layer, logits_layer)
        self.temperature = _temperature(model)
        self.batch_size = max(1, int(batch_size))
        self._fn = None  # jitted _compute
        self._fb = None  # jitted _forward_backward

    # -- the one step subclasses override ----------------------------------------------
    @abstractmethod
    def weights(self, activations, grads):
        """Channel weights, ``(N, 1, 1, C)`` (per channel) or ``(N, h, w, C)`` (per position),
        from activations and gradients on the grid ``(N, h, w, C)`` (jax arrays)."""

    # -- shared machinery ---------------------------------------------------------------
    def _variables(self):
        import jax.numpy as jnp

        f, h = self.split.features, self.split.head
        return tuple(
            [jnp.asarray(v.value) for v in vs]
            for vs in (f.trainable_variables, f.non_trainable_variables, h.trainable_variables, h.non_trainable_variables)
        )

    def _forward_backward(self, variables, x, class_index):
        """(activations, d score / d activations, logits, chosen class) for one batch."""
        import jax
        import jax.numpy as jnp

        ftv, fntv, htv, hntv = variables
        split = self.split
        acts, _ = split.features.stateless_call(ftv, fntv, x, training=False)

        def score(a):
            inputs = [x, a] if split.head_takes_image else a
            logits, _ = split.head.stateless_call(htv, hntv, inputs, training=False)
            logits = logits.astype(jnp.float32)
            chosen = jnp.where(class_index < 0, jnp.argmax(logits, axis=-1), class_index)
            # each image's score depends on its own activations only: the gradient of the
            # sum is every image's own gradient, so one backward pass serves the batch
            total = jnp.sum(jnp.take_along_axis(logits, chosen[:, None], axis=-1))
            return total, (logits, chosen)

        (_, (logits, chosen)), grads = jax.value_and_grad(score, has_aux=True)(acts)
        return acts, grads, logits, chosen

    def _compute(self, variables, x, class_index):
        import jax
        import jax.numpy as jnp

        acts, grads, logits, chosen = self._forward_backward(variables, x, class_index)
        a = tokens_to_grid(acts.astype(jnp.float32))
        g = tokens_to_grid(grads.astype(jnp.float32))
        cam = jax.nn.relu(jnp.sum(self.weights(a, g) * a, axis=-1))
        return cam, logits, chosen

    def activations_and_gradients(self, x: np.ndarray, class_index: int | Sequence[int] | None = None):
        """The target layer's activations and the gradient of the class score with respect to
        them, in the layer's own shape (tokens are not reshaped), plus the logits. For tests and
        for new methods; one batch (jitted: faster than op-by-op even for a single call)."""
        import jax

        x = np.asarray(x, dtype=np.float32)
        if self._fb is None:
            self._fb = jax.jit(self._forward_backward)
        a, g, logits, _ = self._fb(self._variables(), x, _targets(class_index, len(x)))
        return np.asarray(a), np.asarray(g), np.asarray(logits)

    def __call__(self, x: np.ndarray, class_index: int | Sequence[int] | None = None) -> CAMResult:
        """Maps for model input ``x`` ``(N, S, S, 1)``; ``class_index`` None = the predicted class."""
        import jax

        x = np.asarray(x, dtype=np.float32)
        n = len(x)
        if not n:
            empty = np.zeros((0, 0), np.float32)
            return CAMResult(np.zeros((0, 1, 1), np.float32), np.zeros(0, np.int32), empty, empty, self.layer)
        targets = _targets(class_index, n)
        if self._fn is None:
            self._fn = jax.jit(self._compute)
        variables = self._variables()
        maps, logits, chosen = [], [], []
        for start in range(0, n, self.batch_size):
            xb, tb = x[start : start + self.batch_size], targets[start : start + self.batch_size]
            m = len(xb)
            bucket = min(self.batch_size, 1 << (m - 1).bit_length())  # few distinct shapes -> few compiles
            if bucket > m:
                xb = np.concatenate([xb, np.repeat(xb[-1:], bucket - m, axis=0)])
                tb = np.concatenate([tb, np.repeat(tb[-1:], bucket - m)])
            cam, lg, ch = self._fn(variables, xb, tb)
            maps.append(np.asarray(cam)[:m])
            logits.append(np.asarray(lg)[:m])
            chosen.append(np.asarray(ch)[:m])
        logits_all = np.concatenate(logits).astype(np.float32)
        return CAMResult(
            maps=np.concatenate(maps).astype(np.float32),
            class_index=np.concatenate(chosen).astype(np.int32),
            logits=logits_all,
            probabilities=_softmax(logits_all / self.temperature),
            layer=self.layer,
        )


def _targets(class_index: int | Sequence[int] | None, n: int) -> np.ndarray:
    """Per-image class indices; -1 means "the predicted class" (decided inside the jitted call)."""
    if class_index is None:
        return np.full(n, -1, np.int32)
    return np.broadcast_to(np.asarray(class_index, np.int32), (n,)).copy()


def _temperature(model) -> float:
    """A calibrated model's temperature (its ``logits -> temperature -> probs`` layer), else 1:
    the CAM works from the logits, and its probabilities must be the ones ``predict`` reports."""
    try:
        layer = model.get_layer(TEMPERATURE_LAYER)
    except ValueError:
        return 1.0
    return float(layer.temperature) if getattr(layer, "inputs_kind", "logits") == "logits" else 1.0


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
