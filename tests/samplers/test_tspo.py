"""TSPO agent and sampler. Golden values come from the official TSPO code (Hui-design/TSPO: `MultiModal_Align` in `model/temporal_agent.py`, `inference_ts` in `llava/model/language_model/llava_qwen.py`) or hand computation;
the forward is checked against an independent float64 numpy re-implementation of the selector's forward (dense mask, as written)."""
import importlib.util
import json
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from harness.errors import HarnessError
from harness.records import CandidateGrid
from harness.registry import SAMPLERS
from samplers.base import apply_sampler as run_sampler
from samplers.topk import topk_positions
from samplers.tspo.agent import TemporalAgent, agent_keys, positional_encoding, window_mask
from samplers.tspo.rules import bin_assignment, rule_positions, uniform_proposals
from samplers.tspo.weights import load_agent, read_selector_state, state_digest

SPEC_KEYS = [  # `MultiModal_Align` (TSPO `model/temporal_agent.py`), without the `selector.` prefix, in the official module order
    "temporal.Self_q.weight", "temporal.Self_q.bias", "temporal.Self_k.weight", "temporal.Self_k.bias",
    "temporal.Self_v.weight", "temporal.Self_v.bias", "temporal.ffn_o.weight", "temporal.ffn_o.bias",
    "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias",
]
SPEC_SCORES = [.1, .9, .3, .8, .2, .7, .95, .05, .6, .4]  # TSPO `inference_ts`
AKS_SCORES = [.1, .9, .3, .8, .2, .7, .95, .05, .6, .4, .5, .45, .12, .33, .77, .21]  # TSPO `inference_ts`


# ---------------------------------------------------------------------------------------------------------------
# Independent reference of the selector forward of TSPO `model/temporal_agent.py`, float64 numpy, dense T x T mask


