"""`score_frames` for Qwen2.5-VL: FRAG's frame scorer (Huang et al., arXiv 2504.17447; NVlabs/FRAG
`frame_selection.py` with its Qwen wrapper `models/qwenvl.py`), written from a reading of that code.

Each frame goes in ALONE, as one image (not a one-frame video): one user turn holding the image and then the
prompt, Qwen's default system turn, the assistant turn opened. The score is the softmax over the whole vocabulary of
the scores of the first token greedy `generate` produces, at the token "A" (`convert_tokens_to_ids("A")`), as the
official `softmax(x['scores'][0])[:, id('A')]`: the model folder's own logits processors apply as they do there (the
7B's generation config carries a repetition penalty). Only one token is generated; answers of `generate` are
untouched.

Pixels: the official wrapper gives qwen-vl-utils the image without a pixel cap unless the selector's aspect ratio
sets max_pixels = R * 28 * 28; qwen-vl-utils' image defaults are the Qwen folder's image processor limits, which is
what `score_max_pixels=None` uses. A number caps the pixels of each scored frame.

Frames of one call share the prompt and (frames of one video) their size, so a batch needs no padding and a frame's
score does not depend on its batch neighbours.
"""
from __future__ import annotations

import numpy as np

from harness.errors import HarnessError
from harness.util.frames import check_frames

SCORE_TOKEN = "A"  # FRAG's OPTIONS[0]: "A. yes"


def image_chat_text(processor, prompt: str) -> str:
    """One user turn: the frame as one image, then the prompt (the template adds the system turn)."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def token_id(tokenizer, token: str) -> int:
    """The id of a single vocabulary token, or a HarnessError when the vocabulary has no such token."""
    found = tokenizer.convert_tokens_to_ids(token)
    if found is None or found == tokenizer.unk_token_id:
        raise HarnessError(f"the tokenizer has no token {token!r} to score frames with")
    return int(found)


def first_token_probability(scores, select: int) -> np.ndarray:
    """softmax over the vocabulary of (batch, vocab) first-step scores, at `select`, as float64."""
    import torch

    return torch.softmax(scores.float(), dim=-1)[:, select].double().cpu().numpy()


def score_frames(backbone, frames: np.ndarray, prompt: str, batch_size: int = 8) -> np.ndarray:
    """(n,) probabilities of "A" for each frame alone with `prompt` (see the module docstring)."""
    import torch

    frames = check_frames(frames, allow_empty=True)
    out = np.zeros(len(frames), np.float64)
    if not len(frames):
        return out
    processor = backbone.processor
    select = token_id(processor.tokenizer, SCORE_TOKEN)
    text = image_chat_text(processor, prompt)
    size = None
    if backbone.score_max_pixels is not None:
        low = min(processor.image_processor.size["shortest_edge"], int(backbone.score_max_pixels))
        size = {"shortest_edge": low, "longest_edge": int(backbone.score_max_pixels)}
    for start in range(0, len(frames), max(1, int(batch_size))):
        chunk = frames[start:start + batch_size]
        kwargs = {} if size is None else {"size": size}
        inputs = processor(text=[text] * len(chunk), images=list(chunk), padding=True, padding_side="left",
                           return_tensors="pt", **kwargs).to(backbone.device)
        with torch.inference_mode():
            generated = backbone.model.generate(**inputs, max_new_tokens=1, do_sample=False, temperature=None,
                                                top_p=None, top_k=None, output_scores=True,
                                                return_dict_in_generate=True)
        out[start:start + len(chunk)] = first_token_probability(generated.scores[0], select)
    return out
