"""Q-Frame: budgets and tiers by hand, the Gumbel-max ranking on hand-made noise, seeded noise, the sampler
contract (scales in the Selection, presets, options), records without scales unchanged, and `harness run` with
`--backbone none` on the smoke task.

Golden values are computed here by hand from the paper and the official README / `TextImageMatching` (key_i =
log p_i - log(-log(U_i + 1e-10) + 1e-10), p = softmax(logits / tau); top `high` at 1/2, next `mid` at 1/4, next `low`
at 1/8; fixed tokens: high + mid/4 + low/16 = K), never from the code under test."""
import json
import math

import numpy as np
import pytest

from harness.config import RunConfig
from harness.errors import HarnessError
from harness.records import CandidateGrid, Selection
from harness.registry import SAMPLERS
from harness.util.hashing import short_hash
from samplers.base import apply_sampler
from samplers.qframe import (PRESETS, QFrame, gumbel_keys, gumbel_uniforms, qframe_logits, qframe_select,
                             qframe_tiers, sample_key)

TAU = 0.8


def uniform_for(g):
    """The U whose Gumbel value -log(-log(U)) is g (the 1e-10 guards move it by far less than the margins below)."""
    return math.exp(-math.exp(-g))


def logits_for(weights, tau=TAU):
    """Logits whose softmax(l / tau) is proportional to `weights`."""
    return [tau * math.log(w) for w in weights]


def test_budgets_by_hand():
    assert qframe_tiers(8, "tokens") == (4, 8, 32)  # the published Qwen2-VL setting against 8 frames
    assert qframe_tiers(16, "tokens") == (8, 16, 64)
    assert qframe_tiers(5, "tokens") == (2, 6, 24)  # 2 + 6/4 + 24/16 = 5
    assert qframe_tiers(1, "tokens") == (0, 2, 8)  # 0 + 2/4 + 8/16 = 1
    assert qframe_tiers(8, "frames") == (8, 0, 0)  # README: sample_frames = high_frames, mid = low = 0
    for k in range(1, 65):  # README's fixed-token rule: sampled frames = high + mid/4 + low/16
        high, mid, low = qframe_tiers(k, "tokens")
        assert high + mid / 4 + low / 16 == k
    with pytest.raises(HarnessError, match="budget"):
        qframe_tiers(8, "pixels")
    with pytest.raises(HarnessError, match="frame budget"):
        qframe_tiers(0)


def test_keys_by_hand():
    logits, u = [1.0, 2.0], [0.3, 0.7]
    z = [x / TAU for x in logits]
    log_norm = math.log(math.exp(z[0]) + math.exp(z[1]))
    expected = [z[i] - log_norm - math.log(-math.log(u[i] + 1e-10) + 1e-10) for i in range(2)]
    np.testing.assert_allclose(gumbel_keys(logits, u, TAU), expected, rtol=0, atol=1e-12)


def test_ranking_and_tiers_on_fixed_noise():
    # p = [1, 2, 4, 1] / 8; Gumbel values g = [3, 0, 0, 1]: keys log p + g = [0.92, -1.39, -0.69, -1.08]
    # ranks: 0, 2, 3, 1 -> tiers (1, 1, 1): 0 at 1/2, 2 at 1/4, 3 at 1/8, 1 dropped
    u = [uniform_for(g) for g in (3, 0, 0, 1)]
    positions, scales = qframe_select(logits_for([1, 2, 4, 1]), 1, 1, 1, tau=TAU, uniforms=u)
    assert positions.tolist() == [0, 2, 3]
    assert scales.tolist() == [0.5, 0.25, 0.125]
    # (2, 0, 2): 0 and 2 at 1/2, 3 and 1 at 1/8
    positions, scales = qframe_select(logits_for([1, 2, 4, 1]), 2, 0, 2, tau=TAU, uniforms=u)
    assert positions.tolist() == [0, 1, 2, 3]
    assert scales.tolist() == [0.5, 0.125, 0.5, 0.125]


