"""`none`: no model. A run scores the samplers' selections alone, by evidence recall, without decoding a frame for
a backbone: what `--backbone none` is for (sampler ablations, CI of samplers, tasks with time references)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from backbones.base import Backbone
from harness.registry import BACKBONES


@BACKBONES.register("none", description="no model: score selections alone by evidence recall (accuracy is '-')")
class NoBackbone(Backbone):
    name = "none"
    answers = False  # the runner skips decoding and generation and records the row as not answered

    def __init__(self, device: str = "cpu", dtype: str = "float32"):
        self.device, self.dtype = device, dtype

    def generate(self, frames: np.ndarray, timestamps: Sequence[float], prompt: str) -> str:
        raise RuntimeError("the 'none' backbone answers nothing; the runner never calls it")
