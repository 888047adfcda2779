"""Candidate grids: which native frames a sampler may choose from, as named rules.

Each rule reproduces the arithmetic of a published codebase exactly, because a one-frame shift in the grid changes
what a sampler sees. Pure functions of (frame_count, fps, rule); nothing here decodes video.
"""
from __future__ import annotations

import math

import numpy as np

from harness.errors import HarnessError
from harness.records import CandidateGrid
from harness.util.frames import vlmevalkit_nframe

GRID_RULES = {
    "1fps": "every round(fps)-th frame, Python's banker's rounding (lmms-eval, TSPO)",
    "int-fps": "every int(fps)-th frame (AKS)",
    "fps:F": "F frames per second: int(i * fps / F) for i < int(duration * F) (VLMEvalKit's fps mode)",
    "fps-round:F": "F frames per second: round(i / F * fps), numpy's half to even, for i < int(frame_count / fps * "
                   "F), clipped to the last frame (BOLT's candidates, sming256/BOLT extract_feature.py)",
    "qwen-fps:F": "qwen-vl-utils' frames at F per second: n = frame_count / fps * F within [4, min(768, frame_count)], "
                  "floored to even, at torch.linspace(0, frame_count - 1, n).round() (float32, half to even; a "
                  "video of one frame: that frame, which qwen-vl-utils refuses) (TSPO's Qwen uniform arm)",
    "nframe:K": "K frames int(i * (frame_count / (K + 1))) for i = 1..K, both ends excluded (VLMEvalKit's nframe)",
    "count:N": "N frames spread evenly: int(linspace(0, frame_count - 1, N)), repeats dropped",
    "1fps-max:N": "the 1fps grid while it holds at most N frames, else N frames int(linspace(0, frame_count - 1, "
                  "N)) (Q-Frame's candidates, xiaomi-research/q-frame qwen2_vl_w_qframe.py load_video)",
    "1fps-min:N": "the 1fps grid while it holds at least N frames, else N frames int(linspace(0, frame_count - 1, "
                  "N)), repeats dropped (the frames TSPO's evaluation falls back to when fewer than N indices are "
                  "stored: load_video_index in Hui-design/TSPO's llava_vid_tspo and qwen25vl_vision_process)",
    "int-fps-min:N": "the int-fps grid while it holds at least N frames, else as 1fps-min:N (the frames AKS's "
                     "LLaVA-Video evaluation falls back to when fewer than N are selected: ncTimTang/AKS "
                     "evaluation/llava_vid.py load_video_index)",
    "arange:N": "n = min(N, frame_count) frames int(arange(0, frame_count, frame_count / n)), those below "
                "frame_count (numpy's float steps: at times n + 1 of them), the middle frame for n = 1 (FRAG's "
                "candidates, NVlabs/FRAG tasks/base.py VideoTask.load_visual)",
    "all": "every native frame",
}


def _bad(rule: str, why: str = "") -> HarnessError:
    return HarnessError(f"bad grid rule {rule!r}{': ' + why if why else ''} "
                        f"(valid: 1fps, int-fps, all, fps:F, fps-round:F or qwen-fps:F with F > 0, count:N, "
                        f"nframe:N, arange:N, 1fps-max:N, 1fps-min:N or int-fps-min:N with N >= 1)")


def parse_grid_rule(rule: str) -> str:
    """Validate a rule and return its canonical spelling (e.g. "FPS:0.50" -> "fps:0.5")."""
    text = str(rule).strip().lower()
    if text in ("1fps", "int-fps", "all"):
        return text
    name, sep, arg = text.partition(":")
    if sep and name in ("fps", "fps-round", "qwen-fps"):
        try:
            f = float(arg)
        except ValueError:
            raise _bad(rule, f"{arg!r} is not a number") from None
        if not (f > 0 and math.isfinite(f)):
            raise _bad(rule, "F must be positive")
        return f"{name}:{int(f) if f.is_integer() else f!r}"
    if sep and name in ("count", "nframe", "arange", "1fps-max", "1fps-min", "int-fps-min"):
        try:
            n = int(arg)
        except ValueError:
            raise _bad(rule, f"{arg!r} is not a whole number") from None
        if n < 1:
            raise _bad(rule, "N must be at least 1")
        return f"{name}:{n}"
    raise _bad(rule)


