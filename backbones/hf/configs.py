"""Architectures for `random_init=true`: `config=tiny` (a few-MB random model of each family, for tests and CI) and
real-size ones (`config=<size>`, random weights for throughput work). Special-token ids always follow the
tokenizer the model is used with, so token ids and vocabulary are the only things that differ from the checkpoint.

Where each real-size number comes from (never written from memory):
* qwen3-vl-8b (Qwen/Qwen3-VL-8B-Instruct): text 36 layers, width 4096, MLP 12288, 32 heads, 8 KV heads, head dim
  128, RMS eps 1e-6, rope theta 5e6; vision 27 blocks, width 1152, 16 heads, patch 16, merge 2, temporal patch 2,
  deepstack layers [8, 16, 24]: the GGUF metadata of the 8B instruct weights (ollama qwen3-vl:8b-instruct, read
  through the `search` tool). Vision MLP 4304 and 2304 position embeddings: transformers' Qwen3VLVisionConfig
  defaults (the same 27 x 1152 tower). mrope_section [24, 20, 20] interleaved and vocabulary 151936: the
  Qwen3-VL-4B-Instruct config.json (same head dim 128 and tokenizer). out_hidden_size = the text width (the
  merger's output). Untied embeddings (the 8B's config).
* internvl3-8b (OpenGVLab/InternVL3-8B-hf): vocabulary 151674, image_token_id 151667, 256 tokens per 448 px tile,
  downsample ratio 0.5: that checkpoint's config.json (quoted in a vLLM issue, read through `search`); vision
  InternViT-300M (24 layers, width 1024, MLP 4096, 16 heads, 448 px, patch 14): InternVL2.5's config.json and
  transformers' InternVLVisionConfig defaults, which agree; text Qwen2.5-7B (InternVL3-8B's language model):
  width 3584, 28 layers, 28 heads, 4 KV heads, MLP 18944, rope theta 1e6, as Qwen2.5-VL-7B's config.json
  (backbones/qwen2_5_vl/random_init.py, checked there), embeddings untied as Qwen2.5-7B's.
Check: built on the meta device these give 8.767B (qwen3-vl-8b; the published 8.77B), 7.947B (internvl3-8b; InternVL3-8B is published as 7.9B) and
8.291B (qwen2-vl-7b; the published 8.29B) parameters.
* qwen2-vl-7b (Qwen/Qwen2-VL-7B-Instruct): the text dims of Qwen2.5-VL-7B above (the same Qwen2-7B language model);
  vision: transformers' Qwen2VLVisionConfig defaults, whose docstring names Qwen2-VL-7B-Instruct (32 blocks, width
  1280, 16 heads, patch 14, out 3584); mrope_section [16, 24, 24].
* llava-onevision-7b (llava-hf/llava-onevision-qwen2-7b-ov-hf): vision SigLIP so400m without its head (26 layers,
  width 1152, MLP 4304, 16 heads, 384 px, patch 14), feature layer -1 "full": transformers' LlavaOnevisionConfig
  defaults, whose docstring names that checkpoint; text Qwen2-7B, the same dims as Qwen2.5-7B above.
* llava-next-video-7b (llava-hf/LLaVA-NeXT-Video-7B-hf): vision CLIP ViT-L/14-336 (24 layers, width 1024, MLP 4096,
  16 heads), feature layer -2 "default", 2x2 average pooling of video features: transformers'
  LlavaNextVideoConfig defaults, whose docstring names that checkpoint; text Vicuna-7B v1.5 (the Llama-2-7B dims:
  32 layers, width 4096, MLP 11008, 32 heads, vocabulary 32064 with the two image/video tokens and padding).
  Check on the meta device: 8.030B (llava-onevision-7b; published 8.03B) and 7.063B (llava-next-video-7b;
  published 7.06B).
* smolvlm2-2.2b (HuggingFaceTB/SmolVLM2-2.2B-Instruct): SigLIP SO400M at 384 px with 14 px patches (27 layers, width
  1152, MLP 4304, 16 heads), pixel shuffle 3 (81 tokens per 384 px image), SmolLM2-1.7B (24 layers, width 2048, MLP
  8192, 32 heads, 32 KV heads) with its RoPE base raised to 273k: the SmolVLM paper (Marafioti et al. 2025) as
  summarised in pages read through `search`; vocabulary 49280: the SmolVLM2 family's text config quoted there;
  untied embeddings. Check on the meta device: 2.247B (published 2.25B; tied embeddings would give 2.146B).
"""
from __future__ import annotations

