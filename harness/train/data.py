"""Training data for the TSPO trainer: which source a run's `data` names, and harness tasks as a source.

* `TaskSource`: any harness task, e.g. the offline `needle` train split (`needle_source`). Candidates are the
  task video's grid (default 1 fps); the mask marks candidates inside the sample's evidence intervals, so the
  temporal reward applies wherever a task knows its evidence.
* `harness.train.tspo10k.JsonlSource`: the TSPO-10K JSONL rows, with the official needle-in-a-haystack episodes.

All randomness comes from the `rng` the trainer passes, derived from (seed, position in the data order), so an
episode is the same whichever process builds it, and after a resume.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.errors import HarnessError
from harness.features.store import cosine_scores
from harness.train.episode import Episode, Source, TrainItem, evidence_mask
from harness.video.grid import make_grid, parse_grid_rule


class TaskSource(Source):
    """Questions of a harness task; candidates on its videos' `grid`; mask from the samples' evidence."""

    def __init__(self, task, grid: str = "1fps", limit: int | None = None):
        self.task, self.grid, self.limit = task, parse_grid_rule(grid), limit
        self.name = f"task:{task.name}"
        self._items = None

    def config(self) -> dict:
        return {"source": self.name, "task": self.task.identity(), "grid": self.grid, "limit": self.limit}

    def items(self) -> list[TrainItem]:
        if self._items is None:
            samples = self.task.samples()
            if self.limit is not None:
                samples = samples[:self.limit]
            if not samples:
                raise HarnessError(f"task {self.task.name!r} has no samples to train on")
            self._items = [TrainItem(s.id, s, self.task.query(s), "task") for s in samples]
        return self._items

    def prompt(self, item: TrainItem, style: str) -> str:
        return self.task.prompt(item.sample, style)

    def score(self, item: TrainItem, text: str) -> bool:
        return bool(self.task.score(item.sample, text).correct)

    def episode(self, item, env, rng, frames, general_frames) -> Episode:
        from harness.video.reader import decode_selection, open_video

        scorer = env.scorer
        reader = open_video(item.sample.video, env.decode_backend)
        try:
            grid = make_grid(reader.meta.frame_count, reader.meta.fps, self.grid)
            if len(grid) == 0:
                raise HarnessError(f"{item.sample.video}: empty candidate grid ({self.grid})")
            feats = env.store.image_features(scorer, item.sample.video, grid, reader)
            text = env.store.text_feature(scorer, item.query)
        except BaseException:
            reader.close()
            raise
        times = np.asarray(grid.timestamps, np.float64)
        indices = np.asarray(grid.indices)
        return Episode(item, np.asarray(feats, np.float32), np.asarray(text, np.float32).reshape(-1),
                       cosine_scores(feats, text), times, evidence_mask(times, item.sample.evidence),
                       min(frames, len(grid)), lambda positions: decode_selection(reader, indices[list(positions)]),
                       tuple(item.sample.evidence), [reader.close])


def needle_source(videos: int = 50, questions_per_video: int = 4, seed: int = 0, grid: str = "1fps",
                  limit: int | None = None, **task_args) -> TaskSource:
    """The offline `needle` train split (disjoint from the test split the default run evaluates on)."""
    from harness.registry import TASKS

    task = TASKS.create("needle", split="train", videos=videos, questions_per_video=questions_per_video, seed=seed,
                        **task_args)
    return TaskSource(task, grid, limit)


def make_source(data: str, task_args: dict | None = None, video_root=None, grid: str = "1fps",
                limit: int | None = None) -> Source:
    """`needle` (the offline train split), `task:NAME` (any registered task; `task_args` are its options), or a
    TSPO-10K `.jsonl` file with `video_root`."""
    task_args = dict(task_args or {})
    if data == "needle":
        if task_args.pop("split", "train") != "train":
            raise HarnessError("TSPO training on needle uses its train split (the test split is for evaluation)")
        return needle_source(grid=grid, limit=limit, **task_args)
    if data.startswith("task:"):
        from harness.registry import TASKS

        return TaskSource(TASKS.create(data[len("task:"):], **task_args), grid, limit)
    if data.endswith(".jsonl") or Path(data).expanduser().is_file():
        if task_args:
            raise HarnessError(f"task options {sorted(task_args)} do not apply to a JSONL file")
        from harness.train.tspo10k import JsonlSource

        return JsonlSource(data, video_root, limit)
    raise HarnessError(f"training data {data!r}: expected 'needle', 'task:NAME' or a TSPO-10K .jsonl file")
