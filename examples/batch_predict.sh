#!/usr/bin/env bash
# Predict every image under a folder with one model, then summarise: how many images per
# predicted label, which files the model is unsure about, and which files could not be read.
#
#   examples/batch_predict.sh MODEL DIR
#
# MODEL: a model name (looked up in --models-dir / $CXRTOOL_MODELS / ./models) or a .keras path.
# DIR:   a folder of images, searched recursively (png, jpg, jpeg, bmp, tif, tiff, webp, dcm).
# Environment: THRESHOLD (default 0.6): list files whose top probability is below it;
#              OUT (default: a temporary file): where to keep the raw predictions;
#              USE_AWK=1: use the CSV + awk variant even when jq is installed.
# Uses jq when it is installed (JSON Lines); otherwise says so and uses awk over CSV.
# Exit status: cxrtool's (1 if some file could not be read; the summary is printed anyway).
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 MODEL DIR" >&2
  exit 2
fi
MODEL=$1
DIR=$2
THRESHOLD=${THRESHOLD:-0.6}
CXRTOOL=${CXRTOOL:-cxrtool}
[ -d "$DIR" ] || { echo "error: $DIR: not a folder" >&2; exit 2; }

use_jq=1
if [ "${USE_AWK:-0}" = 1 ]; then
  use_jq=0
elif ! command -v jq >/dev/null 2>&1; then
  echo "note: jq not found (install it, e.g. apt-get install jq); using the CSV + awk variant" >&2
  use_jq=0
fi

out=${OUT:-$(mktemp "${TMPDIR:-/tmp}/cxrtool-predict.XXXXXX")}
status=0

# `find ... | cxrtool predict -` streams: rows are written as batches finish, so this also
# works on folders far too large to list on a command line. -print0 is not used because
# predict reads one path per line; file names containing newlines are not supported.
images() {
  find "$DIR" -type f \( -iname '*.png' -o -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.bmp' \
    -o -iname '*.tif' -o -iname '*.tiff' -o -iname '*.webp' -o -iname '*.dcm' \) | sort
}

if [ "$use_jq" = 1 ]; then
  images | "$CXRTOOL" predict --model "$MODEL" - --format jsonl > "$out" || status=$?
  [ -s "$out" ] || exit "$status"   # the model did not load, or there were no images
  echo "== images per predicted label"
  jq -r 'select(.error == null) | .label' "$out" | sort | uniq -c | sort -rn
  echo "== top probability below $THRESHOLD (probability, label, path)"
  jq -r --argjson t "$THRESHOLD" \
    'select(.error == null and .probability < $t) | "\(.probability * 1000 | round / 1000)\t\(.label)\t\(.path)"' "$out"
  echo "== not readable"
  jq -r 'select(.error != null) | "\(.path): \(.error)"' "$out"
else
  images | "$CXRTOOL" predict --model "$MODEL" - --format csv > "$out" || status=$?
  [ -s "$out" ] || exit "$status"   # the model did not load (a run without images still has the header)
  # CSV columns: path,label,probability,<one per class>,error. Plain awk splits on every comma,
  # so this variant assumes no commas in file names (use the jq variant otherwise).
  echo "== images per predicted label"
  awk -F, 'NR > 1 && $2 != "" { n[$2]++ } END { for (l in n) printf "%7d %s\n", n[l], l }' "$out" | sort -rn
  echo "== top probability below $THRESHOLD (probability, label, path)"
  awk -F, -v t="$THRESHOLD" 'NR > 1 && $2 != "" && $3 + 0 < t + 0 { printf "%.3f\t%s\t%s\n", $3, $2, $1 }' "$out"
  echo "== not readable"
  awk -F, 'NR > 1 && $2 == "" { print $1 ": " $NF }' "$out"
fi
echo "raw predictions: $out" >&2
exit "$status"
