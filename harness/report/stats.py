"""Paired statistics for comparing two samplers on the same questions: pure functions of 0/1 outcome arrays.

Both tests pair question i of run A with question i of run B (the caller aligns them by sample id), so they
answer "does B beat A on *these* questions?", which is more sensitive than comparing two unpaired accuracies.

* `paired_bootstrap`: percentile confidence interval of acc(B) - acc(A), resampling questions with replacement.
* `mcnemar`: test of "A and B are equally often right" from the discordant pairs; exact binomial by default,
  chi-square with continuity correction on request.
* `cluster_bootstrap`: the same interval resampling whole videos (clusters) instead of questions, for benchmarks
  that ask several questions per video (their outcomes are correlated, so the question bootstrap is too narrow).
* `holm`: Holm's step-down adjustment of several p-values (several samplers against one baseline).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness.errors import HarnessError

MCNEMAR_METHODS = ("exact", "chi2-cc")


def _outcomes(values, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise HarnessError(f"{name}: expected one outcome per question, got an array of shape {arr.shape}")
    if arr.dtype != bool:
        if arr.size and not np.all((arr == 0) | (arr == 1)):
            raise HarnessError(f"{name}: outcomes must be 0/1 or booleans")
        arr = arr.astype(bool)
    return arr


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = _outcomes(a, "run A"), _outcomes(b, "run B")
    if a.shape != b.shape:
        raise HarnessError(f"paired outcomes differ in length ({a.size} and {b.size} questions)")
    return a, b


# -- McNemar ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class McNemar:
    b: int  # A right, B wrong
    c: int  # A wrong, B right
    statistic: float | None  # chi-square statistic (chi2-cc); None for the exact test
    p_value: float
    method: str


def discordant(a, b) -> tuple[int, int]:
    """(b, c) of the paired 2x2 table: questions A got right and B wrong, and A wrong and B right."""
    a, b = _pair(a, b)
    return int(np.sum(a & ~b)), int(np.sum(~a & b))


def chi2_sf_1df(x: float) -> float:
    """P(X >= x) for X ~ chi-square with 1 degree of freedom: X = Z^2, so P = P(|Z| >= sqrt x) = erfc(sqrt(x/2))."""
    return math.erfc(math.sqrt(max(x, 0.0) / 2.0))


def mcnemar_counts(b: int, c: int, method: str = "exact") -> McNemar:
    """McNemar's test from the discordant counts b and c (the concordant cells carry no information).

    Under H0 (A and B equally often right) each of the n = b + c discordant questions is B's win with
    probability 1/2, so b ~ Binomial(n, 1/2).

    * ``exact`` (default): two-sided exact binomial test,
      p = min(1, 2 * sum_{i=0}^{min(b,c)} C(n, i) / 2^n); computed with exact integers, so right for any n.
      E.g. b=1, c=6: p = 2 * (C(7,0) + C(7,1)) / 2^7 = 2 * 8 / 128 = 0.125.
    * ``chi2-cc``: Edwards' continuity-corrected statistic X^2 = (|b - c| - 1)^2 / (b + c), referred to
      chi-square with 1 degree of freedom (the large-sample approximation; poor when b + c is small).

    With no discordant pairs (n = 0) the two runs cannot be told apart: p = 1 (and X^2 = 0).
    """
    if method not in MCNEMAR_METHODS:
        raise HarnessError(f"unknown McNemar method {method!r} (known: {', '.join(MCNEMAR_METHODS)})")
    b, c = int(b), int(c)
    if b < 0 or c < 0:
        raise HarnessError(f"McNemar counts must be non-negative, got b={b}, c={c}")
    n = b + c
    if method == "exact":
        if n == 0:
            return McNemar(b, c, None, 1.0, method)
        tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
        # true division of Python integers is correctly rounded: no underflow of 2^-n for large n
        p = min(1.0, 2 * tail / 2 ** n)
        return McNemar(b, c, None, p, method)
    if n == 0:
        return McNemar(b, c, 0.0, 1.0, method)
    stat = max(abs(b - c) - 1, 0) ** 2 / n  # |b-c| = 0 would give a negative correction: clip at 0
    return McNemar(b, c, stat, chi2_sf_1df(stat), method)


def mcnemar(a, b, method: str = "exact") -> McNemar:
    """McNemar's test on paired 0/1 outcomes of runs A and B (see `mcnemar_counts`)."""
    return mcnemar_counts(*discordant(a, b), method=method)


