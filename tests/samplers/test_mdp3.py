"""MDP3: the kernel by hand, greedy MAP against a naive log-det greedy and a brute force over every subset, the
dynamic programme against an independent transcription of the paper's recursion and a brute force over every split
of the budget, edge cases, the sampler contract and one `harness run` on the smoke task with mini-clip features.

The references below are written from the paper's equations (arXiv 2501.02885, Sec. 3): k(x, y) = sum_u w_u
exp(-||x - y||^2 / (2 alpha_u)), log det L~_S = (1/lambda) sum_{i in S} log r_i^2 + log det L_S with r_i = k(f_i, q),
and they never call the code under test."""
import itertools
import json
import math

import numpy as np
import pytest

from harness.config import RunConfig, parse_spec
from harness.errors import HarnessError
from harness.records import CandidateGrid
from harness.registry import SAMPLERS
from samplers.base import apply_sampler
from samplers.mdp3 import (DEFAULT_ALPHAS, MDP3, PRESETS, greedy_conditional_dpp, mdp3_path, mdp3_select,
                           multi_gaussian_kernel)

ALPHAS = [2.0 ** e for e in range(-3, 2)]


# ---------------------------------------------------------------------------------------------------------------
# Independent reference: the paper's equations, element by element.

def unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.sqrt((v * v).sum(axis=-1, keepdims=True))


def ref_k(a, b, alphas=ALPHAS, weights=None):
    weights = [1.0] * len(alphas) if weights is None else weights
    dist = sum((ai - bi) ** 2 for ai, bi in zip(a, b))
    return sum(w * math.exp(-dist / (2 * al)) for w, al in zip(weights, alphas))


def ref_logdet(x, q, subset, lam):
    """log det of the conditional kernel over `subset`: (1/lambda) sum log r_i^2 + log det L_S."""
    if not subset:
        return 0.0
    rel = sum(math.log(ref_k(x[i], q) ** 2) for i in subset) / lam
    gram = np.array([[ref_k(x[i], x[j]) for j in subset] for i in subset])
    sign, logdet = np.linalg.slogdet(gram)
    assert sign > 0
    return rel + logdet


def naive_greedy(x, q, given, candidates, count, lam):
    """Add, one at a time, the candidate that maximises the log det of given + chosen + it (first maximum)."""
    chosen, scores = [], [0.0]
    for _ in range(count):
        best, best_value = None, -math.inf
        for i in candidates:
            if i in chosen:
                continue
            value = ref_logdet(x, q, list(given) + chosen + [i], lam)
            if best is None or value > best_value:
                best, best_value = i, value
        chosen.append(best)
        scores.append(best_value)
    return scores, chosen


def segments_of(n, m):
    m = n if m <= 0 else m
    return [list(range(s, min(s + m, n))) for s in range(0, n, m)]


def ref_dp(x, q, k, lam, m, condition):
    """The paper's recursion V_t(i) = max_j V_{t-1}(i - j) + R_t(j | path), one best path per count."""
    best = {0: (0.0, [])}
    for seg in segments_of(len(x), m):
        nxt = {}
        for done in sorted(best):
            value, path = best[done]
            given = path[len(path) - min(condition, len(path)):]
            scores, chosen = naive_greedy(x, q, given, seg, min(k - done, len(seg)), lam)
            for j in range(len(scores)):
                if done + j not in nxt or value + scores[j] > nxt[done + j][0]:
                    nxt[done + j] = (value + scores[j], path + sorted(chosen[:j]))
        best = nxt
    return best[k]


def brute_force_splits(x, q, k, lam, m, condition):
    """Every split (k_1, ..., k_T) of the budget over the segments, each run in time order: the best total."""
    segs = segments_of(len(x), m)
    best = (-math.inf, None)
    for split in itertools.product(*[range(len(s) + 1) for s in segs]):
        if sum(split) != k:
            continue
        total, path = 0.0, []
        for seg, j in zip(segs, split):
            given = path[len(path) - min(condition, len(path)):]
            scores, chosen = naive_greedy(x, q, given, seg, j, lam)
            total += scores[j]
            path += sorted(chosen)
        if total > best[0]:
            best = (total, path)
    return best


