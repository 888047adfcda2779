"""Worker-process decoding (harness.video.prefetch), the runner's fast path (--workers, --batch-size) and the Qwen2.5-VL
speed-ups it turns on: same rows and answers as the sequential runner, errors per item, bounded prefetch."""
import functools
import json
import os
from pathlib import Path

import numpy as np
import pytest

from harness.config import RunConfig
from harness.video.decodejob import DecodeJob, decode_job
from harness.video.prefetch import Prefetcher, WorkError
from harness.run.runner import Run
from harness.util.synth import decode_index, write_index_clip


def _die_on_one(x):  # spawned workers import this module by name (pytest puts tests/ on sys.path)
    if x == 1:
        os._exit(3)
    return x * 10


@pytest.mark.parametrize("workers", [0, 2])
def test_results_in_order_and_errors_per_item(workers):
    with Prefetcher(int, workers=workers) as pool:
        out = list(pool.map(["1", "x", "3", "4"]))
    assert [item for item, _ in out] == ["1", "x", "3", "4"]
    assert [r for _, r in out if not isinstance(r, WorkError)] == [1, 3, 4]
    error = out[1][1]
    assert isinstance(error, WorkError) and error.kind == "ValueError" and "invalid literal" in error.message
    assert "\n" not in error.message


def test_large_arrays_come_back_intact_through_shared_memory():
    make = functools.partial(np.full, fill_value=7, dtype=np.uint8)
    with Prefetcher(make, workers=1) as pool:
        [(_, big), (_, small)] = list(pool.map([(512, 1024, 3), (4,)]))
    assert big.shape == (512, 1024, 3) and big.dtype == np.uint8 and (big == 7).all()
    assert small.tolist() == [7, 7, 7, 7]


def test_prefetch_is_bounded():
    drawn = []

    def items():
        for i in range(10):
            drawn.append(i)
            yield i

    with Prefetcher(abs, workers=1, depth=2) as pool:
        it = pool.map(items())
        next(it)
        assert len(drawn) <= 2  # never more than `depth` items ahead of the consumer
        assert [r for _, r in it] == list(range(1, 10))


def test_a_dead_worker_fails_only_its_item():
    with Prefetcher(_die_on_one, workers=1, depth=1) as pool:
        out = [r for _, r in pool.map([0, 1, 2])]
    assert out[0] == 0 and out[2] == 20
    assert isinstance(out[1], WorkError) and "died" in out[1].message


def test_none_job_means_nothing_to_do():
    with Prefetcher(int, workers=1) as pool:
        assert list(pool.map(["5", None], job=lambda x: x)) == [("5", 5), (None, None)]


def test_fork_is_refused():
    from harness.errors import HarnessError
    with pytest.raises(HarnessError, match="fork"):
        Prefetcher(int, start_method="fork")


def test_decode_job_decodes_each_selection_from_one_pass(tmp_path):
    path = tmp_path / "clip.mp4"
    write_index_clip(path, 40, 10, gop=8)
    selections = ((0, 5, 5, 39), (5, 10, 20))
    result = decode_job(DecodeJob(str(path), "pyav", selections))
    for sel in selections:
        assert [decode_index(f) for f in result["frames"][sel]] == list(sel)
    assert result["decode"] > 0
    with Prefetcher(decode_job, workers=1) as pool:
        [(_, missing)] = list(pool.map([DecodeJob(str(tmp_path / "nope.mp4"), "pyav", ((0,),))]))
    assert isinstance(missing, WorkError) and "not found" in missing.message


# -- the runner's fast path ----------------------------------------------------------------------------------------

def _rows(run_dir: Path) -> dict:
    return {r["sample_id"]: r for r in map(json.loads, (run_dir / "predictions.jsonl").read_text().splitlines())}


def _cfg(out, **kw):
    return RunConfig(**{"task": "smoke", "backbone": "colour-probe", "task_args": {"videos": 5, "duration": 12.0},
                        "samplers": ["uniform", "uniform:variant=segment-centre"], "out": str(out), **kw})


@pytest.mark.parametrize("workers,batch", [(0, 3), (2, 1), (2, 4)])
def test_fast_runner_writes_the_same_rows_as_the_sequential_one(tmp_path, workers, batch):
    plain = Run(_cfg(tmp_path / "plain"), progress=False).execute()
    fast = Run(_cfg(tmp_path / "fast", workers=workers, batch_size=batch), progress=False).execute()
    for a, b in zip(plain, fast):
        assert a.name == b.name  # workers and batch size are not part of the run identity
        ra, rb = _rows(a), _rows(b)
        assert sorted(ra) == sorted(rb)
        for k in ra:
            assert ra[k]["selection"] == rb[k]["selection"]
            assert ra[k]["prediction"]["raw_text"] == rb[k]["prediction"]["raw_text"]
            assert rb[k]["prediction"]["timings"]["batch"] >= 1
        config = json.loads((b / "config.json").read_text())
        assert config["run"]["workers"] == workers and config["run"]["batch_size"] == batch


