"""What a Qwen2.5-VL prefill costs, counted from the model config (for `harness bench`'s prefill rate)."""
from __future__ import annotations

from harness.util.flops import language_flops


def prefill_flops(config, tokens: list[int], video_patches: list[tuple[int, int]]) -> dict:
    """Multiply-adds x 2 of a Qwen2.5-VL prefill, from the model config.

    Language model, per sequence of n real tokens (padding not counted): `harness.util.flops.language_flops`.
    Vision tower, per video of p patches (after temporal fusion), with e = vision width, g = its MLP width, B blocks,
    c = channels x temporal patch x patch^2, windows of w = (window size / patch size)^2 patches, full-attention
    blocks over each temporal patch's s patches, d = language width:
        2 p c e + 2 p B (4 e^2 + 3 e g)       patch embedding, projections, MLP
      + 4 p e (w (B - F) + s F)               attention (F full blocks)
      + 2 (p / m^2) (m^2 e)^2 + 2 (p / m^2) (m^2 e) d_out   the patch merger
    `video_patches` lists (p, s) of the videos the vision tower actually encodes (a video shared by a batch counts
    once; `grid_patches`).
    """
    text = getattr(config, "text_config", config)
    vision = config.vision_config
    d = text.hidden_size
    llm = language_flops(text, tokens)
    e, g, blocks = vision.hidden_size, vision.intermediate_size, vision.depth
    c = vision.in_channels * vision.temporal_patch_size * vision.patch_size ** 2 if hasattr(vision, "in_channels") \
        else 3 * vision.temporal_patch_size * vision.patch_size ** 2
    full = len(getattr(vision, "fullatt_block_indexes", []) or [])
    w = (vision.window_size // vision.patch_size) ** 2
    m2 = vision.spatial_merge_size ** 2
    out_dim = getattr(vision, "out_hidden_size", d)
    vis = 0
    for p, s in video_patches:
        vis += 2 * p * c * e + 2 * p * blocks * (4 * e * e + 3 * e * g)
        vis += 4 * p * e * (w * (blocks - full) + s * full)
        vis += 2 * (p // m2) * (m2 * e) ** 2 + 2 * (p // m2) * (m2 * e) * out_dim
    return {"language": float(llm), "vision": float(vis), "total": float(llm + vis)}


def grid_patches(grid_thw) -> list[tuple[int, int]]:
    """(patches, patches per temporal step) of each video of a processor batch (its `video_grid_thw`)."""
    return [(int(t * h * w), int(h * w)) for t, h, w in grid_thw.tolist()]
