"""One video reader interface over three decoders: decord (default), PyAV and torchcodec.

Every backend returns the same thing for the same request: (n, H, W, 3) uint8 RGB frames at native frame indices,
and the same metadata (frame count, average fps). Readers are opened per video and closed with `with`.
"""
from __future__ import annotations

import functools
import importlib
import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from harness.errors import HarnessError, UnknownNameError, VideoError
from harness.video.forward import ForwardPlan, decode_forward, seek_needed, sequential_steps

# decord gives up near the end of long videos ("EOF reached") unless its retry limit is raised (a known decord
# issue); its C++ reads the variable at run time, so a default set at import is enough. A user's value wins.
os.environ.setdefault("DECORD_EOF_RETRY_MAX", "20480")

# backend -> (module to import, what to install)
_BACKENDS = {
    "decord": ("decord", "pip install decord==0.6.0"),
    "pyav": ("av", "pip install av"),
    "torchcodec": ("torchcodec.decoders", "pip install torchcodec (it needs the system's ffmpeg libraries)"),
    "nvdec": ("harness.video.nvdec_check", "pip install 'longvideo-harness[gpu-decode]' on a machine with an NVIDIA GPU"),
}


@dataclass(frozen=True)
class VideoMeta:
    path: str
    frame_count: int
    fps: float  # average frame rate from the container header
    duration: float  # seconds, frame_count / fps
    width: int
    height: int
    backend: str


@functools.cache
def _import_problem(backend: str) -> str | None:
    """None if the backend's module imports, else why not (one line)."""
    try:
        importlib.import_module(_BACKENDS[backend][0])
    except Exception as e:  # a broken install (missing shared library) counts as not installed
        return _library_error(e)
    return None


def available_backends() -> list[str]:
    """The importable backends, in the order decord, pyav, torchcodec."""
    return [b for b in _BACKENDS if _import_problem(b) is None]


def check_backend(name: str) -> str:
    """The backend name if it is known and importable, else a one-line HarnessError."""
    if name not in _BACKENDS:
        raise UnknownNameError("decode backend", name, _BACKENDS)
    problem = _import_problem(name)
    if problem is not None:
        raise HarnessError(f"decode backend {name!r} is not available ({problem}): {_BACKENDS[name][1]}")
    return name


def _library_error(e: BaseException) -> str:
    """The first informative line of a library's error, without log prefixes or stack traces; a first line that
    only names where the error arose (PyNvVideoCodec's "HandlePictureDisplay :") is joined with the next, which
    says what went wrong."""
    if isinstance(getattr(e, "strerror", None), str):  # PyAV/OS errors: the reason without errno and path
        return e.strerror
    lines = [re.sub(r"^\[[^\]]*\]\s*\S+:\d+:\s*", "", line).strip()  # decord's "[time] file.cc:83: "
             for line in str(e).splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return type(e).__name__
    if lines[0].endswith(":") and len(lines) > 1:
        return f"{lines[0]} {lines[1]}"[:200]
    return lines[0][:200]


# below this many pixels a frame (e.g. the needle world's 128x128) decodes in one thread: measured on 8 needle
# videos' 1-fps grids, PyAV with two FFmpeg threads took 1.5x the CPU time of one, decord's default threads 1.7x
# the wall time of one thread
SMALL_FRAME_PIXELS = 320 * 240


class VideoReader(ABC):
    """An open video. `get_frames` takes ascending native indices; use as a context manager."""

    backend: str
    meta: VideoMeta
    threads: int | None = None  # decoding threads the reader uses (0: the library picks; None: not settable)
    _closed = False

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        """(n, H, W, 3) uint8 RGB frames at ascending indices in [0, frame_count); repeats are allowed."""
        idx = self._check(indices)
        if idx.size == 0:
            return np.empty((0, self.meta.height, self.meta.width, 3), np.uint8)
        try:
            frames = self._read(idx)
        except (HarnessError, MemoryError):  # out of memory is the machine's fault, not the video's: it stops the run
            raise
        except Exception as e:
            raise VideoError(f"cannot decode {self.meta.path} with {self.backend}: {_library_error(e)}") from e
        if frames.shape != (idx.size, self.meta.height, self.meta.width, 3) or frames.dtype != np.uint8:
            raise VideoError(f"{self.backend} returned frames of shape {frames.shape} {frames.dtype} for "
                             f"{self.meta.path}, expected ({idx.size}, {self.meta.height}, {self.meta.width}, 3)")
        return frames

    def _check(self, indices) -> np.ndarray:
        if self._closed:
            raise HarnessError(f"the {self.backend} reader of {self.meta.path} is closed")
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx[0] < 0 or idx[-1] >= self.meta.frame_count or np.any(np.diff(idx) < 0)):
            if np.any(np.diff(idx) < 0):
                raise HarnessError(f"frame indices must be ascending, got {_preview(idx)}")
            bad = idx[(idx < 0) | (idx >= self.meta.frame_count)][0]
            raise HarnessError(f"frame index {bad} is out of range for {self.meta.path} "
                               f"({self.meta.frame_count} frames: 0..{self.meta.frame_count - 1})")
        return idx

    @abstractmethod
    def _read(self, idx: np.ndarray) -> np.ndarray:
        """Decode valid, ascending, non-empty indices."""

    def close(self) -> None:
        self._closed = True
        self._release()

    def _release(self) -> None:
        pass

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        m = self.meta
        return f"<{type(self).__name__} {m.path} {m.frame_count} frames @ {m.fps:.3f} fps {m.width}x{m.height}>"


