"""`needle`: synthetic needle-in-a-haystack multiple-choice QA over real H.264 videos.

Each video (2 to 10 minutes, 128x128 px, 4 fps) is a haystack of smooth, low-contrast, low-saturation textures that
drift slowly and change every 20-60 s (scene cuts), with grey or faintly tinted distractor shapes moving over them.
One to three needle events of 2-6 s each show a saturated target object: one of SHAPES in one of COLOURS, 24-36 px.
Events never overlap, are at least 20 s apart and avoid the first and last 5 s.

Question types (balanced over the split):
* ``appearance``: "What colour is the triangle that appears in the video?", "What shape is the red object that
  appears in the video?" or "Which of these objects appears in the video?" (about an object that is unique: the
  needle objects of one video all differ in shape and in colour);
* ``order``: "Which of these objects appears first in the video?" (two real needle objects and two absent ones);
* ``count``: "How many times does the red triangle appear in the video?" (options 1..4).

Everything is a pure function of (split, seed, video index): `make_specs` builds the `VideoSpec`s (scenes,
distractors, events and questions), `render_frame(spec, t)` draws any frame without decoding, `frame_objects(spec,
t)` lists the needle events visible at t, and `make_samples` turns a spec into `Sample`s. `NeedleTask` writes the
videos once (atomically, in parallel, skipping existing files) under ``data_home()/needle/`` and reuses them.
Splits ``train`` and ``test`` draw from disjoint random streams.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import HarnessError
from harness.fileio import atomic_write
from harness.paths import data_home
from harness.records import Sample
from harness.registry import TASKS
from harness.synth import write_video
from tasks.base import Task

VERSION = 1  # bump when the generator changes what a (split, seed, index) renders or asks
FPS = 4
SIZE = 128
SHAPES = ("circle", "square", "triangle", "star", "cross")
COLOURS = {  # name -> RGB; saturated (HSV saturation >= 0.8), hues far enough apart to survive 4:2:0 chroma
    "red": (225, 30, 30), "green": (30, 190, 45), "blue": (40, 70, 235),
    "yellow": (235, 215, 20), "purple": (150, 40, 220), "orange": (245, 130, 15),
}
QUESTION_TYPES = ("appearance", "order", "count")
SPLITS = {"train": 1, "test": 2}  # split -> stream key: the splits never share a random stream
LETTERS = "ABCD"

EVENT_SECONDS = (2.0, 6.0)
EVENT_GAP = 20.0  # seconds between the end of one event and the start of the next
EDGE = 5.0  # no event within this many seconds of either end
SCENE_SECONDS = (20.0, 60.0)
NEEDLE_PX = (24, 36)
DISTRACTOR_PX = (14, 36)
MAX_DISTRACTOR_SATURATION = 0.18  # by construction; everything that is not a needle stays below 0.25


# ---------------------------------------------------------------------------------------------------- records

@dataclass(frozen=True)
class Event:
    """One needle appearance: `shape` in `colour`, visible for start <= t < end (seconds, multiples of 1/FPS).

    The object's centre is at (x, y) at `start` and moves by (vx, vy) px/s; `size` is its side in pixels.
    """

    shape: str
    colour: str
    start: float
    end: float
    x: float = SIZE / 2
    y: float = SIZE / 2
    vx: float = 0.0
    vy: float = 0.0
    size: int = 30

    @property
    def obj(self) -> tuple[str, str]:
        return (self.shape, self.colour)

    @property
    def name(self) -> str:
        return f"the {self.colour} {self.shape}"

    def visible(self, t: float) -> bool:
        return self.start <= t < self.end

    def centre(self, t: float) -> tuple[float, float]:
        dt = t - self.start
        return self.x + self.vx * dt, self.y + self.vy * dt

    def box(self, t: float) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of the object's square in pixels at time t (the drawing covers it)."""
        cx, cy = self.centre(t)
        top, left = int(round(cy - self.size / 2)), int(round(cx - self.size / 2))
        return top, left, top + self.size, left + self.size

    def brief(self) -> dict:
        return {"shape": self.shape, "colour": self.colour, "start": self.start, "end": self.end}


