"""`harness bench --job long` on CPU at toy size: both ways (TSPO's per-question pipeline and the harness's one
decode per video) give the same answers, the report is written, the feature pass's rates are real."""
import json

import numpy as np
import pytest

from harness.bench.config import BenchConfig
from harness.bench.run_bench import run_bench
from harness.cli.app import main
from harness.errors import HarnessError


def _tiny(tmp_path, **kw) -> BenchConfig:
    return BenchConfig(**{"job": "long", "videos": 2, "minutes": 0.2, "height": 96, "width": 128, "fps": 10,
                          "gop": 25, "questions": 4, "frames": 4, "backbone": "mini-qwen2.5-vl",
                          "backbone_args": {"max_new_tokens": 4}, "decode_backend": "pyav", "encoder": "mini-clip",
                          "video_codec": "libx264", "video_dir": str(tmp_path / "videos"),
                          "out": str(tmp_path / "results"), "label": "tiny-long", **kw})


@pytest.mark.parametrize("sampler", ["tspo", "aks"])
def test_long_job_answers_identically_both_ways(tmp_path, sampler):
    report = run_bench(_tiny(tmp_path, long_sampler=sampler), log=lambda line: None)
    assert report["answers"] == {"compared": 8, "identical": 8, "differing": []}
    ref, fast = report["reference"], report["harness"]
    assert ref["questions"] == fast["questions"] == 8
    # the reference decodes the 12-frame 1-fps grid once per question, the harness once per video
    assert ref["grid_frames_decoded"] == 8 * 12 and fast["grid_frames_decoded"] == 2 * 12
    assert fast["decode_fps"] > 0 and fast["clip_fps"] > 0 and 0 < fast["backbone_share_of_wall"] < 1
    assert fast["decode_ahead"] == 2 and fast["time_s"]["prepare_wait"] >= 0  # grids two videos ahead, prep in a thread
    assert report["speedup"] > 0
    saved = json.loads((tmp_path / "results" / "tiny-long.json").read_text())
    assert saved["answers"]["identical"] == 8 and saved["video_codec"] == "libx264"
    assert "| harness (one decode per video) | 8 |" in (tmp_path / "results" / "tiny-long.md").read_text()


def test_reference_on_a_subset(tmp_path):
    report = run_bench(_tiny(tmp_path, videos=1, reference_questions=2), log=lambda line: None)
    assert report["reference"]["questions"] == 2 and report["harness"]["questions"] == 4
    assert report["answers"]["compared"] == 2 and report["answers"]["identical"] == 2


def test_bad_options(tmp_path):
    with pytest.raises(HarnessError, match="--job must be uniform or long"):
        run_bench(_tiny(tmp_path, job="longer"))
    with pytest.raises(HarnessError, match="decode backend 'nvdec' is not available"):
        run_bench(_tiny(tmp_path, decode_backend="nvdec"))
    with pytest.raises(HarnessError, match="--nvdec-processes needs NVDEC decoders"):  # the runner job, up front
        run_bench(_tiny(tmp_path, job="uniform", nvdec_processes=True, workers=2))
    assert not (tmp_path / "videos").exists()


def test_long_job_command_line(tmp_path, capsys):
    cfg = _tiny(tmp_path)
    code = main(["bench", "--job", "long", "--videos", "1", "--minutes", "0.2", "--height", "96", "--width", "128",
                 "--fps", "10", "--gop", "25", "--questions", "2", "--frames", "3", "--backbone", "mini-qwen2.5-vl",
                 "--backbone-arg", "max_new_tokens=2", "--decode-backend", "pyav", "--encoder", "mini-clip",
                 "--long-sampler", "tspo", "--video-codec", "libx264", "--video-dir", cfg.video_dir,
                 "--out", cfg.out, "--label", "cli-long"])
    assert code == 0
    assert "Identical answers: 2 of 2" in capsys.readouterr().out


def test_decode_check_writes_its_table(tmp_path, capsys):
    from harness.bench.decode_check import main as check
    from harness.bench.videos import video_set

    folder, _ = video_set(_tiny(tmp_path, videos=1))
    assert check([str(folder), "--backend", "decord", "--instances", "1", "2", "--compare", "5",
                  "--out", str(tmp_path / "out")]) == 0
    saved = json.loads((tmp_path / "out" / "decode-check-decord.json").read_text())
    assert saved["compare"]["max"] == [0, 0, 0] and saved["compare"]["frames"] == 5  # decord and PyAV agree
    assert [s["instances"] for s in saved["speed"]] == [1, 2] and saved["speed"][1]["grid_frames"] == 12
    assert check([str(folder), "--backend", "nvdec", "--out", str(tmp_path / "out")]) == 2
    assert "decode backend 'nvdec' is not available" in capsys.readouterr().err


def test_decoders_and_bad_specs(tmp_path):
    """--decoders puts several decoders (here two worker processes) on each grid, frames and answers unchanged; a bad
    spec fails before any video is written."""
    report = run_bench(_tiny(tmp_path, videos=3, decoders="pyav:2", decode_ahead=3), log=lambda line: None)
    assert report["answers"]["identical"] == report["answers"]["compared"] == 12
    fast = report["harness"]
    assert fast["decoders"] == ["pyav", "pyav"] and fast["decode_ahead"] == 3
    assert fast["grid_frames_by_backend"] == {"pyav": 36} and fast["grid_frames_decoded"] == 36
    for spec, message in (("pyav:0", "COUNT >= 1"), ("pyav,nvdec-x", "not available|unknown")):
        with pytest.raises(HarnessError, match=message):
            run_bench(_tiny(tmp_path / "bad", decoders=spec), log=lambda line: None)
        assert not (tmp_path / "bad").exists()


def test_gather_gives_each_question_its_frames_as_its_own_array():
    import torch

    from harness.bench.long import gather

    kept = torch.arange(10 * 2 * 3 * 3, dtype=torch.int64).remainder(251).to(torch.uint8).view(10, 2, 3, 3)
    chosen = [np.array([1, 4, 7]), np.array([0, 4, 9]), np.array([4])]
    grid = kept.clone()
    frames = gather(kept, chosen, {})
    for positions, got in zip(chosen, frames):
        assert isinstance(got, np.ndarray) and got.dtype == np.uint8
        np.testing.assert_array_equal(got, grid.numpy()[positions])
    frames[0][:] = 0  # the questions' arrays share no memory with each other or with the grid
    np.testing.assert_array_equal(frames[1], grid.numpy()[chosen[1]])
    assert torch.equal(kept, grid)
