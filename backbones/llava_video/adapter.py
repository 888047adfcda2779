"""`llava-video`: LLaVA-Video-7B-Qwen2 through transformers' LLaVA-OneVision classes, with the original's video path.

The published checkpoint is in the original LLaVA-NeXT layout; `harness convert llava-video SRC DST`
(`LlavaVideo.convert_checkpoint`, the converter in `convert.py`) turns it into a
`LlavaOnevisionForConditionalGeneration` folder plus `llava_video.json`, which carries the original's video settings
(pooling, newline position, length limit).

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
Steps 1-4 are in `vision.py`, step 5 in `prompt.py`; the model building and folder checks in `build.py`.

Batches (`generate_batch`, what the fast runner calls): the vision path runs once per distinct frames object (the
runner hands the questions that share a selection one array). Questions sharing a video share their common prefix
(system turn, the visual tokens, the time instruction): it goes through the language model once per video into a
KV cache and each question continues from it (`shared_prefill`); otherwise the merged sequences go left-padded
through the language model (or one at a time above `lm_batch_tokens`). The answers are those of `generate` one by
one. `frame_preparer` / `prepared_frames` move step 1 into the runner's preprocessing thread (`FramePrep`, the same
pixels, frames split over threads) and hand `generate_batch` a small stand-in array it recognises.
`prefill_probe` (`probe.py`) gives `harness bench` that batched prefill to time, with its FLOPs (`flops.py`).

Tiny random models (`random_init=True, config="tiny"`) and real-size ones without weights
(`random_init=True, config="llava-video-7b"`, for throughput work) run through the same code.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from backbones.base import Backbone, PrefillProbe, Request
from backbones.llava_video import probe, scoring, vision
from backbones.llava_video.build import (PRESETS, SETTINGS_FILE, check_folder, load_converted, random_model,
                                         read_settings)
from backbones.llava_video.prompt import TEMPLATES, prompt_ids, render_prompt, time_instruction, user_text
from backbones.llava_video.vision import (NEWLINE_POSITIONS, POOL_MODES, SIGLIP_MEAN, SIGLIP_STD, FramePrep,
                                          video_features, visual_token_count)
from backbones.prefix import left_pad, prefix_plan
from harness.errors import HarnessError
from harness.registry import BACKBONES
from harness.util.frames import check_frames
from harness.util.checks import check_choices, torch_device

PROMPT_STYLES = ("llava_vid", "default")
DTYPES = ("float32", "bfloat16", "float16")
ATTENTION = ("sdpa", "eager", "flash_attention_2")

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


@BACKBONES.register("llava-video", description="LLaVA-Video-7B-Qwen2 (converted to transformers LLaVA-OneVision; "
                    "the original's video path)", help=_HELP,
                    choices={"conv_template": TEMPLATES, "prompt_style": PROMPT_STYLES,
                             "pool_mode": (None, *POOL_MODES),
                             "newline_position": (None, *NEWLINE_POSITIONS), "config": (None, *PRESETS),
                             "dtype": DTYPES, "attn_implementation": ATTENTION})
class LlavaVideo(Backbone):
    """`accelerate` keeps the base's default: `generate_batch` always runs the vision path once per distinct video
    and shares each video's prompt prefix, so there is nothing to switch on."""

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
        self.checks_answers = not self.random_init  # random weights answer noise
        # speed only (the answers of a batch equal those one by one), so not part of config()
        self.lm_batch_tokens = None if lm_batch_tokens is None else int(lm_batch_tokens)
        self.model_name = None if model is None else str(model)
        torch_dtype = getattr(torch, dtype)

        if self.random_init:
            folder = None if model is None else check_folder(model)
            def build(on):
                return random_model(folder, config, torch_dtype, on, attn_implementation, self.seed)

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
            self.tokenizer, self.model = load_converted(
                model, folder, torch_dtype, attn_implementation,
                **(placement.pretrained_placement(devices) if spanning else {}))
            from harness.util.checkpoints import weights_id

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
        tower = self.model.config.vision_config
        self.image_size, self.side = tower.image_size, tower.image_size // tower.patch_size
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
        return vision.pixel_values(frames, self.image_size, self.image_mean, self.image_std)

    def build_inputs(self, frames: np.ndarray, timestamps: Sequence[float], prompt: str,
                     duration: float | None = None) -> dict:
        """Everything generation needs: pixel values, token ids (visual span as <video> ids) and the text."""
        import torch

        frames = check_frames(frames)
        text, n_visual, ids = self._ids(len(frames), timestamps, prompt, duration)
        return {"pixel_values": self._pixel_values(frames), "input_ids": torch.tensor([ids]), "text": text,
                "n_visual": n_visual}

    def batch_inputs(self, requests: Sequence[Request],
                     durations: Sequence[float | None] | None = None) -> dict:
        """The CPU side of a batch: pixel values once per distinct frames object (the runner hands all questions
        that share frames one array), token ids per question; `owner[i]` is question i's entry in `pixel_values`."""
        durations = [None] * len(requests) if durations is None else list(durations)
        pixels, owner, seen, ids = [], [], {}, []
        for (frames, timestamps, prompt), duration in zip(requests, durations):
            if id(frames) not in seen:
                seen[id(frames)] = len(pixels)
                pixels.append(self._pixel_values(check_frames(frames)))
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

    def generate_batch(self, requests: Sequence[Request],
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

    def shared_prefix_plan(self, batch: dict) -> tuple[list[int], dict[int, int]] | None:
        """(owner: each question's first question on the same video, prefix length per such first question) where
        questions of a batch share a video and its common prefix holds all their visual tokens; else None."""
        first = {}
        owner = [first.setdefault(o, i) for i, o in enumerate(batch["owner"])]  # first question of each video
        plan = prefix_plan(batch["input_ids"], owner, {self.video_token_id}) if len(first) < len(owner) else None
        return None if plan is None else (owner, plan)

    def shared_prefill(self, batch: dict, feats: list) -> dict | None:
        """Where questions share a video: the tokens they have in common (system turn, the video's embeddings, ...)
        through the language model once per video into a KV cache, whose rows are then repeated for that video's
        questions. Returns the cache, each question's whole input (`embeds`, `mask`: its video's prefix, then its
        own tokens left-padded; positions count real tokens, so each reads as it would alone), the cached width and
        the token counts; None when no video is shared. Call under `torch.inference_mode()`."""
        import torch
        from transformers import DynamicCache

        shared = self.shared_prefix_plan(batch)
        if shared is None:
            return None
        owner, plan = shared
        ids = batch["input_ids"]
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

    # -- capabilities declared by backbones.base.Backbone (the runner and `harness bench` call them) ---------------

    def frame_preparer(self, frame_counts: Sequence[int] | None = None) -> FramePrep:
        """Preprocessing for the runner's preprocessing thread (off the accelerator's path): the same pixels,
        frames split over half the cores' threads (decode workers use the rest)."""
        import os

        return FramePrep(self.image_size, self.image_mean, self.image_std, self.dtype,
                         threads=max(1, min(8, (os.cpu_count() or 2) // 2)))

    def prepared_frames(self, result: dict) -> np.ndarray:
        """The stand-in array `generate_batch` recognises for frames a `FramePrep` prepared."""
        return vision.prepared_frames(result)

    def prefill_probe(self, requests: Sequence[Request]) -> PrefillProbe:
        return probe.prefill_probe(self, requests)

    def score_frames(self, frames: np.ndarray, prompt: str) -> np.ndarray:
        return scoring.score_frames(self, frames, prompt)  # FRAG: each frame alone as an image (`scoring`)

    @classmethod
    def convert_checkpoint(cls, source: str, destination: str, **options) -> dict:
        """`harness convert llava-video SRC DST`: `convert_llava_video` (options: overwrite, log); returns its summary
        {dst, tensors, shards, dropped (a count)}."""
        from backbones.llava_video.convert import convert_llava_video

        unknown = sorted(set(options) - {"overwrite", "log"})
        if unknown:
            raise HarnessError(f"llava-video's converter takes overwrite and log, not {', '.join(unknown)}")
        return convert_llava_video(source, destination, **options)
