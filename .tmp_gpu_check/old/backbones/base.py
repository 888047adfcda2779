"""What every backbone is: decoded frames with their timestamps plus a prompt in, generated text out."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np


class Backbone(ABC):
    name: str = ""
    prompt_style: str = "default"  # which of a task's per-model prompt variants this backbone gets
    # visual tokens each request of the last generate/generate_batch call gave the language model (None: unknown);
    # the runner records them per row, so tables show the budget actually spent
    last_visual_tokens: list[int] | None = None

    def config(self) -> dict:
        """Every parameter that changes the answers (hashed into the run identity)."""
        return {}

    @abstractmethod
    def generate(self, frames: np.ndarray, timestamps: Sequence[float], prompt: str) -> str:
        """frames: (n, H, W, 3) uint8 RGB in time order; timestamps: seconds of each frame."""

    def generate_batch(self, requests: Sequence[tuple[np.ndarray, Sequence[float], str]]) -> list[str]:
        """Answers to several (frames, timestamps, prompt) requests; the same answers as `generate` one by one.
        Backbones that can batch on the accelerator override this."""
        return [self.generate(frames, timestamps, prompt) for frames, timestamps, prompt in requests]
