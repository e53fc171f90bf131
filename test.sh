#!/usr/bin/env bash
# Evaluate LSeg ViT-L/16 on ADE20K val (pixAcc / mIoU) with the official settings of lang-seg's test.sh:
# multi-scale (0.5 … 1.75) + flip, full images ("testval").
#
#   bash test.sh                                               # checkpoints/lseg_ade20k_l16.ckpt (Ascend/GPU/CPU)
#   DEVICE=CPU bash test.sh --weights demo_e200.ckpt           # the official PyTorch checkpoint (converted)
#   bash test.sh --weights checkpoints/lseg_ade20k_l16/best.ckpt --scales 1.0   # single scale, no flip kept
#
# Environment: DEVICE = auto | Ascend | GPU | CPU (default auto: the first of Ascend, GPU, CPU this machine has).
# Extra arguments are passed to test.py and override
# the defaults below. The log goes to outputs/lseg_ade20k_l16/eval_log.txt.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_env.sh
lseg_setup

DEVICE="${DEVICE:-auto}"
exec "$LSEG_PYTHON" test.py --backbone clip_vitl16_384 --eval --dataset ade20k --data-path ../datasets/ \
    --weights checkpoints/lseg_ade20k_l16.ckpt --widehead --no-scaleinv --scales official --flip \
    --exp_name lseg_ade20k_l16 --device_target "$DEVICE" "$@"
