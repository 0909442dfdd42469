"""The CAM methods: each overrides :meth:`BaseCAM.weights` and nothing else.

* :class:`GradCAM` (Selvaraju et al. 2017): spatially averaged gradients;
* :class:`GradCAMPlusPlus` (Chattopadhyay et al. 2018): second/third-order weighting;
* :class:`HiResCAM` (Draelos & Carin 2020): element-wise gradient x activation, faithful
  to the model's computation for a global-average-pooled head;
* :class:`LayerCAM` (Jiang et al. 2021): positive gradients, element-wise.

A new method is a new subclass here: defining it registers it in :data:`METHODS`.
"""

from __future__ import annotations

from ..errors import UsageError
from .cam import METHODS, BaseCAM

__all__ = ["GradCAM", "GradCAMPlusPlus", "HiResCAM", "LayerCAM", "METHODS", "make_cam"]


class GradCAM(BaseCAM):
    """Grad-CAM: each channel weighted by its spatially averaged gradient."""

    name = "gradcam"
    title = "Grad-CAM"

    def weights(self, activations, grads):
        return grads.mean(axis=(1, 2), keepdims=True)


class GradCAMPlusPlus(BaseCAM):
    """Grad-CAM++: positive gradients weighted by the closed-form alpha coefficients
    (as pytorch-grad-cam computes them: ``alpha = g^2 / (2 g^2 + sum_ij(A) g^3)``)."""

    name = "gradcam++"
    title = "Grad-CAM++"

    def weights(self, activations, grads):
        import jax.numpy as jnp

        g2 = grads**2
        g3 = g2 * grads
        sum_a = activations.sum(axis=(1, 2), keepdims=True)
        alpha = g2 / (2.0 * g2 + sum_a * g3 + 1e-7)
        alpha = jnp.where(grads != 0, alpha, 0.0)
        return (jnp.maximum(grads, 0.0) * alpha).sum(axis=(1, 2), keepdims=True)


class HiResCAM(BaseCAM):
    """HiResCAM: element-wise gradient x activation (no spatial averaging of gradients)."""

    name = "hirescam"
    title = "HiResCAM"

    def weights(self, activations, grads):
        return grads


class LayerCAM(BaseCAM):
    """LayerCAM: element-wise positive gradients (good on earlier, finer layers)."""

    name = "layercam"
    title = "LayerCAM"

    def weights(self, activations, grads):
        import jax.numpy as jnp

        return jnp.maximum(grads, 0.0)


def method_class(method: str) -> type[BaseCAM]:
    """The CAM class for a ``--method`` value (case, ``-``, ``_`` and ``plusplus`` forgiven)."""
    cls = METHODS.get(method.lower().replace("plusplus", "++").replace("_", "").replace("-", ""))
    if cls is None:
        raise UsageError(f"unknown CAM method {method!r}; choose one of {', '.join(METHODS)}")
    return cls


def make_cam(method: str, model, target_layer: str | None = None, **kwargs) -> BaseCAM:
    """A CAM object for ``method`` on ``model`` (``target_layer`` None: the default layer)."""
    return method_class(method)(model, target_layer, **kwargs)
