"""Building a LLaVA-Video model without the published weights, and checking a converted folder: the random-weight
presets (`llava-video-7b`: Qwen2-7B + SigLIP-so400m-384; `tiny` for CPU tests), an offline byte-level tokenizer
with Qwen2's special tokens, and the original's video settings (`llava_video.json`, written by the converter)."""
from __future__ import annotations

import json
from pathlib import Path

from backbones.llava_video.prompt import IMAGE_TOKEN, VIDEO_TOKEN
from backbones.llava_video.vision import SIGLIP_MEAN, SIGLIP_STD
from harness.errors import HarnessError
from harness.util.text import one_line

SETTINGS_FILE = "llava_video.json"  # written by the converter next to the transformers files
PRESETS = ("llava-video-7b", "tiny")
QWEN_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")  # Qwen2's special tokens, in id order

# The original's settings for LLaVA-Video-7B-Qwen2 (used by random_init; a converted folder brings its own).
LLAVA_VIDEO_SETTINGS = {"mm_spatial_pool_mode": "bilinear", "mm_spatial_pool_stride": 2,
                        "mm_newline_position": "grid", "mm_patch_merge_type": "spatial_unpad",
                        "tokenizer_model_max_length": 32768, "image_mean": list(SIGLIP_MEAN),
                        "image_std": list(SIGLIP_STD)}


def byte_tokenizer():
    """An offline Qwen-like tokenizer: byte-level BPE over the 256 bytes (no merges), Qwen2's special tokens, then
    the converted checkpoint's `<image>` and `<video>`. Used by tiny models and by random_init without a folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={s: i for i, s in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([*QWEN_SPECIAL, IMAGE_TOKEN, VIDEO_TOKEN])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   model_max_length=32768)


def text_config_7b(vocab_size: int = 152064) -> dict:
    """Qwen2-7B's architecture (LLaVA-Video-7B-Qwen2's language model)."""
    return dict(model_type="qwen2", vocab_size=vocab_size, hidden_size=3584, intermediate_size=18944,
                num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4, hidden_act="silu",
                max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=False)


def vision_config_so400m(layers: int = 26) -> dict:
    """SigLIP-so400m-patch14-384 as LLaVA uses it: 26 of its 27 layers (the original deletes the last), no head."""
    return dict(model_type="siglip_vision_model", hidden_size=1152, intermediate_size=4304, num_hidden_layers=layers,
                num_attention_heads=16, patch_size=14, image_size=384, hidden_act="gelu_pytorch_tanh",
                layer_norm_eps=1e-6, vision_use_head=False)


def preset_config(name: str, tokenizer):
    """A LlavaOnevisionConfig by preset name, its special-token ids taken from `tokenizer`."""
    from transformers import LlavaOnevisionConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in (*QWEN_SPECIAL, IMAGE_TOKEN, VIDEO_TOKEN)}
    if name == "llava-video-7b":
        text, vision = text_config_7b(max(152064, len(tokenizer))), vision_config_so400m()
    elif name == "tiny":  # an odd 5x5 patch grid, like 27x27, so bilinear (3x3) and average (2x2) pooling differ
        text = dict(model_type="qwen2", vocab_size=max(272, len(tokenizer)), hidden_size=32, intermediate_size=64,
                    num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, hidden_act="silu",
                    max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=False)
        vision = dict(model_type="siglip_vision_model", hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, patch_size=14, image_size=70, hidden_act="gelu_pytorch_tanh",
                      layer_norm_eps=1e-6, vision_use_head=False)
    else:
        raise HarnessError(f"unknown llava-video config preset {name!r} (known: {', '.join(PRESETS)})")
    text.update(bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    return LlavaOnevisionConfig(text_config=text, vision_config=vision, image_token_index=ids[IMAGE_TOKEN],
                                video_token_index=ids[VIDEO_TOKEN], vision_feature_layer=-1,
                                vision_feature_select_strategy="full", projector_hidden_act="gelu",
                                multimodal_projector_bias=True, tie_word_embeddings=False)


def read_settings(folder: Path) -> dict:
    path = folder / SETTINGS_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise HarnessError(f"unreadable {path}: {e}") from None


def check_folder(model: str) -> Path:
    """The converted folder, or a HarnessError that says what is wrong with it."""
    folder = Path(model)
    if not folder.is_dir():
        raise HarnessError(f"llava-video model folder {model!r} not found (convert the published checkpoint with "
                           f"`harness convert llava-video SRC DST` and pass DST)")
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise HarnessError(f"{folder} has no config.json: not a model folder")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise HarnessError(f"unreadable {cfg_path}: {e}") from None
    if "mm_vision_tower" in cfg:
        raise HarnessError(f"{folder} is in the original LLaVA-NeXT layout; convert it first with "
                           f"`harness convert llava-video {folder} DST`")
    if cfg.get("model_type") != "llava_onevision":
        raise HarnessError(f"{folder} holds model_type {cfg.get('model_type')!r}, not llava_onevision")
    return folder


def random_model(folder: Path | None, preset: str | None, torch_dtype, build_on, attn: str, seed: int):
    """(tokenizer, model with random weights, video settings) from `folder`'s config or a preset, built on the
    target device `build_on` in `torch_dtype` (a 7B never sits in CPU memory in float32)."""
    import torch
    from transformers import AutoTokenizer, LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

    if folder is not None and preset is not None:
        raise HarnessError("random_init takes either model=FOLDER (its config) or config=PRESET, not both")
    if folder is None and preset is None:
        raise HarnessError(f"random_init needs config= (one of {', '.join(PRESETS)}) or model=FOLDER")
    if folder is not None:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        cfg = LlavaOnevisionConfig.from_pretrained(folder)
        settings = read_settings(folder)
    else:
        tokenizer = byte_tokenizer()
        cfg = preset_config(preset, tokenizer)
        settings = dict(LLAVA_VIDEO_SETTINGS)
    cfg.text_config._attn_implementation = attn
    cfg.vision_config._attn_implementation = attn
    with torch.random.fork_rng(devices=[]), torch.device(build_on):
        torch.manual_seed(seed)
        default = torch.get_default_dtype()
        torch.set_default_dtype(torch_dtype)
        try:
            model = LlavaOnevisionForConditionalGeneration(cfg)
        finally:
            torch.set_default_dtype(default)
    return tokenizer, model, settings


def load_converted(model: str, folder: Path, torch_dtype, attn: str, **placement) -> tuple:
    """(tokenizer, model) of the converted folder the `model` option names (`check_folder` found it), or a
    HarnessError saying why not."""
    from transformers import AutoTokenizer, LlavaOnevisionForConditionalGeneration

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        loaded = LlavaOnevisionForConditionalGeneration.from_pretrained(folder, dtype=torch_dtype,
                                                                        attn_implementation=attn, **placement)
    except Exception as e:  # OSError, ValueError, ...: all mean "cannot load"
        raise HarnessError(f"cannot load llava-video model {model!r}: {one_line(e)}") from None
    return tokenizer, loaded
