"""BOLT: golden vectors computed by hand from the paper's inverse transform sampling (and the official
`select_frames.py` as read), agreement with an independent exact transcription (Python fractions) on random vectors,
edge cases, the registered sampler, and one end-to-end run on the smoke task with mini-clip."""
import json
from fractions import Fraction

import numpy as np
import pytest

from harness.cli.app import main
from harness.config import parse_spec
from harness.errors import HarnessError
from harness.records import CandidateGrid
from harness.registry import SAMPLERS
from samplers.base import apply_sampler
from samplers.bolt import BOLT, PRESETS, bolt_cdf, bolt_quantiles, bolt_select  # also registers "bolt"

RAMP = [1, 2, 3, 4, 5]  # normalised 0, 1/4, 1/2, 3/4, 1: pmf 0, .1, .2, .3, .4; CDF 0, .1, .3, .6, 1


# ---------------------------------------------------------------------------------------------------------------
# Independent reference: the equations, in exact rational arithmetic (integer powers only)

def reference_bolt(scores, k, alpha):
    """Left inverse CDF at u_j = 1/k + j (1 - 2/k) / (k - 1), exactly; None where a u lies on (or within float
    noise of) a CDF step, which float arithmetic cannot resolve either way."""
    values = [Fraction(s) for s in scores]
    lo, hi = min(values), max(values)
    weights = [(v - lo) / (hi - lo) for v in values]
    if alpha != -1:
        weights = [w ** int(alpha) for w in weights]
    total = sum(weights)
    cdf, running = [], Fraction(0)
    for w in weights:
        running += w / total
        cdf.append(running)
    levels = [Fraction(1, k)] if k == 1 else [Fraction(1, k) + j * (1 - Fraction(2, k)) / (k - 1) for j in range(k)]
    if any(abs(c - u) < Fraction(1, 10 ** 5) for c in cdf for u in levels):
        return None
    return [next(i for i, c in enumerate(cdf) if c >= u) for u in levels]


# ---------------------------------------------------------------------------------------------------------------
# Golden vectors, by hand

@pytest.mark.parametrize("scores,k,alpha,expected", [
    # u = .25, .4167, .5833, .75 on CDF 0, .1, .3, .6, 1
    (RAMP, 4, -1, [2, 3, 3, 4]),
    # alpha 2: weights 0, 1/16, 1/4, 9/16, 1 (sum 15/8): CDF 0, .033, .167, .467, 1
    (RAMP, 4, 2, [3, 3, 4, 4]),
    # u = 1/3, 1/2, 2/3
    (RAMP, 3, -1, [3, 3, 4]),
    # u = .5, .5 (linspace(1/2, 1/2, 2))
    (RAMP, 2, -1, [3, 3]),
    # K = 1: u = linspace(1, 0, 1) = [1.0], the last candidate with mass
    (RAMP, 1, -1, [4]),
    ([5, 4, 3, 2, 1], 1, -1, [3]),  # the last candidate (the minimum) has no mass
    ([1, 0], 1, 3, [0]),
    # one peak takes every quantile
    ([0, 1, 0, 0], 4, -1, [1, 1, 1, 1]),
    ([0.2, 0.9, 0.2, 0.2], 4, 3, [1, 1, 1, 1]),
    # a quantile exactly on a CDF step goes left (first CDF >= u): CDF 0, .5, 1, 1; u = .5, .5
    ([0, 1, 1, 0], 2, -1, [1, 1]),
    ([0, 1, 1, 0], 4, -1, [1, 1, 2, 2]),
    # alpha 0: equal mass whatever the scores; CDF 1/8 .. 1, u = 1/3, 1/2 (on a step: left), 2/3
    ([0.3, 0.1, 0.9, 0.4, 0.4, 0.2, 0.8, 0.5], 3, 0, [2, 3, 5]),
    # alpha 1 is the same as no power
    (RAMP, 4, 1, [2, 3, 3, 4]),
])
def test_golden_vectors(scores, k, alpha, expected):
    assert bolt_select(scores, k, alpha=alpha).tolist() == expected
    if alpha in (-1, 1, 2, 3):
        ref = reference_bolt(scores, k, alpha)
        assert ref is None or ref == expected  # the transcription agrees wherever it is sure


@pytest.mark.parametrize("scores,k,alpha,expected", [
    (RAMP, 4, -1, [2, 3, 4]),
    (RAMP, 4, 2, [3, 4]),
    ([0, 1, 0, 0], 4, -1, [1]),
])
def test_unique_drops_repeats_and_may_return_fewer(scores, k, alpha, expected):
    assert bolt_select(scores, k, alpha=alpha, duplicates="unique").tolist() == expected


