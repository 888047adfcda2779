"""Multi-resolution selections on Qwen2.5-VL (`generate_scaled`, backbones/qwen2_5_vl/scaled.py): the mini backbone
receives each frame as an image of its scaled size, the visual tokens per question match a hand computation, the
JPEG option, the sequential and pipelined executors agree, and a backbone that takes no scales is refused before
the run in one line.

Token counts by hand, for the mini model's image processor (patch 16, merge 2: one token per 32 x 32 block, each image
rounded to multiples of 32 inside [1024, 16384] pixels, as Qwen2-VL's smart_resize does)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from harness.config import RunConfig
from harness.errors import HarnessError
from harness.registry import BACKBONES
from harness.shipped import SHIPPED

MINI = SHIPPED["mini-qwen2.5-vl"]
needs_mini = pytest.mark.skipif(not (MINI / "model.safetensors").is_file(), reason="mini-qwen2.5-vl not trained")


class Spy:
    """The processor, recording the sizes of the images it is given."""

    def __init__(self, processor):
        self._processor, self.sizes = processor, []

    def __call__(self, *args, **kwargs):
        self.sizes.append([image.size for image in kwargs.get("images") or []])
        return self._processor(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._processor, name)


@pytest.fixture(scope="module")
def mini():
    return BACKBONES.create("mini-qwen2.5-vl")


def frames(n, height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, height, width, 3), dtype=np.uint8)


def test_scaled_size_by_hand():
    from backbones.qwen2_5_vl.scaled import scaled_size

    assert scaled_size(1280, 720, 0.5) == (640, 360)
    assert scaled_size(97, 61, 0.5) == (48, 30)  # width // 2, height // 2 as the official code
    assert scaled_size(97, 61, 0.125) == (12, 7)
    assert scaled_size(5, 5, 0.125) == (1, 1)
    with pytest.raises(HarnessError, match="outside"):
        scaled_size(10, 10, 1.5)


@needs_mini
def test_images_of_scaled_sizes_and_token_count(mini, monkeypatch):
    spy = Spy(mini.processor)
    monkeypatch.setattr(mini, "processor", spy)
    requests = [(frames(3, 256, 256), [0.0, 1.0, 2.0], [0.5, 0.25, 0.125], "Question?\nA. a\nB. b"),
                (frames(2, 128, 256, 1), [0.0, 4.0], [0.125, 0.5], "Another?\nA. a\nB. b")]
    answers = mini.generate_scaled_batch(requests)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    assert spy.sizes == [[(128, 128), (64, 64), (32, 32), (32, 16), (128, 64)]]  # PIL sizes are (width, height)
    # first: 128x128 -> 4 x 4 = 16, 64x64 -> 2 x 2 = 4, 32x32 -> 1: 21 tokens
    # second: 32x16 rounds to 32 x 0, below 1024 pixels: scaled up by sqrt(2) and ceiled to 64 x 32 -> 2;
    #         128x64 -> 4 x 2 = 8: 10 tokens
    assert mini.last_visual_tokens == [21, 10]
    one = mini.generate_scaled(*requests[1])
    assert one == answers[1] and mini.last_visual_tokens == [10]


@needs_mini
def test_jpeg_round_trip_option():
    from backbones.qwen2_5_vl.scaled import scaled_images

    jpeg = BACKBONES.create("mini-qwen2.5-vl", scaled_jpeg=True)
    assert jpeg.config()["scaled_jpeg"] is True
    assert "scaled_jpeg" not in BACKBONES.create("mini-qwen2.5-vl").config()  # absent unless set: old runs keep ids
    f = frames(1, 64, 64)
    plain, through = scaled_images(f, [0.5]), scaled_images(f, [0.5], jpeg=True)
    assert plain[0].size == through[0].size == (32, 32)
    assert not np.array_equal(np.asarray(plain[0]), np.asarray(through[0]))  # JPEG is lossy on noise


def test_default_backbone_refuses_scales():
    from backbones.none import NoBackbone

    with pytest.raises(HarnessError, match="does not take per-frame scales"):
        NoBackbone().generate_scaled(frames(1, 8, 8), [0.0], [0.5], "q")


def test_refused_before_the_run(tmp_path):
    from harness.run.runner import Run

    cfg = RunConfig(task="smoke", backbone="llava-video", samplers=["qframe:encoder=mini-clip"], frames=4,
                    task_args={"videos": 1, "duration": 6.0}, out=str(tmp_path / "runs"),
                    cache_dir=str(tmp_path / "cache"))
    with pytest.raises(HarnessError) as e:  # before llava-video loads (no model folder is needed to be refused)
        Run(cfg, progress=False)
    assert "'llava-video'" in str(e.value) and "'qframe'" in str(e.value) and "\n" not in str(e.value)
    cmd = [sys.executable, "-m", "harness", "run", "--task", "smoke", "--task-arg", "videos=1", "--backbone",
           "colour-probe", "--sampler", "qframe:encoder=mini-clip", "--out", str(tmp_path / "r2"), "--cache-dir",
           str(tmp_path / "cache"), "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "harness: error: backbone 'colour-probe' does not take per-frame scales, which sampler 'qframe' gives "
        "(multi-resolution): use qwen2.5-vl, mini-qwen2.5-vl or --backbone none"]


@needs_mini
def test_sequential_and_pipelined_agree(tmp_path):
    from harness.run.runner import Run

    rows = []
    for name, speed in (("seq", {}), ("pipe", {"workers": 1, "batch_size": 3})):
        cfg = RunConfig(task="smoke", backbone="mini-qwen2.5-vl",
                        samplers=["qframe:encoder=mini-clip", "uniform"], frames=4,
                        task_args={"videos": 2, "duration": 12.0}, out=str(tmp_path / name),
                        cache_dir=str(tmp_path / "cache"), **speed)
        run_dirs = Run(cfg, progress=False).execute()
        rows.append([[json.loads(line) for line in (d / "predictions.jsonl").read_text().splitlines()]
                     for d in run_dirs])
    for seq, pipe in zip(*rows):
        key = lambda r: r["sample_id"]  # noqa: E731
        for a, b in zip(sorted(seq, key=key), sorted(pipe, key=key)):
            assert a["selection"] == b["selection"]
            assert a["prediction"]["raw_text"] == b["prediction"]["raw_text"]
            assert a.get("visual_tokens") == b.get("visual_tokens")
    qframe_rows = rows[0][0]
    assert all(r["selection"]["scales"] and r["prediction"]["parse_status"] != "error" for r in qframe_rows)