def test_fast_runner_error_rows_and_resume(tmp_path):
    videos = tmp_path / "videos"
    cfg = _cfg(tmp_path / "runs", workers=1, batch_size=2,
               task_args={"videos": 4, "duration": 12.0, "root": str(videos)})
    Run(cfg).task.samples()  # generate
    (videos / "smoke_002.mp4").write_bytes(b"not a video")
    dirs = Run(cfg, progress=False).execute()
    for d in dirs:
        rows = _rows(d)
        assert len(rows) == 4
        assert rows["smoke_002"]["prediction"]["parse_status"] == "error"
        assert all(r["prediction"]["parse_status"] != "error" for k, r in rows.items() if k != "smoke_002")
    again = Run(cfg, progress=False)
    again.execute()
    assert again.questions == 0  # resume: every sample has its row (the error row included), nothing runs twice
    for d in dirs:
        assert len((d / "predictions.jsonl").read_text().splitlines()) == 4


# -- Qwen2.5-VL speed-ups: same arithmetic ---------------------------------------------------------------------------

def test_qwen_accelerate_keeps_logits_and_answers():
    import torch

    from harness.registry import BACKBONES

    backbone = BACKBONES.create("mini-qwen2.5-vl", max_new_tokens=6)
    frames = np.random.default_rng(0).integers(0, 256, (8, 120, 160, 3), dtype=np.uint8)
    ts = [0.5 * i for i in range(8)]
    prompts = ["Which shape is shown?", "What colour is the first object, and where is it?", "Count them."]
    requests = [(frames, ts, p) for p in prompts]
    one_by_one = [backbone.generate(*r) for r in requests]
    stock = backbone.inputs(requests)
    with torch.inference_mode():
        ref = backbone.model(**stock).logits
    undo = backbone.accelerate()
    try:
        fast = backbone.inputs(requests)
        for key in stock:
            assert torch.equal(stock[key], fast[key]), key  # preprocessing once gives the same pixels
        with torch.inference_mode():
            got = backbone.model(**fast).logits
        assert torch.allclose(got, ref, atol=1e-5, rtol=1e-5)
        assert backbone.generate_batch(requests) == one_by_one
    finally:
        undo()
    assert type(backbone.processor.video_processor).__name__ != "Shared"


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_qwen_frames_prepared_in_a_worker_give_the_same_inputs_and_answers(dtype):
    import pickle

    import torch

    from harness.registry import BACKBONES

    backbone = BACKBONES.create("qwen2.5-vl", random_init=True, config="qwen2.5-vl-tiny", max_new_tokens=4,
                                dtype=dtype)
    frames = np.random.default_rng(1).integers(0, 256, (8, 96, 128, 3), dtype=np.uint8)
    ts = [0.5 * i for i in range(8)]
    prompts = ["a question", "another, longer question about the video"]
    stock = backbone.inputs([(frames, ts, p) for p in prompts])
    answers = [backbone.generate(frames, ts, p) for p in prompts]
    undo = backbone.accelerate()
    try:
        prep = pickle.loads(pickle.dumps(backbone.frame_preparer([8])))  # as a spawned worker gets it
        standin = backbone.prepared_frames(prep(frames))
        fast = backbone.inputs([(standin, ts, p) for p in prompts])
        for key in stock:
            want = stock[key].to(fast[key].dtype) if key == "pixel_values_videos" else stock[key]
            assert torch.equal(want, fast[key]), key
        assert backbone.generate_batch([(standin, ts, p) for p in prompts]) == answers
    finally:
        undo()


# -- Qwen2.5-VL shared prefix: one language-model prefill per distinct video -----------------------------------------

def test_prefix_plan_shares_only_what_every_question_of_a_video_has():
    from backbones.prefix import prefix_plan

    V = 99  # a vision token id
    ids = [[1, 2, V, V, 3, 4, 5], [1, 2, V, V, 3, 6], [1, 2, V, V, 3], [7, V, 8, 9]]
    assert prefix_plan(ids, [0, 0, 0, 3], {V}) == {0: 4, 3: 3}  # one token short of the shortest question
    assert prefix_plan([[1, V, 2], [1, V, 2]], [0, 0], {V}) == {0: 2}  # identical questions keep their last token
    assert prefix_plan([[1, V, 2, V], [1, V, 3, V]], [0, 0], {V}) is None  # a vision token after the split


def _tiny_qwen(**kw):
    from harness.registry import BACKBONES

    return BACKBONES.create("qwen2.5-vl", random_init=True, config="qwen2.5-vl-tiny", max_new_tokens=6,
                            min_pixels=56 * 56, max_pixels=112 * 112, **kw)


