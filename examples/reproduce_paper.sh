#!/usr/bin/env bash
# Reproduce the paper's Table III: build the dataset, train the five models, ensemble the
# CNNs (ViT excluded, the paper's best model), evaluate all six on the test split.
#
#   examples/reproduce_paper.sh SRC OUT
#
# Paper settings are the defaults (7000 per class, 100 epochs, 100 px CNNs, 72 px ViT,
# ImageNet weights). Override through the environment for a CPU-only run, e.g.
#   PER_CLASS=300 EPOCHS=4 CNN_SIZE=48 VIT_SIZE=36 WEIGHTS=none examples/reproduce_paper.sh src out
# Writes OUT/data (dataset), OUT/models, OUT/eval (metrics.json, report.md, figures),
# OUT/table3.md (the comparison table) and OUT/summary.txt (settings and timings).
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 SRC OUT" >&2
  exit 2
fi
SRC=$1
OUT=$2
PER_CLASS=${PER_CLASS:-7000}
EPOCHS=${EPOCHS:-100}
CNN_SIZE=${CNN_SIZE:-100}
VIT_SIZE=${VIT_SIZE:-72}
WEIGHTS=${WEIGHTS:-imagenet}      # for mobilenetv2/resnet50/resnet152; cnn and vit train from scratch
SEED=${SEED:-0}
ENSEMBLE_METHOD=${ENSEMBLE_METHOD:-mean}
EXTRA_TRAIN_ARGS=${EXTRA_TRAIN_ARGS:-}

mkdir -p "$OUT"
summary="$OUT/summary.txt"
{
  echo "reproduce_paper.sh $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "SRC=$SRC PER_CLASS=$PER_CLASS EPOCHS=$EPOCHS CNN_SIZE=$CNN_SIZE VIT_SIZE=$VIT_SIZE WEIGHTS=$WEIGHTS SEED=$SEED ENSEMBLE_METHOD=$ENSEMBLE_METHOD EXTRA_TRAIN_ARGS=$EXTRA_TRAIN_ARGS"
  cxrtool info 2>/dev/null | tr '\n' ' '
  echo
} > "$summary"

timed() {  # timed LABEL CMD...: run, append the wall time to the summary
  local label=$1
  shift
  local start=$SECONDS
  "$@"
  echo "$label: $((SECONDS - start)) s" >> "$summary"
}

timed build-dataset cxrtool build-dataset "$SRC" "$OUT/data" --per-class "$PER_CLASS" --seed "$SEED" --overwrite
for model in mobilenetv2 resnet50 resnet152 cnn; do
  weights=$WEIGHTS
  [ "$model" = cnn ] && weights=none
  # shellcheck disable=SC2086
  timed "train $model" cxrtool train "$OUT/data" --model "$model" --epochs "$EPOCHS" --image-size "$CNN_SIZE" \
    --weights "$weights" --seed "$SEED" --models-dir "$OUT/models" $EXTRA_TRAIN_ARGS
done
# shellcheck disable=SC2086
timed "train vit" cxrtool train "$OUT/data" --model vit --epochs "$EPOCHS" --image-size "$VIT_SIZE" \
  --seed "$SEED" --models-dir "$OUT/models" $EXTRA_TRAIN_ARGS
timed ensemble cxrtool ensemble mobilenetv2 resnet50 resnet152 cnn --name ensemble --method "$ENSEMBLE_METHOD" \
  --data "$OUT/data" --models-dir "$OUT/models"
timed evaluate cxrtool evaluate "$OUT/data" -m mobilenetv2 -m resnet50 -m resnet152 -m cnn -m ensemble -m vit \
  --models-dir "$OUT/models" --out "$OUT/eval" --format markdown > "$OUT/table3.md"
echo "$OUT/table3.md"
