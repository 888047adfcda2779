"""Qwen2.5-VL architectures with random weights (`random_init=true`): throughput work without a checkpoint
(`harness bench`, the TSPO training-step timing), and CPU tests of the real-size path at toy size.

Everything is offline: the processor takes the shipped mini model's byte-level BPE tokenizer (Qwen's special tokens;
token ids differ from Qwen's real vocabulary, so only sequence lengths and costs are meaningful) and Qwen's chat
template; the model is built from the named config, seeded, straight on its device.
"""
from __future__ import annotations

# Qwen2.5-VL-7B-Instruct's architecture (its config.json), for `random_init` throughput work without weights.
CONFIGS = {
    "qwen2.5-vl-7b": dict(
        text=dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                  num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=128000, rms_norm_eps=1e-6,
                  rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
                  tie_word_embeddings=False),
        vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, patch_size=14,
                    spatial_merge_size=2, temporal_patch_size=2, window_size=112, tokens_per_second=2,
                    fullatt_block_indexes=[7, 15, 23, 31], out_hidden_size=3584, hidden_act="silu"),
        patch=14),
    # the same family at toy size, for CPU tests of the random-init path
    "qwen2.5-vl-tiny": dict(
        text=dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, max_position_embeddings=4096, rms_norm_eps=1e-6,
                  rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]},
                  tie_word_embeddings=False),
        vision=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=14, spatial_merge_size=2,
                    temporal_patch_size=2, window_size=112, tokens_per_second=2, fullatt_block_indexes=[1],
                    out_hidden_size=64, hidden_act="silu"),
        patch=14),
}


def random_processor(patch: int, min_pixels: int, max_pixels: int):
    """An offline processor for a random-init model: the shipped mini model's tokenizer (Qwen's special tokens over
    a small byte-level BPE) and Qwen's chat template."""
    from backbones.qwen2_5_vl.chat import build_processor, load_tokenizer
    from harness.shipped import SHIPPED

    return build_processor(load_tokenizer(SHIPPED["mini-qwen2.5-vl"]), patch, min_pixels, max_pixels)


def random_model(name: str, tokenizer, dtype, device, attn_implementation: str):
    """The named architecture with random weights, built directly on `device`; special-token ids follow the
    offline tokenizer."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    arch = CONFIGS[name]
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in
           ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|endoftext|>", "<|im_end|>")}
    special = dict(bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    config = Qwen2_5_VLConfig(text_config=dict(arch["text"], **special), vision_config=arch["vision"],
                              image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                              vision_start_token_id=ids["<|vision_start|>"],
                              vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=False, **special)
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(0)
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype,
                                                                attn_implementation=attn_implementation)
    model.generation_config.eos_token_id = special["eos_token_id"]
    model.generation_config.pad_token_id = special["pad_token_id"]
    return model
