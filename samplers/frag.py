"""FRAG, Frame Selection Augmented Generation (Huang, Radhakrishnan, Yu, Kautz; NVIDIA; arXiv 2504.17447).

Written from a reading of the official NVlabs/FRAG `frame_selection.py` (`FrameSelection`: `score_prompt`,
`compute_scores_model`, `select_frames` with selector_method `topk_frames`) and the paper, not copied from the code.
The multimodal model that answers scores the candidates itself:

1. N candidates drawn uniformly from the video (N = 256 in the paper), as the official `VideoTask.load_visual`
   (tasks/base.py) draws them: `--grid arange:256`;
2. each candidate ALONE, as one image, with a yes/no question built from the question text (no options), asked
   word for word as `PROMPT_TEMPLATE` below;
3. its score is softmax(first generated token's scores)["A"], the probability of answering "A. yes";
4. the K highest-scoring candidates (K = 32 for video), in time order, are the frames the model answers with.

The scores come from the feature store under the encoder spec `backbone:NAME` (harness.features.backbone_scorer:
the backbone's `score_frames`, cached per video and question); this module only ranks them. Ties (which the
official `torch.topk` leaves to the kernel) go to the earlier candidate, as `samplers.topk.topk_positions` does.
Not offered: frame pairs as proposals (`topk_pairs`), the CLIP scorer variant (`topk` does that) and the document
tasks. A `preset` holds the run to the published setting: K = 32 of N = 256 candidates.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from harness.errors import HarnessError
from harness.registry import SAMPLERS
from samplers.base import Sampler
from samplers.topk import topk_positions

DEFAULT_ENCODER = "backbone:mini-qwen2.5-vl"  # the offline world's model; the paper scores with the answering model
# FRAG's scoring prompt (frame_selection.py, score_prompt, proposal "frames"), as harness.features.backbone_scorer
# asks it (a test checks the two are one text); recorded in config() so the run identity names the question asked.
PROMPT_TEMPLATE = ("Question: {question}\n"
                   "Does the information within the image provide the necessary details to accurately answer the "
                   "given question?\n"
                   "A. yes\nB. no\n"
                   "Answer with the option's letter from the given choices directly.")

# (K, N) per benchmark: FRAG-Top32-256 (paper, Sec. 4 and Tables 1-2; the released scripts
# scripts/video/annot_scores_*_256 and eval_*_top32_frames, for MLVU, Video-MME, LongVideoBench and EgoSchema).
PRESETS: dict[str, tuple[int, int] | None] = {
    "default": None,  # no published setting enforced: any --frames and --grid
    "videomme": (32, 256),
    "longvideobench": (32, 256),
    "mlvu": (32, 256),
}


def frag_select(scores: Sequence[float] | np.ndarray, k: int) -> np.ndarray:
    """Ascending positions of the k highest FRAG scores (all of them when fewer than k); ties: the earlier one."""
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1:
        raise HarnessError(f"frag: scores must be one value per candidate, got shape {values.shape}")
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise HarnessError(f"frag: the frame budget must be a whole number >= 1, got {k!r}")
    if not np.isfinite(values).all():
        raise HarnessError("frag got NaN or infinite scores")
    return topk_positions(values, min(int(k), len(values)))  # official: k = min(k, number of proposals)


@SAMPLERS.register(
    "frag", description="FRAG: the answering model scores each frame alone with a yes/no prompt; top K",
    help={"preset": "published setting to hold the run to (K of N candidates): " + "; ".join(
              f"{name} = K {v[0]} of N {v[1]} (--frames {v[0]} --grid arange:{v[1]})" if v else f"{name} = any"
              for name, v in PRESETS.items()),
          "encoder": "backbone:NAME[:option=value] whose score_frames scores the candidates (e.g. "
                     "backbone:qwen2.5-vl, backbone:llava-video:model=FOLDER); device and dtype are the run's",
          "query": "text built into the yes/no prompt (official FRAG: the question only)"},
    choices={"preset": tuple(PRESETS), "query": ("question", "question+options")})
class FRAG(Sampler):
    name = "frag"
    needs = ("scores",)

    def __init__(self, preset: str = "default", encoder: str = DEFAULT_ENCODER, query: str = "question"):
        if preset not in PRESETS:
            raise HarnessError(f"option preset={preset!r} of 'frag' must be one of {', '.join(PRESETS)}")
        if query not in ("question", "question+options"):
            raise HarnessError(f"option query={query!r} of 'frag' must be one of question, question+options")
        if not str(encoder).startswith("backbone:"):
            raise HarnessError(f"option encoder={encoder!r} of 'frag' must be backbone:NAME (the model scores the "
                               f"frames; for CLIP scores use the topk sampler)")
        self.preset, self.encoder, self.query = preset, str(encoder), query

    def config(self) -> dict:
        return {"preset": self.preset, "encoder": self.encoder, "query": self.query, "prompt": PROMPT_TEMPLATE,
                "score": "softmax(first-token scores)['A'], each frame alone as an image"}

    def positions(self, n: int, k: int, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        published = PRESETS[self.preset]
        if published is not None and (k != published[0] or n > published[1]):
            kp, np_ = published
            raise HarnessError(f"frag preset={self.preset} is K={kp} of at most N={np_} candidates; this run has "
                               f"K={k}, N={n}: run --frames {kp} --grid arange:{np_}, or drop the preset")
        return frag_select(inputs["scores"], k)
