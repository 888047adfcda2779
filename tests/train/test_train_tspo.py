"""TSPO trainer (harness/train). Expected values are computed by hand in the comments, or independently (brute-force
enumeration, Monte Carlo, a second run); the end-to-end runs use a tiny random CLIP, the generated `smoke` task and a
deterministic fake backbone that answers from the frames it is shown, so rewards depend on the selection."""
from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from backbones.base import Backbone
from harness.errors import HarnessError
from harness.registry import SAMPLERS, TASKS
from harness.train.config import TSPOTrainConfig
from harness.train.data import TaskSource, make_source
from harness.train.episode import FeatureEnv, mask_intervals
from harness.train.objective import (coverage_reward, group_advantages, gumbel_noise, gumbel_topk, lr_factor,
                                     official_logprob, plackett_luce_logprob, policy_loss, tau_at, temporal_reward)
from harness.train.rundir import read_log
from harness.train.tspo import Trainer, train_tspo
from harness.train.tspo10k import JsonlSource, parse_question, read_tspo_jsonl, tspo_train_grid
from samplers.tspo.weights import load_agent, read_selector_state

REPO = Path(__file__).resolve().parents[2]
SMOKE_COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (40, 60, 230),
                 "yellow": (230, 220, 30), "magenta": (220, 40, 220), "cyan": (30, 210, 220)}


class FrameReader(Backbone):
    """Answers the smoke question from the frames: the colour of the saturated square if a frame shows one, else
    option A. Holds a torch module so the test can check the trainer leaves backbone weights alone."""

    name = "frame-reader"

    def __init__(self):
        self.head = torch.nn.Linear(3, 4)
        self.calls: list[int] = []

    def generate(self, frames, timestamps, prompt):
        return self.generate_batch([(frames, timestamps, prompt)])[0]

    def generate_batch(self, requests):
        self.calls.append(len(requests))
        out = []
        for frames, _, prompt in requests:
            options = dict(re.findall(r"^([A-D])\. (\w+)$", prompt, re.M))
            x = np.asarray(frames, np.float32)
            hi, lo = x.max(-1), x.min(-1)
            saturated = (hi - lo) / np.maximum(hi, 1) > 0.6
            letter = "A"
            if saturated.sum() > 40:
                rgb = x[saturated].mean(0)
                colour = min(SMOKE_COLOURS, key=lambda c: np.sum((np.asarray(SMOKE_COLOURS[c]) - rgb) ** 2))
                letter = next((k for k, v in options.items() if v == colour), "A")
            out.append(letter)
        return out


def make_setup(root: Path):
    """(tiny CLIP folder, smoke task source) under root; the same files in every process that calls it."""
    from harness.miniworld.tiny import build_tiny_clip

    clip = root / "clip"
    if not (clip / "config.json").exists():
        build_tiny_clip(clip, seed=0)
    task = TASKS.create("smoke", videos=4, duration=20.0, seed=3, root=str(root / "smoke"))
    return clip, TaskSource(task)


def config(root: Path, out: str, **kw) -> TSPOTrainConfig:
    base = dict(out=str(root / out), encoder=str(root / "clip"), frames=4, group_size=4, grad_accum=2,
                max_steps=4, save_every=2, watch_every=2, cache_dir=str(root / "cache"), progress=False,
                tensorboard=False, seed=7, init_std=0.2)
    base.update(kw)
    return TSPOTrainConfig(**base)


@contextlib.contextmanager
def one_thread():
    """One intra-op thread, as in torchrun's processes (OMP_NUM_THREADS=1): float reductions then run in the same
    order in every run compared. (The bias of the keys gets a gradient that is pure rounding noise, since a shift
    of every key score leaves the softmax unchanged, and AdamW turns that noise into lr-sized steps, so runs with
    different thread counts drift apart in that tensor.)"""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("tspo-train")
    clip, source = make_setup(root)
    source.items()  # writes the videos
    return root


@pytest.fixture(scope="module")
def reference_run(world):
    """An uninterrupted 4-step run (one process, 2 questions per step)."""
    clip, source = make_setup(world)
    backbone = FrameReader()
    before = {k: v.clone() for k, v in backbone.head.state_dict().items()}
    with one_thread():
        run = train_tspo(config(world, "ref"), backbone=backbone, source=source)
    return run, backbone, before


