"""One video's frames decoded by several decoders at once: NVDEC instances and CPU readers side by side (issue 20).

`decode_parallel(path, indices, decoders, device)` splits the ascending indices into chunks of consecutive
positions and lets one thread per decoder take the next chunk from a shared queue until none is left, so a fast
decoder (an NVDEC instance) takes more chunks than a slow one (a CPU reader) without a fixed split. Each thread
opens its own reader once and keeps it for all its chunks: the chunks a thread takes ascend, so its reader only
reads forward (seeking to a later keyframe where chunks are far apart). Every chunk lands at its own positions
in one (n, H, W, 3) uint8 tensor on `device`: NVDEC chunks stay on the GPU, CPU chunks are copied there.

The frames are the ones each reader returns for those indices, which are the same for every backend (nvdec is
exact against PyAV, tests/video/test_yuv.py and harness.bench.decode_check; decord and PyAV against a full decode,
tests/video/test_forward.py), so the split never changes a frame. PyAV and decord release the GIL while they
decode, NVDEC decodes on its own engines: the threads run in parallel.
"""
from __future__ import annotations

import queue
import threading
import time

import numpy as np

from harness.errors import HarnessError

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


def decode_parallel(path, indices, decoders: list[str], device="cpu", chunk: int = CHUNK,
                    stats: dict | None = None):
    """(n, H, W, 3) uint8 torch tensor on `device` of the frames at ascending `indices`, decoded by `decoders`
    (backend names, one thread each) at once. `stats` (optional) receives the frames each backend decoded."""
    import torch

    from harness.video.reader import open_video

    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    with open_video(path, "pyav" if "pyav" in decoders or "nvdec" in decoders else decoders[0]) as probe:
        probe._check(idx)  # ascending and in range, before any thread starts
        h, w = probe.meta.height, probe.meta.width
    out = torch.empty((idx.size, h, w, 3), dtype=torch.uint8, device=device)
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for start in range(0, idx.size, chunk):
        todo.put(start)
    failures, counts, lock = [], {}, threading.Lock()

    def work(backend: str) -> None:
        reader = None
        try:
            while not failures:
                try:
                    start = todo.get_nowait()
                except queue.Empty:
                    return
                part = idx[start:start + chunk]
                if reader is None:
                    reader = open_video(path, backend, threads=1 if backend != "nvdec" else None)
                if hasattr(reader, "frames_on_device"):
                    frames = reader.frames_on_device(part)
                    if frames.device.type == "cuda":
                        torch.cuda.current_stream(frames.device).synchronize()
                else:
                    frames = torch.from_numpy(reader.get_frames(part))
                out[start:start + part.size].copy_(frames)
                with lock:
                    counts[backend] = counts.get(backend, 0) + int(part.size)
        except BaseException as e:  # the first failure stops every thread and is raised in the caller
            failures.append(e)
        finally:
            if reader is not None:
                reader.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=work, args=(b,), name=f"decode-{b}-{i}") for i, b in enumerate(decoders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]
    if out.device.type == "cuda":
        torch.cuda.current_stream(out.device).synchronize()
    if stats is not None:
        stats["frames_by_backend"] = {k: stats.get("frames_by_backend", {}).get(k, 0) + v for k, v in counts.items()}
        stats["seconds"] = stats.get("seconds", 0.0) + time.perf_counter() - t0
    return out
