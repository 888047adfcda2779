"""Multi-resolution selections for Qwen2.5-VL (Q-Frame, arXiv 2506.22139): each frame is its own image, resized to
its scale of the frame.

Written from a reading of the official xiaomi-research/q-frame `lmms_eval/models/qwen2_vl_w_qframe.py`, not copied:

* each kept frame, as a PIL image, is resized with Lanczos to (width // d, height // d) for its scale 1/d (1/2, 1/4,
  1/8 of the decoded frame: the per-frame pixel budget follows the frame's rank, not the backbone's video pixel
  limits);
* the frames go as a MULTI-IMAGE input in time order: one user turn holding the images one after another and then the
  prompt, Qwen's default system turn, the assistant turn opened (the official message: `{"type": "image"}` parts,
  then the text). Images carry no timestamps (each is one temporal patch, as the official code gives them);
* the model folder's image processor rounds each image to its patch grid inside its own pixel limits (the official
  code does this rounding with qwen-vl-utils' `fetch_image`, whose limits for the 7B are the same 4 * 28 * 28 and
  16384 * 28 * 28; a frame that small is scaled up to the minimum);
* the official code sends every resized frame through a JPEG file (PIL's default quality 75, base64 data URL) before
  qwen-vl-utils reads it back: `scaled_jpeg=True` does that round trip; off by default, the frames stay as decoded.

Greedy decoding, only the new text returned, as `generate`; `last_visual_tokens` counts the image tokens.
"""
from __future__ import annotations

from io import BytesIO
from typing import Sequence

import numpy as np

from harness.errors import HarnessError
from harness.util.frames import check_frames

SCALED_REQUEST = "(frames, timestamps, scales, prompt)"


def scaled_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """(width, height) of a frame at `scale`: width // d and height // d for scale 1/d (the official
    `width // 2` etc.), at least 1 pixel; a scale that is no 1/d floors width * scale."""
    if not 0.0 < float(scale) <= 1.0:
        raise HarnessError(f"scale {scale!r} is outside (0, 1]")
    d = round(1.0 / float(scale))
    if abs(1.0 / d - float(scale)) < 1e-12:
        return max(1, int(width) // d), max(1, int(height) // d)
    return max(1, int(width * float(scale))), max(1, int(height * float(scale)))


def scaled_images(frames: np.ndarray, scales: Sequence[float], jpeg: bool = False) -> list:
    """PIL images: frame i resized with Lanczos to its scale (and through JPEG quality 75 when `jpeg`)."""
    from PIL import Image

    frames = check_frames(frames)
    if len(scales) != len(frames):
        raise HarnessError(f"{len(frames)} frames but {len(scales)} scales")
    images = []
    for frame, scale in zip(frames, scales):
        image = Image.fromarray(frame).convert("RGB")
        image = image.resize(scaled_size(image.width, image.height, scale), Image.Resampling.LANCZOS)
        if jpeg:
            buffer = BytesIO()
            image.save(buffer, format="JPEG")
            image = Image.open(BytesIO(buffer.getvalue())).convert("RGB")
        images.append(image)
    return images


def images_chat_text(processor, n_images: int, prompt: str) -> str:
    """One user turn: `n_images` images in order, then the prompt (the template adds the system turn)."""
    content = [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": prompt}]
    return processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                         add_generation_prompt=True)


def scaled_inputs(backbone, requests: Sequence[tuple]):
    """Left-padded model inputs for a batch of (frames, timestamps, scales, prompt)."""
    texts, images = [], []
    for request in requests:
        if len(request) != 4:
            raise HarnessError(f"a scaled request is {SCALED_REQUEST}, got {len(request)} parts")
        frames, timestamps, scales, prompt = request
        if len(timestamps) != len(frames):
            raise HarnessError(f"{len(frames)} frames but {len(timestamps)} timestamps")
        resized = scaled_images(frames, scales, backbone.scaled_jpeg)
        texts.append(images_chat_text(backbone.processor, len(resized), prompt))
        images += resized
    return backbone.processor(text=texts, images=images, padding=True, padding_side="left", return_tensors="pt")


def generate_scaled_batch(backbone, requests: Sequence[tuple]) -> list[str]:
    """Greedy answers for a batch of scaled requests (see the module docstring), image tokens counted."""
    return backbone.greedy(scaled_inputs(backbone, requests), backbone.model.config.image_token_id)
