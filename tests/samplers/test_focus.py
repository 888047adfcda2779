"""FOCUS (samplers.focus): golden values worked out by hand from the official code's definitions (NUS-HPC-AI-Lab/FOCUS
focus.py, select_keyframe.py) on tiny grids: the arm split, the Bernstein bound, the budget split, the adaptive gap,
and a whole selection whose structure follows from them. Parity with the official code on random inputs is
scripts/parity_focus.py (not CI)."""
import math

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.records import CandidateGrid
from harness.registry import SAMPLERS
from samplers.base import apply_sampler
from samplers.focus import (FocusParams, adaptive_min_gap, bernstein_ucb, final_split, focus_arms, focus_select,
                            grid_rate, sample_key)

P = FocusParams()


def test_arms_by_hand():
    # 100 s at 1 fps: D = max(8, ceil(100 / 16) = 7) = 8, stride 100 // 8 = 12, 8 arms of 12; frames 96..99 in none
    assert focus_arms(100, 1.0, P) == [(12 * i, 12 * i + 11) for i in range(8)]
    # 1 h at 1 fps: D = 225, stride 16: 225 arms of 16
    arms = focus_arms(3600, 1.0, P)
    assert len(arms) == 225 and arms[0] == (0, 15) and arms[-1] == (3584, 3599)
    # 25 s at 2 fps (50 frames): D = 8, stride 6, 8 arms of 6 (48, 49 in none)
    assert focus_arms(50, 2.0, P) == [(6 * i, 6 * i + 5) for i in range(8)]
    # fewer frames than arms: stride 1, one arm per frame
    assert focus_arms(5, 1.0, P) == [(i, i) for i in range(5)]


def test_bernstein_bound_by_hand():
    # N = 4 samples in all. Arm 0: mean 0.7, population variance 0.08 / 3, n = 3; arm 1: one sample, variance
    # floored at 1e-6
    got = bernstein_ucb([[0.5, 0.7, 0.9], [0.2]])
    ln4 = math.log(4)
    assert got[0] == pytest.approx(0.7 + math.sqrt(2 * ln4 * (0.08 / 3) / 3) + 3 * ln4 / 3, abs=1e-12)
    assert got[1] == pytest.approx(0.2 + math.sqrt(2 * ln4 * 1e-6) + 3 * ln4, abs=1e-12)
    assert got[0] == pytest.approx(2.2432823, abs=1e-6) and got[1] == pytest.approx(4.3605481, abs=1e-6)
    # N = 1: the mean alone
    np.testing.assert_array_equal(bernstein_ucb([[0.4], []]), [0.4, 0.0])


def test_budget_split_by_hand():
    # K = 32 on 225 arms: 6 top frames (round(6.4)), 26 left over S = min(max(4, ceil(56.25)), 32) = 32 arms
    assert final_split(26, 225, P) == [1] * 26 + [0] * 6
    # 8 arms: S = max(4, ceil(2)) = 4; 10 frames: 3, 3, 2, 2
    assert final_split(10, 8, P) == [3, 3, 2, 2]
    # 3 arms: S = min(4, 3) = 3
    assert final_split(7, 3, P) == [3, 2, 2]


def test_adaptive_gap_and_grid_rate_by_hand():
    assert adaptive_min_gap(300.0, 8, P) == 1.0  # spacing 37.5 s: min(1, 9.375)
    assert adaptive_min_gap(20.0, 32, P) == pytest.approx(0.15625)  # spacing 0.625 s: 0.25 of it
    assert adaptive_min_gap(10.0, 64, P) == 0.0  # spacing 0.156 s <= 0.2 s: no gap
    assert grid_rate([0.0, 0.5, 1.0]) == 2.0 and grid_rate([3.0]) == 1.0


