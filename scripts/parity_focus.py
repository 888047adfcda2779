"""Parity of samplers.focus with the official FOCUS selection (NUS-HPC-AI-Lab/FOCUS, `focus.py`), not run by CI.

    .venv/bin/python scripts/parity_focus.py PATH [--cases 255] [--seed 0]

PATH is a checkout of github.com/NUS-HPC-AI-Lab/FOCUS (a folder holding focus.py) or its bare git directory (the
file is read from HEAD). The official module imports scipy's Rbf (only its rbf interpolation uses it) and decord's
VideoReader (a type hint): both are stubbed with empty stand-ins, nothing else is re-created. The official
`FOCUS.select_keyframes` gets a fake video (n frames at fps) and a fake score function; `focus_select` gets the same
n, fps (frames are grid positions) and score function, and each side its own `np.random.default_rng(case seed)`, so
every random draw must match. The minimum gap is select_keyframe.py's adaptive one, computed inline in its ray worker
(not importable: torch, ray, LAVIS); the script passes the official side that formula, transcribed, and focus_select
computes its own. Scores: uniform in [0, 1] (BLIP-like), quantised to a few levels (ties), CLIP-like cosines in
[-0.2, 0.45] (clipped by both sides' interpolation) and a smooth curve with a peak. The script prints how many
selections are identical, how many frames each side scored and the number of cases, and exits 1 on any difference.
"""
from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from samplers.focus import FocusParams, focus_select  # noqa: E402

FPS = (1.0, 2.0, 5.0, 24.0, 25.0, 29.97, 30.0)
BUDGETS = (1, 2, 4, 8, 16, 32, 64, 128)


def load_official(path: Path):
    """The official FOCUS class, its heavy imports stubbed."""
    source = path / "focus.py"
    if not source.is_file():  # a bare git directory, as `fetch` leaves it
        text = subprocess.run(["git", "--git-dir", str(path), "show", "HEAD:focus.py"], check=True,
                              capture_output=True, text=True).stdout
        source = Path(tempfile.mkdtemp(prefix="focus-official-")) / "focus.py"
        source.write_text(text)
    for name, attr in (("scipy.interpolate", "Rbf"), ("decord", "VideoReader")):
        module = types.ModuleType(name)
        setattr(module, attr, object)
        sys.modules.setdefault(name, module)
    sys.modules.setdefault("scipy", types.ModuleType("scipy"))
    spec = importlib.util.spec_from_file_location("focus_official", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FOCUS


class FakeVideo:
    def __init__(self, n: int, fps: float):
        self.n, self.fps = n, fps

    def __len__(self):
        return self.n

    def get_avg_fps(self):
        return self.fps


def official_gap(n: int, fps: float, k: int, p: FocusParams) -> float:
    """select_keyframe.py's adaptive min-gap (ray_worker), transcribed."""
    duration = float(n) / max(1.0, fps)
    spacing = duration / max(1, k)
    if spacing <= float(p.disable_gap_below_sec):
        return 0.0
    return min(float(p.gap_ratio_of_avg) * spacing, float(p.min_gap_sec))


def random_scores(rs: np.random.RandomState, n: int) -> np.ndarray:
    kind = rs.randint(4)
    if kind == 0:
        return rs.rand(n)
    if kind == 1:
        return np.round(rs.rand(n) * 4) / 4  # ties
    if kind == 2:
        return rs.uniform(-0.2, 0.45, n)
    t = np.arange(n)
    return np.clip(0.2 + 0.7 * np.exp(-((t - rs.randint(n)) / max(1.0, n / 20)) ** 2) + 0.05 * rs.rand(n), 0, 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", type=Path)
    ap.add_argument("--cases", type=int, default=255)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    FOCUS = load_official(args.path)
    rs = np.random.RandomState(args.seed)
    same = scored_ours = scored_theirs = 0
    for case in range(args.cases):
        fps = FPS[rs.randint(len(FPS))]
        n = int(rs.randint(2, 6000) if rs.rand() < 0.7 else rs.randint(6000, 40000))
        k = BUDGETS[rs.randint(len(BUDGETS))]
        p = FocusParams(interpolation="uniform" if case % 10 == 9 else "nearest")
        scores = random_scores(rs, n)
        asked = {"ours": 0, "theirs": 0}

        def theirs_fn(video, query, idx):
            asked["theirs"] += len(idx)
            return [float(scores[i]) for i in idx]

        def ours_fn(idx):
            asked["ours"] += len(idx)
            return scores[np.asarray(idx)]

        official = FOCUS(similarity_fn=theirs_fn, interpolation_method=p.interpolation)
        theirs, _ = official.select_keyframes(FakeVideo(n, fps), "q", k, min_gap_sec=official_gap(n, fps, k, p),
                                              rng=np.random.default_rng(case))
        ours = focus_select(n, k, np.arange(n) / fps, ours_fn, rng=np.random.default_rng(case), params=p, fps=fps)
        scored_ours += asked["ours"]
        scored_theirs += asked["theirs"]
        if list(ours) == list(theirs) and asked["ours"] == asked["theirs"]:
            same += 1
        else:
            print(f"case {case}: n={n} fps={fps} k={k} {p.interpolation}: ours {list(ours)[:12]} theirs "
                  f"{list(theirs)[:12]}, scored {asked['ours']} vs {asked['theirs']}")
    print(f"identical selections (and frames scored): {same}/{args.cases}")
    print(f"frames scored: ours {scored_ours}, official {scored_theirs}")
    return 0 if same == args.cases else 1


if __name__ == "__main__":
    raise SystemExit(main())
