"""`harness run`: task samples -> candidate grid -> sampler -> frames -> backbone -> scored row in the run store."""
from __future__ import annotations

import hashlib
import os
import sys
import time
import traceback
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness import distributed
from harness.config import RunConfig, git_commit, package_versions, parse_spec
from harness.errors import HarnessError
from harness.grid import make_grid, parse_grid_rule
from harness.hashing import short_hash
from harness.inputs import InputProvider, wants
from harness.pipeline import DecodeJob, Prefetcher, WorkError, decode_job
from harness.progress import progress_bar
from harness.records import CandidateGrid, Sample
from harness.registry import BACKBONES, SAMPLERS, TASKS
from harness.scoring import error_prediction, evidence_recall, not_answered
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
            needed = getattr(sampler, "grid", None)
            if needed and parse_grid_rule(needed) != self.grid_rule:
                raise HarnessError(f"sampler {sampler.name!r} needs --grid {needed} (this run has {self.grid_rule})")
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
            if hasattr(sampler, "join"):
                report = sampler.join(samples)
                if report.unmatched_samples and self.world.is_main:
                    print(f"harness: sampler {sampler.name}: {report.summary()}", file=sys.stderr)
        return samples

    def _load_samples(self) -> list[Sample]:
        if hasattr(self.task, "check_videos"):
            samples = self.task.check_videos(
                stratified_subset(self.task.load_samples(), self.cfg.limit, self.task.stratify_key))
        else:
            samples = stratified_subset(self.task.samples(), self.cfg.limit, self.task.stratify_key)
        return samples

    def my_share(self, samples: list[Sample]) -> list[Sample]:
        """This rank's samples: whole videos, dealt round-robin (see harness.distributed)."""
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


@dataclass
class VideoPlan:
    """One video of a fast run: rows already decided (errors), questions to answer, and the decode job."""

    group: list
    rows: list = field(default_factory=list)  # (store, row)
    work: list = field(default_factory=list)  # (sample, store, selection, timings)
    selections: tuple = ()  # distinct selections (native frame indices) of `work`
    union: tuple | None = None  # every frame they need, ascending
    preparer: object = None  # the backbone's preprocessing for them, if it offers one
    decode_seconds: float = 0.0  # worker time spent decoding them (summed over the parallel runs)


