"""`harness run`: task samples -> candidate grid -> sampler -> frames -> backbone -> scored row in the run store."""
from __future__ import annotations

import hashlib
import sys
import time
import traceback
from collections import defaultdict
from pathlib import Path

import numpy as np

from harness.config import RunConfig, git_commit, package_versions, parse_spec
from harness.errors import HarnessError
from harness.grid import make_grid, parse_grid_rule
from harness.hashing import short_hash
from harness.inputs import InputProvider
from harness.progress import progress_bar
from harness.records import Sample
from harness.registry import BACKBONES, SAMPLERS, TASKS
from harness.scoring import error_prediction, evidence_recall
from harness.store import RunStore
from harness.video import VideoReader, check_backend, open_video
from samplers.base import SHORT_GRID_RULES, select


def stratified_subset(samples: list[Sample], limit: int | None, key: str | None) -> list[Sample]:
    """A deterministic subset of `limit` samples, balanced over the values of category `key`.

    Groups take turns (in sorted order); inside a group samples are ordered by a hash of their id, so the subset
    does not depend on the order of the annotation file. The subset keeps the dataset order.
    """
    if limit is None or limit >= len(samples):
        return list(samples)
    if limit < 1:
        raise HarnessError(f"--limit must be at least 1, got {limit}")
    groups = defaultdict(list)
    for s in samples:
        groups[str(s.categories.get(key)) if key else ""].append(s)
    queues = [sorted(g, key=lambda s: hashlib.sha256(s.id.encode()).hexdigest()) for _, g in sorted(groups.items())]
    chosen: set[str] = set()
    while len(chosen) < limit:
        for q in queues:
            if q and len(chosen) < limit:
                chosen.add(q.pop(0).id)
    return [s for s in samples if s.id in chosen]


def decode_selection(reader: VideoReader, frame_indices) -> np.ndarray:
    """Decode each distinct frame once (a repeated frame is copied, not decoded again)."""
    unique, inverse = np.unique(np.asarray(frame_indices, dtype=np.int64), return_inverse=True)
    return reader.get_frames(unique.tolist())[inverse]


