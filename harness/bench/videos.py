"""`harness bench`'s inputs: a cached set of long generated H.264 videos and a Video-MME style annotation file on
them, so the real `videomme` task gives both loops the same samples and the exact lmms-eval prompts."""
from __future__ import annotations

import json
import os
import shutil
from fractions import Fraction
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from harness.bench.config import BenchConfig
from harness.errors import HarnessError


def _planes(seed: int, n: int, height: int, width: int):
    """Cheap, varied yuv420p frames: a per-video texture panning across the screen and a moving block; real work
    for H.264 (motion, texture) while a frame costs a slice and a copy (no colour conversion), so writing the set
    stays short."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(16, 236, (height // 32 + 1, 2 * width // 32 + 1), dtype=np.uint8)
    luma = np.repeat(np.repeat(cells, 32, 0), 32, 1)[:height, :2 * width]
    chroma = np.repeat(np.repeat(rng.integers(64, 192, (height // 16 + 1, width // 16 + 1), dtype=np.uint8), 8, 0),
                       8, 1)[:height // 2]
    bh, bw = height // 6, width // 8
    for i in range(n):
        offset = (2 * i) % width
        frame = np.empty((height * 3 // 2, width), np.uint8)
        frame[:height] = luma[:, offset:offset + width]
        y, x = (i * 3) % (height - bh), (i * 7) % (width - bw)
        frame[y:y + bh, x:x + bw] = 255 - frame[y, x]
        u = chroma[:height // 2, (offset // 2) % (width // 2):][:, :width // 2]
        u = np.pad(u, ((0, 0), (0, width // 2 - u.shape[1])), mode="wrap")
        # the U and V planes, each (h/2, w/2), follow the luma as rows of w, as av's yuv420p layout has them
        frame[height:height + height // 4] = u.reshape(height // 4, width)
        frame[height + height // 4:] = 255 - frame[height:height + height // 4]
        yield frame


def _encoder_options(codec: str, gop: int) -> dict:
    if codec == "h264_nvenc":  # fastest preset, constant QP, fixed GOP without B-frames or scene-cut keyframes
        return {"preset": "p1", "rc": "constqp", "qp": "23", "g": str(gop), "bf": "0", "no-scenecut": "1"}
    return {"preset": "ultrafast", "crf": "23", "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}


def video_codec(choice: str) -> str:
    """The H.264 encoder to write with: `auto` is h264_nvenc where it opens here (a GPU with NVENC and PyAV's
    FFmpeg built with it), else libx264."""
    if choice not in ("auto", "h264_nvenc", "libx264"):
        raise HarnessError(f"--video-codec must be auto, h264_nvenc or libx264, got {choice!r}")
    if choice != "auto":
        return choice
    import av

    try:  # opening the encoder on a small frame is the only reliable test (the codec may exist without a GPU)
        ctx = av.CodecContext.create("h264_nvenc", "w")
        ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = 256, 256, "yuv420p", Fraction(1, 30)
        ctx.open()
        return "h264_nvenc"
    except Exception:
        return "libx264"


def _write_one(path: str, seed: int, n: int, height: int, width: int, fps: float, gop: int,
               codec: str = "libx264") -> str:
    """H.264 (libx264 ultrafast or h264_nvenc p1, fixed GOP, yuv420p) through PyAV, written atomically like
    `harness.util.synth`. ultrafast keeps the set quick to write; its streams are, if anything, cheaper to decode
    than camera video, which favours the reference loop (it decodes per question)."""
    import av

    from harness.util.synth import as_rate

    rate = as_rate(fps)
    tmp = Path(path).with_name(f".{Path(path).stem}.{os.getpid()}.tmp.mp4")
    try:
        with av.open(str(tmp), "w") as out:
            stream = out.add_stream(codec, rate=rate, options=_encoder_options(codec, gop))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.codec_context.time_base = 1 / rate
            for i, planes in enumerate(_planes(seed, n, height, width)):
                frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
                frame.pts = i
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def video_set(cfg: BenchConfig, codec: str = "libx264") -> tuple[Path, list[Path]]:
    """The cached video set for these settings (written where missing with `codec`) and its folder."""
    if cfg.height % 2 or cfg.width % 2:
        raise HarnessError(f"video size must be even, got {cfg.width}x{cfg.height}")
    if cfg.videos < 1 or cfg.minutes <= 0 or cfg.fps <= 0:
        raise HarnessError("bench needs at least one video of positive length and frame rate")
    folder = Path(cfg.video_dir) / (f"{cfg.width}x{cfg.height}_{cfg.fps:g}fps_{cfg.minutes:g}min_gop{cfg.gop}"
                                    + ("" if codec == "libx264" else f"_{codec}"))
    folder.mkdir(parents=True, exist_ok=True)
    n = int(round(cfg.minutes * 60 * cfg.fps))
    paths = [folder / f"bench_{i:03d}.mp4" for i in range(cfg.videos)]
    missing = [p for p in paths if not p.is_file()]  # write_video renames a finished file into place
    if missing:
        jobs = cfg.encode_jobs or min(len(missing), os.cpu_count() or 1)
        try:
            with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
                list(pool.map(_write_one, [str(p) for p in missing], [int(p.stem[-3:]) for p in missing],
                              [n] * len(missing), [cfg.height] * len(missing), [cfg.width] * len(missing),
                              [cfg.fps] * len(missing), [cfg.gop] * len(missing), [codec] * len(missing)))
        except BrokenProcessPool as e:  # a writer was killed (the pool cannot say by what): say where and what
            left = [p.name for p in missing if not p.is_file()]
            free = shutil.disk_usage(folder).free / 2**30
            raise HarnessError(f"a video writer process died while writing {folder} ({len(left)} of {len(missing)} "
                               f"videos unwritten: {', '.join(left[:4])}{' ...' if len(left) > 4 else ''}; "
                               f"{free:.1f} GiB free there; killed, e.g. out of memory?); the finished videos are "
                               f"kept: run again to write the rest") from e
    return folder, paths


def write_annotations(folder: Path, paths: list[Path], questions: int) -> Path:
    """A Video-MME style annotation file: `questions` four-option questions per video."""
    records = []
    for p in paths:
        for q in range(questions):
            records.append({
                "video_id": p.stem, "videoID": p.stem, "question_id": f"{p.stem}-{q + 1}", "duration": "medium",
                "domain": "bench", "sub_category": "bench", "task_type": "bench", "url": "",
                "question": [f"What colour is the moving block in {p.stem}?",
                             "Which direction does the texture drift during the video?",
                             "How many distinct objects move across the screen over the whole clip?",
                             "What happens at the end?"][q % 4],
                "options": ["A. red", "B. green", "C. blue", "D. none of these"], "answer": "A"})
    path = folder / f"videomme_{questions}q.json"
    text = json.dumps(records, indent=1)
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return path
