"""Qwen2.5-VL adapter internals: the original 3-D rope positions with exact frame times, pixel presets, batching,
and the random-init path (tiny architecture on CPU)."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from backbones.qwen2_5_vl.adapter import Qwen25VL, lmms_eval_max_pixels
from backbones.qwen2_5_vl.rope import mrope_positions, patch_times, rope_positions

VIDEO, IMAGE, TEXT = 9, 8, 1


def positions(ids, mask=None, grid=((2, 4, 4),), times=((0.0, 3.0),)):
    ids = torch.tensor([ids])
    mask = None if mask is None else torch.tensor([mask])
    return mrope_positions(ids, mask, torch.tensor(grid), None, list(times), video_token_id=VIDEO,
                           image_token_id=IMAGE, spatial_merge_size=2, tokens_per_second=2)


def test_original_positions_by_hand():
    # 3 text tokens, a video of 2 temporal patches of 2x2 merged patches (8 tokens), 2 text tokens
    pos, delta = positions([TEXT] * 3 + [VIDEO] * 8 + [TEXT] * 2)
    t = [0, 1, 2] + [3] * 4 + [3 + 6] * 4 + [10, 11]  # patch 1 at 3.0 s * 2 tokens/s = 6; text goes on at max + 1
    h = [0, 1, 2] + [3, 3, 4, 4] * 2 + [10, 11]
    w = [0, 1, 2] + [3, 4, 3, 4] * 2 + [10, 11]
    assert pos[:, 0].tolist() == [t, h, w]
    assert delta.tolist() == [[12 - 13]]  # largest position + 1 minus the sequence length


def test_left_padding_is_skipped():
    ids = [TEXT] * 3 + [VIDEO] * 8 + [TEXT] * 2
    plain, delta = positions(ids)
    padded, padded_delta = positions([0, 0] + ids, mask=[0, 0] + [1] * len(ids))
    assert padded[:, 0, 2:].tolist() == plain[:, 0].tolist() and padded[:, 0, :2].tolist() == [[1, 1]] * 3
    assert padded_delta.tolist() == delta.tolist()  # counted against the unpadded tokens


def test_the_two_algorithms_differ_only_after_a_video():
    """`rope_positions` (transformers 5.24) and `mrope_positions` (the original) place text before a video and the
    video itself alike (evenly spaced patches: one spacing says it all); text after a video goes on at
    start + max(h, w) in the one and at the largest position + 1 in the other."""
    ids = [TEXT] * 3 + [VIDEO] * 8 + [TEXT] * 2
    original, _ = positions(ids)
    newer = rope_positions(torch.tensor([ids]), None, torch.tensor([(2, 4, 4)]), torch.tensor([3.0]),
                           video_token_id=VIDEO, spatial_merge_size=2, tokens_per_second=2)
    assert torch.equal(original[:, :, :11], newer[:, :, :11])
    assert original[:, 0, 11:].tolist() == [[10, 11]] * 3  # after the temporal index 3 + 6: max + 1
    assert newer[:, 0, 11:].tolist() == [[5, 6]] * 3  # 3 + max(2, 2)


def test_patch_times():
    ts = [10.0, 11.5, 17.0, 19.0, 30.0]
    assert patch_times(ts, 2, "exact") == [0.0, 7.0, 20.0]  # each patch at its first frame, from the first frame
    assert patch_times(ts, 2, "tspo") == [0.0, 1.0, 2.0]  # TSPO: as if sampled at 2 fps


def test_lmms_eval_pixel_cap():
    assert lmms_eval_max_pixels(64) == 768 * 28 * 28  # qwen-vl-utils' per-frame cap binds
    assert lmms_eval_max_pixels(2000) == int(256 * 28 * 28 * 1.05)  # total budget / frames is below 1.05 * min
    total = 128000 * 28 * 28 * 0.9
    assert lmms_eval_max_pixels(400) == int(total / 400 * 2)


@pytest.fixture(scope="module")
def tiny():
    return Qwen25VL(random_init=True, config="qwen2.5-vl-tiny", max_new_tokens=4)


def test_random_init_tiny_generates_and_batches(tiny):
    rng = np.random.default_rng(0)
    requests = [(rng.integers(0, 256, (n, 56, 84, 3), dtype=np.uint8), list(np.arange(n) * 3.0 + 1), f"Q{n}?")
                for n in (4, 4, 6)]
    one_by_one = [tiny.generate(*r) for r in requests]
    assert tiny.generate_batch(requests) == one_by_one  # left padding and per-request timing change nothing
    assert tiny.config()["weights"] == "random-init:qwen2.5-vl-tiny:seed0"
    assert sum(p.numel() for p in tiny.model.parameters()) < 2_000_000


def test_the_model_uses_the_installed_positions(tiny):
    frames = np.random.default_rng(1).integers(0, 256, (4, 56, 84, 3), dtype=np.uint8)
    inputs = tiny.inputs([(frames, [0.0, 1.0, 8.0, 9.0], "Q?")])
    expected_pos, expected_delta = mrope_positions(
        inputs["input_ids"], inputs["attention_mask"], inputs["video_grid_thw"], None, [[0.0, 8.0]],
        video_token_id=tiny.model.config.video_token_id, image_token_id=tiny.model.config.image_token_id,
        spatial_merge_size=2, tokens_per_second=2)
    with torch.inference_mode():
        tiny.model(**inputs)
    assert tiny.model.model.rope_deltas.tolist() == expected_delta.tolist()  # no padding: conventions agree
    video = inputs["input_ids"][0] == tiny.model.config.video_token_id
    assert sorted(set(expected_pos[0, 0][video].tolist()))[1] - expected_pos[0, 0][video].min() == 16  # 8 s * 2/s
