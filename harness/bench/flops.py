"""Compute rates: the card's bf16 matrix-product rate, and a backbone's prefill timed against the FLOPs its
`prefill_probe` counts (the formulas live with each backbone, e.g. `backbones.llava_video.flops`)."""
from __future__ import annotations

import statistics
import time

from harness.bench.device import sync


def matmul_rate(device: str, size: int) -> float | None:
    """bf16 matrix-product rate of this card in TFLOP/s (random operands, median of 10 after 3 warm-ups); None off
    CUDA."""
    import torch

    if torch.device(device).type != "cuda":
        return None
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    times = []
    for i in range(13):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        torch.cuda.synchronize(device)
        if i >= 3:
            times.append(start.elapsed_time(end) / 1000)
    del a, b
    return 2 * size ** 3 / statistics.median(times) / 1e12


def prefill(backbone, requests, device: str, repeats: int) -> dict | None:
    """The prefill of `requests` as one batch, as the backbone's batched path runs it now (with or without its
    `accelerate` speed-ups): seconds (median of `repeats` after one warm-up, the device synced around each), the
    FLOPs the backbone counts and the rate; None when the backbone has no prefill probe."""
    import torch

    probe = backbone.prefill_probe(requests)
    if probe is None:
        return None
    times = []
    with torch.inference_mode():
        for _ in range(max(1, repeats) + 1):
            sync(device)
            t = time.perf_counter()
            probe.run()
            sync(device)
            times.append(time.perf_counter() - t)
    seconds = statistics.median(times[1:])  # the first is a warm-up
    return {"batch": len(requests), "tokens": probe.tokens, "vision_videos": probe.vision_videos, **probe.extra,
            "seconds": seconds, "flops": probe.flops, "formula": probe.formula,
            "tflops_per_s": probe.flops["total"] / seconds / 1e12}
