"""Qwen2.5-VL's 3-D rope positions and the timing they encode: two algorithms side by side.

A sequence of text and videos gets one (temporal, row, column) position per token. Both algorithms agree on text
before a video and on the video block itself (a video of t x h x w merged patches starting after position s gets
(s + time index, s + row, s + column)); they differ in where the text AFTER a video goes on:

* `mrope_positions`, the original algorithm (transformers 4.x, which lmms-eval and TSPO ran): at the largest
  position used so far + 1; each temporal patch's time index comes from its own time (`patch_times`), so unevenly
  spaced selections are placed where they were taken. The adapter's rope="original" (default) installs it over the
  model's rope index (`install_original_rope`).
* `rope_positions`, transformers 5.24's computation: at s + max(h, w); one spacing per video (`second_per_grid_ts`,
  the selection's mean spacing: `second_per_grid`). The adapter's rope="transformers" leaves the installed version's
  own computation in place; the mini world's training passes these positions explicitly, so a model trained under
  another transformers version reads the same ones (tests check them against the installed version).

Timing travels with the inputs. Under rope="original" the batch carries each video's patch times in the one timing
argument every transformers version hands to its rope index, `second_per_grid_ts`, as a row of seconds per temporal
patch instead of one spacing (`original_timing_inputs`); the installed rope index reads them there, so nothing is
kept between building the inputs and running the model.
"""
from __future__ import annotations

from typing import Sequence

TSPO_FPS = 2.0  # the fps the processor assumed when TSPO's Qwen adapter passed none


