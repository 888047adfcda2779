"""MaxInfo (Li et al., WACV 2026, arXiv 2502.03183; FusionBrainLab/MaxInfo): query-agnostic rectangular maxvol
over truncated-SVD embeddings of the candidates' image features.

Written from the paper (Sec. 3) and a reading of the released selection code (`maxinfo_selection.py`: CLIP ViT-B/32
`encode_image` features, sklearn `TruncatedSVD(n_components=R)`, then maxvolpy's `rect_maxvol(Qs, maxK=max_n,
tol=tol)`, indices sorted; defaults R=8, tol=0.3) and of maxvolpy 0.3.8 (`maxvol.py`, the library it vendors), not
copied from either. With features F (n x d), budget K, rank R and tolerance tol:

1. embed: Qs = F V_r, F projected on its top-r right singular vectors (not centred), r = min(R, K, numerical rank
   of F); optional per-column `standard` / `minmax` or per-row `l2` rescaling of Qs, as the official
   `normalize_svd_output`;
2. square maxvol (maxvolpy `maxvol`): r starting rows by LU with partial pivoting, then at most 10 swaps, each
   putting the row of the largest |coefficient| of A = C A[I] into the slot of that coefficient, while it exceeds 1.05;
3. rectangular growth (maxvolpy `rect_maxvol`): add the unchosen row whose least-squares coefficients on the chosen
   rows have the largest Euclidean norm, while that norm exceeds tol and fewer than K rows are chosen;
4. the chosen rows, ascending.

How K relates to the rows returned. The official call passes maxK=K, so growth never passes K, but it may stop
earlier (every unchosen row is already within tol of the chosen ones: fewer than K frames), and when K < R
maxvolpy raises maxK to R, returning R > K frames. Here r never exceeds K, so the square stage gives at most K rows
(K < R: the rank is lowered to K, recorded in `maxinfo_details`), and `fill=grow` (maxvolpy's minK=K) keeps growing
past tol to exactly K rows; the default `fill=none` returns the official shortfall as it is.

Variants: `fast` runs once over the whole grid (the released code); `chunked` splits the grid into consecutive
chunks of `chunk_size` candidates, gives chunk c the budget floor(K n_c / n) plus one for the largest remainders
(ties: the earlier chunk), runs the fast selection inside each chunk on its own SVD, and concatenates. The
chunk-based code is not in the released file read here: its chunking, budget split and chunk size are this module's.

The embedding is sklearn TruncatedSVD's X V with V from its randomized SVD (RandomState(42) draws, 10 oversamples,
5 power iterations; QR-normalised here, LU there: the same span), svd=randomized, the default; or with the exact V
(svd=exact), which the randomized one approximates: the two differ where singular values near r are close.
Column signs follow sklearn (they matter only to `minmax`). Components with singular value below the
numerical-rank threshold are dropped (the official LU divides by zero on them). The official pipeline computes in
the features' dtype (float32 here); this one in float64.
"""
from __future__ import annotations

from numbers import Integral, Real
from typing import Mapping

import numpy as np

from harness.errors import HarnessError
from harness.registry import SAMPLERS
from samplers.base import Sampler

VARIANTS = ("fast", "chunked")
NORMALIZE = ("none", "standard", "minmax", "l2")
FILLS = ("none", "grow")
SVDS = ("randomized", "exact")
SQUARE_TOL = 1.05  # maxvolpy rect_maxvol: the square stage runs maxvol with tol 1.05 ...
SQUARE_ITERS = 10  # ... and start_maxvol_iters=10
DEFAULT_ENCODER = "openai/clip-vit-base-patch32"  # the released code's clip.load("ViT-B/32")
DEFAULT_CHUNK = 64  # not in the released code: one minute of a 1 fps grid

# (rank, tolerance) per benchmark. The released code's defaults; the paper's per-benchmark values were not
# available here, so there is only one preset.
PRESETS: dict[str, tuple[int, float]] = {"default": (8, 0.3)}


