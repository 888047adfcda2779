"""`harness run`: task samples -> candidate grid -> sampler -> frames -> backbone -> scored row in the run store.

One planner (`Selector.planned`: open, features, selections) and two executors: sequential (decode in this
process, one question at a time) and pipelined (`harness.run.pipelined`: decode workers ahead, batched questions).
Both write rows through `Run.write`, and give the same rows."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from harness.config import RunConfig, git_commit, package_versions
from harness.errors import FatalError, HarnessError, is_fatal
from harness.records import Sample
from harness.registry import BACKBONES
from harness.run.rows import answered_row, make_row
from harness.run.selector import Planned, Selector, by_video
from harness.scoring.summary import error_prediction, not_answered
from harness.store.runs import RunStore
from harness.util import lockfile
from harness.util.hashing import short_hash
from harness.util.paths import data_home
from harness.util.progress import progress_bar
from harness.video.framecache import SharedReader, sharing_summary
from harness.video.reader import VideoReader, decode_selection


FIRST_ANSWERS = 16  # answers whose parsing `_check_answers` watches at the start of a run


def command_lock(cfg: RunConfig, rank: int):
    """An exclusive lock on this command's runs (out folder and everything that decides results), held for the
    process's life; a second run of the same command is refused in one line."""
    fast = {"workers", "gpu_decoders", "nvdec_processes", "batch_size", "frame_cache_mb", "retry_errors",
            "gpus_per_replica", "device"}  # speed
    command = {k: v for k, v in cfg.to_json().items() if k not in fast}
    key = short_hash({**command, "out": str(Path(cfg.out).resolve())}, 16)
    path = data_home() / "locks" / f"{key}.rank-{rank}.lock"  # not in --out, which holds run directories only
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return lockfile.take(path)
    except BlockingIOError:
        raise HarnessError(f"another harness run of this command is running (lock {path})") from None


def video_checks(rows: list[dict]) -> dict:
    """How many videos (and rows) the decoder found longer or shorter than their annotations say."""
    videos = sorted({r["video"] for r in rows if r.get("video_check")})
    return {"videos": len(videos), "rows": sum(1 for r in rows if r.get("video_check")),
            "first": [Path(v).name for v in videos[:3]]}


def check_scales(name: str, backbone, samplers) -> None:
    """A multi-resolution sampler (a scale per frame) needs a backbone that takes scales; `none` answers nothing
    and takes any selection. One line, before the run."""
    multi = [s.name for s in samplers if s.multi_resolution]
    if multi and getattr(backbone, "answers", True) and not getattr(backbone, "takes_scales", False):
        raise HarnessError(f"backbone {name!r} does not take per-frame scales, which sampler {multi[0]!r} gives "
                           f"(multi-resolution): use qwen2.5-vl, mini-qwen2.5-vl or --backbone none")


