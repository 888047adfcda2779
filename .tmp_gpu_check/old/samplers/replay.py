"""Replay stored selections: TSPO's published `jsons_idx` files, or a harness selection file / run directory.

Stored selections are native frame numbers, so replay runs on the grid `all` (every native frame: a position is a
native frame index). It is still a pure function of arrays: the runner asks `stored_indices(sample)` for the one
per-sample input it declares in `needs`, and `positions` turns that into the frames to decode, as TSPO's adapters
do: `sorted(stored[:K])`. When fewer than K are stored (short videos: TSPO stores the whole 1 fps grid), `short`
decides: `harness` uses the stored frames as they are (fewer than K), `tspo-uniform` falls back to K uniform frames
`np.linspace(0, N-1, K, dtype=int)` over all N native frames, as TSPO's `load_video_index` does.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from harness.errors import HarnessError
from harness.registry import SAMPLERS
from harness.selections import FORMATS, SHORT_RULES, JoinReport, load_selections, replay_indices
from samplers.base import Sampler


@SAMPLERS.register("replay", description="replays stored selections (TSPO jsons_idx files or harness selections)",
                   help={"file": "selection file: TSPO *_frameIdx.json, a harness .jsonl, or a run directory",
                         "format": "file format (auto: a JSON list is TSPO, JSON lines are the harness's)",
                         "short": "when fewer than K indices are stored: " + "; ".join(
                             f"{k} = {v}" for k, v in SHORT_RULES.items())},
                   choices={"format": FORMATS, "short": tuple(SHORT_RULES)})
class Replay(Sampler):
    name = "replay"
    needs = ("stored_indices",)
    per_sample = ("stored_indices",)  # not one value per candidate: `select` must not check its length
    grid = "all"  # positions are native frame indices

    def __init__(self, file: str | None = None, format: str = "auto", short: str = "harness"):
        if not file:
            raise HarnessError("sampler 'replay' needs file=PATH (a selection file or a run directory)")
        if short not in SHORT_RULES:
            raise HarnessError(f"option short={short!r} of 'replay' must be one of {', '.join(SHORT_RULES)}")
        self.file, self.short = Path(file), short
        self.selections = load_selections(self.file, format)
        self.format = self.selections.format

    def config(self) -> dict:
        # the content decides the selection, not where the file lies
        return {"file": self.file.name, "file_sha256": self.selections.sha256, "format": self.format,
                "kind": self.selections.kind, "short": self.short}

    def join(self, samples: Iterable) -> JoinReport:
        """Which samples have a stored selection, and which stored records match no sample."""
        return self.selections.join(samples)

    def stored_indices(self, sample) -> np.ndarray:
        """The stored native frame indices of this sample, in stored order."""
        entry = self.selections.get(sample)
        if entry is None:
            raise HarnessError(f"replay: no stored selection for sample {sample.id!r} in {self.file} "
                               f"({self.selections.kind} file)")
        return np.asarray(entry.frame_indices, dtype=np.int64)

    def positions(self, n: int, k: int, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        stored = np.asarray(inputs["stored_indices"], dtype=np.int64)
        if stored.size == 0:
            raise HarnessError("replay: the stored selection is empty")
        if stored.max() >= n:
            raise HarnessError(f"replay: stored frame index {int(stored.max())} is beyond the video's {n} frames "
                               f"(another video file or decoder than the one the selection was made on?)")
        return replay_indices(stored, k, n, self.short)
