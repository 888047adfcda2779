"""The needle world the mini Qwen2.5-VL learns from: which frames a question is shown, and the questions.

Selections (`selection_times`) pick K of a video's 1 fps grid times the way a sampler might: `oracle_times` (one
frame inside every evidence event, fillers outside it), `crowded_times` (runs of evidence frames, other needles
beside them, as a similarity ranking picks) or `no_evidence_times`. Frames are rendered with the needle renderer and
sent through a real H.264 round trip (the written videos' codec settings), so the model sees what a decoder
returns; each video's frames are rendered once (`Pool`) and selections drawn from them. Questions are drawn afresh
for every training example (`fresh_question`), and `describe_example` asks for the objects shown instead.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.records import Sample
from harness.video.grid import make_grid
from harness.miniworld.codec import h264_round_trip
from tasks.needle import NeedleTask, layout_questions, make_question, make_samples, make_specs, render_frame

K = 8  # frames per training question
CRF, GOP = 20, 16  # the needle writer's H.264 settings, for the training round trip
DESCRIBE = "List the coloured objects that appear in the video, in order."  # the auxiliary training prompt
SELECTIONS = ("oracle", "crowded", "none")


# ---------------------------------------------------------------------------------------------------- selections

def inside(times: np.ndarray, intervals) -> np.ndarray:
    """Which of `times` fall in any [start, end) interval."""
    times = np.asarray(times, np.float64)
    hit = np.zeros(times.shape, bool)
    for a, b in intervals:
        hit |= (times >= a) & (times < b)
    return hit


def oracle_times(evidence, candidates: np.ndarray, k: int, rng, spread: str = "random") -> np.ndarray:
    """k candidate times showing every evidence interval once (a random frame inside each) and otherwise no
    evidence: fillers drawn at random, or evenly spaced (`spread="even"`), from the frames outside the evidence."""
    candidates = np.asarray(candidates, np.float64)
    picks = [rng.choice(candidates[inside(candidates, [iv])]) for iv in evidence]
    outside = candidates[~inside(candidates, evidence)]
    n = k - len(picks)
    if spread == "even":
        fill = outside[np.linspace(0, len(outside) - 1, n + 2)[1:-1].round().astype(int)]  # spaced, ends excluded
    else:
        fill = rng.choice(outside, n, replace=False)
    return np.sort(np.concatenate([picks, fill]))


def crowded_times(evidence, events, candidates: np.ndarray, k: int, rng) -> np.ndarray:
    """k candidate times as a similarity ranking picks them: every evidence interval shown by one to four of its
    frames (k permitting), the rest drawn half from other needle events (objects the question is not about, later
    appearances) and half from frames without a needle. The oracle alone never shows the model a run of frames of
    one event or another object beside the evidence, and a model trained only on it miscounts both."""
    candidates = np.asarray(candidates, np.float64)
    runs = [rng.permutation(candidates[inside(candidates, [iv])]) for iv in evidence]
    picks = [r[0] for r in runs]
    extra = np.concatenate([r[1:rng.integers(1, min(4, len(r)) + 1)] for r in runs] + [np.zeros(0)])
    picks += list(rng.permutation(extra)[:max(0, k - len(picks))])
    others = candidates[inside(candidates, events) & ~inside(candidates, evidence)]
    plain = candidates[~inside(candidates, events)]
    n_other = min(len(others), rng.binomial(k - len(picks), 0.5))
    fill = [*rng.choice(others, n_other, replace=False), *rng.choice(plain, k - len(picks) - n_other, replace=False)]
    return np.sort(np.asarray(picks + fill, np.float64))


def no_evidence_times(evidence, candidates: np.ndarray, k: int, rng) -> np.ndarray:
    """k random candidate times, none inside an evidence interval."""
    candidates = np.asarray(candidates, np.float64)
    return np.sort(rng.choice(candidates[~inside(candidates, evidence)], k, replace=False))


def event_intervals(spec) -> list[tuple[float, float]]:
    """[start, end) of every needle event of a VideoSpec."""
    return [(e.start, e.end) for e in spec.events]


def selection_times(kind: str, evidence, events, candidates, k: int, rng) -> np.ndarray:
    """The selections the model is trained and evaluated on: `oracle_times`, `crowded_times` or
    `no_evidence_times`; `events` are the [start, end) intervals of all the video's needle events."""
    if kind == "oracle":
        return oracle_times(evidence, candidates, k, rng)
    if kind == "crowded":
        return crowded_times(evidence, events, candidates, k, rng)
    if kind == "none":
        return no_evidence_times(evidence, candidates, k, rng)
    raise ValueError(f"selection kind {kind!r}: expected one of {', '.join(SELECTIONS)}")


