"""Generating needle specs: everything is a pure function of (split, seed, video index).

`make_specs` draws each video's duration, event times, scenes (drifting textures with desaturated distractors) and
needle objects, with layouts and questions planned by `questions.Balancer`; `make_samples` turns a spec into the
harness's `Sample`s. Splits ``train`` and ``test`` draw from disjoint random streams.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from harness.errors import HarnessError
from harness.records import Sample
from tasks.needle.questions import Balancer, letter_schedule, make_question
from tasks.needle.spec import (COLOURS, DISTRACTOR_PX, EDGE, EVENT_GAP, EVENT_SECONDS, FPS, MAX_DISTRACTOR_SATURATION,
                               NEEDLE_PX, QUESTION_TYPES, SCENE_SECONDS, SHAPES, SIZE, SPLITS, Distractor, Event,
                               Scene, VideoSpec)


def _video_seed(split: str, seed: int, index: int) -> int:
    if split not in SPLITS:
        raise HarnessError(f"unknown needle split {split!r} (splits: {', '.join(SPLITS)})")
    return int(np.random.SeedSequence([int(seed), SPLITS[split], int(index)]).generate_state(1, np.uint64)[0] >> 1)


def _q(x: float) -> float:
    """Round to the frame grid."""
    return round(x * FPS) / FPS


def _desaturated_rgb(rng) -> tuple[int, int, int]:
    value = rng.uniform(0.3, 0.95) * 255
    sat = rng.uniform(0.0, MAX_DISTRACTOR_SATURATION) * (rng.random() < 0.6)
    hue_rgb = np.array(COLOURS[list(COLOURS)[int(rng.integers(len(COLOURS)))]], np.float32) / 255
    # a faint version of a needle hue: mix white-ish grey with the hue, scaled to `value`
    span = hue_rgb.max() - hue_rgb.min()
    mix = (hue_rgb - hue_rgb.min()) / max(span, 1e-6)  # 0..1 per channel
    rgb = value * (1 - sat * (1 - mix))
    return tuple(int(round(c)) for c in rgb)


def _make_scenes(rng, duration: float) -> tuple[Scene, ...]:
    scenes, start = [], 0.0
    while start < duration:
        end = min(duration, start + _q(rng.uniform(*SCENE_SECONDS)))
        if duration - end < SCENE_SECONDS[0] / 2:  # no sliver of a scene at the end
            end = duration
        level = rng.uniform(80, 170)
        spread = rng.uniform(0.0, 0.12)  # tint: gains in [1 - spread/2, 1 + spread/2], saturation < ~0.12
        tint = tuple(float(g) for g in 1 + spread * (rng.random(3) - 0.5))
        waves = []
        for _ in range(int(rng.integers(2, 4))):
            k = rng.uniform(0.02, 0.15)
            theta = rng.uniform(0, 2 * np.pi)
            waves.append((float(rng.uniform(5, 15)), float(k * np.cos(theta)), float(k * np.sin(theta)),
                          float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(-0.15, 0.15))))
        distractors = []
        for _ in range(int(rng.integers(1, 4))):
            size = int(rng.integers(DISTRACTOR_PX[0], DISTRACTOR_PX[1] + 1))
            half = size / 2 + 2
            ax, ay = rng.uniform(5, SIZE / 2 - half, 2)
            cx = rng.uniform(half + ax, SIZE - half - ax)
            cy = rng.uniform(half + ay, SIZE - half - ay)
            distractors.append(Distractor(
                shape=SHAPES[int(rng.integers(len(SHAPES)))], rgb=_desaturated_rgb(rng), size=size,
                cx=float(cx), cy=float(cy), ax=float(ax), ay=float(ay),
                wx=float(2 * np.pi / rng.uniform(8, 40)), wy=float(2 * np.pi / rng.uniform(8, 40)),
                px=float(rng.uniform(0, 2 * np.pi)), py=float(rng.uniform(0, 2 * np.pi))))
        scenes.append(Scene(float(start), float(end), float(level), tint, tuple(waves), tuple(distractors)))
        start = end
    return tuple(scenes)


def _event_times(rng, n: int, duration: float) -> list[tuple[float, float]] | None:
    """n non-overlapping [start, end) intervals on the frame grid, 2-6 s long, >= EVENT_GAP apart, clear of the
    edges; None when they cannot fit."""
    lengths = [_q(rng.uniform(*EVENT_SECONDS)) for _ in range(n)]
    slack = duration - 2 * EDGE - EVENT_GAP * (n - 1) - sum(lengths)
    if slack < 0:
        lengths = [EVENT_SECONDS[0]] * n
        slack = duration - 2 * EDGE - EVENT_GAP * (n - 1) - sum(lengths)
        if slack < 0:
            return None
    cuts = np.floor(np.sort(rng.uniform(0, slack, n)) * FPS) / FPS  # free time before each event, cumulative
    out, used = [], 0.0
    for i, (length, cut) in enumerate(zip(lengths, cuts)):
        start = _q(EDGE + float(cut) + used + EVENT_GAP * i)
        out.append((start, start + length))
        used += length
    return out


def make_specs(split: str, n_videos: int, seed: int = 0, *, questions_per_video: int = 4,
               min_duration: float = 120.0, max_duration: float = 600.0) -> list[VideoSpec]:
    """The first `n_videos` video specs of a split (a prefix of any longer list with the same arguments)."""
    if split not in SPLITS:
        raise HarnessError(f"unknown needle split {split!r} (splits: {', '.join(SPLITS)})")
    if not 1 <= questions_per_video <= 12:
        raise HarnessError(f"questions_per_video must be 1..12, got {questions_per_video}")
    if not 2 * EDGE + EVENT_SECONDS[0] <= min_duration <= max_duration:
        raise HarnessError(f"needle durations must satisfy {2 * EDGE + EVENT_SECONDS[0]:g} <= min_duration <= "
                           f"max_duration, got {min_duration:g}, {max_duration:g}")
    balancer, specs = Balancer(questions_per_video), []
    letters = {t: letter_schedule(split, seed, t) for t in QUESTION_TYPES}
    for first in range(0, int(n_videos), Balancer.BLOCK):
        # a whole block is planned even where n_videos cuts it, so fewer videos are a prefix of more
        block = []
        for v in range(first, first + Balancer.BLOCK):
            vseed = _video_seed(split, seed, v)
            rng = np.random.default_rng(vseed)
            duration = float(round(rng.uniform(min_duration, max_duration)))
            times = {n: _event_times(rng, n, duration) for n in (1, 2, 3)}
            block.append((v, vseed, rng, duration, times))
        plans = balancer.plan_block(np.random.default_rng([int(seed), SPLITS[split], 11, first]),
                                    [{n for n, t in b[4].items() if t is not None} for b in block])
        for (v, vseed, rng, duration, times), (layout, kinds) in zip(block, plans):
            if v < n_videos:
                specs.append(_make_spec(split, v, vseed, rng, duration, times, layout, kinds, letters))
    return specs


def _make_spec(split, v, vseed, rng, duration, times, layout, kinds, letters) -> VideoSpec:
    n_obj = len(set(layout))
    shapes = [SHAPES[i] for i in rng.choice(len(SHAPES), n_obj, replace=False)]
    colours = [list(COLOURS)[i] for i in rng.choice(len(COLOURS), n_obj, replace=False)]
    objects = list(zip(shapes, colours))
    events = []
    for label, (start, end) in zip(layout, times[len(layout)]):
        size = int(rng.integers(NEEDLE_PX[0], NEEDLE_PX[1] + 1))
        length = end - start
        vx, vy = rng.uniform(-3, 3, 2)
        lo, hi = size / 2 + 2, SIZE - size / 2 - 2
        # start so that the whole path stays inside the frame
        x = rng.uniform(max(lo, lo - vx * length), min(hi, hi - vx * length))
        y = rng.uniform(max(lo, lo - vy * length), min(hi, hi - vy * length))
        events.append(Event(shapes[label], colours[label], float(start), float(end), float(x), float(y),
                            float(vx), float(vy), size))
    questions = tuple(make_question(k, objects, events, next(letters[k[0]]), rng)
                      for k in [kinds[i] for i in rng.permutation(len(kinds))])
    scenes = _make_scenes(rng, duration)
    return VideoSpec(f"needle-{split}-v{v:03d}", split, v, vseed, duration, tuple(events), scenes, questions)


def make_samples(spec: VideoSpec, root: str | os.PathLike | None = None) -> list[Sample]:
    """The spec's questions as Samples; `video` is root/<video_id>.mp4 (absolute) or just the file name."""
    video = str(Path(root).resolve() / f"{spec.video_id}.mp4") if root is not None else f"{spec.video_id}.mp4"
    meta = {"video_id": spec.video_id, "events": [e.brief() for e in spec.events], "seed": spec.seed}
    return [Sample(id=f"{spec.video_id}-q{k}", video=video, question=q.text, options=q.options, answer=q.answer,
                   duration=spec.duration, categories={"question_type": q.type}, metadata=meta,
                   evidence=q.evidence)
            for k, q in enumerate(spec.questions)]