# -- bootstrap --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BootstrapCI:
    estimate: float  # on the original questions (a fraction: 0.05 is 5 points)
    low: float
    high: float
    n: int  # questions
    n_resamples: int
    confidence: float
    seed: int


def _percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    # numpy's default (linear interpolation between order statistics, "type 7")
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(values, [100.0 * alpha, 100.0 * (1.0 - alpha)])
    return float(low), float(high)


def _check(n_resamples: int, confidence: float, n: int) -> None:
    if n_resamples < 1:
        raise HarnessError(f"the bootstrap needs at least 1 resample, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise HarnessError(f"confidence must be between 0 and 1, got {confidence}")
    if n == 0:
        raise HarnessError("no paired questions to compare")


def _resample_means(values: np.ndarray, n_resamples: int, seed: int, chunk: int) -> np.ndarray:
    """Mean of `values` (one column per statistic) over bootstrap resamples of the rows.

    Resample r draws its n row indices as `rng.integers(0, n, size=n)`, resamples in order from one
    `np.random.default_rng(seed)`. Drawing a (rows, n) block at once consumes the generator's stream in the same
    order, so chunking only bounds memory (B x n indices would be 200 MB for Video-MME's 2700 questions)."""
    rng = np.random.default_rng(seed)
    n = values.shape[0]
    out = np.empty((n_resamples, values.shape[1]))
    rows = max(1, chunk // max(n, 1))
    for start in range(0, n_resamples, rows):
        stop = min(n_resamples, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = values[idx].mean(axis=1)
    return out


def paired_bootstrap(a, b, n_resamples: int = 10000, seed: int = 0, confidence: float = 0.95,
                     chunk: int = 1 << 20) -> BootstrapCI:
    """Percentile bootstrap CI of acc(B) - acc(A) over paired questions.

    For r = 1..R: draw n question indices i_1..i_n uniformly with replacement (the same indices for both runs,
    which keeps the pairing), and compute d_r = (1/n) sum_j (B[i_j] - A[i_j]). The interval is the
    (1-confidence)/2 and (1+confidence)/2 percentiles of d_1..d_R (Efron & Tibshirani 1993, ch. 13), linear
    interpolation between order statistics. `estimate` is the difference on the original questions. Fractions,
    not percentages. Deterministic for a given seed (see `_resample_means` for the draw order).
    """
    a, b = _pair(a, b)
    _check(n_resamples, confidence, a.size)
    diff = b.astype(np.float64) - a.astype(np.float64)
    means = _resample_means(diff[:, None], n_resamples, seed, chunk)[:, 0]
    low, high = _percentile_interval(means, confidence)
    return BootstrapCI(float(diff.mean()), low, high, int(a.size), int(n_resamples), float(confidence), int(seed))


def bootstrap_accuracy(x, n_resamples: int = 10000, seed: int = 0, confidence: float = 0.95,
                       chunk: int = 1 << 20) -> BootstrapCI:
    """Percentile bootstrap CI of one run's accuracy (same resampling scheme as `paired_bootstrap`)."""
    x = _outcomes(x, "run")
    _check(n_resamples, confidence, x.size)
    means = _resample_means(x.astype(np.float64)[:, None], n_resamples, seed, chunk)[:, 0]
    low, high = _percentile_interval(means, confidence)
    return BootstrapCI(float(x.mean()), low, high, int(x.size), int(n_resamples), float(confidence), int(seed))


# -- cluster bootstrap ------------------------------------------------------------------------------------------------
def cluster_ids(keys) -> np.ndarray:
    """One integer per question naming its cluster (e.g. its video), numbered in order of first appearance."""
    order: dict = {}
    return np.array([order.setdefault(k, len(order)) for k in keys], dtype=np.int64)


def _cluster_ratio_means(values: np.ndarray, clusters, n_resamples: int, seed: int, chunk: int) -> np.ndarray:
    """Mean of `values` (per question) over bootstrap resamples of whole clusters.

    With C clusters, cluster c holding n_c questions whose values sum to s_c, resample r draws C cluster indices
    j_1..j_C with replacement and gives sum_i s_{j_i} / sum_i n_{j_i}: the mean over every question of the drawn
    clusters (a cluster drawn twice counts twice). The draws are `rng.integers(0, C, size=C)` per resample from one
    `np.random.default_rng(seed)`, as in `_resample_means`; so with one question per cluster, clusters numbered in
    question order, it gives exactly the unclustered bootstrap."""
    ids = np.asarray(clusters)
    if ids.shape != values.shape:
        raise HarnessError(f"one cluster per question expected ({values.size} questions, {ids.size} clusters)")
    ids = cluster_ids(ids.tolist())
    n_clusters = int(ids.max()) + 1
    sums = np.bincount(ids, weights=values, minlength=n_clusters)
    counts = np.bincount(ids, minlength=n_clusters).astype(np.float64)
    rng = np.random.default_rng(seed)
    out = np.empty(n_resamples)
    rows = max(1, chunk // n_clusters)
    for start in range(0, n_resamples, rows):
        stop = min(n_resamples, start + rows)
        idx = rng.integers(0, n_clusters, size=(stop - start, n_clusters))
        out[start:stop] = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    return out


def cluster_bootstrap(a, b, clusters, n_resamples: int = 10000, seed: int = 0, confidence: float = 0.95,
                      chunk: int = 1 << 20) -> BootstrapCI:
    """Paired cluster bootstrap CI of acc(B) - acc(A): questions on one video are not independent (Video-MME asks 3
    per video), so whole videos are resampled, each keeping all its questions and both runs' outcomes on them
    (Field & Welsh 2007, "Bootstrapping clustered data"; Davison & Hinkley 1997, section 3.8, strategy 1).
    `clusters[i]` names question i's cluster (its video). The interval is the percentile interval of the
    resampled differences, as in `paired_bootstrap`; `n` counts questions."""
    a, b = _pair(a, b)
    _check(n_resamples, confidence, a.size)
    diff = b.astype(np.float64) - a.astype(np.float64)
    means = _cluster_ratio_means(diff, clusters, n_resamples, seed, chunk)
    low, high = _percentile_interval(means, confidence)
    return BootstrapCI(float(diff.mean()), low, high, int(a.size), int(n_resamples), float(confidence), int(seed))


def cluster_bootstrap_accuracy(x, clusters, n_resamples: int = 10000, seed: int = 0, confidence: float = 0.95,
                               chunk: int = 1 << 20) -> BootstrapCI:
    """Cluster bootstrap CI of one run's accuracy (whole videos resampled, as in `cluster_bootstrap`)."""
    x = _outcomes(x, "run")
    _check(n_resamples, confidence, x.size)
    means = _cluster_ratio_means(x.astype(np.float64), clusters, n_resamples, seed, chunk)
    low, high = _percentile_interval(means, confidence)
    return BootstrapCI(float(x.mean()), low, high, int(x.size), int(n_resamples), float(confidence), int(seed))


# -- multiple comparisons ---------------------------------------------------------------------------------------------
def holm(pvalues) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979), in the input order.

    With the m p-values sorted ascending, p_(1) <= ... <= p_(m), the adjusted value of the i-th smallest is
    max_{j <= i} min(1, (m - j + 1) * p_(j)): monotone in the sorted order and capped at 1. Rejecting where the
    adjusted p is below alpha controls the family-wise error rate at alpha. E.g. (0.01, 0.04, 0.03) ->
    (0.03, 0.06, 0.06)."""
    p = [float(v) for v in pvalues]
    if any(not 0.0 <= v <= 1.0 for v in p):  # also refuses NaN
        raise HarnessError(f"p-values must lie in [0, 1], got {p}")
    m = len(p)
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda k: p[k])):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out
