"""`needle` registered as a task: a split's specs, their videos written once under the data home, and samples."""
from __future__ import annotations

import json
from pathlib import Path

from harness.errors import HarnessError
from harness.records import Sample
from harness.registry import TASKS
from harness.util.fileio import atomic_write
from harness.util.paths import data_home
from tasks.base import Task
from tasks.needle.generate import make_samples, make_specs
from tasks.needle.render import write_videos
from tasks.needle.spec import SPLITS, VERSION, VideoSpec


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
    location_keys = ("root",)  # the same videos under another data home make the same run

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