class Run(Selector):
    """One `harness run` command: one task and backbone, one run store per sampler."""

    def __init__(self, cfg: RunConfig, debug: bool = False, progress: bool = True, backbone=None):
        if not cfg.samplers:
            raise HarnessError("at least one --sampler is needed")
        super().__init__(cfg, debug, progress)
        if backbone is None:  # refused before the model loads, where the registered class says it already
            factory = BACKBONES.get(cfg.backbone).factory
            if isinstance(factory, type):
                check_scales(cfg.backbone, factory, self.samplers)
        # before the model loads or videos are generated: a second run of the same command learns at once
        self._command_lock = command_lock(cfg, self.world.rank)
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
        check_scales(cfg.backbone, self.backbone, self.samplers)
        self.stores: list[RunStore] = []  # one per sampler, in the order of self.samplers
        self.prompts: dict[str, str] = {}  # sample id -> the exact prompt text
        self.pipeline_stats = {"wait": 0.0, "generate": 0.0, "batches": 0, "decode": 0.0, "prepare": 0.0}
        self.seconds, self.questions = 0.0, 0
        self.decode_counts: list[dict] = []  # per video opened: SharedReader.counts (decode passes, frames reused)
        self.opened_ahead: dict = {}  # video -> (reader, grid, grid frames or None): see `open`
        self.decode_setup = {"backend": cfg.decode_backend, "threads": self.decode_threads, "workers": cfg.workers,
                             "gpu_decoders": cfg.gpu_decoders, "nvdec_processes": cfg.nvdec_processes}
        self._answers_seen, self._unparsed, self._first_answer = 0, 0, None  # see _check_answers

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
                "versions": package_versions(), "git_commit": git_commit(),
                # which samples (harness baseline/regress compare a subset's samples only); not identity
                "subset": {"limit": self.cfg.limit, "stratify": self.task.stratify_key,
                           "available": self.n_available, "selected": len(samples)}}
        # the spec as typed (e.g. "aks:encoder=mini-clip,depth=3") labels tables; the identity holds the full config
        self.stores = [RunStore(Path(self.cfg.out), self.identity(s, self.n_available), {**base, "sampler_spec": spec},
                                rank=self.world.rank, world=self.world.size).open(self.cfg.retry_errors)
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
            self.release()
        return [st.dir for st in self.stores]

    def open(self, video: str):
        """The video's reader, keeping what the feature pass decodes for the answer pass (--frame-cache-mb). The
        pipelined executor may have opened it ahead (`opened_ahead`: reader, grid, and a callable giving the grid's
        frames a worker decoded meanwhile, or None where it failed: the feature pass then decodes, as it would)."""
        ahead = self.opened_ahead.pop(video, None)
        reader, grid = ahead[:2] if ahead else super().open(video)
        shared = SharedReader(reader, self.cfg.frame_cache_mb << 20)
        self.decode_counts.append(shared.counts)
        frames = ahead[2]() if ahead and ahead[2] is not None else None
        if frames is not None:
            shared.seed(grid.indices, frames)
        return shared, grid

    def release(self) -> None:
        """Let another run of this command start (execute() ends with this; a Run never executed may call it)."""
        if self._command_lock is not None:
            self._command_lock.close()
            self._command_lock = None

    def _finish(self) -> None:
        """Every rank's counts into its event log; rank 0 merges the ranks' rows and writes the metrics."""
        features = dict(sorted(self.inputs.stats.items()))
        rank = {"rank": self.world.rank} if self.world.size > 1 else {}
        decode = {**self.decode_setup, **sharing_summary(self.decode_counts, self.cfg.frame_cache_mb << 20)}
        for store in self.stores:
            store.event("features", **features, questions=self.questions, seconds=self.seconds, decode=decode,
                        **rank)
        self.world.barrier()  # every rank's rows are written
        if self.world.is_main:
            for store in self.stores:
                store.merge()
                rows = store.rows()
                store.write_metrics({"task": self.task.name, "scorer": self.task.parser,
                                     "metrics": self.task.metrics(rows), "video_checks": video_checks(rows)})
            checks = video_checks(rows)  # the same videos for every sampler: the last store's rows say it
            if checks["videos"]:
                print(f"harness: {checks['videos']} videos are not as long as their annotations say (first: "
                      f"{checks['first']}); their rows carry video_check, and metrics.json counts them",
                      file=sys.stderr)

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
                                  error_prediction(message), video_check=item.video_check,
                                  cost=item.cost or None, task=self.task))

    def write_answer(self, item: Planned, answer, timings: dict, visual_tokens: int | None) -> None:
        cost = {**item.cost, "backbone_passes": item.cost.get("backbone_passes", 0) + 1}  # + the answer
        row = answered_row(self.task, item.sample, self.prompts[item.sample.id], item.selection, answer, timings,
                           visual_tokens, self.describe, item.video_check, cost)
        self._check_answers(row)
        self.write(item, row)

    def _check_answers(self, row: dict) -> None:
        """A backbone whose first answers all fail to parse is broken (corrupt weights, a wrong chat template), not
        hard to read: stop before it fills the run with wrong rows. Probes and random-weight models, whose answers
        are not meant to parse, say so (`Backbone.checks_answers`)."""
        status = row["prediction"]["parse_status"]
        if not self.backbone.checks_answers or status not in ("ok", "parse_failed") or \
                self._answers_seen >= FIRST_ANSWERS:
            return
        self._answers_seen += 1
        self._unparsed += status == "parse_failed"
        self._first_answer = self._first_answer or row["prediction"]["raw_text"]
        if self._answers_seen == FIRST_ANSWERS and self._unparsed == FIRST_ANSWERS:
            weights = self.backbone.config().get("weights") or self.backbone.config().get("model") or "?"
            raise FatalError(f"backbone {self.cfg.backbone!r} (weights {weights}) gave no answer with an option "
                             f"letter to its first {FIRST_ANSWERS} questions (first: {self._first_answer!r}): "
                             f"corrupt weights or a wrong prompt format?")

    def _run_sequential(self, todo: list[Sample], advance) -> None:
        """Video by video in this process: each selection decoded from the open reader and answered alone."""
        for _, group in by_video(todo):
            with self.planned(group, self.pending) as plan:
                self._decode_once(plan)
                for item in plan.items:
                    if item.selection is None:
                        self.write_error(item, item.error)
                    else:
                        self._answer(plan.reader, item)
            advance(len(group))

    def _decode_once(self, plan) -> None:
        """Where the feature pass kept nothing (features cached, or a selection off the grid), decode the union of
        the video's selections in one pass, kept for their answers; within --frame-cache-mb only."""
        if not self.backbone.answers or not isinstance(plan.reader, SharedReader) or not plan.selected:
            return
        union = np.unique(np.concatenate([np.asarray(i.selection.frame_indices, np.int64) for i in plan.selected]))
        meta = plan.reader.meta
        if plan.reader.kept(union) or union.size * meta.width * meta.height * 3 > plan.reader.max_bytes:
            return
        try:
            plan.reader.get_frames(union)
        except Exception as e:  # each question then meets the fault in its own decode and gets its own error row
            if is_fatal(e):
                raise

    def _answer(self, reader: VideoReader, item: Planned) -> None:
        timings = dict(item.timings)
        if not self.backbone.answers:  # --backbone none: the selection is the result
            self.write(item, make_row(item.sample, self.prompts[item.sample.id], item.selection,
                                      not_answered(timings), video_check=item.video_check, cost=item.cost,
                                      task=self.task))
            return
        try:
            t = time.perf_counter()
            frames = decode_selection(reader, item.selection.frame_indices)
            timings["decode"] = time.perf_counter() - t
            t = time.perf_counter()
            selection, prompt = item.selection, self.prompts[item.sample.id]
            if selection.scales is None:
                text = self.backbone.generate(frames, selection.timestamps, prompt)
            else:  # a multi-resolution selection: each frame at its own scale
                text = self.backbone.generate_scaled(frames, selection.timestamps, selection.scales, prompt)
            timings["generate"] = time.perf_counter() - t
        except Exception as e:
            self.write_error(item, self.describe(e))
            return
        tokens = self.backbone.last_visual_tokens
        self.write_answer(item, text, timings, tokens[0] if tokens and len(tokens) == 1 else None)
