"""Drawing needle videos: any frame of a spec as pixels (`render_frame`, no decoding), what is visible when
(`frame_objects`, `shape_mask`, `saturation`), and writing specs to H.264 files (`write_spec_video`, and
`write_videos`: the missing files of many specs, in parallel child processes)."""
from __future__ import annotations

import functools
import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np

from harness.errors import HarnessError
from harness.util.synth import write_video
from tasks.needle.spec import COLOURS, Event, Scene, VideoSpec


# ---------------------------------------------------------------------------------------------------- drawing

def _polygon_mask(points: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test of the grid (u, v) against the closed polygon `points` (k, 2)."""
    inside = np.zeros(u.shape, bool)
    for (x0, y0), (x1, y1) in zip(points, np.roll(points, -1, axis=0)):
        crosses = (y0 > v) != (y1 > v)
        with np.errstate(divide="ignore", invalid="ignore"):
            xint = x0 + (v - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (u < xint)
    return inside


@functools.lru_cache(maxsize=None)
def shape_mask(shape: str, size: int) -> np.ndarray:
    """A (size, size) bool mask of `shape` filling most of its square (read-only, cached)."""
    c = (np.arange(size) + 0.5) / size * 2 - 1  # pixel centres in [-1, 1]
    v, u = np.meshgrid(c, c, indexing="ij")  # v down, u right
    if shape == "circle":
        m = u ** 2 + v ** 2 <= 0.95 ** 2
    elif shape == "square":
        m = (np.abs(u) <= 0.8) & (np.abs(v) <= 0.8)
    elif shape == "triangle":
        m = _polygon_mask(np.array([(0.0, -0.92), (0.95, 0.85), (-0.95, 0.85)]), u, v)
    elif shape == "star":
        ang = -np.pi / 2 + np.arange(10) * np.pi / 5
        rad = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        m = _polygon_mask(np.stack([rad * np.cos(ang), rad * np.sin(ang) + 0.08], axis=1), u, v)
    elif shape == "cross":
        m = ((np.abs(u) <= 0.3) & (np.abs(v) <= 0.95)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 0.95))
    else:
        raise ValueError(f"unknown shape {shape!r}")
    m.setflags(write=False)
    return m


def _paste(img: np.ndarray, mask: np.ndarray, top: int, left: int, rgb) -> None:
    """Fill `mask` placed with its corner at (top, left) in `img`, clipped to the frame."""
    h, w = img.shape[:2]
    s0, s1 = mask.shape
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + s0, h), min(left + s1, w)
    if y0 >= y1 or x0 >= x1:
        return
    m = mask[y0 - top:y1 - top, x0 - left:x1 - left]
    img[y0:y1, x0:x1][m] = rgb


def _scene_at(spec: VideoSpec, t: float) -> Scene:
    for sc in spec.scenes:
        if t < sc.end:
            return sc
    return spec.scenes[-1]


@functools.lru_cache(maxsize=64)
def _wave_rows(waves: tuple, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The time-independent halves of a scene's waves: (size, 2w) row factors and (w, size) column phases."""
    p = np.arange(size, dtype=np.float64)
    ky = np.array([w[2] for w in waves])[None, :]
    kx = np.array([w[1] for w in waves])[:, None]
    rows = np.concatenate([np.cos(p[:, None] * ky), np.sin(p[:, None] * ky)], axis=1)
    return rows, kx * p[None, :]


def _background(scene: Scene, t: float, size: int) -> np.ndarray:
    """(size, size, 3) float32 texture: level + sum of amp sin(kx x + ky y + phase + speed t), times the tint."""
    rows, cols = _wave_rows(scene.waves, size)
    amp = np.array([w[0] for w in scene.waves])[:, None]
    shift = np.array([w[3] + w[4] * t for w in scene.waves])[:, None]
    a = cols + shift
    # sin(a + b) = cos b sin a + sin b cos a, tinted per channel: one small matrix product straight into HxWx3
    tint = np.asarray(scene.tint)
    cols3 = np.concatenate([amp * np.sin(a), amp * np.cos(a)], axis=0)[:, :, None] * tint  # (2w, size, 3)
    rgb = rows @ cols3.reshape(len(rows[0]), size * 3) + np.tile(scene.level * tint, size)
    return rgb.reshape(size, size, 3)


def frame_objects(spec: VideoSpec, t: float) -> list[Event]:
    """The needle events visible at time t (seconds)."""
    return [e for e in spec.events if e.visible(t)]


def render_frame(spec: VideoSpec, t: float) -> np.ndarray:
    """The frame at time t (seconds) as (size, size, 3) uint8 RGB; frame i of the video is t = i / fps."""
    scene = _scene_at(spec, t)
    img = np.clip(_background(scene, t, spec.size), 0, 255).astype(np.uint8)
    for d in scene.distractors:
        top, left = d.box(t)
        _paste(img, shape_mask(d.shape, d.size), top, left, d.rgb)
    for e in frame_objects(spec, t):
        top, left, _, _ = e.box(t)
        _paste(img, shape_mask(e.shape, e.size), top, left, COLOURS[e.colour])
    return img


def iter_frames(spec: VideoSpec):
    for i in range(spec.n_frames):
        yield render_frame(spec, i / spec.fps)


def saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation (max - min) / max of uint8 RGB pixels, 0 for black."""
    x = np.asarray(rgb, np.float32)
    hi, lo = x.max(axis=-1), x.min(axis=-1)
    return np.where(hi > 0, (hi - lo) / np.maximum(hi, 1), 0.0)


# ---------------------------------------------------------------------------------------------------- writing

def write_spec_video(spec: VideoSpec, path: str | os.PathLike, crf: int = 20, gop: int = 16) -> str:
    """Render and encode one video (atomic: the file appears only when complete). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, iter_frames(spec), spec.fps, crf=crf, gop=gop)
    return str(path)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# The harness's own temp names in a needle folder, each with the writer's pid where the name carries one: the