def grid_times(spec) -> np.ndarray:
    """The harness's 1 fps candidate grid of a needle video, in seconds."""
    return np.asarray(make_grid(spec.n_frames, spec.fps, "1fps").timestamps)


# ---------------------------------------------------------------------------------------------------- frames

@dataclass
class Pool:
    """Some 1 fps grid frames of one training video, as a decoder would return them."""

    spec: object
    times: np.ndarray  # seconds, ascending
    frames: np.ndarray  # (n, H, W, 3) uint8

    def at(self, times) -> np.ndarray:
        return self.frames[np.searchsorted(self.times, times)]


def build_pool(spec, fillers: int, rng) -> Pool:
    """Every grid frame inside an event, the K uniform ones, and `fillers` random others, rendered and sent
    through H.264 in time order."""
    grid = grid_times(spec)
    keep = inside(grid, event_intervals(spec))
    keep[np.linspace(0, len(grid) - 1, K).astype(int)] = True
    keep[rng.choice(len(grid), min(fillers, len(grid)), replace=False)] = True
    times = grid[keep]
    return Pool(spec, times, h264_round_trip([render_frame(spec, t) for t in times], spec.fps, crf=CRF, gop=GOP))


def _pool_job(args):
    spec, fillers, seed, i = args
    return build_pool(spec, fillers, np.random.default_rng([seed, i]))


def build_pools(specs, fillers: int, seed: int = 0, workers: int = 1) -> list[Pool]:
    """`build_pool` for every spec (video i seeded by (seed, i)), in `workers` processes."""
    jobs = [(s, fillers, seed, i) for i, s in enumerate(specs)]
    if workers <= 1:
        return [_pool_job(j) for j in jobs]
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(workers) as procs:
        return procs.map(_pool_job, jobs, chunksize=4)


def pooled_questions(split: str, n_videos: int, seed: int = 0, fillers: int = 40):
    """(pool, sample, prompt) for every question of the first `n_videos` videos of a split (rendered frames)."""
    task = NeedleTask(split=split, videos=n_videos, seed=seed)
    specs = make_specs(split, n_videos, seed)
    pools = [build_pool(s, fillers, np.random.default_rng([seed, i])) for i, s in enumerate(specs)]
    return [(p, s, task.prompt(s)) for p, spec in zip(pools, specs) for s in make_samples(spec)]


# ---------------------------------------------------------------------------------------------------- questions

def fresh_question(spec, rng, types=("appearance", "order", "count")):
    """A new question about a train video: any kind its needle layout supports, fresh absent-object options and a
    random answer position. Drawn anew for every example, so the model cannot learn answers by heart (a few
    hundred fixed questions, each always answered by the same letter, are memorised long before frames are read).
    Returns (sample, prompt), or None when the layout supports none of `types`."""
    objects = list(dict.fromkeys(e.obj for e in spec.events))  # labelled by first appearance, as the generator does
    layout = tuple(objects.index(e.obj) for e in spec.events)
    kinds = [k for k in layout_questions(layout) if k[0] in types]
    if not kinds:
        return None
    q = make_question(kinds[rng.integers(len(kinds))], objects, list(spec.events), int(rng.integers(4)), rng)
    sample = Sample(id=f"{spec.video_id}-fresh", video="", question=q.text, options=q.options, answer=q.answer,
                    categories={"question_type": q.type}, evidence=q.evidence)
    return sample, NeedleTask(split="train", videos=1).prompt(sample)


def describe_example(pool: Pool, rng) -> tuple[np.ndarray, str]:
    """Times and answer of an auxiliary example: a random subset of the video's events shown once each, the other
    frames clear of every event, answered by naming what is shown in time order ("none" for nothing)."""
    events = [e for e in pool.spec.events if rng.random() < 0.7]
    picks = [rng.choice(pool.times[inside(pool.times, [(e.start, e.end)])]) for e in events]
    clear = pool.times[~inside(pool.times, event_intervals(pool.spec))]
    times = np.sort(np.concatenate([picks, rng.choice(clear, K - len(picks), replace=False)]))
    shown = [e.name for t in times for e in pool.spec.events if e.visible(t)]
    return times, ", ".join(shown) or "none"