def assert_same(got, want):
    """(value(s), frames) of the code under test equal those of a reference."""
    assert got[1] == want[1]
    assert got[0] == pytest.approx(want[0], rel=1e-9, abs=1e-9)


def scenes(rng, n, d=6, count=3, spread=0.5):
    centres = rng.normal(size=(count, d))
    labels = np.sort(rng.integers(0, count, size=n))
    x = unit(centres[labels] + spread * rng.normal(size=(n, d)))
    q = unit(centres[rng.integers(count)] + rng.normal(size=d))
    return x, q


# ---------------------------------------------------------------------------------------------------------------
# The kernel

def test_kernel_by_hand():
    a, b = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0], [1.0, 0.0]])
    # ||a - b0||^2 = 2: exp(-2 / 1) + exp(-2 / 4); ||a - b1||^2 = 0: 1 + 1
    got = multi_gaussian_kernel(a, b, alphas=(0.5, 2.0))
    assert got == pytest.approx(np.array([[math.exp(-2.0) + math.exp(-0.5), 2.0]]))
    weighted = multi_gaussian_kernel(a, b, alphas=(0.5, 2.0), weights=(0.25, 0.75))
    assert weighted[0, 0] == pytest.approx(0.25 * 0.1353352832366127 + 0.75 * 0.6065306597126334)
    assert DEFAULT_ALPHAS == tuple(ALPHAS)


def test_kernel_matches_reference_on_random_vectors():
    rng = np.random.default_rng(1)
    a, b = unit(rng.normal(size=(4, 5))), unit(rng.normal(size=(3, 5)))
    want = np.array([[ref_k(ai, bj) for bj in b] for ai in a])
    assert multi_gaussian_kernel(a, b) == pytest.approx(want, rel=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# Greedy MAP (incremental Cholesky) against the naive log-det greedy and a brute force over subsets

def run_greedy(x, q, given, candidates, cap, lam):
    items = list(given) + list(candidates)
    log_rel = np.array([math.log(ref_k(x[i], q) ** 2) / lam for i in items])
    gram = np.array([[ref_k(x[i], x[j]) for j in items] for i in items])
    scores, picks = greedy_conditional_dpp(gram, log_rel, len(given), cap)
    return scores, [items[p] for p in picks]


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("n_given", [0, 1, 2])
def test_greedy_equals_naive_greedy(seed, n_given):
    rng = np.random.default_rng(seed)
    x, q = scenes(rng, 12)
    lam = float(rng.choice([0.2, 0.5, 1.0, 3.0]))
    given, candidates = list(range(n_given)), list(range(n_given, 12))
    assert_same(run_greedy(x, q, given, candidates, 6, lam), naive_greedy(x, q, given, candidates, 6, lam))


@pytest.mark.parametrize("seed", range(8))
def test_greedy_against_every_subset(seed):
    rng = np.random.default_rng(100 + seed)
    x, q = scenes(rng, 8)
    given = [0] if seed % 2 else []
    candidates = list(range(len(given), 8))
    scores, picks = run_greedy(x, q, given, candidates, 4, 0.2)
    for j in range(1, 5):
        # the reported score is the log det of the set it picked
        assert scores[j] == pytest.approx(ref_logdet(x, q, given + picks[:j], 0.2), rel=1e-9)
        exact = max(ref_logdet(x, q, given + list(s), 0.2) for s in itertools.combinations(candidates, j))
        assert scores[j] <= exact + 1e-9  # greedy never beats the exact MAP
        if j == 1:
            assert scores[1] == pytest.approx(exact)  # one step of greedy is exact


def test_greedy_is_exact_when_frames_are_orthogonal():
    # far-apart frames: L is (almost) diagonal, log det is modular, greedy = exact = the most relevant frames
    x = np.eye(6)
    q = unit([0.9, 0.1, 0.5, 0.0, 0.7, 0.3])
    lam = 0.5
    scores, picks = run_greedy(x, q, [], range(6), 3, lam)
    exact = max(itertools.combinations(range(6), 3), key=lambda s: ref_logdet(x, q, list(s), lam))
    assert sorted(picks) == sorted(exact) == [0, 2, 4]


def test_greedy_ties_go_to_the_earlier_frame():
    x = unit([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 1.0]])  # frames 1 and 2 are the same frame
    q = unit([0.0, 1.0])
    _, picks = run_greedy(x, q, [], range(4), 1, 0.2)
    assert picks == [1]