def _preview(idx: np.ndarray, n: int = 8) -> str:
    head = ", ".join(map(str, idx[:n].tolist()))
    return f"[{head}{', ...' if idx.size > n else ''}]"


def _meta(path: str, frame_count: int, fps: float, width: int, height: int, backend: str) -> VideoMeta:
    if frame_count < 1:
        raise VideoError(f"{path} has no video frames")
    if not fps > 0 or not np.isfinite(fps):
        raise VideoError(f"{path} reports no usable frame rate ({fps})")
    return VideoMeta(path, int(frame_count), float(fps), frame_count / fps, int(width), int(height), backend)


class _DecordReader(VideoReader):
    """decord, read forward: a target in the current GOP (or the next keyframe's) is reached by skipping frames
    without colour conversion, a seek happens only to a later GOP or backwards (get_batch seeks per frame)."""

    backend = "decord"

    def __init__(self, path: str, threads: int | None = None):
        import decord

        if threads != 1 and _small_frames(path):  # as the PyAV reader does (SMALL_FRAME_PIXELS)
            threads = 1
        self.threads = threads or 0
        try:
            self._vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=self.threads)
        except RuntimeError as e:
            if str(e).startswith("Error reading"):  # decord logs the reason to stderr and raises only this
                raise VideoError(f"cannot open video {path} with decord: not a video file, or corrupt or "
                                 f"truncated") from e
            raise
        # decord has no size query; the first frame is decoded anyway by any read from the start
        self._frame = _asnumpy(self._vr.next())
        self._pos = 0  # the index of the frame last read, kept in _frame
        height, width = self._frame.shape[:2]
        self.meta = _meta(path, len(self._vr), self._vr.get_avg_fps(), width, height, self.backend)
        self._key_before = None  # the latest keyframe at or before each frame, from decord's index at first read

    def _read(self, idx):
        if self._key_before is None:
            keys = np.zeros(self.meta.frame_count, np.int64)
            keys[np.asarray(self._vr.get_key_indices(), np.int64)] = 1
            self._key_before = np.maximum.accumulate(np.where(keys > 0, np.arange(keys.size), 0))
        out = np.empty((idx.size, self.meta.height, self.meta.width, 3), np.uint8)
        for j, (step, arg) in enumerate(sequential_steps(idx, self._key_before, self._pos)):
            if step == "skip" and arg:
                self._vr.skip_frames(arg)
            elif step == "seek":
                self._vr.seek_accurate(arg)
            if step != "reuse":
                self._frame, self._pos = _asnumpy(self._vr.next()), int(idx[j])
            out[j] = self._frame
        return out

    def _release(self):
        self._vr = self._frame = None  # decord frees the file when the reader is collected


