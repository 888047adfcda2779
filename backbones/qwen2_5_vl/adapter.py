"""`qwen2.5-vl`: Qwen2.5-VL through Hugging Face transformers; the 7B and the shipped mini model run the same code.

One user turn holds the selected frames as ONE video (in time order) and then the task's prompt; decoding is greedy
and only the new text is returned, special tokens stripped. Frames arrive at their native size; the model folder's
video processor resizes them (`smart_resize` into [min_pixels, max_pixels] per frame).

Timing. Qwen2.5-VL fuses `temporal_patch_size` (2) consecutive frames into one temporal patch and gives the patch a
temporal rope position. The adapter computes the 3-D rope positions itself (`rope.mrope_positions`, installed over
the model's `get_rope_index`), for two reasons:

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

Modules: `chat` (the conversation format, offline tokenizer and processors), `rope` (both 3-D rope algorithms and
the timing they take), `fast` (the answer-preserving speed-ups `accelerate` turns on), `probe` and `flops`
(`prefill_probe` for `harness bench`), `random_init` (architectures with random weights), `scoring`
(`score_frames`: FRAG's per-frame yes/no score, each frame as an image), `scaled` (`generate_scaled`: a
multi-resolution selection as images, each at its scale of the frame, as Q-Frame gives them).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from backbones.base import Backbone, PrefillProbe, Request
from backbones.qwen2_5_vl import fast
from backbones.qwen2_5_vl.chat import build_inputs
from backbones.qwen2_5_vl.random_init import CONFIGS, random_model, random_processor
from backbones.qwen2_5_vl.rope import install_original_rope, original_timing_inputs, timing_inputs
from harness.errors import HarnessError
from harness.util.checkpoints import weights_id
from harness.registry import BACKBONES
from harness.util.checks import check_choices, torch_device

DEFAULT_MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
DTYPES = ("float32", "bfloat16", "float16")
# TSPO's Qwen2.5-VL evaluation (lmms-eval qwen2_5_vl): 256*28*28 and 300*28*28 pixels per frame.
TSPO_MIN_PIXELS, TSPO_MAX_PIXELS = 200704, 235200
PIXEL_PRESETS = ("tspo", "lmms-eval", "model")
TIMINGS = ("exact", "tspo")
ROPES = ("original", "transformers")
ATTENTION = ("sdpa", "eager", "flash_attention_2")

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
    "score_max_pixels": "most pixels per frame when scoring frames for FRAG (None: the folder's image limits)",
    "scaled_jpeg": "multi-resolution selections (qframe): send each resized frame through JPEG quality 75 as the "
                   "official Q-Frame code does (default off: the decoded pixels)",
}


def lmms_eval_max_pixels(n_frames: int, min_pixels: int = 256 * 28 * 28, user_max: int = 1605632) -> int:
    """qwen-vl-utils 0.0.14's per-frame cap for a video of `n_frames` frames, as lmms-eval 0.7.3 calls it."""
    total = 128000 * 28 * 28 * 0.9
    frames = max(2, n_frames + n_frames % 2)  # qwen-vl-utils pads a frame list to an even count
    cap = max(min(768 * 28 * 28, total / frames * 2), int(min_pixels * 1.05))
    return int(min(user_max, cap))


@BACKBONES.register("qwen2.5-vl", description="Qwen2.5-VL (transformers); 7B by default, any folder of the family",
                    help=_HELP, choices={"dtype": DTYPES, "pixels": PIXEL_PRESETS, "timing": TIMINGS,
                                         "rope": ROPES, "config": tuple(CONFIGS),
                                         "attn_implementation": ATTENTION})
