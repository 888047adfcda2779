#!/usr/bin/env bash
# `harness bench --job long` on the GPU machine (the device tool), then the nvdec check:
#   1. the long-video pipeline (1-fps grid, CLIP ViT-L/14 random weights at real size, TSPO zero agent or AKS,
#      Qwen2.5-VL-7B random weights, bf16): TSPO's way (per question) against the harness's (one decode per video),
#      answers compared; with DECODE=nvdec the harness way decodes with DECODE_INSTANCES NVDEC decoders at once;
#   2. python -m harness.bench.decode_check: nvdec against PyAV on the same videos (max/mean |diff| per channel)
#      and 1-fps-grid frames/s with 1, 2 and 4 decoder instances.
# Device command (about 8 minutes on an H100 with the defaults):
#   bash scripts/bench_long.sh
# The issue's full size in two calls on one warm machine: `python3 scripts/write_bench_videos.py 10x30` (359 s on
# an H100), then `CHECK=0 VIDEOS=10 MINUTES=30 REF_QUESTIONS=4 DECODE=pyav DECODERS=nvdec:3,pyav:8 bash
# scripts/bench_long.sh --video-codec libx264 --nvdec-processes` (~180 s; results/bench/README.md, sixth session).
# carry: .whl-xz (PyAV 18.1 and PyNvVideoCodec 2.2.4 cp312 manylinux_2_28, xz-packed by
# scripts/pack_device_wheels.sh) and .whl-clip (open_clip_torch 3.3.0, ftfy 6.3.1, wcwidth for the CLIP encoder;
# the image has torch, transformers, regex, tqdm): 29 MB together, within the 64 MiB a call carries.
# CPU check of the same script at toy size (no GPU, no nvdec: the check compares decord with PyAV instead):
#   DEVICE=cpu DTYPE=float32 BACKBONE=mini-qwen2.5-vl CONFIG= ENCODER=mini-clip DECODE=pyav CHECK_BACKEND=decord \
#     VIDEOS=2 MINUTES=0.2 HEIGHT=96 WIDTH=128 FRAMES=4 bash scripts/bench_long.sh
# Settings by environment: VIDEOS MINUTES HEIGHT WIDTH FRAMES QUESTIONS SAMPLER DECODE DECODE_INSTANCES DECODERS
# (the harness way's decoders side by side, e.g. nvdec:4,pyav:8) WRITE_ONLY (write the video set and stop) CHECK
# (0: no decode check) REF_QUESTIONS
# BACKBONE CONFIG ENCODER DEVICE DTYPE CHECK_BACKEND OUT_DIR; extra arguments go to `harness bench`.
# Results: OUT_DIR/<device>-<backbone>-long.json/.md and OUT_DIR/decode-check-<backend>.json/.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/device_env.sh  # carried wheels (.whl*/), offline environment
PY="${PYTHON:-python3}"
DEVICE="${DEVICE:-cuda}"
DECODE="${DECODE:-nvdec}"
BACKBONE="${BACKBONE:-qwen2.5-vl}"
CONFIG="${CONFIG-qwen2.5-vl-7b}"
OUT_DIR="${OUT_DIR:-results/bench}"
VIDEO_DIR="${VIDEO_DIR:-/tmp/bench-videos}"
if [ "$DEVICE" != cpu ]; then
  nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv || true
fi
"$PY" -c "import torch, av; print('torch', torch.__version__, 'av', av.__version__)"
if [ -n "${WRITE_ONLY:-}" ]; then  # only write (or find) the video set, e.g. in a call of its own before the bench
  "$PY" -c "import sys, time; from harness.bench.config import BenchConfig; from harness.bench.videos import \
video_codec, video_set; t = time.perf_counter(); cfg = BenchConfig(videos=int(sys.argv[1]), minutes=float(sys.argv[2]), \
height=int(sys.argv[3]), width=int(sys.argv[4]), fps=30, gop=250, video_dir=sys.argv[5]); codec = video_codec('auto'); \
folder, paths = video_set(cfg, codec); print(f'{len(paths)} videos ({codec}) in {folder}: {time.perf_counter() - t:.1f} s')" \
    "${VIDEOS:-2}" "${MINUTES:-5}" "${HEIGHT:-720}" "${WIDTH:-1280}" "$VIDEO_DIR"
  exit 0
fi
ARGS=(--backbone-arg max_new_tokens="${MAX_NEW_TOKENS:-1}")
if [ "$BACKBONE" = qwen2.5-vl ]; then ARGS+=(--backbone-arg random_init=true); fi
if [ -n "$CONFIG" ]; then ARGS+=(--backbone-arg config="$CONFIG"); fi
"$PY" -m harness bench --job long --device "$DEVICE" --dtype "${DTYPE:-bfloat16}" \
  --videos "${VIDEOS:-2}" --minutes "${MINUTES:-5}" --height "${HEIGHT:-720}" --width "${WIDTH:-1280}" --fps 30 \
  --gop 250 --questions "${QUESTIONS:-4}" --frames "${FRAMES:-64}" --long-sampler "${SAMPLER:-tspo}" \
  --encoder "${ENCODER:-open_clip:ViT-L-14:random}" --decode-backend "$DECODE" \
  --decode-instances "${DECODE_INSTANCES:-2}" --decoders "${DECODERS:-}" --reference-questions "${REF_QUESTIONS:-0}" \
  --backbone "$BACKBONE" "${ARGS[@]}" --video-dir "$VIDEO_DIR" --out "$OUT_DIR" "$@"
[ "${CHECK:-1}" = 0 ] && exit 0  # CHECK=0: no decode check after the bench
# the videos the job wrote (the newest folder under VIDEO_DIR)
SET="$(ls -td "$VIDEO_DIR"/*/ | head -1)"
"$PY" -m harness.bench.decode_check "$SET" --backend "${CHECK_BACKEND:-nvdec}" --instances 1 2 4 \
  --compare "${COMPARE:-120}" --out "$OUT_DIR"
