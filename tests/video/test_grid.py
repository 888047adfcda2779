"""Grid rules against golden values worked out by hand."""
from fractions import Fraction

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.video.grid import GRID_RULES, make_grid, parse_grid_rule
from harness.util.synth import write_index_clip
from harness.video.reader import open_video


def indices(frame_count, fps, rule):
    return list(make_grid(frame_count, fps, rule).indices)


@pytest.mark.parametrize("fps, step_1fps, step_int", [
    (30000 / 1001, 30, 29),
    (29.97, 30, 29),
    (25.0, 25, 25),
    (24000 / 1001, 24, 23),
    (23.976, 24, 23),
    (2.5, 2, 2),  # round(2.5) == 2: banker's rounding
    (3.5, 4, 3),  # round(3.5) == 4
    (0.4, 1, 1),  # below 1 fps every frame is a candidate
    (60.0, 60, 60),
])
def test_steps(fps, step_1fps, step_int):
    assert indices(1000, fps, "1fps") == list(range(0, 1000, step_1fps))
    assert indices(1000, fps, "int-fps") == list(range(0, 1000, step_int))


def test_1fps_counts_and_last_index():
    # 10 min at 29.97 fps: 17982 frames, step 30 -> 0..17970, 600 candidates
    grid = make_grid(17982, 30000 / 1001, "1fps")
    assert len(grid) == 600 and grid.indices[-1] == 17970
    # a frame count that is a multiple of the step does not add the frame past the end
    assert indices(300, 30.0, "1fps") == list(range(0, 300, 30))
    assert indices(301, 30.0, "1fps")[-1] == 300
    # int-fps at 29.97: step 29, 17982 frames -> ceil(17982 / 29) = 621 candidates, last 17980
    grid = make_grid(17982, 30000 / 1001, "int-fps")
    assert len(grid) == 621 and grid.indices[-1] == 17980


def test_timestamps_are_index_over_fps():
    grid = make_grid(100, 25.0, "1fps")
    assert grid.timestamps == (0.0, 1.0, 2.0, 3.0)
    assert grid.fps == 25.0 and grid.frame_count == 100 and grid.rule == "1fps"
    ntsc = make_grid(100, 30000 / 1001, "1fps")
    assert ntsc.timestamps[1] == pytest.approx(1.001) and ntsc.timestamps[3] == pytest.approx(3.003)


def test_fps_rule():
    # 300 frames at 30 fps = 10 s; 0.5 frames/s -> int(10 * 0.5) = 5 frames, step 60
    assert indices(300, 30.0, "fps:0.5") == [0, 60, 120, 180, 240]
    # 2 frames/s at 25 fps: step 12.5 -> int(i * 12.5)
    assert indices(100, 25.0, "fps:2") == [0, 12, 25, 37, 50, 62, 75, 87]
    # 29.97 fps, 1 frame/s: step 29.97..., int(i * step) -> 0, 29, 59, 89
    assert indices(120, 30000 / 1001, "fps:1") == [0, 29, 59, 89]
    # asking for more than the native rate repeats frames; repeats are dropped
    assert indices(10, 2.0, "fps:5") == list(range(10))


def test_count_rule():
    assert indices(10, 30.0, "count:4") == [0, 3, 6, 9]
    assert indices(100, 30.0, "count:1") == [0]
    assert indices(100, 30.0, "count:3") == [0, 49, 99]
    # fewer frames than asked: every frame once
    assert indices(5, 30.0, "count:8") == [0, 1, 2, 3, 4]
    assert indices(0, 30.0, "count:8") == []


def test_arange_rule_is_frags_candidates():
    """FRAG's candidates (NVlabs/FRAG tasks/base.py, VideoTask.load_visual): n = min(N, F) frames
    int(np.arange(0, F, F / n)), those below F; for n = 1 the middle frame (the second of arange(0, F, F / 2))."""
    grid = indices(1000, 30.0, "arange:256")  # step 1000/256 = 3.90625, exact in binary: int(i * 3.90625)
    assert len(grid) == 256 and grid[:5] == [0, 3, 7, 11, 15] and grid[-1] == 996  # int(255 * 3.90625)
    # 61 / 7 = 8.714285714285714: numpy's arange holds ceil(61 / step) = 8 values, the last 7 * step just below 61,
    # so FRAG gets 8 candidates; for 17 / 7 the 8th value is 17.0 exactly and is dropped (not below F)
    assert indices(61, 30.0, "arange:7") == [0, 8, 17, 26, 34, 43, 52, 60]
    assert indices(17, 30.0, "arange:7") == [0, 2, 4, 7, 9, 12, 14]
    assert indices(7, 30.0, "arange:1") == [3] and indices(8, 30.0, "arange:1") == [4]
    assert indices(5, 30.0, "arange:10") == [0, 1, 2, 3, 4]  # fewer frames than asked: every frame
    assert indices(0, 30.0, "arange:4") == []


