"""`smoke`: a small generated task that runs anywhere in seconds.

Each video is a slowly drifting grey texture with a moving grey disc (a distractor with no colour) and, for three
seconds somewhere, one saturated coloured square (the needle). The question asks its colour, so the answer is only
visible if a selected frame falls inside those three seconds: the choice of frames decides the answer.
Videos are written once (H.264 via PyAV) and reused; everything is deterministic from the seed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.util.paths import data_home
from harness.records import Sample
from harness.registry import TASKS
from harness.util.synth import write_video
from tasks.base import Task

COLOURS = {  # name -> RGB; hues far apart so H.264's chroma subsampling cannot confuse them
    "red": (220, 30, 30), "green": (30, 200, 40), "blue": (40, 60, 230),
    "yellow": (230, 220, 30), "magenta": (220, 40, 220), "cyan": (30, 210, 220),
}
FPS, HEIGHT, WIDTH, SQUARE, NEEDLE_SECONDS = 8, 96, 128, 28, 3.0


def render_video(path: Path, duration: float, needle: tuple[float, float], colour: str, rng) -> None:
    n = int(round(duration * FPS))
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    phase, speed = rng.uniform(0, 2 * np.pi, 2), rng.uniform(0.5, 1.5)
    sy, sx = int(rng.integers(4, HEIGHT - SQUARE - 4)), int(rng.integers(4, WIDTH - SQUARE - 4))

    def frames():
        for i in range(n):
            t = i / FPS
            grey = 110 + 40 * np.sin(xx / 11 + phase[0] + 0.07 * t) * np.cos(yy / 13 + phase[1] - 0.05 * t)
            cx, cy = WIDTH / 2 + 45 * np.sin(speed * t / 3), HEIGHT / 2 + 30 * np.cos(speed * t / 4)
            grey = np.where((xx - cx) ** 2 + (yy - cy) ** 2 < 100, 230, grey)
            frame = np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)
            if needle[0] <= t < needle[1]:
                frame[sy:sy + SQUARE, sx:sx + SQUARE] = COLOURS[colour]
            yield frame

    write_video(path, frames(), FPS)


@TASKS.register("smoke", description="generated coloured-square videos (offline smoke test, seconds to run)",
                help={"videos": "number of videos (one question each)", "seed": "generator seed",
                      "root": "directory for the generated videos (default: the harness data home)",
                      "duration": "video length in seconds"})
class SmokeTask(Task):
    name = "smoke"
    category_keys = ("position",)
    stratify_key = "position"
    location_keys = ("root",)

    def __init__(self, videos: int = 12, seed: int = 0, duration: float = 40.0, root: str | None = None):
        self.n_videos, self.seed, self.duration = int(videos), int(seed), float(duration)
        self.root = Path(root) if root else data_home() / "smoke" / f"seed{self.seed}-n{self.n_videos}-d{self.duration:g}"

    def config(self) -> dict:
        return {"videos": self.n_videos, "seed": self.seed, "duration": self.duration, "root": str(self.root)}

    def samples(self) -> list[Sample]:
        rng = np.random.default_rng(self.seed)
        names = sorted(COLOURS)
        out = []
        for v in range(self.n_videos):
            start = float(rng.uniform(1.0, self.duration - NEEDLE_SECONDS - 1.0))
            colour = names[int(rng.integers(len(names)))]
            distractors = [c for c in names if c != colour]
            options = [colour] + [distractors[i] for i in rng.choice(len(distractors), 3, replace=False)]
            order = rng.permutation(4)
            options = [options[i] for i in order]
            path = self.root / f"smoke_{v:03d}.mp4"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                render_video(path, self.duration, (start, start + NEEDLE_SECONDS), colour,
                             np.random.default_rng([self.seed, v]))
            third = min(int(3 * start / self.duration), 2)
            out.append(Sample(
                id=f"smoke_{v:03d}", video=str(path),
                question="What colour is the square that appears briefly in the video?",
                options=tuple(options), answer=options.index(colour), duration=self.duration,
                categories={"position": ("early", "middle", "late")[third]},
                evidence=((start, start + NEEDLE_SECONDS),),
            ))
        return out