# ---------------------------------------------------------------------------------------------------------------
# The algorithm on hand-computed cases


def test_group_advantages_by_hand():
    # r = [1, 0, 0, 1]: mean 0.5; unbiased std = sqrt(4 * 0.25 / 3) = sqrt(1/3) = 0.5773502692
    a = group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]))
    d = 0.5 / (math.sqrt(1 / 3) + 1e-4)
    assert torch.allclose(a, torch.tensor([d, -d, -d, d], dtype=torch.float64), atol=1e-12)
    # r = [1.5, 0.5, 1]: mean 1, std sqrt((0.25 + 0.25 + 0) / 2) = 0.5 -> (0.5, -0.5, 0) / 0.5001
    a = group_advantages(torch.tensor([1.5, 0.5, 1.0]))
    assert torch.allclose(a, torch.tensor([0.5, -0.5, 0.0], dtype=torch.float64) / 0.5001, atol=1e-12)
    # equal rewards: no signal, no NaN
    assert torch.equal(group_advantages(torch.tensor([2.0, 2.0, 2.0])), torch.zeros(3, dtype=torch.float64))


def test_temporal_reward_by_hand():
    mask = [False, True, True, False, False, True]
    r = temporal_reward(mask, [[1, 2], [0, 3], [2, 5], [1, 4]])
    assert r.tolist() == [1.0, 0.0, 1.0, 0.5]


def test_coverage_reward_by_hand():
    # intervals {1, 2}, {5}, {7, 8, 9}: a frame in one interval counts once, however many are there
    mask = [False, True, True, False, False, True, False, True, True, True]
    r = coverage_reward(mask, [[1, 2], [0, 3], [2, 5], [1, 5, 9], [7, 8, 9, 4]])
    assert r.tolist() == [1 / 3, 0.0, 2 / 3, 1.0, 1 / 3]
    # the official share prefers the frames piled into one interval
    assert temporal_reward(mask, [[7, 8, 9], [1, 5, 0]]).tolist() == [1.0, 2 / 3]
    assert coverage_reward(mask, [[7, 8, 9], [1, 5, 0]]).tolist() == [1 / 3, 2 / 3]
    assert coverage_reward([True, True, True], [[0], [2]]).tolist() == [1.0, 1.0]  # one interval to the end
    assert coverage_reward([False, False], [[0], [1]]).tolist() == [0.0, 0.0]


def test_official_loss_by_hand():
    # softmax(log [1, 2, 1]) = [1/4, 1/2, 1/4]
    logits = torch.log(torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)).requires_grad_()
    ordered = torch.tensor([[1, 0], [2, 0]])
    adv = torch.tensor([1.0, -1.0], dtype=torch.float64)
    # logp_1 = (ln 1/2 + ln 1/4) / 2; logp_2 = (ln 1/4 + ln 1/4) / 2 = ln 1/4
    assert torch.allclose(official_logprob(logits, ordered),
                          torch.tensor([(math.log(.5) + math.log(.25)) / 2, math.log(.25)], dtype=torch.float64))
    # loss = (1/2)(-logp_1 + logp_2) = (1/4)(ln 1/4 - ln 1/2) = (1/4) ln 1/2
    loss = policy_loss(logits, ordered, adv, "official")
    assert loss.item() == pytest.approx(0.25 * math.log(0.5), abs=1e-12)
    # d logp/d s_j = onehot - p: grad = (1/2)(-((e1 + e0)/2 - p) + ((e2 + e0)/2 - p)) = (1/4)(e2 - e1)
    loss.backward()
    assert torch.allclose(logits.grad, torch.tensor([0.0, -0.25, 0.25], dtype=torch.float64), atol=1e-12)


