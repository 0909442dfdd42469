"""Vision Transformer sized for the paper's 72x72 input with 3x3 patches (576 tokens).

Patch embedding is a strided convolution (identical to "extract patches + linear
projection", but one fused op); learned position embeddings; ``vit_layers`` pre-norm
transformer blocks (multi-head self-attention + GELU MLP, residuals); a final layer norm.
The tokens are then laid back out on their 24x24 grid as ``feature_map`` and pooled by the
shared head (global average over tokens), instead of the keras.io example's
flatten-everything head, which at 576 tokens x 64 dims would need a 36,864 x 2,048 dense
layer (75 M parameters). The grid layout also gives Grad-CAM a spatial map for free.
"""

from __future__ import annotations

from ..backend import import_keras
from .layers import PositionEmbedding

keras = import_keras()


def build_backbone(
    spec,
    x,
    image_size: int,
    *,
    weights: str = "none",
    patch_size: int = 3,
    vit_layers: int = 8,
    vit_dim: int = 64,
    vit_heads: int = 4,
    vit_mlp: int = 128,
    dropout: float = 0.1,
    seed: int | None = None,
):
    """Return (feature tensor ``feature_map`` of shape (grid, grid, vit_dim), backbone layer names).

    Built with random weights (WEIGHTS is always "none" here: a whole-model weights file is
    loaded after the model is built).
    """
    if vit_dim % vit_heads:
        from ..errors import CxrError

        raise CxrError(f"--vit-dim {vit_dim} must be a multiple of --vit-heads {vit_heads}")
    grid = image_size // patch_size
    names = []

    def add(layer, *tensors):
        names.append(layer.name)
        return layer(*tensors)

    x = add(keras.layers.Conv2D(vit_dim, patch_size, strides=patch_size, padding="valid", name="patch_embed"), x)
    x = add(keras.layers.Reshape((grid * grid, vit_dim), name="tokens"), x)
    x = add(PositionEmbedding(grid * grid, vit_dim, name="pos_embed"), x)
    for i in range(1, vit_layers + 1):
        h = add(keras.layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_norm1"), x)
        attn = keras.layers.MultiHeadAttention(
            vit_heads, key_dim=vit_dim // vit_heads, dropout=dropout, seed=seed, name=f"block{i}_attn"
        )
        names.append(attn.name)
        h = attn(h, h)
        x = add(keras.layers.Add(name=f"block{i}_add1"), [x, h])
        h = add(keras.layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_norm2"), x)
        h = add(keras.layers.Dense(vit_mlp, activation="gelu", name=f"block{i}_mlp1"), h)
        h = add(keras.layers.Dropout(dropout, seed=seed, name=f"block{i}_drop1"), h)
        h = add(keras.layers.Dense(vit_dim, name=f"block{i}_mlp2"), h)
        h = add(keras.layers.Dropout(dropout, seed=seed, name=f"block{i}_drop2"), h)
        x = add(keras.layers.Add(name=f"block{i}_add2"), [x, h])
    x = add(keras.layers.LayerNormalization(epsilon=1e-6, name="encoder_norm"), x)
    x = add(keras.layers.Reshape((grid, grid, vit_dim), name="feature_map"), x)
    return x, tuple(names)