QWEN25_7B_TEXT = dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                      num_attention_heads=28, num_key_value_heads=4, rms_norm_eps=1e-6)

CONFIGS: dict[str, dict] = {
    "qwen2-vl": {
        "tiny": dict(text=dict(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                               num_attention_heads=2, num_key_value_heads=1,
                               rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                "mrope_section": [4, 6, 6]}),
                     vision=dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, patch_size=14,
                                 spatial_merge_size=2, temporal_patch_size=2)),
        "qwen2-vl-7b": dict(text=dict(QWEN25_7B_TEXT, rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                                                        "mrope_section": [16, 24, 24]}),
                            vision=dict(depth=32, embed_dim=1280, hidden_size=3584, num_heads=16, patch_size=14,
                                        spatial_merge_size=2, temporal_patch_size=2)),
    },
    "qwen3-vl": {
        "tiny": dict(text=dict(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                               num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                               rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                "mrope_section": [6, 5, 5], "mrope_interleaved": True}),
                     vision=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=16,
                                 spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=64,
                                 num_position_embeddings=64, deepstack_visual_indexes=[0])),
        "qwen3-vl-8b": dict(text=dict(vocab_size=151936, hidden_size=4096, intermediate_size=12288,
                                      num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
                                      head_dim=128, rms_norm_eps=1e-6, max_position_embeddings=262144,
                                      rope_parameters={"rope_type": "default", "rope_theta": 5e6,
                                                       "mrope_section": [24, 20, 20], "mrope_interleaved": True}),
                            vision=dict(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16,
                                        patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
                                        out_hidden_size=4096, num_position_embeddings=2304,
                                        deepstack_visual_indexes=[8, 16, 24])),
    },
    "llava-onevision": {
        "llava-onevision-7b": dict(text=dict(model_type="qwen2", **QWEN25_7B_TEXT, tie_word_embeddings=False,
                                             rope_parameters={"rope_type": "default", "rope_theta": 1e6}),
                                   vision=dict(model_type="siglip_vision_model", hidden_size=1152,
                                               intermediate_size=4304, num_hidden_layers=26, num_attention_heads=16,
                                               image_size=384, patch_size=14, vision_use_head=False)),
        "tiny": dict(text=dict(model_type="qwen2", vocab_size=320, hidden_size=64, intermediate_size=128,
                               num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1),
                     vision=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                                 num_hidden_layers=2, num_attention_heads=2, image_size=56, patch_size=14)),
    },
    "llava-next-video": {
        "llava-next-video-7b": dict(text=dict(model_type="llama", vocab_size=32064, hidden_size=4096,
                                              intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                                              num_key_value_heads=32, rms_norm_eps=1e-5),
                                    vision=dict(model_type="clip_vision_model", hidden_size=1024,
                                                intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                                                image_size=336, patch_size=14, projection_dim=768)),
        "tiny": dict(text=dict(model_type="llama", vocab_size=320, hidden_size=64, intermediate_size=128,
                               num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1),
                     vision=dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64,
                                 num_hidden_layers=2, num_attention_heads=2, image_size=56, patch_size=14,
                                 projection_dim=32)),
    },
    "internvl": {
        "tiny": dict(text=dict(model_type="qwen2", vocab_size=320, hidden_size=64, intermediate_size=128,
                               num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1),
                     vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                 image_size=[56, 56], patch_size=[14, 14]),
                     downsample_ratio=0.5),
        "internvl3-8b": dict(text=dict(model_type="qwen2", **QWEN25_7B_TEXT, tie_word_embeddings=False,
                                       rope_parameters={"rope_type": "default", "rope_theta": 1e6}),
                             vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                         num_attention_heads=16, image_size=[448, 448], patch_size=[14, 14]),
                             downsample_ratio=0.5),
    },
    "smolvlm2": {
        "smolvlm2-2.2b": dict(text=dict(model_type="llama", vocab_size=49280, hidden_size=2048, intermediate_size=8192,
                                        num_hidden_layers=24, num_attention_heads=32, num_key_value_heads=32,
                                        rms_norm_eps=1e-5, tie_word_embeddings=False,
                                        rope_parameters={"rope_type": "default", "rope_theta": 273768.0}),
                              vision=dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
                                          num_attention_heads=16, image_size=384, patch_size=14),
                              scale_factor=3),
        "tiny": dict(text=dict(model_type="llama", vocab_size=320, hidden_size=64, intermediate_size=128,
                               num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1),
                     vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                 image_size=64, patch_size=16),
                     scale_factor=2),
    },
}


