"""The shots sampler (samplers/shots.py) and its frame-difference encoder (harness/features/framediff.py).

Golden cuts and positions are traced by hand from the definitions (ContentDetector's threshold test, PySceneDetect's
merge flash filter, largest remainders, centres of equal parts), the encoder's values from OpenCV's 8-bit HSV
(H = hue / 2, S and V in 0-255) of flat colours, and the detector's cuts from PySceneDetect's own SceneManager run on
the same frames through its documented API (scripts/parity_shots.py, which also runs it on 300 random sequences).
"""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from harness.cli.app import main
from harness.config import parse_spec
from harness.errors import HarnessError
from harness.features.framediff import ContentDiffScorer, parse_spec as parse_encoder
from harness.features.store import FeatureStore
from harness.records import CandidateGrid
from harness.registry import SAMPLERS
from samplers.base import apply_sampler
from samplers.shots import (Shots, largest_remainders, shot_allocation, shot_bounds, shot_cuts, shot_positions,
                            spread)

ROOT = Path(__file__).resolve().parents[2]

# Cuts at 2, 4 and 5 with no minimum length: shots [0,2) [2,4) [4,5) [5,7), lengths 2, 2, 1, 2.
A = [0, 5, 30, 2, 40, 41, 3]
# Above 27 at 3, 4, 5, 6. min_len 2: cut 3 (3 >= 2 after the start); 4 is 1 after 3: merging from 4; 5, 6 extend it;
# at 8, 2 candidates after 6 and 6 - 4 >= 2: the merged cut is emitted at 6. Shots [0,3) [3,6) [6,10).
B = [0, 0, 0, 30, 30, 30, 30, 0, 0, 0]


def _grid(n, step=30, fps=30.0):
    idx = [i * step for i in range(n)]
    return CandidateGrid(idx, [i / fps for i in idx], fps, n * step, "1fps")


def _flat(rgb, n=1, height=36, width=64):
    return np.broadcast_to(np.asarray(rgb, np.uint8), (n, height, width, 3)).copy()


RED, BLUE, GREY, MAGENTA = (255, 0, 0), (0, 0, 255), (128, 128, 128), (255, 0, 255)


# -- shot boundaries ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("diffs, threshold, min_len, cuts", [
    (A, 27.0, 1, [2, 4, 5]),
    (A, 27.0, 0, [2, 4, 5]),  # 0 turns the filter off; 1 never bites on a grid (every cut is >= 1 after the last)
    (A, 30.0, 1, [2, 4, 5]),  # >= threshold: 30 is a cut at 30
    (A, 30.5, 1, [4, 5]),
    (A, 27.0, 2, [2, 4]),  # 5 is 1 after 4: merging starts at 5 and the video ends before it closes: dropped
    (B, 27.0, 2, [3, 6]),
    (B, 27.0, 1, [3, 4, 5, 6]),
    (B, 27.0, 4, []),  # 3 is only 3 after the start: no first cut, so no merging either
    # min_len 3: cut 3; merging from 4; at 7, 3 after the last one above, but the merged run 4..4 is shorter than 3: it
    # goes on; 9 extends it; the video ends 2 later, the run still open: dropped, as ContentDetector drops it
    ([0, 1, 1, 50, 50, 1, 1, 1, 1, 50, 1, 1], 27.0, 3, [3]),
    ([0] * 6, 27.0, 1, []),
    ([50, 0, 0], 27.0, 0, []),  # the first candidate never starts a shot
])
def test_golden_cuts(diffs, threshold, min_len, cuts):
    assert shot_cuts(diffs, threshold, min_len) == cuts


def test_bounds_cover_the_grid():
    assert shot_bounds(A, 27.0, 1) == [(0, 2), (2, 4), (4, 5), (5, 7)]
    assert shot_bounds(B, 27.0, 2) == [(0, 3), (3, 6), (6, 10)]
    assert shot_bounds([0.0] * 5) == [(0, 5)]


