"""The `qwen2.5-vl` backbone and the shipped mini Qwen2.5-VL: loading offline, the chat format, timing, reading
frames (oracle vs no evidence), training, and a tiny random model through the same adapter."""
from __future__ import annotations

import numpy as np
import pytest

from harness.scoring.answers import extract_strict
from harness.shipped import SHIPPED, resolve_model
from harness.registry import BACKBONES

MINI = SHIPPED["mini-qwen2.5-vl"]
needs_mini = pytest.mark.skipif(not (MINI / "model.safetensors").is_file(), reason="mini-qwen2.5-vl not trained")


@pytest.fixture(scope="module")
def mini():
    return BACKBONES.create("mini-qwen2.5-vl")


@pytest.fixture(scope="module")
def test_questions():
    """(pool, sample, prompt) of the first test videos: rendered 1 fps frames after an H.264 round trip."""
    from harness.miniworld.qwen.world import pooled_questions

    return pooled_questions("test", 3)


def test_shipped_names_resolve():
    assert resolve_model("mini-qwen2.5-vl") == str(MINI)
    assert resolve_model("Qwen/Qwen2.5-VL-7B-Instruct") == "Qwen/Qwen2.5-VL-7B-Instruct"


def test_registered_with_their_options():
    for name in ("qwen2.5-vl", "mini-qwen2.5-vl"):
        params = {p.name for p in BACKBONES.get(name).params}
        assert {"model", "pixels", "min_pixels", "max_pixels", "max_new_tokens", "timing", "rope", "device",
                "dtype"} <= params
    assert {p.name: p.default for p in BACKBONES.get("qwen2.5-vl").params}["model"] == "Qwen/Qwen2.5-VL-7B-Instruct"


def test_second_per_grid():
    from backbones.qwen2_5_vl.rope import second_per_grid

    assert second_per_grid([0, 30, 60, 90], 2, real_timing=False) == 1.0  # TSPO: as if sampled at 2 fps
    assert second_per_grid([0, 30, 60, 90], 2, real_timing=True) == 60.0  # two frames 30 s apart per patch
    assert second_per_grid([12.0], 2, real_timing=True) == 1.0  # one frame: nothing to space
    assert second_per_grid([5, 5, 5], 2, real_timing=True) == 1.0  # repeated frames: no span


@needs_mini
def test_shipped_model_loads_offline():
    from transformers import AutoModelForImageTextToText, AutoProcessor, Qwen2_5_VLForConditionalGeneration

    processor = AutoProcessor.from_pretrained(MINI)
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    assert type(AutoModelForImageTextToText.from_pretrained(MINI)) is Qwen2_5_VLForConditionalGeneration
    assert (MINI / "model.safetensors").stat().st_size < 12e6


@needs_mini
def test_chat_template_renders_a_video_turn():
    from transformers import AutoProcessor

    from backbones.qwen2_5_vl.chat import chat_text

    processor = AutoProcessor.from_pretrained(MINI)
    assert chat_text(processor, "Q?\n") == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|video_pad|><|vision_end|>Q?\n<|im_end|>\n<|im_start|>assistant\n")
    inputs = processor(text=[chat_text(processor, "Q?")], videos=[np.zeros((8, 128, 128, 3), np.uint8)],
                       return_tensors="pt")
    assert inputs["video_grid_thw"].tolist() == [[4, 8, 8]]  # 128 px frames pass unresized: 8x8 patches of 16
    assert int((inputs["input_ids"] == processor.video_token_id).sum()) == 4 * 4 * 4  # 2x2 merged


@needs_mini
def test_backbone_answers_with_a_parseable_letter(mini, test_questions):
    from harness.miniworld.qwen.world import K, oracle_times

    pool, sample, prompt = test_questions[0]
    times = oracle_times(sample.evidence, pool.times, K, np.random.default_rng(0))
    text = mini.generate(pool.at(times), times, prompt)
    assert extract_strict(text, sample.options).rule == "bare", text
    assert mini.config()["min_pixels"] == 1024 and mini.config()["max_pixels"] == 128 * 128


@needs_mini
def test_reads_the_evidence_frames(mini, test_questions):
    """The shipped weights answer from the frames: with oracle selections (a frame inside every evidence event) and
    crowded ones (runs of evidence frames, other needles beside them) the 12 test questions are mostly right
    (held out, see training.json), with no evidence about chance (4 letters). A model that ignores the frames gets
    all near 0.25: P(>= 9 of 12 right) < 0.001 at chance."""
    from harness.miniworld.qwen.world import K, event_intervals, selection_times

    rng = np.random.default_rng(0)
    hits = {"oracle": [], "crowded": [], "none": []}
    for pool, sample, prompt in test_questions:
        for kind in hits:
            times = selection_times(kind, sample.evidence, event_intervals(pool.spec), pool.times, K, rng)
            hits[kind].append(extract_strict(mini.generate(pool.at(times), times, prompt), sample.options).letter
                              == sample.answer_letter)
    oracle, crowded, none = (np.mean(hits[k]) for k in ("oracle", "crowded", "none"))
    assert oracle >= 0.75 and crowded >= 0.75 and min(oracle, crowded) - none >= 0.3, hits


