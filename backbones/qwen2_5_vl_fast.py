"""Speed-ups for a loaded `qwen2.5-vl` backbone that leave its answers' arithmetic as it is: `accelerate(backbone)`.

* Vision attention in one call per window size. transformers' SDPA path of the Qwen2.5-VL vision tower loops in
  Python over every attention window (64 frames at 336x644: ~576 windows x 28 windowed layers = ~16,000 small SDPA
  calls per video), which costs more than the tower's arithmetic. The windows have only two or three distinct
  lengths, so gathering equal-length windows into one batched SDPA call does the same per-window attention with a
  handful of launches. (With flash_attention_2 the tower already runs varlen kernels: left alone.)
* The vision tower once per distinct video in a batch: questions that share their frames (uniform frames, three
  Video-MME questions per video) are one batch whose videos are the same pixels; each distinct video is encoded once
  and its features reused for the others.
* Video preprocessing once per distinct frames object in a batch: the processor gets the same array once per
  question; it resizes and normalises it once and repeats the result.

Each part can be undone (`undo()`), so one loaded model serves as both the stock reference and the fast path in a
benchmark. This module patches the loaded objects only; nothing global in transformers changes.
"""
from __future__ import annotations

import sys
from typing import Callable


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


def share_video_preprocessing(processor) -> Callable[[], None]:
    """The processor's video part resizes and normalises each distinct frames array of a call once (arrays are
    compared by identity: the runner hands one array to all questions that share it). Returns the undo."""
    import torch

    video = processor.video_processor
    base = type(video)

    class Shared(base):
        def __call__(self, videos=None, *args, **kwargs):
            if not isinstance(videos, (list, tuple)) or len(videos) < 2 or args:
                return base.__call__(self, videos, *args, **kwargs)
            first: dict[int, int] = {}
            distinct = []
            for v in videos:
                if id(v) not in first:
                    first[id(v)] = len(distinct)
                    distinct.append(v)
            if len(distinct) == len(videos):
                return base.__call__(self, videos, **kwargs)
            outs = [base.__call__(self, [v], **kwargs) for v in distinct]
            keys = set(outs[0].keys())
            if keys - {"pixel_values_videos", "video_grid_thw"}:  # something else per video: do it the plain way
                return base.__call__(self, videos, **kwargs)
            order = [first[id(v)] for v in videos]
            merged = {k: torch.cat([outs[o][k] for o in order]) for k in keys}
            return type(outs[0])(data=merged, tensor_type=None)

    video.__class__ = Shared

    def undo():
        video.__class__ = base
    return undo


def accelerate(backbone) -> Callable[[], None]:
    """All three speed-ups on a loaded Qwen2.5-VL backbone; returns one undo for them all."""
    undos = [group_vision_attention(backbone.model), share_vision_tower(backbone.model),
             share_video_preprocessing(backbone.processor)]

    def undo():
        for u in reversed(undos):
            u()
    return undo
