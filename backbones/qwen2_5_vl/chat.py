"""Qwen2.5-VL's conversation format and the offline pieces that speak it.

`chat_text` renders one question as the adapter asks it (one user turn: the frames as one video, then the prompt);
`build_inputs` turns a batch of them into processor output (training and `generate` both build inputs there).
Models built here rather than downloaded (the shipped mini model, the random-weight architectures of `harness
bench`) get Qwen's chat template and special tokens over a small byte-level BPE (`build_tokenizer`: the 256 bytes
plus merges learned on a corpus; `load_tokenizer`: one saved as tokenizer.json) and Qwen2-VL image/video
processors (`build_processor`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                  "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                  "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")
SYSTEM = "You are a helpful assistant."

# Qwen2.5-VL's conversation format: a default system turn, <|im_start|>role\n ... <|im_end|>\n per message, each
# image or video as <|vision_start|><|image_pad|/|video_pad|><|vision_end|> (the processor expands the pad).
CHAT_TEMPLATE = (  # no whitespace control: every newline below is one the model sees
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n" + SYSTEM + "<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or 'image' in part or 'image_url' in part %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' or 'video' in part %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in part %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def chat_text(processor, prompt: str, answer: str | None = None) -> str:
    """One user turn, the frames as one video and then the prompt (the template adds the system turn); with
    `answer`, the assistant's reply too, ending in <|im_end|> (what training predicts)."""
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": prompt}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return text if answer is None else f"{text}{answer}<|im_end|>"


def build_inputs(processor, videos: Sequence[np.ndarray], prompts: Sequence[str], answers: Sequence[str] | None = None,
                 padding_side: str = "right", **video_kwargs):
    """Processor output for a batch of questions (right-padded for training, left-padded for generation); training
    and `generate` both build inputs here."""
    for frames in videos:
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
            raise ValueError(f"frames must be (n, H, W, 3) uint8 with n >= 1, got {frames.shape} {frames.dtype}")
    answers = [None] * len(prompts) if answers is None else answers
    texts = [chat_text(processor, p, a) for p, a in zip(prompts, answers)]
    return processor(text=texts, videos=list(videos), padding=True, padding_side=padding_side, return_tensors="pt",
                     **video_kwargs)


def _split_special(text: str) -> list[str]:
    parts = [text]
    for sp in SPECIAL_TOKENS:
        parts = [p for part in parts for p in part.split(sp)]
    return [p for p in parts if p]


def _qwen_tokenizer(tok):
    """A `tokenizers` byte-level BPE as the transformers tokenizer the processor takes, with Qwen's end and pad."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   model_max_length=32768)


def build_tokenizer(texts: list[str], merges: int = 400):
    """Byte-level BPE: the 256 byte symbols, up to `merges` merges learned on `texts`, then Qwen's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    # Special-token spellings must not feed the merges: they are single tokens anyway.
    plain = [t for text in texts for t in _split_special(text)]
    trainer = trainers.BpeTrainer(vocab_size=256 + merges, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(plain, trainer)
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return _qwen_tokenizer(tok)


def load_tokenizer(folder):
    """A tokenizer `build_tokenizer` made and a model folder saved (its tokenizer.json), read with the `tokenizers`
    library alone, so any transformers version takes it."""
    from pathlib import Path

    from tokenizers import Tokenizer

    return _qwen_tokenizer(Tokenizer.from_file(str(Path(folder) / "tokenizer.json")))


def build_processor(tokenizer, patch: int, min_pixels: int, max_pixels: int, merge: int = 2):
    """Qwen2-VL image and video processors (temporal patches of 2 frames, `merge` x `merge` merger) resizing each
    frame into [min_pixels, max_pixels], with `tokenizer` and Qwen's chat template."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    common = dict(size={"shortest_edge": min_pixels, "longest_edge": max_pixels}, patch_size=patch,
                  temporal_patch_size=2, merge_size=merge)
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**common),
        # no per-video pixel cap: a frame's size must not depend on how many frames were selected
        video_processor=Qwen2VLVideoProcessor(**common, cap_pixels_per_frame=False),
        tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)
