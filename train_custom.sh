#!/usr/bin/env bash
# Train LSeg ViT-L/16 on ADE20K with the official settings of lang-seg's train.sh, on MindSpore.
#
#   bash train_custom.sh                                   # one device: Ascend, else GPU, else CPU
#   DEVICE=GPU bash train_custom.sh --data_path /data      # extra arguments override the defaults below
#   DEVICE_NUM=8 bash train_custom.sh   (or: bash train_custom.sh --nproc 8)
#                                      # N data-parallel processes on this machine: MindSpore's msrun (2.3+, the
#                                      # current stack) or scripts/launch.py where msrun does not exist (2.0,
#                                      # legacy); logs in logs/lseg_ade20k_l16/. Several hosts: README (msrun)
#   bash train_custom.sh --resume      # continue checkpoints/lseg_ade20k_l16/last.ckpt exactly
#
# Environment: DEVICE = auto | Ascend | GPU | CPU (default auto: the first of Ascend, GPU, CPU this machine has),
# DEVICE_NUM (default 1), MASTER_PORT (msrun's scheduler port, default: a free one), plus the set-up variables of
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

if [ "$NPROC" -gt 1 ]; then
    LOG_DIR=logs/lseg_ade20k_l16
    # Only the msrun of the interpreter's own MindSpore (another one on PATH may belong to another version).
    MSRUN="$(dirname "$LSEG_PYTHON")/msrun"
    if [ -x "$MSRUN" ]; then
        PORT="${MASTER_PORT:-$("$LSEG_PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
        # msrun starts each process as `python` from PATH: make that the set-up's interpreter.
        PATH="$(dirname "$LSEG_PYTHON"):$PATH" exec "$MSRUN" --worker_num="$NPROC" --local_worker_num="$NPROC" --master_addr=127.0.0.1 \
            --master_port="$PORT" --log_dir="$LOG_DIR" --join=True \
            train_custom.py "${official[@]}" ${passthrough[@]+"${passthrough[@]}"}
    fi
    exec "$LSEG_PYTHON" -m scripts.launch --nproc "$NPROC" --log_dir "$LOG_DIR" -- \
        train_custom.py "${official[@]}" ${passthrough[@]+"${passthrough[@]}"}
fi
exec "$LSEG_PYTHON" train_custom.py "${official[@]}" ${passthrough[@]+"${passthrough[@]}"}
