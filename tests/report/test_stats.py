"""Paired statistics against hand-computed cases and an independent straightforward implementation."""
import math

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.report.stats import (bootstrap_accuracy, chi2_sf_1df, discordant, mcnemar, mcnemar_counts,
                           paired_bootstrap)


def outcomes(b, c, both_right=0, both_wrong=0):
    """Paired outcomes with the given 2x2 table: b = A right/B wrong, c = A wrong/B right."""
    a = [1] * b + [0] * c + [1] * both_right + [0] * both_wrong
    bb = [0] * b + [1] * c + [1] * both_right + [0] * both_wrong
    return np.array(a, bool), np.array(bb, bool)


# -- McNemar ----------------------------------------------------------------------------------------------------------
def test_mcnemar_exact_known_table():
    # b=1, c=6: p = 2 * (C(7,0) + C(7,1)) / 2^7 = 2 * 8 / 128 = 0.125
    a, b = outcomes(1, 6, both_right=10, both_wrong=3)
    assert discordant(a, b) == (1, 6)
    res = mcnemar(a, b)
    assert res.method == "exact" and res.statistic is None
    assert res.p_value == pytest.approx(0.125, abs=1e-15)
    assert mcnemar_counts(6, 1).p_value == pytest.approx(0.125, abs=1e-15)  # two-sided: symmetric in b, c


def test_mcnemar_exact_more_hand_cases():
    # b=0, c=5: 2 * 1/32 = 0.0625; b=2, c=8: 2 * (1 + 10 + 45) / 1024 = 112/1024
    assert mcnemar_counts(0, 5).p_value == pytest.approx(0.0625, abs=1e-15)
    assert mcnemar_counts(2, 8).p_value == pytest.approx(112 / 1024, abs=1e-15)
    # b=c: the tail sum passes the middle, so the doubled tail exceeds 1 and is capped at 1
    assert mcnemar_counts(3, 3).p_value == 1.0
    # large n: exact integers, no underflow of 2^-n
    big = mcnemar_counts(1500, 1400).p_value
    assert 0.0 < big < 1.0 and math.isfinite(big)


def test_mcnemar_chi2_cc_textbook_table():
    # Wikipedia's McNemar example (a=101, b=121, c=59, d=33): with Edwards' continuity correction,
    # X^2 = (|121 - 59| - 1)^2 / (121 + 59) = 61^2 / 180 = 3721 / 180 = 20.672...
    res = mcnemar_counts(121, 59, method="chi2-cc")
    assert res.statistic == pytest.approx(3721 / 180, rel=1e-12)
    assert res.p_value == pytest.approx(chi2_sf_1df(3721 / 180)) and res.p_value < 1e-5
    # b=1, c=6: (5 - 1)^2 / 7 = 16/7
    assert mcnemar_counts(1, 6, method="chi2-cc").statistic == pytest.approx(16 / 7)


def test_chi2_one_df_survival_at_known_quantiles():
    # the 95% and 99% quantiles of chi-square(1) are 3.841459 and 6.634897 (1.959964^2, 2.575829^2)
    assert chi2_sf_1df(3.841458820694124) == pytest.approx(0.05, rel=1e-9)
    assert chi2_sf_1df(6.634896601021214) == pytest.approx(0.01, rel=1e-9)
    assert chi2_sf_1df(0.0) == 1.0


def test_mcnemar_degenerate_and_bad_input():
    a, b = outcomes(0, 0, both_right=4, both_wrong=2)
    assert mcnemar(a, b).p_value == 1.0 and mcnemar(a, b, "chi2-cc").p_value == 1.0
    with pytest.raises(HarnessError, match="unknown McNemar method"):
        mcnemar(a, b, "mid-p")
    with pytest.raises(HarnessError, match="differ in length"):
        mcnemar([1, 0], [1])
    with pytest.raises(HarnessError, match="0/1"):
        mcnemar([1, 2], [1, 0])


# -- bootstrap --------------------------------------------------------------------------------------------------------
def loop_bootstrap(a, b, n_resamples, seed, confidence):
    """The textbook loop, written independently: resample question indices, recompute the difference, take the
    percentiles by hand (linear interpolation between order statistics at rank q * (R - 1))."""
    rng = np.random.default_rng(seed)
    n = len(a)
    diffs = []
    for _ in range(n_resamples):
        idx = rng.integers(0, n, size=n)
        diffs.append(sum(int(b[i]) - int(a[i]) for i in idx) / n)
    diffs.sort()

    def pct(q):
        rank = q * (len(diffs) - 1)
        lo = math.floor(rank)
        hi = min(lo + 1, len(diffs) - 1)
        return diffs[lo] + (rank - lo) * (diffs[hi] - diffs[lo])

    alpha = (1 - confidence) / 2
    return pct(alpha), pct(1 - alpha)


@pytest.mark.parametrize("seed,chunk", [(0, 1 << 20), (7, 1), (123, 50)])
def test_paired_bootstrap_matches_a_plain_loop(seed, chunk):
    rng = np.random.default_rng(99)
    a = rng.random(41) < 0.55
    b = rng.random(41) < 0.7
    res = paired_bootstrap(a, b, n_resamples=2000, seed=seed, chunk=chunk)
    low, high = loop_bootstrap(a, b, 2000, seed, 0.95)
    assert res.estimate == pytest.approx(b.mean() - a.mean())
    assert res.low == pytest.approx(low, abs=1e-12) and res.high == pytest.approx(high, abs=1e-12)
    assert res.low <= res.estimate <= res.high and res.n == 41 and res.n_resamples == 2000


def test_paired_bootstrap_is_seeded_and_default_is_10000():
    a, b = outcomes(3, 9, both_right=20, both_wrong=8)
    first, again = paired_bootstrap(a, b, seed=5), paired_bootstrap(a, b, seed=5)
    assert first == again and first.n_resamples == 10000
    assert paired_bootstrap(a, b, seed=6) != first  # another seed, other resamples


def test_paired_bootstrap_two_questions_by_hand():
    # A wrong on both, B right on question 0 only: a resample's diff is (times question 0 drawn) / 2, i.e.
    # 0, 0.5 or 1 with probability 1/4, 1/2, 1/4. Each tail holds 25% > 2.5%, so the 95% interval is [0, 1].
    res = paired_bootstrap([0, 0], [1, 0], n_resamples=10000, seed=0)
    assert res.estimate == 0.5 and (res.low, res.high) == (0.0, 1.0)


def test_identical_runs_give_zero_difference():
    a = np.array([1, 0, 1, 1, 0, 0, 1], bool)
    res = paired_bootstrap(a, a.copy(), n_resamples=500, seed=1)
    assert (res.estimate, res.low, res.high) == (0.0, 0.0, 0.0)
    assert mcnemar(a, a).p_value == 1.0


def test_bootstrap_accuracy_matches_a_plain_loop():
    x = np.array([1, 1, 0, 1, 0, 1, 1, 1, 0, 1], bool)
    res = bootstrap_accuracy(x, n_resamples=1000, seed=3)
    low, high = loop_bootstrap(np.zeros(10, bool), x, 1000, 3, 0.95)  # diff against all-wrong = accuracy
    assert res.estimate == 0.7 and res.low == pytest.approx(low) and res.high == pytest.approx(high)


def test_bootstrap_bad_input():
    with pytest.raises(HarnessError, match="no paired questions"):
        paired_bootstrap([], [])
    with pytest.raises(HarnessError, match="confidence"):
        paired_bootstrap([1], [0], confidence=95)
    with pytest.raises(HarnessError, match="at least 1 resample"):
        paired_bootstrap([1], [0], n_resamples=0)