# encoder's temp of a video (harness.util.synth.write_video), write_videos' job folder (older ones have no pid), and
# a manifest's atomic-write temp (harness.util.fileio.atomic_write).
LEFTOVER_FILES = (re.compile(r"\.needle-\w+-v\d+\.(?P<pid>\d+)\.tmp\.mp4"),
                  re.compile(r"\.manifest-n\d+\.json\.[a-z0-9_]{8}\.tmp"))
LEFTOVER_FOLDERS = (re.compile(r"\.needle-(?:(?P<pid>\d+)-)?[a-z0-9_]{8}"),)
STALE_SECONDS = 60.0


def _alive(pid: int) -> bool:
    """Whether `pid` is a live process on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    except (OverflowError, ValueError):
        return False
    return True


def _last_touched(path: Path) -> float:
    times = [path.lstat().st_mtime]
    if path.is_dir() and not path.is_symlink():
        times += [p.lstat().st_mtime for p in path.iterdir()]
    return max(times)


def remove_leftovers(root: str | os.PathLike) -> list[str]:
    """Remove what interrupted writes left in `root` (this folder only, not below): only the harness's own temp
    names (LEFTOVER_FILES, LEFTOVER_FOLDERS), only when untouched for STALE_SECONDS and their writer (the pid in
    the name, where there is one) is no live process here. A live writer on this machine is spared by its pid; one
    on another machine sharing the folder by the minute (its temp grows while it writes; its children read their job
    file at once). Returns the names removed; one that cannot be removed is left for a later write."""
    removed = []
    for entry in os.scandir(root):
        if entry.is_symlink():
            continue
        patterns = LEFTOVER_FOLDERS if entry.is_dir() else LEFTOVER_FILES if entry.is_file() else ()
        match = next((m for m in (p.fullmatch(entry.name) for p in patterns) if m), None)
        if match is None:
            continue
        pid = match.groupdict().get("pid")
        try:
            if time.time() - _last_touched(Path(entry.path)) < STALE_SECONDS or (pid and _alive(int(pid))):
                continue
            if entry.is_dir():
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:  # gone already (another writer cleaned it), or not ours to remove: the write goes on
            continue
        removed.append(entry.name)
    return removed


def write_videos(specs: list[VideoSpec], root: str | os.PathLike, workers: int | None = None) -> int:
    """Write the videos of `specs` missing under `root` (as <video_id>.mp4); returns how many were written.

    With several workers (default: one per CPU) the videos are split among child Python processes started with
    `subprocess` (never by re-running the caller's main module, so any script may call this). Every file appears
    atomically, so concurrent callers at worst write the same video twice. Temp files that interrupted writes left
    in `root` are removed first (`remove_leftovers`).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    remove_leftovers(root)
    missing = [s for s in specs if not (root / f"{s.video_id}.mp4").exists()]
    workers = max(1, min(len(missing), workers or _cpus()))
    if workers <= 1:
        for s in missing:
            write_spec_video(s, root / f"{s.video_id}.mp4")
        return len(missing)
    import subprocess
    import sys
    import tempfile

    # longest first, each to the least loaded worker
    chunks, load = [[] for _ in range(workers)], [0.0] * workers
    for s in sorted(missing, key=lambda s: -s.duration):
        k = int(np.argmin(load))
        chunks[k].append(s)
        load[k] += s.duration
    env = dict(os.environ)
    # the children import this package from the same checkout, even where it is not installed
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2])]
                                        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    # the pid in the name tells a later write whether this one is still alive (remove_leftovers)
    with tempfile.TemporaryDirectory(prefix=f".needle-{os.getpid()}-", dir=root, ignore_cleanup_errors=True) as tmp:
        procs = []
        for k, chunk in enumerate(chunks):
            job = Path(tmp) / f"job{k}.json"
            job.write_text(json.dumps({"root": str(root), "specs": [s.to_json() for s in chunk]}))
            procs.append(subprocess.Popen(
                [sys.executable, "-c", "from tasks.needle.render import _write_job; _write_job()", str(job)],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        errors = []
        for p in procs:
            _, err = p.communicate()
            if p.returncode:
                errors.append(err.decode(errors="replace").strip().splitlines()[-1:] or [f"exit {p.returncode}"])
    if errors:
        raise HarnessError(f"writing needle videos under {root} failed: {errors[0][0]}")
    return len(missing)


def _write_job() -> None:
    """Child process of `write_videos`: write the specs of the job file given as argv[1]."""
    import sys

    job = json.loads(Path(sys.argv[1]).read_text())
    for d in job["specs"]:
        spec = VideoSpec.from_json(d)
        path = Path(job["root"]) / f"{spec.video_id}.mp4"
        if not path.exists():
            write_spec_video(spec, path)