@dataclass(frozen=True)
class Distractor:
    """A desaturated shape moving on a Lissajous path: centre (cx + ax sin(wx t + px), cy + ay sin(wy t + py))."""

    shape: str
    rgb: tuple[int, int, int]
    size: int
    cx: float
    cy: float
    ax: float
    ay: float
    wx: float
    wy: float
    px: float
    py: float

    def box(self, t: float) -> tuple[int, int]:
        x = self.cx + self.ax * math.sin(self.wx * t + self.px)
        y = self.cy + self.ay * math.sin(self.wy * t + self.py)
        return int(round(y - self.size / 2)), int(round(x - self.size / 2))


@dataclass(frozen=True)
class Scene:
    """A stretch [start, end) of one background texture: level + sum of drifting plane waves, times a faint tint."""

    start: float
    end: float
    level: float  # mean grey level
    tint: tuple[float, float, float]  # per-channel gain, close to 1
    waves: tuple[tuple[float, float, float, float, float], ...]  # (amplitude, kx, ky, phase, speed rad/s)
    distractors: tuple[Distractor, ...]


@dataclass(frozen=True)
class Question:
    type: str  # one of QUESTION_TYPES
    text: str
    options: tuple[str, ...]
    answer: int  # index into options
    evidence: tuple[tuple[float, float], ...]  # the intervals of the events the question needs


@dataclass(frozen=True)
class VideoSpec:
    video_id: str  # e.g. "needle-test-v012"
    split: str
    index: int
    seed: int  # the video's own seed (derived from split, task seed and index)
    duration: float  # seconds; the video has duration * FPS frames
    events: tuple[Event, ...]  # in time order
    scenes: tuple[Scene, ...]  # in time order, tiling [0, duration)
    questions: tuple[Question, ...]
    fps: int = FPS
    size: int = SIZE

    @property
    def n_frames(self) -> int:
        return int(round(self.duration * self.fps))

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "VideoSpec":
        """The inverse of `to_json` (e.g. for the specs in a manifest)."""
        def scene(x):
            return Scene(x["start"], x["end"], x["level"], tuple(x["tint"]), tuple(tuple(w) for w in x["waves"]),
                         tuple(Distractor(**{**y, "rgb": tuple(y["rgb"])}) for y in x["distractors"]))

        def question(x):
            return Question(x["type"], x["text"], tuple(x["options"]), x["answer"],
                            tuple(tuple(e) for e in x["evidence"]))

        return cls(**{**d, "events": tuple(Event(**e) for e in d["events"]),
                      "scenes": tuple(scene(x) for x in d["scenes"]),
                      "questions": tuple(question(x) for x in d["questions"])})


# ---------------------------------------------------------------------------------------------------- drawing

