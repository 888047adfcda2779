"""llava-video's fast path on CPU at toy size: batched answers equal one-by-one answers, the vision tower runs once
per distinct video, the runner's preprocessing hooks hand the model the very same pixels, and `harness bench` runs
both loops on it with the LLaVA-Video FLOP count."""
import pickle

import numpy as np
import pytest
import torch

from backbones.llava_video.vision import FramePrep, preprocess
from harness.registry import BACKBONES


@pytest.fixture(scope="module")
def tiny():
    return BACKBONES.create("llava-video", random_init=True, config="tiny", max_new_tokens=4)


def _requests(seed=0):
    rng = np.random.default_rng(seed)
    shared = rng.integers(0, 256, (4, 48, 64, 3), dtype=np.uint8)
    other = rng.integers(0, 256, (3, 40, 50, 3), dtype=np.uint8)
    # two questions on one frames object (as the runner hands them), prompts of different lengths: real padding
    return [(shared, [0.0, 1.0, 2.0, 3.0], "Which colour?"),
            (shared, [0.0, 1.0, 2.0, 3.0], "A much longer question about the whole video, with options A B C D?"),
            (other, [0.0, 0.5, 1.0], "Q3")]


def _last_logits(backbone, requests):
    embeds, mask = backbone.batch_embeddings(backbone.batch_inputs(requests))
    with torch.inference_mode():
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return backbone.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).logits[:, -1]


def test_batch_answers_equal_one_by_one(tiny):
    requests = _requests()
    assert tiny.generate_batch(requests) == [tiny.generate(*r) for r in requests]
    batched = _last_logits(tiny, requests)
    for row, request in enumerate(requests):
        alone = _last_logits(tiny, [request])[0]
        assert torch.allclose(batched[row], alone, atol=1e-5, rtol=1e-5)


def test_questions_sharing_a_video_share_one_prefill_of_its_prefix(tiny):
    rng = np.random.default_rng(7)
    a = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (3, 64, 80, 3), dtype=np.uint8)
    requests = [(a, [0, 1, 2, 3], "Which object comes first? A. red B. blue"), (b, [0, 2, 4], "Count?"),
                (a, [0, 1, 2, 3], "How many? A. 1 B. 2 C. 3"), (b, [0, 2, 4], "Last? A. x B. y"),
                (a, [0, 1, 2, 3], "Q")]
    one_by_one = [tiny.generate(*r) for r in requests]
    assert len(set(one_by_one)) >= 3  # answers depend on the input: the equality below means something
    calls = []
    hook = tiny.model.model.language_model.register_forward_pre_hook(
        lambda m, args, kw: calls.append(tuple(kw["inputs_embeds"].shape[:2])), with_kwargs=True)
    try:
        assert tiny.generate_batch(requests) == one_by_one
    finally:
        hook.remove()
    (videos, prefix), (questions, own) = calls[:2]
    assert videos == 2 and questions == 5 and own < prefix  # each video's prefix once, then each question's tokens
    batch = tiny.batch_inputs(requests)
    with torch.inference_mode():
        shared = tiny.shared_prefill(batch, tiny.video_embeddings(batch))
    assert [c + n for c, n in zip(shared["cached_tokens"], shared["own_tokens"])] == \
        [len(ids) for ids in batch["input_ids"]]
    for ids, n in zip(batch["input_ids"], shared["own_tokens"]):  # every visual token is in the cached prefix
        assert tiny.video_token_id in ids and tiny.video_token_id not in ids[-n:]
    assert tiny.shared_prefill(tiny.batch_inputs(requests[:2]), None) is None  # no video shared


def test_batch_is_left_padded_and_shares_the_vision_tower(tiny):
    requests = _requests(1)
    batch = tiny.batch_inputs(requests)
    assert batch["owner"] == [0, 0, 1] and len(batch["pixel_values"]) == 2
    calls = []
    hook = tiny.model.model.vision_tower.register_forward_hook(lambda m, i, o: calls.append(1))
    try:
        embeds, mask = tiny.batch_embeddings(batch)
    finally:
        hook.remove()
    assert len(calls) == 2  # two distinct videos, three questions
    lengths = [len(ids) for ids in batch["input_ids"]]
    assert mask.shape == (3, max(lengths)) and mask.sum(1).tolist() == lengths
    for row, n in enumerate(lengths):  # padding on the left only
        assert mask[row, :mask.shape[1] - n].sum() == 0 and mask[row, mask.shape[1] - n:].all()
    # each row's embeddings are those of the question alone
    for row, request in enumerate(requests):
        alone, _ = tiny.batch_embeddings(tiny.batch_inputs([request]))
        assert torch.equal(embeds[row, embeds.shape[1] - lengths[row]:], alone[0])


def test_threaded_preprocessing_is_the_same_pixels():
    frames = np.random.default_rng(2).integers(0, 256, (7, 60, 90, 3), dtype=np.uint8)
    one = preprocess(frames, 70)
    assert np.array_equal(preprocess(frames, 70, threads=3), one)
    assert np.array_equal(preprocess(frames, 70, threads=16), one)


def test_prepared_frames_change_no_logits_or_answers(tiny):
    requests = _requests(3)
    prep = tiny.frame_preparer([4, 3])
    prep = pickle.loads(pickle.dumps(prep))  # the runner may hand it to another process
    standins = {id(f): tiny.prepared_frames(prep(f)) for f, _, _ in requests}
    swapped = [(standins[id(f)], ts, p) for f, ts, p in requests]
    assert swapped[0][0] is swapped[1][0] and swapped[0][0].shape == (4, 1, 1, 3)
    assert torch.equal(tiny._pixel_values(swapped[0][0]), tiny._pixel_values(requests[0][0]))
    assert torch.equal(_last_logits(tiny, swapped), _last_logits(tiny, requests))
    assert tiny.generate_batch(swapped) == tiny.generate_batch(requests)
    assert tiny.generate(*swapped[2]) == tiny.generate(*requests[2])