def test_plackett_luce_by_hand():
    logits = torch.log(torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)).requires_grad_()
    # P(1 then 0) = (2/4)(1/2) = 1/4; P(0 then 2) = (1/4)(1/3) = 1/12
    lp = plackett_luce_logprob(logits, torch.tensor([[1, 0], [0, 2]]))
    assert torch.allclose(lp, torch.tensor([math.log(1 / 4), math.log(1 / 12)], dtype=torch.float64), atol=1e-12)
    # -A * lp for A = [1, 0]; d/ds [s1 + s0 - lse(s) - lse(s0, s2)] = e1 + e0 - p - (1/2, 0, 1/2)
    #   = (1, 1, 0) - (1/4, 1/2, 1/4) - (1/2, 0, 1/2) = (1/4, 1/2, -3/4); loss = -(1/2) of that
    policy_loss(logits, torch.tensor([[1, 0], [0, 2]]), torch.tensor([1.0, 0.0]), "plackett-luce").backward()
    assert torch.allclose(logits.grad, torch.tensor([-0.125, -0.25, 0.375], dtype=torch.float64), atol=1e-12)


def _pl_bruteforce(scores, sequence) -> float:
    """The probability of drawing `sequence` one by one without replacement, p(i) ∝ exp(s_i) among the rest."""
    rest, p = list(range(len(scores))), 1.0
    for i in sequence:
        p *= math.exp(scores[i]) / sum(math.exp(scores[j]) for j in rest)
        rest.remove(i)
    return p


def test_plackett_luce_against_enumeration():
    scores = [0.3, -1.2, 2.0, 0.0, 0.7]
    sequences = list(itertools.permutations(range(5), 3))  # all 60 ordered 3-subsets
    lp = plackett_luce_logprob(torch.tensor(scores, dtype=torch.float64), torch.tensor(sequences))
    expected = [_pl_bruteforce(scores, s) for s in sequences]
    assert np.allclose(np.exp(lp.numpy()), expected, rtol=1e-12, atol=0)
    assert math.isclose(sum(expected), 1.0, rel_tol=1e-12)  # a distribution over ordered subsets


