"""One video's frames decoded by several decoders at once: NVDEC instances and CPU decoders side by side (issue 20).

`Decoders(spec)` holds the decoders for many videos: NVDEC instances as threads of this process (CUDA stays here)
or, with `gpu_processes=True`, as worker processes of their own (each its CUDA context; frames come back through
host shared memory: on the H100 the 4 NVDEC threads beside 12 PyAV processes slowed this process's CLIP pass from
2,132 to 942 frames/s, a sign that PyNvVideoCodec's calls hold the interpreter lock); CPU backends (decord, pyav)
as worker processes, one `Prefetcher` per backend kept open across videos. On an H200, 8 PyAV readers as threads of
one process (beside 4 NVDEC threads, the backbone in the main thread) decoded ~120 stream frames/s each, where the
5-minute bench's 8 worker processes of 2 threads decoded ~840 each (results/bench): threads of one process take
turns on the interpreter lock between packets. `processes=False` keeps every decoder in a thread (tests, small
machines).

`Decoders.stream(items, device, ahead)` decodes a sequence of videos, `ahead` of them at once: each video's ascending
indices are split into chunks of consecutive positions, and every decoder takes the next chunk from one shared queue
when it is free (a process holds one chunk at a time), so a fast decoder takes more chunks than a slow one without a
fixed split, and no decoder idles at the end of one video while the next is waiting (on the H100, 12 PyAV processes
on one 10-minute video at a time kept ~2,000 stream frames/s: the 19 chunks of a video are two rounds of 12).
Chunks are queued video by video, so videos finish in order. A thread keeps its reader open while its chunks come
from one video (they ascend, so it reads forward), and so does a worker process (`chunk_job`). Every chunk lands at
its own positions in its video's (n, H, W, 3) uint8 tensor on
`device`: NVDEC chunks of threads stay on the GPU, chunks of processes come through shared memory and are copied
there.
`decode(path, indices, device)` is one video.

The frames are the ones each reader returns for those indices, the same for every backend (nvdec is exact against
PyAV: tests/video/test_yuv.py and harness.bench.decode_check; decord and PyAV against a full decode:
tests/video/test_forward.py), so the split never changes a frame (tests/video/test_multidecode.py).
"""
from __future__ import annotations

import os
import queue
import threading
import time
from functools import partial

import numpy as np

from harness.errors import HarnessError, UnsupportedStream, VideoError
from harness.video.decodejob import GPU_BACKENDS as GPU_DECODERS  # threads here unless asked into processes

CHUNK = 32  # grid frames per chunk: small enough that the decoders finish together, large enough to read forward


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


def chunk_job(job):
    """A decoder process's chunk: the frames at `job.selections[0]` of the video, in host memory (the pool's shared
    memory carries them), from the reader the process keeps open across the chunks it takes of one video
    (`harness.video.decodejob.worker_frames`)."""
    from harness.video.decodejob import worker_frames

    t0 = time.perf_counter()
    [selection] = job.selections
    frames = worker_frames(job, list(selection))
    return {"frames": {selection: frames}, "decode": time.perf_counter() - t0, "prepare": 0.0}


def decoder_failure(message: str, path: str, backend: str, decoders: list[str], unsupported: bool) -> VideoError:
    """A decoder's failure on a video, said once (a worker's message already names the video). An NVDEC decoder's
    failure on a stream it took (not `unsupported`) also says how many ran at once: on an H100, 6 NVDEC processes
    beside 4 PyAV ones stopped twice in PyNvVideoCodec's display callback ("HandlePictureDisplay") on 30-minute
    720p videos that one decoder alone decodes whole, where 3 beside 8 PyAV did not (results/bench/README.md)."""
    text = message if path in message else f"cannot decode {path} with {backend}: {message}"
    if backend in GPU_DECODERS and not unsupported:
        text += (f" ({decoders.count(backend)} {backend} decoders were decoding at once: try fewer of them in "
                 f"--decoders, or CPU decoders only; docs/decode.md)")
    return UnsupportedStream(text) if unsupported else VideoError(text)


class _Video:
    """One video of a stream: its output tensor, the chunks still to land, and an event set when all have."""

    def __init__(self, path: str, idx: np.ndarray, out, chunks: int):
        self.path, self.idx, self.out, self.left = path, idx, out, chunks
        self.finished = threading.Event()


