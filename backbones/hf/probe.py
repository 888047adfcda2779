"""`HFVideoLLM.prefill_probe`: one batch's prefill the way `generate_batch` runs it, for `harness bench` to time.

FLOPs: the language model by the decoder formula every backbone uses (`harness.util.flops.language_flops`: causal
attention as half the square, cached prefix tokens read by each question's own tokens); the vision side (modules
named visual / vision_tower / vision_model / multi_modal_projector / connector) counted on one run of the probe
under torch's `FlopCounterMode` (matrix products and attention kernels, 2 per multiply-add; vision attention is not
causal, so the kernel's full square is what it does), so no per-family vision formula is needed.
"""
from __future__ import annotations

from typing import Sequence

from backbones.base import PrefillProbe, Request
from backbones.hf.shared import plan_shared_prefix, run_shared_prefix
from harness.util.flops import language_flops

FORMULA = "language: harness.util.flops.language_flops; vision: FlopCounterMode on one run"
VISION = ("visual", "vision_tower", "vision_model", "multi_modal_projector", "connector")


def _attention(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of an attention kernel with (b, heads, s, d) operands, key/value heads possibly fewer than the query's
    (grouped-query attention, which torch 2.11's own formula refuses): QK^T and PV over the full square."""
    b, heads, s_q, d = query_shape
    return 2 * b * heads * s_q * key_shape[-2] * (d + value_shape[-1])


def _attention_mapping() -> dict:
    import torch

    aten = torch.ops.aten
    names = ("_scaled_dot_product_efficient_attention", "_scaled_dot_product_flash_attention",
             "_scaled_dot_product_cudnn_attention")
    return {getattr(aten, n): _attention for n in names if hasattr(aten, n)}


def _vision_flops(run) -> float:
    """FLOPs of the vision modules in one call of `run` (the outermost such modules: totals include submodules)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False, custom_mapping=_attention_mapping())
    with counter:
        run()
    modules = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items() if name != "Global"}
    vision = [n for n in modules if any(part in VISION for part in n.split("."))]
    outer = [n for n in vision if not any(n != m and n.startswith(m + ".") for m in vision)]
    return float(sum(modules[n] for n in outer))


def _flops(backbone, run, tokens: list[int], cached: list[int] | None = None) -> dict:
    config = backbone.model.config
    language = float(language_flops(getattr(config, "text_config", config), tokens, cached))
    vision = _vision_flops(run)
    return {"language": language, "vision": vision, "total": language + vision}


def prefill_probe(backbone, requests: Sequence[Request], accelerated: bool) -> PrefillProbe:
    """Accelerated with questions sharing frames: each head once, every question from its cache, first token only
    (`shared.run_shared_prefix` with one new token); otherwise the batch through the model at once, last token's
    logits. The processor's work happens here, outside `run`."""
    import torch

    plan = plan_shared_prefix(backbone, requests) if accelerated else None
    if plan is not None:
        def run() -> None:
            run_shared_prefix(backbone, plan, 1)

        heads = {u: int(x["input_ids"].shape[1]) for u, x in plan.heads.items()}
        own = [len(ids) for ids in plan.own_ids]
        flops = _flops(backbone, run, list(heads.values()) + own, [0] * len(heads) + [heads[u] for u in plan.owner])
        return PrefillProbe(run=run, tokens=[heads[u] + n for u, n in zip(plan.owner, own)],
                            vision_videos=len(heads), flops=flops, formula=FORMULA,
                            extra={"shared_prefix_tokens": list(heads.values())})
    inputs = backbone.inputs(requests).to(backbone.device)

    def run() -> None:
        with torch.inference_mode():
            backbone.model(**inputs, logits_to_keep=1, use_cache=False)

    tokens = [int(x) for x in inputs["attention_mask"].sum(1).tolist()]
    return PrefillProbe(run=run, tokens=tokens, vision_videos=len(requests), flops=_flops(backbone, run, tokens),
                        formula=FORMULA)