def grid_indices(frame_count: int, fps: float, rule: str) -> np.ndarray:
    """The grid's native frame indices, ascending and distinct."""
    rule = parse_grid_rule(rule)
    if frame_count < 0:
        raise HarnessError(f"frame count must not be negative, got {frame_count}")
    if not (fps > 0 and math.isfinite(fps)):
        raise HarnessError(f"fps must be positive, got {fps}")
    if rule == "all":
        return np.arange(frame_count)
    if rule == "1fps":
        return np.arange(0, frame_count, max(1, round(fps)))
    if rule == "int-fps":
        return np.arange(0, frame_count, max(1, int(fps)))
    name, _, arg = rule.partition(":")
    if name == "fps":
        # VLMEvalKit's exact float arithmetic: step = fps / F, then int(i * step)
        f = float(arg)
        step = fps / f
        idx = [int(i * step) for i in range(int(frame_count / fps * f))]
    elif name == "fps-round":
        f = float(arg)
        seconds = np.arange(int(frame_count / fps * f))
        idx = np.clip(np.round(seconds / f * fps), 0, frame_count - 1).astype(int)
    elif name == "qwen-fps":
        idx = _qwen_fps(frame_count, fps, float(arg))
    elif name == "nframe":
        idx = vlmevalkit_nframe(frame_count, int(arg))
    elif name in ("1fps-max", "1fps-min", "int-fps-min"):  # a step grid, else the count:N frames
        idx, n = grid_indices(frame_count, fps, "int-fps" if name == "int-fps-min" else "1fps"), int(arg)
        if (name == "1fps-max" and len(idx) > n) or (name != "1fps-max" and len(idx) < n):
            idx = grid_indices(frame_count, fps, f"count:{n}")
    elif name == "arange":
        n = min(int(arg), frame_count)
        if n == 1:  # the middle frame: the second of arange(0, F, F / 2)
            idx = np.arange(0, frame_count, frame_count / 2).astype(int)[1:]
        else:  # numpy's own float steps, as FRAG computes them (frame_count / n is rarely whole)
            idx = np.arange(0, frame_count, frame_count / n).astype(int) if n else []
    else:
        idx = np.linspace(0, frame_count - 1, int(arg)).astype(int) if frame_count else []
    idx = np.unique(np.asarray(idx, dtype=np.int64))  # sorted, repeats dropped
    return idx[idx < frame_count]


def _qwen_fps(frame_count: int, fps: float, f: float) -> np.ndarray:
    """qwen-vl-utils' `smart_nframes` in fps mode with its defaults (FPS_MIN_FRAMES 4, FPS_MAX_FRAMES 768,
    FRAME_FACTOR 2), then its frame positions: torch's float32 linspace, rounded half to even."""
    if frame_count < 2:
        return np.arange(frame_count)
    most = math.floor(min(768, frame_count) / 2) * 2
    n = math.floor(min(min(max(frame_count / fps * f, 4), most), frame_count) / 2) * 2
    import torch  # here only: the command line starts without torch

    return torch.linspace(0, frame_count - 1, n).round().long().numpy()


def make_grid(frame_count: int, fps: float, rule: str) -> CandidateGrid:
    """The candidate grid of a video with this frame count and average fps; timestamps are index / fps."""
    idx = grid_indices(frame_count, fps, rule)
    return CandidateGrid(indices=idx, timestamps=idx / float(fps), fps=float(fps), frame_count=int(frame_count),
                         rule=parse_grid_rule(rule))