def test_fps_round_rule_is_bolts_candidates():
    """BOLT's candidates (sming256/BOLT extract_feature.py): round(i / F * fps), half to even, for
    i < int(frame_count / fps * F), clipped to the last frame; repeats dropped as in every rule."""
    grid = indices(900, 29.97, "fps-round:1")  # int(900 / 29.97) = 30 seconds
    assert len(grid) == 30 and grid[:3] == [0, 30, 60] and grid[10] == 300 and grid[-1] == 869  # 29 * 29.97 = 869.13
    assert indices(107892, 29.97, "fps-round:1")[1000] == 29970  # where 1fps (step 30) is at 30000
    assert indices(100, 25.0, "fps-round:2") == [0, 12, 25, 38, 50, 62, 75, 88]  # 12.5 -> 12, 37.5 -> 38: to even
    assert indices(10, 2.0, "fps-round:5") == list(range(10))  # above the native rate: clipped, repeats dropped
    assert indices(0, 30.0, "fps-round:1") == []


def test_qwen_fps_rule_is_qwen_vl_utils_frames():
    """qwen-vl-utils' fps mode (smart_nframes: n = F * seconds within [4, min(768, frames)], floored to even; then
    torch.linspace(0, frames - 1, n).round()); golden values by hand, none on a .5 tie."""
    grid = indices(900, 30.0, "qwen-fps:2")  # 30 s: 60 frames, step 899 / 59 = 15.237
    assert len(grid) == 60 and grid[:5] == [0, 15, 30, 46, 61] and grid[-1] == 899
    hour = indices(108000, 30.0, "qwen-fps:2")  # 7200 capped at 768, step 107999 / 767 = 140.807
    assert len(hour) == 768 and hour[:4] == [0, 141, 282, 422] and hour[-1] == 107999
    assert indices(50, 25.0, "qwen-fps:2") == [0, 16, 33, 49]  # 2 s: 4 frames, the floor of 4
    assert indices(91, 30.0, "qwen-fps:2") == [0, 18, 36, 54, 72, 90]  # 6.07 frames, floored to even: 6
    assert indices(3, 30.0, "qwen-fps:2") == [0, 2]  # at most the video's frames, floored to even
    assert indices(1, 30.0, "qwen-fps:2") == [0]


def test_1fps_min_rule_is_tspos_short_video_fallback():
    """TSPO's evaluation takes the stored indices, and where fewer than N are stored (a 1-fps grid shorter than N),
    np.linspace(0, frames - 1, N, dtype=int) over the native frames (load_video_index)."""
    assert indices(3000, 30.0, "1fps-min:64") == list(range(0, 3000, 30))  # 100 s: the 1-fps grid
    assert indices(1920, 30.0, "1fps-min:64") == list(range(0, 1920, 30))  # exactly 64 at 1 fps: kept
    short = indices(900, 30.0, "1fps-min:64")  # 30 s: 64 frames i * 899 / 63 = i * 14.27
    assert len(short) == 64 and short[:4] == [0, 14, 28, 42] and short[-1] == 899
    assert indices(40, 30.0, "1fps-min:64") == list(range(40))  # fewer native frames than N: repeats dropped


def test_int_fps_min_rule_is_aks_short_video_fallback():
    """AKS's LLaVA-Video evaluation (load_video_index) takes the selected frames, and where fewer than N were selected
    (a grid shorter than N: AKS then returns every candidate), np.linspace(0, frames - 1, N, dtype=int)."""
    assert indices(3000, 29.97, "int-fps-min:64") == list(range(0, 3000, 29))  # step int(29.97) = 29: 104 frames
    short = indices(900, 29.97, "int-fps-min:64")  # 32 frames at step 29: 64 native frames instead
    assert len(short) == 64 and short[:4] == [0, 14, 28, 42] and short[-1] == 899


