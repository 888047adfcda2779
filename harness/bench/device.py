"""The accelerator as `harness bench` sees it: its name, waiting for its queued work, its peak memory."""
from __future__ import annotations


def sync(device) -> None:
    """Wait for the work queued on a CUDA device, so wall-clock timings include it."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory(device, reset: bool = False) -> float | None:
    """GiB at most allocated on a CUDA device since the last reset (`reset=True` starts a new count and returns
    None); None off CUDA."""
    import torch

    if torch.device(device).type != "cuda":
        return None
    if reset:
        torch.cuda.reset_peak_memory_stats(device)
        return None
    return torch.cuda.max_memory_allocated(device) / 2 ** 30


def device_name(device: str) -> str:
    """The card's name (`NVIDIA H100 80GB HBM3`), or `cpu-<machine>`."""
    import torch

    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    import platform

    return f"cpu-{platform.machine()}"
