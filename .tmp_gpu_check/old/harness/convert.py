"""Checkpoint converters behind `harness convert`.

`convert_llava_video(src, dst)`: a LLaVA-Video (LLaVA-NeXT, Qwen2 + SigLIP) checkpoint in the original layout
-> a transformers `LlavaOnevisionForConditionalGeneration` folder that the `llava-video` backbone loads.

Every tensor of the source is accounted for: renamed by the rules below, or dropped because transformers
recomputes it (rotary `inv_freq` buffers). Anything else stops the conversion with the list of unmapped keys, and
the renamed set must equal, name for name and shape for shape, what the transformers model expects (only a tied
`lm_head` may be absent). Tensors keep their dtype and shard grouping; nothing is resized or re-initialised
(unlike transformers' own LLaVA-OneVision script, which adds 64 embedding rows: Qwen2's padded vocabulary
already holds the `<image>` and `<video>` ids). The original's video settings that transformers has no config
field for (pooling, newline position, length limit, ...) go to `llava_video.json`.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Callable

from harness.errors import HarnessError

# Original name prefix -> transformers name prefix (the original `LlavaQwenForCausalLM` is a Qwen2ForCausalLM whose
# `model` also holds the vision tower, the projector `mm_projector` = Sequential(Linear, GELU, Linear) and the
# newline embedding).
KEY_RULES = (
    ("model.vision_tower.vision_tower.vision_model.", "model.vision_tower."),
    ("model.mm_projector.0.", "model.multi_modal_projector.linear_1."),
    ("model.mm_projector.2.", "model.multi_modal_projector.linear_2."),
    ("model.embed_tokens.", "model.language_model.embed_tokens."),
    ("model.layers.", "model.language_model.layers."),
    ("model.norm.", "model.language_model.norm."),
    ("lm_head.", "lm_head."),
)
EXACT_KEYS = {"model.image_newline": "model.image_newline"}
DROPPED_SUFFIXES = (".rotary_emb.inv_freq",)  # buffers transformers rebuilds from the config

# Qwen2 fields of the original config.json that describe the language model (the rest is LLaVA's).
TEXT_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
             "num_key_value_heads", "hidden_act", "max_position_embeddings", "rms_norm_eps", "rope_theta",
             "rope_scaling", "tie_word_embeddings", "use_sliding_window", "sliding_window", "max_window_layers",
             "attention_dropout", "initializer_range", "bos_token_id", "eos_token_id")
# Vision towers named by hub id in original configs, as LLaVA loads them (before it deletes the last layer).
KNOWN_TOWERS = {
    "google/siglip-so400m-patch14-384": dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
                                             num_attention_heads=16, patch_size=14, image_size=384,
                                             hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6),
}
SIGLIP_MEAN = SIGLIP_STD = [0.5, 0.5, 0.5]  # the original SigLipImageProcessor's normalisation
VIDEO_SETTINGS = ("mm_spatial_pool_mode", "mm_spatial_pool_stride", "image_aspect_ratio", "image_grid_pinpoints",
                  "tokenizer_model_max_length", "mm_vision_select_layer", "mm_vision_select_feature",
                  "mm_projector_type", "mm_vision_tower")
CHAT_TEMPLATE = (  # qwen_1_5 (conv_qwen) for plain-transformers users; the backbone renders its own templates
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}{% if part['type'] == 'video' %}<video>\n"
    "{% elif part['type'] == 'image' %}<image>\n{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def map_key(key: str) -> str | None:
    """The transformers name of an original tensor; None for a dropped buffer; KeyError if no rule applies."""
    if key in EXACT_KEYS:
        return EXACT_KEYS[key]
    if key.endswith(DROPPED_SUFFIXES):
        return None
    for old, new in KEY_RULES:
        if key.startswith(old):
            return new + key[len(old):]
    raise KeyError(key)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise HarnessError(f"unreadable {path}: {e}") from None


def weight_shards(src: Path) -> list[Path]:
    """The checkpoint's safetensors files: those its index names, else the single model.safetensors (or every
    *.safetensors file when there is no index)."""
    index = src / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(_read_json(index).get("weight_map", {}).values()))
        if not names:
            raise HarnessError(f"{index} maps no tensors")
        missing = [n for n in names if not (src / n).is_file()]
        if missing:
            raise HarnessError(f"{src} lacks shards named in its index: {', '.join(missing)}")
        return [src / n for n in names]
    files = sorted(src.glob("*.safetensors"))
    if not files:
        raise HarnessError(f"{src} has no safetensors weights (*.bin checkpoints are not supported)")
    return files


def vision_tower_config(name: str, src: Path) -> dict:
    """The SigLIP config the original would load for `mm_vision_tower`: a local folder's config.json (absolute,
    or relative to the checkpoint), else a known hub id."""
    for folder in (Path(name), src / name):
        if (folder / "config.json").is_file():
            cfg = _read_json(folder / "config.json")
            cfg = cfg.get("vision_config", cfg) if cfg.get("model_type") == "siglip" else cfg
            if cfg.get("model_type") not in (None, "siglip_vision_model"):
                raise HarnessError(f"vision tower {name!r} is a {cfg.get('model_type')!r}, not SigLIP")
            keys = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "patch_size",
                    "image_size", "hidden_act", "layer_norm_eps")
            return {k: cfg[k] for k in keys if k in cfg}
    if name in KNOWN_TOWERS:
        return dict(KNOWN_TOWERS[name])
    raise HarnessError(f"unknown vision tower {name!r}: only SigLIP towers are supported (known: "
                       f"{', '.join(KNOWN_TOWERS)}, or a local folder with its config.json)")


def check_original_config(cfg: dict, src: Path) -> None:
    if "mm_vision_tower" not in cfg:
        if cfg.get("model_type") == "llava_onevision":
            raise HarnessError(f"{src} is already in the transformers LLaVA-OneVision layout; nothing to convert")
        raise HarnessError(f"{src}/config.json has no mm_vision_tower: not an original LLaVA-NeXT checkpoint")
    arch = " ".join(cfg.get("architectures") or [])
    if "Qwen" not in arch and "qwen" not in str(cfg.get("model_type", "")):
        raise HarnessError(f"{src} is a {arch or cfg.get('model_type')!r} checkpoint; only Qwen2 LLaVA models "
                           f"(LlavaQwenForCausalLM) convert to LLaVA-OneVision")
    if cfg.get("mm_projector_type", "linear") != "mlp2x_gelu":
        raise HarnessError(f"projector {cfg.get('mm_projector_type', 'linear')!r} is not supported (only mlp2x_gelu)")


def vision_shapes(shapes: dict) -> dict:
    """Vision tower sizes read off the tensors themselves (original names)."""
    pre = "model.vision_tower.vision_tower.vision_model."
    try:
        patch = shapes[pre + "embeddings.patch_embedding.weight"]
        positions = shapes[pre + "embeddings.position_embedding.weight"][0]
        fc1 = shapes[pre + "encoder.layers.0.mlp.fc1.weight"]
    except KeyError as e:
        raise HarnessError(f"the checkpoint lacks vision tower tensor {e.args[0]!r}") from None
    layers = {int(m.group(1)) for k in shapes if (m := re.match(re.escape(pre) + r"encoder\.layers\.(\d+)\.", k))}
    side = round(positions ** 0.5)
    return dict(hidden_size=patch[0], patch_size=patch[-1], image_size=side * patch[-1], intermediate_size=fc1[0],
                num_hidden_layers=len(layers))


def build_config(cfg: dict, src: Path, shapes: dict, tokenizer):
    """LlavaOnevisionConfig of the converted model: text from the original config, vision from the tower's config
    checked against the tensors, special-token ids from the tokenizer."""
    from transformers import LlavaOnevisionConfig

    tower = vision_tower_config(str(cfg["mm_vision_tower"]), src)
    found = vision_shapes(shapes)
    # The original deletes the tower's last layer when loading it, so the checkpoint holds one layer fewer.
    expect = dict(tower, num_hidden_layers=tower["num_hidden_layers"] - 1)
    wrong = {k: (expect[k], found[k]) for k in found if k in expect and expect[k] != found[k]}
    if wrong:
        raise HarnessError("vision tower tensors do not match its config (config, tensors): " +
                           ", ".join(f"{k} {a} vs {b}" for k, (a, b) in wrong.items()))
    vision = dict(expect, model_type="siglip_vision_model", vision_use_head=False)
    text = {k: cfg[k] for k in TEXT_KEYS if k in cfg and cfg[k] is not None}
    text["model_type"] = "qwen2"
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<image>", "<video>")}
    text.setdefault("pad_token_id", tokenizer.pad_token_id)
    aspect = str(cfg.get("image_aspect_ratio", ""))
    extra = {"vision_aspect_ratio": aspect} if aspect.startswith("anyres_max") else {}
    if cfg.get("image_grid_pinpoints"):
        extra["image_grid_pinpoints"] = cfg["image_grid_pinpoints"]
    try:
        return LlavaOnevisionConfig(
            text_config=text, vision_config=vision, image_token_index=ids["<image>"], video_token_index=ids["<video>"],
            vision_feature_layer=-1, vision_feature_select_strategy="full", projector_hidden_act="gelu",
            multimodal_projector_bias=True, tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)), **extra)
    except Exception as e:
        raise HarnessError(f"cannot build the LLaVA-OneVision config: {' '.join(str(e).split())}") from None


def load_tokenizer(src: Path, vocab_size: int):
    """The checkpoint's tokenizer plus `<image>` and `<video>` special tokens, which must fit the vocabulary."""
    from transformers import AddedToken, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(src)
    except Exception as e:
        raise HarnessError(f"cannot load the tokenizer in {src}: {' '.join(str(e).split())}") from None
    new = [AddedToken(t, special=True, normalized=False) for t in ("<image>", "<video>")
           if t not in tokenizer.get_vocab()]
    if new:
        tokenizer.add_tokens(new, special_tokens=True)
    for t in ("<image>", "<video>"):
        if tokenizer.convert_tokens_to_ids(t) >= vocab_size:
            raise HarnessError(f"token {t} gets id {tokenizer.convert_tokens_to_ids(t)}, outside the model's "
                               f"{vocab_size}-row vocabulary")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = "<|endoftext|>"  # lmms-eval sets Qwen's pad id to 151643 = <|endoftext|>
    return tokenizer


