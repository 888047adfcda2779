"""The one check of decoded frames that encoders and backbones take: (n, H, W, 3) uint8 RGB, n >= 1."""
from __future__ import annotations

import numpy as np


def check_frames(frames) -> np.ndarray:
    """`frames` as an array, or a HarnessError saying what they are instead."""
    from harness.errors import HarnessError

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise HarnessError(f"frames must be (n, H, W, 3) uint8 with n >= 1, got {frames.shape} {frames.dtype}")
    return frames


def one_line(text) -> str:
    """A message on one line (whitespace runs, newlines included, become one space)."""
    return " ".join(str(text).split())
