"""`harness bench` on CPU at toy size: both loops give the same answers, the report is written, timings are real."""
import json

import pytest

from backbones.qwen2_5_vl.flops import prefill_flops
from harness.bench.config import BenchConfig
from harness.bench.run_bench import run_bench
from harness.bench.videos import video_set, write_annotations
from harness.cli.app import main
from harness.errors import HarnessError


def _tiny(tmp_path, **kw) -> BenchConfig:
    return BenchConfig(**{"videos": 2, "minutes": 0.05, "height": 96, "width": 128, "fps": 10, "gop": 10,
                          "questions": 3, "frames": 8, "backbone": "mini-qwen2.5-vl",
                          "backbone_args": {"max_new_tokens": 4}, "workers": 1, "batch_size": 3,
                          "decode_backend": "pyav", "video_dir": str(tmp_path / "videos"),
                          "out": str(tmp_path / "results"), "prefill_repeats": 1, "label": "tiny", **kw})


TINY_QWEN = {"random_init": True, "config": "qwen2.5-vl-tiny", "max_new_tokens": 4, "min_pixels": 3136,
             "max_pixels": 12544}  # rope=original: the harness shares each video's prefix


@pytest.mark.parametrize("backbone,args", [("mini-qwen2.5-vl", {"max_new_tokens": 4}), ("qwen2.5-vl", TINY_QWEN)])
def test_bench_loops_agree_and_write_the_report(tmp_path, backbone, args):
    report = run_bench(_tiny(tmp_path, backbone=backbone, backbone_args=args), log=lambda line: None)
    assert report["answers"] == {"compared": 6, "identical": 6, "differing": []}
    assert report["reference"]["questions"] == report["harness"]["questions"] == 6
    assert report["harness"]["n_errors"] == 0
    assert report["reference"]["seconds"] > 0 and report["harness"]["seconds"] > 0 and report["speedup"] > 0
    for key in ("reference", "harness"):
        p = report["prefill"][key]
        assert p["seconds"] > 0 and p["flops"]["total"] > p["flops"]["vision"] > 0
    fast, ref = report["prefill"]["harness"], report["prefill"]["reference"]
    assert fast["batch"] == 3 and fast["vision_videos"] == 1
    if backbone == "qwen2.5-vl":  # the prefix (system turn and video) through the language model once, not 3 times
        [prefix] = fast["shared_prefix_tokens"]
        assert prefix < min(fast["tokens"]) and fast["flops"]["language"] < 2 * ref["flops"]["language"]
    saved = json.loads((tmp_path / "results" / "tiny.json").read_text())
    assert saved["speedup"] == pytest.approx(report["speedup"])
    assert "| harness runner | 6 |" in (tmp_path / "results" / "tiny.md").read_text()


def test_reference_on_the_first_questions(tmp_path):
    """--reference-questions N: the reference answers N questions, the harness all; answers compared on those N,
    the speed-up in questions per second."""
    report = run_bench(_tiny(tmp_path, reference_questions=2), log=lambda line: None)
    ref, fast = report["reference"], report["harness"]
    assert ref["questions"] == 2 and fast["questions"] == 6
    assert report["answers"] == {"compared": 2, "identical": 2, "differing": []}
    assert report["speedup"] == pytest.approx((6 / fast["seconds"]) / (2 / ref["seconds"]))
    assert "(the reference answered the first 2)" in (tmp_path / "results" / "tiny.md").read_text()


