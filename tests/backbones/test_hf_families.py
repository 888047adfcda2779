"""The transformers families (backbones/hf): each as a tiny random model built offline from its config class, run
through the harness, its processor output checked against the family's documented layout, saved and reloaded.

Golden token counts are hand computations from each family's published design (not from the code under test):
* Qwen2-VL: a frame of h x w resized to multiples of 28 inside [min, max] pixels; 2 frames fuse into one temporal
  patch; (h/14)(w/14)/4 tokens per temporal patch.
* Qwen3-VL: `<t seconds>` before each temporal patch, t = mean time of its two frames (one decimal).
* LLaVA-OneVision: per frame ceil(p/2)^2 tokens of a p x p patch grid (bilinear pooling to half), + 1 newline
  for the video. LLaVA-NeXT-Video: p^2 / 4 per frame (2x2 average pooling).
* InternVL: "FrameK: <img>" + (p/2)^2 context tokens (pixel shuffle 0.5) + "</img>" per frame.
* SmolVLM2: "Frame from MM:SS:" per frame at its time; (p / scale)^2 tokens per frame.
"""
from __future__ import annotations

import numpy as np
import pytest

import backbones  # noqa: F401  (registers the families)
from harness.errors import HarnessError
from harness.registry import BACKBONES

FAMILIES = ("qwen2-vl", "qwen3-vl", "llava-onevision", "llava-next-video", "internvl", "smolvlm2")
STYLES = {"qwen2-vl": "qwen2_vl", "qwen3-vl": "qwen3_vl", "llava-onevision": "llava_onevision",
          "llava-next-video": "llava_hf", "internvl": "internvl_hf", "smolvlm2": "huggingface"}
FRAMES = np.random.default_rng(0).integers(0, 256, (4, 64, 80, 3), dtype=np.uint8)
TIMES = [10.0, 12.0, 30.0, 31.0]
PROMPT = "Which colour?\nA. red\nB. blue\nAnswer with the option's letter from the given choices directly."


@pytest.fixture(scope="module")
def built():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = BACKBONES.create(name, random_init=True, config="tiny", max_new_tokens=3)
        return cache[name]
    return get


def text_of(backbone, requests):
    inputs = backbone.inputs(requests)
    return inputs, backbone.processor.tokenizer.decode(inputs["input_ids"][0])


@pytest.mark.parametrize("name", FAMILIES)
def test_batch_equals_one_by_one_and_visual_tokens_recorded(built, name):
    b = built(name)
    other = FRAMES[::-1].copy()
    requests = [(FRAMES, TIMES, PROMPT), (other, [0.0, 1.0, 2.0, 3.0], "Q?"), (FRAMES[:2], TIMES[:2], PROMPT)]
    batch = b.generate_batch(requests)
    tokens = list(b.last_visual_tokens)
    single = [b.generate(*r) for r in requests]
    assert batch == single
    assert len(tokens) == 3 and all(t > 0 for t in tokens)


def test_qwen2_vl_tokens_per_temporal_patch(built):
    b = built("qwen2-vl")
    # lmms-eval preset [3136, 602112]: 64 x 80 -> 56 x 84 (rounded to 28s, 4704 px inside the limits)
    # -> (56/14)(84/14)/4 = 6 tokens per temporal patch, 4 frames = 2 patches
    b.generate(FRAMES, TIMES, PROMPT)
    assert b.last_visual_tokens == [12]
    inputs = b.inputs([(FRAMES, TIMES, PROMPT)])
    assert inputs["video_grid_thw"].tolist() == [[2, 4, 6]]


def test_qwen3_vl_patches_carry_the_selection_times(built):
    b = built("qwen3-vl")
    _, text = text_of(b, [(FRAMES, TIMES, PROMPT)])
    assert "<11.0 seconds>" in text and "<30.5 seconds>" in text
    assert text.count("<|vision_start|>") == 2  # one per temporal patch
    # an odd count repeats the last frame and its time: (10, 12), (30, 30)
    _, odd = text_of(b, [(FRAMES[:3], TIMES[:3], PROMPT)])
    assert "<11.0 seconds>" in odd and "<30.0 seconds>" in odd


