#!/usr/bin/env bash
# Train LSeg ViT-L/16 on ADE20K with the official settings of lang-seg's train.sh, on MindSpore.
#
#   bash train_custom.sh                                   # one device: Ascend, else GPU, else CPU
#   DEVICE=GPU bash train_custom.sh --data_path /data      # extra arguments override the defaults below
#   DEVICE_NUM=8 bash train_custom.sh   (or: bash train_custom.sh --nproc 8)
#                                      # N data-parallel processes on this machine (scripts/launch.py: one
#                                      # scheduler + N workers of MindSpore's dynamic cluster); logs in
#                                      # logs/lseg_ade20k_l16/. Several hosts: README (msrun)
#   bash train_custom.sh --resume      # continue checkpoints/lseg_ade20k_l16/last.ckpt exactly
#
# Environment: DEVICE = auto | Ascend | GPU | CPU (default auto: the first of Ascend, GPU, CPU this machine has),
# DEVICE_NUM (default 1), MASTER_PORT (the scheduler's port, default: a free one), plus the set-up variables of
# scripts/setup_env.sh (LSEG_STACK, PYTHON, LSEG_VENV, LSEG_SKIP_SETUP).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_env.sh
lseg_setup

DEVICE="${DEVICE:-auto}"
NPROC="${DEVICE_NUM:-1}"
# What train_custom.py prints as the command that resumes an interrupted run: this script with the same device
# settings and arguments (train_custom.py drops --overwrite and any --resume PATH, and adds --resume).
LSEG_COMMAND="DEVICE=$DEVICE DEVICE_NUM=$NPROC bash train_custom.sh"
if [ $# -gt 0 ]; then LSEG_COMMAND+="$(printf ' %q' "$@")"; fi
export LSEG_COMMAND
# The official recipe (lang-seg train.sh) is configs/vitl16_ade20k.yaml, its one source; a --config or --preset of
# the caller's replaces it (train_custom.py refuses the two together).
recipe=(--preset vitl16_ade20k)
passthrough=()
while [ $# -gt 0 ]; do
    case "$1" in
        --nproc) NPROC="$2"; shift 2 ;;
        --nproc=*) NPROC="${1#--nproc=}"; shift ;;
        --config|--config=*|--preset|--preset=*) recipe=(); passthrough+=("$1"); shift ;;
        *) passthrough+=("$1"); shift ;;
    esac
done

# The recipe plus the MindSpore device, and train.sh's --widehead --no-scaleinv: flags without effect here (the head
# is always the wide one), passed so the run records the official command line's values.
official=(${recipe[@]+"${recipe[@]}"} --widehead --no-scaleinv --device_target "$DEVICE")

case "$NPROC" in
    ''|*[!0-9]*|0) echo "train_custom.sh: error: --nproc / DEVICE_NUM: a number of processes >= 1 (got '$NPROC')" >&2
                   exit 2 ;;
esac
if [ "$NPROC" -gt 1 ]; then
    # One machine: scripts/launch.py, which stops the whole job within seconds when any process fails (msrun's
    # scheduler waits out its cluster time-out, 10 minutes) and prints the failing rank's error. Several hosts: msrun.
    LOG_DIR=logs/lseg_ade20k_l16
    exec "$LSEG_PYTHON" -m scripts.launch --nproc "$NPROC" --log_dir "$LOG_DIR" --port "${MASTER_PORT:-0}" -- \
        train_custom.py "${official[@]}" ${passthrough[@]+"${passthrough[@]}"}
fi
exec "$LSEG_PYTHON" train_custom.py "${official[@]}" ${passthrough[@]+"${passthrough[@]}"}
