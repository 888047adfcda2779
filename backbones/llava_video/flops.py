"""What a LLaVA-Video prefill costs, counted from the model config (for `harness bench`'s prefill rate)."""
from __future__ import annotations

from harness.util.flops import language_flops


def llava_prefill_flops(config, tokens: list[int], video_frames: list[int], cached: list[int] | None = None) -> dict:
    """Multiply-adds x 2 of a LLaVA-Video prefill (transformers LLaVA-OneVision config), from the model config.

    Language model on each merged sequence of n real tokens (13,440 visual + the text for 64 frames):
    `harness.util.flops.language_flops`; `cached[i]` tokens of a shared prefix that sequence i continues (its
    attention reads them too). Vision, per frame of p = (image size / patch size)^2 patches (729 at 384 px,
    patch 14; SigLIP has no class token and no windows), with e = vision width, g = its MLP width, B layers (26),
    c = 3 x patch^2, d = language width:
        2 p c e + 2 p B (4 e^2 + 2 e g)       patch embedding, q/k/v/out projections, MLP
      + 4 p^2 e B                           full attention over the frame (QK^T and PV)
      + 2 p (e d + d^2)                     the 2-layer projector
    (bilinear pooling and newline tokens are a few operations per element: not counted). `video_frames` lists the
    frame counts of the videos the tower actually encodes (a video shared by a batch counts once).
    """
    text, vision = config.text_config, config.vision_config
    d, e, g, blocks = text.hidden_size, vision.hidden_size, vision.intermediate_size, vision.num_hidden_layers
    p = (vision.image_size // vision.patch_size) ** 2
    c = getattr(vision, "num_channels", 3) * vision.patch_size ** 2
    per_frame = 2 * p * c * e + 2 * p * blocks * (4 * e * e + 2 * e * g) + 4 * p * p * e * blocks \
        + 2 * p * (e * d + d * d)
    llm, vis = language_flops(text, tokens, cached), per_frame * sum(video_frames)
    return {"language": float(llm), "vision": float(vis), "total": float(llm + vis)}
