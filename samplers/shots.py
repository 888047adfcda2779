"""Shot-based sampling: shot boundaries from PySceneDetect's content detector, then frames spread over the shots.

A query-agnostic control (structure, no relevance), as in the shot/scene-based baselines of the frame-selection
literature. Written from PySceneDetect's documentation and source (Breakthrough/PySceneDetect 0.7,
`scenedetect/detectors/content_detector.py`, `scenedetect/detector.py` `FlashFilter`), read, not copied:

1. per candidate t, d[t] is ContentDetector's `content_val` between candidate t and candidate t - 1 (0 for the
   first): the mean absolute difference of the HSV channels (and optionally edges), weighted. The feature store
   computes it with PySceneDetect itself on the decoded grid frames (encoder `scenedetect:content`, see
   `harness.features.framediff`), so the detector sees the candidate grid, one frame per candidate, not the native
   frame rate: `threshold` and `min_scene_len` are in those units;
2. a cut is where d[t] >= threshold, filtered to a minimum shot length L by PySceneDetect's default flash filter
   (`FlashFilter.Mode.MERGE`): a cut fewer than L candidates after the last candidate above the threshold starts
   merging, and the merged run is emitted at its last above-threshold candidate once L candidates pass below the
   threshold (a merge still open at the end of the video is dropped, as the detector drops it); L <= 1 keeps every
   cut. A cut at candidate 0 starts no shot. Shots are [0, c1), [c1, c2), ..., [c_last, n);
3. the budget K is spread over the S shots:
   * `per-shot`: one frame per shot, its middle candidate start + len // 2 (the later of two middles, as
     PySceneDetect's `save-images` places one image at start + duration / 2); with more shots than K, the K longest
     (ties: the earlier shot), in time order; with fewer, every shot keeps one frame and the other K - S go to the
     shots in proportion to their spare candidates (len - 1) by largest remainders (ties: the earlier shot);
   * `by-length`: K in proportion to the shots' lengths by largest remainders (ties: the earlier shot), so a short
     shot may get no frame;
   inside a shot of length len given m frames, the frames are the centres of m equal parts,
   start + (2j + 1) * len // (2m), j = 0..m-1 (m = 1: the middle). No cut at all gives K evenly spread centres.

Every allocation stays within a shot (m <= len), so the selection is K distinct candidates whenever n >= K.
"""
from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Mapping, Sequence

import numpy as np

from harness.errors import HarnessError
from harness.registry import SAMPLERS
from samplers.base import Sampler

MODES = ("per-shot", "by-length")
DEFAULT_ENCODER = "scenedetect:content"
DEFAULT_THRESHOLD = 27.0  # ContentDetector's default threshold
# PySceneDetect's default min_scene_len is 15 native frames (0.5 s at 30 fps), less than one 1 fps candidate: on
# the candidate grid that is 1, no minimum.
DEFAULT_MIN_LEN = 1
# (threshold, min_scene_len) per benchmark. No paper publishes shot-sampling settings per benchmark: every preset is
# PySceneDetect's defaults, kept so that one preset option works across samplers.
PRESETS: dict[str, tuple[float, int]] = {name: (DEFAULT_THRESHOLD, DEFAULT_MIN_LEN)
                                         for name in ("default", "videomme", "longvideobench", "mlvu")}


