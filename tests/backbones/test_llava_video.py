"""The `llava-video` backbone and `harness convert llava-video`, on tiny models (CPU, offline).

The reference for the converted model is written out here from the original's definitions, without the
backbone's code or transformers' models: SigLIP minus its last layer, the mlp2x_gelu projector, `get_2dPool`,
`add_token_per_grid`, the `<image>` split of `tokenizer_image_token`, and a Qwen2 decoder, all as plain torch ops
on the tensors of a tiny checkpoint saved in the original LLaVA-NeXT key layout.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from backbones.llava_video.adapter import LlavaVideo
from backbones.llava_video.convert import convert_llava_video, map_key
from backbones.llava_video.prompt import render_prompt, time_instruction, user_text
from backbones.llava_video.vision import add_newlines, pool_2d, preprocess, visual_token_count
from harness.errors import HarnessError
from harness.registry import BACKBONES

# Tiny sizes: Qwen2-like text (GQA 2 heads / 1 kv head, biases on q/k/v) and a 3-layer SigLIP on 70 px frames
# (5x5 patches: an odd side like so400m's 27), of which the checkpoint keeps 2 layers, as LLaVA does.
TEXT = dict(vocab_size=272, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=1, rms_norm_eps=1e-6, rope_theta=1000000.0, max_position_embeddings=32768)
VISION = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2, patch_size=14,
              image_size=70, layer_norm_eps=1e-6)
V = "model.vision_tower.vision_tower.vision_model."
SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def original_tokenizer():
    """A Qwen2-like tokenizer as the original folder holds it: bytes + Qwen's special tokens, no <image>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={s: i for i, s in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(SPECIAL))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")


def original_state_dict(seed=0) -> dict:
    """Random tensors under the original names (LlavaQwenForCausalLM with a SigLIP tower, 2 of 3 layers)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g) * 0.2

    d, e, m = TEXT["hidden_size"], VISION["hidden_size"], TEXT["intermediate_size"]
    hd = d // TEXT["num_attention_heads"]
    kv = hd * TEXT["num_key_value_heads"]
    sd = {V + "embeddings.patch_embedding.weight": r(e, 3, 14, 14), V + "embeddings.patch_embedding.bias": r(e),
          V + "embeddings.position_embedding.weight": r(25, e),
          V + "post_layernorm.weight": 1 + r(e), V + "post_layernorm.bias": r(e)}
    for i in range(VISION["num_hidden_layers"] - 1):
        p = f"{V}encoder.layers.{i}."
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            sd[f"{p}self_attn.{n}.weight"], sd[f"{p}self_attn.{n}.bias"] = r(e, e), r(e)
        for n in ("layer_norm1", "layer_norm2"):
            sd[f"{p}{n}.weight"], sd[f"{p}{n}.bias"] = 1 + r(e), r(e)
        f = VISION["intermediate_size"]
        sd[f"{p}mlp.fc1.weight"], sd[f"{p}mlp.fc1.bias"] = r(f, e), r(f)
        sd[f"{p}mlp.fc2.weight"], sd[f"{p}mlp.fc2.bias"] = r(e, f), r(e)
    sd.update({"model.mm_projector.0.weight": r(d, e), "model.mm_projector.0.bias": r(d),
               "model.mm_projector.2.weight": r(d, d), "model.mm_projector.2.bias": r(d),
               "model.image_newline": r(d), "model.embed_tokens.weight": r(TEXT["vocab_size"], d),
               "model.norm.weight": 1 + r(d), "lm_head.weight": r(TEXT["vocab_size"], d)})
    for i in range(TEXT["num_hidden_layers"]):
        p = f"model.layers.{i}."
        sd.update({p + "self_attn.q_proj.weight": r(d, d), p + "self_attn.q_proj.bias": r(d),
                   p + "self_attn.k_proj.weight": r(kv, d), p + "self_attn.k_proj.bias": r(kv),
                   p + "self_attn.v_proj.weight": r(kv, d), p + "self_attn.v_proj.bias": r(kv),
                   p + "self_attn.o_proj.weight": r(d, d), p + "mlp.gate_proj.weight": r(m, d),
                   p + "mlp.up_proj.weight": r(m, d), p + "mlp.down_proj.weight": r(d, m),
                   p + "input_layernorm.weight": 1 + r(d), p + "post_attention_layernorm.weight": 1 + r(d)})
    # a rotary buffer, as older checkpoints saved them: dropped by the converter (transformers recomputes it)
    sd["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(hd // 2)
    return sd


def write_original(folder, sd=None, shards=2, **config_changes):
    """An original-layout checkpoint folder: config.json with LLaVA-NeXT keys, a local SigLIP tower config (as
    mm_vision_tower may name one), the tokenizer, and the tensors in `shards` safetensors files + index."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tower = folder / "siglip-tiny"
    tower.mkdir(exist_ok=True)
    (tower / "config.json").write_text(json.dumps(dict(VISION, model_type="siglip_vision_model",
                                                       hidden_act="gelu_pytorch_tanh")))
    config = dict(TEXT, architectures=["LlavaQwenForCausalLM"], model_type="llava", hidden_act="silu",
                  tie_word_embeddings=False, bos_token_id=256, eos_token_id=258, mm_vision_tower=str(tower),
                  mm_projector_type="mlp2x_gelu", mm_hidden_size=VISION["hidden_size"], mm_vision_select_layer=-2,
                  mm_vision_select_feature="patch", mm_patch_merge_type="spatial_unpad",
                  mm_spatial_pool_mode="bilinear", mm_spatial_pool_stride=2, mm_newline_position="grid",
                  image_aspect_ratio="anyres_max_9", tokenizer_model_max_length=32768)
    config.update(config_changes)
    (folder / "config.json").write_text(json.dumps(config))
    original_tokenizer().save_pretrained(folder)
    sd = original_state_dict() if sd is None else sd
    keys = sorted(sd)
    groups = [keys[i::shards] for i in range(shards)]
    weight_map = {}
    for i, group in enumerate(groups):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file({k: sd[k].contiguous() for k in group}, str(folder / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in group})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return sd


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    base = tmp_path_factory.mktemp("llava")
    sd = write_original(base / "original")
    summary = convert_llava_video(base / "original", base / "converted")
    return base, sd, summary