def test_equal_noise_ranks_by_logits():
    # the same U everywhere: the ranking is that of p, i.e. of the logits; 6 candidates, tiers (1, 2, 2)
    logits = [0.1, 0.9, 0.5, 0.7, 0.2, 0.3]  # ranks: 1, 3, 2, 5, 4, 0
    positions, scales = qframe_select(logits, 1, 2, 2, uniforms=[0.5] * 6)
    assert positions.tolist() == [1, 2, 3, 4, 5]
    assert scales.tolist() == [0.5, 0.25, 0.25, 0.125, 0.125]


def test_fewer_candidates_than_tiers_keeps_all_by_rank():
    u = [uniform_for(g) for g in (0, 0, 0)]
    positions, scales = qframe_select(logits_for([1, 4, 2]), 1, 8, 32, uniforms=u)  # ranks 1, 2, 0
    assert positions.tolist() == [0, 1, 2] and scales.tolist() == [0.25, 0.5, 0.25]


def test_logits_are_plain_dot_products():
    images = np.array([[1.0, 2.0], [3.0, -1.0]], np.float32)
    text = np.array([0.5, 2.0], np.float32)
    assert qframe_logits(images, text).tolist() == [4.5, -0.5]  # not normalised, no logit scale


def test_seeded_noise():
    a = gumbel_uniforms(16, seed=3, key=7)
    assert np.array_equal(a, np.random.default_rng([3, 7]).random(16))
    assert not np.array_equal(a, gumbel_uniforms(16, seed=4, key=7))
    assert not np.array_equal(a, gumbel_uniforms(16, seed=3, key=8))
    logits = np.linspace(0, 1, 40)
    one = qframe_select(logits, 4, 8, 8, seed=1, key=2)
    two = qframe_select(logits, 4, 8, 8, seed=1, key=2)
    assert all(np.array_equal(x, y) for x, y in zip(one, two))
    assert sample_key("needle-test-v003-q1") == sample_key("needle-test-v003-q1") >= 0


def test_bad_inputs():
    with pytest.raises(HarnessError, match="NaN"):
        qframe_select([0.0, float("nan")], 1, 0, 0, uniforms=[0.5, 0.5])
    with pytest.raises(HarnessError, match="tau"):
        gumbel_keys([0.0, 1.0], [0.5, 0.5], tau=0)
    with pytest.raises(HarnessError, match="at least one frame"):
        qframe_select([0.0, 1.0], 0, 0, 0)
    with pytest.raises(HarnessError, match="uniforms"):
        qframe_select([0.0, 1.0], 1, 0, 0, uniforms=[0.5])


def _grid(n):
    return CandidateGrid(tuple(range(0, 10 * n, 10)), tuple(float(i) for i in range(n)), 10.0, 10 * n, f"count:{n}")


def _inputs(n, d=4, seed=0):
    rng = np.random.default_rng(seed)
    return {"image_features": rng.normal(size=(n, d)).astype(np.float32),
            "text_feature": rng.normal(size=d).astype(np.float32), "noise_key": np.asarray([5], np.int64)}


def test_sampler_gives_scales():
    sampler = SAMPLERS.create("qframe", encoder="mini-clip")
    assert sampler.multi_resolution and sampler.tiers_for(8) == (4, 8, 32)
    sel = apply_sampler(sampler, _grid(64), 8, _inputs(64))
    assert len(sel.positions) == 44 and len(sel.scales) == 44
    assert sorted(sel.scales).count(0.5) == 4 and sorted(sel.scales).count(0.25) == 8
    assert list(sel.positions) == sorted(sel.positions)
    assert "scales" in sel.to_json() and sel.to_json()["scales"] == list(sel.scales)
    # a grid shorter than K: the tiers decide (every candidate, by rank), not the short-grid rule
    short = apply_sampler(sampler, _grid(5), 8, _inputs(5), short_grid="repeat")
    assert list(short.positions) == [0, 1, 2, 3, 4] and sorted(short.scales) == [0.25, 0.5, 0.5, 0.5, 0.5]
    frames = apply_sampler(SAMPLERS.create("qframe", encoder="mini-clip", budget="frames"), _grid(64), 8, _inputs(64))
    assert len(frames.positions) == 8 and set(frames.scales) == {0.5}