def test_quantiles_are_the_published_linspace():
    assert bolt_quantiles(1).tolist() == [1.0]
    assert bolt_quantiles(2).tolist() == [0.5, 0.5]
    assert bolt_quantiles(5).tolist() == pytest.approx([0.2, 0.35, 0.5, 0.65, 0.8])


# ---------------------------------------------------------------------------------------------------------------
# Random vectors against the exact transcription

def test_agrees_with_exact_transcription_on_random_vectors():
    checked = repeats = 0
    for seed in range(300):
        rs = np.random.RandomState(seed)
        n = int(rs.choice([2, 3, 7, 20, 64, 150]))
        k = int(rs.choice([1, 2, 3, 4, 8, 16, 32]))
        alpha = int(rs.choice([-1, 1, 2, 3]))
        scores = rs.randint(0, 1000, n) / 1000.0
        if scores.max() == scores.min():
            continue
        ref = reference_bolt(scores.astype(np.float32).tolist(), k, alpha)
        got = bolt_select(scores, k, alpha=alpha)
        assert len(got) == k and np.all(np.diff(got) >= 0) and 0 <= got[0] and got[-1] < n
        if ref is not None:
            assert got.tolist() == ref, f"seed {seed}: n={n} k={k} alpha={alpha}"
            checked += 1
        repeats += len(set(got.tolist())) < k
    assert checked >= 250 and repeats >= 50  # the float noise rarely matters, and repeats are common


def test_the_minimum_has_no_mass_and_larger_alpha_concentrates():
    rs = np.random.RandomState(7)
    scores = rs.rand(200)
    low = int(np.argmin(scores))
    spread = []
    for alpha in (-1, 1, 3, 8):
        got = bolt_select(scores, 32, alpha=alpha)
        assert low not in got
        spread.append(len(set(got.tolist())))
    assert spread[-1] < spread[0]  # a higher power piles the quantiles on the peaks


def test_scale_and_bias_of_the_logits_do_not_change_the_selection():
    # the official scores are cosine x exp(logit_scale) (+ SigLIP's bias): a positive affine map, which min-max removes
    rs = np.random.RandomState(8)
    for _ in range(50):
        cosine = (0.2 + 0.03 * rs.randn(300)).astype(np.float32)
        for scale, bias in ((64.0, 0.0), (100.0, 0.0), (np.exp(4.7), -12.9)):
            logits = cosine * np.float32(scale) + np.float32(bias)
            assert bolt_select(logits, 16, alpha=3).tolist() == bolt_select(cosine, 16, alpha=3).tolist()


# ---------------------------------------------------------------------------------------------------------------
# Edge cases

def test_constant_scores_are_an_error_not_a_fallback():
    for alpha in (-1, 1, 2.5, 3):
        with pytest.raises(HarnessError, match="constant scores"):
            bolt_select([0.4] * 10, 4, alpha=alpha)


def test_single_candidate_and_alpha_zero_need_no_normalisation():
    assert bolt_select([0.4], 1, alpha=3).tolist() == [0]
    assert bolt_select([0.4], 3, alpha=3).tolist() == [0, 0, 0]
    assert bolt_select([0.4] * 8, 3, alpha=0).tolist() == [2, 3, 5]  # as on varying scores: equal mass


def test_a_cdf_ending_below_one_is_clipped_to_the_last_candidate():
    # the float32 CDF of these scores (alpha 3) ends at 0.9999999: u = 1.0 (K = 1) is past it, and the official
    # searchsorted returns n = 10, one past the grid; the harness clips to the last candidate
    scores = [0.551, 0.708, 0.291, 0.511, 0.893, 0.896, 0.126, 0.207, 0.051, 0.441]
    cdf = bolt_cdf(scores, 3)
    assert cdf[-1] < 1.0 and np.searchsorted(cdf, [1.0]).tolist() == [10]
    assert bolt_select(scores, 1, alpha=3).tolist() == [9]
    for seed in range(100):  # any K, any vector: inside the grid
        rs = np.random.RandomState(seed)
        scores = rs.rand(int(rs.randint(2, 400)))
        got = bolt_select(scores, int(rs.randint(1, 40)), alpha=float(rs.choice([-1, 2.5, 3])))
        assert 0 <= got.min() and got.max() < len(scores)


@pytest.mark.parametrize("bad", [[0.1, float("nan"), 0.3], [0.1, float("inf"), 0.3], [], [[0.1, 0.2]]])
def test_bad_scores(bad):
    with pytest.raises(HarnessError, match="bolt"):
        bolt_select(bad, 1)


