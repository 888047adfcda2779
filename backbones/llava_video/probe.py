"""`LlavaVideo.prefill_probe`: one batch's prefill the way `generate_batch` runs it, for `harness bench` to time."""
from __future__ import annotations

from typing import Sequence

from backbones.base import PrefillProbe, Request
from backbones.llava_video.flops import llava_prefill_flops

FORMULA = f"{llava_prefill_flops.__module__}.{llava_prefill_flops.__qualname__}"


def prefill_probe(backbone, requests: Sequence[Request]) -> PrefillProbe:
    """The vision path once per distinct video, the merge, then the language model with the last token's logits,
    as `generate_batch` runs them: where questions share a video, each video's prefix once into a KV cache and the
    questions' own tokens over it (`shared_prefill`); otherwise in the backbone's `language_groups`. CPU
    preprocessing and the pixels' transfer happen here, outside `run`.

    FLOPs by `llava_prefill_flops`; with a shared prefix, the prefixes once plus each question's own tokens with
    attention over its prefix."""
    import torch

    batch = backbone.batch_inputs(requests)
    batch["pixel_values"] = [p.to(backbone.device) for p in batch["pixel_values"]]
    tokens = [len(ids) for ids in batch["input_ids"]]
    frames = [len(p) for p in batch["pixel_values"]]
    config = backbone.model.config
    shared = backbone.shared_prefix_plan(batch)
    if shared is None:
        flops, extra = llava_prefill_flops(config, tokens, frames), {}
    else:
        owner, plan = shared
        prefix = [plan[u] for u in sorted(plan)]
        own = [len(ids) - plan[o] for ids, o in zip(batch["input_ids"], owner)]
        # each prefix a sequence of its own, then each question's tokens continuing its video's prefix
        flops = llava_prefill_flops(config, prefix + own, frames, [0] * len(prefix) + [plan[o] for o in owner])
        extra = {"shared_prefix_tokens": prefix}

    def run() -> None:
        model = backbone.model
        with torch.inference_mode():
            feats = backbone.video_embeddings(batch)
            cached = backbone.shared_prefill(batch, feats)
            if cached is not None:  # as generate_batch: each video's prefix once, then the questions' own tokens
                width, mask = cached["prefix_width"], cached["mask"]
                model(inputs_embeds=cached["embeds"][:, width:], attention_mask=mask,
                      past_key_values=cached["cache"], position_ids=(mask.cumsum(-1) - 1)[:, width:],
                      use_cache=True, logits_to_keep=1)
                return
            for rows in backbone.language_groups(batch):  # as generate_batch groups them
                embeds, mask = backbone.batch_embeddings(batch, rows, feats)
                positions = (mask.cumsum(-1) - 1).clamp(min=0)  # as generate numbers left-padded rows
                model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, logits_to_keep=1,
                      use_cache=False)

    return PrefillProbe(run=run, tokens=tokens, vision_videos=len(frames), flops=flops, formula=FORMULA,
                        extra=extra)
