#!/usr/bin/env bash
# Quick start on CPU, a few minutes on 2 cores: set-up → synthetic ADE20K-layout data → train the tiny preset →
# evaluate it → segment a validation image with free-form labels. Prints where every result is.
#
#   bash quickstart.sh                     # extra arguments go to train_custom.py, e.g. --max_epochs 4
#
# Outputs: datasets/synthetic_ade20k/ (data), checkpoints/tiny_synthetic/ (checkpoints, metrics.jsonl, curves.png),
# outputs/tiny_synthetic/ (eval_log.txt, <image>_mask.png / _index.png / _overlay.png / _legend.png / _legend.txt).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_env.sh
lseg_setup

started=$(date +%s)
DATA=datasets/synthetic_ade20k
EXP=tiny_synthetic
OUT=outputs/$EXP
LABELS="wall,sky,floor,tree,grass,person,car,water"
IMAGE="$DATA/ADEChallengeData2016/images/validation/ADE_val_00000001.jpg"

if [ ! -f "$DATA/ADEChallengeData2016/SYNTHETIC.json" ]; then
    echo "== 1/4 writing the synthetic data set to $DATA"
    "$LSEG_PYTHON" prepare_ade20k.py --root "$DATA" --synthetic 96 --synthetic-val 24 --no-progress
else
    echo "== 1/4 synthetic data set already in $DATA"
fi

echo "== 2/4 training the tiny preset on CPU (checkpoints/$EXP)"
"$LSEG_PYTHON" train_custom.py --preset tiny --data_path "$DATA" --exp_name "$EXP" --overwrite "$@"

echo "== 3/4 evaluating checkpoints/$EXP/best.ckpt on the synthetic val split"
"$LSEG_PYTHON" test.py --preset tiny --data_path "$DATA" --exp_name "$EXP" --weights "checkpoints/$EXP/best.ckpt" \
    --eval --eval_mode val --outdir "$OUT"

echo "== 4/4 segmenting $IMAGE with the labels \"$LABELS\""
"$LSEG_PYTHON" test.py --preset tiny --exp_name "$EXP" --weights "checkpoints/$EXP/best.ckpt" \
    --image "$IMAGE" --labels "$LABELS" --outdir "$OUT"

elapsed=$(( $(date +%s) - started ))
cat <<MSG

Quick start finished in ${elapsed} s.
  data:         $DATA/ADEChallengeData2016
  checkpoints:  checkpoints/$EXP/{best,last}.ckpt   per-epoch metrics: checkpoints/$EXP/metrics.jsonl
  curves:       checkpoints/$EXP/curves.png
  evaluation:   $OUT/eval_log.txt (pixAcc / mIoU and per-class IoU)
  segmentation: $OUT/ADE_val_00000001_{mask,index,overlay,legend}.png and _legend.txt
  web demo:     $LSEG_PYTHON -m scripts.demo    (this model on http://127.0.0.1:7860/)
MSG
