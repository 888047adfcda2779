"""One video's frames decoded by several decoders at once: NVDEC instances and CPU decoders side by side (issue 20).

`Decoders(spec)` holds the decoders for many videos: NVDEC instances as threads of this process (CUDA stays here),
CPU backends (decord, pyav) as worker processes of one `Prefetcher` kept open across videos. On an H200, 8 PyAV
readers as threads of one process (beside 4 NVDEC threads, the backbone in the main thread) decoded ~120 stream
frames/s each, where the 5-minute bench's 8 worker processes of 2 threads decoded ~840 each (results/bench): threads
of one process take turns on the interpreter lock between packets. `processes=False` keeps CPU decoders in threads
too (tests, small machines).

`Decoders.decode(path, indices, device)` splits the ascending indices into chunks of consecutive positions; every
decoder takes the next chunk from one shared queue when it is free (a process holds one chunk at a time), so a fast
decoder takes more chunks than a slow one without a fixed split. A thread keeps its reader open for all its chunks
(they ascend, so it reads forward); a worker process opens the video per chunk (the PyAV index is a demux pass, no
decoding). Every chunk lands at its own positions in one (n, H, W, 3) uint8 tensor on `device`: NVDEC chunks stay
on the GPU, CPU chunks come through shared memory and are copied there.

The frames are the ones each reader returns for those indices, the same for every backend (nvdec is exact against
PyAV: tests/video/test_yuv.py and harness.bench.decode_check; decord and PyAV against a full decode:
tests/video/test_forward.py), so the split never changes a frame (tests/video/test_multidecode.py).
"""
from __future__ import annotations

import os
import queue
import threading
import time

import numpy as np

from harness.errors import HarnessError, VideoError

CHUNK = 32  # grid frames per chunk: small enough that the decoders finish together, large enough to read forward
IN_PROCESS = ("nvdec",)  # decoders holding GPU state: threads of this process, never worker processes


def parse_decoders(spec: str) -> list[str]:
    """`nvdec:4,pyav:8` -> ['nvdec'] * 4 + ['pyav'] * 8 (a name alone counts once)."""
    out = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, count = part.partition(":")
        try:
            n = int(count) if count else 1
        except ValueError:
            n = -1
        if n < 1:
            raise HarnessError(f"decoders {spec!r}: {part!r} must be NAME or NAME:COUNT with COUNT >= 1")
        out += [name] * n
    if not out:
        raise HarnessError(f"decoders {spec!r} names no decoder")
    return out


def check_mix(decoders: list[str]) -> None:
    """The worker processes share one CPU backend (a job does not choose its process)."""
    cpu = sorted({d for d in decoders if d not in IN_PROCESS})
    if len(cpu) > 1:
        raise HarnessError(f"decoders: one CPU backend for the worker processes, got {', '.join(cpu)}")


class Decoders:
    """Decoders for many videos; use as a context manager (the worker processes stop at exit)."""

    def __init__(self, decoders: list[str], processes: bool = True, chunk: int = CHUNK):
        self.chunk = chunk
        self.threads = [d for d in decoders if d in IN_PROCESS or not processes]
        cpu = [d for d in decoders if d not in self.threads]
        check_mix(cpu)
        self.cpu_backend, self.pool = (cpu[0] if cpu else None), None
        if cpu:
            from harness.video.prefetch import Prefetcher, decode_job

            self.cpu_threads = max(1, (os.cpu_count() or 1) // len(cpu))  # each process's share of the cores
            # depth = processes: each holds one chunk, so the threads take the rest as they free up
            self.pool = Prefetcher(decode_job, workers=len(cpu), depth=len(cpu), threads_per_worker=self.cpu_threads)
        self.names = list(decoders)
        self.stats = {"seconds": 0.0, "frames_by_backend": {}}

    def decode(self, path, indices, device="cpu"):
        """(n, H, W, 3) uint8 torch tensor on `device` of the frames at ascending `indices`, every decoder at once."""
        import torch

        from harness.video.reader import open_video

        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        with open_video(path, "pyav" if "nvdec" in self.names else self.names[0]) as probe:
            probe._check(idx)  # ascending and in range, before any decoder starts
            h, w = probe.meta.height, probe.meta.width
        out = torch.empty((idx.size, h, w, 3), dtype=torch.uint8, device=device)
        todo: queue.SimpleQueue = queue.SimpleQueue()
        for start in range(0, idx.size, self.chunk):
            todo.put(start)
        failures, counts, lock = [], {}, threading.Lock()

        def take():
            while not failures:
                try:
                    yield todo.get_nowait()
                except queue.Empty:
                    return

        def done(backend: str, start: int, frames) -> None:
            out[start:start + frames.shape[0]].copy_(frames)
            with lock:
                counts[backend] = counts.get(backend, 0) + int(frames.shape[0])

        def in_thread(backend: str) -> None:
            reader = None
            try:
                for start in take():
                    if reader is None:
                        reader = open_video(path, backend, threads=None if backend in IN_PROCESS else 1)
                    part = idx[start:start + self.chunk]
                    if hasattr(reader, "frames_on_device"):
                        frames = reader.frames_on_device(part)
                        if frames.device.type == "cuda":
                            torch.cuda.current_stream(frames.device).synchronize()
                    else:
                        frames = torch.from_numpy(reader.get_frames(part))
                    done(backend, start, frames)
            except BaseException as e:  # the first failure stops every decoder and is raised in the caller
                failures.append(e)
            finally:
                if reader is not None:
                    reader.close()

        def in_processes() -> None:
            from harness.video.prefetch import DecodeJob, WorkError

            def job(start):
                return DecodeJob(str(path), self.cpu_backend, (tuple(idx[start:start + self.chunk].tolist()),),
                                 threads=self.cpu_threads)
            try:
                for start, result in self.pool.map(take(), job=job):
                    if isinstance(result, WorkError):
                        raise VideoError(f"cannot decode {path} with {self.cpu_backend}: {result}")
                    [frames] = result["frames"].values()
                    done(self.cpu_backend, start, torch.from_numpy(frames))
            except BaseException as e:
                failures.append(e)

        t0 = time.perf_counter()
        workers = [threading.Thread(target=in_thread, args=(b,), name=f"decode-{b}-{i}")
                   for i, b in enumerate(self.threads)]
        if self.pool is not None:
            workers.append(threading.Thread(target=in_processes, name="decode-processes"))
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        if failures:
            raise failures[0]
        if out.device.type == "cuda":
            torch.cuda.current_stream(out.device).synchronize()
        self.stats["seconds"] += time.perf_counter() - t0
        for k, v in counts.items():
            self.stats["frames_by_backend"][k] = self.stats["frames_by_backend"].get(k, 0) + v
        return out

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None

    def __enter__(self) -> "Decoders":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
