"""FOCUS, Frame-Optimistic Confidence Upper-bound Selection (Zhu et al., NUS; ICLR 2026, arXiv 2510.27280).

Written from a reading of the official NUS-HPC-AI-Lab/FOCUS `focus.py` (class `FOCUS`, `select_keyframes` and its
stages) and `select_keyframe.py` (the adaptive minimum gap, the defaults of its command line), not copied. Keyframe
selection as a combinatorial pure-exploration bandit over clips, scoring only the frames it looks at:

0. arms: D = max(8, ceil(duration / 16 s)) clips; stride floor(n / D), arms of n // (n // stride) frames (a tail
   shorter than one arm belongs to none);
1. coarse stage: score each arm's centre ((start + end) // 2) and 2 random other frames of it;
2. per arm the Bernstein upper bound mean + sqrt(2 ln N max(var, 1e-6) / n_i) + 3 ln N / n_i (N: frames scored in
   all arms, n_i: in this arm; var: population variance, 0 for one sample);
3. fine stage: the top max(4, ceil(0.25 A)) arms by that bound; around each centre a window of half width
   max(1 frame, arm length / 2), with max(1, window // (1 s)) frames, half of them evenly spaced (round half to even)
   and the rest random, none scored before;
4. final selection: the round(0.2 min(K, scored)) best-scored frames; the rest of K split evenly (the first ones get
   one more) over the top S = clamp(ceil(0.25 A), 4, 32) arms (at most A) by the coarse bound; within an arm each
   frame gets its score from the nearest coarse sample (clipped to [0, 1]), min-max normalised, and frames are drawn
   without replacement with softmax(score / 0.06), keeping an adaptive minimum gap from those already chosen (if
   none keeps it, the gap is dropped for that arm): gap = 0 if duration / K <= 0.2 s, else min(1 s, 0.25 duration / K);
5. the chosen frames sorted (at most K; fewer when the top arms run out of frames).

Where the spec (docs reference B.6) and the code differ, this follows the code: the fine-stage scores never reach
the arms' statistics (the official `_update_arms_with_scores` reads only each arm's coarse samples), so the final
arm ranking is the coarse one and the fine scores serve only the best-scored frames of step 4; the softmax is over
interpolated frame scores within an arm, not over arms (arms get an even split); the top part is 0.2 of
min(K, frames scored), rounded half to even.

The harness's candidate grid stands in for the video's native frames: positions are frames, and the frame rate is
the grid's ((n - 1) / time spanned), so on the default 1fps grid "1 s" is one candidate. See docs/samplers.md for
the differences (per-question RNG, linear interpolation on sorted samples, rbf not offered, duration n / rate).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from numbers import Integral, Real
from typing import Callable, Mapping

import numpy as np

from harness.errors import HarnessError
from harness.registry import SAMPLERS
from samplers.base import Sampler

DEFAULT_ENCODER = "Salesforce/blip-itm-large-coco"  # LAVIS blip_image_text_matching "large", FOCUS's --blip_model
INTERPOLATIONS = ("nearest", "linear", "uniform", "rbf")
QUERIES = ("question", "question+options")


@dataclass(frozen=True)
class FocusParams:
    """The official defaults (select_keyframe.py's command line, run_focus_example.sh), one name each."""

    coarse_every_sec: float = 16.0
    fine_every_sec: float = 1.0
    zoom_ratio: float = 0.25
    final_min_arms: int = 4
    final_max_arms: int = 32
    min_coarse_segments: int = 8
    min_zoom_segments: int = 4
    extra_samples_per_region: int = 2
    min_variance_threshold: float = 1e-6
    fine_uniform_ratio: float = 0.5
    interpolation: str = "nearest"
    top_ratio: float = 0.2
    temperature: float = 0.06
    region_half_window_sec: float | None = None  # None: half an arm's duration
    min_gap_sec: float = 1.0  # the adaptive gap's cap
    gap_ratio_of_avg: float = 0.25
    disable_gap_below_sec: float = 0.2


def grid_rate(timestamps) -> float:
    """Candidates per second of a grid: (n - 1) / time spanned (1.0 for one candidate or no time spanned)."""
    t = np.asarray(timestamps, np.float64).reshape(-1)
    span = float(t[-1] - t[0]) if t.size > 1 else 0.0
    return (t.size - 1) / span if span > 0 else 1.0


def adaptive_min_gap(duration: float, k: int, p: FocusParams) -> float:
    """select_keyframe.py's gap: none when the average spacing duration / K is at most disable_gap_below_sec, else
    min(min_gap_sec, gap_ratio_of_avg * spacing)."""
    spacing = duration / max(1, k)
    return 0.0 if spacing <= p.disable_gap_below_sec else min(p.gap_ratio_of_avg * spacing, p.min_gap_sec)


def coarse_segments(n: int, fps: float, p: FocusParams) -> int:
    """D = max(min_coarse_segments, ceil(duration / coarse_every_sec)), duration = n / fps."""
    return max(p.min_coarse_segments, int(math.ceil(n / fps / max(1e-6, p.coarse_every_sec))))


def focus_arms(n: int, fps: float, p: FocusParams) -> list[tuple[int, int]]:
    """(start, end) of each arm, both inclusive, over n frames at fps."""
    stride = max(1, n // coarse_segments(n, fps, p))
    count = max(1, n // stride)
    size = max(1, n // count)
    return [(i * size, min((i + 1) * size, n) - 1) for i in range(count) if min((i + 1) * size, n) > i * size]


def bernstein_ucb(arm_scores: list[list[float]], min_variance: float = 1e-6) -> np.ndarray:
    """Per arm: mean + sqrt(2 ln N var / n_i) + 3 ln N / n_i, var floored at min_variance (the mean alone when
    N <= 1 or the arm has no sample)."""
    total = sum(len(s) for s in arm_scores)
    out = np.zeros(len(arm_scores))
    for i, scores in enumerate(arm_scores):
        n_i = len(scores)
        mean = float(np.mean(scores)) if n_i else 0.0
        var = max(float(np.var(scores)) if n_i > 1 else 0.0, min_variance)
        out[i] = mean
        if total > 1 and n_i > 0:
            out[i] += math.sqrt(max(0.0, 2 * math.log(total) * var / n_i))  # two additions, in this order
            out[i] += 3 * math.log(total) / n_i
    return out


def final_split(remaining: int, n_arms: int, p: FocusParams) -> list[int]:
    """Frames per arm, best arm first, for the `remaining` frames after the top ones: S = clamp(ceil(zoom_ratio A),
    final_min_arms, final_max_arms) arms (at most A), an even split, the first `remaining % S` one more."""
    s = max(p.final_min_arms, int(math.ceil(n_arms * max(0.0, min(1.0, float(p.zoom_ratio))))))
    s = min(s, p.final_max_arms, n_arms)
    return [remaining // s + (1 if i < remaining % s else 0) for i in range(s)]


def _ranked(values: np.ndarray) -> np.ndarray:
    return np.argsort(-np.asarray(values, np.float64), kind="stable")  # ties keep their order, as sorted(reverse)


def _scores(score: Callable, positions: list[int]) -> list[float]:
    values = np.asarray(score(np.asarray(positions, np.int64)), np.float64).reshape(-1)
    if values.size != len(positions) or not np.isfinite(values).all():
        raise HarnessError(f"focus: the scorer gave {values.size} values (finite: {np.isfinite(values).all()}) "
                           f"for {len(positions)} frames")
    return values.tolist()


def _fine_positions(zoom: list[tuple[int, int]], n: int, fine_stride: int, half: int, coarse: set,
                    p: FocusParams, rng) -> list[int]:
    fine: set[int] = set()
    for start, end in zoom:
        centre = (start + end) // 2
        lo, hi = max(0, centre - half), min(n - 1, centre + half)
        width = hi - lo + 1
        required = max(1, width // fine_stride)
        even = int(round(required * p.fine_uniform_ratio))
        picks = [(lo + hi) // 2] if even > 0 and width <= even else \
            [min(lo + int(i * (width / even) + (width / even) / 2), hi) for i in range(even)] if even > 0 else []
        fine.update(x for x in picks if x not in coarse)
        if required - even > 0:
            free = [i for i in range(lo, hi + 1) if i not in coarse and i not in fine]
            if free:
                fine.update(int(x) for x in rng.choice(free, size=min(required - even, len(free)), replace=False))
    return sorted(fine)


def _estimate(samples: list[tuple[int, float]], start: int, end: int, method: str) -> np.ndarray:
    """Scores of frames start..end from an arm's coarse samples, clipped to [0, 1]."""
    where = np.asarray([s[0] for s in samples], np.float64)
    values = np.asarray([s[1] for s in samples], np.float64)
    frames = np.arange(start, end + 1, dtype=np.float64)
    if method == "nearest":  # the first sample among equally near ones
        out = values[np.argmin(np.abs(where[None, :] - frames[:, None]), axis=1)]
    elif len(samples) >= 2:  # linear, on samples sorted by time
        order = np.argsort(where, kind="stable")
        out = np.interp(frames, where[order], values[order])
    else:
        out = np.full(frames.shape, values[0])
    return np.clip(out, 0.0, 1.0)


def _draw_in_arm(start: int, end: int, need: int, samples, chosen: set, gap: int, p: FocusParams, rng) -> list[int]:
    free = [c for c in range(start, end + 1) if c not in chosen]
    if not free:
        return []
    keeps = [c for c in free if gap <= 0 or all(abs(c - f) >= gap for f in chosen)] or free
    if p.interpolation == "uniform":
        return [int(x) for x in rng.choice(keeps, size=min(need, len(keeps)), replace=False)]
    estimate = _estimate(samples, start, end, p.interpolation)[np.asarray(keeps) - start]
    spread = estimate.max() - estimate.min()
    norm = (estimate - estimate.min()) / spread if spread > 0 else np.ones_like(estimate)
    logits = norm / max(1e-12, p.temperature)
    weights = np.exp(logits - logits.max())
    try:
        picks = rng.choice(len(keeps), size=min(need, len(keeps)), p=weights / weights.sum(), replace=False)
    except ValueError as e:  # e.g. a temperature so low that fewer frames than needed keep any weight
        raise HarnessError(f"focus: cannot draw {need} frames in an arm (temperature={p.temperature:g}): {e}") from None
    return [int(keeps[i]) for i in picks]


def focus_select(n: int, k: int, timestamps, score: Callable, rng: np.random.Generator | None = None,
                 seed: int = 42, params: FocusParams | None = None, trace: dict | None = None,
                 fps: float | None = None) -> np.ndarray:
    """Ascending positions FOCUS picks from n candidates at `timestamps` with budget k; `score(positions)` gives
    the scores of the positions it asks for (called twice: coarse, then fine). `rng` (default: default_rng(seed))
    drives every random draw. `fps`: frames per second of the positions (default: `grid_rate(timestamps)`).
    `trace`, when given, receives the arms, bounds and frames scored."""
    p = params or FocusParams()
    if not isinstance(k, Integral) or isinstance(k, bool) or k < 1:
        raise HarnessError(f"focus: the frame budget must be a whole number >= 1, got {k!r}")
    if len(timestamps) != n or n < 1:
        raise HarnessError(f"focus: {len(timestamps)} timestamps for a grid of {n} candidates")
    rng = np.random.default_rng(seed) if rng is None else rng
    fps = grid_rate(timestamps) if fps is None else float(fps)
    duration = n / fps
    arms = focus_arms(n, fps, p)
    desired = coarse_segments(n, fps, p)
    fine_stride = min(max(1, int(round(p.fine_every_sec * fps))), max(1, n // desired))
    half_sec = max(1.0 / fps, max(1e-6, duration / desired) / 2.0) if p.region_half_window_sec is None \
        else p.region_half_window_sec
    half = max(1, int(round(half_sec * fps)))

    coarse: list[int] = []  # stage 1: centre and random others, arm by arm
    per_arm: list[list[int]] = []
    for start, end in arms:
        centre = (start + end) // 2
        picks = [centre]
        others = [i for i in range(start, end + 1) if i != centre]
        if others:
            picks += rng.choice(others, size=min(p.extra_samples_per_region, len(others)), replace=False).tolist()
        per_arm.append(picks)
        coarse += picks
    scored = dict(zip(coarse, _scores(score, coarse)))
    samples = [[(i, scored[i]) for i in picks] for picks in per_arm]
    bound = bernstein_ucb([[s for _, s in arm] for arm in samples], p.min_variance_threshold)

    zoom_count = min(max(p.min_zoom_segments, int(math.ceil(len(arms) * p.zoom_ratio))), len(arms))
    zoom = [arms[i] for i in _ranked(bound)[:zoom_count]]  # stage 3, in the order of the bound
    fine = _fine_positions(zoom, n, fine_stride, half, set(coarse), p, rng)
    if fine:
        scored.update(zip(fine, _scores(score, fine)))  # fine scores reach only the top frames (see docstring)

    k_top = int(round(p.top_ratio * min(k, len(scored))))  # stage 4a
    order = sorted(scored.items(), key=lambda item: item[1], reverse=True)
    chosen = [i for i, _ in order[:k_top]]
    remaining = max(0, k - len(chosen))
    if remaining:
        gap_sec = adaptive_min_gap(duration, k, p)
        gap = int(round(gap_sec * fps)) if gap_sec > 0 else 0
        taken = set(chosen)
        new: list[int] = []
        ranked = _ranked(bound)
        for rank, need in enumerate(final_split(remaining, len(arms), p)):
            if need:
                start, end = arms[ranked[rank]]
                drawn = _draw_in_arm(start, end, need, samples[ranked[rank]], taken, gap, p, rng)
                new += drawn
                taken.update(drawn)
        chosen += new
    if trace is not None:
        trace.update(arms=arms, bound=bound, coarse=coarse, fine=fine, scored=len(scored), fps=fps)
    return np.asarray(sorted(dict.fromkeys(chosen))[:k], dtype=np.int64)


def sample_key(sample_id: str) -> int:
    """A stable 63-bit number of a sample id: the per-question part of the RNG seed."""
    return int.from_bytes(hashlib.sha256(str(sample_id).encode("utf-8")).digest()[:8], "big") >> 1


# option: (whole number?, lowest, highest); a lowest of 0.0 for a float means "> 0" (a divisor)
_RANGES = {"coarse_every_sec": (False, 0.0, None), "fine_every_sec": (False, 0.0, None), "zoom_ratio": (False, 0, 1),
           "final_min_arms": (True, 1, None), "final_max_arms": (True, 1, None), "min_coarse_segments": (True, 1, None),
           "min_zoom_segments": (True, 0, None), "extra_samples_per_region": (True, 0, None),
           "min_variance_threshold": (False, 0, None), "fine_uniform_ratio": (False, 0, 1), "top_ratio": (False, 0, 1),
           "temperature": (False, 0.0, None), "region_half_window_sec": (False, 0, None),
           "min_gap_sec": (False, 0, None), "gap_ratio_of_avg": (False, 0, None),
           "disable_gap_below_sec": (False, 0, None)}


def _check(name: str, value, whole: bool, low, high) -> None:
    """A HarnessError naming the option unless `value` is a (whole) number in range; region_half_window_sec may be
    None."""
    if name == "region_half_window_sec" and value is None:
        return
    strict = isinstance(low, float) and low == 0.0
    ok = isinstance(value, Integral if whole else Real) and not isinstance(value, bool) and math.isfinite(value) \
        and (value > low if strict else value >= low) and (high is None or value <= high)
    if not ok:
        what = "a whole number" if whole else "a number"
        where = f"> {low:g}" if strict else f">= {low:g}" + (f" and <= {high:g}" if high is not None else "")
        raise HarnessError(f"option {name}={value!r} of 'focus' must be {what} {where}")


_HELP = {
    "encoder": "scorer of the frames FOCUS asks for: BLIP image-text matching (published: LAVIS BLIP ITM large = "
               "Salesforce/blip-itm-large-coco) or a CLIP-type model (cosine); mini-clip offline",
    "query": "text the frames are scored against (official FOCUS: the question only)",
    "seed": "seed of the random draws, with each question's id (numpy default_rng([seed, id hash])); official 42",
    "coarse_every_sec": "seconds per arm (clip) of the coarse stage; at least min_coarse_segments arms",
    "fine_every_sec": "seconds between frames scored in the fine stage",
    "zoom_ratio": "fraction of arms zoomed into (fine stage) and, clamped to final_min_arms..final_max_arms, that "
                  "get the frames after the top ones",
    "final_min_arms": "fewest arms the frames after the top ones are split over",
    "final_max_arms": "most arms the frames after the top ones are split over",
    "min_coarse_segments": "fewest arms",
    "min_zoom_segments": "fewest arms zoomed into in the fine stage",
    "extra_samples_per_region": "random frames scored per arm in the coarse stage, besides its centre",
    "min_variance_threshold": "floor of an arm's variance in the Bernstein bound",
    "fine_uniform_ratio": "fraction of an arm's fine-stage frames evenly spaced (the rest random)",
    "interpolation": "within-arm score of unscored frames from the coarse samples: nearest (published), linear "
                     "(on samples sorted by time), uniform (no scores: random frames); rbf is refused (needs scipy)",
    "top_ratio": "fraction of min(K, frames scored) taken as the best-scored frames",
    "temperature": "softmax temperature of the within-arm draw over min-max normalised scores",
    "region_half_window_sec": "half width (s) of the fine-stage window around an arm's centre; unset: half an arm",
    "min_gap_sec": "cap (s) of the adaptive minimum gap between chosen frames",
    "gap_ratio_of_avg": "adaptive minimum gap as a fraction of the average spacing duration / K",
    "disable_gap_below_sec": "no minimum gap when the average spacing duration / K is at most this (s)",
}


@SAMPLERS.register("focus", description="FOCUS: bandit over clips (Bernstein UCB), scoring only the frames it asks "
                                        "for (lazy BLIP/CLIP scores)",
                   help=_HELP, choices={"interpolation": INTERPOLATIONS, "query": QUERIES})
class Focus(Sampler):
    name = "focus"
    needs = ("lazy_scores", "timestamps", "rng_key")
    per_sample = ("lazy_scores", "rng_key")

    def __init__(self, encoder: str = DEFAULT_ENCODER, query: str = "question", seed: int = 42,
                 coarse_every_sec: float = 16.0, fine_every_sec: float = 1.0, zoom_ratio: float = 0.25,
                 final_min_arms: int = 4, final_max_arms: int = 32, min_coarse_segments: int = 8,
                 min_zoom_segments: int = 4, extra_samples_per_region: int = 2,
                 min_variance_threshold: float = 1e-6, fine_uniform_ratio: float = 0.5,
                 interpolation: str = "nearest", top_ratio: float = 0.2, temperature: float = 0.06,
                 region_half_window_sec: float | None = None, min_gap_sec: float = 1.0,
                 gap_ratio_of_avg: float = 0.25, disable_gap_below_sec: float = 0.2):
        if interpolation == "rbf":
            raise HarnessError("option interpolation=rbf of 'focus' needs scipy (the official Rbf), which this "
                               "environment does not have; use nearest (published) or linear")
        for option, value, known in (("interpolation", interpolation, INTERPOLATIONS), ("query", query, QUERIES)):
            if value not in known:
                raise HarnessError(f"option {option}={value!r} of 'focus' must be one of {', '.join(known)}")
        given = dict(locals())
        params = {name: given[name] for name in FocusParams.__dataclass_fields__}
        for name, (whole, low, high) in _RANGES.items():
            _check(name, params[name], whole, low, high)
        _check("seed", seed, True, 0, None)
        self.params = FocusParams(**params)
        self.encoder, self.query, self.seed = str(encoder), query, int(seed)

    def config(self) -> dict:
        return {**asdict(self.params), "encoder": self.encoder, "query": self.query, "seed": self.seed,
                "rng": "numpy default_rng([seed, sha256(sample id)[:8] >> 1])", "version": 1}

    def sample_inputs(self, sample) -> dict:
        return {"rng_key": sample_key(sample.id)}

    def positions(self, n: int, k: int, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        rng = np.random.default_rng([self.seed, int(inputs["rng_key"])])
        return focus_select(n, k, inputs["timestamps"], inputs["lazy_scores"], rng=rng, params=self.params)
