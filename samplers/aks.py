"""AKS, Adaptive Keyframe Sampling (ncTimTang/AKS, `frame_select.py`): judge-and-split over per-candidate scores.

Written from a reading of the official `frame_select.py` (its selection function, quirks and defaults) and the AKS
paper (Tang et al., CVPR 2025, arXiv 2502.21271), not copied from the code. With budget K, depth limit L and thresholds t1, t2:

1. fewer than K candidates: every candidate is returned (the official short-video rule);
2. scores are min-max normalised once, over the whole vector, in float64;
3. breadth-first judge-and-split from the root (depth 0): a segment is "peaked" and becomes a leaf when the mean of
   its top min(K, len) scores minus its mean score exceeds t1 (and its std exceeds t2); otherwise it splits into
   halves (the left half gets len // 2) until depth L, where it becomes a leaf anyway;
4. a leaf at depth d contributes its top floor(K / 2^d) candidates; ties go to the earlier candidate.

Two modes:

* `official` reproduces the published code, quirks included: the peakedness test uses the full budget K at
  every depth; the floor allocation returns fewer than K frames when K is not divisible by 2^d, and none at all
  when every leaf is deeper than log2 K (e.g. K=16, L=5 on non-peaked scores); all-equal scores (0/0 in the
  normalisation, all NaN in the official code) are never peaked, split to depth L, and each leaf gives its first
  candidates. This mode never falls back to anything: a short selection is the selection.
* `fixed` always returns exactly K distinct candidates when there are at least K: the depth is capped at
  floor(log2 K); the frames the floors leave over go one at a time to the leaf furthest below its exact share
  K / 2^d (ties: the leaf whose best unchosen candidate scores higher, then the earlier leaf); all-equal scores,
  which carry no relevance, give K evenly spaced candidates `linspace(0, n-1, K)` floored (official frame_select.py, case 1).

Not reproduced on purpose: `ratio` thinning (every released selection uses ratio=1; a coarser `--grid` does the same
job) and the LLaVA-Video evaluation's replacement of short selections by uniform frames (its `llava_vid` adapter),
which is a silent fallback; where a short grid causes it (fewer than K candidates), `--grid int-fps-min:K` gives
those uniform frames as the candidates, explicitly (the AKS recipes do). NaN or infinite scores are rejected in both
modes (official frame_select.py, case 2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Mapping, Sequence

import numpy as np

from harness.errors import HarnessError
from harness.registry import SAMPLERS
from samplers.base import Sampler

MODES = ("official", "fixed")
DEFAULT_T2 = -100.0  # frame_select.py's default; the std test never bites with it
DEFAULT_ENCODER = "Salesforce/blip-itm-large-coco"  # LAVIS BLIP ITM large, COCO retrieval (AKS's `feature_extract.py` default)

# (t1, depth) per benchmark: the settings of AKS's evaluation scripts and paper (Sec. 4.1).
PRESETS: dict[str, tuple[float, int]] = {
    "default": (0.8, 5),  # frame_select.py's own defaults (t1=0.8, all_depth=5)
    "videomme": (0.8, 5),  # author (AKS#20, AKS#29); matches the released Video-MME selections
    "longvideobench": (0.2, 3),  # released LVB selections are inconsistent with 0.8/5; TSPO's port uses 0.2/3
    "mlvu": (0.2, 3),  # not evaluated by official AKS: LVB-style values, as TSPO used
    "lvbench": (0.2, 3),  # not evaluated by official AKS: LVB-style values, as TSPO used
}


@dataclass(frozen=True)
class Leaf:
    """One final segment of the split: positions [start, stop) at `depth`, contributing `take` candidates."""

    depth: int
    start: int
    stop: int
    take: int


def aks_select(scores: Sequence[float] | np.ndarray, k: int, t1: float = 0.8, depth: int = 5,
               mode: str = "official", t2: float = DEFAULT_T2) -> list[int]:
    """Positions (ascending) in `scores` that AKS selects with budget `k`. See the module docstring."""
    chosen, _ = _run(scores, k, t1, depth, mode, t2)
    return chosen


def aks_leaves(scores: Sequence[float] | np.ndarray, k: int, t1: float = 0.8, depth: int = 5,
               mode: str = "official", t2: float = DEFAULT_T2) -> list[Leaf]:
    """The leaves of the split, in time order, for auditing. Empty when fewer than k candidates, or when
    `fixed` mode spreads all-equal scores evenly. Empty segments, which the official code keeps splitting to depth
    L, hold no candidate and are left out."""
    _, leaves = _run(scores, k, t1, depth, mode, t2)
    return leaves


def _run(scores, k, t1, depth, mode, t2) -> tuple[list[int], list[Leaf]]:
    values = _check_scores(scores)
    _check_params(k, t1, depth, mode, t2)
    k, depth, n = int(k), int(depth), len(values)  # plain ints: numpy integers have no bit_length
    if n < k:
        return list(range(n)), []
    lo, hi = values.min(), values.max()
    flat = bool(hi == lo)  # official: 0/0 -> all NaN, so no segment is ever peaked and ties keep time order
    if flat and mode == "fixed":
        return np.linspace(0, n - 1, k).astype(np.int64).tolist(), []
    normalised = np.zeros(n) if flat else (values - lo) / (hi - lo)
    depth_limit = depth if mode == "official" else min(depth, k.bit_length() - 1)  # fixed: 2^depth <= k
    segments = _split(normalised, k, float(t1), depth_limit, float(t2), flat)
    if mode == "official":
        takes = [min(k >> d, stop - start) for d, start, stop, _ in segments]  # floor(k / 2^d), any depth
    else:
        takes = _fixed_takes(segments, normalised, k)
    chosen = sorted(start + int(p) for (_, start, _, order), take in zip(segments, takes) for p in order[:take])
    leaves = sorted((Leaf(d, start, stop, take) for (d, start, stop, _), take in zip(segments, takes)),
                    key=lambda leaf: leaf.start)
    return chosen, leaves


def _check_scores(scores) -> np.ndarray:
    values = np.asarray(scores, dtype=np.float64)  # official frame_select.py, case 9: float64, as the official JSON scores
    if values.ndim != 1:
        raise HarnessError(f"aks: scores must be one value per candidate, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise HarnessError("aks got NaN or infinite scores")
    return values


def _check_params(k, t1, depth, mode, t2) -> None:
    if mode not in MODES:
        raise HarnessError(f"aks: unknown mode {mode!r} (known: {', '.join(MODES)})")
    if not isinstance(k, Integral) or isinstance(k, bool) or k < 1:
        raise HarnessError(f"aks: the frame budget must be a whole number >= 1, got {k!r}")
    if not isinstance(depth, Integral) or isinstance(depth, bool) or depth < 0:
        raise HarnessError(f"aks: depth must be a whole number >= 0, got {depth!r}")
    for name, value in (("t1", t1), ("t2", t2)):
        if not isinstance(value, Real) or isinstance(value, bool) or math.isnan(value):
            raise HarnessError(f"aks: {name} must be a number, got {value!r}")


def _descending(segment: np.ndarray) -> np.ndarray:
    """Positions in `segment` by score, highest first; equal scores keep time order (heapq.nlargest is stable)."""
    return np.argsort(-segment, kind="stable")


def _is_peaked(segment: np.ndarray, order: np.ndarray, budget: int, t1: float, t2: float, flat: bool) -> bool:
    if flat:  # the official NaN gap and std compare False
        return False
    # the top values in descending order, as the official code averages them: same summation order, same rounding
    gap = np.mean(segment[order[:budget]]) - np.mean(segment)
    return bool(gap > t1 and np.std(segment) > t2)


def _split(normalised: np.ndarray, k: int, t1: float, depth_limit: int, t2: float, flat: bool) -> list[tuple]:
    """Breadth-first judge-and-split; returns the non-empty leaves as (depth, start, stop, descending order)."""
    leaves = []
    frontier = [(0, 0, len(normalised))]
    while frontier:
        following = []
        for d, start, stop in frontier:
            if start == stop:  # holds nothing at any depth
                continue
            segment = normalised[start:stop]
            order = _descending(segment)
            # the peakedness test uses the full budget k at every depth, as the official code does (as frame_select.py does)
            if _is_peaked(segment, order, k, t1, t2, flat):
                leaves.append((d, start, stop, order))
            elif d >= depth_limit:
                leaves.append((d, start, stop, order))
            elif stop - start == 1:
                # a single candidate is never peaked at any depth (its gap and std are exactly 0, and it was not
                # peaked here), so it would split down to the depth limit beside empty halves: jump there
                leaves.append((depth_limit, start, stop, order))
            else:
                middle = start + (stop - start) // 2  # the left half is the smaller one
                following += [(d + 1, start, middle), (d + 1, middle, stop)]
        frontier = following
    return leaves


def _fixed_takes(segments: list[tuple], normalised: np.ndarray, k: int) -> list[int]:
    """Exactly k frames over the leaves: floor(k / 2^d) each, then one at a time to the leaf furthest below its
    exact share k / 2^d (ties: higher best unchosen score, then the earlier leaf), never beyond a leaf's size."""
    takes = [min(k // 2 ** d, stop - start) for d, start, stop, _ in segments]

    def priority(i: int) -> tuple:
        d, start, _, order = segments[i]
        return k / 2 ** d - takes[i], normalised[start + order[takes[i]]], -start

    for _ in range(k - sum(takes)):
        open_leaves = [i for i, (_, start, stop, _) in enumerate(segments) if takes[i] < stop - start]
        takes[max(open_leaves, key=priority)] += 1
    return takes


@SAMPLERS.register(
    "aks", description="Adaptive Keyframe Sampling: judge-and-split over query relevance (BLIP ITM scores)",
    help={"preset": "benchmark defaults for t1 and depth: " + "; ".join(
              f"{name} = t1 {t1}, depth {d}" for name, (t1, d) in PRESETS.items()),
          "t1": "peakedness threshold (overrides the preset): high t1 gives equal bins, low t1 global top-K",
          "depth": "maximum split depth L (overrides the preset)",
          "mode": "official = the published code, quirks included (may return fewer than K frames); "
                  "fixed = exactly K frames (depth capped at log2 K, remainders distributed)",
          "t2": "std threshold of the peakedness test (the official default -100 disables it)",
          "encoder": "model that scores candidates against the query: a BLIP ITM model (match probability) or a "
                     "CLIP model (cosine)",
          "query": "text the candidates are scored against (official AKS: the question only)"},
    choices={"preset": tuple(PRESETS), "mode": MODES, "query": ("question", "question+options")})
class AKS(Sampler):
    """An empty official selection (K < 2^d for every leaf) raises a HarnessError naming the cause rather than
    falling back to anything; a short one (K not divisible by 2^d) is returned as it is, fewer than K frames."""

    name = "aks"
    needs = ("scores",)

    def __init__(self, preset: str = "default", t1: float | None = None, depth: int | None = None,
                 mode: str = "official", t2: float = DEFAULT_T2, encoder: str = DEFAULT_ENCODER,
                 query: str = "question"):
        if preset not in PRESETS:
            raise HarnessError(f"option preset={preset!r} of 'aks' must be one of {', '.join(PRESETS)}")
        if query not in ("question", "question+options"):
            raise HarnessError(f"option query={query!r} of 'aks' must be question or question+options")
        preset_t1, preset_depth = PRESETS[preset]
        self.preset, self.mode, self.encoder, self.query = preset, mode, encoder, query
        self.t1 = preset_t1 if t1 is None else t1
        self.depth = preset_depth if depth is None else depth
        self.t2 = t2
        _check_params(1, self.t1, self.depth, mode, t2)
        self.t1, self.t2 = float(self.t1), float(self.t2)  # t1=1 and t1=1.0 are the same run

    def config(self) -> dict:
        return {"preset": self.preset, "t1": self.t1, "depth": int(self.depth), "t2": self.t2, "mode": self.mode,
                "encoder": self.encoder, "query": self.query}

    def positions(self, n: int, k: int, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        chosen = aks_select(inputs["scores"], k, t1=self.t1, depth=self.depth, mode=self.mode, t2=self.t2)
        if not chosen:
            raise HarnessError(
                f"aks official selected no frames: every leaf is deeper than log2(K) (K={k}, depth={self.depth}), "
                f"so floor(K/2^d) = 0 for each; use mode=fixed or depth<={int(k).bit_length() - 1}")
        return np.asarray(chosen, dtype=np.int64)