# -- allocation --------------------------------------------------------------------------------------------------------
def test_largest_remainders_and_spread():
    assert largest_remainders(4, [2, 2, 1, 2]) == [1, 1, 1, 1]  # 8/7 8/7 4/7 8/7: floors 1 1 0 1, remainder to 4/7
    assert largest_remainders(5, [2, 2, 1, 2]) == [2, 1, 1, 1]  # 10/7 x3, 5/7: the 5/7, then the earliest 3/7
    assert largest_remainders(3, [1, 1, 1]) == [1, 1, 1]
    assert largest_remainders(2, [1, 1, 1]) == [1, 1, 0]  # equal remainders: the earlier shots
    assert spread(0, 10, 4) == [1, 3, 6, 8]  # centres of 4 parts of 10: 1.25, 3.75, 6.25, 8.75 floored
    assert spread(5, 2, 1) == [6] and spread(4, 3, 1) == [5]  # the middle; the later of two middles
    assert spread(0, 3, 3) == [0, 1, 2]


@pytest.mark.parametrize("diffs, min_len, k, mode, expected", [
    (A, 1, 4, "per-shot", [1, 3, 4, 6]),  # the middles of all four shots
    (A, 1, 3, "per-shot", [1, 3, 6]),  # the three longest: the 1-candidate shot is dropped
    (A, 1, 2, "per-shot", [1, 3]),  # longest, equal lengths: the earlier shots
    (A, 1, 1, "per-shot", [1]),
    # 4 shots, K = 6: one each, 2 more over spare candidates 1 1 0 1 (2/3 each, earlier first): shots 0 and 1
    (A, 1, 6, "per-shot", [0, 1, 2, 3, 4, 6]),
    (A, 1, 4, "by-length", [1, 3, 4, 6]),
    (A, 1, 3, "by-length", [1, 3, 6]),  # 6/7 6/7 3/7 6/7: all floors 0, the three 6/7
    (A, 1, 5, "by-length", [0, 1, 3, 4, 6]),  # 2 1 1 1
    (A, 1, 1, "by-length", [1]),
    (B, 2, 2, "per-shot", [1, 8]),  # longest shot 2 (4), then the earlier of the 3s
    # K = 5: one each, 2 more over spare 2 2 3 (4/7 4/7 6/7): shots 2 and 0 -> 2 1 2
    (B, 2, 5, "per-shot", [0, 2, 4, 7, 9]),
    (B, 2, 5, "by-length", [0, 2, 4, 7, 9]),  # 1.5 1.5 2: floors 1 1 2, the first 0.5
    (B, 2, 3, "by-length", [1, 4, 8]),  # 0.9 0.9 1.2: floors 0 0 1, the two 0.9
    ([0.0] * 10, 1, 4, "per-shot", [1, 3, 6, 8]),  # no cut: K centres over the grid
    ([0.0] * 10, 1, 4, "by-length", [1, 3, 6, 8]),
    ([7.5] * 10, 1, 4, "by-length", [1, 3, 6, 8]),  # constant below the threshold: the same
])
def test_golden_positions(diffs, min_len, k, mode, expected):
    assert shot_positions(diffs, k, 27.0, min_len, mode).tolist() == expected


def test_by_length_can_leave_a_short_shot_out_and_per_shot_keeps_every_shot():
    diffs = [0] * 18 + [50, 50]  # shots [0,18) [18,19) [19,20)
    assert shot_allocation(shot_bounds(diffs), 3, "by-length") == [3, 0, 0]  # 2.7 0.15 0.15
    assert shot_allocation(shot_bounds(diffs), 3, "per-shot") == [1, 1, 1]
    assert shot_positions(diffs, 4, mode="per-shot").tolist() == [4, 13, 18, 19]  # spare 17 0 0: 2 in shot 0


def test_every_selection_is_k_distinct_ascending():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 40))
        diffs = rng.choice([0.0, 10.0, 30.0, 60.0], size=n)
        k, min_len = int(rng.integers(1, n + 1)), int(rng.integers(0, 4))
        for mode in ("per-shot", "by-length"):
            out = shot_positions(diffs, k, 27.0, min_len, mode)
            assert len(out) == k and (np.diff(out) > 0).all() and out[0] >= 0 and out[-1] < n


