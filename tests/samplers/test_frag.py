"""FRAG: the scoring formula on hand-made logits (an independent softmax written here), the official prompt typed out
from NVlabs/FRAG `frame_selection.py`, `score_frames` of the mini model (and of tiny random Qwen2.5-VL and
LLaVA-Video models), the top-K tie rule, the presets, and `harness run` end to end with the mini model as scorer."""
import json
import math

import numpy as np
import pytest

from harness.cli.app import main
from harness.errors import HarnessError
from harness.features import backbone_scorer
from harness.features.backbone_scorer import BackboneScorer, frag_prompt, parse_backbone_spec
from harness.records import CandidateGrid
from harness.registry import BACKBONES, SAMPLERS
from samplers.base import apply_sampler
from samplers.frag import FRAG, PRESETS, PROMPT_TEMPLATE, frag_select  # also registers "frag"

# NVlabs/FRAG frame_selection.py, score_prompt for one frame ("frames" proposals), typed out from the official code
OFFICIAL_PROMPT = ("Question: What colour is the square?\n"
                   "Does the information within the image provide the necessary details to accurately answer the "
                   "given question?\nA. yes\nB. no\nAnswer with the option's letter from the given choices directly.")


def softmax_at(row, index):
    """exp(x_i) / sum_j exp(x_j), in plain Python, shifted by the maximum."""
    top = max(row)
    return math.exp(row[index] - top) / sum(math.exp(x - top) for x in row)


# ---------------------------------------------------------------------------------------------------------------
# The score and the prompt

def test_score_formula_on_hand_made_logits():
    import torch

    from backbones.qwen2_5_vl.scoring import first_token_probability

    logits = [[2.0, 0.0, -1.0, 0.5], [0.0, 0.0, 0.0, 0.0], [-3.0, 10.0, 1.0, 1.0]]
    got = first_token_probability(torch.tensor(logits), 1)
    expected = [softmax_at(row, 1) for row in logits]
    assert got == pytest.approx(expected, rel=1e-6)
    assert got[1] == pytest.approx(0.25)  # equal logits: 1 / vocabulary size
    assert got.dtype == np.float64


def test_prompt_is_the_official_text():
    assert frag_prompt("  What colour is the square? \n") == OFFICIAL_PROMPT  # question stripped, no options
    assert PROMPT_TEMPLATE == backbone_scorer.PROMPT_TEMPLATE  # the sampler records what the scorer asks
    assert frag_prompt("a {b} c").startswith("Question: a {b} c\n")


# ---------------------------------------------------------------------------------------------------------------
# score_frames of the backbones

@pytest.fixture(scope="module")
def mini():
    return BACKBONES.create("mini-qwen2.5-vl")


def two_frames(seed=0):
    rs = np.random.RandomState(seed)
    return rs.randint(0, 256, (2, 48, 64, 3)).astype(np.uint8)


def test_mini_scores_are_probabilities_deterministic_and_batch_invariant(mini):
    frames = two_frames()
    scores = mini.score_frames(frames, OFFICIAL_PROMPT)
    assert scores.shape == (2,) and scores.dtype == np.float64
    assert ((scores >= 0) & (scores <= 1)).all()
    assert np.array_equal(scores, mini.score_frames(frames, OFFICIAL_PROMPT))  # deterministic
    one_by_one = [mini.score_frames(frames[i:i + 1], OFFICIAL_PROMPT)[0] for i in range(2)]
    assert scores == pytest.approx(one_by_one, rel=1e-5, abs=1e-7)  # batched = one at a time
    assert mini.score_frames(frames[::-1], OFFICIAL_PROMPT) == pytest.approx(scores[::-1], rel=1e-5, abs=1e-7)


def test_mini_score_is_the_softmax_of_the_next_token_logits_at_A(mini):
    """An independent route: the model's forward logits at the last prompt position (the mini folder's generation
    config has no logits processors), the image input built here, softmax in plain Python."""
    import torch

    frames = two_frames(1)
    processor = mini.processor
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": OFFICIAL_PROMPT}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert "<|vision_start|><|image_pad|><|vision_end|>Question: " in text and "video" not in text
    select = processor.tokenizer.convert_tokens_to_ids("A")
    expected = []
    for frame in frames:
        inputs = processor(text=[text], images=[frame], return_tensors="pt")
        with torch.inference_mode():
            logits = mini.model(**inputs).logits[0, -1].double().tolist()
        expected.append(softmax_at(logits, select))
    assert mini.score_frames(frames, OFFICIAL_PROMPT) == pytest.approx(expected, rel=1e-5)


