"""Task samples -> candidate grid -> sampler selections, with inputs from the feature store: `harness select` and
`harness features` are this alone; `harness run` (harness.run.runner) adds a backbone and run stores."""
from __future__ import annotations

import os
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from harness.config import RunConfig, parse_spec
from harness.errors import HarnessError, is_fatal
from harness.features.inputs import FEATURE_INPUTS, LAZY_INPUTS, InputProvider, encoder_specs, wants
from harness.records import CandidateGrid, Sample, Selection
from harness.registry import SAMPLERS, TASKS
from harness.run import distributed
from harness.run.subset import stratified_subset
from harness.util.progress import progress_bar
from harness.video.datacheck import duration_mismatch
from harness.video.grid import make_grid, parse_grid_rule
from harness.video.reader import VideoReader, check_backend, open_video
from samplers.base import SHORT_GRID_RULES, apply_sampler


def selection_cost(sampler, n_candidates: int, inputs=None) -> dict:
    """What choosing took beyond arithmetic: candidates scored (a sampler with feature inputs scores every candidate
    of the grid; one with lazy scores the distinct candidates it asked for, their `scored` count), and video-LLM
    passes (`backbone:NAME` scorers run the backbone once per scored candidate)."""
    scored = n_candidates if set(sampler.needs) & set(FEATURE_INPUTS) else 0
    scored += sum(inputs[need].scored for need in LAZY_INPUTS if need in (inputs or {}))
    by_backbone = scored if str(sampler.encoder or "").startswith("backbone:") else 0
    return {"frames_scored": scored, "backbone_passes": by_backbone}


def by_video(samples: list[Sample]) -> list[tuple[str, list[Sample]]]:
    """Samples grouped by video, videos in order of first appearance: each video is opened (and its features
    computed) once for all its questions."""
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.video, []).append(s)
    return list(groups.items())


@dataclass
class Planned:
    """One (sample, sampler) of a video: its selection, or the error that left it without one."""

    sample: Sample
    slot: int  # the sampler's index in Selector.samplers (and its run store's in Run.stores)
    selection: Selection | None
    error: str | None = None
    timings: dict = field(default_factory=dict)  # seconds: open, features, select
    video_check: dict | None = None  # the decoder's duration where it disagrees with the annotation
    cost: dict = field(default_factory=dict)  # frames scored and backbone passes its selection took


@dataclass
class VideoPlan:
    """Every (sample, sampler) still to do for one video, planned in this process: the grid (None when the video
    could not be opened), and the reader, open only inside `Selector.planned`."""

    video: str
    group: list[Sample]
    grid: CandidateGrid | None = None
    reader: VideoReader | None = None
    items: list[Planned] = field(default_factory=list)

    @property
    def selected(self) -> list[Planned]:
        return [item for item in self.items if item.selection is not None]

    @property
    def failed(self) -> list[Planned]:
        return [item for item in self.items if item.selection is None]


