#!/usr/bin/env bash
# NVDEC against PyAV, frame by frame, one row per video: a video without B-frames (a bench video) should give
# identical frames; one with B-frames (a needle video: x264's defaults) is refused when nvdec opens it, and the row
# says so (docs/decode.md, "What it needs").
# Device command (carry .whl-xz, or .whl and .whl-nvdec): bash scripts/nvdec_bframes_check.sh VIDEO...
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/device_env.sh
python3 - "$@" <<'PY'
import sys
import numpy as np
from harness.video.reader import open_video
print("| video | frames | max abs diff | identical frames |", flush=True)
for p in sys.argv[1:]:
    try:
        with open_video(p, "pyav") as r:
            n = r.meta.frame_count
            idx = sorted(set([0, 1, 2, 3, n // 3, n // 3 + 1, n // 2, n - 2, n - 1] + list(range(5, n, max(1, n // 40)))))
            ref = r.get_frames(idx)
        with open_video(p, "nvdec") as r:
            got = r.get_frames(idx)
        d = np.abs(ref.astype(int) - got.astype(int))
        same = int((d.reshape(len(idx), -1).max(1) == 0).sum())
        print(f"| {p.split('/')[-1]} | {len(idx)} | {int(d.max())} | {same} |", flush=True)
    except Exception as e:
        print(f"| {p.split('/')[-1]} | error: {str(e)[:300]} |", flush=True)
PY
