"""BOLT, inverse transform sampling over query relevance (Liu, Zhao, Xu, Ghanem; CVPR 2025, arXiv 2503.21483).

Written from a reading of the official `select_frames.py` (sming256/BOLT: its `inverse_transform_sampling`, the
query rules of `get_query_list` and the settings of `scripts/frame_selection.sh`) and the paper, not copied from the
code. With budget K and power alpha, on one score per candidate:

1. min-max normalise the scores to [0, 1] (the lowest candidate gets 0, so it has no mass);
2. raise them to the power alpha; alpha = -1 means no power (the official `--power` default and its sentinel);
3. divide by their sum (a pmf) and take the running sum (the CDF);
4. K quantiles u = linspace(1/K, 1 - 1/K, K) go to the first candidate whose CDF is >= u (a left searchsorted).

The arithmetic is float32, as the official score vector (`.float()`), so the same scores give the same candidates.
The positions come out ascending. A candidate carrying much mass is hit by several quantiles: the official code keeps
the repeats (its evaluation asserts K frames and reads the repeated ones twice), and so does `duplicates=keep`, the
default; `duplicates=unique` drops them, so fewer than K frames may be returned (no filling in).

Query: the question alone, for every benchmark (`query=question`). For MLVU the official code takes the first line
of the question; the harness's MLVU question is the stem without the option lines, which equals that first line up
to whitespace on all 2174 dev questions (CLIP tokenizers clean whitespace), so no other query mode is needed.

Scale and bias. The official scores are logits: CLIP's cosine x exp(logit_scale), SigLIP's cosine x exp(logit_scale)
+ logit_bias (`extract_feature.py`, `compute_similarity`). Both are a positive affine map of the cosine, which step 1
removes: the harness's cosine `scores` give the same selection, up to the last bit of rounding, so neither is an
option.

Differences from the official code, on purpose:

* constant scores (max == min: 0/0, an all-NaN CDF in the official code, which then returns K copies of position 0)
  raise a HarnessError "constant scores", which becomes that sample's error row; there is no silent fallback. Two
  cases are not errors, and agree with the official output: one candidate (it takes every quantile) and alpha = 0
  (x ** 0 = 1, NaN ** 0 too: equal mass on every candidate, whatever the scores);
* K = 1 gives u = linspace(1, 0, 1) = [1.0]: the first candidate whose float32 CDF reaches 1 (in exact arithmetic
  the last one with mass), as published; when the float32 CDF ends just below 1 the official searchsorted returns n, one past the end, which its evaluation clips to the video's last frame: here such
  a position is clipped to the last candidate, n - 1 (the same clip for any K, though only K = 1 meets it in practice);
* NaN or infinite scores, and an alpha that is neither -1 nor >= 0 (0 ** alpha would be infinite), are rejected.
"""
from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Mapping, Sequence

import numpy as np

from harness.errors import HarnessError
from harness.registry import SAMPLERS
from samplers.base import Sampler

NO_POWER = -1.0  # the official sentinel: the normalised scores are used as they are
DUPLICATES = ("keep", "unique")
QUERIES = ("question", "question+options")
DEFAULT_ENCODER = "openai/clip-vit-large-patch14"  # extract_feature.py's CLIP, used by every released script

# alpha per benchmark: the `--power` of the official scripts/frame_selection.sh (CLIP ViT-L/14 features at 1 fps).
PRESETS: dict[str, float] = {
    "default": 3.0,  # demo.py's default power, the Video-MME setting (select_frames.py alone defaults to -1)
    "videomme": 3.0,
    "longvideobench": 2.5,
    "mlvu": 3.0,  # the query is the first line of MLVU's question, which is the harness's question stem
}


def bolt_quantiles(k: int) -> np.ndarray:
    """The K levels BOLT inverts the CDF at: linspace(1/K, 1 - 1/K, K) (K = 1: [1.0]; K = 2: [0.5, 0.5])."""
    return np.linspace(1.0 / k, 1.0 - 1.0 / k, k)


