"""Any transformers video-LLM that takes video through `AutoProcessor` + `AutoModelForImageTextToText` and its chat
template, as a backbone: `qwen2-vl`, `qwen3-vl`, `llava-onevision`, `llava-next-video`, `internvl`, `smolvlm2`
(per-family settings in `families`).

One user turn holds the selected frames as ONE video (in time order), then the task's prompt, in the folder's own
chat template; decoding is greedy (`do_sample=False`, no temperature/top-p/top-k) and only the new text is returned,
special tokens stripped. Batches are left-padded and must give the answers `generate` gives one by one (tested);
with `accelerate` on, questions on the same frames share their prompt prefix instead (shared.py).
`last_visual_tokens`: the video/image placeholder tokens each request put in front of the language model.

`random_init=true` builds `config` (configs.py: `tiny`, or a real size) with seeded random weights and an offline
processor (offline.py); otherwise `model` is a hub id or folder loaded as is. `devices` (set by `harness run
--gpus-per-replica`) spreads one replica layer by layer over several GPUs (backbones.placement).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from backbones.base import Backbone, Request
from backbones.hf.configs import CONFIGS
from backbones.hf.families import FAMILIES, Family, video_kwargs, video_metadata
from backbones.hf.shared import generate_shared_prefix
from harness.errors import HarnessError
from harness.registry import BACKBONES
from harness.util.checks import check_choices, torch_device
from harness.util.frames import check_frames

DTYPES = ("float32", "bfloat16", "float16")
ATTENTION = ("sdpa", "eager", "flash_attention_2")
SCORE_TOKEN = "A"  # FRAG's first option, "A. yes"

_HELP = {
    "model": "hub id or local folder of the family (transformers layout)",
    "pixels": "per-frame pixel budget preset: lmms-eval (0.7.3's model defaults, Qwen families) or model (the "
              "folder's video processor)",
    "min_pixels": "fewest pixels per frame (Qwen families; overrides the preset)",
    "max_pixels": "most pixels per frame (Qwen families; overrides the preset)",
    "max_new_tokens": "generation length limit",
    "random_init": "build `config` with random weights (tests, throughput work; answers are meaningless)",
    "config": "architecture for random_init: tiny (a few MB) or a real size",
    "seed": "random_init seed",
    "device": "torch device (cpu, cuda, cuda:1, ...)",
    "dtype": "weights and activations",
    "attn_implementation": "attention kernels (flash_attention_2 needs the flash-attn package)",
    "devices": "GPUs this replica spans, layer by layer (set by harness run --gpus-per-replica)",
}


class HFVideoLLM(Backbone):
    family: Family
    _accelerated = False  # `accelerate` on: generate_batch shares each video's prompt prefix (shared.py)

    def __init__(self, model: str | None = None, pixels: str | None = None, min_pixels: int | None = None,
                 max_pixels: int | None = None, max_new_tokens: int = 16, random_init: bool = False,
                 config: str = "tiny", seed: int = 0, device: str = "cpu", dtype: str = "float32",
                 attn_implementation: str = "sdpa", devices: Sequence[str] | None = None):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from backbones import placement

        fam = self.family
        pixels = fam.default_pixels if pixels is None else pixels
        check_choices((("dtype", dtype, DTYPES), ("pixels", pixels, tuple(fam.pixel_presets)),
                       ("config", config, tuple(CONFIGS[fam.name])),
                       ("attn_implementation", attn_implementation, ATTENTION)), self.name)
        if (min_pixels is not None or max_pixels is not None) and fam.name not in ("qwen2-vl", "qwen3-vl"):
            raise HarnessError(f"min_pixels/max_pixels apply to the Qwen families only, not {self.name!r}")
        spanning = devices is not None and len(devices) > 1
        self.device = torch_device(devices[0] if spanning else device)
        self.dtype, self.pixels, self.max_new_tokens = dtype, pixels, int(max_new_tokens)
        self.random_init, self.attn_implementation = bool(random_init), attn_implementation
        self.checks_answers = not self.random_init
        preset = fam.pixel_presets[pixels]
        if preset is not None or min_pixels is not None or max_pixels is not None:
            low, high = preset or (min_pixels or 0, max_pixels or 0)
            low = low if min_pixels is None else int(min_pixels)
            high = high if max_pixels is None else int(max_pixels)
            if low > high:
                raise HarnessError(f"min_pixels {low} exceeds max_pixels {high}")
            self.pixel_limits = (low, high)
        else:
            self.pixel_limits = None
        if self.random_init:
            self.model_name, self.config_name = f"random:{fam.name}:{config}", config
            self.processor, self.model = self._random(config, int(seed), getattr(torch, dtype),
                                                      placement, devices if spanning else None)
            self._weights = f"random-init:{fam.name}:{config}:seed{int(seed)}"
        else:
            from harness.util.checkpoints import weights_id

            self.model_name = str(model or fam.default_model)
            try:
                self.processor = AutoProcessor.from_pretrained(self.model_name)
                self.model = AutoModelForImageTextToText.from_pretrained(
                    self.model_name, dtype=getattr(torch, dtype), attn_implementation=attn_implementation,
                    **(placement.pretrained_placement(devices) if spanning else {}))
            except Exception as e:  # OSError, ValueError, ImportError: all mean "cannot load"
                raise HarnessError(f"cannot load {self.name} model {self.model_name!r}: "
                                   f"{' '.join(str(e).split())}") from None
            self._weights = weights_id(self.model_name)
        if not spanning:
            self.model.to(self.device)
        self.model.eval()
        tok = self.processor.tokenizer
        self._visual_ids = sorted({i for i in (getattr(self.model.config, "video_token_id", None),
                                               getattr(self.model.config, "image_token_id", None))
                                   if i is not None and i != tok.unk_token_id})

    def _random(self, config: str, seed: int, dtype, placement, devices):
        import torch
        from transformers import AutoModelForImageTextToText

        from backbones.hf.configs import arch_sizes, build_config
        from backbones.hf.offline import build_processor

        arch = CONFIGS[self.family.name][config]
        processor = build_processor(self.family, arch_sizes(arch))
        cfg = build_config(self.family, arch, processor.tokenizer)

        def build(on):
            with torch.random.fork_rng(devices=[]), torch.device(on):
                torch.manual_seed(seed)
                return AutoModelForImageTextToText.from_config(cfg, dtype=dtype,
                                                              attn_implementation=self.attn_implementation)

        model = build(placement.build_device(build, devices) if devices else self.device)
        if devices:
            placement.spread(model, devices)
        model.generation_config.eos_token_id = processor.tokenizer.eos_token_id
        model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
        return processor, model

    def config(self) -> dict:
        return {"family": self.family.name, "model": self.model_name, "weights": self._weights,
                "pixels": self.pixels, "pixel_limits": None if self.pixel_limits is None else list(self.pixel_limits),
                "max_new_tokens": self.max_new_tokens, "attn_implementation": self.attn_implementation,
                "frames": "the selection's frames as one video; processor frame sampling off (do_sample_frames=False)",
                "times": self.family.times}

    # -- inputs ------------------------------------------------------------------------------------------------
    def _text(self, prompt: str, media: str = "video") -> str:
        messages = [{"role": "user", "content": [{"type": media}, {"type": "text", "text": prompt}]}]
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _video(self, frames, timestamps):
        frames = check_frames(np.asarray(frames))
        timestamps = [float(t) for t in timestamps]
        if len(timestamps) != len(frames):
            raise HarnessError(f"{len(frames)} frames but {len(timestamps)} timestamps")
        if self.family.even_frames and len(frames) % 2:
            frames = np.concatenate([frames, frames[-1:]])
            timestamps = timestamps + timestamps[-1:]
        return frames, timestamps

    def inputs(self, requests: Sequence[Request]):
        """Left-padded processor output for a batch of (frames, timestamps, prompt)."""
        return self.processor_inputs([self._text(p) for _, _, p in requests],
                                     [self._video(f, ts) for f, ts, _ in requests])

    def processor_inputs(self, texts: Sequence[str], videos):
        """Left-padded processor output for chat texts, each with its (frames, timestamps) video."""
        counts = {len(f) for f, _ in videos}
        kwargs = video_kwargs(self.family, self.pixel_limits, max(counts))
        if len(counts) > 1 and "size" in kwargs and self.family.name == "qwen3-vl":
            raise HarnessError("one qwen3-vl batch must share its frame count (the pixel budget counts frames)")
        if self.family.times == "metadata":
            kwargs["video_metadata"] = [video_metadata(ts) for _, ts in videos]
        return self.processor(text=list(texts), videos=[f for f, _ in videos], padding=True, padding_side="left",
                              return_tensors="pt", **kwargs)

    def _visual_count(self, ids) -> list[int]:
        import torch

        return torch.isin(ids, torch.tensor(self._visual_ids, device=ids.device)).sum(dim=-1).tolist()

    # -- answers -----------------------------------------------------------------------------------------------
    def generate(self, frames: np.ndarray, timestamps: Sequence[float], prompt: str) -> str:
        return self.generate_batch([(frames, timestamps, prompt)])[0]

    def generate_batch(self, requests: Sequence[Request]) -> list[str]:
        """Greedy answers, those of `generate` one by one. Accelerated, questions that share frames continue from one
        pass of their video's prompt head (`shared`); otherwise requests are batched by frame count (video processors
        stack one frame count per batch), left-padded."""
        if self._accelerated:
            texts = generate_shared_prefix(self, requests)
            if texts is not None:
                return texts
        groups: dict[int, list[int]] = {}
        for i, (frames, _, _) in enumerate(requests):
            groups.setdefault(len(frames), []).append(i)
        answers: list[str] = [""] * len(requests)
        visual: list[int] = [0] * len(requests)
        for rows in groups.values():
            texts, counts = self._generate_group([requests[i] for i in rows])
            for i, text, count in zip(rows, texts, counts):
                answers[i], visual[i] = text, count
        self.last_visual_tokens = visual
        return answers

    def _generate_group(self, requests: Sequence[Request]) -> tuple[list[str], list[int]]:
        import torch

        inputs = self.inputs(requests)
        counts = self._visual_count(inputs["input_ids"])
        inputs = inputs.to(self.device)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                                      temperature=None, top_p=None, top_k=None)
        new = out[:, inputs["input_ids"].shape[1]:]
        return [t.strip() for t in self.processor.batch_decode(new, skip_special_tokens=True)], counts

    def prefill_probe(self, requests: Sequence[Request]):
        """One batch's prefill as `generate_batch` runs it now, FLOPs counted on one run (`probe`)."""
        from backbones.hf.probe import prefill_probe

        return prefill_probe(self, requests, self._accelerated)

    def accelerate(self) -> Callable[[], None]:
        """Shared prompt prefixes in `generate_batch` (`shared`): each distinct video's head runs once; the answers
        stay as they are."""
        self._accelerated = True

        def off() -> None:
            self._accelerated = False
        return off

    def score_frames(self, frames: np.ndarray, prompt: str, batch_size: int = 8) -> np.ndarray:
        """FRAG's score (backbones.base): each frame alone as one image with `prompt`, softmax over the vocabulary
        of the first greedy step's scores, at the token "A". Frames of one call share prompt and size, so a batch
        needs no padding and a frame's score does not depend on its neighbours."""
        import torch

        frames = check_frames(frames, allow_empty=True)
        out = np.zeros(len(frames), np.float64)
        tok = self.processor.tokenizer
        select = tok.convert_tokens_to_ids(SCORE_TOKEN)
        if select is None or select == tok.unk_token_id:
            raise HarnessError(f"the tokenizer has no token {SCORE_TOKEN!r} to score frames with")
        text = self._text(prompt, "image")
        for start in range(0, len(frames), max(1, int(batch_size))):
            chunk = list(frames[start:start + batch_size])
            images = [[f] for f in chunk] if self.family.name == "smolvlm2" else chunk
            inputs = self.processor(text=[text] * len(chunk), images=images, padding=True, padding_side="left",
                                    return_tensors="pt").to(self.device)
            with torch.inference_mode():
                logits = self.model(**inputs, logits_to_keep=1).logits[:, -1]
            out[start:start + len(chunk)] = torch.softmax(logits.float(), -1)[:, select].double().cpu().numpy()
        return out


def _register(fam: Family):
    cls = type(f"HF_{fam.name.replace('-', '_')}", (HFVideoLLM,),
               {"family": fam, "name": fam.name, "prompt_style": fam.prompt_style, "__doc__": fam.description})
    return BACKBONES.register(fam.name, description=fam.description, help=_HELP,
                              choices={"dtype": DTYPES, "pixels": tuple(fam.pixel_presets),
                                       "config": tuple(CONFIGS[fam.name]), "attn_implementation": ATTENTION})(cls)


REGISTERED = {name: _register(fam) for name, fam in FAMILIES.items()}
