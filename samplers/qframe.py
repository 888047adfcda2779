"""Q-Frame, query-aware frame selection and multi-resolution adaptation (Zhang, Yang, Yin, Luo, Luan; Xiaomi;
ICCV 2025, arXiv 2506.22139).

Written from the paper and a reading of the official xiaomi-research/q-frame code (`TextImageMatching` and the frame
handling of `lmms_eval/models/qwen2_vl_w_qframe.py`, the settings of `experiments/*/qwen2vl/qframe.sh` and the
README's budget rules), not copied from it. On N candidates (the run's grid; the official ones are
`--grid 1fps-max:128`: the 1 fps grid up to 128 frames, else 128 uniform frames):

1. logits l_i = <image feature_i, text feature>: the plain dot product of the encoder's projected features (no
   L2 normalisation, no logit scale), as the official LongCLIP `text_features @ image_features.T`;
2. p = softmax(l / tau), tau = 0.8;
3. Gumbel-max ranking: key_i = log p_i - log(-log(U_i + 1e-10) + 1e-10), U_i ~ Uniform[0, 1), candidates ranked
   by descending key (ties: the earlier candidate);
4. the first `high` ranks are given at 1/2 of the frame's width and height, the next `mid` at 1/4, the next `low`
   at 1/8; the others are dropped (a grid with fewer candidates than high + mid + low keeps them all, tiers by rank);
5. the kept frames in time order, each with its scale (`Selection.scales`).

Budgets, from the README: "tokens" (fixed tokens) spends what K frames at 1/2 would: high + mid/4 + low/16 = K,
here high = K // 2 and the rest split evenly in tokens between the two lower tiers (mid = 2r, low = 8r, r = K - high),
so K = 8 gives the published 4 + 8 + 32; "frames" (fixed frames) is high = K, mid = low = 0. `high`, `mid`, `low`
set the tiers directly instead. The preset of a benchmark holds the run to the published Qwen2-VL setting: 4/8/32 of
128 candidates against an 8-frame baseline (`--frames 8 --grid 1fps-max:128`).

Differences from the official code, on purpose:

* the noise is seeded: U comes from a NumPy Generator seeded with (seed, the sample id's hash), so a run is
  reproducible, every question draws its own noise, and `seed=` gives the runs whose spread is the method's variance
  (the official `torch.rand` is unseeded);
* LongCLIP-L@336px cannot be loaded here: any CLIP-type encoder of the feature store scores the candidates (default
  below: OpenAI's CLIP ViT-L/14@336, the model LongCLIP-L is fine-tuned from; offline: `encoder=mini-clip`);
* log p is a float64 log-softmax (the official float32 softmax, then log, gives -inf for probabilities below
  float32's range; those candidates then rank last, in no defined order);
* the official fallback on any error (8 random frames at 1/2) is not reproduced: an error is the sample's error row.

The backbone resizes each kept frame to its scale (Qwen2.5-VL: `backbones.qwen2_5_vl.scaled`), so only backbones
that take scales can answer with qframe's selections.
"""
from __future__ import annotations

import hashlib
from numbers import Integral, Real
from typing import Mapping, Sequence

import numpy as np

from harness.errors import HarnessError
from harness.registry import SAMPLERS
from samplers.base import Sampler

DEFAULT_ENCODER = "openai/clip-vit-large-patch14-336"  # LongCLIP-L@336px's base CLIP (LongCLIP is not loadable here)
DEFAULT_TAU = 0.8  # TextImageMatching(..., tau=0.8) in the official Qwen2-VL and GPT-4o wrappers
TIER_SCALES = (0.5, 0.25, 0.125)  # high, mid, low: width // 2, // 4, // 8 in the official code
BUDGETS = ("tokens", "frames")
QUERIES = ("question", "question+options")
EPS = 1e-10  # the official Gumbel noise's guard, inside both logarithms

# Published settings (experiments/{videomme,videomme_w_subtitle,longvideobench,mlvu}/qwen2vl/qframe.sh):
# (K of the baseline, N candidates, high, mid, low). The Video-MME scripts misspell max_num_frames; the intended
# setting is the same 128 candidates and 4/8/32 tiers as for the other benchmarks.
PRESETS: dict[str, tuple[int, int, int, int, int] | None] = {
    "default": None,  # no published setting enforced: tiers from --frames and `budget`
    "videomme": (8, 128, 4, 8, 32),
    "longvideobench": (8, 128, 4, 8, 32),
    "mlvu": (8, 128, 4, 8, 32),
}