@pytest.mark.parametrize("kwargs,match", [
    ({"alpha": -2}, "alpha must be"),
    ({"alpha": float("nan")}, "alpha must be"),
    ({"alpha": "3"}, "alpha must be"),
    ({"duplicates": "drop"}, "duplicates must be"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises(HarnessError, match=match):
        bolt_select(RAMP, 2, **kwargs)
    with pytest.raises(HarnessError, match="budget"):
        bolt_select(RAMP, 0)


# ---------------------------------------------------------------------------------------------------------------
# The registered sampler

def _grid(n, step=30, fps=30.0):
    idx = [i * step for i in range(n)]
    return CandidateGrid(idx, [i / fps for i in idx], fps, n * step, "1fps")


def test_registered_defaults_and_presets():
    entry = SAMPLERS.get("bolt")
    params = {p.name: p for p in entry.params}
    assert set(params["preset"].choices) == {"default", "videomme", "longvideobench", "mlvu"}
    assert params["duplicates"].choices == ("keep", "unique")
    assert all(p.help for p in entry.params)
    sampler = SAMPLERS.create("bolt")
    assert sampler.needs == ("scores",) and sampler.query == "question"
    assert sampler.config() == {"preset": "default", "alpha": 3.0, "duplicates": "keep",
                                "encoder": "openai/clip-vit-large-patch14", "query": "question"}
    # scripts/frame_selection.sh: --power 3 (Video-MME, MLVU), 2.5 (LongVideoBench)
    assert (PRESETS["videomme"], PRESETS["longvideobench"], PRESETS["mlvu"]) == (3.0, 2.5, 3.0)
    assert SAMPLERS.create("bolt", preset="longvideobench").alpha == 2.5
    assert SAMPLERS.create("bolt", preset="longvideobench", alpha=-1).alpha == -1.0


def test_cli_spec_and_config_hash():
    name, args = parse_spec("bolt:alpha=2.5,duplicates=unique,encoder=mini-clip")
    sampler = SAMPLERS.create(name, **args)
    assert (sampler.alpha, sampler.duplicates, sampler.encoder) == (2.5, "unique", "mini-clip")
    assert SAMPLERS.create("bolt", alpha=3).config_hash == SAMPLERS.create("bolt", alpha=3.0).config_hash
    assert SAMPLERS.create("bolt").config_hash != SAMPLERS.create("bolt", duplicates="unique").config_hash
    assert SAMPLERS.create("bolt").config_hash != SAMPLERS.create("bolt", preset="videomme").config_hash
    assert SAMPLERS.create("bolt").config_hash != SAMPLERS.create("bolt", alpha=2.5).config_hash


@pytest.mark.parametrize("kwargs,match", [
    ({"preset": "egoschema"}, "must be one of"),
    ({"duplicates": "drop"}, "must be one of"),
    ({"query": "options"}, "must be one of"),
    ({"alpha": -0.5}, "alpha must be"),
])
def test_registered_bad_options(kwargs, match):
    with pytest.raises(HarnessError, match=match):
        SAMPLERS.create("bolt", **kwargs)
    with pytest.raises(HarnessError):
        BOLT(**kwargs)  # direct construction validates too


def test_select_through_the_runner_path():
    grid = _grid(5)
    sel = apply_sampler(SAMPLERS.create("bolt", alpha=-1), grid, 4, {"scores": np.asarray(RAMP, np.float64)})
    assert sel.positions == (2, 3, 3, 4) and sel.frame_indices == (60, 90, 90, 120)  # repeats kept, ascending
    sel = apply_sampler(SAMPLERS.create("bolt", alpha=-1, duplicates="unique"), grid, 4, {"scores": np.asarray(RAMP)})
    assert sel.positions == (2, 3, 4)
    one = apply_sampler(SAMPLERS.create("bolt"), grid, 1, {"scores": np.asarray(RAMP)})
    assert one.positions == (4,)
    # fewer candidates than K: the shared short-grid rule, as for every sampler
    assert apply_sampler(SAMPLERS.create("bolt"), _grid(3), 5, {"scores": np.arange(3.0)}, "repeat").positions == \
        (0, 0, 1, 1, 2)
    with pytest.raises(HarnessError, match="constant scores"):
        apply_sampler(SAMPLERS.create("bolt"), grid, 2, {"scores": np.full(5, 0.3)})


def test_harness_run_on_the_smoke_task_with_mini_clip(tmp_path):
    out = tmp_path / "runs"
    assert main(["run", "--task", "smoke", "--task-arg", "videos=3", "--task-arg", "duration=12", "--backbone", "none",
                 "--sampler", "bolt:encoder=mini-clip", "--frames", "8", "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache"), "--no-progress"]) == 0
    [run_dir] = list(out.iterdir())
    config = json.loads((run_dir / "config.json").read_text())
    assert config["identity"]["sampler"]["config"]["alpha"] == 3.0
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    for r in rows:
        assert r["prediction"]["error"] is None
        positions = r["selection"]["positions"]
        assert len(positions) == 8 and positions == sorted(positions)
