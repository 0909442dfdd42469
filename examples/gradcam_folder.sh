#!/usr/bin/env bash
# Grad-CAM overlays for every image under a folder, with an index of what the model
# predicted for each image and a contact sheet to browse them.
#
#   examples/gradcam_folder.sh MODEL DIR OUT
#
# MODEL: a model name or a .keras path (an ensemble works: its map is the weighted mean of
#        its members' maps). DIR: a folder of images, searched recursively. OUT: a folder for
#        the overlays (created; never the input folder).
# Environment: METHOD (gradcam, gradcam++, hirescam, layercam; default gradcam),
#              CLASS (covid, pneumonia or normal: explain this class instead of the predicted
#              one), LAYER (a layer name; see `cxrtool gradcam -m MODEL --layer list`),
#              SAVE_RAW=1 (also write each heat map as .npy), WORKERS (threads drawing the
#              overlays; default: the CPUs).
# Writes OUT/<stem>_gradcam.png per image, OUT/contact_sheet.png (several images) and
# OUT/index.tsv (path, predicted class, probability, overlay). Exit status: cxrtool's
# (1 if some image could not be read; the others are still written).
set -euo pipefail
if [ $# -ne 3 ]; then
  echo "usage: $0 MODEL DIR OUT" >&2
  exit 2
fi
MODEL=$1
DIR=$2
OUT=$3
CXRTOOL=${CXRTOOL:-cxrtool}
[ -d "$DIR" ] || { echo "error: $DIR: not a folder" >&2; exit 2; }

args=(--model "$MODEL" --method "${METHOD:-gradcam}")
[ -n "${CLASS:-}" ] && args+=(--class "$CLASS")
[ -n "${LAYER:-}" ] && args+=(--layer "$LAYER")
[ "${SAVE_RAW:-0}" = 1 ] && args+=(--save-raw)
[ -n "${WORKERS:-}" ] && args+=(--workers "$WORKERS")

# An existing folder makes --out a folder even when DIR holds a single image.
mkdir -p "$OUT"
status=0
{
  printf 'path\tpredicted\tprobability\toverlay\n'
  "$CXRTOOL" gradcam "$DIR" "${args[@]}" --out "$OUT" || status=$?
} > "$OUT/index.tsv"

n=$(($(wc -l < "$OUT/index.tsv") - 1))
echo "$n overlays in $OUT (index: $OUT/index.tsv)" >&2
echo "predicted classes:" >&2
tail -n +2 "$OUT/index.tsv" | cut -f2 | sort | uniq -c | sort -rn >&2
[ -f "$OUT/contact_sheet.png" ] && echo "$OUT/contact_sheet.png"
exit "$status"