def _whole(value, what: str, least: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < least:
        raise HarnessError(f"qframe: {what} must be a whole number >= {least}, got {value!r}")
    return int(value)


def qframe_tiers(k: int, budget: str = "tokens") -> tuple[int, int, int]:
    """(high, mid, low) frames for a budget of K frame-equivalents: "tokens": high + mid/4 + low/16 = K with
    high = K // 2, mid = 2r, low = 8r (r = K - high; K = 8: 4, 8, 32); "frames": (K, 0, 0)."""
    k = _whole(k, "the frame budget", 1)
    if budget == "frames":
        return k, 0, 0
    if budget == "tokens":
        high = k // 2
        rest = k - high
        return high, 2 * rest, 8 * rest
    raise HarnessError(f"qframe: budget must be one of {', '.join(BUDGETS)}, got {budget!r}")


def qframe_logits(image_features: np.ndarray, text_feature: np.ndarray) -> np.ndarray:
    """(n,) float64 dot products of the candidates' image features with the query's text feature."""
    images = np.asarray(image_features, np.float64)
    text = np.asarray(text_feature, np.float64).reshape(-1)
    if images.ndim != 2 or images.shape[1] != text.size:
        raise HarnessError(f"qframe: image features {images.shape} and text feature {text.shape} do not match")
    return images @ text


def gumbel_uniforms(n: int, seed: int, key: int = 0) -> np.ndarray:
    """U ~ Uniform[0, 1) for n candidates from a NumPy Generator seeded with (seed, key)."""
    return np.random.default_rng([int(seed), int(key)]).random(int(n))


def gumbel_keys(logits: Sequence[float] | np.ndarray, uniforms: Sequence[float] | np.ndarray,
                tau: float = DEFAULT_TAU) -> np.ndarray:
    """log softmax(logits / tau) - log(-log(U + 1e-10) + 1e-10), in float64."""
    values = np.asarray(logits, np.float64).reshape(-1)
    u = np.asarray(uniforms, np.float64).reshape(-1)
    if values.size == 0 or u.shape != values.shape:
        raise HarnessError(f"qframe: {values.size} logits and {u.size} uniforms (one each per candidate)")
    if not np.isfinite(values).all():
        raise HarnessError("qframe got NaN or infinite logits")
    if not isinstance(tau, Real) or isinstance(tau, bool) or not tau > 0 or not np.isfinite(tau):
        raise HarnessError(f"qframe: tau must be a number > 0, got {tau!r}")
    z = values / float(tau)
    shifted = z - z.max()
    log_p = shifted - np.log(np.exp(shifted).sum())
    return log_p - np.log(-np.log(u + EPS) + EPS)


def qframe_select(logits: Sequence[float] | np.ndarray, high: int, mid: int, low: int, tau: float = DEFAULT_TAU,
                  uniforms: Sequence[float] | np.ndarray | None = None, seed: int = 0,
                  key: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(ascending positions, their scales): the Gumbel-max ranking of softmax(logits / tau), its first `high`
    ranks at 1/2, the next `mid` at 1/4, the next `low` at 1/8. `uniforms` fixes the noise (U per candidate);
    without it U comes from `gumbel_uniforms(n, seed, key)`."""
    tiers = [_whole(v, name) for v, name in ((high, "high"), (mid, "mid"), (low, "low"))]
    if sum(tiers) < 1:
        raise HarnessError("qframe: high + mid + low must keep at least one frame")
    values = np.asarray(logits, np.float64).reshape(-1)
    u = gumbel_uniforms(values.size, seed, key) if uniforms is None else uniforms
    order = np.argsort(-gumbel_keys(values, u, tau), kind="stable")
    scale_of = np.zeros(values.size)
    start = 0
    for count, scale in zip(tiers, TIER_SCALES):
        scale_of[order[start:start + count]] = scale
        start += count
    positions = np.flatnonzero(scale_of > 0)
    return positions.astype(np.int64), scale_of[positions]


def sample_key(sample_id: str) -> int:
    """A stable 63-bit number of a sample id: the per-question part of the noise seed."""
    return int(hashlib.sha256(str(sample_id).encode()).hexdigest()[:16], 16) >> 1


@SAMPLERS.register(
    "qframe", description="Q-Frame: Gumbel-max ranking of softmax(CLIP logits / tau); top frames at 1/2, 1/4, 1/8 "
                          "resolution (needs a backbone that takes scales)",
    help={"preset": "published setting to hold the run to: " + "; ".join(
              f"{name} = high/mid/low {v[2]}/{v[3]}/{v[4]} of N {v[1]} (--frames {v[0]} --grid 1fps-max:{v[1]})"
              if v else f"{name} = tiers from --frames and budget" for name, v in PRESETS.items()),
          "budget": "tokens = fixed tokens: high + mid/4 + low/16 = K (high K//2, mid 2(K-high), low 8(K-high)); "
                    "frames = fixed frames: K frames at 1/2, none lower",
          "high": "frames at 1/2 of width and height (with mid and low: tiers set directly, instead of budget)",
          "mid": "frames at 1/4 of width and height (with high and low: tiers set directly)",
          "low": "frames at 1/8 of width and height (with high and mid: tiers set directly)",
          "tau": "softmax temperature over the logits (official 0.8)",
          "seed": "seed of the Gumbel noise (with each question's id); the official noise is unseeded: vary it "
                  "to measure the method's variance",
          "encoder": "CLIP-type model (local folder, hub id, shipped mini-clip or open_clip:NAME:PRETRAINED) whose "
                     "projected features give the logits (official: LongCLIP-L@336px, not loadable here)",
          "query": "text the candidates are scored against (official Q-Frame: the question only)"},
    choices={"preset": tuple(PRESETS), "budget": BUDGETS, "query": QUERIES})
class QFrame(Sampler):
    name = "qframe"
    needs = ("image_features", "text_feature", "noise_key")
    per_sample = ("text_feature", "noise_key")
    multi_resolution = True

    def __init__(self, preset: str = "default", budget: str | None = None, high: int | None = None,
                 mid: int | None = None, low: int | None = None, tau: float = DEFAULT_TAU, seed: int = 0,
                 encoder: str = DEFAULT_ENCODER, query: str = "question"):
        for option, value, known in (("preset", preset, PRESETS), ("query", query, QUERIES)):
            if value not in known:
                raise HarnessError(f"option {option}={value!r} of 'qframe' must be one of {', '.join(known)}")
        if budget is not None and budget not in BUDGETS:
            raise HarnessError(f"option budget={budget!r} of 'qframe' must be one of {', '.join(BUDGETS)}")
        explicit = (high, mid, low) != (None, None, None)
        if explicit and (budget is not None or PRESETS[preset] is not None):
            raise HarnessError("qframe: give high/mid/low, or budget / a preset, not both")
        self.tiers = tuple(_whole(v or 0, name) for v, name in ((high, "high"), (mid, "mid"), (low, "low"))) \
            if explicit else None
        if self.tiers is not None and sum(self.tiers) < 1:
            raise HarnessError("qframe: high + mid + low must keep at least one frame")
        if isinstance(tau, bool) or not isinstance(tau, Real) or not tau > 0 or not np.isfinite(tau):
            raise HarnessError(f"option tau={tau!r} of 'qframe' must be a number > 0")
        self.preset, self.encoder, self.query = preset, str(encoder), query
        self.budget = "explicit" if explicit else (budget or "tokens")
        self.tau, self.seed = float(tau), _whole(seed, "seed")

    def config(self) -> dict:
        return {"preset": self.preset, "budget": self.budget, "tiers": None if self.tiers is None else
                list(self.tiers), "scales": list(TIER_SCALES), "tau": self.tau, "seed": self.seed,
                "encoder": self.encoder, "query": self.query, "noise": "numpy default_rng([seed, sample key])"}

    def sample_inputs(self, sample) -> dict[str, np.ndarray]:
        return {"noise_key": np.asarray([sample_key(sample.id)], np.int64)}

    def tiers_for(self, k: int) -> tuple[int, int, int]:
        """(high, mid, low) of this run's budget K."""
        if self.tiers is not None:
            return self.tiers
        published = PRESETS[self.preset]
        if published is not None:
            return published[2:]
        return qframe_tiers(k, self.budget)

    def select(self, n: int, k: int, inputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        published = PRESETS[self.preset]
        if published is not None and (k != published[0] or n > published[1]):
            raise HarnessError(f"qframe preset={self.preset} is a budget of K={published[0]} over at most "
                               f"N={published[1]} candidates; this run has K={k}, N={n}: run --frames "
                               f"{published[0]} --grid 1fps-max:{published[1]}, or drop the preset")
        logits = qframe_logits(inputs["image_features"], inputs["text_feature"])
        key = int(np.asarray(inputs["noise_key"]).reshape(-1)[0])
        return qframe_select(logits, *self.tiers_for(k), tau=self.tau, seed=self.seed, key=key)

    def positions(self, n: int, k: int, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.select(n, k, inputs)[0]

    def frame_scores(self, inputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, str] | None:
        return qframe_logits(inputs["image_features"], inputs["text_feature"]), f"qframe logit ({self.encoder})"
