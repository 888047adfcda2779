"""Parity of the shots sampler's shot boundaries with PySceneDetect's own scene detection, not run by CI.

    .venv/bin/python scripts/parity_shots.py [PATH] [--cases 300] [--seed 0]

PATH is a checkout of github.com/Breakthrough/PySceneDetect (a folder holding the `scenedetect` package) or its
bare git directory (HEAD is exported to a temporary folder); without it, the installed `scenedetect` release is the
official side. Its imports (OpenCV, NumPy, click, platformdirs, tqdm) come from this environment.

The official side is PySceneDetect's documented pipeline: a `SceneManager` with a `StatsManager`, one
`ContentDetector(threshold, min_scene_len)`, `detect_scenes(video)` over an in-memory `VideoStream` (the interface
PySceneDetect's backends implement) that yields the frames in BGR, and `get_scene_list(start_in_scene=True)`; the
SceneManager downscales the frames itself (auto). The harness side is `harness.features.framediff` (the frame-diff
encoder the feature store runs on the decoded RGB frames) and `samplers.shots.shot_cuts`. Each case is a random
sequence of frames (flat-colour shots with noise and drift, grey-level steps, random sizes from 16 to 640 pixels
wide), a random threshold and min_scene_len (in frames, 0 to 6), and the script prints:

* values identical: the encoder's value per frame equals the detector's `content_val` (0 for the first frame);
* cuts identical: the shots' starts the harness finds equal the scene starts of `get_scene_list` (and in how many
  cases the minimum shot length changed the cuts, i.e. the flash filter's merging was exercised).

Exit status 1 when any case differs.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np


def official_path(path: str | None) -> None:
    """Put the `scenedetect` package of a checkout (or a bare git directory's HEAD) first on sys.path."""
    if path is None:
        return
    root = Path(path)
    if not (root / "scenedetect").is_dir():
        out = Path(tempfile.mkdtemp(prefix="pyscenedetect-"))
        archive = subprocess.run(["git", "--git-dir", str(root), "archive", "HEAD", "scenedetect"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
        root = out
    sys.path.insert(0, str(root))


def array_stream(frames_rgb: np.ndarray):
    """A PySceneDetect VideoStream over (n, H, W, 3) RGB frames at 1 fps, read in BGR as its backends give them."""
    from scenedetect import FrameTimecode, VideoStream

    class ArrayStream(VideoStream):
        BACKEND_NAME = "array"

        def __init__(self, frames):
            self.frames, self._next = frames, 0

        path = name = property(lambda self: "array")
        is_seekable = property(lambda self: False)
        frame_rate = property(lambda self: Fraction(1))
        duration = property(lambda self: FrameTimecode(len(self.frames), fps=self.frame_rate))
        frame_size = property(lambda self: (self.frames.shape[2], self.frames.shape[1]))
        aspect_ratio = property(lambda self: 1.0)
        position = property(lambda self: FrameTimecode(max(self._next - 1, 0), fps=self.frame_rate))
        position_ms = property(lambda self: 1000.0 * max(self._next - 1, 0))
        frame_number = property(lambda self: self._next)

        def read(self, decode: bool = True):
            if self._next >= len(self.frames):
                return False
            self._next += 1
            return np.ascontiguousarray(self.frames[self._next - 1][..., ::-1]) if decode else True

        def reset(self):
            self._next = 0

        def seek(self, target):
            raise NotImplementedError

    return ArrayStream(frames_rgb)


def official(frames_rgb: np.ndarray, threshold: float, min_scene_len: int) -> tuple[np.ndarray, list[int]]:
    """(content_val per frame, 0 where the detector records none; the frames that start a scene, after the first)
    from PySceneDetect's own SceneManager + ContentDetector."""
    from scenedetect import ContentDetector, FrameTimecode, SceneManager, StatsManager

    stats = StatsManager()
    manager = SceneManager(stats_manager=stats)
    manager.add_detector(ContentDetector(threshold=threshold, min_scene_len=min_scene_len))
    manager.detect_scenes(video=array_stream(frames_rgb))
    values = np.zeros(len(frames_rgb))
    for i in range(len(frames_rgb)):  # timecodes hash by frame number
        value = stats.get_metrics(FrameTimecode(i, fps=Fraction(1)), [ContentDetector.FRAME_SCORE_KEY])[0]
        values[i] = 0.0 if value is None else value
    starts = [start.frame_num for start, _ in manager.get_scene_list(start_in_scene=True)]
    return values, starts[1:]


def harness_side(frames_rgb: np.ndarray, threshold: float, min_scene_len: int, chunk: int = 7):
    """(values of the frame-diff encoder, fed in chunks as the feature store does; the cuts of samplers.shots)."""
    from harness.features.framediff import ContentDiffScorer
    from samplers.shots import shot_cuts

    run = ContentDiffScorer("scenedetect:content").start()
    values = np.concatenate([run.update(frames_rgb[i:i + chunk]) for i in range(0, len(frames_rgb), chunk)])
    return values, shot_cuts(values, threshold, min_scene_len)


def random_frames(rng) -> np.ndarray:
    """A random sequence: shots of flat colours with noise and drift, or grey steps (exact content values)."""
    n = int(rng.integers(2, 40))
    width = int(rng.choice([16, 64, 200, 256, 320, 640]))
    height = max(8, int(width * rng.choice([0.5, 0.5625, 0.75, 1.0])))
    if rng.random() < 0.3:  # grey steps: every content value is |delta grey| / 3
        levels = rng.integers(0, 256, size=n)
        return np.repeat(levels.astype(np.uint8), height * width * 3).reshape(n, height, width, 3)
    frames = np.empty((n, height, width, 3), np.uint8)
    colour = rng.integers(0, 256, size=3)
    for t in range(n):
        if rng.random() < 0.25:
            colour = rng.integers(0, 256, size=3)  # a new shot
        noise = rng.normal(0, rng.choice([0, 4, 12]), size=(height, width, 3))
        drift = rng.integers(-6, 7, size=3)
        colour = np.clip(colour + drift, 0, 255)
        frames[t] = np.clip(colour + noise, 0, 255).astype(np.uint8)
    return frames


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", help="PySceneDetect checkout or bare git directory (default: installed)")
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    official_path(args.path)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import scenedetect

    from samplers.shots import shot_cuts

    merged = 0
    rng = np.random.default_rng(args.seed)
    same_values = same_cuts = 0
    for case in range(args.cases):
        frames = random_frames(rng)
        threshold = float(rng.choice([3.0, 8.0, 15.0, 27.0, float(rng.uniform(1, 60))]))
        min_len = int(rng.integers(0, 7))
        ref_values, ref_cuts = official(frames, threshold, min_len)
        values, cuts = harness_side(frames, threshold, min_len)
        same_values += bool(np.array_equal(values, ref_values))
        same_cuts += cuts == ref_cuts
        merged += cuts != shot_cuts(values, threshold, 0)  # the minimum length changed the cuts
        if cuts != ref_cuts and same_cuts + 5 > case:
            print(f"case {case}: threshold {threshold} min_scene_len {min_len}: official {ref_cuts}, harness {cuts}")
    print(f"scenedetect {scenedetect.__version__} from {Path(scenedetect.__file__).parent}")
    print(f"values identical: {same_values}/{args.cases}")
    print(f"cuts identical: {same_cuts}/{args.cases} ({merged} cases where min_scene_len merged or dropped cuts)")
    return 0 if same_values == same_cuts == args.cases else 1


if __name__ == "__main__":
    sys.exit(main())