def _polygon_mask(points: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test of the grid (u, v) against the closed polygon `points` (k, 2)."""
    inside = np.zeros(u.shape, bool)
    for (x0, y0), (x1, y1) in zip(points, np.roll(points, -1, axis=0)):
        crosses = (y0 > v) != (y1 > v)
        with np.errstate(divide="ignore", invalid="ignore"):
            xint = x0 + (v - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (u < xint)
    return inside


@functools.lru_cache(maxsize=None)
def shape_mask(shape: str, size: int) -> np.ndarray:
    """A (size, size) bool mask of `shape` filling most of its square (read-only, cached)."""
    c = (np.arange(size) + 0.5) / size * 2 - 1  # pixel centres in [-1, 1]
    v, u = np.meshgrid(c, c, indexing="ij")  # v down, u right
    if shape == "circle":
        m = u ** 2 + v ** 2 <= 0.95 ** 2
    elif shape == "square":
        m = (np.abs(u) <= 0.8) & (np.abs(v) <= 0.8)
    elif shape == "triangle":
        m = _polygon_mask(np.array([(0.0, -0.92), (0.95, 0.85), (-0.95, 0.85)]), u, v)
    elif shape == "star":
        ang = -np.pi / 2 + np.arange(10) * np.pi / 5
        rad = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        m = _polygon_mask(np.stack([rad * np.cos(ang), rad * np.sin(ang) + 0.08], axis=1), u, v)
    elif shape == "cross":
        m = ((np.abs(u) <= 0.3) & (np.abs(v) <= 0.95)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 0.95))
    else:
        raise ValueError(f"unknown shape {shape!r}")
    m.setflags(write=False)
    return m


def _paste(img: np.ndarray, mask: np.ndarray, top: int, left: int, rgb) -> None:
    """Fill `mask` placed with its corner at (top, left) in `img`, clipped to the frame."""
    h, w = img.shape[:2]
    s0, s1 = mask.shape
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + s0, h), min(left + s1, w)
    if y0 >= y1 or x0 >= x1:
        return
    m = mask[y0 - top:y1 - top, x0 - left:x1 - left]
    img[y0:y1, x0:x1][m] = rgb


def _scene_at(spec: VideoSpec, t: float) -> Scene:
    for sc in spec.scenes:
        if t < sc.end:
            return sc
    return spec.scenes[-1]


@functools.lru_cache(maxsize=64)
def _wave_rows(waves: tuple, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The time-independent halves of a scene's waves: (size, 2w) row factors and (w, size) column phases."""
    p = np.arange(size, dtype=np.float64)
    ky = np.array([w[2] for w in waves])[None, :]
    kx = np.array([w[1] for w in waves])[:, None]
    rows = np.concatenate([np.cos(p[:, None] * ky), np.sin(p[:, None] * ky)], axis=1)
    return rows, kx * p[None, :]


def _background(scene: Scene, t: float, size: int) -> np.ndarray:
    """(size, size, 3) float32 texture: level + sum of amp sin(kx x + ky y + phase + speed t), times the tint."""
    rows, cols = _wave_rows(scene.waves, size)
    amp = np.array([w[0] for w in scene.waves])[:, None]
    shift = np.array([w[3] + w[4] * t for w in scene.waves])[:, None]
    a = cols + shift
    # sin(a + b) = cos b sin a + sin b cos a, tinted per channel: one small matrix product straight into HxWx3
    tint = np.asarray(scene.tint)
    cols3 = np.concatenate([amp * np.sin(a), amp * np.cos(a)], axis=0)[:, :, None] * tint  # (2w, size, 3)
    rgb = rows @ cols3.reshape(len(rows[0]), size * 3) + np.tile(scene.level * tint, size)
    return rgb.reshape(size, size, 3)


def frame_objects(spec: VideoSpec, t: float) -> list[Event]:
    """The needle events visible at time t (seconds)."""
    return [e for e in spec.events if e.visible(t)]


def render_frame(spec: VideoSpec, t: float) -> np.ndarray:
    """The frame at time t (seconds) as (size, size, 3) uint8 RGB; frame i of the video is t = i / fps."""
    scene = _scene_at(spec, t)
    img = np.clip(_background(scene, t, spec.size), 0, 255).astype(np.uint8)
    for d in scene.distractors:
        top, left = d.box(t)
        _paste(img, shape_mask(d.shape, d.size), top, left, d.rgb)
    for e in frame_objects(spec, t):
        top, left, _, _ = e.box(t)
        _paste(img, shape_mask(e.shape, e.size), top, left, COLOURS[e.colour])
    return img


def iter_frames(spec: VideoSpec):
    for i in range(spec.n_frames):
        yield render_frame(spec, i / spec.fps)


def saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation (max - min) / max of uint8 RGB pixels, 0 for black."""
    x = np.asarray(rgb, np.float32)
    hi, lo = x.max(axis=-1), x.min(axis=-1)
    return np.where(hi > 0, (hi - lo) / np.maximum(hi, 1), 0.0)


# ---------------------------------------------------------------------------------------------------- generation

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


# layouts: the needle objects of a video's events in time order, labelled by first appearance
LAYOUTS = ((0,), (0, 0), (0, 1), (0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1), (0, 1, 2))


def _layout_questions(layout: tuple[int, ...]) -> list[tuple]:
    """The distinct question kinds a layout supports: (type, ...) tuples naming objects by label."""
    objs = sorted(set(layout))
    qs = []
    for o in objs:
        qs += [("appearance", "colour", o), ("appearance", "shape", o), ("appearance", "which", o)]
    qs += [("order", a, b) for a, b in itertools.combinations(objs, 2)]
    qs += [("count", o) for o in objs]
    return qs


@functools.lru_cache(maxsize=None)
def _candidates(n_questions: int):
    """Every (layout, question set) a video can have, with what it adds to the balance tallies: question types
    (3), count answers 1..3 (3), appearance phrasings (3) and events per video (3); plus how many questions repeat
    a type already in the same video."""
    rows, deltas, repeats = [], [], []
    for layout in LAYOUTS:
        for sub in itertools.combinations(_layout_questions(layout), n_questions):
            d = np.zeros(12)
            for q in sub:
                d[QUESTION_TYPES.index(q[0])] += 1
                if q[0] == "count":
                    d[3 + layout.count(q[1]) - 1] += 1
                if q[0] == "appearance":
                    d[6 + ("colour", "shape", "which").index(q[1])] += 1
            d[9 + len(layout) - 1] += 1
            rows.append((layout, sub))
            deltas.append(d)
            repeats.append(n_questions - np.count_nonzero(d[:3]))
    if not rows:
        raise HarnessError(f"questions_per_video={n_questions} is more than a needle video can ask")
    return rows, np.array(deltas), np.array(repeats, np.float64)


class _Balancer:
    """Plans the layouts and question sets of blocks of BLOCK videos at a time so that, over the split, question
    types stay balanced (first), then count answers and events per video, then appearance phrasings.

    Exact balance of everything is impossible with at most three events (a count of 3 needs a video whose only
    object is the counted one, which leaves only appearance questions to ask), so the plan trades by weight; for 4
    questions a video it settles on equal question types and count answers 1/2/3 at about 2:1:1.
    """

    BLOCK = 3  # videos planned together: BLOCK * questions_per_video is a multiple of the three question types
    # (tally columns, weight, target shares): question types, count answers 1/2/3, events per video 1/2/3
    # question types come first: only the block plans that keep them closest to equal are considered
    TYPES = ((slice(0, 3), 1.0, (1 / 3, 1 / 3, 1 / 3)),)
    PRIMARY = ((slice(3, 6), 1.0, (0.5, 0.27, 0.23)), (slice(9, 12), 0.3, (0.03, 0.12, 0.85)))
    SECONDARY = ((slice(6, 9), 1.0, (1 / 3, 1 / 3, 1 / 3)),)  # appearance phrasings
    REPEAT = 0.2  # per question that repeats a type within its video

    def __init__(self, n_questions: int):
        self.rows, deltas, self.repeats = _candidates(n_questions)
        self.deltas = deltas
        key = np.concatenate([deltas[:, :6], deltas[:, 9:]], axis=1)
        self.keys, self.key_of_row = np.unique(key, axis=0, return_inverse=True)
        self.key_of_row = self.key_of_row.reshape(-1)
        self.key_delta = np.zeros((len(self.keys), 12))
        self.key_delta[:, :6], self.key_delta[:, 9:] = self.keys[:, :6], self.keys[:, 6:]
        self.key_events = self.keys[:, 6:].argmax(axis=1) + 1
        self.key_repeats = n_questions - np.count_nonzero(self.keys[:, :3], axis=1)
        self.tally = np.zeros(12)

    @staticmethod
    def _spread(x: np.ndarray, groups) -> np.ndarray:
        cost = np.zeros(x.shape[:-1])
        for sl, w, share in groups:
            g = x[..., sl]
            cost = cost + w * ((g - g.sum(axis=-1, keepdims=True) * np.asarray(share)) ** 2).sum(axis=-1)
        return cost

    def plan_block(self, rng, feasible: list[set[int]]) -> list[tuple[tuple[int, ...], tuple[tuple, ...]]]:
        """One (layout, question kinds) per video; feasible[j] = the event counts that fit video j."""
        options = [np.nonzero(np.isin(self.key_events, list(f)))[0] for f in feasible]
        if any(len(o) == 0 for o in options):
            raise HarnessError("no needle layout fits a video this short")
        n = len(options)

        def along(j, x):  # x (len(options[j]), ...) broadcast along axis j of the block's grid of choices
            return x.reshape((1,) * j + (len(x),) + (1,) * (n - 1 - j) + x.shape[1:])

        deltas = [along(j, self.key_delta[o]) for j, o in enumerate(options)]
        prefixes, running = [], self.tally
        for d in deltas:
            running = running + d
            prefixes.append(running)
        total = prefixes.pop()
        type_cost = self._spread(total, self.TYPES)
        cost = (self._spread(total, self.PRIMARY)
                + self.REPEAT * sum(along(j, self.key_repeats[o]) for j, o in enumerate(options))
                + 0.01 * rng.random(type_cost.shape))
        cost[type_cost > type_cost.min() + 1e-6] = np.inf
        # a split cut inside a block keeps its types as even as it can: prefer blocks whose prefixes are even too
        for p in prefixes:
            cost = cost + 0.5 * self._spread(p, self.TYPES)
        choice = np.unravel_index(int(np.argmin(cost)), cost.shape)
        plan = []
        for j, i in enumerate(choice):
            rows = np.nonzero(self.key_of_row == options[j][i])[0]
            new = self.tally + self.deltas[rows]
            c = self._spread(new, self.SECONDARY) + self.REPEAT * self.repeats[rows]
            r = int(rows[np.argmin(c + 0.01 * rng.random(len(rows)))])
            self.tally = self.tally + self.deltas[r]
            plan.append(self.rows[r])
        return plan


def _letter_schedule(split: str, seed: int, qtype: str):
    """Answer positions of one question type: consecutive blocks of four use each letter once, in seeded order."""
    block = 0
    while True:
        rng = np.random.default_rng([int(seed), SPLITS[split], 7, QUESTION_TYPES.index(qtype), block])
        yield from (int(p) for p in rng.permutation(len(LETTERS)))
        block += 1


def _place(correct: str, others: list[str], pos: int) -> tuple[tuple[str, ...], int]:
    opts = list(others)
    opts.insert(pos, correct)
    return tuple(opts), pos


def _make_question(kind: tuple, objects: list[tuple[str, str]], events: list[Event], pos: int, rng) -> Question:
    present = set(objects)
    by_obj = {o: [e for e in events if e.obj == o] for o in objects}

    def name(o):
        return f"the {o[1]} {o[0]}"

    def absent(k):
        pool = [(s, c) for s in SHAPES for c in COLOURS if (s, c) not in present]
        return [pool[i] for i in rng.choice(len(pool), k, replace=False)]

    qtype = kind[0]
    if qtype == "appearance":
        o = objects[kind[2]]
        ev = tuple((e.start, e.end) for e in by_obj[o])
        if kind[1] == "colour":
            others = [c for c in COLOURS if c != o[1]]
            opts, ans = _place(o[1], [others[i] for i in rng.choice(len(others), 3, replace=False)], pos)
            return Question(qtype, f"What colour is the {o[0]} that appears in the video?", opts, ans, ev)
        if kind[1] == "shape":
            others = [s for s in SHAPES if s != o[0]]
            opts, ans = _place(o[0], [others[i] for i in rng.choice(len(others), 3, replace=False)], pos)
            return Question(qtype, f"What shape is the {o[1]} object that appears in the video?", opts, ans, ev)
        opts, ans = _place(name(o), [name(a) for a in absent(3)], pos)
        return Question(qtype, "Which of these objects appears in the video?", opts, ans, ev)
    if qtype == "order":
        a, b = objects[kind[1]], objects[kind[2]]
        first_a, first_b = by_obj[a][0], by_obj[b][0]
        first, second = (a, b) if first_a.start < first_b.start else (b, a)
        others = [name(second)] + [name(x) for x in absent(2)]
        others = [others[i] for i in rng.permutation(3)]
        opts, ans = _place(name(first), others, pos)
        ev = tuple(sorted([(first_a.start, first_a.end), (first_b.start, first_b.end)]))
        return Question(qtype, "Which of these objects appears first in the video?", opts, ans, ev)
    if qtype == "count":
        o = objects[kind[1]]
        n = len(by_obj[o])
        others = [str(k) for k in range(1, 5) if k != n]  # ascending; the correct count goes to `pos`
        opts, ans = _place(str(n), others, pos)
        ev = tuple((e.start, e.end) for e in by_obj[o])
        return Question(qtype, f"How many times does the {o[1]} {o[0]} appear in the video?", opts, ans, ev)
    raise ValueError(f"unknown question kind {kind}")


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
    balancer, specs = _Balancer(questions_per_video), []
    letters = {t: _letter_schedule(split, seed, t) for t in QUESTION_TYPES}
    for first in range(0, int(n_videos), _Balancer.BLOCK):
        # a whole block is planned even where n_videos cuts it, so fewer videos are a prefix of more
        block = []
        for v in range(first, first + _Balancer.BLOCK):
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
    questions = tuple(_make_question(k, objects, events, next(letters[k[0]]), rng)
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


def write_spec_video(spec: VideoSpec, path: str | os.PathLike, crf: int = 20, gop: int = 16) -> str:
    """Render and encode one video (atomic: the file appears only when complete). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, iter_frames(spec), spec.fps, crf=crf, gop=gop)
    return str(path)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def write_videos(specs: list[VideoSpec], root: str | os.PathLike, workers: int | None = None) -> int:
    """Write the videos of `specs` missing under `root` (as <video_id>.mp4); returns how many were written.

    With several workers (default: one per CPU) the videos are split among child Python processes started with
    `subprocess` (never by re-running the caller's main module, so any script may call this). Every file appears
    atomically, so concurrent callers at worst write the same video twice.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    missing = [s for s in specs if not (root / f"{s.video_id}.mp4").exists()]
    workers = max(1, min(len(missing), workers or _cpus()))
    if workers <= 1:
        for s in missing:
            write_spec_video(s, root / f"{s.video_id}.mp4")
        return len(missing)
    import subprocess
    import sys
    import tempfile

    # longest first, each to the least loaded worker
    chunks, load = [[] for _ in range(workers)], [0.0] * workers
    for s in sorted(missing, key=lambda s: -s.duration):
        k = int(np.argmin(load))
        chunks[k].append(s)
        load[k] += s.duration
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1])]
                                        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    with tempfile.TemporaryDirectory(prefix=".needle-", dir=root) as tmp:
        procs = []
        for k, chunk in enumerate(chunks):
            job = Path(tmp) / f"job{k}.json"
            job.write_text(json.dumps({"root": str(root), "specs": [s.to_json() for s in chunk]}))
            procs.append(subprocess.Popen(
                [sys.executable, "-c", "from tasks.needle import _write_job; _write_job()", str(job)],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        errors = []
        for p in procs:
            _, err = p.communicate()
            if p.returncode:
                errors.append(err.decode(errors="replace").strip().splitlines()[-1:] or [f"exit {p.returncode}"])
    if errors:
        raise HarnessError(f"writing needle videos under {root} failed: {errors[0][0]}")
    return len(missing)


def _write_job() -> None:
    """Child process of `write_videos`: write the specs of the job file given as argv[1]."""
    import sys

    job = json.loads(Path(sys.argv[1]).read_text())
    for d in job["specs"]:
        spec = VideoSpec.from_json(d)
        path = Path(job["root"]) / f"{spec.video_id}.mp4"
        if not path.exists():
            write_spec_video(spec, path)


@TASKS.register(
    "needle", description="synthetic needle-in-a-haystack QA: appearance/order/count of brief coloured objects "
                          "in 2-10 min generated videos",
    help={"split": "train or test (disjoint random streams)", "videos": "number of videos",
          "questions_per_video": "questions per video (1..12)", "seed": "generator seed",
          "root": "directory for the generated videos (default: the harness data home)",
          "min_duration": "shortest video in seconds", "max_duration": "longest video in seconds"},
    choices={"split": tuple(SPLITS)})
class NeedleTask(Task):
    name = "needle"
    category_keys = ("question_type",)
    stratify_key = "question_type"

    def __init__(self, split: str = "test", videos: int = 50, questions_per_video: int = 4, seed: int = 0,
                 root: str | None = None, min_duration: float = 120.0, max_duration: float = 600.0):
        if split not in SPLITS:
            raise HarnessError(f"unknown needle split {split!r} (splits: {', '.join(SPLITS)})")
        self.split, self.n_videos, self.qpv, self.seed = split, int(videos), int(questions_per_video), int(seed)
        self.min_duration, self.max_duration = float(min_duration), float(max_duration)
        self.root = Path(root) if root else data_home() / "needle" / (
            f"{split}-seed{self.seed}-q{self.qpv}-d{self.min_duration:g}-{self.max_duration:g}-v{VERSION}")

    def config(self) -> dict:
        return {"split": self.split, "videos": self.n_videos, "questions_per_video": self.qpv, "seed": self.seed,
                "min_duration": self.min_duration, "max_duration": self.max_duration, "root": str(self.root),
                "version": VERSION}

    def specs(self) -> list[VideoSpec]:
        return make_specs(self.split, self.n_videos, self.seed, questions_per_video=self.qpv,
                          min_duration=self.min_duration, max_duration=self.max_duration)

    def samples(self) -> list[Sample]:
        specs = self.specs()
        self.root.mkdir(parents=True, exist_ok=True)
        manifest = self.root / f"manifest-n{self.n_videos}.json"
        if not manifest.exists():
            atomic_write(manifest, json.dumps({"version": VERSION, "config": self.config(),
                                               "specs": [s.to_json() for s in specs]}, indent=1))
        write_videos(specs, self.root)
        return [s for spec in specs for s in make_samples(spec, self.root)]
