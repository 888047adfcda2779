"""Dev-only cross-check of harness/report/stats.py against SciPy (`scripts/check_stats_scipy.sh` runs it in its own
environment, .venv-stats; SciPy is no dependency of the harness, so in the main environment this file skips).

* McNemar: the exact test equals `scipy.stats.binomtest(b, b + c, 0.5)` (two-sided) for every table with
  b, c <= 60 and a few large ones; the continuity-corrected statistic's p equals `scipy.stats.chi2.sf(x, 1)`.
* Bootstrap: `scipy.stats.bootstrap(..., method="percentile")` draws its resamples as one
  `rng.integers(0, n, (n_resamples, n))` block from the generator it is given (scipy 1.17, `batch=None`), which is
  the harness's draw order, so with the same seed both give the same interval: the question bootstrap of a
  difference (`paired=True`), of one accuracy, and the cluster bootstrap (scipy resampling the per-video
  (sum, count) pairs with the statistic sum / count). A second check with other seeds only asks for agreement
  within Monte Carlo error, whatever scipy's draw order.
"""
import numpy as np
import pytest

from harness.report.stats import (bootstrap_accuracy, chi2_sf_1df, cluster_bootstrap, cluster_bootstrap_accuracy,
                                  mcnemar_counts, paired_bootstrap)

stats = pytest.importorskip("scipy.stats", reason="scipy is not installed here: run scripts/check_stats_scipy.sh")


def test_exact_mcnemar_equals_binomtest():
    tables = [(b, c) for b in range(61) for c in range(61) if b + c] + [(1500, 1400), (700, 640), (3, 2000)]
    worst = max(abs(mcnemar_counts(b, c).p_value - stats.binomtest(b, b + c, 0.5).pvalue) for b, c in tables)
    assert worst < 1e-12, worst


def test_chi2_cc_p_equals_scipy_chi2():
    for b, c in [(121, 59), (1, 6), (10, 10), (40, 12), (300, 250)]:
        res = mcnemar_counts(b, c, method="chi2-cc")
        assert res.p_value == pytest.approx(stats.chi2.sf(res.statistic, 1), rel=1e-12, abs=1e-300)
    for x in np.linspace(0, 30, 61):
        assert chi2_sf_1df(x) == pytest.approx(stats.chi2.sf(x, 1), rel=1e-12, abs=1e-300)


def outcomes(n, seed):
    rng = np.random.default_rng(seed)
    return rng.random(n) < 0.55, rng.random(n) < 0.65


def scipy_interval(data, statistic, paired, n_resamples, seed):
    res = stats.bootstrap(data, statistic, paired=paired, vectorized=True, method="percentile",
                          n_resamples=n_resamples, confidence_level=0.95, rng=np.random.default_rng(seed))
    return res.confidence_interval.low, res.confidence_interval.high


@pytest.mark.parametrize("n,seed", [(40, 0), (200, 1), (333, 2)])
def test_question_bootstrap_equals_scipy(n, seed):
    a, b = outcomes(n, seed)
    ours = paired_bootstrap(a, b, n_resamples=3000, seed=seed)
    low, high = scipy_interval((a.astype(float), b.astype(float)),
                               lambda x, y, axis: np.mean(y - x, axis=axis), True, 3000, seed)
    assert (ours.low, ours.high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    acc = bootstrap_accuracy(b, n_resamples=3000, seed=seed)
    low, high = scipy_interval((b.astype(float),), np.mean, False, 3000, seed)
    assert (acc.low, acc.high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))


def per_video(values, videos):
    """(sum, count) of `values` per video, videos in order of first appearance."""
    names = list(dict.fromkeys(videos))
    sums = np.array([sum(v for v, w in zip(values, videos) if w == name) for name in names], dtype=float)
    counts = np.array([sum(w == name for w in videos) for name in names], dtype=float)
    return sums, counts


def ratio(s, n, axis):
    return np.sum(s, axis=axis) / np.sum(n, axis=axis)


@pytest.mark.parametrize("seed", [0, 5])
def test_cluster_bootstrap_equals_scipy_on_video_totals(seed):
    rng = np.random.default_rng(seed)
    videos = [f"v{int(x)}" for x in rng.integers(0, 60, size=180)]  # uneven: 0 to about 8 questions a video
    a, b = outcomes(180, seed + 10)
    diff = b.astype(float) - a.astype(float)
    ours = cluster_bootstrap(a, b, videos, n_resamples=3000, seed=seed)
    low, high = scipy_interval(per_video(diff, videos), ratio, True, 3000, seed)
    assert (ours.low, ours.high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    acc = cluster_bootstrap_accuracy(b, videos, n_resamples=3000, seed=seed)
    low, high = scipy_interval(per_video(b.astype(float), videos), ratio, True, 3000, seed)
    assert (acc.low, acc.high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))


def test_agreement_within_monte_carlo_error_with_independent_draws():
    # other seeds on each side: the endpoints of 20000-resample intervals agree to well within 1 point
    a, b = outcomes(500, 3)
    ours = paired_bootstrap(a, b, n_resamples=20000, seed=1)
    low, high = scipy_interval((a.astype(float), b.astype(float)),
                               lambda x, y, axis: np.mean(y - x, axis=axis), True, 20000, 2)
    assert abs(ours.low - low) < 0.008 and abs(ours.high - high) < 0.008
