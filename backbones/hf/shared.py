"""Shared prompt prefixes for the transformers families (`accelerate` on): the questions of a batch that see the same
frames run the video through the model once.

Every family's prompt is `head + prompt + tail`, where the head (system turn, user turn up to and including the
video) is the same for every question and the prompt comes after the video. Per distinct video, the head and the
video go through the processor and the model once (batch 1, no padding: the attention kernels' fast causal path);
each question then continues from a copy of that KV cache (a device-memory copy; cache cropping differs between
transformers versions) with its own `prompt + tail` tokens, one question at a time. Nothing is padded, so every
question sees the positions and tokens it sees alone (Qwen's 3-D rope continues from the offsets the head's pass computed).

Declined (None: the batch runs the plain way, answers unchanged) where splitting the text could change the tokens:
the tokenizer must give `tokens(head) + tokens(prompt + tail)` exactly for `tokens(head + prompt + tail)`, which
holds where the head ends on a special token or a pre-tokenizer boundary (checked per question, never assumed),
and where no two questions share a video (nothing to gain).
"""
from __future__ import annotations

import copy
from typing import Sequence

from backbones.base import Request
from backbones.prefix import shared_video_rows

MARK = "\x00prompt\x00"


def split_template(backbone) -> tuple[str, str] | None:
    """(head, tail) of the family's chat text around the prompt; None if the template does not hold it once."""
    text = backbone._text(MARK)
    if text.count(MARK) != 1:
        return None
    head, tail = text.split(MARK)
    return head, tail


def _splits_exactly(tokenizer, head: str, suffix: str) -> bool:
    whole = tokenizer(head + suffix)["input_ids"]
    return whole == tokenizer(head)["input_ids"] + tokenizer(suffix, add_special_tokens=False)["input_ids"]


def generate_shared_prefix(backbone, requests: Sequence[Request]) -> list[str] | None:
    """Greedy answers with one pass of each distinct video's head, or None when declined (see the module)."""
    import torch

    owner = shared_video_rows(requests)
    if len(set(owner)) == len(requests):
        return None
    parts = split_template(backbone)
    if parts is None:
        return None
    head, tail = parts
    tok = backbone.processor.tokenizer
    suffixes = [prompt + tail for _, _, prompt in requests]
    if any(backbone._text(p) != head + s for (_, _, p), s in zip(requests, suffixes)):
        return None
    if not all(_splits_exactly(tok, head, s) for s in suffixes):
        return None
    answers, visual = [""] * len(requests), [0] * len(requests)
    for u in sorted(set(owner)):
        rows = [i for i, o in enumerate(owner) if o == u]
        frames, timestamps, _ = requests[u]
        inputs = backbone.processor_inputs([head], [backbone._video(frames, timestamps)]).to(backbone.device)
        prefix = inputs["input_ids"]
        count = backbone._visual_count(prefix)[0]
        with torch.inference_mode():
            out = backbone.model(**inputs, use_cache=True, logits_to_keep=1)
            # transformers renamed past_key_values to cache (5.2x); the output's field says which this one takes
            name = "cache" if "cache" in out.keys() else "past_key_values"
            cache = out[name]
            for i in rows:
                own = torch.tensor([tok(suffixes[i], add_special_tokens=False)["input_ids"]], device=prefix.device)
                ids = torch.cat([prefix, own], dim=1)
                out = backbone.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                              **{name: copy.deepcopy(cache)}, max_new_tokens=backbone.max_new_tokens,
                                              do_sample=False, temperature=None, top_p=None, top_k=None)
                answers[i] = backbone.processor.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)[0].strip()
                visual[i] = count
    backbone.last_visual_tokens = visual
    return answers
