"""Training frames with the artefacts of a decoded video: the mini models learn on what the runner will decode."""
from __future__ import annotations

import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

from harness.util.synth import write_video
from harness.video.reader import open_video


def h264_round_trip(frames, fps: float | Fraction, *, crf: int = 18, gop: int | None = None) -> np.ndarray:
    """Encode frames with `write_video`'s settings and decode them back: the artefacts a decoded video has."""
    frames = list(frames)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "round-trip.mp4"
        write_video(path, frames, fps, crf=crf, gop=gop)
        with open_video(path, "pyav") as reader:
            return reader.get_frames(range(len(frames)))
