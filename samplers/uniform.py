"""Uniform sampling over the candidate grid, in the named variants that published baselines use."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from harness.registry import SAMPLERS
from harness.util.frames import vlmevalkit_nframe
from samplers.base import Sampler


def linspace_floor(n: int, k: int) -> np.ndarray:
    """np.linspace(0, n-1, k) cast to int: lmms-eval's llava_vid (and LLaVA-Video's own loader)."""
    return np.linspace(0, n - 1, k).astype(np.int64)


def linspace_round(n: int, k: int) -> np.ndarray:
    """torch.linspace(0, n-1, k).round(): qwen-vl-utils. Float32 torch on purpose, so halves land where its do."""
    import torch

    return torch.linspace(0, n - 1, k).round().long().numpy()


def segment_centre(n: int, k: int) -> np.ndarray:
    """The centre of each of k equal segments (TSN style), floor((2i+1)·n / 2k), in exact integer arithmetic."""
    i = np.arange(k, dtype=np.int64)
    return ((2 * i + 1) * n) // (2 * k)


def vlmevalkit(n: int, k: int) -> np.ndarray:
    """VLMEvalKit's nframe rule: int(i * (n / (k + 1))) for i = 1..k, in its float arithmetic (both ends out)."""
    return np.asarray(vlmevalkit_nframe(n, k), dtype=np.int64)


VARIANTS = {"linspace-floor": linspace_floor, "linspace-round": linspace_round, "segment-centre": segment_centre,
            "vlmevalkit": vlmevalkit}


@SAMPLERS.register("uniform", description="evenly spaced candidates (query-independent)",
                   help={"variant": "index formula (see the variant functions' docstrings)"},
                   choices={"variant": tuple(VARIANTS)})
class Uniform(Sampler):
    name = "uniform"

    def __init__(self, variant: str = "linspace-floor"):
        self.variant = variant

    def config(self) -> dict:
        return {"variant": self.variant}

    def positions(self, n: int, k: int, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        return VARIANTS[self.variant](n, k)
