"""What a needle video is: the vocabulary (SHAPES, COLOURS), sizes and timing rules, and the frozen records of a
video's spec (`VideoSpec`: its `Scene`s with their `Distractor`s, needle `Event`s and `Question`s).

A spec is plain data, JSON round-trippable (`VideoSpec.to_json` / `from_json`), so a manifest or a child process
can carry it; `generate.make_specs` builds them, `render` draws them.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

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
