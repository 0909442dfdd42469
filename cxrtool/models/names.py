"""Names of the layers every cxrtool model has, in graph order (see ``cxrtool.models``).

Grad-CAM, the artifact format, the ensemble builder and the model builder all refer to
layers by these names; they are defined here once.
"""

IMAGE_LAYER = "image"
CROP_LAYER = "lung_crop"  # only in models trained with --crop lungs (cxrtool.models.lungcrop)
AUGMENT_LAYER = "augment"
NORMALIZE_LAYER = "normalize"  # only in models trained with --normalize other than none
PREPROCESS_LAYER = "preprocess"
POOL_LAYER = "avg_pool"
DROPOUT_LAYER = "head_dropout"
LOGITS_LAYER = "logits"
TEMPERATURE_LAYER = "temperature"  # only in calibrated models (cxrtool.evaluate.calibration)
PROBS_LAYER = "probs"
INFO_LAYER = "cxrtool_info"

#: The layers around the backbone: never a Grad-CAM target, never part of the backbone.
HEAD_LAYERS = frozenset(
    {
        IMAGE_LAYER, CROP_LAYER, AUGMENT_LAYER, NORMALIZE_LAYER, PREPROCESS_LAYER, POOL_LAYER, DROPOUT_LAYER, LOGITS_LAYER,
        TEMPERATURE_LAYER, PROBS_LAYER, INFO_LAYER,
    }
)
