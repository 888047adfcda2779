"""The pipelined executor of `harness run` (`--workers N`, `--batch-size B`): videos are planned in this process,
their frames decoded by worker processes that stay ahead of the accelerator, preprocessed by a thread while the
backbone answers the previous video, and questions answered in batches (those sharing frames together, so their
frames are decoded and preprocessed once). Where a video's feature pass has features to compute, the workers also
decode its candidate grid ahead (while this process encodes and answers the video before) and the feature pass
takes those frames instead of decoding (`grids_decoded_ahead` in the decode record). Rows, resume and error rows
are those of the sequential executor."""
from __future__ import annotations

import dataclasses
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from harness.errors import HarnessError
from harness.records import Sample
from harness.features.inputs import wants
from harness.run.selector import Planned, Selector, VideoPlan, by_video
from harness.video.framecache import SharedReader
from harness.video.decodejob import DecodeJob, decode_job, warm_gpu
from harness.video.prefetch import Prefetcher, WorkError


@dataclass
class Decoding:
    """What the workers decode for one planned video: the union of its selections' frames."""

    plan: VideoPlan
    selections: tuple = ()  # distinct selections (native frame indices) of the plan's selected items
    union: tuple | None = None  # every frame they need, ascending
    preparer: object = None  # the backbone's worker-side preprocessing for them (None: raw frames)
    decode_seconds: float = 0.0  # worker time spent decoding them (summed over the parallel runs)
    kept: object = None  # the union's frames where the feature pass kept them all (no worker decodes this video)
    parts: list = field(default_factory=list)  # (job, result) of each run of frames


def frame_key(item: Planned) -> tuple[int, ...]:
    return tuple(int(i) for i in item.selection.frame_indices)