def test_gumbel_topk_samples_plackett_luce():
    # the rollout sampler's ordered draws follow Plackett-Luce: 40000 draws of 2 of 4, all 12 orders
    scores = torch.tensor([0.5, -0.3, 1.0, 0.0], dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    draws = gumbel_topk(scores, 2, gumbel_noise(40000, 4, generator))
    freq = {s: 0 for s in itertools.permutations(range(4), 2)}
    for a, b in draws.tolist():
        freq[(a, b)] += 1
    for s, count in freq.items():
        assert count / 40000 == pytest.approx(_pl_bruteforce(scores.tolist(), s), abs=0.01)


def test_schedules_by_hand():
    assert tau_at(0, 10) == pytest.approx(0.025)
    assert tau_at(5, 10) == pytest.approx(0.0175)
    assert tau_at(10, 10) == pytest.approx(0.01)
    assert [lr_factor(s, 4) for s in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]


def test_bad_config_is_one_line_error(tmp_path):
    for bad in (dict(group_size=1), dict(logprob="exact"), dict(tau_end=0.05), dict(init="nowhere/agent.pt"),
                dict(frames=0)):
        with pytest.raises(HarnessError) as e:
            TSPOTrainConfig(out=str(tmp_path), **bad).validate()
        assert "\n" not in str(e.value)


# ---------------------------------------------------------------------------------------------------------------
# Training on the smoke task


def test_gradients_reach_only_the_selector(world):
    clip, source = make_setup(world)
    backbone = FrameReader()
    trainer = Trainer(config(world, "grads"), backbone=backbone, source=source)
    encoder = trainer.env.scorer.model
    records = trainer.accumulate(0)
    assert len(records) == 2 and all("error" not in r for r in records)
    assert all(p.grad is None and not p.requires_grad for p in encoder.parameters())
    assert all(p.grad is None and not p.requires_grad for p in backbone.head.parameters())
    grads = {name: p.grad for name, p in trainer.agent.named_parameters()}
    assert set(grads) == set(dict(trainer.agent.named_parameters()))
    for name, g in grads.items():  # ffn_o is never used by the forward (official temporal_agent.py): zero gradient
        assert (g.abs().sum() == 0) == name.startswith("temporal.ffn_o"), name
    # rollouts are answered in one batched call per question, distinct frame sets only
    assert len(backbone.calls) == 2
    assert all(calls == r["unique_sets"] <= 4 for calls, r in zip(backbone.calls, records))


def test_coverage_reward_in_the_trainer(world):
    """--temporal-reward coverage: each rollout's temporal reward is the share of the question's ground-truth
    intervals its frames touch, and the total adds it to the accuracy."""
    _, source = make_setup(world)
    trainer = Trainer(config(world, "coverage", temporal_reward="coverage"), backbone=FrameReader(), source=source)
    records = trainer.accumulate(0)
    assert len(records) == 2
    for r in records:
        ep = trainer._episode(trainer.item_index(r["position"]), "haystack", r["position"])
        try:
            assert ep.mask is not None and ep.mask.any()
            assert r["temporal"] == coverage_reward(ep.mask, r["selections"]).tolist()
        finally:
            ep.close()
        assert r["total"] == pytest.approx([a + t for a, t in zip(r["accuracy"], r["temporal"])])
    with pytest.raises(HarnessError, match="temporal_reward"):
        config(world, "bad", temporal_reward="recall").validate()


def test_training_run_logs_and_export(world, reference_run):
    run, backbone, before = reference_run
    rows = read_log(run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert [r["lr"] for r in rows] == pytest.approx([5e-4, 3.75e-4, 2.5e-4, 1.25e-4])  # linear decay, no warm-up
    assert [r["tau"] for r in rows] == pytest.approx([0.025, 0.02125, 0.0175, 0.01375])  # 0.025 -> 0.01 over 4
    for r in rows:
        assert r["questions"] == 2 and r["skipped"] == 0
        assert set(r["reward"]) == {"accuracy", "temporal", "total"}
        assert r["reward"]["total"] == pytest.approx(r["reward"]["accuracy"] + r["reward"]["temporal"])
        assert set(r["advantage"]) >= {"mean", "std", "min", "max", "abs_mean"}
        assert abs(r["advantage"]["mean"]) < 1e-9  # normalised within each group
        assert set(r["selected"]) >= {"in_ground_truth", "unique_sets", "entropy"}
    rollouts = read_log(run, "rollouts.jsonl")
    assert len(rollouts) == 8 and all(len(r["selections"]) == 4 and len(r["selections"][0]) == 4 for r in rollouts)
    # the rewards follow the frames: a rollout that saw the square (temporal > 0) answers right, one that did not
    # answers "A" (right only when the colour is option A)
    for r in rollouts:
        for acc, tmp in zip(r["accuracy"], r["temporal"]):
            assert tmp == 0 or acc == 1.0
    watch = read_log(run, "watch.jsonl")
    assert [w["step"] for w in watch] == [0, 2, 4]
    # backbone untouched
    assert all(torch.equal(before[k], v) for k, v in backbone.head.state_dict().items())

    # export: TSPO-0.4B layout loadable by the sampler; weights = the final selector
    final = read_selector_state(run / "selector.safetensors")
    agent = load_agent(run / "agent")
    assert all(torch.equal(agent.state_dict()[k], final[k]) for k in final)
    sampler = SAMPLERS.create("tspo", agent=str(run / "agent"))
    assert sampler.encoder == str(run / "agent")
    from transformers import CLIPModel
    exported, original = CLIPModel.from_pretrained(run / "agent"), CLIPModel.from_pretrained(world / "clip")
    assert all(torch.equal(v, exported.state_dict()[k]) for k, v in original.state_dict().items())
    # the trained agent is not the initial one
    init = Trainer(config(world, "ref-init"), backbone=FrameReader(), source=make_setup(world)[1]).agent
    assert not torch.equal(init.state_dict()["mlp.0.weight"], final["mlp.0.weight"])

    from harness.train.plot import plot_run
    paths = plot_run(run, out=world / "plots", formats=("png",))
    assert sorted(p.name for p in paths) == ["reward.png", f"scores-{watch[0]['item']}.png"]


def test_resume_continues_the_same_trajectory(world, reference_run):
    run, _, _ = reference_run
    clip, source = make_setup(world)
    cfg = config(world, "resumed", stop_after=1)
    with one_thread():
        train_tspo(cfg, backbone=FrameReader(), source=source)
    out = Path(cfg.out)
    assert [r["step"] for r in read_log(out)] == [1]
    assert not (out / "selector.safetensors").exists()
    # a kill after step 2 was logged but before its checkpoint: the resume redoes step 2
    with open(out / "train.jsonl", "a") as f:
        f.write(json.dumps({"step": 2, "reward": {}}) + "\n" + '{"step": 3, "rew')
    cfg.stop_after = None
    with one_thread():
        train_tspo(cfg, backbone=FrameReader(), source=source)
    a, b = read_selector_state(run / "selector.safetensors"), read_selector_state(out / "selector.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(read_log(out)) == strip(read_log(run))
    assert read_log(out, "rollouts.jsonl") == read_log(run, "rollouts.jsonl")
    # the same folder with another configuration is refused
    with pytest.raises(HarnessError, match="different training configuration"):
        train_tspo(config(world, "resumed", lr=1e-3), backbone=FrameReader(), source=source)


def test_two_processes_equal_one(world, reference_run):
    run, _, _ = reference_run
    out = world / "ddp"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(Path(__file__).resolve()), str(world), "ddp"]
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    config_json = json.loads((out / "config.json").read_text())
    assert config_json["world_size"] == 2 and config_json["global_batch"] == 2
    a, b = read_selector_state(run / "selector.safetensors"), read_selector_state(out / "selector.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)  # gradients summed in the same order: bit-identical
    ra, rb = read_log(run, "rollouts.jsonl"), read_log(out, "rollouts.jsonl")
    assert [(r["item"], r["selections"], r["accuracy"]) for r in ra] == \
        [(r["item"], r["selections"], r["accuracy"]) for r in rb]
    for x, y in zip(read_log(run), read_log(out)):
        assert x["reward"] == y["reward"] and x["loss"] == pytest.approx(y["loss"], abs=1e-9)


# ---------------------------------------------------------------------------------------------------------------
# Data


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _row(video, kind="specific", answer="b", question="What colour is the square?"):
    return {"video": video, "type": kind, "solution": f"<answer>{answer}</answer>",
            "original_question": f"<image>\n{question}\nA. red\nB. green\nC. blue\nD. cyan\n"
                                 "Please respond with only the letter of the correct answer.",
            "original_answer": "B. green", "problem": "<image>\n" + question}


def test_question_parsing_fixes_the_official_split():
    # the official split at "\nA" would cut "What happens?\nAfter ..." after "What happens?"
    question, options, prompt = parse_question(
        "<image>\nWhat happens?\nAfter the dog runs, who follows?\n(A) cat\n(B) man\nPlease provide your answer "
        "by stating the letter followed by the full option.", "x:1")
    assert question == "What happens?\nAfter the dog runs, who follows?"
    assert options == ["cat", "man"]
    assert prompt.endswith("(B) man\nPlease answer with the option's letter from the given choices directly.")
    with pytest.raises(HarnessError, match="x:2: original_question has no option lines"):
        parse_question("<image>\nWhat?", "x:2")


def test_jsonl_errors_name_the_line(tmp_path, world):
    video = str(world / "smoke" / "smoke_000.mp4")
    cases = [({**_row(video), "type": "other"}, "type 'other'"),
             ({**_row(video), "solution": "<answer>f</answer>"}, "not one of the 4 option letters"),
             ({k: v for k, v in _row(video).items() if k != "solution"}, "missing field")]
    for row, message in cases:
        path = _write_jsonl(tmp_path / "d.jsonl", [_row(video), row])
        with pytest.raises(HarnessError, match=f"d.jsonl:2: .*{message}"):
            read_tspo_jsonl(path, None)
    path = _write_jsonl(tmp_path / "d.jsonl", [_row("nowhere.mp4")])
    with pytest.raises(HarnessError, match="1 of 1 training videos are missing"):
        read_tspo_jsonl(path, tmp_path)


def test_training_grid_rule():
    # 1 fps grid when it has 50..128 frames, else 128 uniform (official load_video)
    assert len(tspo_train_grid(100 * 30, 30.0, 128)) == 100
    short = tspo_train_grid(20 * 8, 8.0, 128)
    assert list(short.indices) == list(np.linspace(0, 159, 128).astype(int))
    assert len(tspo_train_grid(50 * 25, 25.0, 50)) == 50 and len(tspo_train_grid(300, 1.0, 50)) == 50


def test_haystack_episode(tmp_path, world):
    from harness.features.store import FeatureStore
    from harness.video.reader import decode_selection
    from harness.video.reader import open_video

    smoke = world / "smoke"
    # rows 0 and 1 share a video: neither may be the other's distractor
    rows = [_row("smoke_000.mp4"), _row("smoke_000.mp4", kind="general"), _row("smoke_001.mp4"),
            _row("smoke_002.mp4")]
    source = JsonlSource(_write_jsonl(tmp_path / "t.jsonl", rows), smoke)
    items = source.items()
    assert [it.kind for it in items] == ["specific", "general", "specific", "specific"]
    env = FeatureEnv(FeatureStore(world / "cache"), str(world / "clip"))
    ep = source.episode(items[0], env, np.random.default_rng(1), 16, 8)
    try:
        n_true = int(ep.mask.sum())
        assert len(ep.mask) == len(ep.features) == len(ep.scores) == len(ep.timestamps)
        assert n_true in (50, 100, 150, 200) and len(ep.mask) == n_true + 12 * 50 and ep.k == 16
        target = str((smoke / "smoke_000.mp4").resolve())
        with open_video(target) as reader:
            grid = tspo_train_grid(reader.meta.frame_count, reader.meta.fps, 128)
            target_feats = env.store.image_features(env.scorer, target, grid, reader)
            # true positions are the target's frames: equal features, equal pixels
            true_pos = np.flatnonzero(ep.mask)[:5]
            rows_ = [int(np.flatnonzero((target_feats == ep.features[p]).all(1))[0]) for p in true_pos]
            assert np.array_equal(ep.decode(true_pos), decode_selection(reader, np.asarray(grid.indices)[rows_]))
        # no distractor frame comes from the target video
        false_feats = ep.features[~ep.mask]
        assert not any((target_feats == f).all(1).any() for f in false_feats)
        assert ep.decode(np.flatnonzero(~ep.mask)[:3]).shape == (3, 96, 128, 3)
        assert mask_intervals(ep.mask, ep.timestamps)[0][0] == float(np.flatnonzero(ep.mask)[0])
    finally:
        ep.close()
    general = source.episode(items[1], env, np.random.default_rng(1), 16, 8)
    assert general.mask is None and general.k == 8 and len(general.features) == 128
    general.close()
    (tmp_path / "bad.mp4").write_bytes(b"\x00not a video" * 100)
    bad = JsonlSource(_write_jsonl(tmp_path / "bad.jsonl", [_row("bad.mp4", kind="general")]), tmp_path)
    with pytest.raises(HarnessError, match="bad.mp4"):  # an unreadable video is an error, never black frames
        bad.episode(bad.items()[0], env, np.random.default_rng(1), 16, 8)


def test_training_on_jsonl_haystacks(tmp_path, world):
    # specific rows (haystack, temporal reward) and general rows (none), the Plackett-Luce loss, and a row whose
    # video cannot be decoded: with on_error=skip it is logged and left out of its step
    smoke = world / "smoke"
    (smoke / "broken.mp4").write_bytes(b"\x00not a video" * 100)
    rows = [_row("smoke_000.mp4"), _row("smoke_001.mp4", kind="general"), _row("smoke_002.mp4"),
            _row("broken.mp4", kind="general")]
    path = _write_jsonl(tmp_path / "t.jsonl", rows)
    cfg = config(world, "jsonl", data=str(path), video_root=str(smoke), max_steps=2, logprob="plackett-luce",
                 on_error="skip", frames=8)
    with one_thread():
        run = train_tspo(cfg, backbone=FrameReader())
    (smoke / "broken.mp4").unlink()  # other tests draw distractors from this folder
    steps, rollouts = read_log(run), read_log(run, "rollouts.jsonl")
    assert sum(r["skipped"] for r in steps) == 1 and sum(r["questions"] for r in steps) == 3
    kinds = {r["item"]: r for r in rollouts if "error" not in r}
    for r in kinds.values():
        assert r["k"] == (8 if r["kind"] == "specific" else 4)  # general rows: K // 2, as official
        assert (r["temporal"] is None) == (r["kind"] == "general")
        assert r["T"] == (128 if r["kind"] == "general" else r["T"]) and (r["kind"] == "general" or r["T"] >= 650)
    assert [r["error"] for r in rollouts if "error" in r][0].count("broken.mp4") == 1
    assert (run / "agent" / "model.safetensors").is_file()


def test_needle_train_split_adapter(world):
    source = make_source("needle", {"videos": 1, "questions_per_video": 2, "min_duration": 30.0,
                                    "max_duration": 40.0, "root": str(world / "needle")})
    items = source.items()
    assert len(items) == 2 and all(it.sample.id.startswith("needle-train-") for it in items)
    env = FeatureEnv(__import__("harness.features.store", fromlist=["FeatureStore"]).FeatureStore(world / "cache"),
                     str(world / "clip"))
    ep = source.episode(items[0], env, np.random.default_rng(0), 8, 4)
    try:
        assert ep.mask is not None and 0 < ep.mask.sum() < len(ep.mask) and ep.k == 8
        assert ep.evidence == items[0].sample.evidence
    finally:
        ep.close()
    with pytest.raises(HarnessError, match="train split"):
        make_source("needle", {"split": "test"})


# ---------------------------------------------------------------------------------------------------------------
# Child process of test_two_processes_equal_one (torchrun runs this file as a script)

if __name__ == "__main__":
    _root, _name = Path(sys.argv[1]), sys.argv[2]
    _clip, _source = make_setup(_root)
    train_tspo(config(_root, _name, grad_accum=1), backbone=FrameReader(), source=_source)


def test_cli_trains_exports_and_plots(tmp_path, capsys):
    """`harness train tspo` and `harness train plot` end to end on the needle train split with the shipped models."""
    from harness.cli.app import main

    out = tmp_path / "run"
    assert main(["train", "tspo", "--out", str(out), "--task-arg", "videos=2", "--frames", "4", "--group-size", "2",
                 "--max-steps", "1", "--grad-accum", "1", "--progress", "false", "--cache-dir",
                 str(tmp_path / "cache")]) == 0
    assert f"trained agent: {out / 'agent'}" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    train = config["train"]
    assert train["frames"] == 4 and train["group_size"] == 2 and train["task_args"] == {"videos": 2}
    assert main(["train", "plot", str(out)]) == 0
    assert (out / "plots" / "reward.png").is_file()
    assert main(["train", "tspo", "--out", str(out), "--logprob", "pl"]) == 2  # bad value: one line, exit 2


def test_shipped_agent_is_the_default_tspo_and_covers_more_evidence(tmp_path):
    """mini-tspo (harness/miniworld/weights/mini-tspo, made by the command in its training.json) is the default
    run's tspo. On needle test videos (never trained on) its 8 frames hold more of the count and of the order
    questions' evidence intervals than CLIP ranking does (the zero agent, the same ranking as topk)."""
    from harness.config import DEFAULT_SAMPLERS
    from harness.shipped import SHIPPED_AGENTS

    assert "tspo:agent=mini-tspo,encoder=mini-clip" in DEFAULT_SAMPLERS
    sampler = SAMPLERS.create("tspo", agent="mini-tspo")
    config = sampler.config()
    assert sampler.encoder == "mini-clip" and config["agent"] == "mini-tspo" and config["agent_kind"] == "shipped"
    assert config["agent_sha256"] == json.loads((SHIPPED_AGENTS["mini-tspo"][0].parent / "training.json")
                                                .read_text())["agent_sha256"]
    runs = tmp_path / "runs"
    result = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--backbone", "none", "--task-arg", "videos=16",
         "--task-arg", "max_duration=300", "--sampler", "tspo:agent=mini-tspo,encoder=mini-clip",
         "--sampler", "tspo:encoder=mini-clip", "--out", str(runs), "--cache-dir", str(tmp_path / "cache"),
         "--no-progress"], env={**os.environ, "LONGVIDEO_HARNESS_HOME": str(tmp_path / "home")},
        capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    recall = {}
    for metrics in runs.glob("*/metrics.json"):
        agent = json.loads((metrics.parent / "config.json").read_text())["identity"]["sampler"]["config"]["agent"]
        by_type = json.loads(metrics.read_text())["metrics"]["by"]["question_type"]
        recall[agent] = {t: by_type[t]["evidence_recall"] for t in ("count", "order")}
    assert set(recall) == {"mini-tspo", "zero"}
    assert recall["mini-tspo"]["count"] > recall["zero"]["count"], recall
    assert recall["mini-tspo"]["order"] > recall["zero"]["order"], recall
