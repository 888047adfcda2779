"""`llava-video`: LLaVA-Video-7B-Qwen2 through transformers' LLaVA-OneVision classes, with the original's video path.

The published checkpoint is in the original LLaVA-NeXT layout; `harness convert llava-video SRC DST`
(`harness.convert.convert_llava_video`) turns it into a `LlavaOnevisionForConditionalGeneration` folder plus
`llava_video.json`, which carries the original's video settings (pooling, newline position, length limit).

transformers' own LLaVA-OneVision video path differs from the original LLaVA-NeXT one that LLaVA-Video was trained
and evaluated with (docs/llava_video.md lists each difference and how it was checked), so this adapter runs the
model's parts itself and feeds the language model merged embeddings:

1. frames -> 384x384 by PIL bicubic resize (aspect ratio not kept), x/255, (x-0.5)/0.5, float32; like the
   original's `SigLipImageProcessor` (transformers' video processor resizes with torch, which differs slightly);
2. SigLIP (the checkpoint holds 26 of so400m's 27 layers) -> last hidden state before the post-layernorm;
3. the 2-layer GELU projector, then per-frame 2-D pooling: bilinear to ceil(27/2)=14 (or average / max pooling,
   floor to 13), stride and mode from `llava_video.json` (transformers hard-codes bilinear, stride 2);
4. newline embeddings per `mm_newline_position`: "grid" (LLaVA-Video: one after every row of every frame, 14x15
   tokens a frame), "frame", "one_token" (transformers' only mode: one after the whole video), "no_token";
5. the prompt: `<image>\\n` + (optional time instruction + `\\n`) + the task's text in the `qwen_1_5` or
   `chatml_direct` conversation template, the `<image>` span replaced by the visual tokens;
6. greedy decoding that stops at `<|im_end|>`, special tokens stripped from the answer.

Batches (`generate_batch`, what the fast runner calls): the vision path runs once per distinct frames object (the
runner hands the questions that share a selection one array). Questions sharing a video share their common prefix
(system turn, the visual tokens, the time instruction): it goes through the language model once per video into a
KV cache and each question continues from it (`shared_prefill`); otherwise the merged sequences go left-padded
through the language model (or one at a time above `lm_batch_tokens`). The answers are those of `generate` one by
one. The runner's hooks `frame_preparer` / `prepared_frames` move step 1 into its preprocessing thread (`FramePrep`,
the same pixels, frames split over threads) and hand `generate_batch` a small stand-in array it recognises.

Tiny random models (`random_init=True, config="tiny"`) and real-size ones without weights
(`random_init=True, config="llava-video-7b"`, for throughput work) run through the same code.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from backbones.base import Backbone
from backbones.prefix import left_pad, prefix_plan
from harness.errors import HarnessError
from harness.options import check_choices, torch_device
from harness.registry import BACKBONES

SETTINGS_FILE = "llava_video.json"  # written by the converter next to the transformers files
TEMPLATES = ("qwen_1_5", "chatml_direct")
PROMPT_STYLES = ("llava_vid", "default")
POOL_MODES = ("bilinear", "average", "max")
NEWLINE_POSITIONS = ("grid", "frame", "one_token", "no_token")
DTYPES = ("float32", "bfloat16", "float16")
ATTENTION = ("sdpa", "eager", "flash_attention_2")
PRESETS = ("llava-video-7b", "tiny")

IMAGE_TOKEN = "<image>"  # where the original's prompt text puts the video (IMAGE_TOKEN_INDEX after tokenising)
VIDEO_TOKEN = "<video>"  # the converted tokenizer's placeholder, repeated once per visual token
QWEN_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")  # Qwen2's special tokens, in id order
SIGLIP_MEAN = SIGLIP_STD = (0.5, 0.5, 0.5)

# The original's settings for LLaVA-Video-7B-Qwen2 (used by random_init; a converted folder brings its own).
LLAVA_VIDEO_SETTINGS = {"mm_spatial_pool_mode": "bilinear", "mm_spatial_pool_stride": 2,
                        "mm_newline_position": "grid", "mm_patch_merge_type": "spatial_unpad",
                        "tokenizer_model_max_length": 32768, "image_mean": list(SIGLIP_MEAN),
                        "image_std": list(SIGLIP_STD)}

_HELP = {
    "model": "folder converted with `harness convert llava-video SRC DST` (not the original layout)",
    "conv_template": "qwen_1_5 (lmms-eval's published llava_vid runs) or chatml_direct (TSPO's and AKS's runs)",
    "prompt_style": "task prompt variant: llava_vid (lmms-eval's llava_vid) or default (TSPO's llava_vid_tspo)",
    "pool_mode": "2-D pooling of each frame's projected features (None: the folder's mm_spatial_pool_mode)",
    "pool_stride": "pooling stride; 1 = no pooling (None: the folder's mm_spatial_pool_stride)",
    "newline_position": "where newline embeddings go (None: the folder's mm_newline_position)",
    "time_instruction": "prepend lmms-eval's 'The video lasts for ...' line (needs generate(..., duration=))",
    "max_new_tokens": "generation length limit",
    "random_init": "build the model from `config` (or the folder's config) with random weights",
    "config": "random_init preset: llava-video-7b (Qwen2-7B + SigLIP-so400m-384) or tiny",
    "seed": "random_init seed",
    "device": "torch device (cpu, cuda, cuda:1, ...)",
    "dtype": "weights and activations; the original evaluations ran float16",
    "attn_implementation": "attention kernel of both towers",
    "lm_batch_tokens": "generate_batch: questions longer than this many tokens go through the language model one at "
                       "a time, vision still once per video (None: the whole batch left-padded)",
    "devices": "GPUs this replica spans, layer by layer (set by harness run --gpus-per-replica)",
}


# ---------------------------------------------------------------------------------------------------- prompt

def time_instruction(duration: float, timestamps: Sequence[float]) -> str:
    """lmms-eval llava_vid's time instruction (`add_time_instruction=True`), byte for byte: no space before
    'Please', times as '{t:.2f}s' joined by commas, the frame count, the video length in seconds."""
    times = ",".join(f"{float(t):.2f}s" for t in timestamps)
    return (f"The video lasts for {float(duration):.2f} seconds, and {len(timestamps)} frames are uniformly sampled "
            f"from it. These frames are located at {times}.Please answer the following questions related to this "
            f"video.")


def user_text(prompt: str, instruction: str | None = None) -> str:
    """The user message: the video placeholder, a newline, the optional time instruction + newline, the task text."""
    return f"{IMAGE_TOKEN}\n" + (f"{instruction}\n" if instruction else "") + prompt


def render_prompt(message: str, template: str) -> str:
    """The original conversation templates (LLaVA-NeXT llava/conversation.py) for one user turn and an open
    assistant turn. `qwen_1_5` is conv_qwen (CHATML style: newline after each <|im_end|>); `chatml_direct` is
    conv_chatml_direct (MPT style: no newline after <|im_end|>, system text 'Answer the questions.')."""
    if template == "qwen_1_5":
        return ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                f"<|im_start|>user\n{message}<|im_end|>\n<|im_start|>assistant\n")
    if template == "chatml_direct":
        return ("<|im_start|>system\nAnswer the questions.<|im_end|>"
                f"<|im_start|>user\n{message}<|im_end|><|im_start|>assistant\n")
    raise HarnessError(f"unknown conv_template {template!r} (known: {', '.join(TEMPLATES)})")


def prompt_ids(tokenizer, text: str, video_token_id: int, n_visual: int) -> list[int]:
    """Token ids of `text` with its single `<image>` replaced by `n_visual` video placeholders. Like the original's
    `tokenizer_image_token`, the text on each side is tokenised on its own (Qwen2 adds no BOS, so no special
    tokens are added)."""
    parts = text.split(IMAGE_TOKEN)
    if len(parts) != 2:
        raise HarnessError(f"the prompt must hold exactly one {IMAGE_TOKEN} placeholder, found {len(parts) - 1}")
    before, after = (tokenizer(p, add_special_tokens=False)["input_ids"] for p in parts)
    return list(before) + [int(video_token_id)] * int(n_visual) + list(after)


# ---------------------------------------------------------------------------------------------------- vision

def _check_frames(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise HarnessError(f"frames must be (n, H, W, 3) uint8 with n >= 1, got {frames.shape} {frames.dtype}")
    return frames


def _preprocess_into(out: np.ndarray, frames: np.ndarray, size: int, mean: np.ndarray, std: np.ndarray) -> None:
    """Fills out[i] from frames[i]; each frame on its own, so slices can go to parallel threads."""
    from PIL import Image

    for i, frame in enumerate(frames):
        resized = np.asarray(Image.fromarray(frame).resize((size, size), Image.BICUBIC))
        scaled = (resized.astype(np.float64) * (1 / 255)).astype(np.float32)
        out[i] = ((scaled - mean) / std).transpose(2, 0, 1)


def preprocess(frames: np.ndarray, size: int, mean=SIGLIP_MEAN, std=SIGLIP_STD, threads: int = 1) -> np.ndarray:
    """(n, H, W, 3) uint8 -> (n, 3, size, size) float32, as the original's SigLipImageProcessor: PIL bicubic resize
    to size x size (no crop, aspect ratio not kept), rescale in float64 then float32, normalise in float32.
    `threads` > 1 splits the frames over threads (PIL's resize releases the GIL); every frame's pixels are the same."""
    frames = _check_frames(frames)
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    out = np.empty((len(frames), 3, size, size), np.float32)
    parts = max(1, min(int(threads), len(frames)))
    if parts == 1:
        _preprocess_into(out, frames, size, mean, std)
        return out
    from concurrent.futures import ThreadPoolExecutor

    bounds = np.linspace(0, len(frames), parts + 1).round().astype(int)
    with ThreadPoolExecutor(parts) as pool:
        list(pool.map(lambda ab: _preprocess_into(out[ab[0]:ab[1]], frames[ab[0]:ab[1]], size, mean, std),
                      zip(bounds[:-1], bounds[1:])))
    return out


def pool_2d(features, stride: int, mode: str):
    """The original's `get_2dPool` on (frames, side*side, d) projected features; stride 1 leaves them (the
    original pools only when the stride is above 1). Bilinear rounds the side up (27 -> 14), average and max
    pooling round it down (27 -> 13)."""
    import torch.nn.functional as F

    n, tokens, d = features.shape
    side = math.isqrt(tokens)
    if side * side != tokens:
        raise ValueError(f"{tokens} visual tokens a frame do not form a square grid")
    if stride <= 1:
        return features
    grid = features.reshape(n, side, side, d).permute(0, 3, 1, 2)
    if mode == "average":
        grid = F.avg_pool2d(grid, stride)
    elif mode == "max":
        grid = F.max_pool2d(grid, stride)
    elif mode == "bilinear":
        grid = F.interpolate(grid, size=[math.ceil(side / stride)] * 2, mode="bilinear")
    else:
        raise HarnessError(f"unknown pool_mode {mode!r} (known: {', '.join(POOL_MODES)})")
    return grid.permute(0, 2, 3, 1).reshape(n, -1, d)


def add_newlines(features, newline, position: str, merge_type: str = "spatial_unpad"):
    """(frames, side*side, d) pooled features -> (tokens, d) in the order the language model reads them.
    grid: after every row of every frame; frame: after every frame; one_token: once at the end (only with an
    'unpad' merge type, as in the original); no_token: none. A merge type not starting with 'spatial' makes the
    original flatten video features without newlines."""
    import torch

    n, tokens, d = features.shape
    nl = newline.to(device=features.device, dtype=features.dtype)
    if not merge_type.startswith("spatial"):
        position = "no_token"
    if position == "grid":
        side = math.isqrt(tokens)
        rows = features.reshape(n, side, side, d)
        return torch.cat([rows, nl.view(1, 1, 1, d).expand(n, side, 1, d)], dim=2).reshape(-1, d)
    if position == "frame":
        return torch.cat([features, nl.view(1, 1, d).expand(n, 1, d)], dim=1).reshape(-1, d)
    if position == "one_token":
        flat = features.reshape(-1, d)
        return torch.cat([flat, nl.view(1, d)], dim=0) if "unpad" in merge_type else flat
    if position == "no_token":
        return features.reshape(-1, d)
    raise HarnessError(f"unknown newline_position {position!r} (known: {', '.join(NEWLINE_POSITIONS)})")


def visual_token_count(frames: int, side: int, stride: int, mode: str, position: str,
                       merge_type: str = "spatial_unpad") -> int:
    """How many embeddings `video_features` returns (64 frames, LLaVA-Video settings: 64*14*15 = 13440)."""
    pooled = side if stride <= 1 else (math.ceil(side / stride) if mode == "bilinear" else side // stride)
    if not merge_type.startswith("spatial"):
        position = "no_token"
    per_frame = pooled * pooled
    return {"grid": frames * pooled * (pooled + 1), "frame": frames * (per_frame + 1),
            "one_token": frames * per_frame + ("unpad" in merge_type), "no_token": frames * per_frame}[position]


def video_features(model, pixel_values, pool_mode: str, pool_stride: int, newline_position: str,
                   merge_type: str = "spatial_unpad"):
    """The original's video path on a transformers LLaVA-OneVision model: SigLIP hidden state (the config's
    feature layer; -1 on a converted checkpoint, whose tower already lacks the last layer), projector, pooling,
    newlines. pixel_values: (frames, 3, S, S)."""
    inner = model.model
    cfg = model.config
    tower = inner.vision_tower
    out = tower(pixel_values=pixel_values.to(device=tower.device, dtype=tower.dtype), output_hidden_states=True)
    layer = cfg.vision_feature_layer
    if not isinstance(layer, int):
        raise HarnessError(f"vision_feature_layer {layer!r}: only one feature layer is supported")
    feats = out.hidden_states[layer]
    if cfg.vision_feature_select_strategy == "default":  # CLIP-style towers drop the CLS token; SigLIP has none
        feats = feats[:, 1:]
    feats = inner.multi_modal_projector(feats)
    feats = pool_2d(feats, pool_stride, pool_mode)
    return add_newlines(feats, inner.image_newline, newline_position, merge_type)


# ---------------------------------------------------------------------------------------------------- fast path

# stand-in frames (see `prepared_frames`) -> (preprocessing settings, pixel values prepared off the main path)
_PREPARED: dict[int, tuple[tuple, object]] = {}


class FramePrep:
    """Picklable: a selection's frames -> pixel values by `preprocess` (the same arithmetic), split over `threads`
    threads. Cast to the model's dtype here: the tower casts pixels to it first thing, so the values it sees are the
    same; half-size tensors travel as raw bits (numpy has no bfloat16)."""

    def __init__(self, size: int, mean, std, dtype: str, threads: int = 1):
        self.size, self.mean, self.std, self.dtype, self.threads = int(size), tuple(mean), tuple(std), dtype, threads

    def __call__(self, frames) -> dict:
        import torch

        pixels = torch.from_numpy(preprocess(frames, self.size, self.mean, self.std, self.threads))
        if self.dtype in ("bfloat16", "float16"):
            pixels = pixels.to(getattr(torch, self.dtype)).view(torch.int16)
        return {"frames": len(pixels), "settings": (self.size, self.mean, self.std), "dtype": self.dtype,
                "pixels": pixels.numpy()}


def prepared_frames(result: dict) -> np.ndarray:
    """A (n, 1, 1, 3) stand-in for frames prepared by `FramePrep`: the backbone recognises it by identity and takes
    its pixel values as they are; the entry goes when the stand-in does."""
    import weakref

    import torch

    pixels = torch.from_numpy(result["pixels"])
    if result["dtype"] in ("bfloat16", "float16"):
        pixels = pixels.view(getattr(torch, result["dtype"]))
    standin = np.zeros((result["frames"], 1, 1, 3), np.uint8)
    _PREPARED[id(standin)] = (tuple(result["settings"]), pixels)
    weakref.finalize(standin, _PREPARED.pop, id(standin), None)
    return standin


# ---------------------------------------------------------------------------------------------------- building

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


# ---------------------------------------------------------------------------------------------------- backbone

@BACKBONES.register("llava-video", description="LLaVA-Video-7B-Qwen2 (converted to transformers LLaVA-OneVision; "
                    "the original's video path)", help=_HELP,
                    choices={"conv_template": TEMPLATES, "prompt_style": PROMPT_STYLES,
                             "pool_mode": (None, *POOL_MODES),
                             "newline_position": (None, *NEWLINE_POSITIONS), "config": (None, *PRESETS),
                             "dtype": DTYPES, "attn_implementation": ATTENTION})
class LlavaVideo(Backbone):
    name = "llava-video"
    prompt_style = "llava_vid"  # the instance follows the `prompt_style` option

    def __init__(self, model: str | None = None, conv_template: str = "qwen_1_5", prompt_style: str = "llava_vid",
                 pool_mode: str | None = None, pool_stride: int | None = None, newline_position: str | None = None,
                 time_instruction: bool = False, max_new_tokens: int = 16, random_init: bool = False,
                 config: str | None = None, seed: int = 0, device: str = "cpu", dtype: str = "float32",
                 attn_implementation: str = "sdpa", lm_batch_tokens: int | None = None,
                 devices: Sequence[str] | None = None):
        import torch

        from backbones import placement

        check_choices((("conv_template", conv_template, TEMPLATES), ("prompt_style", prompt_style, PROMPT_STYLES),
                       ("dtype", dtype, DTYPES), ("attn_implementation", attn_implementation, ATTENTION)))
        spanning = devices is not None and len(devices) > 1  # one replica over several GPUs (backbones.placement)
        self.device = torch_device(devices[0] if spanning else device)
        self.conv_template, self.prompt_style, self.dtype = conv_template, prompt_style, dtype
        self.time_instruction, self.max_new_tokens = bool(time_instruction), int(max_new_tokens)
        self.random_init, self.preset, self.seed, self.attn = bool(random_init), config, int(seed), attn_implementation
        # speed only (the answers of a batch equal those one by one), so not part of config()
        self.lm_batch_tokens = None if lm_batch_tokens is None else int(lm_batch_tokens)
        self.model_name = None if model is None else str(model)
        torch_dtype = getattr(torch, dtype)

        if self.random_init:
            folder = None if model is None else check_folder(model)
            def build(on):
                return self._random_model(folder, config, torch_dtype, on)

            on = placement.build_device(lambda d: build(d)[1], devices) if spanning else self.device
            self.tokenizer, self.model, settings = build(on)
            if spanning:
                placement.spread(self.model, devices)
            self._weights = f"random:{self.seed}"
        else:
            if model is None:
                raise HarnessError("llava-video needs model=FOLDER (converted with `harness convert llava-video SRC "
                                   "DST`) or random_init=True with config=llava-video-7b|tiny")
            if config is not None:
                raise HarnessError("config= names a random_init preset; with weights the folder's config is used")
            folder = check_folder(model)
            settings = read_settings(folder)
            from transformers import AutoTokenizer, LlavaOnevisionForConditionalGeneration

            try:
                self.tokenizer = AutoTokenizer.from_pretrained(folder)
                self.model = LlavaOnevisionForConditionalGeneration.from_pretrained(
                    folder, dtype=torch_dtype, attn_implementation=attn_implementation,
                    **(placement.pretrained_placement(devices) if spanning else {}))
            except Exception as e:  # OSError, ValueError, ...: all mean "cannot load"
                raise HarnessError(f"cannot load llava-video model {model!r}: {' '.join(str(e).split())}") from None
            from backbones.qwen2_5_vl import weights_id

            self._weights = weights_id(str(folder))
        if not spanning:
            self.model.to(self.device)
        self.model.eval()

        def pick(option, key, known=None):
            value = option if option is not None else settings.get(key)
            if value is None:
                raise HarnessError(f"{model} has no {key} in {SETTINGS_FILE}; pass the llava-video option for it")
            if known is not None and value not in known:
                raise HarnessError(f"unknown {key} {value!r} (known: {', '.join(known)})")
            return value

        self.pool_mode = pick(pool_mode, "mm_spatial_pool_mode", POOL_MODES)
        self.pool_stride = int(pick(pool_stride, "mm_spatial_pool_stride"))
        self.newline_position = pick(newline_position, "mm_newline_position", NEWLINE_POSITIONS)
        self.merge_type = settings.get("mm_patch_merge_type", "spatial_unpad")
        self.max_length = settings.get("tokenizer_model_max_length")
        self.image_mean = tuple(settings.get("image_mean", SIGLIP_MEAN))
        self.image_std = tuple(settings.get("image_std", SIGLIP_STD))
        vision = self.model.config.vision_config
        self.image_size, self.side = vision.image_size, vision.image_size // vision.patch_size
        self.video_token_id = self.model.config.video_token_id
        end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        if end is None or end == self.tokenizer.unk_token_id:
            raise HarnessError("the tokenizer has no <|im_end|> token (the stop word of both templates)")
        # The original stops on the template separator <|im_end|> (a keyword criterion) and on the checkpoint's own
        # end-of-sequence ids (its generation config), whichever comes first.
        eos = self.model.generation_config.eos_token_id
        eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        self.stop_ids = [end] + [i for i in eos if i != end]
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.stop_ids[0]

    def _random_model(self, folder, preset, torch_dtype, build_on):
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
        cfg.text_config._attn_implementation = self.attn
        cfg.vision_config._attn_implementation = self.attn
        with torch.random.fork_rng(devices=[]), torch.device(build_on):  # built on the target device: a 7B
            torch.manual_seed(self.seed)                                    # never sits in CPU memory in fp32
            default = torch.get_default_dtype()
            torch.set_default_dtype(torch_dtype)
            try:
                model = LlavaOnevisionForConditionalGeneration(cfg)
            finally:
                torch.set_default_dtype(default)
        return tokenizer, model, settings

    def config(self) -> dict:
        return {"model": self.model_name, "weights": self._weights, "random_init": self.random_init,
                "preset": self.preset, "conv_template": self.conv_template, "prompt_style": self.prompt_style,
                "pool_mode": self.pool_mode, "pool_stride": self.pool_stride,
                "newline_position": self.newline_position, "merge_type": self.merge_type,
                "time_instruction": self.time_instruction, "max_new_tokens": self.max_new_tokens,
                "dtype": self.dtype, "attn_implementation": self.attn}

    def prompt_text(self, prompt: str, timestamps: Sequence[float], duration: float | None = None) -> str:
        """The whole conversation text, `<image>` still in place."""
        instruction = None
        if self.time_instruction:
            if duration is None:
                raise HarnessError("llava-video time_instruction=True needs the video's duration: "
                                   "generate(frames, timestamps, prompt, duration=seconds)")
            instruction = time_instruction(duration, timestamps)
        return render_prompt(user_text(prompt, instruction), self.conv_template)

    def _ids(self, n_frames: int, timestamps: Sequence[float], prompt: str, duration: float | None = None):
        """(conversation text, visual token count, token ids) of one question."""
        if len(timestamps) != n_frames:
            raise HarnessError(f"{n_frames} frames but {len(timestamps)} timestamps")
        text = self.prompt_text(prompt, timestamps, duration)
        n_visual = visual_token_count(n_frames, self.side, self.pool_stride, self.pool_mode,
                                      self.newline_position, self.merge_type)
        ids = prompt_ids(self.tokenizer, text, self.video_token_id, n_visual)
        if self.max_length is not None and len(ids) > int(self.max_length):
            # the original silently cuts the sequence to this length; a cut-off question is never what was meant
            raise HarnessError(f"{len(ids)} tokens exceed the model's tokenizer_model_max_length {self.max_length} "
                               f"({n_frames} frames); select fewer frames")
        return text, n_visual, ids

    def _pixel_values(self, frames: np.ndarray):
        """(n, 3, S, S) pixel values: those `FramePrep` made for a stand-in, else `preprocess` here."""
        import torch

        prepared = _PREPARED.get(id(frames))
        if prepared is not None:
            if prepared[0] != (self.image_size, self.image_mean, self.image_std):
                raise HarnessError(f"frames were prepared with other settings than this model's ({prepared[0]})")
            return prepared[1]
        return torch.from_numpy(preprocess(frames, self.image_size, self.image_mean, self.image_std))

    def build_inputs(self, frames: np.ndarray, timestamps: Sequence[float], prompt: str,
                     duration: float | None = None) -> dict:
        """Everything generation needs: pixel values, token ids (visual span as <video> ids) and the text."""
        import torch

        frames = _check_frames(frames)
        text, n_visual, ids = self._ids(len(frames), timestamps, prompt, duration)
        return {"pixel_values": self._pixel_values(frames), "input_ids": torch.tensor([ids]), "text": text,
                "n_visual": n_visual}

    def batch_inputs(self, requests: Sequence[tuple[np.ndarray, Sequence[float], str]],
                     durations: Sequence[float | None] | None = None) -> dict:
        """The CPU side of a batch: pixel values once per distinct frames object (the runner hands all questions
        that share frames one array), token ids per question; `owner[i]` is question i's entry in `pixel_values`."""
        durations = [None] * len(requests) if durations is None else list(durations)
        pixels, owner, seen, ids = [], [], {}, []
        for (frames, timestamps, prompt), duration in zip(requests, durations):
            if id(frames) not in seen:
                seen[id(frames)] = len(pixels)
                pixels.append(self._pixel_values(_check_frames(frames)))
            owner.append(seen[id(frames)])
            ids.append(self._ids(len(frames), timestamps, prompt, duration)[2])
        return {"pixel_values": pixels, "owner": owner, "input_ids": ids}

    def video_embeddings(self, batch: dict) -> list:
        """The vision path (tower, projector, pooling, newlines) once per distinct video of a batch."""
        import torch

        with torch.inference_mode():
            return [video_features(self.model, pixels, self.pool_mode, self.pool_stride, self.newline_position,
                                   self.merge_type) for pixels in batch["pixel_values"]]

    def language_groups(self, batch: dict) -> list[list[int]]:
        """Which questions of a batch that share no video go through the language model together (shared videos go
        through `shared_prefill`): all of them, unless `lm_batch_tokens` is set and the longest question exceeds it;
        then one at a time (one long question fills the accelerator alone, and a padded batch takes SDPA off its
        flash kernel: the padding mask is not causal-only)."""
        rows = list(range(len(batch["input_ids"])))
        if self.lm_batch_tokens is None or max(len(ids) for ids in batch["input_ids"]) <= self.lm_batch_tokens:
            return [rows]
        return [[row] for row in rows]

    def batch_embeddings(self, batch: dict, rows: Sequence[int] | None = None, feats: list | None = None):
        """(merged embeddings, attention mask) of questions `rows` (default all), left-padded to the longest: each
        question's <video> span gets its video's features (`feats` from `video_embeddings`, computed if not given)."""
        import torch

        rows = range(len(batch["input_ids"])) if rows is None else rows
        feats = self.video_embeddings(batch) if feats is None else feats
        ids_list = [batch["input_ids"][row] for row in rows]
        length = max(len(ids) for ids in ids_list)
        ids = torch.full((len(ids_list), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids_list), length), dtype=torch.long)
        for i, seq in enumerate(ids_list):
            ids[i, length - len(seq):] = torch.tensor(seq, dtype=torch.long)
            mask[i, length - len(seq):] = 1
        with torch.inference_mode():
            ids, mask = ids.to(self.device), mask.to(self.device)
            embeds = self.model.get_input_embeddings()(ids)
            for i, row in enumerate(rows):
                video = feats[batch["owner"][row]]
                span = ids[i] == self.video_token_id
                if int(span.sum()) != video.shape[0]:
                    raise HarnessError(f"{int(span.sum())} video placeholders but {video.shape[0]} visual embeddings")
                embeds[i, span] = video.to(embeds.dtype)
        return embeds, mask

    def merged_embeddings(self, inputs: dict):
        """Token embeddings with the visual span replaced by the video features: the language model's input."""
        import torch

        with torch.inference_mode():
            feats = video_features(self.model, inputs["pixel_values"], self.pool_mode, self.pool_stride,
                                   self.newline_position, self.merge_type)
            ids = inputs["input_ids"].to(self.device)
            embeds = self.model.get_input_embeddings()(ids)
            mask = ids == self.video_token_id
            if int(mask.sum()) != feats.shape[0]:
                raise HarnessError(f"{int(mask.sum())} video placeholders but {feats.shape[0]} visual embeddings")
            return embeds.masked_scatter(mask[..., None].expand_as(embeds), feats.to(embeds.dtype))

    def generate(self, frames: np.ndarray, timestamps: Sequence[float], prompt: str,
                 duration: float | None = None) -> str:
        return self.generate_batch([(frames, timestamps, prompt)], [duration])[0]

    def generate_batch(self, requests: Sequence[tuple[np.ndarray, Sequence[float], str]],
                       durations: Sequence[float | None] | None = None) -> list[str]:
        """Answers to several questions in one left-padded batch (one question: no padding, the stock path)."""
        import torch

        batch = self.batch_inputs(requests, durations)
        self.last_visual_tokens = [sum(t == self.video_token_id for t in ids) for ids in batch["input_ids"]]
        feats = self.video_embeddings(batch)
        shared = self._generate_shared_prefix(batch, feats)
        if shared is not None:
            return shared
        answers: list[str] = [""] * len(requests)
        for rows in self.language_groups(batch):
            embeds, mask = self.batch_embeddings(batch, rows, feats)
            with torch.inference_mode():
                # positions come from the mask (cumsum - 1), so a left-padded row reads as it would alone
                out = self.model.generate(inputs_embeds=embeds, attention_mask=mask,
                                          max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1,
                                          temperature=None, top_p=None, top_k=None, eos_token_id=self.stop_ids,
                                          pad_token_id=self.pad_id)
            # embeds in: only new tokens out; a row that stopped early is padded with special tokens, stripped here
            for row, tokens in zip(rows, out):
                answers[row] = self.tokenizer.decode(tokens, skip_special_tokens=True).strip()
        return answers

    def shared_prefill(self, batch: dict, feats: list) -> dict | None:
        """Where questions share a video: the tokens they have in common (system turn, the video's embeddings, ...)
        through the language model once per video into a KV cache, whose rows are then repeated for that video's
        questions. Returns the cache, each question's whole input (`embeds`, `mask`: its video's prefix, then its
        own tokens left-padded; positions count real tokens, so each reads as it would alone), the cached width and
        the token counts; None when no video is shared. Call under `torch.inference_mode()`."""
        import torch
        from transformers import DynamicCache

        first = {}
        owner = [first.setdefault(o, i) for i, o in enumerate(batch["owner"])]  # first question of each video
        ids = batch["input_ids"]
        plan = prefix_plan(ids, owner, {self.video_token_id}) if len(first) < len(owner) else None
        if plan is None:
            return None
        unique = sorted(plan)
        prefixes = {"input_ids": [ids[u][:plan[u]] for u in unique], "owner": [batch["owner"][u] for u in unique]}
        prefix_embeds, prefix_mask = self.batch_embeddings(prefixes, None, feats)
        cache = DynamicCache()
        self.model(inputs_embeds=prefix_embeds, attention_mask=prefix_mask, past_key_values=cache,
                   position_ids=(prefix_mask.cumsum(-1) - 1).clamp(min=0), use_cache=True, logits_to_keep=1)
        rows = torch.tensor([unique.index(o) for o in owner], device=self.device)
        cache.reorder_cache(rows)
        own_ids, own_mask = left_pad([ids[i][plan[o]:] for i, o in enumerate(owner)], self.pad_id)
        own = self.model.get_input_embeddings()(own_ids.to(self.device))
        return {"cache": cache, "embeds": torch.cat([prefix_embeds[rows], own], dim=1),
                "mask": torch.cat([prefix_mask[rows], own_mask.to(self.device)], dim=1),
                "prefix_width": prefix_embeds.shape[1], "prefix_tokens": [plan[u] for u in unique],
                "own_tokens": [len(ids[i]) - plan[o] for i, o in enumerate(owner)],
                "cached_tokens": [plan[o] for o in owner]}

    def _generate_shared_prefix(self, batch: dict, feats: list) -> list[str] | None:
        """`generate_batch` through `shared_prefill`: `generate` goes on from each video's cache."""
        import torch

        with torch.inference_mode():
            shared = self.shared_prefill(batch, feats)
            if shared is None:
                return None
            out = self.model.generate(inputs_embeds=shared["embeds"], attention_mask=shared["mask"],
                                      past_key_values=shared["cache"], max_new_tokens=self.max_new_tokens,
                                      do_sample=False, num_beams=1, temperature=None, top_p=None, top_k=None,
                                      eos_token_id=self.stop_ids, pad_token_id=self.pad_id)
        return [self.tokenizer.decode(tokens, skip_special_tokens=True).strip() for tokens in out]

    # -- the fast runner's hooks (harness.runner looks them up on the backbone) -----------------------------------

    def frame_preparer(self, frame_counts=None) -> FramePrep:
        """Preprocessing for the runner's preprocessing thread (off the accelerator's path): the same pixels,
        frames split over half the cores' threads (decode workers use the rest)."""
        import os

        return FramePrep(self.image_size, self.image_mean, self.image_std, self.dtype,
                         threads=max(1, min(8, (os.cpu_count() or 2) // 2)))

    @staticmethod
    def prepared_frames(result: dict) -> np.ndarray:
        return prepared_frames(result)