def test_presets_and_options():
    assert PRESETS["mlvu"] == PRESETS["longvideobench"] == PRESETS["videomme"] == (8, 128, 4, 8, 32)
    sampler = SAMPLERS.create("qframe", preset="mlvu", encoder="mini-clip")
    with pytest.raises(HarnessError, match="--frames 8 --grid 1fps-max:128"):
        apply_sampler(sampler, _grid(200), 8, _inputs(200))
    assert len(apply_sampler(sampler, _grid(128), 8, _inputs(128)).positions) == 44
    explicit = SAMPLERS.create("qframe", high=2, low=3, encoder="mini-clip")
    assert explicit.tiers_for(8) == (2, 0, 3) and explicit.config()["budget"] == "explicit"
    with pytest.raises(HarnessError, match="not both"):
        SAMPLERS.create("qframe", high=2, budget="tokens")
    with pytest.raises(HarnessError, match="tau"):
        SAMPLERS.create("qframe", tau=-1.0)
    with pytest.raises(HarnessError, match="did you mean frames"):
        SAMPLERS.create("qframe", budget="frame")
    assert QFrame(seed=1).config_hash != QFrame(seed=2).config_hash
    for param in SAMPLERS.get("qframe").params:
        assert param.help, param.name


def test_records_without_scales_are_unchanged():
    sel = Selection("uniform", "abc", [0, 2], [0, 20], [0.0, 2.0])
    assert sel.to_json() == {"sampler": "uniform", "config_hash": "abc", "positions": (0, 2),
                             "frame_indices": (0, 20), "timestamps": (0.0, 2.0)}
    assert short_hash(sel.to_json()) == short_hash({"sampler": "uniform", "config_hash": "abc", "positions": [0, 2],
                                                    "frame_indices": [0, 20], "timestamps": [0.0, 2.0]})
    with pytest.raises(ValueError, match="scales"):
        Selection("qframe", "abc", [0, 2], [0, 20], [0.0, 2.0], scales=[0.5])


def test_harness_run_none_and_replay_keep_scales(tmp_path):
    from harness.run.runner import Run
    from harness.store.selection_export import run_to_harness

    base = dict(task="smoke", backbone="none", frames=4, task_args={"videos": 2, "duration": 12.0},
                out=str(tmp_path / "runs"), cache_dir=str(tmp_path / "cache"))
    [run_dir] = Run(RunConfig(samplers=["qframe:encoder=mini-clip"], **base), progress=False).execute()
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for row in rows:
        sel = row["selection"]
        assert sel["sampler"] == "qframe" and len(sel["scales"]) == len(sel["frame_indices"]) == 12  # tiers 2, 4, 16 over 12 candidates: 2 + 4 + 6
        assert sorted(set(sel["scales"])) == [0.125, 0.25, 0.5]
    run_to_harness(run_dir, tmp_path / "sel.jsonl")
    stored = [json.loads(line) for line in (tmp_path / "sel.jsonl").read_text().splitlines()[1:]]
    assert [s["scales"] for s in stored] == [r["selection"]["scales"] for r in rows]
    [replayed] = Run(RunConfig(samplers=[f"replay:file={tmp_path / 'sel.jsonl'}"], grid="all", **base),
                     progress=False).execute()
    again = [json.loads(line) for line in (replayed / "predictions.jsonl").read_text().splitlines()]
    assert [r["selection"]["frame_indices"] for r in again] == [r["selection"]["frame_indices"] for r in rows]
    assert [r["selection"]["scales"] for r in again] == [r["selection"]["scales"] for r in rows]
