"""Parity of samplers.bolt with the official BOLT selection (sming256/BOLT, `select_frames.py`), not run by CI.

    .venv/bin/python scripts/parity_bolt.py PATH [--cases 400] [--seed 0]

PATH is a checkout of github.com/sming256/BOLT (a folder holding select_frames.py) or its bare git directory (the
file is read from HEAD). The official module imports torch, tqdm, pandas and its own extract_feature (decord,
transformers) at the top but its `inverse_transform_sampling` uses NumPy only: those imports are stubbed with empty
modules, nothing else is re-created. Both sides get the same float32 score vectors (the official scores are
`.float()` tensors turned to NumPy) over random n, K and alpha, and the script prints:

* identical: the official indices equal bolt_select's (duplicates=keep), element by element;
* past the end: the official index is n (its CDF ended below u by rounding, K = 1), ours is n - 1 (clipped), the
  rest identical;
* constant: max == min (n > 1, alpha != 0), where the official code returns K zeros from an all-NaN CDF and
  bolt_select raises;
* logits: the official function on CLIP/SigLIP logits (cosine x exp(logit_scale) [+ logit_bias], in float32) against
  bolt_select on the cosines, the scale and bias the harness leaves out: identical count.

Exit status 1 when any case is in none of the first three groups.
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
from harness.errors import HarnessError  # noqa: E402
from samplers.bolt import bolt_select  # noqa: E402

ALPHAS = (-1.0, 0.0, 0.5, 1.0, 2.0, 2.5, 3.0, 4.0, 8.0)
BUDGETS = (1, 2, 3, 4, 5, 8, 16, 32, 64)


def load_official(path: Path):
    """The official select_frames module, its heavy imports stubbed."""
    source = path / "select_frames.py"
    if not source.is_file():  # a bare git directory, as `fetch` leaves it
        text = subprocess.run(["git", "--git-dir", str(path), "show", "HEAD:select_frames.py"], check=True,
                              capture_output=True, text=True).stdout
        source = Path(tempfile.mkdtemp(prefix="bolt-official-")) / "select_frames.py"
        source.write_text(text)
    for name in ("torch", "tqdm", "pandas"):
        sys.modules.setdefault(name, types.ModuleType(name))
    stub = types.ModuleType("extract_feature")
    stub.get_model = None  # select_frames.py imports the name; selection never calls it
    sys.modules["extract_feature"] = stub
    spec = importlib.util.spec_from_file_location("bolt_official_select_frames", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.inverse_transform_sampling


def random_scores(rs: np.random.RandomState, n: int) -> np.ndarray:
    """float32 scores of one of several shapes: CLIP-like cosines, one or a few peaks, heavy ties, plain uniform."""
    kind = rs.randint(5)
    if kind == 0:  # CLIP ViT-L/14 cosines: ~0.15-0.30 with a smooth bump
        t = np.arange(n)
        x = 0.2 + 0.02 * rs.randn(n) + 0.08 * np.exp(-0.5 * ((t - rs.uniform(0, n)) / max(1.0, n / 20)) ** 2)
    elif kind == 1:  # a few sharp peaks over noise
        x = 0.05 * rs.rand(n)
        x[rs.randint(0, n, rs.randint(1, 4))] = 1.0
    elif kind == 2:  # few distinct values: many ties
        x = rs.randint(0, 4, n) / 4.0
    elif kind == 3:  # fp16-rounded logits (cos x 100), as the official CUDA autocast gives
        x = (100 * (0.2 + 0.03 * rs.randn(n))).astype(np.float16).astype(np.float64)
    else:
        x = rs.rand(n)
    return x.astype(np.float32)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="checkout (or bare git directory) of sming256/BOLT")
    parser.add_argument("--cases", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    official = load_official(args.path)
    rs = np.random.RandomState(args.seed)
    identical = past_end = constant = logits_same = 0
    other = []
    for case in range(args.cases):
        n = int(rs.choice([1, 2, 3, 5, 8, 17, 40, 64, 128, 300, 601]))
        k, alpha = int(rs.choice(BUDGETS)), float(rs.choice(ALPHAS))
        scores = np.full(n, 0.25, np.float32) if case % 50 == 49 else random_scores(rs, n)
        with np.errstate(all="ignore"):
            theirs = np.asarray(official(scores.copy(), k, alpha))
        try:
            ours = bolt_select(scores, k, alpha=alpha)
        except HarnessError as e:
            if "constant scores" in str(e) and n > 1 and alpha != 0 and not theirs.any():
                constant += 1
            else:
                other.append((case, n, k, alpha, str(e)))
            continue
        if np.array_equal(ours, theirs):
            identical += 1
        elif np.array_equal(ours, np.minimum(theirs, n - 1)) and (theirs == n).any():
            past_end += 1
        else:
            other.append((case, n, k, alpha, f"official {theirs.tolist()} ours {ours.tolist()}"))
        # the logits the official code samples from: cosine x exp(logit_scale) (+ SigLIP's bias), in float32
        scale, bias = (100.0, 0.0) if case % 2 else (float(np.exp(4.7)), -12.9)
        logits = (scores.astype(np.float32) * np.float32(scale) + np.float32(bias)).astype(np.float32)
        with np.errstate(all="ignore"):
            theirs_logits = np.minimum(np.asarray(official(logits, k, alpha)), n - 1)
        logits_same += np.array_equal(ours, theirs_logits)
    total = args.cases
    print(f"bolt parity: {identical}/{total} identical; {past_end} past the end (official n, ours n-1); "
          f"{constant} constant (official K zeros, ours HarnessError); {len(other)} other")
    print(f"scale and bias: {logits_same}/{total - constant} identical with the official code on the logits "
          f"(after its past-the-end index is clipped)")
    for row in other[:10]:
        print("  differs:", row)
    return 1 if other else 0


if __name__ == "__main__":
    sys.exit(main())