class Run:
    """One `harness run` command: one task and backbone, one run store per sampler."""

    def __init__(self, cfg: RunConfig, debug: bool = False, progress: bool = True):
        self.cfg, self.debug, self.progress = cfg, debug, progress
        if cfg.frames < 1:
            raise HarnessError(f"--frames must be at least 1, got {cfg.frames}")
        if cfg.short_grid not in SHORT_GRID_RULES:
            raise HarnessError(f"unknown --short-grid {cfg.short_grid!r} (known: {', '.join(SHORT_GRID_RULES)})")
        self.grid_rule = parse_grid_rule(cfg.grid)
        check_backend(cfg.decode_backend)
        if not cfg.samplers:
            raise HarnessError("at least one --sampler is needed")
        self.task = TASKS.create(cfg.task, **cfg.task_args)
        self.samplers = [SAMPLERS.create(name, **args) for name, args in map(parse_spec, cfg.samplers)]
        for sampler in self.samplers:  # e.g. replay: stored native frame numbers are positions only on `all`
            needed = getattr(sampler, "grid", None)
            if needed and parse_grid_rule(needed) != self.grid_rule:
                raise HarnessError(f"sampler {sampler.name!r} needs --grid {needed} (this run has {self.grid_rule})")
        # every backbone takes --device and --dtype, so they are never hidden in backbone_args
        self.backbone = BACKBONES.create(cfg.backbone, device=cfg.device, dtype=cfg.dtype, **cfg.backbone_args)
        self.inputs = InputProvider(Path(cfg.cache_dir), cfg.device, cfg.dtype)

    def identity(self, sampler) -> dict:
        """What decides the results, and so the run directory. The decode backend and device do not."""
        return {
            "task": {"name": self.task.name, "config": self.task.config()},
            "backbone": {"name": self.cfg.backbone, "config": self.backbone.config()},
            "sampler": {"name": sampler.name, "config": sampler.config(), "config_hash": sampler.config_hash},
            "frames": self.cfg.frames, "grid": self.grid_rule, "short_grid": self.cfg.short_grid,
            "limit": self.cfg.limit, "dtype": self.cfg.dtype,
        }

    def _samples(self) -> list[Sample]:
        """The (limited) samples; benchmarks check only the chosen subset's videos, before anything runs."""
        if hasattr(self.task, "check_videos"):
            return self.task.check_videos(
                stratified_subset(self.task.load_samples(), self.cfg.limit, self.task.stratify_key))
        return stratified_subset(self.task.samples(), self.cfg.limit, self.task.stratify_key)

    def execute(self) -> list[Path]:
        samples = self._samples()
        if not samples:
            raise HarnessError(f"task {self.task.name!r} has no samples")
        for sampler in self.samplers:  # replay: samples without a stored selection get error rows; say so now
            if hasattr(sampler, "join"):
                report = sampler.join(samples)
                if report.unmatched_samples:
                    print(f"harness: sampler {sampler.name}: {report.summary()}", file=sys.stderr)
        prompts = {s.id: self.task.prompt(s, self.backbone.prompt_style) for s in samples}
        prompt_hash = short_hash([prompts[s.id] for s in samples], 16)
        base = {"run": self.cfg.to_json(), "grid": self.grid_rule, "prompt_style": self.backbone.prompt_style,
                "prompts_sha256": prompt_hash, "n_samples": len(samples), "versions": package_versions(),
                "git_commit": git_commit()}
        stores = [RunStore(Path(self.cfg.out), self.identity(s), base).open() for s in self.samplers]
        try:
            todo = [s for s in samples if any(not st.is_done(s.id) for st in stores)]
            with progress_bar(self.progress, "run", len(todo)) as advance:
                for sample in todo:
                    self._run_sample(sample, prompts[sample.id], stores)
                    advance()
            for store in stores:
                store.write_metrics({"task": self.task.name, "scorer": getattr(self.task, "parser", "strict"),
                                     "metrics": self.task.metrics(store.rows())})
        finally:
            for store in stores:
                store.close()
        return [st.dir for st in stores]

    def _run_sample(self, sample: Sample, prompt: str, stores: list[RunStore]) -> None:
        pending = [(sp, st) for sp, st in zip(self.samplers, stores) if not st.is_done(sample.id)]
        try:
            t0 = time.perf_counter()
            reader = open_video(sample.video, self.cfg.decode_backend)
            grid = make_grid(reader.meta.frame_count, reader.meta.fps, self.grid_rule)
            opened = time.perf_counter() - t0
        except Exception as e:  # the video is unusable: one error row per sampler, the run goes on
            for _, store in pending:
                store.append(self._row(sample, prompt, None, error_prediction(self._describe(e))))
            return
        with reader:
            for sampler, store in pending:
                store.append(self._answer(sample, prompt, reader, grid, sampler, opened))

    def _answer(self, sample, prompt, reader, grid, sampler, opened: float) -> dict:
        selection, parsers = None, None
        try:
            timings = {"open": opened}
            t = time.perf_counter()
            inputs = self.inputs.inputs(sampler, self.task, sample, grid, reader)
            selection = select(sampler, grid, self.cfg.frames, inputs, self.cfg.short_grid)
            timings["select"] = time.perf_counter() - t
            t = time.perf_counter()
            frames = decode_selection(reader, selection.frame_indices)
            timings["decode"] = time.perf_counter() - t
            t = time.perf_counter()
            text = self.backbone.generate(frames, selection.timestamps, prompt)
            timings["generate"] = time.perf_counter() - t
            prediction = self.task.score(sample, text)
            prediction = type(prediction)(**{**prediction.to_json(), "timings": timings})
            if hasattr(self.task, "parse_all"):  # every parser's letter, so tables can switch protocol
                parsers = self.task.parse_all(sample, text)
        except Exception as e:
            prediction = error_prediction(self._describe(e))
        row = self._row(sample, prompt, selection, prediction)
        if parsers is not None:
            row["parsers"] = parsers
        return row

    def _describe(self, e: Exception) -> str:
        if self.debug:
            traceback.print_exc()
        return str(e) if isinstance(e, HarnessError) else f"{type(e).__name__}: {e}"

    @staticmethod
    def _row(sample: Sample, prompt: str, selection, prediction) -> dict:
        return {
            "sample_id": sample.id,
            "video": sample.video,
            "categories": dict(sample.categories),
            "answer": sample.answer_letter,
            "prompt_sha256": hashlib.sha256(prompt.encode()).hexdigest()[:16],
            "selection": None if selection is None else selection.to_json(),
            "evidence": [list(iv) for iv in sample.evidence],
            "evidence_recall": None if selection is None else evidence_recall(sample.evidence, selection.timestamps),
            "prediction": prediction.to_json(),
        }