# ---------------------------------------------------------------------------------------------------------------
# The dynamic programme against the paper's recursion and against every split of the budget

@pytest.mark.parametrize("seed", range(10))
def test_dp_equals_reference_recursion(seed):
    rng = np.random.default_rng(200 + seed)
    n = int(rng.integers(8, 14))
    x, q = scenes(rng, n)
    k, m = int(rng.integers(1, 6)), int(rng.choice([3, 4, 5, 0]))
    lam, condition = float(rng.choice([0.2, 0.5, 1.0])), int(rng.choice([0, 1, 2]))
    assert_same(mdp3_path(x, q, k, lam=lam, segment=m, condition=condition), ref_dp(x, q, k, lam, m, condition))


@pytest.mark.parametrize("seed", range(8))
def test_dp_equals_brute_force_over_budget_splits_without_conditioning(seed):
    rng = np.random.default_rng(300 + seed)
    x, q = scenes(rng, 12)
    k, m = int(rng.integers(2, 6)), int(rng.choice([3, 4]))
    assert_same(mdp3_path(x, q, k, lam=0.2, segment=m, condition=0), brute_force_splits(x, q, k, 0.2, m, 0))


@pytest.mark.parametrize("seed", range(6))
def test_dp_with_conditioning_is_a_feasible_split(seed):
    # with conditioning, one best path per count is kept (as published): never better than the best split
    rng = np.random.default_rng(400 + seed)
    x, q = scenes(rng, 12)
    value, path = mdp3_path(x, q, 4, lam=0.2, segment=4, condition=1)
    best_value, _ = brute_force_splits(x, q, 4, 0.2, 4, 1)
    assert value <= best_value + 1e-9 and len(path) == 4


def test_dp_ties_keep_the_first_state_reached():
    # two identical segments: one frame from either scores exactly the same; the state "1 frame after segment 2"
    # is first reached by taking it in segment 2 (fewer frames before it), and a tie does not replace it
    rng = np.random.default_rng(11)
    half, q = scenes(rng, 5)
    x = np.concatenate([half, half])
    best = int(np.argmax(half @ q))
    assert ref_dp(x, q, 1, 0.2, 5, 1)[1] == [5 + best]
    for condition in (0, 1):
        assert mdp3_select(x, q, 1, segment=5, condition=condition) == [5 + best]


# ---------------------------------------------------------------------------------------------------------------
# Edge cases

def test_k1_is_the_most_relevant_frame():
    rng = np.random.default_rng(5)
    x, q = scenes(rng, 40, count=5)
    for m in (0, 8, 16):
        assert mdp3_select(x, q, 1, segment=m) == [int(np.argmax(x @ q))]


def test_no_more_candidates_than_budget_gives_all():
    rng = np.random.default_rng(6)
    x, q = scenes(rng, 5)
    assert mdp3_select(x, q, 5) == [0, 1, 2, 3, 4]
    assert mdp3_select(x, q, 9) == [0, 1, 2, 3, 4]


def test_duplicates_are_not_selected_twice():
    # top-k would take both copies of the most relevant frame; the DPP takes one
    rng = np.random.default_rng(7)
    x, q = scenes(rng, 20)
    top = int(np.argmax(x @ q))
    x = np.insert(x, top + 1, x[top], axis=0)
    chosen = mdp3_select(x, q, 4, segment=0)
    assert not {top, top + 1} <= set(chosen)
    assert top in chosen


def test_constant_features_give_k_distinct_frames_deterministically():
    x, q = np.ones((64, 4)), np.array([1.0, 0.0, 0.0, 0.0])
    value, first = mdp3_path(x, q, 4)
    assert len(set(first)) == 4 and first == sorted(first) and math.isfinite(value)
    assert mdp3_path(x, q, 4)[1] == first


