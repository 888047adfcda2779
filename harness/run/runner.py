"""`harness run`: task samples -> candidate grid -> sampler -> frames -> backbone -> scored row in the run store.

One planner (`Selector.planned`: open, features, selections) and two executors: sequential (decode in this
process, one question at a time) and pipelined (`harness.run.pipelined`: decode workers ahead, batched questions).
Both write rows through `Run.write`, and give the same rows."""
from __future__ import annotations

import time
from pathlib import Path

from harness.config import RunConfig, git_commit, package_versions
from harness.errors import HarnessError
from harness.records import Sample
from harness.registry import BACKBONES
from harness.run.rows import answered_row, make_row
from harness.run.selector import Planned, Selector, by_video
from harness.scoring.summary import error_prediction, not_answered
from harness.store.runs import RunStore
from harness.util.hashing import short_hash
from harness.util.progress import progress_bar
from harness.video.reader import VideoReader, decode_selection


class Run(Selector):
    """One `harness run` command: one task and backbone, one run store per sampler."""

    def __init__(self, cfg: RunConfig, debug: bool = False, progress: bool = True, backbone=None):
        if not cfg.samplers:
            raise HarnessError("at least one --sampler is needed")
        super().__init__(cfg, debug, progress)
        # every backbone takes --device and --dtype, so they are never hidden in backbone_args; `backbone`: one
        # already built from the same config (harness bench measures two loops on one loaded model)
        if backbone is None and len(self.devices) > 1:
            if "devices" not in {p.name for p in BACKBONES.get(cfg.backbone).params}:
                raise HarnessError(f"backbone {cfg.backbone!r} runs on one device: --gpus-per-replica "
                                   f"{cfg.gpus_per_replica} needs one that spans several (qwen2.5-vl, llava-video)")
            spanning = {"devices": self.devices}
        else:
            spanning = {}
        self.backbone = backbone if backbone is not None else BACKBONES.create(
            cfg.backbone, device=self.device, dtype=cfg.dtype, **spanning, **cfg.backbone_args)
        self.stores: list[RunStore] = []  # one per sampler, in the order of self.samplers
        self.prompts: dict[str, str] = {}  # sample id -> the exact prompt text
        self.pipeline_stats = {"wait": 0.0, "generate": 0.0, "batches": 0, "decode": 0.0, "prepare": 0.0}
        self.seconds, self.questions = 0.0, 0

    def identity(self, sampler, n_samples: int | None = None) -> dict:
        """What decides the results, and so the run directory. The decode backend, the device and where the data
        lies do not; a --limit that takes every sample is no subset."""
        limit = self.cfg.limit if self.cfg.limit is not None and (n_samples is None or self.cfg.limit < n_samples) \
            else None
        return {
            "task": {"name": self.task.name, "config": self.task.identity()},
            "backbone": {"name": self.cfg.backbone, "config": self.backbone.config()},
            "sampler": {"name": sampler.name, "config": sampler.config(), "config_hash": sampler.config_hash},
            "frames": self.cfg.frames, "grid": self.grid_rule, "short_grid": self.cfg.short_grid,
            "limit": limit, "dtype": self.cfg.dtype,
        }

    def execute(self) -> list[Path]:
        samples = self.samples()
        self.prompts = {s.id: self.task.prompt(s, self.backbone.prompt_style) for s in samples}
        prompt_hash = short_hash([self.prompts[s.id] for s in samples], 16)
        base = {"run": self.cfg.to_json(), "task_config": self.task.config(), "grid": self.grid_rule,
                "prompt_style": self.backbone.prompt_style, "prompts_sha256": prompt_hash, "n_samples": len(samples),
                "versions": package_versions(), "git_commit": git_commit()}
        # the spec as typed (e.g. "aks:encoder=mini-clip,depth=3") labels tables; the identity holds the full config
        self.stores = [RunStore(Path(self.cfg.out), self.identity(s, self.n_available), {**base, "sampler_spec": spec},
                                rank=self.world.rank, world=self.world.size).open()
                       for s, spec in zip(self.samplers, self.cfg.samplers)]
        try:
            todo = [s for s in samples if any(not st.is_done(s.id) for st in self.stores)]
            self.world.barrier()  # every rank has read what is done before any rank writes: one sharding for all
            todo = self.my_share(todo)
            t0 = time.perf_counter()
            with progress_bar(self.progress, "run", len(todo)) as advance:
                if self.pipelined and self.backbone.answers:
                    from harness.run.pipelined import run_pipelined

                    undo = self.backbone.accelerate()  # answer-preserving speed-ups for batched work
                    try:
                        run_pipelined(self, todo, advance)
                    finally:
                        undo()
                else:
                    self._run_sequential(todo, advance)
            self.seconds, self.questions = time.perf_counter() - t0, len(todo)
            self._finish()
        finally:
            for store in self.stores:
                store.close()
        return [st.dir for st in self.stores]

    def _finish(self) -> None:
        """Every rank's counts into its event log; rank 0 merges the ranks' rows and writes the metrics."""
        features = dict(sorted(self.inputs.stats.items()))
        for store in self.stores:
            store.event("features", **features, questions=self.questions, seconds=self.seconds,
                        **({"rank": self.world.rank} if self.world.size > 1 else {}))
        self.world.barrier()  # every rank's rows are written
        if self.world.is_main:
            for store in self.stores:
                store.merge()
                store.write_metrics({"task": self.task.name, "scorer": self.task.parser,
                                     "metrics": self.task.metrics(store.rows())})

    @property
    def pipelined(self) -> bool:
        """Workers decode ahead and/or questions are batched (`--workers`, `--batch-size`)."""
        return self.cfg.workers > 0 or self.cfg.batch_size > 1

    def pending(self, sample: Sample) -> list[int]:
        """The sampler slots whose run stores lack this sample."""
        return [i for i, store in enumerate(self.stores) if not store.is_done(sample.id)]

    def write(self, item: Planned, row: dict) -> None:
        """The one place rows are appended (and flushed) to a run store."""
        self.stores[item.slot].append(row)

    def write_error(self, item: Planned, message: str) -> None:
        self.write(item, make_row(item.sample, self.prompts[item.sample.id], item.selection,
                                  error_prediction(message)))

    def write_answer(self, item: Planned, answer, timings: dict, visual_tokens: int | None) -> None:
        self.write(item, answered_row(self.task, item.sample, self.prompts[item.sample.id], item.selection, answer,
                                      timings, visual_tokens, self.describe))

    def _run_sequential(self, todo: list[Sample], advance) -> None:
        """Video by video in this process: each selection decoded from the open reader and answered alone."""
        for _, group in by_video(todo):
            with self.planned(group, self.pending) as plan:
                for item in plan.items:
                    if item.selection is None:
                        self.write_error(item, item.error)
                    else:
                        self._answer(plan.reader, item)
            advance(len(group))

    def _answer(self, reader: VideoReader, item: Planned) -> None:
        timings = dict(item.timings)
        if not self.backbone.answers:  # --backbone none: the selection is the result
            self.write(item, make_row(item.sample, self.prompts[item.sample.id], item.selection,
                                      not_answered(timings)))
            return
        try:
            t = time.perf_counter()
            frames = decode_selection(reader, item.selection.frame_indices)
            timings["decode"] = time.perf_counter() - t
            t = time.perf_counter()
            text = self.backbone.generate(frames, item.selection.timestamps, self.prompts[item.sample.id])
            timings["generate"] = time.perf_counter() - t
        except Exception as e:
            self.write_error(item, self.describe(e))
            return
        tokens = self.backbone.last_visual_tokens
        self.write_answer(item, text, timings, tokens[0] if tokens and len(tokens) == 1 else None)
