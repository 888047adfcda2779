"""Speed-ups for a loaded `qwen2.5-vl` backbone that leave its answers' arithmetic as it is; the adapter's
`accelerate`, `frame_preparer`, `prepared_frames` and `generate_batch` use them.

* Vision attention in one call per window size. transformers' SDPA path of the Qwen2.5-VL vision tower loops in
  Python over every attention window (64 frames at 336x644: ~576 windows x 28 windowed layers = ~16,000 small SDPA
  calls per video), which costs more than the tower's arithmetic. The windows have only two or three distinct
  lengths, so gathering equal-length windows into one batched SDPA call does the same per-window attention with a
  handful of launches. (With flash_attention_2 the tower already runs varlen kernels: left alone.)
* The vision tower once per distinct video in a batch: questions that share their frames (uniform frames, three
  Video-MME questions per video) are one batch whose videos are the same pixels; each distinct video is encoded once
  and its features reused for the others.
* Video preprocessing once per distinct frames object in a batch: the processor gets the same array once per
  question; it resizes and normalises it once and repeats the result. `frame_preparer` / `prepared_frames` let the
  runner do that preprocessing off the main path (its preprocessing thread, or a worker process: `VideoPrep` is
  picklable) and hand `generate_batch` a small stand-in array the processor recognises.
* The prompt prefix once per distinct video: questions on the same video share every token up to and including
  the video's (system turn, video); the accelerated `generate_batch` runs that prefix through the model once into a
  KV cache, repeats its rows for the video's questions and lets `generate` continue from it over each question's
  own tokens (`plan_shared_prefix`, `prefill_prefixes`, `generate_shared_prefix`; under rope="original" only, see
  there).

`accelerate(model, processor)` installs the first three and returns their undo, so one loaded model serves as both
the stock reference and the fast path in a benchmark. This module patches the loaded objects only; nothing global in
transformers changes.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable

from backbones.prefix import left_pad, prefix_plan, shared_video_rows


def _grouped_attention_forward(attn, apply_rotary):
    """A replacement for one vision block's attention forward: same projections and rotary embedding, attention
    per window, windows of equal length batched into one SDPA call."""
    import torch
    import torch.nn.functional as F

    def forward(hidden_states, cu_seqlens, rotary_pos_emb=None, position_embeddings=None, **kwargs):
        seq = hidden_states.shape[0]
        q, k, v = attn.qkv(hidden_states).reshape(seq, 3, attn.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
        if position_embeddings is None:  # older transformers passed the raw rotary frequencies
            emb = torch.cat((rotary_pos_emb, rotary_pos_emb), dim=-1)
            position_embeddings = (emb.cos(), emb.sin())
        cos, sin = position_embeddings
        q, k = apply_rotary(q, k, cos, sin)
        out = torch.empty_like(q)  # (seq, heads, head_dim)
        bounds = cu_seqlens.tolist()
        starts, lengths = bounds[:-1], [b - a for a, b in zip(bounds[:-1], bounds[1:])]
        by_length: dict[int, list[int]] = {}
        for start, length in zip(starts, lengths):
            if length:
                by_length.setdefault(length, []).append(start)
        for length, group in by_length.items():
            index = (torch.tensor(group, device=q.device)[:, None] + torch.arange(length, device=q.device)).reshape(-1)
            def window(x):  # (n windows, heads, length, head_dim)
                return x.index_select(0, index).reshape(len(group), length, attn.num_heads, -1).transpose(1, 2)
            o = F.scaled_dot_product_attention(window(q), window(k), window(v), scale=attn.scaling)
            out.index_copy_(0, index, o.transpose(1, 2).reshape(len(group) * length, attn.num_heads, -1))
        return attn.proj(out.reshape(seq, -1))

    return forward


def group_vision_attention(model) -> Callable[[], None]:
    """Install the grouped-window attention on every vision block of `model` (a no-op under flash attention).
    Returns the undo."""
    visual = model.model.visual
    if "flash" in str(getattr(visual.config, "_attn_implementation", "")):
        return lambda: None
    patched = []
    for block in visual.blocks:
        attn = block.attn
        apply_rotary = sys.modules[type(attn).__module__].apply_rotary_pos_emb_vision
        attn.forward = _grouped_attention_forward(attn, apply_rotary)
        patched.append(attn)

    def undo():
        for attn in patched:
            attn.__dict__.pop("forward", None)
    return undo


def share_vision_tower(model) -> Callable[[], None]:
    """Run the vision tower once per distinct video of a call (identical pixels and grid) and copy its output to
    the repeats. Returns the undo."""
    import torch

    visual = model.model.visual
    original = visual.forward

    def forward(hidden_states, grid_thw=None, **kwargs):
        if grid_thw is None or len(grid_thw) < 2:
            return original(hidden_states, grid_thw=grid_thw, **kwargs)
        sizes = grid_thw.prod(-1).tolist()
        blocks = torch.split(hidden_states, sizes)
        owner, unique = [], []  # owner[i]: index into unique of video i's first occurrence
        for i, block in enumerate(blocks):
            for u in unique:
                if torch.equal(grid_thw[u], grid_thw[i]) and torch.equal(blocks[u], block):
                    owner.append(unique.index(u))
                    break
            else:
                owner.append(len(unique))
                unique.append(i)
        if len(unique) == len(blocks):
            return original(hidden_states, grid_thw=grid_thw, **kwargs)
        outputs = [original(blocks[u], grid_thw=grid_thw[u:u + 1], **kwargs) for u in unique]
        if isinstance(outputs[0], torch.Tensor):  # older transformers: the merged embeddings
            return torch.cat([outputs[o] for o in owner])
        result = outputs[0]
        result.pooler_output = torch.cat([outputs[o].pooler_output for o in owner])
        if getattr(result, "last_hidden_state", None) is not None:
            result.last_hidden_state = torch.cat([outputs[o].last_hidden_state for o in owner])
        return result

    visual.forward = forward

    def undo():
        visual.__dict__.pop("forward", None)
    return undo


# stand-in frames (see `prepared_frames`) -> (video kwargs they were made with, the video processor's output)
_PREPARED: dict[int, tuple[dict, dict]] = {}


def _merge(outs: list, order: list[int]):
    """One processor output for a batch from per-video outputs: tensors concatenated, per-video lists joined."""
    import torch

    merged = {}
    for key, value in outs[0].items():
        if isinstance(value, torch.Tensor):
            merged[key] = torch.cat([outs[o][key] for o in order])
        elif isinstance(value, (list, tuple)):
            merged[key] = [item for o in order for item in outs[o][key]]
        else:
            return None
    return merged


def share_video_preprocessing(processor) -> Callable[[], None]:
    """The processor's video part resizes and normalises each distinct frames array of a call once (arrays are
    compared by identity: the runner hands one array to all questions that share it), and takes the output of
    frames prepared in a worker (`prepared_frames`) as it is. Records the keyword arguments the processor passes,
    which workers need to do the same. Returns the undo."""
    from harness.errors import HarnessError

    video = processor.video_processor
    base = type(video)

    class Shared(base):
        def __call__(self, videos=None, *args, **kwargs):
            self._harness_kwargs = dict(kwargs)
            if args or not isinstance(videos, (list, tuple)):
                return base.__call__(self, videos, *args, **kwargs)
            outs, order, seen, ready = [], [], {}, False
            for v in videos:
                if id(v) not in seen:
                    seen[id(v)] = len(outs)
                    prepared = _PREPARED.get(id(v))
                    if prepared is not None:
                        if prepared[0] != kwargs:
                            raise HarnessError("frames were prepared with other video settings than this call's "
                                               f"({prepared[0]} vs {kwargs})")
                        outs.append(prepared[1])
                        ready = True
                    else:
                        outs.append(None)
                order.append(seen[id(v)])
            if not ready and len(outs) == len(videos):  # nothing shared, nothing prepared: the plain call
                return base.__call__(self, videos, **kwargs)
            first = [v for v in videos if id(v) in seen]
            for v in dict((id(v), v) for v in first).values():
                if outs[seen[id(v)]] is None:
                    outs[seen[id(v)]] = base.__call__(self, [v], **kwargs)
            merged = _merge(outs, order)
            if merged is None:
                if ready:
                    raise HarnessError("cannot merge prepared video inputs of this processor")
                return base.__call__(self, videos, **kwargs)
            from transformers import BatchFeature

            return BatchFeature(data=merged, tensor_type=None)

    video.__class__ = Shared

    def undo():
        video.__class__ = base
    return undo


class VideoPrep:
    """Picklable: the model's video preprocessing (resize, normalise, patches) of one selection's frames, with the
    keyword arguments the processor passes for that frame count (in a thread or a worker process; no model state).
    Pixel values come back in the model's dtype (the model casts them to it first thing, so casting here changes
    nothing), as raw bits."""

    def __init__(self, video_processor, kwargs_by_frames: dict[int, dict], dtype: str):
        import copy

        self.video_processor = copy.copy(video_processor)
        self.video_processor.__class__ = next(c for c in type(video_processor).__mro__ if c.__name__ != "Shared")
        self.kwargs_by_frames, self.dtype = kwargs_by_frames, dtype

    def __call__(self, frames):
        import torch

        kwargs = self.kwargs_by_frames[len(frames)]
        out = self.video_processor(videos=[frames], **kwargs)
        result = {"frames": len(frames), "dtype": self.dtype, "kwargs": kwargs, "tensors": {}, "other": {}}
        for key, value in out.items():
            if key == "pixel_values_videos" and self.dtype in ("bfloat16", "float16"):
                value = value.to(getattr(torch, self.dtype)).view(torch.int16)
            if isinstance(value, torch.Tensor):
                result["tensors"][key] = value.numpy()
            else:
                result["other"][key] = value
        return result


def frame_preparer(backbone, n_frames) -> VideoPrep:
    """The off-main-path preprocessing for selections of these frame counts (call in the main thread: it runs the
    backbone's `inputs` once per count); the processor's keyword arguments are
    learned from one call on tiny frames per count (they depend on the count, not on the pixels)."""
    import numpy as np

    kwargs = {}
    video = backbone.processor.video_processor
    for n in sorted(set(n_frames)):
        backbone.inputs([(np.zeros((n, 56, 56, 3), np.uint8), [float(i) for i in range(n)], "x")])
        kwargs[n] = dict(video._harness_kwargs)
    return VideoPrep(video, kwargs, backbone.dtype)


def prepared_frames(result):
    """Stand-in frames for a `VideoPrep` result: a (n, 1, 1, 3) array whose identity the processor
    recognises, so `generate_batch` takes it like decoded frames."""
    import weakref

    import numpy as np
    import torch

    tensors = {k: torch.from_numpy(v) for k, v in result["tensors"].items()}
    if result["dtype"] in ("bfloat16", "float16"):
        tensors["pixel_values_videos"] = tensors["pixel_values_videos"].view(getattr(torch, result["dtype"]))
    standin = np.zeros((result["frames"], 1, 1, 3), np.uint8)
    _PREPARED[id(standin)] = (result["kwargs"], {**tensors, **result["other"]})
    weakref.finalize(standin, _PREPARED.pop, id(standin), None)
    return standin


@dataclass
class SharedPrefix:
    """A batch laid out for one prefill per distinct video: `prefill` holds the model inputs of the prefixes (one
    left-padded row per distinct video, with its pixels, grid and timing), `rows[i]` is question i's video among
    them, and `ids` / `mask` are each question's whole sequence: its video's padded prefix (the cached part,
    `prefix_width` wide), then its own left-padded tokens."""

    prefill: dict
    rows: list[int]
    ids: object
    mask: object
    prefix_width: int
    visual_tokens: list[int]


def plan_shared_prefix(backbone, requests) -> SharedPrefix | None:
    """The CPU side of `generate_shared_prefix`: inputs, grouping, prefixes. None when no two questions share a
    video, when a question's vision tokens fall outside the shared prefix or its inputs have unknown parts, and
    under rope="transformers": transformers 5.x places a prompt's text after a video at start + max(h, w) / merge
    but generated tokens after the largest position + 1, two offsets one continued cache cannot give both."""
    import torch

    owner = shared_video_rows(requests)
    if backbone.rope != "original" or len(set(owner)) == len(owner):
        return None
    config = backbone.model.config
    inputs = backbone.inputs(requests)
    if set(inputs) - {"input_ids", "attention_mask", "mm_token_type_ids", "pixel_values_videos", "video_grid_thw",
                      "second_per_grid_ts"}:
        return None
    keep = inputs["attention_mask"].bool()
    ids = [row[m].tolist() for row, m in zip(inputs["input_ids"], keep)]
    plan = prefix_plan(ids, owner, {config.video_token_id, config.image_token_id})
    if plan is None:
        return None
    unique = sorted(plan)
    pad = backbone.processor.tokenizer.pad_token_id
    prefix_ids, prefix_mask = left_pad([ids[u][:plan[u]] for u in unique], pad)
    prefill = {"input_ids": prefix_ids, "attention_mask": prefix_mask,
               "video_grid_thw": inputs["video_grid_thw"][unique]}
    blocks = torch.split(inputs["pixel_values_videos"], inputs["video_grid_thw"].prod(-1).tolist())
    prefill["pixel_values_videos"] = torch.cat([blocks[u] for u in unique])
    if "second_per_grid_ts" in inputs:
        prefill["second_per_grid_ts"] = inputs["second_per_grid_ts"][unique]
    if "mm_token_type_ids" in inputs:
        types = [row[m].tolist() for row, m in zip(inputs["mm_token_type_ids"], keep)]
        prefill["mm_token_type_ids"] = left_pad([types[u][:plan[u]] for u in unique], 0)[0]
    rows = [unique.index(o) for o in owner]
    suffix_ids, suffix_mask = left_pad([ids[i][plan[o]:] for i, o in enumerate(owner)], pad)
    return SharedPrefix(prefill, rows,
                        torch.cat([prefix_ids[rows], suffix_ids], dim=1),
                        torch.cat([prefix_mask[rows], suffix_mask], dim=1), prefix_ids.shape[1],
                        [sum(t == config.video_token_id for t in row) for row in ids])


def prefill_prefixes(backbone, plan: SharedPrefix):
    """Run the prefixes through the model once (vision tower and language model) and return the KV cache with each
    question's row; the model's rope deltas are set per question, so what follows is positioned as in a
    continued generation. Call under `torch.inference_mode()`."""
    import torch
    from transformers import DynamicCache

    model = backbone.model
    cache = DynamicCache()
    # (`past_key_values`: the name transformers 5.17 takes and 5.24 still accepts)
    model(**{k: v.to(backbone.device) for k, v in plan.prefill.items()}, past_key_values=cache, use_cache=True,
          logits_to_keep=1)
    rows = torch.tensor(plan.rows, device=backbone.device)
    cache.reorder_cache(rows)
    deltas = model.model.rope_deltas
    model.model.rope_deltas = deltas.index_select(0, rows.to(deltas.device))
    return cache


def generate_shared_prefix(backbone, requests) -> list[str] | None:
    """Greedy answers for a batch whose questions share videos, each video's common prefix (system turn, the
    video's tokens) run through the language model once: its KV cache rows are repeated for that video's questions
    and `generate` goes on from the cache over each question's own text (`plan_shared_prefix`, `prefill_prefixes`).
    None where `plan_shared_prefix` declines (the caller then runs the plain path)."""
    import torch

    plan = plan_shared_prefix(backbone, requests)
    if plan is None:
        return None
    backbone.last_visual_tokens = plan.visual_tokens
    with torch.inference_mode():
        cache = prefill_prefixes(backbone, plan)
        ids = plan.ids.to(backbone.device)
        out = backbone.model.generate(input_ids=ids, attention_mask=plan.mask.to(backbone.device),
                                      past_key_values=cache, max_new_tokens=backbone.max_new_tokens, do_sample=False,
                                      temperature=None, top_p=None, top_k=None)
    new = out[:, ids.shape[1]:]
    return [text.strip() for text in backbone.processor.batch_decode(new, skip_special_tokens=True)]


def accelerate(model, processor) -> Callable[[], None]:
    """The grouped vision attention, the shared vision tower and the shared video preprocessing on a loaded
    Qwen2.5-VL model and its processor; returns one undo for them all."""
    undos = [group_vision_attention(model), share_vision_tower(model), share_video_preprocessing(processor)]

    def undo():
        for u in reversed(undos):
            u()
    return undo
