"""The one check of decoded frames that encoders and backbones take: (n, H, W, 3) uint8 RGB."""
from __future__ import annotations

import numpy as np


def check_frames(frames, allow_empty: bool = False) -> np.ndarray:
    """`frames` as an array, or a HarnessError saying what they are instead. Encoders take n = 0 (no features);
    a backbone needs at least one frame."""
    from harness.errors import HarnessError

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or (len(frames) == 0 and not allow_empty):
        least = "" if allow_empty else " with n >= 1"
        raise HarnessError(f"frames must be (n, H, W, 3) uint8{least}, got {frames.shape} {frames.dtype}")
    return frames


def vlmevalkit_nframe(frame_count: int, k: int) -> list[int]:
    """VLMEvalKit's nframe rule in its float arithmetic: step = frame_count / (k + 1), then int(i * step) for
    i = 1..k (both ends excluded; repeats where k >= frame_count)."""
    step = frame_count / (k + 1)
    return [int(i * step) for i in range(1, k + 1)]
