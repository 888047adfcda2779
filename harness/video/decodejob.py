"""The decode jobs the worker processes run: `decode_job`, the runner's (open a video with the run's backend, decode
the union of the selections' frames once, return each selection's frames or what an optional `prepare` callable
makes of them; the runner splits a video's frames into runs of consecutive frames, one job each, so several workers
decode one video at once), and `worker_frames`, the reader a worker process keeps open across its jobs of one video
(also under the long job's `multidecode.chunk_job`)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from harness.errors import UnsupportedStream
from harness.video import prefetch


@dataclass(frozen=True)
class DecodeJob:
    """Decode `selections` (each a tuple of native frame indices) of one video; `prepare`, if given, is a picklable
    callable applied to each selection's frames in the worker (CPU only)."""

    video: str
    backend: str
    selections: tuple[tuple[int, ...], ...]
    prepare: Callable | None = None
    extra: dict = field(default_factory=dict)
    threads: int | None = None  # decoding threads of the worker's reader (the runner gives each worker its share)


def decode_job(job: DecodeJob) -> dict:
    """{"frames": {selection: frames or prepared}, "decode": s, "prepare": s, "backend": the one that decoded,
    "instead_of": the job's own backend where another decoded it, else None}:
    every distinct frame of the video's selections is decoded once, in one ascending pass. A GPU decoder's job
    made from a CPU backend's (`extra["cpu_backend"]`, `--gpu-decoders`) that meets a stream the GPU decoder does
    not take (UnsupportedStream: B-frames) is decoded by that CPU backend, the same frames, and says so; any other
    failure is the job's error."""
    t0 = time.perf_counter()
    union = np.unique(np.concatenate([np.asarray(s, np.int64) for s in job.selections])) if job.selections else \
        np.empty(0, np.int64)
    instead_of = None
    try:
        frames = _frames(job, union.tolist())
    except UnsupportedStream:
        if not job.extra.get("cpu_backend"):
            raise
        instead_of = job.backend
        job = replace(job, backend=job.extra["cpu_backend"], threads=job.extra.get("cpu_threads"), extra={})
        frames = _frames(job, union.tolist())
    decoded = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = {}
    for sel in job.selections:
        mine = frames[np.searchsorted(union, np.asarray(sel, np.int64))]
        out[sel] = job.prepare(mine) if job.prepare is not None else mine
    return {"frames": out, "decode": decoded, "prepare": time.perf_counter() - t0, "backend": job.backend,
            "instead_of": instead_of}


def _frames(job: DecodeJob, indices: list) -> np.ndarray:
    from harness.video.reader import open_video

    if prefetch.in_worker_process():  # a worker process: its reader stays open for its next job of this video
        return worker_frames(job, indices)
    with open_video(job.video, job.backend, threads=job.threads) as reader:
        return reader.get_frames(indices)


GPU_BACKENDS = ("nvdec",)  # decoders holding GPU state (a worker process opens them for its `extra["device"]`)
_OPEN: dict = {}  # this worker process's open reader: "key" (video, backend, threads, device, file stat), "reader"
_UNSUPPORTED: dict = {}  # reader keys a GPU decoder refused (UnsupportedStream), with the message
UNSUPPORTED_KEPT = 256  # the newest refusals remembered (a process's jobs come video by video: older ones are done)


def worker_frames(job: DecodeJob, indices: list) -> np.ndarray:
    """In a worker process: the frames at `indices` of the job's video, from a reader the process keeps open across
    the jobs it takes of one video, so the PyAV index pass over the file and, for NVDEC, the hardware decoder are
    made once per video and process, not per job (on the H100, NVDEC processes that opened a reader per 32-frame
    chunk of a 10-minute video decoded ~370 stream frames/s each; one reader kept open, 1,255). A reader takes jobs
    in any order (one behind the last read seeks back); a failed read closes it, so the next job opens afresh."""
    from harness.video.reader import open_video

    try:
        stat = os.stat(job.video)
        version = (stat.st_mtime_ns, stat.st_size)  # a file rewritten in place is a new video
    except OSError:
        version = None  # opening it below says what is wrong, in the readers' words
    key = (job.video, job.backend, job.threads, job.extra.get("device"), version)
    if _OPEN.get("key") != key:
        if key in _UNSUPPORTED:  # refused before: no index pass to learn it again (the open reader stays)
            raise UnsupportedStream(_UNSUPPORTED[key])
        close_worker_reader()
        if job.backend in GPU_BACKENDS:
            from harness.video.nvdec import NvdecReader

            try:
                reader = NvdecReader(job.video, device=job.extra.get("device"), in_worker=True)
            except UnsupportedStream as e:
                _UNSUPPORTED[key] = str(e)
                while len(_UNSUPPORTED) > UNSUPPORTED_KEPT:
                    del _UNSUPPORTED[next(iter(_UNSUPPORTED))]  # the oldest
                raise
        else:
            reader = open_video(job.video, job.backend, threads=job.threads)
        _OPEN.update(key=key, reader=reader)
    try:
        return _OPEN["reader"].get_frames(indices)
    except BaseException:
        close_worker_reader()  # its position is unknown after a failure
        raise


def close_worker_reader() -> None:
    reader = _OPEN.pop("reader", None)
    _OPEN.pop("key", None)
    if reader is not None:
        reader.close()


def warm_gpu(device: str | None) -> None:
    """A GPU decoder process's set-up before its first job (`Prefetcher.warm`): torch and PyNvVideoCodec imported
    and the CUDA context made on `device`, seconds that would otherwise hold up the first job it takes (and the
    video that job belongs to) while the CPU decoders could have taken it."""
    import importlib

    import torch

    importlib.import_module("PyNvVideoCodec")
    torch.empty(1, device=torch.device(device) if device else torch.device("cuda"))