def patch_times(timestamps: Sequence[float], temporal_patch_size: int, timing: str) -> list[float]:
    """Seconds of each temporal patch after the video's first frame: its first frame's real time (`exact`), or
    TSPO's fixed 2 fps spacing (`tspo`)."""
    n_patches = -(-len(timestamps) // temporal_patch_size)
    if timing == "tspo":
        return [g * temporal_patch_size / TSPO_FPS for g in range(n_patches)]
    first = float(timestamps[0])
    return [float(timestamps[g * temporal_patch_size]) - first for g in range(n_patches)]


def second_per_grid(timestamps: Sequence[float], temporal_patch_size: int, real_timing: bool) -> float:
    """Seconds one temporal patch spans, the only timing transformers' own rope takes (see the module doc)."""
    fixed = temporal_patch_size / TSPO_FPS
    if not real_timing or len(timestamps) < 2:
        return fixed  # one frame (or one patch): no spacing to express
    span = float(timestamps[-1]) - float(timestamps[0])
    return temporal_patch_size * span / (len(timestamps) - 1) if span > 0 else fixed


def timing_inputs(processor, timestamps: Sequence[Sequence[float]], real_timing: Sequence[bool]) -> dict:
    """`second_per_grid_ts` for a batch, overriding whatever fps the processor assumed: the timing is ours to state."""
    import torch

    patch = processor.video_processor.temporal_patch_size
    return {"second_per_grid_ts": torch.tensor([second_per_grid(ts, patch, real)
                                                for ts, real in zip(timestamps, real_timing)], dtype=torch.float32)}


def original_timing_inputs(processor, timestamps: Sequence[Sequence[float]], timing: str) -> dict:
    """Under rope="original": each video's `patch_times` as one row of `second_per_grid_ts` (float64, so the time
    indices are computed from the exact values; shorter rows padded with 0, never read), for `install_original_rope`."""
    import torch

    patch = processor.video_processor.temporal_patch_size
    rows = [patch_times(ts, patch, timing) for ts in timestamps]
    width = max(len(r) for r in rows)
    return {"second_per_grid_ts": torch.tensor([r + [0.0] * (width - len(r)) for r in rows], dtype=torch.float64)}


def mrope_positions(input_ids, attention_mask, video_grid_thw, image_grid_thw, patch_times, *, video_token_id: int,
                    image_token_id: int, spatial_merge_size: int, tokens_per_second: float):
    """Qwen2.5-VL's 3-D rope positions and deltas, by the original algorithm (see the module docstring).

    Text tokens get one position on all three axes, counting on from the largest position so far + 1; a vision
    block of t x h x w merged patches starting after position s gets (s + time index, s + row, s + column). Videos
    take their temporal indices from `patch_times` (seconds of each temporal patch from the video's first frame, one
    row per video in batch order: lists or a 2-D tensor), images have one temporal patch. Returns (position_ids
    [3, B, L], deltas [B, 1]), padding positions left at 1 as the original does.
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
                seconds = torch.as_tensor(next(times), dtype=torch.float64).cpu()
                temporal = (seconds[:t] * tokens_per_second).long()
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


def install_original_rope(model) -> None:
    """Replace a loaded Qwen2.5-VL's rope index with `mrope_positions`, reading the patch times from the call's
    `second_per_grid_ts` (`original_timing_inputs`).

    The deltas it returns are what generation adds to later positions, and transformers versions count them
    against different lengths (4.x: the padded row; 5.x: its unpadded tokens). So the installed version's own
    rope index runs too (with no timing: it only has to tell its convention), and the length it subtracted is its
    max + 1 - its delta."""
    import inspect

    import torch

    inner, config = model.model, model.config
    native = inner.get_rope_index
    signature = inspect.signature(native)

    def rope_index(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        mask = bound.arguments.get("attention_mask")
        times = bound.arguments.get("second_per_grid_ts")
        if "second_per_grid_ts" in signature.parameters:
            bound.arguments["second_per_grid_ts"] = None
        native_positions, native_deltas = native(*bound.args, **bound.kwargs)
        positions, deltas = mrope_positions(
            bound.arguments["input_ids"], mask, bound.arguments.get("video_grid_thw"),
            bound.arguments.get("image_grid_thw"), [] if times is None else times,
            video_token_id=config.video_token_id, image_token_id=config.image_token_id,
            spatial_merge_size=config.vision_config.spatial_merge_size,
            tokens_per_second=config.vision_config.tokens_per_second)
        for b in range(positions.shape[1]):
            keep = mask[b].bool() if mask is not None else torch.ones(positions.shape[2], dtype=torch.bool)
            used = int(native_positions[:, b, keep].max()) + 1 - int(native_deltas[b])
            deltas[b] += int(keep.sum()) - used
        return positions, deltas.to(native_deltas.device)

    inner.get_rope_index = rope_index


def rope_positions(input_ids, attention_mask, video_grid_thw, second_per_grid_ts, *, video_token_id: int,
                   spatial_merge_size: int = 2, tokens_per_second: float = 2):
    """The 3-D rope positions transformers 5.24 gives Qwen2.5-VL inputs of text and videos ((3, B, L), padding at
    0): text counts on by one; a video of t x h x w merged patches starting at s gets (s + floor(g * tokens/s *
    seconds per grid), s + row, s + column), and the text after it goes on at s + max(h, w). The mini world's
    training passes these explicitly (see the module docstring)."""
    import torch

    positions = torch.zeros(3, *input_ids.shape, dtype=input_ids.dtype, device=input_ids.device)
    grids, seconds = iter(video_grid_thw), iter(second_per_grid_ts)
    for b in range(input_ids.shape[0]):
        keep = attention_mask[b].bool() if attention_mask is not None else torch.ones_like(input_ids[b], dtype=bool)
        ids = input_ids[b][keep]
        is_video = (ids == video_token_id).tolist()
        parts, pos, i = [], 0, 0
        while i < len(ids):
            j = i
            while j < len(ids) and is_video[j] == is_video[i]:
                j += 1
            if not is_video[i]:
                parts.append(torch.arange(j - i, device=ids.device).view(1, -1).expand(3, -1) + pos)
                pos += j - i
            else:
                t, h, w = (int(x) for x in next(grids))
                interval = tokens_per_second * next(seconds)
                h, w = h // spatial_merge_size, w // spatial_merge_size
                tt = (torch.arange(t, device=ids.device) * interval).long()
                rows, cols = torch.arange(h, device=ids.device) + pos, torch.arange(w, device=ids.device) + pos
                grid = torch.stack(torch.meshgrid(tt, rows, cols, indexing="ij")).reshape(3, -1)
                grid[0] += pos
                parts.append(grid)
                pos += max(h, w)
            i = j
        positions[:, b, keep] = torch.cat(parts, dim=1).to(positions.dtype)
    return positions
