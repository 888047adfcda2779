"""Training internals of the mini Qwen2.5-VL (harness/miniworld/qwen/): the explicit rope positions, the batched
vision attention and the losses, on a tiny random model."""
from __future__ import annotations

import numpy as np
import pytest

TINY = dict(text_hidden=32, text_layers=2, text_heads=1, text_intermediate=64, vision_hidden=32, vision_depth=1,
            vision_heads=2, vision_intermediate=64, merges=50)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(model, processor, a training batch with its model inputs) of a tiny random mini Qwen."""
    from harness.miniworld.qwen.batches import Recipe, patchify, training_batch
    from harness.miniworld.qwen.build import Sizes, build_mini_qwen
    from harness.miniworld.qwen.world import pooled_questions

    model, processor = build_mini_qwen(tmp_path_factory.mktemp("tiny"), sizes=Sizes(**TINY), corpus_videos=2)
    questions = pooled_questions("train", 2, fillers=8)
    pools = list({id(q[0]): q[0] for q in questions}.values())
    batch = training_batch(processor, pools, questions, Recipe(describe=0.3, no_evidence=0.3, real_timing=0.5), 8,
                           np.random.default_rng(1))
    inputs = dict(batch["inputs"])
    inputs["pixel_values_videos"] = patchify(processor, inputs.pop("frames"))
    return model, processor, batch, inputs


def test_rope_positions_match_the_installed_transformers(tiny):
    """Training passes positions explicitly; here they must be what the installed version computes (the backbone's
    rope="transformers"), padding and real timing included."""
    import torch

    model, _, batch, inputs = tiny
    want, _ = model.model.get_rope_index(inputs["input_ids"], image_grid_thw=None,
                                         video_grid_thw=inputs["video_grid_thw"],
                                         second_per_grid_ts=inputs["second_per_grid_ts"],
                                         attention_mask=inputs["attention_mask"],
                                         mm_token_type_ids=inputs["mm_token_type_ids"])
    assert (inputs["attention_mask"] == 0).any()  # right padding is covered
    assert torch.equal(batch["position_ids"], want)


def test_batched_vision_attention_is_the_same_and_removable(tiny):
    import torch

    from harness.miniworld.qwen.train import batched_vision_attention

    model, processor, batch, inputs = tiny
    with torch.no_grad():
        want = model(**inputs).logits
        restore = batched_vision_attention(model, processor, "cpu")
        assert restore, "the batched vision attention did not apply"
        got = model(**inputs).logits
    for r in restore:
        r()
    assert all("forward" not in blk.attn.__dict__ for blk in model.model.visual.blocks)
    assert torch.allclose(want, got, atol=1e-5)


def test_losses(tiny):
    """Option lines are found for question rows only; the probe's option and letter losses are finite; the answer
    loss is each row's mean token cross-entropy, except that a no-evidence row asks for equal odds over the letters
    at its first token and still learns the closing <|im_end|>."""
    import torch
    import torch.nn.functional as F

    from harness.miniworld.qwen.batches import option_letter_ids
    from harness.miniworld.qwen.train import OptionProbe, training_losses

    model, processor, batch, inputs = tiny
    ends, letters = batch["ends"], option_letter_ids(processor.tokenizer)
    asked = ends[:, 0] >= 0
    assert asked.any() and not asked.all()  # describe rows have no option lines
    newline = processor.tokenizer.convert_tokens_to_ids("\u010a")
    assert (inputs["input_ids"][torch.as_tensor(asked)].gather(1, torch.as_tensor(ends[asked])) == newline).all()
    probe = OptionProbe(model, processor.tokenizer)
    with torch.no_grad():
        loss, first, judged, lettered = training_losses(model, inputs, batch["start"], batch["lengths"],
                                                        batch["soft"], letters, probe, batch["correct"], ends,
                                                        batch["position_ids"])
        logp = F.log_softmax(model(**inputs, position_ids=batch["position_ids"]).logits.float(), -1)
    assert first.shape == (len(ends),) and all(torch.isfinite(x) and x > 0 for x in (loss, judged, lettered))
    ids, want = inputs["input_ids"], []
    for i, soft in enumerate(batch["soft"]):
        a, n = int(batch["start"][i]), int(batch["lengths"][i])
        tokens = [-logp[i, p - 1, ids[i, p]] for p in range(a, a + n)]
        if soft:
            assert n == 2 and processor.tokenizer.convert_ids_to_tokens(int(ids[i, a + 1])) == "<|im_end|>"
            tokens[0] = -logp[i, a - 1, letters].mean()
        want.append(torch.stack(tokens).mean())
    assert any(batch["soft"])
    assert torch.isclose(loss, torch.stack(want).mean(), atol=1e-5)


def test_crowded_selections_show_runs_of_evidence_and_other_needles():
    """Every evidence interval is shown, by one to four frames; the rest are other needle events or plain frames,
    about half each; k frames, all distinct grid times."""
    from harness.miniworld.qwen.world import crowded_times, inside

    candidates = np.arange(0.0, 300.0)
    evidence = [(20.5, 26.0), (100.0, 103.0)]  # 5 and 3 grid frames
    events = evidence + [(150.0, 156.0), (200.0, 202.0)]  # two needle events the question is not about
    rng = np.random.default_rng(0)
    runs, others = [], []
    for _ in range(400):
        times = crowded_times(evidence, events, candidates, 8, rng)
        assert len(times) == 8 and len(set(times)) == 8 and np.all(np.isin(times, candidates))
        per_interval = [int(inside(times, [iv]).sum()) for iv in evidence]
        assert all(1 <= n <= 4 for n in per_interval)
        runs.append(max(per_interval))
        rest = times[~inside(times, evidence)]
        others.append(inside(rest, events).sum() / len(rest))
    assert max(runs) == 4 and min(runs) == 1  # single frames and runs of one event both occur
    assert 0.35 < np.mean(others) < 0.65  # fillers: other needles about half the time


def test_crowded_selections_fit_k():
    """Three long evidence intervals ask for up to 12 frames; k = 4 still shows each one."""
    from harness.miniworld.qwen.world import crowded_times, inside

    evidence = [(10.0, 16.0), (40.0, 46.0), (70.0, 76.0)]
    rng = np.random.default_rng(1)
    for _ in range(50):
        times = crowded_times(evidence, evidence, np.arange(0.0, 100.0), 4, rng)
        assert len(times) == 4 and all(inside(times, [iv]).any() for iv in evidence)