def test_reference_decoded_both_ways(tmp_path, monkeypatch):
    """--reference-decode both: the reference loop twice on the same questions, decoding as lmms-eval does (the
    headline row) and with the harness reader (a second row with its own speed-up); same answers all three ways."""
    from harness.bench import loops

    stock_calls = []
    real = loops.stock_frames
    monkeypatch.setattr(loops, "stock_frames", lambda *a: stock_calls.append(a[0]) or real(*a))
    report = run_bench(_tiny(tmp_path, reference_decode="both", reference_questions=3), log=lambda line: None)
    assert len(stock_calls) == 3  # the stock loop's 3 questions, nothing else
    assert report["reference"]["decode"] == "stock" and report["answers"]["identical"] == 3
    [other] = report["other_references"]
    assert other["decode"] == "harness" and other["questions"] == 3 and other["identical"] == 3
    assert other["speedup"] == pytest.approx((6 / report["harness"]["seconds"]) / (3 / other["seconds"]))
    page = (tmp_path / "results" / "tiny.md").read_text()
    assert "| reference, harness decoding | 3 |" in page and "PyAV decoding every frame up to the last" in page


def test_video_set_is_cached(tmp_path):
    cfg = _tiny(tmp_path)
    folder, paths = video_set(cfg)
    stamps = [p.stat().st_mtime_ns for p in paths]
    assert video_set(cfg) == (folder, paths)
    assert [p.stat().st_mtime_ns for p in paths] == stamps  # reused, not rewritten
    records = json.loads(write_annotations(folder, paths, 3).read_text())
    assert len(records) == 6 and {r["videoID"] for r in records} == {p.stem for p in paths}


def test_prefill_flops_of_the_7b_architecture():
    from transformers import Qwen2_5_VLConfig

    from backbones.qwen2_5_vl.adapter import CONFIGS

    arch = CONFIGS["qwen2.5-vl-7b"]
    config = Qwen2_5_VLConfig(text_config=arch["text"], vision_config=arch["vision"])
    n, patches = 8942, 32 * 24 * 46  # 64 frames at 336x644
    flops = prefill_flops(config, [n], [(patches, 24 * 46)])
    # ~6.5e9 weights per token in the language model's layers, ~0.63e9 in the vision blocks
    assert flops["language"] == pytest.approx(2 * 6.53e9 * n + 2 * n * n * 28 * 3584 + 2 * 3584 * 152064, rel=0.01)
    assert 40e12 < flops["vision"] < 50e12
    assert prefill_flops(config, [n] * 3, [(patches, 1104)])["language"] == pytest.approx(3 * flops["language"])
    # tokens continuing a cached prefix: their share of the whole sequence's attention, projections for them only
    from harness.util.flops import language_flops

    text = config.text_config
    whole, prefix = language_flops(text, [n]), language_flops(text, [n - 100])
    assert prefix + language_flops(text, [100], [n - 100]) == pytest.approx(whole + 2 * 3584 * 152064, rel=1e-9)


def test_bench_command_line(tmp_path, capsys):
    cfg = _tiny(tmp_path)
    code = main(["bench", "--videos", "1", "--minutes", "0.05", "--height", "96", "--width", "128", "--fps", "10",
                 "--gop", "10", "--frames", "4", "--backbone", "mini-qwen2.5-vl", "--backbone-arg",
                 "max_new_tokens=2", "--workers", "0", "--decode-backend", "pyav", "--video-dir", cfg.video_dir,
                 "--out", cfg.out, "--prefill-repeats", "1", "--label", "cli"])
    assert code == 0
    assert "questions/s" in capsys.readouterr().out
    assert (tmp_path / "results" / "cli.json").is_file()


def test_a_writer_process_that_dies_is_one_line_naming_the_videos_left(tmp_path, monkeypatch):
    from concurrent.futures.process import BrokenProcessPool

    import harness.bench.videos as videos

    class Killed:  # the pool as it behaves when the kernel kills a writer: no reason given
        def __init__(self, *a, **kw):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def map(self, *a):
            raise BrokenProcessPool("A process in the process pool was terminated abruptly")

    monkeypatch.setattr(videos, "ProcessPoolExecutor", Killed)
    cfg = BenchConfig(videos=2, minutes=0.02, height=64, width=96, fps=10, gop=10, video_dir=str(tmp_path))
    with pytest.raises(HarnessError, match=r"writer process died .*\(2 of 2 videos unwritten: bench_000.mp4, "
                                           r"bench_001.mp4; [0-9.]+ GiB free there"):
        video_set(cfg)
