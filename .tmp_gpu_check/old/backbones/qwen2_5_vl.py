"""`qwen2.5-vl`: Qwen2.5-VL through Hugging Face transformers; the 7B and the shipped mini model run the same code.

One user turn holds the selected frames as ONE video (in time order) and then the task's prompt; decoding is greedy
and only the new text is returned, special tokens stripped. Frames arrive at their native size; the model folder's
video processor resizes them (`smart_resize` into [min_pixels, max_pixels] per frame).

Timing. Qwen2.5-VL fuses `temporal_patch_size` (2) consecutive frames into one temporal patch and gives the patch a
temporal rope position. The adapter computes the 3-D rope positions itself (`mrope_positions`, installed over the
model's `get_rope_index`), for two reasons:

* `timing="exact"` (default): patch g gets floor((t_2g - t_0) * tokens_per_second), the real time of its first
  frame, so top-k or AKS selections are placed where they were taken; transformers takes only one spacing per video
  (`second_per_grid_ts`), exact only for evenly spaced frames. `timing="tspo"` reproduces TSPO's published runs:
  no fps passed, the processor assumed 2 fps, so patch g sits at 2g whatever the frames' times.
* `rope="original"` (default) is the original Qwen2.5-VL algorithm (transformers 4.x, which lmms-eval and TSPO ran):
  text after a video continues at the largest position used so far + 1. transformers 5.24 continues at the video's
  start + max(h, w) / merge instead, a different sequence of positions; `rope="transformers"` keeps the installed
  version's own computation (timing then goes through `second_per_grid_ts`, the selection's mean spacing).

Pixels. `pixels="tspo"` (default): TSPO's 256*28*28 to 300*28*28 per frame; `pixels="lmms-eval"`: lmms-eval 0.7.3's
qwen2_5_vl through qwen-vl-utils 0.0.14 (min 256*28*28, max min(1605632, max(min(768*28*28, total / K * 2),
1.05 * min)) with total = 128000*28*28*0.9, for K frames); `pixels="model"`: the model folder's own setting.
`min_pixels` / `max_pixels` override either.

Nothing else depends on which model the folder holds, so tests of the mini model exercise the 7B's path.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from backbones.base import Backbone
from harness.errors import HarnessError
from harness.options import check_choices, torch_device
from harness.registry import BACKBONES

DEFAULT_MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
DTYPES = ("float32", "bfloat16", "float16")
TSPO_FPS = 2.0  # the fps the processor assumed when TSPO's Qwen adapter passed none
# TSPO's Qwen2.5-VL evaluation (lmms-eval qwen2_5_vl): 256*28*28 and 300*28*28 pixels per frame.
TSPO_MIN_PIXELS, TSPO_MAX_PIXELS = 200704, 235200
PIXEL_PRESETS = ("tspo", "lmms-eval", "model")
TIMINGS = ("exact", "tspo")
ROPES = ("original", "transformers")
ATTENTION = ("sdpa", "eager", "flash_attention_2")
SMALL_FILE = 64 << 20  # weight files up to this size are hashed whole for the run identity

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

_HELP = {
    "model": "hub id, local folder, or a shipped mini model name (mini-qwen2.5-vl)",
    "pixels": "per-frame pixel limits: tspo (TSPO's runs), lmms-eval (0.7.3 with qwen-vl-utils 0.0.14), model",
    "min_pixels": "fewest pixels per frame after resizing (overrides the preset)",
    "max_pixels": "most pixels per frame after resizing (overrides the preset)",
    "max_new_tokens": "generation length limit",
    "timing": "exact: each temporal patch at its first frame's real time; tspo: TSPO's fixed 2 fps spacing",
    "rope": "original: Qwen2.5-VL's own 3-D rope positions (transformers 4.x); transformers: the installed version's",
    "random_init": "build `config` with random weights (throughput work; answers are meaningless)",
    "config": "architecture for random_init",
    "attn_implementation": "attention kernels (flash_attention_2 needs the flash-attn package)",
    "devices": "GPUs this replica spans, layer by layer (set by harness run --gpus-per-replica)",
}


def lmms_eval_max_pixels(n_frames: int, min_pixels: int = 256 * 28 * 28, user_max: int = 1605632) -> int:
    """qwen-vl-utils 0.0.14's per-frame cap for a video of `n_frames` frames, as lmms-eval 0.7.3 calls it."""
    total = 128000 * 28 * 28 * 0.9
    frames = max(2, n_frames + n_frames % 2)  # qwen-vl-utils pads a frame list to an even count
    cap = max(min(768 * 28 * 28, total / frames * 2), int(min_pixels * 1.05))
    return int(min(user_max, cap))