def test_1fps_max_rule_is_qframes_candidates():
    """Q-Frame's candidates (xiaomi-research/q-frame, qwen2_vl_w_qframe.py load_video): the 1-fps grid (step
    round(fps)) while it has at most N frames, else int(linspace(0, F - 1, N))."""
    assert indices(300, 30.0, "1fps-max:16") == list(range(0, 300, 30))  # 10 frames at 1 fps: kept
    assert indices(300, 30.0, "1fps-max:10") == list(range(0, 300, 30))  # exactly N: kept
    assert indices(300, 30.0, "1fps-max:4") == [0, 99, 199, 299]  # 299 / 3 = 99.67, 199.33
    assert indices(3000, 29.97, "1fps-max:128") == list(range(0, 3000, 30))  # round(29.97) = 30, 100 frames
    long = indices(9000, 30.0, "1fps-max:128")  # 300 at 1 fps: 128 frames i * 8999 / 127 = i * 70.858...
    assert len(long) == 128 and long[:4] == [0, 70, 141, 212] and long[-1] == 8999


def test_all_rule():
    assert indices(7, 30.0, "all") == list(range(7))
    # a uniform sampler over `all` reproduces lmms-eval's linspace over the native frames
    grid = make_grid(1000, 30.0, "all")
    assert np.array_equal(np.asarray(grid.indices)[np.linspace(0, 999, 8).astype(int)],
                          np.linspace(0, 999, 8).astype(int))


@pytest.mark.parametrize("rule, canonical", [
    ("1fps", "1fps"), (" INT-FPS ", "int-fps"), ("all", "all"), ("fps:0.5", "fps:0.5"), ("fps:.50", "fps:0.5"),
    ("fps:2.0", "fps:2"), ("count:8", "count:8"), ("count:008", "count:8"), ("ARANGE:0256", "arange:256"),
    ("1FPS-MAX:128", "1fps-max:128"), ("fps-round:1.0", "fps-round:1"), ("qwen-fps:2.0", "qwen-fps:2"),
    ("1fps-min:64", "1fps-min:64"), ("INT-FPS-MIN:64", "int-fps-min:64"),
])
def test_parse_canonical(rule, canonical):
    assert parse_grid_rule(rule) == canonical
    assert make_grid(50, 10.0, rule).rule == canonical


@pytest.mark.parametrize("rule", ["2fps", "fps:0", "fps:-1", "fps:nan", "fps:x", "fps:", "count:x", "count:0",
                                  "count:2.5", "arange:0", "arange:x", "1fps-max:0", "1fps-max", "fps-round:0",
                                  "fps-round:x", "qwen-fps:0", "", "every", "1 fps"])
def test_bad_rules(rule):
    with pytest.raises(HarnessError, match="valid: 1fps, int-fps, all"):
        parse_grid_rule(rule)
    with pytest.raises(HarnessError):
        make_grid(100, 30.0, rule)


def test_bad_video_numbers():
    with pytest.raises(HarnessError):
        make_grid(100, 0.0, "1fps")
    with pytest.raises(HarnessError):
        make_grid(-1, 30.0, "1fps")


def test_every_rule_is_described():
    assert set(GRID_RULES) == {"1fps", "int-fps", "fps:F", "count:N", "nframe:K", "arange:N", "1fps-max:N",
                               "1fps-min:N", "int-fps-min:N", "fps-round:F", "qwen-fps:F", "all"}
    assert all(isinstance(d, str) and d and "\n" not in d for d in GRID_RULES.values())


def test_grid_on_a_real_clip(tmp_path):
    path = tmp_path / "ntsc.mp4"
    write_index_clip(path, 95, Fraction(30000, 1001))
    with open_video(path) as reader:
        grid = make_grid(reader.meta.frame_count, reader.meta.fps, "1fps")
        assert grid.indices == (0, 30, 60, 90)
        assert grid.timestamps == pytest.approx((0.0, 1.001, 2.002, 3.003))
        assert make_grid(reader.meta.frame_count, reader.meta.fps, "int-fps").indices == (0, 29, 58, 87)
        assert make_grid(reader.meta.frame_count, reader.meta.fps, "count:4").indices == (0, 31, 62, 94)
