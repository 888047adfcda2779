"""`qwen2.5-vl`: Qwen2.5-VL through Hugging Face transformers; the 7B and the shipped mini model run the same code.

One user turn holds the selected frames as ONE video (in time order) and then the task's prompt; decoding is greedy
and only the new text is returned, special tokens stripped. Frames arrive at their native size; the model folder's
video processor resizes them (`smart_resize` into [min_pixels, max_pixels] per frame).

Timing. Qwen2.5-VL fuses `temporal_patch_size` (2) consecutive frames into one temporal patch and gives patch g the
temporal rope position floor(g * second_per_grid * tokens_per_second): ONE number per video, `second_per_grid`,
carries all the timing the model gets. So:

* `timestamps=False` reproduces TSPO's published runs: the adapter there passes no fps, the processor of its
  transformers version assumed 2 fps, so any K frames are placed as if they were 0.5 s apart (second_per_grid = 1).
* `timestamps=True` sets second_per_grid = temporal_patch_size * (t_last - t_first) / (K - 1), the selection's mean
  frame spacing. Exact for evenly spaced selections (uniform sampling), up to the floor to 1/tokens_per_second s.
  Not exact: (a) a non-uniform selection (top-k) has its patches placed evenly over the selected span instead of
  at their real times; (b) the two frames of one temporal patch share one position; (c) the absolute start time
  t_first is not encoded (Qwen's own video input starts at position 0 too).
  Exact per-patch timing needs per-token position ids: `timing_inputs` is the one place to change for that.

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
from harness.registry import BACKBONES

DEFAULT_MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
DTYPES = ("float32", "bfloat16", "float16")
TSPO_FPS = 2.0  # the fps the processor assumed when TSPO's Qwen adapter passed none
# TSPO's Qwen2.5-VL evaluation (lmms-eval qwen2_5_vl): 256*28*28 and 300*28*28 pixels per frame.
TSPO_MIN_PIXELS, TSPO_MAX_PIXELS = 200704, 235200
SMALL_FILE = 64 << 20  # weight files up to this size are hashed whole for the run identity

_HELP = {
    "model": "hub id, local folder, or a shipped mini model name (mini-qwen2.5-vl)",
    "min_pixels": "fewest pixels per frame after resizing (None: the model folder's setting)",
    "max_pixels": "most pixels per frame after resizing (None: the model folder's setting)",
    "max_new_tokens": "generation length limit",
    "timestamps": "True: temporal positions follow the frames' real spacing; False: TSPO's fixed 2 fps",
}


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


def build_inputs(processor, videos: Sequence[np.ndarray], prompts: Sequence[str], answers: Sequence[str] | None = None):
    """Processor output for a batch of questions (right-padded); training and `generate` both build inputs here."""
    for frames in videos:
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
            raise ValueError(f"frames must be (n, H, W, 3) uint8 with n >= 1, got {frames.shape} {frames.dtype}")
    answers = [None] * len(prompts) if answers is None else answers
    texts = [chat_text(processor, p, a) for p, a in zip(prompts, answers)]
    return processor(text=texts, videos=list(videos), padding=True, return_tensors="pt")


def timing_inputs(processor, timestamps: Sequence[Sequence[float]], real_timing: Sequence[bool]) -> dict:
    """`second_per_grid_ts` for a batch, overriding whatever fps the processor assumed: the timing is ours to state."""
    import torch

    patch = processor.video_processor.temporal_patch_size
    return {"second_per_grid_ts": torch.tensor([second_per_grid(ts, patch, real)
                                                for ts, real in zip(timestamps, real_timing)], dtype=torch.float32)}


@BACKBONES.register("qwen2.5-vl", description="Qwen2.5-VL (transformers); 7B by default, any folder of the family",
                    help=_HELP, choices={"dtype": DTYPES})
class Qwen25VL(Backbone):
    name = "qwen2.5-vl"

    def __init__(self, model: str = DEFAULT_MODEL, min_pixels: int | None = TSPO_MIN_PIXELS,
                 max_pixels: int | None = TSPO_MAX_PIXELS, max_new_tokens: int = 16, timestamps: bool = True,
                 device: str = "cpu", dtype: str = "float32"):
        import torch  # heavy imports stay out of `import backbones` (listing entries needs neither)
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

        from harness.miniworld import resolve_model

        if dtype not in DTYPES:
            raise HarnessError(f"unknown dtype {dtype!r} (known: {', '.join(DTYPES)})")
        try:
            self.device = torch.device(device)
        except RuntimeError as e:
            raise HarnessError(f"invalid device {device!r}: {e}") from None
        self.model_name, self.source = str(model), resolve_model(model)
        self.max_new_tokens, self.timestamps, self.dtype = int(max_new_tokens), bool(timestamps), dtype
        try:
            self.processor = AutoProcessor.from_pretrained(self.source)
            self.model = Qwen2_5_VLForConditionalGeneration.from_pretrained(self.source, dtype=getattr(torch, dtype))
        except Exception as e:  # OSError, ValueError, ...: all mean "cannot load"
            raise HarnessError(f"cannot load Qwen2.5-VL model {model!r}: {' '.join(str(e).split())}") from None
        self.model.to(self.device).eval()
        video = self.processor.video_processor
        size = {"shortest_edge": video.size["shortest_edge"], "longest_edge": video.size["longest_edge"]}
        if min_pixels is not None:
            size["shortest_edge"] = int(min_pixels)
        if max_pixels is not None:
            size["longest_edge"] = int(max_pixels)
        if size["shortest_edge"] > size["longest_edge"]:
            raise HarnessError(f"min_pixels {size['shortest_edge']} exceeds max_pixels {size['longest_edge']}")
        video.size = size
        self.min_pixels, self.max_pixels = size["shortest_edge"], size["longest_edge"]
        self._weights = weights_id(self.source)

    def config(self) -> dict:
        return {"model": self.model_name, "weights": self._weights, "min_pixels": self.min_pixels,
                "max_pixels": self.max_pixels, "max_new_tokens": self.max_new_tokens, "timestamps": self.timestamps}

    def timing_inputs(self, timestamps: Sequence[float]) -> dict:
        """The model inputs that carry the frames' timing: the hook for exact per-patch timing later."""
        return timing_inputs(self.processor, [timestamps], [self.timestamps])

    def generate(self, frames: np.ndarray, timestamps: Sequence[float], prompt: str) -> str:
        import torch

        frames = np.asarray(frames)
        if len(timestamps) != len(frames):
            raise ValueError(f"{len(frames)} frames but {len(timestamps)} timestamps")
        inputs = build_inputs(self.processor, [frames], [prompt])
        inputs.update(self.timing_inputs(timestamps))
        inputs = inputs.to(self.device)  # the model casts pixels to its own dtype
        with torch.inference_mode():
            # Greedy; anything else (e.g. the 7B's repetition_penalty) comes from the folder's generation config.
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                                      temperature=None, top_p=None, top_k=None)
        new = out[0, inputs["input_ids"].shape[1]:]
        return self.processor.decode(new, skip_special_tokens=True).strip()


@BACKBONES.register("mini-qwen2.5-vl", description="the shipped mini Qwen2.5-VL (~1M parameters, trained here "
                    "on needle frames; CPU)", help=_HELP, choices={"dtype": DTYPES})
class MiniQwen25VL(Qwen25VL):
    """The same adapter; only the default folder and its own pixel settings differ."""

    name = "mini-qwen2.5-vl"

    def __init__(self, model: str = "mini-qwen2.5-vl", min_pixels: int | None = None, max_pixels: int | None = None,
                 max_new_tokens: int = 16, timestamps: bool = True, device: str = "cpu", dtype: str = "float32"):
        super().__init__(model, min_pixels, max_pixels, max_new_tokens, timestamps, device, dtype)
