#!/usr/bin/env bash
# The real workflow, end to end: build a clean dataset from source folders, train three
# models, ensemble them, evaluate all four on the test split, explain a few test images
# with Grad-CAM and predict the whole test folder.
#
#   examples/real_workflow.sh SRC WORK
#
# SRC:  the folder holding your downloaded sources (see docs/data-sources.md), e.g.
#       SRC/COVID-19_Radiography_Dataset, SRC/chest_xray, ...
# WORK: where everything goes (created): WORK/data (dataset), WORK/models, WORK/eval,
#       WORK/gradcam, WORK/predictions.csv.
#
# Defaults are the paper's settings (100 px, batch 32, 100 epochs, ImageNet weights). That
# needs a GPU and, for ImageNet weights, internet access on first use. Override through the
# environment, e.g. for a short CPU check on phantoms:
#   python examples/make_phantom_sources.py /tmp/src
#   PER_CLASS=all EPOCHS=1 IMAGE_SIZE=32 WEIGHTS=none EXTRA_TRAIN_ARGS="--batch-size 8" \
#     examples/real_workflow.sh /tmp/src /tmp/work
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 SRC WORK" >&2
  exit 2
fi
SRC=$1
WORK=$2
PER_CLASS=${PER_CLASS:-7000}       # images per class after de-duplication ("all": natural counts)
EPOCHS=${EPOCHS:-100}
IMAGE_SIZE=${IMAGE_SIZE:-100}
WEIGHTS=${WEIGHTS:-imagenet}       # for resnet50/mobilenetv2; the cnn always starts from scratch
SEED=${SEED:-0}
N_GRADCAM=${N_GRADCAM:-6}          # test images to explain
EXTRA_TRAIN_ARGS=${EXTRA_TRAIN_ARGS:-}   # e.g. "--patience 10 --freeze-epochs 5"
MODELS="resnet50 mobilenetv2 cnn"

mkdir -p "$WORK"
export CXRTOOL_MODELS="$WORK/models"   # bare model names below are looked up (and saved) here

# 1. Dataset: recognise the sources, drop unreadable/badly exposed images, cluster duplicates
#    across sources, balance, split so that no duplicate or patient crosses train/val/test.
#    Read the warnings (and WORK/data/report.md) before training.
cxrtool build-dataset "$SRC" "$WORK/data" --per-class "$PER_CLASS" --seed "$SEED" --overwrite

# 2. Train: each model is saved as WORK/models/NAME.keras (plus NAME.log.csv, NAME.curves.png).
# shellcheck disable=SC2086
for model in $MODELS; do
  weights=$WEIGHTS
  [ "$model" = cnn ] && weights=none
  cxrtool train "$WORK/data" --model "$model" --epochs "$EPOCHS" --image-size "$IMAGE_SIZE" \
    --weights "$weights" --seed "$SEED" $EXTRA_TRAIN_ARGS
done

# 3. Ensemble: one .keras model; weights fitted on the val split (test stays untouched).
# shellcheck disable=SC2086
cxrtool ensemble $MODELS --name ensemble --method weighted --data "$WORK/data"

# 4. Evaluate every model on the test split: metrics.json, report.md, figures; the
#    per-source table shows whether a model learned the source instead of the disease.
cxrtool evaluate "$WORK/data" -m resnet50 -m mobilenetv2 -m cnn -m ensemble --out "$WORK/eval"

# 5. Grad-CAM on a few test images (the first ones of each class).
mapfile -t picks < <(for c in covid pneumonia normal; do
  find "$WORK/data/test/$c" -type f 2>/dev/null | sort | head -n $(((N_GRADCAM + 2) / 3))
done)
if [ ${#picks[@]} -gt 0 ]; then
  mkdir -p "$WORK/gradcam"
  cxrtool gradcam "${picks[@]}" --model ensemble --out "$WORK/gradcam/" > "$WORK/gradcam/index.tsv"
fi

# 6. Predict the whole test folder (in real use: any folder, or `find ... | cxrtool predict -`).
cxrtool predict --model ensemble "$WORK/data/test" > "$WORK/predictions.csv"

echo "$WORK/eval/report.md"
echo "$WORK/gradcam/contact_sheet.png"
echo "$WORK/predictions.csv"
