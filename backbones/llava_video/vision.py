"""LLaVA-Video's vision path as the original runs it (LLaVA-NeXT `llava_arch.py`), on a transformers
LLaVA-OneVision model: SigLIP preprocessing, the tower's last hidden state, the projector, per-frame 2-D pooling and
newline embeddings; how many visual tokens that makes; and the runner's off-path preprocessing (`FramePrep`, the
stand-in frames `prepared_frames` hands the backbone)."""
from __future__ import annotations

import math

import numpy as np

from harness.errors import HarnessError
from harness.util.frames import check_frames

POOL_MODES = ("bilinear", "average", "max")
NEWLINE_POSITIONS = ("grid", "frame", "one_token", "no_token")
SIGLIP_MEAN = SIGLIP_STD = (0.5, 0.5, 0.5)  # the original SigLipImageProcessor's normalisation


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
    frames = check_frames(frames)
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


def pixel_values(frames: np.ndarray, size: int, mean, std):
    """(n, 3, size, size) pixel values of `frames`: those `FramePrep` made for a stand-in (which must have used
    these settings), else `preprocess` here."""
    import torch

    prepared = _PREPARED.get(id(frames))
    if prepared is not None:
        if prepared[0] != (size, tuple(mean), tuple(std)):
            raise HarnessError(f"frames were prepared with other settings than this model's ({prepared[0]})")
        return prepared[1]
    return torch.from_numpy(preprocess(frames, size, mean, std))
