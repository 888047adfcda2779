"""Shared prompt prefixes for the transformers families (`accelerate` on): the questions of a batch that see the same
frames run the video through the model once.

Every family's prompt is `head + prompt + tail`, where the head (system turn, user turn up to and including the
video) is the same for every question and the prompt comes after the video. Per distinct video, the head and the
video go through the processor and the model once (batch 1, no padding: the attention kernels' fast causal path);
each question then continues from a copy of that KV cache (a device-memory copy; cache cropping differs between
transformers versions) with its own `prompt + tail` tokens, one question at a time. Nothing is padded, so every
question sees the positions and tokens it sees alone (Qwen's 3-D rope continues from the offsets the head's pass
computed).

Declined (None: the batch runs the plain way, answers unchanged) where splitting the text could change the tokens:
the tokenizer must give `tokens(head) + tokens(prompt + tail)` exactly for `tokens(head + prompt + tail)`, which
holds where the head ends on a special token or a pre-tokenizer boundary (checked per question, never assumed),
and where no two questions share a video (nothing to gain).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
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


@dataclass
class SharedPlan:
    """The CPU side of a shared-prefix batch: per distinct video its head's processor output, and per question its
    video and its own token ids."""

    heads: dict  # first request of a video -> processor output of head + video
    owner: list[int]  # request -> the first request with its frames
    own_ids: list[list[int]]  # request -> its prompt + tail tokens


def plan_shared_prefix(backbone, requests: Sequence[Request]) -> SharedPlan | None:
    """The plan of `generate_shared_prefix`, or None when declined (see the module)."""
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
    heads = {u: backbone.processor_inputs([head], [backbone._video(*requests[u][:2])]) for u in sorted(set(owner))}
    own = [tok(s, add_special_tokens=False)["input_ids"] for s in suffixes]
    return SharedPlan(heads=heads, owner=owner, own_ids=own)


def run_shared_prefix(backbone, plan: SharedPlan, max_new_tokens: int) -> list:
    """Generated token ids (new tokens only) per request: each head once into a KV cache, then every question
    from a copy of its video's cache."""
    import torch

    out: list = [None] * len(plan.owner)
    with torch.inference_mode():
        for u, inputs in plan.heads.items():
            inputs = inputs.to(backbone.device)
            prefix = inputs["input_ids"]
            first = backbone.model(**inputs, use_cache=True, logits_to_keep=1)
            # transformers renamed past_key_values to cache (5.2x); the output's field says which this one takes
            name = "cache" if "cache" in first.keys() else "past_key_values"
            for i in (i for i, o in enumerate(plan.owner) if o == u):
                ids = torch.cat([prefix, torch.tensor([plan.own_ids[i]], device=prefix.device)], dim=1)
                new = backbone.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                              **{name: copy.deepcopy(first[name])}, max_new_tokens=max_new_tokens,
                                              do_sample=False, temperature=None, top_p=None, top_k=None)
                out[i] = new[:, ids.shape[1]:]
    return out


def generate_shared_prefix(backbone, requests: Sequence[Request]) -> list[str] | None:
    """Greedy answers with one pass of each distinct video's head, or None when declined (see the module)."""
    plan = plan_shared_prefix(backbone, requests)
    if plan is None:
        return None
    new = run_shared_prefix(backbone, plan, backbone.max_new_tokens)
    counts = {u: backbone._visual_count(inputs["input_ids"])[0] for u, inputs in plan.heads.items()}
    backbone.last_visual_tokens = [counts[u] for u in plan.owner]
    return [backbone.processor.batch_decode(ids, skip_special_tokens=True)[0].strip() for ids in new]
