"""The records that flow between stages. Small, frozen, JSON-friendly.

Every stage takes and returns these; nothing passes dicts of unknown shape between stages.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np


def _freeze_ints(values) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


def _freeze_floats(values) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


@dataclass(frozen=True)
class Sample:
    """One multiple-choice question about one video."""

    id: str
    video: str  # path of the video file (resolved by the task)
    question: str
    options: tuple[str, ...]  # option texts without their letters
    answer: int | None  # index into `options`; None where the benchmark hides the ground truth
    duration: float | None = None  # seconds, as the annotation states it
    categories: Mapping[str, str] = field(default_factory=dict)  # e.g. {"duration_group": "600"}
    metadata: Mapping[str, Any] = field(default_factory=dict)  # anything else the task keeps
    subtitles: str | None = None
    evidence: tuple[tuple[float, float], ...] = ()  # ground-truth time intervals (s), where known

    def __post_init__(self):
        object.__setattr__(self, "options", tuple(str(o) for o in self.options))
        object.__setattr__(self, "evidence", tuple((float(a), float(b)) for a, b in self.evidence))

    @property
    def answer_letter(self) -> str | None:
        return None if self.answer is None else chr(ord("A") + self.answer)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class CandidateGrid:
    """The native frames a sampler may choose from, and when they were taken."""

    indices: tuple[int, ...]  # native frame indices, ascending
    timestamps: tuple[float, ...]  # seconds, index / fps
    fps: float  # native average fps reported by the decoder
    frame_count: int  # native frame count reported by the decoder
    rule: str  # the named rule that produced the grid, e.g. "1fps"

    def __post_init__(self):
        object.__setattr__(self, "indices", _freeze_ints(self.indices))
        object.__setattr__(self, "timestamps", _freeze_floats(self.timestamps))
        if len(self.indices) != len(self.timestamps):
            raise ValueError("grid indices and timestamps differ in length")

    def __len__(self) -> int:
        return len(self.indices)


@dataclass(frozen=True)
class Selection:
    """The frames one sampler chose for one sample."""

    sampler: str
    config_hash: str
    positions: tuple[int, ...]  # positions in the candidate grid, ascending (repeats allowed by `short_grid=repeat`)
    frame_indices: tuple[int, ...]  # native frame indices of those positions
    timestamps: tuple[float, ...]  # seconds
    # per frame, the fraction of the frame's width and height the backbone gets it at (Q-Frame: 1/2, 1/4, 1/8);
    # None: every frame at the backbone's own resolution (every sampler but the multi-resolution ones)
    scales: tuple[float, ...] | None = None

    def __post_init__(self):
        object.__setattr__(self, "positions", _freeze_ints(self.positions))
        object.__setattr__(self, "frame_indices", _freeze_ints(self.frame_indices))
        object.__setattr__(self, "timestamps", _freeze_floats(self.timestamps))
        if self.scales is not None:
            scales = _freeze_floats(self.scales)
            if len(scales) != len(self.positions):
                raise ValueError(f"sampler {self.sampler!r}: {len(scales)} scales for {len(self.positions)} frames")
            if not all(0.0 < s <= 1.0 for s in scales):
                raise ValueError(f"sampler {self.sampler!r}: scales must lie in (0, 1], got {scales}")
            object.__setattr__(self, "scales", scales)

    @classmethod
    def from_positions(cls, sampler: str, config_hash: str, grid: CandidateGrid, positions,
                       scales=None) -> "Selection":
        pos = np.asarray(positions, dtype=np.int64)
        if pos.size and (pos.min() < 0 or pos.max() >= len(grid)):
            raise ValueError(f"sampler {sampler!r} returned positions outside the grid of {len(grid)}")
        if np.any(np.diff(pos) < 0):
            raise ValueError(f"sampler {sampler!r} returned positions that are not ascending")
        idx = np.asarray(grid.indices)[pos] if pos.size else []
        ts = np.asarray(grid.timestamps)[pos] if pos.size else []
        return cls(sampler, config_hash, pos.tolist(), idx, ts, None if scales is None else list(scales))

    def to_json(self) -> dict:
        """The record as stored; `scales` only where present, so records without it (and their hashes) are as
        they were before the field existed."""
        out = dataclasses.asdict(self)
        if out["scales"] is None:
            del out["scales"]
        else:
            out["scales"] = list(out["scales"])
        return out


PARSE_OK = "ok"
PARSE_FAILED = "parse_failed"
ERROR = "error"
NOT_ANSWERED = "not_answered"  # --backbone none: the selection is the result


@dataclass(frozen=True)
class Prediction:
    """What the backbone said and how it was scored."""

    raw_text: str | None
    parsed: str | None  # option letter, None when parsing failed or the sample errored
    correct: bool | None  # None: the sample has no gold answer (a test split), so nothing is scored
    parse_status: str  # PARSE_OK | PARSE_FAILED | ERROR | NOT_ANSWERED
    error: str | None = None
    timings: Mapping[str, float] = field(default_factory=dict)  # seconds per stage

    def to_json(self) -> dict:
        return dataclasses.asdict(self)