def test_generate_is_unchanged_by_scoring(mini):
    frames = two_frames(2)
    before = mini.generate(frames, [0.0, 1.0], "Which colour? A. red B. blue")
    mini.score_frames(frames, OFFICIAL_PROMPT)
    assert mini.generate(frames, [0.0, 1.0], "Which colour? A. red B. blue") == before


def test_qwen_original_rope_scores_an_image_as_transformers_does():
    frames = two_frames(3)
    original = BACKBONES.create("qwen2.5-vl", random_init=True, config="qwen2.5-vl-tiny")
    native = BACKBONES.create("qwen2.5-vl", random_init=True, config="qwen2.5-vl-tiny", rope="transformers")
    assert original.score_frames(frames, OFFICIAL_PROMPT) == \
        pytest.approx(native.score_frames(frames, OFFICIAL_PROMPT), rel=1e-5)


def test_llava_video_scores_each_frame_alone():
    frames = two_frames(4)
    model = BACKBONES.create("llava-video", random_init=True, config="tiny")
    scores = model.score_frames(frames, OFFICIAL_PROMPT)
    assert scores.shape == (2,) and ((scores >= 0) & (scores <= 1)).all()
    one_by_one = [model.score_frames(frames[i:i + 1], OFFICIAL_PROMPT)[0] for i in range(2)]
    assert scores == pytest.approx(one_by_one, rel=1e-5, abs=1e-7)


def test_a_backbone_without_the_capability_says_so():
    with pytest.raises(HarnessError, match="backbone 'colour-probe' cannot score frames"):
        BACKBONES.create("colour-probe").score_frames(two_frames(), OFFICIAL_PROMPT)


# ---------------------------------------------------------------------------------------------------------------
# The scorer the feature store loads

def test_backbone_scorer_interface_and_cache_identity(mini):
    scorer = BackboneScorer("backbone:mini-qwen2.5-vl")
    assert scorer.kind == "itm" and scorer.encoder_id.startswith("backbone:mini-qwen2.5-vl:")
    frames = two_frames()
    matrix = scorer.scores(scorer.vision(frames), ["What colour is the square?", "Where is it?"])
    assert matrix.shape == (2, 2)
    assert matrix[0] == pytest.approx(mini.score_frames(frames, OFFICIAL_PROMPT), rel=1e-6)
    assert scorer.scores(scorer.vision(frames[:0]), ["x"]).shape == (1, 0)
    capped = BackboneScorer("backbone:mini-qwen2.5-vl:score_max_pixels=2048")
    assert capped.encoder_id != scorer.encoder_id  # a backbone option that changes scores changes the key


@pytest.mark.parametrize("spec,match", [("backbone:", "expected backbone:NAME"),
                                        ("backbone:mini-qwen2.5-vl:device=cuda", "device comes from the run"),
                                        ("backbone:none", "no model to score frames")])
def test_bad_scorer_specs(spec, match):
    with pytest.raises(HarnessError, match=match):
        parse_backbone_spec(spec) if spec != "backbone:none" else BackboneScorer(spec)


# ---------------------------------------------------------------------------------------------------------------
# Selection

@pytest.mark.parametrize("scores,k,expected", [
    ([0.1, 0.7, 0.3, 0.9, 0.2], 2, [1, 3]),
    ([0.5, 0.9, 0.5, 0.9, 0.1], 2, [1, 3]),  # a tie at the top: both
    ([0.5, 0.9, 0.5, 0.5, 0.1], 2, [0, 1]),  # a tie at the cut: the earlier candidate
    ([0.4] * 6, 3, [0, 1, 2]),  # constant: the first K
    ([0.2, 0.8, 0.8], 1, [1]),  # K = 1, tie: the earlier
    ([0.3, 0.1], 4, [0, 1]),  # fewer than K: every candidate (official: k = min(k, n))
])
def test_top_k_and_its_tie_rule(scores, k, expected):
    assert frag_select(scores, k).tolist() == expected


