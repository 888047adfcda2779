"""Per-family settings of the generic transformers adapter: how a selection's frames and their real times reach each
family's processor, its pixel budget, and the lmms-eval 0.7.3 model name whose prompt wording it gets.

Every family: the frames go in as ONE video, in time order, exactly the frames the sampler selected; the
processor's own frame sampling is off (`do_sample_frames=False`, recorded in the config). Times:
* qwen3-vl: the processor writes `<t seconds>` before each temporal patch, t = the mean time of the patch's two
  frames; the adapter hands it video metadata with fps 1 and `frames_indices` = the selection's timestamps, so t is
  the real time (not the processor's fps guess). An odd count repeats the last frame (and its time), as
  qwen-vl-utils does.
* smolvlm2: the processor writes "Frame from MM:SS:" before each frame and the video's duration; the same metadata
  gives the real times (duration: the last timestamp, rounded down to seconds, the processor's own rule).
* qwen2-vl: one temporal rope step per temporal patch (the family has no absolute time); the selection's order
  is all that reaches the model.
* llava-onevision, llava-next-video, internvl: no time input in the model (InternVL numbers frames "Frame1:" ...).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    default_model: str  # the hub id lmms-eval evaluates (a local folder of it works the same)
    prompt_style: str  # lmms-eval 0.7.3's --model name for it: its lmms_eval_specific_kwargs key
    template: str  # offline chat format (backbones.hf.offline.TEMPLATES) for models built here
    times: str  # "metadata": real timestamps through VideoMetadata; "order": frame order only
    even_frames: bool = False  # the processor needs an even frame count (repeat the last frame)
    # pixel presets: name -> (min, max) pixels per frame (None: the folder's own video processor size)
    pixel_presets: dict = field(default_factory=lambda: {"model": None})
    default_pixels: str = "model"


FAMILIES = {f.name: f for f in (
    Family("qwen2-vl", "Qwen2-VL (transformers); Qwen2-VL-7B-Instruct by default", "Qwen/Qwen2-VL-7B-Instruct",
           "qwen2_vl", "qwen", "order",
           # lmms-eval 0.7.3 qwen2_vl: min_pixels 3136, max_pixels 602112 (its processor arguments)
           pixel_presets={"lmms-eval": (3136, 602112), "model": None}, default_pixels="lmms-eval"),
    Family("qwen3-vl", "Qwen3-VL (transformers); Qwen3-VL-8B-Instruct by default, real timestamps per patch",
           "Qwen/Qwen3-VL-8B-Instruct", "qwen3_vl", "qwen3", "metadata", even_frames=True,
           # lmms-eval 0.7.3 qwen3_vl: min_pixels 256*28*28, max_pixels 1605632 per frame
           pixel_presets={"lmms-eval": (200704, 1605632), "model": None}, default_pixels="lmms-eval"),
    Family("llava-onevision", "LLaVA-OneVision (transformers); llava-onevision-qwen2-7b-ov-hf by default",
           "llava-hf/llava-onevision-qwen2-7b-ov-hf", "llava_onevision", "onevision", "order"),
    Family("llava-next-video", "LLaVA-NeXT-Video (transformers); LLaVA-NeXT-Video-7B-hf by default",
           "llava-hf/LLaVA-NeXT-Video-7B-hf", "llava_hf", "vicuna", "order"),
    Family("internvl", "InternVL3 (transformers-native checkpoints); InternVL3-8B-hf by default",
           "OpenGVLab/InternVL3-8B-hf", "internvl_hf", "internvl", "order"),
    Family("smolvlm2", "SmolVLM2 (transformers); SmolVLM2-2.2B-Instruct by default, real frame times",
           "HuggingFaceTB/SmolVLM2-2.2B-Instruct", "huggingface", "smolvlm", "metadata"),
)}


def video_kwargs(family: Family, pixels: tuple[int, int] | None, n_frames: int) -> dict:
    """Processor keyword arguments for one video of `n_frames` frames: sampling off, the pixel budget."""
    out: dict = {"do_sample_frames": False}
    if pixels is not None:
        low, high = pixels
        if family.name == "qwen3-vl":  # Qwen3-VL's video budget counts all frames: per-frame limits x frames
            frames = n_frames + n_frames % 2
            out.update(size={"shortest_edge": low * frames, "longest_edge": high * frames},
                       cap_pixels_per_frame=False)
        else:
            out["size"] = {"shortest_edge": low, "longest_edge": high}
    return out


def video_metadata(timestamps):
    """transformers VideoMetadata placing each frame at its real time: fps 1, frame index = the time in seconds."""
    from transformers.video_utils import VideoMetadata

    times = [float(t) for t in timestamps]
    return VideoMetadata(total_num_frames=len(times), fps=1.0, frames_indices=times, duration=None)
