"""What every backbone is: decoded frames with their timestamps plus a prompt in, generated text out.

The engine calls only what this class declares. Besides `generate`, every capability has a default that is correct
for any backbone, so a new model family overrides only what makes it faster or what it can do that others cannot:

    answers            False: a selection-only backbone; the runner decodes nothing and records `not_answered`
    checks_answers     False: answers are not meant to parse (probes, random weights); else an all-unparsable
                       start stops the run
    generate_batch     several questions at once; must give the answers `generate` gives one by one
    last_visual_tokens visual tokens each request of the last call gave the language model (recorded per row)
    accelerate         answer-preserving speed-ups for batched work (shared vision tower, shared prompt prefix)
    frame_preparer     CPU preprocessing the runner's decode workers apply to a selection's frames
    prepared_frames    turns what a worker's preparer returned into the frames argument of generate(_batch)
    prefill_probe      for `harness bench`: the prefill of a batch as generate_batch runs it, with its FLOPs
    convert_checkpoint `harness convert NAME SRC DST`: an original checkpoint layout to the one the adapter loads
    takes_scales       True: it answers selections that carry a scale per frame (multi-resolution samplers, Q-Frame)
                       through `generate_scaled`; False (default): the run refuses such a sampler before it starts
    generate_scaled    frames each resized to its scale of the frame (multi-image input); the default refuses
    generate_scaled_batch  several of those; the default answers them one by one
    score_frames       each frame alone with a yes/no prompt: softmax(first-token scores)[token "A"] per frame
                       (FRAG's frame scorer, the `backbone:NAME` encoder); the default refuses
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

Request = tuple[np.ndarray, Sequence[float], str]  # (frames (n, H, W, 3) uint8 RGB, timestamps in s, prompt)
ScaledRequest = tuple[np.ndarray, Sequence[float], Sequence[float], str]  # (frames, timestamps, scales, prompt)


def no_undo() -> None:
    """What `accelerate` returns when there is nothing to undo."""


@dataclass
class PrefillProbe:
    """One batch's prefill the way the backbone's batched path runs it (vision tower, language model, logits of the
    last token only), for `harness bench` to time: `run()` is called repeatedly, each call one whole prefill."""

    run: Callable[[], None]
    tokens: list[int]  # real tokens per question (a cached shared prefix included)
    vision_videos: int  # videos the vision tower encodes (a video shared by the batch counts once)
    flops: dict  # {"language", "vision", "total"}: multiply-adds x 2, from the model config
    formula: str  # which FLOP formula (a function name), reported beside the figures
    extra: dict = field(default_factory=dict)  # e.g. {"shared_prefix_tokens": [...]}


class Backbone(ABC):
    name: str = ""
    prompt_style: str = "default"  # which of a task's per-model prompt variants this backbone gets
    answers: bool = True  # False: selection only (`none`): nothing is decoded for it and generate is never called
    # False where answers are not meant to carry an option letter (probes, random weights for throughput work);
    # otherwise a run whose first answers all fail to parse stops (corrupt weights, a wrong template)
    checks_answers: bool = True
    # visual tokens each request of the last generate/generate_batch call gave the language model (None: unknown);
    # the runner records them per row, so tables show the budget actually spent
    last_visual_tokens: list[int] | None = None
    # True: `generate_scaled` answers selections with a scale per frame (Selection.scales); the engine refuses a
    # multi-resolution sampler with any backbone that says False, before the run
    takes_scales: bool = False

    def config(self) -> dict:
        """Every parameter that changes the answers (hashed into the run identity)."""
        return {}

    @abstractmethod
    def generate(self, frames: np.ndarray, timestamps: Sequence[float], prompt: str) -> str:
        """frames: (n, H, W, 3) uint8 RGB in time order; timestamps: seconds of each frame."""

    def generate_batch(self, requests: Sequence[Request]) -> list[str]:
        """Answers to several (frames, timestamps, prompt) requests; the same answers as `generate` one by one.
        Backbones that can batch on the accelerator override this."""
        return [self.generate(frames, timestamps, prompt) for frames, timestamps, prompt in requests]

    def generate_scaled(self, frames: np.ndarray, timestamps: Sequence[float], scales: Sequence[float],
                        prompt: str) -> str:
        """frames as `generate` takes them, each to be given to the model at `scales[i]` of its width and height
        (a multi-resolution selection); only backbones with `takes_scales` implement it."""
        from harness.errors import HarnessError

        raise HarnessError(f"backbone {self.name or type(self).__name__!r} does not take per-frame scales")

    def generate_scaled_batch(self, requests: Sequence[ScaledRequest]) -> list[str]:
        """Answers to several (frames, timestamps, scales, prompt) requests; the same as `generate_scaled` one by
        one."""
        return [self.generate_scaled(frames, ts, scales, prompt) for frames, ts, scales, prompt in requests]

    def accelerate(self) -> Callable[[], None]:
        """Turn on speed-ups for batched work that leave every answer as it is; returns the function that turns
        them off again. The runner calls it around `--workers`/`--batch-size` runs."""
        return no_undo

    def frame_preparer(self, frame_counts: Sequence[int]) -> Callable | None:
        """A picklable callable the decode workers apply to each selection's frames (CPU preprocessing, so the
        accelerator never waits for it) for selections of these sizes; None: workers hand over raw frames."""
        return None

    def prepared_frames(self, result):
        """What a worker's preparer returned, as the `frames` argument of generate/generate_batch."""
        return result

    def prefill_probe(self, requests: Sequence[Request]) -> PrefillProbe | None:
        """`harness bench`: the prefill of `requests` as one batch, as generate_batch would run it now (with or
        without `accelerate`); None when the backbone has no prefill worth measuring."""
        return None

    @classmethod
    def convert_checkpoint(cls, source: str, destination: str, **options) -> dict:
        """`harness convert`: write the original checkpoint at `source` in the layout this backbone loads;
        returns what was done (for the command's report)."""
        from harness.errors import HarnessError

        raise HarnessError(f"backbone {cls.name or cls.__name__!r} has no checkpoint converter")

    def score_frames(self, frames: np.ndarray, prompt: str) -> np.ndarray:
        """FRAG's scorer (Huang et al., arXiv 2504.17447; NVlabs/FRAG `frame_selection.py`): each of the (n, H, W, 3)
        uint8 frames ALONE as one image with `prompt`, the softmax over the vocabulary of the first generated
        token's scores, at the token "A"; (n,) float64 in [0, 1]. Must not depend on how frames are batched."""
        from harness.errors import HarnessError

        raise HarnessError(f"backbone {self.name or type(self).__name__!r} cannot score frames")