def reference_logits(state, feats, text, clip, window, tau, heads=8):
    w = {k: v.detach().to(torch.float64).numpy() for k, v in state.items()}
    feats = np.asarray(feats, np.float64)
    text = np.asarray(text, np.float64).reshape(-1)
    clip = np.asarray(clip, np.float64)
    length, dim = feats.shape
    # 1. positional encoding
    pos = np.arange(length)[:, None] / length
    freq = np.exp(-(2 * np.arange(dim // 2)) * np.log(10000.0) / dim)
    pe = np.zeros((length, dim))
    pe[:, 0::2] = np.sin(pos * freq)
    pe[:, 1::2] = np.cos(pos * freq)
    x = feats + pe
    # 2. window mask, written as the loop the spec gives
    mask = np.zeros((length, length))
    for j in range(length):
        for k in range(window):
            mask[j, min(max(j - window // 2 + k, 0), length - 1)] = 1
    # 3. multi-head local attention, no output projection
    def linear(name, inp):
        return inp @ w[f"{name}.weight"].T + w[f"{name}.bias"]

    head_dim = dim // heads
    q, k, v = (linear(f"temporal.Self_{n}", x).reshape(length, heads, head_dim).transpose(1, 0, 2) for n in "qkv")
    s = q @ k.transpose(0, 2, 1) / np.sqrt(head_dim)
    s = np.where(mask[None] == 0, -1e6, s)
    a = np.exp(s - s.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    ctx = (a @ v).transpose(1, 0, 2).reshape(length, dim)
    # 4. MLP with residual on the original features
    e = linear("mlp.2", np.maximum(linear("mlp.0", ctx), 0)) + feats
    # 5-6. cosine with an added epsilon, plus CLIP score, over tau
    cos = e @ text / (np.linalg.norm(e, axis=1) * np.linalg.norm(text) + 1e-6)
    return (cos + clip) / tau


def cosine(feats, text):
    feats, text = np.asarray(feats, np.float64), np.asarray(text, np.float64).reshape(-1)
    return feats @ text / (np.linalg.norm(feats, axis=1) * np.linalg.norm(text))


def random_inputs(length, dim, seed=0):
    rng = np.random.default_rng(seed)
    feats, text = rng.normal(size=(length, dim)), rng.normal(size=dim)
    return feats, text, cosine(feats, text)


def random_agent(dim, std=0.3, seed=0):
    return TemporalAgent.initialised(dim, std=std, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------------------------
# Architecture


def test_parameter_count_and_keys_match_the_official_selector():
    agent = TemporalAgent(768)
    assert sum(p.numel() for p in agent.parameters()) == 3_543_552
    assert list(agent.state_dict()) == SPEC_KEYS == agent_keys()
    assert all(tuple(t.shape) == ((768, 768) if k.endswith("weight") else (768,))
               for k, t in agent.state_dict().items())


def test_positional_encoding_spec_rows():
    pe = positional_encoding(4, 8, dtype=torch.float64).numpy()
    expected = [[0, 1, 0, 1, 0, 1, 0, 1],
                [0.247404, 0.968912, 0.024997, 0.999688, 0.0025, 0.999997, 0.00025, 1.0],
                [0.479426, 0.877583, 0.049979, 0.998750, 0.005, 0.999988, 0.0005, 1.0]]
    np.testing.assert_allclose(pe[:3], expected, atol=1e-6)


def _ones(mask, row):
    return np.flatnonzero(mask[row].numpy()).tolist()


@pytest.mark.parametrize("length,window,row,columns", [
    (20, 12, 0, range(0, 6)), (20, 12, 1, range(0, 7)), (20, 12, 6, range(0, 12)), (20, 12, 7, range(1, 13)),
    (20, 12, 11, range(5, 17)),
    (10, 4, 0, [0, 1]), (10, 4, 1, [0, 1, 2]), (10, 4, 2, range(0, 4)), (10, 4, 3, range(1, 5)), (10, 4, 9, [7, 8, 9]),
])
def test_window_mask_spec_rows(length, window, row, columns):
    assert _ones(window_mask(length, window), row) == list(columns)


def test_window_mask_wider_than_video_is_all_ones():
    assert window_mask(5, 12).all()


@pytest.mark.parametrize("length,dim,window", [(20, 16, 12), (10, 32, 4), (5, 16, 12), (17, 16, 1), (23, 24, 5),
                                               (1, 16, 12), (30, 16, 100)])
def test_forward_matches_float64_reference(length, dim, window):
    agent = random_agent(dim).double()
    feats, text, clip = random_inputs(length, dim, seed=length + dim)
    tau = 0.025
    ours = agent(torch.from_numpy(feats), torch.from_numpy(text)[None], torch.from_numpy(clip),
                 window_size=window, tau=tau).detach().numpy()
    ref = reference_logits(agent.state_dict(), feats, text, clip, window, tau)
    np.testing.assert_allclose(ours, ref, rtol=1e-11, atol=1e-11)


def test_forward_ignores_dead_ffn_o_and_accepts_1d_text():
    agent = random_agent(16).double()
    feats, text, clip = random_inputs(12, 16)
    args = (torch.from_numpy(feats), torch.from_numpy(text), torch.from_numpy(clip))
    before = agent(*args)
    with torch.no_grad():
        agent.temporal.ffn_o.weight.normal_()
    assert torch.equal(before, agent(*args))
    assert torch.equal(before, agent(args[0], args[1][None], args[2]))


def test_zero_agent_identity_doubles_clip_scores():
    feats, text, clip = random_inputs(50, 768, seed=3)
    logits = TemporalAgent.zeros(768).double()(torch.from_numpy(feats), torch.from_numpy(text),
                                               torch.from_numpy(clip), tau=0.025).detach().numpy()
    np.testing.assert_allclose(logits * 0.025, 2 * clip, rtol=0, atol=1e-9)
    assert rule_positions(logits, 10, "topk") == topk_positions(clip, 10).tolist()


def test_agent_follows_its_dtype():
    agent = random_agent(16).to(torch.bfloat16)
    feats, text, clip = random_inputs(8, 16)
    out = agent(feats, text, clip)  # numpy float64 inputs are cast to the agent's dtype
    assert out.dtype == torch.bfloat16 and out.shape == (8,)


def test_gradients_reach_every_used_parameter():
    agent = random_agent(16)
    feats, text, clip = random_inputs(9, 16)
    agent(torch.tensor(feats), torch.tensor(text), torch.tensor(clip), window_size=4).sum().backward()
    for name, p in agent.named_parameters():
        assert (p.grad is None) == name.startswith("temporal.ffn_o"), name


# ---------------------------------------------------------------------------------------------------------------
# Selection rules


@pytest.mark.parametrize("last,count,expected", [
    (9, 4, [0, 3, 6, 9]), (9, 3, [0, 4, 9]), (7, 3, [0, 4, 7]), (10, 4, [0, 3, 7, 10]), (5, 1, [5]), (5, 0, []),
])
def test_uniform_proposals_spec(last, count, expected):
    assert uniform_proposals(last, count) == expected


def test_uniform_proposals_long_prefix_uses_half_to_even():
    assert uniform_proposals(99, 64)[:12] == [0, 2, 3, 5, 6, 8, 9, 11, 13, 14, 16, 17]


def test_bin_assignment_spec():
    assert bin_assignment(10, 4).tolist() == [0, 0, 1, 1, 1, 2, 2, 2, 3, 3]
    assert bin_assignment(10, 3).tolist() == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]


@pytest.mark.parametrize("method,k,expected", [
    ("topk", 3, [1, 3, 6]), ("bin-max", 3, [1, 6, 8]), ("bin-max", 4, [1, 3, 6, 8]),
])
def test_selection_spec_examples(method, k, expected):
    assert rule_positions(SPEC_SCORES, k, method) == expected
    assert rule_positions(torch.tensor(SPEC_SCORES), k, method) == expected


def test_selection_is_invariant_to_positive_scaling():
    for method, k in (("topk", 3), ("bin-max", 4)):
        assert rule_positions(np.array(SPEC_SCORES) / 0.025, k, method) == rule_positions(SPEC_SCORES, k, method)


def test_selection_edge_cases():
    assert rule_positions(SPEC_SCORES, 50, "topk") == list(range(10))  # L = min(T, K)
    assert rule_positions(SPEC_SCORES, 50, "bin-max") == list(range(10))
    assert rule_positions(SPEC_SCORES, 1, "bin-max") == [6]  # one bin: the whole video
    assert rule_positions([0.5, 0.9, 0.9, 0.1], 1, "bin-max") == [1]  # argmax: first on ties
    assert rule_positions([0.5, 0.9, 0.5, 0.9], 2, "topk") == [1, 3]
    assert rule_positions([0.9, 0.1, 0.9, 0.9], 2, "topk") == [0, 2]  # ties to the earlier candidate
    with pytest.raises(HarnessError, match="NaN"):
        rule_positions([0.1, float("nan")], 1, "topk")
    with pytest.raises(HarnessError, match="unknown TSPO selection method"):
        rule_positions(SPEC_SCORES, 2, "best")
    with pytest.raises(HarnessError, match="k >= 1"):
        rule_positions(SPEC_SCORES, 0, "topk")


@pytest.mark.skipif(importlib.util.find_spec("samplers.aks") is None, reason="samplers.aks not present")
@pytest.mark.parametrize("k,expected", [(4, [1, 3, 6, 14]), (8, [1, 3, 5, 6, 8, 10, 11, 14])])
def test_aks_spec_examples(k, expected):
    assert rule_positions(AKS_SCORES, k, "aks") == expected
    assert rule_positions(np.array(AKS_SCORES) / 0.025, k, "aks") == expected  # min-max normalised: tau has no effect


# ---------------------------------------------------------------------------------------------------------------
# Loading


def _selector_state(dim=16, seed=1, dtype=torch.float32):
    return {k: v.to(dtype).contiguous() for k, v in random_agent(dim, seed=seed).state_dict().items()}


def _tspo_folder(root, state, sharded=True):
    """A fake TSPO-0.4B folder: a CLIP config and CLIP keys beside the `selector.*` tensors (bf16 as shipped)."""
    root.mkdir()
    (root / "config.json").write_text(json.dumps({"model_type": "clip", "architectures": ["TSPOModel"]}))
    clip = {"logit_scale": torch.tensor(4.6), "text_projection.weight": torch.ones(4, 4),
            "vision_model.post_layernorm.weight": torch.ones(4)}
    selector = {f"selector.{k}": v.to(torch.bfloat16) for k, v in state.items()}
    if not sharded:
        save_file({**clip, **selector}, str(root / "model.safetensors"))
        return root
    first, second = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    save_file(clip, str(root / first))
    save_file(selector, str(root / second))
    weight_map = {**{k: first for k in clip}, **{k: second for k in selector}}
    (root / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return root


@pytest.mark.parametrize("sharded", [True, False])
def test_load_tspo_checkpoint_folder(tmp_path, sharded):
    state = _selector_state()
    folder = _tspo_folder(tmp_path / "TSPO-0.4B", state, sharded)
    agent = load_agent(folder, device="cpu", dtype="float32")
    assert not agent.training and agent.dim == 16
    for key, value in agent.state_dict().items():
        assert value.dtype == torch.float32
        assert torch.equal(value, state[key].to(torch.bfloat16).float()), key


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".bin"])
def test_load_bare_state_dict(tmp_path, suffix):
    state = _selector_state()
    path = tmp_path / f"agent{suffix}"
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    agent = load_agent(path, dtype="float64")
    assert agent.mlp[0].weight.dtype == torch.float64
    assert all(torch.equal(v, state[k].double()) for k, v in agent.state_dict().items())


def test_load_prefixed_single_file(tmp_path):
    state = _selector_state()
    path = tmp_path / "llava_selector.pt"
    torch.save({**{f"multiModal_align.{k}": v for k, v in state.items()}, "lm_head.weight": torch.ones(2)}, path)
    assert set(read_selector_state(path)) == set(SPEC_KEYS)


def test_missing_and_unexpected_keys_are_named(tmp_path):
    state = _selector_state()
    del state["temporal.ffn_o.bias"]
    state["temporal.alpha"] = torch.zeros(1)
    path = tmp_path / "broken.safetensors"
    save_file(state, str(path))
    with pytest.raises(HarnessError) as err:
        load_agent(path)
    message = str(err.value)
    assert "\n" not in message and "broken.safetensors" in message
    assert "missing keys temporal.ffn_o.bias" in message and "unexpected keys temporal.alpha" in message


def test_load_errors(tmp_path):
    with pytest.raises(HarnessError, match="no such file"):
        load_agent(tmp_path / "nowhere")
    clip_only = tmp_path / "clip"
    clip_only.mkdir()
    save_file({"logit_scale": torch.tensor(1.0)}, str(clip_only / "model.safetensors"))
    with pytest.raises(HarnessError, match="no selector tensors"):
        load_agent(clip_only)
    state = _selector_state()
    state["mlp.2.weight"] = torch.zeros(16, 8)
    torch.save(state, tmp_path / "shapes.pt")
    with pytest.raises(HarnessError, match=r"shapes\.pt.*mlp\.2\.weight"):
        load_agent(tmp_path / "shapes.pt")
    (tmp_path / "agent.npz").write_bytes(b"x")
    with pytest.raises(HarnessError, match="unknown format"):
        load_agent(tmp_path / "agent.npz")
    (tmp_path / "garbage.pt").write_bytes(b"not a pickle")
    with pytest.raises(HarnessError, match="garbage.pt"):
        load_agent(tmp_path / "garbage.pt")


def test_state_digest_depends_on_content_only(tmp_path):
    state = _selector_state()
    assert state_digest(state) == state_digest({k: v.clone() for k, v in reversed(state.items())})
    changed = dict(state, **{"mlp.0.bias": state["mlp.0.bias"] + 1})
    assert state_digest(changed) != state_digest(state)


# ---------------------------------------------------------------------------------------------------------------
# The registered sampler


def _grid(n):
    return CandidateGrid(list(range(0, 30 * n, 30)), [float(i) for i in range(n)], 30.0, 30 * n, "1fps")


def _inputs(n, dim, seed=0):
    feats, text, clip = random_inputs(n, dim, seed)
    return {"image_features": feats.astype(np.float32), "text_feature": text.astype(np.float32), "scores": clip}


def test_zero_agent_sampler_equals_clip_ranking():
    sampler = SAMPLERS.create("tspo")
    assert sampler.needs == ("image_features", "text_feature", "scores")
    assert sampler.per_sample == ("text_feature",)
    inputs = _inputs(200, 64)
    selection = run_sampler(sampler, _grid(200), 16, inputs)
    assert list(selection.positions) == topk_positions(inputs["scores"], 16).tolist()
    cfg = sampler.config()
    assert cfg["agent"] == "zero" and cfg["method"] == "topk" and cfg["window"] == 12 and cfg["tau"] == 0.025
    assert sampler.encoder == "openai/clip-vit-large-patch14"


def test_sampler_short_grid_takes_all():
    selection = run_sampler(SAMPLERS.create("tspo"), _grid(5), 8, _inputs(5, 16))
    assert list(selection.positions) == [0, 1, 2, 3, 4]


def test_presets_and_overrides():
    assert SAMPLERS.create("tspo", preset="videomme").method == "bin-max"
    for preset in ("longvideobench", "mlvu", "lvbench"):
        assert SAMPLERS.create("tspo", preset=preset).method == "topk"
    override = SAMPLERS.create("tspo", preset="videomme", method="topk", window=16)
    assert (override.method, override.window) == ("topk", 16)
    cfg = SAMPLERS.create("tspo", preset="videomme").config()
    assert cfg["preset"] == "videomme" and cfg["method"] == "bin-max" and cfg["window"] == 12
    assert SAMPLERS.create("tspo", preset="videomme").config_hash != SAMPLERS.create("tspo").config_hash


def test_bin_max_sampler_matches_select_on_agent_logits(tmp_path):
    state = _selector_state(dim=16)
    save_file(state, str(tmp_path / "agent.safetensors"))
    sampler = SAMPLERS.create("tspo", agent=str(tmp_path / "agent.safetensors"), method="bin-max", window=4)
    inputs = _inputs(40, 16, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # raw (non-unit) features: no warning
        positions = run_sampler(sampler, _grid(40), 8, inputs).positions
    ref = reference_logits(state, inputs["image_features"], inputs["text_feature"], inputs["scores"], 4, 0.025)
    assert list(positions) == rule_positions(ref, 8, "bin-max")


def test_sampler_agent_sources(tmp_path):
    state = _selector_state()
    folder = _tspo_folder(tmp_path / "TSPO-0.4B", state)
    from_folder = SAMPLERS.create("tspo", agent=str(folder))
    assert from_folder.encoder == str(folder)  # the checkpoint's own CLIP
    assert SAMPLERS.create("tspo", agent=str(folder), encoder="mini-clip").encoder == "mini-clip"
    bf16_file = tmp_path / "elsewhere" / "selector.safetensors"
    bf16_file.parent.mkdir()
    save_file({k: v.to(torch.bfloat16) for k, v in state.items()}, str(bf16_file))
    from_file = SAMPLERS.create("tspo", agent=str(bf16_file))
    assert from_file.encoder == "openai/clip-vit-large-patch14"
    # same weights (bf16 in both), different places and containers: same selection identity but for the source
    assert from_file.config()["agent_sha256"] == from_folder.config()["agent_sha256"]
    assert from_file.config()["agent_kind"] == "state-dict-file"
    assert from_folder.config()["agent_kind"] == "checkpoint-folder"
    other = tmp_path / "other.safetensors"
    save_file(_selector_state(seed=2), str(other))
    other_hash = SAMPLERS.create("tspo", agent=str(other)).config_hash
    assert other_hash != SAMPLERS.create("tspo", agent=str(bf16_file)).config_hash


def test_sampler_rejects_bad_options_and_inputs(tmp_path):
    with pytest.raises(HarnessError, match="method"):
        SAMPLERS.create("tspo", method="random")
    with pytest.raises(HarnessError, match="preset"):
        SAMPLERS.create("tspo", preset="egoschema")
    with pytest.raises(HarnessError, match="window"):
        SAMPLERS.create("tspo", window=0)
    with pytest.raises(HarnessError, match="tau"):
        SAMPLERS.create("tspo", tau=0)
    with pytest.raises(HarnessError, match="dtype"):
        SAMPLERS.create("tspo", dtype="int8")
    save_file(_selector_state(dim=16), str(tmp_path / "a.safetensors"))
    sampler = SAMPLERS.create("tspo", agent=str(tmp_path / "a.safetensors"))
    with pytest.raises(HarnessError, match="dim 16.*dim 32"):
        run_sampler(sampler, _grid(20), 4, _inputs(20, 32))
    bad = dict(_inputs(20, 16), text_feature=np.ones(8, np.float32))
    with pytest.raises(HarnessError, match="inconsistent inputs"):
        run_sampler(sampler, _grid(20), 4, bad)


def test_trained_agent_warns_on_unit_norm_features(tmp_path):
    save_file(_selector_state(dim=16), str(tmp_path / "a.safetensors"))
    sampler = SAMPLERS.create("tspo", agent=str(tmp_path / "a.safetensors"))
    inputs = _inputs(20, 16)
    inputs["image_features"] /= np.linalg.norm(inputs["image_features"], axis=1, keepdims=True)
    with pytest.warns(UserWarning, match="unit vectors"):
        run_sampler(sampler, _grid(20), 4, inputs)