def test_shared_prefix_generation_answers_as_one_by_one_with_one_prefill_per_video():
    from backbones.qwen2_5_vl.fast import generate_shared_prefix

    backbone = _tiny_qwen()
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (8, 128, 128, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (6, 96, 128, 3), dtype=np.uint8)
    c = rng.integers(0, 256, (4, 112, 112, 3), dtype=np.uint8)
    ta, tb, tc = [0, 1.5, 3, 7, 8, 20, 21, 40], [0, 1, 2, 3, 4, 5], [3, 4, 9, 12]  # uneven times: exact timing
    requests = [(a, ta, "Which object comes first? A. red B. blue"), (b, tb, "Count?"),
                (a, ta, "How many times does the green square appear? A. 1 B. 2 C. 3"),
                (b, tb, "Which comes last? A. x B. y C. z D. w"), (a, ta, "Q"), (c, tc, "Where?")]
    one_by_one = [backbone.generate(*r) for r in requests]
    assert len(set(one_by_one)) >= 4  # the answers depend on the inputs: equality below means something

    calls = {"language": [], "vision": []}
    lm, visual = backbone.model.model.language_model, backbone.model.model.visual

    def language(module, args, kwargs):
        calls["language"].append(tuple(kwargs["inputs_embeds"].shape[:2]))

    hooks = [lm.register_forward_pre_hook(language, with_kwargs=True),
             visual.register_forward_pre_hook(lambda m, a, kw: calls["vision"].append(len(kw["grid_thw"])),
                                              with_kwargs=True)]
    try:
        assert generate_shared_prefix(backbone, requests) == one_by_one
    finally:
        for h in hooks:
            h.remove()
    assert calls["vision"] == [3]  # each distinct video through the tower once
    (rows, prefix), (questions, suffix) = calls["language"][:2]
    assert rows == 3 and questions == 6  # then one row per question, over its own tokens only
    assert suffix < prefix  # (the video's tokens are in the prefix)
    assert len(calls["language"]) <= 1 + backbone.max_new_tokens  # then one token at a time
    video = backbone.model.config.video_token_id
    assert backbone.last_visual_tokens == (backbone.inputs(requests)["input_ids"] == video).sum(-1).tolist()


def test_shared_prefix_declines_what_it_cannot_reproduce():
    from backbones.qwen2_5_vl.fast import generate_shared_prefix

    frames = np.random.default_rng(0).integers(0, 256, (4, 112, 112, 3), dtype=np.uint8)
    shared = [(frames, [0, 1, 2, 3], "one"), (frames, [0, 1, 2, 3], "two")]
    # rope=transformers: prompt text and generated tokens follow different offsets in transformers 5.x
    assert generate_shared_prefix(_tiny_qwen(rope="transformers"), shared) is None
    # no video shared (other frames, or the same frames at other times)
    assert generate_shared_prefix(_tiny_qwen(), [shared[0], (frames.copy(), [0, 1, 2, 3], "two")]) is None
    assert generate_shared_prefix(_tiny_qwen(), [shared[0], (frames, [0, 1, 2, 4], "two")]) is None


def test_fast_runner_with_shared_prefix_writes_the_sequential_answers(tmp_path, monkeypatch):
    import backbones.qwen2_5_vl.fast as fast_module

    shared = []
    original = fast_module.generate_shared_prefix
    monkeypatch.setattr(fast_module, "generate_shared_prefix",
                        lambda b, r: shared.append(original(b, r)) or shared[-1])
    needle = {"videos": 2, "min_duration": 40.0, "max_duration": 50.0, "root": str(tmp_path / "videos")}
    args = {"random_init": True, "config": "qwen2.5-vl-tiny", "max_new_tokens": 3, "min_pixels": 3136,
            "max_pixels": 12544}

    def cfg(out, **kw):
        return RunConfig(task="needle", task_args=needle, backbone="qwen2.5-vl", backbone_args=args,
                         samplers=["uniform"], frames=4, out=str(tmp_path / out), **kw)

    [plain] = Run(cfg("plain", workers=0), progress=False).execute()  # the sequential executor
    [fast] = Run(cfg("fast", batch_size=4), progress=False).execute()
    ra, rb = _rows(plain), _rows(fast)
    assert len(ra) == 8 and sorted(ra) == sorted(rb)
    assert len({r["prediction"]["raw_text"] for r in ra.values()}) > 1
    for k in ra:
        assert rb[k]["prediction"]["raw_text"] == ra[k]["prediction"]["raw_text"]
        assert rb[k]["prediction"]["timings"]["batch"] == 4  # a video's four questions answered together
        assert rb[k]["visual_tokens"] == ra[k]["visual_tokens"] > 0
    assert len(shared) == 2 and all(texts is not None for texts in shared)  # both videos went the shared way
