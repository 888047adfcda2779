"""`--decode-backend nvdec`: NVIDIA's hardware decoder through PyNvVideoCodec 2.2 (extra `[gpu-decode]`), frames
decoded into CUDA tensors and converted to RGB on the GPU with swscale's arithmetic (`harness.video.yuv`), so they
equal PyAV's frames pixel for pixel.

* Index and metadata come from the container exactly as the PyAV reader has them (its demux-only pts index, opened
  and closed at open): frame i is the packet with the i-th smallest pts, the frame count is exact, and every
  frame NVDEC returns is checked against that pts (a mismatch is a VideoError, never a silently different frame).
* The colour matrix and range are the stream's (PyAV's codec context): what swscale would use for the same frame.
* `get_frames` keeps the reader contract (numpy on the host); `frames_on_device` returns the (n, H, W, 3) uint8
  tensor on the GPU, for code that feeds an encoder or backbone on the same device without a trip through host
  memory (`harness bench --job long` does).
* One decoder instance per reader; readers in several threads decode at once (the GPU has several NVDEC engines;
  `decode_in_threads`). A reader works in its own CUDA stream and makes the caller's stream wait for its output.
* CUDA in the main process by default: spawned decode workers would each build a CUDA context (hundreds of MB
  each) and copy frames back through the host. A reader opened in a child process refuses (run with `--workers 0`,
  or decode in threads of the main process), see docs/decode.md, unless the child is a decoder process that asked
  for it (`in_worker=True`: `harness bench --job long --nvdec-processes`, where PyNvVideoCodec's calls would
  otherwise hold this process's interpreter lock beside the backbone's thread).
"""
from __future__ import annotations

import importlib
import multiprocessing
from contextlib import nullcontext
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np

from harness.errors import HarnessError, UnsupportedStream, VideoError
from harness.video.reader import VideoReader, _library_error, open_video
from harness.video.yuv import matrix_name, nv12_to_rgb

BATCH = 32  # frames asked of the decoder at once (then copied out and converted)
INSTALL = "pip install 'longvideo-harness[gpu-decode]' (PyNvVideoCodec 2.2) on a machine with an NVIDIA GPU"


def check_available() -> None:
    """Raise a one-line error unless PyNvVideoCodec imports and torch sees a CUDA GPU."""
    try:
        importlib.import_module("PyNvVideoCodec")
    except Exception as e:
        raise ImportError(f"PyNvVideoCodec does not import ({_library_error(e)})") from e
    import torch

    if not torch.cuda.is_available():
        raise ImportError("no CUDA GPU is visible to torch")