def test_features_are_l2_normalised_inside():
    rng = np.random.default_rng(8)
    x, q = scenes(rng, 30)
    scale = rng.uniform(0.5, 20.0, size=(30, 1))
    assert mdp3_select(x * scale, q * 7.0, 6, segment=8) == mdp3_select(x, q, 6, segment=8)


def test_bad_input_is_one_clear_error():
    rng = np.random.default_rng(9)
    x, q = scenes(rng, 10)
    with pytest.raises(HarnessError, match="do not match"):
        mdp3_select(x, q[:3], 2)
    with pytest.raises(HarnessError, match="NaN"):
        mdp3_select(np.where(np.eye(10, 6) > 0, np.nan, x), q, 2)
    with pytest.raises(HarnessError, match="lam"):
        mdp3_select(x, q, 2, lam=0)
    with pytest.raises(HarnessError, match="weights"):
        mdp3_select(x, q, 2, weights=(1.0,))


# ---------------------------------------------------------------------------------------------------------------
# The sampler

def grid(n):
    return CandidateGrid([8 * i for i in range(n)], [float(i) for i in range(n)], 8.0, 8 * n, "1fps")


def test_sampler_through_apply_sampler():
    rng = np.random.default_rng(10)
    x, q = scenes(rng, 64)
    sampler = SAMPLERS.create("mdp3", encoder="mini-clip")
    inputs = {"image_features": x.astype(np.float32), "text_feature": q.astype(np.float32)}
    selection = apply_sampler(sampler, grid(64), 8, inputs)
    assert list(selection.positions) == mdp3_select(x.astype(np.float32), q.astype(np.float32), 8, segment=32)
    assert len(apply_sampler(sampler, grid(5), 8, {k: v[:5] if k == "image_features" else v
                                                   for k, v in inputs.items()}).positions) == 5  # short grid: all
    scores, label = sampler.frame_scores(inputs)
    assert scores.shape == (64,) and "relevance" in label


def test_presets_options_and_config():
    assert set(PRESETS) >= {"default", "videomme", "longvideobench", "mlvu", "ovis"}
    default = MDP3(encoder="mini-clip")
    assert default.config() == {"preset": "default", "lam": 0.2, "segment": 32, "condition": 1,
                                "alphas": ALPHAS, "weights": None, "pivot_floor": 1e-12, "encoder": "mini-clip",
                                "query": "question+options"}
    assert MDP3(preset="ovis").segment == 0 and MDP3(preset="ovis", segment=16).segment == 16
    name, options = parse_spec("mdp3:lam=0.5,alphas=0.5/1/2,weights=0.2/0.3/0.5,segment=-1")
    custom = SAMPLERS.create(name, **options)
    assert (custom.lam, custom.alphas, custom.weights, custom.segment) == (0.5, (0.5, 1.0, 2.0), (0.2, 0.3, 0.5), 0)
    assert custom.config_hash != default.config_hash
    assert MDP3(lam=1).config() == MDP3(lam=1.0).config()
    for bad in ({"preset": "nope"}, {"lam": -1}, {"segment": 1.5}, {"condition": -1}, {"alphas": "a/b"},
                {"alphas": "1/2", "weights": "1"}, {"query": "options"}):
        with pytest.raises(HarnessError):
            MDP3(**bad)


def test_listing_explains_every_option():
    params = SAMPLERS.get("mdp3").params
    assert {p.name for p in params} == {"preset", "lam", "segment", "condition", "alphas", "weights", "pivot_floor",
                                        "encoder", "query"}
    assert all(p.help for p in params)


def test_harness_run_smoke_with_mini_clip(tmp_path):
    from harness.run.runner import Run

    cfg = RunConfig(task="smoke", backbone="none", samplers=["mdp3:encoder=mini-clip,segment=4"], frames=4,
                    task_args={"videos": 3, "duration": 12.0}, out=str(tmp_path / "runs"),
                    cache_dir=str(tmp_path / "cache"))
    [run_dir] = Run(cfg, progress=False).execute()
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    for row in rows:
        assert row["selection"]["sampler"] == "mdp3"
        assert len(row["selection"]["frame_indices"]) == 4
        assert row["evidence_recall"] in (0.0, 1.0)
