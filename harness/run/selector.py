"""Task samples -> candidate grid -> sampler selections, with inputs from the feature store: `harness select` and
`harness features` are this alone; `harness run` (harness.run.runner) adds a backbone and run stores."""
from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path

from harness.config import RunConfig, parse_spec
from harness.errors import HarnessError
from harness.features.inputs import InputProvider, wants
from harness.records import CandidateGrid, Sample
from harness.registry import SAMPLERS, TASKS
from harness.run import distributed
from harness.run.subset import stratified_subset
from harness.util.progress import progress_bar
from harness.video.grid import make_grid, parse_grid_rule
from harness.video.reader import VideoReader, check_backend, open_video
from samplers.base import SHORT_GRID_RULES, select


def by_video(samples: list[Sample]) -> list[tuple[str, list[Sample]]]:
    """Samples grouped by video, videos in order of first appearance: each video is opened (and its features
    computed) once for all its questions."""
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.video, []).append(s)
    return list(groups.items())


class Selector:
    """Task samples -> candidate grid -> sampler selections, with inputs from the feature store. `harness select`
    is this alone; `harness run` adds a backbone and run stores."""

    def __init__(self, cfg: RunConfig, debug: bool = False, progress: bool = True):
        self.cfg, self.debug, self.progress = cfg, debug, progress
        self.world = distributed.init(cfg.device, cfg.gpus_per_replica)  # one process: rank 0 of 1, nothing set up
        self.devices = distributed.replica_devices(cfg.device, self.world, cfg.gpus_per_replica)
        self.device = self.devices[0]  # inputs, encoders; a backbone spanning several GPUs starts here
        if cfg.frames < 1:
            raise HarnessError(f"--frames must be at least 1, got {cfg.frames}")
        if cfg.short_grid not in SHORT_GRID_RULES:
            raise HarnessError(f"unknown --short-grid {cfg.short_grid!r} (known: {', '.join(SHORT_GRID_RULES)})")
        self.grid_rule = parse_grid_rule(cfg.grid)
        check_backend(cfg.decode_backend)
        self.task = TASKS.create(cfg.task, **cfg.task_args)
        self.samplers = [SAMPLERS.create(name, **args) for name, args in map(parse_spec, cfg.samplers)]
        for sampler in self.samplers:  # e.g. replay: stored native frame numbers are positions only on `all`
            if sampler.grid and parse_grid_rule(sampler.grid) != self.grid_rule:
                raise HarnessError(f"sampler {sampler.name!r} needs --grid {sampler.grid} (this run has "
                                   f"{self.grid_rule})")
        self.inputs = InputProvider(Path(cfg.cache_dir), self.device, cfg.dtype)
        for spec, _ in wants(self.samplers):  # a bad encoder name is bad input: fail now, not as an error per row
            self.inputs.store.encoder(spec)

    def samples(self) -> list[Sample]:
        """The (limited) samples; benchmarks check only the chosen subset's videos, before anything runs."""
        # rank 0 generates (smoke, needle) or checks the videos first; the others then read. A failure on rank 0
        # still releases the others, which then meet the same bad input themselves.
        if self.world.is_main:
            try:
                samples = self._load_samples()
            finally:
                self.world.barrier()
        else:
            self.world.barrier()
            samples = self._load_samples()
        if not samples:
            raise HarnessError(f"task {self.task.name!r} has no samples")
        for sampler in self.samplers:  # replay: samples without a stored selection get error rows; say so now
            note = sampler.check_samples(samples)
            if note and self.world.is_main:
                print(f"harness: {note}", file=sys.stderr)
        return samples

    def _load_samples(self) -> list[Sample]:
        return self.task.check_videos(
            stratified_subset(self.task.load_samples(), self.cfg.limit, self.task.stratify_key))

    def my_share(self, samples: list[Sample]) -> list[Sample]:
        """This rank's samples: whole videos, dealt round-robin (see harness.run.distributed)."""
        return [s for _, group in self.world.shard(by_video(samples)) for s in group]

    def open(self, video: str) -> tuple[VideoReader, CandidateGrid]:
        reader = open_video(video, self.cfg.decode_backend)
        return reader, make_grid(reader.meta.frame_count, reader.meta.fps, self.grid_rule)

    def select(self, sampler, sample: Sample, grid: CandidateGrid, reader: VideoReader):
        inputs = self.inputs.inputs(sampler, self.task, sample, grid, reader)
        return select(sampler, grid, self.cfg.frames, inputs, self.cfg.short_grid)

    def prepare(self, group: list[Sample], grid: CandidateGrid, reader: VideoReader) -> tuple[str | None, float]:
        """Features for every question of one video, in one decode pass: (the error, or None; seconds)."""
        t0 = time.perf_counter()
        try:
            self.inputs.prepare(wants(self.samplers), self.task, group, grid, reader)
            return None, time.perf_counter() - t0
        except Exception as e:
            return self.describe(e), time.perf_counter() - t0

    def describe(self, e: Exception) -> str:
        if self.debug:
            traceback.print_exc()
        return str(e) if isinstance(e, HarnessError) else f"{type(e).__name__}: {e}"

    def records(self, samples: list[Sample]):
        """One canonical selection record per (sample, sampler), video by video; an unusable video or a failing
        sampler gives a record with `selection: null` and the error, and the rest goes on."""
        with progress_bar(self.progress, "select", len(samples)) as advance:
            for video, group in by_video(samples):
                try:
                    reader, grid = self.open(video)
                except Exception as e:
                    for sample in group:
                        for sampler in self.samplers:
                            yield selection_record(sample, sampler, grid=None, selection=None,
                                                   error=self.describe(e))
                        advance()
                    continue
                with reader:
                    failed, _ = self.prepare(group, grid, reader)
                    for sample in group:
                        for sampler in self.samplers:
                            try:
                                if failed:
                                    raise HarnessError(failed)
                                yield selection_record(sample, sampler, grid, self.select(sampler, sample, grid,
                                                                                          reader))
                            except Exception as e:
                                yield selection_record(sample, sampler, grid, None, self.describe(e))
                        advance()