def mrope_positions(input_ids, attention_mask, video_grid_thw, image_grid_thw, patch_times, *, video_token_id: int,
                    image_token_id: int, spatial_merge_size: int, tokens_per_second: float):
    """Qwen2.5-VL's 3-D rope positions and deltas, by the original algorithm (see the module docstring).

    Text tokens get one position on all three axes, counting on from the largest position so far + 1; a vision
    block of t x h x w merged patches starting after position s gets (s + time index, s + row, s + column). Videos
    take their temporal indices from `patch_times` (seconds of each temporal patch from the video's first frame, one
    list per video in batch order), images have one temporal patch. Returns (position_ids [3, B, L], deltas [B, 1]),
    padding positions left at 1 as the original does.
    """
    import torch

    batch, length = input_ids.shape
    positions = torch.ones(3, batch, length, dtype=torch.long, device=input_ids.device)
    deltas = []
    grids = {video_token_id: iter(video_grid_thw if video_grid_thw is not None else []),
             image_token_id: iter(image_grid_thw if image_grid_thw is not None else [])}
    times = iter(patch_times)
    for b in range(batch):
        keep = attention_mask[b].bool() if attention_mask is not None else torch.ones(length, dtype=torch.bool)
        ids = input_ids[b][keep.to(input_ids.device)].tolist()
        parts, i, start = [], 0, 0
        while i < len(ids):
            if ids[i] not in grids:
                j = i
                while j < len(ids) and ids[j] not in grids:
                    j += 1
                parts.append(torch.arange(j - i).expand(3, -1) + start)
                start += j - i
                i = j
                continue
            t, h, w = (int(x) for x in next(grids[ids[i]]))
            h, w = h // spatial_merge_size, w // spatial_merge_size
            if ids[i] == video_token_id:
                temporal = (torch.tensor(next(times), dtype=torch.float64)[:t] * tokens_per_second).long()
            else:
                temporal = torch.zeros(t, dtype=torch.long)
            grid = torch.stack(torch.meshgrid(temporal, torch.arange(h), torch.arange(w), indexing="ij")).reshape(3, -1)
            parts.append(grid + start)
            i += t * h * w
            start = int(torch.cat(parts, dim=1).max()) + 1
        row = torch.cat(parts, dim=1) if parts else torch.zeros(3, 0, dtype=torch.long)
        positions[:, b, keep.to(positions.device)] = row.to(positions.device)
        deltas.append((int(row.max()) + 1 if row.numel() else 0) - len(ids))
    return positions, torch.tensor(deltas, device=input_ids.device).unsqueeze(1)