def _small_frames(path: str) -> bool:
    """The video's frames are smaller than SMALL_FRAME_PIXELS, read from the container header (PyAV) without
    decoding; False where PyAV is not installed or cannot read the header (the reader then opens as asked)."""
    if _import_problem("pyav") is not None:
        return False
    import av

    try:
        with av.open(path) as container:
            ctx = container.streams.video[0].codec_context
            return 0 < ctx.width * ctx.height < SMALL_FRAME_PIXELS
    except Exception:  # decord opens it and says what is wrong
        return False


def _asnumpy(x) -> np.ndarray:
    # decord's output bridge may have been switched to torch by other code
    return x.asnumpy() if hasattr(x, "asnumpy") else np.asarray(x)


class _PyAVReader(VideoReader):
    """Sequential decoding with keyframe seeks, indexed the way decord indexes frames.

    At open, the packets are demuxed (not decoded) once: frame i is the packet with the i-th smallest pts, so the
    frame count is exact and a decoded frame's pts names its index. A read continues decoding forward and seeks
    only when the target's keyframe lies beyond the current position, so reading a sorted list (in one call or in
    chunks) decodes each GOP at most once and never holds more than the requested frames.
    """

    backend = "pyav"

    def __init__(self, path: str, threads: int | None = None, skip_nonref: bool = True):
        import av

        self._plan, self._skip = ForwardPlan(), skip_nonref
        self.counts: dict = {}  # packets sent to the decoder, and those it was allowed to skip
        self._container = av.open(path)
        try:
            if not self._container.streams.video:
                raise VideoError(f"{path} has no video stream")
            self._stream = stream = self._container.streams.video[0]
            ctx = stream.codec_context
            # threads for frames of some size only: on small frames their hand-offs cost more CPU than they save
            self.threads = 1 if ctx.width * ctx.height < SMALL_FRAME_PIXELS else (threads or 0)
            stream.thread_type = "AUTO" if self.threads != 1 else "NONE"
            ctx.thread_count = self.threads  # 0: FFmpeg picks from the cores
            pts, keys, n_packets = [], [], 0
            for packet in self._container.demux(stream):
                if packet.pts is None:  # the flush packet at the end
                    continue
                n_packets += 1
                if not packet.is_discard:  # discarded packets (mp4 edit lists) never come out of the decoder
                    pts.append(packet.pts)
                    keys.append(packet.is_keyframe)
            if n_packets < stream.frames:  # decord refuses such files too; never evaluate on part of a video
                raise VideoError(f"{path} is truncated: its header promises {stream.frames} frames, "
                                 f"the file holds {n_packets}")
            order = np.argsort(np.asarray(pts, dtype=np.int64), kind="stable")
            # frames decoded out of presentation order (B-frames): the nvdec reader refuses such streams
            self.reorders = bool(np.any(np.diff(order) < 0))
            self._pts = np.asarray(pts, dtype=np.int64)[order]
            self._index = {int(p): i for i, p in enumerate(self._pts)}
            is_key = np.asarray(keys, dtype=bool)[order]
            # the latest keyframe at or before each frame (0 when the stream starts without one)
            self._key_before = np.maximum.accumulate(np.where(is_key, np.arange(len(order)), 0)) if pts else None
            rate = stream.average_rate or stream.guessed_rate
            self.meta = _meta(path, len(self._pts), float(rate) if rate else 0.0, ctx.width, ctx.height, self.backend)
        except BaseException:
            self._container.close()
            raise
        self._frames = None  # the running decode generator
        self._pos, self._frame = -1, None  # index and frame last decoded by it

    def _seek(self, position: int) -> None:
        self._container.seek(int(self._pts[position]), stream=self._stream, backward=True, any_frame=False)
        self._frames = decode_forward(self._container, self._stream, self._index, self._plan, self._skip,
                                      self.counts)
        self._pos, self._frame = -1, None

    def _frame_at(self, target: int):
        if target == self._pos:
            return self._frame
        key = int(self._key_before[target])
        if self._frames is None or target < self._pos or seek_needed(key, self._pos):
            self._seek(key)  # skips the decoding between here and the target's keyframe
        frame = self._decode_until(target)
        if frame is None and key > 0:  # the seek landed past the target (inexact container index): from the start
            self._seek(0)
            frame = self._decode_until(target)
        if frame is None:
            self._frames = None
            raise VideoError(f"frame {target} of {self.meta.path} could not be decoded (truncated or corrupt file?)")
        return frame

    def _decode_until(self, target: int):
        """Decode forward to frame `target`; None if the decoder passes it or runs out."""
        for frame in self._frames:
            i = self._index.get(frame.pts)
            if i is not None:
                self._pos, self._frame = i, frame
                if i >= target:
                    return frame if i == target else None
        return None

    def _read(self, idx):
        self._plan.set(idx)  # frames between these that no reference needs are not decoded
        out = np.empty((idx.size, self.meta.height, self.meta.width, 3), np.uint8)
        for j, target in enumerate(idx.tolist()):
            out[j] = out[j - 1] if j and idx[j - 1] == target else self._frame_at(target).to_ndarray(format="rgb24")
        return out

    def _release(self):
        self._frames = self._frame = None
        self._container.close()