def split_runs(frames: tuple, parts: int, smallest: int = 8) -> list[tuple]:
    """Up to `parts` runs of consecutive frames (at least `smallest` each), for parallel decoding."""
    parts = max(1, min(parts, len(frames) // smallest))
    bounds = np.linspace(0, len(frames), parts + 1).round().astype(int)
    return [tuple(frames[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def to_nvdec(job: DecodeJob, device: str | None = None) -> DecodeJob:
    """A CPU backend's decode job as a GPU decoder takes it (--gpu-decoders): the same frames (docs/decode.md);
    `device`: the GPU a decoder process opens its reader on (threads use torch's current one). A video NVDEC does
    not take (B-frames) is decoded by the job's own backend (`decode_job`), counted in the run's decode record."""
    return dataclasses.replace(job, backend="nvdec", threads=None,
                               extra={**job.extra, "cpu_backend": job.backend, "cpu_threads": job.threads,
                                      **({"device": device} if device else {})})


def run_pipelined(run, todo: list[Sample], advance) -> None:
    """Each video's frames are split into up to `workers + gpu_decoders` runs of consecutive frames, decoded in
    parallel (so the first video is ready after a fraction of its decode time, and decoders stay evenly loaded)."""
    workers, gpu = max(0, run.cfg.workers), max(0, run.cfg.gpu_decoders)
    parts = max(1, workers + gpu)  # decoders taking one video's runs of frames at once
    threads = max(1, (os.cpu_count() or 1) // max(workers, 1))
    run.decode_setup["threads_per_worker"] = threads  # each worker's readers decode with its share of the cores
    # nvdec decoders hold GPU state: its workers are threads of this process, one decoder each (docs/decode.md),
    # unless --nvdec-processes puts them in processes of their own; --gpu-decoders adds such decoders beside the CPU
    # backend's worker processes
    nvdec, separate = run.cfg.decode_backend == "nvdec", run.cfg.nvdec_processes
    in_threads = nvdec and not separate
    run.decode_setup["workers_are"] = "threads" if in_threads else "processes"
    if gpu:
        run.decode_setup["gpu_decoders_are"] = "processes" if separate else "threads"
    device = str(run.device) if separate else None  # where decoder processes open their readers: this rank's GPU
    extra = {"device": device} if nvdec and separate else {}
    stats, preparers = run.pipeline_stats, {}

    def plan_video(group) -> Decoding:
        with run.planned(group, run.pending) as plan:
            decoding = Decoding(plan)
            keys = tuple(dict.fromkeys(frame_key(item) for item in plan.selected))
            if keys:
                decoding.union = tuple(np.unique(np.concatenate([np.asarray(k, np.int64) for k in keys])).tolist())
                reader = plan.reader
                if isinstance(reader, SharedReader) and reader.kept(decoding.union):  # the feature pass decoded them
                    decoding.kept = reader.get_frames(decoding.union)
                elif isinstance(reader, SharedReader):  # the workers decode it, in one or more runs of frames
                    reader.counts["passes"] += len(split_runs(decoding.union, parts))
                    reader.counts["frames_decoded"] += len(decoding.union)
        if keys:
            decoding.selections = keys
            # made here, in the main thread: learning the processor's settings touches the backbone
            counts = frozenset(len(k) for k in keys)
            if counts not in preparers:
                preparers[counts] = run.backbone.frame_preparer(sorted(counts))
            # multi-resolution selections go to generate_scaled as raw frames: no preparer for their video
            scaled = any(item.selection.scales is not None for item in plan.selected)
            decoding.preparer = None if scaled else preparers[counts]
        return decoding

    groups = by_video(todo)
    # the worker processes decode the next video's grid while this process encodes and answers the one before,
    # where its feature pass would decode it and it fits the frame cache (so those frames would be kept anyway)
    ahead = workers > 0 and not nvdec and not gpu and run.cfg.frame_cache_mb > 0
    grid_jobs = {"taken": 0, "decoded": 0}  # grid jobs the workers finished, and grids they decoded

    def decode_grid_ahead(i: int) -> None:
        if not ahead or i >= len(groups) or groups[i][0] in run.opened_ahead:
            return
        video, group = groups[i]
        if not any(run.pending(s) for s in group):
            return
        try:
            reader, grid = Selector.open(run, video)  # the plain reader: Run.open wraps it when it is planned
        except Exception:
            return  # planning opens it again and records why it cannot
        run.opened_ahead[video] = (reader, grid, None)
        meta = reader.meta
        if len(grid) * meta.height * meta.width * 3 > run.cfg.frame_cache_mb << 20:
            return
        try:
            if not run.inputs.decodes(wants(run.samplers), run.task, group, grid):
                return
        except Exception:
            return  # the feature pass meets it again, in its own terms (an error row, or a stop)
        sel = tuple(int(k) for k in grid.indices)
        future = pool.submit(DecodeJob(video, run.cfg.decode_backend, (sel,), threads=threads))
        run.opened_ahead[video] = (reader, grid, partial(_decoded_ahead, pool, future, sel, grid_jobs))

    def jobs():
        for i, (_, group) in enumerate(groups):
            decode_grid_ahead(i)
            decode_grid_ahead(i + 1)
            decoding = plan_video(group)
            chunks = split_runs(decoding.union, parts) if decoding.union and decoding.kept is None \
                else [None]
            for i, chunk in enumerate(chunks):
                job = None if chunk is None else DecodeJob(decoding.plan.video, run.cfg.decode_backend, (chunk,),
                                                           threads=threads, extra=extra)
                yield decoding, job, i == len(chunks) - 1

    on_cpu = []  # GPU decoders' jobs their CPU backend decoded (videos with B-frames)

    def decoded(pool):
        for (decoding, job, last), result in pool.map(jobs(), job=lambda item: item[1]):
            decoding.parts.append((job, result))
            if isinstance(result, dict) and result.get("instead_of"):
                on_cpu.append(job.video)
            if last:
                yield decoding, assemble(decoding)

    pool = Prefetcher(decode_job, workers=workers, depth=max(2, 2 * parts), threads_per_worker=threads,
                      in_threads=in_threads, helpers=gpu, helper_processes=separate,
                      helper_job=partial(to_nvdec, device=device) if gpu else None)
    with pool, ThreadPoolExecutor(1) as prep, _closing_ahead(run):
        for side, on_gpu in (("helpers", gpu and separate), ("workers", nvdec and separate)):
            if on_gpu:  # GPU decoder processes make their CUDA context while the first video is planned
                pool.warm(side, partial(warm_gpu, device))
        videos, pending = decoded(pool), None
        while True:
            t = time.perf_counter()
            try:
                decoding, frames = next(videos)
            except StopIteration:
                break
            stats["wait"] += time.perf_counter() - t  # planning + waiting for the workers
            if isinstance(frames, dict):
                stats["decode"] += frames["decode"]
                decoding.decode_seconds = frames["decode"]
            ready = prep.submit(prepare, run, decoding, frames)
            if pending is not None:
                finish(run, *pending, advance)
            pending = (decoding, ready)
        if pending is not None:
            finish(run, *pending, advance)
        # the answer pass's jobs (the grids decoded ahead were taken from the same workers)
        by_backend = {run.cfg.decode_backend: pool.taken["workers"] - grid_jobs["taken"]}
        if gpu:
            by_backend["nvdec"] = pool.taken["helpers"]
        run.decode_setup["jobs_by_backend"] = by_backend  # the answer pass's decode jobs each side decoded
        if ahead:
            run.decode_setup["grids_decoded_ahead"] = grid_jobs["decoded"]  # feature passes that decoded nothing
        if gpu:  # of the NVDEC decoders' jobs, those of videos with B-frames their CPU backend decoded instead
            run.decode_setup["nvdec_jobs_on_cpu"] = {"jobs": len(on_cpu), "videos": len(set(on_cpu)),
                                                     "why": "B-frames (nvdec takes streams without them)"}


def _decoded_ahead(pool, future, sel: tuple, counts: dict):
    """A grid a worker decoded ahead (None where that failed: the feature pass decodes it, and meets the error, if
    any, as it would have)."""
    before = pool.taken["workers"]
    result = pool.collect(future)
    counts["taken"] += pool.taken["workers"] - before  # as the pool counts it (a dead worker gave nothing back)
    if isinstance(result, WorkError):
        return None
    counts["decoded"] += 1
    return result["frames"][sel]


@contextmanager
def _closing_ahead(run):
    """Readers opened ahead and never planned (the run stopped early) are closed with the executor."""
    try:
        yield
    finally:
        for reader, _, _ in run.opened_ahead.values():
            reader.close()
        run.opened_ahead.clear()


def assemble(decoding: Decoding):
    """The frames of each selection from the decoded runs (or the first WorkError)."""
    if decoding.union is None:
        return None
    index = np.asarray(decoding.union, np.int64)
    if decoding.kept is not None:
        return {"frames": {sel: decoding.kept[np.searchsorted(index, np.asarray(sel, np.int64))]
                           for sel in decoding.selections}, "decode": 0.0}
    for _, result in decoding.parts:
        if isinstance(result, WorkError):
            return result
    union = np.concatenate([result["frames"][job.selections[0]] for job, result in decoding.parts])
    frames = {sel: union[np.searchsorted(index, np.asarray(sel, np.int64))] for sel in decoding.selections}
    return {"frames": frames, "decode": sum(result["decode"] for _, result in decoding.parts)}


def prepare(run, decoding: Decoding, decoded):
    """Runs in the preprocessing thread: the backbone-ready object for each selection (its stand-in for frames
    preprocessed here, or the frames themselves); a WorkError when anything fails."""
    if not isinstance(decoded, dict):
        return decoded
    try:
        t = time.perf_counter()
        frames = dict(decoded["frames"])
        if decoding.preparer is not None:
            frames = {sel: run.backbone.prepared_frames(decoding.preparer(f)) for sel, f in frames.items()}
        run.pipeline_stats["prepare"] += time.perf_counter() - t
        return frames
    except Exception as e:
        return WorkError(run.describe(e), type(e).__name__)


def finish(run, decoding: Decoding, ready, advance) -> None:
    plan = decoding.plan
    for item in plan.failed:
        run.write_error(item, item.error)
    if plan.selected:
        frames = ready.result()
        if isinstance(frames, WorkError):
            for item in plan.selected:
                run.write_error(item, frames.message)
        else:
            answer_batches(run, plan.selected, frames, decoding.decode_seconds)
    advance(len(plan.group))


def answer_batches(run, work: list[Planned], frames: dict, decode_seconds: float) -> None:
    """Batches of up to batch_size questions of one video, those sharing frames adjacent; each selection's frames
    are one array object (the backbone may preprocess it once for all its questions)."""
    groups: dict[tuple, list[Planned]] = {}
    for item in work:  # multi-resolution selections (a scale per frame) batch apart, through generate_scaled
        groups.setdefault((item.selection.scales is not None, frame_key(item)), []).append(item)
    size = max(1, run.cfg.batch_size)
    batches = []
    for scaled in (False, True):
        ordered = [item for (s, _), items in groups.items() if s == scaled for item in items]
        batches += [ordered[start:start + size] for start in range(0, len(ordered), size)]
    for batch in batches:
        scaled = batch[0].selection.scales is not None
        requests = [(frames[frame_key(item)], item.selection.timestamps,
                     *((item.selection.scales,) if scaled else ()), run.prompts[item.sample.id]) for item in batch]
        t = time.perf_counter()
        try:
            texts: list = generate_batch(run, requests, scaled)
        except Exception:  # one bad question must not fail its batch-mates: answer them one by one
            one = run.backbone.generate_scaled if scaled else run.backbone.generate
            texts = []
            for request in requests:
                try:
                    texts.append(one(*request))
                except Exception as e:
                    texts.append(e)
        seconds = time.perf_counter() - t
        run.pipeline_stats["generate"] += seconds
        run.pipeline_stats["batches"] += 1
        tokens = run.backbone.last_visual_tokens
        tokens = tokens if tokens is not None and len(tokens) == len(batch) else [None] * len(batch)
        for item, text, n in zip(batch, texts, tokens):
            timings = {**item.timings, "decode": decode_seconds, "generate": seconds, "batch": len(batch)}
            run.write_answer(item, text, timings, n)


def generate_batch(run, requests: list, scaled: bool = False) -> list:
    batched = run.backbone.generate_scaled_batch if scaled else run.backbone.generate_batch
    texts = list(batched(requests))
    if len(texts) != len(requests):
        raise HarnessError(f"backbone {run.cfg.backbone!r} returned {len(texts)} answers for "
                           f"{len(requests)} questions")
    return texts