def bolt_cdf(scores: Sequence[float] | np.ndarray, alpha: float = 3.0) -> np.ndarray:
    """The float32 CDF over candidates: min-max normalised scores, to the power alpha (-1: none), summed up."""
    values = _check_scores(scores)
    alpha = _check_alpha(alpha)
    lo, hi = values.min(), values.max()
    if alpha == 0 or len(values) == 1:  # x ** 0 = 1 (NaN ** 0 too): equal mass; one candidate: all of it
        weights = np.ones(len(values), np.float32)
    elif hi == lo:
        raise HarnessError(f"bolt: constant scores (all {float(lo):g}): min-max normalisation is 0/0, so the "
                           f"scores give no distribution to sample from")
    else:
        weights = values - lo
        weights = weights / weights.max()
        if alpha != NO_POWER:
            weights = weights ** alpha  # a Python float exponent keeps float32
    return np.cumsum(weights / weights.sum())


def bolt_select(scores: Sequence[float] | np.ndarray, k: int, alpha: float = 3.0,
                duplicates: str = "keep") -> np.ndarray:
    """Ascending positions BOLT picks with budget k; with duplicates=keep exactly k, repeats allowed. See the module
    docstring."""
    if not isinstance(k, Integral) or isinstance(k, bool) or k < 1:
        raise HarnessError(f"bolt: the frame budget must be a whole number >= 1, got {k!r}")
    if duplicates not in DUPLICATES:
        raise HarnessError(f"bolt: duplicates must be one of {', '.join(DUPLICATES)}, got {duplicates!r}")
    cdf = bolt_cdf(scores, alpha)
    chosen = np.searchsorted(cdf, bolt_quantiles(int(k)), side="left")
    chosen = np.minimum(chosen, len(cdf) - 1).astype(np.int64)  # a CDF ending below u by rounding: the last one
    return np.unique(chosen) if duplicates == "unique" else chosen


def _check_scores(scores) -> np.ndarray:
    values = np.asarray(scores, dtype=np.float32)
    if values.ndim != 1 or values.size == 0:
        raise HarnessError(f"bolt: scores must be one value per candidate, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise HarnessError("bolt got NaN or infinite scores")
    return values


def _check_alpha(alpha) -> float:
    if not isinstance(alpha, Real) or isinstance(alpha, bool) or not math.isfinite(alpha) or \
            (alpha < 0 and alpha != NO_POWER):
        raise HarnessError(f"bolt: alpha must be -1 (no power) or a number >= 0, got {alpha!r}")
    return float(alpha)  # a Python float: a NumPy float64 exponent would turn the float32 weights into float64


@SAMPLERS.register(
    "bolt", description="BOLT: inverse transform sampling over query similarity (CLIP scores to the power alpha)",
    help={"preset": "benchmark default for alpha: " + "; ".join(f"{name} = {a:g}" for name, a in PRESETS.items()),
          "alpha": "power applied to the min-max normalised scores (overrides the preset); -1 = no power; "
                   "0 = uniform quantiles; larger = more frames near the peaks",
          "duplicates": "keep = as published: a candidate hit by several quantiles is selected several times "
                        "(exactly K frames); unique = each candidate once (fewer than K frames possible)",
          "encoder": "CLIP-type model (local folder, hub id or open_clip:NAME:PRETRAINED, e.g. a SigLIP) that scores "
                     "candidates by cosine similarity",
          "query": "text the candidates are scored against (official BOLT: the question only)"},
    choices={"preset": tuple(PRESETS), "duplicates": DUPLICATES, "query": QUERIES})
class BOLT(Sampler):
    """Constant scores raise a HarnessError (the sample's error row); see the module docstring."""

    name = "bolt"
    needs = ("scores",)

    def __init__(self, preset: str = "default", alpha: float | None = None, duplicates: str = "keep",
                 encoder: str = DEFAULT_ENCODER, query: str = "question"):
        for option, value, known in (("preset", preset, PRESETS), ("duplicates", duplicates, DUPLICATES),
                                     ("query", query, QUERIES)):
            if value not in known:
                raise HarnessError(f"option {option}={value!r} of 'bolt' must be one of {', '.join(known)}")
        self.preset, self.duplicates, self.encoder, self.query = preset, duplicates, encoder, query
        self.alpha = _check_alpha(PRESETS[preset] if alpha is None else alpha)  # alpha=3 and 3.0: the same run

    def config(self) -> dict:
        return {"preset": self.preset, "alpha": self.alpha, "duplicates": self.duplicates, "encoder": self.encoder,
                "query": self.query}

    def positions(self, n: int, k: int, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        return bolt_select(inputs["scores"], k, alpha=self.alpha, duplicates=self.duplicates)