def test_smolvlm2_frames_carry_the_selection_times(built):
    b = built("smolvlm2")
    _, text = text_of(b, [(FRAMES[:2], [10.0, 75.0], PROMPT)])
    assert "Frame from 00:10:" in text and "Frame from 01:15:" in text
    assert "two frames" in text
    b.generate(FRAMES, TIMES, PROMPT)
    assert b.last_visual_tokens == [4 * (64 // 16 // 2) ** 2]


@pytest.mark.parametrize("name, per_frame, extra", [("llava-onevision", 4, 1), ("llava-next-video", 4, 0),
                                                    ("internvl", 4, 0)])
def test_tokens_per_frame(built, name, per_frame, extra):
    b = built(name)  # tiny towers: 56 px, patch 14 -> a 4 x 4 grid per frame
    b.generate(FRAMES, TIMES, PROMPT)
    assert b.last_visual_tokens == [4 * per_frame + extra]


def test_internvl_numbers_its_frames(built):
    _, text = text_of(built("internvl"), [(FRAMES, TIMES, PROMPT)])
    for k in range(1, 5):
        assert f"Frame{k}: <img>" + "<IMG_CONTEXT>" * 4 + "</img>" in text


@pytest.mark.parametrize("name", FAMILIES)
def test_config_says_how_frames_reach_the_model(built, name):
    cfg = built(name).config()
    assert "do_sample_frames=False" in cfg["frames"] and cfg["family"] == name
    assert cfg["weights"] == f"random-init:{name}:tiny:seed0"
    assert BACKBONES.get(name).factory.prompt_style == STYLES[name]


@pytest.mark.parametrize("name", FAMILIES)
def test_score_frames_is_a_probability_independent_of_batching(built, name):
    b = built(name)
    scores = b.score_frames(FRAMES, "Is there a cat? A. yes B. no")
    alone = [b.score_frames(FRAMES[i:i + 1], "Is there a cat? A. yes B. no")[0] for i in (0, 3)]
    assert scores.shape == (4,) and ((scores > 0) & (scores < 1)).all()
    np.testing.assert_allclose([scores[0], scores[3]], alone, rtol=1e-4)


@pytest.mark.parametrize("name", FAMILIES)
def test_saved_folder_reloads_offline_with_the_same_answers(built, name, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    b = built(name)
    b.model.save_pretrained(tmp_path)
    b.processor.save_pretrained(tmp_path)
    loaded = BACKBONES.create(name, model=str(tmp_path), max_new_tokens=3)
    assert loaded.generate(FRAMES, TIMES, PROMPT) == b.generate(FRAMES, TIMES, PROMPT)
    assert loaded.last_visual_tokens == b.last_visual_tokens


@pytest.mark.parametrize("name", FAMILIES)
def test_harness_run_smoke(name, tmp_path, capsys):
    from harness.cli.app import main

    code = main(["run", "--task", "smoke", "--task-arg", "videos=4", "--task-arg", "duration=6", "--limit", "4",
                 "--frames", "4", "--backbone", name, "--backbone-arg", "random_init=true",
                 "--backbone-arg", "config=tiny", "--sampler", "uniform", "--out", str(tmp_path), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    import json

    [rows_file] = list(tmp_path.rglob("predictions.jsonl"))
    rows = [json.loads(line) for line in rows_file.read_text().splitlines()]
    assert len(rows) == 4 and all(r.get("visual_tokens", 0) > 0 for r in rows)


def test_bad_options_are_one_line_errors():
    with pytest.raises(HarnessError, match="config"):
        BACKBONES.create("qwen3-vl", random_init=True, config="qwen3-vl-80b")
    with pytest.raises(HarnessError, match="min_pixels"):
        BACKBONES.create("internvl", random_init=True, config="tiny", min_pixels=100)
    with pytest.raises(HarnessError, match="pixels"):
        BACKBONES.create("qwen2-vl", random_init=True, config="tiny", pixels="tspo")


# Published parameter counts of the checkpoints each real-size preset stands for (their model cards), to the
# precision they are published; a wrong width, depth or vocabulary moves the count past it.
PUBLISHED = [("qwen3-vl", "qwen3-vl-8b", 8.77, 0.005), ("qwen2-vl", "qwen2-vl-7b", 8.29, 0.005),
             ("internvl", "internvl3-8b", 7.9, 0.05), ("llava-onevision", "llava-onevision-7b", 8.03, 0.005),
             ("llava-next-video", "llava-next-video-7b", 7.06, 0.005), ("smolvlm2", "smolvlm2-2.2b", 2.25, 0.005)]


@pytest.mark.parametrize("family,config,billions,tolerance", PUBLISHED)
def test_real_size_presets_match_published_parameter_counts(family, config, billions, tolerance):
    import torch
    from transformers import AutoModelForImageTextToText

    from backbones.hf.configs import CONFIGS, arch_sizes, build_config
    from backbones.hf.families import FAMILIES as FAMILY_TABLE
    from backbones.hf.offline import build_processor

    arch = CONFIGS[family][config]
    cfg = build_config(FAMILY_TABLE[family], arch, build_processor(FAMILY_TABLE[family], arch_sizes(arch)).tokenizer)
    with torch.device("meta"):  # shapes only: no memory, no weights
        model = AutoModelForImageTextToText.from_config(cfg)
    assert abs(sum(p.numel() for p in model.parameters()) / 1e9 - billions) <= tolerance
