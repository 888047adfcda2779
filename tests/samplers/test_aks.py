"""AKS: golden vectors from the official `frame_select.py` (ncTimTang/AKS, run by hand; official mode) and hand computation (fixed mode), and
agreement with an independent, literal, recursive transcription of the judge-and-split pseudocode on random vectors."""
import heapq
import warnings

import numpy as np
import pytest

from harness.config import parse_spec
from harness.errors import HarnessError
from harness.records import CandidateGrid
from harness.registry import SAMPLERS
from samplers.aks import AKS, PRESETS, aks_leaves, aks_select  # also registers "aks"
from samplers.base import apply_sampler

# golden vectors of the official frame_select.py (V1, V2, V4, V5 share these scores)
ZIGZAG = [0.1, 0.9, 0.2, 0.8, 0.3, 0.7, 0.4, 0.6, 0.5, 0.0, 0.05, 0.95, 0.15, 0.85, 0.25, 0.75, 0.35, 0.65, 0.45,
          0.55]
V10 = [0.888, 0.975, 0.602, 0.659, 0.089, 0.849, 0.059, 0.799, 0.193, 0.006, 0.065, 0.589, 0.884, 0.099, 0.244,
       0.13, 0.492, 0.782, 0.134, 0.01, 0.862, 0.427, 0.524, 0.838, 0.706, 0.641, 0.669, 0.474, 0.872, 0.341, 0.816,
       0.839, 0.237, 0.325, 0.036, 0.869, 0.72, 0.114, 0.311, 0.731, 0.923, 0.584, 0.947]
V11 = [0.0, 0.002, 0.004, 0.001, 0.003, 0.0, 0.002, 0.004, 1.001, 1.003, 1.0, 1.002, 0.004, 0.001, 0.003, 0.0, 0.002,
       0.004, 0.001, 0.003, 0.0, 0.002, 0.004, 0.001, 0.003, 0.0, 0.002, 0.004, 0.001, 0.003, 0.0, 0.002]


# ---------------------------------------------------------------------------------------------------------------
# Independent reference: AKS's judge-and-split pseudocode transcribed literally (recursive, Python lists, heapq, real NaNs).