def maxvol(a: np.ndarray, tol: float = 1.05, max_iters: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Square maxvol of a tall (N, r) matrix: (r row positions I, coefficients B with a = B a[I]). Starts from the
    pivots of LU with partial pivoting (first maximum on ties) and swaps while some |B| exceeds max(tol, 1)."""
    a = np.asarray(a, dtype=np.float64)
    n, r = a.shape
    if n <= r:
        return np.arange(n), np.eye(n)
    tol = max(float(tol), 1.0)
    rows = _lu_pivots(a)
    b = np.linalg.solve(a[rows].T, a.T).T  # b @ a[rows] = a
    for _ in range(max_iters):
        slot, row = divmod(int(np.argmax(np.abs(b.T))), n)  # slot-major order, as maxvolpy scans C^T
        pivot = b[row, slot]
        if abs(pivot) <= tol:
            break
        # row `row` replaces the row in `slot`: rank-one (Sherman-Morrison) update of the coefficients
        change = b[row].copy()
        change[slot] -= 1.0
        b -= np.outer(b[:, slot], change) / pivot
        rows[slot] = row
    return rows, b


def rect_maxvol(a: np.ndarray, tol: float = 1.0, max_k: int | None = None, min_k: int | None = None,
                start_iters: int = SQUARE_ITERS) -> np.ndarray:
    """Rectangular 2-volume maxvol of a tall (N, r) matrix: row positions in the order chosen (the r square-maxvol
    rows, then one per growth step). Grows while the largest coefficient-row norm of an unchosen row exceeds tol
    and fewer than max_k rows are chosen, or while fewer than min_k are; max_k and min_k are clamped to [r, N]."""
    a = np.asarray(a, dtype=np.float64)
    n, r = a.shape
    if n <= r:
        return np.arange(n)
    max_k = n if max_k is None else min(max(int(max_k), r), n)
    min_k = r if min_k is None else min(max(int(min_k), r), max_k)
    rows, b = maxvol(a, SQUARE_TOL, start_iters)
    chosen = [int(i) for i in rows]
    free = np.ones(n)
    free[rows] = 0.0
    norms = np.einsum("ij,ij->i", b, b) * free
    tol2 = float(tol) ** 2
    while len(chosen) < max_k and (norms.max() > tol2 or len(chosen) < min_k):
        i = int(np.argmax(norms))  # first maximum on ties
        chosen.append(i)
        free[i] = 0.0
        c = b[i].copy()
        v = b @ c
        scale = 1.0 / (1.0 + v[i])
        b = np.hstack([b - scale * np.outer(v, c), (scale * v)[:, None]])  # least-squares coefficients on rows + i
        norms = (norms - scale * v * v) * free
    return np.asarray(chosen, dtype=np.int64)


def svd_embedding(features: np.ndarray, rank: int, normalize: str = "none", svd: str = "randomized") -> np.ndarray:
    """(n, r) embedding F V_r of the features, r = min(rank, numerical rank), signs as sklearn's TruncatedSVD
    (the largest |entry| of each right singular vector positive), then the optional rescaling. `randomized` is the
    released code's sklearn TruncatedSVD(n_components=r, random_state=42): randomized SVD with 10 oversamples and 5
    power iterations from RandomState(42) normal draws (QR-normalised here, LU there: the same span); `exact` is
    the full SVD."""
    x = np.asarray(features, dtype=np.float64)
    r = min(int(rank), _rank(x))
    _, _, vt = _randomized_svd(x, r) if svd == "randomized" else np.linalg.svd(x, full_matrices=False)
    vt = vt[:r]
    signs = np.sign(vt[np.arange(r), np.argmax(np.abs(vt), axis=1)])
    q = x @ (vt.T * signs)  # sklearn's X V: not U S when the randomized V is approximate
    if normalize == "standard":  # sklearn StandardScaler: population std, zero std left unscaled
        std = q.std(axis=0)
        q = (q - q.mean(axis=0)) / np.where(std == 0, 1.0, std)
    elif normalize == "minmax":  # sklearn MinMaxScaler to [0, 1], zero range left unscaled
        span = q.max(axis=0) - q.min(axis=0)
        q = (q - q.min(axis=0)) / np.where(span == 0, 1.0, span)
    elif normalize == "l2":  # sklearn normalize(norm="l2"): zero rows stay zero
        length = np.linalg.norm(q, axis=1, keepdims=True)
        q = q / np.where(length == 0, 1.0, length)
    if normalize != "none" and r and _rank(q) < r:  # centring can remove a direction: keep a full-rank basis of
        q = svd_embedding(q, r, svd="exact")  # the same span (the official LU would divide by zero here)
    return q


def _randomized_svd(x: np.ndarray, r: int, oversample: int = 10, power: int = 5, seed: int = 42):
    """sklearn randomized_svd's algorithm (Halko et al.): range of M (M^T M)^power Omega, then the SVD of the
    projection; M is x, or x^T when x is wide, as sklearn does."""
    wide = x.shape[0] < x.shape[1]
    m = x.T if wide else x
    q = np.random.RandomState(seed).normal(size=(m.shape[1], r + oversample))
    for _ in range(power):
        q = np.linalg.qr(m.T @ np.linalg.qr(m @ q)[0])[0]
    q = np.linalg.qr(m @ q)[0]
    uh, s, vt = np.linalg.svd(q.T @ m, full_matrices=False)
    return (vt.T, s, (q @ uh).T) if wide else (q @ uh, s, vt)


def _rank(x: np.ndarray) -> int:
    s = np.linalg.svd(x, compute_uv=False)
    return int(np.sum(s > s[0] * max(x.shape) * np.finfo(np.float64).eps)) if s.size and s[0] > 0 else 0


def maxinfo_details(features, k: int, rank: int = 8, tol: float = 0.3, variant: str = "fast",
                    chunk_size: int = DEFAULT_CHUNK, normalize: str = "none", fill: str = "none",
                    svd: str = "randomized") -> list[dict]:
    """Per chunk (one for `fast`): start, stop, budget, the rank used, and the positions chosen (ascending)."""
    x = _check_features(features)
    _check_params(k, rank, tol, variant, chunk_size, normalize, fill, svd)
    n, k = len(x), int(k)
    if variant == "fast" or n <= chunk_size:
        bounds = [(0, n)]
    else:
        bounds = [(s, min(s + chunk_size, n)) for s in range(0, n, chunk_size)]
    budgets = _split_budget([stop - start for start, stop in bounds], min(k, n))
    out = []
    for (start, stop), budget in zip(bounds, budgets):
        picked, used = np.zeros(0, np.int64), 0
        if budget > 0:
            q = svd_embedding(x[start:stop], min(rank, budget), normalize, svd)
            used = q.shape[1]
            if used == 0:  # all-zero features carry no direction: ties go to the earlier candidates
                picked = np.arange(min(budget, stop - start)) if fill == "grow" else np.zeros(0, np.int64)
            else:
                picked = rect_maxvol(q, tol, max_k=budget, min_k=budget if fill == "grow" else None)
        out.append({"start": start, "stop": stop, "budget": budget, "rank": used,
                    "positions": sorted(start + int(p) for p in picked)})
    return out


def maxinfo_select(features, k: int, rank: int = 8, tol: float = 0.3, variant: str = "fast",
                   chunk_size: int = DEFAULT_CHUNK, normalize: str = "none", fill: str = "none",
                   svd: str = "randomized") -> list[int]:
    """Positions (ascending) that MaxInfo selects from (n, d) features with budget k: at most k of them (exactly
    min(k, n) with fill=grow). See the module docstring."""
    chunks = maxinfo_details(features, k, rank, tol, variant, chunk_size, normalize, fill, svd)
    return [p for chunk in chunks for p in chunk["positions"]]


def _split_budget(sizes: list[int], k: int) -> list[int]:
    """k over chunks in proportion to their sizes: floors, then one each to the largest remainders (earlier first)."""
    n = sum(sizes)
    exact = [k * size / n for size in sizes]
    budgets = [int(k * size // n) for size in sizes]
    order = sorted(range(len(sizes)), key=lambda c: (-(exact[c] - budgets[c]), c))
    for c in order[:k - sum(budgets)]:
        budgets[c] += 1
    return budgets


def _check_features(features) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise HarnessError(f"maxinfo: image features must be (n candidates, d), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise HarnessError("maxinfo got NaN or infinite image features")
    return x


def _check_params(k, rank, tol, variant, chunk_size, normalize, fill, svd="randomized") -> None:
    for name, value, low in (("the frame budget", k, 1), ("rank", rank, 1), ("chunk_size", chunk_size, 1)):
        if not isinstance(value, Integral) or isinstance(value, bool) or value < low:
            raise HarnessError(f"maxinfo: {name} must be a whole number >= {low}, got {value!r}")
    if not isinstance(tol, Real) or isinstance(tol, bool) or not np.isfinite(tol) or tol < 0:
        raise HarnessError(f"maxinfo: tolerance must be a number >= 0, got {tol!r}")
    for name, value, known in (("variant", variant, VARIANTS), ("normalize", normalize, NORMALIZE),
                               ("fill", fill, FILLS), ("svd", svd, SVDS)):
        if value not in known:
            raise HarnessError(f"maxinfo: unknown {name} {value!r} (known: {', '.join(known)})")


def _lu_pivots(a: np.ndarray) -> np.ndarray:
    """Row positions of the r pivots of Gaussian elimination with partial pivoting on a (N, r) matrix, in column
    order (LAPACK getrf's choice: the first largest |entry| of each eliminated column)."""
    w = a.copy()
    n, r = w.shape
    order = np.arange(n)
    for j in range(r):
        p = j + int(np.argmax(np.abs(w[j:, j])))
        w[[j, p]], order[[j, p]] = w[[p, j]], order[[p, j]]
        if w[j, j] != 0:
            w[j + 1:, j] /= w[j, j]
            w[j + 1:, j + 1:] -= np.outer(w[j + 1:, j], w[j, j + 1:])
    return order[:r].copy()


@SAMPLERS.register(
    "maxinfo", description="MaxInfo: query-agnostic maximum-volume frames (rect maxvol over SVD of CLIP features)",
    help={"preset": "rank and tolerance: " + "; ".join(f"{name} = rank {r}, tol {t} (the released code's defaults)"
                                                      for name, (r, t) in PRESETS.items()),
          "rank": "truncated-SVD rank R (overrides the preset); lowered to K when K < R, and to the features' rank",
          "tol": "rect maxvol tolerance on the coefficient-row norm (overrides the preset): growth stops once every "
                 "unchosen frame is within it, which can give fewer than K frames",
          "variant": "fast = one selection over the whole grid (released code); chunked = per chunk of chunk_size "
                     "candidates, the budget split by chunk length",
          "chunk_size": "candidates per chunk of the chunked variant (not in the released code)",
          "normalize": "rescaling of the SVD embedding before maxvol (official normalize_svd_output; default none)",
          "fill": "none = the official shortfall (fewer than K frames when tol is met early); grow = keep adding "
                  "the largest-coefficient frame to exactly K (maxvolpy minK=K)",
          "svd": "randomized = the released code's sklearn TruncatedSVD (seed 42, 5 power iterations); "
                 "exact = the full SVD (same span up to the randomized error)",
          "encoder": "CLIP model whose image features are embedded (released code: ViT-B/32)",
          "query": "irrelevant: MaxInfo reads no text (kept for the input provider; not in the config)"},
    choices={"preset": tuple(PRESETS), "variant": VARIANTS, "normalize": NORMALIZE, "fill": FILLS, "svd": SVDS,
             "query": ("question", "question+options")})
class MaxInfo(Sampler):
    """Query-agnostic: the same frames for every question of a video (given the grid, K and the options)."""

    name = "maxinfo"
    needs = ("image_features",)

    def __init__(self, preset: str = "default", rank: int | None = None, tol: float | None = None,
                 variant: str = "fast", chunk_size: int = DEFAULT_CHUNK, normalize: str = "none",
                 fill: str = "none", svd: str = "randomized", encoder: str = DEFAULT_ENCODER,
                 query: str = "question"):
        if preset not in PRESETS:
            raise HarnessError(f"option preset={preset!r} of 'maxinfo' must be one of {', '.join(PRESETS)}")
        preset_rank, preset_tol = PRESETS[preset]
        self.preset, self.variant, self.chunk_size = preset, variant, chunk_size
        self.rank = preset_rank if rank is None else rank
        self.tol = preset_tol if tol is None else tol
        self.normalize, self.fill, self.svd, self.encoder, self.query = normalize, fill, svd, encoder, query
        _check_params(1, self.rank, self.tol, variant, chunk_size, normalize, fill, svd)
        self.rank, self.tol = int(self.rank), float(self.tol)

    def config(self) -> dict:
        out = {"preset": self.preset, "rank": self.rank, "tol": self.tol, "variant": self.variant,
               "normalize": self.normalize, "fill": self.fill, "svd": self.svd, "encoder": self.encoder}
        if self.variant == "chunked":
            out["chunk_size"] = int(self.chunk_size)
        return out

    def positions(self, n: int, k: int, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        chosen = maxinfo_select(inputs["image_features"], k, rank=self.rank, tol=self.tol, variant=self.variant,
                                chunk_size=int(self.chunk_size), normalize=self.normalize, fill=self.fill,
                                svd=self.svd)
        if not chosen:
            raise HarnessError("maxinfo selected no frames: the image features are all zero (use fill=grow)")
        return np.asarray(chosen, dtype=np.int64)