@pytest.mark.parametrize("kwargs, match", [
    ({"diffs": [0, np.nan]}, "NaN"),
    ({"diffs": [[0, 1]]}, "one value per candidate"),
    ({"mode": "middle"}, "unknown mode"),
    ({"k": 0}, "whole number >= 1"),
    ({"threshold": -1.0}, "threshold"),
    ({"threshold": float("inf")}, "threshold"),
    ({"min_len": 1.5}, "min_scene_len"),
])
def test_bad_input(kwargs, match):
    args = {"diffs": [0.0, 1.0, 2.0], "k": 2, "threshold": 27.0, "min_len": 1, "mode": "per-shot", **kwargs}
    with pytest.raises(HarnessError, match=match):
        shot_positions(**args)


# -- the frame-difference encoder --------------------------------------------------------------------------------------
def test_encoder_values_are_hand_computed_hsv_differences():
    frames = np.concatenate([_flat(RED, 2), _flat(BLUE), _flat(GREY), _flat(MAGENTA), _flat(RED)])
    run = ContentDiffScorer("scenedetect:content").start()
    # red H0 S255 V255; blue H120 S255 V255; grey H0 S0 V128; magenta H150 S255 V255. Default weights 1/1/1/0.
    expected = [0, 0, 120 / 3, (120 + 255 + 127) / 3, (150 + 255 + 127) / 3, 150 / 3]
    np.testing.assert_allclose(run.update(frames), expected, rtol=0, atol=1e-12)
    # red -> magenta is 150 in RGB but 30 if the channels were read as BGR (blue H120 -> magenta H150)
    luma = ContentDiffScorer("scenedetect:content:luma_only=true").start().update(frames)
    np.testing.assert_allclose(luma, [0, 0, 0, 127, 127, 0], atol=1e-12)
    sat = ContentDiffScorer("scenedetect:content:weights=0/1/0/0").start().update(frames)
    np.testing.assert_allclose(sat, [0, 0, 0, 255, 255, 0], atol=1e-12)


def test_encoder_carries_the_previous_frame_across_chunks_and_downscales_like_scenemanager():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, size=(9, 90, 400, 3), dtype=np.uint8)  # 400 wide: SceneManager downscales
    whole = ContentDiffScorer("scenedetect:content").start()
    once = whole.update(frames)
    assert whole.factor == pytest.approx(400 / 256)
    chunked = ContentDiffScorer("scenedetect:content").start()
    np.testing.assert_array_equal(np.concatenate([chunked.update(frames[:4]), chunked.update(frames[4:4]),
                                                  chunked.update(frames[4:])]), once)
    full = ContentDiffScorer("scenedetect:content:downscale=1").start().update(frames)
    assert not np.array_equal(full, once)  # noise: the resolution changes the values


def test_encoder_specs():
    assert parse_encoder("scenedetect:content") == {"weights": (1.0, 1.0, 1.0, 0.0), "luma_only": False,
                                                    "kernel_size": None, "downscale": "auto"}
    assert parse_encoder("scenedetect:content:luma_only=1:kernel_size=5:downscale=2")["weights"] == (0, 0, 1, 0)
    default, luma = ContentDiffScorer("scenedetect:content"), ContentDiffScorer("scenedetect:content:luma_only=true")
    assert default.kind == "frame-diff" and default.encoder_id.startswith("scenedetect:content@scenedetect-")
    assert default.preprocess_id != luma.preprocess_id
    assert ContentDiffScorer("scenedetect:content:weights=1/1/1/0").preprocess_id == default.preprocess_id
    for bad, match in [("scenedetect:adaptive", "unknown PySceneDetect detector"),
                       ("scenedetect:content:weights=1/1", "four non-negative"),
                       ("scenedetect:content:kernel_size=4", "odd"),
                       ("scenedetect:content:luma_only=maybe", "true or false"),
                       ("scenedetect:content:downscale=0", "downscale"),
                       ("scenedetect:content:gamma=2", "expected key=value")]:
        with pytest.raises(HarnessError, match=match):
            ContentDiffScorer(bad)


