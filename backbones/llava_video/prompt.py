"""LLaVA-Video's prompt as the original builds it: lmms-eval's time instruction, the LLaVA-NeXT conversation
templates, and the token ids with the `<image>` placeholder widened to the video's visual tokens."""
from __future__ import annotations

from typing import Sequence

from harness.errors import HarnessError

TEMPLATES = ("qwen_1_5", "chatml_direct")
IMAGE_TOKEN = "<image>"  # where the original's prompt text puts the video (IMAGE_TOKEN_INDEX after tokenising)
VIDEO_TOKEN = "<video>"  # the converted tokenizer's placeholder, repeated once per visual token


def time_instruction(duration: float, timestamps: Sequence[float]) -> str:
    """lmms-eval llava_vid's time instruction (`add_time_instruction=True`), byte for byte: no space before
    'Please', times as '{t:.2f}s' joined by commas, the frame count, the video length in seconds."""
    times = ",".join(f"{float(t):.2f}s" for t in timestamps)
    return (f"The video lasts for {float(duration):.2f} seconds, and {len(timestamps)} frames are uniformly sampled "
            f"from it. These frames are located at {times}.Please answer the following questions related to this "
            f"video.")


def user_text(prompt: str, instruction: str | None = None) -> str:
    """The user message: the video placeholder, a newline, the optional time instruction + newline, the task text."""
    return f"{IMAGE_TOKEN}\n" + (f"{instruction}\n" if instruction else "") + prompt


def render_prompt(message: str, template: str) -> str:
    """The original conversation templates (LLaVA-NeXT llava/conversation.py) for one user turn and an open
    assistant turn. `qwen_1_5` is conv_qwen (CHATML style: newline after each <|im_end|>); `chatml_direct` is
    conv_chatml_direct (MPT style: no newline after <|im_end|>, system text 'Answer the questions.')."""
    if template == "qwen_1_5":
        return ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                f"<|im_start|>user\n{message}<|im_end|>\n<|im_start|>assistant\n")
    if template == "chatml_direct":
        return ("<|im_start|>system\nAnswer the questions.<|im_end|>"
                f"<|im_start|>user\n{message}<|im_end|><|im_start|>assistant\n")
    raise HarnessError(f"unknown conv_template {template!r} (known: {', '.join(TEMPLATES)})")


def prompt_ids(tokenizer, text: str, video_token_id: int, n_visual: int) -> list[int]:
    """Token ids of `text` with its single `<image>` replaced by `n_visual` video placeholders. Like the original's
    `tokenizer_image_token`, the text on each side is tokenised on its own (Qwen2 adds no BOS, so no special
    tokens are added)."""
    parts = text.split(IMAGE_TOKEN)
    if len(parts) != 2:
        raise HarnessError(f"the prompt must hold exactly one {IMAGE_TOKEN} placeholder, found {len(parts) - 1}")
    before, after = (tokenizer(p, add_special_tokens=False)["input_ids"] for p in parts)
    return list(before) + [int(video_token_id)] * int(n_visual) + list(after)