def test_half_precision_preparation_is_the_towers_own_cast():
    frames = np.random.default_rng(4).integers(0, 256, (2, 50, 70, 3), dtype=np.uint8)
    out = FramePrep(70, (0.5,) * 3, (0.5,) * 3, "bfloat16", threads=2)(frames)
    pixels = torch.from_numpy(out["pixels"]).view(torch.bfloat16)
    assert torch.equal(pixels, torch.from_numpy(preprocess(frames, 70)).to(torch.bfloat16))


def test_prepared_frames_with_other_settings_are_refused(tiny):
    from harness.errors import HarnessError

    frames = np.zeros((2, 30, 30, 3), np.uint8)
    standin = tiny.prepared_frames(FramePrep(84, (0.5,) * 3, (0.5,) * 3, "float32")(frames))
    with pytest.raises(HarnessError, match="other settings"):
        tiny.generate(standin, [0.0, 1.0], "Q?")


def test_llava_prefill_flops_of_the_7b_architecture():
    from backbones.llava_video.build import byte_tokenizer, preset_config
    from backbones.llava_video.flops import llava_prefill_flops

    cfg = preset_config("llava-video-7b", byte_tokenizer())
    n = 13440 + 400
    flops = llava_prefill_flops(cfg, [n], [64])
    # SigLIP-so400m (26 layers) on 729 patches: ~0.67 TFLOP a frame with the projector
    per_frame = 2 * 729 * 588 * 1152 + 2 * 729 * 26 * (4 * 1152 ** 2 + 2 * 1152 * 4304) \
        + 4 * 729 ** 2 * 1152 * 26 + 2 * 729 * (1152 * 3584 + 3584 ** 2)
    assert flops["vision"] == pytest.approx(64 * per_frame)
    assert 0.6e12 < per_frame < 0.7e12
    assert flops["language"] == pytest.approx(2 * 6.53e9 * n + 2 * n * n * 28 * 3584 + 2 * 3584 * 152064, rel=0.01)
    three = llava_prefill_flops(cfg, [n] * 3, [64])
    assert three["language"] == pytest.approx(3 * flops["language"]) and three["vision"] == flops["vision"]


def test_bench_runs_llava_video(tmp_path):
    from harness.bench.config import BenchConfig
    from harness.bench.run_bench import run_bench

    cfg = BenchConfig(videos=2, minutes=0.05, height=96, width=128, fps=10, gop=10, questions=3, frames=4,
                      backbone="llava-video", backbone_args={"random_init": True, "config": "tiny",
                                                             "max_new_tokens": 2},
                      workers=1, batch_size=3, decode_backend="pyav", video_dir=str(tmp_path / "videos"),
                      out=str(tmp_path / "results"), prefill_repeats=1)
    report = run_bench(cfg, log=lambda line: None)
    assert report["answers"] == {"compared": 6, "identical": 6, "differing": []}
    assert report["harness"]["n_errors"] == 0 and report["harness"]["pipeline"]["prepare"] > 0
    pre, ref = report["prefill"]["harness"], report["prefill"]["reference"]
    assert len(pre["shared_prefix_tokens"]) == 1  # the three questions' common prefix through the model once
    from backbones.llava_video.build import preset_config, byte_tokenizer
    from harness.util.flops import language_flops

    unshared = language_flops(preset_config("tiny", byte_tokenizer()).text_config, pre["tokens"])
    assert ref["flops"]["language"] < pre["flops"]["language"] < unshared
    pre = report["prefill"]["harness"]
    assert pre["batch"] == 3 and pre["vision_videos"] == 1 and pre["flops"]["vision"] > 0
    assert report["prefill"]["reference"]["vision_videos"] == 1
    files = sorted(p.name for p in (tmp_path / "results").iterdir())
    stem = files[0].rsplit(".", 1)[0]
    assert stem.endswith("-llava-video") and files == [f"{stem}.json", f"{stem}.md"]
    assert "llava_prefill_flops" in (tmp_path / "results" / f"{stem}.md").read_text()


def test_long_questions_go_through_the_language_model_one_at_a_time(tiny):
    """lm_batch_tokens: above it each question gets its own (unpadded) language-model pass; vision still runs once
    per distinct video, and the answers are those one by one."""
    requests = _requests(5)
    expected = [tiny.generate(*r) for r in requests]
    single = BACKBONES.create("llava-video", random_init=True, config="tiny", max_new_tokens=4, lm_batch_tokens=10)
    batch = single.batch_inputs(requests)
    assert single.language_groups(batch) == [[0], [1], [2]]
    assert tiny.language_groups(batch) == [[0, 1, 2]]
    roomy = BACKBONES.create("llava-video", random_init=True, config="tiny", lm_batch_tokens=10 ** 6)
    assert roomy.language_groups(batch) == [[0, 1, 2]]
    calls = []
    hook = single.model.model.vision_tower.register_forward_hook(lambda m, i, o: calls.append(1))
    try:
        assert single.generate_batch(requests) == expected
    finally:
        hook.remove()
    assert len(calls) == 2
    assert "lm_batch_tokens" not in single.config()  # speed only: not part of the run identity