def convert_llava_video(src, dst, *, overwrite: bool = False, log: Callable[[str], None] | None = None) -> dict:
    """Convert an original-layout LLaVA-Video checkpoint folder `src` to a transformers LLaVA-OneVision folder
    `dst` (written whole to a temporary sibling, then renamed). Returns a summary: dst, tensors written, dropped
    buffers, shards."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file
    from transformers import LlavaOnevisionForConditionalGeneration

    log = log or (lambda _: None)
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise HarnessError(f"checkpoint folder {src} not found")
    if not (src / "config.json").is_file():
        raise HarnessError(f"{src} has no config.json: not a checkpoint folder")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())) and not overwrite:
        raise HarnessError(f"{dst} exists and is not empty (pass overwrite to replace it)")
    cfg = _read_json(src / "config.json")
    check_original_config(cfg, src)
    shards = weight_shards(src)

    # Pass 1: names and shapes only, so a bad checkpoint fails before anything is written.
    shapes, mapped, dropped, unmapped = {}, {}, [], []
    for shard in shards:
        with safe_open(str(shard), framework="pt") as f:
            for key in f.keys():
                shapes[key] = tuple(f.get_slice(key).get_shape())
                try:
                    new = map_key(key)
                except KeyError:
                    unmapped.append(key)
                    continue
                if new is None:
                    dropped.append(key)
                else:
                    mapped[key] = new
    if unmapped:
        raise HarnessError(f"{len(unmapped)} tensors have no transformers name: {', '.join(sorted(unmapped))}")
    vocab = int(cfg.get("vocab_size", 0)) or shapes.get("model.embed_tokens.weight", (0,))[0]
    tokenizer = load_tokenizer(src, vocab)
    config = build_config(cfg, src, shapes, tokenizer)
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in LlavaOnevisionForConditionalGeneration(config).state_dict().items()}
    got = {new: shapes[old] for old, new in mapped.items()}
    missing = sorted(set(expected) - set(got) - ({"lm_head.weight"} if config.tie_word_embeddings else set()))
    extra = sorted(set(got) - set(expected))
    bad = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])
    if missing or extra or bad:
        raise HarnessError("the checkpoint does not match the LLaVA-OneVision model: " + "; ".join(
            part for part in (f"missing {', '.join(missing)}" if missing else "",
                              f"no place for {', '.join(extra)}" if extra else "",
                              "shape differs for " + ", ".join(f"{k} {got[k]} vs {expected[k]}" for k in bad)
                              if bad else "") if part))

    tmp = dst.parent / f".{dst.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        # Pass 2: one shard at a time (a 7B checkpoint never sits in memory whole), same grouping, same dtypes.
        names = (["model.safetensors"] if len(shards) == 1 else
                 [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))])
        weight_map, total = {}, 0
        for shard, name in zip(shards, names):
            log(f"converting {shard.name} -> {name}")
            tensors = {}
            with safe_open(str(shard), framework="pt") as f:
                for key in f.keys():
                    if key in mapped:
                        tensors[mapped[key]] = f.get_tensor(key).contiguous()
            save_file(tensors, str(tmp / name), metadata={"format": "pt"})
            for k, t in tensors.items():
                weight_map[k] = name
                total += t.numel() * t.element_size()
        if len(shards) > 1:
            (tmp / "model.safetensors.index.json").write_text(json.dumps(
                {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, indent=2))
        config.save_pretrained(tmp)
        save_processor(tokenizer, config, tmp)
        if (src / "generation_config.json").is_file():
            from transformers import GenerationConfig

            GenerationConfig.from_pretrained(src).save_pretrained(tmp)
        settings = {k: cfg.get(k) for k in VIDEO_SETTINGS}
        # The original's defaults where the config is silent (llava_arch.py reads them with getattr).
        settings["mm_newline_position"] = cfg.get("mm_newline_position", "one_token")
        settings["mm_patch_merge_type"] = cfg.get("mm_patch_merge_type", "flat")
        settings.update(image_mean=SIGLIP_MEAN, image_std=SIGLIP_STD, converted_from=str(src.resolve()),
                        tensors=len(mapped), dropped=sorted(dropped))
        (tmp / "llava_video.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
        if dst.exists():
            shutil.rmtree(dst) if dst.is_dir() else dst.unlink()
        os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"wrote {len(mapped)} tensors ({len(dropped)} buffers dropped) to {dst}")
    return {"dst": str(dst), "tensors": len(mapped), "dropped": len(dropped), "shards": len(shards)}


def save_processor(tokenizer, config, folder: Path) -> None:
    """A LLaVA-OneVision processor with the original's SigLIP preprocessing settings (384 square, mean/std 0.5),
    so the folder also opens with AutoProcessor. The `llava-video` backbone preprocesses frames itself."""
    from transformers import LlavaOnevisionImageProcessor, LlavaOnevisionProcessor, LlavaOnevisionVideoProcessor

    vision = config.vision_config
    size = {"height": vision.image_size, "width": vision.image_size}
    common = dict(image_mean=SIGLIP_MEAN, image_std=SIGLIP_STD, size=size)
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(**common), video_processor=LlavaOnevisionVideoProcessor(**common),
        tokenizer=tokenizer, num_image_tokens=(vision.image_size // vision.patch_size) ** 2,
        vision_feature_select_strategy="full", chat_template=CHAT_TEMPLATE)
    processor.save_pretrained(folder)
