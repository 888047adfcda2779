"""Decode (and optionally preprocess) in worker processes that stay ahead of the accelerator.

`Prefetcher.map(items)` runs `fn(job)` for each item's job in a pool of worker processes, keeps at most `depth` jobs
in flight (so decoded frames never pile up in memory), and yields `(item, result)` in the order the items came. A job
that raises comes back as a `WorkError` for that item; a worker that dies is replaced and only its item fails.

Workers are started with `spawn` (or `forkserver`), never `fork`: the parent may hold CUDA state, which a forked
child must not inherit. Large arrays in a result travel through shared memory instead of the pool's pipe (a
64-frame 720p selection is 177 MB; pickling it through a pipe costs more than decoding it).

`decode_job` is the runner's job: open a video with the run's backend, decode the union of the selections' frames
once, and return each selection's frames (or what an optional `prepare` callable makes of them). The runner splits a
video's frames into runs of consecutive frames, one job each, so several workers decode one video at once.
"""
from __future__ import annotations

import multiprocessing
import os
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from harness.errors import HarnessError

SHARED_MIN_BYTES = 1 << 20  # arrays from 1 MiB up go through shared memory; small ones are simply pickled


@dataclass(frozen=True)
class WorkError:
    """A job that failed in a worker: the one-line message, and the exception type's name."""

    message: str
    kind: str = "Exception"

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class _Shared:
    name: str
    shape: tuple
    dtype: str


def _pack(obj, use_shared: bool):
    """Replace large ndarrays in a nested result (dict, list, tuple) by shared-memory handles."""
    if isinstance(obj, np.ndarray) and use_shared and obj.nbytes >= SHARED_MIN_BYTES:
        from multiprocessing import shared_memory

        shm = shared_memory.SharedMemory(create=True, size=obj.nbytes)
        np.ndarray(obj.shape, obj.dtype, buffer=shm.buf)[...] = obj
        handle = _Shared(shm.name, obj.shape, obj.dtype.str)
        shm.close()  # the block lives on until the parent unlinks it
        return handle
    if isinstance(obj, dict):
        return {k: _pack(v, use_shared) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_pack(v, use_shared) for v in obj)
    return obj


def _unpack(obj):
    if isinstance(obj, _Shared):
        from multiprocessing import shared_memory

        shm = shared_memory.SharedMemory(name=obj.name)
        try:
            return np.ndarray(obj.shape, np.dtype(obj.dtype), buffer=shm.buf).copy()
        finally:
            shm.close()
            shm.unlink()
    if isinstance(obj, dict):
        return {k: _unpack(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unpack(v) for v in obj)
    return obj


def _describe(e: BaseException) -> str:
    return str(e) if isinstance(e, HarnessError) else f"{type(e).__name__}: {' '.join(str(e).split())}"


def _call(fn, job, use_shared: bool):
    """Runs in the worker: the result (packed), or a WorkError; never raises."""
    try:
        return _pack(fn(job), use_shared)
    except Exception as e:
        return WorkError(_describe(e), type(e).__name__)


def _init_worker(threads: int | None) -> None:
    # workers x threads stays within the cores: each worker's torch/OpenCV use only their share
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        try:
            import torch

            torch.set_num_threads(threads)
        except ImportError:
            pass


class Prefetcher:
    """Ordered, bounded map of `fn` over jobs in worker processes (`workers=0`: in this process, for tests and
    debugging; the same results and WorkErrors)."""

    def __init__(self, fn: Callable[[Any], Any], workers: int = 2, depth: int | None = None,
                 start_method: str = "spawn", threads_per_worker: int | None = None):
        if workers < 0:
            raise HarnessError(f"workers must be at least 0, got {workers}")
        if start_method not in ("spawn", "forkserver"):
            raise HarnessError(f"start method {start_method!r}: use spawn or forkserver (fork would copy CUDA state)")
        self.fn, self.workers, self.start_method = fn, workers, start_method
        self.depth = max(1, depth if depth is not None else 2 * max(workers, 1))
        self.threads = threads_per_worker
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context(self.start_method),
                                             initializer=_init_worker, initargs=(self.threads,))
        return self._pool

    def map(self, items: Iterable, job: Callable[[Any], Any] = lambda item: item) -> Iterator[tuple[Any, Any]]:
        """(item, result or WorkError) in item order. `job(item)` gives what `fn` gets (None: nothing to do, the
        result is None); items are drawn lazily, `depth` ahead of the consumer, so planning the next items overlaps
        the work on earlier ones."""
        items = iter(items)
        if self.workers == 0:
            for item in items:
                work = job(item)
                yield item, None if work is None else _unpack(_call(self.fn, work, False))
            return
        pending: deque = deque()
        for item in items:
            work = job(item)
            pending.append((item, work, None if work is None else self._submit(work)))  # None: nothing to do
            while len(pending) >= self.depth:
                yield self._take(pending)
        while pending:
            yield self._take(pending)

    def _submit(self, job):
        return self._executor().submit(_call, self.fn, job, True)

    def _take(self, pending: deque):
        item, job, future = pending.popleft()
        if future is None:
            return item, None
        try:
            return item, _unpack(future.result())
        except BrokenProcessPool:
            # a worker died (killed, out of memory): this item fails, a fresh pool runs the rest
            self._restart(pending)
            return item, WorkError("a decode worker process died (killed or out of memory)", "BrokenProcessPool")

    def _restart(self, pending: deque) -> None:
        old, self._pool = self._pool, None
        if old is not None:
            old.shutdown(wait=False, cancel_futures=True)
        for i, (item, job, _) in enumerate(pending):
            pending[i] = (item, job, None if job is None else self._submit(job))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- the runner's job ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecodeJob:
    """Decode `selections` (each a tuple of native frame indices) of one video; `prepare`, if given, is a picklable
    callable applied to each selection's frames in the worker (CPU only)."""

    video: str
    backend: str
    selections: tuple[tuple[int, ...], ...]
    prepare: Callable | None = None
    extra: dict = field(default_factory=dict)


def decode_job(job: DecodeJob) -> dict:
    """{"frames": {selection: frames or prepared}, "decode": s, "prepare": s}: every distinct frame of the video's
    selections is decoded once, in one ascending pass."""
    from harness.video import open_video

    t0 = time.perf_counter()
    union = np.unique(np.concatenate([np.asarray(s, np.int64) for s in job.selections])) if job.selections else \
        np.empty(0, np.int64)
    with open_video(job.video, job.backend) as reader:
        frames = reader.get_frames(union.tolist())
    decoded = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = {}
    for sel in job.selections:
        mine = frames[np.searchsorted(union, np.asarray(sel, np.int64))]
        out[sel] = job.prepare(mine) if job.prepare is not None else mine
    return {"frames": out, "decode": decoded, "prepare": time.perf_counter() - t0}