class Qwen25VL(Backbone):
    name = "qwen2.5-vl"
    takes_scales = True  # `generate_scaled`: each frame an image at its scale (backbones.qwen2_5_vl.scaled)

    def __init__(self, model: str = DEFAULT_MODEL, pixels: str = "tspo", min_pixels: int | None = None,
                 max_pixels: int | None = None, max_new_tokens: int = 16, timing: str = "exact",
                 rope: str = "original", random_init: bool = False, config: str = "qwen2.5-vl-7b",
                 attn_implementation: str = "sdpa", device: str = "cpu", dtype: str = "float32",
                 devices: Sequence[str] | None = None, score_max_pixels: int | None = None,
                 scaled_jpeg: bool = False):
        import torch  # heavy imports stay out of `import backbones` (listing entries needs neither)
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

        from backbones import placement
        from harness.shipped import resolve_model

        check_choices((("dtype", dtype, DTYPES), ("pixels", pixels, PIXEL_PRESETS), ("timing", timing, TIMINGS),
                       ("rope", rope, ROPES), ("config", config, CONFIGS),
                       ("attn_implementation", attn_implementation, ATTENTION)), self.name)
        spanning = devices is not None and len(devices) > 1  # one replica over several GPUs (backbones.placement)
        self.device = torch_device(devices[0] if spanning else device)
        self.pixels, self.timing, self.rope, self.dtype = pixels, timing, rope, dtype
        self.max_new_tokens, self.random_init, self.attn_implementation = int(max_new_tokens), bool(random_init), \
            attn_implementation
        self.checks_answers = not self.random_init  # random weights answer noise
        self.min_override, self.max_override = min_pixels, max_pixels
        self.score_max_pixels = None if score_max_pixels is None else int(score_max_pixels)
        self.scaled_jpeg = bool(scaled_jpeg)
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
            install_original_rope(self.model)
        self._accelerated = False  # `accelerate` on: generate_batch shares prompt prefixes, workers prepare frames

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
                "timing": self.timing, "rope": self.rope, "attn_implementation": self.attn_implementation,
                **({} if self.score_max_pixels is None else {"score_max_pixels": self.score_max_pixels}),
                **({"scaled_jpeg": True} if self.scaled_jpeg else {})}

    def inputs(self, requests: Sequence[Request]):
        """Left-padded model inputs for a batch of (frames, timestamps, prompt), timing stated our way: under
        rope="original" each video's patch times (`rope.original_timing_inputs`), else one spacing per video."""
        for frames, timestamps, _ in requests:
            if len(timestamps) != len(frames):
                raise ValueError(f"{len(frames)} frames but {len(timestamps)} timestamps")
        limits = {self.pixel_limits(len(frames)) for frames, _, _ in requests}
        if len(limits) > 1:  # pixels=lmms-eval: the cap depends on the frame count
            raise ValueError("one batch must share its pixel limits (same frame count under pixels=lmms-eval)")
        (low, high), = limits
        batch = build_inputs(self.processor, [np.asarray(f) for f, _, _ in requests], [p for _, _, p in requests],
                             padding_side="left", size={"shortest_edge": low, "longest_edge": high})
        timestamps = [ts for _, ts, _ in requests]
        if self.rope == "original":
            batch.update(original_timing_inputs(self.processor, timestamps, self.timing))
        else:
            batch.update(timing_inputs(self.processor, timestamps, [self.timing == "exact"] * len(requests)))
        return batch

    def generate(self, frames: np.ndarray, timestamps: Sequence[float], prompt: str) -> str:
        return self.generate_batch([(frames, timestamps, prompt)])[0]

    def generate_batch(self, requests: Sequence[Request]) -> list[str]:
        """One greedy `generate` over the batch; accelerated, questions sharing a video continue from one prefill of
        its prompt prefix (`fast.generate_shared_prefix`, which declines what it cannot reproduce)."""
        if self._accelerated:
            texts = fast.generate_shared_prefix(self, requests)
            if texts is not None:
                return texts
        return self.greedy(self.inputs(requests), self.model.config.video_token_id)

    def greedy(self, inputs, visual_token: int) -> list[str]:
        """Greedy answers to processor output (counting its `visual_token`s per request), new text only."""
        import torch

        inputs = inputs.to(self.device)  # the model casts pixels to its own dtype
        self.last_visual_tokens = (inputs["input_ids"] == visual_token).sum(dim=-1).tolist()
        with torch.inference_mode():
            # Greedy; anything else (e.g. the 7B's repetition_penalty) comes from the folder's generation config.
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                                      temperature=None, top_p=None, top_k=None)
        new = out[:, inputs["input_ids"].shape[1]:]
        return [text.strip() for text in self.processor.batch_decode(new, skip_special_tokens=True)]

    def generate_scaled(self, frames: np.ndarray, timestamps: Sequence[float], scales: Sequence[float],
                        prompt: str) -> str:
        return self.generate_scaled_batch([(frames, timestamps, scales, prompt)])[0]

    def generate_scaled_batch(self, requests) -> list[str]:
        """A multi-resolution selection per request: its frames as images, each at its scale (`scaled`)."""
        from backbones.qwen2_5_vl.scaled import generate_scaled_batch

        return generate_scaled_batch(self, requests)

    def accelerate(self) -> Callable[[], None]:
        """Grouped vision attention, the vision tower and the video preprocessing once per distinct video of a
        batch, and shared prompt prefixes in `generate_batch` (`fast`); the answers stay as they are."""
        undo = fast.accelerate(self.model, self.processor)
        self._accelerated = True

        def off() -> None:
            undo()
            self._accelerated = False
        return off

    def frame_preparer(self, frame_counts: Sequence[int]):
        """`fast.VideoPrep` for these frame counts once `accelerate` is on (the processor it patched recognises the
        prepared frames); None before (workers hand over raw frames)."""
        return fast.frame_preparer(self, frame_counts) if self._accelerated else None

    def prepared_frames(self, result):
        return fast.prepared_frames(result)

    def prefill_probe(self, requests: Sequence[Request]) -> PrefillProbe:
        from backbones.qwen2_5_vl.probe import prefill_probe

        return prefill_probe(self, requests, self._accelerated)

    def score_frames(self, frames: np.ndarray, prompt: str) -> np.ndarray:
        """FRAG's score of each frame alone, as an image: P("A") of the first token (`scoring`)."""
        from backbones.qwen2_5_vl.scoring import score_frames

        return score_frames(self, frames, prompt)


@BACKBONES.register("mini-qwen2.5-vl", description="the shipped mini Qwen2.5-VL (~1M parameters, trained here "
                    "on needle frames; CPU)", help=_HELP, choices={"dtype": DTYPES, "pixels": PIXEL_PRESETS,
                                                                   "timing": TIMINGS, "rope": ROPES})
class MiniQwen25VL(Qwen25VL):
    """The same adapter; only the default folder, its own pixel settings and the rope it was trained with differ
    (its trainer feeds the model through transformers' own positions, so that is what it reads best)."""

    name = "mini-qwen2.5-vl"

    def __init__(self, model: str = "mini-qwen2.5-vl", pixels: str = "model", min_pixels: int | None = None,
                 max_pixels: int | None = None, max_new_tokens: int = 16, timing: str = "exact",
                 rope: str = "transformers", device: str = "cpu", dtype: str = "float32",
                 score_max_pixels: int | None = None, scaled_jpeg: bool = False):
        super().__init__(model, pixels, min_pixels, max_pixels, max_new_tokens, timing, rope, device=device,
                         dtype=dtype, score_max_pixels=score_max_pixels, scaled_jpeg=scaled_jpeg)