class Selector:
    """Task samples -> candidate grid -> sampler selections, with inputs from the feature store. `harness select`
    is this alone; `harness run` adds a backbone and run stores."""

    def __init__(self, cfg: RunConfig, debug: bool = False, progress: bool = True):
        self.cfg, self.debug, self.progress = cfg, debug, progress
        self.world = distributed.init(cfg.device, cfg.gpus_per_replica)  # one process: rank 0 of 1, nothing set up
        self.devices = distributed.replica_devices(cfg.device, self.world, cfg.gpus_per_replica)
        self.device = self.devices[0]  # inputs, encoders; a backbone spanning several GPUs starts here
        cfg.validate()  # types and ranges, as the command line checks them (programmatic runs too)
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
        # decoding threads of the readers this process opens (the pipelined executor's workers get their share)
        self.decode_threads = max(1, os.cpu_count() or 1)
        self.n_available: int | None = None  # samples of the task before --limit (known once samples() ran)
        for spec in encoder_specs(self.samplers):  # a bad encoder name is bad input: fail now, not as an error per row
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
        every = self.task.load_samples()
        self.n_available = len(every)  # before --limit: a limit that takes them all is no subset
        return self.task.check_videos(stratified_subset(every, self.cfg.limit, self.task.stratify_key))

    def my_share(self, samples: list[Sample]) -> list[Sample]:
        """This rank's samples: whole videos, dealt round-robin (see harness.run.distributed)."""
        return [s for _, group in self.world.shard(by_video(samples)) for s in group]

    def open(self, video: str) -> tuple[VideoReader, CandidateGrid]:
        reader = open_video(video, self.cfg.decode_backend, threads=self.decode_threads)
        return reader, make_grid(reader.meta.frame_count, reader.meta.fps, self.grid_rule)

    def selection(self, sampler, sample: Sample, grid: CandidateGrid, reader: VideoReader, cost: dict | None = None):
        """The sampler's selection for one sample; `cost`, when given, receives what choosing took."""
        inputs = self.inputs.inputs(sampler, self.task, sample, grid, reader)
        selection = apply_sampler(sampler, grid, self.cfg.frames, inputs, self.cfg.short_grid)
        if cost is not None:
            cost.update(selection_cost(sampler, len(grid), inputs))
        return selection

    def prepare(self, group: list[Sample], grid: CandidateGrid, reader: VideoReader) -> tuple[str | None, float]:
        """Features for every question of one video, in one decode pass: (the error, or None; seconds)."""
        t0 = time.perf_counter()
        try:
            self.inputs.prepare(wants(self.samplers), self.task, group, grid, reader)
            return None, time.perf_counter() - t0
        except Exception as e:
            return self.describe(e), time.perf_counter() - t0

    def describe(self, e: Exception) -> str:
        """The one line an error row records. Every place that turns an exception into an error row asks here, so
        a fault of the machine or the setup (`is_fatal`: a cache or output that cannot be written, a full disk, out
        of memory, weights that give NaN) is re-raised instead and stops the run: it is never data."""
        if is_fatal(e):
            raise e
        if self.debug:
            traceback.print_exc()
        return str(e) if isinstance(e, HarnessError) else f"{type(e).__name__}: {e}"

    @contextmanager
    def planned(self, group: list[Sample], pending: Callable[[Sample], list[int]] | None = None
                ) -> Iterator[VideoPlan]:
        """The one planner of every command: open the video, compute what its samplers miss in one decode pass,
        select every (sample, sampler slot) in `pending(sample)` (default: all). A video that cannot be opened or a
        feature pass that fails gives every item that error; a failing sampler only its own items. The reader stays
        open inside the with-block (the sequential runner decodes from it)."""
        plan = VideoPlan(group[0].video, group)
        slots = [(s, i) for s in group for i in (pending(s) if pending else range(len(self.samplers)))]
        t0 = time.perf_counter()
        try:
            reader, plan.grid = self.open(plan.video)
        except Exception as e:  # the video is unusable: one error per item, the run goes on
            plan.items = [Planned(s, i, None, self.describe(e)) for s, i in slots]
            yield plan
            return
        opened = time.perf_counter() - t0
        with reader:
            plan.reader = reader
            failed, prepared = self.prepare(group, plan.grid, reader) if slots else (None, 0.0)
            checks = {s.id: duration_mismatch(s, reader.meta.duration) for s in group}
            for sample, slot in slots:
                if failed:
                    plan.items.append(Planned(sample, slot, None, failed))
                    continue
                t, cost = time.perf_counter(), {}
                try:
                    selection = self.selection(self.samplers[slot], sample, plan.grid, reader, cost)
                except Exception as e:
                    plan.items.append(Planned(sample, slot, None, self.describe(e)))
                    continue
                plan.items.append(Planned(sample, slot, selection, None, {
                    "open": opened, "features": prepared, "select": time.perf_counter() - t}, checks[sample.id], cost))
            try:
                yield plan
            finally:
                plan.reader = None

    def records(self, samples: list[Sample]):
        """One canonical selection record per (sample, sampler), video by video; an unusable video or a failing
        sampler gives a record with `selection: null` and the error, and the rest goes on."""
        with progress_bar(self.progress, "select", len(samples)) as advance:
            for _, group in by_video(samples):
                with self.planned(group) as plan:
                    for item in plan.items:
                        yield selection_record(item.sample, self.samplers[item.slot], plan.grid, item.selection,
                                               item.error)
                advance(len(group))


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
            "timestamps": list(selection.timestamps),
            **({} if selection.scales is None else {"scales": list(selection.scales)})}