TINY = dict(text_hidden=32, text_layers=2, text_heads=1, text_intermediate=64, vision_hidden=32, vision_depth=1,
            vision_heads=2, vision_intermediate=64, merges=50)


def test_short_training_lowers_the_loss(tmp_path):
    from harness.miniworld.qwen.build import Sizes
    from harness.miniworld.qwen.train import train_mini_qwen

    result = train_mini_qwen(tmp_path / "m", steps=8, batch_size=4, lr=3e-3, videos=2, fillers=10,
                             sizes=Sizes(**TINY), log_every=4, log=lambda _: None)
    losses = [row["loss"] for row in result["history"]]
    assert losses[-1] < losses[0], losses
    assert (tmp_path / "m" / "model.safetensors").is_file()


def test_tiny_random_model_runs_through_the_adapter(tmp_path):
    """The real-size path on CPU: any Qwen2.5-VL folder goes through the same adapter as the 7B."""
    import torch

    from backbones.qwen2_5_vl.adapter import Qwen25VL
    from harness.miniworld.qwen.build import Sizes, build_mini_qwen

    build_mini_qwen(tmp_path, sizes=Sizes(**TINY), corpus_videos=2)
    backbone = Qwen25VL(model=str(tmp_path), pixels="model", max_new_tokens=3, timing="tspo")
    frames = np.random.default_rng(0).integers(0, 256, (5, 96, 160, 3), dtype=np.uint8)  # odd count, not square
    assert isinstance(backbone.generate(frames, [0, 10, 20, 30, 40], "Which?\nA. x\nB. y\n"), str)
    times = backbone.inputs([(frames, [0, 10, 20, 30, 40], "Which?\nA. x\nB. y\n")])["second_per_grid_ts"]
    assert times.tolist() == [[0.0, 1.0, 2.0]]  # TSPO: 3 temporal patches as if sampled at 2 fps
    backbone.timing = "exact"
    times = backbone.inputs([(frames, [0, 10, 20, 30, 40], "Which?")])["second_per_grid_ts"]
    assert times.tolist() == [[0.0, 20.0, 40.0]]  # each patch at its first frame's time
    assert backbone.config()["weights"].startswith("sha256:")
    assert backbone.model.dtype == torch.float32


def test_fast_training_inputs_match_the_processor(tmp_path):
    """Training feeds frames through `fast_inputs` + `patchify`; they must give what the processor gives."""
    import torch

    from harness.miniworld.qwen.batches import (Recipe, fast_inputs, patchify, teacher_forced_batch,
                                                training_example)
    from harness.miniworld.qwen.build import Sizes, build_mini_qwen
    from harness.miniworld.qwen.world import pooled_questions

    _, processor = build_mini_qwen(tmp_path, sizes=Sizes(**TINY), corpus_videos=2)
    questions = pooled_questions("train", 2, fillers=8)
    pools = list({id(q[0]): q[0] for q in questions}.values())
    rng = np.random.default_rng(0)
    examples = [training_example(pools, questions, Recipe(describe=0.3, no_evidence=0.2), rng)[:4] for _ in range(5)]
    timing = [True, False, True, True, False]
    want, want_start, want_lengths = teacher_forced_batch(processor, examples, timing)
    got, start, lengths = fast_inputs(processor, examples, timing)
    pixels = patchify(processor, got.pop("frames"))
    assert set(got) | {"pixel_values_videos"} == set(want)
    for key, value in got.items():
        assert torch.equal(value, want[key]), key
    assert torch.allclose(pixels, want["pixel_values_videos"], atol=1e-5)
    assert torch.equal(start, want_start) and torch.equal(lengths, want_lengths)


@needs_mini
def test_eval_command_reports_every_selection_kind(tmp_path, monkeypatch, capsys):
    """`harness miniworld qwen eval`: generated answers on written test videos, per selection kind, as JSON."""
    import json

    from harness.miniworld.qwen.main import main

    monkeypatch.setenv("LONGVIDEO_HARNESS_HOME", str(tmp_path))
    main(["eval", "--eval-videos", "2"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["questions"] == 8
    for kind in ("oracle", "crowded", "none"):
        assert 0.0 <= result[kind] <= 1.0 and result[f"{kind}/unparsed"] == 0
    assert result["oracle"] > result["none"] and result["crowded"] > result["none"]
