"""Samplers on known inputs; golden values computed by hand from the formulas in the docstrings."""
import numpy as np
import pytest

from harness.errors import HarnessError, UnknownNameError
from harness.records import CandidateGrid
from harness.registry import SAMPLERS
from samplers.base import apply_sampler, short_grid_positions
from samplers.topk import topk_positions
from samplers.uniform import linspace_floor, linspace_round, segment_centre


@pytest.mark.parametrize("n,k,expected", [
    (10, 4, [0, 3, 6, 9]),
    (100, 8, [0, 14, 28, 42, 56, 70, 84, 99]),  # 99/7 = 14.142857...: floors
    (4, 3, [0, 1, 3]),  # 1.5 floors to 1
    (5, 1, [0]),
])
def test_linspace_floor(n, k, expected):
    assert linspace_floor(n, k).tolist() == expected


@pytest.mark.parametrize("n,k,expected", [
    (100, 8, [0, 14, 28, 42, 57, 71, 85, 99]),  # 56.57 -> 57, 70.71 -> 71, 84.86 -> 85
    (4, 3, [0, 2, 3]),  # 1.5 rounds half to even: 2
    (8, 5, [0, 2, 4, 5, 7]),  # 1.75 -> 2, 3.5 -> 4 (even), 5.25 -> 5
    (6, 3, [0, 2, 5]),  # 2.5 -> 2 (even)
])
def test_linspace_round_is_half_to_even(n, k, expected):
    assert linspace_round(n, k).tolist() == expected


@pytest.mark.parametrize("n,k,expected", [
    (10, 4, [1, 3, 6, 8]),  # floor((2i+1)*10/8) = floor(1.25, 3.75, 6.25, 8.75)
    (100, 4, [12, 37, 62, 87]),
    (7, 7, [0, 1, 2, 3, 4, 5, 6]),
])
def test_segment_centre(n, k, expected):
    assert segment_centre(n, k).tolist() == expected


def test_topk_golden_and_ties_to_earlier():
    scores = [.1, .9, .3, .8, .2, .7, .95, .05, .6, .4]  # TSPO `inference_ts`: topk3 -> [1, 3, 6]
    assert topk_positions(scores, 3).tolist() == [1, 3, 6]
    assert topk_positions([0.5, 0.9, 0.5, 0.9, 0.5], 3).tolist() == [0, 1, 3]
    assert topk_positions([1.0] * 6, 2).tolist() == [0, 1]


def test_topk_rejects_nan():
    with pytest.raises(HarnessError, match="NaN"):
        topk_positions([0.1, float("nan"), 0.3], 2)


def test_short_grid_rules():
    assert short_grid_positions(3, 8, "all").tolist() == [0, 1, 2]
    assert short_grid_positions(3, 8, "repeat").tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    # np.linspace(0, 2, 8, dtype=int): 0, .29, .57, .86, 1.14, 1.43, 1.71, 2 (TSPO's Qwen adapter)
    assert short_grid_positions(3, 8, "linspace").tolist() == [0, 0, 0, 0, 1, 1, 1, 2]
    with pytest.raises(HarnessError, match="short-grid"):
        short_grid_positions(3, 8, "pad")


def _grid(n, step=30, fps=30.0):
    idx = [i * step for i in range(n)]
    return CandidateGrid(idx, [i / fps for i in idx], fps, n * step, "1fps")


@pytest.mark.parametrize("name,inputs", [("uniform", {}), ("topk", {"scores": np.arange(3.0)})])
def test_short_grid_rule_is_the_same_for_every_sampler(name, inputs):
    sampler = SAMPLERS.create(name)
    grid = _grid(3)
    assert apply_sampler(sampler, grid, 5, inputs, "repeat").positions == (0, 0, 1, 1, 2)
    assert apply_sampler(sampler, grid, 5, inputs, "all").frame_indices == (0, 30, 60)


def test_selection_maps_positions_to_native_frames_and_times():
    sel = apply_sampler(SAMPLERS.create("uniform", variant="segment-centre"), _grid(10), 4, {})
    assert sel.positions == (1, 3, 6, 8)
    assert sel.frame_indices == (30, 90, 180, 240)
    assert sel.timestamps == (1.0, 3.0, 6.0, 8.0)
    assert sel.sampler == "uniform" and len(sel.config_hash) == 12


def test_config_hash_separates_variants():
    a, b = SAMPLERS.create("uniform"), SAMPLERS.create("uniform", variant="linspace-round")
    assert a.config_hash != b.config_hash
    assert a.config_hash == SAMPLERS.create("uniform", variant="linspace-floor").config_hash


def test_missing_input_is_a_clear_error():
    with pytest.raises(HarnessError, match="needs input 'scores'"):
        apply_sampler(SAMPLERS.create("topk"), _grid(10), 4, {})


def test_unknown_sampler_and_bad_options():
    with pytest.raises(UnknownNameError, match="did you mean uniform"):
        SAMPLERS.create("unifrom")
    with pytest.raises(HarnessError, match="must be one of"):
        SAMPLERS.create("uniform", variant="linspace-ceil")
    with pytest.raises(HarnessError, match="unknown option 'k'"):
        SAMPLERS.create("uniform", k=3)