def arch_sizes(arch: dict) -> dict:
    """The processor-facing sizes of an architecture: patch and image side of the vision tower."""
    v = dict(arch["vision"])
    for key in ("image_size", "patch_size"):
        if isinstance(v.get(key), (list, tuple)):
            v[key] = v[key][0]
    return {**arch, "vision": v}


def build_config(family, arch: dict, tokenizer):
    """The family's transformers config for `arch`, its special-token ids taken from `tokenizer`."""
    import transformers as tf

    ids = tokenizer.convert_tokens_to_ids
    vocab = max(arch["text"]["vocab_size"], len(tokenizer))
    text = dict(arch["text"], vocab_size=vocab, pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.pad_token_id)
    name = family.name
    if name == "qwen2-vl":
        return tf.Qwen2VLConfig(text_config=text, vision_config=arch["vision"], image_token_id=ids("<|image_pad|>"),
                                video_token_id=ids("<|video_pad|>"), vision_start_token_id=ids("<|vision_start|>"),
                                vision_end_token_id=ids("<|vision_end|>"), tie_word_embeddings=False)
    if name == "qwen3-vl":
        return tf.Qwen3VLConfig(text_config=text, vision_config=arch["vision"], image_token_id=ids("<|image_pad|>"),
                                video_token_id=ids("<|video_pad|>"), vision_start_token_id=ids("<|vision_start|>"),
                                vision_end_token_id=ids("<|vision_end|>"), tie_word_embeddings=False)
    if name == "llava-onevision":
        side = arch["vision"]["image_size"]
        return tf.LlavaOnevisionConfig(text_config=text, vision_config=arch["vision"], image_token_id=ids("<image>"),
                                       video_token_id=ids("<video>"), vision_feature_select_strategy="full",
                                       vision_feature_layer=-1,
                                       image_grid_pinpoints=[[side, side], [side, 2 * side], [2 * side, side]])
    if name == "llava-next-video":
        side = arch["vision"]["image_size"]
        return tf.LlavaNextVideoConfig(text_config=text, vision_config=arch["vision"], image_token_id=ids("<image>"),
                                       video_token_id=ids("<video>"), vision_feature_select_strategy="default",
                                       vision_feature_layer=-2, spatial_pool_stride=2,
                                       image_grid_pinpoints=[[side, side], [side, 2 * side], [2 * side, side]],
                                       image_seq_length=(side // arch["vision"]["patch_size"]) ** 2)
    if name == "internvl":
        v = arch["vision"]
        tokens = int((v["image_size"][0] // v["patch_size"][0]) ** 2 * arch["downsample_ratio"] ** 2)
        return tf.InternVLConfig(text_config=text, vision_config=v, image_token_id=ids("<IMG_CONTEXT>"),
                                 downsample_ratio=arch["downsample_ratio"], image_seq_length=tokens,
                                 tie_word_embeddings=text.get("tie_word_embeddings", True))
    if name == "smolvlm2":
        return tf.SmolVLMConfig(text_config=text, vision_config=arch["vision"], image_token_id=ids("<image>"),
                                scale_factor=arch["scale_factor"], pad_token_id=tokenizer.pad_token_id)
    raise ValueError(f"no architecture builder for family {name!r}")