class Decoders:
    """Decoders for many videos; use as a context manager (the worker processes stop at exit)."""

    def __init__(self, decoders: list[str], processes: bool = True, chunk: int = CHUNK, gpu_processes: bool = False):
        from collections import Counter

        self.chunk, self.gpu_processes = chunk, gpu_processes
        self.threads = [d for d in decoders if not processes or (d in GPU_DECODERS and not gpu_processes)]
        in_pools = Counter(d for d in decoders if d not in self.threads)
        self.pools = {}  # backend -> the Prefetcher of its worker processes
        if in_pools:
            from harness.video.prefetch import Prefetcher

            cpu = sum(n for b, n in in_pools.items() if b not in GPU_DECODERS)
            self.cpu_threads = max(1, (os.cpu_count() or 1) // cpu) if cpu else None  # each process's share
            for backend, n in in_pools.items():
                gpu = backend in GPU_DECODERS
                # depth = processes: each holds one chunk, so the other decoders take the rest as they free up
                self.pools[backend] = Prefetcher(chunk_job, workers=n, depth=n,
                                                 threads_per_worker=None if gpu else self.cpu_threads)
        self.names = list(decoders)
        # seconds: wall time with at least one chunk being decoded (the decoders' working time, overlap counted once)
        self.stats = {"seconds": 0.0, "frames_by_backend": {}}

    def decode(self, path, indices, device="cpu"):
        """(n, H, W, 3) uint8 torch tensor on `device` of the frames at ascending `indices`, every decoder at once."""
        [out] = list(self.stream([(path, indices)], device))
        return out

    def stream(self, items, device="cpu", ahead: int = 1, idle=None):
        """Yield each (path, ascending indices) item's frames, as `decode` would, in order, with up to `ahead`
        videos being decoded at once (their tensors held until yielded: `ahead` bounds the memory). Items are drawn
        when their video is queued. `idle()`, if given, is called (in the consumer's thread) when the next video
        is asked for and not decoded yet: work the consumer can do meanwhile."""
        import torch

        from harness.video.reader import open_video

        if ahead < 1:
            raise HarnessError(f"decoders: ahead must be at least 1, got {ahead}")
        items = iter(items)
        tasks: queue.Queue = queue.Queue()
        failures: list[BaseException] = []
        lock = threading.Lock()
        busy = {"chunks": 0, "since": 0.0}
        videos: list[_Video] = []

        def fail(e: BaseException) -> None:  # the first failure stops every decoder and is raised in the caller
            failures.append(e)
            for v in videos:
                if v is not None:  # (None: already handed out)
                    v.finished.set()

        def queue_next() -> bool:
            try:
                path, indices = next(items)
            except StopIteration:
                return False
            idx = np.asarray(indices, dtype=np.int64).reshape(-1)
            with open_video(path, "pyav" if "nvdec" in self.names else self.names[0]) as probe:
                probe._check(idx)  # ascending and in range, before any decoder starts
                h, w = probe.meta.height, probe.meta.width
            starts = range(0, idx.size, self.chunk)
            video = _Video(str(path), idx, torch.empty((idx.size, h, w, 3), dtype=torch.uint8, device=device),
                           len(starts))
            videos.append(video)
            if not starts:
                video.finished.set()
            for start in starts:
                tasks.put((video, start))
            return True

        def started() -> None:
            with lock:
                if busy["chunks"] == 0:
                    busy["since"] = time.perf_counter()
                busy["chunks"] += 1

        def landed(video: _Video, backend: str, start: int, frames) -> None:
            video.out[start:start + frames.shape[0]].copy_(frames)
            with lock:
                counts = self.stats["frames_by_backend"]
                counts[backend] = counts.get(backend, 0) + int(frames.shape[0])
                busy["chunks"] -= 1
                if busy["chunks"] == 0:
                    self.stats["seconds"] += time.perf_counter() - busy["since"]
                video.left -= 1
                if video.left == 0:
                    video.finished.set()

        def in_thread(backend: str) -> None:
            reader, path = None, None
            try:
                while not failures:
                    task = tasks.get()
                    if task is None:
                        return
                    video, start = task
                    started()
                    if path != video.path:
                        if reader is not None:
                            reader.close()
                        reader, path = None, video.path
                        reader = open_video(path, backend, threads=None if backend in GPU_DECODERS else 1)
                    part = video.idx[start:start + self.chunk]
                    if hasattr(reader, "frames_on_device"):
                        frames = reader.frames_on_device(part)
                        if frames.device.type == "cuda":
                            torch.cuda.current_stream(frames.device).synchronize()
                    else:
                        frames = torch.from_numpy(reader.get_frames(part))
                    landed(video, backend, start, frames)
            except VideoError as e:
                fail(decoder_failure(str(e), video.path, backend, self.names, isinstance(e, UnsupportedStream)))
            except BaseException as e:
                fail(e)
            finally:
                if reader is not None:
                    reader.close()

        def in_processes(backend: str, pool) -> None:
            from concurrent.futures import FIRST_COMPLETED, wait

            from harness.video.decodejob import DecodeJob, warm_gpu
            from harness.video.prefetch import WorkError

            inflight, stopping = {}, False
            # a GPU decoder process takes chunks once its CUDA context is made, so the CPU decoders take the first
            # video's chunks meanwhile instead of leaving them queued behind that set-up
            warming = pool.warm("workers", partial(warm_gpu, str(device))) if backend in GPU_DECODERS else []
            try:
                while not failures and not (stopping and not inflight):
                    size = sum(1 for f in warming if f.done()) if warming else pool.workers
                    if not size and not inflight:
                        wait(warming, timeout=0.1, return_when=FIRST_COMPLETED)
                        continue
                    if not stopping and len(inflight) < size:  # a process is free: give it a chunk
                        try:
                            task = tasks.get(timeout=0.005 if inflight else 0.1)
                        except queue.Empty:
                            task = False
                        if task is None:
                            stopping = True
                        elif task:
                            video, start = task
                            started()
                            part = tuple(video.idx[start:start + self.chunk].tolist())
                            job = DecodeJob(video.path, backend, (part,), threads=self.cpu_threads,
                                            extra={"device": str(device)} if backend in GPU_DECODERS else {})
                            inflight[pool.submit(job)] = task
                            continue
                    if inflight:
                        done, _ = wait(list(inflight), timeout=0.02, return_when=FIRST_COMPLETED)
                        for future in done:
                            video, start = inflight.pop(future)
                            result = pool.collect(future)
                            if isinstance(result, WorkError):
                                raise decoder_failure(result.message, video.path, backend, self.names,
                                                      result.kind == "UnsupportedStream")
                            [frames] = result["frames"].values()
                            landed(video, backend, start, torch.from_numpy(frames))
            except BaseException as e:
                fail(e)
            finally:
                for future in inflight:  # after a failure: wait for the running chunks, free their memory
                    if not future.cancel():
                        try:
                            pool.collect(future)
                        except BaseException:
                            pass

        workers = [threading.Thread(target=in_thread, args=(b,), name=f"decode-{b}-{i}", daemon=True)
                   for i, b in enumerate(self.threads)]
        workers += [threading.Thread(target=in_processes, args=(b, pool), name=f"decode-{b}-processes", daemon=True)
                    for b, pool in self.pools.items()]
        i = 0
        try:
            more = True
            while more and len(videos) < ahead:
                more = queue_next()
            for t in workers:
                t.start()
            while i < len(videos):
                if idle is not None and not videos[i].finished.is_set():
                    idle()
                videos[i].finished.wait()
                if failures:
                    raise failures[0]
                if more:
                    more = queue_next()  # the next video's chunks queue behind this one's (`ahead` in flight)
                out, videos[i] = videos[i].out, None
                if out.device.type == "cuda":
                    torch.cuda.current_stream(out.device).synchronize()
                i += 1
                yield out
        finally:
            if failures or i < len(videos):  # stopped early: drop the chunks not started
                failures.append(failures[0] if failures else HarnessError("decoding stopped"))
                while True:
                    try:
                        tasks.get_nowait()
                    except queue.Empty:
                        break
            for _ in workers:
                tasks.put(None)
            for t in workers:
                if t.is_alive():
                    t.join()

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()
        self.pools = {}

    def __enter__(self) -> "Decoders":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