def patch_times(timestamps: Sequence[float], temporal_patch_size: int, timing: str) -> list[float]:
    """Seconds of each temporal patch after the video's first frame: its first frame's real time (`exact`), or
    TSPO's fixed 2 fps spacing (`tspo`)."""
    n_patches = -(-len(timestamps) // temporal_patch_size)
    if timing == "tspo":
        return [g * temporal_patch_size / TSPO_FPS for g in range(n_patches)]
    first = float(timestamps[0])
    return [float(timestamps[g * temporal_patch_size]) - first for g in range(n_patches)]


def second_per_grid(timestamps: Sequence[float], temporal_patch_size: int, real_timing: bool) -> float:
    """Seconds one temporal patch spans, the only timing Qwen2.5-VL's rope takes (see the module doc)."""
    fixed = temporal_patch_size / TSPO_FPS
    if not real_timing or len(timestamps) < 2:
        return fixed  # one frame (or one patch): no spacing to express
    span = float(timestamps[-1]) - float(timestamps[0])
    return temporal_patch_size * span / (len(timestamps) - 1) if span > 0 else fixed


def weights_id(source: str) -> str:
    """What identifies the weights for the run identity: content digest of a local folder (small files whole, large
    ones by name and size, so a 15 GB checkpoint is not read), or the hub commit the id resolves to offline."""
    path = Path(source)
    if path.is_dir():
        h = hashlib.sha256()
        for f in sorted(p for p in path.iterdir() if p.is_file()):
            size = f.stat().st_size
            h.update(json.dumps([f.name, size]).encode())
            if size <= SMALL_FILE:
                h.update(f.read_bytes())
        return f"sha256:{h.hexdigest()[:16]}"
    try:
        import huggingface_hub

        return f"{source}@{huggingface_hub.resolve_revision(source, local_files_only=huggingface_hub.is_offline_mode())}"
    except Exception:  # unresolvable: loading will report the real problem
        return source


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


def timing_inputs(processor, timestamps: Sequence[Sequence[float]], real_timing: Sequence[bool]) -> dict:
    """`second_per_grid_ts` for a batch, overriding whatever fps the processor assumed: the timing is ours to state."""
    import torch

    patch = processor.video_processor.temporal_patch_size
    return {"second_per_grid_ts": torch.tensor([second_per_grid(ts, patch, real)
                                                for ts, real in zip(timestamps, real_timing)], dtype=torch.float32)}


def random_processor(patch: int, min_pixels: int, max_pixels: int):
    """An offline processor for a random-init model: Qwen's chat template and special tokens over a small byte-level
    BPE (token ids differ from Qwen's real vocabulary; only sequence lengths and costs are meaningful)."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    from harness.miniworld.qwen import CHAT_TEMPLATE, build_tokenizer, needle_texts

    common = dict(size={"shortest_edge": min_pixels, "longest_edge": max_pixels}, patch_size=patch,
                  temporal_patch_size=2, merge_size=2)
    return Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(**common),
                               video_processor=Qwen2VLVideoProcessor(**common, cap_pixels_per_frame=False),
                               tokenizer=build_tokenizer(needle_texts(20)), chat_template=CHAT_TEMPLATE)


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


@BACKBONES.register("qwen2.5-vl", description="Qwen2.5-VL (transformers); 7B by default, any folder of the family",
                    help=_HELP, choices={"dtype": DTYPES, "pixels": PIXEL_PRESETS, "timing": TIMINGS,
                                         "rope": ROPES, "config": tuple(CONFIGS),
                                         "attn_implementation": ATTENTION})
class Qwen25VL(Backbone):
    name = "qwen2.5-vl"

    def __init__(self, model: str = DEFAULT_MODEL, pixels: str = "tspo", min_pixels: int | None = None,
                 max_pixels: int | None = None, max_new_tokens: int = 16, timing: str = "exact",
                 rope: str = "original", random_init: bool = False, config: str = "qwen2.5-vl-7b",
                 attn_implementation: str = "sdpa", device: str = "cpu", dtype: str = "float32",
                 devices: Sequence[str] | None = None):
        import torch  # heavy imports stay out of `import backbones` (listing entries needs neither)
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

        from backbones import placement
        from harness.miniworld import resolve_model

        check_choices((("dtype", dtype, DTYPES), ("pixels", pixels, PIXEL_PRESETS), ("timing", timing, TIMINGS),
                       ("rope", rope, ROPES), ("config", config, CONFIGS),
                       ("attn_implementation", attn_implementation, ATTENTION)), self.name)
        spanning = devices is not None and len(devices) > 1  # one replica over several GPUs (backbones.placement)
        self.device = torch_device(devices[0] if spanning else device)
        self.pixels, self.timing, self.rope, self.dtype = pixels, timing, rope, dtype
        self.max_new_tokens, self.random_init, self.attn_implementation = int(max_new_tokens), bool(random_init), \
            attn_implementation
        self.min_override, self.max_override = min_pixels, max_pixels
        if self.random_init:
            self.model_name, self.source = f"random:{config}", None
            self.processor = random_processor(CONFIGS[config]["patch"], TSPO_MIN_PIXELS, TSPO_MAX_PIXELS)
            def build(on):
                return random_model(config, self.processor.tokenizer, getattr(torch, dtype), on, attn_implementation)

            self.model = build(placement.build_device(build, devices) if spanning else self.device)
            if spanning:
                placement.spread(self.model, devices)
            self._weights = f"random-init:{config}:seed0"
        else:
            self.model_name, self.source = str(model), resolve_model(model)
            try:
                self.processor = AutoProcessor.from_pretrained(self.source)
                self.model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
                    self.source, dtype=getattr(torch, dtype), attn_implementation=attn_implementation,
                    **(placement.pretrained_placement(devices) if spanning else {}))
            except Exception as e:  # OSError, ValueError, ImportError (no flash-attn), ...: all mean "cannot load"
                raise HarnessError(f"cannot load Qwen2.5-VL model {model!r}: {' '.join(str(e).split())}") from None
            self._weights = weights_id(self.source)
        if not spanning:
            self.model.to(self.device)
        self.model.eval()
        size = self.processor.video_processor.size
        self._folder_pixels = (size["shortest_edge"], size["longest_edge"])
        self.min_pixels, self.max_pixels = self.pixel_limits(64)  # as recorded; lmms-eval's max depends on K
        if self.rope == "original":
            self._install_rope()

    def pixel_limits(self, n_frames: int) -> tuple[int, int]:
        """(min, max) pixels per frame for a video of `n_frames` frames (see the module docstring)."""
        low, high = {"tspo": (TSPO_MIN_PIXELS, TSPO_MAX_PIXELS),
                     "lmms-eval": (256 * 28 * 28, lmms_eval_max_pixels(n_frames)),
                     "model": self._folder_pixels}[self.pixels]
        low = low if self.min_override is None else int(self.min_override)
        high = high if self.max_override is None else int(self.max_override)
        if low > high:
            raise HarnessError(f"min_pixels {low} exceeds max_pixels {high}")
        return low, high

    def config(self) -> dict:
        return {"model": self.model_name, "weights": self._weights, "pixels": self.pixels,
                "min_pixels": self.min_pixels, "max_pixels": self.max_pixels, "max_new_tokens": self.max_new_tokens,
                "timing": self.timing, "rope": self.rope, "attn_implementation": self.attn_implementation}

    def _install_rope(self) -> None:
        """Replace the model's rope index with `mrope_positions`, fed the pending batch's patch times.

        The deltas it returns are what generation adds to later positions, and transformers versions count them
        against different lengths (4.x: the padded row; 5.x: its unpadded tokens). So the installed version's own
        rope index runs too, only to learn its convention: the length it subtracted is its max + 1 - its delta."""
        import inspect

        import torch

        inner, vision = self.model.model, self.model.config.vision_config
        native = inner.get_rope_index
        signature = inspect.signature(native)
        self._pending_times: list[list[float]] = []

        def rope_index(*args, **kwargs):
            bound = signature.bind(*args, **kwargs).arguments
            mask = bound.get("attention_mask")
            native_positions, native_deltas = native(*args, **kwargs)
            positions, deltas = mrope_positions(
                bound["input_ids"], mask, bound.get("video_grid_thw"), bound.get("image_grid_thw"),
                self._pending_times, video_token_id=self.model.config.video_token_id,
                image_token_id=self.model.config.image_token_id, spatial_merge_size=vision.spatial_merge_size,
                tokens_per_second=vision.tokens_per_second)
            for b in range(positions.shape[1]):
                keep = mask[b].bool() if mask is not None else torch.ones(positions.shape[2], dtype=torch.bool)
                used = int(native_positions[:, b, keep].max()) + 1 - int(native_deltas[b])
                deltas[b] += int(keep.sum()) - used
            return positions, deltas.to(native_deltas.device)

        inner.get_rope_index = rope_index

    def inputs(self, requests: Sequence[tuple[np.ndarray, Sequence[float], str]]):
        """Left-padded model inputs for a batch of (frames, timestamps, prompt), timing stated our way."""
        for frames, timestamps, _ in requests:
            if len(timestamps) != len(frames):
                raise ValueError(f"{len(frames)} frames but {len(timestamps)} timestamps")
        limits = {self.pixel_limits(len(frames)) for frames, _, _ in requests}
        if len(limits) > 1:  # pixels=lmms-eval: the cap depends on the frame count
            raise ValueError("one batch must share its pixel limits (same frame count under pixels=lmms-eval)")
        (low, high), = limits
        batch = build_inputs(self.processor, [np.asarray(f) for f, _, _ in requests], [p for _, _, p in requests],
                             padding_side="left", size={"shortest_edge": low, "longest_edge": high})
        patch = self.processor.video_processor.temporal_patch_size
        if self.rope == "original":
            self._pending_times = [patch_times(ts, patch, self.timing) for _, ts, _ in requests]
        else:
            batch.update(timing_inputs(self.processor, [ts for _, ts, _ in requests],
                                       [self.timing == "exact"] * len(requests)))
        return batch

    def generate(self, frames: np.ndarray, timestamps: Sequence[float], prompt: str) -> str:
        return self.generate_batch([(frames, timestamps, prompt)])[0]

    def generate_batch(self, requests) -> list[str]:
        import torch

        inputs = self.inputs(requests).to(self.device)  # the model casts pixels to its own dtype
        video = self.model.config.video_token_id
        self.last_visual_tokens = (inputs["input_ids"] == video).sum(dim=-1).tolist()
        with torch.inference_mode():
            # Greedy; anything else (e.g. the 7B's repetition_penalty) comes from the folder's generation config.
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                                      temperature=None, top_p=None, top_k=None)
        new = out[:, inputs["input_ids"].shape[1]:]
        return [text.strip() for text in self.processor.batch_decode(new, skip_special_tokens=True)]


@BACKBONES.register("mini-qwen2.5-vl", description="the shipped mini Qwen2.5-VL (~1M parameters, trained here "
                    "on needle frames; CPU)", help=_HELP, choices={"dtype": DTYPES, "pixels": PIXEL_PRESETS,
                                                                   "timing": TIMINGS, "rope": ROPES})
class MiniQwen25VL(Qwen25VL):
    """The same adapter; only the default folder, its own pixel settings and the rope it was trained with differ
    (its trainer feeds the model through transformers' own positions, so that is what it reads best)."""

    name = "mini-qwen2.5-vl"

    def __init__(self, model: str = "mini-qwen2.5-vl", pixels: str = "model", min_pixels: int | None = None,
                 max_pixels: int | None = None, max_new_tokens: int = 16, timing: str = "exact",
                 rope: str = "transformers", device: str = "cpu", dtype: str = "float32"):
        super().__init__(model, pixels, min_pixels, max_pixels, max_new_tokens, timing, rope, device=device,
                         dtype=dtype)
