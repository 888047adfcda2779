#!/usr/bin/env bash
# What runs on the GPU machine (the device tool): carried wheels (decord, PyAV) into /tmp/site, then `harness bench`
# with a 7B architecture (random weights) in bf16: video set, reference loop, harness runner, prefill.
#   device command:  bash scripts/bench_gpu.sh                        Qwen2.5-VL-7B
#                    BACKBONE=llava-video bash scripts/bench_gpu.sh   LLaVA-Video-7B-Qwen2
# carry: .whl (PyAV, which writes the videos, and decord), or .whlav (PyAV only) with DECODE=pyav
# Settings by environment: BACKBONE VIDEOS MINUTES WORKERS MAX_NEW_TOKENS DECODE OUT_DIR; extra arguments go to
# `harness bench`.
# Results: OUT_DIR/<device>-<backbone>.json and .md.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/device_env.sh  # carried wheels, offline environment
BACKBONE="${BACKBONE:-qwen2.5-vl}"
case "$BACKBONE" in
  qwen2.5-vl) CONFIG=qwen2.5-vl-7b ;;
  llava-video) CONFIG=llava-video-7b ;;
  *) echo "bench_gpu.sh: BACKBONE must be qwen2.5-vl or llava-video, got $BACKBONE" >&2; exit 2 ;;
esac
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv || true
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
python3 -m harness bench --device cuda --dtype bfloat16 \
  --videos "${VIDEOS:-8}" --minutes "${MINUTES:-5}" --height 720 --width 1280 --fps 30 --gop 250 \
  --questions 3 --frames 64 --workers "${WORKERS:-6}" --batch-size 3 --decode-backend "${DECODE:-decord}" \
  --backbone "$BACKBONE" --backbone-arg random_init=true --backbone-arg config="$CONFIG" \
  --backbone-arg max_new_tokens="${MAX_NEW_TOKENS:-1}" \
  --video-dir /tmp/bench-videos --out "${OUT_DIR:-results/bench}" "$@"
