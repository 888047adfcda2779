"""Replay stored selections: TSPO's published `jsons_idx` files, or a harness selection file / run directory.

Stored selections are native frame numbers, so replay runs on the grid `all` (every native frame: a position is a
native frame index). It is still a pure function of arrays: the runner asks `stored_indices(sample)` for the one
per-sample input it declares in `needs`, and `positions` turns that into the frames to decode, as TSPO's adapters
do: `sorted(stored[:K])`. When fewer than K are stored (short videos: TSPO stores the whole 1 fps grid), `short`
decides: `harness` uses the stored frames as they are (fewer than K), `tspo-uniform` falls back to K uniform frames
`np.linspace(0, N-1, K, dtype=int)` over all N native frames, as TSPO's `load_video_index` does.

A harness file whose selections carry per-frame `scales` (a multi-resolution sampler's, e.g. qframe) replays them
whole, each frame with its scale: the replay is then multi-resolution itself (only a backbone that takes scales
answers it), and K does not cut the stored frames (the stored tiers already spent the budget).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from harness.errors import HarnessError
from harness.registry import SAMPLERS
from harness.store.selections import FORMATS, SHORT_RULES, JoinReport, load_selections, replay_indices
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
        self.multi_resolution = self.selections.has_scales  # stored scales: replayed with their frames
        if self.multi_resolution:
            self.needs = self.per_sample = ("stored_indices", "stored_scales")

    def config(self) -> dict:
        # the content decides the selection, not where the file lies
        return {"file": self.file.name, "file_sha256": self.selections.sha256, "format": self.format,
                "kind": self.selections.kind, "short": self.short}

    def join(self, samples: Iterable) -> JoinReport:
        """Which samples have a stored selection, and which stored records match no sample."""
        return self.selections.join(samples)

    def check_samples(self, samples) -> str | None:
        report = self.join(samples)
        return f"sampler {self.name}: {report.summary()}" if report.unmatched_samples else None

    def sample_inputs(self, sample) -> dict[str, np.ndarray]:
        out = {"stored_indices": self.stored_indices(sample)}
        if self.multi_resolution:  # an empty array: this record has no scales
            out["stored_scales"] = np.asarray(self.selections.get(sample).scales or (), np.float64)
        return out

    def stored_indices(self, sample) -> np.ndarray:
        """The stored native frame indices of this sample, in stored order."""
        entry = self.selections.get(sample)
        if entry is None:
            raise HarnessError(f"replay: no stored selection for sample {sample.id!r} in {self.file} "
                               f"({self.selections.kind} file)")
        return np.asarray(entry.frame_indices, dtype=np.int64)

    def positions(self, n: int, k: int, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        return replay_indices(self._stored(n, inputs), k, n, self.short)

    def select(self, n: int, k: int, inputs: Mapping[str, np.ndarray]):
        """Stored scales: every stored frame with its scale, in time order; otherwise `positions`."""
        scales = np.asarray(inputs.get("stored_scales", ()), np.float64)
        if not scales.size:
            return self.positions(n, k, inputs), None
        stored = self._stored(n, inputs)
        order = np.argsort(stored, kind="stable")
        return stored[order], scales[order]

    @staticmethod
    def _stored(n: int, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        stored = np.asarray(inputs["stored_indices"], dtype=np.int64)
        if stored.size == 0:
            raise HarnessError("replay: the stored selection is empty")
        if stored.max() >= n:
            raise HarnessError(f"replay: stored frame index {int(stored.max())} is beyond the video's {n} frames "
                               f"(another video file or decoder than the one the selection was made on?)")
        return stored