def _split(frames: tuple, parts: int, smallest: int = 8) -> list[tuple]:
    """Up to `parts` runs of consecutive frames (at least `smallest` each), for parallel decoding."""
    parts = max(1, min(parts, len(frames) // smallest))
    bounds = np.linspace(0, len(frames), parts + 1).round().astype(int)
    return [tuple(frames[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


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

    def identity(self, sampler) -> dict:
        """What decides the results, and so the run directory. The decode backend and device do not."""
        return {
            "task": {"name": self.task.name, "config": self.task.config()},
            "backbone": {"name": self.cfg.backbone, "config": self.backbone.config()},
            "sampler": {"name": sampler.name, "config": sampler.config(), "config_hash": sampler.config_hash},
            "frames": self.cfg.frames, "grid": self.grid_rule, "short_grid": self.cfg.short_grid,
            "limit": self.cfg.limit, "dtype": self.cfg.dtype,
        }

    def execute(self) -> list[Path]:
        samples = self.samples()
        prompts = {s.id: self.task.prompt(s, self.backbone.prompt_style) for s in samples}
        prompt_hash = short_hash([prompts[s.id] for s in samples], 16)
        base = {"run": self.cfg.to_json(), "grid": self.grid_rule, "prompt_style": self.backbone.prompt_style,
                "prompts_sha256": prompt_hash, "n_samples": len(samples), "versions": package_versions(),
                "git_commit": git_commit()}
        # the spec as typed (e.g. "aks:encoder=mini-clip,depth=3") labels tables; the identity holds the full config
        stores = [RunStore(Path(self.cfg.out), self.identity(s), {**base, "sampler_spec": spec},
                           rank=self.world.rank, world=self.world.size).open()
                  for s, spec in zip(self.samplers, self.cfg.samplers)]
        try:
            todo = [s for s in samples if any(not st.is_done(s.id) for st in stores)]
            self.world.barrier()  # every rank has read what is done before any rank writes: one sharding for all
            todo = self.my_share(todo)
            t0 = time.perf_counter()
            with progress_bar(self.progress, "run", len(todo)) as advance:
                if self.fast and getattr(self.backbone, "answers", True):
                    self._run_fast(todo, prompts, stores, advance)
                else:
                    for video, group in by_video(todo):
                        self._run_video(group, prompts, stores, advance)
            self.seconds, self.questions = time.perf_counter() - t0, len(todo)
            features = dict(sorted(self.inputs.stats.items()))
            for store in stores:
                store.event("features", **features, questions=self.questions, seconds=self.seconds,
                            **({"rank": self.world.rank} if self.world.size > 1 else {}))
            self.world.barrier()  # every rank's rows are written
            if self.world.is_main:
                for store in stores:
                    store.merge()
                    store.write_metrics({"task": self.task.name, "scorer": getattr(self.task, "parser", "strict"),
                                         "metrics": self.task.metrics(store.rows())})
        finally:
            for store in stores:
                store.close()
        return [st.dir for st in stores]

    @property
    def fast(self) -> bool:
        """Workers decode ahead and/or questions are batched (`--workers`, `--batch-size`): `_run_fast`."""
        return self.cfg.workers > 0 or self.cfg.batch_size > 1

    def _plan(self, group: list[Sample], prompts: dict, stores: list[RunStore]) -> "VideoPlan":
        """In this process: open the video, compute missing features (one decode pass), select every (sample,
        sampler) still to do. What the workers then decode is the union of the selections."""
        plan = VideoPlan(group)
        pending = [(s, sp, st) for s in group for sp, st in zip(self.samplers, stores) if not st.is_done(s.id)]
        try:
            t0 = time.perf_counter()
            reader, grid = self.open(group[0].video)
            opened = time.perf_counter() - t0
        except Exception as e:  # the video is unusable: one error row per sampler, the run goes on
            plan.rows += [(st, self._row(s, prompts[s.id], None, error_prediction(self.describe(e))))
                          for s, _, st in pending]
            return plan
        with reader:
            failed, prepared = self.prepare(group, grid, reader)
            for sample, sampler, store in pending:
                if failed:
                    plan.rows.append((store, self._row(sample, prompts[sample.id], None, error_prediction(failed))))
                    continue
                try:
                    t = time.perf_counter()
                    selection = self.select(sampler, sample, grid, reader)
                    timings = {"open": opened, "features": prepared, "select": time.perf_counter() - t}
                    plan.work.append((sample, store, selection, timings))
                except Exception as e:
                    plan.rows.append((store, self._row(sample, prompts[sample.id], None,
                                                       error_prediction(self.describe(e)))))
        keys = dict.fromkeys(tuple(int(i) for i in sel.frame_indices) for _, _, sel, _ in plan.work)
        if keys:
            plan.selections = tuple(keys)
            plan.union = tuple(np.unique(np.concatenate([np.asarray(k, np.int64) for k in keys])).tolist())
            # made here, in the main thread: learning the processor's settings touches the backbone
            plan.preparer = self._preparer(frozenset(len(k) for k in keys))
        return plan

    def _preparer(self, frame_counts: frozenset):
        """The backbone's worker-side preprocessing for selections of these sizes (None: workers hand over frames)."""
        hook = getattr(self.backbone, "frame_preparer", None)
        if not callable(hook):
            return None
        cache = self.__dict__.setdefault("_preparers", {})
        if frame_counts not in cache:
            cache[frame_counts] = hook(sorted(frame_counts))
        return cache[frame_counts]

    def _run_fast(self, todo: list[Sample], prompts: dict, stores: list[RunStore], advance) -> None:
        """Videos planned here, decoded `--workers` processes ahead, questions answered in batches of up to
        `--batch-size` (those sharing the same frames together, so their frames are decoded and preprocessed once).
        Rows are appended per sample as each batch finishes; resume and error rows work as in `_run_video`."""
        try:  # Qwen2.5-VL's hooks live beside its adapter until the adapter defines them itself
            from backbones.qwen2_5_vl_fast import attach
            attach(self.backbone)
        except ImportError:
            pass
        # answer-preserving speed-ups a backbone offers for batched work (Qwen2.5-VL: shared vision, grouped attention)
        accelerate = getattr(self.backbone, "accelerate", None)
        undo = accelerate() if callable(accelerate) else None
        try:
            self._run_pipeline(todo, prompts, stores, advance)
        finally:
            if callable(undo):
                undo()

    def _run_pipeline(self, todo: list[Sample], prompts: dict, stores: list[RunStore], advance) -> None:
        """Each video's frames are split into up to `workers` runs of consecutive frames, decoded in parallel (so
        the first video is ready after a fraction of its decode time, and workers stay evenly loaded); a thread here
        preprocesses the next video (the backbone's `frame_preparer`) while the backbone answers this one."""
        workers = max(0, self.cfg.workers)
        threads = max(1, (os.cpu_count() or 1) // max(workers, 1))
        self.pipeline_stats = stats = {"wait": 0.0, "generate": 0.0, "batches": 0, "decode": 0.0, "prepare": 0.0}

        def items():
            for _, group in by_video(todo):
                plan = self._plan(group, prompts, stores)
                chunks = _split(plan.union, max(1, workers)) if plan.union else [None]
                for i, chunk in enumerate(chunks):
                    job = None if chunk is None else DecodeJob(group[0].video, self.cfg.decode_backend, (chunk,))
                    yield plan, job, i == len(chunks) - 1

        def assembled(pool):
            parts = []
            for (plan, job, last), result in pool.map(items(), job=lambda item: item[1]):
                parts.append((job, result))
                if last:
                    yield plan, self._assemble(plan, parts)
                    parts = []

        with Prefetcher(decode_job, workers=workers, depth=max(2, 2 * workers),
                        threads_per_worker=threads) as pool, ThreadPoolExecutor(1) as prep:
            videos, pending = assembled(pool), None
            while True:
                t = time.perf_counter()
                try:
                    plan, decoded = next(videos)
                except StopIteration:
                    break
                stats["wait"] += time.perf_counter() - t  # planning + waiting for the workers
                if isinstance(decoded, dict):
                    stats["decode"] += decoded["decode"]
                    plan.decode_seconds = decoded["decode"]
                ready = prep.submit(self._prepare_frames, plan, decoded)
                if pending is not None:
                    self._finish_plan(*pending, prompts, advance)
                pending = (plan, ready)
            if pending is not None:
                self._finish_plan(*pending, prompts, advance)

    def _assemble(self, plan: "VideoPlan", parts: list):
        """The frames of each selection from the decoded runs (or the first WorkError)."""
        if plan.union is None:
            return None
        for _, result in parts:
            if isinstance(result, WorkError):
                return result
        union = np.concatenate([result["frames"][job.selections[0]] for job, result in parts])
        index = np.asarray(plan.union, np.int64)
        frames = {sel: union[np.searchsorted(index, np.asarray(sel, np.int64))] for sel in plan.selections}
        return {"frames": frames, "decode": sum(result["decode"] for _, result in parts)}

    def _prepare_frames(self, plan: "VideoPlan", decoded):
        """Runs in the preprocessing thread: the backbone-ready object for each selection (its stand-in for frames
        preprocessed here, or the frames themselves); a WorkError when anything fails."""
        if not isinstance(decoded, dict):
            return decoded
        try:
            t = time.perf_counter()
            frames = dict(decoded["frames"])
            if plan.preparer is not None:
                adopt = self.backbone.prepared_frames
                frames = {sel: adopt(plan.preparer(f)) for sel, f in frames.items()}
            self.pipeline_stats["prepare"] += time.perf_counter() - t
            return frames
        except Exception as e:
            return WorkError(self.describe(e), type(e).__name__)

    def _finish_plan(self, plan: "VideoPlan", ready, prompts: dict, advance) -> None:
        for store, row in plan.rows:
            store.append(row)
        if plan.work:
            frames = ready.result()
            if isinstance(frames, WorkError):
                for sample, store, selection, _ in plan.work:
                    store.append(self._row(sample, prompts[sample.id], selection, error_prediction(frames.message)))
            else:
                self._answer_batches(plan.work, frames, prompts, plan.decode_seconds)
        for _ in plan.group:
            advance()

    def _answer_batches(self, work: list, frames: dict, prompts: dict, decode_seconds: float = 0.0) -> None:
        """Batches of up to batch_size questions of one video, those sharing frames adjacent; each selection's
        frames are one array object (the backbone may preprocess it once for all its questions)."""
        groups: dict[tuple, list] = {}
        for item in work:
            groups.setdefault(tuple(int(i) for i in item[2].frame_indices), []).append(item)
        ordered = [item for items in groups.values() for item in items]
        size = max(1, self.cfg.batch_size)
        for start in range(0, len(ordered), size):
            batch = ordered[start:start + size]
            requests = [(frames[tuple(int(i) for i in sel.frame_indices)], sel.timestamps,
                         prompts[sample.id]) for sample, _, sel, _ in batch]
            t = time.perf_counter()
            try:
                texts: list = list(self._generate_batch(requests))
            except Exception:  # one bad question must not fail its batch-mates: answer them one by one
                texts = []
                for request in requests:
                    try:
                        texts.append(self.backbone.generate(*request))
                    except Exception as e:
                        texts.append(e)
            seconds = time.perf_counter() - t
            stats = self.__dict__.get("pipeline_stats")
            if stats is not None:
                stats["generate"] += seconds
                stats["batches"] += 1
            tokens = getattr(self.backbone, "last_visual_tokens", None)
            tokens = tokens if tokens is not None and len(tokens) == len(batch) else [None] * len(batch)
            for (sample, store, selection, timings), text, n in zip(batch, texts, tokens):
                timings = {**timings, "decode": decode_seconds, "generate": seconds, "batch": len(batch)}
                store.append(self._finish(sample, prompts[sample.id], selection, text, timings, n))

    def _generate_batch(self, requests: list) -> list[str]:
        batch = getattr(self.backbone, "generate_batch", None)
        if batch is None:  # a backbone written before generate_batch existed
            return [self.backbone.generate(*r) for r in requests]
        texts = batch(requests)
        if len(texts) != len(requests):
            raise HarnessError(f"backbone {self.cfg.backbone!r} returned {len(texts)} answers for "
                               f"{len(requests)} questions")
        return texts

    def _finish(self, sample, prompt, selection, text, timings: dict, visual_tokens: int | None = None) -> dict:
        """The row of an answered (or failed) question, as `_answer` writes it."""
        parsers = None
        try:
            if isinstance(text, Exception):
                raise text
            prediction = self.task.score(sample, text)
            prediction = type(prediction)(**{**prediction.to_json(), "timings": timings})
            if hasattr(self.task, "parse_all"):
                parsers = self.task.parse_all(sample, text)
        except Exception as e:
            prediction = error_prediction(self.describe(e))
        row = self._row(sample, prompt, selection, prediction)
        if parsers is not None:
            row["parsers"] = parsers
        if visual_tokens is not None:
            row["visual_tokens"] = int(visual_tokens)
        return row

    def _run_video(self, group: list[Sample], prompts: dict, stores: list[RunStore], advance) -> None:
        pending = {s.id: [(sp, st) for sp, st in zip(self.samplers, stores) if not st.is_done(s.id)] for s in group}
        try:
            t0 = time.perf_counter()
            reader, grid = self.open(group[0].video)
            opened = time.perf_counter() - t0
        except Exception as e:  # the video is unusable: one error row per sampler, the run goes on
            for sample in group:
                for _, store in pending[sample.id]:
                    store.append(self._row(sample, prompts[sample.id], None, error_prediction(self.describe(e))))
                advance()
            return
        with reader:
            failed, prepared = self.prepare(group, grid, reader)
            for sample in group:
                for sampler, store in pending[sample.id]:
                    if failed:
                        store.append(self._row(sample, prompts[sample.id], None, error_prediction(failed)))
                        continue
                    store.append(self._answer(sample, prompts[sample.id], reader, grid, sampler,
                                              {"open": opened, "features": prepared}))
                advance()

    def _answer(self, sample, prompt, reader, grid, sampler, timings: dict) -> dict:
        selection, timings = None, dict(timings)
        try:
            t = time.perf_counter()
            selection = self.select(sampler, sample, grid, reader)
            timings["select"] = time.perf_counter() - t
            if not getattr(self.backbone, "answers", True):  # --backbone none: the selection is the result
                return self._row(sample, prompt, selection, not_answered(timings))
            t = time.perf_counter()
            frames = decode_selection(reader, selection.frame_indices)
            timings["decode"] = time.perf_counter() - t
            t = time.perf_counter()
            text = self.backbone.generate(frames, selection.timestamps, prompt)
            timings["generate"] = time.perf_counter() - t
        except Exception as e:
            return self._row(sample, prompt, selection, error_prediction(self.describe(e)))
        tokens = getattr(self.backbone, "last_visual_tokens", None)
        return self._finish(sample, prompt, selection, text, timings, tokens[0] if tokens and len(tokens) == 1 else None)

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

