"""Building the mini Qwen2.5-VL offline: tokenizer, processor and a small config of the real architecture.

A byte-level BPE tokenizer (the 256 bytes plus merges learned on chat-rendered needle prompts, plus Qwen's special
tokens), Qwen2.5-VL's chat template, Qwen2-VL image/video processors sized for 128x128 frames (patch 16, so a frame
passes unresized) and a `Qwen2_5_VLConfig` of `Sizes` (3-D rope with mrope sections, temporal patches of 2 frames,
2x2 merger). The chat format and the builders are the backbone's (`backbones.qwen2_5_vl.chat`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from backbones.qwen2_5_vl import chat
from harness.miniworld.qwen.world import DESCRIBE
from tasks.needle import NeedleTask, make_samples, make_specs

FRAME = 128  # needle frames are 128x128
PATCH, MERGE = 16, 2  # 128 px = 4 merged units of 32 px: frames pass the processor without resampling
MIN_PIXELS, MAX_PIXELS = (PATCH * MERGE) ** 2, FRAME * FRAME


@dataclass(frozen=True)
class Sizes:
    """Model widths and depths; the defaults are the shipped model, tests use smaller ones."""

    text_hidden: int = 128
    text_layers: int = 4  # answering takes ~3 attention hops (option <- frames, line end <- letter, answer <- line)
    text_heads: int = 4  # head_dim 32: mrope sections (4, 6, 6) cover its 16 frequencies
    text_intermediate: int = 384
    vision_hidden: int = 96
    vision_depth: int = 2
    vision_heads: int = 3
    vision_intermediate: int = 192
    merges: int = 400


def needle_texts(n_videos: int = 200, seed: int = 0) -> list[str]:
    """Chat-rendered needle prompts with answers (and describe examples): the corpus the BPE merges are learned on."""
    task = NeedleTask(split="train", videos=n_videos, seed=seed)

    def turn(prompt, answer):
        return (f"<|im_start|>system\n{chat.SYSTEM}<|im_end|>\n<|im_start|>user\n{prompt}<|im_end|>\n"
                f"<|im_start|>assistant\n{answer}<|im_end|>\n")

    texts = []
    for spec in make_specs("train", n_videos, seed):
        texts += [turn(task.prompt(s), s.answer_letter) for s in make_samples(spec)]
        texts.append(turn(DESCRIBE, ", ".join(e.name for e in spec.events)))
    return texts


def build_processor(tokenizer, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS):
    """Qwen's processor for needle frames: patch 16, 2x2 merger, frames of up to 128x128 kept as they are."""
    return chat.build_processor(tokenizer, PATCH, min_pixels, max_pixels, MERGE)


def load_processor(folder):
    """The processor a saved mini Qwen folder holds."""
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(folder)


def mini_config(tokenizer, sizes: Sizes = Sizes()):
    from transformers import Qwen2_5_VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in chat.SPECIAL_TOKENS}
    half = sizes.text_hidden // sizes.text_heads // 2  # rotary frequencies per head
    # Qwen's split of its 64 frequencies, (16, 24, 24), scaled: a quarter for time, the rest for height and width
    mrope = [half // 4, (half - half // 4) // 2, half - half // 4 - (half - half // 4) // 2]
    return Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=sizes.text_hidden, intermediate_size=sizes.text_intermediate,
            num_hidden_layers=sizes.text_layers, num_attention_heads=sizes.text_heads,
            num_key_value_heads=sizes.text_heads, max_position_embeddings=32768,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
            tie_word_embeddings=True),
        vision_config=dict(
            depth=sizes.vision_depth, hidden_size=sizes.vision_hidden, intermediate_size=sizes.vision_intermediate,
            num_heads=sizes.vision_heads, patch_size=PATCH, spatial_merge_size=MERGE, temporal_patch_size=2,
            tokens_per_second=2, window_size=FRAME, fullatt_block_indexes=[sizes.vision_depth - 1],
            out_hidden_size=sizes.text_hidden),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=True)


def build_mini_qwen(out_dir, seed: int = 0, sizes: Sizes = Sizes(), corpus_videos: int = 200):
    """Write a randomly initialised mini Qwen2.5-VL + processor to `out_dir`; returns (model, processor)."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    processor = build_processor(chat.build_tokenizer(needle_texts(corpus_videos, seed), sizes.merges))
    with torch.random.fork_rng(devices=[]):  # seed locally: don't disturb the caller's global RNG
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(mini_config(processor.tokenizer, sizes))
    model.generation_config.do_sample = False
    model.generation_config.eos_token_id = processor.tokenizer.eos_token_id
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    save(model, processor, out_dir)
    return model, processor


def save(model, processor, out_dir) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)  # safetensors
    processor.save_pretrained(out)
    return out
