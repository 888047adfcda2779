"""Shared prompt prefixes of the transformers families (backbones/hf/shared.py): with `accelerate` on, questions on
the same frames continue from one pass of the video; their answers, visual token counts and first-step logits must
be those of each question run alone through the plain path."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import backbones  # noqa: F401  (registers the families)
from backbones.hf.shared import generate_shared_prefix, split_template
from harness.registry import BACKBONES

FAMILIES = ("qwen2-vl", "qwen3-vl", "llava-onevision", "llava-next-video", "internvl", "smolvlm2")
FRAMES = np.random.default_rng(1).integers(0, 256, (4, 64, 80, 3), dtype=np.uint8)
OTHER = FRAMES[::-1].copy()
PROMPT = "Which colour?\nA. red\nB. blue\nAnswer with the option's letter from the given choices directly."
REQUESTS = [(FRAMES, [1.0, 2.0, 3.0, 4.0], PROMPT), (OTHER, [0.0, 5.0, 6.0, 9.0], "Q?"),
            (FRAMES, [1.0, 2.0, 3.0, 4.0], "Which one? Short."), (OTHER, [0.0, 5.0, 6.0, 9.0], PROMPT)]


@pytest.fixture(scope="module")
def built():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = BACKBONES.create(name, random_init=True, config="tiny", max_new_tokens=4)
        return cache[name]
    return get


@pytest.mark.parametrize("name", FAMILIES)
def test_shared_prefix_answers_equal_one_by_one(built, name):
    b = built(name)
    alone = [b.generate(*r) for r in REQUESTS]
    tokens_alone = []
    for r in REQUESTS:
        b.generate(*r)
        tokens_alone += b.last_visual_tokens
    off = b.accelerate()
    try:
        shared = generate_shared_prefix(b, REQUESTS)
        assert shared is not None, "the shared path declined a batch it can take"
        assert shared == alone
        assert b.last_visual_tokens == tokens_alone
        assert b.generate_batch(REQUESTS) == alone  # generate_batch takes the shared path when accelerated
    finally:
        off()


@pytest.mark.parametrize("name", FAMILIES)
def test_continuing_from_the_head_cache_gives_the_full_passes_logits(built, name):
    """The mechanism itself, in logits: generating from the head's cache + the question's tokens gives the first-step
    logits of the whole prompt run in one pass."""
    b = built(name)
    head, tail = split_template(b)
    video = b._video(FRAMES, [1.0, 2.0, 3.0, 4.0])
    tok = b.processor.tokenizer
    greedy = dict(max_new_tokens=1, do_sample=False, temperature=None, top_p=None, top_k=None,
                  output_logits=True, return_dict_in_generate=True)
    with torch.inference_mode():
        full = b.processor_inputs([head + PROMPT + tail], [video])
        want = b.model.generate(**full, **greedy).logits[0][0]
        first = b.processor_inputs([head], [video])
        out = b.model(**first, use_cache=True)
        key = "cache" if "cache" in out.keys() else "past_key_values"
        own = torch.tensor([tok(PROMPT + tail, add_special_tokens=False)["input_ids"]])
        ids = torch.cat([first["input_ids"], own], dim=1)
        assert torch.equal(ids, full["input_ids"])  # the split text tokenizes to the same ids
        got = b.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **{key: copy.deepcopy(out[key])},
                               **greedy).logits[0][0]
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_declines_when_no_two_questions_share_frames(built):
    b = built("internvl")
    off = b.accelerate()
    try:
        assert generate_shared_prefix(b, [REQUESTS[0], REQUESTS[1]]) is None
        assert b.generate_batch([REQUESTS[0], REQUESTS[1]]) == [b.generate(*REQUESTS[0]), b.generate(*REQUESTS[1])]
    finally:
        off()


@pytest.mark.parametrize("name", ["qwen3-vl", "internvl"])
def test_prefill_probe_runs_the_vision_tower_once_per_video_when_shared(built, name):
    """Two questions on one video: plain, the tower runs twice (counted FLOPs); shared, once, and the language
    model reads the head once (the decoder formula with each question's own tokens over its cached head)."""
    from harness.util.flops import language_flops

    b = built(name)
    requests = [REQUESTS[0], REQUESTS[2]]
    plain = b.prefill_probe(requests)
    off = b.accelerate()
    try:
        shared = b.prefill_probe(requests)
        shared.run()
    finally:
        off()
    assert plain.tokens == shared.tokens and plain.vision_videos == 2 and shared.vision_videos == 1
    assert plain.flops["vision"] > 0 and shared.flops["vision"] == pytest.approx(plain.flops["vision"] / 2)
    [head] = shared.extra["shared_prefix_tokens"]
    text = b.model.config.text_config
    own = [n - head for n in shared.tokens]
    assert shared.flops["language"] == language_flops(text, [head] + own, [0, head, head])
    assert plain.flops["language"] == language_flops(text, plain.tokens)


def test_attention_flops_of_grouped_query_kernels():
    """Hand count: QK^T and PV, 2 FLOPs per multiply-add, query heads broadcast over fewer key/value heads."""
    from backbones.hf.probe import _attention

    # 8 query heads over 2 KV heads, 16 queries x 24 keys, head dim 32 and value dim 32
    assert _attention((1, 8, 16, 32), (1, 2, 24, 32), (1, 2, 24, 32)) == 2 * 8 * 16 * 24 * 32 * 2
