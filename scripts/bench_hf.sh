#!/usr/bin/env bash
# `harness bench` for the transformers families (backbones/hf) with real-size architectures and random weights:
# the lmms-eval-style loop (decode, one question at a time) against the harness runner (decode workers, batches),
# identical answers required, then the prefill. Runs on the GPU machine (the device tool) in bf16:
#   BACKBONE=qwen3-vl bash scripts/bench_hf.sh          Qwen3-VL-8B architecture (config qwen3-vl-8b)
#   BACKBONE=internvl bash scripts/bench_hf.sh          InternVL3-8B architecture (config internvl3-8b)
# CPU check of the same command at toy size (answers identical between the two loops):
#   CONFIG=tiny DEVICE=cpu DTYPE=float32 VIDEOS=2 MINUTES=0.2 HEIGHT=96 WIDTH=128 FRAMES=8 bash scripts/bench_hf.sh
# carry: .whl (PyAV, which writes the videos, and decord), as for scripts/bench_gpu.sh.
# Settings by environment: BACKBONE CONFIG DEVICE DTYPE VIDEOS MINUTES HEIGHT WIDTH FRAMES WORKERS MAX_NEW_TOKENS
# DECODE OUT_DIR; extra arguments go to `harness bench`. Results: OUT_DIR/<device>-<backbone>.json and .md.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/device_env.sh  # carried wheels, offline environment
PY="${PYTHON:-python3}"
BACKBONE="${BACKBONE:-qwen3-vl}"
case "$BACKBONE" in
  qwen3-vl) DEFAULT_CONFIG=qwen3-vl-8b ;;
  internvl) DEFAULT_CONFIG=internvl3-8b ;;
  qwen2-vl) DEFAULT_CONFIG=qwen2-vl-7b ;;
  llava-onevision) DEFAULT_CONFIG=llava-onevision-7b ;;
  llava-next-video) DEFAULT_CONFIG=llava-next-video-7b ;;
  smolvlm2) DEFAULT_CONFIG=smolvlm2-2.2b ;;
  *) echo "bench_hf.sh: BACKBONE must be one of qwen3-vl internvl qwen2-vl llava-onevision llava-next-video smolvlm2, got $BACKBONE" >&2; exit 2 ;;
esac
CONFIG="${CONFIG:-$DEFAULT_CONFIG}"
DEVICE="${DEVICE:-cuda}"
if [ "$DEVICE" != cpu ]; then
  nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv || true
fi
"$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
"$PY" -m harness bench --device "$DEVICE" --dtype "${DTYPE:-bfloat16}" \
  --videos "${VIDEOS:-8}" --minutes "${MINUTES:-5}" --height "${HEIGHT:-720}" --width "${WIDTH:-1280}" --fps 30 \
  --gop 250 --questions 3 --frames "${FRAMES:-64}" --workers "${WORKERS:-6}" --batch-size 3 \
  --decode-backend "${DECODE:-decord}" \
  --backbone "$BACKBONE" --backbone-arg random_init=true --backbone-arg config="$CONFIG" \
  --backbone-arg max_new_tokens="${MAX_NEW_TOKENS:-1}" \
  --video-dir "${VIDEO_DIR:-/tmp/bench-videos}" --out "${OUT_DIR:-results/bench}" "$@"
