#!/usr/bin/env bash
# Quick start on CPU, a few minutes on 2 cores: set-up → synthetic ADE20K-layout data → train the tiny preset →
# evaluate it → segment a validation image with free-form labels. Prints where every result is.
#
#   bash quickstart.sh                     # extra arguments go to train_custom.py, e.g. --max_epochs 4
#   bash quickstart.sh --zero-shot         # zero-shot instead: synthetic PASCAL-5i set, train fold 0, test its
#                                          # 5 unseen classes by HSNet's protocol (about a minute)
#
# Outputs: datasets/synthetic_ade20k/ (data), checkpoints/tiny_synthetic/ (checkpoints, metrics.jsonl, curves.png),
# outputs/tiny_synthetic/ (eval_log.txt, <image>_mask.png / _index.png / _overlay.png / _legend.png / _legend.txt);
# with --zero-shot: datasets/synthetic_pascal5i/, checkpoints/tiny_zeroshot_fold0/, outputs/tiny_zeroshot_fold0/.
# Running it again replaces the earlier quick start's checkpoints (train_custom.py --overwrite names what it deletes).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_env.sh
lseg_setup

started=$(date +%s)
if [ "${1:-}" = "--zero-shot" ]; then
    shift
    for arg in "$@"; do
        case "$arg" in
            --fold|--fold=*|--exp_name|--exp_name=*|--data_path|--data_path=*)
                echo "quickstart.sh --zero-shot: $arg: the quick start is fold 0 of its own synthetic set; use" \
                     "train_custom.py --preset tiny_zeroshot for other folds or data" >&2
                exit 2 ;;
        esac
    done
    DATA=datasets/synthetic_pascal5i
    EXP=tiny_zeroshot_fold0
    if [ ! -d "$DATA/fewshot_splits" ]; then
        echo "== 1/3 writing the synthetic PASCAL-5i-layout set to $DATA"
        "$LSEG_PYTHON" -m scripts.prepare_fewshot pascal --root "$DATA" --synthetic --no-progress
    else
        echo "== 1/3 synthetic PASCAL-5i-layout set already in $DATA"
    fi
    echo "== 2/3 training fold 0 (its 15 training classes) with the tiny zero-shot preset on CPU"
    "$LSEG_PYTHON" train_custom.py --preset tiny_zeroshot --data_path "$DATA" --overwrite "$@"
    echo "== 3/3 zero-shot test on fold 0's 5 unseen classes (1000 episodes, HSNet's protocol)"
    # last.ckpt, not best.ckpt: PASCAL's validation episodes are its test episodes, so "best" would be picked on them.
    "$LSEG_PYTHON" test.py --preset tiny_zeroshot --data_path "$DATA" --weights "checkpoints/$EXP/last.ckpt" \
        --outdir "outputs/$EXP"
    cat <<MSG

Zero-shot quick start finished in $(( $(date +%s) - started )) s.
  data:         $DATA (VOC2012/ and its split lists fewshot_splits/)
  checkpoints:  checkpoints/$EXP/{best,last}.ckpt   per-epoch held-out mIoU / FB-IoU: checkpoints/$EXP/metrics.jsonl
  evaluation:   outputs/$EXP/zero_shot_log.txt (per-class foreground IoU)
MSG
    exit 0
fi
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
