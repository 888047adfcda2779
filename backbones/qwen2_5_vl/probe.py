"""`Qwen25VL.prefill_probe`: one batch's prefill the way `generate_batch` runs it, for `harness bench` to time."""
from __future__ import annotations

from typing import Sequence

from backbones.base import PrefillProbe, Request
from backbones.qwen2_5_vl.fast import SharedPrefix, plan_shared_prefix, prefill_prefixes
from backbones.qwen2_5_vl.flops import grid_patches, prefill_flops
from harness.util.flops import language_flops

FORMULA = f"{prefill_flops.__module__}.{prefill_flops.__qualname__}"


def prefill_probe(backbone, requests: Sequence[Request], accelerated: bool) -> PrefillProbe:
    """The vision tower, the language model over the prompt and the last token's logits, as `generate_batch` runs
    them: accelerated with questions sharing a video, each video's prefix once into a KV cache and every question's
    own tokens over it (`shared_probe`); otherwise the whole batch through the model at once. The processor's work
    and the inputs' transfer happen here, outside `run`.

    FLOPs by `prefill_flops`; where the accelerated vision tower encodes each distinct frames array once, only
    those videos count."""
    import torch

    if accelerated:
        plan = plan_shared_prefix(backbone, requests)
        if plan is not None:
            return shared_probe(backbone, plan)
    inputs = backbone.inputs(requests).to(backbone.device)
    tokens = [int(x) for x in inputs["attention_mask"].sum(1).tolist()]
    distinct = len({id(f) for f, _, _ in requests})  # the accelerated tower encodes each distinct array once
    grids = inputs["video_grid_thw"]
    patches = grid_patches(grids[:distinct]) if distinct < len(requests) and accelerated else grid_patches(grids)

    def run() -> None:
        with torch.inference_mode():
            backbone.model(**inputs, logits_to_keep=1, use_cache=False)

    return PrefillProbe(run=run, tokens=tokens, vision_videos=len(patches),
                        flops=prefill_flops(backbone.model.config, tokens, patches), formula=FORMULA)


def shared_probe(backbone, plan: SharedPrefix) -> PrefillProbe:
    """The accelerated prefill of a batch sharing videos: each distinct video's prefix once (vision tower + language
    model, into a KV cache), then every question's own tokens over its video's cache, logits of the last token.
    FLOPs: the prefixes, plus each question's tokens with attention over its prefix."""
    import torch

    config = backbone.model.config
    text = getattr(config, "text_config", config)
    prefix = [int(x) for x in plan.prefill["attention_mask"].sum(1).tolist()]
    own = [int(x) for x in plan.mask[:, plan.prefix_width:].sum(1).tolist()]
    cached = [prefix[r] for r in plan.rows]  # each question's prefix
    vision = prefill_flops(config, [], grid_patches(plan.prefill["video_grid_thw"]))["vision"]
    language = language_flops(text, prefix) + language_flops(text, own, cached)
    flops = {"language": float(language), "vision": float(vision), "total": float(language + vision)}
    ids, mask = plan.ids.to(backbone.device), plan.mask.to(backbone.device)
    # the questions' own tokens sit at their place after the cached prefix (positions as generation gives them)
    positions = mask.cumsum(-1) - 1

    def run() -> None:
        with torch.inference_mode():
            cache = prefill_prefixes(backbone, plan)
            tail = positions[:, plan.prefix_width:] + backbone.model.model.rope_deltas
            backbone.model(input_ids=ids[:, plan.prefix_width:], attention_mask=mask, past_key_values=cache,
                           position_ids=tail.unsqueeze(0).expand(3, -1, -1), use_cache=True, logits_to_keep=1)

    return PrefillProbe(run=run, tokens=[c + n for c, n in zip(cached, own)], vision_videos=len(prefix), flops=flops,
                        formula=FORMULA, extra={"shared_prefix_tokens": prefix})
