"""A small, fast custom CNN (trained from scratch).

Four stages of 3x3 conv + batch norm + ReLU; the first three end with 2x2 max pooling, so a
100 px input gives a 12x12 ``feature_map`` (a finer Grad-CAM grid than the 4x4 of the
stride-32 ImageNet backbones). About 0.54 M parameters.
"""

from __future__ import annotations

from ..backend import import_keras

keras = import_keras()

STAGES = ((32, 1), (64, 1), (128, 2), (256, 1))  # (filters, convs per stage)


def build_backbone(spec, x, size: int, *, weights: str = "none", seed: int | None = None):
    """Return (feature tensor named ``feature_map``, backbone layer names).

    Built with random weights (WEIGHTS is always "none" here: a whole-model weights file is
    loaded after the model is built).
    """
    names = []
    init = keras.initializers.HeNormal(seed=seed)

    def add(layer, tensor):
        names.append(layer.name)
        return layer(tensor)

    for stage, (filters, convs) in enumerate(STAGES, start=1):
        for i in range(1, convs + 1):
            last = stage == len(STAGES) and i == convs
            x = add(keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer=init,
                                        name=f"stage{stage}_conv{i}"), x)
            x = add(keras.layers.BatchNormalization(name=f"stage{stage}_bn{i}"), x)
            x = add(keras.layers.Activation("relu", name="feature_map" if last else f"stage{stage}_relu{i}"), x)
        if stage < len(STAGES):
            x = add(keras.layers.MaxPooling2D(2, name=f"stage{stage}_pool"), x)
    return x, tuple(names)
