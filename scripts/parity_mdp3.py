"""Parity of `samplers.mdp3` with the public MDP3 implementation of the authors' organisation (AIDC-AI/Ovis,
`plugin/mdp3.py`, class MDP3, method `_select_frames_fast`), on seeded random inputs. Not run by CI.

    .venv/bin/python scripts/parity_mdp3.py PATH [--cases 240] [--dtype float64]

PATH is a checkout of AIDC-AI/Ovis (a folder holding plugin/mdp3.py) or its bare git directory (the file is read
with `git show HEAD:plugin/mdp3.py` into a temporary folder). The official module imports torch and transformers at
the top (both are in .venv); its MDP3 is built without its constructor, which would load a SigLIP model: only the
attributes `_select_frames_fast` reads are set (n_selection, lamda, segment_size, condition_size, kernel). Both get
the same L2-normalised features (as SigLIP's image_embeds / text_embeds are). The official code indexes past the
grid when the grid is not a multiple of the segment length, so grids here are multiples of it (or one segment). The official condition_size=0 conditions on the whole path (its
slice path[-0:] is the whole list), which is our condition >= K; our condition=0 conditions on nothing.
Prints the number of identical selections.
"""
from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from samplers.mdp3 import DEFAULT_ALPHAS, mdp3_select  # noqa: E402


def official_module(path: Path):
    source = path / "plugin" / "mdp3.py"
    if not source.is_file():  # a bare git directory, as `fetch` leaves it
        text = subprocess.run(["git", "--git-dir", str(path), "show", "HEAD:plugin/mdp3.py"], check=True,
                              capture_output=True, text=True).stdout
        source = Path(tempfile.mkdtemp()) / "official_mdp3.py"
        source.write_text(text)
    spec = importlib.util.spec_from_file_location("official_mdp3", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def case(rng: np.random.Generator):
    """Features with temporal structure: a few scenes, frames drifting around their scene, a query near one."""
    m = int(rng.choice([8, 16, 32, -1]))
    n = int(rng.choice([32, 64, 96, 128])) if m != -1 else int(rng.integers(20, 129))
    k = int(rng.choice([1, 2, 4, 8, 16]))
    d = int(rng.choice([8, 16, 32]))
    scenes = rng.normal(size=(int(rng.integers(2, 8)), d))
    cuts = np.sort(rng.choice(np.arange(1, n), size=len(scenes) - 1, replace=False))
    x = np.concatenate([scenes[i] + 0.5 * rng.normal(size=(len(part), d))
                        for i, part in enumerate(np.split(np.arange(n), cuts))])
    q = scenes[rng.integers(len(scenes))] + float(rng.uniform(0.3, 2.0)) * rng.normal(size=d)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q /= np.linalg.norm(q)
    return x, q, k, m, float(rng.choice([0.2, 0.2, 0.5, 1.0])), int(rng.choice([1, 1, 0, 2]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="AIDC-AI/Ovis checkout or bare git directory")
    parser.add_argument("--cases", type=int, default=240)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    args = parser.parse_args()
    import torch

    official = official_module(args.path.resolve())
    dtype = getattr(torch, args.dtype)
    rng = np.random.default_rng(args.seed)
    same, differ = 0, []
    for i in range(args.cases):
        x, q, k, m, lam, condition = case(rng)
        ref = object.__new__(official.MDP3)  # no SigLIP: only what _select_frames_fast reads
        ref.n_selection, ref.lamda, ref.segment_size, ref.condition_size = k, lam, m, condition
        ref.kernel = official.MultiGaussianKernel(alphas=[2 ** e for e in range(-3, 2)])
        with torch.no_grad():
            theirs = [int(v) for v in ref._select_frames_fast(torch.tensor(x, dtype=dtype),
                                                              torch.tensor(q[None], dtype=dtype))]
        # official condition_size=0 slices path[-0:], the whole path: ours is condition >= K
        ours = mdp3_select(x, q, k, lam=lam, segment=m, condition=condition or k, alphas=DEFAULT_ALPHAS)
        if ours == sorted(theirs):
            same += 1
        else:
            differ.append((i, len(x), k, m, lam, condition, ours, theirs))
    print(f"mdp3 parity ({args.dtype}, {args.cases} cases, seed {args.seed}): {same}/{args.cases} identical")
    for row in differ[:10]:
        print("  differs: case %d n=%d k=%d m=%d lambda=%s condition=%d ours=%s official=%s" % row)
    return 0 if same == args.cases else 1


if __name__ == "__main__":
    sys.exit(main())