def _check(diffs, k, threshold, min_len, mode) -> np.ndarray:
    values = np.asarray(diffs, dtype=np.float64)
    if values.ndim != 1:
        raise HarnessError(f"shots: frame differences must be one value per candidate, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise HarnessError("shots got NaN or infinite frame differences")
    if mode not in MODES:
        raise HarnessError(f"shots: unknown mode {mode!r} (known: {', '.join(MODES)})")
    if k is not None and (not isinstance(k, Integral) or isinstance(k, bool) or k < 1):
        raise HarnessError(f"shots: the frame budget must be a whole number >= 1, got {k!r}")
    if not isinstance(threshold, Real) or isinstance(threshold, bool) or not math.isfinite(threshold) or threshold < 0:
        raise HarnessError(f"shots: threshold must be a finite number >= 0, got {threshold!r}")
    if not isinstance(min_len, Integral) or isinstance(min_len, bool) or min_len < 0:
        raise HarnessError(f"shots: min_scene_len must be a whole number of candidates >= 0, got {min_len!r}")
    return values


def shot_cuts(diffs: Sequence[float] | np.ndarray, threshold: float = DEFAULT_THRESHOLD,
              min_len: int = DEFAULT_MIN_LEN) -> list[int]:
    """Candidates that start a new shot (ascending, never 0): ContentDetector's cuts with its merge flash filter."""
    values = _check(diffs, None, threshold, min_len, MODES[0])
    above = values >= threshold
    if min_len <= 0:  # the filter is off: every candidate above the threshold is a cut
        return [t for t in range(1, len(values)) if above[t]]
    cuts = []
    last_above, enabled, merging, merge_start = 0, False, False, 0
    for t in range(len(values)):
        met = t - last_above >= min_len  # measured from the last candidate above the threshold before this one
        if above[t]:
            last_above = t
        if merging:  # a run of close cuts, emitted at its last cut once min_len candidates pass below
            if met and not above[t] and last_above - merge_start >= min_len:
                merging = False
                cuts.append(last_above)
        elif above[t]:
            if met:
                enabled = True  # merging starts only after a first cut
                cuts.append(t)
            elif enabled:
                merging, merge_start = True, t
    return [c for c in cuts if c > 0]


def shot_bounds(diffs: Sequence[float] | np.ndarray, threshold: float = DEFAULT_THRESHOLD,
                min_len: int = DEFAULT_MIN_LEN) -> list[tuple[int, int]]:
    """The shots as [start, stop) candidate ranges, in time order, covering the grid."""
    n = len(np.asarray(diffs).reshape(-1))
    edges = [0, *shot_cuts(diffs, threshold, min_len), n]
    return [(a, b) for a, b in zip(edges, edges[1:]) if b > a]


def largest_remainders(total: int, weights: Sequence[int]) -> list[int]:
    """`total` split in proportion to integer `weights` (not all 0): floors, then one more each to the largest
    remainders, ties to the earlier. Exact integer arithmetic."""
    whole = sum(weights)
    floors = [total * w // whole for w in weights]
    remainders = [total * w % whole for w in weights]
    order = sorted(range(len(weights)), key=lambda i: -remainders[i])  # stable: ties keep time order
    for i in order[:total - sum(floors)]:
        floors[i] += 1
    return floors


def spread(start: int, length: int, m: int) -> list[int]:
    """m candidates of the shot [start, start + length): the centres of m equal parts (m <= length)."""
    return [start + (2 * j + 1) * length // (2 * m) for j in range(m)]


def shot_allocation(bounds: list[tuple[int, int]], k: int, mode: str) -> list[int]:
    """Frames per shot for budget k."""
    lengths = [b - a for a, b in bounds]
    if mode == "by-length":
        return largest_remainders(k, lengths)
    if len(bounds) >= k:  # per-shot, more shots than frames: the k longest, ties to the earlier shot
        keep = set(sorted(range(len(bounds)), key=lambda i: -lengths[i])[:k])
        return [int(i in keep) for i in range(len(bounds))]
    spare = [length - 1 for length in lengths]
    extra = largest_remainders(k - len(bounds), spare) if sum(spare) else [0] * len(bounds)
    return [1 + e for e in extra]


def shot_positions(diffs: Sequence[float] | np.ndarray, k: int, threshold: float = DEFAULT_THRESHOLD,
                   min_len: int = DEFAULT_MIN_LEN, mode: str = "per-shot") -> np.ndarray:
    """Ascending candidate positions the shot sampler takes with budget k (see the module docstring). Fewer than k
    candidates: every candidate."""
    values = _check(diffs, k, threshold, min_len, mode)
    n = len(values)
    if n <= k:
        return np.arange(n, dtype=np.int64)
    bounds = shot_bounds(values, threshold, min_len)
    takes = shot_allocation(bounds, int(k), mode)
    out = [p for (a, b), m in zip(bounds, takes) if m for p in spread(a, b - a, m)]
    return np.asarray(out, dtype=np.int64)


@SAMPLERS.register(
    "shots", description="shot-based control: PySceneDetect content-detector shots, one frame per shot or K "
                         "spread over shots by length (query-agnostic)",
    help={"preset": "benchmark defaults (no published per-benchmark settings: all are PySceneDetect's defaults, "
                    f"threshold {DEFAULT_THRESHOLD}, min_scene_len {DEFAULT_MIN_LEN})",
          "threshold": "content value (0-255, mean HSV difference of consecutive candidates) at or above which a "
                       "shot starts (overrides the preset; PySceneDetect's default 27)",
          "min_scene_len": "minimum shot length in candidates of the grid; closer cuts are merged as PySceneDetect's "
                           "flash filter does (overrides the preset; 0 or 1: none)",
          "mode": "per-shot = the middle candidate of each shot (the K longest shots when there are more; when "
                  "fewer, the rest by length); by-length = K in proportion to shot lengths, spread evenly in each",
          "encoder": "frame differences: scenedetect:content[:luma_only=true][:weights=H/S/L/E][:kernel_size=N]"
                     "[:downscale=auto|N] (PySceneDetect's ContentDetector on the decoded candidate frames)"},
    choices={"preset": tuple(PRESETS), "mode": MODES})
class Shots(Sampler):
    name = "shots"
    needs = ("scores",)

    def __init__(self, preset: str = "default", threshold: float | None = None, min_scene_len: int | None = None,
                 mode: str = "per-shot", encoder: str = DEFAULT_ENCODER):
        if preset not in PRESETS:
            raise HarnessError(f"option preset={preset!r} of 'shots' must be one of {', '.join(PRESETS)}")
        preset_threshold, preset_min_len = PRESETS[preset]
        self.preset, self.mode, self.encoder = preset, mode, str(encoder)
        self.threshold = preset_threshold if threshold is None else threshold
        self.min_scene_len = preset_min_len if min_scene_len is None else min_scene_len
        _check([], 1, self.threshold, self.min_scene_len, mode)
        if not self.encoder.startswith("scenedetect:"):
            raise HarnessError(f"option encoder={self.encoder!r} of 'shots' must be a frame-difference encoder "
                               f"(scenedetect:content...)")
        self.threshold, self.min_scene_len = float(self.threshold), int(self.min_scene_len)

    def config(self) -> dict:
        return {"preset": self.preset, "threshold": self.threshold, "min_scene_len": self.min_scene_len,
                "mode": self.mode, "encoder": self.encoder}

    def positions(self, n: int, k: int, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        return shot_positions(inputs["scores"], k, self.threshold, self.min_scene_len, self.mode)

    def frame_scores(self, inputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, str] | None:
        return (np.asarray(inputs["scores"], np.float64).reshape(-1),
                f"content value to the previous candidate ({self.encoder}; threshold {self.threshold:g})")