def stepped(n: int, arm_len: int) -> np.ndarray:
    """Scores constant within each 12-frame arm: arm i scores i / 10 (the last frames, in no arm, 0)."""
    return np.asarray([min(i // arm_len, 7) / 10 if i < 96 else 0.0 for i in range(n)])


def test_a_whole_selection_by_hand():
    # 100 candidates at 1 fps, K = 8. 8 arms of 12 (above); constant scores within an arm make every arm's variance
    # 0 (floored), so the bounds rank arms by their means: 7, 6, 5, 4 are zoomed into (max(4, ceil(2))). Fine
    # windows: half width max(1, (100 / 8) / 2) = 6.25 s -> 6 frames around centres 53, 65, 77, 89; 13 frames each,
    # 13 to score (round(6.5) = 6 evenly, 7 random), which with the coarse frames covers every window: 47..95.
    scores, calls = stepped(100, 12), []
    chosen = focus_select(100, 8, np.arange(100.0), lambda p: (calls.append(list(p)), scores[p])[1], seed=3)
    coarse, fine = calls
    assert len(coarse) == 24 and coarse[0::3] == [5, 17, 29, 41, 53, 65, 77, 89]  # centres first in each arm
    assert all(12 * (i // 3) <= c <= 12 * (i // 3) + 11 for i, c in enumerate(coarse))
    assert set(coarse) | set(fine) == set(coarse) | set(range(47, 96)) and not set(coarse) & set(fine)
    # top round(0.2 * 8) = 2 frames: ties at 0.7 go to the first scored (arm 7's centre 89, then its first other);
    # then 6 frames split 2, 2, 1, 1 over arms 7, 6, 5, 4 (equal scores within an arm: a uniform draw)
    assert 89 in chosen and coarse[22] in chosen
    per_arm = np.bincount(np.asarray(chosen) // 12, minlength=8)
    assert per_arm.tolist() == [0, 0, 0, 0, 1, 1, 2, 4] and len(chosen) == 8


def test_seeded_and_per_question():
    scores = np.random.RandomState(0).rand(300)
    run = lambda rng: focus_select(300, 16, np.arange(300.0), lambda p: scores[p], rng=rng)  # noqa: E731
    assert run(np.random.default_rng(1)).tolist() == run(np.random.default_rng(1)).tolist()
    sampler = SAMPLERS.create("focus", encoder="mini-clip")
    assert sampler.config()["seed"] == 42 and sampler.config()["encoder"] == "mini-clip"
    grid = CandidateGrid(tuple(range(0, 2400, 8)), tuple(float(i) for i in range(300)), 8.0, 2400, "1fps")

    class Lazy:
        scored = 0

        def __call__(self, p):
            return scores[np.asarray(p)]

    def select(sample_id, seed=42):
        s = SAMPLERS.create("focus", encoder="mini-clip", seed=seed)
        inputs = {"lazy_scores": Lazy(), "timestamps": np.asarray(grid.timestamps), **s.sample_inputs(
            type("S", (), {"id": sample_id})())}
        return apply_sampler(s, grid, 16, inputs).positions

    assert select("q1") == select("q1")
    assert len({select("q1"), select("q2"), select("q1", seed=7)}) == 3
    assert sample_key("q1") != sample_key("q2") and 0 <= sample_key("q1") < 2 ** 63


def test_options_are_checked_and_explained():
    assert all(p.help for p in SAMPLERS.get("focus").params)
    with pytest.raises(HarnessError, match="interpolation=rbf.*scipy"):
        SAMPLERS.create("focus", interpolation="rbf")
    with pytest.raises(HarnessError, match="nearst.*did you mean nearest"):
        SAMPLERS.create("focus", interpolation="nearst")
    for bad in ({"top_ratio": 1.5}, {"temperature": 0.0}, {"final_max_arms": 0}, {"seed": -1}):
        with pytest.raises(HarnessError, match=f"option {next(iter(bad))}="):
            SAMPLERS.create("focus", **bad)
    with pytest.raises(HarnessError, match="frame budget"):
        focus_select(10, 0, np.arange(10.0), lambda p: np.zeros(len(p)))
    with pytest.raises(HarnessError, match="scorer gave"):
        focus_select(100, 4, np.arange(100.0), lambda p: np.full(len(p), np.nan))


def test_linear_interpolation_uses_samples_in_time_order():
    # one arm with samples out of time order; the official np.interp on unsorted points would misread them
    from samplers.focus import _estimate
    got = _estimate([(5, 0.5), (9, 0.9), (1, 0.1)], 0, 10, "linear")
    np.testing.assert_allclose(got, [0.1, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.9])
    np.testing.assert_allclose(_estimate([(5, 0.5), (9, 1.4), (1, -0.2)], 4, 6, "nearest"), [0.5, 0.5, 0.5])
    # frames 1 and 3 are as near to two samples: the first in sample order (the centre, 2) gives the score
    np.testing.assert_allclose(_estimate([(2, 0.5), (4, 1.4), (0, -0.2)], 0, 4, "nearest"), [0, 0.5, 0.5, 0.5, 1])
