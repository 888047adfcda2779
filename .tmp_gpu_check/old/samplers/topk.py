"""Top-k over a per-candidate score vector (e.g. CLIP image-question similarity)."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from harness.errors import HarnessError
from harness.registry import SAMPLERS
from samplers.base import Sampler


def topk_positions(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k highest scores, ascending; ties go to the earlier candidate."""
    scores = np.asarray(scores, dtype=np.float64)
    if np.isnan(scores).any():
        raise HarnessError("top-k got NaN scores")
    order = np.argsort(-scores, kind="stable")  # stable: equal scores keep time order
    return np.sort(order[:k])


@SAMPLERS.register("topk", description="the K candidates most similar to the query (CLIP scores)",
                   help={"encoder": "CLIP model (local folder or hub id) that scores candidates",
                         "query": "text the candidates are scored against"},
                   choices={"query": ("question", "question+options")})
class TopK(Sampler):
    name = "topk"
    needs = ("scores",)

    def __init__(self, encoder: str = "openai/clip-vit-large-patch14", query: str = "question"):
        self.encoder, self.query = encoder, query

    def config(self) -> dict:
        return {"encoder": self.encoder, "query": self.query}

    def positions(self, n: int, k: int, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        return topk_positions(inputs["scores"], k)