def compute_features(selector: Selector, encoders: list[str], query: str = "question") -> tuple[dict, list[str]]:
    """`harness features`: fill the feature store for a task's videos (image features, text features of the
    queries, BLIP scores per question), one decode pass per video; what is cached is skipped, so an interrupted
    command resumes. Returns the store's counts and one line per video that failed."""
    for spec in encoders:
        selector.inputs.store.encoder(spec)  # a bad encoder name fails here, before any video is touched
    samples, failed = selector.samples(), []
    groups = selector.world.shard(by_video(samples))  # with several ranks, each video on one rank
    with progress_bar(selector.progress, "features", len(groups)) as advance:
        for video, group in groups:
            try:
                reader, grid = selector.open(video)
                with reader:
                    selector.inputs.prepare([(e, query) for e in encoders], selector.task, group, grid, reader)
            except Exception as e:
                failed.append(f"{video}: {selector.describe(e)}")
            advance()
    return dict(sorted(selector.inputs.stats.items())), failed


def selection_record(sample: Sample, sampler, grid, selection, error: str | None = None) -> dict:
    """What `harness select` writes per question: the question (sample) id, grid, positions, native frame indices,
    timestamps, sampler and config hash; `selection: null` and the error when there is none."""
    base = {"sample_id": sample.id, "video": sample.video, "grid": None if grid is None else grid.rule,
            "sampler": sampler.name, "config_hash": sampler.config_hash}
    if selection is None:
        return {**base, "selection": None, "error": error}
    return {**base, "positions": list(selection.positions), "frame_indices": list(selection.frame_indices),
            "timestamps": list(selection.timestamps)}
