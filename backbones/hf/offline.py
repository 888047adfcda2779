"""Processors built here, offline, for `config=tiny` and for `random_init` without a folder: a byte-level tokenizer
(the 256 byte symbols, no merges) with each family's special tokens, the family's own image and video processor
classes (transformers), and a chat template in the family's conversation format (`TEMPLATES`).

A model folder brings its own tokenizer and chat template; these are only for models built here, so tests and
random-weight throughput runs never touch the hub. Token ids differ from the real vocabularies, so only sequence
layouts and costs mean anything.
"""
from __future__ import annotations

# One user turn: `open` + the media placeholder + `sep` + the text + `close`, then `assistant` opens the reply.
# `system`: a default system turn (None: none). Written from each family's published chat format.
TEMPLATES = {
    "qwen": dict(system="<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n", open="<|im_start|>user\n",
                 video="<|vision_start|><|video_pad|><|vision_end|>",
                 image="<|vision_start|><|image_pad|><|vision_end|>", sep="", close="<|im_end|>\n",
                 assistant="<|im_start|>assistant\n"),
    "qwen3": dict(system=None, open="<|im_start|>user\n", video="<|vision_start|><|video_pad|><|vision_end|>",
                  image="<|vision_start|><|image_pad|><|vision_end|>", sep="", close="<|im_end|>\n",
                  assistant="<|im_start|>assistant\n"),
    "onevision": dict(system="<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n", open="<|im_start|>user ",
                      video="<video>", image="<image>", sep="\n", close="<|im_end|>\n",
                      assistant="<|im_start|>assistant\n"),
    "vicuna": dict(system=None, open="USER: ", video="<video>", image="<image>", sep="\n", close=" ",
                   assistant="ASSISTANT:"),
    "internvl": dict(system=None, open="<|im_start|>user\n", video="<video>", image="<IMG_CONTEXT>", sep="\n",
                     close="<|im_end|>\n", assistant="<|im_start|>assistant\n"),
    "smolvlm": dict(system=None, open="<|im_start|>User:", video="<video>", image="<image>", sep="",
                    close="<end_of_utterance>\n", assistant="Assistant:"),
}

QWEN_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")
SPECIAL = {  # family -> (special tokens, eos, pad, named attributes the processor reads from the tokenizer)
    "qwen": (QWEN_SPECIAL, "<|im_end|>", "<|endoftext|>", {}),
    "qwen3": (QWEN_SPECIAL, "<|im_end|>", "<|endoftext|>", {}),
    "onevision": (("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"), "<|im_end|>",
                  "<|endoftext|>", {"image_token": "<image>", "video_token": "<video>"}),
    "vicuna": (("<unk>", "<s>", "</s>", "<image>", "<video>"), "</s>", "<unk>",
               {"image_token": "<image>", "video_token": "<video>"}),
    "internvl": (("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"),
                 "<|im_end|>", "<|endoftext|>",
                 {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
                  "video_token": "<video>"}),
    "smolvlm": (("<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>",
                 "<global-img>", "<video>",
                 *(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7))), "<end_of_utterance>",
                "<|endoftext|>", {"fake_image_token": "<fake_token_around_image>", "image_token": "<image>",
                                  "global_image_token": "<global-img>", "end_of_utterance_token": "<end_of_utterance>",
                                  "video_token": "<video>"}),
}


def chat_template(style: str) -> str:
    """A Jinja chat template for one of `TEMPLATES`: every message's media first, then its text."""
    t = TEMPLATES[style]
    system = "" if t["system"] is None else (
        "{% if messages[0]['role'] != 'system' %}" + t["system"] + "{% endif %}")
    return (system + "{% for message in messages %}"
            "{% if message['role'] == 'assistant' %}" + t["assistant"] + "{{ message['content'][0]['text'] }}"
            "{% else %}" + t["open"] +
            "{% for part in message['content'] %}{% if part['type'] == 'video' %}" + t["video"] + t["sep"] +
            "{% elif part['type'] == 'image' %}" + t["image"] + t["sep"] + "{% endif %}{% endfor %}"
            "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
            "{% endfor %}" + t["close"] + "{% endif %}{% endfor %}"
            "{% if add_generation_prompt %}" + t["assistant"] + "{% endif %}")


