"""Parity of samplers.maxinfo with the official MaxInfo selection, on seeded random feature matrices. Not run by CI.

The official selection (FusionBrainLab/MaxInfo, `maxinfo_selection.py`) is sklearn TruncatedSVD(n_components=R,
random_state=42).fit_transform(Q), an optional normalize_svd_output, then maxvolpy's rect_maxvol(Qs, maxK=max_n,
tol=tol), indices sorted. Run it in a side environment with numpy, scipy and scikit-learn:

    python scripts/parity_maxinfo.py --maxvolpy /path/to/maxvolpy-source [--official /path/to/MaxInfo] [--cases 240]

--maxvolpy: a copy of the maxvolpy source (the library the official code vendors; `pip install --no-clean` leaves
one when its C build fails; its pure-Python maxvol is used). --official: a MaxInfo checkout; its
`truncated_svd` and `rectangular_maxvol` are imported with torch/clip/tqdm stubbed. Without it the two are
re-created here from the released code's three lines (TruncatedSVD(R, random_state=42), astype float64,
rect_maxvol(maxK=max_n, tol)). Prints the counts of identical selections:

  maxvol   the same Qs (the official SVD's output) into both maxvols: the maxvol implementations alone;
  full     features -> selection, K >= R (this side's SVD: --svd randomized, the default, or exact);
  k<R      K < R, where the official call returns R > K frames and this one lowers the rank to K (by design).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def load_official(maxvolpy: str | None, official: str | None):
    if maxvolpy:
        sys.path.insert(0, maxvolpy)
    if official:
        for name in ("torch", "clip", "tqdm"):  # only the feature extractor uses them
            if importlib.util.find_spec(name) is None:
                stub = types.ModuleType(name)
                stub.tqdm = lambda x, **k: x
                stub.cuda = types.SimpleNamespace(is_available=lambda: False)
                sys.modules[name] = stub
        [path] = sorted(Path(official).rglob("maxinfo_selection.py"))[:1]
        package = path.parent.name
        sys.path.insert(0, str(path.parent.parent))
        module = importlib.import_module(f"{package}.maxinfo_selection")
        return module.truncated_svd, module.rectangular_maxvol
    from maxvolpy.maxvol import rect_maxvol
    from sklearn.decomposition import TruncatedSVD
    from sklearn.preprocessing import MinMaxScaler, StandardScaler, normalize

    def truncated_svd(q, r=8, normalize_output=None):  # the released code's truncated_svd
        qs = TruncatedSVD(n_components=r, random_state=42).fit_transform(q)
        if normalize_output == "standard":
            qs = StandardScaler().fit_transform(qs)
        elif normalize_output == "minmax":
            qs = MinMaxScaler().fit_transform(qs)
        elif normalize_output == "l2":
            qs = normalize(qs, norm="l2")
        return qs

    def rectangular_maxvol(qs, max_n, tol=0.3):  # the released code's rectangular_maxvol
        return rect_maxvol(qs, maxK=max_n, tol=tol)[0].tolist()

    return truncated_svd, rectangular_maxvol


def video_like(rng, n: int, d: int) -> np.ndarray:
    """Scenes of similar frames: piecewise-constant means, drift and noise, CLIP-like scale."""
    cuts = np.sort(rng.choice(np.arange(1, n), size=rng.integers(2, 12), replace=False))
    means = rng.normal(size=(len(cuts) + 1, d))
    scene = np.searchsorted(cuts, np.arange(n), side="right")
    drift = np.cumsum(rng.normal(scale=0.05, size=(n, d)), axis=0)
    return (means[scene] + drift + rng.normal(scale=rng.choice([0.05, 0.2, 0.5]), size=(n, d))).astype(np.float32)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--maxvolpy", help="a maxvolpy source folder (else the installed one)")
    ap.add_argument("--official", help="a FusionBrainLab/MaxInfo checkout")
    ap.add_argument("--cases", type=int, default=240)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--svd", default="randomized", choices=("randomized", "exact"), help="this side's SVD")
    args = ap.parse_args()
    truncated_svd, rectangular_maxvol = load_official(args.maxvolpy, args.official)
    from samplers.maxinfo import maxinfo_select, rect_maxvol

    rng = np.random.default_rng(args.seed)
    same = {"maxvol": 0, "full": 0, "k<R": 0}
    total = {"maxvol": 0, "full": 0, "k<R": 0}
    shown = 0
    for case in range(args.cases):
        n = int(rng.integers(24, 400))
        d = int(rng.choice([32, 64, 128, 512]))
        r = int(rng.choice([4, 8, 8, 16]))
        k = int(rng.choice([4, 8, 16, 32, 64]))
        k = min(k, n - 1)
        tol = float(rng.choice([0.3, 0.3, 0.5, 1.0]))
        norm = str(rng.choice(["none", "none", "none", "l2", "standard", "minmax"]))
        q = video_like(rng, n, d) if rng.random() < 0.75 else rng.normal(size=(n, d)).astype(np.float32)
        qs = truncated_svd(q, r, None if norm == "none" else norm).astype(np.float64)
        theirs = sorted(int(i) for i in rectangular_maxvol(qs, k, tol))
        mine_mv = sorted(int(i) for i in rect_maxvol(qs, tol, max_k=k))
        total["maxvol"] += 1
        same["maxvol"] += mine_mv == theirs
        kind = "full" if k >= r else "k<R"
        mine = maxinfo_select(q, k, rank=r, tol=tol, normalize=norm, svd=args.svd)
        total[kind] += 1
        same[kind] += mine == theirs
        if mine != theirs and kind == "full" and shown < 5:
            shown += 1
            print(f"  case {case}: n={n} d={d} R={r} K={k} tol={tol} normalize={norm}: "
                  f"{len(set(mine) ^ set(theirs))} positions differ")
    for key in same:
        print(f"{key:7s} identical selections: {same[key]}/{total[key]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
