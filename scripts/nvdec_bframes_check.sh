#!/usr/bin/env bash
# NVDEC against PyAV on videos with B-frames (the needle videos: libx264 with its default B-frames, whose timestamps
# PyNvVideoCodec shifts by the decode delay) and on a bench video (no B-frames), frame by frame; one row per video.
# Device command (carry .whl-xz, or .whl and .whl-nvdec): bash scripts/nvdec_bframes_check.sh VIDEO...
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/device_env.sh
python3 - "$@" <<'PY'
import sys
import numpy as np
from harness.video.reader import open_video
print("| video | frames | max abs diff | identical frames | nvdec pts offset |", flush=True)
for p in sys.argv[1:]:
    try:
        with open_video(p, "pyav") as r:
            n = r.meta.frame_count
            idx = sorted(set([0, 1, 2, 3, n // 3, n // 3 + 1, n // 2, n - 2, n - 1] + list(range(5, n, max(1, n // 40)))))
            ref = r.get_frames(idx)
        with open_video(p, "nvdec") as r:
            got = r.get_frames(idx)
            off = r._offset
        d = np.abs(ref.astype(int) - got.astype(int))
        same = int((d.reshape(len(idx), -1).max(1) == 0).sum())
        print(f"| {p.split('/')[-1]} | {len(idx)} | {int(d.max())} | {same} | {off} |", flush=True)
    except Exception as e:
        print(f"| {p.split('/')[-1]} | error: {str(e)[:300]} |", flush=True)
PY
