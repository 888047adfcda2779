"""Real H.264 test videos, written with PyAV, whose frames carry their own index.

`write_video` is general (any even-sized RGB frames) so synthetic benchmark videos can reuse it; `index_frame` and
`decode_index` let a test check that a decoder returned exactly the frame it was asked for.
"""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import numpy as np

_BITS = 4  # the index is drawn as a _BITS x _BITS board of black/white blocks: 16 bits
_MARGIN = 8  # grey border around the board, in pixels
_MIN_BLOCK = 16  # H.264 works on 16x16 macroblocks; smaller blocks would blur into their neighbours


def as_rate(fps: float | Fraction) -> Fraction:
    """The exact frame rate to write: NTSC rates (29.97, 23.976, 59.94, ...) become k*1000/1001."""
    if isinstance(fps, Fraction):
        rate = fps
    else:
        fps = float(fps)
        ntsc = round(fps * 1.001)
        rate = (Fraction(ntsc * 1000, 1001) if ntsc >= 1 and abs(fps - ntsc / 1.001) < 2e-4 * fps
                else Fraction(fps).limit_denominator(1000))
    if rate <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return rate


def write_video(path, frames: Iterable[np.ndarray], fps: float | Fraction, *, crf: int = 18,
                gop: int | None = None, preset: str = "veryfast", bframes: int | None = None) -> None:
    """Encode HxWx3 uint8 RGB frames (H and W even) as H.264/yuv420p, one frame at a time.

    The container follows the file extension (.mp4, .mkv, ...). `gop` fixes the keyframe interval exactly (no
    scene-cut keyframes); None keeps x264's default. `bframes` caps x264's B-frames (0: none, frames stored in
    presentation order, as `--decode-backend nvdec` needs); None keeps its default. The file appears only when
    complete: a temporary file in the same directory is renamed over `path`.
    """
    import av

    path = Path(path)
    rate = as_rate(fps)
    params = {"crf": str(crf), "preset": preset}
    if gop is not None:
        if gop < 1:
            raise ValueError(f"gop must be at least 1, got {gop}")
        params["x264-params"] = f"keyint={gop}:min-keyint={gop}:scenecut=0"
    if bframes is not None:
        params["x264-params"] = ":".join(filter(None, [params.get("x264-params"), f"bframes={int(bframes)}"]))
    # keep the suffix: it picks the container format
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        with av.open(str(tmp), "w") as out:
            stream = None
            for i, frame in enumerate(frames):
                frame = np.asarray(frame)
                if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                    raise ValueError(f"frame {i}: expected HxWx3 uint8, got {frame.shape} {frame.dtype}")
                if stream is None:
                    h, w = frame.shape[:2]
                    if h % 2 or w % 2:
                        raise ValueError(f"yuv420p needs even frame sizes, got {w}x{h}")
                    stream = out.add_stream("libx264", rate=rate, options=params)
                    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
                    stream.codec_context.time_base = 1 / rate
                elif frame.shape[:2] != (h, w):
                    raise ValueError(f"frame {i} is {frame.shape[1]}x{frame.shape[0]}, the video is {w}x{h}")
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                vf.pts = i
                out.mux(stream.encode(vf))
            if stream is None:
                raise ValueError("no frames to write")
            out.mux(stream.encode(None))  # flush the frames x264 still holds (lookahead, B-frames)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _board(height: int, width: int) -> tuple[int, int]:
    """Block height and width of the index board for a frame of this size."""
    bh, bw = (height - 2 * _MARGIN) // _BITS, (width - 2 * _MARGIN) // _BITS
    if min(bh, bw) < _MIN_BLOCK:
        raise ValueError(f"an index frame needs at least {2 * _MARGIN + _BITS * _MIN_BLOCK} px a side, "
                         f"got {width}x{height}")
    return bh, bw


def index_frame(i: int, height: int = 96, width: int = 128) -> np.ndarray:
    """A grey frame with a 4x4 board of black (0) / white (1) blocks spelling i in binary, row-major, LSB first."""
    if not 0 <= i < 2 ** (_BITS * _BITS):
        raise ValueError(f"index {i} does not fit in {_BITS * _BITS} bits")
    bh, bw = _board(height, width)
    frame = np.full((height, width, 3), 128, np.uint8)
    for b in range(_BITS * _BITS):
        r, c = divmod(b, _BITS)
        y, x = _MARGIN + r * bh, _MARGIN + c * bw
        frame[y:y + bh, x:x + bw] = 255 if (i >> b) & 1 else 0
    return frame


def decode_index(frame: np.ndarray) -> int:
    """Read back the index drawn by `index_frame`, from the centre of each block (edges blur under H.264)."""
    height, width = frame.shape[:2]
    bh, bw = _board(height, width)
    i = 0
    for b in range(_BITS * _BITS):
        r, c = divmod(b, _BITS)
        y, x = _MARGIN + r * bh, _MARGIN + c * bw
        centre = frame[y + bh // 4:y + bh - bh // 4, x + bw // 4:x + bw - bw // 4]
        i |= int(centre.mean() > 128) << b
    return i


def write_index_clip(path, n_frames: int, fps: float | Fraction, height: int = 96, width: int = 128,
                     gop: int | None = None, bframes: int | None = None) -> None:
    """A clip whose frame k shows index k: the ground truth for decoder tests."""
    write_video(path, (index_frame(k, height, width) for k in range(n_frames)), fps, gop=gop, bframes=bframes)