def reference_aks(scores, m, t1, depth, t2=-100.0):
    ids = list(range(len(scores)))
    if len(scores) < m:
        return ids, []
    raw = np.array(scores, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 0/0 on constant scores; mean of an empty half
        s = (raw - np.min(raw)) / (np.max(raw) - np.min(raw))
        leaves = []

        def judge(seg, seg_ids, d):
            top = [seg[i] for i in heapq.nlargest(m, range(len(seg)), seg.__getitem__)]
            if np.mean(top) - np.mean(seg) > t1 and np.std(seg) > t2:
                leaves.append((seg, seg_ids, d))
            elif d < depth:
                half = len(seg) // 2
                judge(seg[:half], seg_ids[:half], d + 1)
                judge(seg[half:], seg_ids[half:], d + 1)
            else:
                leaves.append((seg, seg_ids, d))

        judge(s, ids, 0)
    out, summary = [], []
    for seg, seg_ids, d in leaves:
        q = m // 2 ** d
        picked = [seg_ids[i] for i in heapq.nlargest(q, range(len(seg)), seg.__getitem__)]
        out += picked
        if seg_ids:
            summary.append((d, seg_ids[0], seg_ids[-1] + 1, len(picked)))
    return sorted(out), sorted(summary, key=lambda leaf: leaf[1])


def random_scores(rs, n):
    kind = rs.randint(7)
    if kind == 0:
        return rs.rand(n)
    if kind == 1:
        return rs.rand(n) ** rs.randint(2, 9)  # skewed: a few high scores
    if kind == 2:  # step / peaked: low noise with one or two high blocks
        x = rs.rand(n) * 0.01
        for _ in range(rs.randint(1, 3)):
            a = rs.randint(n)
            x[a:a + rs.randint(1, max(2, n // 8))] += 1.0
        return x
    if kind == 3:
        return np.full(n, rs.rand())  # constant
    if kind == 4:
        return np.round(rs.rand(n), 1)  # many ties
    if kind == 5:
        return rs.randint(0, 3, n).astype(float)  # few levels, heavy ties
    return (0.15 + 0.2 * rs.rand(n)).astype(np.float32)  # CLIP-like cosines in float32


BUDGETS = [1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 32, 48, 64, 128]
T1S = [0.0, 0.05, 0.2, 0.3, 0.4, 0.45, 0.5, 0.8, 1.1, -0.5]


def random_case(seed):
    rs = np.random.RandomState(seed)
    k = BUDGETS[rs.randint(len(BUDGETS))]
    if seed % 25 == 0:
        n = int(rs.randint(4000)) + 1
    elif seed % 5 == 1:  # n == K: every gap is rounding noise around 0, which t1 = 0.0 turns into splits (as frame_select.py does)
        n = k
    elif seed % 5 == 2:
        n = int(rs.randint(1, 4 * k + 60))  # around K, including short videos (n < K)
    else:  # n / K from 1 to 60, log-uniform: long segments keep large gaps, so leaves stop at mixed depths
        n = min(4000, int(k * np.exp(rs.uniform(0, np.log(60)))) + int(rs.randint(0, 20)))
    t2 = -100.0 if rs.rand() < 0.8 else float(rs.choice([0.0, 0.2, 0.3]))
    return random_scores(rs, n), k, float(rs.choice(T1S)), int(rs.randint(0, 8)), t2


# ---------------------------------------------------------------------------------------------------------------
# Official mode: golden vectors of the official frame_select.py

@pytest.mark.parametrize("name,scores,k,t1,depth,expected", [
    ("V1", ZIGZAG, 4, 0.8, 2, [1, 5, 11, 15]),
    ("V2", ZIGZAG, 4, 0.2, 2, [1, 3, 11, 13]),
    ("V2", ZIGZAG, 4, 0.3, 2, [1, 3, 11, 13]),
    ("V4 shortfall", ZIGZAG, 6, 0.8, 2, [1, 5, 11, 15]),
    ("V5 empty", ZIGZAG, 2, 0.8, 2, []),
    ("V6 constant", [0.5] * 10, 4, 0.8, 2, [0, 2, 5, 7]),
    ("V7 ties", [1, 1, 1, 1, 0, 0, 0, 0], 2, 0.8, 0, [0, 1]),
    ("V8 short video", [0.2, 0.9, 0.1], 4, 0.8, 5, [0, 1, 2]),
    ("V9 n == M", [0.3, 0.1, 0.4, 0.1, 0.5, 0.9, 0.2, 0.6], 8, 0.8, 3, list(range(8))),
    ("V10 mixed depths", V10, 8, 0.4, 3, [0, 1, 12, 20, 23, 28, 35, 42]),
    ("V11 peaked", V11, 4, 0.5, 3, [8, 9, 10, 11]),
    ("V11 peaked", V11, 4, 0.8, 3, [8, 9, 10, 11]),
])
def test_official_golden_vectors(name, scores, k, t1, depth, expected):
    assert aks_select(scores, k, t1=t1, depth=depth) == expected
    assert reference_aks(scores, k, t1, depth)[0] == expected  # the reference itself reproduces the spec


@pytest.mark.parametrize("scores,k,t1,depth,leaves", [  # (depth, first id, last id, frames) as the official frame_select.py gives them
    (ZIGZAG, 4, 0.8, 2, [(2, 0, 4, 1), (2, 5, 9, 1), (2, 10, 14, 1), (2, 15, 19, 1)]),
    (ZIGZAG, 4, 0.2, 2, [(0, 0, 19, 4)]),
    ([0.5] * 10, 4, 0.8, 2, [(2, 0, 1, 1), (2, 2, 4, 1), (2, 5, 6, 1), (2, 7, 9, 1)]),
    (V10, 8, 0.4, 3, [(1, 0, 20, 4), (3, 21, 25, 1), (3, 26, 31, 1), (3, 32, 36, 1), (3, 37, 42, 1)]),
    (V11, 4, 0.8, 3, [(0, 0, 31, 4)]),
])
def test_official_leaves_match_spec(scores, k, t1, depth, leaves):
    got = [(leaf.depth, leaf.start, leaf.stop - 1, leaf.take) for leaf in aks_leaves(scores, k, t1=t1, depth=depth)]
    assert got == leaves


def test_official_constant_scores_take_the_first_index_of_each_leaf():
    # official frame_select.py, case 1: n=300, M=32, L=5 -> [0, 9, 18, 27, 37, ...]: 32 leaves, one frame each, the first of each
    chosen = aks_select(np.full(300, 0.7), 32, t1=0.8, depth=5)
    assert chosen[:5] == [0, 9, 18, 27, 37]
    assert chosen == [leaf.start for leaf in aks_leaves(np.full(300, 0.7), 32, t1=0.8, depth=5)]
    assert len(chosen) == 32


def test_official_budget_below_two_to_the_depth_is_empty():
    # official frame_select.py, case 4: K=16 or 8 with L=5 on non-peaked scores -> nothing
    scores = np.random.RandomState(0).rand(1000)
    assert aks_select(scores, 16, t1=0.8, depth=5) == []
    assert aks_select(scores, 8, t1=0.8, depth=5) == []


def test_official_budget_not_divisible_by_leaves_loses_frames():
    # official frame_select.py, case 3: M=48, L=5, full split -> 32 frames (floor(48/32) = 1 per leaf)
    scores = np.random.RandomState(1).rand(1000)
    assert len(aks_select(scores, 48, t1=0.8, depth=5)) == 32


def test_uneven_halves_give_the_left_half_fewer():
    # official frame_select.py, case 7: 43 -> 21 | 22, 11 -> 5 | 6
    leaves = aks_leaves([0.5] * 43, 2, depth=1)
    assert [(leaf.start, leaf.stop) for leaf in leaves] == [(0, 21), (21, 43)]
    leaves = aks_leaves([0.5] * 11, 2, depth=1)
    assert [(leaf.start, leaf.stop) for leaf in leaves] == [(0, 5), (5, 11)]


def test_low_t1_is_global_top_k_and_high_t1_is_equal_bins():
    scores = np.random.RandomState(2).rand(640)
    top = sorted(np.argsort(-scores, kind="stable")[:64].tolist())
    assert aks_select(scores, 64, t1=0.2, depth=5) == top  # frame_select.py: random-uniform root gap ~0.45 > 0.2
    bins = aks_leaves(scores, 64, t1=0.8, depth=5)
    assert [(leaf.depth, leaf.stop - leaf.start, leaf.take) for leaf in bins] == [(5, 20, 2)] * 32


def test_scores_are_normalised_once_so_affine_changes_do_not_matter():
    scores = np.random.RandomState(3).rand(200)
    for k, t1, depth in [(16, 0.3, 3), (32, 0.8, 5), (8, 0.5, 2)]:
        assert aks_select(scores, k, t1, depth) == aks_select(3.0 * scores - 7.0, k, t1, depth)


def test_very_deep_limits_are_cheap_and_match_the_reference():
    scores = np.random.RandomState(4).rand(50)
    assert aks_select(scores, 4, t1=0.8, depth=60) == []  # 2^60 segments in the official code; here instant
    for depth in (6, 7):  # deeper than log2(50): singletons and empty halves reach the depth limit
        assert aks_select(scores, 4, t1=0.8, depth=depth) == reference_aks(scores, 4, 0.8, depth)[0]
        assert aks_select(scores, 2, t1=-1.0, depth=depth) == reference_aks(scores, 2, -1.0, depth)[0]


@pytest.mark.parametrize("bad", [[0.1, float("nan"), 0.3], [0.1, float("inf"), 0.3]])
def test_non_finite_scores_are_rejected_in_both_modes(bad):
    for mode in ("official", "fixed"):
        with pytest.raises(HarnessError, match="NaN or infinite"):
            aks_select(bad, 2, mode=mode)


@pytest.mark.parametrize("kwargs,match", [
    ({"mode": "compat"}, "unknown mode"),
    ({"depth": -1}, "depth must be"),
    ({"depth": 2.5}, "depth must be"),
    ({"t1": "high"}, "t1 must be a number"),
    ({"t1": float("nan")}, "t1 must be a number"),
    ({"t2": None}, "t2 must be a number"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises(HarnessError, match=match):
        aks_select(ZIGZAG, 4, **kwargs)
    with pytest.raises(HarnessError, match="budget"):
        aks_select(ZIGZAG, 0)


# ---------------------------------------------------------------------------------------------------------------
# Official mode == the literal transcription, on random vectors

RANDOM_CASES = 400


def test_official_agrees_with_reference_on_random_vectors():
    seen_shortfall = seen_empty = seen_constant = 0
    for seed in range(RANDOM_CASES):
        scores, k, t1, depth, t2 = random_case(seed)
        n = len(scores)
        expected, expected_leaves = reference_aks(scores, k, t1, depth, t2)
        got = aks_select(scores, k, t1=t1, depth=depth, t2=t2)
        assert got == expected, f"seed {seed}: n={n} k={k} t1={t1} depth={depth} t2={t2}"
        assert got == sorted(set(got)) and all(0 <= p < n for p in got)
        leaves = aks_leaves(scores, k, t1=t1, depth=depth, t2=t2)
        if n < k:
            assert got == list(range(n)) and leaves == []
            continue
        # non-empty leaves tile the timeline, and their frames add up to the output (invariants of the official selection)
        assert [(leaf.depth, leaf.start, leaf.stop, leaf.take) for leaf in leaves] == expected_leaves
        assert [leaf.start for leaf in leaves] == [0] + [leaf.stop for leaf in leaves[:-1]]
        assert leaves[-1].stop == n and len(got) == sum(leaf.take for leaf in leaves)
        seen_shortfall += 0 < len(got) < k
        seen_empty += not got
        seen_constant += np.ptp(scores) == 0
    # the random cases do exercise the quirks
    assert min(seen_shortfall, seen_empty, seen_constant) >= 5


def busy_and_quiet_halves(rs, n, k):
    """One half uniformly busy, the other quiet with about k spikes: the root is not peaked (the busy half lifts the
    mean), the quiet half is (its spikes stand far above its mean), the busy half splits on: mixed depths."""
    busy_level = rs.uniform(0.2, 0.9)
    x = busy_level + 0.1 * rs.rand(n)
    quiet = x[: n // 2] if rs.rand() < 0.5 else x[n // 2:]  # a view: writes land in x
    quiet[:] = 0.05 * rs.rand(len(quiet))
    quiet[rs.randint(0, len(quiet), k + rs.randint(0, k + 1))] = 1.0
    return x


def test_official_agrees_with_reference_on_mixed_depths():
    seen_mixed_depths = 0
    for seed in range(150):
        rs = np.random.RandomState(5000 + seed)
        k = [1, 2, 3, 4, 6, 8, 16, 32][seed % 8]
        n = int(k * rs.uniform(8, 60)) + 2
        scores, t1, depth = busy_and_quiet_halves(rs, n, k), float(rs.choice([0.7, 0.8, 0.9])), rs.randint(1, 7)
        assert aks_select(scores, k, t1=t1, depth=depth) == reference_aks(scores, k, t1, depth)[0], seed
        seen_mixed_depths += len({leaf.depth for leaf in aks_leaves(scores, k, t1=t1, depth=depth)}) > 1
    assert seen_mixed_depths >= 50


def test_official_reproduces_rounding_noise_at_t1_zero():
    # frame_select.py: once len(segment) <= K the gap is mean(all) - mean(all) up to rounding, and with t1 = 0 its sign decides
    # the split. The official code averages the top values in descending-score order; so must we, bit for bit.
    for seed in range(200):
        rs = np.random.RandomState(1000 + seed)
        k = [5, 6, 7, 12, 16, 32, 48, 64][seed % 8]
        scores, depth = rs.rand(k), int(rs.randint(0, 6))
        assert aks_select(scores, k, t1=0.0, depth=depth) == reference_aks(scores, k, 0.0, depth)[0], seed


# ---------------------------------------------------------------------------------------------------------------
# Fixed mode

@pytest.mark.parametrize("scores,k,t1,depth,expected", [
    # V4, K=6: leaves at depth 2 get floor(1.5)=1 each; the two left over go to the leaves whose next best is
    # highest: 0.85 (id 13) and 0.8 (id 3)
    (ZIGZAG, 6, 0.8, 2, [1, 3, 5, 11, 13, 15]),
    # V5, K=2: depth capped at 1, one frame per half: 0.9 (id 1) and 0.95 (id 11)
    (ZIGZAG, 2, 0.8, 2, [1, 11]),
    # K=3: depth capped at 1; halves get 1 each, the extra goes to the half whose next best is higher (0.85 > 0.8)
    (ZIGZAG, 3, 0.8, 2, [1, 11, 13]),
    # where the official allocation is exact, fixed changes nothing
    (ZIGZAG, 4, 0.8, 2, [1, 5, 11, 15]),
    (V10, 8, 0.4, 3, [0, 1, 12, 20, 23, 28, 35, 42]),
    # constant scores: evenly spaced, linspace(0, n-1, K) floored
    ([0.5] * 10, 3, 0.8, 2, [0, 4, 9]),
    ([0.5] * 10, 4, 0.8, 2, [0, 3, 6, 9]),
])
def test_fixed_golden(scores, k, t1, depth, expected):
    assert aks_select(scores, k, t1=t1, depth=depth, mode="fixed") == expected


def test_official_on_the_fixed_examples_falls_short():
    assert aks_select(ZIGZAG, 3, t1=0.8, depth=2) == []  # floor(3/4) = 0 per depth-2 leaf


def test_fixed_caps_the_depth_at_log2_k():
    scores = np.random.RandomState(5).rand(1000)
    leaves = aks_leaves(scores, 8, t1=0.8, depth=5, mode="fixed")
    assert {leaf.depth for leaf in leaves} == {3} and len(leaves) == 8
    assert len(aks_select(scores, 48, t1=0.8, depth=5, mode="fixed")) == 48  # official: 32


def test_fixed_returns_exactly_k_distinct_for_every_small_grid():
    rs = np.random.RandomState(6)
    for n in range(1, 25):
        scores = np.round(rs.rand(n), 1)
        for k in range(1, n + 1):
            for depth in (0, 2, 5):
                for t1 in (0.2, 0.8):
                    got = aks_select(scores, k, t1=t1, depth=depth, mode="fixed")
                    assert len(got) == k and got == sorted(set(got)) and got[-1] < n, (n, k, depth, t1)


def test_fixed_random_vectors():
    for seed in range(RANDOM_CASES):
        scores, k, t1, depth, t2 = random_case(seed)
        n = len(scores)
        got = aks_select(scores, k, t1=t1, depth=depth, t2=t2, mode="fixed")
        if n < k:
            assert got == list(range(n))
            continue
        assert len(got) == k and got == sorted(set(got)) and 0 <= got[0] and got[-1] < n, f"seed {seed}"
        if np.ptp(scores) == 0:
            assert got == np.linspace(0, n - 1, k).astype(int).tolist()
        elif k & (k - 1) == 0 and depth <= k.bit_length() - 1:  # exact floors: fixed is the official result
            assert got == reference_aks(scores, k, t1, depth, t2)[0], f"seed {seed}"


# ---------------------------------------------------------------------------------------------------------------
# The registered sampler

def _grid(n, step=30, fps=30.0):
    idx = [i * step for i in range(n)]
    return CandidateGrid(idx, [i / fps for i in idx], fps, n * step, "1fps")


def test_registered_defaults_and_presets():
    entry = SAMPLERS.get("aks")
    params = {p.name: p for p in entry.params}
    assert set(params["preset"].choices) == {"default", "videomme", "longvideobench", "mlvu", "lvbench"}
    assert params["mode"].choices == ("official", "fixed")
    sampler = SAMPLERS.create("aks")
    assert sampler.needs == ("scores",)
    assert sampler.config() == {"preset": "default", "t1": 0.8, "depth": 5, "t2": -100.0, "mode": "official",
                                "encoder": "Salesforce/blip-itm-large-coco", "query": "question"}
    assert PRESETS["videomme"] == (0.8, 5) and PRESETS["longvideobench"] == (0.2, 3)
    lvb = SAMPLERS.create("aks", preset="longvideobench")
    assert (lvb.t1, lvb.depth) == (0.2, 3)
    override = SAMPLERS.create("aks", preset="longvideobench", t1=0.5)
    assert (override.preset, override.t1, override.depth) == ("longvideobench", 0.5, 3)


def test_cli_spec_and_config_hash():
    name, args = parse_spec("aks:mode=fixed,t1=0.8,depth=3")
    sampler = SAMPLERS.create(name, **args)
    assert (sampler.mode, sampler.t1, sampler.depth) == ("fixed", 0.8, 3)
    assert SAMPLERS.create("aks", t1=1).config_hash == SAMPLERS.create("aks", t1=1.0).config_hash
    assert SAMPLERS.create("aks").config_hash != SAMPLERS.create("aks", mode="fixed").config_hash
    assert SAMPLERS.create("aks").config_hash != SAMPLERS.create("aks", preset="videomme").config_hash
    assert SAMPLERS.create("aks", encoder="openai/clip-vit-base-patch32").config_hash != \
        SAMPLERS.create("aks").config_hash


@pytest.mark.parametrize("kwargs,match", [
    ({"mode": "compat"}, "must be one of"),
    ({"preset": "egoschema"}, "must be one of"),
    ({"query": "options"}, "must be one of"),
    ({"depth": -1}, "depth must be"),
    ({"t1": "0.8x"}, "t1 must be a number"),
])
def test_registered_bad_options(kwargs, match):
    with pytest.raises(HarnessError, match=match):
        SAMPLERS.create("aks", **kwargs)
    with pytest.raises(HarnessError):
        AKS(**kwargs)  # direct construction validates too


def test_select_through_the_runner_path():
    grid = _grid(20)
    sel = apply_sampler(SAMPLERS.create("aks", depth=2), grid, 4, {"scores": np.asarray(ZIGZAG, dtype=np.float32)})
    assert sel.positions == (1, 5, 11, 15) and sel.frame_indices == (30, 150, 330, 450)
    # official shortfall is the selection: no padding, no fallback
    short = apply_sampler(SAMPLERS.create("aks", depth=2), grid, 6, {"scores": np.asarray(ZIGZAG)})
    assert short.positions == (1, 5, 11, 15)
    fixed = apply_sampler(SAMPLERS.create("aks", depth=2, mode="fixed"), grid, 6, {"scores": np.asarray(ZIGZAG)})
    assert fixed.positions == (1, 3, 5, 11, 13, 15)
    # fewer candidates than K: the shared short-grid rule, as for every sampler
    assert apply_sampler(SAMPLERS.create("aks"), _grid(3), 5, {"scores": np.arange(3.0)}, "repeat").positions == \
        (0, 0, 1, 1, 2)


def test_empty_official_selection_is_an_error_naming_the_cause():
    with pytest.raises(HarnessError, match=r"no frames.*K=2, depth=2.*mode=fixed or depth<=1"):
        apply_sampler(SAMPLERS.create("aks", depth=2), _grid(20), 2, {"scores": np.asarray(ZIGZAG)})
    with pytest.raises(HarnessError, match="NaN"):
        apply_sampler(SAMPLERS.create("aks"), _grid(3), 2, {"scores": np.array([0.1, np.nan, 0.2])})