@pytest.mark.parametrize("scores,k,match", [([0.1, float("nan")], 1, "NaN"), ([[0.1]], 1, "one value"),
                                            ([0.1], 0, "budget")])
def test_bad_selection_inputs(scores, k, match):
    with pytest.raises(HarnessError, match=match):
        frag_select(scores, k)


def _grid(n, step=30, fps=30.0):
    idx = [i * step for i in range(n)]
    return CandidateGrid(idx, [i / fps for i in idx], fps, n * step, "arange:256")


def test_registered_sampler_config_and_runner_path():
    assert all(p.help for p in SAMPLERS.get("frag").params)
    sampler = SAMPLERS.create("frag")
    assert sampler.needs == ("scores",) and sampler.encoder == "backbone:mini-qwen2.5-vl"
    assert sampler.config()["prompt"] == PROMPT_TEMPLATE and sampler.config()["encoder"] == sampler.encoder
    sel = apply_sampler(sampler, _grid(5), 2, {"scores": np.array([0.5, 0.9, 0.5, 0.5, 0.1])})
    assert sel.positions == (0, 1) and sel.frame_indices == (0, 30)
    short = apply_sampler(sampler, _grid(3), 5, {"scores": np.arange(3.0)}, "repeat")
    assert short.positions == (0, 0, 1, 1, 2)  # the shared short-grid rule
    other = SAMPLERS.create("frag", encoder="backbone:qwen2.5-vl")
    assert other.config_hash != sampler.config_hash


def test_presets_hold_the_run_to_the_published_setting():
    assert PRESETS["videomme"] == PRESETS["longvideobench"] == PRESETS["mlvu"] == (32, 256)
    sampler = SAMPLERS.create("frag", preset="videomme")
    scores = np.random.RandomState(0).rand(256)
    assert len(apply_sampler(sampler, _grid(256), 32, {"scores": scores}).positions) == 32
    with pytest.raises(HarnessError, match="K=32 of at most N=256.*--frames 32 --grid arange:256"):
        apply_sampler(sampler, _grid(256), 8, {"scores": scores})
    with pytest.raises(HarnessError, match="N=300"):
        apply_sampler(sampler, _grid(300), 32, {"scores": np.random.RandomState(1).rand(300)})


@pytest.mark.parametrize("kwargs,match", [({"preset": "egoschema"}, "must be one of"),
                                          ({"query": "options"}, "must be one of"),
                                          ({"encoder": "mini-clip"}, "must be backbone:NAME")])
def test_bad_options(kwargs, match):
    with pytest.raises(HarnessError, match=match):
        SAMPLERS.create("frag", **kwargs)
    with pytest.raises(HarnessError):
        FRAG(**kwargs)


# ---------------------------------------------------------------------------------------------------------------
# End to end

def test_harness_run_on_the_smoke_task_with_the_mini_model_as_scorer(tmp_path):
    cache = tmp_path / "cache"

    def run(out):
        assert main(["run", "--task", "smoke", "--task-arg", "videos=2", "--task-arg", "duration=6", "--backbone",
                     "none", "--sampler", "frag", "--frames", "3", "--out", str(out), "--cache-dir", str(cache),
                     "--no-progress"]) == 0
        [run_dir] = list(out.iterdir())
        return run_dir

    run_dir = run(tmp_path / "runs")
    config = json.loads((run_dir / "config.json").read_text())
    assert config["identity"]["sampler"]["config"]["prompt"] == PROMPT_TEMPLATE
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for r in rows:
        assert r["prediction"]["error"] is None
        positions = r["selection"]["positions"]
        assert len(positions) == 3 and positions == sorted(positions)
    manifests = [json.loads(p.read_text()) for p in cache.rglob("*.json")]
    itm = [m for m in manifests if m.get("kind") == "itm"]
    assert len(itm) == 2 and all(m["encoder"].startswith("backbone:mini-qwen2.5-vl:") for m in itm)
    stamps = {p: p.stat().st_mtime_ns for p in cache.rglob("*.safetensors")}
    run(tmp_path / "again")  # the scores come from the cache: nothing rewritten
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*.safetensors")} == stamps