class NvdecReader(VideoReader):
    """A video decoded by NVDEC; `device` is the CUDA device (default: torch's current one)."""

    backend = "nvdec"

    def __init__(self, path: str, threads: int | None = None, device=None, in_worker: bool = False):
        del threads  # the decoder's parallelism is the hardware's; accepted for the reader interface
        if multiprocessing.parent_process() is not None and not in_worker:
            raise HarnessError("the nvdec decode backend runs in the main process (CUDA in spawned workers costs a "
                               "context each): run with --workers 0 or decode in threads")
        with open_video(path, "pyav") as index:  # the PyAV reader's pts index, metadata and colour tags
            if index.reorders:  # refused before any GPU state is made
                raise UnsupportedStream(f"{path} has B-frames (frames stored out of presentation order), which "
                                        f"nvdec does not index as the container does; decode it with pyav or decord "
                                        f"(docs/decode.md)")
            self._pts = np.asarray(index._pts).copy()
            ctx = index._stream.codec_context
            self._matrix, self._full = matrix_name(ctx.colorspace), int(ctx.color_range) == 2
            self.meta = replace(index.meta, backend=self.backend)
        if self.meta.height % 2:
            raise VideoError(f"{path} is {self.meta.width}x{self.meta.height}: nvdec frames are exact for even "
                             f"heights only; decode it with pyav or decord")
        import torch
        import PyNvVideoCodec as nvc

        self.device = torch.device(device) if device is not None else torch.device("cuda", torch.cuda.current_device())
        cuda = self.device.type == "cuda"
        self._stream = torch.cuda.Stream(self.device) if cuda else None
        self._decoder = nvc.SimpleDecoder(
            path, gpu_id=(self.device.index or 0) if cuda else 0, use_device_memory=cuda,
            cuda_stream=self._stream.cuda_stream if cuda else 0, output_color_type=nvc.OutputColorType.NATIVE)

    def frames_on_device(self, indices):
        """(n, H, W, 3) uint8 RGB tensor on the reader's device for ascending indices (repeats allowed)."""
        import torch

        idx = self._check(indices)
        if idx.size == 0:
            return torch.empty((0, self.meta.height, self.meta.width, 3), dtype=torch.uint8, device=self.device)
        try:
            return self._decode(idx)
        except (HarnessError, MemoryError):
            raise
        except Exception as e:
            raise VideoError(f"cannot decode {self.meta.path} with nvdec: {_library_error(e)}") from e

    def _read(self, idx):
        return self._decode(idx).cpu().numpy()

    def _decode(self, idx: np.ndarray):
        import torch

        unique, inverse = np.unique(idx, return_inverse=True)
        parts = []
        with torch.cuda.stream(self._stream) if self._stream is not None else nullcontext():
            for start in range(0, unique.size, BATCH):  # the decoder's surfaces are few: copy each batch out
                parts.append(self._batch(unique[start:start + BATCH]))
            rgb = torch.cat(parts) if len(parts) > 1 else parts[0]
            out = rgb[torch.as_tensor(inverse.reshape(-1), device=self.device)] if unique.size != idx.size else rgb
        if self._stream is not None:
            torch.cuda.current_stream(self.device).wait_stream(self._stream)
            out.record_stream(torch.cuda.current_stream(self.device))
        return out

    def _batch(self, unique: np.ndarray):
        import torch

        frames = self._decoder.get_batch_frames_by_index(unique.tolist())
        if len(frames) != unique.size:
            raise VideoError(f"nvdec returned {len(frames)} frames of {self.meta.path} for {unique.size} asked")
        pts = np.asarray([f.getPTS() for f in frames], dtype=np.int64)
        wrong = np.flatnonzero(pts != self._pts[unique])
        if wrong.size:
            i = int(wrong[0])
            raise VideoError(f"nvdec returned the frame with pts {pts[i]} for frame {unique[i]} of {self.meta.path} "
                             f"(the container index says pts {self._pts[unique[i]]}): its frame index differs from "
                             f"PyAV's; decode this video with pyav or decord")
        nv12 = torch.stack([torch.from_dlpack(f) for f in frames]).to(self.device)  # a copy out of the surfaces
        return nv12_to_rgb(nv12, self.meta.height, self.meta.width, self._matrix, self._full)

    def _release(self):
        self._decoder = None


def decode_in_threads(jobs, instances: int, device=None, to_host: bool = False) -> list:
    """Decode `jobs` ((path, ascending indices) pairs) with `instances` NVDEC readers at once, one per thread, in
    the main process; the frames of each job in order (CUDA tensors, or numpy with `to_host`)."""
    if instances < 1:
        raise HarnessError(f"decoder instances must be at least 1, got {instances}")

    def one(job):
        path, indices = job
        with NvdecReader(str(path), device=device) as reader:
            frames = reader.frames_on_device(indices)
            if to_host:
                return frames.cpu().numpy()
            import torch

            if reader.device.type == "cuda":
                torch.cuda.current_stream(reader.device).synchronize()  # done before the thread hands it over
            return frames

    with ThreadPoolExecutor(instances, thread_name_prefix="nvdec") as pool:
        return list(pool.map(one, jobs))
