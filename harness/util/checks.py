"""Checks shared by everything that takes model options (backbones, encoders, samplers): a value among its choices,
and a torch device this machine has, each failing with one clear line."""
from __future__ import annotations

from typing import Iterable


def check_choices(options: Iterable[tuple[str, object, Iterable]], owner: str | None = None) -> None:
    """(option name, value, allowed values) triples: the first value not allowed is a HarnessError."""
    from harness.errors import HarnessError

    for option, value, known in options:
        known = tuple(known)
        if value not in known:
            where = f" for {owner}" if owner else ""
            raise HarnessError(f"unknown {option} {value!r}{where} (known: {', '.join(map(str, known))})")


def torch_device(device: str, owner: str | None = None):
    """`torch.device(device)`, or a HarnessError naming the bad device (and who was given it): a name torch does not
    know, or a CUDA or MPS device this machine does not have."""
    import torch

    from harness.errors import HarnessError

    where = f" for {owner}" if owner else ""
    try:
        out = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise HarnessError(f"invalid device {device!r}{where}: {' '.join(str(e).split())}") from None
    if out.type == "cuda":
        count = torch.cuda.device_count()  # 0 without CUDA
        if count == 0:
            raise HarnessError(f"device {device!r}{where} is not available: this machine has no CUDA device")
        if out.index is not None and out.index >= count:
            there = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
            raise HarnessError(f"device {device!r}{where} is not available: this machine has {count} CUDA "
                               f"device{'s' if count > 1 else ''} ({there})")
    elif out.type == "mps" and not torch.backends.mps.is_available():
        raise HarnessError(f"device {device!r}{where} is not available: MPS needs an Apple GPU and a torch built "
                           f"with MPS")
    return out