def byte_tokenizer(style: str):
    """Byte-level BPE over the 256 bytes (no merges) plus the family's special tokens, as a transformers tokenizer
    carrying the named tokens its processor reads (`image_token`, `start_image_token`, ...)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    special, eos, pad, named = SPECIAL[style]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={s: i for i, s in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(special))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, pad_token=pad, model_max_length=32768,
                                   extra_special_tokens=dict(named))


def build_processor(family, arch: dict):
    """The family's processor classes around `byte_tokenizer`, sized by the architecture `arch` (configs.py)."""
    import transformers as tf

    tokenizer = byte_tokenizer(family.template)
    template = chat_template(family.template)
    v = arch["vision"]
    if family.name in ("qwen2-vl", "qwen3-vl"):
        merge, patch = v["spatial_merge_size"], v["patch_size"]
        common = dict(patch_size=patch, temporal_patch_size=v["temporal_patch_size"], merge_size=merge)
        low, high = 4 * (patch * merge) ** 2, 16 * (patch * merge) ** 2
        if family.name == "qwen2-vl":
            image = tf.Qwen2VLImageProcessor(size={"shortest_edge": low, "longest_edge": high}, **common)
            video = tf.Qwen2VLVideoProcessor(size={"shortest_edge": low, "longest_edge": high}, **common,
                                             cap_pixels_per_frame=False)
            return tf.Qwen2VLProcessor(image_processor=image, video_processor=video, tokenizer=tokenizer,
                                       chat_template=template)
        image = tf.Qwen2VLImageProcessor(size={"shortest_edge": low, "longest_edge": high}, **common,
                                         image_mean=[0.5] * 3, image_std=[0.5] * 3)
        video = tf.Qwen3VLVideoProcessor(size={"shortest_edge": low, "longest_edge": high * 64}, **common,
                                         cap_pixels_per_frame=False, image_mean=[0.5] * 3, image_std=[0.5] * 3)
        return tf.Qwen3VLProcessor(image_processor=image, video_processor=video, tokenizer=tokenizer,
                                   chat_template=template)
    side = v["image_size"]
    if family.name == "llava-onevision":
        grid = [[side, side], [side, 2 * side], [2 * side, side]]
        image = tf.LlavaOnevisionImageProcessor(size={"height": side, "width": side}, image_grid_pinpoints=grid)
        video = tf.LlavaOnevisionVideoProcessor(size={"height": side, "width": side})
        return tf.LlavaOnevisionProcessor(image_processor=image, video_processor=video, tokenizer=tokenizer,
                                          chat_template=template, num_image_tokens=(side // v["patch_size"]) ** 2,
                                          vision_feature_select_strategy="full")
    if family.name == "llava-next-video":
        grid = [[side, side], [side, 2 * side], [2 * side, side]]
        image = tf.LlavaNextImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side},
                                           image_grid_pinpoints=grid)
        video = tf.LlavaNextVideoVideoProcessor(size={"shortest_edge": side},
                                                crop_size={"height": side, "width": side})
        return tf.LlavaNextVideoProcessor(video_processor=video, image_processor=image, tokenizer=tokenizer,
                                          chat_template=template, patch_size=v["patch_size"],
                                          vision_feature_select_strategy="default", num_additional_image_tokens=1)
    if family.name == "internvl":
        image = tf.GotOcr2ImageProcessor(size={"height": side, "width": side}, crop_to_patches=False)
        video = tf.InternVLVideoProcessor(size={"height": side, "width": side})
        tokens = int((side // v["patch_size"]) ** 2 * arch["downsample_ratio"] ** 2)
        return tf.InternVLProcessor(image_processor=image, video_processor=video, tokenizer=tokenizer,
                                    chat_template=template, image_seq_length=tokens)
    if family.name == "smolvlm2":
        sampling = {"fps": 1, "max_frames": 64, "video_size": {"longest_edge": side}}
        image = tf.SmolVLMImageProcessor(size={"longest_edge": side}, max_image_size={"longest_edge": side},
                                         do_image_splitting=False)
        video = tf.SmolVLMVideoProcessor(size={"longest_edge": side}, max_image_size={"longest_edge": side},
                                         video_sampling=sampling)
        tokens = int((side // v["patch_size"]) ** 2 / arch["scale_factor"] ** 2)
        return tf.SmolVLMProcessor(image_processor=image, video_processor=video, tokenizer=tokenizer,
                                   chat_template=template, image_seq_len=tokens)
    raise ValueError(f"no offline processor for family {family.name!r}")