class _TorchCodecReader(VideoReader):
    backend = "torchcodec"

    def __init__(self, path: str, threads: int | None = None):
        from torchcodec.decoders import VideoDecoder

        # exact mode scans the file once (no decoding), like the other backends, for an exact frame count
        self._decoder = VideoDecoder(path, seek_mode="exact", dimension_order="NHWC")
        m = self._decoder.metadata
        fps = m.average_fps_from_header or m.average_fps  # the header rate, as decord and PyAV report it
        self.meta = _meta(path, len(self._decoder), fps or 0.0, m.width, m.height, self.backend)

    def _read(self, idx):
        return self._decoder.get_frames_at(idx.tolist()).data.numpy()

    def _release(self):
        self._decoder = None


_READERS = {"decord": _DecordReader, "pyav": _PyAVReader, "torchcodec": _TorchCodecReader,
            "nvdec": lambda path, **kw: importlib.import_module("harness.video.nvdec").NvdecReader(path, **kw)}


def open_video(path, backend: str = "decord", threads: int | None = None) -> VideoReader:
    """Open a video with the named backend; a missing, empty or undecodable file raises VideoError. `threads`:
    decoding threads inside this reader (decord, PyAV; None or 0: the library picks from the cores)."""
    check_backend(backend)
    p = Path(path)
    if not p.exists():
        raise VideoError(f"video not found: {p}")
    if p.is_dir():
        raise VideoError(f"video path is a directory, not a file: {p}")
    if p.stat().st_size == 0:
        raise VideoError(f"video file is empty (0 bytes): {p}")
    try:
        return _READERS[backend](str(p), threads=threads)
    except HarnessError:
        raise
    except Exception as e:
        raise VideoError(f"cannot open video {p} with {backend}: {_library_error(e)} "
                         f"(not a video, corrupt or truncated?)") from e


def iter_frames(reader: VideoReader, indices: Sequence[int],
                chunk_size: int = 32) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(indices, frames) in chunks of at most chunk_size, so only one chunk of decoded frames is alive at once."""
    if chunk_size < 1:
        raise HarnessError(f"chunk_size must be at least 1, got {chunk_size}")
    idx = reader._check(indices)  # fail before the first chunk, not midway
    for start in range(0, idx.size, chunk_size):
        chunk = idx[start:start + chunk_size]
        yield chunk, reader.get_frames(chunk)


def read_frames(path, indices: Sequence[int], backend: str = "decord", chunk_size: int = 32) -> np.ndarray:
    """All requested frames at once (for small K); decoded in chunks."""
    with open_video(path, backend) as reader:
        parts = [frames for _, frames in iter_frames(reader, indices, chunk_size)]
        return np.concatenate(parts) if parts else reader.get_frames([])


def decode_selection(reader: VideoReader, frame_indices) -> np.ndarray:
    """Decode each distinct frame once (a repeated frame is copied, not decoded again)."""
    unique, inverse = np.unique(np.asarray(frame_indices, dtype=np.int64), return_inverse=True)
    return reader.get_frames(unique.tolist())[inverse]
