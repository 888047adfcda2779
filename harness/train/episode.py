"""What a training source gives the TSPO trainer: an `Episode` per (question, step).

An episode holds the candidates' CLIP features (from the feature store), the question's text feature, each
candidate's time, a ground-truth mask where one exists, how many frames to select, and a way to decode the frames
the rollouts chose. Sources (harness.train.data, harness.train.tspo10k) subclass `Source`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from harness.errors import HarnessError
from harness.features.store import FeatureStore
from harness.records import Sample


@dataclass(frozen=True)
class TrainItem:
    """One training question. `kind`: "specific" (haystack, temporal reward), "general" (no temporal reward) or
    "task" (a harness task sample: temporal reward wherever it has evidence)."""

    id: str
    sample: Sample  # video, question, options and answer (what the accuracy reward scores against)
    query: str  # the text CLIP scores candidates against
    kind: str
    prompt: str | None = None  # the backbone's question text; None: the task builds it per prompt style
    line: int | None = None  # JSONL line number, for messages


@dataclass
class Episode:
    """What one question gives the trainer at one step. Positions index the candidates 0..T-1."""

    item: TrainItem
    features: np.ndarray  # (T, D) float32 raw CLIP image features
    text: np.ndarray  # (D,) CLIP text feature of item.query
    scores: np.ndarray  # (T,) cosine of each image feature with the text feature (the agent's clip_scores)
    timestamps: np.ndarray  # (T,) seconds (a haystack is a synthetic 1 fps timeline)
    mask: np.ndarray | None  # (T,) bool, True inside the ground truth; None: no temporal reward
    k: int  # frames each rollout selects
    decode: Callable[[Sequence[int]], np.ndarray]  # ascending positions -> (n, H, W, 3) uint8 frames
    evidence: tuple = ()  # ground-truth intervals in seconds (for plots)
    closers: list = field(default_factory=list)

    def close(self) -> None:
        for close in self.closers:
            close()
        self.closers.clear()


@dataclass
class FeatureEnv:
    """The feature store, the CLIP encoder spec and the decoder the sources use."""

    store: FeatureStore
    encoder: str
    decode_backend: str = "decord"

    @property
    def scorer(self):
        scorer = self.store.encoder(self.encoder)
        if scorer.kind != "features":
            raise HarnessError(f"the TSPO agent needs CLIP image and text features; encoder {self.encoder!r} gives "
                               f"only image-text matching scores")
        return scorer


def mask_intervals(mask, timestamps, step: float = 1.0) -> tuple[tuple[float, float], ...]:
    """Runs of True in `mask` as [start, end) seconds (end = the last member's time + step)."""
    mask = np.asarray(mask, bool)
    out, start = [], None
    for i, m in enumerate(mask):
        if m and start is None:
            start = i
        if start is not None and (not m or i == len(mask) - 1):
            last = i if m else i - 1
            out.append((float(timestamps[start]), float(timestamps[last]) + step))
            start = None
    return tuple(out)


def evidence_mask(timestamps, evidence) -> np.ndarray | None:
    """True for candidates inside any [start, end) interval; None when there are no intervals."""
    if not evidence:
        return None
    t = np.asarray(timestamps, np.float64)
    return np.any([(t >= a) & (t < b) for a, b in evidence], axis=0)


class Source:
    """Where training questions come from: the questions, their prompts and scoring, and one Episode per
    (question, step)."""

    name = "source"

    def items(self) -> list[TrainItem]:
        raise NotImplementedError

    def config(self) -> dict:
        return {}

    def prompt(self, item: TrainItem, style: str) -> str:
        return item.prompt

    def score(self, item: TrainItem, text: str) -> bool:
        from harness.scoring.summary import score_strict
        return bool(score_strict(item.sample, text).correct)

    def episode(self, item: TrainItem, env: FeatureEnv, rng: np.random.Generator, frames: int,
                general_frames: int) -> Episode:
        raise NotImplementedError
