"""One backbone replica over several GPUs (`harness run --gpus-per-replica G`): a model too large for one card
(a 72B) is split layer by layer over its G GPUs, the way transformers' `device_map` does it, and data parallelism
runs across replicas (harness.distributed gives each rank its G GPUs).

The split is accelerate's balanced map: whole decoder layers and vision blocks (the model's `_no_split_modules`)
spread so each GPU holds a similar share, not the first GPU filled before the next. Inputs go to the first GPU; the
hooks accelerate installs move activations from card to card. Weights from a folder are loaded straight onto their
GPUs (`pretrained_placement`); a random-init model is built on its first GPU where it fits there, else on the CPU,
and then dispatched (`build_device`, `spread`).
"""
from __future__ import annotations

from typing import Sequence

from harness.errors import HarnessError


def gpu_indices(devices: Sequence[str]) -> list[int]:
    """[i, ...] of devices named cuda:i; a clear error for anything else."""
    import torch

    out = []
    for name in devices:
        device = torch.device(name)
        if device.type != "cuda" or device.index is None:
            raise HarnessError(f"a backbone spans several devices only as cuda:N GPUs, got {name!r}")
        out.append(device.index)
    return out


def free_memory(devices: Sequence[str]) -> dict[int, int]:
    """Bytes free on each GPU now: what the placement may fill."""
    import torch

    return {i: torch.cuda.mem_get_info(i)[0] for i in gpu_indices(devices)}


def balanced_map(model, devices: Sequence[str], max_memory: dict[int, int] | None = None) -> dict[str, int]:
    """Module name -> GPU index for `model` over `devices`, balanced, no decoder layer or vision block split
    (`max_memory`: bytes per GPU index; default what is free now). Needs no GPU when `max_memory` is given."""
    from accelerate.utils import get_balanced_memory, infer_auto_device_map

    memory = free_memory(devices) if max_memory is None else dict(max_memory)
    no_split = list(getattr(model, "_no_split_modules", None) or [])
    budget = get_balanced_memory(model, max_memory=memory, no_split_module_classes=no_split)
    placement = infer_auto_device_map(model, max_memory=budget, no_split_module_classes=no_split)
    stray = sorted({str(d) for d in placement.values()} - {str(i) for i in memory})
    if stray:
        raise HarnessError(f"the model does not fit on GPUs {sorted(memory)}: parts would go to {', '.join(stray)}")
    return placement


def build_device(build, devices: Sequence[str]) -> str:
    """Where to build a random-init model that will be spread over `devices`: the first GPU when the whole model fits
    there with room to spare (random init on a GPU takes seconds; a 7B on the CPU, minutes), else the CPU.
    `build(device)` makes the model; it is first built on the meta device to learn its size."""
    import torch

    need = sum(p.numel() * p.element_size() for p in build("meta").parameters())
    first = gpu_indices(devices)[0]
    return devices[0] if 1.25 * need < torch.cuda.mem_get_info(first)[0] else "cpu"


def spread(model, devices: Sequence[str]):
    """Dispatch a built model (on the CPU or the first GPU: `build_device`) over `devices` by `balanced_map`."""
    from accelerate import dispatch_model

    return dispatch_model(model, device_map=balanced_map(model, devices))


def pretrained_placement(devices: Sequence[str]) -> dict:
    """`from_pretrained` keyword arguments that load a checkpoint balanced over `devices` only."""
    return {"device_map": "balanced", "max_memory": free_memory(devices)}