def _official():
    spec = importlib.util.spec_from_file_location("parity_shots", ROOT / "scripts" / "parity_shots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("min_len", [0, 1, 2, 3, 4])
def test_cuts_equal_pyscenedetect_on_the_same_frames(min_len):
    """Grey levels whose content values are B x 1 (|delta V| / 3 = 30 at a step of 90), then noisy colour shots:
    PySceneDetect's SceneManager + ContentDetector (its documented API, over an in-memory VideoStream) and the
    harness (encoder + shot_cuts) find the same cuts, from the same values."""
    parity = _official()
    levels = [0, 0, 0, 90, 180, 90, 180, 180, 180, 180]
    grey = np.repeat(np.asarray(levels, np.uint8), 24 * 32 * 3).reshape(len(levels), 24, 32, 3)
    values, cuts = parity.harness_side(grey, 27.0, min_len)
    np.testing.assert_allclose(values, B, atol=1e-12)
    ref_values, ref_cuts = parity.official(grey, 27.0, min_len)
    assert cuts == ref_cuts == shot_cuts(B, 27.0, min_len) and np.array_equal(values, ref_values)
    rng = np.random.default_rng(min_len)
    for _ in range(4):
        frames = parity.random_frames(rng)
        values, cuts = parity.harness_side(frames, 15.0, min_len)
        ref_values, ref_cuts = parity.official(frames, 15.0, min_len)
        assert cuts == ref_cuts and np.array_equal(values, ref_values)


# -- the feature store -------------------------------------------------------------------------------------------------
class ArrayReader:
    """A stand-in video reader over an array of frames, counting what it decodes."""

    def __init__(self, frames):
        self.frames, self.decoded = frames, 0

    def _check(self, indices):
        return np.asarray(indices, np.int64)

    def get_frames(self, indices):
        self.decoded += len(indices)
        return self.frames[np.asarray(indices)]


def test_store_computes_diffs_once_per_video_in_one_pass(tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"not decoded: the reader is a stand-in")
    frames = np.concatenate([_flat(RED, 3), _flat(BLUE, 4), _flat(GREY, 3)])
    grid = CandidateGrid(range(10), [float(i) for i in range(10)], 1.0, 10, "1fps")
    store = FeatureStore(tmp_path / "cache", chunk_size=4)  # chunks 4 4 2: the cut at 3 and 7 straddle chunks
    scorer = store.encoder("scenedetect:content")
    reader = ArrayReader(frames)
    diffs = store.frame_diffs(scorer, str(video), grid, reader)
    np.testing.assert_allclose(diffs, [0, 0, 0, 40, 0, 0, 0, (120 + 255 + 127) / 3, 0, 0], atol=1e-12)
    assert reader.decoded == 10 and store.stats["diff_computed"] == 1
    again = FeatureStore(tmp_path / "cache", dtype="bfloat16")  # another run, another dtype: the same entry
    np.testing.assert_array_equal(again.frame_diffs(again.encoder("scenedetect:content"), str(video), grid, reader),
                                  diffs)
    assert reader.decoded == 10 and again.stats["diff_cached"] == 1
    luma = again.encoder("scenedetect:content:luma_only=true")  # other detector parameters: another entry
    assert again.diff_key(luma, str(video), grid) != again.diff_key(scorer, str(video), grid)
    np.testing.assert_allclose(again.frame_diffs(luma, str(video), grid, reader), [0] * 7 + [127, 0, 0])
    assert reader.decoded == 20
    manifest = json.loads(next((tmp_path / "cache").rglob("*.json")).read_text())
    assert manifest["kind"] == "frame-diff" and manifest["shape"] == [10] and "dtype" in manifest
    assert shot_positions(diffs, 3, 27.0, 1, "per-shot").tolist() == [1, 5, 8]


# -- the sampler -------------------------------------------------------------------------------------------------------
def test_registered_defaults_presets_and_config():
    sampler = SAMPLERS.create("shots")
    assert isinstance(sampler, Shots) and sampler.needs == ("scores",) and sampler.encoder == "scenedetect:content"
    assert sampler.config() == {"preset": "default", "threshold": 27.0, "min_scene_len": 1, "mode": "per-shot",
                                "encoder": "scenedetect:content"}
    for preset in ("videomme", "longvideobench", "mlvu"):
        assert SAMPLERS.create("shots", preset=preset).config()["threshold"] == 27.0
    entry = SAMPLERS.get("shots")
    params = {p.name: p for p in entry.params}
    assert set(params) == {"preset", "threshold", "min_scene_len", "mode", "encoder"}
    assert all(p.help for p in params.values()) and params["mode"].choices == ("per-shot", "by-length")
    name, options = parse_spec("shots:encoder=scenedetect:content:luma_only=true,threshold=12,mode=by-length")
    custom = SAMPLERS.create(name, **options)
    assert custom.encoder == "scenedetect:content:luma_only=true" and custom.threshold == 12.0
    assert custom.config_hash != sampler.config_hash
    assert SAMPLERS.create("shots", threshold=27).config_hash == sampler.config_hash  # 27 and 27.0: one run
    values, label = sampler.frame_scores({"scores": np.asarray(A, np.float32)})
    assert values.tolist() == A and "content value" in label


@pytest.mark.parametrize("kwargs, match", [
    ({"preset": "lvbench"}, "preset"),
    ({"mode": "longest"}, "mode"),
    ({"threshold": -2}, "threshold"),
    ({"min_scene_len": -1}, "min_scene_len"),
    ({"encoder": "mini-clip"}, "frame-difference encoder"),
])
def test_registered_bad_options(kwargs, match):
    with pytest.raises(HarnessError, match=match):
        Shots(**kwargs)


def test_through_apply_sampler_and_the_short_grid_rule():
    sel = apply_sampler(SAMPLERS.create("shots"), _grid(7), 3, {"scores": np.asarray(A)})
    assert sel.positions == (1, 3, 6) and sel.frame_indices == (30, 90, 180)
    by_length = apply_sampler(SAMPLERS.create("shots", mode="by-length", min_scene_len=2), _grid(10), 5,
                              {"scores": np.asarray(B)})
    assert by_length.positions == (0, 2, 4, 7, 9)
    assert apply_sampler(SAMPLERS.create("shots"), _grid(3), 5, {"scores": np.zeros(3)}, "repeat").positions == \
        (0, 0, 1, 1, 2)
    assert apply_sampler(SAMPLERS.create("shots"), _grid(4), 4, {"scores": np.zeros(4)}).positions == (0, 1, 2, 3)


# -- end to end --------------------------------------------------------------------------------------------------------
def test_harness_run_backbone_none(tmp_path):
    """`harness run --sampler shots` with no encoder option: the smoke videos' needle square enters and leaves with
    content values near 10, so threshold 8 cuts there; the selection is shot_positions of the cached values."""
    out, cache = tmp_path / "runs", tmp_path / "cache"
    common = ["run", "--task", "smoke", "--task-arg", "videos=3", "--task-arg", "duration=12", "--backbone", "none",
              "--frames", "4", "--out", str(out), "--cache-dir", str(cache)]
    assert main([*common, "--sampler", "shots", "--sampler", "shots:threshold=8,mode=by-length"]) == 0
    entries = {json.loads(p.read_text())["video"]: p.with_suffix(".safetensors") for p in cache.rglob("*.json")}
    assert len(entries) == 3  # one frame-diff entry per video, shared by both samplers
    from safetensors.numpy import load_file

    for run_dir in out.iterdir():
        config = json.loads((run_dir / "config.json").read_text())["identity"]["sampler"]["config"]
        rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
        assert len(rows) == 3
        for row in rows:
            diffs = load_file(str(entries[row["video"]]))["features"]
            assert row["selection"]["positions"] == shot_positions(
                diffs, 4, config["threshold"], config["min_scene_len"], config["mode"]).tolist()
            assert row["prediction"]["parse_status"] == "not_answered"
