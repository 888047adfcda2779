"""A backbone as a frame scorer (FRAG's, Huang et al., arXiv 2504.17447; NVlabs/FRAG `frame_selection.py`).

The encoder spec `backbone:NAME` (options after it: `backbone:qwen2.5-vl:model=FOLDER,score_max_pixels=802816`)
loads backbone NAME through the registry, on the feature store's device and dtype, and scores each candidate
frame ALONE against a question with the backbone's `score_frames`: the probability of "A" as the first answer
token to FRAG's yes/no prompt (`frag_prompt`). It is a scorer of kind "itm", like BLIP image-text matching: the
feature store feeds it each decoded chunk of a video once (`vision`: the frames themselves) and caches one score
vector per (video, grid, question), keyed by the backbone's name and config (its weights among them) and by the
prompt template.
"""
from __future__ import annotations

import numpy as np

from harness.config import parse_spec
from harness.errors import HarnessError
from harness.util.frames import check_frames
from harness.util.hashing import digest

PREFIX = "backbone:"
# FRAG's scoring prompt for one frame (NVlabs/FRAG `frame_selection.py`, `score_prompt`, proposal "frames"),
# word for word; {question} is the question text stripped, no options.
PROMPT_TEMPLATE = ("Question: {question}\n"
                   "Does the information within the image provide the necessary details to accurately answer the "
                   "given question?\n"
                   "A. yes\nB. no\n"
                   "Answer with the option's letter from the given choices directly.")


def frag_prompt(question: str) -> str:
    """FRAG's yes/no prompt for one frame and this question."""
    return PROMPT_TEMPLATE.format(question=str(question).strip())


def parse_backbone_spec(spec: str) -> tuple[str, dict]:
    """'backbone:NAME[:key=value,...]' -> (NAME, options); device and dtype are the feature store's."""
    name, options = parse_spec(spec[len(PREFIX):])
    if not name:
        raise HarnessError(f"encoder {spec!r}: expected backbone:NAME, e.g. backbone:mini-qwen2.5-vl")
    taken = sorted({"device", "dtype"} & set(options))
    if taken:
        raise HarnessError(f"encoder {spec!r}: {taken[0]} comes from the run (--device/--dtype), not the spec")
    return name, options


class BackboneScorer:
    """A backbone's `score_frames` behind the feature store's ITM interface (see the module docstring)."""

    kind = "itm"

    def __init__(self, spec: str, device: str = "cpu", dtype: str = "float32"):
        from harness.registry import BACKBONES

        self.spec = str(spec)
        self.name, options = parse_backbone_spec(self.spec)
        self.backbone = BACKBONES.create(self.name, **options, device=device, dtype=dtype)
        if not getattr(self.backbone, "answers", True):
            raise HarnessError(f"encoder {spec!r}: backbone {self.name!r} has no model to score frames with")
        config = self.backbone.config()
        self.encoder_id = f"{PREFIX}{self.name}:{config.get('weights', '?')}@{digest(config)[:16]}"
        self.dtype = dtype

    @property
    def preprocess_id(self) -> str:
        return digest(["frag", PROMPT_TEMPLATE, "each frame alone as an image", "softmax first token, 'A'"])[:16]

    def vision(self, frames: np.ndarray) -> np.ndarray:
        """Nothing precomputable across questions: the frames themselves."""
        return check_frames(frames, allow_empty=True)

    def scores(self, vision: np.ndarray, texts: list[str]) -> np.ndarray:
        """(len(texts), n) float64: each frame's probability of "A" under each question's FRAG prompt."""
        out = np.zeros((len(texts), len(vision)), np.float64)
        if not len(vision):
            return out
        for row, text in enumerate(texts):
            out[row] = np.asarray(self.backbone.score_frames(vision, frag_prompt(text)), np.float64)
        return out
