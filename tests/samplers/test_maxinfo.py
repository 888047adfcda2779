"""MaxInfo: hand-checkable maxvol golden vectors (volumes computed by hand), the maxvol and growth properties checked
with independent linear algebra (determinants, least squares), the chunked variant against per-chunk selections,
and the sampler through apply_sampler and `harness run`."""
import itertools
import json

import numpy as np
import pytest

from harness.cli.app import main
from harness.errors import HarnessError
from harness.records import CandidateGrid
from harness.registry import SAMPLERS
from samplers.base import apply_sampler
from samplers.maxinfo import MaxInfo, maxinfo_details, maxinfo_select, maxvol, rect_maxvol  # registers "maxinfo"


def _grid(n):
    return CandidateGrid([30 * i for i in range(n)], [float(i) for i in range(n)], 30.0, 30 * n, "1fps")


def _video(rng, n=90, d=24, scenes=6):
    """Scenes of near-identical frames."""
    means = rng.normal(size=(scenes, d)) * 3
    return means[np.arange(n) * scenes // n] + rng.normal(scale=0.1, size=(n, d))


# ---------------------------------------------------------------------------------------------------------------
# Square maxvol

def test_scaled_basis_rows_are_the_maximal_volume():
    # rows along the axes: the largest |entry| on each axis spans the largest volume, |det| = 3 * 2 = 6
    a = np.array([[1, 0], [0, 1], [3, 0], [0, 0.5], [0, -2], [1, 1]], dtype=float)
    rows, b = maxvol(a)
    assert sorted(rows.tolist()) == [2, 4]
    np.testing.assert_allclose(b @ a[rows], a, atol=1e-12)


def test_swaps_leave_the_lu_start_for_a_larger_volume():
    # LU with partial pivoting starts at rows {0, 1} (|det| 1.09); rows {1, 2} have |det| 0.9 + 0.9 = 1.8,
    # rows {0, 2} 1 - 0.09 = 0.91. Row 2 on rows {0, 1} has coefficients (1.651, -0.835): 1.651 > 1.05, one swap.
    a = np.array([[1, 0.1], [0.9, -1], [0.9, 1]])
    dets = {pair: abs(np.linalg.det(a[list(pair)])) for pair in itertools.combinations(range(3), 2)}
    assert max(dets, key=dets.get) == (1, 2)
    rows, b = maxvol(a)
    assert rows.tolist() == [2, 1]  # row 2 took slot 0
    # row 0 = y * row 2 + x * row 1: 0.9(x + y) = 1, y - x = 0.1 -> y = 0.60556, x = 0.50556, both <= 1.05
    np.testing.assert_allclose(b[0], [(1 / 0.9 + 0.1) / 2, (1 / 0.9 - 0.1) / 2], atol=1e-12)


def test_maxvol_property_holds_on_random_matrices():
    rng = np.random.default_rng(3)
    for _ in range(25):
        n, r = rng.integers(6, 60), rng.integers(1, 6)
        a = rng.normal(size=(n, r))
        rows, _ = maxvol(a, tol=1.05, max_iters=200)
        assert len(set(rows.tolist())) == r
        coeffs = np.linalg.solve(a[rows].T, a.T).T  # independent: a = coeffs @ a[rows]
        assert np.abs(coeffs).max() <= 1.05 + 1e-9
        # and no single row swap increases the volume by more than the factor 1.05
        vol = abs(np.linalg.det(a[rows]))
        for slot in range(r):
            for row in range(n):
                trial = rows.copy()
                trial[slot] = row
                assert abs(np.linalg.det(a[trial])) <= 1.05 * vol + 1e-9


def test_square_matrix_or_fewer_rows_returns_every_row():
    a = np.eye(3)
    assert maxvol(a)[0].tolist() == [0, 1, 2]
    assert rect_maxvol(a[:2], tol=0.1).tolist() == [0, 1]


# ---------------------------------------------------------------------------------------------------------------
# Rectangular growth

AXES = np.array([[3, 0], [0, 2], [1, 0], [0, 1], [0.5, 0.5], [2, 0]], dtype=float)


def test_growth_golden_by_hand():
    # square stage: rows 0, 1; coefficient-row norms^2 of the rest: row 5 4/9, row 3 1/4, row 2 1/9, row 4 13/144.
    # tol 0.5 (0.25): add row 5; then row 3's norm^2 is 1/4 (not above) -> stop at 3 rows.
    assert rect_maxvol(AXES, tol=0.5).tolist() == [0, 1, 5]
    # tol 0.45 (0.2025): row 3 (1/4) is added too; then row 4: x part 0.5*(3,2)/13, y part 0.5*(2,1)/5,
    # norm^2 1/52 + 1/20 < 0.2025 -> stop at 4 rows
    assert rect_maxvol(AXES, tol=0.45).tolist() == [0, 1, 5, 3]
    assert rect_maxvol(AXES, tol=0.45, max_k=3).tolist() == [0, 1, 5]  # the budget caps growth
    assert rect_maxvol(AXES, tol=0.5, min_k=5).tolist() == [0, 1, 5, 3, 2]  # min_k grows past tol (fill=grow)


def _reference_growth(a, tol, max_k):
    """Independent transcription of the growth rule with least squares: start from the square maxvol rows, then
    add the unchosen row whose least-squares coefficients on the chosen rows have the largest norm."""
    rows = list(maxvol(a, 1.05, 10)[0])
    while len(rows) < max_k:
        coeffs = np.linalg.lstsq(a[rows].T, a.T, rcond=None)[0].T  # a ~ coeffs @ a[rows], minimum norm
        norms = np.linalg.norm(coeffs, axis=1)
        norms[rows] = -1
        best = int(np.argmax(norms))
        if norms[best] <= tol:
            break
        rows.append(best)
    return rows


@pytest.mark.parametrize("seed", range(12))
def test_growth_rule_matches_least_squares_transcription(seed):
    rng = np.random.default_rng(seed)
    n, r = int(rng.integers(10, 80)), int(rng.integers(1, 8))
    a = rng.normal(size=(n, r))
    tol, max_k = float(rng.choice([0.3, 0.6, 1.0])), int(rng.integers(r, n + 1))
    assert rect_maxvol(a, tol=tol, max_k=max_k).tolist() == _reference_growth(a, tol, max_k)


# ---------------------------------------------------------------------------------------------------------------
# The selection

def test_at_most_k_distinct_ascending_positions():
    rng = np.random.default_rng(0)
    f = _video(rng)
    for k in (1, 3, 8, 16, 40):
        for variant in ("fast", "chunked"):
            chosen = maxinfo_select(f, k, variant=variant, chunk_size=25)
            assert chosen == sorted(set(chosen)) and 1 <= len(chosen) <= k
            grown = maxinfo_select(f, k, variant=variant, chunk_size=25, fill="grow")
            assert len(grown) == k and grown == sorted(set(grown))


def test_every_scene_is_covered():
    rng = np.random.default_rng(1)
    f = _video(rng, n=90, scenes=6)  # scenes of 15 near-identical frames, 6 distinct directions
    chosen = maxinfo_select(f, 6, rank=6, svd="exact")
    assert sorted({p // 15 for p in chosen}) == list(range(6))


def test_rank_is_lowered_to_k():
    # the official call returns R > K rows when K < R; here the rank drops to K
    rng = np.random.default_rng(2)
    f = rng.normal(size=(50, 16))
    [chunk] = maxinfo_details(f, 3, rank=8)
    assert chunk["rank"] == 3 and len(chunk["positions"]) == 3
    [chunk] = maxinfo_details(f, 12, rank=8, tol=10.0)  # tol met at once: the square stage's R rows only
    assert chunk["rank"] == 8 and len(chunk["positions"]) == 8


def test_randomized_and_exact_svd_span_the_same_subspace_on_low_rank_features():
    rng = np.random.default_rng(4)
    f = rng.normal(size=(120, 5)) @ rng.normal(size=(5, 64))  # rank 5: both SVDs find the same span
    assert maxinfo_select(f, 10, rank=5) == maxinfo_select(f, 10, rank=5, svd="exact")


def test_chunked_equals_per_chunk_selections_concatenated():
    rng = np.random.default_rng(5)
    f = _video(rng, n=100)
    k, size = 12, 30  # chunks of 30, 30, 30, 10: budgets 3.6, 3.6, 3.6, 1.2 -> floors 3,3,3,1, +1 to the first two
    chunks = maxinfo_details(f, k, variant="chunked", chunk_size=size)
    assert [(c["start"], c["stop"], c["budget"]) for c in chunks] == [(0, 30, 4), (30, 60, 4), (60, 90, 3),
                                                                      (90, 100, 1)]
    expected = []
    for c in chunks:
        expected += [c["start"] + p for p in maxinfo_select(f[c["start"]:c["stop"]], c["budget"])]
    assert maxinfo_select(f, k, variant="chunked", chunk_size=size) == expected
    # one chunk covering the grid is the fast variant
    assert maxinfo_select(f, k, variant="chunked", chunk_size=100) == maxinfo_select(f, k)


def test_constant_and_degenerate_features():
    const = np.ones((20, 5))
    # rank 1: identical rows have coefficient norms 1/sqrt(m) after m rows; tol 0.3 stops once 1/m <= 0.09
    assert len(maxinfo_select(const, 16)) == 12
    assert len(maxinfo_select(const, 16, fill="grow")) == 16
    assert len(maxinfo_select(const, 4)) == 4
    assert maxinfo_select(np.zeros((10, 4)), 3) == []  # no direction at all: nothing (the sampler says why)
    assert maxinfo_select(np.zeros((10, 4)), 3, fill="grow") == [0, 1, 2]
    assert len(maxinfo_select(const, 8, normalize="standard")) >= 1  # centring leaves no direction: still runs
    with pytest.raises(HarnessError, match="NaN"):
        maxinfo_select(np.array([[1.0, np.nan], [0, 1]]), 1)


def test_deterministic():
    f = _video(np.random.default_rng(6))
    assert maxinfo_select(f, 8) == maxinfo_select(f.copy(), 8)


# ---------------------------------------------------------------------------------------------------------------
# The sampler

def test_sampler_through_apply_sampler():
    rng = np.random.default_rng(7)
    f = _video(rng, n=40).astype(np.float32)
    sampler = SAMPLERS.create("maxinfo", encoder="mini-clip")
    assert sampler.needs == ("image_features",)
    sel = apply_sampler(sampler, _grid(40), 8, {"image_features": f})
    assert list(sel.positions) == maxinfo_select(f, 8)
    assert sel.frame_indices == tuple(30 * p for p in sel.positions)
    # fewer candidates than K: the shared short-grid rule
    assert apply_sampler(sampler, _grid(3), 5, {"image_features": f[:3]}, "repeat").positions == (0, 0, 1, 1, 2)
    with pytest.raises(HarnessError, match="all zero"):
        apply_sampler(sampler, _grid(10), 3, {"image_features": np.zeros((10, 4), np.float32)})


def test_config_and_options():
    default = MaxInfo()
    assert default.config() == {"preset": "default", "rank": 8, "tol": 0.3, "variant": "fast", "normalize": "none",
                                "fill": "none", "svd": "randomized", "encoder": "openai/clip-vit-base-patch32"}
    assert "query" not in default.config()  # MaxInfo reads no text
    assert MaxInfo(query="question+options").config_hash == default.config_hash
    chunked = MaxInfo(variant="chunked", chunk_size=32, rank=4, tol=1)
    assert chunked.config()["chunk_size"] == 32 and chunked.config()["tol"] == 1.0
    assert MaxInfo(tol=1).config_hash == MaxInfo(tol=1.0).config_hash
    for bad, match in (({"variant": "slow"}, "variant"), ({"rank": 0}, "rank"), ({"tol": -1.0}, "tolerance"),
                       ({"fill": "pad"}, "fill"), ({"preset": "videomme"}, "preset"), ({"svd": "arpack"}, "svd")):
        with pytest.raises(HarnessError, match=match):
            SAMPLERS.create("maxinfo", **bad)


def test_harness_run_end_to_end(tmp_path):
    args = ["run", "--task", "smoke", "--task-arg", "videos=2", "--task-arg", "duration=12", "--backbone", "none",
            "--sampler", "maxinfo:encoder=mini-clip", "--frames", "4", "--no-progress",
            "--out", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 0
    [predictions] = (tmp_path / "runs").glob("*/predictions.jsonl")
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert rows
    for row in rows:
        positions = row["selection"]["positions"]
        assert 1 <= len(positions) <= 4 and positions == sorted(set(positions))