@pytest.fixture(scope="module")
def backbone(converted):
    return BACKBONES.create("llava-video", model=str(converted[0] / "converted"))


# ---------------------------------------------------------------------------------------------------- reference

def ref_siglip(sd, pixels):
    """The original tower's output: hidden state after its last kept layer, before the post-layernorm."""
    e, heads = VISION["hidden_size"], VISION["num_attention_heads"]
    x = F.conv2d(pixels, sd[V + "embeddings.patch_embedding.weight"], sd[V + "embeddings.patch_embedding.bias"],
                 stride=VISION["patch_size"])
    x = x.flatten(2).transpose(1, 2) + sd[V + "embeddings.position_embedding.weight"]
    n, t, _ = x.shape
    for i in range(VISION["num_hidden_layers"] - 1):
        p = f"{V}encoder.layers.{i}."
        h = F.layer_norm(x, (e,), sd[p + "layer_norm1.weight"], sd[p + "layer_norm1.bias"], 1e-6)
        q, k, v = (F.linear(h, sd[f"{p}self_attn.{n_}.weight"], sd[f"{p}self_attn.{n_}.bias"])
                   .view(n, t, heads, e // heads).transpose(1, 2) for n_ in ("q_proj", "k_proj", "v_proj"))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(e // heads), dim=-1) @ v
        x = x + F.linear(att.transpose(1, 2).reshape(n, t, e), sd[p + "self_attn.out_proj.weight"],
                         sd[p + "self_attn.out_proj.bias"])
        h = F.layer_norm(x, (e,), sd[p + "layer_norm2.weight"], sd[p + "layer_norm2.bias"], 1e-6)
        h = F.gelu(F.linear(h, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"]), approximate="tanh")
        x = x + F.linear(h, sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])
    return x


def ref_video_tokens(sd, pixels):
    """encode_images (tower, projector) -> get_2dPool bilinear stride 2 -> add_token_per_grid, by loops."""
    feats = ref_siglip(sd, pixels)
    feats = F.linear(F.gelu(F.linear(feats, sd["model.mm_projector.0.weight"], sd["model.mm_projector.0.bias"])),
                     sd["model.mm_projector.2.weight"], sd["model.mm_projector.2.bias"])
    n, t, d = feats.shape
    side = math.isqrt(t)
    grid = feats.view(n, side, side, d).permute(0, 3, 1, 2)
    pooled = F.interpolate(grid, size=[math.ceil(side / 2)] * 2, mode="bilinear").permute(0, 2, 3, 1)
    tokens = []
    for frame in pooled:
        for row in frame:
            tokens += [*row, sd["model.image_newline"]]
    return torch.stack(tokens)


def ref_embeddings(sd, tokenizer, text, pixels):
    """prepare_inputs_labels_for_multimodal for one video: text around <image> tokenised chunk by chunk, embedded,
    the video tokens spliced in where IMAGE_TOKEN_INDEX stands."""
    before, after = text.split("<image>")
    emb = sd["model.embed_tokens.weight"]
    return torch.cat([emb[tokenizer(before)["input_ids"]], ref_video_tokens(sd, pixels),
                      emb[tokenizer(after)["input_ids"]]])


def ref_logits(sd, x):
    """A Qwen2 decoder (RMSNorm, rotary positions 0..T-1, grouped-query causal attention, SwiGLU) on embeddings."""
    d, heads, kvh = TEXT["hidden_size"], TEXT["num_attention_heads"], TEXT["num_key_value_heads"]
    hd, t = d // heads, x.shape[0]

    def rms(v, w):
        return w * (v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + TEXT["rms_norm_eps"]))

    inv = 1.0 / TEXT["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd)
    ang = torch.outer(torch.arange(t, dtype=torch.float32), inv)
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()

    def rope(v):  # v: (heads, t, hd)
        return v * cos + torch.cat([-v[..., hd // 2:], v[..., :hd // 2]], -1) * sin

    causal = torch.full((t, t), float("-inf")).triu(1)
    for i in range(TEXT["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms(x, sd[p + "input_layernorm.weight"])
        q = F.linear(h, sd[p + "self_attn.q_proj.weight"], sd[p + "self_attn.q_proj.bias"]).view(t, heads, hd)
        k = F.linear(h, sd[p + "self_attn.k_proj.weight"], sd[p + "self_attn.k_proj.bias"]).view(t, kvh, hd)
        v = F.linear(h, sd[p + "self_attn.v_proj.weight"], sd[p + "self_attn.v_proj.bias"]).view(t, kvh, hd)
        q, k, v = rope(q.transpose(0, 1)), rope(k.transpose(0, 1)), v.transpose(0, 1)
        k, v = k.repeat_interleave(heads // kvh, 0), v.repeat_interleave(heads // kvh, 0)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + causal, -1) @ v
        x = x + F.linear(att.transpose(0, 1).reshape(t, d), sd[p + "self_attn.o_proj.weight"])
        h = rms(x, sd[p + "post_attention_layernorm.weight"])
        gate, up = F.linear(h, sd[p + "mlp.gate_proj.weight"]), F.linear(h, sd[p + "mlp.up_proj.weight"])
        x = x + F.linear(F.silu(gate) * up, sd[p + "mlp.down_proj.weight"])
    return F.linear(rms(x, sd["model.norm.weight"]), sd["lm_head.weight"])


def frames_and_times(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 48, 64, 3), dtype=np.uint8), [0.0, 12.5, 31.04][:n]


# ---------------------------------------------------------------------------------------------------- prompts

def test_templates_match_the_original_conversations():
    # conv_qwen (CHATML) and conv_chatml_direct (MPT) of LLaVA-NeXT llava/conversation.py, one user turn
    q = "Q?\nA. x\nB. y\n"
    assert render_prompt(user_text(q), "qwen_1_5") == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<image>\nQ?\nA. x\nB. y\n"
        "<|im_end|>\n<|im_start|>assistant\n")
    # LLaVA-NeXT conversation.py, chatml_direct (MPT style): no newline after <|im_end|>
    assert render_prompt(user_text(q), "chatml_direct") == (
        "<|im_start|>system\nAnswer the questions.<|im_end|><|im_start|>user\n<image>\nQ?\nA. x\nB. y\n"
        "<|im_end|><|im_start|>assistant\n")
    with pytest.raises(HarnessError, match="unknown conv_template"):
        render_prompt("x", "vicuna_v1")


def test_time_instruction_is_lmms_evals_text():
    text = time_instruction(3601.456, [0.0, 12.5, 3600.0])
    assert text == ("The video lasts for 3601.46 seconds, and 3 frames are uniformly sampled from it. These frames "
                    "are located at 0.00s,12.50s,3600.00s.Please answer the following questions related to this video.")
    assert user_text("Q?", text) == "<image>\n" + text + "\nQ?"


def test_prompt_tokens_and_timestamps_reach_the_model(backbone):
    frames, times = frames_and_times()
    inputs = backbone.build_inputs(frames, times, "Q?")
    assert inputs["text"] == render_prompt("<image>\nQ?", "qwen_1_5")
    ids = inputs["input_ids"][0].tolist()
    vid = backbone.video_token_id
    assert ids.count(vid) == inputs["n_visual"] == 3 * 3 * 4  # 3 frames, 3x3 pooled, a newline after each row
    decoded = backbone.tokenizer.decode(ids)
    assert decoded == inputs["text"].replace("<image>", "<video>" * inputs["n_visual"])

    timed = LlavaVideo(model=backbone.model_name, time_instruction=True, conv_template="chatml_direct")
    with pytest.raises(HarnessError, match="duration"):
        timed.build_inputs(frames, times, "Q?")
    text = timed.build_inputs(frames, times, "Q?", duration=40.0)["text"]
    assert text == render_prompt(user_text("Q?", time_instruction(40.0, times)), "chatml_direct")
    assert "located at 0.00s,12.50s,31.04s." in text


# ---------------------------------------------------------------------------------------------------- vision

def test_preprocessing_equals_the_original_siglip_processor():
    """The original SigLipImageProcessor chain: transformers.image_transforms resize (PIL bicubic), rescale,
    normalize, channels first."""
    from transformers.image_transforms import normalize, rescale, resize, to_channel_dimension_format
    from transformers.image_utils import ChannelDimension, PILImageResampling

    frames, _ = frames_and_times()
    first = ChannelDimension.FIRST
    expected = []
    for f in frames:
        x = resize(f, size=(70, 70), resample=PILImageResampling.BICUBIC, data_format=first)
        x = rescale(x, scale=1 / 255, data_format=first)
        x = normalize(x, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), data_format=first)
        expected.append(to_channel_dimension_format(x, first, first))
    got = preprocess(frames, 70)
    assert got.dtype == np.float32 and np.array_equal(got, np.stack(expected))
    with pytest.raises(HarnessError, match="uint8"):
        preprocess(frames.astype(np.float32), 70)


def test_pooling_and_newline_layouts():
    feats = torch.arange(2 * 25 * 3, dtype=torch.float32).view(2, 25, 3)
    newline = torch.full((3,), -1.0)
    assert pool_2d(feats, 2, "bilinear").shape == (2, 9, 3)  # ceil(5/2)
    assert pool_2d(feats, 2, "average").shape == (2, 4, 3)  # floor(5/2)
    assert torch.equal(pool_2d(feats, 2, "max")[0, 0], feats[0, [0, 1, 5, 6]].max(0).values)
    assert torch.equal(pool_2d(feats, 1, "bilinear"), feats)
    grid = add_newlines(feats, newline, "grid")
    assert grid.shape == (2 * 5 * 6, 3) and torch.equal(grid[5], newline) and torch.equal(grid[6], feats[0, 5])
    frame = add_newlines(feats, newline, "frame")
    assert frame.shape == (52, 3) and torch.equal(frame[25], newline) and torch.equal(frame[26], feats[1, 0])
    one = add_newlines(feats, newline, "one_token")
    assert one.shape == (51, 3) and torch.equal(one[-1], newline)
    assert add_newlines(feats, newline, "one_token", merge_type="spatial").shape == (50, 3)  # no 'unpad': none
    assert add_newlines(feats, newline, "grid", merge_type="flat").shape == (50, 3)
    assert add_newlines(feats, newline, "no_token").shape == (50, 3)
    for mode in ("bilinear", "average"):
        for pos in ("grid", "frame", "one_token", "no_token"):
            made = add_newlines(pool_2d(feats, 2, mode), newline, pos)
            assert visual_token_count(2, 5, 2, mode, pos) == made.shape[0], (mode, pos)
    # LLaVA-Video at 64 frames: 27x27 patches -> 14x14, a newline per row
    assert visual_token_count(64, 27, 2, "bilinear", "grid") == 64 * 14 * 15 == 13440
    assert visual_token_count(64, 27, 2, "average", "grid") == 64 * 13 * 14


# ---------------------------------------------------------------------------------------------------- conversion

def test_conversion_maps_every_tensor(converted):
    from safetensors import safe_open

    base, sd, summary = converted
    dst = base / "converted"
    assert summary == {"dst": str(dst), "tensors": len(sd) - 1, "dropped": 1, "shards": 2}
    index = json.loads((dst / "model.safetensors.index.json").read_text())
    out = {}
    for name in sorted(set(index["weight_map"].values())):
        with safe_open(str(dst / name), framework="pt") as f:
            out.update({k: f.get_tensor(k) for k in f.keys()})
    for key, tensor in sd.items():
        if key.endswith("inv_freq"):
            assert map_key(key) is None
            continue
        assert torch.equal(out.pop(map_key(key)), tensor), key
    assert not out  # nothing written that did not come from the source
    settings = json.loads((dst / "llava_video.json").read_text())
    assert (settings["mm_spatial_pool_mode"], settings["mm_spatial_pool_stride"], settings["mm_newline_position"]) == (
        "bilinear", 2, "grid")


def test_converted_folder_loads_in_plain_transformers(converted):
    from transformers import AutoProcessor, AutoTokenizer, LlavaOnevisionForConditionalGeneration

    dst = converted[0] / "converted"
    model, info = LlavaOnevisionForConditionalGeneration.from_pretrained(dst, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    assert model.config.vision_config.num_hidden_layers == 2 and model.config.vision_config.image_size == 70
    tok = AutoTokenizer.from_pretrained(dst)
    # appended after the 256 bytes and 3 specials, as Qwen2's 151646 / 151647 follow its 151643..151645
    assert tok.convert_tokens_to_ids(["<image>", "<video>"]) == [259, 260]
    assert (model.config.image_token_id, model.config.video_token_id) == (259, 260)
    assert type(AutoProcessor.from_pretrained(dst)).__name__ == "LlavaOnevisionProcessor"


def test_converted_model_reproduces_the_original_video_path(converted, backbone):
    base, sd, _ = converted
    frames, times = frames_and_times()
    inputs = backbone.build_inputs(frames, times, "Which colour?\nA. red\nB. blue\n")
    merged = backbone.merged_embeddings(inputs)[0]
    pixels = torch.from_numpy(preprocess(frames, 70))
    expected = ref_embeddings(sd, original_tokenizer(), inputs["text"], pixels)
    assert merged.shape == expected.shape
    torch.testing.assert_close(merged, expected, rtol=0, atol=1e-5)
    with torch.inference_mode():
        logits = backbone.model(inputs_embeds=merged[None]).logits[0]
    torch.testing.assert_close(logits, ref_logits(sd, expected), rtol=0, atol=1e-4)


def test_generation_is_greedy_over_the_reference_logits(backbone, converted):
    """The first generated token is the argmax of the reference logits at the last position."""
    sd = converted[1]
    frames, times = frames_and_times(2, seed=1)
    inputs = backbone.build_inputs(frames, times, "Q?")
    first = int(ref_logits(sd, backbone.merged_embeddings(inputs)[0])[-1].argmax())
    small = LlavaVideo(model=backbone.model_name, max_new_tokens=1)
    assert small.generate(frames, times, "Q?") == backbone.tokenizer.decode([first], skip_special_tokens=True).strip()
    text = backbone.generate(frames, times, "Q?")
    assert isinstance(text, str) and text == backbone.generate(frames, times, "Q?")


def test_conversion_errors_are_one_line(tmp_path, converted):
    base = converted[0]
    with pytest.raises(HarnessError, match="not found"):
        convert_llava_video(tmp_path / "nope", tmp_path / "out")
    with pytest.raises(HarnessError, match="already in the transformers"):
        convert_llava_video(base / "converted", tmp_path / "out")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    with pytest.raises(HarnessError, match="no mm_vision_tower"):
        convert_llava_video(tmp_path / "plain", tmp_path / "out")
    sd = original_state_dict()
    sd["model.vision_resampler.mystery"] = torch.zeros(2)
    sd["model.faster_token"] = torch.zeros(TEXT["hidden_size"])
    write_original(tmp_path / "extra", sd)
    with pytest.raises(HarnessError, match=r"2 tensors have no transformers name: model\.faster_token, "
                                           r"model\.vision_resampler\.mystery") as err:
        convert_llava_video(tmp_path / "extra", tmp_path / "out")
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists()
    sd = original_state_dict()
    del sd["model.mm_projector.2.bias"]
    write_original(tmp_path / "short", sd)
    with pytest.raises(HarnessError, match="missing model.multi_modal_projector.linear_2.bias"):
        convert_llava_video(tmp_path / "short", tmp_path / "out")
    write_original(tmp_path / "proj", mm_projector_type="linear")
    with pytest.raises(HarnessError, match="projector 'linear'"):
        convert_llava_video(tmp_path / "proj", tmp_path / "out")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(HarnessError, match="not empty"):
        convert_llava_video(base / "original", tmp_path / "full")
    (base / "original" / "model-00002-of-00002.safetensors").rename(tmp_path / "moved")
    try:
        with pytest.raises(HarnessError, match="lacks shards"):
            convert_llava_video(base / "original", tmp_path / "out")
    finally:
        (tmp_path / "moved").rename(base / "original" / "model-00002-of-00002.safetensors")


# ---------------------------------------------------------------------------------------------------- adapter

def test_registered_with_its_options():
    params = {p.name: p.default for p in BACKBONES.get("llava-video").params}
    assert {"model", "conv_template", "prompt_style", "pool_mode", "pool_stride", "newline_position",
            "time_instruction", "max_new_tokens", "random_init", "config", "seed", "device", "dtype",
            "attn_implementation"} <= set(params)
    assert params["conv_template"] == "qwen_1_5" and params["pool_mode"] is None and params["time_instruction"] is False
    with pytest.raises(HarnessError, match="must be one of"):
        BACKBONES.create("llava-video", random_init=True, config="tiny", pool_mode="mean")


def test_adapter_refuses_bad_input(tmp_path, converted, backbone):
    with pytest.raises(HarnessError, match="needs model=FOLDER"):
        LlavaVideo()
    with pytest.raises(HarnessError, match="not found"):
        LlavaVideo(model=str(tmp_path / "missing"))
    with pytest.raises(HarnessError, match="original LLaVA-NeXT layout"):
        LlavaVideo(model=str(converted[0] / "original"))
    frames, times = frames_and_times()
    with pytest.raises(HarnessError, match="3 frames but 2 timestamps"):
        backbone.generate(frames, times[:2], "Q?")
    with pytest.raises(HarnessError, match="exactly one <image>"):
        backbone.build_inputs(frames, times, "see <image> here")


def test_options_override_the_folder_settings(converted):
    model = str(converted[0] / "converted")
    b = LlavaVideo(model=model, pool_mode="average", newline_position="one_token")
    frames, times = frames_and_times()
    inputs = b.build_inputs(frames, times, "Q?")
    assert inputs["n_visual"] == 3 * 2 * 2 + 1  # floor(5/2)^2 a frame, one newline at the end
    assert b.merged_embeddings(inputs).shape[1] == inputs["input_ids"].shape[1]
    assert b.config()["pool_mode"] == "average" and b.config()["newline_position"] == "one_token"
    assert LlavaVideo(model=model, pool_stride=1).build_inputs(frames, times, "Q?")["n_visual"] == 3 * 5 * 6


def test_random_init_tiny_runs_through_the_adapter():
    b = BACKBONES.create("llava-video", random_init=True, config="tiny", max_new_tokens=3)
    frames, times = frames_and_times()
    assert isinstance(b.generate(frames, times, "Q?"), str)
    assert b.config()["weights"] == "random:0" and b.config()["preset"] == "tiny"
    with pytest.raises(HarnessError, match="config="):
        LlavaVideo(random_init=True)


def test_real_size_config_builds_without_weights():
    """The 7B preset: Qwen2-7B + SigLIP-so400m-384 minus one layer, ~8.0 B parameters (built on the meta device)."""
    from transformers import LlavaOnevisionForConditionalGeneration

    from backbones.llava_video.build import byte_tokenizer, preset_config

    cfg = preset_config("llava-video-7b", byte_tokenizer())
    with torch.device("meta"):
        model = LlavaOnevisionForConditionalGeneration(cfg)
    n = sum(p.numel() for p in model.parameters())
    assert 7.9e9 < n < 8.1e9, n
    vision = cfg.vision_config
    assert vision.num_hidden_layers == 26 and vision.image_size // vision.patch_size == 27
    assert cfg.text_config.hidden_size == 3584 and cfg.text_config.num_key_value_heads == 4
