"""`colour-probe`: a model-free reader for the `smoke` task.

It looks at the frames it is given and names the colour of any saturated object it sees, or says it saw none.
It reads nothing but pixels, so its accuracy measures only whether the sampler put a frame on the evidence.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from backbones.base import Backbone
from harness.registry import BACKBONES

PALETTE = {"red": 0.0, "yellow": 60.0, "green": 120.0, "cyan": 180.0, "blue": 235.0, "magenta": 300.0}
MIN_PIXELS = 60  # a needle square is ~780 px; compression halos and noise stay far below this


def saturated_hues(frame: np.ndarray) -> np.ndarray:
    """Hues (degrees) of the strongly coloured pixels of one RGB frame."""
    rgb = frame.astype(np.float32) / 255.0
    mx, mn = rgb.max(axis=2), rgb.min(axis=2)
    mask = (mx > 0.35) & ((mx - mn) / np.maximum(mx, 1e-6) > 0.5)
    r, g, b = (rgb[..., i][mask] for i in range(3))
    delta = (mx - mn)[mask]
    hue = np.where(mx[mask] == r, (g - b) / delta % 6, np.where(mx[mask] == g, (b - r) / delta + 2,
                                                                 (r - g) / delta + 4))
    return hue * 60.0


def nearest_colour(hues: np.ndarray) -> str:
    angle = np.angle(np.exp(1j * np.radians(hues)).mean(), deg=True) % 360  # circular mean
    return min(PALETTE, key=lambda c: min(abs(angle - PALETTE[c]), 360 - abs(angle - PALETTE[c])))


@BACKBONES.register("colour-probe", description="model-free pixel reader for the smoke task (names the colour seen)")
class ColourProbe(Backbone):
    name = "colour-probe"
    checks_answers = False  # it names a colour: a letter only where the options are colours

    def __init__(self, device: str = "cpu", dtype: str = "float32"):
        self.device, self.dtype = device, dtype  # accepted like every backbone's; pixels need neither

    def config(self) -> dict:
        return {"min_pixels": MIN_PIXELS}

    def generate(self, frames: np.ndarray, timestamps: Sequence[float], prompt: str) -> str:
        seen = [h for h in map(saturated_hues, frames) if len(h) >= MIN_PIXELS]
        if not seen:
            return "I did not see a coloured square in these frames."
        return f"The square is {nearest_colour(np.concatenate(seen))}."
